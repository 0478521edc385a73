//! The MCP Streamable HTTP endpoint (`/mcp`): HTTP in, one parsed message out, and back.
//!
//! Checks run in the order a request meets them, each answering with the status the spec
//! asks for: path (404), authentication (401 / 429), Origin (403), method (405), Accept (406),
//! Content-Type (415), protocol version (400), body size (413), strict parse (400), session
//! (400 / 404), mirrored headers (400). Only then does [`dispatch`] see the message.

// Refusals are returned as `Err(response)`: the error *is* the answer, and boxing it would
// only add an allocation to every refusal.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::audit::Severity;
use crate::identity::PeerCert;
use crate::mcp::message::{self, Message, error_response};

use super::auth::{AuthError, ConnectionAuth, authenticate, verified_names};
use super::dispatch::{CallContext, Reply, SUPPORTED_VERSIONS, dispatch};
use super::session::SessionError;
use super::{Runtime, Shared};

/// The one path agents use.
pub const MCP_PATH: &str = "/mcp";
// MCP's headers, built once: a lookup by `&str` parses and validates the name every time.
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
const METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
const NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

pub type Body = Full<Bytes>;

/// What a request knows of the connection it came on.
pub struct Connection<'a> {
    /// The agent's address.
    pub source: IpAddr,
    /// The client certificate verified in the handshake, if any.
    pub peer: Option<&'a PeerCert>,
    /// The connection's last successful authentication.
    pub auth: &'a ConnectionAuth,
}

/// Serves one HTTP request that came `on` a connection.
pub async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    on: &Connection<'_>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let runtime = shared.runtime.load_full();
    Ok(match serve(shared, &runtime, req, on, started).await {
        Ok(resp) | Err(resp) => resp,
    })
}

type Answer = Result<Response<Body>, Response<Body>>;

async fn serve(
    shared: &Shared,
    runtime: &Runtime,
    req: Request<Incoming>,
    on: &Connection<'_>,
    started: Instant,
) -> Answer {
    let source = on.source;
    if req.uri().path() != MCP_PATH {
        return Err(plain(
            StatusCode::NOT_FOUND,
            "not found: the MCP endpoint is /mcp",
        ));
    }
    let cert_names = verified_names(on.peer, runtime.client_trust.as_ref().map(|t| t.id));
    let authenticated = authenticate(
        req.headers(),
        source,
        cert_names,
        &runtime.tokens,
        &shared.failures,
        on.auth,
    );
    let identity = match authenticated {
        Ok(identity) => identity,
        Err(AuthError::Throttled(wait)) => {
            let mut resp = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentications from this address",
            );
            set(
                &mut resp,
                header::RETRY_AFTER,
                &wait.as_secs().max(1).to_string(),
            );
            return Err(resp);
        }
        Err(e) => {
            let detail = match &e {
                AuthError::Refused { identity, reason } => format!("{reason} identity={identity}"),
                AuthError::Missing => match cert_names.first() {
                    // A trusted certificate that names no identity.
                    Some(name) => format!("missing-token client_cert={:?}", truncate(name, 100)),
                    None => "missing-token".to_string(),
                },
                _ => "invalid-token".to_string(),
            };
            shared.auditor.event(
                Severity::Warning,
                format!("auth=fail src={source} reason={detail}"),
            );
            let mut resp = plain(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            let challenge = if e == AuthError::Missing {
                "Bearer realm=\"mcpgw\""
            } else {
                "Bearer realm=\"mcpgw\", error=\"invalid_token\""
            };
            set(&mut resp, header::WWW_AUTHENTICATE, challenge);
            return Err(resp);
        }
    };
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| runtime.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            return Err(plain(
                StatusCode::FORBIDDEN,
                "this Origin is not allowed (listen.allowed_origins)",
            ));
        }
    }
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return delete(shared, req.headers(), &identity.name),
        _ => {
            // No server-initiated stream is offered (GET), as the spec allows.
            let mut resp = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST (or DELETE to end a session)",
            );
            set(&mut resp, header::ALLOW, "POST, DELETE");
            return Err(resp);
        }
    }
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    check_single_headers(&headers)?;
    check_accept(&headers)?;
    check_content_type(&headers)?;
    if let Some(v) = headers.get(&VERSION_HEADER) {
        let ok = v.to_str().is_ok_and(|v| SUPPORTED_VERSIONS.contains(&v));
        if !ok {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                -32600,
                "unsupported MCP-Protocol-Version",
            ));
        }
    }
    let body = read_body(
        &headers,
        body,
        shared.listen.max_body_bytes,
        shared.listen.body_read_timeout(),
    )
    .await?;
    let message = message::parse(&body).map_err(|e| {
        let id = message::id_of(&body);
        rpc_error(StatusCode::BAD_REQUEST, id.as_ref(), e.code, &e.message)
    })?;
    check_mirrored_headers(&headers, &message)?;

    let is_initialize =
        matches!(&message, Message::Request { method, .. } if method == "initialize");
    let session = match headers.get(&SESSION_HEADER) {
        _ if is_initialize => None,
        None => {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                request_id(&message),
                -32600,
                "Mcp-Session-Id header is required after initialize",
            ));
        }
        Some(v) => {
            let id = v.to_str().unwrap_or("");
            match shared.sessions.get(id, &identity.name) {
                Ok(s) => Some(s),
                Err(_) => {
                    return Err(rpc_error(
                        StatusCode::NOT_FOUND,
                        request_id(&message),
                        -32001,
                        "session not found: initialize again",
                    ));
                }
            }
        }
    };
    let ctx = CallContext {
        identity,
        source,
        session,
        started,
    };
    Ok(match dispatch(shared, runtime, &ctx, message).await {
        Reply::Json(v) => json_response(StatusCode::OK, &v),
        Reply::Serialized(body) => json_body(StatusCode::OK, body),
        Reply::Accepted => empty(StatusCode::ACCEPTED),
        Reply::Initialized { body, session_id } => {
            let mut resp = json_response(StatusCode::OK, &body);
            set(&mut resp, SESSION_HEADER, &session_id);
            resp
        }
        Reply::SessionsFull => {
            let mut resp = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sessions; try again later",
            );
            set(&mut resp, header::RETRY_AFTER, "5");
            resp
        }
    })
}

