//! The state machine, driven by scripted messages with no IO and no runtime: every decision
//! flow, stale answers, filtering, expiry and failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use agentdeck::app::keymap::Keymap;
use agentdeck::app::msg::StoreFailure;
use agentdeck::app::state::{Level, Pane, Prompt};
use agentdeck::app::update::init;
use agentdeck::app::{AppState, Edit, Effect, KeyInput, Msg, update};
use agentdeck::domain::approval::ApprovalRequest;
use agentdeck::domain::decision::{Decision, Verdict};
use agentdeck::domain::policy::RiskTier;
use agentdeck::domain::status::Status;
use agentdeck::store::{DecisionOutcome, QueueRow, StoredRequest};
use common::{at, multi_request, sample_request, t0, test_policy};

fn state() -> AppState {
    let mut s = AppState::new(
        Keymap::default(),
        test_policy(),
        "alice".into(),
        "sqlite:test.db".into(),
        t0(),
    );
    update(
        &mut s,
        Msg::Resize {
            width: 120,
            height: 40,
        },
    );
    s
}

fn press(s: &mut AppState, key: &str) -> Vec<Effect> {
    let edit = match key {
        "enter" => Some(Edit::Enter),
        "esc" => Some(Edit::Esc),
        "backspace" => Some(Edit::Backspace),
        k if k.chars().count() == 1 => k.chars().next().map(Edit::Char),
        _ => None,
    };
    let now = s.now;
    update(
        s,
        Msg::Key(KeyInput {
            key: key.parse().unwrap(),
            edit,
            at: now,
        }),
    )
}

fn type_text(s: &mut AppState, text: &str) {
    for c in text.chars() {
        let now = s.now;
        update(
            s,
            Msg::Key(KeyInput {
                key: agentdeck::app::keymap::Key::char(c),
                edit: Some(Edit::Char(c)),
                at: now,
            }),
        );
    }
}

fn load_queue(s: &mut AppState, requests: &[&ApprovalRequest]) {
    let fx = init(s);
    let tag = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadQueue { tag } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    let rows = requests
        .iter()
        .map(|r| QueueRow::of(r, Status::Pending, 0))
        .collect();
    update(
        s,
        Msg::QueueLoaded {
            tag,
            result: Ok(rows),
        },
    );
}

