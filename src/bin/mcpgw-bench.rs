//! `mcpgw-bench`: what mcpgw costs, measured side by side in one run on loopback.
//!
//! Scenarios (each N connections sending tools/call one after another for a fixed time, unique
//! JSON-RPC ids, per-request latency recorded in µs):
//! - direct: client -> mock upstream over plain HTTP (the baseline);
//! - floor:  client -> in-process TLS-terminating L4 forwarder -> mock (the least a TLS
//!   gateway can cost);
//! - mcpgw:  client -> `mcpgw run` (TLS, ~150-rule policy, limiter on the called tool) -> mock;
//! - nginx:  client -> nginx (TLS, proxy_pass with upstream keepalive, a worker per core)
//!   -> mock; nginx-log: the same with an access line per request to the syslog sink;
//! - stdio:  mcpgw over the mock as a stdio child vs a driver on the mock's stdio directly,
//!   with a child that answers at once (loaded, then one call at a time) and one that spends
//!   `--stdio-work-us` per call.
//!
//! Then memory (RSS idle, with 1,000 sessions, after 100,000 rate-limit keys), start-up time
//! to the first TLS handshake, binary sizes, and the cost of one policy decision.
//! Figures are printed, never asserted: see BENCHMARKS.md for a recorded run.

#[path = "mcpgw-bench/floor.rs"]
mod floor;
#[path = "mcpgw-bench/load.rs"]
mod load;
#[path = "mcpgw-bench/micro.rs"]
mod micro;
#[path = "mcpgw-bench/setup.rs"]
mod setup;
#[path = "mcpgw-bench/util.rs"]
mod util;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use http::Request;
use http_body_util::Full;

use load::{Stats, Target};
use setup::{BENCH_TOOL, GatewaySpec, Upstream};
use util::{Proc, SyslogSink, TempDir};

const ALL: &[&str] = &[
    "micro", "direct", "floor", "mcpgw", "nginx", "stdio", "rss", "keys", "startup", "sizes",
];

#[derive(Parser)]
#[command(
    name = "mcpgw-bench",
    about = "Benchmarks mcpgw against direct, a TLS floor and nginx"
)]
struct Cli {
    /// Measured seconds per load scenario (after a short unrecorded warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections (and in-flight requests for the stdio driver).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Only these parts (comma-separated): micro,direct,floor,mcpgw,nginx,stdio,rss,keys,startup,sizes.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Policy decisions timed by the micro-benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    decisions: u64,
    /// Sessions opened for the RSS figure.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Identities x limited tools = distinct rate-limit keys for the RSS figure.
    #[arg(long, default_value_t = 1000)]
    key_identities: usize,
    #[arg(long, default_value_t = 100)]
    key_tools: usize,
    /// Connections of the second, unloaded run of each HTTP scenario (0 skips it): latency
    /// without queueing.
    #[arg(long, default_value_t = 1)]
    latency_connections: usize,
    /// Rounds: every scenario runs once per round, interleaved; figures pool the rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// CPU time the stdio child spends per call in the second stdio run (0 skips it); the
    /// first run's child answers at once.
    #[arg(long, default_value_t = 100)]
    stdio_work_us: u64,
    /// Bytes of rule listing the mock adds to every tools/call result (`mcpgw-mock
    /// --result-bytes`; the real server's answers are often several KB). 0: a short result.
    #[arg(long, default_value_t = 0)]
    result_bytes: usize,
    /// Tokio worker threads of the HTTP mock upstream (0: tokio's default, one per core).
    #[arg(long, default_value_t = 1)]
    mock_threads: usize,
    /// mcpgw's `listen.workers` in the load scenarios, and the floor's threads (0: mcpgw's
    /// default, one per core up to 4).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Start mcpgw with this command instead of the release binary next to this one
    /// (whitespace-separated), e.g. "valgrind --tool=callgrind --callgrind-out-file=cg.out
    /// target/prof/release/mcpgw".
    #[arg(long)]
    gateway_cmd: Option<String>,
    /// Record `perf record -g` of the mcpgw process during the mcpgw scenario into this file.
    #[arg(long)]
    perf_record: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    for part in &cli.only {
        if !ALL.contains(&part.as_str()) {
            eprintln!(
                "mcpgw-bench: unknown part {part:?}; parts: {}",
                ALL.join(",")
            );
            return ExitCode::FAILURE;
        }
    }
    if let Some(cmd) = &cli.gateway_cmd {
        let _ = setup::GATEWAY_CMD.set(cmd.split_whitespace().map(str::to_string).collect());
    }
    // The load generator runs on this one thread; servers get the other core(s).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcpgw-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgw-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Report {
    rows: Vec<(String, Stats)>,
    figures: Vec<(String, String)>,
}

