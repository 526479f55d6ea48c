//! WAL checkpoints on a thread of their own, for a store the runner's group commit writes to.
//!
//! SQLite checkpoints when a commit leaves the WAL past its threshold, inside that commit: the
//! writer that crossed it copies the pages into the database file and fsyncs it while every turn
//! in flight waits for its next commit. On the ingest bench that was about 40% of the writer
//! thread's time. Here the writer's connection gets a WAL hook instead of SQLite's
//! (`install`): past `NUDGE_PAGES` the writer only nudges this thread, which runs a PASSIVE
//! checkpoint on a connection of its own (at most one per `PERIOD`), copying what is committed
//! without blocking the writer or any reader. The writer still checkpoints by itself at
//! `BACKSTOP_PAGES`: SQLite restarts the WAL from its start only once every frame in it is
//! copied, which a checkpoint racing the writer's commits rarely sees; by then this thread has
//! copied all but the commits of its last `PERIOD`. If this thread is checkpointing just then,
//! the writer waits for it to end rather than let the WAL grow past the backstop.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Wal;

/// WAL pages past which a commit nudges the checkpoint thread: SQLite's own threshold.
const NUDGE_PAGES: c_int = 1000;
/// WAL pages past which the writer checkpoints itself (64 MiB of 4 KiB pages). That
/// checkpoint stalls every turn waiting for a commit (it copies what this thread has not yet,
/// up to a `PERIOD` of commits, and may wait for this thread's checkpoint to end): at 16 MiB,
/// five times a second at the ingest bench's rate, the stalls cost about a tenth of its
/// throughput (an experiment without the backstop: 49,500 vs 46,400 events/s at the same CPU
/// per event). At 64 MiB the bench measured 48,600 over 16,000 turns; the WAL file stays under
/// 70 MB, as `agentdeck import`'s bulk loads already allow for 32 MiB between checkpoints.
const BACKSTOP_PAGES: c_int = 16_384;
/// The least time between two of this thread's checkpoints while commits keep coming, so each
/// copies a batch of frames (4-6 MB at the ingest bench's rate), not a commit's worth.
const PERIOD: Duration = Duration::from_millis(100);

thread_local! {
    /// Pages in the WAL after the last commit this thread made through a hooked connection.
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// The WAL hook of a writer's connection (in place of SQLite's automatic checkpoint): notes
/// the WAL's size for `wants_checkpoint`, and checkpoints at the backstop. It never fails:
/// an error here would make the commit that ran it report failure though it committed, so a
/// failed checkpoint is left to the next one, as SQLite's own hook does.
#[allow(
    clippy::unnecessary_wraps,
    reason = "the signature rusqlite's wal_hook takes"
)]
fn on_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    if pages >= BACKSTOP_PAGES {
        backstop(|| wal.checkpoint());
    }
    Ok(())
}

/// The most the writer waits at the backstop for the thread's checkpoint to end.
const BACKSTOP_WAIT: Duration = Duration::from_secs(10);

/// Runs the writer's own checkpoint. While the thread's checkpoint holds SQLite's checkpoint
/// lock, the writer's gets `SQLITE_BUSY` at once (no busy handler is consulted for that lock),
/// and the WAL would grow a commit further on each try: so it retries until the thread's ends,
/// as long as `BACKSTOP_WAIT`. Any other failure is left to the next commit.
fn backstop(checkpoint: impl Fn() -> rusqlite::Result<()>) {
    let until = Instant::now() + BACKSTOP_WAIT;
    loop {
        match checkpoint() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < until =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                tracing::warn!("backstop checkpoint: {e}");
                return;
            }
            Ok(()) => return,
        }
    }
}

/// Puts the hook on the writer's connection.
pub(super) fn install(conn: &Connection) {
    conn.wal_hook(Some(on_commit));
}

/// Whether the last commit this thread made left enough in the WAL to checkpoint.
pub(super) fn wants_checkpoint() -> bool {
    WAL_PAGES.get() >= NUDGE_PAGES
}

