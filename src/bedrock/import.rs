//! Importing recordings (`bedrock::recording`) into a `TraceStore`: events are grouped into
//! invocations and sessions, written in batches (one transaction each), and each invocation gets
//! an id derived from the file's content, so importing the same file twice adds nothing and an
//! import that was cut short carries on where it stopped.
//!
//! Grouping: an invocation is one InvokeAgent response. A recording may hold several one after
//! another; a new one starts at a trace event whose sessionId (or agentId) differs from the
//! current invocation's, or at the first trace event after the current one ended (the top
//! agent's final response, a returnControl, a failure trace, an exception). Chunks and events
//! that name no session belong to the current invocation (or, first in a file, to a session
//! named after the file).

use std::collections::HashSet;
use std::io::Read;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::recording::{ChunkBytes, Format, Item, Location, Record, Recording};
use crate::domain::trace::{Phase, TraceEvent, TraceKind};
use crate::store::StoreError;
use crate::store::run::{InvocationEnd, InvocationStart, Outcome, TraceStore, TurnWrite};

/// Events (and chunks) written per transaction. Smaller batches keep the reading thread and the
/// writing one busy together (on the import bench: 2,000 -> 1,000 took 135 to ~150 MiB/s;
/// 8,000 fell to 87 MiB/s, the reader waiting on each long write).
pub const BATCH: usize = 1_000;

/// How to read the files.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// None: sniff each file.
    pub format: Option<Format>,
    pub chunks: ChunkBytes,
    /// The session of events that name none (bodies recorded without `enableTrace`); default
    /// `import:<file name>`.
    pub session: Option<String>,
}

/// A record that was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub location: Location,
    pub message: String,
}

/// What importing one file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub format: Option<&'static str>,
    pub bytes: u64,
    /// Records read: trace events, chunks and other events.
    pub events: u64,
    /// Steps of the invocations this file holds (as stored).
    pub steps: u64,
    pub invocations: u64,
    /// Invocations a previous import of the same content already holds in full.
    pub already_imported: u64,
    pub sessions: u64,
    pub errors: u64,
    /// The request ids of the file's invocations (stable across imports).
    pub invocation_ids: Vec<String>,
}

/// Why an import stopped before the end of a file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The invocation being read. (Its flags are independent facts the stream told.)
#[allow(clippy::struct_excessive_bools)]
struct Open {
    id: String,
    start: InvocationStart,
    /// Its row is not in the store yet.
    unwritten: bool,
    /// Stored by an earlier import: skip this many events and chunks (an import cut short), or
    /// all of them (`complete`).
    skip_events: u64,
    skip_chunks: u64,
    complete: bool,
    events: Vec<TraceEvent>,
    chunks: Vec<String>,
    seen_events: u64,
    seen_chunks: u64,
    ended: bool,
    final_response: Option<String>,
    operation_ms: Option<i64>,
    failure: Option<String>,
    exception: Option<String>,
    returned_control: bool,
    answered: bool,
    last_time: Option<DateTime<Utc>>,
    /// The traceId of the last step event (not a guardrail's).
    last_trace_id: Option<String>,
}

/// The id of the `ordinal`th invocation of a file, from what identifies its content: its
/// session and the bytes of its first record.
pub fn invocation_id(session_id: &str, ordinal: u64, first_record: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(session_id.as_bytes());
    h.update([0]);
    h.update(ordinal.to_be_bytes());
    h.update(first_record);
    let digest = h.finalize();
    format!("import-{}", hex::encode(&digest[..12]))
}

/// Records handed from the reading thread to the writing one at a time.
const HANDOFF: usize = 512;
/// Hand-offs in flight: what the reader may run ahead of the writer (memory stays bounded by
/// this many records).
const IN_FLIGHT: usize = 4;

