//! CloudWatch in and out: the only module that sees `aws-sdk-cloudwatch` types.
//!
//! - In: [`discover`] lists metrics (ListMetrics, every page); [`read_bedrock`] reads the
//!   `AWS/Bedrock/Agents` metrics Bedrock publishes, per agent alias (the
//!   `Operation, AgentAliasArn, ModelId` dimension set), with GetMetricData: at most 500 queries a
//!   call, every NextToken page followed. Only metric names that ListMetrics found are queried.
//! - Out: [`publish`] puts plain [`Datum`]s under a namespace with PutMetricData, in batches within
//!   the API's limits (1,000 datums and 1 MB a call; at most 150 distinct values a datum, so a
//!   longer distribution becomes several datums; at most 30 dimensions). Bad datums are refused
//!   before anything is sent, naming the datum and the rule.

pub mod cli;
pub mod ours;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::Region;
use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricDatum, MetricStat, ScanBy,
    StandardUnit,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Bedrock Agents' namespace.
pub const BEDROCK_NAMESPACE: &str = "AWS/Bedrock/Agents";
/// PutMetricData: datums a call.
pub const MAX_DATUMS: usize = 1000;
/// PutMetricData: bytes a call (the request body, before compression).
pub const MAX_BYTES: usize = 1024 * 1024;
/// MetricDatum: distinct values in `Values`.
pub const MAX_VALUES: usize = 150;
/// MetricDatum: dimensions.
pub const MAX_DIMENSIONS: usize = 30;
/// GetMetricData: queries a call.
pub const MAX_QUERIES: usize = 500;

/// Why a CloudWatch call failed; each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("no AWS region for CloudWatch: set AWS_REGION or a region in your profile")]
    MissingRegion,
    #[error("CloudWatch refused {operation}: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error(
        "cannot reach CloudWatch for {operation} ({detail}): check the network, the region and --cloudwatch-endpoint"
    )]
    Transport {
        operation: &'static str,
        detail: String,
    },
    #[error("datum {index} ({name:?}) cannot be published: {rule}")]
    BadDatum {
        index: usize,
        name: String,
        rule: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn sdk_error<E, R>(operation: &'static str, e: &SdkError<E, R>) -> CloudWatchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(s) => CloudWatchError::Service {
            operation,
            code: s.err().code().unwrap_or("Unknown").to_owned(),
            message: s.err().message().unwrap_or("(no message)").to_owned(),
        },
        other => {
            let mut detail = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                source = s.source();
            }
            CloudWatchError::Transport { operation, detail }
        }
    }
}

/// Whether the endpoint is this machine (the simulator): then fixed local credentials serve.
fn is_loopback(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// A client: for a loopback endpoint (the simulator) fixed local credentials and us-east-1;
/// otherwise the standard AWS chain, with `endpoint` overriding the URL if given.
pub async fn client(endpoint: Option<&str>) -> Result<Client, CloudWatchError> {
    if let Some(url) = endpoint.filter(|u| is_loopback(u)) {
        return Ok(loopback(url));
    }
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    if shared.region().is_none() {
        return Err(CloudWatchError::MissingRegion);
    }
    let mut b = aws_sdk_cloudwatch::config::Builder::from(&shared);
    if let Some(url) = endpoint {
        b = b.endpoint_url(url);
    }
    Ok(Client::from_conf(b.build()))
}

/// A client for a local CloudWatch (the simulator's stand-in, an `http://` address): nothing read
/// from the environment, no TLS.
pub fn loopback(endpoint_url: &str) -> Client {
    let conf = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(crate::bedrock::runner::loopback_credentials())
        .http_client(crate::bedrock::runner::loopback_http_client())
        .endpoint_url(endpoint_url)
        .build();
    Client::from_conf(conf)
}

// ---- In ----

/// A metric ListMetrics found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FoundMetric {
    pub namespace: String,
    pub name: String,
    /// Sorted by name.
    pub dimensions: Vec<(String, String)>,
}

