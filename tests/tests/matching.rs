//! Istio's HTTPMatchRequest semantics end to end (istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest): every condition type,
//! first match wins, and path normalization before matching.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1, raw};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

/// A gateway on port 80 for `*` routing `rules` (whose destinations are `a.internal` and
/// `b.internal`) to upstreams `a` and `b`.
async fn setup(rules: &str) -> (TestGateway, Upstream, Upstream) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = gateway(80, &["*"])
        + &service("a", "a.internal", &[&a])
        + &service("b", "b.internal", &[&b])
        + &virtual_service("vs", &["*"], rules);
    (TestGateway::start(&yaml), a, b)
}

fn to(host: &str) -> String {
    format!("route: [{{destination: {{host: {host}}}}}]")
}

async fn who(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> String {
    let r = get(&http1(), &gw.url(80), "example.com", path, headers).await;
    match r.upstream() {
        Some(u) => u.to_string(),
        None => r.status.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_exact_ignores_the_query_and_nothing_else() {
    let rules = format!("- match: [{{uri: {{exact: /login}}}}]\n  {}", to("a.internal"));
    let (gw, _a, _b) = setup(&rules).await;
    assert_eq!(who(&gw, "/login", &[]).await, "a");
    assert_eq!(who(&gw, "/login?next=/x", &[]).await, "a");
    assert_eq!(who(&gw, "/login/", &[]).await, "404");
    assert_eq!(who(&gw, "/LOGIN", &[]).await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_match_is_a_string_prefix() {
    let rules = format!("- match: [{{uri: {{prefix: /policy}}}}]\n  {}", to("a.internal"));
    let (gw, _a, _b) = setup(&rules).await;
    assert_eq!(who(&gw, "/policy", &[]).await, "a");
    assert_eq!(who(&gw, "/policy-author", &[]).await, "a");
    assert_eq!(who(&gw, "/policy/1", &[]).await, "a");
    assert_eq!(who(&gw, "/polic", &[]).await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_is_a_full_match_without_the_query() {
    let rules = format!("- match: [{{uri: {{regex: '/items/[0-9]+'}}}}]\n  {}", to("a.internal"));
    let (gw, _a, _b) = setup(&rules).await;
    assert_eq!(who(&gw, "/items/42", &[]).await, "a");
    assert_eq!(who(&gw, "/items/42?x=y", &[]).await, "a");
    assert_eq!(who(&gw, "/items/42/more", &[]).await, "404");
    assert_eq!(who(&gw, "/v1/items/42", &[]).await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_uri_case_applies_to_prefix_and_exact() {
    let rules = format!(
        "- match: [{{uri: {{prefix: /API}}, ignoreUriCase: true}}]\n  {}\n- match: [{{uri: {{exact: /Home}}, ignoreUriCase: true}}]\n  {}",
        to("a.internal"),
        to("b.internal")
    );
    let (gw, _a, _b) = setup(&rules).await;
    assert_eq!(who(&gw, "/api/v1", &[]).await, "a");
    assert_eq!(who(&gw, "/HOME", &[]).await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_match_exact_prefix_regex_and_presence() {
    let rules = format!(
        "- match: [{{headers: {{end-user: {{exact: jason}}}}}}]\n  {a}\n- match: [{{headers: {{x-env: {{prefix: stag}}}}}}]\n  {a}\n- match: [{{headers: {{x-id: {{regex: '[0-9]+'}}}}}}]\n  {a}\n- match: [{{headers: {{x-debug: {{}}}}}}]\n  {a}\n- {b}",
        a = to("a.internal"),
        b = to("b.internal")
    );
    let (gw, _a, _b) = setup(&rules).await;
    assert_eq!(who(&gw, "/", &[("end-user", "jason")]).await, "a");
    assert_eq!(who(&gw, "/", &[("end-user", "jasonx")]).await, "b");
    assert_eq!(who(&gw, "/", &[("x-env", "staging")]).await, "a");
    assert_eq!(who(&gw, "/", &[("x-id", "123")]).await, "a");
    assert_eq!(who(&gw, "/", &[("x-id", "12a")]).await, "b");
    assert_eq!(who(&gw, "/", &[("x-debug", "")]).await, "a");
    assert_eq!(who(&gw, "/", &[]).await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_headers_treats_a_missing_header_as_empty() {
    let rules = format!(
        "- match: [{{withoutHeaders: {{end-user: {{exact: jason}}}}}}]\n  {}\n- {}",
        to("a.internal"),
        to("b.internal")
    );
    let (gw, _a, _b) = setup(&rules).await;
    assert_eq!(who(&gw, "/", &[]).await, "a");
    assert_eq!(who(&gw, "/", &[("end-user", "alice")]).await, "a");
    assert_eq!(who(&gw, "/", &[("end-user", "jason")]).await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_params_match_the_first_value() {
    let rules = format!(
        "- match: [{{queryParams: {{v: {{exact: '2'}}}}}}]\n  {}\n- match: [{{queryParams: {{id: {{regex: '\\d+'}}}}}}]\n  {}",
        to("a.internal"),
        to("b.internal")
    );
    let (gw, _a, _b) = setup(&rules).await;
    assert_eq!(who(&gw, "/?v=2", &[]).await, "a");
    assert_eq!(who(&gw, "/?v=1&v=2", &[]).await, "404");
    assert_eq!(who(&gw, "/?id=123", &[]).await, "b");
    assert_eq!(who(&gw, "/?id=a123", &[]).await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_authority_and_scheme_are_matched() {
    let rules = format!(
        "- match: [{{method: {{exact: POST}}}}]\n  {a}\n- match: [{{authority: {{prefix: api.}}}}]\n  {b}\n- match: [{{scheme: {{exact: https}}}}]\n  {a}\n- match: [{{headers: {{':method': {{exact: DELETE}}}}}}]\n  {b}",
        a = to("a.internal"),
        b = to("b.internal")
    );
    let (gw, _a, _b) = setup(&rules).await;
    let client = http1();
    let post = client.post(format!("{}/", gw.url(80))).header("host", "x.example.com").send().await.unwrap();
    assert_eq!(post.headers()["x-upstream"], "a");
    let api = get(&client, &gw.url(80), "api.example.com:8080", "/", &[]).await;
    assert_eq!(api.upstream(), Some("b"));
    // Plaintext requests have scheme http: the scheme rule does not match.
    assert_eq!(get(&client, &gw.url(80), "x.example.com", "/", &[]).await.status, 404);
    let delete = client.delete(format!("{}/", gw.url(80))).header("host", "x.example.com").send().await.unwrap();
    assert_eq!(delete.headers()["x-upstream"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_route_wins_in_declaration_order() {
    let rules = format!(
        "- match: [{{uri: {{prefix: /api}}}}]\n  {}\n- match: [{{uri: {{prefix: /api/v2}}}}]\n  {}",
        to("a.internal"),
        to("b.internal")
    );
    let (gw, _a, _b) = setup(&rules).await;
    // Istio does not reorder by specificity: the earlier, shorter prefix wins.
    assert_eq!(who(&gw, "/api/v2/x", &[]).await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_is_normalized_before_matching_and_forwarding() {
    let rules = format!(
        "- match: [{{uri: {{prefix: /public/}}}}]\n  {}\n- match: [{{uri: {{prefix: /admin}}}}]\n  {}",
        to("a.internal"),
        to("b.internal")
    );
    let (gw, a, b) = setup(&rules).await;
    // Raw requests: an HTTP client library would normalize the path itself.
    let sneaky =
        raw(gw.addr(80), b"GET /public/%2e%2e/admin/x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    assert!(sneaky.contains("x-upstream: b"), "{sneaky}");
    assert_eq!(b.last().path, "/admin/x");
    let dotted =
        raw(gw.addr(80), b"GET /public/./a/../b?q=/../x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    assert!(dotted.contains("x-upstream: a"), "{dotted}");
    assert_eq!(a.last().path, "/public/b?q=/../x");
}
