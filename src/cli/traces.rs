//! `agentdeck traces`, `agentdeck traces show SESSION` and `agentdeck traces export SESSION`:
//! the recorded sessions with their figures, one session's tree of turns and reasoning steps,
//! for scripts (`--json`) and people, and one session's every event as JSON. Everything an agent wrote is sanitised before it reaches the terminal.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use crate::domain::sanitize;
use crate::store::run::{InvocationRecord, Outcome, SessionRow, TraceStore};
use crate::ui::format::{duration_ms, timestamp};

/// The most sessions, turns or steps one read lists.
const PAGE: usize = 10_000;

#[derive(Debug, Clone, Args)]
pub struct TracesArgs {
    #[command(subcommand)]
    pub command: Option<TracesCommand>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// List at most this many sessions, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TracesCommand {
    /// One session's turns and their reasoning steps.
    Show {
        /// The session id.
        session: String,
    },
    /// Everything recorded for one session as one JSON document: each turn with every trace
    /// event's raw JSON and the text the agent streamed.
    Export {
        /// The session id.
        session: String,
        /// Write to this file (refused if it exists) instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
}

fn io(e: &std::io::Error) -> CliError {
    CliError::output(e)
}

/// A session's figures, summed over its turns.
struct Figures {
    state: &'static str,
    steps: u64,
    events: u64,
    input_tokens: i64,
    output_tokens: i64,
    latency_ms: i64,
}

fn figures(turns: &[InvocationRecord]) -> Figures {
    // The session's state is its latest turn's outcome.
    let state = turns.last().map_or("empty", |t| match t.outcome {
        Outcome::Running => "running",
        Outcome::WaitingForHuman => "waiting-for-human",
        Outcome::Finished => "finished",
        Outcome::Failed | Outcome::Exception => "failed",
    });
    Figures {
        state,
        steps: turns.iter().map(|t| t.steps).sum(),
        events: turns.iter().map(|t| t.events).sum(),
        input_tokens: turns.iter().map(|t| t.input_tokens).sum(),
        output_tokens: turns.iter().map(|t| t.output_tokens).sum(),
        latency_ms: turns.iter().filter_map(|t| t.latency_ms).sum(),
    }
}

fn session_json(s: &SessionRow, f: &Figures) -> Value {
    json!({
        "agentId": s.agent_id, "agentAliasId": s.agent_alias_id, "sessionId": s.session_id,
        "firstAt": s.first_at, "lastAt": s.last_at, "turns": s.invocations, "state": f.state,
        "steps": f.steps, "events": f.events, "inputTokens": f.input_tokens,
        "outputTokens": f.output_tokens, "latencyMs": f.latency_ms,
    })
}

pub fn run(store: &dyn TraceStore, args: &TracesArgs, out: &mut dyn Write) -> Result<(), CliError> {
    match &args.command {
        None => list(store, args.limit, args.json, out),
        Some(TracesCommand::Show { session }) => show(store, session, args.json, out),
        Some(TracesCommand::Export { session, output }) => match output {
            None => export_session(store, session, out),
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| {
                        CliError::bad_input(format!(
                            "cannot create {}: {e} (an existing file is never overwritten)",
                            path.display()
                        ))
                    })?;
                let mut w = std::io::BufWriter::new(file);
                export_session(store, session, &mut w)?;
                w.flush().map_err(|e| io(&e))?;
                writeln!(
                    out,
                    "exported session {} to {}",
                    sanitize::line(session),
                    path.display()
                )
                .map_err(|e| io(&e))
            }
        },
    }
}

/// Events read per page while exporting.
const EXPORT_PAGE: usize = 1000;

/// Writes one session as JSON: `{"sessionId", "state", "turns": [{...the turn..., "events":
/// [raw TracePart, ...], "text": "..."}]}`, a page of events at a time, so a large session is
/// never held in memory whole. Raw JSON is written as recorded (JSON escapes any control
/// character), not sanitised: it is data for tools, not for the terminal.
pub fn export_session(
    store: &dyn TraceStore,
    session: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let turns = session_turns(store, session)?;
    let f = figures(&turns);
    let head = json!({"sessionId": session, "state": f.state});
    let head = head.to_string();
    // Open the object and leave it open for "turns".
    write!(out, "{},\"turns\":[", &head[..head.len() - 1]).map_err(|e| io(&e))?;
    for (i, t) in turns.iter().enumerate() {
        let turn = json!({
            "requestId": t.start.request_id, "agentId": t.start.agent_id,
            "agentAliasId": t.start.agent_alias_id, "inputText": t.start.input_text,
            "resumes": t.start.resumes, "startedAt": t.start.started_at,
            "endedAt": t.ended_at, "outcome": t.outcome.as_str(), "error": t.error,
            "finalResponse": t.final_response, "latencyMs": t.latency_ms,
            "inputTokens": t.input_tokens, "outputTokens": t.output_tokens,
            "text": store.chunk_text(&t.start.request_id)?,
        })
        .to_string();
        let sep = if i == 0 { "" } else { "," };
        write!(out, "{sep}{},\"events\":[", &turn[..turn.len() - 1]).map_err(|e| io(&e))?;
        let mut after = 0;
        let mut first = true;
        loop {
            let page = store.events(&t.start.request_id, after, EXPORT_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                let sep = if first { "" } else { "," };
                first = false;
                write!(
                    out,
                    "{sep}{}",
                    json!({"seq": e.seq, "step": e.step, "traceId": e.trace_id, "kind": e.kind, "raw": e.raw})
                )
                .map_err(|e| io(&e))?;
            }
        }
        write!(out, "]}}").map_err(|e| io(&e))?;
    }
    writeln!(out, "]}}").map_err(|e| io(&e))
}

