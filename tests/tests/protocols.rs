//! Protocols to the upstream and to gRPC clients: `useClientProtocol` and `h2UpgradePolicy` decide
//! HTTP/2 upstream, and the gateway's own replies to gRPC requests are gRPC answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, h2c, http1};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

fn config(up: &Upstream, traffic_policy: &str) -> String {
    let dr = format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: up}}\nspec:\n  host: up.internal\n  trafficPolicy: {traffic_policy}\n---\n");
    gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &dr
        + &virtual_service(
            "vs",
            &["*"],
            "- match: [{uri: {prefix: /api}}]\n  route: [{destination: {host: up.internal}}]",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_client_protocol_speaks_http2_upstream_only_for_http2_clients() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "{connectionPool: {http: {useClientProtocol: true}}}"));
    assert_eq!(get(&h2c(), &gw.url(80), "", "/api", &[]).await.status, 200);
    assert_eq!(up.last().version, "HTTP/2.0");
    assert_eq!(get(&http1(), &gw.url(80), "x", "/api", &[]).await.status, 200);
    assert_eq!(up.last().version, "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upgrade_policy_upgrade_speaks_http2_upstream() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "{connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}"));
    assert_eq!(get(&http1(), &gw.url(80), "x", "/api", &[]).await.status, 200);
    assert_eq!(up.last().version, "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_replies_to_grpc_requests_are_grpc_answers() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "{loadBalancer: {simple: ROUND_ROBIN}}"));
    let grpc = [("content-type", "application/grpc")];
    let unrouted = get(&h2c(), &gw.url(80), "", "/pkg.Service/Method", &grpc).await;
    assert_eq!(
        (unrouted.status, unrouted.header("grpc-status"), unrouted.header("content-type")),
        (200, Some("12"), Some("application/grpc")),
        "404 NR is UNIMPLEMENTED"
    );
    assert_eq!(unrouted.header("grpc-message"), Some("Not Found"));
    let plain = get(&h2c(), &gw.url(80), "", "/pkg.Service/Method", &[]).await;
    assert_eq!((plain.status, plain.header("grpc-status")), (404, None), "not gRPC: a plain 404");
    drop(up);
    let down = get(&h2c(), &gw.url(80), "", "/api", &grpc).await;
    assert_eq!((down.status, down.header("grpc-status")), (200, Some("14")), "503 UF is UNAVAILABLE");
    assert!(down.header("grpc-message").unwrap().starts_with("upstream connect error"));
}

/// HTTP/1.1 and h2c clients share the cluster's upstream connections, as Envoy's per-cluster
/// pool does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_clients_share_one_upstream_connection_pool() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "{loadBalancer: {simple: ROUND_ROBIN}}"));
    // Each answer is let go before the next request: the proxy returns the upstream connection to
    // its pool just after the client has the response (after the stream ends, for HTTP/2).
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(200));
    for _ in 0..3 {
        assert_eq!(get(&http1(), &gw.url(80), "x", "/api", &[]).await.status, 200);
        settle().await;
    }
    // One HTTP/2 client: a client closing its connection just as its stream ends can make the
    // proxy give up that upstream connection instead of pooling it (2 runs in 10 on a loaded machine).
    let client = h2c();
    for _ in 0..3 {
        assert_eq!(get(&client, &gw.url(80), "", "/api", &[]).await.status, 200);
        settle().await;
    }
    assert!(up.seen().iter().all(|s| s.version == "HTTP/1.1"));
    assert_eq!(up.connections(), 1);
}
