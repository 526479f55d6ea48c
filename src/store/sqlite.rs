//! `SqliteStore`: the approvals store on one embedded SQLite file (WAL). Owns the schema and its
//! migrations, the conditional decision write and the audit chain. It holds no approval rules of
//! its own: decisions are planned by `domain::decision::plan` inside the write transaction,
//! statuses come from `domain::status`.
//!
//! Durability. The connection runs with `synchronous=FULL`: every commit that submits, decides,
//! expires or moves an outbox row is fsynced before it returns. The one exception is trace data
//! (`TraceStore` writes: invocations, trace events, steps, chunks), which is observability, not a
//! decision: those transactions commit with `synchronous=NORMAL` (`SqliteStore::trace_write`), so
//! they are written to the WAL but not fsynced. In WAL mode that is still atomic and consistent
//! (a crash of the process loses nothing; the OS writes the WAL out on its own), and the next
//! FULL commit's fsync of the WAL covers every frame before it. What a power loss or kernel crash
//! can take is only the trace transactions committed since the last fsync (the last FULL commit
//! or checkpoint, typically a fraction of a second of traces), never a request, a decision, an
//! audit entry or an outbox row, and never a trace written before one of them.
//!
//! The runner's group commit (`bedrock::writer`) commits its approval requests relaxed too
//! (`RunnerStore::write_group_unsynced`), and answers them only after an fsync of the WAL made
//! on a thread of its own (`RunnerStore::sync`): a request is on disk before the runner hears
//! it is queued, as at `synchronous=FULL`, but its fsync no longer holds up the groups behind
//! it. Readers can see such a request a moment before it is on disk; a decision on it commits
//! at `synchronous=FULL`, whose fsync covers the request's frames, so no decision is ever on
//! disk without its request.

mod audit;
mod checkpoint;
mod metrics;
mod outbox;
pub mod pack;
mod schema;
mod trace;
pub use trace::on_trace_commit;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use serde_json::json;

use super::{
    ApprovalStore, AuditEntry, AuditReport, DecisionOutcome, QueueRow, StoreCounts, StoreError,
    StoredRequest,
};
use crate::domain::approval::{ApprovalId, ApprovalRequest};
use crate::domain::canonical::{canonical_json, sha256_hex};
use crate::domain::decision::{self, DecisionAsk, Refusal, Verdict};
use crate::domain::policy::{Policy, RiskTier};
use crate::domain::status::Status;
use schema::{Summary, to_ms, truncate_ms};

/// How long a write waits for another writer before giving up as `Unavailable`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Audit entries read per lock hold while streaming.
const AUDIT_PAGE: i64 = 512;

/// WAL bytes between automatic checkpoints: SQLite's default of 1,000 pages at its default
/// page size, whatever this file's page size is.
const CHECKPOINT_BYTES: i64 = 1000 * 4096;
/// ... during a bulk load.
const BULK_CHECKPOINT_BYTES: i64 = 32 << 20;
/// Pages a transaction may hold dirty in the page cache before SQLite writes some of them to
/// the WAL early (16 MiB of 4 KiB pages; the cache itself keeps SQLite's 2 MB of clean pages).
/// At SQLite's default, a spill as soon as the cache was full, a group commit spilled pages it
/// went on to change again, and each such page made SQLite reread the frames after it to redo
/// their checksums at commit: the ingest bench read 31,800 pages a run, 20,200 with this. A
/// bigger cache_size instead made the writer slower (more pages to manage at each commit).
const SPILL_PAGES: i64 = 4096;
/// The page size of a new store file, in bytes: SQLite's default, for the runner's many small
/// writes. Each turn adds rows to indexes whose keys (request ids, session ids) land anywhere
/// in them, so every commit rewrites a leaf page per such index however little it adds; smaller
/// pages make that cheaper. Measured on the ingest bench (group commit) while events, steps and
/// chunks were still keyed by request id (before schema migration 8): 16 KiB pages wrote
/// 2.28 GB to the WAL and database for 34,000 events, 8 KiB 1.40 GB, 4 KiB 0.88 GB, and the runs
/// took about half the time.
const PAGE_SIZE: i64 = 4096;
/// ... of a store file `agentdeck import` creates, laid out for bulk loads: a load appends
/// along its indexes, and a WAL frame is two writes whatever its size. Measured on the import
/// bench: 4 KiB pages 168-177 MiB/s, 16 KiB 200-207 MiB/s.
const BULK_PAGE_SIZE: i64 = 16_384;

