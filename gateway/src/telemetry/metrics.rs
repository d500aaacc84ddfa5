//! Istio's standard metrics, with Istio's names, label names and Envoy's default histogram
//! buckets, reported as a gateway reports them (`reporter="source"`), so Istio's Grafana
//! dashboards and Kiali work unchanged; plus Pylon's own: a per-Gateway-resource breakdown
//! Istio cannot give, configuration reloads, and process metrics. Label values come from the
//! configuration and the response, never from request paths or other client input.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::series::{HttpCache, HttpSeries};

/// Istio's label names, in this order (istio.io "Istio Standard Metrics").
pub const LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// Envoy's default histogram buckets (`HistogramSettingsImpl::defaultBuckets`); milliseconds for
/// durations, bytes for sizes.
pub const ENVOY_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];

const UNKNOWN: &str = "unknown";

/// Who reports: this gateway workload (`source_*` labels).
#[derive(Debug, Clone)]
pub struct Source {
    /// `--workload-name` (default: the `app` label, else `pylon`).
    pub workload: String,
    /// `--namespace`.
    pub namespace: String,
    /// The `app` label.
    pub app: String,
    /// The `version` label.
    pub version: String,
}

impl Source {
    /// The source labels of a workload with `labels` in `namespace`.
    pub fn new(workload: Option<&str>, namespace: &str, labels: &std::collections::BTreeMap<String, String>) -> Self {
        let app = labels.get("app").cloned();
        Source {
            workload: workload.map(str::to_string).or_else(|| app.clone()).unwrap_or_else(|| "pylon".into()),
            namespace: namespace.to_string(),
            app: app.unwrap_or_else(|| UNKNOWN.into()),
            version: labels.get("version").cloned().unwrap_or_else(|| UNKNOWN.into()),
        }
    }
}

/// The `destination_*` labels of a cluster (`unknown` where a gateway without peer metadata
/// cannot know them, as Istio's gateway reports them). Shared strings: every request's series
/// lookup takes a copy of its destination as part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The service host (`reviews.default.svc.cluster.local`).
    pub service: Arc<str>,
    /// Its first label (`reviews`).
    pub service_name: Arc<str>,
    /// Its namespace for Kubernetes hosts (`default`), else `unknown`.
    pub service_namespace: Arc<str>,
    /// The subset, else `unknown`.
    pub version: Arc<str>,
}

impl Destination {
    /// The labels of `host` (and `subset`); a Kubernetes host `name.namespace.svc.<domain>` gives
    /// its namespace.
    pub fn of(host: &str, subset: Option<&str>) -> Self {
        let name = host.split('.').next().unwrap_or(host);
        let namespace = host
            .split_once(".svc.")
            .and_then(|(service, _)| service.split_once('.').map(|(_, ns)| ns))
            .filter(|ns| !ns.is_empty() && !ns.contains('.'))
            .unwrap_or(UNKNOWN);
        Destination {
            service: host.into(),
            service_name: name.into(),
            service_namespace: namespace.into(),
            version: subset.unwrap_or(UNKNOWN).into(),
        }
    }

    /// No destination (404, or a request answered before routing): one value for the process.
    pub fn unknown() -> &'static Self {
        static UNKNOWN_DESTINATION: std::sync::OnceLock<Destination> = std::sync::OnceLock::new();
        UNKNOWN_DESTINATION.get_or_init(|| Destination {
            service: UNKNOWN.into(),
            service_name: UNKNOWN.into(),
            service_namespace: UNKNOWN.into(),
            version: UNKNOWN.into(),
        })
    }
}

/// One finished HTTP request.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    /// Where it went.
    pub destination: &'a Destination,
    /// `http` or `grpc`.
    pub protocol: &'static str,
    /// The response status.
    pub code: u16,
    /// The `grpc-status` of a gRPC response.
    pub grpc_status: Option<u16>,
    /// Envoy's response flags, `-` for none.
    pub flags: &'static str,
    /// Milliseconds from the first byte of the request to the last of the response.
    pub duration_ms: f64,
    /// Request bytes (headers and body).
    pub request_bytes: u64,
    /// Response bytes (headers and body).
    pub response_bytes: u64,
    /// The Gateway resource (`namespace/name`), server and route that served it.
    pub gateway: &'a str,
    /// The server (`port name`).
    pub server: &'a str,
    /// The route name (or its origin).
    pub route: &'a str,
}