fn list(
    store: &dyn TraceStore,
    limit: usize,
    json_out: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let sessions = store.sessions(0, limit)?;
    let mut rows = Vec::with_capacity(sessions.len());
    for s in sessions {
        let turns = store.invocations(&s.session_id, 0, PAGE)?;
        let f = figures(&turns);
        rows.push((s, f));
    }
    if json_out {
        let v: Vec<Value> = rows.iter().map(|(s, f)| session_json(s, f)).collect();
        return writeln!(out, "{}", Value::Array(v)).map_err(|e| io(&e));
    }
    if rows.is_empty() {
        return writeln!(
            out,
            "no sessions recorded (agentdeck invoke and agentdeck demo record them)"
        )
        .map_err(|e| io(&e));
    }
    writeln!(
        out,
        "{:<21} {:<24} {:<18} {:>5} {:>6} {:>15} {:>9}  LAST SEEN",
        "AGENT/ALIAS", "SESSION", "STATE", "TURNS", "STEPS", "TOKENS IN/OUT", "LATENCY"
    )
    .map_err(|e| io(&e))?;
    for (s, f) in &rows {
        writeln!(
            out,
            "{:<21} {:<24} {:<18} {:>5} {:>6} {:>15} {:>9}  {}",
            format!(
                "{}/{}",
                sanitize::line(&s.agent_id),
                sanitize::line(&s.agent_alias_id)
            ),
            sanitize::line(&s.session_id),
            f.state,
            s.invocations,
            f.steps,
            format!("{}/{}", f.input_tokens, f.output_tokens),
            duration_ms(u64::try_from(f.latency_ms).unwrap_or(0)),
            timestamp(s.last_at),
        )
        .map_err(|e| io(&e))?;
    }
    Ok(())
}

/// A session's turns, oldest first; a session with none is an error naming it.
fn session_turns(store: &dyn TraceStore, session: &str) -> Result<Vec<InvocationRecord>, CliError> {
    let turns = store.invocations(session, 0, PAGE)?;
    if turns.is_empty() {
        return Err(CliError::bad_input(format!(
            "no turns recorded for session {:?}",
            sanitize::line(session)
        )));
    }
    Ok(turns)
}

fn show(
    store: &dyn TraceStore,
    session: &str,
    json_out: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let turns = session_turns(store, session)?;
    let mut tree = Vec::with_capacity(turns.len());
    for t in &turns {
        let steps = store.steps(&t.start.request_id, 0, PAGE)?;
        tree.push((t, steps));
    }
    if json_out {
        let v: Vec<Value> = tree
            .iter()
            .map(|(t, steps)| {
                json!({
                    "requestId": t.start.request_id, "agentId": t.start.agent_id,
                    "agentAliasId": t.start.agent_alias_id, "inputText": t.start.input_text,
                    "resumes": t.start.resumes, "startedAt": t.start.started_at,
                    "endedAt": t.ended_at, "outcome": t.outcome.as_str(), "error": t.error,
                    "finalResponse": t.final_response, "latencyMs": t.latency_ms,
                    "inputTokens": t.input_tokens, "outputTokens": t.output_tokens,
                    "steps": steps.iter().map(|s| json!({
                        "step": s.step, "traceId": s.trace_id, "kinds": s.kinds.split(',').collect::<Vec<_>>(),
                        "events": s.events, "durationMs": s.figures.duration_ms,
                        "inputTokens": s.figures.input_tokens, "outputTokens": s.figures.output_tokens,
                        "rationale": s.rationale,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let f = figures(&turns);
        let doc = json!({ "sessionId": session, "state": f.state, "turns": v });
        return writeln!(out, "{doc}").map_err(|e| io(&e));
    }
    writeln!(out, "session {}", sanitize::line(session)).map_err(|e| io(&e))?;
    for (t, steps) in &tree {
        let what = match (&t.start.input_text, &t.start.resumes) {
            (_, Some(id)) => format!("resume after decision on {}", sanitize::line(id)),
            (Some(text), None) => format!("{:?}", sanitize::line(text)),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "├─ turn {} {} · {} · {} · tokens {}/{}",
            sanitize::line(&t.start.request_id),
            what,
            t.outcome.as_str(),
            t.latency_ms.map_or_else(
                || "-".to_owned(),
                |ms| duration_ms(u64::try_from(ms).unwrap_or(0))
            ),
            t.input_tokens,
            t.output_tokens
        )
        .map_err(|e| io(&e))?;
        for s in steps {
            writeln!(
                out,
                "│  ├─ step {:>3} {:<52} {:>9} tokens {}/{}{}",
                s.step,
                sanitize::line(&s.kinds),
                s.figures.duration_ms.map_or_else(
                    || "-".to_owned(),
                    |ms| duration_ms(u64::try_from(ms).unwrap_or(0))
                ),
                s.figures.input_tokens,
                s.figures.output_tokens,
                s.rationale.as_deref().map_or_else(String::new, |r| format!(
                    "\n│  │     rationale: {}",
                    sanitize::line(r)
                ))
            )
            .map_err(|e| io(&e))?;
        }
        if let Some(answer) = &t.final_response {
            writeln!(out, "│  └─ answer: {}", sanitize::line(answer)).map_err(|e| io(&e))?;
        }
        if let Some(err) = &t.error {
            writeln!(out, "│  └─ error: {}", sanitize::line(err)).map_err(|e| io(&e))?;
        }
    }
    Ok(())
}
