//! The policy: which identity may do what, decided by a pure function.
//!
//! [`Policy::decide`] takes an [`Identity`] and a [`Subject`] and returns a [`Decision`]. It
//! does no I/O and knows nothing of HTTP, TLS or processes; the only state it touches is the
//! token buckets of its rate limits (governor), which it owns. That keeps every rule
//! table-testable and the cost of one decision measurable on its own.
//!
//! A policy comes from the `[policy]` table of mcpgw.toml, or from a file it names: native TOML
//! or a PolicyLayer `policy.json` (see [`policylayer`]). Both compile to the same rules:
//!
//! * `default`: what happens to a tool no rule names (`deny` unless set). Tools denied by the
//!   default are also left out of `tools/list`, so an agent sees only what it may use.
//! * per tool: `allow`, `deny` with a reason (the tool stays visible and the agent is told
//!   why), or `hide` (the tool disappears and calling it looks like calling a tool that does
//!   not exist).
//! * per tool limits: token buckets of `max` calls `per` second, minute, hour or day, counted
//!   per identity (`scope = "identity"`, PolicyLayer's `grant`) or for everyone (`global`).
//! * per tool argument rules (`[[policy.tools.NAME.args]]`, see [`args`]): an interface in a
//!   set, an address inside a network, a port in a range... checked before limits, so a call
//!   denied for its arguments never uses up a rate-limit cell.

pub mod args;
pub mod limits;
pub mod policylayer;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, SourceMap};
use crate::identity::Identity;
use crate::mcp::subject::Subject;
use limits::{LimitSpec, Limiter, Scope, Window};

/// The name of the rule behind a decision, as written in the log (`tools.NAME`, `default`, ...).
pub type RuleName = Arc<str>;

/// What the policy says about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward it.
    Allow { rule: RuleName },
    /// Refuse it. `visible` says whether the caller may know the tool exists: a tool denied by
    /// the default is not, so the refusal reads like an unknown tool.
    Deny {
        rule: RuleName,
        reason: Arc<str>,
        visible: bool,
    },
    /// The tool is hidden: answer as if it did not exist.
    Hide { rule: RuleName },
    /// Over a rate limit; the next call can succeed after `retry_after`.
    Limited {
        rule: RuleName,
        retry_after: Duration,
    },
}

impl Decision {
    pub fn rule(&self) -> &str {
        match self {
            Decision::Allow { rule }
            | Decision::Deny { rule, .. }
            | Decision::Hide { rule }
            | Decision::Limited { rule, .. } => rule,
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// What a rule does with a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    Hide,
}

/// `default = "allow" | "deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    Allow,
    Deny,
}

/// The `[policy]` table of mcpgw.toml, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// A policy file instead of inline rules: `.json` (PolicyLayer) or `.toml` (native).
    #[serde(default)]
    pub file: Option<Spanned<String>>,
    #[serde(default)]
    pub default: Option<DefaultAction>,
    /// Reason given for calls the default denies.
    #[serde(default)]
    pub default_reason: Option<String>,
    /// Tools to hide (shorthand for `action = "hide"`).
    #[serde(default)]
    pub hide: Vec<Spanned<String>>,
    #[serde(default)]
    pub tools: BTreeMap<String, Spanned<ToolSection>>,
}

/// `[policy.tools.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSection {
    /// Defaults to `allow`: naming a tool, e.g. to limit it, allows it.
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub limits: Vec<Spanned<LimitSection>>,
    /// Argument rules (`[[policy.tools.NAME.args]]`), checked before limits.
    #[serde(default)]
    pub args: Vec<Spanned<args::ArgSection>>,
}

/// One token bucket: `{ max = 10, per = "minute", scope = "identity" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSection {
    pub max: u32,
    pub per: Window,
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Limits with the same counter name share one bucket (PolicyLayer's `counter`).
    #[serde(default)]
    pub counter: Option<String>,
}

