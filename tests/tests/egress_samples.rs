//! Istio's egress-gateway samples (conf/tests/istio-samples S24–S27) served by an egress workload
//! (`--labels istio=egressgateway`) with their YAML unchanged: the public names resolve, through a
//! test DNS server, to loopback addresses where test upstreams listen on the samples' own ports
//! (80, 443; the tests run as root, as the namespace tests do).
//!
//! TLS origination without `caCertificates` verifies the upstream against the system's CAs, which
//! OpenSSL finds through `SSL_CERT_FILE`: this binary points it at the test CA before any gateway
//! starts (and holds no test that needs the real system CAs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};

use e2e::certs::{Ca, Leaf};
use e2e::dns::TestDns;
use e2e::gateway::Setup;
use e2e::tls::{Client, TlsUpstream};
use e2e::{TestGateway, Upstream};

fn sample(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/tests/istio-samples").join(name);
    std::fs::read_to_string(path).unwrap() + "\n---\n"
}

/// A loopback address of this test's own, standing for a public host's address.
fn public_address() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        100 + u8::try_from(pid % 100).unwrap(),
        u8::try_from(pid / 100 % 250).unwrap(),
        NEXT.fetch_add(1, Ordering::Relaxed),
    )
}

/// The CA the public hosts' certificates chain to, trusted as a system CA.
fn public_ca() -> &'static Ca {
    static CA: std::sync::OnceLock<Ca> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let ca = Ca::new("public-root");
        let file = std::env::temp_dir().join(format!("pylon-egress-samples-{}.pem", std::process::id()));
        std::fs::write(&file, ca.cert.to_pem().unwrap()).unwrap();
        std::env::set_var("SSL_CERT_FILE", &file);
        ca
    })
}

/// GET edition.cnn.com/politics through the gateway's port 80.
async fn politics(gw: &TestGateway) -> e2e::client::Reply {
    e2e::client::get(&e2e::client::http1(), &gw.url(80), "edition.cnn.com", "/politics", &[]).await
}

