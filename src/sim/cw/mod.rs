//! The simulator's CloudWatch stand-in: ListMetrics, GetMetricData and PutMetricData over Smithy
//! RPC v2 CBOR (`POST /service/GraniteServiceVersion20100801/operation/<Op>`, header
//! `smithy-protocol: rpc-v2-cbor`, CBOR bodies), the protocol aws-sdk-cloudwatch and botocore
//! (1.44: `protocols: [smithy-rpc-v2-cbor, json, query]`) choose for CloudWatch. Errors are AWS's
//! shape for a query-compatible service: a CBOR body `{__type: "com.amazonaws.cloudwatch#<Shape>",
//! message}` and the header `x-amzn-query-error: <Code>;Sender`, from which both clients take the
//! code (`InvalidParameterValue`, `MissingParameter`, `InvalidParameterCombination`,
//! `InvalidNextToken`).
//!
//! Limits enforced (CloudWatch API reference, PutMetricData / MetricDatum / GetMetricData /
//! ListMetrics): at most 1,000 datums and 1 MB of (uncompressed) body per PutMetricData; a
//! namespace of 1-255 characters not starting with `AWS/`; at most 30 dimensions per datum,
//! names 1-255 and values 1-1,024 characters; values finite and within -2^360..2^360; `Values` at
//! most 150 with `Counts` of the same length; exactly one of `Value`, `Values`,
//! `StatisticValues`; a known `Unit`; `StorageResolution` 1 or 60; timestamps at most two weeks
//! old and two hours ahead. GetMetricData: 1-500 queries, ids `[a-z][a-zA-Z0-9_]*` and unique,
//! `StartTime` before `EndTime`, periods 1, 5, 10, 20, 30 or a multiple of 60. ListMetrics: at
//! most 10 dimension filters, 500 metrics a page. A gzip-compressed body (`Content-Encoding:
//! gzip`, which both SDKs send for large PutMetricData calls) is inflated first.
//! Metric math (`Expression`) and entity data (`EntityMetricData`) are refused with a message.
//!
//! botocore 1.44 lists `smithy-rpc-v2-cbor` first in CloudWatch's model but resolves the protocol
//! by its own preference order (`json` before CBOR), so boto3 speaks awsJson1_0 (`POST /`,
//! `X-Amz-Target: GraniteServiceVersion20100801.<Op>`). The stand-in answers that too: the same
//! operations, the JSON body decoded into the same value tree, timestamps as epoch seconds.

pub mod store;

use std::io::Read as _;

use chrono::{DateTime, Utc};
use ciborium::Value;

use store::{DimensionFilter, MetricKey, MetricStore, Sample, Stat, Unit};

/// The awsJson1_0 target prefix (`X-Amz-Target: GraniteServiceVersion20100801.ListMetrics`).
pub const JSON_TARGET_PREFIX: &str = "GraniteServiceVersion20100801.";

/// How a request is encoded, and how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Smithy RPC v2 CBOR (aws-sdk-cloudwatch).
    Cbor,
    /// awsJson1_0 (botocore).
    Json,
}

