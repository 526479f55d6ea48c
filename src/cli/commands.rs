//! The headless commands. Each reads the store through the port and writes to `out`.

use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::CliError;
use super::args::{AuditCommand, DecideArgs, ExportFormat};
use super::output;
use crate::app::update::{confirm_word, sort_queue};
use crate::config::Config;
use crate::domain::decision::{DecisionAsk, Verdict};
use crate::domain::policy::Confirmation;
use crate::domain::status::open_inputs;
use crate::domain::validate::{self, SubmitContext};
use crate::store::{ApprovalStore, AuditEntry, StoredRequest};

/// The largest submission accepted, in bytes.
pub const MAX_SUBMISSION: u64 = 8 * 1024 * 1024;

/// What every command needs.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub store: &'a dyn ApprovalStore,
    pub now: DateTime<Utc>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

fn io(e: &std::io::Error) -> CliError {
    CliError::output(e)
}

/// Reads a submission from a file or `-` (stdin), refusing anything over the limit.
pub fn read_submission(file: &str, stdin: &mut dyn Read) -> Result<Vec<u8>, CliError> {
    let name = if file == "-" { "(stdin)" } else { file };
    let mut buf = Vec::new();
    let limit = MAX_SUBMISSION + 1;
    let read = if file == "-" {
        stdin.take(limit).read_to_end(&mut buf)
    } else {
        std::fs::File::open(file)
            .map_err(|e| CliError::bad_input(format!("{file}: cannot open: {e}")))?
            .take(limit)
            .read_to_end(&mut buf)
    };
    read.map_err(|e| CliError::bad_input(format!("{name}: cannot read: {e}")))?;
    if buf.len() as u64 > MAX_SUBMISSION {
        return Err(CliError::bad_input(format!(
            "{name}: the submission is larger than {MAX_SUBMISSION} bytes; nothing was written"
        )));
    }
    Ok(buf)
}

