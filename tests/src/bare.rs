//! The benchmark's floor: a Pingora proxy with Pingora's own listener and nothing else, every
//! request sent to one upstream over pooled HTTP/1.1. Two binaries run it, built with the
//! workspace's release profile as Pylon is and differing only in their allocator:
//! `bare-pingora` (jemalloc with Pylon's settings, which `.cargo/config.toml` gives every binary
//! that links it: the floor Pylon is measured against) and `bare-pingora-glibc` (Pingora's
//! default, the system allocator: what the allocator and its settings are worth on their own).
//!
//! A third, `bare-pingora-istio`, adds to the floor only the work Istio's gateway does on every
//! request with its defaults, done the cheapest way Pylon found (see [`IstioWork`]): what any Istio
//! gateway on Pingora pays before its own costs. Pylon measured against it is Pylon's own overhead;
//! it measured against the floor is the price of Istio's behaviour.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use async_trait::async_trait;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;

use gateway::edge::forwarded;
use gateway::proxy::request;
use gateway::proxy::X_ENVOY_ATTEMPT_COUNT;
use gateway::telemetry::metrics::{ENVOY_BUCKETS, LABELS};
use gateway::telemetry::record::head_bytes;
use http::HeaderValue;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// The floor plus what Istio's gateway does on every request with its defaults, and nothing more:
/// no routing, no path normalization, no retries, no policy, no checks on the request. From Envoy as
/// Istio configures a gateway: the connection manager's `use_remote_address: true` and
/// `generate_request_id: true` (the forwarding headers and a request id); the virtual hosts'
/// `include_request_attempt_count`; the clusters' 1-hour idle timeout of pooled upstream connections
/// (DestinationRule `http.idleTimeout`); Envoy's own 5-minute stream idle timeout; `server:
/// istio-envoy`. And Istio's standard metrics (<https://istio.io/latest/docs/reference/config/metrics/>): a counter and three
/// histograms per request, with Istio's labels and Envoy's buckets, on a series resolved once here
/// (one route, one upstream, one code): no lookup, which no real gateway can do.
///
/// The kept-alive client connection's idle timeout stays the floor's: none (Pingora's proxy waits
/// for a next HTTP/1.1 request without a bound, `HttpSession::respect_keepalive`). Istio's 1 hour
/// would put a timer on every wait for a next request, 1.1k instructions a request (measured: 78.2k
/// against 77.1k, `scripts/bench profile`), which Pylon's parked connections keep without a timer.
struct IstioWork {
    upstream: SocketAddr,
    requests: prometheus::IntCounter,
    duration: prometheus::Histogram,
    request_bytes: prometheus::Histogram,
    response_bytes: prometheus::Histogram,
}

impl IstioWork {
    fn new(upstream: SocketAddr) -> Self {
        // The values a request to the one route carries, for Istio's 25 labels.
        let values = LABELS.map(|name| match name {
            "reporter" => "source",
            "destination_service" | "destination_service_name" => "a.bench.internal",
            "request_protocol" => "http",
            "response_code" => "200",
            "response_flags" => "-",
            _ => "unknown",
        });
        let counter =
            prometheus::IntCounterVec::new(prometheus::Opts::new("istio_requests_total", "requests"), &LABELS);
        let histogram = |name: &str| {
            let opts = prometheus::HistogramOpts::new(name, name).buckets(ENVOY_BUCKETS.to_vec());
            prometheus::HistogramVec::new(opts, &LABELS).map(|h| h.with_label_values(&values))
        };
        let built = counter.map(|c| c.with_label_values(&values)).and_then(|requests| {
            Ok(IstioWork {
                upstream,
                requests,
                duration: histogram("istio_request_duration_milliseconds")?,
                request_bytes: histogram("istio_request_bytes")?,
                response_bytes: histogram("istio_response_bytes")?,
            })
        });
        built.unwrap_or_else(|e| panic!("the metrics' fixed definitions are valid: {e}"))
    }
}

#[async_trait]
impl ProxyHttp for IstioWork {
    /// When the request started.
    type CTX = Option<Instant>;

    fn new_ctx(&self) -> Self::CTX {
        None
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> pingora::Result<bool> {
        *ctx = Some(Instant::now());
        // Envoy removes its control headers from every external request.
        forwarded::strip_internal(session.req_header_mut());
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> pingora::Result<Box<HttpPeer>> {
        let mut peer = Box::new(HttpPeer::new(self.upstream, false, String::new()));
        peer.options.read_timeout = Some(gateway::server::DEFAULT_STREAM_IDLE_TIMEOUT);
        peer.options.idle_timeout = Some(gateway::cluster::DEFAULT_HTTP_IDLE_TIMEOUT);
        Ok(peer)
    }

    /// The gateway's request headers, set the cheapest way Pylon found (its own functions: names
    /// parsed once, one map reserved ahead, addresses written without `fmt`), so that this
    /// reference is not slowed by a plainer way of doing the same.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora::http::RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| request::ip_text(a.ip()));
        let origin = forwarded::Origin {
            addresses: peer.map(|p| (p.clone(), p)),
            scheme: "http",
            trusted_hop: false,
            xfcc: conf::table::ForwardClientCert::SanitizeSet,
        };
        request::with_header_map(upstream, |h| {
            forwarded::forwarding_headers(h, origin, None, None)?;
            h.insert(&X_ENVOY_ATTEMPT_COUNT, HeaderValue::from_static("1"));
            Ok(())
        })
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut pingora::http::ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        upstream.insert_header(http::header::SERVER, HeaderValue::from_static("istio-envoy"))
    }

    /// Istio's sizes count the head and the body, as Pylon counts them.
    async fn logging(&self, session: &mut Session, _e: Option<&pingora::Error>, ctx: &mut Self::CTX) {
        let head_in = head_bytes(&session.req_header().headers);
        let head_out = session.response_written().map_or(0, |r| head_bytes(&r.headers));
        self.requests.inc();
        self.duration.observe(ctx.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0));
        self.request_bytes.observe((head_in + session.body_bytes_read()) as f64);
        self.response_bytes.observe((head_out + session.body_bytes_sent()) as f64);
    }
}

/// `NAME LISTEN UPSTREAM [THREADS]`: serves until killed, as the floor ([`Bare`]).
pub fn main() -> ExitCode {
    serve(|upstream| Bare { upstream }, false)
}

/// As [`main`], with Istio's per-request work ([`IstioWork`]). Its stream idle timeout, on every
/// upstream read, goes on Tokio's timer wheel rather than Pingora's fast timer, as Pylon puts its
/// timeouts (`gateway::server::start`): cheaper for timers that almost never fire.
pub fn main_istio() -> ExitCode {
    serve(IstioWork::new, true)
}

/// Serves PROXY with Pingora's own server; TOKIO_TIMERS puts Pingora's timeouts of a second or
/// more on Tokio's timer (Pingora's default: those over 15 minutes).
fn serve<P>(proxy: impl FnOnce(SocketAddr) -> P, tokio_timers: bool) -> ExitCode
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(Ok(upstream))) = (args.get(1), args.get(2).map(|u| u.parse::<SocketAddr>())) else {
        eprintln!("usage: {} LISTEN UPSTREAM [THREADS]", args.first().map_or("bare-pingora", String::as_str));
        return ExitCode::from(2);
    };
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1);
    let mut conf = ServerConf { threads, grace_period_seconds: Some(0), ..Default::default() };
    if tokio_timers {
        conf.fast_timeout_to_tokio_threshold_seconds = Some(0);
    }
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy(upstream));
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever()
}
