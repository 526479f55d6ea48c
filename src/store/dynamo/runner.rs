//! `TraceStore` and `OutboxStore` on the DynamoDB table (see README "Team mode").
//!
//! Trace items live in the invocation's partition `INV#<requestId>`:
//! - `I`              the invocation: `doc` (start, outcome, end), committed counters
//!   (`ev`, `stp`, `chk`, tokens), version `v`, and on the `queue` index `qpk`=`INVOCATIONS`,
//!   `qsk`=`<startedMs>#<requestId>` with `row` (the recent-turn summary the traces pane lists)
//! - `S#<step>`       one reasoning step (traceId, kinds, figures, first/last seq)
//! - `E#<seq>`        one event with its raw JSON; `X#<seq>#<part>` its parts when the raw JSON
//!   is over `BODY_PART` (split, never trimmed)
//! - `C#<seq>`        chunk text (long text split over consecutive items; reads concatenate)
//!
//! A write puts the new event and chunk items first (idempotent puts at the next positions),
//! then commits with ONE transaction: the invocation item conditioned on its version, with the
//! new counters, the touched steps, the session and the totals. Readers never go past the
//! committed counters, so a write that dies half way shows nothing, and its retry overwrites
//! the same positions. Every trace item carries `ttl` (now + `TRACE_TTL_DAYS`).
//!
//! Sessions: `SESS#<sessionId>` / `A#<agent>#<alias>` (first, last, count; on the index as
//! `SESSIONS` / `<lastMs>#...`) and `SESS#<sessionId>` / `I#<startedMs>#<requestId>` links.
//!
//! Outbox: `OUTBOX` / `<requestId>`, written by the decision's own transaction; while pending
//! or sent it is on the index as `DUE` / `<dueMs>#<requestId>` (due = lease or retry time), so
//! leasing is a Query plus one conditional update per row; every leased write is conditioned
//! on the lease owner and fails as `LeaseLost` otherwise.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, ReturnValue, TransactWriteItem, Update, WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{
    BODY_PART, DynamoStore, Fail, Item, QUEUE_INDEX, RACE_ATTEMPTS, TTL_ATTRIBUTE, corrupt, get_n,
    get_s, key, n, s, split_body, to_ms,
};
use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::metrics::EventTiming;
use crate::domain::resume::InvocationResult;
use crate::domain::step_kind::StepKinds;
use crate::domain::trace::{StepAccumulator, TraceEvent};
use crate::store::run::ActionMark;
use crate::store::run::{IndexCursor, IndexPage, IndexedStep, collaborator_depth, note_step_event};
use crate::store::{
    InvocationEnd, InvocationRecord, InvocationStart, OutboxRow, OutboxState, OutboxStore, Outcome,
    RecentInvocation, RunnerLink, SessionRow, StepRow, StoreError, StoredEvent, TraceStore,
    TurnWrite,
};

/// Days trace items live before DynamoDB's TTL removes them.
pub const TRACE_TTL_DAYS: i64 = 30;
/// Events committed per transaction (each may touch a step item; a transaction holds 100).
const SLICE_EVENTS: usize = 64;
/// Turns whose state this handle keeps between writes; past this the cache starts afresh.
const CACHED_TURNS: usize = 1024;
/// The index partitions this module uses.
pub(super) const INVOCATIONS: &str = "INVOCATIONS";
const SESSIONS: &str = "SESSIONS";
const DUE: &str = "DUE";
pub(super) const OUTBOX: &str = "OUTBOX";
const TOTALS: (&str, &str) = ("TRACE", "TOTALS");
/// Invocations started this recently are read again by every trace index page, so a turn whose
/// index entry lands a little after others that started later is not passed over.
const INDEX_SETTLE_MS: i64 = 10_000;
/// Invocations read per trace index page at most.
const INDEX_PAGE_INVOCATIONS: usize = 200;
/// The newest invocations a trace search reads (DynamoDB keeps no text index).
pub const SEARCH_INVOCATIONS: usize = 200;
/// The trace events a trace search reads at most.
pub const SEARCH_EVENTS: u64 = 50_000;
/// The bit of `IndexCursor::events` that marks a read of the index from its beginning.
const FULL_READ: u64 = 1 << 63;

pub(super) fn inv_pk(request_id: &str) -> String {
    format!("INV#{request_id}")
}

fn seq_sk(prefix: char, seq: i64) -> String {
    format!("{prefix}#{seq:010}")
}

pub(super) fn ttl_value(now: DateTime<Utc>) -> AttributeValue {
    n(now.timestamp() + TRACE_TTL_DAYS * 86_400)
}

fn from_ms(ms: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(what, &format!("bad time {ms}")))
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The invocation's own fields, kept as one JSON attribute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct InvDoc {
    pub(super) agent_id: String,
    pub(super) agent_alias_id: String,
    pub(super) session_id: String,
    pub(super) input_text: Option<String>,
    pub(super) resumes: Option<String>,
    pub(super) started_ms: i64,
    pub(super) outcome: String,
    pub(super) ended_ms: Option<i64>,
    pub(super) error: Option<String>,
    pub(super) final_response: Option<String>,
    pub(super) latency_ms: Option<i64>,
    /// The foundation model the first model input named, and the model and tool time the
    /// trace accounts for (`domain::metrics::EventTiming`); absent in items written before.
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) model_ms: i64,
    #[serde(default)]
    pub(super) tool_ms: i64,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    pub(super) events: i64,
    pub(super) steps: i64,
    pub(super) chunks: i64,
    pub(super) input_tokens: i64,
    pub(super) output_tokens: i64,
}

/// A step as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepDoc {
    step: i64,
    trace_id: String,
    kinds: String,
    events: i64,
    first_seq: i64,
    last_seq: i64,
    rationale: Option<String>,
    acc: StepAccumulator,
    /// `StepKinds` bits (0 in items written before they were kept: read from `kinds`).
    #[serde(default)]
    kind_set: u16,
    /// Collaborator depth of its first event.
    #[serde(default)]
    depth: u8,
}

/// What this handle knows of a turn it is writing: the committed state.
#[derive(Debug, Clone)]
struct TurnState {
    doc: InvDoc,
    c: Counters,
    /// Version of the invocation item; 0 before the first commit.
    v: i64,
    /// Steps by traceId (the step key).
    steps: HashMap<String, StepDoc>,
}

/// The turn-state cache a `DynamoStore` keeps.
#[derive(Debug, Default)]
pub(super) struct Turns(std::sync::Mutex<HashMap<String, TurnState>>);

impl Turns {
    fn take(&self, request_id: &str) -> Option<TurnState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(request_id)
    }

    fn keep(&self, request_id: &str, state: TurnState) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CACHED_TURNS {
            map.clear();
        }
        map.insert(request_id.to_owned(), state);
    }
}

/// How far a handle has read a running turn's steps: the last step and the turn's event count
/// at that read (see `index_entry`).
#[derive(Debug, Clone, Copy)]
pub(super) struct StepCursor {
    steps: i64,
    events: i64,
}

/// The step cursors a `DynamoStore` keeps, one per running turn it has indexed.
#[derive(Debug, Default)]
pub(super) struct StepCursors(std::sync::Mutex<HashMap<String, StepCursor>>);

impl StepCursors {
    fn get(&self, request_id: &str) -> Option<StepCursor> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(request_id)
            .copied()
    }

    fn keep(&self, request_id: &str, cursor: StepCursor) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CACHED_TURNS && !map.contains_key(request_id) {
            // Bounded: a forgotten turn is read whole on its next refresh.
            map.clear();
        }
        map.insert(request_id.to_owned(), cursor);
    }

    fn forget(&self, request_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(request_id);
    }
}

