//! The connection-pool settings of a DestinationRule that Pingora's connection pool does not keep
//! by itself, as Envoy applies them to a cluster:
//!
//! - `http.maxRequestsPerConnection` (Envoy `max_requests_per_connection`) and
//!   `tcp.maxConnectionDuration` (Envoy `common_http_protocol_options.max_connection_duration`): an
//!   HTTP/1.1 connection that has carried that many requests, or has been open that long, is asked
//!   to close after the current request (`Connection: close`), so it never goes back to the pool.
//!   An idle connection past its duration is closed at its next use rather than at once.
//! - `http.maxRetries` (Envoy's `max_retries` circuit breaker): at most that many retries in flight
//!   to the cluster at once; a retry beyond them is not made (the failure is answered as it is).
//!   0, Istio's default, is unlimited.
//! - `tcp.tcpKeepalive`: keep-alive probes on every upstream socket; a field left out takes Linux's
//!   default (`net.ipv4.tcp_keepalive_*`: 7200 s, 75 s, 9 probes), as Envoy leaves it to the kernel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conf::raw::ConnectionPoolSettings;
use pingora::protocols::TcpKeepalive;

/// The most connections whose requests are counted at once: connections the upstream closed leave
/// their count behind (nothing tells the pool), so past this the counts start over.
const TRACKED: usize = 16_384;

/// Per-connection limits of one cluster.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_requests: Option<u32>,
    max_duration: Option<Duration>,
    /// Opened at and requests carried, by the connection's local address.
    seen: Mutex<HashMap<SocketAddr, (Instant, u32)>>,
}

impl ConnectionLimits {
    /// The limits a connection pool sets, if any.
    pub fn of(pool: &ConnectionPoolSettings) -> Option<Self> {
        let max_requests = pool.http.as_ref().and_then(|h| h.max_requests_per_connection).and_then(positive);
        let max_duration = super::duration(pool.tcp.as_ref().and_then(|t| t.max_connection_duration.as_ref()))
            .filter(|d| !d.is_zero());
        (max_requests.is_some() || max_duration.is_some()).then(|| ConnectionLimits {
            max_requests,
            max_duration,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Records a request on the connection from `local` (`reused`: taken from the pool); true when
    /// it must be the connection's last.
    pub fn last_request(&self, local: Option<SocketAddr>, reused: bool) -> bool {
        if self.max_requests == Some(1) {
            return true;
        }
        let Some(local) = local else { return false };
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else { return false };
        if seen.len() >= TRACKED {
            seen.clear();
        }
        let (opened, requests) = if reused { *seen.entry(local).or_insert((now, 0)) } else { (now, 0) };
        let requests = requests + 1;
        let last = self.max_requests.is_some_and(|m| requests >= m)
            || self.max_duration.is_some_and(|d| now.duration_since(opened) >= d);
        if last {
            seen.remove(&local);
        } else {
            seen.insert(local, (opened, requests));
        }
        last
    }
}

/// `http.maxRetries`: the retries in flight to a cluster.
#[derive(Debug)]
pub struct RetryBudget {
    max: u32,
    active: Arc<AtomicU32>,
}

/// One retry in flight; the slot is given back when it is dropped (the attempt ended).
#[derive(Debug)]
pub struct RetrySlot(Arc<AtomicU32>);

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RetryBudget {
    /// The budget a connection pool sets, if any.
    pub fn of(pool: &ConnectionPoolSettings) -> Option<Self> {
        // Istio sets Envoy's `max_retries` only for a positive value: 0 is its default, unlimited.
        let max = pool.http.as_ref().and_then(|h| h.max_retries).and_then(positive)?;
        Some(RetryBudget { max, active: Arc::new(AtomicU32::new(0)) })
    }

    /// A slot for one more retry, unless `max` are in flight.
    pub fn acquire(&self) -> Option<RetrySlot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| RetrySlot(self.active.clone()))
    }
}

/// `tcp.tcpKeepalive`, with Linux's defaults for the fields left out.
pub fn tcp_keepalive(pool: &ConnectionPoolSettings) -> Option<TcpKeepalive> {
    let k = pool.tcp.as_ref()?.tcp_keepalive.as_ref()?;
    let duration = |d: Option<&String>, default: u64| {
        super::duration(d).filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(default))
    };
    Some(TcpKeepalive {
        idle: duration(k.time.as_ref(), 7200),
        interval: duration(k.interval.as_ref(), 75),
        count: k.probes.filter(|p| *p > 0).map_or(9, |p| p as usize),
        #[cfg(target_os = "linux")]
        user_timeout: Duration::ZERO,
    })
}

