//! The policy language end to end: argument rules, risk classes, shadow mode, explain,
//! import, and live reload under traffic, through the real gateway.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Gateway, Options};

const ARGS_POLICY: &str = r#"
[policy]
default = "deny"

[policy.risk.read]
action = "allow"

[policy.tools.firewall_create_rule]
limits = [{ max = 3, per = "minute" }]
[[policy.tools.firewall_create_rule.args]]
path = "interface"
in_set = ["lan", "opt1"]
[[policy.tools.firewall_create_rule.args]]
path = "source"
in_networks = ["192.168.1.0/24"]
optional = true
[[policy.tools.firewall_create_rule.args]]
path = "destination_port"
in_ports = ["443", "8000-8080"]
optional = true
"#;

#[tokio::test]
async fn denied_arguments_never_reach_the_upstream_nor_use_the_limit() {
    let gw = Gateway::start(ARGS_POLICY);
    let mut agent = gw.agent().await;
    let hostile = [
        json!({"interface": "wan"}),
        json!({"interface": "lаn"}),
        json!({"interface": ["lan"]}),
        json!({"interface": "lan", "source": "0.0.0.0/0"}),
        json!({"interface": "lan", "source": "192.168.1.7/16"}),
        json!({"interface": "lan", "source": "::ffff:10.0.0.1"}),
        json!({"interface": "lan", "destination_port": "22"}),
        json!({"interface": "lan", "destination_port": 65536}),
        json!({"interface": "lan", "destination_port": "443 "}),
        json!({}),
    ];
    for args in &hostile {
        let r = agent
            .call_tool("firewall_create_rule", args.clone())
            .await
            .unwrap();
        assert_eq!(r["result"]["isError"], json!(true), "{args}: {r}");
        let text = r["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("tools.firewall_create_rule.args["), "{text}");
        assert!(text.contains("argument "), "{text}");
    }
    assert!(gw.upstream_calls().is_empty(), "{:?}", gw.upstream_calls());
    // The limit of 3 is untouched by the denied calls.
    for port in ["443", "8080", "8000"] {
        let r = agent
            .call_tool(
                "firewall_create_rule",
                json!({"interface": "opt1", "source": "192.168.1.0/28", "destination_port": port}),
            )
            .await
            .unwrap();
        assert_ne!(r["result"]["isError"], json!(true), "{r}");
    }
    let r = agent
        .call_tool("firewall_create_rule", json!({"interface": "lan"}))
        .await
        .unwrap();
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Rate limited")
    );
    assert_eq!(gw.upstream_calls().len(), 3);
    // Risk class read allows every read tool of the catalogue.
    let r = agent
        .call_tool("firewall_get_rule", json!({"uuid": "x"}))
        .await
        .unwrap();
    assert!(r.get("error").is_none(), "{r}");
}

#[tokio::test]
async fn shadow_mode_lets_calls_through_and_logs_what_it_would_deny() {
    let gw = Gateway::start(
        "[policy]\ndefault = \"deny\"\nshadow = true\n[policy.tools.firewall_delete_rule]\naction = \"deny\"\nreason = \"needs a human\"\n",
    );
    let mut agent = gw.agent().await;
    let r = agent
        .call_tool("firewall_delete_rule", json!({"uuid": "1"}))
        .await
        .unwrap();
    assert_ne!(
        r["result"]["isError"],
        json!(true),
        "shadow mode enforces nothing: {r}"
    );
    assert_eq!(gw.upstream_calls().len(), 1);
    let lines = gw.decision_lines(2, Duration::from_secs(5));
    let line = lines
        .iter()
        .find(|l| l.contains("tool=firewall_delete_rule"))
        .expect("decision line");
    assert!(line.contains("decision=deny shadow=true"), "{line}");
    assert!(line.contains("upstream=ok"), "{line}");
    assert!(line.starts_with("<28>"), "logged at Warning: {line}");
}

#[tokio::test]
async fn reload_under_traffic_keeps_serving_and_ends_on_the_last_valid_policy() {
    // Agents on any of three worker threads read the policy while reloads swap it.
    let gw = Gateway::start_with(Options {
        listen_extra: "workers = 3\n".into(),
        ..Options::default()
    });
    let valid_a = std::fs::read_to_string(gw.path("mcpgw.toml")).unwrap();
    // B additionally allows firewall_get_rule; both allow firewall_list_rules.
    let valid_b = valid_a.replace(
        "[policy.tools.system_get_settings]",
        "[policy.tools.firewall_get_rule]\naction = \"allow\"\n\n[policy.tools.system_get_settings]",
    );
    let broken = valid_a.replace("default = \"deny\"", "default = \"maybe\"");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let mut agent = gw.agent().await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut calls = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && calls < 5000 {
                let r = agent
                    .call_tool("firewall_list_rules", json!({}))
                    .await
                    .expect("call answered");
                assert!(
                    r.get("error").is_none() && r["result"]["isError"] != json!(true),
                    "failed call: {r}"
                );
                calls += 1;
            }
            calls
        }));
    }
    for i in 0..50 {
        let text = match i % 4 {
            0 => &valid_b,
            1 | 3 => &broken,
            _ => &valid_a,
        };
        std::fs::write(gw.path("mcpgw.toml"), text).unwrap();
        gw.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // End on B as the last valid config (waited for: B's extra tool answers), followed by
    // one more broken one (waited for: one more rejection is reported).
    std::fs::write(gw.path("mcpgw.toml"), &valid_b).unwrap();
    gw.signal(libc::SIGHUP);
    let mut probe = gw.agent().await;
    let mut b_active = false;
    for _ in 0..200 {
        let r = probe
            .call_tool("firewall_get_rule", json!({"uuid": "x"}))
            .await
            .unwrap();
        if r.get("error").is_none() {
            b_active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b_active, "policy B became active");
    let rejections = || {
        gw.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("reload rejected"))
            .count()
    };
    let rejected_before = rejections();
    std::fs::write(gw.path("mcpgw.toml"), &broken).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        support::wait_until(Duration::from_secs(10), || rejections() > rejected_before).await,
        "the last broken config was rejected"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.expect("no failed call");
    }
    assert!(total > 0);
    // The final policy is B (the last valid one): firewall_get_rule is allowed.
    let mut agent = gw.agent().await;
    let r = agent
        .call_tool("firewall_get_rule", json!({"uuid": "x"}))
        .await
        .unwrap();
    assert!(r.get("error").is_none(), "policy B is active: {r}");
    let stderr = gw.stderr.lock().unwrap().join("\n");
    assert!(
        stderr.contains("reload rejected"),
        "broken configs are rejected: {stderr}"
    );
    assert!(
        stderr.contains(":11:"),
        "the rejection names FILE:LINE: {stderr}"
    );
}

