//! Ports for what the Bedrock runner records: `TraceStore` (sessions, invocations, trace steps
//! with their raw JSON, chunk text) and `OutboxStore` (requests the runner raised and the outbox
//! of resumes). Reads are windowed: a caller pages through steps and events by position, so a
//! million-step invocation costs a page at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::resume::{InvocationResult, ResumePlan};
use crate::domain::step_kind::StepKinds;
use crate::domain::trace::{StepFigures, TraceEvent};

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Still streaming (or the process died while it was).
    Running,
    /// The agent answered.
    Finished,
    /// A failure trace ended the turn.
    Failed,
    /// The agent returned control: a request is in the queue.
    WaitingForHuman,
    /// The service raised an exception (HTTP error or an exception frame), or the stream broke.
    Exception,
}

impl Outcome {
    pub const ALL: [Self; 5] = [
        Self::Running,
        Self::Finished,
        Self::Failed,
        Self::WaitingForHuman,
        Self::Exception,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::WaitingForHuman => "waiting-for-human",
            Self::Exception => "exception",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The start of one InvokeAgent call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationStart {
    /// `x-amzn-RequestId` of the call.
    pub request_id: String,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub session_id: String,
    /// None for a resume (Bedrock ignores inputText then).
    pub input_text: Option<String>,
    /// The return-of-control invocationId this call answers.
    pub resumes: Option<String>,
    pub started_at: DateTime<Utc>,
}

/// The end of one InvokeAgent call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationEnd {
    pub outcome: Outcome,
    pub ended_at: DateTime<Utc>,
    pub error: Option<String>,
    pub final_response: Option<String>,
    /// The service's `operationTotalTimeMs` when it sent one, else the wall clock.
    pub latency_ms: Option<i64>,
}

/// An invocation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    pub start: InvocationStart,
    pub outcome: Outcome,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub final_response: Option<String>,
    pub latency_ms: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub events: u64,
    pub steps: u64,
    pub chunks: u64,
}

/// One agent session the runner has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub agent_id: String,
    pub agent_alias_id: String,
    pub session_id: String,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub invocations: u64,
}

/// One reasoning step: the events of an invocation that share a traceId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    pub request_id: String,
    /// 1-based position of the step in its invocation.
    pub step: u64,
    /// `""` for events that carry no traceId.
    pub trace_id: String,
    /// The distinct event kinds in the step, in first-seen order, comma separated.
    pub kinds: String,
    pub events: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub rationale: Option<String>,
    pub figures: StepFigures,
}

/// One stored trace event, with its raw wire JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub request_id: String,
    /// 1-based position in the invocation.
    pub seq: u64,
    pub step: u64,
    pub trace_id: Option<String>,
    pub kind: String,
    /// RFC 3339 with the nanoseconds Bedrock sent.
    pub event_time: Option<String>,
    pub summary: String,
    pub raw: serde_json::Value,
}

impl StoredEvent {
    /// The domain event, read back from the raw JSON.
    pub fn event(&self) -> TraceEvent {
        TraceEvent::from_wire(self.raw.clone())
    }
}

/// Where an incremental read of the trace index stands: store positions, opaque to callers
/// (SQLite: the last trace event's position, its block's id and place, and the last invocation
/// row seen; DynamoDB: a start-time watermark and how many turns started before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexCursor {
    pub events: u64,
    pub invocations: u64,
}

/// One step as the trace index keeps it: figures and kinds, no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedStep {
    pub request_id: String,
    /// 1-based position in its invocation.
    pub step: u64,
    pub kinds: StepKinds,
    /// How deep in the collaborator chain it ran (0: the agent called).
    pub depth: u8,
    pub figures: StepFigures,
    /// When it started (metadata start, else its first event), nanoseconds since the epoch.
    pub start_ns: Option<i64>,
}

/// One page of changes to the trace index (`TraceStore::trace_index`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexPage {
    /// Invocations new since the cursor, then the ones asked to refresh (still running).
    pub invocations: Vec<InvocationRecord>,
    /// Steps new or grown since the cursor, by request id and step.
    pub steps: Vec<IndexedStep>,
    pub cursor: IndexCursor,
    /// More changes wait beyond this page.
    pub more: bool,
}

