//! Virtual-host selection (Istio's gateway host matching, the most specific name first) and local
//! actions: redirects, direct responses, httpsRedirect, rewrites and header operations
//! (istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRoute).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use e2e::client::{get, http1};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

fn route(host: &str) -> String {
    format!("- route: [{{destination: {{host: {host}}}}}]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_beats_longest_wildcard_beats_star() {
    let names = ["exact", "wild", "wider", "star"];
    let mut ups = Vec::new();
    for n in names {
        ups.push(Upstream::start(n).await);
    }
    let mut yaml = gateway(80, &["*"]);
    for u in &ups {
        yaml += &service(&u.name, &format!("{}.internal", u.name), &[u]);
    }
    yaml += &virtual_service("exact", &["a.example.com"], &route("exact.internal"));
    yaml += &virtual_service("wild", &["*.example.com"], &route("wild.internal"));
    yaml += &virtual_service("wider", &["*.com"], &route("wider.internal"));
    yaml += &virtual_service("star", &["*"], &route("star.internal"));
    let gw = TestGateway::start(&yaml);
    let c = http1();
    let base = gw.url(80);
    assert_eq!(get(&c, &base, "a.example.com", "/", &[]).await.upstream(), Some("exact"));
    assert_eq!(get(&c, &base, "A.Example.COM:8080", "/", &[]).await.upstream(), Some("exact"));
    assert_eq!(get(&c, &base, "b.example.com", "/", &[]).await.upstream(), Some("wild"));
    assert_eq!(get(&c, &base, "x.y.example.com", "/", &[]).await.upstream(), Some("wild"));
    assert_eq!(get(&c, &base, "example.com", "/", &[]).await.upstream(), Some("wider"));
    assert_eq!(get(&c, &base, "example.org", "/", &[]).await.upstream(), Some("star"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_virtual_host_never_falls_back() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["*"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service(
            "a",
            &["a.example.com"],
            "- match: [{uri: {prefix: /only}}]\n  route: [{destination: {host: up.internal}}]",
        )
        + &virtual_service("star", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let r = get(&http1(), &gw.url(80), "a.example.com", "/other", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_virtual_host_is_404() {
    let up = Upstream::start("up").await;
    let yaml = gateway(80, &["a.example.com"])
        + &service("up", "up.internal", &[&up])
        + &virtual_service("a", &["*"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let c = http1();
    assert_eq!(get(&c, &gw.url(80), "a.example.com", "/", &[]).await.upstream(), Some("up"));
    assert_eq!(get(&c, &gw.url(80), "b.example.com", "/", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_and_direct_response_are_answered_locally() {
    let rules = "- match: [{uri: {prefix: /old/}}]\n  redirect: {uri: /new/path, redirectCode: 302}\n  headers: {response: {set: {x-rule: moved}}}\n- match: [{uri: {exact: /hello}}]\n  directResponse: {status: 418, body: {string: teapot}}\n- match: [{uri: {prefix: /go}}]\n  redirect: {scheme: https, derivePort: FROM_REQUEST_PORT}";
    let gw = TestGateway::start(&(gateway(8080, &["*"]) + &virtual_service("vs", &["*"], rules)));
    let c = http1();
    let r = get(&c, &gw.url(8080), "shop.example.com:8080", "/old/x?k=v", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://shop.example.com:8080/new/path?k=v"));
    assert_eq!(r.header("x-rule"), Some("moved"));
    let r = get(&c, &gw.url(8080), "shop.example.com", "/hello", &[]).await;
    assert_eq!((r.status, r.body.as_str(), r.header("content-type")), (418, "teapot", Some("text/plain")));
    // FROM_REQUEST_PORT is the Gateway server port (8080), whatever port the client connected to.
    let r = get(&c, &gw.url(8080), "shop.example.com", "/go", &[]).await;
    assert_eq!(r.header("location"), Some("https://shop.example.com:8080/go"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_sends_every_plaintext_request_to_https() {
    let up = Upstream::start("up").await;
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [secure.example.com]\n    tls: {httpsRedirect: true}\n---\n".to_string()
        + &service("up", "up.internal", &[&up])
        + &virtual_service("vs", &["secure.example.com"], &route("up.internal"));
    let gw = TestGateway::start(&yaml);
    let r = get(&http1(), &gw.url(80), "secure.example.com", "/a?b=c", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://secure.example.com/a?b=c"));
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_and_header_operations_reach_the_upstream() {
    let up = Upstream::start("up").await;
    let rules = "- match: [{uri: {prefix: /api/}}]\n  rewrite: {uri: /v2/, authority: backend.internal}\n  headers:\n    request: {set: {x-set: one}, add: {x-add: two}, remove: [x-drop]}\n    response: {set: {x-resp: three}, remove: [x-upstream]}\n  route: [{destination: {host: up.internal}}]\n- match: [{uri: {prefix: /re/}}]\n  rewrite: {uriRegexRewrite: {match: '^/re/([^/]+)/(.*)$', rewrite: '/\\2/\\1'}}\n  route: [{destination: {host: up.internal}}]";
    let yaml = gateway(80, &["*"]) + &service("up", "up.internal", &[&up]) + &virtual_service("vs", &["*"], rules);
    let gw = TestGateway::start(&yaml);
    let c = http1();
    let r = get(&c, &gw.url(80), "front.example.com", "/api/items?x=1", &[("x-drop", "1")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-resp"), Some("three"));
    assert_eq!(r.upstream(), None);
    let seen = up.last();
    assert_eq!(seen.path, "/v2/items?x=1");
    assert_eq!(seen.header("host"), Some("backend.internal"));
    assert_eq!(seen.header("x-set"), Some("one"));
    assert_eq!(seen.header("x-add"), Some("two"));
    assert_eq!(seen.header("x-drop"), None);
    get(&c, &gw.url(80), "front.example.com", "/re/user/42/profile", &[]).await;
    assert_eq!(up.last().path, "/42/profile/user");
}
