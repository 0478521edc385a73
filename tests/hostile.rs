//! A corpus of hostile requests, each aimed at getting a denied call executed or a limit
//! exceeded. Every case is raw HTTP/1.1 bytes written over a fresh TLS connection (so paths,
//! methods, framing and pipelining are exactly what an attacker sends), with the responses it
//! must get. After every case the mock upstream's record is checked: no denied, hidden or
//! unknown tool was ever forwarded, the limited tool never got more calls than its limit,
//! argument-checked calls only carried allowed values, and the case forwarded exactly as many
//! calls as it got successful tool results.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mcpgw::client::tls_config;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use support::{Gateway, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POLICY: &str = r#"
[policy]
default = "deny"
hide = ["ssh_execute"]

[policy.tools.firewall_list_rules]
action = "allow"

[policy.tools.firewall_delete_rule]
action = "deny"
reason = "deleting rules needs a human"

[policy.tools.openvpn_disconnect_client]
limits = [{ max = 3, per = "hour", scope = "global" }]

[policy.tools.firewall_create_rule]
action = "allow"
[[policy.tools.firewall_create_rule.args]]
path = "source"
in_networks = ["10.0.0.0/8"]
[[policy.tools.firewall_create_rule.args]]
path = "destination_port"
in_ports = ["443"]
"#;

/// Tools the upstream may ever see.
const FORWARDABLE: &[&str] = &[
    "firewall_list_rules",
    "openvpn_disconnect_client",
    "firewall_create_rule",
];
const LIMITED: &str = "openvpn_disconnect_client";
const LIMIT: usize = 3;
const MAX_BODY: usize = 65536;

/// What one response must be.
#[derive(Debug, Clone, Copy)]
enum Exp {
    /// This HTTP status, any body.
    Status(u16),
    /// This HTTP status with a JSON-RPC error of this code.
    Rpc(u16, i64),
    /// HTTP 200, a tools/call result with isError naming the policy (a visible denial).
    Denied,
    /// HTTP 200, a rate-limit result.
    Limited,
    /// HTTP 200, a tools/call result from the upstream: the only answer that forwards a call.
    Forwarded,
    /// HTTP 202, empty.
    Accepted,
    /// The answer to a HEAD request: this status, no body on the wire.
    Head(u16),
}

struct Ctx {
    token: String,
    other_token: String,
    /// The main agent's session.
    sid: String,
    /// A session of the other identity.
    other_sid: String,
}

struct Case {
    name: &'static str,
    /// Pieces written one after the other (each its own TLS record).
    build: fn(&Ctx) -> Vec<Vec<u8>>,
    /// Shut down the write side after the last piece.
    half_close: bool,
    expect: &'static [Exp],
}

const fn case(name: &'static str, build: fn(&Ctx) -> Vec<Vec<u8>>, expect: &'static [Exp]) -> Case {
    Case {
        name,
        build,
        half_close: false,
        expect,
    }
}

// ---------------------------------------------------------------------------------------------
// Request builders.

/// The usual headers of an authenticated agent in session, without framing.
fn std_headers(ctx: &Ctx) -> String {
    format!(
        "Host: localhost\r\nAuthorization: Bearer {}\r\nMcp-Session-Id: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2025-06-18\r\n",
        ctx.token, ctx.sid
    )
}

/// A complete request: `start` line, the usual headers, `extra` headers, Content-Length.
fn req(ctx: &Ctx, start: &str, extra: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = format!(
        "{start}\r\n{}{extra}Content-Length: {}\r\n{}\r\n",
        std_headers(ctx),
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// One POST /mcp with `body`, closing the connection after it.
fn post(ctx: &Ctx, body: &str) -> Vec<Vec<u8>> {
    vec![req(ctx, "POST /mcp HTTP/1.1", "", body.as_bytes(), true)]
}

fn post_bytes(ctx: &Ctx, body: &[u8]) -> Vec<Vec<u8>> {
    vec![req(ctx, "POST /mcp HTTP/1.1", "", body, true)]
}

fn post_with(ctx: &Ctx, extra: &str, body: &str) -> Vec<Vec<u8>> {
    vec![req(ctx, "POST /mcp HTTP/1.1", extra, body.as_bytes(), true)]
}

/// A raw request with the usual headers replaced by `headers` (placeholders {TOKEN}, {SID},
/// {OTHER_TOKEN}, {OTHER_SID}).
fn raw(ctx: &Ctx, text: &str) -> Vec<u8> {
    text.replace("{TOKEN}", &ctx.token)
        .replace("{SID}", &ctx.sid)
        .replace("{OTHER_TOKEN}", &ctx.other_token)
        .replace("{OTHER_SID}", &ctx.other_sid)
        .into_bytes()
}

/// A chunked POST whose body is sent as `chunks`, each chunk also its own TLS record.
fn chunked(ctx: &Ctx, extra: &str, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut pieces = vec![
        format!(
            "POST /mcp HTTP/1.1\r\n{}{extra}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            std_headers(ctx)
        )
        .into_bytes(),
    ];
    for c in chunks {
        let mut p = format!("{:x}\r\n", c.len()).into_bytes();
        p.extend_from_slice(c);
        p.extend_from_slice(b"\r\n");
        pieces.push(p);
    }
    pieces.push(b"0\r\n\r\n".to_vec());
    pieces
}

fn call(id: &str, name_json: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":{name_json},"arguments":{args}}}}}"#
    )
}

const DELETE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_delete_rule","arguments":{"uuid":"x"}}}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules","arguments":{}}}"#;
const LIMITED_CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"openvpn_disconnect_client","arguments":{"client_id":"c"}}}"#;

