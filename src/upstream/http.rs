//! The Streamable HTTP upstream: one MCP session over plain HTTP (hyper-util legacy client),
//! JSON or SSE responses, re-initialization when the upstream forgets the session.
//!
//! Each request is one POST; the response is either one JSON body or an SSE stream whose
//! `data:` event carrying our id is the answer (other events are reported and skipped; server
//! requests on the stream are refused with a POSTed error response).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as IncomingBody;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;

use super::{
    Common, Incoming, MAX_MESSAGE_BYTES, Outcome, PROTOCOL_VERSION, UpstreamError, UpstreamEvent,
    cancelled, classify, encode, excerpt, initialize_params, refuse,
};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// How long shutdown waits for the session's DELETE.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default, Clone)]
struct Session {
    id: Option<String>,
    version: Option<String>,
    /// Bumped by every (re)initialization, so concurrent 404s re-initialize only once.
    epoch: u64,
}

struct Shared {
    common: Arc<Common>,
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    session: Mutex<Session>,
    reinit: tokio::sync::Mutex<()>,
    stopped: AtomicBool,
}

/// The HTTP transport of [`super::Upstream`].
pub(crate) struct HttpUpstream {
    shared: Arc<Shared>,
}

impl HttpUpstream {
    pub(crate) async fn start(
        common: Arc<Common>,
        url: &str,
    ) -> Result<HttpUpstream, UpstreamError> {
        if url.starts_with("https://") {
            return Err(UpstreamError::Unavailable(
                "https upstream not supported yet".into(),
            ));
        }
        let uri: Uri = url.parse().map_err(|e| {
            UpstreamError::Unavailable(format!("invalid upstream URL {url:?}: {e}"))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(UpstreamError::Unavailable(format!(
                "not an http:// URL: {url:?}"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(common.call_timeout));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let shared = Arc::new(Shared {
            common,
            client,
            uri,
            session: Mutex::new(Session::default()),
            reinit: tokio::sync::Mutex::new(()),
            stopped: AtomicBool::new(false),
        });
        let timeout = shared.common.call_timeout;
        match tokio::time::timeout(timeout, shared.initialize()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(UpstreamError::Unavailable("no answer to initialize".into())),
        }
        shared.common.event(UpstreamEvent::Started { pid: None });
        Ok(HttpUpstream { shared })
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Outcome, UpstreamError> {
        let shared = &self.shared;
        if shared.stopped.load(Ordering::Acquire) {
            return Err(UpstreamError::Unavailable(
                "the upstream was shut down".into(),
            ));
        }
        let deadline = Instant::now() + shared.common.call_timeout;
        let id = shared.common.next_id();
        let body = encode(Some(id), method, params);
        let mut guard = CancelGuard {
            shared: shared.clone(),
            id,
            armed: true,
            reason: "request cancelled by the client",
        };
        match tokio::time::timeout_at(deadline, shared.exchange(id, body)).await {
            Ok(answer) => {
                guard.armed = false;
                answer
            }
            Err(_) => {
                guard.reason = "timeout";
                drop(guard);
                Err(UpstreamError::Timeout)
            }
        }
    }

    pub(crate) async fn notify(&self, method: &str, params: Option<Value>) {
        if self.shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let timeout = self.shared.common.call_timeout;
        let _ = tokio::time::timeout(
            timeout,
            self.shared.send_message(encode(None, method, params)),
        )
        .await;
    }

    pub(crate) async fn shutdown(&self) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let session = self.shared.session().clone();
        let Some(id) = session.id else { return };
        let Ok(value) = HeaderValue::from_str(&id) else {
            return;
        };
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.method_mut() = Method::DELETE;
        *req.uri_mut() = self.shared.uri.clone();
        req.headers_mut().insert(SESSION_HEADER, value);
        if let Some(v) = session.version.and_then(|v| HeaderValue::from_str(&v).ok()) {
            req.headers_mut().insert(VERSION_HEADER, v);
        }
        let _ = tokio::time::timeout(DELETE_TIMEOUT, self.shared.client.request(req)).await;
    }
}

/// Cancels an unanswered call upstream when its future is dropped (or times out).
struct CancelGuard {
    shared: Arc<Shared>,
    id: u64,
    armed: bool,
    reason: &'static str,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let message = cancelled(self.id, self.reason);
        runtime.spawn(async move {
            let timeout = shared.common.call_timeout;
            let _ = tokio::time::timeout(timeout, shared.send_message(message)).await;
        });
    }
}

impl Shared {
    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a fresh session: `initialize`, then `notifications/initialized`.
    async fn initialize(self: &Arc<Self>) -> Result<(), UpstreamError> {
        let id = self.common.next_id();
        let body = encode(Some(id), "initialize", Some(initialize_params()));
        let response = self.post(body, &Session::default()).await?;
        let session_id = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let result = match self.read_response(response, id).await? {
            Outcome::Result(v) if v.is_object() => v,
            Outcome::Result(v) => {
                let shown = excerpt(&v.to_string());
                return Err(UpstreamError::Protocol(format!(
                    "initialize result is not an object: {shown}"
                )));
            }
            Outcome::Error(e) => {
                return Err(UpstreamError::Protocol(format!(
                    "initialize was refused: {e}"
                )));
            }
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(PROTOCOL_VERSION)
            .to_string();
        self.common.set_init_result(result);
        let session = {
            let mut s = self.session();
            s.id = session_id;
            s.version = Some(version);
            s.epoch = s.epoch.wrapping_add(1);
            s.clone()
        };
        let response = self
            .post(encode(None, "notifications/initialized", None), &session)
            .await?;
        let status = response.status();
        drain(response).await;
        if !status.is_success() {
            return Err(UpstreamError::Protocol(format!(
                "notifications/initialized was answered with HTTP {status}"
            )));
        }
        Ok(())
    }

    /// Re-initializes after a 404, unless another call already did since `seen_epoch`.
    async fn reinitialize(self: &Arc<Self>, seen_epoch: u64) -> Result<(), UpstreamError> {
        let _one_at_a_time = self.reinit.lock().await;
        if self.session().epoch != seen_epoch {
            return Ok(());
        }
        self.initialize().await
    }

    /// POSTs one request and reads its answer; re-initializes once when the session is gone.
    async fn exchange(self: &Arc<Self>, id: u64, body: String) -> Result<Outcome, UpstreamError> {
        let session = self.session().clone();
        let response = self.post(body.clone(), &session).await?;
        if response.status() == StatusCode::NOT_FOUND && session.id.is_some() {
            drain(response).await;
            self.reinitialize(session.epoch).await?;
            let session = self.session().clone();
            let response = self.post(body, &session).await?;
            return self.read_response(response, id).await;
        }
        self.read_response(response, id).await
    }

    /// POSTs a notification or a response (no answer expected beyond the HTTP status).
    async fn send_message(&self, body: String) {
        let session = self.session().clone();
        if let Ok(response) = self.post(body, &session).await {
            drain(response).await;
        }
    }

    async fn post(
        &self,
        body: String,
        session: &Session,
    ) -> Result<Response<IncomingBody>, UpstreamError> {
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        if let Some(v) = session
            .version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(VERSION_HEADER, v);
        }
        if let Some(v) = session
            .id
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(SESSION_HEADER, v);
        }
        self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                UpstreamError::Unavailable(format!("cannot connect to {}: {e}", self.uri))
            } else {
                UpstreamError::Died
            }
        })
    }

    /// Reads the answer to request `id` from a JSON body or an SSE stream.
    async fn read_response(
        self: &Arc<Self>,
        response: Response<IncomingBody>,
        id: u64,
    ) -> Result<Outcome, UpstreamError> {
        let status = response.status();
        if !status.is_success() || status == StatusCode::ACCEPTED {
            drain(response).await;
            return Err(if status.is_server_error() {
                UpstreamError::Unavailable(format!("HTTP {status}"))
            } else {
                UpstreamError::Protocol(format!("HTTP {status} in answer to a request"))
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            return self.read_sse(response.into_body(), id).await;
        }
        let body = Limited::new(response.into_body(), MAX_MESSAGE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    UpstreamError::Protocol(format!(
                        "response larger than {MAX_MESSAGE_BYTES} bytes"
                    ))
                } else {
                    UpstreamError::Died
                }
            })?
            .to_bytes();
        let msg: Value = serde_json::from_slice(&body).map_err(|e| {
            UpstreamError::Protocol(format!(
                "response is not JSON ({e}): {}",
                excerpt(&String::from_utf8_lossy(&body))
            ))
        })?;
        match self.dispatch(msg, id) {
            Some(outcome) => Ok(outcome),
            None => Err(UpstreamError::Protocol(
                "the response does not answer the request".into(),
            )),
        }
    }

    async fn read_sse(
        self: &Arc<Self>,
        mut body: IncomingBody,
        id: u64,
    ) -> Result<Outcome, UpstreamError> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        loop {
            let frame = match body.frame().await {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(_)) => return Err(UpstreamError::Died),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            parser.feed(&data, &mut events)?;
            for event in events.drain(..) {
                if let Some(outcome) = self.dispatch_text(&event, id) {
                    return Ok(outcome);
                }
            }
        }
        if let Some(event) = parser.finish()
            && let Some(outcome) = self.dispatch_text(&event, id)
        {
            return Ok(outcome);
        }
        Err(UpstreamError::Protocol(
            "the event stream ended without the response".into(),
        ))
    }

    fn dispatch_text(self: &Arc<Self>, data: &str, id: u64) -> Option<Outcome> {
        match serde_json::from_str::<Value>(data) {
            Ok(msg) => self.dispatch(msg, id),
            Err(_) => {
                self.common.event(UpstreamEvent::NonJsonLine(excerpt(data)));
                None
            }
        }
    }

    /// Handles one message from the upstream; returns the outcome when it answers `id`.
    fn dispatch(self: &Arc<Self>, msg: Value, id: u64) -> Option<Outcome> {
        if msg.get("jsonrpc").is_none() {
            self.common
                .event(UpstreamEvent::NonJsonLine(excerpt(&msg.to_string())));
            return None;
        }
        match classify(msg) {
            Incoming::Response { id: got, outcome } if got == id => return Some(outcome),
            Incoming::Response { id: got, .. } => self.common.event(UpstreamEvent::Dropped(
                format!("response to request {got}, which nobody waits for here"),
            )),
            Incoming::StrayResponse(other) => {
                self.common.event(UpstreamEvent::Dropped(format!(
                    "response with unknown id {other}"
                )));
            }
            Incoming::Request {
                id: request,
                method,
            } => {
                self.common.event(UpstreamEvent::Dropped(format!(
                    "server request {method} (refused)"
                )));
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let shared = self.clone();
                    let answer = refuse(&request);
                    runtime.spawn(async move {
                        let timeout = shared.common.call_timeout;
                        let _ = tokio::time::timeout(timeout, shared.send_message(answer)).await;
                    });
                }
            }
            Incoming::Notification { method } => self.common.event(UpstreamEvent::Dropped(method)),
            Incoming::Invalid(why) => self.common.event(UpstreamEvent::Dropped(why)),
        }
        None
    }
}

