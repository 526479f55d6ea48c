//! The console's whole state: plain data, `Clone + Debug`, no handles.

use chrono::{DateTime, Duration, Utc};

use super::action::Action;
use super::keymap::Keymap;
use crate::domain::approval::ApprovalId;
use crate::domain::decision::Verdict;
use crate::domain::policy::{Policy, RiskTier, TierRequirements};
use crate::store::{QueueRow, StoreCounts, StoredRequest};

/// Inner width below which the queue stacks each request on two lines (the view uses the same).
pub const STACK_BELOW_WIDTH: usize = 110;

/// How long a "press again" arm stays live.
pub const ARM_WINDOW: Duration = Duration::seconds(5);
/// How long a status message stays before it fades (errors stay until the next action).
pub const MESSAGE_TTL: Duration = Duration::seconds(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Approvals,
    Traces,
    Metrics,
}

impl Pane {
    pub const ALL: [Self; 3] = [Self::Approvals, Self::Traces, Self::Metrics];

    pub fn title(self) -> &'static str {
        match self {
            Self::Approvals => "Approvals",
            Self::Traces => "Traces",
            Self::Metrics => "Metrics",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Self::Approvals => 0,
            Self::Traces => 1,
            Self::Metrics => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Success,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub level: Level,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// A decision the reviewer has asked for but not yet confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: ApprovalId,
    pub verdict: Verdict,
    /// Each chosen input with the argument hash shown on screen.
    pub inputs: Vec<(usize, String)>,
    pub tier: RiskTier,
    pub requirements: TierRequirements,
    /// The action that started it (for "press X again").
    pub action: Action,
    /// The word to type for a typed confirmation.
    pub word: String,
    pub reason: Option<String>,
}

/// A text prompt at the bottom of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// The reason for a decision.
    Reason { intent: Intent, text: String },
    /// Type `intent.word` to confirm.
    Word { intent: Intent, text: String },
}

/// A first press that waits for its second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Armed {
    pub action: Action,
    pub id: ApprovalId,
    pub at: DateTime<Utc>,
}

/// The request open in full.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub id: ApprovalId,
    pub tag: u64,
    pub loaded: Option<Box<StoredRequest>>,
    pub load_error: Option<String>,
    pub selected_input: usize,
    pub scroll: u16,
    /// The largest useful scroll, as the view last reported it.
    pub max_scroll: u16,
    pub opened_at: DateTime<Utc>,
}

/// One step of a turn opened in full: its events with their raw JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StepView {
    pub step: u64,
    pub tag: u64,
    pub events: Option<Result<Vec<crate::store::run::StoredEvent>, String>>,
    pub scroll: u16,
    pub max_scroll: u16,
}

impl StepView {
    /// The step's traceId, once its events are loaded.
    pub fn trace_id(&self) -> Option<&str> {
        match &self.events {
            Some(Ok(events)) => events.iter().find_map(|e| e.trace_id.as_deref()),
            _ => None,
        }
    }
}

/// A turn (invocation) opened in the traces pane: its reasoning steps. Figures come from the
/// index; the rationale text of the rows near the selection is read from the store (`rows`).
#[derive(Debug, Clone, PartialEq)]
pub struct TurnView {
    pub request_id: String,
    /// Its position in the index.
    pub invocation: u32,
    pub tag: u64,
    /// Step rows read around the selection (rationale text), first step number `rows_from + 1`.
    pub steps: Option<Result<Vec<crate::store::run::StepRow>, String>>,
    pub rows_from: u64,
    /// Position of the selected step (0-based step order).
    pub selected: usize,
    pub step: Option<StepView>,
}

/// A session opened in the traces pane: its invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    /// Position in `TraceIndex::sessions`.
    pub session: u32,
    /// Position in the session's invocations.
    pub selected: usize,
}

/// Where the traces pane is: sessions (or the steps a filter found) → a session's invocations →
/// an invocation's steps → a step's events.
#[derive(Debug, Clone, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent flags of the pane (loading, follow, editing)"
)]
pub struct TracesView {
    pub index: super::trace_index::TraceIndex,
    pub index_tag: u64,
    pub index_loading: bool,
    pub index_again: bool,
    /// Why the last index read failed (shown in the pane; cleared by the next good read).
    pub index_error: Option<String>,
    /// Position in the sessions (most recent first), or in `results` when a filter is on.
    pub selected: usize,
    pub session: Option<SessionView>,
    pub turn: Option<TurnView>,
    /// Follow mode: the latest invocation's newest step stays selected as steps arrive.
    pub follow: bool,
    /// The filter line as typed, and whether it is being edited.
    pub filter_line: String,
    pub filter_editing: bool,
    pub filter: super::trace_index::StepFilter,
    /// Steps passing the filter (positions in the index's step columns), when one is on.
    pub results: Option<Vec<u32>>,
    /// Steps the free text found, when the filter has free text.
    pub hits: Option<Vec<u32>>,
    pub search_tag: u64,
    pub searching: bool,
    /// The request a jump came from (Jump goes back to it).
    pub jumped_from: Option<ApprovalId>,
    /// A jump's target, waiting for the index to hold its invocation: (request id, step).
    pub pending_jump: Option<(String, Option<u64>)>,
    pub jump_tag: u64,
}