fn detail_tag(fx: &[Effect]) -> u64 {
    fx.iter()
        .find_map(|f| {
            if let Effect::LoadDetail { tag, .. } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .expect("LoadDetail")
}

fn deliver_detail(
    s: &mut AppState,
    fx: &[Effect],
    request: &ApprovalRequest,
    decisions: Vec<Decision>,
) {
    let tag = detail_tag(fx);
    let status = Status::derive(request, &decisions, &s.policy, s.now);
    update(
        s,
        Msg::DetailLoaded {
            tag,
            result: Ok(Box::new(StoredRequest {
                request: request.clone(),
                decisions,
                status,
            })),
        },
    );
}

fn decide_effect(fx: &[Effect]) -> Option<(u64, agentdeck::domain::decision::DecisionAsk)> {
    fx.iter().find_map(|f| {
        if let Effect::Decide { tag, ask } = f {
            Some((*tag, ask.clone()))
        } else {
            None
        }
    })
}

#[test]
fn queue_sorts_by_risk_then_time_left_and_drops_stale_answers() {
    let mut s = state();
    let low = sample_request("inv-low", RiskTier::Low);
    let mut crit_late = sample_request("inv-crit-late", RiskTier::Critical);
    crit_late.expires_at = at(900);
    let crit_soon = sample_request("inv-crit-soon", RiskTier::Critical);
    let high = sample_request("inv-high", RiskTier::High);
    load_queue(&mut s, &[&low, &crit_late, &high, &crit_soon]);
    let order: Vec<&str> = s.view.iter().map(|i| s.queue[*i].id.as_str()).collect();
    assert_eq!(
        order,
        ["inv-crit-soon", "inv-crit-late", "inv-high", "inv-low"]
    );

    // A stale answer (old tag) changes nothing.
    update(
        &mut s,
        Msg::QueueLoaded {
            tag: 9999,
            result: Ok(Vec::new()),
        },
    );
    assert_eq!(s.queue.len(), 4);
}

#[test]
fn reload_keeps_the_selection_on_the_same_request() {
    let mut s = state();
    let a = sample_request("inv-a", RiskTier::High);
    let b = sample_request("inv-b", RiskTier::Low);
    load_queue(&mut s, &[&a, &b]);
    press(&mut s, "j");
    assert_eq!(s.selected_row().unwrap().id.as_str(), "inv-b");
    let fx = update(&mut s, Msg::StoreChanged);
    let tag = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadQueue { tag } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    let c = sample_request("inv-c", RiskTier::Critical);
    let rows = [&c, &a, &b]
        .iter()
        .map(|r| QueueRow::of(r, Status::Pending, 0))
        .collect();
    update(
        &mut s,
        Msg::QueueLoaded {
            tag,
            result: Ok(rows),
        },
    );
    assert_eq!(s.selected_row().unwrap().id.as_str(), "inv-b");
}

#[test]
fn filter_narrows_and_escape_clears() {
    let mut s = state();
    let a = sample_request("inv-a", RiskTier::Critical);
    let b = sample_request("inv-b", RiskTier::Low);
    load_queue(&mut s, &[&a, &b]);
    press(&mut s, "/");
    assert!(s.filter_editing);
    type_text(&mut s, "lookup");
    assert_eq!(s.view.len(), 1);
    assert_eq!(s.selected_row().unwrap().id.as_str(), "inv-b");
    press(&mut s, "enter");
    assert!(!s.filter_editing);
    assert_eq!(s.view.len(), 1);
    press(&mut s, "esc");
    assert_eq!(s.view.len(), 2);
}

#[test]
fn approving_from_the_queue_shows_the_request_first_then_decides_bound_to_its_hash() {
    let mut s = state();
    let r = sample_request("inv-med", RiskTier::Medium);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "a");
    assert!(
        decide_effect(&fx).is_none(),
        "no decision without seeing the request"
    );
    assert!(s.detail.is_some());
    deliver_detail(&mut s, &fx, &r, Vec::new());
    let fx = press(&mut s, "a");
    let (tag, ask) = decide_effect(&fx).expect("second press decides");
    assert_eq!(ask.verdict, Verdict::Confirm);
    assert_eq!(ask.inputs, vec![(0, r.input_hash(0).unwrap())]);
    assert_eq!(ask.reviewer, "alice");
    assert!(s.deciding.is_some());
    // The screen does not claim success before the store answers.
    assert_ne!(s.message.as_ref().unwrap().level, Level::Success);

    let decided = Decision {
        request: r.id.clone(),
        input_index: 0,
        verdict: Verdict::Confirm,
        reviewer: "alice".into(),
        reason: None,
        decided_at: s.now,
        dwell_ms: ask.dwell_ms,
        args_hash: r.input_hash(0).unwrap(),
    };
    let fx = update(
        &mut s,
        Msg::Decided {
            tag,
            result: Ok(DecisionOutcome {
                decisions: vec![decided],
                status: Status::Approved,
                audit_seq: 2,
            }),
        },
    );
    assert_eq!(s.message.as_ref().unwrap().level, Level::Success);
    assert!(s.detail.is_none(), "a final decision returns to the queue");
    assert!(fx.iter().any(|f| matches!(f, Effect::LoadQueue { .. })));
}

#[test]
fn high_risk_needs_a_second_press_within_the_window() {
    let mut s = state();
    let r = sample_request("inv-high", RiskTier::High);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    deliver_detail(&mut s, &fx, &r, Vec::new());
    let fx = press(&mut s, "a");
    assert!(decide_effect(&fx).is_none());
    assert!(s.message.as_ref().unwrap().text.contains("press a again"));
    // After the window the arm is gone: the next press arms again instead of deciding.
    let later = s.now + chrono::Duration::seconds(6);
    update(&mut s, Msg::Tick(later));
    assert!(decide_effect(&press(&mut s, "a")).is_none());
    assert!(decide_effect(&press(&mut s, "a")).is_some());
}

#[test]
fn critical_needs_a_reason_and_the_typed_word() {
    let mut s = state();
    let r = sample_request("inv-crit", RiskTier::Critical);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    deliver_detail(&mut s, &fx, &r, Vec::new());
    press(&mut s, "a");
    assert!(matches!(s.prompt, Some(Prompt::Reason { .. })));
    press(&mut s, "enter");
    assert!(
        matches!(s.prompt, Some(Prompt::Reason { .. })),
        "empty reason refused"
    );
    type_text(&mut s, "invoice approved");
    press(&mut s, "enter");
    let Some(Prompt::Word { intent, .. }) = &s.prompt else {
        panic!("word prompt expected")
    };
    assert_eq!(intent.word, "transfer");
    type_text(&mut s, "transfr");
    let fx = press(&mut s, "enter");
    assert!(decide_effect(&fx).is_none());
    assert_eq!(s.message.as_ref().unwrap().level, Level::Error);

    press(&mut s, "a");
    type_text(&mut s, "invoice approved");
    press(&mut s, "enter");
    type_text(&mut s, "transfer");
    let (_, ask) = decide_effect(&press(&mut s, "enter")).expect("decides");
    assert_eq!(ask.reason.as_deref(), Some("invoice approved"));
}

#[test]
fn reject_asks_a_reason_and_escape_cancels() {
    let mut s = state();
    let r = sample_request("inv-low", RiskTier::Low);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    deliver_detail(&mut s, &fx, &r, Vec::new());
    press(&mut s, "r");
    assert!(matches!(s.prompt, Some(Prompt::Reason { .. })));
    press(&mut s, "esc");
    assert!(s.prompt.is_none());
    assert!(
        s.message
            .as_ref()
            .unwrap()
            .text
            .contains("nothing was recorded")
    );
    press(&mut s, "r");
    type_text(&mut s, "wrong customer");
    let (_, ask) = decide_effect(&press(&mut s, "enter")).expect("decides");
    assert_eq!(
        (ask.verdict, ask.reason.as_deref()),
        (Verdict::Deny, Some("wrong customer"))
    );
}

#[test]
fn keys_typed_into_a_prompt_are_text_not_commands() {
    let mut s = state();
    let r = sample_request("inv-low", RiskTier::Low);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    deliver_detail(&mut s, &fx, &r, Vec::new());
    press(&mut s, "r");
    type_text(&mut s, "qa");
    assert!(!s.quit);
    let Some(Prompt::Reason { text, .. }) = &s.prompt else {
        panic!()
    };
    assert_eq!(text, "qa");
    let fx = press(&mut s, "ctrl-c");
    assert!(s.quit && fx.contains(&Effect::Quit), "ctrl-c still quits");
}

#[test]
fn a_failed_write_says_nothing_was_recorded_and_keeps_the_request_open() {
    let mut s = state();
    let r = sample_request("inv-med", RiskTier::Medium);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    deliver_detail(&mut s, &fx, &r, Vec::new());
    let (tag, _) = decide_effect(&press(&mut s, "a")).unwrap();
    update(
        &mut s,
        Msg::Decided {
            tag,
            result: Err(StoreFailure {
                message: "store unavailable: database is locked".into(),
                refused: false,
            }),
        },
    );
    let m = s.message.as_ref().unwrap();
    assert_eq!(m.level, Level::Error);
    assert!(m.text.contains("NOT recorded"), "{}", m.text);
    assert!(s.detail.is_some());
    assert!(s.deciding.is_none());
    // Retrying works.
    assert!(decide_effect(&press(&mut s, "a")).is_some());
}

#[test]
fn a_lost_race_names_the_winner() {
    let mut s = state();
    let r = sample_request("inv-med", RiskTier::Medium);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    deliver_detail(&mut s, &fx, &r, Vec::new());
    let (tag, _) = decide_effect(&press(&mut s, "a")).unwrap();
    update(&mut s, Msg::Decided { tag, result: Err(StoreFailure { message: "request inv-med input 0 already decided (confirm) by bob at 2026-03-02 09:00:05 UTC".into(), refused: true }) });
    let m = s.message.as_ref().unwrap();
    assert!(m.text.contains("by bob"), "{}", m.text);
}

#[test]
fn the_same_reviewer_cannot_be_both_approvers() {
    let mut s = state();
    let r = sample_request("inv-crit", RiskTier::Critical);
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    let mine = Decision {
        request: r.id.clone(),
        input_index: 0,
        verdict: Verdict::Confirm,
        reviewer: "alice".into(),
        reason: Some("ok".into()),
        decided_at: at(5),
        dwell_ms: Some(1000),
        args_hash: r.input_hash(0).unwrap(),
    };
    deliver_detail(&mut s, &fx, &r, vec![mine]);
    let fx = press(&mut s, "a");
    assert!(decide_effect(&fx).is_none() && s.prompt.is_none());
    assert!(
        s.message
            .as_ref()
            .unwrap()
            .text
            .contains("already approved")
    );
}

#[test]
fn approve_all_takes_only_the_open_inputs() {
    let mut s = state();
    let r = multi_request(
        "inv-multi",
        &[RiskTier::Low, RiskTier::Medium, RiskTier::Low],
    );
    load_queue(&mut s, &[&r]);
    let fx = press(&mut s, "enter");
    let denied = Decision {
        request: r.id.clone(),
        input_index: 1,
        verdict: Verdict::Deny,
        reviewer: "bob".into(),
        reason: Some("no".into()),
        decided_at: at(5),
        dwell_ms: None,
        args_hash: r.input_hash(1).unwrap(),
    };
    deliver_detail(&mut s, &fx, &r, vec![denied]);
    let (_, ask) = decide_effect(&press(&mut s, "A")).expect("decides");
    let idx: Vec<usize> = ask.inputs.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, [0, 2]);
}

