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
    Identity::named(name)
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
        ("firewall_get_rule", "deny default invisible"),
        ("not_a_catalogue_tool", "deny unknown_tools invisible"),
        // Exact bytes only: case, whitespace and look-alikes are other, unknown tools.
        ("Firewall_list_rules", "deny unknown_tools invisible"),
        (" firewall_list_rules", "deny unknown_tools invisible"),
        (
            "firewall_list_rules\u{200b}",
            "deny unknown_tools invisible",
        ),
        ("firewаll_list_rules", "deny unknown_tools invisible"), // Cyrillic а
    ];
    for (name, want) in cases {
        let got = match p.decide(&a, &tool(name)) {
            Decision::Allow { rule, .. } => format!("allow {rule}"),
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
        !p.tool_visible(&a, "firewall_get_rule"),
        "default-denied tools are not listed"
    );
    let open = policy("[policy]\ndefault = \"allow\"\nhide = [\"ssh_execute\"]\n").unwrap();
    assert!(open.tool_visible(&a, "firewall_get_rule"));
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

fn from(name: &str, source: &str) -> Identity {
    Identity {
        name: name.into(),
        source: Some(source.parse().unwrap()),
        profile: None,
    }
}

fn verdict(d: &Decision) -> String {
    match d {
        Decision::Allow { rule, shadow: None } => format!("allow {rule}"),
        Decision::Allow {
            rule,
            shadow: Some(s),
        } => format!("shadow({}) {rule}", verdict(&s.would_be)),
        Decision::Deny { rule, .. } => format!("deny {rule}"),
        Decision::Hide { rule } => format!("hide {rule}"),
        Decision::Limited { rule, .. } => format!("limit {rule}"),
    }
}

const RISK_POLICY: &str = r#"
[policy]
default = "deny"

[policy.risk.read]
action = "allow"

[policy.risk.write]
limits = [{ max = 2, per = "minute", scope = "identity" }]

[policy.risk.execute]
action = "deny"
reason = "operational actions need a human"

[policy.risk.destructive]
action = "hide"

[policy.tools.firewall_delete_rule]
action = "allow"
"#;

#[test]
fn risk_classes_set_defaults_and_tool_rules_override_them() {
    let p = policy(RISK_POLICY).unwrap();
    let a = who("a");
    let cases: &[(&str, &str)] = &[
        ("firewall_list_rules", "allow risk.read"),
        ("firewall_create_rule", "allow risk.write"),
        ("firewall_apply_changes", "deny risk.execute"),
        ("ssh_execute", "hide risk.destructive"),
        // A tool rule beats its class.
        ("firewall_delete_rule", "allow tools.firewall_delete_rule"),
        // Not in the catalogue: unknown_tools, deny unless set.
        ("brand_new_tool", "deny unknown_tools"),
    ];
    for (tool_name, want) in cases {
        assert_eq!(
            &verdict(&p.decide(&a, &tool(tool_name))),
            want,
            "{tool_name}"
        );
    }
    // Write tools share the class bucket: two write calls of any write tools, then limited.
    assert!(p.decide(&a, &tool("firewall_update_rule")).is_allow());
    assert_eq!(
        verdict(&p.decide(&a, &tool("firewall_toggle_rule"))),
        "limit risk.write.limits[0]"
    );
    assert!(!p.tool_visible(&a, "ssh_execute"));
    assert!(
        p.tool_visible(&a, "firewall_apply_changes"),
        "denied by class, still listed with its reason"
    );
    assert!(
        p.explain_rule("firewall_create_rule")
            .contains("risk.write")
    );
    assert!(p.explain_rule("brand_new_tool").contains("unknown_tools"));
}

#[test]
fn unknown_tools_follow_their_own_setting() {
    let p = policy("[policy]\ndefault = \"allow\"\n").unwrap();
    let a = who("a");
    assert!(p.decide(&a, &tool("firewall_list_rules")).is_allow());
    assert_eq!(
        verdict(&p.decide(&a, &tool("brand_new_tool"))),
        "deny unknown_tools"
    );
    assert!(!p.tool_visible(&a, "brand_new_tool"));
    let p = policy("[policy]\ndefault = \"deny\"\nunknown_tools = \"allow\"\n").unwrap();
    assert!(p.decide(&a, &tool("brand_new_tool")).is_allow());
    assert!(!p.decide(&a, &tool("firewall_list_rules")).is_allow());
}

#[test]
fn all_tools_limits_count_every_allowed_call() {
    let p = policy(
        "[policy]\ndefault = \"allow\"\n[policy.all_tools]\nlimits = [{ max = 3, per = \"minute\" }]\n[policy.tools.firewall_delete_rule]\naction = \"deny\"\n",
    )
    .unwrap();
    let a = who("a");
    assert!(p.decide(&a, &tool("firewall_list_rules")).is_allow());
    // A denied call takes nothing from the bucket.
    assert!(!p.decide(&a, &tool("firewall_delete_rule")).is_allow());
    assert!(p.decide(&a, &tool("firewall_get_rule")).is_allow());
    assert!(p.decide(&a, &tool("system_get_settings")).is_allow());
    assert_eq!(
        verdict(&p.decide(&a, &tool("firewall_list_rules"))),
        "limit all_tools.limits[0]"
    );
    assert!(p.decide(&who("b"), &tool("firewall_list_rules")).is_allow());
}

#[test]
fn source_scoped_limits_count_per_address() {
    let p = policy("[policy]\n[policy.tools.firewall_list_rules]\nlimits = [{ max = 1, per = \"minute\", scope = \"source\" }]\n").unwrap();
    assert!(
        p.decide(&from("a", "192.0.2.1"), &tool("firewall_list_rules"))
            .is_allow()
    );
    // Same address, other identity: same bucket.
    assert!(
        !p.decide(&from("b", "192.0.2.1"), &tool("firewall_list_rules"))
            .is_allow()
    );
    assert!(
        p.decide(&from("a", "192.0.2.2"), &tool("firewall_list_rules"))
            .is_allow()
    );
}

#[test]
fn shadow_mode_logs_but_allows() {
    let p = policy(
        "[policy]\ndefault = \"deny\"\nshadow = true\nhide = [\"ssh_execute\"]\n[policy.tools.firewall_delete_rule]\naction = \"deny\"\n",
    )
    .unwrap();
    let a = who("a");
    assert_eq!(
        verdict(&p.decide(&a, &tool("firewall_delete_rule"))),
        "shadow(deny tools.firewall_delete_rule) tools.firewall_delete_rule"
    );
    assert_eq!(
        verdict(&p.decide(&a, &tool("firewall_get_rule"))),
        "shadow(deny default) default"
    );
    assert_eq!(
        verdict(&p.decide(&a, &tool("ssh_execute"))),
        "hide hide",
        "hiding is not rolled out in shadow"
    );
    assert!(p.tool_visible(&a, "firewall_get_rule"));
    assert!(p.summary().contains("SHADOW"));

    // Per rule: only that rule is shadowed.
    let p = policy(
        "[policy]\n[policy.tools.a]\nlimits = [{ max = 1, per = \"hour\" }]\nshadow = true\n[policy.tools.b]\naction = \"deny\"\n",
    )
    .unwrap();
    assert_eq!(verdict(&p.decide(&a, &tool("a"))), "allow tools.a");
    assert_eq!(
        verdict(&p.decide(&a, &tool("a"))),
        "shadow(limit tools.a.limits[0]) tools.a.limits[0]"
    );
    assert_eq!(verdict(&p.decide(&a, &tool("b"))), "deny tools.b");
}

#[test]
fn hide_star_hides_everything() {
    let p = policy("[policy]\ndefault = \"allow\"\nhide = [\"*\"]\n[policy.tools.x]\n").unwrap();
    assert_eq!(
        verdict(&p.decide(&who("a"), &tool("firewall_list_rules"))),
        "hide hide"
    );
    assert!(!p.tool_visible(&who("a"), "x"));
    assert!(
        p.warnings().iter().any(|w| w.contains("can never apply")),
        "{:?}",
        p.warnings()
    );
}

#[test]
fn reload_keeps_the_buckets_of_unchanged_limits() {
    let text = "[policy]\n[policy.tools.a]\nlimits = [{ max = 2, per = \"hour\" }]\n[policy.tools.b]\nlimits = [{ max = 1, per = \"hour\" }]\n";
    let old = policy(text).unwrap();
    let x = who("x");
    assert!(old.decide(&x, &tool("a")).is_allow());
    assert!(old.decide(&x, &tool("a")).is_allow());
    assert!(old.decide(&x, &tool("b")).is_allow());
    // b's limit changes, a's does not.
    let mut new = policy(&text.replace("max = 1", "max = 5")).unwrap();
    new.carry_state_from(&old);
    assert!(
        !new.decide(&x, &tool("a")).is_allow(),
        "a's bucket was kept (empty)"
    );
    assert!(
        new.decide(&x, &tool("b")).is_allow(),
        "b's limit changed: a fresh bucket"
    );
}

#[test]
fn limits_looser_than_all_tools_are_reported() {
    let p = policy(
        "[policy]\n[policy.all_tools]\nlimits = [{ max = 5, per = \"minute\" }]\n[policy.tools.a]\nlimits = [{ max = 100, per = \"minute\" }]\n",
    )
    .unwrap();
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.contains("can never be reached")),
        "{:?}",
        p.warnings()
    );
}