impl Codec {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Cbor => "application/cbor",
            Self::Json => "application/x-amz-json-1.0",
        }
    }

    fn encode(self, v: &Value) -> Vec<u8> {
        match self {
            Self::Cbor => encode(v),
            Self::Json => serde_json::to_vec(&to_json(v)).unwrap_or_default(),
        }
    }

    fn decode(self, body: &[u8]) -> Result<Value, String> {
        match self {
            Self::Cbor => {
                ciborium::from_reader::<Value, _>(body).map_err(|e| format!("not valid CBOR: {e}"))
            }
            Self::Json => serde_json::from_slice::<serde_json::Value>(body)
                .map(|j| from_json(&j))
                .map_err(|e| format!("not valid JSON: {e}")),
        }
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Integer(i) => J::from(i128::from(*i) as f64),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Text(t) => J::String(t.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Tag(_, inner) => to_json(inner),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .filter_map(|(k, v)| match k {
                    Value::Text(k) => Some((k.clone(), to_json(v))),
                    _ => None,
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

fn from_json(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Value::Text(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::Text(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// Where RPC v2 CBOR puts CloudWatch's operations.
pub const PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";
/// The namespace Bedrock Agents publish to.
pub const BEDROCK_NAMESPACE: &str = "AWS/Bedrock/Agents";
/// PutMetricData's body limit.
pub const MAX_PUT_BYTES: usize = 1024 * 1024;
pub const MAX_PUT_DATUMS: usize = 1000;
pub const MAX_DIMENSIONS: usize = 30;
pub const MAX_VALUES: usize = 150;
pub const MAX_QUERIES: usize = 500;
const LIST_PAGE: usize = 500;
const DEFAULT_MAX_DATAPOINTS: usize = 100_800;

/// An error in CloudWatch's query-compatible RPC v2 CBOR shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwError {
    pub status: u16,
    /// The query-protocol code the clients report, e.g. `InvalidParameterValue`.
    pub code: &'static str,
    /// The Smithy shape, e.g. `InvalidParameterValueException`.
    pub shape: &'static str,
    pub message: String,
}

impl CwError {
    fn new(status: u16, code: &'static str, shape: &'static str, message: String) -> Self {
        Self {
            status,
            code,
            shape,
            message,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "InvalidParameterValue",
            "InvalidParameterValueException",
            message.into(),
        )
    }
    pub fn missing(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "MissingParameter",
            "MissingRequiredParameterException",
            message.into(),
        )
    }
    pub fn combination(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "InvalidParameterCombination",
            "InvalidParameterCombinationException",
            message.into(),
        )
    }
    pub fn next_token(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidNextToken", "InvalidNextToken", message.into())
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "RequestEntityTooLargeException",
            message.into(),
        )
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "SerializationException",
            "SerializationException",
            message.into(),
        )
    }
    pub fn unknown_operation(op: &str) -> Self {
        Self::new(
            404,
            "UnknownOperationException",
            "UnknownOperationException",
            format!(
                "The agentdeck CloudWatch stand-in does not serve the operation {op:?}: it serves ListMetrics, GetMetricData and PutMetricData."
            ),
        )
    }

    /// `x-amzn-query-error`: code and fault.
    pub fn query_error(&self) -> String {
        let fault = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        format!("{};{fault}", self.code)
    }

    /// The body, in the request's encoding.
    pub fn body(&self, codec: Codec) -> Vec<u8> {
        codec.encode(&obj(vec![
            (
                "__type",
                Value::Text(format!("com.amazonaws.cloudwatch#{}", self.shape)),
            ),
            ("message", Value::Text(self.message.clone())),
        ]))
    }
}

/// An answered request: status, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub error: Option<CwError>,
}

/// One CloudWatch call as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub codec: Codec,
    /// The operation name, e.g. `GetMetricData`.
    pub op: &'a str,
    pub body: &'a [u8],
    /// The body is gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
}

/// Serve one CloudWatch call.
pub fn serve(store: &std::sync::Mutex<MetricStore>, call: Call<'_>, now: DateTime<Utc>) -> Answer {
    match serve_inner(store, call, now) {
        Ok(v) => Answer {
            status: 200,
            body: call.codec.encode(&v),
            error: None,
        },
        Err(e) => Answer {
            status: e.status,
            body: e.body(call.codec),
            error: Some(e),
        },
    }
}

fn serve_inner(
    store: &std::sync::Mutex<MetricStore>,
    call: Call<'_>,
    now: DateTime<Utc>,
) -> Result<Value, CwError> {
    let Call {
        codec,
        op,
        body,
        gzip,
    } = call;
    if !matches!(op, "ListMetrics" | "GetMetricData" | "PutMetricData") {
        return Err(CwError::unknown_operation(op));
    }
    let inflated;
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(MAX_PUT_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| CwError::serialization(format!("The gzip body does not inflate: {e}")))?;
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    if op == "PutMetricData" && body.len() > MAX_PUT_BYTES {
        return Err(CwError::too_large(format!(
            "Request size {}{} exceeded {MAX_PUT_BYTES} bytes for PutMetricData.",
            if body.len() > MAX_PUT_BYTES {
                "more than "
            } else {
                ""
            },
            body.len().min(MAX_PUT_BYTES)
        )));
    }
    let req = if body.is_empty() {
        Vec::new()
    } else {
        match codec.decode(body) {
            Ok(Value::Map(m)) => m,
            Ok(_) => {
                return Err(CwError::serialization(
                    "The request body must be a map (a structure).",
                ));
            }
            Err(e) => {
                return Err(CwError::serialization(format!("The request body is {e}")));
            }
        }
    };
    let mut store = store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match op {
        "ListMetrics" => list_metrics(&store, &req, now),
        "GetMetricData" => get_metric_data(&store, &req, now.timestamp_millis()),
        _ => put_metric_data(&mut store, &req, now),
    }
}

// ---- CBOR helpers ----

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::into_writer(v, &mut out);
    out
}

fn obj(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

fn timestamp(ms: i64) -> Value {
    Value::Tag(1, Box::new(Value::Float(ms as f64 / 1000.0)))
}

type Map = [(Value, Value)];

fn get<'a>(m: &'a Map, key: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn wrong(field: &str, expected: &str) -> CwError {
    CwError::serialization(format!("{field} must be {expected}."))
}

fn text<'a>(m: &'a Map, key: &str, field: &str) -> Result<Option<&'a str>, CwError> {
    match get(m, key) {
        None => Ok(None),
        Some(Value::Text(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(field, "a string")),
    }
}

fn required<'a>(m: &'a Map, key: &str, field: &str) -> Result<&'a str, CwError> {
    text(m, key, field)?
        .ok_or_else(|| CwError::missing(format!("The parameter {field} is required.")))
}

