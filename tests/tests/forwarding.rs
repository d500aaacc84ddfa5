//! Forwarding: weighted destinations, subsets, endpoints, Istio's request headers, protocols, and
//! the outcome codes with Envoy's bodies (Envoy's local replies and response flags:
//! envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::Ipv4Addr;

use e2e::client::{get, h2c, http1, raw};
use e2e::dns::TestDns;
use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

fn route(host: &str) -> String {
    format!("- route: [{{destination: {{host: {host}}}}}]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_per_request() {
    let (v1, v2, v3) = (Upstream::start("v1").await, Upstream::start("v2").await, Upstream::start("v3").await);
    let rules = "- route:\n  - {destination: {host: v1.internal}, weight: 75}\n  - {destination: {host: v2.internal}, weight: 25}\n  - {destination: {host: v3.internal}, weight: 0}";
    let yaml = gateway(80, &["*"])
        + &service("v1", "v1.internal", &[&v1])
        + &service("v2", "v2.internal", &[&v2])
        + &service("v3", "v3.internal", &[&v3])
        + &virtual_service("vs", &["*"], rules);
    let gw = TestGateway::start(&yaml);
    let c = http1();
    let n = 800;
    for _ in 0..n {
        assert_eq!(get(&c, &gw.url(80), "x", "/", &[]).await.status, 200);
    }
    let (a, b) = (v1.seen().len(), v2.seen().len());
    assert_eq!(a + b, n);
    assert!(v3.seen().is_empty(), "weight 0 gets nothing");
    // 75% of 800 = 600; the standard deviation is about 12: allow 5 of them.
    assert!((540..=660).contains(&a), "v1 got {a} of {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subsets_select_endpoints_by_label() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let rules = "- match: [{headers: {end-user: {exact: jason}}}]\n  route: [{destination: {host: reviews.internal, subset: v2}}]\n- route: [{destination: {host: reviews.internal, subset: v1}}]";
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews.internal\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n";
    let yaml = gateway(80, &["*"])
        + &service("reviews", "reviews.internal", &[&v1, &v2])
        + dr
        + &virtual_service("vs", &["*"], rules);
    let gw = TestGateway::start(&yaml);
    let c = http1();
    for _ in 0..10 {
        assert_eq!(get(&c, &gw.url(80), "x", "/", &[]).await.upstream(), Some("v1"));
        assert_eq!(get(&c, &gw.url(80), "x", "/", &[("end-user", "jason")]).await.upstream(), Some("v2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_endpoints_are_resolved_in_the_background_and_follow_changes() {
    let dns = TestDns::start().await;
    let up = Upstream::start("dns").await;
    dns.set("backend.test", &[Ipv4Addr::LOCALHOST], 1);
    let se = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: backend}}\nspec:\n  hosts: [backend.test]\n  ports: [{{number: {p}, name: http, protocol: HTTP}}]\n  resolution: DNS\n---\n",
        p = up.port()
    );
    let yaml = gateway(80, &["*"]) + &se + &virtual_service("vs", &["*"], &route("backend.test"));
    let gw = TestGateway::start_with(&yaml, Setup { dns_server: Some(dns.addr), ..Setup::default() });
    let c = http1();
    assert_eq!(get(&c, &gw.url(80), "x", "/", &[]).await.upstream(), Some("dns"));
    assert!(dns.queries().contains(&"backend.test".to_string()));
    // The name now points nowhere useful: after the TTL, requests stop reaching the upstream.
    dns.set("backend.test", &[Ipv4Addr::new(127, 0, 0, 2)], 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = get(&c, &gw.url(80), "x", "/", &[]).await;
        if r.status == 503 {
            assert!(r.body.contains("connection failure"), "{}", r.body);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "DNS change not picked up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_entries_selected_by_a_service_entry_are_endpoints() {
    let (vm, other) = (Upstream::start("vm").await, Upstream::start("other").await);
    let entry = |name: &str, app: &str, up: &Upstream| {
        format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}}}\nspec:\n  address: 127.0.0.1\n  ports: {{http: {}}}\n  labels: {{app: {app}}}\n---\n", up.port())
    };
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vms}\nspec:\n  hosts: [vms.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: vm}}\n---\n";
    let yaml = gateway(80, &["*"])
        + &entry("vm-1", "vm", &vm)
        + &entry("db-1", "db", &other)
        + se
        + &virtual_service("vs", &["*"], &route("vms.internal"));
    let gw = TestGateway::start(&yaml);
    for _ in 0..10 {
        assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.upstream(), Some("vm"));
    }
    assert!(other.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    for _ in 0..30 {
        // A new client connection each time: reuse is on the upstream side.
        assert_eq!(get(&http1(), &gw.url(80), "x", "/", &[]).await.status, 200);
    }
    assert_eq!(up.seen().len(), 30);
    assert!(up.connections() <= 3, "{} upstream connections for 30 requests", up.connections());
}

