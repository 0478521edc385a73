//! PolicyLayer's `policy.json`, read as is and turned into our `[policy]` rules.
//!
//! Their format: `{"version": "1", "default": "allow"|"deny", "hide": [names],
//! "tools": {NAME: {"action": "allow"|"deny"|"hide", "reason": TEXT, "limits": [{"counter":
//! NAME, "window": "second"|"minute"|"hour"|"day", "max": N, "scope": "grant"|"global"}]}}}`.
//! A tool named with limits but no action is allowed within them, as their page describes.
//! Every field we do not know is an error naming it: a policy we only half understood must
//! not be enforced as if we understood it all.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::limits::{Scope, Window};
use super::{Action, DefaultAction, LimitSection, PolicySection, ToolSection};
use crate::config::{ConfigError, SourceMap};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: String,
    #[serde(default)]
    default: Option<DefaultAction>,
    #[serde(default)]
    hide: Vec<String>,
    #[serde(default)]
    tools: BTreeMap<String, ToolEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolEntry {
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    limits: Vec<LimitEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitEntry {
    #[serde(default)]
    counter: Option<String>,
    window: Window,
    max: u32,
    #[serde(default)]
    scope: Option<Scope>,
}

/// Reads a PolicyLayer policy.json into a `[policy]` section.
pub fn parse(map: &SourceMap) -> Result<PolicySection, ConfigError> {
    let file: PolicyFile = serde_json::from_str(map.text).map_err(|e| ConfigError {
        file: map.file.to_path_buf(),
        position: (e.line() > 0).then(|| (e.line(), e.column())),
        message: format!("not a PolicyLayer policy: {e}"),
    })?;
    if file.version != "1" {
        return Err(map.error(
            None,
            format!(
                "PolicyLayer policy version {:?} is not supported (only \"1\")",
                file.version
            ),
        ));
    }
    // JSON values carry no spans through this conversion; errors point at the file.
    let spanned = |v| Spanned::new(0..0, v);
    Ok(PolicySection {
        file: None,
        default: file.default,
        default_reason: None,
        hide: file.hide.into_iter().map(spanned).collect(),
        tools: file
            .tools
            .into_iter()
            .map(|(name, t)| {
                let limits = t
                    .limits
                    .into_iter()
                    .map(|l| {
                        Spanned::new(
                            0..0,
                            LimitSection {
                                max: l.max,
                                per: l.window,
                                scope: l.scope,
                                counter: l.counter,
                            },
                        )
                    })
                    .collect();
                (
                    name,
                    Spanned::new(
                        0..0,
                        ToolSection {
                            action: t.action,
                            reason: t.reason,
                            limits,
                            args: Vec::new(),
                        },
                    ),
                )
            })
            .collect(),
    })
}
