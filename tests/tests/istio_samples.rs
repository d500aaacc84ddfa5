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

/// Istio's secure-gateway tasks: `credentialName: httpbin-credential` from a credentials directory
/// holding what `kubectl create secret` would (certificate, key and, for mutual TLS, the CA).
mod secure_gateways {
    use super::*;
    use e2e::certs::{Ca, Leaf};
    use e2e::gateway::{Setup, TempDir};
    use e2e::tls::{Client, TlsUpstream};

    fn with_credential(yaml: &str, creds: &TempDir) -> TestGateway {
        TestGateway::start_with(yaml, Setup { credentials_dir: Some(creds.0.clone()), ..Setup::default() })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_simple_tls_task_serves_httpbin_over_https() {
        let ca = Ca::new("example.com");
        let creds = TempDir::new();
        ca.issue(&Leaf::server(&["httpbin.example.com"])).write_credential(&creds.0.join("httpbin-credential"));
        let httpbin = Upstream::start("httpbin").await;
        let yaml = sample("S7.yaml") + &service_on("httpbin", "httpbin.default.svc.cluster.local", 8000, &httpbin);
        let gw = with_credential(&yaml, &creds);
        // curl -HHost:httpbin.example.com --resolve ... --cacert example.com.crt https://httpbin.example.com/status/418
        let client = Client::to("httpbin.example.com", &ca.cert);
        let r = client.get(gw.addr(443), "httpbin.example.com", "/status/418", &[]).await.unwrap();
        assert_eq!((r.status, r.upstream()), (200, Some("httpbin")), "{r:?}");
        assert_eq!(httpbin.last().header("x-forwarded-proto"), Some("https"));
        let r = client.get(gw.addr(443), "httpbin.example.com", "/headers", &[]).await.unwrap();
        assert_eq!(r.status, 404, "only /status and /delay are routed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mutual_tls_task_requires_a_client_certificate() {
        let ca = Ca::new("example.com");
        let creds = TempDir::new();
        let dir = creds.0.join("httpbin-credential");
        ca.issue(&Leaf::server(&["httpbin.example.com"])).write_credential(&dir);
        ca.write(&dir, "ca.crt");
        let httpbin = Upstream::start("httpbin").await;
        let vs = sample("S7.yaml").split("---").nth(1).unwrap().to_string();
        let yaml = sample("S9.yaml")
            + &vs
            + "\n---\n"
            + &service_on("httpbin", "httpbin.default.svc.cluster.local", 8000, &httpbin);
        let gw = with_credential(&yaml, &creds);
        let client = Client::to("httpbin.example.com", &ca.cert);
        assert!(client.get(gw.addr(443), "httpbin.example.com", "/status/418", &[]).await.is_err());
        let cert = ca.issue(&Leaf::client("client.example.com"));
        let r = client.with_cert(&cert).get(gw.addr(443), "httpbin.example.com", "/status/418", &[]).await.unwrap();
        assert_eq!((r.status, r.upstream()), (200, Some("httpbin")), "{r:?}");
        assert!(httpbin
            .last()
            .header("x-forwarded-client-cert")
            .unwrap()
            .contains("Subject=\"O=Example,CN=client.example.com\""));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sni_passthrough_task_reaches_nginx_with_its_own_certificate() {
        let ca = Ca::new("example.com");
        let nginx_cert = ca.issue(&Leaf::server(&["nginx.example.com"]));
        let nginx = TlsUpstream::start("my-nginx", &nginx_cert).await;
        let entry = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: my-nginx}}\nspec:\n  hosts: [my-nginx.default.svc.cluster.local]\n  ports: [{{number: 443, name: https, protocol: HTTPS}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{https: {}}}}}]\n---\n",
            nginx.addr.port()
        );
        let gw = TestGateway::start(&(sample("S10.yaml") + &entry));
        let conn = Client::to("nginx.example.com", &ca.cert).connect(gw.addr(443)).await.unwrap();
        assert_eq!(conn.server_serial(), nginx_cert.serial(), "the client sees nginx's own certificate");
        let (r, _) = e2e::tls::request(conn, "nginx.example.com", "/", &[]).await.unwrap();
        assert_eq!((r.status, r.upstream()), (200, Some("my-nginx")), "{r:?}");
    }
}
