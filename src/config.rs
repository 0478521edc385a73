//! The configuration file: TOML text -> a validated [`Config`], with errors that point at
//! `FILE:LINE:COL`.
//!
//! Parsing happens in two steps. Serde turns the text into the raw `*Section` structs, which
//! reject unknown keys so a typo never silently falls back to a default. Validation then checks
//! what serde cannot (addresses, paths, token hashes, policy rules) and keeps the span of every
//! value it checks, so an error can name the exact place in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::identity::{IdentityConfig, TokenHash};
use crate::policy::args::net::Net;
use crate::policy::{Policy, PolicySection, PolicySource};

/// Where the gateway reads its configuration unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/usr/local/etc/mcpgw/mcpgw.toml";

/// The default local syslog socket of the platform.
#[cfg(target_os = "freebsd")]
pub const DEFAULT_SYSLOG_SOCKET: &str = "/var/run/log";
#[cfg(not(target_os = "freebsd"))]
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// A configuration error with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong, in a sentence.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns byte offsets into `LINE:COL` for one source text.
pub struct SourceMap<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl SourceMap<'_> {
    /// An error at the start of `span` (or at no place when `span` is `None`).
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            // An empty span means "no place" (values converted from JSON carry none).
            position: span
                .filter(|s| !s.is_empty())
                .map(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

// ---------------------------------------------------------------------------------------------
// Raw sections, as serde reads them.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSection {
    listen: Spanned<ListenSection>,
    upstream: Spanned<UpstreamSection>,
    #[serde(default)]
    syslog: Option<Spanned<SyslogSection>>,
    #[serde(default, rename = "identity")]
    identities: Vec<Spanned<IdentitySection>>,
    policy: Spanned<crate::policy::PolicySection>,
    /// `[profiles.NAME]`: policies of the `[policy]` shape that identities choose by name.
    #[serde(default)]
    profiles: BTreeMap<Spanned<String>, Spanned<PolicySection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenSection {
    address: Spanned<AddressSpec>,
    #[serde(default)]
    cert: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    /// Plain HTTP instead of TLS; accepted only on a loopback address.
    #[serde(default)]
    plaintext: bool,
    #[serde(default)]
    max_body_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    max_header_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    header_read_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    max_sessions: Option<Spanned<u64>>,
    #[serde(default)]
    session_idle_timeout_s: Option<Spanned<u64>>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    auth_failures_per_minute: Option<Spanned<u64>>,
    /// Connection worker threads (0: one per core, at most 4).
    #[serde(default)]
    workers: Option<Spanned<u64>>,
    /// PEM bundle of the CA(s) that issue agents' client certificates.
    #[serde(default)]
    client_ca: Option<Spanned<String>>,
    /// Whether a client certificate is needed for the TLS handshake (default: optional).
    #[serde(default)]
    client_auth: Option<Spanned<ClientAuth>>,
}

/// `client_auth = "optional" | "required"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ClientAuth {
    Optional,
    Required,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamSection {
    #[serde(default)]
    command: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_file: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    call_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyslogSection {
    #[serde(default)]
    socket: Option<String>,
    #[serde(default)]
    queue: Option<Spanned<u64>>,
    #[serde(default)]
    send_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    log_arguments: Vec<String>,
    #[serde(default)]
    hostname: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySection {
    name: Spanned<String>,
    #[serde(default)]
    token_sha256: Vec<Spanned<String>>,
    /// Source networks (CIDR) the identity may authenticate from.
    #[serde(default)]
    networks: Option<Spanned<Vec<Spanned<String>>>>,
    /// Client-certificate name (DNS SAN entry, or subject CN) that authenticates the identity.
    #[serde(default)]
    client_cert: Option<Spanned<String>>,
    /// With tokens: the certificate is needed as well as a token.
    #[serde(default)]
    require_client_cert: Option<Spanned<bool>>,
    /// `[profiles.NAME]` to decide this identity's requests with, instead of `[policy]`.
    #[serde(default)]
    policy: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// A complete, validated configuration. Built only by [`load`] / [`parse`]; every field holds
/// a checked value.
#[derive(Debug)]
pub struct Config {
    /// The file this configuration came from (relative paths in it are relative to its folder).
    pub path: PathBuf,
    pub listen: ListenConfig,
    pub upstream: UpstreamConfig,
    pub syslog: SyslogConfig,
    pub identities: Vec<IdentityConfig>,
    pub policy: Policy,
    /// `[profiles.NAME]` policies, chosen per identity with `policy = "NAME"`.
    pub profiles: BTreeMap<Arc<str>, Policy>,
}

/// The agent-facing listener.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Where agents connect: at least one address, none twice.
    pub addresses: Vec<SocketAddr>,
    /// `None` only when `plaintext` is set (and then every address is loopback).
    pub tls: Option<TlsFiles>,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_sessions: usize,
    pub session_idle_timeout: Duration,
    /// Origins allowed in an `Origin` header (exact match, e.g. `https://fw.example.net`).
    pub allowed_origins: Vec<String>,
    /// Failed authentications allowed per source address and minute before 429.
    pub auth_failures_per_minute: u32,
    /// Threads that accept and serve agent connections; 0 picks one per core (at most 4).
    pub workers: usize,
}

/// PEM files for the server certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates: the CA bundle and whether one is required.
    pub client_ca: Option<ClientCaFile>,
}

/// `[listen] client_ca` and `client_auth`.
#[derive(Debug, Clone)]
pub struct ClientCaFile {
    /// PEM bundle of the CA certificates agents' certificates must chain to.
    pub file: PathBuf,
    /// `client_auth = "required"`: the TLS handshake fails without a valid certificate.
    pub required: bool,
}

/// How to reach the MCP server the gateway fronts.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamKind {
    /// A child process speaking MCP over stdin/stdout (the usual way to run the OPNsense MCP server).
    Stdio {
        command: String,
        args: Vec<String>,
        /// Extra environment: `env` of the config, then the `env_file`, later wins.
        env: BTreeMap<String, String>,
        /// Kept so a reload re-reads it.
        env_file: Option<PathBuf>,
    },
    /// A Streamable HTTP endpoint (e.g. `http://127.0.0.1:3001/mcp`).
    Http { url: String },
}

/// The upstream and how long to wait for it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub kind: UpstreamKind,
    pub call_timeout: Duration,
}

