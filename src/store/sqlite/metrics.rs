//! `MetricsStore` on SQLite, and the action marks. One query per kind of fact: invocations
//! with the request they raised (its status, its resume's state, its last decision), requests
//! with their decisions, marks with their invocation's agent and model.

use rusqlite::{OptionalExtension, Row, params};

use super::schema::{from_ms, to_ms};
use super::{SqliteStore, db_error};
use crate::domain::metrics::{
    CallEnd, Cursor, DecisionFact, InvocationFact, MarkFact, RequestFact, TaskEnd,
};
use crate::domain::policy::RiskTier;
use crate::domain::status::Status;
use crate::store::metrics::{FactBatch, MetricsStore, end_to_end, handoff};
use crate::store::{ActionMark, Outcome, StoreError};

const INVOCATION_FACTS: &str = "SELECT i.id, i.request_id, i.agent_id, i.agent_alias_id, \
     i.model, i.started_at_ms, i.ended_at_ms, i.outcome, \
     i.final_response IS NOT NULL OR i.chunks > 0, i.latency_ms, i.model_ms, i.tool_ms, \
     i.input_tokens, i.output_tokens, q.status, o.state, \
     (SELECT max(d.decided_at_ms) FROM decisions d WHERE d.request_id = q.id) \
     FROM invocations i \
     LEFT JOIN requests q ON q.id = \
       (SELECT r.request_id FROM resumable r WHERE r.invocation = i.request_id LIMIT 1) \
     LEFT JOIN outbox o ON o.request_id = q.id";

const REQUEST_FACTS: &str = "q.row, q.id, q.agent_id, q.agent_alias_id, q.action, q.tier, \
     q.raised_at_ms, q.expires_at_ms, q.status, d.reviewer, d.decided_at_ms, d.dwell_ms, \
     d.verdict";

const MARK_FACTS: &str = "SELECT m.seq, m.request_id, m.step, m.who, m.at_ms, m.appropriate, \
     i.agent_id, i.agent_alias_id, i.model FROM action_marks m \
     JOIN invocations i ON i.request_id = m.request_id";

fn corrupt(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("reading {what} for metrics: {e}"))
}

fn invocation_fact(r: &Row<'_>) -> Result<InvocationFact, StoreError> {
    let get = corrupt("an invocation");
    let id: String = r.get(1).map_err(&get)?;
    let outcome: String = r.get(7).map_err(&get)?;
    let outcome = Outcome::parse(&outcome).ok_or_else(|| {
        StoreError::Corrupt(format!("invocation {id}: unknown outcome {outcome:?}"))
    })?;
    let answered: bool = r.get(8).map_err(&get)?;
    let call = match outcome {
        Outcome::Running => CallEnd::Running,
        Outcome::Finished if answered => CallEnd::Answered,
        Outcome::Finished | Outcome::Failed | Outcome::Exception => CallEnd::Failed,
        Outcome::WaitingForHuman => CallEnd::ReturnedControl,
    };
    let status: Option<String> = r.get(14).map_err(&get)?;
    let outbox: Option<String> = r.get(15).map_err(&get)?;
    let decided: Option<i64> = r.get(16).map_err(&get)?;
    let started: i64 = r.get(5).map_err(&get)?;
    let ended: Option<i64> = r.get(6).map_err(&get)?;
    let latency: Option<i64> = r.get(9).map_err(&get)?;
    let human_ms = match (call, ended, decided) {
        (CallEnd::ReturnedControl, Some(e), Some(d)) => Some((d - e).max(0)),
        _ => None,
    };
    Ok(InvocationFact {
        row: r.get(0).map_err(&get)?,
        agent_id: r.get(2).map_err(&get)?,
        agent_alias_id: r.get(3).map_err(&get)?,
        model: r.get(4).map_err(&get)?,
        ended_ms: ended,
        task: TaskEnd::of(call, handoff(status.as_deref(), outbox.as_deref())),
        latency_ms: end_to_end(started, ended, latency),
        model_ms: r.get(10).map_err(&get)?,
        tool_ms: r.get(11).map_err(&get)?,
        human_ms,
        input_tokens: r.get(12).map_err(&get)?,
        output_tokens: r.get(13).map_err(&get)?,
        request_id: id,
    })
}

