//! The metrics pane: each figure with its value, its objective (breaches marked with a symbol
//! and a word, not colour alone) and its trend over the window as a sparkline; the end-to-end
//! latency histogram; tokens and cost per model, approval rate per action, reviewers and
//! possible rubber-stamps. Every figure is the engine's snapshot: nothing is invented, and a
//! figure with no data shows "—" with the reason.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Paragraph, Sparkline, SparklineBar};

use super::format::duration_ms;
use super::summary::{frame_block, loading};
use super::text::ellipsize;
use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::domain::metrics::{Filter, Metric, Objective, Snapshot, Unit};
use crate::domain::sanitize;

/// What each figure means, for the help screen on this pane (README says the same).
pub const DEFINITIONS: [&str; 9] = [
    "task completion: finished calls that ended with a final response, over all finished calls; \
     failures, exceptions and returns of control that expired or whose resume failed count as \
     not completed; running and waiting calls are left out; a resumed call hands its task on",
    "action accuracy: actions judged appropriate over actions judged: reviewer decisions \
     (approve = appropriate) and engineers' step marks (agentdeck traces mark)",
    "latency: per call, end to end = the call plus any wait for a human; model time and tool \
     time from the trace's metadata; human wait = return of control to final decision",
    "percentiles: nearest rank over an HDR histogram (within 1%; exact below 256 ms)",
    "tokens and cost: trace usage; cost from [prices], \"no price\" for a model not listed",
    "human side: queue depth now and at each bar's end; time to decision = raised to final \
     decision; expired undecided; approval rate; decisions and median dwell per reviewer",
    "possible rubber-stamp: an approval of a [metrics] rubber_stamp_tier request or riskier \
     with a dwell under rubber_stamp_secs",
    "windows: 15m and 1h in minute bars, 24h and 7d in hour bars (the current bar and those \
     before it); a model filter leaves out the human side (requests carry no model)",
    "objectives: [metrics.objectives]; ✗ BREACH marks a figure past its objective, ✓ ok one within",
];

/// Milliseconds as the panes write durations.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn ms_text(ms: f64) -> String {
    duration_ms(ms.max(0.0).round() as u64)
}

fn number(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ratio => format!("{:.1}%", v * 100.0),
        Unit::Milliseconds => ms_text(v),
        Unit::Count => format!("{v:.0}"),
        Unit::Tokens if v.fract() == 0.0 => format!("{v:.0}"),
        Unit::Tokens => format!("{v:.1}"),
        Unit::Usd => format!("${v:.4}"),
    }
}

/// A metric's value, or "—" with the reason there is none.
pub fn metric_value(m: &Metric) -> String {
    match (m.value, &m.missing) {
        (Some(v), _) => number(v, m.unit),
        (None, Some(why)) => format!("— ({why})"),
        (None, None) => "—".to_owned(),
    }
}

/// The objective and how the value stands against it: `✓ ok`, `✗ BREACH`, or nothing.
pub fn objective_text(m: &Metric) -> String {
    let Some(o) = m.objective else {
        return String::new();
    };
    let target = match o {
        Objective::AtLeast(t) => format!("≥ {}", number(t, m.unit)),
        Objective::AtMost(t) => format!("≤ {}", number(t, m.unit)),
    };
    match (m.value, m.breached) {
        (None, _) => format!("({target})"),
        (Some(_), true) => format!("✗ BREACH {target}"),
        (Some(_), false) => format!("✓ ok {target}"),
    }
}

/// The rows the pane shows: a label and the metric ids it combines (percentiles side by side).
const ROWS: [(&str, &[&str]); 14] = [
    ("task completion", &["task_completion_rate"]),
    ("action accuracy", &["action_accuracy"]),
    (
        "latency P50/P95/P99",
        &["latency_p50", "latency_p95", "latency_p99"],
    ),
    (
        "  model time",
        &["model_time_p50", "model_time_p95", "model_time_p99"],
    ),
    (
        "  tool time",
        &["tool_time_p50", "tool_time_p95", "tool_time_p99"],
    ),
    (
        "  human wait",
        &["human_wait_p50", "human_wait_p95", "human_wait_p99"],
    ),
    ("invocations / in flight", &["invocations", "in_flight"]),
    ("tokens in / out", &["tokens_in", "tokens_out"]),
    ("cost", &["cost"]),
    ("queue depth", &["queue_depth"]),
    (
        "time to decision P50/P95",
        &["time_to_decision_p50", "time_to_decision_p95"],
    ),
    ("expired undecided", &["expired_undecided"]),
    ("approval rate", &["approval_rate"]),
    ("possible rubber-stamps", &["rubber_stamps"]),
];

