//! Metrics (Istio's names and labels on `/stats/prometheus`), the admin endpoints and the access
//! log, checked over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::client::{get, http1, raw};
use e2e::gateway::{Setup, TempDir};
use e2e::tls::{tcp_exchange, TcpUpstream};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};
use gateway::telemetry::access_log::Target;

/// `METHOD path` on an operator endpoint; returns (status, body).
async fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    let out = tokio::task::spawn_blocking(move || raw(addr, request.as_bytes())).await.unwrap();
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of the first sample of `metric` whose labels contain every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn config(up: &Upstream) -> String {
    gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &virtual_service(
            "vs",
            &["*"],
            "- name: found\n  match: [{uri: {prefix: /ok}}]\n  route: [{destination: {host: up.internal}}]\n- name: missing\n  match: [{uri: {prefix: /nc}}]\n  route: [{destination: {host: nowhere.internal}}]",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_with_istios_names_and_labels() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let c = http1();
    for _ in 0..3 {
        assert_eq!(get(&c, &gw.url(80), "x", "/ok", &[]).await.status, 200);
    }
    assert_eq!(get(&c, &gw.url(80), "x", "/nc", &[]).await.status, 503);
    assert_eq!(get(&c, &gw.url(80), "x", "/nothing", &[]).await.status, 404);
    // A request is counted once its response is written and its connection handled: scrape until
    // the last one shows (5 s at most), so the counts below do not race the gateway.
    // A series appears at 0 just before its first increment: wait for the counts themselves.
    let counted = [("response_code=\"200\"", 3.0), ("response_code=\"503\"", 1.0), ("response_code=\"404\"", 1.0)];
    let text = gw
        .metrics_when(|t| {
            counted.iter().all(|(c, n)| sample(t, "istio_requests_total", &[c]) == Some(*n))
                && sample(t, "istio_request_duration_milliseconds_count", &["response_code=\"200\""]) == Some(3.0)
        })
        .await;
    let ok = sample(
        &text,
        "istio_requests_total",
        &[
            "reporter=\"source\"",
            "response_code=\"200\"",
            "response_flags=\"-\"",
            "destination_service=\"up.internal\"",
            "request_protocol=\"http\"",
            "source_workload=\"pylon\"",
        ],
    );
    assert_eq!(ok, Some(3.0), "{text}");
    assert_eq!(sample(&text, "istio_requests_total", &["response_code=\"503\"", "response_flags=\"NC\""]), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "istio_requests_total",
            &["response_code=\"404\"", "response_flags=\"NR\"", "destination_service=\"unknown\""]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "istio_request_duration_milliseconds_count", &["response_code=\"200\""]), Some(3.0));
    assert!(sample(&text, "istio_response_bytes_sum", &["response_code=\"200\""]).unwrap() > 0.0);
    assert_eq!(
        sample(
            &text,
            "pylon_gateway_requests_total",
            &["gateway=\"default/gw\"", "route=\"found\"", "response_code=\"200\""]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "pylon_config_generation", &[]).or_else(|| gauge(&text, "pylon_config_generation")),
        Some(1.0)
    );
}

