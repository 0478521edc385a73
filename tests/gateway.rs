//! End-to-end tests through real TLS: agent -> mcpgw -> mock OPNsense MCP server.

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::{Gateway, Options, UpstreamSpec, alive, msg_of};

fn text_of(resp: &Value) -> &str {
    resp["result"]["content"][0]["text"].as_str().unwrap_or("")
}

#[tokio::test]
async fn allow_deny_hide_and_default_deny() {
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let mut agent = gw.agent().await;

    let mut tools = agent.list_tools().await.unwrap();
    tools.sort();
    assert_eq!(
        tools,
        [
            "firewall_delete_rule",
            "firewall_list_rules",
            "openvpn_disconnect_client",
            "system_get_settings"
        ],
        "hidden and default-denied tools are not listed; explicitly denied ones are"
    );

    let r = agent
        .call_tool("firewall_list_rules", json!({"interface": "lan"}))
        .await
        .unwrap();
    assert_ne!(r["result"]["isError"], json!(true), "{r}");
    assert!(
        text_of(&r).contains("firewall_list_rules"),
        "answered by the mock: {r}"
    );

    let r = agent
        .call_tool("firewall_delete_rule", json!({"uuid": "x"}))
        .await
        .unwrap();
    assert_eq!(r["result"]["isError"], json!(true));
    assert!(text_of(&r).contains("deleting rules needs a human"), "{r}");
    assert!(text_of(&r).contains("tools.firewall_delete_rule"), "{r}");

    for hidden in [
        "ssh_execute",
        "nat_list_rules",
        "no_such_tool",
        "Firewall_list_rules",
        " firewall_list_rules",
    ] {
        let r = agent.call_tool(hidden, json!({})).await.unwrap();
        assert_eq!(r["error"]["code"], json!(-32602), "{hidden}: {r}");
        assert_eq!(
            r["error"]["message"],
            json!(format!("Unknown tool: {hidden}")),
            "{r}"
        );
    }

    let calls = gw.upstream_calls();
    assert_eq!(
        calls.len(),
        1,
        "only the allowed call reached the upstream: {calls:?}"
    );
    assert_eq!(calls[0].0, "firewall_list_rules");
    assert_eq!(calls[0].1, json!({"interface": "lan"}));
}

#[tokio::test]
async fn two_hundred_concurrent_calls_of_a_ten_a_minute_tool_let_ten_through() {
    // Connections land on any of three worker threads; they all share the one bucket.
    let gw = Gateway::start_with(Options {
        listen_extra: "workers = 3\n".into(),
        ..Options::default()
    });
    // 20 connections x 10 calls, all at once: every agent connects first, so the calls
    // start together however slow the handshakes are (the bucket refills one every 6 s).
    let mut agents = Vec::new();
    for _ in 0..20 {
        agents.push(gw.agent().await);
    }
    let mut tasks = Vec::new();
    for mut agent in agents {
        tasks.push(tokio::spawn(async move {
            let mut limited = 0;
            let mut passed = 0;
            for _ in 0..10 {
                let r = agent
                    .call_tool("openvpn_disconnect_client", json!({"client_id": "c"}))
                    .await
                    .unwrap();
                if r["result"]["isError"] == json!(true) {
                    assert!(text_of(&r).contains("Rate limited"), "{r}");
                    assert!(
                        r["result"]["_meta"]["mcpgw/retryAfterSeconds"]
                            .as_u64()
                            .unwrap()
                            >= 1
                    );
                    limited += 1;
                } else {
                    passed += 1;
                }
            }
            (passed, limited)
        }));
    }
    let mut passed = 0;
    let mut limited = 0;
    for t in tasks {
        let (p, l) = t.await.unwrap();
        passed += p;
        limited += l;
    }
    assert_eq!((passed, limited), (10, 190));
    let calls = gw.upstream_calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.0 == "openvpn_disconnect_client")
            .count(),
        10
    );
}

