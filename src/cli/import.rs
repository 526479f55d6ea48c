//! `agentdeck import FILE...`: traces people already have (boto3 stream events dumped to JSON
//! or JSONL, bare TraceParts, raw eventstream bodies) into the store, with a summary line per
//! file (or `--json`), each rejected record named by file and line or byte offset on stderr, and
//! a progress bar on large files when stderr is a terminal. Exits 2 when anything was rejected
//! (the rest is imported).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::CliError;
use crate::bedrock::import::{FileSummary, ImportError, ImportOptions, Rejected, import};
use crate::bedrock::recording::{ChunkBytes, Format, Location};
use crate::domain::sanitize;
use crate::store::run::TraceStore;

/// Files at least this large show a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 8 << 20;
/// Rejections printed (and kept for `--json`) per file; all are counted.
const SHOWN_ERRORS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Sniff each file: an eventstream prelude, a JSON array, JSONL, or JSON values.
    Auto,
    Eventstream,
    JsonArray,
    Jsonl,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChunkBytesArg {
    /// `b'...'` is unescaped; canonical base64 of UTF-8 text is decoded; other strings are text.
    /// The first string that proves which the file holds settles it for the rest of the file.
    Auto,
    Base64,
    Text,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Recordings: JSON or JSONL InvokeAgent stream events or TraceParts, or raw eventstream bodies.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// How `{"chunk": {"bytes": "..."}}` strings in JSON files are read (on the eventstream
    /// wire they are always base64).
    #[arg(long, value_enum, default_value_t = ChunkBytesArg::Auto)]
    pub chunk_bytes: ChunkBytesArg,
    /// Session of the events that name none (bodies recorded without enableTrace hold only
    /// chunks); default `import:<file>`.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Print a JSON array with one summary per file.
    #[arg(long)]
    pub json: bool,
}

impl ImportArgs {
    fn options(&self) -> ImportOptions {
        ImportOptions {
            format: match self.format {
                FormatArg::Auto => None,
                FormatArg::Eventstream => Some(Format::Eventstream),
                FormatArg::JsonArray => Some(Format::JsonArray),
                FormatArg::Jsonl => Some(Format::Jsonl),
                FormatArg::Json => Some(Format::Json),
            },
            chunks: match self.chunk_bytes {
                ChunkBytesArg::Auto => ChunkBytes::Auto,
                ChunkBytesArg::Base64 => ChunkBytes::Base64,
                ChunkBytesArg::Text => ChunkBytes::Text,
            },
            session: self.session.clone(),
        }
    }
}

fn io(e: &std::io::Error) -> CliError {
    CliError::unavailable(format!("cannot write output: {e}"))
}

fn location_json(l: Location) -> Value {
    match l {
        Location::Line(n) => json!({ "line": n }),
        Location::Offset(n) => json!({ "offset": n }),
    }
}

/// One file's outcome.
struct Done {
    shown: String,
    summary: Option<FileSummary>,
    /// Why the file stopped early (unreadable, store failure).
    failed: Option<String>,
    rejected: Vec<Rejected>,
    errors: u64,
}

pub fn run(
    store: &dyn TraceStore,
    args: &ImportArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let options = args.options();
    let tty = std::io::stderr().is_terminal();
    let mut done = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let shown = sanitize::line(&path.display().to_string()).into_owned();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                writeln!(err, "{shown}: cannot open it: {e}").map_err(|e| io(&e))?;
                done.push(Done {
                    shown,
                    summary: None,
                    failed: Some(format!("cannot open it: {e}")),
                    rejected: Vec::new(),
                    errors: 0,
                });
                continue;
            }
        };
        let meta = file.metadata().ok();
        let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
        let mtime = meta
            .and_then(|m| m.modified().ok())
            .map_or_else(Utc::now, DateTime::<Utc>::from);
        let bar = (tty && size >= PROGRESS_FROM).then(|| {
            let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_message(shown.clone());
            bar
        });
        let mut rejected = Vec::new();
        let mut errors = 0_u64;
        let mut write_failed = None;
        let result = import(
            store,
            file,
            &path.display().to_string(),
            mtime,
            &options,
            &mut |r: &Rejected| {
                errors += 1;
                if rejected.len() < SHOWN_ERRORS {
                    rejected.push(r.clone());
                    let line = format!("{shown}: {}: {}", r.location, sanitize::line(&r.message));
                    let mut print = || writeln!(err, "{line}");
                    let printed = match &bar {
                        Some(b) => b.suspend(print),
                        None => print(),
                    };
                    if let Err(e) = printed {
                        write_failed = Some(e);
                    }
                }
            },
            &mut |at| {
                if let Some(b) = &bar {
                    b.set_position(at);
                }
            },
        );
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        if let Some(e) = write_failed {
            return Err(io(&e));
        }
        let (summary, failed) = match result {
            Ok(s) => (Some(s), None),
            Err(ImportError::Store(e)) => return Err(e.into()),
            Err(e @ ImportError::Io(_)) => {
                writeln!(err, "{shown}: {e}").map_err(|e| io(&e))?;
                (None, Some(e.to_string()))
            }
        };
        if !args.json
            && let Some(s) = &summary
        {
            writeln!(
                out,
                "{shown}: {} {}, {} events, {} steps, {} invocations ({} already imported), {} \
                 sessions, {} error{}",
                s.format.unwrap_or("?"),
                s.bytes,
                s.events,
                s.steps,
                s.invocations,
                s.already_imported,
                s.sessions,
                errors,
                if errors == 1 { "" } else { "s" }
            )
            .map_err(|e| io(&e))?;
        }
        done.push(Done {
            shown,
            summary,
            failed,
            rejected,
            errors,
        });
    }
    if args.json {
        let v: Vec<Value> = done.iter().map(file_json).collect();
        writeln!(out, "{}", Value::Array(v)).map_err(|e| io(&e))?;
    }
    let rejected: u64 = done.iter().map(|d| d.errors).sum();
    let failed = done.iter().filter(|d| d.failed.is_some()).count();
    if rejected > 0 || failed > 0 {
        return Err(CliError::bad_input(format!(
            "{rejected} record(s) rejected{}; everything else was imported",
            if failed > 0 {
                format!(" and {failed} file(s) could not be read")
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

fn file_json(d: &Done) -> Value {
    let errors: Vec<Value> = d
        .rejected
        .iter()
        .map(|r| {
            let mut e = location_json(r.location);
            e["message"] = json!(r.message);
            e
        })
        .collect();
    let mut v = json!({
        "file": d.shown, "errors": d.errors, "rejected": errors, "failed": d.failed,
    });
    if let Some(s) = &d.summary {
        v["format"] = json!(s.format);
        v["bytes"] = json!(s.bytes);
        v["events"] = json!(s.events);
        v["steps"] = json!(s.steps);
        v["invocations"] = json!(s.invocations);
        v["alreadyImported"] = json!(s.already_imported);
        v["sessions"] = json!(s.sessions);
        v["invocationIds"] = json!(s.invocation_ids);
    }
    v
}
