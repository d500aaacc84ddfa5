//! First light: one Gateway, one VirtualService, one upstream.

use e2e::{TestGateway, Upstream};

fn config(up: &Upstream) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /echo}}}}]
    route: [{{destination: {{host: echo.internal}}}}]
"#,
        port = up.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reaches_the_upstream() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::start(&config(&up));
    let client = reqwest::Client::new();
    let resp = client.get(format!("{}/echo/x?y=1", gw.url(80))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "echo");
    let seen = up.last();
    assert_eq!(seen.path, "/echo/x?y=1");
    assert!(seen.header("x-forwarded-for").is_some());
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert!(seen.header("x-request-id").is_some());
    let resp = client.get(format!("{}/other", gw.url(80))).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}
