//! What the user can ask for: every remappable action, its kebab-case name and its help text.
//! The keymap, the help screen and the key bar are all generated from this table.

use serde::{Deserialize, Serialize};

/// A user intent, independent of the key that triggered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Move the selection up one row (or to the previous input in the detail view).
    MoveUp,
    /// Move the selection down one row (or to the next input in the detail view).
    MoveDown,
    /// Move up one screen; in the detail view, scroll the text up.
    PageUp,
    /// Move down one screen; in the detail view, scroll the text down.
    PageDown,
    /// Jump to the first row.
    Top,
    /// Jump to the last row.
    Bottom,
    /// Switch to the next pane.
    NextPane,
    /// Switch to the previous pane.
    PrevPane,
    /// Show the approvals pane.
    PaneApprovals,
    /// Show the traces pane.
    PaneTraces,
    /// Show the metrics pane.
    PaneMetrics,
    /// Open the selected request in full.
    Open,
    /// Close the detail, prompt, filter or help; clear the filter.
    Back,
    /// Approve (confirm) the selected input.
    Approve,
    /// Reject (deny) the selected input, with a reason.
    Reject,
    /// Approve every open input of the request.
    ApproveAll,
    /// Reject every open input of the request, with a reason.
    RejectAll,
    /// Filter the queue by text; in the traces pane, filter and search steps.
    Filter,
    /// Traces: follow the latest invocation as its steps arrive.
    Follow,
    /// Jump from a request to the trace step that raised it, and back.
    Jump,
    /// Traces: copy the selection (a step's text and raw JSON, or an id) to the clipboard.
    Copy,
    /// Traces: export the selected session to a JSON file.
    Export,
    /// Traces: judge the selected executed action-group step appropriate (action accuracy).
    MarkGood,
    /// Traces: judge the selected executed action-group step not appropriate.
    MarkBad,
    /// Show the help screen with every key.
    Help,
    /// Quit agentdeck.
    Quit,
    /// Metrics: the next window (15 m, 1 h, 24 h, 7 d).
    MetricsWindow,
    /// Metrics: filter by the next agent seen (then all again).
    MetricsAgent,
    /// Metrics: filter by the next alias seen (then all again).
    MetricsAlias,
    /// Metrics: filter by the next model seen (then all again).
    MetricsModel,
}

impl Action {
    pub const ALL: [Self; 30] = [
        Self::MoveUp,
        Self::MoveDown,
        Self::PageUp,
        Self::PageDown,
        Self::Top,
        Self::Bottom,
        Self::NextPane,
        Self::PrevPane,
        Self::PaneApprovals,
        Self::PaneTraces,
        Self::PaneMetrics,
        Self::Open,
        Self::Back,
        Self::Approve,
        Self::Reject,
        Self::ApproveAll,
        Self::RejectAll,
        Self::Filter,
        Self::Follow,
        Self::Jump,
        Self::Copy,
        Self::Export,
        Self::MarkGood,
        Self::MarkBad,
        Self::Help,
        Self::Quit,
        Self::MetricsWindow,
        Self::MetricsAgent,
        Self::MetricsAlias,
        Self::MetricsModel,
    ];

    /// The kebab-case name used in the config file's `[keys]` table.
    pub fn name(self) -> &'static str {
        match self {
            Self::MoveUp => "move-up",
            Self::MoveDown => "move-down",
            Self::PageUp => "page-up",
            Self::PageDown => "page-down",
            Self::Top => "top",
            Self::Bottom => "bottom",
            Self::NextPane => "next-pane",
            Self::PrevPane => "prev-pane",
            Self::PaneApprovals => "pane-approvals",
            Self::PaneTraces => "pane-traces",
            Self::PaneMetrics => "pane-metrics",
            Self::Open => "open",
            Self::Back => "back",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::ApproveAll => "approve-all",
            Self::RejectAll => "reject-all",
            Self::Filter => "filter",
            Self::Follow => "follow",
            Self::Jump => "jump",
            Self::Copy => "copy",
            Self::Export => "export",
            Self::MarkGood => "mark-appropriate",
            Self::MarkBad => "mark-inappropriate",
            Self::Help => "help",
            Self::Quit => "quit",
            Self::MetricsWindow => "metrics-window",
            Self::MetricsAgent => "metrics-agent",
            Self::MetricsAlias => "metrics-alias",
            Self::MetricsModel => "metrics-model",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// One line for the help screen.
    pub fn help(self) -> &'static str {
        match self {
            Self::MoveUp => "move up (previous input in the detail)",
            Self::MoveDown => "move down (next input in the detail)",
            Self::PageUp => "page up / scroll the detail up",
            Self::PageDown => "page down / scroll the detail down",
            Self::Top => "first row",
            Self::Bottom => "last row",
            Self::NextPane => "next pane",
            Self::PrevPane => "previous pane",
            Self::PaneApprovals => "approvals pane",
            Self::PaneTraces => "traces pane",
            Self::PaneMetrics => "metrics pane",
            Self::Open => "open the request in full",
            Self::Back => "close / cancel / clear filter",
            Self::Approve => "approve the selected input",
            Self::Reject => "reject the selected input (asks a reason)",
            Self::ApproveAll => "approve every open input of the request",
            Self::RejectAll => "reject every open input (asks a reason)",
            Self::Filter => "filter the queue; traces: filter and search steps",
            Self::Follow => "traces: follow the live invocation",
            Self::Jump => "request <-> the trace step that raised it",
            Self::Copy => "traces: copy the selection (OSC 52)",
            Self::Export => "traces: export the session to JSON",
            Self::MarkGood => "traces: mark the step's action appropriate (action accuracy)",
            Self::MarkBad => "traces: mark the step's action NOT appropriate",
            Self::Help => "this help",
            Self::Quit => "quit",
            Self::MetricsWindow => "metrics: next window (15m, 1h, 24h, 7d)",
            Self::MetricsAgent => "metrics: filter by the next agent, then all",
            Self::MetricsAlias => "metrics: filter by the next alias, then all",
            Self::MetricsModel => "metrics: filter by the next model, then all",
        }
    }

    /// A short label for the key bar.
    pub fn short(self) -> &'static str {
        match self {
            Self::MoveUp => "up",
            Self::MoveDown => "down",
            Self::PageUp => "pg up",
            Self::PageDown => "pg down",
            Self::Top => "top",
            Self::Bottom => "bottom",
            Self::NextPane | Self::PrevPane => "pane",
            Self::PaneApprovals => "approvals",
            Self::PaneTraces => "traces",
            Self::PaneMetrics => "metrics",
            Self::Open => "open",
            Self::Back => "back",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::ApproveAll => "approve all",
            Self::RejectAll => "reject all",
            Self::Filter => "filter",
            Self::Follow => "follow",
            Self::Jump => "jump",
            Self::Copy => "copy",
            Self::Export => "export",
            Self::MarkGood => "good",
            Self::MarkBad => "bad",
            Self::Help => "help",
            Self::Quit => "quit",
            Self::MetricsWindow => "window",
            Self::MetricsAgent => "agent",
            Self::MetricsAlias => "alias",
            Self::MetricsModel => "model",
        }
    }
}
