//! `make demo`: the whole gateway on one screen, with nothing to set up.
//!
//! Makes a throwaway certificate and token, starts `mcpgw run` in front of the bundled mock
//! OPNsense MCP server (a stdio child, as on a real firewall), listens on its own syslog
//! socket, and plays an agent that lists tools, makes an allowed call, a denied call, a call
//! of a hidden tool and 12 calls of a tool limited to 10 a minute. It then prints the syslog
//! lines as the admin would read them and stops everything. Exit status 0 means every step
//! behaved as the policy says.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use mcpgw::client::{McpClient, tls_config};
use mcpgw::identity::new_token;
use mcpgw::server::tls::self_signed;

const POLICY: &str = r#"
# The product page's rule, plus one tool of each kind of decision.
[policy]
default = "deny"
hide = ["ssh_execute"]

[policy.tools.firewall_list_rules]
action = "allow"

[policy.tools.firewall_delete_rule]
action = "deny"
reason = "deleting firewall rules needs a human"

[policy.tools.openvpn_disconnect_client]
limits = [{ max = 10, per = "minute", scope = "identity" }]
"#;

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => match rt.block_on(demo()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("\ndemo: some steps did not behave as the policy says (see above)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("demo: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A temporary folder removed on drop, and the gateway process killed on drop.
struct Cleanup {
    dir: PathBuf,
    gateway: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.gateway {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found next to the demo; run `make demo`",
            path.display()
        ))
    }
}

