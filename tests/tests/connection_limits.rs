//! DestinationRule `connectionPool` settings that bound each upstream connection or the retries to
//! a cluster: `http.maxRequestsPerConnection`, `tcp.maxConnectionDuration`,
//! `http.maxConcurrentStreams`, `http.maxRetries` and `tcp.tcpKeepalive`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::time::Duration;

use e2e::client::{get, h2c, http1};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

/// Lets the gateway return the upstream connection to its pool: it does so just after the client
/// has the response, so a request sent at once could find the pool empty.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A gateway routing to `up` with DestinationRule `traffic_policy` (YAML flow) and route `retries`.
fn config(up: &Upstream, traffic_policy: &str, retries: &str) -> String {
    let dr = format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: app.internal\n  trafficPolicy: {traffic_policy}\n---\n");
    let route = format!("- route: [{{destination: {{host: app.internal}}}}]\n  retries: {retries}");
    gateway(80, &["*"]) + &service("app", "app.internal", &[up]) + &dr + &virtual_service("vs", &["*"], &route)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_carries_at_most_max_requests_per_connection() {
    let up = Upstream::start("up").await;
    let gw =
        TestGateway::start(&config(&up, "{connectionPool: {http: {maxRequestsPerConnection: 3}}}", "{attempts: 0}"));
    for _ in 0..9 {
        assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
        settle().await;
    }
    assert_eq!(up.connections(), 3, "three requests per connection");
    let closing: Vec<usize> =
        up.seen().iter().enumerate().filter(|(_, s)| s.header("connection") == Some("close")).map(|(i, _)| i).collect();
    assert_eq!(closing, [2, 5, 8], "the third request on each asks the upstream to close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_open_longer_than_max_connection_duration_is_not_pooled_again() {
    let up = Upstream::start("up").await;
    let gw =
        TestGateway::start(&config(&up, "{connectionPool: {tcp: {maxConnectionDuration: 300ms}}}", "{attempts: 0}"));
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    settle().await;
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    assert_eq!(up.connections(), 1, "reused while young");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    assert_eq!(up.last().header("connection"), Some("close"), "its last request");
    settle().await;
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    assert_eq!(up.connections(), 2, "then a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_opens_another_http2_connection() {
    for (streams, connections) in [("maxConcurrentStreams: 1, ", 3), ("", 1)] {
        let up = Upstream::start("up").await;
        let policy = format!("{{connectionPool: {{http: {{{streams}h2UpgradePolicy: UPGRADE}}}}}}");
        let gw = TestGateway::start(&config(&up, &policy, "{attempts: 0}"));
        let mut set = tokio::task::JoinSet::new();
        for sent in 1..=3 {
            let base = gw.url(80);
            set.spawn(async move { get(&h2c(), &base, "", "/", &[("x-delay-ms", "2000")]).await.status });
            // Staggered: each is sent once the one before reached the upstream, and finds its
            // stream in flight (2 s is far longer than sending the next takes, even on a busy CI).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while up.seen().len() < sent {
                assert!(tokio::time::Instant::now() < deadline, "request {sent} never reached the upstream");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(set.join_all().await, [200, 200, 200]);
        assert!(up.seen().iter().all(|s| s.version == "HTTP/2.0"));
        assert_eq!(up.connections(), connections, "{streams:?}");
    }
}

/// Envoy's retry circuit breaker: with one retry in flight to the cluster, another request's
/// failure is answered as it is instead of retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_beyond_max_retries_in_flight_are_not_made() {
    for (max_retries, b_attempts) in [("maxRetries: 1", 1), ("maxRetries: 0", 2)] {
        let up = Upstream::start("up").await;
        let policy = format!("{{connectionPool: {{http: {{{max_retries}}}}}}}");
        let gw = TestGateway::start(&config(&up, &policy, "{attempts: 1, retryOn: 5xx}"));
        let slow_failure = [("x-id", "a"), ("x-reply-status", "503"), ("x-delay-ms", "1500")];
        let base = gw.url(80);
        let a = tokio::spawn(async move { get(&http1(), &base, "x", "/", &slow_failure).await.status });
        let seen = |id: &str| up.seen().iter().filter(|s| s.header("x-id") == Some(id)).count();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen("a") < 2 {
            assert!(tokio::time::Instant::now() < deadline, "a's retry never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // a's retry is in flight for 1.5 s.
        let b = get(&http1(), &gw.url(80), "x", "/", &[("x-id", "b"), ("x-reply-status", "503")]).await;
        assert_eq!(b.status, 503);
        assert_eq!(seen("b"), b_attempts, "{max_retries}");
        assert_eq!(a.await.unwrap(), 503);
    }
}

/// The gateway's sockets to an upstream, as the kernel lists them: (timer kind, jiffies left).
fn sockets_to(port: u16) -> Vec<(String, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&remote.as_str()) && f.get(3) == Some(&"01")).then(|| {
                let (kind, when) = f[5].split_once(':').unwrap();
                (kind.to_string(), u64::from_str_radix(when, 16).unwrap())
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keepalive_probes_idle_upstream_connections() {
    for (policy, keepalive) in [
        ("{connectionPool: {tcp: {tcpKeepalive: {time: 11s, interval: 3s, probes: 2}}}}", true),
        ("{loadBalancer: {simple: ROUND_ROBIN}}", false),
    ] {
        let up = Upstream::start("up").await;
        let gw = TestGateway::start(&config(&up, policy, "{attempts: 0}"));
        assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sockets = sockets_to(up.port());
        assert_eq!(sockets.len(), 1, "one pooled connection: {sockets:?}");
        let (kind, when) = &sockets[0];
        if keepalive {
            // Timer 02 is the keep-alive timer, due within `time` (in USER_HZ ticks of 10 ms).
            assert_eq!(kind, "02", "{sockets:?}");
            assert!((500..=1100).contains(when), "{sockets:?}");
        } else {
            assert_eq!(kind, "00", "no timer on an idle connection without keep-alive: {sockets:?}");
        }
    }
}