/// The most requests in flight to a cluster: with HTTP/1.1 upstreams a request holds a
/// connection, so `tcp.maxConnections` + `http.http1MaxPendingRequests`, and never more than
/// `http.http2MaxRequests` (Istio's circuit-breaking task).
pub fn max_active(pool: Option<&ConnectionPoolSettings>) -> Option<usize> {
    let pool = pool?;
    let positive = |v: Option<i32>| v.and_then(positive).and_then(|v| usize::try_from(v).ok());
    let connections = positive(pool.tcp.as_ref().and_then(|t| t.max_connections));
    let pending = positive(pool.http.as_ref().and_then(|h| h.http1_max_pending_requests)).unwrap_or(usize::MAX / 2);
    let requests = positive(pool.http.as_ref().and_then(|h| h.http2_max_requests));
    match (connections.map(|c| c.saturating_add(pending)), requests) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `tcp.maxConnections`, which TCP routes check alone (as Envoy's TCP proxy).
pub fn max_connections(pool: &ConnectionPoolSettings) -> Option<usize> {
    pool.tcp.as_ref()?.max_connections.and_then(positive).and_then(|n| usize::try_from(n).ok())
}

/// A timeout that never comes (`0s` idle timeouts, which Envoy reads as "none").
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A cluster's connect and idle timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `tcp.connectTimeout` (Istio's 10 s).
    pub connect: Duration,
    /// `http.idleTimeout` of pooled connections (Istio's 1 h).
    pub http_idle: Duration,
    /// `tcp.idleTimeout` of TCP routes (`None`: the default; `0s`: never).
    pub tcp_idle: Option<Duration>,
}

impl Timeouts {
    /// The timeouts a connection pool sets, with Istio's defaults; `0s` turns the TCP idle timeout
    /// off, as in Envoy.
    pub fn of(pool: Option<&ConnectionPoolSettings>) -> Self {
        use super::duration;
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let http = pool.and_then(|p| p.http.as_ref());
        Timeouts {
            connect: duration(tcp.and_then(|t| t.connect_timeout.as_ref())).unwrap_or(super::DEFAULT_CONNECT_TIMEOUT),
            // Validation refuses `0s` here, as Istio does.
            http_idle: duration(http.and_then(|h| h.idle_timeout.as_ref())).unwrap_or(super::DEFAULT_HTTP_IDLE_TIMEOUT),
            tcp_idle: duration(tcp.and_then(|t| t.idle_timeout.as_ref())).map(|d| if d.is_zero() { NEVER } else { d }),
        }
    }
}

/// `http.maxConcurrentStreams`.
pub fn max_concurrent_streams(pool: &ConnectionPoolSettings) -> Option<usize> {
    pool.http.as_ref()?.max_concurrent_streams.and_then(positive).and_then(|n| usize::try_from(n).ok())
}

fn positive(n: i32) -> Option<u32> {
    u32::try_from(n).ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pool(json: &str) -> ConnectionPoolSettings {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_connection_is_closed_after_its_last_request() {
        let limits = ConnectionLimits::of(&pool(r#"{"http": {"maxRequestsPerConnection": 3}}"#)).unwrap();
        let (a, b) = (Some("127.0.0.1:40000".parse().unwrap()), Some("127.0.0.1:40001".parse().unwrap()));
        assert!(!limits.last_request(a, false));
        assert!(!limits.last_request(b, false));
        assert!(!limits.last_request(a, true));
        assert!(limits.last_request(a, true), "the third request on a");
        assert!(!limits.last_request(a, false), "a new connection on the same local address starts over");
        assert!(!limits.last_request(b, true));
    }

    #[test]
    fn a_connection_past_its_duration_carries_one_last_request() {
        let limits = ConnectionLimits::of(&pool(r#"{"tcp": {"maxConnectionDuration": "50ms"}}"#)).unwrap();
        let a = Some("127.0.0.1:40000".parse().unwrap());
        assert!(!limits.last_request(a, false));
        assert!(!limits.last_request(a, true));
        std::thread::sleep(Duration::from_millis(60));
        assert!(limits.last_request(a, true));
    }

    #[test]
    fn retries_in_flight_are_bounded() {
        let budget = RetryBudget::of(&pool(r#"{"http": {"maxRetries": 2}}"#)).unwrap();
        let (one, two) = (budget.acquire().unwrap(), budget.acquire().unwrap());
        assert!(budget.acquire().is_none());
        drop(one);
        assert!(budget.acquire().is_some());
        drop(two);
        assert!(RetryBudget::of(&pool(r#"{"http": {"maxRetries": 0}}"#)).is_none(), "0: Istio's unlimited");
    }

    #[test]
    fn keepalive_fields_left_out_take_the_kernel_defaults() {
        let k = tcp_keepalive(&pool(r#"{"tcp": {"tcpKeepalive": {"time": "30s"}}}"#)).unwrap();
        assert_eq!((k.idle, k.interval, k.count), (Duration::from_secs(30), Duration::from_secs(75), 9));
        assert!(tcp_keepalive(&pool(r#"{"tcp": {}}"#)).is_none());
    }
}
