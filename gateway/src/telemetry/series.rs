//! The metric series one finished HTTP request feeds, found by its label values as the request
//! holds them (borrowed), so that the common case, a label set seen before, allocates nothing and
//! hashes a few short strings once. Looking a label set up in each Prometheus vector instead
//! hashes every label value again per vector; the std `HashMap` this replaced needed an owned key
//! (a clone of the destination) and SipHash: together most of the metrics' cost per request.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use hashbrown::{DefaultHashBuilder, Equivalent, HashMap};
use prometheus::{Histogram, IntCounter};

use super::metrics::{Destination, HttpRequest};

/// What tells one label set from another. The destination's name and namespace are functions of
/// its service host, so the host and the subset stand for all four of its labels.
#[derive(PartialEq, Eq)]
struct Key {
    service: Arc<str>,
    version: Arc<str>,
    protocol: &'static str,
    code: u16,
    grpc_status: Option<u16>,
    flags: &'static str,
    gateway: Box<str>,
    server: Box<str>,
    route: Box<str>,
}

/// The same label values, borrowed from the request.
struct Lookup<'a>(&'a HttpRequest<'a>);

/// A label set's values in one order, for hashing and comparing both forms alike: service,
/// subset, protocol, code, gRPC status, flags, gateway, server, route.
type Parts<'a> = (&'a str, &'a str, &'a str, u16, Option<u16>, &'a str, &'a str, &'a str, &'a str);

impl Key {
    fn of(r: &HttpRequest<'_>) -> Self {
        Key {
            service: r.destination.service.clone(),
            version: r.destination.version.clone(),
            protocol: r.protocol,
            code: r.code,
            grpc_status: r.grpc_status,
            flags: r.flags,
            gateway: r.gateway.into(),
            server: r.server.into(),
            route: r.route.into(),
        }
    }

    fn parts(&self) -> Parts<'_> {
        let k = self;
        (&k.service, &k.version, k.protocol, k.code, k.grpc_status, k.flags, &k.gateway, &k.server, &k.route)
    }
}

impl Lookup<'_> {
    fn parts(&self) -> Parts<'_> {
        let r = self.0;
        let d: &Destination = r.destination;
        (&d.service, &d.version, r.protocol, r.code, r.grpc_status, r.flags, r.gateway, r.server, r.route)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

impl Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.parts() == key.parts()
    }
}

/// The series of one label set.
pub struct HttpSeries {
    /// `istio_requests_total`.
    pub requests: IntCounter,
    /// `istio_request_duration_milliseconds`.
    pub duration: Histogram,
    /// `istio_request_bytes`.
    pub request_bytes: Histogram,
    /// `istio_response_bytes`.
    pub response_bytes: Histogram,
    /// `pylon_gateway_requests_total`.
    pub gateway_requests: IntCounter,
}

/// Every label set seen, with its series. It only grows, as the Prometheus vectors behind it do:
/// label values come from the configuration and the response, never from the request.
#[derive(Default)]
pub struct HttpCache {
    map: RwLock<HashMap<Key, Arc<HttpSeries>, DefaultHashBuilder>>,
}

impl HttpCache {
    /// The series of `r`'s label set, made by `make` the first time it is seen.
    pub fn get(&self, r: &HttpRequest<'_>, make: impl FnOnce() -> HttpSeries) -> Arc<HttpSeries> {
        let lookup = Lookup(r);
        if let Ok(map) = self.map.read() {
            if let Some(series) = map.get(&lookup) {
                return series.clone();
            }
        }
        let made = Arc::new(make());
        if let Ok(mut map) = self.map.write() {
            return map.entry(Key::of(r)).or_insert(made).clone();
        }
        made
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn request<'a>(d: &'a Destination, code: u16, route: &'a str) -> HttpRequest<'a> {
        HttpRequest {
            destination: d,
            protocol: "http",
            code,
            grpc_status: None,
            flags: "-",
            duration_ms: 1.0,
            request_bytes: 1,
            response_bytes: 1,
            gateway: "default/gw",
            server: "http",
            route,
        }
    }

    #[test]
    fn a_borrowed_label_set_hashes_and_compares_as_its_owned_key() {
        let d = Destination::of("reviews.default.svc.cluster.local", Some("v1"));
        let r = request(&d, 200, "r1");
        let key = Key::of(&r);
        let builder = DefaultHashBuilder::default();
        assert_eq!(builder.hash_one(&key), builder.hash_one(Lookup(&r)));
        assert!(Lookup(&r).equivalent(&key));
        assert!(!Lookup(&request(&d, 503, "r1")).equivalent(&key));
        assert!(!Lookup(&request(&d, 200, "r2")).equivalent(&key));
    }

    #[test]
    fn each_label_set_is_made_once() {
        let cache = HttpCache::default();
        let d = Destination::of("reviews.default.svc.cluster.local", None);
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            let histogram = || Histogram::with_opts(prometheus::HistogramOpts::new("h", "h")).unwrap();
            HttpSeries {
                requests: IntCounter::new("r", "r").unwrap(),
                duration: histogram(),
                request_bytes: histogram(),
                response_bytes: histogram(),
                gateway_requests: IntCounter::new("g", "g").unwrap(),
            }
        };
        let a = cache.get(&request(&d, 200, "r1"), make);
        let b = cache.get(&request(&d, 200, "r1"), make);
        assert!(Arc::ptr_eq(&a, &b));
        cache.get(&request(&d, 404, "r1"), make);
        assert_eq!(made.get(), 2);
    }
}
