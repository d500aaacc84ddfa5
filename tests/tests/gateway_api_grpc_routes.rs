//! Gateway API GRPCRoutes, served as Istio serves them: a service and method match is a match on
//! the request path `/<service>/<method>`, and the rules join the HTTPRoutes of the same listener
//! and host in one table, ordered by Gateway API precedence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{h2c, http1};
use e2e::gateway::Setup;
use e2e::yaml::kube_service;
use e2e::{TestGateway, Upstream};

const CONFIG: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{method: {service: echo.Echo}}]
    backendRefs: [{name: service-wide, port: 8080}]
  - matches: [{method: {service: echo.Echo, method: Ping}}]
    backendRefs: [{name: ping, port: 8080}]
  - matches: [{method: {type: RegularExpression, method: 'Health.*'}}]
    backendRefs: [{name: health, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  rules: [{matches: [{path: {type: PathPrefix, value: /web}}], backendRefs: [{name: web, port: 8080}]}]
---
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_route_matches_service_and_method_beside_the_http_routes_of_its_host() {
    let names = ["service-wide", "ping", "health", "web"];
    let mut upstreams = Vec::new();
    let mut yaml = CONFIG.to_string();
    for n in names {
        let up = Upstream::start(n).await;
        yaml += &kube_service("infra", n, "grpc", 8080, "appProtocol: kubernetes.io/h2c", up.port());
        upstreams.push(up);
    }
    let setup = Setup::gateway_api("edge", "infra");
    let gw = TestGateway::start_with(&yaml, setup);
    let call = |path: &'static str| {
        let url = format!("{}{path}", gw.url(80));
        async move {
            let r = h2c().post(url).header("content-type", "application/grpc").send().await.unwrap();
            let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
            (
                r.status().as_u16(),
                header("x-upstream").or_else(|| header("grpc-status").map(|s| format!("grpc-status {s}"))),
            )
        }
    };
    // The exact service and method wins over the service alone, whatever the rule order.
    assert_eq!(call("/echo.Echo/Ping").await, (200, Some("ping".into())));
    assert_eq!(call("/echo.Echo/Other").await, (200, Some("service-wide".into())));
    assert_eq!(call("/grpc.health.v1.Health/HealthCheck").await, (200, Some("health".into())));
    // No route: Envoy's local reply to a gRPC request, 200 with grpc-status UNIMPLEMENTED.
    assert_eq!(call("/other.Service/Ping").await, (200, Some("grpc-status 12".into())));
    let web = e2e::client::get(&http1(), &gw.url(80), "", "/web/index.html", &[]).await;
    assert_eq!(web.upstream(), Some("web"), "the HTTPRoute of the same listener and host");
    assert!(upstreams[1].seen().iter().all(|s| s.version == "HTTP/2.0"), "h2c to the gRPC backend");
}
