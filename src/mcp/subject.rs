//! What a message asks for, reduced to what the policy decides on: the [`Subject`].
//!
//! Only four methods act on a named thing and must be inspected: `tools/call` (a tool and its
//! arguments), `prompts/get` (a prompt and its arguments), `resources/read|subscribe|unsubscribe`
//! (a URI) and `completion/complete` (a prompt name or resource URI). Their params must have the
//! exact shape the spec gives, or the request is refused with -32602 before policy sees it.
//! Every other method is a plain [`Subject::Method`].
//!
//! Names are borrowed, never normalized: no trimming, no case folding, no Unicode mapping. Policy
//! compares exact bytes, so `" firewall_delete_rule"` or a look-alike in another script is simply
//! another name — unknown, hence denied by default.

use std::fmt;

use serde_json::{Map, Value};

use super::message::INVALID_PARAMS;

/// Longest tool or prompt name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The thing a request acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject<'a> {
    /// `tools/call`.
    Tool {
        name: &'a str,
        arguments: Option<&'a Map<String, Value>>,
    },
    /// `prompts/get`.
    Prompt {
        name: &'a str,
        arguments: Option<&'a Map<String, Value>>,
    },
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
    Resource { uri: &'a str },
    /// `completion/complete` (the `ref`'s name or uri).
    Completion { reference: &'a str },
    /// Any other method (initialize, ping, the list methods, notifications).
    Method { method: &'a str },
}

impl Subject<'_> {
    /// A short label for logs and policy: `tool`, `prompt`, `resource`, `completion`, `method`.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Tool { .. } => "tool",
            Subject::Prompt { .. } => "prompt",
            Subject::Resource { .. } => "resource",
            Subject::Completion { .. } => "completion",
            Subject::Method { .. } => "method",
        }
    }

    /// The named thing acted on: the tool or prompt name, the resource URI, or the completion
    /// reference. `None` for a plain method (its name is the method itself).
    pub fn name(&self) -> Option<&str> {
        match self {
            Subject::Tool { name, .. } | Subject::Prompt { name, .. } => Some(name),
            Subject::Resource { uri } => Some(uri),
            Subject::Completion { reference } => Some(reference),
            Subject::Method { .. } => None,
        }
    }
}

/// Why a request's params do not have the shape its method requires (always -32602).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectError {
    /// JSON-RPC error code: -32602 (invalid params).
    pub code: i64,
    pub message: String,
}

impl SubjectError {
    fn invalid(message: impl Into<String>) -> Self {
        SubjectError {
            code: INVALID_PARAMS,
            message: message.into(),
        }
    }
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for SubjectError {}

/// Reduces a method and its params to the [`Subject`] policy decides on.
pub fn subject_of<'a>(
    method: &'a str,
    params: Option<&'a Value>,
) -> Result<Subject<'a>, SubjectError> {
    match method {
        "tools/call" => {
            let params = params_object(method, params)?;
            Ok(Subject::Tool {
                name: name_of(method, params)?,
                arguments: arguments_of(method, params)?,
            })
        }
        "prompts/get" => {
            let params = params_object(method, params)?;
            Ok(Subject::Prompt {
                name: name_of(method, params)?,
                arguments: arguments_of(method, params)?,
            })
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let params = params_object(method, params)?;
            Ok(Subject::Resource {
                uri: uri_of(method, params)?,
            })
        }
        "completion/complete" => {
            let params = params_object(method, params)?;
            Ok(Subject::Completion {
                reference: reference_of(params)?,
            })
        }
        _ => Ok(Subject::Method { method }),
    }
}

/// The params of an inspected method: present, and an object.
fn params_object<'a>(
    method: &str,
    params: Option<&'a Value>,
) -> Result<&'a Map<String, Value>, SubjectError> {
    match params {
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(SubjectError::invalid(format!(
            "{method}: params must be an object"
        ))),
        None => Err(SubjectError::invalid(format!(
            "{method}: params are required"
        ))),
    }
}

/// `params.name`: a non-empty string of at most [`MAX_NAME_BYTES`] bytes, taken as is.
fn name_of<'a>(method: &str, params: &'a Map<String, Value>) -> Result<&'a str, SubjectError> {
    match params.get("name") {
        Some(Value::String(name)) if name.is_empty() => Err(SubjectError::invalid(format!(
            "{method}: params.name must not be empty"
        ))),
        Some(Value::String(name)) if name.len() > MAX_NAME_BYTES => Err(SubjectError::invalid(
            format!("{method}: params.name is longer than {MAX_NAME_BYTES} bytes"),
        )),
        Some(Value::String(name)) => Ok(name),
        Some(_) => Err(SubjectError::invalid(format!(
            "{method}: params.name must be a string"
        ))),
        None => Err(SubjectError::invalid(format!(
            "{method}: params.name is required"
        ))),
    }
}

