//! `BedrockRunner`: one InvokeAgent turn with tracing on. Every stream event is mapped through
//! the SDK's accessors (`wire`) into the domain's types and recorded as it arrives, in batches;
//! a `returnControl` is validated and queued as a resumable approval request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::config::{Credentials, Region};
use aws_sdk_bedrockagentruntime::operation::RequestId;
use aws_sdk_bedrockagentruntime::types::{self as sdk, ResponseStream};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::writer::{Queued, TraceWriter, TurnBatch, TurnState, Written};
use super::{RunnerError, classify, wire};
use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::policy::Policy;
use crate::domain::trace::{StepAccumulator, StepFigures, TraceEvent};
use crate::domain::validate::{self, SubmitContext};
use crate::store::{InvocationEnd, InvocationStart, Outcome, RunnerLink, StoreError, TurnWrite};

/// Events buffered before a write; a batch (and a turn's start) is also written at most
/// `FLUSH_EVERY` after the last write, even while the stream is quiet.
const BATCH_EVENTS: usize = 64;
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Where the client comes from. Unset fields fall back to aws-config's standard chain (env,
/// profile, SSO, IMDS...). `AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME` (and `AWS_ENDPOINT_URL`)
/// are honoured by the SDK itself; `endpoint_url` overrides them.
#[derive(Debug, Clone, Default)]
pub struct RunnerSettings {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// What the store and policy need to queue a return of control.
pub struct SubmitSettings<'a> {
    pub policy: &'a Policy,
    pub ttl_secs: &'a dyn Fn(&str) -> u32,
    /// Recorded as the submitting actor in the audit log.
    pub actor: &'a str,
}

impl std::fmt::Debug for SubmitSettings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitSettings")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// One turn to run.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    pub agent_id: String,
    pub agent_alias_id: String,
    pub session_id: String,
    pub input_text: String,
    pub session_attributes: BTreeMap<String, String>,
}

/// What the caller sees while a turn streams.
#[derive(Debug)]
pub enum LiveEvent<'a> {
    /// The service answered; this is the call's request id.
    Started {
        request_id: &'a str,
        session_id: &'a str,
    },
    /// A reasoning step closed (the next event had another traceId, or the stream ended).
    Step {
        trace_id: &'a str,
        kinds: &'a [String],
        figures: StepFigures,
        /// The last event's one-line summary (untrusted).
        summary: &'a str,
    },
    /// Text the agent streamed (untrusted).
    Chunk(&'a str),
    /// The agent returned control: the request is in the queue.
    Queued(&'a ApprovalRequest),
    /// Files the agent produced (names only; untrusted).
    Files(Vec<String>),
}

/// How a turn went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationSummary {
    pub request_id: String,
    pub session_id: String,
    pub outcome: Outcome,
    /// The chunk text.
    pub text: String,
    pub final_response: Option<String>,
    /// Requests queued from return-of-control events.
    pub queued: Vec<ApprovalId>,
    pub events: u64,
    pub steps: u64,
    pub latency_ms: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// What went wrong, when the outcome is `Failed` or `Exception`.
    pub error: Option<String>,
}

/// Invokes Bedrock agents and records what they do.
#[derive(Debug, Clone)]
pub struct BedrockRunner {
    client: Client,
    /// For messages: where requests go.
    endpoint: String,
    /// `with_idle_timeout`.
    idle_timeout: Duration,
}

/// How long a turn's stream may go without an event by default. The SDK's receiver waits for
/// ever on a stream that stalls (its stalled-stream protection does not cover event streams:
/// a 40 s stall of the simulator went by unnoticed), and an agent's own pauses (a model call,
/// an action group's Lambda) are far shorter.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

pub use crate::store::RunnerStore;

