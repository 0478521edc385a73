//! Faults around the gateway: an upstream that dies or hangs, a syslog that is missing or
//! full, slow and flooding clients, a broken certificate on reload, and old TLS versions.
//! Every wait is bounded; nothing asserts how long something took.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mcpgw::client::{McpClient, tls_config};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use support::{
    Gateway, MOCK, Options, UpstreamSpec, alive, msg_of, sleeping_call_reached, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any single agent call may take before the test calls it a hang.
const CALL_BOUND: Duration = Duration::from_secs(30);

fn mock_upstream(extra: &str) -> UpstreamSpec {
    UpstreamSpec::Raw(format!(
        "command = {MOCK:?}\nargs = [\"stdio\", \"--record\", \"calls.jsonl\", \"--pid-file\", \"mock.pid\"]\n{extra}"
    ))
}

/// A tools/call answered in time: the whole JSON-RPC response.
async fn bounded_call(agent: &mut McpClient, name: &str, args: Value) -> Value {
    match tokio::time::timeout(CALL_BOUND, agent.call_tool(name, args)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{name}: transport error: {e}"),
        Err(_) => panic!("{name}: no answer within {CALL_BOUND:?}"),
    }
}

fn is_success(v: &Value) -> bool {
    v.get("result").is_some() && v["result"]["isError"] != json!(true)
}

