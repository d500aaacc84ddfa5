//! One configuration holding Istio's kinds and the Gateway API's, served by two gateway
//! workloads: the Istio ingress (labels `istio=ingressgateway`) serves its Gateway and
//! VirtualServices only, the Gateway API workload (its `gateway.networking.k8s.io/gateway-name`
//! label) its Gateway and HTTPRoutes only, from the same files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1};
use e2e::gateway::Setup;
use e2e::yaml::kube_service;
use e2e::{TestGateway, Upstream};

fn config(istio_backend: u16, api_backend: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: classic, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: classic, namespace: default}}
spec:
  hosts: [classic.example.com]
  gateways: [classic]
  http: [{{route: [{{destination: {{host: classic.default.svc.cluster.local, port: {{number: 8080}}}}}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: modern, namespace: default}}
spec:
  gatewayClassName: istio
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: modern, namespace: default}}
spec:
  parentRefs: [{{name: modern}}]
  hostnames: [modern.example.com]
  rules: [{{backendRefs: [{{name: modern, port: 8080}}]}}]
---
{}{}",
        service("classic", istio_backend),
        service("modern", api_backend)
    )
}

fn service(name: &str, at: u16) -> String {
    kube_service("default", name, "http", 8080, "", at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_workload_serves_its_own_kinds_from_one_configuration() {
    let (classic, modern) = (Upstream::start("classic").await, Upstream::start("modern").await);
    let yaml = config(classic.port(), modern.port());
    let istio = TestGateway::start(&yaml);
    let api = TestGateway::start_with(&yaml, Setup::gateway_api("modern", "default"));
    let status = |gw: &TestGateway, host: &'static str| {
        let url = gw.url(80);
        async move {
            let r = get(&http1(), &url, host, "/", &[]).await;
            (r.status, r.upstream().map(str::to_string))
        }
    };
    assert_eq!(status(&istio, "classic.example.com").await, (200, Some("classic".into())));
    assert_eq!(status(&istio, "modern.example.com").await.0, 404, "the Istio workload does not serve HTTPRoutes");
    assert_eq!(status(&api, "modern.example.com").await, (200, Some("modern".into())));
    assert_eq!(
        status(&api, "classic.example.com").await.0,
        404,
        "the Gateway API workload does not serve VirtualServices"
    );
}
