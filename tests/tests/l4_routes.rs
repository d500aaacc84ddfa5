//! L4 at the gateway: PASSTHROUGH servers routed by ClientHello SNI with VirtualService `tls` routes,
//! TLS-terminated `protocol: TLS` servers and opaque TCP servers with `tcp` routes, weights,
//! half-close, and connections without a route closed at once (istio.io/latest/docs/reference/config/networking/virtual-service/#TLSRoute, #TCPRoute).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::SocketAddr;

use e2e::certs::{Ca, Leaf};
use e2e::gateway::TempDir;
use e2e::tls::{tcp_exchange, Client, TcpUpstream, TlsUpstream};
use e2e::TestGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GW: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n";

/// A STATIC ServiceEntry `host` on `port` (protocol `protocol`) with one endpoint at `addr`.
fn entry(name: &str, host: &str, port: u16, protocol: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: {port}, name: p, protocol: {protocol}}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{p: {}}}}}]\n---\n",
        addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_reaches_the_upstream_whose_certificate_the_client_verifies() {
    let ca = Ca::new("upstream-ca");
    let (one, two) = (ca.issue(&Leaf::server(&["one.example.com"])), ca.issue(&Leaf::server(&["two.example.com"])));
    let (u1, u2) = (TlsUpstream::start("one", &one).await, TlsUpstream::start("two", &two).await);
    let yaml = format!("{GW}  - port: {{number: 443, name: tls, protocol: TLS}}\n    hosts: ['*.example.com']\n    tls: {{mode: PASSTHROUGH}}\n---\n")
        + &entry("one", "one.internal", 443, "TLS", u1.addr)
        + &entry("two", "two.internal", 443, "TLS", u2.addr)
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: sni}\nspec:\n  hosts: ['*.example.com']\n  gateways: [gw]\n  tls:\n  - match: [{sniHosts: [one.example.com]}]\n    route: [{destination: {host: one.internal, port: {number: 443}}}]\n  - match: [{sniHosts: [two.example.com]}]\n    route: [{destination: {host: two.internal, port: {number: 443}}}]\n---\n";
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(443);
    // The client checks the upstream's own certificate: the gateway never terminates.
    let c = Client::to("one.example.com", &ca.cert).connect(addr).await.unwrap();
    assert_eq!(c.server_serial(), one.serial());
    let r = Client::to("two.example.com", &ca.cert).get(addr, "two.example.com", "/x", &[]).await.unwrap();
    assert_eq!((r.status, r.upstream()), (200, Some("two")));
    assert!(!r.header("x-seen-headers").unwrap().contains("x-forwarded-for"), "bytes pass untouched");
    assert!(Client::to("three.example.com", &ca.cert).connect(addr).await.is_err(), "no tls route for the SNI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_routes_split_connections_by_weight_and_pass_half_close() {
    let (a, b) = (TcpUpstream::start("a").await, TcpUpstream::start("b").await);
    let yaml = format!("{GW}  - port: {{number: 9000, name: tcp, protocol: TCP}}\n    hosts: ['*']\n---\n")
        + &entry("a", "a.internal", 9000, "TCP", a.addr)
        + &entry("b", "b.internal", 9000, "TCP", b.addr)
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  tcp:\n  - route:\n    - {destination: {host: a.internal}, weight: 80}\n    - {destination: {host: b.internal}, weight: 20}\n---\n";
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(9000);
    // Half-close: the client ends its side, the upstream still answers, then closes.
    let out = tcp_exchange(addr, b"hello").await;
    assert!(out == "a\nhello" || out == "b\nhello", "{out:?}");
    let n = 200;
    for _ in 1..n {
        tcp_exchange(addr, b"x").await;
    }
    let (na, nb) = (
        a.connections.load(std::sync::atomic::Ordering::Relaxed),
        b.connections.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(na + nb, n);
    // 80% of 200 = 160, standard deviation about 5.7.
    assert!((130..=190).contains(&na), "a got {na} of {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_terminates_and_proxies_tcp() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new();
    let (cert, key) = ca.issue(&Leaf::server(&["db.example.com"])).write(&dir.0, "db");
    let db = TcpUpstream::start("db").await;
    let yaml = format!(
        "{GW}  - port: {{number: 5432, name: tls-db, protocol: TLS}}\n    hosts: [db.example.com]\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n---\n",
        cert.display(),
        key.display()
    ) + &entry("db", "db.internal", 5432, "TCP", db.addr)
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db.example.com]\n  gateways: [gw]\n  tcp:\n  - route: [{destination: {host: db.internal}}]\n---\n";
    let gw = TestGateway::start(&yaml);
    let mut conn = Client::to("db.example.com", &ca.cert).connect(gw.addr(5432)).await.unwrap();
    assert_eq!(conn.alpn(), None, "no HTTP ALPN on a TCP server");
    conn.stream.write_all(b"select 1").await.unwrap();
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"select 1") {
        let n = conn.stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"db\nselect 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_whose_destination_is_unknown_is_closed_at_once() {
    let yaml = format!("{GW}  - port: {{number: 9000, name: tcp, protocol: TCP}}\n    hosts: ['*']\n---\n")
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  tcp:\n  - route: [{destination: {host: nowhere.internal, port: {number: 9000}}}]\n---\n";
    let gw = TestGateway::start(&yaml);
    let started = std::time::Instant::now();
    let out = tcp_exchange(gw.addr(9000), b"anyone?").await;
    assert_eq!(out, "");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "closed at once, not after a timeout");
}

/// Envoy's TCP proxy checks the cluster's `max_connections` alone: a connection beyond
/// `tcp.maxConnections` is closed at once, and there is room again once one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_beyond_max_connections_are_closed() {
    let a = TcpUpstream::start("a").await;
    let yaml = format!("{GW}  - port: {{number: 9000, name: tcp, protocol: TCP}}\n    hosts: ['*']\n---\n")
        + &entry("a", "a.internal", 9000, "TCP", a.addr)
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec:\n  host: a.internal\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}\n---\n"
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  tcp:\n  - route: [{destination: {host: a.internal}}]\n---\n";
    let gw = TestGateway::start(&yaml);
    let addr = gw.addr(9000);
    let greeting = |mut tcp: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 2];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf)).await.unwrap().unwrap_or(0);
        (buf[..n].to_vec(), tcp)
    };
    let (first, held) = greeting(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(first, b"a\n");
    let (second, _) = greeting(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(second, b"", "closed: the pool is full");
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (third, _) = greeting(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(third, b"a\n", "room again");
}
