//! `TraceStore` on SQLite: sessions, invocations, trace events grouped into steps by traceId
//! (running figures per step, raw JSON per event) and chunk text. A batch of events is one
//! transaction; every read is a page.

use chrono::SecondsFormat;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::schema::{from_ms, to_ms};
use super::{SqliteStore, db_error};
use crate::domain::trace::{StepAccumulator, TraceEvent};
use crate::store::{
    InvocationEnd, InvocationRecord, InvocationStart, Outcome, SessionRow, StepRow, StoreError,
    StoredEvent, TraceStore,
};

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const INVOCATION_COLUMNS: &str = "request_id, agent_id, agent_alias_id, session_id, input_text, \
     resumes, started_at_ms, ended_at_ms, outcome, error, final_response, latency_ms, \
     input_tokens, output_tokens, events, steps, chunks";

fn invocation_row(row: &Row<'_>) -> Result<InvocationRecord, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading an invocation: {e}"));
    let id: String = row.get(0).map_err(get)?;
    let outcome: String = row.get(8).map_err(get)?;
    let ended: Option<i64> = row.get(7).map_err(get)?;
    let what = format!("invocation {id}");
    Ok(InvocationRecord {
        start: InvocationStart {
            request_id: id.clone(),
            agent_id: row.get(1).map_err(get)?,
            agent_alias_id: row.get(2).map_err(get)?,
            session_id: row.get(3).map_err(get)?,
            input_text: row.get(4).map_err(get)?,
            resumes: row.get(5).map_err(get)?,
            started_at: from_ms(row.get(6).map_err(get)?, &what)?,
        },
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("{what}: unknown outcome {outcome:?}")))?,
        ended_at: ended.map(|ms| from_ms(ms, &what)).transpose()?,
        error: row.get(9).map_err(get)?,
        final_response: row.get(10).map_err(get)?,
        latency_ms: row.get(11).map_err(get)?,
        input_tokens: row.get(12).map_err(get)?,
        output_tokens: row.get(13).map_err(get)?,
        events: count(row.get(14).map_err(get)?),
        steps: count(row.get(15).map_err(get)?),
        chunks: count(row.get(16).map_err(get)?),
    })
}

const EVENT_COLUMNS: &str = "request_id, seq, step, trace_id, kind, event_time, summary, raw";

fn event_row(row: &Row<'_>) -> Result<StoredEvent, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading a trace event: {e}"));
    let request_id: String = row.get(0).map_err(get)?;
    let seq: i64 = row.get(1).map_err(get)?;
    let raw: String = row.get(7).map_err(get)?;
    Ok(StoredEvent {
        raw: serde_json::from_str(&raw).map_err(|e| {
            StoreError::Corrupt(format!(
                "invocation {request_id} event {seq}: raw JSON does not parse: {e}"
            ))
        })?,
        request_id,
        seq: count(seq),
        step: count(row.get(2).map_err(get)?),
        trace_id: row.get(3).map_err(get)?,
        kind: row.get(4).map_err(get)?,
        event_time: row.get(5).map_err(get)?,
        summary: row.get(6).map_err(get)?,
    })
}

const STEP_COLUMNS: &str = "request_id, step, trace_id, kinds, events, first_seq, last_seq, \
     rationale, input_tokens, output_tokens, meta_start_ns, meta_end_ns, total_time_ms, \
     first_time_ns, last_time_ns";

fn accumulator(row: &Row<'_>, from: usize) -> Result<StepAccumulator, rusqlite::Error> {
    Ok(StepAccumulator {
        input_tokens: row.get(from)?,
        output_tokens: row.get(from + 1)?,
        meta_start_ns: row.get(from + 2)?,
        meta_end_ns: row.get(from + 3)?,
        total_time_ms: row.get(from + 4)?,
        first_time_ns: row.get(from + 5)?,
        last_time_ns: row.get(from + 6)?,
    })
}

fn step_row(row: &Row<'_>) -> Result<StepRow, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading a trace step: {e}"));
    Ok(StepRow {
        request_id: row.get(0).map_err(get)?,
        step: count(row.get(1).map_err(get)?),
        trace_id: row.get(2).map_err(get)?,
        kinds: row.get(3).map_err(get)?,
        events: count(row.get(4).map_err(get)?),
        first_seq: count(row.get(5).map_err(get)?),
        last_seq: count(row.get(6).map_err(get)?),
        rationale: row.get(7).map_err(get)?,
        figures: accumulator(row, 8).map_err(get)?.figures(),
    })
}

