//! The one piece of mutable shared state: the current snapshot, plus readiness flags.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::snapshot::Snapshot;

/// Shared by every listener, the proxy and the status server. The snapshot is swapped whole
/// (never several cells one after another); a request reads it once.
pub struct SharedState {
    snapshot: ArcSwap<Snapshot>,
    ready: AtomicBool,
    draining: AtomicBool,
}

impl SharedState {
    /// State serving `snapshot`, not yet ready.
    pub fn new(snapshot: Snapshot) -> Arc<Self> {
        Arc::new(SharedState {
            snapshot: ArcSwap::from_pointee(snapshot),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    /// The current snapshot; callers keep the `Arc` for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot (reload).
    pub fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Every listener is bound and a configuration is loaded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Draining: readiness answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True when `/healthz/ready` should answer 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// True once draining started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
