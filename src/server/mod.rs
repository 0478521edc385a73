//! The gateway process: composes the request path and runs it until told to stop.
//!
//! ```text
//! listener (TCP, TLS, HTTP/1.1 + h2, limits)
//!   -> http (the /mcp endpoint: auth, header checks, strict parse, session)
//!     -> dispatch (decide with the policy, forward upstream, filter lists, audit record)
//! ```
//!
//! Everything a reload may change (policy, tokens, certificate, origins, logged arguments)
//! lives in one immutable [`Runtime`] behind an `ArcSwap`. A request loads the current
//! runtime once and is decided under it start to finish; SIGHUP builds a new runtime and
//! swaps it in only if the whole new config is valid.

pub mod auth;
pub mod balance;
pub mod dispatch;
pub mod http;
pub mod listener;
pub mod session;
pub mod tls;
pub mod workers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use crate::audit::{Auditor, Severity};
use crate::config::{self, Config, ListenConfig, SyslogConfig, UpstreamConfig};
use crate::identity::{Identity, TokenTable};
use crate::policy::{Policy, PolicySection, PolicySource};
use crate::upstream::{Upstream, UpstreamEvent};

use auth::FailureLimiter;
use session::Sessions;

/// What a reload can replace, swapped whole.
pub struct Runtime {
    pub policy: Policy,
    /// Shared so a connection can tell, by address, whether a reload replaced it.
    pub tokens: Arc<TokenTable>,
    /// `None` for plain HTTP on loopback.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub allowed_origins: Vec<String>,
    pub log_arguments: Vec<String>,
    // --- identities and grants ---
    /// `[profiles.NAME]` policies; an identity with `policy = "NAME"` is decided by one.
    pub profiles: BTreeMap<Arc<str>, Policy>,
    /// The client CA bundle `tls` verifies agents' certificates against (`None`: no client
    /// certificates). A connection's certificate names count only while this is unchanged.
    pub client_trust: Option<Arc<tls::ClientTrust>>,
    /// Decides for an identity whose profile is missing (never, for a validated config):
    /// denies every tool, so a mix-up can never fall back to a wider policy.
    deny_all: Policy,
}

impl Runtime {
    /// Builds a runtime from a validated config (reads the certificate files).
    pub fn build(config: Config) -> Result<Runtime, String> {
        let (tls, client_trust) = match &config.listen.tls {
            Some(files) => {
                let (tls, trust) = tls::load(files)?;
                (Some(tls), trust)
            }
            None => (None, None),
        };
        Ok(Runtime {
            tokens: Arc::new(TokenTable::new(&config.identities)),
            tls,
            allowed_origins: config.listen.allowed_origins.clone(),
            log_arguments: config.syslog.log_arguments.clone(),
            policy: config.policy,
            profiles: config.profiles,
            client_trust,
            deny_all: deny_all()?,
        })
    }

    /// The policy that decides for `identity`: its profile, or `[policy]` without one.
    pub fn policy_for(&self, identity: &Identity) -> &Policy {
        match &identity.profile {
            None => &self.policy,
            Some(name) => self.profiles.get(name).unwrap_or(&self.deny_all),
        }
    }

    /// Keeps the rate-limit buckets of `[policy]` and of every profile of the same name
    /// (see [`Policy::carry_state_from`]), for a reload.
    pub fn carry_state_from(&mut self, old: &Runtime) {
        self.policy.carry_state_from(&old.policy);
        for (name, policy) in &mut self.profiles {
            if let Some(previous) = old.profiles.get(name) {
                policy.carry_state_from(previous);
            }
        }
    }
}

/// An empty `[policy]`: default deny, unknown tools denied.
fn deny_all() -> Result<Policy, String> {
    let map = config::SourceMap {
        file: Path::new("(built-in deny-all policy)"),
        text: "",
    };
    let source = PolicySource {
        map: &map,
        base: Path::new("."),
        span: 0..0,
    };
    Policy::compile(PolicySection::default(), &source).map_err(|e| e.to_string())
}

