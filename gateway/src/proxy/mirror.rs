//! Request mirroring (VirtualService `mirror`/`mirrorPercentage`, `mirrors`), as Envoy's shadow
//! writer: for each mirror drawn by its percentage, a copy of the request (as forwarded: rewrites
//! and header operations applied, the same body) goes to the mirror's cluster once the request
//! body is complete; its response is read and dropped. The client's request never waits for a
//! mirror and never sees its failures. The `Host` is left as is (Istio 1.28 and later no longer
//! append `-shadow`).
//!
//! Bounds: a request body over [`MAX_BODY`] is not mirrored; at most [`MAX_IN_FLIGHT`] copies are
//! in flight per process (more are dropped); each copy gets [`TIMEOUT`] in all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::ctx::Ctx;
use crate::snapshot::Snapshot;

/// The largest request body copied to mirrors.
pub const MAX_BODY: usize = 64 * 1024;
/// Mirror copies in flight at most.
pub const MAX_IN_FLIGHT: usize = 1024;
/// How long one copy may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends mirror copies: a connection pool of its own and the count of copies in flight.
#[derive(Default)]
pub struct Mirrors {
    /// Made at the first copy: each of its TLS contexts (HTTP/1 and HTTP/2) holds the system's
    /// CAs, memory a gateway without mirrors would keep for nothing.
    connector: OnceLock<Connector>,
    in_flight: AtomicUsize,
}

impl Mirrors {
    fn connector(&self) -> &Connector {
        self.connector.get_or_init(|| Connector::new(None))
    }
}

/// A request's mirroring: the body collected so far, until the copies are sent (or given up).
#[derive(Default)]
pub enum Copy {
    /// Collecting the body.
    #[default]
    Collecting,
    /// Collected in part: `BytesMut` so far.
    Body(BytesMut),
    /// Sent, skipped or not mirrored.
    Done,
}

impl Mirrors {
    /// `request_body_filter`: collects `chunk`; at the end of the body, sends a copy to each mirror
    /// drawn. Called again on retries, it does nothing more once done.
    pub fn on_body(self: &Arc<Self>, session: &Session, chunk: Option<&Bytes>, end: bool, ctx: &mut Ctx) {
        if matches!(ctx.mirror, Copy::Done) {
            return;
        }
        if ctx.route().is_none_or(|r| r.mirrors.is_empty()) {
            ctx.mirror = Copy::Done;
            return;
        }
        let mut body = match std::mem::take(&mut ctx.mirror) {
            Copy::Body(b) => b,
            _ => BytesMut::new(),
        };
        if let Some(c) = chunk {
            if body.len() + c.len() > MAX_BODY {
                tracing::debug!(path = %session.req_header().uri, "request body too large to mirror");
                ctx.mirror = Copy::Done;
                return;
            }
            body.extend_from_slice(c);
        }
        if !end {
            ctx.mirror = Copy::Body(body);
            return;
        }
        ctx.mirror = Copy::Done;
        self.send_all(session, body.freeze(), ctx);
    }

    fn send_all(self: &Arc<Self>, session: &Session, body: Bytes, ctx: &Ctx) {
        let Some(route) = ctx.route() else { return };
        if session.is_upgrade_req() {
            return; // a WebSocket is not a request that can be copied
        }
        let mut req = session.req_header().clone();
        if super::upstream::rewrite(&mut req, ctx).is_err() {
            return;
        }
        for hop in ["connection", "keep-alive", "proxy-connection", "te", "upgrade", "transfer-encoding", "expect"] {
            req.remove_header(hop);
        }
        if !body.is_empty() || req.headers.contains_key("content-length") {
            let _ = req.insert_header("content-length", body.len().to_string());
        }
        for m in route.mirrors.iter().filter(|m| super::fault::chance(m.percent)) {
            if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(mirror = %m.name, "too many mirror copies in flight; this one is dropped");
                continue;
            }
            let (mirrors, snap, req, body, cluster) =
                (self.clone(), ctx.snap.clone(), req.clone(), body.clone(), m.cluster);
            tokio::spawn(async move {
                if tokio::time::timeout(TIMEOUT, mirrors.send(&snap, cluster, req, body)).await.is_err() {
                    tracing::debug!("a mirror copy timed out");
                }
                mirrors.in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    /// One copy to an endpoint of `cluster`; its response is read and dropped.
    async fn send(&self, snap: &Snapshot, cluster: usize, mut req: RequestHeader, body: Bytes) {
        let Some(peer) = peer(snap, cluster, &req) else { return };
        if !for_peer(&mut req, snap.upstreams.get(cluster).is_some_and(|u| u.http2)) {
            return;
        }
        let Ok((mut http, _)) = self.connector().get_http_session(&peer).await else {
            tracing::debug!(peer = %peer, "mirror connect failed");
            return;
        };
        let sent = async {
            http.write_request_header(Box::new(req)).await?;
            if !body.is_empty() {
                http.write_request_body(body, true).await?;
            }
            http.finish_request_body().await?;
            http.read_response_header().await?;
            while http.read_response_body().await?.is_some() {}
            Ok::<(), Box<pingora::Error>>(())
        };
        match sent.await {
            Ok(()) => self.connector().release_http_session(http, &peer, None).await,
            Err(e) => tracing::debug!(peer = %peer, error = %e, "mirror copy failed"),
        }
    }

    /// Copies in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Shapes the copy for the mirror's protocol, as Pingora does for forwarded requests: HTTP/1.1
/// with an origin-form target and a Host header, or HTTP/2 with an absolute target. False when
/// the request has no authority to send.
fn for_peer(req: &mut RequestHeader, http2: bool) -> bool {
    let authority = super::request::authority(req).into_owned();
    if authority.is_empty() {
        return false;
    }
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let target = if http2 { format!("http://{authority}{pq}") } else { pq };
    let Ok(uri) = target.parse::<http::Uri>() else { return false };
    req.set_uri(uri);
    req.set_version(if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 });
    if !http2 && req.insert_header(http::header::HOST, authority.as_str()).is_err() {
        return false;
    }
    true
}

/// A peer of the mirror's cluster (TLS origination as the cluster's DestinationRule says).
fn peer(snap: &Snapshot, cluster: usize, req: &RequestHeader) -> Option<HttpPeer> {
    let upstream = snap.upstreams.get(cluster)?;
    if upstream.refusal().is_some() {
        return None;
    }
    let chosen = upstream.pick(&[])?;
    let addr = chosen.endpoint().addr;
    let mut peer = match snap.tls.origination(cluster, chosen.endpoint()).ok()? {
        None => HttpPeer::new(addr, false, String::new()),
        Some(o) => o.peer(addr, &super::request::authority(req), true).ok()?,
    };
    upstream.bind_source(&mut peer);
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    if upstream.http2 {
        peer.options.alpn = pingora::protocols::ALPN::H2;
    }
    Some(peer)
}
