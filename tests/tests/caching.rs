//! Response caching from `GatewayPolicy` `cache`: RFC 9111's shared-cache rules (what is stored,
//! freshness, `Age`, revalidation with validators, `Vary`, serving stale), a zone bounded in bytes,
//! the cache lock, purge from the admin endpoint and the cache metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use std::net::SocketAddr;
use std::time::Duration;

use e2e::client::{get, http1, raw, Reply};
use e2e::yaml::{gateway, service, virtual_service};
use e2e::{TestGateway, Upstream};

const HOST: &str = "shop.example.com";

/// A gateway on port 80 routing every path of `HOST` to `up`, with a GatewayPolicy `default/c`
/// whose `cache` module is `{settings}` (with `statusHeader: true`).
fn config(up: &Upstream, settings: &str) -> String {
    gateway(80, &["*"])
        + &service("app", "app.internal", &[up])
        + &virtual_service("shop", &[HOST], "- route: [{destination: {host: app.internal}}]")
        + &format!(
            "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {{name: c}}\nspec:\n  selector: {{matchLabels: {{istio: ingressgateway}}}}\n  cache: {{statusHeader: true{settings}}}\n"
        )
}

/// GET `path` on `HOST`; each `reply` header (`name: value`) is one the upstream is asked to answer
/// with.
async fn fetch(gw: &TestGateway, path: &str, reply: &[&str], headers: &[(&str, &str)]) -> Reply {
    let mut all: Vec<(&str, &str)> = reply.iter().map(|r| ("x-reply-header", *r)).collect();
    all.extend_from_slice(headers);
    get(&http1(), &gw.url(80), HOST, path, &all).await
}

/// The `x-cache` status of each response.
fn statuses(replies: &[Reply]) -> Vec<&str> {
    replies.iter().map(|r| r.header("x-cache").unwrap_or("-")).collect()
}

