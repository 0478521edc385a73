//! Pure text for the audit trail: `key=value` decision lines and the RFC 5424 frame around them.
//!
//! Everything here is deterministic (the clock is a parameter) so it can be tested with golden
//! lines. The rules that keep an attacker-controlled value (tool names, arguments) from forging
//! log lines or fields:
//!
//! - a value is written bare only when it is non-empty, not `-` (which means "missing") and
//!   contains no whitespace, `=`, `"`, `\` or character that needs escaping; otherwise it is
//!   written in double quotes, with `"` and `\` escaped as `\"` and `\\`;
//! - control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the
//!   invisible formatting characters that can reorder or hide text (bidi overrides, zero-width
//!   characters, BOM) are escaped as `\n`, `\r`, `\t` or `\u{hex}`, so one record is one line;
//! - a value is at most [`VALUE_MAX_CHARS`] characters of escaped text, a cut one ends in `…`;
//!   escape sequences are never cut in half;
//! - the whole message is at most [`LINE_MAX_BYTES`] bytes; a pair that does not fit is cut
//!   (ending in `…`), and when not even its key fits the line ends with ` …`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{DecisionRecord, Severity};

/// Longest escaped value, in characters, including the `…` that marks a cut.
pub const VALUE_MAX_CHARS: usize = 256;
/// Longest message (the MSG part of the syslog line), in bytes.
pub const LINE_MAX_BYTES: usize = 4096;
/// Marks a cut value or line.
const ELLIPSIS: char = '…';
/// What a line that had to drop whole pairs ends with.
const LINE_CUT: &str = " …";

/// The `key=value` text of a decision (the MSG part of the syslog line).
///
/// Keys, always in this order: `decision identity src method tool rule reason upstream
/// latency_us`, then `arg.NAME` for each logged argument. A missing value is `-`.
pub fn format_decision(rec: &DecisionRecord) -> String {
    let mut out = String::new();
    format_decision_into(rec, &mut out);
    out
}

/// [`format_decision`] into `out` (replacing what it held), so one buffer serves every line.
pub fn format_decision_into(rec: &DecisionRecord, out: &mut String) {
    out.clear();
    out.reserve(256);
    let mut line = Line {
        text: std::mem::take(out),
        full: false,
    };
    line.pair("decision", Some(rec.verdict.as_str()));
    if rec.shadow {
        line.pair("shadow", Some("true"));
    }
    line.pair("identity", rec.identity.as_deref());
    // Addresses and numbers are formatted into a stack buffer, not a fresh String.
    let mut src_buf = StackText::new();
    let src = rec.source.map(|ip| src_buf.format(format_args!("{ip}")));
    line.pair("src", src);
    line.pair("method", Some(rec.method.as_str()));
    line.pair("tool", rec.tool.as_deref());
    line.pair("rule", rec.rule.as_deref());
    line.pair("reason", rec.reason.as_deref());
    line.pair("upstream", rec.upstream.as_deref());
    let mut latency_buf = StackText::new();
    let latency = rec
        .latency_us
        .map(|us| latency_buf.format(format_args!("{us}")));
    line.pair("latency_us", latency);
    for (name, value) in &rec.arguments {
        let key = format!("arg.{}", sanitize_key(name));
        line.pair(&key, Some(value.as_str()));
    }
    *out = line.finish();
}

/// Free text (an event) made safe for one syslog line: escaped like a value, never quoted,
/// at most [`LINE_MAX_BYTES`] bytes.
pub fn format_event(message: &str) -> String {
    let mut out = String::new();
    let budget = LINE_MAX_BYTES - ELLIPSIS.len_utf8();
    let mut esc = String::new();
    for c in message.chars() {
        esc.clear();
        escape_char(c, &mut esc);
        if out.len() + esc.len() > budget {
            out.push(ELLIPSIS);
            return out;
        }
        out.push_str(&esc);
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// A small text buffer on the stack for short formatted values (IP addresses, numbers).
/// Longer output than fits is cut, which cannot happen for what it is used for (an IPv6
/// address with a zone is at most 47 bytes, a `u64` 20).
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }

    fn format(&mut self, args: std::fmt::Arguments<'_>) -> &str {
        self.len = 0;
        let _ = self.write_fmt(args);
        // Only whole `&str`s are copied in, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("-")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A `key=value` line under construction, enforcing the line budget.
struct Line {
    text: String,
    /// Set once a pair did not fit at all; later pairs are skipped.
    full: bool,
}

impl Line {
    fn pair(&mut self, key: &str, value: Option<&str>) {
        if self.full {
            return;
        }
        let sep = usize::from(!self.text.is_empty());
        // Room left for this pair, keeping space for the " …" that ends a cut line.
        let room =
            LINE_MAX_BYTES.saturating_sub(self.text.len() + sep + key.len() + 1 + LINE_CUT.len());
        // The smallest useful value: `"…"`.
        if room < 2 + ELLIPSIS.len_utf8() {
            self.full = true;
            self.text.push_str(LINE_CUT);
            return;
        }
        if sep == 1 {
            self.text.push(' ');
        }
        self.text.push_str(key);
        self.text.push('=');
        match value {
            None => self.text.push('-'),
            Some(v) => push_value(&mut self.text, v, room),
        }
    }

    fn finish(self) -> String {
        self.text
    }
}

/// Whether a byte is written as itself, bare: printable ASCII other than space, `=`, `"`
/// and `\`.
fn is_plain_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'=' | b'"' | b'\\')
}

