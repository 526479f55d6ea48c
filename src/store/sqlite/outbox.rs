//! `OutboxStore` on SQLite: requests the runner raised (the `resumable` table), the outbox row
//! `decide` adds in the decision's own transaction when such a request becomes final, and the
//! leases that keep two workers from sending the same resume.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::schema::{from_ms, to_ms};
use super::{SqliteStore, db_error, insert_request};
use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::decision::Decision;
use crate::domain::policy::Policy;
use crate::domain::resume::{InvocationResult, ResumePlan};
use crate::domain::status::Status;
use crate::store::{OutboxRow, OutboxState, OutboxStore, RunnerLink, StoreError};

pub(super) use crate::store::run::resumes_after;

/// Inside a transaction: enqueues a request the runner raised, marked resumable and linked to
/// its invocation, with its audit entry (`OutboxStore::submit_resumable`).
pub(super) fn submit_in(
    tx: &Connection,
    shown: &str,
    request: &ApprovalRequest,
    link: &RunnerLink,
    actor: &str,
) -> Result<(), StoreError> {
    insert_request(tx, shown, request, actor, to_ms(Utc::now()))?;
    tx.prepare_cached(
        "INSERT INTO resumable (request_id, invocation, trace_id) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut st| st.execute(params![request.id.as_str(), link.invocation, link.trace_id]))
    .map_err(|e| db_error(shown, &format!("marking {} resumable", request.id), &e))?;
    Ok(())
}

/// Inside `decide`'s transaction: when `request` has just become final and the runner raised it,
/// adds its outbox row. Returns whether it did. The primary key makes a second row impossible.
pub(super) fn queue_resume(
    tx: &Connection,
    shown: &str,
    request: &ApprovalRequest,
    decisions: &[Decision],
    policy: &Policy,
    status: Status,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if !resumes_after(status) {
        return Ok(false);
    }
    let err =
        |e: rusqlite::Error| db_error(shown, &format!("queueing the resume of {}", request.id), &e);
    let link: Option<String> = tx
        .prepare_cached("SELECT invocation FROM resumable WHERE request_id = ?1")
        .and_then(|mut st| st.query_row([request.id.as_str()], |r| r.get(0)).optional())
        .map_err(err)?;
    let Some(invocation) = link else {
        return Ok(false);
    };
    let Some(plan) = ResumePlan::from_decisions(request, decisions, policy) else {
        return Err(StoreError::Corrupt(format!(
            "request {} is {status} but not every input is decided",
            request.id
        )));
    };
    let payload = serde_json::to_string(&plan).map_err(|e| {
        StoreError::Corrupt(format!(
            "request {}: cannot serialise the resume: {e}",
            request.id
        ))
    })?;
    tx.prepare_cached(
        "INSERT INTO outbox (request_id, invocation, session_id, agent_id, agent_alias_id, \
         state, payload, created_at_ms, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            request.id.as_str(),
            invocation,
            request.session_id,
            request.agent_id,
            request.agent_alias_id,
            payload,
            now_ms
        ])
    })
    .map_err(err)?;
    Ok(true)
}

const OUTBOX_COLUMNS: &str = "request_id, invocation, state, attempts, last_error, payload, \
     results, lease_owner, lease_until_ms, created_at_ms, updated_at_ms, continuation";

fn outbox_row(row: &Row<'_>) -> Result<OutboxRow, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading an outbox row: {e}"));
    let id: String = row.get(0).map_err(get)?;
    let what = format!("outbox row {id}");
    let state: String = row.get(2).map_err(get)?;
    let payload: String = row.get(5).map_err(get)?;
    let results: Option<String> = row.get(6).map_err(get)?;
    let lease_until: Option<i64> = row.get(8).map_err(get)?;
    let attempts: i64 = row.get(3).map_err(get)?;
    Ok(OutboxRow {
        invocation: row.get(1).map_err(get)?,
        state: OutboxState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("{what}: unknown state {state:?}")))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: row.get(4).map_err(get)?,
        plan: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("{what}: payload does not parse: {e}")))?,
        results: results
            .map(|r| serde_json::from_str::<Vec<InvocationResult>>(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("{what}: results do not parse: {e}")))?,
        lease_owner: row.get(7).map_err(get)?,
        lease_until: lease_until.map(|ms| from_ms(ms, &what)).transpose()?,
        created_at: from_ms(row.get(9).map_err(get)?, &what)?,
        updated_at: from_ms(row.get(10).map_err(get)?, &what)?,
        continuation: row.get(11).map_err(get)?,
        request: ApprovalId(id),
    })
}

impl SqliteStore {
    /// Runs `update` (which must name the row and the owner as ?1 and ?2) and fails with
    /// `LeaseLost` unless it changed exactly the one row.
    fn leased_update(
        &self,
        id: &ApprovalId,
        owner: &str,
        doing: &str,
        sql: &str,
        rest: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        let shown = self.shown();
        let conn = self.lock();
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&id.0, &owner];
        args.extend_from_slice(rest);
        let changed = conn
            .execute(sql, args.as_slice())
            .map_err(|e| db_error(&shown, &format!("{doing} {id}"), &e))?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(id.clone()))
        }
    }
}

const MINE: &str = "request_id = ?1 AND lease_owner = ?2 AND state IN ('pending', 'sent')";

