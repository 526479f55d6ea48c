//! The metrics engine fed from a real SQLite store with turns the runner recorded from the
//! simulator (through the binary): figures move as traffic and decisions do, marks made with
//! `agentdeck traces mark` count as judgements, refreshes read only what is new, and
//! `agentdeck metrics --json` equals the engine's snapshot of the same store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::many_single_char_names,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap
)]

use crate::bin_support;

use agentdeck::config::Config;
use agentdeck::domain::metrics::{Cursor, Engine, Filter, Snapshot, TaskEnd, Window};
use agentdeck::sim::{SimConfig, start};
use agentdeck::store::metrics::{MetricsStore, PAGE, refresh};
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{Outcome, TraceStore};
use bin_support::Sandbox;
use serde_json::Value;

fn value(s: &Snapshot, id: &str) -> Option<f64> {
    s.metric(id).unwrap().value
}

fn cli_value(v: &Value, id: &str) -> Option<f64> {
    v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no {id}"))["value"]
        .as_f64()
}

/// The CLI's snapshot, and the engine's snapshot of the same store at the CLI's instant.
fn agree(sb: &Sandbox, engine: &mut Engine, window: Window) -> Value {
    let cli = sb
        .run(&["metrics", "--json", "--window", window.as_str()])
        .code(0)
        .json();
    let store = SqliteStore::open(&sb.db).unwrap();
    refresh(&store, engine).unwrap();
    let now = cli["now_ms"].as_i64().unwrap();
    let ours = engine.snapshot(window, &Filter::default(), now);
    assert_eq!(
        serde_json::to_value(&ours).unwrap(),
        cli,
        "CLI and engine differ"
    );
    cli
}

#[test]
fn metrics_move_with_traffic_decisions_and_marks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(async {
        start(SimConfig {
            // Fast, but not instant: the trace's times are scaled like its pacing.
            time_scale: 0.01,
            ..SimConfig::builtin().unwrap()
        })
        .await
        .unwrap()
    });
    let url = sim.endpoint();
    let sb = Sandbox::new();
    let settings = Config::defaults().unwrap().metrics;
    let mut engine = Engine::new(settings);
    engine.advance(chrono::Utc::now().timestamp_millis());

    // Nothing yet: no invented numbers.
    sb.run(&["init"]).code(0);
    let empty = agree(&sb, &mut engine, Window::H1);
    assert_eq!(cli_value(&empty, "task_completion_rate"), None);
    assert_eq!(cli_value(&empty, "queue_depth"), Some(0.0));

    let invoke = |agent: &str, alias: &str, session: &str, text: &str| {
        sb.run(&[
            "invoke",
            "--endpoint-url",
            &url,
            "--agent-id",
            agent,
            "--agent-alias-id",
            alias,
            "--session-id",
            session,
            text,
        ])
        .code(0);
    };
    invoke("PAYAGENT01", "PRODALIAS", "m-s1", "pay 250 EUR to acct-7");
    invoke("KBAGENT003", "LIVE", "m-s2", "what is the travel policy?");

    let s = agree(&sb, &mut engine, Window::H1);
    // The knowledge-base turn finished; the payment waits for a human.
    assert_eq!(cli_value(&s, "task_completion_rate"), Some(1.0));
    assert_eq!(cli_value(&s, "in_flight"), Some(1.0));
    assert_eq!(cli_value(&s, "invocations"), Some(1.0));
    assert_eq!(cli_value(&s, "queue_depth"), Some(1.0));
    assert_eq!(cli_value(&s, "time_to_decision_p50"), None);
    assert!(cli_value(&s, "model_time_p50").unwrap() > 0.0, "{s}");
    assert!(cli_value(&s, "tokens_in").unwrap() > 0.0);
    let models = s["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{models:?}");
    assert!(
        models[0]["model"]
            .as_str()
            .unwrap()
            .starts_with("anthropic.")
    );
    assert!(
        models[0]["cost_usd"].as_f64().unwrap() > 0.0,
        "a priced model"
    );

    let pending = sb.pending_ids();
    assert_eq!(pending.len(), 1);
    sb.run(&["approve", &pending[0]]).code(0);
    let s = agree(&sb, &mut engine, Window::H1);
    assert_eq!(cli_value(&s, "queue_depth"), Some(0.0));
    assert!(cli_value(&s, "time_to_decision_p50").is_some());
    assert_eq!(cli_value(&s, "approval_rate"), Some(1.0));
    assert_eq!(cli_value(&s, "action_accuracy"), Some(1.0));
    // Decided but not yet resumed: still in flight.
    assert_eq!(cli_value(&s, "in_flight"), Some(1.0));

    sb.run(&["resume", "--endpoint-url", &url]).code(0);
    let s = agree(&sb, &mut engine, Window::H1);
    assert_eq!(cli_value(&s, "in_flight"), Some(0.0));
    // The payment's first call handed on to its continuation, which finished.
    assert_eq!(cli_value(&s, "invocations"), Some(3.0));
    assert_eq!(cli_value(&s, "task_completion_rate"), Some(1.0));
    assert!(cli_value(&s, "human_wait_p50").is_some(), "{s}");

    // An engineer judges the knowledge-base turn's first step inappropriate.
    let store = SqliteStore::open(&sb.db).unwrap();
    let kb = store.invocations("m-s2", 0, 10).unwrap();
    assert_eq!(kb[0].outcome, Outcome::Finished);
    let kb_id = kb[0].start.request_id.clone();
    sb.run(&[
        "traces",
        "mark",
        &kb_id,
        "1",
        "--inappropriate",
        "--note",
        "looked up the wrong policy",
    ])
    .code(0)
    .out_has(&["marked step 1", "inappropriate"]);
    let marks = store.action_marks(&kb_id).unwrap();
    assert_eq!(marks.len(), 1);
    assert!(!marks[0].appropriate);
    assert_eq!(marks[0].note.as_deref(), Some("looked up the wrong policy"));
    let s = agree(&sb, &mut engine, Window::H1);
    assert_eq!(cli_value(&s, "action_accuracy"), Some(0.5));
    // The same engineer changes their mind: the later mark replaces theirs.
    sb.run(&["traces", "mark", &kb_id, "1", "--appropriate"])
        .code(0);
    let s = agree(&sb, &mut engine, Window::H1);
    assert_eq!(cli_value(&s, "action_accuracy"), Some(1.0));
    assert_eq!(store.action_marks(&kb_id).unwrap().len(), 2);

    // Every window agrees too, and a refresh with nothing new reads nothing.
    for w in Window::ALL {
        agree(&sb, &mut engine, w);
    }
    assert_eq!(refresh(&store, &mut engine).unwrap(), 0);
    let snap = engine.snapshot(
        Window::H24,
        &Filter::default(),
        chrono::Utc::now().timestamp_millis(),
    );
    assert_eq!(value(&snap, "invocations"), Some(3.0));
}