#[tokio::test]
async fn limits_are_per_identity() {
    let gw = Gateway::start_with(Options {
        more_identities: vec!["second".into()],
        ..Options::default()
    });
    let mut a = gw.agent().await;
    for _ in 0..10 {
        let r = a
            .call_tool("openvpn_disconnect_client", json!({}))
            .await
            .unwrap();
        assert_ne!(r["result"]["isError"], json!(true));
    }
    let r = a
        .call_tool("openvpn_disconnect_client", json!({}))
        .await
        .unwrap();
    assert_eq!(r["result"]["isError"], json!(true));
    let mut b = gw.connect(Some(&gw.other_tokens[0])).await;
    b.initialize().await.unwrap();
    let r = b
        .call_tool("openvpn_disconnect_client", json!({}))
        .await
        .unwrap();
    assert_ne!(
        r["result"]["isError"],
        json!(true),
        "another identity has its own bucket: {r}"
    );
}

#[tokio::test]
async fn the_product_pages_policy_json_loads_unchanged() {
    let gw = Gateway::start_with(Options {
        policy: "[policy]\nfile = \"policy.json\"\n".into(),
        files: vec![(
            "policy.json".into(),
            include_str!("../examples/policy.json").into(),
        )],
        ..Options::default()
    });
    let mut agent = gw.agent().await;
    assert_eq!(
        agent.list_tools().await.unwrap(),
        ["openvpn_disconnect_client"]
    );
    let mut results = Vec::new();
    for i in 0..12 {
        let r = agent
            .call_tool("openvpn_disconnect_client", json!({"client_id": i}))
            .await
            .unwrap();
        results.push(r["result"]["isError"] == json!(true));
    }
    assert_eq!(
        results.iter().filter(|limited| !**limited).count(),
        10,
        "10 calls a minute per grant"
    );
    assert!(results[10] && results[11]);
    let r = agent
        .call_tool("firewall_list_rules", json!({}))
        .await
        .unwrap();
    assert_eq!(
        r["error"]["code"],
        json!(-32602),
        "everything else is denied: {r}"
    );
    assert_eq!(gw.upstream_calls().len(), 10);
}

