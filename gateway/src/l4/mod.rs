//! TCP proxying for `tcp` and `tls` (passthrough) routes: one destination chosen by weight per
//! connection, one connect attempt (Envoy `tcp_proxy` `max_connect_attempts` default), then a
//! bidirectional copy until both sides close or the idle timeout (DestinationRule
//! `connectionPool.tcp.idleTimeout`, Istio's default 1 h) passes. A connection that cannot be
//! routed is closed at once.

pub mod splice;

use std::sync::Arc;
use std::time::Duration;

use conf::table::TcpRoute;
use pingora::connectors::TransportConnector;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::IO;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::cluster::{pick_weighted, InFlight, Upstream};
use crate::snapshot::Snapshot;

/// Istio's TCP idle timeout when no DestinationRule sets one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Proxies `down` to a destination of `route`. `what` names the connection in logs.
pub async fn proxy<S>(down: S, route: &TcpRoute, snap: &Arc<Snapshot>, connector: &TransportConnector, what: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(dest) = pick_weighted(&route.destinations, |d| d.weight) else {
        tracing::debug!(%what, route = %route.origin, "TCP route without destinations; closing");
        return;
    };
    let Some(upstream) = snap.upstreams.get(dest.cluster) else { return };
    let (up, _in_flight) = match connect(upstream, snap, dest.cluster, connector).await {
        Ok(up) => up,
        Err(why) => {
            tracing::info!(%what, cluster = %upstream.name, reason = %why, "TCP connection not proxied; closing");
            return;
        }
    };
    let done = splice::splice(down, up, upstream.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)).await;
    tracing::debug!(%what, cluster = %upstream.name, sent = done.sent, received = done.received, ended = ?done.ended, "TCP connection ended");
}

/// One connection to an endpoint of the cluster: plaintext, or TLS when a DestinationRule
/// originates it.
async fn connect(
    upstream: &Upstream,
    snap: &Snapshot,
    cluster: usize,
    connector: &TransportConnector,
) -> Result<(Box<dyn IO>, InFlight), String> {
    if let Some(refused) = upstream.refusal() {
        return Err(format!("{} ({})", refused.body(), refused.flag()));
    }
    let endpoint = upstream.pick(&[]).ok_or("no healthy upstream")?;
    let addr = endpoint.endpoint().addr;
    let origination = snap.tls.origination(cluster).map_err(|e| e.to_string())?;
    match origination {
        None => {
            let tcp = tokio::time::timeout(upstream.connect_timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| format!("connect to {addr} timed out"))?
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let stream: L4Stream = tcp.into();
            Ok((Box::new(stream), endpoint))
        }
        Some(o) => {
            let mut peer = o.peer(addr, &upstream.host, false);
            peer.options.connection_timeout = Some(upstream.connect_timeout);
            let stream = connector.new_stream(&peer).await.map_err(|e| format!("TLS to {addr}: {e}"))?;
            crate::cluster::tls::verdict_of(stream.get_ssl_digest().as_deref())
                .map_err(|e| format!("TLS to {addr}: {e}"))?;
            Ok((stream, endpoint))
        }
    }
}
