//! Property tests on the three entry points the fuzz targets (`fuzz/`) drive, on the stable
//! toolchain and a bounded number of generated cases: the strict message parser (with
//! `subject_of`), policy decisions on tool arguments, and the config parser; and on the
//! filter that joins upstream list pages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use mcpgw::config::{self, Config};
use mcpgw::identity::Identity;
use mcpgw::mcp::message::{self, Message, PARSE_ERROR};
use mcpgw::mcp::subject::{Subject, subject_of};
use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use serde_json::{Map, Value, json};

const CASES: u32 = 2000;

fn pt() -> PtConfig {
    PtConfig {
        cases: CASES,
        failure_persistence: None,
        ..PtConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z_]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{0,8}|\\PC{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tools/call".to_string()),
        Just("tools/list".to_string()),
        Just("prompts/get".to_string()),
        Just("resources/read".to_string()),
        Just("completion/complete".to_string()),
        Just("initialize".to_string()),
        Just("notifications/cancelled".to_string()),
        "\\PC{0,12}",
    ]
}

fn id() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        any::<i64>().prop_map(|i| Some(json!(i))),
        any::<u64>().prop_map(|u| Some(json!(u))),
        any::<String>().prop_map(|s| Some(json!(s))),
        Just(Some(Value::Null)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number)),
    ]
}

/// A message-shaped value: mostly valid, sometimes not.
fn message_value() -> impl Strategy<Value = Value> {
    (
        id(),
        method(),
        prop::option::of(json_value()),
        "[a-z_]{1,24}",
        prop::option::of(json_value()),
        0u8..6,
    )
        .prop_map(|(id, method, params, name, args, shape)| {
            let mut m = Map::new();
            m.insert("jsonrpc".into(), json!("2.0"));
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            match shape {
                // A response.
                0 => {
                    m.insert("result".into(), params.unwrap_or(json!({})));
                }
                // A tools/call with a name and arguments.
                1 | 2 => {
                    m.insert("method".into(), json!("tools/call"));
                    let mut p = Map::new();
                    p.insert("name".into(), json!(name));
                    if let Some(a) = args {
                        p.insert("arguments".into(), a);
                    }
                    m.insert("params".into(), Value::Object(p));
                }
                _ => {
                    m.insert("method".into(), json!(method));
                    if let Some(p) = params {
                        m.insert("params".into(), p);
                    }
                }
            }
            Value::Object(m)
        })
}

/// `key` as JSON string text, each character either literal or `\uXXXX` as `escape` says.
fn spell(key: &str, escape: &[bool]) -> String {
    let mut out = String::from("\"");
    for (i, c) in key.chars().enumerate() {
        if escape.get(i).copied().unwrap_or(false) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// The policy with argument rules.

const CONFIG: &str = r#"
[listen]
address = "127.0.0.1:0"
plaintext = true

[upstream]
command = "/bin/true"

[[identity]]
name = "agent"
token_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]

[policy]
default = "deny"

[policy.tools.firewall_create_rule]
action = "allow"
[[policy.tools.firewall_create_rule.args]]
path = "source"
in_networks = ["10.0.0.0/8", "2001:db8::/32"]
[[policy.tools.firewall_create_rule.args]]
path = "port"
in_ports = ["443", "8000-8080"]
"#;

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| {
        config::parse(Path::new("/nonexistent/mcpgw.toml"), CONFIG).expect("the test config")
    })
}

/// Reference: `text` is an address or network that lies inside 10.0.0.0/8 or 2001:db8::/32.
fn source_inside(text: &str) -> bool {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => {
            let Ok(len) = l.parse::<u8>() else {
                return false;
            };
            if !l.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            (a, Some(len))
        }
        None => (text, None),
    };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let len = len.unwrap_or(32);
            (8..=32).contains(&len) && v4.octets()[0] == 10
        }
        // IPv4-mapped (`::ffff:a.b.c.d/96+n`) is the IPv4 network by design (policy::args::net).
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() && len.unwrap_or(128) >= 96 => {
            let len = len.unwrap_or(128) - 96;
            (8..=32).contains(&len) && v6.to_ipv4_mapped().is_some_and(|v4| v4.octets()[0] == 10)
        }
        Ok(IpAddr::V6(v6)) => {
            let len = len.unwrap_or(128);
            (32..=128).contains(&len) && v6.segments()[..2] == [0x2001, 0x0db8]
        }
        Err(_) => false,
    }
}

