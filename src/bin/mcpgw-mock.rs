//! `mcpgw-mock`: a fast stand-in for the OPNsense MCP server (stdio and Streamable HTTP) that
//! serves every tool of the catalogue, for tests, the demo and benchmarks.
//!
//! Test hooks (mock only), read from the `arguments` of any `tools/call`:
//! - `"_mock_sleep_ms": N` sleeps N ms (at most 60 000) before answering;
//! - `"_mock_nest": N` (at most 1,000) adds `structuredContent` nested N arrays deep;
//! - `"_mock_exit": true` exits the process with status 3 at once (an upstream crash);
//! - `"_mock_server_request": "METHOD"` (stdio and SSE responses only) sends a server-to-client
//!   request first; the client's answer is logged to stderr;
//! - `"_mock_forget_sessions": true` (HTTP only) forgets every session after answering, so the
//!   next request gets 404 and the client must re-initialize.
//!
//! In stdio mode `create_backup` prints two non-JSON lines on stdout before its response, like
//! the real server. Notifications and client responses received are logged to stderr.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;

const CATALOGUE: &str = include_str!("../../data/opnsense-mcp-tools.json");
const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const DEFAULT_VERSION: &str = "2025-06-18";
const PAGE_SIZE: usize = 50;
const MAX_SLEEP_MS: u64 = 60_000;
const MAX_BODY_BYTES: usize = 16 << 20;
const CURSOR_PREFIX: &str = "mock-page-";
const SESSION_HEADER: &str = "mcp-session-id";

#[derive(Parser)]
#[command(
    name = "mcpgw-mock",
    about = "A fast mock of the OPNsense MCP server for tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// Append one JSON line {"tool":..,"arguments":..} per tools/call received.
    #[arg(long, global = true)]
    record: Option<PathBuf>,
    /// Write the process id to this file.
    #[arg(long, global = true)]
    pid_file: Option<PathBuf>,
    /// CPU time each tools/call costs, spent one call at a time before answering (the real
    /// server is a single Node.js event loop). 0: answer at once.
    #[arg(long, global = true, default_value_t = 0)]
    work_us: u64,
    /// Add to every tools/call result a second text item of about this many bytes: a rule
    /// listing as JSON text, like the real server's answers (quotes escaped inside the text).
    /// 0: none.
    #[arg(long, global = true, default_value_t = 0)]
    result_bytes: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// Newline-delimited JSON-RPC on stdin/stdout (logs on stderr).
    Stdio {
        /// Keep running when stdin closes, like the real OPNsense MCP server.
        #[arg(long)]
        ignore_eof: bool,
    },
    /// Streamable HTTP at /mcp.
    Http {
        /// Address to listen on, e.g. 127.0.0.1:3001 (port 0 picks a free port).
        #[arg(long)]
        listen: SocketAddr,
        /// Answer every request as text/event-stream (otherwise only with `?sse=1`).
        #[arg(long)]
        sse: bool,
        /// Write the bound port to this file.
        #[arg(long)]
        port_file: Option<PathBuf>,
    },
}

/// The state shared by every request.
struct Mock {
    /// tools/list pages, ready to clone.
    pages: Vec<Value>,
    names: HashSet<String>,
    record: Option<Mutex<std::fs::File>>,
    sessions: Mutex<HashSet<String>>,
    next_server_id: AtomicU64,
    /// `--work-us`; calls take turns on `busy` to spend it.
    work: Duration,
    /// `--result-bytes` of listing, made once.
    listing: Option<String>,
    busy: Mutex<()>,
}

fn log(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "mcpgw-mock: {message}");
}

