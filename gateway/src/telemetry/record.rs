//! What one finished request reports: the metric labels and the access log line, read from the
//! Pingora session and the request context.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use pingora::proxy::Session;

use super::access_log::Entry;
use super::metrics::{Destination, HttpRequest};
use super::series::{Choice, Recent};
use super::Telemetry;
use crate::error::Outcome;
use crate::proxy::ctx::Ctx;

thread_local! {
    /// The series this worker thread counted last.
    static RECENT: RefCell<Recent<crate::snapshot::Snapshot>> = RefCell::new(Recent::default());
}

/// Envoy's `%RESPONSE_CODE_DETAILS%` for how the request ended.
fn details(ctx: &Ctx, code: u16) -> &str {
    if let Some(denied) = &ctx.denied {
        return denied;
    }
    match ctx.outcome {
        Some(Outcome::NoRoute) => "route_not_found",
        Some(Outcome::NoCluster | Outcome::BackendNotFound) => "cluster_not_found",
        Some(Outcome::NoHealthyUpstream) => "no_healthy_upstream",
        Some(Outcome::ConnectFailure) => "upstream_reset_before_response_started{connection_failure}",
        Some(Outcome::UpstreamReset) => "upstream_reset_before_response_started{connection_termination}",
        Some(Outcome::UpstreamTls) => "upstream_reset_before_response_started{connection_failure,TLS_error}",
        Some(Outcome::BadRequest) => "http1.codec_error",
        Some(Outcome::HeadersTooLarge) => "request_headers_too_large",
        Some(Outcome::Timeout) => "upstream_response_timeout",
        Some(Outcome::StreamIdle) => "stream_idle_timeout",
        Some(Outcome::UriTooLong) => "uri_too_long",
        Some(Outcome::Overflow) => "upstream_reset_before_response_started{overflow}",
        Some(Outcome::UpstreamProtocol) => "upstream_reset_before_response_started{protocol_error}",
        None if ctx.cluster.is_some() && code != 0 => "via_upstream",
        None if code != 0 => "direct_response",
        None => "downstream_remote_disconnect",
    }
}

/// Envoy's `%RESPONSE_FLAGS%`: comma-separated, `-` for none. An external authorizer's denial is
/// UAEX; an RBAC or JWT denial has no flag.
fn flags(ctx: &Ctx) -> &'static str {
    let ended = match &ctx.denied {
        Some(d) if d.starts_with("ext_authz") => Some("UAEX"),
        Some(d) if d == crate::proxy::ratelimit::LIMITED => Some("RL"),
        Some(d) if d == crate::proxy::fault::ABORT_DETAILS => Some("FI"),
        _ => ctx.outcome.map(Outcome::flag),
    };
    match (ctx.fault_delayed, ended, ctx.retries_exhausted) {
        (true, Some(f), _) => with_delay(f),
        (true, None, _) => "DI",
        (false, Some("UF"), true) => "UF,URX",
        (false, Some("UC"), true) => "UC,URX",
        (false, Some(f), _) => f,
        (false, None, true) => "URX",
        (false, None, false) => "-",
    }
}

/// `f` after `DI` (a delayed request that then ended with `f`). The metrics keep flags as static
/// strings, so the pairs are spelled out.
fn with_delay(f: &str) -> &'static str {
    match f {
        "FI" => "DI,FI",
        "UT" => "DI,UT",
        "UF" => "DI,UF",
        "UC" => "DI,UC",
        "UH" => "DI,UH",
        "NC" => "DI,NC",
        "NR" => "DI,NR",
        "RL" => "DI,RL",
        "UAEX" => "DI,UAEX",
        "DPE" => "DI,DPE",
        "UO" => "DI,UO",
        _ => "DI",
    }
}

