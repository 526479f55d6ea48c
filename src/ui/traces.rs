//! The traces pane: recent agent turns; a turn's reasoning steps with their durations, tokens
//! and a bar per step so the slow one shows at a glance; a step's events with their raw JSON.
//! Every string from an agent or model is sanitised; lists are windowed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::format::duration_ms;
use super::summary::{frame_block, loading};
use super::text::{display_width, ellipsize, wrap};
use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::app::state::{StepView, TurnView};
use crate::domain::sanitize;
use crate::store::RecentInvocation;
use crate::store::run::StepRow;

/// Renders the pane; returns the largest useful scroll of an open step.
pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) -> Option<u16> {
    match &state.traces.turn {
        None => {
            turns(frame, area, state, theme);
            None
        }
        Some(turn) => match &turn.step {
            None => {
                steps(frame, area, state, turn, theme);
                None
            }
            Some(step) => Some(events(frame, area, turn, step, theme)),
        },
    }
}

fn selected_style(theme: &Theme, selected: bool, role: Role) -> Style {
    if selected {
        theme.style(role).patch(theme.style(Role::Selection))
    } else {
        theme.style(role)
    }
}

/// The first row to show so that `selected` stays in a window of `height` rows.
fn window_start(selected: usize, height: usize) -> usize {
    if height == 0 || selected < height {
        0
    } else {
        selected + 1 - height
    }
}

fn outcome_look(outcome: &str) -> (&'static str, Role, &str) {
    match outcome {
        "finished" => ("✓", Role::VerdictApproved, "finished"),
        "failed" => ("✗", Role::AlertError, "failed"),
        "exception" => ("✗", Role::AlertError, "exception"),
        "waiting-for-human" => ("◐", Role::VerdictPending, "waiting"),
        _ => ("…", Role::Muted, "running"),
    }
}

