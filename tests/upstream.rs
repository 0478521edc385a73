//! Integration tests of `mcpgw::upstream` against the real `mcpgw-mock` binary, as a stdio
//! child and over Streamable HTTP on loopback (JSON and SSE answers).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mcpgw::config::{UpstreamConfig, UpstreamKind};
use mcpgw::upstream::{Outcome, Upstream, UpstreamError, UpstreamEvent};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const MOCK: &str = env!("CARGO_BIN_EXE_mcpgw-mock");
/// Upper bound for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

type Events = mpsc::UnboundedReceiver<UpstreamEvent>;

fn stdio_config(args: &[&str], call_timeout: Duration) -> UpstreamConfig {
    let mut all = vec!["stdio".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    UpstreamConfig {
        kind: UpstreamKind::Stdio {
            command: MOCK.to_string(),
            args: all,
            env: BTreeMap::new(),
            env_file: None,
        },
        call_timeout,
    }
}

async fn start(cfg: &UpstreamConfig) -> (Upstream, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let upstream = Upstream::start(cfg, tx).await.expect("upstream starts");
    (upstream, rx)
}

/// Waits (bounded) for an event matching `pred`; returns it.
async fn wait_event(events: &mut Events, pred: impl Fn(&UpstreamEvent) -> bool) -> UpstreamEvent {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(e) = events.recv().await {
            if pred(&e) {
                return Some(e);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(e)) => e,
        other => panic!("expected event not seen: {other:?}"),
    }
}

fn call_text(outcome: Outcome) -> Value {
    let Outcome::Result(result) = outcome else {
        panic!("expected a result, got {outcome:?}");
    };
    let result = Outcome::parse(&result).expect("a JSON result");
    let text = result["content"][0]["text"].as_str().expect("text content");
    serde_json::from_str(text).expect("the mock echoes JSON")
}

fn tool_call(name: &str, arguments: Value) -> Option<Value> {
    Some(json!({"name": name, "arguments": arguments}))
}

fn process_exists(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

fn temp_path(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "mcpgw-upstream-test-{}-{n}-{what}",
        std::process::id()
    ))
}