#[test]
fn expiry_on_tick_asks_for_a_sweep_and_panes_load_counts() {
    let mut s = state();
    let r = sample_request("inv-low", RiskTier::Low);
    load_queue(&mut s, &[&r]);
    assert!(update(&mut s, Msg::Tick(at(30))).is_empty());
    assert!(update(&mut s, Msg::Tick(r.expires_at)).contains(&Effect::ExpireDue));
    let fx = press(&mut s, "tab");
    assert_eq!(s.pane, Pane::Traces);
    assert!(fx.iter().any(|f| matches!(f, Effect::LoadCounts { .. })));
    press(&mut s, "3");
    assert_eq!(s.pane, Pane::Metrics);
    press(&mut s, "?");
    assert!(s.help);
    press(&mut s, "esc");
    assert!(!s.help);
}

/// The metrics load a press asked for: its tag, window and filter.
fn metrics_load(
    fx: &[Effect],
) -> Option<(
    u64,
    agentdeck::domain::metrics::Window,
    agentdeck::domain::metrics::Filter,
)> {
    fx.iter().find_map(|f| match f {
        Effect::LoadMetrics {
            tag,
            window,
            filter,
        } => Some((*tag, *window, filter.clone())),
        _ => None,
    })
}

fn deliver_metrics(
    s: &mut AppState,
    engine: &agentdeck::domain::metrics::Engine,
    load: (
        u64,
        agentdeck::domain::metrics::Window,
        agentdeck::domain::metrics::Filter,
    ),
) -> Vec<Effect> {
    let (tag, window, filter) = load;
    update(
        s,
        Msg::MetricsLoaded {
            tag,
            result: Ok(Box::new(agentdeck::app::msg::MetricsLoad {
                snapshot: engine.snapshot(window, &filter, at(0).timestamp_millis()),
                dimensions: engine.dimensions(),
            })),
        },
    )
}

