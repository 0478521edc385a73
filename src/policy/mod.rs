//! The policy: which identity may do what, decided by a pure function.
//!
//! [`Policy::decide`] takes an [`Identity`] and a [`Subject`] and returns a [`Decision`]. It
//! does no I/O and knows nothing of HTTP, TLS or processes; the only state it touches is the
//! token buckets of its rate limits (governor), which it owns. That keeps every rule
//! table-testable and the cost of one decision measurable on its own.
//!
//! A policy comes from the `[policy]` table of mcpgw.toml, or from a file it names: native TOML
//! or a PolicyLayer `policy.json` (see [`policylayer`]). Both compile to the same rules. For a
//! `tools/call` of tool T the first of these that exists decides:
//!
//! 1. `hide = ["*"]`, or T listed in `hide`: the tool does not exist for the caller.
//! 2. `[policy.tools.T]`: allow, deny with a reason, or hide; allowed tools may carry limits
//!    and argument rules (`[[policy.tools.T.args]]`, see [`args`]: an interface in a set, an
//!    address inside a network, a port in a range...). Arguments are checked before limits,
//!    so a call denied for its arguments never uses up a rate-limit cell.
//! 3. `[policy.risk.CLASS]` for T's risk class in the built-in catalogue (read, write,
//!    execute, destructive), with the same shape as a tool rule.
//! 4. For a tool the catalogue knows: `default`. For one it does not: `unknown_tools`
//!    (deny unless set), so a tool that appears in a new server version is governed at once.
//!
//! Every allowed tool call then also passes the `[policy.all_tools]` limits. A rule (or the
//! whole policy) in `shadow` mode logs what it would deny but lets the call through, so a
//! policy can be rolled out safely. Tools denied by the default are left out of
//! `tools/list`; explicitly denied ones stay listed so the agent can learn why.

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

use crate::catalogue::{self, Risk};
use crate::config::{ConfigError, SourceMap};
use crate::identity::Identity;
use crate::mcp::subject::Subject;
use limits::{LimitSpec, Limiter, Scope, Window};

/// The name of the rule behind a decision, as written in the log (`tools.NAME`, `default`, ...).
pub type RuleName = Arc<str>;

/// A denial or limit that shadow mode turned into an allow: logged, not enforced.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadowed {
    /// `Deny` or `Limited`, as it would have been.
    pub would_be: Box<Decision>,
}

/// What the policy says about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward it. With `shadow`, a shadow-mode rule would have refused it.
    Allow {
        rule: RuleName,
        shadow: Option<Shadowed>,
    },
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
            Decision::Allow { rule, .. }
            | Decision::Deny { rule, .. }
            | Decision::Hide { rule }
            | Decision::Limited { rule, .. } => rule,
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    fn allow(rule: RuleName) -> Decision {
        Decision::Allow { rule, shadow: None }
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

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Hide => "hide",
        }
    }
}

/// `default = "allow" | "deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    Allow,
    Deny,
}

impl DefaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Allow => "allow",
            DefaultAction::Deny => "deny",
        }
    }
}

/// The `[policy]` table of mcpgw.toml, as written.
#[derive(Debug, Default, Deserialize)]
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
    /// What happens to tools the built-in catalogue does not know (deny unless set).
    #[serde(default)]
    pub unknown_tools: Option<DefaultAction>,
    /// Shadow mode for the whole policy: log denials and limits, enforce nothing.
    #[serde(default)]
    pub shadow: bool,
    /// Tools to hide (shorthand for `action = "hide"`); `"*"` hides every tool.
    #[serde(default)]
    pub hide: Vec<Spanned<String>>,
    /// Limits every allowed tool call counts against.
    #[serde(default)]
    pub all_tools: Option<AllToolsSection>,
    /// Defaults per risk class of the catalogue.
    #[serde(default)]
    pub risk: RiskSection,
    #[serde(default)]
    pub tools: BTreeMap<String, Spanned<ToolSection>>,
}

/// `[policy.all_tools]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllToolsSection {
    #[serde(default)]
    pub limits: Vec<Spanned<LimitSection>>,
}

