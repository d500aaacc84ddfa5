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

/// A `kubectl get ... -A -o yaml` dump of Services, Endpoints, EndpointSlices, Pods and Istio
/// resources across namespaces loads and routes: endpoints from the slices (ready ones only; the
/// Endpoints object beside them unused), from hand-made Endpoints, subsets by pod labels, an
/// ExternalName through DNS, HTTP/2 from `appProtocol`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_dump_of_services_and_endpoint_slices_routes_to_the_pods() {
    let productpage = Upstream::start_on("productpage", "127.0.0.11:0").await.unwrap();
    let port = productpage.port();
    let mut pods = vec![productpage];
    for (name, ip) in [("reviews-v1", 21), ("reviews-v2", 22), ("ratings", 31), ("details", 41), ("cart", 51)] {
        pods.push(Upstream::start_on(name, &format!("127.0.0.{ip}:{port}")).await.unwrap());
    }
    let dns = TestDns::start().await;
    dns.set("details.legacy.example", &[Ipv4Addr::new(127, 0, 0, 41)], 30);
    let dump = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/kubectl-get-all.yaml"))
        .unwrap()
        .replace("__PORT__", &port.to_string());
    let setup = Setup { dns_server: Some(dns.addr), namespace: Some("istio-system".into()), ..Setup::default() };
    let gw = TestGateway::start_with(&dump, setup);
    let c = http1();
    let at = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let (c, url) = (c.clone(), gw.url(80));
        async move { get(&c, &url, "bookinfo.example", path, headers).await }
    };
    for _ in 0..4 {
        assert_eq!(at("/productpage", &[]).await.upstream(), Some("productpage"), "never the pod that is not ready");
        assert_eq!(at("/reviews", &[]).await.upstream(), Some("reviews-v1"), "subset v1 by pod label");
        assert_eq!(at("/ratings", &[]).await.upstream(), Some("ratings"), "hand-made Endpoints");
    }
    assert_eq!(at("/reviews", &[("end-user", "jason")]).await.upstream(), Some("reviews-v2"));
    assert_eq!(at("/details", &[]).await.upstream(), Some("details"), "ExternalName through DNS");
    assert!(dns.queries().contains(&"details.legacy.example".to_string()));
    let cart = at("/cart", &[]).await;
    assert_eq!(cart.upstream(), Some("cart"));
    assert_eq!(pods[5].last().version, "HTTP/2.0", "appProtocol kubernetes.io/h2c");
    assert_eq!(pods[1].last().version, "HTTP/1.1");
}
