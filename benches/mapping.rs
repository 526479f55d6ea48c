//! The runner's per-event CPU outside the store, in two parts:
//! - `receive`: the real SDK client invoking the simulator over loopback and decoding its
//!   event-stream frames into `TracePart`s (CPU time of the client's thread per trace event; the
//!   simulator runs on its own thread);
//! - `map`: what the runner does with each recorded `TracePart`: `wire::trace_event` (domain
//!   fields and raw JSON text through the SDK's accessors), the raw JSON text the store writes,
//!   and dropping both (nanoseconds per event, wall time on one thread).
//!
//! Run: `cargo bench --bench mapping` (under `cargo test` it runs a small smoke pass).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::sync::mpsc;
use std::time::Instant;

use agentdeck::bedrock::wire;
use agentdeck::sim::{SimConfig, start};
use aws_sdk_bedrockagentruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockagentruntime::types::{ResponseStream, TracePart};

const ASKS: [(&str, &str, &str); 4] = [
    ("PAYAGENT01", "PRODALIAS", "pay 250 EUR to acct-7"),
    ("PAYAGENT01", "PRODALIAS", "what is my balance"),
    ("KBAGENT003", "LIVE", "what is the travel policy?"),
    ("SUPERVISR1", "LIVE", "pay 90 GBP to acct-3"),
];

fn simulator() -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sim = start(SimConfig {
                time_scale: 0.0,
                ..SimConfig::builtin().unwrap()
            })
            .await
            .unwrap();
            tx.send(sim.endpoint()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// This thread's CPU time (user + system) in seconds, from /proc (clock ticks of 10 ms).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `) `.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Runs `turns` turns one at a time; returns the trace parts and the client thread's CPU seconds.
fn receive(endpoint: &str, turns: usize) -> (Vec<TracePart>, f64) {
    let conf = aws_sdk_bedrockagentruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDLOCAL", "local", None, None, "bench"))
        .endpoint_url(endpoint)
        .build();
    let client = aws_sdk_bedrockagentruntime::Client::from_conf(conf);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu = thread_cpu();
    let parts = rt.block_on(async {
        let mut parts = Vec::new();
        for i in 0..turns {
            let (agent, alias, text) = ASKS[i % ASKS.len()];
            let mut out = client
                .invoke_agent()
                .agent_id(agent)
                .agent_alias_id(alias)
                .session_id(format!("map-{i:06}"))
                .input_text(text)
                .enable_trace(true)
                .send()
                .await
                .unwrap();
            while let Some(e) = out.completion.recv().await.unwrap() {
                if let ResponseStream::Trace(p) = e {
                    parts.push(p);
                }
            }
        }
        parts
    });
    (parts, thread_cpu() - cpu)
}

/// Nanoseconds per part for `f` over all parts, best of `rounds`. `f` gets each part as the
/// runner does, owned (copied before the clock starts; dropping it is timed).
fn per_part(parts: &[TracePart], rounds: usize, f: impl Fn(TracePart) -> usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let round = parts.to_vec();
        let started = Instant::now();
        let mut n = 0;
        for p in round {
            n += f(p);
        }
        black_box(n);
        best = best.min(started.elapsed().as_secs_f64() * 1e9 / parts.len() as f64);
    }
    best
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let endpoint = simulator();
    receive(&endpoint, 8);
    let turns = if full { 2_000 } else { 20 };
    let (parts, cpu) = receive(&endpoint, turns);
    println!(
        "receive: {} trace parts from {turns} turns, client thread {:.2} us CPU per trace part \
         (all SDK work of the turn, 10 ms ticks)",
        parts.len(),
        cpu * 1e6 / parts.len() as f64
    );
    let rounds = if full { 20 } else { 1 };
    let value = per_part(&parts, rounds, |p| {
        let e = agentdeck::domain::trace::TraceEvent::from_wire(wire::trace_part(&p));
        e.raw.to_json().unwrap().len()
    });
    println!("map (Value path: trace_part + from_wire + to_json): {value:.0} ns per part");
    let direct = per_part(&parts, rounds, |p| {
        let e = wire::trace_event(p);
        e.raw.to_json().unwrap().len()
    });
    println!("map (wire::trace_event + to_json): {direct:.0} ns per part");
}
