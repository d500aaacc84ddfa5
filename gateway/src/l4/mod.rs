//! TCP proxying for `tcp` and `tls` (passthrough) routes: one destination chosen by weight per
//! connection, one connect attempt (Envoy `tcp_proxy` `max_connect_attempts` default), then a
//! bidirectional copy until both sides close or the idle timeout (DestinationRule
//! `connectionPool.tcp.idleTimeout`, Istio's default 1 h) passes. A connection that cannot be
//! routed is closed at once.

pub mod splice;

use std::sync::Arc;
use std::time::Duration;

use conf::table::{ClusterId, TcpRoute};
use pingora::connectors::TransportConnector;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::IO;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::cluster::{pick_weighted, InFlight, Upstream};
use crate::listener::Env;
use crate::snapshot::Snapshot;

/// Istio's TCP idle timeout when no DestinationRule sets one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The destination of a new connection on `route`, chosen by weight.
pub fn pick(route: &TcpRoute) -> Option<ClusterId> {
    pick_weighted(&route.destinations, |d| d.weight).map(|d| d.cluster)
}

/// Proxies `down` (a connection on gateway `port`) to an endpoint of `cluster` (`None`: the route
/// has no destination; closed). The snapshot is let go once connected: a long-lived connection
/// keeps only what it uses. A connection that is not proxied is logged and counted with its reason.
pub async fn proxy<S>(down: S, snap: Arc<Snapshot>, cluster: Option<ClusterId>, env: &Env, port: u16, what: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let metrics = &env.telemetry.metrics;
    let Some(upstream) = cluster.and_then(|c| snap.upstreams.get(c)).cloned() else {
        tracing::debug!(%what, "TCP route without a destination; closing");
        return metrics.connection_refused(port, "no_route", None);
    };
    if upstream.connections_full() {
        // `connectionPool.tcp.maxConnections` reached (Envoy's circuit breaker, flag UO).
        tracing::info!(%what, cluster = %upstream.name, "connection pool full; closing");
        return metrics.connection_refused(port, "pool_full", Some(&upstream.destination));
    }
    let connected = connect(&upstream, &snap, cluster.unwrap_or_default(), env.connector()).await;
    drop(snap);
    let (up, _in_flight) = match connected {
        Ok(up) => up,
        Err((reason, why)) => {
            tracing::info!(%what, cluster = %upstream.name, %reason, detail = %why, "TCP connection not proxied; closing");
            return metrics.connection_refused(port, reason, Some(&upstream.destination));
        }
    };
    metrics.tcp_opened(&upstream.destination);
    let done = splice::splice(down, up, upstream.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)).await;
    // Istio: sent = bytes of the response (upstream to client), received = bytes of the request.
    metrics.tcp_closed(&upstream.destination, done.received, done.sent);
    tracing::debug!(%what, cluster = %upstream.name, sent = done.sent, received = done.received, ended = ?done.ended, "TCP connection ended");
}

/// Why a connection could not be made: the `reason` label of `pylon_connections_refused_total`,
/// and the detail for the log.
type Refused = (&'static str, String);

/// One connection to an endpoint of the cluster: plaintext, or TLS when a DestinationRule
/// originates it.
async fn connect(
    upstream: &Upstream,
    snap: &Snapshot,
    cluster: usize,
    connector: &TransportConnector,
) -> Result<(Box<dyn IO>, InFlight), Refused> {
    if let Some(refused) = upstream.refusal() {
        let reason = match refused {
            crate::error::Outcome::NoCluster => "not_in_registry",
            _ => "no_healthy_upstream",
        };
        let detail = upstream.not_found.clone().unwrap_or_else(|| refused.body().to_string());
        return Err((reason, format!("{detail} ({})", refused.flag())));
    }
    let failed = |detail: String| ("connect_failure", detail);
    let endpoint = upstream.pick(&[]).ok_or(("no_healthy_upstream", "no healthy upstream".to_string()))?;
    let addr = endpoint.endpoint().addr;
    let origination = snap.tls.origination(cluster, endpoint.endpoint()).map_err(|e| failed(e.to_string()))?;
    match origination {
        None => {
            let bind = upstream.source.as_ref().map(|(b, _)| b);
            let tcp = tokio::time::timeout(upstream.connect_timeout, pingora::protocols::l4::ext::connect(&addr, bind))
                .await
                .map_err(|_| failed(format!("connect to {addr} timed out")))?
                .map_err(|e| failed(format!("connect to {addr}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            if let Some(ka) = &upstream.tcp_keepalive {
                if let Err(e) = pingora::protocols::l4::ext::set_tcp_keepalive(&tcp, ka) {
                    tracing::debug!(upstream = %addr, error = %e, "TCP keep-alive not set");
                }
            }
            let stream: L4Stream = tcp.into();
            Ok((Box::new(stream), endpoint))
        }
        Some(o) => {
            let mut peer = o.peer(addr, &upstream.host, false).map_err(failed)?;
            upstream.bind_source(&mut peer);
            peer.options.connection_timeout = Some(upstream.connect_timeout);
            peer.options.tcp_keepalive.clone_from(&upstream.tcp_keepalive);
            let stream = connector.new_stream(&peer).await.map_err(|e| failed(format!("TLS to {addr}: {e}")))?;
            crate::cluster::tls::verdict_of(stream.get_ssl_digest().as_deref())
                .map_err(|e| failed(format!("TLS to {addr}: {e}")))?;
            Ok((stream, endpoint))
        }
    }
}
