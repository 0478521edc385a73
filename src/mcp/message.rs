//! The JSON-RPC unit: strict parsing of one MCP message, and the canonical form that is forwarded.
//!
//! A gateway must decide on exactly the bytes it forwards, so a body is parsed once, strictly, into
//! a [`Message`], and what goes upstream is [`Message::to_value`] — never the original bytes.
//! "Strict" means: anything two JSON parsers could read differently is refused rather than guessed
//! at. The checks, in the order they run:
//!
//! 1. no UTF-8 byte order mark, and the whole body valid UTF-8 (the error names the byte offset);
//! 2. not empty, and container nesting at most [`MAX_DEPTH`] (counted here, before serde_json,
//!    whose own limit is 128 and reports only a generic error);
//! 3. exactly one JSON value, only whitespace around it, with no repeated key in any object
//!    (keys compared after escapes are decoded, so `"n\u0061me"` repeats `"name"`), no number
//!    outside the f64 range (`1e400`) and no lone UTF-16 surrogate escape (`"\ud800"`);
//! 4. the JSON-RPC shape: one object (an array is a batch, which MCP no longer has), only the
//!    members JSON-RPC defines, `"jsonrpc": "2.0"`, an `id` that is a string or an i64, and exactly
//!    one of request / notification / response.
//!
//! Failures in steps 1–3 carry code -32700 (parse error), failures in step 4 carry -32600 (invalid
//! request).

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// JSON-RPC "Parse error": the body is not one unambiguous JSON value.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC "Invalid Request": valid JSON, but not an acceptable JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC "Invalid params": the method is known but its params are not acceptable.
pub const INVALID_PARAMS: i64 = -32602;

/// The deepest container nesting accepted; the message object itself is depth 1.
pub const MAX_DEPTH: usize = 64;

/// The only top-level members a JSON-RPC 2.0 message may have. Anything else is refused: a
/// gateway must not forward what it does not understand.
const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// The UTF-8 encoding of U+FEFF.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Longest piece of a client-supplied key quoted back in an error message.
const QUOTE_LIMIT: usize = 64;

/// One parsed JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Has an `id` (string or integer) and a `method`; expects one response.
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    /// A `method` without an `id`; gets no response.
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A `result` or `error` for an earlier request (sent by clients answering server requests).
    ///
    /// `body` is an object with exactly one member: `{"result": ...}` or `{"error": {...}}`, so
    /// the message can be re-serialized without losing which of the two it was.
    Response { id: Value, body: Value },
}

impl Message {
    /// The canonical form of this message: the only thing the gateway forwards.
    ///
    /// Holds `"jsonrpc": "2.0"` plus the members of the variant, nothing else.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("jsonrpc".into(), Value::from("2.0"));
        match self {
            Message::Request { id, method, params } => {
                out.insert("id".into(), id.clone());
                out.insert("method".into(), Value::from(method.as_str()));
                if let Some(params) = params {
                    out.insert("params".into(), params.clone());
                }
            }
            Message::Notification { method, params } => {
                out.insert("method".into(), Value::from(method.as_str()));
                if let Some(params) = params {
                    out.insert("params".into(), params.clone());
                }
            }
            Message::Response { id, body } => {
                out.insert("id".into(), id.clone());
                if let Value::Object(members) = body {
                    for (key, value) in members {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        Value::Object(out)
    }

    /// The `id` of a request or response; `None` for a notification.
    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::Request { id, .. } | Message::Response { id, .. } => Some(id),
            Message::Notification { .. } => None,
        }
    }

    /// The `method` of a request or notification; `None` for a response.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    /// The `params` of a request or notification, when present.
    pub fn params(&self) -> Option<&Value> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => {
                params.as_ref()
            }
            Message::Response { .. } => None,
        }
    }

    /// True for a response that carries `error` rather than `result`.
    pub fn is_error_response(&self) -> bool {
        matches!(self, Message::Response { body, .. } if body.get("error").is_some())
    }
}

/// Why a body is not one acceptable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// JSON-RPC error code: -32700 (not JSON) or -32600 (not a valid request).
    pub code: i64,
    pub message: String,
}

impl ParseError {
    /// A -32700 error: the body is not one unambiguous JSON value.
    fn parse(message: impl Into<String>) -> Self {
        ParseError {
            code: PARSE_ERROR,
            message: message.into(),
        }
    }