/// Where decisions are written.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    pub socket: PathBuf,
    pub queue: usize,
    /// Longest one send to the socket may block (a stuck syslog daemon). Records that wait
    /// meanwhile stay queued; when the queue is full they are dropped and counted.
    pub send_timeout: Duration,
    /// Argument names whose values are written into decision lines (none by default).
    pub log_arguments: Vec<String>,
    /// HOSTNAME field of the RFC 5424 header; the machine's name when unset.
    pub hostname: Option<String>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
            queue: 4096,
            send_timeout: Duration::from_millis(100),
            log_arguments: Vec::new(),
            hostname: None,
        }
    }
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        position: None,
        message: format!("cannot read the configuration: {e}"),
    })?;
    parse(path, &text)
}

/// Validates configuration `text` that was read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let map = SourceMap { file: path, text };
    let raw: FileSection = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_string();
        map.error(e.span(), message)
    })?;
    let base = path.parent().unwrap_or(Path::new("."));

    let listen = validate_listen(&map, base, raw.listen)?;
    let upstream = validate_upstream(&map, base, raw.upstream)?;
    let syslog = match raw.syslog {
        Some(s) => validate_syslog(&map, s.into_inner())?,
        None => SyslogConfig::default(),
    };
    let policy_span = raw.policy.span();
    let source = PolicySource {
        map: &map,
        base,
        span: policy_span,
    };
    let policy = Policy::compile(raw.policy.into_inner(), &source)?;
    let profiles = compile_profiles(&map, base, raw.profiles)?;
    let client_ca = listen.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let identities = validate_identities(&map, raw.identities, &profiles, client_ca)?;
    for identity in &identities {
        let chosen = identity
            .policy
            .as_ref()
            .and_then(|p| profiles.get(p))
            .unwrap_or(&policy);
        chosen
            .check_identity_name(&identity.name)
            .map_err(|m| map.error(Some(identity.span.clone()), m))?;
    }
    Ok(Config {
        path: path.to_path_buf(),
        listen,
        upstream,
        syslog,
        identities,
        policy,
        profiles,
    })
}

/// Compiles every `[profiles.NAME]` table like `[policy]`.
fn compile_profiles(
    map: &SourceMap,
    base: &Path,
    sections: BTreeMap<Spanned<String>, Spanned<PolicySection>>,
) -> Result<BTreeMap<Arc<str>, Policy>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, section) in sections {
        check_name(name.get_ref())
            .map_err(|m| map.error(Some(name.span()), format!("profile name {m}")))?;
        let source = PolicySource {
            map,
            base,
            span: section.span(),
        };
        let policy = Policy::compile(section.into_inner(), &source)?;
        out.insert(Arc::from(name.into_inner()), policy);
    }
    Ok(out)
}

