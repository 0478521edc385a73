//! `config::parse` of arbitrary text: never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = mcpgw::config::parse(Path::new("/nonexistent/mcpgw.toml"), text);
    }
});