#[test]
fn marks_and_metrics_refuse_bad_input_clearly() {
    let sb = Sandbox::new();
    sb.run(&["init"]).code(0);
    sb.run(&["traces", "mark", "nope", "1", "--appropriate"])
        .code(2)
        .err_has(&["no invocation", "nope"]);
    sb.run(&["traces", "mark", "nope", "1"]).code(2);
    sb.run(&[
        "traces",
        "mark",
        "nope",
        "1",
        "--appropriate",
        "--inappropriate",
    ])
    .code(2);
    sb.run(&["metrics", "--window", "2h"])
        .code(2)
        .err_has(&["2h", "15m, 1h, 24h, 7d"]);
    sb.run(&["metrics"])
        .code(0)
        .out_has(&["task completion", "— (no finished invocations)"]);
}

/// With the simulator paced at 5% of its scripted latencies, every call's model and tool time
/// (from the trace's metadata) fit inside its own latency, so model + tool + human never
/// exceeds end to end: the trace keeps the clock the client sees. Before, the metadata kept
/// the scripted clock while the pacing (and a return of control's wall-clock latency) did not,
/// and a payment's model time was many times its latency.
#[test]
fn the_latency_split_and_end_to_end_share_one_clock() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(async {
        start(SimConfig {
            time_scale: 0.05,
            ..SimConfig::builtin().unwrap()
        })
        .await
        .unwrap()
    });
    let url = sim.endpoint();
    let sb = Sandbox::new();
    sb.run(&["init"]).code(0);
    for (agent, alias, session, text) in [
        ("PAYAGENT01", "PRODALIAS", "c-s1", "pay 250 EUR to acct-7"),
        ("KBAGENT003", "LIVE", "c-s2", "what is the travel policy?"),
        (
            "SUPERVISR1",
            "LIVE",
            "c-s3",
            "what is the balance of acct-7?",
        ),
    ] {
        sb.run(&[
            "invoke",
            "--endpoint-url",
            &url,
            "--agent-id",
            agent,
            "--agent-alias-id",
            alias,
            "--session-id",
            session,
            text,
        ])
        .code(0);
    }
    for id in sb.pending_ids() {
        sb.run(&["approve", &id]).code(0);
    }
    sb.run(&["resume", "--endpoint-url", &url]).code(0);
    let store = SqliteStore::open(&sb.db).unwrap();
    let facts = store
        .facts_after(Cursor::default(), PAGE)
        .unwrap()
        .invocations;
    let settled: Vec<_> = facts
        .iter()
        .filter(|f| f.task != TaskEnd::InFlight)
        .collect();
    assert!(settled.len() >= 4, "{facts:?}");
    assert!(settled.iter().any(|f| f.model_ms > 0), "{facts:?}");
    assert!(settled.iter().any(|f| f.human_ms.is_some()), "{facts:?}");
    for f in &settled {
        let e2e = f.latency_ms + f.human_ms.unwrap_or(0);
        assert!(
            f.model_ms + f.tool_ms + f.human_ms.unwrap_or(0) <= e2e,
            "{}: model {} + tool {} + human {:?} > end to end {e2e}",
            f.request_id,
            f.model_ms,
            f.tool_ms,
            f.human_ms
        );
    }
}
