//! Starting and stopping the data plane: bind every listener, build the snapshot, serve, drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conf::table::ListenerKind;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::cluster::dns::Dns;
use crate::listener::{self, Apps, BindError, Bound, Env, Kind, ListenerKey};
use crate::proxy::{Gateway, Ports};
use crate::snapshot::Snapshot;
use crate::state::SharedState;

/// Everything `pylon run` needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Configuration files and directories.
    pub config: Vec<PathBuf>,
    /// This workload.
    pub selection: conf::Selection,
    /// Declared port → listening port (0 = ephemeral).
    pub port_map: std::collections::BTreeMap<u16, u16>,
    /// Where `/healthz/ready` is served.
    pub status_addr: SocketAddr,
    /// Data-plane worker threads.
    pub threads: usize,
    /// A DNS server to use instead of the system's.
    pub dns_server: Option<SocketAddr>,
}

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot be read.
    #[error(transparent)]
    Load(#[from] conf::LoadError),
    /// The configuration is invalid; the diagnostics say why.
    #[error("{} error(s) in the configuration", .0.error_count())]
    Invalid(conf::Diagnostics),
    /// A port could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Runtime or resolver setup failed.
    #[error("{0}")]
    Setup(String),
}

/// A running gateway.
pub struct Running {
    /// The shared state (snapshot, readiness).
    pub state: Arc<SharedState>,
    /// (Gateway port, bound address) of every data-plane listener.
    pub listeners: Vec<(u16, SocketAddr)>,
    /// The status endpoint's bound address.
    pub status_addr: SocketAddr,
    /// The diagnostics of the loaded configuration (warnings).
    pub diagnostics: conf::Diagnostics,
    shutdown: watch::Sender<bool>,
    stop_accepting: watch::Sender<bool>,
    data: Option<Runtime>,
    admin: Option<Runtime>,
}

impl Running {
    /// The bound address serving Gateway port `port`.
    pub fn addr(&self, port: u16) -> Option<SocketAddr> {
        self.listeners.iter().find(|(p, _)| *p == port).map(|(_, a)| *a)
    }

    /// Graceful stop: readiness turns 503, listeners keep serving for `drain` (HTTP/1 responses
    /// carry `Connection: close`), then stop accepting and give in-flight requests `grace`.
    pub fn drain(mut self, drain: Duration, grace: Duration) {
        self.state.set_draining();
        let _ = self.shutdown.send(true);
        std::thread::sleep(drain);
        let _ = self.stop_accepting.send(true);
        if let Some(rt) = self.data.take() {
            rt.shutdown_timeout(grace);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_accepting.send(true);
        if let Some(rt) = self.data.take() {
            rt.shutdown_background();
        }
        if let Some(rt) = self.admin.take() {
            rt.shutdown_background();
        }
    }
}

fn runtime(name: &str, threads: usize) -> Result<Runtime, StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| StartError::Setup(format!("cannot start the {name} runtime: {e}")))
}

/// Loads the configuration, binds every listener and starts serving. Callable from any thread,
/// including inside another tokio runtime.
pub fn start(opts: &Options) -> Result<Running, StartError> {
    let built = conf::build(&opts.config, &opts.selection)?;
    if !built.is_valid() {
        return Err(StartError::Invalid(built.diagnostics));
    }
    let bound = bind_all(&built.table, &opts.port_map)?;
    let status = std::net::TcpListener::bind(opts.status_addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| BindError { port: opts.status_addr.port(), addr: opts.status_addr, source })?;
    let status_addr = status.local_addr().map_err(|e| StartError::Setup(e.to_string()))?;
    let data = runtime("pylon-data", opts.threads)?;
    let admin = runtime("pylon-admin", 1)?;
    let dns = {
        // The resolver binds to the runtime it is created in.
        let _entered = data.enter();
        Dns::new(opts.dns_server).map_err(StartError::Setup)?
    };
    let snapshot = Snapshot::new(built.table, 1, opts.selection.credentials_dir.clone());
    let snapshot = discover(snapshot, &dns, &data)?;
    let state = SharedState::new(snapshot);
    let mut ports = Ports::default();
    bound.iter().for_each(|b| ports.insert(b.local, b.port));
    let listeners = bound.iter().map(|b| (b.port, b.local)).collect();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (stop_accepting, stop_rx) = watch::channel(false);
    let env = Arc::new(Env {
        state: state.clone(),
        apps: Apps::new(Gateway::new(state.clone(), Arc::new(ports)), &Arc::new(server_conf())),
        shutdown: shutdown_rx,
        connector: pingora::connectors::TransportConnector::new(None),
    });
    for b in bound {
        data.spawn(listener::serve(b, env.clone(), stop_rx.clone()));
    }
    admin.spawn(crate::status::serve(status, state.clone()));
    state.set_ready();
    Ok(Running {
        state,
        listeners,
        status_addr,
        diagnostics: built.diagnostics,
        shutdown,
        stop_accepting,
        data: Some(data),
        admin: Some(admin),
    })
}

/// Resolves DNS clusters once on the data runtime and waits for it (from any thread).
fn discover(mut snapshot: Snapshot, dns: &Arc<Dns>, data: &Runtime) -> Result<Snapshot, StartError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (dns, handle) = (dns.clone(), data.handle().clone());
    data.spawn(async move {
        snapshot.start_discovery(&dns, &handle).await;
        snapshot.start_rotation();
        let _ = tx.send(snapshot);
    });
    rx.recv().map_err(|_| StartError::Setup("DNS discovery stopped".into()))
}

/// Binds every listener of the plan.
fn bind_all(
    table: &conf::RouteTable,
    port_map: &std::collections::BTreeMap<u16, u16>,
) -> Result<Vec<Bound>, BindError> {
    let mut bound = Vec::new();
    for l in &table.listeners {
        let kind = match l.kind {
            ListenerKind::Http { .. } => Kind::Http,
            ListenerKind::Tls { .. } => Kind::Tls,
            ListenerKind::Tcp { .. } => Kind::Tcp,
        };
        let listen = port_map.get(&l.port).copied().unwrap_or(l.port);
        let b = listener::bind(ListenerKey { port: l.port, bind: l.bind }, kind, listen)?;
        tracing::info!(port = l.port, addr = %b.local, "listening on {} for Gateway port {}", b.local, l.port);
        bound.push(b);
    }
    Ok(bound)
}

/// Pingora's server settings for the proxy apps.
fn server_conf() -> pingora::server::configuration::ServerConf {
    // Retries are decided in `fail_to_connect` (Istio's policy); this is only a fail-safe above any
    // realistic `attempts`.
    pingora::server::configuration::ServerConf { max_retries: 64, ..Default::default() }
}
