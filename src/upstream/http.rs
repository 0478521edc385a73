//! The Streamable HTTP upstream: one MCP session over plain HTTP (a small pool of hyper
//! HTTP/1.1 connections), JSON or SSE responses, re-initialization when the upstream forgets
//! the session.
//!
//! Each request is one POST; the response is either one JSON body or an SSE stream whose
//! `data:` event carrying our id is the answer (other events are reported and skipped; server
//! requests on the stream are refused with a POSTed error response).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as IncomingBody;
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::time::Instant;

use super::{
    Common, Incoming, MAX_MESSAGE_BYTES, Outcome, PROTOCOL_VERSION, UpstreamError, UpstreamEvent,
    cancelled, classify, encode, excerpt, initialize_params, refuse,
};

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// How long shutdown waits for the session's DELETE.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default, Clone)]
struct Session {
    /// Kept as header values, ready for every request (cloning one is a reference count).
    id: Option<HeaderValue>,
    version: Option<HeaderValue>,
    /// Bumped by every (re)initialization, so concurrent 404s re-initialize only once.
    epoch: u64,
}

/// Most idle upstream connections kept for reuse, per shard.
const MAX_IDLE: usize = 32;
/// Idle lists, one per thread (threads beyond this share). A connection is driven by a task
/// on the thread that opened it, so reusing it from that same thread wakes no other thread.
const SHARDS: usize = 8;

/// Idle connections older than this are closed rather than reused (servers time them out).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// This thread's idle list: threads are numbered as they first ask.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// One HTTP/1.1 connection to the upstream, ready for its next request.
type Conn = http1::SendRequest<Full<Bytes>>;

/// A response together with the connection it came on; the connection goes back to the pool
/// only once the whole body has been read.
struct Answer {
    response: Response<IncomingBody>,
    conn: Conn,
}

/// Why a request could not be sent.
enum SendError {
    Connect(String),
    Failed,
}

/// Keep-alive HTTP/1.1 connections to the one upstream address (TCP_NODELAY), handed out
/// most recently used first, from the calling thread's own idle list. A connection is reused
/// only after its previous response body was read to the end; one that was not (an abandoned
/// SSE stream, an error) is simply dropped, which closes it.
struct Pool {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request target in origin form (`/mcp`).
    target: Uri,
    connect_timeout: Duration,
    idle: [Mutex<Vec<(Conn, std::time::Instant)>>; SHARDS],
}

impl Pool {
    fn new(uri: Uri, connect_timeout: Duration) -> Result<Pool, UpstreamError> {
        let bad =
            |why: &str| UpstreamError::Unavailable(format!("invalid upstream URL {uri}: {why}"));
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let host_header = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let host_header = HeaderValue::from_str(&host_header).map_err(|_| bad("bad host"))?;
        let target: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| bad("bad path"))?;
        Ok(Pool {
            addr: format!("{host}:{port}"),
            host: host_header,
            target,
            connect_timeout,
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
        })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<(Conn, std::time::Instant)>> {
        self.idle[shard()].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns a connection whose last response was read completely.
    fn put(&self, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push((conn, std::time::Instant::now()));
        }
    }

