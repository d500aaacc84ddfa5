//! Retries, as Envoy's router applies a VirtualService's `retries` (Istio's default policy when the
//! route has none: 2 retries on `connect-failure,refused-stream,unavailable,cancelled,
//! retriable-status-codes`, <https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry>).
//!
//! - Conditions (Envoy's `x-envoy-retry-on` semantics): `connect-failure`; `reset` (the upstream
//!   closed or reset before its response); `reset-before-request` (connecting failed, or the
//!   request could not be written); `refused-stream`; `5xx` (any 5xx, a reset, a connect
//!   failure or a per-try timeout); `gateway-error` (502, 503, 504, a per-try timeout);
//!   `retriable-4xx` (409); `retriable-status-codes`; `envoy-ratelimited`; the gRPC statuses
//!   `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable`.
//! - Each retry goes to another endpoint when there is one (Envoy's `previous_hosts` predicate,
//!   unless `retryIgnorePreviousHosts: false`),
//!   after a fully jittered exponential backoff (base `retries.backoff`, Envoy's 25 ms by default,
//!   capped at 10 times the base).
//! - A retry is only possible while nothing of the response reached the client and the request
//!   body still fits Pingora's retry buffer (64 KiB): a request streamed past it is never resent.

use std::time::Duration;

use pingora::http::ResponseHeader;
use pingora::{Error, ErrorSource, ErrorType};

use super::ctx::Ctx;

/// Istio's default number of retries.
const DEFAULT_ATTEMPTS: u32 = 2;

/// Istio's default conditions.
const DEFAULT_RETRY_ON: [&str; 5] =
    ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"];

/// The most retries of one request: Pingora tries at most 64 times in all (`ServerConf.max_retries`).
const MAX_ATTEMPTS: u32 = 63;

/// Envoy's default backoff base.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

/// The error an attempt ends with when its response is retried (never seen by the client).
pub const RETRY: ErrorType = ErrorType::Custom("retriable upstream response");

/// Whether the route's policy names `condition`.
fn retries_on(ctx: &Ctx, condition: &str) -> bool {
    match ctx.route().and_then(|r| r.retries.as_ref()) {
        Some(p) => p.retry_on.iter().any(|c| c == condition),
        None => DEFAULT_RETRY_ON.contains(&condition),
    }
}

/// The retries the route allows in all.
pub fn attempts(ctx: &Ctx) -> u32 {
    ctx.route().and_then(|r| r.retries.as_ref()).map_or(DEFAULT_ATTEMPTS, |p| p.attempts).min(MAX_ATTEMPTS)
}

/// Whether retries avoid the endpoints already tried (`retryIgnorePreviousHosts`, default true).
pub fn ignore_previous_hosts(ctx: &Ctx) -> bool {
    ctx.route().and_then(|r| r.retries.as_ref()).is_none_or(|p| p.ignore_previous_hosts)
}

/// The route's per-try timeout.
pub fn per_try_timeout(ctx: &Ctx) -> Option<Duration> {
    ctx.route()?.retries.as_ref()?.per_try_timeout.map(|d| d.to_std())
}

/// Takes a retry when one is left and the route's deadline has not passed; records an exhausted
/// policy (Envoy's `URX`).
fn take(ctx: &mut Ctx) -> bool {
    if super::upstream::timed_out(ctx) {
        return false;
    }
    if ctx.retries_left == 0 {
        // Envoy's URX: only a policy that allowed retries can run out of them.
        ctx.retries_exhausted = attempts(ctx) > 0;
        return false;
    }
    // The cluster's `maxRetries` (Envoy's retry circuit breaker): this request's previous retry
    // gives its slot back first; with none free, no retry (Envoy's `upstream_rq_retry_overflow`).
    ctx.retry_slot = None;
    let cluster = ctx.cluster.and_then(|c| ctx.snap.upstreams.get(c));
    if let Some((name, budget)) = cluster.and_then(|u| Some((&u.name, u.retry_budget.as_ref()?))) {
        ctx.retry_slot = budget.acquire();
        if ctx.retry_slot.is_none() {
            tracing::debug!(cluster = %name, "retry not made: maxRetries retries in flight");
            return false;
        }
    }
    ctx.retries_left -= 1;
    true
}

