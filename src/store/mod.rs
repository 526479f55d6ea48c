//! Store ports: what the console and the CLI need from durable storage, whatever the backend.
//! Adapters (`SqliteStore`, later `DynamoStore`) implement these; no backend type leaks out.

pub mod background;
pub mod chain;
pub mod dynamo;
pub mod metrics;
pub mod run;
pub mod sqlite;

pub use metrics::{FactBatch, MetricsStore};
pub use run::{
    ActionMark, InvocationEnd, InvocationRecord, InvocationStart, OutboxRow, OutboxState,
    OutboxStore, Outcome, RunnerLink, RunnerStore, RunnerWrite, SessionRow, StepRow, StoredEvent,
    TraceStore, TurnWrite, skipped_after_failure,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::decision::{Decision, DecisionAsk, Refusal};
use crate::domain::policy::{ControlReason, Policy, RiskTier};
use crate::domain::status::Status;

/// Why a store call failed. Each maps to one CLI exit code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached, is locked past the timeout, or failed (exit 4).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The policy or the state of the request refused the decision (exit 3).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A request with this invocationId is already in the store (exit 3).
    #[error("request {0} is already in the store")]
    Duplicate(ApprovalId),
    /// No request matches (exit 2).
    #[error("no request matches {0:?}")]
    NotFound(String),
    /// An id prefix matches more than one request (exit 2).
    #[error("{prefix:?} matches {count} requests; give more of the id")]
    Ambiguous { prefix: String, count: usize },
    /// Stored data could not be read back (exit 4).
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// An outbox row is no longer leased to this worker: another took it over (exit 3).
    #[error("outbox row {0} is no longer leased to this worker; another worker took it over")]
    LeaseLost(ApprovalId),
}

/// One row of the approvals queue: enough to draw the list, without the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRow {
    pub id: ApprovalId,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub session_id: String,
    pub tier: RiskTier,
    pub reason: ControlReason,
    pub rule: Option<String>,
    /// The first input's action label (`group.function` or `group METHOD /path`).
    pub action: String,
    /// The first input's parameters, in order, as `(name, value)`.
    pub key_params: Vec<(String, String)>,
    pub inputs: usize,
    pub raised_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: Status,
    /// Distinct reviewers who have confirmed so far (a two-person rule shows 1/2).
    pub approvals: usize,
}

impl QueueRow {
    /// The queue row of `request` in `status` with `approvals` confirms recorded: the summary
    /// every adapter stores beside the body (first input's action and parameters, including
    /// request-body properties of the API form).
    pub fn of(request: &ApprovalRequest, status: Status, approvals: usize) -> Self {
        let lead = request.lead_assessment();
        let first = request.inputs.first();
        Self {
            id: request.id.clone(),
            agent_id: request.agent_id.clone(),
            agent_alias_id: request.agent_alias_id.clone(),
            session_id: request.session_id.clone(),
            tier: request.tier(),
            reason: lead.map_or(ControlReason::ApprovalRequired, |a| a.reason),
            rule: lead.and_then(|a| a.rule.clone()),
            action: first
                .map(crate::domain::approval::InvocationInput::action_label)
                .unwrap_or_default(),
            key_params: first
                .map(|i| {
                    i.all_parameters()
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect()
                })
                .unwrap_or_default(),
            inputs: request.inputs.len(),
            raised_at: request.raised_at,
            expires_at: request.expires_at,
            status,
            approvals,
        }
    }
}

/// A request with everything recorded on it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRequest {
    pub request: ApprovalRequest,
    pub decisions: Vec<Decision>,
    pub status: Status,
}

/// What a decision wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionOutcome {
    pub decisions: Vec<Decision>,
    pub status: Status,
    pub audit_seq: u64,
}

/// Totals the traces and metrics panes show until their full versions exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounts {
    pub requests: u64,
    pub by_status: Vec<(Status, u64)>,
    pub by_tier_open: Vec<(RiskTier, u64)>,
    pub sessions: u64,
    pub agents: Vec<(String, u64)>,
    pub decisions: u64,
    pub confirms: u64,
    pub denies: u64,
    pub reviewers: Vec<(String, u64)>,
    /// Median milliseconds from raised to the first decision, over decided requests.
    pub median_time_to_decision_ms: Option<u64>,
    pub audit_entries: u64,
    /// Agent turns recorded by the runner (new input and resumes).
    pub invocations: u64,
    /// Turns by outcome: running, finished, failed, waiting-for-human, exception.
    pub invocations_by_outcome: Vec<(String, u64)>,
    pub trace_events: u64,
    pub trace_steps: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Resumes by outbox state: pending, sent, acked, failed.
    pub outbox_by_state: Vec<(String, u64)>,
    /// The most recent turns, newest first.
    pub recent: Vec<RecentInvocation>,
}

/// One recent agent turn, as the traces pane lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentInvocation {
    pub request_id: String,
    pub agent_id: String,
    pub agent_alias_id: String,
    pub session_id: String,
    pub started_at: DateTime<Utc>,
    pub outcome: String,
    pub latency_ms: Option<u64>,
    pub steps: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The user's text, or None for a resume after a decision.
    pub input_text: Option<String>,
    /// The return of control this turn answered, for resumes.
    pub resumes: Option<String>,
}

/// How many recent turns `counts` returns.
pub const RECENT_INVOCATIONS: usize = 200;

/// One entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// `submitted`, `decided` or `expired`.
    pub kind: String,
    pub request: ApprovalId,
    /// Canonical JSON of what happened (the request's hash, the decision rows, the new status).
    pub payload: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The result of checking the audit chain and the tables against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub entries: u64,
    /// Empty when everything verifies; else one line per problem, naming the entry.
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The approvals store port.
pub trait ApprovalStore: Send + Sync {
    /// Enqueues a validated request, with its audit entry, in one transaction.
    fn submit(&self, request: &ApprovalRequest, actor: &str) -> Result<(), StoreError>;

    /// Finds the one request whose id is `id_or_prefix` or starts with it.
    fn resolve(&self, id_or_prefix: &str) -> Result<ApprovalId, StoreError>;

    fn get(
        &self,
        id: &ApprovalId,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<StoredRequest, StoreError>;

    /// Open requests (pending or partially decided, not yet past their expiry).
    fn open_queue(&self, now: DateTime<Utc>) -> Result<Vec<QueueRow>, StoreError>;

    /// Records a decision: one conditional write with its audit entry. Exactly one of two
    /// racing deciders wins; the other gets `Refused(AlreadyDecided { by, at })`.
    fn decide(
        &self,
        ask: &DecisionAsk,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<DecisionOutcome, StoreError>;

    /// Marks open requests whose session has expired, with audit entries. Returns how many.
    fn expire_due(&self, now: DateTime<Utc>, actor: &str) -> Result<usize, StoreError>;

    fn counts(&self) -> Result<StoreCounts, StoreError>;

    fn audit_verify(&self) -> Result<AuditReport, StoreError>;

    /// Calls `each` with every audit entry in order (streams; does not hold them all).
    fn audit_each(
        &self,
        each: &mut dyn FnMut(AuditEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}
