//! Snapshots of every pane at 80x24 and 120x40, rendered from scripted state with a fixed clock,
//! plus one colour-aware snapshot and the tiny-terminal message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

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
    // The help is longer than 24 rows: it scrolls to its end, and no further.
    let top = text(&draw(&s, &dark()));
    for _ in 0..100 {
        key(&mut s, "j");
    }
    let bottom = text(&draw(&s, &dark()));
    assert_ne!(top, bottom);
    assert!(bottom.contains("quit"), "{bottom}");
    key(&mut s, "k");
    assert_ne!(
        text(&draw(&s, &dark())),
        bottom,
        "k scrolls back from the end at once"
    );
    insta::assert_snapshot!("help_80x24_end", bottom);

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
        feed_index(&mut s, &fx, index_page());
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
        if w >= 120 {
            // Bedrock's CloudWatch figures beside ours; a hostile alias id is sanitised.
            let shown = s.metrics.window;
            update(
                &mut s,
                Msg::BedrockLoaded {
                    window: shown,
                    result: Ok(vec![
                        agentdeck::domain::bedrock::AliasFigures {
                            agent_id: "PAYAGENT01".to_owned(),
                            alias_id: "PRODALIAS".to_owned(),
                            invocations: 40.0,
                            total_time_avg_ms: Some(812.4),
                            total_time_p95_ms: Some(2210.0),
                            input_tokens: 51_200.0,
                            output_tokens: 9_800.0,
                            client_errors: 2.0,
                            server_errors: 3.0,
                            throttles: 1.0,
                            ..Default::default()
                        },
                        agentdeck::domain::bedrock::AliasFigures {
                            agent_id: "KBAGENT003".to_owned(),
                            alias_id: "LIVE\u{1b}[31m".to_owned(),
                            invocations: 0.0,
                            ..Default::default()
                        },
                    ]),
                },
            );
            insta::assert_snapshot!(format!("metrics_bedrock_{w}x{h}"), text(&draw(&s, &dark())));
            update(
                &mut s,
                Msg::BedrockLoaded {
                    window: shown,
                    result: Err("cannot reach CloudWatch for ListMetrics".to_owned()),
                },
            );
            assert!(text(&draw(&s, &dark())).contains("Bedrock (CloudWatch): ✗ cannot reach"));
        }
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

fn invocation(
    id: &str,
    session: &str,
    started: i64,
    outcome: agentdeck::store::run::Outcome,
    steps: u64,
    tokens: (i64, i64),
) -> agentdeck::store::run::InvocationRecord {
    use agentdeck::store::run::{InvocationRecord, InvocationStart};
    InvocationRecord {
        start: InvocationStart {
            request_id: id.into(),
            agent_id: "AGENT01".into(),
            agent_alias_id: "ALIAS01".into(),
            session_id: session.into(),
            input_text: Some("pay 250000 to prod-7".into()),
            resumes: None,
            started_at: at(started),
        },
        outcome,
        ended_at: Some(at(started + 5)),
        error: None,
        final_response: None,
        latency_ms: Some(4_200),
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        events: steps * 3,
        steps,
        chunks: 1,
    }
}

