//! Pure rendering of `AppState` with a `Theme`: no IO, no clock (time is `state.now`).
//!
//! ```text
//! ┌ tabs: agentdeck │ 1 Approvals (n) │ 2 Traces │ 3 Metrics        reviewer · store ┐  row 0
//! │                                                                                 │
//! │  pane body: approvals list | request detail | traces | metrics                  │  rows 1..h-2
//! │                                                                                 │
//! └─────────────────────────────────────────────────────────────────────────────────┘
//!   message / prompt / filter line                                                   row h-2
//!   key bar generated from the keymap                                                row h-1
//! ```
//! The help screen is drawn over everything.

pub mod approvals;
pub mod bars;
pub mod detail;
pub mod format;
pub mod help;
pub mod metrics;
pub mod summary;
pub mod text;
pub mod theme;
pub mod traces;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::Paragraph;

use crate::app::AppState;
use crate::app::state::Pane;
use theme::{Role, Theme};

/// The smallest terminal agentdeck draws its panes in.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 10;

/// Layout facts the view reports back, so the state can clamp scrolling exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderReport {
    /// The largest useful scroll offset of the open detail, if one is shown.
    pub detail_max_scroll: Option<u16>,
    /// The largest useful scroll offset of an open trace step, if one is shown.
    pub step_max_scroll: Option<u16>,
}

pub fn render(frame: &mut Frame<'_>, state: &AppState, theme: &Theme) -> RenderReport {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal {}x{} is too small: agentdeck needs {MIN_WIDTH}x{MIN_HEIGHT}. Nothing is lost; enlarge it or press q.",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(text)
                .style(theme.style(Role::AlertWarn))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return RenderReport::default();
    }
    let [tabs, body, message, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    bars::tabs(frame, tabs, state, theme);
    let mut report = RenderReport::default();
    match state.pane {
        Pane::Approvals => match &state.detail {
            Some(d) => {
                report.detail_max_scroll = Some(detail::render(frame, body, state, d, theme));
            }
            None => approvals::render(frame, body, state, theme),
        },
        Pane::Traces => report.step_max_scroll = traces::render(frame, body, state, theme),
        Pane::Metrics => metrics::render(frame, body, state, theme),
    }
    bars::message(frame, message, state, theme);
    bars::keys(frame, keys, state, theme);
    if state.help {
        let (w, h) = if state.pane == Pane::Metrics {
            (100, 60)
        } else {
            (64, 30)
        };
        help::render(frame, centered(area, w, h), state, theme);
    }
    report
}

/// A rectangle of at most `w` x `h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
