//! DestinationRule traffic policy at the gateway: connection-pool limits (503 UO beyond them),
//! outlier detection (an endpoint answering 5xx is ejected) and endpoint weights under every
//! load-balancing policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use e2e::client::{get, http1};
use e2e::faulty::{Behaviour, Faulty};
use e2e::yaml::{gateway, service_at, virtual_service};
use e2e::{TestGateway, Upstream};

/// A gateway routing to `app.internal` (endpoints: `(port, weight)` on 127.0.0.1), without
/// retries, with DestinationRule `traffic_policy` (YAML flow).
fn config(endpoints: &[(u16, u32)], traffic_policy: &str) -> String {
    let se = service_at("app", "app.internal", endpoints);
    let dr = format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: app.internal\n  trafficPolicy: {traffic_policy}\n---\n");
    gateway(80, &["*"])
        + &se
        + &dr
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: app.internal}}]\n  retries: {attempts: 0}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_connection_pool_get_503_uo() {
    // The upstream holds every request until the test releases it, so which requests are in
    // flight together does not depend on how fast this machine is.
    let gate = Arc::new(Semaphore::new(0));
    let up = Faulty::start(Behaviour::Held(gate.clone())).await;
    // Istio's circuit-breaking task: one connection, one pending request.
    let gw = TestGateway::start(&config(
        &[(up.port, 1)],
        "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}",
    ));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let base = gw.url(80);
        set.spawn(async move { get(&http1(), &base, "x", "/", &[]).await });
    }
    let within = Duration::from_secs(10);
    let mut early = Vec::new();
    for _ in 0..3 {
        early.push(
            tokio::time::timeout(within, set.join_next()).await.expect("3 answered while 2 are held").unwrap().unwrap(),
        );
    }
    assert!(early.iter().all(|r| r.status == 503 && r.body.ends_with("reset reason: overflow")), "{early:?}");
    gate.add_permits(2);
    let held = tokio::time::timeout(within, set.join_all()).await.expect("the 2 held ones answered once released");
    assert!(held.iter().all(|r| r.status == 200), "{held:?}");
    assert_eq!(up.requests(), 2, "2 in flight at most");
    gate.add_permits(1);
    assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200, "room again once they finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_5xx_in_a_row_is_ejected() {
    let bad = Faulty::start(Behaviour::Status(503, "")).await;
    let good = Upstream::start("good").await;
    let policy =
        "{outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}}";
    let gw = TestGateway::start(&config(&[(bad.port, 1), (good.port(), 1)], policy));
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(get(&http1(), &gw.url(80), "x", "/", &[]).await.status);
    }
    assert_eq!(bad.requests(), 2, "ejected after its second 503 in a row");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2);
    assert!(statuses[20..].iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_weights_hold_under_round_robin() {
    let (heavy, light) = (Upstream::start("heavy").await, Upstream::start("light").await);
    let gw =
        TestGateway::start(&config(&[(heavy.port(), 3), (light.port(), 1)], "{loadBalancer: {simple: ROUND_ROBIN}}"));
    for _ in 0..40 {
        assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    }
    assert_eq!((heavy.seen().len(), light.seen().len()), (30, 10), "smooth weighted round robin, 3:1");
}

/// The upstream that answered each of `n` requests carrying `headers`.
async fn answered_by(gw: &TestGateway, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(&http1(), &gw.url(80), "x", path, headers).await.upstream().unwrap_or("-").to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_a_key_on_one_endpoint() {
    let ups = [Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await];
    let eps: Vec<(u16, u32)> = ups.iter().map(|u| (u.port(), 1)).collect();
    let gw = TestGateway::start(&config(&eps, "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}"));
    let mut used = std::collections::BTreeSet::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"] {
        let by = answered_by(&gw, "/", &[("x-user", user)], 6).await;
        assert!(by.iter().all(|u| *u == by[0]), "{user}: {by:?}");
        used.insert(by[0].clone());
    }
    assert!(used.len() >= 2, "keys spread over the endpoints: {used:?}");
    let by_query =
        TestGateway::start(&config(&eps, "{loadBalancer: {consistentHash: {httpQueryParameterName: session}}}"));
    let by = answered_by(&by_query, "/?session=42", &[], 6).await;
    assert!(by.iter().all(|u| *u == by[0]), "{by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_cookie_is_made_when_missing_and_then_keeps_the_client_on_one_endpoint() {
    let ups = [Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await];
    let eps: Vec<(u16, u32)> = ups.iter().map(|u| (u.port(), 1)).collect();
    let gw = TestGateway::start(&config(
        &eps,
        "{loadBalancer: {consistentHash: {httpCookie: {name: affinity, path: /, ttl: 3600s, attributes: [{name: SameSite, value: Strict}, {name: Secure}]}}}}",
    ));
    let first = get(&http1(), &gw.url(80), "x", "/", &[]).await;
    let set = first.header("set-cookie").expect("a cookie is made").to_string();
    assert!(set.starts_with("affinity=\"") && set.contains("Max-Age=3600") && set.contains("Path=/"), "{set}");
    assert!(set.ends_with("; HttpOnly; SameSite=Strict; Secure"), "the cookie's attributes: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let by = answered_by(&gw, "/", &[("cookie", cookie.as_str())], 8).await;
    assert!(by.iter().all(|u| *u == first.upstream().unwrap()), "{by:?}");
    let again = get(&http1(), &gw.url(80), "x", "/", &[("cookie", cookie.as_str())]).await;
    assert_eq!(again.header("set-cookie"), None, "no new cookie once the client has one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_1_and_the_http_idle_timeout_limit_upstream_reuse() {
    let (once, pooled, idle) =
        (Upstream::start("once").await, Upstream::start("pooled").await, Upstream::start("idle").await);
    let gw_once =
        TestGateway::start(&config(&[(once.port(), 1)], "{connectionPool: {http: {maxRequestsPerConnection: 1}}}"));
    let gw_pooled = TestGateway::start(&config(&[(pooled.port(), 1)], "{loadBalancer: {simple: ROUND_ROBIN}}"));
    for _ in 0..5 {
        assert_eq!(get(&http1(), &gw_once.url(80), "x", "/", &[]).await.status, 200);
        assert_eq!(get(&http1(), &gw_pooled.url(80), "x", "/", &[]).await.status, 200);
    }
    assert_eq!(once.connections(), 5, "a new upstream connection per request");
    assert_eq!(pooled.connections(), 1, "by default the connection is reused");
    let gw_idle = TestGateway::start(&config(&[(idle.port(), 1)], "{connectionPool: {http: {idleTimeout: 200ms}}}"));
    assert_eq!(get(&http1(), &gw_idle.url(80), "x", "/", &[]).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(get(&http1(), &gw_idle.url(80), "x", "/", &[]).await.status, 200);
    assert_eq!(idle.connections(), 2, "the pooled connection was closed after 200 ms unused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_endpoint_is_tried_again_after_its_ejection_time() {
    let bad = Faulty::start(Behaviour::Status(503, "")).await;
    let good = Upstream::start("good").await;
    let policy =
        "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 500ms, maxEjectionPercent: 100}}";
    let gw = TestGateway::start(&config(&[(bad.port, 1), (good.port(), 1)], policy));
    for _ in 0..10 {
        get(&http1(), &gw.url(80), "x", "/", &[]).await;
    }
    assert_eq!(bad.requests(), 2, "ejected");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    for _ in 0..10 {
        get(&http1(), &gw.url(80), "x", "/", &[]).await;
    }
    assert_eq!(bad.requests(), 4, "back after 500 ms, then ejected again after two more 503s");
}