/// The approvals store on a local SQLite file. Each process or thread that wants its own
/// connection opens its own `SqliteStore` on the same path; within one value, calls are
/// serialised by a mutex.
pub struct SqliteStore {
    path: PathBuf,
    /// The WAL checkpoint thread, started by the first group commit (`write_group`); `None`
    /// inside when it could not start. Declared before `conn`, so it is stopped (and its
    /// connection closed) first.
    checkpointer: OnceLock<Option<checkpoint::Checkpointer>>,
    conn: Mutex<Connection>,
    /// What this handle's trace writes keep from batch to batch: the steps of the invocation
    /// it last wrote a batch of, the block writer's buffers (taken after `conn`, never before
    /// it).
    scratch: Mutex<Box<trace::Scratch>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Checkpoints the WAL automatically once it holds about `bytes` (SQLite counts pages).
fn set_checkpoint(conn: &Connection, bytes: i64) -> rusqlite::Result<()> {
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", (bytes / page.max(512)).max(1))
}

/// A rusqlite error as a store error that names the file and what was being done.
pub(crate) fn db_error(path: &str, doing: &str, e: &rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!(
                "{path}: {doing}: the database is locked by another writer and stayed locked \
                 past the busy timeout"
            ))
        }
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(format!("{path}: {doing}: {e}")),
        _ => StoreError::Unavailable(format!("{path}: {doing}: {e}")),
    }
}

fn is_primary_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

const OPEN_STATUSES: &str = "('pending', 'partially-decided')";