/// Two sessions: req-1 (waiting for a human after a return of control), req-2 (a supervisor
/// calling a collaborator whose steps nest under the call, then the final response), and
/// req-3 in another session, failed.
fn index_page() -> agentdeck::store::run::IndexPage {
    use agentdeck::domain::step_kind::StepKinds as K;
    use agentdeck::domain::trace::StepFigures;
    use agentdeck::store::run::{IndexCursor, IndexPage, IndexedStep, Outcome};
    let base = at(0).timestamp_nanos_opt().unwrap();
    let step =
        |req: &str, n: u64, kinds: K, depth: u8, start_ms: i64, ms: i64, tin: i64| IndexedStep {
            request_id: req.into(),
            step: n,
            kinds,
            depth,
            figures: StepFigures {
                duration_ms: Some(ms),
                input_tokens: tin,
                output_tokens: tin / 10,
            },
            start_ns: Some(base + start_ms * 1_000_000),
        };
    let model = K::MODEL_INPUT.with(K::MODEL_OUTPUT).with(K::RATIONALE);
    IndexPage {
        invocations: vec![
            invocation(
                "req-1",
                "session-inv-crit",
                0,
                Outcome::WaitingForHuman,
                3,
                (1_950, 120),
            ),
            invocation(
                "req-2",
                "session-inv-crit",
                30,
                Outcome::Finished,
                5,
                (2_310, 190),
            ),
            invocation("req-3", "session-other", 60, Outcome::Failed, 2, (800, 20)),
        ],
        steps: vec![
            step("req-1", 1, model, 0, 0, 1_480, 1_950),
            step("req-1", 2, K::ACTION_GROUP, 0, 1_500, 9_870, 0),
            step(
                "req-1",
                3,
                model.with(K::ACTION_GROUP).with(K::RETURN_CONTROL),
                0,
                11_400,
                620,
                400,
            ),
            step(
                "req-2",
                1,
                model.with(K::COLLABORATOR),
                0,
                30_000,
                900,
                1_000,
            ),
            step(
                "req-2",
                2,
                K::MODEL_INPUT.with(K::MODEL_OUTPUT).with(K::KNOWLEDGE_BASE),
                1,
                30_900,
                2_000,
                700,
            ),
            step(
                "req-2",
                3,
                K::GUARDRAIL.with(K::INTERVENED),
                1,
                32_900,
                150,
                0,
            ),
            step("req-2", 4, K::COLLABORATOR, 0, 33_050, 100, 0),
            step("req-2", 5, model.with(K::FINAL), 0, 33_150, 700, 610),
            step("req-3", 1, model, 0, 60_000, 400, 800),
            step("req-3", 2, K::FAILURE, 0, 60_400, 10, 0),
        ],
        cursor: IndexCursor {
            events: 30,
            invocations: 3,
        },
        more: false,
    }
}

/// Answers the index read among `fx` with `page`; returns the effects that follow.
fn feed_index(
    s: &mut AppState,
    fx: &[Effect],
    page: agentdeck::store::run::IndexPage,
) -> Vec<Effect> {
    let tag = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadTraceIndex { tag, .. } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .expect("an index read");
    update(
        s,
        Msg::TraceIndexLoaded {
            tag,
            result: Ok(Box::new(page)),
        },
    )
}

fn traces_state(w: u16, h: u16) -> AppState {
    let (mut s, _) = loaded_state(w, h);
    let fx = key(&mut s, "2");
    feed_index(&mut s, &fx, index_page());
    s
}