fn load_pages() -> Result<(Vec<Value>, HashSet<String>), String> {
    let catalogue: Value = serde_json::from_str(CATALOGUE)
        .map_err(|e| format!("the built-in catalogue is not JSON: {e}"))?;
    let mut tools = Vec::new();
    let mut names = HashSet::new();
    for key in ["tools", "unexposed"] {
        let Some(list) = catalogue.get(key).and_then(Value::as_array) else {
            return Err(format!("the built-in catalogue has no `{key}` list"));
        };
        for tool in list {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            if !names.insert(name.to_string()) {
                continue;
            }
            let mut t = serde_json::Map::new();
            t.insert("name".into(), json!(name));
            if let Some(d) = tool.get("description") {
                t.insert("description".into(), d.clone());
            }
            let schema = tool
                .get("inputSchema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            t.insert("inputSchema".into(), schema);
            tools.push(Value::Object(t));
        }
    }
    let chunks: Vec<&[Value]> = tools.chunks(PAGE_SIZE).collect();
    let count = chunks.len();
    let pages = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut page = json!({ "tools": chunk });
            if i + 1 < count {
                page["nextCursor"] = json!(format!("{CURSOR_PREFIX}{}", i + 1));
            }
            page
        })
        .collect();
    Ok((pages, names))
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn rpc_error(id: &Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

impl Mock {
    /// Spends `--work-us` of CPU, serialized across calls like a single-threaded server.
    fn work(&self) {
        if self.work.is_zero() {
            return;
        }
        let _turn = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let start = std::time::Instant::now();
        while start.elapsed() < self.work {
            std::hint::spin_loop();
        }
    }

    fn record_call(&self, tool: &Value, arguments: &Value) {
        let Some(file) = &self.record else { return };
        let mut line = json!({"tool": tool, "arguments": arguments}).to_string();
        line.push('\n');
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(line.as_bytes());
            let _ = f.flush();
        }
    }

    /// A server-to-client request, when the call asks for one through `_mock_server_request`.
    fn server_request(&self, msg: &Value) -> Option<Value> {
        if msg.get("method").and_then(Value::as_str) != Some("tools/call") {
            return None;
        }
        let method = msg
            .pointer("/params/arguments/_mock_server_request")?
            .as_str()?;
        let n = self.next_server_id.fetch_add(1, Ordering::Relaxed);
        Some(
            json!({"jsonrpc": "2.0", "id": format!("mock-srv-{n}"), "method": method, "params": {}}),
        )
    }

    /// Answers one message; `None` for notifications and client responses.
    async fn handle(&self, msg: &Value) -> Option<Value> {
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            log(&format!(
                "message without method (a client response?): {msg}"
            ));
            return None;
        };
        let Some(id) = msg.get("id") else {
            let params = msg.get("params").cloned().unwrap_or(Value::Null);
            log(&format!("notification {method} {params}"));
            return None;
        };
        let params = msg.get("params");
        Some(match method {
            "initialize" => {
                let asked = params
                    .and_then(|p| p.get("protocolVersion"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let version = if SUPPORTED_VERSIONS.contains(&asked) {
                    asked
                } else {
                    DEFAULT_VERSION
                };
                rpc_result(
                    id,
                    json!({
                        "protocolVersion": version,
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "opnsense-mcp", "version": "0.9.0"},
                    }),
                )
            }
            "ping" => rpc_result(id, json!({})),
            "tools/list" => {
                let cursor = params.and_then(|p| p.get("cursor"));
                let page = match cursor {
                    None | Some(Value::Null) => Some(0),
                    Some(Value::String(c)) => c
                        .strip_prefix(CURSOR_PREFIX)
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n < self.pages.len()),
                    Some(_) => None,
                };
                match page.and_then(|n| self.pages.get(n)) {
                    Some(p) => rpc_result(id, p.clone()),
                    None => rpc_error(id, -32602, "Invalid cursor"),
                }
            }
            "tools/call" => self.call(id, params).await,
            other => rpc_error(id, -32601, format!("Method not found: {other}")),
        })
    }

    async fn call(&self, id: &Value, params: Option<&Value>) -> Value {
        let name = params
            .and_then(|p| p.get("name"))
            .cloned()
            .unwrap_or(Value::Null);
        let arguments = params
            .and_then(|p| p.get("arguments"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        self.record_call(&name, &arguments);
        self.work();
        if arguments.get("_mock_exit").and_then(Value::as_bool) == Some(true) {
            log("_mock_exit: exiting with status 3");
            std::process::exit(3);
        }
        if let Some(ms) = arguments.get("_mock_sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms.min(MAX_SLEEP_MS))).await;
        }
        let known = name.as_str().filter(|n| self.names.contains(*n));
        let Some(tool) = known else {
            let shown = name
                .as_str()
                .map_or_else(|| name.to_string(), str::to_string);
            return rpc_error(id, -32602, format!("Unknown tool: {shown}"));
        };
        let text = json!({"tool": tool, "arguments": arguments}).to_string();
        let mut content = vec![json!({"type": "text", "text": text})];
        if let Some(listing) = &self.listing {
            content.push(json!({"type": "text", "text": listing}));
        }
        let mut result = json!({"content": content});
        if let Some(depth) = arguments.get("_mock_nest").and_then(Value::as_u64) {
            let mut nested = json!(0);
            for _ in 0..depth.min(1000) {
                nested = json!([nested]);
            }
            result["structuredContent"] = json!({"nested": nested});
        }
        rpc_result(id, result)
    }
}

/// About `bytes` of firewall rules as JSON text, the shape of the real server's listings.
fn rule_listing(bytes: usize) -> String {
    let mut rules = Vec::new();
    let mut size = 2;
    for n in 0.. {
        if size >= bytes {
            break;
        }
        let rule = json!({
            "uuid": format!("4f9c{n:04x}-2b1e-4c7a-9d3e-0a1b2c3d4e5f"),
            "enabled": "1",
            "action": if n % 3 == 0 { "block" } else { "pass" },
            "interface": "lan",
            "protocol": "TCP",
            "source_net": format!("10.{}.{}.0/24", n / 256 % 256, n % 256),
            "destination_port": format!("{}", 1024 + n % 50000),
            "description": format!("Allow \"app-{n}\" to the DMZ (ticket #{n})"),
        })
        .to_string();
        size += rule.len() + 1;
        rules.push(rule);
    }
    format!("[{}]", rules.join(","))
}

// ---------------------------------------------------------------------------------------------
// stdio

async fn run_stdio(mock: Arc<Mock>, ignore_eof: bool) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut out = BufWriter::new(tokio::io::stdout());
        while let Some(line) = rx.recv().await {
            let mut ok = out.write_all(line.as_bytes()).await.is_ok();
            while ok && let Ok(more) = rx.try_recv() {
                ok = out.write_all(more.as_bytes()).await.is_ok();
            }
            if !ok || out.flush().await.is_err() {
                log("stdout closed");
                return;
            }
        }
    });
    let mut input = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                log(&format!("stdin: {e}"));
                break;
            }
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                let _ = tx.send(format!(
                    "{}\n",
                    rpc_error(&Value::Null, -32700, format!("Parse error: {e}"))
                ));
                continue;
            }
        };
        if !msg.is_object() {
            let _ = tx.send(format!(
                "{}\n",
                rpc_error(&Value::Null, -32600, "Invalid Request")
            ));
            continue;
        }
        let mock = mock.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Some(request) = mock.server_request(&msg) {
                let _ = tx.send(format!("{request}\n"));
            }
            let is_backup = msg.get("method").and_then(Value::as_str) == Some("tools/call")
                && msg.pointer("/params/name").and_then(Value::as_str) == Some("create_backup");
            if is_backup {
                let _ = tx
                    .send("Creating backup...\nBackup created, uploading to the response\n".into());
            }
            if let Some(response) = mock.handle(&msg).await {
                let _ = tx.send(format!("{response}\n"));
            }
        });
    }
    if ignore_eof {
        log("stdin closed; staying up (--ignore-eof)");
        std::future::pending::<()>().await;
    }
    drop(tx);
    let _ = writer.await;
}

