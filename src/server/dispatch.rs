//! One parsed message from one authenticated agent: decide, forward, filter, record.
//!
//! This is the policy enforcement point. It knows nothing of HTTP: it gets a [`Message`]
//! that has already been parsed exactly once, asks the policy about the very values it will
//! forward, and sends upstream only after an `Allow`. Every request ends in exactly one
//! decision record, whatever the outcome.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::audit::{DecisionRecord, Verdict};
use crate::identity::Identity;
use crate::mcp::filter::{ListKind, Page, join_and_filter, list_kind};
use crate::mcp::message::{
    Answered, Message, assembled_result_response, error_response, relayed_response, result_response,
};
use crate::mcp::subject::{Subject, subject_of};
use crate::policy::Decision;
use crate::upstream::{Outcome, UpstreamError};

use super::session::Session;
use super::{Runtime, Shared};

/// Protocol revisions the gateway speaks with agents, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The revision offered when an agent asks for one we do not know.
pub const LATEST_VERSION: &str = "2025-11-25";

/// JSON-RPC codes the gateway answers with.
pub mod codes {
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
}

/// Who is asking, from where, in which session.
pub struct CallContext {
    pub identity: Identity,
    pub source: IpAddr,
    pub session: Option<Arc<Session>>,
    pub started: Instant,
}

/// What the transport should send back.
#[derive(Debug)]
pub enum Reply {
    /// A JSON-RPC response (always HTTP 200: denials are answers, not transport failures).
    Json(Value),
    /// A JSON-RPC response already written out (an upstream answer relayed), HTTP 200.
    Serialized(Vec<u8>),
    /// A notification or response was taken: HTTP 202, no body.
    Accepted,
    /// `initialize` succeeded: the response and the new session's id.
    Initialized { body: Value, session_id: String },
    /// The session table is full: HTTP 503.
    SessionsFull,
}

/// Handles one message. `runtime` is the policy snapshot the whole request is decided under.
pub async fn dispatch(
    shared: &Shared,
    runtime: &Runtime,
    ctx: &CallContext,
    message: Message,
) -> Reply {
    match message {
        Message::Request { id, method, params } => {
            request(shared, runtime, ctx, id, &method, params).await
        }
        Message::Notification { method, params } => {
            if method == "notifications/cancelled" {
                let target = params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .map(request_key);
                if let (Some(target), Some(session)) = (target, &ctx.session) {
                    session.cancel(&target);
                }
            }
            // Other client notifications concern the agent's own session with the gateway;
            // the upstream session is shared, so they are not forwarded.
            Reply::Accepted
        }
        // The gateway never sends agents requests, so there is nothing to answer.
        Message::Response { .. } => Reply::Accepted,
    }
}

/// The key an in-flight request is known by for cancellation.
fn request_key(id: &Value) -> String {
    id.to_string()
}

async fn request(
    shared: &Shared,
    runtime: &Runtime,
    ctx: &CallContext,
    id: Value,
    method: &str,
    params: Option<Value>,
) -> Reply {
    let mut record = DecisionRecord::new(Verdict::Deny, method);
    record.identity = Some(ctx.identity.name.clone());
    record.source = Some(ctx.source);
    let mut pending = PendingRecord {
        shared,
        started: ctx.started,
        record: None,
    };
    let record = pending.record.insert(record);
    let reply = decide_and_answer(shared, runtime, ctx, &id, method, params.as_ref(), record).await;
    pending.send();
    reply
}

/// The decision record of a request in progress. It is sent when the request ends, and also
/// when its future is dropped half way: an agent that hangs up, or a shutdown that ends a
/// worker, while a forwarded call is upstream. The record then says `upstream=abandoned`,
/// since the call may have run.
struct PendingRecord<'a> {
    shared: &'a Shared,
    started: Instant,
    record: Option<DecisionRecord>,
}

impl PendingRecord<'_> {
    /// Sends the record of a request that ran to its end.
    fn send(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.latency_us = Some(micros(self.started));
            self.shared.auditor.record(record);
        }
    }
}

