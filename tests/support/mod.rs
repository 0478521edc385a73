//! Test harness: a real `mcpgw run` process with a fresh certificate, token and syslog socket,
//! in front of the mock OPNsense MCP server, so each test reads as a few lines of usage.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcpgw::client::{McpClient, tls_config, tls_config_with_client_cert};
use mcpgw::identity::new_token;
use mcpgw::server::tls::self_signed;
use serde_json::Value;

pub const GATEWAY: &str = env!("CARGO_BIN_EXE_mcpgw");
pub const MOCK: &str = env!("CARGO_BIN_EXE_mcpgw-mock");

/// How the gateway under test reaches its upstream.
pub enum UpstreamSpec {
    /// The mock as a stdio child (the default).
    MockStdio,
    /// A `[upstream]` table written as is (e.g. `url = "http://..."`).
    Raw(String),
}

pub struct Options {
    pub policy: String,
    pub upstream: UpstreamSpec,
    /// Extra lines for `[listen]`.
    pub listen_extra: String,
    /// Extra lines for `[syslog]`.
    pub syslog_extra: String,
    /// Extra identities: (name, token).
    pub more_identities: Vec<String>,
    pub plaintext: bool,
    /// Files written next to the config before the gateway starts: (name, content).
    pub files: Vec<(String, String)>,
    /// Extra lines for the `[[identity]]` block of `agent` or of a `more_identities` name.
    pub identity_lines: Vec<(String, String)>,
    /// Text written after the identities (e.g. `[[identity]]` blocks without a token).
    pub identities_extra: String,
    /// `[syslog] socket` when not the harness's own drained `log.sock` (a path the test binds
    /// itself, later or never).
    pub syslog_socket: Option<String>,
    /// `[listen] address` as a TOML value, when not `"127.0.0.1:0"`; `addr` is then the first.
    pub listen_address: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: DEFAULT_POLICY.to_string(),
            upstream: UpstreamSpec::MockStdio,
            listen_extra: String::new(),
            syslog_extra: String::new(),
            more_identities: Vec::new(),
            plaintext: false,
            files: Vec::new(),
            identity_lines: Vec::new(),
            identities_extra: String::new(),
            syslog_socket: None,
            listen_address: None,
        }
    }
}

/// A policy with one rule of each kind.
pub const DEFAULT_POLICY: &str = r#"
[policy]
default = "deny"
hide = ["ssh_execute"]

[policy.tools.firewall_list_rules]
action = "allow"

[policy.tools.system_get_settings]
action = "allow"

[policy.tools.firewall_delete_rule]
action = "deny"
reason = "deleting rules needs a human"

[policy.tools.openvpn_disconnect_client]
limits = [{ max = 10, per = "minute", scope = "identity" }]
"#;

/// A running gateway.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub token: String,
    /// Tokens of `more_identities`, in order.
    pub other_tokens: Vec<String>,
    pub cert_pem: String,
    pub child: Option<Child>,
    /// Syslog lines received so far (a thread drains the socket as lines arrive, like syslogd).
    pub syslog: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub plaintext: bool,
}

