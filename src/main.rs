//! The `mcpgw` command line: run the gateway, check a config, make tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mcpgw::config::{self, DEFAULT_CONFIG_PATH};
use mcpgw::identity;

/// MCP policy gateway for OPNsense: TLS for agents, a policy on every tool call, every
/// decision in syslog.
#[derive(Parser)]
#[command(name = "mcpgw", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway in the foreground (rc.d runs it under daemon(8)).
    ///
    /// SIGHUP reloads the configuration (kept only if valid); SIGTERM stops cleanly,
    /// ending the upstream MCP server too.
    Run {
        /// Configuration file.
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the configuration and policy, then exit: 0 and one OK line, or 1 and
    /// `FILE:LINE:COL: what is wrong`.
    Check {
        /// Configuration file.
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Show what the policy decides for one call, and why, without running anything.
    ///
    /// Exit status: 0 if the call would be allowed, 3 if it would be denied, hidden or
    /// limited, 1 on an error. Rate limits start full, so this is the first call's decision.
    Explain {
        /// Configuration file.
        #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Identity name from the config.
        #[arg(long)]
        identity: String,
        /// Tool name, exactly as the agent sends it.
        #[arg(long)]
        tool: String,
        /// The call's arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Source address of the caller (for source-scoped limits).
        #[arg(long)]
        source: Option<std::net::IpAddr>,
    },
    /// Convert a policy from another gateway into mcpgw's TOML.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Manage bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Print a PolicyLayer policy.json as a native [policy] table (fields mcpgw cannot
    /// honour are errors naming the field).
    Policylayer {
        /// The policy.json file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh random token (shown once) and the config line that holds only its hash.
    New {
        /// Identity name to put in the printed [[identity]] block.
        #[arg(long, default_value = "agent")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A one-shot command piped into `head` should end quietly when the pipe closes, as
        // Unix tools do; the gateway itself keeps Rust's default (SIGPIPE ignored).
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Run { config } => {
            // Process-wide tasks only; agents are served by the connection workers.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mcpgw: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(mcpgw::server::run(&config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcpgw: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => check(&config),
        Command::Explain {
            config,
            identity,
            tool,
            args,
            source,
        } => explain(&config, &identity, &tool, &args, source),
        Command::Import {
            command: ImportCommand::Policylayer { file },
        } => import_policylayer(&file),
        Command::Token {
            command: TokenCommand::New { name },
        } => match identity::new_token() {
            Ok((token, hash)) => {
                println!("token (give it to the agent; it is not stored anywhere):");
                println!("  {token}");
                println!();
                println!("config (add to mcpgw.toml, then `service mcpgw reload`):");
                println!("  [[identity]]");
                println!("  name = \"{name}\"");
                println!("  token_sha256 = [\"{}\"]", hash.to_hex());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcpgw: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Err(e)) = config
        .listen
        .tls
        .as_ref()
        .map(mcpgw::server::tls::server_config)
    {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    for warning in config.policy.warnings() {
        eprintln!("{}: warning: {warning}", path.display());
    }
    // Profiles ([profiles.NAME], chosen per identity): their warnings and summaries.
    let mut profiles = String::new();
    for (name, policy) in &config.profiles {
        for warning in policy.warnings() {
            eprintln!("{}: warning: profiles.{name}: {warning}", path.display());
        }
        let users = config
            .identities
            .iter()
            .filter(|i| i.policy.as_deref() == Some(&**name))
            .count();
        if users == 0 {
            eprintln!(
                "{}: warning: profile {name:?} is used by no identity",
                path.display()
            );
        }
        profiles += &format!(
            "; profile {name} ({users} identities): {}",
            policy.summary()
        );
    }
    println!(
        "{}: OK: {} identities, {}{profiles}",
        path.display(),
        config.identities.len(),
        config.policy.summary()
    );
    ExitCode::SUCCESS
}

fn explain(
    path: &std::path::Path,
    identity: &str,
    tool: &str,
    args: &str,
    source: Option<std::net::IpAddr>,
) -> ExitCode {
    use mcpgw::mcp::subject::Subject;
    use mcpgw::policy::Decision;

    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(known) = config.identities.iter().find(|i| &*i.name == identity) else {
        let names: Vec<&str> = config.identities.iter().map(|i| &*i.name).collect();
        eprintln!(
            "mcpgw: no identity {identity:?} in {} (identities: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::FAILURE;
    };
    let arguments: serde_json::Value = match mcpgw::mcp::message::parse_value(args.as_bytes()) {
        Ok(v) if v.is_object() => v,
        Ok(_) => {
            eprintln!("mcpgw: --args must be a JSON object, e.g. '{{\"interface\":\"lan\"}}'");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("mcpgw: --args is not acceptable JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let who = mcpgw::identity::Identity {
        name: known.name.clone(),
        source,
        profile: known.policy.clone(),
    };
    // The identity's profile, if it names one (validated when the config was loaded).
    let policy = match &known.policy {
        Some(name) => match config.profiles.get(name) {
            Some(p) => p,
            None => {
                eprintln!(
                    "mcpgw: identity {identity:?} names profile {name:?}, which does not exist"
                );
                return ExitCode::FAILURE;
            }
        },
        None => &config.policy,
    };
    let subject = Subject::Tool {
        name: tool,
        arguments: arguments.as_object(),
    };
    let decision = policy.decide(&who, &subject);
    let (verdict, reason, code) = match &decision {
        Decision::Allow { shadow: None, .. } => ("allow".to_string(), None, ExitCode::SUCCESS),
        Decision::Allow {
            shadow: Some(s), ..
        } => (
            "allow (shadow mode: would be refused)".to_string(),
            match s.would_be.as_ref() {
                Decision::Deny { reason, .. } => Some(reason.to_string()),
                Decision::Limited { .. } => Some("over a rate limit".to_string()),
                _ => None,
            },
            ExitCode::SUCCESS,
        ),
        Decision::Deny {
            reason, visible, ..
        } => (
            if *visible {
                "deny (the agent is told the reason)".to_string()
            } else {
                "deny (the agent is told the tool does not exist)".to_string()
            },
            Some(reason.to_string()),
            ExitCode::from(3),
        ),
        Decision::Hide { .. } => (
            "hide (not listed; calls look like an unknown tool)".to_string(),
            None,
            ExitCode::from(3),
        ),
        Decision::Limited { retry_after, .. } => (
            "limit".to_string(),
            Some(format!("retry in {} s", retry_after.as_secs().max(1))),
            ExitCode::from(3),
        ),
    };
    println!("decision: {verdict}");
    println!("rule:     {}", decision.rule());
    if let Some(reason) = reason {
        println!("reason:   {reason}");
    }
    if let Some(name) = &known.policy {
        println!("profile:  {name} (the identity's policy)");
    }
    println!("why:      {}", policy.explain_rule(tool));
    code
}

fn import_policylayer(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mcpgw: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let map = config::SourceMap { file, text: &text };
    match mcpgw::policy::policylayer::import(&map) {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
