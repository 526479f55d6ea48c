//! The traces pane: sessions → invocations → reasoning steps (collaborators indented under the
//! call that invoked them) with durations, tokens and a waterfall bar so the slow step shows at
//! a glance → a step's events with their raw JSON. Drawn from the compact index
//! (`app::trace_index`); every list renders only its visible window, so a frame costs the same
//! at a thousand steps and at a million. Every string from an agent or model is sanitised.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::format::duration_ms;
use super::summary::frame_block;
use super::text::{display_width, ellipsize, wrap};
use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::app::state::{StepView, TurnView};
use crate::app::trace_index::{NONE, SessionState};
use crate::domain::sanitize;
use crate::domain::step_kind::{StepKinds, sections};
use crate::store::run::Outcome;

/// Renders the pane; returns the largest useful scroll of an open step.
pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) -> Option<u16> {
    let t = &state.traces;
    if let Some(turn) = &t.turn {
        if let Some(step) = &turn.step {
            return Some(events(frame, area, turn, step, theme));
        }
        steps(frame, area, state, turn, theme);
    } else if let Some(sv) = &t.session {
        invocations(frame, area, state, sv.session, sv.selected, theme);
    } else if let Some(results) = &t.results {
        found(frame, area, state, results, theme);
    } else {
        sessions(frame, area, state, theme);
    }
    None
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

fn outcome_look(outcome: Outcome) -> (&'static str, Role, &'static str) {
    match outcome {
        Outcome::Finished => ("✓", Role::VerdictApproved, "finished"),
        Outcome::Failed => ("✗", Role::AlertError, "failed"),
        Outcome::Exception => ("✗", Role::AlertError, "exception"),
        Outcome::WaitingForHuman => ("◐", Role::VerdictPending, "waiting"),
        Outcome::Running => ("…", Role::Accent, "running"),
    }
}

fn state_look(s: SessionState) -> (&'static str, Role) {
    match s {
        SessionState::Finished => ("✓", Role::VerdictApproved),
        SessionState::Failed => ("✗", Role::AlertError),
        SessionState::WaitingForHuman => ("◐", Role::VerdictPending),
        SessionState::Running => ("…", Role::Accent),
    }
}

fn latency(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |d| duration_ms(u64::try_from(d).unwrap_or(0)),
    )
}

fn hms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The line under a title: follow mode, the filter being typed or applied, a search running.
fn status_line(state: &AppState, theme: &Theme) -> Line<'static> {
    let t = &state.traces;
    let mut spans = Vec::new();
    if t.follow {
        spans.push(Span::styled(
            "● FOLLOWING  ".to_owned(),
            theme.style(Role::Accent),
        ));
    }
    if t.filter_editing {
        spans.push(Span::styled(
            "filter/search: ".to_owned(),
            theme.style(Role::KeyHint),
        ));
        spans.push(Span::styled(
            format!("{}▏", sanitize::line(&t.filter_line)),
            theme.style(Role::Text),
        ));
        spans.push(Span::styled(
            "  (agent: alias: session: kind: failed waiting, words search all text; Enter applies)"
                .to_owned(),
            theme.style(Role::Muted),
        ));
    } else if !t.filter_line.is_empty() {
        spans.push(Span::styled(
            format!("filter: {}", sanitize::line(&t.filter_line)),
            theme.style(Role::KeyHint),
        ));
        if t.searching {
            spans.push(Span::styled(
                " · searching…".to_owned(),
                theme.style(Role::Muted),
            ));
        }
    }
    let n = t.index.steps.len();
    spans.push(Span::styled(
        format!(
            "{}{} sessions · {} invocations · {n} steps indexed",
            if spans.is_empty() { "" } else { "  ·  " },
            t.index.sessions.len(),
            t.index.invocations.len()
        ),
        theme.style(Role::Muted),
    ));
    Line::from(spans)
}