#[tokio::test]
async fn a_reload_does_not_reset_rate_limits() {
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let mut agent = gw.agent().await;
    for _ in 0..10 {
        agent
            .call_tool("openvpn_disconnect_client", json!({}))
            .await
            .unwrap();
    }
    gw.signal(libc::SIGHUP);
    // The reload must really have happened before the 11th call, or this tests nothing.
    let reloaded = support::wait_until(Duration::from_secs(10), || {
        gw.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("reloaded"))
    })
    .await;
    assert!(reloaded, "the gateway reported the reload");
    let r = agent
        .call_tool("openvpn_disconnect_client", json!({}))
        .await
        .unwrap();
    assert_eq!(
        r["result"]["isError"],
        json!(true),
        "still limited after reload: {r}"
    );
}

#[test]
fn explain_prints_the_decision_rule_and_why() {
    let gw = Gateway::start(ARGS_POLICY);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::GATEWAY)
            .args(["explain", "-c"])
            .arg(gw.path("mcpgw.toml"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = run(&[
        "--identity",
        "agent",
        "--tool",
        "firewall_create_rule",
        "--args",
        r#"{"interface":"wan"}"#,
    ]);
    assert_eq!(code, Some(3));
    assert!(
        out.contains("decision: deny")
            && out.contains("rule:     tools.firewall_create_rule.args[0]"),
        "{out}"
    );
    assert!(out.contains("argument interface"), "{out}");
    let (code, out, _) = run(&["--identity", "agent", "--tool", "firewall_get_rule"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("risk.read"), "{out}");
    let (code, out, _) = run(&["--identity", "agent", "--tool", "ssh_execute"]);
    assert_eq!(code, Some(3));
    assert!(out.contains("rule:     default"), "{out}");
    let (code, _, err) = run(&["--identity", "nobody", "--tool", "x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no identity \"nobody\""), "{err}");
    assert!(gw.upstream_calls().is_empty(), "explain runs nothing");
}

#[test]
fn import_policylayer_prints_native_toml_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.json"),
        include_str!("../examples/policy.json"),
    )
    .unwrap();
    let out = std::process::Command::new(support::GATEWAY)
        .args(["import", "policylayer", "policy.json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let toml_text = String::from_utf8(out.stdout).unwrap();
    assert!(toml_text.contains("[policy.tools.openvpn_disconnect_client]"));
    assert!(
        toml_text.contains("max = 10, per = \"minute\", scope = \"identity\""),
        "{toml_text}"
    );
    std::fs::write(dir.path().join("imported.toml"), &toml_text).unwrap();
    std::fs::write(
        dir.path().join("mcpgw.toml"),
        "[listen]\naddress = \"127.0.0.1:8443\"\nplaintext = true\n[upstream]\ncommand = \"x\"\n[policy]\nfile = \"imported.toml\"\n",
    )
    .unwrap();
    let check = std::process::Command::new(support::GATEWAY)
        .args(["check", "-c", "mcpgw.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"version":"1","default":"deny","tools":{"x":{"deny_if":[{"a":1}]}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(support::GATEWAY)
        .args(["import", "policylayer", "bad.json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tools.x.deny_if"));
}

#[test]
fn the_shipped_example_configs_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = mcpgw::server::tls::self_signed(&["localhost"]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    std::fs::write(
        dir.path().join("opnsense.env"),
        "OPNSENSE_HOST=https://127.0.0.1\n",
    )
    .unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in ["mcpgw.toml", "policy.json", "opnsense-policy.toml"] {
        std::fs::copy(examples.join(f), dir.path().join(f)).unwrap();
    }
    let check = |cfg: &str| {
        let out = std::process::Command::new(support::GATEWAY)
            .args(["check", "-c", cfg])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = check("mcpgw.toml");
    assert!(ok, "{out}{err}");
    assert!(
        !err.contains("warning"),
        "the example has no dead rules: {err}"
    );
    // The same config with the complete catalogue policy instead of the inline one.
    let text = std::fs::read_to_string(dir.path().join("mcpgw.toml")).unwrap();
    let head = text.split("\n[policy]").next().unwrap();
    std::fs::write(
        dir.path().join("full.toml"),
        format!("{head}\n[policy]\nfile = \"opnsense-policy.toml\"\n"),
    )
    .unwrap();
    let (ok, out, err) = check("full.toml");
    assert!(ok, "{out}{err}");
    assert!(
        !err.contains("warning"),
        "every tool the policy names is in the catalogue: {err}"
    );
    assert!(out.contains("risk classes read=allow"), "{out}");
}

#[tokio::test]
async fn a_reload_says_which_changes_wait_for_a_restart() {
    let gw = Gateway::start(support::DEFAULT_POLICY);
    let config = std::fs::read_to_string(gw.path("mcpgw.toml")).unwrap();
    assert!(config.contains("send_timeout_ms = 5000"), "{config}");
    std::fs::write(
        gw.path("mcpgw.toml"),
        config
            .replace("send_timeout_ms = 5000", "send_timeout_ms = 4000")
            .replace("[upstream]\n", "[upstream]\ncall_timeout_ms = 7000\n"),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    let warned = |section: &str| {
        let line = format!("reload: [{section}] changed; it takes effect after a restart");
        gw.syslog.lock().unwrap().iter().any(|l| l.contains(&line))
    };
    assert!(
        support::wait_until(Duration::from_secs(10), || warned("syslog")
            && warned("upstream"))
        .await,
        "the [syslog] and [upstream] changes are reported as needing a restart"
    );
    // The policy part of the same reload still applies.
    let mut agent = gw.agent().await;
    let r = agent
        .call_tool("firewall_list_rules", json!({}))
        .await
        .unwrap();
    assert!(r.get("error").is_none(), "{r}");
}