impl Gateway {
    pub fn start(policy: &str) -> Gateway {
        Gateway::start_with(Options {
            policy: policy.to_string(),
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = self_signed(&["localhost"]).expect("certificate");
        std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), &key).unwrap();
        for (name, content) in &opts.files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let syslog = UnixDatagram::bind(dir.path().join("log.sock")).unwrap();
        let syslog_lines = Arc::new(Mutex::new(Vec::new()));
        let sink = syslog_lines.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16384];
            // Drains like syslogd does: a datagram socket's queue is short (10 on Linux).
            while let Ok(n) = syslog.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string());
            }
        });
        let lines_of = |name: &str| -> String {
            opts.identity_lines
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, l)| format!("{l}\n"))
                .collect()
        };
        let (token, hash) = new_token().unwrap();
        let mut identities = format!(
            "[[identity]]\nname = \"agent\"\ntoken_sha256 = [\"{}\"]\n{}",
            hash.to_hex(),
            lines_of("agent")
        );
        let mut other_tokens = Vec::new();
        for name in &opts.more_identities {
            let (t, h) = new_token().unwrap();
            identities += &format!(
                "[[identity]]\nname = \"{name}\"\ntoken_sha256 = [\"{}\"]\n{}",
                h.to_hex(),
                lines_of(name)
            );
            other_tokens.push(t);
        }
        identities += &opts.identities_extra;
        let upstream = match &opts.upstream {
            UpstreamSpec::MockStdio => format!(
                "command = {MOCK:?}\nargs = [\"stdio\", \"--record\", \"calls.jsonl\", \"--pid-file\", \"mock.pid\"]\n"
            ),
            UpstreamSpec::Raw(text) => text.clone(),
        };
        let tls = if opts.plaintext {
            "plaintext = true\n".to_string()
        } else {
            "cert = \"cert.pem\"\nkey = \"key.pem\"\n".to_string()
        };
        // The drain thread above may be off the CPU for a while on a busy machine. A send
        // that waits for it must not time out and drop records, or tests that count decision
        // lines would fail for the machine's sake; tests of timeouts set their own.
        let send_timeout = if opts.syslog_extra.contains("send_timeout_ms") {
            ""
        } else {
            "send_timeout_ms = 5000\n"
        };
        let config = format!(
            "[listen]\naddress = {}\n{tls}{}\n[upstream]\n{upstream}\n[syslog]\nsocket = {:?}\n{send_timeout}{}\n{identities}\n{}",
            opts.listen_address.as_deref().unwrap_or("\"127.0.0.1:0\""),
            opts.listen_extra,
            opts.syslog_socket.as_deref().unwrap_or("log.sock"),
            opts.syslog_extra,
            opts.policy
        );
        std::fs::write(dir.path().join("mcpgw.toml"), &config).unwrap();
        let mut child = Command::new(GATEWAY)
            .args(["run", "-c", "mcpgw.toml"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mcpgw");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Kept before the start is reported, so a test finds the line it started on.
                let listening = line
                    .strip_prefix("mcpgw: listening on ")
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                if let Some(addr) = listening {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gateway did not start; stderr: {:?}\nconfig:\n{config}",
                    lines.lock().unwrap()
                );
            }
        };
        Gateway {
            dir,
            addr,
            token,
            other_tokens,
            cert_pem: cert,
            child: Some(child),
            syslog: syslog_lines,
            stderr: lines,
            plaintext: opts.plaintext,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A connected, initialized agent with the main token.
    pub async fn agent(&self) -> McpClient {
        let mut c = self.connect(Some(&self.token)).await;
        c.initialize().await.expect("initialize");
        c
    }

    /// A connected agent (not initialized) with `token`.
    pub async fn connect(&self, token: Option<&str>) -> McpClient {
        let tls = if self.plaintext {
            None
        } else {
            Some((tls_config(self.cert_pem.as_bytes()).unwrap(), "localhost"))
        };
        McpClient::connect(self.addr, tls, token)
            .await
            .expect("connect")
    }

    /// A connection presenting the client certificate `cert` (PEM certificate, PEM key), with
    /// an optional token. An error if the TLS handshake fails here.
    pub async fn connect_with_cert(
        &self,
        token: Option<&str>,
        cert: &(String, String),
    ) -> Result<McpClient, String> {
        let config = tls_config_with_client_cert(
            self.cert_pem.as_bytes(),
            cert.0.as_bytes(),
            cert.1.as_bytes(),
        )?;
        McpClient::connect(self.addr, Some((config, "localhost")), token).await
    }

    /// Every tools/call the mock upstream received: (tool, arguments).
    pub fn upstream_calls(&self) -> Vec<(String, Value)> {
        recorded_calls(&self.path("calls.jsonl"))
    }

    /// Syslog lines received so far (waits up to `wait` for at least `at_least` of them).
    pub fn syslog_lines(&self, at_least: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        loop {
            let lines = self.syslog.lock().unwrap().clone();
            if lines.len() >= at_least || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until at least `n` decision lines have arrived; returns every line.
    pub fn decision_lines(&self, n: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        loop {
            let lines: Vec<String> = self
                .syslog
                .lock()
                .unwrap()
                .iter()
                .filter(|l| msg_of(l).starts_with("decision="))
                .cloned()
                .collect();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn mock_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path("mock.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn recorded_calls(path: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["tool"].as_str().unwrap_or("").to_string(),
                v["arguments"].clone(),
            )
        })
        .collect()
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The MSG part of an RFC 5424 line.
pub fn msg_of(line: &str) -> &str {
    line.splitn(8, ' ').nth(7).unwrap_or("")
}

/// A certificate authority for client certificates.
pub struct TestCa {
    /// The CA certificate, PEM (what `client_ca` names).
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A client certificate for DNS name `name`: (certificate PEM, key PEM).
    pub fn issue(&self, name: &str) -> (String, String) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Polls `f` every 50 ms until it is true or `limit` passes.
pub async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until a call with `_mock_sleep_ms` has reached the mock upstream (the mock
/// records a call before it sleeps).
pub async fn sleeping_call_reached(gw: &Gateway) -> bool {
    wait_until(Duration::from_secs(10), || {
        gw.upstream_calls()
            .iter()
            .any(|c| c.1.get("_mock_sleep_ms").is_some())
    })
    .await
}
