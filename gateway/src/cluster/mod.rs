//! Clusters at run time: endpoints (static, or kept up to date by DNS in the background) and
//! load balancing. Nothing here blocks or resolves names on the request path.

pub mod dns;
pub mod hash;
pub mod outlier;
pub mod pool;
pub mod registry;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use conf::raw::{Resolution, SimpleLb};
use conf::table::Cluster;
use pingora::connectors::l4::BindTo;

use crate::error::Outcome;
use outlier::{Attempt, OutlierPolicy};

/// The endpoints a pick chooses among: inline up to eight, so that picking for a request to a
/// small cluster allocates nothing.
type Candidates<'a> = smallvec::SmallVec<[&'a Arc<Endpoint>; 8]>;

/// A DestinationRule duration (`30s`, `1h`) as a `Duration`; `None` when absent or malformed
/// (validation has reported it).
pub(crate) fn duration(d: Option<&String>) -> Option<Duration> {
    d.and_then(|d| conf::model::Duration::parse(d).ok()).map(conf::model::Duration::to_std)
}

/// Istio's default connect timeout (meshConfig.connectTimeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Istio's default idle timeout of upstream HTTP connections (`connectionPool.http.idleTimeout`).
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Streams per upstream HTTP/2 connection when `http.maxConcurrentStreams` is not set (Envoy's
/// default is unlimited, bounded by the server's `SETTINGS_MAX_CONCURRENT_STREAMS`; Pingora needs a
/// number to decide when to open another connection).
pub const DEFAULT_H2_STREAMS: usize = 100;

/// One resolved endpoint and its in-flight request count (for least-request balancing).
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Load-balancing weight.
    pub weight: u32,
    active: AtomicUsize,
    /// Error streaks and ejection (outlier detection).
    pub health: outlier::Health,
    /// When it joined (slow start measures from here).
    pub created: std::time::Instant,
    /// A mesh workload: a cluster under automatic mTLS reaches it with ISTIO_MUTUAL.
    pub istio_mtls: bool,
}

impl Endpoint {
    /// An endpoint with no requests in flight.
    pub fn new(addr: SocketAddr, weight: u32) -> Arc<Self> {
        Endpoint::of(addr, weight, false)
    }

    /// An endpoint with no requests in flight; `istio_mtls`: a mesh workload.
    pub fn of(addr: SocketAddr, weight: u32, istio_mtls: bool) -> Arc<Self> {
        Arc::new(Endpoint {
            addr,
            istio_mtls,
            weight: weight.max(1),
            active: AtomicUsize::new(0),
            health: outlier::Health::default(),
            created: std::time::Instant::now(),
        })
    }

