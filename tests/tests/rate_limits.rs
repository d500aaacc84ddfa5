//! Local rate limits from `GatewayPolicy` `rateLimit`, bound to the workload, a Gateway, a server
//! or a route, the most specific winning: 429 `local_rate_limited` once the bucket is empty.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1, Reply};
use e2e::gateway::Setup;
use e2e::yaml::service;
use e2e::{TestGateway, Upstream};

/// A Gateway `name` with an HTTP server on `port` (port name `http-<port>`).
fn gateway(name: &str, port: u16) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    hosts: ['*']\n---\n")
}

/// A VirtualService `shop` on `gateways` with rules `open` (/open) and `rest`.
fn routes(gateways: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: shop}}\nspec:\n  hosts: ['*']\n  gateways: [{gateways}]\n  http:\n  - name: open\n    match: [{{uri: {{prefix: /open}}}}]\n    route: [{{destination: {{host: app.internal}}}}]\n  - name: rest\n    route: [{{destination: {{host: app.internal}}}}]\n---\n")
}

/// A GatewayPolicy `name` with `scope` (selector or targetRefs) and a rate limit.
fn limit(name: &str, scope: &str, rate: &str) -> String {
    format!("apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {{name: {name}}}\nspec:\n  {scope}\n  rateLimit: {{{rate}}}\n---\n")
}

async fn n_statuses(gw: &TestGateway, port: u16, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(&http1(), &gw.url(port), "shop.example.com", path, &[]).await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_serves_its_burst_then_answers_429() {
    let up = Upstream::start("app").await;
    let yaml = gateway("public", 80)
        + &service("app", "app.internal", &[&up])
        + &routes("public")
        + &limit(
            "per-workload",
            "selector: {matchLabels: {istio: ingressgateway}}",
            "requests: 2, unit: minute, responseHeaders: true",
        );
    let gw = TestGateway::start(&yaml);
    let first: Reply = get(&http1(), &gw.url(80), "shop.example.com", "/", &[]).await;
    assert_eq!(
        (first.status, first.header("x-ratelimit-limit"), first.header("x-ratelimit-remaining")),
        (200, Some("2"), Some("1"))
    );
    assert_eq!(n_statuses(&gw, 80, "/", 1).await, [200]);
    let limited = get(&http1(), &gw.url(80), "shop.example.com", "/", &[]).await;
    assert_eq!((limited.status, limited.body.as_str()), (429, "local_rate_limited"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(up.seen().len(), 2, "limited requests never reach the upstream");
    assert_eq!(n_statuses(&gw, 80, "/open", 1).await, [200], "each route has its own bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_specific_policy_wins() {
    let up = Upstream::start("app").await;
    let yaml = gateway("public", 80)
        + &service("app", "app.internal", &[&up])
        + &routes("public")
        + &limit("tight", "selector: {matchLabels: {istio: ingressgateway}}", "requests: 1, unit: hour")
        + &limit(
            "open-route",
            "targetRefs: [{kind: VirtualService, name: shop, sectionName: open}]",
            "requests: 1000, unit: second",
        );
    let gw = TestGateway::start(&yaml);
    assert_eq!(n_statuses(&gw, 80, "/open", 5).await, [200; 5], "the route's own policy");
    assert_eq!(n_statuses(&gw, 80, "/other", 2).await, [200, 429], "the workload's policy elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_workload_carry_their_own_limits() {
    let up = Upstream::start("app").await;
    let yaml = gateway("public", 80)
        + &gateway("private", 81)
        + &service("app", "app.internal", &[&up])
        + &routes("public, private")
        + &limit("public-only", "targetRefs: [{kind: Gateway, name: public}]", "requests: 1, unit: hour");
    let gw = TestGateway::start(&yaml);
    assert_eq!(n_statuses(&gw, 80, "/", 3).await, [200, 429, 429], "the public Gateway is limited");
    assert_eq!(n_statuses(&gw, 81, "/", 3).await, [200; 3], "the private one is not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_buckets_count_each_client_address_behind_trusted_proxies() {
    let up = Upstream::start("app").await;
    let yaml = gateway("public", 80)
        + &service("app", "app.internal", &[&up])
        + &routes("public")
        + &limit(
            "per-client",
            "selector: {matchLabels: {istio: ingressgateway}}",
            "requests: 1, unit: hour, key: client",
        );
    let gw = TestGateway::start_with(&yaml, Setup { num_trusted_proxies: 1, ..Setup::default() });
    let url = gw.url(80);
    let from = |ip: &'static str| {
        let url = url.clone();
        async move { get(&http1(), &url, "shop.example.com", "/", &[("x-forwarded-for", ip)]).await.status }
    };
    assert_eq!(from("203.0.113.1").await, 200);
    assert_eq!(from("203.0.113.1").await, 429);
    assert_eq!(from("203.0.113.2").await, 200, "another client, another bucket");
}
