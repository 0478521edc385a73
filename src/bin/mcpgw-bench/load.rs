//! Load generators: N HTTP/1.1 connections each sending tools/call one after another, and a
//! stdio driver that keeps N requests in flight on one child's stdin/stdout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcpgw::client::McpClient;

use crate::util::CpuProbe;
use rustls::ClientConfig;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::Command;
use tokio::sync::Barrier;

/// Latencies and counts of one scenario.
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    /// Sorted latencies in µs (measured window only).
    pub lat: Vec<u32>,
    /// CPU time of the server under test during the measured window, in µs, when probed.
    pub server_cpu_us: Option<f64>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    /// The server's CPU time per answered call, in µs, when probed.
    pub fn cpu_per_call_us(&self) -> Option<f64> {
        let cpu = self.server_cpu_us?;
        (self.requests > 0).then(|| cpu / self.requests as f64)
    }

    /// The `q` quantile (0..=1) in µs.
    pub fn pct(&self, q: f64) -> u32 {
        if self.lat.is_empty() {
            return 0;
        }
        let i = ((self.lat.len() as f64 * q).ceil() as usize).clamp(1, self.lat.len()) - 1;
        self.lat[i]
    }

    /// Pools another run of the same scenario into this one.
    pub fn absorb(&mut self, other: Stats) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.secs += other.secs;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.lat.extend_from_slice(&other.lat);
        self.lat.sort_unstable();
        self.server_cpu_us = match (self.server_cpu_us, other.server_cpu_us) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }

    fn merge(parts: Vec<(Vec<u32>, u64, Option<String>)>, secs: f64) -> Stats {
        let mut lat = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
        let mut errors = 0;
        let mut first_error = None;
        for (l, e, fe) in parts {
            lat.extend_from_slice(&l);
            errors += e;
            if first_error.is_none() {
                first_error = fe;
            }
        }
        lat.sort_unstable();
        Stats {
            requests: lat.len() as u64,
            errors,
            first_error,
            secs,
            lat,
            server_cpu_us: None,
        }
    }
}

/// Where an HTTP load goes.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<Arc<ClientConfig>>,
    pub token: Option<String>,
}

impl Target {
    pub async fn connect(&self) -> Result<McpClient, String> {
        let tls = self.tls.clone().map(|c| (c, "localhost"));
        McpClient::connect(self.addr, tls, self.token.as_deref()).await
    }

    /// A connected, initialized client.
    pub async fn session(&self) -> Result<McpClient, String> {
        let mut c = self.connect().await?;
        c.initialize().await?;
        Ok(c)
    }
}

/// The body of one tools/call with `id`, with arguments that pass the bench tool's argument
/// rules (see `setup::policy_toml`).
pub fn call_body(id: u64, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{}}}}}"#,
        crate::setup::BENCH_ARGS
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One tools/call on `c`; Ok(()) when the answer is a JSON-RPC result with our id.
pub async fn call_once(c: &mut McpClient, id: u64, tool: &str) -> Result<(), String> {
    let resp = c.post_raw(call_body(id, tool), &[]).await?;
    if resp.status != 200 {
        return Err(format!(
            "HTTP {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        ));
    }
    let want = format!("\"id\":{id}");
    if !contains(&resp.body, want.as_bytes()) || !contains(&resp.body, b"\"result\"") {
        return Err(format!(
            "not a result for id {id}: {}",
            String::from_utf8_lossy(&resp.body)
        ));
    }
    Ok(())
}

/// `conns` connections, each initialized, then tools/call in a loop: `warmup` unrecorded,
/// then `measure` recorded. Runs on the caller's runtime.
pub async fn run_http(
    target: &Target,
    conns: usize,
    warmup: Duration,
    measure: Duration,
    tool: &str,
    cpu: Option<&CpuProbe>,
) -> Result<Stats, String> {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut tasks = Vec::new();
    for n in 0..conns {
        let target = target.clone();
        let barrier = barrier.clone();
        let tool = tool.to_string();
        tasks.push(tokio::spawn(async move {
            let client = target.session().await;
            let (start, end) = {
                barrier.wait().await;
                let now = Instant::now();
                (now + warmup, now + warmup + measure)
            };
            let mut c = client?;
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut first_error = None;
            let mut seq = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                seq += 1;
                let id = ((n as u64 + 1) << 32) | seq;
                match call_once(&mut c, id, &tool).await {
                    Ok(()) => {
                        if t0 >= start {
                            lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(e);
                        }
                        if errors > 100 {
                            break;
                        }
                        // A broken connection: open a new session.
                        if let Ok(fresh) = target.session().await {
                            c = fresh;
                        }
                    }
                }
            }
            Ok::<_, String>((lat, errors, first_error))
        }));
    }
    barrier.wait().await;
    // The server's CPU over the same window the latencies are recorded in.
    let mut server_cpu_us = None;
    if let Some(probe) = cpu {
        tokio::time::sleep(warmup).await;
        let before = probe.ticks();
        tokio::time::sleep(measure).await;
        if let (Some(b), Some(a)) = (before, probe.ticks()) {
            server_cpu_us = Some(a.saturating_sub(b) as f64 * CpuProbe::tick_us());
        }
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.map_err(|e| e.to_string())??);
    }
    let mut stats = Stats::merge(parts, measure.as_secs_f64());
    stats.server_cpu_us = server_cpu_us;
    Ok(stats)
}

