//! `agentdeck metrics`: the metrics pane's figures for scripts (`--json`, the engine's snapshot
//! as is) and people. Reads the store through the same engine as the console, so both agree.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::CliError;
use crate::domain::metrics::{Engine, Filter, Settings, Snapshot, Window};
use crate::domain::sanitize;
use crate::store::metrics::{MetricsStore, refresh};
use crate::ui::metrics::{metric_value, objective_text};

fn parse_window(s: &str) -> Result<Window, String> {
    Window::parse(s).ok_or_else(|| {
        format!(
            "{s:?} is not a window; use one of {}",
            Window::ALL.map(Window::as_str).join(", ")
        )
    })
}

#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// The window the figures cover, ending now: 15m, 1h, 24h or 7d.
    #[arg(long, default_value = "1h", value_parser = parse_window)]
    pub window: Window,
    /// Only this agent id.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this agent alias id.
    #[arg(long)]
    pub alias: Option<String>,
    /// Only this foundation model (leaves out the human side: requests carry no model).
    #[arg(long)]
    pub model: Option<String>,
    /// Print the snapshot as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<MetricsCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MetricsCommand {
    /// Put the figures into CloudWatch (completion rate, action accuracy, latency p50/p95/p99,
    /// tokens, queue depth, time to decision p50/p95), once for every agent (no dimensions)
    /// and once per agent alias (dimensions AgentId, AgentAliasId), so teams can alarm on them.
    /// A figure with no data in the window is not sent.
    Publish(PublishOpts),
}

#[derive(Debug, Clone, Args)]
pub struct PublishOpts {
    /// The window the figures cover, ending now: 15m, 1h, 24h or 7d.
    #[arg(long, default_value = "1h", value_parser = parse_window)]
    pub window: Window,
    #[command(flatten)]
    pub publish: crate::cloudwatch::cli::PublishArgs,
}

/// A fresh engine fed the whole store up to `now`.
fn engine(
    store: &dyn MetricsStore,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Engine, CliError> {
    let mut engine = Engine::new(settings.clone());
    engine.advance(now.timestamp_millis());
    refresh(store, &mut engine)?;
    Ok(engine)
}

/// `agentdeck metrics publish`: the store's figures into CloudWatch.
pub fn publish(
    store: &dyn MetricsStore,
    settings: &Settings,
    endpoint: Option<&str>,
    opts: &PublishOpts,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let engine = engine(store, settings, now)?;
    let data = crate::cloudwatch::ours::datums(&engine, opts.window, now);
    crate::cloudwatch::cli::run_publish(endpoint, &opts.publish, &data, out).map(|_| ())
}

/// The snapshot `agentdeck metrics` prints: a fresh engine fed the whole store.
pub fn snapshot(
    store: &dyn MetricsStore,
    settings: &Settings,
    args: &MetricsArgs,
    now: DateTime<Utc>,
) -> Result<Snapshot, CliError> {
    let now_ms = now.timestamp_millis();
    let engine = engine(store, settings, now)?;
    let filter = Filter {
        agent: args.agent.clone(),
        alias: args.alias.clone(),
        model: args.model.clone(),
    };
    Ok(engine.snapshot(args.window, &filter, now_ms))
}

fn io(e: &std::io::Error) -> CliError {
    CliError::unavailable(format!("cannot write output: {e}"))
}

pub fn run(
    store: &dyn MetricsStore,
    settings: &Settings,
    args: &MetricsArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let snap = snapshot(store, settings, args, now)?;
    if args.json {
        let text = serde_json::to_string_pretty(&snap)
            .map_err(|e| CliError::unavailable(format!("cannot encode the snapshot: {e}")))?;
        return writeln!(out, "{text}").map_err(|e| io(&e));
    }
    let mut lines = vec![format!(
        "metrics over the last {} (to {}){}",
        snap.window.as_str(),
        now.format("%Y-%m-%d %H:%M:%S UTC"),
        filter_text(&snap.filter)
    )];
    for m in &snap.metrics {
        let mark = if m.breached { "✗ BREACH" } else { "" };
        lines.push(format!(
            "  {:<28} {:>16}  {:<22} {mark}",
            m.label,
            metric_value(m),
            objective_text(m)
        ));
    }
    lines.push("tokens and cost per model".to_owned());
    if snap.models.is_empty() {
        lines.push("  — no settled invocations in the window".to_owned());
    }
    for m in &snap.models {
        lines.push(format!(
            "  {:<44} {:>6} calls {:>10} in {:>10} out  {}",
            sanitize::line(m.model.as_deref().unwrap_or("(model unknown)")),
            m.invocations,
            m.input_tokens,
            m.output_tokens,
            m.cost_usd
                .map_or_else(|| "no price".to_owned(), |c| format!("${c:.4}"))
        ));
    }
    lines.push("approval rate per action".to_owned());
    if snap.actions.is_empty() {
        lines.push("  — no decisions in the window".to_owned());
    }
    for a in &snap.actions {
        lines.push(format!(
            "  {:<44} {:>5.1}%  ({} of {})",
            sanitize::line(&a.action),
            a.approval_rate * 100.0,
            a.confirms,
            a.decisions
        ));
    }
    lines.push("decisions per reviewer".to_owned());
    if snap.reviewers.is_empty() {
        lines.push("  — no decisions in the window".to_owned());
    }
    for r in &snap.reviewers {
        lines.push(format!(
            "  {:<44} {:>5}  median dwell {}",
            sanitize::line(&r.reviewer),
            r.decisions,
            r.median_dwell_ms.map_or_else(
                || "— (no dwell recorded)".to_owned(),
                crate::ui::metrics::ms_text
            )
        ));
    }
    if !snap.rubber_stamps.is_empty() {
        lines.push("possible rubber-stamps (fast approvals of risky requests)".to_owned());
        for s in &snap.rubber_stamps {
            lines.push(format!(
                "  ! {} approved {} ({}, {}) after {} ms",
                sanitize::line(&s.reviewer),
                sanitize::line(&s.request),
                s.tier.word(),
                sanitize::line(&s.action),
                s.dwell_ms
            ));
        }
    }
    for l in lines {
        writeln!(out, "{l}").map_err(|e| io(&e))?;
    }
    Ok(())
}

fn filter_text(f: &Filter) -> String {
    let parts: Vec<String> = [
        ("agent", &f.agent),
        ("alias", &f.alias),
        ("model", &f.model),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {}", sanitize::line(v))))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" · {}", parts.join(" · "))
    }
}
