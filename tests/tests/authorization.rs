//! The firewall: Istio `AuthorizationPolicy` at the gateway, each test named after the rule of
//! Istio's reference (istio.io/latest/docs/reference/config/security/authorization-policy/) it
//! shows, with real requests through the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use e2e::client::{get, http1};
use e2e::gateway::Setup;
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

/// A gateway on port 80 routing every host to `up`, plus `policies`.
fn serving(up: &Upstream, policies: &str) -> String {
    gateway(80, &["*"])
        + &service("app", "app.internal", &[up])
        + &virtual_service("vs", &["*"], "- route: [{destination: {host: app.internal}}]")
        + policies
}

/// An AuthorizationPolicy `name` in `default` selecting the gateway, with `spec` lines.
fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{istio: ingressgateway}}}}\n{}\n---\n",
        spec.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    )
}

/// The status of GET `path` with `headers`.
async fn status(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = http1().request(method.parse().unwrap(), format!("{}{path}", gw.url(80)));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_policy_admits_only_requests_that_match_a_rule() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(
        &up,
        &policy("allow-public", "action: ALLOW\nrules:\n- to: [{operation: {methods: [GET], paths: [\"/public/*\"]}}]"),
    ));
    assert_eq!(status(&gw, "GET", "/public/a", &[]).await, 200);
    let denied = get(&http1(), &gw.url(80), "", "/private", &[]).await;
    assert_eq!((denied.status, denied.body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(status(&gw, "POST", "/public/a", &[]).await, 403, "methods and paths are ANDed");
    assert_eq!(up.seen().len(), 1, "denied requests never reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_policy_wins_over_an_allow_policy() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(
        &up,
        &(policy("allow-all", "action: ALLOW\nrules: [{}]")
            + &policy("deny-admin", "action: DENY\nrules:\n- to: [{operation: {paths: [\"/admin*\"]}}]")),
    ));
    assert_eq!(status(&gw, "GET", "/admin/users", &[]).await, 403);
    assert_eq!(status(&gw, "GET", "/shop", &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_policy_without_rules_denies_everything_and_an_audit_policy_changes_nothing() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(&up, &policy("allow-nothing", "action: ALLOW")));
    assert_eq!(status(&gw, "GET", "/", &[]).await, 403);
    let audited = TestGateway::start(&serving(&up, &policy("audit", "action: AUDIT\nrules: [{}]")));
    assert_eq!(status(&audited, "GET", "/", &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_values_match_everything_they_do_not_list() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(
        &up,
        &policy(
            "deny-but-health",
            "action: DENY\nrules:\n- to: [{operation: {notPaths: [\"/healthz\"], notMethods: [OPTIONS]}}]",
        ),
    ));
    assert_eq!(status(&gw, "GET", "/healthz", &[]).await, 200);
    assert_eq!(status(&gw, "OPTIONS", "/x", &[]).await, 200);
    assert_eq!(status(&gw, "GET", "/x", &[]).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_wildcards_and_templates_match_as_istio_documents() {
    let up = Upstream::start("app").await;
    let paths = "[\"*.png\", \"/books/{*}/pages\", \"/files/{**}\", \"/exact\"]";
    let gw = TestGateway::start(&serving(
        &up,
        &policy("allow-paths", &format!("action: ALLOW\nrules:\n- to: [{{operation: {{paths: {paths}}}}}]")),
    ));
    for (path, want) in [
        ("/img/a.png", 200),
        ("/books/7/pages", 200),
        ("/books/7/8/pages", 403),
        ("/files/a/b/c", 200),
        ("/files", 403),
        ("/exact", 200),
        ("/exact?q=1", 200),
        ("/exact/", 403),
    ] {
        assert_eq!(status(&gw, "GET", path, &[]).await, want, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_match_without_case_and_with_or_without_the_port() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(
        &up,
        &policy(
            "allow-host",
            "action: ALLOW\nrules:\n- to: [{operation: {hosts: [\"Shop.Example.com\", \"*.api.example.com\"]}}]",
        ),
    ));
    for (host, want) in [
        ("shop.example.com", 200),
        ("shop.example.com:80", 200),
        ("v1.api.example.com", 200),
        ("other.example.com", 403),
    ] {
        assert_eq!(get(&http1(), &gw.url(80), host, "/", &[]).await.status, want, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_conditions_match_values_and_absent_headers_fail_them() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(
        &up,
        &policy("deny-dev", "action: DENY\nrules:\n- when: [{key: \"request.headers[x-env]\", values: [\"dev*\"]}]"),
    ));
    assert_eq!(status(&gw, "GET", "/", &[("x-env", "dev-3")]).await, 403);
    assert_eq!(status(&gw, "GET", "/", &[("x-env", "prod")]).await, 200);
    assert_eq!(status(&gw, "GET", "/", &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_policy_is_evaluated_but_not_enforced() {
    let up = Upstream::start("app").await;
    let dry = policy("deny-all", "action: DENY\nrules: [{}]")
        .replace("metadata: {name: deny-all}", "metadata: {name: deny-all, annotations: {istio.io/dry-run: \"true\"}}");
    let gw = TestGateway::start(&serving(&up, &dry));
    assert_eq!(status(&gw, "GET", "/", &[]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_policies_that_select_this_workload_apply() {
    let up = Upstream::start("app").await;
    let other_ns = policy("deny-all", "action: DENY\nrules: [{}]")
        .replace("{name: deny-all}", "{name: deny-all, namespace: shop}");
    let other_workload =
        policy("deny-other", "action: DENY\nrules: [{}]").replace("istio: ingressgateway}}", "app: other}}");
    let gw = TestGateway::start(&serving(&up, &(other_ns.clone() + &other_workload)));
    assert_eq!(status(&gw, "GET", "/", &[]).await, 200);
    let mesh_wide = other_ns.replace("namespace: shop", "namespace: istio-system");
    let gw = TestGateway::start(&serving(&up, &mesh_wide));
    assert_eq!(status(&gw, "GET", "/", &[]).await, 403, "a policy in the root namespace applies mesh-wide");
}

/// A client bound to `source` (another loopback address).
fn from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder().local_address(source).http1_only().build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_blocks_match_the_peer_and_a_deny_refuses_the_connection_before_any_byte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(
        &up,
        &policy("deny-net", "action: DENY\nrules:\n- from: [{source: {ipBlocks: [\"127.0.0.2/32\"]}}]"),
    ));
    assert_eq!(get(&from("127.0.0.1".parse().unwrap()), &gw.url(80), "", "/", &[]).await.status, 200);
    assert!(from("127.0.0.2".parse().unwrap()).get(gw.url(80)).send().await.is_err(), "no HTTP answer at all");
    // The raw view: the kernel completes the connection, then it is closed without a byte read.
    let mut tcp = connect_from("127.0.0.2".parse().unwrap(), gw.addr(80)).await;
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok() && out.is_empty(), "closed with nothing answered: {}", String::from_utf8_lossy(&out));
    assert_eq!(up.seen().len(), 1);
}

/// A TCP connection from `source` to `to`.
async fn connect_from(source: IpAddr, to: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(source, 0)).unwrap();
    s.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ip_blocks_match_the_client_address_behind_trusted_proxies() {
    let up = Upstream::start("app").await;
    let yaml = serving(
        &up,
        &policy("allow-office", "action: ALLOW\nrules:\n- from: [{source: {remoteIpBlocks: [\"203.0.113.0/24\"]}}]"),
    );
    let gw = TestGateway::start_with(&yaml, Setup { num_trusted_proxies: 1, ..Setup::default() });
    assert_eq!(status(&gw, "GET", "/", &[("x-forwarded-for", "203.0.113.9")]).await, 200);
    assert_eq!(
        status(&gw, "GET", "/", &[("x-forwarded-for", "203.0.113.9, 198.51.100.1")]).await,
        403,
        "only one hop is trusted"
    );
    assert_eq!(status(&gw, "GET", "/", &[]).await, 403, "no forwarded address: the peer is the client");
    // With no trusted proxy, a client's X-Forwarded-For is never believed.
    let untrusting = TestGateway::start(&yaml);
    assert_eq!(status(&untrusting, "GET", "/", &[("x-forwarded-for", "203.0.113.9")]).await, 403);
}

/// A gateway with a TCP server on 9000 to `db`, plus `policies`.
fn tcp_serving(db: &e2e::tls::TcpUpstream, policies: &str) -> String {
    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 9000, name: tcp, protocol: TCP}\n    hosts: ['*']\n---\n".to_string()
        + &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: db}}\nspec:\n  hosts: [db.internal]\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]\n---\n", db.port())
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  tcp:\n  - route: [{destination: {host: db.internal}}]\n---\n"
        + policies
}

/// Sends `msg` from `source` on a TCP connection to `to`, half-closes, reads the answer.
async fn tcp_from(source: IpAddr, to: SocketAddr, msg: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = connect_from(source, to).await;
    let _ = tcp.write_all(msg).await;
    let _ = tcp.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_authorized_by_their_addresses_and_ports() {
    let db = e2e::tls::TcpUpstream::start("db").await;
    let gw = TestGateway::start(&tcp_serving(
        &db,
        &policy("allow-local", "action: ALLOW\nrules:\n- from: [{source: {ipBlocks: [\"127.0.0.1\"]}}]\n  to: [{operation: {ports: [\"9000\"]}}]"),
    ));
    let (ok, other) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
    assert_eq!(tcp_from(ok, gw.addr(9000), b"hi").await, "db\nhi");
    assert_eq!(tcp_from(other, gw.addr(9000), b"hi").await, "", "not allowed: closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tcp_an_allow_rule_with_http_fields_matches_nothing_and_a_deny_rule_ignores_them() {
    let db = e2e::tls::TcpUpstream::start("db").await;
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let allow_http = policy("allow-get", "action: ALLOW\nrules:\n- to: [{operation: {methods: [GET]}}]");
    let gw = TestGateway::start(&tcp_serving(&db, &allow_http));
    assert_eq!(tcp_from(local, gw.addr(9000), b"hi").await, "", "the only ALLOW rule cannot match TCP");
    let deny_http = policy("deny-admin", "action: DENY\nrules:\n- to: [{operation: {paths: [\"/admin\"]}}]");
    let gw = TestGateway::start(&tcp_serving(&db, &deny_http));
    assert_eq!(tcp_from(local, gw.addr(9000), b"hi").await, "", "Istio warns: such a DENY rule denies all TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_blocks_deny_refuses_a_tls_connection_before_the_handshake() {
    use e2e::certs::{Ca, Leaf};
    let (ca, dir) = (Ca::new("test-ca"), e2e::gateway::TempDir::new());
    let (cert, key) = ca.issue(&Leaf::server(&["a.example.com"])).write(&dir.0, "a");
    let up = Upstream::start("app").await;
    let https = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [a.example.com]\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n---\n",
        cert.display(),
        key.display()
    ) + &service("app", "app.internal", &[&up])
        + &virtual_service("vs", &["a.example.com"], "- route: [{destination: {host: app.internal}}]");
    let client = e2e::tls::Client::to("a.example.com", &ca.cert);
    let elsewhere = policy("deny-other", "action: DENY\nrules:\n- from: [{source: {ipBlocks: [\"10.0.0.0/8\"]}}]");
    let gw = TestGateway::start(&(https.clone() + &elsewhere));
    assert!(client.connect(gw.addr(443)).await.is_ok(), "another network's rule does not touch this client");
    let here = policy("deny-loopback", "action: DENY\nrules:\n- from: [{source: {ipBlocks: [\"127.0.0.0/8\"]}}]");
    let gw = TestGateway::start(&(https + &here));
    let refused = client.connect(gw.addr(443)).await;
    assert!(refused.is_err(), "no handshake: the connection is closed before the ServerHello");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_policy_gives_one_gateway_of_the_workload_its_own_firewall() {
    let up = Upstream::start("app").await;
    let gw = |name: &str, port: u16| {
        format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    hosts: ['*']\n---\n")
    };
    let yaml = gw("public", 80)
        + &gw("private", 81)
        + &service("app", "app.internal", &[&up])
        + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: ['*']\n  gateways: [public, private]\n  http:\n  - route: [{destination: {host: app.internal}}]\n---\n"
        + "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: public-firewall}\nspec:\n  targetRefs: [{kind: Gateway, name: public}]\n  authorization:\n    action: ALLOW\n    rules:\n    - to: [{operation: {paths: [\"/public/*\"]}}]\n";
    let gw = TestGateway::start(&yaml);
    let on = |port: u16, path: &'static str| {
        let url = gw.url(port);
        async move { get(&http1(), &url, "x", path, &[]).await.status }
    };
    assert_eq!(on(80, "/public/a").await, 200);
    assert_eq!(on(80, "/admin").await, 403, "the public Gateway's own ALLOW rule");
    assert_eq!(on(81, "/admin").await, 200, "the private Gateway has no such rule");
}

#[test]
fn a_gateway_policy_firewall_that_reaches_a_tcp_server_refuses_the_configuration() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 9000, name: tcp, protocol: TCP}\n    hosts: ['*']\n---\napiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: fw}\nspec:\n  targetRefs: [{kind: Gateway, name: gw}]\n  authorization: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}\n";
    let built = conf::build_str("c.yaml", yaml, &conf::Selection::default());
    assert!(!built.is_valid());
    assert!(built.diagnostics.to_string().contains("carries no HTTP requests"), "{}", built.diagnostics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_and_backslash_paths_cannot_slip_past_a_deny_rule() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&serving(
        &up,
        &policy("deny-admin", "action: DENY\nrules:\n- to: [{operation: {paths: [\"/admin*\"]}}]"),
    ));
    // As Envoy's canonicalizer: unreserved escapes decoded, `\\` a slash, dot segments removed.
    // (`%41dmin` is `/Admin`, which `/admin*` does not match in Istio either: paths are
    // case-sensitive; escaped slashes are kept, as with Istio's default BASE normalization.)
    for raw_path in ["/%61dmin/users", "/x/%2e%2e/admin", "/x\\..\\admin", "/%61dmin\\x"] {
        let reply = e2e::client::raw(
            gw.addr(80),
            format!("GET {raw_path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        );
        assert!(!reply.starts_with("HTTP/1.1 200"), "{raw_path}: {reply}");
    }
    assert!(up.seen().iter().all(|s| !s.path.to_ascii_lowercase().starts_with("/admin")), "{:?}", up.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_conditions_see_empty_and_non_utf8_values_and_pseudo_headers() {
    let up = Upstream::start("app").await;
    let rules = "action: DENY\nrules:\n- when: [{key: \"request.headers[x-debug]\", values: [\"*\"]}]\n- when: [{key: \"request.headers[x-role]\", values: [\"admin*\"]}]\n- when: [{key: \"request.headers[:authority]\", values: [\"blocked.example.com\"]}]";
    let gw = TestGateway::start(&serving(&up, &policy("deny-headers", rules)));
    let send = |extra: &'static [u8]| {
        let addr = gw.addr(80);
        async move {
            let mut req = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_vec();
            req.extend_from_slice(extra);
            req.extend_from_slice(b"\r\n");
            e2e::client::raw(addr, &req)
        }
    };
    assert!(send(b"").await.starts_with("HTTP/1.1 200"));
    assert!(send(b"x-debug:\r\n").await.starts_with("HTTP/1.1 403"), "an empty value is present");
    assert!(
        send(b"x-role: admin\x80\r\n").await.starts_with("HTTP/1.1 403"),
        "a non-UTF-8 byte does not hide the value"
    );
    let blocked =
        e2e::client::raw(gw.addr(80), b"GET / HTTP/1.1\r\nhost: blocked.example.com\r\nconnection: close\r\n\r\n");
    assert!(blocked.starts_with("HTTP/1.1 403"), "{blocked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_a_client_puts_in_x_forwarded_for_does_not_make_the_proxy_the_client() {
    let up = Upstream::start("app").await;
    let yaml = serving(
        &up,
        &policy("allow-office", "action: ALLOW\nrules:\n- from: [{source: {remoteIpBlocks: [\"203.0.113.0/24\"]}}]"),
    );
    let gw = TestGateway::start_with(&yaml, Setup { num_trusted_proxies: 1, ..Setup::default() });
    // The trusted proxy appended the real client after the client's own garbage.
    let reply = e2e::client::raw(
        gw.addr(80),
        b"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: \x80, 203.0.113.7\r\nconnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let reply = e2e::client::raw(
        gw.addr(80),
        b"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 203.0.113.7, \x80\r\nconnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 403"), "the trusted entry is garbage: the peer is the client: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_annotation_is_read_as_go_reads_booleans() {
    let up = Upstream::start("app").await;
    let dry = policy("deny-all", "action: DENY\nrules: [{}]")
        .replace("metadata: {name: deny-all}", "metadata: {name: deny-all, annotations: {istio.io/dry-run: \"True\"}}");
    let gw = TestGateway::start(&serving(&up, &dry));
    assert_eq!(status(&gw, "GET", "/", &[]).await, 200);
}
