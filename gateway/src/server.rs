//! Starting and stopping the data plane: bind every listener, build the snapshot, serve, reload,
//! drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::ServerApp;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::cluster::dns::Dns;
use crate::cluster::registry::Registry;
use crate::listener::{Apps, BindError, Env, Stop};
use crate::proxy::Gateway;
use crate::reload::{self, Plane, ReloadError, Source};
use crate::snapshot::Snapshot;
use crate::state::SharedState;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::{self, Metrics};
use crate::telemetry::Telemetry;
use crate::upgrade::{self, Inherited, Offered, Role, UpgradeError};

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
    /// Where `/stats/prometheus` is served (`None`: not served).
    pub metrics_addr: Option<SocketAddr>,
    /// Where the admin endpoints are served (`None`: not served).
    pub admin_addr: Option<SocketAddr>,
    /// `source_workload` in metrics (default: the `app` label, else `pylon`).
    pub workload_name: Option<String>,
    /// The access log and whether it is JSON (`None`: off).
    pub access_log: Option<(crate::telemetry::access_log::Target, bool)>,
    /// Where this process offers its listening sockets to a successor (binary upgrade).
    pub upgrade_socket: Option<PathBuf>,
    /// Take the listening sockets over from the process offering them here (binary upgrade).
    pub upgrade_from: Option<PathBuf>,
    /// How long an HTTP/1.1 request head may take to arrive, from its first byte.
    pub request_headers_timeout: std::time::Duration,
    /// How long a downstream connection may stay without a request (Istio's idle timeout).
    pub idle_timeout: std::time::Duration,
    /// How long a request may wait for a byte from the upstream (Envoy's `stream_idle_timeout`).
    pub stream_idle_timeout: std::time::Duration,
}

impl Options {
    /// Options for `config` served as `selection`, with every other setting at its default and
    /// every operator endpoint on an ephemeral loopback port (tests and tools).
    pub fn local(
        config: Vec<PathBuf>,
        selection: conf::Selection,
        port_map: std::collections::BTreeMap<u16, u16>,
    ) -> Self {
        let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        Options {
            config,
            selection,
            port_map,
            status_addr: any,
            // One worker, on its single-threaded runtime; the tests that start the binary run its
            // default, one per CPU, on the work-stealing runtime (`workers`).
            threads: 1,
            dns_server: None,
            metrics_addr: Some(any),
            admin_addr: Some(any),
            workload_name: None,
            access_log: None,
            upgrade_socket: None,
            upgrade_from: None,
            request_headers_timeout: DEFAULT_REQUEST_HEADERS_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
        }
    }
}