/// Identity and profile names: what may follow `identity=` in a log line unquoted.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(format!(
            "{name:?} must be non-empty ASCII letters, digits, '-', '_', '.' or '@'"
        ));
    }
    Ok(())
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn bounded(
    map: &SourceMap,
    value: Option<Spanned<u64>>,
    name: &str,
    default: u64,
    range: Range<u64>,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err(map.error(
            Some(v.span()),
            format!(
                "{name} = {} is out of range: it must be at least {} and below {}",
                v.get_ref(),
                range.start,
                range.end
            ),
        )),
    }
}

/// Most addresses one gateway listens on.
const MAX_LISTEN_ADDRESSES: usize = 16;

/// `listen.address`: one address, or a list of them (e.g. a LAN's IPv4 and IPv6 address).
#[derive(Debug)]
enum AddressSpec {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for AddressSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Expect;
        impl<'de> serde::de::Visitor<'de> for Expect {
            type Value = AddressSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address such as \"192.168.1.1:8443\", or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AddressSpec, E> {
                Ok(AddressSpec::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AddressSpec, A::Error> {
                let mut all = Vec::new();
                while let Some(address) = seq.next_element::<Spanned<String>>()? {
                    all.push(address);
                }
                Ok(AddressSpec::Many(all))
            }
        }
        d.deserialize_any(Expect)
    }
}

/// The socket addresses `listen.address` names, each checked, with no repeats.
fn listen_addresses(
    map: &SourceMap,
    spec: &Spanned<AddressSpec>,
) -> Result<Vec<(SocketAddr, Range<usize>)>, ConfigError> {
    let written: Vec<(&str, Range<usize>)> = match spec.get_ref() {
        AddressSpec::One(a) => vec![(a.as_str(), spec.span())],
        AddressSpec::Many(list) => list
            .iter()
            .map(|a| (a.get_ref().as_str(), a.span()))
            .collect(),
    };
    if written.is_empty() {
        return Err(map.error(
            Some(spec.span()),
            "listen.address = [] listens nowhere: name at least one address",
        ));
    }
    if written.len() > MAX_LISTEN_ADDRESSES {
        return Err(map.error(
            Some(spec.span()),
            format!(
                "listen.address names {} addresses; at most {MAX_LISTEN_ADDRESSES}",
                written.len()
            ),
        ));
    }
    let mut addresses: Vec<(SocketAddr, Range<usize>)> = Vec::with_capacity(written.len());
    for (text, span) in written {
        let address: SocketAddr = text.parse().map_err(|_| {
            map.error(
                Some(span.clone()),
                format!(
                    "listen.address {text:?} is not an IP address with a port, e.g. \"0.0.0.0:8443\" or \"[::1]:8443\""
                ),
            )
        })?;
        if let SocketAddr::V6(v6) = address
            && let Some(v4) = v6.ip().to_ipv4_mapped()
        {
            // An IPv6 socket here takes IPv6 only, so a mapped address could never be bound.
            return Err(map.error(
                Some(span),
                format!(
                    "listen.address {text:?} is an IPv4 address in IPv6 form: write it as \"{v4}:{}\"",
                    address.port()
                ),
            ));
        }
        if addresses.iter().any(|(a, _)| *a == address) {
            return Err(map.error(Some(span), format!("listen.address names {address} twice")));
        }
        addresses.push((address, span));
    }
    Ok(addresses)
}

