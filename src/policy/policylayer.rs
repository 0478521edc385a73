//! PolicyLayer's `policy.json`, read as is and turned into our `[policy]` rules.
//!
//! Their format (version "1"):
//!
//! ```json
//! {"version": "1", "default": "deny", "hide": ["delete_account"],
//!  "all_tools": {"limits": [...]},
//!  "tools": {"NAME": {"action": "deny", "reason": "...", "require": [], "deny_if": [],
//!                     "limits": [{"counter": "c", "window": "minute", "max": 10, "scope": "grant"}]}}}
//! ```
//!
//! A tool named with `{}` or only limits is allowed (within them), as their documentation
//! says; `hide: ["*"]` hides everything; `window` is `second|minute|hour|day` or a number of
//! seconds equal to one of those. Every field we do not know — and argument conditions
//! (`require`, `deny_if`) that are not empty, whose grammar we do not implement — is an error
//! naming the field: a policy we only half understood must never be enforced as if we
//! understood it all.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::limits::{Scope, Window};
use super::{Action, AllToolsSection, DefaultAction, LimitSection, PolicySection, ToolSection};
use crate::config::{ConfigError, SourceMap};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: String,
    default: DefaultAction,
    #[serde(default)]
    hide: Vec<String>,
    #[serde(default)]
    all_tools: Option<AllTools>,
    #[serde(default)]
    tools: BTreeMap<String, ToolEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllTools {
    #[serde(default)]
    limits: Vec<LimitEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolEntry {
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    require: Vec<Value>,
    #[serde(default)]
    deny_if: Vec<Value>,
    #[serde(default)]
    limits: Vec<LimitEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitEntry {
    #[serde(default)]
    counter: Option<String>,
    window: WindowValue,
    max: u32,
    #[serde(default)]
    scope: Option<Scope>,
}

/// `"minute"` or `60`.
#[derive(Deserialize)]
#[serde(untagged)]
enum WindowValue {
    Name(Window),
    Seconds(u64),
}

/// Reads a PolicyLayer policy.json into a `[policy]` section.
pub fn parse(map: &SourceMap) -> Result<PolicySection, ConfigError> {
    let file: PolicyFile = serde_json::from_str(map.text).map_err(|e| ConfigError {
        file: map.file.to_path_buf(),
        position: (e.line() > 0).then(|| (e.line(), e.column())),
        message: format!("not a PolicyLayer policy: {e}"),
    })?;
    let err = |m: String| map.error(None, m);
    if file.version != "1" {
        return Err(err(format!(
            "PolicyLayer policy version {:?} is not supported (only \"1\")",
            file.version
        )));
    }
    let limits = |owner: &str,
                  entries: Vec<LimitEntry>|
     -> Result<Vec<Spanned<LimitSection>>, ConfigError> {
        entries
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let per = match l.window {
                    WindowValue::Name(w) => w,
                    WindowValue::Seconds(1) => Window::Second,
                    WindowValue::Seconds(60) => Window::Minute,
                    WindowValue::Seconds(3600) => Window::Hour,
                    WindowValue::Seconds(86_400) => Window::Day,
                    WindowValue::Seconds(n) => {
                        return Err(err(format!(
                            "{owner}.limits[{i}].window = {n}: only 1, 60, 3600 or 86400 seconds (second, minute, hour, day) are supported"
                        )));
                    }
                };
                Ok(Spanned::new(
                    0..0,
                    LimitSection {
                        max: l.max,
                        per,
                        scope: l.scope,
                        counter: l.counter,
                    },
                ))
            })
            .collect()
    };
    let mut tools = BTreeMap::new();
    for (name, t) in file.tools {
        let owner = format!("tools.{name}");
        if !t.require.is_empty() {
            return Err(err(format!(
                "{owner}.require: PolicyLayer argument conditions are not supported; write them as mcpgw argument rules"
            )));
        }
        if !t.deny_if.is_empty() {
            return Err(err(format!(
                "{owner}.deny_if: PolicyLayer argument conditions are not supported; write them as mcpgw argument rules"
            )));
        }
        let section = ToolSection {
            action: t.action,
            reason: t.reason,
            limits: limits(&owner, t.limits)?,
            shadow: false,
            args: Vec::new(),
        };
        tools.insert(name, Spanned::new(0..0, section));
    }
    let all_tools = match file.all_tools {
        Some(a) => Some(AllToolsSection {
            limits: limits("all_tools", a.limits)?,
        }),
        None => None,
    };
    Ok(PolicySection {
        default: Some(file.default),
        // PolicyLayer's default covers every tool, known to our catalogue or not.
        unknown_tools: Some(file.default),
        hide: file
            .hide
            .into_iter()
            .map(|h| Spanned::new(0..0, h))
            .collect(),
        all_tools,
        tools,
        ..PolicySection::default()
    })
}

/// Reads a PolicyLayer policy.json and writes the same policy as native mcpgw TOML (for
/// `mcpgw import policylayer FILE`).
pub fn import(map: &SourceMap) -> Result<String, ConfigError> {
    let section = parse(map)?;
    Ok(to_toml(&section, map.file))
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        quote(s)
    }
}

fn limits_toml(limits: &[Spanned<LimitSection>]) -> String {
    let items: Vec<String> = limits
        .iter()
        .map(|l| {
            let l = l.get_ref();
            let mut s = format!("{{ max = {}, per = {}", l.max, quote(l.per.as_str()));
            if let Some(scope) = l.scope {
                s += &format!(", scope = {}", quote(scope.as_str()));
            }
            if let Some(c) = &l.counter {
                s += &format!(", counter = {}", quote(c));
            }
            s + " }"
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn to_toml(section: &PolicySection, from: &std::path::Path) -> String {
    let mut out = format!(
        "# Imported from PolicyLayer policy {} by `mcpgw import policylayer`.\n[policy]\n",
        from.display()
    );
    if let Some(d) = section.default {
        out += &format!("default = {}\n", quote(d.as_str()));
    }
    if let Some(u) = section.unknown_tools {
        out += &format!(
            "# PolicyLayer's default also covers tools mcpgw's catalogue does not know.\nunknown_tools = {}\n",
            quote(u.as_str())
        );
    }
    if !section.hide.is_empty() {
        let names: Vec<String> = section.hide.iter().map(|h| quote(h.get_ref())).collect();
        out += &format!("hide = [{}]\n", names.join(", "));
    }
    if let Some(all) = section.all_tools.as_ref().filter(|a| !a.limits.is_empty()) {
        out += &format!(
            "\n[policy.all_tools]\nlimits = {}\n",
            limits_toml(&all.limits)
        );
    }
    for (name, tool) in &section.tools {
        let tool = tool.get_ref();
        out += &format!("\n[policy.tools.{}]\n", key(name));
        out += &format!(
            "action = {}\n",
            quote(tool.action.unwrap_or(Action::Allow).as_str())
        );
        if let Some(reason) = &tool.reason {
            out += &format!("reason = {}\n", quote(reason));
        }
        if !tool.limits.is_empty() {
            out += &format!("limits = {}\n", limits_toml(&tool.limits));
        }
    }
    out
}