/// Appends `value`, quoted and escaped as needed, using at most `max_bytes` bytes.
fn push_value(out: &mut String, value: &str, max_bytes: usize) {
    // Fast path, the common case (names, rules, addresses, numbers): printable ASCII that
    // needs neither quotes nor escapes and fits both budgets is copied as it is. One byte is
    // one character here, so the byte length is the character count. This is exactly what
    // the general path below produces for such a value.
    // The length checks are stricter than the general path's (which keeps room for a `…`
    // until the last character), so the fast paths only take values it would not cut.
    let bytes = value.as_bytes();
    if bytes.len() <= VALUE_MAX_CHARS && bytes.len() + 2 + ELLIPSIS.len_utf8() <= max_bytes {
        if !bytes.is_empty() && value != "-" && bytes.iter().all(|&b| is_plain_byte(b)) {
            out.push_str(value);
            return;
        }
        // Printable ASCII with spaces, `=`, `"` or `\` (or empty, or `-`): quoted, with `"`
        // and `\` escaped by a backslash; nothing else needs escaping.
        if bytes.iter().all(|&b| matches!(b, b' '..=b'~')) {
            let escapes = bytes.iter().filter(|&&b| b == b'"' || b == b'\\').count();
            let escaped = bytes.len() + escapes;
            if escaped < VALUE_MAX_CHARS && escaped + 4 + ELLIPSIS.len_utf8() <= max_bytes {
                out.reserve(escaped + 2);
                out.push('"');
                if escapes == 0 {
                    out.push_str(value);
                } else {
                    for c in value.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
                out.push('"');
                return;
            }
        }
    }
    push_value_escaped(out, value, max_bytes);
}

/// The general case of [`push_value`]: quotes, escapes, cuts.
fn push_value_escaped(out: &mut String, value: &str, max_bytes: usize) {
    let quoted = needs_quotes(value);
    let quotes = if quoted { 2 } else { 0 };
    let byte_budget = max_bytes.saturating_sub(quotes);
    let mut body = String::with_capacity(value.len().min(VALUE_MAX_CHARS * 2));
    let mut chars = 0usize;
    let mut esc = String::new();
    let mut iter = value.chars().peekable();
    while let Some(c) = iter.next() {
        esc.clear();
        escape_char(c, &mut esc);
        if c == '"' || c == '\\' {
            esc.clear();
            esc.push('\\');
            esc.push(c);
        }
        let esc_chars = esc.chars().count();
        // Keep room for the ellipsis unless this is the last character.
        let last = iter.peek().is_none();
        let (chars_cap, bytes_cap) = if last {
            (VALUE_MAX_CHARS, byte_budget)
        } else {
            (
                VALUE_MAX_CHARS - 1,
                byte_budget.saturating_sub(ELLIPSIS.len_utf8()),
            )
        };
        if chars + esc_chars > chars_cap || body.len() + esc.len() > bytes_cap {
            body.push(ELLIPSIS);
            break;
        }
        chars += esc_chars;
        body.push_str(&esc);
    }
    if quoted {
        out.push('"');
        out.push_str(&body);
        out.push('"');
    } else {
        out.push_str(&body);
    }
}

/// Whether a value must be written in quotes to be read back unambiguously.
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value == "-"
        || value
            .chars()
            .any(|c| c == '=' || c == '"' || c == '\\' || c.is_whitespace() || must_escape(c))
}

