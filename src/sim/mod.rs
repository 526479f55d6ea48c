//! The local Bedrock Agent Runtime simulator (`agentdeck sim`): InvokeAgent over HTTP/1.1 with
//! AWS event-stream frames, driven by scenario scripts, with seeded timing and injectable faults.
//! It serves 127.0.0.1 only and never calls AWS.
//!
//! Behaviour chosen where Bedrock's is not documented (see `server` and `engine`):
//! - A request without an `Authorization` header gets 403 `MissingAuthenticationTokenException`;
//!   one that is not SigV4 (`AWS4-HMAC-SHA256 Credential=...`) gets 403
//!   `IncompleteSignatureException`. Signatures are not verified.
//! - A session idle longer than its agent's `idle_ttl_secs` is gone: the next call with that
//!   sessionId starts a fresh session, and resuming a return of control issued in the old one is a
//!   400 `ValidationException` that says the session expired.
//! - `responseState: FAILURE` ends the turn with a failureTrace and a `dependencyFailedException`
//!   frame (the API reference: "the request would fail with dependency failure exception");
//!   `REPROMPT` sends the response to the model, which re-plans and returns control again with a
//!   new invocationId.

pub mod cli;
pub mod cw;
mod engine;
pub mod error;
pub mod fault;
pub mod frame;
pub mod scenario;
mod server;
mod session;
mod template;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use error::{AwsError, SimError};
pub use fault::Faults;
pub use scenario::Scenario;

use engine::World;
use scenario::summarize;

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// 0 = an ephemeral port.
    pub port: u16,
    pub seed: u64,
    pub scenarios: Vec<Scenario>,
    pub faults: Faults,
    /// 1.0 = scripted latencies in real time; 0.0 = no sleeping (tests).
    pub time_scale: f64,
}

impl SimConfig {
    /// The built-in scenarios, seed 0, no faults, real-time latencies.
    pub fn builtin() -> Result<Self, SimError> {
        Ok(Self {
            port: 0,
            seed: 0,
            scenarios: Scenario::builtin()?,
            faults: Faults::default(),
            time_scale: 1.0,
        })
    }
}

/// One kind of input and what it makes the agent do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// Any of these words in the input; empty = anything else.
    pub keywords: Vec<String>,
    pub does: String,
    /// A script every agent follows (checked before the agent's own).
    pub shared: bool,
}

/// An agent the simulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSummary {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub description: String,
    pub idle_ttl_secs: u64,
    /// The agent's own scripts, then the shared ones every agent follows (checked first).
    pub behaviours: Vec<Behaviour>,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// InvokeAgent calls answered with a stream (new input or resume).
    pub invocations: u64,
    /// Of those, resumes of a return of control.
    pub resumes: u64,
    /// Event-stream frames sent (events and exceptions).
    pub frames: u64,
    pub bytes: u64,
    /// Sessions created (a session that expired and came back counts twice).
    pub sessions: u64,
    /// HTTP errors plus exception frames.
    pub errors: u64,
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    pub addr: SocketAddr,
    shared: Arc<server::Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Start serving on 127.0.0.1.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let mut agents = BTreeMap::new();
    let mut shared_scripts = Vec::new();
    let mut faults = Faults::default();
    for s in &config.scenarios {
        for a in &s.agents {
            if agents.insert(a.id.clone(), a.clone()).is_some() {
                return Err(SimError::scenario(
                    &s.source,
                    format!("agent {} is defined twice", a.id),
                ));
            }
        }
        shared_scripts.extend(s.shared.iter().cloned());
        if let Some(spec) = &s.faults {
            faults = faults.merged(&Faults::parse(spec)?);
        }
    }
    for (id, a) in &agents {
        for c in &a.collaborators {
            let ok = agents
                .get(&c.agent)
                .is_some_and(|t| t.aliases.contains(&c.alias));
            if !ok {
                return Err(SimError::scenario(
                    "(all scenarios)",
                    format!(
                        "agent {id}: collaborator {:?} points to {}/{}, which no scenario defines",
                        c.name, c.agent, c.alias
                    ),
                ));
            }
        }
    }
    let faults = faults.merged(&config.faults);
    let world = World::new(agents, shared_scripts);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(|source| SimError::Bind {
            port: config.port,
            source,
        })?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(server::Shared::new(
        world,
        config.seed,
        faults,
        config.time_scale.max(0.0),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server::serve(listener, shared.clone(), stopped));
    tracing::info!(%addr, "simulator listening");
    Ok(SimHandle {
        addr,
        shared,
        stop,
        task,
    })
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, for `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn agents(&self) -> Vec<AgentSummary> {
        let world = &self.shared.world;
        world
            .agents
            .values()
            .map(|a| {
                let mut behaviours: Vec<Behaviour> = a
                    .scripts
                    .iter()
                    .map(|s| Behaviour {
                        keywords: s.keywords.clone(),
                        does: summarize(a, s),
                        shared: false,
                    })
                    .collect();
                behaviours.extend(world.shared.iter().map(|s| Behaviour {
                    keywords: s.keywords.clone(),
                    does: summarize(a, s),
                    shared: true,
                }));
                if let Some(g) = &a.guardrail {
                    behaviours.insert(
                        0,
                        Behaviour {
                            keywords: g.deny_words.clone(),
                            does: format!("guardrail {} INTERVENED, blocked answer", g.id),
                            shared: false,
                        },
                    );
                }
                AgentSummary {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    aliases: a.aliases.clone(),
                    description: a.description.clone(),
                    idle_ttl_secs: a.idle_ttl_secs,
                    behaviours,
                }
            })
            .collect()
    }

    /// Resume calls seen for this invocationId, accepted or not.
    pub fn resume_count(&self, invocation_id: &str) -> u32 {
        self.shared.resume_count(invocation_id)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// The faults in force (the scenarios' merged with the configuration's).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Move the simulator's clock forward (session idle timeouts, timestamps): a test hook that
    /// saves waiting out a real TTL.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Stop the simulator's wall clock at `at` (trace timestamps, metric times; `advance_clock`
    /// still moves it): a test hook that makes whole streams reproducible.
    pub fn freeze_wall_clock(&self, at: chrono::DateTime<chrono::Utc>) {
        self.shared.clock.freeze_wall(at);
    }

    /// The CloudWatch stand-in's metric store (what `agentdeck sim` answers on its port under
    /// `/service/GraniteServiceVersion20100801/...`): record or inspect metrics directly.
    pub fn with_metrics<T>(&self, f: impl FnOnce(&mut cw::store::MetricStore) -> T) -> T {
        f(&mut self
            .shared
            .cloudwatch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Stop accepting, close open connections, and wait for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
