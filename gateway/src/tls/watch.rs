//! Certificate rotation: the folders holding TLS material are watched (a Kubernetes Secret mount
//! swaps a `..data` symlink inside its folder; cert-manager rewrites files in place), and a burst
//! of changes triggers one [`TlsStore::refresh`] after a short quiet period. A slow periodic
//! refresh also runs, for folders that did not exist yet or file systems without notifications.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::store::TlsStore;

/// Changes closer together than this are applied at once.
const QUIET: Duration = Duration::from_millis(200);
/// The periodic refresh.
const PERIOD: Duration = Duration::from_secs(30);

/// Starts watching `store`'s folders on the current runtime; the task stops when aborted.
pub fn spawn(store: Arc<TlsStore>) -> JoinHandle<()> {
    // The watches are in place when this returns: a change right after start-up is seen.
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = watcher(&store.watch_dirs(), tx);
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                changed = rx.recv() => {
                    if changed.is_none() {
                        tokio::time::sleep(PERIOD).await;
                    }
                    tokio::time::sleep(QUIET).await;
                    while rx.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(PERIOD) => {}
            }
            let store = store.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || store.refresh()).await {
                tracing::error!(error = %e, "TLS refresh failed");
            }
        }
    })
}

fn watcher(dirs: &[(PathBuf, bool)], tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    if dirs.is_empty() {
        return None;
    }
    let mut w = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch TLS files; they are re-read every {}s", PERIOD.as_secs());
            return None;
        }
    };
    for (d, recursive) in dirs {
        let mode = if *recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
        if let Err(e) = w.watch(d, mode) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch; its TLS files are re-read every {}s", PERIOD.as_secs());
        }
    }
    Some(w)
}
