//! The per-request context: the snapshot read once in `new_ctx`, and what routing decided.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use conf::table::{ClusterId, Route};

use crate::cluster::InFlight;
use crate::conn::TlsSession;
use crate::error::Outcome;
use crate::snapshot::Snapshot;

/// Where the matched route lives in the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct RouteRef {
    /// Route table index.
    pub config: usize,
    /// Virtual host index.
    pub vhost: usize,
    /// Route index.
    pub route: usize,
}

/// Per-request state. One snapshot per request: routing, upstream choice and header rewriting all
/// read `snap`.
pub struct Ctx {
    /// The configuration this request is served with.
    pub snap: Arc<Snapshot>,
    /// When the request started.
    pub started: Instant,
    /// The Gateway server port the request arrived on (before `--port-map`).
    pub port: u16,
    /// The local address the connection arrived on (selects among listeners bound to addresses).
    pub local_ip: Option<std::net::IpAddr>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The route table of the connection's listener (plaintext) or server (TLS).
    pub route_config: Option<usize>,
    /// The TLS connection context, for requests that came over TLS.
    pub tls: Option<Arc<TlsSession>>,
    /// What the request checks learned of its head.
    pub head: super::request::Head,
    /// The matched route.
    pub route: Option<RouteRef>,
    /// The chosen cluster.
    pub cluster: Option<ClusterId>,
    /// The endpoint of the current attempt.
    pub endpoint: Option<InFlight>,
    /// Endpoints already tried (retries prefer others).
    pub tried: smallvec::SmallVec<[SocketAddr; 2]>,
    /// Retries left (the route's `retries`, else Istio's default policy).
    pub retries_left: u32,
    /// A retriable failure found no retry left (Envoy's `URX`).
    pub retries_exhausted: bool,
    /// Why the request ended without an upstream response, when it did.
    pub outcome: Option<Outcome>,
    /// Why a policy denied the request (Envoy's `%RESPONSE_CODE_DETAILS%`, such as
    /// `rbac_access_denied_matched_policy[ns[default]-policy[deny]-rule[0]]`).
    pub denied: Option<String>,
    /// `x-ratelimit-*` headers for the response, when the route's rate limit asks for them.
    pub rate_limit_headers: Vec<(String, String)>,
    /// The request id sent upstream.
    pub request_id: Option<String>,
    /// The route's cache rule (an index into `table.caches`), when the cache is on for the
    /// request.
    pub cache: Option<usize>,
    /// What the cache did (`HIT`, `MISS`, ...), once the response is known.
    pub cache_status: Option<&'static str>,
    /// The route's fault delayed the request (Envoy's `DI`).
    pub fault_delayed: bool,
    /// The `Origin` of an allowed cross-origin request, echoed in the response.
    pub cors_origin: Option<String>,
    /// When the route's `timeout` expires.
    pub deadline: Option<Instant>,
    /// The copy of the request for the route's mirrors.
    pub mirror: super::mirror::Copy,
    /// The consistent-hash key of the request (computed once, at the first attempt).
    pub hash_key: Option<u64>,
    /// A `Set-Cookie` for a consistent-hash cookie the gateway made.
    pub hash_cookie: Option<String>,
    /// The current attempt is the last request its upstream connection carries (connection-pool
    /// limits): it is sent with `Connection: close`.
    pub last_on_connection: bool,
    /// The cluster's `maxRetries` slot held by the current retry.
    pub retry_slot: Option<crate::cluster::pool::RetrySlot>,
    /// `--stream-idle-timeout`.
    pub stream_idle_timeout: std::time::Duration,
    /// The current attempt's upstream reads are bounded by the stream idle timeout rather than
    /// by the route's timeout or per-try timeout: a read timeout is `SI`, not `UT`.
    pub idle_bound: bool,
}

impl Ctx {
    /// A context for a request served with `snap`.
    pub fn new(snap: Arc<Snapshot>) -> Self {
        Ctx {
            snap,
            started: Instant::now(),
            port: 0,
            local_ip: None,
            scheme: "http",
            route_config: None,
            tls: None,
            head: super::request::Head::default(),
            route: None,
            cluster: None,
            endpoint: None,
            tried: smallvec::SmallVec::new(),
            retries_left: 0,
            retries_exhausted: false,
            outcome: None,
            denied: None,
            rate_limit_headers: Vec::new(),
            request_id: None,
            cache: None,
            cache_status: None,
            fault_delayed: false,
            cors_origin: None,
            deadline: None,
            mirror: super::mirror::Copy::default(),
            hash_key: None,
            hash_cookie: None,
            last_on_connection: false,
            retry_slot: None,
            stream_idle_timeout: crate::server::DEFAULT_STREAM_IDLE_TIMEOUT,
            idle_bound: false,
        }
    }

    /// The matched route.
    pub fn route(&self) -> Option<&Route> {
        let r = self.route?;
        self.snap.table.route_configs.get(r.config)?.virtual_hosts.get(r.vhost)?.routes.get(r.route)
    }
}
