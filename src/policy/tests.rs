//! Table tests of `Policy::decide`: each case is a policy, a caller, a tool and the decision.

use std::path::Path;

use super::*;
use crate::mcp::subject::Subject;

fn policy(toml_text: &str) -> Result<Policy, ConfigError> {
    policy_in(Path::new("."), toml_text)
}

fn policy_in(base: &Path, toml_text: &str) -> Result<Policy, ConfigError> {
    #[derive(Deserialize)]
    struct Wrapper {
        policy: Spanned<PolicySection>,
    }
    let file = Path::new("test.toml");
    let map = SourceMap {
        file,
        text: toml_text,
    };
    let w: Wrapper = toml::from_str(toml_text).map_err(|e| map.error(e.span(), e.message()))?;
    let span = w.policy.span();
    Policy::compile(
        w.policy.into_inner(),
        &PolicySource {
            map: &map,
            base,
            span,
        },
    )
}

fn who(name: &str) -> Identity {
    Identity { name: name.into() }
}

fn tool(name: &str) -> Subject<'_> {
    Subject::Tool {
        name,
        arguments: None,
    }
}

const SAMPLE: &str = r#"
[policy]
default = "deny"
hide = ["ssh_execute"]

[policy.tools.firewall_list_rules]
action = "allow"

[policy.tools.firewall_delete_rule]
action = "deny"
reason = "deleting rules needs a human"

[policy.tools.openvpn_disconnect_client]
limits = [{ max = 3, per = "minute" }]

[policy.tools.system_get_settings]
limits = [{ max = 2, per = "hour", scope = "global" }]
"#;

#[test]
fn tool_rules_decide_as_written() {
    let p = policy(SAMPLE).unwrap();
    let a = who("a");
    let cases: &[(&str, &str)] = &[
        ("firewall_list_rules", "allow tools.firewall_list_rules"),
        (
            "firewall_delete_rule",
            "deny tools.firewall_delete_rule visible",
        ),
        ("ssh_execute", "hide hide"),
        ("nat_list_rules", "deny default invisible"),
        // Exact bytes only: case, whitespace and look-alikes are other, unknown tools.
        ("Firewall_list_rules", "deny default invisible"),
        (" firewall_list_rules", "deny default invisible"),
        ("firewall_list_rules\u{200b}", "deny default invisible"),
        ("firewаll_list_rules", "deny default invisible"), // Cyrillic а
    ];
    for (name, want) in cases {
        let got = match p.decide(&a, &tool(name)) {
            Decision::Allow { rule } => format!("allow {rule}"),
            Decision::Deny { rule, visible, .. } => {
                format!(
                    "deny {rule} {}",
                    if visible { "visible" } else { "invisible" }
                )
            }
            Decision::Hide { rule } => format!("hide {rule}"),
            Decision::Limited { rule, .. } => format!("limit {rule}"),
        };
        assert_eq!(&got, want, "tool {name:?}");
    }
}

#[test]
fn denial_carries_the_reason() {
    let p = policy(SAMPLE).unwrap();
    match p.decide(&who("a"), &tool("firewall_delete_rule")) {
        Decision::Deny { reason, .. } => assert_eq!(&*reason, "deleting rules needs a human"),
        other => panic!("expected deny, got {other:?}"),
    }
}

#[test]
fn identity_limits_count_per_identity() {
    let p = policy(SAMPLE).unwrap();
    let (a, b) = (who("a"), who("b"));
    for _ in 0..3 {
        assert!(p.decide(&a, &tool("openvpn_disconnect_client")).is_allow());
    }
    match p.decide(&a, &tool("openvpn_disconnect_client")) {
        Decision::Limited { rule, retry_after } => {
            assert_eq!(&*rule, "tools.openvpn_disconnect_client.limits[0]");
            assert!(retry_after > Duration::from_secs(1) && retry_after <= Duration::from_secs(20));
        }
        other => panic!("expected limit, got {other:?}"),
    }
    // Another identity has its own bucket.
    assert!(p.decide(&b, &tool("openvpn_disconnect_client")).is_allow());
}

#[test]
fn global_limits_are_shared() {
    let p = policy(SAMPLE).unwrap();
    assert!(p.decide(&who("a"), &tool("system_get_settings")).is_allow());
    assert!(p.decide(&who("b"), &tool("system_get_settings")).is_allow());
    assert!(matches!(
        p.decide(&who("c"), &tool("system_get_settings")),
        Decision::Limited { .. }
    ));
}

#[test]
fn visibility_follows_rules() {
    let p = policy(SAMPLE).unwrap();
    let a = who("a");
    assert!(p.tool_visible(&a, "firewall_list_rules"));
    assert!(
        p.tool_visible(&a, "firewall_delete_rule"),
        "denied tools stay visible with a reason"
    );
    assert!(!p.tool_visible(&a, "ssh_execute"));
    assert!(
        !p.tool_visible(&a, "nat_list_rules"),
        "default-denied tools are not listed"
    );
    let open = policy("[policy]\ndefault = \"allow\"\nhide = [\"ssh_execute\"]\n").unwrap();
    assert!(open.tool_visible(&a, "nat_list_rules"));
    assert!(!open.tool_visible(&a, "ssh_execute"));
}