    /// The most recently used idle connection that is still open and fresh.
    fn take(&self) -> Option<Conn> {
        let mut idle = self.idle();
        while let Some((conn, since)) = idle.pop() {
            if !conn.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(self.addr.as_str()),
        )
        .await
        .map_err(|_| SendError::Connect("connection timed out".into()))?
        .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (conn, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(conn)
    }

    /// Sends `req` on an idle connection, or a new one. A request that a pooled connection
    /// refused before writing a byte of it (the server had closed it) is sent again on
    /// another: it never reached the upstream, so this is no duplicate.
    async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Answer, SendError> {
        *req.uri_mut() = self.target.clone();
        req.headers_mut().insert(HOST, self.host.clone());
        loop {
            let (mut conn, pooled) = match self.take() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            if conn.ready().await.is_err() {
                if pooled {
                    continue;
                }
                return Err(SendError::Failed);
            }
            match conn.try_send_request(req).await {
                Ok(response) => return Ok(Answer { response, conn }),
                Err(mut e) => match e.take_message() {
                    Some(again) if pooled => req = again,
                    _ => return Err(SendError::Failed),
                },
            }
        }
    }
}

struct Shared {
    common: Arc<Common>,
    pool: Pool,
    uri: Uri,
    session: Mutex<Session>,
    reinit: tokio::sync::Mutex<()>,
    stopped: AtomicBool,
    /// The runtime the upstream was started on (the gateway's main one). Cancellations are
    /// sent from there: a worker's runtime may be shutting down when a call is dropped.
    home: tokio::runtime::Handle,
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
        let pool = Pool::new(uri.clone(), common.call_timeout)?;
        let shared = Arc::new(Shared {
            common,
            pool,
            uri,
            session: Mutex::new(Session::default()),
            reinit: tokio::sync::Mutex::new(()),
            stopped: AtomicBool::new(false),
            home: tokio::runtime::Handle::current(),
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
        params: Option<&Value>,
    ) -> Result<Outcome, UpstreamError> {
        let shared = &self.shared;
        if shared.stopped.load(Ordering::Acquire) {
            return Err(UpstreamError::Unavailable(
                "the upstream was shut down".into(),
            ));
        }
        let deadline = Instant::now() + shared.common.call_timeout;
        let id = shared.common.next_id();
        let body = Bytes::from(encode(Some(id), method, params));
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

    pub(crate) async fn notify(&self, method: &str, params: Option<&Value>) {
        if self.shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let timeout = self.shared.common.call_timeout;
        let _ = tokio::time::timeout(
            timeout,
            self.shared
                .send_message(Bytes::from(encode(None, method, params))),
        )
        .await;
    }

    pub(crate) async fn shutdown(&self) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let session = self.shared.session().clone();
        let Some(value) = session.id else { return };
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.method_mut() = Method::DELETE;
        req.headers_mut().insert(SESSION_HEADER, value);
        if let Some(v) = session.version {
            req.headers_mut().insert(VERSION_HEADER, v);
        }
        let _ = tokio::time::timeout(DELETE_TIMEOUT, async {
            if let Ok(answer) = self.shared.pool.send(req).await {
                self.shared.drain(answer).await;
            }
        })
        .await;
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
        let shared = self.shared.clone();
        let message = Bytes::from(cancelled(self.id, self.reason));
        self.shared.home.clone().spawn(async move {
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
        let body = encode(Some(id), "initialize", Some(&initialize_params()));
        let answer = self.post(Bytes::from(body), &Session::default()).await?;
        let session_id = answer
            .response
            .headers()
            .get(SESSION_HEADER)
            .filter(|v| v.to_str().is_ok())
            .cloned();
        let result = match self.read_response(answer, id).await? {
            Outcome::Result(raw) => match Outcome::parse(&raw)? {
                v @ Value::Object(_) => v,
                _ => {
                    return Err(UpstreamError::Protocol(format!(
                        "initialize result is not an object: {}",
                        excerpt(raw.get())
                    )));
                }
            },
            Outcome::Error(e) => {
                return Err(UpstreamError::Protocol(format!(
                    "initialize was refused: {e}"
                )));
            }
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .map_or(Some(HeaderValue::from_static(PROTOCOL_VERSION)), |v| {
                // A version that cannot be a header value is not sent (not replaced).
                HeaderValue::from_str(v).ok()
            });
        self.common.set_init_result(result);
        let session = {
            let mut s = self.session();
            s.id = session_id;
            s.version = version;
            s.epoch = s.epoch.wrapping_add(1);
            s.clone()
        };
        let answer = self
            .post(
                Bytes::from(encode(None, "notifications/initialized", None)),
                &session,
            )
            .await?;
        let status = answer.response.status();
        self.drain(answer).await;
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
    /// `body` is a `Bytes`, so keeping it for that rare retry is a reference count, not a copy.
    async fn exchange(self: &Arc<Self>, id: u64, body: Bytes) -> Result<Outcome, UpstreamError> {
        let session = self.session().clone();
        let answer = self.post(body.clone(), &session).await?;
        if answer.response.status() == StatusCode::NOT_FOUND && session.id.is_some() {
            self.drain(answer).await;
            self.reinitialize(session.epoch).await?;
            let session = self.session().clone();
            let answer = self.post(body, &session).await?;
            return self.read_response(answer, id).await;
        }
        self.read_response(answer, id).await
    }

    /// POSTs a notification or a response (no answer expected beyond the HTTP status).
    async fn send_message(&self, body: Bytes) {
        let session = self.session().clone();
        if let Ok(answer) = self.post(body, &session).await {
            self.drain(answer).await;
        }
    }

    async fn post(&self, body: Bytes, session: &Session) -> Result<Answer, UpstreamError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        if let Some(v) = &session.version {
            headers.insert(VERSION_HEADER, v.clone());
        }
        if let Some(v) = &session.id {
            headers.insert(SESSION_HEADER, v.clone());
        }
        self.pool.send(req).await.map_err(|e| match e {
            SendError::Connect(e) => {
                UpstreamError::Unavailable(format!("cannot connect to {}: {e}", self.uri))
            }
            SendError::Failed => UpstreamError::Died,
        })
    }

    /// Reads and discards the rest of a response body; the connection is reused if that
    /// worked.
    async fn drain(&self, answer: Answer) {
        let Answer { response, conn } = answer;
        if Limited::new(response.into_body(), MAX_MESSAGE_BYTES)
            .collect()
            .await
            .is_ok()
        {
            self.pool.put(conn);
        }
    }

    /// Reads the answer to request `id` from a JSON body or an SSE stream.
    async fn read_response(
        self: &Arc<Self>,
        answer: Answer,
        id: u64,
    ) -> Result<Outcome, UpstreamError> {
        let status = answer.response.status();
        if !status.is_success() || status == StatusCode::ACCEPTED {
            self.drain(answer).await;
            return Err(if status.is_server_error() {
                UpstreamError::Unavailable(format!("HTTP {status}"))
            } else {
                UpstreamError::Protocol(format!("HTTP {status} in answer to a request"))
            });
        }
        let Answer { response, conn } = answer;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            // The connection stays open while the stream is read, and is not reused after.
            let outcome = self.read_sse(response.into_body(), id).await;
            drop(conn);
            return outcome;
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
        self.pool.put(conn);
        let Some(msg) = classify(&body) else {
            return Err(UpstreamError::Protocol(format!(
                "response is not a JSON-RPC message: {}",
                excerpt(&String::from_utf8_lossy(&body))
            )));
        };
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
        match classify(data.as_bytes()) {
            Some(msg) => self.dispatch(msg, id),
            None => {
                self.common.event(UpstreamEvent::NonJsonLine(excerpt(data)));
                None
            }
        }
    }

    /// Handles one message from the upstream; returns the outcome when it answers `id`.
    fn dispatch(self: &Arc<Self>, msg: Incoming, id: u64) -> Option<Outcome> {
        match msg {
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
                    let answer = Bytes::from(refuse(&request));
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