/// The four TCP counters one label set feeds.
struct TcpSeries {
    sent: IntCounter,
    received: IntCounter,
    opened: IntCounter,
    closed: IntCounter,
}

/// Every metric Pylon exports.
pub struct Metrics {
    registry: Registry,
    source: Source,
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: HistogramVec,
    response_bytes: HistogramVec,
    tcp_sent: IntCounterVec,
    tcp_received: IntCounterVec,
    tcp_opened: IntCounterVec,
    tcp_closed: IntCounterVec,
    gateway_requests: IntCounterVec,
    connections_refused: IntCounterVec,
    /// `pylon_config_generation`.
    pub config_generation: IntGauge,
    /// `pylon_config_reloads_total{result}`.
    pub config_reloads: IntCounterVec,
    /// `pylon_config_restart_required`.
    pub restart_required: IntGauge,
    /// `pylon_access_log_dropped_total`.
    pub access_log_dropped: IntCounter,
    /// `pylon_connections_active`.
    pub connections_active: IntGauge,
    cache_requests: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    cache_evictions: IntCounterVec,
    http_cache: HttpCache,
    tcp_cache: RwLock<HashMap<Destination, Arc<TcpSeries>>>,
}

// Metric definitions are constants: an invalid one is a programming error the unit tests catch.
#[allow(clippy::expect_used)]
fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition")
}

#[allow(clippy::expect_used)]
fn gauge(name: &str, help: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &["policy"]).expect("a valid metric definition")
}

#[allow(clippy::expect_used)]
fn histogram(name: &str, help: &str) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(ENVOY_BUCKETS.to_vec()), &LABELS)
        .expect("a valid metric definition")
}

impl Metrics {
    /// Every metric, registered, for the workload `source`.
    #[allow(clippy::expect_used)] // constant definitions, checked by the unit tests
    pub fn new(source: Source) -> Arc<Self> {
        let registry = Registry::new();
        let m = Metrics {
            requests: counter("istio_requests_total", "Requests processed, as Istio counts them.", &LABELS),
            duration: histogram("istio_request_duration_milliseconds", "Request duration in milliseconds."),
            request_bytes: histogram("istio_request_bytes", "Request size (headers and body) in bytes."),
            response_bytes: histogram("istio_response_bytes", "Response size (headers and body) in bytes."),
            tcp_sent: counter("istio_tcp_sent_bytes_total", "Bytes sent to the client over TCP connections.", &LABELS),
            tcp_received: counter(
                "istio_tcp_received_bytes_total",
                "Bytes received from the client over TCP connections.",
                &LABELS,
            ),
            tcp_opened: counter("istio_tcp_connections_opened_total", "TCP connections opened.", &LABELS),
            tcp_closed: counter("istio_tcp_connections_closed_total", "TCP connections closed.", &LABELS),
            gateway_requests: counter(
                "pylon_gateway_requests_total",
                "Requests by Gateway resource, server and route.",
                &["gateway", "server", "route", "response_code", "response_flags"],
            ),
            connections_refused: counter(
                "pylon_connections_refused_total",
                "Connections closed without being proxied (TCP and TLS routes; any listener for an address-only DENY policy), by gateway port, reason (no_server_for_sni, no_route, denied_by_policy, not_in_registry, no_healthy_upstream, pool_full, connect_failure) and destination.",
                &["port", "reason", "destination_service"],
            ),
            config_generation: IntGauge::new("pylon_config_generation", "The configuration generation serving.")
                .expect("valid"),
            config_reloads: counter("pylon_config_reloads_total", "Configuration reloads by result.", &["result"]),
            restart_required: IntGauge::new(
                "pylon_config_restart_required",
                "1 when the last configuration change needs a restart to apply fully.",
            )
            .expect("valid"),
            access_log_dropped: IntCounter::new(
                "pylon_access_log_dropped_total",
                "Access log lines dropped because the writer could not keep up.",
            )
            .expect("valid"),
            connections_active: IntGauge::new("pylon_connections_active", "Downstream connections open.")
                .expect("valid"),
            cache_requests: counter(
                "pylon_cache_requests_total",
                "Requests on routes with a cache, by GatewayPolicy and cache status (HIT, MISS, EXPIRED, STALE, UPDATING, REVALIDATED, BYPASS).",
                &["policy", "status"],
            ),
            cache_bytes: gauge("pylon_cache_size_bytes", "Bytes stored in the cache of a GatewayPolicy."),
            cache_entries: gauge("pylon_cache_entries", "Responses stored in the cache of a GatewayPolicy."),
            cache_evictions: counter(
                "pylon_cache_evictions_total",
                "Responses evicted to keep a GatewayPolicy's cache within maxSize.",
                &["policy"],
            ),
            registry,
            source,
            http_cache: HttpCache::default(),
            tcp_cache: RwLock::new(HashMap::new()),
        };
        m.register();
        Arc::new(m)
    }

