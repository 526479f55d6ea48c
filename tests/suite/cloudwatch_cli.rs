//! `agentdeck cloudwatch read` through the binary, against the simulator's CloudWatch stand-in:
//! the figures of the turns the simulator served, as JSON and as a table; bad windows refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bin_support;
use crate::sim_support;

use bin_support::Sandbox;

/// Turns of PAYAGENT01/PRODALIAS through `agentdeck invoke`, one session each.
fn turns(sb: &Sandbox, url: &str, session: &str, texts: &[&str]) {
    for (i, text) in texts.iter().enumerate() {
        sb.run(&[
            "invoke",
            "--endpoint-url",
            url,
            "--agent-id",
            "PAYAGENT01",
            "--agent-alias-id",
            "PRODALIAS",
            "--session-id",
            &format!("{session}-{i}"),
            text,
        ])
        .code(0);
    }
}

#[test]
fn cloudwatch_read_shows_the_simulated_agents_figures() {
    let (rt, sim) = sim_support::started();
    let url = sim.endpoint();
    let sb = Sandbox::new();
    turns(&sb, &url, "cw-cli", &["hello", "pay 250 EUR to acct-7"]);
    let out = sb.run(&[
        "--cloudwatch-endpoint",
        &url,
        "cloudwatch",
        "read",
        "--window",
        "15m",
        "--json",
    ]);
    out.code(0);
    let v = out.json();
    assert_eq!(v["namespace"], "AWS/Bedrock/Agents");
    assert_eq!(v["window_secs"], 900);
    let aliases = v["aliases"].as_array().unwrap();
    assert_eq!(aliases.len(), 1, "{v}");
    let a = &aliases[0];
    assert_eq!(a["agent_id"], "PAYAGENT01");
    assert_eq!(a["alias_id"], "PRODALIAS");
    assert_eq!(a["invocations"], 2.0);
    assert!(a["input_tokens"].as_f64().unwrap() > 0.0, "{a}");
    assert!(a["total_time_p95_ms"].as_f64().unwrap() > 0.0, "{a}");

    let out = sb.run(&["--cloudwatch-endpoint", &url, "cloudwatch", "read"]);
    out.code(0)
        .out_has(&["AGENT/ALIAS", "PAYAGENT01/PRODALIAS", "TOTAL ms"]);

    sb.run(&[
        "--cloudwatch-endpoint",
        &url,
        "cloudwatch",
        "read",
        "--window",
        "10s",
    ])
    .code(2)
    .err_has(&["between 1m and 63d"]);
    rt.block_on(sim.shutdown());
}

/// (CloudWatch name, snapshot id, scale): what `agentdeck metrics publish` sends.
const PUBLISHED: [(&str, &str, f64); 10] = [
    ("CompletionRate", "task_completion_rate", 100.0),
    ("ActionAccuracy", "action_accuracy", 100.0),
    ("LatencyP50", "latency_p50", 1.0),
    ("LatencyP95", "latency_p95", 1.0),
    ("LatencyP99", "latency_p99", 1.0),
    ("InputTokens", "tokens_in", 1.0),
    ("OutputTokens", "tokens_out", 1.0),
    ("QueueDepth", "queue_depth", 1.0),
    ("TimeToDecisionP50", "time_to_decision_p50", 1.0),
    ("TimeToDecisionP95", "time_to_decision_p95", 1.0),
];

fn cli_value(v: &serde_json::Value, id: &str) -> Option<f64> {
    v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v}"))["value"]
        .as_f64()
}

/// What CloudWatch holds for `name` with these dimensions over the last half hour (Average).
fn read_back(
    rt: &tokio::runtime::Runtime,
    client: &aws_sdk_cloudwatch::Client,
    name: &str,
    dims: &[(&str, &str)],
) -> Vec<f64> {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let now = chrono::Utc::now().timestamp_millis();
    let metric = Metric::builder()
        .namespace("team-a/agents")
        .metric_name(name)
        .set_dimensions(Some(
            dims.iter()
                .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
                .collect(),
        ))
        .build();
    let out = rt
        .block_on(
            client
                .get_metric_data()
                .metric_data_queries(
                    MetricDataQuery::builder()
                        .id("q")
                        .metric_stat(
                            MetricStat::builder()
                                .metric(metric)
                                .period(3600)
                                .stat("Average")
                                .build(),
                        )
                        .build(),
                )
                .start_time(aws_smithy_types::DateTime::from_millis(now - 1_800_000))
                .end_time(aws_smithy_types::DateTime::from_millis(now + 60_000))
                .send(),
        )
        .unwrap();
    out.metric_data_results()[0].values().to_vec()
}

