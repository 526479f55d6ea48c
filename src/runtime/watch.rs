//! Watches the store's files so changes made by other processes reach the console at once,
//! with no polling: inotify (via notify) on the database's directory.

use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use crate::app::Msg;

/// Sends `Msg::StoreChanged` whenever the database file or its WAL is written.
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
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if !matches!(
            event.kind,
            EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
        ) {
            return;
        }
        let ours = event.paths.iter().any(|p| {
            p.file_name().is_some_and(|f| {
                let f = f.to_string_lossy();
                f == name || f == format!("{name}-wal")
            })
        });
        if ours {
            let _ = tx.send(Msg::StoreChanged);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