/// `[policy.risk.read]`, `.write`, `.execute`, `.destructive`: a tool rule for a whole class.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSection {
    #[serde(default)]
    pub read: Option<Spanned<ToolSection>>,
    #[serde(default)]
    pub write: Option<Spanned<ToolSection>>,
    #[serde(default)]
    pub execute: Option<Spanned<ToolSection>>,
    #[serde(default)]
    pub destructive: Option<Spanned<ToolSection>>,
}

/// `[policy.tools.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSection {
    /// Defaults to `allow`: naming a tool, e.g. to limit it, allows it.
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub limits: Vec<Spanned<LimitSection>>,
    /// Log what this rule would deny or limit, but let the call through.
    #[serde(default)]
    pub shadow: bool,
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

/// A compiled rule: for one tool, or for a risk class.
#[derive(Debug)]
struct Rule {
    action: Action,
    name: RuleName,
    reason: Arc<str>,
    limits: Vec<Arc<Limiter>>,
    shadow: bool,
    args: args::ArgRules,
}

/// A compiled, immutable policy with its rate-limit state.
#[derive(Debug)]
pub struct Policy {
    default: DefaultAction,
    default_reason: Arc<str>,
    unknown_tools: DefaultAction,
    shadow: bool,
    hide_all: bool,
    tools: BTreeMap<String, Rule>,
    /// Indexed by [`risk_index`].
    risk: [Option<Rule>; 4],
    all_tools: Vec<Arc<Limiter>>,
    /// Every limiter by counter name (for state carried across reloads, and pruning).
    counters: BTreeMap<String, Arc<Limiter>>,
    warnings: Vec<String>,
}

/// Rule name used for calls no rule names.
pub const DEFAULT_RULE: &str = "default";
/// Rule name used for tools the catalogue does not know and no rule names.
pub const UNKNOWN_RULE: &str = "unknown_tools";
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

const RISKS: [Risk; 4] = [Risk::Read, Risk::Write, Risk::Execute, Risk::Destructive];

fn risk_index(risk: Risk) -> usize {
    match risk {
        Risk::Read => 0,
        Risk::Write => 1,
        Risk::Execute => 2,
        Risk::Destructive => 3,
    }
}

fn risk_name(risk: Risk) -> &'static str {
    match risk {
        Risk::Read => "read",
        Risk::Write => "write",
        Risk::Execute => "execute",
        Risk::Destructive => "destructive",
    }
}

/// Collects limiters while compiling, sharing buckets between limits of one counter.
struct Counters<'a> {
    map: BTreeMap<String, Arc<Limiter>>,
    src: &'a PolicySource<'a>,
}

impl Counters<'_> {
    fn compile(
        &mut self,
        owner: &str,
        limits: Vec<Spanned<LimitSection>>,
    ) -> Result<Vec<Arc<Limiter>>, ConfigError> {
        let mut out = Vec::new();
        for (i, limit) in limits.into_iter().enumerate() {
            let span = limit.span();
            let limit = limit.into_inner();
            if limit.max == 0 {
                return Err(self.src.map.error(
                    Some(span),
                    format!(
                        "{owner}: max = 0 never lets a call through; use action = \"deny\" instead"
                    ),
                ));
            }
            let spec = LimitSpec {
                max: limit.max,
                per: limit.per,
                scope: limit.scope.unwrap_or(Scope::Identity),
            };
            let position = format!("{owner}.limits[{i}]");
            let counter = limit.counter.clone().unwrap_or_else(|| position.clone());
            let limiter = match self.map.get(&counter) {
                Some(existing) if existing.spec == spec => existing.clone(),
                Some(_) => {
                    return Err(self.src.map.error(
                        Some(span),
                        format!("counter {counter:?} is used with a different max, window or scope: one counter is one bucket"),
                    ));
                }
                None => {
                    let rule: RuleName = match &limit.counter {
                        Some(c) => format!("{position} counter={c}").into(),
                        None => position.into(),
                    };
                    let limiter = Arc::new(Limiter::new(spec, counter.clone(), rule));
                    self.map.insert(counter, limiter.clone());
                    limiter
                }
            };
            out.push(limiter);
        }
        Ok(out)
    }

    fn rule(&mut self, owner: &str, section: Spanned<ToolSection>) -> Result<Rule, ConfigError> {
        let span = section.span();
        let section = section.into_inner();
        let action = section.action.unwrap_or(Action::Allow);
        if action != Action::Allow && !section.limits.is_empty() {
            return Err(self.src.map.error(
                Some(span),
                format!(
                    "{owner} is {} but has limits: limits apply only to allowed tools",
                    action.as_str()
                ),
            ));
        }
        if action != Action::Deny && section.reason.is_some() {
            return Err(self.src.map.error(
                Some(span),
                format!("{owner} has a reason but is not denied: a reason is what a denied agent is told"),
            ));
        }
        if action != Action::Allow && !section.args.is_empty() {
            return Err(self.src.map.error(
                Some(span),
                format!(
                    "{owner} is {} but has args rules: argument rules apply only to allowed tools",
                    action.as_str()
                ),
            ));
        }
        let tool = owner.rsplit('.').next().unwrap_or(owner);
        let args = args::ArgRules::compile(section.args, tool, self.src.map)?;
        let limits = self.compile(owner, section.limits)?;
        Ok(Rule {
            action,
            args,
            name: owner.into(),
            reason: section
                .reason
                .unwrap_or_else(|| "denied by the gateway's policy".to_string())
                .into(),
            limits,
            shadow: section.shadow,
        })
    }
}