/// One write of a turn's trace (`TraceStore::write_turn`).
#[derive(Debug, Clone, Copy)]
pub struct TurnWrite<'a> {
    pub request_id: &'a str,
    /// The turn's start, when it is not recorded yet (its `request_id` is the one above).
    pub start: Option<&'a InvocationStart>,
    pub events: &'a [TraceEvent],
    pub chunks: &'a [String],
    /// How the turn ended, when it has.
    pub end: Option<&'a InvocationEnd>,
}

impl TurnWrite<'_> {
    /// Nothing to record.
    pub fn is_empty(&self) -> bool {
        self.start.is_none()
            && self.end.is_none()
            && self.events.is_empty()
            && self.chunks.is_empty()
    }
}

/// One of the writes a runner makes, as `RunnerStore::write_group` takes them.
#[derive(Debug, Clone, Copy)]
pub enum RunnerWrite<'a> {
    /// Part of a turn's trace.
    Turn(TurnWrite<'a>),
    /// A return of control queued as a resumable approval request (`submit_resumable`).
    Submit {
        request: &'a ApprovalRequest,
        link: &'a RunnerLink,
        actor: &'a str,
    },
}

impl RunnerWrite<'_> {
    /// The invocation (request id) the write belongs to.
    pub fn request_id(&self) -> &str {
        match self {
            Self::Turn(w) => w.request_id,
            Self::Submit { link, .. } => &link.invocation,
        }
    }
}

/// The error of a write that was not made because an earlier write of the same turn failed
/// (making it would leave a hole in the turn's trace).
pub fn skipped_after_failure(request_id: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the trace of invocation {request_id} was not written further: an earlier write of it failed"
    ))
}

