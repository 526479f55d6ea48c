//! The Bedrock runner and the outbox worker against a loopback server speaking InvokeAgent's
//! event-stream wire format, through the real SDK client: traces recorded, returns of control
//! queued with their rationale, resumes sent once with the right results, typed errors, and
//! mutated or truncated streams that always end in an error, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::loopback;

use std::sync::Arc;
use std::time::Duration;

use agentdeck::bedrock::{
    BedrockRunner, InvokeRequest, NoExecutor, ResumeOutcome, ResumeWorker, RunnerError,
    ScriptedExecutor, SubmitSettings,
};
use agentdeck::domain::approval::ApprovalId;
use agentdeck::domain::decision::{DecisionAsk, Verdict};
use agentdeck::domain::policy::Policy;
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{ApprovalStore, OutboxState, OutboxStore, Outcome, StoreError, TraceStore};
use chrono::Utc;
use loopback::{Reply, event, exception, serve};
use proptest::prelude::*;
use serde_json::{Value, json};

const RID: &str = "req-1";

fn ttl(_: &str) -> u32 {
    600
}

fn settings(policy: &Policy) -> SubmitSettings<'_> {
    SubmitSettings {
        policy,
        ttl_secs: &ttl,
        actor: "runner-test",
    }
}

/// Now, with nanoseconds, as Bedrock writes event times.
fn now_ns() -> String {
    let t = Utc::now();
    format!(
        "{}.{:09}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos()
    )
}

fn part(trace: &Value) -> Value {
    json!({
        "agentId": "PAYAGENT01", "agentAliasId": "PRODALIAS", "agentVersion": "3",
        "sessionId": "sess-1", "eventTime": now_ns(),
        "callerChain": [{"agentAliasArn": "arn:aws:bedrock:us-east-1:1:agent-alias/PAYAGENT01/PRODALIAS"}],
        "trace": trace,
    })
}

/// A turn that ends in a return of control asking to confirm a transfer.
fn roc_turn(invocation_id: &str) -> Vec<u8> {
    let tid = format!("{RID}-0");
    let mut b = Vec::new();
    b.extend(event(
        "trace",
        &part(&json!({"orchestrationTrace": {"modelInvocationInput": {
            "traceId": tid, "text": "SYSTEM: you move money\nUSER: pay 5000 to prod-7",
            "type": "ORCHESTRATION", "foundationModel": "anthropic.claude-3-haiku"}}})),
    ));
    b.extend(event(
        "trace",
        &part(&json!({"orchestrationTrace": {"modelInvocationOutput": {
            "traceId": tid, "rawResponse": {"content": "<thinking>transfer</thinking>"},
            "metadata": {"startTime": "2025-03-14T18:17:14.100000000Z",
                         "endTime": "2025-03-14T18:17:15.350000000Z",
                         "totalTimeMs": 1250, "usage": {"inputTokens": 1200, "outputTokens": 80}}}}})),
    ));
    b.extend(event(
        "trace",
        &part(&json!({"orchestrationTrace": {"rationale": {
            "traceId": tid, "text": "The user asked to pay 5000 to prod-7; transferFunds needs confirmation."}}})),
    ));
    b.extend(event(
        "returnControl",
        &json!({"invocationId": invocation_id, "invocationInputs": [{"functionInvocationInput": {
            "actionGroup": "payments", "function": "transferFunds",
            "parameters": [{"name": "amount", "type": "number", "value": "5000"},
                           {"name": "account", "type": "string", "value": "prod-7"}],
            "actionInvocationType": "USER_CONFIRMATION"}}]}),
    ));
    b
}