    /// Requests in flight.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// Counts a request against an endpoint while it lives.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl InFlight {
    fn new(ep: Arc<Endpoint>) -> Self {
        ep.active.fetch_add(1, Ordering::Relaxed);
        InFlight(ep)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Load-balancing algorithm (DestinationRule `loadBalancer.simple`; Istio's default is
/// LEAST_REQUEST, power of two choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    /// Power of two random choices on in-flight requests.
    LeastRequest,
    /// In order.
    RoundRobin,
    /// Uniformly random (weighted).
    Random,
}

/// A cluster ready to pick endpoints.
#[derive(Debug)]
pub struct Upstream {
    /// `outbound|port|subset|host`.
    pub name: String,
    /// The destination host (SNI and certificate checks for TCP origination).
    pub host: String,
    /// Why requests cannot be routed here (503 NC), if so.
    pub not_found: Option<String>,
    /// The current endpoints; swapped whole when DNS answers change.
    pub endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// How endpoints are found (STATIC, DNS, ...).
    pub resolution: Resolution,
    /// The algorithm.
    pub balancer: Balancer,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Speak HTTP/2 to the endpoints (h2c with prior knowledge, or ALPN h2 over TLS): an
    /// `http2`/`grpc` port, or `h2UpgradePolicy: UPGRADE`.
    pub http2: bool,
    /// `useClientProtocol`: HTTP/2 to the endpoints when the client spoke HTTP/2.
    pub use_client_protocol: bool,
    /// How long a pooled upstream connection may stay unused (`http.idleTimeout`; Istio's 1 h).
    pub http_idle_timeout: Duration,
    /// `http.maxRequestsPerConnection` and `tcp.maxConnectionDuration`.
    pub connection_limits: Option<pool::ConnectionLimits>,
    /// `http.maxRetries`: the retries in flight to the cluster.
    pub retry_budget: Option<pool::RetryBudget>,
    /// `tcp.tcpKeepalive` for every upstream socket.
    pub tcp_keepalive: Option<pingora::protocols::TcpKeepalive>,
    /// Where connections are made from (GatewayPolicy `upstreamBind`), with the pool key that
    /// keeps them apart from connections to the same endpoint made from elsewhere.
    pub source: Option<(BindTo, u64)>,
    /// `http.maxConcurrentStreams`: streams per HTTP/2 connection (a new connection past them).
    pub max_h2_streams: usize,
    /// TCP idle timeout (`connectionPool.tcp.idleTimeout`); `None` = the default.
    pub idle_timeout: Option<Duration>,
    /// The `destination_*` metric labels.
    pub destination: crate::telemetry::metrics::Destination,
    /// Outlier detection, when the DestinationRule asks for it.
    pub outlier: Option<OutlierPolicy>,
    /// The most requests in flight to the cluster (`connectionPool` limits); more get 503 UO.
    pub max_active: Option<usize>,
    /// `tcp.maxConnections`: the most connections of TCP routes to the cluster (Envoy's
    /// `max_connections` circuit breaker, which its TCP proxy checks alone).
    pub max_connections: Option<usize>,
    /// Consistent-hash balancing, when the DestinationRule asks for it.
    pub hash: Option<hash::ConsistentHash>,
    /// Slow start for endpoints that join after the cluster was made (`loadBalancer.warmup`).
    pub warmup: Option<Warmup>,
    /// When the cluster was made: endpoints present then are not warmed up.
    pub created: std::time::Instant,
    next: AtomicUsize,
    /// Smooth weighted round robin: each endpoint's current weight, by address.
    rr_weights: Mutex<Vec<(SocketAddr, i64)>>,
}

/// Pingora's bind setting for a cluster's source, and a pool key for it. Connections never fall
/// back to a port outside the range: a firewall would drop them.
fn source(s: &conf::table::SourceBind) -> (BindTo, u64) {
    let mut bind = BindTo::default();
    bind.addr = Some(SocketAddr::new(s.address, 0));
    if let Err(e) = bind.set_port_range(s.ports) {
        // Validation only lets valid ranges through.
        tracing::warn!(error = %e, "source port range not used");
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&(s.address, s.ports), &mut h);
    (bind, std::hash::Hasher::finish(&h))
}

impl Upstream {
    /// Makes `peer`'s connections from the cluster's source address, if it has one, in a pool of
    /// their own: Pingora pools connections by destination (and `group_key`), not by source.
    pub fn bind_source(&self, peer: &mut pingora::upstreams::peer::HttpPeer) {
        if let Some((bind, key)) = &self.source {
            peer.options.bind_to = Some(bind.clone());
            peer.group_key ^= key;
        }
    }

    /// The run-time form of a compiled cluster; DNS names are resolved later by [`crate::dns`].
    pub fn new(c: &Cluster) -> Self {
        let (not_found, resolution, http2, endpoints) = match &c.service {
            Err(why) => (Some(why.clone()), Resolution::None, false, Vec::new()),
            Ok(s) => {
                let eps = s
                    .endpoints
                    .iter()
                    .filter_map(|e| {
                        Some(Endpoint::of(SocketAddr::new(e.address.parse().ok()?, e.port), e.weight, e.istio_mtls))
                    })
                    .collect();
                (None, s.resolution, s.protocol.is_some_and(conf::model::Protocol::is_http2), eps)
            }
        };
        let lb = c.policy.load_balancer.as_ref().and_then(|lb| lb.simple);
        let balancer = match lb {
            Some(SimpleLb::RoundRobin) => Balancer::RoundRobin,
            Some(SimpleLb::Random) => Balancer::Random,
            _ => Balancer::LeastRequest,
        };
        let pool = c.policy.connection_pool.as_ref();
        let timeouts = pool::Timeouts::of(pool);
        let pool_http = pool.and_then(|p| p.http.as_ref());
        let upgrade = pool_http.and_then(|h| h.h2_upgrade_policy) == Some(conf::raw::H2UpgradePolicy::Upgrade);
        let use_client_protocol = pool_http.and_then(|h| h.use_client_protocol) == Some(true);
        Upstream {
            name: c.name.clone(),
            host: c.host.clone(),
            not_found,
            endpoints: ArcSwap::from_pointee(endpoints),
            resolution,
            balancer,
            connect_timeout: timeouts.connect,
            http2: http2 || (upgrade && !use_client_protocol),
            use_client_protocol,
            http_idle_timeout: timeouts.http_idle,
            connection_limits: pool.and_then(pool::ConnectionLimits::of),
            retry_budget: pool.and_then(pool::RetryBudget::of),
            tcp_keepalive: pool.and_then(pool::tcp_keepalive),
            source: c.source.as_ref().map(source),
            max_h2_streams: pool.and_then(pool::max_concurrent_streams).unwrap_or(DEFAULT_H2_STREAMS),
            idle_timeout: timeouts.tcp_idle,
            destination: crate::telemetry::metrics::Destination::of(&c.host, c.subset.as_deref()),
            outlier: c.policy.outlier_detection.as_ref().map(OutlierPolicy::of),
            max_active: pool::max_active(pool),
            max_connections: pool.and_then(pool::max_connections),
            hash: c
                .policy
                .load_balancer
                .as_ref()
                .and_then(|lb| lb.consistent_hash.as_ref())
                .and_then(hash::ConsistentHash::of),
            warmup: c.policy.load_balancer.as_ref().and_then(Warmup::of),
            created: std::time::Instant::now(),
            next: AtomicUsize::new(0),
            rr_weights: Mutex::new(Vec::new()),
        }
    }

    /// Why this cluster cannot take a request now (503 NC, UH), if so.
    pub fn refusal(&self) -> Option<Outcome> {
        if self.not_found.is_some() {
            Some(Outcome::NoCluster)
        } else if self.endpoints.load().is_empty() {
            Some(Outcome::NoHealthyUpstream)
        } else {
            None
        }
    }

    /// Picks an endpoint, avoiding `tried` when another one is available (Istio's retry host
    /// predicate `previous_hosts`) and ejected ones (outlier detection). `None` when there is no
    /// endpoint (503 UH).
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<InFlight> {
        self.pick_for(tried, None)
    }

    /// [`Self::pick`], by the request's hash key when the cluster balances by consistent hash
    /// (a retry takes the next endpoint on the ring).
    pub fn pick_for(&self, tried: &[SocketAddr], key: Option<u64>) -> Option<InFlight> {
        let all = self.endpoints.load();
        let available = self.available(&all);
        let candidates = if tried.is_empty() {
            available
        } else {
            let fresh: Candidates<'_> = available.iter().copied().filter(|e| !tried.contains(&e.addr)).collect();
            if fresh.is_empty() {
                available
            } else {
                fresh
            }
        };
        if let (Some(ring), Some(key)) = (&self.hash, key) {
            return ring.pick(key, &all, &candidates).map(|e| InFlight::new(e.clone()));
        }
        let chosen = match candidates.len() {
            0 => return None,
            1 => candidates[0],
            n => self.choose(&candidates, n),
        };
        Some(InFlight::new(chosen.clone()))
    }

    /// The endpoints not ejected; all of them below `minHealthPercent` available (panic mode).
    fn available<'a>(&self, all: &'a [Arc<Endpoint>]) -> Candidates<'a> {
        let Some(policy) = &self.outlier else { return all.iter().collect() };
        let live: Candidates<'a> = all.iter().filter(|e| !e.health.ejected()).collect();
        let panic = live.len() * 100 < policy.min_health_percent as usize * all.len();
        if panic {
            all.iter().collect()
        } else {
            live
        }
    }