fn number(v: &Value, field: &str) -> Result<f64, CwError> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Integer(i) => Ok(i128::from(*i) as f64),
        _ => Err(wrong(field, "a number")),
    }
}

fn num(m: &Map, key: &str, field: &str) -> Result<Option<f64>, CwError> {
    get(m, key).map(|v| number(v, field)).transpose()
}

fn list<'a>(m: &'a Map, key: &str, field: &str) -> Result<&'a [Value], CwError> {
    match get(m, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(wrong(field, "a list")),
    }
}

fn map<'a>(v: &'a Value, field: &str) -> Result<&'a Map, CwError> {
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(wrong(field, "a structure")),
    }
}

/// Epoch milliseconds of a tag-1 timestamp (or a bare number of seconds).
fn time(m: &Map, key: &str, field: &str) -> Result<Option<i64>, CwError> {
    let v = match get(m, key) {
        None => return Ok(None),
        Some(Value::Tag(1, v)) => v.as_ref(),
        Some(v) => v,
    };
    let secs = number(v, field)?;
    if !secs.is_finite() {
        return Err(wrong(field, "a finite timestamp"));
    }
    Ok(Some((secs * 1000.0).round() as i64))
}

fn check_len(value: &str, field: &str, lo: usize, hi: usize) -> Result<(), CwError> {
    let n = value.chars().count();
    if n < lo || n > hi {
        return Err(CwError::invalid(format!(
            "The parameter {field} must be between {lo} and {hi} characters long (it has {n})."
        )));
    }
    Ok(())
}