/// `params.arguments`: absent, or an object (never null, an array or a string).
fn arguments_of<'a>(
    method: &str,
    params: &'a Map<String, Value>,
) -> Result<Option<&'a Map<String, Value>>, SubjectError> {
    match params.get("arguments") {
        None => Ok(None),
        Some(Value::Object(arguments)) => Ok(Some(arguments)),
        Some(_) => Err(SubjectError::invalid(format!(
            "{method}: params.arguments must be an object"
        ))),
    }
}

/// `params.uri`: a non-empty string.
fn uri_of<'a>(method: &str, params: &'a Map<String, Value>) -> Result<&'a str, SubjectError> {
    match params.get("uri") {
        Some(Value::String(uri)) if !uri.is_empty() => Ok(uri),
        Some(Value::String(_)) => Err(SubjectError::invalid(format!(
            "{method}: params.uri must not be empty"
        ))),
        Some(_) => Err(SubjectError::invalid(format!(
            "{method}: params.uri must be a string"
        ))),
        None => Err(SubjectError::invalid(format!(
            "{method}: params.uri is required"
        ))),
    }
}

/// `params.ref` of `completion/complete`: `{"type": "ref/prompt", "name": ...}` or
/// `{"type": "ref/resource", "uri": ...}`; the name or uri is the reference.
fn reference_of(params: &Map<String, Value>) -> Result<&str, SubjectError> {
    const METHOD: &str = "completion/complete";
    let reference = match params.get("ref") {
        Some(Value::Object(reference)) => reference,
        Some(_) => {
            return Err(SubjectError::invalid(format!(
                "{METHOD}: params.ref must be an object"
            )));
        }
        None => {
            return Err(SubjectError::invalid(format!(
                "{METHOD}: params.ref is required"
            )));
        }
    };
    let (key, value) = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => ("name", reference.get("name")),
        Some("ref/resource") => ("uri", reference.get("uri")),
        _ => {
            return Err(SubjectError::invalid(format!(
                "{METHOD}: params.ref.type must be \"ref/prompt\" or \"ref/resource\""
            )));
        }
    };
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(SubjectError::invalid(format!(
            "{METHOD}: params.ref.{key} must be a non-empty string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Runs `subject_of` on a method and params written as JSON.
    fn subject(method: &str, params: &Value) -> Result<(String, Option<String>), SubjectError> {
        let params = (!params.is_null()).then_some(params);
        subject_of(method, params).map(|s| (s.kind().to_string(), s.name().map(str::to_string)))
    }

    #[test]
    fn extracts_subjects() {
        let cases: &[(&str, Value, &str, Option<&str>)] = &[
            (
                "tools/call",
                json!({"name": "firewall_list_rules"}),
                "tool",
                Some("firewall_list_rules"),
            ),
            (
                "tools/call",
                json!({"name": "t", "arguments": {"a": [1]}}),
                "tool",
                Some("t"),
            ),
            (
                "tools/call",
                json!({"name": "t", "arguments": {}, "_meta": {"progressToken": 1}}),
                "tool",
                Some("t"),
            ),
            (
                "prompts/get",
                json!({"name": "p", "arguments": {"k": "v"}}),
                "prompt",
                Some("p"),
            ),
            ("prompts/get", json!({"name": "p"}), "prompt", Some("p")),
            (
                "resources/read",
                json!({"uri": "file:///etc/pf.conf"}),
                "resource",
                Some("file:///etc/pf.conf"),
            ),
            (
                "resources/subscribe",
                json!({"uri": "x://a"}),
                "resource",
                Some("x://a"),
            ),
            (
                "resources/unsubscribe",
                json!({"uri": "x://a"}),
                "resource",
                Some("x://a"),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": ""}}),
                "completion",
                Some("p"),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "x://{id}"}}),
                "completion",
                Some("x://{id}"),
            ),
            (
                "initialize",
                json!({"protocolVersion": "2025-06-18"}),
                "method",
                None,
            ),
            ("tools/list", Value::Null, "method", None),
            ("ping", json!([1, 2]), "method", None),
            ("notifications/initialized", Value::Null, "method", None),
            ("Tools/call", json!("anything"), "method", None),
        ];
        for (method, params, kind, name) in cases {
            let got = subject(method, params);
            assert_eq!(
                got,
                Ok((kind.to_string(), name.map(str::to_string))),
                "{method} {params}"
            );
        }
    }

    #[test]
    fn tool_subject_borrows_arguments() {
        let params = json!({"name": "t", "arguments": {"rule": 7}});
        let Ok(Subject::Tool { name, arguments }) = subject_of("tools/call", Some(&params)) else {
            panic!("not a tool");
        };
        assert_eq!(name, "t");
        assert_eq!(arguments.and_then(|a| a.get("rule")), Some(&json!(7)));
        assert_eq!(
            subject_of("ping", None),
            Ok(Subject::Method { method: "ping" })
        );
    }

    #[test]
    fn names_are_not_normalized() {
        for name in [
            "Firewall_delete_rule",
            " firewall_delete_rule",
            "firewall_delete_rule ",
            "firewall_delete_rule\n",
            "fіrewall_delete_rule", // Cyrillic і (U+0456)
            "firewall_delete_rule\u{200b}",
            "firewall_delete_rul\u{0065}\u{0301}",
        ] {
            let params = json!({"name": name});
            let subject = subject_of("tools/call", Some(&params));
            assert_eq!(subject.as_ref().map(Subject::name), Ok(Some(name)));
            assert_ne!(
                subject.ok().and_then(|s| s.name().map(str::to_string)),
                Some("firewall_delete_rule".into())
            );
        }
    }

    #[test]
    fn rejects_bad_params() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let longest = "x".repeat(MAX_NAME_BYTES);
        // 86 three-byte characters: 258 bytes, 86 chars.
        let long_utf8 = "\u{20ac}".repeat(86);
        let cases: &[(&str, Value, &str)] = &[
            ("tools/call", Value::Null, "params are required"),
            (
                "tools/call",
                json!([{"name": "t"}]),
                "params must be an object",
            ),
            ("tools/call", json!({}), "params.name is required"),
            ("tools/call", json!({"name": ""}), "must not be empty"),
            (
                "tools/call",
                json!({"name": 1}),
                "params.name must be a string",
            ),
            (
                "tools/call",
                json!({"name": null}),
                "params.name must be a string",
            ),
            (
                "tools/call",
                json!({"name": ["t"]}),
                "params.name must be a string",
            ),
            ("tools/call", json!({"name": long}), "longer than 256 bytes"),
            (
                "tools/call",
                json!({"name": long_utf8}),
                "longer than 256 bytes",
            ),
            (
                "tools/call",
                json!({"name": "t", "arguments": []}),
                "arguments must be an object",
            ),
            (
                "tools/call",
                json!({"name": "t", "arguments": "{}"}),
                "arguments must be an object",
            ),
            (
                "tools/call",
                json!({"name": "t", "arguments": null}),
                "arguments must be an object",
            ),
            (
                "prompts/get",
                json!({"arguments": {}}),
                "params.name is required",
            ),
            (
                "prompts/get",
                json!({"name": "p", "arguments": [1]}),
                "arguments must be an object",
            ),
            ("resources/read", json!({}), "params.uri is required"),
            ("resources/read", json!({"uri": ""}), "must not be empty"),
            (
                "resources/subscribe",
                json!({"uri": 5}),
                "params.uri must be a string",
            ),
            (
                "resources/unsubscribe",
                json!("x://a"),
                "params must be an object",
            ),
            ("completion/complete", json!({}), "params.ref is required"),
            (
                "completion/complete",
                json!({"ref": "p"}),
                "params.ref must be an object",
            ),
            (
                "completion/complete",
                json!({"ref": {"name": "p"}}),
                "params.ref.type",
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/tool", "name": "p"}}),
                "params.ref.type",
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "uri": "x://a"}}),
                "params.ref.name",
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "name": "p"}}),
                "params.ref.uri",
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": ""}}),
                "params.ref.name",
            ),
        ];
        for (method, params, needle) in cases {
            match subject(method, params) {
                Ok(s) => panic!("{method} {params}: accepted as {s:?}"),
                Err(e) => {
                    assert_eq!(e.code, -32602, "{method} {params}");
                    assert!(
                        e.message.contains(needle),
                        "{method} {params}: {}",
                        e.message
                    );
                    assert!(e.message.starts_with(method), "{}", e.message);
                }
            }
        }
        assert!(subject("tools/call", &json!({"name": longest})).is_ok());
    }
}