/// State shared by every connection for the life of the process.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    /// Listener limits (fixed at start: changing them needs a restart).
    pub listen: ListenConfig,
    /// The audit writer's settings (fixed at start, like `listen`).
    pub syslog: SyslogConfig,
    /// What the upstream was started with (fixed at start; env files as read then).
    pub upstream_config: UpstreamConfig,
    pub sessions: Sessions,
    pub failures: FailureLimiter,
    /// One permit per open agent connection (`listen.max_connections`), across all workers.
    pub connection_slots: Arc<tokio::sync::Semaphore>,
    pub upstream: Upstream,
    pub auditor: Auditor,
}

impl ListenConfig {
    /// How long a request body may take to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        self.header_read_timeout.max(Duration::from_secs(30))
    }
}

/// Loads `path`, starts the upstream and serves agents until SIGTERM or SIGINT.
pub async fn run(path: &Path) -> Result<(), String> {
    let config = config::load(path).map_err(|e| e.to_string())?;
    let auditor = Auditor::start(&config.syslog);
    let result = run_with(path, config, auditor.clone()).await;
    if let Err(e) = &result {
        auditor.event(Severity::Error, format!("fault=stopped error={e:?}"));
    }
    auditor.shutdown(Duration::from_secs(2));
    result
}

async fn run_with(path: &Path, config: Config, auditor: Auditor) -> Result<(), String> {
    let listen = config.listen.clone();
    let upstream_config = config.upstream.clone();
    for warning in config.policy.warnings() {
        auditor.event(Severity::Notice, format!("policy warning: {warning}"));
    }
    for (name, profile) in &config.profiles {
        for warning in profile.warnings() {
            auditor.event(
                Severity::Notice,
                format!("policy warning: profiles.{name}: {warning}"),
            );
        }
    }
    let summary = config.policy.summary();
    let syslog = config.syslog.clone();
    let runtime = Runtime::build(config)?;

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    tokio::spawn(report_upstream_events(events_rx, auditor.clone()));
    let upstream = Upstream::start(&upstream_config, events_tx)
        .await
        .map_err(|e| format!("the upstream MCP server did not start: {e}"))?;

    // Workers watch the sockets with their own runtimes.
    let (listeners, bound) = match bind_all(&listen.addresses) {
        Ok(bound) => bound,
        Err(e) => {
            upstream.shutdown().await;
            return Err(e);
        }
    };
    let scheme = if runtime.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        sessions: Sessions::new(listen.max_sessions, listen.session_idle_timeout),
        failures: FailureLimiter::new(listen.auth_failures_per_minute),
        connection_slots: Arc::new(tokio::sync::Semaphore::new(listen.max_connections)),
        listen,
        syslog,
        upstream_config,
        upstream: upstream.clone(),
        auditor: auditor.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker_count = workers::count(shared.listen.workers);
    let workers = match workers::start(&shared, &listeners, worker_count, &stop_tx).await {
        Ok(w) => w,
        Err(e) => {
            upstream.shutdown().await;
            return Err(e);
        }
    };
    drop(listeners);
    let urls: Vec<String> = bound
        .iter()
        .map(|a| format!("{scheme}://{a}/mcp"))
        .collect();
    let started = format!(
        "started listen={} workers={worker_count} policy=\"{summary}\"",
        urls.join(",")
    );
    auditor.event(Severity::Notice, started.clone());
    // Also on stderr: under daemon(8) it reaches the log, and tests wait for this line (the
    // first word after "on" is the first address).
    let addresses: Vec<String> = bound.iter().map(SocketAddr::to_string).collect();
    // Before the line that says the gateway is up: a SIGHUP or SIGTERM sent as soon as it
    // is read must find the handlers, not the default action (which ends the process).
    let handlers = SignalHandlers::install();
    eprintln!(
        "mcpgw: listening on {} ({scheme}) with policy: {summary}",
        addresses.join(" ")
    );

    tokio::spawn(housekeeping(shared.clone(), stop_rx));
    signals(path, &shared, handlers).await;
    let _ = stop_tx.send(true);
    let stopped = workers.join().await;
    upstream.shutdown().await;
    if let Err(e) = &stopped {
        auditor.event(Severity::Error, format!("fault=workers error={e:?}"));
    }
    auditor.event(Severity::Notice, "stopped".into());
    eprintln!("mcpgw: stopped");
    stopped
}

