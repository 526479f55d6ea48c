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
use crate::app::state::BedrockView;
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
    let part = |name: &str, all: &str, v: &Option<String>| {
        v.as_ref().map_or_else(
            || all.to_owned(),
            |v| format!("{name} {}", sanitize::line(v)),
        )
    };
    format!(
        "{} · {} · {}",
        part("agent", "all agents", &f.agent),
        part("alias", "all aliases", &f.alias),
        part("model", "all models", &f.model)
    )
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let m = &state.metrics;
    let title = format!(
        "Metrics · last {} (one trend bar per {}) · {}",
        m.window.as_str(),
        bucket_word(m.window),
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
    let [top, bottom] =
        Layout::vertical([Constraint::Length(rows_height), Constraint::Min(0)]).areas(inner);
    figures(frame, top, snap, theme);
    if inner.width < 100 {
        histogram(frame, bottom, snap, theme);
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Min(60), Constraint::Length(38)]).areas(bottom);
    tables(frame, left, snap, (&m.bedrock, m.bedrock_window), theme);
    histogram(frame, right, snap, theme);
}

/// One line per row: label, value(s), objective, and the trend of the row's last figure.
fn figures(frame: &mut Frame<'_>, area: Rect, snap: &Snapshot, theme: &Theme) {
    let lines = Layout::vertical(vec![Constraint::Length(1); ROWS.len() + 1]).split(area);
    let head = Line::from(vec![
        Span::styled(format!("{:<25}", "figure"), theme.style(Role::Muted)),
        Span::styled(format!("{:<25}", "value"), theme.style(Role::Muted)),
        Span::styled(format!("{:<20}", "objective"), theme.style(Role::Muted)),
        Span::styled("trend".to_owned(), theme.style(Role::Muted)),
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
            Layout::horizontal([Constraint::Length(70), Constraint::Min(0)]).areas(line_area);
        let text = Line::from(vec![
            Span::styled(format!("{label:<25}"), theme.style(Role::Text)),
            Span::styled(
                format!("{:<25}", ellipsize(&value, 24)),
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
        let trend_of = if metrics.len() == 3 {
            metrics.get(1)
        } else {
            metrics.first()
        };
        if let Some(m) = trend_of {
            sparkline(frame, spark_area, m, theme);
        }
    }
}

fn bucket_word(w: crate::domain::metrics::Window) -> &'static str {
    if w.bucket_ms() >= crate::domain::metrics::HOUR_MS {
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
    let total: u64 = snap.latency_histogram.iter().map(|b| b.count).sum();
    let title = if total == 0 {
        "end-to-end latency: no calls".to_owned()
    } else {
        format!("end-to-end latency · {total} calls")
    };
    let n = snap.latency_histogram.len();
    let horizontal = usize::from(area.height) > n;
    // Upright bars need room for whole labels (`≤100ms` is six columns): never cut one.
    if area.height < 3 || (!horizontal && usize::from(area.width) < n * 7) {
        if area.height > 0 {
            frame.render_widget(
                Paragraph::new(Line::styled(
                    format!("{title} (a larger terminal shows the histogram)"),
                    theme.style(Role::Muted),
                )),
                area,
            );
        }
        return;
    }
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
            let label = if horizontal {
                format!("{label:>7}")
            } else {
                label
            };
            Bar::default()
                .value(b.count)
                .label(Line::from(label))
                .style(theme.style(Role::Chart2))
        })
        .collect();
    let chart = BarChart::default()
        .block(Block::default().title(Span::styled(title, theme.style(Role::Muted))))
        .data(BarGroup::default().bars(&bars));
    let chart = if horizontal {
        chart
            .direction(ratatui::layout::Direction::Horizontal)
            .bar_width(1)
            .bar_gap(0)
    } else {
        chart.bar_width(6).bar_gap(1)
    };
    frame.render_widget(chart, area);
}

/// Bedrock's own figures per alias from CloudWatch, beside ours.
fn bedrock_lines(
    lines: &mut Vec<Line<'static>>,
    (bedrock, window): (&BedrockView, crate::domain::metrics::Window),
    width: usize,
    theme: &Theme,
) {
    let muted = theme.style(Role::Muted);
    let title = theme.style(Role::Title);
    let figures = match bedrock {
        BedrockView::NotConfigured => {
            lines.push(Line::styled(
                "Bedrock (CloudWatch): not configured (--cloudwatch-endpoint)",
                muted,
            ));
            return;
        }
        BedrockView::Loading => {
            lines.push(Line::styled("Bedrock (CloudWatch): reading…", muted));
            return;
        }
        BedrockView::Failed(e) => {
            lines.push(Line::styled(
                ellipsize(
                    &format!("Bedrock (CloudWatch): ✗ {}", sanitize::line(e)),
                    width,
                ),
                theme.style(Role::AlertError),
            ));
            return;
        }
        BedrockView::Loaded(f) => f,
    };
    lines.push(Line::styled(
        format!("Bedrock (CloudWatch, last {})", window.as_str()),
        title,
    ));
    if figures.is_empty() {
        lines.push(Line::styled("  — no AWS/Bedrock/Agents metrics", muted));
        return;
    }
    let name = width.saturating_sub(47).clamp(12, 40);
    let row = |cells: [&str; 6]| {
        format!(
            "  {:<name$} {:>5} {:>11} {:>15} {:>4} {:>5}",
            ellipsize(cells[0], name),
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5]
        )
    };
    lines.push(Line::styled(
        ellipsize(
            &row([
                "agent/alias",
                "calls",
                "avg/p95 ms",
                "tokens in/out",
                "err",
                "throt",
            ]),
            width,
        ),
        muted,
    ));
    let ms = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0}"));
    for f in figures {
        let who = format!("{}/{}", f.agent_id, f.alias_id);
        let who = sanitize::line(&who);
        let line = row([
            &who,
            &f.invocations.to_string(),
            &format!("{}/{}", ms(f.total_time_avg_ms), ms(f.total_time_p95_ms)),
            &format!("{}/{}", f.input_tokens, f.output_tokens),
            &(f.client_errors + f.server_errors).to_string(),
            &f.throttles.to_string(),
        ]);
        lines.push(Line::styled(
            ellipsize(&line, width),
            theme.style(Role::Text),
        ));
    }
}