/// Appends one event inside the batch transaction: finds or opens its step, updates the step's
/// running figures, writes the event row.
fn append_event(
    tx: &Connection,
    shown: &str,
    request_id: &str,
    seq: i64,
    steps: &mut i64,
    event: &TraceEvent,
) -> Result<(), StoreError> {
    let err = |e: rusqlite::Error| {
        db_error(
            shown,
            &format!("recording event {seq} of invocation {request_id}"),
            &e,
        )
    };
    let key = event.step_key();
    let kind = event.kind_name();
    let existing: Option<(i64, String, Option<String>, StepAccumulator)> = tx
        .prepare_cached(
            "SELECT step, kinds, rationale, input_tokens, output_tokens, meta_start_ns, \
             meta_end_ns, total_time_ms, first_time_ns, last_time_ns \
             FROM trace_steps WHERE request_id = ?1 AND trace_id = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![request_id, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, accumulator(r, 3)?))
            })
            .optional()
        })
        .map_err(err)?;
    let step = if let Some((step, kinds, rationale, mut acc)) = existing {
        acc.add(event);
        let kinds = if kinds.split(',').any(|k| k == kind) {
            kinds
        } else {
            format!("{kinds},{kind}")
        };
        tx.prepare_cached(
            "UPDATE trace_steps SET kinds = ?3, events = events + 1, last_seq = ?4, \
                 rationale = ?5, input_tokens = ?6, output_tokens = ?7, meta_start_ns = ?8, \
                 meta_end_ns = ?9, total_time_ms = ?10, first_time_ns = ?11, last_time_ns = ?12 \
                 WHERE request_id = ?1 AND step = ?2",
        )
        .and_then(|mut st| {
            st.execute(params![
                request_id,
                step,
                kinds,
                seq,
                rationale.or_else(|| event.rationale().map(str::to_owned)),
                acc.input_tokens,
                acc.output_tokens,
                acc.meta_start_ns,
                acc.meta_end_ns,
                acc.total_time_ms,
                acc.first_time_ns,
                acc.last_time_ns,
            ])
        })
        .map_err(err)?;
        step
    } else {
        *steps += 1;
        let mut acc = StepAccumulator::default();
        acc.add(event);
        tx.prepare_cached(
            "INSERT INTO trace_steps (request_id, step, trace_id, kinds, events, first_seq, \
                 last_seq, rationale, input_tokens, output_tokens, meta_start_ns, meta_end_ns, \
                 total_time_ms, first_time_ns, last_time_ns) \
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .and_then(|mut st| {
            st.execute(params![
                request_id,
                *steps,
                key,
                kind,
                seq,
                event.rationale(),
                acc.input_tokens,
                acc.output_tokens,
                acc.meta_start_ns,
                acc.meta_end_ns,
                acc.total_time_ms,
                acc.first_time_ns,
                acc.last_time_ns,
            ])
        })
        .map_err(err)?;
        *steps
    };
    let raw = serde_json::to_string(&event.raw).map_err(|e| {
        StoreError::Corrupt(format!(
            "invocation {request_id} event {seq}: cannot serialise it: {e}"
        ))
    })?;
    tx.prepare_cached(
        "INSERT INTO trace_events (request_id, seq, step, trace_id, kind, event_time, summary, \
         raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            request_id,
            seq,
            step,
            event.trace_id(),
            kind,
            event
                .event_time
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            event.summary(),
            raw,
        ])
    })
    .map_err(err)?;
    Ok(())
}

