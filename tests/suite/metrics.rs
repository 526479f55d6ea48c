//! The metrics maths with known answers: empty, one sample, ties, nearest rank, HDR precision,
//! window edges, in-flight and handed-on calls, the human side, marks, filters, prices and
//! objectives.
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

use agentdeck::domain::metrics::{
    DecisionFact, Engine, Filter, HOUR_MS, InvocationFact, MINUTE_MS, MarkFact, Objective, Price,
    RequestFact, Settings, Snapshot, TaskEnd, Window, cycle,
};
use agentdeck::domain::policy::RiskTier;
use agentdeck::domain::status::Status;

/// 2026-11-25 10:30:30 UTC.
const NOW: i64 = 1_795_602_630_000;

fn value(s: &Snapshot, id: &str) -> Option<f64> {
    s.metric(id)
        .unwrap_or_else(|| panic!("no metric {id}"))
        .value
}

fn missing(s: &Snapshot, id: &str) -> String {
    s.metric(id).unwrap().missing.clone().unwrap_or_default()
}

fn inv(row: i64, at: i64, task: TaskEnd, latency: i64) -> InvocationFact {
    InvocationFact {
        row,
        request_id: format!("req-{row}"),
        agent_id: "AGENT1".into(),
        agent_alias_id: "ALIAS1".into(),
        model: Some("model-a".into()),
        ended_ms: Some(at),
        task,
        latency_ms: latency,
        model_ms: latency / 2,
        tool_ms: latency / 4,
        human_ms: None,
        input_tokens: 100,
        output_tokens: 10,
    }
}

fn request(row: i64, tier: RiskTier, raised: i64, status: Status) -> RequestFact {
    RequestFact {
        row,
        id: format!("roc-{row}"),
        agent_id: "AGENT1".into(),
        agent_alias_id: "ALIAS1".into(),
        action: "payments.transfer".into(),
        tier,
        raised_ms: raised,
        expires_ms: raised + 600_000,
        status,
        decisions: Vec::new(),
    }
}

fn decision(who: &str, at: i64, dwell: i64, confirm: bool) -> DecisionFact {
    DecisionFact {
        reviewer: who.into(),
        at_ms: at,
        dwell_ms: Some(dwell),
        confirm,
    }
}

fn engine() -> Engine {
    let mut e = Engine::new(Settings {
        rubber_stamp_tier: Some(RiskTier::High),
        rubber_stamp_ms: 5_000,
        ..Settings::default()
    });
    e.advance(NOW);
    e
}

fn all(e: &Engine, w: Window) -> Snapshot {
    e.snapshot(w, &Filter::default(), NOW)
}

#[test]
fn empty_store_has_no_invented_numbers() {
    let s = all(&engine(), Window::H1);
    assert_eq!(value(&s, "task_completion_rate"), None);
    assert_eq!(
        missing(&s, "task_completion_rate"),
        "no finished invocations"
    );
    assert_eq!(value(&s, "action_accuracy"), None);
    assert_eq!(value(&s, "latency_p50"), None);
    assert_eq!(value(&s, "human_wait_p99"), None);
    assert_eq!(value(&s, "time_to_decision_p50"), None);
    assert_eq!(value(&s, "cost"), None);
    assert_eq!(missing(&s, "cost"), "no settled invocations");
    assert_eq!(value(&s, "tokens_in_per_invocation"), None);
    // Counts of nothing are zero, and say so.
    assert_eq!(value(&s, "queue_depth"), Some(0.0));
    assert_eq!(value(&s, "invocations"), Some(0.0));
    assert_eq!(value(&s, "expired_undecided"), Some(0.0));
    assert!(s.latency_histogram.iter().all(|b| b.count == 0));
    assert_eq!(s.metric("latency_p50").unwrap().trend, vec![None; 60]);
    assert!(s.models.is_empty() && s.actions.is_empty() && s.reviewers.is_empty());
}

