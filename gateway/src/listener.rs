//! Pylon's own accept loops (rather than Pingora's listener services, so that reload can add and remove listeners), one per listener of the plan; each
//! accepted connection goes to the handler of its listener's kind: plaintext HTTP here, TLS in
//! [`crate::tls`], TCP in [`crate::l4`].
//!
//! Binding happens before anything starts, so a taken port is a startup error naming it, readiness
//! follows binding exactly, `--port-map TO=0` reports the ephemeral port, and Pylon decides HTTP/1
//! versus h2c itself with a timeout on the first bytes (Pingora's own h2c sniffing waits for 24
//! bytes with no timeout, so a short request or an idle connection would hang). Accepted sockets are
//! handed to Pingora's `HttpProxy` as buffered streams (see the README's benchmark note).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::VirtualSocketStream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::edge::buffered::Buffered;
use crate::edge::head_deadline::HeadDeadline;
use crate::proxy::Gateway;

/// How long a new connection may stay silent before it is closed.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a listener serves, for dispatching its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plaintext HTTP/1 and h2c.
    Http,
    /// TLS: SNI chooses the server.
    Tls,
    /// Opaque TCP.
    Tcp,
}

/// A listener of the table: its Gateway port and bind address (what a connection looks up in the
/// current snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    /// The declared port.
    pub port: u16,
    /// The `bind` of its servers (`None`: every address).
    pub bind: Option<IpAddr>,
}

/// What every connection handler shares.
pub struct Env {
    /// The current snapshot and readiness.
    pub state: Arc<crate::state::SharedState>,
    /// The HTTP apps.
    pub apps: Apps,
    /// Turns true when draining starts.
    pub shutdown: ShutdownWatch,
    /// Upstream connections for TCP proxying (plaintext or TLS origination); made at the first
    /// (it loads the system's CAs, which a gateway without TCP routes need not hold).
    pub connector: std::sync::OnceLock<pingora::connectors::TransportConnector>,
    /// Open connections, for the drain.
    pub tracker: Arc<crate::lifecycle::Tracker>,
    /// Metrics and the access log.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// The data-plane runtime (reloads asked for elsewhere run on it).
    pub runtime: tokio::runtime::Handle,
    /// How long an HTTP/1.1 request head may take to arrive.
    pub head_timeout: Duration,
}

impl Env {
    /// The connector for TCP proxying.
    pub fn connector(&self) -> &pingora::connectors::TransportConnector {
        self.connector.get_or_init(|| pingora::connectors::TransportConnector::new(None))
    }
}

/// A socket bound for one listener of the plan.
pub struct Bound {
    /// The listener.
    pub key: ListenerKey,
    /// The Gateway server port it serves.
    pub port: u16,
    /// The address actually bound (after `--port-map`; the real port when 0 was asked for).
    pub local: SocketAddr,
    socket: std::net::TcpListener,
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (Gateway port {port}): {source}")]
pub struct BindError {
    /// The Gateway server port.
    pub port: u16,
    /// The address tried.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

/// Binds `bind:listen_port` for listener `key` (every IPv4 address when `bind` is `None`).
pub fn bind(key: ListenerKey, listen_port: u16) -> Result<Bound, BindError> {
    let port = key.port;
    let addr = SocketAddr::new(key.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), listen_port);
    let err = |source| BindError { port, addr, source };
    let socket = std::net::TcpListener::bind(addr).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    let local = socket.local_addr().map_err(err)?;
    Ok(Bound { key, port, local, socket })
}

/// A socket the previous process bound for listener `key` (binary upgrade), bound at `local`.
pub fn adopt(key: ListenerKey, local: SocketAddr, socket: std::net::TcpListener) -> Bound {
    Bound { key, port: key.port, local, socket }
}

impl Bound {
    /// A second descriptor for the socket, kept to hand the listener to a successor process.
    pub fn duplicate(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.socket.try_clone().map(std::os::fd::OwnedFd::from)
    }
}

/// Why accept loops stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// They do not: serving.
    Serving,
    /// The drain: serve the connections already queued, then close.
    Draining,
    /// A successor process serves the same sockets (binary upgrade): stop accepting at once and
    /// leave the queue to it.
    HandedOver,
}

/// The two Pingora apps: HTTP/1 only, and h2c (chosen per connection from its first bytes).
pub struct Apps {
    /// HTTP/1.0, HTTP/1.1 and HTTP/2 (h2c with prior knowledge, or h2 by ALPN over TLS): one
    /// proxy, so one upstream connection pool per cluster whatever the client speaks.
    pub http: Arc<HttpProxy<Gateway>>,
}