impl TracesView {
    /// The step open or selected in the step list: (request id, step number, traceId once its
    /// events are loaded). The hook for marking an action from the step view.
    pub fn selected_step(&self) -> Option<(&str, u64, Option<&str>)> {
        let turn = self.turn.as_ref()?;
        if let Some(v) = &turn.step {
            return Some((turn.request_id.as_str(), v.step, v.trace_id()));
        }
        let inv = self.index.invocations.get(turn.invocation as usize)?;
        let pos = *inv.steps.get(turn.selected)?;
        let n = self.index.steps.number.get(pos as usize)?;
        Some((turn.request_id.as_str(), u64::from(*n), None))
    }
}

/// The metrics pane: the window and filter chosen, and the engine's last snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsView {
    pub window: crate::domain::metrics::Window,
    pub filter: crate::domain::metrics::Filter,
    pub snapshot: Option<Box<crate::domain::metrics::Snapshot>>,
    /// The agents, aliases and models the filter keys cycle through.
    pub dimensions: crate::domain::metrics::Dimensions,
    pub error: Option<String>,
    pub tag: u64,
    pub loading: bool,
    /// A load was asked for while one was in flight.
    pub again: bool,
    /// Bedrock's own figures from CloudWatch, beside ours.
    pub bedrock: BedrockView,
    /// The window the Bedrock figures on screen cover.
    pub bedrock_window: crate::domain::metrics::Window,
}

/// What the metrics pane knows of Bedrock's CloudWatch figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum BedrockView {
    /// No CloudWatch endpoint configured: nothing is read.
    #[default]
    NotConfigured,
    Loading,
    Loaded(Vec<crate::domain::bedrock::AliasFigures>),
    Failed(String),
}

#[derive(Debug, Clone)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent UI flags, not a state machine in disguise"
)]
pub struct AppState {
    pub pane: Pane,
    pub now: DateTime<Utc>,
    pub width: u16,
    pub height: u16,
    /// Open requests sorted by risk (highest first), then time left, then id.
    pub queue: Vec<QueueRow>,
    /// Indices into `queue` that pass the filter, in order.
    pub view: Vec<usize>,
    /// Position in `view`.
    pub selected: usize,
    pub filter: String,
    pub filter_editing: bool,
    pub detail: Option<Detail>,
    pub prompt: Option<Prompt>,
    pub armed: Option<Armed>,
    pub help: bool,
    /// Lines the help screen is scrolled down by.
    pub help_scroll: u16,
    /// How far the help can scroll at the size it was last drawn: the screen knows its length
    /// (it wraps to the width), so it leaves it here for the keys to stop at.
    pub help_max_scroll: std::cell::Cell<u16>,
    pub counts: Option<StoreCounts>,
    pub traces: TracesView,
    pub metrics: MetricsView,
    pub message: Option<Message>,
    /// Decision waiting for the store's answer.
    pub deciding: Option<(u64, Intent)>,
    /// The last store read failure, shown as a marker until a read succeeds.
    pub store_error: Option<String>,
    pub queue_loaded: bool,
    pub queue_tag: u64,
    pub counts_tag: u64,
    /// A reload was asked for while one was in flight.
    pub reload_again: bool,
    pub loading_queue: bool,
    /// Counts are being read; another read was asked for meanwhile.
    pub loading_counts: bool,
    pub counts_again: bool,
    pub next_tag: u64,
    pub keymap: Keymap,
    pub policy: Policy,
    pub reviewer: String,
    pub store_label: String,
    pub quit: bool,
}

impl AppState {
    pub fn new(
        keymap: Keymap,
        policy: Policy,
        reviewer: String,
        store_label: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            pane: Pane::Approvals,
            now,
            width: 80,
            height: 24,
            queue: Vec::new(),
            view: Vec::new(),
            selected: 0,
            filter: String::new(),
            filter_editing: false,
            detail: None,
            prompt: None,
            armed: None,
            help: false,
            help_scroll: 0,
            help_max_scroll: std::cell::Cell::new(u16::MAX),
            counts: None,
            traces: TracesView::default(),
            metrics: MetricsView::default(),
            message: None,
            deciding: None,
            store_error: None,
            queue_loaded: false,
            queue_tag: 0,
            counts_tag: 0,
            reload_again: false,
            loading_queue: false,
            loading_counts: false,
            counts_again: false,
            next_tag: 1,
            keymap,
            policy,
            reviewer,
            store_label,
            quit: false,
        }
    }

    pub fn selected_row(&self) -> Option<&QueueRow> {
        self.view
            .get(self.selected)
            .and_then(|i| self.queue.get(*i))
    }

    /// Requests of the queue list that fit on screen (header, tabs and bars excluded). Below
    /// `STACK_BELOW_WIDTH` columns each request takes two lines.
    pub fn list_height(&self) -> usize {
        let lines = usize::from(self.height.saturating_sub(6));
        let per_row = if usize::from(self.width.saturating_sub(2)) < STACK_BELOW_WIDTH {
            2
        } else {
            1
        };
        (lines / per_row).max(1)
    }

    /// The first visible row of the list: keeps the selection on screen, derived, not stored.
    pub fn list_offset(&self) -> usize {
        let h = self.list_height();
        if self.selected < h {
            0
        } else {
            self.selected + 1 - h
        }
    }

    pub fn tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    /// Open requests at each tier, as loaded.
    pub fn tier_counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for r in &self.queue {
            c[usize::from(r.tier.rank())] += 1;
        }
        c
    }
}