#[test]
fn one_sample_is_every_percentile() {
    let mut e = engine();
    let mut f = inv(1, NOW - 1000, TaskEnd::Completed, 120);
    f.human_ms = Some(40);
    e.add_invocation(&f);
    let s = all(&e, Window::M15);
    // End to end is the call plus the wait for the human.
    for p in ["p50", "p95", "p99"] {
        assert_eq!(value(&s, &format!("latency_{p}")), Some(160.0), "{p}");
        assert_eq!(value(&s, &format!("model_time_{p}")), Some(60.0));
        assert_eq!(value(&s, &format!("tool_time_{p}")), Some(30.0));
        assert_eq!(value(&s, &format!("human_wait_{p}")), Some(40.0));
    }
    assert_eq!(value(&s, "task_completion_rate"), Some(1.0));
    assert_eq!(value(&s, "tokens_in"), Some(100.0));
    assert_eq!(value(&s, "tokens_out_per_invocation"), Some(10.0));
    // The histogram puts it in the 100..250 ms bar.
    assert_eq!(s.latency_histogram[1].up_to_ms, Some(250));
    assert_eq!(s.latency_histogram[1].count, 1);
    assert_eq!(s.latency_histogram.iter().map(|b| b.count).sum::<u64>(), 1);
}

#[test]
fn ties_and_nearest_rank() {
    let mut e = engine();
    for (i, ms) in [100, 100, 100, 200].into_iter().enumerate() {
        let task = if i == 3 {
            TaskEnd::NotCompleted
        } else {
            TaskEnd::Completed
        };
        e.add_invocation(&inv(i as i64 + 1, NOW - 5000, task, ms));
    }
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "latency_p50"), Some(100.0));
    assert_eq!(value(&s, "latency_p95"), Some(200.0));
    assert_eq!(value(&s, "latency_p99"), Some(200.0));
    assert_eq!(value(&s, "task_completion_rate"), Some(0.75));

    let mut e = engine();
    for v in 1..=100 {
        e.add_invocation(&inv(v, NOW - 5000, TaskEnd::Completed, v));
    }
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "latency_p50"), Some(50.0));
    assert_eq!(value(&s, "latency_p95"), Some(95.0));
    assert_eq!(value(&s, "latency_p99"), Some(99.0));
}

#[test]
fn large_values_are_within_one_percent() {
    let mut e = engine();
    let values: Vec<i64> = (0..1000).map(|i| 10_000 + i * 137).collect();
    for (i, v) in values.iter().enumerate() {
        e.add_invocation(&inv(i as i64 + 1, NOW - 5000, TaskEnd::Completed, *v));
    }
    let s = all(&e, Window::H1);
    let mut sorted = values.clone();
    sorted.sort_unstable();
    for (id, q) in [
        ("latency_p50", 0.5),
        ("latency_p95", 0.95),
        ("latency_p99", 0.99),
    ] {
        let rank = ((q * 1000.0_f64).ceil() as usize).max(1);
        let exact = sorted[rank - 1] as f64;
        let got = value(&s, id).unwrap();
        assert!(
            (got - exact).abs() <= exact * 0.01,
            "{id}: {got} vs exact {exact}"
        );
    }
}

