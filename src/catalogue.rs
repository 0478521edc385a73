//! The built-in catalogue of the OPNsense MCP server's tools (data/opnsense-mcp-tools.json).
