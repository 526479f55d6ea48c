//! agentdeck's own figures as CloudWatch datums: what `agentdeck metrics publish` and the
//! console's timed publish send.
//!
//! One set of datums per (agent, alias) pair the engine has seen, with the dimensions
//! `AgentId` and `AgentAliasId`, and one set for every agent together with no dimensions (the
//! CloudWatch convention for an aggregate, as `AWS/Lambda` does; alarm on it without naming an
//! agent). A figure with no data in the window is left out, never sent as zero: completion
//! rate with no finished invocation, accuracy with no judged action, percentiles with no
//! sample, tokens with no invocation. Queue depth is always sent (an empty queue is a true 0).

use chrono::{DateTime, Utc};

use super::{Datum, DatumValue, Unit};
use crate::domain::metrics::{Engine, Filter, Snapshot, Window};

/// Dimension names of the per-alias datums.
pub const AGENT_DIMENSION: &str = "AgentId";
pub const ALIAS_DIMENSION: &str = "AgentAliasId";

/// (CloudWatch metric name, snapshot metric id, unit, scale).
const FIGURES: [(&str, &str, Unit, f64); 10] = [
    (
        "CompletionRate",
        "task_completion_rate",
        Unit::Percent,
        100.0,
    ),
    ("ActionAccuracy", "action_accuracy", Unit::Percent, 100.0),
    ("LatencyP50", "latency_p50", Unit::Milliseconds, 1.0),
    ("LatencyP95", "latency_p95", Unit::Milliseconds, 1.0),
    ("LatencyP99", "latency_p99", Unit::Milliseconds, 1.0),
    ("InputTokens", "tokens_in", Unit::Count, 1.0),
    ("OutputTokens", "tokens_out", Unit::Count, 1.0),
    ("QueueDepth", "queue_depth", Unit::Count, 1.0),
    (
        "TimeToDecisionP50",
        "time_to_decision_p50",
        Unit::Milliseconds,
        1.0,
    ),
    (
        "TimeToDecisionP95",
        "time_to_decision_p95",
        Unit::Milliseconds,
        1.0,
    ),
];

/// The datums of one snapshot, with `dimensions` on each.
pub fn datums_of(
    snap: &Snapshot,
    dimensions: &[(String, String)],
    at: DateTime<Utc>,
) -> Vec<Datum> {
    let invoked = snap
        .metric("invocations")
        .and_then(|m| m.value)
        .is_some_and(|n| n > 0.0);
    FIGURES
        .iter()
        .filter_map(|(name, id, unit, scale)| {
            let value = snap.metric(id)?.value?;
            if matches!(*id, "tokens_in" | "tokens_out") && !invoked {
                return None;
            }
            Some(Datum {
                name: (*name).to_owned(),
                unit: *unit,
                value: DatumValue::Single(value * scale),
                dimensions: dimensions.to_vec(),
                timestamp: at,
            })
        })
        .collect()
}

/// Every datum a publish of `window` ending at `now` sends: the all-agents set, then one set
/// per (agent, alias) pair.
pub fn datums(engine: &Engine, window: Window, now: DateTime<Utc>) -> Vec<Datum> {
    let now_ms = now.timestamp_millis();
    let mut out = datums_of(
        &engine.snapshot(window, &Filter::default(), now_ms),
        &[],
        now,
    );
    for (agent, alias) in engine.agent_aliases() {
        let filter = Filter {
            agent: Some(agent.clone()),
            alias: Some(alias.clone()),
            model: None,
        };
        let dims = [
            (AGENT_DIMENSION.to_owned(), agent),
            (ALIAS_DIMENSION.to_owned(), alias),
        ];
        out.extend(datums_of(
            &engine.snapshot(window, &filter, now_ms),
            &dims,
            now,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::metrics::{InvocationFact, Settings, TaskEnd};

    #[test]
    fn an_empty_engine_sends_only_queue_depth() {
        let mut e = Engine::new(Settings::default());
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        e.advance(now.timestamp_millis());
        let d = datums(&e, Window::H1, now);
        assert_eq!(
            d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            vec!["QueueDepth"]
        );
        assert!(d[0].dimensions.is_empty());
    }

    #[test]
    fn each_pair_gets_its_own_dimensions_and_only_real_figures() {
        let mut e = Engine::new(Settings::default());
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let now_ms = now.timestamp_millis();
        e.advance(now_ms);
        for (row, (agent, alias, task)) in [
            ("A1", "PROD", TaskEnd::Completed),
            ("A1", "PROD", TaskEnd::NotCompleted),
            ("B2", "TEST", TaskEnd::Completed),
        ]
        .into_iter()
        .enumerate()
        {
            e.add_invocation(&InvocationFact {
                row: i64::try_from(row).unwrap_or(0) + 1,
                request_id: format!("r{row}"),
                agent_id: agent.to_owned(),
                agent_alias_id: alias.to_owned(),
                model: None,
                ended_ms: Some(now_ms - 60_000),
                task,
                latency_ms: 400,
                model_ms: 300,
                tool_ms: 0,
                human_ms: None,
                input_tokens: 10,
                output_tokens: 5,
            });
        }
        let d = datums(&e, Window::H1, now);
        let find = |name: &str, agent: Option<&str>| {
            d.iter()
                .find(|x| x.name == name && x.dimensions.first().map(|(_, v)| v.as_str()) == agent)
                .map(|x| x.value.clone())
        };
        let pct = |v: f64| Some(DatumValue::Single(v));
        assert_eq!(find("CompletionRate", None), pct(2.0 / 3.0 * 100.0));
        assert_eq!(find("CompletionRate", Some("A1")), pct(50.0));
        assert_eq!(find("CompletionRate", Some("B2")), pct(100.0));
        assert_eq!(find("InputTokens", Some("A1")), pct(20.0));
        assert_eq!(find("InputTokens", None), pct(30.0));
        // No judged actions and no decisions: no accuracy, no time to decision.
        assert_eq!(find("ActionAccuracy", None), None);
        assert_eq!(find("TimeToDecisionP50", Some("A1")), None);
        assert!(find("LatencyP95", Some("B2")).is_some());
        let b2 = d
            .iter()
            .find(|x| x.dimensions.first().is_some_and(|(_, v)| v == "B2"));
        assert_eq!(
            b2.map(|x| x.dimensions.clone()),
            Some(vec![
                ("AgentId".to_owned(), "B2".to_owned()),
                ("AgentAliasId".to_owned(), "TEST".to_owned())
            ])
        );
    }
}