#[test]
fn window_edges() {
    let mut e = engine();
    // The 15 m window is the minute holding now and the 14 before it: from 10:16:00.000.
    let start = Window::M15.start_ms(NOW);
    assert_eq!(start, NOW - 30_000 - 14 * MINUTE_MS);
    e.add_invocation(&inv(1, start - 1, TaskEnd::NotCompleted, 10));
    e.add_invocation(&inv(2, start, TaskEnd::Completed, 20));
    e.add_invocation(&inv(3, NOW, TaskEnd::Completed, 30));
    let s = all(&e, Window::M15);
    assert_eq!(value(&s, "invocations"), Some(2.0));
    assert_eq!(value(&s, "task_completion_rate"), Some(1.0));
    let trend = &s.metric("invocations").unwrap().trend;
    assert_eq!(trend.len(), 15);
    assert_eq!(trend[0], Some(1.0));
    assert_eq!(trend[14], Some(1.0));
    // The hour window holds all three.
    assert_eq!(value(&all(&e, Window::H1), "invocations"), Some(3.0));
    // 24 h: the current hour and the 23 before it.
    let day = Window::H24.start_ms(NOW);
    assert_eq!(day, NOW - 30 * MINUTE_MS - 30_000 - 23 * HOUR_MS);
    e.add_invocation(&inv(4, day - 1, TaskEnd::Completed, 10));
    e.add_invocation(&inv(5, day, TaskEnd::Completed, 10));
    assert_eq!(value(&all(&e, Window::H24), "invocations"), Some(4.0));
    assert_eq!(value(&all(&e, Window::D7), "invocations"), Some(5.0));
    // Older than a week is gone, even from the longest window.
    e.add_invocation(&inv(6, NOW - 8 * 24 * HOUR_MS, TaskEnd::Completed, 10));
    assert_eq!(value(&all(&e, Window::D7), "invocations"), Some(5.0));
}

#[test]
fn in_flight_calls_wait_and_handed_on_calls_do_not_count_twice() {
    let mut e = engine();
    let mut running = inv(1, NOW, TaskEnd::InFlight, 0);
    running.ended_ms = None;
    e.add_invocation(&running);
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "in_flight"), Some(1.0));
    assert_eq!(value(&s, "task_completion_rate"), None);
    assert_eq!(e.in_flight_ids(), vec!["req-1".to_owned()]);
    // It returned control and was resumed: its latency counts, its task goes on elsewhere.
    e.add_invocation(&inv(1, NOW - 100, TaskEnd::HandedOn, 150));
    e.add_invocation(&inv(2, NOW - 50, TaskEnd::Completed, 240));
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "in_flight"), Some(0.0));
    assert!(e.in_flight_ids().is_empty());
    assert_eq!(value(&s, "task_completion_rate"), Some(1.0));
    assert_eq!(value(&s, "invocations"), Some(2.0));
    assert_eq!(value(&s, "latency_p50"), Some(150.0));
}

