//! The runner against the in-process simulator: invoke, traces stored, return of control in the
//! queue with its rationale, decision through the store, outbox, resume, continuation stored,
//! and the simulator saw exactly one resume. Then the exactly-once kill test on the real binary:
//! the resume worker dies before sending, a restart sends once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agentdeck::bedrock::{
    BedrockRunner, InvokeRequest, ResumeOutcome, ResumeWorker, ScriptedExecutor, SubmitSettings,
};
use agentdeck::domain::approval::ApprovalId;
use agentdeck::domain::decision::{DecisionAsk, Verdict};
use agentdeck::domain::policy::Policy;
use agentdeck::domain::trace::{ObservationDetail, StepEvent, TraceKind};
use agentdeck::sim::{SimConfig, SimHandle, start};
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{ApprovalStore, OutboxState, OutboxStore, Outcome, TraceStore};
use chrono::Utc;
use serde_json::json;

fn ttl(_: &str) -> u32 {
    600
}

/// A simulator that splits about one frame in four across two HTTP chunks.
async fn sim() -> SimHandle {
    let mut config = SimConfig::builtin().unwrap();
    config.time_scale = 0.0;
    config.faults = agentdeck::sim::Faults::parse("split=0.25").unwrap();
    start(config).await.unwrap()
}

fn request(agent: &str, alias: &str, session: &str, text: &str) -> InvokeRequest {
    InvokeRequest {
        agent_id: agent.into(),
        agent_alias_id: alias.into(),
        session_id: session.into(),
        input_text: text.into(),
        ..InvokeRequest::default()
    }
}

