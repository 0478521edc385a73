//! Policy decisions with argument rules, over arbitrary JSON argument bytes: never a panic,
//! and an allowed call's port is one the rule lists.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcpgw::config::{self, Config};
use mcpgw::identity::Identity;
use mcpgw::mcp::subject::Subject;
use serde_json::Value;

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
in_ports = [443]
[[policy.tools.firewall_create_rule.args]]
path = "rule.description"
regex = "[A-Za-z0-9 _.-]*"
max_length = 64
optional = true
[[policy.tools.firewall_create_rule.args]]
path = "rule.vlan"
range = { min = 1, max = 4094 }
numeric_strings = true
optional = true
[[policy.tools.firewall_create_rule.args]]
path = "interface"
in_set = ["lan", "opt1"]
optional = true
"#;

fn config() -> &'static Config {
    static CELL: OnceLock<Config> = OnceLock::new();
    CELL.get_or_init(|| {
        config::parse(Path::new("/nonexistent/mcpgw.toml"), CONFIG).expect("fuzz config")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(Value::Object(args)) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let subject = Subject::Tool {
        name: "firewall_create_rule",
        arguments: Some(&args),
    };
    let decision = config().policy.decide(&Identity::named("agent"), &subject);
    if decision.is_allow() {
        let port = &args["port"];
        assert!(
            port == &Value::from(443) || port == &Value::from("443"),
            "allowed port {port}"
        );
    }
});