#[test]
fn the_human_side() {
    let mut e = engine();
    let t0 = NOW - 20 * MINUTE_MS;
    // Open: in the queue.
    let mut open = request(1, RiskTier::High, t0, Status::Pending);
    open.expires_ms = NOW + 60_000;
    e.add_request(&open);
    assert_eq!(value(&all(&e, Window::H1), "queue_depth"), Some(1.0));
    // Decided two minutes later by ana after 2 s of dwell: a fast approval of a high-risk
    // request.
    let mut r1 = request(1, RiskTier::High, t0, Status::Approved);
    r1.decisions
        .push(decision("ana", t0 + 2 * MINUTE_MS, 2_000, true));
    e.add_request(&r1);
    // Low risk, approved fast: not flagged. Then denied one by bo after 30 s.
    let mut r2 = request(2, RiskTier::Low, t0, Status::Approved);
    r2.decisions
        .push(decision("ana", t0 + 4 * MINUTE_MS, 1_000, true));
    e.add_request(&r2);
    let mut r3 = request(3, RiskTier::Critical, t0, Status::Rejected);
    r3.decisions
        .push(decision("bo", t0 + 6 * MINUTE_MS, 30_000, false));
    e.add_request(&r3);
    // Expired undecided.
    let mut r4 = request(4, RiskTier::Medium, t0 - 9 * MINUTE_MS, Status::Expired);
    r4.expires_ms = t0 + MINUTE_MS;
    e.add_request(&r4);
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "queue_depth"), Some(0.0));
    assert_eq!(value(&s, "expired_undecided"), Some(1.0));
    // Waits of 2, 4 and 6 minutes: the median is 4 minutes and P95 6 minutes, within 1%.
    let p50 = value(&s, "time_to_decision_p50").unwrap();
    assert!((p50 - 240_000.0).abs() <= 2_400.0, "{p50}");
    let p95 = value(&s, "time_to_decision_p95").unwrap();
    assert!((p95 - 360_000.0).abs() <= 3_600.0, "{p95}");
    assert_eq!(value(&s, "approval_rate"), Some(2.0 / 3.0));
    assert_eq!(value(&s, "action_accuracy"), Some(2.0 / 3.0));
    assert_eq!(s.actions.len(), 1);
    assert_eq!((s.actions[0].confirms, s.actions[0].decisions), (2, 3));
    let ana = s.reviewers.iter().find(|r| r.reviewer == "ana").unwrap();
    assert_eq!(ana.decisions, 2);
    let dwell = ana.median_dwell_ms.unwrap();
    assert!((dwell - 1_000.0).abs() <= 10.0, "{dwell}");
    assert_eq!(value(&s, "rubber_stamps"), Some(1.0));
    assert_eq!(s.rubber_stamps[0].request, "roc-1");
    assert_eq!(s.rubber_stamps[0].dwell_ms, 2_000);
    // Depth at each minute's end, worked back from now: four raised (one 29 minutes ago),
    // one expiring at minute -19, then one leaving every two minutes.
    let depth = &s.metric("queue_depth").unwrap().trend;
    let at = |ago: i64| depth[(59 - ago) as usize];
    assert_eq!(at(30), Some(0.0));
    assert_eq!(at(29), Some(1.0));
    assert_eq!(at(20), Some(4.0));
    assert_eq!(at(19), Some(3.0));
    assert_eq!(at(18), Some(2.0));
    assert_eq!(at(16), Some(1.0));
    assert_eq!(at(14), Some(0.0));
    assert_eq!(at(0), Some(0.0));
}

#[test]
fn marks_count_as_judgements_and_a_later_mark_replaces() {
    let mut e = engine();
    let mark = |row, appropriate, who: &str| MarkFact {
        row,
        request_id: "req-1".into(),
        step: 2,
        who: who.into(),
        at_ms: NOW - 1000 + row,
        appropriate,
        agent_id: "AGENT1".into(),
        agent_alias_id: "ALIAS1".into(),
        model: Some("model-a".into()),
    };
    e.add_mark(&mark(1, false, "eng"));
    e.add_mark(&mark(2, true, "other"));
    assert_eq!(value(&all(&e, Window::H1), "action_accuracy"), Some(0.5));
    e.add_mark(&mark(3, true, "eng"));
    assert_eq!(value(&all(&e, Window::H1), "action_accuracy"), Some(1.0));
    assert_eq!(e.cursor().marks, 3);
}

#[test]
fn filters_by_agent_alias_and_model() {
    let mut e = engine();
    e.add_invocation(&inv(1, NOW - 10, TaskEnd::Completed, 100));
    let mut b = inv(2, NOW - 10, TaskEnd::NotCompleted, 200);
    b.agent_id = "AGENT2".into();
    b.model = Some("model-b".into());
    e.add_invocation(&b);
    let mut r = request(1, RiskTier::Low, NOW - 5000, Status::Approved);
    r.decisions.push(decision("ana", NOW - 1000, 100, true));
    e.add_request(&r);
    let f = |agent: Option<&str>, model: Option<&str>| Filter {
        agent: agent.map(Into::into),
        alias: None,
        model: model.map(Into::into),
    };
    let s = e.snapshot(Window::H1, &f(Some("AGENT2"), None), NOW);
    assert_eq!(value(&s, "task_completion_rate"), Some(0.0));
    assert_eq!(value(&s, "approval_rate"), None);
    let s = e.snapshot(Window::H1, &f(Some("AGENT1"), None), NOW);
    assert_eq!(value(&s, "task_completion_rate"), Some(1.0));
    assert_eq!(value(&s, "approval_rate"), Some(1.0));
    // Requests carry no model: a model filter leaves the human side out.
    let s = e.snapshot(Window::H1, &f(None, Some("model-a")), NOW);
    assert_eq!(value(&s, "invocations"), Some(1.0));
    assert_eq!(value(&s, "approval_rate"), None);
    let d = e.dimensions();
    assert_eq!(d.agents, vec!["AGENT1", "AGENT2"]);
    assert_eq!(d.models, vec!["model-a", "model-b"]);
    assert_eq!(cycle(None, &d.agents), Some("AGENT1".into()));
    assert_eq!(
        cycle(Some(&"AGENT1".into()), &d.agents),
        Some("AGENT2".into())
    );
    assert_eq!(cycle(Some(&"AGENT2".into()), &d.agents), None);
}

