//! The CloudWatch stand-in: recording one simulated invocation's `AWS/Bedrock/Agents` metrics,
//! an exact p95 over a busy hour in the store, and a full GetMetricData round trip from the
//! real aws-sdk-cloudwatch client over loopback (CBOR both ways).
//!
//! Run: `cargo bench --bench cloudwatch` (under `cargo test` it runs a small smoke pass).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use agentdeck::cloudwatch::{self, Datum, DatumValue, Unit};
use agentdeck::sim::cw::store::{MetricKey, MetricStore, Stat, Window};
use agentdeck::sim::cw::{self as standin, Invocation, ModelCall, Outcome};
use agentdeck::sim::{SimConfig, start};
use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

const ALIAS: &str = "arn:aws:bedrock:us-east-1:123456789012:agent-alias/PAYAGENT01/PRODALIAS";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn invocation(at: DateTime<Utc>, i: u64) -> Invocation {
    Invocation {
        at,
        alias_arn: ALIAS.to_owned(),
        model_id: Some(MODEL.to_owned()),
        outcome: Outcome::Ok,
        total_ms: Some(800 + (i * 7919) % 4000),
        ttft_ms: None,
        model_calls: vec![
            ModelCall {
                latency_ms: 300 + i % 500,
                input_tokens: 1200,
                output_tokens: 80,
            };
            3
        ],
    }
}

fn benches(c: &mut Criterion) {
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    c.bench_function("standin/record_invocation", |b| {
        let mut store = MetricStore::default();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            standin::record_invocation(&mut store, &invocation(t0, i));
        });
    });

    // A busy hour: 10,000 invocations, one every 0.36 s.
    let mut store = MetricStore::default();
    for i in 0..10_000 {
        let at = t0 + chrono::Duration::milliseconds(i as i64 * 360);
        standin::record_invocation(&mut store, &invocation(at, i));
    }
    let key = MetricKey::new(
        "AWS/Bedrock/Agents",
        "TotalTime",
        vec![
            ("Operation".into(), "InvokeAgent".into()),
            ("AgentAliasArn".into(), ALIAS.into()),
            ("ModelId".into(), MODEL.into()),
        ],
    );
    let hour = Window {
        start_ms: t0.timestamp_millis(),
        end_ms: t0.timestamp_millis() + 3_600_000,
        period_ms: 3_600_000,
        now_ms: t0.timestamp_millis() + 3_600_000,
    };
    c.bench_function("standin/p95_over_10k_invocations", |b| {
        b.iter(|| black_box(store.series(&key, Stat::Percentile(95.0), &hour, None)));
    });
    c.bench_function("standin/sum_over_10k_invocations", |b| {
        b.iter(|| black_box(store.series(&key, Stat::Sum, &hour, None)));
    });

    // The real SDK client against the stand-in: one GetMetricData of p95 and Sum.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sim, client) = rt.block_on(async {
        let sim = start(SimConfig {
            time_scale: 0.0,
            ..SimConfig::builtin().unwrap()
        })
        .await
        .unwrap();
        let client = cloudwatch::loopback(&sim.endpoint());
        let now = Utc::now();
        let data = [Datum {
            name: "DecisionLatency".into(),
            unit: Unit::Milliseconds,
            value: DatumValue::Distribution {
                values: (1..=1000).map(f64::from).collect(),
                counts: vec![],
            },
            dimensions: vec![("Agent".into(), "PAYAGENT01".into())],
            timestamp: now,
        }];
        cloudwatch::publish(&client, "bench", &data).await.unwrap();
        (sim, client)
    });
    let now = Utc::now();
    let ts = |t: DateTime<Utc>| aws_smithy_types::DateTime::from_millis(t.timestamp_millis());
    c.bench_function("sdk/get_metric_data_roundtrip", |b| {
        b.iter(|| {
            rt.block_on(async {
                let metric = aws_sdk_cloudwatch::types::Metric::builder()
                    .namespace("bench")
                    .metric_name("DecisionLatency")
                    .dimensions(
                        aws_sdk_cloudwatch::types::Dimension::builder()
                            .name("Agent")
                            .value("PAYAGENT01")
                            .build(),
                    )
                    .build();
                let q = |id: &str, stat: &str| {
                    aws_sdk_cloudwatch::types::MetricDataQuery::builder()
                        .id(id)
                        .metric_stat(
                            aws_sdk_cloudwatch::types::MetricStat::builder()
                                .metric(metric.clone())
                                .period(3600)
                                .stat(stat)
                                .build(),
                        )
                        .build()
                };
                let out = client
                    .get_metric_data()
                    .metric_data_queries(q("p", "p95"))
                    .metric_data_queries(q("s", "Sum"))
                    .start_time(ts(now - chrono::Duration::minutes(30)))
                    .end_time(ts(now + chrono::Duration::minutes(30)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.metric_data_results()[0].values(), &[950.0]);
            });
        });
    });
    rt.block_on(sim.shutdown());
}

criterion_group! {
    name = group;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = benches
}
criterion_main!(group);
