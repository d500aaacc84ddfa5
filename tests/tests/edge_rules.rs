//! HTTP/1.1 edge rules as Envoy and nginx apply them, probed over raw sockets: framing and
//! request-line errors are 400 (never forwarded), a long target is 414, absolute-form targets go
//! upstream in origin form, `Expect: 100-continue` is answered, and a malformed upstream response
//! is a 502 with Envoy's `UPE` reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::io::{Read, Write};
use std::time::Duration;

use e2e::client::raw;
use e2e::faulty::{Behaviour, Faulty};
use e2e::yaml::{gateway, service, service_at, virtual_service};
use e2e::{TestGateway, Upstream};

fn config(up: &Upstream) -> String {
    gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &virtual_service("vs", &["*"], "- match: [{uri: {prefix: /}}]\n  route: [{destination: {host: up.internal}}]")
}

/// The status code of a raw exchange.
fn status(out: &str) -> u16 {
    out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

async fn exchange(gw: &TestGateway, request: Vec<u8>) -> String {
    let addr = gw.addr(80);
    tokio::task::spawn_blocking(move || raw(addr, &request)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_framing_and_request_lines_are_400_and_never_forwarded() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let cases: [(&str, &[u8]); 6] = [
        ("a raw space in the target", b"GET /a b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("a raw space in the query", b"GET /q?x=a b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("Content-Length: 5, 5", b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello"),
        ("two Content-Length", b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"),
        ("HTTP/1.1 without Host", b"GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n"),
        ("bad chunk size", b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ];
    for (what, request) in cases {
        let out = exchange(&gw, request.to_vec()).await;
        assert_eq!(status(&out), 400, "{what}: {out}");
    }
    let forwarded: Vec<String> = up.seen().iter().map(|s| s.path.clone()).collect();
    assert!(
        forwarded.iter().all(|p| p == "/c"),
        "only the chunked request's head may reach the upstream: {forwarded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_over_32_kib_is_414() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(40 * 1024));
    assert_eq!(status(&exchange(&gw, long.into_bytes()).await), 414);
    let fine = format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(8 * 1024));
    assert_eq!(status(&exchange(&gw, fine.into_bytes()).await), 200);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_goes_upstream_in_origin_form() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let out = exchange(
        &gw,
        b"GET http://shop.example.com/abs?q=1 HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status(&out), 200, "{out}");
    let seen = up.last();
    assert_eq!((seen.path.as_str(), seen.header("host")), ("/abs?q=1", Some("shop.example.com")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let addr = gw.addr(80);
    let (interim, out) = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let n = tcp.read(&mut buf).unwrap();
        let interim = String::from_utf8_lossy(&buf[..n]).into_owned();
        tcp.write_all(b"hello").unwrap();
        let mut out = String::new();
        let _ = tcp.read_to_string(&mut out);
        (interim, out)
    })
    .await
    .unwrap();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    // The echo upstream may answer before it reads the body, so the final answer can come in the
    // same read as the 100.
    let all = interim + &out;
    let final_answer = all.split_once("\r\n\r\n").map(|(_, rest)| rest).unwrap_or_default();
    assert_eq!(status(final_answer), 200, "{all}");
    let seen = up.last();
    assert_eq!((seen.method.as_str(), seen.header("content-length")), ("POST", Some("5")));
    assert_eq!(seen.header("expect"), None, "the expectation is answered here, not passed on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_reply_to_an_expect_100_continue_request_comes_at_once() {
    let up = Upstream::start("up").await;
    let only_a = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service(
            "vs",
            &["*"],
            "- match: [{uri: {prefix: /a}}]\n  route: [{destination: {host: up.internal}}]",
        );
    let gw = TestGateway::start(&only_a);
    let addr = gw.addr(80);
    let out = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        // `/e` has no route: 404. The client never sends its body; it needs the reply now.
        tcp.set_read_timeout(Some(Duration::from_millis(900))).unwrap();
        tcp.write_all(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(status(&out), 404, "the final reply, without reading the body first: {out}");
    assert!(out.to_ascii_lowercase().contains("connection: close"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upstream_response_is_a_502_with_envoys_protocol_error() {
    let garbage = Faulty::start(Behaviour::Raw(b"THIS IS NOT HTTP\r\n\r\n")).await;
    let se = service_at("bad", "bad.internal", &[(garbage.port, 1)]);
    let yaml = gateway(80, &["*"])
        + &se
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: bad.internal}}]\n  retries: {attempts: 0}");
    let gw = TestGateway::start(&yaml);
    let out = exchange(&gw, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(status(&out), 502, "{out}");
    assert!(out.ends_with("reset reason: protocol error"), "{out}");
}

/// Response header names go downstream as Envoy writes HTTP/1 headers: in lower case (Pingora
/// titles the standard ones it knows, `Server` among them, as for requests); the upstream's own
/// reason phrase is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_header_names_go_downstream_in_lower_case_with_the_upstreams_reason() {
    let up = Faulty::start(Behaviour::Raw(
        b"HTTP/1.1 299 Fine By Me\r\nX-Custom-Thing: a\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    ))
    .await;
    let yaml = gateway(80, &["*"])
        + &service_at("up", "up.internal", &[(up.port, 1)])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: up.internal}}]\n  retries: {attempts: 0}");
    let gw = TestGateway::start(&yaml);
    let out = exchange(&gw, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()).await;
    assert!(out.starts_with("HTTP/1.1 299 Fine By Me\r\n"), "{out}");
    assert!(out.contains("\r\nx-custom-thing: a\r\n"), "{out}");
    assert!(out.contains("\r\nContent-Type: text/plain\r\n"), "{out}");
    assert!(out.contains("\r\nServer: pylon\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nok"), "{out}");
}

/// Pipelined requests arriving in two writes, the first cut inside a head's blank line: the gateway
/// holds the start of request 2 when request 1 is answered, and must not wait for more bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_split_inside_a_head_are_all_answered() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let addr = gw.addr(80);
    let out = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        tcp.write_all(b"\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let request = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let out = exchange(&gw, request.to_vec()).await;
    let answered: Vec<&str> = out.match_indices("\"path\":\"/").map(|(i, _)| &out[i + 9..i + 10]).collect();
    assert_eq!(answered, ["1", "2", "3"], "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3);
}