#[test]
fn cost_from_the_price_table_and_no_price_for_unknown_models() {
    let mut settings = Settings::default();
    settings.prices.insert(
        "model-a".into(),
        Price {
            input_per_1k: 3.0,
            output_per_1k: 15.0,
        },
    );
    let mut e = Engine::new(settings);
    e.advance(NOW);
    e.add_invocation(&inv(1, NOW - 10, TaskEnd::Completed, 100));
    let s = all(&e, Window::H1);
    // 100 tokens in at $3/1k and 10 out at $15/1k.
    assert!((value(&s, "cost").unwrap() - 0.45).abs() < 1e-9);
    let mut b = inv(2, NOW - 10, TaskEnd::Completed, 100);
    b.model = Some("model-z".into());
    e.add_invocation(&b);
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "cost"), None);
    assert_eq!(missing(&s, "cost"), "no price for model-z");
    let z = s
        .models
        .iter()
        .find(|m| m.model.as_deref() == Some("model-z"))
        .unwrap();
    assert_eq!(z.cost_usd, None);
    let a = s
        .models
        .iter()
        .find(|m| m.model.as_deref() == Some("model-a"))
        .unwrap();
    assert!((a.cost_usd.unwrap() - 0.45).abs() < 1e-9);
}

#[test]
fn objectives_mark_breaches() {
    let mut settings = Settings::default();
    settings
        .objectives
        .insert("task_completion_rate".into(), Objective::AtLeast(0.9));
    settings
        .objectives
        .insert("latency_p95".into(), Objective::AtMost(150.0));
    let mut e = Engine::new(settings);
    e.advance(NOW);
    let s = all(&e, Window::H1);
    assert!(
        !s.metric("task_completion_rate").unwrap().breached,
        "no data is no breach"
    );
    e.add_invocation(&inv(1, NOW - 10, TaskEnd::Completed, 100));
    let s = all(&e, Window::H1);
    assert!(!s.metric("task_completion_rate").unwrap().breached);
    assert!(!s.metric("latency_p95").unwrap().breached);
    e.add_invocation(&inv(2, NOW - 10, TaskEnd::NotCompleted, 400));
    let s = all(&e, Window::H1);
    assert!(s.metric("task_completion_rate").unwrap().breached);
    assert!(s.metric("latency_p95").unwrap().breached);
    assert!(
        !s.metric("latency_p50").unwrap().breached,
        "no objective, no breach"
    );
}