/// `--idle-timeout` when not given (Istio's gateway: Envoy's 1 h connection idle timeout).
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `--stream-idle-timeout` when not given (Envoy's default `stream_idle_timeout`, which Istio keeps).
pub const DEFAULT_STREAM_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `--request-headers-timeout` when not given (nginx's `client_header_timeout`).
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// An operator endpoint's address could not be bound.
    #[error("cannot listen on {addr} ({what} endpoint): {source}")]
    Operator {
        /// The address tried.
        addr: SocketAddr,
        /// Which endpoint (`status`, `metrics`, `admin`).
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The sockets of the previous process could not be taken over (binary upgrade).
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// Runtime or resolver setup failed.
    #[error("{0}")]
    Setup(String),
}

/// A running gateway.
pub struct Running {
    /// The shared state (snapshot, readiness).
    pub state: Arc<SharedState>,
    /// (Gateway port, bound address) of every data-plane listener at start-up.
    pub listeners: Vec<(u16, SocketAddr)>,
    /// The status endpoint's bound address.
    pub status_addr: SocketAddr,
    /// The metrics endpoint's bound address.
    pub metrics_addr: Option<SocketAddr>,
    /// The admin endpoint's bound address.
    pub admin_addr: Option<SocketAddr>,
    /// Metrics and the access log.
    pub telemetry: Arc<Telemetry>,
    /// The diagnostics of the loaded configuration (warnings).
    pub diagnostics: conf::Diagnostics,
    /// With `--upgrade-socket`: the successor's process id once it serves on this process's
    /// sockets (then call [`Running::hand_over`]).
    pub handed_over: Option<tokio::sync::mpsc::UnboundedReceiver<u32>>,
    plane: Arc<Plane>,
    shutdown: watch::Sender<bool>,
    stop_accepting: watch::Sender<Stop>,
    /// Turned true when a successor serves the operator endpoints.
    release: watch::Sender<bool>,
    data: Option<crate::workers::Workers>,
    admin: Option<Runtime>,
    /// Logs each rotation of the workload identity (`--identity-dir`) while it lives.
    _identity_watch: Option<notify::RecommendedWatcher>,
}

impl Running {
    /// The bound address serving Gateway port `port` now (listeners follow reloads).
    pub fn addr(&self, port: u16) -> Option<SocketAddr> {
        self.plane.local(port)
    }

    /// Reloads the configuration (as SIGHUP does); returns the new generation, or why the
    /// configuration was refused (the previous one keeps serving). Callable from async code.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        let Some(data) = &self.data else { return Err(ReloadError::Stopped) };
        let plane = self.plane.clone();
        data.spawn(async move { plane.reload().await }).await.map_err(|_| ReloadError::Stopped)?
    }

    /// [`Running::reload`] for a thread outside any runtime (the signal loop).
    pub fn reload_blocking(&self) -> Result<u64, ReloadError> {
        let Some(data) = &self.data else { return Err(ReloadError::Stopped) };
        let plane = self.plane.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        data.spawn(async move {
            let _ = tx.send(plane.reload().await);
        });
        rx.recv().map_err(|_| ReloadError::Stopped)?
    }

    /// Graceful stop (README "Operations": signals, reload, drain): readiness turns 503 at once; the
    /// listeners keep accepting and serving for `drain`, with `Connection: close` on HTTP/1
    /// responses and GOAWAY on HTTP/2; then they stop accepting, idle keep-alive connections are
    /// closed, and what is still in flight (requests, streams, WebSockets, TCP) gets up to `grace` to
    /// finish. Returns how many connections were still open when the grace ran out.
    pub fn drain(self, drain: Duration, grace: Duration) -> usize {
        self.finish(drain, grace, Stop::Draining)
    }

    /// After a binary upgrade, once the successor serves on the same sockets: stop accepting at
    /// once (the successor accepts everything queued and everything after); for `window`, answer
    /// on the connections already open with `Connection: close` and GOAWAY, so that clients move
    /// to the successor between requests; then close idle connections and give what is still in
    /// flight up to `grace`. Returns how many connections were still open then.
    pub fn hand_over(self, window: Duration, grace: Duration) -> usize {
        let _ = self.release.send(true);
        let _ = self.stop_accepting.send(Stop::HandedOver);
        self.finish(window, grace, Stop::HandedOver)
    }

    fn finish(mut self, window: Duration, grace: Duration, stop: Stop) -> usize {
        self.state.set_draining();
        let _ = self.shutdown.send(true);
        std::thread::sleep(window);
        let Some(data) = self.data.take() else { return 0 };
        let plane = self.plane.clone();
        let _ = run_on(&data, async move { plane.forget_sockets().await });
        let _ = self.stop_accepting.send(stop);
        let env = self.plane.env().clone();
        let left = run_on(&data, async move {
            // The connections waiting between requests close (Pylon's and those Pingora parks);
            // in-flight ones go on.
            env.tracker.close_idle();
            env.apps.http.cleanup().await;
            let _ = tokio::time::timeout(grace, env.tracker.idle()).await;
            env.tracker.active()
        })
        .unwrap_or(0);
        if left > 0 {
            tracing::warn!(connections = left, "drain grace over; closing the connections still open");
        }
        data.shutdown_background();
        left
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_accepting.send(Stop::Draining);
        if let Some(rt) = self.data.take() {
            rt.shutdown_background();
        }
        if let Some(rt) = self.admin.take() {
            rt.shutdown_background();
        }
    }
}

fn runtime(name: &str, threads: usize) -> Result<Runtime, StartError> {
    crate::workers::work_stealing(name, threads)
        .map_err(|e| StartError::Setup(format!("cannot start the {name} runtime: {e}")))
}

/// Runs `work` on `rt` and waits for it, from any thread (also inside another runtime, where
/// `block_on` is not allowed).
fn run_on<T: Send + 'static>(
    rt: &crate::workers::Workers,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, StartError> {
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().map_err(|_| StartError::Setup("the data runtime stopped".into()))
}

/// What every connection handler shares.
fn env(
    opts: &Options,
    state: &Arc<SharedState>,
    telemetry: &Arc<Telemetry>,
    shutdown: pingora::server::ShutdownWatch,
    runtime: tokio::runtime::Handle,
) -> Arc<Env> {
    let gateway = Gateway::new(state.clone(), telemetry.clone())
        .with_idle_timeout(opts.idle_timeout)
        .with_stream_idle_timeout(opts.stream_idle_timeout);
    Arc::new(Env {
        state: state.clone(),
        apps: Apps::new(gateway, &Arc::new(server_conf(opts.threads)), opts.idle_timeout),
        shutdown,
        connector: std::sync::OnceLock::new(),
        tracker: crate::lifecycle::Tracker::new(),
        telemetry: telemetry.clone(),
        runtime,
        head_timeout: opts.request_headers_timeout,
    })
}

/// Loads the configuration, binds every listener and starts serving. Callable from any thread,
/// including inside another tokio runtime.
pub fn start(opts: &Options) -> Result<Running, StartError> {
    let built = conf::build(&opts.config, &opts.selection)?;
    if !built.is_valid() {
        return Err(StartError::Invalid(built.diagnostics));
    }
    // Checked first: an invalid configuration leaves the process a successor would replace alone.
    let Sockets { data: bound, operator, handoff, offer } = bind_all(&built.table, opts)?;
    let telemetry = telemetry(opts)?;
    // Pingora bounds reads, writes and connects with its "fast" timer below 15 minutes: a
    // per-thread ordered map of 10 ms slots, each timer kept until it fires, swept by a thread of
    // its own every 10 ms. Pylon's timeouts (the stream idle timeout on every upstream read, the
    // connect timeout, route timeouts) almost never fire: Tokio's wheel registers one for fewer
    // instructions (measured: ~600 a request) and frees it when cancelled, as pingora-timeout
    // advises for timers that are mostly cancelled (`set_fast_timeout_to_tokio_threshold`).
    // Only timeouts under a second stay on the fast timer.
    pingora::time::fast_timeout::set_fast_timeout_to_tokio_threshold(Some(std::time::Duration::ZERO));
    let data = crate::workers::Workers::start("pylon-data", opts.threads)
        .map_err(|e| StartError::Setup(format!("cannot start the data plane's workers: {e}")))?;
    let admin = runtime("pylon-admin", 1)?;
    let dns = {
        // The resolver binds to the runtime it is created in.
        let _entered = data.enter();
        Dns::new(opts.dns_server).map_err(StartError::Setup)?
    };
    let registry = Arc::new(Registry::new(dns));
    let (table, creds, reg) = (built.table, opts.selection.credentials_dir.clone(), registry.clone());
    let snapshot = run_on(&data, async move { Snapshot::build(table, 1, creds, &reg, None).await })?
        .map_err(|e| StartError::Setup(format!("a policy cannot be enforced: {e}")))?;
    let state = SharedState::new(snapshot);
    let listeners = bound.iter().map(|b| (b.port, b.local)).collect();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (stop_accepting, stop_rx) = watch::channel(Stop::Serving);
    let env = env(opts, &state, &telemetry, shutdown_rx, data.handle().clone());
    data.spawn(crate::lifecycle::Tracker::ticking(Arc::downgrade(&env.tracker)));
    let source =
        Source { config: opts.config.clone(), selection: opts.selection.clone(), port_map: opts.port_map.clone() };
    let plane = Plane::new(source, env, registry, stop_rx);
    let p = plane.clone();
    run_on(&data, async move {
        p.open_initial(bound).await;
        drop(reload::watch_config(p));
    })?;
    let offered = operator.offered();
    let (release, released) = watch::channel(false);
    let (status_addr, metrics_addr, admin_addr) = operator.serve(&admin, &plane, &telemetry, &released)?;
    telemetry.metrics.config_generation.set(1);
    state.set_ready();
    let handed_over = upgrades(handoff, offer, &admin, &plane, offered)?;
    Ok(Running {
        state,
        listeners,
        status_addr,
        metrics_addr,
        admin_addr,
        telemetry,
        diagnostics: built.diagnostics,
        handed_over,
        plane,
        shutdown,
        stop_accepting,
        release,
        data: Some(data),
        admin: Some(admin),
        _identity_watch: opts.selection.identity_dir.as_deref().and_then(crate::tls::identity::watch),
    })
}

/// Every socket `start` needs, bound before anything serves.
struct Sockets {
    data: Vec<crate::listener::Bound>,
    operator: Operator,
    /// With `--upgrade-from`: the process replaced, and the positions of its sockets taken.
    handoff: Option<(upgrade::Handoff, Vec<usize>)>,
    /// With `--upgrade-socket`: where this process offers its sockets to the next one.
    offer: Option<upgrade::Offer>,
}

/// Binds the upgrade socket (staged), the data-plane listeners, then the operator endpoints; with
/// `--upgrade-from`, takes the sockets of the process this one replaces where they match. Ports
/// first: a taken port fails at once, before any DNS lookup.
fn bind_all(table: &conf::RouteTable, opts: &Options) -> Result<Sockets, StartError> {
    let offer =
        match &opts.upgrade_socket {
            Some(path) => Some(upgrade::Offer::bind(path).map_err(|e| {
                StartError::Setup(format!("cannot listen on the upgrade socket {}: {e}", path.display()))
            })?),
            None => None,
        };
    let (mut inherited, handoff) = match &opts.upgrade_from {
        Some(path) => upgrade::take_over(path).map(|(i, h)| (i, Some(h)))?,
        None => (Inherited::default(), None),
    };
    let inherited = &mut inherited;
    let data = reload::bind(table, &opts.port_map, |_| false, inherited)?;
    for b in &data {
        tracing::debug!(port = b.port, addr = %b.local, "bound");
    }
    let operator = Operator::bind(opts, inherited)?;
    if inherited.untaken() > 0 {
        tracing::info!(
            sockets = inherited.untaken(),
            "closing the previous process's sockets this configuration does not serve"
        );
    }
    let handoff = handoff.map(|h| (h, inherited.adopted()));
    Ok(Sockets { data, operator, handoff, offer })
}

/// Once serving: tells the process this one replaces (binary upgrade) and waits for it to
/// confirm (without that, this one must stop: the other goes on serving), then offers this
/// process's sockets for the next upgrade.
fn upgrades(
    handoff: Option<(upgrade::Handoff, Vec<usize>)>,
    offer: Option<upgrade::Offer>,
    admin: &Runtime,
    plane: &Arc<Plane>,
    operator: Vec<(Offered, std::os::fd::OwnedFd)>,
) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<u32>>, StartError> {
    if let Some((handoff, adopted)) = handoff {
        handoff.ready(&adopted)?;
    }
    let Some(offer) = offer else { return Ok(None) };
    let _entered = admin.enter();
    match offer.serve(plane.clone(), operator) {
        Ok(rx) => Ok(Some(rx)),
        Err(e) => {
            // Serving already, and the previous process is draining: keep serving without upgrades.
            tracing::error!(error = %e, "cannot offer the sockets for binary upgrades; restart to upgrade");
            Ok(None)
        }
    }
}

/// The operator endpoints' sockets, bound before anything starts.
struct Operator {
    status: std::net::TcpListener,
    metrics: Option<std::net::TcpListener>,
    admin: Option<std::net::TcpListener>,
}

type OperatorAddrs = (SocketAddr, Option<SocketAddr>, Option<SocketAddr>);

impl Operator {
    /// Binds each endpoint, or takes the socket a previous process handed over.
    fn bind(opts: &Options, inherited: &mut Inherited) -> Result<Self, StartError> {
        let mut socket = |addr: SocketAddr, role: Role, what: &'static str| match inherited.take_operator(role, addr) {
            Some(socket) => Ok(socket),
            None => operator_socket(addr, what),
        };
        Ok(Operator {
            status: socket(opts.status_addr, Role::Status, "status")?,
            metrics: opts.metrics_addr.map(|a| socket(a, Role::Metrics, "metrics")).transpose()?,
            admin: opts.admin_addr.map(|a| socket(a, Role::Admin, "admin")).transpose()?,
        })
    }

    /// Second descriptors of the sockets, to hand to a successor process.
    fn offered(&self) -> Vec<(Offered, std::os::fd::OwnedFd)> {
        let sockets = [
            (Role::Status, Some(&self.status)),
            (Role::Metrics, self.metrics.as_ref()),
            (Role::Admin, self.admin.as_ref()),
        ];
        sockets
            .into_iter()
            .filter_map(|(role, socket)| {
                let socket = socket?;
                let local = socket.local_addr().ok()?;
                let fd = socket.try_clone().ok()?;
                Some((Offered { role, port: None, bind: None, local }, fd.into()))
            })
            .collect()
    }

    /// Serves each endpoint on `rt` until `released`; returns their bound addresses.
    fn serve(
        self,
        rt: &Runtime,
        plane: &Arc<Plane>,
        telemetry: &Arc<Telemetry>,
        released: &watch::Receiver<bool>,
    ) -> Result<OperatorAddrs, StartError> {
        let local = |l: &std::net::TcpListener| l.local_addr().map_err(|e| StartError::Setup(e.to_string()));
        let addrs = (
            local(&self.status)?,
            self.metrics.as_ref().map(local).transpose()?,
            self.admin.as_ref().map(local).transpose()?,
        );
        rt.spawn(crate::admin::serve(self.status, crate::admin::status(plane.env().state.clone()), released.clone()));
        if let Some(socket) = self.metrics {
            rt.spawn(crate::admin::serve(
                socket,
                crate::admin::metrics(plane.clone(), telemetry.clone()),
                released.clone(),
            ));
        }
        if let Some(socket) = self.admin {
            rt.spawn(crate::admin::serve(
                socket,
                crate::admin::admin(plane.clone(), telemetry.clone()),
                released.clone(),
            ));
        }
        Ok(addrs)
    }
}

