//! The only impure glue of the console: terminal, input task, clock, store watcher, effect
//! executor, and the loop that folds messages through `update` and renders at most once per batch.

pub mod demo;
pub mod input;
pub mod terminal;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;

use std::sync::PoisonError;

use crate::app::msg::{MetricsLoad, StoreFailure};
use crate::app::traces::INDEX_PAGE_EVENTS;
use crate::app::update::init;
use crate::app::{AppState, Effect, Msg, update};
use crate::domain::metrics::Engine;
use crate::store::metrics::MetricsStore;
use crate::store::run::{OutboxStore, TraceStore};
use crate::store::{ApprovalStore, StoreError};
use crate::ui::theme::Theme;

/// How often the console re-reads a store it cannot watch (other consoles' decisions show within
/// this plus one read).
const STORE_POLL: Duration = Duration::from_secs(1);

/// The most step rows the traces pane reads at once (it reads the rows near the selection).
const STEPS_SHOWN: usize = 1000;
/// The most steps one traces search returns.
const SEARCH_HITS: usize = 10_000;
const NO_TRACES: &str = "this store keeps no traces";

/// How long quitting waits for a decision that is being written.
const DRAIN_ON_QUIT: Duration = Duration::from_secs(10);

/// The metrics engine and the store it reads, shared by the effects that refresh it.
#[derive(Clone)]
pub struct MetricsFeed {
    pub store: Arc<dyn MetricsStore>,
    pub engine: Arc<std::sync::Mutex<Engine>>,
    /// Publish the figures to CloudWatch on a timer while the console runs (off: None).
    pub publish: Option<TimedPublish>,
    /// Read Bedrock's CloudWatch figures from here every minute (off: None).
    pub cloudwatch_in: Option<String>,
}

/// How often the metrics pane's Bedrock (CloudWatch) figures are read.
const BEDROCK_EVERY: Duration = Duration::from_secs(60);

/// The console's timed publish: what `agentdeck metrics publish` sends, every `every`.
#[derive(Debug, Clone)]
pub struct TimedPublish {
    pub endpoint: Option<String>,
    pub namespace: String,
    pub window: crate::domain::metrics::Window,
    pub every: Duration,
}

