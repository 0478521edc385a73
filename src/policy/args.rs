//! Argument rules: checks on the `arguments` of a `tools/call`, compiled once, run per call.
//!
//! An allowed tool may carry `[[policy.tools.NAME.args]]` entries. Each names a `path` into the
//! arguments and one check; a call passes only if every entry passes. Checking is pure: no I/O,
//! no allocation unless something fails, work bounded by the size of the value checked.
//!
//! ```toml
//! [policy.tools.create_firewall_rule]
//! action = "allow"
//! [[policy.tools.create_firewall_rule.args]]
//! path = "interface"
//! in_set = ["lan", "opt1"]
//! [[policy.tools.create_firewall_rule.args]]
//! path = "source"
//! in_networks = ["10.0.0.0/8", "192.168.1.0/24"]
//! [[policy.tools.create_firewall_rule.args]]
//! path = "destinationPort"
//! in_ports = ["80", 443, "8000-8080"]
//! optional = true
//! [[policy.tools.create_firewall_rule.args]]
//! path = "description"
//! max_length = 64
//! regex = "[A-Za-z0-9 _.-]*"
//! reason = "descriptions are short plain text"
//! [[policy.tools.ssh_execute.args]]
//! path = "sudo"
//! forbidden = true
//! shadow = true
//! ```
//!
//! The checks, exactly one per entry (`max_length` may join `regex`/`pattern`):
//! * `equals = SCALAR`, `one_of = [SCALAR, ...]`: a string, integer, float or boolean, compared
//!   by type and value. `"1"` is not `1`, and `1.0` is not `1`.
//! * `in_set = ["lan", ...]`: `one_of` for strings only.
//! * `regex = "..."` (or `pattern`): must match the WHOLE string. It is compiled as
//!   `\A(?:...)\z`, after checking the pattern compiles on its own (so `a)|(b` cannot break out
//!   of the group). Only ASCII classes are built in: `\d`, `\w`, `\s`, `\b` and `(?i)` are
//!   configuration errors, because Unicode `\d` would accept `８０` and `٨٠`; write `[0-9]`,
//!   `[A-Za-z0-9_]` or `(?-u:\d)`. Strings over 64 KiB are denied without running the regex.
//! * `max_length = N`: a string of at most N characters (Unicode scalar values).
//! * `range = { min = A, max = B }`: a JSON number (either bound may be left out). Numeric
//!   strings such as `"4094"` count only with `numeric_strings = true`, and then only plain
//!   decimals (`-?digits[.digits]`, no leading zeros, no `+`, exponent, spaces or hex).
//! * `required = true` alone: present and not null. `forbidden = true`: the key is absent.
//! * `in_networks = ["10.0.0.0/8", "2001:db8::/32"]`: an IP address or CIDR network whose whole
//!   network lies inside an allowed one (see [`net`] for the exact parsing rules).
//! * `in_ports = ["80", 443, "8000-8080"]`: a port or `a-b` range, as an integer or a string,
//!   inside an allowed range; a comma list passes if every element does (see [`ports`]).
//!
//! Every entry may also say `reason = "..."` (what a denied agent is told instead of the
//! generated message), `shadow = true` (a violation is reported but does not deny) and
//! `optional = true` (an absent key passes).
//!
//! What is denied, not guessed:
//! * a missing key, unless `optional = true`;
//! * the wrong JSON type: null, a boolean for a number, an array or object where a scalar is
//!   expected, a float where a port is expected;
//! * strings that differ in any byte: there is no trimming, case folding or Unicode
//!   normalization, so `"lan "` or `"lаn"` (Cyrillic а) are simply not `"lan"`;
//! * a path that runs into something that is not an object or array (`rule.source.net` when
//!   `rule` is a string or null), even with `optional = true`. A missing intermediate object
//!   is a missing key.
//!
//! Paths are keys joined by dots: `rule.source.net`. A segment of ASCII digits is an array
//! index (`hosts.0`) and matches arrays only. So a key that contains a dot, or an object key
//! made only of digits, cannot be addressed; no OPNsense MCP tool uses one.

pub mod net;
pub mod ports;

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use toml::Spanned;

use crate::config::{ConfigError, SourceMap};
use net::{Net, NetError};
use ports::{PortError, PortRange};

