//! The resume payload builder: every actionInvocationType x verdict in function and API form,
//! three inputs in one return of control, a collaborator's agentId passed through, executor
//! failures, the plan from recorded decisions, and the SDK member built from each result.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use agentdeck::bedrock::wire;
use agentdeck::domain::approval::{
    ActionInvocationType, ActionTarget, ApprovalId, InvocationInput, Parameter,
};
use agentdeck::domain::decision::{Decision, Verdict};
use agentdeck::domain::policy::{Policy, RiskTier};
use agentdeck::domain::resume::{
    DecidedInput, ExecutionCall, Executor, MAX_QUOTED_REASON, ResumePlan, build_results,
};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

/// Records every call and answers with a body naming the action.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Value>>,
    fail: bool,
}

impl Executor for Recorder {
    fn execute(&self, call: &ExecutionCall<'_>) -> Result<String, String> {
        self.calls.lock().unwrap().push(call.to_json());
        if self.fail {
            Err("connection reset by the payments API".into())
        } else {
            Ok(format!(r#"{{"done":"{}"}}"#, call.input.action_label()))
        }
    }
}

fn function(ty: ActionInvocationType) -> InvocationInput {
    InvocationInput {
        action_group: "payments".into(),
        target: ActionTarget::Function {
            function: "transferFunds".into(),
        },
        parameters: vec![Parameter {
            name: "amount".into(),
            kind: "number".into(),
            value: "5000".into(),
        }],
        invocation_type: ty,
        agent_id: None,
        collaborator_name: None,
    }
}

fn api(ty: ActionInvocationType) -> InvocationInput {
    InvocationInput {
        action_group: "ops".into(),
        target: ActionTarget::Api {
            api_path: "/clusters/{name}".into(),
            http_method: "DELETE".into(),
            request_body: None,
        },
        parameters: vec![],
        invocation_type: ty,
        agent_id: None,
        collaborator_name: None,
    }
}

fn plan(inputs: Vec<(InvocationInput, Verdict, Option<&str>)>) -> ResumePlan {
    ResumePlan {
        invocation_id: "inv-1".into(),
        agent_id: "PAYAGENT01".into(),
        agent_alias_id: "PRODALIAS".into(),
        session_id: "sess-1".into(),
        session_attributes: BTreeMap::new(),
        inputs: inputs
            .into_iter()
            .map(|(input, verdict, reason)| DecidedInput {
                input,
                verdict,
                reason: reason.map(str::to_owned),
                reviewers: vec!["alice".into()],
            })
            .collect(),
    }
}

fn one(input: InvocationInput, verdict: Verdict) -> (Value, usize) {
    let exec = Recorder::default();
    let results = build_results(
        &plan(vec![(input, verdict, Some("amount too high"))]),
        &exec,
    );
    assert_eq!(results.len(), 1);
    // The SDK member built from the result says the same as the domain's wire JSON.
    let member = wire::result_member(&results[0]).unwrap();
    assert_eq!(wire::result_member_json(&member), results[0].to_wire());
    (results[0].to_wire(), exec.calls.lock().unwrap().len())
}

const REJECTED: &str = "A human reviewer rejected this action, so it was not run. Reason: \
     \"amount too high\". Do not retry it; tell the user it was rejected and why.";

#[test]
fn user_confirmation_answers_confirm_or_deny_only() {
    use ActionInvocationType::UserConfirmation as T;
    assert_eq!(
        one(function(T), Verdict::Confirm),
        (
            json!({"functionResult": {"actionGroup": "payments", "function": "transferFunds",
                                      "confirmationState": "CONFIRM"}}),
            0
        )
    );
    assert_eq!(
        one(function(T), Verdict::Deny),
        (
            json!({"functionResult": {"actionGroup": "payments", "function": "transferFunds",
                                      "confirmationState": "DENY"}}),
            0
        )
    );
    assert_eq!(
        one(api(T), Verdict::Confirm),
        (
            json!({"apiResult": {"actionGroup": "ops", "apiPath": "/clusters/{name}",
                                 "httpMethod": "DELETE", "confirmationState": "CONFIRM"}}),
            0
        )
    );
    assert_eq!(
        one(api(T), Verdict::Deny).0["apiResult"]["confirmationState"],
        json!("DENY")
    );
}

#[test]
fn user_confirmation_and_result_runs_the_executor_on_confirm_and_quotes_the_reason_on_deny() {
    use ActionInvocationType::UserConfirmationAndResult as T;
    assert_eq!(
        one(function(T), Verdict::Confirm),
        (
            json!({"functionResult": {"actionGroup": "payments", "function": "transferFunds",
                "confirmationState": "CONFIRM",
                "responseBody": {"TEXT": {"body": "{\"done\":\"payments.transferFunds\"}"}}}}),
            1
        )
    );
    assert_eq!(
        one(function(T), Verdict::Deny),
        (
            json!({"functionResult": {"actionGroup": "payments", "function": "transferFunds",
                "confirmationState": "DENY", "responseBody": {"TEXT": {"body": REJECTED}}}}),
            0
        )
    );
    assert_eq!(
        one(api(T), Verdict::Confirm),
        (
            json!({"apiResult": {"actionGroup": "ops", "apiPath": "/clusters/{name}",
                "httpMethod": "DELETE", "confirmationState": "CONFIRM", "httpStatusCode": 200,
                "responseBody": {"application/json": {"body": "{\"done\":\"ops DELETE /clusters/{name}\"}"}}}}),
            1
        )
    );
    assert_eq!(
        one(api(T), Verdict::Deny),
        (
            json!({"apiResult": {"actionGroup": "ops", "apiPath": "/clusters/{name}",
                "httpMethod": "DELETE", "confirmationState": "DENY", "httpStatusCode": 403,
                "responseBody": {"application/json": {"body": json!({"message": REJECTED}).to_string()}}}}),
            0
        )
    );
}

#[test]
fn result_returns_the_body_on_confirm_and_reprompts_on_deny() {
    use ActionInvocationType::Result as T;
    assert_eq!(
        one(function(T), Verdict::Confirm),
        (
            json!({"functionResult": {"actionGroup": "payments", "function": "transferFunds",
                "responseBody": {"TEXT": {"body": "{\"done\":\"payments.transferFunds\"}"}}}}),
            1
        )
    );
    assert_eq!(
        one(function(T), Verdict::Deny),
        (
            json!({"functionResult": {"actionGroup": "payments", "function": "transferFunds",
                "responseState": "REPROMPT", "responseBody": {"TEXT": {"body": REJECTED}}}}),
            0
        )
    );
    let (deny_api, calls) = one(api(T), Verdict::Deny);
    assert_eq!(calls, 0);
    assert_eq!(deny_api["apiResult"]["responseState"], json!("REPROMPT"));
    assert_eq!(deny_api["apiResult"]["httpStatusCode"], json!(403));
    assert!(deny_api["apiResult"].get("confirmationState").is_none());
    let (ok_api, calls) = one(api(T), Verdict::Confirm);
    assert_eq!(calls, 1);
    assert_eq!(ok_api["apiResult"]["httpStatusCode"], json!(200));
    assert!(ok_api["apiResult"].get("responseState").is_none());
}

#[test]
fn three_inputs_get_three_results_in_order_and_a_collaborator_keeps_its_agent_id() {
    let mut collab = api(ActionInvocationType::UserConfirmationAndResult);
    collab.agent_id = Some("PAYAGENT01".into());
    collab.collaborator_name = Some("payments".into());
    let p = plan(vec![
        (
            function(ActionInvocationType::UserConfirmation),
            Verdict::Confirm,
            None,
        ),
        (collab, Verdict::Deny, Some("not in prod")),
        (
            function(ActionInvocationType::Result),
            Verdict::Confirm,
            None,
        ),
    ]);
    let exec = Recorder::default();
    let results = build_results(&p, &exec);
    let wire: Vec<Value> = results
        .iter()
        .map(agentdeck::domain::resume::InvocationResult::to_wire)
        .collect();
    assert_eq!(wire.len(), 3);
    assert_eq!(
        wire[0]["functionResult"]["confirmationState"],
        json!("CONFIRM")
    );
    assert_eq!(wire[1]["apiResult"]["confirmationState"], json!("DENY"));
    assert_eq!(wire[1]["apiResult"]["agentId"], json!("PAYAGENT01"));
    assert!(
        wire[1]["apiResult"]["responseBody"]["application/json"]["body"]
            .as_str()
            .unwrap()
            .contains("not in prod")
    );
    assert!(wire[2]["functionResult"]["responseBody"]["TEXT"]["body"].is_string());
    // Only the third was executed, with where it came from so it can be idempotent.
    let calls = exec.calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["invocationId"], json!("inv-1"));
    assert_eq!(calls[0]["inputIndex"], json!(2));
    assert_eq!(calls[0]["function"], json!("transferFunds"));
    assert_eq!(calls[0]["parameters"][0]["value"], json!("5000"));
}

#[test]
fn an_executor_failure_reprompts_with_the_error_and_a_long_reason_is_cut() {
    let exec = Recorder {
        fail: true,
        ..Recorder::default()
    };
    let r = build_results(
        &plan(vec![(
            api(ActionInvocationType::UserConfirmationAndResult),
            Verdict::Confirm,
            None,
        )]),
        &exec,
    );
    let w = r[0].to_wire();
    assert_eq!(w["apiResult"]["confirmationState"], json!("CONFIRM"));
    assert_eq!(w["apiResult"]["responseState"], json!("REPROMPT"));
    assert_eq!(w["apiResult"]["httpStatusCode"], json!(500));
    assert!(
        w["apiResult"]["responseBody"]["application/json"]["body"]
            .as_str()
            .unwrap()
            .contains("connection reset")
    );

    let long = "x".repeat(MAX_QUOTED_REASON * 3);
    let r = build_results(
        &plan(vec![(
            function(ActionInvocationType::Result),
            Verdict::Deny,
            Some(&long),
        )]),
        &Recorder::default(),
    );
    let body = r[0].body.as_ref().unwrap().1.clone();
    assert!(body.len() < MAX_QUOTED_REASON + 200, "{}", body.len());
    assert!(body.contains('…'));
}

fn decision(index: usize, verdict: Verdict, reviewer: &str, secs: i64) -> Decision {
    Decision {
        request: ApprovalId("inv-1".into()),
        input_index: index,
        verdict,
        reviewer: reviewer.into(),
        reason: Some(format!("{reviewer} says {}", verdict.as_str())),
        decided_at: Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
        dwell_ms: None,
        args_hash: String::new(),
    }
}

#[test]
fn the_plan_exists_only_when_every_input_is_final_and_carries_the_deciding_reason() {
    let doc = json!({
        "agentId": "PAYAGENT01", "agentAliasId": "PRODALIAS", "sessionId": "sess-1",
        "eventTime": "2023-11-14T22:13:20Z",
        "returnControl": {"invocationId": "inv-1", "invocationInputs": [
            {"functionInvocationInput": {"actionGroup": "payments", "function": "transferFunds",
                "actionInvocationType": "USER_CONFIRMATION"}},
            {"functionInvocationInput": {"actionGroup": "payments", "function": "refund",
                "actionInvocationType": "RESULT"}}]}
    });
    // Critical by default: two distinct approvers.
    let policy = Policy {
        default_tier: RiskTier::Critical,
        ..Policy::default()
    };
    let request = agentdeck::domain::validate::submission(
        &doc,
        &agentdeck::domain::validate::SubmitContext {
            policy: &policy,
            now: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            ttl_secs: &|_| 600,
        },
    )
    .unwrap();
    let mut ds = vec![decision(0, Verdict::Confirm, "alice", 1)];
    assert!(ResumePlan::from_decisions(&request, &ds, &policy).is_none());
    ds.push(decision(0, Verdict::Confirm, "bob", 2));
    assert!(ResumePlan::from_decisions(&request, &ds, &policy).is_none());
    ds.push(decision(1, Verdict::Deny, "carol", 3));
    let p = ResumePlan::from_decisions(&request, &ds, &policy).unwrap();
    assert_eq!(p.invocation_id, "inv-1");
    assert_eq!(p.inputs[0].verdict, Verdict::Confirm);
    assert_eq!(p.inputs[0].reviewers, vec!["alice", "bob"]);
    assert_eq!(p.inputs[0].reason.as_deref(), Some("bob says confirm"));
    assert_eq!(p.inputs[1].verdict, Verdict::Deny);
    assert_eq!(p.inputs[1].reason.as_deref(), Some("carol says deny"));
    // The plan round-trips through the outbox's JSON.
    let back: ResumePlan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}
