//! What a VirtualService route does before (and around) the upstream, as Istio's Envoy filters do
//! it: `fault` (delay, abort), `corsPolicy` (preflights answered, headers on responses) and
//! `timeout` (504 UT).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::time::{Duration, Instant};

use e2e::client::{get, http1};
use e2e::yaml::{gateway, service, service_at, virtual_service};
use e2e::{TestGateway, Upstream};

/// A gateway on port 80 with one route `r` to `up`, carrying `extra` (YAML flow fields).
fn config(up: &Upstream, extra: &str) -> String {
    gateway(80, &["*"])
        + &service("up", "up.internal", &[up])
        + &virtual_service(
            "vs",
            &["*"],
            &format!("- name: r\n  route: [{{destination: {{host: up.internal}}}}]\n  {extra}"),
        )
}

/// The `pylon_gateway_requests_total` sample with `flags`, once counted.
async fn count_with_flags(gw: &TestGateway, flags: &str) -> Option<String> {
    let want = format!("response_flags=\"{flags}\"");
    let flagged = |l: &str| l.starts_with("pylon_gateway_requests_total{") && l.contains(&want);
    let text = gw.metrics_when(|t| t.lines().any(flagged)).await;
    text.lines().find(|l| flagged(l)).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_abort_answers_with_its_status_before_the_upstream() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "fault: {abort: {httpStatus: 418, percentage: {value: 100}}}"));
    let r = get(&http1(), &gw.url(80), "x", "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (418, "fault filter abort"));
    assert!(up.seen().is_empty(), "an aborted request never reaches the upstream");
    assert!(count_with_flags(&gw, "FI").await.is_some(), "flag FI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_abort_is_a_200_carrying_the_grpc_status() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}"));
    let r = get(&http1(), &gw.url(80), "x", "/pkg.Svc/Call", &[("content-type", "application/grpc")]).await;
    assert_eq!(
        (r.status, r.header("grpc-status"), r.header("content-type")),
        (200, Some("14"), Some("application/grpc"))
    );
    assert_eq!(r.header("grpc-message"), Some("fault filter abort"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_delay_holds_the_request_then_forwards_it() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}"));
    let started = Instant::now();
    let r = get(&http1(), &gw.url(80), "x", "/", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "delayed {:?}", started.elapsed());
    assert_eq!((r.status, up.seen().len()), (200, 1));
    assert!(count_with_flags(&gw, "DI").await.is_some(), "flag DI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_without_a_percentage_injects_nothing() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "fault: {abort: {httpStatus: 503}}"));
    for _ in 0..20 {
        assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    }
}

/// Istio's CORS test case: origin cors.com allowed, POST and GET, two headers, a day.
const CORS: &str = "corsPolicy: {allowOrigins: [{exact: cors.com}], allowMethods: [POST, GET], allowHeaders: [X-Foo-Bar, X-Foo-Baz], exposeHeaders: [X-Trace], maxAge: 24h, allowCredentials: true}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_preflight_from_an_allowed_origin_is_answered_by_the_gateway() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, CORS));
    let preflight = http1()
        .request(http::Method::OPTIONS, format!("{}/api", gw.url(80)))
        .header("origin", "cors.com")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let h = |n: &str| preflight.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("access-control-allow-origin").as_deref(), Some("cors.com"));
    assert_eq!(h("access-control-allow-methods").as_deref(), Some("POST,GET"));
    assert_eq!(h("access-control-allow-headers").as_deref(), Some("X-Foo-Bar,X-Foo-Baz"));
    assert_eq!(h("access-control-max-age").as_deref(), Some("86400"));
    assert_eq!(h("access-control-allow-credentials").as_deref(), Some("true"));
    assert!(up.seen().is_empty(), "the preflight never reaches the upstream");
    let simple = get(&http1(), &gw.url(80), "x", "/api", &[("origin", "cors.com")]).await;
    assert_eq!((simple.status, simple.header("access-control-allow-origin")), (200, Some("cors.com")));
    assert_eq!(simple.header("access-control-expose-headers"), Some("X-Trace"));
    let no_origin = get(&http1(), &gw.url(80), "x", "/api", &[]).await;
    assert_eq!(no_origin.header("access-control-allow-origin"), None);
    let other = get(&http1(), &gw.url(80), "x", "/api", &[("origin", "evil.com")]).await;
    assert_eq!((other.status, other.header("access-control-allow-origin")), (200, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmatched_preflight_is_forwarded_or_ignored_as_configured() {
    let up = Upstream::start("up").await;
    let preflight = |gw: &TestGateway| {
        http1()
            .request(http::Method::OPTIONS, format!("{}/api", gw.url(80)))
            .header("origin", "evil.com")
            .header("access-control-request-method", "DELETE")
            .send()
    };
    let forwarding = TestGateway::start(&config(&up, CORS));
    let r = preflight(&forwarding).await.unwrap();
    assert_eq!((r.status().as_u16(), up.seen().len()), (200, 1), "FORWARD (the default): the upstream answers");
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let ignore = CORS.replace("allowCredentials: true", "unmatchedPreflights: IGNORE");
    let ignoring = TestGateway::start(&config(&up, &ignore));
    let r = preflight(&ignoring).await.unwrap();
    assert_eq!((r.status().as_u16(), up.seen().len()), (200, 1), "IGNORE: answered here, not forwarded");
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_answers_504_when_the_upstream_is_slower() {
    let up = Upstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "timeout: 200ms"));
    let slow = get(&http1(), &gw.url(80), "x", "/", &[("x-delay-ms", "1500")]).await;
    assert_eq!((slow.status, slow.body.as_str()), (504, "upstream request timeout"));
    assert!(count_with_flags(&gw, "UT").await.is_some(), "flag UT");
    let quick = get(&http1(), &gw.url(80), "x", "/", &[("x-delay-ms", "10")]).await;
    assert_eq!(quick.status, 200, "within the timeout");
    let untimed = TestGateway::start(&config(&up, ""));
    let slow = get(&http1(), &untimed.url(80), "x", "/", &[("x-delay-ms", "600")]).await;
    assert_eq!(slow.status, 200, "no timeout by default (Istio)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_cuts_a_body_still_streaming() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that sends its headers and half its body at once, the rest a second later.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345").await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tcp.write_all(b"67890").await;
            });
        }
    });
    let se = service_at("slow", "slow.internal", &[(port, 1)]);
    let yaml = gateway(80, &["*"])
        + &se
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: slow.internal}}]\n  timeout: 300ms");
    let gw = TestGateway::start(&yaml);
    let resp = http1().get(gw.url(80)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the response had started");
    assert!(resp.bytes().await.is_err(), "the body is cut when the timeout passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_503_and_504_carry_the_routes_response_headers() {
    let up = Upstream::start("up").await;
    let held = e2e::closed_port::ClosedPort::new().unwrap();
    let dead_port = held.port;
    let dead = service_at("dead", "dead.internal", &[(dead_port, 1)]);
    let routes = "- match: [{uri: {prefix: /dead}}]\n  route: [{destination: {host: dead.internal}, headers: {response: {set: {x-destination: dead}}}}]\n  headers: {response: {set: {x-route: dead}}}\n- match: [{uri: {prefix: /slow}}]\n  route: [{destination: {host: up.internal}}]\n  timeout: 100ms\n  headers: {response: {set: {x-route: slow}}}";
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &dead
        + &virtual_service("vs", &["x.example.com"], routes);
    let gw = TestGateway::start(&yaml);
    let refused = get(&http1(), &gw.url(80), "x.example.com", "/dead", &[]).await;
    assert_eq!(
        (refused.status, refused.header("x-route"), refused.header("x-destination")),
        (503, Some("dead"), Some("dead"))
    );
    let timed_out = get(&http1(), &gw.url(80), "x.example.com", "/slow", &[("x-delay-ms", "1000")]).await;
    assert_eq!((timed_out.status, timed_out.header("x-route")), (504, Some("slow")));
    let unrouted = get(&http1(), &gw.url(80), "other", "/", &[]).await;
    assert_eq!((unrouted.status, unrouted.header("x-route")), (404, None), "no route, no route headers");
}
