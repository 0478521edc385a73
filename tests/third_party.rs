//! Third-party MCP software through the gateway: the official Python SDK and the MCP
//! Inspector CLI as agents; the reference server `server-everything` as the upstream, both
//! as a stdio child and over Streamable HTTP; and the MCP conformance suite, run against
//! `server-everything` alone and through the gateway, check by check.
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

/// `server-everything` over Streamable HTTP on a free loopback port; killed on drop.
struct EverythingHttp {
    child: std::process::Child,
    port: u16,
}

impl EverythingHttp {
    fn start(nm: &std::path::Path) -> EverythingHttp {
        let server = nm.join("@modelcontextprotocol/server-everything/dist/index.js");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(node())
            .arg(&server)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start server-everything");
        let mut everything = EverythingHttp { child, port };
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            // Exited (the port was taken meanwhile, say): no use waiting.
            if let Ok(Some(status)) = everything.child.try_wait() {
                panic!("server-everything exited before listening on {port}: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "server-everything did not listen on {port}");
        everything
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for EverythingHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Node 22 `make test` installed (the conformance runner needs it), else `node`.
fn node() -> String {
    std::env::var("MCPGW_NODE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

#[test]
fn python_sdk_through_the_gateway_to_server_everything_over_http() {
    let (Some(python), Some(nm)) = (python(), node_modules()) else {
        return;
    };
    let everything = EverythingHttp::start(&nm);
    let gw = Gateway::start_with(Options {
        policy: EVERYTHING_POLICY.into(),
        upstream: UpstreamSpec::Raw(format!("url = \"{}\"\n", everything.url())),
        ..Options::default()
    });
    check_everything(&gw, &python);
}

/// A loopback HTTP/1.1 proxy on `listener` that adds `Authorization: Bearer TOKEN` to every
/// request and passes it to `target` (the gateway, plaintext); answers stream back as they
/// come. The conformance runner has no way to send a header: this gives its requests an
/// identity, and changes nothing else.
fn token_proxy(listener: std::net::TcpListener, target: std::net::SocketAddr, token: &str) {
    use http_body_util::BodyExt;
    use hyper::header::{AUTHORIZATION, HeaderValue};
    use hyper_util::rt::TokioIo;
    listener.set_nonblocking(true).unwrap();
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            // Ends with the test process.
            while let Ok((agent, _)) = listener.accept().await {
                let auth = auth.clone();
                tokio::spawn(async move {
                    // One gateway connection per agent connection, requests in order.
                    let Ok(up) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let Ok((send, conn)) =
                        hyper::client::conn::http1::handshake(TokioIo::new(up)).await
                    else {
                        return;
                    };
                    tokio::spawn(conn);
                    let send = std::sync::Arc::new(tokio::sync::Mutex::new(send));
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (send, auth) = (send.clone(), auth.clone());
                            async move {
                                let (mut parts, body) = req.into_parts();
                                parts.headers.insert(AUTHORIZATION, auth);
                                let req = hyper::Request::from_parts(parts, body.boxed());
                                let mut send = send.lock().await;
                                send.ready().await?;
                                send.send_request(req).await
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(agent), service)
                        .await;
                });
            }
        });
    });
}

/// Runs the MCP conformance suite's server scenarios against `url`, results into `out`;
/// returns every check (its `checks.json` object), keyed `scenario/check`.
fn conformance(
    nm: &std::path::Path,
    url: &str,
    out: &std::path::Path,
) -> std::collections::BTreeMap<String, Value> {
    let runner = nm.join("@modelcontextprotocol/conformance/dist/index.js");
    let mut run = Command::new(node())
        .arg(&runner)
        .args(["server", "--url", url, "-o"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run the conformance suite");
    // It takes about a second; a hung run is killed and reported.
    let finished = (0..1200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        matches!(run.try_wait(), Ok(Some(_)))
    });
    if !finished {
        let _ = run.kill();
        let _ = run.wait();
        panic!("the conformance suite did not finish against {url} within 120 s");
    }
    let mut checks = std::collections::BTreeMap::new();
    // One folder per scenario: `server-SCENARIO-YYYY-MM-DDTHH-MM-SS-mmmZ/checks.json`.
    for dir in std::fs::read_dir(out).unwrap().flatten() {
        let folder = dir.file_name().to_string_lossy().to_string();
        let Some(scenario) = folder
            .strip_prefix("server-")
            .and_then(|rest| rest.rsplitn(7, '-').nth(6))
        else {
            continue;
        };
        let text = std::fs::read_to_string(dir.path().join("checks.json")).unwrap_or_default();
        let list: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        for check in list.as_array().into_iter().flatten() {
            let id = check["id"].as_str().unwrap_or("?");
            checks.insert(format!("{scenario}/{id}"), check.clone());
        }
    }
    assert!(
        checks.len() >= 25,
        "the conformance suite ran too few checks against {url}: {checks:?}"
    );
    checks
}

/// Checks that succeed against server-everything alone but not through the gateway, each
/// with the reason. Every other check that succeeds alone must succeed through the gateway.
const CONFORMANCE_GAPS: &[(&str, &str)] = &[(
    "server-sse-multiple-streams/server-sse-streams-functional",
    "the gateway answers every POST with JSON, never an SSE stream, so the check has no \
     stream to look at (the spec lets a server pick either)",
)];

#[test]
fn conformance_suite_through_the_gateway_matches_the_server_alone() {
    let Some(nm) = node_modules() else { return };
    let everything = EverythingHttp::start(&nm);
    // Bound first: the gateway must allow the proxy's Origin (a browser's, for the suite).
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let gw = Gateway::start_with(Options {
        policy: "[policy]\ndefault = \"allow\"\nunknown_tools = \"allow\"\n".into(),
        upstream: UpstreamSpec::Raw(format!("url = \"{}\"\n", everything.url())),
        plaintext: true,
        listen_extra: format!(
            "allowed_origins = [\"http://127.0.0.1:{proxy_port}\", \"http://localhost:{proxy_port}\"]\n"
        ),
        ..Options::default()
    });
    token_proxy(proxy, gw.addr, &gw.token);
    let alone = conformance(&nm, &everything.url(), &gw.path("conformance-alone"));
    let through = conformance(
        &nm,
        &format!("http://127.0.0.1:{proxy_port}/mcp"),
        &gw.path("conformance-gateway"),
    );
    let succeeds = |checks: &std::collections::BTreeMap<String, Value>, key: &str| {
        checks.get(key).is_some_and(|c| c["status"] == "SUCCESS")
    };
    // The baseline is real: server-everything alone passes a dozen checks or so.
    let passing_alone = alone.keys().filter(|k| succeeds(&alone, k)).count();
    assert!(passing_alone >= 10, "too few checks pass alone: {alone:?}");
    let mut lost = Vec::new();
    for key in alone.keys().filter(|k| succeeds(&alone, k)) {
        let gap = CONFORMANCE_GAPS.iter().any(|(g, _)| g == key);
        match (succeeds(&through, key), gap) {
            (false, false) => lost.push(key.clone()),
            (true, true) => {
                panic!("{key} succeeds through the gateway now: drop it from CONFORMANCE_GAPS")
            }
            _ => {}
        }
    }
    assert!(
        lost.is_empty(),
        "succeed alone, not through the gateway: {lost:?}\nalone: {alone:?}\nthrough: {through:?}"
    );
    // What the gateway adds: server-everything takes any Host and Origin; the gateway
    // refuses an Origin it was not told to allow, and takes the one it was.
    for key in [
        "dns-rebinding-protection/localhost-host-rebinding-rejected",
        "dns-rebinding-protection/localhost-host-valid-accepted",
    ] {
        assert!(succeeds(&through, key), "{key}: {:?}", through.get(key));
    }
    let rejected = &through["dns-rebinding-protection/localhost-host-rebinding-rejected"];
    assert_eq!(
        rejected["details"]["statusCode"], 403,
        "a foreign Origin is refused with 403: {rejected}"
    );
    assert!(!succeeds(
        &alone,
        "dns-rebinding-protection/localhost-host-rebinding-rejected"
    ));
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
