//! `SqliteStore` against real files: the port's behaviour, the audit check against tampering
//! through a second raw connection, racing deciders on separate connections, and migrations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use agentdeck::domain::approval::{ApprovalId, ApprovalRequest};
use agentdeck::domain::decision::{Refusal, Verdict};
use agentdeck::domain::policy::{ControlReason, RiskTier};
use agentdeck::domain::status::Status;
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{ApprovalStore, AuditEntry, AuditReport, StoreError};
use common::{ask, at, multi_request, sample_request, t0, test_policy};
use rusqlite::Connection;
use tempfile::TempDir;

fn store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("deck").join("approvals.db")).unwrap();
    (dir, store)
}

fn id(s: &str) -> ApprovalId {
    ApprovalId(s.to_owned())
}

fn refusal(result: Result<impl std::fmt::Debug, StoreError>) -> Refusal {
    match result {
        Err(StoreError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn entries(store: &SqliteStore) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    store
        .audit_each(&mut |e| {
            all.push(e);
            Ok(())
        })
        .unwrap();
    all
}

/// The seq of the entry of `kind` on `request`.
fn entry_seq(store: &SqliteStore, kind: &str, request: &str) -> u64 {
    entries(store)
        .into_iter()
        .find(|e| e.kind == kind && e.request.as_str() == request)
        .unwrap_or_else(|| panic!("no {kind} entry on {request}"))
        .seq
}

#[test]
fn submit_then_get_round_trips_the_request() {
    let (_dir, store) = store();
    let request = multi_request("inv-1", &[RiskTier::Low, RiskTier::Critical]);
    store.submit(&request, "runner").unwrap();
    let got = store.get(&request.id, &test_policy(), t0()).unwrap();
    assert_eq!(got.request, request);
    assert!(got.decisions.is_empty());
    assert_eq!(got.status, Status::Pending);
    // An open stored status moves on with the clock.
    assert_eq!(
        store
            .get(&request.id, &test_policy(), at(600))
            .unwrap()
            .status,
        Status::Expired
    );
    assert!(matches!(
        store.get(&id("nope"), &test_policy(), t0()),
        Err(StoreError::NotFound(s)) if s == "nope"
    ));
}

#[test]
fn a_duplicate_id_is_refused_and_nothing_changes() {
    let (_dir, store) = store();
    store
        .submit(&sample_request("inv-1", RiskTier::Low), "runner")
        .unwrap();
    let again = sample_request("inv-1", RiskTier::High);
    let err = store.submit(&again, "runner").unwrap_err();
    assert!(
        matches!(&err, StoreError::Duplicate(d) if d.as_str() == "inv-1"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "request inv-1 is already in the store");
    let counts = store.counts().unwrap();
    assert_eq!((counts.requests, counts.audit_entries), (1, 1));
    // A batch with one duplicate writes none of it.
    let batch = [
        sample_request("inv-2", RiskTier::Low),
        sample_request("inv-1", RiskTier::Low),
    ];
    assert!(matches!(
        store.submit_batch(&batch, "import"),
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(store.counts().unwrap().requests, 1);
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn resolve_takes_an_exact_id_or_a_unique_prefix() {
    let (_dir, store) = store();
    for i in ["inv-abc1", "inv-abc2", "inv-xyz", "inv-1", "inv-10"] {
        store
            .submit(&sample_request(i, RiskTier::Low), "runner")
            .unwrap();
    }
    assert_eq!(store.resolve("inv-xyz").unwrap(), id("inv-xyz"));
    assert_eq!(store.resolve("inv-x").unwrap(), id("inv-xyz"));
    assert_eq!(store.resolve("inv-abc2").unwrap(), id("inv-abc2"));
    // An exact id wins even when it is also a prefix of another.
    assert_eq!(store.resolve("inv-1").unwrap(), id("inv-1"));
    assert_eq!(store.resolve("inv-10").unwrap(), id("inv-10"));
    match store.resolve("inv-abc") {
        Err(e @ StoreError::Ambiguous { .. }) => {
            assert_eq!(
                e.to_string(),
                "\"inv-abc\" matches 2 requests; give more of the id"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.resolve("inv"),
        Err(StoreError::Ambiguous { count: 5, .. })
    ));
    assert!(matches!(store.resolve("inv-q"), Err(StoreError::NotFound(s)) if s == "inv-q"));
    assert!(matches!(store.resolve("INV"), Err(StoreError::NotFound(_))));
    assert!(matches!(store.resolve(""), Err(StoreError::NotFound(s)) if s.is_empty()));
}

#[test]
fn open_queue_lists_open_unexpired_requests_from_columns() {
    let (_dir, store) = store();
    let policy = test_policy();
    let critical = sample_request("inv-crit", RiskTier::Critical);
    let medium = multi_request("inv-med", &[RiskTier::Medium, RiskTier::Low]);
    let decided = sample_request("inv-done", RiskTier::Low);
    for r in [&critical, &medium, &decided] {
        store.submit(r, "runner").unwrap();
    }
    store
        .decide(
            &ask(&critical, Verdict::Confirm, &[0], "alice", Some("checked")),
            &policy,
            at(5),
        )
        .unwrap();
    store
        .decide(
            &ask(&decided, Verdict::Confirm, &[0], "alice", None),
            &policy,
            at(6),
        )
        .unwrap();

    let mut queue = store.open_queue(at(10)).unwrap();
    queue.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = queue.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["inv-crit", "inv-med"]);
    let c = &queue[0];
    assert_eq!(
        (c.tier, c.reason, c.rule.as_deref(), c.action.as_str()),
        (
            RiskTier::Critical,
            ControlReason::HighRiskAction,
            Some("prod-transfer"),
            "payments.transfer"
        )
    );
    assert_eq!(
        c.key_params,
        [
            ("amount".to_owned(), "250000".to_owned()),
            ("account".to_owned(), "prod-7".to_owned())
        ]
    );
    assert_eq!(
        (c.status, c.approvals, c.inputs),
        (Status::PartiallyDecided, 1, 1)
    );
    assert_eq!(
        (c.agent_id.as_str(), c.agent_alias_id.as_str()),
        ("AGENT01", "ALIAS01")
    );
    assert_eq!(c.session_id, "session-inv-crit");
    assert_eq!((c.raised_at, c.expires_at), (t0(), at(600)));
    let m = &queue[1];
    assert_eq!(
        (
            m.tier,
            m.reason,
            m.rule.as_deref(),
            m.inputs,
            m.status,
            m.approvals
        ),
        (
            RiskTier::Medium,
            ControlReason::ApprovalRequired,
            None,
            2,
            Status::Pending,
            0
        )
    );
    assert_eq!(m.action, "customers.update_address");
    // Past expiry nothing is open, swept or not.
    assert!(store.open_queue(at(600)).unwrap().is_empty());
}

#[test]
fn confirm_and_deny_are_per_input_and_deny_needs_a_reason() {
    let (_dir, store) = store();
    let policy = test_policy();
    let request = multi_request("inv-1", &[RiskTier::Low, RiskTier::Medium, RiskTier::High]);
    store.submit(&request, "runner").unwrap();

    let out = store
        .decide(
            &ask(&request, Verdict::Confirm, &[0, 2], "alice", None),
            &policy,
            at(30),
        )
        .unwrap();
    assert_eq!(out.status, Status::PartiallyDecided);
    assert_eq!(out.decisions.len(), 2);
    assert_eq!(out.audit_seq, 2);

    let r = refusal(store.decide(
        &ask(&request, Verdict::Deny, &[1], "bob", None),
        &policy,
        at(40),
    ));
    assert!(
        matches!(
            r,
            Refusal::ReasonRequired {
                action: "reject",
                ..
            }
        ),
        "{r:?}"
    );
    let r = refusal(store.decide(
        &ask(&request, Verdict::Deny, &[1], "bob", Some("  ")),
        &policy,
        at(40),
    ));
    assert!(
        matches!(r, Refusal::ReasonRequired { .. }),
        "a blank reason is no reason: {r:?}"
    );
    let r = refusal(store.decide(
        &ask(&request, Verdict::Deny, &[7], "bob", Some("x")),
        &policy,
        at(40),
    ));
    assert!(
        matches!(
            r,
            Refusal::NoSuchInput {
                index: 7,
                count: 3,
                ..
            }
        ),
        "{r:?}"
    );

    let out = store
        .decide(
            &ask(&request, Verdict::Deny, &[1], "bob", Some("wrong address")),
            &policy,
            at(45),
        )
        .unwrap();
    assert_eq!(out.status, Status::Mixed);

    let got = store.get(&request.id, &policy, at(50)).unwrap();
    assert_eq!(got.status, Status::Mixed);
    let summary: Vec<(usize, Verdict, &str)> = got
        .decisions
        .iter()
        .map(|d| (d.input_index, d.verdict, d.reviewer.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (0, Verdict::Confirm, "alice"),
            (2, Verdict::Confirm, "alice"),
            (1, Verdict::Deny, "bob")
        ]
    );
    assert_eq!(got.decisions[2].reason.as_deref(), Some("wrong address"));
    assert_eq!(got.decisions[2].decided_at, at(45));
    assert_eq!(got.decisions[0].dwell_ms, Some(1500));
    assert_eq!(got.decisions[0].args_hash, request.input_hash(0).unwrap());
    // Nothing leaves a final state.
    let r = refusal(store.decide(
        &ask(&request, Verdict::Confirm, &[1], "carol", None),
        &policy,
        at(60),
    ));
    assert!(matches!(r, Refusal::AlreadyDecided { .. }), "{r:?}");
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn an_input_named_twice_in_one_ask_is_one_decision() {
    let (_dir, store) = store();
    let policy = test_policy();
    let request = sample_request("inv-1", RiskTier::Critical);
    store.submit(&request, "runner").unwrap();
    let twice = ask(&request, Verdict::Confirm, &[0, 0], "alice", Some("ok"));
    let out = store.decide(&twice, &policy, at(1)).unwrap();
    assert_eq!(
        (out.decisions.len(), out.status),
        (1, Status::PartiallyDecided)
    );
    let row = &store.open_queue(at(2)).unwrap()[0];
    assert_eq!(row.approvals, 1, "one approver of the two needed");
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn the_first_inputs_parameters_include_its_request_body() {
    let (_dir, store) = store();
    let api = serde_json::json!({"apiInvocationInput": {
        "actionGroup": "payments", "apiPath": "/transfers", "httpMethod": "post",
        "parameters": [{"name": "account", "type": "string", "value": "dev-1"}],
        "requestBody": {"content": {"application/json": {"properties": [
            {"name": "amount", "type": "number", "value": "5000"}]}}}}});
    let request =
        common::request_from_doc(&common::envelope("inv-api", &[api]), &test_policy(), t0());
    store.submit(&request, "runner").unwrap();
    let row = &store.open_queue(at(1)).unwrap()[0];
    assert_eq!(row.action, "payments POST /transfers");
    assert_eq!(
        row.key_params,
        [
            ("account".to_owned(), "dev-1".to_owned()),
            ("amount".to_owned(), "5000".to_owned())
        ]
    );
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn all_denied_is_rejected_and_all_confirmed_approved() {
    let (_dir, store) = store();
    let policy = test_policy();
    let a = multi_request("inv-a", &[RiskTier::Low, RiskTier::Medium]);
    let b = multi_request("inv-b", &[RiskTier::Low, RiskTier::Medium]);
    store
        .submit_batch(&[a.clone(), b.clone()], "runner")
        .unwrap();
    let out = store
        .decide(
            &ask(&a, Verdict::Deny, &[0, 1], "alice", Some("no")),
            &policy,
            at(1),
        )
        .unwrap();
    assert_eq!(out.status, Status::Rejected);
    let out = store
        .decide(
            &ask(&b, Verdict::Confirm, &[0, 1], "alice", None),
            &policy,
            at(1),
        )
        .unwrap();
    assert_eq!(out.status, Status::Approved);
    assert!(store.open_queue(at(2)).unwrap().is_empty());
}

#[test]
fn a_critical_approval_needs_a_reason_and_two_distinct_approvers() {
    let (_dir, store) = store();
    let policy = test_policy();
    let request = sample_request("inv-1", RiskTier::Critical);
    store.submit(&request, "runner").unwrap();

    let r = refusal(store.decide(
        &ask(&request, Verdict::Confirm, &[0], "alice", None),
        &policy,
        at(1),
    ));
    assert!(
        matches!(
            r,
            Refusal::ReasonRequired {
                action: "approve",
                tier: RiskTier::Critical
            }
        ),
        "{r:?}"
    );
    let out = store
        .decide(
            &ask(&request, Verdict::Confirm, &[0], "alice", Some("ticket 7")),
            &policy,
            at(2),
        )
        .unwrap();
    assert_eq!(out.status, Status::PartiallyDecided);

    let r = refusal(store.decide(
        &ask(&request, Verdict::Confirm, &[0], "alice", Some("again")),
        &policy,
        at(3),
    ));
    assert!(
        matches!(&r, Refusal::SameApprover { reviewer, needed: 2, .. } if reviewer == "alice"),
        "{r:?}"
    );
    assert!(
        r.to_string()
            .contains("needs 2 distinct approvers and alice has already approved it")
    );

    let out = store
        .decide(
            &ask(
                &request,
                Verdict::Confirm,
                &[0],
                "bob",
                Some("ticket 7 too"),
            ),
            &policy,
            at(4),
        )
        .unwrap();
    assert_eq!(out.status, Status::Approved);
    let got = store.get(&request.id, &policy, at(5)).unwrap();
    assert_eq!(got.decisions.len(), 2);
    let r = refusal(store.decide(
        &ask(&request, Verdict::Deny, &[0], "carol", Some("late")),
        &policy,
        at(6),
    ));
    assert!(
        matches!(&r, Refusal::AlreadyDecided { by, .. } if by == "bob"),
        "{r:?}"
    );

    // A deny by anyone, even after one approval, finalises.
    let other = sample_request("inv-2", RiskTier::Critical);
    store.submit(&other, "runner").unwrap();
    store
        .decide(
            &ask(&other, Verdict::Confirm, &[0], "alice", Some("fine")),
            &policy,
            at(1),
        )
        .unwrap();
    let out = store
        .decide(
            &ask(&other, Verdict::Deny, &[0], "carol", Some("not fine")),
            &policy,
            at(2),
        )
        .unwrap();
    assert_eq!(out.status, Status::Rejected);
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts.decisions, counts.confirms, counts.denies),
        (4, 3, 1)
    );
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn changed_arguments_are_refused_and_nothing_is_written() {
    let (_dir, store) = store();
    let policy = test_policy();
    let request = sample_request("inv-1", RiskTier::High);
    store.submit(&request, "runner").unwrap();
    let mut stale = ask(&request, Verdict::Confirm, &[0], "alice", None);
    stale.inputs[0].1 = "0".repeat(64);
    let r = refusal(store.decide(&stale, &policy, at(1)));
    assert!(
        matches!(&r, Refusal::ArgumentsChanged { index: 0, .. }),
        "{r:?}"
    );
    assert!(
        r.to_string()
            .contains("the arguments differ from the ones you saw")
    );
    let counts = store.counts().unwrap();
    assert_eq!((counts.decisions, counts.audit_entries), (0, 1));
    assert_eq!(
        store.get(&request.id, &policy, at(1)).unwrap().status,
        Status::Pending
    );
}

#[test]
fn deciding_an_unknown_request_is_not_found() {
    let (_dir, store) = store();
    let request = sample_request("inv-ghost", RiskTier::Low);
    let err = store
        .decide(
            &ask(&request, Verdict::Confirm, &[0], "alice", None),
            &test_policy(),
            at(1),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound(s) if s == "inv-ghost"),
        "{err:?}"
    );
}

#[test]
fn the_loser_learns_who_decided_and_when() {
    let (_dir, store) = store();
    let policy = test_policy();
    let request = sample_request("inv-1", RiskTier::Medium);
    store.submit(&request, "runner").unwrap();
    store
        .decide(
            &ask(&request, Verdict::Confirm, &[0], "alice", None),
            &policy,
            at(60),
        )
        .unwrap();
    let err = store
        .decide(
            &ask(&request, Verdict::Deny, &[0], "bob", Some("no")),
            &policy,
            at(61),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "request inv-1 input 1 already decided (confirm) by alice at 2026-03-02 09:01:00 UTC"
    );
}

#[test]
fn expiry_refuses_decisions_and_the_sweep_marks_each_request_once() {
    let (_dir, store) = store();
    let policy = test_policy();
    let due = sample_request("inv-due", RiskTier::Medium);
    let partial = sample_request("inv-partial", RiskTier::Critical);
    let done = sample_request("inv-done", RiskTier::Low);
    let later = common::request_from_doc(
        &common::envelope("inv-later", &[common::input_for(RiskTier::Low)]),
        &policy,
        at(300),
    );
    store
        .submit_batch(
            &[due.clone(), partial.clone(), done.clone(), later],
            "runner",
        )
        .unwrap();
    store
        .decide(
            &ask(&partial, Verdict::Confirm, &[0], "alice", Some("ok")),
            &policy,
            at(10),
        )
        .unwrap();
    store
        .decide(
            &ask(&done, Verdict::Confirm, &[0], "alice", None),
            &policy,
            at(10),
        )
        .unwrap();

    let r = refusal(store.decide(
        &ask(&due, Verdict::Confirm, &[0], "alice", None),
        &policy,
        at(600),
    ));
    assert!(
        matches!(r, Refusal::Expired { at: t, .. } if t == at(600)),
        "{r:?}"
    );
    assert!(r.to_string().contains("expired at 2026-03-02 09:10:00 UTC"));

    assert_eq!(store.expire_due(at(599), "sweeper").unwrap(), 0);
    assert_eq!(store.expire_due(at(600), "sweeper").unwrap(), 2);
    assert_eq!(
        store.expire_due(at(601), "sweeper").unwrap(),
        0,
        "a second sweep marks nothing"
    );
    for (r, status) in [
        (&due, Status::Expired),
        (&partial, Status::Expired),
        (&done, Status::Approved),
    ] {
        assert_eq!(
            store.get(&r.id, &policy, at(0)).unwrap().status,
            status,
            "{}",
            r.id
        );
    }
    // Once swept, even a caller whose clock is behind cannot decide it.
    let r = refusal(store.decide(
        &ask(&due, Verdict::Confirm, &[0], "bob", None),
        &policy,
        at(1),
    ));
    assert!(matches!(r, Refusal::Expired { .. }), "{r:?}");
    let expired: Vec<String> = entries(&store)
        .into_iter()
        .filter(|e| e.kind == "expired")
        .map(|e| e.request.0)
        .collect();
    assert_eq!(expired, ["inv-due", "inv-partial"]);
    let queue: Vec<String> = store
        .open_queue(at(600))
        .unwrap()
        .into_iter()
        .map(|r| r.id.0)
        .collect();
    assert_eq!(queue, ["inv-later"]);
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn racing_sweepers_on_separate_connections_expire_each_request_once() {
    let (dir, store) = store();
    let requests: Vec<_> = (0..50)
        .map(|i| sample_request(&format!("inv-{i:03}"), RiskTier::Low))
        .collect();
    store.submit_batch(&requests, "runner").unwrap();
    let path = store.path().to_path_buf();
    let barrier = Arc::new(Barrier::new(4));
    let total: usize = (0..4)
        .map(|t| {
            let (path, barrier) = (path.clone(), barrier.clone());
            thread::spawn(move || {
                let mine = SqliteStore::open(&path).unwrap();
                barrier.wait();
                mine.expire_due(at(600), &format!("sweeper-{t}")).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(total, 50);
    assert_eq!(store.counts().unwrap().audit_entries, 100);
    assert!(store.audit_verify().unwrap().ok());
    drop(dir);
}

#[test]
fn counts_come_from_the_tables() {
    let (_dir, store) = store();
    let policy = test_policy();
    let a = sample_request("inv-a", RiskTier::Low);
    let b = sample_request("inv-b", RiskTier::Critical);
    let c = sample_request("inv-c", RiskTier::High);
    let d = sample_request("inv-d", RiskTier::Medium);
    store
        .submit_batch(&[a.clone(), b.clone(), c.clone(), d], "runner")
        .unwrap();
    store
        .decide(
            &ask(&a, Verdict::Confirm, &[0], "alice", None),
            &policy,
            at(10),
        )
        .unwrap();
    store
        .decide(
            &ask(&b, Verdict::Confirm, &[0], "alice", Some("ok")),
            &policy,
            at(20),
        )
        .unwrap();
    store
        .decide(
            &ask(&b, Verdict::Confirm, &[0], "bob", Some("ok")),
            &policy,
            at(25),
        )
        .unwrap();
    store
        .decide(
            &ask(&c, Verdict::Deny, &[0], "alice", Some("no")),
            &policy,
            at(40),
        )
        .unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.requests, 4);
    let by_status: BTreeMap<&str, u64> = counts
        .by_status
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    assert_eq!(by_status["approved"], 2);
    assert_eq!(by_status["rejected"], 1);
    assert_eq!(by_status["pending"], 1);
    assert_eq!(by_status["expired"], 0);
    assert_eq!(
        counts.by_tier_open,
        [
            (RiskTier::Low, 0),
            (RiskTier::Medium, 1),
            (RiskTier::High, 0),
            (RiskTier::Critical, 0)
        ]
    );
    assert_eq!(counts.sessions, 4);
    assert_eq!(counts.agents, [("AGENT01".to_owned(), 4)]);
    assert_eq!(
        (counts.decisions, counts.confirms, counts.denies),
        (4, 3, 1)
    );
    assert_eq!(
        counts.reviewers,
        [("alice".to_owned(), 3), ("bob".to_owned(), 1)]
    );
    // First decisions came 10 s, 20 s and 40 s after raising: the median is 20 s.
    assert_eq!(counts.median_time_to_decision_ms, Some(20_000));
    assert_eq!(counts.audit_entries, 8);
}

#[test]
fn the_audit_log_streams_in_order_across_pages_and_chains() {
    let (_dir, store) = store();
    let requests: Vec<_> = (0..700)
        .map(|i| sample_request(&format!("inv-{i:04}"), RiskTier::Low))
        .collect();
    store.submit_batch(&requests, "importer").unwrap();
    let all = entries(&store);
    assert_eq!(all.len(), 700);
    assert_eq!(all[0].prev_hash, "0".repeat(64));
    for (i, pair) in all.windows(2).enumerate() {
        assert_eq!(pair[1].seq, i as u64 + 2);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let first = &all[0];
    assert_eq!(
        (
            first.kind.as_str(),
            first.actor.as_str(),
            first.request.as_str()
        ),
        ("submitted", "importer", "inv-0000")
    );
    let payload: serde_json::Value = serde_json::from_str(&first.payload).unwrap();
    assert_eq!(payload["request"], "inv-0000");
    assert_eq!(payload["bodyHash"].as_str().unwrap().len(), 64);
    // The callback may call back into the store: the lock is not held across it.
    let mut seen = 0;
    store
        .audit_each(&mut |_| {
            seen += 1;
            store.counts().map(|_| ())
        })
        .unwrap();
    assert_eq!(seen, 700);
    // The callback's error stops the walk and comes back.
    let mut calls = 0;
    let err = store
        .audit_each(&mut |_| {
            calls += 1;
            Err(StoreError::Unavailable("reader went away".to_owned()))
        })
        .unwrap_err();
    assert_eq!(
        (calls, err.to_string().as_str()),
        (1, "store unavailable: reader went away")
    );
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn decisions_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let policy = test_policy();
    let request = sample_request("inv-1", RiskTier::Medium);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.submit(&request, "runner").unwrap();
        store
            .decide(
                &ask(&request, Verdict::Confirm, &[0], "alice", None),
                &policy,
                at(1),
            )
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    let got = store.get(&request.id, &policy, at(2)).unwrap();
    assert_eq!((got.status, got.decisions.len()), (Status::Approved, 1));
    assert!(store.audit_verify().unwrap().ok());
}

// ---- tampering, through a second raw connection on the same file --------------------------

/// A store holding: inv-a (high, confirmed by alice), inv-b (medium, pending), inv-c (critical,
/// one approval), inv-d (low, denied), submitted in that order.
fn populated() -> (TempDir, SqliteStore) {
    let (dir, store) = store();
    let policy = test_policy();
    let a = sample_request("inv-a", RiskTier::High);
    let b = sample_request("inv-b", RiskTier::Medium);
    let c = sample_request("inv-c", RiskTier::Critical);
    let d = sample_request("inv-d", RiskTier::Low);
    for r in [&a, &b, &c, &d] {
        store.submit(r, "runner").unwrap();
    }
    store
        .decide(
            &ask(&a, Verdict::Confirm, &[0], "alice", None),
            &policy,
            at(10),
        )
        .unwrap();
    store
        .decide(
            &ask(&c, Verdict::Confirm, &[0], "alice", Some("ok")),
            &policy,
            at(20),
        )
        .unwrap();
    store
        .decide(
            &ask(&d, Verdict::Deny, &[0], "bob", Some("no")),
            &policy,
            at(30),
        )
        .unwrap();
    assert!(store.audit_verify().unwrap().ok());
    (dir, store)
}

fn tamper(path: &Path, sql: &str) {
    let raw = Connection::open(path).unwrap();
    // A tamperer does not honour our constraints.
    raw.pragma_update(None, "foreign_keys", false).unwrap();
    let changed = raw.execute(sql, []).unwrap();
    assert!(changed > 0, "the tamper statement changed nothing: {sql}");
}

fn failing_report(store: &SqliteStore) -> AuditReport {
    let report = store.audit_verify().unwrap();
    assert!(!report.ok(), "tampering went unnoticed");
    report
}

fn assert_names(report: &AuditReport, needles: &[&str]) {
    assert!(
        report
            .problems
            .iter()
            .any(|p| needles.iter().all(|n| p.contains(n))),
        "no problem line names all of {needles:?}:\n{}",
        report.problems.join("\n")
    );
}

#[test]
fn an_untouched_store_verifies() {
    let (_dir, store) = populated();
    let report = store.audit_verify().unwrap();
    assert_eq!(report.entries, 7);
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn an_edited_parameter_in_a_body_is_caught() {
    let (_dir, store) = populated();
    tamper(
        store.path(),
        "UPDATE requests SET body = replace(body, '\"5000\"', '\"50\"') WHERE id = 'inv-a'",
    );
    let seq = entry_seq(&store, "submitted", "inv-a").to_string();
    let report = failing_report(&store);
    assert_names(
        &report,
        &["request inv-a", &format!("entry {seq}"), "edited"],
    );
    // Deciding on an edited request is refused rather than trusted.
    let err = store.get(&id("inv-a"), &test_policy(), at(1)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("inv-a")),
        "{err:?}"
    );
}

#[test]
fn an_edited_tier_column_is_caught() {
    let (_dir, store) = populated();
    tamper(
        store.path(),
        "UPDATE requests SET tier = 0 WHERE id = 'inv-c'",
    );
    let seq = entry_seq(&store, "submitted", "inv-c").to_string();
    let report = failing_report(&store);
    assert_names(
        &report,
        &[
            "request inv-c",
            &format!("entry {seq}"),
            "tier column is 0",
            "says 3",
        ],
    );
}

#[test]
fn a_deleted_request_row_is_caught() {
    let (_dir, store) = populated();
    tamper(store.path(), "DELETE FROM requests WHERE id = 'inv-b'");
    let seq = entry_seq(&store, "submitted", "inv-b").to_string();
    let report = failing_report(&store);
    assert_names(
        &report,
        &[&format!("audit entry {seq}"), "inv-b", "deleted"],
    );
}

#[test]
fn a_deleted_request_with_decisions_is_caught() {
    let (_dir, store) = populated();
    tamper(store.path(), "DELETE FROM requests WHERE id = 'inv-d'");
    let report = failing_report(&store);
    assert_names(&report, &["request inv-d decision 1", "deleted"]);
    assert_names(
        &report,
        &["(request inv-d)", "no longer in the requests table"],
    );
}

#[test]
fn an_edited_verdict_is_caught() {
    let (_dir, store) = populated();
    tamper(
        store.path(),
        "UPDATE decisions SET verdict = 'deny' WHERE request_id = 'inv-a'",
    );
    let seq = entry_seq(&store, "decided", "inv-a").to_string();
    let report = failing_report(&store);
    assert_names(
        &report,
        &[
            "request inv-a decision 1",
            &format!("audit entry {seq}"),
            "verdict",
        ],
    );
}

#[test]
fn a_deleted_decision_row_is_caught() {
    let (_dir, store) = populated();
    tamper(
        store.path(),
        "DELETE FROM decisions WHERE request_id = 'inv-c'",
    );
    let seq = entry_seq(&store, "decided", "inv-c").to_string();
    let report = failing_report(&store);
    assert_names(
        &report,
        &[
            &format!("audit entry {seq}"),
            "inv-c",
            "decision 1",
            "deleted",
        ],
    );
}

#[test]
fn an_edited_status_column_is_caught() {
    let (_dir, store) = populated();
    tamper(
        store.path(),
        "UPDATE requests SET status = 'approved' WHERE id = 'inv-b'",
    );
    let report = failing_report(&store);
    assert_names(
        &report,
        &["request inv-b", "status column is approved", "says pending"],
    );
}

#[test]
fn an_edited_audit_payload_is_caught() {
    let (_dir, store) = populated();
    let seq = entry_seq(&store, "decided", "inv-d");
    tamper(
        store.path(),
        &format!(
            "UPDATE audit SET payload = replace(payload, '\"bob\"', '\"mallory\"') WHERE seq = {seq}"
        ),
    );
    let report = failing_report(&store);
    assert_names(
        &report,
        &[
            &format!("audit entry {seq} (request inv-d)"),
            "hash does not recompute",
        ],
    );
}

#[test]
fn a_deleted_middle_entry_is_caught() {
    let (_dir, store) = populated();
    let seq = entry_seq(&store, "submitted", "inv-b");
    tamper(
        store.path(),
        &format!("DELETE FROM audit WHERE seq = {seq}"),
    );
    let report = failing_report(&store);
    assert_names(
        &report,
        &[
            &format!("audit entry {}", seq + 1),
            &format!("entry {seq} is missing"),
        ],
    );
    assert_names(&report, &["request inv-b", "no audit entry submitted it"]);
}

#[test]
fn a_truncated_tail_is_caught_by_the_cross_checks() {
    let (_dir, store) = populated();
    // The last two entries: the decisions on inv-c and inv-d. The chain alone still holds.
    tamper(store.path(), "DELETE FROM audit WHERE seq > 5");
    let report = failing_report(&store);
    assert!(
        report.problems.iter().all(|p| !p.contains("hash")),
        "{:?}",
        report.problems
    );
    assert_names(
        &report,
        &["request inv-c decision 1", "no decided audit entry"],
    );
    assert_names(
        &report,
        &["request inv-d decision 1", "no decided audit entry"],
    );
    assert_names(
        &report,
        &["request inv-d", "status column is rejected", "says pending"],
    );
}

#[test]
fn a_truncated_submit_is_caught() {
    let (_dir, store) = store();
    store
        .submit(&sample_request("inv-a", RiskTier::Low), "runner")
        .unwrap();
    store
        .submit(&sample_request("inv-b", RiskTier::Low), "runner")
        .unwrap();
    tamper(store.path(), "DELETE FROM audit WHERE seq = 2");
    let report = failing_report(&store);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_names(&report, &["request inv-b", "no audit entry submitted it"]);
}

#[test]
fn garbage_in_the_file_is_reported_not_panicked_on() {
    let (_dir, store) = populated();
    let raw = Connection::open(store.path()).unwrap();
    raw.execute_batch(
        "UPDATE requests SET body = '{not json', key_params = 'nope' WHERE id = 'inv-b';
         UPDATE audit SET payload = '[1,2' WHERE seq = 1;
         UPDATE audit SET kind = 'teleported' WHERE seq = 3;
         UPDATE decisions SET input_index = 9 WHERE request_id = 'inv-a';",
    )
    .unwrap();
    let report = failing_report(&store);
    assert_names(&report, &["request inv-b", "no longer parses"]);
    assert_names(&report, &["audit entry 1", "not a JSON object"]);
    assert_names(&report, &["audit entry 3", "unknown kind \"teleported\""]);
    assert_names(&report, &["request inv-a decision 1", "decides input 9"]);
    // Reading paths report corruption as errors, naming the request.
    assert!(matches!(store.open_queue(at(0)), Err(StoreError::Corrupt(m)) if m.contains("inv-b")));
    assert!(matches!(
        store.get(&id("inv-b"), &test_policy(), at(0)),
        Err(StoreError::Corrupt(_))
    ));
}

// ---- races between separate connections -------------------------------------------------

/// `threads` stores on one file, each deciding every request once in its own order as its own
/// reviewer. Returns how many of the attempts won and the refusals of the rest.
fn race(
    path: &Path,
    ids: &[ApprovalId],
    requests: &BTreeMap<ApprovalId, ApprovalRequest>,
    threads: usize,
    reason: Option<&'static str>,
) -> (usize, Vec<Refusal>) {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let path: PathBuf = path.to_path_buf();
            let barrier = barrier.clone();
            let mut order: Vec<ApprovalRequest> = ids.iter().map(|i| requests[i].clone()).collect();
            order.rotate_left(t * ids.len() / threads);
            if t % 2 == 1 {
                order.reverse();
            }
            thread::spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
                let policy = test_policy();
                barrier.wait();
                let mut wins = 0;
                let mut refusals = Vec::new();
                for r in &order {
                    let reviewer = format!("reviewer-{t}");
                    match store.decide(
                        &ask(r, Verdict::Confirm, &[0], &reviewer, reason),
                        &policy,
                        at(30),
                    ) {
                        Ok(_) => wins += 1,
                        Err(StoreError::Refused(refusal)) => refusals.push(refusal),
                        Err(other) => panic!("thread {t} on {}: {other}", r.id),
                    }
                }
                (wins, refusals)
            })
        })
        .collect();
    let mut wins = 0;
    let mut refusals = Vec::new();
    for h in handles {
        let (w, r) = h.join().unwrap();
        wins += w;
        refusals.extend(r);
    }
    (wins, refusals)
}

#[test]
fn eight_racing_deciders_one_winner_per_request() {
    let (_dir, store) = store();
    let requests: BTreeMap<ApprovalId, ApprovalRequest> = (0..200)
        .map(|i| sample_request(&format!("inv-{i:03}"), RiskTier::Medium))
        .map(|r| (r.id.clone(), r))
        .collect();
    let ids: Vec<ApprovalId> = requests.keys().cloned().collect();
    store
        .submit_batch(&requests.values().cloned().collect::<Vec<_>>(), "runner")
        .unwrap();

    let (wins, refusals) = race(store.path(), &ids, &requests, 8, None);
    assert_eq!(wins, 200);
    assert_eq!(refusals.len(), 7 * 200);
    assert!(
        refusals
            .iter()
            .all(|r| matches!(r, Refusal::AlreadyDecided { .. })),
        "{:?}",
        refusals
            .iter()
            .find(|r| !matches!(r, Refusal::AlreadyDecided { .. }))
    );
    let policy = test_policy();
    for i in &ids {
        let got = store.get(i, &policy, at(31)).unwrap();
        assert_eq!(
            (got.decisions.len(), got.status),
            (1, Status::Approved),
            "{i}"
        );
    }
    let counts = store.counts().unwrap();
    assert_eq!((counts.decisions, counts.audit_entries), (200, 400));
    let report = store.audit_verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn eight_racing_deciders_on_a_two_approver_tier_two_distinct_winners() {
    let (_dir, store) = store();
    let requests: BTreeMap<ApprovalId, ApprovalRequest> = (0..60)
        .map(|i| sample_request(&format!("inv-{i:03}"), RiskTier::Critical))
        .map(|r| (r.id.clone(), r))
        .collect();
    let ids: Vec<ApprovalId> = requests.keys().cloned().collect();
    store
        .submit_batch(&requests.values().cloned().collect::<Vec<_>>(), "runner")
        .unwrap();

    let (wins, refusals) = race(store.path(), &ids, &requests, 8, Some("change ticket 42"));
    assert_eq!(wins, 120);
    assert_eq!(refusals.len(), 6 * 60);
    assert!(
        refusals
            .iter()
            .all(|r| matches!(r, Refusal::AlreadyDecided { .. }))
    );
    let policy = test_policy();
    for i in &ids {
        let got = store.get(i, &policy, at(31)).unwrap();
        let approvers: BTreeSet<&str> = got.decisions.iter().map(|d| d.reviewer.as_str()).collect();
        assert_eq!(
            (got.decisions.len(), approvers.len(), got.status),
            (2, 2, Status::Approved),
            "{i}"
        );
    }
    let report = store.audit_verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn a_writer_held_past_the_busy_timeout_is_unavailable() {
    let (_dir, store) = store();
    let request = sample_request("inv-1", RiskTier::Low);
    store.submit(&request, "runner").unwrap();
    let raw = Connection::open(store.path()).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    store.set_busy_timeout(Duration::from_millis(100)).unwrap();
    let err = store
        .decide(
            &ask(&request, Verdict::Confirm, &[0], "alice", None),
            &test_policy(),
            at(1),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("locked") && m.contains("inv-1")),
        "{err}"
    );
    raw.execute_batch("ROLLBACK").unwrap();
    store
        .decide(
            &ask(&request, Verdict::Confirm, &[0], "alice", None),
            &test_policy(),
            at(1),
        )
        .unwrap();
}

// ---- opening and migrations ---------------------------------------------------------------

#[test]
fn opening_twice_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let first = SqliteStore::open(&path).unwrap();
    first
        .submit(&sample_request("inv-1", RiskTier::Low), "runner")
        .unwrap();
    let second = SqliteStore::open(&path).unwrap();
    drop(first);
    let third = SqliteStore::open(&path).unwrap();
    assert_eq!(second.counts().unwrap().requests, 1);
    assert_eq!(third.resolve("inv").unwrap(), id("inv-1"));
    let raw = Connection::open(&path).unwrap();
    assert_eq!(common::schema_version(&raw), 12);
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// The names of the indexes on `table`, sorted.
fn indexes(raw: &Connection, table: &str) -> Vec<String> {
    raw.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name",
    )
    .unwrap()
    .query_map([table], |r| r.get(0))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn migration_12_drops_the_unused_audit_index_and_keeps_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let store = SqliteStore::open(&path).unwrap();
    let request = sample_request("inv-1", RiskTier::Low);
    store.submit(&request, "runner").unwrap();
    store
        .decide(
            &ask(&request, Verdict::Confirm, &[0], "alice", None),
            &test_policy(),
            at(1),
        )
        .unwrap();
    let before = entries(&store);
    drop(store);
    // The file as version 11 left it: the audit log indexed by request.
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE INDEX audit_request ON audit (request_id, seq); PRAGMA user_version = 11;",
    )
    .unwrap();
    drop(raw);

    let store = SqliteStore::open(&path).unwrap();
    let raw = Connection::open(&path).unwrap();
    assert_eq!(common::schema_version(&raw), 12);
    assert!(
        indexes(&raw, "audit").is_empty(),
        "{:?}",
        indexes(&raw, "audit")
    );
    let after = entries(&store);
    assert_eq!(after.len(), 2);
    assert_eq!(after, before);
    assert!(store.audit_verify().unwrap().ok());
    // New entries still chain on.
    let second = sample_request("inv-2", RiskTier::Low);
    store.submit(&second, "runner").unwrap();
    assert_eq!(entries(&store).len(), 3);
    assert_eq!(store.counts().unwrap().audit_entries, 3);
    assert!(store.audit_verify().unwrap().ok());
}

#[test]
fn a_store_from_a_newer_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("schema version 99") && msg.contains("version 9"),
        "{msg}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_unavailable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the tables you are looking for\n".repeat(200),
    )
    .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not a database"),
        "{msg}"
    );
}

#[test]
fn an_impossible_directory_is_unavailable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let path = file.join("sub").join("approvals.db");
    let err = SqliteStore::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("cannot create the directory"),
        "{msg}"
    );
}
