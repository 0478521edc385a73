//! mcpgw: an MCP policy gateway that runs on the firewall it protects.
//!
//! The request path, one module per stage (see ARCHITECTURE.md):
//! `server` (TLS, HTTP, sessions, authentication) -> `mcp` (strict parse, subject, list
//! filtering) -> `policy` (pure decision) -> `upstream` (the OPNsense MCP server) ->
//! `mcp::filter` on the way back, with `audit` recording every decision to syslog.

pub mod audit;
pub mod catalogue;
pub mod client;
pub mod config;
pub mod identity;
pub mod mcp;
pub mod policy;
pub mod server;
pub mod upstream;