/// Binds every listen address; the sockets (non-blocking, for the workers' runtimes) and the
/// addresses they are bound to (a port 0 resolved).
///
/// An IPv6 socket takes IPv6 only, as FreeBSD's default has it everywhere: `[::]:8443` and
/// `0.0.0.0:8443` can then be listed together, and `[::]` never quietly takes IPv4 too.
fn bind_all(
    addresses: &[SocketAddr],
) -> Result<(Vec<std::net::TcpListener>, Vec<SocketAddr>), String> {
    let mut listeners = Vec::with_capacity(addresses.len());
    let mut bound = Vec::with_capacity(addresses.len());
    for &address in addresses {
        let listener = bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
        bound.push(
            listener
                .local_addr()
                .map_err(|e| format!("cannot listen on {address}: {e}"))?,
        );
        listeners.push(listener);
    }
    Ok((listeners, bound))
}

fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::AsRawFd;
    let socket = if address.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    // As tokio's and std's own `bind` do: a restart is not refused for the old sockets'
    // TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if address.is_ipv6() {
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is the open socket `socket` owns; the pointer is to a live
        // local of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    socket.bind(address)?;
    socket.listen(1024)?.into_std()
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment this exists.
struct SignalHandlers {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl SignalHandlers {
    /// `None` when they cannot be installed.
    fn install() -> Option<SignalHandlers> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(SignalHandlers {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }
}

/// Waits for SIGTERM/SIGINT (returns) and handles SIGHUP (reload) meanwhile.
async fn signals(path: &Path, shared: &Arc<Shared>, handlers: Option<SignalHandlers>) {
    let Some(SignalHandlers {
        mut term,
        mut int,
        mut hup,
    }) = handlers
    else {
        shared.auditor.event(
            Severity::Error,
            "fault=signals error=\"cannot install signal handlers\"".into(),
        );
        // Without handlers the process can still be killed; keep serving.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                // Parsing, certificate loading and policy compilation take milliseconds; off
                // this thread, they never hold up the stdio upstream's pipes it serves.
                let (path, shared) = (path.to_path_buf(), shared.clone());
                let _ = tokio::task::spawn_blocking(move || reload(&path, &shared)).await;
            }
        }
    }
}

/// What a valid new `config` changes that only a restart applies (fixed in [`Shared`]).
fn waits_for_restart(config: &Config, shared: &Shared) -> Vec<String> {
    let mut changes = Vec::new();
    if config.listen.addresses != shared.listen.addresses {
        let addresses: Vec<String> = config
            .listen
            .addresses
            .iter()
            .map(SocketAddr::to_string)
            .collect();
        changes.push(format!(
            "listen.address changed to {}",
            addresses.join(", ")
        ));
    }
    if config.listen.workers != shared.listen.workers {
        changes.push(format!(
            "listen.workers changed to {}",
            config.listen.workers
        ));
    }
    let limits = |l: &ListenConfig| {
        (
            l.max_body_bytes,
            l.max_header_bytes,
            l.header_read_timeout,
            l.max_connections,
            l.max_sessions,
            l.session_idle_timeout,
            l.auth_failures_per_minute,
        )
    };
    if limits(&config.listen) != limits(&shared.listen) {
        changes.push("a [listen] limit changed".to_string());
    }
    if config.upstream != shared.upstream_config {
        changes.push("[upstream] changed".to_string());
    }
    if config.syslog != shared.syslog {
        changes.push("[syslog] changed".to_string());
    }
    changes
}

/// The first of `addresses` that is not a loopback address.
fn not_loopback(addresses: &[SocketAddr]) -> Option<SocketAddr> {
    addresses.iter().copied().find(|a| !a.ip().is_loopback())
}