fn port_inside(p: u64) -> bool {
    p == 443 || (8000..=8080).contains(&p)
}

/// Reference: the port value is a port or `a-b` range inside 443 or 8000-8080 (a comma list
/// when every element is).
fn ports_inside(v: &Value) -> bool {
    let decimal = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match v {
        Value::Number(n) => n.as_u64().is_some_and(port_inside),
        Value::String(s) => s.split(',').all(|part| match part.split_once('-') {
            None => decimal(part).is_some_and(port_inside),
            Some((a, b)) => match (decimal(a), decimal(b)) {
                (Some(a), Some(b)) => {
                    a <= b && ((a == 443 && b == 443) || (a >= 8000 && b <= 8080))
                }
                _ => false,
            },
        }),
        _ => false,
    }
}

fn source_value() -> impl Strategy<Value = Value> {
    let v4 = (any::<[u8; 4]>(), prop::option::of(0u8..40)).prop_map(|(o, len)| {
        let a = Ipv4Addr::from(o);
        match len {
            Some(l) => format!("{a}/{l}"),
            None => a.to_string(),
        }
    });
    let v4_ten = (any::<[u8; 3]>(), prop::option::of(0u8..40)).prop_map(|(o, len)| {
        let a = Ipv4Addr::new(10, o[0], o[1], o[2]);
        match len {
            Some(l) => format!("{a}/{l}"),
            None => a.to_string(),
        }
    });
    let v6 = (any::<[u16; 8]>(), any::<bool>(), prop::option::of(0u8..140)).prop_map(
        |(mut s, near, len)| {
            if near {
                s[0] = 0x2001;
                s[1] = 0x0db8 ^ (s[1] & 1);
            }
            let a = Ipv6Addr::from(s);
            match len {
                Some(l) => format!("{a}/{l}"),
                None => a.to_string(),
            }
        },
    );
    prop_oneof![
        3 => v4_ten.prop_map(Value::String),
        2 => v4.prop_map(Value::String),
        2 => v6.prop_map(Value::String),
        1 => "[0-9a-fA-F:./ x%-]{0,24}".prop_map(Value::String),
        1 => "(10|010|0x0a|::ffff:10)\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,2})?( |\n)?"
            .prop_map(Value::String),
        1 => json_leaf(),
        1 => prop::collection::vec("[0-9./]{0,12}".prop_map(Value::String), 0..3).prop_map(Value::Array),
    ]
}

fn port_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => (0u64..70000).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        2 => "[0-9]{1,5}(-[0-9]{1,5})?(,[0-9]{1,5}(-[0-9]{1,5})?){0,2}".prop_map(Value::String),
        1 => "(443|8000|8080|0443|\\+443| 443|443 |443\\.0|4e2|0x1bb|８０８０)".prop_map(Value::String),
        1 => json_leaf(),
    ]
}

/// Equal values, except that two non-integer numbers may differ in the last bit: serde_json
/// (without its `float_roundtrip` feature) parses some decimal texts 1 ULP off the correctly
/// rounded value, so its own shortest output does not always read back to the same bits.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 1)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

/// `m` re-serialized by `to_value` parses back to the same message (see [`same`]).
fn round_trips(m: &Message) -> Result<(), String> {
    let canonical = m.to_value().to_string();
    match message::parse(canonical.as_bytes()) {
        Ok(again)
            if std::mem::discriminant(&again) == std::mem::discriminant(m)
                && same(&again.to_value(), &m.to_value()) =>
        {
            Ok(())
        }
        other => Err(format!("{m:?} re-parsed as {other:?}")),
    }
}

/// The names the list-filter property's policy keeps.
fn kept_name(name: &str) -> bool {
    name.starts_with('a') || name == "cd"
}

