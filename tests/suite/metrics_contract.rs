//! The metrics port on both adapters: the same store contents, written through the same ports
//! to `SqliteStore` on a temp file and `DynamoStore` on moto (127.0.0.1), give the same
//! snapshot; an incremental refresh equals a cold one (on DynamoDB its reads overlap by the
//! settle window, and nothing counts twice); and a refresh on DynamoDB costs index Queries,
//! not a read per settled invocation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::common;
use crate::moto;

use std::time::{Duration, Instant};

use agentdeck::bedrock::runner::DeckStore;
use agentdeck::config::Config;
use agentdeck::domain::approval::ApprovalRequest;
use agentdeck::domain::decision::Verdict;
use agentdeck::domain::metrics::{Engine, Filter, Snapshot, Window};
use agentdeck::domain::policy::RiskTier;
use agentdeck::domain::trace::TraceEvent;
use agentdeck::store::dynamo::{DynamoOptions, DynamoStore, InitOutcome};
use agentdeck::store::metrics::{MetricsStore, refresh};
use agentdeck::store::run::ActionMark;
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{InvocationEnd, InvocationStart, Outcome, RunnerLink};
use chrono::{DateTime, Utc};
use common::{ask, envelope, input_for, request_from_doc, test_policy};
use serde_json::{Value, json};

fn moto() -> &'static str {
    moto::shared()
}

fn dynamo(name: &str) -> DynamoStore {
    let o = DynamoOptions {
        table: format!("{name}-{}", fastrand::u32(..)),
        endpoint_url: Some(moto().to_owned()),
        region: Some("us-east-1".to_owned()),
        static_credentials: Some(("testing".to_owned(), "testing".to_owned())),
        attempt_timeout: Some(Duration::from_secs(120)),
        ..DynamoOptions::default()
    };
    assert_eq!(DynamoStore::init(&o).unwrap(), InitOutcome::Created);
    DynamoStore::connect(&o).unwrap()
}

trait Both: DeckStore + MetricsStore {
    fn deck(&self) -> &dyn DeckStore;
    fn metrics(&self) -> &dyn MetricsStore;
}

impl<T: DeckStore + MetricsStore> Both for T {
    fn deck(&self) -> &dyn DeckStore {
        self
    }
    fn metrics(&self) -> &dyn MetricsStore {
        self
    }
}

