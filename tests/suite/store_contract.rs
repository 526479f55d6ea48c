//! One contract suite, run against both adapters: `SqliteStore` on a temp file and `DynamoStore`
//! on a moto server this binary starts on 127.0.0.1 (installed by `bash .ci/test`). Plus the
//! DynamoDB-only checks: the queue is a Query on the index, a killed store fails cleanly,
//! throttling backs off and then says so, `init` is idempotent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::common;
use crate::moto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentdeck::app::trace_index::TraceIndex;
use agentdeck::bedrock::runner::DeckStore;
use agentdeck::domain::approval::ApprovalId;
use agentdeck::domain::approval::ApprovalRequest;
use agentdeck::domain::decision::{Refusal, Verdict};
use agentdeck::domain::policy::RiskTier;
use agentdeck::domain::status::Status;
use agentdeck::domain::step_kind::StepKinds;
use agentdeck::domain::trace::TraceEvent;
use agentdeck::store::dynamo::{DynamoOptions, DynamoStore, InitOutcome};
use agentdeck::store::run::ActionMark;
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{
    ApprovalStore, InvocationEnd, InvocationStart, OutboxState, Outcome, RunnerLink, StoreError,
    TraceStore,
};
use common::{TTL_SECS, ask, at, multi_request, sample_request, t0, test_policy};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// moto on 127.0.0.1

/// The moto server shared by this binary's tests (each test has its own table).
fn moto() -> &'static str {
    moto::shared()
}

fn opts(url: &str, table: &str) -> DynamoOptions {
    DynamoOptions {
        table: table.to_owned(),
        endpoint_url: Some(url.to_owned()),
        region: Some("us-east-1".to_owned()),
        static_credentials: Some(("testing".to_owned(), "testing".to_owned())),
        // moto handles one request at a time; 16 racing deciders queue behind each other.
        attempt_timeout: Some(Duration::from_secs(120)),
        ..DynamoOptions::default()
    }
}

fn fresh_table(url: &str, name: &str) -> DynamoOptions {
    let table = format!("{name}-{}", fastrand::u32(..));
    let o = opts(url, &table);
    assert_eq!(DynamoStore::init(&o).unwrap(), InitOutcome::Created);
    o
}

// ---------------------------------------------------------------------------------------------
// the two adapters behind one factory: each call opens another handle on the same store

type Factory = Box<dyn Fn() -> Box<dyn DeckStore> + Send + Sync>;

fn sqlite_factory(name: &str) -> (Factory, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.db"));
    (
        Box::new(move || Box::new(SqliteStore::open(&path).unwrap())),
        dir,
    )
}

fn dynamo_factory(name: &str) -> (Factory, ()) {
    let o = fresh_table(moto(), name);
    (
        Box::new(move || Box::new(DynamoStore::connect(&o).unwrap())),
        (),
    )
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { let (f, _keep) = super::sqlite_factory(stringify!($name)); super::$name(&f); })*
        }
        mod dynamodb {
            $(#[test] fn $name() { let (f, _keep) = super::dynamo_factory(stringify!($name)); super::$name(&f); })*
        }
    };
}

contract!(
    submit_get_resolve_duplicate,
    decide_and_refuse,
    two_person_rule,
    args_hash_mismatch,
    expiry,
    audit_verifies_and_counts,
    traces_are_grouped_into_steps_and_read_a_window_at_a_time,
    a_big_trace_event_is_split_and_read_back_whole,
    interleaved_steps_read_back_their_own_events_in_order,
    a_final_decision_on_a_runner_request_queues_one_resume,
    a_lease_keeps_a_second_worker_off_a_row_until_it_expires,
    a_deferred_row_is_not_due_before_its_retry_time,
    the_trace_index_pages_refreshes_running_turns_and_keeps_kinds_and_depth,
    trace_search_matches_every_word_as_a_prefix_and_reads_no_syntax,
    action_marks_are_kept_in_order_and_checked_against_the_step,
);

#[test]
fn sqlite_race_16_deciders_500_requests() {
    let (f, _keep) = sqlite_factory("race500");
    race(&f, 500);
}

/// The issue's full race on DynamoDB: 16 deciders each try all 500 requests (8,000 decides
/// against one single-threaded moto server, its transaction rollback snapshotting the touched
/// items instead of whole tables: see `tests/suite/moto`). A few minutes; CI runs it.
#[test]
fn dynamodb_race_16_deciders_500_requests() {
    let (f, ()) = dynamo_factory("race500");
    race(&f, 500);
}

fn submit_get_resolve_duplicate(f: &Factory) {
    let store = f();
    let policy = test_policy();
    let r = sample_request("inv-abc-1", RiskTier::High);
    store.submit(&r, "alice").unwrap();
    store
        .submit(&sample_request("inv-abd-2", RiskTier::Low), "alice")
        .unwrap();
    assert!(matches!(
        store.submit(&r, "bob"),
        Err(StoreError::Duplicate(_))
    ));
    let got = store.get(&r.id, &policy, at(1)).unwrap();
    assert_eq!(got.request, r);
    assert_eq!(got.status, Status::Pending);
    assert!(got.decisions.is_empty());
    assert_eq!(store.resolve("inv-abc").unwrap(), r.id);
    assert_eq!(store.resolve("inv-abc-1").unwrap(), r.id);
    assert!(matches!(
        store.resolve("inv-ab"),
        Err(StoreError::Ambiguous { count: 2, .. })
    ));
    assert!(matches!(
        store.resolve("nope"),
        Err(StoreError::NotFound(_))
    ));
    let queue = store.open_queue(at(1)).unwrap();
    assert_eq!(queue.len(), 2);
    assert!(
        queue
            .iter()
            .any(|q| q.id == r.id && q.tier == RiskTier::High)
    );
}

fn decide_and_refuse(f: &Factory) {
    let (store, other) = (f(), f());
    let policy = test_policy();
    let r = sample_request("inv-d", RiskTier::High);
    store.submit(&r, "alice").unwrap();
    let out = store
        .decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", Some("ok")),
            &policy,
            at(5),
        )
        .unwrap();
    assert_eq!(out.status, Status::Approved);
    assert!(out.audit_seq >= 2);
    // Another handle (another console) sees it, and a second decision names who was first.
    let e = other
        .decide(
            &ask(&r, Verdict::Deny, &[0], "carol", Some("no")),
            &policy,
            at(6),
        )
        .unwrap_err();
    match e {
        StoreError::Refused(Refusal::AlreadyDecided { by, .. }) => assert_eq!(by, "bob"),
        e => panic!("{e}"),
    }
    assert!(other.open_queue(at(6)).unwrap().is_empty());
    let got = other.get(&r.id, &policy, at(6)).unwrap();
    assert_eq!(got.decisions.len(), 1);
    assert_eq!(got.decisions[0].reviewer, "bob");
    // Rejecting needs a reason; bad input never writes.
    let r2 = sample_request("inv-d2", RiskTier::Low);
    store.submit(&r2, "alice").unwrap();
    assert!(matches!(
        store.decide(&ask(&r2, Verdict::Deny, &[0], "bob", None), &policy, at(5)),
        Err(StoreError::Refused(Refusal::ReasonRequired { .. }))
    ));
    assert!(matches!(
        store.decide(
            &ask(&r2, Verdict::Confirm, &[3], "bob", None),
            &policy,
            at(5)
        ),
        Err(StoreError::Refused(Refusal::NoSuchInput { .. }))
    ));
    assert!(matches!(
        store.decide(
            &ask(
                &sample_request("ghost", RiskTier::Low),
                Verdict::Confirm,
                &[0],
                "bob",
                None
            ),
            &policy,
            at(5)
        ),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.get(&r2.id, &policy, at(5)).unwrap().status,
        Status::Pending
    );
}

