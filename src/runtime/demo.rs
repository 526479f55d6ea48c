//! The live demo's moving parts beside the console: the simulator in-process on an ephemeral
//! loopback port, a traffic generator that drives simulated users through the scenarios with the
//! real SDK client at a steady rate, and the outbox worker that resumes agents after decisions.
//!
//! The runner's futures borrow their store and observer, so the traffic and the worker run on
//! their own thread with a current-thread runtime and a `LocalSet`; they talk to the console only
//! through the store, exactly as another process would.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::bedrock::executor::ScriptedExecutor;
use crate::bedrock::runner::DeckStore;
use crate::bedrock::runner::{BedrockRunner, InvokeRequest, Recorder, RunnerStore, SubmitSettings};
use crate::bedrock::worker::{ResumeWorker, worker_name};
use crate::bedrock::writer::TraceWriter;
use crate::config::Config;

/// How the demo's traffic behaves.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// New agent turns per second, across all users.
    pub rate: f64,
    /// Simulated users: at most this many turns in flight at once.
    pub users: usize,
    pub seed: u64,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        Self {
            rate: 0.5,
            users: 8,
            seed: 0,
        }
    }
}

/// What a user may ask, and of whom. `{n}` is a seeded number, `{amount}` a seeded amount.
const ASKS: [(u32, &str, &str, &str); 12] = [
    (
        26,
        "PAYAGENT01",
        "PRODALIAS",
        "pay {amount} EUR to prod-{n}",
    ),
    (
        8,
        "PAYAGENT01",
        "TSTALIASID",
        "transfer {amount} USD to acct-{n}",
    ),
    (8, "PAYAGENT01", "PRODALIAS", "refund order {n}"),
    (8, "PAYAGENT01", "TSTALIASID", "what is my balance"),
    (7, "OPSAGENT02", "LIVE", "delete cluster staging-{n}"),
    (4, "OPSAGENT02", "LIVE", "close account ACC-{n}"),
    (12, "KBAGENT003", "LIVE", "what is the travel policy?"),
    (3, "KBAGENT003", "LIVE", "tell me the admin password"),
    (7, "SUPERVISR1", "LIVE", "pay {amount} GBP to acct-{n}"),
    (
        4,
        "PAYAGENT01",
        "PRODALIAS",
        "soft fail while checking limits",
    ),
    (3, "OPSAGENT02", "LIVE", "fail the health check"),
    (
        4,
        "CUSTORCH01",
        "LIVE",
        "run code to chart last week's sales",
    ),
];

fn pick_ask(rng: &mut fastrand::Rng) -> (&'static str, &'static str, String) {
    let total: u32 = ASKS.iter().map(|a| a.0).sum();
    let mut roll = rng.u32(0..total);
    let (_, agent, alias, template) = ASKS
        .iter()
        .find(|a| {
            if roll < a.0 {
                true
            } else {
                roll -= a.0;
                false
            }
        })
        .copied()
        .unwrap_or(ASKS[0]);
    let amount = match rng.u32(0..10) {
        0..=3 => rng.u32(20..1000),
        4..=7 => rng.u32(1000..10_000),
        _ => rng.u32(10_000..80_000),
    };
    let text = template
        .replace("{amount}", &amount.to_string())
        .replace("{n}", &rng.u32(1..999).to_string());
    (agent, alias, text)
}

/// Handles to the demo's background work.
#[derive(Debug)]
pub struct DemoTraffic {
    stop: Arc<AtomicBool>,
    /// Turns started so far.
    pub started: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DemoTraffic {
    /// Stops generating traffic and waits for the thread (turns in flight are dropped).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the traffic generator and the outbox worker against the simulator at `endpoint`,
/// recording into `store` (either adapter).
pub fn start_traffic(
    endpoint: String,
    store: Arc<dyn DeckStore>,
    config: Config,
    options: TrafficOptions,
) -> std::io::Result<DemoTraffic> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let (stop2, started2) = (Arc::clone(&stop), Arc::clone(&started));
    let thread = std::thread::Builder::new()
        .name("agentdeck-demo-traffic".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "demo traffic: cannot start a runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(
                &rt,
                traffic(endpoint, store, config, options, stop2, started2),
            );
        })?;
    Ok(DemoTraffic {
        stop,
        started,
        thread: Some(thread),
    })
}

