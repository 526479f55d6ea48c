//! Snapshots of every pane at 80x24 and 120x40, rendered from scripted state with a fixed clock,
//! plus one colour-aware snapshot and the tiny-terminal message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agentdeck::app::keymap::{Key, Keymap};
use agentdeck::app::update::init;
use agentdeck::app::{AppState, Edit, Effect, KeyInput, Msg, update};
use agentdeck::domain::approval::ApprovalRequest;
use agentdeck::domain::decision::{Decision, Verdict};
use agentdeck::domain::policy::RiskTier;
use agentdeck::domain::status::Status;
use agentdeck::store::{QueueRow, RecentInvocation, StoreCounts, StoredRequest};
use agentdeck::ui::theme::Theme;
use common::{
    at, envelope, function_input, multi_request, request_from_doc, sample_request, t0, test_policy,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

fn key(s: &mut AppState, k: &str) -> Vec<Effect> {
    let edit = if k.chars().count() == 1 {
        k.chars().next().map(Edit::Char)
    } else if k == "enter" {
        Some(Edit::Enter)
    } else {
        None
    };
    let now = s.now;
    update(
        s,
        Msg::Key(KeyInput {
            key: k.parse().unwrap(),
            edit,
            at: now,
        }),
    )
}

fn requests() -> Vec<ApprovalRequest> {
    let hostile = request_from_doc(
        &envelope(
            "inv-hostile",
            &[function_input(
                "payments",
                "transfer",
                &[
                    ("amount", "\u{202e}00.005"),
                    ("account", "pr\u{43e}d-7\u{1b}[2J"),
                    ("memo", "ok\u{200b}"),
                ][..],
            )],
        ),
        &test_policy(),
        t0(),
    );
    let mut long = sample_request("inv-long-params", RiskTier::Medium);
    long.inputs[0].parameters[1].value =
        "Flat 4, 1 Quay Street, Dublin 2, D02 XY45, Ireland (deliver to the back door, ring twice)"
            .into();
    let mut soon = sample_request("inv-soon", RiskTier::High);
    soon.expires_at = at(75);
    vec![
        sample_request("inv-crit", RiskTier::Critical),
        soon,
        multi_request(
            "inv-multi",
            &[RiskTier::Low, RiskTier::Medium, RiskTier::Low],
        ),
        long,
        sample_request("inv-low", RiskTier::Low),
        hostile,
    ]
}

fn loaded_state(width: u16, height: u16) -> (AppState, Vec<ApprovalRequest>) {
    let mut s = AppState::new(
        Keymap::default(),
        test_policy(),
        "alice@oncall".into(),
        "sqlite:/var/lib/agentdeck/queue.db".into(),
        t0(),
    );
    update(&mut s, Msg::Resize { width, height });
    let tag = init(&mut s)
        .iter()
        .find_map(|f| {
            if let Effect::LoadQueue { tag } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    let reqs = requests();
    let rows = reqs
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
    update(&mut s, Msg::Tick(at(30)));
    (s, reqs)
}

fn open(s: &mut AppState, reqs: &[ApprovalRequest], id: &str, decisions: Vec<Decision>) {
    while s.selected_row().unwrap().id.as_str() != id {
        key(s, "j");
    }
    let fx = key(s, "enter");
    let tag = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadDetail { tag, .. } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    let r = reqs.iter().find(|r| r.id.as_str() == id).unwrap().clone();
    let status = Status::derive(&r, &decisions, &s.policy, s.now);
    update(
        s,
        Msg::DetailLoaded {
            tag,
            result: Ok(Box::new(StoredRequest {
                request: r,
                decisions,
                status,
            })),
        },
    );
}

fn draw(s: &AppState, theme: &Theme) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(s.width, s.height)).unwrap();
    t.draw(|f| {
        agentdeck::ui::render(f, s, theme);
    })
    .unwrap();
    t.backend().buffer().clone()
}

fn text(buf: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn dark() -> Theme {
    Theme::builtin("dark").unwrap()
}

fn counts() -> StoreCounts {
    StoreCounts {
        requests: 42,
        by_status: vec![
            (Status::Pending, 6),
            (Status::Approved, 30),
            (Status::Rejected, 5),
            (Status::Expired, 1),
        ],
        by_tier_open: vec![
            (RiskTier::Low, 2),
            (RiskTier::Medium, 2),
            (RiskTier::High, 1),
            (RiskTier::Critical, 1),
        ],
        sessions: 40,
        agents: vec![("AGENT01".into(), 30), ("AGENT02".into(), 12)],
        decisions: 36,
        confirms: 30,
        denies: 6,
        reviewers: vec![("alice@oncall".into(), 20), ("bob@oncall".into(), 16)],
        median_time_to_decision_ms: Some(48_200),
        audit_entries: 79,
        invocations: 57,
        invocations_by_outcome: vec![
            ("finished".into(), 44),
            ("failed".into(), 3),
            ("waiting-for-human".into(), 6),
            ("exception".into(), 4),
        ],
        trace_events: 1_204,
        trace_steps: 311,
        input_tokens: 402_113,
        output_tokens: 18_377,
        outbox_by_state: vec![("acked".into(), 29), ("pending".into(), 1)],
        recent: vec![
            RecentInvocation {
                request_id: "req-2".into(),
                agent_id: "AGENT01".into(),
                agent_alias_id: "ALIAS01".into(),
                session_id: "session-inv-crit".into(),
                started_at: at(25),
                outcome: "finished".into(),
                latency_ms: Some(3_420),
                steps: 4,
                input_tokens: 2_310,
                output_tokens: 190,
                input_text: None,
                resumes: Some("inv-crit".into()),
            },
            RecentInvocation {
                request_id: "req-1".into(),
                agent_id: "AGENT01".into(),
                agent_alias_id: "ALIAS01".into(),
                session_id: "session-inv-crit".into(),
                started_at: at(-30),
                outcome: "waiting-for-human".into(),
                latency_ms: Some(1_870),
                steps: 3,
                input_tokens: 1_950,
                output_tokens: 120,
                input_text: Some("pay 250000 to prod-7\u{1b}[2J".into()),
                resumes: None,
            },
        ],
    }
}

#[test]
fn queue_at_both_sizes() {
    for (w, h) in [(80, 24), (120, 40)] {
        let (s, _) = loaded_state(w, h);
        insta::assert_snapshot!(format!("queue_{w}x{h}"), text(&draw(&s, &dark())));
    }
}

#[test]
fn detail_at_both_sizes() {
    for (w, h) in [(80, 24), (120, 40)] {
        let (mut s, reqs) = loaded_state(w, h);
        let bob = Decision {
            request: reqs[0].id.clone(),
            input_index: 0,
            verdict: Verdict::Confirm,
            reviewer: "bob@oncall".into(),
            reason: Some("vendor verified by phone".into()),
            decided_at: at(20),
            dwell_ms: Some(9000),
            args_hash: reqs[0].input_hash(0).unwrap(),
        };
        open(&mut s, &reqs, "inv-crit", vec![bob]);
        insta::assert_snapshot!(format!("detail_critical_{w}x{h}"), text(&draw(&s, &dark())));
    }
}

#[test]
fn hostile_request_detail_shows_markers_not_escapes() {
    let (mut s, reqs) = loaded_state(120, 40);
    open(&mut s, &reqs, "inv-hostile", Vec::new());
    let screen = text(&draw(&s, &dark()));
    assert!(
        !screen.contains('\u{1b}') && !screen.contains('\u{202e}') && !screen.contains('\u{200b}')
    );
    insta::assert_snapshot!("detail_hostile_120x40", screen);
}

#[test]
fn long_values_are_wrapped_whole_in_the_detail() {
    let (mut s, reqs) = loaded_state(80, 60);
    open(&mut s, &reqs, "inv-long-params", Vec::new());
    let screen = text(&draw(&s, &dark()));
    let flat: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    for word in [
        "Flat", "Dublin", "D02", "XY45,", "Ireland", "ring", "twice)",
    ] {
        assert!(flat.contains(word), "{word} missing from\n{screen}");
    }
}

#[test]
fn prompts_help_and_other_panes() {
    let (mut s, reqs) = loaded_state(80, 24);
    open(&mut s, &reqs, "inv-crit", Vec::new());
    key(&mut s, "a");
    for c in "vendor ok".chars() {
        let now = s.now;
        update(
            &mut s,
            Msg::Key(KeyInput {
                key: Key::char(c),
                edit: Some(Edit::Char(c)),
                at: now,
            }),
        );
    }
    insta::assert_snapshot!("reason_prompt_80x24", text(&draw(&s, &dark())));

    let (mut s, _) = loaded_state(80, 24);
    key(&mut s, "?");
    insta::assert_snapshot!("help_80x24", text(&draw(&s, &dark())));

    for (w, h) in [(80, 24), (120, 40)] {
        let (mut s, _) = loaded_state(w, h);
        let fx = key(&mut s, "2");
        let tag = fx
            .iter()
            .find_map(|f| {
                if let Effect::LoadCounts { tag } = f {
                    Some(*tag)
                } else {
                    None
                }
            })
            .unwrap();
        update(
            &mut s,
            Msg::CountsLoaded {
                tag,
                result: Ok(Box::new(counts())),
            },
        );
        insta::assert_snapshot!(format!("traces_{w}x{h}"), text(&draw(&s, &dark())));
        let fx = key(&mut s, "3");
        let tag = fx
            .iter()
            .find_map(|f| {
                if let Effect::LoadCounts { tag } = f {
                    Some(*tag)
                } else {
                    None
                }
            })
            .unwrap();
        update(
            &mut s,
            Msg::CountsLoaded {
                tag,
                result: Ok(Box::new(counts())),
            },
        );
        let (tag, window, filter) = fx
            .iter()
            .find_map(|f| {
                if let Effect::LoadMetrics {
                    tag,
                    window,
                    filter,
                } = f
                {
                    Some((*tag, *window, filter.clone()))
                } else {
                    None
                }
            })
            .unwrap();
        let now_ms = s.now.timestamp_millis();
        let engine = metrics_engine(now_ms);
        update(
            &mut s,
            Msg::MetricsLoaded {
                tag,
                result: Ok(Box::new(agentdeck::app::msg::MetricsLoad {
                    snapshot: engine.snapshot(window, &filter, now_ms),
                    dimensions: engine.dimensions(),
                })),
            },
        );
        insta::assert_snapshot!(format!("metrics_{w}x{h}"), text(&draw(&s, &dark())));
    }
}

/// An engine fed a known hour: 40 calls (one in eight failed, one waited for a human), two
/// models (one unpriced), three decided requests (one a fast approval of a critical request),
/// one still open, and a mark.
fn metrics_engine(now: i64) -> agentdeck::domain::metrics::Engine {
    use agentdeck::domain::metrics::{
        DecisionFact, Engine, InvocationFact, MarkFact, RequestFact, TaskEnd,
    };
    let mut settings = agentdeck::config::Config::defaults().unwrap().metrics;
    settings
        .prices
        .remove("anthropic.claude-3-haiku-20240307-v1:0");
    let mut e = Engine::new(settings);
    e.advance(now);
    for i in 0..40i64 {
        e.add_invocation(&InvocationFact {
            row: i + 1,
            request_id: format!("req-{i}"),
            agent_id: "PAYAGENT01".into(),
            agent_alias_id: "PRODALIAS".into(),
            model: Some(if i % 4 == 0 {
                "anthropic.claude-3-haiku-20240307-v1:0".into()
            } else {
                "anthropic.claude-3-5-sonnet-20240620-v1:0".into()
            }),
            ended_ms: Some(now - 60_000 * (i % 30) - 1_000),
            task: if i % 8 == 0 {
                TaskEnd::NotCompleted
            } else {
                TaskEnd::Completed
            },
            latency_ms: 400 + 150 * (i % 20),
            model_ms: 300 + 100 * (i % 10),
            tool_ms: 50 * (i % 5),
            human_ms: (i == 7).then_some(95_000),
            input_tokens: 1_200 + i,
            output_tokens: 150,
        });
    }
    let decided = |row: i64, tier, confirm, dwell, who: &str| RequestFact {
        row,
        id: format!("roc-{row}"),
        agent_id: "PAYAGENT01".into(),
        agent_alias_id: "PRODALIAS".into(),
        action: "payments.transferFunds".into(),
        tier,
        raised_ms: now - 600_000,
        expires_ms: now + 600_000,
        status: if confirm {
            Status::Approved
        } else {
            Status::Rejected
        },
        decisions: vec![DecisionFact {
            reviewer: who.into(),
            at_ms: now - 600_000 + 30_000 * row,
            dwell_ms: Some(dwell),
            confirm,
        }],
    };
    e.add_request(&decided(1, RiskTier::Critical, true, 1_500, "alice"));
    e.add_request(&decided(2, RiskTier::Medium, true, 20_000, "bob"));
    e.add_request(&decided(3, RiskTier::High, false, 45_000, "bob"));
    let mut open = decided(4, RiskTier::High, true, 0, "nobody");
    open.status = Status::Pending;
    open.decisions.clear();
    e.add_request(&open);
    e.add_mark(&MarkFact {
        row: 1,
        request_id: "req-3".into(),
        step: 2,
        who: "eng".into(),
        at_ms: now - 120_000,
        appropriate: false,
        agent_id: "PAYAGENT01".into(),
        agent_alias_id: "PRODALIAS".into(),
        model: Some("anthropic.claude-3-5-sonnet-20240620-v1:0".into()),
    });
    e
}

#[test]
fn empty_queue_and_tiny_terminal() {
    let mut s = AppState::new(
        Keymap::default(),
        test_policy(),
        "alice".into(),
        "sqlite:x.db".into(),
        t0(),
    );
    update(
        &mut s,
        Msg::Resize {
            width: 80,
            height: 24,
        },
    );
    let tag = init(&mut s)
        .iter()
        .find_map(|f| {
            if let Effect::LoadQueue { tag } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    update(
        &mut s,
        Msg::QueueLoaded {
            tag,
            result: Ok(Vec::new()),
        },
    );
    insta::assert_snapshot!("empty_80x24", text(&draw(&s, &dark())));
    update(
        &mut s,
        Msg::Resize {
            width: 30,
            height: 8,
        },
    );
    insta::assert_snapshot!("tiny_30x8", text(&draw(&s, &dark())));
}

#[test]
fn queue_with_colour() {
    let (s, _) = loaded_state(80, 24);
    insta::assert_debug_snapshot!("queue_80x24_styled", draw(&s, &dark()));
}

#[test]
fn markers_are_styled_apart_from_text_so_a_typed_lookalike_cannot_pass_for_one() {
    let (mut s, reqs) = loaded_state(120, 40);
    open(&mut s, &reqs, "inv-hostile", Vec::new());
    let theme = dark();
    let buf = draw(&s, &theme);
    let untrusted = theme.style(agentdeck::ui::theme::Role::Untrusted);
    let mut marker_cells = 0;
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            let cell = &buf[(x, y)];
            if cell.symbol() == "⟨" || cell.symbol() == "␛" {
                assert_eq!(
                    cell.fg,
                    untrusted.fg.unwrap(),
                    "marker at {x},{y} not styled"
                );
                marker_cells += 1;
            }
        }
    }
    assert!(
        marker_cells >= 3,
        "expected marker cells, found {marker_cells}"
    );
}

fn steps_fixture() -> Vec<agentdeck::store::run::StepRow> {
    use agentdeck::domain::trace::StepFigures;
    use agentdeck::store::run::StepRow;
    let step =
        |n: u64, kinds: &str, ms: Option<i64>, tin: i64, tout: i64, rationale: Option<&str>| {
            StepRow {
                request_id: "req-1".into(),
                step: n,
                trace_id: format!("req-1-{}", n - 1),
                kinds: kinds.into(),
                events: 3,
                first_seq: n * 3 - 2,
                last_seq: n * 3,
                rationale: rationale.map(str::to_owned),
                figures: StepFigures {
                    duration_ms: ms,
                    input_tokens: tin,
                    output_tokens: tout,
                },
            }
        };
    vec![
        step(
            1,
            "modelInvocationInput,modelInvocationOutput,rationale",
            Some(1_480),
            1_950,
            120,
            Some("The user wants to pay; I need the account first.\u{1b}[2J"),
        ),
        step(2, "invocationInput,observation", Some(9_870), 0, 0, None),
        step(
            3,
            "modelInvocationInput,modelInvocationOutput",
            Some(620),
            2_310,
            190,
            Some("Done; report back."),
        ),
    ]
}

#[test]
fn traces_drill_down_at_120x40() {
    let (mut s, _) = loaded_state(120, 40);
    let fx = key(&mut s, "2");
    let tag = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadCounts { tag } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    update(
        &mut s,
        Msg::CountsLoaded {
            tag,
            result: Ok(Box::new(counts())),
        },
    );
    key(&mut s, "j");
    let fx = key(&mut s, "enter");
    let (tag, id) = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadSteps { tag, request_id } = f {
                Some((*tag, request_id.clone()))
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(id, "req-1");
    update(
        &mut s,
        Msg::StepsLoaded {
            tag,
            result: Ok(steps_fixture()),
        },
    );
    key(&mut s, "j");
    let screen = text(&draw(&s, &dark()));
    assert!(!screen.contains('\u{1b}'));
    insta::assert_snapshot!("traces_steps_120x40", screen);

    let fx = key(&mut s, "enter");
    let (tag, step) = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadStepEvents { tag, step, .. } = f {
                Some((*tag, *step))
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(step, 2);
    let raw = serde_json::json!({"agentId": "AGENT01", "sessionId": "session-inv-crit", "eventTime": "2026-03-02T09:00:01.123456789Z",
        "trace": {"orchestrationTrace": {"observation": {"traceId": "req-1-1", "type": "ACTION_GROUP",
            "actionGroupInvocationOutput": {"text": "{\"balance\": 1200}\u{202e}", "metadata": {"totalTimeMs": 9870}}}}}});
    let event = agentdeck::store::run::StoredEvent {
        request_id: "req-1".into(),
        seq: 5,
        step: 2,
        trace_id: Some("req-1-1".into()),
        kind: "orchestration/observation".into(),
        event_time: Some("2026-03-02T09:00:01.123456789Z".into()),
        summary: "ACTION_GROUP observation".into(),
        raw,
    };
    update(
        &mut s,
        Msg::StepEventsLoaded {
            tag,
            result: Ok(vec![event]),
        },
    );
    let screen = text(&draw(&s, &dark()));
    assert!(!screen.contains('\u{202e}'));
    insta::assert_snapshot!("traces_step_events_120x40", screen);

    key(&mut s, "esc");
    assert!(s.traces.turn.as_ref().unwrap().step.is_none());
    key(&mut s, "esc");
    assert!(s.traces.turn.is_none());
}