fn filter_title(f: &Filter) -> String {
    let part = |name: &str, v: &Option<String>| {
        v.as_ref().map_or_else(
            || format!("all {name}s"),
            |v| format!("{name} {}", sanitize::line(v)),
        )
    };
    format!(
        "{} · {} · {}",
        part("agent", &f.agent),
        part("alias", &f.alias),
        part("model", &f.model)
    )
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let m = &state.metrics;
    let title = format!(
        "Metrics · last {} · {}",
        m.window.as_str(),
        filter_title(&m.filter)
    );
    let block = frame_block(
        &ellipsize(&title, usize::from(area.width.saturating_sub(4))),
        theme,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(snap) = &m.snapshot else {
        if let Some(e) = &m.error {
            let text = format!("✗ {}", sanitize::line(e));
            frame.render_widget(
                Paragraph::new(text).style(theme.style(Role::AlertError)),
                inner,
            );
            return;
        }
        return loading(frame, inner, state, theme);
    };
    let rows_height = u16::try_from(ROWS.len() + 1).unwrap_or(u16::MAX);
    if inner.width < 100 {
        let [top, bottom] =
            Layout::vertical([Constraint::Length(rows_height), Constraint::Min(0)]).areas(inner);
        figures(frame, top, snap, theme);
        histogram(frame, bottom, snap, theme);
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(inner);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(rows_height), Constraint::Min(0)]).areas(left);
    figures(frame, top, snap, theme);
    tables(frame, bottom, snap, theme);
    histogram(frame, right, snap, theme);
}