impl FoundMetric {
    fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every metric in `namespace` (optionally only those having the dimension `with_dimension`),
/// following NextToken to the last page.
pub async fn discover(
    client: &Client,
    namespace: &str,
    with_dimension: Option<&str>,
) -> Result<Vec<FoundMetric>, CloudWatchError> {
    let mut req = client.list_metrics().namespace(namespace);
    if let Some(d) = with_dimension {
        req = req.dimensions(DimensionFilter::builder().name(d).build());
    }
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("ListMetrics", &e))?;
        for m in page.metrics() {
            let mut dimensions: Vec<(String, String)> = m
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_owned(),
                        d.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            dimensions.sort();
            out.push(FoundMetric {
                namespace: m.namespace().unwrap_or(namespace).to_owned(),
                name: m.metric_name().unwrap_or_default().to_owned(),
                dimensions,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub use crate::domain::bedrock::AliasFigures;

/// One figure of [`AliasFigures`] and how to read it.
#[derive(Clone, Copy)]
enum Figure {
    Invocations,
    TotalAvg,
    TotalP95,
    TtftP95,
    ModelAvg,
    ModelP95,
    ModelInvocations,
    InputTokens,
    OutputTokens,
    ClientErrors,
    ServerErrors,
    Throttles,
    Series,
}

/// (metric, stat, figure): what is read for each alias, if the metric exists.
const READS: &[(&str, &str, Figure)] = &[
    ("InvocationCount", "Sum", Figure::Invocations),
    ("InvocationCount", "Sum", Figure::Series),
    ("TotalTime", "Average", Figure::TotalAvg),
    ("TotalTime", "p95", Figure::TotalP95),
    ("TTFT", "p95", Figure::TtftP95),
    ("ModelLatency", "Average", Figure::ModelAvg),
    ("ModelLatency", "p95", Figure::ModelP95),
    ("ModelInvocationCount", "Sum", Figure::ModelInvocations),
    ("InputTokenCount", "Sum", Figure::InputTokens),
    ("OutputTokenCount", "Sum", Figure::OutputTokens),
    ("InvocationClientErrors", "Sum", Figure::ClientErrors),
    ("InvocationServerErrors", "Sum", Figure::ServerErrors),
    ("InvocationThrottles", "Sum", Figure::Throttles),
];

fn set(f: &mut AliasFigures, which: Figure, points: &[(DateTime<Utc>, f64)]) {
    let total: f64 = points.iter().map(|(_, v)| v).sum();
    let one = points.first().map(|(_, v)| *v);
    match which {
        Figure::Invocations => f.invocations = total,
        Figure::TotalAvg => f.total_time_avg_ms = one,
        Figure::TotalP95 => f.total_time_p95_ms = one,
        Figure::TtftP95 => f.ttft_p95_ms = one,
        Figure::ModelAvg => f.model_latency_avg_ms = one,
        Figure::ModelP95 => f.model_latency_p95_ms = one,
        Figure::ModelInvocations => f.model_invocations = total,
        Figure::InputTokens => f.input_tokens = total,
        Figure::OutputTokens => f.output_tokens = total,
        Figure::ClientErrors => f.client_errors = total,
        Figure::ServerErrors => f.server_errors = total,
        Figure::Throttles => f.throttles = total,
        Figure::Series => {
            let mut p = points.to_vec();
            p.sort_by_key(|(t, _)| *t);
            f.invocations_by_period = p;
        }
    }
}

/// Whole seconds, rounded up to a multiple of 60 (GetMetricData's periods).
fn period_secs(d: Duration) -> i32 {
    let s = d.as_secs().max(60);
    (s.div_ceil(60) * 60).min(i32::MAX as u64 / 60 * 60) as i32
}

fn sdk_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

fn from_sdk_time(t: &aws_smithy_types::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.to_millis().unwrap_or(0)).unwrap_or_default()
}

/// The `AWS/Bedrock/Agents` figures per alias over `[now - window, now)`: single figures over
/// the whole window (one period spanning it, so p95 is over every call), and InvocationCount per
/// `period`.
pub async fn read_bedrock(
    client: &Client,
    window: Duration,
    period: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<AliasFigures>, CloudWatchError> {
    if window < Duration::from_secs(60) {
        return Err(CloudWatchError::Invalid(format!(
            "the window must be at least a minute (it is {}s)",
            window.as_secs()
        )));
    }
    let found = discover(client, BEDROCK_NAMESPACE, Some("AgentAliasArn")).await?;
    // (alias ARN, model) -> metric names seen for it.
    let mut aliases: BTreeMap<(String, String), Vec<&FoundMetric>> = BTreeMap::new();
    for m in &found {
        if m.dimension("Operation") != Some("InvokeAgent") {
            continue;
        }
        if let (Some(arn), Some(model)) = (m.dimension("AgentAliasArn"), m.dimension("ModelId")) {
            aliases
                .entry((arn.to_owned(), model.to_owned()))
                .or_default()
                .push(m);
        }
    }
    let start = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
    let whole = period_secs(window);
    let step = period_secs(period);
    let mut figures: Vec<AliasFigures> = Vec::with_capacity(aliases.len());
    let mut queries: Vec<(usize, Figure, MetricDataQuery)> = Vec::new();
    for (i, ((arn, model), metrics)) in aliases.iter().enumerate() {
        let tail = arn.rsplit_once(":agent-alias/").map_or("", |(_, t)| t);
        let (agent_id, alias_id) = tail.split_once('/').unwrap_or((tail, ""));
        figures.push(AliasFigures {
            alias_arn: arn.clone(),
            agent_id: agent_id.to_owned(),
            alias_id: alias_id.to_owned(),
            model_id: model.clone(),
            ..AliasFigures::default()
        });
        for (k, (name, stat, which)) in READS.iter().enumerate() {
            let Some(found) = metrics.iter().find(|m| m.name == *name) else {
                continue;
            };
            let metric = Metric::builder()
                .namespace(BEDROCK_NAMESPACE)
                .metric_name(*name)
                .set_dimensions(Some(
                    found
                        .dimensions
                        .iter()
                        .map(|(n, v)| Dimension::builder().name(n).value(v).build())
                        .collect(),
                ))
                .build();
            let p = if matches!(which, Figure::Series) {
                step
            } else {
                whole
            };
            let q = MetricDataQuery::builder()
                .id(format!("a{i}_{k}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(p)
                        .stat(*stat)
                        .build(),
                )
                .build();
            queries.push((i, *which, q));
        }
    }
    for batch in queries.chunks(MAX_QUERIES) {
        let mut points: BTreeMap<String, Vec<(DateTime<Utc>, f64)>> = BTreeMap::new();
        let mut pages = client
            .get_metric_data()
            .set_metric_data_queries(Some(batch.iter().map(|(_, _, q)| q.clone()).collect()))
            .start_time(sdk_time(start))
            .end_time(sdk_time(now))
            .scan_by(ScanBy::TimestampAscending)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("GetMetricData", &e))?;
            for r in page.metric_data_results() {
                let id = r.id().unwrap_or_default().to_owned();
                let entry = points.entry(id).or_default();
                entry.extend(
                    r.timestamps()
                        .iter()
                        .map(from_sdk_time)
                        .zip(r.values().iter().copied()),
                );
            }
        }
        for (i, which, q) in batch {
            let got = q
                .id()
                .and_then(|id| points.get(id))
                .map_or(&[][..], Vec::as_slice);
            set(&mut figures[*i], *which, got);
        }
    }
    Ok(figures)
}

// ---- Out ----

/// A unit agentdeck publishes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
    Percent,
    None,
}

impl Unit {
    fn sdk(self) -> StandardUnit {
        match self {
            Self::Count => StandardUnit::Count,
            Self::Milliseconds => StandardUnit::Milliseconds,
            Self::Seconds => StandardUnit::Seconds,
            Self::Percent => StandardUnit::Percent,
            Self::None => StandardUnit::None,
        }
    }
}

/// A datum's value: one number, or a distribution (values with how often each occurred).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum DatumValue {
    Single(f64),
    /// `counts` is empty (each value once) or as long as `values`.
    Distribution {
        values: Vec<f64>,
        counts: Vec<f64>,
    },
}

/// One datum to publish: plain data, so a metrics snapshot converts to it without the SDK.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Datum {
    pub name: String,
    pub unit: Unit,
    pub value: DatumValue,
    pub dimensions: Vec<(String, String)>,
    pub timestamp: DateTime<Utc>,
}

