//! The upstream side of a request: endpoint choice, the `HttpPeer`, and request/response rewriting.

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

use super::ctx::Ctx;
use super::header_ops::{self, Side};
use super::reply::SERVER;
use super::request::rewrite_authority;
use crate::error::Outcome;
use conf::decide::rewrite;

/// The peer for the next attempt; `Err` is the outcome to answer with. `req` is the request (the
/// SNI of TLS origination defaults to the authority sent upstream); `downstream_h2` whether the
/// client spoke HTTP/2 (for `useClientProtocol`).
pub fn peer(ctx: &mut Ctx, req: &RequestHeader, downstream_h2: bool) -> Result<Box<HttpPeer>, Outcome> {
    let id = ctx.cluster.ok_or(Outcome::NoCluster)?;
    let upstream = ctx.snap.upstreams.get(id).cloned().ok_or(Outcome::NoCluster)?;
    if let Some(refused) = upstream.refusal() {
        return Err(refused);
    }
    if ctx.tried.is_empty() {
        ctx.retries_left = super::retry::attempts(ctx);
    }
    // The previous attempt (a retry) no longer counts against the pool.
    ctx.endpoint = None;
    if upstream.overflowing() {
        return Err(Outcome::Overflow);
    }
    // Istio's `retryIgnorePreviousHosts` (default true): a retry prefers endpoints not tried yet.
    let avoid = if super::retry::ignore_previous_hosts(ctx) { &ctx.tried[..] } else { &[] };
    let chosen = upstream.pick_for(avoid, ctx.hash_key).ok_or(Outcome::NoHealthyUpstream)?;
    let addr = chosen.endpoint().addr;
    let origination = ctx.snap.tls.origination(id, chosen.endpoint());
    ctx.tried.push(addr);
    ctx.endpoint = Some(chosen);
    let origination = origination.map_err(|_| Outcome::UpstreamTls)?;
    // Boxed at once: the peer is large, and it was copied into the box after being set up.
    let mut peer = Box::new(match origination {
        None => HttpPeer::new(addr, false, String::new()),
        Some(o) => {
            let host = match ctx.route().and_then(|r| r.authority_override(ctx.cluster)) {
                Some(rewritten) => rewritten.into(),
                None => super::request::authority(req),
            };
            o.peer(addr, &host, true).map_err(|why| {
                tracing::info!(cluster = %upstream.name, reason = %why, "TLS origination impossible");
                Outcome::UpstreamTls
            })?
        }
    });
    upstream.bind_source(&mut peer);
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    // A pooled connection unused this long is closed (`http.idleTimeout`; `0s`: never).
    peer.options.idle_timeout = Some(upstream.http_idle_timeout);
    peer.options.tcp_keepalive.clone_from(&upstream.tcp_keepalive);
    // The route's timeout (what is left of it) and the per-try timeout bound every wait of this
    // attempt.
    let left = ctx.deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
    if left.is_some_and(|l| l.is_zero()) {
        return Err(Outcome::Timeout);
    }
    let bound = match (left, super::retry::per_try_timeout(ctx)) {
        (Some(l), Some(t)) => Some(l.min(t)),
        (l, t) => l.or(t),
    };
    if let Some(b) = bound {
        peer.options.connection_timeout = Some(upstream.connect_timeout.min(b));
        peer.options.write_timeout = Some(b);
    }
    // Each upstream read waits for the route's (or the try's) time left, or the stream idle
    // timeout when that is shorter or there is no other bound.
    ctx.idle_bound = bound.is_none_or(|b| ctx.stream_idle_timeout < b);
    peer.options.read_timeout = Some(bound.map_or(ctx.stream_idle_timeout, |b| b.min(ctx.stream_idle_timeout)));
    if upstream.http2 || (upstream.use_client_protocol && downstream_h2) {
        // HTTP2 and GRPC service ports: h2c with prior knowledge (ALPN h2 over TLS), multiplexed.
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = upstream.max_h2_streams;
    }
    Ok(peer)
}

/// `connected_to_upstream`: counts the attempt against its connection's limits (HTTP/1.1 only: an
/// HTTP/2 connection is shared by concurrent requests and cannot be closed by one of them).
pub fn count_request_on_connection(
    ctx: &mut Ctx,
    reused: bool,
    peer: &HttpPeer,
    digest: Option<&pingora::protocols::Digest>,
) {
    let limits = ctx.cluster.and_then(|c| ctx.snap.upstreams.get(c)).and_then(|u| u.connection_limits.as_ref());
    ctx.last_on_connection = limits.is_some_and(|l| {
        let local = digest
            .and_then(|d| d.socket_digest.as_ref())
            .and_then(|s| s.local_addr())
            .and_then(|a| a.as_inet())
            .copied();
        peer.options.alpn != ALPN::H2 && l.last_request(local, reused)
    });
}