/// Where a turn is recorded.
#[derive(Clone, Copy)]
pub enum Recorder<'a> {
    /// Each write is a transaction of its own, made on the calling thread.
    Direct(&'a dyn RunnerStore),
    /// Through a `TraceWriter`, whose thread commits many turns' writes together.
    Grouped(&'a TraceWriter),
}

impl std::fmt::Debug for Recorder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Direct(_) => "Recorder::Direct",
            Self::Grouped(_) => "Recorder::Grouped",
        })
    }
}

/// A store with every port: approvals for the CLI and the console, traces and outbox for the
/// runner (both adapters are).
pub trait DeckStore: crate::store::ApprovalStore + RunnerStore {}
impl<T: crate::store::ApprovalStore + RunnerStore> DeckStore for T {}

fn now_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Fixed credentials for a local endpoint (the simulator checks that requests are signed, not
/// by whom): shared by every AWS client agentdeck points at loopback.
pub(crate) fn loopback_credentials() -> Credentials {
    Credentials::new("AKIDLOCAL", "local", None, None, "loopback")
}

/// The HTTP client every AWS client agentdeck points at loopback uses: agentdeck's own plain
/// HTTP/1.1 client (`super::http`), no TLS. The simulator speaks only `http://`, so the default
/// HTTPS client's TLS set-up (a rustls configuration and the system's root certificates, read
/// when the first request goes out) and its TLS wrapper around every connection are work for
/// nothing, and hyper's connection task costs two wake-ups per event of a stream.
pub(crate) fn loopback_http_client() -> aws_sdk_bedrockagentruntime::config::SharedHttpClient {
    super::http::LoopbackHttp::shared()
}

impl BedrockRunner {
    /// A client from aws-config's standard chain (credentials, profile, region), with the
    /// settings applied over it.
    pub async fn from_env(settings: &RunnerSettings) -> Result<Self, RunnerError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = &settings.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &settings.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_bedrockagentruntime::config::Builder::from(&shared);
        if shared.region().is_none() {
            // A local simulator does not care which region signs; AWS does.
            if settings.endpoint_url.is_some() {
                builder = builder.region(Region::new("us-east-1"));
            } else {
                return Err(RunnerError::MissingRegion);
            }
        }
        if let Some(url) = &settings.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        let conf = builder.build();
        Ok(Self::from_conf(conf))
    }

    /// A client from a ready SDK config.
    pub fn from_conf(conf: aws_sdk_bedrockagentruntime::Config) -> Self {
        let endpoint = conf
            .region()
            .map_or_else(|| "(no region)".to_owned(), |r| format!("region {r}"));
        Self {
            client: Client::from_conf(conf),
            endpoint,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// A client for a local simulator at `endpoint_url` (an `http://` address): fixed dummy
    /// credentials and region, nothing read from the environment, no TLS.
    pub fn loopback(endpoint_url: &str) -> Self {
        let conf = aws_sdk_bedrockagentruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(loopback_credentials())
            .http_client(loopback_http_client())
            .endpoint_url(endpoint_url)
            .build();
        let mut runner = Self::from_conf(conf);
        endpoint_url.clone_into(&mut runner.endpoint);
        runner
    }

    /// The SDK client it calls the service with.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends a turn whose stream goes `idle` without an event (`RunnerError::Stalled`), keeping
    /// what arrived before. Default `DEFAULT_IDLE_TIMEOUT`.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Runs one turn: sends the text with tracing on, records every event, queues each return
    /// of control. The returned summary's outcome says how it ended; an error means nothing
    /// usable came back (and, when the call itself failed, the failure is recorded too).
    pub async fn invoke(
        &self,
        req: &InvokeRequest,
        store: &dyn RunnerStore,
        submit: &SubmitSettings<'_>,
        observer: &mut dyn FnMut(&LiveEvent<'_>),
    ) -> Result<InvocationSummary, RunnerError> {
        self.invoke_to(req, Recorder::Direct(store), submit, Some(observer))
            .await
    }

    /// `invoke`, recording through `recorder` (a `TraceWriter` for many turns at once); with no
    /// `observer` (nobody watching, as for the demo's simulated users), the live view's own work
    /// is skipped: each step's kinds, figures and summary, gathered event by event.
    pub async fn invoke_to(
        &self,
        req: &InvokeRequest,
        recorder: Recorder<'_>,
        submit: &SubmitSettings<'_>,
        observer: Option<&mut dyn FnMut(&LiveEvent<'_>)>,
    ) -> Result<InvocationSummary, RunnerError> {
        let started_at = Utc::now();
        let attributes: HashMap<String, String> = req
            .session_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut call = self
            .client
            .invoke_agent()
            .agent_id(&req.agent_id)
            .agent_alias_id(&req.agent_alias_id)
            .session_id(&req.session_id)
            .input_text(&req.input_text)
            .enable_trace(true);
        if !attributes.is_empty() {
            call = call.session_state(
                sdk::SessionState::builder()
                    .set_session_attributes(Some(attributes))
                    .build(),
            );
        }
        let sent = call.send().await;
        let context = Turn {
            agent_id: &req.agent_id,
            agent_alias_id: &req.agent_alias_id,
            session_id: &req.session_id,
            input_text: Some(&req.input_text),
            resumes: None,
            session_attributes: &req.session_attributes,
            started_at,
            idle_timeout: self.idle_timeout,
        };
        match sent {
            Ok(output) => record_stream(output, &context, recorder, submit, observer).await,
            Err(e) => {
                let error = classify(&e, &req.agent_id, &req.agent_alias_id);
                let request_id = e
                    .as_service_error()
                    .and_then(RequestId::request_id)
                    .map_or_else(|| local_request_id(started_at), str::to_owned);
                record_failed_call(recorder, &context, &request_id, &error).await?;
                Err(error)
            }
        }
    }

    /// Where requests go, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// An id for a call the service gave none for.
pub(crate) fn local_request_id(at: DateTime<Utc>) -> String {
    format!(
        "local-{}-{:08x}",
        at.timestamp_nanos_opt().unwrap_or_default(),
        fastrand::u32(..)
    )
}

/// What a turn was asked to do.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    pub agent_id: &'a str,
    pub agent_alias_id: &'a str,
    pub session_id: &'a str,
    pub input_text: Option<&'a str>,
    pub resumes: Option<&'a str>,
    pub session_attributes: &'a BTreeMap<String, String>,
    pub started_at: DateTime<Utc>,
    /// How long the stream may go without an event before the turn ends as stalled.
    pub idle_timeout: Duration,
}

/// Records a call that failed before any stream: its invocation row, with the error.
pub(crate) async fn record_failed_call(
    recorder: Recorder<'_>,
    turn: &Turn<'_>,
    request_id: &str,
    error: &RunnerError,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let batch = TurnBatch {
        request_id: request_id.to_owned(),
        start: Some(InvocationStart {
            request_id: request_id.to_owned(),
            agent_id: turn.agent_id.to_owned(),
            agent_alias_id: turn.agent_alias_id.to_owned(),
            session_id: turn.session_id.to_owned(),
            input_text: turn.input_text.map(str::to_owned),
            resumes: turn.resumes.map(str::to_owned),
            started_at: turn.started_at,
        }),
        events: Vec::new(),
        chunks: Vec::new(),
        end: Some(InvocationEnd {
            outcome: Outcome::Exception,
            ended_at: now,
            error: Some(error.to_string()),
            final_response: None,
            latency_ms: Some((now - turn.started_at).num_milliseconds()),
        }),
    };
    match recorder {
        Recorder::Direct(store) => store.write_turn(&batch.as_write()),
        Recorder::Grouped(writer) => {
            writer
                .write(&Arc::new(TurnState::default()), batch, true)
                .await
        }
    }
}

/// The step being streamed, for the live view.
#[derive(Debug, Default)]
struct OpenStep {
    trace_id: Option<String>,
    kinds: Vec<String>,
    acc: StepAccumulator,
    summary: String,
}

impl OpenStep {
    fn close(&mut self, observer: &mut dyn FnMut(&LiveEvent<'_>)) {
        if let Some(trace_id) = self.trace_id.take() {
            observer(&LiveEvent::Step {
                trace_id: &trace_id,
                kinds: &self.kinds,
                figures: self.acc.figures(),
                summary: &self.summary,
            });
        }
        *self = Self::default();
    }

    fn add(&mut self, e: &TraceEvent, observer: &mut dyn FnMut(&LiveEvent<'_>)) {
        if self.trace_id.as_deref() != Some(e.step_key()) {
            self.close(observer);
            self.trace_id = Some(e.step_key().to_owned());
        }
        let kind = e.kind_name();
        if !self.kinds.iter().any(|k| *k == kind) {
            self.kinds.push(kind.into_owned());
        }
        self.acc.add(e);
        let summary = e.summary();
        if !summary.is_empty() {
            self.summary = summary;
        }
    }
}

/// Buffers the turn's start, its events and chunks and writes them in batches: the start goes
/// with the first batch, the last batch with the end, so a short turn is one write.
struct Batch<'s> {
    recorder: Recorder<'s>,
    /// The turn as the writer knows it (`Recorder::Grouped`).
    state: Arc<TurnState>,
    request_id: String,
    /// The invocation row, until it is written.
    start: Option<InvocationStart>,
    events: Vec<TraceEvent>,
    chunks: Vec<String>,
    last: Instant,
    /// Batches written without waiting, to take back and free on this thread.
    written: Vec<Written>,
}

impl Batch<'_> {
    /// Writes what is buffered (and `end`); with `wait`, returns once it is committed (a
    /// direct write always is).
    async fn write(&mut self, end: Option<InvocationEnd>, wait: bool) -> Result<(), StoreError> {
        match self.recorder {
            Recorder::Direct(store) => store.write_turn(&TurnWrite {
                request_id: &self.request_id,
                start: self.start.as_ref(),
                events: &self.events,
                chunks: &self.chunks,
                end: end.as_ref(),
            })?,
            Recorder::Grouped(writer) => {
                let size = self.events.len();
                let batch = TurnBatch {
                    request_id: self.request_id.clone(),
                    start: self.start.take(),
                    events: std::mem::replace(&mut self.events, Vec::with_capacity(size)),
                    chunks: std::mem::take(&mut self.chunks),
                    end,
                };
                if wait {
                    writer.write(&self.state, batch, true).await?;
                } else {
                    // Frees what the writer gave back so far: a long turn holds only what is
                    // not yet written.
                    self.written.retain_mut(|w| !w.try_reclaim());
                    self.written
                        .push(writer.write_back(&self.state, batch).await?);
                }
            }
        }
        self.start = None;
        self.events.clear();
        self.chunks.clear();
        self.last = Instant::now();
        Ok(())
    }

    /// Writes what is buffered without waiting for the commit.
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.write(None, false).await
    }

    /// Queues a return of control's approval request, after everything written before. A
    /// direct write is made at once; through the writer, the answer comes with the turn's end
    /// (`Queued`), so the two usually share one commit.
    async fn submit(
        &self,
        request: &ApprovalRequest,
        link: &RunnerLink,
        actor: &str,
    ) -> Result<Option<Queued>, StoreError> {
        match self.recorder {
            Recorder::Direct(store) => store.submit_resumable(request, link, actor).map(|()| None),
            Recorder::Grouped(writer) => writer
                .submit_queued(&self.state, request, link, actor)
                .await
                .map(Some),
        }
    }

    /// Something is waiting to be written.
    fn pending(&self) -> bool {
        self.start.is_some() || !self.events.is_empty() || !self.chunks.is_empty()
    }

    /// When what is waiting must be written, quiet stream or not.
    fn due(&self) -> Instant {
        self.last + FLUSH_EVERY
    }

    async fn maybe_flush(&mut self) -> Result<(), StoreError> {
        if self.events.len() >= BATCH_EVENTS
            || (self.pending() && self.last.elapsed() >= FLUSH_EVERY)
        {
            self.flush().await?;
        }
        Ok(())
    }
}

/// What the stream told us so far.
#[derive(Debug, Default)]
struct Seen {
    text: String,
    final_response: Option<String>,
    operation_ms: Option<i64>,
    failure: Option<String>,
    agent_version: Option<String>,
    /// The last rationale and the traceId of its step.
    rationale: Option<(String, Option<String>)>,
    last_event_time: Option<DateTime<Utc>>,
    queued: Vec<ApprovalId>,
    events: u64,
    /// The step keys seen (a set: a turn of thousands of steps looked each one up in a list).
    steps: HashSet<String>,
    input_tokens: i64,
    output_tokens: i64,
}

impl Seen {
    fn note(&mut self, e: &TraceEvent, top_agent: &str) {
        self.events += 1;
        if !self.steps.contains(e.step_key()) {
            self.steps.insert(e.step_key().to_owned());
        }
        if let Some(m) = e.metadata() {
            self.input_tokens += m.input_tokens.unwrap_or(0);
            self.output_tokens += m.output_tokens.unwrap_or(0);
        }
        // The version of the agent we invoked, not of a collaborator.
        if e.collaborator_name.is_none()
            && e.agent_id.as_deref().is_none_or(|a| a == top_agent)
            && let Some(v) = &e.agent_version
        {
            self.agent_version = Some(v.clone());
        }
        if let Some(r) = e.rationale() {
            self.rationale = Some((r.to_owned(), e.trace_id().map(str::to_owned)));
        }
        if let Some(t) = e.event_time {
            self.last_event_time = Some(t);
        }
        if let Some((text, meta)) = e.final_response()
            && e.collaborator_name.is_none()
        {
            self.final_response = Some(text.to_owned());
            self.operation_ms = meta.and_then(|m| m.operation_total_time_ms);
        }
        if let crate::domain::trace::TraceKind::Failure { reason, code, .. } = &e.kind {
            self.failure = Some(format!(
                "failure trace{}: {}",
                code.map(|c| format!(" {c}")).unwrap_or_default(),
                reason.as_deref().unwrap_or("no reason given")
            ));
        }
    }
}

/// Gives `event` to the observer, if there is one.
fn tell(observer: &mut Option<&mut dyn FnMut(&LiveEvent<'_>)>, event: &LiveEvent<'_>) {
    if let Some(o) = observer {
        o(event);
    }
}

/// Reads a turn's stream to its end, recording as it goes.
pub(crate) async fn record_stream(
    mut output: aws_sdk_bedrockagentruntime::operation::invoke_agent::InvokeAgentOutput,
    turn: &Turn<'_>,
    recorder: Recorder<'_>,
    submit: &SubmitSettings<'_>,
    mut observer: Option<&mut dyn FnMut(&LiveEvent<'_>)>,
) -> Result<InvocationSummary, RunnerError> {
    let request_id = output
        .request_id()
        .map_or_else(|| local_request_id(turn.started_at), str::to_owned);
    let session_id = if output.session_id().is_empty() {
        turn.session_id.to_owned()
    } else {
        output.session_id().to_owned()
    };
    // The invocation row is written with the first batch: at the latest `FLUSH_EVERY` from now.
    let start = InvocationStart {
        request_id: request_id.clone(),
        agent_id: turn.agent_id.to_owned(),
        agent_alias_id: turn.agent_alias_id.to_owned(),
        session_id: session_id.clone(),
        input_text: turn.input_text.map(str::to_owned),
        resumes: turn.resumes.map(str::to_owned),
        started_at: turn.started_at,
    };
    tell(
        &mut observer,
        &LiveEvent::Started {
            request_id: &request_id,
            session_id: &session_id,
        },
    );
    let mut batch = Batch {
        recorder,
        state: Arc::new(TurnState::default()),
        request_id: request_id.clone(),
        start: Some(start),
        events: Vec::new(),
        chunks: Vec::new(),
        last: Instant::now(),
        written: Vec::new(),
    };
    let mut seen = Seen::default();
    let mut step = OpenStep::default();
    let mut stream_error: Option<RunnerError> = None;
    let mut unknown_events = 0_u64;
    // Requests queued through the writer, answered with the turn's end.
    let mut awaiting: Vec<(ApprovalRequest, Queued)> = Vec::new();
    // One timer for the whole turn, moved only when it fires or a batch comes due before it: a
    // timer set afresh for every event (the stall's deadline moves with each) cost a timer
    // registration per event.
    let mut last_event = tokio::time::Instant::now();
    let timer = tokio::time::sleep_until(last_event + turn.idle_timeout);
    tokio::pin!(timer);
    loop {
        let next = {
            // Keeps the one receive going across flushes (cancelling it could lose a frame).
            let recv = output.completion.recv();
            tokio::pin!(recv);
            loop {
                if batch.pending() {
                    let due = tokio::time::Instant::from_std(batch.due());
                    if due < timer.deadline() {
                        timer.as_mut().reset(due);
                    }
                }
                tokio::select! {
                    biased;
                    next = &mut recv => break Some(next),
                    () = &mut timer => {}
                }
                let now = tokio::time::Instant::now();
                if batch.pending() && tokio::time::Instant::from_std(batch.due()) <= now {
                    batch.flush().await?;
                }
                let stalls_at = last_event + turn.idle_timeout;
                if stalls_at <= now {
                    break None;
                }
                timer.as_mut().reset(stalls_at);
            }
        };
        last_event = tokio::time::Instant::now();
        let Some(next) = next else {
            stream_error = Some(RunnerError::Stalled {
                idle_secs: turn.idle_timeout.as_secs(),
                events: seen.events,
            });
            break;
        };
        match next {
            Ok(Some(ResponseStream::Trace(part))) => {
                let event = wire::trace_event(part);
                seen.note(&event, turn.agent_id);
                if let Some(o) = observer.as_deref_mut() {
                    step.add(&event, o);
                }
                batch.events.push(event);
            }
            Ok(Some(ResponseStream::Chunk(chunk))) => {
                let text = wire::chunk_text(&chunk);
                tell(&mut observer, &LiveEvent::Chunk(&text));
                seen.text.push_str(&text);
                batch.chunks.push(text);
            }
            Ok(Some(ResponseStream::ReturnControl(rc))) => {
                if let Some(o) = observer.as_deref_mut() {
                    step.close(o);
                }
                batch.flush().await?;
                let doc = submission_doc(turn, &session_id, &seen, &rc);
                let request = validate::submission(
                    &doc,
                    &SubmitContext {
                        policy: submit.policy,
                        now: Utc::now(),
                        ttl_secs: submit.ttl_secs,
                    },
                )
                .map_err(RunnerError::Submission);
                let request = match request {
                    Ok(r) => r,
                    Err(e) => {
                        stream_error = Some(e);
                        break;
                    }
                };
                let link = RunnerLink {
                    invocation: request_id.clone(),
                    trace_id: seen.rationale.as_ref().and_then(|(_, t)| t.clone()),
                };
                match batch.submit(&request, &link, submit.actor).await {
                    Ok(None) => tell(&mut observer, &LiveEvent::Queued(&request)),
                    Ok(Some(queued)) => {
                        seen.queued.push(request.id.clone());
                        awaiting.push((request, queued));
                        continue;
                    }
                    // The same returnControl seen twice (a replayed stream) is queued once.
                    Err(StoreError::Duplicate(_)) => {
                        tracing::warn!(request = %request.id, "return of control already queued");
                        tell(&mut observer, &LiveEvent::Queued(&request));
                    }
                    Err(e) => return Err(e.into()),
                }
                seen.queued.push(request.id);
            }
            Ok(Some(ResponseStream::Files(files))) => {
                let names = files
                    .files()
                    .iter()
                    .map(|f| f.name().unwrap_or("(unnamed)").to_owned())
                    .collect();
                tell(&mut observer, &LiveEvent::Files(names));
            }
            Ok(Some(_)) => {
                unknown_events += 1;
                tracing::warn!(request_id, "an event type this version does not know");
            }
            Ok(None) => break,
            Err(e) => {
                stream_error = Some(classify(&e, turn.agent_id, turn.agent_alias_id));
                break;
            }
        }
        batch.maybe_flush().await?;
    }
    if let Some(o) = observer.as_deref_mut() {
        step.close(o);
    }
    let ended_at = Utc::now();
    let answered = seen.final_response.is_some() || !seen.text.is_empty();
    let (outcome, error) = if let Some(e) = &stream_error {
        (Outcome::Exception, Some(e.to_string()))
    } else if let Some(f) = &seen.failure {
        (Outcome::Failed, Some(f.clone()))
    } else if !seen.queued.is_empty() {
        (Outcome::WaitingForHuman, None)
    } else if answered {
        (Outcome::Finished, None)
    } else {
        (
            Outcome::Exception,
            Some(format!(
                "the stream ended before the agent answered or returned control ({} events{}); \
                 it was cut short",
                seen.events,
                if unknown_events > 0 {
                    format!(", {unknown_events} of unknown types")
                } else {
                    String::new()
                }
            )),
        )
    };
    let latency_ms = seen
        .operation_ms
        .or(Some((ended_at - turn.started_at).num_milliseconds()));
    let ended = batch
        .write(
            Some(InvocationEnd {
                outcome,
                ended_at,
                error: error.clone(),
                final_response: seen.final_response.clone(),
                latency_ms,
            }),
            true,
        )
        .await;
    // Written before the end, so given back by now (or dropped, when the writer failed them).
    for w in std::mem::take(&mut batch.written) {
        w.reclaim().await;
    }
    // A refused request fails its turn (the end above is then not written): its error is the
    // one to tell.
    for (request, queued) in awaiting {
        match queued.answer().await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                tracing::warn!(request = %request.id, "return of control already queued");
            }
            Err(e) => return Err(e.into()),
        }
        tell(&mut observer, &LiveEvent::Queued(&request));
    }
    ended?;
    if let Some(e) = stream_error {
        return Err(e);
    }
    if outcome == Outcome::Exception {
        return Err(RunnerError::Stream {
            detail: error.unwrap_or_default(),
        });
    }
    Ok(InvocationSummary {
        request_id,
        session_id,
        outcome,
        text: seen.text,
        final_response: seen.final_response,
        queued: seen.queued,
        events: seen.events,
        steps: seen.steps.len() as u64,
        latency_ms,
        input_tokens: seen.input_tokens,
        output_tokens: seen.output_tokens,
        error,
    })
}

/// The submission `agentdeck submit` would take for this return of control.
fn submission_doc(
    turn: &Turn<'_>,
    session_id: &str,
    seen: &Seen,
    rc: &sdk::ReturnControlPayload,
) -> Value {
    let mut doc = json!({
        "agentId": turn.agent_id,
        "agentAliasId": turn.agent_alias_id,
        "sessionId": session_id,
        "eventTime": now_rfc3339(seen.last_event_time.unwrap_or_else(Utc::now)),
    });
    // Moved in: inside `json!` the tree would be copied through serde_json's serializer.
    doc["returnControl"] = wire::return_control(rc);
    if let Some(v) = &seen.agent_version {
        doc["agentVersion"] = json!(v);
    }
    if let Some((r, _)) = &seen.rationale {
        doc["rationale"] = json!(r);
    }
    if !turn.session_attributes.is_empty() {
        doc["sessionAttributes"] = json!(turn.session_attributes);
    }
    doc
}