fn two_person_rule(f: &Factory) {
    let store = f();
    let policy = test_policy();
    let r = sample_request("inv-2p", RiskTier::Critical);
    store.submit(&r, "alice").unwrap();
    let first = store
        .decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", Some("fine")),
            &policy,
            at(5),
        )
        .unwrap();
    assert_eq!(first.status, Status::PartiallyDecided);
    assert_eq!(store.open_queue(at(6)).unwrap()[0].approvals, 1);
    assert!(matches!(
        store.decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", Some("again")),
            &policy,
            at(6)
        ),
        Err(StoreError::Refused(Refusal::SameApprover { .. }))
    ));
    let second = store
        .decide(
            &ask(&r, Verdict::Confirm, &[0], "carol", Some("agreed")),
            &policy,
            at(7),
        )
        .unwrap();
    assert_eq!(second.status, Status::Approved);
    assert!(store.open_queue(at(8)).unwrap().is_empty());
    // Multi-input: a low and a critical input decided in parts.
    let m = multi_request("inv-multi", &[RiskTier::Low, RiskTier::Critical]);
    store.submit(&m, "alice").unwrap();
    let o = store
        .decide(
            &ask(&m, Verdict::Confirm, &[0], "bob", None),
            &policy,
            at(5),
        )
        .unwrap();
    assert_eq!(o.status, Status::PartiallyDecided);
    let o = store
        .decide(
            &ask(&m, Verdict::Deny, &[1], "carol", Some("no")),
            &policy,
            at(6),
        )
        .unwrap();
    assert_eq!(o.status, Status::Mixed);
}

fn args_hash_mismatch(f: &Factory) {
    let store = f();
    let policy = test_policy();
    let r = sample_request("inv-h", RiskTier::Medium);
    store.submit(&r, "alice").unwrap();
    let mut a = ask(&r, Verdict::Confirm, &[0], "bob", None);
    a.inputs[0].1 = "0".repeat(64);
    assert!(matches!(
        store.decide(&a, &policy, at(5)),
        Err(StoreError::Refused(Refusal::ArgumentsChanged { .. }))
    ));
    assert_eq!(store.get(&r.id, &policy, at(5)).unwrap().decisions.len(), 0);
}

fn expiry(f: &Factory) {
    let store = f();
    let policy = test_policy();
    let r = sample_request("inv-e", RiskTier::Medium);
    let keep = sample_request("inv-e-later", RiskTier::Medium);
    let mut later = keep.clone();
    later.expires_at = at(i64::from(TTL_SECS) * 2);
    store.submit(&r, "alice").unwrap();
    store.submit(&later, "alice").unwrap();
    let past = at(i64::from(TTL_SECS) + 1);
    assert_eq!(store.open_queue(past).unwrap().len(), 1);
    assert_eq!(store.expire_due(past, "sweeper").unwrap(), 1);
    assert_eq!(store.expire_due(past, "sweeper").unwrap(), 0);
    assert_eq!(
        store.get(&r.id, &policy, past).unwrap().status,
        Status::Expired
    );
    assert!(matches!(
        store.decide(&ask(&r, Verdict::Confirm, &[0], "bob", None), &policy, past),
        Err(StoreError::Refused(Refusal::Expired { .. }))
    ));
    assert!(store.audit_verify().unwrap().ok());
}

fn audit_verifies_and_counts(f: &Factory) {
    let store = f();
    let policy = test_policy();
    for i in 0..3 {
        let r = sample_request(&format!("inv-a{i}"), RiskTier::Medium);
        store.submit(&r, "alice").unwrap();
        if i < 2 {
            store
                .decide(
                    &ask(&r, Verdict::Confirm, &[0], "bob", None),
                    &policy,
                    at(5),
                )
                .unwrap();
        }
    }
    let report = store.audit_verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 5);
    let mut seqs = Vec::new();
    store
        .audit_each(&mut |e| {
            seqs.push(e.seq);
            Ok(())
        })
        .unwrap();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let c = store.counts().unwrap();
    assert_eq!(
        (c.requests, c.decisions, c.confirms, c.audit_entries),
        (3, 2, 2, 5)
    );
    let approved = c
        .by_status
        .iter()
        .find(|(s, _)| *s == Status::Approved)
        .unwrap()
        .1;
    assert_eq!(approved, 2);
}

