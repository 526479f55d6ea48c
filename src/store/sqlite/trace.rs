//! `TraceStore` on SQLite: sessions, invocations, trace events grouped into steps by traceId
//! (running figures per step, raw JSON per event, kept in blocks of a batch's events: schema
//! migration 10, the JSON packed by `pack`: migration 11) and chunk text. A write (a turn's
//! start, a batch of events, its end, or any of them together) is one transaction, committed
//! without an fsync (`SqliteStore::trace_write`); every read is a page. Events, steps and chunks
//! are keyed by their invocation's integer `id` (schema migration 8); the request id is only in
//! `invocations`, so reads by request id join it.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use chrono::SecondsFormat;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::schema::{from_ms, to_ms};
use super::{SqliteStore, db_error};
use crate::domain::json_text::JsonText;
use crate::domain::metrics::EventTiming;
use crate::domain::step_kind::StepKinds;
use crate::domain::trace::{StepAccumulator, TraceEvent};
use crate::store::run::{IndexCursor, IndexPage, IndexedStep, note_step_event};
use crate::store::{
    ActionMark, InvocationEnd, InvocationRecord, InvocationStart, Outcome, RunnerStore,
    RunnerWrite, SessionRow, StepRow, StoreError, StoredEvent, TraceStore, TurnWrite,
    skipped_after_failure,
};

/// Called after every trace write this process commits.
type CommitListener = Box<dyn Fn() -> bool + Send>;

static COMMIT_LISTENERS: std::sync::Mutex<Vec<CommitListener>> = std::sync::Mutex::new(Vec::new());

/// Calls `listener` after every trace write committed by this process (to any SQLite store),
/// until it returns false. A console in the same process as the runner (the demo) learns of a
/// new step at once, without waiting for the file watcher's settling reload; other processes
/// are still seen through the watcher.
pub fn on_trace_commit(listener: impl Fn() -> bool + Send + 'static) {
    COMMIT_LISTENERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Box::new(listener));
}

/// Tells the listeners a trace write was committed.
pub(super) fn trace_committed() {
    COMMIT_LISTENERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|listener| listener());
}

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

/// Events in a block at most: an event's position is its block's id shifted left by
/// `BLOCK_SHIFT`, plus its place in the block (the search index's rowid, the trace index's
/// cursor).
const BLOCK_SHIFT: u32 = 12;
pub(crate) const BLOCK_EVENTS: usize = 1 << BLOCK_SHIFT;
/// A block is closed once its events' JSON passes this many bytes, so a read of a few events
/// (a step's) never parses much more than it needs.
pub(crate) const BLOCK_BYTES: usize = 64 * 1024;

/// An event's position: its block's id and its place in the block.
fn position(block: i64, place: usize) -> i64 {
    (block << BLOCK_SHIFT) | i64::try_from(place).unwrap_or(0)
}

/// A block row with its invocation's request id: `b` is `trace_blocks`, `i` `invocations`.
const BLOCK_COLUMNS: &str = "i.request_id, b.id, b.first_seq, b.n, b.steps, b.kinds, b.raw";

/// A block of events as read back, its arrays checked against its count.
struct Block {
    request_id: String,
    first_seq: i64,
    steps: Vec<i64>,
    kinds: Vec<String>,
    raw: Vec<serde_json::Value>,
}

fn block_row(row: &Row<'_>) -> Result<Block, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading trace events: {e}"));
    let request_id: String = row.get(0).map_err(get)?;
    let id: i64 = row.get(1).map_err(get)?;
    let first_seq: i64 = row.get(2).map_err(get)?;
    let n: i64 = row.get(3).map_err(get)?;
    let bad = |what: String| {
        StoreError::Corrupt(format!(
            "invocation {request_id}, trace block {id} (events {first_seq} on): {what}"
        ))
    };
    let steps: Vec<i64> = parse_column(row, 4, "steps").map_err(&bad)?;
    let kinds: Vec<String> = parse_column(row, 5, "kinds").map_err(&bad)?;
    let raw: Vec<serde_json::Value> = raw_column(row, 6).map_err(&bad)?;
    let n = usize::try_from(n).unwrap_or(0);
    if steps.len() != n || kinds.len() != n || raw.len() != n {
        return Err(bad(format!(
            "{n} events, but {} steps, {} kinds and {} raw events",
            steps.len(),
            kinds.len(),
            raw.len()
        )));
    }
    Ok(Block {
        request_id,
        first_seq,
        steps,
        kinds,
        raw,
    })
}

/// A block's JSON array column, parsed.
fn parse_column<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    at: usize,
    name: &str,
) -> Result<T, String> {
    let text: String = row.get(at).map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{name}: not the JSON array expected: {e}"))
}