/// One list entry as the upstream might write it, and whether the filter must keep it: an
/// object with exactly one `name` (its key or value possibly escaped) that [`kept_name`]
/// accepts. Repeated names and other values are never kept.
fn list_entry() -> impl Strategy<Value = (String, bool)> {
    let named = (
        "[a-d]{1,2}",
        any::<bool>(),
        any::<bool>(),
        prop::option::of("[a-d]{1,2}"),
        json_value(),
    )
        .prop_map(|(name, escape_key, escape_value, again, extra)| {
            let key = if escape_key {
                r#""n\u0061me""#
            } else {
                r#""name""#
            };
            let value = if escape_value {
                let escaped: String = name
                    .chars()
                    .map(|c| format!("\\u{:04x}", c as u32))
                    .collect();
                format!("\"{escaped}\"")
            } else {
                Value::from(name.as_str()).to_string()
            };
            // A second `name`, however spelled, makes the entry ambiguous.
            let repeated = again
                .as_ref()
                .map(|n| format!(r#","name":"{n}""#))
                .unwrap_or_default();
            let keep = again.is_none() && kept_name(&name);
            (format!(r#"{{{key}:{value}{repeated},"x":{extra}}}"#), keep)
        });
    let anything = json_value().prop_map(|v| {
        let keep = v.get("name").and_then(Value::as_str).is_some_and(kept_name);
        (v.to_string(), keep)
    });
    prop_oneof![4 => named, 1 => anything]
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(pt())]

    /// Arbitrary bytes: never a panic; whatever is accepted re-serializes to itself.
    #[test]
    fn parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = message::parse(&body) {
            prop_assert_eq!(round_trips(&m), Ok(()));
        }
        let _ = message::id_of(&body);
    }

    /// Message-shaped values: accepted ones round-trip through `to_value`, and `subject_of`
    /// and `decide` never panic on them.
    #[test]
    fn accepted_messages_round_trip(v in message_value()) {
        let text = v.to_string();
        if let Ok(m) = message::parse(text.as_bytes()) {
            prop_assert_eq!(round_trips(&m), Ok(()));
            if let Some(method) = m.method()
                && let Ok(subject) = subject_of(method, m.params())
            {
                let _ = config().policy.decide(&Identity::named("agent"), &subject);
            }
        }
    }

    /// A repeated key, at the top, in params, in arguments or deeper, however escaped, is
    /// never accepted.
    #[test]
    fn duplicate_keys_are_never_accepted(
        key in "[a-zA-Z_]{1,8}|\\PC{1,4}",
        first in json_leaf(),
        second in json_leaf(),
        escape in prop::collection::vec(any::<bool>(), 0..8),
        level in 0u8..4,
    ) {
        let a = spell(&key, &[]);
        let b = spell(&key, &escape);
        let pair = format!("{a}:{first},{b}:{second}");
        let body = match level {
            // Top level: the key itself may be a member name.
            0 => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call",{pair},"params":{{"name":"x"}}}}"#),
            1 => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x",{pair}}}}}"#),
            2 => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{{pair}}}}}}}"#),
            _ => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"a":[1,{{"b":{{{pair}}}}}]}}}}}}"#),
        };
        let r = message::parse(body.as_bytes());
        prop_assert!(r.is_err(), "accepted {}", body);
        // Where the pair itself is well-formed, the refusal is the duplicate.
        if let Err(e) = r {
            prop_assert_eq!(e.code, PARSE_ERROR, "{}: {}", body, e.message);
            prop_assert!(e.message.contains("duplicate key"), "{}: {}", body, e.message);
        }
    }

    /// Allowed calls carry only a source inside the networks and a port inside the ports.
    #[test]
    fn argument_rules_never_allow_outside_values(
        source in source_value(),
        port in port_value(),
        drop_source in any::<bool>(),
        drop_port in any::<bool>(),
    ) {
        let mut args = Map::new();
        if !drop_source {
            args.insert("source".into(), source.clone());
        }
        if !drop_port {
            args.insert("port".into(), port.clone());
        }
        let subject = Subject::Tool { name: "firewall_create_rule", arguments: Some(&args) };
        let decision = config().policy.decide(&Identity::named("agent"), &subject);
        if decision.is_allow() {
            prop_assert!(!drop_source && !drop_port, "allowed without a required key: {:?}", args);
            prop_assert!(
                source.as_str().is_some_and(source_inside),
                "allowed source {} outside 10.0.0.0/8 and 2001:db8::/32", source
            );
            prop_assert!(ports_inside(&port), "allowed port {} outside 443, 8000-8080", port);
        }
    }

    /// Arbitrary argument bytes: whatever parses as an object is decided without a panic.
    #[test]
    fn decide_never_panics_on_argument_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(Value::Object(args)) = serde_json::from_slice::<Value>(&bytes) {
            let subject = Subject::Tool { name: "firewall_create_rule", arguments: Some(&args) };
            let _ = config().policy.decide(&Identity::named("agent"), &subject);
        }
    }

    /// Config text: never a panic, for arbitrary text and for mutations of a valid config.
    #[test]
    fn config_parse_never_panics(
        text in "\\PC{0,256}",
        cut in 0usize..2000,
        insert in "[\\[\\]{}=\"., a-z0-9_\n-]{0,16}",
    ) {
        let _ = config::parse(Path::new("/nonexistent/mcpgw.toml"), &text);
        let mut mutated = CONFIG.to_string();
        let mut at = cut % (mutated.len() + 1);
        while !mutated.is_char_boundary(at) {
            at -= 1;
        }
        mutated.insert_str(at, &insert);
        let _ = config::parse(Path::new("/nonexistent/mcpgw.toml"), &mutated);
    }
}