/// Longest string a regex is run on; longer strings are denied without running it.
pub const MAX_REGEX_INPUT: usize = 64 * 1024;
/// Longest pattern accepted in the policy.
const MAX_PATTERN: usize = 4096;
/// Limit on a compiled regex (and on its lazy DFA cache), in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Deepest path accepted.
const MAX_DEPTH: usize = 16;
/// Longest path accepted, in bytes.
const MAX_PATH: usize = 256;
/// Longest `reason` accepted, in bytes.
const MAX_REASON: usize = 512;

/// One `[[policy.tools.NAME.args]]` entry, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgSection {
    /// Dotted path into the arguments: `a.b.c`, `a.0`.
    pub path: Spanned<String>,
    #[serde(default)]
    pub equals: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub one_of: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    pub in_set: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub regex: Option<Spanned<String>>,
    /// Same as `regex`; reads better for alias and rule names.
    #[serde(default)]
    pub pattern: Option<Spanned<String>>,
    #[serde(default)]
    pub max_length: Option<Spanned<u32>>,
    #[serde(default)]
    pub range: Option<Spanned<RangeSection>>,
    /// With `range`: also accept decimal strings such as `"4094"`.
    #[serde(default)]
    pub numeric_strings: Option<Spanned<bool>>,
    #[serde(default)]
    pub required: Option<Spanned<bool>>,
    #[serde(default)]
    pub forbidden: Option<Spanned<bool>>,
    #[serde(default)]
    pub optional: Option<Spanned<bool>>,
    #[serde(default)]
    pub in_networks: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub in_ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    /// What a denied agent is told instead of the generated message.
    #[serde(default)]
    pub reason: Option<Spanned<String>>,
    /// Report a violation without denying.
    #[serde(default)]
    pub shadow: bool,
}

/// `range = { min = .., max = .. }`: integers or floats, either may be left out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSection {
    #[serde(default)]
    pub min: Option<toml::Value>,
    #[serde(default)]
    pub max: Option<toml::Value>,
}

/// One argument rule that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// `args[I]`: the entry's index among its tool's entries.
    pub rule: String,
    /// The path as written.
    pub path: String,
    /// The entry's `reason`, or a generated one. Never contains the offending value.
    pub reason: String,
    pub shadow: bool,
}

/// What the argument rules of one tool say about one call.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgOutcome {
    /// Every rule passed.
    Pass,
    /// The first non-shadow rule that failed.
    Deny(Violation),
    /// Only shadow rules failed: allow, and log these.
    ShadowOnly(Vec<Violation>),
}

/// All argument rules of one tool, in the order written.
#[derive(Debug, Default)]
pub struct ArgRules {
    rules: Vec<ArgRule>,
}

/// One compiled argument rule.
#[derive(Debug)]
pub struct ArgRule {
    name: String,
    path_text: String,
    path: Vec<Segment>,
    check: Check,
    optional: bool,
    reason: Option<String>,
    shadow: bool,
}

#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
}

#[derive(Debug)]
enum Check {
    /// `required = true` alone.
    Present,
    /// `forbidden = true`.
    Absent,
    /// `equals`, `one_of`, `in_set`; `describe` is the generated reason.
    OneOf {
        values: Vec<Scalar>,
        strings_only: bool,
        describe: String,
    },
    /// `max_length` and/or `regex`.
    Text {
        max_length: Option<usize>,
        regex: Option<(Regex, String)>,
    },
    Range {
        min: Option<Num>,
        max: Option<Num>,
        numeric_strings: bool,
    },
    Networks(Vec<Net>),
    Ports(Vec<PortRange>),
}

/// Where a path lookup ended.
enum Found<'a> {
    Value(&'a Value),
    Missing,
    /// Segment `.0` met a value it cannot step into.
    Blocked(usize),
}