/// The request's consistent-hash key for its cluster, and the cookie to set when the gateway made
/// one (`httpCookie` with a `ttl`, absent from the request).
pub fn hash_key(session: &pingora::proxy::Session, ctx: &mut Ctx) {
    use crate::cluster::hash::{hash_of, HashKey};
    let Some(ring) = ctx.cluster.and_then(|c| ctx.snap.upstreams.get(c)).and_then(|u| u.hash.as_ref()) else { return };
    let req = session.req_header();
    let value: Option<Vec<u8>> = match &ring.key {
        HashKey::Header(name) => req.headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()),
        HashKey::QueryParameter(name) => req.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.split_once('=').filter(|(k, _)| k == name).map(|(_, v)| v.as_bytes().to_vec()))
        }),
        HashKey::SourceIp => session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| super::policies::client_address(session, a.ip(), ctx).to_string().into_bytes()),
        HashKey::Cookie { name, path, ttl, attributes } => {
            match policy::jwt::cookie_values(req, name).into_iter().next() {
                Some(v) => Some(v.into_bytes()),
                None => ttl.map(|ttl| {
                    let made = format!("{:016x}", fastrand::u64(..));
                    let path = path.as_deref().map(|p| format!("; Path={p}")).unwrap_or_default();
                    ctx.hash_cookie = Some(format!("{name}=\"{made}\"; Max-Age={ttl}{path}; HttpOnly{attributes}"));
                    made.into_bytes()
                }),
            }
        }
    };
    ctx.hash_key = value.map(|v| hash_of(&v));
}

/// Tells the cluster how the current attempt to its endpoint ended (outlier detection).
pub fn report(ctx: &Ctx, attempt: crate::cluster::outlier::Attempt) {
    if timed_out(ctx) {
        return; // the route's own deadline cut it: not the endpoint's fault
    }
    let (Some(ep), Some(upstream)) = (&ctx.endpoint, ctx.cluster.and_then(|c| ctx.snap.upstreams.get(c))) else {
        return;
    };
    upstream.report(ep.endpoint(), attempt);
}

/// True once the route's `timeout` has passed.
pub fn timed_out(ctx: &Ctx) -> bool {
    ctx.deadline.is_some_and(|d| std::time::Instant::now() >= d)
}

/// The route's rewrites and header operations on the request sent upstream. Istio precedence for
/// the authority: `rewrite.authority` > route-level header > destination-level header.
pub fn rewrite(req: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    let Some(route) = ctx.route() else { return Ok(()) };
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(new) = route.rewrite.as_deref().and_then(|rw| rewrite::path(path, rw, &route.matcher)) {
        if let Some(uri) = super::request::with_path_and_query(&req.uri, &new) {
            req.set_uri(uri);
        }
    }
    for o in route.header_ops(ctx.cluster) {
        header_ops::apply(req, o, Side::Request)?;
    }
    if let Some(a) = route.authority_override(ctx.cluster) {
        rewrite_authority(req, a)?;
    }
    if ctx.last_on_connection {
        // `maxRequestsPerConnection` or `maxConnectionDuration` reached: the upstream closes after
        // answering, and the connection is not pooled again.
        req.insert_header(http::header::CONNECTION, http::HeaderValue::from_static("close"))?;
    }
    Ok(())
}

/// `x-envoy-attempt-count`, parsed once.
pub static X_ENVOY_ATTEMPT_COUNT: http::HeaderName = http::HeaderName::from_static("x-envoy-attempt-count");

/// `x-envoy-attempt-count`'s value: the first attempts' without formatting or copying a number.
pub fn attempt_count(n: usize) -> http::HeaderValue {
    const FIRST: [&str; 5] = ["1", "2", "3", "4", "5"];
    FIRST.get(n.wrapping_sub(1)).map_or_else(|| http::HeaderValue::from(n), |v| http::HeaderValue::from_static(v))
}

/// Runs `f` on the response's own `http` header map, then hands the response back to Pingora
/// without its record of the upstream's header-name case, as `request::with_header_map` does for
/// requests: names go downstream in lower case, as Envoy writes HTTP/1 header names, but for the
/// standard ones Pingora titles (`Content-Type`, `Content-Length`, …). Each header set through
/// Pingora's `ResponseHeader` was written to two maps, and both were walked to write the head out.
/// A reason phrase other than the status's own is kept.
fn with_header_map<R>(resp: &mut ResponseHeader, f: impl FnOnce(&mut http::HeaderMap) -> R) -> R {
    let canonical = resp.status.canonical_reason();
    let reason = resp.get_reason_phrase().filter(|r| Some(*r) != canonical).map(str::to_string);
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, placeholder).into();
    let out = f(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if let Err(e) = resp.set_reason_phrase(reason.as_deref()) {
        tracing::debug!(error = %e, "the upstream's reason phrase is replaced by the status's own");
    }
    out
}

/// Response header operations, and the `server` header.
pub fn response_headers(resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
    if let Some(route) = ctx.route() {
        for o in route.header_ops(ctx.cluster) {
            header_ops::apply(resp, o, Side::Response)?;
        }
    }
    with_header_map(resp, |h| h.insert(http::header::SERVER, http::HeaderValue::from_static(SERVER)));
    if let Some(cookie) = &ctx.hash_cookie {
        resp.append_header(http::header::SET_COOKIE, cookie.as_str())?;
    }
    for (k, v) in &ctx.rate_limit_headers {
        resp.insert_header(k.clone(), v.as_str())?;
    }
    Ok(())
}