    fn register(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.requests.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.request_bytes.clone()),
            Box::new(self.response_bytes.clone()),
            Box::new(self.tcp_sent.clone()),
            Box::new(self.tcp_received.clone()),
            Box::new(self.tcp_opened.clone()),
            Box::new(self.tcp_closed.clone()),
            Box::new(self.gateway_requests.clone()),
            Box::new(self.connections_refused.clone()),
            Box::new(self.config_generation.clone()),
            Box::new(self.config_reloads.clone()),
            Box::new(self.restart_required.clone()),
            Box::new(self.access_log_dropped.clone()),
            Box::new(self.connections_active.clone()),
            Box::new(self.cache_requests.clone()),
            Box::new(self.cache_bytes.clone()),
            Box::new(self.cache_entries.clone()),
            Box::new(self.cache_evictions.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            if let Err(e) = self.registry.register(c) {
                tracing::error!(error = %e, "cannot register a metric");
            }
        }
    }

    /// Registers another collector (one whose series are read at scrape time).
    pub fn add(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::error!(error = %e, "cannot register a metric");
        }
    }

    /// The label values of one series.
    fn values<'a>(
        &'a self,
        d: &'a Destination,
        protocol: &'a str,
        code: &'a str,
        grpc: &'a str,
        flags: &'a str,
    ) -> [&'a str; 25] {
        let s = &self.source;
        [
            "source",
            &s.workload,
            &s.namespace,
            UNKNOWN,
            &s.app,
            &s.version,
            &s.workload,
            &s.version,
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            &d.version,
            &d.service,
            &d.service_name,
            &d.service_namespace,
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            protocol,
            code,
            grpc,
            flags,
            UNKNOWN,
        ]
    }

    /// Counts one finished HTTP request.
    pub fn http(&self, r: &HttpRequest<'_>) {
        self.http_series(r).observe(r);
    }

    /// The series `r`'s label set feeds.
    pub fn http_series(&self, r: &HttpRequest<'_>) -> Arc<HttpSeries> {
        // The status as text without formatting a number (0, no response, is not a status).
        let status = http::StatusCode::from_u16(r.code).ok();
        let code = status.as_ref().map_or("0", http::StatusCode::as_str);
        self.http_cache.get(r, || {
            let grpc = r.grpc_status.map(|g| g.to_string()).unwrap_or_default();
            let v = self.values(r.destination, r.protocol, code, &grpc, r.flags);
            HttpSeries {
                requests: self.requests.with_label_values(&v),
                duration: self.duration.with_label_values(&v),
                request_bytes: self.request_bytes.with_label_values(&v),
                response_bytes: self.response_bytes.with_label_values(&v),
                gateway_requests: self
                    .gateway_requests
                    .with_label_values(&[r.gateway, r.server, r.route, code, r.flags]),
            }
        })
    }

    /// Counts a connection on gateway `port` closed without being proxied, and why; `destination`
    /// is the destination service host when a route chose one.
    pub fn connection_refused(&self, port: u16, reason: &str, destination: Option<&Destination>) {
        let destination = destination.map_or("unknown", |d| &*d.service);
        self.connections_refused.with_label_values(&[&port.to_string(), reason, destination]).inc();
    }

    /// Counts a TCP connection to `d`: opened now.
    pub fn tcp_opened(&self, d: &Destination) {
        self.tcp(d).opened.inc();
    }

    /// Counts a TCP connection to `d` closed after moving `sent` and `received` bytes (as seen
    /// from the client).
    pub fn tcp_closed(&self, d: &Destination, sent: u64, received: u64) {
        let s = self.tcp(d);
        s.sent.inc_by(sent);
        s.received.inc_by(received);
        s.closed.inc();
    }

    fn tcp(&self, d: &Destination) -> Arc<TcpSeries> {
        if let Some(s) = self.tcp_cache.read().ok().and_then(|c| c.get(d).cloned()) {
            return s;
        }
        let v = self.values(d, "tcp", "0", "", "-");
        let made = Arc::new(TcpSeries {
            sent: self.tcp_sent.with_label_values(&v),
            received: self.tcp_received.with_label_values(&v),
            opened: self.tcp_opened.with_label_values(&v),
            closed: self.tcp_closed.with_label_values(&v),
        });
        if let Ok(mut c) = self.tcp_cache.write() {
            c.insert(d.clone(), made.clone());
        }
        made
    }

    /// Counts a request on a route with a cache.
    pub fn cache_request(&self, policy: &str, status: &str) {
        self.cache_requests.with_label_values(&[policy, status]).inc();
    }

    /// Publishes the cache zones' figures (read when metrics are scraped).
    pub fn cache_zones(&self, zones: &[(String, crate::cache::ZoneStats)]) {
        for (name, z) in zones {
            self.cache_bytes.with_label_values(&[name]).set(i64::try_from(z.bytes).unwrap_or(i64::MAX));
            self.cache_entries.with_label_values(&[name]).set(i64::try_from(z.entries).unwrap_or(i64::MAX));
            let evictions = self.cache_evictions.with_label_values(&[name]);
            evictions.inc_by(z.evictions.saturating_sub(evictions.get()));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &families, &mut out) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source::new(
            None,
            "istio-system",
            &[("app".to_string(), "istio-ingressgateway".to_string())].into_iter().collect(),
        )
    }

    #[test]
    fn destination_labels_come_from_the_host_and_subset() {
        let d = Destination::of("reviews.bookinfo.svc.cluster.local", Some("v2"));
        assert_eq!((&*d.service_name, &*d.service_namespace, &*d.version), ("reviews", "bookinfo", "v2"));
        let e = Destination::of("api.example.com", None);
        assert_eq!((&*e.service_name, &*e.service_namespace, &*e.version), ("api", "unknown", "unknown"));
    }

    #[test]
    fn a_request_is_counted_with_istios_labels_and_envoys_buckets() {
        let m = Metrics::new(source());
        let d = Destination::of("reviews.default.svc.cluster.local", None);
        let r = HttpRequest {
            destination: &d,
            protocol: "http",
            code: 503,
            grpc_status: None,
            flags: "UH",
            duration_ms: 3.0,
            request_bytes: 120,
            response_bytes: 80,
            gateway: "default/gw",
            server: "http",
            route: "r1",
        };
        m.http(&r);
        m.http(&r);
        let text = m.render();
        let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
        assert!(line.ends_with(" 2"), "{line}");
        for label in [
            "reporter=\"source\"",
            "source_workload=\"istio-ingressgateway\"",
            "source_workload_namespace=\"istio-system\"",
            "destination_service=\"reviews.default.svc.cluster.local\"",
            "destination_service_name=\"reviews\"",
            "destination_service_namespace=\"default\"",
            "response_code=\"503\"",
            "response_flags=\"UH\"",
            "request_protocol=\"http\"",
            "connection_security_policy=\"unknown\"",
        ] {
            assert!(line.contains(label), "{label} missing in {line}");
        }
        assert!(text.contains("istio_request_duration_milliseconds_bucket{") && text.contains("le=\"3600000\""));
        assert!(text.contains("pylon_gateway_requests_total{gateway=\"default/gw\",response_code=\"503\",response_flags=\"UH\",route=\"r1\",server=\"http\"} 2"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