fn policylayer(json: &str) -> Result<Policy, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.json"), json).unwrap();
    policy_in(dir.path(), "[policy]\nfile = \"policy.json\"\n")
}

#[test]
fn policylayer_hide_all_tools_limits_and_windows() {
    let p = policylayer(
        r#"{"version":"1","default":"allow","hide":["ssh_execute"],
            "all_tools":{"limits":[{"counter":"all","window":60,"max":3,"scope":"grant"}]},
            "tools":{"firewall_delete_rule":{"action":"deny","reason":"needs a human"},
                     "firewall_list_rules":{}}}"#,
    )
    .unwrap();
    let a = who("a");
    assert_eq!(verdict(&p.decide(&a, &tool("ssh_execute"))), "hide hide");
    assert!(!p.tool_visible(&a, "ssh_execute"));
    assert_eq!(
        verdict(&p.decide(&a, &tool("firewall_delete_rule"))),
        "deny tools.firewall_delete_rule"
    );
    // PolicyLayer's default covers tools our catalogue does not know too.
    assert!(p.decide(&a, &tool("brand_new_tool")).is_allow());
    assert!(p.decide(&a, &tool("firewall_list_rules")).is_allow());
    assert!(p.decide(&a, &tool("firewall_get_rule")).is_allow());
    assert_eq!(
        verdict(&p.decide(&a, &tool("firewall_list_rules"))),
        "limit all_tools.limits[0] counter=all"
    );
}

