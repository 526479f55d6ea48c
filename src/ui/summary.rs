//! The traces and metrics panes as they stand before their full versions: what the store really
//! holds, counted, and nothing invented.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Paragraph};

use super::format::{duration_ms, status_role, status_symbol, tier_label, tier_role};
use super::text::ellipsize;
use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::domain::sanitize;
use crate::store::StoreCounts;

pub(super) fn frame_block(title: &str, theme: &Theme) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(Role::BorderFocused))
        .title(Span::styled(format!(" {title} "), theme.style(Role::Title)))
}

fn row(label: &str, value: String, theme: &Theme, style: Style) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("  {label:<28}"), theme.style(Role::Muted)),
        Span::styled(value, style),
    ])
}

pub(super) fn loading(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let text = state.store_error.as_ref().map_or_else(
        || "loading…".to_owned(),
        |e| format!("✗ {}", sanitize::line(e)),
    );
    frame.render_widget(Paragraph::new(text).style(theme.style(Role::Muted)), area);
}

pub fn metrics(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let block = frame_block("Metrics · from the store", theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(c) = &state.counts else {
        return loading(frame, inner, state, theme);
    };
    // The figures need about 60 columns; the chart only gets what is left beside them.
    if inner.width < 100 {
        frame.render_widget(Paragraph::new(metric_lines(c, theme)), inner);
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Length(62), Constraint::Min(20)]).areas(inner);
    frame.render_widget(Paragraph::new(metric_lines(c, theme)), left);
    let bars: Vec<Bar<'static>> = c
        .by_tier_open
        .iter()
        .map(|(tier, n)| {
            Bar::default()
                .value(*n)
                .label(Line::from(tier_label(*tier, true)))
                .style(theme.style(tier_role(*tier)))
        })
        .collect();
    let chart = BarChart::default()
        .block(Block::default().title(Span::styled("open by tier", theme.style(Role::Muted))))
        .data(BarGroup::default().bars(&bars))
        .bar_width(8)
        .bar_gap(1);
    frame.render_widget(chart, right);
}

fn metric_lines(c: &StoreCounts, theme: &Theme) -> Vec<Line<'static>> {
    let text = theme.style(Role::Text);
    let mut lines = vec![Line::styled("Human in the loop", theme.style(Role::Title))];
    lines.push(row(
        "requests (all time)",
        c.requests.to_string(),
        theme,
        text,
    ));
    for (status, n) in &c.by_status {
        lines.push(row(
            &format!("{} {status}", status_symbol(*status)),
            n.to_string(),
            theme,
            theme.style(status_role(*status)),
        ));
    }
    lines.push(row(
        "decisions recorded",
        c.decisions.to_string(),
        theme,
        text,
    ));
    let rate = if c.confirms + c.denies > 0 {
        format!(
            "{:.1}% ({} of {})",
            100.0 * c.confirms as f64 / (c.confirms + c.denies) as f64,
            c.confirms,
            c.confirms + c.denies
        )
    } else {
        "no decisions yet".to_owned()
    };
    lines.push(row("approval rate", rate, theme, text));
    lines.push(row(
        "median time to decision",
        c.median_time_to_decision_ms
            .map_or_else(|| "no decisions yet".to_owned(), duration_ms),
        theme,
        text,
    ));
    lines.push(row(
        "audit entries",
        c.audit_entries.to_string(),
        theme,
        text,
    ));
    lines.push(Line::default());
    lines.push(Line::styled("Agents", theme.style(Role::Title)));
    lines.push(row(
        "turns recorded",
        c.invocations.to_string(),
        theme,
        text,
    ));
    for (outcome, n) in &c.invocations_by_outcome {
        lines.push(row(&format!("  {outcome}"), n.to_string(), theme, text));
    }
    lines.push(row(
        "tokens in / out",
        format!("{} / {}", c.input_tokens, c.output_tokens),
        theme,
        text,
    ));
    for (state_name, n) in &c.outbox_by_state {
        lines.push(row(
            &format!("resumes {state_name}"),
            n.to_string(),
            theme,
            text,
        ));
    }
    lines.push(Line::default());
    lines.push(Line::styled(
        "Decisions per reviewer",
        theme.style(Role::Title),
    ));
    if c.reviewers.is_empty() {
        lines.push(Line::styled("  (none yet)", theme.style(Role::Muted)));
    }
    for (who, n) in &c.reviewers {
        lines.push(row(
            &ellipsize(&sanitize::line(who), 26),
            n.to_string(),
            theme,
            text,
        ));
    }
    lines
}
