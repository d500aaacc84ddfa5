//! The MeshConfig fields a gateway honours (`--mesh-config`): the default retry policy, path
//! normalization and the default connect timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1};
use e2e::faulty::{Behaviour, Faulty};
use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, service_at, virtual_service};
use e2e::{TestGateway, Upstream};

fn two_endpoints(bad: u16, good: u16) -> String {
    let se = service_at("app", "app.internal", &[(bad, 1), (good, 1)]);
    gateway(80, &["*"]) + &se + &virtual_service("vs", &["*"], "- route: [{destination: {host: app.internal}}]")
}

async fn statuses(gw: &TestGateway, n: usize) -> Vec<u16> {
    gw.statuses("/", n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_retry_policy_applies_to_routes_without_their_own() {
    let bad = Faulty::start(Behaviour::Status(503, "")).await;
    let good = Upstream::start("good").await;
    let yaml = two_endpoints(bad.port, good.port());
    let mesh = "defaultHttpRetryPolicy: {attempts: 3, retryOn: 5xx}\n".to_string();
    let with = TestGateway::start_with(&yaml, Setup { mesh: Some(mesh), ..Setup::default() });
    assert_eq!(statuses(&with, 20).await, [200; 20], "503s retried by the mesh's policy");
    let without = TestGateway::start(&yaml);
    assert!(statuses(&without, 20).await.contains(&503), "Istio's built-in policy does not retry 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_slashes_normalization_merges_before_routing_and_forwarding() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service(
            "vs",
            &["*"],
            "- match: [{uri: {exact: /a/b}}]\n  route: [{destination: {host: up.internal}}]",
        );
    let mesh = "pathNormalization: {normalization: MERGE_SLASHES}\n".to_string();
    let merging = TestGateway::start_with(&yaml, Setup { mesh: Some(mesh), ..Setup::default() });
    assert_eq!(get(&http1(), &merging.url(80), "x", "//a///b", &[]).await.status, 200);
    assert_eq!(up.last().path, "/a/b");
    let base = TestGateway::start(&yaml);
    assert_eq!(get(&http1(), &base.url(80), "x", "//a///b", &[]).await.status, 404, "BASE keeps the slashes");
}

#[test]
fn the_mesh_connect_timeout_fills_clusters_without_one() {
    let yaml = gateway(80, &["*"])
        + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.internal, b.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n---\n"
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: b}\nspec:\n  host: b.internal\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 7s}}}\n---\n"
        + &virtual_service("vs", &["*"], "- match: [{uri: {prefix: /a}}]\n  route: [{destination: {host: a.internal}}]\n- route: [{destination: {host: b.internal}}]");
    let mut sel = conf::Selection::default();
    conf::mesh::MeshConfig::parse("connectTimeout: 2s").unwrap().apply(&mut sel);
    let built = conf::build_str("c.yaml", &yaml, &sel);
    let timeout = |host: &str| {
        let c = built.table.clusters.iter().find(|c| c.host == host).unwrap();
        c.policy.connection_pool.as_ref().and_then(|p| p.tcp.as_ref()).and_then(|t| t.connect_timeout.clone())
    };
    assert_eq!(timeout("a.internal").as_deref(), Some("2s"), "the mesh default");
    assert_eq!(timeout("b.internal").as_deref(), Some("7s"), "the DestinationRule's own wins");
}
