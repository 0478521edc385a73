//! Policy decision cost alone: `Policy::decide` on a compiled 150-rule policy, one thread.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use mcpgw::identity::Identity;
use mcpgw::mcp::subject::Subject;

use crate::setup::{BENCH_TOOL, Kind, POLICY_RULES, kind_of, policy_toml, tool_names};

pub struct MicroResult {
    /// (label, decisions, ns per decision)
    pub rows: Vec<(String, u64, f64)>,
}

fn time(policy: &mcpgw::policy::Policy, identity: &Identity, names: &[&str], n: u64) -> f64 {
    let t0 = Instant::now();
    let mut allowed = 0u64;
    for i in 0..n {
        let name = names[i as usize % names.len()];
        let subject = Subject::Tool {
            name: black_box(name),
            arguments: None,
        };
        let d = policy.decide(black_box(identity), black_box(&subject));
        allowed += d.is_allow() as u64;
        black_box(&d);
    }
    black_box(allowed);
    t0.elapsed().as_nanos() as f64 / n as f64
}

pub fn run(n: u64) -> Result<MicroResult, String> {
    let (_, hash) = mcpgw::identity::new_token()?;
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\n\n[[identity]]\nname = \"agent\"\ntoken_sha256 = [\"{}\"]\n\n{}",
        hash.to_hex(),
        policy_toml()
    );
    let config = mcpgw::config::parse(Path::new("bench.toml"), &text).map_err(|e| e.to_string())?;
    let policy = config.policy;
    let identity = Identity::named("agent");
    let names = tool_names(POLICY_RULES - 1);
    let of = |k: Kind| -> Vec<&str> {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| kind_of(*i) == k)
            .map(|(_, n)| n.as_str())
            .collect()
    };
    let unknown: Vec<String> = (0..16).map(|i| format!("no_such_tool_{i}")).collect();
    let unknown: Vec<&str> = unknown.iter().map(String::as_str).collect();
    // The mix: every rule's tool once, the bench tool, and 16 unknown names, interleaved.
    let mut mix: Vec<&str> = names.iter().map(String::as_str).collect();
    mix.push(BENCH_TOOL);
    mix.extend(unknown.iter());
    // Warm up the limiter tables and caches.
    time(&policy, &identity, &mix, 100_000);
    let mut rows = vec![(
        format!("mix of {} names (all kinds)", mix.len()),
        n,
        time(&policy, &identity, &mix, n),
    )];
    let per = (n / 5).max(1);
    for (label, set) in [
        ("allow", of(Kind::Allow)),
        ("allow + limit (huge max)", of(Kind::AllowLimited)),
        ("deny (rule)", of(Kind::Deny)),
        ("hide", of(Kind::Hide)),
        ("unknown (default deny)", unknown.clone()),
    ] {
        rows.push((label.to_string(), per, time(&policy, &identity, &set, per)));
    }
    // The bench tool with its real arguments: three argument rules, then a limit.
    let args: serde_json::Value =
        serde_json::from_str(crate::setup::BENCH_ARGS).map_err(|e| e.to_string())?;
    let subject = Subject::Tool {
        name: BENCH_TOOL,
        arguments: args.as_object(),
    };
    let t0 = Instant::now();
    for _ in 0..per {
        black_box(policy.decide(black_box(&identity), black_box(&subject)));
    }
    rows.push((
        "allow + 3 argument rules (set, network, port) + limit".to_string(),
        per,
        t0.elapsed().as_nanos() as f64 / per as f64,
    ));
    Ok(MicroResult { rows })
}