/// One publish of the engine's figures (refreshed from the store first), off the UI thread.
pub async fn publish_once(
    feed: &MetricsFeed,
    p: &TimedPublish,
) -> Result<crate::cloudwatch::PublishReport, String> {
    let f = feed.clone();
    let window = p.window;
    let data = tokio::task::spawn_blocking(move || {
        let mut engine = f.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        engine.advance(now.timestamp_millis());
        crate::store::metrics::refresh(f.store.as_ref(), &mut engine)
            .map(|_| crate::cloudwatch::ours::datums(&engine, window, now))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the metrics task failed: {e}"))??;
    let client = crate::cloudwatch::client(p.endpoint.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    crate::cloudwatch::publish(&client, &p.namespace, &data)
        .await
        .map_err(|e| e.to_string())
}

impl std::fmt::Debug for MetricsFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsFeed").finish_non_exhaustive()
    }
}

const NO_METRICS: &str = "this store keeps no traces, so there are no metrics to compute";

/// Runs the console until the user quits. Decisions in flight are allowed to finish first.
pub async fn run_console(
    mut state: AppState,
    theme: Theme,
    store: Arc<dyn ApprovalStore>,
    traces: Option<Arc<dyn TraceStore>>,
    links: Option<Arc<dyn OutboxStore>>,
    metrics: Option<MetricsFeed>,
    watch_path: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let (_guard, mut terminal) = terminal::TerminalGuard::enter()?;
    let size = terminal.size()?;
    state.width = size.width;
    state.height = size.height;
    let (tx, mut rx) = unbounded_channel::<Msg>();

    let input_tx = tx.clone();
    tokio::spawn(async move {
        let mut events = crossterm::event::EventStream::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(ev) => {
                    if let Some(msg) = input::to_msg(ev) {
                        if input_tx.send(msg).is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "terminal input failed");
                    break;
                }
            }
        }
    });

    let tick_tx = tx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if tick_tx.send(Msg::Tick(Utc::now())).is_err() {
                break;
            }
        }
    });

    let watcher = match watch_path {
        Some(path) => match watch::watch_store(&path, tx.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the store's files; polling it every second instead");
                None
            }
        },
        None => None,
    };
    if watcher.is_none() {
        // A store with no files to watch (DynamoDB), or a watch that failed: read the queue
        // once a second while the console runs. The read is a Query on the pending index, so
        // it costs what the queue holds, not the history.
        let poll_tx = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(STORE_POLL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if poll_tx.send(Msg::StoreChanged).is_err() {
                    break;
                }
            }
        });
    }

    if traces.is_some() {
        // A runner in this process (the demo) says when it committed a step: no waiting for the
        // watcher to settle. The listener goes when the console's channel closes.
        let commit_tx = tx.clone();
        crate::store::sqlite::on_trace_commit(move || commit_tx.send(Msg::StoreChanged).is_ok());
    }
    if let Some((feed, p)) = metrics
        .as_ref()
        .and_then(|f| f.publish.clone().map(|p| (f.clone(), p)))
    {
        // The timed publish: failures go to the status line; the UI never waits for it.
        let publish_tx = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(p.every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let result = publish_once(&feed, &p).await.map(|r| {
                    format!(
                        "published {} datums to CloudWatch in {} call(s)",
                        r.datums, r.calls
                    )
                });
                if publish_tx.send(Msg::Published { result }).is_err() {
                    break;
                }
            }
        });
    }
    if metrics.as_ref().is_some_and(|f| f.cloudwatch_in.is_some()) {
        // Bedrock's own figures for the metrics pane: the app asks for them over the window
        // chosen (`Effect::LoadBedrock`) when this ticks and when the window changes.
        state.metrics.bedrock = crate::app::state::BedrockView::Loading;
        let due_tx = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(BEDROCK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if due_tx.send(Msg::BedrockDue).is_err() {
                    break;
                }
            }
        });
    }
    let mut decisions = JoinSet::new();
    let reviewer = state.reviewer.clone();
    let exec = Executor {
        store,
        traces,
        links,
        metrics,
        policy: Arc::new(state.policy.clone()),
        tx: tx.clone(),
        sweeper: format!("expiry-sweep:{reviewer}"),
    };
    for fx in init(&mut state) {
        exec.run(fx, &mut decisions);
    }
    let mut batch = Vec::with_capacity(256);
    let mut last_report = None;
    let mut dirty = true;
    loop {
        if dirty {
            let mut report = crate::ui::RenderReport::default();
            terminal.draw(|f| report = crate::ui::render(f, &state, &theme))?;
            dirty = false;
            if last_report != Some(report) {
                last_report = Some(report);
                if let Some(max) = report.detail_max_scroll {
                    update(&mut state, Msg::DetailMaxScroll(max));
                }
                if let Some(max) = report.step_max_scroll {
                    update(&mut state, Msg::StepMaxScroll(max));
                }
            }
        }
        if rx.recv_many(&mut batch, 256).await == 0 {
            break;
        }
        for msg in batch.drain(..) {
            for fx in update(&mut state, msg) {
                exec.run(fx, &mut decisions);
            }
            dirty = true;
        }
        while decisions.try_join_next().is_some() {}
        if state.quit {
            break;
        }
    }
    if !decisions.is_empty() {
        tracing::info!(
            n = decisions.len(),
            "waiting for decisions in flight before quitting"
        );
        let _ = tokio::time::timeout(DRAIN_ON_QUIT, async {
            while decisions.join_next().await.is_some() {}
        })
        .await;
    }
    Ok(())
}

struct Executor {
    store: Arc<dyn ApprovalStore>,
    traces: Option<Arc<dyn TraceStore>>,
    /// Which requests the runner raised, and from which step.
    links: Option<Arc<dyn OutboxStore>>,
    metrics: Option<MetricsFeed>,
    policy: Arc<crate::domain::policy::Policy>,
    tx: UnboundedSender<Msg>,
    sweeper: String,
}

fn failure(e: &StoreError) -> StoreFailure {
    StoreFailure {
        message: e.to_string(),
        refused: !matches!(e, StoreError::Unavailable(_) | StoreError::Corrupt(_)),
    }
}