/// 16 deciders (each with its own store handle), in pairs walking the requests from different
/// starting points, so pairs race the same request head-on and catch up on others' decisions.
fn race(f: &Factory, total: usize) {
    let policy = test_policy();
    let setup = f();
    let requests: Vec<ApprovalRequest> = (0..total)
        .map(|i| sample_request(&format!("race-{i:03}"), RiskTier::Medium))
        .collect();
    for r in &requests {
        setup.submit(r, "loader").unwrap();
    }
    let started = Instant::now();
    let wins = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for t in 0..16_usize {
            let store = f();
            let (requests, policy, wins) = (&requests, &policy, Arc::clone(&wins));
            scope.spawn(move || {
                let start = (t / 2) * (total / 8);
                for k in 0..total {
                    let r = &requests[(start + k) % total];
                    let who = format!("reviewer-{t}");
                    match store.decide(&ask(r, Verdict::Confirm, &[0], &who, None), policy, at(5)) {
                        Ok(_) => wins.lock().unwrap().push(r.id.clone()),
                        Err(StoreError::Refused(Refusal::AlreadyDecided { .. })) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let took = started.elapsed();
    let mut wins = wins.lock().unwrap().clone();
    wins.sort();
    let before = wins.len();
    wins.dedup();
    assert_eq!(before, total, "each request decided exactly once");
    assert_eq!(wins.len(), total);
    for r in &requests {
        assert_eq!(setup.get(&r.id, &policy, at(6)).unwrap().decisions.len(), 1);
    }
    let report = setup.audit_verify().unwrap();
    assert!(
        report.ok(),
        "{:?}",
        &report.problems[..report.problems.len().min(5)]
    );
    assert_eq!(report.entries as usize, 2 * total);
    eprintln!("race: 16 deciders over {total} requests took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// DynamoDB only

#[test]
fn dynamodb_init_is_idempotent_and_checks_the_shape() {
    let o = fresh_table(moto(), "init");
    assert_eq!(DynamoStore::init(&o).unwrap(), InitOutcome::Exists);
    let missing = DynamoStore::connect(&opts(moto(), "no-such-table")).unwrap_err();
    assert!(missing.to_string().contains("agentdeck init"), "{missing}");
}

#[test]
fn dynamodb_audit_tamper_is_found() {
    // Edit an audit entry's payload behind the store's back with a raw PutItem-equivalent:
    // a second store decision with a forged reviewer can't be made, so we rewrite via the SDK.
    let o = fresh_table(moto(), "tamper");
    let store = DynamoStore::connect(&o).unwrap();
    let policy = test_policy();
    let r = sample_request("inv-t", RiskTier::Medium);
    store.submit(&r, "alice").unwrap();
    store
        .decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", None),
            &policy,
            at(5),
        )
        .unwrap();
    assert!(store.audit_verify().unwrap().ok());
    let python = moto::python_with_moto();
    let script = format!(
        r#"
import boto3
t = boto3.resource("dynamodb", endpoint_url="{url}", region_name="us-east-1",
    aws_access_key_id="testing", aws_secret_access_key="testing").Table("{table}")
e = t.get_item(Key={{"pk": "AUDIT", "sk": "E#000000000002"}})["Item"]
e["payload"] = e["payload"].replace('"bob"', '"mallory"')
t.put_item(Item=e)
t.update_item(Key={{"pk": "REQ#inv-t", "sk": "R"}}, UpdateExpression="REMOVE decs")
"#,
        url = moto(),
        table = o.table
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = store.audit_verify().unwrap();
    let all = report.problems.join("\n");
    assert!(
        all.contains("audit entry 2") && all.contains("does not recompute"),
        "{all}"
    );
    assert!(
        all.contains("request inv-t") && all.contains("decision"),
        "{all}"
    );
}

#[test]
fn dynamodb_open_queue_is_an_index_query_whose_cost_follows_pending() {
    let o = fresh_table(moto(), "queue");
    let store = DynamoStore::connect(&o).unwrap();
    let policy = test_policy();
    for i in 0..100 {
        store
            .submit(&sample_request(&format!("q-{i:03}"), RiskTier::Medium), "l")
            .unwrap();
    }
    let t = Instant::now();
    let before = store.open_queue(at(1)).unwrap();
    let with_100 = t.elapsed();
    assert_eq!(before.len(), 100);
    for i in 100..250 {
        let r = sample_request(&format!("q-{i:03}"), RiskTier::Medium);
        store.submit(&r, "l").unwrap();
        store
            .decide(
                &ask(&r, Verdict::Confirm, &[0], "bob", None),
                &policy,
                at(2),
            )
            .unwrap();
    }
    let t = Instant::now();
    let after = store.open_queue(at(3)).unwrap();
    let with_600 = t.elapsed();
    assert_eq!(
        after,
        before.into_iter().collect::<Vec<_>>(),
        "decided requests leave the index"
    );
    eprintln!("open_queue: 100 pending {with_100:?}; 100 pending + 150 decided {with_600:?}");
    // The source has no Scan anywhere: the queue's only read path is `query()` on the index.
    for src in [
        include_str!("../../src/store/dynamo.rs"),
        include_str!("../../src/store/dynamo/runner.rs"),
    ] {
        assert!(
            !src.contains(".scan()"),
            "the DynamoDB adapter must never Scan"
        );
    }
    let _ = t0();
}

#[test]
fn dynamodb_store_killed_mid_run_fails_cleanly_naming_the_endpoint() {
    let own = moto::Moto::start();
    let url = own.url.clone();
    let o = fresh_table(&url, "killed");
    let store = DynamoStore::connect(&o).unwrap();
    let policy = test_policy();
    let r = sample_request("inv-k", RiskTier::Medium);
    store.submit(&r, "alice").unwrap();
    drop(own);
    let t = Instant::now();
    let e = store
        .decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", None),
            &policy,
            at(5),
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Unavailable(_)), "{msg}");
    assert!(msg.contains(&url), "{msg}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failed fast: {:?}",
        t.elapsed()
    );
    assert!(matches!(
        store.open_queue(at(5)),
        Err(StoreError::Unavailable(_))
    ));
}

/// A DynamoDB endpoint that answers every call with ProvisionedThroughputExceededException.
fn throttling_endpoint() -> (String, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut len = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = reader.read_exact(&mut body);
                    *counter.lock().unwrap() += 1;
                    let out = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#;
                    let resp = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-ErrorType: ProvisionedThroughputExceededException\r\nContent-Length: {}\r\n\r\n{out}",
                        out.len()
                    );
                    if conn.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, hits)
}

#[test]
fn dynamodb_throttling_backs_off_then_says_throttled() {
    let (url, hits) = throttling_endpoint();
    let t = Instant::now();
    let e = DynamoStore::connect(&opts(&url, "throttled")).unwrap_err();
    let took = t.elapsed();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Unavailable(_)), "{msg}");
    assert!(msg.contains("throttled") && msg.contains(&url), "{msg}");
    assert_eq!(*hits.lock().unwrap(), 6, "bounded retries");
    assert!(took > Duration::from_millis(300), "it backed off: {took:?}");
}

// ---------------------------------------------------------------------------------------------
// the runner's ports: traces and the outbox

fn ev(trace_id: &str, n: usize) -> TraceEvent {
    TraceEvent::from_wire(json!({
        "agentId": "A", "sessionId": "s", "eventTime": format!("2026-03-02T09:00:{:02}.000000123Z", n % 60),
        "trace": {"orchestrationTrace": {"modelInvocationOutput": {
            "traceId": trace_id, "rawResponse": {"content": format!("out {n}")},
            "metadata": {"totalTimeMs": 10, "usage": {"inputTokens": 100, "outputTokens": 5}}}}}
    }))
}

fn start(request_id: &str, session: &str, secs: i64) -> InvocationStart {
    InvocationStart {
        request_id: request_id.into(),
        agent_id: "A".into(),
        agent_alias_id: "L".into(),
        session_id: session.into(),
        input_text: Some("hi".into()),
        resumes: None,
        started_at: at(secs),
    }
}

fn traces_are_grouped_into_steps_and_read_a_window_at_a_time(f: &Factory) {
    let (s, reader) = (f(), f());
    for (i, session) in ["s-a", "s-b"].iter().enumerate() {
        s.begin_invocation(&start(&format!("req-{i}"), session, i as i64))
            .unwrap();
    }
    // 1000 events over 250 steps, in batches of 64, like the runner writes them.
    let events: Vec<TraceEvent> = (0..1000)
        .map(|n| ev(&format!("req-0-{}", n / 4), n))
        .collect();
    for batch in events.chunks(64) {
        s.append_trace("req-0", batch, &[]).unwrap();
    }
    s.append_trace("req-0", &[], &["Hello, ".into(), "world".into()])
        .unwrap();
    s.finish_invocation(
        "req-0",
        &InvocationEnd {
            outcome: Outcome::Finished,
            ended_at: at(3),
            error: None,
            final_response: Some("Hello, world".into()),
            latency_ms: Some(3000),
        },
    )
    .unwrap();
    // Read through another handle (another process would see the same).
    let inv = reader.invocation("req-0").unwrap().unwrap();
    assert_eq!((inv.events, inv.steps, inv.chunks), (1000, 250, 2));
    assert_eq!((inv.input_tokens, inv.output_tokens), (100_000, 5_000));
    assert_eq!(inv.outcome, Outcome::Finished);
    assert_eq!(inv.final_response.as_deref(), Some("Hello, world"));
    assert_eq!(reader.chunk_text("req-0").unwrap(), "Hello, world");

    let page = reader.steps("req-0", 100, 20).unwrap();
    assert_eq!(page.len(), 20);
    assert_eq!(page[0].step, 101);
    assert_eq!(page[0].trace_id, "req-0-100");
    assert_eq!(
        (page[0].first_seq, page[0].last_seq, page[0].events),
        (401, 404, 4)
    );
    assert_eq!(page[0].figures.duration_ms, Some(40));
    assert_eq!(page[0].figures.input_tokens, 400);
    assert_eq!(page[0].kinds, "orchestration/model-output");
    assert_eq!(reader.steps("req-0", 250, 20).unwrap().len(), 0);

    let step = reader.step_events("req-0", 101).unwrap();
    assert_eq!(step.len(), 4);
    assert_eq!(step[0].raw, events[400].raw);
    assert_eq!(step[0].event(), events[400]);
    assert_eq!(
        step[0].event_time.as_deref(),
        Some("2026-03-02T09:00:40.000000123Z")
    );
    let window = reader.events("req-0", 998, 10).unwrap();
    assert_eq!(
        window.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![999, 1000]
    );

    // Sessions: most recent first; invocations of a session, oldest first.
    let sessions = reader.sessions(0, 10).unwrap();
    assert_eq!(
        sessions
            .iter()
            .map(|x| x.session_id.as_str())
            .collect::<Vec<_>>(),
        vec!["s-b", "s-a"]
    );
    assert_eq!(reader.sessions(1, 10).unwrap().len(), 1);
    assert_eq!(reader.invocations("s-a", 0, 10).unwrap().len(), 1);
    let counts = reader.counts().unwrap();
    assert_eq!((counts.invocations, counts.trace_events), (2, 1000));
    assert_eq!(counts.recent.len(), 2);
    assert_eq!(counts.recent[0].request_id, "req-1");
    // Appending to an invocation that was never started is refused, not invented.
    assert!(matches!(
        s.append_trace("req-none", &events[..1], &[]),
        Err(StoreError::NotFound(_))
    ));
    // Starting the same request id twice is a duplicate, from any handle.
    assert!(matches!(
        reader.begin_invocation(&start("req-0", "s-a", 9)),
        Err(StoreError::Duplicate(_))
    ));
}

/// An event far over DynamoDB's 400 KB item limit (and a long chunk) come back byte for byte.
fn a_big_trace_event_is_split_and_read_back_whole(f: &Factory) {
    let s = f();
    s.begin_invocation(&start("req-big", "s-big", 0)).unwrap();
    let text: String = (0..900_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let big = TraceEvent::from_wire(json!({
        "agentId": "A", "sessionId": "s-big",
        "trace": {"orchestrationTrace": {"modelInvocationInput": {
            "traceId": "t-big", "text": format!("é{text}ü")}}}
    }));
    let chunk = format!("ß{text}");
    s.append_trace(
        "req-big",
        &[ev("t-0", 0), big.clone(), ev("t-0", 2)],
        std::slice::from_ref(&chunk),
    )
    .unwrap();
    let reader = f();
    let all = reader.events("req-big", 0, 10).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].raw, big.raw);
    assert_eq!(all[1].event(), big);
    let step = reader.step_events("req-big", all[1].step).unwrap();
    assert_eq!(step.len(), 1);
    assert_eq!(step[0].raw, big.raw);
    assert_eq!(reader.step_events("req-big", all[0].step).unwrap().len(), 2);
    assert_eq!(reader.chunk_text("req-big").unwrap(), chunk);
}