fn create(source: &str, port: &str) -> String {
    call(
        "5",
        r#""firewall_create_rule""#,
        &format!(r#"{{"source":{source},"destination_port":{port}}}"#),
    )
}

fn nested(depth: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"firewall_list_rules","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

use Exp::*;

fn corpus() -> Vec<Case> {
    vec![
        // --- baseline: the corpus can tell allowed from denied.
        case("baseline allowed call", |c| post(c, LIST), &[Forwarded]),
        case("baseline denied call", |c| post(c, DELETE), &[Denied]),
        // --- duplicate keys, anywhere, however spelled.
        case(
            "duplicate top-level method",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"firewall_delete_rule"}}"#,
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "duplicate top-level params",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules"},"params":{"name":"firewall_delete_rule"}}"#,
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "duplicate top-level id",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"firewall_delete_rule"}}"#,
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "duplicate name in params",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules","name":"firewall_delete_rule"}}"#,
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "escaped duplicate n\\u0061me in params",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall_list_rules","n\u0061me":"firewall_delete_rule"}}"#,
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "escaped duplicate \\u006e\\u0061\\u006d\\u0065 first",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\u006e\u0061\u006d\u0065":"firewall_delete_rule","name":"firewall_list_rules"}}"#,
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "duplicate key in arguments",
            |c| post(c, &create(r#""10.0.0.1","source":"0.0.0.0/0""#, "443")),
            &[Rpc(400, -32700)],
        ),
        case(
            "duplicate key deep inside arguments",
            |c| {
                post(
                    c,
                    &call(
                        "1",
                        r#""firewall_list_rules""#,
                        r#"{"a":{"b":[{"c":1,"c":2}]}}"#,
                    ),
                )
            },
            &[Rpc(400, -32700)],
        ),
        // --- batches.
        case(
            "batch of one denied call",
            |c| post(c, &format!("[{DELETE}]")),
            &[Rpc(400, -32600)],
        ),
        case(
            "batch of an allowed and a denied call",
            |c| post(c, &format!("[{LIST},{DELETE}]")),
            &[Rpc(400, -32600)],
        ),
        case(
            "batch of limited calls",
            |c| {
                post(
                    c,
                    &format!("[{LIMITED_CALL},{LIMITED_CALL},{LIMITED_CALL},{LIMITED_CALL}]"),
                )
            },
            &[Rpc(400, -32600)],
        ),
        case("empty batch", |c| post(c, " [ ] "), &[Rpc(400, -32600)]),
        // --- notifications carrying tools/call: accepted, never forwarded.
        case(
            "notification tools/call of a denied tool",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"firewall_delete_rule","arguments":{}}}"#,
                )
            },
            &[Accepted],
        ),
        case(
            "notification tools/call of the limited tool",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"openvpn_disconnect_client","arguments":{}}}"#,
                )
            },
            &[Accepted],
        ),
        case(
            "notification tools/call of an allowed tool",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"firewall_list_rules"}}"#,
                )
            },
            &[Accepted],
        ),
        // --- name variants: other names, unknown, hence invisible denials.
        case(
            "escaped underscore decodes to the real denied name",
            |c| post(c, &call("1", r#""firewall\u005fdelete_rule""#, "{}")),
            &[Denied],
        ),
        case(
            "escaped first letter decodes to the real denied name",
            |c| post(c, &call("1", r#""\u0066irewall_delete_rule""#, "{}")),
            &[Denied],
        ),
        case(
            "escaped solidus and letters decode to the real denied name",
            |c| post(c, &call("1", r#""firewall_delete_rul\u0065""#, "{}")),
            &[Denied],
        ),
        case(
            "escaped hidden name stays hidden",
            |c| post(c, &call("1", r#""ssh\u005fexecute""#, "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "trailing space",
            |c| post(c, &call("1", r#""firewall_delete_rule ""#, "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "trailing escaped newline",
            |c| post(c, &call("1", r#""firewall_delete_rule\n""#, "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "raw newline inside the name string",
            |c| post(c, &call("1", "\"firewall_delete_rule\n\"", "{}")),
            &[Rpc(400, -32700)],
        ),
        case(
            "upper case",
            |c| post(c, &call("1", r#""FIREWALL_DELETE_RULE""#, "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "zero-width space",
            |c| post(c, &call("1", r#""firewall_delete\u200b_rule""#, "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "cyrillic look-alike",
            |c| post(c, &call("1", "\"firew\u{0430}ll_delete_rule\"", "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "fullwidth look-alike",
            |c| post(c, &call("1", "\"\u{ff46}irewall_delete_rule\"", "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "embedded NUL",
            |c| post(c, &call("1", r#""firewall_delete_rule\u0000""#, "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "lone surrogate escape",
            |c| post(c, &call("1", r#""firewall_delete_rule\ud800""#, "{}")),
            &[Rpc(400, -32700)],
        ),
        case(
            "name longer than 256 bytes",
            |c| post(c, &call("1", &format!("\"{}\"", "a".repeat(300)), "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "name as an array",
            |c| post(c, &call("1", r#"["firewall_delete_rule"]"#, "{}")),
            &[Rpc(200, -32602)],
        ),
        case(
            "method with a trailing space",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"firewall_delete_rule"}}"#,
                )
            },
            &[Rpc(200, -32601)],
        ),
        case(
            "method in other case",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"firewall_list_rules"}}"#,
                )
            },
            &[Rpc(200, -32601)],
        ),
        // --- mirrored headers that disagree with the body.
        case(
            "Mcp-Method says tools/list, body calls a denied tool",
            |c| post_with(c, "Mcp-Method: tools/list\r\n", DELETE),
            &[Rpc(400, -32600)],
        ),
        case(
            "Mcp-Name names an allowed tool, body a denied one",
            |c| {
                post_with(
                    c,
                    "Mcp-Method: tools/call\r\nMcp-Name: firewall_list_rules\r\n",
                    DELETE,
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "Mcp-Name in other case",
            |c| {
                post_with(
                    c,
                    "Mcp-Method: tools/call\r\nMcp-Name: Firewall_List_Rules\r\n",
                    LIST,
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "two Mcp-Name headers, the first agreeing",
            |c| {
                post_with(
                    c,
                    "Mcp-Name: firewall_list_rules\r\nMcp-Name: firewall_delete_rule\r\n",
                    LIST,
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "two Mcp-Method headers, the first agreeing",
            |c| {
                post_with(
                    c,
                    "Mcp-Method: tools/call\r\nMcp-Method: tools/list\r\n",
                    LIST,
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "matching mirrored headers pass",
            |c| {
                post_with(
                    c,
                    "Mcp-Method: tools/call\r\nMcp-Name: firewall_list_rules\r\n",
                    LIST,
                )
            },
            &[Forwarded],
        ),
        // --- framing: Content-Length and chunked.
        case(
            "Content-Length shorter than the body: the rest is a second request, decided alone",
            |c| {
                let mut first = req(c, "POST /mcp HTTP/1.1", "", LIST.as_bytes(), false);
                first.extend(req(c, "POST /mcp HTTP/1.1", "", DELETE.as_bytes(), true));
                vec![first]
            },
            &[Forwarded, Denied],
        ),
        Case {
            name: "Content-Length longer than the body, then EOF",
            build: |c| {
                let head = format!(
                    "POST /mcp HTTP/1.1\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{DELETE}",
                    std_headers(c),
                    DELETE.len() + 10
                );
                vec![head.into_bytes()]
            },
            half_close: true,
            expect: &[Status(400)],
        },
        case(
            "two different Content-Length headers",
            |c| {
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\n{}Content-Length: {}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{LIST}",
                        std_headers(c),
                        LIST.len()
                    ),
                )]
            },
            &[Status(400)],
        ),
        case(
            "Content-Length and chunked together: chunked wins (hyper drops Content-Length)",
            |c| {
                let body = DELETE;
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\n{}Content-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                        std_headers(c),
                        body.len()
                    ),
                )]
            },
            &[Denied],
        ),
        case(
            "chunked, split inside the \\u005f escape",
            |c| {
                chunked(
                    c,
                    "",
                    &[
                        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"firewall\u00"#,
                        br#"5fdelete_rule","arguments":{}}}"#,
                    ],
                )
            },
            &[Denied],
        ),
        case(
            "chunked, split inside a multi-byte look-alike",
            |c| {
                let body = call("1", "\"firew\u{0430}ll_delete_rule\"", "{}").into_bytes();
                let at = body.iter().position(|b| *b == 0xd0).unwrap_or(0) + 1;
                let (a, b) = body.split_at(at);
                chunked(c, "", &[a, b])
            },
            &[Rpc(200, -32602)],
        ),
        case(
            "chunked in one-byte chunks with extensions",
            |c| {
                let mut pieces = vec![
                    format!(
                        "POST /mcp HTTP/1.1\r\n{}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                        std_headers(c)
                    )
                    .into_bytes(),
                ];
                let mut body = Vec::new();
                for b in DELETE.bytes() {
                    body.extend_from_slice(b"1;x=y\r\n");
                    body.push(b);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
                pieces.push(body);
                pieces
            },
            &[Denied],
        ),
        case(
            "chunked body larger than max_body_bytes",
            |c| {
                let big = " ".repeat(16 * 1024);
                let chunks: Vec<&[u8]> = (0..5).map(|_| big.as_bytes()).collect();
                chunked(c, "", &chunks)
            },
            &[Status(413)],
        ),
        case(
            "invalid chunk size",
            |c| {
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\n{}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{DELETE}\r\n0\r\n\r\n",
                        std_headers(c)
                    ),
                )]
            },
            &[Status(400)],
        ),
        case(
            "headers split byte-wise across records",
            |c| {
                req(c, "POST /mcp HTTP/1.1", "", DELETE.as_bytes(), true)
                    .chunks(7)
                    .map(<[u8]>::to_vec)
                    .collect()
            },
            &[Denied],
        ),
        // --- pipelining several requests on one connection.
        case(
            "pipelined allowed, denied, hidden",
            |c| {
                let mut all = req(c, "POST /mcp HTTP/1.1", "", LIST.as_bytes(), false);
                all.extend(req(c, "POST /mcp HTTP/1.1", "", DELETE.as_bytes(), false));
                all.extend(req(
                    c,
                    "POST /mcp HTTP/1.1",
                    "",
                    call("3", r#""ssh_execute""#, "{}").as_bytes(),
                    true,
                ));
                vec![all]
            },
            &[Forwarded, Denied, Rpc(200, -32602)],
        ),
        case(
            "pipelined calls of the limited tool (limit 3)",
            |c| {
                let mut all = Vec::new();
                for _ in 0..5 {
                    all.extend(req(
                        c,
                        "POST /mcp HTTP/1.1",
                        "",
                        LIMITED_CALL.as_bytes(),
                        false,
                    ));
                }
                all.extend(req(
                    c,
                    "POST /mcp HTTP/1.1",
                    "",
                    LIMITED_CALL.as_bytes(),
                    true,
                ));
                vec![all]
            },
            &[Forwarded, Forwarded, Forwarded, Limited, Limited, Limited],
        ),
        case(
            "limited tool from the other identity (global limit)",
            |c| {
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {{OTHER_TOKEN}}\r\nMcp-Session-Id: {{OTHER_SID}}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LIMITED_CALL}",
                        LIMITED_CALL.len()
                    ),
                )]
            },
            &[Limited],
        ),
        case(
            "limited tool, id reused, escaped name",
            |c| {
                post(
                    c,
                    &call(
                        "7",
                        r#""openvpn\u005fdisconnect_client""#,
                        r#"{"client_id":"c"}"#,
                    ),
                )
            },
            &[Limited],
        ),
        case(
            "pipelined with a parse error in the middle",
            |c| {
                let mut all = req(c, "POST /mcp HTTP/1.1", "", b"{\"jsonrpc\":", false);
                all.extend(req(c, "POST /mcp HTTP/1.1", "", DELETE.as_bytes(), true));
                vec![all]
            },
            &[Rpc(400, -32700), Denied],
        ),
        case(
            "id reused for an allowed then a denied call",
            |c| {
                let mut all = req(c, "POST /mcp HTTP/1.1", "", LIST.as_bytes(), false);
                all.extend(req(c, "POST /mcp HTTP/1.1", "", DELETE.as_bytes(), true));
                vec![all]
            },
            &[Forwarded, Denied],
        ),
        // --- paths and methods.
        case(
            "path /mcp/",
            |c| vec![req(c, "POST /mcp/ HTTP/1.1", "", DELETE.as_bytes(), true)],
            &[Status(404)],
        ),
        case(
            "path /MCP",
            |c| vec![req(c, "POST /MCP HTTP/1.1", "", DELETE.as_bytes(), true)],
            &[Status(404)],
        ),
        case(
            "path //mcp",
            |c| vec![req(c, "POST //mcp HTTP/1.1", "", DELETE.as_bytes(), true)],
            &[Status(404)],
        ),
        case(
            "path /mcp%2f",
            |c| vec![req(c, "POST /mcp%2f HTTP/1.1", "", DELETE.as_bytes(), true)],
            &[Status(404)],
        ),
        case(
            "path /%6Dcp",
            |c| vec![req(c, "POST /%6Dcp HTTP/1.1", "", DELETE.as_bytes(), true)],
            &[Status(404)],
        ),
        case(
            "path /x/../mcp",
            |c| {
                vec![req(
                    c,
                    "POST /x/../mcp HTTP/1.1",
                    "",
                    DELETE.as_bytes(),
                    true,
                )]
            },
            &[Status(404)],
        ),
        case(
            "path /mcp?x=1 is /mcp: still decided",
            |c| {
                vec![req(
                    c,
                    "POST /mcp?x=1 HTTP/1.1",
                    "",
                    DELETE.as_bytes(),
                    true,
                )]
            },
            &[Denied],
        ),
        case(
            "absolute-form target is /mcp: still decided",
            |c| {
                vec![req(
                    c,
                    "POST https://localhost/mcp HTTP/1.1",
                    "",
                    DELETE.as_bytes(),
                    true,
                )]
            },
            &[Denied],
        ),
        case(
            "HEAD",
            |c| vec![req(c, "HEAD /mcp HTTP/1.1", "", b"", true)],
            &[Head(405)],
        ),
        case(
            "PUT with a denied call",
            |c| vec![req(c, "PUT /mcp HTTP/1.1", "", DELETE.as_bytes(), true)],
            &[Status(405)],
        ),
        case(
            "OPTIONS",
            |c| vec![req(c, "OPTIONS /mcp HTTP/1.1", "", b"", true)],
            &[Status(405)],
        ),
        case(
            "GET",
            |c| vec![req(c, "GET /mcp HTTP/1.1", "", b"", true)],
            &[Status(405)],
        ),
        case(
            "lower-case method name",
            |c| vec![req(c, "post /mcp HTTP/1.1", "", DELETE.as_bytes(), true)],
            &[Status(405)],
        ),
        case(
            "HTTP/1.0 request",
            |c| vec![req(c, "POST /mcp HTTP/1.0", "", DELETE.as_bytes(), true)],
            &[Denied],
        ),
        // --- identities and sessions.
        case(
            "no token",
            |c| {
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Session-Id: {{SID}}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LIST}",
                        LIST.len()
                    ),
                )]
            },
            &[Status(401)],
        ),
        case(
            "two Authorization headers (valid, invalid)",
            |c| post_with(c, "Authorization: Bearer nope\r\n", LIST),
            &[Status(401)],
        ),
        case(
            "my token, the other identity's session",
            |c| {
                post_with(c, "", LIST)
                    .into_iter()
                    .map(|r| swap_sid(c, r))
                    .collect()
            },
            &[Rpc(404, -32001)],
        ),
        case(
            "the other identity's token, my session",
            |c| {
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {{OTHER_TOKEN}}\r\nMcp-Session-Id: {{SID}}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LIST}",
                        LIST.len()
                    ),
                )]
            },
            &[Rpc(404, -32001)],
        ),
        case(
            "DELETE of the other identity's session",
            |c| {
                vec![raw(
                    c,
                    "DELETE /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nMcp-Session-Id: {OTHER_SID}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )]
            },
            &[Status(404)],
        ),
        case(
            "the other identity's session still works after that DELETE",
            |c| {
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {{OTHER_TOKEN}}\r\nMcp-Session-Id: {{OTHER_SID}}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LIST}",
                        LIST.len()
                    ),
                )]
            },
            &[Forwarded],
        ),
        case(
            "unknown session id",
            |c| {
                post(c, LIST)
                    .into_iter()
                    .map(|r| {
                        String::from_utf8_lossy(&r)
                            .replace(&c.sid, "00000000000000000000000000000000")
                            .into_bytes()
                    })
                    .collect()
            },
            &[Rpc(404, -32001)],
        ),
        case(
            "unsupported protocol version header",
            |c| {
                post(c, DELETE)
                    .into_iter()
                    .map(|r| {
                        String::from_utf8_lossy(&r)
                            .replace("2025-06-18", "1999-01-01")
                            .into_bytes()
                    })
                    .collect()
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "two protocol version headers, the first supported",
            |c| post_with(c, "Mcp-Protocol-Version: 1999-01-01\r\n", DELETE),
            &[Rpc(400, -32600)],
        ),
        case(
            "two session headers, the first mine",
            |c| {
                post_with(c, "Mcp-Session-Id: {OTHER_SID}\r\n", LIST)
                    .into_iter()
                    .map(|r| raw(c, &String::from_utf8_lossy(&r)))
                    .collect()
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "Content-Length and chunked together, pipelined: the connection closes after the first",
            |c| {
                let body = LIMITED_CALL;
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\n{}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n{}",
                        std_headers(c),
                        body.len(),
                        String::from_utf8_lossy(&req(
                            c,
                            "POST /mcp HTTP/1.1",
                            "",
                            DELETE.as_bytes(),
                            true
                        )),
                    ),
                )]
            },
            // RFC 9112 6.1: processed by Transfer-Encoding alone, then the connection is closed,
            // so the request after it is never read.
            &[Limited],
        ),
        case(
            "foreign Origin",
            |c| post_with(c, "Origin: https://evil.example\r\n", DELETE),
            &[Status(403)],
        ),
        // --- bodies.
        case(
            "invalid UTF-8 in the name",
            |c| {
                let b: Vec<u8> = call("1", "\"firewall_delete_rule\u{1}\"", "{}")
                    .bytes()
                    .map(|x| if x == 1 { 0xff } else { x })
                    .collect();
                post_bytes(c, &b)
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "UTF-8 BOM",
            |c| post_bytes(c, &[b"\xEF\xBB\xBF".as_slice(), DELETE.as_bytes()].concat()),
            &[Rpc(400, -32700)],
        ),
        case(
            "JSON with a comment",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,/* x */"method":"tools/call","params":{"name":"firewall_delete_rule"}}"#,
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "NaN in arguments",
            |c| post(c, &call("1", r#""firewall_list_rules""#, r#"{"n":NaN}"#)),
            &[Rpc(400, -32700)],
        ),
        case(
            "Infinity in arguments",
            |c| {
                post(
                    c,
                    &call("1", r#""firewall_list_rules""#, r#"{"n":-Infinity}"#),
                )
            },
            &[Rpc(400, -32700)],
        ),
        case(
            "number beyond f64 in arguments",
            |c| post(c, &call("1", r#""firewall_list_rules""#, r#"{"n":1e400}"#)),
            &[Rpc(400, -32700)],
        ),
        case(
            "two JSON values in one body",
            |c| post(c, &format!("{LIST}{DELETE}")),
            &[Rpc(400, -32700)],
        ),
        case(
            "nesting of 65 levels",
            |c| post(c, &nested(62)),
            &[Rpc(400, -32700)],
        ),
        case(
            "nesting of 64 levels is fine",
            |c| post(c, &nested(61)),
            &[Forwarded],
        ),
        case(
            "body larger than max_body_bytes",
            |c| {
                post(
                    c,
                    &call(
                        "1",
                        r#""firewall_list_rules""#,
                        &format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_BODY)),
                    ),
                )
            },
            &[Status(413)],
        ),
        case(
            "Content-Length far beyond max_body_bytes, no body",
            |c| {
                vec![raw(
                    c,
                    &format!(
                        "POST /mcp HTTP/1.1\r\n{}Content-Length: 99999999999999999999\r\nConnection: close\r\n\r\n",
                        std_headers(c)
                    ),
                )]
            },
            &[Status(400)],
        ),
        case("empty body", |c| post(c, ""), &[Rpc(400, -32700)]),
        // --- ids.
        case(
            "id beyond i64",
            |c| {
                post(
                    c,
                    &call("9223372036854775808", r#""firewall_delete_rule""#, "{}"),
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "id below i64",
            |c| {
                post(
                    c,
                    &call("-9223372036854775809", r#""firewall_delete_rule""#, "{}"),
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "id as a fraction",
            |c| post(c, &call("1.5", r#""firewall_delete_rule""#, "{}")),
            &[Rpc(400, -32600)],
        ),
        case(
            "null id",
            |c| post(c, &call("null", r#""firewall_delete_rule""#, "{}")),
            &[Rpc(400, -32600)],
        ),
        case(
            "id as an object",
            |c| post(c, &call(r#"{"a":1}"#, r#""firewall_delete_rule""#, "{}")),
            &[Rpc(400, -32600)],
        ),
        // --- JSON-RPC shape.
        case(
            "\"jsonrpc\":\"2.0 \"",
            |c| post(c, &DELETE.replace("\"2.0\"", "\"2.0 \"")),
            &[Rpc(400, -32600)],
        ),
        case(
            "\"jsonrpc\":2.0 as a number",
            |c| post(c, &DELETE.replace("\"2.0\"", "2.0")),
            &[Rpc(400, -32600)],
        ),
        case(
            "unknown top-level member",
            |c| {
                post(
                    c,
                    &DELETE.replacen('{', r#"{"x-name":"firewall_list_rules","#, 1),
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "request that is also a response",
            |c| post(c, &DELETE.replacen('{', r#"{"result":{},"#, 1)),
            &[Rpc(400, -32600)],
        ),
        case(
            "params as an array",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["firewall_delete_rule",{}]}"#,
                )
            },
            &[Rpc(200, -32602)],
        ),
        case(
            "params as a string",
            |c| {
                post(
                    c,
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"firewall_delete_rule"}"#,
                )
            },
            &[Rpc(400, -32600)],
        ),
        case(
            "arguments as an array",
            |c| post(c, &call("1", r#""firewall_list_rules""#, "[1]")),
            &[Rpc(200, -32602)],
        ),
        // --- argument rules.
        case(
            "arguments inside the rule",
            |c| post(c, &create(r#""10.1.0.0/16""#, "443")),
            &[Forwarded],
        ),
        case(
            "source 0.0.0.0/0",
            |c| post(c, &create(r#""0.0.0.0/0""#, "443")),
            &[Denied],
        ),
        case(
            "source wider than the rule",
            |c| post(c, &create(r#""10.0.0.0/7""#, "443")),
            &[Denied],
        ),
        case(
            "source with leading zeros",
            |c| post(c, &create(r#""010.1.1.1""#, "443")),
            &[Denied],
        ),
        case(
            "source with a trailing space",
            |c| post(c, &create(r#""10.1.1.1 ""#, "443")),
            &[Denied],
        ),
        case(
            "source as an array",
            |c| post(c, &create(r#"["10.1.1.1","0.0.0.0/0"]"#, "443")),
            &[Denied],
        ),
        case(
            "port list sneaking 22",
            |c| post(c, &create(r#""10.1.1.1""#, r#""443,22""#)),
            &[Denied],
        ),
        case(
            "port as a float",
            |c| post(c, &create(r#""10.1.1.1""#, "443.0")),
            &[Denied],
        ),
        case(
            "port with an escaped digit",
            |c| post(c, &create(r#""10.1.1.1""#, r#""44\u0033""#)),
            &[Forwarded],
        ),
    ]
}

/// Replaces my session id by the other identity's in a built request.
fn swap_sid(c: &Ctx, r: Vec<u8>) -> Vec<u8> {
    String::from_utf8_lossy(&r)
        .replace(&c.sid, &c.other_sid)
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Raw TLS and a small HTTP/1.1 response reader.

async fn exchange(addr: SocketAddr, cert: &str, pieces: &[Vec<u8>], half_close: bool) -> Vec<u8> {
    let config = tls_config(cert.as_bytes()).expect("tls config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    for p in pieces {
        if tls.write_all(p).await.is_err() || tls.flush().await.is_err() {
            break;
        }
    }
    if half_close {
        let _ = tls.shutdown().await;
    }
    let mut out = Vec::new();
    // Bounded: every case ends with Connection: close or an EOF from the client.
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 16384];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

struct Resp {
    status: u16,
    body: Vec<u8>,
}

/// Reads one response off `data`; `head` means no body follows whatever the headers say.
fn read_response(data: &mut &[u8], head: bool) -> Result<Resp, String> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(data)
            )
        })?;
    let head_text = String::from_utf8_lossy(&data[..end]).to_string();
    *data = &data[end + 4..];
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut is_chunked = false;
    for l in lines {
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse::<usize>().ok();
        }
        if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
        {
            is_chunked = true;
        }
    }
    let mut body = Vec::new();
    if head || status == 204 || status == 304 {
    } else if is_chunked {
        loop {
            let e = data
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk")?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&data[..e])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )
            .map_err(|_| "bad chunk size")?;
            *data = &data[e + 2..];
            if size == 0 {
                let t = data
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .ok_or("truncated trailer")?;
                *data = &data[t + 2..];
                break;
            }
            if data.len() < size + 2 {
                return Err("truncated chunk body".into());
            }
            body.extend_from_slice(&data[..size]);
            *data = &data[size + 2..];
        }
    } else if let Some(n) = length {
        if data.len() < n {
            return Err(format!("body shorter than Content-Length {n}"));
        }
        body.extend_from_slice(&data[..n]);
        *data = &data[n..];
    } else {
        body.extend_from_slice(data);
        *data = &[];
    }
    Ok(Resp { status, body })
}

fn check(exp: Exp, r: &Resp) -> Result<(), String> {
    let json = || serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null);
    let text = |v: &Value| {
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let ok = match exp {
        Status(s) | Head(s) => r.status == s,
        Rpc(s, code) => r.status == s && json()["error"]["code"] == json!(code),
        Denied => {
            let v = json();
            r.status == 200
                && v["result"]["isError"] == json!(true)
                && text(&v).starts_with("Denied by mcpgw policy")
        }
        Limited => {
            let v = json();
            r.status == 200
                && v["result"]["isError"] == json!(true)
                && text(&v).starts_with("Rate limited by mcpgw")
        }
        Forwarded => {
            let v = json();
            r.status == 200
                && v["result"]["isError"] != json!(true)
                && v.get("error").is_none()
                && text(&v).contains("\"tool\"")
        }
        Accepted => r.status == 202 && r.body.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {exp:?}, got HTTP {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ))
    }
}

/// What the upstream may have received: only forwardable tools, the limited one at most
/// LIMIT times, argument-checked calls only with values inside the rule.
fn upstream_invariants(calls: &[(String, Value)]) -> Result<(), String> {
    for (tool, args) in calls {
        if !FORWARDABLE.contains(&tool.as_str()) {
            return Err(format!("the upstream ran {tool:?} ({args})"));
        }
        if tool == "firewall_create_rule" {
            let source_ok = matches!(args["source"].as_str(), Some("10.1.0.0/16" | "10.1.1.1"));
            let port_ok =
                args["destination_port"] == json!(443) || args["destination_port"] == json!("443");
            if !(source_ok && port_ok) {
                return Err(format!("firewall_create_rule ran with {args}"));
            }
        }
    }
    let limited = calls.iter().filter(|c| c.0 == LIMITED).count();
    if limited > LIMIT {
        return Err(format!(
            "{LIMITED} ran {limited} times; its limit is {LIMIT}"
        ));
    }
    Ok(())
}

#[tokio::test]
async fn hostile_corpus_never_runs_a_denied_call_or_exceeds_a_limit() {
    let gw = Gateway::start_with(Options {
        policy: POLICY.to_string(),
        listen_extra: format!("max_body_bytes = {MAX_BODY}\n"),
        more_identities: vec!["other".into()],
        ..Options::default()
    });
    let agent = gw.agent().await;
    let mut other = gw.connect(Some(&gw.other_tokens[0])).await;
    other.initialize().await.expect("initialize other");
    let ctx = Ctx {
        token: gw.token.clone(),
        other_token: gw.other_tokens[0].clone(),
        sid: agent.session.clone().expect("session"),
        other_sid: other.session.clone().expect("session"),
    };

    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let before = gw.upstream_calls().len();
        let pieces = (case.build)(&ctx);
        let data = exchange(gw.addr, &gw.cert_pem, &pieces, case.half_close).await;
        let mut rest = data.as_slice();
        let mut problems = Vec::new();
        for (i, exp) in case.expect.iter().enumerate() {
            match read_response(&mut rest, matches!(exp, Head(_))) {
                Ok(r) => {
                    if let Err(e) = check(*exp, &r) {
                        problems.push(format!("response {i}: {e}"));
                    }
                }
                Err(e) => {
                    problems.push(format!("response {i}: {e}"));
                    break;
                }
            }
        }
        if problems.is_empty() && !rest.is_empty() {
            problems.push(format!(
                "unexpected extra bytes: {:?}",
                String::from_utf8_lossy(rest)
            ));
        }
        let calls = gw.upstream_calls();
        if let Err(e) = upstream_invariants(&calls) {
            problems.push(e);
        }
        let forwarded = calls.len() - before;
        let expected = case
            .expect
            .iter()
            .filter(|e| matches!(e, Forwarded))
            .count();
        if forwarded != expected {
            problems.push(format!(
                "{forwarded} calls reached the upstream, expected {expected}: {:?}",
                &calls[before..]
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("[{}] {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The limit was really reached, so "at most LIMIT" above was tested, not vacuous.
    let limited = gw
        .upstream_calls()
        .iter()
        .filter(|c| c.0 == LIMITED)
        .count();
    assert_eq!(limited, LIMIT);
    // The agents' connections stayed usable throughout.
    drop(agent);
    let r = other
        .call_tool("firewall_list_rules", json!({}))
        .await
        .expect("call");
    assert!(r.get("result").is_some(), "{r}");
}