fn turns(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let block = frame_block("Traces · recent agent turns (Enter opens a turn)", theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(c) = &state.counts else {
        return loading(frame, inner, state, theme);
    };
    let muted = theme.style(Role::Muted);
    let width = usize::from(inner.width);
    let summary = format!(
        "{} turns · {} reasoning steps · {} trace events · {} sessions with approvals · tokens {} in / {} out",
        c.invocations, c.trace_steps, c.trace_events, c.sessions, c.input_tokens, c.output_tokens
    );
    let mut lines: Vec<Line<'static>> = wrap(&summary, width.max(1))
        .into_iter()
        .map(|l| Line::styled(l, theme.style(Role::Text)))
        .collect();
    lines.push(Line::default());
    if c.recent.is_empty() {
        lines.push(Line::styled(
            "No agent turns recorded yet: `agentdeck invoke` and `agentdeck demo` record them here.",
            muted,
        ));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let narrow = width < 110;
    let session_col = if narrow {
        String::new()
    } else {
        format!("{:<16} ", "SESSION")
    };
    lines.push(Line::styled(
        format!(
            " {:<8} {:<22} {session_col}{:<11} {:>5} {:>13} {:>8}  INPUT",
            "STARTED", "AGENT/ALIAS", "OUTCOME", "STEPS", "TOKENS IN/OUT", "LATENCY"
        ),
        muted,
    ));
    let room = usize::from(inner.height).saturating_sub(lines.len());
    let selected = state.traces.selected.min(c.recent.len() - 1);
    let start = window_start(selected, room);
    for (i, r) in c.recent.iter().enumerate().skip(start).take(room) {
        lines.push(turn_line(r, i == selected, width, narrow, theme));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One turn; `narrow` leaves the session out (the turn's own view shows it).
fn turn_line(
    r: &RecentInvocation,
    selected: bool,
    width: usize,
    narrow: bool,
    theme: &Theme,
) -> Line<'static> {
    let (sym, role, word) = outcome_look(&r.outcome);
    let agent = format!(
        "{}/{}",
        sanitize::line(&r.agent_id),
        sanitize::line(&r.agent_alias_id)
    );
    let input = match (&r.input_text, &r.resumes) {
        (_, Some(id)) => format!("↩ resume after decision on {}", sanitize::line(id)),
        (Some(t), None) => sanitize::line(t).into_owned(),
        (None, None) => String::new(),
    };
    let session = if narrow {
        String::new()
    } else {
        format!("{:<16} ", ellipsize(&sanitize::line(&r.session_id), 16))
    };
    let head = format!(
        "{}{} {:<22} {session}",
        if selected { "▌" } else { " " },
        r.started_at.format("%H:%M:%S"),
        ellipsize(&agent, 22),
    );
    let tail = format!(
        " {:>5} {:>13} {:>8}  ",
        r.steps,
        format!("{}/{}", r.input_tokens, r.output_tokens),
        r.latency_ms.map_or_else(|| "-".to_owned(), duration_ms)
    );
    let outcome = format!("{sym} {word:<9}");
    let used = display_width(&head) + display_width(&outcome) + display_width(&tail);
    Line::from(vec![
        Span::styled(head, selected_style(theme, selected, Role::Text)),
        Span::styled(outcome, selected_style(theme, selected, role)),
        Span::styled(tail, selected_style(theme, selected, Role::Text)),
        Span::styled(
            ellipsize(&input, width.saturating_sub(used)),
            selected_style(theme, selected, Role::Muted),
        ),
    ])
}

fn steps(frame: &mut Frame<'_>, area: Rect, state: &AppState, turn: &TurnView, theme: &Theme) {
    let title = format!(
        "Turn {} · steps (Enter opens a step, Esc back)",
        sanitize::line(&turn.request_id)
    );
    let block = frame_block(&title, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let muted = theme.style(Role::Muted);
    let mut lines = Vec::new();
    if let Some(r) = state
        .counts
        .as_ref()
        .and_then(|c| c.recent.iter().find(|r| r.request_id == turn.request_id))
    {
        let (sym, role, word) = outcome_look(&r.outcome);
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{}/{} · session {} · ",
                    sanitize::line(&r.agent_id),
                    sanitize::line(&r.agent_alias_id),
                    sanitize::line(&r.session_id)
                ),
                theme.style(Role::Text),
            ),
            Span::styled(format!("{sym} {word}"), theme.style(role)),
            Span::styled(
                format!(
                    " · {} · tokens {}/{}",
                    r.latency_ms.map_or_else(|| "-".to_owned(), duration_ms),
                    r.input_tokens,
                    r.output_tokens
                ),
                theme.style(Role::Text),
            ),
        ]));
    }
    let steps = match &turn.steps {
        None => {
            lines.push(Line::styled("loading…", muted));
            frame.render_widget(Paragraph::new(lines), inner);
            return;
        }
        Some(Err(e)) => {
            lines.push(Line::styled(
                format!("✗ {}", sanitize::line(e)),
                theme.style(Role::AlertError),
            ));
            frame.render_widget(Paragraph::new(lines), inner);
            return;
        }
        Some(Ok(s)) => s,
    };
    lines.push(Line::default());
    if steps.is_empty() {
        lines.push(Line::styled(
            "No reasoning steps recorded for this turn.",
            muted,
        ));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let width = usize::from(inner.width);
    let bar_width = (width / 5).clamp(8, 30);
    let slowest = steps
        .iter()
        .filter_map(|s| s.figures.duration_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    lines.push(Line::styled(
        format!(
            " {:>4} {:<34} {:>8} {:>11} {:<bar_width$}  RATIONALE",
            "STEP", "KINDS", "DURATION", "TOKENS", "TIME"
        ),
        muted,
    ));
    let room = usize::from(inner.height).saturating_sub(lines.len());
    let selected = turn.selected.min(steps.len() - 1);
    let start = window_start(selected, room);
    for (i, s) in steps.iter().enumerate().skip(start).take(room) {
        lines.push(step_line(
            s,
            i == selected,
            slowest,
            bar_width,
            width,
            theme,
        ));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn step_line(
    s: &StepRow,
    selected: bool,
    slowest: i64,
    bar_width: usize,
    width: usize,
    theme: &Theme,
) -> Line<'static> {
    let filled = s.figures.duration_ms.map_or(0, |d| {
        let share = d.max(0) as f64 / slowest as f64;
        ((share * bar_width as f64).round() as usize).clamp(usize::from(d > 0), bar_width)
    });
    let bar = format!("{}{}", "█".repeat(filled), "·".repeat(bar_width - filled));
    let head = format!(
        "{}{:>4} {:<34} {:>8} {:>11} ",
        if selected { "▌" } else { " " },
        s.step,
        ellipsize(&sanitize::line(&s.kinds), 34),
        s.figures.duration_ms.map_or_else(
            || "-".to_owned(),
            |d| duration_ms(u64::try_from(d).unwrap_or(0))
        ),
        format!("{}/{}", s.figures.input_tokens, s.figures.output_tokens),
    );
    let rationale = s
        .rationale
        .as_deref()
        .map(|r| sanitize::line(r).into_owned())
        .unwrap_or_default();
    let used = display_width(&head) + bar_width + 2;
    Line::from(vec![
        Span::styled(head, selected_style(theme, selected, Role::Text)),
        Span::styled(bar, selected_style(theme, selected, Role::Chart1)),
        Span::styled("  ".to_owned(), selected_style(theme, selected, Role::Text)),
        Span::styled(
            ellipsize(&rationale, width.saturating_sub(used)),
            selected_style(theme, selected, Role::Muted),
        ),
    ])
}

/// The events of a step, each with its raw JSON pretty-printed and sanitised, wrapped whole.
fn events(
    frame: &mut Frame<'_>,
    area: Rect,
    turn: &TurnView,
    step: &StepView,
    theme: &Theme,
) -> u16 {
    let title = format!(
        "Turn {} · step {} · events and raw JSON (PgUp/PgDn scroll, Esc back)",
        sanitize::line(&turn.request_id),
        step.step
    );
    let block = frame_block(&title, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width).max(1);
    let mut lines: Vec<Line<'static>> = Vec::new();
    match &step.events {
        None => lines.push(Line::styled("loading…", theme.style(Role::Muted))),
        Some(Err(e)) => lines.push(Line::styled(
            format!("✗ {}", sanitize::line(e)),
            theme.style(Role::AlertError),
        )),
        Some(Ok(events)) => {
            for e in events {
                let head = format!(
                    "#{} {} {}  {}",
                    e.seq,
                    sanitize::line(&e.kind),
                    e.event_time
                        .as_deref()
                        .map(sanitize::line)
                        .unwrap_or_default(),
                    sanitize::line(&e.summary)
                );
                for part in wrap(&head, width) {
                    lines.push(Line::styled(part, theme.style(Role::Title)));
                }
                let pretty = serde_json::to_string_pretty(&e.raw).unwrap_or_default();
                for part in wrap(&sanitize::block(&pretty), width) {
                    lines.push(Line::styled(part, theme.style(Role::Text)));
                }
                lines.push(Line::default());
            }
        }
    }
    let height = usize::from(inner.height);
    let max_scroll = lines.len().saturating_sub(height);
    let scroll = usize::from(step.scroll).min(max_scroll);
    let visible: Vec<Line<'static>> = lines.into_iter().skip(scroll).take(height).collect();
    frame.render_widget(Paragraph::new(visible), inner);
    u16::try_from(max_scroll).unwrap_or(u16::MAX)
}
