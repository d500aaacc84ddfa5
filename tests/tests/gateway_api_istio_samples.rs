//! Istio's own Gateway API samples (istio/istio `samples/*/gateway-api/`, vendored in
//! `tests/fixtures/gateway-api/istio-samples`), served as Istio's task pages show them: bookinfo
//! and httpbin ingress, helloworld traffic shifting 90/10, tcp-echo TCP traffic shifting 80/20,
//! and the HTTPS ingress of the secure-ingress task (a Terminate listener with a certificate
//! Secret, routes admitted by namespace selector).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::certs::{Ca, Leaf};
use e2e::client::{get, http1};
use e2e::gateway::Setup;
use e2e::tls::{tcp_exchange, Client, TcpUpstream};
use e2e::yaml::{kube_endpoints, kube_service};
use e2e::{TestGateway, Upstream};

fn sample(name: &str) -> String {
    let path = format!("{}/fixtures/gateway-api/istio-samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap() + "\n---\n"
}

/// Endpoints for Service `name` (port `port`, named `port_name`) on 127.0.0.1:`at`, in `ns`; with
/// the Service itself when `with_service`.
fn endpoints(ns: &str, name: &str, port_name: &str, port: u16, at: u16, with_service: bool) -> String {
    if with_service {
        kube_service(ns, name, port_name, port, "", at)
    } else {
        kube_endpoints(ns, name, port_name, at)
    }
}

/// The workload that runs Gateway `name` in `ns`.
fn runs(name: &str, ns: &str) -> Setup {
    Setup::gateway_api(name, ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_gateway_serves_the_productpage_paths_only() {
    let productpage = Upstream::start("productpage").await;
    let yaml = sample("bookinfo-bookinfo-gateway.yaml")
        + &endpoints("default", "productpage", "http", 9080, productpage.port(), true);
    let gw = TestGateway::start_with(&yaml, runs("bookinfo-gateway", "default"));
    for (path, status) in [
        ("/productpage", 200),
        ("/static/css/site.css", 200),
        ("/static", 200),
        ("/login", 200),
        ("/api/v1/products/0/reviews", 200),
        ("/productpage/extra", 404),
        ("/statics", 404),
        ("/reviews/0", 404),
    ] {
        let r = get(&http1(), &gw.url(80), "", path, &[]).await;
        assert_eq!(r.status, status, "{path}");
    }
    assert_eq!(productpage.seen().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpbin_gateway_takes_every_path_from_every_namespace() {
    let httpbin = Upstream::start("httpbin").await;
    let yaml =
        sample("httpbin-httpbin-gateway.yaml") + &endpoints("default", "httpbin", "http", 8000, httpbin.port(), true);
    let gw = TestGateway::start_with(&yaml, runs("httpbin-gateway", "default"));
    let r = get(&http1(), &gw.url(80), "httpbin.example.com", "/status/418", &[]).await;
    assert_eq!((r.status, r.upstream()), (200, Some("httpbin")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helloworld_traffic_shifts_ninety_ten() {
    let (v1, v2) = (Upstream::start("helloworld-v1").await, Upstream::start("helloworld-v2").await);
    let yaml = sample("helloworld-helloworld-gateway.yaml")
        + &sample("helloworld-helloworld-versions.yaml")
        + &sample("helloworld-helloworld-route.yaml")
        + &endpoints("default", "helloworld-v1", "http", 5000, v1.port(), false)
        + &endpoints("default", "helloworld-v2", "http", 5000, v2.port(), false);
    let gw = TestGateway::start_with(&yaml, runs("helloworld-gateway", "default"));
    for _ in 0..400 {
        assert_eq!(get(&http1(), &gw.url(80), "", "/hello", &[]).await.status, 200);
    }
    let to_v2 = v2.seen().len();
    println!("helloworld 90/10: v1 {}, v2 {to_v2} of 400", v1.seen().len());
    // 10% of 400 is 40 (σ ≈ 6); the bounds are far outside chance.
    assert!((15..=70).contains(&to_v2), "v2 got {to_v2} of 400");
    assert_eq!(v1.seen().len() + to_v2, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echo_shifts_eighty_twenty_of_the_connections() {
    let (v1, v2) = (TcpUpstream::start("tcp-echo-v1").await, TcpUpstream::start("tcp-echo-v2").await);
    let backends = endpoints("default", "tcp-echo-v1", "tcp", 9000, v1.port(), false)
        + &endpoints("default", "tcp-echo-v2", "tcp", 9000, v2.port(), false);
    let all_v1 = sample("tcp-echo-tcp-echo-all-v1.yaml") + &backends;
    let gw = TestGateway::start_with(&all_v1, runs("tcp-echo-gateway", "default"));
    for _ in 0..20 {
        assert!(tcp_exchange(gw.addr(31400), b"hello").await.starts_with("tcp-echo-v1\n"));
    }
    // `kubectl apply -f tcp-echo-20-v2.yaml`: the same TCPRoute, replaced (the later one wins).
    let shifted = TestGateway::start_with(
        &(all_v1 + &sample("tcp-echo-tcp-echo-20-v2.yaml")),
        runs("tcp-echo-gateway", "default"),
    );
    let mut to_v2 = 0;
    for _ in 0..200 {
        if tcp_exchange(shifted.addr(31400), b"hello").await.starts_with("tcp-echo-v2\n") {
            to_v2 += 1;
        }
    }
    println!("tcp-echo 80/20: v2 {to_v2} of 200");
    // 20% of 200 is 40 (σ ≈ 5.7).
    assert!((15..=70).contains(&to_v2), "v2 got {to_v2} of 200");
}

/// Istio's secure-ingress task, Gateway API flavour
/// (istio.io/latest/docs/tasks/traffic-management/ingress/secure-ingress/).
const SECURE_INGRESS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: mygateway
  namespace: istio-system
spec:
  gatewayClassName: istio
  listeners:
  - name: https
    hostname: \"httpbin.example.com\"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - name: httpbin-credential
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            kubernetes.io/metadata.name: default
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: httpbin
  namespace: default
spec:
  parentRefs:
  - name: mygateway
    namespace: istio-system
  hostnames: [\"httpbin.example.com\"]
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /status
    - path:
        type: PathPrefix
        value: /delay
    backendRefs:
    - name: httpbin
      port: 8000
---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_ingress_terminates_with_the_credential_and_routes_by_namespace_selector() {
    let ca = Ca::new("example.com root");
    let cert = ca.issue(&Leaf::server(&["httpbin.example.com"]));
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: httpbin-credential, namespace: istio-system}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(&cert.cert_pem()),
        indent(&cert.key_pem())
    );
    let httpbin = Upstream::start("httpbin").await;
    let yaml =
        SECURE_INGRESS.to_string() + &secret + &endpoints("default", "httpbin", "http", 8000, httpbin.port(), true);
    let gw = TestGateway::start_with(&yaml, runs("mygateway", "istio-system"));
    let client = Client::to("httpbin.example.com", &ca.cert);
    let r = client.get(gw.addr(443), "httpbin.example.com", "/status/418", &[]).await.unwrap();
    assert_eq!((r.status, r.upstream()), (200, Some("httpbin")));
    let r = client.get(gw.addr(443), "httpbin.example.com", "/headers", &[]).await.unwrap();
    assert_eq!(r.status, 404, "only /status and /delay are routed");
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}