impl Policy {
    /// Compiles the `[policy]` table (following `file` if it names one).
    pub fn compile(section: PolicySection, src: &PolicySource) -> Result<Policy, ConfigError> {
        let Some(file) = &section.file else {
            return Policy::build(section, src);
        };
        let inline = section.default.is_some()
            || section.default_reason.is_some()
            || section.unknown_tools.is_some()
            || section.shadow
            || !section.hide.is_empty()
            || section.all_tools.is_some()
            || !section.tools.is_empty()
            || section.risk.read.is_some()
            || section.risk.write.is_some()
            || section.risk.execute.is_some()
            || section.risk.destructive.is_some();
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
        let section = read_policy_file(&map)?;
        let nested = PolicySource {
            map: &map,
            base: path.parent().unwrap_or(Path::new(".")),
            span: 0..0,
        };
        Policy::build(section, &nested)
    }

    fn build(section: PolicySection, src: &PolicySource) -> Result<Policy, ConfigError> {
        let default = section.default.unwrap_or(DefaultAction::Deny);
        let default_reason: Arc<str> = section
            .default_reason
            .unwrap_or_else(|| "not allowed by the gateway's policy".to_string())
            .into();
        let mut counters = Counters {
            map: BTreeMap::new(),
            src,
        };
        let mut tools: BTreeMap<String, Rule> = BTreeMap::new();
        let mut warnings = Vec::new();

        for (name, tool) in section.tools {
            check_tool_name(&name).map_err(|m| src.map.error(Some(tool.span()), m))?;
            let rule = counters.rule(&format!("tools.{name}"), tool)?;
            if catalogue::risk_of(&name).is_none() {
                warnings.push(match catalogue::nearest(&name) {
                    Some(near) => format!(
                        "tool {name:?} is not in the OPNsense MCP server's catalogue (nearest: {near:?}); the rule applies if a server offers it"
                    ),
                    None => format!(
                        "tool {name:?} is not in the OPNsense MCP server's catalogue; the rule applies if a server offers it"
                    ),
                });
            }
            tools.insert(name, rule);
        }

        let mut hide_all = false;
        for name in section.hide {
            let span = name.span();
            let name = name.into_inner();
            if name == "*" {
                hide_all = true;
                continue;
            }
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
                name,
                Rule {
                    action: Action::Hide,
                    name: "hide".into(),
                    reason: "hidden".into(),
                    limits: Vec::new(),
                    shadow: false,
                    args: args::ArgRules::default(),
                },
            );
        }