/// A block's packed raw JSON (`pack`), unpacked and parsed.
fn raw_column(row: &Row<'_>, at: usize) -> Result<Vec<serde_json::Value>, String> {
    let packed = row
        .get_ref(at)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .map_err(|e| format!("raw JSON: not a packed block: {e}"))?;
    let text = super::pack::unpack(packed).map_err(|e| format!("raw JSON: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("raw JSON: not the JSON array expected: {e}"))
}

impl Block {
    /// Its events whose seq and step `keep` takes, in order, until `out` holds `max`.
    fn take_into(self, out: &mut Vec<StoredEvent>, max: usize, keep: impl Fn(i64, i64) -> bool) {
        let events = self.steps.into_iter().zip(self.kinds).zip(self.raw);
        for (seq, ((step, kind), raw)) in (self.first_seq..).zip(events) {
            if out.len() >= max {
                return;
            }
            if keep(seq, step) {
                out.push(stored_event(&self.request_id, seq, step, kind, raw));
            }
        }
    }
}

fn stored_event(
    request_id: &str,
    seq: i64,
    step: i64,
    kind: String,
    raw: serde_json::Value,
) -> StoredEvent {
    // What the JSON says is read from it, as it was when the event was written.
    let event = TraceEvent::from_wire(raw);
    StoredEvent {
        request_id: request_id.to_owned(),
        seq: count(seq),
        step: count(step),
        trace_id: event.trace_id().map(str::to_owned),
        kind,
        event_time: event_time_text(&event),
        summary: event.summary(),
        raw: event.raw.into_value(),
    }
}

/// A step row with its invocation's request id: `s` is `trace_steps`, `i` `invocations`.
const STEP_COLUMNS: &str = "i.request_id, s.step, s.trace_id, s.kinds, s.events, s.first_seq, \
     s.last_seq, s.rationale, s.input_tokens, s.output_tokens, s.meta_start_ns, s.meta_end_ns, \
     s.total_time_ms, s.first_time_ns, s.last_time_ns";

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

fn indexed_step(row: &Row<'_>) -> Result<IndexedStep, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading a trace step: {e}"));
    let kind_set: i64 = row.get(2).map_err(get)?;
    let depth: i64 = row.get(3).map_err(get)?;
    let kinds: String = row.get(4).map_err(get)?;
    let acc = accumulator(row, 5).map_err(get)?;
    let kinds = match u16::try_from(kind_set) {
        Ok(0) | Err(_) => StepKinds::from_kind_names(&kinds),
        Ok(bits) => StepKinds(bits),
    };
    Ok(IndexedStep {
        request_id: row.get(0).map_err(get)?,
        step: count(row.get(1).map_err(get)?),
        kinds,
        depth: u8::try_from(depth).unwrap_or(u8::MAX),
        figures: acc.figures(),
        start_ns: acc.meta_start_ns.or(acc.first_time_ns),
    })
}

/// A step touched by the batch being written: its row as read (or as new), updated in memory
/// event by event and written once at the end of the batch.
struct TouchedStep {
    step: i64,
    trace_id: String,
    kinds: String,
    rationale: Option<String>,
    acc: StepAccumulator,
    /// Events this batch added.
    added: i64,
    first_seq: i64,
    last_seq: i64,
    /// Not yet in the table.
    new: bool,
    /// `StepKinds` bits.
    kind_set: i64,
    /// Collaborator depth of its first event.
    depth: i64,
}

/// The steps of one invocation, by a hash of their traceId, known while every event of it was
/// written through this handle since its row was inserted: a traceId its next batch brings that
/// is not among them is a new step, with no read of `trace_steps` to find that out (a long
/// import's batches are mostly new steps). It holds only while the invocation's event count is
/// the one it left: anything else (another writer, a write that rolled back) drops it.
#[derive(Debug)]
pub(crate) struct KnownSteps {
    request_id: String,
    events: i64,
    keys: HashSet<u64>,
}

/// What a store's trace writes keep from batch to batch: the steps known of the invocation
/// last written, and the block writer with its buffers.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    known: Option<KnownSteps>,
    block: BlockWriter,
}

/// Steps known at most (about 20 MB of hashes, ~30 MB while the set grows); past that, new
/// steps are looked for in the table.
const KNOWN_STEPS_MAX: usize = 1 << 20;

fn step_hash(key: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The running counters of an invocation, as the batch finds and leaves them.
#[derive(Debug, Default, Clone)]
struct Counters {
    events: i64,
    steps: i64,
    chunks: i64,
    input_tokens: i64,
    output_tokens: i64,
    /// The first foundation model the trace names, and the model and tool time it accounts
    /// for (`domain::metrics::EventTiming`).
    model: Option<String>,
    model_ms: i64,
    tool_ms: i64,
}

/// Inserts the invocation row and counts it in its session. Gives the row's integer key.
fn insert_invocation(tx: &Connection, shown: &str, s: &InvocationStart) -> Result<i64, StoreError> {
    let doing = format!("recording invocation {}", s.request_id);
    let err = |e: rusqlite::Error| db_error(shown, &doing, &e);
    let at = to_ms(s.started_at);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO invocations (request_id, agent_id, agent_alias_id, session_id, \
             input_text, resumes, started_at_ms, outcome) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running') ON CONFLICT DO NOTHING",
        )
        .and_then(|mut st| {
            st.execute(params![
                s.request_id,
                s.agent_id,
                s.agent_alias_id,
                s.session_id,
                s.input_text,
                s.resumes,
                at
            ])
        })
        .map_err(err)?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(crate::domain::approval::ApprovalId(
            s.request_id.clone(),
        )));
    }
    let id = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO sessions (agent_id, agent_alias_id, session_id, first_at_ms, last_at_ms, \
         invocations) VALUES (?1, ?2, ?3, ?4, ?4, 1) \
         ON CONFLICT (agent_id, agent_alias_id, session_id) DO UPDATE SET \
         last_at_ms = max(last_at_ms, excluded.last_at_ms), invocations = invocations + 1",
    )
    .and_then(|mut st| st.execute(params![s.agent_id, s.agent_alias_id, s.session_id, at]))
    .map_err(err)?;
    Ok(id)
}

