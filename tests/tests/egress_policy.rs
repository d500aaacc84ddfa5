//! Per-source egress policy: an AuthorizationPolicy on the egress workload lets only namespace
//! `payments` (its clients' SPIFFE certificates on a MUTUAL server) reach the payment provider,
//! over HTTP and over TLS-terminated TCP, and lets a passthrough connection out by its SNI; every
//! refusal is counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::certs::{Ca, Issued, Leaf};
use e2e::gateway::TempDir;
use e2e::tls::{Client, TcpUpstream, TlsUpstream};
use e2e::{TestGateway, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn entry(name: &str, host: &str, port: u16, protocol: &str, upstream_port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: {port}, name: p, protocol: {protocol}}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{p: {upstream_port}}}}}]\n---\n"
    )
}

/// A client certificate of workload `sa` in namespace `ns` (Istio's SPIFFE identity).
fn workload(ca: &Ca, ns: &str, sa: &str) -> Issued {
    ca.issue(&Leaf { uris: vec![format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")], ..Leaf::client(sa) })
}

/// The Gateway, routes and policy (`MUTUAL_TLS`: the servers' `tls`).
const CONFIG: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [api.stripe.example, api.other.example]
    tls: MUTUAL_TLS
  - port: {number: 9443, name: tls-tcp, protocol: TLS}
    hosts: [ledger.example]
    tls: MUTUAL_TLS
  - port: {number: 443, name: passthrough, protocol: TLS}
    hosts: ['*.example']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: egress}
spec:
  hosts: ['*.example']
  gateways: [egress]
  http:
  - match: [{authority: {exact: api.stripe.example}}]
    route: [{destination: {host: stripe.internal}}]
  - route: [{destination: {host: other.internal}}]
  tls:
  - match: [{port: 443, sniHosts: [api.stripe.example, api.other.example]}]
    route: [{destination: {host: stripe-tls.internal, port: {number: 443}}}]
  tcp:
  - match: [{port: 9443}]
    route: [{destination: {host: ledger.internal, port: {number: 9000}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: egress}
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: [payments]}}]
    to: [{operation: {hosts: [api.stripe.example]}}]
  - from: [{source: {principals: [cluster.local/ns/payments/sa/checkout]}}]
    to: [{operation: {ports: ['9443']}}]
  - to: [{operation: {ports: ['443']}}]
    when: [{key: connection.sni, values: [api.stripe.example]}]
---
";

/// The egress gateway and what is behind it.
struct World {
    gw: TestGateway,
    mesh_ca: Ca,
    public_ca: Ca,
    stripe: Upstream,
    other: Upstream,
    _behind: (TcpUpstream, TlsUpstream, TempDir),
}

/// An egress gateway with an HTTPS MUTUAL server (8443), a TLS-terminated TCP server (9443) and a
/// passthrough server (443), and its policy.
async fn start() -> World {
    let mesh_ca = Ca::new("mesh-ca");
    let dir = TempDir::new();
    let (cert, key) = mesh_ca
        .issue(&Leaf::server(&["api.stripe.example", "api.other.example", "ledger.example"]))
        .write(&dir.0, "gateway");
    let ca_file = mesh_ca.write(&dir.0, "ca.crt");
    let (stripe, other) = (Upstream::start("stripe").await, Upstream::start("other").await);
    let ledger = TcpUpstream::start("ledger").await;
    let public_ca = Ca::new("public-ca");
    let stripe_tls =
        TlsUpstream::start("stripe-tls", &public_ca.issue(&Leaf::server(&["api.stripe.example", "api.other.example"])))
            .await;
    let mutual = format!(
        "{{mode: MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {}}}",
        cert.display(),
        key.display(),
        ca_file.display()
    );
    let yaml = CONFIG.replace("MUTUAL_TLS", &mutual)
        + &entry("stripe", "stripe.internal", 80, "HTTP", stripe.port())
        + &entry("other", "other.internal", 80, "HTTP", other.port())
        + &entry("stripe-tls", "stripe-tls.internal", 443, "TLS", stripe_tls.addr.port())
        + &entry("ledger", "ledger.internal", 9000, "TCP", ledger.port());
    let gw = TestGateway::start(&yaml);
    World { gw, mesh_ca, public_ca, stripe, other, _behind: (ledger, stripe_tls, dir) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_namespace_payments_reaches_the_payment_provider_over_http_tcp_and_passthrough() {
    let World { gw, mesh_ca, public_ca, stripe, other, _behind } = start().await;
    let (checkout, frontend) = (workload(&mesh_ca, "payments", "checkout"), workload(&mesh_ca, "web", "frontend"));
    let refunds = workload(&mesh_ca, "payments", "refunds");

    // HTTP, by namespace and destination host.
    let https = |sni: &str, who: &Issued| Client::to(sni, &mesh_ca.cert).with_cert(who);
    let status = |r: Result<e2e::client::Reply, String>| r.unwrap().status;
    let addr = gw.addr(8443);
    let to_stripe = https("api.stripe.example", &checkout).get(addr, "api.stripe.example", "/v1/charges", &[]).await;
    assert_eq!(status(to_stripe), 200, "payments → stripe");
    let elsewhere = https("api.other.example", &checkout).get(addr, "api.other.example", "/", &[]).await;
    assert_eq!(status(elsewhere), 403, "payments → another host");
    let web = https("api.stripe.example", &frontend).get(addr, "api.stripe.example", "/v1/charges", &[]).await;
    assert_eq!(status(web), 403, "web → stripe");
    assert_eq!((stripe.seen().len(), other.seen().len()), (1, 0));

    // TLS-terminated TCP, by principal.
    let ledger = gw.addr(9443);
    let ledger_exchange = |who: Issued| {
        let client = Client::to("ledger.example", &mesh_ca.cert).with_cert(&who);
        async move {
            let mut conn = client.connect(ledger).await.unwrap();
            let _ = conn.stream.write_all(b"entry").await;
            let _ = conn.stream.shutdown().await;
            let mut got = Vec::new();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.stream.read_to_end(&mut got)).await;
            String::from_utf8_lossy(&got).into_owned()
        }
    };
    assert!(ledger_exchange(checkout.clone()).await.starts_with("ledger\n"), "payments/checkout → ledger");
    assert_eq!(ledger_exchange(refunds).await, "", "payments/refunds is not the principal");
    assert_eq!(ledger_exchange(frontend.clone()).await, "", "web → ledger");

    // Passthrough, by SNI (the gateway sees no certificate: the client's TLS is end to end).
    let passthrough = Client::to("api.stripe.example", &public_ca.cert);
    let through = passthrough.get(gw.addr(443), "api.stripe.example", "/", &[]).await;
    assert_eq!(status(through), 200, "SNI api.stripe.example");
    assert!(Client::to("api.other.example", &public_ca.cert).connect(gw.addr(443)).await.is_err(), "SNI not allowed");

    let metrics = gw.metrics_when(|m| m.contains("reason=\"denied_by_policy\"")).await;
    let denied: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("pylon_connections_refused_total{") && l.contains("reason=\"denied_by_policy\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(denied, 3.0, "two TCP and one passthrough connection denied:\n{metrics}");
}
