//! Reload: load → validate → compile → build → swap, all or nothing. A configuration
//! with errors is refused with every diagnostic logged, and the previous one keeps serving.
//! Listeners follow the configuration: ports it adds are bound before anything changes (a port that
//! cannot be bound refuses the whole reload), ports it removes stop accepting once the new
//! configuration serves. Clusters that did not change are kept (`cluster::registry`).
//!
//! Reloads are asked for by SIGHUP, by changes in the configuration files (watched, debounced) and
//! by the admin endpoint; they run one at a time.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::cluster::registry::Registry;
use crate::listener::{self, BindError, Bound, Env, ListenerKey, Stop};
use crate::snapshot::Snapshot;
use crate::state::Ports;
use crate::upgrade::{Inherited, Offered, Role};

/// Why a configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files cannot be read.
    #[error(transparent)]
    Load(#[from] conf::LoadError),
    /// The configuration has errors; the diagnostics say which.
    #[error("{} error(s) in the configuration:\n{}", .0.error_count(), .0)]
    Invalid(conf::Diagnostics),
    /// A port the configuration adds cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A policy cannot be built (its key set, a pattern): the configuration is refused.
    #[error("a policy cannot be enforced: {0}")]
    Policy(#[from] policy::BuildError),
    /// The reload task stopped (the gateway is shutting down).
    #[error("the gateway is shutting down")]
    Stopped,
}

/// What a reload reads: the same as start-up.
#[derive(Debug, Clone)]
pub struct Source {
    /// Configuration files and directories.
    pub config: Vec<PathBuf>,
    /// This workload.
    pub selection: conf::Selection,
    /// Declared port → listening port.
    pub port_map: BTreeMap<u16, u16>,
}

/// An open listener.
struct Open {
    local: SocketAddr,
    /// Turned true when a reload removes the listener.
    close: watch::Sender<bool>,
    /// A second descriptor of the socket, to hand to a successor process; dropped when the drain
    /// starts, so that the accept loop's close really closes the socket.
    socket: Option<std::os::fd::OwnedFd>,
}

/// The data plane's configuration: the current snapshot (in `Env::state`), the open listeners,
/// and the clusters.
pub struct Plane {
    source: Source,
    env: Arc<Env>,
    registry: Arc<Registry>,
    /// Drain or hand-over: every accept loop stops when it changes.
    stop: watch::Receiver<Stop>,
    open: Mutex<HashMap<ListenerKey, Open>>,
}

impl Plane {
    /// A plane serving `env.state`'s snapshot, with no listener open yet.
    pub fn new(source: Source, env: Arc<Env>, registry: Arc<Registry>, stop: watch::Receiver<Stop>) -> Arc<Self> {
        Arc::new(Plane { source, env, registry, stop, open: Mutex::new(HashMap::new()) })
    }

    /// The shared environment of connection handlers.
    pub fn env(&self) -> &Arc<Env> {
        &self.env
    }

    /// The cache zones (they outlive configurations, like clusters).
    pub fn caches(&self) -> &crate::cache::Zones {
        &self.registry.caches
    }

    /// Serves `bound`, stops the listeners `table` no longer has, and publishes the socket map.
    fn open_and_close(&self, table: &conf::RouteTable, bound: Vec<Bound>, open: &mut HashMap<ListenerKey, Open>) {
        for b in bound {
            tracing::info!(port = b.port, addr = %b.local, "listening on {} for Gateway port {}", b.local, b.port);
            let (close, closed) = watch::channel(false);
            let socket = b
                .duplicate()
                .map_err(|e| tracing::warn!(error = %e, "cannot keep the socket for a binary upgrade"))
                .ok();
            open.insert(b.key, Open { local: b.local, close, socket });
            let task: JoinHandle<()> = tokio::spawn(listener::serve(b, self.env.clone(), self.stop.clone(), closed));
            drop(task);
        }
        let wanted: Vec<ListenerKey> =
            table.listeners.iter().map(|l| ListenerKey { port: l.port, bind: l.bind }).collect();
        open.retain(|key, o| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(port = key.port, addr = %o.local, "Gateway port {} removed; no longer accepting on {}", key.port, o.local);
                let _ = o.close.send(true);
            }
            keep
        });
        let mut ports = Ports::default();
        open.iter().for_each(|(key, o)| ports.insert(o.local, key.port));
        self.env.state.set_ports(ports);
    }

    /// Serves the listeners bound at start-up for the current snapshot.
    pub async fn open_initial(&self, bound: Vec<Bound>) {
        let snap = self.env.state.snapshot();
        let mut open = self.open.lock().await;
        self.open_and_close(&snap.table, bound, &mut open);
    }

    /// Loads, validates and compiles the configuration again and, when it is valid and its new
    /// ports bind, serves it. Returns the new generation. Runs on the data runtime.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        let mut open = self.open.lock().await;
        if self.env.state.is_draining() {
            return Err(ReloadError::Stopped);
        }
        let started = std::time::Instant::now();
        let (config, selection) = (self.source.config.clone(), self.source.selection.clone());
        let built = tokio::task::spawn_blocking(move || conf::build(&config, &selection))
            .await
            .map_err(|_| ReloadError::Stopped)??;
        let compiled = started.elapsed();
        let state = &self.env.state;
        if !built.is_valid() {
            return Err(self.refused(ReloadError::Invalid(built.diagnostics)));
        }
        let bound = bind(&built.table, &self.source.port_map, |key| open.contains_key(key), &mut Inherited::default())
            .map_err(|e| self.refused(ReloadError::Bind(e)))?;
        let generation = state.snapshot().generation + 1;
        let creds = self.source.selection.credentials_dir.clone();
        let previous = state.snapshot();
        let snap = Snapshot::build(built.table, generation, creds, &self.registry, Some(&previous))
            .await
            .map_err(|e| self.refused(ReloadError::Policy(e)))?;
        let table = snap.table.clone();
        state.store(snap);
        // The previous table (100,000 routes take a while to free) is dropped off the data
        // runtime, so that no worker stalls on it; requests still using it keep their own handle.
        drop(tokio::task::spawn_blocking(move || drop(previous)));
        self.open_and_close(&table, bound, &mut open);
        state.reloads.applied.fetch_add(1, Ordering::Relaxed);
        let metrics = &self.env.telemetry.metrics;
        metrics.config_reloads.with_label_values(&["applied"]).inc();
        metrics.config_generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
        if let Ok(mut last) = state.reloads.last_error.lock() {
            *last = None;
        }
        for d in built.diagnostics.iter() {
            tracing::warn!("{d}");
        }
        tracing::info!(
            generation,
            compile_ms = compiled.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "configuration reloaded"
        );
        Ok(generation)
    }

    fn refused(&self, e: ReloadError) -> ReloadError {
        let state = &self.env.state;
        state.reloads.rejected.fetch_add(1, Ordering::Relaxed);
        self.env.telemetry.metrics.config_reloads.with_label_values(&["rejected"]).inc();
        if let Ok(mut last) = state.reloads.last_error.lock() {
            *last = Some(e.to_string());
        }
        tracing::error!("configuration refused; the previous one keeps serving: {e}");
        e
    }

    /// The open data-plane sockets, described for a successor process (binary upgrade).
    pub async fn offered(&self) -> Vec<(Offered, std::os::fd::OwnedFd)> {
        let open = self.open.lock().await;
        let mut out = Vec::new();
        for (key, o) in open.iter() {
            let Some(fd) = o.socket.as_ref().and_then(|s| s.try_clone().ok()) else { continue };
            out.push((Offered { role: Role::Data, port: Some(key.port), bind: key.bind, local: o.local }, fd));
        }
        out
    }

    /// Stops the listeners `keys` as a reload that removes them would (serving what is queued),
    /// and publishes the socket map.
    pub async fn close_listeners(&self, keys: &[ListenerKey]) {
        let mut open = self.open.lock().await;
        for key in keys {
            if let Some(o) = open.remove(key) {
                tracing::info!(port = key.port, addr = %o.local, "the successor does not serve {}; draining it", o.local);
                let _ = o.close.send(true);
            }
        }
        let mut ports = Ports::default();
        open.iter().for_each(|(key, o)| ports.insert(o.local, key.port));
        self.env.state.set_ports(ports);
    }

    /// Drops the descriptors kept for a binary upgrade (the drain starts).
    pub async fn forget_sockets(&self) {
        self.open.lock().await.values_mut().for_each(|o| o.socket = None);
    }

    /// The address serving Gateway port `port`, if one is open.
    pub fn local(&self, port: u16) -> Option<SocketAddr> {
        self.env.state.ports().local(port)
    }
}