fn validate_listen(
    map: &SourceMap,
    base: &Path,
    section: Spanned<ListenSection>,
) -> Result<ListenConfig, ConfigError> {
    let span = section.span();
    let s = section.into_inner();
    let addresses = listen_addresses(map, &s.address)?;
    let tls = if s.plaintext {
        if let Some((address, span)) = addresses.iter().find(|(a, _)| !a.ip().is_loopback()) {
            return Err(map.error(
                Some(span.clone()),
                format!(
                    "plain HTTP is allowed only on a loopback address, not {}: remove `plaintext = true` or listen on 127.0.0.1 / [::1]",
                    address.ip()
                ),
            ));
        }
        if let Some(c) = s.cert.as_ref().or(s.key.as_ref()) {
            return Err(map.error(
                Some(c.span()),
                "`plaintext = true` and a certificate contradict each other: keep one",
            ));
        }
        if let Some(ca) = &s.client_ca {
            return Err(map.error(
                Some(ca.span()),
                "client certificates need TLS: `client_ca` cannot go with `plaintext = true`",
            ));
        }
        None
    } else {
        let (Some(cert), Some(key)) = (s.cert, s.key) else {
            return Err(map.error(
                Some(span),
                "[listen] needs `cert` and `key` (PEM files); plain HTTP needs `plaintext = true` on a loopback address",
            ));
        };
        Some(TlsFiles {
            cert: resolve(base, cert.get_ref()),
            key: resolve(base, key.get_ref()),
            client_ca: s.client_ca.as_ref().map(|ca| ClientCaFile {
                file: resolve(base, ca.get_ref()),
                required: s
                    .client_auth
                    .as_ref()
                    .is_some_and(|a| *a.get_ref() == ClientAuth::Required),
            }),
        })
    };
    if let (Some(mode), None) = (&s.client_auth, &s.client_ca) {
        return Err(map.error(
            Some(mode.span()),
            "`client_auth` needs `client_ca` (the PEM bundle of the CA that issues agents' certificates)",
        ));
    }
    Ok(ListenConfig {
        addresses: addresses.into_iter().map(|(a, _)| a).collect(),
        tls,
        max_body_bytes: bounded(
            map,
            s.max_body_bytes,
            "max_body_bytes",
            1 << 20,
            256..(64 << 20),
        )? as usize,
        max_header_bytes: bounded(
            map,
            s.max_header_bytes,
            "max_header_bytes",
            16 << 10,
            1024..(1 << 20),
        )? as usize,
        header_read_timeout: Duration::from_millis(bounded(
            map,
            s.header_read_timeout_ms,
            "header_read_timeout_ms",
            10_000,
            100..600_001,
        )?),
        max_connections: bounded(map, s.max_connections, "max_connections", 256, 1..100_001)?
            as usize,
        max_sessions: bounded(map, s.max_sessions, "max_sessions", 1024, 1..1_000_001)? as usize,
        session_idle_timeout: Duration::from_secs(bounded(
            map,
            s.session_idle_timeout_s,
            "session_idle_timeout_s",
            3600,
            1..(7 * 86400 + 1),
        )?),
        allowed_origins: s.allowed_origins,
        auth_failures_per_minute: bounded(
            map,
            s.auth_failures_per_minute,
            "auth_failures_per_minute",
            10,
            1..100_001,
        )? as u32,
        workers: bounded(map, s.workers, "workers", 0, 0..65)? as usize,
    })
}

fn validate_upstream(
    map: &SourceMap,
    base: &Path,
    section: Spanned<UpstreamSection>,
) -> Result<UpstreamConfig, ConfigError> {
    let span = section.span();
    let s = section.into_inner();
    let call_timeout = Duration::from_millis(bounded(
        map,
        s.call_timeout_ms,
        "call_timeout_ms",
        60_000,
        10..3_600_001,
    )?);
    let kind = match (s.command, s.url) {
        (Some(command), None) => {
            if command.get_ref().trim().is_empty() {
                return Err(map.error(Some(command.span()), "upstream.command is empty"));
            }
            let env_file = s.env_file.map(|f| resolve(base, f.get_ref()));
            let mut env = s.env;
            if let Some(file) = &env_file {
                env.extend(read_env_file(file).map_err(|m| map.error(Some(span.clone()), m))?);
            }
            UpstreamKind::Stdio {
                command: command.into_inner(),
                args: s.args,
                env,
                env_file,
            }
        }
        (None, Some(url)) => {
            let u = url.get_ref();
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.parse::<http::Uri>().is_err()
            {
                return Err(map.error(
                    Some(url.span()),
                    format!("upstream.url {u:?} is not an http:// or https:// URL"),
                ));
            }
            if !s.args.is_empty() || !s.env.is_empty() || s.env_file.is_some() {
                return Err(map.error(
                    Some(url.span()),
                    "args, env and env_file belong to a `command` upstream, not a `url` one",
                ));
            }
            UpstreamKind::Http {
                url: url.into_inner(),
            }
        }
        (Some(_), Some(url)) => {
            return Err(map.error(
                Some(url.span()),
                "[upstream] has both `command` and `url`: choose one",
            ));
        }
        (None, None) => {
            return Err(map.error(
                Some(span),
                "[upstream] needs `command` (a stdio MCP server) or `url` (a Streamable HTTP one)",
            ));
        }
    };
    Ok(UpstreamConfig { kind, call_timeout })
}