impl Apps {
    /// Builds the app around the proxy logic. An HTTP/2 connection (h2c, or h2 over TLS) without
    /// a stream for `idle` is closed (Istio's idle timeout, 1 h by default).
    pub fn new(gateway: Gateway, conf: &Arc<pingora::server::configuration::ServerConf>, idle: Duration) -> Self {
        let mut http = pingora::proxy::http_proxy(conf, gateway);
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2_idle_timeout = Some(idle);
        // Plaintext connections are classified before Pingora sees them (`classify`): an h2c one
        // arrives with its preface, an HTTP/1 one behind a head deadline that says it has none.
        options.h2c = true;
        http.server_options = Some(options);
        Apps { http: Arc::new(http) }
    }
}

/// What the listener `key` serves in `snap`; `None` when the configuration no longer has it.
pub fn kind_of(snap: &crate::snapshot::Snapshot, key: ListenerKey) -> Option<Kind> {
    let l = snap.table.listeners.iter().find(|l| l.port == key.port && l.bind == key.bind)?;
    Some(match l.kind {
        conf::table::ListenerKind::Http { .. } => Kind::Http,
        conf::table::ListenerKind::Tls { .. } => Kind::Tls,
        conf::table::ListenerKind::Tcp { .. } => Kind::Tcp,
    })
}

/// Accepts connections until `stop` (the drain) or `closed` (a reload removed the listener) turns
/// true; each connection is served until it closes. What a connection is (HTTP, TLS, TCP) is read
/// from the current configuration, so a reload that changes it applies to the next connection.
pub async fn serve(bound: Bound, env: Arc<Env>, mut stop: watch::Receiver<Stop>, mut closed: watch::Receiver<bool>) {
    let listener = match TcpListener::from_std(bound.socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %bound.local, error = %e, "cannot serve the listener");
            return;
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => spawn_connection(tcp, bound.key, &env),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(addr = %bound.local, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
            _ = closed.changed() => break,
        }
    }
    if *stop.borrow() == Stop::HandedOver {
        return;
    }
    // Clients whose connections the kernel already completed would be reset when the socket
    // closes: serve what is queued, then close.
    let Ok(std_listener) = listener.into_std() else { return };
    while let Ok((tcp, _)) = std_listener.accept() {
        match tcp.set_nonblocking(true).and_then(|()| TcpStream::from_std(tcp)) {
            Ok(tcp) => spawn_connection(tcp, bound.key, &env),
            Err(e) => tracing::debug!(error = %e, "cannot serve a queued connection"),
        }
    }
}

/// Serves one accepted connection on its own task, tracked for the drain.
fn spawn_connection(mut tcp: TcpStream, key: ListenerKey, env: &Arc<Env>) {
    let (env, tracked) = (env.clone(), env.tracker.track());
    let _ = tcp.set_nodelay(true);
    tokio::spawn(async move {
        // The connection counts for the drain until its task ends.
        let _tracked = tracked;
        let snap = env.state.snapshot();
        let Some(peer) = client_address(&snap, &mut tcp, key).await else { return };
        if refused(&snap, peer, &tcp, key) {
            return env.telemetry.metrics.connection_refused(key.port, "denied_by_policy", None);
        }
        match kind_of(&snap, key) {
            Some(Kind::Http) => connection(tcp, peer, env).await,
            Some(Kind::Tls) => crate::tls::serve(buffered(tcp, peer), key, env).await,
            Some(Kind::Tcp) => tcp_connection(tcp, peer, key, env).await,
            None => drop(tcp),
        }
    });
}

/// The client's address: the socket's peer, or with MeshConfig `gatewayTopology.proxyProtocol`
/// the one the PROXY protocol header carries (the header is consumed). `None` closes the
/// connection: no peer, or a missing or malformed header.
async fn client_address(snap: &crate::snapshot::Snapshot, tcp: &mut TcpStream, key: ListenerKey) -> Option<SocketAddr> {
    let socket_peer = tcp.peer_addr().ok()?;
    if !snap.table.proxy_protocol {
        return Some(socket_peer);
    }
    match crate::edge::proxy_protocol::read(tcp).await {
        Ok(crate::edge::proxy_protocol::Header::Proxied { source, .. }) => Some(source),
        Ok(crate::edge::proxy_protocol::Header::Local) => Some(socket_peer),
        Err(why) => {
            tracing::info!(peer = %socket_peer, port = key.port, reason = %why, "PROXY protocol header refused; connection closed");
            None
        }
    }
}