fn gauge(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{metric} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_counted() {
    let db = TcpUpstream::start("db").await;
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 9000, name: tcp, protocol: TCP}\n    hosts: ['*']\n---\n".to_string()
        + &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: db}}\nspec:\n  hosts: [db.internal]\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]\n---\n", db.port())
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  tcp:\n  - route: [{destination: {host: db.internal}}]\n";
    let gw = TestGateway::start(&yaml);
    assert_eq!(tcp_exchange(gw.addr(9000), b"hello").await, "db\nhello");
    let metrics = gw.running.metrics_addr.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = call(metrics, "GET", "/stats/prometheus").await;
        let labels = ["destination_service=\"db.internal\"", "request_protocol=\"tcp\""];
        if sample(&text, "istio_tcp_connections_closed_total", &labels) == Some(1.0) {
            assert_eq!(sample(&text, "istio_tcp_connections_opened_total", &labels), Some(1.0));
            assert_eq!(sample(&text, "istio_tcp_received_bytes_total", &labels), Some(5.0), "the request: hello");
            assert_eq!(sample(&text, "istio_tcp_sent_bytes_total", &labels), Some(8.0), "the response: db\\nhello");
            break;
        }
        assert!(Instant::now() < deadline, "no closed connection counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker remembers the series of the requests it counted last, by what chose their labels in
/// the configuration it served them with: after a reload that renames the route (the same route
/// at the same place in a new configuration), requests count under the new name only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_after_a_reload_count_under_the_new_labels() {
    use std::sync::atomic::Ordering;
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up));
    let c = http1();
    let route = |name: &str| format!("route=\"{name}\"");
    let (found, renamed) = (route("found"), route("renamed"));
    for _ in 0..3 {
        assert_eq!(get(&c, &gw.url(80), "x", "/ok", &[]).await.status, 200);
    }
    let text = gw.metrics_when(|t| sample(t, "pylon_gateway_requests_total", &[&found]) == Some(3.0)).await;
    assert_eq!(sample(&text, "pylon_gateway_requests_total", &[&found]), Some(3.0), "{text}");
    gw.write_config(&config(&up).replace("- name: found", "- name: renamed"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.running.state.reloads.applied.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the edited configuration was not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        assert_eq!(get(&c, &gw.url(80), "x", "/ok", &[]).await.status, 200);
    }
    let text = gw.metrics_when(|t| sample(t, "pylon_gateway_requests_total", &[&renamed]) == Some(5.0)).await;
    assert_eq!(sample(&text, "pylon_gateway_requests_total", &[&renamed]), Some(5.0), "{text}");
    assert_eq!(sample(&text, "pylon_gateway_requests_total", &[&found]), Some(3.0), "{text}");
    assert_eq!(sample(&text, "istio_requests_total", &["response_code=\"200\""]), Some(8.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoints_describe_and_reload_the_gateway() {
    let up = Upstream::start("up").await;
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: cred}\ntype: kubernetes.io/tls\nstringData: {tls.crt: CERTIFICATE-BYTES, tls.key: PRIVATE-KEY-BYTES}\n---\n";
    let gw = TestGateway::start(&(config(&up) + secret));
    let admin = gw.running.admin_addr.unwrap();
    let (status, dump) = call(admin, "GET", "/config_dump").await;
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["generation"], 1);
    assert_eq!(dump["table"]["gateways"][0], "default/gw");
    assert!(!dump.to_string().contains("PRIVATE-KEY-BYTES"));
    let (_, clusters) = call(admin, "GET", "/clusters").await;
    let clusters: serde_json::Value = serde_json::from_str(&clusters).unwrap();
    let up_cluster =
        clusters["clusters"].as_array().unwrap().iter().find(|c| c["name"] == "outbound|80||up.internal").unwrap();
    assert_eq!(up_cluster["endpoints"][0]["address"], up.addr.to_string());
    let (_, listeners) = call(admin, "GET", "/listeners").await;
    assert!(listeners.contains(&gw.addr(80).port().to_string()), "{listeners}");
    // POST /reload applies; an invalid configuration answers 400 with its diagnostics.
    let (status, body) = call(admin, "POST", "/reload").await;
    assert_eq!((status, body.trim()), (200, "applied generation 2"));
    std::fs::write(
        gw.dir.0.join("config.yaml"),
        config(&up).replace("  gateways: [gw]", "  gateways: [gw]\n  httpp: []"),
    )
    .unwrap();
    let (status, body) = call(admin, "POST", "/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("httpp"), "{body}");
    assert_eq!(call(admin, "GET", "/reload").await.0, 200);
    assert_eq!(call(admin, "GET", "/healthz/ready").await, (200, "ready\n".to_string()));
    let (_, text) = call(gw.running.metrics_addr.unwrap(), "GET", "/stats/prometheus").await;
    assert!(text.contains("pylon_config_reloads_total{result=\"rejected\"} "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_istios_text_format() {
    let up = Upstream::start("up").await;
    let dir = TempDir::new();
    let path = dir.0.join("access.log");
    let setup = Setup { access_log: Some((Target::File(path.clone()), false)), ..Setup::default() };
    let gw = TestGateway::start_with(&config(&up), setup);
    get(
        &http1(),
        &gw.url(80),
        "app.example.com",
        "/ok/page?q=1",
        &[("user-agent", "tester/1.0"), ("x-request-id", "rid-1")],
    )
    .await;
    get(&http1(), &gw.url(80), "app.example.com", "/nothing", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(Instant::now() < deadline, "no access log lines: {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with('[') && first.contains("Z] \"GET /ok/page?q=1 HTTP/1.1\" 200 - via_upstream - \"-\" 0 "),
        "{first}"
    );
    assert!(first.contains("\"tester/1.0\" \"rid-1\" \"app.example.com\""), "{first}");
    assert!(first.contains(&format!("\"{}\" outbound|80||up.internal", up.addr)), "{first}");
    assert!(first.ends_with(" - found"), "{first}");
    let second = text.lines().nth(1).unwrap();
    assert!(second.contains("\"GET /nothing HTTP/1.1\" 404 NR route_not_found"), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_denial_is_logged_with_the_policy_and_rule_that_matched() {
    let up = Upstream::start("up").await;
    let dir = TempDir::new();
    let path = dir.0.join("access.log");
    let deny = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin}\nspec:\n  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/other\"]}}]\n  - to: [{operation: {paths: [\"/admin\"]}}]\n";
    let setup = Setup { access_log: Some((Target::File(path.clone()), false)), ..Setup::default() };
    let gw = TestGateway::start_with(&(config(&up) + "---\n" + deny), setup);
    assert_eq!(get(&http1(), &gw.url(80), "app.example.com", "/admin", &[]).await.status, 403);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no access log line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        line.contains(
            "\"GET /admin HTTP/1.1\" 403 - rbac_access_denied_matched_policy[ns[default]-policy[no-admin]-rule[1]] "
        ),
        "{line}"
    );
}
