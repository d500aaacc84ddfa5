//! Local rate limits on the matched route (`GatewayPolicy` `rateLimit`): 429 `local_rate_limited`
//! with Envoy's `RL` response flag; optional `x-ratelimit-*` headers on every response.

use bytes::Bytes;
use pingora::proxy::Session;

use super::ctx::Ctx;
use super::reply::LocalReply;

/// The details and body of a rate-limited request (Envoy's local rate limit filter).
pub const LIMITED: &str = "local_rate_limited";

/// Takes a token for the request on its route; `Some(reply)` when the bucket is empty.
pub fn check(session: &Session, ctx: &mut Ctx, route_limit: Option<usize>) -> Option<LocalReply> {
    let limiter = ctx.snap.limiters.get(route_limit?)?.clone();
    let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
    let client = peer.map(|p| super::policies::client_address(session, p, ctx).to_string()).unwrap_or_default();
    let authority = super::request::authority(session.req_header());
    let host = conf::matcher::authority_host(&authority);
    let v = limiter.check(&host, &client, tokio::time::Instant::now());
    let headers = if limiter.rule().response_headers {
        vec![
            ("x-ratelimit-limit".to_string(), v.limit.to_string()),
            ("x-ratelimit-remaining".to_string(), v.remaining.to_string()),
            ("x-ratelimit-reset".to_string(), v.reset_secs.to_string()),
        ]
    } else {
        Vec::new()
    };
    if v.allowed {
        ctx.rate_limit_headers = headers;
        return None;
    }
    ctx.denied = Some(LIMITED.to_string());
    let mut headers = headers;
    headers.push(("content-type".into(), "text/plain".into()));
    Some(LocalReply { status: 429, headers, body: Bytes::from_static(LIMITED.as_bytes()) })
}
