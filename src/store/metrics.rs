//! The metrics port: the facts the metrics engine (`domain::metrics`) is fed, read
//! incrementally. A refresh re-reads what was still in flight or open last time (by id) and the
//! facts added since the cursor, so the console reads what is new. SQLite's cursor is its row
//! order (rows only grow, nothing is delivered twice); DynamoDB has no row order, so its cursor
//! is a time watermark and each read starts `overlap_ms` before it (see
//! `store::dynamo::metrics`): the engine counts a fact delivered twice once.

use crate::domain::metrics::{Cursor, Engine, Handoff, InvocationFact, MarkFact, RequestFact};
use crate::domain::status::Status;

use super::{OutboxState, StoreError};

/// The rows one read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactBatch {
    pub invocations: Vec<InvocationFact>,
    pub requests: Vec<RequestFact>,
    pub marks: Vec<MarkFact>,
    /// Whether `facts_after` stopped at the page size: read again from the new cursor.
    pub more: bool,
}

impl FactBatch {
    pub fn len(&self) -> usize {
        self.invocations.len() + self.requests.len() + self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The port.
pub trait MetricsStore: Send + Sync {
    /// Up to `page` invocations, requests and marks (each) added after the cursor, in the
    /// store's row order.
    fn facts_after(&self, after: Cursor, page: usize) -> Result<FactBatch, StoreError>;

    /// These invocations and requests again, by id (those still in flight or open). An id the
    /// store no longer holds is left out.
    fn facts_at(
        &self,
        invocations: &[String],
        requests: &[String],
    ) -> Result<FactBatch, StoreError>;

    /// How far behind the cursor (in the cursor's own unit) `facts_after` may deliver facts
    /// again: 0 for a store whose rows only grow.
    fn overlap(&self) -> i64 {
        0
    }
}

/// How many rows of each kind one read takes.
pub const PAGE: usize = 20_000;

fn feed(engine: &mut Engine, b: &FactBatch) {
    for f in &b.invocations {
        engine.add_invocation(f);
    }
    for f in &b.requests {
        engine.add_request(f);
    }
    for f in &b.marks {
        engine.add_mark(f);
    }
}

/// Brings `engine` up to date with `store`: every new fact, then what was in flight or open
/// before and is still so. Returns how many facts were read.
///
/// New facts come first: a store whose cursor is a time watermark (DynamoDB) must read what
/// settled since its last read before a re-read by id moves the watermark past it.
pub fn refresh(store: &dyn MetricsStore, engine: &mut Engine) -> Result<usize, StoreError> {
    engine.set_overlap(store.overlap());
    let (in_flight, open) = (engine.in_flight_ids(), engine.open_ids());
    let mut read = 0;
    loop {
        let b = store.facts_after(engine.cursor(), PAGE)?;
        read += b.len();
        feed(engine, &b);
        engine.forget_settled();
        if !b.more {
            break;
        }
    }
    let in_flight: Vec<String> = in_flight
        .into_iter()
        .filter(|id| engine.is_in_flight(id))
        .collect();
    let open: Vec<String> = open.into_iter().filter(|id| engine.is_open(id)).collect();
    if !in_flight.is_empty() || !open.is_empty() {
        let again = store.facts_at(&in_flight, &open)?;
        read += again.len();
        feed(engine, &again);
        engine.forget_settled();
    }
    Ok(read)
}

/// What became of a return of control, from its request's status and its resume's outbox
/// state (both by name as stored; None: no request linked, no resume queued). Every adapter
/// reads it this way.
pub fn handoff(status: Option<&str>, outbox: Option<&str>) -> Handoff {
    let Some(status) = status.and_then(Status::parse) else {
        return Handoff::Unlinked;
    };
    if status.is_open() {
        return Handoff::Waiting;
    }
    if status == Status::Expired {
        return Handoff::Abandoned;
    }
    match outbox.and_then(OutboxState::parse) {
        Some(OutboxState::Acked) => Handoff::Resumed,
        Some(OutboxState::Failed) => Handoff::Abandoned,
        // Decided with no resume queued: a denial nobody sent back.
        None if status == Status::Rejected => Handoff::Abandoned,
        Some(OutboxState::Pending | OutboxState::Sent) | None => Handoff::Waiting,
    }
}

/// A call's own latency for the metrics, on the clock the human wait is measured on: from its
/// start to its end as the runner saw them (wall clock). The stored `latency_ms` (the
/// service's `operationTotalTimeMs` when it sent one) only stands in for a call with no end:
/// the service's figure can leave out work it reports after it (post-processing, guardrails),
/// so taking it would let model + tool time exceed end to end.
pub fn end_to_end(started_ms: i64, ended_ms: Option<i64>, stored: Option<i64>) -> i64 {
    ended_ms
        .map(|e| e - started_ms)
        .or(stored)
        .unwrap_or(0)
        .max(0)
}
