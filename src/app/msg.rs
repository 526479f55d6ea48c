//! Messages into the state machine and effects out of it. Results travel as data, tagged with
//! the request id that asked for them so stale answers are dropped.

use chrono::{DateTime, Utc};

use super::keymap::Key;
use crate::domain::decision::DecisionAsk;
use crate::store::{DecisionOutcome, QueueRow, StoreCounts, StoredRequest};

/// A text-editing reading of a key press, for prompts and the filter line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Char(char),
    Backspace,
    Enter,
    Esc,
}

/// One key press: the key for the keymap, its editing meaning, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInput {
    pub key: Key,
    pub edit: Option<Edit>,
    pub at: DateTime<Utc>,
}

/// A failed store call, as the screen needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    pub message: String,
    /// True when the store refused (already decided, policy): the decision was considered and lost.
    /// False when the store could not be reached: nothing was recorded and a retry may work.
    pub refused: bool,
}

/// A metrics snapshot and the dimensions its filter can take.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsLoad {
    pub snapshot: crate::domain::metrics::Snapshot,
    pub dimensions: crate::domain::metrics::Dimensions,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyInput),
    /// Text pasted into the terminal (bracketed paste).
    Paste(String),
    /// The clock moved (about once a second).
    Tick(DateTime<Utc>),
    Resize {
        width: u16,
        height: u16,
    },
    /// Another process (or this one) changed the store.
    StoreChanged,
    QueueLoaded {
        tag: u64,
        result: Result<Vec<QueueRow>, String>,
    },
    CountsLoaded {
        tag: u64,
        result: Result<Box<StoreCounts>, String>,
    },
    MetricsLoaded {
        tag: u64,
        result: Result<Box<MetricsLoad>, String>,
    },
    DetailLoaded {
        tag: u64,
        result: Result<Box<StoredRequest>, String>,
    },
    Decided {
        tag: u64,
        result: Result<DecisionOutcome, StoreFailure>,
    },
    Expired {
        result: Result<usize, String>,
    },
    /// The view's report of how far the open detail can scroll.
    DetailMaxScroll(u16),
    /// The view's report of how far the open step's events can scroll.
    StepMaxScroll(u16),
    StepsLoaded {
        tag: u64,
        result: Result<Vec<crate::store::run::StepRow>, String>,
    },
    StepEventsLoaded {
        tag: u64,
        result: Result<Vec<crate::store::run::StoredEvent>, String>,
    },
    /// A page of changes to the trace index.
    TraceIndexLoaded {
        tag: u64,
        result: Result<Box<crate::store::run::IndexPage>, String>,
    },
    /// The invocation and step that raised a request (None: not raised by the runner).
    RaisingStepFound {
        tag: u64,
        id: crate::domain::approval::ApprovalId,
        result: Result<Option<(String, Option<u64>)>, String>,
    },
    /// Where a session export was written, or why not.
    Exported {
        result: Result<String, String>,
    },
    /// A step's action was judged (what to say), or why not.
    Marked {
        result: Result<String, String>,
    },
    /// Bedrock's CloudWatch figures per alias over `window`, or why they could not be read.
    BedrockLoaded {
        window: crate::domain::metrics::Window,
        result: Result<Vec<crate::domain::bedrock::AliasFigures>, String>,
    },
    /// Time to read Bedrock's CloudWatch figures again (every minute, when configured).
    BedrockDue,
    /// What a timed CloudWatch publish did, or why it failed.
    Published {
        result: Result<String, String>,
    },
    /// The steps the traces search found: (request id, step number).
    TraceSearchDone {
        tag: u64,
        result: Result<Vec<(String, u64)>, String>,
    },
}

/// IO the runtime must perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Read the open queue; answer with `QueueLoaded`.
    LoadQueue { tag: u64 },
    /// Read the store's totals; answer with `CountsLoaded`.
    LoadCounts { tag: u64 },
    /// Bring the metrics engine up to date and take its snapshot; answer with `MetricsLoaded`.
    LoadMetrics {
        tag: u64,
        window: crate::domain::metrics::Window,
        filter: crate::domain::metrics::Filter,
    },
    /// Read Bedrock's CloudWatch figures over `window` (its span, at its bucket's period);
    /// answer with `BedrockLoaded`.
    LoadBedrock {
        window: crate::domain::metrics::Window,
    },
    /// Read one request in full; answer with `DetailLoaded`.
    LoadDetail {
        tag: u64,
        id: crate::domain::approval::ApprovalId,
    },
    /// Record a decision (conditional write); answer with `Decided`.
    Decide { tag: u64, ask: DecisionAsk },
    /// Read the reasoning steps of one turn after step `after`, at most `limit`; answer with
    /// `StepsLoaded`.
    LoadSteps {
        tag: u64,
        request_id: String,
        after: u64,
        limit: usize,
    },
    /// Read what changed in the traces since the index's cursor; answer with `TraceIndexLoaded`.
    LoadTraceIndex {
        tag: u64,
        since: crate::store::run::IndexCursor,
        refresh: Vec<String>,
    },
    /// Find the invocation and step that raised a request; answer with `RaisingStepFound`.
    FindRaisingStep {
        tag: u64,
        id: crate::domain::approval::ApprovalId,
    },
    /// Put text on the terminal's clipboard (OSC 52). The text is sanitised already.
    Copy { text: String },
    /// Write one session's traces to a new JSON file; answer with `Exported`.
    ExportSession { session: String },
    /// Judge an executed step (its traceId looked up when not known yet); answer with `Marked`.
    MarkStep {
        request_id: String,
        step: u64,
        trace_id: Option<String>,
        appropriate: bool,
        who: String,
    },
    /// Full-text search of every trace event; answer with `TraceSearchDone`.
    SearchTraces { tag: u64, text: String },
    /// Read the events of one step with their raw JSON; answer with `StepEventsLoaded`.
    LoadStepEvents {
        tag: u64,
        request_id: String,
        step: u64,
    },
    /// Mark requests whose session expired; answer with `Expired`.
    ExpireDue,
    /// Leave the console.
    Quit,
}