fn engine(now: i64) -> Engine {
    let mut e = Engine::new(Config::defaults().unwrap().metrics);
    e.advance(now);
    e
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn event(v: &Value) -> TraceEvent {
    TraceEvent::from_wire(v.clone())
}

fn model_in(trace_id: &str) -> TraceEvent {
    event(
        &json!({"agentId": "AGENT01", "sessionId": "s", "trace": {"orchestrationTrace": {
        "modelInvocationInput": {"traceId": trace_id, "text": "p", "type": "ORCHESTRATION",
            "foundationModel": "anthropic.claude-3-haiku-20240307-v1:0"}}}}),
    )
}

fn model_out(trace_id: &str, total_ms: i64, chain: usize) -> TraceEvent {
    let chain: Vec<Value> = (0..chain)
        .map(
            |i| json!({"agentAliasArn": format!("arn:aws:bedrock:us-east-1:1:agent-alias/A{i}/L")}),
        )
        .collect();
    event(
        &json!({"agentId": "AGENT01", "sessionId": "s", "callerChain": chain,
        "trace": {"orchestrationTrace": {"modelInvocationOutput": {"traceId": trace_id,
            "rawResponse": {"content": "x"},
            "metadata": {"totalTimeMs": total_ms, "usage": {"inputTokens": 1000, "outputTokens": 50}}}}}}),
    )
}

fn tool_out(trace_id: &str, total_ms: i64) -> TraceEvent {
    event(
        &json!({"agentId": "AGENT01", "sessionId": "s", "trace": {"orchestrationTrace": {
        "observation": {"traceId": trace_id, "type": "ACTION_GROUP",
            "actionGroupInvocationOutput": {"text": "ok", "metadata": {"totalTimeMs": total_ms}}}}}}),
    )
}

/// One turn: begun at `start`, its events, ended `end_after` ms later as `outcome`.
fn turn(
    s: &dyn DeckStore,
    id: &str,
    start: DateTime<Utc>,
    events: &[TraceEvent],
    end: Option<(Outcome, i64, Option<&str>)>,
) {
    s.begin_invocation(&InvocationStart {
        request_id: id.into(),
        agent_id: "AGENT01".into(),
        agent_alias_id: "ALIAS01".into(),
        session_id: format!("sess-{id}"),
        input_text: Some("hi".into()),
        resumes: None,
        started_at: start,
    })
    .unwrap();
    s.append_trace(id, events, &[]).unwrap();
    if let Some((outcome, after, answer)) = end {
        s.finish_invocation(
            id,
            &InvocationEnd {
                outcome,
                ended_at: start + chrono::Duration::milliseconds(after),
                error: None,
                final_response: answer.map(str::to_owned),
                latency_ms: Some(after),
            },
        )
        .unwrap();
    }
}

fn request(id: &str, tier: RiskTier, raised: DateTime<Utc>) -> ApprovalRequest {
    request_from_doc(&envelope(id, &[input_for(tier)]), &test_policy(), raised)
}

fn link(inv: &str) -> RunnerLink {
    RunnerLink {
        invocation: inv.into(),
        trace_id: Some(format!("{inv}-t1")),
    }
}

fn mark(inv: &str, step: u64, appropriate: bool, who: &str, at: DateTime<Utc>) -> ActionMark {
    ActionMark {
        request_id: inv.into(),
        step,
        trace_id: format!("{inv}-t1"),
        appropriate,
        note: None,
        who: who.into(),
        at,
    }
}

/// Resumes a decided runner request: the outbox row leased, sent and acknowledged.
fn resume(s: &dyn DeckStore, at: DateTime<Utc>) {
    let rows = s
        .lease_outbox("worker", at, Duration::from_secs(30), 10)
        .unwrap();
    assert_eq!(rows.len(), 1, "one resume due");
    let id = &rows[0].request;
    s.outbox_save_results(id, "worker", &[], at).unwrap();
    s.outbox_mark_sent(id, "worker", at).unwrap();
    s.outbox_mark_acked(id, "worker", at, None, None).unwrap();
}

/// The first half of the story: answered, failed, handed on and resumed, waiting, running,
/// a plain denial, an expiry, marks (one superseded), and a collaborator's nested model call.
fn first_half(s: &dyn DeckStore, base: DateTime<Utc>) {
    let sec = |n: i64| base + chrono::Duration::seconds(n);
    let policy = test_policy();
    turn(
        s,
        "inv-ok",
        sec(0),
        &[
            model_in("inv-ok-t1"),
            model_out("inv-ok-t1", 300, 1),
            tool_out("inv-ok-t1", 120),
            // A collaborator's model call inside the supervisor's call: not timed twice.
            model_out("inv-ok-t2", 5000, 2),
        ],
        Some((Outcome::Finished, 2000, Some("done"))),
    );
    turn(
        s,
        "inv-fail",
        sec(10),
        &[model_in("inv-fail-t1"), model_out("inv-fail-t1", 200, 1)],
        Some((Outcome::Failed, 900, None)),
    );
    turn(
        s,
        "inv-roc",
        sec(20),
        &[model_in("inv-roc-t1"), model_out("inv-roc-t1", 400, 1)],
        Some((Outcome::WaitingForHuman, 1000, None)),
    );
    let r1 = request("req-1", RiskTier::High, sec(21));
    s.submit_resumable(&r1, &link("inv-roc"), "runner").unwrap();
    let mut a = ask(&r1, Verdict::Confirm, &[0], "bob", None);
    a.dwell_ms = Some(800);
    s.decide(&a, &policy, sec(60)).unwrap();
    resume(s, sec(61));
    turn(
        s,
        "inv-cont",
        sec(62),
        &[model_in("inv-cont-t1"), model_out("inv-cont-t1", 250, 1)],
        Some((Outcome::Finished, 700, Some("paid"))),
    );
    turn(
        s,
        "inv-wait",
        sec(70),
        &[model_in("inv-wait-t1"), model_out("inv-wait-t1", 100, 1)],
        Some((Outcome::WaitingForHuman, 300, None)),
    );
    let r2 = request("req-2", RiskTier::Medium, sec(71));
    s.submit_resumable(&r2, &link("inv-wait"), "runner")
        .unwrap();
    turn(s, "inv-run", sec(80), &[model_in("inv-run-t1")], None);
    let r3 = request("req-3", RiskTier::Low, sec(90));
    s.submit(&r3, "alice").unwrap();
    s.decide(
        &ask(&r3, Verdict::Deny, &[0], "carol", Some("no")),
        &policy,
        sec(95),
    )
    .unwrap();
    // Raised twenty minutes before the others: it expires before they are raised.
    let r4 = request("req-4", RiskTier::Low, sec(-1200));
    s.submit(&r4, "alice").unwrap();
    assert_eq!(s.expire_due(sec(1), "sweeper").unwrap(), 1);
    s.mark_action(&mark("inv-ok", 1, false, "dana", sec(100)))
        .unwrap();
    s.mark_action(&mark("inv-ok", 1, true, "dana", sec(110)))
        .unwrap();
    s.mark_action(&mark("inv-fail", 1, true, "eve", sec(120)))
        .unwrap();
}

/// The second half: a request raised and denied, then (50 s later) the waiting request
/// approved and resumed, the running call answered, one more call and one more mark.
fn second_half(s: &dyn DeckStore, base: DateTime<Utc>) {
    let sec = |n: i64| base + chrono::Duration::seconds(n);
    // Settled well before the next one: a read must not let the later settling (of a request
    // it re-reads by id) move its watermark past this one.
    let r5 = request("req-5", RiskTier::Low, sec(140));
    s.submit(&r5, "alice").unwrap();
    s.decide(
        &ask(&r5, Verdict::Deny, &[0], "carol", Some("no")),
        &test_policy(),
        sec(150),
    )
    .unwrap();
    let r2 = request("req-2", RiskTier::Medium, sec(71));
    s.decide(
        &ask(&r2, Verdict::Confirm, &[0], "bob", None),
        &test_policy(),
        sec(200),
    )
    .unwrap();
    resume(s, sec(201));
    s.finish_invocation(
        "inv-run",
        &InvocationEnd {
            outcome: Outcome::Finished,
            ended_at: sec(81),
            error: None,
            final_response: Some("late".into()),
            latency_ms: Some(1000),
        },
    )
    .unwrap();
    turn(
        s,
        "inv-late",
        sec(210),
        &[
            model_in("inv-late-t1"),
            model_out("inv-late-t1", 600, 1),
            tool_out("inv-late-t1", 60),
        ],
        Some((Outcome::Finished, 1500, Some("ok"))),
    );
    s.mark_action(&mark("inv-late", 1, false, "eve", sec(220)))
        .unwrap();
}

fn snapshots(e: &Engine, now: i64) -> Value {
    let all = Filter::default();
    json!({
        "h1": e.snapshot(Window::H1, &all, now),
        "h24": e.snapshot(Window::H24, &all, now),
        "agent": e.snapshot(Window::H1, &Filter { agent: Some("AGENT01".into()), ..Filter::default() }, now),
        "dims": e.dimensions(),
    })
}

fn value(s: &Snapshot, id: &str) -> Option<f64> {
    s.metric(id).unwrap().value
}

/// Within the histograms' 1%.
fn near(v: Option<f64>, want: f64) -> bool {
    v.is_some_and(|v| (v - want).abs() <= want * 0.01)
}

#[test]
fn the_same_contents_give_the_same_figures_on_sqlite_and_dynamodb_cold_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let dynamo = dynamo("metrics-contract");
    let stores: [&dyn Both; 2] = [&sqlite, &dynamo];
    // Five minutes ago: everything is in the last hour, no entry is in the future, and the
    // waiting request (a ten-minute TTL) is still open.
    let base = Utc::now() - chrono::Duration::minutes(5);
    let mut incremental: Vec<Engine> = Vec::new();
    let mut first: Vec<Value> = Vec::new();
    for s in stores {
        first_half(s.deck(), base);
        let now = ms(Utc::now());
        let mut e = engine(now);
        refresh(s.metrics(), &mut e).unwrap();
        first.push(snapshots(&e, now));
        let h1 = e.snapshot(Window::H1, &Filter::default(), now);
        // Known answers: two answered of three finished (the resumed call handed on).
        assert_eq!(value(&h1, "task_completion_rate"), Some(2.0 / 3.0));
        assert_eq!(value(&h1, "in_flight"), Some(2.0), "waiting and running");
        assert_eq!(value(&h1, "queue_depth"), Some(1.0));
        assert_eq!(value(&h1, "expired_undecided"), Some(1.0));
        assert_eq!(value(&h1, "approval_rate"), Some(0.5));
        // Judgements: bob's approval, carol's denial, dana's later mark, eve's mark.
        assert_eq!(value(&h1, "action_accuracy"), Some(0.75));
        assert_eq!(value(&h1, "invocations"), Some(4.0));
        // The collaborator's nested 5 s model call is inside its supervisor's call.
        assert!(
            near(value(&h1, "model_time_p99"), 400.0),
            "{:?}",
            h1.metric("model_time_p99")
        );
        assert_eq!(value(&h1, "tool_time_p99"), Some(120.0));
        // bob decided 39 s after the call returned control.
        assert!(near(value(&h1, "human_wait_p50"), 39_000.0));
        assert_eq!(
            value(&h1, "rubber_stamps"),
            Some(1.0),
            "{:?}",
            h1.rubber_stamps
        );
        incremental.push(e);
    }
    // Snapshots at the same instant agree (each store's now differs: take one).
    let now = ms(Utc::now());
    let cold: Vec<Value> = stores
        .iter()
        .map(|s| {
            let mut e = engine(now);
            refresh(s.metrics(), &mut e).unwrap();
            snapshots(&e, now)
        })
        .collect();
    assert_eq!(cold[0], cold[1], "sqlite and dynamodb differ");

    for (s, e) in stores.iter().zip(incremental.iter_mut()) {
        second_half(s.deck(), base);
        // Read twice: the second read delivers the settle window again and changes nothing.
        refresh(s.metrics(), e).unwrap();
        refresh(s.metrics(), e).unwrap();
    }
    let now = ms(Utc::now());
    let mut cold = Vec::new();
    for (s, e) in stores.iter().zip(&incremental) {
        let mut fresh = engine(now);
        refresh(s.metrics(), &mut fresh).unwrap();
        let c = snapshots(&fresh, now);
        assert_eq!(snapshots(e, now), c, "incremental and cold refresh differ");
        cold.push(c);
    }
    assert_eq!(
        cold[0], cold[1],
        "sqlite and dynamodb differ after the second half"
    );
    let h1 = incremental[1].snapshot(Window::H1, &Filter::default(), now);
    assert_eq!(value(&h1, "in_flight"), Some(0.0));
    assert_eq!(value(&h1, "queue_depth"), Some(0.0));
    // inv-ok, inv-cont, inv-run, inv-late answered; inv-fail did not.
    assert_eq!(value(&h1, "task_completion_rate"), Some(0.8));
    assert_eq!(value(&h1, "invocations"), Some(7.0));
    // bob approved req-1 and req-2, carol denied req-3 and req-5.
    assert_eq!(value(&h1, "approval_rate"), Some(0.5));
    assert!(first[0] != cold[0], "the second half moved the figures");
}