fn tables(
    frame: &mut Frame<'_>,
    area: Rect,
    snap: &Snapshot,
    (bedrock, window): (&BedrockView, crate::domain::metrics::Window),
    theme: &Theme,
) {
    let width = usize::from(area.width);
    // The name column takes what the figures leave, so no figure is ever cut off.
    let name = width.saturating_sub(53).clamp(12, 60);
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
            ellipsize(
                &format!(
                    "  {:<name$} {:>5} calls {:>9} in {:>8} out {}",
                    ellipsize(
                        &sanitize::line(m.model.as_deref().unwrap_or("(model unknown)")),
                        name
                    ),
                    m.invocations,
                    m.input_tokens,
                    m.output_tokens,
                    m.cost_usd
                        .map_or_else(|| "no price".to_owned(), |c| format!("${c:.4}"))
                ),
                width,
            ),
            text,
        ));
    }
    bedrock_lines(&mut lines, (bedrock, window), width, theme);
    lines.push(Line::styled(
        "approval rate per action",
        theme.style(Role::Title),
    ));
    if snap.actions.is_empty() {
        lines.push(Line::styled("  — no decisions", muted));
    }
    for a in &snap.actions {
        lines.push(Line::styled(
            ellipsize(
                &format!(
                    "  {:<name$} {:>5.1}% ({} of {})",
                    ellipsize(&sanitize::line(&a.action), name),
                    a.approval_rate * 100.0,
                    a.confirms,
                    a.decisions
                ),
                width,
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
            ellipsize(
                &format!(
                    "  {:<name$} {:>5} · {}",
                    ellipsize(&sanitize::line(&r.reviewer), name),
                    r.decisions,
                    r.median_dwell_ms
                        .map_or_else(|| "— (no dwell recorded)".to_owned(), ms_text)
                ),
                width,
            ),
            text,
        ));
    }
    for s in &snap.rubber_stamps {
        lines.push(Line::styled(
            ellipsize(
                &format!(
                    "  ! possible rubber-stamp: {} approved {} in {} · {}",
                    sanitize::line(&s.reviewer),
                    s.tier.word(),
                    duration_ms(u64::try_from(s.dwell_ms).unwrap_or(0)),
                    sanitize::line(&s.action),
                ),
                width,
            ),
            theme.style(Role::AlertWarn),
        ));
    }
    frame.render_widget(Paragraph::new(lines).style(Style::default()), area);
}
