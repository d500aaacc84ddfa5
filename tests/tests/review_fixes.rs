//! Behaviours pinned after review: TLS origination never falls back to plaintext, HTTP/2 keeps its authority through
//! rewrites, connections survive local 503s, header-operation precedence, and X-Forwarded-For lines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1, raw};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origination_never_falls_back_to_plaintext() {
    let up = Upstream::start("secure").await;
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: tls}\nspec:\n  host: secure.internal\n  trafficPolicy: {tls: {mode: SIMPLE}}\n---\n";
    let yaml = gateway(80, &["*"])
        + &service("secure", "secure.internal", &[&up])
        + dr
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: secure.internal}}]");
    let gw = TestGateway::start(&yaml);
    // The upstream speaks plaintext HTTP: the handshake fails and the request is answered 503 UF.
    let r = get(&http1(), &gw.url(80), "x", "/secret", &[("authorization", "Bearer token")]).await;
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("upstream connect error"), "{}", r.body);
    assert!(up.seen().is_empty(), "nothing may leave in plaintext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_keep_their_authority_through_a_rewrite() {
    let up = Upstream::start("up").await;
    let rules =
        "- match: [{uri: {prefix: /old/}}]\n  rewrite: {uri: /new/}\n  route: [{destination: {host: up.internal}}]";
    let yaml = gateway(80, &["api.example.com"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["api.example.com"], rules);
    let gw = TestGateway::start(&yaml);
    // HTTP/2 carries the host only in :authority; resolve the name to the gateway.
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("api.example.com", gw.addr(80))
        .build()
        .unwrap();
    let port = gw.addr(80).port();
    let r = get(&client, &format!("http://api.example.com:{port}"), "", "/old/x", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.last().path, "/new/x");
    let host = format!("api.example.com:{port}");
    assert_eq!(up.last().header("host"), Some(host.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_503s_keep_the_connection_and_connect_failures_close_it() {
    let up = Upstream::start("up").await;
    let closed_port = e2e::closed_port::ClosedPort::new().unwrap();
    let closed = closed_port.port;
    let down = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: down}}\nspec:\n  hosts: [down.internal]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {closed}}}}}]\n---\n"
    );
    let rules = "- match: [{uri: {prefix: /nc}}]\n  route: [{destination: {host: missing.internal}}]\n- match: [{uri: {prefix: /uf}}]\n  route: [{destination: {host: down.internal}}]\n- route: [{destination: {host: up.internal}}]";
    let yaml =
        gateway(80, &["*"]) + &service("up", "up.internal", &[&up]) + &down + &virtual_service("vs", &["*"], rules);
    let gw = TestGateway::start(&yaml);
    // Two requests, one after the other, on one connection: the 503 NC is answered locally and the
    // connection serves on.
    let both = e2e::client::sequential(
        gw.addr(80),
        &[b"GET /nc HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"],
    );
    assert!(both[0].starts_with("HTTP/1.1 503"), "{both:?}");
    assert!(both[1].contains("x-upstream: up"), "the second request was not served: {both:?}");
    let uf = raw(gw.addr(80), b"GET /uf HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(uf.starts_with("HTTP/1.1 503"), "{uf}");
    assert!(uf.to_ascii_lowercase().contains("connection: close"), "{uf}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_operations_follow_istio_precedence() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let single = "- match: [{uri: {prefix: /single}}]\n  headers: {request: {set: {x-who: rule}, add: {x-multi: one}}, response: {set: {x-resp: rule}}}\n  route:\n  - destination: {host: a.internal}\n    headers: {request: {set: {x-who: dest}}, response: {set: {x-resp: dest}}}";
    let weighted = "- match: [{uri: {prefix: /weighted}}]\n  headers: {request: {set: {x-who: rule}}, response: {set: {x-resp: rule}}}\n  route:\n  - destination: {host: b.internal}\n    weight: 100\n    headers: {request: {set: {x-who: dest}}, response: {set: {x-resp: dest}}}\n  - destination: {host: a.internal}\n    weight: 0";
    let same = "- match: [{uri: {prefix: /same}}]\n  headers: {request: {set: {x-twice: '1'}, add: {x-twice: '2'}}}\n  route: [{destination: {host: a.internal}}]";
    let yaml = gateway(80, &["*"])
        + &service("a", "a.internal", &[&a])
        + &service("b", "b.internal", &[&b])
        + &virtual_service("vs", &["*"], &format!("{single}\n{weighted}\n{same}"));
    let gw = TestGateway::start(&yaml);
    let c = http1();
    // One destination: the destination's operations come last and win.
    let r = get(&c, &gw.url(80), "x", "/single", &[]).await;
    assert_eq!(r.header("x-resp"), Some("dest"));
    assert_eq!(a.last().header("x-who"), Some("dest"));
    // Weighted destinations: the rule's operations win.
    let r = get(&c, &gw.url(80), "x", "/weighted", &[]).await;
    assert_eq!(r.header("x-resp"), Some("rule"));
    assert_eq!(b.last().header("x-who"), Some("rule"));
    // set and add of one header: both values.
    get(&c, &gw.url(80), "x", "/same", &[]).await;
    let seen = a.last();
    let twice: Vec<&str> = seen.headers.iter().filter(|(k, _)| k == "x-twice").map(|(_, v)| v.as_str()).collect();
    assert_eq!(twice, vec!["1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_x_forwarded_for_line_is_kept() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: up.internal}}]");
    let gw = TestGateway::start(&yaml);
    raw(gw.addr(80), b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 198.51.100.2\r\nConnection: close\r\n\r\n");
    assert_eq!(up.last().header("x-forwarded-for"), Some("198.51.100.1,198.51.100.2,127.0.0.1"));
}
