//! Ingest throughput: trace events recorded per second by the runner from the simulator over
//! loopback (real SDK client, real event-stream frames, SQLite on disk), and how many concurrent
//! sessions the simulator sustains.
//!
//! Run: `cargo bench --bench ingest` (under `cargo test` it runs a small smoke pass).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use agentdeck::bedrock::TraceWriter;
use agentdeck::bedrock::runner::{BedrockRunner, InvokeRequest, Recorder, SubmitSettings};
use agentdeck::config::Config;
use agentdeck::sim::{SimConfig, start};
use agentdeck::store::sqlite::SqliteStore;

const ASKS: [(&str, &str, &str); 4] = [
    ("PAYAGENT01", "PRODALIAS", "pay 250 EUR to acct-7"),
    ("PAYAGENT01", "PRODALIAS", "what is my balance"),
    ("KBAGENT003", "LIVE", "what is the travel policy?"),
    ("SUPERVISR1", "LIVE", "pay 90 GBP to acct-3"),
];

/// Starts a simulator on its own thread and runtime; returns its endpoint.
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

/// Runs `turns` invocations, keeping `concurrency` in flight; returns (events, errors, wall
/// time). Records through a `TraceWriter` (group commit), or with `AGENTDECK_INGEST_DIRECT=1`
/// each turn's writes straight into the store (a transaction per write).
fn run(endpoint: &str, turns: usize, concurrency: usize) -> (u64, u64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("ingest.db")).unwrap());
    let direct = std::env::var_os("AGENTDECK_INGEST_DIRECT").is_some();
    let writer = TraceWriter::spawn(store.clone()).unwrap();
    let recorder = if direct {
        Recorder::Direct(&*store)
    } else {
        Recorder::Grouped(&writer)
    };
    let config = Config::defaults().unwrap();
    let runner = BedrockRunner::loopback(endpoint);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (events, errors) = rt.block_on(async {
        let ttl = |_: &str| 600;
        let submit = SubmitSettings {
            policy: &config.policy,
            ttl_secs: &ttl,
            actor: "bench",
        };
        let requests = (0..turns).map(|i| {
            let (agent, alias, text) = ASKS[i % ASKS.len()];
            InvokeRequest {
                agent_id: agent.into(),
                agent_alias_id: alias.into(),
                session_id: format!("bench-{i:06}"),
                input_text: text.into(),
                session_attributes: BTreeMap::new(),
            }
        });
        let runner = &runner;
        let submit = &submit;
        let mut results = futures::stream::iter(requests)
            .map(|req| async move { runner.invoke_to(&req, recorder, submit, &mut |_| {}).await })
            .buffer_unordered(concurrency);
        let mut events = 0_u64;
        let mut errors = 0_u64;
        while let Some(r) = results.next().await {
            match r {
                Ok(s) => events += s.events,
                Err(_) => errors += 1,
            }
        }
        (events, errors)
    });
    let wall = started.elapsed();
    writer.close();
    (events, errors, wall)
}

/// This process's CPU seconds (user+sys) and bytes written (`wchar`), from /proc (Linux).
fn usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let wchar = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))?
        .parse()
        .ok()?;
    Some((ticks / 100.0, wchar))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let endpoint = simulator();
    let (turns, mut concurrency) = if full { (4_000, 32) } else { (40, 8) };
    if let Some(n) = std::env::var("AGENTDECK_INGEST_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        concurrency = n;
    }
    // Warm up connections and the store's statement cache.
    run(&endpoint, 20, 4);
    let before = usage();
    let (events, errors, wall) = run(&endpoint, turns, concurrency);
    let after = usage();
    println!(
        "ingest: {events} trace events from {turns} turns ({concurrency} at a time) in {:.2} s = {:.0} events/s, {errors} errors",
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64()
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "  cpu {:.1} us per event (user+sys, every thread: simulator, client, writer); {:.0} bytes written per event (files and sockets)",
            (a.0 - b.0) * 1e6 / events as f64,
            (a.1 - b.1) as f64 / events as f64
        );
    }
    assert_eq!(errors, 0);
    let sessions = if full { 200 } else { 20 };
    let (events, errors, wall) = run(&endpoint, sessions, sessions);
    println!(
        "concurrency: {sessions} sessions at once, {events} events in {:.2} s, {errors} errors",
        wall.as_secs_f64()
    );
    assert_eq!(errors, 0);
}