/// A listening socket for an operator endpoint; a taken address is a start-up error naming it.
fn operator_socket(addr: SocketAddr, what: &'static str) -> Result<std::net::TcpListener, StartError> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| StartError::Operator { addr, what, source })
}

/// Metrics for this workload and the access log `opts` asks for.
fn telemetry(opts: &Options) -> Result<Arc<Telemetry>, StartError> {
    let source = metrics::Source::new(opts.workload_name.as_deref(), &opts.selection.namespace, &opts.selection.labels);
    let metrics = Metrics::new(source);
    if let Some(dir) = &opts.selection.identity_dir {
        let expiry = crate::tls::identity::ExpiryCollector::new(dir.clone())
            .map_err(|e| StartError::Setup(format!("the identity expiry metric: {e}")))?;
        metrics.add(Box::new(expiry));
    }
    let access_log = match &opts.access_log {
        None => None,
        Some((target, json)) => Some(
            AccessLog::start(target.clone(), *json, metrics.access_log_dropped.clone())
                .map_err(|e| StartError::Setup(format!("cannot open the access log {target:?}: {e}")))?,
        ),
    };
    Ok(Arc::new(Telemetry { metrics, access_log }))
}

/// Upstream connections kept idle for reuse, per worker thread, over all clusters. Pingora keeps
/// 128; Envoy keeps every idle connection of a cluster up to its `max_connections` (1024 by
/// default; Istio's `connectionPool.tcp.maxConnections` is unbounded by default), until its idle
/// timeout. Past this many, a connection is closed when its request ends: with more requests in
/// flight than that, every request beyond it connected anew (`scripts/bench` at 256 connections:
/// ~13,000 upstream connections closed in 4 s, and runs at about 60% of the requests/s).
const UPSTREAM_IDLE_POOL: usize = 1024;

/// Pingora's server settings for the proxy apps, for `threads` workers.
fn server_conf(threads: usize) -> pingora::server::configuration::ServerConf {
    pingora::server::configuration::ServerConf {
        // Retries are decided in `fail_to_connect` (Istio's policy); this is only a fail-safe above
        // any realistic `attempts`.
        max_retries: 64,
        // The pool holds this times `threads`.
        upstream_keepalive_pool_size: UPSTREAM_IDLE_POOL,
        threads: threads.max(1),
        ..Default::default()
    }
}