async fn admin(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    let out = tokio::task::spawn_blocking(move || raw(addr, request.as_bytes())).await.unwrap();
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_response_is_served_from_the_cache_with_its_age() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let max_age = ["cache-control: max-age=60"];
    let first = fetch(&gw, "/a?x=1", &max_age, &[]).await;
    let second = fetch(&gw, "/a?x=1", &max_age, &[]).await;
    let other_query = fetch(&gw, "/a?x=2", &max_age, &[]).await;
    assert_eq!(statuses(&[first, second, other_query]), ["MISS", "HIT", "MISS"]);
    assert_eq!(up.seen().len(), 2, "the hit never reached the upstream");
    let hit = fetch(&gw, "/a?x=1", &[], &[]).await;
    assert_eq!((hit.status, hit.header("cache-control")), (200, Some("max-age=60")));
    assert!(hit.header("age").is_some(), "a stored response carries Age: {:?}", hit.headers);
    assert!(hit.body.contains("\"path\":\"/a?x=1\""), "the stored body: {}", hit.body);
    let head = http1().head(format!("{}/a?x=1", gw.url(80))).header("host", HOST).send().await.unwrap();
    assert_eq!(head.headers()["x-cache"], "HIT", "HEAD is answered from the stored GET");
    let post = http1().post(format!("{}/a?x=1", gw.url(80))).header("host", HOST).send().await.unwrap();
    assert!(post.headers().get("x-cache").is_none(), "only GET and HEAD use the cache");
    let lines = [
        "pylon_cache_requests_total{policy=\"default/c\",status=\"HIT\"} 3",
        "pylon_cache_requests_total{policy=\"default/c\",status=\"MISS\"} 2",
        "pylon_cache_entries{policy=\"default/c\"} 2",
    ];
    let metrics = gw.metrics_when(|m| lines.iter().all(|l| m.contains(l))).await;
    for line in lines {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
}

/// A path, the headers the upstream answers with, and the request's own headers.
type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_the_rfc_forbids_storing_go_to_the_upstream_every_time() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let cases: [Case<'_>; 7] = [
        ("/none", &[], &[]),
        ("/no-store", &["cache-control: no-store, max-age=60"], &[]),
        ("/private", &["cache-control: private, max-age=60"], &[]),
        ("/cookie", &["cache-control: max-age=60", "set-cookie: session=1"], &[]),
        ("/vary-star", &["cache-control: max-age=60", "vary: *"], &[]),
        ("/authorized", &["cache-control: max-age=60"], &[("authorization", "Bearer t")]),
        ("/client-no-store", &["cache-control: max-age=60"], &[("cache-control", "no-store")]),
    ];
    for (path, reply, headers) in cases {
        let replies = [fetch(&gw, path, reply, headers).await, fetch(&gw, path, reply, headers).await];
        assert_eq!(statuses(&replies), ["MISS", "MISS"], "{path}");
    }
    assert_eq!(up.seen().len(), 14);
    let public = ["cache-control: public, max-age=60"];
    let auth = [("authorization", "Bearer t")];
    let replies = [fetch(&gw, "/public", &public, &auth).await, fetch(&gw, "/public", &public, &auth).await];
    assert_eq!(statuses(&replies), ["MISS", "HIT"], "public allows storing an authorized response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_ttl_gives_silent_responses_freshness() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ", defaultTtl: 60s"));
    let ok = [fetch(&gw, "/silent", &[], &[]).await, fetch(&gw, "/silent", &[], &[]).await];
    assert_eq!(statuses(&ok), ["MISS", "HIT"]);
    let error = [("x-reply-status", "500")];
    let errors = [fetch(&gw, "/error", &[], &error).await, fetch(&gw, "/error", &[], &error).await];
    assert_eq!(statuses(&errors), ["MISS", "MISS"], "500 is not heuristically cacheable");
    let aged = ["cache-control: max-age=60", "age: 3600"];
    let old = [fetch(&gw, "/aged", &aged, &[]).await, fetch(&gw, "/aged", &aged, &[]).await];
    assert_eq!(statuses(&old), ["MISS", "EXPIRED"], "an Age beyond max-age leaves nothing fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_response_is_revalidated_with_its_validator() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let reply = ["cache-control: max-age=1", "etag: \"v1\""];
    let first = fetch(&gw, "/doc", &reply, &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = fetch(&gw, "/doc", &reply, &[]).await;
    assert_eq!(statuses(&[first]), ["MISS"]);
    assert_eq!((revalidated.status, revalidated.header("x-cache")), (200, Some("REVALIDATED")));
    assert!(revalidated.body.contains("\"path\":\"/doc\""), "the stored body: {}", revalidated.body);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("if-none-match"), Some("\"v1\""), "the gateway asked with the stored ETag");
    let fresh_again = fetch(&gw, "/doc", &reply, &[]).await;
    assert_eq!(fresh_again.header("x-cache"), Some("HIT"), "the 304 made the stored response fresh again");
    let forced = fetch(&gw, "/doc", &reply, &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.header("x-cache"), Some("REVALIDATED"), "a client's no-cache revalidates first");
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_answers_validators_and_ranges() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let reply = ["cache-control: max-age=60", "etag: \"v1\""];
    let body = [("x-reply-body-bytes", "100")];
    assert_eq!(statuses(&[fetch(&gw, "/file", &reply, &body).await]), ["MISS"]);
    let validated = fetch(&gw, "/file", &[], &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((validated.status, validated.body.as_str()), (304, ""), "the client's validator matches");
    let range = fetch(&gw, "/file", &[], &[("range", "bytes=10-19")]).await;
    assert_eq!((range.status, range.body.len(), range.header("x-cache")), (206, 10, Some("HIT")));
    assert_eq!(range.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_a_variant_per_allowed_header_value() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ", vary: [accept-language]"));
    let reply = ["cache-control: max-age=60", "vary: Accept-Language"];
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    let replies = [
        fetch(&gw, "/v", &reply, &en).await,
        fetch(&gw, "/v", &reply, &fr).await,
        fetch(&gw, "/v", &reply, &en).await,
        fetch(&gw, "/v", &reply, &fr).await,
    ];
    assert_eq!(statuses(&replies), ["MISS", "MISS", "HIT", "HIT"]);
    assert!(replies[2].body.contains("\"en\"") && replies[3].body.contains("\"fr\""), "each variant its own body");
    let not_allowed = ["cache-control: max-age=60", "vary: user-agent"];
    let ua = [fetch(&gw, "/ua", &not_allowed, &[]).await, fetch(&gw, "/ua", &not_allowed, &[]).await];
    assert_eq!(statuses(&ua), ["MISS", "MISS"], "Vary outside the allow-list is not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stored_response_while_the_upstream_is_down() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let tolerant = ["cache-control: max-age=1, stale-if-error=60"];
    let strict = ["cache-control: max-age=1"];
    for path in ["/tolerant", "/failing"] {
        assert_eq!(statuses(&[fetch(&gw, path, &tolerant, &[]).await]), ["MISS"]);
    }
    assert_eq!(statuses(&[fetch(&gw, "/strict", &strict, &[]).await]), ["MISS"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let on_500 = fetch(&gw, "/failing", &[], &[("x-reply-status", "500")]).await;
    assert_eq!((on_500.status, on_500.header("x-cache")), (200, Some("STALE")), "a 5xx is an upstream error");
    drop(up);
    let stale = fetch(&gw, "/tolerant", &[], &[]).await;
    assert_eq!((stale.status, stale.header("x-cache")), (200, Some("STALE")));
    assert!(stale.body.contains("\"path\":\"/tolerant\""));
    let failed = fetch(&gw, "/strict", &[], &[]).await;
    assert_eq!(failed.status, 503, "no stale-if-error: the upstream's failure is the answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let reply = ["cache-control: max-age=1, stale-while-revalidate=60"];
    assert_eq!(statuses(&[fetch(&gw, "/swr", &reply, &[]).await]), ["MISS"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let updating = fetch(&gw, "/swr", &reply, &[]).await;
    assert_eq!((updating.status, updating.header("x-cache")), (200, Some("UPDATING")));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while up.seen().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.seen().len(), 2, "one background refresh");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(statuses(&[fetch(&gw, "/swr", &reply, &[]).await]), ["HIT"], "the refreshed response is fresh");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zone_evicts_the_least_recently_used_beyond_max_size() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ", maxSize: 8Ki, maxEntrySize: 4Ki"));
    let reply = ["cache-control: max-age=60"];
    let body = [("x-reply-body-bytes", "3000")];
    let mut order = Vec::new();
    for path in ["/1", "/2", "/1", "/3", "/1", "/2"] {
        order.push(fetch(&gw, path, &reply, &body).await);
    }
    assert_eq!(statuses(&order), ["MISS", "MISS", "HIT", "MISS", "HIT", "MISS"], "/2 was the least recently used");
    let big = [("x-reply-body-bytes", "5000")];
    let large = [fetch(&gw, "/big", &reply, &big).await, fetch(&gw, "/big", &reply, &big).await];
    assert_eq!(statuses(&large), ["MISS", "MISS"], "a body over maxEntrySize is passed through");
    assert_eq!(large[1].body.len(), 5000);
    let (_, stats) = admin(gw.running.admin_addr.unwrap(), "GET", "/cache").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let zone = &stats["caches"][0];
    assert_eq!(zone["policy"], "default/c");
    assert!(zone["bytes"].as_u64().unwrap() <= 8192, "{zone}");
    assert!(zone["evictions"].as_u64().unwrap() >= 2, "{zone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_a_url_or_a_prefix() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let reply = ["cache-control: max-age=60"];
    for path in ["/p/1", "/p/2", "/q"] {
        fetch(&gw, path, &reply, &[]).await;
    }
    let admin_addr = gw.running.admin_addr.unwrap();
    let (status, body) = admin(admin_addr, "POST", "/cache/purge?url=http%3A%2F%2FShop.Example.com%3A80%2Fq").await;
    assert_eq!((status, body.trim()), (200, "purged 1"));
    let (status, body) = admin(admin_addr, "POST", "/cache/purge?prefix=http://shop.example.com/p/").await;
    assert_eq!((status, body.trim()), (200, "purged 2"));
    let mut after = Vec::new();
    for path in ["/p/1", "/p/2", "/q"] {
        after.push(fetch(&gw, path, &reply, &[]).await);
    }
    assert_eq!(statuses(&after), ["MISS", "MISS", "MISS"]);
    assert_eq!(admin(admin_addr, "POST", "/cache/purge?host=x").await.0, 400);
    assert_eq!(admin(admin_addr, "GET", "/cache/purge").await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_url_reach_the_upstream_once() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ""));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let base = gw.url(80);
        set.spawn(async move {
            let headers = [("x-reply-header", "cache-control: max-age=60"), ("x-delay-ms", "300")];
            get(&http1(), &base, HOST, "/slow", &headers).await
        });
    }
    let replies: Vec<Reply> = set.join_all().await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(up.seen().len(), 1, "the cache lock made the others wait for the first fill");
    assert_eq!(statuses(&replies).iter().filter(|s| **s == "MISS").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_outlives_a_reload_and_goes_with_its_policy() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(&up, ", maxSize: 1Mi"));
    let admin_addr = gw.running.admin_addr.unwrap();
    let reply = ["cache-control: max-age=60"];
    assert_eq!(statuses(&[fetch(&gw, "/kept", &reply, &[]).await]), ["MISS"]);
    gw.write_config(&config(&up, ", maxSize: 2Mi"));
    assert_eq!(admin(admin_addr, "POST", "/reload").await.0, 200);
    assert_eq!(statuses(&[fetch(&gw, "/kept", &reply, &[]).await]), ["HIT"], "a changed limit keeps the store");
    let without = gateway(80, &["*"])
        + &service("app", "app.internal", &[&up])
        + &virtual_service("shop", &[HOST], "- route: [{destination: {host: app.internal}}]");
    gw.write_config(&without);
    assert_eq!(admin(admin_addr, "POST", "/reload").await.0, 200);
    let (_, stats) = admin(admin_addr, "GET", "/cache").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["caches"][0]["entries"], 0, "a policy removed empties its store: {stats}");
    assert_eq!(fetch(&gw, "/kept", &[], &[]).await.header("x-cache"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_destinations_of_one_url_never_share_a_stored_response() {
    let (stable, canary) = (Upstream::start("stable").await, Upstream::start("canary").await);
    let routes = "- match: [{headers: {x-canary: {exact: \"true\"}}}]\n  route: [{destination: {host: canary.internal}}]\n- route: [{destination: {host: stable.internal}}]";
    let yaml = gateway(80, &["*"])
        + &service("stable", "stable.internal", &[&stable])
        + &service("canary", "canary.internal", &[&canary])
        + &virtual_service("shop", &[HOST], routes)
        + "apiVersion: gateway.pylon.dev/v1alpha1\nkind: GatewayPolicy\nmetadata: {name: c}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  cache: {statusHeader: true}\n";
    let gw = TestGateway::start(&yaml);
    let reply = ["cache-control: max-age=60"];
    let plain = fetch(&gw, "/page", &reply, &[]).await;
    let canaried = fetch(&gw, "/page", &reply, &[("x-canary", "true")]).await;
    assert_eq!((plain.upstream(), canaried.upstream()), (Some("stable"), Some("canary")));
    assert_eq!(statuses(&[canaried]), ["MISS"], "the canary route has its own entry");
    let again = fetch(&gw, "/page", &[], &[("x-canary", "true")]).await;
    assert_eq!((again.upstream(), again.header("x-cache")), (Some("canary"), Some("HIT")));
}
