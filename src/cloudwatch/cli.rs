//! `agentdeck cloudwatch read`: Bedrock's own CloudWatch figures per agent alias; and the
//! options and runner of a publish (`agentdeck metrics publish` builds the datums from its
//! snapshot and calls [`run_publish`]). The endpoint comes from `--cloudwatch-endpoint` /
//! `AGENTDECK_CLOUDWATCH_ENDPOINT` (the simulator's port answers CloudWatch too), otherwise the
//! standard AWS chain. Strings from CloudWatch (ARNs, model ids) are sanitised before printing.

use std::io::Write;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};

use super::{AliasFigures, CloudWatchError, Datum, PublishReport};
use crate::cli::CliError;
use crate::domain::sanitize;

#[derive(Debug, Clone, Args)]
pub struct CloudWatchArgs {
    #[command(subcommand)]
    pub command: CloudWatchCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CloudWatchCommand {
    /// Bedrock's AWS/Bedrock/Agents metrics per agent alias: invocations, TotalTime average and
    /// p95, TTFT p95, ModelLatency, tokens, errors and throttles.
    Read {
        /// How far back: e.g. 15m, 1h, 2d (at least 1m).
        #[arg(long, default_value = "1h", value_parser = parse_window)]
        window: Duration,
        /// Bucket for the invocations-over-time series: e.g. 1m, 5m.
        #[arg(long, default_value = "5m", value_parser = parse_window)]
        period: Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options of a publish (for `agentdeck metrics publish`).
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// CloudWatch namespace to put the figures under (not AWS/...).
    #[arg(
        long,
        default_value = "agentdeck",
        env = "AGENTDECK_CLOUDWATCH_NAMESPACE"
    )]
    pub namespace: String,
    /// Print what was sent as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `15m`, `1h`, `90s`, `2d`.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 15m, 1h, 2d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    let total = n.saturating_mul(secs);
    if !(60..=63 * 86_400).contains(&total) {
        return Err(format!("{s:?}: must be between 1m and 63d"));
    }
    Ok(Duration::from_secs(total))
}

impl From<CloudWatchError> for CliError {
    fn from(e: CloudWatchError) -> Self {
        match &e {
            CloudWatchError::BadDatum { .. } | CloudWatchError::Invalid(_) => {
                Self::bad_input(e.to_string())
            }
            _ => Self::unavailable(e.to_string()),
        }
    }
}

fn io(e: &std::io::Error) -> CliError {
    CliError::unavailable(format!("cannot write output: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::unavailable(format!("cannot start the async runtime: {e}")))
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The figures as a table.
pub fn render(figures: &[AliasFigures], window: Duration) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if figures.is_empty() {
        let _ = writeln!(
            s,
            "no AWS/Bedrock/Agents metrics with an AgentAliasArn in the last {}s",
            window.as_secs()
        );
        return s;
    }
    let _ = writeln!(
        s,
        "{:<24} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>6} {:>6} {:>6}  MODEL",
        "AGENT/ALIAS",
        "CALLS",
        "TOTAL ms",
        "p95 ms",
        "TTFT p95",
        "MODEL ms",
        "MODEL p95",
        "TOKENS IN",
        "TOKENS OUT",
        "4XX",
        "5XX",
        "THROT"
    );
    for f in figures {
        let who = format!("{}/{}", f.agent_id, f.alias_id);
        let _ = writeln!(
            s,
            "{:<24} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>6} {:>6} {:>6}  {}",
            sanitize::line(&who),
            f.invocations,
            opt_ms(f.total_time_avg_ms),
            opt_ms(f.total_time_p95_ms),
            opt_ms(f.ttft_p95_ms),
            opt_ms(f.model_latency_avg_ms),
            opt_ms(f.model_latency_p95_ms),
            f.input_tokens,
            f.output_tokens,
            f.client_errors,
            f.server_errors,
            f.throttles,
            sanitize::line(&f.model_id),
        );
    }
    s
}

/// `agentdeck cloudwatch ...`.
pub fn run(
    endpoint: Option<&str>,
    args: &CloudWatchArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let CloudWatchCommand::Read {
        window,
        period,
        json,
    } = &args.command;
    let figures = runtime()?.block_on(async {
        let client = super::client(endpoint).await?;
        super::read_bedrock(&client, *window, *period, Utc::now()).await
    })?;
    if *json {
        let v = serde_json::json!({
            "namespace": super::BEDROCK_NAMESPACE,
            "window_secs": window.as_secs(),
            "aliases": figures,
        });
        writeln!(out, "{v}").map_err(|e| io(&e))
    } else {
        out.write_all(render(&figures, *window).as_bytes())
            .map_err(|e| io(&e))
    }
}

/// Publish datums (built by the caller from its metrics) and say what was sent.
pub fn run_publish(
    endpoint: Option<&str>,
    args: &PublishArgs,
    data: &[Datum],
    out: &mut dyn Write,
) -> Result<PublishReport, CliError> {
    let report = runtime()?.block_on(async {
        let client = super::client(endpoint).await?;
        super::publish(&client, &args.namespace, data).await
    })?;
    if args.json {
        let v =
            serde_json::json!({ "namespace": args.namespace, "report": report, "datums": data });
        writeln!(out, "{v}").map_err(|e| io(&e))?;
    } else {
        writeln!(
            out,
            "published {} datums to CloudWatch namespace {} in {} PutMetricData call(s)",
            report.datums,
            sanitize::line(&args.namespace),
            report.calls
        )
        .map_err(|e| io(&e))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_units_and_bounds() {
        assert_eq!(parse_window("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_window("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_window("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_window("30s").is_err_and(|e| e.contains("between 1m")));
        assert!(parse_window("1w").is_err_and(|e| e.contains("unit")));
        assert!(parse_window("h").is_err());
    }
}