impl TraceStore for SqliteStore {
    fn begin_invocation(&self, s: &InvocationStart) -> Result<(), StoreError> {
        let shown = self.shown();
        let mut conn = self.lock();
        let doing = format!("recording invocation {}", s.request_id);
        let err = |e: rusqlite::Error| db_error(&shown, &doing, &e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let at = to_ms(s.started_at);
        let inserted = tx
            .execute(
                "INSERT INTO invocations (request_id, agent_id, agent_alias_id, session_id, \
                 input_text, resumes, started_at_ms, outcome) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running') ON CONFLICT DO NOTHING",
                params![
                    s.request_id,
                    s.agent_id,
                    s.agent_alias_id,
                    s.session_id,
                    s.input_text,
                    s.resumes,
                    at
                ],
            )
            .map_err(err)?;
        if inserted == 0 {
            return Err(StoreError::Duplicate(crate::domain::approval::ApprovalId(
                s.request_id.clone(),
            )));
        }
        tx.execute(
            "INSERT INTO sessions (agent_id, agent_alias_id, session_id, first_at_ms, last_at_ms, \
             invocations) VALUES (?1, ?2, ?3, ?4, ?4, 1) \
             ON CONFLICT (agent_id, agent_alias_id, session_id) DO UPDATE SET \
             last_at_ms = max(last_at_ms, excluded.last_at_ms), invocations = invocations + 1",
            params![s.agent_id, s.agent_alias_id, s.session_id, at],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn append_trace(
        &self,
        request_id: &str,
        events: &[TraceEvent],
        chunks: &[String],
    ) -> Result<(), StoreError> {
        if events.is_empty() && chunks.is_empty() {
            return Ok(());
        }
        let shown = self.shown();
        let mut conn = self.lock();
        let doing = format!("recording the trace of invocation {request_id}");
        let err = |e: rusqlite::Error| db_error(&shown, &doing, &e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let counters: Option<(i64, i64, i64, i64, i64)> = tx
            .prepare_cached(
                "SELECT events, steps, chunks, input_tokens, output_tokens FROM invocations \
                 WHERE request_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([request_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(err)?;
        let Some((mut seq, mut steps, mut chunk_seq, mut input_tokens, mut output_tokens)) =
            counters
        else {
            return Err(StoreError::NotFound(format!("invocation {request_id}")));
        };
        for event in events {
            seq += 1;
            append_event(&tx, &shown, request_id, seq, &mut steps, event)?;
            if let Some(m) = event.metadata() {
                input_tokens += m.input_tokens.unwrap_or(0);
                output_tokens += m.output_tokens.unwrap_or(0);
            }
        }
        for text in chunks {
            chunk_seq += 1;
            tx.prepare_cached("INSERT INTO chunks (request_id, seq, text) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![request_id, chunk_seq, text]))
                .map_err(err)?;
        }
        tx.execute(
            "UPDATE invocations SET events = ?2, steps = ?3, chunks = ?4, input_tokens = ?5, \
             output_tokens = ?6 WHERE request_id = ?1",
            params![
                request_id,
                seq,
                steps,
                chunk_seq,
                input_tokens,
                output_tokens
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn finish_invocation(&self, request_id: &str, end: &InvocationEnd) -> Result<(), StoreError> {
        let shown = self.shown();
        let conn = self.lock();
        let changed = conn
            .execute(
                "UPDATE invocations SET outcome = ?2, ended_at_ms = ?3, error = ?4, \
                 final_response = ?5, latency_ms = ?6 WHERE request_id = ?1",
                params![
                    request_id,
                    end.outcome.as_str(),
                    to_ms(end.ended_at),
                    end.error,
                    end.final_response,
                    end.latency_ms
                ],
            )
            .map_err(|e| db_error(&shown, &format!("finishing invocation {request_id}"), &e))?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("invocation {request_id}")));
        }
        Ok(())
    }

    fn invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        let sql = format!("SELECT {INVOCATION_COLUMNS} FROM invocations WHERE request_id = ?1");
        Ok(self
            .read_rows(
                "reading an invocation",
                &sql,
                &[&request_id],
                invocation_row,
            )?
            .pop())
    }

    fn sessions(&self, offset: usize, lim: usize) -> Result<Vec<SessionRow>, StoreError> {
        self.read_rows(
            "reading sessions",
            "SELECT agent_id, agent_alias_id, session_id, first_at_ms, last_at_ms, invocations \
             FROM sessions ORDER BY last_at_ms DESC, agent_id, agent_alias_id, session_id \
             LIMIT ?1 OFFSET ?2",
            &[&limit(lim), &limit(offset)],
            |r| {
                let get =
                    |e: rusqlite::Error| StoreError::Corrupt(format!("reading a session: {e}"));
                let session: String = r.get(2).map_err(get)?;
                let what = format!("session {session}");
                Ok(SessionRow {
                    agent_id: r.get(0).map_err(get)?,
                    agent_alias_id: r.get(1).map_err(get)?,
                    first_at: from_ms(r.get(3).map_err(get)?, &what)?,
                    last_at: from_ms(r.get(4).map_err(get)?, &what)?,
                    invocations: count(r.get(5).map_err(get)?),
                    session_id: session,
                })
            },
        )
    }

    fn invocations(
        &self,
        session_id: &str,
        offset: usize,
        lim: usize,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let sql = format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE session_id = ?1 \
             ORDER BY started_at_ms, request_id LIMIT ?2 OFFSET ?3"
        );
        self.read_rows(
            "reading invocations",
            &sql,
            &[&session_id, &limit(lim), &limit(offset)],
            invocation_row,
        )
    }

    fn steps(&self, request_id: &str, after: u64, lim: usize) -> Result<Vec<StepRow>, StoreError> {
        let sql = format!(
            "SELECT {STEP_COLUMNS} FROM trace_steps WHERE request_id = ?1 AND step > ?2 \
             ORDER BY step LIMIT ?3"
        );
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read_rows(
            "reading trace steps",
            &sql,
            &[&request_id, &after, &limit(lim)],
            step_row,
        )
    }

    fn step_events(&self, request_id: &str, step: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM trace_events WHERE request_id = ?1 AND step = ?2 \
             ORDER BY seq"
        );
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.read_rows(
            "reading a step's events",
            &sql,
            &[&request_id, &step],
            event_row,
        )
    }

    fn events(
        &self,
        request_id: &str,
        after_seq: u64,
        lim: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM trace_events WHERE request_id = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3"
        );
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        self.read_rows(
            "reading trace events",
            &sql,
            &[&request_id, &after, &limit(lim)],
            event_row,
        )
    }

    fn chunk_text(&self, request_id: &str) -> Result<String, StoreError> {
        Ok(self
            .read_rows(
                "reading chunks",
                "SELECT text FROM chunks WHERE request_id = ?1 ORDER BY seq",
                &[&request_id],
                |r| {
                    r.get::<_, String>(0)
                        .map_err(|e| StoreError::Corrupt(format!("reading a chunk: {e}")))
                },
            )?
            .concat())
    }
}