/// What `publish` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PublishReport {
    /// PutMetricData calls made.
    pub calls: usize,
    /// Datums sent (a distribution of more than 150 values counts once per 150).
    pub datums: usize,
}

/// 2^360, CloudWatch's bound on a value's magnitude.
fn value_ok(v: f64) -> bool {
    v.is_finite() && v.abs() <= 2f64.powi(360)
}

/// Check one datum against CloudWatch's rules.
fn check(index: usize, d: &Datum) -> Result<(), CloudWatchError> {
    let bad = |rule: String| CloudWatchError::BadDatum {
        index,
        name: d.name.clone(),
        rule,
    };
    let len = d.name.chars().count();
    if !(1..=255).contains(&len) {
        return Err(bad(format!(
            "a metric name has 1 to 255 characters (it has {len})"
        )));
    }
    if d.dimensions.len() > MAX_DIMENSIONS {
        return Err(bad(format!(
            "at most {MAX_DIMENSIONS} dimensions (it has {})",
            d.dimensions.len()
        )));
    }
    for (i, (n, v)) in d.dimensions.iter().enumerate() {
        if !(1..=255).contains(&n.chars().count()) || !(1..=1024).contains(&v.chars().count()) {
            return Err(bad(format!(
                "dimension {n:?}: names have 1 to 255 characters and values 1 to 1,024"
            )));
        }
        if d.dimensions[..i].iter().any(|(m, _)| m == n) {
            return Err(bad(format!("dimension {n:?} is given twice")));
        }
    }
    match &d.value {
        DatumValue::Single(v) if !value_ok(*v) => Err(bad(format!(
            "value {v} is not finite or outside -2^360..2^360"
        ))),
        DatumValue::Distribution { values, counts } => {
            if values.is_empty() {
                return Err(bad("a distribution needs at least one value".to_owned()));
            }
            if !counts.is_empty() && counts.len() != values.len() {
                return Err(bad(format!(
                    "{} values but {} counts",
                    values.len(),
                    counts.len()
                )));
            }
            if let Some(v) = values.iter().chain(counts).find(|v| !value_ok(**v)) {
                return Err(bad(format!(
                    "value {v} is not finite or outside -2^360..2^360"
                )));
            }
            if let Some(c) = counts.iter().find(|c| **c < 0.0) {
                return Err(bad(format!("count {c} is negative")));
            }
            Ok(())
        }
        DatumValue::Single(_) => Ok(()),
    }
}