/// Folds request rows (one per decision, or one with no decision) into facts.
fn request_facts(rows: Vec<RequestRow>) -> Vec<RequestFact> {
    let mut out: Vec<RequestFact> = Vec::new();
    for (fact, decision) in rows {
        match out.last_mut() {
            Some(last) if last.row == fact.row => last.decisions.extend(decision),
            _ => {
                let mut fact = fact;
                fact.decisions.extend(decision);
                out.push(fact);
            }
        }
    }
    out
}

type RequestRow = (RequestFact, Option<DecisionFact>);

fn request_row(r: &Row<'_>) -> Result<RequestRow, StoreError> {
    let get = corrupt("a request");
    let id: String = r.get(1).map_err(&get)?;
    let tier: i64 = r.get(5).map_err(&get)?;
    let status: String = r.get(8).map_err(&get)?;
    let fact = RequestFact {
        row: r.get(0).map_err(&get)?,
        agent_id: r.get(2).map_err(&get)?,
        agent_alias_id: r.get(3).map_err(&get)?,
        action: r.get(4).map_err(&get)?,
        tier: u8::try_from(tier)
            .ok()
            .and_then(RiskTier::from_rank)
            .ok_or_else(|| StoreError::Corrupt(format!("request {id}: tier {tier}")))?,
        raised_ms: r.get(6).map_err(&get)?,
        expires_ms: r.get(7).map_err(&get)?,
        status: Status::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("request {id}: unknown status {status:?}"))
        })?,
        decisions: Vec::new(),
        id,
    };
    let reviewer: Option<String> = r.get(9).map_err(&get)?;
    let decision = match reviewer {
        None => None,
        Some(reviewer) => {
            let verdict: String = r.get(12).map_err(&get)?;
            Some(DecisionFact {
                reviewer,
                at_ms: r.get(10).map_err(&get)?,
                dwell_ms: r.get(11).map_err(&get)?,
                confirm: verdict == "confirm",
            })
        }
    };
    Ok((fact, decision))
}

fn mark_fact(r: &Row<'_>) -> Result<MarkFact, StoreError> {
    let get = corrupt("an action mark");
    let step: i64 = r.get(2).map_err(&get)?;
    Ok(MarkFact {
        row: r.get(0).map_err(&get)?,
        request_id: r.get(1).map_err(&get)?,
        step: u64::try_from(step).unwrap_or(0),
        who: r.get(3).map_err(&get)?,
        at_ms: r.get(4).map_err(&get)?,
        appropriate: r.get(5).map_err(&get)?,
        agent_id: r.get(6).map_err(&get)?,
        agent_alias_id: r.get(7).map_err(&get)?,
        model: r.get(8).map_err(&get)?,
    })
}

