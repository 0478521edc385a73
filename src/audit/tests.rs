//! Auditor tests against a real unix datagram socket bound in a temporary directory.

use super::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

/// Upper bound for every wait in these tests (never a timing assertion).
const WAIT: Duration = Duration::from_secs(10);

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mcpgw-audit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("log")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(socket: &Path, queue: usize) -> SyslogConfig {
    SyslogConfig {
        socket: socket.to_path_buf(),
        queue,
        send_timeout: std::time::Duration::from_millis(100),
        log_arguments: vec!["interface".to_string()],
        hostname: Some("fw.test".to_string()),
    }
}

fn bind(path: &Path) -> UnixDatagram {
    let sock = UnixDatagram::bind(path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 65536];
    let n = sock.recv(&mut buf).expect("a datagram within the wait");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Polls `cond` until it holds or [`WAIT`] passes.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// The fields of an RFC 5424 line as OPNsense's log viewer splits them:
/// `^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) ?(.*)$` (PCRE, no flags: `\S` excludes
/// space, \t, \n, \v, \f, \r; `.` excludes \n; `$` also matches before a final \n).
fn opnsense_fields(line: &str) -> Option<[&str; 8]> {
    let pcre_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r');
    let line = line.strip_suffix('\n').unwrap_or(line);
    let rest = line.strip_prefix('<')?;
    let close = rest.find('>')?;
    let pri = &rest[..close];
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut rest = rest[close..].strip_prefix(">1 ")?;
    let mut fields = [pri, "", "", "", "", "", "", ""];
    for (i, field) in fields.iter_mut().enumerate().skip(1).take(6) {
        let end = rest.find(pcre_space).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        *field = &rest[..end];
        rest = &rest[end..];
        if i < 6 {
            rest = rest.strip_prefix(' ')?;
        }
    }
    let msg = rest.strip_prefix(' ').unwrap_or(rest);
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None; // the SD field ran into something that is not a space
    }
    if msg.contains('\n') {
        return None;
    }
    fields[7] = msg;
    Some(fields)
}

fn decision(verdict: Verdict, tool: &str) -> DecisionRecord {
    let mut rec = DecisionRecord::new(verdict, "tools/call");
    rec.identity = Some(Arc::from("claude"));
    rec.source = Some("192.0.2.7".parse().unwrap());
    rec.tool = Some(tool.to_string());
    rec.rule = Some(format!("tools.{tool}"));
    rec.latency_us = Some(87);
    rec
}

#[test]
fn severity_mapping() {
    assert_eq!(
        severity_of(&decision(Verdict::Deny, "a")),
        Severity::Warning
    );
    assert_eq!(
        severity_of(&decision(Verdict::Limit, "a")),
        Severity::Warning
    );
    assert_eq!(severity_of(&decision(Verdict::Hide, "a")), Severity::Info);
    let mut rec = decision(Verdict::Allow, "a");
    assert_eq!(severity_of(&rec), Severity::Info);
    rec.upstream = Some("ok".to_string());
    assert_eq!(severity_of(&rec), Severity::Info);
    rec.upstream = Some("error".to_string());
    assert_eq!(severity_of(&rec), Severity::Info);
    for fault in ["timeout", "unavailable", "died", "died: signal 9"] {
        rec.upstream = Some(fault.to_string());
        assert_eq!(severity_of(&rec), Severity::Error, "{fault}");
    }
}

#[test]
fn opnsense_regex_stand_in() {
    let f =
        opnsense_fields("<28>1 2025-01-01T00:00:00.000000Z fw mcpgw 42 - - a=b c=\"d e\"").unwrap();
    assert_eq!(
        f,
        [
            "28",
            "2025-01-01T00:00:00.000000Z",
            "fw",
            "mcpgw",
            "42",
            "-",
            "-",
            "a=b c=\"d e\""
        ]
    );
    assert!(opnsense_fields("<28>1 t h a p - - x\ny").is_none());
    assert!(opnsense_fields("<28> t h a p - - x").is_none());
    assert!(opnsense_fields("<1000>1 t h a p - - x").is_none());
}

#[test]
fn round_trip_rfc5424() {
    let dir = TempDir::new();
    let server = bind(&dir.socket());
    let auditor = Auditor::start(&config(&dir.socket(), 64));

    let mut allow = decision(Verdict::Allow, "firewall_list_rules");
    allow.upstream = Some("ok".to_string());
    allow.arguments = vec![
        ("interface".to_string(), "\"lan\"".to_string()),
        ("password".to_string(), "\"secret\"".to_string()),
    ];
    let mut deny = decision(Verdict::Deny, "firewall_delete_rule");
    deny.reason = Some("destructive tools are denied".to_string());
    let limit = decision(Verdict::Limit, "openvpn_disconnect_client");
    let mut fault = decision(Verdict::Allow, "x\ny\u{202E}");
    fault.upstream = Some("timeout".to_string());

    auditor.record(allow.clone());
    auditor.record(deny.clone());
    auditor.record(limit.clone());
    auditor.record(fault.clone());
    auditor.event(Severity::Notice, "gateway started\nversion 0.1".to_string());

    let mut allow_logged = allow.clone();
    allow_logged.arguments.truncate(1); // `password` is not in log_arguments
    let expected = [
        ("30", format_decision(&allow_logged)),
        ("28", format_decision(&deny)),
        ("28", format_decision(&limit)),
        ("27", format_decision(&fault)),
        ("29", "gateway started\\nversion 0.1".to_string()),
    ];
    let pid = std::process::id().to_string();
    for (pri, msg) in &expected {
        let line = recv(&server);
        assert!(line.starts_with(&format!("<{pri}>1 ")), "{line}");
        let f = opnsense_fields(&line).unwrap_or_else(|| panic!("not RFC 5424: {line:?}"));
        assert_eq!(f[0], *pri);
        assert!(f[1].ends_with('Z') && f[1].contains('T'), "{line}");
        assert_eq!(f[2], "fw.test");
        assert_eq!(f[3], "mcpgw");
        assert_eq!(f[4], pid);
        assert_eq!(f[5], "-");
        assert_eq!(f[6], "-");
        assert_eq!(f[7], msg.as_str());
    }
    assert!(expected[0].1.contains(" arg.interface=\"\\\"lan\\\"\""));
    assert!(!expected[0].1.contains("secret"));

    auditor.shutdown(WAIT);
    assert_eq!(auditor.written(), 5);
    assert_eq!(auditor.dropped(), 0);
}