/// A turn that answers.
fn finish_turn(text: &str) -> Vec<u8> {
    let tid = "req-2-0";
    let mut b = Vec::new();
    b.extend(event(
        "trace",
        &part(&json!({"orchestrationTrace": {"observation": {
            "traceId": tid, "type": "FINISH",
            "finalResponse": {"text": text, "metadata": {"operationTotalTimeMs": 2400}}}}})),
    ));
    b.extend(event(
        "chunk",
        &json!({"bytes": base64_encode(text.as_bytes())}),
    ));
    b
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn request() -> InvokeRequest {
    InvokeRequest {
        agent_id: "PAYAGENT01".into(),
        agent_alias_id: "PRODALIAS".into(),
        session_id: "sess-1".into(),
        input_text: "pay 5000 to prod-7".into(),
        ..InvokeRequest::default()
    }
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
    (dir, s)
}

fn approve(store: &SqliteStore, id: &str, verdict: Verdict, policy: &Policy) {
    let id = ApprovalId(id.into());
    let stored = store.get(&id, policy, Utc::now()).unwrap();
    let inputs = (0..stored.request.inputs.len())
        .map(|i| (i, stored.request.input_hash(i).unwrap()))
        .collect();
    store
        .decide(
            &DecisionAsk {
                request: id,
                verdict,
                inputs,
                reviewer: "alice".into(),
                reason: Some("checked the invoice".into()),
                dwell_ms: None,
            },
            policy,
            Utc::now(),
        )
        .unwrap();
}

fn worker<'a>(
    runner: &'a BedrockRunner,
    store: &'a SqliteStore,
    submit: &'a SubmitSettings<'a>,
    lease: Duration,
) -> ResumeWorker<'a> {
    static EXEC: ScriptedExecutor = ScriptedExecutor {
        bodies: std::collections::BTreeMap::new(),
        default_body: None,
    };
    ResumeWorker {
        runner,
        store,
        executor: &EXEC,
        submit,
        owner: agentdeck::bedrock::worker::worker_name(),
        lease,
        max_attempts: 3,
    }
}

#[tokio::test]
async fn a_return_of_control_is_recorded_and_queued_with_its_rationale() {
    let server = serve(vec![Reply::Stream(roc_turn("inv-abc"))]).await;
    let runner = BedrockRunner::loopback(&server.url);
    let (_dir, store) = store();
    let policy = Policy::default();
    let mut steps = Vec::new();
    let summary = runner
        .invoke(&request(), &store, &settings(&policy), &mut |e| {
            if let agentdeck::bedrock::LiveEvent::Step { kinds, figures, .. } = e {
                steps.push((kinds.to_vec(), *figures));
            }
        })
        .await
        .unwrap();
    assert_eq!(summary.outcome, Outcome::WaitingForHuman);
    assert_eq!(summary.queued, vec![ApprovalId("inv-abc".into())]);
    assert_eq!(summary.request_id, "req-1");
    assert_eq!((summary.input_tokens, summary.output_tokens), (1200, 80));
    // One live line for the one step, with the metadata's span as its latency.
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].1.duration_ms, Some(1250));

    // The request went out with tracing on.
    let sent = server.requests();
    assert_eq!(
        sent[0].path,
        "/agents/PAYAGENT01/agentAliases/PRODALIAS/sessions/sess-1/text"
    );
    assert_eq!(sent[0].body["enableTrace"], json!(true));
    assert_eq!(sent[0].body["inputText"], json!("pay 5000 to prod-7"));

    // Traces are stored, grouped by traceId, raw JSON in the wire's shape.
    let inv = store.invocation("req-1").unwrap().unwrap();
    assert_eq!(inv.outcome, Outcome::WaitingForHuman);
    assert_eq!((inv.events, inv.steps), (3, 1));
    let step = &store.steps("req-1", 0, 10).unwrap()[0];
    assert_eq!(step.trace_id, "req-1-0");
    assert_eq!(step.events, 3);
    assert!(step.rationale.as_deref().unwrap().contains("transferFunds"));
    let events = store.step_events("req-1", 1).unwrap();
    assert_eq!(
        events[1].raw["trace"]["orchestrationTrace"]["modelInvocationOutput"]["metadata"]["usage"]
            ["inputTokens"],
        json!(1200)
    );
    let sent_time = events[0].raw["eventTime"].as_str().unwrap().to_owned();
    assert_eq!(
        sent_time.len(),
        "2025-03-14T18:17:14.009573108Z".len(),
        "{sent_time}"
    );
    assert_eq!(events[0].event_time.as_deref(), Some(sent_time.as_str()));

    // The request is in the queue, from the runner, linked to its invocation and step.
    let stored = store
        .get(&ApprovalId("inv-abc".into()), &policy, Utc::now())
        .unwrap();
    assert!(stored.request.rationale.unwrap().contains("prod-7"));
    assert_eq!(stored.request.agent_version.as_deref(), Some("3"));
    let link = store
        .runner_link(&ApprovalId("inv-abc".into()))
        .unwrap()
        .unwrap();
    assert_eq!(link.invocation, "req-1");
    assert_eq!(link.trace_id.as_deref(), Some("req-1-0"));
    assert_eq!(store.open_queue(Utc::now()).unwrap().len(), 1);
}