impl ArgRules {
    /// Compiles a tool's entries; errors name `tools.TOOL.args[I]` and point into the file.
    pub fn compile(
        entries: Vec<Spanned<ArgSection>>,
        tool: &str,
        map: &SourceMap,
    ) -> Result<ArgRules, ConfigError> {
        let rules = entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| compile_entry(i, entry, tool, map))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ArgRules { rules })
    }

    /// First violation of a non-shadow rule, else the shadow violations (so the caller can log
    /// them). `None` arguments are an empty object: every key is missing.
    pub fn check(&self, arguments: Option<&Map<String, Value>>) -> ArgOutcome {
        let mut shadowed = Vec::new();
        for rule in &self.rules {
            if let Err(detail) = rule.evaluate(arguments) {
                let violation = Violation {
                    rule: rule.name.clone(),
                    path: rule.path_text.clone(),
                    reason: rule.reason.clone().unwrap_or(detail),
                    shadow: rule.shadow,
                };
                if rule.shadow {
                    shadowed.push(violation);
                } else {
                    return ArgOutcome::Deny(violation);
                }
            }
        }
        if shadowed.is_empty() {
            ArgOutcome::Pass
        } else {
            ArgOutcome::ShadowOnly(shadowed)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }
}

impl ArgRule {
    /// `Err` holds the generated reason.
    fn evaluate(&self, arguments: Option<&Map<String, Value>>) -> Result<(), String> {
        let value = match resolve(arguments, &self.path) {
            Found::Value(v) => v,
            Found::Missing => {
                return match self.check {
                    Check::Absent => Ok(()),
                    _ if self.optional => Ok(()),
                    _ => Err("is required".into()),
                };
            }
            Found::Blocked(at) => {
                let prefix = self.path_text.split('.').take(at).collect::<Vec<_>>();
                let expected = match self.path.get(at) {
                    Some(Segment::Index(_)) => "an array",
                    _ => "an object",
                };
                return Err(format!(
                    "cannot be checked: {} is not {expected}",
                    prefix.join(".")
                ));
            }
        };
        match &self.check {
            Check::Absent => Err("must not be given".into()),
            Check::Present => match value {
                Value::Null => Err("must have a value, not null".into()),
                _ => Ok(()),
            },
            Check::OneOf {
                values,
                strings_only,
                describe,
            } => {
                if *strings_only && !value.is_string() {
                    return Err("must be a string".into());
                }
                if let Value::Null | Value::Array(_) | Value::Object(_) = value {
                    return Err(format!("must be a single value, not {}", kind(value)));
                }
                if values.iter().any(|s| scalar_eq(s, value)) {
                    Ok(())
                } else {
                    Err(describe.clone())
                }
            }
            Check::Text { max_length, regex } => {
                let Value::String(s) = value else {
                    return Err(format!("must be a string, not {}", kind(value)));
                };
                if let Some(max) = *max_length
                    && s.len() > max
                    && s.chars().take(max.saturating_add(1)).count() > max
                {
                    return Err(format!("must be at most {max} characters"));
                }
                if let Some((re, pattern)) = regex {
                    if s.len() > MAX_REGEX_INPUT {
                        return Err(format!(
                            "is too long to match a pattern (over {MAX_REGEX_INPUT} bytes)"
                        ));
                    }
                    if !re.is_match(s) {
                        return Err(format!("must match the pattern {pattern:?}"));
                    }
                }
                Ok(())
            }
            Check::Range {
                min,
                max,
                numeric_strings,
            } => {
                let Some(n) = number_of(value, *numeric_strings) else {
                    return Err(if *numeric_strings {
                        "must be a number or a decimal string".into()
                    } else {
                        format!("must be a number, not {}", kind(value))
                    });
                };
                let above_min = min.is_none_or(|m| {
                    matches!(compare(n, m), Some(Ordering::Greater | Ordering::Equal))
                });
                let below_max = max.is_none_or(|m| {
                    matches!(compare(n, m), Some(Ordering::Less | Ordering::Equal))
                });
                if above_min && below_max {
                    Ok(())
                } else {
                    Err(describe_range(*min, *max))
                }
            }
            Check::Networks(allowed) => {
                let Value::String(s) = value else {
                    return Err(format!(
                        "must be a string holding an IP address or network, not {}",
                        kind(value)
                    ));
                };
                match Net::parse(s) {
                    Ok(net) if allowed.iter().any(|a| a.contains(&net)) => Ok(()),
                    Ok(net) => Err(format!(
                        "{net} is not inside {}",
                        join(allowed.iter().map(Net::to_string))
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            Check::Ports(allowed) => match ports::check(value, allowed) {
                Ok(()) => Ok(()),
                Err(PortError::WrongType) => Err(format!(
                    "must be a port number or a string of ports, not {}",
                    kind(value)
                )),
                Err(PortError::NotAPort) => {
                    Err("is not a port (1-65535), a range a-b or a comma list of them".to_string())
                }
                Err(PortError::Outside(r)) => Err(format!(
                    "port {r} is not inside {}",
                    join(allowed.iter().map(PortRange::to_string))
                )),
            },
        }
    }
}

fn resolve<'a>(arguments: Option<&'a Map<String, Value>>, path: &[Segment]) -> Found<'a> {
    let Some((first, rest)) = path.split_first() else {
        return Found::Missing;
    };
    let Segment::Key(first) = first else {
        return Found::Blocked(0);
    };
    let Some(mut current) = arguments.and_then(|a| a.get(first)) else {
        return Found::Missing;
    };
    for (i, segment) in rest.iter().enumerate() {
        let next = match (segment, current) {
            (Segment::Key(k), Value::Object(m)) => m.get(k),
            (Segment::Index(n), Value::Array(a)) => a.get(*n),
            _ => return Found::Blocked(i + 1),
        };
        match next {
            Some(v) => current = v,
            None => return Found::Missing,
        }
    }
    Found::Value(current)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON integer (never a float, even `80.0`).
fn json_int(n: &Number) -> Option<i128> {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => Some(i128::from(i)),
        (None, Some(u)) => Some(i128::from(u)),
        _ => None,
    }
}

fn scalar_eq(s: &Scalar, v: &Value) -> bool {
    match (s, v) {
        (Scalar::Str(a), Value::String(b)) => a == b,
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Int(a), Value::Number(n)) => json_int(n) == Some(*a),
        (Scalar::Float(a), Value::Number(n)) => n.is_f64() && n.as_f64() == Some(*a),
        _ => false,
    }
}

fn number_of(value: &Value, numeric_strings: bool) -> Option<Num> {
    match value {
        Value::Number(n) => match json_int(n) {
            Some(i) => Some(Num::Int(i)),
            None => n.as_f64().filter(|f| f.is_finite()).map(Num::Float),
        },
        Value::String(s) if numeric_strings => parse_decimal(s),
        _ => None,
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most 40 bytes.
fn parse_decimal(s: &str) -> Option<Num> {
    if s.len() > 40 {
        return None;
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (int.len() > 1 && int.starts_with('0')) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    match frac {
        None => s.parse::<i128>().ok().map(Num::Int),
        Some(_) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Num::Float),
    }
}

fn compare(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (x, y) => as_f64(x).partial_cmp(&as_f64(y)),
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        // Exact below 2^53; beyond that the nearest float, which is as close as a float gets.
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn show_num(n: Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => f.to_string(),
    }
}

fn describe_range(min: Option<Num>, max: Option<Num>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("must be between {} and {}", show_num(a), show_num(b)),
        (Some(a), None) => format!("must be at least {}", show_num(a)),
        (None, Some(b)) => format!("must be at most {}", show_num(b)),
        (None, None) => "must be a number".into(),
    }
}

fn show_scalar(s: &Scalar) -> String {
    match s {
        Scalar::Str(t) => serde_json::to_string(t).unwrap_or_else(|_| format!("{t:?}")),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => format!("{f:?}"),
        Scalar::Bool(b) => b.to_string(),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// Compiling.

fn compile_entry(
    i: usize,
    entry: Spanned<ArgSection>,
    tool: &str,
    map: &SourceMap,
) -> Result<ArgRule, ConfigError> {
    let name = format!("args[{i}]");
    let entry_span = entry.span();
    let e = entry.into_inner();
    let here = format!("tools.{tool}.{name}");
    let err =
        |span: std::ops::Range<usize>, msg: String| map.error(Some(span), format!("{here}: {msg}"));

    let path_span = e.path.span();
    let path_text = e.path.into_inner();
    let path = parse_path(&path_text).map_err(|m| err(path_span, m))?;

    // Flags first: they have one meaning each.
    if let Some(f) = &e.forbidden
        && !*f.get_ref()
    {
        return Err(err(
            f.span(),
            "forbidden = false checks nothing: remove it".into(),
        ));
    }
    if let Some(r) = &e.required
        && !*r.get_ref()
    {
        return Err(err(
            r.span(),
            "required = false: write optional = true for a key that may be absent".into(),
        ));
    }
    let forbidden = e.forbidden.is_some();
    let required = e.required.is_some();
    let optional = e.optional.as_ref().is_some_and(|o| *o.get_ref());
    if let Some(o) = &e.optional
        && optional
        && (required || forbidden)
    {
        return Err(err(
            o.span(),
            "optional = true contradicts required/forbidden: keep one".into(),
        ));
    }
    if forbidden && required {
        return Err(err(
            entry_span,
            "required and forbidden at once: keep one".into(),
        ));
    }
    if let (Some(_), Some(p)) = (&e.regex, &e.pattern) {
        return Err(err(
            p.span(),
            "regex and pattern are the same check: write one".into(),
        ));
    }
    if let Some(n) = &e.numeric_strings
        && e.range.is_none()
    {
        return Err(err(
            n.span(),
            "numeric_strings applies only to range".into(),
        ));
    }
    let reason = match e.reason {
        Some(r) => {
            let span = r.span();
            let r = r.into_inner();
            if r.trim().is_empty() || r.len() > MAX_REASON {
                return Err(err(
                    span,
                    format!("reason must be 1 to {MAX_REASON} bytes of text"),
                ));
            }
            Some(r)
        }
        None => None,
    };

    // Exactly one check.
    let has_text_regex = e.regex.is_some() || e.pattern.is_some();
    let mut kinds: Vec<&str> = Vec::new();
    let present = [
        ("equals", e.equals.is_some()),
        ("one_of", e.one_of.is_some()),
        ("in_set", e.in_set.is_some()),
        ("regex", e.regex.is_some()),
        ("pattern", e.pattern.is_some()),
        ("max_length", e.max_length.is_some() && !has_text_regex),
        ("range", e.range.is_some()),
        ("in_networks", e.in_networks.is_some()),
        ("in_ports", e.in_ports.is_some()),
        ("forbidden", forbidden),
    ];
    kinds.extend(present.iter().filter(|(_, on)| *on).map(|(k, _)| *k));
    if kinds.len() > 1 {
        return Err(err(
            entry_span,
            format!(
                "has several checks ({}): write one [[args]] entry for each",
                kinds.join(", ")
            ),
        ));
    }
    if kinds.is_empty() && !required {
        return Err(err(
            entry_span,
            "checks nothing: give one of equals, one_of, in_set, regex, pattern, max_length, range, required, forbidden, in_networks, in_ports".into(),
        ));
    }

    let check = if forbidden {
        Check::Absent
    } else if let Some(v) = e.equals {
        let span = v.span();
        let s = scalar(v.into_inner()).map_err(|m| err(span, format!("equals {m}")))?;
        let describe = format!("must equal {}", show_scalar(&s));
        Check::OneOf {
            values: vec![s],
            strings_only: false,
            describe,
        }
    } else if let Some(list) = e.one_of {
        let span = list.span();
        let list = list.into_inner();
        if list.is_empty() {
            return Err(err(
                span,
                "one_of is empty: nothing could match; use forbidden = true".into(),
            ));
        }
        let values = list
            .into_iter()
            .enumerate()
            .map(|(j, v)| {
                let span = v.span();
                scalar(v.into_inner()).map_err(|m| err(span, format!("one_of[{j}] {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let describe = format!("must be one of {}", join(values.iter().map(show_scalar)));
        Check::OneOf {
            values,
            strings_only: false,
            describe,
        }
    } else if let Some(list) = e.in_set {
        let span = list.span();
        let list = list.into_inner();
        if list.is_empty() {
            return Err(err(
                span,
                "in_set is empty: nothing could match; use forbidden = true".into(),
            ));
        }
        let values: Vec<Scalar> = list
            .into_iter()
            .map(|s| Scalar::Str(s.into_inner()))
            .collect();
        let describe = format!("must be one of {}", join(values.iter().map(show_scalar)));
        Check::OneOf {
            values,
            strings_only: true,
            describe,
        }
    } else if has_text_regex || e.max_length.is_some() {
        let regex = match e.regex.or(e.pattern) {
            Some(p) => {
                let span = p.span();
                let p = p.into_inner();
                let re = compile_anchored(&p).map_err(|m| err(span, m))?;
                Some((re, p))
            }
            None => None,
        };
        let max_length = e.max_length.map(|m| m.into_inner() as usize);
        Check::Text { max_length, regex }
    } else if let Some(r) = e.range {
        let span = r.span();
        let r = r.into_inner();
        let min = r
            .min
            .map(number)
            .transpose()
            .map_err(|m| err(span.clone(), format!("range min {m}")))?;
        let max = r
            .max
            .map(number)
            .transpose()
            .map_err(|m| err(span.clone(), format!("range max {m}")))?;
        match (min, max) {
            (None, None) => {
                return Err(err(span, "range needs min, max or both".into()));
            }
            (Some(a), Some(b)) if compare(a, b) == Some(Ordering::Greater) => {
                return Err(err(span, "range has min above max".into()));
            }
            _ => {}
        }
        Check::Range {
            min,
            max,
            numeric_strings: e.numeric_strings.is_some_and(|n| n.into_inner()),
        }
    } else if let Some(list) = e.in_networks {
        let span = list.span();
        let list = list.into_inner();
        if list.is_empty() {
            return Err(err(
                span,
                "in_networks is empty: nothing could match; use forbidden = true".into(),
            ));
        }
        let nets = list
            .into_iter()
            .enumerate()
            .map(|(j, text)| {
                let span = text.span();
                let text = text.into_inner();
                Net::parse(&text).map_err(|e| match e {
                    NetError::HostBits { network } => err(
                        span,
                        format!(
                            "in_networks[{j}] {text:?} has host bits set after its prefix: write {network}, or the host alone without a prefix"
                        ),
                    ),
                    NetError::NotANetwork => err(
                        span,
                        format!("in_networks[{j}] {text:?} is not an IP address or CIDR network"),
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Check::Networks(nets)
    } else if let Some(list) = e.in_ports {
        let span = list.span();
        let list = list.into_inner();
        if list.is_empty() {
            return Err(err(
                span,
                "in_ports is empty: nothing could match; use forbidden = true".into(),
            ));
        }
        let ranges = list
            .into_iter()
            .enumerate()
            .map(|(j, v)| {
                let span = v.span();
                let range = match v.get_ref() {
                    toml::Value::Integer(n) => PortRange::single(i128::from(*n)),
                    toml::Value::String(s) => PortRange::parse(s),
                    _ => None,
                };
                range.ok_or_else(|| {
                    err(
                        span,
                        format!(
                            "in_ports[{j}] {} is not a port (1-65535) or a range \"a-b\" with a <= b; list several ports as several elements",
                            v.get_ref()
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Check::Ports(ranges)
    } else {
        Check::Present
    };

    Ok(ArgRule {
        name,
        path_text,
        path,
        check,
        optional,
        reason,
        shadow: e.shadow,
    })
}

/// Splits `a.b.0` into keys and array indexes.
fn parse_path(text: &str) -> Result<Vec<Segment>, String> {
    if text.is_empty() || text.len() > MAX_PATH {
        return Err(format!("path must be 1 to {MAX_PATH} bytes"));
    }
    let mut segments = Vec::new();
    for (i, seg) in text.split('.').enumerate() {
        if segments.len() == MAX_DEPTH {
            return Err(format!("path {text:?} is deeper than {MAX_DEPTH} segments"));
        }
        if seg.is_empty() {
            return Err(format!(
                "path {text:?} has an empty segment (keys are joined by single dots; a key that contains a dot cannot be addressed)"
            ));
        }
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            if i == 0 {
                return Err(format!(
                    "path {text:?} starts with an index, but arguments are an object: start with a key"
                ));
            }
            let index = (seg.len() <= 6 && (seg == "0" || !seg.starts_with('0')))
                .then(|| seg.parse::<usize>().ok())
                .flatten()
                .ok_or_else(|| {
                    format!("path {text:?}: array index {seg:?} must be 0 to 999999 without leading zeros")
                })?;
            segments.push(Segment::Index(index));
        } else {
            segments.push(Segment::Key(seg.to_string()));
        }
    }
    Ok(segments)
}

fn scalar(v: toml::Value) -> Result<Scalar, String> {
    match v {
        toml::Value::String(s) => Ok(Scalar::Str(s)),
        toml::Value::Integer(i) => Ok(Scalar::Int(i128::from(i))),
        toml::Value::Float(f) if f.is_finite() => Ok(Scalar::Float(f)),
        toml::Value::Boolean(b) => Ok(Scalar::Bool(b)),
        other => Err(format!(
            "must be a string, integer, finite float or boolean, not {}",
            other.type_str()
        )),
    }
}

fn number(v: toml::Value) -> Result<Num, String> {
    match v {
        toml::Value::Integer(i) => Ok(Num::Int(i128::from(i))),
        toml::Value::Float(f) if f.is_finite() => Ok(Num::Float(f)),
        other => Err(format!(
            "must be an integer or a finite float, not {}",
            other.type_str()
        )),
    }
}

/// Compiles `pattern` so that it must match a whole string.
fn compile_anchored(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!("regex is longer than {MAX_PATTERN} bytes"));
    }
    if let Some(what) = unicode_construct(pattern) {
        return Err(format!(
            "regex {pattern:?} uses {what}, which would match non-ASCII look-alikes; only ASCII classes are available: write [0-9], [A-Za-z0-9_], [ \\t], (?-u:\\d) or (?-u:\\b), and spell out case variants"
        ));
    }
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(64)
            .build()
    };
    // On its own first: a pattern such as `a)|(b` must not close our group and escape the
    // anchors.
    build(pattern).map_err(|e| regex_error(pattern, &e))?;
    build(&format!(r"\A(?:{pattern})\z")).map_err(|e| regex_error(pattern, &e))
}

/// The first Unicode-aware construct in `pattern` outside a `(?-u...)` group: the classes
/// `\d \w \s \b \p` (and their negations) or the `i` flag. Checked here rather than left to
/// the regex crate's features, which another crate in the build could switch on.
fn unicode_construct(pattern: &str) -> Option<&'static str> {
    // One entry per open group: whether Unicode is off inside it.
    let mut ascii_stack = vec![false];
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let ascii = ascii_stack.last().copied().unwrap_or(false);
        match c {
            '\\' => match chars.next() {
                Some('d' | 'D') if !ascii => return Some("\\d"),
                Some('w' | 'W') if !ascii => return Some("\\w"),
                Some('s' | 'S') if !ascii => return Some("\\s"),
                Some('b' | 'B') if !ascii => return Some("\\b"),
                Some('p' | 'P') => return Some("a Unicode property class"),
                _ => {}
            },
            '(' => {
                let mut group_ascii = ascii;
                if chars.peek() == Some(&'?') {
                    chars.next();
                    let mut flags = String::new();
                    while let Some(&f) = chars.peek() {
                        if f == ':' || f == ')' {
                            break;
                        }
                        flags.push(f);
                        chars.next();
                    }
                    let (on, off) = flags.split_once('-').unwrap_or((flags.as_str(), ""));
                    if off.contains('u') {
                        group_ascii = true;
                    } else if on.contains('u') {
                        group_ascii = false;
                    }
                    if on.contains('i') && !group_ascii {
                        return Some("the case-insensitive flag (?i)");
                    }
                    if chars.peek() == Some(&')') {
                        // `(?flags)` changes the enclosing group from here on.
                        chars.next();
                        if let Some(top) = ascii_stack.last_mut() {
                            *top = group_ascii;
                        }
                        continue;
                    }
                    chars.next(); // the ':'
                }
                ascii_stack.push(group_ascii);
            }
            ')' if ascii_stack.len() > 1 => {
                ascii_stack.pop();
            }
            _ => {}
        }
    }
    None
}

fn regex_error(pattern: &str, e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("regex {pattern:?} is too big once compiled (limit {limit} bytes)")
        }
        other => {
            let text = other.to_string();
            // The syntax error's last `error: ...` line says what is wrong; drop the advice
            // about cargo features, which is not the admin's to follow.
            let line = text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .or_else(|| {
                    text.lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty() && !l.starts_with('~'))
                })
                .unwrap_or("invalid")
                .split(" (make sure")
                .next()
                .unwrap_or("invalid")
                .to_string();
            let hint = if line.contains("Unicode") || line.contains("NFA") {
                "; only ASCII classes are available: write [0-9], [A-Za-z0-9_], [ \\t], (?-u:\\d) or (?-u:\\b), and spell out case variants"
            } else {
                ""
            };
            format!("regex {pattern:?} does not compile: {line}{hint}")
        }
    }
}

#[cfg(test)]
mod tests;
