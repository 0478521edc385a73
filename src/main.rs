//! The `mcpgw` command line.
fn main() {}