fn egress_workload(dns: &TestDns) -> Setup {
    Setup {
        labels: Some([("istio".to_string(), "egressgateway".to_string())].into()),
        dns_server: Some(dns.addr),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_egress_sample_reaches_the_external_host_through_dns() {
    // S24: edition.cnn.com:80 through the egress gateway to the DNS ServiceEntry.
    public_ca(); // before any gateway of this binary starts
    let dns = TestDns::start().await;
    let ip = public_address();
    let cnn = Upstream::start_on("cnn", &format!("{ip}:80")).await.unwrap();
    dns.set("edition.cnn.com", &[ip], 30);
    let gw = TestGateway::start_with(&sample("S24.yaml"), egress_workload(&dns));
    let r = politics(&gw).await;
    assert_eq!((r.status, r.upstream()), (200, Some("cnn")));
    assert_eq!((cnn.last().header("host"), cnn.last().path.as_str()), (Some("edition.cnn.com"), "/politics"));
    assert!(dns.queries().contains(&"edition.cnn.com".to_string()));
    // Waits for the counter itself: a request's series are made one metric after the other after
    // its response, and a scrape in between can hold some of them only.
    let counted = |l: &str| {
        l.starts_with("istio_requests_total{")
            && l.contains("destination_service=\"edition.cnn.com\"")
            && l.contains("response_code=\"200\"")
    };
    let metrics = gw.metrics_when(|m| m.lines().any(counted)).await;
    assert!(metrics.lines().any(counted), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_egress_sample_reaches_the_external_host_by_sni() {
    // S25: the client's TLS passes the gateway untouched; the client verifies edition.cnn.com itself.
    let ca = public_ca();
    let dns = TestDns::start().await;
    let ip = public_address();
    let cert = ca.issue(&Leaf::server(&["edition.cnn.com"]));
    let cnn = TlsUpstream::start_on("cnn", &cert, SocketAddr::new(IpAddr::V4(ip), 443)).await;
    dns.set("edition.cnn.com", &[ip], 30);
    let gw = TestGateway::start_with(&sample("S25.yaml"), egress_workload(&dns));
    let c = Client::to("edition.cnn.com", &ca.cert).connect(gw.addr(443)).await.unwrap();
    assert_eq!(c.server_serial(), cert.serial(), "the external host's own certificate");
    let r = Client::to("edition.cnn.com", &ca.cert).get(gw.addr(443), "edition.cnn.com", "/politics", &[]).await;
    let r = r.unwrap();
    assert_eq!((r.status, r.upstream()), (200, Some("cnn")));
    assert!(cnn.sni.lock().unwrap().iter().all(|s| s == "edition.cnn.com"));
    assert!(!r.header("x-seen-headers").unwrap().contains("x-forwarded-for"), "bytes pass untouched");
    // Only the SNI the Gateway names passes.
    assert!(Client::to("www.example.com", &ca.cert).connect(gw.addr(443)).await.is_err());
    let opened = "istio_tcp_connections_opened_total{";
    let metrics = gw.metrics_when(|m| m.lines().any(|l| l.starts_with(opened))).await;
    assert!(
        metrics.lines().any(|l| l.starts_with(opened) && l.contains("destination_service=\"edition.cnn.com\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_egress_passes_every_matching_sni_to_the_one_host_istio_documents() {
    // Istio's wildcard-egress task: a gateway forwards `*.wikipedia.org` to one DNS host,
    // www.wikipedia.org, which serves every language's site; it cannot forward to an arbitrary
    // host the SNI names (Istio documents that this needs a dynamic forward proxy).
    let ca = public_ca();
    let dns = TestDns::start().await;
    let ip = public_address();
    let cert = ca.issue(&Leaf::server(&["*.wikipedia.org"]));
    let www = TlsUpstream::start_on("www", &cert, SocketAddr::new(ip.into(), 443)).await;
    dns.set("www.wikipedia.org", &[ip], 30);
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: www-wikipedia}
spec:
  hosts: [www.wikipedia.org]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*.wikipedia.org']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-wikipedia-through-egress-gateway}
spec:
  hosts: ['*.wikipedia.org']
  gateways: [mesh, istio-egressgateway]
  tls:
  - match: [{gateways: [mesh], port: 443, sniHosts: ['*.wikipedia.org']}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: wikipedia, port: {number: 443}}}]
  - match: [{gateways: [istio-egressgateway], port: 443, sniHosts: ['*.wikipedia.org']}]
    route: [{destination: {host: www.wikipedia.org, port: {number: 443}}, weight: 100}]
";
    let gw = TestGateway::start_with(yaml, egress_workload(&dns));
    for site in ["en.wikipedia.org", "de.wikipedia.org"] {
        let r = Client::to(site, &ca.cert).get(gw.addr(443), site, "/wiki/Main_Page", &[]).await.unwrap();
        assert_eq!((r.status, r.upstream()), (200, Some("www")), "{site}");
    }
    assert_eq!(www.sni.lock().unwrap().as_slice(), ["en.wikipedia.org", "de.wikipedia.org"], "the client's SNI");
    assert!(Client::to("en.wikipedia.com", &ca.cert).connect(gw.addr(443)).await.is_err(), "outside the wildcard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origination_egress_sample_sends_https_to_the_external_host() {
    // S26 (with S24's ServiceEntry, as Istio's task applies it first): plain HTTP to the gateway
    // on 80 leaves as HTTPS to edition.cnn.com:443, verified against the (system) CA.
    let ca = public_ca();
    let dns = TestDns::start().await;
    let ip = public_address();
    let cnn =
        TlsUpstream::start_on("cnn", &ca.issue(&Leaf::server(&["edition.cnn.com"])), SocketAddr::new(ip.into(), 443))
            .await;
    dns.set("edition.cnn.com", &[ip], 1);
    let service_entry = sample("S24.yaml").split("\n---\n").next().unwrap().to_string() + "\n---\n";
    let gw = TestGateway::start_with(&(service_entry + &sample("S26.yaml")), egress_workload(&dns));
    let r = politics(&gw).await;
    assert_eq!(r.status, 200);
    let seen = r.header("x-seen-headers").unwrap().to_string();
    assert_eq!(r.body, "cnn /politics HTTP/1.1", "over TLS, to the external host");
    assert!(seen.contains("host: edition.cnn.com"), "{seen}");
    assert_eq!(cnn.sni.lock().unwrap().as_slice(), ["edition.cnn.com"], "SNI from the request's host");

    // An upstream whose certificate the trusted CAs did not issue is refused, never spoken to.
    let rogue_ip = public_address();
    let rogue = TlsUpstream::start_on(
        "rogue",
        &Ca::new("rogue").issue(&Leaf::server(&["edition.cnn.com"])),
        SocketAddr::new(rogue_ip.into(), 443),
    )
    .await;
    dns.set("edition.cnn.com", &[rogue_ip], 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if politics(&gw).await.status == 503 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the DNS change was not picked up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rogue.served.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_only_egress_sample_binds_nothing_at_the_gateway() {
    // S27 (TLS origination by the client's sidecar): no rule names a gateway, so the egress
    // gateway neither listens for it nor routes it. It loads without an error.
    let built = conf::build_str("S27.yaml", &sample("S27.yaml"), &egress_workload_selection());
    assert!(built.is_valid(), "{}", built.diagnostics);
    assert!(built.table.listeners.is_empty());
    assert!(built.table.route_configs.is_empty());
}

fn egress_workload_selection() -> conf::Selection {
    conf::Selection {
        labels: [("istio".to_string(), "egressgateway".to_string())].into(),
        ..conf::Selection::default()
    }
}
