//! The `ProxyHttp` implementation. Each hook only dispatches; the logic lives in the submodules.

pub mod cache;
pub mod cors;
pub mod ctx;
pub mod fault;
pub mod header_ops;
pub mod header_policy;
pub mod mirror;
pub mod policies;
pub mod ratelimit;
pub mod reply;
pub mod request;
pub mod retry;
pub mod route;
mod upstream;

pub use upstream::X_ENVOY_ATTEMPT_COUNT;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};

use crate::cluster::outlier::Attempt;
use crate::edge::forwarded;
use crate::error::Outcome;
use crate::state::SharedState;
use crate::telemetry::Telemetry;
use ctx::Ctx;
use reply::LocalReply;
use route::Decision;

/// The gateway's proxy logic, shared by every listener.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<SharedState>,
    telemetry: Arc<Telemetry>,
    mirrors: Arc<mirror::Mirrors>,
    idle_timeout_secs: u64,
    stream_idle_timeout: std::time::Duration,
}

impl Gateway {
    /// Proxy logic reading `state` and reporting to `telemetry`.
    pub fn new(state: Arc<SharedState>, telemetry: Arc<Telemetry>) -> Self {
        Gateway {
            state,
            telemetry,
            mirrors: Arc::new(mirror::Mirrors::default()),
            idle_timeout_secs: 3600,
            stream_idle_timeout: crate::server::DEFAULT_STREAM_IDLE_TIMEOUT,
        }
    }

    /// An HTTP/1.1 connection waiting for its next request is closed after `idle` (Pingora would
    /// keep it for ever).
    pub fn with_idle_timeout(mut self, idle: std::time::Duration) -> Self {
        self.idle_timeout_secs = idle.as_secs().max(1);
        self
    }

    /// A request whose upstream sends nothing for `idle` ends (Envoy's `stream_idle_timeout`):
    /// 408 `stream timeout` (`SI`) before the response started, else the streams are closed.
    pub fn with_stream_idle_timeout(mut self, idle: std::time::Duration) -> Self {
        self.stream_idle_timeout = idle;
        self
    }
}

fn local_addr(session: &Session) -> Option<SocketAddr> {
    session.server_addr().and_then(|a| a.as_inet()).copied()
}

impl Gateway {
    /// Reads the connection context into the request: the TLS session chosen at the handshake,
    /// or, for plaintext, the listener of the local address.
    fn connection(&self, session: &Session, ctx: &mut Ctx) {
        let local = local_addr(session);
        ctx.local_ip = local.map(|a| a.ip());
        if let Some(tls) = crate::tls::session_of(session.digest()) {
            ctx.port = tls.port;
            ctx.scheme = "https";
            ctx.route_config = tls.route_config(&ctx.snap);
            ctx.tls = Some(tls);
            return;
        }
        ctx.port = local.and_then(|a| self.state.declared_port(a)).unwrap_or_default();
        ctx.route_config = ctx.snap.table.http_route_config(ctx.port, ctx.local_ip);
    }
}

/// `Expect: 100-continue` on a request going upstream: the gateway answers `100 Continue` itself
/// and does not pass the expectation on (Envoy's default, `proxy_100_continue: false`). A request
/// the gateway answers itself gets its final reply at once instead (see `LocalReply::write`).
async fn continue_if_expected(session: &mut Session, ctx: &Ctx) -> Result<()> {
    if !ctx.head.expects_continue || session.as_downstream().is_http2() {
        return Ok(());
    }
    session.req_header_mut().remove_header(&http::header::EXPECT);
    session.as_downstream_mut().write_continue_response().await
}

/// Routing, then what Envoy's filters before the router do on the matched route, in Istio's order:
/// fault injection, then CORS. A forwarded request's `timeout` starts here.
async fn route_request(session: &Session, ctx: &mut Ctx) -> Decision {
    let decision = route::decide(session, ctx);
    if ctx.route.is_none() || ctx.denied.is_some() {
        return decision; // no route, or rate-limited
    }
    let local = match fault::inject(ctx).await {
        Some(aborted) => Some(aborted),
        None => cors::request(session.req_header(), ctx),
    };
    if let Some(reply) = local {
        return Decision::Reply(reply);
    }
    if matches!(decision, Decision::Forward) {
        ctx.deadline = ctx.route().and_then(|r| r.timeout).map(|t| std::time::Instant::now() + t.to_std());
    }
    decision
}

#[async_trait]
impl ProxyHttp for Gateway {
    // Boxed: Pingora keeps the context inside the request's future, which it moves into a `Box`
    // (a copy of the whole future) for every request; a pointer instead of the context's 424 bytes
    // makes that copy smaller (`scripts/bench profile`).
    type CTX = Box<Ctx>;

