//! `TraceWriter`: the runner's writes on a thread of their own, with group commit. Turns hand
//! their trace batches and approval requests to a bounded queue (a full queue makes them wait:
//! back-pressure) and go on reading their streams. The thread takes everything queued, up to
//! `GROUP_MAX` writes, and makes it in one transaction (`RunnerStore::write_group`); what arrives
//! meanwhile forms the next group, so groups grow with the load and a quiet writer commits each
//! write at once, with no waiting for company.
//!
//! A turn's last write, and an approval request, wait for their commit: a turn is in the store
//! when `invoke` returns, and the queue order puts a return of control's trace before its
//! request. An approval request must also be on disk before its answer: a group holding one is
//! committed like the others (`RunnerStore::write_group_unsynced`), its trace writes answered
//! at once, and its requests answered by a second thread once an fsync covers the commit
//! (`RunnerStore::sync`). The writer meanwhile makes the next group: an fsync no longer holds
//! up every turn's commit, and fsyncs owed meanwhile are made as one.
//!
//! A write that fails fails only its turn: the turn's later writes are not made and the turn
//! hears the error at its next write. Closing or dropping the writer makes everything still
//! queued first, and answers every request still owed a sync.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::domain::approval::ApprovalRequest;
use crate::domain::trace::TraceEvent;
use crate::store::{
    InvocationEnd, InvocationStart, RunnerLink, RunnerStore, RunnerWrite, StoreError, TurnWrite,
    skipped_after_failure,
};

/// Writes queued before a turn waits for room.
const QUEUE: usize = 1024;
/// Writes committed together at most.
const GROUP_MAX: usize = 256;

/// Whether a write of a turn failed, and its error until the turn is told.
#[derive(Debug, Default)]
enum Failure {
    #[default]
    None,
    Unreported(StoreError),
    Reported,
}

/// What the writer knows of one turn: whether a write of it failed.
#[derive(Debug, Default)]
pub struct TurnState {
    failed: Mutex<Failure>,
}

impl TurnState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Failure> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_failed(&self) -> bool {
        !matches!(*self.lock(), Failure::None)
    }

    /// Records a failed write. With `told` (a caller waits for it) returns the error to give
    /// that caller: the turn's first failure, if it was not told yet, else this one.
    fn fail(&self, e: StoreError, told: bool) -> Option<StoreError> {
        let mut f = self.lock();
        let (state, tell) = match (std::mem::take(&mut *f), told) {
            (Failure::None, false) => (Failure::Unreported(e), None),
            (Failure::Unreported(first), false) => (Failure::Unreported(first), None),
            (Failure::Reported, false) => (Failure::Reported, None),
            (Failure::Unreported(first), true) => (Failure::Reported, Some(first)),
            (Failure::None | Failure::Reported, true) => (Failure::Reported, Some(e)),
        };
        *f = state;
        tell
    }

    /// Fails with the turn's first failed write (its own error the first time it is asked).
    fn check(&self, request_id: &str) -> Result<(), StoreError> {
        let mut f = self.lock();
        match std::mem::replace(&mut *f, Failure::Reported) {
            Failure::None => {
                *f = Failure::None;
                Ok(())
            }
            Failure::Unreported(e) => Err(e),
            Failure::Reported => Err(skipped_after_failure(request_id)),
        }
    }
}

/// An owned `TurnWrite`: what a turn hands over.
#[derive(Debug, Default)]
pub struct TurnBatch {
    pub request_id: String,
    pub start: Option<InvocationStart>,
    pub events: Vec<TraceEvent>,
    pub chunks: Vec<String>,
    pub end: Option<InvocationEnd>,
}

impl TurnBatch {
    pub(crate) fn as_write(&self) -> TurnWrite<'_> {
        TurnWrite {
            request_id: &self.request_id,
            start: self.start.as_ref(),
            events: &self.events,
            chunks: &self.chunks,
            end: self.end.as_ref(),
        }
    }
}