    /// A -32600 error: JSON, but not an acceptable JSON-RPC message.
    fn invalid(message: impl Into<String>) -> Self {
        ParseError {
            code: INVALID_REQUEST,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ParseError {}

/// Parses one message from a POST body, rejecting what a gateway must not guess about.
pub fn parse(body: &[u8]) -> Result<Message, ParseError> {
    shape(decode(body)?)
}

/// Reads any JSON value with the same strictness as a message (UTF-8, no BOM, no duplicate
/// keys, bounded depth): for JSON that reaches a decision from elsewhere, e.g. `mcpgw explain`.
pub fn parse_value(body: &[u8]) -> Result<Value, ParseError> {
    decode(body)
}

/// Best-effort `id` of a body that is strict JSON but not an acceptable message, so the error
/// response can echo it. `None` when the body does not parse strictly (a -32700 answer carries a
/// null id) or when the `id` is not itself a valid id (string or i64).
pub fn id_of(body: &[u8]) -> Option<Value> {
    let value = decode(body).ok()?;
    let id = value.as_object()?.get("id")?;
    is_valid_id(id).then(|| id.clone())
}

/// A JSON-RPC error response; a missing id is sent as `null`, as JSON-RPC prescribes.
pub fn error_response(id: Option<&Value>, code: i64, message: &str) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code));
    error.insert("message".into(), Value::from(message));
    let mut out = Map::new();
    out.insert("jsonrpc".into(), Value::from("2.0"));
    out.insert("id".into(), id.cloned().unwrap_or(Value::Null));
    out.insert("error".into(), Value::Object(error));
    Value::Object(out)
}

/// Which member of a response [`relayed_response`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// `result`: the request succeeded.
    Result,
    /// `error`: the JSON-RPC error object.
    Error,
}

/// The text of a JSON-RPC response whose `result` or `error` is JSON text written by someone
/// else (the upstream), spliced in as it is: it is valid JSON already, and building it into a
/// tree only to write it out again costs time and can change numbers.
pub fn relayed_response(id: &Value, answered: Answered, member: &RawValue) -> Vec<u8> {
    spliced_response(id, answered, member.get())
}

/// A result response around `result`, JSON text the gateway assembled from validated pieces
/// of an upstream answer (a joined list), written out without validating it again.
pub fn assembled_result_response(id: &Value, result: &str) -> Vec<u8> {
    spliced_response(id, Answered::Result, result)
}

/// `{"jsonrpc":"2.0","id":ID,"result"|"error":TEXT}` with `text` written as it is.
fn spliced_response(id: &Value, answered: Answered, text: &str) -> Vec<u8> {
    let member: &[u8] = match answered {
        Answered::Result => br#","result":"#,
        Answered::Error => br#","error":"#,
    };
    let mut out = Vec::with_capacity(text.len() + 48);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    // Writing a `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut out, id);
    out.extend_from_slice(member);
    out.extend_from_slice(text.as_bytes());
    out.push(b'}');
    out
}

/// A JSON-RPC success response.
pub fn result_response(id: &Value, result: Value) -> Value {
    let mut out = Map::new();
    out.insert("jsonrpc".into(), Value::from("2.0"));
    out.insert("id".into(), id.clone());
    out.insert("result".into(), result);
    Value::Object(out)
}

/// True only for the client notifications the gateway forwards upstream. Anything else without
/// an id is dropped: a server may act on a `tools/call` that lacks an id, out of policy's sight.
pub fn is_forwardable_notification(method: &str) -> bool {
    matches!(
        method,
        "notifications/initialized"
            | "notifications/cancelled"
            | "notifications/progress"
            | "notifications/roots/list_changed"
    )
}

