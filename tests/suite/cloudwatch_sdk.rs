//! The real `aws-sdk-cloudwatch` client (RPC v2 CBOR) against the simulator's CloudWatch stand-in
//! over loopback: discover (ListMetrics, paged), read (GetMetricData with known percentiles,
//! paged), publish (PutMetricData, batched), read back, the API's limits as AWS-shaped errors, and
//! the `AWS/Bedrock/Agents` metrics the simulated agents publish for the calls they serve.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::many_single_char_names
)]

use std::time::Duration;

use agentdeck::cloudwatch::{self, Datum, DatumValue, Unit};
use agentdeck::sim::{Faults, SimConfig, SimHandle, start};
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, ScanBy, StatusCode,
};
use chrono::{DateTime, Utc};

async fn sim_with(faults: Faults) -> SimHandle {
    start(SimConfig {
        time_scale: 0.0,
        faults,
        ..SimConfig::builtin().unwrap()
    })
    .await
    .unwrap()
}

/// A plain SDK client with retries off, so errors come back as sent.
fn raw(h: &SimHandle) -> Client {
    let conf = aws_sdk_cloudwatch::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(h.endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

fn ts(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

fn dim(n: &str, v: &str) -> Dimension {
    Dimension::builder().name(n).value(v).build()
}

fn query(
    id: &str,
    ns: &str,
    name: &str,
    dims: &[(&str, &str)],
    period: i32,
    stat: &str,
) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(ns)
        .metric_name(name)
        .set_dimensions(Some(dims.iter().map(|(n, v)| dim(n, v)).collect()))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

fn latency_datum(now: DateTime<Utc>) -> Datum {
    Datum {
        name: "DecisionLatency".into(),
        unit: Unit::Milliseconds,
        // 1..=100 in scrambled order, each once.
        value: DatumValue::Distribution {
            values: (0..100).map(|i| f64::from((i * 37) % 100 + 1)).collect(),
            counts: Vec::new(),
        },
        dimensions: vec![
            ("Agent".into(), "PAYAGENT01".into()),
            ("Alias".into(), "PRODALIAS".into()),
        ],
        timestamp: now,
    }
}

#[tokio::test]
async fn publish_then_read_back_with_exact_statistics() {
    let h = sim_with(Faults::default()).await;
    let client = cloudwatch::loopback(&h.endpoint());
    let now = Utc::now();
    let report = cloudwatch::publish(&client, "agentdeck/test", &[latency_datum(now)])
        .await
        .unwrap();
    assert_eq!((report.calls, report.datums), (1, 1));

    let found = cloudwatch::discover(&client, "agentdeck/test", None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "DecisionLatency");
    assert_eq!(
        found[0].dimensions,
        vec![
            ("Agent".to_owned(), "PAYAGENT01".to_owned()),
            ("Alias".to_owned(), "PRODALIAS".to_owned())
        ]
    );

    let dims = [("Agent", "PAYAGENT01"), ("Alias", "PRODALIAS")];
    let stats = [
        "p95",
        "p50",
        "p99.5",
        "Sum",
        "SampleCount",
        "Average",
        "Minimum",
        "Maximum",
    ];
    let out = raw(&h)
        .get_metric_data()
        .set_metric_data_queries(Some(
            stats
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    query(
                        &format!("q{i}"),
                        "agentdeck/test",
                        "DecisionLatency",
                        &dims,
                        3600,
                        s,
                    )
                })
                .collect(),
        ))
        .start_time(ts(now - chrono::Duration::minutes(30)))
        .end_time(ts(now + chrono::Duration::minutes(30)))
        .send()
        .await
        .unwrap();
    let got: Vec<f64> = out
        .metric_data_results()
        .iter()
        .map(|r| {
            assert_eq!(r.status_code(), Some(&StatusCode::Complete));
            assert_eq!(r.values().len(), 1, "{:?}", r.id());
            r.values()[0]
        })
        .collect();
    assert_eq!(
        got,
        vec![95.0, 50.0, 100.0, 5050.0, 100.0, 50.5, 1.0, 100.0]
    );
    assert_eq!(
        out.metric_data_results()[0].label(),
        Some("DecisionLatency")
    );
    // Another dimension set is another metric: nothing there.
    let none = raw(&h)
        .get_metric_data()
        .metric_data_queries(query(
            "x",
            "agentdeck/test",
            "DecisionLatency",
            &dims[..1],
            60,
            "Sum",
        ))
        .start_time(ts(now - chrono::Duration::minutes(30)))
        .end_time(ts(now + chrono::Duration::minutes(30)))
        .send()
        .await
        .unwrap();
    assert!(none.metric_data_results()[0].values().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn get_metric_data_pages_by_max_datapoints_in_scan_order() {
    let h = sim_with(Faults::default()).await;
    let client = raw(&h);
    let base = Utc::now() - chrono::Duration::hours(1);
    let base = base - chrono::Duration::seconds(base.timestamp() % 60);
    let data: Vec<MetricDatum> = (0..10)
        .map(|i| {
            MetricDatum::builder()
                .metric_name("Depth")
                .value(f64::from(i))
                .timestamp(ts(base + chrono::Duration::minutes(i64::from(i))))
                .build()
        })
        .collect();
    client
        .put_metric_data()
        .namespace("pg")
        .set_metric_data(Some(data))
        .send()
        .await
        .unwrap();
    let req = || {
        client
            .get_metric_data()
            .metric_data_queries(query("depth", "pg", "Depth", &[], 60, "Maximum"))
            .metric_data_queries(query("count", "pg", "Depth", &[], 60, "SampleCount"))
            .start_time(ts(base))
            .end_time(ts(base + chrono::Duration::minutes(10)))
            .max_datapoints(4)
    };
    let first = req().send().await.unwrap();
    let r = &first.metric_data_results()[0];
    assert_eq!(r.values(), &[9.0, 8.0, 7.0, 6.0], "descending by default");
    assert_eq!(r.status_code(), Some(&StatusCode::PartialData));
    assert!(first.next_token().is_some());

    let mut pages = req()
        .scan_by(ScanBy::TimestampAscending)
        .into_paginator()
        .send();
    let (mut depth, mut count, mut n) = (Vec::new(), Vec::new(), 0);
    while let Some(page) = pages.next().await {
        n += 1;
        for r in page.unwrap().metric_data_results() {
            match r.id() {
                Some("depth") => depth.extend_from_slice(r.values()),
                _ => count.extend_from_slice(r.values()),
            }
        }
    }
    assert_eq!(n, 5, "20 datapoints, 4 a page");
    assert_eq!(depth, (0..10).map(f64::from).collect::<Vec<_>>());
    assert_eq!(count, vec![1.0; 10]);

    let e = client
        .get_metric_data()
        .metric_data_queries(query("depth", "pg", "Depth", &[], 60, "Sum"))
        .start_time(ts(base))
        .end_time(ts(base + chrono::Duration::minutes(10)))
        .next_token("forged")
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error().unwrap().is_invalid_next_token(),
        "{e:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn discover_follows_pages_and_publish_batches_within_limits() {
    let h = sim_with(Faults::default()).await;
    let client = cloudwatch::loopback(&h.endpoint());
    let now = Utc::now();
    // 1,200 metrics: two PutMetricData calls (1,000 datums at most), three ListMetrics pages.
    let many: Vec<Datum> = (0..1200)
        .map(|i| Datum {
            name: format!("m{i:04}"),
            unit: Unit::Count,
            value: DatumValue::Single(1.0),
            dimensions: vec![],
            timestamp: now,
        })
        .collect();
    let r = cloudwatch::publish(&client, "many", &many).await.unwrap();
    assert_eq!((r.calls, r.datums), (2, 1200));
    let found = cloudwatch::discover(&client, "many", None).await.unwrap();
    assert_eq!(found.len(), 1200);
    assert_eq!(found[1199].name, "m1199");
    let page = raw(&h)
        .list_metrics()
        .namespace("many")
        .send()
        .await
        .unwrap();
    assert_eq!(page.metrics().len(), 500);
    assert!(page.next_token().is_some());

    // 60 datums of 30 dimensions of 1,000 characters: ~1.9 MB in all, so more than one call,
    // each under the 1 MB the stand-in enforces on the inflated body.
    let wide: Vec<Datum> = (0..60)
        .map(|i| Datum {
            name: format!("w{i}"),
            unit: Unit::Count,
            value: DatumValue::Single(2.0),
            dimensions: (0..30)
                .map(|d| (format!("D{d}"), format!("{i}-{}", "v".repeat(990))))
                .collect(),
            timestamp: now,
        })
        .collect();
    let r = cloudwatch::publish(&client, "wide", &wide).await.unwrap();
    assert!(r.calls >= 2, "{r:?}");
    assert_eq!(
        cloudwatch::discover(&client, "wide", None)
            .await
            .unwrap()
            .len(),
        60
    );

    // A distribution of 400 values goes as three datums; the percentiles see all of them.
    let d = Datum {
        name: "lat".into(),
        unit: Unit::Milliseconds,
        value: DatumValue::Distribution {
            values: (1..=400).map(f64::from).collect(),
            counts: vec![],
        },
        dimensions: vec![],
        timestamp: now,
    };
    let r = cloudwatch::publish(&client, "dist", &[d]).await.unwrap();
    assert_eq!((r.calls, r.datums), (1, 3));
    let out = raw(&h)
        .get_metric_data()
        .metric_data_queries(query("p", "dist", "lat", &[], 3600, "p95"))
        .metric_data_queries(query("n", "dist", "lat", &[], 3600, "SampleCount"))
        .start_time(ts(now - chrono::Duration::minutes(30)))
        .end_time(ts(now + chrono::Duration::minutes(30)))
        .send()
        .await
        .unwrap();
    let v: Vec<f64> = out
        .metric_data_results()
        .iter()
        .map(|r| r.values()[0])
        .collect();
    assert_eq!(v, vec![380.0, 400.0]);
    h.shutdown().await;
}

#[tokio::test]
async fn limits_are_refused_with_aws_shaped_errors_and_nothing_stored() {
    let h = sim_with(Faults::default()).await;
    let client = raw(&h);
    let ok = || MetricDatum::builder().metric_name("x").value(1.0).build();
    let put = |ns: &str, data: Vec<MetricDatum>| {
        client
            .put_metric_data()
            .namespace(ns)
            .set_metric_data(Some(data))
            .send()
    };

    let e = put("lim", (0..1001).map(|_| ok()).collect())
        .await
        .unwrap_err();
    let s = e.as_service_error().unwrap();
    assert!(s.is_invalid_parameter_value_exception(), "{e:?}");
    assert!(s.message().unwrap().contains("1000"), "{:?}", s.message());

    let wide = MetricDatum::builder()
        .metric_name("x")
        .value(1.0)
        .set_dimensions(Some((0..31).map(|i| dim(&format!("d{i}"), "v")).collect()))
        .build();
    let e = put("lim", vec![ok(), wide]).await.unwrap_err();
    let s = e.as_service_error().unwrap();
    assert!(s.is_invalid_parameter_value_exception(), "{e:?}");
    assert!(
        s.message()
            .unwrap()
            .contains("MetricData.member.2.Dimensions"),
        "{:?}",
        s.message()
    );

    for bad in [f64::NAN, f64::INFINITY, 2f64.powi(361)] {
        let e = put(
            "lim",
            vec![MetricDatum::builder().metric_name("x").value(bad).build()],
        )
        .await
        .unwrap_err();
        assert!(
            e.as_service_error()
                .unwrap()
                .is_invalid_parameter_value_exception(),
            "{bad}: {e:?}"
        );
    }
    let both = MetricDatum::builder()
        .metric_name("x")
        .value(1.0)
        .values(2.0)
        .build();
    let e = put("lim", vec![both]).await.unwrap_err();
    assert!(
        e.as_service_error()
            .unwrap()
            .is_invalid_parameter_combination_exception(),
        "{e:?}"
    );
    let uneven = MetricDatum::builder()
        .metric_name("x")
        .values(1.0)
        .values(2.0)
        .counts(1.0)
        .build();
    let e = put("lim", vec![uneven]).await.unwrap_err();
    assert!(
        e.as_service_error()
            .unwrap()
            .is_invalid_parameter_value_exception(),
        "{e:?}"
    );
    let old = MetricDatum::builder()
        .metric_name("x")
        .value(1.0)
        .timestamp(ts(Utc::now() - chrono::Duration::days(15)))
        .build();
    let e = put("lim", vec![old]).await.unwrap_err();
    assert!(
        e.as_service_error()
            .unwrap()
            .message()
            .unwrap()
            .contains("two weeks"),
        "{e:?}"
    );
    let e = put("AWS/Bedrock/Agents", vec![ok()]).await.unwrap_err();
    assert!(
        e.as_service_error()
            .unwrap()
            .is_invalid_parameter_value_exception(),
        "{e:?}"
    );
    let e = client
        .put_metric_data()
        .namespace("lim")
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error()
            .unwrap()
            .is_missing_required_parameter_exception(),
        "{e:?}"
    );

    // More than 1 MB (the SDK gzips it; the stand-in measures it inflated).
    let big: Vec<MetricDatum> = (0..40)
        .map(|i| {
            MetricDatum::builder()
                .metric_name(format!("b{i}"))
                .value(1.0)
                .set_dimensions(Some(
                    (0..30)
                        .map(|d| dim(&format!("d{d}"), &"v".repeat(1024)))
                        .collect(),
                ))
                .build()
        })
        .collect();
    let e = put("lim", big).await.unwrap_err();
    assert_eq!(e.code(), Some("RequestEntityTooLarge"), "{e:?}");

    // Metric math is refused, and said so.
    let e = client
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("m")
                .expression("SUM(METRICS())")
                .build(),
        )
        .start_time(ts(Utc::now() - chrono::Duration::hours(1)))
        .end_time(ts(Utc::now()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameterValue"));
    assert!(e.message().unwrap().contains("metric math"), "{e:?}");
    let e = client
        .get_metric_data()
        .metric_data_queries(query("Bad", "lim", "x", &[], 60, "Sum"))
        .start_time(ts(Utc::now() - chrono::Duration::hours(1)))
        .end_time(ts(Utc::now()))
        .send()
        .await
        .unwrap_err();
    assert!(e.message().unwrap().contains("lowercase"), "{e:?}");
    let e = client
        .get_metric_data()
        .metric_data_queries(query("q", "lim", "x", &[], 45, "Sum"))
        .start_time(ts(Utc::now() - chrono::Duration::hours(1)))
        .end_time(ts(Utc::now()))
        .send()
        .await
        .unwrap_err();
    assert!(e.message().unwrap().contains("multiple of 60"), "{e:?}");

    // Every rejected call stored nothing.
    let listed = client.list_metrics().namespace("lim").send().await.unwrap();
    assert!(listed.metrics().is_empty(), "{:?}", listed.metrics());
    h.shutdown().await;
}

fn bedrock(h: &SimHandle) -> aws_sdk_bedrockagentruntime::Client {
    let conf = aws_sdk_bedrockagentruntime::config::Builder::new()
        .behavior_version(aws_sdk_bedrockagentruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockagentruntime::config::Region::new(
            "us-east-1",
        ))
        .credentials_provider(aws_sdk_bedrockagentruntime::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .endpoint_url(h.endpoint())
        .retry_config(aws_sdk_bedrockagentruntime::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_bedrockagentruntime::Client::from_conf(conf)
}

/// Input and output tokens the traces report (modelInvocationOutput metadata usage).
fn usage(trace: &aws_sdk_bedrockagentruntime::types::Trace) -> (i32, i32) {
    use aws_sdk_bedrockagentruntime::types::{
        OrchestrationTrace, PostProcessingTrace, PreProcessingTrace, Trace,
    };
    let meta = match trace {
        Trace::OrchestrationTrace(OrchestrationTrace::ModelInvocationOutput(o)) => o.metadata(),
        Trace::PreProcessingTrace(PreProcessingTrace::ModelInvocationOutput(o)) => o.metadata(),
        Trace::PostProcessingTrace(PostProcessingTrace::ModelInvocationOutput(o)) => o.metadata(),
        _ => None,
    };
    meta.and_then(|m| m.usage()).map_or((0, 0), |u| {
        (
            u.input_tokens().unwrap_or(0),
            u.output_tokens().unwrap_or(0),
        )
    })
}

/// Runs one turn with traces on (`stream`: the final answer streamed); the tokens its traces
/// report.
async fn turn(
    c: &aws_sdk_bedrockagentruntime::Client,
    session: &str,
    text: &str,
    stream: bool,
) -> (i32, i32) {
    let mut out = c
        .invoke_agent()
        .set_streaming_configurations(stream.then(|| {
            aws_sdk_bedrockagentruntime::types::StreamingConfigurations::builder()
                .stream_final_response(true)
                .build()
        }))
        .agent_id("PAYAGENT01")
        .agent_alias_id("PRODALIAS")
        .session_id(session)
        .enable_trace(true)
        .input_text(text)
        .send()
        .await
        .unwrap();
    let (mut i, mut o) = (0, 0);
    while let Some(ev) = out.completion.recv().await.unwrap() {
        if let aws_sdk_bedrockagentruntime::types::ResponseStream::Trace(t) = ev {
            if let Some(t) = t.trace() {
                let (a, b) = usage(t);
                i += a;
                o += b;
            }
        }
    }
    (i, o)
}

#[tokio::test]
async fn simulated_agents_publish_bedrock_metrics_that_read_bedrock_finds() {
    let h = sim_with(Faults::default()).await;
    let b = bedrock(&h);
    let (mut tin, mut tout) = (0, 0);
    for (i, text) in [
        "what is my balance",
        "hello there",
        "pay 250 EUR to acct-77",
    ]
    .iter()
    .enumerate()
    {
        let (a, o) = turn(&b, &format!("cw-{i}"), text, i == 1).await;
        tin += a;
        tout += o;
    }
    // A bad resume: a client error on the same alias.
    let e = b
        .invoke_agent()
        .agent_id("PAYAGENT01")
        .agent_alias_id("PRODALIAS")
        .session_id("cw-bad")
        .session_state(
            aws_sdk_bedrockagentruntime::types::SessionState::builder()
                .invocation_id("nope")
                .build(),
        )
        .send()
        .await;
    assert!(e.is_err());

    let client = cloudwatch::loopback(&h.endpoint());
    let names: Vec<String> = cloudwatch::discover(&client, "AWS/Bedrock/Agents", None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    for n in [
        "InvocationCount",
        "TotalTime",
        "ModelLatency",
        "ModelInvocationCount",
        "InputTokenCount",
        "OutputTokenCount",
        "InvocationClientErrors",
    ] {
        assert!(names.iter().any(|m| m == n), "{n} missing from {names:?}");
    }
    let figures = cloudwatch::read_bedrock(
        &client,
        Duration::from_secs(3600),
        Duration::from_secs(300),
        Utc::now() + chrono::Duration::seconds(1),
    )
    .await
    .unwrap();
    let f = figures
        .iter()
        .find(|f| f.agent_id == "PAYAGENT01" && f.alias_id == "PRODALIAS")
        .unwrap();
    assert_eq!(f.invocations, 4.0, "{f:?}");
    // Only the streamed turn has a time to first token, and it comes before the turn ends.
    let ttft = f.ttft_p95_ms.unwrap();
    assert!(ttft > 0.0 && ttft <= f.total_time_p95_ms.unwrap(), "{f:?}");
    assert_eq!(f.client_errors, 1.0);
    assert_eq!(f.server_errors + f.throttles, 0.0);
    assert_eq!(
        f.input_tokens,
        f64::from(tin),
        "CloudWatch agrees with the traces"
    );
    assert_eq!(f.output_tokens, f64::from(tout));
    assert!(f.model_invocations >= 3.0);
    let p95 = f.total_time_p95_ms.unwrap();
    let avg = f.total_time_avg_ms.unwrap();
    assert!(p95 > 0.0 && p95 >= avg * 0.5, "{f:?}");
    assert!(f.model_latency_p95_ms.unwrap() >= f.model_latency_avg_ms.unwrap() * 0.5);
    assert_eq!(
        f.invocations_by_period.iter().map(|(_, v)| v).sum::<f64>(),
        4.0
    );
    assert!(
        f.alias_arn.ends_with(":agent-alias/PAYAGENT01/PRODALIAS"),
        "{}",
        f.alias_arn
    );
    h.shutdown().await;

    // Throttled calls count as throttles.
    let h = sim_with(Faults::parse("throttle=1").unwrap()).await;
    let b = bedrock(&h);
    for i in 0..2 {
        let r = b
            .invoke_agent()
            .agent_id("PAYAGENT01")
            .agent_alias_id("PRODALIAS")
            .session_id(format!("t-{i}"))
            .input_text("hi")
            .send()
            .await;
        assert!(r.is_err());
    }
    let client = cloudwatch::loopback(&h.endpoint());
    let figures = cloudwatch::read_bedrock(
        &client,
        Duration::from_secs(600),
        Duration::from_secs(60),
        Utc::now() + chrono::Duration::seconds(1),
    )
    .await
    .unwrap();
    assert_eq!(figures.len(), 1);
    assert_eq!((figures[0].invocations, figures[0].throttles), (2.0, 2.0));
    h.shutdown().await;
}

/// The metrics pane's window drives the Bedrock read: its span is GetMetricData's range and its
/// bucket the trend's period. Calls put 10 minutes, 2 hours and 3 days ago are in the 15m, 1h,
/// 24h and 7d windows as their ages say, and the trend's points fall on the window's period.
#[tokio::test]
async fn the_bedrock_read_follows_the_metrics_window() {
    use agentdeck::domain::metrics::Window;
    use agentdeck::sim::cw::store::{MetricKey, Sample, Unit};
    let h = sim_with(Faults::default()).await;
    let now = Utc::now();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:agent-alias/WINAGENT01/WINALIAS";
    let dims = vec![
        ("Operation".to_owned(), "InvokeAgent".to_owned()),
        ("AgentAliasArn".to_owned(), arn.to_owned()),
        (
            "ModelId".to_owned(),
            "anthropic.claude-3-haiku-20240307-v1:0".to_owned(),
        ),
    ];
    // What the simulated agent would have published then (PutMetricData refuses AWS/
    // namespaces, as CloudWatch does).
    h.with_metrics(|m| {
        for mins in [10_i64, 120, 3 * 24 * 60] {
            m.put(
                MetricKey::new("AWS/Bedrock/Agents", "InvocationCount", dims.clone()),
                (now - chrono::Duration::minutes(mins)).timestamp_millis(),
                Unit::COUNT,
                Sample::Value(1.0),
            );
        }
    });
    for (window, want) in [
        (Window::M15, 1.0),
        (Window::H1, 1.0),
        (Window::H24, 2.0),
        (Window::D7, 3.0),
    ] {
        let figures = agentdeck::runtime::read_bedrock_window(&h.endpoint(), window, now)
            .await
            .unwrap();
        let f = figures
            .iter()
            .find(|f| f.agent_id == "WINAGENT01")
            .unwrap_or_else(|| panic!("{window:?}: {figures:?}"));
        assert_eq!(f.invocations, want, "{window:?}");
        let period = i64::try_from(window.period_secs()).unwrap();
        assert!(!f.invocations_by_period.is_empty(), "{window:?}");
        for (at, _) in &f.invocations_by_period {
            let age = (now - *at).num_seconds();
            assert!(
                age >= 0 && age <= i64::try_from(window.span_secs()).unwrap(),
                "{window:?}: a point {age}s old"
            );
        }
        // Points sit on the window's period (a minute for 15m and 1h, an hour for 24h, 7d).
        for pair in f.invocations_by_period.windows(2) {
            let gap = (pair[1].0 - pair[0].0).num_seconds().abs();
            assert_eq!(
                gap % period,
                0,
                "{window:?}: points {gap}s apart, period {period}s"
            );
        }
    }
    h.shutdown().await;
}
