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
    /// Manage bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
    match cli.command {
        Command::Run { config } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
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