#[test]
fn a_dynamodb_refresh_costs_index_queries_not_a_read_per_invocation() {
    const N: usize = 300;
    let s = dynamo("metrics-cost");
    let base = Utc::now() - chrono::Duration::minutes(20);
    for i in 0..N {
        let id = format!("inv-{i:04}");
        turn(
            &s,
            &id,
            base + chrono::Duration::milliseconds(i64::try_from(i).unwrap() * 1000),
            &[
                model_in(&format!("{id}-t1")),
                model_out(&format!("{id}-t1"), 100, 1),
            ],
            Some((Outcome::Finished, 500, Some("ok"))),
        );
    }
    let now = ms(Utc::now());
    let mut e = engine(now);
    let (calls, t) = (s.calls_total(), Instant::now());
    let read = refresh(&s, &mut e).unwrap();
    let (cold_calls, cold_time) = (s.calls_total() - calls, t.elapsed());
    assert_eq!(read, N);
    assert_eq!(
        value(
            &e.snapshot(Window::H1, &Filter::default(), now),
            "invocations"
        ),
        Some(N as f64)
    );
    // Three index Queries (invocations, settled requests, marks) and the open queue, each a
    // page or two: nothing per invocation.
    assert!(
        cold_calls <= 10,
        "a cold refresh of {N} invocations took {cold_calls} calls"
    );
    let (calls, t) = (s.calls_total(), Instant::now());
    refresh(&s, &mut e).unwrap();
    let (warm_calls, warm_time) = (s.calls_total() - calls, t.elapsed());
    assert!(
        warm_calls <= 5,
        "a refresh with nothing new took {warm_calls} calls"
    );
    eprintln!(
        "dynamodb (moto) metrics refresh: cold, {N} invocations: {cold_calls} calls in {:.1} ms; \
         nothing new: {warm_calls} calls in {:.1} ms",
        cold_time.as_secs_f64() * 1000.0,
        warm_time.as_secs_f64() * 1000.0
    );
}