fn page(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `?, ?, ...` for `n` parameters.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The most rows one `IN (...)` names.
const IN_CHUNK: usize = 500;

impl MetricsStore for SqliteStore {
    fn facts_after(&self, after: Cursor, n: usize) -> Result<FactBatch, StoreError> {
        let invocations = self.read_rows(
            "reading invocations for metrics",
            &format!("{INVOCATION_FACTS} WHERE i.id > ?1 ORDER BY i.id LIMIT ?2"),
            &[&after.invocations, &page(n)],
            invocation_fact,
        )?;
        let requests = self.read_rows(
            "reading requests for metrics",
            &format!(
                "SELECT {REQUEST_FACTS} FROM (SELECT rowid AS row, id, agent_id, agent_alias_id, action, tier, \
                 raised_at_ms, expires_at_ms, status FROM requests \
                 WHERE rowid > ?1 ORDER BY rowid LIMIT ?2) q \
                 LEFT JOIN decisions d ON d.request_id = q.id ORDER BY q.row, d.seq"
            ),
            &[&after.requests, &page(n)],
            request_row,
        )?;
        let marks = self.read_rows(
            "reading action marks for metrics",
            &format!("{MARK_FACTS} WHERE m.seq > ?1 ORDER BY m.seq LIMIT ?2"),
            &[&after.marks, &page(n)],
            mark_fact,
        )?;
        let requests = request_facts(requests);
        Ok(FactBatch {
            more: invocations.len() >= n || requests.len() >= n || marks.len() >= n,
            invocations,
            requests,
            marks,
        })
    }

    fn facts_at(
        &self,
        invocations: &[String],
        requests: &[String],
    ) -> Result<FactBatch, StoreError> {
        let mut batch = FactBatch::default();
        for rows in invocations.chunks(IN_CHUNK) {
            let args: Vec<&dyn rusqlite::ToSql> =
                rows.iter().map(|r| r as &dyn rusqlite::ToSql).collect();
            batch.invocations.extend(self.read_rows(
                "re-reading invocations in flight for metrics",
                &format!(
                    "{INVOCATION_FACTS} WHERE i.request_id IN ({}) ORDER BY i.id",
                    placeholders(rows.len())
                ),
                &args,
                invocation_fact,
            )?);
        }
        let mut rows_read = Vec::new();
        for rows in requests.chunks(IN_CHUNK) {
            let args: Vec<&dyn rusqlite::ToSql> =
                rows.iter().map(|r| r as &dyn rusqlite::ToSql).collect();
            rows_read.extend(self.read_rows(
                "re-reading open requests for metrics",
                &format!(
                    "SELECT {REQUEST_FACTS} FROM (SELECT rowid AS row, id, agent_id, agent_alias_id, action, tier, \
                 raised_at_ms, expires_at_ms, status FROM requests \
                     WHERE id IN ({})) q \
                     LEFT JOIN decisions d ON d.request_id = q.id ORDER BY q.row, d.seq",
                    placeholders(rows.len())
                ),
                &args,
                request_row,
            )?);
        }
        batch.requests = request_facts(rows_read);
        Ok(batch)
    }
}

impl SqliteStore {
    /// `TraceStore::mark_action`: checks the step, then appends the mark (fully synced: it is a
    /// person's judgement, not replayable trace data).
    pub(super) fn insert_mark(&self, m: &ActionMark) -> Result<(), StoreError> {
        let shown = self.shown();
        let doing = format!("marking step {} of invocation {}", m.step, m.request_id);
        let err = |e: rusqlite::Error| db_error(&shown, &doing, &e);
        let step = i64::try_from(m.step).unwrap_or(i64::MAX);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT s.trace_id FROM invocations i JOIN trace_steps s ON s.inv = i.id \
                 WHERE i.request_id = ?1 AND s.step = ?2",
                params![m.request_id, step],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        match stored {
            None => {
                return Err(StoreError::NotFound(format!(
                    "step {} of invocation {}",
                    m.step, m.request_id
                )));
            }
            Some(t) if t != m.trace_id => {
                return Err(StoreError::NotFound(format!(
                    "step {} of invocation {} with traceId {:?} (the step's traceId is {t:?})",
                    m.step, m.request_id, m.trace_id
                )));
            }
            Some(_) => {}
        }
        tx.execute(
            "INSERT INTO action_marks (request_id, step, trace_id, appropriate, note, who, \
             at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                m.request_id,
                step,
                m.trace_id,
                m.appropriate,
                m.note,
                m.who,
                to_ms(m.at)
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    pub(super) fn read_marks(&self, request_id: &str) -> Result<Vec<ActionMark>, StoreError> {
        self.read_rows(
            "reading action marks",
            "SELECT request_id, step, trace_id, appropriate, note, who, at_ms FROM action_marks \
             WHERE request_id = ?1 ORDER BY seq",
            &[&request_id],
            |r| {
                let get = corrupt("an action mark");
                let step: i64 = r.get(1).map_err(&get)?;
                Ok(ActionMark {
                    request_id: r.get(0).map_err(&get)?,
                    step: u64::try_from(step).unwrap_or(0),
                    trace_id: r.get(2).map_err(&get)?,
                    appropriate: r.get(3).map_err(&get)?,
                    note: r.get(4).map_err(&get)?,
                    who: r.get(5).map_err(&get)?,
                    at: from_ms(r.get(6).map_err(&get)?, &"an action mark")?,
                })
            },
        )
    }
}