/// Collaborators interleave steps: each step's events come back, in order, and no other's.
fn interleaved_steps_read_back_their_own_events_in_order(f: &Factory) {
    let s = f();
    s.begin_invocation(&start("req-i", "s-i", 0)).unwrap();
    let ids = ["a", "b", "a", "c", "b", "a", "c"];
    let events: Vec<TraceEvent> = ids.iter().enumerate().map(|(n, t)| ev(t, n)).collect();
    s.append_trace("req-i", &events[..3], &[]).unwrap();
    s.append_trace("req-i", &events[3..], &[]).unwrap();
    for (step, tid) in [(1, "a"), (2, "b"), (3, "c")] {
        let got: Vec<u64> = s
            .step_events("req-i", step)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        let want: Vec<u64> = (1..=7).filter(|&q| ids[q as usize - 1] == tid).collect();
        assert_eq!(got, want, "step {step} ({tid})");
    }
    assert!(s.step_events("req-i", 4).unwrap().is_empty());
}

fn runner_link(inv: &str) -> RunnerLink {
    RunnerLink {
        invocation: inv.into(),
        trace_id: Some(format!("{inv}-0")),
    }
}

fn a_final_decision_on_a_runner_request_queues_one_resume(f: &Factory) {
    let (s, other) = (f(), f());
    let policy = test_policy();
    let r = sample_request("inv-run", RiskTier::Low);
    s.submit_resumable(&r, &runner_link("req-r"), "runner")
        .unwrap();
    assert_eq!(
        other.runner_link(&r.id).unwrap(),
        Some(runner_link("req-r"))
    );
    // A plain request is not resumable and gets no outbox row.
    let plain = sample_request("inv-plain", RiskTier::Low);
    s.submit(&plain, "alice").unwrap();
    assert_eq!(s.runner_link(&plain.id).unwrap(), None);
    s.decide(
        &ask(&plain, Verdict::Confirm, &[0], "bob", None),
        &policy,
        at(4),
    )
    .unwrap();
    assert!(s.outbox_row(&plain.id).unwrap().is_none());
    // Two racing deciders: one decision, one outbox row.
    let handles: Vec<_> = ["bob", "carol"]
        .into_iter()
        .map(|who| {
            let store = f();
            let (r, policy) = (r.clone(), policy.clone());
            std::thread::spawn(move || {
                store
                    .decide(&ask(&r, Verdict::Confirm, &[0], who, None), &policy, at(5))
                    .is_ok()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|won| *won)
        .count();
    assert_eq!(wins, 1);
    let row = other.outbox_row(&r.id).unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    assert_eq!(row.invocation.as_deref(), Some("req-r"));
    assert_eq!(row.plan.invocation_id, r.id.as_str());
    assert_eq!(other.outbox_rows(None, 0, 10).unwrap().len(), 1);
    assert!(other.audit_verify().unwrap().ok());
}

fn decided_row(f: &Factory, id: &str) -> ApprovalId {
    let s = f();
    let r = sample_request(id, RiskTier::Low);
    s.submit_resumable(&r, &runner_link("req-l"), "runner")
        .unwrap();
    s.decide(
        &ask(&r, Verdict::Confirm, &[0], "alice", None),
        &test_policy(),
        at(5),
    )
    .unwrap();
    r.id
}

fn a_lease_keeps_a_second_worker_off_a_row_until_it_expires(f: &Factory) {
    let id = decided_row(f, "inv-lease");
    let (a, b) = (f(), f());
    let now = t0();
    let leased = a
        .lease_outbox("worker-a", now, Duration::from_secs(30), 10)
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].lease_owner.as_deref(), Some("worker-a"));
    assert!(
        b.lease_outbox("worker-b", now, Duration::from_secs(30), 10)
            .unwrap()
            .is_empty()
    );
    // B cannot act on A's row.
    assert!(matches!(
        b.outbox_mark_sent(&id, "worker-b", now),
        Err(StoreError::LeaseLost(_))
    ));
    // Results must be kept before a send is recorded.
    assert!(matches!(
        a.outbox_mark_sent(&id, "worker-a", now),
        Err(StoreError::LeaseLost(_))
    ));
    let results =
        agentdeck::domain::resume::build_results(&leased[0].plan, &agentdeck::bedrock::NoExecutor);
    a.outbox_save_results(&id, "worker-a", &results, now)
        .unwrap();
    // Kept once: a second save (a retry re-running the executor) is refused.
    assert!(
        a.outbox_save_results(&id, "worker-a", &results, now)
            .is_err()
    );
    // A stalls past its lease; B takes the row over and A's late writes fail.
    let later = now + chrono::Duration::seconds(31);
    let taken = b
        .lease_outbox("worker-b", later, Duration::from_secs(30), 10)
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].results.as_ref(), Some(&results));
    assert!(matches!(
        a.outbox_mark_sent(&id, "worker-a", later),
        Err(StoreError::LeaseLost(_))
    ));
    b.outbox_mark_sent(&id, "worker-b", later).unwrap();
    b.outbox_mark_acked(&id, "worker-b", later, Some("req-cont"), None)
        .unwrap();
    let row = b.outbox_row(&id).unwrap().unwrap();
    assert_eq!(
        (row.state, row.attempts, row.continuation.as_deref()),
        (OutboxState::Acked, 1, Some("req-cont"))
    );
    // Acked rows are never leased again.
    assert!(
        a.lease_outbox(
            "worker-a",
            later + chrono::Duration::hours(1),
            Duration::from_secs(1),
            10
        )
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        a.outbox_rows(Some(OutboxState::Acked), 0, 10)
            .unwrap()
            .len(),
        1
    );
}

