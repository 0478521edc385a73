//! What the scenarios run against: the mock upstream, `mcpgw run` with a generated config, and
//! nginx with a generated config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use mcpgw::identity::new_token;

use crate::util::{Proc, TempDir, free_port, sibling, wait_tcp};

/// The tool every load scenario calls (allowed, with a limit that never trips).
pub const BENCH_TOOL: &str = "firewall_list_rules";

/// A limit so large it never trips, so the limiter's cost is paid on every call.
/// Arguments every bench call sends; they pass the bench tool's three argument rules.
pub const BENCH_ARGS: &str =
    r#"{"interface":"lan","source":"10.1.2.0/24","destination_port":"443"}"#;

/// The bench tool's argument rules: a set, a network and a port check.
const BENCH_ARG_RULES: &str = "[[policy.tools.firewall_list_rules.args]]\npath = \"interface\"\nin_set = [\"lan\", \"opt1\"]\n[[policy.tools.firewall_list_rules.args]]\npath = \"source\"\nin_networks = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n[[policy.tools.firewall_list_rules.args]]\npath = \"destination_port\"\nin_ports = [\"443\", \"8000-8999\"]\n";

pub const HUGE_LIMIT: &str = "{ max = 1000000000, per = \"second\", scope = \"identity\" }";

/// How many tool rules the realistic policy has.
pub const POLICY_RULES: usize = 150;

/// Tool names for the policy: the catalogue first, padded with made-up names to `n`.
pub fn tool_names(n: usize) -> Vec<String> {
    let mut names: Vec<String> = mcpgw::catalogue::tool_names()
        .into_iter()
        .filter(|t| *t != BENCH_TOOL)
        .map(str::to_string)
        .collect();
    let mut i = 0;
    while names.len() < n {
        names.push(format!("custom_tool_{i}"));
        i += 1;
    }
    names.truncate(n);
    names
}

/// How rule `i` of the generated policy treats its tool.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Allow,
    AllowLimited,
    Deny,
    Hide,
}

pub fn kind_of(i: usize) -> Kind {
    match i % 10 {
        0 | 5 => Kind::Deny,
        1 => Kind::Hide,
        2 | 7 => Kind::AllowLimited,
        _ => Kind::Allow,
    }
}

/// A realistic `[policy]`: default deny, ~150 tool rules (allow, allow with a huge limit, deny,
/// hide); [`BENCH_TOOL`] allowed with a huge limit and three argument rules.
pub fn policy_toml() -> String {
    let mut hide = Vec::new();
    let mut out = String::new();
    out += &format!(
        "\n[policy.tools.{BENCH_TOOL}]\naction = \"allow\"\nlimits = [{HUGE_LIMIT}]\n{BENCH_ARG_RULES}"
    );
    for (i, name) in tool_names(POLICY_RULES - 1).iter().enumerate() {
        match kind_of(i) {
            Kind::Allow => out += &format!("\n[policy.tools.{name}]\naction = \"allow\"\n"),
            Kind::AllowLimited => {
                out += &format!("\n[policy.tools.{name}]\nlimits = [{HUGE_LIMIT}]\n")
            }
            Kind::Deny => {
                out += &format!(
                    "\n[policy.tools.{name}]\naction = \"deny\"\nreason = \"needs a human\"\n"
                )
            }
            Kind::Hide => hide.push(format!("{name:?}")),
        }
    }
    format!(
        "[policy]\ndefault = \"deny\"\nhide = [{}]\n{out}",
        hide.join(", ")
    )
}

/// The mock upstream in HTTP mode.
pub struct Mock {
    /// Kept for its Drop (stops the mock).
    #[allow(dead_code)]
    pub proc: Proc,
    pub addr: SocketAddr,
}

/// `threads`: tokio worker threads of the mock (TOKIO_WORKER_THREADS); 0 keeps tokio's default.
/// `result_bytes`: `mcpgw-mock --result-bytes`.
pub fn start_mock_http(threads: usize, result_bytes: usize) -> Result<Mock, String> {
    let mut cmd = Command::new(sibling("mcpgw-mock")?);
    cmd.args(["--result-bytes", &result_bytes.to_string()]);
    cmd.args(["http", "--listen", "127.0.0.1:0"]);
    if threads > 0 {
        cmd.env("TOKIO_WORKER_THREADS", threads.to_string());
    }
    let (proc, rest) = Proc::spawn(
        "mcpgw-mock",
        cmd,
        Some("mcpgw-mock: listening on http://"),
        Duration::from_secs(10),
    )?;
    let rest = rest.unwrap_or_default();
    let addr = rest
        .trim_end_matches("/mcp")
        .parse()
        .map_err(|_| format!("mock printed an odd address: {rest:?}"))?;
    Ok(Mock { proc, addr })
}

/// What `[upstream]` the gateway gets.
pub enum Upstream {
    Http(SocketAddr),
    /// The mock as a stdio child with this many tokio worker threads (0: default), spending
    /// `work_us` of CPU per call (`mcpgw-mock --work-us`), with `--result-bytes`.
    Stdio {
        threads: usize,
        work_us: u64,
        result_bytes: usize,
    },
}

/// Everything needed to write a gateway config.
pub struct GatewaySpec<'a> {
    pub upstream: Upstream,
    /// `127.0.0.1:0` unless a fixed port is needed.
    pub listen: SocketAddr,
    pub identities: usize,
    /// Replaces the generated policy when set.
    pub policy: Option<String>,
    pub listen_extra: &'a str,
    pub syslog_socket: &'a Path,
}