/// Characters that are never written as themselves.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{200B}'..='\u{200F}' // zero-width characters, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}' // BOM
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// Appends `c` as it appears in a line (escaped when it must be).
fn escape_char(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if must_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// An argument name as a key: ASCII letters, digits, `_`, `-` and `.`; anything else is `_`.
fn sanitize_key(name: &str) -> String {
    let key: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() { "_".to_string() } else { key }
}

/// The RFC 5424 PRI value for a daemon-facility message.
pub fn priority(severity: Severity) -> u8 {
    let sev = match severity {
        Severity::Error => syslog::Severity::LOG_ERR,
        Severity::Warning => syslog::Severity::LOG_WARNING,
        Severity::Notice => syslog::Severity::LOG_NOTICE,
        Severity::Info => syslog::Severity::LOG_INFO,
    };
    syslog::Facility::LOG_DAEMON as u8 | sev as u8
}

/// A header field (HOSTNAME, APP-NAME): printable ASCII without spaces, at most `max` bytes,
/// `-` when nothing is left.
pub fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_string()
    } else {
        field
    }
}

/// The whole RFC 5424 line: `<PRI>1 TIMESTAMP HOST mcpgw PID - - MSG`.
///
/// `host` must already be a valid header field (see [`header_field`]).
#[cfg(test)]
pub fn frame(severity: Severity, time: SystemTime, host: &str, pid: u32, msg: &str) -> String {
    let mut out = String::new();
    Framer::new(host, pid).frame_into(&mut out, severity, time, msg);
    out
}