fn a_deferred_row_is_not_due_before_its_retry_time(f: &Factory) {
    let id = decided_row(f, "inv-defer");
    let s = f();
    let now = t0();
    s.lease_outbox("w", now, Duration::from_secs(30), 1)
        .unwrap();
    let retry_at = now + chrono::Duration::seconds(8);
    s.outbox_unsend(&id, "w", now, retry_at, "connection refused")
        .unwrap();
    assert!(
        s.lease_outbox(
            "w",
            now + chrono::Duration::seconds(7),
            Duration::from_secs(30),
            1
        )
        .unwrap()
        .is_empty()
    );
    let row = s
        .lease_outbox("w", retry_at, Duration::from_secs(30), 1)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    assert_eq!(row.last_error.as_deref(), Some("connection refused"));
    s.outbox_mark_failed(&id, "w", retry_at, "gave up").unwrap();
    assert_eq!(
        s.outbox_row(&id).unwrap().unwrap().state,
        OutboxState::Failed
    );
}

// ---------------------------------------------------------------------------------------------
// the traces explorer's read side: the incremental index

/// A knowledge-base lookup by a collaborator (a two-element callerChain).
fn collaborator_lookup(trace_id: &str) -> TraceEvent {
    TraceEvent::from_wire(json!({
        "agentId": "A", "sessionId": "s", "eventTime": "2026-03-02T09:00:30.000000000Z",
        "callerChain": [{"agentAliasArn": "arn:aws:bedrock:us-east-1:1:agent-alias/A/L"},
                        {"agentAliasArn": "arn:aws:bedrock:us-east-1:1:agent-alias/B/M"}],
        "trace": {"orchestrationTrace": {"invocationInput": {"traceId": trace_id,
            "invocationType": "KNOWLEDGE_BASE",
            "knowledgeBaseLookupInput": {"text": "refund policy", "knowledgeBaseId": "KB1"}}}}
    }))
}

fn end(outcome: Outcome) -> InvocationEnd {
    InvocationEnd {
        outcome,
        ended_at: at(100),
        error: None,
        final_response: None,
        latency_ms: Some(100),
    }
}

/// Reads every page there is into the index; returns how many pages it took.
fn catch_up(s: &dyn DeckStore, ix: &mut TraceIndex, limit: usize) -> usize {
    let mut pages = 0;
    loop {
        let page = s.trace_index(ix.cursor, &ix.running(), limit).unwrap();
        ix.apply(&page);
        pages += 1;
        assert!(pages < 100, "the index never settles");
        if !page.more {
            return pages;
        }
    }
}