async fn concurrent_calls(upstream: &Upstream, count: usize) {
    let mut tasks = Vec::new();
    for i in 0..count {
        let u = upstream.clone();
        tasks.push(tokio::spawn(async move {
            let args = json!({"n": i, "_mock_sleep_ms": (count - i) % 7});
            (
                i,
                u.call("tools/call", tool_call("get_interfaces", args))
                    .await,
            )
        }));
    }
    for task in tasks {
        let (i, answer) = task.await.expect("task");
        let echoed = call_text(answer.expect("answered"));
        assert_eq!(echoed["tool"], "get_interfaces");
        assert_eq!(
            echoed["arguments"]["n"], i,
            "responses must match their requests"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// stdio

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdio_initializes_once_and_matches_concurrent_calls() {
    let (upstream, mut events) = start(&stdio_config(&[], Duration::from_secs(10))).await;
    let init = upstream
        .initialize_result()
        .expect("cached InitializeResult");
    assert_eq!(init["serverInfo"]["name"], "opnsense-mcp");
    assert_eq!(init["protocolVersion"], "2025-06-18");
    assert!(matches!(
        wait_event(&mut events, |e| matches!(e, UpstreamEvent::Started { .. })).await,
        UpstreamEvent::Started { pid: Some(_) }
    ));

    concurrent_calls(&upstream, 100).await;

    let Outcome::Error(err) = upstream
        .call("tools/call", tool_call("no_such_tool", json!({})))
        .await
        .expect("answered")
    else {
        panic!("an unknown tool is a JSON-RPC error");
    };
    assert_eq!(Outcome::parse(&err).expect("JSON")["code"], -32602);
    assert_eq!(
        upstream.call("ping", None).await,
        Ok(Outcome::result(&json!({})))
    );
    upstream.shutdown().await;
}

/// A call in flight: its number, its filler, then its answer.
type FillerCall = tokio::task::JoinHandle<(usize, String, Result<Outcome, UpstreamError>)>;

/// Each call answered by the mock's echo of exactly its own `n` and `filler`: no line was
/// torn, interleaved or matched to another call.
async fn assert_fillers_echoed(tasks: Vec<FillerCall>) {
    for task in tasks {
        let (i, filler, answer) = task.await.expect("task");
        let echoed = call_text(answer.expect("answered"));
        assert_eq!(echoed["arguments"]["n"], i);
        assert_eq!(
            echoed["arguments"]["filler"].as_str(),
            Some(filler.as_str())
        );
    }
}

/// Calls write into the child's stdin themselves while the pipe has room; when it is full
/// the rest goes through the writer task, and later lines queue behind it. Far more than a
/// pipe holds (64 KiB on Linux), sent at once, must arrive whole and be answered in kind:
/// multi-byte characters (a partial write may end inside one), and the gateway's refusals
/// of server requests mixed in (they take the same path).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdio_calls_beyond_the_pipe_buffer_arrive_whole() {
    let (upstream, mut events) = start(&stdio_config(&[], Duration::from_secs(20))).await;
    let mut tasks = Vec::new();
    let mut server_requests = 0;
    for i in 0..48usize {
        let u = upstream.clone();
        let asks_back = i % 4 == 0;
        server_requests += usize::from(asks_back);
        tasks.push(tokio::spawn(async move {
            // Distinct content per call, so a torn or interleaved line cannot go unseen.
            let letter = ['é', '€', 'a', '𝄞'][i % 4];
            let filler: String = std::iter::repeat_n(letter, 30_000)
                .chain(i.to_string().chars())
                .collect();
            let mut args = json!({"n": i, "filler": filler});
            if asks_back {
                args["_mock_server_request"] = json!("roots/list");
            }
            let answer = u
                .call("tools/call", tool_call("get_interfaces", args))
                .await;
            (i, filler, answer)
        }));
    }
    assert_fillers_echoed(tasks).await;
    // Every refusal reached the child whole (it logs each answer it gets).
    for _ in 0..server_requests {
        wait_event(
            &mut events,
            |e| matches!(e, UpstreamEvent::Stderr(l) if l.contains("-32601")),
        )
        .await;
    }
    // And the direct path still works once the backlog is written.
    concurrent_calls(&upstream, 20).await;
    upstream.shutdown().await;
}

/// Short lines (at most `PIPE_BUF` bytes) are written by many threads at once without the
/// exclusive lock; long ones take it and may be written in parts or queued. Mixed, from
/// several threads and far beyond the pipe's buffer, every line must still arrive whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdio_short_and_long_lines_from_many_threads_stay_whole() {
    let (upstream, _events) = start(&stdio_config(&[], Duration::from_secs(20))).await;
    // Rounds, because a torn line needs writers to meet a full pipe at the same moment.
    for round in 0..4usize {
        let mut tasks = Vec::new();
        for i in 0..400usize {
            let u = upstream.clone();
            tasks.push(tokio::spawn(async move {
                // Every fourth call is long (well over any PIPE_BUF); the rest stay short.
                let filler = if i % 4 == 0 {
                    format!("{}{round}/{i}", "ü".repeat(30_000))
                } else {
                    format!("s{round}/{i}")
                };
                let args = json!({"n": i, "filler": filler});
                let answer = u
                    .call("tools/call", tool_call("get_interfaces", args))
                    .await;
                (i, filler, answer)
            }));
        }
        assert_fillers_echoed(tasks).await;
    }
    upstream.shutdown().await;
}

#[tokio::test]
async fn stdio_skips_non_json_lines() {
    let (upstream, mut events) = start(&stdio_config(&[], Duration::from_secs(10))).await;
    let echoed = call_text(
        upstream
            .call("tools/call", tool_call("create_backup", json!({})))
            .await
            .expect("create_backup answered"),
    );
    assert_eq!(echoed["tool"], "create_backup");
    let e = wait_event(&mut events, |e| matches!(e, UpstreamEvent::NonJsonLine(_))).await;
    assert_eq!(e, UpstreamEvent::NonJsonLine("Creating backup...".into()));
    upstream.shutdown().await;
}

#[tokio::test]
async fn answers_nested_too_deep_are_not_relayed() {
    let (upstream, _events) = start(&stdio_config(&[], Duration::from_secs(10))).await;
    // The result object and `structuredContent` are 2 levels, then the arrays.
    let deep_enough = upstream
        .call(
            "tools/call",
            tool_call("create_backup", json!({"_mock_nest": 124})),
        )
        .await;
    assert!(
        matches!(deep_enough, Ok(Outcome::Result(_))),
        "{deep_enough:?}"
    );
    let too_deep = upstream
        .call(
            "tools/call",
            tool_call("create_backup", json!({"_mock_nest": 125})),
        )
        .await;
    assert!(
        matches!(&too_deep, Err(UpstreamError::Protocol(why)) if why.contains("deeper than 126")),
        "{too_deep:?}"
    );
    upstream.shutdown().await;
}

#[tokio::test]
async fn stdio_refuses_server_requests() {
    let (upstream, mut events) = start(&stdio_config(&[], Duration::from_secs(10))).await;
    let args = json!({"_mock_server_request": "sampling/createMessage"});
    let answer = upstream
        .call("tools/call", tool_call("get_interfaces", args))
        .await;
    assert!(matches!(answer, Ok(Outcome::Result(_))));
    // The mock logs the client's answer on stderr, which the upstream forwards.
    let e = wait_event(&mut events, |e| {
        matches!(e, UpstreamEvent::Stderr(l) if l.contains("-32601") && l.contains("not supported through mcpgw"))
    })
    .await;
    assert!(matches!(e, UpstreamEvent::Stderr(_)));
    upstream.shutdown().await;
}

#[tokio::test]
async fn stdio_child_death_fails_pending_and_restarts() {
    let record = temp_path("record");
    let record_arg = record.to_string_lossy().to_string();
    let cfg = stdio_config(&["--record", &record_arg], Duration::from_secs(10));
    let (upstream, mut events) = start(&cfg).await;
    let first_pid = upstream.child_pid().expect("a child");
    let slow = {
        let u = upstream.clone();
        tokio::spawn(async move {
            u.call(
                "tools/call",
                tool_call("get_interfaces", json!({"_mock_sleep_ms": 10_000})),
            )
            .await
        })
    };
    // Let the slow call reach the child before it dies (bounded wait on the record file).
    let mut seen = false;
    for _ in 0..400 {
        if std::fs::read_to_string(&record).is_ok_and(|t| t.contains("_mock_sleep_ms")) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "the mock recorded the slow call");
    let crash = upstream
        .call(
            "tools/call",
            tool_call("get_interfaces", json!({"_mock_exit": true})),
        )
        .await;
    assert_eq!(crash, Err(UpstreamError::Died));
    assert_eq!(slow.await.expect("task"), Err(UpstreamError::Died));
    let exited = wait_event(&mut events, |e| matches!(e, UpstreamEvent::Exited { .. })).await;
    assert!(
        matches!(exited, UpstreamEvent::Exited { pending, .. } if pending >= 1),
        "{exited:?}"
    );

    // The next call waits for the restart (up to the call timeout) and succeeds.
    let echoed = call_text(
        upstream
            .call(
                "tools/call",
                tool_call("get_interfaces", json!({"after": "restart"})),
            )
            .await
            .expect("answered after the restart"),
    );
    assert_eq!(echoed["arguments"]["after"], "restart");
    let second_pid = upstream.child_pid().expect("a new child");
    assert_ne!(first_pid, second_pid);
    assert!(!process_exists(first_pid), "the dead child was reaped");
    assert!(upstream.initialize_result().is_some());
    upstream.shutdown().await;
    assert!(!process_exists(second_pid));
    let _ = std::fs::remove_file(&record);
}

#[tokio::test]
async fn stdio_dropped_call_sends_cancelled() {
    let (upstream, mut events) = start(&stdio_config(&[], Duration::from_secs(10))).await;
    let call = upstream.call(
        "tools/call",
        tool_call("get_interfaces", json!({"_mock_sleep_ms": 30_000})),
    );
    // Dropping the future (here: by the outer timeout) must cancel upstream.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), call)
            .await
            .is_err()
    );
    let e = wait_event(
        &mut events,
        |e| matches!(e, UpstreamEvent::Stderr(l) if l.contains("notifications/cancelled")),
    )
    .await;
    let UpstreamEvent::Stderr(line) = e else {
        unreachable!()
    };
    assert!(line.contains("requestId"), "{line}");
    assert!(line.contains("cancelled by the client"), "{line}");
    // The upstream stays usable.
    assert!(upstream.call("ping", None).await.is_ok());
    upstream.shutdown().await;
}

