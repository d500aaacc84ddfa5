//! Gateway API TLSRoutes and TCPRoutes, served as Istio serves them: a `Passthrough` TLS listener
//! routes each connection by its SNI to the TLSRoute that names it (within the listener's host
//! name), and a TCP listener forwards every connection to its TCPRoute's backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::certs::{Ca, Leaf};
use e2e::gateway::Setup;
use e2e::tls::{tcp_exchange, Client, TcpUpstream, TlsUpstream};
use e2e::yaml::kube_service;
use e2e::TestGateway;

/// A Service `name` in `infra` on port `port`, its endpoint on 127.0.0.1:`at`.
fn service(name: &str, port: u16, at: u16) -> String {
    kube_service("infra", name, "", port, "", at)
}

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: istio
  listeners:
  - {name: tls, port: 443, protocol: TLS, hostname: '*.example.com', tls: {mode: Passthrough}}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: abc, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: tls}]
  hostnames: [abc.example.com]
  rules: [{backendRefs: [{name: abc, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: other, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: tls}]
  hostnames: [other.example.com, other.example.org]
  rules: [{backendRefs: [{name: other, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: ledger, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: tcp}]
  rules: [{backendRefs: [{name: ledger, port: 9000}]}]
---
";

fn setup() -> Setup {
    Setup::gateway_api("edge", "infra")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_route_takes_the_connections_whose_sni_it_names_without_terminating_them() {
    let ca = Ca::new("backend ca");
    let abc = TlsUpstream::start("abc", &ca.issue(&Leaf::server(&["abc.example.com"]))).await;
    let other = TlsUpstream::start("other", &ca.issue(&Leaf::server(&["other.example.com"]))).await;
    let ledger = TcpUpstream::start("ledger").await;
    let yaml = GATEWAY.to_string()
        + &service("abc", 443, abc.addr.port())
        + &service("other", 443, other.addr.port())
        + &service("ledger", 9000, ledger.port());
    let gw = TestGateway::start_with(&yaml, setup());
    for (sni, backend) in [("abc.example.com", "abc"), ("other.example.com", "other")] {
        // The backend's own certificate answers: the gateway passed the TLS through.
        let r = Client::to(sni, &ca.cert).get(gw.addr(443), sni, "/", &[]).await.unwrap();
        assert_eq!((r.status, r.upstream()), (200, Some(backend)), "{sni}");
    }
    let refused = Client::to("nobody.example.com", &ca.cert).refusal(gw.addr(443)).await;
    assert!(!refused.is_empty(), "an SNI no TLSRoute names is refused");
    assert_eq!(abc.served.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(tcp_exchange(gw.addr(9000), b"entry").await.starts_with("ledger\n"), "the TCPRoute");
}

#[test]
fn tls_route_hosts_outside_the_listener_hostname_are_not_served_and_the_status_says_which_attached() {
    let yaml = GATEWAY.to_string() + &service("abc", 443, 1) + &service("other", 443, 2) + &service("ledger", 9000, 3);
    let mut sel = conf::Selection { namespace: "infra".into(), ..conf::Selection::default() };
    sel.labels = setup().labels.unwrap();
    let built = conf::build_str("l4.yaml", &yaml, &sel);
    assert!(built.is_valid(), "{}", built.diagnostics);
    let text = conf::render::text(&built.table);
    assert!(text.contains("Gateway infra/edge listener tls (attachedRoutes 2)"), "{text}");
    assert!(text.contains("Gateway infra/edge listener tcp (attachedRoutes 1)"), "{text}");
    assert!(!text.contains("other.example.org"), "outside *.example.com: {text}");
    assert!(text.contains("TCPRoute infra/ledger parent infra/edge/tcp\n      Accepted=True"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_route_on_a_terminating_listener_forwards_the_decrypted_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("edge ca");
    let cert = ca.issue(&Leaf::server(&["db.example.com"]));
    let ledger = TcpUpstream::start("ledger").await;
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db-cert, namespace: infra}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(&cert.cert_pem()),
        indent(&cert.key_pem())
    );
    let yaml = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: istio
  listeners:
  - {name: db, port: 5432, protocol: TLS, hostname: db.example.com, tls: {mode: Terminate, certificateRefs: [{name: db-cert}]}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: db, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  hostnames: [db.example.com]
  rules: [{backendRefs: [{name: ledger, port: 9000}]}]
---
"
    .to_string()
        + &secret
        + &service("ledger", 9000, ledger.port());
    let gw = TestGateway::start_with(&yaml, setup());
    let mut conn = Client::to("db.example.com", &ca.cert).connect(gw.addr(5432)).await.unwrap();
    conn.stream.write_all(b"entry").await.unwrap();
    conn.stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.stream.read_to_end(&mut got)).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "ledger\nentry",
        "the gateway's certificate, then plain bytes to the backend"
    );
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}