        let mut risk: [Option<Rule>; 4] = [None, None, None, None];
        let sections = [
            section.risk.read,
            section.risk.write,
            section.risk.execute,
            section.risk.destructive,
        ];
        for (class, s) in RISKS.into_iter().zip(sections) {
            if let Some(s) = s {
                risk[risk_index(class)] =
                    Some(counters.rule(&format!("risk.{}", risk_name(class)), s)?);
            }
        }
        let all_tools = match section.all_tools {
            Some(a) => counters.compile("all_tools", a.limits)?,
            None => Vec::new(),
        };

        let mut policy = Policy {
            default,
            default_reason,
            unknown_tools: section.unknown_tools.unwrap_or(DefaultAction::Deny),
            shadow: section.shadow,
            hide_all,
            tools,
            risk,
            all_tools,
            counters: counters.map,
            warnings,
        };
        policy.warnings.extend(policy.lint());
        Ok(policy)
    }

    /// Findings that do not make a policy invalid but mean part of it can never act.
    fn lint(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.hide_all {
            let named = self
                .tools
                .values()
                .filter(|r| r.action != Action::Hide)
                .count();
            if named > 0 {
                out.push(format!(
                    "hide = [\"*\"] hides every tool, so {named} tool rule(s) can never apply"
                ));
            }
        }
        // A limit looser than an all-tools limit of the same scope can never be the one that
        // stops a call.
        let tightest = |limits: &[Arc<Limiter>], scope: Scope| {
            limits
                .iter()
                .filter(|l| l.spec.scope == scope)
                .map(|l| l.spec.per.duration().as_secs_f64() / f64::from(l.spec.max))
                .fold(None, |acc: Option<f64>, p| {
                    Some(acc.map_or(p, |a| a.max(p)))
                })
        };
        for (name, rule) in &self.tools {
            for limit in &rule.limits {
                let Some(all_period) = tightest(&self.all_tools, limit.spec.scope) else {
                    continue;
                };
                let period = limit.spec.per.duration().as_secs_f64() / f64::from(limit.spec.max);
                if period < all_period && limit.spec.max >= self.all_tools_burst(limit.spec.scope) {
                    out.push(format!(
                        "{} ({} per {}) can never be reached: the all_tools limit is stricter",
                        limit.rule,
                        limit.spec.max,
                        limit.spec.per.as_str()
                    ));
                }
            }
            if rule.action == Action::Allow && rule.limits.is_empty() && !rule.shadow {
                let redundant = self.default == DefaultAction::Allow
                    && catalogue::risk_of(name).is_some_and(|r| self.risk[risk_index(r)].is_none());
                if redundant {
                    out.push(format!(
                        "tools.{name} allows what the default already allows (the rule changes nothing)"
                    ));
                }
            }
        }
        out
    }

    fn all_tools_burst(&self, scope: Scope) -> u32 {
        self.all_tools
            .iter()
            .filter(|l| l.spec.scope == scope)
            .map(|l| l.spec.max)
            .min()
            .unwrap_or(u32::MAX)
    }

    /// Decides one request. Pure apart from the token buckets: an `Allow` for a limited tool
    /// has taken its cell from every bucket it counts against.
    pub fn decide(&self, identity: &Identity, subject: &Subject) -> Decision {
        match subject {
            Subject::Tool { name, arguments } => self.decide_tool(identity, name, *arguments),
            Subject::Prompt { .. } | Subject::Resource { .. } | Subject::Completion { .. } => {
                match self.default {
                    DefaultAction::Allow => Decision::allow(DEFAULT_RULE.into()),
                    DefaultAction::Deny => Decision::Deny {
                        rule: DEFAULT_RULE.into(),
                        reason: self.default_reason.clone(),
                        visible: true,
                    },
                }
            }
            Subject::Method { method } => {
                if PROTOCOL_METHODS.contains(method) {
                    Decision::allow(PROTOCOL_RULE.into())
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

    /// The rule that governs tool `name`, if any rule does.
    fn rule_for(&self, name: &str) -> Option<&Rule> {
        self.tools
            .get(name)
            .or_else(|| catalogue::risk_of(name).and_then(|r| self.risk[risk_index(r)].as_ref()))
    }

    /// The fallback for a tool no rule names: `default` for catalogued tools,
    /// `unknown_tools` for the rest.
    fn fallback(&self, name: &str) -> (DefaultAction, &'static str) {
        if catalogue::risk_of(name).is_some() {
            (self.default, DEFAULT_RULE)
        } else {
            (self.unknown_tools, UNKNOWN_RULE)
        }
    }

    fn decide_tool(
        &self,
        identity: &Identity,
        name: &str,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Decision {
        if self.hide_all {
            return Decision::Hide {
                rule: "hide".into(),
            };
        }
        let (enforced, shadow) = match self.rule_for(name) {
            None => {
                let (action, rule) = self.fallback(name);
                match action {
                    DefaultAction::Allow => (self.check_limits(identity, rule.into(), &[]), false),
                    DefaultAction::Deny => (
                        Decision::Deny {
                            rule: rule.into(),
                            reason: self.default_reason.clone(),
                            visible: false,
                        },
                        false,
                    ),
                }
            }
            Some(rule) => {
                let decision = match rule.action {
                    Action::Hide => {
                        return Decision::Hide {
                            rule: rule.name.clone(),
                        };
                    }
                    Action::Deny => Decision::Deny {
                        rule: rule.name.clone(),
                        reason: rule.reason.clone(),
                        visible: true,
                    },
                    Action::Allow => match rule.args.check(arguments) {
                        // Arguments before limits: a denied call must not use up a cell.
                        args::ArgOutcome::Deny(v) if !v.shadow => Decision::Deny {
                            rule: format!("{}.{}", rule.name, v.rule).into(),
                            reason: format!("argument {}: {}", v.path, v.reason).into(),
                            visible: true,
                        },
                        args::ArgOutcome::Deny(v) => shadowed_args(
                            self.check_limits(identity, rule.name.clone(), &rule.limits),
                            rule,
                            &[v],
                        ),
                        args::ArgOutcome::ShadowOnly(violations) => shadowed_args(
                            self.check_limits(identity, rule.name.clone(), &rule.limits),
                            rule,
                            &violations,
                        ),
                        args::ArgOutcome::Pass => {
                            self.check_limits(identity, rule.name.clone(), &rule.limits)
                        }
                    },
                };
                (decision, rule.shadow)
            }
        };
        if (self.shadow || shadow) && !enforced.is_allow() {
            let rule: RuleName = enforced.rule().into();
            return Decision::Allow {
                rule,
                shadow: Some(Shadowed {
                    would_be: Box::new(enforced),
                }),
            };
        }
        enforced
    }

    /// Takes a cell from the rule's limits, then from the all-tools limits.
    fn check_limits(
        &self,
        identity: &Identity,
        rule: RuleName,
        limits: &[Arc<Limiter>],
    ) -> Decision {
        for limiter in limits.iter().chain(&self.all_tools) {
            if let Err(retry_after) = limiter.check(identity) {
                return Decision::Limited {
                    rule: limiter.rule.clone(),
                    retry_after,
                };
            }
        }
        Decision::allow(rule)
    }

    /// Whether `tools/list` shows this tool to this identity: not hidden, and not denied by
    /// the default. Explicitly denied tools stay visible so the agent learns why it may not;
    /// in shadow mode nothing but hidden tools is filtered.
    pub fn tool_visible(&self, _identity: &Identity, name: &str) -> bool {
        if self.hide_all {
            return false;
        }
        match self.rule_for(name) {
            Some(rule) => rule.action != Action::Hide,
            None => self.shadow || self.fallback(name).0 == DefaultAction::Allow,
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

    /// Keeps the buckets of every counter whose limit did not change, so a reload does not
    /// hand every agent a fresh quota.
    pub fn carry_state_from(&mut self, old: &Policy) {
        let mut kept: BTreeMap<String, Arc<Limiter>> = BTreeMap::new();
        for (counter, limiter) in &self.counters {
            if let Some(previous) = old
                .counters
                .get(counter)
                .filter(|p| p.spec == limiter.spec && p.rule == limiter.rule)
            {
                kept.insert(counter.clone(), previous.clone());
            }
        }
        if kept.is_empty() {
            return;
        }
        let swap = |limits: &mut Vec<Arc<Limiter>>| {
            for l in limits.iter_mut() {
                if let Some(previous) = kept.get(&l.counter) {
                    *l = previous.clone();
                }
            }
        };
        for rule in self
            .tools
            .values_mut()
            .chain(self.risk.iter_mut().flatten())
        {
            swap(&mut rule.limits);
        }
        swap(&mut self.all_tools);
        for (counter, previous) in &kept {
            self.counters.insert(counter.clone(), previous.clone());
        }
    }

    /// Forgets rate-limit keys whose buckets are full again (called once a minute).
    pub fn prune(&self) {
        for limiter in self.counters.values() {
            limiter.prune();
        }
    }

    /// Rate-limit keys tracked across all counters.
    pub fn tracked_keys(&self) -> usize {
        self.counters.values().map(|l| l.tracked_keys()).sum()
    }

    /// How the rule for `name` was found, in words (for `mcpgw explain`).
    pub fn explain_rule(&self, name: &str) -> String {
        let risk = catalogue::risk_of(name);
        let class = risk.map_or("not in the catalogue".to_string(), |r| {
            format!("catalogue risk class {}", risk_name(r))
        });
        if self.hide_all {
            return "hide = [\"*\"] hides every tool".into();
        }
        if let Some(rule) = self.tools.get(name) {
            return format!("the tool's own rule {} ({class})", rule.name);
        }
        if let Some(rule) = risk.and_then(|r| self.risk[risk_index(r)].as_ref()) {
            return format!("no rule names the tool; its {class} has rule {}", rule.name);
        }
        let (action, rule) = self.fallback(name);
        format!(
            "no rule names the tool ({class}), so `{rule}` applies: {}",
            action.as_str()
        )
    }

    /// A one-line summary for `mcpgw check` and the start-up log.
    pub fn summary(&self) -> String {
        let count = |a: Action| self.tools.values().filter(|r| r.action == a).count();
        let limited = self.tools.values().filter(|r| !r.limits.is_empty()).count();
        let classes: Vec<String> = RISKS
            .iter()
            .filter_map(|r| {
                self.risk[risk_index(*r)]
                    .as_ref()
                    .map(|rule| format!("{}={}", risk_name(*r), rule.action.as_str()))
            })
            .collect();
        let mut s = format!(
            "default {}, {} allowed ({} limited), {} denied, {} hidden",
            self.default.as_str(),
            count(Action::Allow),
            limited,
            count(Action::Deny),
            count(Action::Hide),
        );
        if !classes.is_empty() {
            s += &format!(", risk classes {}", classes.join(" "));
        }
        if self.hide_all {
            s += ", every tool hidden";
        }
        if self.shadow {
            s += ", SHADOW MODE (nothing enforced)";
        }
        s
    }
}

/// An allowed call that broke shadow-mode argument rules: still allowed, but the decision
/// carries the first violation so it is logged as `decision=deny shadow=true`.
fn shadowed_args(decision: Decision, rule: &Rule, violations: &[args::Violation]) -> Decision {
    match (decision, violations.first()) {
        (
            Decision::Allow {
                rule: allowed,
                shadow: None,
            },
            Some(v),
        ) => Decision::Allow {
            rule: allowed,
            shadow: Some(Shadowed {
                would_be: Box::new(Decision::Deny {
                    rule: format!("{}.{}", rule.name, v.rule).into(),
                    reason: format!("argument {}: {}", v.path, v.reason).into(),
                    visible: true,
                }),
            }),
        },
        (other, _) => other,
    }
}

/// Reads a policy file: `.json` is PolicyLayer's format, anything else native TOML holding
/// one `[policy]` table.
pub fn read_policy_file(map: &SourceMap) -> Result<PolicySection, ConfigError> {
    let is_json = map
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        return policylayer::parse(map);
    }
    let wrapper: NativePolicyFile = toml::from_str(map.text)
        .map_err(|e| map.error(e.span(), e.message().trim().to_string()))?;
    let span = wrapper.policy.span();
    let inner = wrapper.policy.into_inner();
    if inner.file.is_some() {
        return Err(map.error(Some(span), "a policy file cannot name another `file`"));
    }
    Ok(inner)
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
