//! Table tests of argument rules: for each check, values that pass and hostile ones that must
//! not (wrong types, look-alikes, padding, huge strings), then configuration errors with their
//! `FILE:LINE:COL`.

use std::path::Path;

use serde_json::{Value, json};

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapper {
    args: Vec<Spanned<ArgSection>>,
}

/// Compiles `[[args]]` entries written as TOML, as tool `t` of `test.toml`.
fn compile(text: &str) -> Result<ArgRules, String> {
    let map = SourceMap {
        file: Path::new("test.toml"),
        text,
    };
    let w: Wrapper = toml::from_str(text).map_err(|e| {
        map.error(e.span(), e.message().trim().to_string())
            .to_string()
    })?;
    ArgRules::compile(w.args, "t", &map).map_err(|e| e.to_string())
}

/// One entry with `path = "k"` and the given body.
fn rule(body: &str) -> ArgRules {
    let text = format!("[[args]]\npath = \"k\"\n{body}\n");
    match compile(&text) {
        Ok(r) => r,
        Err(e) => panic!("{body}: {e}"),
    }
}

/// `Ok` or the denial as `args[I] PATH: REASON`.
fn run(rules: &ArgRules, arguments: &Value) -> Result<(), String> {
    match rules.check(arguments.as_object()) {
        ArgOutcome::Pass => Ok(()),
        ArgOutcome::Deny(v) => Err(format!("{} {}: {}", v.rule, v.path, v.reason)),
        ArgOutcome::ShadowOnly(v) => Err(format!("shadow only: {v:?}")),
    }
}

/// Runs `{"k": value}` for each case; `true` means it must pass.
fn table(body: &str, cases: &[(Value, bool)]) {
    let rules = rule(body);
    for (value, pass) in cases {
        let got = run(&rules, &json!({ "k": value }));
        let shown = {
            let s = value.to_string();
            if s.len() > 80 {
                format!("{}... ({} bytes)", &s[..40], s.len())
            } else {
                s
            }
        };
        assert_eq!(got.is_ok(), *pass, "{body} with {shown}: {got:?}");
    }
}

fn big(unit: &str) -> String {
    unit.repeat((1 << 20) / unit.len())
}

#[test]
fn equals_compares_type_and_value() {
    table(
        r#"equals = "lan""#,
        &[
            (json!("lan"), true),
            (json!("LAN"), false),
            (json!("lаn"), false), // Cyrillic а
            (json!("ｌａｎ"), false),
            (json!(" lan"), false),
            (json!("lan "), false),
            (json!("lan\n"), false),
            (json!("lan\u{200b}"), false),
            (json!(["lan"]), false),
            (json!({"lan": true}), false),
            (json!(null), false),
            (json!(1), false),
            (json!(big("lan")), false),
        ],
    );
    table(
        "equals = 1",
        &[
            (json!(1), true),
            (json!(1.0), false),
            (json!("1"), false),
            (json!(true), false),
            (json!([1]), false),
        ],
    );
    table(
        "equals = true",
        &[
            (json!(true), true),
            (json!(false), false),
            (json!("true"), false),
            (json!(1), false),
        ],
    );
    table(
        "equals = 1.5",
        &[(json!(1.5), true), (json!(1.50), true), (json!(1), false)],
    );
}