fn record(request_id: &str, item: &Item) -> Result<InvocationRecord, StoreError> {
    let what = format!("invocation {request_id}");
    let doc: InvDoc = serde_json::from_str(get_s(item, "doc").unwrap_or_default())
        .map_err(|e| corrupt(&what, &format!("its document does not parse: {e}")))?;
    let c = counters(item);
    Ok(InvocationRecord {
        start: InvocationStart {
            request_id: request_id.to_owned(),
            agent_id: doc.agent_id,
            agent_alias_id: doc.agent_alias_id,
            session_id: doc.session_id,
            input_text: doc.input_text,
            resumes: doc.resumes,
            started_at: from_ms(doc.started_ms, &what)?,
        },
        outcome: Outcome::parse(&doc.outcome)
            .ok_or_else(|| corrupt(&what, &format!("unknown outcome {:?}", doc.outcome)))?,
        ended_at: doc.ended_ms.map(|ms| from_ms(ms, &what)).transpose()?,
        error: doc.error,
        final_response: doc.final_response,
        latency_ms: doc.latency_ms,
        input_tokens: c.input_tokens,
        output_tokens: c.output_tokens,
        events: count(c.events),
        steps: count(c.steps),
        chunks: count(c.chunks),
    })
}

pub(super) fn counters(item: &Item) -> Counters {
    let g = |name: &str| get_n(item, name).unwrap_or(0);
    Counters {
        events: g("ev"),
        steps: g("stp"),
        chunks: g("chk"),
        input_tokens: g("itok"),
        output_tokens: g("otok"),
    }
}

fn step_row(request_id: &str, d: StepDoc) -> StepRow {
    StepRow {
        request_id: request_id.to_owned(),
        step: count(d.step),
        trace_id: d.trace_id,
        kinds: d.kinds,
        events: count(d.events),
        first_seq: count(d.first_seq),
        last_seq: count(d.last_seq),
        rationale: d.rationale,
        figures: d.acc.figures(),
    }
}

fn step_doc(request_id: &str, item: &Item) -> Result<StepDoc, StoreError> {
    serde_json::from_str(get_s(item, "doc").unwrap_or_default()).map_err(|e| {
        corrupt(
            &format!("invocation {request_id}"),
            &format!("a step does not parse: {e}"),
        )
    })
}

fn indexed_step(request_id: &str, d: &StepDoc) -> IndexedStep {
    IndexedStep {
        request_id: request_id.to_owned(),
        step: count(d.step),
        kinds: if d.kind_set == 0 {
            StepKinds::from_kind_names(&d.kinds)
        } else {
            StepKinds(d.kind_set)
        },
        depth: d.depth,
        figures: d.acc.figures(),
        start_ns: d.acc.meta_start_ns.or(d.acc.first_time_ns),
    }
}

/// One event item's fields without its raw JSON.
#[derive(Debug, Serialize, Deserialize)]
struct EventDoc {
    step: i64,
    trace_id: Option<String>,
    kind: String,
    event_time: Option<String>,
    summary: String,
}

/// One committed slice of a turn.
struct Slice<'a> {
    start: Option<&'a InvocationStart>,
    events: &'a [TraceEvent],
    chunks: &'a [String],
    end: Option<&'a InvocationEnd>,
}

