//! The built-in catalogue of the OPNsense MCP server's tools, with a risk class for each.
//!
//! `data/opnsense-mcp-tools.json` is our copy of the catalogue (names, schemas, risk classes
//! of vespo92/OPNSenseMCP's 144 exposed tools plus the ones it defines but does not expose).
//! It is compiled into the binary so `mcpgw check` can name unknown tools without any file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Deserialize;

/// The catalogue JSON as shipped.
pub const CATALOGUE_JSON: &str = include_str!("../data/opnsense-mcp-tools.json");

/// How much harm a tool can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Read,
    Write,
    Execute,
    Destructive,
}

#[derive(Deserialize)]
struct Catalogue {
    tools: Vec<Entry>,
    #[serde(default)]
    unexposed: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    risk: Risk,
}

fn table() -> &'static BTreeMap<String, Risk> {
    static TABLE: OnceLock<BTreeMap<String, Risk>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The file is ours and checked by a test; an unreadable copy yields an empty table.
        serde_json::from_str::<Catalogue>(CATALOGUE_JSON)
            .map(|c| {
                c.tools
                    .into_iter()
                    .chain(c.unexposed)
                    .map(|e| (e.name, e.risk))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Every tool name the catalogue knows (exposed and unexposed).
pub fn tool_names() -> BTreeSet<&'static str> {
    table().keys().map(String::as_str).collect()
}

/// The risk class of a known tool.
pub fn risk_of(name: &str) -> Option<Risk> {
    table().get(name).copied()
}

/// The catalogue name closest to `name` (edit distance at most a third of its length).
pub fn nearest(name: &str) -> Option<&'static str> {
    let limit = (name.chars().count() / 3).max(2);
    table()
        .keys()
        .map(|k| (edit_distance(name, k), k.as_str()))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_loads_with_its_counts() {
        let names = tool_names();
        assert_eq!(names.len(), 144 + 56);
        assert_eq!(risk_of("openvpn_disconnect_client"), Some(Risk::Execute));
        assert_eq!(risk_of("firewall_list_rules"), Some(Risk::Read));
        assert_eq!(risk_of("firewall_delete_rule"), Some(Risk::Destructive));
        assert_eq!(risk_of("no_such_tool"), None);
    }

    #[test]
    fn nearest_finds_typos() {
        assert_eq!(
            nearest("openvpn_disconect_client"),
            Some("openvpn_disconnect_client")
        );
        assert_eq!(nearest("zzzzzzzzzzzzzzzz"), None);
    }
}
