//! The MCP server the gateway fronts: a stdio child process or a Streamable HTTP endpoint.
//!
//! INTERFACE (fixed; the implementation is being written).