/// Decides every input of `id`: `verdicts[i]` for input i (the last one repeats).
fn decide(store: &SqliteStore, id: &ApprovalId, verdicts: &[Verdict], policy: &Policy) {
    let stored = store.get(id, policy, Utc::now()).unwrap();
    for i in 0..stored.request.inputs.len() {
        let verdict = *verdicts.get(i).or(verdicts.last()).unwrap();
        store
            .decide(
                &DecisionAsk {
                    request: id.clone(),
                    verdict,
                    inputs: vec![(i, stored.request.input_hash(i).unwrap())],
                    reviewer: "alice".into(),
                    reason: Some("reviewed in the test".into()),
                    dwell_ms: None,
                },
                policy,
                Utc::now(),
            )
            .unwrap();
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    policy: Policy,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
    Fixture {
        _dir: dir,
        store,
        policy: Policy::default(),
    }
}

async fn resume_all(
    runner: &BedrockRunner,
    f: &Fixture,
    submit: &SubmitSettings<'_>,
) -> agentdeck::bedrock::ResumeReport {
    let exec = ScriptedExecutor::demo();
    ResumeWorker {
        runner,
        store: &f.store,
        executor: &exec,
        submit,
        owner: "test-worker".into(),
        lease: Duration::from_secs(60),
        max_attempts: 3,
    }
    .resume_pending(&mut |_| {})
    .await
    .unwrap()
}

#[tokio::test]
async fn pay_then_approve_then_resume_once_with_the_continuation_stored() {
    let sim = sim().await;
    let runner = BedrockRunner::loopback(&sim.endpoint());
    let f = fixture();
    let submit = SubmitSettings {
        policy: &f.policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let summary = runner
        .invoke(
            &request(
                "PAYAGENT01",
                "PRODALIAS",
                "sess-pay-1",
                "pay 5000 to prod-7",
            ),
            &f.store,
            &submit,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(summary.outcome, Outcome::WaitingForHuman);
    let id = summary.queued[0].clone();

    // Traces persisted, grouped into steps, with the rationale on the step that raised it.
    let inv = f.store.invocation(&summary.request_id).unwrap().unwrap();
    assert!(inv.events >= 3, "{inv:?}");
    let link = f.store.runner_link(&id).unwrap().unwrap();
    assert_eq!(link.invocation, summary.request_id);
    let steps = f.store.steps(&summary.request_id, 0, 100).unwrap();
    let step = steps
        .iter()
        .find(|s| Some(s.trace_id.as_str()) == link.trace_id.as_deref())
        .unwrap();
    let stored = f.store.get(&id, &f.policy, Utc::now()).unwrap();
    assert_eq!(stored.request.rationale, step.rationale);
    assert!(
        stored
            .request
            .rationale
            .as_deref()
            .unwrap()
            .contains("prod-7")
    );
    let input = &stored.request.inputs[0];
    assert_eq!(input.action_label(), "payments.transferFunds");
    assert_eq!(
        input.invocation_type,
        agentdeck::domain::approval::ActionInvocationType::UserConfirmation
    );

    decide(&f.store, &id, &[Verdict::Confirm], &f.policy);
    assert_eq!(
        f.store.outbox_row(&id).unwrap().unwrap().state,
        OutboxState::Pending
    );
    assert_eq!(sim.resume_count(id.as_str()), 0);

    let report = resume_all(&runner, &f, &submit).await;
    let ResumeOutcome::Acked {
        continuation: Ok(cont),
    } = &report.items[0].1
    else {
        panic!("{:?}", report.items)
    };
    assert_eq!(cont.outcome, Outcome::Finished, "{cont:?}");
    assert!(cont.text.contains("prod-7"), "{}", cont.text);
    assert_eq!(sim.resume_count(id.as_str()), 1);
    let stored_cont = f.store.invocation(&cont.request_id).unwrap().unwrap();
    assert_eq!(stored_cont.start.resumes.as_deref(), Some(id.as_str()));
    assert_eq!(stored_cont.outcome, Outcome::Finished);
    assert!(stored_cont.events > 0);

    // A second run of the worker sends nothing more.
    assert!(resume_all(&runner, &f, &submit).await.items.is_empty());
    assert_eq!(sim.resume_count(id.as_str()), 1);
    assert!(f.store.audit_verify().unwrap().ok());
}

#[tokio::test]
async fn close_account_with_three_inputs_resumes_a_mixed_decision() {
    let sim = sim().await;
    let runner = BedrockRunner::loopback(&sim.endpoint());
    let f = fixture();
    let submit = SubmitSettings {
        policy: &f.policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let summary = runner
        .invoke(
            &request("OPSAGENT02", "LIVE", "sess-ops-1", "close account 42"),
            &f.store,
            &submit,
            &mut |_| {},
        )
        .await
        .unwrap();
    let id = summary.queued[0].clone();
    let stored = f.store.get(&id, &f.policy, Utc::now()).unwrap();
    assert_eq!(stored.request.inputs.len(), 3);
    decide(
        &f.store,
        &id,
        &[Verdict::Confirm, Verdict::Confirm, Verdict::Deny],
        &f.policy,
    );
    let row = f.store.outbox_row(&id).unwrap().unwrap();
    assert_eq!(row.plan.inputs.len(), 3);
    let report = resume_all(&runner, &f, &submit).await;
    assert!(
        matches!(report.items[0].1, ResumeOutcome::Acked { .. }),
        "{:?}",
        report.items
    );
    assert_eq!(sim.resume_count(id.as_str()), 1);
    let row = f.store.outbox_row(&id).unwrap().unwrap();
    let results = row.results.unwrap();
    assert_eq!(results.len(), 3);
    for (r, i) in results.iter().zip(&stored.request.inputs) {
        assert_eq!(r.action_group, i.action_group);
    }
}

#[tokio::test]
async fn a_rejected_api_form_delete_is_denied_with_the_reason() {
    let sim = sim().await;
    let runner = BedrockRunner::loopback(&sim.endpoint());
    let f = fixture();
    let submit = SubmitSettings {
        policy: &f.policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let summary = runner
        .invoke(
            &request("OPSAGENT02", "LIVE", "sess-ops-2", "delete cluster blue"),
            &f.store,
            &submit,
            &mut |_| {},
        )
        .await
        .unwrap();
    let id = summary.queued[0].clone();
    let stored = f.store.get(&id, &f.policy, Utc::now()).unwrap();
    assert!(stored.request.inputs[0].api_path().is_some());
    decide(&f.store, &id, &[Verdict::Deny], &f.policy);
    let report = resume_all(&runner, &f, &submit).await;
    assert!(
        matches!(report.items[0].1, ResumeOutcome::Acked { .. }),
        "{:?}",
        report.items
    );
    let row = f.store.outbox_row(&id).unwrap().unwrap();
    let wire = row.results.unwrap()[0].to_wire();
    assert_eq!(wire["apiResult"]["confirmationState"], json!("DENY"));
    let body = wire["apiResult"]["responseBody"]["application/json"]["body"]
        .as_str()
        .unwrap();
    assert!(body.contains("reviewed in the test"), "{body}");
    assert_eq!(sim.resume_count(id.as_str()), 1);
}

#[tokio::test]
async fn a_knowledge_base_answer_keeps_its_references() {
    let sim = sim().await;
    let runner = BedrockRunner::loopback(&sim.endpoint());
    let f = fixture();
    let submit = SubmitSettings {
        policy: &f.policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let summary = runner
        .invoke(
            &request(
                "KBAGENT003",
                "LIVE",
                "sess-kb-1",
                "what is the refund policy?",
            ),
            &f.store,
            &submit,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(summary.outcome, Outcome::Finished, "{summary:?}");
    let events = f.store.events(&summary.request_id, 0, 1000).unwrap();
    let kb = events
        .iter()
        .map(agentdeck::store::StoredEvent::event)
        .find_map(|e| match e.kind {
            TraceKind::Step {
                event:
                    StepEvent::Observation(agentdeck::domain::trace::Observation {
                        detail: ObservationDetail::KnowledgeBase { references, .. },
                        ..
                    }),
                ..
            } => Some(references),
            _ => None,
        });
    assert!(!kb.unwrap_or_default().is_empty());
    assert_eq!(
        f.store.chunk_text(&summary.request_id).unwrap(),
        summary.text
    );
}

/// The runner writes a turn's invocation row with its first batch of events, but never later
/// than `FLUSH_EVERY` (250 ms) after the stream opened: a stream that stays quiet (here every
/// frame is a second late) still shows as running in the console.
#[tokio::test]
async fn a_quiet_stream_is_listed_as_running_within_a_quarter_second() {
    let mut config = SimConfig::builtin().unwrap();
    config.time_scale = 0.0;
    config.faults = agentdeck::sim::Faults::parse("slow=1s").unwrap();
    let sim = start(config).await.unwrap();
    let runner = BedrockRunner::loopback(&sim.endpoint());
    let f = fixture();
    let submit = SubmitSettings {
        policy: &f.policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let req = request("KBAGENT003", "LIVE", "sess-quiet-1", "what is the policy?");
    let started = std::cell::Cell::new(None);
    let mut observer = |e: &agentdeck::bedrock::LiveEvent<'_>| {
        if matches!(e, agentdeck::bedrock::LiveEvent::Started { .. }) {
            started.set(Some(std::time::Instant::now()));
        }
    };
    let turn = runner.invoke(&req, &f.store, &submit, &mut observer);
    let check = async {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(at) = started.get() {
                tokio::time::sleep(Duration::from_millis(400).saturating_sub(at.elapsed())).await;
                break;
            }
        }
        f.store.invocations("sess-quiet-1", 0, 10).unwrap()
    };
    tokio::select! {
        rows = check => {
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(rows[0].outcome, Outcome::Running);
            assert_eq!(rows[0].events, 0);
        }
        done = turn => panic!("the turn ended before the check: {done:?}"),
    }
}

/// A stream that stalls mid-way (the simulator's `stall` fault, 3 s of wall time) ends the
/// turn after the runner's idle timeout, with what arrived before stored and the invocation
/// recorded as cut short; with a longer timeout the same stall is waited out.
#[tokio::test]
async fn a_stalled_stream_ends_its_turn_after_the_idle_timeout_and_keeps_what_arrived() {
    let mut config = SimConfig::builtin().unwrap();
    config.time_scale = 0.0;
    config.faults = agentdeck::sim::Faults::parse("stall=3s").unwrap();
    let sim = start(config).await.unwrap();
    let f = fixture();
    let submit = SubmitSettings {
        policy: &f.policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let short = BedrockRunner::loopback(&sim.endpoint()).with_idle_timeout(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = short
        .invoke(
            &request("KBAGENT003", "LIVE", "sess-stall-1", "what is the policy?"),
            &f.store,
            &submit,
            &mut |_| {},
        )
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(2900), "{waited:?}");
    let agentdeck::bedrock::RunnerError::Stalled { idle_secs, events } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*idle_secs, 1);
    assert!(*events > 0, "the stall comes after the first frame");
    assert!(err.to_string().contains("no event for 1 s"), "{err}");
    let rows = f.store.invocations("sess-stall-1", 0, 10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].outcome, Outcome::Exception);
    assert_eq!(rows[0].events, *events);
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("stalled"),
        "{:?}",
        rows[0].error
    );
    // The same stall, waited out.
    let patient =
        BedrockRunner::loopback(&sim.endpoint()).with_idle_timeout(Duration::from_secs(10));
    let summary = patient
        .invoke(
            &request("KBAGENT003", "LIVE", "sess-stall-2", "what is the policy?"),
            &f.store,
            &submit,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(summary.outcome, Outcome::Finished);
    assert!(summary.events > *events);
}

#[tokio::test]
async fn a_supervisor_passes_the_collaborators_agent_id_through() {
    let sim = sim().await;
    let runner = BedrockRunner::loopback(&sim.endpoint());
    let f = fixture();
    let submit = SubmitSettings {
        policy: &f.policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let summary = runner
        .invoke(
            &request("SUPERVISR1", "LIVE", "sess-sup-1", "pay 5000 to prod-7"),
            &f.store,
            &submit,
            &mut |_| {},
        )
        .await
        .unwrap();
    let events = f.store.events(&summary.request_id, 0, 1000).unwrap();
    assert!(
        events.iter().any(|e| e.event().collaborator_name.is_some()),
        "collaborator traces are stored"
    );
    let id = summary
        .queued
        .first()
        .expect("the collaborator's return of control reaches the supervisor's stream");
    {
        let stored = f.store.get(id, &f.policy, Utc::now()).unwrap();
        let agent = stored.request.inputs[0].agent_id.clone();
        assert!(agent.is_some(), "a collaborator's input names its agent");
        decide(&f.store, id, &[Verdict::Confirm], &f.policy);
        let report = resume_all(&runner, &f, &submit).await;
        assert!(
            matches!(report.items[0].1, ResumeOutcome::Acked { .. }),
            "{:?}",
            report.items
        );
        let row = f.store.outbox_row(id).unwrap().unwrap();
        assert_eq!(row.results.unwrap()[0].agent_id, agent);
        assert_eq!(sim.resume_count(id.as_str()), 1);
    }
}

fn agentdeck(home: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentdeck"));
    cmd.args([
        "--store",
        &format!("sqlite:{}", home.join("deck.db").display()),
    ])
    .args(args)
    .env("XDG_CONFIG_HOME", home.join("config"))
    .env("XDG_STATE_HOME", home.join("state"))
    .env("XDG_DATA_HOME", home.join("data"))
    .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
    .env("AWS_SECRET_ACCESS_KEY", "test")
    .env("AWS_REGION", "us-east-1")
    .env_remove("AWS_PROFILE")
    .env_remove(agentdeck::bedrock::CRASH_BEFORE_RESUME_ENV);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_worker_killed_before_sending_resumes_exactly_once_after_a_restart() {
    let sim = sim().await;
    let endpoint = sim.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    let url = endpoint.clone();
    let h = home.clone();
    let out = tokio::task::spawn_blocking(move || {
        agentdeck(
            &h,
            &[
                "invoke",
                "--agent-id",
                "PAYAGENT01",
                "--agent-alias-id",
                "PRODALIAS",
                "--session-id",
                "sess-kill-1",
                "--endpoint-url",
                &url,
                "pay 5000 to prod-7",
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Decide through the store, as the console would.
    let store = SqliteStore::open(&home.join("deck.db")).unwrap();
    let policy = Policy::default();
    let id = store.open_queue(Utc::now()).unwrap()[0].id.clone();
    decide(&store, &id, &[Verdict::Confirm], &policy);
    assert_eq!(
        store.outbox_row(&id).unwrap().unwrap().state,
        OutboxState::Pending
    );

    // The worker dies just before the send.
    let run_resume = |crash: bool| {
        let (h, url) = (home.clone(), endpoint.clone());
        tokio::task::spawn_blocking(move || {
            let env: &[(&str, &str)] = if crash {
                &[(agentdeck::bedrock::CRASH_BEFORE_RESUME_ENV, "1")]
            } else {
                &[]
            };
            agentdeck(
                &h,
                &["resume", "--endpoint-url", &url, "--lease-secs", "1"],
                env,
            )
        })
    };
    let crashed = run_resume(true).await.unwrap();
    assert!(!crashed.status.success(), "{}", text(&crashed));
    assert_eq!(sim.resume_count(id.as_str()), 0, "nothing was sent");
    let row = store.outbox_row(&id).unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    assert!(
        row.results.is_some(),
        "the results were kept before the crash"
    );

    // While the dead worker's lease holds, a restart leaves the row alone.
    let early = run_resume(false).await.unwrap();
    assert!(early.status.success(), "{}", text(&early));
    assert_eq!(sim.resume_count(id.as_str()), 0);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let restarted = run_resume(false).await.unwrap();
    assert!(restarted.status.success(), "{}", text(&restarted));
    assert!(
        String::from_utf8_lossy(&restarted.stdout).contains("resumed"),
        "{}",
        text(&restarted)
    );
    assert_eq!(sim.resume_count(id.as_str()), 1);

    // And again: nothing left to send.
    let again = run_resume(false).await.unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(sim.resume_count(id.as_str()), 1);
    let row = store.outbox_row(&id).unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (OutboxState::Acked, 1));
    assert!(store.audit_verify().unwrap().ok());
}

/// A JSON value with every string and number blanked: its shape (ids and times differ between
/// two runs whose turns interleave differently).
fn skeleton(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(_) => Value::String(String::new()),
        Value::Number(_) => Value::from(0),
        Value::Array(a) => Value::Array(a.iter().map(skeleton).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), skeleton(v))).collect())
        }
        other => other.clone(),
    }
}

/// Many turns at once through the group-commit writer store what one-at-a-time direct writes
/// store: per turn the same outcome, events (kinds, steps and JSON shape, in order), steps and
/// chunks,
/// and each return of control queued once, linked to a step its trace already holds.
#[tokio::test]
async fn turns_through_the_group_writer_store_what_direct_writes_store() {
    use agentdeck::bedrock::{Recorder, TraceWriter};
    use std::sync::Arc;

    let asks = [
        ("PAYAGENT01", "PRODALIAS", "pay 250 EUR to acct-7"),
        ("PAYAGENT01", "PRODALIAS", "what is my balance"),
        ("KBAGENT003", "LIVE", "what is the travel policy?"),
        ("SUPERVISR1", "LIVE", "pay 90 GBP to acct-3"),
    ];
    let policy = Policy::default();
    let submit = SubmitSettings {
        policy: &policy,
        ttl_secs: &ttl,
        actor: "runner",
    };
    let requests: Vec<InvokeRequest> = (0..24)
        .map(|i| {
            let (agent, alias, text) = asks[i % asks.len()];
            request(agent, alias, &format!("group-{i:02}"), text)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();

    // Direct, one turn after another, against a simulator with the same seed.
    let direct = SqliteStore::open(&dir.path().join("direct.db")).unwrap();
    let sim_a = sim().await;
    let runner_a = BedrockRunner::loopback(&sim_a.endpoint());
    let mut direct_runs = Vec::new();
    for req in &requests {
        direct_runs.push(
            runner_a
                .invoke(req, &direct, &submit, &mut |_| {})
                .await
                .unwrap(),
        );
    }

    // Grouped, all at once.
    let grouped = Arc::new(SqliteStore::open(&dir.path().join("grouped.db")).unwrap());
    let writer = TraceWriter::spawn(grouped.clone()).unwrap();
    let sim_b = sim().await;
    let runner_b = BedrockRunner::loopback(&sim_b.endpoint());
    let grouped_runs = futures::future::join_all(requests.iter().map(|req| {
        let (runner, writer, submit) = (&runner_b, &writer, &submit);
        async move {
            runner
                .invoke_to(req, Recorder::Grouped(writer), submit, None)
                .await
        }
    }))
    .await;

    let shape = |store: &SqliteStore, s: &agentdeck::bedrock::InvocationSummary| {
        // Everything is committed when the turn returns: read at once, before the writer stops.
        let inv = store.invocation(&s.request_id).unwrap().unwrap();
        let steps = store.steps(&s.request_id, 0, 1000).unwrap();
        let events: Vec<_> = store
            .events(&s.request_id, 0, 10_000)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.step, skeleton(&e.raw)))
            .collect();
        let queued: Vec<_> = s
            .queued
            .iter()
            .map(|id| {
                let link = store.runner_link(id).unwrap().unwrap();
                assert_eq!(link.invocation, s.request_id);
                let trace_id = link.trace_id.unwrap();
                assert!(
                    steps.iter().any(|st| st.trace_id == trace_id),
                    "the request's step {trace_id} is stored with its trace"
                );
                store
                    .get(id, &policy, Utc::now())
                    .unwrap()
                    .request
                    .rationale
            })
            .collect();
        (
            inv.outcome,
            inv.events,
            steps.len(),
            events,
            store.chunk_text(&s.request_id).unwrap(),
            queued,
        )
    };
    let mut queued = 0;
    for (d, g) in direct_runs.iter().zip(&grouped_runs) {
        let g = g.as_ref().unwrap();
        assert_eq!(shape(&direct, d), shape(&grouped, g), "{}", g.session_id);
        queued += g.queued.len();
    }
    assert!(queued >= 12, "the pay asks return control: {queued}");
    writer.close();
    assert!(grouped.audit_verify().unwrap().ok());
}