impl Report {
    fn stats(&self, name: &str) -> Option<&Stats> {
        self.rows.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Adds a run, pooling it with earlier rounds of the same scenario.
    fn add(&mut self, name: &str, s: Stats) {
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, pooled)) => pooled.absorb(s),
            None => self.rows.push((name.to_string(), s)),
        }
    }

    fn figure(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        println!("  {name}: {value}");
        self.figures.push((name, value));
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| {
        format!("{:.1} MiB ({k} KiB)", k as f64 / 1024.0)
    })
}

fn print_row(name: &str, s: &Stats) {
    let cpu = s
        .cpu_per_call_us()
        .map_or(String::new(), |c| format!(", server CPU {c:.0} µs/call"));
    println!(
        "  {name:<30} {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  ({} requests, {} errors{cpu})",
        s.rps(),
        s.pct(0.50),
        s.pct(0.99),
        s.pct(0.999),
        s.requests,
        s.errors
    );
    if let Some(e) = &s.first_error {
        println!(
            "    first error: {}",
            e.chars().take(300).collect::<String>()
        );
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let want = |p: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == p);
    let measure = Duration::from_secs(cli.seconds.max(1));
    let warmup = Duration::from_millis((cli.seconds * 200).clamp(200, 1000));
    let conns = cli.connections.max(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "mcpgw-bench: {cores} cores, CPU {cpu}, load average {}",
        loadavg()
    );
    println!(
        "mcpgw-bench: {conns} connections, {}s measured per scenario after {} ms warm-up, tool {BENCH_TOOL}",
        measure.as_secs(),
        warmup.as_millis()
    );
    let params = Params {
        conns,
        lat_conns: cli.latency_connections,
        warmup,
        measure,
    };
    let mut report = Report {
        rows: Vec::new(),
        figures: Vec::new(),
    };

    if want("micro") {
        println!("\n== policy decision micro-benchmark (150 rules, 1 thread)");
        let m = micro::run(cli.decisions.max(1000))?;
        for (label, n, ns) in &m.rows {
            report.figure(
                format!("decide: {label}"),
                format!("{ns:.1} ns/decision ({n} decisions)"),
            );
        }
    }

    let dir = TempDir::new("run")?;
    let syslog = SyslogSink::bind(&dir.path("log.sock"))?;
    let mock = setup::start_mock_http(cli.mock_threads, cli.result_bytes)?;
    println!(
        "\n== load scenarios (mock upstream on {}, {} worker thread(s))",
        mock.addr,
        if cli.mock_threads == 0 {
            "default".to_string()
        } else {
            cli.mock_threads.to_string()
        }
    );

    // One certificate for the floor and nginx (mcpgw gets its own, same kind).
    let (cert, key) = mcpgw::server::tls::self_signed(&["localhost"])?;
    std::fs::write(dir.path("floor-cert.pem"), &cert).map_err(|e| e.to_string())?;
    std::fs::write(dir.path("floor-key.pem"), &key).map_err(|e| e.to_string())?;
    let client_tls = mcpgw::client::tls_config(cert.as_bytes())?;

    // Every server is started first; the rounds then run the scenarios interleaved, so
    // background noise on this shared machine falls on all of them alike. Figures pool rounds.
    let mut servers = Vec::<Server>::new();
    if want("direct") {
        let target = Target {
            addr: mock.addr,
            tls: None,
            token: None,
        };
        servers.push(Server::new("direct", "direct (HTTP)", target, None));
    }
    let mut _floor = None;
    if want("floor") {
        let server_tls = mcpgw::server::tls::server_config(&mcpgw::config::TlsFiles {
            cert: dir.path("floor-cert.pem"),
            key: dir.path("floor-key.pem"),
            client_ca: None,
        })?;
        let floor = floor::Floor::start(server_tls, mock.addr, cli.workers)?;
        let target = Target {
            addr: floor.addr,
            tls: Some(client_tls.clone()),
            token: None,
        };
        let mut server = Server::new("floor", "floor (TLS L4 fwd)", target, None);
        server.cpu = Some(util::CpuProbe::Threads("floor"));
        servers.push(server);
        _floor = Some(floor);
    }
    let mut gateway = None;
    if want("mcpgw") {
        let (gw, target) = bench_gateway(
            &dir,
            "http",
            Upstream::Http(mock.addr),
            &syslog.path,
            cli.workers,
        )?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        report.figure("mcpgw RSS idle after start", mib(gw.proc.rss_kib()));
        let pid = gw.proc.pid();
        let mut server = Server::new("mcpgw", "mcpgw (TLS, policy)", target, Some(pid));
        server.cpu = Some(util::CpuProbe::Process(pid));
        servers.push(server);
        gateway = Some(gw);
    }
    let mut _nginx = None;
    if want("nginx") {
        match setup::nginx_binary() {
            None => println!(
                "\n  !!! nginx is not installed: the nginx scenario is SKIPPED (scripts/bench.sh installs it as root)\n"
            ),
            Some(_) => {
                let mut started = Vec::new();
                for (name, label, log) in [
                    ("nginx", "nginx (TLS, no log)", None),
                    (
                        "nginx-log",
                        "nginx (TLS, syslog)",
                        Some(syslog.path.as_path()),
                    ),
                ] {
                    let nginx = setup::start_nginx(&dir, mock.addr, &cert, &key, log)?;
                    let target = Target {
                        addr: nginx.addr,
                        tls: Some(client_tls.clone()),
                        token: None,
                    };
                    let mut server = Server::new(name, label, target, None);
                    server.cpu = Some(util::CpuProbe::ProcessTree(nginx.proc.pid()));
                    servers.push(server);
                    started.push(nginx);
                }
                _nginx = Some(started);
            }
        }
    }
    let logged = syslog.lines.load(Ordering::Relaxed);
    for round in 0..cli.rounds.max(1) {
        println!(
            "-- round {} of {} (load average {})",
            round + 1,
            cli.rounds.max(1),
            loadavg()
        );
        for server in &servers {
            let perf = match (round, server.perf_pid, cli.perf_record.as_deref()) {
                (0, Some(pid), Some(out)) => Some((out, pid)),
                _ => None,
            };
            scenario(&mut report, &params, server, perf).await?;
        }
    }
    if let Some(gw) = &gateway {
        report.figure(
            "syslog lines received during the load runs (mcpgw and nginx-log)",
            format!("{}", syslog.lines.load(Ordering::Relaxed) - logged),
        );
        report.figure("mcpgw RSS after its load runs", mib(gw.proc.rss_kib()));
    }
    drop(gateway);
    drop(_nginx);
    drop(_floor);

    if want("stdio") {
        println!("\n== stdio upstream");
        let mock_bin = util::sibling("mcpgw-mock")?;
        // The child's own cost per call: none (the gateway's ceiling), then `--stdio-work-us`
        // spent one call at a time, as the real server's single event loop does.
        let mut levels = vec![0];
        if cli.stdio_work_us > 0 {
            levels.push(cli.stdio_work_us);
        }
        for work_us in levels {
            let suffix = if work_us == 0 {
                String::new()
            } else {
                format!("-work{work_us}")
            };
            let upstream = Upstream::Stdio {
                threads: cli.mock_threads,
                work_us,
                result_bytes: cli.result_bytes,
            };
            let (_gw, target) = bench_gateway(
                &dir,
                &format!("stdio{suffix}"),
                upstream,
                &syslog.path,
                cli.workers,
            )?;
            let child = format!("child {work_us} µs/call");
            let mock_args = [
                "--work-us".to_string(),
                work_us.to_string(),
                "--result-bytes".to_string(),
                cli.result_bytes.to_string(),
            ];
            // Loaded; then, with the child that answers at once, one call at a time (what one
            // call costs).
            let mut runs = vec![(conns, suffix.clone())];
            if work_us == 0 && cli.latency_connections > 0 {
                let lat = cli.latency_connections;
                runs.push((lat, format!("/{lat}")));
            }
            for _ in 0..cli.rounds.max(1) {
                for (n, row) in &runs {
                    let s = load::run_stdio_direct(
                        &mock_bin,
                        cli.mock_threads,
                        &mock_args,
                        *n,
                        warmup,
                        measure,
                        BENCH_TOOL,
                    )
                    .await?;
                    print_row(&format!("stdio direct driver x{n}, {child}"), &s);
                    report.add(&format!("stdio-direct{row}"), s);
                    let cpu = util::CpuProbe::Process(_gw.proc.pid());
                    let s = load::run_http(&target, *n, warmup, measure, BENCH_TOOL, Some(&cpu))
                        .await?;
                    print_row(&format!("mcpgw over stdio child x{n}, {child}"), &s);
                    report.add(&format!("mcpgw-stdio{row}"), s);
                }
            }
        }
    }

    if want("rss") || want("keys") || want("startup") || want("sizes") {
        println!("\n== memory, start-up, size");
    }
    if want("rss") {
        rss_sessions(&dir, &syslog, mock.addr, cli.sessions, &mut report).await?;
    }
    if want("keys") {
        rss_keys(
            &dir,
            &syslog,
            mock.addr,
            cli.key_identities,
            cli.key_tools,
            &mut report,
        )
        .await?;
    }
    if want("startup") {
        startup(&dir, &syslog, mock.addr, &mut report).await?;
    }
    if want("sizes") {
        sizes(&mut report)?;
    }

    println!("\nmcpgw-bench: load average at the end: {}", loadavg());
    summary(&report, conns, cli.latency_connections, measure);
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

struct Params {
    conns: usize,
    lat_conns: usize,
    warmup: Duration,
    measure: Duration,
}

/// A server an HTTP scenario loads.
struct Server {
    name: &'static str,
    label: &'static str,
    target: Target,
    /// The process `--perf-record` profiles.
    perf_pid: Option<i32>,
    /// Whose CPU time is the server's (none for direct: the mock is not under test).
    cpu: Option<util::CpuProbe>,
}

impl Server {
    fn new(
        name: &'static str,
        label: &'static str,
        target: Target,
        perf_pid: Option<i32>,
    ) -> Server {
        Server {
            name,
            label,
            target,
            perf_pid,
            cpu: None,
        }
    }
}

/// One HTTP scenario: loaded (`conns`), then unloaded (`lat_conns`, row `NAME/1`).
/// `perf`: (output, pid) to record during the loaded run.
async fn scenario(
    report: &mut Report,
    p: &Params,
    server: &Server,
    perf: Option<(&std::path::Path, i32)>,
) -> Result<(), String> {
    let (name, label, target) = (server.name, server.label, &server.target);
    let cpu = server.cpu.as_ref();
    let recorder = match perf {
        Some((out, pid)) => Some(start_perf(out, pid)?),
        None => None,
    };
    let s = load::run_http(target, p.conns, p.warmup, p.measure, BENCH_TOOL, cpu).await?;
    if let Some(mut r) = recorder {
        stop_perf(&mut r);
    }
    print_row(&format!("{label} x{}", p.conns), &s);
    report.add(name, s);
    if p.lat_conns > 0 {
        let s = load::run_http(target, p.lat_conns, p.warmup, p.measure, BENCH_TOOL, cpu).await?;
        print_row(&format!("{label} x{}", p.lat_conns), &s);
        report.add(&format!("{name}/{}", p.lat_conns), s);
    }
    Ok(())
}

fn start_perf(out: &std::path::Path, pid: i32) -> Result<Proc, String> {
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-g", "-F", "2000", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()]);
    let (p, _) = Proc::spawn("perf", cmd, None, Duration::ZERO)?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(p)
}

fn stop_perf(p: &mut Proc) {
    unsafe { libc::kill(p.pid(), libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// RSS of a fresh gateway: idle after start, then with `n` initialized sessions.
async fn rss_sessions(
    dir: &TempDir,
    syslog: &SyslogSink,
    mock: SocketAddr,
    n: usize,
    report: &mut Report,
) -> Result<(), String> {
    let gw = setup::start_gateway(
        dir,
        "rss",
        &GatewaySpec {
            upstream: Upstream::Http(mock),
            listen: "127.0.0.1:0".parse().unwrap(), // ok: constant
            identities: 1,
            policy: None,
            listen_extra: &format!("max_sessions = {}", n + 100),
            syslog_socket: &syslog.path,
        },
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = gw.proc.rss_kib();
    report.figure(
        "RSS idle after start (150-rule policy, HTTP upstream)",
        mib(idle),
    );
    let target = Target {
        addr: gw.addr,
        tls: Some(mcpgw::client::tls_config(gw.files.cert_pem.as_bytes())?),
        token: Some(gw.files.tokens[0].clone()),
    };
    // Sessions are opened over 8 connections, each initialize + notifications/initialized.
    let per_conn = n.div_ceil(8);
    let mut tasks = Vec::new();
    for k in 0..8 {
        let target = target.clone();
        let count = per_conn.min(n.saturating_sub(k * per_conn));
        tasks.push(tokio::spawn(async move {
            let mut c = target.connect().await?;
            let mut ids = Vec::new();
            for _ in 0..count {
                c.session = None;
                c.initialize().await?;
                ids.push(c.session.clone().unwrap_or_default());
            }
            // One call on the last session proves the sessions work.
            if count > 0 {
                load::call_once(&mut c, 1, BENCH_TOOL).await?;
            }
            Ok::<_, String>((c, ids))
        }));
    }
    let mut keep = Vec::new();
    let mut opened = BTreeSet::new();
    for t in tasks {
        let (c, ids) = t.await.map_err(|e| e.to_string())??;
        opened.extend(ids);
        keep.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with = gw.proc.rss_kib();
    report.figure(
        format!(
            "RSS with {} open initialized sessions (8 connections)",
            opened.len()
        ),
        mib(with),
    );
    if let (Some(a), Some(b)) = (idle, with) {
        report.figure(
            "RSS per session",
            format!(
                "{:.2} KiB",
                (b as f64 - a as f64) / opened.len().max(1) as f64
            ),
        );
    }
    drop(keep);
    Ok(())
}

/// RSS after `identities` x `tools` distinct identity-keyed limiter keys: one limit per tool,
/// scope identity (keyed by identity name), each identity calls each tool once.
async fn rss_keys(
    dir: &TempDir,
    syslog: &SyslogSink,
    mock: SocketAddr,
    identities: usize,
    tools: usize,
    report: &mut Report,
) -> Result<(), String> {
    let names: Vec<String> = setup::tool_names(tools);
    let mut policy = String::from("[policy]\ndefault = \"deny\"\n");
    for name in &names {
        policy += &format!(
            "\n[policy.tools.{name}]\nlimits = [{}]\n",
            setup::HUGE_LIMIT
        );
    }
    let gw = setup::start_gateway(
        dir,
        "keys",
        &GatewaySpec {
            upstream: Upstream::Http(mock),
            listen: "127.0.0.1:0".parse().unwrap(), // ok: constant
            identities,
            policy: Some(policy),
            listen_extra: "",
            syslog_socket: &syslog.path,
        },
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = gw.proc.rss_kib();
    report.figure(
        format!("RSS idle with {identities} identities and {tools} limited tools"),
        mib(before),
    );
    let tls = mcpgw::client::tls_config(gw.files.cert_pem.as_bytes())?;
    let tokens = Arc::new(gw.files.tokens.clone());
    let names = Arc::new(names);
    let workers = 16;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (tls, tokens, names, addr) = (tls.clone(), tokens.clone(), names.clone(), gw.addr);
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut first) = (0u64, 0u64, None);
            for i in (w..tokens.len()).step_by(workers) {
                let target = Target {
                    addr,
                    tls: Some(tls.clone()),
                    token: Some(tokens[i].clone()),
                };
                let mut c = target.session().await?;
                for (j, name) in names.iter().enumerate() {
                    match load::call_once(&mut c, j as u64 + 1, name).await {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            failed += 1;
                            first.get_or_insert(e);
                        }
                    }
                }
                // End the session so only the limiter keys stay behind.
                let req = Request::delete("/mcp")
                    .header("host", addr.to_string())
                    .header("authorization", format!("Bearer {}", tokens[i]))
                    .header("mcp-session-id", c.session.clone().unwrap_or_default())
                    .body(Full::default())
                    .map_err(|e| e.to_string())?;
                let _ = c.send(req).await;
            }
            Ok::<_, String>((ok, failed, first))
        }));
    }
    let (mut ok, mut failed, mut first) = (0, 0, None);
    for t in tasks {
        let (o, f, e) = t.await.map_err(|e| e.to_string())??;
        ok += o;
        failed += f;
        if first.is_none() {
            first = e;
        }
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = gw.proc.rss_kib();
    report.figure(
        format!(
            "RSS after {} distinct rate-limit keys ({identities} identities x {tools} tools; {ok} calls ok, {failed} not, {:.1} s)",
            identities * tools,
            took.as_secs_f64()
        ),
        mib(after),
    );
    if let Some(e) = first {
        println!(
            "    first failed call: {}",
            e.chars().take(200).collect::<String>()
        );
    }
    if let (Some(a), Some(b)) = (before, after) {
        report.figure(
            "RSS per rate-limit key",
            format!(
                "{:.0} bytes",
                (b as f64 - a as f64) * 1024.0 / (identities * tools) as f64
            ),
        );
    }
    Ok(())
}

/// Spawn -> first completed TLS handshake on the listening port, best of 5.
async fn startup(
    dir: &TempDir,
    syslog: &SyslogSink,
    mock: SocketAddr,
    report: &mut Report,
) -> Result<(), String> {
    let mut times = Vec::new();
    for run in 0..5 {
        let port = util::free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap(); // ok: a u16 port on loopback
        let files = setup::write_gateway_config(
            dir,
            &format!("start{run}"),
            &GatewaySpec {
                upstream: Upstream::Http(mock),
                listen: addr,
                identities: 1,
                policy: None,
                listen_extra: "",
                syslog_socket: &syslog.path,
            },
        )?;
        let tls = mcpgw::client::tls_config(files.cert_pem.as_bytes())?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap(); // ok: constant
        let mut cmd = Command::new(util::sibling("mcpgw")?);
        cmd.arg("run")
            .arg("-c")
            .arg(&files.config)
            .current_dir(&dir.0);
        let t0 = Instant::now();
        let (proc, _) = Proc::spawn("mcpgw", cmd, None, Duration::ZERO)?;
        let deadline = t0 + Duration::from_secs(10);
        let mut took = None;
        while Instant::now() < deadline {
            if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await
                && connector.connect(name.clone(), tcp).await.is_ok()
            {
                took = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        drop(proc);
        match took {
            Some(t) => times.push(t),
            None => return Err("mcpgw did not accept a TLS connection within 10 s".into()),
        }
    }
    times.sort();
    report.figure(
        "start-up: spawn -> first TLS handshake (best of 5)",
        format!(
            "{:.1} ms (median {:.1} ms)",
            times[0].as_secs_f64() * 1000.0,
            times[2].as_secs_f64() * 1000.0
        ),
    );
    Ok(())
}

/// A gateway with the bench policy and one identity in front of `upstream`, and the target
/// that reaches it over TLS as that identity.
fn bench_gateway(
    dir: &TempDir,
    name: &str,
    upstream: Upstream,
    syslog: &std::path::Path,
    workers: usize,
) -> Result<(setup::Gateway, Target), String> {
    let listen_extra = format!("workers = {workers}");
    let gw = setup::start_gateway(
        dir,
        name,
        &GatewaySpec {
            upstream,
            listen: "127.0.0.1:0".parse().unwrap(), // ok: constant
            identities: 1,
            policy: None,
            listen_extra: &listen_extra,
            syslog_socket: syslog,
        },
    )?;
    let target = Target {
        addr: gw.addr,
        tls: Some(mcpgw::client::tls_config(gw.files.cert_pem.as_bytes())?),
        token: Some(gw.files.tokens[0].clone()),
    };
    Ok((gw, target))
}

fn sizes(report: &mut Report) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for name in ["mcpgw", "mcpgw-mock", "mcpgw-bench"] {
        let size = util::file_size(&exe.with_file_name(name));
        report.figure(
            format!("binary size {name} (linux x86_64, release, stripped)"),
            size.map_or("not built".into(), |s| {
                format!("{:.2} MiB ({s} bytes)", s as f64 / 1048576.0)
            }),
        );
    }
    // target/release/mcpgw-bench -> target/x86_64-unknown-freebsd/release/mcpgw
    let freebsd = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|t| t.join("x86_64-unknown-freebsd/release/mcpgw"));
    report.figure(
        "binary size mcpgw (FreeBSD x86_64)",
        freebsd
            .as_deref()
            .and_then(util::file_size)
            .map_or("not built here (make freebsd)".into(), |s| {
                format!("{:.2} MiB ({s} bytes)", s as f64 / 1048576.0)
            }),
    );
    Ok(())
}

fn summary(report: &Report, conns: usize, lat_conns: usize, measure: Duration) {
    println!(
        "\n== summary ({conns} connections; {} s per scenario and round, rounds pooled)\n",
        measure.as_secs()
    );
    println!(
        "| scenario | req/s | p50 µs | p99 µs | p99.9 µs | errors | server CPU µs/call |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (name, s) in &report.rows {
        let cpu = s
            .cpu_per_call_us()
            .map_or("-".into(), |c| format!("{c:.0}"));
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {cpu} |",
            s.rps(),
            s.pct(0.5),
            s.pct(0.99),
            s.pct(0.999),
            s.errors
        );
    }
    println!();
    let added = |name: &str, base: &str, q: f64| -> Option<f64> {
        let d = report.stats(base)?;
        let s = report.stats(name)?;
        Some(s.pct(q) as f64 - d.pct(q) as f64)
    };
    let suffixes = [format!("/{lat_conns}"), String::new()];
    for suffix in &suffixes {
        let load = if suffix.is_empty() {
            format!("{conns} connections (loaded)")
        } else {
            format!("{lat_conns} connection(s) (unloaded)")
        };
        let direct = format!("direct{suffix}");
        for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
            let get = |n: &str| added(&format!("{n}{suffix}"), &direct, q);
            let parts: Vec<String> = ["floor", "mcpgw", "nginx", "nginx-log"]
                .iter()
                .filter_map(|n| get(n).map(|a| format!("{n} {a:+.0} µs")))
                .collect();
            if parts.is_empty() {
                continue;
            }
            println!(
                "added latency over direct, {label}, {load}: {}",
                parts.join(", ")
            );
            for other in ["floor", "nginx", "nginx-log"] {
                if let (Some(m), Some(f)) = (get("mcpgw"), get(other)) {
                    let r = if f > 0.0 {
                        format!("{:.2}x", m / f)
                    } else {
                        "n/a (baseline added <= 0)".into()
                    };
                    println!("  mcpgw added / {other} added: {r}");
                }
            }
        }
    }
    // The stdio upstream, one call at a time: over the pipe driver, next to the HTTP upstream
    // over direct HTTP.
    let one = format!("/{lat_conns}");
    let stdio_added = |q| {
        added(
            &format!("mcpgw-stdio{one}"),
            &format!("stdio-direct{one}"),
            q,
        )
    };
    let http_added = |q| added(&format!("mcpgw{one}"), &format!("direct{one}"), q);
    if let (Some(p50), Some(p99)) = (stdio_added(0.5), stdio_added(0.99)) {
        let http = match (http_added(0.5), http_added(0.99)) {
            (Some(h50), Some(h99)) => format!(" (over HTTP: p50 {h50:+.0} µs, p99 {h99:+.0} µs)"),
            _ => String::new(),
        };
        println!(
            "added latency over the stdio driver, {lat_conns} in flight (unloaded): p50 {p50:+.0} µs, p99 {p99:+.0} µs{http}"
        );
    }
    let ratio =
        |a: &str, b: &str| -> Option<f64> { Some(report.stats(a)?.rps() / report.stats(b)?.rps()) };
    for (a, b, label) in [
        ("mcpgw", "direct", "throughput mcpgw / direct"),
        ("mcpgw", "floor", "throughput mcpgw / floor"),
        ("mcpgw", "nginx", "throughput mcpgw / nginx"),
        ("mcpgw", "nginx-log", "throughput mcpgw / nginx with syslog"),
        (
            "mcpgw-stdio",
            "stdio-direct",
            "stdio: mcpgw over stdio child / direct stdio driver",
        ),
        (
            "mcpgw-stdio",
            "mcpgw",
            "stdio: mcpgw over stdio child / mcpgw over HTTP upstream",
        ),
    ] {
        if let Some(r) = ratio(a, b) {
            println!("{label}: {:.1} %", r * 100.0);
        }
    }
    // The runs with a working child, whatever `--stdio-work-us` was.
    for (name, _) in &report.rows {
        let Some(suffix) = name.strip_prefix("mcpgw-stdio-work") else {
            continue;
        };
        if let Some(r) = ratio(name, &format!("stdio-direct-work{suffix}")) {
            println!(
                "stdio, child {suffix} µs/call: mcpgw over stdio child / direct stdio driver: {:.1} %",
                r * 100.0
            );
        }
    }
    if !report.figures.is_empty() {
        println!();
        for (name, value) in &report.figures {
            println!("- {name}: {value}");
        }
    }
}