/// The update of an invocation's running counters after a batch (`?1` its id).
macro_rules! set_counters {
    () => {
        "UPDATE invocations SET events = ?2, steps = ?3, chunks = ?4, input_tokens = ?5, \
         output_tokens = ?6, model = ?7, model_ms = ?8, tool_ms = ?9"
    };
}

/// Appends a batch inside a transaction: each event finds or opens its step (read once per
/// step per batch), the event blocks and chunks are written, then each touched step and the
/// invocation's counters once, with how it ended when `end` is given (one update of its row
/// for a short turn's whole write). `fresh` is the key of an invocation row inserted in this
/// same transaction, so it has no steps and zero counters yet and nothing needs reading.
#[allow(
    clippy::too_many_arguments,
    reason = "one write's parts, each from the caller's TurnWrite"
)]
fn append_batch(
    tx: &Connection,
    shown: &str,
    request_id: &str,
    fresh: Option<i64>,
    events: &[TraceEvent],
    chunks: &[String],
    end: Option<&InvocationEnd>,
    scratch: &mut Scratch,
) -> Result<(), StoreError> {
    let Scratch { known, block } = scratch;
    let doing = format!("recording the trace of invocation {request_id}");
    let err = |e: rusqlite::Error| db_error(shown, &doing, &e);
    let (inv, mut c) = if let Some(inv) = fresh {
        (inv, Counters::default())
    } else {
        let counters: Option<(i64, Counters)> = tx
            .prepare_cached(
                "SELECT id, events, steps, chunks, input_tokens, output_tokens, model, model_ms, \
                 tool_ms FROM invocations WHERE request_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([request_id], |r| {
                    Ok((
                        r.get(0)?,
                        Counters {
                            events: r.get(1)?,
                            steps: r.get(2)?,
                            chunks: r.get(3)?,
                            input_tokens: r.get(4)?,
                            output_tokens: r.get(5)?,
                            model: r.get(6)?,
                            model_ms: r.get(7)?,
                            tool_ms: r.get(8)?,
                        },
                    ))
                })
                .optional()
            })
            .map_err(err)?;
        counters.ok_or_else(|| StoreError::NotFound(format!("invocation {request_id}")))?
    };
    let fresh = fresh.is_some();
    if fresh {
        *known = Some(KnownSteps {
            request_id: request_id.to_owned(),
            events: 0,
            keys: HashSet::new(),
        });
    } else if !known
        .as_ref()
        .is_some_and(|k| k.request_id == request_id && k.events == c.events)
    {
        *known = None;
    }
    let mut touched: Vec<TouchedStep> = Vec::new();
    // Where each touched step is in `touched`, by traceId: a batch of a long trace touches
    // hundreds of steps, and scanning them for every event was quadratic in the batch.
    let mut touched_at: HashMap<String, usize> = HashMap::new();
    let mut insert = tx.prepare_cached(INSERT_BLOCK).map_err(err)?;
    block.reset();
    let block_err = |first: i64, last: i64, e: rusqlite::Error| {
        db_error(
            shown,
            &format!("recording events {first} to {last} of invocation {request_id}"),
            &e,
        )
    };
    for event in events {
        c.events += 1;
        let seq = c.events;
        let event_err = |e: rusqlite::Error| {
            db_error(
                shown,
                &format!("recording event {seq} of invocation {request_id}"),
                &e,
            )
        };
        let key = event.step_key();
        let kind = event.kind_name();
        // The last touched step first: a step's events mostly come together.
        let at = if touched.last().is_some_and(|t| t.trace_id == key) {
            touched.len() - 1
        } else if let Some(&i) = touched_at.get(key) {
            i
        } else {
            let hash = step_hash(key);
            let existing = if fresh || known.as_ref().is_some_and(|k| !k.keys.contains(&hash)) {
                None
            } else {
                read_step(tx, inv, key).map_err(event_err)?
            };
            if let Some(k) = known.as_mut() {
                k.keys.insert(hash);
            }
            touched.push(existing.unwrap_or_else(|| {
                c.steps += 1;
                TouchedStep {
                    step: c.steps,
                    trace_id: key.to_owned(),
                    kinds: String::new(),
                    rationale: None,
                    acc: StepAccumulator::default(),
                    added: 0,
                    first_seq: seq,
                    last_seq: seq,
                    new: true,
                    kind_set: 0,
                    depth: i64::from(crate::store::run::collaborator_depth(event)),
                }
            }));
            touched_at.insert(key.to_owned(), touched.len() - 1);
            touched.len() - 1
        };
        let t = &mut touched[at];
        note_step_event(&mut t.kinds, &mut t.rationale, &mut t.acc, &kind, event);
        t.kind_set |= i64::from(StepKinds::of_event(event).0);
        t.added += 1;
        t.last_seq = seq;
        if let Some(m) = event.metadata() {
            c.input_tokens += m.input_tokens.unwrap_or(0);
            c.output_tokens += m.output_tokens.unwrap_or(0);
        }
        let timing = EventTiming::of(event);
        if c.model.is_none() {
            c.model = timing.model.map(str::to_owned);
        }
        c.model_ms += timing.model_ms;
        c.tool_ms += timing.tool_ms;
        let raw = event.raw.to_json().map_err(|e| {
            StoreError::Corrupt(format!(
                "invocation {request_id} event {seq}: cannot serialise it: {e}"
            ))
        })?;
        block.push(seq, t.step, &kind, &raw);
        if block.full() {
            let first = block.first_seq;
            block
                .flush(&mut insert, inv)
                .map_err(|e| block_err(first, seq, e))?;
        }
    }
    let first = block.first_seq;
    block
        .flush(&mut insert, inv)
        .map_err(|e| block_err(first, c.events, e))?;
    for t in &touched {
        write_step(tx, inv, t).map_err(err)?;
    }
    if let Some(k) = known.as_mut() {
        k.events = c.events;
        if k.keys.len() > KNOWN_STEPS_MAX {
            *known = None;
        }
    }
    for text in chunks {
        c.chunks += 1;
        tx.prepare_cached("INSERT INTO chunks (inv, seq, text) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![inv, c.chunks, text]))
            .map_err(err)?;
    }
    if fresh && events.is_empty() && chunks.is_empty() && end.is_none() {
        return Ok(());
    }
    // The counters, then (with an end) how the turn ended, in one update of the row.
    let (outcome, ended_ms) = (
        end.map(|e| e.outcome.as_str()),
        end.map(|e| to_ms(e.ended_at)),
    );
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![
        &inv,
        &c.events,
        &c.steps,
        &c.chunks,
        &c.input_tokens,
        &c.output_tokens,
        &c.model,
        &c.model_ms,
        &c.tool_ms,
    ];
    let sql = if let Some(end) = end {
        args.extend([
            &outcome as &dyn rusqlite::ToSql,
            &ended_ms,
            &end.error,
            &end.final_response,
            &end.latency_ms,
        ]);
        concat!(
            set_counters!(),
            ", outcome = ?10, ended_at_ms = ?11, error = ?12, final_response = ?13, \
             latency_ms = ?14 WHERE id = ?1"
        )
    } else {
        concat!(set_counters!(), " WHERE id = ?1")
    };
    tx.prepare_cached(sql)
        .and_then(|mut st| st.execute(&*args))
        .map_err(err)?;
    Ok(())
}