#[test]
fn policylayer_fields_we_cannot_honour_are_errors_naming_them() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"version":"1","default":"deny","tools":{"x":{"deny_if":[{"arg":"amount","gt":10}]}}}"#,
            "tools.x.deny_if",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"x":{"require":["reason"]}}}"#,
            "tools.x.require",
        ),
        (
            r#"{"version":"1","default":"deny","approvals":{}}"#,
            "approvals",
        ),
        (r#"{"version":"2","default":"deny"}"#, "version"),
        (r#"{"version":"1"}"#, "default"),
        (
            r#"{"version":"1","default":"deny","tools":{"x":{"limits":[{"window":90,"max":1}]}}}"#,
            "window = 90",
        ),
        (
            r#"{"version":"1","default":"deny","tools":{"x":{"limits":[{"window":"minute","max":1,"scope":"session"}]}}}"#,
            "session",
        ),
    ];
    for (json, want) in cases {
        let err = policylayer(json).unwrap_err().to_string();
        assert!(err.contains(want), "{json}: {err}");
        assert!(err.contains("policy.json"), "{err}");
    }
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
    // Shadow rules do not deny; the decision carries what they would have said, to be logged.
    let sudo = json!({"command": "ls", "sudo": true});
    assert_eq!(
        verdict(&p.decide(&who("a"), &call("ssh_execute", &sudo))),
        "shadow(deny tools.ssh_execute.args[0]) tools.ssh_execute"
    );
    let plain = json!({"command": "ls"});
    assert_eq!(
        verdict(&p.decide(&who("a"), &call("ssh_execute", &plain))),
        "allow tools.ssh_execute"
    );
}

#[test]
fn bad_argument_rules_are_rejected_with_a_place() {
    let cases: &[(&str, &str)] = &[
        (
            "[policy]\n[policy.tools.x]\naction = \"deny\"\nreason = \"r\"\n[[policy.tools.x.args]]\npath = \"a\"\nequals = 1\n",
            "test.toml:2:1: tools.x is deny but has args rules",
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

#[test]
fn imported_policylayer_policies_decide_like_the_original() {
    let json = r#"{"version":"1","default":"deny","hide":["ssh_execute"],
        "all_tools":{"limits":[{"window":"hour","max":50,"scope":"grant"}]},
        "tools":{"openvpn_disconnect_client":{"limits":[{"counter":"c","window":"minute","max":2,"scope":"grant"}]},
                 "firewall_delete_rule":{"action":"deny","reason":"needs \"a\" human"},
                 "firewall_list_rules":{}}}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, json).unwrap();
    let map = SourceMap {
        file: &path,
        text: json,
    };
    let native = policylayer::import(&map).unwrap();
    let original = policylayer(json).unwrap();
    let imported = policy(&native).unwrap_or_else(|e| panic!("{e}\n{native}"));
    let a = who("a");
    for name in [
        "ssh_execute",
        "firewall_delete_rule",
        "firewall_list_rules",
        "firewall_get_rule",
        "brand_new",
        "openvpn_disconnect_client",
        "openvpn_disconnect_client",
        "openvpn_disconnect_client",
    ] {
        assert_eq!(
            verdict(&original.decide(&a, &tool(name))),
            verdict(&imported.decide(&a, &tool(name))),
            "{name}\n{native}"
        );
    }
    match imported.decide(&a, &tool("firewall_delete_rule")) {
        Decision::Deny { reason, .. } => assert_eq!(&*reason, "needs \"a\" human"),
        other => panic!("{other:?}"),
    }
}