/// Writes a session's export to a new file in the working directory, named from the session
/// id (only letters, digits, `-`, `_` and `.` kept) and the time; never overwrites.
/// Records a mark on a step, looking its traceId up when the view did not have it yet.
fn mark_step(
    traces: &dyn TraceStore,
    request_id: &str,
    step: u64,
    trace_id: Option<String>,
    appropriate: bool,
    who: &str,
) -> Result<String, String> {
    let trace_id = match trace_id {
        Some(t) => t,
        None => traces
            .steps(request_id, step.saturating_sub(1), 1)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|s| s.step == step)
            .map(|s| s.trace_id)
            .ok_or_else(|| format!("no step {step} in invocation {request_id}"))?,
    };
    traces
        .mark_action(&crate::store::run::ActionMark {
            request_id: request_id.to_owned(),
            step,
            trace_id,
            appropriate,
            note: None,
            who: who.to_owned(),
            at: chrono::Utc::now(),
        })
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "step {step} marked {} by {} (counts in action accuracy)",
        if appropriate {
            "✓ appropriate"
        } else {
            "✗ NOT appropriate"
        },
        crate::domain::sanitize::line(who)
    ))
}

fn export_to_file(traces: &dyn TraceStore, session: &str) -> Result<String, String> {
    let safe: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let name = format!(
        "agentdeck-session-{safe}-{}.json",
        Utc::now().format("%Y%m%dT%H%M%S%.3f")
    );
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&name)
        .map_err(|e| format!("cannot create {name}: {e}"))?;
    let mut w = std::io::BufWriter::new(file);
    crate::cli::traces::export_session(traces, session, &mut w).map_err(|e| e.to_string())?;
    std::io::Write::flush(&mut w).map_err(|e| format!("writing {name}: {e}"))?;
    Ok(name)
}