/// Re-reads the config; swaps the new runtime in only if all of it is valid.
pub fn reload(path: &Path, shared: &Shared) {
    let outcome = config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            // The sockets stay the ones bound at start: plain HTTP may come in by reload only
            // where they are all loopback, whatever addresses the new file names.
            if config.listen.tls.is_none()
                && let Some(address) = not_loopback(&shared.listen.addresses)
            {
                return Err(format!(
                    "plain HTTP would apply to {address}, which is listening now and not loopback; \
                     keep the certificate, or change listen.address and restart"
                ));
            }
            let waiting = waits_for_restart(&config, shared);
            let summary = config.policy.summary();
            Runtime::build(config).map(|r| (r, summary, waiting))
        });
    match outcome {
        Ok((mut runtime, summary, waiting)) => {
            for change in waiting {
                shared.auditor.event(
                    Severity::Warning,
                    format!("reload: {change}; it takes effect after a restart"),
                );
            }
            // Unchanged limits keep their buckets: a reload is not a way to reset quotas.
            runtime.carry_state_from(&shared.runtime.load());
            shared.runtime.store(Arc::new(runtime));
            shared
                .auditor
                .event(Severity::Notice, format!("reloaded policy=\"{summary}\""));
            eprintln!("mcpgw: reloaded {}", path.display());
        }
        Err(e) => {
            shared.auditor.event(
                Severity::Error,
                format!("reload rejected, keeping the running config: {e}"),
            );
            eprintln!("mcpgw: reload rejected, keeping the running config: {e}");
        }
    }
}

/// Expires sessions and prunes the auth-failure table and rate-limit keys once a minute.
async fn housekeeping(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                shared.sessions.sweep();
                shared.failures.prune();
                let runtime = shared.runtime.load();
                runtime.policy.prune();
                runtime.profiles.values().for_each(Policy::prune);
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn report_upstream_events(mut rx: mpsc::UnboundedReceiver<UpstreamEvent>, auditor: Auditor) {
    while let Some(event) = rx.recv().await {
        let (severity, text) = match event {
            UpstreamEvent::Started { pid } => (
                Severity::Notice,
                format!(
                    "upstream=started pid={}",
                    pid.map_or("-".into(), |p| p.to_string())
                ),
            ),
            UpstreamEvent::Stopped { status, pending } => (
                Severity::Notice,
                format!("upstream=stopped status=\"{status}\" pending_failed={pending}"),
            ),
            UpstreamEvent::Exited { status, pending } => (
                Severity::Error,
                format!("fault=upstream-exited status=\"{status}\" pending_failed={pending}"),
            ),
            UpstreamEvent::Restarting { after } => (
                Severity::Notice,
                format!("upstream=restarting after_ms={}", after.as_millis()),
            ),
            UpstreamEvent::NonJsonLine(line) => (
                Severity::Notice,
                format!("upstream=non-json-line line={:?}", truncate(&line, 200)),
            ),
            UpstreamEvent::Stderr(line) => (
                Severity::Info,
                format!("upstream=stderr line={:?}", truncate(&line, 200)),
            ),
            UpstreamEvent::Dropped(what) => {
                (Severity::Info, format!("upstream=dropped message={what:?}"))
            }
        };
        auditor.event(severity, text);
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_by_reload_needs_every_listening_address_loopback() {
        let loopback: Vec<SocketAddr> = vec![
            "127.0.0.1:8443".parse().unwrap(),
            "[::1]:8443".parse().unwrap(),
        ];
        assert_eq!(not_loopback(&loopback), None);
        let lan: Vec<SocketAddr> = vec![
            "127.0.0.1:8443".parse().unwrap(),
            "192.168.1.1:8443".parse().unwrap(),
        ];
        assert_eq!(not_loopback(&lan), Some(lan[1]));
        let any: Vec<SocketAddr> = vec!["[::]:8443".parse().unwrap()];
        assert_eq!(not_loopback(&any), Some(any[0]));
    }
}
