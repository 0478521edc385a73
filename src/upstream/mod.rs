//! The MCP server the gateway fronts: one logical upstream session (a stdio child or a
//! Streamable HTTP endpoint) shared by every agent session, with id rewriting, timeouts,
//! cancellation and (for stdio) supervision with restarts.
//!
//! # One upstream session
//! The gateway opens exactly one MCP session with the upstream and initializes it once (again
//! after every restart of a stdio child, or when an HTTP upstream forgets the session). Every
//! agent session's requests go through it. The upstream's `InitializeResult` is cached and
//! available through [`Upstream::initialize_result`]; agents are answered from that cache and
//! their own `initialize` never reaches the upstream.
//!
//! # Id rewriting
//! Agents choose their own JSON-RPC ids, and two agents may well both use `1`. The caller's id
//! therefore never goes upstream: [`Upstream::call`] gives every request a fresh number from a
//! gateway-wide counter, remembers it in a table of pending calls, and hands the matching
//! response (result or error object) back to the one waiting caller. The server code puts the
//! agent's own id back on the answer. Because only the gateway's ids travel upstream:
//! - a cancelled or timed-out call sends `notifications/cancelled` with the *upstream* id;
//! - responses for ids nobody waits for any more (after a timeout) are dropped and reported;
//! - server-to-client requests (sampling, roots, elicitation) cannot be routed to an agent yet,
//!   so they are answered at once with JSON-RPC error -32601 and the upstream never waits.
//!
//! Failures come back as [`UpstreamError`]; what happens on the way is reported on the event
//! channel as [`UpstreamEvent`]s, for the gateway's log.

mod http;
mod stdio;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{UpstreamConfig, UpstreamKind};

/// The protocol revision the gateway asks the upstream for.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// The longest line (stdio) or response body (HTTP) accepted from the upstream.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The deepest nesting of a relayed `result` or `error`: the agent's whole message (one level
/// more) then stays within the 127 levels serde_json parses, as when answers were trees.
pub const MAX_ANSWER_DEPTH: usize = 126;

/// JSON-RPC error code used to refuse the upstream's server-to-client requests.
pub const NOT_SUPPORTED_CODE: i64 = -32601;

/// The message refusing the upstream's server-to-client requests.
pub const NOT_SUPPORTED_MESSAGE: &str = "not supported through mcpgw";

/// What the upstream answered to one request.
///
/// Both members are kept as the upstream wrote them: validated JSON text, never built into a
/// tree. Most answers go back to the agent untouched, so they are spliced into the reply as
/// they are (cheaper for multi-KB results, and numbers keep every digit). Lists are filtered
/// entry by entry as text (`mcp::filter`); only `initialize`, which the gateway reads, is
/// parsed, with [`Outcome::parse`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The `result` member of the response.
    Result(Box<RawValue>),
    /// The JSON-RPC error object (`{code, message, data?}`) of the response.
    Error(Box<RawValue>),
}

impl Outcome {
    /// The `result` or `error` member as a tree.
    pub fn parse(raw: &RawValue) -> Result<Value, UpstreamError> {
        serde_json::from_str(raw.get())
            .map_err(|e| UpstreamError::Protocol(format!("unreadable answer: {e}")))
    }

    /// An outcome from trees (for tests and for answers the gateway assembles).
    pub fn result(value: &Value) -> Outcome {
        Outcome::Result(to_raw(value))
    }
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Result(a), Outcome::Result(b)) | (Outcome::Error(a), Outcome::Error(b)) => {
                a.get() == b.get()
            }
            _ => false,
        }
    }
}

/// A tree as raw JSON text. Serializing a `Value` cannot fail (its map keys are strings).
fn to_raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_default()
}