/// Binds the listeners of `table` that `skip` does not exclude (those already open), taking the
/// sockets a previous process handed over where they match. Nothing is served on them yet; `Err`
/// names the first port that cannot be bound.
pub fn bind(
    table: &conf::RouteTable,
    port_map: &BTreeMap<u16, u16>,
    skip: impl Fn(&ListenerKey) -> bool,
    inherited: &mut Inherited,
) -> Result<Vec<Bound>, BindError> {
    let mut bound = Vec::new();
    for l in &table.listeners {
        let key = ListenerKey { port: l.port, bind: l.bind };
        if skip(&key) {
            continue;
        }
        let listen = port_map.get(&l.port).or_else(|| table.port_translation.get(&l.port)).copied().unwrap_or(l.port);
        match inherited.take_data(key, listen) {
            Some((local, socket)) => bound.push(listener::adopt(key, local, socket)),
            None => bound.push(listener::bind(key, listen)?),
        }
    }
    Ok(bound)
}

/// How long configuration file changes must settle before a reload (editors and `kubectl` write
/// several events for one change).
pub const SETTLE: Duration = Duration::from_millis(300);

/// The longest a reload waits for changes to settle.
const SETTLE_AT_MOST: Duration = Duration::from_secs(3);

/// Watches the configuration paths and reloads after each settled burst of changes. Watching a
/// directory is recursive (a mounted ConfigMap swaps its `..data` symlink inside it); a file is
/// watched through its folder, so editors that replace the file are seen too.
pub fn watch_config(plane: Arc<Plane>) -> JoinHandle<()> {
    // The watches are in place when this returns: a change right after start-up is seen.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = config_watcher(&plane.source.config, tx);
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Wait until the files have been quiet for SETTLE: a reload in the middle of a
            // write that is not atomic (truncate, then write) would read half a file, and an
            // empty one is a valid configuration that closes every port. A writer that never
            // pauses is still reloaded after SETTLE_AT_MOST.
            let deadline = tokio::time::Instant::now() + SETTLE_AT_MOST;
            while let Ok(Some(())) =
                tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + SETTLE), rx.recv()).await
            {
            }
            // Errors are logged and counted by `reload`.
            let _ = plane.reload().await;
        }
    })
}