#[test]
fn one_of_and_in_set() {
    table(
        r#"one_of = ["tcp", "udp", 6]"#,
        &[
            (json!("tcp"), true),
            (json!("udp"), true),
            (json!(6), true),
            (json!("TCP"), false),
            (json!("tcp/udp"), false),
            (json!("6"), false),
            (json!(6.0), false),
            (json!(["tcp"]), false),
            (json!(null), false),
            (json!(false), false),
        ],
    );
    table(
        r#"in_set = ["lan", "opt1"]"#,
        &[
            (json!("lan"), true),
            (json!("opt1"), true),
            (json!("opt１"), false), // full-width digit
            (json!("lаn"), false),   // Cyrillic а
            (json!("Lan"), false),
            (json!("lan\t"), false),
            (json!("\u{feff}lan"), false),
            (json!(""), false),
            (json!(1), false),
            (json!(["lan", "opt1"]), false),
            (json!({"0": "lan"}), false),
            (json!(null), false),
            (json!(big("lan")), false),
        ],
    );
    let r = rule(r#"in_set = ["lan"]"#);
    assert_eq!(
        run(&r, &json!({"k": 7})),
        Err("args[0] k: must be a string".into())
    );
    assert_eq!(
        run(&r, &json!({"k": "wan"})),
        Err("args[0] k: must be one of \"lan\"".into())
    );
}

#[test]
fn regex_must_match_the_whole_string() {
    let body = r#"regex = "[A-Za-z0-9 _.-]*""#;
    let at_limit = "a".repeat(MAX_REGEX_INPUT);
    let over_limit = "a".repeat(MAX_REGEX_INPUT + 1);
    table(
        body,
        &[
            (json!("Allow web 1.0"), true),
            (json!(""), true),
            (json!(at_limit), true),
            (json!("ok\n"), false), // `$` would have matched before the newline
            (json!("a\nb"), false),
            (json!("rule;reboot"), false),
            (json!("$(reboot)"), false),
            (json!("Ünïcode"), false),
            (json!(over_limit), false),
            (json!(big("a")), false),
            (json!(5), false),
            (json!(null), false),
            (json!(["ok"]), false),
        ],
    );
    // Alternation stays inside the anchors: not `^lan|opt1$`.
    table(
        r#"pattern = "lan|opt1""#,
        &[
            (json!("lan"), true),
            (json!("opt1"), true),
            (json!("lan; reboot"), false),
            (json!("xopt1"), false),
            (json!("lanopt1"), false),
        ],
    );
    // Multi-line mode inside the pattern cannot loosen the outer anchors.
    table(
        r#"regex = "(?m)^lan$""#,
        &[(json!("lan"), true), (json!("lan\nwan"), false)],
    );
    // Alias names: ASCII only, the way OPNsense spells them.
    table(
        r#"pattern = "[A-Za-z][A-Za-z0-9_]{0,31}""#,
        &[
            (json!("web_servers"), true),
            (json!("wеb_servers"), false), // Cyrillic е
            (json!("1abc"), false),
            (json!("a".repeat(33)), false),
        ],
    );
    // (?-u:\d) is ASCII digits; full-width and Arabic-Indic digits are not.
    table(
        r#"regex = '(?-u:\d)+'"#,
        &[
            (json!("4094"), true),
            (json!("４０９４"), false),
            (json!("٤٠"), false),
        ],
    );
    let r = rule(r#"regex = "[a-z]+""#);
    assert_eq!(
        run(&r, &json!({"k": "A"})),
        Err("args[0] k: must match the pattern \"[a-z]+\"".into())
    );
    assert!(
        run(&r, &json!({"k": big("a")})).is_err_and(|e| e.contains("too long to match a pattern"))
    );
}

#[test]
fn max_length_counts_characters() {
    table(
        "max_length = 5",
        &[
            (json!(""), true),
            (json!("abcde"), true),
            (json!("ééééé"), true), // 5 characters, 10 bytes
            (json!("abcdef"), false),
            (json!("éééééé"), false),
            (json!(big("a")), false),
            (json!(5), false),
            (json!(null), false),
            (json!(["a"]), false),
        ],
    );
    table(
        r#"max_length = 4
regex = "[a-z]*""#,
        &[
            (json!("abcd"), true),
            (json!("abcde"), false),
            (json!("ABC"), false),
        ],
    );
}

#[test]
fn ranges_take_numbers_and_only_opted_in_strings() {
    table(
        "range = { min = 1, max = 4094 }",
        &[
            (json!(1), true),
            (json!(4094), true),
            (json!(1.5), true),
            (json!(0), false),
            (json!(4095), false),
            (json!(-1), false),
            (json!(1e9), false),
            (json!("100"), false),
            (json!(true), false),
            (json!(null), false),
            (json!([5]), false),
            (json!({"v": 5}), false),
        ],
    );
    table(
        "range = { min = 1, max = 4094 }\nnumeric_strings = true",
        &[
            (json!("1"), true),
            (json!("4094"), true),
            (json!("100.5"), true),
            (json!(100), true),
            (json!("4095"), false),
            (json!("0"), false),
            (json!("-0"), false),
            (json!("0100"), false),
            (json!(" 100"), false),
            (json!("100 "), false),
            (json!("+5"), false),
            (json!("1e2"), false),
            (json!("0x10"), false),
            (json!("１００"), false),
            (json!("100."), false),
            (json!(".5"), false),
            (json!(""), false),
            (json!(big("1")), false),
            (json!(null), false),
        ],
    );
    table(
        "range = { min = 0.5, max = 1.5 }",
        &[
            (json!(1), true),
            (json!(1.0), true),
            (json!(0.5), true),
            (json!(0.49), false),
            (json!(2), false),
        ],
    );
    table(
        "range = { min = 0 }",
        &[
            (json!(u64::MAX), true),
            (json!(0), true),
            (json!(i64::MIN), false),
            (json!(-0.5), false),
        ],
    );
    table(
        "range = { max = 30000 }",
        &[(json!(30000), true), (json!(30001), false)],
    );
    let r = rule("range = { min = 1, max = 7 }");
    assert_eq!(
        run(&r, &json!({"k": 9})),
        Err("args[0] k: must be between 1 and 7".into())
    );
    assert_eq!(
        run(&r, &json!({"k": false})),
        Err("args[0] k: must be a number, not a boolean".into())
    );
}

#[test]
fn required_and_forbidden() {
    let required = rule("required = true");
    for (args, pass) in [
        (json!({"k": "x"}), true),
        (json!({"k": 0}), true),
        (json!({"k": ""}), true),
        (json!({"k": []}), true),
        (json!({"k": null}), false),
        (json!({}), false),
        (json!({"K": "x"}), false),
    ] {
        assert_eq!(run(&required, &args).is_ok(), pass, "required {args}");
    }
    assert_eq!(
        required.check(None),
        ArgOutcome::Deny(Violation {
            rule: "args[0]".into(),
            path: "k".into(),
            reason: "is required".into(),
            shadow: false,
        })
    );
    let forbidden = rule("forbidden = true\nreason = \"no sudo through the gateway\"");
    for (args, pass) in [
        (json!({}), true),
        (json!({"K": true}), true),
        (json!({"k ": true}), true),
        (json!({"k": null}), false),
        (json!({"k": false}), false),
        (json!({"k": "x"}), false),
    ] {
        assert_eq!(run(&forbidden, &args).is_ok(), pass, "forbidden {args}");
    }
    assert_eq!(forbidden.check(None), ArgOutcome::Pass);
    assert_eq!(
        run(&forbidden, &json!({"k": false})),
        Err("args[0] k: no sudo through the gateway".into())
    );
}

#[test]
fn missing_keys_are_denied_unless_optional() {
    let strict = rule(r#"in_set = ["lan"]"#);
    let optional = rule("in_set = [\"lan\"]\noptional = true");
    let cases: &[(Value, bool, bool)] = &[
        // (arguments, strict passes, optional passes)
        (json!({}), false, true),
        (json!({"other": 1}), false, true),
        (json!({"k": "lan"}), true, true),
        (json!({"k": "wan"}), false, false),
        // null is a value of the wrong type, not an absent key.
        (json!({"k": null}), false, false),
    ];
    for (args, s, o) in cases {
        assert_eq!(run(&strict, args).is_ok(), *s, "strict {args}");
        assert_eq!(run(&optional, args).is_ok(), *o, "optional {args}");
    }
    assert!(matches!(strict.check(None), ArgOutcome::Deny(v) if v.reason == "is required"));
    assert_eq!(optional.check(None), ArgOutcome::Pass);
}

#[test]
fn networks() {
    table(
        r#"in_networks = ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]"#,
        &[
            (json!("10.1.2.3"), true),
            (json!("10.0.0.0/8"), true),
            (json!("10.20.0.0/16"), true),
            (json!("10.0.0.5/32"), true),
            (json!("192.168.1.7"), true),
            (json!("192.168.1.128/25"), true),
            (json!("::ffff:10.0.0.1"), true),
            (json!("::ffff:192.168.1.9"), true),
            (json!("::ffff:10.0.0.0/104"), true),
            (json!("2001:db8::1"), true),
            (json!("2001:DB8:1::/48"), true),
            // Host bits in a value: the host or the network? Denied.
            (json!("10.0.0.5/8"), false),
            (json!("192.168.1.1/24"), false),
            (json!("192.168.0.0/16"), false),
            (json!("192.168.2.1"), false),
            (json!("0.0.0.0/0"), false),
            (json!("::/0"), false),
            (json!("11.0.0.1"), false),
            (json!("::ffff:11.0.0.1"), false),
            (json!("::10.0.0.1"), false),
            (json!("2001:db9::1"), false),
            (json!("any"), false),
            (json!("lan"), false),
            (json!("LAN_NET"), false),
            (json!("!10.0.0.0/8"), false),
            (json!("10.0.0.1-10.0.0.9"), false),
            (json!("10.0.0.1,10.0.0.2"), false),
            (json!("010.0.0.1"), false),
            (json!("10.0.0.010"), false),
            (json!("fe80::1%em0"), false),
            (json!("2001:db8::1%1"), false),
            (json!(" 10.0.0.1"), false),
            (json!("10.0.0.1 "), false),
            (json!("10.0.0.1\n"), false),
            (json!("１0.0.0.1"), false),
            (json!("10.0.0.1/３2"), false),
            (json!("10.0.0.0/08"), false),
            (json!(""), false),
            (json!(big("1")), false),
            (json!(167772161), false),
            (json!(["10.0.0.1"]), false),
            (json!({"net": "10.0.0.1"}), false),
            (json!(null), false),
        ],
    );
    // IPv6 never lies inside an IPv4-only list; mapped IPv4 does.
    table(
        r#"in_networks = ["10.0.0.0/8"]"#,
        &[
            (json!("10.9.9.9"), true),
            (json!("::ffff:10.9.9.9"), true),
            (json!("::ffff:a09:909"), true),
            (json!("2001:db8::1"), false),
            (json!("::a09:909"), false),
            (json!("::/0"), false),
        ],
    );
    // A /0 in the policy allows a whole family, and only that family.
    table(
        r#"in_networks = ["0.0.0.0/0"]"#,
        &[
            (json!("0.0.0.0/0"), true),
            (json!("203.0.113.5"), true),
            (json!("::ffff:1.2.3.4"), true),
            (json!("::1"), false),
            (json!("::/0"), false),
            (json!("any"), false),
        ],
    );
    let r = rule(r#"in_networks = ["10.0.0.0/8"]"#);
    assert_eq!(
        run(&r, &json!({"k": "192.168.1.0/24"})),
        Err("args[0] k: 192.168.1.0/24 is not inside 10.0.0.0/8".into())
    );
    assert_eq!(
        run(&r, &json!({"k": "10.0.0.5/8"})),
        Err("args[0] k: has host bits set after its prefix (the network is 10.0.0.0/8)".into())
    );
    assert_eq!(
        run(&r, &json!({"k": "any"})),
        Err("args[0] k: is not an IP address or CIDR network".into())
    );
}

#[test]
fn ports() {
    table(
        r#"in_ports = ["80", 443, "8000-8080"]"#,
        &[
            (json!(80), true),
            (json!("80"), true),
            (json!(443), true),
            (json!("443"), true),
            (json!("8000-8080"), true),
            (json!("8001-8079"), true),
            (json!("8080"), true),
            (json!("8080-8080"), true),
            (json!("80,443"), true),
            (json!("80,443,8000-8010"), true),
            (json!("80,22"), false),
            (json!("80,,443"), false),
            (json!("80, 443"), false),
            (json!("80,"), false),
            (json!(","), false),
            (json!("7999-8080"), false),
            (json!("8000-8081"), false),
            (json!("1-65535"), false),
            (json!("80-70"), false),
            (json!("8080-8000"), false),
            (json!("80:80"), false),
            (json!(0), false),
            (json!("0"), false),
            (json!(65536), false),
            (json!("65536"), false),
            (json!(-1), false),
            (json!("-1"), false),
            (json!(-80), false),
            (json!(1e3), false),
            (json!(80.0), false),
            (json!("80 "), false),
            (json!(" 80"), false),
            (json!("080"), false),
            (json!("0x50"), false),
            (json!("+80"), false),
            (json!("８０"), false),
            (json!("http"), false),
            (json!("any"), false),
            (json!(""), false),
            (json!("-"), false),
            (json!(big("80,")), false),
            (json!(u64::MAX), false),
            (json!(i64::MIN), false),
            (json!(true), false),
            (json!(null), false),
            (json!([80]), false),
            (json!({"port": 80}), false),
        ],
    );
    let r = rule(r#"in_ports = [443, "8000-8080"]"#);
    assert_eq!(
        run(&r, &json!({"k": "22"})),
        Err("args[0] k: port 22 is not inside 443, 8000-8080".into())
    );
    assert_eq!(
        run(&r, &json!({"k": "0x1bb"})),
        Err("args[0] k: is not a port (1-65535), a range a-b or a comma list of them".into())
    );
    table(
        r#"in_ports = ["1-65535"]"#,
        &[
            (json!(1), true),
            (json!(65535), true),
            (json!("1-65535"), true),
            (json!(0), false),
            (json!(65536), false),
        ],
    );
}

#[test]
fn nested_and_indexed_paths() {
    let nested =
        compile("[[args]]\npath = \"rule.source.net\"\nin_networks = [\"10.0.0.0/8\"]\n").unwrap();
    let cases: &[(Value, Option<&str>)] = &[
        (json!({"rule": {"source": {"net": "10.1.1.1"}}}), None),
        (
            json!({"rule": {"source": {"net": "11.1.1.1"}}}),
            Some("not inside"),
        ),
        (json!({"rule": {"source": {}}}), Some("is required")),
        (json!({"rule": {}}), Some("is required")),
        (json!({}), Some("is required")),
        (
            json!({"rule": "x"}),
            Some("cannot be checked: rule is not an object"),
        ),
        (
            json!({"rule": null}),
            Some("cannot be checked: rule is not an object"),
        ),
        (
            json!({"rule": {"source": ["10.1.1.1"]}}),
            Some("cannot be checked: rule.source is not an object"),
        ),
        (
            json!({"rule": {"source": {"net": null}}}),
            Some("must be a string"),
        ),
        // A key with a literal dot is another key: the rule's key is missing.
        (json!({"rule.source.net": "10.1.1.1"}), Some("is required")),
    ];
    for (args, want) in cases {
        match (run(&nested, args), want) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => assert!(e.contains(w), "{args}: {e}"),
            (got, _) => panic!("{args}: {got:?}, wanted {want:?}"),
        }
    }
    // Optional covers a missing intermediate object, never a wrong-shaped one.
    let optional = compile(
        "[[args]]\npath = \"rule.source.net\"\nin_networks = [\"10.0.0.0/8\"]\noptional = true\n",
    )
    .unwrap();
    assert!(run(&optional, &json!({"rule": {}})).is_ok());
    assert!(run(&optional, &json!({})).is_ok());
    assert!(run(&optional, &json!({"rule": "x"})).is_err());
    assert!(run(&optional, &json!({"rule": {"source": 5}})).is_err());

    let indexed =
        compile("[[args]]\npath = \"hosts.1\"\nin_networks = [\"10.0.0.0/8\"]\n").unwrap();
    let cases: &[(Value, Option<&str>)] = &[
        (json!({"hosts": ["1.1.1.1", "10.0.0.1"]}), None),
        (
            json!({"hosts": ["10.0.0.1", "1.1.1.1"]}),
            Some("not inside"),
        ),
        (json!({"hosts": ["10.0.0.1"]}), Some("is required")),
        (json!({"hosts": []}), Some("is required")),
        (
            json!({"hosts": {"1": "10.0.0.1"}}),
            Some("hosts is not an array"),
        ),
        (json!({"hosts": "10.0.0.1"}), Some("hosts is not an array")),
    ];
    for (args, want) in cases {
        match (run(&indexed, args), want) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => assert!(e.contains(w), "{args}: {e}"),
            (got, _) => panic!("{args}: {got:?}, wanted {want:?}"),
        }
    }
    let deep = compile("[[args]]\npath = \"list.0.name\"\nin_set = [\"a\"]\n").unwrap();
    assert!(run(&deep, &json!({"list": [{"name": "a"}]})).is_ok());
    assert!(run(&deep, &json!({"list": [{"name": "b"}]})).is_err());
    assert!(run(&deep, &json!({"list": [["a"]]})).is_err());
}

#[test]
fn first_hard_violation_wins_and_shadows_are_collected() {
    let rules = compile(
        r#"
[[args]]
path = "a"
equals = 1
shadow = true
[[args]]
path = "b"
equals = 2
shadow = true
[[args]]
path = "c"
equals = 3
[[args]]
path = "d"
equals = 4
"#,
    )
    .unwrap();
    assert_eq!(rules.len(), 4);
    assert_eq!(
        rules.check(json!({"a": 1, "b": 2, "c": 3, "d": 4}).as_object()),
        ArgOutcome::Pass
    );
    match rules.check(json!({"a": 0, "b": 0, "c": 3, "d": 4}).as_object()) {
        ArgOutcome::ShadowOnly(v) => {
            assert_eq!(v.len(), 2);
            assert_eq!((v[0].rule.as_str(), v[0].shadow), ("args[0]", true));
            assert_eq!((v[1].rule.as_str(), v[1].path.as_str()), ("args[1]", "b"));
        }
        other => panic!("{other:?}"),
    }
    match rules.check(json!({"a": 0, "c": 0, "d": 0}).as_object()) {
        ArgOutcome::Deny(v) => {
            assert_eq!(v.rule, "args[2]");
            assert_eq!(v.path, "c");
            assert_eq!(v.reason, "must equal 3");
            assert!(!v.shadow);
        }
        other => panic!("{other:?}"),
    }
    assert!(ArgRules::default().is_empty());
    assert_eq!(ArgRules::default().check(None), ArgOutcome::Pass);
}

#[test]
fn config_errors_name_the_entry_and_its_place() {
    let cases: &[(&str, &str)] = &[
        // Host bits in the policy: an error naming the network meant, at the element.
        (
            "[[args]]\npath = \"src\"\nin_networks = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n",
            "test.toml:3:30: tools.t.args[0]: in_networks[1] \"10.0.0.1/8\" has host bits set after its prefix: write 10.0.0.0/8",
        ),
        (
            "[[args]]\npath = \"a\"\nequals = 1\n[[args]]\npath = \"src\"\nin_networks = [\"2001:db8::1/32\"]\n",
            "test.toml:6:16: tools.t.args[1]: in_networks[0] \"2001:db8::1/32\" has host bits set after its prefix: write 2001:db8::/32",
        ),
        (
            "[[args]]\npath = \"src\"\nin_networks = [\"lan_net\"]\n",
            "test.toml:3:16: tools.t.args[0]: in_networks[0] \"lan_net\" is not an IP address",
        ),
        (
            "[[args]]\npath = \"src\"\nin_networks = [\"010.0.0.0/8\"]\n",
            "test.toml:3:16:",
        ),
        (
            "[[args]]\npath = \"src\"\nin_networks = []\n",
            "test.toml:3:15: tools.t.args[0]: in_networks is empty",
        ),
        (
            "[[args]]\npath = \"p\"\nin_ports = [80, \"80,443\"]\n",
            "test.toml:3:17: tools.t.args[0]: in_ports[1] \"80,443\" is not a port",
        ),
        (
            "[[args]]\npath = \"p\"\nin_ports = [0]\n",
            "test.toml:3:13:",
        ),
        (
            "[[args]]\npath = \"p\"\nin_ports = [65536]\n",
            "in_ports[0] 65536",
        ),
        (
            "[[args]]\npath = \"p\"\nin_ports = [\"80-70\"]\n",
            "in_ports[0] \"80-70\"",
        ),
        (
            "[[args]]\npath = \"p\"\nin_ports = [true]\n",
            "in_ports[0] true",
        ),
        (
            "[[args]]\npath = \"a\"\nin_set = [\"lan\"]\nregex = \"x\"\n",
            "test.toml:1:1: tools.t.args[0]: has several checks (in_set, regex)",
        ),
        (
            "[[args]]\npath = \"a\"\nrange = { min = 1 }\nin_ports = [1]\n",
            "has several checks (range, in_ports)",
        ),
        (
            "[[args]]\npath = \"a\"\nmax_length = 3\none_of = [\"x\"]\n",
            "has several checks (one_of, max_length)",
        ),
        (
            "[[args]]\npath = \"a\"\nforbidden = true\nequals = 1\n",
            "has several checks (equals, forbidden)",
        ),
        (
            "[[args]]\npath = \"a\"\n",
            "test.toml:1:1: tools.t.args[0]: checks nothing",
        ),
        (
            "[[args]]\npath = \"a\"\noptional = true\n",
            "checks nothing",
        ),
        (
            "[[args]]\npath = \"a\"\nin_network = [\"10.0.0.0/8\"]\n",
            "test.toml:3:1: unknown field `in_network`",
        ),
        ("[[args]]\nequals = 1\n", "missing field `path`"),
        (
            "[[args]]\npath = \"\"\nequals = 1\n",
            "test.toml:2:8: tools.t.args[0]: path must be",
        ),
        (
            "[[args]]\npath = \"a..b\"\nequals = 1\n",
            "empty segment (keys are joined by single dots; a key that contains a dot cannot be addressed)",
        ),
        ("[[args]]\npath = \"a.\"\nequals = 1\n", "empty segment"),
        (
            "[[args]]\npath = \"0.a\"\nequals = 1\n",
            "starts with an index",
        ),
        (
            "[[args]]\npath = \"a.01\"\nequals = 1\n",
            "without leading zeros",
        ),
        (
            "[[args]]\npath = \"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q\"\nequals = 1\n",
            "deeper than 16",
        ),
        (
            "[[args]]\npath = \"a\"\nregex = '\\d+'\n",
            "test.toml:3:9: tools.t.args[0]: regex \"\\\\d+\" uses \\d, which would match non-ASCII look-alikes; only ASCII classes are available",
        ),
        (
            "[[args]]\npath = \"a\"\nregex = '(?i)lan'\n",
            "only ASCII classes",
        ),
        (
            "[[args]]\npath = \"a\"\nregex = '\\w'\n",
            "only ASCII classes",
        ),
        (
            "[[args]]\npath = \"a\"\nregex = '[\\p{L}]+'\n",
            "Unicode property class",
        ),
        (
            "[[args]]\npath = \"a\"\npattern = 'a)|(b'\n",
            "does not compile",
        ),
        (
            "[[args]]\npath = \"a\"\nregex = '(?x)abc # note'\n",
            "does not compile",
        ),
        (
            "[[args]]\npath = \"a\"\nregex = '(?:[a-zA-Z0-9]{1000}){100}'\n",
            "too big once compiled",
        ),
        (
            "[[args]]\npath = \"a\"\nregex = 'x'\npattern = 'x'\n",
            "test.toml:4:11: tools.t.args[0]: regex and pattern are the same check",
        ),
        (
            "[[args]]\npath = \"a\"\nrange = { min = 5, max = 1 }\n",
            "test.toml:3:9: tools.t.args[0]: range has min above max",
        ),
        (
            "[[args]]\npath = \"a\"\nrange = {}\n",
            "range needs min, max or both",
        ),
        (
            "[[args]]\npath = \"a\"\nrange = { min = \"1\" }\n",
            "range min must be an integer",
        ),
        (
            "[[args]]\npath = \"a\"\nrange = { min = nan }\n",
            "range min must be",
        ),
        (
            "[[args]]\npath = \"a\"\nrange = { low = 1 }\n",
            "unknown field `low`",
        ),
        (
            "[[args]]\npath = \"a\"\nequals = 1\nnumeric_strings = true\n",
            "test.toml:4:19: tools.t.args[0]: numeric_strings applies only to range",
        ),
        (
            "[[args]]\npath = \"a\"\nequals = [1]\n",
            "equals must be a string, integer",
        ),
        (
            "[[args]]\npath = \"a\"\nequals = 1979-05-27\n",
            "not datetime",
        ),
        ("[[args]]\npath = \"a\"\none_of = []\n", "one_of is empty"),
        (
            "[[args]]\npath = \"a\"\none_of = [1, {x = 1}]\n",
            "test.toml:3:14: tools.t.args[0]: one_of[1] must be",
        ),
        ("[[args]]\npath = \"a\"\nin_set = [1]\n", "test.toml:3:"),
        ("[[args]]\npath = \"a\"\nin_set = []\n", "in_set is empty"),
        (
            "[[args]]\npath = \"a\"\nmax_length = -1\n",
            "test.toml:3:14:",
        ),
        (
            "[[args]]\npath = \"a\"\nrequired = false\n",
            "write optional = true",
        ),
        (
            "[[args]]\npath = \"a\"\nforbidden = false\n",
            "forbidden = false checks nothing",
        ),
        (
            "[[args]]\npath = \"a\"\nrequired = true\noptional = true\n",
            "test.toml:4:12: tools.t.args[0]: optional = true contradicts",
        ),
        (
            "[[args]]\npath = \"a\"\nforbidden = true\noptional = true\n",
            "optional = true contradicts",
        ),
        (
            "[[args]]\npath = \"a\"\nforbidden = true\nrequired = true\n",
            "keep one",
        ),
        (
            "[[args]]\npath = \"a\"\nequals = 1\nreason = \" \"\n",
            "reason must be",
        ),
        (
            "[[args]]\npath = \"a\"\nequals = 1\nshadow = \"yes\"\n",
            "test.toml:4:10:",
        ),
    ];
    for (text, want) in cases {
        match compile(text) {
            Ok(_) => panic!("{text:?} compiled"),
            Err(e) => {
                assert!(e.contains(want), "{text:?}\n got: {e}\nwant: {want}");
                assert!(e.starts_with("test.toml"), "{e}");
            }
        }
    }
}

#[test]
fn every_kind_compiles() {
    let rules = compile(
        r#"
[[args]]
path = "interface"
in_set = ["lan", "opt1"]
[[args]]
path = "protocol"
one_of = ["tcp", "udp", "tcp/udp"]
[[args]]
path = "source"
in_networks = ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "0.0.0.0/0", "::/0", "10.0.0.1"]
[[args]]
path = "destinationPort"
in_ports = ["80", 443, "8000-8080"]
optional = true
[[args]]
path = "description"
max_length = 64
regex = "[A-Za-z0-9 _.-]*"
reason = "descriptions are short plain text"
[[args]]
path = "tag"
range = { min = 1, max = 4094 }
numeric_strings = true
[[args]]
path = "sudo"
forbidden = true
shadow = true
[[args]]
path = "uuid"
pattern = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
optional = true
[[args]]
path = "enabled"
equals = "1"
optional = true
[[args]]
path = "target"
required = true
"#,
    )
    .unwrap();
    assert_eq!(rules.len(), 10);
    let good = json!({
        "interface": "lan", "protocol": "tcp", "source": "10.0.6.0/24",
        "destinationPort": "443", "description": "Allow web", "tag": "6",
        "target": "10.0.6.10",
    });
    assert_eq!(rules.check(good.as_object()), ArgOutcome::Pass);
    let mut bad = good.clone();
    bad["description"] = json!("x; reboot");
    match rules.check(bad.as_object()) {
        ArgOutcome::Deny(v) => {
            assert_eq!(v.rule, "args[4]");
            assert_eq!(v.reason, "descriptions are short plain text");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unicode_constructs_are_found_wherever_they_hide() {
    use super::unicode_construct as u;
    for p in [
        r"\d",
        r"a\w",
        r"[\s]",
        r"\bx",
        r"\D",
        r"(?i)lan",
        r"(?im)x",
        r"(?-u:a)\d",
        r"(?-u)(?u)\d",
        r"\p{L}",
    ] {
        assert!(u(p).is_some(), "{p}");
    }
    for p in [
        r"[0-9]+",
        r"\\d",
        r"(?-u:\d)+",
        r"(?-u)\d\w",
        r"(?-u:(?i)lan)",
        r"a\.b",
        r"(?:lan|opt[0-9])",
    ] {
        assert_eq!(u(p), None, "{p}");
    }
}
