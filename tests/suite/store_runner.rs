//! The runner's side of `SqliteStore`: migration 2 over a version-1 file, the outbox row that a
//! final decision on a runner-raised request writes in its own transaction (once, even with
//! eight racing deciders; never for expired, open or non-runner requests) and the audit
//! cross-checks. Leases and trace reads are in the contract suite (`store_contract`), on both
//! adapters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use agentdeck::domain::approval::{ApprovalId, ApprovalRequest};
use agentdeck::domain::decision::Verdict;
use agentdeck::domain::policy::RiskTier;
use agentdeck::domain::status::Status;
use agentdeck::store::sqlite::SqliteStore;
use agentdeck::store::{
    ApprovalStore, OutboxState, OutboxStore, RunnerLink, StoreError, TraceStore,
};
use common::{ask, at, multi_request, sample_request, test_policy};
use rusqlite::Connection;
use serde_json::json;

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("deck.db")).unwrap()
}

fn link(inv: &str) -> RunnerLink {
    RunnerLink {
        invocation: inv.into(),
        trace_id: Some(format!("{inv}-0")),
    }
}

fn outbox_count(path: &Path) -> i64 {
    Connection::open(path.join("deck.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn migration_2_upgrades_a_version_1_file_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deck.db");
    {
        let s = open(dir.path());
        let r = sample_request("inv-old", RiskTier::Low);
        s.submit(&r, "alice").unwrap();
        s.decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", None),
            &test_policy(),
            at(5),
        )
        .unwrap();
    }
    // Make it exactly what version 1 wrote: migration 1's tables, user_version 1.
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE action_marks; DROP TABLE outbox; DROP TABLE resumable; DROP TABLE chunks; \
         DROP TABLE trace_blocks; DROP TABLE trace_text; DROP TABLE trace_text_state; \
         DROP TABLE trace_steps; DROP TABLE invocations; DROP TABLE sessions; \
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(raw);

    let s = open(dir.path());
    // Every later migration runs too (3, 4: the trace explorer's step kinds and search; 5: the
    // metrics columns and action marks; 6: the step index dropped; 7: event rows slimmed; 8:
    // traces keyed by the invocation's integer id; 9: checks without IN lists; 10: trace events
    // in blocks; 11: blocks packed; 12: the audit log's unused index by request dropped).
    assert_eq!(
        common::schema_version(&Connection::open(&path).unwrap()),
        12
    );
    let got = s
        .get(&ApprovalId("inv-old".into()), &test_policy(), at(6))
        .unwrap();
    assert_eq!(got.status, Status::Approved);
    // A request decided before the runner existed has no resume, and the audit agrees.
    assert_eq!(outbox_count(dir.path()), 0);
    assert!(s.audit_verify().unwrap().ok());
    assert!(s.sessions(0, 10).unwrap().is_empty());
}

