//! The one piece of mutable shared state: the current snapshot, the listening sockets, readiness,
//! and what reloads did.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::snapshot::Snapshot;

/// Maps a listening socket to the Gateway server port it serves (`--port-map` TO → FROM). Read for
/// every request: with hashbrown's default hasher (foldhash) a lookup took about 70 instructions,
/// with std's SipHash about 290.
#[derive(Debug, Default, Clone)]
pub struct Ports {
    by_local: hashbrown::HashMap<SocketAddr, u16>,
    by_port: hashbrown::HashMap<u16, u16>,
}

impl Ports {
    /// Records that `local` (as bound) serves declared port `port`.
    pub fn insert(&mut self, local: SocketAddr, port: u16) {
        self.by_local.insert(local, port);
        self.by_port.insert(local.port(), port);
    }

    /// The declared port for a connection that arrived on `local`.
    pub fn declared(&self, local: SocketAddr) -> Option<u16> {
        self.by_local.get(&local).or_else(|| self.by_port.get(&local.port())).copied()
    }

    /// The bound address serving declared port `port`.
    pub fn local(&self, port: u16) -> Option<SocketAddr> {
        self.by_local.iter().find(|(_, p)| **p == port).map(|(a, _)| *a)
    }
}

/// What configuration reloads did (for logs, metrics and the admin endpoint).
#[derive(Debug, Default)]
pub struct Reloads {
    /// Configurations applied after the first.
    pub applied: AtomicU64,
    /// Configurations refused (the previous one kept serving).
    pub rejected: AtomicU64,
    /// Why the last refused configuration was refused (every diagnostic), until one is applied.
    pub last_error: Mutex<Option<String>>,
}

/// Shared by every listener, the proxy and the status server. The snapshot is swapped whole
/// (never several cells one after another); a request reads it once.
pub struct SharedState {
    snapshot: ArcSwap<Snapshot>,
    ports: ArcSwap<Ports>,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Reload outcomes.
    pub reloads: Reloads,
}

impl SharedState {
    /// State serving `snapshot`, not yet ready.
    pub fn new(snapshot: Snapshot) -> Arc<Self> {
        Arc::new(SharedState {
            snapshot: ArcSwap::from_pointee(snapshot),
            ports: ArcSwap::from_pointee(Ports::default()),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            reloads: Reloads::default(),
        })
    }

    /// The listening sockets and the ports they serve.
    pub fn ports(&self) -> Arc<Ports> {
        self.ports.load_full()
    }

    /// The declared port for a connection that arrived on `local` (read for every request:
    /// without taking a reference to the map).
    pub fn declared_port(&self, local: SocketAddr) -> Option<u16> {
        self.ports.load().declared(local)
    }

    /// Replaces the listening sockets' map (listeners opened or closed by a reload).
    pub fn set_ports(&self, ports: Ports) {
        self.ports.store(Arc::new(ports));
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
