//! `agentdeck demo`'s store: a fresh SQLite file seeded with example requests, each submitted
//! through the same validation, policy and store path as `agentdeck submit`.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::CliError;
use crate::config::Config;
use crate::domain::validate::{self, SubmitContext};
use crate::store::ApprovalStore;

const EXAMPLES: &str = include_str!("demo.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Example {
    age_secs: i64,
    submission: serde_json::Value,
}

/// Submits the example requests as if raised `ageSecs` ago. Returns how many were queued.
pub fn seed(
    store: &dyn ApprovalStore,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<usize, CliError> {
    let examples: Vec<Example> = serde_json::from_str(EXAMPLES)
        .map_err(|e| CliError::bad_input(format!("demo examples: {e}")))?;
    let ttl = |agent: &str| config.ttl_secs(agent);
    for ex in &examples {
        let mut doc = ex.submission.clone();
        let raised = now - Duration::seconds(ex.age_secs);
        doc["eventTime"] = serde_json::Value::String(raised.to_rfc3339());
        let request = validate::submission(
            &doc,
            &SubmitContext {
                policy: &config.policy,
                now,
                ttl_secs: &ttl,
            },
        )
        .map_err(|e| CliError::bad_input(format!("demo example: {e}")))?;
        store.submit(&request, "demo")?;
    }
    Ok(examples.len())
}
