//! `SqliteStore` on a real file (WAL, `synchronous=FULL`, so every commit is an fsync):
//! decision commit latency (target: median under 5 ms), submit latency, and the open queue
//! with 10,000 open requests among 100,000 (target: well under 50 ms).
//!
//! Files live under Cargo's target tmp dir (a real disk) rather than a possible tmpfs `/tmp`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::hint::black_box;
use std::time::Instant;

use agentdeck::domain::approval::ApprovalRequest;
use agentdeck::domain::decision::{DecisionAsk, Verdict};
use agentdeck::domain::policy::Policy;
use agentdeck::domain::validate::{SubmitContext, submission};
use agentdeck::store::ApprovalStore;
use agentdeck::store::sqlite::SqliteStore;
use chrono::{DateTime, Duration, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;

const TTL_SECS: u32 = 600;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A realistic two-input request raised at `raised`.
fn request(id: &str, raised: DateTime<Utc>, policy: &Policy) -> ApprovalRequest {
    let doc = json!({
        "agentId": format!("AGENT{}", id.len() % 7),
        "agentAliasId": "ALIAS01",
        "sessionId": format!("session-{id}"),
        "sessionAttributes": {"team": "payments", "customer": "c-42"},
        "rationale": "The customer asked to move money between their accounts.",
        "returnControl": {"invocationId": id, "invocationInputs": [
            {"functionInvocationInput": {
                "actionGroup": "payments", "function": "transfer",
                "actionInvocationType": "USER_CONFIRMATION",
                "parameters": [
                    {"name": "amount", "type": "number", "value": "2500"},
                    {"name": "from", "type": "string", "value": "acc-001"},
                    {"name": "to", "type": "string", "value": "acc-002"}]}},
            {"apiInvocationInput": {
                "actionGroup": "notify", "apiPath": "/customers/{id}/email", "httpMethod": "POST",
                "parameters": [{"name": "id", "type": "string", "value": "c-42"}],
                "requestBody": {"content": {"application/json": {"properties": [
                    {"name": "template", "type": "string", "value": "transfer-done"}]}}}}}
        ]},
    });
    let ttl = |_: &str| TTL_SECS;
    submission(
        &doc,
        &SubmitContext {
            policy,
            now: raised,
            ttl_secs: &ttl,
        },
    )
    .unwrap()
}

fn confirm_all(request: &ApprovalRequest) -> DecisionAsk {
    DecisionAsk {
        request: request.id.clone(),
        verdict: Verdict::Confirm,
        inputs: (0..request.inputs.len())
            .map(|i| (i, request.input_hash(i).unwrap()))
            .collect(),
        reviewer: "alice".to_owned(),
        reason: None,
        dwell_ms: Some(1200),
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn commits(c: &mut Criterion) {
    let policy = Policy::default();
    let dir = temp_dir();
    let store = SqliteStore::open(&dir.path().join("approvals.db")).unwrap();
    let pool: Vec<ApprovalRequest> = (0..20_000)
        .map(|i| request(&format!("inv-{i:06}"), now(), &policy))
        .collect();
    store.submit_batch(&pool, "bench").unwrap();
    let mut next = 0_usize;
    let mut extra = 0_usize;
    let at = now() + Duration::seconds(30);
    c.bench_function("decide (commit, fsync)", |b| {
        b.iter_batched(
            || {
                // Setup is not timed: take the next undecided request, topping up if needed.
                let r = if let Some(r) = pool.get(next) {
                    r.clone()
                } else {
                    extra += 1;
                    let r = request(&format!("extra-{extra:06}"), now(), &policy);
                    store.submit(&r, "bench").unwrap();
                    r
                };
                next += 1;
                confirm_all(&r)
            },
            |ask| black_box(store.decide(&ask, &policy, at).unwrap()),
            BatchSize::SmallInput,
        );
    });
    let mut n = 0_usize;
    c.bench_function("submit (commit, fsync)", |b| {
        b.iter_batched(
            || {
                n += 1;
                request(&format!("sub-{n:07}"), now(), &policy)
            },
            |r| store.submit(&r, "bench").unwrap(),
            BatchSize::SmallInput,
        );
    });
}

fn queue(c: &mut Criterion) {
    let policy = Policy::default();
    let dir = temp_dir();
    let store = SqliteStore::open(&dir.path().join("approvals.db")).unwrap();
    let old = now() - Duration::hours(2);
    let requests: Vec<ApprovalRequest> = (0..100_000)
        .map(|i| {
            let raised = if i % 10 == 0 { now() } else { old };
            request(&format!("inv-{i:06}"), raised, &policy)
        })
        .collect();
    let started = Instant::now();
    store.submit_batch(&requests, "bench").unwrap();
    eprintln!(
        "seeded 100,000 requests in one transaction in {:.2?}",
        started.elapsed()
    );
    let started = Instant::now();
    let expired = store.expire_due(now(), "sweeper").unwrap();
    eprintln!(
        "expired {expired} requests in one sweep in {:.2?}",
        started.elapsed()
    );
    assert_eq!(store.open_queue(now()).unwrap().len(), 10_000);
    c.bench_function("open_queue (10,000 open of 100,000)", |b| {
        b.iter(|| black_box(store.open_queue(now()).unwrap()));
    });
    let started = Instant::now();
    let counts = store.counts().unwrap();
    eprintln!(
        "counts over {} requests in {:.2?}",
        counts.requests,
        started.elapsed()
    );
    let started = Instant::now();
    let report = store.audit_verify().unwrap();
    eprintln!(
        "verified {} audit entries and 100,000 requests in {:.2?} (ok: {})",
        report.entries,
        started.elapsed(),
        report.ok()
    );
}

criterion_group!(benches, commits, queue);
criterion_main!(benches);
