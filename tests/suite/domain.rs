//! Pure domain rules: status transitions are total and nothing leaves a final state; the
//! decision planner refuses what the rules refuse; argument hashes bind to the exact input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use agentdeck::domain::decision::{Refusal, Verdict, plan};
use agentdeck::domain::policy::RiskTier;
use agentdeck::domain::status::{InputState, Status};
use common::{ask, at, multi_request, sample_request, test_policy};

#[test]
fn transitions_are_total_and_final_states_never_change() {
    for from in Status::ALL {
        for to in Status::ALL {
            let allowed = from.check_transition(to).is_ok();
            let expected = from == to || !from.is_final();
            assert_eq!(allowed, expected, "{from} -> {to}");
        }
    }
}

#[test]
fn status_folds_input_states() {
    let c = || InputState::Confirmed {
        by: vec!["a".into()],
        at: at(1),
    };
    let d = || InputState::Denied {
        by: "b".into(),
        at: at(1),
    };
    assert_eq!(
        Status::from_inputs(&[InputState::Pending], false),
        Status::Pending
    );
    assert_eq!(
        Status::from_inputs(&[InputState::Pending], true),
        Status::Expired
    );
    assert_eq!(
        Status::from_inputs(&[c(), InputState::Pending], false),
        Status::PartiallyDecided
    );
    assert_eq!(
        Status::from_inputs(
            &[InputState::Approving {
                approvers: vec!["a".into()]
            }],
            false
        ),
        Status::PartiallyDecided
    );
    assert_eq!(Status::from_inputs(&[c(), c()], false), Status::Approved);
    assert_eq!(Status::from_inputs(&[d(), d()], false), Status::Rejected);
    assert_eq!(Status::from_inputs(&[c(), d()], false), Status::Mixed);
    // Fully decided before expiry stays decided after it.
    assert_eq!(Status::from_inputs(&[c(), d()], true), Status::Mixed);
    // Partly decided when the session expires: expired.
    assert_eq!(
        Status::from_inputs(&[c(), InputState::Pending], true),
        Status::Expired
    );
}

#[test]
fn the_plan_binds_to_the_hash_and_names_what_is_wrong() {
    let policy = test_policy();
    let r = multi_request("inv-1", &[RiskTier::Medium, RiskTier::Low]);
    let mut a = ask(&r, Verdict::Confirm, &[0], "alice", None);
    a.inputs[0].1 = "0".repeat(64);
    assert!(matches!(
        plan(&r, &[], &policy, &a, at(1)),
        Err(Refusal::ArgumentsChanged { index: 0, .. })
    ));
    let a = ask(&r, Verdict::Confirm, &[7], "alice", None);
    assert!(matches!(
        plan(&r, &[], &policy, &a, at(1)),
        Err(Refusal::NoSuchInput {
            index: 7,
            count: 2,
            ..
        })
    ));
    let a = ask(&r, Verdict::Deny, &[0], "alice", None);
    assert!(matches!(
        plan(&r, &[], &policy, &a, at(1)),
        Err(Refusal::ReasonRequired { .. })
    ));
    let a = ask(&r, Verdict::Confirm, &[0], "alice", None);
    assert!(matches!(
        plan(&r, &[], &policy, &a, r.expires_at),
        Err(Refusal::Expired { .. })
    ));
    let ok = plan(&r, &[], &policy, &a, at(1)).unwrap();
    assert_eq!(
        (ok.status_before, ok.status_after),
        (Status::Pending, Status::PartiallyDecided)
    );
    let b = ask(&r, Verdict::Deny, &[1], "bob", Some("no"));
    let done = plan(&r, &ok.decisions, &policy, &b, at(2)).unwrap();
    assert_eq!(done.status_after, Status::Mixed);
    let mut all = ok.decisions.clone();
    all.extend(done.decisions);
    let again = ask(&r, Verdict::Confirm, &[1], "carol", None);
    let err = plan(&r, &all, &policy, &again, at(3)).unwrap_err();
    assert!(err.to_string().contains("already decided"), "{err}");
}

#[test]
fn critical_needs_a_reason_and_two_distinct_approvers() {
    let policy = test_policy();
    let r = sample_request("inv-c", RiskTier::Critical);
    let a = ask(&r, Verdict::Confirm, &[0], "alice", None);
    assert!(matches!(
        plan(&r, &[], &policy, &a, at(1)),
        Err(Refusal::ReasonRequired {
            tier: RiskTier::Critical,
            ..
        })
    ));
    let a = ask(&r, Verdict::Confirm, &[0], "alice", Some("ok"));
    let first = plan(&r, &[], &policy, &a, at(1)).unwrap();
    assert_eq!(first.status_after, Status::PartiallyDecided);
    let err = plan(&r, &first.decisions, &policy, &a, at(2)).unwrap_err();
    assert!(
        matches!(err, Refusal::SameApprover { needed: 2, .. }),
        "{err}"
    );
    let b = ask(&r, Verdict::Confirm, &[0], "bob", Some("ok too"));
    assert_eq!(
        plan(&r, &first.decisions, &policy, &b, at(2))
            .unwrap()
            .status_after,
        Status::Approved
    );
}

#[test]
fn any_change_to_the_arguments_changes_the_hash() {
    let r = sample_request("inv-h", RiskTier::High);
    let h = r.input_hash(0).unwrap();
    let mut changed = r.clone();
    changed.inputs[0].parameters[0].value.push('0');
    assert_ne!(changed.input_hash(0).unwrap(), h);
    let mut renamed = r.clone();
    renamed.inputs[0].parameters[0].name = "amount2".into();
    assert_ne!(renamed.input_hash(0).unwrap(), h);
    let mut other = r.clone();
    other.id = agentdeck::domain::approval::ApprovalId("inv-other".into());
    assert_ne!(
        other.input_hash(0).unwrap(),
        h,
        "a hash never applies to another request"
    );
    assert_eq!(r.clone().input_hash(0).unwrap(), h);
}

#[test]
fn the_default_policy_rates_an_http_delete_high() {
    let config = agentdeck::config::Config::defaults().unwrap();
    let doc = common::envelope(
        "inv-del",
        &[
            serde_json::json!({"apiInvocationInput": {"actionGroup": "clusters", "apiPath": "/clusters/{clusterName}",
            "httpMethod": "DELETE", "actionInvocationType": "USER_CONFIRMATION_AND_RESULT",
            "parameters": [{"name": "clusterName", "type": "string", "value": "staging-1"}]}}),
        ],
    );
    let r = common::request_from_doc(&doc, &config.policy, common::t0());
    assert_eq!(r.tier(), RiskTier::High);
    assert_eq!(r.assessments[0].rule.as_deref(), Some("http-delete"));
}