impl Drop for PendingRecord<'_> {
    fn drop(&mut self) {
        // Still here: the future was dropped, and its only await is the upstream call.
        if let Some(record) = self.record.as_mut() {
            record.upstream.get_or_insert_with(|| "abandoned".into());
        }
        self.send();
    }
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros().min(u128::from(u64::MAX)) as u64
}

async fn decide_and_answer(
    shared: &Shared,
    runtime: &Runtime,
    ctx: &CallContext,
    id: &Value,
    method: &str,
    params: Option<&Value>,
    record: &mut DecisionRecord,
) -> Reply {
    let subject = match subject_of(method, params) {
        Ok(s) => s,
        Err(e) => {
            record.rule = Some("protocol".into());
            record.reason = Some(e.message.clone());
            return Reply::Json(error_response(Some(id), e.code, &e.message));
        }
    };
    record.tool = subject_name(&subject);
    if let Subject::Tool {
        arguments: Some(args),
        ..
    } = &subject
    {
        record.arguments = logged_arguments(&runtime.log_arguments, args);
    }
    let decision = runtime
        .policy_for(&ctx.identity)
        .decide(&ctx.identity, &subject);
    record.rule = Some(decision.rule().to_string());

    match decision {
        Decision::Allow { shadow, .. } => {
            record.verdict = Verdict::Allow;
            if let Some(shadowed) = shadow {
                // Shadow mode: log what would have happened, then let the call through.
                record.shadow = true;
                match *shadowed.would_be {
                    Decision::Limited { retry_after, .. } => {
                        record.verdict = Verdict::Limit;
                        record.reason = Some(format!(
                            "rate limit reached, retry in {} s",
                            retry_after.as_secs().max(1)
                        ));
                    }
                    Decision::Deny { reason, .. } => {
                        record.verdict = Verdict::Deny;
                        record.reason = Some(reason.to_string());
                    }
                    Decision::Allow { .. } | Decision::Hide { .. } => {}
                }
            }
            allowed(shared, runtime, ctx, id, method, params, record).await
        }
        Decision::Deny {
            reason,
            visible: true,
            ..
        } => {
            record.reason = Some(reason.to_string());
            let text = format!(
                "Denied by mcpgw policy (rule {}): {reason}",
                record.rule.as_deref().unwrap_or("-")
            );
            Reply::Json(match subject {
                Subject::Tool { .. } => result_response(
                    id,
                    json!({"content": [{"type": "text", "text": text}], "isError": true}),
                ),
                _ => error_response(Some(id), codes::INVALID_PARAMS, &text),
            })
        }
        Decision::Deny { reason, .. } => {
            record.reason = Some(reason.to_string());
            Reply::Json(unknown(id, &subject))
        }
        Decision::Hide { .. } => {
            record.verdict = Verdict::Hide;
            Reply::Json(unknown(id, &subject))
        }
        Decision::Limited { rule, retry_after } => {
            record.verdict = Verdict::Limit;
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            record.reason = Some(format!("rate limit reached, retry in {secs} s"));
            let text = format!(
                "Rate limited by mcpgw (rule {rule}): too many calls of this tool; retry in {secs} s."
            );
            Reply::Json(result_response(
                id,
                json!({
                    "content": [{"type": "text", "text": text}],
                    "isError": true,
                    "_meta": {"mcpgw/retryAfterSeconds": secs, "mcpgw/rule": &*rule},
                }),
            ))
        }
    }
}

/// The answer for something the caller may not know exists: the same as for something that
/// really does not exist, so hidden tools cannot be found by probing.
fn unknown(id: &Value, subject: &Subject) -> Value {
    match subject {
        Subject::Tool { name, .. } => error_response(
            Some(id),
            codes::INVALID_PARAMS,
            &format!("Unknown tool: {name}"),
        ),
        Subject::Prompt { name, .. } => error_response(
            Some(id),
            codes::INVALID_PARAMS,
            &format!("Unknown prompt: {name}"),
        ),
        Subject::Resource { uri } => error_response(
            Some(id),
            codes::RESOURCE_NOT_FOUND,
            &format!("Resource not found: {uri}"),
        ),
        Subject::Completion { .. } => {
            error_response(Some(id), codes::INVALID_PARAMS, "Unknown reference")
        }
        Subject::Method { method } => error_response(
            Some(id),
            codes::METHOD_NOT_FOUND,
            &format!("Method not found: {method}"),
        ),
    }
}

