//! Builders shared by the integration tests: realistic requests made the way production makes
//! them (a submission document through `validate::submission` under a policy), and decision
//! asks bound to the right argument hashes.
//!
//! The usual entry points:
//! - `sample_request("inv-1", RiskTier::High)`: a one-input request that `test_policy()` rates
//!   at that tier, raised at `t0()`, expiring `TTL_SECS` later.
//! - `multi_request("inv-2", &[RiskTier::Low, RiskTier::Critical])`: one input per tier given.
//! - `ask(&request, Verdict::Confirm, &[0], "alice", None)`: a decision on some inputs.
//! - `policy_with_rules(&[...])` / `request_from_doc(&doc, &policy, now)` for anything else.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use agentdeck::domain::approval::ApprovalRequest;
use agentdeck::domain::decision::{DecisionAsk, Verdict};
use agentdeck::domain::policy::{ControlReason, Policy, RiskTier, Rule, RuleSpec};
use agentdeck::domain::validate::{SubmitContext, submission};

/// The agents' idle session TTL the builders use.
pub const TTL_SECS: u32 = 600;

/// The fixed time every sample request is raised at.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// `t0()` plus `secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

/// A policy from `(rule name, function glob, predicates, tier)` rules; any other action gets
/// the default medium tier. Tier requirements are the defaults: low/medium/high need one
/// approver, critical needs a reason and two distinct approvers.
pub fn policy_with_rules(rules: &[(&str, &str, &[&str], RiskTier)]) -> Policy {
    Policy {
        rules: rules
            .iter()
            .map(|(name, function, when, tier)| {
                Rule::compile(RuleSpec {
                    name: (*name).to_owned(),
                    action_group: None,
                    function: Some((*function).to_owned()),
                    api_path: None,
                    http_method: None,
                    when: when.iter().map(|w| (*w).to_owned()).collect(),
                    tier: *tier,
                    reason: ControlReason::HighRiskAction,
                })
                .unwrap()
            })
            .collect(),
        ..Policy::default()
    }
}

/// The policy the sample builders are rated under:
/// `lookup_*` is low; `transfer` over 1000 is high, to a `prod-*` account critical; the rest
/// (e.g. `update_address`) medium.
pub fn test_policy() -> Policy {
    policy_with_rules(&[
        ("read-only", "lookup_*", &[], RiskTier::Low),
        (
            "big-transfer",
            "transfer",
            &["amount > 1000"],
            RiskTier::High,
        ),
        (
            "prod-transfer",
            "transfer",
            &["account matches prod-*"],
            RiskTier::Critical,
        ),
    ])
}

/// A `functionInvocationInput` with string parameters.
pub fn function_input(group: &str, function: &str, params: &[(&str, &str)]) -> Value {
    json!({"functionInvocationInput": {
        "actionGroup": group,
        "function": function,
        "actionInvocationType": "USER_CONFIRMATION",
        "parameters": params
            .iter()
            .map(|(n, v)| json!({"name": n, "type": "string", "value": v}))
            .collect::<Vec<_>>(),
    }})
}

/// The input `test_policy()` rates at `tier`.
pub fn input_for(tier: RiskTier) -> Value {
    match tier {
        RiskTier::Low => function_input("customers", "lookup_balance", &[("accountId", "acc-7")]),
        RiskTier::Medium => function_input(
            "customers",
            "update_address",
            &[("customerId", "c-42"), ("address", "1 Quay St")],
        ),
        RiskTier::High => function_input(
            "payments",
            "transfer",
            &[("amount", "5000"), ("account", "dev-7")],
        ),
        RiskTier::Critical => function_input(
            "payments",
            "transfer",
            &[("amount", "250000"), ("account", "prod-7")],
        ),
    }
}

/// A submission document as an agent runner would post it.
pub fn envelope(id: &str, inputs: &[Value]) -> Value {
    json!({
        "agentId": "AGENT01",
        "agentAliasId": "ALIAS01",
        "sessionId": format!("session-{id}"),
        "agentVersion": "3",
        "sessionAttributes": {"team": "payments"},
        "rationale": "The customer asked for it.",
        "returnControl": {"invocationId": id, "invocationInputs": inputs},
    })
}

