//! The Gateway API CORS filter, as Istio serves it: allowed origins (exact, a trailing-`*`
//! prefix, `*`) get the CORS headers on preflights and requests; other origins' preflights are
//! answered without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::gateway::Setup;
use e2e::{TestGateway, Upstream};

/// A route to `app` (its endpoint on 127.0.0.1:`port`) with a CORS filter.
fn config(port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: infra}}
spec:
  gatewayClassName: istio
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: infra}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - filters:
    - type: CORS
      cors:
        allowOrigins: ['https://app.example.com', 'https://*.trusted.example']
        allowMethods: [GET, PUT]
        allowHeaders: [x-api-key]
        maxAge: 600
        allowCredentials: true
    backendRefs: [{{name: app, port: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: infra}}
spec:
  ports: [{{port: 8080, name: http}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: app, namespace: infra}}
subsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{port: {}, name: http}}]}}]
",
        port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cors_filter_answers_preflights_of_allowed_origins() {
    let up = Upstream::start("app").await;
    let yaml = config(up.port());
    let setup = Setup::gateway_api("edge", "infra");
    let gw = TestGateway::start_with(&yaml, setup);
    let preflight = |origin: &'static str| {
        let url = gw.url(80);
        async move {
            let r = e2e::client::http1()
                .request(reqwest::Method::OPTIONS, format!("{url}/items"))
                .header("origin", origin)
                .header("access-control-request-method", "PUT")
                .send()
                .await
                .unwrap();
            let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
            (h("access-control-allow-origin"), h("access-control-allow-methods"), h("access-control-max-age"))
        }
    };
    let allowed = preflight("https://app.example.com").await;
    assert_eq!(allowed.0.as_deref(), Some("https://app.example.com"));
    assert_eq!(allowed.1.as_deref(), Some("GET,PUT"));
    assert_eq!(allowed.2.as_deref(), Some("600"));
    assert_eq!(preflight("https://api.trusted.example").await.0.as_deref(), Some("https://api.trusted.example"));
    assert_eq!(preflight("https://evil.example").await.0, None, "another origin gets no CORS headers");
    assert!(up.seen().is_empty(), "preflights are answered by the gateway");
}