/// Writes the tools/call line with `id` (buffered) and notes when it was sent.
async fn send_call<W: AsyncWrite + Unpin>(
    w: &mut W,
    pending: &mut HashMap<u64, Instant>,
    id: u64,
    tool: &str,
) -> Result<(), String> {
    pending.insert(id, Instant::now());
    let mut line = call_body(id, tool);
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())
}

/// The mock as a stdio child (with `mock_args` before `stdio`) driven directly: initialize,
/// then keep `inflight` tools/call requests outstanding (unique ids), for `warmup` + `measure`.
pub async fn run_stdio_direct(
    mock: &std::path::Path,
    threads: usize,
    mock_args: &[String],
    inflight: usize,
    warmup: Duration,
    measure: Duration,
    tool: &str,
) -> Result<Stats, String> {
    let mut cmd = Command::new(mock);
    if threads > 0 {
        cmd.env("TOKIO_WORKER_THREADS", threads.to_string());
    }
    let mut child = cmd
        .args(mock_args)
        .arg("stdio")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the mock: {e}"))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the mock was started without stdio pipes".into());
    };
    let mut w = BufWriter::new(stdin);
    let mut r = BufReader::new(stdout);
    let mut line = String::new();
    w.write_all(
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}
"#,
    )
    .await
    .map_err(|e| e.to_string())?;
    w.flush().await.map_err(|e| e.to_string())?;
    r.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if !line.contains("\"result\"") {
        return Err(format!("stdio initialize: {line}"));
    }
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .map_err(|e| e.to_string())?;

    let mut pending: HashMap<u64, Instant> = HashMap::with_capacity(inflight * 2);
    let mut next = 1u64;
    let started = Instant::now();
    let start = started + warmup;
    let end = start + measure;
    for _ in 0..inflight {
        send_call(&mut w, &mut pending, next, tool).await?;
        next += 1;
    }
    w.flush().await.map_err(|e| e.to_string())?;
    let mut lat = Vec::with_capacity(1 << 20);
    let mut errors = 0u64;
    let mut first_error = None;
    let mut stopping = false;
    while !pending.is_empty() {
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .map_err(|_| "stdio mock stopped answering".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("stdio mock closed stdout".into());
        }
        let id = line.find("\"id\":").map(|i| &line[i + 5..]).map(|s| {
            s.bytes()
                .take_while(u8::is_ascii_digit)
                .fold(0u64, |a, b| a * 10 + (b - b'0') as u64)
        });
        let Some(sent) = id.and_then(|id| pending.remove(&id)) else {
            continue;
        };
        let now = Instant::now();
        if line.contains("\"result\"") {
            if sent >= start && now <= end {
                lat.push((now - sent).as_micros().min(u32::MAX as u128) as u32);
            }
        } else {
            errors += 1;
            if first_error.is_none() {
                first_error = Some(line.trim().to_string());
            }
        }
        if now >= end {
            stopping = true;
        }
        if !stopping {
            send_call(&mut w, &mut pending, next, tool).await?;
            next += 1;
        }
        if r.buffer().is_empty() || stopping {
            w.flush().await.map_err(|e| e.to_string())?;
        }
    }
    drop(w);
    let _ = child.kill().await;
    Ok(Stats::merge(
        vec![(lat, errors, first_error)],
        measure.as_secs_f64(),
    ))
}
