//! The audit trail: one record per decision, written to syslog without ever blocking a request.
//!
//! The request path calls [`Auditor::record`] / [`Auditor::event`], which only `try_send` on a
//! bounded queue and never block. One plain std writer thread formats RFC 5424 lines
//! (`<PRI>1 TIMESTAMP HOST mcpgw PID - - MSG`, facility daemon) and sends them, in order, as
//! datagrams to the local syslog socket. [`line`] holds the pure text rules, [`writer`] the
//! thread (reconnects, drop accounting).

mod line;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::SyslogConfig;

pub use line::{LINE_MAX_BYTES, VALUE_MAX_CHARS, format_decision};

/// What the gateway did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forwarded upstream.
    Allow,
    /// Refused by policy.
    Deny,
    /// Removed from a list answer (tools, prompts, resources).
    Hide,
    /// Refused by a rate or concurrency limit.
    Limit,
}

impl Verdict {
    /// The value of the `decision=` key.
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
    /// Gateway faults (upstream died or timed out, syslog lost records): `LOG_ERR`.
    Error,
    /// Denials and rate limits: `LOG_WARNING`.
    Warning,
    /// `LOG_NOTICE`.
    Notice,
    /// Allowed and hidden: `LOG_INFO`.
    Info,
}

/// One decision, as it will appear in the log.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub verdict: Verdict,
    /// The verdict was not enforced (shadow mode): the call went through anyway.
    pub shadow: bool,
    /// The authenticated identity's name.
    pub identity: Option<Arc<str>>,
    /// The agent's address.
    pub source: Option<IpAddr>,
    /// JSON-RPC method, e.g. `tools/call`.
    pub method: String,
    /// Tool, prompt or resource the method names.
    pub tool: Option<String>,
    /// The rule that made the decision, e.g. `tools.openvpn_disconnect_client.limits[0]`.
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// `ok`, `error` (a JSON-RPC error from upstream), `timeout`, `unavailable`, `died`,
    /// `protocol-error`, `cancelled`, `cached` (initialize), `abandoned` (the agent hung up or
    /// the gateway stopped while the call was upstream); `None` when not forwarded.
    pub upstream: Option<String>,
    /// Time from the request arriving to the answer, in microseconds.
    pub latency_us: Option<u64>,
    /// Values of the arguments the config names in `log_arguments`, as compact JSON.
    /// The auditor writes only names listed in `log_arguments`, whatever is here.
    pub arguments: Vec<(String, String)>,
}

impl DecisionRecord {
    /// A record with only the verdict and method set; fill in the rest as known.
    pub fn new(verdict: Verdict, method: impl Into<String>) -> DecisionRecord {
        DecisionRecord {
            verdict,
            shadow: false,
            identity: None,
            source: None,
            method: method.into(),
            tool: None,
            rule: None,
            reason: None,
            upstream: None,
            latency_us: None,
            arguments: Vec::new(),
        }
    }
}

/// Upstream statuses that are gateway faults (logged at Error).
const UPSTREAM_FAULTS: [&str; 3] = ["timeout", "unavailable", "died"];

/// Severity for a record: Deny/Limit -> Warning, Allow/Hide -> Info, and Error when the
/// upstream status is a fault (`timeout`, `unavailable`, `died`, optionally followed by `:`
/// or a space and details). A JSON-RPC `error` from upstream is not a gateway fault.
pub fn severity_of(rec: &DecisionRecord) -> Severity {
    if let Some(status) = rec.upstream.as_deref() {
        let word = status
            .split(|c: char| c == ':' || c.is_whitespace())
            .next()
            .unwrap_or("");
        if UPSTREAM_FAULTS.contains(&word) {
            return Severity::Error;
        }
    }
    match rec.verdict {
        Verdict::Deny | Verdict::Limit => Severity::Warning,
        Verdict::Allow | Verdict::Hide => Severity::Info,
    }
}

#[cfg(test)]
mod tests;

/// What travels from the callers to the writer thread.
enum Item {
    Decision(Box<DecisionRecord>),
    Event(Severity, String),
    /// Wakes the writer so it notices a shutdown promptly.
    Wake,
}

/// Writer states, in [`Shared::state`].
const RUNNING: u8 = 0;
/// Write what is queued, then stop.
const DRAIN: u8 = 1;
/// Stop at once.
const ABORT: u8 = 2;

/// Counters and flags shared by the callers and the writer thread.
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    state: AtomicU8,
}

struct Inner {
    tx: SyncSender<Item>,
    shared: Arc<Shared>,
    /// Signalled (or disconnected) when the writer thread ends.
    done: Mutex<Option<Receiver<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The audit trail's handle: cheap to clone, never blocks the caller.
#[derive(Clone)]
pub struct Auditor {
    inner: Arc<Inner>,
}

impl Auditor {
    /// Spawns the writer thread. Never fails because syslog is down: it keeps retrying.
    ///
    /// Were the thread impossible to spawn, every record would be counted as dropped.
    pub fn start(cfg: &SyslogConfig) -> Auditor {
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            state: AtomicU8::new(RUNNING),
        });
        let writer = writer::Writer::new(cfg, rx, Arc::clone(&shared), done_tx);
        let thread = std::thread::Builder::new()
            .name("mcpgw-audit".to_string())
            .spawn(move || writer.run());
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(e) => {
                eprintln!("mcpgw: cannot start the audit writer thread: {e}");
                None
            }
        };
        Auditor {
            inner: Arc::new(Inner {
                tx,
                shared,
                done: Mutex::new(Some(done_rx)),
                thread: Mutex::new(thread),
            }),
        }
    }

    /// Queues a decision. Never blocks: a full queue drops the record and counts it.
    pub fn record(&self, rec: DecisionRecord) {
        self.send(Item::Decision(Box::new(rec)));
    }

    /// A gateway event (start, reload, upstream restart, faults), same non-blocking path.
    /// The message is written as free text, escaped to one line.
    pub fn event(&self, severity: Severity, message: String) {
        self.send(Item::Event(severity, message));
    }

    /// Records dropped so far (queue full, syslog unavailable, or after shutdown).
    pub fn dropped(&self) -> u64 {
        self.inner.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records (decisions and events) written to syslog so far; the writer's own
    /// "records dropped" reports are not counted.
    pub fn written(&self) -> u64 {
        self.inner.shared.written.load(Ordering::Relaxed)
    }

    /// Flushes what is queued (waiting at most `wait`) and stops the thread. When `wait` runs
    /// out the thread is told to stop after its current send and count what is still queued
    /// as dropped. Records made after shutdown are counted as dropped. Calling it again is
    /// harmless.
    pub fn shutdown(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let shared = &self.inner.shared;
        let _ = shared
            .state
            .compare_exchange(RUNNING, DRAIN, Ordering::SeqCst, Ordering::SeqCst);
        // The writer may be asleep waiting for work; a full queue means it is busy anyway.
        let _ = self.inner.tx.try_send(Item::Wake);
        let mut done = self
            .inner
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let finished = match done.as_ref() {
            // Ok: the writer said so; Disconnected: it ended (its sender was dropped).
            Some(rx) => !matches!(
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            ),
            None => true,
        };
        if !finished {
            // Still busy (a stalled syslog): stop after the current send, keep `done` so a
            // later call can wait again.
            shared.state.store(ABORT, Ordering::SeqCst);
            return;
        }
        done.take();
        let handle = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // The thread has signalled its end; this join does not wait.
            let _ = handle.join();
        }
    }

    fn send(&self, item: Item) {
        if self.inner.shared.state.load(Ordering::Relaxed) != RUNNING {
            self.inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.inner.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