#[test]
fn protocol_methods_pass_and_unknown_methods_do_not() {
    let p = policy(SAMPLE).unwrap();
    let a = who("a");
    for m in [
        "initialize",
        "ping",
        "tools/list",
        "notifications/initialized",
    ] {
        assert!(
            p.decide(&a, &Subject::Method { method: m }).is_allow(),
            "{m}"
        );
    }
    for m in ["tools/Call", "sampling/createMessage", "admin/shutdown", ""] {
        assert!(
            matches!(
                p.decide(&a, &Subject::Method { method: m }),
                Decision::Deny { visible: false, .. }
            ),
            "{m}"
        );
    }
    assert!(
        !p.decide(
            &a,
            &Subject::Resource {
                uri: "file:///etc/passwd"
            }
        )
        .is_allow()
    );
}

#[test]
fn bad_policies_are_rejected_with_a_place() {
    let cases: &[(&str, &str)] = &[
        ("[policy]\ndefault = \"maybe\"\n", "test.toml:2:11"),
        (
            "[policy]\n[policy.tools.x]\naction = \"deny\"\nlimits = [{max = 1, per = \"minute\"}]\n",
            "limits apply only to allowed tools",
        ),
        (
            "[policy]\n[policy.tools.x]\nlimits = [{max = 0, per = \"minute\"}]\n",
            "max = 0",
        ),
        (
            "[policy]\n[policy.tools.x]\nlimits = [{max = 1, per = \"fortnight\"}]\n",
            "fortnight",
        ),
        ("[policy]\n[policy.tools.x]\nactoin = \"deny\"\n", "actoin"),
        (
            "[policy]\n[policy.tools.\"bad name\"]\n",
            "not a valid MCP tool name",
        ),
        (
            "[policy]\nhide = [\"x\"]\n[policy.tools.x]\naction = \"allow\"\n",
            "also has a rule",
        ),
        (
            "[policy]\n[policy.tools.x]\nreason = \"r\"\n",
            "reason but is not denied",
        ),
        (
            "[policy]\n[policy.tools.x]\nlimits = [{max = 1, per = \"minute\", counter = \"c\"}]\n[policy.tools.y]\nlimits = [{max = 2, per = \"minute\", counter = \"c\"}]\n",
            "one counter is one bucket",
        ),
    ];
    for (text, want) in cases {
        let err = policy(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(err.starts_with("test.toml"), "{err}");
    }
}

#[test]
fn shared_counters_share_one_bucket() {
    let p = policy(
        "[policy]\n[policy.tools.a]\nlimits = [{max = 2, per = \"minute\", counter = \"c\"}]\n[policy.tools.b]\nlimits = [{max = 2, per = \"minute\", counter = \"c\"}]\n",
    )
    .unwrap();
    let x = who("x");
    assert!(p.decide(&x, &tool("a")).is_allow());
    assert!(p.decide(&x, &tool("b")).is_allow());
    assert!(matches!(p.decide(&x, &tool("a")), Decision::Limited { .. }));
}

#[test]
fn unknown_tools_warn_with_the_nearest_name() {
    let p = policy("[policy]\n[policy.tools.openvpn_disconect_client]\n").unwrap();
    assert_eq!(p.warnings().len(), 1);
    assert!(
        p.warnings()[0].contains("openvpn_disconnect_client"),
        "{:?}",
        p.warnings()
    );
}

#[test]
fn the_product_pages_policy_json_behaves_as_its_page_says() {
    let dir = std::env::temp_dir().join(format!("mcpgw-pl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = include_str!("../../examples/policy.json");
    std::fs::write(dir.join("policy.json"), json).unwrap();
    let text = "[policy]\nfile = \"policy.json\"\n";
    let p = policy_in(&dir, text).unwrap();
    let g = who("grant-1");
    let allowed = (0..12)
        .filter(|_| p.decide(&g, &tool("openvpn_disconnect_client")).is_allow())
        .count();
    assert_eq!(allowed, 10, "10 calls a minute per grant");
    assert!(
        p.decide(&who("grant-2"), &tool("openvpn_disconnect_client"))
            .is_allow()
    );
    assert!(
        !p.decide(&g, &tool("firewall_list_rules")).is_allow(),
        "everything else denied"
    );
    assert!(!p.tool_visible(&g, "firewall_list_rules"));
    assert!(p.tool_visible(&g, "openvpn_disconnect_client"));

    std::fs::write(
        dir.join("policy.json"),
        json.replace("\"max\"", "\"maximum\""),
    )
    .unwrap();
    let err = policy_in(&dir, text).unwrap_err().to_string();
    assert!(
        err.contains("policy.json") && err.contains("maximum"),
        "{err}"
    );
}

const ARGS_POLICY: &str = r#"
[policy]
default = "deny"

[policy.tools.create_firewall_rule]
limits = [{ max = 2, per = "minute" }]
[[policy.tools.create_firewall_rule.args]]
path = "interface"
in_set = ["lan", "opt1"]
[[policy.tools.create_firewall_rule.args]]
path = "source"
in_networks = ["10.0.0.0/8"]
[[policy.tools.create_firewall_rule.args]]
path = "destinationPort"
in_ports = ["80", 443]
optional = true

[policy.tools.ssh_execute]
[[policy.tools.ssh_execute.args]]
path = "sudo"
forbidden = true
shadow = true
"#;

fn call<'a>(name: &'a str, arguments: &'a serde_json::Value) -> Subject<'a> {
    Subject::Tool {
        name,
        arguments: arguments.as_object(),
    }
}

#[test]
fn denied_arguments_never_consume_a_limit_cell() {
    use serde_json::json;
    let p = policy(ARGS_POLICY).unwrap();
    let a = who("a");
    let good = json!({"interface": "lan", "source": "10.0.6.0/24", "destinationPort": "443"});
    let hostile = [
        json!({"interface": "wan", "source": "10.0.6.0/24"}),
        json!({"interface": "lаn", "source": "10.0.6.0/24"}),
        json!({"interface": "lan", "source": "any"}),
        json!({"interface": "lan", "source": "10.0.6.1/8"}),
        json!({"interface": "lan", "source": "10.0.6.0/24", "destinationPort": "22"}),
        json!({"interface": "lan"}),
        json!({}),
    ];
    // Far more denied calls than the bucket holds.
    for _ in 0..5 {
        for args in &hostile {
            let d = p.decide(&a, &call("create_firewall_rule", args));
            assert!(
                matches!(&d, Decision::Deny { visible: true, rule, .. } if rule.starts_with("tools.create_firewall_rule.args[")),
                "{args}: {d:?}"
            );
        }
    }
    // Arguments absent altogether: every required key is missing.
    assert!(matches!(
        p.decide(&a, &tool("create_firewall_rule")),
        Decision::Deny { .. }
    ));
    // The bucket is still full: two good calls pass, the third is limited.
    assert!(
        p.decide(&a, &call("create_firewall_rule", &good))
            .is_allow()
    );
    assert!(
        p.decide(&a, &call("create_firewall_rule", &good))
            .is_allow()
    );
    assert!(matches!(
        p.decide(&a, &call("create_firewall_rule", &good)),
        Decision::Limited { .. }
    ));
    // Once limited, a bad call is still denied for its arguments (checked first).
    assert!(matches!(
        p.decide(&a, &call("create_firewall_rule", &hostile[0])),
        Decision::Deny { .. }
    ));
}

#[test]
fn argument_denials_name_the_rule_and_the_argument() {
    use serde_json::json;
    let p = policy(ARGS_POLICY).unwrap();
    let args = json!({"interface": "lan", "source": "192.168.1.0/24"});
    assert_eq!(
        p.decide(&who("a"), &call("create_firewall_rule", &args)),
        Decision::Deny {
            rule: "tools.create_firewall_rule.args[1]".into(),
            reason: "argument source: 192.168.1.0/24 is not inside 10.0.0.0/8".into(),
            visible: true,
        }
    );
    // Shadow rules do not deny (the dispatcher will log them).
    let sudo = json!({"command": "ls", "sudo": true});
    assert_eq!(
        p.decide(&who("a"), &call("ssh_execute", &sudo)),
        Decision::Allow {
            rule: "tools.ssh_execute".into()
        }
    );
}

#[test]
fn bad_argument_rules_are_rejected_with_a_place() {
    let cases: &[(&str, &str)] = &[
        (
            "[policy]\n[policy.tools.x]\naction = \"deny\"\nreason = \"r\"\n[[policy.tools.x.args]]\npath = \"a\"\nequals = 1\n",
            "test.toml:2:1: tool \"x\" is Deny but has args rules",
        ),
        (
            "[policy]\n[policy.tools.x]\n[[policy.tools.x.args]]\npath = \"net\"\nin_networks = [\"192.168.1.1/24\"]\n",
            "test.toml:5:16: tools.x.args[0]: in_networks[0] \"192.168.1.1/24\" has host bits set after its prefix: write 192.168.1.0/24",
        ),
        (
            "[policy]\n[policy.tools.x]\n[[policy.tools.x.args]]\npath = \"a\"\nequals = 1\n[[policy.tools.x.args]]\npath = \"p\"\nin_ports = [\"80-70\"]\n",
            "test.toml:8:13: tools.x.args[1]: in_ports[0] \"80-70\"",
        ),
        (
            "[policy]\n[policy.tools.x]\n[[policy.tools.x.args]]\npath = \"a\"\nin_sets = [\"lan\"]\n",
            "test.toml:5:1: unknown field `in_sets`",
        ),
    ];
    for (text, want) in cases {
        let err = policy(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
    }
}