/// Where a `[policy]` table came from, for error messages and relative paths.
pub struct PolicySource<'a> {
    pub map: &'a SourceMap<'a>,
    /// Folder that relative `file` paths are resolved against.
    pub base: &'a Path,
    /// Span of the `[policy]` table.
    pub span: Range<usize>,
}

/// A compiled rule for one tool.
#[derive(Debug)]
struct ToolRule {
    action: Action,
    rule: RuleName,
    reason: Arc<str>,
    limits: Vec<Arc<Limiter>>,
    args: args::ArgRules,
}

/// A compiled, immutable policy with its rate-limit state.
#[derive(Debug)]
pub struct Policy {
    default: DefaultAction,
    default_reason: Arc<str>,
    tools: BTreeMap<String, ToolRule>,
    /// Names of every tool rule, for `mcpgw check`.
    warnings: Vec<String>,
}

/// Rule name used for calls no tool rule names.
pub const DEFAULT_RULE: &str = "default";
/// Rule name used for protocol methods (initialize, ping, lists).
pub const PROTOCOL_RULE: &str = "protocol";

/// Methods that carry no tool, prompt or resource and that every identity may use. Anything
/// else without a subject is refused: the gateway never forwards a method it does not know.
const PROTOCOL_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

impl Policy {
    /// Compiles the `[policy]` table (following `file` if it names one).
    pub fn compile(section: PolicySection, src: &PolicySource) -> Result<Policy, ConfigError> {
        if let Some(file) = &section.file {
            let inline = section.default.is_some()
                || section.default_reason.is_some()
                || !section.hide.is_empty()
                || !section.tools.is_empty();
            if inline {
                return Err(src.map.error(
                    Some(file.span()),
                    "[policy] has both `file` and inline rules: keep the rules in one place",
                ));
            }
            let path = {
                let p = Path::new(file.get_ref());
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    src.base.join(p)
                }
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                src.map.error(
                    Some(file.span()),
                    format!("cannot read policy file {}: {e}", path.display()),
                )
            })?;
            let map = SourceMap {
                file: &path,
                text: &text,
            };
            let is_json = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let section = if is_json {
                policylayer::parse(&map)?
            } else {
                let wrapper: NativePolicyFile = toml::from_str(&text)
                    .map_err(|e| map.error(e.span(), e.message().trim().to_string()))?;
                let span = wrapper.policy.span();
                let inner = wrapper.policy.into_inner();
                if inner.file.is_some() {
                    return Err(map.error(Some(span), "a policy file cannot name another `file`"));
                }
                inner
            };
            let nested = PolicySource {
                map: &map,
                base: path.parent().unwrap_or(Path::new(".")),
                span: 0..0,
            };
            return Policy::build(section, &nested);
        }
        Policy::build(section, src)
    }

    fn build(section: PolicySection, src: &PolicySource) -> Result<Policy, ConfigError> {
        let default = section.default.unwrap_or(DefaultAction::Deny);
        let default_reason: Arc<str> = section
            .default_reason
            .unwrap_or_else(|| "not allowed by the gateway's policy".to_string())
            .into();
        let mut tools: BTreeMap<String, ToolRule> = BTreeMap::new();
        let mut counters: BTreeMap<String, (LimitSpec, Arc<Limiter>)> = BTreeMap::new();
        let known = crate::catalogue::tool_names();
        let mut warnings = Vec::new();

        for (name, tool) in section.tools {
            let span = tool.span();
            let tool = tool.into_inner();
            check_tool_name(&name).map_err(|m| src.map.error(Some(span.clone()), m))?;
            let action = tool.action.unwrap_or(Action::Allow);
            if action != Action::Allow && !tool.limits.is_empty() {
                return Err(src.map.error(
                    Some(span),
                    format!("tool {name:?} is {action:?} but has limits: limits apply only to allowed tools"),
                ));
            }
            if action != Action::Deny && tool.reason.is_some() {
                return Err(src.map.error(
                    Some(span),
                    format!("tool {name:?} has a reason but is not denied: a reason is what a denied agent is told"),
                ));
            }
            if action != Action::Allow && !tool.args.is_empty() {
                return Err(src.map.error(
                    Some(span),
                    format!("tool {name:?} is {action:?} but has args rules: argument rules apply only to allowed tools"),
                ));
            }
            let arg_rules = args::ArgRules::compile(tool.args, &name, src.map)?;
            let mut limiters = Vec::new();
            for (i, limit) in tool.limits.into_iter().enumerate() {
                let lspan = limit.span();
                let limit = limit.into_inner();
                if limit.max == 0 {
                    return Err(src.map.error(
                        Some(lspan),
                        format!("tool {name:?}: max = 0 never lets a call through; use action = \"deny\" instead"),
                    ));
                }
                let spec = LimitSpec {
                    max: limit.max,
                    per: limit.per,
                    scope: limit.scope.unwrap_or(Scope::Identity),
                };
                let counter = limit
                    .counter
                    .clone()
                    .unwrap_or_else(|| format!("tools.{name}.limits[{i}]"));
                let limiter = match counters.get(&counter) {
                    Some((existing, limiter)) if *existing == spec => limiter.clone(),
                    Some(_) => {
                        return Err(src.map.error(
                            Some(lspan),
                            format!("counter {counter:?} is used with different max, window or scope: one counter is one bucket"),
                        ));
                    }
                    None => {
                        let rule: RuleName = match &limit.counter {
                            Some(c) => format!("tools.{name}.limits[{i}] counter={c}").into(),
                            None => counter.clone().into(),
                        };
                        let limiter = Arc::new(Limiter::new(spec.clone(), rule));
                        counters.insert(counter, (spec, limiter.clone()));
                        limiter
                    }
                };
                limiters.push(limiter);
            }
            if !known.contains(name.as_str()) {
                warnings.push(match crate::catalogue::nearest(&name) {
                    Some(near) => format!(
                        "tool {name:?} is not in the OPNsense MCP server's catalogue (nearest: {near:?})"
                    ),
                    None => format!("tool {name:?} is not in the OPNsense MCP server's catalogue"),
                });
            }
            let reason: Arc<str> = tool
                .reason
                .unwrap_or_else(|| "denied by the gateway's policy".to_string())
                .into();
            tools.insert(
                name.clone(),
                ToolRule {
                    action,
                    rule: format!("tools.{name}").into(),
                    reason,
                    limits: limiters,
                    args: arg_rules,
                },
            );
        }
        for name in section.hide {
            let span = name.span();
            let name = name.into_inner();
            check_tool_name(&name).map_err(|m| src.map.error(Some(span.clone()), m))?;
            if tools
                .get(&name)
                .is_some_and(|existing| existing.action != Action::Hide)
            {
                return Err(src.map.error(
                    Some(span),
                    format!("tool {name:?} is in `hide` and also has a rule of its own: keep one"),
                ));
            }
            tools.insert(
                name.clone(),
                ToolRule {
                    action: Action::Hide,
                    rule: "hide".into(),
                    reason: "hidden".into(),
                    limits: Vec::new(),
                    args: args::ArgRules::default(),
                },
            );
        }
        Ok(Policy {
            default,
            default_reason,
            tools,
            warnings,
        })
    }

    /// Decides one request. Pure apart from the token buckets: an `Allow` for a limited tool
    /// has taken its cell from every bucket of that tool.
    pub fn decide(&self, identity: &Identity, subject: &Subject) -> Decision {
        match subject {
            Subject::Tool { name, arguments } => self.decide_tool(identity, name, *arguments),
            Subject::Prompt { .. } | Subject::Resource { .. } | Subject::Completion { .. } => {
                self.default_decision(true)
            }
            Subject::Method { method } => {
                if PROTOCOL_METHODS.contains(method) {
                    Decision::Allow {
                        rule: PROTOCOL_RULE.into(),
                    }
                } else {
                    Decision::Deny {
                        rule: PROTOCOL_RULE.into(),
                        reason: format!("method {method:?} is not supported through the gateway")
                            .into(),
                        visible: false,
                    }
                }
            }
        }
    }

    fn default_decision(&self, visible: bool) -> Decision {
        match self.default {
            DefaultAction::Allow => Decision::Allow {
                rule: DEFAULT_RULE.into(),
            },
            DefaultAction::Deny => Decision::Deny {
                rule: DEFAULT_RULE.into(),
                reason: self.default_reason.clone(),
                visible,
            },
        }
    }

    fn decide_tool(
        &self,
        identity: &Identity,
        name: &str,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Decision {
        let Some(rule) = self.tools.get(name) else {
            return self.default_decision(false);
        };
        match rule.action {
            Action::Hide => Decision::Hide {
                rule: rule.rule.clone(),
            },
            Action::Deny => Decision::Deny {
                rule: rule.rule.clone(),
                reason: rule.reason.clone(),
                visible: true,
            },
            Action::Allow => {
                // Arguments before limits: a denied call must not use up a rate-limit cell.
                match rule.args.check(arguments) {
                    args::ArgOutcome::Pass => {}
                    args::ArgOutcome::Deny(v) => {
                        return Decision::Deny {
                            rule: format!("tools.{name}.{}", v.rule).into(),
                            reason: format!("argument {}: {}", v.path, v.reason).into(),
                            visible: true,
                        };
                    }
                    // TODO(shadow): these are allowed for now; the dispatcher
                    // (src/server/dispatch.rs, where `decide` is called and the decision is
                    // audited) will log each shadow violation once shadow mode is wired.
                    args::ArgOutcome::ShadowOnly(_) => {}
                }
                for limiter in &rule.limits {
                    if let Err(retry_after) = limiter.check(identity) {
                        return Decision::Limited {
                            rule: limiter.rule.clone(),
                            retry_after,
                        };
                    }
                }
                Decision::Allow {
                    rule: rule.rule.clone(),
                }
            }
        }
    }

    /// Whether `tools/list` shows this tool to this identity: not hidden, and not denied by
    /// the default. Explicitly denied tools stay visible so the agent learns why it may not.
    pub fn tool_visible(&self, _identity: &Identity, name: &str) -> bool {
        match self.tools.get(name) {
            Some(rule) => rule.action != Action::Hide,
            None => self.default == DefaultAction::Allow,
        }
    }

    /// Whether the default lets calls through (prompts and resources follow it).
    pub fn default_allows(&self) -> bool {
        self.default == DefaultAction::Allow
    }

    /// Identities are not referenced by this policy version; kept as the hook where
    /// per-identity grants will check their names.
    pub fn check_identity_name(&self, _name: &str) -> Result<(), String> {
        Ok(())
    }

    /// Findings worth showing an admin that do not make the policy invalid.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A one-line summary for `mcpgw check` and the start-up log.
    pub fn summary(&self) -> String {
        let count = |a: Action| self.tools.values().filter(|r| r.action == a).count();
        let limited = self.tools.values().filter(|r| !r.limits.is_empty()).count();
        format!(
            "default {}, {} allowed ({} limited), {} denied, {} hidden",
            match self.default {
                DefaultAction::Allow => "allow",
                DefaultAction::Deny => "deny",
            },
            count(Action::Allow),
            limited,
            count(Action::Deny),
            count(Action::Hide),
        )
    }
}

/// A policy file in native TOML holds one `[policy]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativePolicyFile {
    policy: Spanned<PolicySection>,
}

/// Tool names are compared byte for byte; refuse names no MCP server could register so a
/// typo with a stray space is an error, not a rule that never matches.
fn check_tool_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tool name {name:?} is not a valid MCP tool name (1-128 of A-Z a-z 0-9 _ - . /)"
        ))
    }
}

#[cfg(test)]
mod tests;