pub fn submit(
    ctx: &Ctx<'_>,
    source: &str,
    bytes: &[u8],
    json_out: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        CliError::bad_input(format!(
            "{source}: not valid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let ttl = |agent: &str| ctx.config.ttl_secs(agent);
    let request = validate::submission(
        &doc,
        &SubmitContext {
            policy: &ctx.config.policy,
            now: ctx.now,
            ttl_secs: &ttl,
        },
    )
    .map_err(|e| CliError::bad_input(format!("{source}: {e}; nothing was written")))?;
    ctx.store.submit(&request, &ctx.config.reviewer)?;
    if json_out {
        let v = json!({ "id": request.id, "tier": request.tier(), "inputs": request.inputs.len(), "expiresAt": request.expires_at });
        writeln!(out, "{v}").map_err(|e| io(&e))?;
    } else {
        writeln!(
            out,
            "queued {} ({} risk, {} input{}, expires {})",
            crate::domain::sanitize::line(request.id.as_str()),
            request.tier(),
            request.inputs.len(),
            if request.inputs.len() == 1 { "" } else { "s" },
            request.expires_at.format("%Y-%m-%d %H:%M:%SZ")
        )
        .map_err(|e| io(&e))?;
    }
    Ok(())
}

pub fn pending(ctx: &Ctx<'_>, json_out: bool, out: &mut dyn Write) -> Result<(), CliError> {
    ctx.store
        .expire_due(ctx.now, &format!("expiry-sweep:{}", ctx.config.reviewer))?;
    let mut rows = ctx.store.open_queue(ctx.now)?;
    sort_queue(&mut rows);
    if json_out {
        let v = serde_json::to_string(&rows).map_err(|e| CliError::unavailable(e.to_string()))?;
        writeln!(out, "{v}").map_err(|e| io(&e))
    } else {
        out.write_all(output::queue_table(&rows, ctx.now).as_bytes())
            .map_err(|e| io(&e))
    }
}

fn stored_json(s: &StoredRequest) -> serde_json::Value {
    let hashes: Vec<String> = (0..s.request.inputs.len())
        .filter_map(|i| s.request.input_hash(i))
        .collect();
    json!({
        "request": s.request,
        "status": s.status,
        "tier": s.request.tier(),
        "inputHashes": hashes,
        "decisions": s.decisions,
        "sessionAttributesBytes": s.request.session_attributes_size(),
    })
}

pub fn show(ctx: &Ctx<'_>, id: &str, json_out: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let id = ctx.store.resolve(id)?;
    let stored = ctx.store.get(&id, &ctx.config.policy, ctx.now)?;
    if json_out {
        writeln!(out, "{}", stored_json(&stored)).map_err(|e| io(&e))
    } else {
        out.write_all(output::request_text(&stored, ctx.now).as_bytes())
            .map_err(|e| io(&e))
    }
}

pub fn decide(
    ctx: &Ctx<'_>,
    args: &DecideArgs,
    verdict: Verdict,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let id = ctx.store.resolve(&args.id)?;
    let stored = ctx.store.get(&id, &ctx.config.policy, ctx.now)?;
    let r = &stored.request;
    let count = r.inputs.len();
    let chosen: Vec<usize> = if args.all {
        open_inputs(r, &stored.decisions, &ctx.config.policy)
    } else if args.inputs.is_empty() {
        if count == 1 {
            vec![0]
        } else {
            return Err(CliError::bad_input(format!(
                "request {id} has {count} inputs: choose with --input N (1..={count}) or --all"
            )));
        }
    } else {
        let mut v = Vec::new();
        for n in &args.inputs {
            if *n == 0 || *n > count {
                return Err(CliError::bad_input(format!(
                    "--input {n}: request {id} has inputs 1..={count}"
                )));
            }
            if v.contains(&(n - 1)) {
                return Err(CliError::bad_input(format!("--input {n} is given twice")));
            }
            v.push(n - 1);
        }
        v
    };
    if chosen.is_empty() {
        return Err(CliError::conflict(format!(
            "request {id} has no open inputs left ({})",
            stored.status
        )));
    }
    let inputs: Vec<(usize, String)> = if args.hashes.is_empty() {
        chosen
            .iter()
            .filter_map(|i| r.input_hash(*i).map(|h| (*i, h)))
            .collect()
    } else if args.hashes.len() == chosen.len() {
        chosen
            .iter()
            .copied()
            .zip(args.hashes.iter().cloned())
            .collect()
    } else {
        return Err(CliError::bad_input(format!(
            "{} --hash given for {} inputs: give one per chosen input, in order",
            args.hashes.len(),
            chosen.len()
        )));
    };
    if verdict == Verdict::Confirm {
        let tier = chosen
            .iter()
            .filter_map(|i| r.assessments.get(*i).map(|a| a.tier))
            .max()
            .unwrap_or(crate::domain::policy::RiskTier::Critical);
        let req = ctx.config.policy.requirements(tier);
        if req.confirmation != Confirmation::None {
            let word = confirm_word(r, chosen[0]);
            if args.confirm.as_deref() != Some(word.as_str()) {
                return Err(CliError::conflict(format!(
                    "not allowed by policy: approving a {tier}-risk action needs --confirm {}",
                    crate::domain::sanitize::line(&word)
                )));
            }
        }
    }
    let ask = DecisionAsk {
        request: id.clone(),
        verdict,
        inputs,
        reviewer: ctx.config.reviewer.clone(),
        reason: args.reason.clone(),
        dwell_ms: None,
    };
    let outcome = ctx.store.decide(&ask, &ctx.config.policy, ctx.now)?;
    if args.json {
        let v = json!({ "id": id, "status": outcome.status, "decisions": outcome.decisions, "auditSeq": outcome.audit_seq });
        writeln!(out, "{v}").map_err(|e| io(&e))
    } else {
        let verb = if verdict == Verdict::Confirm {
            "approved"
        } else {
            "rejected"
        };
        let list: Vec<String> = outcome
            .decisions
            .iter()
            .map(|d| (d.input_index + 1).to_string())
            .collect();
        writeln!(
            out,
            "{verb} input {} of {}; request is now {} (audit entry {})",
            list.join(", "),
            crate::domain::sanitize::line(id.as_str()),
            outcome.status,
            outcome.audit_seq
        )
        .map_err(|e| io(&e))
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

pub fn audit(ctx: &Ctx<'_>, command: &AuditCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify { json: json_out } => {
            let report = ctx.store.audit_verify()?;
            if *json_out {
                let v = json!({ "ok": report.ok(), "entries": report.entries, "problems": report.problems });
                writeln!(out, "{v}").map_err(|e| io(&e))?;
            } else if report.ok() {
                writeln!(out, "audit log verifies: {} entries, chain intact, every request and decision accounted for", report.entries)
                    .map_err(|e| io(&e))?;
            } else {
                writeln!(
                    out,
                    "audit log does NOT verify ({} entries, {} problems):",
                    report.entries,
                    report.problems.len()
                )
                .map_err(|e| io(&e))?;
                for p in &report.problems {
                    writeln!(out, "  {}", crate::domain::sanitize::line(p)).map_err(|e| io(&e))?;
                }
            }
            if report.ok() {
                Ok(())
            } else {
                Err(CliError::conflict(format!(
                    "audit verification failed: {} problem(s)",
                    report.problems.len()
                )))
            }
        }
        AuditCommand::Export { format } => {
            if *format == ExportFormat::Csv {
                writeln!(out, "seq,at,actor,kind,request,payload,prev_hash,hash")
                    .map_err(|e| io(&e))?;
            }
            let mut failed_write = None;
            let mut write_entry = |e: AuditEntry| -> Result<(), crate::store::StoreError> {
                let line = match format {
                    ExportFormat::Jsonl => serde_json::to_string(&e).unwrap_or_default(),
                    ExportFormat::Csv => [
                        e.seq.to_string(),
                        e.at.to_rfc3339(),
                        csv_field(&e.actor),
                        csv_field(&e.kind),
                        csv_field(e.request.as_str()),
                        csv_field(&e.payload),
                        e.prev_hash.clone(),
                        e.hash.clone(),
                    ]
                    .join(","),
                };
                writeln!(out, "{line}").map_err(|err| {
                    let message = format!("cannot write output: {err}");
                    failed_write = Some(err);
                    crate::store::StoreError::Unavailable(message)
                })
            };
            let walked = ctx.store.audit_each(&mut write_entry);
            match failed_write {
                Some(err) => Err(io(&err)),
                None => walked.map_err(CliError::from),
            }
        }
    }
}
