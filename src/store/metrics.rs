//! The metrics port: the facts the metrics engine (`domain::metrics`) is fed, read
//! incrementally. A refresh re-reads only what was still in flight or open last time and the
//! rows added since (by the store's own row order), so the console reads what is new.

use crate::domain::metrics::{Cursor, Engine, InvocationFact, MarkFact, RequestFact};

use super::StoreError;

/// The rows one read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactBatch {
    pub invocations: Vec<InvocationFact>,
    pub requests: Vec<RequestFact>,
    pub marks: Vec<MarkFact>,
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

    /// The invocations and requests at these rows again (those still in flight or open).
    fn facts_at(&self, invocations: &[i64], requests: &[i64]) -> Result<FactBatch, StoreError>;
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

/// Brings `engine` up to date with `store`: what was in flight or open, then every new row.
/// Returns how many facts were read.
pub fn refresh(store: &dyn MetricsStore, engine: &mut Engine) -> Result<usize, StoreError> {
    let again = store.facts_at(&engine.in_flight_rows(), &engine.open_rows())?;
    let mut read = again.len();
    feed(engine, &again);
    loop {
        let b = store.facts_after(engine.cursor(), PAGE)?;
        read += b.len();
        feed(engine, &b);
        if b.invocations.len() < PAGE && b.requests.len() < PAGE && b.marks.len() < PAGE {
            return Ok(read);
        }
    }
}