/// A run of records read, each with its bytes (an invocation's id hashes its first record).
struct Handoff {
    items: Vec<(Item, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
    /// Bytes of the file read once these records were.
    position: u64,
}

/// Reads `rec` to the end into `tx`, until the writer stops listening. Events the writer has
/// stored come back on `written` to be freed here, on the thread that allocated them (a free
/// from another thread costs the allocator several times more).
fn read_ahead<R: Read>(
    mut rec: Recording<R>,
    tx: std::sync::mpsc::SyncSender<std::io::Result<Handoff>>,
    written: &std::sync::mpsc::Receiver<Vec<TraceEvent>>,
) {
    // Each hand-off's bytes start at the size of the last one (growing them record by record
    // cost reallocations and fresh pages).
    let mut last_bytes = 0;
    loop {
        while let Ok(done) = written.try_recv() {
            drop(done);
        }
        let mut h = Handoff {
            items: Vec::with_capacity(HANDOFF),
            bytes: Vec::with_capacity(last_bytes),
            position: 0,
        };
        let mut done = false;
        let mut failed = None;
        while h.items.len() < HANDOFF {
            match rec.next_item() {
                Ok(Some(item)) => {
                    let at = h.bytes.len();
                    if matches!(item, Item::Good(..)) {
                        h.bytes.extend_from_slice(rec.last_bytes());
                    }
                    h.items.push((item, at..h.bytes.len()));
                }
                Ok(None) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        h.position = rec.position();
        last_bytes = h.bytes.len();
        // What was read before a read failed is imported, then the failure stops the import.
        if tx.send(Ok(h)).is_err() {
            return;
        }
        if done {
            // The writer's hand-offs end here; what it stores from now on comes back.
            drop(tx);
            for stored in written {
                drop(stored);
            }
            return;
        }
        if let Some(e) = failed {
            let _ = tx.send(Err(e));
            return;
        }
    }
}

/// Imports one file: `Rejected` records go to `on_error` as they are met, `progress` gets the
/// bytes read so far now and then.
///
/// Reading and parsing run on a thread of their own, ahead of the store writes on this one (at
/// most `IN_FLIGHT` hand-offs of `HANDOFF` records), so the two use two cores.
pub fn import<R: Read + Send>(
    store: &dyn TraceStore,
    input: R,
    file_name: &str,
    fallback_time: DateTime<Utc>,
    options: &ImportOptions,
    on_error: &mut dyn FnMut(&Rejected),
    progress: &mut dyn FnMut(u64),
) -> Result<FileSummary, ImportError> {
    let rec = Recording::new(input, options.format, options.chunks)?;
    let mut s = Importer {
        store,
        file_session: options
            .session
            .clone()
            .unwrap_or_else(|| format!("import:{file_name}")),
        fallback_time,
        open: None,
        written: None,
        ordinal: 0,
        sessions: HashSet::new(),
        summary: FileSummary {
            format: Some(rec.format().as_str()),
            ..FileSummary::default()
        },
    };
    let position = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(IN_FLIGHT);
        let (written_tx, written) = std::sync::mpsc::channel();
        s.written = Some(written_tx);
        scope.spawn(move || read_ahead(rec, tx, &written));
        // Stopping early drops `rx`: the reader's next send fails and it stops.
        let done = s
            .take_all(rx, on_error, progress)
            .and_then(|position| s.close().map(|()| position));
        // The reader frees what came back, then ends.
        s.written = None;
        done
    })?;
    s.summary.bytes = position;
    s.summary.sessions = s.sessions.len() as u64;
    progress(position);
    Ok(s.summary)
}

struct Importer<'s> {
    store: &'s dyn TraceStore,
    file_session: String,
    fallback_time: DateTime<Utc>,
    open: Option<Open>,
    /// Where stored events go to be freed (the reading thread).
    written: Option<std::sync::mpsc::Sender<Vec<TraceEvent>>>,
    /// Invocations opened so far in the file.
    ordinal: u64,
    sessions: HashSet<(String, String, String)>,
    summary: FileSummary,
}