/// The SDK datums for one of ours: a distribution of more than 150 values is split.
fn to_sdk(d: &Datum) -> Vec<MetricDatum> {
    let base = || {
        MetricDatum::builder()
            .metric_name(&d.name)
            .unit(d.unit.sdk())
            .timestamp(sdk_time(d.timestamp))
            .set_dimensions(Some(
                d.dimensions
                    .iter()
                    .map(|(n, v)| Dimension::builder().name(n).value(v).build())
                    .collect(),
            ))
    };
    match &d.value {
        DatumValue::Single(v) => vec![base().value(*v).build()],
        DatumValue::Distribution { values, counts } => values
            .chunks(MAX_VALUES)
            .enumerate()
            .map(|(i, chunk)| {
                let b = base().set_values(Some(chunk.to_vec()));
                if counts.is_empty() {
                    b.build()
                } else {
                    let from = i * MAX_VALUES;
                    b.set_counts(Some(counts[from..from + chunk.len()].to_vec()))
                        .build()
                }
            })
            .collect(),
    }
}

/// An upper bound on a datum's bytes in the CBOR request body: every string with a 9-byte
/// header, every number as a 9-byte double, every key spelled out, plus map overheads.
fn encoded_bound(d: &MetricDatum) -> usize {
    let s = |x: &str| x.len() + 9;
    let mut n = 16 + s("MetricName") + s(d.metric_name().unwrap_or_default());
    n += s("Dimensions") + 9;
    for dim in d.dimensions() {
        n += 2
            + s("Name")
            + s(dim.name().unwrap_or_default())
            + s("Value")
            + s(dim.value().unwrap_or_default());
    }
    n += s("Timestamp") + 10 + s("Value") + 9 + s("Unit") + s("Milliseconds");
    n += s("Values") + 9 + d.values().len() * 9 + s("Counts") + 9 + d.counts().len() * 9;
    n
}

