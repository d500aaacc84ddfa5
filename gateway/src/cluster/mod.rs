//! Clusters at run time: endpoints (static, or kept up to date by DNS in the background) and
//! load balancing. Nothing here blocks or resolves names on the request path.

pub mod dns;
pub mod registry;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use conf::raw::{Resolution, SimpleLb};
use conf::table::Cluster;

use crate::error::Outcome;

/// Istio's default connect timeout (meshConfig.connectTimeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One resolved endpoint and its in-flight request count (for least-request balancing).
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Load-balancing weight.
    pub weight: u32,
    active: AtomicUsize,
}

impl Endpoint {
    /// An endpoint with no requests in flight.
    pub fn new(addr: SocketAddr, weight: u32) -> Arc<Self> {
        Arc::new(Endpoint { addr, weight: weight.max(1), active: AtomicUsize::new(0) })
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
    /// Speak HTTP/2 to the endpoints (h2c with prior knowledge, or ALPN h2 over TLS).
    pub http2: bool,
    /// TCP idle timeout (`connectionPool.tcp.idleTimeout`); `None` = the default.
    pub idle_timeout: Option<Duration>,
    /// The `destination_*` metric labels.
    pub destination: crate::telemetry::metrics::Destination,
    next: AtomicUsize,
}

impl Upstream {
    /// The run-time form of a compiled cluster; DNS names are resolved later by [`crate::dns`].
    pub fn new(c: &Cluster) -> Self {
        let (not_found, resolution, http2, endpoints) = match &c.service {
            Err(why) => (Some(why.clone()), Resolution::None, false, Vec::new()),
            Ok(s) => {
                let eps = s
                    .endpoints
                    .iter()
                    .filter_map(|e| Some(Endpoint::new(SocketAddr::new(e.address.parse().ok()?, e.port), e.weight)))
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
        let tcp = c.policy.connection_pool.as_ref().and_then(|p| p.tcp.as_ref());
        let duration = |d: Option<&String>| {
            d.and_then(|d| conf::model::Duration::parse(d).ok()).map(conf::model::Duration::to_std)
        };
        let connect_timeout = duration(tcp.and_then(|t| t.connect_timeout.as_ref())).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let idle_timeout = duration(tcp.and_then(|t| t.idle_timeout.as_ref()));
        Upstream {
            name: c.name.clone(),
            host: c.host.clone(),
            not_found,
            endpoints: ArcSwap::from_pointee(endpoints),
            resolution,
            balancer,
            connect_timeout,
            http2,
            idle_timeout,
            destination: crate::telemetry::metrics::Destination::of(&c.host, c.subset.as_deref()),
            next: AtomicUsize::new(0),
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
    /// predicate `previous_hosts`). `None` when there is no endpoint (503 UH).
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<InFlight> {
        let all = self.endpoints.load();
        let fresh: Vec<&Arc<Endpoint>> = all.iter().filter(|e| !tried.contains(&e.addr)).collect();
        let candidates: Vec<&Arc<Endpoint>> = if fresh.is_empty() { all.iter().collect() } else { fresh };
        let chosen = match candidates.len() {
            0 => return None,
            1 => candidates[0],
            n => self.choose(&candidates, n),
        };
        Some(InFlight::new(chosen.clone()))
    }

    fn choose<'a>(&self, c: &[&'a Arc<Endpoint>], n: usize) -> &'a Arc<Endpoint> {
        let weighted = c.iter().any(|e| e.weight != c[0].weight);
        match self.balancer {
            _ if weighted => weighted_random(c),
            Balancer::RoundRobin => c[self.next.fetch_add(1, Ordering::Relaxed) % n],
            Balancer::Random => c[fastrand::usize(..n)],
            Balancer::LeastRequest => {
                let (a, b) = (c[fastrand::usize(..n)], c[fastrand::usize(..n)]);
                if b.active() < a.active() {
                    b
                } else {
                    a
                }
            }
        }
    }
}

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
            idle_timeout: None,
            destination: crate::telemetry::metrics::Destination::unknown(),
            next: AtomicUsize::new(0),
        }
    }

    #[test]
    fn round_robin_takes_endpoints_in_turn() {
        let u = upstream(Balancer::RoundRobin, &[(1, 1), (2, 1), (3, 1)]);
        let ports: Vec<u16> = (0..6).map(|_| u.pick(&[]).unwrap().endpoint().addr.port()).collect();
        assert_eq!(ports, vec![1, 2, 3, 1, 2, 3]);
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