fn sessions(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let block = frame_block(
        "Traces · sessions (Enter opens, / filters and searches, f follows)",
        theme,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let t = &state.traces;
    let ix = &t.index;
    let muted = theme.style(Role::Muted);
    let width = usize::from(inner.width);
    let mut lines = vec![status_line(state, theme), Line::default()];
    if ix.recent.is_empty() {
        let text = if t.index_loading {
            "reading the traces…"
        } else {
            "No agent sessions recorded yet: `agentdeck invoke`, `agentdeck demo` and \
             `agentdeck import` record them here."
        };
        lines.push(Line::styled(text, muted));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let narrow = width < 110;
    lines.push(Line::styled(
        format!(
            " {:<10} {:<22} {:<18} {:<8} {:>5} {:>7} {:>15} {:>8}",
            "STATE",
            "AGENT/ALIAS",
            "SESSION",
            "STARTED",
            "CALLS",
            "STEPS",
            "TOKENS IN/OUT",
            "LATENCY"
        ),
        muted,
    ));
    let room = usize::from(inner.height).saturating_sub(lines.len());
    let selected = t.selected.min(ix.recent.len() - 1);
    let start = window_start(selected, room);
    for (i, sid) in ix.recent.iter().enumerate().skip(start).take(room) {
        let s = &ix.sessions[*sid as usize];
        let sel = i == selected;
        let (sym, role) = state_look(ix.session_state(s));
        let (steps, tin, tout, lat) = ix.session_totals(s);
        let agent = format!(
            "{}/{}",
            sanitize::line(ix.names.name(s.agent)),
            sanitize::line(ix.names.name(s.alias))
        );
        let head = if sel { "▌" } else { " " }.to_owned();
        let state_word = format!("{sym} {:<8}", ix.session_state(s).word());
        let rest = format!(
            " {:<22} {:<18} {:<8} {:>5} {:>7} {:>15} {:>8}",
            ellipsize(&agent, 22),
            ellipsize(&sanitize::line(ix.names.name(s.session)), 18),
            hms(s.first_ms),
            s.invocations.len(),
            steps,
            format!("{tin}/{tout}"),
            latency(Some(lat)),
        );
        let rest = if narrow {
            ellipsize(&rest, width.saturating_sub(11))
        } else {
            rest
        };
        lines.push(Line::from(vec![
            Span::styled(head, selected_style(theme, sel, Role::Text)),
            Span::styled(state_word, selected_style(theme, sel, role)),
            Span::styled(rest, selected_style(theme, sel, Role::Text)),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn invocations(
    frame: &mut Frame<'_>,
    area: Rect,
    state: &AppState,
    session: u32,
    selected: usize,
    theme: &Theme,
) {
    let ix = &state.traces.index;
    let s = &ix.sessions[session as usize];
    let title = format!(
        "Session {} · {}/{} · invocations (Enter opens, Esc back)",
        sanitize::line(ix.names.name(s.session)),
        sanitize::line(ix.names.name(s.agent)),
        sanitize::line(ix.names.name(s.alias)),
    );
    let block = frame_block(&title, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let mut lines = vec![status_line(state, theme), Line::default()];
    lines.push(Line::styled(
        format!(
            " {:<8} {:<11} {:>7} {:>15} {:>8}  REQUEST",
            "STARTED", "OUTCOME", "STEPS", "TOKENS IN/OUT", "LATENCY"
        ),
        theme.style(Role::Muted),
    ));
    let room = usize::from(inner.height).saturating_sub(lines.len());
    let selected = selected.min(s.invocations.len().saturating_sub(1));
    let start = window_start(selected, room);
    for (i, inv) in s.invocations.iter().enumerate().skip(start).take(room) {
        let inv = &ix.invocations[*inv as usize];
        let sel = i == selected;
        let (sym, role, word) = outcome_look(inv.outcome);
        let head = format!("{}{:<8} ", if sel { "▌" } else { " " }, hms(inv.started_ms));
        let tail = format!(
            " {:>7} {:>15} {:>8}  ",
            inv.steps.len(),
            format!("{}/{}", inv.input_tokens, inv.output_tokens),
            latency(inv.latency_ms)
        );
        let what = match inv.resumes {
            Some(r) => format!(
                "{} ↩ resumes {}",
                sanitize::line(ix.names.name(inv.request)),
                sanitize::line(ix.names.name(r))
            ),
            None => sanitize::line(ix.names.name(inv.request)).into_owned(),
        };
        let outcome = format!("{sym} {word:<9}");
        let used = display_width(&head) + display_width(&outcome) + display_width(&tail);
        lines.push(Line::from(vec![
            Span::styled(head, selected_style(theme, sel, Role::Text)),
            Span::styled(outcome, selected_style(theme, sel, role)),
            Span::styled(tail, selected_style(theme, sel, Role::Text)),
            Span::styled(
                ellipsize(&what, width.saturating_sub(used)),
                selected_style(theme, sel, Role::Muted),
            ),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The kinds of a step, short, for a column.
fn kind_label(kinds: StepKinds) -> String {
    let names: Vec<&str> = kinds.short_names().collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

/// The steps the filter found, across sessions.
fn found(frame: &mut Frame<'_>, area: Rect, state: &AppState, results: &[u32], theme: &Theme) {
    let block = frame_block(
        &format!(
            "Traces · {} steps found (Enter opens, Esc clears the filter)",
            results.len()
        ),
        theme,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let ix = &state.traces.index;
    let width = usize::from(inner.width);
    let mut lines = vec![status_line(state, theme), Line::default()];
    if results.is_empty() {
        lines.push(Line::styled(
            "No step passes the filter.",
            theme.style(Role::Muted),
        ));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    lines.push(Line::styled(
        format!(
            " {:<18} {:<22} {:>5} {:>8} {:>11}  KINDS",
            "SESSION", "REQUEST", "STEP", "DURATION", "TOKENS"
        ),
        theme.style(Role::Muted),
    ));
    let room = usize::from(inner.height).saturating_sub(lines.len());
    let selected = state.traces.selected.min(results.len() - 1);
    let start = window_start(selected, room);
    for (i, pos) in results.iter().enumerate().skip(start).take(room) {
        let p = *pos as usize;
        let inv = &ix.invocations[ix.steps.invocation[p] as usize];
        let session = &ix.sessions[inv.session as usize];
        let sel = i == selected;
        let d = ix.steps.duration_ms[p];
        let head = format!(
            "{}{:<18} {:<22} {:>5} {:>8} {:>11}  ",
            if sel { "▌" } else { " " },
            ellipsize(&sanitize::line(ix.names.name(session.session)), 18),
            ellipsize(&sanitize::line(ix.names.name(inv.request)), 22),
            ix.steps.number[p],
            if d == NONE {
                "-".to_owned()
            } else {
                duration_ms(u64::from(d))
            },
            format!("{}/{}", ix.steps.tokens_in[p], ix.steps.tokens_out[p]),
        );
        let used = display_width(&head);
        lines.push(Line::from(vec![
            Span::styled(head, selected_style(theme, sel, Role::Text)),
            Span::styled(
                ellipsize(&kind_label(ix.step_kinds(p)), width.saturating_sub(used)),
                selected_style(theme, sel, Role::Muted),
            ),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn steps(frame: &mut Frame<'_>, area: Rect, state: &AppState, turn: &TurnView, theme: &Theme) {
    let ix = &state.traces.index;
    let Some(inv) = ix.invocations.get(turn.invocation as usize) else {
        return;
    };
    let session = &ix.sessions[inv.session as usize];
    let title = format!(
        "Invocation {} · steps (Enter opens a step, Esc back)",
        sanitize::line(&turn.request_id)
    );
    let block = frame_block(&title, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let muted = theme.style(Role::Muted);
    let (sym, role, word) = outcome_look(inv.outcome);
    let mut lines = vec![
        status_line(state, theme),
        Line::from(vec![
            Span::styled(
                format!(
                    "{}/{} · session {} · ",
                    sanitize::line(ix.names.name(session.agent)),
                    sanitize::line(ix.names.name(session.alias)),
                    sanitize::line(ix.names.name(session.session))
                ),
                theme.style(Role::Text),
            ),
            Span::styled(format!("{sym} {word}"), theme.style(role)),
            Span::styled(
                format!(
                    " · {} · tokens {}/{}",
                    latency(inv.latency_ms),
                    inv.input_tokens,
                    inv.output_tokens
                ),
                theme.style(Role::Text),
            ),
        ]),
    ];
    if let Some(Err(e)) = &turn.steps {
        lines.push(Line::styled(
            format!("✗ {}", sanitize::line(e)),
            theme.style(Role::AlertError),
        ));
    }
    lines.push(Line::default());
    if inv.steps.is_empty() {
        lines.push(Line::styled("No reasoning steps recorded yet.", muted));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let width = usize::from(inner.width);
    let bar_width = (width / 5).clamp(8, 30);
    lines.push(Line::styled(
        format!(
            " {:>5} {:<30} {:>8} {:>11} {:<bar_width$}  RATIONALE",
            "STEP", "KINDS", "DURATION", "TOKENS", "WATERFALL"
        ),
        muted,
    ));
    let room = usize::from(inner.height).saturating_sub(lines.len());
    let selected = turn.selected.min(inv.steps.len() - 1);
    let start = window_start(selected, room);
    let rows = match &turn.steps {
        Some(Ok(rows)) => rows.as_slice(),
        _ => &[],
    };
    let span = inv.span_ms.max(1);
    for (i, pos) in inv.steps.iter().enumerate().skip(start).take(room) {
        let sel = i == selected;
        if *pos == NONE {
            lines.push(Line::styled(format!(" {:>5} (not read yet)", i + 1), muted));
            continue;
        }
        let p = *pos as usize;
        let n = u64::from(ix.steps.number[p]);
        let rationale = n
            .checked_sub(turn.rows_from + 1)
            .and_then(|k| usize::try_from(k).ok())
            .and_then(|k| rows.get(k))
            .filter(|r| r.step == n)
            .and_then(|r| r.rationale.as_deref())
            .map(|r| sanitize::line(r).into_owned())
            .unwrap_or_default();
        let d = ix.steps.duration_ms[p];
        let depth = usize::from(ix.steps.depth[p]).min(4);
        let kinds = format!("{}{}", "  ".repeat(depth), kind_label(ix.step_kinds(p)));
        let head = format!(
            "{}{:>5} {:<30} {:>8} {:>11} ",
            if sel { "▌" } else { " " },
            n,
            ellipsize(&kinds, 30),
            if d == NONE {
                "-".to_owned()
            } else {
                duration_ms(u64::from(d))
            },
            format!("{}/{}", ix.steps.tokens_in[p], ix.steps.tokens_out[p]),
        );
        let bar = waterfall(ix.steps.start_ms[p], d, span, bar_width);
        let role = if ix.step_kinds(p).contains(StepKinds::FAILURE) {
            Role::AlertError
        } else {
            Role::Chart1
        };
        let used = display_width(&head) + bar_width + 2;
        lines.push(Line::from(vec![
            Span::styled(head, selected_style(theme, sel, Role::Text)),
            Span::styled(bar, selected_style(theme, sel, role)),
            Span::styled("  ".to_owned(), selected_style(theme, sel, Role::Text)),
            Span::styled(
                ellipsize(&rationale, width.saturating_sub(used)),
                selected_style(theme, sel, Role::Muted),
            ),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// A waterfall bar: blank up to the step's start, filled for its duration, on the invocation's
/// time axis (`span` ms wide). A step with no known start is drawn from the left.
pub fn waterfall(start_ms: u32, duration: u32, span: u32, width: usize) -> String {
    let scale = |ms: u32| -> usize {
        let share = f64::from(ms.min(span)) / f64::from(span.max(1));
        (share * width as f64).round() as usize
    };
    let offset = if start_ms == NONE {
        0
    } else {
        scale(start_ms).min(width)
    };
    let filled = if duration == NONE {
        0
    } else {
        scale(duration).clamp(usize::from(duration > 0), width - offset.min(width))
    };
    let offset = offset.min(width - filled);
    format!(
        "{}{}{}",
        "·".repeat(offset),
        "█".repeat(filled),
        "·".repeat(width - offset - filled)
    )
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
            // What each event says first, readable and whole; then the raw JSON of them all.
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
                for (label, text) in sections(&e.event()) {
                    lines.push(Line::styled(
                        format!("{label}:"),
                        theme.style(Role::KeyHint),
                    ));
                    for part in wrap(&sanitize::block(&text), width.saturating_sub(2).max(1)) {
                        lines.push(Line::styled(format!("  {part}"), theme.style(Role::Text)));
                    }
                }
            }
            for e in events {
                lines.push(Line::default());
                lines.push(Line::styled(
                    format!("raw JSON of #{}:", e.seq),
                    theme.style(Role::KeyHint),
                ));
                let pretty = serde_json::to_string_pretty(&e.raw).unwrap_or_default();
                for raw_line in sanitize::block(&pretty).lines() {
                    let mut in_string = false;
                    for part in wrap(raw_line, width) {
                        lines.push(json_line(&part, &mut in_string, theme));
                    }
                }
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

/// One line of pretty-printed JSON, coloured: keys, strings, numbers and literals, punctuation.
/// `in_string` carries an open string over to the next piece of a wrapped line.
fn json_line(line: &str, in_string: &mut bool, theme: &Theme) -> Line<'static> {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Str,
        Lit,
        Punct,
    }
    let mut toks: Vec<(Tok, String)> = Vec::new();
    let mut escaped = false;
    for c in line.chars() {
        let kind = if *in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                *in_string = false;
            }
            Tok::Str
        } else if c == '"' {
            *in_string = true;
            // A new string starts a new token even right after another.
            toks.push((Tok::Str, String::new()));
            if let Some(last) = toks.last_mut() {
                last.1.push(c);
            }
            continue;
        } else if c.is_alphanumeric() || c == '-' || c == '.' || c == '+' {
            Tok::Lit
        } else {
            Tok::Punct
        };
        match toks.last_mut() {
            Some((k, text)) if *k == kind => text.push(c),
            _ => toks.push((kind, c.to_string())),
        }
    }
    let spans = toks
        .iter()
        .enumerate()
        .map(|(i, (k, text))| {
            let role = match k {
                Tok::Str => {
                    let is_key = toks.get(i + 1).is_some_and(|(k2, t2)| {
                        *k2 == Tok::Punct && t2.trim_start().starts_with(':')
                    });
                    if is_key {
                        Role::Accent
                    } else {
                        Role::VerdictApproved
                    }
                }
                Tok::Lit => Role::Chart2,
                Tok::Punct => Role::Muted,
            };
            Span::styled(text.clone(), theme.style(role))
        })
        .collect::<Vec<_>>();
    Line::from(spans)
}