/// Reads `KEY=VALUE` lines (blank lines and `#` comments allowed, values optionally quoted).
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read env_file {}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("{}:{}: expected KEY=VALUE", path.display(), n + 1));
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{}:{}: {k:?} is not a variable name",
                path.display(),
                n + 1
            ));
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn validate_syslog(map: &SourceMap, s: SyslogSection) -> Result<SyslogConfig, ConfigError> {
    let d = SyslogConfig::default();
    Ok(SyslogConfig {
        socket: s.socket.map(PathBuf::from).unwrap_or(d.socket),
        queue: bounded(map, s.queue, "queue", d.queue as u64, 16..1_000_001)? as usize,
        send_timeout: Duration::from_millis(bounded(
            map,
            s.send_timeout_ms,
            "send_timeout_ms",
            d.send_timeout.as_millis() as u64,
            1..60_001,
        )?),
        log_arguments: s.log_arguments,
        hostname: s.hostname,
    })
}

fn validate_identities(
    map: &SourceMap,
    sections: Vec<Spanned<IdentitySection>>,
    profiles: &BTreeMap<Arc<str>, Policy>,
    client_ca: bool,
) -> Result<Vec<IdentityConfig>, ConfigError> {
    let mut out: Vec<IdentityConfig> = Vec::new();
    for section in sections {
        let span = section.span();
        let s = section.into_inner();
        let name = s.name.get_ref();
        check_name(name)
            .map_err(|m| map.error(Some(s.name.span()), format!("identity name {m}")))?;
        if out.iter().any(|i| &*i.name == name.as_str()) {
            return Err(map.error(
                Some(s.name.span()),
                format!("identity {name:?} is defined twice"),
            ));
        }
        let mut tokens = Vec::new();
        for t in &s.token_sha256 {
            let hash =
                TokenHash::from_hex(t.get_ref()).map_err(|m| map.error(Some(t.span()), m))?;
            if out.iter().any(|i| i.tokens.contains(&hash)) || tokens.contains(&hash) {
                return Err(map.error(Some(t.span()), "this token hash is used twice"));
            }
            tokens.push(hash);
        }

        let mut networks = Vec::new();
        if let Some(list) = &s.networks {
            if list.get_ref().is_empty() {
                return Err(map.error(
                    Some(list.span()),
                    format!("identity {name:?}: networks = [] lets the identity in from nowhere; remove the key to allow every address"),
                ));
            }
            for text in list.get_ref() {
                let net = Net::parse(text.get_ref()).map_err(|e| {
                    map.error(
                        Some(text.span()),
                        format!("identity {name:?}: network {:?} {e}", text.get_ref()),
                    )
                })?;
                networks.push(net);
            }
        }

        let client_cert = match &s.client_cert {
            None => None,
            Some(c) => {
                let cert_name = c.get_ref().to_ascii_lowercase();
                check_cert_name(&cert_name).map_err(|m| map.error(Some(c.span()), m))?;
                if !client_ca {
                    return Err(map.error(
                        Some(c.span()),
                        "client_cert needs `client_ca` in [listen] (the PEM bundle of the CA that issues agents' certificates)",
                    ));
                }
                if let Some(other) = out
                    .iter()
                    .find(|i| i.client_cert.as_deref() == Some(cert_name.as_str()))
                {
                    return Err(map.error(
                        Some(c.span()),
                        format!(
                            "client_cert {cert_name:?} is also the certificate of identity {:?}: a certificate must name one identity",
                            other.name
                        ),
                    ));
                }
                Some(Arc::<str>::from(cert_name))
            }
        };
        if tokens.is_empty() && client_cert.is_none() {
            return Err(map.error(
                Some(span),
                format!("identity {name:?} has neither token_sha256 nor client_cert: run `mcpgw token new` to make a token"),
            ));
        }
        let require_client_cert = match &s.require_client_cert {
            Some(r) if *r.get_ref() => {
                if client_cert.is_none() {
                    return Err(map.error(
                        Some(r.span()),
                        format!("identity {name:?}: require_client_cert needs `client_cert` (the certificate name to require)"),
                    ));
                }
                if tokens.is_empty() {
                    return Err(map.error(
                        Some(r.span()),
                        format!("identity {name:?}: require_client_cert goes with tokens; without token_sha256 the certificate alone is already required"),
                    ));
                }
                true
            }
            _ => false,
        };

        let policy = match &s.policy {
            None => None,
            Some(p) => match profiles.get_key_value(p.get_ref().as_str()) {
                Some((profile, _)) => Some(profile.clone()),
                None => {
                    let known: Vec<&str> = profiles.keys().map(|k| &**k).collect();
                    return Err(map.error(
                        Some(p.span()),
                        format!(
                            "identity {name:?}: policy {:?} names no [profiles.{}] table ({})",
                            p.get_ref(),
                            p.get_ref(),
                            if known.is_empty() {
                                "there are no profiles".to_string()
                            } else {
                                format!("profiles: {}", known.join(", "))
                            }
                        ),
                    ));
                }
            },
        };
        out.push(IdentityConfig {
            name: name.as_str().into(),
            tokens,
            networks,
            client_cert,
            require_client_cert,
            policy,
            span: s.name.span(),
        });
    }
    Ok(out)
}

