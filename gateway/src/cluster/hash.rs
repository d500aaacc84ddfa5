//! Consistent-hash load balancing (DestinationRule `loadBalancer.consistentHash`): requests with
//! the same key (a header, a cookie, the client address or a query parameter) go to the same
//! endpoint while the endpoints stay the same, and only the keys of an endpoint that leaves move.
//! A ring of points (`minimumRingSize`, default 1024, shared out by weight) stands in for both
//! Envoy's ring hash and Maglev. A key that is absent falls back to the cluster's other balancing,
//! except a cookie with a `ttl`, which the gateway then makes and sets on the response.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::Endpoint;

/// Envoy's default minimum ring size.
const DEFAULT_RING_SIZE: u64 = 1024;
/// The largest ring built (Envoy caps `maximum_ring_size` at 8M; a gateway needs far fewer).
const MAX_RING_SIZE: u64 = 1 << 20;

/// What the hash is computed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value.
    Header(String),
    /// A cookie's value; with a `ttl` (seconds) a missing cookie is made and set.
    Cookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        path: Option<String>,
        /// Lifetime of a made cookie; `None`: never made.
        ttl: Option<u64>,
        /// `httpCookie.attributes` of a made cookie, rendered (`; SameSite=Strict; Secure`).
        attributes: String,
    },
    /// The client address (after trusted proxies).
    SourceIp,
    /// A query parameter's value.
    QueryParameter(String),
}

/// A cluster's consistent-hash settings and its ring.
#[derive(Debug)]
pub struct ConsistentHash {
    /// What is hashed.
    pub key: HashKey,
    ring_size: u64,
    ring: Mutex<Ring>,
}

/// Points (hash → endpoint address), sorted, for one endpoint list.
#[derive(Debug, Default)]
struct Ring {
    built_for: Vec<(SocketAddr, u32)>,
    points: Vec<(u64, SocketAddr)>,
}

/// The 64-bit hash of `value`.
pub fn hash_of(value: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl ConsistentHash {
    /// The settings of a DestinationRule's `consistentHash`; `None` without a usable key.
    pub fn of(c: &conf::raw::ConsistentHashLb) -> Option<Self> {
        let key = if let Some(h) = &c.http_header_name {
            HashKey::Header(h.to_ascii_lowercase())
        } else if let Some(cookie) = &c.http_cookie {
            let ttl = super::duration(cookie.ttl.as_ref()).map(|d| d.as_secs()).filter(|s| *s > 0);
            let attributes = cookie
                .attributes
                .iter()
                .map(|a| match a.value.as_deref().filter(|v| !v.is_empty()) {
                    Some(v) => format!("; {}={v}", a.name),
                    None => format!("; {}", a.name),
                })
                .collect();
            HashKey::Cookie { name: cookie.name.clone(), path: cookie.path.clone(), ttl, attributes }
        } else if c.use_source_ip == Some(true) {
            HashKey::SourceIp
        } else {
            HashKey::QueryParameter(c.http_query_parameter_name.clone()?)
        };
        let size = c
            .ring_hash
            .as_ref()
            .map(|r| r.minimum_ring_size)
            .or(c.minimum_ring_size)
            .or(c.maglev.as_ref().map(|m| m.table_size))
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_RING_SIZE)
            .min(MAX_RING_SIZE);
        Some(ConsistentHash { key, ring_size: size, ring: Mutex::new(Ring::default()) })
    }

    /// The endpoint for `hash` among `all`: the first ring point at or after it whose endpoint
    /// is in `usable` (the ring is built over every endpoint, so keys do not move when one is
    /// ejected or already tried).
    pub fn pick<'a>(
        &self,
        hash: u64,
        all: &[Arc<Endpoint>],
        usable: &[&'a Arc<Endpoint>],
    ) -> Option<&'a Arc<Endpoint>> {
        if usable.is_empty() {
            return None;
        }
        let mut ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current: Vec<(SocketAddr, u32)> = all.iter().map(|e| (e.addr, e.weight)).collect();
        if ring.built_for != current {
            *ring = Ring::build(current, self.ring_size);
        }
        let start = ring.points.partition_point(|(p, _)| *p < hash);
        let n = ring.points.len();
        (0..n).map(|i| ring.points[(start + i) % n].1).find_map(|addr| usable.iter().find(|e| e.addr == addr).copied())
    }
}

impl Ring {
    fn build(endpoints: Vec<(SocketAddr, u32)>, size: u64) -> Ring {
        let total: u64 = endpoints.iter().map(|(_, w)| u64::from(*w)).sum::<u64>().max(1);
        let mut points = Vec::new();
        for (addr, weight) in &endpoints {
            let replicas = (size * u64::from(*weight)).div_ceil(total).max(1);
            for r in 0..replicas {
                points.push((hash_of(format!("{addr}_{r}").as_bytes()), *addr));
            }
        }
        points.sort_unstable();
        Ring { built_for: endpoints, points }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(ports: &[u16]) -> Vec<Arc<Endpoint>> {
        ports.iter().map(|p| Endpoint::new(SocketAddr::from(([127, 0, 0, 1], *p)), 1)).collect()
    }

    fn hashing() -> ConsistentHash {
        ConsistentHash { key: HashKey::SourceIp, ring_size: 1024, ring: Mutex::new(Ring::default()) }
    }

    #[test]
    fn a_key_keeps_its_endpoint_and_only_a_leaving_endpoints_keys_move() {
        let h = hashing();
        let three = endpoints(&[1, 2, 3]);
        let all: Vec<&Arc<Endpoint>> = three.iter().collect();
        let before: Vec<SocketAddr> =
            (0..300u64).map(|k| h.pick(hash_of(&k.to_be_bytes()), &three, &all).unwrap().addr).collect();
        let again: Vec<SocketAddr> =
            (0..300u64).map(|k| h.pick(hash_of(&k.to_be_bytes()), &three, &all).unwrap().addr).collect();
        assert_eq!(before, again);
        let two: Vec<&Arc<Endpoint>> = three.iter().filter(|e| e.addr.port() != 3).collect();
        for (k, was) in before.iter().enumerate() {
            let now = h.pick(hash_of(&(k as u64).to_be_bytes()), &three, &two).unwrap().addr;
            if was.port() != 3 {
                assert_eq!(now, *was, "key {k} stayed");
            }
        }
        let spread = [1, 2, 3].map(|p| before.iter().filter(|a| a.port() == p).count());
        assert!(spread.iter().all(|n| *n > 50), "{spread:?}");
    }
}
