//! The gateway started in-process for a test: configuration written to a temporary folder, every
//! declared port mapped to an ephemeral one, readiness polled with a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway::server::{Options, Running};
pub use gateway::tls::material::MaterialError;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder under the system temp dir.
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "pylon-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running gateway and its configuration folder.
pub struct TestGateway {
    /// The gateway.
    pub running: Running,
    /// Where its configuration lives.
    pub dir: TempDir,
}

/// How to start a test gateway.
#[derive(Default)]
pub struct Setup {
    /// Workload labels (default `istio=ingressgateway`).
    pub labels: Option<BTreeMap<String, String>>,
    /// The workload's namespace (default `default`).
    pub namespace: Option<String>,
    /// The DNS server for DNS ServiceEntries.
    pub dns_server: Option<SocketAddr>,
    /// `--credentials-dir`.
    pub credentials_dir: Option<PathBuf>,
    /// `--identity-dir`: the mesh workload identity.
    pub identity_dir: Option<PathBuf>,
    /// Declared ports a later configuration may add, mapped to ephemeral ports too.
    pub extra_ports: Vec<u16>,
    /// The access log (off by default).
    pub access_log: Option<(gateway::telemetry::access_log::Target, bool)>,
    /// MeshConfig `defaultConfig.gatewayTopology.numTrustedProxies`.
    pub num_trusted_proxies: u32,
    /// MeshConfig YAML (`--mesh-config`), applied after the fields above.
    pub mesh: Option<String>,
    /// `--request-headers-timeout` (default 60 s).
    pub request_headers_timeout: Option<Duration>,
    /// `--idle-timeout` (default 1 h).
    pub idle_timeout: Option<Duration>,
    /// `--stream-idle-timeout` (default 5 min).
    pub stream_idle_timeout: Option<Duration>,
}

impl Setup {
    /// The workload that runs Gateway API Gateway `name` in `namespace` (its
    /// `gateway.networking.k8s.io/gateway-name` label, as Istio labels gateway pods).
    pub fn gateway_api(name: &str, namespace: &str) -> Setup {
        Setup {
            labels: Some(BTreeMap::from([(conf::compile::GATEWAY_NAME_LABEL.to_string(), name.to_string())])),
            namespace: Some(namespace.to_string()),
            ..Setup::default()
        }
    }
}

impl TestGateway {
    /// Starts a gateway serving `yaml` (the default workload labels).
    pub fn start(yaml: &str) -> TestGateway {
        Self::start_with(yaml, Setup::default())
    }

    /// Starts a gateway serving `yaml` with `setup`.
    pub fn start_with(yaml: &str, setup: Setup) -> TestGateway {
        let dir = TempDir::new();
        std::fs::write(dir.0.join("config.yaml"), yaml).unwrap();
        let mut selection = conf::Selection::default();
        if let Some(labels) = setup.labels {
            selection.labels = labels;
        }
        if let Some(ns) = setup.namespace {
            selection.namespace = ns;
        }
        selection.credentials_dir = setup.credentials_dir;
        selection.identity_dir = setup.identity_dir;
        selection.num_trusted_proxies = setup.num_trusted_proxies;
        if let Some(mesh) = &setup.mesh {
            conf::mesh::MeshConfig::parse(mesh).unwrap().apply(&mut selection);
        }
        let built = conf::build(std::slice::from_ref(&dir.0), &selection).unwrap();
        assert!(built.is_valid(), "test configuration is invalid:\n{}", built.diagnostics);
        let port_map = built.table.listeners.iter().map(|l| l.port).chain(setup.extra_ports).map(|p| (p, 0)).collect();
        let mut opts = Options::local(vec![dir.0.clone()], selection, port_map);
        opts.dns_server = setup.dns_server;
        opts.access_log = setup.access_log;
        if let Some(t) = setup.request_headers_timeout {
            opts.request_headers_timeout = t;
        }
        if let Some(t) = setup.idle_timeout {
            opts.idle_timeout = t;
        }
        if let Some(t) = setup.stream_idle_timeout {
            opts.stream_idle_timeout = t;
        }
        let running = gateway::server::start(&opts).unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        let gw = TestGateway { running, dir };
        gw.wait_ready();
        gw
    }

    /// Replaces the configuration file (atomically, as an editor or `kubectl` would); the gateway
    /// watches it.
    pub fn write_config(&self, yaml: &str) {
        crate::certs::write_atomically(&self.dir.0.join("config.yaml"), yaml.as_bytes());
    }

    /// Polls `/healthz/ready` until it answers 200 (deadline 10 s).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ready_status() == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gateway not ready within 10 s");
    }

    /// The status code of `GET /healthz/ready`.
    pub fn ready_status(&self) -> Option<u16> {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(self.running.status_addr).ok()?;
        tcp.write_all(b"GET /healthz/ready HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        tcp.read_to_string(&mut out).ok()?;
        out.split_whitespace().nth(1)?.parse().ok()
    }

    /// The address serving Gateway port `port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        let a = self.running.addr(port).unwrap_or_else(|| panic!("no listener for port {port}"));
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    }

    /// The status of each of `n` GETs of `path` on port 80 (Host `x`), one after the other.
    pub async fn statuses(&self, path: &str, n: usize) -> Vec<u16> {
        let client = crate::client::http1();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(crate::client::get(&client, &self.url(80), "x", path, &[]).await.status);
        }
        out
    }

    /// The Prometheus text of `/stats/prometheus` once `ready` holds for it, or as it is after 5 s
    /// (a request is counted just after its response is sent, so a test scrapes until it shows).
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let addr = self.running.metrics_addr.expect("metrics are served");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let request = b"GET /stats/prometheus HTTP/1.1\r\nHost: metrics\r\n\r\n";
            let out = tokio::task::spawn_blocking(move || crate::client::raw(addr, request)).await.unwrap();
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            let text = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
            if ready(&text) || Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:<port>` for Gateway port `port`.
    pub fn url(&self, port: u16) -> String {
        format!("http://{}", self.addr(port))
    }
}