#[test]
fn metrics_keys_switch_the_window_and_cycle_the_filters_one_load_at_a_time() {
    use agentdeck::domain::metrics::{Engine, InvocationFact, Settings, TaskEnd, Window};
    let mut engine = Engine::new(Settings::default());
    for (row, agent) in [(1, "AGENT-A"), (2, "AGENT-B")] {
        engine.add_invocation(&InvocationFact {
            row,
            request_id: format!("r{row}"),
            agent_id: agent.into(),
            agent_alias_id: "LIVE".into(),
            model: None,
            ended_ms: Some(at(0).timestamp_millis() - 1000),
            task: TaskEnd::Completed,
            latency_ms: 100,
            model_ms: 50,
            tool_ms: 0,
            human_ms: None,
            input_tokens: 1,
            output_tokens: 1,
        });
    }
    let mut s = state();
    let load = metrics_load(&press(&mut s, "3")).expect("the pane loads its metrics");
    assert_eq!(load.1, Window::H1);
    assert!(deliver_metrics(&mut s, &engine, load).is_empty());
    assert!(s.metrics.snapshot.is_some());
    assert_eq!(s.metrics.dimensions.agents, ["AGENT-A", "AGENT-B"]);

    // `w`: the next window; the old figures go until the new ones arrive.
    let load = metrics_load(&press(&mut s, "w")).expect("a load for the new window");
    assert_eq!((s.metrics.window, load.1), (Window::H24, Window::H24));
    assert!(s.metrics.snapshot.is_none());
    // `e` while that load is in flight asks for one more load after it, not a second at once.
    assert!(metrics_load(&press(&mut s, "e")).is_none());
    assert_eq!(s.metrics.filter.agent.as_deref(), Some("AGENT-A"));
    // The in-flight answer was for the unfiltered view: not shown, and the next load goes out.
    let next = metrics_load(&deliver_metrics(&mut s, &engine, load)).expect("the queued load");
    assert!(s.metrics.snapshot.is_none());
    assert_eq!(next.2.agent.as_deref(), Some("AGENT-A"));
    deliver_metrics(&mut s, &engine, next);
    let snap = s.metrics.snapshot.as_ref().unwrap();
    assert_eq!(snap.metric("invocations").unwrap().value, Some(1.0));
    // Cycling past the last agent comes back to all; Esc clears every filter.
    press(&mut s, "e");
    assert_eq!(s.metrics.filter.agent.as_deref(), Some("AGENT-B"));
    press(&mut s, "m");
    assert_eq!(
        s.metrics.filter.model, None,
        "no model seen: nothing to cycle through"
    );
    press(&mut s, "esc");
    assert!(s.metrics.filter.is_all());
}

