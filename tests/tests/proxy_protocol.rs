//! The PROXY protocol (MeshConfig `gatewayTopology.proxyProtocol`): the client address an L4 load
//! balancer passes in front of each connection is the one requests, policies and headers see;
//! a connection without a valid header is closed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::SocketAddr;
use std::time::Duration;

use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MESH: &str = "defaultConfig:\n  gatewayTopology:\n    proxyProtocol: {}\n";

fn config(up: &Upstream) -> String {
    gateway(80, &["*"])
        + &service("app", "app.internal", &[up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: app.internal}}]")
}

/// Sends `bytes` then an HTTP/1.1 request on one connection; what the gateway answers.
async fn send(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = bytes.to_vec();
    out.extend_from_slice(b"GET /who HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let _ = tcp.write_all(&out).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn v2(source: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x21, 0x11, 0, 12]);
    h.extend(source);
    h.extend([10, 0, 0, 1]);
    h.extend(sport.to_be_bytes());
    h.extend(80u16.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_headers_give_the_real_client_address() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start_with(&config(&up), Setup { mesh: Some(MESH.into()), ..Setup::default() });
    let answer = send(gw.addr(80), b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 80\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.last().header("x-forwarded-for"), Some("203.0.113.9"));
    assert_eq!(up.last().header("x-envoy-external-address"), Some("203.0.113.9"));
    let answer = send(gw.addr(80), &v2([198, 51, 100, 7], 40000)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.last().header("x-forwarded-for"), Some("198.51.100.7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_valid_header_is_closed() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start_with(&config(&up), Setup { mesh: Some(MESH.into()), ..Setup::default() });
    assert_eq!(send(gw.addr(80), b"").await, "", "a plain request is not served");
    assert_eq!(send(gw.addr(80), b"PROXY TCP4 203.0.113.9 10.0.0.1 99999 80\r\n").await, "", "bad port");
    assert_eq!(send(gw.addr(80), b"PROXY TCP4 ::1 10.0.0.1 1 80\r\n").await, "", "wrong family");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_see_the_address_the_header_carries() {
    let up = Upstream::start("app").await;
    let deny = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-net}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {ipBlocks: [203.0.113.0/24]}}]\n";
    let gw = TestGateway::start_with(&(config(&up) + deny), Setup { mesh: Some(MESH.into()), ..Setup::default() });
    assert_eq!(send(gw.addr(80), b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 80\r\n").await, "", "refused on accept");
    let answer = send(gw.addr(80), b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