/// A connect failure (TCP or TLS): retried under `connect-failure`, `5xx`, `gateway-error` and
/// `reset`.
pub fn on_connect_failure(ctx: &mut Ctx) -> bool {
    let covered =
        ["connect-failure", "5xx", "gateway-error", "reset", "reset-before-request"].iter().any(|c| retries_on(ctx, c));
    covered && take(ctx)
}

/// An error after the connection was made, before the response started.
pub fn on_error(e: &Error, ctx: &mut Ctx) -> bool {
    if e.etype() == &RETRY {
        return true; // decided (and counted) by `on_response`
    }
    if e.esource() != &ErrorSource::Upstream {
        return false;
    }
    let covered = match e.etype() {
        // A read that hit the stream idle timeout ends the request (Envoy's `SI`), not the try.
        ErrorType::ReadTimedout if ctx.idle_bound => false,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            retries_on(ctx, "5xx") || retries_on(ctx, "gateway-error")
        }
        ErrorType::H2Error => retries_on(ctx, "refused-stream") || retries_on(ctx, "reset") || retries_on(ctx, "5xx"),
        // The request could not be written: reset before it was sent.
        ErrorType::WriteError => {
            retries_on(ctx, "reset") || retries_on(ctx, "5xx") || retries_on(ctx, "reset-before-request")
        }
        ErrorType::ConnectionClosed | ErrorType::ReadError => retries_on(ctx, "reset") || retries_on(ctx, "5xx"),
        _ => false,
    };
    covered && take(ctx)
}

/// `grpc-status`, parsed once (read from every response: here and by the metrics).
pub static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// A response the policy retries (its status, `grpc-status` or `x-envoy-ratelimited`).
fn retriable(resp: &ResponseHeader, ctx: &Ctx) -> bool {
    static RATELIMITED: http::HeaderName = http::HeaderName::from_static("x-envoy-ratelimited");
    let status = resp.status.as_u16();
    let on = |c: &str| retries_on(ctx, c);
    let codes = ctx.route().and_then(|r| r.retries.as_ref()).map_or(&[][..], |p| &p.retriable_status_codes[..]);
    // Looked up once, by a name parsed once: Istio's default policy retries gRPC `cancelled` and
    // `unavailable`, so this runs for every response.
    let grpc = resp.headers.get(&GRPC_STATUS).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u8>().ok());
    let grpc_retried = |code: u8, name: &str| grpc == Some(code) && on(name);
    (resp.status.is_server_error() && on("5xx"))
        || (matches!(status, 502..=504) && on("gateway-error"))
        || (status == 409 && on("retriable-4xx"))
        || (codes.contains(&status) && on("retriable-status-codes"))
        || (on("envoy-ratelimited") && resp.headers.contains_key(&RATELIMITED))
        || grpc_retried(1, "cancelled")
        || grpc_retried(4, "deadline-exceeded")
        || grpc_retried(8, "resource-exhausted")
        || grpc_retried(13, "internal")
        || grpc_retried(14, "unavailable")
}

/// `upstream_response_filter`: `Err` (a retriable error) when this response is to be retried
/// instead of sent; `body_truncated` when the request body no longer fits the retry buffer.
pub fn on_response(resp: &ResponseHeader, ctx: &mut Ctx, body_truncated: bool) -> pingora::Result<()> {
    if resp.status.is_informational() || !retriable(resp, ctx) || body_truncated || !take(ctx) {
        return Ok(());
    }
    let mut e = Error::explain(RETRY, format!("status {}", resp.status.as_u16()));
    e.set_retry(true);
    Err(e)
}

/// The wait before retry number `n` (1-based): fully jittered exponential backoff, as Envoy's.
pub fn backoff(ctx: &Ctx, n: u32) -> Duration {
    let base =
        ctx.route().and_then(|r| r.retries.as_ref()).and_then(|p| p.backoff).map_or(DEFAULT_BACKOFF, |d| d.to_std());
    let ceiling = base.saturating_mul(2u32.saturating_pow(n.saturating_sub(1))).min(base.saturating_mul(10));
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=millis))
}