/// Validates `doc` under `policy` at `now`, with `TTL_SECS` for every agent; panics with the
/// validation error if the document is wrong.
pub fn request_from_doc(doc: &Value, policy: &Policy, now: DateTime<Utc>) -> ApprovalRequest {
    let ttl = |_: &str| TTL_SECS;
    submission(
        doc,
        &SubmitContext {
            policy,
            now,
            ttl_secs: &ttl,
        },
    )
    .unwrap_or_else(|e| panic!("test document does not validate: {e}"))
}

/// A one-input request rated `tier` by `test_policy()`, raised at `t0()`.
pub fn sample_request(id: &str, tier: RiskTier) -> ApprovalRequest {
    multi_request(id, &[tier])
}

/// A request with one input per tier given, in order, raised at `t0()`.
pub fn multi_request(id: &str, tiers: &[RiskTier]) -> ApprovalRequest {
    let inputs: Vec<Value> = tiers.iter().map(|t| input_for(*t)).collect();
    let doc = envelope(id, &inputs);
    request_from_doc(&doc, &test_policy(), t0())
}

/// A decision ask on `inputs` of `request`, with the argument hashes the reviewer saw (an
/// empty hash for an index the request does not have).
pub fn ask(
    request: &ApprovalRequest,
    verdict: Verdict,
    inputs: &[usize],
    reviewer: &str,
    reason: Option<&str>,
) -> DecisionAsk {
    DecisionAsk {
        request: request.id.clone(),
        verdict,
        inputs: inputs
            .iter()
            .map(|i| (*i, request.input_hash(*i).unwrap_or_default()))
            .collect(),
        reviewer: reviewer.to_owned(),
        reason: reason.map(str::to_owned),
        dwell_ms: Some(1500),
    }
}

/// Turns a file of the current schema back into what version 10 wrote: each block's raw JSON
/// as text, not packed.
pub fn downgrade_to_v10(raw: &rusqlite::Connection) {
    agentdeck::store::sqlite::pack::register(raw).unwrap();
    raw.execute_batch(
        "CREATE TABLE blocks10 (
            id INTEGER PRIMARY KEY, inv INTEGER NOT NULL REFERENCES invocations (id),
            first_seq INTEGER NOT NULL CHECK (first_seq > 0),
            n INTEGER NOT NULL CHECK (n > 0 AND n <= 4096), steps TEXT NOT NULL,
            kinds TEXT NOT NULL, raw TEXT NOT NULL) STRICT;
         INSERT INTO blocks10 SELECT id, inv, first_seq, n, steps, kinds, trace_json(raw)
            FROM trace_blocks ORDER BY id;
         DROP TABLE trace_blocks;
         ALTER TABLE blocks10 RENAME TO trace_blocks;
         CREATE UNIQUE INDEX trace_blocks_seq ON trace_blocks (inv, first_seq);
         PRAGMA user_version = 10;",
    )
    .unwrap();
}

/// Turns a file of the current schema back into what version 9 wrote: a row per trace event,
/// numbered in the order the events were written, and a search index keyed by those numbers
/// (emptied, so the next search fills it again).
pub fn downgrade_to_v9(raw: &rusqlite::Connection) {
    downgrade_to_v10(raw);
    raw.execute_batch(
        "CREATE TABLE trace_events (
            id INTEGER PRIMARY KEY, inv INTEGER NOT NULL REFERENCES invocations (id),
            seq INTEGER NOT NULL CHECK (seq > 0), step INTEGER NOT NULL, kind TEXT NOT NULL,
            raw TEXT NOT NULL) STRICT;
         INSERT INTO trace_events (inv, seq, step, kind, raw)
            SELECT b.inv, b.first_seq + s.key, s.value,
            json_extract(b.kinds, '$[' || s.key || ']'), json_extract(b.raw, '$[' || s.key || ']')
            FROM trace_blocks b, json_each(b.steps) s ORDER BY b.id, s.key;
         DROP TABLE trace_blocks;
         CREATE UNIQUE INDEX trace_events_seq ON trace_events (inv, seq);
         INSERT INTO trace_text (trace_text) VALUES ('delete-all');
         UPDATE trace_text_state SET indexed_upto = 0;
         PRAGMA user_version = 9;",
    )
    .unwrap();
}

/// The schema version a store file is at (`PRAGMA user_version`).
pub fn schema_version(raw: &rusqlite::Connection) -> i64 {
    raw.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}