/// The checkpoint thread of one store: nudged after commits, stopped (and joined) when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    /// Checkpoints this thread has run.
    done: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path`. `None` when the thread or connection
    /// cannot be had; the caller then keeps SQLite's automatic checkpoint.
    pub(super) fn start(path: &Path) -> Option<Self> {
        let conn = Connection::open(path)
            .inspect_err(|e| {
                tracing::warn!(
                    "{}: no checkpoint connection, the writer checkpoints: {e}",
                    path.display()
                );
            })
            .ok()?;
        let (nudge, nudged) = mpsc::sync_channel(1);
        let done = Arc::new(AtomicU64::new(0));
        let counted = done.clone();
        let thread = std::thread::Builder::new()
            .name("agentdeck-ckpt".into())
            .spawn(move || {
                crate::store::background::lower_this_thread();
                run(&conn, &nudged, &counted);
            })
            .inspect_err(|e| tracing::warn!("no checkpoint thread, the writer checkpoints: {e}"))
            .ok()?;
        Some(Self {
            nudge: Some(nudge),
            done,
            thread: Some(thread),
        })
    }

    /// Tells the thread there is something to checkpoint. Never waits: a nudge already pending
    /// covers this one.
    pub(super) fn nudge(&self) {
        if let Some(n) = &self.nudge {
            let _ = n.try_send(());
        }
    }

    /// Checkpoints run so far.
    pub(super) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        tracing::debug!(
            "checkpoint thread stopped after {} checkpoints",
            self.done()
        );
    }
}

/// Checkpoints on each nudge, at most once per `PERIOD` (nudges meanwhile wait in the channel
/// and are covered by the next), until the store is dropped.
fn run(conn: &Connection, nudged: &mpsc::Receiver<()>, done: &AtomicU64) {
    let mut last: Option<Instant> = None;
    while nudged.recv().is_ok() {
        if let Some(due) = last.map(|l| l + PERIOD) {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!("background checkpoint: {e}"),
        }
        last = Some(Instant::now());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::trace::TraceEvent;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{
        ApprovalStore, InvocationStart, RunnerStore, RunnerWrite, TraceStore, TurnWrite,
    };

    /// `len` letters and digits that do not repeat, so packing a block (`pack`) cannot shrink
    /// them: each is drawn by xorshift from `seed`.
    fn noise(seed: u64, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(ALPHABET[usize::try_from(x % 62).unwrap_or(0)])
            })
            .collect()
    }

    /// A turn of `events` events of about 8 KB each (as stored: the text does not pack), its
    /// start included.
    fn turn(store: &SqliteStore, id: &str, events: usize) {
        let start = InvocationStart {
            request_id: id.into(),
            agent_id: "A".into(),
            agent_alias_id: "L".into(),
            session_id: "s".into(),
            input_text: None,
            resumes: None,
            started_at: chrono::DateTime::UNIX_EPOCH,
        };
        let seed = id
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            << 16;
        let events: Vec<TraceEvent> = (0..events)
            .map(|i| {
                TraceEvent::from_wire(serde_json::json!({"trace": {"orchestrationTrace": {
                    "modelInvocationInput": {"traceId": format!("{id}-{i}"),
                                             "text": noise(seed + i as u64, 8000)}}}}))
            })
            .collect();
        let w = TurnWrite {
            request_id: id,
            start: Some(&start),
            events: &events,
            chunks: &[],
            end: None,
        };
        for r in store.write_group(&[RunnerWrite::Turn(w)]) {
            r.unwrap();
        }
    }

    fn wal_len(store: &SqliteStore) -> u64 {
        let wal = format!("{}-wal", store.path().display());
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    fn done(store: &SqliteStore) -> u64 {
        store.checkpointer.get().unwrap().as_ref().unwrap().done()
    }

    /// Waits up to 5 s for the thread to have run `n` checkpoints.
    fn await_done(store: &SqliteStore, n: u64) -> u64 {
        let until = Instant::now() + Duration::from_secs(5);
        while done(store) < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        done(store)
    }

    #[test]
    fn group_commits_are_checkpointed_by_the_thread_and_the_wal_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
        // Below the nudge threshold nothing is checkpointed.
        turn(&store, "small", 10);
        std::thread::sleep(PERIOD * 2);
        assert_eq!(done(&store), 0);
        // Past it (about 2,000 pages), the thread checkpoints, without the writer's backstop.
        for t in 0..20 {
            turn(&store, &format!("t{t}"), 100);
        }
        assert!(await_done(&store, 1) >= 1);
        // 140 MB more, twice the backstop: the WAL restarts instead of growing, never far past
        // the backstop.
        let frame = 4096 + 24;
        for t in 20..160 {
            turn(&store, &format!("t{t}"), 120);
            assert!(wal_len(&store) < (BACKSTOP_PAGES as u64 + 600) * frame);
        }
        // Every turn is there, read through another connection.
        let other = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
        assert_eq!(
            other.counts().unwrap().trace_events,
            10 + 20 * 100 + 140 * 120
        );
        assert_eq!(other.invocation("t159").unwrap().unwrap().events, 120);
    }

    #[test]
    fn the_backstop_waits_out_a_busy_checkpoint_lock_and_gives_up_on_other_errors() {
        let busy = || {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            )
        };
        let tries = Cell::new(0);
        backstop(|| {
            tries.set(tries.get() + 1);
            if tries.get() < 4 { Err(busy()) } else { Ok(()) }
        });
        assert_eq!(tries.get(), 4);
        tries.set(0);
        backstop(|| {
            tries.set(tries.get() + 1);
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                None,
            ))
        });
        assert_eq!(tries.get(), 1);
    }

    #[test]
    fn dropping_the_store_closes_the_threads_connection_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deck.db");
        let store = SqliteStore::open(&path).unwrap();
        for t in 0..20 {
            turn(&store, &format!("t{t}"), 100);
        }
        assert!(await_done(&store, 1) >= 1);
        drop(store);
        // The last connection to close checkpoints and deletes the WAL: with the thread's
        // connection still open, the WAL would stay.
        assert!(!dir.path().join("deck.db-wal").exists());
        assert_eq!(
            SqliteStore::open(&path)
                .unwrap()
                .counts()
                .unwrap()
                .trace_events,
            2000
        );
    }
}