/// Opcodes of `sql` as SQLite would run it on `c`.
fn opcodes(c: &Connection, sql: &str) -> Vec<String> {
    c.prepare(&format!("EXPLAIN {sql}"))
        .unwrap()
        .query_map([], |r| r.get(1))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn migration_9_keeps_invocations_and_resumes_and_their_checks_build_no_temporary_table() {
    use agentdeck::store::{InvocationEnd, InvocationStart, Outcome};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deck.db");
    let (invocations, outbox) = {
        let s = open(dir.path());
        for (n, id) in ["call-1", "call-2"].into_iter().enumerate() {
            s.begin_invocation(&InvocationStart {
                request_id: id.into(),
                agent_id: "A".into(),
                agent_alias_id: "L".into(),
                session_id: "s-9".into(),
                input_text: Some("pay".into()),
                resumes: None,
                started_at: at(i64::try_from(n).unwrap()),
            })
            .unwrap();
        }
        s.finish_invocation(
            "call-1",
            &InvocationEnd {
                outcome: Outcome::WaitingForHuman,
                ended_at: at(3),
                error: None,
                final_response: None,
                latency_ms: Some(3000),
            },
        )
        .unwrap();
        let r = sample_request("inv-9", RiskTier::Low);
        s.submit_resumable(&r, &link("call-1"), "runner").unwrap();
        s.decide(
            &ask(&r, Verdict::Confirm, &[0], "bob", None),
            &test_policy(),
            at(5),
        )
        .unwrap();
        let invocations = ["call-1", "call-2"].map(|id| s.invocation(id).unwrap().unwrap());
        (invocations, s.outbox_row(&r.id).unwrap().unwrap())
    };
    let raw = Connection::open(&path).unwrap();
    let ids = |c: &Connection| -> Vec<(String, i64)> {
        c.prepare("SELECT request_id, id FROM invocations ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let old_ids = ids(&raw);
    // Make it what version 8 wrote: both tables checked with `IN` lists (and, as 9 wrote too,
    // a row per trace event).
    common::downgrade_to_v9(&raw);
    raw.execute_batch(
        "PRAGMA foreign_keys = OFF;
         CREATE TABLE inv8 AS SELECT * FROM invocations;
         DROP TABLE invocations;
         CREATE TABLE invocations (
            id INTEGER PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, agent_id TEXT NOT NULL,
            agent_alias_id TEXT NOT NULL, session_id TEXT NOT NULL, input_text TEXT,
            resumes TEXT, started_at_ms INTEGER NOT NULL, ended_at_ms INTEGER,
            outcome TEXT NOT NULL CHECK (outcome IN
                ('running', 'finished', 'failed', 'waiting-for-human', 'exception')),
            error TEXT, final_response TEXT, latency_ms INTEGER,
            input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
            events INTEGER NOT NULL DEFAULT 0, steps INTEGER NOT NULL DEFAULT 0,
            chunks INTEGER NOT NULL DEFAULT 0, model TEXT, model_ms INTEGER NOT NULL DEFAULT 0,
            tool_ms INTEGER NOT NULL DEFAULT 0) STRICT;
         INSERT INTO invocations SELECT * FROM inv8;
         DROP TABLE inv8;
         CREATE INDEX invocations_session ON invocations (session_id, started_at_ms, request_id);
         CREATE INDEX invocations_recent ON invocations (started_at_ms, request_id);
         CREATE TABLE out8 AS SELECT * FROM outbox;
         DROP TABLE outbox;
         CREATE TABLE outbox (
            request_id TEXT PRIMARY KEY NOT NULL REFERENCES requests (id), invocation TEXT,
            session_id TEXT NOT NULL, agent_id TEXT NOT NULL, agent_alias_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'acked', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, payload TEXT NOT NULL,
            results TEXT, lease_owner TEXT, lease_until_ms INTEGER,
            created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,
            continuation TEXT) STRICT;
         INSERT INTO outbox SELECT * FROM out8;
         DROP TABLE out8;
         CREATE INDEX outbox_due ON outbox (created_at_ms, request_id)
            WHERE state IN ('pending', 'sent');
         PRAGMA user_version = 8;",
    )
    .unwrap();
    let insert = "INSERT INTO invocations (request_id, agent_id, agent_alias_id, session_id, \
                  started_at_ms, outcome) VALUES ('x', 'A', 'L', 's', 0, 'running')";
    // What the migration is for: version 8's check built a temporary B-tree per statement.
    assert!(opcodes(&raw, insert).iter().any(|o| o == "OpenEphemeral"));
    drop(raw);

    let s = open(dir.path());
    let raw = Connection::open(&path).unwrap();
    assert_eq!(common::schema_version(&raw), 12);
    assert_eq!(ids(&raw), old_ids);
    for inv in &invocations {
        assert_eq!(
            s.invocation(&inv.start.request_id).unwrap().as_ref(),
            Some(inv),
            "{}",
            inv.start.request_id
        );
    }
    assert_eq!(s.outbox_row(&outbox.request).unwrap().unwrap(), outbox);
    let fk_problems: i64 = raw
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk_problems, 0);
    for (sql, table) in [
        (insert.to_owned(), "invocations"),
        (
            "UPDATE invocations SET outcome = 'finished' WHERE id = 1".to_owned(),
            "invocations",
        ),
        (
            "UPDATE outbox SET state = 'sent' WHERE request_id = 'x'".to_owned(),
            "outbox",
        ),
    ] {
        assert!(
            !opcodes(&raw, &sql).iter().any(|o| o == "OpenEphemeral"),
            "{table}: {sql}"
        );
    }
    // The checks still hold.
    for bad in [
        "UPDATE invocations SET outcome = 'done' WHERE id = 1",
        "UPDATE outbox SET state = 'gone'",
    ] {
        let e = raw.execute(bad, []).unwrap_err();
        assert!(
            e.to_string().contains("CHECK constraint failed"),
            "{bad}: {e}"
        );
    }
    // And the store goes on working on them.
    s.finish_invocation(
        "call-2",
        &InvocationEnd {
            outcome: Outcome::Finished,
            ended_at: at(9),
            error: None,
            final_response: Some("done".into()),
            latency_ms: Some(9000),
        },
    )
    .unwrap();
    assert_eq!(
        s.invocation("call-2").unwrap().unwrap().outcome,
        Outcome::Finished
    );
    assert!(s.audit_verify().unwrap().ok());
}

#[test]
fn a_final_decision_on_a_runner_request_queues_its_resume_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let policy = test_policy();
    let r = multi_request("inv-1", &[RiskTier::Low, RiskTier::Low]);
    s.submit_resumable(&r, &link("req-1"), "runner").unwrap();
    assert_eq!(s.runner_link(&r.id).unwrap(), Some(link("req-1")));

    // Half decided: nothing to resume yet.
    s.decide(
        &ask(&r, Verdict::Confirm, &[0], "alice", None),
        &policy,
        at(5),
    )
    .unwrap();
    assert!(s.outbox_row(&r.id).unwrap().is_none());

    let out = s
        .decide(
            &ask(&r, Verdict::Deny, &[1], "alice", Some("no")),
            &policy,
            at(6),
        )
        .unwrap();
    assert_eq!(out.status, Status::Mixed);
    let row = s.outbox_row(&r.id).unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    assert_eq!(row.invocation.as_deref(), Some("req-1"));
    assert_eq!(row.attempts, 0);
    assert!(row.results.is_none());
    assert_eq!(row.plan.invocation_id, "inv-1");
    assert_eq!(
        row.plan
            .inputs
            .iter()
            .map(|i| i.verdict)
            .collect::<Vec<_>>(),
        vec![Verdict::Confirm, Verdict::Deny]
    );
    assert_eq!(row.plan.inputs[1].reason.as_deref(), Some("no"));
    // The audit entry of that decision says a resume was queued, and everything verifies.
    let mut last = None;
    s.audit_each(&mut |e| {
        last = Some(e);
        Ok(())
    })
    .unwrap();
    let payload: serde_json::Value = serde_json::from_str(&last.unwrap().payload).unwrap();
    assert_eq!(payload["resume"], json!("queued"));
    assert!(s.audit_verify().unwrap().ok());
}

#[test]
fn when_the_outbox_write_fails_the_decision_is_not_recorded_either() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let policy = test_policy();
    let r = sample_request("inv-2", RiskTier::Low);
    s.submit_resumable(&r, &link("req-2"), "runner").unwrap();
    // A row already there (planted behind the store's back) makes the outbox insert fail.
    Connection::open(dir.path().join("deck.db"))
        .unwrap()
        .execute(
            "INSERT INTO outbox (request_id, session_id, agent_id, agent_alias_id, state, \
             payload, created_at_ms, updated_at_ms) VALUES ('inv-2', 's', 'a', 'b', 'acked', \
             '{}', 0, 0)",
            [],
        )
        .unwrap();
    let err = s
        .decide(
            &ask(&r, Verdict::Confirm, &[0], "alice", None),
            &policy,
            at(5),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let got = s.get(&r.id, &policy, at(6)).unwrap();
    assert!(got.decisions.is_empty());
    assert_eq!(got.status, Status::Pending);
}

#[test]
fn eight_racing_deciders_leave_exactly_one_outbox_row_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let requests: Vec<ApprovalRequest> = (0..4)
        .map(|i| sample_request(&format!("inv-race-{i}"), RiskTier::Low))
        .collect();
    {
        let s = open(dir.path());
        for r in &requests {
            s.submit_resumable(r, &link("req-r"), "runner").unwrap();
        }
    }
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|n| {
            let dir = dir.path().to_path_buf();
            let barrier = Arc::clone(&barrier);
            let requests = requests.clone();
            thread::spawn(move || {
                let s = open(&dir);
                barrier.wait();
                let mut won = 0;
                for r in &requests {
                    let verdict = if n % 2 == 0 {
                        Verdict::Confirm
                    } else {
                        Verdict::Deny
                    };
                    match s.decide(
                        &ask(r, verdict, &[0], &format!("rev{n}"), Some("race")),
                        &test_policy(),
                        at(10),
                    ) {
                        Ok(_) => won += 1,
                        Err(StoreError::Refused(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                won
            })
        })
        .collect();
    let won: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(won, 4);
    assert_eq!(outbox_count(dir.path()), 4);
    let s = open(dir.path());
    for r in &requests {
        let row = s.outbox_row(&r.id).unwrap().unwrap();
        assert_eq!(row.state, OutboxState::Pending);
    }
    assert!(s.audit_verify().unwrap().ok());
}

#[test]
fn expired_open_and_non_runner_requests_get_no_resume() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let policy = test_policy();
    let expired = sample_request("inv-exp", RiskTier::Low);
    s.submit_resumable(&expired, &link("req-e"), "runner")
        .unwrap();
    assert_eq!(s.expire_due(at(10_000), "sweep").unwrap(), 1);
    assert!(matches!(
        s.decide(
            &ask(&expired, Verdict::Confirm, &[0], "alice", None),
            &policy,
            at(10_001)
        ),
        Err(StoreError::Refused(_))
    ));
    // A critical input needs two approvers: one approval leaves it open.
    let two = sample_request("inv-two", RiskTier::Critical);
    s.submit_resumable(&two, &link("req-t"), "runner").unwrap();
    s.decide(
        &ask(&two, Verdict::Confirm, &[0], "alice", Some("ok")),
        &policy,
        at(5),
    )
    .unwrap();
    // Submitted by hand, not by the runner: nothing to resume.
    let manual = sample_request("inv-manual", RiskTier::Low);
    s.submit(&manual, "alice").unwrap();
    s.decide(
        &ask(&manual, Verdict::Confirm, &[0], "alice", None),
        &policy,
        at(5),
    )
    .unwrap();
    assert_eq!(outbox_count(dir.path()), 0);
    assert!(s.runner_link(&manual.id).unwrap().is_none());
    assert!(s.audit_verify().unwrap().ok());
    // The second approver makes it final: now it is queued.
    s.decide(
        &ask(&two, Verdict::Confirm, &[0], "bob", Some("ok")),
        &policy,
        at(6),
    )
    .unwrap();
    assert_eq!(outbox_count(dir.path()), 1);
}

fn decided_row(dir: &Path, id: &str) -> (SqliteStore, ApprovalId) {
    let s = open(dir);
    let r = sample_request(id, RiskTier::Low);
    s.submit_resumable(&r, &link("req-l"), "runner").unwrap();
    s.decide(
        &ask(&r, Verdict::Confirm, &[0], "alice", None),
        &test_policy(),
        at(5),
    )
    .unwrap();
    (s, r.id)
}

#[test]
fn the_audit_check_notices_a_lost_resume_and_a_resume_nobody_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (s, id) = decided_row(dir.path(), "inv-audit");
    let manual = sample_request("inv-hand", RiskTier::Low);
    s.submit(&manual, "alice").unwrap();
    assert!(s.audit_verify().unwrap().ok());
    let raw = Connection::open(dir.path().join("deck.db")).unwrap();
    raw.execute("DELETE FROM outbox WHERE request_id = ?1", [id.as_str()])
        .unwrap();
    raw.execute(
        "INSERT INTO outbox (request_id, session_id, agent_id, agent_alias_id, state, payload, \
         created_at_ms, updated_at_ms) VALUES ('inv-hand', 's', 'a', 'b', 'pending', '{}', 0, 0)",
        [],
    )
    .unwrap();
    let report = s.audit_verify().unwrap();
    let text = report.problems.join("\n");
    assert!(
        text.contains("request inv-audit") && text.contains("resume was lost"),
        "{text}"
    );
    assert!(
        text.contains("request inv-hand") && text.contains("status is pending"),
        "{text}"
    );
    assert!(text.contains("the runner did not raise it"), "{text}");
}

/// Through the group-commit writer: a turn's requests are answered with its end (one commit),
/// a request queued twice (a replayed stream) is refused as a duplicate without failing the
/// turn, and the turn's end still lands.
#[test]
fn the_writer_queues_requests_with_the_turns_end_and_a_duplicate_leaves_the_turn_going() {
    use agentdeck::bedrock::writer::{TraceWriter, TurnBatch, TurnState};
    use agentdeck::store::{InvocationEnd, InvocationStart, Outcome};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let writer = TraceWriter::spawn(store.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = sample_request("inv-dup-1", RiskTier::High);
    rt.block_on(async {
        let turn = Arc::new(TurnState::default());
        let start = TurnBatch {
            request_id: "call-1".into(),
            start: Some(InvocationStart {
                request_id: "call-1".into(),
                agent_id: "A".into(),
                agent_alias_id: "L".into(),
                session_id: "s-1".into(),
                input_text: Some("pay".into()),
                resumes: None,
                started_at: at(0),
            }),
            ..TurnBatch::default()
        };
        writer.write(&turn, start, false).await.unwrap();
        let first = writer
            .submit_queued(&turn, &request, &link("call-1"), "runner")
            .await
            .unwrap();
        let again = writer
            .submit_queued(&turn, &request, &link("call-1"), "runner")
            .await
            .unwrap();
        let end = TurnBatch {
            request_id: "call-1".into(),
            end: Some(InvocationEnd {
                outcome: Outcome::WaitingForHuman,
                ended_at: at(1),
                error: None,
                final_response: None,
                latency_ms: Some(1000),
            }),
            ..TurnBatch::default()
        };
        writer.write(&turn, end, true).await.unwrap();
        first.answer().await.unwrap();
        let dup = again.answer().await;
        assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    });
    writer.close();
    let inv = store.invocation("call-1").unwrap().unwrap();
    assert_eq!(inv.outcome, Outcome::WaitingForHuman);
    assert_eq!(
        store.runner_link(&request.id).unwrap().unwrap().invocation,
        "call-1"
    );
    assert!(store.audit_verify().unwrap().ok());
}