/// One line per row: label, value(s), objective, and the trend of the row's last figure.
fn figures(frame: &mut Frame<'_>, area: Rect, snap: &Snapshot, theme: &Theme) {
    let lines = Layout::vertical(vec![Constraint::Length(1); ROWS.len() + 1]).split(area);
    let head = Line::from(vec![
        Span::styled(format!("{:<26}", "figure"), theme.style(Role::Muted)),
        Span::styled(format!("{:<26}", "value"), theme.style(Role::Muted)),
        Span::styled(format!("{:<20}", "objective"), theme.style(Role::Muted)),
        Span::styled(
            format!("trend ({} per bar)", bucket_word(snap)),
            theme.style(Role::Muted),
        ),
    ]);
    if let Some(a) = lines.first() {
        frame.render_widget(Paragraph::new(head), *a);
    }
    for (i, (label, ids)) in ROWS.iter().enumerate() {
        let Some(line_area) = lines.get(i + 1).copied() else {
            break;
        };
        let metrics: Vec<&Metric> = ids.iter().filter_map(|id| snap.metric(id)).collect();
        let values: Vec<String> = metrics.iter().map(|m| metric_value(m)).collect();
        let value = if values.iter().all(|v| v.starts_with('—')) {
            values.first().cloned().unwrap_or_default()
        } else {
            values
                .iter()
                .map(|v| {
                    if v.starts_with('—') {
                        "—".to_owned()
                    } else {
                        v.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let breached = metrics.iter().find(|m| m.breached);
        let watched = breached.or_else(|| metrics.iter().find(|m| m.objective.is_some()));
        let (objective, style) = match watched {
            Some(m) if m.breached => (objective_text(m), theme.style(Role::AlertError)),
            Some(m) => (objective_text(m), theme.style(Role::VerdictApproved)),
            None => (String::new(), theme.style(Role::Muted)),
        };
        let [text_area, spark_area] =
            Layout::horizontal([Constraint::Length(72), Constraint::Min(0)]).areas(line_area);
        let text = Line::from(vec![
            Span::styled(format!("{label:<26}"), theme.style(Role::Text)),
            Span::styled(
                format!("{:<26}", ellipsize(&value, 25)),
                if value.starts_with('—') {
                    theme.style(Role::Muted)
                } else {
                    theme.style(Role::Text)
                },
            ),
            Span::styled(format!("{:<20}", ellipsize(&objective, 19)), style),
        ]);
        frame.render_widget(Paragraph::new(text), text_area);
        // The trend of the row's headline: its middle percentile, or its first figure.
        let trend_of = metrics.get(metrics.len() / 2).or(metrics.first());
        if let Some(m) = trend_of {
            sparkline(frame, spark_area, m, theme);
        }
    }
}

fn bucket_word(snap: &Snapshot) -> &'static str {
    if snap.bucket_ms >= crate::domain::metrics::HOUR_MS {
        "hour"
    } else {
        "minute"
    }
}

/// Ratios are drawn in tenths of a percent, times in milliseconds, money in hundredths of a
/// cent: the sparkline needs whole numbers. Buckets with no value are drawn as absent.
fn sparkline(frame: &mut Frame<'_>, area: Rect, m: &Metric, theme: &Theme) {
    if m.trend.is_empty() || area.width == 0 {
        return;
    }
    let scale = match m.unit {
        Unit::Ratio => 1000.0,
        Unit::Usd => 10_000.0,
        _ => 1.0,
    };
    // The newest buckets, as many as fit.
    let skip = m.trend.len().saturating_sub(usize::from(area.width));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bars: Vec<SparklineBar> = m.trend[skip..]
        .iter()
        .map(|v| SparklineBar::from(v.map(|v| (v * scale).max(0.0).round() as u64)))
        .collect();
    let style = if m.breached {
        theme.style(Role::AlertError)
    } else {
        theme.style(Role::Chart1)
    };
    frame.render_widget(
        Sparkline::default()
            .data(bars)
            .style(style)
            .absent_value_symbol("·")
            .absent_value_style(theme.style(Role::Muted)),
        area,
    );
}

fn histogram(frame: &mut Frame<'_>, area: Rect, snap: &Snapshot, theme: &Theme) {
    if area.height < 4 {
        return;
    }
    let total: u64 = snap.latency_histogram.iter().map(|b| b.count).sum();
    let title = if total == 0 {
        "end-to-end latency — (no settled invocations)".to_owned()
    } else {
        format!("end-to-end latency · {total} invocations")
    };
    let bars: Vec<Bar<'static>> = snap
        .latency_histogram
        .iter()
        .map(|b| {
            let label = b.up_to_ms.map_or_else(
                || "more".to_owned(),
                |ms| {
                    #[allow(clippy::cast_precision_loss)]
                    let t = ms_text(ms as f64);
                    format!("≤{}", t.replace(' ', ""))
                },
            );
            Bar::default()
                .value(b.count)
                .label(Line::from(label))
                .style(theme.style(Role::Chart2))
        })
        .collect();
    let width = u16::try_from(usize::from(area.width.saturating_sub(2)) / bars.len().max(1))
        .unwrap_or(1)
        .clamp(1, 7);
    let chart = BarChart::default()
        .block(Block::default().title(Span::styled(title, theme.style(Role::Muted))))
        .data(BarGroup::default().bars(&bars))
        .bar_width(width.saturating_sub(1).max(1))
        .bar_gap(1);
    frame.render_widget(chart, area);
}

fn tables(frame: &mut Frame<'_>, area: Rect, snap: &Snapshot, theme: &Theme) {
    let muted = theme.style(Role::Muted);
    let text = theme.style(Role::Text);
    let mut lines = vec![Line::styled(
        "tokens and cost per model",
        theme.style(Role::Title),
    )];
    if snap.models.is_empty() {
        lines.push(Line::styled("  — no settled invocations", muted));
    }
    for m in &snap.models {
        lines.push(Line::styled(
            format!(
                "  {:<40} {:>5} calls {:>9} in {:>9} out  {}",
                ellipsize(
                    &sanitize::line(m.model.as_deref().unwrap_or("(model unknown)")),
                    40
                ),
                m.invocations,
                m.input_tokens,
                m.output_tokens,
                m.cost_usd
                    .map_or_else(|| "no price".to_owned(), |c| format!("${c:.4}"))
            ),
            text,
        ));
    }
    lines.push(Line::styled(
        "approval rate per action",
        theme.style(Role::Title),
    ));
    if snap.actions.is_empty() {
        lines.push(Line::styled("  — no decisions", muted));
    }
    for a in &snap.actions {
        lines.push(Line::styled(
            format!(
                "  {:<40} {:>5.1}% ({} of {})",
                ellipsize(&sanitize::line(&a.action), 40),
                a.approval_rate * 100.0,
                a.confirms,
                a.decisions
            ),
            text,
        ));
    }
    lines.push(Line::styled(
        "reviewers: decisions · median dwell",
        theme.style(Role::Title),
    ));
    if snap.reviewers.is_empty() {
        lines.push(Line::styled("  — no decisions", muted));
    }
    for r in &snap.reviewers {
        lines.push(Line::styled(
            format!(
                "  {:<40} {:>5} · {}",
                ellipsize(&sanitize::line(&r.reviewer), 40),
                r.decisions,
                r.median_dwell_ms
                    .map_or_else(|| "— (no dwell recorded)".to_owned(), ms_text)
            ),
            text,
        ));
    }
    for s in &snap.rubber_stamps {
        lines.push(Line::styled(
            format!(
                "  ! possible rubber-stamp: {} approved {} {} in {}",
                ellipsize(&sanitize::line(&s.reviewer), 24),
                s.tier.word(),
                ellipsize(&sanitize::line(&s.action), 30),
                duration_ms(u64::try_from(s.dwell_ms).unwrap_or(0))
            ),
            theme.style(Role::AlertWarn),
        ));
    }
    frame.render_widget(Paragraph::new(lines).style(Style::default()), area);
}
