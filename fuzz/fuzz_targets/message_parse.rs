//! The strict JSON-RPC parser and `subject_of` on arbitrary bodies: never a panic, and an
//! accepted message re-serializes to a message of the same kind and method.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgw::mcp::message;
use mcpgw::mcp::subject::subject_of;

fuzz_target!(|body: &[u8]| {
    let _ = message::id_of(body);
    if let Ok(m) = message::parse(body) {
        if let Some(method) = m.method() {
            let _ = subject_of(method, m.params());
        }
        let canonical = m.to_value().to_string();
        let again = message::parse(canonical.as_bytes());
        let again = again.expect("a canonical message re-parses");
        assert_eq!(again.method(), m.method());
        assert_eq!(again.id(), m.id());
    }
});