/// A written config with its certificate and the identities' tokens.
pub struct GatewayFiles {
    pub config: PathBuf,
    pub cert_pem: String,
    pub tokens: Vec<String>,
}

/// Writes cert.pem, key.pem and NAME.toml into `dir`.
pub fn write_gateway_config(
    dir: &TempDir,
    name: &str,
    spec: &GatewaySpec,
) -> Result<GatewayFiles, String> {
    let (cert, key) = mcpgw::server::tls::self_signed(&["localhost"])?;
    std::fs::write(dir.path("cert.pem"), &cert).map_err(|e| e.to_string())?;
    std::fs::write(dir.path("key.pem"), &key).map_err(|e| e.to_string())?;
    let mut identities = String::new();
    let mut tokens = Vec::new();
    for i in 0..spec.identities.max(1) {
        let (token, hash) = new_token()?;
        let name = if i == 0 {
            "agent".to_string()
        } else {
            format!("agent{i}")
        };
        identities += &format!(
            "[[identity]]\nname = \"{name}\"\ntoken_sha256 = [\"{}\"]\n",
            hash.to_hex()
        );
        tokens.push(token);
    }
    let upstream = match spec.upstream {
        Upstream::Http(addr) => format!("url = \"http://{addr}/mcp\"\n"),
        Upstream::Stdio {
            threads,
            work_us,
            result_bytes,
        } => format!(
            "command = {:?}\nargs = [\"--work-us\", \"{work_us}\", \"--result-bytes\", \"{result_bytes}\", \"stdio\"]\n{}",
            sibling("mcpgw-mock")?.display().to_string(),
            if threads > 0 {
                format!("env = {{ TOKIO_WORKER_THREADS = \"{threads}\" }}\n")
            } else {
                String::new()
            }
        ),
    };
    let policy = spec.policy.clone().unwrap_or_else(policy_toml);
    let text = format!(
        "[listen]\naddress = \"{}\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n{}\n\n[upstream]\n{upstream}\n[syslog]\nsocket = {:?}\n\n{identities}\n{policy}",
        spec.listen,
        spec.listen_extra,
        spec.syslog_socket.display().to_string(),
    );
    let config = dir.path(&format!("{name}.toml"));
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    Ok(GatewayFiles {
        config,
        cert_pem: cert,
        tokens,
    })
}

/// A running `mcpgw run`.
pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub files: GatewayFiles,
}

/// The command that starts `mcpgw` (set by `--gateway-cmd`, e.g. under valgrind); the
/// release binary next to this one when unset.
pub static GATEWAY_CMD: OnceLock<Vec<String>> = OnceLock::new();

pub fn start_gateway(dir: &TempDir, name: &str, spec: &GatewaySpec) -> Result<Gateway, String> {
    let files = write_gateway_config(dir, name, spec)?;
    let mut cmd = match GATEWAY_CMD.get().and_then(|c| c.split_first()) {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        None => Command::new(sibling("mcpgw")?),
    };
    cmd.arg("run")
        .arg("-c")
        .arg(&files.config)
        .current_dir(&dir.0);
    let (proc, rest) = Proc::spawn(
        "mcpgw",
        cmd,
        Some("mcpgw: listening on "),
        Duration::from_secs(60),
    )?;
    let rest = rest.unwrap_or_default();
    let addr = rest
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("mcpgw printed an odd address: {rest:?}"))?;
    Ok(Gateway { proc, addr, files })
}

/// nginx as a TLS reverse proxy with upstream keepalive, one worker, as a foreground child.
pub struct Nginx {
    /// Kept for its Drop (stops nginx).
    #[allow(dead_code)]
    pub proc: Proc,
    pub addr: SocketAddr,
}

pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// nginx in front of `upstream` with one worker per core; with `syslog`, it sends an access
/// log line per request to that datagram socket, as mcpgw sends a decision line.
pub fn start_nginx(
    dir: &TempDir,
    upstream: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
    syslog: Option<&Path>,
) -> Result<Nginx, String> {
    let bin = nginx_binary().ok_or("nginx is not installed")?;
    let root = dir.path(if syslog.is_some() {
        "nginx-log"
    } else {
        "nginx"
    });
    std::fs::create_dir_all(root.join("tmp")).map_err(|e| e.to_string())?;
    std::fs::write(root.join("cert.pem"), cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(root.join("key.pem"), key_pem).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let r = root.display();
    let access_log = match syslog {
        Some(path) => format!("syslog:server=unix:{},nohostname combined", path.display()),
        None => "off".into(),
    };
    let conf = format!(
        r#"worker_processes auto;
error_log {r}/error.log warn;
pid {r}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log {access_log};
    client_body_temp_path {r}/tmp/body;
    proxy_temp_path {r}/tmp/proxy;
    fastcgi_temp_path {r}/tmp/fastcgi;
    uwsgi_temp_path {r}/tmp/uwsgi;
    scgi_temp_path {r}/tmp/scgi;
    upstream mock {{
        server {upstream};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {r}/cert.pem;
        ssl_certificate_key {r}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    std::fs::write(root.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(&root)
        .arg("-e")
        .arg(root.join("error.log"))
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .args(["-g", "daemon off;"]);
    let (proc, _) = Proc::spawn("nginx", cmd, None, Duration::ZERO)?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap(); // ok: a u16 port on loopback
    if let Err(e) = wait_tcp(addr, Duration::from_secs(10)) {
        let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
        return Err(format!("{e}; nginx error.log: {log}"));
    }
    Ok(Nginx { proc, addr })
}
