//! The `GatewayPolicy` `headers` module: forwarded headers and response headers set per Gateway,
//! server or route.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

fn config(up: &Upstream, headers: &str) -> String {
    gateway(80, &["*"])
        + &service("app", "app.internal", &[up])
        + &virtual_service("vs", &["*"], "- name: app\n  route: [{destination: {host: app.internal}}]")
        + &format!("apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {{name: edge-headers}}\nspec:\n  targetRefs: [{{kind: Gateway, name: gw}}]\n  headers: {headers}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_that_reveal_internals_are_removed_or_replaced() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, "{response: {set: {server: edge}, remove: [x-upstream]}}"));
    let r = get(&http1(), &gw.url(80), "shop.example.com", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("server"), Some("edge"));
    assert_eq!(r.header("x-upstream"), None, "the upstream's header is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_replaced_and_an_rfc_7239_element_added() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, "{xForwardedFor: replace, forwarded: true}"));
    let headers = [("x-forwarded-for", "10.9.9.9"), ("forwarded", "for=10.9.9.9")];
    get(&http1(), &gw.url(80), "shop.example.com", "/", &headers).await;
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "the hops a client claims are not passed on");
    assert_eq!(seen.header("forwarded"), Some("for=10.9.9.9, for=127.0.0.1;proto=http;host=\"shop.example.com\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_request_id_replaces_the_clients_when_the_policy_says_generate() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, "{requestId: generate}"));
    get(&http1(), &gw.url(80), "shop.example.com", "/", &[("x-request-id", "client-chosen")]).await;
    let id = up.last().header("x-request-id").unwrap().to_string();
    assert_ne!(id, "client-chosen");
    assert_eq!(id.len(), 36);
}

/// Gateways `public` (port 80) and `private` (port 81) routing to `up`, plus `policies`.
fn two_gateways(up: &Upstream, policies: &str) -> String {
    let gw = |name: &str, port: u16| {
        format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    hosts: ['*']\n---\n")
    };
    gw("public", 80)
        + &gw("private", 81)
        + &service("app", "app.internal", &[up])
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: ['*']\n  gateways: [public, private]\n  http:\n  - route: [{destination: {host: app.internal}}]\n---\n"
        + policies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_finds_the_client_address_its_own_way() {
    let up = Upstream::start("app").await;
    let policies = "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: behind-lb}\nspec:\n  targetRefs: [{kind: Gateway, name: public}]\n  clientAddress: {trustedCidrs: [127.0.0.0/8, 10.0.0.0/8]}\n";
    let gw = TestGateway::start(&two_gateways(&up, policies));
    let xff = [("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.1.1")];
    get(&http1(), &gw.url(80), "x", "/", &xff).await;
    assert_eq!(up.last().header("x-envoy-external-address"), Some("203.0.113.9"), "the rightmost untrusted entry");
    get(&http1(), &gw.url(81), "x", "/", &xff).await;
    assert_eq!(up.last().header("x-envoy-external-address"), Some("127.0.0.1"), "the private Gateway trusts no proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cannot_add_elements_to_the_forwarded_header() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, "{forwarded: true}"));
    let reply = e2e::client::raw(
        gw.addr(80),
        b"GET / HTTP/1.1\r\nhost: a\", for=10.0.0.1;host=\"b\r\nconnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let forwarded = up.last().header("forwarded").unwrap().to_string();
    assert_eq!(
        forwarded, "for=127.0.0.1;proto=http;host=\"a\\\", for=10.0.0.1;host=\\\"b\"",
        "one element, the host quoted"
    );
}
