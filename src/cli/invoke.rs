//! `agentdeck invoke` (one agent turn, its trace printed live, returns of control queued or
//! decided on the terminal) and `agentdeck resume` (send every decided resume from the outbox).
//! Everything from the agent is sanitised before it is printed.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use chrono::Utc;
use clap::Args;

use super::{CliError, exit, output};
use crate::app::update::confirm_word;
use crate::bedrock::runner::DeckStore;
use crate::bedrock::worker::worker_name;
use crate::bedrock::{
    BedrockRunner, CommandExecutor, InvokeRequest, LiveEvent, NoExecutor, ResumeOutcome,
    ResumeWorker, RunnerError, RunnerSettings, ScriptedExecutor, SubmitSettings,
};
use crate::config::Config;
use crate::domain::approval::ApprovalId;
use crate::domain::decision::{DecisionAsk, Verdict};
use crate::domain::policy::Confirmation;
use crate::domain::resume::Executor;
use crate::domain::sanitize;
use crate::domain::status::open_inputs;

/// Where to reach Bedrock and how to run approved actions.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Send requests here instead of Bedrock (a local simulator). Also read from
    /// AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME by the SDK.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: the standard chain: AWS_REGION, the profile).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile (default: AWS_PROFILE or `default`).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Runs approved actions whose result the application returns: `sh -c CMD` gets the call as
    /// JSON on stdin, its stdout is the response body (30 s, 1 MiB at most). `builtin:demo`
    /// answers every action with a simulated success.
    #[arg(long, value_name = "CMD")]
    pub executor: Option<String>,
    /// Seconds a resume worker holds an outbox row; a row whose worker died is retried after it.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub lease_secs: u64,
    /// Seconds an agent's event stream may go without an event before the turn ends as
    /// stalled (what arrived is kept).
    #[arg(long, value_name = "SECS", default_value_t = crate::bedrock::runner::DEFAULT_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct InvokeArgs {
    #[arg(long, value_name = "ID")]
    pub agent_id: String,
    #[arg(long, value_name = "ID")]
    pub agent_alias_id: String,
    /// The session to continue (default: a new one).
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Ask for each return of control here (y/n and a reason) and resume the agent at once.
    #[arg(long)]
    pub decide_inline: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to say to the agent.
    pub text: String,
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl From<RunnerError> for CliError {
    fn from(e: RunnerError) -> Self {
        if let RunnerError::Store(s) = e {
            return s.into();
        }
        let code = match &e {
            RunnerError::MissingCredentials { .. }
            | RunnerError::MissingRegion
            | RunnerError::NotFound { .. }
            | RunnerError::Validation { .. }
            | RunnerError::Submission(_) => exit::BAD_INPUT,
            RunnerError::AccessDenied { .. } => exit::CONFLICT,
            _ => exit::UNAVAILABLE,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

fn io(e: &std::io::Error) -> CliError {
    CliError::output(e)
}

fn executor(spec: Option<&str>) -> Box<dyn Executor> {
    match spec {
        None => Box::new(NoExecutor),
        Some("builtin:demo") => Box::new(ScriptedExecutor::demo()),
        Some(cmd) => Box::new(CommandExecutor::new(cmd)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::unavailable(format!("cannot start the runtime: {e}")))
}

async fn connect(args: &ConnectArgs) -> Result<BedrockRunner, RunnerError> {
    BedrockRunner::from_env(&RunnerSettings {
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
        profile: args.profile.clone(),
    })
    .await
    .map(|r| r.with_idle_timeout(std::time::Duration::from_secs(args.idle_timeout)))
}

/// Prints live events, one sanitised line per step.
struct Printer<'o> {
    out: &'o mut dyn Write,
    text: String,
    failed: Option<std::io::Error>,
}

impl Printer<'_> {
    fn print(&mut self, e: &LiveEvent<'_>) {
        let line = match e {
            LiveEvent::Started {
                request_id,
                session_id,
            } => format!(
                "request {} on session {}",
                sanitize::line(request_id),
                sanitize::line(session_id)
            ),
            LiveEvent::Step {
                trace_id,
                kinds,
                figures,
                summary,
            } => {
                let latency = figures
                    .duration_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
                let tokens = if figures.input_tokens + figures.output_tokens > 0 {
                    format!("{}/{} tok", figures.input_tokens, figures.output_tokens)
                } else {
                    "-".to_owned()
                };
                let step = trace_id.rsplit('-').next().unwrap_or_default();
                let mut summary: String = sanitize::line(summary).into_owned();
                if summary.chars().count() > 100 {
                    summary = summary.chars().take(99).collect::<String>() + "…";
                }
                format!(
                    "  step {:<4} {:<48} {latency:>8} {tokens:>13}  {summary}",
                    sanitize::line(step),
                    sanitize::line(&kinds.join(","))
                )
            }
            LiveEvent::Chunk(t) => {
                self.text.push_str(t);
                return;
            }
            LiveEvent::Queued(r) => {
                let actions: Vec<String> = r
                    .inputs
                    .iter()
                    .map(|i| sanitize::line(&i.action_label()).into_owned())
                    .collect();
                format!(
                    "  returned control: request {} queued ({} risk): {}",
                    sanitize::line(r.id.as_str()),
                    r.tier(),
                    actions.join("; ")
                )
            }
            LiveEvent::Files(names) => format!(
                "  files: {}",
                names
                    .iter()
                    .map(|n| sanitize::line(n).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        if let Err(e) = writeln!(self.out, "{line}") {
            self.failed.get_or_insert(e);
        }
    }

    fn finish(&mut self) -> Result<(), CliError> {
        if !self.text.is_empty() {
            let text = std::mem::take(&mut self.text);
            writeln!(self.out, "agent: {}", sanitize::block(&text)).map_err(|e| io(&e))?;
        }
        match self.failed.take() {
            Some(e) => Err(io(&e)),
            None => Ok(()),
        }
    }
}

fn ask_line(
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    prompt: &str,
) -> Result<String, CliError> {
    write!(out, "{prompt}").map_err(|e| io(&e))?;
    out.flush().map_err(|e| io(&e))?;
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CliError::bad_input(format!("cannot read the answer: {e}")))?;
    Ok(line.trim().to_owned())
}

/// Asks the reviewer about one queued request and records the decision. Returns whether the
/// request is now final.
fn decide_inline(
    config: &Config,
    store: &dyn DeckStore,
    id: &ApprovalId,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<bool, CliError> {
    let now = Utc::now();
    let stored = store.get(id, &config.policy, now)?;
    out.write_all(output::request_text(&stored, now).as_bytes())
        .map_err(|e| io(&e))?;
    let r = &stored.request;
    let open = open_inputs(r, &stored.decisions, &config.policy);
    let answer = ask_line(out, input, "approve every input? [y/n] ")?;
    let verdict = match answer.to_ascii_lowercase().as_str() {
        "y" | "yes" => Verdict::Confirm,
        "n" | "no" => Verdict::Deny,
        other => {
            return Err(CliError::bad_input(format!(
                "expected y or n, got {:?}; the request stays in the queue",
                sanitize::line(other)
            )));
        }
    };
    let reason = ask_line(out, input, "reason: ")?;
    if verdict == Verdict::Confirm
        && let Some(tier) = open
            .iter()
            .filter_map(|i| r.assessments.get(*i).map(|a| a.tier))
            .max()
        && config.policy.requirements(tier).confirmation != Confirmation::None
    {
        let word = confirm_word(r, open.first().copied().unwrap_or(0));
        let typed = ask_line(
            out,
            input,
            &format!("{tier}-risk: type {} to confirm: ", sanitize::line(&word)),
        )?;
        if typed != word {
            return Err(CliError::conflict(
                "the confirmation word did not match; nothing was decided",
            ));
        }
    }
    let ask = DecisionAsk {
        request: id.clone(),
        verdict,
        inputs: open
            .iter()
            .filter_map(|i| r.input_hash(*i).map(|h| (*i, h)))
            .collect(),
        reviewer: config.reviewer.clone(),
        reason: Some(reason).filter(|r| !r.is_empty()),
        dwell_ms: None,
    };
    let outcome = store.decide(&ask, &config.policy, Utc::now())?;
    writeln!(
        out,
        "{} {}: request is now {}",
        if verdict == Verdict::Confirm {
            "approved"
        } else {
            "rejected"
        },
        sanitize::line(id.as_str()),
        outcome.status
    )
    .map_err(|e| io(&e))?;
    Ok(outcome.status.is_final())
}

fn report_resumes(
    report: &crate::bedrock::ResumeReport,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    for (id, outcome) in &report.items {
        let id = sanitize::line(id.as_str());
        let line = match outcome {
            ResumeOutcome::Acked { continuation } => match continuation {
                Ok(s) => format!(
                    "resumed {id}: continuation {} {}",
                    sanitize::line(&s.request_id),
                    s.outcome.as_str()
                ),
                Err(e) => format!(
                    "resumed {id}; the continuation's stream failed: {}",
                    sanitize::line(e)
                ),
            },
            ResumeOutcome::AckedEarlier { note } => {
                format!("resumed {id} earlier: {}", sanitize::line(note))
            }
            ResumeOutcome::RetryLater { error, retry_at } => format!(
                "resume of {id} will be retried after {}: {}",
                retry_at.format("%H:%M:%SZ"),
                sanitize::line(error)
            ),
            ResumeOutcome::Failed { error } => {
                format!("resume of {id} FAILED: {}", sanitize::line(error))
            }
            ResumeOutcome::LeaseLost => format!("resume of {id} was taken over by another worker"),
        };
        writeln!(out, "{line}").map_err(|e| io(&e))?;
    }
    Ok(())
}

fn ttl_fn(config: &Config) -> impl Fn(&str) -> u32 + '_ {
    |agent: &str| config.ttl_secs(agent)
}

/// Runs `agentdeck invoke`.
pub fn invoke(
    config: &Config,
    store: &dyn DeckStore,
    args: &InvokeArgs,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<(), CliError> {
    let session_id = args.session_id.clone().unwrap_or_else(|| {
        format!(
            "agentdeck-{}-{:04x}",
            Utc::now().format("%Y%m%dT%H%M%S"),
            fastrand::u16(..)
        )
    });
    let ttl = ttl_fn(config);
    let submit = SubmitSettings {
        policy: &config.policy,
        ttl_secs: &ttl,
        actor: &config.reviewer,
    };
    let exec = executor(args.connect.executor.as_deref());
    let request = InvokeRequest {
        agent_id: args.agent_id.clone(),
        agent_alias_id: args.agent_alias_id.clone(),
        session_id,
        input_text: args.text.clone(),
        session_attributes: BTreeMap::new(),
    };
    runtime()?.block_on(async {
        let runner = connect(&args.connect).await?;
        let mut printer = Printer {
            out: &mut *out,
            text: String::new(),
            failed: None,
        };
        let summary = runner
            .invoke(&request, store, &submit, &mut |e| printer.print(e))
            .await;
        printer.finish()?;
        let summary = summary?;
        writeln!(
            out,
            "{}: {} events in {} steps, {} ms, {}/{} tokens",
            summary.outcome.as_str(),
            summary.events,
            summary.steps,
            summary.latency_ms.unwrap_or_default(),
            summary.input_tokens,
            summary.output_tokens
        )
        .map_err(|e| io(&e))?;
        let mut queued = summary.queued;
        while args.decide_inline && !queued.is_empty() {
            let mut any_final = false;
            for id in &queued {
                any_final |= decide_inline(config, store, id, out, input)?;
            }
            if !any_final {
                writeln!(
                    out,
                    "still open: it needs another reviewer; it stays in the queue"
                )
                .map_err(|e| io(&e))?;
                break;
            }
            let report = send_resumes(
                &runner,
                store,
                exec.as_ref(),
                &submit,
                args.connect.lease_secs,
                out,
            )
            .await?;
            report_resumes(&report, out)?;
            queued = report
                .items
                .iter()
                .filter_map(|(_, o)| match o {
                    ResumeOutcome::Acked {
                        continuation: Ok(s),
                    } => Some(s.queued.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
        }
        Ok(())
    })
}

/// Sends every due resume from the outbox, printing each continuation as it streams.
async fn send_resumes(
    runner: &BedrockRunner,
    store: &dyn DeckStore,
    executor: &dyn Executor,
    submit: &SubmitSettings<'_>,
    lease_secs: u64,
    out: &mut dyn Write,
) -> Result<crate::bedrock::ResumeReport, CliError> {
    let worker = ResumeWorker {
        runner,
        store,
        executor,
        submit,
        owner: worker_name(),
        lease: Duration::from_secs(lease_secs),
        max_attempts: 8,
    };
    let mut printer = Printer {
        out,
        text: String::new(),
        failed: None,
    };
    let report = worker.resume_pending(&mut |e| printer.print(e)).await;
    printer.finish()?;
    Ok(report?)
}

/// Runs `agentdeck resume`.
pub fn resume(
    config: &Config,
    store: &dyn DeckStore,
    args: &ResumeArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let ttl = ttl_fn(config);
    let submit = SubmitSettings {
        policy: &config.policy,
        ttl_secs: &ttl,
        actor: &config.reviewer,
    };
    let exec = executor(args.connect.executor.as_deref());
    runtime()?.block_on(async {
        let runner = connect(&args.connect).await?;
        let report = send_resumes(
            &runner,
            store,
            exec.as_ref(),
            &submit,
            args.connect.lease_secs,
            out,
        )
        .await?;
        if report.items.is_empty() {
            let waiting = store.outbox_rows(Some(crate::store::OutboxState::Pending), 0, 1)?;
            let sent = store.outbox_rows(Some(crate::store::OutboxState::Sent), 0, 1)?;
            let note = if waiting.is_empty() && sent.is_empty() {
                "nothing to resume"
            } else {
                "nothing due now (rows are leased by another worker or waiting to be retried)"
            };
            writeln!(out, "{note}").map_err(|e| io(&e))?;
        }
        report_resumes(&report, out)?;
        let failed = report
            .items
            .iter()
            .filter(|(_, o)| matches!(o, ResumeOutcome::Failed { .. }))
            .count();
        if failed > 0 {
            return Err(CliError::unavailable(format!(
                "{failed} resume(s) failed for good; see the messages above"
            )));
        }
        Ok(())
    })
}