    /// Counts how an attempt to `ep` ended (outlier detection), ejecting it when a streak trips
    /// and fewer than `maxEjectionPercent` of the endpoints are out.
    pub fn report(&self, ep: &Endpoint, attempt: Attempt) {
        let Some(policy) = &self.outlier else { return };
        if !ep.health.record(policy, attempt) {
            return;
        }
        let all = self.endpoints.load();
        let out = all.iter().filter(|e| e.health.ejected()).count();
        if out < outlier::max_ejected(policy, all.len()) {
            ep.health.eject(policy);
            tracing::info!(cluster = %self.name, endpoint = %ep.addr, "endpoint ejected (outlier detection)");
        }
    }

    /// True when the cluster has as many requests in flight as its connection pool allows.
    pub fn overflowing(&self) -> bool {
        self.max_active.is_some_and(|max| self.active() >= max)
    }

    /// True when TCP routes have as many connections open to the cluster as `tcp.maxConnections`.
    pub fn connections_full(&self) -> bool {
        self.max_connections.is_some_and(|max| self.active() >= max)
    }

    fn active(&self) -> usize {
        self.endpoints.load().iter().map(|e| e.active()).sum()
    }

    /// Every policy honours endpoint weights (Envoy: weighted round robin, weighted least request,
    /// weighted random).
    fn choose<'a>(&self, c: &[&'a Arc<Endpoint>], n: usize) -> &'a Arc<Endpoint> {
        if let Some(w) = &self.warmup {
            let factors: Vec<f64> = c.iter().map(|e| w.factor(e, self.created)).collect();
            if factors.iter().any(|f| *f < 1.0) {
                return self.warming(c, &factors);
            }
        }
        let weighted = c.iter().any(|e| e.weight != c[0].weight);
        match self.balancer {
            Balancer::RoundRobin if weighted => self.smooth_round_robin(c),
            Balancer::RoundRobin => c[self.next.fetch_add(1, Ordering::Relaxed) % n],
            Balancer::Random if weighted => weighted_random(c),
            Balancer::Random => c[fastrand::usize(..n)],
            Balancer::LeastRequest => {
                // Two choices, drawn by weight; the one with fewer requests per unit of weight.
                let pick = |_| if weighted { weighted_random(c) } else { c[fastrand::usize(..n)] };
                let (a, b) = (pick(0), pick(1));
                let load = |e: &Endpoint| (e.active() as u64 + 1) * 1_000 / u64::from(e.weight);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// While endpoints warm up: weighted random by their scaled weights, or for least request
    /// the better of two such draws (Envoy scales the weights the same way in its schedulers).
    fn warming<'a>(&self, c: &[&'a Arc<Endpoint>], factors: &[f64]) -> &'a Arc<Endpoint> {
        let weights: Vec<f64> = c.iter().zip(factors).map(|(e, f)| f64::from(e.weight) * f).collect();
        let total: f64 = weights.iter().sum();
        let draw = || {
            let mut point = fastrand::f64() * total;
            for (i, w) in weights.iter().enumerate() {
                if point < *w {
                    return i;
                }
                point -= w;
            }
            c.len() - 1
        };
        let a = draw();
        if self.balancer != Balancer::LeastRequest {
            return c[a];
        }
        let b = draw();
        let load = |i: usize| (c[i].active() as f64 + 1.0) / weights[i].max(f64::MIN_POSITIVE);
        if load(b) < load(a) {
            c[b]
        } else {
            c[a]
        }
    }

    /// nginx's smooth weighted round robin: each endpoint gains its weight, the highest is chosen
    /// and loses the total, so weights 5:1:1 give a, a, b, a, c, a, a (interleaved, not in runs).
    fn smooth_round_robin<'a>(&self, c: &[&'a Arc<Endpoint>]) -> &'a Arc<Endpoint> {
        // The state is kept per address over every endpoint seen, so a retry or an ejection (a
        // smaller candidate set) does not reset the others' turns.
        let mut current = self.rr_weights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let all = self.endpoints.load();
        current.retain(|(addr, _)| all.iter().any(|e| e.addr == *addr));
        for e in c {
            if !current.iter().any(|(a, _)| *a == e.addr) {
                current.push((e.addr, 0));
            }
        }
        let total: i64 = c.iter().map(|e| i64::from(e.weight)).sum();
        let mut best: Option<(usize, i64)> = None;
        for (i, e) in c.iter().enumerate() {
            if let Some(slot) = current.iter_mut().find(|(a, _)| *a == e.addr) {
                slot.1 += i64::from(e.weight);
                if best.is_none_or(|(_, w)| slot.1 > w) {
                    best = Some((i, slot.1));
                }
            }
        }
        let chosen = best.map_or(0, |(i, _)| i);
        if let Some(slot) = current.iter_mut().find(|(a, _)| *a == c[chosen].addr) {
            slot.1 -= total;
        }
        c[chosen]
    }
}