/// A step already in the table, by its traceId.
fn read_step(tx: &Connection, inv: i64, key: &str) -> Result<Option<TouchedStep>, rusqlite::Error> {
    tx.prepare_cached(
        "SELECT step, kinds, rationale, input_tokens, output_tokens, meta_start_ns, \
         meta_end_ns, total_time_ms, first_time_ns, last_time_ns, first_seq, last_seq, \
         kind_set, depth FROM trace_steps WHERE inv = ?1 AND trace_id = ?2",
    )?
    .query_row(params![inv, key], |r| {
        Ok(TouchedStep {
            step: r.get(0)?,
            trace_id: key.to_owned(),
            kinds: r.get(1)?,
            rationale: r.get(2)?,
            acc: accumulator(r, 3)?,
            added: 0,
            first_seq: r.get(10)?,
            last_seq: r.get(11)?,
            new: false,
            kind_set: r.get(12)?,
            depth: r.get(13)?,
        })
    })
    .optional()
}

/// Writes a touched step: a new row, or the stored one brought up to date.
fn write_step(tx: &Connection, inv: i64, t: &TouchedStep) -> Result<(), rusqlite::Error> {
    let a = &t.acc;
    if t.new {
        tx.prepare_cached(
            "INSERT INTO trace_steps (inv, step, trace_id, kinds, events, first_seq, \
             last_seq, rationale, input_tokens, output_tokens, meta_start_ns, meta_end_ns, \
             total_time_ms, first_time_ns, last_time_ns, kind_set, depth) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?
        .execute(params![
            inv,
            t.step,
            t.trace_id,
            t.kinds,
            t.added,
            t.first_seq,
            t.last_seq,
            t.rationale,
            a.input_tokens,
            a.output_tokens,
            a.meta_start_ns,
            a.meta_end_ns,
            a.total_time_ms,
            a.first_time_ns,
            a.last_time_ns,
            t.kind_set,
            t.depth,
        ])?;
    } else {
        tx.prepare_cached(
            "UPDATE trace_steps SET kinds = ?3, events = events + ?4, last_seq = ?5, \
             rationale = ?6, input_tokens = ?7, output_tokens = ?8, meta_start_ns = ?9, \
             meta_end_ns = ?10, total_time_ms = ?11, first_time_ns = ?12, last_time_ns = ?13, \
             kind_set = ?14 WHERE inv = ?1 AND step = ?2",
        )?
        .execute(params![
            inv,
            t.step,
            t.kinds,
            t.added,
            t.last_seq,
            t.rationale,
            a.input_tokens,
            a.output_tokens,
            a.meta_start_ns,
            a.meta_end_ns,
            a.total_time_ms,
            a.first_time_ns,
            a.last_time_ns,
            t.kind_set,
        ])?;
    }
    Ok(())
}

const INSERT_BLOCK: &str = "INSERT INTO trace_blocks (inv, first_seq, n, steps, kinds, raw) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// An event's time as stored events give it: RFC 3339 with the nanoseconds Bedrock sent.
fn event_time_text(event: &TraceEvent) -> Option<String> {
    event
        .event_time
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The block of events being written: JSON arrays of their steps, kinds and raw JSON, each
/// still open. A store keeps one (in `Scratch`) from batch to batch, so each turn's block is
/// built in buffers already grown and packed with the same LZ4 table.
#[derive(Debug)]
struct BlockWriter {
    first_seq: i64,
    n: usize,
    steps: String,
    /// The kind names, escaped by the JSON writer the runner uses (a kind this version does
    /// not know carries the wire's key).
    kinds: JsonText,
    raw: String,
    packer: super::pack::Packer,
    packed: Vec<u8>,
}

impl Default for BlockWriter {
    fn default() -> Self {
        Self {
            first_seq: 0,
            n: 0,
            steps: String::new(),
            kinds: JsonText::with_capacity(0),
            raw: String::new(),
            packer: super::pack::Packer::default(),
            packed: Vec::new(),
        }
    }
}

/// The block's text and packed buffers shrink back to this after a block, so one huge event
/// does not pin its memory for the store's life.
const BLOCK_KEEP: usize = 4 * BLOCK_BYTES;

impl BlockWriter {
    /// Empty, whatever an earlier batch (one that failed midway) left.
    fn reset(&mut self) {
        self.n = 0;
        for array in [&mut self.steps, self.kinds.buf_mut(), &mut self.raw] {
            array.clear();
        }
    }

    fn push(&mut self, seq: i64, step: i64, kind: &str, raw: &str) {
        use std::fmt::Write as _;
        let opening = if self.n == 0 {
            self.first_seq = seq;
            '['
        } else {
            ','
        };
        self.steps.push(opening);
        let _ = write!(self.steps, "{step}");
        self.kinds.buf_mut().push(opening);
        self.kinds.string(kind);
        self.raw.push(opening);
        self.raw.push_str(raw);
        self.n += 1;
    }

    fn full(&self) -> bool {
        self.n >= BLOCK_EVENTS || self.raw.len() >= BLOCK_BYTES
    }

    /// Writes the block (if it holds any event) and empties it for the next.
    fn flush(
        &mut self,
        insert: &mut rusqlite::CachedStatement<'_>,
        inv: i64,
    ) -> rusqlite::Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        for array in [&mut self.steps, self.kinds.buf_mut(), &mut self.raw] {
            array.push(']');
        }
        self.packer.pack(&self.raw, &mut self.packed);
        insert.execute(params![
            inv,
            self.first_seq,
            limit(self.n),
            self.steps,
            self.kinds.buf_mut().as_str(),
            self.packed
        ])?;
        self.reset();
        self.raw.shrink_to(BLOCK_KEEP);
        self.packed.shrink_to(BLOCK_KEEP);
        Ok(())
    }
}

/// Records how an invocation ended.
fn finish(
    tx: &Connection,
    shown: &str,
    request_id: &str,
    end: &InvocationEnd,
) -> Result<(), StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE invocations SET outcome = ?2, ended_at_ms = ?3, error = ?4, \
             final_response = ?5, latency_ms = ?6 WHERE request_id = ?1",
        )
        .and_then(|mut st| {
            st.execute(params![
                request_id,
                end.outcome.as_str(),
                to_ms(end.ended_at),
                end.error,
                end.final_response,
                end.latency_ms
            ])
        })
        .map_err(|e| db_error(shown, &format!("finishing invocation {request_id}"), &e))?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("invocation {request_id}")));
    }
    Ok(())
}