// ---------------------------------------------------------------------------------------------
// Streamable HTTP

type Body = Full<Bytes>;

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r
}

async fn run_http(
    mock: Arc<Mock>,
    listen: SocketAddr,
    sse: bool,
    port_file: Option<PathBuf>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    if let Some(file) = port_file {
        std::fs::write(&file, format!("{}\n", bound.port()))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    log(&format!("listening on http://{bound}/mcp"));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log(&format!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let mock = mock.clone();
                async move { Ok::<_, Infallible>(serve(mock, sse, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = n.to_le_bytes();
    }
    hex::encode(bytes)
}

async fn serve(mock: Arc<Mock>, sse_default: bool, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/mcp" {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    let sse = sse_default
        || req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "sse=1"));
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let known = |s: &Option<String>| {
        s.as_ref()
            .is_some_and(|s| mock.sessions.lock().is_ok_and(|set| set.contains(s)))
    };
    match *req.method() {
        Method::GET => return plain(StatusCode::METHOD_NOT_ALLOWED, "no server-to-client stream"),
        Method::DELETE => {
            if !known(&session) {
                return plain(StatusCode::NOT_FOUND, "unknown session");
            }
            if let (Some(s), Ok(mut set)) = (&session, mock.sessions.lock()) {
                set.remove(s);
            }
            return plain(StatusCode::OK, "");
        }
        Method::POST => {}
        _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or unreadable",
            );
        }
    };
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &rpc_error(&Value::Null, -32600, "Invalid Request"),
                None,
            );
        }
        Err(e) => {
            let err = rpc_error(&Value::Null, -32700, format!("Parse error: {e}"));
            return json_response(StatusCode::BAD_REQUEST, &err, None);
        }
    };
    let method = msg.get("method").and_then(Value::as_str);
    let mut new_session = None;
    if method == Some("initialize") {
        let id = new_session_id();
        if let Ok(mut set) = mock.sessions.lock() {
            set.insert(id.clone());
        }
        new_session = Some(id);
    } else if session.is_none() {
        return plain(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id");
    } else if !known(&session) {
        return plain(StatusCode::NOT_FOUND, "unknown session");
    }
    if msg.get("id").is_none() || method.is_none() {
        // A notification or a client response.
        let _ = mock.handle(&msg).await;
        return plain(StatusCode::ACCEPTED, "");
    }
    let server_request = if sse { mock.server_request(&msg) } else { None };
    let Some(response) = mock.handle(&msg).await else {
        return plain(StatusCode::ACCEPTED, "");
    };
    if msg
        .pointer("/params/arguments/_mock_forget_sessions")
        .and_then(Value::as_bool)
        == Some(true)
        && let Ok(mut set) = mock.sessions.lock()
    {
        set.clear();
    }
    if sse {
        let mut text = String::new();
        if let Some(r) = server_request {
            text.push_str(&format!("event: message\ndata: {r}\n\n"));
        }
        text.push_str(&format!("event: message\ndata: {response}\n\n"));
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-cache"));
        add_session(&mut r, new_session.as_deref());
        r
    } else {
        json_response(StatusCode::OK, &response, new_session.as_deref())
    }
}

fn add_session(r: &mut Response<Body>, session: Option<&str>) {
    if let Some(v) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
}

fn json_response(status: StatusCode, value: &Value, session: Option<&str>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_session(&mut r, session);
    r
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            log(&e);
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), String> {
    let (pages, names) = load_pages()?;
    let record = match &cli.record {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        )),
        None => None,
    };
    if let Some(path) = &cli.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mock = Arc::new(Mock {
        pages,
        names,
        record,
        sessions: Mutex::new(HashSet::new()),
        next_server_id: AtomicU64::new(1),
        work: Duration::from_micros(cli.work_us),
        listing: (cli.result_bytes > 0).then(|| rule_listing(cli.result_bytes)),
        busy: Mutex::new(()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        match cli.mode {
            Mode::Stdio { ignore_eof } => {
                run_stdio(mock, ignore_eof).await;
                Ok(())
            }
            Mode::Http {
                listen,
                sse,
                port_file,
            } => run_http(mock, listen, sse, port_file).await,
        }
    })
}