/// Prepared statements kept per connection (`prepare_cached`).
const STATEMENT_CACHE: usize = 256;

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`: its parent directory, WAL journal,
    /// `synchronous=FULL` so a commit is on disk when it returns, a 5 s busy timeout, foreign
    /// keys, and the schema migrated to this binary's version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_paged(path, PAGE_SIZE)
    }

    /// `open` for `agentdeck import`: a file it creates gets 16 KiB pages (`BULK_PAGE_SIZE`),
    /// and the connection is set up for a bulk load (`prefer_bulk_writes`). An existing file
    /// keeps its page size.
    pub fn open_for_import(path: &Path) -> Result<Self, StoreError> {
        let store = Self::open_paged(path, BULK_PAGE_SIZE)?;
        store.prefer_bulk_writes()?;
        Ok(store)
    }

    fn open_paged(path: &Path, page_size: i64) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!(
                    "{shown}: cannot create the directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let mut conn =
            Connection::open(path).map_err(|e| db_error(&shown, "opening the database", &e))?;
        conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)
            .map_err(|e| db_error(&shown, "setting the busy timeout", &e))?;
        // An existing file keeps its page size (the pragma does nothing once a file has pages).
        conn.pragma_update(None, "page_size", page_size)
            .map_err(|e| db_error(&shown, "setting the page size", &e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| db_error(&shown, "switching to the WAL journal", &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{shown}: the file system refused the WAL journal (journal mode is {mode})"
            )));
        }
        // Foreign keys are turned on after the migration (see `schema::migrate`).
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
            .map_err(|e| db_error(&shown, "setting synchronous=FULL", &e))?;
        // Savepoint journals (one per write when a group commit is replayed after a failed
        // write) stay in memory. On disk (when every write of a group had one), each
        // spilled to a temporary file past 64 KiB, and the ingest bench wrote 11 KB of them per
        // trace event, more than the WAL and the database together.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(|e| db_error(&shown, "keeping temporary data in memory", &e))?;
        conn.pragma_update(None, "cache_spill", SPILL_PAGES)
            .map_err(|e| db_error(&shown, "setting when the page cache spills", &e))?;
        // Migration 11 packs existing blocks with it; reads unpack them with it.
        pack::register(&conn)
            .map_err(|e| db_error(&shown, "registering the trace block functions", &e))?;
        schema::migrate(&mut conn, &shown)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| db_error(&shown, "turning foreign-key checks on", &e))?;
        set_checkpoint(&conn, CHECKPOINT_BYTES)
            .map_err(|e| db_error(&shown, "setting the WAL checkpoint size", &e))?;
        // Every statement the store runs stays prepared: with rusqlite's default of 16 the
        // trace writes alone evicted each other and were parsed again on every batch.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            path: path.to_path_buf(),
            checkpointer: OnceLock::new(),
            conn: Mutex::new(conn),
            scratch: Mutex::new(Box::default()),
        })
    }

    /// The file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets this connection up for a bulk load (`agentdeck import`): the WAL is checkpointed
    /// every 32 MiB instead of every 4 MB, so the pages a load rewrites over and over (index
    /// interiors, its invocation's row) go to the database file once per checkpoint, not once
    /// per 4 MiB. Measured on the import bench: 63 -> 86 MiB/s. Commits stay as durable as
    /// before; only the WAL grows larger between checkpoints.
    ///
    /// It also turns foreign-key checks off on this connection: an import writes only traces,
    /// and every trace write finds its invocation's row itself (reads its counters, or inserts
    /// it in the same transaction) before it writes a row that references it, so the check (an
    /// index search per event row) only repeated that. Set once here rather than around each
    /// write, because changing the setting makes SQLite prepare every statement again.
    pub fn prefer_bulk_writes(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        set_checkpoint(&conn, BULK_CHECKPOINT_BYTES)
            .map_err(|e| db_error(&self.shown(), "setting the WAL checkpoint size", &e))?;
        conn.pragma_update(None, "foreign_keys", false)
            .map_err(|e| db_error(&self.shown(), "turning foreign-key checks off", &e))
    }

    /// Changes how long a write waits for another writer before failing as `Unavailable`.
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<(), StoreError> {
        self.lock()
            .busy_timeout(timeout)
            .map_err(|e| db_error(&self.shown(), "setting the busy timeout", &e))
    }

    /// Enqueues many validated requests, each with its audit entry, in one transaction: all or
    /// none. For imports and benchmarks.
    pub fn submit_batch(
        &self,
        requests: &[ApprovalRequest],
        actor: &str,
    ) -> Result<(), StoreError> {
        let shown = self.shown();
        let at_ms = to_ms(Utc::now());
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&shown, "starting the submit", &e))?;
        for request in requests {
            insert_request(&tx, &shown, request, actor, at_ms)?;
        }
        tx.commit()
            .map_err(|e| db_error(&shown, "committing the submit", &e))
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// Runs a read and maps every row, holding the lock for the one statement.
    fn read_rows<T>(
        &self,
        doing: &str,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
        map: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.read_each(doing, sql, args, |row| {
            out.push(map(row)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Hands each row of `sql` to `each` until it gives false (the rest is never read).
    fn read_each(
        &self,
        doing: &str,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
        mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let shown = self.shown();
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(sql)
            .map_err(|e| db_error(&shown, doing, &e))?;
        let mut rows = st.query(args).map_err(|e| db_error(&shown, doing, &e))?;
        while let Some(row) = rows.next().map_err(|e| db_error(&shown, doing, &e))? {
            if !each(row)? {
                break;
            }
        }
        Ok(())
    }

    /// Runs `f` in one IMMEDIATE transaction committed with `synchronous=NORMAL` (no fsync; see
    /// the module's notes on durability), for trace data only. The connection is back at
    /// `synchronous=FULL` when this returns, whatever happened: SQLite only changes the level
    /// outside a transaction, so it is lowered before BEGIN and raised again after COMMIT (or
    /// the rollback).
    pub(crate) fn trace_write<T>(
        &self,
        doing: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.runner_write(doing, true, f)
    }

    /// A transaction of the runner's writes: relaxed (no fsync at commit, as `trace_write`)
    /// or, when it holds something that must be durable at once (an approval request), at
    /// synchronous=FULL. Tells the trace-commit listeners.
    pub(crate) fn runner_write<T>(
        &self,
        doing: &str,
        relax: bool,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shown = self.shown();
        let err = |e: rusqlite::Error| db_error(&shown, doing, &e);
        let mut conn = self.lock();
        let out = if relax {
            let mut relaxed = RelaxedSync::new(&mut conn).map_err(err)?;
            let out = {
                let tx = relaxed
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(err)?;
                let out = f(&tx)?;
                tx.commit().map_err(err)?;
                out
            };
            relaxed.restore().map_err(err)?;
            out
        } else {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let out = f(&tx)?;
            tx.commit().map_err(err)?;
            out
        };
        trace::trace_committed();
        Ok(out)
    }

    /// Moves WAL checkpoints to a thread of their own (`checkpoint`), once: for a store the
    /// runner's group commit writes to.
    pub(crate) fn checkpoint_in_background(&self) {
        self.checkpointer.get_or_init(|| {
            let c = checkpoint::Checkpointer::start(&self.path)?;
            checkpoint::install(&self.lock());
            Some(c)
        });
    }

    /// After a commit on this thread: nudges the checkpoint thread when the WAL has grown enough.
    pub(crate) fn nudge_checkpoint(&self) {
        if let Some(Some(c)) = self.checkpointer.get()
            && checkpoint::wants_checkpoint()
        {
            c.nudge();
        }
    }

    /// The trace writes' scratch (`trace::Scratch`); a panic mid-batch leaves its known steps
    /// at worst stale, which their event count check catches, and its block is emptied before
    /// each use.
    pub(crate) fn scratch(&self) -> MutexGuard<'_, Box<trace::Scratch>> {
        self.scratch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection; a panic in another call never leaves it mid-transaction (an unfinished
    /// transaction rolls back when dropped), so a poisoned lock is safe to take.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `synchronous=NORMAL` on a connection for as long as this lives; `synchronous=FULL` again
/// when it is restored or dropped (an early return, a failed transaction, a panic).
struct RelaxedSync<'c> {
    conn: &'c mut Connection,
    restored: bool,
}

impl<'c> RelaxedSync<'c> {
    fn new(conn: &'c mut Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("PRAGMA synchronous = NORMAL")?
            .execute([])?;
        Ok(Self {
            conn,
            restored: false,
        })
    }

    fn full(conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached("PRAGMA synchronous = FULL")?
            .execute([])
            .map(drop)
    }

    fn restore(&mut self) -> rusqlite::Result<()> {
        Self::full(self.conn)?;
        self.restored = true;
        Ok(())
    }
}

impl Drop for RelaxedSync<'_> {
    fn drop(&mut self) {
        if !self.restored && Self::full(self.conn).is_err() {
            // Setting the level outside a transaction does not fail; if it ever did, the next
            // durable write must not run relaxed.
            tracing::error!("could not restore synchronous=FULL after a trace write");
        }
    }
}

fn insert_request(
    conn: &Connection,
    path: &str,
    request: &ApprovalRequest,
    actor: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let value = serde_json::to_value(request).map_err(|e| {
        StoreError::Corrupt(format!("request {}: cannot serialise it: {e}", request.id))
    })?;
    let body = canonical_json(&value);
    let body_hash = sha256_hex(body.as_bytes());
    let s = Summary::of(request);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO requests (id, agent_id, agent_alias_id, session_id, tier, reason, rule, \
             action, key_params, inputs, raised_at_ms, expires_at_ms, status, approvals, body, \
             body_hash, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', 0, ?13, ?14, 0)",
        )
        .and_then(|mut st| {
            st.execute(rusqlite::params![
                request.id.as_str(),
                s.agent_id,
                s.agent_alias_id,
                s.session_id,
                s.tier,
                s.reason,
                s.rule,
                s.action,
                s.key_params,
                s.inputs,
                s.raised_at_ms,
                s.expires_at_ms,
                body,
                body_hash,
            ])
        });
    match inserted {
        Ok(_) => {}
        Err(e) if is_primary_key_violation(&e) => {
            return Err(StoreError::Duplicate(request.id.clone()));
        }
        Err(e) => {
            return Err(db_error(
                path,
                &format!("inserting request {}", request.id),
                &e,
            ));
        }
    }
    audit::append(
        conn,
        path,
        at_ms,
        actor,
        "submitted",
        &request.id,
        &json!({
            "request": request.id.as_str(),
            "bodyHash": body_hash,
            "status": Status::Pending.as_str(),
        }),
    )?;
    Ok(())
}

/// The smallest string greater than every string that starts with `prefix` (None when no such
/// string exists, i.e. the prefix is all `char::MAX`).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// How many distinct reviewers have confirmed something on a request: what the queue shows
/// against a two-person rule's 2.
pub(crate) fn distinct_approvers<'a>(
    decisions: impl Iterator<Item = &'a decision::Decision>,
) -> usize {
    let mut approvers: Vec<&str> = decisions
        .filter(|d| d.verdict == Verdict::Confirm)
        .map(|d| d.reviewer.as_str())
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    approvers.len()
}

impl ApprovalStore for SqliteStore {
    fn submit(&self, request: &ApprovalRequest, actor: &str) -> Result<(), StoreError> {
        self.submit_batch(std::slice::from_ref(request), actor)
    }

    fn resolve(&self, id_or_prefix: &str) -> Result<ApprovalId, StoreError> {
        if id_or_prefix.is_empty() {
            return Err(StoreError::NotFound(String::new()));
        }
        let shown = self.shown();
        let conn = self.lock();
        let err =
            |e: rusqlite::Error| db_error(&shown, &format!("looking up {id_or_prefix:?}"), &e);
        let exact: Option<String> = conn
            .prepare_cached("SELECT id FROM requests WHERE id = ?1")
            .and_then(|mut st| st.query_row([id_or_prefix], |r| r.get(0)).optional())
            .map_err(err)?;
        if let Some(id) = exact {
            return Ok(ApprovalId(id));
        }
        // A range on the primary key: every id starting with the prefix sorts in [prefix, upper).
        // When the prefix is all `char::MAX`, every id from it on starts with it.
        let (range, upper) = match prefix_upper_bound(id_or_prefix) {
            Some(upper) => ("id >= ?1 AND id < ?2", upper),
            None => ("id >= ?1 AND ?2 = ''", String::new()),
        };
        let first_two: Vec<String> = conn
            .prepare_cached(&format!(
                "SELECT id FROM requests WHERE {range} ORDER BY id LIMIT 2"
            ))
            .and_then(|mut st| {
                st.query_map([id_or_prefix, upper.as_str()], |r| r.get(0))?
                    .collect::<Result<_, _>>()
            })
            .map_err(err)?;
        match first_two.as_slice() {
            [] => Err(StoreError::NotFound(id_or_prefix.to_owned())),
            [one] => Ok(ApprovalId(one.clone())),
            _ => {
                let count: i64 = conn
                    .query_row(
                        &format!("SELECT count(*) FROM requests WHERE {range}"),
                        [id_or_prefix, upper.as_str()],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                Err(StoreError::Ambiguous {
                    prefix: id_or_prefix.to_owned(),
                    count: usize::try_from(count).unwrap_or(usize::MAX),
                })
            }
        }
    }

    fn get(
        &self,
        id: &ApprovalId,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<StoredRequest, StoreError> {
        let shown = self.shown();
        let mut conn = self.lock();
        // One read transaction, so the request and its decisions come from the same snapshot.
        let tx = conn
            .transaction()
            .map_err(|e| db_error(&shown, "starting a read", &e))?;
        let loaded = schema::load_request(&tx, &shown, id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let decisions: Vec<_> = schema::load_decisions(&tx, &shown, id)?
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        // A final stored status stands (nothing leaves a final state); an open one may have
        // moved on with the clock since it was written.
        let status = if loaded.status.is_final() {
            loaded.status
        } else {
            Status::derive(&loaded.request, &decisions, policy, now)
        };
        Ok(StoredRequest {
            request: loaded.request,
            decisions,
            status,
        })
    }

    fn open_queue(&self, now: DateTime<Utc>) -> Result<Vec<QueueRow>, StoreError> {
        let shown = self.shown();
        let conn = self.lock();
        let sql = format!(
            "SELECT {} FROM requests INDEXED BY requests_open \
             WHERE status IN {OPEN_STATUSES} AND expires_at_ms > ?1 \
             ORDER BY expires_at_ms, raised_at_ms, id",
            schema::QUEUE_COLUMNS
        );
        let mut st = conn
            .prepare_cached(&sql)
            .map_err(|e| db_error(&shown, "preparing the queue query", &e))?;
        let mut rows = st
            .query([to_ms(now)])
            .map_err(|e| db_error(&shown, "reading the queue", &e))?;
        let mut out = Vec::new();
        while let Some(row) = rows
            .next()
            .map_err(|e| db_error(&shown, "reading the queue", &e))?
        {
            out.push(schema::queue_row(row)?);
        }
        Ok(out)
    }

    fn decide(
        &self,
        ask: &DecisionAsk,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<DecisionOutcome, StoreError> {
        // The store keeps milliseconds; plan with what will be read back.
        let now = truncate_ms(now);
        let shown = self.shown();
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock before reading, so what we plan against is what we
        // write over: racing deciders queue here and the later ones see the earlier decisions.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| {
                db_error(
                    &shown,
                    &format!("starting the decision on {}", ask.request),
                    &e,
                )
            })?;
        let loaded = schema::load_request(&tx, &shown, &ask.request)?
            .ok_or_else(|| StoreError::NotFound(ask.request.to_string()))?;
        let existing = schema::load_decisions(&tx, &shown, &ask.request)?;
        let decisions: Vec<_> = existing.iter().map(|(_, d)| d.clone()).collect();
        if loaded.status.is_final() {
            return Err(Refusal::for_final(
                &loaded.request,
                loaded.status,
                existing.iter().map(|(_, d)| d),
            )
            .into());
        }
        let plan = decision::plan(&loaded.request, &decisions, policy, ask, now)?;
        let next_seq = existing.iter().map(|(s, _)| *s).max().unwrap_or(0) + 1;
        let mut rows = Vec::with_capacity(plan.decisions.len());
        for (offset, d) in plan.decisions.iter().enumerate() {
            let seq = next_seq + offset as i64;
            tx.prepare_cached(
                "INSERT INTO decisions (request_id, seq, input_index, verdict, reviewer, reason, \
                 decided_at_ms, dwell_ms, args_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut st| {
                st.execute(rusqlite::params![
                    d.request.as_str(),
                    seq,
                    d.input_index as i64,
                    d.verdict.as_str(),
                    d.reviewer,
                    d.reason,
                    to_ms(d.decided_at),
                    d.dwell_ms.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
                    d.args_hash,
                ])
            })
            .map_err(|e| {
                db_error(
                    &shown,
                    &format!("recording the decision on {}", d.request),
                    &e,
                )
            })?;
            rows.push(schema::decision_json(seq, d));
        }
        let approvals = distinct_approvers(decisions.iter().chain(&plan.decisions)) as i64;
        let changed = tx
            .prepare_cached(
                "UPDATE requests SET status = ?1, approvals = ?2, version = version + 1 \
                 WHERE id = ?3 AND version = ?4",
            )
            .and_then(|mut st| {
                st.execute(rusqlite::params![
                    plan.status_after.as_str(),
                    approvals,
                    ask.request.as_str(),
                    loaded.version
                ])
            })
            .map_err(|e| db_error(&shown, &format!("updating request {}", ask.request), &e))?;
        if changed != 1 {
            return Err(StoreError::Unavailable(format!(
                "{shown}: request {} changed while this decision was being written (version {}); \
                 nothing was recorded, try again",
                ask.request, loaded.version
            )));
        }
        // A runner-raised request that just became final gets its resume queued in this same
        // transaction: the decision and the promise to send it back commit together or not at all.
        let all: Vec<_> = decisions.iter().chain(&plan.decisions).cloned().collect();
        let resume = outbox::queue_resume(
            &tx,
            &shown,
            &loaded.request,
            &all,
            policy,
            plan.status_after,
            to_ms(now),
        )?;
        let mut payload = json!({
            "request": ask.request.as_str(),
            "decisions": rows,
            "status": plan.status_after.as_str(),
            "approvals": approvals,
        });
        if resume {
            payload["resume"] = json!("queued");
        }
        let audit_seq = audit::append(
            &tx,
            &shown,
            to_ms(now),
            &ask.reviewer,
            "decided",
            &ask.request,
            &payload,
        )?;
        tx.commit().map_err(|e| {
            db_error(
                &shown,
                &format!("committing the decision on {}", ask.request),
                &e,
            )
        })?;
        Ok(DecisionOutcome {
            decisions: plan.decisions,
            status: plan.status_after,
            audit_seq: u64::try_from(audit_seq).unwrap_or(0),
        })
    }

    fn expire_due(&self, now: DateTime<Utc>, actor: &str) -> Result<usize, StoreError> {
        let shown = self.shown();
        let now_ms = to_ms(now);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&shown, "starting the expiry sweep", &e))?;
        let due: Vec<(String, String, i64, i64)> = tx
            .prepare(&format!(
                "SELECT id, status, version, expires_at_ms FROM requests INDEXED BY requests_open \
                 WHERE status IN {OPEN_STATUSES} AND expires_at_ms <= ?1 \
                 ORDER BY expires_at_ms, raised_at_ms, id"
            ))
            .and_then(|mut st| {
                st.query_map([now_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()
            })
            .map_err(|e| db_error(&shown, "finding requests due to expire", &e))?;
        let mut expired = 0;
        for (id, status, version, expires_at_ms) in due {
            // The stored status is open, so when it was written not every input was final; with
            // the session gone, `Status::derive` can only give `expired` now.
            let from = schema::parse_status(&id, &status)?;
            if from.check_transition(Status::Expired).is_err() {
                continue;
            }
            let changed = tx
                .prepare_cached(&format!(
                    "UPDATE requests SET status = 'expired', version = version + 1 \
                     WHERE id = ?1 AND version = ?2 AND status IN {OPEN_STATUSES}"
                ))
                .and_then(|mut st| st.execute(rusqlite::params![id, version]))
                .map_err(|e| db_error(&shown, &format!("expiring request {id}"), &e))?;
            if changed != 1 {
                continue;
            }
            let request = ApprovalId(id);
            audit::append(
                &tx,
                &shown,
                now_ms,
                actor,
                "expired",
                &request,
                &json!({
                    "request": request.as_str(),
                    "status": Status::Expired.as_str(),
                    "from": from.as_str(),
                    "expiresAtMs": expires_at_ms,
                }),
            )?;
            expired += 1;
        }
        tx.commit()
            .map_err(|e| db_error(&shown, "committing the expiry sweep", &e))?;
        Ok(expired)
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let shown = self.shown();
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| db_error(&shown, "starting a read", &e))?;
        let err = |e: rusqlite::Error| db_error(&shown, "counting", &e);
        let one = |sql: &str| -> Result<u64, StoreError> {
            tx.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(err)
        };
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>, StoreError> {
            tx.prepare(sql)
                .and_then(|mut st| {
                    st.query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        ))
                    })?
                    .collect()
                })
                .map_err(err)
        };
        let by_status_raw = pairs("SELECT status, count(*) FROM requests GROUP BY status")?;
        let by_status = Status::ALL
            .into_iter()
            .map(|s| {
                let n = by_status_raw
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (s, n)
            })
            .collect();
        let by_tier_raw = pairs(&format!(
            "SELECT CAST(tier AS TEXT), count(*) FROM requests WHERE status IN {OPEN_STATUSES} \
             GROUP BY tier"
        ))?;
        let by_tier_open = RiskTier::ALL
            .into_iter()
            .map(|t| {
                let n = by_tier_raw
                    .iter()
                    .find(|(k, _)| *k == t.rank().to_string())
                    .map_or(0, |(_, n)| *n);
                (t, n)
            })
            .collect();
        let decided =
            one("SELECT count(*) FROM (SELECT request_id FROM decisions GROUP BY request_id)")?;
        // The median over decided requests of (first decision - raised), found by offset.
        let median_time_to_decision_ms = if decided == 0 {
            None
        } else {
            let take = 2 - (decided % 2);
            let offset = (decided - 1) / 2;
            let middle: Vec<i64> = tx
                .prepare(
                    "SELECT max(0, first_ms - r.raised_at_ms) AS wait FROM requests r \
                     JOIN (SELECT request_id, min(decided_at_ms) AS first_ms FROM decisions \
                           GROUP BY request_id) d ON d.request_id = r.id \
                     ORDER BY wait LIMIT ?1 OFFSET ?2",
                )
                .and_then(|mut st| {
                    st.query_map([take as i64, offset as i64], |r| r.get(0))?
                        .collect()
                })
                .map_err(err)?;
            let n = middle.len() as i64;
            (n > 0).then(|| u64::try_from(middle.iter().sum::<i64>() / n).unwrap_or(0))
        };
        Ok(StoreCounts {
            requests: one("SELECT count(*) FROM requests")?,
            by_status,
            by_tier_open,
            sessions: one("SELECT count(DISTINCT session_id) FROM requests")?,
            agents: pairs(
                "SELECT agent_id, count(*) AS n FROM requests GROUP BY agent_id \
                 ORDER BY n DESC, agent_id",
            )?,
            decisions: one("SELECT count(*) FROM decisions")?,
            confirms: one("SELECT count(*) FROM decisions WHERE verdict = 'confirm'")?,
            denies: one("SELECT count(*) FROM decisions WHERE verdict = 'deny'")?,
            reviewers: pairs(
                "SELECT reviewer, count(*) AS n FROM decisions GROUP BY reviewer \
                 ORDER BY n DESC, reviewer",
            )?,
            median_time_to_decision_ms,
            // The log is numbered 1, 2, 3... with no gaps (`audit::append`; `verify` reports
            // any), so its last seq is its length: found on the rowid, not counted by a scan of
            // every entry (the log has no smaller index to count on since migration 12).
            audit_entries: one("SELECT coalesce(max(seq), 0) FROM audit")?,
            invocations: one("SELECT count(*) FROM invocations")?,
            invocations_by_outcome: pairs(
                "SELECT outcome, count(*) FROM invocations GROUP BY outcome ORDER BY outcome",
            )?,
            trace_events: one("SELECT coalesce(sum(n), 0) FROM trace_blocks")?,
            trace_steps: one("SELECT count(*) FROM trace_steps")?,
            input_tokens: one("SELECT coalesce(sum(input_tokens), 0) FROM invocations")?,
            output_tokens: one("SELECT coalesce(sum(output_tokens), 0) FROM invocations")?,
            outbox_by_state: pairs(
                "SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state",
            )?,
            recent: recent_invocations(&tx).map_err(err)?,
        })
    }

    fn audit_verify(&self) -> Result<AuditReport, StoreError> {
        let shown = self.shown();
        let mut conn = self.lock();
        verify::verify(&mut conn, &shown)
    }

    fn audit_each(
        &self,
        each: &mut dyn FnMut(AuditEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let shown = self.shown();
        let sql = format!(
            "SELECT {} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            audit::ENTRY_COLUMNS
        );
        let mut after = 0_i64;
        loop {
            // Page by seq and release the lock between pages, so `each` may call the store.
            let page: Vec<AuditEntry> = {
                let conn = self.lock();
                let mut st = conn
                    .prepare_cached(&sql)
                    .map_err(|e| db_error(&shown, "reading the audit log", &e))?;
                let mut rows = st
                    .query([after, AUDIT_PAGE])
                    .map_err(|e| db_error(&shown, "reading the audit log", &e))?;
                let mut page = Vec::new();
                while let Some(row) = rows
                    .next()
                    .map_err(|e| db_error(&shown, "reading the audit log", &e))?
                {
                    page.push(audit::entry(row)?);
                }
                page
            };
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = i64::try_from(last.seq).unwrap_or(i64::MAX);
            for entry in page {
                each(entry)?;
            }
        }
    }
}

/// The newest turns, for the traces pane (the `invocations_recent` index serves the order).
fn recent_invocations(
    tx: &rusqlite::Transaction<'_>,
) -> rusqlite::Result<Vec<crate::store::RecentInvocation>> {
    let mut st = tx.prepare_cached(
        "SELECT request_id, agent_id, agent_alias_id, session_id, started_at_ms, outcome, \
                latency_ms, steps, input_tokens, output_tokens, input_text, resumes \
         FROM invocations ORDER BY started_at_ms DESC, request_id DESC LIMIT ?1",
    )?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let rows = st.query_map([crate::store::RECENT_INVOCATIONS as i64], |r| {
        Ok(crate::store::RecentInvocation {
            request_id: r.get(0)?,
            agent_id: r.get(1)?,
            agent_alias_id: r.get(2)?,
            session_id: r.get(3)?,
            started_at: chrono::DateTime::from_timestamp_millis(r.get(4)?).unwrap_or_default(),
            outcome: r.get(5)?,
            latency_ms: r.get::<_, Option<i64>>(6)?.map(n),
            steps: n(r.get(7)?),
            input_tokens: n(r.get(8)?),
            output_tokens: n(r.get(9)?),
            input_text: r.get(10)?,
            resumes: r.get(11)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_writes_run_relaxed_and_leave_the_connection_at_full()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("deck.db"))?;
        let level = |c: &Connection| c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0));
        // 2 = FULL, 1 = NORMAL.
        assert_eq!(level(&store.lock())?, 2);
        let inside = store.trace_write("testing", |tx| {
            level(tx).map_err(|e| StoreError::Unavailable(e.to_string()))
        })?;
        assert_eq!(inside, 1);
        assert_eq!(level(&store.lock())?, 2);
        let failed: Result<(), StoreError> =
            store.trace_write("testing", |_| Err(StoreError::NotFound("x".into())));
        assert!(failed.is_err());
        assert_eq!(level(&store.lock())?, 2);
        Ok(())
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefixed_ids() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        let upper = prefix_upper_bound("inv-1").unwrap_or_default();
        for id in ["inv-1", "inv-10", "inv-1z", "inv-1\u{10FFFF}"] {
            assert!(id >= "inv-1" && id < upper.as_str(), "{id}");
        }
        assert!("inv-2" >= upper.as_str());
    }
}