/// Slow start (DestinationRule `loadBalancer.warmup`, or the older `warmupDurationSecs`), as
/// Envoy's: an endpoint that joins a running cluster (a DNS answer adds it) gets its weight times
/// `max(minimumPercent, (age / duration) ^ (1 / aggression))` until `duration` has passed. The
/// endpoints a cluster starts with (static ones, or its first DNS answer) are not warmed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Warmup {
    /// How long an endpoint warms up.
    pub duration: Duration,
    /// The share of its weight it starts with (default 10%).
    pub minimum: f64,
    /// The curve (default 1: linear).
    pub aggression: f64,
}

impl Warmup {
    fn of(lb: &conf::raw::LoadBalancerSettings) -> Option<Self> {
        let (duration, minimum, aggression) = match (&lb.warmup, &lb.warmup_duration_secs) {
            (Some(w), _) => (duration(w.duration.as_ref())?, w.minimum_percent, w.aggression),
            (None, Some(d)) => (duration(Some(d))?, None, None),
            (None, None) => return None,
        };
        let minimum = minimum.unwrap_or(10.0).clamp(0.0, 100.0) / 100.0;
        let aggression = aggression.filter(|a| *a > 0.0).unwrap_or(1.0);
        (!duration.is_zero()).then_some(Warmup { duration, minimum, aggression })
    }

