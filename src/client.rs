//! A small MCP client over Streamable HTTP, for the demo, the tests and the benchmarks.
//!
//! It is the agent side of the wire in as few lines as possible: one HTTP/1.1 connection
//! (TLS with a given CA, or plain), a bearer token, the session id from `initialize`, and
//! helpers that return the raw JSON-RPC response so callers can assert on every field.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// What went wrong on the client side.
pub type ClientError = String;

/// One HTTP response as received.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "HTTP {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A rustls client config trusting only the CA certificates in `ca_pem`.
pub fn tls_config(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, ClientError> {
    Ok(Arc::new(client_builder(ca_pem)?.with_no_client_auth()))
}

/// Like [`tls_config`], presenting a client certificate (PEM chain, leaf first) and its key.
pub fn tls_config_with_client_cert(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ClientConfig>, ClientError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client certificate PEM: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("client key PEM: {e}"))?;
    let config = client_builder(ca_pem)?
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("client certificate: {e}"))?;
    Ok(Arc::new(config))
}

fn client_builder(
    ca_pem: &[u8],
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("CA PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots))
}

/// An MCP session with a gateway (or any Streamable HTTP server).
pub struct McpClient {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    token: Option<String>,
    /// Set by a successful `initialize`.
    pub session: Option<String>,
    next_id: u64,
}

impl McpClient {
    /// Connects to `addr`; with `tls`, verifies the server as `server_name`.
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<(Arc<ClientConfig>, &str)>,
        token: Option<&str>,
    ) -> Result<McpClient, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let sender = match tls {
            Some((config, name)) => {
                let server_name =
                    ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                handshake(TokioIo::new(stream)).await?
            }
            None => handshake(TokioIo::new(tcp)).await?,
        };
        Ok(McpClient {
            sender,
            authority: addr.to_string(),
            token: token.map(str::to_string),
            session: None,
            next_id: 1,
        })
    }

    /// POSTs `body` to `/mcp` with the usual MCP headers plus `extra`.
    pub async fn post_raw(
        &mut self,
        body: impl Into<Bytes>,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let mut builder = Request::post("/mcp")
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(t) = &self.token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        if let Some(s) = &self.session {
            builder = builder.header("mcp-session-id", s);
        }
        for (k, v) in extra {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    /// Sends any request on this connection.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<RawResponse, ClientError> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a JSON-RPC request and returns the whole JSON-RPC response.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.post_raw(msg.to_string(), &[]).await?;
        if resp.status != StatusCode::OK {
            return Err(format!(
                "HTTP {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
        let value = resp.json()?;
        if value.get("id") != Some(&json!(id)) {
            return Err(format!(
                "response id does not match request id {id}: {value}"
            ));
        }
        Ok(value)
    }

    /// `initialize` + `notifications/initialized`; keeps the session id.
    pub async fn initialize(&mut self) -> Result<Value, ClientError> {
        let params = json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "mcpgw-client", "version": env!("CARGO_PKG_VERSION")},
        });
        let msg = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
        let resp = self.post_raw(msg.to_string(), &[]).await?;
        if resp.status != StatusCode::OK {
            return Err(format!(
                "initialize: HTTP {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
        self.session = resp
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let value = resp.json()?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let ack = self
            .post_raw(note.to_string(), &[("mcp-protocol-version", "2025-06-18")])
            .await?;
        if ack.status != StatusCode::ACCEPTED {
            return Err(format!("notifications/initialized: HTTP {}", ack.status));
        }
        Ok(value)
    }

    /// `tools/call`; returns the whole JSON-RPC response.
    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Value, ClientError> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// Names from `tools/list`, following `nextCursor` (at most 100 pages).
    pub async fn list_tools(&mut self) -> Result<Vec<String>, ClientError> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let resp = self.request("tools/list", params).await?;
            let result = resp
                .get("result")
                .ok_or_else(|| format!("tools/list failed: {resp}"))?;
            for tool in result
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = tool.get("name").and_then(Value::as_str) {
                    names.push(n.to_string());
                }
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        Ok(names)
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>, ClientError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
