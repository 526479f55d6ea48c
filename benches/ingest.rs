//! Ingest throughput: trace events recorded per second by the runner from the simulator over
//! loopback (real SDK client, real event-stream frames, SQLite on disk), and how many concurrent
//! sessions the simulator sustains.
//!
//! Run: `cargo bench --bench ingest` (under `cargo test` it runs a small smoke pass).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agentdeck::bedrock::runner::{BedrockRunner, InvokeRequest, SubmitSettings};
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

/// Runs `turns` invocations, `concurrency` at a time; returns (events, errors, wall time).
fn run(endpoint: &str, turns: usize, concurrency: usize) -> (u64, u64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ingest.db")).unwrap();
    let config = Config::defaults().unwrap();
    let runner = BedrockRunner::loopback(endpoint);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let started = Instant::now();
    let (events, errors) = local.block_on(&rt, async {
        let ttl = |_: &str| 600;
        let submit = SubmitSettings {
            policy: &config.policy,
            ttl_secs: &ttl,
            actor: "bench",
        };
        let mut events = 0_u64;
        let mut errors = 0_u64;
        let mut next = 0_usize;
        while next < turns {
            let batch: Vec<_> = (next..turns.min(next + concurrency))
                .map(|i| {
                    let (agent, alias, text) = ASKS[i % ASKS.len()];
                    InvokeRequest {
                        agent_id: agent.into(),
                        agent_alias_id: alias.into(),
                        session_id: format!("bench-{i:06}"),
                        input_text: text.into(),
                        session_attributes: BTreeMap::new(),
                    }
                })
                .collect();
            next += batch.len();
            let results = futures::future::join_all(
                batch.iter().map(|req| one(&runner, req, &store, &submit)),
            )
            .await;
            for r in results {
                match r {
                    Ok(s) => events += s.events,
                    Err(_) => errors += 1,
                }
            }
        }
        (events, errors)
    });
    (events, errors, started.elapsed())
}

async fn one(
    runner: &BedrockRunner,
    req: &InvokeRequest,
    store: &SqliteStore,
    submit: &SubmitSettings<'_>,
) -> Result<agentdeck::bedrock::runner::InvocationSummary, agentdeck::bedrock::RunnerError> {
    runner.invoke(req, store, submit, &mut |_| {}).await
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let endpoint = simulator();
    let (turns, concurrency) = if full { (4_000, 32) } else { (40, 8) };
    // Warm up connections and the store's statement cache.
    run(&endpoint, 20, 4);
    let (events, errors, wall) = run(&endpoint, turns, concurrency);
    println!(
        "ingest: {events} trace events from {turns} turns ({concurrency} at a time) in {:.2} s = {:.0} events/s, {errors} errors",
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64()
    );
    assert_eq!(errors, 0);
    let sessions = if full { 200 } else { 20 };
    let (events, errors, wall) = run(&endpoint, sessions, sessions);
    println!(
        "concurrency: {sessions} sessions at once, {events} events in {:.2} s, {errors} errors",
        wall.as_secs_f64()
    );
    assert_eq!(errors, 0);
}