/// Why a request got no answer from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The upstream could not be reached or started (or is restarting for too long).
    Unavailable(String),
    /// No answer within the call timeout (the request was cancelled upstream).
    Timeout,
    /// The upstream died (or dropped the connection) while the request was pending.
    Died,
    /// The upstream broke the protocol.
    Protocol(String),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Unavailable(why) => write!(f, "upstream unavailable: {why}"),
            UpstreamError::Timeout => write!(f, "upstream did not answer in time"),
            UpstreamError::Died => write!(f, "upstream exited while the request was pending"),
            UpstreamError::Protocol(why) => write!(f, "upstream protocol error: {why}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// Things worth logging that happen in the upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// The upstream was (re)started and initialized (`pid` is `None` for HTTP).
    Started { pid: Option<u32> },
    /// The child exited on its own; `pending` calls were answered with [`UpstreamError::Died`].
    Exited { status: String, pending: usize },
    /// The child was stopped by the gateway's shutdown; `pending` calls were failed.
    Stopped { status: String, pending: usize },
    /// The child will be restarted after this delay.
    Restarting { after: Duration },
    /// A stdout line that is not a JSON-RPC message (skipped).
    NonJsonLine(String),
    /// One line the child wrote on stderr.
    Stderr(String),
    /// A message from the upstream the gateway does not pass on (a server notification, a
    /// server request it refused, a response nobody waits for); the text names it.
    Dropped(String),
}

/// State shared by both transports.
pub(crate) struct Common {
    pub(crate) events: UnboundedSender<UpstreamEvent>,
    pub(crate) call_timeout: Duration,
    next_id: AtomicU64,
    init_result: std::sync::Mutex<Option<Value>>,
}