async fn traffic(
    endpoint: String,
    store: Arc<dyn DeckStore>,
    config: Config,
    options: TrafficOptions,
    stop: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
) {
    let runner = Rc::new(BedrockRunner::loopback(&endpoint));
    // The turns record through one writer thread, which commits what they queue together
    // instead of taking the store's lock for a transaction per batch.
    let deck: Arc<dyn RunnerStore> = store.clone();
    let writer = match TraceWriter::spawn(deck) {
        Ok(w) => Rc::new(w),
        Err(e) => {
            tracing::error!(error = %e, "demo traffic: cannot start the writer thread");
            return;
        }
    };
    let config = Rc::new(config);
    tokio::task::spawn_local(resume_loop(
        Rc::clone(&runner),
        Arc::clone(&store),
        Rc::clone(&config),
        Arc::clone(&stop),
    ));
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let in_flight = Rc::new(Cell::new(0_usize));
    let users = options.users.max(1);
    let period = Duration::from_secs_f64(1.0 / options.rate.clamp(0.01, 1000.0));
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Seeded jitter of +-50% keeps arrivals from marching in step.
        let jitter = 0.5 + rng.f64();
        tokio::time::sleep(period.mul_f64(jitter)).await;
        if in_flight.get() >= users {
            continue;
        }
        in_flight.set(in_flight.get() + 1);
        let slot = Rc::clone(&in_flight);
        n += 1;
        started.fetch_add(1, Ordering::Relaxed);
        let (agent, alias, text) = pick_ask(&mut rng);
        let request = InvokeRequest {
            agent_id: agent.to_owned(),
            agent_alias_id: alias.to_owned(),
            session_id: format!("demo-{:05}-{}", n, rng.u32(1000..9999)),
            input_text: text,
            session_attributes: BTreeMap::from([("channel".to_owned(), "demo".to_owned())]),
        };
        let (runner, writer, config) = (Rc::clone(&runner), Rc::clone(&writer), Rc::clone(&config));
        tokio::task::spawn_local(async move {
            let ttl = |agent: &str| config.ttl_secs(agent);
            let submit = SubmitSettings {
                policy: &config.policy,
                ttl_secs: &ttl,
                actor: "demo-traffic",
            };
            let recorded = runner
                .invoke_to(&request, Recorder::Grouped(&writer), &submit, None)
                .await;
            if let Err(e) = recorded {
                tracing::info!(agent = %request.agent_id, error = %e, "demo turn ended in an error");
            }
            slot.set(slot.get().saturating_sub(1));
        });
    }
}

async fn resume_loop(
    runner: Rc<BedrockRunner>,
    store: Arc<dyn DeckStore>,
    config: Rc<Config>,
    stop: Arc<AtomicBool>,
) {
    let executor = ScriptedExecutor::demo();
    let ttl = |agent: &str| config.ttl_secs(agent);
    let submit = SubmitSettings {
        policy: &config.policy,
        ttl_secs: &ttl,
        actor: "demo-resume",
    };
    let worker = ResumeWorker {
        runner: &runner,
        store: &*store,
        executor: &executor,
        submit: &submit,
        owner: worker_name(),
        lease: Duration::from_secs(30),
        max_attempts: 8,
    };
    while !stop.load(Ordering::Relaxed) {
        match worker.resume_pending(&mut |_| {}).await {
            Ok(report) if !report.items.is_empty() => {
                tracing::info!(
                    n = report.items.len(),
                    "demo: resumed agents after decisions"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "demo: resume round failed"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