/// Steps 1–3: bytes to one strictly read JSON value, or a -32700 error.
fn decode(body: &[u8]) -> Result<Value, ParseError> {
    if body.starts_with(BOM) {
        return Err(ParseError::parse(
            "body starts with a UTF-8 byte order mark",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        ParseError::parse(format!(
            "body is not valid UTF-8: invalid byte at offset {}",
            e.valid_up_to()
        ))
    })?;
    if text.trim_matches(is_json_whitespace).is_empty() {
        return Err(ParseError::parse("body is empty"));
    }
    check_depth(text)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v.0))
        .map_err(|e| ParseError::parse(format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// The four whitespace characters JSON allows between tokens.
fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Refuses container nesting deeper than [`MAX_DEPTH`], before any recursive parsing.
fn check_depth(text: &str) -> Result<(), ParseError> {
    match deeper_than(text, MAX_DEPTH) {
        None => Ok(()),
        Some(offset) => Err(ParseError::parse(format!(
            "JSON nesting deeper than {MAX_DEPTH} levels (at byte offset {offset})"
        ))),
    }
}

/// The byte offset where `text` nests containers deeper than `max`, if it does.
///
/// Brackets inside strings do not count. The text is valid UTF-8, and no byte of a
/// multi-byte character is ASCII, so scanning bytes cannot mistake part of a character for a
/// quote or bracket. Malformed input may be miscounted, but serde_json rejects it anyway.
pub fn deeper_than(text: &str, max: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut offset = 0;
    while offset < bytes.len() {
        match bytes[offset] {
            b'"' => {
                // Jump over the string's body: only a quote or a backslash can end or escape it.
                let mut at = offset + 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[at..]) {
                        Some(n) if bytes[at + n] == b'\\' => at += n + 2,
                        Some(n) => {
                            at += n;
                            break;
                        }
                        None => return None, // unterminated: serde_json refuses it
                    }
                    if at >= bytes.len() {
                        return None;
                    }
                }
                offset = at;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Some(offset);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        offset += 1;
    }
    None
}

/// A `serde_json::Value` built by a visitor that refuses repeated object keys at any depth.
///
/// serde_json's own `Value` keeps the last of two equal keys; other parsers keep the first. Keys
/// arrive here already unescaped, so `"n\u0061me"` and `"name"` compare equal.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// Builds [`StrictValue`]s; see there.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                serde_json::map::Entry::Occupied(seen) => {
                    return Err(de::Error::custom(format!(
                        "duplicate key {}",
                        quote(seen.key())
                    )));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    let StrictValue(value) = access.next_value()?;
                    slot.insert(value);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// Step 4: one strictly read JSON value to a [`Message`], or a -32600 error.
fn shape(value: Value) -> Result<Message, ParseError> {
    let mut obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(ParseError::invalid("batches are not supported")),
        other => {
            return Err(ParseError::invalid(format!(
                "a message must be a JSON object, not {}",
                type_name(&other)
            )));
        }
    };
    let unknown: BTreeSet<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !MEMBERS.contains(k))
        .collect();
    if let Some(key) = unknown.first() {
        return Err(ParseError::invalid(format!(
            "unknown top-level member {} (allowed: jsonrpc, id, method, params, result, error)",
            quote(key)
        )));
    }
    match obj.remove("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        None => return Err(ParseError::invalid("missing \"jsonrpc\": \"2.0\"")),
        Some(_) => return Err(ParseError::invalid("\"jsonrpc\" must be exactly \"2.0\"")),
    }
    let id = match obj.remove("id") {
        None => None,
        Some(id) if is_valid_id(&id) => Some(id),
        Some(id) => return Err(ParseError::invalid(bad_id(&id))),
    };
    let method = match obj.remove("method") {
        None => None,
        Some(Value::String(m)) if !m.is_empty() => Some(m),
        Some(_) => return Err(ParseError::invalid("\"method\" must be a non-empty string")),
    };
    let params = match obj.remove("params") {
        None => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(p) => {
            return Err(ParseError::invalid(format!(
                "\"params\" must be an object or an array, not {}",
                type_name(&p)
            )));
        }
    };
    let result = obj.remove("result");
    let error = obj.remove("error");

    if let Some(method) = method {
        if result.is_some() || error.is_some() {
            return Err(ParseError::invalid(
                "a message with \"method\" must not carry \"result\" or \"error\"",
            ));
        }
        return Ok(match id {
            Some(id) => Message::Request { id, method, params },
            None => Message::Notification { method, params },
        });
    }
    let Some(id) = id else {
        return Err(ParseError::invalid(
            if result.is_some() || error.is_some() {
                "a response must carry an \"id\""
            } else {
                "missing \"method\""
            },
        ));
    };
    if params.is_some() {
        return Err(ParseError::invalid(
            "\"params\" without \"method\": a response must not carry \"params\"",
        ));
    }
    let body = match (result, error) {
        (Some(result), None) => one_member("result", result),
        (None, Some(error)) => {
            check_error_object(&error)?;
            one_member("error", error)
        }
        (Some(_), Some(_)) => {
            return Err(ParseError::invalid(
                "a response must carry exactly one of \"result\" and \"error\", not both",
            ));
        }
        (None, None) => {
            return Err(ParseError::invalid(
                "missing \"method\" (for a request) or \"result\"/\"error\" (for a response)",
            ));
        }
    };
    Ok(Message::Response { id, body })
}