async fn allowed(
    shared: &Shared,
    runtime: &Runtime,
    ctx: &CallContext,
    id: &Value,
    method: &str,
    params: Option<&Value>,
    record: &mut DecisionRecord,
) -> Reply {
    match method {
        "initialize" => return initialize(shared, ctx, id, params, record),
        // Answered here: ping tests the gateway, and the upstream session is shared, so one
        // agent's log level must not change another's.
        "ping" | "logging/setLevel" => return Reply::Json(result_response(id, json!({}))),
        _ => {}
    }
    let key = request_key(id);
    let mut cancelled = ctx.session.as_ref().map(|s| s.begin(&key));
    let call = forward(shared, method, params);
    let outcome = match cancelled.as_mut() {
        Some(rx) => {
            tokio::select! {
                outcome = call => Some(outcome),
                _ = rx.wait_for(|c| *c) => None,
            }
        }
        None => Some(call.await),
    };
    if let Some(session) = &ctx.session {
        session.end(&key);
    }
    let Some(outcome) = outcome else {
        record.upstream = Some("cancelled".into());
        return Reply::Json(error_response(
            Some(id),
            codes::INTERNAL,
            "request cancelled",
        ));
    };
    match outcome {
        Ok(Forwarded::List {
            kind,
            pages,
            by_cursor,
        }) => {
            record.upstream = Some("ok".into());
            filtered_list(runtime, ctx, id, kind, &pages, by_cursor)
        }
        Ok(Forwarded::Relayed(Outcome::Result(result))) => {
            record.upstream = Some("ok".into());
            Reply::Serialized(relayed_response(id, Answered::Result, &result))
        }
        Ok(Forwarded::Relayed(Outcome::Error(error))) => {
            record.upstream = Some("error".into());
            Reply::Serialized(relayed_response(id, Answered::Error, &error))
        }
        Err(e) => {
            record.upstream = Some(
                match e {
                    UpstreamError::Timeout => "timeout",
                    UpstreamError::Died => "died",
                    UpstreamError::Unavailable(_) => "unavailable",
                    UpstreamError::Protocol(_) => "protocol-error",
                }
                .into(),
            );
            Reply::Json(error_response(
                Some(id),
                codes::INTERNAL,
                &format!("the OPNsense MCP server did not answer: {e}"),
            ))
        }
    }
}

/// Most pages an upstream list is followed for.
const MAX_LIST_PAGES: usize = 64;

/// What came back for a forwarded request.
enum Forwarded {
    /// The upstream's answer, to be relayed as it is.
    Relayed(Outcome),
    /// Every page of a list (or the one page the agent asked for by cursor), to be joined
    /// and filtered.
    List {
        kind: ListKind,
        pages: Vec<Box<RawValue>>,
        by_cursor: bool,
    },
}

/// Sends the request upstream. A list request without a cursor is answered with the whole
/// list in one page: filtering page by page would hand agents pages that are empty or
/// nearly so, and many clients never ask for a second page.
async fn forward(
    shared: &Shared,
    method: &str,
    params: Option<&Value>,
) -> Result<Forwarded, UpstreamError> {
    let Some(kind) = list_kind(method) else {
        // The very params the policy decided on, serialized straight into the request.
        return shared
            .upstream
            .call_ref(method, params)
            .await
            .map(Forwarded::Relayed);
    };
    let by_cursor = params.and_then(|p| p.get("cursor")).is_some();
    let mut params = params.cloned().unwrap_or_else(|| json!({}));
    let mut pages = Vec::new();
    for _ in 0..MAX_LIST_PAGES {
        let page = match shared.upstream.call_ref(method, Some(&params)).await? {
            Outcome::Result(page) => page,
            error @ Outcome::Error(_) => return Ok(Forwarded::Relayed(error)),
        };
        let read = Page::read(&page)
            .map_err(|e| UpstreamError::Protocol(format!("unreadable {method} page: {e}")))?;
        let next = read.as_ref().and_then(Page::next_cursor);
        let is_object = read.is_some();
        pages.push(page);
        // A page the agent asked for by cursor is filtered and passed on as it is; a page
        // that is not an object ends the list (it has no entries or cursor to follow).
        if by_cursor || !is_object {
            break;
        }
        match (next, params.as_object_mut()) {
            (Some(cursor), Some(p)) => {
                p.insert("cursor".into(), Value::String(cursor));
            }
            _ => break,
        }
    }
    Ok(Forwarded::List {
        kind,
        pages,
        by_cursor,
    })
}