#[test]
fn traces_drill_down_at_120x40() {
    let mut s = traces_state(120, 40);
    // Most recently active first: session-other, then session-inv-crit.
    key(&mut s, "j");
    key(&mut s, "enter");
    insta::assert_snapshot!("traces_invocations_120x40", text(&draw(&s, &dark())));
    let fx = key(&mut s, "enter");
    let (tag, id, after) = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadSteps {
                tag,
                request_id,
                after,
                ..
            } = f
            {
                Some((*tag, request_id.clone(), *after))
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!((id.as_str(), after), ("req-1", 0));
    update(
        &mut s,
        Msg::StepsLoaded {
            tag,
            result: Ok(steps_fixture()),
        },
    );
    key(&mut s, "j");
    assert_eq!(s.traces.selected_step(), Some(("req-1", 2, None)));
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
    assert_eq!(
        s.traces.selected_step(),
        Some(("req-1", 2, Some("req-1-1")))
    );
    let screen = text(&draw(&s, &dark()));
    assert!(!screen.contains('\u{202e}'));
    insta::assert_snapshot!("traces_step_events_120x40", screen);

    key(&mut s, "esc");
    assert!(s.traces.turn.as_ref().unwrap().step.is_none());
    key(&mut s, "esc");
    assert!(s.traces.turn.is_none());
    key(&mut s, "esc");
    assert!(s.traces.session.is_none());
}

#[test]
fn collaborator_steps_nest_under_the_call_at_120x40() {
    let mut s = traces_state(120, 40);
    key(&mut s, "j");
    key(&mut s, "enter");
    key(&mut s, "j");
    key(&mut s, "enter");
    assert_eq!(s.traces.turn.as_ref().unwrap().request_id, "req-2");
    let screen = text(&draw(&s, &dark()));
    // The collaborator's steps (depth 1) are indented under the supervisor's call.
    let line = |needle: &str| {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not on screen:\n{screen}"))
            .to_owned()
    };
    let call = line("prompt,model,rationale,collab");
    let nested = line("  guardrail,intervened");
    let column = |l: &str, w: &str| l[..l.find(w).unwrap()].chars().count();
    assert_eq!(column(&call, "prompt") + 2, column(&nested, "guardrail"));
    insta::assert_snapshot!("traces_collaborator_steps_120x40", screen);
}

/// A page holding one new running invocation and no steps.
fn running_page(
    id: &str,
    session: &str,
    secs: i64,
    cursor: u64,
) -> agentdeck::store::run::IndexPage {
    let mut page = index_page();
    page.invocations = vec![invocation(
        id,
        session,
        secs,
        agentdeck::store::run::Outcome::Running,
        0,
        (0, 0),
    )];
    page.steps.clear();
    page.cursor.invocations = cursor;
    page
}

#[test]
fn follow_mode_tails_the_latest_invocation() {
    let mut s = traces_state(120, 40);
    key(&mut s, "f");
    assert!(s.traces.follow);
    let turn = s.traces.turn.as_ref().unwrap();
    assert_eq!(turn.request_id, "req-3");
    assert_eq!(turn.selected, 1);
    // A new step of the live invocation arrives: it is selected, on screen, at once.
    let fx = key(&mut s, "f");
    assert!(!s.traces.follow);
    assert!(fx.is_empty());
    key(&mut s, "f");
    let mut page = running_page("req-4", "session-other", 90, 4);
    page.steps = index_page().steps[..1].to_vec();
    page.steps[0].request_id = "req-4".into();
    page.cursor.events = 31;
    let fx = update(&mut s, Msg::StoreChanged);
    feed_index(&mut s, &fx, page);
    let turn = s.traces.turn.as_ref().unwrap();
    assert_eq!(turn.request_id, "req-4");
    assert_eq!(turn.selected, 0);
    assert!(text(&draw(&s, &dark())).contains("Invocation req-4"));
    // The running invocation is refreshed on the next read.
    let fx = update(&mut s, Msg::StoreChanged);
    assert!(fx.iter().any(|f| matches!(f, Effect::LoadTraceIndex { refresh, .. } if refresh == &vec!["req-4".to_owned()])));
    // A newer invocation of another session starts: follow stays on the one still running.
    feed_index(&mut s, &fx, running_page("req-5", "session-third", 95, 5));
    assert_eq!(s.traces.turn.as_ref().unwrap().request_id, "req-4");
    // Moving up by hand stops following.
    key(&mut s, "k");
    assert!(!s.traces.follow);
    // A failed read (the one in flight) is shown in the pane, not as the store's error.
    let tag = s.traces.index_tag;
    update(
        &mut s,
        Msg::TraceIndexLoaded {
            tag,
            result: Err("store unavailable: disk I/O error".into()),
        },
    );
    assert!(text(&draw(&s, &dark())).contains("✗ store unavailable: disk I/O error"));
    assert!(s.store_error.is_none());
}

fn filter(s: &mut AppState, line: &str) -> Vec<Effect> {
    key(s, "/");
    for c in line.chars() {
        let now = s.now;
        update(
            s,
            Msg::Key(KeyInput {
                key: Key::char(c),
                edit: Some(Edit::Char(c)),
                at: now,
            }),
        );
    }
    key(s, "enter")
}

#[test]
fn filters_find_steps_by_kind_failure_and_waiting() {
    let mut s = traces_state(120, 40);
    assert!(filter(&mut s, "kind:kb").is_empty());
    let steps = |s: &AppState| -> Vec<(String, u32)> {
        let ix = &s.traces.index;
        s.traces
            .results
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| {
                let inv = &ix.invocations[ix.steps.invocation[*p as usize] as usize];
                (
                    ix.names.name(inv.request).to_owned(),
                    ix.steps.number[*p as usize],
                )
            })
            .collect()
    };
    assert_eq!(steps(&s), vec![("req-2".to_owned(), 2)]);
    key(&mut s, "esc");
    assert!(s.traces.results.is_none());
    filter(&mut s, "failed");
    assert_eq!(steps(&s), vec![("req-3".to_owned(), 2)]);
    insta::assert_snapshot!("traces_filter_failed_120x40", text(&draw(&s, &dark())));
    key(&mut s, "esc");
    filter(&mut s, "waiting kind:return-control");
    assert_eq!(steps(&s), vec![("req-1".to_owned(), 3)]);
    key(&mut s, "esc");
    filter(&mut s, "session:other");
    assert_eq!(
        steps(&s),
        vec![("req-3".to_owned(), 1), ("req-3".to_owned(), 2)]
    );
    // Enter opens the found step in its invocation; Esc comes back to the results.
    key(&mut s, "j");
    key(&mut s, "enter");
    let turn = s.traces.turn.as_ref().unwrap();
    assert_eq!((turn.request_id.as_str(), turn.selected), ("req-3", 1));
    key(&mut s, "esc");
    assert!(s.traces.results.is_some());
    // A bad kind is refused, naming the kinds there are; the line stays for fixing.
    key(&mut s, "esc");
    filter(&mut s, "kind:nope");
    assert!(s.traces.filter_editing);
    let m = s.message.as_ref().unwrap();
    assert!(
        m.text.contains("\"nope\"") && m.text.contains("knowledge-base"),
        "{}",
        m.text
    );
}

