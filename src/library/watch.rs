//! `serve --library DIR --watch`: file-system events (the notify crate: inotify on Linux) lead to a
//! rescan once the folder has been quiet for a moment, so copying a thousand photos in is one
//! rescan rather than a thousand. A rescan costs a stat per unchanged file.

use std::{future::Future, path::Path, time::Duration};

use notify::{RecursiveMode, Watcher};

/// How long the folder must be quiet before a rescan.
pub const QUIET: Duration = Duration::from_millis(300);

/// Watch `root` recursively and call `rescan` after each burst of changes (on the current tokio
/// runtime). The watch lasts as long as the process.
pub fn watch<F, Fut>(root: &Path, rescan: F) -> notify::Result<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // access events (reads, including our own) change nothing
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        let _watcher = watcher; // alive as long as this task
        while rx.recv().await.is_some() {
            // wait for a quiet moment, then rescan once for the whole burst
            while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {}
            rescan().await;
        }
    });
    Ok(())
}