fn the_trace_index_pages_refreshes_running_turns_and_keeps_kinds_and_depth(f: &Factory) {
    let (s, reader) = (f(), f());
    s.begin_invocation(&start("req-a", "s-a", 0)).unwrap();
    s.begin_invocation(&start("req-b", "s-b", 10)).unwrap();
    s.append_trace(
        "req-a",
        &[ev("a-0", 0), ev("a-0", 1), collaborator_lookup("a-1")],
        &[],
    )
    .unwrap();
    s.append_trace("req-b", &[ev("b-0", 2)], &[]).unwrap();
    s.finish_invocation("req-b", &end(Outcome::Finished))
        .unwrap();

    let mut ix = TraceIndex::default();
    // One event a page: the first load comes in several pages.
    assert!(catch_up(reader.as_ref(), &mut ix, 1) >= 2);
    assert_eq!((ix.invocations.len(), ix.steps.len()), (2, 3));
    let a = ix.invocation_by_request("req-a").unwrap();
    let p = ix.step_pos(a, 1).unwrap();
    assert!(ix.step_kinds(p).contains(StepKinds::MODEL_OUTPUT));
    assert_eq!(ix.steps.tokens_in[p], 200);
    assert_eq!(ix.steps.depth[p], 0);
    let kb = ix.step_pos(a, 2).unwrap();
    assert!(ix.step_kinds(kb).contains(StepKinds::KNOWLEDGE_BASE));
    assert_eq!(
        ix.steps.depth[kb], 1,
        "a two-element callerChain is a collaborator"
    );
    assert_eq!(ix.running(), vec!["req-a".to_owned()]);

    // The running turn grows (step 2 again, a step 3), then ends: the index follows it.
    s.append_trace("req-a", &[collaborator_lookup("a-1"), ev("a-2", 3)], &[])
        .unwrap();
    catch_up(reader.as_ref(), &mut ix, 100);
    assert_eq!(ix.invocations[a as usize].steps.len(), 3);
    assert_eq!(ix.steps.len(), 4);
    s.finish_invocation("req-a", &end(Outcome::WaitingForHuman))
        .unwrap();
    catch_up(reader.as_ref(), &mut ix, 100);
    assert_eq!(ix.invocations[a as usize].outcome, Outcome::WaitingForHuman);
    assert!(ix.running().is_empty());

    // A later turn, and one recorded now that started long before (an import): both show up.
    s.begin_invocation(&start("req-c", "s-a", 20)).unwrap();
    catch_up(reader.as_ref(), &mut ix, 100);
    s.begin_invocation(&start("req-old", "s-old", -1000))
        .unwrap();
    s.append_trace("req-old", &[ev("old-0", 4)], &[]).unwrap();
    catch_up(reader.as_ref(), &mut ix, 100);
    assert!(ix.invocation_by_request("req-c").is_some());
    let old = ix.invocation_by_request("req-old").unwrap();
    assert_eq!(ix.invocations[old as usize].steps.len(), 1);
    assert_eq!((ix.invocations.len(), ix.steps.len()), (4, 5));
    // A fresh index over the same store reads the same.
    let mut again = TraceIndex::default();
    catch_up(reader.as_ref(), &mut again, 1000);
    assert_eq!((again.invocations.len(), again.steps.len()), (4, 5));
}

fn trace_search_matches_every_word_as_a_prefix_and_reads_no_syntax(f: &Factory) {
    let s = f();
    s.begin_invocation(&start("req-1", "s-1", 0)).unwrap();
    let prompt = TraceEvent::from_wire(json!({
        "agentId": "A", "sessionId": "s", "eventTime": "2026-03-02T09:00:01.000000000Z",
        "trace": {"orchestrationTrace": {"modelInvocationInput": {"traceId": "t-0",
            "text": "Line one\nTransfer \"approval\" needed", "type": "ORCHESTRATION"}}}
    }));
    s.append_trace(
        "req-1",
        &[prompt, ev("t-0", 1), collaborator_lookup("t-1")],
        &[],
    )
    .unwrap();
    let hits = |q: &str| s.search_steps(q, 100).unwrap();
    assert_eq!(hits("transfer"), vec![("req-1".to_owned(), 1)]);
    assert_eq!(hits("TRANSF"), vec![("req-1".to_owned(), 1)]);
    assert_eq!(hits("refund pol"), vec![("req-1".to_owned(), 2)]);
    assert_eq!(hits("refund transfer"), vec![]);
    assert_eq!(hits("\"approval"), vec![("req-1".to_owned(), 1)]);
    assert_eq!(hits("NOT OR AND ( *"), vec![]);
    assert_eq!(hits("   "), vec![]);
    assert_eq!(hits("out"), vec![("req-1".to_owned(), 1)]);
    s.begin_invocation(&start("req-2", "s-2", 5)).unwrap();
    s.append_trace("req-2", &[collaborator_lookup("u-0")], &[])
        .unwrap();
    assert_eq!(
        hits("refund"),
        vec![("req-1".to_owned(), 2), ("req-2".to_owned(), 1)]
    );
    assert_eq!(s.search_steps("refund", 1).unwrap().len(), 1);
}