#[tokio::test]
async fn a_decided_request_is_resumed_once_with_its_results_and_the_continuation_stored() {
    let server = serve(vec![
        Reply::Stream(roc_turn("inv-abc")),
        Reply::Stream(finish_turn("Sent 5000 to prod-7.")),
    ])
    .await;
    let runner = BedrockRunner::loopback(&server.url);
    let (_dir, store) = store();
    let policy = Policy::default();
    let submit = settings(&policy);
    runner
        .invoke(&request(), &store, &submit, &mut |_| {})
        .await
        .unwrap();
    approve(&store, "inv-abc", Verdict::Confirm, &policy);
    let row = store
        .outbox_row(&ApprovalId("inv-abc".into()))
        .unwrap()
        .unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    assert_eq!(row.invocation.as_deref(), Some("req-1"));

    let w = worker(&runner, &store, &submit, Duration::from_secs(60));
    let report = w.resume_pending(&mut |_| {}).await.unwrap();
    assert_eq!(report.items.len(), 1);
    let ResumeOutcome::Acked {
        continuation: Ok(cont),
    } = &report.items[0].1
    else {
        panic!("{:?}", report.items[0].1)
    };
    assert_eq!(cont.outcome, Outcome::Finished);
    assert_eq!(cont.text, "Sent 5000 to prod-7.");

    let sent = server.requests();
    assert_eq!(sent.len(), 2);
    let body = &sent[1].body;
    assert_eq!(body["sessionState"]["invocationId"], json!("inv-abc"));
    assert_eq!(
        body["sessionState"]["returnControlInvocationResults"],
        json!([{"functionResult": {"actionGroup": "payments", "function": "transferFunds",
                                   "confirmationState": "CONFIRM"}}])
    );
    assert!(body.get("inputText").is_none());
    assert_eq!(body["enableTrace"], json!(true));

    let row = store
        .outbox_row(&ApprovalId("inv-abc".into()))
        .unwrap()
        .unwrap();
    assert_eq!((row.state, row.attempts), (OutboxState::Acked, 1));
    assert_eq!(row.continuation.as_deref(), Some("req-2"));
    let cont = store.invocation("req-2").unwrap().unwrap();
    assert_eq!(cont.start.resumes.as_deref(), Some("inv-abc"));
    assert_eq!(cont.final_response.as_deref(), Some("Sent 5000 to prod-7."));
    assert_eq!(cont.latency_ms, Some(2400));
    assert_eq!(store.chunk_text("req-2").unwrap(), "Sent 5000 to prod-7.");

    // Running the worker again sends nothing.
    let again = w.resume_pending(&mut |_| {}).await.unwrap();
    assert!(again.items.is_empty());
    assert_eq!(server.requests().len(), 2);
    assert!(store.audit_verify().unwrap().ok());
}