#[derive(Debug)]
enum Work {
    Turn(Box<TurnBatch>),
    Submit {
        request: Box<ApprovalRequest>,
        link: RunnerLink,
        actor: String,
    },
}

impl Work {
    fn as_write(&self) -> RunnerWrite<'_> {
        match self {
            Self::Turn(b) => RunnerWrite::Turn(b.as_write()),
            Self::Submit {
                request,
                link,
                actor,
            } => RunnerWrite::Submit {
                request,
                link,
                actor,
            },
        }
    }
}

/// A write's answer, with the write itself: the turn's task drops it on its own thread. A
/// turn's batch is allocations its thread made (the SDK's strings, the events' JSON text), and
/// freed on the writer's thread each went through the allocator's cross-thread path and was
/// collected again by the turn's thread before it could be reused.
type Answer = (Result<(), StoreError>, Work);
type Reply = oneshot::Sender<Answer>;

/// Who hears of a write once it is made.
enum Tell {
    /// Told its result once it is committed (or failed), and given the write back.
    Answer(Reply),
    /// Only given the write back, for the turn to drop.
    Back(oneshot::Sender<Work>),
    /// Nobody: the write is dropped on the writer's thread.
    Nobody,
}

struct Job {
    work: Work,
    turn: Arc<TurnState>,
    tell: Tell,
}

/// A write queued without waiting: its answer, once it is committed or refused.
#[derive(Debug)]
pub struct Queued(oneshot::Receiver<Answer>);

impl Queued {
    pub async fn answer(self) -> Result<(), StoreError> {
        self.0.await.map_err(|_| stopped())?.0
    }
}

/// A write queued without an answer: the write itself, given back once it is made (or
/// dropped), so that the turn's thread frees what it allocated. A failed write is told at the
/// turn's next write, as ever.
#[derive(Debug)]
pub struct Written(oneshot::Receiver<Work>);

impl Written {
    /// Waits for the write to be given back and drops it here.
    pub async fn reclaim(self) {
        drop(self.0.await);
    }

    /// Drops the write here if it was given back already (or will never be); whether it is
    /// done with. A long turn calls it as it goes, so it keeps only what is not yet written.
    pub fn try_reclaim(&mut self) -> bool {
        !matches!(self.0.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }
}

/// Answers owed once a sync covers their commit.
type Owed = Vec<(Reply, Arc<TurnState>, Work)>;

/// Makes the runner's writes on its own thread; see the module notes.
pub struct TraceWriter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter").finish_non_exhaustive()
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the runner's writer thread has stopped".into())
}

