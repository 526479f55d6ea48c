//! The approvals queue: one row per open request, windowed so a frame costs the same with ten
//! rows or ten thousand.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::format::{countdown, reason_label, tier_label, tier_role, urgent};
use super::text::{display_width, ellipsize, fit_pairs};
use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::domain::sanitize;
use crate::domain::status::Status;
use crate::store::QueueRow;

/// Below this inner width each request takes two lines (see `Columns::for_width`).
pub const STACK_BELOW: usize = crate::app::state::STACK_BELOW_WIDTH;

/// Column widths for a given inner width. The marker column (1) comes first; separators are
/// single spaces.
#[derive(Debug, Clone, Copy)]
struct Columns {
    short: bool,
    tier: usize,
    left: usize,
    agent: usize,
    action: usize,
    params: usize,
    reason: usize,
}

impl Columns {
    /// `agent_need` and `action_need` are the widest agent/alias and action labels on screen, so
    /// narrow terminals give the room to parameters rather than to padding.
    fn for_width(width: usize, agent_need: usize, action_need: usize) -> Self {
        let short = width < STACK_BELOW;
        let tier = if short { 8 } else { 12 };
        let left = 6;
        let agent = agent_need.clamp(11, 21);
        let reason = if short { 10 } else { 17 };
        let fixed = 1 + tier + left + agent + reason + 5;
        let rest = width.saturating_sub(fixed);
        // Narrow terminals stack each request on two lines, parameters on the second, so a
        // reviewer sees whole values rather than a count.
        let (action, params) = if short {
            (rest + 1, width.saturating_sub(1 + tier + 1 + left + 1))
        } else {
            let action = action_need.min(rest * 2 / 5).max(rest.min(8));
            (action, rest.saturating_sub(action + 1))
        };
        Self {
            short,
            tier,
            left,
            agent,
            action,
            params,
            reason,
        }
    }
}

/// For action labels: when cut, keep the end (the function or the path's last segment is what
/// names the action) and mark the cut at the start.
fn ellipsize_start(s: &str, width: usize) -> String {
    if display_width(s) <= width {
        return s.to_owned();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut start = 0;
    while start < chars.len()
        && display_width(&chars[start..].iter().collect::<String>()) + 1 > width
    {
        start += 1;
    }
    format!("…{}", chars[start..].iter().collect::<String>())
}

fn pad(s: &str, width: usize) -> String {
    let w = display_width(s);
    let mut out = s.to_owned();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(w)));
    out
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let title = if state.filter.is_empty() {
        format!(" Approvals · {} open ", state.queue.len())
    } else {
        format!(
            " Approvals · {} of {} match /{} ",
            state.view.len(),
            state.queue.len(),
            sanitize::line(&state.filter)
        )
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(Role::BorderFocused))
        .title(Span::styled(title, theme.style(Role::Title)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let per_row = if usize::from(inner.width) < STACK_BELOW {
        2
    } else {
        1
    };
    let height = usize::from(inner.height.saturating_sub(1)) / per_row;
    let offset = state.list_offset();
    let visible = || {
        state
            .view
            .iter()
            .skip(offset)
            .take(height)
            .map(|&i| &state.queue[i])
    };
    let agent_need = visible()
        .map(|r| display_width(&r.agent_id) + display_width(&r.agent_alias_id) + 1)
        .max()
        .unwrap_or(11);
    let action_need = visible()
        .map(|r| display_width(&r.action) + if r.inputs > 1 { 4 } else { 0 })
        .max()
        .unwrap_or(6);
    let cols = Columns::for_width(usize::from(inner.width), agent_need, action_need);
    let mut lines = Vec::with_capacity(usize::from(inner.height));
    lines.push(header(cols, theme));
    if state.view.is_empty() {
        let text = if !state.queue_loaded {
            "loading the queue…".to_owned()
        } else if state.queue.is_empty() {
            "No requests waiting for a decision. New ones appear here as agents hand back control."
                .to_owned()
        } else {
            "No request matches the filter (Esc clears it).".to_owned()
        };
        lines.push(Line::styled(text, theme.style(Role::Muted)));
    } else {
        for (pos, &i) in state.view.iter().enumerate().skip(offset).take(height) {
            let row = &state.queue[i];
            lines.extend(row_lines(row, cols, state, theme, pos == state.selected));
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn header(cols: Columns, theme: &Theme) -> Line<'static> {
    if cols.short {
        let text = format!(
            " {} {} {} {} {}",
            pad("TIER", cols.tier),
            pad("LEFT", cols.left),
            pad("AGENT/ALIAS", cols.agent),
            pad("ACTION / parameters", cols.action),
            pad("REASON", cols.reason),
        );
        return Line::styled(text, theme.style(Role::Muted));
    }
    let text = format!(
        " {} {} {} {} {} {}",
        pad("TIER", cols.tier),
        pad("LEFT", cols.left),
        pad("AGENT/ALIAS", cols.agent),
        pad("ACTION", cols.action),
        pad("PARAMETERS", cols.params),
        pad("REASON", cols.reason),
    );
    Line::styled(text, theme.style(Role::Muted))
}

fn row_lines(
    row: &QueueRow,
    cols: Columns,
    state: &AppState,
    theme: &Theme,
    selected: bool,
) -> Vec<Line<'static>> {
    let base = if selected {
        theme.style(Role::Selection)
    } else {
        Style::default()
    };
    let sel = |role: Role| {
        if selected {
            theme.style(role).patch(theme.style(Role::Selection))
        } else {
            theme.style(role)
        }
    };
    let left = countdown(row.expires_at, state.now);
    let left_role = if urgent(row.expires_at, state.now) {
        Role::AlertWarn
    } else {
        Role::Text
    };
    let agent = format!(
        "{}/{}",
        sanitize::line(&row.agent_id),
        sanitize::line(&row.agent_alias_id)
    );
    let more = if row.inputs > 1 {
        format!(" +{}", row.inputs - 1)
    } else {
        String::new()
    };
    let action = format!(
        "{}{more}",
        ellipsize_start(
            &sanitize::line(&row.action),
            cols.action.saturating_sub(more.len())
        )
    );
    let (params, _) = fit_pairs(&row.key_params, cols.params);
    let mut reason = reason_label(row.reason, cols.short).to_owned();
    if row.status == Status::PartiallyDecided {
        reason = format!(
            "◐ {}",
            if cols.short {
                "partial"
            } else {
                "partly decided"
            }
        );
    }
    let marker = if selected { "▌" } else { " " };
    let cell = |text: String, width: usize, role: Role| Span::styled(pad(&text, width), sel(role));
    let gap = || Span::styled(" ".to_owned(), base);
    let mut first = vec![
        cell(marker.to_owned(), 1, Role::Accent),
        cell(
            tier_label(row.tier, cols.short),
            cols.tier,
            tier_role(row.tier),
        ),
        gap(),
        cell(left, cols.left, left_role),
        gap(),
        cell(ellipsize(&agent, cols.agent), cols.agent, Role::Text),
        gap(),
        cell(action, cols.action, Role::Accent),
        gap(),
    ];
    let reason = cell(reason, cols.reason, Role::Muted);
    let params = cell(params, cols.params, Role::Text);
    if cols.short {
        first.push(reason);
        let indent = 1 + cols.tier + 1 + cols.left + 1;
        let second = vec![
            cell(marker.to_owned(), 1, Role::Accent),
            Span::styled(" ".repeat(indent - 1), base),
            params,
        ];
        return vec![Line::from(first), Line::from(second)];
    }
    first.extend([params, gap(), reason]);
    vec![Line::from(first)]
}
