//! Identities and grants end to end, through real TLS: source networks, client certificates
//! (optional and required), per-identity policy profiles, and `mcpgw check` about them.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use mcpgw::client::McpClient;
use serde_json::{Value, json};
use support::{GATEWAY, Gateway, Options, TestCa, msg_of};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#;

fn text_of(resp: &Value) -> &str {
    resp["result"]["content"][0]["text"].as_str().unwrap_or("")
}

/// Waits (bounded) for a syslog line whose message contains `needle`.
fn wait_for_line(gw: &Gateway, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = gw.syslog_lines(0, Duration::ZERO);
        if let Some(l) = lines.iter().find(|l| msg_of(l).contains(needle)) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no syslog line with {needle:?} in {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The identity named in the first decision line about `tool` (waits for it, bounded).
fn decision_identity(gw: &Gateway, tool: &str) -> String {
    let lines = gw.decision_lines(1, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = lines;
    loop {
        if let Some(l) = lines.iter().find(|l| l.contains(&format!("tool={tool} "))) {
            let msg = msg_of(l);
            return msg
                .split(' ')
                .find_map(|kv| kv.strip_prefix("identity="))
                .unwrap_or("")
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no decision for {tool}: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        lines = gw.decision_lines(0, Duration::ZERO);
    }
}

/// A connection attempt that the server must refuse during the TLS handshake. With TLS 1.3
/// the client finishes its side first and sees the refusal on its first request, so either
/// the connect or the first request fails without any HTTP answer.
async fn assert_handshake_refused(attempt: Result<McpClient, String>) {
    let Ok(mut client) = attempt else {
        return;
    };
    match client.post_raw(INIT, &[]).await {
        Err(_) => {}
        Ok(r) => panic!(
            "the handshake should have been refused, got HTTP {}",
            r.status
        ),
    }
}

#[tokio::test]
async fn a_token_authenticates_only_from_its_networks() {
    let gw = Gateway::start_with(Options {
        more_identities: vec!["far".into()],
        identity_lines: vec![
            (
                "agent".into(),
                r#"networks = ["127.0.0.0/8", "::1"]"#.into(),
            ),
            ("far".into(), r#"networks = ["10.0.0.0/8"]"#.into()),
        ],
        listen_extra: "auth_failures_per_minute = 2\n".into(),
        ..Options::default()
    });
    // The harness connects from 127.0.0.1: inside agent's networks.
    let mut agent = gw.agent().await;
    let r = agent
        .call_tool("firewall_list_rules", json!({}))
        .await
        .unwrap();
    assert_ne!(r["result"]["isError"], json!(true), "{r}");

    // A valid token from outside its identity's networks is a failed authentication.
    let mut far = gw.connect(Some(&gw.other_tokens[0])).await;
    let r = far.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""),
        "{:?}",
        r.headers
    );
    let line = wait_for_line(&gw, "reason=outside-networks");
    assert!(
        msg_of(&line).starts_with("auth=fail src=127.0.0.1 reason=outside-networks identity=far"),
        "{line}"
    );
    // ... and it counts toward the per-address failure limit (2 a minute here).
    let r = far.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = far.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = agent.call_tool("firewall_list_rules", json!({})).await;
    assert!(
        r.as_ref().is_err_and(|e| e.contains("429")),
        "the address is throttled for everyone: {r:?}"
    );
    assert_eq!(gw.upstream_calls().len(), 1);
}

#[tokio::test]
async fn client_certificates_authenticate_without_a_token_when_optional() {
    let ca = TestCa::new("mcpgw test agents");
    let stranger = TestCa::new("someone else");
    let gw = Gateway::start_with(Options {
        listen_extra: "client_ca = \"ca.pem\"\nclient_auth = \"optional\"\n".into(),
        files: vec![("ca.pem".into(), ca.pem.clone())],
        identities_extra: "[[identity]]\nname = \"agent1\"\nclient_cert = \"agent1.example.net\"\nnetworks = [\"127.0.0.0/8\"]\n".into(),
        ..Options::default()
    });
    let agent1_cert = ca.issue("agent1.example.net");

    // The certificate alone authenticates agent1.
    let mut a1 = gw.connect_with_cert(None, &agent1_cert).await.unwrap();
    a1.initialize().await.expect("certificate login");
    let r = a1
        .call_tool("firewall_list_rules", json!({"interface": "lan"}))
        .await
        .unwrap();
    assert!(text_of(&r).contains("firewall_list_rules"), "{r}");
    assert_eq!(decision_identity(&gw, "firewall_list_rules"), "agent1");

    // Optional: token-only agents still get in.
    let mut agent = gw.agent().await;
    agent
        .call_tool("system_get_settings", json!({}))
        .await
        .unwrap();
    assert_eq!(decision_identity(&gw, "system_get_settings"), "agent");

    // A certificate of another CA keeps its connection but names nobody...
    let forged = stranger.issue("agent1.example.net");
    let mut f = gw.connect_with_cert(None, &forged).await.unwrap();
    let r = f.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "no identity without a token"
    );
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"mcpgw\"");
    wait_for_line(&gw, "auth=cert-untrusted src=127.0.0.1");
    // ... so with a token it is the token's identity.
    let mut f = gw
        .connect_with_cert(Some(&gw.token), &forged)
        .await
        .unwrap();
    f.initialize().await.unwrap();
    f.call_tool("firewall_delete_rule", json!({}))
        .await
        .unwrap();
    assert_eq!(decision_identity(&gw, "firewall_delete_rule"), "agent");

    // A trusted certificate for a name no identity claims is no credential either.
    let mut u = gw
        .connect_with_cert(None, &ca.issue("agent9.example.net"))
        .await
        .unwrap();
    let r = u.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    wait_for_line(
        &gw,
        "reason=missing-token client_cert=\"agent9.example.net\"",
    );

    // A token of one identity with the certificate of another: refused, not guessed.
    let mut both = gw
        .connect_with_cert(Some(&gw.token), &agent1_cert)
        .await
        .unwrap();
    let r = both.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    wait_for_line(&gw, "reason=identity-conflict identity=agent");
}

#[tokio::test]
async fn required_client_certificates_refuse_the_handshake() {
    let ca = TestCa::new("mcpgw test agents");
    let stranger = TestCa::new("someone else");
    let gw = Gateway::start_with(Options {
        listen_extra: "client_ca = \"ca.pem\"\nclient_auth = \"required\"\n".into(),
        files: vec![("ca.pem".into(), ca.pem.clone())],
        // agent needs its token *and* its certificate.
        identity_lines: vec![(
            "agent".into(),
            "client_cert = \"agent.example.net\"\nrequire_client_cert = true".into(),
        )],
        identities_extra: "[[identity]]\nname = \"agent1\"\nclient_cert = \"agent1.example.net\"\n"
            .into(),
        ..Options::default()
    });

    let tls = mcpgw::client::tls_config(gw.cert_pem.as_bytes()).unwrap();
    assert_handshake_refused(
        McpClient::connect(gw.addr, Some((tls, "localhost")), Some(&gw.token)).await,
    )
    .await;
    assert_handshake_refused(
        gw.connect_with_cert(None, &stranger.issue("agent1.example.net"))
            .await,
    )
    .await;

    let mut a1 = gw
        .connect_with_cert(None, &ca.issue("agent1.example.net"))
        .await
        .unwrap();
    a1.initialize().await.expect("certificate login");

    let agent_cert = ca.issue("agent.example.net");
    let mut a = gw
        .connect_with_cert(Some(&gw.token), &agent_cert)
        .await
        .unwrap();
    a.initialize().await.expect("token and certificate");
    // The certificate without the token is not enough for agent...
    let mut c = gw.connect_with_cert(None, &agent_cert).await.unwrap();
    let r = c.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // ... nor the token with another identity's certificate.
    let mut c = gw
        .connect_with_cert(Some(&gw.token), &ca.issue("agent7.example.net"))
        .await
        .unwrap();
    let r = c.post_raw(INIT, &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    wait_for_line(&gw, "reason=client-cert-required identity=agent");
}

#[tokio::test]
async fn a_reload_rereads_the_client_ca() {
    let old_ca = TestCa::new("old agents CA");
    let new_ca = TestCa::new("new agents CA");
    let gw = Gateway::start_with(Options {
        listen_extra: "client_ca = \"ca.pem\"\n".into(),
        files: vec![("ca.pem".into(), old_ca.pem.clone())],
        identities_extra: "[[identity]]\nname = \"agent1\"\nclient_cert = \"agent1.example.net\"\n"
            .into(),
        ..Options::default()
    });
    let old_cert = old_ca.issue("agent1.example.net");
    let mut open = gw.connect_with_cert(None, &old_cert).await.unwrap();
    open.initialize().await.unwrap();

    std::fs::write(gw.path("ca.pem"), &new_ca.pem).unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("reloaded"))
    {
        assert!(Instant::now() < deadline, "no reload");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The open connection's certificate was verified against the old CA: it no longer counts.
    let r = open.call_tool("firewall_list_rules", json!({})).await;
    assert!(r.as_ref().is_err_and(|e| e.contains("401")), "{r:?}");
    // New connections: the old CA's certificates name nobody, the new CA's do.
    let mut c = gw.connect_with_cert(None, &old_cert).await.unwrap();
    assert_eq!(
        c.post_raw(INIT, &[]).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    let mut c = gw
        .connect_with_cert(None, &new_ca.issue("agent1.example.net"))
        .await
        .unwrap();
    c.initialize().await.expect("certificate of the new CA");
}

/// Waits (bounded) for the gateway to say it reloaded `n` times.
fn wait_for_reloads(gw: &Gateway, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = gw
            .stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("reloaded"))
            .count();
        if seen >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no reload");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_reload_revokes_a_token_on_connections_already_open() {
    let gw = Gateway::start_with(Options {
        more_identities: vec!["second".into()],
        ..Options::default()
    });
    let mut open = gw.agent().await;
    open.initialize().await.unwrap();
    // Two calls, so the connection has authenticated before and may remember it.
    for _ in 0..2 {
        open.call_tool("firewall_list_rules", json!({}))
            .await
            .unwrap();
    }

    // The same config without the agent's identity.
    let config = std::fs::read_to_string(gw.path("mcpgw.toml")).unwrap();
    let start = config.find("[[identity]]\nname = \"agent\"").unwrap();
    let end = start
        + config[start..]
            .find("[[identity]]\nname = \"second\"")
            .unwrap();
    std::fs::write(
        gw.path("mcpgw.toml"),
        format!("{}{}", &config[..start], &config[end..]),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    wait_for_reloads(&gw, 1);

    let r = open.call_tool("firewall_list_rules", json!({})).await;
    assert!(r.as_ref().is_err_and(|e| e.contains("401")), "{r:?}");
    // The identity that stayed is unaffected.
    let mut other = gw.connect(Some(&gw.other_tokens[0])).await;
    other
        .initialize()
        .await
        .expect("the second identity still authenticates");
}

const PROFILES: &str = r#"
[profiles.readonly]
default = "deny"

[profiles.readonly.tools.system_get_settings]
action = "allow"

[profiles.readonly.tools.firewall_list_rules]
action = "deny"
reason = "readonly agents do not read rules"
"#;

#[tokio::test]
async fn identities_are_decided_by_their_own_profile() {
    let gw = Gateway::start_with(Options {
        policy: format!("{}{PROFILES}", support::DEFAULT_POLICY),
        more_identities: vec!["reader".into()],
        identity_lines: vec![("reader".into(), "policy = \"readonly\"".into())],
        ..Options::default()
    });
    let mut agent = gw.agent().await;
    let mut reader = gw.connect(Some(&gw.other_tokens[0])).await;
    reader.initialize().await.unwrap();

    let mut tools = agent.list_tools().await.unwrap();
    tools.sort();
    assert_eq!(
        tools,
        [
            "firewall_delete_rule",
            "firewall_list_rules",
            "openvpn_disconnect_client",
            "system_get_settings"
        ]
    );
    let mut tools = reader.list_tools().await.unwrap();
    tools.sort();
    assert_eq!(tools, ["firewall_list_rules", "system_get_settings"]);

    let r = agent
        .call_tool("firewall_list_rules", json!({}))
        .await
        .unwrap();
    assert!(text_of(&r).contains("firewall_list_rules"), "allowed: {r}");
    let r = reader
        .call_tool("firewall_list_rules", json!({}))
        .await
        .unwrap();
    assert_eq!(r["result"]["isError"], json!(true));
    assert!(
        text_of(&r).contains("readonly agents do not read rules"),
        "{r}"
    );
    let r = reader
        .call_tool("openvpn_disconnect_client", json!({}))
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], json!(-32602), "default-denied: {r}");
    let r = reader
        .call_tool("system_get_settings", json!({}))
        .await
        .unwrap();
    assert_ne!(r["result"]["isError"], json!(true), "{r}");

    let calls: Vec<String> = gw.upstream_calls().into_iter().map(|c| c.0).collect();
    assert_eq!(calls, ["firewall_list_rules", "system_get_settings"]);
}

#[test]
fn check_names_profiles_and_points_at_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = mcpgw::server::tls::self_signed(&["localhost"]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let hash = "ab".repeat(32);
    let config = |profile: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n[upstream]\ncommand = \"x\"\n\n[[identity]]\nname = \"reader\"\ntoken_sha256 = [\"{hash}\"]\npolicy = \"{profile}\"\n{}{PROFILES}",
            support::DEFAULT_POLICY
        )
    };
    let run = |text: &str| {
        std::fs::write(dir.path().join("mcpgw.toml"), text).unwrap();
        std::process::Command::new(GATEWAY)
            .args(["check", "-c", "mcpgw.toml"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&config("readonly"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("profile readonly (1 identities): default deny, 1 allowed"),
        "{stdout}"
    );

    let text = config("read-only");
    let out = run(&text);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .position(|l| l == "policy = \"read-only\"")
        .unwrap()
        + 1;
    assert!(
        stderr.starts_with(&format!("mcpgw.toml:{line}:10: identity \"reader\": policy \"read-only\" names no [profiles.read-only] table (profiles: readonly)")),
        "{stderr}"
    );
}
