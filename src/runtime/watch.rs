//! Watches the store's files so changes made by other processes reach the console at once,
//! with no polling: inotify (via notify) on the database's directory.
//!
//! A write to the WAL file is seen *before* its commit is visible to readers: SQLite writes the
//! frames, fsyncs, and only then publishes the commit in the shared-memory index (an mmap, which
//! raises no file event). A reload on the write alone can therefore read the state just before
//! the change and then hear nothing more. So a burst of writes is followed by one settling reload
//! once the files have been quiet for `QUIET`, a long burst reloads every `THROTTLE` at most, and
//! a writer closing the file (a CLI process finishing, always after its commit) reloads at once.
//! A commit from another process is therefore on screen within `QUIET` (isolated) to `THROTTLE`
//! (a steady stream) of being written, plus the reload.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use crate::app::Msg;

/// How long the files must be quiet after a write before the settling reload (a commit is
/// published microseconds after its last WAL write, or an fsync later).
const QUIET: Duration = Duration::from_millis(15);
/// The most often a long burst of writes reloads.
const THROTTLE: Duration = Duration::from_millis(50);

/// What a file event tells about the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Written: a commit may be under way and not yet visible.
    Write,
    /// A writer closed the file: whatever it committed is visible.
    Closed,
}

/// Sends `Msg::StoreChanged` whenever the database file or its WAL is written, and once more
/// when the writing has settled.
pub fn watch_store(
    db: &Path,
    tx: UnboundedSender<Msg>,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = db
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (seen_tx, seen_rx) = channel::<Seen>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let seen = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Seen::Closed,
            EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_) => Seen::Write,
            _ => return,
        };
        let ours = event.paths.iter().any(|p| {
            p.file_name().is_some_and(|f| {
                let f = f.to_string_lossy();
                f == name || f == format!("{name}-wal")
            })
        });
        if ours {
            let _ = seen_tx.send(seen);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("agentdeck-watch".to_owned())
        .spawn(move || settle(&seen_rx, &tx))
        .map_err(notify::Error::io)?;
    Ok(watcher)
}

/// Turns file events into reloads: at once for the first write of a burst and for every close,
/// at most every `THROTTLE` during a long burst, and once more when the burst has been quiet
/// for `QUIET`. Ends when the watcher (the sender) or the console (the receiver) goes away.
fn settle(seen: &Receiver<Seen>, tx: &UnboundedSender<Msg>) {
    while seen.recv().is_ok() {
        if tx.send(Msg::StoreChanged).is_err() {
            return;
        }
        let mut last_sent = Instant::now();
        loop {
            match seen.recv_timeout(QUIET) {
                Ok(s) => {
                    if s == Seen::Closed || last_sent.elapsed() >= THROTTLE {
                        if tx.send(Msg::StoreChanged).is_err() {
                            return;
                        }
                        last_sent = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if tx.send(Msg::StoreChanged).is_err() {
                        return;
                    }
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}