/// True when a changed `path` can change the configuration read from `config`: a path inside a
/// configured directory, a configured file, or a `..` entry (a Kubernetes mount's `..data` swap)
/// beside a configured file.
fn relevant(path: &std::path::Path, config: &[PathBuf]) -> bool {
    config.iter().any(|c| {
        path.starts_with(c)
            || (path.parent() == c.parent() && path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("..")))
    })
}

fn config_watcher(paths: &[PathBuf], tx: tokio::sync::mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    // Paths as given, not canonical: a file that is a symlink into a mount's `..data` folder must
    // be watched where it is named, not where it points today.
    let config: Vec<PathBuf> = paths.to_vec();
    let filter = config.clone();
    let mut w = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(e) = event else { return };
        if !e.kind.is_access() && e.paths.iter().any(|p| relevant(p, &filter)) {
            let _ = tx.send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration; reload with SIGHUP");
            return None;
        }
    };
    for p in &config {
        let (dir, mode) = if p.is_dir() {
            (p.clone(), notify::RecursiveMode::Recursive)
        } else {
            (p.parent().map_or_else(|| PathBuf::from("."), PathBuf::from), notify::RecursiveMode::NonRecursive)
        };
        if let Err(e) = w.watch(&dir, mode) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot watch; reload with SIGHUP");
        }
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn the_gateway_service_target_port_is_listened_on_unless_the_port_map_says_otherwise() {
        let (target, mapped) = (free_port(), free_port());
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: istio-ingressgateway}}\nspec:\n  selector: {{istio: ingressgateway}}\n  ports: [{{name: http2, port: 80, targetPort: {target}}}]\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]\n"
        );
        let built = conf::build_str("c.yaml", &yaml, &conf::Selection::default());
        assert!(built.is_valid(), "{}", built.diagnostics);
        let bound = bind(&built.table, &BTreeMap::new(), |_| false, &mut Inherited::default()).unwrap();
        assert_eq!((bound[0].port, bound[0].local.port()), (80, target), "Service port 80 → targetPort");
        drop(bound);
        let bound = bind(&built.table, &BTreeMap::from([(80, mapped)]), |_| false, &mut Inherited::default()).unwrap();
        assert_eq!(bound[0].local.port(), mapped, "--port-map wins");
    }
}