fn action_marks_are_kept_in_order_and_checked_against_the_step(f: &Factory) {
    let (s, reader) = (f(), f());
    s.begin_invocation(&start("req-m", "s-m", 0)).unwrap();
    s.append_trace("req-m", &[ev("req-m-0", 0), ev("req-m-1", 1)], &[])
        .unwrap();
    let mark = |step: u64, trace_id: &str, appropriate: bool, who: &str, secs: i64| ActionMark {
        request_id: "req-m".into(),
        step,
        trace_id: trace_id.into(),
        appropriate,
        note: Some(format!("{who} at {secs}")),
        who: who.into(),
        at: at(secs),
    };
    s.mark_action(&mark(2, "req-m-1", false, "dana", 10))
        .unwrap();
    s.mark_action(&mark(2, "req-m-1", true, "dana", 20))
        .unwrap();
    s.mark_action(&mark(1, "req-m-0", true, "eve", 30)).unwrap();
    // Read back through another handle, oldest first, nothing lost or merged.
    let got = reader.action_marks("req-m").unwrap();
    assert_eq!(
        got,
        vec![
            mark(2, "req-m-1", false, "dana", 10),
            mark(2, "req-m-1", true, "dana", 20),
            mark(1, "req-m-0", true, "eve", 30),
        ]
    );
    // A step that does not exist, or a traceId that is not the step's, is refused by name.
    let e = s
        .mark_action(&mark(3, "req-m-2", true, "dana", 40))
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("step 3"), "{e}");
    let e = s
        .mark_action(&mark(1, "req-m-1", true, "dana", 40))
        .unwrap_err();
    assert!(
        e.to_string().contains("req-m-0"),
        "names the step's real traceId: {e}"
    );
    assert_eq!(reader.action_marks("req-m").unwrap().len(), 3);
    assert!(reader.action_marks("req-none").unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// decisions write on what was read; the audit check's outbox cross-check; step cursors

/// The calls one DynamoDB handle sent since `before`, by operation (SQLite: None).
type Calls = std::collections::BTreeMap<String, u64>;

fn delta(before: &Calls, after: &Calls) -> Calls {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn twi(n: u64) -> Calls {
    Calls::from([("transact_write_items".to_owned(), n)])
}

/// Two consoles `a` and `b` show the same two-person request (each read it with `get`); their
/// decisions are one conditional write each and no read, also when the other decided meanwhile
/// (the failed write answers with the request as it is now: the refusal names who decided).
/// `c` never read it: its decision reads first. `calls` gives a handle's call counts (DynamoDB)
/// or None (SQLite, which reads inside its own transaction: nothing to count).
fn decisions_write_on_what_was_read<S: DeckStore>(
    a: &S,
    b: &S,
    c: &S,
    calls: &dyn Fn(&S) -> Option<Calls>,
) {
    let policy = test_policy();
    let r = sample_request("inv-seen", RiskTier::Critical);
    a.submit(&r, "runner").unwrap();
    a.get(&r.id, &policy, at(1)).unwrap();
    b.get(&r.id, &policy, at(1)).unwrap();
    b.counts().unwrap(); // the console reads its totals at start (and the audit head with them)
    let cost = |s: &S, run: &mut dyn FnMut()| -> Option<Calls> {
        let before = calls(s);
        run();
        Some(delta(&before?, &calls(s)?))
    };

    let mut out = None;
    let spent = cost(a, &mut || {
        out = Some(a.decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", Some("fine")),
            &policy,
            at(5),
        ));
    });
    assert_eq!(out.unwrap().unwrap().status, Status::PartiallyDecided);
    if let Some(spent) = spent {
        assert_eq!(
            spent,
            twi(1),
            "a decision on what was read: one write, no read"
        );
    }

    // b still shows it pending; bob approving again there is refused by the write's answer.
    let mut out = None;
    let spent = cost(b, &mut || {
        out = Some(b.decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", Some("again")),
            &policy,
            at(6),
        ));
    });
    match out.unwrap() {
        Err(StoreError::Refused(Refusal::SameApprover { reviewer, .. })) => {
            assert_eq!(reviewer, "bob");
        }
        other => panic!("{other:?}"),
    }
    if let Some(spent) = spent {
        assert_eq!(
            spent,
            twi(1),
            "the stale write's answer re-planned it: no read"
        );
    }

    // carol on b: b now knows the request and the head as they are.
    let mut out = None;
    let spent = cost(b, &mut || {
        out = Some(b.decide(
            &ask(&r, Verdict::Confirm, &[0], "carol", Some("agreed")),
            &policy,
            at(7),
        ));
    });
    assert_eq!(out.unwrap().unwrap().status, Status::Approved);
    if let Some(spent) = spent {
        assert_eq!(spent, twi(1));
    }

    // a still shows 1/2: dave's approval is refused naming who decided, from the write's answer.
    let mut out = None;
    let spent = cost(a, &mut || {
        out = Some(a.decide(
            &ask(&r, Verdict::Confirm, &[0], "dave", Some("me too")),
            &policy,
            at(8),
        ));
    });
    match out.unwrap() {
        Err(StoreError::Refused(Refusal::AlreadyDecided { by, .. })) => assert_eq!(by, "carol"),
        other => panic!("{other:?}"),
    }
    if let Some(spent) = spent {
        assert_eq!(spent, twi(1));
    }

    // c never read the request nor the head: it reads them once, then writes once.
    let r2 = sample_request("inv-unseen", RiskTier::Low);
    a.submit(&r2, "runner").unwrap();
    let mut out = None;
    let spent = cost(c, &mut || {
        out = Some(c.decide(
            &ask(&r2, Verdict::Confirm, &[0], "erin", None),
            &policy,
            at(9),
        ));
    });
    assert_eq!(out.unwrap().unwrap().status, Status::Approved);
    if let Some(spent) = spent {
        assert_eq!(
            spent,
            Calls::from([
                ("get_item".to_owned(), 1),
                ("query".to_owned(), 1),
                ("transact_write_items".to_owned(), 1)
            ])
        );
    }

    // b reads a new request, but the audit head has moved since b last wrote (a submitted, c
    // decided): the first write fails on the head alone and answers with it; the second lands.
    let r3 = sample_request("inv-head-moved", RiskTier::Low);
    a.submit(&r3, "runner").unwrap();
    b.get(&r3.id, &policy, at(9)).unwrap();
    let mut out = None;
    let spent = cost(b, &mut || {
        out = Some(b.decide(
            &ask(&r3, Verdict::Confirm, &[0], "frank", None),
            &policy,
            at(10),
        ));
    });
    assert_eq!(out.unwrap().unwrap().status, Status::Approved);
    if let Some(spent) = spent {
        assert_eq!(
            spent,
            twi(2),
            "a stale head costs one failed write, no read"
        );
    }

    let got = c.get(&r.id, &policy, at(9)).unwrap();
    let by: Vec<&str> = got.decisions.iter().map(|d| d.reviewer.as_str()).collect();
    assert_eq!(by, ["bob", "carol"]);
    let report = c.audit_verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn sqlite_decisions_write_on_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seen.db");
    let open = || SqliteStore::open(&path).unwrap();
    decisions_write_on_what_was_read(&open(), &open(), &open(), &|_| None);
}

#[test]
fn dynamodb_decisions_write_on_what_was_read() {
    let o = fresh_table(moto(), "seen");
    let open = || DynamoStore::connect(&o).unwrap();
    decisions_write_on_what_was_read(&open(), &open(), &open(), &|s: &DynamoStore| {
        Some(s.calls())
    });
}

