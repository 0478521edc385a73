//! MCP messages: strict JSON-RPC parsing, what a message asks for, and list filtering.

pub mod filter;
pub mod message;
pub mod subject;
