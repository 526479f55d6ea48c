//! Bedrock's own figures per agent alias, as CloudWatch's `AWS/Bedrock/Agents` metrics give
//! them (read by `crate::cloudwatch::read_bedrock`; shown by the metrics pane and
//! `agentdeck cloudwatch read`). Plain data: strings in it came from CloudWatch and are
//! untrusted until sanitised.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What CloudWatch says about one agent alias (and model) over the window. A figure is `None`
/// when CloudWatch has no such metric or no datapoint for it in the window; counts with no
/// datapoint are 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AliasFigures {
    pub alias_arn: String,
    pub agent_id: String,
    pub alias_id: String,
    pub model_id: String,
    pub invocations: f64,
    pub total_time_avg_ms: Option<f64>,
    pub total_time_p95_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub model_latency_avg_ms: Option<f64>,
    pub model_latency_p95_ms: Option<f64>,
    pub model_invocations: f64,
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub client_errors: f64,
    pub server_errors: f64,
    pub throttles: f64,
    /// InvocationCount per `period`, oldest first (periods with no calls are absent).
    pub invocations_by_period: Vec<(DateTime<Utc>, f64)>,
}