/// A client-certificate name: a DNS name or a plain CN, compared case-insensitively and
/// exactly (no wildcards).
fn check_cert_name(name: &str) -> Result<(), String> {
    if name.contains('*') {
        return Err(format!(
            "client_cert {name:?}: wildcards are not allowed; name the one certificate this identity holds"
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "client_cert {name:?} is not a certificate name (ASCII letters, digits, '-', '_' and inner '.', e.g. \"agent1.example.net\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// A config with `listen` extra lines, then `rest` (identities, profiles) and `[policy]`.
    fn text(listen: &str, rest: &str) -> String {
        format!(
            "[listen]\naddress = \"127.0.0.1:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n{listen}\n[upstream]\ncommand = \"x\"\n\n{rest}\n[policy]\ndefault = \"deny\"\n"
        )
    }

    fn parsed(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/mcpgw.toml"), text)
    }

    /// The error for `text`, and the (line, column) where `needle` starts in it.
    fn error_at(text: &str, needle: &str) -> (ConfigError, (usize, usize)) {
        let err = parsed(text).expect_err("config should be refused");
        let offset = text.find(needle).expect("needle in text");
        (err, line_col(text, offset))
    }

    /// `text` with its listen address replaced by `address` (a TOML value).
    fn listening_on(address: &str, listen: &str) -> String {
        text(listen, "").replacen(
            "address = \"127.0.0.1:8443\"",
            &format!("address = {address}"),
            1,
        )
    }

    #[test]
    fn listen_address_is_one_or_a_list() {
        let one = parsed(&listening_on("\"192.168.1.1:8443\"", "")).expect("valid");
        assert_eq!(one.listen.addresses, ["192.168.1.1:8443".parse().unwrap()]);
        let two = parsed(&listening_on(
            "[\"192.168.1.1:8443\", \"[fd00::1]:8443\"]",
            "",
        ))
        .expect("valid");
        let want: Vec<SocketAddr> = vec![
            "192.168.1.1:8443".parse().unwrap(),
            "[fd00::1]:8443".parse().unwrap(),
        ];
        assert_eq!(two.listen.addresses, want);
        let loopback = parsed(
            &listening_on("[\"127.0.0.1:8080\", \"[::1]:8080\"]", "plaintext = true")
                .replace("cert = \"c.pem\"\nkey = \"k.pem\"\n", ""),
        )
        .expect("plain HTTP on loopback only");
        assert!(loopback.listen.tls.is_none());
    }

    #[test]
    fn listen_address_lists_are_checked_element_by_element() {
        let plain = |address: &str| {
            listening_on(address, "plaintext = true")
                .replace("cert = \"c.pem\"\nkey = \"k.pem\"\n", "")
        };
        for (t, needle, want) in [
            (listening_on("[]", ""), "[]", "listens nowhere"),
            (
                listening_on("[\"127.0.0.1:1\", \"nope\"]", ""),
                "\"nope\"",
                "is not an IP address with a port",
            ),
            (
                listening_on("[\"127.0.0.1:1\", \"127.0.0.1:1\"]", ""),
                "\"127.0.0.1:1\"]",
                "names 127.0.0.1:1 twice",
            ),
            (
                listening_on("[\"[::ffff:192.168.1.1]:8443\"]", ""),
                "\"[::ffff",
                "write it as \"192.168.1.1:8443\"",
            ),
            (
                plain("[\"127.0.0.1:1\", \"192.168.1.1:1\"]"),
                "\"192.168.1.1:1\"",
                "only on a loopback address, not 192.168.1.1",
            ),
        ] {
            let (err, at) = error_at(&t, needle);
            assert_eq!(err.position, Some(at), "{err}\n{t}");
            assert!(err.message.contains(want), "{err} (wanted {want:?})\n{t}");
        }
        let err = parsed(&listening_on("[8443]", "")).expect_err("a number");
        assert!(err.message.contains("string"), "{err}");
        let many: Vec<String> = (1..=17).map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        let err = parsed(&listening_on(&format!("[{}]", many.join(", ")), "")).expect_err("17");
        assert!(err.message.contains("at most 16"), "{err}");
    }

    #[test]
    fn identities_with_networks_certificates_and_profiles() {
        let t = text(
            "client_ca = \"ca.pem\"\nclient_auth = \"required\"",
            &format!(
                "[[identity]]\nname = \"lan\"\ntoken_sha256 = [\"{HASH_A}\"]\nnetworks = [\"192.168.1.0/24\", \"2001:db8::/48\", \"::ffff:10.0.0.0/104\"]\npolicy = \"readonly\"\n\n\
                 [[identity]]\nname = \"agent1\"\nclient_cert = \"Agent1.Example.NET\"\n\n\
                 [[identity]]\nname = \"both\"\ntoken_sha256 = [\"{HASH_B}\"]\nclient_cert = \"both.example.net\"\nrequire_client_cert = true\n\n\
                 [profiles.readonly]\ndefault = \"deny\"\n[profiles.readonly.tools.firewall_list_rules]\naction = \"allow\"\n"
            ),
        );
        let c = parsed(&t).unwrap();
        let tls = c.listen.tls.as_ref().unwrap();
        let ca = tls.client_ca.as_ref().unwrap();
        assert_eq!(ca.file, Path::new("/etc/ca.pem"));
        assert!(ca.required);
        let lan = &c.identities[0];
        let nets: Vec<String> = lan.networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["192.168.1.0/24", "2001:db8::/48", "10.0.0.0/8"]);
        assert_eq!(lan.policy.as_deref(), Some("readonly"));
        assert_eq!(
            c.identities[1].client_cert.as_deref(),
            Some("agent1.example.net")
        );
        assert!(c.identities[1].tokens.is_empty() && !c.identities[1].require_client_cert);
        assert!(c.identities[2].require_client_cert);
        assert_eq!(
            c.profiles.keys().map(|k| &**k).collect::<Vec<_>>(),
            ["readonly"]
        );
        assert!(c.profiles["readonly"].summary().contains("1 allowed"));

        // client_auth defaults to optional.
        let t = text(
            "client_ca = \"ca.pem\"",
            &format!("[[identity]]\nname = \"a\"\ntoken_sha256 = [\"{HASH_A}\"]\n"),
        );
        assert!(
            !parsed(&t)
                .unwrap()
                .listen
                .tls
                .unwrap()
                .client_ca
                .unwrap()
                .required
        );
    }

    #[test]
    fn identity_errors_point_at_the_value() {
        let ident = |extra: &str| {
            format!("[[identity]]\nname = \"a\"\ntoken_sha256 = [\"{HASH_A}\"]\n{extra}\n")
        };
        let ca = "client_ca = \"ca.pem\"";
        let cases: Vec<(String, &str, &str)> = vec![
            // Host bits in a network: at the string, naming the network meant.
            (
                text(
                    "",
                    &ident("networks = [\"10.0.0.0/8\", \"192.168.1.1/24\"]"),
                ),
                "\"192.168.1.1/24\"",
                "the network is 192.168.1.0/24",
            ),
            (
                text("", &ident("networks = [\"lan\"]")),
                "\"lan\"",
                "is not an IP address or CIDR network",
            ),
            (text("", &ident("networks = []")), "[]", "from nowhere"),
            (
                text("", &ident("policy = \"readonly\"")),
                "\"readonly\"",
                "names no [profiles.readonly] table (there are no profiles)",
            ),
            (
                text("", &(ident("policy = \"ro\"") + "[profiles.readonly]\n")),
                "\"ro\"",
                "profiles: readonly",
            ),
            (
                text("", &ident("client_cert = \"agent1.example.net\"")),
                "\"agent1.example.net\"",
                "needs `client_ca`",
            ),
            (
                text(ca, &ident("client_cert = \"*.example.net\"")),
                "\"*.example.net\"",
                "wildcards",
            ),
            (
                text(ca, &ident("client_cert = \"agent 1\"")),
                "\"agent 1\"",
                "is not a certificate name",
            ),
            (
                text(
                    ca,
                    "[[identity]]\nname = \"a\"\nclient_cert = \"agent1.example.net\"\n[[identity]]\nname = \"b\"\nclient_cert = \"AGENT1.example.net\"\n",
                ),
                "\"AGENT1.example.net\"",
                "also the certificate of identity \"a\"",
            ),
            (
                text(ca, &ident("require_client_cert = true")),
                "true",
                "require_client_cert needs `client_cert`",
            ),
            (
                text(
                    ca,
                    "[[identity]]\nname = \"a\"\nclient_cert = \"a.example.net\"\nrequire_client_cert = true\n",
                ),
                "true",
                "goes with tokens",
            ),
            (
                text("", "[[identity]]\nname = \"nothing\"\n"),
                "[[identity]]",
                "neither token_sha256 nor client_cert",
            ),
            (
                text("client_auth = \"required\"", &ident("")),
                "\"required\"",
                "`client_auth` needs `client_ca`",
            ),
            (
                text(
                    "client_ca = \"ca.pem\"\nclient_auth = \"sometimes\"",
                    &ident(""),
                ),
                "\"sometimes\"",
                "unknown variant",
            ),
            (
                text("", &(ident("") + "[profiles.\"read only\"]\n")),
                "\"read only\"",
                "profile name \"read only\" must be",
            ),
            // A profile is compiled like [policy]: its errors point inside it.
            (
                text(
                    "",
                    &(ident("") + "[profiles.ro.tools.\"bad name\"]\naction = \"allow\"\n"),
                ),
                "[profiles.ro.tools",
                "is not a valid MCP tool name",
            ),
        ];
        for (t, needle, want) in cases {
            let (err, at) = error_at(&t, needle);
            assert_eq!(err.position, Some(at), "{err}\n{t}");
            assert!(err.message.contains(want), "{err} (wanted {want:?})\n{t}");
        }

        // Plain HTTP cannot ask for client certificates.
        let t = "[listen]\naddress = \"127.0.0.1:8080\"\nplaintext = true\nclient_ca = \"ca.pem\"\n[upstream]\ncommand = \"x\"\n[policy]\n";
        let (err, at) = error_at(t, "\"ca.pem\"");
        assert_eq!(err.position, Some(at));
        assert!(err.message.contains("need TLS"), "{err}");
    }

    #[test]
    fn workers_default_to_auto_and_are_bounded() {
        let auto = parsed(&text("", "")).expect("valid config");
        assert_eq!(auto.listen.workers, 0, "0 = one per core");
        let three = parsed(&text("workers = 3", "")).expect("valid config");
        assert_eq!(three.listen.workers, 3);
        let t = text("workers = 100", "");
        let (err, at) = error_at(&t, "100");
        assert_eq!(err.position, Some(at), "{err}");
        assert!(
            err.message
                .contains("workers = 100 is out of range: it must be at least 0 and below 65"),
            "{err}"
        );
    }

    #[test]
    fn syslog_send_timeout_defaults_to_100_ms_and_is_bounded() {
        let default = parsed(&text("", "")).expect("valid config");
        assert_eq!(default.syslog.send_timeout, Duration::from_millis(100));
        let long = parsed(&text("", "[syslog]\nsend_timeout_ms = 2000")).expect("valid config");
        assert_eq!(long.syslog.send_timeout, Duration::from_secs(2));
        let t = text("", "[syslog]\nsend_timeout_ms = 0");
        let (err, at) = error_at(&t, "0\n[policy]");
        assert_eq!(err.position, Some(at), "{err}");
        assert!(
            err.message.contains("send_timeout_ms = 0 is out of range"),
            "{err}"
        );
    }

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 10), (2, 4));
    }

    #[test]
    fn env_file_reads_quotes_and_comments() {
        let dir = std::env::temp_dir().join(format!("mcpgw-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("e.env");
        std::fs::write(
            &f,
            "# c\nOPNSENSE_HOST=\"https://fw\"\nexport KEY='k'\n\nSECRET=s=1\n",
        )
        .unwrap();
        let env = read_env_file(&f).unwrap();
        assert_eq!(env["OPNSENSE_HOST"], "https://fw");
        assert_eq!(env["KEY"], "k");
        assert_eq!(env["SECRET"], "s=1");
        std::fs::write(&f, "NOT A LINE\n").unwrap();
        assert!(read_env_file(&f).unwrap_err().contains(":1:"));
    }
}