#[test]
fn config_objectives_prices_and_the_rubber_stamp_rule_are_checked() {
    use agentdeck::config::Config;
    let c = Config::defaults().unwrap().metrics;
    assert_eq!(c.rubber_stamp_tier, Some(RiskTier::High));
    assert_eq!(c.rubber_stamp_ms, 5_000);
    assert_eq!(
        c.objectives.get("task_completion_rate"),
        Some(&Objective::AtLeast(0.9))
    );
    assert!(
        c.prices
            .contains_key("anthropic.claude-3-5-sonnet-20240620-v1:0")
    );
    let c = Config::from_toml(
        "mine.toml",
        "[metrics]\nrubber_stamp_secs = 2.5\n[metrics.objectives]\nlatency_p99 = { max = 100 }\n\
         [prices.\"my-model\"]\ninput_per_1k = 1\noutput_per_1k = 2\n",
    )
    .unwrap()
    .metrics;
    assert_eq!(c.rubber_stamp_ms, 2_500);
    assert_eq!(
        c.objectives.get("latency_p99"),
        Some(&Objective::AtMost(100.0))
    );
    assert!(
        c.prices.contains_key("my-model"),
        "merged over the defaults"
    );
    assert!(c.objectives.contains_key("task_completion_rate"));
    for (text, needle) in [
        (
            "[metrics.objectives]\nlatency_p42 = { max = 1 }\n",
            "metrics.objectives.latency_p42: no such metric",
        ),
        (
            "[metrics.objectives]\nlatency_p95 = { min = 1, max = 2 }\n",
            "exactly one finite `min` or `max`",
        ),
        (
            "[metrics]\nrubber_stamp_secs = -1\n",
            "rubber_stamp_secs = -1",
        ),
        (
            "[prices.\"m\"]\ninput_per_1k = -1\noutput_per_1k = 0\n",
            "prices.\"m\"",
        ),
        ("[prices.\"m\"]\ninput_per_1k = 1\n", "output_per_1k"),
        ("[metrics]\nwindow = \"1h\"\n", "unknown field `window`"),
    ] {
        let e = Config::from_toml("mine.toml", text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mine.toml") && e.contains(needle), "{e}");
    }
}

#[test]
fn facts_delivered_again_within_the_overlap_count_once() {
    // A store whose reads start 10 s before the newest time delivered (DynamoDB's watermark).
    let mut e = engine();
    e.set_overlap(10_000);
    let a = inv(NOW - 5_000, NOW - 5_000, TaskEnd::Completed, 100);
    e.add_invocation(&a);
    e.add_invocation(&a);
    let mut r = RequestFact {
        decisions: vec![decision("bob", NOW - 4_000, 2_000, true)],
        ..request(NOW - 4_000, RiskTier::Low, NOW - 60_000, Status::Approved)
    };
    e.add_request(&r);
    e.add_request(&r);
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "invocations"), Some(1.0));
    assert_eq!(value(&s, "approval_rate"), Some(1.0));
    assert_eq!(s.actions[0].decisions, 1);
    assert_eq!(e.remembered(), 2);
    // Once the watermark is more than the overlap past them, no read delivers them again and
    // they are forgotten.
    e.add_invocation(&inv(NOW + 20_000, NOW + 20_000, TaskEnd::Completed, 100));
    r.row = NOW + 20_000;
    r.id = "req-later".into();
    e.add_request(&r);
    e.forget_settled();
    assert_eq!(e.remembered(), 2, "only the two newest are remembered");
    // A store whose rows only grow remembers nothing.
    e.set_overlap(0);
    assert_eq!(e.remembered(), 0);
}

#[test]
fn a_mark_delivered_again_or_an_older_one_changes_nothing() {
    let mut e = engine();
    let m = |at: i64, ok: bool| MarkFact {
        row: at,
        request_id: "req-1".into(),
        step: 1,
        who: "dana".into(),
        at_ms: at,
        appropriate: ok,
        agent_id: "AGENT1".into(),
        agent_alias_id: "ALIAS1".into(),
        model: None,
    };
    e.add_mark(&m(NOW - 2_000, false));
    e.add_mark(&m(NOW - 1_000, true));
    e.add_mark(&m(NOW - 2_000, false));
    e.add_mark(&m(NOW - 1_000, true));
    let s = all(&e, Window::H1);
    assert_eq!(value(&s, "action_accuracy"), Some(1.0));
}