#[test]
fn missing_socket_then_report_then_records() {
    let dir = TempDir::new();
    let auditor = Auditor::start(&config(&dir.socket(), 64));
    for i in 0..5 {
        auditor.record(decision(Verdict::Deny, &format!("lost{i}")));
    }
    assert!(wait_for(|| auditor.dropped() == 5), "{}", auditor.dropped());
    assert_eq!(auditor.written(), 0);

    let server = bind(&dir.socket());
    let report = recv(&server);
    let f = opnsense_fields(&report).unwrap();
    assert_eq!(f[0], "27", "{report}");
    assert_eq!(f[3], "mcpgw");
    assert_eq!(f[7], "syslog was unavailable: 5 records dropped");

    let after = decision(Verdict::Limit, "after");
    auditor.record(after.clone());
    auditor.event(Severity::Info, "reloaded".to_string());
    let line = recv(&server);
    assert!(line.starts_with("<28>1 "), "{line}");
    assert!(
        line.ends_with(&format!(" - - {}", format_decision(&after))),
        "{line}"
    );
    let line = recv(&server);
    assert!(
        line.starts_with("<30>1 ") && line.ends_with(" - - reloaded"),
        "{line}"
    );

    auditor.shutdown(WAIT);
    assert_eq!(auditor.written(), 2);
    assert_eq!(auditor.dropped(), 5);
}

#[test]
fn syslog_restart_is_survived() {
    let dir = TempDir::new();
    let server = bind(&dir.socket());
    let auditor = Auditor::start(&config(&dir.socket(), 64));
    auditor.record(decision(Verdict::Deny, "one"));
    assert!(recv(&server).contains(" tool=one "));

    // syslogd restarts: the old socket goes, a new one is bound at the same path.
    drop(server);
    std::fs::remove_file(dir.socket()).unwrap();
    let server = bind(&dir.socket());
    auditor.record(decision(Verdict::Deny, "two"));
    // Either it is resent on a fresh connection, or dropped and reported; never lost silently.
    let line = recv(&server);
    if line.contains("records dropped") {
        assert!(
            line.ends_with("syslog was unavailable: 1 records dropped"),
            "{line}"
        );
        assert_eq!(auditor.dropped(), 1);
    } else {
        assert!(line.contains(" tool=two "), "{line}");
    }
    auditor.record(decision(Verdict::Deny, "three"));
    assert!(recv(&server).contains(" tool=three "));
    auditor.shutdown(WAIT);
}

#[test]
fn full_queue_never_blocks_and_counts_drops() {
    let dir = TempDir::new();
    // Bound but never read: the writer's sends stall once the socket's buffer is full.
    let _server = bind(&dir.socket());
    let auditor = Auditor::start(&config(&dir.socket(), 16));
    let mut made = 0u64;
    // Bounded: the loop ends as soon as drops are seen (they must be, nothing reads).
    while made < 1_000_000 && !(auditor.dropped() > 0 && made >= 1000) {
        auditor.record(decision(Verdict::Allow, "flood"));
        made += 1;
    }
    assert!(auditor.dropped() > 0);
    auditor.shutdown(WAIT);
    // Every record is accounted for: written to the socket's buffer or dropped.
    assert_eq!(auditor.written() + auditor.dropped(), made);
}

#[test]
fn records_after_shutdown_are_dropped() {
    let dir = TempDir::new();
    let server = bind(&dir.socket());
    let auditor = Auditor::start(&config(&dir.socket(), 4));
    auditor.record(decision(Verdict::Deny, "before"));
    auditor.shutdown(WAIT);
    assert_eq!(auditor.written(), 1);
    assert!(recv(&server).contains(" tool=before "));
    auditor.clone().record(decision(Verdict::Deny, "after"));
    auditor.event(Severity::Error, "late".to_string());
    assert_eq!(auditor.dropped(), 2);
    auditor.shutdown(WAIT);
}

#[test]
fn shutdown_that_runs_out_of_time_can_be_repeated() {
    let dir = TempDir::new();
    let _server = bind(&dir.socket()); // never read
    let auditor = Auditor::start(&config(&dir.socket(), 16));
    let made = 5000u64;
    for _ in 0..made {
        auditor.record(decision(Verdict::Allow, "flood"));
    }
    auditor.shutdown(Duration::ZERO);
    auditor.shutdown(WAIT);
    assert_eq!(auditor.written() + auditor.dropped(), made);
}