#[tokio::test]
async fn two_workers_racing_on_one_store_send_each_resume_once() {
    let server = serve(vec![
        Reply::Stream(roc_turn("inv-race")),
        Reply::Stream(finish_turn("done")),
    ])
    .await;
    let runner = BedrockRunner::loopback(&server.url);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deck.db");
    let store = SqliteStore::open(&path).unwrap();
    let policy = Policy::default();
    let submit = settings(&policy);
    runner
        .invoke(&request(), &store, &submit, &mut |_| {})
        .await
        .unwrap();
    approve(&store, "inv-race", Verdict::Deny, &policy);
    let other = Arc::new(SqliteStore::open(&path).unwrap());
    let (a, b) = tokio::join!(
        async {
            worker(&runner, &store, &submit, Duration::from_secs(60))
                .resume_pending(&mut |_| {})
                .await
                .unwrap()
        },
        async {
            worker(&runner, other.as_ref(), &submit, Duration::from_secs(60))
                .resume_pending(&mut |_| {})
                .await
                .unwrap()
        }
    );
    assert_eq!(a.items.len() + b.items.len(), 1);
    let resumes = server
        .requests()
        .iter()
        .filter(|r| r.body.get("sessionState").is_some())
        .count();
    assert_eq!(resumes, 1);
}

#[tokio::test]
async fn a_retry_refused_as_already_used_after_an_unknown_outcome_counts_as_acked() {
    let server = serve(vec![
        Reply::Stream(roc_turn("inv-u")),
        Reply::Error {
            status: 400,
            kind: "ValidationException".into(),
            message: "invocationId inv-u was already used".into(),
        },
    ])
    .await;
    let runner = BedrockRunner::loopback(&server.url);
    let (_dir, store) = store();
    let policy = Policy::default();
    let submit = settings(&policy);
    runner
        .invoke(&request(), &store, &submit, &mut |_| {})
        .await
        .unwrap();
    approve(&store, "inv-u", Verdict::Confirm, &policy);
    // A worker that built the results and marked the send, then vanished (its outcome unknown).
    let id = ApprovalId("inv-u".into());
    let now = Utc::now();
    let row = store
        .lease_outbox("ghost", now, Duration::from_millis(1), 1)
        .unwrap()
        .pop()
        .unwrap();
    let results =
        agentdeck::domain::resume::build_results(&row.plan, &agentdeck::bedrock::NoExecutor);
    store
        .outbox_save_results(&id, "ghost", &results, now)
        .unwrap();
    store.outbox_mark_sent(&id, "ghost", now).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let report = worker(&runner, &store, &submit, Duration::from_secs(60))
        .resume_pending(&mut |_| {})
        .await
        .unwrap();
    assert!(
        matches!(report.items[0].1, ResumeOutcome::AckedEarlier { .. }),
        "{:?}",
        report.items
    );
    let row = store.outbox_row(&id).unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (OutboxState::Acked, 2));
    assert!(row.last_error.unwrap().contains("already used"));
}

#[tokio::test]
async fn a_first_send_refused_as_invalid_fails_the_row_and_throttling_is_retried_later() {
    for (status, kind, expect_failed) in [
        (400, "ValidationException", true),
        (429, "ThrottlingException", false),
    ] {
        let server = serve(vec![
            Reply::Stream(roc_turn("inv-v")),
            Reply::Error {
                status,
                kind: kind.into(),
                message: "no".into(),
            },
        ])
        .await;
        let runner = BedrockRunner::loopback(&server.url);
        let (_dir, store) = store();
        let policy = Policy::default();
        let submit = settings(&policy);
        runner
            .invoke(&request(), &store, &submit, &mut |_| {})
            .await
            .unwrap();
        approve(&store, "inv-v", Verdict::Confirm, &policy);
        let report = worker(&runner, &store, &submit, Duration::from_secs(60))
            .resume_pending(&mut |_| {})
            .await
            .unwrap();
        let row = store
            .outbox_row(&ApprovalId("inv-v".into()))
            .unwrap()
            .unwrap();
        if expect_failed {
            assert!(matches!(report.items[0].1, ResumeOutcome::Failed { .. }));
            assert_eq!(row.state, OutboxState::Failed);
        } else {
            let ResumeOutcome::RetryLater { error, .. } = &report.items[0].1 else {
                panic!("{:?}", report.items)
            };
            assert!(error.contains("wait and try again"), "{error}");
            assert_eq!(row.state, OutboxState::Sent);
            assert!(row.lease_owner.is_none());
            assert!(row.lease_until.unwrap() > Utc::now());
        }
    }
}