/// Eight consoles each show the same 24 requests (read with `get`, totals read at start), then
/// all approve all of them at once: exactly one decision each, and the deciding sends no read at
/// all; the contention costs failed writes only (each answers with what changed).
#[test]
fn dynamodb_racing_consoles_decide_without_reading() {
    let o = fresh_table(moto(), "seenrace");
    let policy = test_policy();
    let setup = DynamoStore::connect(&o).unwrap();
    let requests: Vec<ApprovalRequest> = (0..24)
        .map(|i| sample_request(&format!("seen-{i:02}"), RiskTier::Medium))
        .collect();
    for r in &requests {
        setup.submit(r, "runner").unwrap();
    }
    let consoles: Vec<DynamoStore> = (0..8)
        .map(|_| {
            let s = DynamoStore::connect(&o).unwrap();
            for r in &requests {
                s.get(&r.id, &policy, at(1)).unwrap();
            }
            s.counts().unwrap();
            s
        })
        .collect();
    let before: Vec<Calls> = consoles.iter().map(DynamoStore::calls).collect();
    let wins = Mutex::new(Vec::new());
    let attempts = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for (t, s) in consoles.iter().enumerate() {
            let (requests, policy, wins, attempts) = (&requests, &policy, &wins, &attempts);
            scope.spawn(move || {
                for k in 0..requests.len() {
                    let r = &requests[(k + t * 3) % requests.len()];
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let who = format!("reviewer-{t}");
                    match s.decide(&ask(r, Verdict::Confirm, &[0], &who, None), policy, at(5)) {
                        Ok(_) => wins.lock().unwrap().push(r.id.clone()),
                        Err(StoreError::Refused(Refusal::AlreadyDecided { .. })) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let mut wins = wins.into_inner().unwrap();
    wins.sort();
    let n = wins.len();
    wins.dedup();
    assert_eq!((n, wins.len()), (requests.len(), requests.len()));
    let mut total = Calls::new();
    for (s, b) in consoles.iter().zip(&before) {
        for (op, k) in delta(b, &s.calls()) {
            *total.entry(op).or_default() += k;
        }
    }
    let decides = attempts.into_inner();
    assert_eq!(
        total.keys().map(String::as_str).collect::<Vec<_>>(),
        ["transact_write_items"],
        "deciding read nothing: {total:?}"
    );
    eprintln!(
        "racing consoles: {decides} decide calls ({} won), {} TransactWriteItems ({:.2} a call)",
        requests.len(),
        total["transact_write_items"],
        total["transact_write_items"] as f64 / decides as f64
    );
    let report = setup.audit_verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// A runner-raised request decided (its resume queued) and a plain one decided; then the resume
/// row is moved from the first to the second behind the store's back: the audit check names both
/// (the lost resume and the stray one).
fn audit_check_finds_a_lost_and_a_stray_resume<S: DeckStore>(s: &S, tamper: &dyn Fn(&str, &str)) {
    let policy = test_policy();
    let run = sample_request("inv-out-run", RiskTier::Low);
    let plain = sample_request("inv-out-plain", RiskTier::Low);
    s.submit_resumable(&run, &runner_link("req-o"), "runner")
        .unwrap();
    s.submit(&plain, "alice").unwrap();
    for r in [&run, &plain] {
        s.decide(&ask(r, Verdict::Confirm, &[0], "bob", None), &policy, at(5))
            .unwrap();
    }
    let report = s.audit_verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    tamper(run.id.as_str(), plain.id.as_str());
    let report = s.audit_verify().unwrap();
    let all = report.problems.join("\n");
    assert!(
        all.contains(
            "request inv-out-run: is approved and the runner raised it, but it has no outbox \
             row: its resume was lost"
        ),
        "{all}"
    );
    assert!(
        all.contains("request inv-out-plain: has an outbox row but the runner did not raise it"),
        "{all}"
    );
    assert_eq!(report.problems.len(), 2, "{all}");
}

#[test]
fn sqlite_audit_check_finds_a_lost_and_a_stray_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let s = SqliteStore::open(&path).unwrap();
    audit_check_finds_a_lost_and_a_stray_resume(&s, &|from, to| {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "CREATE TEMP TABLE moved AS SELECT * FROM outbox WHERE request_id = ?1",
            [from],
        )
        .unwrap();
        raw.execute("UPDATE moved SET request_id = ?1", [to])
            .unwrap();
        raw.execute("INSERT INTO outbox SELECT * FROM moved", [])
            .unwrap();
        raw.execute("DELETE FROM outbox WHERE request_id = ?1", [from])
            .unwrap();
    });
}

#[test]
fn dynamodb_audit_check_finds_a_lost_and_a_stray_resume() {
    let o = fresh_table(moto(), "outboxcheck");
    let s = DynamoStore::connect(&o).unwrap();
    audit_check_finds_a_lost_and_a_stray_resume(&s, &|from, to| {
        let script = format!(
            r#"
import boto3
t = boto3.resource("dynamodb", endpoint_url="{url}", region_name="us-east-1",
    aws_access_key_id="testing", aws_secret_access_key="testing").Table("{table}")
row = t.get_item(Key={{"pk": "OUTBOX", "sk": "{from}"}})["Item"]
t.delete_item(Key={{"pk": "OUTBOX", "sk": "{from}"}})
row["sk"] = "{to}"
t.put_item(Item=row)
"#,
            url = moto(),
            table = o.table
        );
        let out = Command::new(moto::python_with_moto())
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A running turn's refresh reads only what changed since this handle last read it: a new step
/// alone; the last step again only when it grew; nothing when nothing changed.
#[test]
fn dynamodb_a_running_turn_refresh_reads_only_its_new_steps() {
    let o = fresh_table(moto(), "stepcursor");
    let (w, r) = (
        DynamoStore::connect(&o).unwrap(),
        DynamoStore::connect(&o).unwrap(),
    );
    w.begin_invocation(&start("req-a", "s-a", 0)).unwrap();
    w.append_trace("req-a", &[ev("a-0", 0), ev("a-1", 1), ev("a-2", 2)], &[])
        .unwrap();
    let mut ix = TraceIndex::default();
    catch_up(&r, &mut ix, 100);
    assert_eq!(ix.steps.len(), 3);
    assert_eq!(ix.running(), ["req-a"]);
    let refresh = |ix: &mut TraceIndex| {
        let before = r.calls();
        let page = r.trace_index(ix.cursor, &ix.running(), 100).unwrap();
        let spent = delta(&before, &r.calls());
        ix.apply(&page);
        let steps: Vec<u64> = page.steps.iter().map(|s| s.step).collect();
        (steps, spent)
    };

    w.append_trace("req-a", &[ev("a-3", 3)], &[]).unwrap();
    let (steps, spent) = refresh(&mut ix);
    assert_eq!(steps, [4], "only the new step is read");
    // The totals and the turn (GetItem each), the index page and the new step (Query each).
    assert_eq!(
        spent,
        Calls::from([("get_item".to_owned(), 2), ("query".to_owned(), 2)])
    );
    assert_eq!(ix.steps.len(), 4);

    let (steps, spent) = refresh(&mut ix);
    assert!(steps.is_empty(), "nothing changed, no step read: {steps:?}");
    assert_eq!(
        spent,
        Calls::from([("get_item".to_owned(), 2), ("query".to_owned(), 1)])
    );

    // The last step grows (another event of a-3): it alone is read again.
    w.append_trace("req-a", &[ev("a-3", 4)], &[]).unwrap();
    let (steps, _) = refresh(&mut ix);
    assert_eq!(steps, [4]);
    let a = ix.invocation_by_request("req-a").unwrap();
    assert_eq!(ix.steps.tokens_in[ix.step_pos(a, 4).unwrap()], 200);

    // Once it ends the refresh says so, and it is no longer refreshed.
    w.finish_invocation("req-a", &end(Outcome::Finished))
        .unwrap();
    catch_up(&r, &mut ix, 100);
    assert!(ix.running().is_empty());
    assert_eq!(ix.steps.len(), 4);

    // A turn that started just now is read again by the index page until it settles (10 s);
    // while it runs, that too reads only its new steps.
    let mut young = start("req-young", "s-y", 0);
    young.started_at = chrono::Utc::now();
    w.begin_invocation(&young).unwrap();
    w.append_trace("req-young", &[ev("y-0", 0), ev("y-1", 1)], &[])
        .unwrap();
    catch_up(&r, &mut ix, 100);
    assert_eq!(ix.running(), ["req-young"]);
    w.append_trace("req-young", &[ev("y-2", 2)], &[]).unwrap();
    let (steps, _) = refresh(&mut ix);
    assert_eq!(steps, [3]);
    assert_eq!(ix.steps.len(), 7);
}