impl Importer<'_> {
    /// Adds every record the reader hands over; returns the bytes read.
    fn take_all(
        &mut self,
        rx: std::sync::mpsc::Receiver<std::io::Result<Handoff>>,
        on_error: &mut dyn FnMut(&Rejected),
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ImportError> {
        let mut position = 0;
        let mut reported = 0;
        for handoff in rx {
            let h = handoff?;
            for (item, range) in h.items {
                match item {
                    Item::Bad(location, message) => {
                        self.summary.errors += 1;
                        on_error(&Rejected { location, message });
                    }
                    Item::Good(record, _) => {
                        self.summary.events += 1;
                        self.add(record, &h.bytes[range])?;
                    }
                }
            }
            position = h.position;
            if position - reported >= 1 << 20 {
                progress(position);
                reported = position;
            }
        }
        Ok(position)
    }

    fn add(&mut self, record: Record, bytes: &[u8]) -> Result<(), ImportError> {
        if let Record::Trace(e) = &record {
            // A collaborator's events carry its own agent and session: they belong to the
            // invocation that called it.
            let top = e.collaborator_name.is_none();
            let differs =
                |mine: &str, theirs: Option<&String>| top && theirs.is_some_and(|t| t != mine);
            // After the answer (the final response, or chunks), the rest of its step, the
            // post-processing and guardrail traces still belong to the invocation.
            let follows_answer = |o: &Open| {
                matches!(
                    &e.kind,
                    TraceKind::Guardrail(_)
                        | TraceKind::Step {
                            phase: Phase::PostProcessing,
                            ..
                        }
                ) || e.final_response().is_some()
                    || (e.trace_id().is_some() && e.trace_id() == o.last_trace_id.as_deref())
            };
            let new = self.open.as_ref().is_none_or(|o| {
                o.ended
                    || ((o.final_response.is_some() || o.answered) && !follows_answer(o))
                    || differs(&o.start.session_id, e.session_id.as_ref())
                    || differs(&o.start.agent_id, e.agent_id.as_ref())
            });
            if new {
                self.close()?;
                self.begin(Some(e), bytes)?;
            }
        } else if self.open.is_none() {
            self.begin(None, bytes)?;
        }
        let Some(o) = self.open.as_mut() else {
            return Ok(());
        };
        match record {
            Record::Trace(e) => {
                note(o, &e);
                o.seen_events += 1;
                if !o.complete && o.seen_events > o.skip_events {
                    o.events.push(e);
                }
            }
            Record::Other(e) => {
                if matches!(&e.kind, TraceKind::Unknown { key: Some(k) } if k == "returnControl") {
                    o.returned_control = true;
                    o.ended = true;
                }
                o.seen_events += 1;
                if !o.complete && o.seen_events > o.skip_events {
                    o.events.push(e);
                }
            }
            Record::Chunk(text) => {
                o.answered = true;
                o.seen_chunks += 1;
                if !o.complete && o.seen_chunks > o.skip_chunks {
                    o.chunks.push(text);
                }
            }
            Record::Exception { kind, message } => {
                o.exception = Some(format!("{kind}: {message}"));
                o.ended = true;
            }
        }
        if o.events.len() + o.chunks.len() >= BATCH {
            self.write(None)?;
        }
        Ok(())
    }

    /// Opens the next invocation, at `first` (its first trace event, if it starts with one).
    fn begin(&mut self, first: Option<&TraceEvent>, bytes: &[u8]) -> Result<(), ImportError> {
        let session_id = first
            .filter(|e| e.collaborator_name.is_none())
            .and_then(|e| e.session_id.clone())
            .unwrap_or_else(|| self.file_session.clone());
        let id = invocation_id(&session_id, self.ordinal, bytes);
        self.ordinal += 1;
        let start = InvocationStart {
            request_id: id.clone(),
            agent_id: first
                .filter(|e| e.collaborator_name.is_none())
                .and_then(|e| e.agent_id.clone())
                .unwrap_or_else(|| "unknown".to_owned()),
            agent_alias_id: first
                .filter(|e| e.collaborator_name.is_none())
                .and_then(|e| e.agent_alias_id.clone())
                .unwrap_or_else(|| "unknown".to_owned()),
            session_id,
            input_text: None,
            resumes: None,
            started_at: first
                .and_then(|e| e.event_time)
                .unwrap_or(self.fallback_time),
        };
        let stored = self.store.invocation(&id)?;
        let complete = stored
            .as_ref()
            .is_some_and(|r| r.outcome != Outcome::Running);
        if complete {
            self.summary.already_imported += 1;
        }
        self.open = Some(Open {
            id,
            unwritten: stored.is_none(),
            skip_events: stored.as_ref().map_or(0, |r| r.events),
            skip_chunks: stored.as_ref().map_or(0, |r| r.chunks),
            complete,
            start,
            events: Vec::new(),
            chunks: Vec::new(),
            seen_events: 0,
            seen_chunks: 0,
            ended: false,
            final_response: None,
            operation_ms: None,
            failure: None,
            exception: None,
            returned_control: false,
            answered: false,
            last_time: None,
            last_trace_id: None,
        });
        Ok(())
    }

    fn write(&mut self, end: Option<&InvocationEnd>) -> Result<(), ImportError> {
        let Some(o) = self.open.as_mut() else {
            return Ok(());
        };
        if o.complete {
            return Ok(());
        }
        self.store.write_turn(&TurnWrite {
            request_id: &o.id,
            start: o.unwritten.then_some(&o.start),
            events: &o.events,
            chunks: &o.chunks,
            end,
        })?;
        o.unwritten = false;
        // The next batch at the size of this one: growing it event by event moved every event
        // several times.
        let size = o.events.len();
        let done = std::mem::replace(&mut o.events, Vec::with_capacity(size));
        if let Some(w) = &self.written {
            // After the reader has gone (the file is read) they are freed here.
            let _ = w.send(done);
        }
        o.chunks.clear();
        Ok(())
    }

    /// Writes the rest of the open invocation with its end.
    fn close(&mut self) -> Result<(), ImportError> {
        let Some(o) = self.open.as_ref() else {
            return Ok(());
        };
        let (outcome, error) = if let Some(e) = &o.exception {
            (Outcome::Exception, Some(e.clone()))
        } else if let Some(f) = &o.failure {
            (Outcome::Failed, Some(f.clone()))
        } else if o.returned_control {
            (Outcome::WaitingForHuman, None)
        } else if o.answered || o.final_response.is_some() {
            (Outcome::Finished, None)
        } else {
            (
                Outcome::Exception,
                Some(format!(
                    "the recording ends before the agent answered or returned control ({} \
                     events)",
                    o.seen_events
                )),
            )
        };
        let ended_at = o.last_time.unwrap_or(o.start.started_at);
        let end = InvocationEnd {
            outcome,
            ended_at,
            error,
            final_response: o.final_response.clone(),
            latency_ms: o
                .operation_ms
                .or_else(|| Some((ended_at - o.start.started_at).num_milliseconds())),
        };
        let session = (
            o.start.agent_id.clone(),
            o.start.agent_alias_id.clone(),
            o.start.session_id.clone(),
        );
        let id = o.id.clone();
        self.write(Some(&end))?;
        self.open = None;
        self.sessions.insert(session);
        self.summary.invocations += 1;
        if let Some(r) = self.store.invocation(&id)? {
            self.summary.steps += r.steps;
        }
        self.summary.invocation_ids.push(id);
        Ok(())
    }
}

/// What a trace event tells about how its invocation ends (as `bedrock::runner` reads a live
/// stream).
fn note(o: &mut Open, e: &TraceEvent) {
    if let Some(t) = e.event_time {
        o.last_time = Some(o.last_time.map_or(t, |l| l.max(t)));
    }
    if matches!(e.kind, TraceKind::Step { .. })
        && let Some(id) = e.trace_id()
        && o.last_trace_id.as_deref() != Some(id)
    {
        o.last_trace_id = Some(id.to_owned());
    }
    if let Some((text, meta)) = e.final_response()
        && e.collaborator_name.is_none()
    {
        o.final_response = Some(text.to_owned());
        o.operation_ms = meta.and_then(|m| m.operation_total_time_ms);
    }
    if let TraceKind::Failure { reason, code, .. } = &e.kind {
        o.failure = Some(format!(
            "failure trace{}: {}",
            code.map(|c| format!(" {c}")).unwrap_or_default(),
            reason.as_deref().unwrap_or("no reason given")
        ));
        o.ended = true;
    }
}