    fn new_ctx(&self) -> Box<Ctx> {
        Box::new(Ctx::new(self.state.snapshot()))
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Box<Ctx>) -> Result<()> {
        self.connection(session, ctx);
        if self.state.is_draining() {
            // Drain: finish this request, then close the connection (Envoy: Connection: close).
            session.set_keepalive(None);
        } else if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.idle_timeout_secs));
        }
        // HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests sent before the previous answer are served
        // in order, as Envoy and nginx do (Pingora drops them and closes unless asked).
        session.as_downstream_mut().set_pipelining_enabled(true);
        // Bounds each upstream read (`upstream::peer`); reads of the request body keep Pingora's
        // own 60 s bound.
        ctx.stream_idle_timeout = self.stream_idle_timeout;
        forwarded::strip_internal(session.req_header_mut());
        // The client's header-name case goes nowhere (upstream, names go in lower case, see
        // `request::with_header_map`): dropped here, once, Pingora's copy of the request for the
        // upstream and its removal of hop-by-hop headers each handle one map instead of two.
        if session.req_header().has_case() {
            request::with_header_map(session.req_header_mut(), |_| ());
        }
        let mode = ctx.snap.table.path_normalization;
        let (head, refused) = request::check(session);
        ctx.head = head;
        let checked = refused.map_or_else(|| request::normalize_path(session, mode), Err);
        ctx.outcome = checked.err();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Box<Ctx>) -> Result<bool> {
        if let Some(bad) = ctx.outcome {
            session.set_keepalive(None);
            LocalReply::outcome(bad).write(session).await?;
            return Ok(true);
        }
        // A background revalidation (stale-while-revalidate) repeats a request that passed.
        let revalidation = session.subrequest_ctx.is_some();
        if let Some((reply, details)) = if revalidation { None } else { policies::check(session, ctx).await } {
            ctx.denied = Some(details);
            reply.write(session).await?;
            return Ok(true);
        }
        match route_request(session, ctx).await {
            Decision::Forward => {
                continue_if_expected(session, ctx).await?;
                Ok(false)
            }
            Decision::Reply(reply) => {
                reply.write(session).await?;
                Ok(true)
            }
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Box<Ctx>) -> Result<()> {
        cache::enable(session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Box<Ctx>) -> Result<CacheKey> {
        cache::key(session, ctx)
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        _meta: &CacheMeta,
        _hit: &mut HitHandler,
        is_fresh: bool,
        _ctx: &mut Box<Ctx>,
    ) -> Result<Option<ForcedFreshness>> {
        let revalidate = is_fresh && cache::must_revalidate(session.req_header());
        Ok(revalidate.then_some(ForcedFreshness::ForceExpired))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Box<Ctx>,
    ) -> Result<RespCacheable> {
        Ok(cache::cacheable(session, resp, ctx))
    }

    fn cache_vary_filter(&self, meta: &CacheMeta, _ctx: &mut Box<Ctx>, req: &RequestHeader) -> Option<HashBinary> {
        cache::variance(meta, req)
    }

    fn should_serve_stale(&self, _session: &mut Session, ctx: &mut Box<Ctx>, error: Option<&Error>) -> bool {
        cache::serve_stale(error, ctx)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Box<Ctx>) -> Result<Box<HttpPeer>> {
        if ctx.tried.is_empty() {
            upstream::hash_key(session, ctx);
        } else {
            // A retry: the body is replayed from the start, so the mirror copy starts over too.
            if matches!(ctx.mirror, mirror::Copy::Body(_)) {
                ctx.mirror = mirror::Copy::Collecting;
            }
            // Envoy's jittered backoff first, within the route's timeout.
            let left = ctx.deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let wait = retry::backoff(ctx, u32::try_from(ctx.tried.len()).unwrap_or(u32::MAX));
            tokio::time::sleep(left.map_or(wait, |l| wait.min(l))).await;
        }
        let downstream_h2 = session.as_downstream().is_http2();
        upstream::peer(ctx, session.req_header(), downstream_h2).map_err(|o| {
            ctx.outcome = Some(o);
            o.error()
        })
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        upstream::count_request_on_connection(ctx, reused, peer, digest);
        // TLS origination: the SAN and revocation checks made after the handshake.
        let ssl = digest.and_then(|d| d.ssl_digest.as_deref());
        crate::cluster::tls::verdict_of(ssl).map_err(|why| {
            tracing::info!(upstream = %peer, reason = %why, "upstream certificate rejected");
            ctx.outcome = Some(Outcome::UpstreamTls);
            Outcome::UpstreamTls.error()
        })
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let client = peer.map(|p| policies::client_address(session, p, ctx));
        let addresses = peer.zip(client).map(|(p, c)| {
            let peer_text = request::ip_text(p);
            let client_text = if c == p { peer_text.clone() } else { request::ip_text(c) };
            (peer_text, client_text)
        });
        header_policy::request_id(ctx);
        let cert = ctx.tls.as_ref().and_then(|t| t.client_cert.as_ref());
        let trusted_hop = peer.is_some_and(|p| policies::trusted_hop(p, ctx));
        let xfcc = ctx.snap.table.forward_client_cert;
        let origin = forwarded::Origin { addresses, scheme: ctx.scheme, trusted_hop, xfcc };
        let id = ctx.request_id.as_deref();
        let attempt = upstream::attempt_count(ctx.tried.len().max(1));
        let id = request::with_header_map(req, |h| {
            let id = forwarded::forwarding_headers(h, origin, cert, id)?;
            // Istio sets Envoy's `include_request_attempt_count` on every virtual host: the upstream
            // learns which attempt this is (1 for the first try). Envoy sets it before the route's
            // header operations (`Router::Filter::decodeHeaders`), which may then change it.
            h.insert(&upstream::X_ENVOY_ATTEMPT_COUNT, attempt);
            Ok::<_, Box<pingora::Error>>(id)
        })?;
        ctx.request_id = Some(id);
        header_policy::request(req, ctx, client)?;
        if !session.as_downstream().is_http2() {
            request::to_origin_form(req);
        }
        upstream::rewrite(req, ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        cache::response(session, resp, ctx)?;
        cors::response(resp, ctx)?;
        upstream::response_headers(resp, ctx)?;
        header_policy::response(resp, ctx)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        self.mirrors.on_body(session, body.as_ref(), end_of_stream, ctx);
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Box<Ctx>,
    ) -> Result<Option<std::time::Duration>> {
        // The route's timeout covers the whole response, as Envoy's: a body still arriving when
        // it passes is cut (the client sees the stream end early).
        if upstream::timed_out(ctx) {
            ctx.outcome = Some(Outcome::Timeout);
            return Err(Outcome::Timeout.error());
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<Ctx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        upstream::report(ctx, Attempt::LocalFailure);
        if retry::on_connect_failure(ctx) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<Ctx>,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if e.esource() == &pingora::ErrorSource::Upstream && e.etype() != &retry::RETRY {
            upstream::report(ctx, Attempt::LocalFailure);
        }
        let resendable = session.response_written().is_none() && !session.as_ref().retry_buffer_truncated();
        if !resendable {
            e.set_retry(false);
        } else if retry::on_error(&e, ctx) {
            e.set_retry(true);
        } else if session.req_header().method.is_idempotent() {
            // Pingora's own rule: an idempotent request on a pooled connection the upstream had
            // closed is tried again.
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        if !resp.status.is_informational() {
            upstream::report(ctx, Attempt::Answered(resp.status.as_u16()));
        }
        retry::on_response(resp, ctx, session.as_ref().retry_buffer_truncated())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Box<Ctx>) -> FailToProxy {
        let timed_out = upstream::timed_out(ctx).then_some(Outcome::Timeout);
        let idle = (e.etype() == &pingora::ErrorType::ReadTimedout
            && e.esource() == &pingora::ErrorSource::Upstream
            && ctx.idle_bound)
            .then_some(Outcome::StreamIdle);
        let outcome = timed_out.or(ctx.outcome).or(idle).or_else(|| Outcome::of_error(e));
        ctx.outcome = outcome;
        let code = match (outcome, e.etype()) {
            (Some(o), _) => o.status(),
            (None, pingora::ErrorType::HTTPStatus(code)) => *code,
            // The client went away: nobody to answer.
            (None, _) if e.esource() == &pingora::ErrorSource::Downstream => {
                return FailToProxy { error_code: 0, can_reuse_downstream: false };
            }
            (None, _) => 502,
        };
        let reply = match outcome {
            Some(o) => LocalReply::outcome(o),
            None => LocalReply { status: code, headers: Vec::new(), body: bytes::Bytes::new() },
        }
        .with_route_ops(ctx);
        // Pingora does not reuse a connection after a failed proxy attempt: say so to the client.
        session.set_keepalive(None);
        if session.response_written().is_none() {
            if let Err(err) = reply.write(session).await {
                tracing::debug!(error = %err, "cannot write the error response");
            }
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<Ctx>) {
        ctx.endpoint = None;
        if session.subrequest_ctx.is_some() {
            return; // a background revalidation, not a client's request
        }
        crate::telemetry::record::request(&self.telemetry, session, ctx);
        if let Some(e) = e {
            tracing::debug!(error = %e, path = %session.req_header().uri, "request failed");
        }
    }
}
