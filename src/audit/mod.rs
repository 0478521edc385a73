//! The audit trail: one record per decision, written to syslog without ever blocking a request.
//!
//! INTERFACE (fixed; the implementation is being written): the request path calls
//! [`Auditor::record`] / [`Auditor::event`], which only `try_send` on a bounded queue. One
//! writer thread formats RFC 5424 lines and sends them to the local syslog socket.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::SyslogConfig;

/// What the gateway did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Hide,
    Limit,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Hide => "hide",
            Verdict::Limit => "limit",
        }
    }
}

/// Syslog severities the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Notice,
    Info,
}

/// One decision, as it will appear in the log.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub verdict: Verdict,
    pub identity: Option<Arc<str>>,
    pub source: Option<IpAddr>,
    /// JSON-RPC method, e.g. `tools/call`.
    pub method: String,
    /// Tool, prompt or resource the method names.
    pub tool: Option<String>,
    /// The rule that made the decision, e.g. `tools.openvpn_disconnect_client.limits[0]`.
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// `ok`, `error` (a JSON-RPC error from upstream), `timeout`, `unavailable`; `None` when not forwarded.
    pub upstream: Option<String>,
    /// Time from the request arriving to the answer, in microseconds.
    pub latency_us: Option<u64>,
    /// Values of the arguments the config names in `log_arguments`, as compact JSON.
    pub arguments: Vec<(String, String)>,
}

// TEMPORARY stub until the writer lands (replaced by the wt-audit branch).
#[derive(Clone, Default)]
pub struct Auditor {}
impl Auditor {
    pub fn start(_cfg: &SyslogConfig) -> Auditor {
        Auditor {}
    }
    pub fn record(&self, rec: DecisionRecord) {
        eprintln!("{rec:?}");
    }
    pub fn event(&self, _severity: Severity, message: String) {
        eprintln!("{message}");
    }
    pub fn dropped(&self) -> u64 {
        0
    }
    pub fn written(&self) -> u64 {
        0
    }
    pub fn shutdown(&self, _wait: std::time::Duration) {}
}