/// Zombie children of `pid` (state Z in /proc).
fn zombie_children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid && state == "Z" {
            out.push(child);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_killed_repeatedly_under_load() {
    // The child restarts with a backoff that doubles from 100 ms to 10 s, so 8 kills take
    // about 23 s of backoff; more kills would only add 10 s each.
    const KILLS: usize = 8;
    let gw = Gateway::start_with(Options {
        upstream: mock_upstream("call_timeout_ms = 5000\n"),
        ..Options::default()
    });
    let gateway_pid = gw.child.as_ref().map(|c| c.id()).unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::new();
    for _ in 0..4 {
        let mut agent = gw.agent().await;
        let stop = stop.clone();
        let answered = answered.clone();
        agents.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            // Bounded: at most 100,000 calls even if the stop flag were never set.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = bounded_call(&mut agent, "firewall_list_rules", json!({})).await;
                answered.fetch_add(1, Ordering::Relaxed);
                if is_success(&r) {
                    ok += 1;
                } else {
                    assert_eq!(r["error"]["code"], json!(-32603), "{r}");
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    let mut killed = Vec::new();
    for i in 0..KILLS {
        // Wait for a live child that is not one already killed.
        let mut pid = None;
        let found = wait_until(Duration::from_secs(30), || {
            pid = gw.mock_pid().filter(|p| !killed.contains(p) && alive(*p));
            pid.is_some()
        })
        .await;
        assert!(found, "kill {i}: the upstream child did not come back");
        let pid = pid.unwrap_or(0);
        // Let some calls reach this child before it dies.
        let seen = answered.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(5), || {
            answered.load(Ordering::Relaxed) > seen + 4
        })
        .await;
        unsafe { libc::kill(pid, libc::SIGKILL) };
        killed.push(pid);
    }
    // The child comes back once more, and agents are served by it.
    let back = wait_until(Duration::from_secs(30), || {
        gw.mock_pid()
            .is_some_and(|p| !killed.contains(&p) && alive(p))
    })
    .await;
    assert!(
        back,
        "the upstream child did not come back after the last kill"
    );
    let mut agent = gw.agent().await;
    let mut served = false;
    for _ in 0..100 {
        if is_success(&bounded_call(&mut agent, "firewall_list_rules", json!({})).await) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "no call succeeded after the last restart");
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for a in agents {
        let (o, f) = a.await.expect("agent task");
        ok += o;
        failed += f;
    }
    assert!(ok > 0, "some calls succeeded between kills");
    assert!(failed > 0, "some calls met a dead child ({ok} ok)");
    // Every killed child was reaped: none is left as a zombie of the gateway.
    let reaped = wait_until(Duration::from_secs(10), || {
        zombie_children(gateway_pid).is_empty()
    })
    .await;
    assert!(reaped, "zombies left: {:?}", zombie_children(gateway_pid));
    for pid in &killed {
        assert!(!alive(*pid), "killed child {pid} still exists");
    }
    // The restarts were reported (the audit writer is asynchronous: bounded wait).
    let exits = || {
        gw.syslog_lines(0, Duration::ZERO)
            .iter()
            .filter(|l| msg_of(l).starts_with("fault=upstream-exited"))
            .count()
    };
    wait_until(Duration::from_secs(10), || exits() >= KILLS).await;
    assert!(
        exits() >= KILLS,
        "{} exit reports for {KILLS} kills",
        exits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hanging_upstream_call_times_out_and_others_are_served() {
    let gw = Gateway::start_with(Options {
        upstream: mock_upstream("call_timeout_ms = 4000\n"),
        ..Options::default()
    });
    let mut slow = gw.agent().await;
    let mut fast = gw.agent().await;
    let hung = tokio::spawn(async move {
        bounded_call(
            &mut slow,
            "firewall_list_rules",
            json!({"_mock_sleep_ms": 60000}),
        )
        .await
    });
    assert!(
        sleeping_call_reached(&gw).await,
        "the slow call never reached the upstream"
    );
    for i in 0..3 {
        let r = bounded_call(&mut fast, "firewall_list_rules", json!({"i": i})).await;
        assert!(is_success(&r), "{r}");
    }
    // The upstream is still sleeping on the slow call (60 s), so the calls above were served
    // while it hung; no clock is needed to see that.
    let r = hung.await.expect("slow task");
    assert_eq!(r["error"]["code"], json!(-32603), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("did not answer"),
        "{r}"
    );
    // Two initializes, three fast calls and the timed-out one: wait for all six.
    let lines = gw.decision_lines(6, Duration::from_secs(10));
    assert!(
        lines.iter().any(|l| msg_of(l).contains("upstream=timeout")),
        "the timeout is in the decision record: {lines:?}"
    );
}

/// Drains `sock` into a shared list on a thread, like syslogd.
fn drain(sock: UnixDatagram) -> Arc<std::sync::Mutex<Vec<String>>> {
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16384];
        while let Ok(n) = sock.recv(&mut buf) {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    });
    lines
}

#[tokio::test]
async fn syslog_missing_at_start_then_created() {
    let gw = Gateway::start_with(Options {
        syslog_socket: Some("late.sock".into()),
        ..Options::default()
    });
    let mut agent = gw.agent().await;
    for i in 0..5 {
        let r = bounded_call(&mut agent, "firewall_list_rules", json!({"i": i})).await;
        assert!(is_success(&r), "{r}");
    }
    let late = drain(UnixDatagram::bind(gw.path("late.sock")).expect("bind late.sock"));
    // Keep calling (bounded) until the writer reconnects and reports what it dropped.
    let mut report = None;
    for i in 0..200 {
        let r = bounded_call(&mut agent, "firewall_list_rules", json!({"j": i})).await;
        assert!(is_success(&r), "{r}");
        report = late
            .lock()
            .unwrap()
            .iter()
            .find(|l| msg_of(l).contains("records dropped"))
            .cloned();
        if report.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = report.expect("a dropped report once syslog is back");
    assert!(
        msg_of(&report).contains("syslog was unavailable"),
        "{report}"
    );
    let n: usize = msg_of(&report)
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    // initialize + 5 calls at least (plus the start line) were dropped.
    assert!(n >= 6, "{report}");
    // Later decisions arrive.
    let arrived = wait_until(Duration::from_secs(10), || {
        late.lock()
            .unwrap()
            .iter()
            .any(|l| msg_of(l).starts_with("decision="))
    })
    .await;
    assert!(arrived, "decisions reach syslog after it came back");
}

#[tokio::test]
async fn syslog_nobody_reads_calls_still_answered() {
    let outside = tempfile::tempdir().expect("dir");
    let path = outside.path().join("full.sock");
    // Bound, never read: its queue fills and every send would block.
    let sock = UnixDatagram::bind(&path).expect("bind");
    let gw = Gateway::start_with(Options {
        syslog_socket: Some(path.to_string_lossy().into_owned()),
        syslog_extra: "send_timeout_ms = 100\n".into(),
        ..Options::default()
    });
    let mut agent = gw.agent().await;
    // At least 150 calls, and for longer than the writer's send timeout (100 ms), so a send
    // has timed out and records were dropped however fast the calls are answered.
    let unread = Instant::now();
    let mut calls = 0;
    while calls < 150 || unread.elapsed() < Duration::from_millis(400) {
        let r = bounded_call(&mut agent, "firewall_list_rules", json!({"i": calls})).await;
        assert!(is_success(&r), "call {calls}: {r}");
        calls += 1;
        assert!(calls < 100_000, "bounded");
    }
    assert_eq!(gw.upstream_calls().len(), calls);
    // Now read: the queue was full, so records were dropped and that is reported.
    let lines = drain(sock);
    let mut reported = false;
    for i in 0..200 {
        let r = bounded_call(&mut agent, "firewall_list_rules", json!({"j": i})).await;
        assert!(is_success(&r), "{r}");
        reported = lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| msg_of(l).contains("records dropped"));
        if reported {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported, "a dropped report once syslog reads again");
}

async fn tls_connect(
    gw: &Gateway,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let config = tls_config(gw.cert_pem.as_bytes()).expect("tls config");
    let tcp = TcpStream::connect(gw.addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Reads until EOF or error; true if the server closed the connection within `limit`.
async fn closed_by_server(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    limit: Duration,
) -> bool {
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.is_ok()
}

/// An agent that connects, initializes and makes one successful call, retried (bounded).
async fn served_eventually(gw: &Gateway, tries: usize) -> bool {
    for _ in 0..tries {
        let tls = Some((
            tls_config(gw.cert_pem.as_bytes()).expect("tls"),
            "localhost",
        ));
        if let Ok(Ok(mut c)) = tokio::time::timeout(
            Duration::from_secs(5),
            McpClient::connect(gw.addr, tls, Some(&gw.token)),
        )
        .await
            && let Ok(Ok(_)) = tokio::time::timeout(CALL_BOUND, c.initialize()).await
            && let Ok(Ok(r)) =
                tokio::time::timeout(CALL_BOUND, c.call_tool("firewall_list_rules", json!({})))
                    .await
            && is_success(&r)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_connections_are_cut_and_others_served() {
    const CAP: usize = 6;
    let gw = Gateway::start_with(Options {
        listen_extra: format!("header_read_timeout_ms = 3000\nmax_connections = {CAP}\n"),
        ..Options::default()
    });
    let mut stalled = Vec::new();
    for _ in 0..CAP {
        let mut s = tls_connect(&gw).await.expect("handshake");
        s.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
            .await
            .expect("write");
        s.flush().await.expect("flush");
        stalled.push(s);
    }
    // Each stalled connection is cut by the header deadline (bounded wait, not a timing claim).
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(20)).await,
            "stalled connection {i} was never closed"
        );
    }
    assert!(
        served_eventually(&gw, 50).await,
        "no agent was served after the stalled connections were cut"
    );
}

#[tokio::test]
async fn agent_hanging_up_mid_call_still_leaves_a_decision_record() {
    let gw = Gateway::start_with(Options::default());
    let mut agent = gw.agent().await;
    let call = tokio::spawn(async move {
        agent
            .call_tool("firewall_list_rules", json!({"_mock_sleep_ms": 60000}))
            .await
    });
    assert!(
        sleeping_call_reached(&gw).await,
        "the call never reached the upstream"
    );
    // The agent goes away while its allowed call is upstream: the connection closes and the
    // gateway drops the request. The call may have run, so it must still be on record.
    call.abort();
    let _ = call.await;
    let logged = wait_until(Duration::from_secs(10), || {
        gw.syslog_lines(0, Duration::ZERO).iter().any(|l| {
            let m = msg_of(l);
            m.contains("tool=firewall_list_rules") && m.contains("upstream=abandoned")
        })
    })
    .await;
    assert!(
        logged,
        "no abandoned decision line: {:?}",
        gw.syslog_lines(0, Duration::ZERO)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_flood_is_refused_then_service_recovers() {
    const CAP: usize = 8;
    // Three workers accept on one socket: the cap must count all of them together.
    let gw = Gateway::start_with(Options {
        listen_extra: format!(
            "header_read_timeout_ms = 60000\nmax_connections = {CAP}\nworkers = 3\n"
        ),
        ..Options::default()
    });
    // Fill every slot with an idle, handshaken connection.
    let mut held = Vec::new();
    for i in 0..CAP {
        held.push(
            tls_connect(&gw)
                .await
                .unwrap_or_else(|e| panic!("slot {i}: {e}")),
        );
    }
    // Beyond the cap: accepted by the kernel, closed by the gateway before any TLS.
    let mut refused = 0;
    for _ in 0..3 * CAP {
        if tls_connect(&gw).await.is_err() {
            refused += 1;
        }
    }
    assert_eq!(
        refused,
        3 * CAP,
        "every connection beyond the cap is refused"
    );
    // The held ones still work.
    let first = held.remove(0);
    drop(first);
    drop(held);
    assert!(
        served_eventually(&gw, 50).await,
        "service did not recover after the flood"
    );
    // The audit writer is asynchronous: wait (bounded) for the line rather than race it.
    let logged = wait_until(Duration::from_secs(10), || {
        gw.syslog_lines(0, Duration::ZERO)
            .iter()
            .any(|l| msg_of(l).starts_with("limit=connections"))
    })
    .await;
    assert!(
        logged,
        "the refusal is logged: {:?}",
        gw.syslog_lines(0, Duration::ZERO)
    );
}

#[tokio::test]
async fn garbage_certificate_on_reload_keeps_the_old_one() {
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let mut before = gw.agent().await;
    std::fs::write(
        gw.path("cert.pem"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .expect("write");
    gw.signal(libc::SIGHUP);
    let rejected = wait_until(Duration::from_secs(20), || {
        gw.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("reload rejected"))
    })
    .await;
    assert!(
        rejected,
        "stderr says the reload was rejected: {:?}",
        gw.stderr.lock().unwrap()
    );
    // New TLS connections verify against the OLD certificate (the only one the client trusts).
    let mut after = gw.agent().await;
    let r = bounded_call(&mut after, "firewall_list_rules", json!({})).await;
    assert!(is_success(&r), "{r}");
    let r = bounded_call(&mut before, "firewall_list_rules", json!({})).await;
    assert!(is_success(&r), "{r}");
}

// ---------------------------------------------------------------------------------------------
// TLS versions with a real client.

/// Runs `openssl s_client` against the gateway; (handshake succeeded, output).
fn s_client(gw: &Gateway, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(gw.addr.to_string())
        .args(["-servername", "localhost"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A completed handshake names a negotiated cipher; a failed one says "(NONE)" or no cipher.
    let negotiated =
        out.status.success() && text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (negotiated, text)
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn tls_versions_and_ciphers_with_openssl() {
    if !openssl_available() {
        eprintln!("SKIPPED tls_versions_and_ciphers_with_openssl: `openssl` is not installed");
        return;
    }
    let gw = Gateway::start(support::DEFAULT_POLICY);
    // Old versions: the client is told to allow them (SECLEVEL=0), so a failure is the server's.
    for version in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(&gw, &[version, "-cipher", "DEFAULT:@SECLEVEL=0"]);
        assert!(!ok, "{version} must be refused:\n{text}");
        assert!(
            !text.contains("no protocols available"),
            "{version}: this openssl cannot even offer it, so the check proves nothing:\n{text}"
        );
    }
    for (version, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(&gw, &[version]);
        assert!(ok, "{version} must be accepted:\n{text}");
        assert!(text.contains(name), "{version} negotiated {name}:\n{text}");
    }
    // Weak TLS 1.2 suites: no forward secrecy, CBC with SHA-1, 3DES, RC4.
    let mut tried = 0;
    for cipher in [
        "RC4-SHA",
        "DES-CBC3-SHA",
        "AES128-SHA",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
    ] {
        let spec = format!("{cipher}:@SECLEVEL=0");
        let (ok, text) = s_client(&gw, &["-tls1_2", "-cipher", &spec]);
        if text.contains("no cipher match") {
            eprintln!("SKIPPED cipher {cipher}: this openssl build does not offer it");
            continue;
        }
        tried += 1;
        assert!(!ok, "{cipher} must be refused:\n{text}");
    }
    assert!(tried >= 2, "at least two weak ciphers were really offered");
}