impl Common {
    fn new(events: UnboundedSender<UpstreamEvent>, call_timeout: Duration) -> Common {
        Common {
            events,
            call_timeout,
            next_id: AtomicU64::new(1),
            init_result: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn event(&self, event: UpstreamEvent) {
        let _ = self.events.send(event);
    }

    pub(crate) fn set_init_result(&self, result: Value) {
        if let Ok(mut r) = self.init_result.lock() {
            *r = Some(result);
        }
    }

    pub(crate) fn init_result(&self) -> Option<Value> {
        self.init_result.lock().ok().and_then(|r| r.clone())
    }
}

enum Transport {
    Stdio(stdio::StdioUpstream),
    Http(http::HttpUpstream),
}

struct Inner {
    common: Arc<Common>,
    transport: Transport,
}

/// One logical MCP session with the upstream server, shared by every agent session.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl Upstream {
    /// Starts the upstream (spawns the child / checks the URL) and initializes it once: sends
    /// `initialize` then `notifications/initialized`. Returns `Err` if the first start fails.
    pub async fn start(
        cfg: &UpstreamConfig,
        events: UnboundedSender<UpstreamEvent>,
    ) -> Result<Upstream, UpstreamError> {
        let common = Arc::new(Common::new(events, cfg.call_timeout));
        let transport = match &cfg.kind {
            UpstreamKind::Stdio {
                command, args, env, ..
            } => Transport::Stdio(
                stdio::StdioUpstream::start(common.clone(), command, args, env).await?,
            ),
            UpstreamKind::Http { url } => {
                Transport::Http(http::HttpUpstream::start(common.clone(), url).await?)
            }
        };
        Ok(Upstream {
            inner: Arc::new(Inner { common, transport }),
        })
    }

    /// The upstream's `InitializeResult`, cached from the last (re)initialization.
    pub fn initialize_result(&self) -> Option<Value> {
        self.inner.common.init_result()
    }

    /// Sends one request and waits for its response. The upstream id is the gateway's own; the
    /// caller's id never goes upstream. Cancellation-safe: dropping the future removes the
    /// pending entry and sends `notifications/cancelled` upstream. Times out after the
    /// configured call timeout with [`UpstreamError::Timeout`] (and cancels upstream too).
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Outcome, UpstreamError> {
        self.call_ref(method, params.as_ref()).await
    }

    /// [`Upstream::call`] with borrowed params: they are serialized straight into the request
    /// text, never cloned.
    pub async fn call_ref(
        &self,
        method: &str,
        params: Option<&Value>,
    ) -> Result<Outcome, UpstreamError> {
        let outcome = match &self.inner.transport {
            Transport::Stdio(s) => s.call(method, params).await,
            Transport::Http(h) => h.call(method, params).await,
        }?;
        // Relayed text is validated but not built into a tree, so nothing here bounds its
        // nesting: keep what a tree parse allowed, for the agents' parsers' sake.
        let (Outcome::Result(raw) | Outcome::Error(raw)) = &outcome;
        if crate::mcp::message::deeper_than(raw.get(), MAX_ANSWER_DEPTH).is_some() {
            return Err(UpstreamError::Protocol(format!(
                "the answer nests deeper than {MAX_ANSWER_DEPTH} levels"
            )));
        }
        Ok(outcome)
    }

    /// Forwards a client notification (e.g. `notifications/roots/list_changed`). Best effort.
    pub async fn notify(&self, method: &str, params: Option<Value>) {
        match &self.inner.transport {
            Transport::Stdio(s) => s.notify(method, params.as_ref()),
            Transport::Http(h) => h.notify(method, params.as_ref()).await,
        }
    }

    /// Stops the upstream cleanly (stdio: close stdin, SIGTERM, wait up to 2 s, SIGKILL, reap;
    /// HTTP: end the session with DELETE). Idempotent; calls afterwards get `Unavailable`.
    pub async fn shutdown(&self) {
        match &self.inner.transport {
            Transport::Stdio(s) => s.shutdown().await,
            Transport::Http(h) => h.shutdown().await,
        }
    }

    /// The process id of the current child (`None` for HTTP or while it is down).
    pub fn child_pid(&self) -> Option<u32> {
        match &self.inner.transport {
            Transport::Stdio(s) => s.child_pid(),
            Transport::Http(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the transports.

/// The params of the gateway's `initialize` request.
pub(crate) fn initialize_params() -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcpgw", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// The shape of an outgoing JSON-RPC request or notification, serialized straight to text
/// (no intermediate `Map`, no `Display` round trip).
#[derive(serde::Serialize)]
struct OutgoingMessage<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Value>,
}

/// A JSON-RPC request (with `id`) or notification (without) as one compact JSON text.
pub(crate) fn encode(id: Option<u64>, method: &str, params: Option<&Value>) -> String {
    let msg = OutgoingMessage {
        jsonrpc: "2.0",
        id,
        method,
        params,
    };
    // Serializing a `Value` and plain strings cannot fail (map keys are strings).
    serde_json::to_string(&msg).unwrap_or_default()
}

/// The `notifications/cancelled` message for one upstream request id.
pub(crate) fn cancelled(id: u64, reason: &str) -> String {
    encode(
        None,
        "notifications/cancelled",
        Some(&json!({"requestId": id, "reason": reason})),
    )
}

/// The error response refusing one server-to-client request.
pub(crate) fn refuse(id: &Value) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": NOT_SUPPORTED_CODE, "message": NOT_SUPPORTED_MESSAGE},
    })
    .to_string()
}

/// One message read from the upstream, classified.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A response to one of our requests (numeric id).
    Response { id: u64, outcome: Outcome },
    /// A response whose id is not one of ours.
    StrayResponse(Value),
    /// A server-to-client request.
    Request { id: Value, method: String },
    /// A server notification.
    Notification { method: String },
    /// A JSON-RPC object that is none of the above.
    Invalid(String),
}

/// The members of an upstream message the gateway routes by. `result` and `error` stay
/// text borrowed from the line; unknown members are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, deserialize_with = "present")]
    jsonrpc: Option<serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    method: Option<Value>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// `Some` for a member that is there, even when it is `null` (serde's `Option` would read