    /// The share of its weight `e` gets now (1 once warm, or when it was there from the start).
    fn factor(&self, e: &Endpoint, cluster_created: std::time::Instant) -> f64 {
        // Endpoints of the cluster's first DNS answer (bounded to 5 s) are there from the start.
        if e.created <= cluster_created + Duration::from_secs(5) {
            return 1.0;
        }
        let age = e.created.elapsed().as_secs_f64() / self.duration.as_secs_f64();
        if age >= 1.0 {
            return 1.0;
        }
        age.powf(1.0 / self.aggression).max(self.minimum).min(1.0)
    }
}

/// The most requests in flight a `connectionPool` allows (Envoy's circuit breakers with HTTP/1.1
/// upstreams: a request holds a connection, `tcp.maxConnections` of them, and
/// `http.http1MaxPendingRequests` more may wait; `http.http2MaxRequests` caps all); `None`:
/// unlimited (Istio's default).
fn weighted_random<'a>(c: &[&'a Arc<Endpoint>]) -> &'a Arc<Endpoint> {
    let total: u64 = c.iter().map(|e| u64::from(e.weight)).sum();
    let mut point = fastrand::u64(..total.max(1));
    for e in c {
        if point < u64::from(e.weight) {
            return e;
        }
        point -= u64::from(e.weight);
    }
    c[c.len() - 1]
}

