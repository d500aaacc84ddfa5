//! Request mirroring (`mirror`, `mirrorPercentage`, `mirrors`): a copy of the request as forwarded
//! goes to the mirror, whose answer is dropped; the client gets the primary's answer whatever the
//! mirror does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::time::{Duration, Instant};

use e2e::client::{get, http1};
use e2e::faulty::{Behaviour, Faulty};
use e2e::yaml::{gateway, service, service_at, virtual_service};
use e2e::{TestGateway, Upstream};

/// Waits (at most 5 s) until `count()` reaches `n`.
async fn until(n: usize, count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gets_a_copy_as_forwarded_and_the_client_only_the_primary_answer() {
    let primary = Upstream::start("primary").await;
    let shadow = Upstream::start("shadow").await;
    let yaml = gateway(80, &["*"])
        + &service("primary", "primary.internal", &[&primary])
        + &service("shadow", "shadow.internal", &[&shadow])
        + &virtual_service(
            "vs",
            &["*"],
            "- route: [{destination: {host: primary.internal}}]\n  mirror: {host: shadow.internal}\n  headers: {request: {set: {x-route: r1}}}",
        );
    let gw = TestGateway::start(&yaml);
    let r = get(&http1(), &gw.url(80), "shop.example.com", "/a?b=1", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("primary")));
    assert_eq!(until(1, || shadow.seen().len()).await, 1);
    let copy = shadow.last();
    assert_eq!((copy.method.as_str(), copy.path.as_str()), ("GET", "/a?b=1"));
    assert_eq!(copy.header("host"), Some("shop.example.com"), "the Host is not changed (Istio 1.28+)");
    assert_eq!(copy.header("x-route"), Some("r1"), "the copy is the request as forwarded");
    let body = "x".repeat(5000);
    let posted = http1().post(format!("{}/orders", gw.url(80))).body(body).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(until(2, || shadow.seen().len()).await, 2);
    let copy = shadow.last();
    assert_eq!((copy.method.as_str(), copy.header("content-length")), ("POST", Some("5000")));
    assert_eq!(primary.seen().len(), 2);
    // An HTTP/2 client's request reaches an HTTP/1.1 mirror as HTTP/1.1 with a Host.
    let h2 = get(&e2e::client::h2c(), &gw.url(80), "", "/h2", &[]).await;
    assert_eq!(h2.status, 200);
    assert_eq!(until(3, || shadow.seen().len()).await, 3);
    let copy = shadow.last();
    assert_eq!((copy.version.as_str(), copy.path.as_str()), ("HTTP/1.1", "/h2"));
    assert!(copy.header("host").is_some_and(|h| h.starts_with("127.0.0.1:")), "{:?}", copy.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mirror_copies_its_percentage_of_requests() {
    let primary = Upstream::start("primary").await;
    let (always, never, half) =
        (Upstream::start("always").await, Upstream::start("never").await, Upstream::start("half").await);
    let yaml = gateway(80, &["*"])
        + &service("primary", "primary.internal", &[&primary])
        + &service("always", "always.internal", &[&always])
        + &service("never", "never.internal", &[&never])
        + &service("half", "half.internal", &[&half])
        + &virtual_service(
            "vs",
            &["*"],
            "- route: [{destination: {host: primary.internal}}]\n  mirrors:\n  - {destination: {host: always.internal}}\n  - {destination: {host: never.internal}, percentage: {value: 0}}\n  - {destination: {host: half.internal}, percentage: {value: 50}}",
        );
    let gw = TestGateway::start(&yaml);
    for _ in 0..200 {
        assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    }
    assert_eq!(until(200, || always.seen().len()).await, 200, "no percentage: every request");
    let halves = half.seen().len();
    assert!((60..=140).contains(&halves), "50%: {halves} of 200");
    assert!(never.seen().is_empty(), "0%: none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_dead_mirror_never_touches_the_client() {
    let primary = Upstream::start("primary").await;
    let slow = Faulty::start(Behaviour::Slow(Duration::from_secs(3))).await;
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port() // a port nothing listens on once the socket is dropped here
    };
    let yaml = gateway(80, &["*"])
        + &service("primary", "primary.internal", &[&primary])
        + &service_at("slow", "slow.internal", &[(slow.port, 1)])
        + &service_at("dead", "dead.internal", &[(dead_port, 1)])
        + &virtual_service(
            "vs",
            &["*"],
            "- route: [{destination: {host: primary.internal}}]\n  mirrors: [{destination: {host: slow.internal}}, {destination: {host: dead.internal}}]",
        );
    let gw = TestGateway::start(&yaml);
    let started = Instant::now();
    for _ in 0..5 {
        let r = get(&http1(), &gw.url(80), "x", "/", &[]).await;
        assert_eq!((r.status, r.upstream()), (200, Some("primary")));
    }
    assert!(started.elapsed() < Duration::from_secs(3), "the client never waited for the 3 s mirror");
    assert_eq!(until(5, || slow.requests()).await, 5, "the slow mirror still got its copies");
}
