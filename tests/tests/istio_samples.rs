//! Istio's own samples (conf/tests/istio-samples), with their services given as ServiceEntries
//! to local upstreams, route as Istio documents them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1};
use e2e::yaml::service;
use e2e::{TestGateway, Upstream};

fn sample(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/tests/istio-samples").join(name);
    std::fs::read_to_string(path).unwrap() + "\n---\n"
}

/// A ServiceEntry for `host` on `port` with `up` as its endpoint.
fn service_on(name: &str, host: &str, port: u16, up: &Upstream) -> String {
    service(name, host, &[up]).replace("number: 80,", &format!("number: {port},"))
}

async fn status_and_upstream(gw: &TestGateway, port: u16, host: &str, path: &str) -> (u16, Option<String>) {
    let r = get(&http1(), &gw.url(port), host, path, &[]).await;
    (r.status, r.upstream().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_gateway_routes_only_the_productpage_paths() {
    let productpage = Upstream::start("productpage").await;
    let yaml =
        sample("S2.yaml") + &service_on("productpage", "productpage.default.svc.cluster.local", 9080, &productpage);
    let gw = TestGateway::start(&yaml);
    let pp = Some("productpage".to_string());
    for path in
        ["/productpage", "/static/bootstrap.css", "/login", "/logout", "/api/v1/products/1", "/productpage?u=normal"]
    {
        assert_eq!(status_and_upstream(&gw, 8080, "bookinfo.example", path).await, (200, pp.clone()), "{path}");
    }
    for path in ["/", "/productpage/x", "/login/", "/reviews/1", "/api/v1/product"] {
        assert_eq!(status_and_upstream(&gw, 8080, "bookinfo.example", path).await, (404, None), "{path}");
    }
    assert_eq!(productpage.seen().iter().filter(|s| s.path == "/static/bootstrap.css").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpbin_gateway_sends_everything_to_httpbin_port_8000() {
    let httpbin = Upstream::start("httpbin").await;
    let yaml = sample("S1.yaml") + &service_on("httpbin", "httpbin.default.svc.cluster.local", 8000, &httpbin);
    let gw = TestGateway::start(&yaml);
    for (host, path) in [("any.host", "/headers"), ("httpbin.example.com", "/status/418"), ("x", "/")] {
        assert_eq!(status_and_upstream(&gw, 80, host, path).await, (200, Some("httpbin".into())), "{host}{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpbin_ingress_task_routes_status_and_delay_for_its_host_only() {
    let httpbin = Upstream::start("httpbin").await;
    let yaml = sample("S6.yaml") + &service_on("httpbin", "httpbin.default.svc.cluster.local", 8000, &httpbin);
    let gw = TestGateway::start(&yaml);
    let ok = (200, Some("httpbin".to_string()));
    assert_eq!(status_and_upstream(&gw, 80, "httpbin.example.com", "/status/200").await, ok);
    assert_eq!(status_and_upstream(&gw, 80, "httpbin.example.com:80", "/delay/1").await, ok);
    // Istio's task: "Accessing any other URL that has not been explicitly exposed ... 404".
    assert_eq!(status_and_upstream(&gw, 80, "httpbin.example.com", "/headers").await, (404, None));
    assert_eq!(status_and_upstream(&gw, 80, "other.example.com", "/status/200").await, (404, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helloworld_gateway_routes_exactly_hello() {
    let hello = Upstream::start("helloworld").await;
    let yaml = sample("S3.yaml") + &service_on("helloworld", "helloworld.default.svc.cluster.local", 5000, &hello);
    let gw = TestGateway::start(&yaml);
    assert_eq!(status_and_upstream(&gw, 80, "x", "/hello").await, (200, Some("helloworld".into())));
    assert_eq!(status_and_upstream(&gw, 80, "x", "/hello/there").await, (404, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_gateway_sample_forwards_gateway_traffic_to_the_external_host() {
    // S24 at the egress gateway: the mesh rule is dropped (match.gateways = mesh), the gateway rule
    // sends edition.cnn.com:80 to the ServiceEntry, here resolved to a local upstream by STATIC.
    let cnn = Upstream::start("cnn").await;
    let yaml = sample("S24.yaml").replace(
        "resolution: DNS",
        &format!("resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http-port: {}}}}}]", cnn.port()),
    );
    let setup = e2e::gateway::Setup {
        labels: Some([("istio".to_string(), "egressgateway".to_string())].into()),
        ..Default::default()
    };
    let gw = TestGateway::start_with(&yaml, setup);
    assert_eq!(status_and_upstream(&gw, 80, "edition.cnn.com", "/politics").await, (200, Some("cnn".into())));
    assert_eq!(cnn.last().header("host"), Some("edition.cnn.com"));
    assert_eq!(status_and_upstream(&gw, 80, "other.com", "/").await, (404, None));
}