fn header(session: &Session, name: impl http::header::AsHeaderName) -> &str {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The size of a header block as Istio's `request_bytes` and `response_bytes` count it.
pub fn head_bytes(headers: &http::HeaderMap) -> usize {
    headers.iter().map(|(k, v)| header_line_bytes(k, v)).sum()
}

/// One header's share of [`head_bytes`]: its `name: value` line with the CRLF.
#[inline]
pub fn header_line_bytes(name: &http::HeaderName, value: &http::HeaderValue) -> usize {
    name.as_str().len() + value.len() + 4
}

/// Reports the request `session` served with `ctx`: metrics always, the access log when on.
pub fn request(t: &Telemetry, session: &Session, ctx: &Ctx) {
    let resp = session.response_written();
    let code = resp.map_or(0, |r| r.status.as_u16());
    let grpc = ctx.head.grpc;
    // Istio's `grpc_response_status` is for gRPC requests only.
    let grpc_status = resp
        .filter(|_| grpc)
        .and_then(|r| r.headers.get(&crate::proxy::retry::GRPC_STATUS))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let flags = flags(ctx);
    let elapsed = ctx.started.elapsed();
    // The request head as it arrived (counted by the request checks).
    let head_in = ctx.head.bytes;
    let head_out = resp.map_or(0, |r| head_bytes(&r.headers));
    let server = server_id(ctx);
    let upstream = ctx.cluster.and_then(|c| ctx.snap.upstreams.get(c));
    let route = ctx.route().map_or("", |r| if r.name.is_empty() { r.origin.as_str() } else { r.name.as_str() });
    let (gateway, server_name) = server
        .and_then(|id| ctx.snap.table.servers.get(id))
        .map_or(("unknown", "unknown"), |s| (s.gateway.as_str(), s.port_name.as_str()));
    let destination = match upstream {
        Some(u) => &u.destination,
        None => Destination::unknown(),
    };
    let counted = HttpRequest {
        destination,
        protocol: if grpc { "grpc" } else { "http" },
        code,
        grpc_status,
        flags,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        request_bytes: (head_in + session.body_bytes_read()) as u64,
        response_bytes: (head_out + session.body_bytes_sent()) as u64,
        gateway,
        server: server_name,
        route,
    };
    let choice = Choice {
        metrics: std::ptr::from_ref(&t.metrics) as usize,
        route: ctx.route.map(|r| (r.config, r.vhost, r.route)),
        cluster: ctx.cluster,
        server,
        code,
        grpc_status,
        flags: Choice::flags_of(flags),
        grpc,
    };
    RECENT.with(|recent| Recent::count(recent, choice, &ctx.snap, &counted, || t.metrics.http_series(&counted)));
    let cache_rule = ctx.cache.and_then(|i| ctx.snap.table.caches.get(i));
    if let (Some(rule), Some(status)) = (cache_rule, ctx.cache_status) {
        t.metrics.cache_request(&rule.policy, status);
    }
    if let Some(log) = &t.access_log {
        log.log(&entry(session, ctx, code, flags, elapsed));
    }
}

/// The server a request was served by (the Gateway resource and `port.name` labels): the TLS
/// server chosen by SNI, else the first server of the port's route table (merged plaintext servers
/// share it).
fn server_id(ctx: &Ctx) -> Option<usize> {
    match &ctx.tls {
        Some(t) if t.generation == ctx.snap.generation => Some(t.server),
        _ => ctx
            .route_config
            .and_then(|rc| ctx.snap.table.route_configs.get(rc))
            .and_then(|rc| rc.servers.first().copied()),
    }
}

fn entry(session: &Session, ctx: &Ctx, code: u16, flags: &str, elapsed: Duration) -> Entry {
    let req = session.req_header();
    let addr = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let upstream = ctx.cluster.and_then(|c| ctx.snap.upstreams.get(c));
    Entry {
        start: SystemTime::now().checked_sub(elapsed),
        method: req.method.to_string(),
        path: req.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        protocol: if session.as_downstream().is_http2() { "HTTP/2".into() } else { format!("{:?}", req.version) },
        code,
        flags: flags.to_string(),
        details: details(ctx, code).to_string(),
        transport_failure: String::new(),
        bytes_received: session.body_bytes_read() as u64,
        bytes_sent: session.body_bytes_sent() as u64,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        upstream_service_time: None,
        forwarded_for: header(session, "x-forwarded-for").to_string(),
        user_agent: header(session, http::header::USER_AGENT).to_string(),
        request_id: ctx.request_id.clone().unwrap_or_default(),
        authority: crate::proxy::request::authority(req).into_owned(),
        upstream_host: ctx.tried.last().map(|a| a.to_string()).unwrap_or_default(),
        upstream_cluster: upstream.map(|u| u.name.clone()).unwrap_or_default(),
        downstream_local: addr(session.server_addr()),
        downstream_remote: addr(session.client_addr()),
        sni: ctx.tls.as_ref().and_then(|t| t.sni.clone()).unwrap_or_default(),
        route_name: ctx.route().map(|r| r.name.clone()).unwrap_or_default(),
    }
}