#[tokio::test]
async fn unauthenticated_requests_get_401_and_are_throttled() {
    let gw = Gateway::start_with(Options {
        listen_extra: "auth_failures_per_minute = 3\n".into(),
        ..Options::default()
    });
    let mut anon = gw.connect(None).await;
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}).to_string();
    let r = anon.post_raw(init.clone(), &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"mcpgw\"");

    let mut wrong = gw.connect(Some("mcpgw_not_a_token")).await;
    let r = wrong.post_raw(init.clone(), &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let r = wrong.post_raw(init.clone(), &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = wrong.post_raw(init.clone(), &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Throttled addresses are refused even with a good token until the wait is over.
    let mut good = gw.connect(Some(&gw.token)).await;
    let r = good.post_raw(init, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_token_never_reaches_the_upstream() {
    // An HTTP upstream that records headers: the mock in HTTP mode records calls only, so
    // check through the stdio child's view instead: arguments and meta carry no token.
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let mut agent = gw.agent().await;
    agent
        .call_tool("firewall_list_rules", json!({}))
        .await
        .unwrap();
    let recorded = std::fs::read_to_string(gw.path("calls.jsonl")).unwrap();
    assert!(!recorded.contains(&gw.token));
    assert!(!recorded.contains(&gw.token[6..]));
}

#[tokio::test]
async fn streamable_http_rules() {
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let mut agent = gw.agent().await;
    let call = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"firewall_list_rules","arguments":{}}}).to_string();

    // Accept must allow JSON and SSE.
    let req = http::Request::post("/mcp")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", gw.token))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", agent.session.clone().unwrap())
        .body(http_body_util::Full::new(bytes::Bytes::from(call.clone())))
        .unwrap();
    assert_eq!(
        agent.send(req).await.unwrap().status,
        StatusCode::NOT_ACCEPTABLE
    );

    // Content-Type must be JSON.
    let req = http::Request::post("/mcp")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", gw.token))
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body(http_body_util::Full::new(bytes::Bytes::from(call.clone())))
        .unwrap();
    assert_eq!(
        agent.send(req).await.unwrap().status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    // GET offers no stream; other paths do not exist.
    let req = http::Request::get("/mcp")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", gw.token))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = agent.send(req).await.unwrap();
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let req = http::Request::post("/other")
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(agent.send(req).await.unwrap().status, StatusCode::NOT_FOUND);

    // Unsupported protocol version.
    let r = agent
        .post_raw(call.clone(), &[("mcp-protocol-version", "1999-01-01")])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Origin not allowed.
    let r = agent
        .post_raw(call.clone(), &[("origin", "https://evil.example")])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Notifications get 202 and no body.
    let r = agent
        .post_raw(
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.body.is_empty());

    // Mirrored headers must agree with the body.
    let r = agent
        .post_raw(
            call.clone(),
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "firewall_delete_rule"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = agent
        .post_raw(
            call.clone(),
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "firewall_list_rules"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);

    // No session header after initialize: 400. Unknown session: 404.
    let session = agent.session.take();
    let r = agent.post_raw(call.clone(), &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    agent.session = Some("00".repeat(16));
    let r = agent.post_raw(call.clone(), &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // DELETE ends the session; it is then unknown.
    agent.session = session;
    let req = http::Request::delete("/mcp")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", gw.token))
        .header("mcp-session-id", agent.session.clone().unwrap())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(agent.send(req).await.unwrap().status, StatusCode::OK);
    let r = agent.post_raw(call, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sessions_are_bound_to_their_identity() {
    let gw = Gateway::start_with(Options {
        more_identities: vec!["intruder".into()],
        ..Options::default()
    });
    let victim = gw.agent().await;
    let mut intruder = gw.connect(Some(&gw.other_tokens[0])).await;
    intruder.session = victim.session.clone();
    let r = intruder
        .post_raw(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules"}}).to_string(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another identity's session looks like no session"
    );
    assert!(gw.upstream_calls().is_empty());
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_is_never_forwarded() {
    let gw = Gateway::start_with(Options {
        listen_extra: "max_body_bytes = 4096\n".into(),
        ..Options::default()
    });
    let mut agent = gw.agent().await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, i64)> = vec![
        ("not json", b"{nope".to_vec(), StatusCode::BAD_REQUEST, -32700),
        (
            "batch",
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_delete_rule"}}]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        (
            "duplicate name",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules","name":"firewall_delete_rule"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            "escaped duplicate",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules","n\u0061me":"firewall_delete_rule"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            "invalid utf-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"fire\xffwall\"}}".to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            "BOM",
            b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        ("deep nesting", format!("{}{}", "[".repeat(100), "]".repeat(100)).into_bytes(), StatusCode::BAD_REQUEST, -32700),
    ];
    for (what, body, status, code) in cases {
        let r = agent.post_raw(body, &[]).await.unwrap();
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json().unwrap()["error"]["code"], json!(code), "{what}");
    }
    // Too large.
    let big = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules","arguments":{"x":"a".repeat(5000)}}});
    let r = agent.post_raw(big.to_string(), &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // tools/call without an id is a notification: accepted, never run.
    let r = agent
        .post_raw(
            json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"firewall_list_rules","arguments":{}}}).to_string(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // Unknown methods are not forwarded.
    let r = agent.request("admin/shutdown", json!({})).await.unwrap();
    assert_eq!(r["error"]["code"], json!(-32601));
    // Invalid params.
    let r = agent
        .request("tools/call", json!({"name": 7}))
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], json!(-32602));
    let r = agent
        .request(
            "tools/call",
            json!({"name": "firewall_list_rules", "arguments": ["a"]}),
        )
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], json!(-32602));

    // The connection still works, and nothing above reached the upstream.
    let r = agent.request("ping", json!({})).await.unwrap();
    assert_eq!(r["result"], json!({}));
    assert!(gw.upstream_calls().is_empty(), "{:?}", gw.upstream_calls());
}

#[tokio::test]
async fn every_decision_is_written_to_syslog() {
    let gw = Gateway::start_with(Options {
        syslog_extra: "log_arguments = [\"interface\"]\n".into(),
        ..Options::default()
    });
    let mut agent = gw.agent().await;
    agent
        .call_tool(
            "firewall_list_rules",
            json!({"interface": "lan", "secret": "s3"}),
        )
        .await
        .unwrap();
    agent
        .call_tool("firewall_delete_rule", json!({}))
        .await
        .unwrap();
    agent.call_tool("ssh_execute", json!({})).await.unwrap();
    for _ in 0..11 {
        agent
            .call_tool("openvpn_disconnect_client", json!({}))
            .await
            .unwrap();
    }
    // initialize + 3 calls + 11 calls.
    let decisions = gw.decision_lines(15, Duration::from_secs(10));
    assert_eq!(decisions.len(), 15, "{decisions:#?}");
    let lines = gw.syslog_lines(0, Duration::ZERO);
    let find = |needle: &str| {
        decisions
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in {decisions:#?}"))
    };
    let allow = find("tool=firewall_list_rules");
    assert!(
        allow.starts_with("<30>1 "),
        "allow at Informational: {allow}"
    );
    assert!(
        msg_of(allow).starts_with("decision=allow identity=agent src=127.0.0.1 method=tools/call"),
        "{allow}"
    );
    assert!(allow.contains("upstream=ok"), "{allow}");
    assert!(allow.contains("latency_us="), "{allow}");
    assert!(allow.contains("arg.interface="), "{allow}");
    assert!(
        !allow.contains("s3"),
        "arguments not named in log_arguments are not logged: {allow}"
    );
    let deny = find("tool=firewall_delete_rule");
    assert!(deny.starts_with("<28>1 "), "deny at Warning: {deny}");
    assert!(
        deny.contains("decision=deny") && deny.contains("reason=\"deleting rules needs a human\""),
        "{deny}"
    );
    assert!(deny.contains("upstream=-"), "{deny}");
    assert!(find("tool=ssh_execute").contains("decision=hide"));
    let limit = find("decision=limit");
    assert!(
        limit.starts_with("<28>1 ")
            && limit.contains("rule=tools.openvpn_disconnect_client.limits[0]"),
        "{limit}"
    );
    assert!(
        lines.iter().all(|l| l.contains(" mcpgw ")),
        "app-name mcpgw"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&gw.token)),
        "tokens never logged"
    );
}

#[tokio::test]
async fn a_killed_upstream_child_fails_the_call_and_comes_back() {
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let mut agent = gw.agent().await;
    let first_pid = gw.mock_pid().expect("mock pid file");
    // A slow call is in flight when the child is killed.
    let mut slow = gw.agent().await;
    let in_flight = tokio::spawn(async move {
        slow.call_tool("firewall_list_rules", json!({"_mock_sleep_ms": 5000}))
            .await
    });
    assert!(
        support::sleeping_call_reached(&gw).await,
        "the slow call reaches the child before it is killed"
    );
    unsafe { libc::kill(first_pid, libc::SIGKILL) };
    let r = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight call is answered, not left hanging")
        .unwrap()
        .unwrap();
    assert_eq!(r["error"]["code"], json!(-32603), "{r}");
    // The next call succeeds on a restarted child (bounded retries while it restarts).
    let mut ok = None;
    for _ in 0..50 {
        let r = agent
            .call_tool("firewall_list_rules", json!({}))
            .await
            .unwrap();
        if r.get("error").is_none() {
            ok = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok.is_some(), "upstream came back");
    let second_pid = gw.mock_pid().unwrap();
    assert_ne!(first_pid, second_pid);
    assert!(
        !alive(first_pid)
            || std::fs::read_to_string(format!("/proc/{first_pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    );
}

#[tokio::test]
async fn sigterm_stops_the_gateway_and_its_upstream_child() {
    let mut gw = Gateway::start(support::DEFAULT_POLICY);
    let mut agent = gw.agent().await;
    agent
        .call_tool("firewall_list_rules", json!({}))
        .await
        .unwrap();
    let child = gw.mock_pid().unwrap();
    assert!(alive(child));
    let status = gw.stop().expect("stopped within 10 s");
    assert!(status.success(), "{status}");
    assert!(!alive(child), "the upstream child is gone");
    // The admin's log says it was an orderly stop, not a fault. "stopped" is the gateway's
    // last line; the harness collects lines asynchronously, so wait (bounded) for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut lines = gw.syslog_lines(0, Duration::ZERO);
    while !lines.iter().any(|l| msg_of(l) == "stopped") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        lines = gw.syslog_lines(0, Duration::ZERO);
    }
    assert!(
        lines.iter().any(|l| l.contains("upstream=stopped")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("fault=upstream-exited")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn http_upstream_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let record = dir.path().join("calls.jsonl");
    let mut mock = std::process::Command::new(support::MOCK)
        .args(["http", "--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .arg("--record")
        .arg(&record)
        .spawn()
        .unwrap();
    let mut port = None;
    for _ in 0..100 {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            port = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = port.expect("mock http port");
    let gw = Gateway::start_with(Options {
        upstream: UpstreamSpec::Raw(format!("url = \"http://127.0.0.1:{port}/mcp\"\n")),
        ..Options::default()
    });
    let mut agent = gw.agent().await;
    let tools = agent.list_tools().await.unwrap();
    assert_eq!(tools.len(), 4);
    let r = agent
        .call_tool("firewall_list_rules", json!({"a": 1}))
        .await
        .unwrap();
    assert!(text_of(&r).contains("firewall_list_rules"), "{r}");
    let r = agent
        .call_tool("firewall_delete_rule", json!({}))
        .await
        .unwrap();
    assert_eq!(r["result"]["isError"], json!(true));
    let calls = support::recorded_calls(&record);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "firewall_list_rules");
    drop(gw);
    let _ = mock.kill();
    let _ = mock.wait();
}

#[tokio::test]
async fn h2_and_http1_are_offered_by_alpn_and_tls12_works() {
    use std::sync::Arc;
    let gw = Gateway::start(support::DEFAULT_POLICY);
    for (alpn, versions) in [
        (b"h2".to_vec(), &[&rustls::version::TLS13][..]),
        (b"http/1.1".to_vec(), &[&rustls::version::TLS12][..]),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(gw.cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.clone()];
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&alpn[..]));
    }
}

use rustls_pki_types::pem::PemObject;

/// Runs `mcpgw check` on `text` written as `mcpgw.toml`; returns (exit code, stdout, stderr, path).
fn check(dir: &std::path::Path, text: &str) -> (Option<i32>, String, String, std::path::PathBuf) {
    let cfg = dir.join("mcpgw.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(support::GATEWAY)
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        cfg,
    )
}

#[test]
fn check_reports_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    const HEAD: &str = "[upstream]\ncommand = \"x\"\n\n[policy]\n";

    let (code, _, err, cfg) = check(
        dir.path(),
        &format!(
            "[listen]\naddress = \"127.0.0.1:8443\"\nplaintext = true\n\n{HEAD}default = \"maybe\"\n"
        ),
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(&format!("{}:9:11: ", cfg.display())),
        "{err}"
    );

    let (code, _, err, _) = check(
        dir.path(),
        &format!("[listen]\naddress = \"0.0.0.0:8443\"\nplaintext = true\n\n{HEAD}"),
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains(":2:11: plain HTTP is allowed only on a loopback address"),
        "{err}"
    );

    let (code, _, err, _) = check(
        dir.path(),
        &format!(
            "[listen]\naddress = \"127.0.0.1:8443\"\ncert = \"missing.pem\"\nkey = \"missing.pem\"\n\n{HEAD}"
        ),
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read certificate"), "{err}");

    let (code, stdout, err, _) = check(
        dir.path(),
        &format!(
            "[listen]\naddress = \"127.0.0.1:8443\"\nplaintext = true\n\n{HEAD}[policy.tools.firewall_list_rules]\n"
        ),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.contains(": OK: "), "{stdout}");
}

#[test]
fn token_new_prints_the_token_once_and_only_its_hash_for_the_config() {
    let out = std::process::Command::new(support::GATEWAY)
        .args(["token", "new", "--name", "cursor"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("mcpgw_"))
        .map(|t| format!("mcpgw_{t}"))
        .unwrap();
    let hash_line = text.lines().find(|l| l.contains("token_sha256")).unwrap();
    let hash = mcpgw::identity::TokenHash::of(token.as_bytes()).to_hex();
    assert!(hash_line.contains(&hash));
    assert_eq!(text.matches(&token).count(), 1);
    assert!(text.contains("name = \"cursor\""));
}

/// The names in a `tools/list` result, in order.
fn tool_names(result: &Value) -> Vec<&str> {
    result["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect()
}

/// The upstream pages its tool list (50 a page); an agent that asks without a cursor gets
/// the whole list, filtered, in one answer; one that asks with the upstream's cursor gets
/// that page, filtered, and its cursor.
#[tokio::test]
async fn tools_list_joins_the_upstream_pages_and_passes_cursors_through() {
    let gw = Gateway::start("[policy]\ndefault = \"allow\"\nhide = [\"ssh_execute\"]\n");
    let mut agent = gw.agent().await;
    let all = agent.request("tools/list", json!({})).await.unwrap();
    let result = &all["result"];
    assert!(result.get("nextCursor").is_none(), "{result}");
    let names = tool_names(result);
    let catalogue = mcpgw::catalogue::tool_names();
    assert_eq!(
        names.len(),
        catalogue.len() - 1,
        "every tool but the hidden one"
    );
    assert!(!names.contains(&"ssh_execute"));
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "no tool twice");
    // Entries are passed on whole: schemas included.
    assert!(
        result["tools"][0]["inputSchema"].is_object(),
        "{}",
        result["tools"][0]
    );

    let second = agent
        .request("tools/list", json!({"cursor": "mock-page-1"}))
        .await
        .unwrap();
    let page = &second["result"];
    assert_eq!(page["nextCursor"], "mock-page-2", "{page}");
    let on_page = tool_names(page);
    assert!((49..=50).contains(&on_page.len()), "{on_page:?}");
    assert!(
        on_page
            .iter()
            .all(|n| unique.contains(n) && *n != "ssh_execute")
    );
}

/// One gateway on an IPv4 and an IPv6 address serves agents on both, under one policy.
#[tokio::test]
async fn listens_on_every_address_it_is_given() {
    // A machine without IPv6 on loopback still checks two addresses, both IPv4.
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !ipv6 {
        eprintln!("no IPv6 on loopback here: listening on 127.0.0.1 and 127.0.0.2 instead");
    }
    let second = if ipv6 { "[::1]:0" } else { "127.0.0.2:0" };
    let gw = Gateway::start_with(Options {
        listen_address: Some(format!("[\"127.0.0.1:0\", \"{second}\"]")),
        ..Options::default()
    });
    let line = gw
        .stderr
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| l.strip_prefix("mcpgw: listening on ").map(str::to_string))
        .expect("the listening line");
    let addresses: Vec<std::net::SocketAddr> = line
        .split_whitespace()
        .take_while(|w| !w.starts_with('('))
        .map(|w| w.parse().expect("an address"))
        .collect();
    assert_eq!(addresses.len(), 2, "{line}");
    assert!(addresses[0].is_ipv4(), "{line}");
    assert_eq!(addresses[1].is_ipv6(), ipv6, "{line}");
    for address in addresses {
        let tls = mcpgw::client::tls_config(gw.cert_pem.as_bytes()).unwrap();
        let mut agent =
            mcpgw::client::McpClient::connect(address, Some((tls, "localhost")), Some(&gw.token))
                .await
                .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
        agent.initialize().await.expect("initialize");
        let r = agent
            .call_tool("firewall_list_rules", json!({"interface": "lan"}))
            .await
            .unwrap();
        assert!(
            text_of(&r).contains("firewall_list_rules"),
            "{address}: {r}"
        );
        let r = agent
            .call_tool("firewall_delete_rule", json!({}))
            .await
            .unwrap();
        assert_eq!(r["result"]["isError"], json!(true), "{address}: {r}");
    }
    assert_eq!(gw.upstream_calls().len(), 2, "one allowed call per address");
}