async fn demo() -> Result<bool, String> {
    let gateway_bin = sibling("mcpgw")?;
    let mock_bin = sibling("mcpgw-mock")?;
    let dir = std::env::temp_dir().join(format!("mcpgw-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        gateway: None,
    };

    step("1. a throwaway certificate, an agent token and a syslog socket");
    let (cert, key) = self_signed(&["localhost"])?;
    write(&dir.join("cert.pem"), &cert)?;
    write(&dir.join("key.pem"), &key)?;
    let (token, hash) = new_token()?;
    let syslog_path = dir.join("log.sock");
    let syslog = UnixDatagram::bind(&syslog_path).map_err(|e| format!("syslog socket: {e}"))?;
    // Drain the socket as lines arrive, as syslogd does (a datagram socket's queue is short).
    let (log_tx, log_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = syslog.recv(&mut buf) {
            if log_tx
                .send(String::from_utf8_lossy(&buf[..n]).to_string())
                .is_err()
            {
                break;
            }
        }
    });
    let config = format!(
        r#"[listen]
address = "127.0.0.1:0"
cert = "cert.pem"
key = "key.pem"

[upstream]
command = {mock:?}
args = ["stdio", "--record", "calls.jsonl"]

[syslog]
socket = "log.sock"
log_arguments = ["client_id"]

[[identity]]
name = "claude-desktop"
token_sha256 = ["{hash}"]
{POLICY}"#,
        mock = mock_bin.display().to_string(),
        hash = hash.to_hex(),
    );
    write(&dir.join("mcpgw.toml"), &config)?;
    println!("   config: {}", dir.join("mcpgw.toml").display());
    println!(
        "   token:  {}…  (the config holds only its SHA-256)",
        &token[..14]
    );

    step("2. mcpgw check, then mcpgw run in front of the mock OPNsense MCP server (stdio)");
    let check = Command::new(&gateway_bin)
        .args(["check", "-c"])
        .arg(dir.join("mcpgw.toml"))
        .output()
        .map_err(|e| e.to_string())?;
    print!("   {}", String::from_utf8_lossy(&check.stdout));
    let mut child = Command::new(&gateway_bin)
        .args(["run", "-c"])
        .arg(dir.join("mcpgw.toml"))
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start mcpgw: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    cleanup.gateway = Some(child);
    let addr = wait_for_listen(stderr)?;
    println!("   listening on https://{addr}/mcp");

    step("3. a scripted agent over TLS");
    let tls = tls_config(cert.as_bytes())?;
    let mut agent = McpClient::connect(addr, Some((tls, "localhost")), Some(&token)).await?;
    let init = agent.initialize().await?;
    println!(
        "   initialize -> {} {}, session {}",
        init["result"]["serverInfo"]["name"].as_str().unwrap_or("?"),
        init["result"]["protocolVersion"].as_str().unwrap_or("?"),
        agent.session.as_deref().unwrap_or("-")
    );
    let mut ok = true;
    let tools = agent.list_tools().await?;
    println!(
        "   tools/list -> {} visible of the mock server's 200: {}",
        tools.len(),
        tools.join(", ")
    );
    ok &= expect(
        tools.len() == 3,
        "tools/list shows exactly the 3 tools the policy lets this agent see",
    );

    let r = agent.call_tool("firewall_list_rules", json!({})).await?;
    println!("   firewall_list_rules          -> {}", summary(&r));
    ok &= expect(
        r["result"]["isError"] != json!(true) && r.get("error").is_none(),
        "allowed call answered by the server",
    );

    let r = agent
        .call_tool("firewall_delete_rule", json!({"uuid": "1234"}))
        .await?;
    println!("   firewall_delete_rule         -> {}", summary(&r));
    ok &= expect(
        r["result"]["isError"] == json!(true),
        "denied call answered with the reason",
    );

    let r = agent
        .call_tool("ssh_execute", json!({"command": "id"}))
        .await?;
    println!("   ssh_execute (hidden)         -> {}", summary(&r));
    ok &= expect(
        r["error"]["code"] == json!(-32602),
        "hidden tool looks like an unknown one",
    );

    let mut passed = 0;
    let mut limited = 0;
    for i in 1..=12 {
        let r = agent
            .call_tool(
                "openvpn_disconnect_client",
                json!({"client_id": format!("client-{i}")}),
            )
            .await?;
        if r["result"]["isError"] == json!(true) {
            limited += 1;
        } else {
            passed += 1;
        }
        println!("   openvpn_disconnect_client #{i:<2} -> {}", summary(&r));
    }
    ok &= expect(
        passed == 10 && limited == 2,
        "12 calls of a 10/minute tool: 10 pass, 2 limited",
    );

    step("4. mcpgw stops (SIGTERM), ending the upstream child too");
    let pid = cleanup.gateway.as_ref().map(|c| c.id());
    if let Some(pid) = pid {
        // SAFETY: plain kill(2) on the child we started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let status = wait_exit(cleanup.gateway.as_mut())?;
    cleanup.gateway = None;
    println!("   mcpgw exited: {status}");
    let recorded = std::fs::read_to_string(dir.join("calls.jsonl")).unwrap_or_default();
    let reached = recorded.lines().count();
    println!(
        "   calls that reached the OPNsense MCP server: {reached} (1 allowed + 10 within the limit)"
    );
    ok &= expect(reached == 11, "only allowed calls reached the upstream");
    ok &= expect(
        !recorded.contains("firewall_delete_rule") && !recorded.contains("ssh_execute"),
        "no denied or hidden call reached the upstream",
    );

    step("5. the decisions, as the admin reads them in the OPNsense log viewer");
    println!("   {:<27} {:<9} {:<12} Line", "Date", "Severity", "Process");
    let mut lines = 0;
    while let Ok(line) = log_rx.recv_timeout(Duration::from_millis(300)) {
        if let Some((date, severity, process, msg)) = viewer_columns(&line) {
            println!("   {date:<27} {severity:<9} {process:<12} {msg}");
            lines += 1;
        }
    }
    ok &= expect(lines >= 17, "every decision reached syslog");
    Ok(ok)
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn expect(cond: bool, what: &str) -> bool {
    println!("   [{}] {what}", if cond { "ok" } else { "FAILED" });
    cond
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn summary(resp: &Value) -> String {
    if let Some(err) = resp.get("error") {
        return format!(
            "JSON-RPC error {}: {}",
            err["code"],
            err["message"].as_str().unwrap_or("")
        );
    }
    let text = resp["result"]["content"][0]["text"].as_str().unwrap_or("");
    let text: String = text.chars().take(90).collect();
    if resp["result"]["isError"] == json!(true) {
        format!("isError: {text}")
    } else {
        format!("ok: {text}")
    }
}

fn wait_for_listen(stderr: std::process::ChildStderr) -> Result<std::net::SocketAddr, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("mcpgw: listening on ").filter(|_| !sent) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(Ok(addr));
                sent = true;
                continue;
            }
            if !sent && line.starts_with("mcpgw: ") {
                let _ = tx.send(Err(line.clone()));
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| "mcpgw did not start listening within 20 s".to_string())??;
    addr.parse()
        .map_err(|e| format!("bad listen address {addr:?}: {e}"))
}

fn wait_exit(child: Option<&mut Child>) -> Result<String, String> {
    let Some(child) = child else {
        return Ok("not running".into());
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    Err("mcpgw did not stop within 10 s of SIGTERM".into())
}

/// Splits an RFC 5424 line into the columns of OPNsense's log viewer.
fn viewer_columns(line: &str) -> Option<(String, &'static str, String, String)> {
    let rest = line.strip_prefix('<')?;
    let (pri, rest) = rest.split_once('>')?;
    let pri: u8 = pri.parse().ok()?;
    let mut parts = rest.splitn(7, ' ');
    let _version = parts.next()?;
    let date = parts.next()?.to_string();
    let _host = parts.next()?;
    let app = parts.next()?;
    let pid = parts.next()?;
    let _msgid = parts.next()?;
    let rest = parts.next()?;
    let msg = rest.strip_prefix("- ").unwrap_or(rest).to_string();
    let severity = [
        "Emergency",
        "Alert",
        "Critical",
        "Error",
        "Warning",
        "Notice",
        "Info",
        "Debug",
    ][usize::from(pri & 7)];
    Some((date, severity, format!("{app}[{pid}]"), msg))
}
