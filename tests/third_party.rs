//! Third-party MCP software through the gateway: the official Python SDK and the MCP
//! Inspector CLI as agents; the reference server `server-everything` as the upstream, both
//! as a stdio child and over Streamable HTTP.
//!
//! These need the parts `scripts/deps.sh test` installs (`make test` exports their paths as
//! MCPGW_PYTHON and MCPGW_NODE_MODULES). Without them a test says so loudly and returns.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Gateway, Options, UpstreamSpec};

fn python() -> Option<String> {
    let p = std::env::var("MCPGW_PYTHON").ok().filter(|p| !p.is_empty());
    if p.is_none() {
        eprintln!(
            "SKIPPED: MCPGW_PYTHON is not set (run `make test`, which installs the MCP Python SDK)"
        );
    }
    p
}

fn node_modules() -> Option<PathBuf> {
    let p = std::env::var("MCPGW_NODE_MODULES")
        .ok()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if p.is_none() {
        eprintln!(
            "SKIPPED: MCPGW_NODE_MODULES is not set (run `make test`, which installs the npm parts)"
        );
    }
    p
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the Python SDK client against the gateway; returns one JSON value per step.
fn sdk_client(gw: &Gateway, python: &str, steps: &[&str]) -> Vec<Value> {
    std::fs::write(gw.path("ca.pem"), &gw.cert_pem).unwrap();
    let url = format!("https://localhost:{}/mcp", gw.addr.port());
    let out = Command::new(python)
        .arg(repo("tests/clients/sdk_client.py"))
        .args(["--url", &url, "--token", &gw.token, "--cafile"])
        .arg(gw.path("ca.pem"))
        .args(steps)
        .output()
        .expect("run the Python SDK client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sdk_client failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn names(step: &Value) -> Vec<String> {
    let mut v: Vec<String> = step["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {step}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn python_sdk_through_the_gateway_to_the_mock() {
    let Some(python) = python() else { return };
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let out = sdk_client(
        &gw,
        &python,
        &[
            "list",
            "call",
            "firewall_list_rules",
            "{\"interface\":\"lan\"}",
            "call",
            "firewall_delete_rule",
            "{}",
            "call",
            "ssh_execute",
            "{\"command\":\"id\"}",
        ],
    );
    assert_eq!(
        names(&out[0]),
        [
            "firewall_delete_rule",
            "firewall_list_rules",
            "openvpn_disconnect_client",
            "system_get_settings"
        ]
    );
    assert_eq!(out[1]["is_error"], Value::Bool(false), "{}", out[1]);
    assert!(
        out[1]["text"]
            .as_str()
            .unwrap()
            .contains("firewall_list_rules")
    );
    assert_eq!(out[2]["is_error"], Value::Bool(true), "{}", out[2]);
    assert!(
        out[2]["text"]
            .as_str()
            .unwrap()
            .contains("deleting rules needs a human")
    );
    // Hidden: the SDK reports the "Unknown tool" answer as an error.
    let hidden = out[3].to_string();
    assert!(hidden.contains("Unknown tool: ssh_execute"), "{hidden}");
    assert_eq!(gw.upstream_calls().len(), 1);
}

const EVERYTHING_POLICY: &str = r#"
[policy]
default = "deny"

[policy.tools.echo]
action = "allow"

[policy.tools.get-sum]
limits = [{ max = 2, per = "minute" }]

[policy.tools.get-env]
action = "deny"
reason = "the server's environment holds secrets"
"#;

fn check_everything(gw: &Gateway, python: &str) {
    let out = sdk_client(
        gw,
        python,
        &[
            "list",
            "call",
            "echo",
            "{\"message\":\"through mcpgw\"}",
            "call",
            "get-env",
            "{}",
            "call",
            "get-sum",
            "{\"a\":2,\"b\":3}",
            "call",
            "get-sum",
            "{\"a\":2,\"b\":3}",
            "call",
            "get-sum",
            "{\"a\":2,\"b\":3}",
            "call",
            "get-tiny-image",
            "{}",
        ],
    );
    assert_eq!(names(&out[0]), ["echo", "get-env", "get-sum"], "{}", out[0]);
    assert_eq!(out[1]["is_error"], Value::Bool(false), "{}", out[1]);
    assert!(
        out[1]["text"].as_str().unwrap().contains("through mcpgw"),
        "{}",
        out[1]
    );
    assert_eq!(out[2]["is_error"], Value::Bool(true), "{}", out[2]);
    assert!(out[2]["text"].as_str().unwrap().contains("secrets"));
    assert!(out[3]["text"].as_str().unwrap().contains('5'), "{}", out[3]);
    assert_eq!(out[4]["is_error"], Value::Bool(false));
    assert_eq!(
        out[5]["is_error"],
        Value::Bool(true),
        "third call of a 2/minute tool: {}",
        out[5]
    );
    assert!(out[5]["text"].as_str().unwrap().contains("Rate limited"));
    assert!(
        out[6].to_string().contains("Unknown tool: get-tiny-image"),
        "{}",
        out[6]
    );
}

#[test]
fn python_sdk_through_the_gateway_to_server_everything_over_stdio() {
    let (Some(python), Some(nm)) = (python(), node_modules()) else {
        return;
    };
    let server = nm.join("@modelcontextprotocol/server-everything/dist/index.js");
    assert!(server.exists(), "{} missing", server.display());
    let gw = Gateway::start_with(Options {
        policy: EVERYTHING_POLICY.into(),
        upstream: UpstreamSpec::Raw(format!(
            "command = \"node\"\nargs = [{:?}, \"stdio\"]\n",
            server.display().to_string()
        )),
        ..Options::default()
    });
    check_everything(&gw, &python);
}

#[test]
fn python_sdk_through_the_gateway_to_server_everything_over_http() {
    let (Some(python), Some(nm)) = (python(), node_modules()) else {
        return;
    };
    let server = nm.join("@modelcontextprotocol/server-everything/dist/index.js");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new("node")
        .arg(&server)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start server-everything");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "server-everything did not listen on {port}");
    let gw = Gateway::start_with(Options {
        policy: EVERYTHING_POLICY.into(),
        upstream: UpstreamSpec::Raw(format!("url = \"http://127.0.0.1:{port}/mcp\"\n")),
        ..Options::default()
    });
    check_everything(&gw, &python);
    drop(gw);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn inspector_cli_lists_and_calls_through_the_gateway() {
    let Some(nm) = node_modules() else { return };
    let gw = Gateway::start(support::DEFAULT_POLICY);
    std::fs::write(gw.path("ca.pem"), &gw.cert_pem).unwrap();
    let url = format!("https://localhost:{}/mcp", gw.addr.port());
    let run = |args: &[&str]| {
        let out = Command::new(repo("tests/clients/inspector.sh"))
            .env("MCPGW_NODE_MODULES", &nm)
            .args(["--url", &url, "--token", &gw.token, "--cafile"])
            .arg(gw.path("ca.pem"))
            .arg("--")
            .args(args)
            .output()
            .expect("run the inspector");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = run(&["--method", "tools/list"]);
    assert!(ok, "{stdout}\n{stderr}");
    let listed: Value = serde_json::from_str(&stdout).expect("inspector prints JSON");
    let mut listed: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "firewall_delete_rule",
            "firewall_list_rules",
            "openvpn_disconnect_client",
            "system_get_settings"
        ]
    );
    let (_, stdout, _) = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "firewall_delete_rule",
        "--tool-arg",
        "uuid=1",
    ]);
    assert!(stdout.contains("deleting rules needs a human"), "{stdout}");
    assert!(gw.upstream_calls().is_empty());
}