/// Split into PutMetricData calls: at most 1,000 datums and `MAX_BYTES` (bounded above) each.
fn batches(namespace: &str, data: Vec<MetricDatum>) -> Vec<Vec<MetricDatum>> {
    let budget = MAX_BYTES - (64 + namespace.len());
    let mut out: Vec<Vec<MetricDatum>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for d in data {
        let n = encoded_bound(&d);
        if !current.is_empty() && (current.len() == MAX_DATUMS || bytes + n > budget) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push(d);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Put the datums under `namespace`, in as few calls as the limits allow. Every datum is
/// checked first: one bad datum and nothing is sent. A failed call stops there; the error says
/// which call, and the calls before it stand.
pub async fn publish(
    client: &Client,
    namespace: &str,
    data: &[Datum],
) -> Result<PublishReport, CloudWatchError> {
    let ns_len = namespace.chars().count();
    if !(1..=255).contains(&ns_len) || namespace.starts_with("AWS/") {
        return Err(CloudWatchError::Invalid(format!(
            "namespace {namespace:?}: 1 to 255 characters, not starting with AWS/ (reserved for AWS)"
        )));
    }
    for (i, d) in data.iter().enumerate() {
        check(i, d)?;
    }
    let sdk: Vec<MetricDatum> = data.iter().flat_map(to_sdk).collect();
    let mut report = PublishReport::default();
    for batch in batches(namespace, sdk) {
        let n = batch.len();
        client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(batch))
            .send()
            .await
            .map_err(|e| match sdk_error("PutMetricData", &e) {
                CloudWatchError::Service { code, message, .. } => CloudWatchError::Service {
                    operation: "PutMetricData",
                    code,
                    message: format!(
                        "{message} (call {} of the publish; {} datums were stored before it)",
                        report.calls + 1,
                        report.datums
                    ),
                },
                other => other,
            })?;
        report.calls += 1;
        report.datums += n;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(name: &str, value: DatumValue, dims: usize) -> Datum {
        Datum {
            name: name.to_owned(),
            unit: Unit::Milliseconds,
            value,
            dimensions: (0..dims)
                .map(|i| (format!("D{i}"), "v".repeat(1000)))
                .collect(),
            timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn batches_stay_within_count_and_size() {
        let small: Vec<MetricDatum> = (0..2500)
            .flat_map(|i| to_sdk(&datum(&format!("m{i}"), DatumValue::Single(1.0), 0)))
            .collect();
        let b = batches("ns", small);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        // 30 dimensions of 1,000 characters: ~31 KB each, so about 33 a call.
        let big: Vec<MetricDatum> = (0..100)
            .flat_map(|i| to_sdk(&datum(&format!("m{i}"), DatumValue::Single(1.0), 30)))
            .collect();
        let b = batches("ns", big);
        assert!(b.len() >= 3, "{}", b.len());
        for batch in &b {
            let bytes: usize = batch.iter().map(encoded_bound).sum();
            assert!(bytes <= MAX_BYTES, "{bytes}");
        }
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 100);
    }

    #[test]
    fn long_distributions_split_at_150_values() {
        let values: Vec<f64> = (0..400).map(f64::from).collect();
        let counts = vec![2.0; 400];
        let d = datum("lat", DatumValue::Distribution { values, counts }, 0);
        let sdk = to_sdk(&d);
        assert_eq!(
            sdk.iter().map(|m| m.values().len()).collect::<Vec<_>>(),
            vec![150, 150, 100]
        );
        assert_eq!(sdk[2].counts().len(), 100);
        assert!((sdk[1].values()[0] - 150.0).abs() < f64::EPSILON);
    }

    #[test]
    fn bad_datums_are_named() {
        let e = check(3, &datum("x", DatumValue::Single(f64::NAN), 0));
        assert!(e.is_err_and(|e| e.to_string().contains("datum 3 (\"x\")")));
        let e = check(
            0,
            &datum(
                "x",
                DatumValue::Distribution {
                    values: vec![1.0, 2.0],
                    counts: vec![1.0],
                },
                0,
            ),
        );
        assert!(e.is_err_and(|e| e.to_string().contains("2 values but 1 counts")));
        assert!(check(0, &datum("x", DatumValue::Single(1.0), 31)).is_err());
        assert!(check(0, &datum("", DatumValue::Single(1.0), 0)).is_err());
        assert!(check(0, &datum("x", DatumValue::Single(1e100), 30)).is_ok());
        assert!(check(0, &datum("x", DatumValue::Single(1e300), 0)).is_err());
    }

    #[test]
    fn periods_round_up_to_minutes() {
        assert_eq!(period_secs(Duration::from_secs(1)), 60);
        assert_eq!(period_secs(Duration::from_secs(61)), 120);
        assert_eq!(period_secs(Duration::from_secs(3600)), 3600);
        assert!(is_loopback("http://127.0.0.1:8777"));
        assert!(is_loopback("http://localhost/"));
        assert!(!is_loopback("https://monitoring.us-east-1.amazonaws.com"));
    }
}