/// The agent's answer to a list: the pages joined, minus what it may not see.
fn filtered_list(
    runtime: &Runtime,
    ctx: &CallContext,
    id: &Value,
    kind: ListKind,
    pages: &[Box<RawValue>],
    by_cursor: bool,
) -> Reply {
    // `forward` read every page already and refused unreadable ones; read again here (the
    // pages are borrowed from), anything unexpected still fails closed.
    let mut read = Vec::with_capacity(pages.len());
    for (index, page) in pages.iter().enumerate() {
        match Page::read(page) {
            Ok(Some(p)) => read.push(p),
            // Not an object: nothing to filter, passed on as the upstream wrote it.
            Ok(None) if index == 0 => {
                return Reply::Serialized(relayed_response(id, Answered::Result, page));
            }
            Ok(None) => {}
            Err(_) => {
                return Reply::Json(error_response(
                    Some(id),
                    codes::INTERNAL,
                    "the OPNsense MCP server's list could not be read",
                ));
            }
        }
    }
    let policy = runtime.policy_for(&ctx.identity);
    let joined = match kind {
        ListKind::Tools => join_and_filter(kind, &read, !by_cursor, |name| {
            policy.tool_visible(&ctx.identity, name)
        }),
        // Prompts and resources follow the default decision.
        _ => join_and_filter(kind, &read, !by_cursor, |_| policy.default_allows()),
    };
    match joined {
        Some((text, _removed)) => Reply::Serialized(assembled_result_response(id, &text)),
        None => Reply::Json(result_response(id, json!({}))),
    }
}

fn initialize(
    shared: &Shared,
    ctx: &CallContext,
    id: &Value,
    params: Option<&Value>,
    record: &mut DecisionRecord,
) -> Reply {
    let Some(upstream) = shared.upstream.initialize_result() else {
        record.upstream = Some("unavailable".into());
        return Reply::Json(error_response(
            Some(id),
            codes::INTERNAL,
            "the OPNsense MCP server is not running; try again shortly",
        ));
    };
    record.upstream = Some("cached".into());
    let asked = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
        .unwrap_or(LATEST_VERSION);
    let version = if SUPPORTED_VERSIONS.contains(&asked) {
        asked
    } else {
        LATEST_VERSION
    };
    let mut result = Map::new();
    result.insert("protocolVersion".into(), json!(version));
    for key in ["capabilities", "serverInfo", "instructions"] {
        if let Some(v) = upstream.get(key) {
            result.insert(key.into(), v.clone());
        }
    }
    if !result.contains_key("capabilities") {
        result.insert("capabilities".into(), json!({"tools": {}}));
    }
    match shared
        .sessions
        .open(ctx.identity.name.clone(), version.to_string())
    {
        Ok(session_id) => Reply::Initialized {
            body: result_response(id, Value::Object(result)),
            session_id,
        },
        Err(_) => {
            record.reason = Some("session table full".into());
            Reply::SessionsFull
        }
    }
}

fn subject_name(subject: &Subject) -> Option<String> {
    match subject {
        Subject::Tool { name, .. } | Subject::Prompt { name, .. } => Some((*name).to_string()),
        Subject::Resource { uri } => Some((*uri).to_string()),
        Subject::Completion { reference } => Some((*reference).to_string()),
        Subject::Method { .. } => None,
    }
}

/// Values of the arguments the config asks to log: strings as they are, anything else as
/// compact JSON.
fn logged_arguments(names: &[String], args: &Map<String, Value>) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|n| {
            args.get(n).map(|v| match v {
                Value::String(s) => (n.clone(), s.clone()),
                other => (n.clone(), other.to_string()),
            })
        })
        .collect()
}