#[test]
fn the_bedrock_figures_follow_the_metrics_window() {
    use agentdeck::app::state::BedrockView;
    use agentdeck::domain::bedrock::AliasFigures;
    use agentdeck::domain::metrics::Window;
    let asks_bedrock = |fx: &[Effect]| {
        fx.iter()
            .filter_map(|e| match e {
                Effect::LoadBedrock { window } => Some(*window),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let mut s = state();
    press(&mut s, "3");
    // No CloudWatch endpoint: the window changes, nothing is read from CloudWatch.
    assert!(asks_bedrock(&press(&mut s, "w")).is_empty());
    assert!(update(&mut s, Msg::BedrockDue).is_empty());
    assert_eq!(s.metrics.bedrock, BedrockView::NotConfigured);

    // Configured (the runtime says so when it starts the minute timer).
    s.metrics.bedrock = BedrockView::Loading;
    assert_eq!(s.metrics.window, Window::H24);
    assert_eq!(
        asks_bedrock(&update(&mut s, Msg::BedrockDue)),
        [Window::H24]
    );
    let fig = AliasFigures {
        agent_id: "A".into(),
        alias_id: "L".into(),
        invocations: 3.0,
        ..AliasFigures::default()
    };
    update(
        &mut s,
        Msg::BedrockLoaded {
            window: Window::H24,
            result: Ok(vec![fig.clone()]),
        },
    );
    assert_eq!(s.metrics.bedrock, BedrockView::Loaded(vec![fig.clone()]));
    assert_eq!(s.metrics.bedrock_window, Window::H24);
    // `w`: the figures for 24h are not shown as 7d's; a read for 7d goes out at once.
    assert_eq!(asks_bedrock(&press(&mut s, "w")), [Window::D7]);
    assert_eq!(s.metrics.bedrock, BedrockView::Loading);
    // A late answer for the old window is dropped; the one for the chosen window is shown.
    update(
        &mut s,
        Msg::BedrockLoaded {
            window: Window::H24,
            result: Ok(vec![fig.clone()]),
        },
    );
    assert_eq!(s.metrics.bedrock, BedrockView::Loading);
    update(
        &mut s,
        Msg::BedrockLoaded {
            window: Window::D7,
            result: Err("throttled".into()),
        },
    );
    assert_eq!(s.metrics.bedrock, BedrockView::Failed("throttled".into()));
    assert_eq!(s.metrics.bedrock_window, Window::D7);
    // Filters do not change what CloudWatch is asked (it has no agentdeck filters).
    assert!(asks_bedrock(&press(&mut s, "e")).is_empty());
}
