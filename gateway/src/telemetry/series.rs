//! The metric series one finished HTTP request feeds, found by its label values as the request
//! holds them (borrowed), so that the common case, a label set seen before, allocates nothing and
//! hashes a few short strings once. Looking a label set up in each Prometheus vector instead
//! hashes every label value again per vector; the std `HashMap` this replaced needed an owned key
//! (a clone of the destination) and SipHash: together most of the metrics' cost per request.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock, Weak};

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

impl HttpSeries {
    /// Counts `r`, one request of this label set.
    pub fn observe(&self, r: &HttpRequest<'_>) {
        self.requests.inc();
        self.duration.observe(r.duration_ms);
        self.request_bytes.observe(r.request_bytes as f64);
        self.response_bytes.observe(r.response_bytes as f64);
        self.gateway_requests.inc();
    }
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

/// What chose a request's label values in the snapshot it was served with: its route, cluster
/// and server; the response's code, gRPC status and flags; the registry counting it. Equal choices
/// in one snapshot have equal labels, so a request that repeats a recent choice finds its series
/// without hashing or comparing a label (~700 instructions a request, `scripts/bench profile`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The `Metrics` counting it.
    pub metrics: usize,
    /// Route table, virtual host and route.
    pub route: Option<(usize, usize, usize)>,
    /// The cluster (the destination labels).
    pub cluster: Option<usize>,
    /// The server (the gateway and server labels).
    pub server: Option<usize>,
    /// The response status.
    pub code: u16,
    /// The gRPC status, for gRPC.
    pub grpc_status: Option<u16>,
    /// Response flags: a static string, compared by address and length (equal ones have equal
    /// text).
    pub flags: (usize, usize),
    /// `http` or `grpc`.
    pub grpc: bool,
}

impl Choice {
    /// `flags` as compared.
    pub fn flags_of(flags: &'static str) -> (usize, usize) {
        (flags.as_ptr() as usize, flags.len())
    }
}

/// A recent choice, the snapshot it was made in, and its series.
struct Entry<S> {
    /// Names the snapshot by its address, and keeps that allocation (not its contents) from being
    /// reused by a later snapshot while it does.
    snapshot: Weak<S>,
    choice: Choice,
    series: Arc<HttpSeries>,
}

/// The few choices a worker thread counted last. Per thread: no lock, no atomic operation.
pub struct Recent<S> {
    entries: [Option<Entry<S>>; 4],
    next: usize,
}

impl<S> Default for Recent<S> {
    fn default() -> Self {
        Recent { entries: [None, None, None, None], next: 0 }
    }
}

impl<S> Recent<S> {
    /// Counts a request of `choice` (served with `snapshot`) in its series: the recent one, or the
    /// one `find` returns, which then replaces the oldest.
    pub fn count(
        cell: &RefCell<Self>,
        choice: Choice,
        snapshot: &Arc<S>,
        r: &HttpRequest<'_>,
        find: impl FnOnce() -> Arc<HttpSeries>,
    ) {
        let Ok(mut recent) = cell.try_borrow_mut() else { return find().observe(r) };
        let made_in = |e: &&Entry<S>| std::ptr::eq(e.snapshot.as_ptr(), Arc::as_ptr(snapshot));
        if let Some(e) = recent.entries.iter().flatten().filter(made_in).find(|e| e.choice == choice) {
            return e.series.observe(r);
        }
        let series = find();
        series.observe(r);
        let at = recent.next;
        recent.entries[at] = Some(Entry { snapshot: Arc::downgrade(snapshot), choice, series });
        recent.next = (at + 1) % 4;
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

    fn series() -> HttpSeries {
        let histogram = || Histogram::with_opts(prometheus::HistogramOpts::new("h", "h")).unwrap();
        HttpSeries {
            requests: IntCounter::new("r", "r").unwrap(),
            duration: histogram(),
            request_bytes: histogram(),
            response_bytes: histogram(),
            gateway_requests: IntCounter::new("g", "g").unwrap(),
        }
    }

    fn choice(code: u16) -> Choice {
        Choice {
            metrics: 1,
            route: Some((0, 0, 0)),
            cluster: Some(0),
            server: Some(0),
            code,
            grpc_status: None,
            flags: Choice::flags_of("-"),
            grpc: false,
        }
    }

    #[test]
    fn a_repeated_choice_counts_in_the_series_found_the_first_time() {
        let recent = RefCell::new(Recent::default());
        let d = Destination::of("reviews.default.svc.cluster.local", None);
        let (snapshot, found) = (Arc::new(1u64), std::cell::Cell::new(0));
        let made = Arc::new(series());
        let find = || {
            found.set(found.get() + 1);
            made.clone()
        };
        for _ in 0..3 {
            Recent::count(&recent, choice(200), &snapshot, &request(&d, 200, "r1"), find);
        }
        assert_eq!((found.get(), made.requests.get()), (1, 3));
        // Another response code, then another snapshot with the same route: each found anew.
        Recent::count(&recent, choice(503), &snapshot, &request(&d, 503, "r1"), find);
        let reloaded = Arc::new(1u64);
        Recent::count(&recent, choice(200), &reloaded, &request(&d, 200, "r1"), find);
        assert_eq!(found.get(), 3);
    }

    #[test]
    fn a_remembered_snapshot_keeps_its_address_from_a_new_one() {
        let recent = RefCell::new(Recent::default());
        let d = Destination::of("reviews.default.svc.cluster.local", None);
        let old = Arc::new(7u64);
        let address = Arc::as_ptr(&old) as usize;
        Recent::count(&recent, choice(200), &old, &request(&d, 200, "r1"), || Arc::new(series()));
        drop(old);
        // Its allocation stays while remembered: no later snapshot can take its address and be
        // mistaken for it.
        let newer: Vec<Arc<u64>> = (0..64).map(Arc::new).collect();
        assert!(newer.iter().all(|n| Arc::as_ptr(n) as usize != address));
    }

    #[test]
    fn each_label_set_is_made_once() {
        let cache = HttpCache::default();
        let d = Destination::of("reviews.default.svc.cluster.local", None);
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            series()
        };
        let a = cache.get(&request(&d, 200, "r1"), make);
        let b = cache.get(&request(&d, 200, "r1"), make);
        assert!(Arc::ptr_eq(&a, &b));
        cache.get(&request(&d, 404, "r1"), make);
        assert_eq!(made.get(), 2);
    }
}