/// An id is a string or an integer that fits i64 (not null, not a fraction, not a bool).
fn is_valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64(),
        _ => false,
    }
}

/// Says what is wrong with an id that [`is_valid_id`] refused.
fn bad_id(id: &Value) -> String {
    match id {
        Value::Number(n) if n.is_u64() => {
            "\"id\" integer is outside the signed 64-bit range".to_string()
        }
        Value::Number(n) => format!("\"id\" must be a string or an integer, not the number {n}"),
        other => format!(
            "\"id\" must be a string or an integer, not {}",
            type_name(other)
        ),
    }
}

/// A JSON-RPC error object: integer `code`, string `message`, optional `data`, nothing else.
fn check_error_object(error: &Value) -> Result<(), ParseError> {
    let Value::Object(members) = error else {
        return Err(ParseError::invalid("\"error\" must be an object"));
    };
    if let Some(key) = members
        .keys()
        .find(|k| !matches!(k.as_str(), "code" | "message" | "data"))
    {
        return Err(ParseError::invalid(format!(
            "unknown member {} in \"error\" (allowed: code, message, data)",
            quote(key)
        )));
    }
    if !members.get("code").is_some_and(|c| c.is_i64()) {
        return Err(ParseError::invalid("\"error.code\" must be an integer"));
    }
    if !members.get("message").is_some_and(Value::is_string) {
        return Err(ParseError::invalid("\"error.message\" must be a string"));
    }
    Ok(())
}

/// `{key: value}`.
fn one_member(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.into(), value);
    Value::Object(map)
}