/// True when an AuthorizationPolicy DENY rule that depends only on the peer address and port
/// refuses the connection: it is closed before a byte is read (no TLS handshake, no HTTP).
fn refused(snap: &crate::snapshot::Snapshot, peer: SocketAddr, tcp: &TcpStream, key: ListenerKey) -> bool {
    if !snap.policies.checks_connections() {
        return false;
    }
    let mut cx = policy::Context::new(peer.ip(), key.port);
    cx.local = tcp.local_addr().ok();
    match snap.policies.connection(&cx) {
        policy::Decision::Allow => false,
        policy::Decision::Deny(d) => {
            tracing::debug!(peer = %peer, port = key.port, details = %d.details, "connection refused by policy");
            true
        }
    }
}

async fn connection(tcp: TcpStream, peer: SocketAddr, env: Arc<Env>) {
    let Some(h2c) = classify(&tcp).await else { return };
    if h2c {
        env.apps.http.process_new(Box::new(buffered(tcp, peer)), &env.shutdown).await;
    } else {
        let digest = socket_digest(&tcp, peer);
        let conn = HeadDeadline::new(Buffered::with_digest(tcp, digest), env.head_timeout);
        crate::edge::keepalive::serve(conn, &env.apps.http, &env.shutdown, &env.tracker).await;
    }
}

/// A TCP connection: the listener's route in the current snapshot; none → closed at once.
async fn tcp_connection(tcp: TcpStream, peer: SocketAddr, key: ListenerKey, env: Arc<Env>) {
    let snap = env.state.snapshot();
    let route =
        snap.table.listeners.iter().find(|l| l.port == key.port && l.bind == key.bind).and_then(|l| match &l.kind {
            conf::table::ListenerKind::Tcp { route, .. } => Some(route),
            _ => None,
        });
    let Some(route) = route else {
        tracing::debug!(port = key.port, "no TCP route; closing");
        return env.telemetry.metrics.connection_refused(key.port, "no_route", None);
    };
    let connection = crate::proxy::policies::Connection {
        peer: Some(peer),
        local: tcp.local_addr().ok(),
        port: key.port,
        sni: None,
        client_cert: None,
    };
    if !crate::proxy::policies::l4_allowed(&snap, &connection) {
        return env.telemetry.metrics.connection_refused(key.port, "denied_by_policy", None);
    }
    let cluster = crate::l4::pick(route);
    crate::l4::proxy(tcp, snap, cluster, &env, key.port, &format!("port {}", key.port)).await;
}

/// The socket as Pingora's stream: buffered (response header and body leave in one write), with
/// its socket digest (addresses) attached; `peer` is the client's address (the PROXY protocol's
/// when it is on), which requests, policies and logs see.
fn buffered(tcp: TcpStream, peer: SocketAddr) -> L4Stream {
    let digest = socket_digest(&tcp, peer);
    let mut stream: L4Stream = VirtualSocketStream::new(Box::new(Buffered::new(tcp))).into();
    stream.set_socket_digest(digest);
    stream
}

/// The socket's addresses as Pingora reports them, with `peer` as the client's.
fn socket_digest(tcp: &TcpStream, peer: SocketAddr) -> SocketDigest {
    let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
    let _ = digest.peer_addr.set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(peer)));
    digest
}

/// HTTP/1 (`Some(false)`) or h2c (`Some(true)`), from the first bytes; `None` when the connection
/// closes or stays silent for [`FIRST_BYTES_TIMEOUT`].
async fn classify(tcp: &TcpStream) -> Option<bool> {
    match tokio::time::timeout(FIRST_BYTES_TIMEOUT, starts_with_preface(tcp)).await {
        Ok(found) => found,
        Err(_) => {
            tracing::debug!(peer = ?tcp.peer_addr().ok(), "no request within the first-bytes timeout; closing");
            None
        }
    }
}

/// `Some(true)` when the connection starts with the HTTP/2 preface, `Some(false)` as soon as its
/// bytes differ from it, `None` when it closes first.
async fn starts_with_preface(tcp: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; 24];
    let mut wait = Duration::from_millis(1);
    loop {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A partial preface: wait for the rest (peek does not consume, so poll, backing off).
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_request_shorter_than_the_preface_is_http1_at_once() {
        let (mut client, server) = pair().await;
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        assert_eq!(classify(&server).await, Some(false));
    }

    #[tokio::test]
    async fn the_h2_preface_selects_h2c_even_when_split() {
        let (mut client, server) = pair().await;
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        let detect = tokio::spawn(async move { classify(&server).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        assert_eq!(detect.await.unwrap(), Some(true));
    }

    #[tokio::test]
    async fn a_closed_connection_is_dropped() {
        let (client, server) = pair().await;
        drop(client);
        assert_eq!(classify(&server).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out() {
        let (_client, server) = pair().await;
        let started = tokio::time::Instant::now();
        assert_eq!(classify(&server).await, None);
        assert!(started.elapsed() >= FIRST_BYTES_TIMEOUT);
    }
}