#[tokio::test]
async fn http_errors_are_typed_say_what_to_do_and_are_recorded() {
    let cases = [
        (403, "AccessDeniedException", "bedrock:InvokeAgent"),
        (404, "ResourceNotFoundException", "check agent PAYAGENT01"),
        (429, "ThrottlingException", "wait and try again"),
    ];
    for (status, kind, hint) in cases {
        let server = serve(vec![Reply::Error {
            status,
            kind: kind.into(),
            message: "from the service".into(),
        }])
        .await;
        let runner = BedrockRunner::loopback(&server.url);
        let (_dir, store) = store();
        let policy = Policy::default();
        let err = runner
            .invoke(&request(), &store, &settings(&policy), &mut |_| {})
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(hint) && msg.contains("from the service"),
            "{msg}"
        );
        match (status, &err) {
            (403, RunnerError::AccessDenied { .. })
            | (404, RunnerError::NotFound { .. })
            | (429, RunnerError::Throttled { .. }) => {}
            other => panic!("{other:?}"),
        }
        let recorded = store.invocations("sess-1", 0, 10).unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].outcome, Outcome::Exception);
    }
}

#[tokio::test]
async fn an_exception_frame_mid_stream_is_an_error_and_what_came_before_is_kept() {
    let mut body = roc_turn("inv-x");
    body.truncate(find_frame_boundary(&body, body.len() - 1));
    body.extend(exception("throttlingException", "slow down"));
    let server = serve(vec![Reply::Stream(body)]).await;
    let runner = BedrockRunner::loopback(&server.url);
    let (_dir, store) = store();
    let policy = Policy::default();
    let err = runner
        .invoke(&request(), &store, &settings(&policy), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::Throttled { .. }), "{err}");
    let inv = store.invocation("req-1").unwrap().unwrap();
    assert_eq!(inv.outcome, Outcome::Exception);
    assert!(inv.events >= 1);
    assert!(store.open_queue(Utc::now()).unwrap().is_empty());
}

/// The start of the frame that contains byte `at`.
fn find_frame_boundary(body: &[u8], at: usize) -> usize {
    let mut pos = 0;
    while pos + 4 <= body.len() {
        let len = u32::from_be_bytes(body[pos..pos + 4].try_into().unwrap()) as usize;
        if pos + len > at {
            return pos;
        }
        pos += len;
    }
    pos
}