proptest! {
    // Each case builds and checks whole pages: fewer cases keep it within a second or two.
    #![proptest_config(PtConfig { cases: 256, ..pt() })]

    /// List pages of arbitrary entries (objects with and without a name, escaped names and
    /// values, repeated names, other values): the joined result is JSON, lists exactly the
    /// entries whose one name the policy keeps, each as the upstream wrote it, in order, and
    /// accounts for every other entry.
    #[test]
    fn filtered_lists_hold_only_kept_entries(
        pages in prop::collection::vec(prop::collection::vec(list_entry(), 0..6), 1..4),
        other in json_value(),
    ) {
        use mcpgw::mcp::filter::{ListKind, Page, join_and_filter};
        use serde_json::value::RawValue;
        let raws: Vec<Box<RawValue>> = pages
            .iter()
            .map(|entries| {
                let texts: Vec<&str> = entries.iter().map(|(t, _)| t.as_str()).collect();
                let text = format!(r#"{{"tools":[{}],"other":{other},"nextCursor":"n"}}"#, texts.join(","));
                RawValue::from_string(text).expect("a generated page is JSON")
            })
            .collect();
        let read: Vec<Page<'_>> = raws
            .iter()
            .map(|r| Page::read(r).expect("readable").expect("an object"))
            .collect();
        let (text, removed) = join_and_filter(ListKind::Tools, &read, true, kept_name).expect("pages");
        let joined: std::collections::BTreeMap<String, &RawValue> =
            serde_json::from_str(&text).expect("the result is a JSON object");
        prop_assert!(!joined.contains_key("nextCursor"));
        let joined_other: Value = serde_json::from_str(joined["other"].get()).expect("JSON");
        prop_assert_eq!(&joined_other, &other);
        let listed: Vec<&str> = serde_json::from_str::<Vec<&RawValue>>(joined["tools"].get())
            .expect("a list")
            .into_iter()
            .map(RawValue::get)
            .collect();
        let expected: Vec<&str> = pages
            .iter()
            .flatten()
            .filter(|(_, keep)| *keep)
            .map(|(t, _)| t.as_str())
            .collect();
        prop_assert_eq!(&listed, &expected, "{}", text);
        let total: usize = pages.iter().map(Vec::len).sum();
        prop_assert_eq!(removed, total - expected.len());
    }
}

/// The reference checks are not vacuous: known values fall on the expected side.
#[test]
fn reference_checks_and_policy_agree_on_known_values() {
    let decide = |args: Value| {
        let Value::Object(args) = args else {
            unreachable!()
        };
        let subject = Subject::Tool {
            name: "firewall_create_rule",
            arguments: Some(&args),
        };
        config()
            .policy
            .decide(&Identity::named("agent"), &subject)
            .is_allow()
    };
    assert!(decide(json!({"source": "10.1.0.0/16", "port": 443})));
    assert!(decide(
        json!({"source": "2001:db8::1", "port": "8000-8080"})
    ));
    assert!(!decide(json!({"source": "11.0.0.0/8", "port": 443})));
    assert!(!decide(json!({"source": "10.0.0.0/8", "port": 22})));
    assert!(source_inside("10.1.0.0/16") && !source_inside("0.0.0.0/0"));
    assert!(ports_inside(&json!("443,8000-8001")) && !ports_inside(&json!("443,22")));
    assert!(source_inside("::ffff:10.0.0.0/104") && !source_inside("::ffff:10.0.0.0/95"));
    let m = message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).expect("ping");
    assert!(matches!(m, Message::Request { .. }));
    assert_eq!(round_trips(&m), Ok(()));
    // `same` is not vacuous: integers and strings must match exactly.
    assert!(!same(&json!(1), &json!(2)) && !same(&json!(1.5), &json!(2.5)));
}