impl TraceWriter {
    /// Starts the writer thread for `store`.
    pub fn spawn(store: Arc<dyn RunnerStore>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (owe, owed) = std::sync::mpsc::channel::<Owed>();
        let syncing = store.clone();
        let sync_thread = std::thread::Builder::new()
            .name("agentdeck-sync".into())
            .spawn(move || sync_run(|| syncing.sync(), &owed))
            .map_err(|e| StoreError::Unavailable(format!("starting the sync thread: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("agentdeck-writer".into())
            .spawn(move || {
                // Below the turns' threads: it takes larger groups (`store::background`).
                crate::store::background::lower_this_thread();
                run(&*store, rx, &owe);
                // The sync thread answers what is still owed, then ends.
                drop(owe);
                if sync_thread.join().is_err() {
                    tracing::error!("the runner's sync thread panicked");
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    async fn send(&self, job: Job) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        tx.send(job).await.map_err(|_| stopped())
    }

    /// Queues a batch of `turn`; with `wait`, returns once it is committed. Fails with the
    /// turn's first failed write, if one did.
    pub async fn write(
        &self,
        turn: &Arc<TurnState>,
        batch: TurnBatch,
        wait: bool,
    ) -> Result<(), StoreError> {
        turn.check(&batch.request_id)?;
        let (tell, answer) = if wait {
            let (s, r) = oneshot::channel();
            (Tell::Answer(s), Some(Queued(r)))
        } else {
            (Tell::Nobody, None)
        };
        self.send(Job {
            work: Work::Turn(Box::new(batch)),
            turn: Arc::clone(turn),
            tell,
        })
        .await?;
        match answer {
            Some(answer) => answer.answer().await,
            None => Ok(()),
        }
    }

    /// `write` without waiting, the batch given back through the returned `Written` once it
    /// is made.
    pub async fn write_back(
        &self,
        turn: &Arc<TurnState>,
        batch: TurnBatch,
    ) -> Result<Written, StoreError> {
        turn.check(&batch.request_id)?;
        let (back, written) = oneshot::channel();
        self.send(Job {
            work: Work::Turn(Box::new(batch)),
            turn: Arc::clone(turn),
            tell: Tell::Back(back),
        })
        .await?;
        Ok(Written(written))
    }

    /// Queues a return of control of `turn` as a resumable approval request, after everything
    /// the turn queued before, and returns once it is committed (durably) or refused.
    pub async fn submit(
        &self,
        turn: &Arc<TurnState>,
        request: &ApprovalRequest,
        link: &RunnerLink,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.submit_queued(turn, request, link, actor)
            .await?
            .answer()
            .await
    }

    /// `submit` without waiting for the commit: the answer comes through the returned
    /// `Queued`. A turn that goes on to queue its end can wait for both at once, so they
    /// usually share one commit. A refused request (other than a duplicate) fails its turn.
    pub async fn submit_queued(
        &self,
        turn: &Arc<TurnState>,
        request: &ApprovalRequest,
        link: &RunnerLink,
        actor: &str,
    ) -> Result<Queued, StoreError> {
        turn.check(&link.invocation)?;
        let (reply, answer) = oneshot::channel();
        self.send(Job {
            work: Work::Submit {
                request: Box::new(request.clone()),
                link: link.clone(),
                actor: actor.to_owned(),
            },
            turn: Arc::clone(turn),
            tell: Tell::Answer(reply),
        })
        .await?;
        Ok(Queued(answer))
    }

    /// Makes everything queued, then stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Closing the queue lets the thread drain it and end.
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the runner's writer thread panicked");
        }
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread: takes what is queued, makes it as one group, answers.
fn run(store: &dyn RunnerStore, mut rx: mpsc::Receiver<Job>, owe: &std::sync::mpsc::Sender<Owed>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(GROUP_MAX);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        tracing::trace!(writes = jobs.len(), "runner writes: committing a group");
        let owed = commit(store, &mut jobs);
        if !owed.is_empty()
            && let Err(unsent) = owe.send(owed)
        {
            // The sync thread is gone (it panicked): nothing makes these durable.
            for (reply, turn, work) in unsent.0 {
                let e = StoreError::Unavailable(
                    "the runner's sync thread has stopped: the approval request was committed \
                     but not synced to disk"
                        .into(),
                );
                let _ = reply.send((turn.fail(e, true).map_or(Ok(()), Err), work));
            }
        }
    }
}

/// The sync thread: takes the answers owed, those owed meanwhile too, makes one `sync` for
/// them all and gives them. A failed sync fails each: its request is committed (the queue
/// shows it) but may not survive a power loss, and its turn must not go on as if it would.
fn sync_run(sync: impl Fn() -> Result<(), StoreError>, owed: &std::sync::mpsc::Receiver<Owed>) {
    while let Ok(mut answers) = owed.recv() {
        while let Ok(more) = owed.try_recv() {
            answers.extend(more);
        }
        let synced = sync();
        if let Err(e) = &synced {
            tracing::error!(error = %e, "approval requests committed but not synced to disk");
        }
        for (reply, turn, work) in answers {
            let answer = match &synced {
                Ok(()) => Ok(()),
                Err(e) => {
                    let e = StoreError::Unavailable(format!(
                        "the approval request was committed but not synced to disk: {e}"
                    ));
                    turn.fail(e, true).map_or(Ok(()), Err)
                }
            };
            let _ = reply.send((answer, work));
        }
    }
}

/// Makes one group and answers it; returns the answers owed a sync (`RunnerStore::sync`).
fn commit(store: &dyn RunnerStore, jobs: &mut Vec<Job>) -> Owed {
    // A turn that failed in an earlier group writes nothing more (it would leave a hole).
    let (live, dead): (Vec<Job>, Vec<Job>) = jobs.drain(..).partition(|j| !j.turn.has_failed());
    for job in dead {
        match job.tell {
            Tell::Answer(reply) => {
                // The turn's first error if nobody was told it yet, else that this was skipped.
                let skipped = skipped_after_failure(job.work.as_write().request_id());
                let told = job.turn.fail(skipped, true).map_or(Ok(()), Err);
                let _ = reply.send((told, job.work));
            }
            Tell::Back(back) => drop(back.send(job.work)),
            Tell::Nobody => {}
        }
    }
    let writes: Vec<RunnerWrite<'_>> = live.iter().map(|j| j.work.as_write()).collect();
    let (results, sync_owed) = store.write_group_unsynced(&writes);
    drop(writes);
    let mut owed = Owed::new();
    for (job, result) in live.into_iter().zip(results) {
        let result = match (result, &job.work) {
            (Err(e), Work::Turn(b)) => {
                tracing::warn!(request_id = %b.request_id, error = %e, "trace write failed");
                match job.turn.fail(e, matches!(job.tell, Tell::Answer(_))) {
                    Some(e) => Err(e),
                    None => continue,
                }
            }
            // A request already queued (a replayed stream) leaves its turn going.
            (Err(e @ StoreError::Duplicate(_)), Work::Submit { .. }) => Err(e),
            (Err(e), Work::Submit { link, .. }) => {
                tracing::warn!(request_id = %link.invocation, error = %e, "queueing a request failed");
                job.turn.fail(e, true).map_or(Ok(()), Err)
            }
            (r, _) => r,
        };
        match job.tell {
            Tell::Answer(reply)
                if sync_owed && result.is_ok() && matches!(job.work, Work::Submit { .. }) =>
            {
                owed.push((reply, job.turn, job.work));
            }
            Tell::Answer(reply) => drop(reply.send((result, job.work))),
            Tell::Back(back) => drop(back.send(job.work)),
            Tell::Nobody => {}
        }
    }
    owed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ApprovalStore, Outcome, TraceStore};
    use chrono::Utc;

    fn start(id: &str) -> InvocationStart {
        InvocationStart {
            request_id: id.into(),
            agent_id: "A".into(),
            agent_alias_id: "L".into(),
            session_id: format!("s-{id}"),
            input_text: Some("hi".into()),
            resumes: None,
            started_at: Utc::now(),
        }
    }

    fn end() -> InvocationEnd {
        InvocationEnd {
            outcome: Outcome::Finished,
            ended_at: Utc::now(),
            error: None,
            final_response: Some("done".into()),
            latency_ms: Some(5),
        }
    }

    fn batch(id: &str, start_it: bool, chunk: &str) -> TurnBatch {
        TurnBatch {
            request_id: id.into(),
            start: start_it.then(|| start(id)),
            chunks: vec![chunk.into()],
            ..TurnBatch::default()
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn owed_answers_wait_for_one_sync_and_a_failed_sync_fails_them_and_their_turns() {
        let owe = |n: usize| -> (Owed, Vec<oneshot::Receiver<Answer>>) {
            (0..n)
                .map(|_| {
                    let (s, r) = oneshot::channel();
                    let work = Work::Turn(Box::new(batch("inv", false, "a")));
                    ((s, Arc::new(TurnState::default()), work), r)
                })
                .unzip()
        };
        // Three groups owed before the thread looks: one sync covers them all.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut answers = Vec::new();
        for n in [1, 2, 3] {
            let (o, a) = owe(n);
            tx.send(o).unwrap();
            answers.extend(a);
        }
        drop(tx);
        let syncs = std::sync::atomic::AtomicUsize::new(0);
        sync_run(
            || {
                syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            },
            &rx,
        );
        assert_eq!(syncs.into_inner(), 1);
        for mut a in answers {
            a.try_recv().unwrap().0.unwrap();
        }
        // A failed sync: each answer names it, and each turn has failed.
        let (tx, rx) = std::sync::mpsc::channel();
        let (o, answers) = owe(2);
        let turns: Vec<Arc<TurnState>> = o.iter().map(|(_, t, _)| t.clone()).collect();
        tx.send(o).unwrap();
        drop(tx);
        sync_run(|| Err(StoreError::Unavailable("disk gone".into())), &rx);
        for mut a in answers {
            let e = a.try_recv().unwrap().0.unwrap_err().to_string();
            assert!(
                e.contains("committed but not synced to disk") && e.contains("disk gone"),
                "{e}"
            );
        }
        assert!(turns.iter().all(|t| t.has_failed()));
    }

    fn request(invocation: &str) -> ApprovalRequest {
        let doc = serde_json::json!({
            "agentId": "A", "agentAliasId": "L", "sessionId": format!("s-{invocation}"),
            "returnControl": {"invocationId": format!("ask-{invocation}"), "invocationInputs": [
                {"functionInvocationInput": {"actionGroup": "pay", "function": "send",
                 "parameters": [{"name": "amount", "type": "number", "value": "5"}]}}]},
        });
        let ttl = |_: &str| 600;
        crate::domain::validate::submission(
            &doc,
            &crate::domain::validate::SubmitContext {
                policy: &crate::domain::policy::Policy::default(),
                now: Utc::now(),
                ttl_secs: &ttl,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_group_answers_its_trace_writes_at_once_and_owes_its_requests_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
        let turn = Arc::new(TurnState::default());
        let (wrote, mut wrote_answer) = oneshot::channel();
        let (asked, mut asked_answer) = oneshot::channel();
        let mut jobs = vec![
            Job {
                work: Work::Turn(Box::new(batch("inv-1", true, "a"))),
                turn: turn.clone(),
                tell: Tell::Answer(wrote),
            },
            Job {
                work: Work::Submit {
                    request: Box::new(request("inv-1")),
                    link: RunnerLink {
                        invocation: "inv-1".into(),
                        trace_id: None,
                    },
                    actor: "runner".into(),
                },
                turn: turn.clone(),
                tell: Tell::Answer(asked),
            },
        ];
        let owed = commit(&store, &mut jobs);
        wrote_answer.try_recv().unwrap().0.unwrap();
        // Committed, but not answered until a sync.
        assert!(asked_answer.try_recv().is_err());
        assert_eq!(owed.len(), 1);
        assert_eq!(store.open_queue(Utc::now()).unwrap().len(), 1);
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(owed).unwrap();
        drop(tx);
        sync_run(|| store.sync(), &rx);
        asked_answer.try_recv().unwrap().0.unwrap();
        // A group of trace writes alone owes nothing.
        let (w, mut a) = oneshot::channel();
        let mut jobs = vec![Job {
            work: Work::Turn(Box::new(batch("inv-1", false, "b"))),
            turn,
            tell: Tell::Answer(w),
        }];
        assert!(commit(&store, &mut jobs).is_empty());
        a.try_recv().unwrap().0.unwrap();
        assert_eq!(store.chunk_text("inv-1").unwrap(), "ab");
    }

    #[test]
    fn a_write_made_without_waiting_is_given_back_once_it_is_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("deck.db")).unwrap());
        let writer = TraceWriter::spawn(store.clone()).unwrap();
        let turn = Arc::new(TurnState::default());
        rt().block_on(async {
            let written = writer
                .write_back(&turn, batch("inv-b", true, "a"))
                .await
                .unwrap();
            let mut back = written.0;
            let work = (&mut back).await.unwrap();
            // Taken already: nothing is left to wait for.
            assert!(Written(back).try_reclaim());
            assert!(matches!(&work, Work::Turn(b) if b.request_id == "inv-b" && b.chunks == ["a"]));
            assert_eq!(store.chunk_text("inv-b").unwrap(), "a");
            // A waiting write's answer comes with its write too.
            let (reply, answer) = oneshot::channel();
            writer
                .send(Job {
                    work: Work::Turn(Box::new(batch("inv-b", false, "b"))),
                    turn: turn.clone(),
                    tell: Tell::Answer(reply),
                })
                .await
                .unwrap();
            let (result, work) = answer.await.unwrap();
            result.unwrap();
            assert!(matches!(work, Work::Turn(b) if b.chunks == ["b"]));
        });
        writer.close();
        assert_eq!(store.chunk_text("inv-b").unwrap(), "ab");
    }

    #[test]
    fn closing_the_writer_answers_every_request_after_its_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("deck.db")).unwrap());
        let writer = TraceWriter::spawn(store.clone()).unwrap();
        let queued = rt().block_on(async {
            let mut queued = Vec::new();
            for i in 0..50 {
                let turn = Arc::new(TurnState::default());
                let id = format!("inv-{i}");
                writer
                    .write(&turn, batch(&id, true, "a"), false)
                    .await
                    .unwrap();
                let link = RunnerLink {
                    invocation: id.clone(),
                    trace_id: None,
                };
                queued.push(
                    writer
                        .submit_queued(&turn, &request(&id), &link, "runner")
                        .await
                        .unwrap(),
                );
            }
            queued
        });
        // Closing waits for the sync thread too: every answer is in.
        writer.close();
        for q in queued {
            let mut answer = q.0;
            answer.try_recv().unwrap().0.unwrap();
        }
        assert_eq!(store.open_queue(Utc::now()).unwrap().len(), 50);
        store.sync().unwrap();
    }

    #[test]
    fn closing_the_writer_writes_everything_still_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("deck.db")).unwrap());
        let writer = TraceWriter::spawn(store.clone()).unwrap();
        rt().block_on(async {
            for i in 0..200 {
                let turn = Arc::new(TurnState::default());
                let id = format!("req-{i}");
                writer
                    .write(&turn, batch(&id, true, "a"), false)
                    .await
                    .unwrap();
                writer
                    .write(&turn, batch(&id, false, "b"), false)
                    .await
                    .unwrap();
            }
        });
        // Nothing above waited for a commit.
        writer.close();
        for i in 0..200 {
            let id = format!("req-{i}");
            assert_eq!(store.chunk_text(&id).unwrap(), "ab", "{id}");
        }
    }

    #[test]
    fn a_failed_write_fails_its_turn_alone_and_its_later_writes_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("deck.db")).unwrap());
        store.begin_invocation(&start("taken")).unwrap();
        let writer = TraceWriter::spawn(store.clone()).unwrap();
        rt().block_on(async {
            let ok = Arc::new(TurnState::default());
            let dup = Arc::new(TurnState::default());
            // Queued together, so they are likely committed as one group.
            writer
                .write(&ok, batch("fine", true, "x"), false)
                .await
                .unwrap();
            writer
                .write(&dup, batch("taken", true, "y"), false)
                .await
                .unwrap();
            let mut last = batch("taken", false, "z");
            last.end = Some(end());
            let failed = writer.write(&dup, last, true).await;
            assert!(
                matches!(failed, Err(StoreError::Duplicate(_))),
                "the turn's own error comes back: {failed:?}"
            );
            let mut fine_end = batch("fine", false, "w");
            fine_end.end = Some(end());
            writer.write(&ok, fine_end, true).await.unwrap();
            // Later writes of the failed turn are refused without reaching the store.
            let again = writer.write(&dup, batch("taken", false, "v"), true).await;
            assert!(
                matches!(&again, Err(StoreError::Unavailable(m)) if m.contains("earlier write")),
                "{again:?}"
            );
        });
        assert_eq!(store.chunk_text("fine").unwrap(), "xw");
        let fine = store.invocation("fine").unwrap().unwrap();
        assert_eq!(fine.outcome, Outcome::Finished);
        let taken = store.invocation("taken").unwrap().unwrap();
        assert_eq!(
            taken.outcome,
            Outcome::Running,
            "the first owner of the id is untouched"
        );
        assert_eq!(store.chunk_text("taken").unwrap(), "");
    }

    #[test]
    fn a_group_keeps_good_writes_and_rolls_back_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
        store.begin_invocation(&start("taken")).unwrap();
        let writes = [
            batch("a", true, "1"),
            batch("taken", true, "2"),
            batch("taken", false, "3"),
            batch("b", true, "4"),
            batch("a", false, "5"),
        ];
        let w: Vec<_> = writes
            .iter()
            .map(|b| RunnerWrite::Turn(b.as_write()))
            .collect();
        let results = store.write_group(&w);
        assert!(results[0].is_ok() && results[3].is_ok() && results[4].is_ok());
        assert!(matches!(results[1], Err(StoreError::Duplicate(_))));
        assert!(
            matches!(&results[2], Err(StoreError::Unavailable(m)) if m.contains("earlier write")),
            "{:?}",
            results[2]
        );
        assert_eq!(store.chunk_text("a").unwrap(), "15");
        assert_eq!(store.chunk_text("b").unwrap(), "4");
        assert_eq!(store.chunk_text("taken").unwrap(), "");
    }

    fn event(trace_id: &str, n: u32) -> crate::domain::trace::TraceEvent {
        crate::domain::trace::TraceEvent::from_wire(serde_json::json!({
            "agentId": "A", "sessionId": "s", "eventTime": format!("2026-03-02T09:00:{n:02}Z"),
            "trace": {"orchestrationTrace": {"modelInvocationOutput": {
                "traceId": trace_id, "rawResponse": {"content": format!("out {n}")},
                "metadata": {"totalTimeMs": 10}}}}
        }))
    }

    /// A group is first written without savepoints; when a write fails, that attempt is
    /// rolled back whole and the group written again write by write: the good writes land
    /// once, their steps counted once, as if the first attempt never happened.
    #[test]
    fn a_group_written_again_after_a_failed_write_keeps_its_steps_right() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("deck.db")).unwrap();
        store.begin_invocation(&start("taken")).unwrap();
        let steps = |store: &SqliteStore| -> Vec<(String, u64)> {
            store
                .steps("a", 0, 10)
                .unwrap()
                .into_iter()
                .map(|s| (s.trace_id, s.events))
                .collect()
        };
        let mut first = batch("a", true, "1");
        first.events = vec![event("a-1", 0), event("a-1", 1)];
        let results = store.write_group(&[RunnerWrite::Turn(first.as_write())]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");

        // More of step a-1 and a new step a-2, in a group whose other write fails.
        let mut more = batch("a", false, "2");
        more.events = vec![event("a-1", 2), event("a-2", 3)];
        let taken = batch("taken", true, "x");
        let results = store.write_group(&[
            RunnerWrite::Turn(more.as_write()),
            RunnerWrite::Turn(taken.as_write()),
        ]);
        assert!(results[0].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(StoreError::Duplicate(_))));
        assert_eq!(steps(&store), [("a-1".into(), 3), ("a-2".into(), 1)]);

        // The next group finds a-2 in the table: one step, not a second a-2.
        let mut last = batch("a", false, "3");
        last.events = vec![event("a-2", 4)];
        let results = store.write_group(&[RunnerWrite::Turn(last.as_write())]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(steps(&store), [("a-1".into(), 3), ("a-2".into(), 2)]);
        assert_eq!(store.chunk_text("a").unwrap(), "123");
        assert_eq!(store.chunk_text("taken").unwrap(), "");
    }
}