/// `null` as absent, and `"id": null` is not the same as no id).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Classifies one message from the upstream. `None`: the text is not a JSON-RPC object (not
/// JSON, not an object, a member twice, or no `"jsonrpc"`), and the caller reports it.
pub(crate) fn classify(text: &[u8]) -> Option<Incoming> {
    // A struct also deserializes from an array, by position: only objects are messages.
    if text.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let msg: Envelope<'_> = serde_json::from_slice(text).ok()?;
    msg.jsonrpc.as_ref()?;
    let method = msg
        .method
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(match (method, msg.id) {
        (Some(method), Some(id)) => Incoming::Request { id, method },
        (Some(method), None) => Incoming::Notification { method },
        (None, Some(id)) => {
            let outcome = if let Some(r) = msg.result {
                Outcome::Result(r.to_owned())
            } else if let Some(e) = msg.error {
                Outcome::Error(e.to_owned())
            } else {
                return Some(Incoming::Invalid(format!(
                    "response without result or error (id {id})"
                )));
            };
            match id.as_u64() {
                Some(id) => Incoming::Response { id, outcome },
                None => Incoming::StrayResponse(id),
            }
        }
        (None, None) => Incoming::Invalid("message without method or id".into()),
    })
}

/// Shortens text for an event, at a character boundary.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 512;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(text: &str) -> Incoming {
        classify(text.as_bytes()).expect("a JSON-RPC object")
    }

    #[test]
    fn classifies_messages() {
        let r = classified(r#"{"jsonrpc":"2.0","id":7,"result":{"a":1}}"#);
        assert!(matches!(
            r,
            Incoming::Response {
                id: 7,
                outcome: Outcome::Result(_)
            }
        ));
        let r = classified(r#"{"jsonrpc":"2.0","id":7,"error":{"code":1}}"#);
        assert!(matches!(
            r,
            Incoming::Response {
                id: 7,
                outcome: Outcome::Error(_)
            }
        ));
        let r = classified(r#"{"jsonrpc":"2.0","id":"x","result":{}}"#);
        assert!(matches!(r, Incoming::StrayResponse(_)));
        let r = classified(r#"{"jsonrpc":"2.0","id":"s1","method":"roots/list"}"#);
        assert!(matches!(r, Incoming::Request { .. }));
        let r = classified(r#"{"jsonrpc":"2.0","method":"notifications/message"}"#);
        assert!(matches!(r, Incoming::Notification { .. }));
        assert!(matches!(
            classified(r#"{"jsonrpc":"2.0"}"#),
            Incoming::Invalid(_)
        ));
        // `null` is a value: a request with a null id is still a request.
        let r = classified(r#"{"jsonrpc":"2.0","id":null,"method":"roots/list"}"#);
        assert!(matches!(
            r,
            Incoming::Request {
                id: Value::Null,
                ..
            }
        ));
        let r = classified(r#" {"jsonrpc":"2.0","id":3,"result":null}"#);
        assert!(
            matches!(r, Incoming::Response { id: 3, outcome: Outcome::Result(ref v) } if v.get() == "null")
        );
    }

    #[test]
    fn results_keep_the_upstream_text() {
        let text = r#"{"jsonrpc":"2.0","id":4,"result":{"n":123456789012345678901234567890,"s":"\u00e9\n"}}"#;
        let Incoming::Response {
            outcome: Outcome::Result(raw),
            ..
        } = classified(text)
        else {
            panic!("not a response");
        };
        assert_eq!(
            raw.get(),
            r#"{"n":123456789012345678901234567890,"s":"\u00e9\n"}"#
        );
    }

    #[test]
    fn non_messages_are_not_classified() {
        for text in [
            "",
            "not json",
            r#"{"id":1,"result":{}}"#,
            r#"["2.0",1,null,{}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":}}"#,
        ] {
            assert!(classify(text.as_bytes()).is_none(), "{text}");
        }
    }

    #[test]
    fn encodes_requests_and_cancellations() {
        let line: Value = serde_json::from_str(&encode(Some(3), "ping", None)).unwrap();
        assert_eq!(line, json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
        let c: Value = serde_json::from_str(&cancelled(9, "timeout")).unwrap();
        assert_eq!(c["params"]["requestId"], 9);
        assert!(c.get("id").is_none());
        let r: Value = serde_json::from_str(&refuse(&json!("s"))).unwrap();
        assert_eq!(r["error"]["code"], NOT_SUPPORTED_CODE);
    }

    #[test]
    fn excerpt_respects_char_boundaries() {
        let s = "é".repeat(600);
        assert!(excerpt(&s).starts_with('é'));
        assert_eq!(excerpt("short"), "short");
    }
}