/// The invocation and step that raised a request, from the runner's link and the step's traceId.
fn raising_step(
    traces: &dyn TraceStore,
    links: &dyn OutboxStore,
    id: &crate::domain::approval::ApprovalId,
) -> Result<Option<(String, Option<u64>)>, String> {
    let Some(link) = links.runner_link(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let step = match &link.trace_id {
        Some(trace_id) => traces
            .step_of_trace(&link.invocation, trace_id)
            .map_err(|e| e.to_string())?,
        None => None,
    };
    Ok(Some((link.invocation, step)))
}

/// Bedrock's CloudWatch figures over `window` ending at `now`: GetMetricData over the window's
/// whole span, its trend at the window's bucket period.
pub async fn read_bedrock_window(
    endpoint: &str,
    window: crate::domain::metrics::Window,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<crate::domain::bedrock::AliasFigures>, crate::cloudwatch::CloudWatchError> {
    let client = crate::cloudwatch::client(Some(endpoint)).await?;
    crate::cloudwatch::read_bedrock(
        &client,
        Duration::from_secs(window.span_secs()),
        Duration::from_secs(window.period_secs()),
        now,
    )
    .await
}

impl Executor {
    fn run(&self, effect: Effect, decisions: &mut JoinSet<()>) {
        let store = Arc::clone(&self.store);
        let policy = Arc::clone(&self.policy);
        let tx = self.tx.clone();
        match effect {
            Effect::Quit => {}
            Effect::LoadQueue { tag } => {
                tokio::task::spawn_blocking(move || {
                    let result = store.open_queue(Utc::now()).map_err(|e| e.to_string());
                    let _ = tx.send(Msg::QueueLoaded { tag, result });
                });
            }
            Effect::LoadCounts { tag } => {
                tokio::task::spawn_blocking(move || {
                    let result = store.counts().map(Box::new).map_err(|e| e.to_string());
                    let _ = tx.send(Msg::CountsLoaded { tag, result });
                });
            }
            Effect::LoadMetrics {
                tag,
                window,
                filter,
            } => {
                let feed = self.metrics.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match feed {
                        Some(f) => {
                            let mut engine =
                                f.engine.lock().unwrap_or_else(PoisonError::into_inner);
                            let now = Utc::now().timestamp_millis();
                            engine.advance(now);
                            crate::store::metrics::refresh(f.store.as_ref(), &mut engine)
                                .map(|_| {
                                    Box::new(MetricsLoad {
                                        snapshot: engine.snapshot(window, &filter, now),
                                        dimensions: engine.dimensions(),
                                    })
                                })
                                .map_err(|e| e.to_string())
                        }
                        None => Err(NO_METRICS.to_owned()),
                    };
                    let _ = tx.send(Msg::MetricsLoaded { tag, result });
                });
            }
            Effect::LoadBedrock { window } => {
                let Some(endpoint) = self.metrics.as_ref().and_then(|f| f.cloudwatch_in.clone())
                else {
                    return;
                };
                tokio::spawn(async move {
                    let result = read_bedrock_window(&endpoint, window, Utc::now())
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::BedrockLoaded { window, result });
                });
            }
            Effect::LoadDetail { tag, id } => {
                tokio::task::spawn_blocking(move || {
                    let result = store
                        .get(&id, &policy, Utc::now())
                        .map(Box::new)
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::DetailLoaded { tag, result });
                });
            }
            Effect::LoadSteps {
                tag,
                request_id,
                after,
                limit,
            } => {
                let traces = self.traces.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match traces {
                        Some(t) => t
                            .steps(&request_id, after, limit.min(STEPS_SHOWN))
                            .map_err(|e| e.to_string()),
                        None => Err(NO_TRACES.to_owned()),
                    };
                    let _ = tx.send(Msg::StepsLoaded { tag, result });
                });
            }
            Effect::LoadTraceIndex {
                tag,
                since,
                refresh,
            } => {
                let traces = self.traces.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match traces {
                        Some(t) => t
                            .trace_index(since, &refresh, INDEX_PAGE_EVENTS)
                            .map(Box::new)
                            .map_err(|e| e.to_string()),
                        None => Err(NO_TRACES.to_owned()),
                    };
                    let _ = tx.send(Msg::TraceIndexLoaded { tag, result });
                });
            }
            Effect::FindRaisingStep { tag, id } => {
                let traces = self.traces.clone();
                let links = self.links.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match (traces, links) {
                        (Some(t), Some(l)) => raising_step(t.as_ref(), l.as_ref(), &id),
                        _ => Err(NO_TRACES.to_owned()),
                    };
                    let _ = tx.send(Msg::RaisingStepFound { tag, id, result });
                });
            }
            Effect::Copy { text } => {
                use base64::Engine as _;
                let payload = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                let mut out = std::io::stdout();
                let written = std::io::Write::write_all(
                    &mut out,
                    format!("\x1b]52;c;{payload}\x07").as_bytes(),
                )
                .and_then(|()| std::io::Write::flush(&mut out));
                if let Err(e) = written {
                    tracing::warn!(error = %e, "cannot write the clipboard sequence");
                }
            }
            Effect::ExportSession { session } => {
                let traces = self.traces.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match traces {
                        Some(t) => export_to_file(t.as_ref(), &session),
                        None => Err(NO_TRACES.to_owned()),
                    };
                    let _ = tx.send(Msg::Exported { result });
                });
            }
            Effect::MarkStep {
                request_id,
                step,
                trace_id,
                appropriate,
                who,
            } => {
                let traces = self.traces.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match traces {
                        Some(t) => {
                            mark_step(t.as_ref(), &request_id, step, trace_id, appropriate, &who)
                        }
                        None => Err(NO_TRACES.to_owned()),
                    };
                    let _ = tx.send(Msg::Marked { result });
                });
            }
            Effect::SearchTraces { tag, text } => {
                let traces = self.traces.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match traces {
                        Some(t) => t
                            .search_steps(&text, SEARCH_HITS)
                            .map_err(|e| e.to_string()),
                        None => Err(NO_TRACES.to_owned()),
                    };
                    let _ = tx.send(Msg::TraceSearchDone { tag, result });
                });
            }
            Effect::LoadStepEvents {
                tag,
                request_id,
                step,
            } => {
                let traces = self.traces.clone();
                tokio::task::spawn_blocking(move || {
                    let result = match traces {
                        Some(t) => t.step_events(&request_id, step).map_err(|e| e.to_string()),
                        None => Err(NO_TRACES.to_owned()),
                    };
                    let _ = tx.send(Msg::StepEventsLoaded { tag, result });
                });
            }
            Effect::ExpireDue => {
                let actor = self.sweeper.clone();
                tokio::task::spawn_blocking(move || {
                    let result = store
                        .expire_due(Utc::now(), &actor)
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Expired { result });
                });
            }
            Effect::Decide { tag, ask } => {
                decisions.spawn_blocking(move || {
                    let result = store.decide(&ask, &policy, Utc::now()).map_err(|e| failure(&e));
                    if let Err(f) = &result {
                        tracing::warn!(request = %ask.request, error = %f.message, "decision not recorded");
                    } else {
                        tracing::info!(request = %ask.request, verdict = ask.verdict.as_str(), "decision recorded");
                    }
                    let _ = tx.send(Msg::Decided { tag, result });
                });
            }
        }
    }
}
