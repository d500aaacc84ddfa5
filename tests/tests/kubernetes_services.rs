//! A gateway pod without any registry in its configuration: a destination that names a Kubernetes
//! service (`svc`, which Istio expands to `svc.<namespace>.svc.cluster.local`, or that full name)
//! is reached through the cluster's DNS, as the pod would resolve it; an explicit ServiceEntry for
//! the name wins, and other unknown hosts still get 503 NC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::Ipv4Addr;

use e2e::client::{get, http1};
use e2e::dns::TestDns;
use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_service_name_is_reached_through_the_cluster_dns() {
    let dns = TestDns::start().await;
    let (app, other) = (Upstream::start("app").await, Upstream::start("other").await);
    dns.set("app.default.svc.cluster.local", &[Ipv4Addr::LOCALHOST], 30);
    dns.set("cart.shop.svc.cluster.local", &[Ipv4Addr::LOCALHOST], 30);
    let a = app.port();
    let routes = format!(
        "- match: [{{uri: {{prefix: /app}}}}]\n  route: [{{destination: {{host: app, port: {{number: {a}}}}}}}]\n- match: [{{uri: {{prefix: /cart}}}}]\n  route: [{{destination: {{host: cart.shop.svc.cluster.local, port: {{number: {a}}}}}}}]\n- match: [{{uri: {{prefix: /pinned}}}}]\n  route: [{{destination: {{host: pinned.default.svc.cluster.local}}}}]\n- route: [{{destination: {{host: nowhere.internal}}}}]"
    );
    // An explicit ServiceEntry for a Kubernetes name wins over DNS.
    let pinned = service("pinned", "pinned.default.svc.cluster.local", &[&other]);
    let yaml = gateway(80, &["*"]) + &pinned + &virtual_service("vs", &["*"], &routes);
    let built = conf::build_str("c.yaml", &yaml, &conf::Selection::default());
    assert!(
        built.diagnostics.to_string().contains("routed to the Kubernetes service through the cluster's DNS"),
        "{}",
        built.diagnostics
    );
    let gw = TestGateway::start_with(&yaml, Setup { dns_server: Some(dns.addr), ..Setup::default() });
    let c = http1();
    assert_eq!(get(&c, &gw.url(80), "x", "/app", &[]).await.upstream(), Some("app"));
    assert_eq!(get(&c, &gw.url(80), "x", "/cart", &[]).await.upstream(), Some("app"), "another namespace, in full");
    assert!(dns.queries().contains(&"app.default.svc.cluster.local".to_string()));
    assert_eq!(get(&c, &gw.url(80), "x", "/pinned", &[]).await.upstream(), Some("other"));
    assert_eq!(get(&c, &gw.url(80), "x", "/elsewhere", &[]).await.status, 503, "not a Kubernetes name: NC");
}