/// Trace events indexed for search per transaction at most (whole blocks, at least one): the
/// write lock is held for one chunk at a time, so a first search over a large store never
/// stalls the runner for long.
const TEXT_CHUNK: i64 = 5_000;

impl SqliteStore {
    /// Brings the full-text index up to the last recorded block, a chunk per transaction. Each
    /// event is a row of its own, by its position, so a hit names the event.
    fn index_text(&self) -> Result<(), StoreError> {
        let shown = self.shown();
        loop {
            let more = self.trace_write("indexing trace text for search", |tx| {
                let err = |e: rusqlite::Error| db_error(&shown, "indexing trace text", &e);
                let from: i64 = tx
                    .query_row("SELECT indexed_upto FROM trace_text_state", [], |r| {
                        r.get(0)
                    })
                    .map_err(err)?;
                let last: i64 = tx
                    .query_row("SELECT coalesce(max(id), 0) FROM trace_blocks", [], |r| {
                        r.get(0)
                    })
                    .map_err(err)?;
                // The last block that keeps the chunk within TEXT_CHUNK events (one block at
                // least: none holds more than BLOCK_EVENTS).
                let upto: i64 = tx
                    .query_row(
                        "SELECT coalesce(max(id), ?1) FROM (SELECT id, \
                         sum(n) OVER (ORDER BY id) AS upto FROM (SELECT id, n FROM trace_blocks \
                         WHERE id > ?1 ORDER BY id LIMIT ?2)) WHERE upto <= ?2 OR id = \
                         (SELECT min(id) FROM trace_blocks WHERE id > ?1)",
                        params![from, TEXT_CHUNK],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                if upto <= from {
                    return Ok(false);
                }
                tx.execute(
                    &format!(
                        "INSERT INTO trace_text (rowid, body) \
                         SELECT (b.id << {BLOCK_SHIFT}) + e.key, \
                         (SELECT group_concat(t.value, ' ') FROM json_tree(e.value) t \
                          WHERE t.type = 'text') \
                         FROM trace_blocks b, json_each(trace_json(b.raw)) e \
                         WHERE b.id > ?1 AND b.id <= ?2"
                    ),
                    params![from, upto],
                )
                .map_err(err)?;
                tx.execute(
                    "UPDATE trace_text_state SET indexed_upto = ?1",
                    params![upto],
                )
                .map_err(err)?;
                Ok(upto < last)
            })?;
            if !more {
                return Ok(());
            }
        }
    }
}

/// A turn's start, batch and end, in that order, inside the caller's transaction.
fn write_one(
    store: &SqliteStore,
    tx: &Connection,
    shown: &str,
    w: &TurnWrite<'_>,
) -> Result<(), StoreError> {
    let fresh = w
        .start
        .map(|s| insert_invocation(tx, shown, s))
        .transpose()?;
    if fresh.is_some() || !w.events.is_empty() || !w.chunks.is_empty() {
        append_batch(
            tx,
            shown,
            w.request_id,
            fresh,
            w.events,
            w.chunks,
            w.end,
            &mut store.scratch(),
        )?;
    } else if let Some(end) = w.end {
        finish(tx, shown, w.request_id, end)?;
    }
    Ok(())
}

/// Runs `sql` (a savepoint statement) through the statement cache.
fn savepoint(tx: &Connection, sql: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(sql)?.execute([]).map(drop)
}

/// One runner write inside the caller's transaction.
fn write_runner(
    store: &SqliteStore,
    tx: &Connection,
    shown: &str,
    w: &RunnerWrite<'_>,
) -> Result<(), StoreError> {
    match w {
        RunnerWrite::Turn(t) => write_one(store, tx, shown, t),
        RunnerWrite::Submit {
            request,
            link,
            actor,
        } => super::outbox::submit_in(tx, shown, request, link, actor),
    }
}

/// Group commit: one transaction for all the writes. Relaxed (no fsync at commit) unless it
/// holds a submit, whose approval request is durable when the answer says so; always relaxed
/// through `write_group_unsynced`, whose caller makes the submits durable with `sync` before
/// answering them.
///
/// A failed write must be rolled back alone, which a savepoint around each write does; but a
/// savepoint copies every page a write first touches into its journal (4 KiB each, about a
/// tenth of the writer's time on the ingest bench), and writes almost never fail. So the group
/// is first written without savepoints; only when one of its writes fails is that attempt
/// rolled back whole and the group written again, each write in its own savepoint.
impl RunnerStore for SqliteStore {
    fn write_group(&self, writes: &[RunnerWrite<'_>]) -> Vec<Result<(), StoreError>> {
        let relax = writes.iter().all(|w| matches!(w, RunnerWrite::Turn(_)));
        self.group(writes, relax)
    }

    /// Commits relaxed whatever the group holds; a submit is durable after `sync`.
    fn write_group_unsynced(
        &self,
        writes: &[RunnerWrite<'_>],
    ) -> (Vec<Result<(), StoreError>>, bool) {
        let owed = writes
            .iter()
            .any(|w| matches!(w, RunnerWrite::Submit { .. }));
        (self.group(writes, true), owed)
    }

    /// An fsync of the WAL file, through a handle of its own (an fsync covers the file,
    /// whichever handle wrote it): every frame a commit wrote is then on disk, so the commit
    /// survives a power loss as one made at `synchronous=FULL` does. Frames a checkpoint has
    /// since copied into the database file were synced there before the WAL could restart
    /// over them. No WAL file: the last connection closed it, after checkpointing it into the
    /// database file and syncing that.
    fn sync(&self) -> Result<(), StoreError> {
        let mut wal = self.path().as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        // Opened for writing (nothing is written): Windows flushes only a handle that may write.
        match std::fs::OpenOptions::new().write(true).open(&wal) {
            Ok(f) => f.sync_data().map_err(|e| {
                StoreError::Unavailable(format!("{}: syncing to disk: {e}", wal.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "{}: opening to sync it to disk: {e}",
                wal.display()
            ))),
        }
    }
}

impl SqliteStore {
    /// `write_group`, relaxed (no fsync at commit) or at synchronous=FULL.
    fn group(&self, writes: &[RunnerWrite<'_>], relax: bool) -> Vec<Result<(), StoreError>> {
        if writes.is_empty() {
            return Vec::new();
        }
        let shown = self.shown();
        let doing = format!("recording a group of {} runner writes", writes.len());
        self.checkpoint_in_background();
        let mut write_failed = false;
        let whole = self.runner_write(&doing, relax, |tx| {
            for w in writes {
                if let Err(e) = write_runner(self, tx, &shown, w) {
                    write_failed = true;
                    return Err(e);
                }
            }
            Ok(())
        });
        match whole {
            Ok(()) => {
                self.nudge_checkpoint();
                return writes.iter().map(|_| Ok(())).collect();
            }
            // The transaction itself failed (the store is down, busy, full): so would the
            // second attempt, and nothing landed.
            Err(e) if !write_failed => {
                let why = e.to_string();
                return writes
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(why.clone())))
                    .collect();
            }
            Err(_) => {}
        }
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(writes.len());
        let committed = self.runner_write(&doing, relax, |tx| {
            let sql = |e: rusqlite::Error| db_error(&shown, &doing, &e);
            let mut failed: Vec<&str> = Vec::new();
            for w in writes {
                let id = w.request_id();
                if failed.contains(&id) {
                    results.push(Err(skipped_after_failure(id)));
                    continue;
                }
                if let RunnerWrite::Turn(t) = w
                    && t.is_empty()
                {
                    results.push(Ok(()));
                    continue;
                }
                savepoint(tx, "SAVEPOINT runner_write").map_err(sql)?;
                let r = write_runner(self, tx, &shown, w);
                if let Err(e) = &r {
                    if matches!(w, RunnerWrite::Turn(_)) || !matches!(e, StoreError::Duplicate(_)) {
                        failed.push(id);
                    }
                    savepoint(tx, "ROLLBACK TO runner_write").map_err(sql)?;
                }
                savepoint(tx, "RELEASE runner_write").map_err(sql)?;
                results.push(r);
            }
            Ok(())
        });
        self.nudge_checkpoint();
        match committed {
            Ok(()) => results,
            // Nothing landed: every write fails with the transaction's error.
            Err(e) => {
                let why = e.to_string();
                writes
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(why.clone())))
                    .collect()
            }
        }
    }
}

impl TraceStore for SqliteStore {
    fn begin_invocation(&self, s: &InvocationStart) -> Result<(), StoreError> {
        let shown = self.shown();
        self.trace_write(&format!("recording invocation {}", s.request_id), |tx| {
            insert_invocation(tx, &shown, s).map(drop)
        })
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
        self.trace_write(
            &format!("recording the trace of invocation {request_id}"),
            |tx| {
                append_batch(
                    tx,
                    &shown,
                    request_id,
                    None,
                    events,
                    chunks,
                    None,
                    &mut self.scratch(),
                )
            },
        )
    }