/// Reads and discards the rest of a response body (so the connection can be reused).
async fn drain(response: Response<IncomingBody>) {
    let _ = Limited::new(response.into_body(), MAX_MESSAGE_BYTES)
        .collect()
        .await;
}

/// A small SSE decoder: yields the `data` of every complete event, bounded in size.
#[derive(Default)]
struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; pushes the data of each completed event onto `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<(), UpstreamError> {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out)?;
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_MESSAGE_BYTES {
            return Err(UpstreamError::Protocol(
                "an event-stream line is too long".into(),
            ));
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<String>) -> Result<(), UpstreamError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
            }
            self.has_data = false;
            return Ok(());
        }
        if line.starts_with(b":") {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &line[line.len()..]),
        };
        if field != b"data" {
            return Ok(());
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value = std::str::from_utf8(value)
            .map_err(|_| UpstreamError::Protocol("an event-stream line is not UTF-8".into()))?;
        if self.data.len() + value.len() + 1 > MAX_MESSAGE_BYTES {
            return Err(UpstreamError::Protocol("an event is too large".into()));
        }
        if self.has_data {
            self.data.push('\n');
        }
        self.data.push_str(value);
        self.has_data = true;
        Ok(())
    }

    /// The data of an event left unterminated at the end of the stream.
    fn finish(&mut self) -> Option<String> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let mut out = Vec::new();
            if self.line_done(&line, &mut out).is_err() {
                return None;
            }
        }
        self.has_data.then(|| std::mem::take(&mut self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_joins_split_events() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.feed(b"event: message\r\nid: 1\r\nda", &mut out).unwrap();
        assert!(out.is_empty());
        p.feed(
            b"ta: {\"a\":\r\ndata: 1}\r\n\r\n: comment\n\ndata:x\n\n",
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec!["{\"a\":\n1}".to_string(), "x".to_string()]);
        p.feed(b"data: tail", &mut out).unwrap();
        assert_eq!(p.finish().as_deref(), Some("tail"));
    }
}