fn delete(shared: &Shared, headers: &HeaderMap, identity: &str) -> Answer {
    let Some(id) = headers.get(&SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "DELETE needs an Mcp-Session-Id header",
        ));
    };
    match shared.sessions.close(id, identity) {
        Ok(()) => Ok(empty(StatusCode::OK)),
        Err(SessionError::NotFound | SessionError::Full) => {
            Err(plain(StatusCode::NOT_FOUND, "session not found"))
        }
    }
}

/// MCP's own headers carry one value each. Two copies are ambiguous (this gateway would read
/// the first, an intermediary in front of it may read the last), so they are refused.
fn check_single_headers(headers: &HeaderMap) -> Result<(), Response<Body>> {
    for name in [METHOD_HEADER, NAME_HEADER, VERSION_HEADER, SESSION_HEADER] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                -32600,
                &format!("the {name} header appears more than once"),
            ));
        }
    }
    Ok(())
}

/// The client must accept both JSON and SSE answers (`*/*` counts for both).
fn check_accept(headers: &HeaderMap) -> Result<(), Response<Body>> {
    let mut json = false;
    let mut sse = false;
    for value in headers.get_all(header::ACCEPT) {
        for part in value.to_str().unwrap_or("").split(',') {
            let media = part.split(';').next().unwrap_or("").trim();
            let is = |m: &str| media.eq_ignore_ascii_case(m);
            if is("*/*") {
                json = true;
                sse = true;
            } else if is("application/json") || is("application/*") {
                json = true;
            } else if is("text/event-stream") || is("text/*") {
                sse = true;
            }
        }
    }
    if json && sse {
        Ok(())
    } else {
        Err(plain(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must include application/json and text/event-stream",
        ))
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Response<Body>> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ))
    }
}

/// Newer clients mirror the method and name into headers for intermediaries. We decide on
/// the body; a request whose headers say something else is refused rather than guessed at.
fn check_mirrored_headers(headers: &HeaderMap, message: &Message) -> Result<(), Response<Body>> {
    let (method, params) = match message {
        Message::Request { method, params, .. } | Message::Notification { method, params } => {
            (method, params)
        }
        Message::Response { .. } => return Ok(()),
    };
    let disagree =
        |header_name: &HeaderName, body_value: Option<&str>| match headers.get(header_name) {
            None => false,
            Some(v) => v.to_str().ok() != body_value,
        };
    let name = params
        .as_ref()
        .and_then(|p| p.get("name").or_else(|| p.get("uri")))
        .and_then(Value::as_str);
    if disagree(&METHOD_HEADER, Some(method)) || disagree(&NAME_HEADER, name) {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            request_id(message),
            -32600,
            "Mcp-Method / Mcp-Name headers disagree with the message body",
        ));
    }
    Ok(())
}

async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, Response<Body>> {
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {max} bytes"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        match len.to_str().ok().and_then(|l| l.parse::<u64>().ok()) {
            Some(n) if n > max as u64 => return Err(too_large()),
            Some(_) => {}
            None => {
                return Err(plain(
                    StatusCode::BAD_REQUEST,
                    "Content-Length is not a number",
                ));
            }
        }
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, max).collect()).await;
    match collected {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(_)) => Err(plain(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )),
        Err(_) => Err(plain(
            StatusCode::REQUEST_TIMEOUT,
            "the request body arrived too slowly",
        )),
    }
}

fn request_id(message: &Message) -> Option<&Value> {
    match message {
        Message::Request { id, .. } => Some(id),
        _ => None,
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    json_body(
        status,
        serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

fn json_body(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, JSON);
    resp
}

fn rpc_error(status: StatusCode, id: Option<&Value>, code: i64, text: &str) -> Response<Body> {
    json_response(status, &error_response(id, code, text))
}

/// A short JSON error for HTTP-level refusals, readable by people and by clients.
fn plain(status: StatusCode, text: &str) -> Response<Body> {
    json_response(status, &json!({"error": text}))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn set(resp: &mut Response<Body>, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}