#[tokio::test]
async fn a_stream_cut_at_a_frame_boundary_before_any_answer_is_an_error() {
    let body = roc_turn("inv-t");
    let cut = find_frame_boundary(&body, body.len() - 1);
    let server = serve(vec![Reply::Stream(body[..cut].to_vec())]).await;
    let runner = BedrockRunner::loopback(&server.url);
    let (_dir, store) = store();
    let policy = Policy::default();
    let err = runner
        .invoke(&request(), &store, &settings(&policy), &mut |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cut short"), "{err}");
}

#[tokio::test]
async fn the_no_executor_default_never_invents_a_result() {
    // A RESULT input approved with no executor configured: the agent is told, by REPROMPT.
    let plan = agentdeck::domain::resume::ResumePlan {
        invocation_id: "i".into(),
        agent_id: "A".into(),
        agent_alias_id: "B".into(),
        session_id: "s1".into(),
        session_attributes: std::collections::BTreeMap::new(),
        inputs: vec![agentdeck::domain::resume::DecidedInput {
            input: agentdeck::domain::approval::InvocationInput {
                action_group: "g".into(),
                target: agentdeck::domain::approval::ActionTarget::Function {
                    function: "refund".into(),
                },
                parameters: vec![],
                invocation_type: agentdeck::domain::approval::ActionInvocationType::Result,
                agent_id: None,
                collaborator_name: None,
            },
            verdict: Verdict::Confirm,
            reason: None,
            reviewers: vec!["alice".into()],
        }],
    };
    let r = agentdeck::domain::resume::build_results(&plan, &NoExecutor);
    let wire = r[0].to_wire();
    assert_eq!(wire["functionResult"]["responseState"], json!("REPROMPT"));
    assert!(
        wire["functionResult"]["responseBody"]["TEXT"]["body"]
            .as_str()
            .unwrap()
            .contains("--executor")
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any one byte changed, or the body cut anywhere: the SDK's decoder and the runner turn it
    /// into an error, never a panic and never a silently "finished" turn.
    #[test]
    fn mutated_or_truncated_streams_always_end_in_an_error(
        at in 0.0_f64..1.0,
        flip in 1_u8..=255,
        truncate in any::<bool>(),
    ) {
        let body = roc_turn("inv-p");
        let i = ((body.len() - 1) as f64 * at) as usize;
        let mangled = if truncate {
            body[..i].to_vec()
        } else {
            let mut b = body.clone();
            b[i] ^= flip;
            b
        };
        let rt = runtime();
        let result = rt.block_on(async {
            let server = serve(vec![Reply::Stream(mangled)]).await;
            let runner = BedrockRunner::loopback(&server.url);
            let (_dir, store) = store();
            let policy = Policy::default();
            let r = runner.invoke(&request(), &store, &settings(&policy), &mut |_| {}).await;
            // Whatever happened, the store stays consistent.
            prop_assert!(store.audit_verify().map_err(|e: StoreError| TestCaseError::fail(e.to_string()))?.ok());
            Ok(r)
        })?;
        prop_assert!(result.is_err(), "{:?}", result.map(|s| s.outcome));
    }
}

#[tokio::test]
async fn variants_the_sdk_does_not_know_are_kept_as_unknown_events() {
    let mut body = Vec::new();
    body.extend(event(
        "trace",
        &part(&json!({"memoryTrace": {"traceId": "m-0"}})),
    ));
    body.extend(event(
        "trace",
        &part(&json!({"orchestrationTrace": {"planTrace": {"traceId": "p-0"}}})),
    ));
    body.extend(event("somethingNew", &json!({"x": 1})));
    body.extend(finish_turn("ok"));
    let server = serve(vec![Reply::Stream(body)]).await;
    let runner = BedrockRunner::loopback(&server.url);
    let (_dir, store) = store();
    let policy = Policy::default();
    let summary = runner
        .invoke(&request(), &store, &settings(&policy), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(summary.outcome, Outcome::Finished);
    let kinds: Vec<String> = store
        .events("req-1", 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            "unknown(-)",
            "orchestration/unknown(-)",
            "orchestration/observation"
        ]
    );
}

#[tokio::test]
async fn an_unknown_invocation_input_member_is_refused_by_name_and_nothing_is_queued() {
    let mut body = Vec::new();
    body.extend(event(
        "returnControl",
        &json!({"invocationId": "inv-n", "invocationInputs": [{"mcpInvocationInput": {"tool": "x"}}]}),
    ));
    let server = serve(vec![Reply::Stream(body)]).await;
    let runner = BedrockRunner::loopback(&server.url);
    let (_dir, store) = store();
    let policy = Policy::default();
    let err = runner
        .invoke(&request(), &store, &settings(&policy), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::Submission(_)), "{err}");
    assert!(err.to_string().contains("invocationInputs[0]"), "{err}");
    assert!(store.open_queue(Utc::now()).unwrap().is_empty());
    assert_eq!(
        store.invocation("req-1").unwrap().unwrap().outcome,
        Outcome::Exception
    );
}