#[tokio::test]
async fn stdio_call_times_out_and_cancels() {
    let (upstream, mut events) = start(&stdio_config(&[], Duration::from_millis(500))).await;
    let answer = upstream
        .call(
            "tools/call",
            tool_call("get_interfaces", json!({"_mock_sleep_ms": 30_000})),
        )
        .await;
    assert_eq!(answer, Err(UpstreamError::Timeout));
    let e = wait_event(&mut events, |e| {
        matches!(e, UpstreamEvent::Stderr(l) if l.contains("notifications/cancelled") && l.contains("timeout"))
    })
    .await;
    assert!(matches!(e, UpstreamEvent::Stderr(_)));
    upstream.shutdown().await;
}

#[tokio::test]
async fn stdio_shutdown_terminates_a_child_that_ignores_eof() {
    let (upstream, mut events) =
        start(&stdio_config(&["--ignore-eof"], Duration::from_secs(10))).await;
    let pid = upstream.child_pid().expect("a child");
    assert!(process_exists(pid));
    upstream.shutdown().await;
    assert!(!process_exists(pid), "no zombie or orphan left");
    assert_eq!(upstream.child_pid(), None);
    upstream.shutdown().await; // idempotent
    let after = upstream.call("ping", None).await;
    assert!(
        matches!(after, Err(UpstreamError::Unavailable(_))),
        "{after:?}"
    );
    // An orderly stop is reported as such, not as the child dying.
    let e = wait_event(&mut events, |e| {
        matches!(
            e,
            UpstreamEvent::Stopped { .. } | UpstreamEvent::Exited { .. }
        )
    })
    .await;
    assert!(
        matches!(e, UpstreamEvent::Stopped { pending: 0, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn stdio_start_failure_is_reported() {
    let cfg = UpstreamConfig {
        kind: UpstreamKind::Stdio {
            command: "mcpgw-test-no-such-command".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_file: None,
        },
        call_timeout: Duration::from_secs(1),
    };
    let (tx, _rx) = mpsc::unbounded_channel();
    let result = Upstream::start(&cfg, tx).await;
    assert!(matches!(result, Err(UpstreamError::Unavailable(_))));
}

// ---------------------------------------------------------------------------------------------
// Streamable HTTP

/// A mock HTTP server on a free loopback port, with its stderr lines.
struct HttpMock {
    child: tokio::process::Child,
    port: u16,
    stderr: mpsc::UnboundedReceiver<String>,
}

async fn http_mock(extra: &[&str]) -> HttpMock {
    let port_file = temp_path("port");
    let _ = std::fs::remove_file(&port_file);
    let mut child = tokio::process::Command::new(MOCK)
        .args(["http", "--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mock starts");
    let (tx, stderr) = mpsc::unbounded_channel();
    let pipe = child.stderr.take().expect("stderr piped");
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    let mut port = None;
    for _ in 0..400 {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
        {
            port = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = std::fs::remove_file(&port_file);
    HttpMock {
        child,
        port: port.expect("the mock wrote its port"),
        stderr,
    }
}

impl HttpMock {
    fn config(&self, query: &str, call_timeout: Duration) -> UpstreamConfig {
        UpstreamConfig {
            kind: UpstreamKind::Http {
                url: format!("http://127.0.0.1:{}/mcp{query}", self.port),
            },
            call_timeout,
        }
    }

    async fn wait_stderr(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.stderr.recv().await {
                if pred(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            other => panic!("expected mock log line not seen: {other:?}"),
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_json_initializes_and_matches_concurrent_calls() {
    let mut mock = http_mock(&[]).await;
    let (upstream, _events) = start(&mock.config("", Duration::from_secs(10))).await;
    let init = upstream
        .initialize_result()
        .expect("cached InitializeResult");
    assert_eq!(init["serverInfo"]["version"], "0.9.0");
    assert_eq!(upstream.child_pid(), None);
    mock.wait_stderr(|l| l.contains("notifications/initialized"))
        .await;

    concurrent_calls(&upstream, 100).await;

    let answer = upstream
        .call("tools/call", tool_call("nope", json!({})))
        .await;
    assert!(
        matches!(answer, Ok(Outcome::Error(ref e)) if Outcome::parse(e).expect("JSON")["message"] == "Unknown tool: nope")
    );
    upstream
        .notify("notifications/roots/list_changed", None)
        .await;
    mock.wait_stderr(|l| l.contains("notifications/roots/list_changed"))
        .await;
    upstream.shutdown().await;
    upstream.shutdown().await;
    let after = upstream.call("ping", None).await;
    assert!(matches!(after, Err(UpstreamError::Unavailable(_))));
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_sse_answers_and_refused_server_requests() {
    let mut mock = http_mock(&[]).await;
    let (upstream, mut events) = start(&mock.config("?sse=1", Duration::from_secs(10))).await;
    assert!(upstream.initialize_result().is_some());
    concurrent_calls(&upstream, 100).await;
    let args = json!({"_mock_server_request": "roots/list", "k": "v"});
    let echoed = call_text(
        upstream
            .call("tools/call", tool_call("get_vlan", args))
            .await
            .expect("answered"),
    );
    assert_eq!(echoed["arguments"]["k"], "v");
    wait_event(
        &mut events,
        |e| matches!(e, UpstreamEvent::Dropped(m) if m.contains("roots/list")),
    )
    .await;
    mock.wait_stderr(|l| l.contains("-32601") && l.contains("not supported through mcpgw"))
        .await;
    upstream.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn http_reinitializes_when_the_session_is_forgotten() {
    let mock = http_mock(&["--sse"]).await;
    let (upstream, _events) = start(&mock.config("", Duration::from_secs(10))).await;
    let forget = upstream
        .call(
            "tools/call",
            tool_call("get_interfaces", json!({"_mock_forget_sessions": true})),
        )
        .await;
    assert!(matches!(forget, Ok(Outcome::Result(_))));
    let echoed = call_text(
        upstream
            .call(
                "tools/call",
                tool_call("get_interfaces", json!({"again": 1})),
            )
            .await
            .expect("answered after re-initialization"),
    );
    assert_eq!(echoed["arguments"]["again"], 1);
    upstream.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn http_timeout_and_drop_cancel_upstream() {
    let mut mock = http_mock(&[]).await;
    let (upstream, _events) = start(&mock.config("", Duration::from_millis(500))).await;
    let answer = upstream
        .call(
            "tools/call",
            tool_call("get_interfaces", json!({"_mock_sleep_ms": 30_000})),
        )
        .await;
    assert_eq!(answer, Err(UpstreamError::Timeout));
    mock.wait_stderr(|l| l.contains("notifications/cancelled") && l.contains("timeout"))
        .await;

    let call = upstream.call(
        "tools/call",
        tool_call("get_interfaces", json!({"_mock_sleep_ms": 30_000})),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
    );
    mock.wait_stderr(|l| {
        l.contains("notifications/cancelled") && l.contains("cancelled by the client")
    })
    .await;
    upstream.shutdown().await;
    mock.stop().await;
}

#[tokio::test]
async fn http_unreachable_and_https_are_unavailable() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let https = UpstreamConfig {
        kind: UpstreamKind::Http {
            url: "https://127.0.0.1:1/mcp".into(),
        },
        call_timeout: Duration::from_secs(1),
    };
    assert_eq!(
        Upstream::start(&https, tx.clone()).await.err(),
        Some(UpstreamError::Unavailable(
            "https upstream not supported yet".into()
        ))
    );
    // A port nobody listens on: bind one, learn it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let closed = UpstreamConfig {
        kind: UpstreamKind::Http {
            url: format!("http://127.0.0.1:{port}/mcp"),
        },
        call_timeout: Duration::from_secs(2),
    };
    assert!(matches!(
        Upstream::start(&closed, tx).await,
        Err(UpstreamError::Unavailable(_))
    ));
}

#[tokio::test]
async fn mock_lists_every_tool_in_pages() {
    let (upstream, _events) = start(&stdio_config(&[], Duration::from_secs(10))).await;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 100, "pagination ends");
        let params = cursor.as_ref().map(|c| json!({"cursor": c}));
        let Ok(Outcome::Result(page)) = upstream.call("tools/list", params).await else {
            panic!("tools/list answered");
        };
        let page = Outcome::parse(&page).expect("a JSON page");
        let tools = page["tools"].as_array().expect("tools");
        assert!(tools.len() <= 50);
        names.extend(
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string)),
        );
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert!(pages > 1);
    assert!(names.iter().any(|n| n == "openvpn_disconnect_client"));
    assert!(names.iter().any(|n| n == "create_backup"));
    assert!(!names.iter().any(|n| n.starts_with("mock_")));
    let bad = upstream
        .call("tools/list", Some(json!({"cursor": "bogus"})))
        .await;
    assert!(
        matches!(bad, Ok(Outcome::Error(ref e)) if Outcome::parse(e).expect("JSON")["code"] == -32602)
    );
    upstream.shutdown().await;
}

/// Not a test of speed (nothing is asserted about time): `cargo test --release --test upstream
/// -- --ignored --nocapture throughput` prints calls per second through the stdio upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn throughput() {
    let (upstream, _events) = start(&stdio_config(&[], Duration::from_secs(30))).await;
    let started = std::time::Instant::now();
    let workers = 64;
    let per_worker = 500;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let u = upstream.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_worker {
                let args = json!({"w": w, "i": i});
                let answer = u
                    .call("tools/call", tool_call("get_interfaces", args))
                    .await;
                assert!(matches!(answer, Ok(Outcome::Result(_))));
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let calls = workers * per_worker;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{calls} calls in {secs:.2} s: {:.0} calls/s",
        calls as f64 / secs
    );
    upstream.shutdown().await;
}