impl OutboxStore for SqliteStore {
    fn submit_resumable(
        &self,
        request: &ApprovalRequest,
        link: &RunnerLink,
        actor: &str,
    ) -> Result<(), StoreError> {
        let shown = self.shown();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&shown, "starting the submit", &e))?;
        submit_in(&tx, &shown, request, link, actor)?;
        tx.commit()
            .map_err(|e| db_error(&shown, "committing the submit", &e))
    }

    fn runner_link(&self, id: &ApprovalId) -> Result<Option<RunnerLink>, StoreError> {
        let shown = self.shown();
        let conn = self.lock();
        conn.prepare_cached("SELECT invocation, trace_id FROM resumable WHERE request_id = ?1")
            .and_then(|mut st| {
                st.query_row([id.as_str()], |r| {
                    Ok(RunnerLink {
                        invocation: r.get(0)?,
                        trace_id: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(|e| db_error(&shown, &format!("reading the runner link of {id}"), &e))
    }

    fn lease_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let shown = self.shown();
        let now_ms = to_ms(now);
        let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut conn = self.lock();
        let err = |e: rusqlite::Error| db_error(&shown, "leasing outbox rows", &e);
        // Workers poll (the demo's every 300 ms) and the outbox is mostly empty: without a row
        // to send there is nothing to lease, and no write transaction to take. (A profile of the
        // demo showed the lease query below re-prepared by SQLite on every run; this check has
        // no parameter and reads only the partial index of pending and sent rows.)
        let any: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE state IN ('pending', 'sent'))",
            )
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(err)?;
        if !any {
            return Ok(Vec::new());
        }
        // IMMEDIATE: two workers leasing at once queue here, and the second sees the first's lease.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let due: Vec<String> = tx
            .prepare_cached(
                "SELECT request_id FROM outbox INDEXED BY outbox_due \
                 WHERE state IN ('pending', 'sent') \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= ?1) \
                 ORDER BY created_at_ms, request_id LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )?
                .collect()
            })
            .map_err(err)?;
        let mut rows = Vec::with_capacity(due.len());
        for id in due {
            tx.execute(
                "UPDATE outbox SET lease_owner = ?2, lease_until_ms = ?3, updated_at_ms = ?4 \
                 WHERE request_id = ?1",
                params![id, owner, until, now_ms],
            )
            .map_err(err)?;
            let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE request_id = ?1");
            let mut st = tx.prepare_cached(&sql).map_err(err)?;
            let mut found = st.query([&id]).map_err(err)?;
            if let Some(row) = found.next().map_err(err)? {
                rows.push(outbox_row(row)?);
            }
        }
        tx.commit().map_err(err)?;
        Ok(rows)
    }

    fn outbox_save_results(
        &self,
        id: &ApprovalId,
        owner: &str,
        results: &[InvocationResult],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(results)
            .map_err(|e| StoreError::Corrupt(format!("outbox row {id}: {e}")))?;
        self.leased_update(
            id,
            owner,
            "saving the resume results of",
            &format!(
                "UPDATE outbox SET results = ?3, updated_at_ms = ?4 WHERE {MINE} \
                 AND results IS NULL"
            ),
            &[&json, &to_ms(now)],
        )
    }

    fn outbox_mark_sent(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.leased_update(
            id,
            owner,
            "marking as sent",
            &format!(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, updated_at_ms = ?3 \
                 WHERE {MINE} AND results IS NOT NULL"
            ),
            &[&to_ms(now)],
        )
    }

    fn outbox_mark_acked(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        continuation: Option<&str>,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        self.leased_update(
            id,
            owner,
            "marking as acked",
            &format!(
                "UPDATE outbox SET state = 'acked', lease_owner = NULL, lease_until_ms = NULL, \
                 updated_at_ms = ?3, continuation = ?4, last_error = coalesce(?5, last_error) \
                 WHERE {MINE} AND state = 'sent'"
            ),
            &[&to_ms(now), &continuation, &note],
        )
    }

    fn outbox_retry_later(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.leased_update(
            id,
            owner,
            "deferring",
            &format!(
                "UPDATE outbox SET lease_owner = NULL, lease_until_ms = ?4, last_error = ?5, \
                 updated_at_ms = ?3 WHERE {MINE}"
            ),
            &[&to_ms(now), &to_ms(retry_at), &error],
        )
    }

    fn outbox_unsend(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.leased_update(
            id,
            owner,
            "returning to pending",
            &format!(
                "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until_ms = ?4, \
                 last_error = ?5, updated_at_ms = ?3 WHERE {MINE}"
            ),
            &[&to_ms(now), &to_ms(retry_at), &error],
        )
    }

    fn outbox_mark_failed(
        &self,
        id: &ApprovalId,
        owner: &str,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.leased_update(
            id,
            owner,
            "marking as failed",
            &format!(
                "UPDATE outbox SET state = 'failed', lease_owner = NULL, lease_until_ms = NULL, \
                 last_error = ?4, updated_at_ms = ?3 WHERE {MINE}"
            ),
            &[&to_ms(now), &error],
        )
    }

    fn outbox_row(&self, id: &ApprovalId) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE request_id = ?1");
        Ok(self
            .read_rows("reading an outbox row", &sql, &[&id.0], outbox_row)?
            .pop())
    }

    fn outbox_rows(
        &self,
        state: Option<OutboxState>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) \
             ORDER BY created_at_ms, request_id LIMIT ?2 OFFSET ?3"
        );
        let state = state.map(OutboxState::as_str);
        self.read_rows(
            "reading the outbox",
            &sql,
            &[
                &state,
                &i64::try_from(limit).unwrap_or(i64::MAX),
                &i64::try_from(offset).unwrap_or(i64::MAX),
            ],
            outbox_row,
        )
    }
}