/// Chooses one of several weighted destinations, per request (Istio: weight / sum of weights).
pub fn pick_weighted<T>(items: &[T], weight: impl Fn(&T) -> u32) -> Option<&T> {
    let total: u64 = items.iter().map(|i| u64::from(weight(i))).sum();
    if total == 0 {
        return items.first();
    }
    let mut point = fastrand::u64(..total);
    for item in items {
        let w = u64::from(weight(item));
        if point < w {
            return Some(item);
        }
        point -= w;
    }
    items.last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(balancer: Balancer, eps: &[(u16, u32)]) -> Upstream {
        let eps = eps.iter().map(|(p, w)| Endpoint::new(SocketAddr::from(([127, 0, 0, 1], *p)), *w)).collect();
        Upstream {
            name: "c".into(),
            host: "c.internal".into(),
            not_found: None,
            endpoints: ArcSwap::from_pointee(eps),
            resolution: Resolution::Static,
            balancer,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            http2: false,
            use_client_protocol: false,
            http_idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            connection_limits: None,
            retry_budget: None,
            tcp_keepalive: None,
            source: None,
            max_h2_streams: DEFAULT_H2_STREAMS,
            idle_timeout: None,
            destination: crate::telemetry::metrics::Destination::unknown().clone(),
            outlier: None,
            max_active: None,
            max_connections: None,
            hash: None,
            warmup: None,
            created: std::time::Instant::now(),
            next: AtomicUsize::new(0),
            rr_weights: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn round_robin_takes_endpoints_in_turn() {
        let u = upstream(Balancer::RoundRobin, &[(1, 1), (2, 1), (3, 1)]);
        let ports: Vec<u16> = (0..6).map(|_| u.pick(&[]).unwrap().endpoint().addr.port()).collect();
        assert_eq!(ports, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn weighted_round_robin_interleaves_by_weight() {
        let u = upstream(Balancer::RoundRobin, &[(1, 5), (2, 1), (3, 1)]);
        let ports: Vec<u16> = (0..7).map(|_| u.pick(&[]).unwrap().endpoint().addr.port()).collect();
        assert_eq!(ports, vec![1, 1, 2, 1, 3, 1, 1]);
    }

    #[test]
    fn weighted_least_request_follows_the_weights_when_idle() {
        fastrand::seed(3);
        let u = upstream(Balancer::LeastRequest, &[(1, 9), (2, 1)]);
        let heavy = (0..1000).filter(|_| u.pick(&[]).unwrap().endpoint().addr.port() == 1).count();
        assert!(heavy > 800, "weight 9 of 10 chosen {heavy} of 1000 times");
    }

    #[test]
    fn random_draws_by_weight() {
        fastrand::seed(7);
        let u = upstream(Balancer::Random, &[(1, 3), (2, 1)]);
        let heavy = (0..4000).filter(|_| u.pick(&[]).unwrap().endpoint().addr.port() == 1).count();
        assert!((2800..=3200).contains(&heavy), "weight 3 of 4 chosen {heavy} of 4000 times");
    }

    #[test]
    fn the_connection_pool_caps_requests_in_flight() {
        let pool: conf::raw::ConnectionPoolSettings =
            serde_json::from_str(r#"{"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}"#).unwrap();
        assert_eq!(pool::max_active(Some(&pool)), Some(2));
        let capped: conf::raw::ConnectionPoolSettings =
            serde_json::from_str(r#"{"http": {"http2MaxRequests": 3}}"#).unwrap();
        assert_eq!(pool::max_active(Some(&capped)), Some(3));
        assert_eq!(pool::max_active(None), None);
    }

    #[test]
    fn ejected_endpoints_are_skipped_until_none_may_be() {
        let mut u = upstream(Balancer::Random, &[(1, 1), (2, 1)]);
        let od: conf::raw::OutlierDetection = serde_json::from_str(
            r#"{"consecutive5xxErrors": 2, "baseEjectionTime": "30s", "maxEjectionPercent": 100}"#,
        )
        .unwrap();
        u.outlier = Some(OutlierPolicy::of(&od));
        let first = u.endpoints.load()[0].clone();
        u.report(&first, Attempt::Answered(503));
        u.report(&first, Attempt::Answered(503));
        assert!((0..50).all(|_| u.pick(&[]).unwrap().endpoint().addr.port() == 2), "port 1 ejected");
        let second = u.endpoints.load()[1].clone();
        u.report(&second, Attempt::Answered(500));
        u.report(&second, Attempt::Answered(500));
        assert!(u.pick(&[]).is_none(), "both out (100% may be): no healthy upstream");
    }

    #[test]
    fn an_endpoint_that_joins_later_warms_up() {
        let mut u = upstream(Balancer::RoundRobin, &[]);
        u.warmup = Some(Warmup { duration: Duration::from_secs(60), minimum: 0.1, aggression: 1.0 });
        u.created = std::time::Instant::now() - Duration::from_secs(120);
        let old = Arc::new(Endpoint {
            created: u.created,
            ..Arc::into_inner(Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 1)), 1)).unwrap()
        });
        let new = Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 2)), 1);
        u.endpoints.store(Arc::new(vec![old, new]));
        fastrand::seed(11);
        let fresh = (0..2000).filter(|_| u.pick(&[]).unwrap().endpoint().addr.port() == 2).count();
        assert!((80..=300).contains(&fresh), "about 10% for the newcomer: {fresh} of 2000");
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        // Two random choices: the idle endpoint wins unless both picks are the busy one (1 in 4).
        // A fixed seed keeps this statistical test deterministic.
        fastrand::seed(7);
        let u = upstream(Balancer::LeastRequest, &[(1, 1), (2, 1)]);
        let busy: Vec<InFlight> =
            (0..50).map(|_| u.pick(&[]).unwrap()).filter(|f| f.endpoint().addr.port() == 1).collect();
        assert!(!busy.is_empty());
        let picks = (0..200).filter(|_| u.pick(&[]).unwrap().endpoint().addr.port() == 2).count();
        assert!(picks > 140, "port 2 chosen {picks} of 200 times");
    }

    #[test]
    fn retries_avoid_endpoints_already_tried() {
        let u = upstream(Balancer::Random, &[(1, 1), (2, 1)]);
        let tried = [SocketAddr::from(([127, 0, 0, 1], 1))];
        assert!((0..50).all(|_| u.pick(&tried).unwrap().endpoint().addr.port() == 2));
        let both = [tried[0], SocketAddr::from(([127, 0, 0, 1], 2))];
        assert!(u.pick(&both).is_some());
    }

    #[test]
    fn no_endpoints_picks_nothing() {
        assert!(upstream(Balancer::Random, &[]).pick(&[]).is_none());
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let u = upstream(Balancer::Random, &[(1, 1)]);
        let f = u.pick(&[]).unwrap();
        assert_eq!(f.endpoint().active(), 1);
        drop(f);
        assert_eq!(u.endpoints.load()[0].active(), 0);
    }
}