#[test]
fn metrics_publish_puts_the_cli_figures_into_cloudwatch() {
    let (rt, sim) = sim_support::started();
    let url = sim.endpoint();
    let sb = Sandbox::new();
    turns(
        &sb,
        &url,
        "cw-pub",
        &["hello", "pay 250 EUR to acct-7", "hello again"],
    );
    let snap = sb.run(&["metrics", "--json"]).code(0).json();
    let out = sb.run(&[
        "--cloudwatch-endpoint",
        &url,
        "metrics",
        "publish",
        "--namespace",
        "team-a/agents",
        "--json",
    ]);
    out.code(0);
    let sent = out.json();
    assert_eq!(sent["namespace"], "team-a/agents");
    // The figures with data, twice: every agent (no dimensions) and PAYAGENT01/PRODALIAS.
    let present: Vec<_> = PUBLISHED
        .iter()
        .filter(|(_, id, _)| cli_value(&snap, id).is_some())
        .collect();
    assert!(present.len() >= 6, "{snap}");
    assert_eq!(sent["report"]["datums"], 2 * present.len(), "{sent}");
    assert_eq!(sent["report"]["calls"], 1);

    let client = agentdeck::cloudwatch::loopback(&url);
    let pair = [("AgentId", "PAYAGENT01"), ("AgentAliasId", "PRODALIAS")];
    for (name, id, scale) in PUBLISHED {
        for dims in [&[][..], &pair[..]] {
            let got = read_back(&rt, &client, name, dims);
            match cli_value(&snap, id) {
                Some(v) => {
                    assert_eq!(got.len(), 1, "{name} {dims:?}: {got:?}");
                    assert!(
                        (got[0] - v * scale).abs() < 1e-6,
                        "{name} {dims:?}: CloudWatch {} but agentdeck {}",
                        got[0],
                        v * scale
                    );
                }
                // No data, nothing sent: no invented zero.
                None => assert!(got.is_empty(), "{name} {dims:?}: {got:?}"),
            }
        }
    }

    let human = sb.run(&[
        "--cloudwatch-endpoint",
        &url,
        "metrics",
        "publish",
        "--namespace",
        "team-a/agents",
    ]);
    human.code(0).out_has(&[
        &format!("published {} datums", 2 * present.len()),
        "team-a/agents",
        "1 PutMetricData call",
    ]);
    sb.run(&[
        "--cloudwatch-endpoint",
        &url,
        "metrics",
        "publish",
        "--namespace",
        "AWS/Mine",
    ])
    .code(2)
    .err_has(&["AWS/", "reserved"]);
    rt.block_on(sim.shutdown());
}

/// The console's timed publish, one round: the engine refreshed from the store, the datums sent
/// to the stand-in; an empty store sends only the queue depth (a true 0), nothing invented.
#[test]
fn the_consoles_timed_publish_sends_what_the_store_holds() {
    use std::sync::{Arc, Mutex};
    let (rt, sim) = sim_support::started();
    let url = sim.endpoint();
    let sb = Sandbox::new();
    sb.run(&["init"]).code(0);
    let store = agentdeck::store::sqlite::SqliteStore::open(&sb.db).unwrap();
    let feed = agentdeck::runtime::MetricsFeed {
        store: Arc::new(store),
        engine: Arc::new(Mutex::new(agentdeck::domain::metrics::Engine::new(
            agentdeck::config::Config::defaults().unwrap().metrics,
        ))),
        publish: None,
        cloudwatch_in: None,
    };
    let p = agentdeck::runtime::TimedPublish {
        endpoint: Some(url.clone()),
        namespace: "team-a/agents".to_owned(),
        window: agentdeck::domain::metrics::Window::H1,
        every: std::time::Duration::from_secs(60),
    };
    let report = rt
        .block_on(agentdeck::runtime::publish_once(&feed, &p))
        .unwrap();
    assert_eq!((report.datums, report.calls), (1, 1));
    let client = agentdeck::cloudwatch::loopback(&url);
    assert_eq!(read_back(&rt, &client, "QueueDepth", &[]), vec![0.0]);
    assert!(read_back(&rt, &client, "CompletionRate", &[]).is_empty());
    let bad = agentdeck::runtime::TimedPublish {
        namespace: "AWS/Nope".to_owned(),
        ..p
    };
    let e = rt
        .block_on(agentdeck::runtime::publish_once(&feed, &bad))
        .unwrap_err();
    assert!(e.contains("reserved"), "{e}");
    rt.block_on(sim.shutdown());
}