impl DynamoStore {
    /// A transaction's put of `item`, optionally only where no item has its key yet.
    pub(super) fn put_item_tx(
        &self,
        item: Item,
        only_new: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if only_new {
            put = put.condition_expression("attribute_not_exists(pk)");
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(|e| self.build_err(&e))?)
            .build())
    }

    fn put(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        self.put_item_tx(item, false)
    }

    /// Puts items with BatchWriteItem, 25 a call, until none is left unprocessed.
    fn batch_put(&self, doing: &str, items: Vec<Item>) -> Result<(), StoreError> {
        let mut pending: Vec<WriteRequest> = Vec::with_capacity(items.len());
        for item in items {
            pending.push(
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .map_err(|e| self.build_err(&e))?,
                    )
                    .build(),
            );
        }
        let mut rounds = 0_u32;
        while !pending.is_empty() {
            let take = pending.len().min(25);
            let batch: Vec<WriteRequest> = pending.drain(..take).collect();
            let (client, table) = (self.client.clone(), self.table.clone());
            let out = self.call(doing, move || {
                client
                    .batch_write_item()
                    .request_items(table.clone(), batch.clone())
                    .send()
            })?;
            if let Some(left) = out.unprocessed_items().and_then(|m| m.get(&self.table))
                && !left.is_empty()
            {
                rounds += 1;
                if rounds > 20 {
                    return Err(StoreError::Unavailable(format!(
                        "{}: {doing}: DynamoDB left {} items unprocessed after 20 rounds \
                         (throttled); the turn's trace was not committed, try again",
                        self.shown,
                        left.len()
                    )));
                }
                std::thread::sleep(Duration::from_millis(fastrand::u64(
                    25..=(50 << rounds.min(5)),
                )));
                pending.extend(left.iter().cloned());
            }
        }
        Ok(())
    }

    /// Items of partition `pk` with `sk` in `[from, to]`, in order, at most `limit` (all when
    /// None), strongly consistent; `filter` is an optional `(expression, values)`.
    fn query_range(
        &self,
        doing: &str,
        pk: &str,
        (from, to): (&str, &str),
        limit: Option<usize>,
        filter: Option<&(&str, Item)>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (client, table) = (self.client.clone(), self.table.clone());
            let (pk, from, to, after) = (pk.to_owned(), from.to_owned(), to.to_owned(), start);
            let filter = filter.map(|(e, v)| ((*e).to_owned(), v.clone()));
            let want = limit.map(|l| i32::try_from(l - out.len().min(l)).unwrap_or(i32::MAX));
            let page = self.call(doing, move || {
                let mut q = client
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                    .expression_attribute_values(":pk", s(&pk))
                    .expression_attribute_values(":from", s(&from))
                    .expression_attribute_values(":to", s(&to))
                    .set_exclusive_start_key(after.clone());
                if filter.is_none() {
                    q = q.set_limit(want);
                }
                if let Some((expr, values)) = &filter {
                    q = q.filter_expression(expr);
                    for (k, v) in values {
                        q = q.expression_attribute_values(k, v.clone());
                    }
                }
                q.send()
            })?;
            out.extend(page.items().iter().cloned());
            if let Some(l) = limit
                && out.len() >= l
            {
                out.truncate(l);
                return Ok(out);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Index entries of partition `qpk`, newest (highest `qsk`) first when `newest_first`,
    /// at most `limit`; `bound` is an optional `(operator, value)` condition on `qsk`
    /// (`("<", x)`: below x).
    fn query_index(
        &self,
        doing: &str,
        qpk: &str,
        newest_first: bool,
        bound: Option<(&str, &str)>,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (client, table) = (self.client.clone(), self.table.clone());
            let (qpk, after) = (qpk.to_owned(), start);
            let bound = bound.map(|(op, v)| (op.to_owned(), v.to_owned()));
            let want = limit.map(|l| i32::try_from(l - out.len().min(l)).unwrap_or(i32::MAX));
            let page = self.call(doing, move || {
                let q = client
                    .query()
                    .table_name(&table)
                    .index_name(QUEUE_INDEX)
                    .scan_index_forward(!newest_first)
                    .expression_attribute_values(":q", s(&qpk))
                    .set_limit(want)
                    .set_exclusive_start_key(after.clone());
                match &bound {
                    Some((op, b)) => q
                        .key_condition_expression(format!("qpk = :q AND qsk {op} :b"))
                        .expression_attribute_values(":b", s(b)),
                    None => q.key_condition_expression("qpk = :q"),
                }
                .send()
            })?;
            out.extend(page.items().iter().cloned());
            if let Some(l) = limit
                && out.len() >= l
            {
                out.truncate(l);
                return Ok(out);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    pub(super) fn get_item(
        &self,
        doing: &str,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Item>, StoreError> {
        let (client, table, k) = (self.client.clone(), self.table.clone(), key(pk, sk));
        let out = self.call(doing, move || {
            client
                .get_item()
                .table_name(&table)
                .set_key(Some(k.clone()))
                .consistent_read(true)
                .send()
        })?;
        Ok(out.item().cloned())
    }

    pub(super) fn invocation_item(&self, request_id: &str) -> Result<Option<Item>, StoreError> {
        self.get_item(
            &format!("reading invocation {request_id}"),
            &inv_pk(request_id),
            "I",
        )
    }

    /// The committed state of a turn, read back (when this handle has not written it).
    fn load_turn(&self, request_id: &str) -> Result<TurnState, StoreError> {
        let item = self
            .invocation_item(request_id)?
            .ok_or_else(|| StoreError::NotFound(format!("invocation {request_id}")))?;
        let what = format!("invocation {request_id}");
        let doc: InvDoc = serde_json::from_str(get_s(&item, "doc").unwrap_or_default())
            .map_err(|e| corrupt(&what, &format!("its document does not parse: {e}")))?;
        let c = counters(&item);
        let mut steps = HashMap::new();
        if c.steps > 0 {
            for it in self.query_range(
                &format!("reading the steps of {request_id}"),
                &inv_pk(request_id),
                (&seq_sk('S', 1), &seq_sk('S', c.steps)),
                None,
                None,
            )? {
                let d = step_doc(request_id, &it)?;
                steps.insert(d.trace_id.clone(), d);
            }
        }
        Ok(TurnState {
            doc,
            c,
            v: get_n(&item, "v").unwrap_or(0),
            steps,
        })
    }

    /// Writes one slice of a turn: event and chunk items, then the committing transaction.
    /// On success `st` is the new committed state.
    #[allow(clippy::too_many_lines)]
    fn commit_slice(
        &self,
        request_id: &str,
        st: &mut TurnState,
        slice: &Slice<'_>,
    ) -> Result<Result<(), Vec<String>>, StoreError> {
        let now = Utc::now();
        let ttl = ttl_value(now);
        let pk = inv_pk(request_id);
        let mut next = st.clone();
        let mut touched: Vec<String> = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        for event in slice.events {
            next.c.events += 1;
            let seq = next.c.events;
            let step_key = event.step_key().to_owned();
            let kind = event.kind_name().into_owned();
            let steps_count = &mut next.c.steps;
            let step = next.steps.entry(step_key.clone()).or_insert_with(|| {
                *steps_count += 1;
                StepDoc {
                    step: *steps_count,
                    trace_id: step_key.clone(),
                    kinds: String::new(),
                    events: 0,
                    first_seq: seq,
                    last_seq: seq,
                    rationale: None,
                    acc: StepAccumulator::default(),
                    kind_set: 0,
                    depth: collaborator_depth(event),
                }
            });
            step.kind_set |= StepKinds::of_event(event).0;
            note_step_event(
                &mut step.kinds,
                &mut step.rationale,
                &mut step.acc,
                &kind,
                event,
            );
            step.events += 1;
            step.last_seq = seq;
            let step_no = step.step;
            if !touched.contains(&step_key) {
                touched.push(step_key);
            }
            if let Some(m) = event.metadata() {
                next.c.input_tokens += m.input_tokens.unwrap_or(0);
                next.c.output_tokens += m.output_tokens.unwrap_or(0);
            }
            let timing = EventTiming::of(event);
            if next.doc.model.is_none() {
                next.doc.model = timing.model.map(str::to_owned);
            }
            next.doc.model_ms += timing.model_ms;
            next.doc.tool_ms += timing.tool_ms;
            let raw = event
                .raw
                .to_json()
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "invocation {request_id} event {seq}: cannot serialise it: {e}"
                    ))
                })?
                .into_owned();
            let meta = EventDoc {
                step: step_no,
                trace_id: event.trace_id().map(str::to_owned),
                kind,
                event_time: event
                    .event_time
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                summary: event.summary(),
            };
            let mut item = key(&pk, seq_sk('E', seq));
            item.insert(
                "meta".into(),
                s(
                    serde_json::to_string(&meta)
                        .map_err(|e| corrupt(request_id, &e.to_string()))?,
                ),
            );
            item.insert(TTL_ATTRIBUTE.into(), ttl.clone());
            item.insert("step".into(), n(step_no));
            if raw.len() <= BODY_PART {
                item.insert("raw".into(), s(raw));
            } else {
                let parts = split_body(&raw);
                item.insert("parts".into(), n(parts.len()));
                for (i, part) in parts.iter().enumerate() {
                    let mut p = key(&pk, format!("X#{seq:010}#{:04}", i + 1));
                    p.insert("data".into(), s(*part));
                    p.insert(TTL_ATTRIBUTE.into(), ttl.clone());
                    items.push(p);
                }
            }
            items.push(item);
        }
        for text in slice.chunks {
            let pieces = if text.is_empty() {
                vec![""]
            } else {
                split_body(text)
            };
            for piece in pieces {
                next.c.chunks += 1;
                let mut item = key(&pk, seq_sk('C', next.c.chunks));
                item.insert("text".into(), s(piece));
                item.insert(TTL_ATTRIBUTE.into(), ttl.clone());
                items.push(item);
            }
        }
        let mut outcome_deltas: BTreeMap<String, i64> = BTreeMap::new();
        if slice.start.is_some() {
            *outcome_deltas
                .entry(format!("o_{}", next.doc.outcome))
                .or_default() += 1;
        }
        if let Some(end) = slice.end {
            *outcome_deltas
                .entry(format!("o_{}", next.doc.outcome))
                .or_default() -= 1;
            end.outcome.as_str().clone_into(&mut next.doc.outcome);
            next.doc.ended_ms = Some(to_ms(end.ended_at));
            next.doc.error.clone_from(&end.error);
            next.doc.final_response.clone_from(&end.final_response);
            next.doc.latency_ms = end.latency_ms;
            *outcome_deltas
                .entry(format!("o_{}", next.doc.outcome))
                .or_default() += 1;
        }
        if !items.is_empty() {
            self.batch_put(
                &format!("recording the trace of invocation {request_id}"),
                items,
            )?;
        }
        // The commit.
        next.v = st.v + 1;
        let recent = RecentInvocation {
            request_id: request_id.to_owned(),
            agent_id: next.doc.agent_id.clone(),
            agent_alias_id: next.doc.agent_alias_id.clone(),
            session_id: next.doc.session_id.clone(),
            started_at: from_ms(next.doc.started_ms, request_id)?,
            outcome: next.doc.outcome.clone(),
            latency_ms: next.doc.latency_ms.map(count),
            steps: count(next.c.steps),
            input_tokens: count(next.c.input_tokens),
            output_tokens: count(next.c.output_tokens),
            input_text: next.doc.input_text.clone(),
            resumes: next.doc.resumes.clone(),
        };
        let json = |v: &dyn ToJson| v.to_json().map_err(|e| corrupt(request_id, &e));
        let mut inv = key(&pk, "I");
        inv.insert("doc".into(), s(json(&next.doc)?));
        inv.insert("ev".into(), n(next.c.events));
        inv.insert("stp".into(), n(next.c.steps));
        inv.insert("chk".into(), n(next.c.chunks));
        inv.insert("itok".into(), n(next.c.input_tokens));
        inv.insert("otok".into(), n(next.c.output_tokens));
        inv.insert("v".into(), n(next.v));
        inv.insert("qpk".into(), s(INVOCATIONS));
        inv.insert(
            "qsk".into(),
            s(format!("{:013}#{request_id}", next.doc.started_ms)),
        );
        let row = super::metrics::IndexRow {
            m: Some(super::metrics::RowFacts::of(&next.doc, &next.c)),
            recent,
        };
        inv.insert("row".into(), s(json(&row)?));
        inv.insert(TTL_ATTRIBUTE.into(), ttl.clone());
        let (cond, values): (&str, Item) = if st.v == 0 {
            ("attribute_not_exists(pk)", Item::new())
        } else {
            ("v = :v", HashMap::from([(":v".to_owned(), n(st.v))]))
        };
        let mut tx = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(inv))
                        .condition_expression(cond)
                        .set_expression_attribute_values((!values.is_empty()).then_some(values))
                        .build()
                        .map_err(|e| self.build_err(&e))?,
                )
                .build(),
        ];
        for k in &touched {
            if let Some(d) = next.steps.get(k) {
                let mut item = key(&pk, seq_sk('S', d.step));
                item.insert("doc".into(), s(json(d)?));
                item.insert(TTL_ATTRIBUTE.into(), ttl.clone());
                tx.push(self.put(item)?);
            }
        }
        if let Some(start) = slice.start {
            let started = to_ms(start.started_at);
            let session_pk = format!("SESS#{}", start.session_id);
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    &session_pk,
                    format!("A#{}#{}", start.agent_id, start.agent_alias_id),
                )))
                .update_expression(
                    "SET #agent = :agent, #alias = :alias, #sess = :sess, \
                     #first = if_not_exists(#first, :t), #last = :t, qpk = :qpk, qsk = :qsk, \
                     #ttl = :ttl ADD #invs :one",
                )
                .expression_attribute_names("#agent", "agent")
                .expression_attribute_names("#alias", "alias")
                .expression_attribute_names("#sess", "session")
                .expression_attribute_names("#first", "first_ms")
                .expression_attribute_names("#last", "last_ms")
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_names("#invs", "invocations")
                .expression_attribute_values(":agent", s(&start.agent_id))
                .expression_attribute_values(":alias", s(&start.agent_alias_id))
                .expression_attribute_values(":sess", s(&start.session_id))
                .expression_attribute_values(":t", n(started))
                .expression_attribute_values(":qpk", s(SESSIONS))
                .expression_attribute_values(
                    ":qsk",
                    s(format!(
                        "{started:013}#{}#{}#{}",
                        start.session_id, start.agent_id, start.agent_alias_id
                    )),
                )
                .expression_attribute_values(":ttl", ttl.clone())
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(|e| self.build_err(&e))?;
            tx.push(TransactWriteItem::builder().update(update).build());
            let mut link = key(&session_pk, format!("I#{started:013}#{request_id}"));
            link.insert("request_id".into(), s(request_id));
            link.insert(TTL_ATTRIBUTE.into(), ttl);
            tx.push(self.put(link)?);
        }
        let mut deltas: Vec<(String, i64)> = vec![
            ("n_inv".into(), i64::from(slice.start.is_some())),
            ("n_events".into(), next.c.events - st.c.events),
            ("n_steps".into(), next.c.steps - st.c.steps),
            ("itok".into(), next.c.input_tokens - st.c.input_tokens),
            ("otok".into(), next.c.output_tokens - st.c.output_tokens),
        ];
        deltas.extend(outcome_deltas);
        deltas.retain(|(_, d)| *d != 0);
        if !deltas.is_empty() {
            let mut names = HashMap::new();
            let mut values = Item::new();
            let mut adds = Vec::new();
            for (i, (attr, d)) in deltas.iter().enumerate() {
                names.insert(format!("#c{i}"), attr.clone());
                values.insert(format!(":c{i}"), n(d));
                adds.push(format!("#c{i} :c{i}"));
            }
            tx.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(TOTALS.0, TOTALS.1)))
                            .update_expression(format!("ADD {}", adds.join(", ")))
                            .set_expression_attribute_names(Some(names))
                            .set_expression_attribute_values(Some(values))
                            .build()
                            .map_err(|e| self.build_err(&e))?,
                    )
                    .build(),
            );
        }
        match self.transact(
            &format!("committing the trace of invocation {request_id}"),
            tx,
        )? {
            Ok(()) => {
                *st = next;
                Ok(Ok(()))
            }
            Err(reasons) => Ok(Err(reasons)),
        }
    }

    /// The index entries of invocations started at `from_ms` or later, as (startedMs,
    /// requestId), oldest first, at most `limit`.
    fn invocation_keys(
        &self,
        from_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let from = format!("{from_ms:013}");
        self.query_index(
            "reading the trace index",
            INVOCATIONS,
            false,
            Some((">=", &from)),
            Some(limit),
        )?
        .iter()
        .map(|item| {
            let qsk = get_s(item, "qsk").unwrap_or_default();
            qsk.split_once('#')
                .and_then(|(ms, rid)| Some((ms.parse::<u64>().ok()?, rid.to_owned())))
                .ok_or_else(|| corrupt("the trace index", &format!("bad entry {qsk:?}")))
        })
        .collect()
    }

    /// Adds an invocation and all its steps to `page`; returns its events (0 when it is gone).
    /// Adds invocation `request_id` to `page`: its record and its steps. With `incremental`
    /// (a refresh of a running turn this handle read before) only what changed since that read:
    /// the steps past the last one read (their sort keys from there on), and that last step
    /// again only when the turn's events grew by more than the new steps hold. The cursor is
    /// this handle's: it assumes one index reads through it (the console's traces pane); a
    /// turn it has no cursor for is read whole.
    fn index_entry(
        &self,
        request_id: &str,
        page: &mut IndexPage,
        incremental: bool,
    ) -> Result<u64, StoreError> {
        let Some(item) = self.invocation_item(request_id)? else {
            self.memo.step_cursors.forget(request_id);
            return Ok(0);
        };
        let rec = record(request_id, &item)?;
        let c = counters(&item);
        let before = if incremental {
            self.memo.step_cursors.get(request_id)
        } else {
            None
        }
        .filter(|b| b.steps <= c.steps && b.events <= c.events);
        let first = before.map_or(1, |b| b.steps + 1);
        let mut new_events = 0;
        if first <= c.steps {
            for it in self.query_range(
                &format!("reading the steps of {request_id}"),
                &inv_pk(request_id),
                (&seq_sk('S', first), &seq_sk('S', c.steps)),
                None,
                None,
            )? {
                let doc = step_doc(request_id, &it)?;
                new_events += doc.events;
                page.steps.push(indexed_step(request_id, &doc));
            }
        }
        if let Some(b) = before
            && b.steps > 0
            && c.events - b.events > new_events
            && let Some(it) = self.get_item(
                &format!("reading step {} of {request_id}", b.steps),
                &inv_pk(request_id),
                &seq_sk('S', b.steps),
            )?
        {
            // The last step read was still growing.
            page.steps
                .push(indexed_step(request_id, &step_doc(request_id, &it)?));
        }
        if rec.outcome == Outcome::Running {
            self.memo.step_cursors.keep(
                request_id,
                StepCursor {
                    steps: c.steps,
                    events: c.events,
                },
            );
        } else {
            self.memo.step_cursors.forget(request_id);
        }
        let events = rec.events;
        page.invocations.push(rec);
        Ok(events)
    }

    /// The trace totals and the newest turns, for `counts`.
    pub(super) fn trace_counts(
        &self,
        counts: &mut crate::store::StoreCounts,
    ) -> Result<(), StoreError> {
        let totals = self
            .get_item("reading the trace totals", TOTALS.0, TOTALS.1)?
            .unwrap_or_default();
        let num = |name: &str| count(get_n(&totals, name).unwrap_or(0));
        counts.invocations = num("n_inv");
        counts.trace_events = num("n_events");
        counts.trace_steps = num("n_steps");
        counts.input_tokens = num("itok");
        counts.output_tokens = num("otok");
        counts.invocations_by_outcome = Outcome::ALL
            .into_iter()
            .map(|o| (o.as_str().to_owned(), num(&format!("o_{}", o.as_str()))))
            .filter(|(_, v)| *v > 0)
            .collect();
        let recent = self.query_index(
            "reading the recent turns",
            INVOCATIONS,
            true,
            None,
            Some(crate::store::RECENT_INVOCATIONS),
        )?;
        counts.recent = recent
            .iter()
            .map(|item| {
                serde_json::from_str(get_s(item, "row").unwrap_or_default())
                    .map_err(|e| corrupt("a recent turn", &e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let mut by_state: HashMap<&str, u64> = HashMap::new();
        for item in self.query_partition("reading the outbox", OUTBOX, None)? {
            if let Some(st) = get_s(&item, "state").and_then(OutboxState::parse) {
                *by_state.entry(st.as_str()).or_default() += 1;
            }
        }
        counts.outbox_by_state = OutboxState::ALL
            .into_iter()
            .filter_map(|st| {
                by_state
                    .get(st.as_str())
                    .map(|v| (st.as_str().to_owned(), *v))
            })
            .collect();
        Ok(())
    }

    fn event_from(&self, request_id: &str, item: &Item) -> Result<StoredEvent, StoreError> {
        let seq = get_s(item, "sk")
            .and_then(|k| k.strip_prefix("E#"))
            .and_then(|k| k.parse::<i64>().ok())
            .ok_or_else(|| corrupt(&format!("invocation {request_id}"), "an event has no seq"))?;
        let what = format!("invocation {request_id} event {seq}");
        let meta: EventDoc = serde_json::from_str(get_s(item, "meta").unwrap_or_default())
            .map_err(|e| corrupt(&what, &format!("its fields do not parse: {e}")))?;
        #[allow(clippy::single_match_else)]
        let raw_text = match get_s(item, "raw") {
            Some(r) => r.to_owned(),
            None => {
                let want = get_n(item, "parts").unwrap_or(0);
                let parts = self.query_range(
                    &format!("reading {what}"),
                    &inv_pk(request_id),
                    (&format!("X#{seq:010}#"), &format!("X#{seq:010}#9999")),
                    None,
                    None,
                )?;
                if i64::try_from(parts.len()).unwrap_or(-1) != want {
                    return Err(corrupt(
                        &what,
                        &format!(
                            "its raw JSON has {want} parts but {} are stored",
                            parts.len()
                        ),
                    ));
                }
                parts
                    .iter()
                    .map(|p| get_s(p, "data").unwrap_or_default())
                    .collect()
            }
        };
        Ok(StoredEvent {
            raw: serde_json::from_str(&raw_text)
                .map_err(|e| corrupt(&what, &format!("raw JSON does not parse: {e}")))?,
            request_id: request_id.to_owned(),
            seq: count(seq),
            step: count(meta.step),
            trace_id: meta.trace_id,
            kind: meta.kind,
            event_time: meta.event_time,
            summary: meta.summary,
        })
    }

    /// Committed counters of an invocation (NotFound-free: an unknown one has none).
    fn committed(&self, request_id: &str) -> Result<Counters, StoreError> {
        Ok(self
            .invocation_item(request_id)?
            .map(|i| counters(&i))
            .unwrap_or_default())
    }
}

/// JSON for the attributes above, behind one object-safe call.
trait ToJson {
    fn to_json(&self) -> Result<String, String>;
}

impl<T: Serialize> ToJson for T {
    fn to_json(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| e.to_string())
    }
}

impl TraceStore for DynamoStore {
    fn begin_invocation(&self, start: &InvocationStart) -> Result<(), StoreError> {
        self.write_turn(&TurnWrite {
            request_id: &start.request_id,
            start: Some(start),
            events: &[],
            chunks: &[],
            end: None,
        })
    }

    fn append_trace(
        &self,
        request_id: &str,
        events: &[TraceEvent],
        chunks: &[String],
    ) -> Result<(), StoreError> {
        self.write_turn(&TurnWrite {
            request_id,
            start: None,
            events,
            chunks,
            end: None,
        })
    }

    fn finish_invocation(&self, request_id: &str, end: &InvocationEnd) -> Result<(), StoreError> {
        self.write_turn(&TurnWrite {
            request_id,
            start: None,
            events: &[],
            chunks: &[],
            end: Some(end),
        })
    }

    fn write_turn(&self, w: &TurnWrite<'_>) -> Result<(), StoreError> {
        if w.start.is_none() && w.end.is_none() && w.events.is_empty() && w.chunks.is_empty() {
            return Ok(());
        }
        let rid = w.request_id;
        let mut st = match w.start {
            Some(start) => TurnState {
                doc: InvDoc {
                    agent_id: start.agent_id.clone(),
                    agent_alias_id: start.agent_alias_id.clone(),
                    session_id: start.session_id.clone(),
                    input_text: start.input_text.clone(),
                    resumes: start.resumes.clone(),
                    started_ms: to_ms(start.started_at),
                    outcome: Outcome::Running.as_str().to_owned(),
                    ended_ms: None,
                    error: None,
                    final_response: None,
                    latency_ms: None,
                    model: None,
                    model_ms: 0,
                    tool_ms: 0,
                },
                c: Counters::default(),
                v: 0,
                steps: HashMap::new(),
            },
            None => match self.turns.take(rid) {
                Some(st) => st,
                None => self.load_turn(rid)?,
            },
        };
        let slices: Vec<&[TraceEvent]> = if w.events.is_empty() {
            vec![&[]]
        } else {
            w.events.chunks(SLICE_EVENTS).collect()
        };
        let last = slices.len() - 1;
        for (i, events) in slices.into_iter().enumerate() {
            let slice = Slice {
                start: if i == 0 { w.start } else { None },
                events,
                chunks: if i == last { w.chunks } else { &[] },
                end: if i == last { w.end } else { None },
            };
            let mut attempt = 0;
            loop {
                match self.commit_slice(rid, &mut st, &slice)? {
                    Ok(()) => break,
                    Err(reasons) => {
                        let mine =
                            reasons.first().map(String::as_str) == Some("ConditionalCheckFailed");
                        if mine && slice.start.is_some() {
                            return Err(StoreError::Duplicate(ApprovalId(rid.to_owned())));
                        }
                        attempt += 1;
                        if attempt >= RACE_ATTEMPTS {
                            return Err(self
                                .contention(&format!("committing the trace of invocation {rid}")));
                        }
                        if mine {
                            // Another handle wrote this turn: start from what is committed.
                            st = self.load_turn(rid)?;
                        }
                        Self::pause_after_race(attempt);
                    }
                }
            }
        }
        if w.end.is_none() {
            self.turns.keep(rid, st);
        }
        Ok(())
    }

    fn mark_action(&self, mark: &ActionMark) -> Result<(), StoreError> {
        let rid = mark.request_id.as_str();
        let step = self
            .steps(rid, mark.step.saturating_sub(1), 1)?
            .into_iter()
            .find(|r| r.step == mark.step);
        match step {
            None => {
                return Err(StoreError::NotFound(format!(
                    "step {} of invocation {rid}",
                    mark.step
                )));
            }
            Some(r) if r.trace_id != mark.trace_id => {
                return Err(StoreError::NotFound(format!(
                    "step {} of invocation {rid} with traceId {:?} (the step's traceId is {:?})",
                    mark.step, mark.trace_id, r.trace_id
                )));
            }
            Some(_) => {}
        }
        let doc = mark
            .to_json()
            .map_err(|e| corrupt(&format!("a mark on invocation {rid}"), &e))?;
        // Append only, in time order: `M#<atMs>#<nonce>`; a later mark by the same person on
        // the same step supersedes theirs where marks are read (the metrics). On the index as
        // `MARKS` / `<atMs>#<nonce>` with the metrics fact (the invocation's agent, alias and
        // model beside the judgement) as `row`.
        let inv = self
            .invocation_item(rid)?
            .ok_or_else(|| StoreError::NotFound(format!("invocation {rid}")))?;
        let inv: InvDoc = serde_json::from_str(get_s(&inv, "doc").unwrap_or_default())
            .map_err(|e| corrupt(&format!("invocation {rid}"), &e.to_string()))?;
        let (at, nonce) = (to_ms(mark.at), fastrand::u64(..));
        let sk = format!("M#{at:013}#{nonce:016x}");
        let fact = super::metrics::MarkDoc::of(mark, &inv)
            .to_json()
            .map_err(|e| corrupt(&format!("a mark on invocation {rid}"), &e))?;
        let item: Item = [
            ("pk".to_owned(), s(inv_pk(rid))),
            ("sk".to_owned(), s(&sk)),
            ("doc".to_owned(), s(&doc)),
            ("qpk".to_owned(), s(super::metrics::MARKS)),
            ("qsk".to_owned(), s(format!("{at:013}#{nonce:016x}"))),
            ("row".to_owned(), s(fact)),
            (TTL_ATTRIBUTE.to_owned(), ttl_value(mark.at)),
        ]
        .into_iter()
        .collect();
        let doing = format!("marking step {} of invocation {rid}", mark.step);
        match self.transact(&doing, vec![self.put_item_tx(item, true)?])? {
            Ok(()) => Ok(()),
            Err(reasons) => Err(StoreError::Unavailable(format!(
                "{doing}: the write was refused ({})",
                reasons.join(", ")
            ))),
        }
    }

    fn action_marks(&self, request_id: &str) -> Result<Vec<ActionMark>, StoreError> {
        self.query_range(
            "reading action marks",
            &inv_pk(request_id),
            ("M#", "M#~"),
            None,
            None,
        )?
        .iter()
        .map(|item| {
            let doc = get_s(item, "doc").unwrap_or_default();
            serde_json::from_str(doc).map_err(|e| {
                corrupt(
                    &format!("a mark on invocation {request_id}"),
                    &e.to_string(),
                )
            })
        })
        .collect()
    }

    /// The cursor here is (`invocations`) a watermark W in milliseconds: every invocation that
    /// started before W has been delivered; and (`events`) how many of those there were, with
    /// `FULL_READ` set while a read from the beginning is under way. A page reads the
    /// `INVOCATIONS` index from W on (each invocation with all its steps); W never passes
    /// `now - INDEX_SETTLE_MS`, so recent turns are read again until they settle. The totals
    /// item counts every committed invocation: when fewer were delivered than it says, one
    /// landed below W (an import of old traces, a writer's clock behind, a lagging index), and
    /// the next pages read everything again from the beginning.
    fn trace_index(
        &self,
        since: IndexCursor,
        refresh: &[String],
        lim: usize,
    ) -> Result<IndexPage, StoreError> {
        let full = since.invocations == 0 || since.events & FULL_READ != 0;
        // The totals first: whatever they count is in the index read after them (or lags).
        let totals = self
            .get_item("reading the trace totals", TOTALS.0, TOTALS.1)?
            .unwrap_or_default();
        let total = count(get_n(&totals, "n_inv").unwrap_or(0));
        let mut keys = self.invocation_keys(since.invocations, INDEX_PAGE_INVOCATIONS + 1)?;
        let mut more = keys.len() > INDEX_PAGE_INVOCATIONS;
        keys.truncate(INDEX_PAGE_INVOCATIONS);
        let mut page = IndexPage::default();
        let (mut events, mut taken) = (0u64, 0usize);
        for (_, rid) in &keys {
            if taken > 0 && events >= u64::try_from(lim).unwrap_or(u64::MAX) {
                more = true;
                break;
            }
            // A turn the caller holds and refreshes (still running, maybe not yet settled):
            // only what changed since this handle read it.
            events += self.index_entry(rid, &mut page, refresh.contains(rid))?;
            taken += 1;
        }
        keys.truncate(taken);
        let settle = u64::try_from(Utc::now().timestamp_millis() - INDEX_SETTLE_MS).unwrap_or(0);
        let watermark = match (keys.first(), keys.last()) {
            // Items at the last page's time may continue on the next page: read them again.
            (Some(first), Some(last)) if more => {
                if first.0 == last.0 {
                    last.0 + 1
                } else {
                    last.0
                }
            }
            (_, Some(last)) => (last.0 + 1).min(settle).max(since.invocations),
            _ => since.invocations,
        };
        let settled =
            count(i64::try_from(keys.iter().filter(|k| k.0 < watermark).count()).unwrap_or(0));
        let unsettled = u64::try_from(keys.len()).unwrap_or(0) - settled;
        let seen = (since.events & !FULL_READ) + settled;
        let mut cursor = IndexCursor {
            events: seen | if full { FULL_READ } else { 0 },
            invocations: watermark,
        };
        if !more {
            if full {
                // Everything there is was read: what the totals count beyond it has expired.
                cursor.events = total.saturating_sub(unsettled);
            } else if seen + unsettled < total {
                cursor = IndexCursor {
                    events: FULL_READ,
                    invocations: 0,
                };
                more = true;
            }
        }
        for rid in refresh {
            if !page.invocations.iter().any(|i| &i.start.request_id == rid) {
                self.index_entry(rid, &mut page, true)?;
            }
        }
        page.cursor = cursor;
        page.more = more;
        Ok(page)
    }

    /// DynamoDB keeps no text index: this reads the events of the newest `SEARCH_INVOCATIONS`
    /// invocations (at most `SEARCH_EVENTS` events) and matches their text values. When that
    /// bound is reached and nothing matched, it says so rather than answer "no match".
    fn search_steps(&self, text: &str, lim: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let words = crate::store::run::search_words(text);
        if words.is_empty() || lim == 0 {
            return Ok(Vec::new());
        }
        let newest = self.query_index(
            "searching the traces",
            INVOCATIONS,
            true,
            None,
            Some(SEARCH_INVOCATIONS + 1),
        )?;
        let mut bounded = newest.len() > SEARCH_INVOCATIONS;
        let mut read = 0u64;
        // Newest first; each invocation's hits in order of their first matching event.
        let mut per_invocation: Vec<Vec<(String, u64)>> = Vec::new();
        for item in newest.iter().take(SEARCH_INVOCATIONS) {
            let Some(rid) = get_s(item, "qsk")
                .and_then(|q| q.split_once('#'))
                .map(|x| x.1)
            else {
                continue;
            };
            if read >= SEARCH_EVENTS {
                bounded = true;
                break;
            }
            let mut hits: Vec<(String, u64)> = Vec::new();
            let mut after = 0;
            loop {
                let page = self.events(rid, after, 1000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                read += u64::try_from(page.len()).unwrap_or(0);
                for e in &page {
                    if crate::store::run::event_matches(&e.raw, &words)
                        && !hits.iter().any(|h| h.1 == e.step)
                    {
                        hits.push((rid.to_owned(), e.step));
                    }
                }
            }
            per_invocation.push(hits);
        }
        let hits: Vec<(String, u64)> = per_invocation
            .into_iter()
            .rev()
            .flatten()
            .take(lim)
            .collect();
        if hits.is_empty() && bounded {
            return Err(StoreError::Unavailable(format!(
                "no match in the newest {} invocations ({read} trace events): a search on \
                 DynamoDB reads no further",
                SEARCH_INVOCATIONS.min(newest.len())
            )));
        }
        Ok(hits)
    }

    fn invocation(&self, request_id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        self.invocation_item(request_id)?
            .map(|item| record(request_id, &item))
            .transpose()
    }

    fn sessions(&self, offset: usize, limit: usize) -> Result<Vec<SessionRow>, StoreError> {
        let keys = self.query_index(
            "reading sessions",
            SESSIONS,
            true,
            None,
            Some(offset.saturating_add(limit)),
        )?;
        let mut out = Vec::new();
        for k in keys.iter().skip(offset) {
            let (Some(pk), Some(sk)) = (get_s(k, "pk"), get_s(k, "sk")) else {
                continue;
            };
            let Some(item) = self.get_item("reading a session", pk, sk)? else {
                continue;
            };
            let what = format!("session {pk}");
            let text = |name: &str| get_s(&item, name).unwrap_or_default().to_owned();
            out.push(SessionRow {
                agent_id: text("agent"),
                agent_alias_id: text("alias"),
                session_id: text("session"),
                first_at: from_ms(get_n(&item, "first_ms").unwrap_or(0), &what)?,
                last_at: from_ms(get_n(&item, "last_ms").unwrap_or(0), &what)?,
                invocations: count(get_n(&item, "invocations").unwrap_or(0)),
            });
        }
        Ok(out)
    }

    fn invocations(
        &self,
        session_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let links = self.query_range(
            "reading a session's invocations",
            &format!("SESS#{session_id}"),
            ("I#", "I#\u{10FFFF}"),
            Some(offset.saturating_add(limit)),
            None,
        )?;
        let mut out = Vec::new();
        for link in links.iter().skip(offset) {
            let Some(rid) = get_s(link, "request_id") else {
                continue;
            };
            if let Some(r) = self.invocation(rid)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn steps(
        &self,
        request_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StepRow>, StoreError> {
        let c = self.committed(request_id)?;
        let first = i64::try_from(after).unwrap_or(i64::MAX).saturating_add(1);
        if first > c.steps || limit == 0 {
            return Ok(Vec::new());
        }
        self.query_range(
            "reading trace steps",
            &inv_pk(request_id),
            (&seq_sk('S', first), &seq_sk('S', c.steps)),
            Some(limit),
            None,
        )?
        .iter()
        .map(|item| step_doc(request_id, item).map(|d| step_row(request_id, d)))
        .collect()
    }

    fn step_events(&self, request_id: &str, step: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let c = self.committed(request_id)?;
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        if step < 1 || step > c.steps {
            return Ok(Vec::new());
        }
        let Some(item) = self.get_item(
            "reading a trace step",
            &inv_pk(request_id),
            &seq_sk('S', step),
        )?
        else {
            return Ok(Vec::new());
        };
        let d = step_doc(request_id, &item)?;
        let last = d.last_seq.min(c.events);
        if d.first_seq > last {
            return Ok(Vec::new());
        }
        self.query_range(
            "reading a step's events",
            &inv_pk(request_id),
            (&seq_sk('E', d.first_seq), &seq_sk('E', last)),
            None,
            Some(&(
                "step = :step",
                HashMap::from([(":step".to_owned(), n(step))]),
            )),
        )?
        .iter()
        .map(|item| self.event_from(request_id, item))
        .collect()
    }

    fn events(
        &self,
        request_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let c = self.committed(request_id)?;
        let first = i64::try_from(after_seq)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        if first > c.events || limit == 0 {
            return Ok(Vec::new());
        }
        self.query_range(
            "reading trace events",
            &inv_pk(request_id),
            (&seq_sk('E', first), &seq_sk('E', c.events)),
            Some(limit),
            None,
        )?
        .iter()
        .map(|item| self.event_from(request_id, item))
        .collect()
    }

    fn chunk_text(&self, request_id: &str) -> Result<String, StoreError> {
        let c = self.committed(request_id)?;
        if c.chunks == 0 {
            return Ok(String::new());
        }
        Ok(self
            .query_range(
                "reading chunks",
                &inv_pk(request_id),
                (&seq_sk('C', 1), &seq_sk('C', c.chunks)),
                None,
                None,
            )?
            .iter()
            .map(|i| get_s(i, "text").unwrap_or_default())
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// outbox

/// The outbox item `decide` adds in its transaction when a runner-raised request becomes final.
pub(super) fn outbox_item(
    request: &ApprovalRequest,
    link: &RunnerLink,
    plan: &crate::domain::resume::ResumePlan,
    now_ms: i64,
) -> Result<Item, StoreError> {
    let id = request.id.as_str();
    let mut item = key(OUTBOX, id);
    item.insert("invocation".into(), s(&link.invocation));
    item.insert("state".into(), s(OutboxState::Pending.as_str()));
    item.insert("attempts".into(), n(0));
    item.insert(
        "plan".into(),
        s(serde_json::to_string(plan).map_err(|e| {
            StoreError::Corrupt(format!("request {id}: cannot serialise the resume: {e}"))
        })?),
    );
    item.insert("created_ms".into(), n(now_ms));
    item.insert("updated_ms".into(), n(now_ms));
    item.insert("qpk".into(), s(DUE));
    item.insert("qsk".into(), s(due_sk(0, id)));
    Ok(item)
}

fn due_sk(due_ms: i64, id: &str) -> String {
    format!("{due_ms:013}#{id}")
}

fn outbox_row(item: &Item) -> Result<OutboxRow, StoreError> {
    let id = get_s(item, "sk").unwrap_or_default().to_owned();
    let what = format!("outbox row {id}");
    let state = get_s(item, "state").unwrap_or_default();
    let text = |name: &str| get_s(item, name).map(str::to_owned);
    Ok(OutboxRow {
        invocation: text("invocation"),
        state: OutboxState::parse(state)
            .ok_or_else(|| corrupt(&what, &format!("unknown state {state:?}")))?,
        attempts: u32::try_from(get_n(item, "attempts").unwrap_or(0)).unwrap_or(u32::MAX),
        last_error: text("last_error"),
        plan: serde_json::from_str(get_s(item, "plan").unwrap_or_default())
            .map_err(|e| corrupt(&what, &format!("payload does not parse: {e}")))?,
        results: text("results")
            .map(|r| serde_json::from_str::<Vec<InvocationResult>>(&r))
            .transpose()
            .map_err(|e| corrupt(&what, &format!("results do not parse: {e}")))?,
        lease_owner: text("lease_owner"),
        lease_until: get_n(item, "lease_until_ms")
            .map(|ms| from_ms(ms, &what))
            .transpose()?,
        created_at: from_ms(get_n(item, "created_ms").unwrap_or(0), &what)?,
        updated_at: from_ms(get_n(item, "updated_ms").unwrap_or(0), &what)?,
        continuation: text("continuation"),
        request: ApprovalId(id),
    })
}

/// A leased write: its update expression and extra condition, with their values.
struct Leased<'a> {
    doing: &'a str,
    set: &'a str,
    extra: Option<&'a str>,
    values: Vec<(&'a str, AttributeValue)>,
}

impl DynamoStore {
    /// Updates an outbox row leased to `owner`; `LeaseLost` when it is not (or no longer).
    fn leased(&self, id: &ApprovalId, owner: &str, w: &Leased<'_>) -> Result<(), StoreError> {
        let mut condition = "lease_owner = :owner AND #st IN (:pending, :sent)".to_owned();
        if let Some(extra) = w.extra {
            condition = format!("{condition} AND {extra}");
        }
        let (client, table) = (self.client.clone(), self.table.clone());
        let k = key(OUTBOX, id.as_str());
        let set = w.set.to_owned();
        let mut values: Item = HashMap::from([
            (":owner".to_owned(), s(owner)),
            (":pending".to_owned(), s(OutboxState::Pending.as_str())),
            (":sent".to_owned(), s(OutboxState::Sent.as_str())),
        ]);
        for (name, v) in &w.values {
            values.insert((*name).to_owned(), v.clone());
        }
        let names: HashMap<String, String> = [("#st", "state")]
            .into_iter()
            .filter(|(n, _)| condition.contains(n) || set.contains(n))
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let values: Item = values
            .into_iter()
            .filter(|(n, _)| condition.contains(n.as_str()) || set.contains(n.as_str()))
            .collect();
        match self.call_raw(&format!("{} {id}", w.doing), move || {
            client
                .update_item()
                .table_name(&table)
                .set_key(Some(k.clone()))
                .update_expression(&set)
                .condition_expression(&condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .send()
        })? {
            Ok(_) => Ok(()),
            Err(Fail::Canceled(_)) => Err(StoreError::LeaseLost(id.clone())),
            Err(Fail::Throttled(m) | Fail::Other(m)) => Err(StoreError::Unavailable(m)),
        }
    }

    /// Leases one due row: `Ok(None)` when another worker took it first.
    fn lease_one(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let (client, table) = (self.client.clone(), self.table.clone());
        let (k, id_s, owner) = (key(OUTBOX, id), id.to_owned(), owner.to_owned());
        let out = self.call_raw(&format!("leasing outbox row {id}"), move || {
            client
                .update_item()
                .table_name(&table)
                .set_key(Some(k.clone()))
                .update_expression(
                    "SET lease_owner = :owner, lease_until_ms = :until, updated_ms = :now, \
                     qsk = :qsk",
                )
                .condition_expression(
                    "#st IN (:pending, :sent) AND \
                     (attribute_not_exists(lease_until_ms) OR lease_until_ms <= :now)",
                )
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":owner", s(&owner))
                .expression_attribute_values(":until", n(until_ms))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":qsk", s(due_sk(until_ms, &id_s)))
                .expression_attribute_values(":pending", s(OutboxState::Pending.as_str()))
                .expression_attribute_values(":sent", s(OutboxState::Sent.as_str()))
                .return_values(ReturnValue::AllNew)
                .send()
        })?;
        match out {
            Ok(o) => o.attributes().map(outbox_row).transpose(),
            Err(Fail::Canceled(_)) => Ok(None),
            Err(Fail::Throttled(m) | Fail::Other(m)) => Err(StoreError::Unavailable(m)),
        }
    }
}

impl DynamoStore {
    /// Releases a leased row, not due before `retry_at`; `unsend` puts it back to `pending`.
    fn release_until(
        &self,
        id: &ApprovalId,
        owner: &str,
        (now, retry_at): (DateTime<Utc>, DateTime<Utc>),
        error: &str,
        unsend: bool,
    ) -> Result<(), StoreError> {
        let (doing, set) = if unsend {
            (
                "returning to pending",
                "SET #st = :pending, lease_until_ms = :retry, last_error = :err, \
                 updated_ms = :now, qsk = :qsk REMOVE lease_owner",
            )
        } else {
            (
                "deferring",
                "SET lease_until_ms = :retry, last_error = :err, updated_ms = :now, \
                 qsk = :qsk REMOVE lease_owner",
            )
        };
        self.leased(
            id,
            owner,
            &Leased {
                doing,
                set,
                extra: None,
                values: vec![
                    (":retry", n(to_ms(retry_at))),
                    (":err", s(error)),
                    (":now", n(to_ms(now))),
                    (":qsk", s(due_sk(to_ms(retry_at), id.as_str()))),
                ],
            },
        )
    }
}

/// One write at a time: DynamoDB has no transaction to share, and each write is already one call.
impl crate::store::RunnerStore for DynamoStore {}

impl OutboxStore for DynamoStore {
    fn submit_resumable(
        &self,
        request: &ApprovalRequest,
        link: &RunnerLink,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.submit_one(request, actor, Some(link))
    }

    fn runner_link(&self, id: &ApprovalId) -> Result<Option<RunnerLink>, StoreError> {
        let item = self.get_item(
            &format!("reading the runner link of {id}"),
            &super::req_pk(id.as_str()),
            "R",
        )?;
        item.as_ref()
            .and_then(|i| get_s(i, "link"))
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    corrupt(&format!("request {id}"), &format!("its runner link: {e}"))
                })
            })
            .transpose()
    }

    fn lease_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let now_ms = to_ms(now);
        let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let due = self.query_index(
            "reading the due resumes",
            DUE,
            false,
            Some(("<", &format!("{:013}", now_ms + 1))),
            None,
        )?;
        let mut ids: Vec<String> = due
            .iter()
            .filter_map(|i| get_s(i, "sk").map(str::to_owned))
            .collect();
        // Oldest first, as the SQLite adapter leases: the row's id orders ties.
        let mut rows = Vec::new();
        ids.sort();
        let mut candidates = Vec::new();
        for id in ids {
            if let Some(item) = self.get_item("reading a due resume", OUTBOX, &id)? {
                candidates.push(outbox_row(&item)?);
            }
        }
        candidates.sort_by(|a, b| {
            (a.created_at, a.request.as_str()).cmp(&(b.created_at, b.request.as_str()))
        });
        for c in candidates {
            if rows.len() >= limit {
                break;
            }
            if let Some(row) = self.lease_one(c.request.as_str(), owner, now_ms, until)? {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn outbox_save_results(
        &self,
        id: &ApprovalId,
        owner: &str,
        results: &[InvocationResult],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(results)
            .map_err(|e| StoreError::Corrupt(format!("outbox row {id}: {e}")))?;
        self.leased(
            id,
            owner,
            &Leased {
                doing: "saving the resume results of",
                set: "SET results = :results, updated_ms = :now",
                extra: Some("attribute_not_exists(results)"),
                values: vec![(":results", s(json)), (":now", n(to_ms(now)))],
            },
        )
    }

    fn outbox_mark_sent(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.leased(
            id,
            owner,
            &Leased {
                doing: "marking as sent",
                set: "SET #st = :sent, updated_ms = :now ADD attempts :one",
                extra: Some("attribute_exists(results)"),
                values: vec![(":now", n(to_ms(now))), (":one", n(1))],
            },
        )
    }

    fn outbox_mark_acked(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        continuation: Option<&str>,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut set = "SET #st = :acked, updated_ms = :now".to_owned();
        let mut values = vec![
            (":acked", s(OutboxState::Acked.as_str())),
            (":now", n(to_ms(now))),
        ];
        if let Some(c) = continuation {
            set.push_str(", continuation = :cont");
            values.push((":cont", s(c)));
        }
        if let Some(note) = note {
            set.push_str(", last_error = :note");
            values.push((":note", s(note)));
        }
        set.push_str(" REMOVE lease_owner, lease_until_ms, qpk, qsk");
        if continuation.is_none() {
            set.push_str(", continuation");
        }
        self.leased(
            id,
            owner,
            &Leased {
                doing: "marking as acked",
                set: &set,
                extra: Some("#st = :sent"),
                values,
            },
        )
    }

    fn outbox_retry_later(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.release_until(id, owner, (now, retry_at), error, false)
    }

    fn outbox_unsend(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.release_until(id, owner, (now, retry_at), error, true)
    }

    fn outbox_mark_failed(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.leased(
            id,
            owner,
            &Leased {
                doing: "marking as failed",
                set: "SET #st = :failed, last_error = :err, updated_ms = :now \
                      REMOVE lease_owner, lease_until_ms, qpk, qsk",
                extra: None,
                values: vec![
                    (":failed", s(OutboxState::Failed.as_str())),
                    (":err", s(error)),
                    (":now", n(to_ms(now))),
                ],
            },
        )
    }

    fn outbox_row(&self, id: &ApprovalId) -> Result<Option<OutboxRow>, StoreError> {
        self.get_item("reading an outbox row", OUTBOX, id.as_str())?
            .as_ref()
            .map(outbox_row)
            .transpose()
    }

    fn outbox_rows(
        &self,
        state: Option<OutboxState>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // The whole outbox partition, filtered and ordered here: the outbox holds one row per
        // decided runner request, and only `resume` lists it.
        let mut rows: Vec<OutboxRow> = self
            .query_partition("reading the outbox", OUTBOX, None)?
            .iter()
            .map(outbox_row)
            .collect::<Result<_, _>>()?;
        rows.retain(|r| state.is_none_or(|st| r.state == st));
        rows.sort_by(|a, b| {
            (a.created_at, a.request.as_str()).cmp(&(b.created_at, b.request.as_str()))
        });
        Ok(rows.into_iter().skip(offset).take(limit).collect())
    }
}