/// The JSON type of a value, for error messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A client-supplied string quoted for an error message: JSON-escaped (so control characters
/// cannot forge log lines) and cut to [`QUOTE_LIMIT`] characters.
fn quote(s: &str) -> String {
    let cut: String = s.chars().take(QUOTE_LIMIT).collect();
    let quoted = Value::String(cut).to_string();
    if s.chars().nth(QUOTE_LIMIT).is_some() {
        format!("{quoted}...")
    } else {
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Expects `body` to be refused with `code` and a message containing `needle`.
    fn rejects(body: &[u8], code: i64, needle: &str) {
        match parse(body) {
            Ok(m) => panic!("accepted {:?}: {m:?}", String::from_utf8_lossy(body)),
            Err(e) => {
                assert_eq!(e.code, code, "{:?}: {e}", String::from_utf8_lossy(body));
                assert!(
                    e.message.contains(needle),
                    "{:?}: message {:?} lacks {needle:?}",
                    String::from_utf8_lossy(body),
                    e.message
                );
            }
        }
    }

    /// `depth` nested arrays inside params, so the whole message nests `depth + 2` deep.
    fn nested(depth: usize) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{"a":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn accepts_the_three_kinds() {
        let cases: &[(&str, Message)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                Message::Request {
                    id: json!(1),
                    method: "tools/list".into(),
                    params: None,
                },
            ),
            (
                r#" {"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"x"}} "#,
                Message::Request {
                    id: json!("a-1"),
                    method: "tools/call".into(),
                    params: Some(json!({"name": "x"})),
                },
            ),
            (
                "\r\n\t{\"jsonrpc\":\"2.0\",\"id\":-9223372036854775808,\"method\":\"ping\"}\n",
                Message::Request {
                    id: json!(i64::MIN),
                    method: "ping".into(),
                    params: None,
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":9223372036854775807,"method":"ping","params":[1]}"#,
                Message::Request {
                    id: json!(i64::MAX),
                    method: "ping".into(),
                    params: Some(json!([1])),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Message::Notification {
                    method: "notifications/initialized".into(),
                    params: None,
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#,
                Message::Response {
                    id: json!("s1"),
                    body: json!({"result": {}}),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"result":null}"#,
                Message::Response {
                    id: json!(7),
                    body: json!({"result": null}),
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no","data":[1]}}"#,
                Message::Response {
                    id: json!(7),
                    body: json!({"error": {"code": -1, "message": "no", "data": [1]}}),
                },
            ),
            (
                // Escapes decode; numbers with exponents are fine inside params.
                r#"{"jsonrpc":"2.0","id":"\u0041","method":"m","params":{"x":1e300,"y":"\ud83d\ude00"}}"#,
                Message::Request {
                    id: json!("A"),
                    method: "m".into(),
                    params: Some(json!({"x": 1e300, "y": "\u{1F600}"})),
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes()).as_ref(), Ok(want), "{body}");
        }
    }

    #[test]
    fn rejects_what_is_not_one_json_value() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   \r\n\t ", "empty"),
            (
                b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"method\":\"m\"}",
                "byte order mark",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\xFF\"}",
                "offset 35",
            ),
            // Overlong encoding of '/' (0xC0 0xAF) is not UTF-8.
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xC0\xAF\"}",
                "offset 34",
            ),
            // CESU-8 surrogate bytes are not UTF-8 either.
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xED\xA0\x80\"}",
                "offset 34",
            ),
            (b"{}{}", "trailing characters"),
            (
                b"{\"jsonrpc\":\"2.0\",\"method\":\"m\"} x",
                "trailing characters",
            ),
            (b"x{\"jsonrpc\":\"2.0\",\"method\":\"m\"}", "invalid JSON"),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"m\"", "invalid JSON"),
            (
                b"\xC2\xA0{\"jsonrpc\":\"2.0\",\"method\":\"m\"}",
                "invalid JSON",
            ),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",}", "invalid JSON"),
            (b"{'jsonrpc':'2.0'}", "invalid JSON"),
            (b"[", "invalid JSON"),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"n\":1e400}}",
                "out of range",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1e400,\"method\":\"m\"}",
                "out of range",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":NaN,\"method\":\"m\"}",
                "invalid JSON",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud800\"}",
                "escape",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\udc00x\"}",
                "escape",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"\\ud800\":1}}",
                "escape",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\x01b\"}",
                "control character",
            ),
        ];
        for (body, needle) in cases {
            rejects(body, PARSE_ERROR, needle);
        }
    }

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
                r#"duplicate key "id""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}"#,
                r#"duplicate key "method""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
                r#"duplicate key "name""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"rule":1,"rule":2}}}"#,
                r#"duplicate key "rule""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":[{"b":{"c":1,"c":1}}]}}"#,
                r#"duplicate key "c""#,
            ),
            // The same key after escapes are decoded.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
                r#"duplicate key "name""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"\u006detho\u0064":"m","method":"m"}"#,
                "duplicate key",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"\/":1,"/":2}}"#,
                r#"duplicate key "/""#,
            ),
            // Repeated even with the same value, and the empty key.
            (
                r#"{"jsonrpc":"2.0","method":"m","params":{"":1,"":1}}"#,
                r#"duplicate key """#,
            ),
        ];
        for (body, needle) in cases {
            rejects(body.as_bytes(), PARSE_ERROR, needle);
        }
        // Same key in sibling objects is fine.
        assert!(
            parse(br#"{"jsonrpc":"2.0","method":"m","params":{"a":{"k":1},"b":{"k":1}}}"#).is_ok()
        );
    }

    #[test]
    fn duplicate_key_message_is_escaped_and_bounded() {
        let key = format!("evil\n{}", "k".repeat(500));
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"m","params":{{{k}:1,{k}:2}}}}"#,
            k = Value::String(key).to_string()
        );
        let e = parse(body.as_bytes()).err().unwrap();
        assert!(!e.message.contains('\n'), "{}", e.message);
        assert!(e.message.len() < 200, "{}", e.message);
    }

    #[test]
    fn nesting_is_bounded_at_64() {
        assert!(parse(nested(MAX_DEPTH - 2).as_bytes()).is_ok());
        rejects(
            nested(MAX_DEPTH - 1).as_bytes(),
            PARSE_ERROR,
            "deeper than 64",
        );
        // Far beyond serde_json's own limit of 128, still our clear message.
        rejects(nested(10_000).as_bytes(), PARSE_ERROR, "deeper than 64");
        rejects(
            "[".repeat(100_000).as_bytes(),
            PARSE_ERROR,
            "deeper than 64",
        );
        // Brackets inside strings (also after escaped quotes) do not count.
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"m","params":{{"s":"\"{}\\"}}}}"#,
            "[{".repeat(200)
        );
        assert!(parse(body.as_bytes()).is_ok(), "{body}");
        // A string ending in an escaped backslash ends there: what follows counts.
        let after_escape = |depth: usize| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{"s":"x\\","a":{}{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        assert!(parse(after_escape(MAX_DEPTH - 2).as_bytes()).is_ok());
        rejects(
            after_escape(MAX_DEPTH - 1).as_bytes(),
            PARSE_ERROR,
            "deeper than 64",
        );
        // Exactly 64 objects deep, then 65.
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH - 1 {
            v = json!({ "a": v });
        }
        let ok = json!({"jsonrpc": "2.0", "method": "m", "params": v});
        assert!(parse(ok.to_string().as_bytes()).is_ok());
        let deep = json!({"jsonrpc": "2.0", "method": "m", "params": {"a": v}});
        rejects(deep.to_string().as_bytes(), PARSE_ERROR, "deeper than 64");
    }

    #[test]
    fn rejects_batches_and_non_objects() {
        let cases: &[(&str, &str)] = &[
            ("[]", "batches are not supported"),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                "batches are not supported",
            ),
            (" [ ] ", "batches are not supported"),
            ("null", "must be a JSON object"),
            ("1", "must be a JSON object"),
            (r#""{}""#, "must be a JSON object"),
            ("true", "must be a JSON object"),
        ];
        for (body, needle) in cases {
            rejects(body.as_bytes(), INVALID_REQUEST, needle);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let cases: &[(&str, &str)] = &[
            ("{}", "missing \"jsonrpc\""),
            (r#"{"id":1,"method":"m"}"#, "missing \"jsonrpc\""),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
                "exactly \"2.0\"",
            ),
            (
                r#"{"jsonrpc":"2.0 ","id":1,"method":"m"}"#,
                "exactly \"2.0\"",
            ),
            (r#"{"jsonrpc":2.0,"id":1,"method":"m"}"#, "exactly \"2.0\""),
            (r#"{"jsonrpc":null,"id":1,"method":"m"}"#, "exactly \"2.0\""),
            (r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#, "not null"),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,
                "not the number",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.0,"method":"m"}"#,
                "not the number",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1e3,"method":"m"}"#,
                "not the number",
            ),
            (
                r#"{"jsonrpc":"2.0","id":-0,"method":"m"}"#,
                "not the number -0.0",
            ),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"m"}"#,
                "not a boolean",
            ),
            (r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#, "not an object"),
            (r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#, "not an array"),
            (
                r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"m"}"#,
                "signed 64-bit",
            ),
            (
                r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"m"}"#,
                "signed 64-bit",
            ),
            // Beyond u64 serde_json reads an integer literal as a float.
            (
                r#"{"jsonrpc":"2.0","id":99999999999999999999,"method":"m"}"#,
                "id",
            ),
            (
                r#"{"jsonrpc":"2.0","id":-9223372036854775809,"method":"m"}"#,
                "id",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                "\"method\" must be a non-empty string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":""}"#,
                "\"method\" must be a non-empty string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":null}"#,
                "\"method\" must be a non-empty string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}"#,
                "\"params\" must be",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#,
                "\"params\" must be",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#,
                "\"params\" must be",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","extra":1}"#,
                "unknown top-level member \"extra\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","_meta":{}}"#,
                "unknown top-level member \"_meta\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","Method":"x"}"#,
                "unknown top-level member \"Method\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","result":{}}"#,
                "must not carry \"result\"",
            ),
            (
                r#"{"jsonrpc":"2.0","method":"m","error":{"code":1,"message":"x"}}"#,
                "must not carry",
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, "missing \"method\""),
            (r#"{"jsonrpc":"2.0"}"#, "missing \"method\""),
            (r#"{"jsonrpc":"2.0","params":{}}"#, "missing \"method\""),
            (r#"{"jsonrpc":"2.0","result":{}}"#, "must carry an \"id\""),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#,
                "not both",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"params":{}}"#,
                "must not carry \"params\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":"boom"}"#,
                "\"error\" must be an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"message":"x"}}"#,
                "error.code",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"x"}}"#,
                "error.code",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#,
                "error.message",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x","x":1}}"#,
                "unknown member \"x\"",
            ),
        ];
        for (body, needle) in cases {
            rejects(body.as_bytes(), INVALID_REQUEST, needle);
        }
    }

    #[test]
    fn to_value_is_canonical() {
        let cases: &[(&str, Value)] = &[
            (
                r#"  {"method":"tools/call","params":{"name":"t","arguments":{}},"id":3,"jsonrpc":"2.0"}"#,
                json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","arguments":{}}}),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}}"#,
                json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}}),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"r","result":{"a":1}}"#,
                json!({"jsonrpc":"2.0","id":"r","result":{"a":1}}),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"r","error":{"code":-32601,"message":"nope"}}"#,
                json!({"jsonrpc":"2.0","id":"r","error":{"code":-32601,"message":"nope"}}),
            ),
        ];
        for (body, want) in cases {
            let message = parse(body.as_bytes()).unwrap();
            assert_eq!(&message.to_value(), want, "{body}");
            // What is forwarded parses back to the same message.
            let again = parse(message.to_value().to_string().as_bytes()).unwrap();
            assert_eq!(again, message);
        }
    }

    #[test]
    fn accessors() {
        let req = parse(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}}"#).unwrap();
        assert_eq!(req.id(), Some(&json!(1)));
        assert_eq!(req.method(), Some("m"));
        assert_eq!(req.params(), Some(&json!({"a": 1})));
        assert!(!req.is_error_response());
        let note = parse(br#"{"jsonrpc":"2.0","method":"n"}"#).unwrap();
        assert_eq!(
            (note.id(), note.method(), note.params()),
            (None, Some("n"), None)
        );
        let err = parse(br#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}"#).unwrap();
        assert_eq!((err.id(), err.method()), (Some(&json!(2)), None));
        assert!(err.is_error_response());
    }

    #[test]
    fn id_of_is_best_effort() {
        let cases: &[(&[u8], Option<Value>)] = &[
            (br#"{"jsonrpc":"1.0","id":5,"method":"m"}"#, Some(json!(5))),
            (br#"{"id":"x","extra":1}"#, Some(json!("x"))),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}"#,
                Some(json!(1)),
            ),
            (br#"{"id":null}"#, None),
            (br#"{"id":1.5}"#, None),
            (br#"{"id":{"a":1}}"#, None),
            (br#"{"id":9223372036854775808}"#, None),
            (br#"{"id":1,"id":2}"#, None),
            (br#"{"id":1"#, None),
            (br#"[{"id":1}]"#, None),
            (b"\xEF\xBB\xBF{\"id\":1}", None),
            (b"{\"id\":1,\"x\":\"\xFF\"}", None),
            (b"", None),
        ];
        for (body, want) in cases {
            assert_eq!(&id_of(body), want, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn response_builders() {
        assert_eq!(
            error_response(Some(&json!(4)), INVALID_PARAMS, "Unknown tool: x"),
            json!({"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"Unknown tool: x"}})
        );
        assert_eq!(
            error_response(None, PARSE_ERROR, "bad"),
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}})
        );
        assert_eq!(
            result_response(&json!("a"), json!({"tools": []})),
            json!({"jsonrpc":"2.0","id":"a","result":{"tools":[]}})
        );
        // A builder's output is itself a message the parser accepts.
        let built = error_response(Some(&json!(4)), -32602, "x").to_string();
        assert!(parse(built.as_bytes()).is_ok());
        // Upstream text is spliced in byte for byte, next to the agent's own id.
        let text = RawValue::from_string(r#"{"n": 1.50}"#.to_string()).unwrap();
        let relayed = relayed_response(&json!("a\"b"), Answered::Result, &text);
        assert_eq!(
            String::from_utf8(relayed).unwrap(),
            r#"{"jsonrpc":"2.0","id":"a\"b","result":{"n": 1.50}}"#
        );
        let relayed = relayed_response(&json!(7), Answered::Error, &text);
        assert_eq!(
            String::from_utf8(relayed).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"error":{"n": 1.50}}"#
        );
        let joined = assembled_result_response(&json!(1), r#"{"tools":[]}"#);
        assert!(parse(&joined).is_ok());
    }

    #[test]
    fn forwardable_notifications() {
        for method in [
            "notifications/initialized",
            "notifications/cancelled",
            "notifications/progress",
            "notifications/roots/list_changed",
        ] {
            assert!(is_forwardable_notification(method), "{method}");
        }
        for method in [
            "tools/call",
            "notifications/message",
            "notifications/tools/list_changed",
            "notifications/initialized ",
            "Notifications/initialized",
            "notifications/",
            "",
        ] {
            assert!(!is_forwardable_notification(method), "{method}");
        }
    }
}