#[test]
fn search_results_pass_through_the_filters() {
    let mut s = traces_state(120, 40);
    let fx = filter(&mut s, "session:crit balance");
    let (tag, text) = fx
        .iter()
        .find_map(|f| {
            if let Effect::SearchTraces { tag, text } = f {
                Some((*tag, text.clone()))
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(text, "balance");
    assert!(s.traces.searching);
    update(
        &mut s,
        Msg::TraceSearchDone {
            tag,
            result: Ok(vec![
                ("req-1".into(), 2),
                ("req-3".into(), 1),
                ("req-x".into(), 9),
            ]),
        },
    );
    // req-3 is in another session; req-x is not indexed.
    assert_eq!(s.traces.results.as_deref(), Some(&[1u32][..]));
    assert!(!s.traces.searching);
}

/// Opens step `n` of the open invocation and answers its events with `raws`.
fn show_events(s: &mut AppState, request: &str, n: u64, raws: &[serde_json::Value]) {
    let fx = key(s, "enter");
    let tag = fx
        .iter()
        .find_map(|f| {
            if let Effect::LoadStepEvents { tag, .. } = f {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    let events = raws
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let e = agentdeck::domain::trace::TraceEvent::from_wire(raw.clone());
            agentdeck::store::run::StoredEvent {
                request_id: request.into(),
                seq: i as u64 + 1,
                step: n,
                trace_id: e.trace_id().map(str::to_owned),
                kind: e.kind_name().into_owned(),
                event_time: Some("2026-03-02T09:00:01.5Z".into()),
                summary: e.summary(),
                raw: raw.clone(),
            }
        })
        .collect();
    update(
        s,
        Msg::StepEventsLoaded {
            tag,
            result: Ok(events),
        },
    );
}

fn part(trace: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"agentId": "AGENT01", "agentAliasId": "ALIAS01", "sessionId": "session-inv-crit",
        "eventTime": "2026-03-02T09:00:01.5Z", "trace": trace})
}

/// Every kind of step shows its readable text in full (wrapped, sanitised), then its raw JSON.
#[test]
fn step_detail_of_every_kind_at_100x40() {
    use serde_json::json;
    let long_prompt = "You are a payments agent. Never move money without an approval. \
        The customer account is prod-7; the ledger is authoritative; \u{1b}[2J amounts are in EUR. "
        .repeat(3);
    let kinds: Vec<(&str, Vec<serde_json::Value>)> = vec![
        (
            "model_input",
            vec![part(
                &json!({"orchestrationTrace": {"modelInvocationInput": {
            "traceId": "req-1-0", "text": long_prompt, "type": "ORCHESTRATION",
            "foundationModel": "anthropic.claude-3-5-sonnet"}}}),
            )],
        ),
        (
            "model_output",
            vec![
                part(&json!({"orchestrationTrace": {"modelInvocationOutput": {
            "traceId": "req-1-0", "rawResponse": {"content": "<thinking>I need the balance first.</thinking>"},
            "metadata": {"usage": {"inputTokens": 1950, "outputTokens": 120}}}}})),
                part(
                    &json!({"orchestrationTrace": {"rationale": {"traceId": "req-1-0",
            "text": "The user wants to pay; I need the account balance first."}}}),
                ),
            ],
        ),
        (
            "action_group_return_control",
            vec![part(&json!({"orchestrationTrace": {"invocationInput": {
            "traceId": "req-1-1", "invocationType": "ACTION_GROUP",
            "actionGroupInvocationInput": {"actionGroupName": "payments", "function": "transfer",
                "executionType": "RETURN_CONTROL", "invocationId": "inv-crit",
                "parameters": [{"name": "amount", "type": "number", "value": "250000"}]}}}}))],
        ),
        (
            "knowledge_base",
            vec![
                part(&json!({"orchestrationTrace": {"invocationInput": {
            "traceId": "req-1-2", "invocationType": "KNOWLEDGE_BASE",
            "knowledgeBaseLookupInput": {"text": "travel policy", "knowledgeBaseId": "KB1"}}}})),
                part(
                    &json!({"orchestrationTrace": {"observation": {"traceId": "req-1-2", "type": "KNOWLEDGE_BASE",
            "knowledgeBaseLookupOutput": {"retrievedReferences": [{"content": {"text": "Economy class for flights under 6 hours."},
                "location": {"type": "S3", "s3Location": {"uri": "s3://policies/travel.pdf"}}}]}}}}),
                ),
            ],
        ),
        (
            "code_interpreter",
            vec![
                part(&json!({"orchestrationTrace": {"invocationInput": {
            "traceId": "req-1-3", "invocationType": "ACTION_GROUP_CODE_INTERPRETER",
            "codeInterpreterInvocationInput": {"code": "print(sum([1, 2, 3]))"}}}})),
                part(
                    &json!({"orchestrationTrace": {"observation": {"traceId": "req-1-3", "type": "ACTION_GROUP_CODE_INTERPRETER",
            "codeInterpreterInvocationOutput": {"executionOutput": "6"}}}}),
                ),
            ],
        ),
        (
            "collaborator",
            vec![
                part(&json!({"orchestrationTrace": {"invocationInput": {
            "traceId": "req-1-4", "invocationType": "AGENT_COLLABORATOR",
            "agentCollaboratorInvocationInput": {"agentCollaboratorName": "fx-rates",
                "input": {"text": "EUR to USD today?"}}}}})),
                part(
                    &json!({"orchestrationTrace": {"observation": {"traceId": "req-1-4", "type": "AGENT_COLLABORATOR",
            "agentCollaboratorInvocationOutput": {"agentCollaboratorName": "fx-rates",
                "output": {"text": "1.08"}}}}}),
                ),
            ],
        ),
        (
            "guardrail",
            vec![part(
                &json!({"guardrailTrace": {"traceId": "req-1-guardrail-pre-0",
            "action": "INTERVENED", "inputAssessments": [{"topicPolicy": {"topics": [
                {"name": "Politics", "type": "DENY", "action": "BLOCKED"}]}}]}}),
            )],
        ),
        (
            "failure",
            vec![part(&json!({"failureTrace": {"traceId": "req-1-5",
            "failureReason": "The model timed out after 60 s.", "failureCode": 500}}))],
        ),
        (
            "final_response",
            vec![part(
                &json!({"orchestrationTrace": {"observation": {"traceId": "req-1-6",
            "type": "FINISH", "finalResponse": {"text": "Done: 250.00 EUR sent to prod-7.",
            "metadata": {"operationTotalTimeMs": 4200}}}}}),
            )],
        ),
    ];
    for (name, raws) in kinds {
        let mut s = traces_state(100, 40);
        key(&mut s, "j");
        key(&mut s, "enter");
        key(&mut s, "enter");
        show_events(&mut s, "req-1", 1, &raws);
        let screen = text(&draw(&s, &dark()));
        assert!(!screen.contains('\u{1b}'), "{name}");
        insta::assert_snapshot!(format!("traces_step_kind_{name}"), screen);
    }
}

#[test]
fn jump_from_a_request_to_the_step_that_raised_it_and_back() {
    let mut s = traces_state(120, 40);
    key(&mut s, "1");
    // From the approvals queue, the selected request (inv-crit is first).
    let fx = key(&mut s, "J");
    let (tag, id) = fx
        .iter()
        .find_map(|f| {
            if let Effect::FindRaisingStep { tag, id } = f {
                Some((*tag, id.clone()))
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(id.as_str(), "inv-crit");
    let fx = update(
        &mut s,
        Msg::RaisingStepFound {
            tag,
            id: id.clone(),
            result: Ok(Some(("req-1".into(), Some(3)))),
        },
    );
    assert_eq!(s.pane, agentdeck::app::state::Pane::Traces);
    let turn = s.traces.turn.as_ref().unwrap();
    assert_eq!((turn.request_id.as_str(), turn.selected), ("req-1", 2));
    assert_eq!(turn.step.as_ref().unwrap().step, 3);
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::LoadStepEvents { step: 3, .. }))
    );
    // And back: the request opens in full.
    let fx = key(&mut s, "J");
    assert_eq!(s.pane, agentdeck::app::state::Pane::Approvals);
    assert_eq!(s.detail.as_ref().unwrap().id, id);
    assert!(fx.iter().any(|f| matches!(f, Effect::LoadDetail { .. })));

    // A request the runner did not raise says so and stays put.
    let fx = key(&mut s, "J");
    let tag = fx
        .iter()
        .find_map(|f| match f {
            Effect::FindRaisingStep { tag, .. } => Some(*tag),
            _ => None,
        })
        .unwrap();
    update(
        &mut s,
        Msg::RaisingStepFound {
            tag,
            id,
            result: Ok(None),
        },
    );
    assert_eq!(s.pane, agentdeck::app::state::Pane::Approvals);
    assert!(
        s.message
            .as_ref()
            .unwrap()
            .text
            .contains("not raised by the agentdeck runner")
    );

    // From a step that returned control, J opens the request it raised.
    let mut s = traces_state(120, 40);
    key(&mut s, "j");
    key(&mut s, "enter");
    key(&mut s, "enter");
    key(&mut s, "j");
    key(&mut s, "j");
    show_events(
        &mut s,
        "req-1",
        3,
        &[part(
            &serde_json::json!({"orchestrationTrace": {"invocationInput": {
            "traceId": "req-1-2", "invocationType": "ACTION_GROUP",
            "actionGroupInvocationInput": {"actionGroupName": "payments", "function": "transfer",
                "executionType": "RETURN_CONTROL", "invocationId": "inv-crit"}}}}),
        )],
    );
    key(&mut s, "J");
    assert_eq!(s.detail.as_ref().unwrap().id.as_str(), "inv-crit");
}

#[test]
fn marking_an_executed_action_step_asks_the_store_and_says_what_happened() {
    let mut s = traces_state(120, 40);
    key(&mut s, "j");
    key(&mut s, "enter");
    key(&mut s, "enter");
    key(&mut s, "j");
    key(&mut s, "j");
    // Step 3 called the payments action group: `+` judges it appropriate.
    let fx = key(&mut s, "+");
    let mark = fx
        .iter()
        .find_map(|f| match f {
            Effect::MarkStep {
                request_id,
                step,
                appropriate,
                who,
                ..
            } => Some((request_id.clone(), *step, *appropriate, who.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(mark.0, "req-1");
    assert_eq!((mark.1, mark.2), (3, true));
    assert_eq!(mark.3, s.reviewer);
    let fx = key(&mut s, "-");
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::MarkStep {
            step: 3,
            appropriate: false,
            ..
        }
    )));
    update(
        &mut s,
        Msg::Marked {
            result: Err("store unavailable".into()),
        },
    );
    let m = s.message.as_ref().unwrap();
    assert!(m.text.contains("mark NOT recorded") && m.text.contains("store unavailable"));
    // Step 1 ran no action: nothing to judge, and the console says so.
    key(&mut s, "k");
    key(&mut s, "k");
    let fx = key(&mut s, "+");
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::MarkStep { .. })),
        "{fx:?}"
    );
    assert!(
        s.message
            .as_ref()
            .unwrap()
            .text
            .contains("only an executed action can be marked")
    );
}