    fn finish_invocation(&self, request_id: &str, end: &InvocationEnd) -> Result<(), StoreError> {
        let shown = self.shown();
        self.trace_write(&format!("finishing invocation {request_id}"), |tx| {
            finish(tx, &shown, request_id, end)
        })
    }

    fn write_turn(&self, w: &TurnWrite<'_>) -> Result<(), StoreError> {
        if w.is_empty() {
            return Ok(());
        }
        let shown = self.shown();
        self.trace_write(
            &format!("recording the trace of invocation {}", w.request_id),
            |tx| write_one(self, tx, &shown, w),
        )
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
            "SELECT {STEP_COLUMNS} FROM invocations i JOIN trace_steps s ON s.inv = i.id \
             WHERE i.request_id = ?1 AND s.step > ?2 ORDER BY s.step LIMIT ?3"
        );
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read_rows(
            "reading trace steps",
            &sql,
            &[&request_id, &after, &limit(lim)],
            step_row,
        )
    }

    /// The blocks from the one holding the step's first event to the one holding its last.
    fn step_events(&self, request_id: &str, step: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {BLOCK_COLUMNS}, s.first_seq, s.last_seq FROM invocations i \
             JOIN trace_steps s ON s.inv = i.id AND s.step = ?2 \
             JOIN trace_blocks b ON b.inv = i.id AND b.first_seq <= s.last_seq \
             AND b.first_seq >= (SELECT max(first_seq) FROM trace_blocks \
             WHERE inv = i.id AND first_seq <= s.first_seq) \
             WHERE i.request_id = ?1 ORDER BY b.first_seq"
        );
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        self.read_each(
            "reading a step's events",
            &sql,
            &[&request_id, &step],
            |r| {
                let get =
                    |e: rusqlite::Error| StoreError::Corrupt(format!("reading a trace step: {e}"));
                let (first, last): (i64, i64) = (r.get(7).map_err(get)?, r.get(8).map_err(get)?);
                block_row(r)?.take_into(&mut out, usize::MAX, |seq, s| {
                    s == step && (first..=last).contains(&seq)
                });
                Ok(true)
            },
        )?;
        Ok(out)
    }

    fn events(
        &self,
        request_id: &str,
        after_seq: u64,
        lim: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // From the block holding the first event after `after_seq`.
        let sql = format!(
            "SELECT {BLOCK_COLUMNS} FROM invocations i JOIN trace_blocks b ON b.inv = i.id \
             WHERE i.request_id = ?1 AND b.first_seq >= (SELECT coalesce(max(first_seq), 0) \
             FROM trace_blocks WHERE inv = i.id AND first_seq <= ?2 + 1) ORDER BY b.first_seq"
        );
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX - 1);
        let mut out = Vec::new();
        if lim == 0 {
            return Ok(out);
        }
        self.read_each("reading trace events", &sql, &[&request_id, &after], |r| {
            block_row(r)?.take_into(&mut out, lim, |seq, _| seq > after);
            Ok(out.len() < lim)
        })?;
        Ok(out)
    }

    fn trace_index(
        &self,
        since: IndexCursor,
        refresh: &[String],
        lim: usize,
    ) -> Result<IndexPage, StoreError> {
        // The page's events first, by position: anything committed later only adds, and its
        // steps (and invocations) are read by the next page, so nothing is missed.
        use std::fmt::Write as _;
        let lo = i64::try_from(since.events).unwrap_or(i64::MAX);
        let (lo_block, lo_place) = (lo >> BLOCK_SHIFT, lo & ((1 << BLOCK_SHIFT) - 1));
        let mut taken = 0usize;
        let mut hi = lo;
        let mut touched: HashSet<(i64, i64)> = HashSet::new();
        let mut pairs = String::from("[");
        if lim > 0 {
            self.read_each(
                "reading the trace index",
                "SELECT id, inv, n, steps FROM trace_blocks WHERE id >= ?1 ORDER BY id",
                &[&lo_block],
                |r| {
                    let get = |e: rusqlite::Error| {
                        StoreError::Corrupt(format!("reading the trace index: {e}"))
                    };
                    let (id, inv, n): (i64, i64, i64) = (
                        r.get(0).map_err(get)?,
                        r.get(1).map_err(get)?,
                        r.get(2).map_err(get)?,
                    );
                    let steps: Vec<i64> = parse_column(r, 3, "steps")
                        .map_err(|e| StoreError::Corrupt(format!("trace block {id}: {e}")))?;
                    if i64::try_from(steps.len()) != Ok(n) {
                        return Err(StoreError::Corrupt(format!(
                            "trace block {id}: {n} events but {} steps",
                            steps.len()
                        )));
                    }
                    let from = if id == lo_block { lo_place + 1 } else { 0 };
                    for (place, step) in steps.into_iter().enumerate() {
                        if i64::try_from(place).unwrap_or(i64::MAX) < from {
                            continue;
                        }
                        if taken >= lim {
                            return Ok(false);
                        }
                        taken += 1;
                        hi = position(id, place);
                        if touched.insert((inv, step)) {
                            if pairs.len() > 1 {
                                pairs.push(',');
                            }
                            let _ = write!(pairs, "[{inv},{step}]");
                        }
                    }
                    Ok(taken < lim)
                },
            )?;
        }
        pairs.push(']');
        let steps = if touched.is_empty() {
            Vec::new()
        } else {
            self.read_rows(
                "reading the trace index",
                "SELECT i.request_id, s.step, s.kind_set, s.depth, s.kinds, s.input_tokens, \
                 s.output_tokens, s.meta_start_ns, s.meta_end_ns, s.total_time_ms, \
                 s.first_time_ns, s.last_time_ns \
                 FROM json_each(?1) p \
                 JOIN trace_steps s ON s.inv = json_extract(p.value, '$[0]') \
                 AND s.step = json_extract(p.value, '$[1]') \
                 JOIN invocations i ON i.id = s.inv ORDER BY i.request_id, s.step",
                &[&pairs],
                indexed_step,
            )?
        };
        let inv_lo = i64::try_from(since.invocations).unwrap_or(i64::MAX);
        let sql =
            format!("SELECT {INVOCATION_COLUMNS}, id FROM invocations WHERE id > ?1 ORDER BY id");
        let mut last_inv = since.invocations;
        let mut invocations = self.read_rows("reading the trace index", &sql, &[&inv_lo], |r| {
            let rowid: i64 = r
                .get(17)
                .map_err(|e| StoreError::Corrupt(format!("reading an invocation: {e}")))?;
            Ok((count(rowid), invocation_row(r)?))
        })?;
        if let Some((rowid, _)) = invocations.last() {
            last_inv = *rowid;
        }
        let mut invocations: Vec<InvocationRecord> =
            invocations.drain(..).map(|(_, inv)| inv).collect();
        if !refresh.is_empty() {
            let ids = serde_json::to_string(refresh)
                .map_err(|e| StoreError::Corrupt(format!("listing invocations to refresh: {e}")))?;
            let sql = format!(
                "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id <= ?2 AND request_id IN \
                 (SELECT value FROM json_each(?1))"
            );
            let upto = i64::try_from(since.invocations).unwrap_or(i64::MAX);
            invocations.extend(self.read_rows(
                "reading the trace index",
                &sql,
                &[&ids, &upto],
                invocation_row,
            )?);
        }
        Ok(IndexPage {
            invocations,
            steps,
            cursor: IndexCursor {
                events: count(hi),
                invocations: last_inv,
            },
            more: taken >= lim && lim > 0,
        })
    }

    fn step_of_trace(&self, request_id: &str, trace_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .read_rows(
                "finding a step by its traceId",
                "SELECT s.step FROM invocations i JOIN trace_steps s ON s.inv = i.id \
                 WHERE i.request_id = ?1 AND s.trace_id = ?2",
                &[&request_id, &trace_id],
                |r| {
                    r.get::<_, i64>(0)
                        .map(count)
                        .map_err(|e| StoreError::Corrupt(format!("reading a step: {e}")))
                },
            )?
            .pop())
    }

    fn search_steps(&self, text: &str, lim: usize) -> Result<Vec<(String, u64)>, StoreError> {
        self.index_text()?;
        // Each word becomes a quoted prefix phrase, so no input is FTS5 syntax.
        let query: Vec<String> = text
            .split_whitespace()
            .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
            .collect();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let query = query.join(" ");
        self.read_rows(
            "searching the traces",
            &format!(
                "SELECT i.request_id, json_extract(b.steps, \
                 '$[' || (h.pos & {mask}) || ']') AS step \
                 FROM (SELECT rowid AS pos FROM trace_text WHERE trace_text MATCH ?1) h \
                 JOIN trace_blocks b ON b.id = h.pos >> {BLOCK_SHIFT} \
                 JOIN invocations i ON i.id = b.inv \
                 GROUP BY b.inv, step ORDER BY min(h.pos) LIMIT ?2",
                mask = BLOCK_EVENTS - 1
            ),
            &[&query, &limit(lim)],
            |r| {
                let get =
                    |e: rusqlite::Error| StoreError::Corrupt(format!("reading a search hit: {e}"));
                Ok((r.get(0).map_err(get)?, count(r.get(1).map_err(get)?)))
            },
        )
    }

    fn chunk_text(&self, request_id: &str) -> Result<String, StoreError> {
        Ok(self
            .read_rows(
                "reading chunks",
                "SELECT c.text FROM invocations i JOIN chunks c ON c.inv = i.id \
                 WHERE i.request_id = ?1 ORDER BY c.seq",
                &[&request_id],
                |r| {
                    r.get::<_, String>(0)
                        .map_err(|e| StoreError::Corrupt(format!("reading a chunk: {e}")))
                },
            )?
            .concat())
    }

    fn mark_action(&self, mark: &ActionMark) -> Result<(), StoreError> {
        self.insert_mark(mark)
    }

    fn action_marks(&self, request_id: &str) -> Result<Vec<ActionMark>, StoreError> {
        self.read_marks(request_id)
    }
}