/// Frames lines for one host and process without allocating: the header text after the
/// timestamp is built once, and the timestamp's date and time (to the second) once per second.
pub struct Framer {
    /// ` HOST mcpgw PID - - `
    tail: String,
    /// The second `stamp` is for (`u64::MAX`: none yet).
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS.` for `second`.
    stamp: String,
}

impl Framer {
    /// `host` must already be a valid header field (see [`header_field`]).
    pub fn new(host: &str, pid: u32) -> Framer {
        Framer {
            tail: format!(" {host} mcpgw {pid} - - "),
            second: u64::MAX,
            stamp: String::with_capacity(24),
        }
    }

    /// Replaces `out` with the framed line.
    pub fn frame_into(
        &mut self,
        out: &mut String,
        severity: Severity,
        time: SystemTime,
        msg: &str,
    ) {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        if secs != self.second {
            self.second = secs;
            self.stamp.clear();
            push_date_time(&mut self.stamp, secs);
        }
        out.clear();
        out.reserve(self.stamp.len() + self.tail.len() + msg.len() + 16);
        out.push('<');
        push_decimal(out, u64::from(priority(severity)), 1);
        out.push_str(">1 ");
        out.push_str(&self.stamp);
        push_decimal(out, u64::from(since.subsec_micros()), 6);
        out.push('Z');
        out.push_str(&self.tail);
        out.push_str(msg);
    }
}

/// `time` as an RFC 3339 UTC timestamp with microseconds, e.g. `2025-03-01T12:34:56.123456Z`.
#[cfg(test)]
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = String::with_capacity(27);
    push_date_time(&mut out, since.as_secs());
    push_decimal(&mut out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
    out
}

/// Appends `YYYY-MM-DDTHH:MM:SS.` for `secs` since the epoch.
fn push_date_time(out: &mut String, secs: u64) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    push_decimal(out, u64::try_from(y).unwrap_or(0), 4);
    out.push('-');
    push_decimal(out, u64::from(m), 2);
    out.push('-');
    push_decimal(out, u64::from(d), 2);
    out.push('T');
    push_decimal(out, rem / 3600, 2);
    out.push(':');
    push_decimal(out, rem / 60 % 60, 2);
    out.push(':');
    push_decimal(out, rem % 60, 2);
    out.push('.');
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_decimal(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(digits.len().saturating_sub(width));
    for &b in &digits[start..] {
        out.push(char::from(b));
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Verdict;
    use std::sync::Arc;
    use std::time::Duration;

    fn deny() -> DecisionRecord {
        DecisionRecord {
            verdict: Verdict::Deny,
            shadow: false,
            identity: Some(Arc::from("claude")),
            source: Some("192.0.2.7".parse().unwrap()),
            method: "tools/call".to_string(),
            tool: Some("firewall_delete_rule".to_string()),
            rule: Some("tools.firewall_delete_rule".to_string()),
            reason: Some("destructive tools are denied".to_string()),
            upstream: None,
            latency_us: Some(87),
            arguments: Vec::new(),
        }
    }

    fn with_tool(tool: &str) -> String {
        let mut rec = DecisionRecord::new(Verdict::Deny, "tools/call");
        rec.tool = Some(tool.to_string());
        format_decision(&rec)
    }

    const EMPTY_TAIL: &str = "rule=- reason=- upstream=- latency_us=-";

    #[test]
    fn golden_deny() {
        assert_eq!(
            format_decision(&deny()),
            "decision=deny identity=claude src=192.0.2.7 method=tools/call \
             tool=firewall_delete_rule rule=tools.firewall_delete_rule \
             reason=\"destructive tools are denied\" upstream=- latency_us=87"
        );
    }

    #[test]
    fn golden_allow_with_arguments() {
        let mut rec = deny();
        rec.verdict = Verdict::Allow;
        rec.tool = Some("firewall_list_rules".to_string());
        rec.rule = Some("tools.firewall_list_rules".to_string());
        rec.reason = None;
        rec.upstream = Some("ok".to_string());
        rec.source = Some("2001:db8::1".parse().unwrap());
        rec.latency_us = Some(12_345);
        rec.arguments = vec![
            ("interface".to_string(), "\"lan\"".to_string()),
            ("limit".to_string(), "50".to_string()),
            ("bad name=x".to_string(), "{}".to_string()),
        ];
        assert_eq!(
            format_decision(&rec),
            "decision=allow identity=claude src=2001:db8::1 method=tools/call \
             tool=firewall_list_rules rule=tools.firewall_list_rules reason=- upstream=ok \
             latency_us=12345 arg.interface=\"\\\"lan\\\"\" arg.limit=50 arg.bad_name_x={}"
        );
    }

    #[test]
    fn golden_minimal() {
        let rec = DecisionRecord::new(Verdict::Hide, "tools/list");
        assert_eq!(
            format_decision(&rec),
            "decision=hide identity=- src=- method=tools/list tool=- rule=- reason=- \
             upstream=- latency_us=-"
        );
    }

    #[test]
    fn hostile_newline_cannot_forge_a_line() {
        let line = with_tool("x\ndecision=allow tool=y\r\n<30>1 fake");
        assert_eq!(
            line,
            format!(
                "decision=deny identity=- src=- method=tools/call \
                 tool=\"x\\ndecision=allow tool=y\\r\\n<30>1 fake\" {EMPTY_TAIL}"
            )
        );
        assert!(!line.contains('\n') && !line.contains('\r'));
    }

    #[test]
    fn hostile_quotes_and_backslashes() {
        assert_eq!(
            with_tool(r#"a" rule="x\"#),
            format!(
                r#"decision=deny identity=- src=- method=tools/call tool="a\" rule=\"x\\" {EMPTY_TAIL}"#
            )
        );
        // A lone backslash is quoted too, so `\n` in the output always means an escape.
        assert!(with_tool(r"a\nb").contains(r#"tool="a\\nb""#));
    }

    #[test]
    fn empty_and_dash_values_are_quoted() {
        assert!(with_tool("").contains(" tool=\"\" "));
        assert!(with_tool("-").contains(" tool=\"-\" "));
    }

    #[test]
    fn unicode_is_kept_but_invisible_controls_are_escaped() {
        assert!(with_tool("résumé_工具").contains(" tool=résumé_工具 "));
        // Bidi override, NEL, line separator, zero-width space, NUL, ESC, DEL.
        let line = with_tool("a\u{202E}b\u{85}c\u{2028}d\u{200B}e\0f\u{1b}[31mg\u{7f}");
        assert!(
            line.contains(r#" tool="a\u{202e}b\u{85}c\u{2028}d\u{200b}e\u{0}f\u{1b}[31mg\u{7f}" "#),
            "{line}"
        );
        // Non-ASCII whitespace forces quotes (it would split the value).
        assert!(with_tool("a\u{3000}b").contains(" tool=\"a\u{3000}b\" "));
    }

    #[test]
    fn long_value_is_cut_at_256_chars() {
        let line = with_tool(&"A".repeat(10 * 1024));
        let expected = format!(" tool={}… ", "A".repeat(255));
        assert!(line.contains(&expected), "{line}");
        assert!(line.ends_with(EMPTY_TAIL));
        // Exactly 256 fits without a cut.
        let line = with_tool(&"B".repeat(256));
        assert!(line.contains(&format!(" tool={} ", "B".repeat(256))));
    }

    #[test]
    fn escapes_are_never_cut_in_half() {
        let line = with_tool(&"\n".repeat(10 * 1024));
        // 127 `\n` escapes (254 chars) + `…` = 255 chars; another escape would exceed 256.
        let expected = format!(" tool=\"{}…\" ", "\\n".repeat(127));
        assert!(line.contains(&expected), "{line}");
    }

    #[test]
    fn line_is_capped_at_4_kib_and_stays_one_line() {
        let mut rec = DecisionRecord::new(Verdict::Limit, "x".repeat(10_000));
        let hostile = "\u{202E}".repeat(10_000);
        rec.tool = Some(hostile.clone());
        rec.rule = Some(hostile.clone());
        rec.reason = Some("é".repeat(10_000));
        rec.arguments = (0..100)
            .map(|i| (format!("a{i}"), "🦀".repeat(300)))
            .collect();
        let line = format_decision(&rec);
        assert!(line.len() <= LINE_MAX_BYTES, "{}", line.len());
        assert!(line.ends_with(LINE_CUT), "{line}");
        assert!(line.starts_with("decision=limit identity=- src=- method=xxx"));
        assert!(line.contains(" upstream=- latency_us=- arg.a0="));
        assert!(!line.chars().any(|c| c.is_control()));
    }

    #[test]
    fn line_cap_cuts_the_pair_that_does_not_fit() {
        let mut rec = DecisionRecord::new(Verdict::Allow, "tools/call");
        rec.arguments = (0..40)
            .map(|i| (format!("k{i}"), "v".repeat(200)))
            .collect();
        let line = format_decision(&rec);
        assert!(line.len() <= LINE_MAX_BYTES);
        assert!(line.ends_with(LINE_CUT));
        // Every pair before the end is whole or cut with `…`; no dangling quote.
        for pair in line.trim_end_matches(LINE_CUT).split(' ') {
            assert!(pair.contains('='), "{pair}");
        }
    }

    #[test]
    fn fast_paths_match_the_general_path() {
        let mut values: Vec<String> = [
            "",
            "-",
            "--",
            "a",
            "tools/call",
            "a b",
            "a=b",
            "a\"b",
            "a\\b",
            " ",
            "\"",
            "x-",
            "192.0.2.7",
            "2001:db8::1",
            "destructive tools are denied",
            "é",
            "a\tb",
            "~!@#$%^&*()",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        for n in [250, 253, 254, 255, 256, 257, 300] {
            values.push("A".repeat(n));
            values.push(format!("{} x", "B".repeat(n.saturating_sub(2))));
            values.push(format!("\"{}", "C".repeat(n.saturating_sub(1))));
        }
        for value in &values {
            for max in [
                3, 4, 5, 6, 7, 8, 10, 20, 250, 255, 256, 257, 258, 259, 260, 261, 262, 300, 4000,
            ] {
                let mut fast = String::new();
                push_value(&mut fast, value, max);
                let mut general = String::new();
                push_value_escaped(&mut general, value, max);
                assert_eq!(fast, general, "value {value:?}, max {max}");
            }
        }
    }

    #[test]
    fn framer_caches_per_second_and_matches_rfc3339() {
        let mut framer = Framer::new("h", 7);
        let mut out = String::new();
        for (secs, micros) in [
            (1_700_000_000, 5),
            (1_700_000_000, 999_999),
            (1_700_000_001, 0),
        ] {
            let t = UNIX_EPOCH + Duration::new(secs, micros * 1000);
            framer.frame_into(&mut out, Severity::Warning, t, "m");
            assert_eq!(out, format!("<28>1 {} h mcpgw 7 - - m", rfc3339(t)));
        }
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::new(1_700_000_001, 42_000)),
            "2023-11-14T22:13:21.000042Z"
        );
    }

    #[test]
    fn event_text_is_one_line() {
        assert_eq!(
            format_event("upstream died\nexit 1"),
            "upstream died\\nexit 1"
        );
        assert_eq!(format_event(""), "-");
        assert!(format_event(&"y".repeat(10_000)).len() <= LINE_MAX_BYTES);
    }

    #[test]
    fn frame_shape() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(
            frame(Severity::Info, t, "fw.example", 42, "decision=allow"),
            "<30>1 2023-11-14T22:13:20.123456Z fw.example mcpgw 42 - - decision=allow"
        );
        assert_eq!(priority(Severity::Warning), 28);
        assert_eq!(priority(Severity::Error), 27);
        assert_eq!(priority(Severity::Notice), 29);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
        let y2100 = UNIX_EPOCH + Duration::from_secs(4_107_542_399); // 2100-02-28T23:59:59
        assert_eq!(rfc3339(y2100), "2100-02-28T23:59:59.000000Z");
    }

    #[test]
    fn header_fields() {
        assert_eq!(header_field("fw 1.example\n", 255), "fw1.example");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(header_field("ünï", 255), "n");
    }
}