/// As Envoy keeps every idle connection of a cluster (up to `max_connections`), the gateway keeps
/// the connections a burst of concurrent requests opened, and the next burst reuses them all;
/// Pingora's default pool kept 128 and closed the rest, so each request past those connected anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_requests_reuses_the_upstream_connections_of_the_last() {
    const BURST: usize = 200;
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let client = http1();
    let burst = || {
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            let (client, url) = (client.clone(), gw.url(80));
            // Answered after 300 ms: the whole burst is in flight at once.
            all.spawn(async move { get(&client, &url, "x", "/", &[("x-delay-ms", "300")]).await.status });
        }
        all
    };
    for status in burst().join_all().await {
        assert_eq!(status, 200);
    }
    let opened = up.connections();
    assert!(opened >= BURST, "{opened} upstream connections for {BURST} concurrent requests");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for status in burst().join_all().await {
        assert_eq!(status, 200);
    }
    assert_eq!(up.connections(), opened, "the second burst connected anew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_request_headers_are_added() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let c = http1();
    get(&c, &gw.url(80), "x", "/", &[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]).await;
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9,127.0.0.1"));
    // A client's x-forwarded-proto is not trusted (numTrustedProxies 0).
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let id = seen.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 36);
    get(&c, &gw.url(80), "x", "/", &[("x-request-id", "keep-me")]).await;
    assert_eq!(up.last().header("x-request-id"), Some("keep-me"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served_and_forwarded_as_http1() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    // HTTP/2 carries the host in :authority (a different Host header would be malformed).
    let r = get(&h2c(), &gw.url(80), "", "/h2", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), Some("up"));
    // Istio: an HTTP service port gets HTTP/1.1 whatever the client spoke.
    assert_eq!(up.last().version, "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_is_served() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let out = raw(gw.addr(80), b"GET /old HTTP/1.0\r\n\r\n");
    assert!(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("x-upstream: up"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_have_envoy_codes_and_bodies() {
    let up = Upstream::start("up").await;
    let closed_port = e2e::closed_port::ClosedPort::new().unwrap();
    let closed = closed_port.port;
    let rules = "- match: [{uri: {prefix: /nc}}]\n  route: [{destination: {host: missing.internal}}]\n- match: [{uri: {prefix: /uh}}]\n  route: [{destination: {host: none.internal}}]\n- match: [{uri: {prefix: /uf}}]\n  route: [{destination: {host: down.internal}}]\n- match: [{uri: {prefix: /ok}}]\n  route: [{destination: {host: up.internal}}]";
    let none = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: none}\nspec:\n  hosts: [none.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n---\n";
    let down = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: down}}\nspec:\n  hosts: [down.internal]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {closed}}}}}]\n---\n"
    );
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + none
        + &down
        + &virtual_service("vs", &["*"], rules);
    let gw = TestGateway::start(&yaml);
    let c = http1();
    let base = gw.url(80);
    let nr = get(&c, &base, "x", "/none", &[]).await;
    assert_eq!((nr.status, nr.body.as_str()), (404, ""));
    let nc = get(&c, &base, "x", "/nc", &[]).await;
    assert_eq!((nc.status, nc.body.as_str()), (503, ""));
    let uh = get(&c, &base, "x", "/uh", &[]).await;
    assert_eq!((uh.status, uh.body.as_str()), (503, "no healthy upstream"));
    let uf = get(&c, &base, "x", "/uf", &[]).await;
    assert_eq!(uf.status, 503);
    assert_eq!(uf.body, "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
    assert_eq!(get(&c, &base, "x", "/ok", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_on_another_endpoint() {
    let up = Upstream::start("alive").await;
    let closed_port = e2e::closed_port::ClosedPort::new().unwrap();
    let closed = closed_port.port;
    let se = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: mixed}}\nspec:\n  hosts: [mixed.internal]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {closed}}}}}\n  - {{address: 127.0.0.1, ports: {{http: {}}}}}\n---\n",
        up.port()
    );
    let yaml = gateway(80, &["*"]) + &se + &virtual_service("vs", &["*"], &route("mixed.internal"));
    let gw = TestGateway::start(&yaml);
    let c = http1();
    for _ in 0..20 {
        assert_eq!(get(&c, &gw.url(80), "x", "/", &[]).await.upstream(), Some("alive"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let smuggle = raw(
        gw.addr(80),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(smuggle.starts_with("HTTP/1.1 400"), "{smuggle}");
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..120 {
        big.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert!(raw(gw.addr(80), &big).starts_with("HTTP/1.1 431"));
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_control_headers_from_clients_are_removed() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let spoofed = [
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-max-retries", "100"),
        ("x-envoy-upstream-rq-timeout-ms", "1"),
        ("x-envoy-internal", "true"),
        ("x-envoy-external-address", "10.0.0.1"),
        ("x-envoy-force-trace", "true"),
        ("x-envoy-original-url", "http://x/admin"),
    ];
    get(&http1(), &gw.url(80), "x", "/", &spoofed).await;
    let seen = up.last();
    for (name, _) in spoofed.iter().filter(|(n, _)| *n != "x-envoy-external-address") {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(seen.header("x-envoy-external-address"), Some("127.0.0.1"), "set by the gateway, not the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_address_is_the_client_behind_trusted_proxies() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let setup = Setup { num_trusted_proxies: 2, ..Setup::default() };
    let gw = TestGateway::start_with(&yaml, setup);
    // Istio's network-topology example: client, then two trusted proxies.
    get(&http1(), &gw.url(80), "x", "/", &[("x-forwarded-for", "198.51.100.7, 203.0.113.9")]).await;
    let seen = up.last();
    assert_eq!(seen.header("x-envoy-external-address"), Some("198.51.100.7"));
    assert_eq!(seen.header("x-forwarded-for"), Some("198.51.100.7, 203.0.113.9,127.0.0.1"));
}

/// Istio's "Configuring Gateway Network Topology" example: a request with
/// `X-Forwarded-For: 56.5.6.7, 72.9.5.6, 98.1.2.3` through 0, 1 and 2 trusted proxies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_network_topology_example_for_zero_one_and_two_trusted_proxies() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let xff = [("x-forwarded-for", "56.5.6.7, 72.9.5.6, 98.1.2.3")];
    for (trusted, external) in [(0, "127.0.0.1"), (1, "98.1.2.3"), (2, "72.9.5.6")] {
        let gw = TestGateway::start_with(&yaml, Setup { num_trusted_proxies: trusted, ..Setup::default() });
        get(&http1(), &gw.url(80), "x", "/", &xff).await;
        let seen = up.last();
        assert_eq!(seen.header("x-envoy-external-address"), Some(external), "numTrustedProxies {trusted}");
        assert_eq!(seen.header("x-forwarded-for"), Some("56.5.6.7, 72.9.5.6, 98.1.2.3,127.0.0.1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_proto_host_and_port_pass_only_from_trusted_proxies() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["*"], &route("up.internal"));
    let claimed =
        [("x-forwarded-proto", "https"), ("x-forwarded-host", "shop.example.com"), ("x-forwarded-port", "443")];
    for (trusted, expected) in [(0, ["http", "-", "-"]), (1, ["https", "shop.example.com", "443"])] {
        let gw = TestGateway::start_with(&yaml, Setup { num_trusted_proxies: trusted, ..Setup::default() });
        get(&http1(), &gw.url(80), "x", "/", &claimed).await;
        let seen = up.last();
        let values = claimed.map(|(k, _)| seen.header(k).unwrap_or("-").to_string());
        assert_eq!(values, expected, "numTrustedProxies {trusted}");
    }
    // A clientAddress with trustedCidrs trusts only peers inside them.
    let policy = "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: lb}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  clientAddress: {trustedCidrs: [10.0.0.0/8]}\n";
    let gw = TestGateway::start(&(yaml + "---\n" + policy));
    get(&http1(), &gw.url(80), "x", "/", &claimed).await;
    assert_eq!(up.last().header("x-forwarded-proto"), Some("http"), "127.0.0.1 is not in 10.0.0.0/8");
}