fn dimensions(m: &Map, field: &str) -> Result<Vec<(String, String)>, CwError> {
    let dims = list(m, "Dimensions", &format!("{field}.Dimensions"))?;
    if dims.len() > MAX_DIMENSIONS {
        return Err(CwError::invalid(format!(
            "The collection {field}.Dimensions must not have a size greater than {MAX_DIMENSIONS} (it has {}).",
            dims.len()
        )));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        let f = format!("{field}.Dimensions.member.{}", i + 1);
        let d = map(d, &f)?;
        let name = required(d, "Name", &format!("{f}.Name"))?;
        let value = required(d, "Value", &format!("{f}.Value"))?;
        check_len(name, &format!("{f}.Name"), 1, 255)?;
        check_len(value, &format!("{f}.Value"), 1, 1024)?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(CwError::invalid(format!(
                "No metric may have duplicate dimension names: {field}.Dimensions names {name:?} twice."
            )));
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn metric_value(m: &MetricKey) -> Value {
    obj(vec![
        ("Namespace", Value::Text(m.namespace.clone())),
        ("MetricName", Value::Text(m.name.clone())),
        (
            "Dimensions",
            Value::Array(
                m.dimensions
                    .iter()
                    .map(|(n, v)| {
                        obj(vec![
                            ("Name", Value::Text(n.clone())),
                            ("Value", Value::Text(v.clone())),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

fn paging_token(m: &Map, prefix: &str) -> Result<Option<(usize, usize)>, CwError> {
    let Some(t) = text(m, "NextToken", "NextToken")? else {
        return Ok(None);
    };
    let parsed = t.strip_prefix(prefix).and_then(|rest| {
        let (a, b) = rest.split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    });
    parsed.map(Some).ok_or_else(|| {
        CwError::next_token(format!(
            "The NextToken {t:?} is not one this service issued."
        ))
    })
}

// ---- ListMetrics ----

fn list_metrics(store: &MetricStore, req: &Map, now: DateTime<Utc>) -> Result<Value, CwError> {
    let namespace = text(req, "Namespace", "Namespace")?;
    let name = text(req, "MetricName", "MetricName")?;
    let raw = list(req, "Dimensions", "Dimensions")?;
    if raw.len() > 10 {
        return Err(CwError::invalid(format!(
            "The collection Dimensions must not have a size greater than 10 (it has {}).",
            raw.len()
        )));
    }
    let mut filters = Vec::with_capacity(raw.len());
    for (i, d) in raw.iter().enumerate() {
        let f = format!("Dimensions.member.{}", i + 1);
        let d = map(d, &f)?;
        let name = required(d, "Name", &format!("{f}.Name"))?;
        filters.push(DimensionFilter {
            name: name.to_owned(),
            value: text(d, "Value", &format!("{f}.Value"))?.map(str::to_owned),
        });
    }
    let recent = match text(req, "RecentlyActive", "RecentlyActive")? {
        None => None,
        Some("PT3H") => Some(now.timestamp_millis() - 3 * 3_600_000),
        Some(other) => {
            return Err(CwError::invalid(format!(
                "The value {other} for parameter RecentlyActive is invalid: the only valid value is PT3H."
            )));
        }
    };
    let (offset, _) = paging_token(req, "lm1:")?.unwrap_or((0, 0));
    let all = store.list(namespace, name, &filters, recent);
    if offset > all.len() {
        return Err(CwError::next_token(
            "The NextToken points past the metrics listed.",
        ));
    }
    let end = (offset + LIST_PAGE).min(all.len());
    let mut out = vec![(
        "Metrics",
        Value::Array(all[offset..end].iter().map(|k| metric_value(k)).collect()),
    )];
    if end < all.len() {
        out.push(("NextToken", Value::Text(format!("lm1:{end}:0"))));
    }
    Ok(obj(out))
}

// ---- GetMetricData ----

struct Query {
    id: String,
    label: String,
    key: MetricKey,
    stat: Stat,
    period_ms: i64,
    unit: Option<String>,
    return_data: bool,
}

fn valid_period(p: f64) -> bool {
    p.fract() == 0.0 && p >= 1.0 && ([1.0, 5.0, 10.0, 20.0, 30.0].contains(&p) || p % 60.0 == 0.0)
}

fn parse_query(raw: &Value, index: usize) -> Result<Query, CwError> {
    let f = format!("MetricDataQueries.member.{}", index + 1);
    let q = map(raw, &f)?;
    let id = required(q, "Id", &format!("{f}.Id"))?;
    check_len(id, &format!("{f}.Id"), 1, 255)?;
    let mut chars = id.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase())
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(CwError::invalid(format!(
            "The value {id} for parameter {f}.Id is invalid: it must start with a lowercase letter and contain only letters, digits and underscores."
        )));
    }
    if get(q, "Expression").is_some() {
        return Err(CwError::invalid(format!(
            "{f}.Expression: metric math is not supported by the agentdeck CloudWatch stand-in; query each metric with MetricStat."
        )));
    }
    let stat_v = get(q, "MetricStat").ok_or_else(|| {
        CwError::missing(format!(
            "The parameter {f}.MetricStat is required (the stand-in has no Expression support)."
        ))
    })?;
    let ms = map(stat_v, &format!("{f}.MetricStat"))?;
    let metric = map(
        get(ms, "Metric").ok_or_else(|| {
            CwError::missing(format!("The parameter {f}.MetricStat.Metric is required."))
        })?,
        &format!("{f}.MetricStat.Metric"),
    )?;
    let ns = required(
        metric,
        "Namespace",
        &format!("{f}.MetricStat.Metric.Namespace"),
    )?;
    let name = required(
        metric,
        "MetricName",
        &format!("{f}.MetricStat.Metric.MetricName"),
    )?;
    let dims = dimensions(metric, &format!("{f}.MetricStat.Metric"))?;
    let period = num(ms, "Period", &format!("{f}.MetricStat.Period"))?.ok_or_else(|| {
        CwError::missing(format!("The parameter {f}.MetricStat.Period is required."))
    })?;
    if !valid_period(period) {
        return Err(CwError::invalid(format!(
            "The parameter {f}.MetricStat.Period must be 1, 5, 10, 20, 30, or a multiple of 60 (it is {period})."
        )));
    }
    let stat_name = required(ms, "Stat", &format!("{f}.MetricStat.Stat"))?;
    let stat = Stat::parse(stat_name).ok_or_else(|| {
        CwError::invalid(format!(
            "The value {stat_name} for parameter {f}.MetricStat.Stat is not supported: use SampleCount, Average, Sum, Minimum, Maximum or a percentile pNN (the stand-in computes no trimmed or windowed statistics)."
        ))
    })?;
    let unit = text(ms, "Unit", &format!("{f}.MetricStat.Unit"))?;
    if let Some(u) = unit {
        if Unit::parse(u).is_none() {
            return Err(CwError::invalid(format!(
                "The value {u} for parameter {f}.MetricStat.Unit is not a CloudWatch unit."
            )));
        }
    }
    let return_data = match get(q, "ReturnData") {
        None => true,
        Some(Value::Bool(on)) => *on,
        Some(_) => return Err(wrong(&format!("{f}.ReturnData"), "a boolean")),
    };
    Ok(Query {
        id: id.to_owned(),
        label: text(q, "Label", &format!("{f}.Label"))?
            .unwrap_or(name)
            .to_owned(),
        key: MetricKey::new(ns, name, dims),
        stat,
        period_ms: (period * 1000.0) as i64,
        unit: unit.map(str::to_owned),
        return_data,
    })
}

fn get_metric_data(store: &MetricStore, req: &Map, now_ms: i64) -> Result<Value, CwError> {
    let raw = list(req, "MetricDataQueries", "MetricDataQueries")?;
    if raw.is_empty() {
        return Err(CwError::missing(
            "The parameter MetricDataQueries is required.",
        ));
    }
    if raw.len() > MAX_QUERIES {
        return Err(CwError::invalid(format!(
            "The collection MetricDataQueries must not have a size greater than {MAX_QUERIES} (it has {}).",
            raw.len()
        )));
    }
    let queries: Vec<Query> = raw
        .iter()
        .enumerate()
        .map(|(i, v)| parse_query(v, i))
        .collect::<Result<_, _>>()?;
    for (i, q) in queries.iter().enumerate() {
        if queries[..i].iter().any(|p| p.id == q.id) {
            return Err(CwError::invalid(format!(
                "The values for parameter id in MetricDataQueries are not unique: {} appears twice.",
                q.id
            )));
        }
    }
    let start = time(req, "StartTime", "StartTime")?
        .ok_or_else(|| CwError::missing("The parameter StartTime is required."))?;
    let end = time(req, "EndTime", "EndTime")?
        .ok_or_else(|| CwError::missing("The parameter EndTime is required."))?;
    if start >= end {
        return Err(CwError::invalid(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    let ascending = match text(req, "ScanBy", "ScanBy")? {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(other) => {
            return Err(CwError::invalid(format!(
                "The value {other} for parameter ScanBy is invalid: use TimestampDescending or TimestampAscending."
            )));
        }
    };
    let max_points = match num(req, "MaxDatapoints", "MaxDatapoints")? {
        None => DEFAULT_MAX_DATAPOINTS,
        Some(n) if n >= 1.0 && n.fract() == 0.0 => n as usize,
        Some(n) => {
            return Err(CwError::invalid(format!(
                "The parameter MaxDatapoints must be a positive integer (it is {n})."
            )));
        }
    };
    let (first_q, first_p) = paging_token(req, "gmd1:")?.unwrap_or((0, 0));
    if first_q > queries.len() {
        return Err(CwError::next_token(
            "The NextToken points past the queries of this request.",
        ));
    }
    let mut budget = max_points;
    let mut results = Vec::new();
    let mut next = None;
    for (qi, q) in queries.iter().enumerate().skip(first_q) {
        if !q.return_data {
            continue;
        }
        if budget == 0 {
            next = Some((qi, 0));
            break;
        }
        let window = store::Window {
            start_ms: start,
            end_ms: end,
            period_ms: q.period_ms,
            now_ms,
        };
        let mut points = store.series(&q.key, q.stat, &window, q.unit.as_deref());
        if !ascending {
            points.reverse();
        }
        let from = if qi == first_q {
            first_p.min(points.len())
        } else {
            0
        };
        let take = (points.len() - from).min(budget);
        let page = &points[from..from + take];
        budget -= take;
        let partial = from + take < points.len();
        results.push(obj(vec![
            ("Id", Value::Text(q.id.clone())),
            ("Label", Value::Text(q.label.clone())),
            (
                "Timestamps",
                Value::Array(page.iter().map(|(t, _)| timestamp(*t)).collect()),
            ),
            (
                "Values",
                Value::Array(page.iter().map(|(_, v)| Value::Float(*v)).collect()),
            ),
            (
                "StatusCode",
                Value::Text(if partial { "PartialData" } else { "Complete" }.to_owned()),
            ),
        ]));
        if partial {
            next = Some((qi, from + take));
            break;
        }
    }
    let mut out = vec![
        ("MetricDataResults", Value::Array(results)),
        ("Messages", Value::Array(Vec::new())),
    ];
    if let Some((q, p)) = next {
        out.push(("NextToken", Value::Text(format!("gmd1:{q}:{p}"))));
    }
    Ok(obj(out))
}

// ---- PutMetricData ----

struct Datum {
    key: MetricKey,
    at_ms: i64,
    unit: Unit,
    sample: Sample,
}

/// 2^360, CloudWatch's bound on a value's magnitude.
fn value_bound() -> f64 {
    2f64.powi(360)
}

fn check_value(v: f64, field: &str) -> Result<f64, CwError> {
    if !v.is_finite() || v.abs() > value_bound() {
        return Err(CwError::invalid(format!(
            "The value {v} for parameter {field} is invalid: values must be finite and within -2^360 to 2^360."
        )));
    }
    Ok(v)
}

fn parse_datum(raw: &Value, index: usize, ns: &str, now_ms: i64) -> Result<Datum, CwError> {
    let f = format!("MetricData.member.{}", index + 1);
    let d = map(raw, &f)?;
    let name = required(d, "MetricName", &format!("{f}.MetricName"))?;
    check_len(name, &format!("{f}.MetricName"), 1, 255)?;
    let dims = dimensions(d, &f)?;
    let at_ms = time(d, "Timestamp", &format!("{f}.Timestamp"))?.unwrap_or(now_ms);
    if at_ms < now_ms - 14 * 86_400_000 {
        return Err(CwError::invalid(format!(
            "The parameter {f}.Timestamp must specify a time no more than two weeks in the past."
        )));
    }
    if at_ms > now_ms + 2 * 3_600_000 {
        return Err(CwError::invalid(format!(
            "The parameter {f}.Timestamp must specify a time no more than two hours in the future."
        )));
    }
    let unit_name = text(d, "Unit", &format!("{f}.Unit"))?.unwrap_or("None");
    let unit = Unit::parse(unit_name).ok_or_else(|| {
        CwError::invalid(format!(
            "The value {unit_name} for parameter {f}.Unit is not a CloudWatch unit."
        ))
    })?;
    if let Some(r) = num(d, "StorageResolution", &format!("{f}.StorageResolution"))? {
        if ![1.0, 60.0].contains(&r) {
            return Err(CwError::invalid(format!(
                "The value {r} for parameter {f}.StorageResolution is invalid: use 1 (high resolution) or 60."
            )));
        }
    }
    let value = num(d, "Value", &format!("{f}.Value"))?;
    let values = get(d, "Values");
    let stats = get(d, "StatisticValues");
    let given =
        usize::from(value.is_some()) + usize::from(values.is_some()) + usize::from(stats.is_some());
    if given > 1 {
        return Err(CwError::combination(format!(
            "The parameters {f}.Value, {f}.Values and {f}.StatisticValues are mutually exclusive; give one."
        )));
    }
    let sample = if let Some(v) = value {
        Sample::Value(check_value(v, &format!("{f}.Value"))?)
    } else if values.is_some() {
        let vals = list(d, "Values", &format!("{f}.Values"))?;
        if vals.is_empty() || vals.len() > MAX_VALUES {
            return Err(CwError::invalid(format!(
                "The collection {f}.Values must have between 1 and {MAX_VALUES} values (it has {}).",
                vals.len()
            )));
        }
        let counts = list(d, "Counts", &format!("{f}.Counts"))?;
        if !counts.is_empty() && counts.len() != vals.len() {
            return Err(CwError::invalid(format!(
                "The collections {f}.Values and {f}.Counts must have the same length ({} values, {} counts).",
                vals.len(),
                counts.len()
            )));
        }
        let mut out = Vec::with_capacity(vals.len());
        for (j, item) in vals.iter().enumerate() {
            let at = format!("{f}.Values.member.{}", j + 1);
            let value = check_value(number(item, &at)?, &at)?;
            let weight = match counts.get(j) {
                None => 1.0,
                Some(raw_count) => {
                    let field = format!("{f}.Counts.member.{}", j + 1);
                    let count = check_value(number(raw_count, &field)?, &field)?;
                    if count < 0.0 {
                        return Err(CwError::invalid(format!(
                            "The value {count} for parameter {field} must not be negative."
                        )));
                    }
                    count
                }
            };
            out.push((value, weight));
        }
        Sample::Values(out)
    } else if let Some(raw_stats) = stats {
        let sf = format!("{f}.StatisticValues");
        let set = map(raw_stats, &sf)?;
        let field = |k: &str| -> Result<f64, CwError> {
            let name = format!("{sf}.{k}");
            let given = num(set, k, &name)?
                .ok_or_else(|| CwError::missing(format!("The parameter {name} is required.")))?;
            check_value(given, &name)
        };
        let (count, sum, min, max) = (
            field("SampleCount")?,
            field("Sum")?,
            field("Minimum")?,
            field("Maximum")?,
        );
        if count <= 0.0 || min > max {
            return Err(CwError::invalid(format!(
                "The parameter {sf} is invalid: SampleCount must be positive and Minimum at most Maximum."
            )));
        }
        Sample::Stats {
            count,
            sum,
            min,
            max,
        }
    } else {
        return Err(CwError::missing(format!(
            "The parameter {f} needs one of Value, Values or StatisticValues."
        )));
    };
    Ok(Datum {
        key: MetricKey::new(ns, name, dims),
        at_ms,
        unit,
        sample,
    })
}

fn put_metric_data(
    store: &mut MetricStore,
    req: &Map,
    now: DateTime<Utc>,
) -> Result<Value, CwError> {
    let ns = required(req, "Namespace", "Namespace")?;
    check_len(ns, "Namespace", 1, 255)?;
    if ns.starts_with("AWS/") {
        return Err(CwError::invalid(format!(
            "The value {ns} for parameter Namespace is invalid: namespaces starting with AWS/ are reserved for AWS services."
        )));
    }
    if get(req, "EntityMetricData").is_some() {
        return Err(CwError::invalid(
            "EntityMetricData is not supported by the agentdeck CloudWatch stand-in: send MetricData.",
        ));
    }
    let raw = list(req, "MetricData", "MetricData")?;
    if raw.is_empty() {
        return Err(CwError::missing("The parameter MetricData is required."));
    }
    if raw.len() > MAX_PUT_DATUMS {
        return Err(CwError::invalid(format!(
            "The collection MetricData must not have a size greater than {MAX_PUT_DATUMS} (it has {}).",
            raw.len()
        )));
    }
    let now_ms = now.timestamp_millis();
    // All or nothing: validate every datum before storing any.
    let data: Vec<Datum> = raw
        .iter()
        .enumerate()
        .map(|(i, v)| parse_datum(v, i, ns, now_ms))
        .collect::<Result<_, _>>()?;
    for d in data {
        store.put(d.key, d.at_ms, d.unit, d.sample);
    }
    Ok(obj(Vec::new()))
}

// ---- What the simulated agents publish ----

/// How one InvokeAgent call ended, as Bedrock's metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ClientError,
    ServerError,
    Throttled,
}

/// One model call inside an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCall {
    pub latency_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// One InvokeAgent call the simulator answered.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub at: DateTime<Utc>,
    pub alias_arn: String,
    /// None when the agent is unknown (only the `Operation` dimension set then).
    pub model_id: Option<String>,
    pub outcome: Outcome,
    pub total_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub model_calls: Vec<ModelCall>,
}

/// (metric, unit, sample).
type Recorded = (InvocationMetric, Unit, Sample);

/// Every metric `record_invocation` may write. Its number is its slot in the store's group for
/// the call's alias and model, within each dimension set.
#[derive(Debug, Clone, Copy)]
enum InvocationMetric {
    InvocationCount,
    InvocationClientErrors,
    InvocationServerErrors,
    InvocationThrottles,
    TotalTime,
    Ttft,
    ModelInvocationCount,
    ModelLatency,
    InputTokenCount,
    OutputTokenCount,
}

impl InvocationMetric {
    /// How many there are (the slots of one dimension set): one past the last variant's
    /// number, so a metric added before it cannot share a slot with another set's.
    const ALL: usize = Self::OutputTokenCount as usize + 1;

    fn name(self) -> &'static str {
        match self {
            Self::InvocationCount => "InvocationCount",
            Self::InvocationClientErrors => "InvocationClientErrors",
            Self::InvocationServerErrors => "InvocationServerErrors",
            Self::InvocationThrottles => "InvocationThrottles",
            Self::TotalTime => "TotalTime",
            Self::Ttft => "TTFT",
            Self::ModelInvocationCount => "ModelInvocationCount",
            Self::ModelLatency => "ModelLatency",
            Self::InputTokenCount => "InputTokenCount",
            Self::OutputTokenCount => "OutputTokenCount",
        }
    }
}

/// Record the `AWS/Bedrock/Agents` metrics Bedrock publishes for one call, under each of its
/// dimension sets: `Operation`; `Operation, ModelId`; `Operation, AgentAliasArn, ModelId`.
/// The metrics of an alias and model are found once and then written by their place in the
/// store (`MetricStore::put_in`): this runs for every simulated call.
pub fn record_invocation(store: &mut MetricStore, inv: &Invocation) {
    use InvocationMetric as M;
    let mut metrics: Vec<Recorded> = Vec::with_capacity(M::ALL);
    metrics.push((M::InvocationCount, Unit::COUNT, Sample::Value(1.0)));
    let err = match inv.outcome {
        Outcome::Ok => None,
        Outcome::ClientError => Some(M::InvocationClientErrors),
        Outcome::ServerError => Some(M::InvocationServerErrors),
        Outcome::Throttled => Some(M::InvocationThrottles),
    };
    if let Some(e) = err {
        metrics.push((e, Unit::COUNT, Sample::Value(1.0)));
    }
    if let Some(t) = inv.total_ms {
        metrics.push((M::TotalTime, Unit::MILLISECONDS, Sample::Value(t as f64)));
    }
    if let Some(t) = inv.ttft_ms {
        metrics.push((M::Ttft, Unit::MILLISECONDS, Sample::Value(t as f64)));
    }
    if !inv.model_calls.is_empty() {
        let calls = &inv.model_calls;
        metrics.push((
            M::ModelInvocationCount,
            Unit::COUNT,
            Sample::Value(calls.len() as f64),
        ));
        let latency = match calls.as_slice() {
            [one] => Sample::Value(one.latency_ms as f64),
            many => Sample::Values(many.iter().map(|c| (c.latency_ms as f64, 1.0)).collect()),
        };
        metrics.push((M::ModelLatency, Unit::MILLISECONDS, latency));
        let tokens = |f: fn(&ModelCall) -> u64| calls.iter().map(f).sum::<u64>() as f64;
        metrics.push((
            M::InputTokenCount,
            Unit::COUNT,
            Sample::Value(tokens(|c| c.input_tokens)),
        ));
        metrics.push((
            M::OutputTokenCount,
            Unit::COUNT,
            Sample::Value(tokens(|c| c.output_tokens)),
        ));
    }
    let op = || ("Operation".to_owned(), "InvokeAgent".to_owned());
    let model = inv.model_id.as_deref();
    // Without a model only the `Operation` set is written (`sets` of 1).
    let sets = if model.is_some() { 3 } else { 1 };
    let dims = |set: usize| match (set, model) {
        (1, Some(m)) => vec![op(), ("ModelId".to_owned(), m.to_owned())],
        (2, Some(m)) => vec![
            op(),
            ("AgentAliasArn".to_owned(), inv.alias_arn.clone()),
            ("ModelId".to_owned(), m.to_owned()),
        ],
        _ => vec![op()],
    };
    let group = store.group(&inv.alias_arn, model.unwrap_or(""));
    let at_ms = inv.at.timestamp_millis();
    for set in 0..sets {
        for (metric, unit, sample) in &mut metrics {
            // The last dimension set takes the sample; the others copy it.
            let sample = if set + 1 == sets {
                std::mem::replace(sample, Sample::Value(0.0))
            } else {
                sample.clone()
            };
            store.put_in(
                (group, set * M::ALL + *metric as usize),
                || MetricKey::new(BEDROCK_NAMESPACE, metric.name(), dims(set)),
                at_ms,
                *unit,
                sample,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::store::{MetricKey, MetricStore, Stat, Window};
    use super::{Invocation, ModelCall, Outcome, record_invocation};

    fn call(at_ms: i64, alias: &str, model: Option<&str>, outcome: Outcome) -> Invocation {
        Invocation {
            at: chrono::DateTime::from_timestamp_millis(at_ms).unwrap(),
            alias_arn: format!("arn:aws:bedrock:us-east-1:1:agent-alias/AGENT/{alias}"),
            model_id: model.map(str::to_owned),
            outcome,
            total_ms: Some(900),
            ttft_ms: None,
            model_calls: vec![
                ModelCall {
                    latency_ms: 300,
                    input_tokens: 10,
                    output_tokens: 4,
                },
                ModelCall {
                    latency_ms: 500,
                    input_tokens: 20,
                    output_tokens: 6,
                },
            ],
        }
    }

    fn sum(store: &MetricStore, name: &str, dims: &[(&str, &str)], stat: Stat) -> f64 {
        let key = MetricKey::new(
            "AWS/Bedrock/Agents",
            name,
            dims.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let window = Window {
            start_ms: 0,
            end_ms: 600_000,
            period_ms: 600_000,
            now_ms: 600_000,
        };
        store
            .series(&key, stat, &window, None)
            .iter()
            .map(|(_, v)| v)
            .sum()
    }

    /// Each call lands under all three dimension sets, each set's metrics apart, whatever
    /// order the aliases and models come in.
    #[test]
    fn a_call_is_counted_under_each_dimension_set() {
        let mut store = MetricStore::default();
        record_invocation(&mut store, &call(1_000, "A", Some("m1"), Outcome::Ok));
        record_invocation(&mut store, &call(2_000, "B", Some("m1"), Outcome::Ok));
        record_invocation(
            &mut store,
            &call(3_000, "A", Some("m2"), Outcome::Throttled),
        );
        record_invocation(&mut store, &call(4_000, "A", Some("m1"), Outcome::Ok));
        record_invocation(&mut store, &call(5_000, "A", None, Outcome::ClientError));
        let op = ("Operation", "InvokeAgent");
        let arn = |a: &str| format!("arn:aws:bedrock:us-east-1:1:agent-alias/AGENT/{a}");
        let (a, b) = (arn("A"), arn("B"));
        let count = |dims: &[(&str, &str)]| sum(&store, "InvocationCount", dims, Stat::Sum);
        assert_eq!(count(&[op]), 5.0);
        assert_eq!(count(&[op, ("ModelId", "m1")]), 3.0);
        assert_eq!(count(&[op, ("ModelId", "m2")]), 1.0);
        assert_eq!(count(&[op, ("AgentAliasArn", &a), ("ModelId", "m1")]), 2.0);
        assert_eq!(count(&[op, ("AgentAliasArn", &b), ("ModelId", "m1")]), 1.0);
        assert_eq!(count(&[op, ("AgentAliasArn", &a), ("ModelId", "m2")]), 1.0);
        let only = |name: &str, dims: &[(&str, &str)]| sum(&store, name, dims, Stat::Sum);
        assert_eq!(only("InvocationThrottles", &[op]), 1.0);
        assert_eq!(only("InvocationThrottles", &[op, ("ModelId", "m2")]), 1.0);
        assert_eq!(only("InvocationThrottles", &[op, ("ModelId", "m1")]), 0.0);
        assert_eq!(only("InvocationClientErrors", &[op]), 1.0);
        // Every model call's latency is a value of its own; tokens are summed per call.
        let m1 = [op, ("AgentAliasArn", &a), ("ModelId", "m1")];
        assert_eq!(sum(&store, "ModelLatency", &m1, Stat::SampleCount), 4.0);
        assert_eq!(sum(&store, "ModelLatency", &m1, Stat::Sum), 1_600.0);
        assert_eq!(only("InputTokenCount", &m1), 60.0);
        assert_eq!(only("OutputTokenCount", &[op]), 50.0);
        assert_eq!(sum(&store, "TotalTime", &m1, Stat::Maximum), 900.0);
    }
}
