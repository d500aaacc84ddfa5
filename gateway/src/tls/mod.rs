//! TLS listeners: read the ClientHello, choose the Gateway server by
//! SNI (exact name, then the longest wildcard, then a `*` server; no match → the connection is
//! closed, as Envoy closes it without a filter chain), then either pass the bytes through
//! untouched (PASSTHROUGH) or hand-shake with that server's own acceptor and serve HTTP (HTTPS
//! servers) or TCP (`protocol: TLS` servers) on the terminated stream.

pub mod acceptor;
pub mod client_hello;
pub mod identity;
pub mod material;
pub mod peer;
pub mod store;
pub mod verify;
pub mod watch;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conf::table::{ChainAction, FilterChain, TlsMode};
use openssl::x509::X509VerifyResult;
use pingora::apps::ServerApp;
use pingora::listeners::TlsAccept;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::server::handshake_with_callback;
use pingora::protocols::tls::{SslStream, TlsRef};
use pingora::protocols::GetSocketDigest;

use crate::conn::TlsSession;
use crate::listener::{Env, ListenerKey};
use crate::proxy::policies::{l4_allowed, Connection};
use crate::snapshot::Snapshot;
use peer::PeerCertificate;

/// How long a client has to send its ClientHello and finish the handshake (Istio's gateway
/// `transport_socket_connect_timeout` and Envoy's `listener_filters_timeout`: 15 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves one connection accepted on a TLS listener.
pub async fn serve(mut stream: L4Stream, key: ListenerKey, env: Arc<Env>) {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let peer = stream.get_socket_digest().and_then(|d| d.peer_addr().cloned());
    let hello = match tokio::time::timeout_at(deadline, client_hello::read(&mut stream)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => return tracing::debug!(?peer, port = key.port, error = %e, "closing a TLS connection"),
        Err(_) => return tracing::debug!(?peer, port = key.port, "no ClientHello within 15 s; closing"),
    };
    let snap = env.state.snapshot();
    let Some(listener) = snap.table.listeners.iter().find(|l| l.port == key.port && l.bind == key.bind) else { return };
    let Some((_, chain)) = listener.chain(hello.sni.as_deref()) else {
        // Envoy: no filter chain matches → the connection is closed, no certificate is sent.
        tracing::info!(?peer, port = key.port, sni = ?hello.sni, "no Gateway server for this SNI; connection refused");
        return env.telemetry.metrics.connection_refused(key.port, "no_server_for_sni", None);
    };
    let what = format!("port {} sni {:?}", key.port, hello.sni.as_deref().unwrap_or(""));
    let local = stream.get_socket_digest().and_then(|d| d.local_addr().cloned()).and_then(|a| a.as_inet().copied());
    let peer = peer.and_then(|a| a.as_inet().copied());
    let connection = |client_cert| Connection { peer, local, port: key.port, sni: hello.sni.as_deref(), client_cert };
    match &chain.action {
        ChainAction::Passthrough { route } => {
            if !l4_allowed(&snap, &connection(None)) {
                return env.telemetry.metrics.connection_refused(key.port, "denied_by_policy", None);
            }
            let cluster = crate::l4::pick(route);
            crate::l4::proxy(stream, snap, cluster, &env, key.port, &what).await;
        }
        ChainAction::Http { route_config } => {
            let session = session(&snap, chain, &key, Some(*route_config), hello.sni);
            let tls = terminate(stream, &snap, chain, session, deadline).await;
            // Requests read the current snapshot themselves; a long-lived connection must not keep
            // this one alive.
            drop(snap);
            if let Some(tls) = tls {
                // Over HTTP/1.1 each request head has a deadline; HTTP/2 frames its own.
                let h2 = pingora::protocols::Ssl::selected_alpn_proto(&tls) == Some(pingora::protocols::ALPN::H2);
                let stream: pingora::protocols::Stream =
                    if h2 { Box::new(tls) } else { crate::edge::head_deadline::wrap(tls, env.head_timeout) };
                env.apps.http.process_new(stream, &env.shutdown).await;
            }
        }
        ChainAction::Tcp { route } => {
            let session = session(&snap, chain, &key, None, hello.sni.clone());
            let cluster = crate::l4::pick(route);
            if let Some(tls) = terminate(stream, &snap, chain, session, deadline).await {
                let ssl = tls.ssl();
                let cert = ssl
                    .peer_certificate()
                    .map(|c| PeerCertificate::of(&c, ssl.verify_result() == X509VerifyResult::OK));
                if l4_allowed(&snap, &connection(cert.as_ref())) {
                    crate::l4::proxy(tls, snap, cluster, &env, key.port, &what).await;
                } else {
                    env.telemetry.metrics.connection_refused(key.port, "denied_by_policy", None);
                }
            }
        }
    }
}

fn session(
    snap: &Snapshot,
    chain: &FilterChain,
    key: &ListenerKey,
    route_config: Option<usize>,
    sni: Option<String>,
) -> TlsSession {
    let server = snap.table.servers.get(chain.server);
    TlsSession {
        port: key.port,
        bind: key.bind,
        generation: snap.generation,
        server: chain.server,
        server_key: server.map(|s| (s.gateway.clone(), s.index)).unwrap_or_default(),
        fingerprint: snap.server_fingerprints.get(chain.server).copied().unwrap_or_default(),
        mode: server.and_then(|s| s.tls.as_ref()).map_or(TlsMode::Simple, |t| t.mode),
        route_config,
        sni,
        client_cert: None,
    }
}

/// The handshake with the chosen server's current acceptor; `None` (connection closed) when its
/// material is unusable, the handshake fails, or it takes too long.
async fn terminate(
    stream: L4Stream,
    snap: &Snapshot,
    chain: &FilterChain,
    session: TlsSession,
    deadline: tokio::time::Instant,
) -> Option<SslStream<L4Stream>> {
    let Some(acceptor) = snap.tls.acceptor(chain.server) else {
        tracing::info!(port = session.port, sni = ?session.sni, "the server's certificate is missing or unusable; handshake refused");
        return None;
    };
    let (port, sni) = (session.port, session.sni.clone());
    let callbacks = Handshake(session);
    match tokio::time::timeout_at(deadline, handshake_with_callback(&acceptor, stream, &callbacks)).await {
        Ok(Ok(tls)) => Some(tls),
        // The client's doing (an untrusted certificate, no common cipher, a scanner): debug, so
        // that a flood of them cannot flood the log.
        Ok(Err(e)) => {
            tracing::debug!(port, ?sni, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(port, ?sni, "TLS handshake not finished within 15 s; closing");
            None
        }
    }
}

/// Stores the connection context, with the client certificate, in the TLS digest once the
/// handshake is done; requests find it there.
struct Handshake(TlsSession);

#[async_trait]
impl TlsAccept for Handshake {
    async fn handshake_complete_callback(&self, ssl: &TlsRef) -> Option<Arc<dyn Any + Send + Sync>> {
        let mut session = self.0.clone();
        session.client_cert =
            ssl.peer_certificate().map(|c| PeerCertificate::of(&c, ssl.verify_result() == X509VerifyResult::OK));
        Some(Arc::new(Arc::new(session)))
    }
}

/// The connection context of a request's TLS connection, if it came over TLS.
pub fn session_of(digest: Option<&pingora::protocols::Digest>) -> Option<Arc<TlsSession>> {
    digest?.ssl_digest.as_ref()?.extension.get::<Arc<TlsSession>>().cloned()
}
