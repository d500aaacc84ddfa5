//! The gateway as an exit node: connections to the upstreams leave from a fixed source address
//! (GatewayPolicy `upstreamBind`, Envoy's `upstream_bind_config`), which an upstream in another
//! network namespace sees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::{IpAddr, SocketAddr};

use e2e::netns::Netns;
use e2e::{TestGateway, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An egress gateway: HTTP on 80 and TCP on 9000, both to `partner.example`, whose one endpoint is
/// `upstream`; then `policies`.
fn egress(upstream: SocketAddr, policies: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [partner.example]
  - port: {{number: 9000, name: tcp, protocol: TCP}}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: partner}}
spec:
  hosts: [partner.example]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {}, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: partner}}
spec:
  hosts: [partner.example]
  gateways: [egress]
  http:
  - route: [{{destination: {{host: partner.example}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: partner-tcp}}
spec:
  hosts: ['*']
  gateways: [egress]
  tcp:
  - route: [{{destination: {{host: partner.example, port: {{number: 80}}}}}}]
---
{policies}",
        upstream.ip(),
        upstream.port()
    )
}

/// The address the upstream saw the gateway's connection come from, for one request over HTTP
/// and one over the TCP route.
async fn sources(gw: &TestGateway, upstream: &Upstream) -> (SocketAddr, SocketAddr) {
    assert_eq!(get(gw, "partner.example", "/x").await.status, 200);
    let http = upstream.last().peer;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr(9000)).await.unwrap();
    tcp.write_all(b"GET /y HTTP/1.1\r\nhost: partner.example\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(upstream.last().path, "/y");
    (http, upstream.last().peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_leave_from_the_source_address_a_policy_sets() {
    let ns = Netns::create();
    let upstream = Upstream::start_with("partner", ns.listen()).unwrap();
    let [primary, secondary] = ns.host.map(IpAddr::V4);

    // Without a policy the kernel picks the link's primary address.
    let gw = TestGateway::start(&egress(upstream.addr, ""));
    let (http, tcp) = sources(&gw, &upstream).await;
    assert_eq!((http.ip(), tcp.ip()), (primary, primary));
    drop(gw);

    // For the whole workload.
    let workload = format!(
        "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {{name: egress-address}}\nspec:\n  upstreamBind: {{sourceAddress: {secondary}}}\n"
    );
    let gw = TestGateway::start(&egress(upstream.addr, &workload));
    let (http, tcp) = sources(&gw, &upstream).await;
    assert_eq!((http.ip(), tcp.ip()), (secondary, secondary));
    drop(gw);

    // For the ServiceEntry, with a port range: it wins over the workload's.
    let service_entry = format!(
        "{workload}---\napiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {{name: partner-address}}\nspec:\n  targetRefs: [{{kind: ServiceEntry, name: partner}}]\n  upstreamBind: {{sourceAddress: {primary}, sourcePorts: 42000-42099}}\n"
    );
    let gw = TestGateway::start(&egress(upstream.addr, &service_entry));
    let (http, tcp) = sources(&gw, &upstream).await;
    assert_eq!((http.ip(), tcp.ip()), (primary, primary));
    for port in [http.port(), tcp.port()] {
        assert!((42000..=42099).contains(&port), "source port {port} outside the range");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_address_this_host_does_not_have_fails_the_connection_rather_than_leaving_from_another() {
    let upstream = Upstream::start("partner").await;
    let policy = "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: egress-address}\nspec:\n  upstreamBind: {sourceAddress: 192.0.2.77}\n";
    let gw = TestGateway::start(&egress(upstream.addr, policy));
    assert_eq!(get(&gw, "partner.example", "/x").await.status, 503);
    assert!(upstream.seen().is_empty(), "nothing reached the upstream");
}

/// GET `path` with `Host: host` on the gateway's port 80.
async fn get(gw: &TestGateway, host: &str, path: &str) -> e2e::client::Reply {
    e2e::client::get(&e2e::client::http1(), &gw.url(80), host, path, &[]).await
}

/// Polls until `done` holds for the answer to `host`, for at most 15 s.
async fn until(gw: &TestGateway, host: &str, what: &str, done: impl Fn(u16, &str) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = get(gw, host, "/").await;
        if done(r.status, &r.body) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: still {} {}", r.status, r.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_name_that_stops_resolving_answers_503_uh_until_it_resolves_again() {
    use std::net::Ipv4Addr;
    let dns = e2e::dns::TestDns::start().await;
    let up = Upstream::start("external").await;
    dns.set("api.external.test", &[Ipv4Addr::LOCALHOST], 1);
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: egress}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [api.external.test]}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: external}}\nspec:\n  hosts: [api.external.test]\n  ports: [{{number: {}, name: http, protocol: HTTP}}]\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: external}}\nspec:\n  hosts: [api.external.test]\n  gateways: [egress]\n  http: [{{route: [{{destination: {{host: api.external.test}}}}]}}]\n",
        up.port()
    );
    let gw = TestGateway::start_with(&yaml, e2e::gateway::Setup { dns_server: Some(dns.addr), ..Default::default() });
    let host = "api.external.test";
    assert_eq!(get(&gw, host, "/").await.status, 200);

    // A lookup that fails says nothing about the name: the last addresses keep serving.
    dns.fail(host);
    let asked = dns.queries().len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while dns.queries().len() < asked + 2 {
        assert!(std::time::Instant::now() < deadline, "the name was not looked up again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(get(&gw, host, "/").await.status, 200, "a server failure keeps the last addresses");
    // Likewise when only the A query fails and the AAAA query finds nothing.
    dns.fail_ipv4(host);
    let asked = dns.queries().len();
    while dns.queries().len() < asked + 2 {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(15), "no lookup again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(get(&gw, host, "/").await.status, 200, "a failed A query keeps the last addresses");

    // The name is gone (NXDOMAIN): no endpoint is left, and the answer says why.
    dns.set(host, &[], 1);
    until(&gw, host, "NXDOMAIN removes the endpoints", |s, body| s == 503 && body == "no healthy upstream").await;

    // It resolves again: traffic flows without a reload.
    dns.set(host, &[Ipv4Addr::LOCALHOST], 1);
    until(&gw, host, "the name resolves again", |s, _| s == 200).await;
}

/// The value of the one sample of `metric` whose labels include every one of `labels`, if any.
fn sample_value(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_outside_the_registry_are_refused_and_counted_in_either_outbound_mode() {
    // A gateway forwards only to registry hosts, whatever `outboundTrafficPolicy` says: Istio's mode
    // governs sidecars' passthrough, which a gateway has none of.
    let yaml = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: PASSTHROUGH}
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: unregistered}
spec:
  hosts: ['*']
  gateways: [egress]
  http: [{route: [{destination: {host: unregistered.example.com}}]}]
  tls: [{match: [{sniHosts: [unregistered.example.com]}], route: [{destination: {host: unregistered.example.com, port: {number: 443}}}]}]
  tcp: [{match: [{port: 9000}], route: [{destination: {host: unregistered.example.com, port: {number: 9000}}}]}]
";
    let ca = e2e::certs::Ca::new("any");
    for mode in ["REGISTRY_ONLY", "ALLOW_ANY"] {
        let setup = e2e::gateway::Setup {
            mesh: Some(format!("outboundTrafficPolicy: {{mode: {mode}}}\n")),
            ..Default::default()
        };
        let gw = TestGateway::start_with(yaml, setup);
        assert_eq!(get(&gw, "api.stripe.com", "/").await.status, 503, "{mode}: HTTP");
        let tls = e2e::tls::Client::to("unregistered.example.com", &ca.cert).connect(gw.addr(443)).await;
        assert!(tls.is_err(), "{mode}: TLS passthrough closed");
        let other = e2e::tls::Client::to("api.other.org", &ca.cert).connect(gw.addr(443)).await;
        assert!(other.is_err(), "{mode}: an SNI no server names");
        let mut tcp = tokio::net::TcpStream::connect(gw.addr(9000)).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(tcp.read(&mut buf).await.unwrap(), 0, "{mode}: TCP closed at once");

        let refused = "pylon_connections_refused_total";
        let metrics = gw
            .metrics_when(|m| {
                sample_value(m, refused, &["port=\"9000\""]).is_some()
                    && sample_value(m, refused, &["reason=\"no_server_for_sni\""]).is_some()
            })
            .await;
        let unregistered = "destination_service=\"unregistered.example.com\"";
        for (port, reason, destination) in [
            ("443", "not_in_registry", unregistered),
            ("9000", "not_in_registry", unregistered),
            ("443", "no_server_for_sni", "destination_service=\"unknown\""),
        ] {
            let labels = [&format!("port=\"{port}\"") as &str, &format!("reason=\"{reason}\""), destination];
            assert_eq!(sample_value(&metrics, refused, &labels), Some(1.0), "{mode} {labels:?}:\n{metrics}");
        }
        let nc = ["response_code=\"503\"", "response_flags=\"NC\"", unregistered];
        assert_eq!(sample_value(&metrics, "istio_requests_total", &nc), Some(1.0), "{mode}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_of_an_external_name_is_an_endpoint() {
    use std::net::Ipv4Addr;
    let dns = e2e::dns::TestDns::start().await;
    let one = Upstream::start("one").await;
    let two = Upstream::start_on("two", &format!("127.0.0.2:{}", one.port())).await.unwrap();
    dns.set("api.external.test", &[Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)], 30);
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: egress}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [api.external.test]}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: external}}\nspec:\n  hosts: [api.external.test]\n  ports: [{{number: {}, name: http, protocol: HTTP}}]\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: external}}\nspec:\n  hosts: [api.external.test]\n  gateways: [egress]\n  http: [{{route: [{{destination: {{host: api.external.test}}}}]}}]\n",
        one.port()
    );
    let gw = TestGateway::start_with(&yaml, e2e::gateway::Setup { dns_server: Some(dns.addr), ..Default::default() });
    for _ in 0..20 {
        assert_eq!(get(&gw, "api.external.test", "/").await.status, 200);
    }
    assert!(one.seen().len() >= 3 && two.seen().len() >= 3, "{} and {}", one.seen().len(), two.seen().len());
}