/// The store a runner records into: traces and the outbox, and both at once in groups.
pub trait RunnerStore: TraceStore + OutboxStore {
    /// Makes `writes` in order and answers each: a failed write fails only its own turn, and
    /// that turn's later writes in the group are skipped (`skipped_after_failure`); a submit
    /// refused as a duplicate fails only itself. A store that can commits them together (group commit), a
    /// submit with an approval request's durability; this default makes them one by one.
    fn write_group(&self, writes: &[RunnerWrite<'_>]) -> Vec<Result<(), StoreError>> {
        let mut failed: Vec<&str> = Vec::new();
        writes
            .iter()
            .map(|w| {
                if failed.contains(&w.request_id()) {
                    return Err(skipped_after_failure(w.request_id()));
                }
                match w {
                    RunnerWrite::Turn(t) => {
                        let r = self.write_turn(t);
                        if r.is_err() {
                            failed.push(t.request_id);
                        }
                        r
                    }
                    RunnerWrite::Submit {
                        request,
                        link,
                        actor,
                    } => {
                        let r = self.submit_resumable(request, link, actor);
                        if r.as_ref()
                            .is_err_and(|e| !matches!(e, StoreError::Duplicate(_)))
                        {
                            failed.push(&link.invocation);
                        }
                        r
                    }
                }
            })
            .collect()
    }

    /// `write_group`, except that a store able to make commits durable later (`sync`) may
    /// commit this group without waiting for the disk, approval requests included. Answers as
    /// `write_group` does, with whether a `sync` is still owed before a submit's answer may be
    /// given: a group commit can then answer its trace writes at once, and its approval
    /// requests after an fsync made off its thread, while it writes the next group. This
    /// default makes the group as `write_group` (durable as it returns) and owes nothing.
    fn write_group_unsynced(
        &self,
        writes: &[RunnerWrite<'_>],
    ) -> (Vec<Result<(), StoreError>>, bool) {
        (self.write_group(writes), false)
    }

    /// Makes every commit made so far (`write_group_unsynced`) durable. Called from a thread
    /// of its own while other writes go on. This default has nothing to do.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An engineer's judgement of one executed step: was the action appropriate?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionMark {
    /// The invocation (`x-amzn-RequestId`) the step belongs to.
    pub request_id: String,
    /// 1-based position of the step in its invocation.
    pub step: u64,
    /// The step's traceId, as stored with it.
    pub trace_id: String,
    pub appropriate: bool,
    pub note: Option<String>,
    pub who: String,
    pub at: DateTime<Utc>,
}

/// The trace port.
pub trait TraceStore: Send + Sync {
    /// Records the start of a call (and its session).
    fn begin_invocation(&self, start: &InvocationStart) -> Result<(), StoreError>;

    /// Appends a batch of events and chunk texts to a started invocation, in one transaction.
    fn append_trace(
        &self,
        request_id: &str,
        events: &[TraceEvent],
        chunks: &[String],
    ) -> Result<(), StoreError>;

    fn finish_invocation(&self, request_id: &str, end: &InvocationEnd) -> Result<(), StoreError>;

    /// Records any of a turn's start, a batch of its events and chunks, and its end, in that
    /// order and in one transaction where the store has them, so a short turn costs one write.
    /// The default makes the separate calls.
    fn write_turn(&self, w: &TurnWrite<'_>) -> Result<(), StoreError> {
        if let Some(start) = w.start {
            self.begin_invocation(start)?;
        }
        self.append_trace(w.request_id, w.events, w.chunks)?;
        if let Some(end) = w.end {
            self.finish_invocation(w.request_id, end)?;
        }
        Ok(())
    }

    fn invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>, StoreError>;

    /// Sessions, most recently active first.
    fn sessions(&self, offset: usize, limit: usize) -> Result<Vec<SessionRow>, StoreError>;

    /// The invocations of a session, oldest first.
    fn invocations(
        &self,
        session_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, StoreError>;

    /// Steps of an invocation after position `after` (0 for the first page), at most `limit`.
    fn steps(&self, request_id: &str, after: u64, limit: usize)
    -> Result<Vec<StepRow>, StoreError>;

    /// The events of one step, with their raw JSON, in order.
    fn step_events(&self, request_id: &str, step: u64) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events of an invocation after position `after_seq`, at most `limit`.
    fn events(
        &self,
        request_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The chunk text the agent streamed, concatenated.
    fn chunk_text(&self, request_id: &str) -> Result<String, StoreError>;

    /// What changed since `since`, for an in-memory index: invocations recorded since (all of
    /// them), the invocations named in `refresh` (the ones the index still holds as running), and
    /// the steps touched by at most `limit` trace events after the cursor. Start from
    /// `IndexCursor::default()`; call again with the returned cursor while `more`.
    fn trace_index(
        &self,
        since: IndexCursor,
        refresh: &[String],
        limit: usize,
    ) -> Result<IndexPage, StoreError> {
        let _ = (since, refresh, limit);
        Err(StoreError::Unavailable(
            "this store cannot index traces incrementally yet".to_owned(),
        ))
    }

    /// The step of an invocation that has this traceId. The default pages through `steps`.
    fn step_of_trace(&self, request_id: &str, trace_id: &str) -> Result<Option<u64>, StoreError> {
        let mut after = 0;
        loop {
            let page = self.steps(request_id, after, 1000)?;
            if let Some(s) = page.iter().find(|s| s.trace_id == trace_id) {
                return Ok(Some(s.step));
            }
            match page.last() {
                Some(last) => after = last.step,
                None => return Ok(None),
            }
        }
    }

    /// The steps (request id, step) whose events contain every word of `text` (a word matches
    /// as a prefix), in the order they were recorded, at most `limit`.
    fn search_steps(&self, text: &str, limit: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let _ = (text, limit);
        Err(StoreError::Unavailable(
            "this store cannot search traces yet".to_owned(),
        ))
    }

    /// Records a judgement of one executed step. The step must exist with that traceId
    /// (`NotFound` otherwise). Marks are kept in order; a later mark by the same person on the
    /// same step supersedes theirs for the metrics.
    fn mark_action(&self, mark: &ActionMark) -> Result<(), StoreError>;

    /// The marks on an invocation's steps, oldest first.
    fn action_marks(&self, request_id: &str) -> Result<Vec<ActionMark>, StoreError>;
}

/// Where a runner-raised request came from: its invocation and the step whose rationale it
/// carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerLink {
    pub invocation: String,
    pub trace_id: Option<String>,
}

/// Adds `event` (of kind `kind`) to a step's kind list (comma separated, first-seen order), its
/// rationale (the first one seen) and its running figures: what every adapter keeps per step.
pub fn note_step_event(
    kinds: &mut String,
    rationale: &mut Option<String>,
    acc: &mut crate::domain::trace::StepAccumulator,
    kind: &str,
    event: &TraceEvent,
) {
    acc.add(event);
    if kinds.is_empty() {
        kind.clone_into(kinds);
    } else if !kinds.split(',').any(|k| k == kind) {
        kinds.push(',');
        kinds.push_str(kind);
    }
    if rationale.is_none() {
        *rationale = event.rationale().map(str::to_owned);
    }
}

/// How deep in the collaborator chain an event ran (0: the agent called), as the index keeps
/// it for the step the event opens.
pub fn collaborator_depth(event: &TraceEvent) -> u8 {
    u8::try_from(event.caller_chain.len().saturating_sub(1)).unwrap_or(u8::MAX)
}

/// The words of `text` as trace search matches them: runs of letters and digits, lower case
/// (what SQLite's `unicode61` tokenizer makes of them, diacritics aside).
pub fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether every one of `words` (from `search_words`) starts some word of the text values in
/// `raw`: how a store without a text index matches an event.
pub fn event_matches(raw: &serde_json::Value, words: &[String]) -> bool {
    fn texts<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| texts(x, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    texts(raw, &mut found);
    let have: Vec<String> = found.iter().flat_map(|s| search_words(s)).collect();
    words
        .iter()
        .all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
}

/// Statuses after which a runner-raised request is resumed. Expired requests are not: their
/// session is gone.
pub fn resumes_after(status: crate::domain::status::Status) -> bool {
    use crate::domain::status::Status;
    matches!(status, Status::Approved | Status::Rejected | Status::Mixed)
}

/// Where a resume stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Decided; not yet sent.
    Pending,
    /// A send was started: its outcome is unknown until acked.
    Sent,
    /// Bedrock accepted the resume (or said the invocationId was already used on a retry).
    Acked,
    /// Bedrock refused it for good, or the attempts ran out.
    Failed,
}

impl OutboxState {
    pub const ALL: [Self; 4] = [Self::Pending, Self::Sent, Self::Acked, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Acked => "acked",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub request: ApprovalId,
    pub invocation: Option<String>,
    pub state: OutboxState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub plan: ResumePlan,
    /// Built (and the executor run) once, before the first send.
    pub results: Option<Vec<InvocationResult>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The request id of the call that carried the resume.
    pub continuation: Option<String>,
}

/// The outbox port. Every `outbox_*` write names the lease owner and fails with
/// `StoreError::LeaseLost` when the row is no longer leased to it.
pub trait OutboxStore: Send + Sync {
    /// Enqueues a request the runner raised, marked resumable and linked to its invocation, with
    /// its audit entry, in one transaction.
    fn submit_resumable(
        &self,
        request: &ApprovalRequest,
        link: &RunnerLink,
        actor: &str,
    ) -> Result<(), StoreError>;

    fn runner_link(&self, id: &ApprovalId) -> Result<Option<RunnerLink>, StoreError>;

    /// Leases up to `limit` due rows (pending or sent, not leased or lease expired, not held
    /// back) to `owner` until `now + lease`.
    fn lease_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// Keeps the built results, so no retry runs the executor again.
    fn outbox_save_results(
        &self,
        id: &ApprovalId,
        owner: &str,
        results: &[InvocationResult],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records that a send starts now (state `sent`, one more attempt). Call before sending.
    fn outbox_mark_sent(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records that Bedrock accepted the resume; releases the lease.
    fn outbox_mark_acked(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        continuation: Option<&str>,
        note: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Releases the lease after a failure worth retrying; not due again before `retry_at`.
    fn outbox_retry_later(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Releases the lease after a send that certainly never left (no connection, no
    /// credentials): the row goes back to `pending`, not due before `retry_at`.
    fn outbox_unsend(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Gives up on a row for good.
    fn outbox_mark_failed(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    fn outbox_row(&self, id: &ApprovalId) -> Result<Option<OutboxRow>, StoreError>;

    /// Rows in a state (or all), oldest first.
    fn outbox_rows(
        &self,
        state: Option<OutboxState>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError>;
}
