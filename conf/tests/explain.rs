//! `pylon explain` over Istio's samples: requests that hit each kind of route, miss routes for a
//! stated reason, get redirected, answered directly, refused with 404, or refused at the TLS
//! handshake for their SNI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking

use conf::explain::{explain, Action, Explanation, Probe};
use conf::RouteTable;

fn sample(name: &str) -> String {
    std::fs::read_to_string(format!("tests/istio-samples/{name}")).unwrap()
}

fn services() -> String {
    std::fs::read_to_string("tests/istio-services/services.yaml").unwrap()
}

fn table(yaml: &str, labels: &[(&str, &str)]) -> RouteTable {
    let mut sel = conf::Selection::default();
    if !labels.is_empty() {
        sel.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }
    let built = conf::build_str("sample.yaml", &format!("{yaml}\n---\n{}", services()), &sel);
    assert!(built.is_valid(), "{}", built.diagnostics);
    built.table
}

fn ask(t: &RouteTable, method: &str, url: &str, headers: &[&str]) -> Explanation {
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    explain(t, &Probe::parse(method, url, &headers).unwrap())
}

fn misses(e: &Explanation) -> Vec<String> {
    e.routes.iter().filter_map(|c| c.miss.clone()).collect()
}

fn matched_origin(e: &Explanation) -> Option<String> {
    e.routes.iter().find(|c| c.miss.is_none()).map(|c| c.origin.clone())
}

fn refusal(e: &Explanation) -> String {
    match &e.action {
        Action::Refused { reason, .. } => reason.clone(),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn bookinfo_requests_reach_productpage_through_the_match_that_holds() {
    let t = table(&sample("S2.yaml"), &[]);
    let e = ask(&t, "GET", "http://bookinfo.example:8080/static/app.css", &[]);
    assert_eq!(e.listener.as_deref(), Some("0.0.0.0:8080 HTTP (plaintext HTTP/1.1, h2c)"));
    assert_eq!(e.virtual_host.as_ref().map(|v| (v.name.as_str(), v.by)), Some(("*", "any")));
    assert_eq!(misses(&e), vec![r#"uri exact "/productpage" ≠ "/static/app.css""#]);
    assert_eq!(matched_origin(&e).as_deref(), Some("default/bookinfo http[0] match[1]"));
    let Action::Forward { destinations } = &e.action else { panic!("{:?}", e.action) };
    assert_eq!(destinations.len(), 1);
    assert_eq!(destinations[0].cluster, "outbound|9080||productpage.default.svc.cluster.local");
    assert_eq!(destinations[0].path.as_deref(), Some("/static/app.css"));
    assert!(!destinations[0].endpoints.is_empty() && destinations[0].unavailable.is_none());
    assert_eq!(e.status, None);
}

#[test]
fn bookinfo_404_lists_why_every_route_missed() {
    let t = table(&sample("S2.yaml"), &[]);
    let e = ask(&t, "GET", "http://bookinfo.example:8080/reviews/1", &[]);
    assert_eq!(e.status, Some(404));
    assert!(refusal(&e).contains("no route of virtual host * matches"), "{}", refusal(&e));
    assert_eq!(
        misses(&e),
        vec![
            r#"uri exact "/productpage" ≠ "/reviews/1""#,
            r#"uri prefix "/static" ≠ "/reviews/1""#,
            r#"uri exact "/login" ≠ "/reviews/1""#,
            r#"uri exact "/logout" ≠ "/reviews/1""#,
            r#"uri prefix "/api/v1/products" ≠ "/reviews/1""#,
        ]
    );
}

#[test]
fn a_port_without_a_listener_is_a_refused_connection() {
    let t = table(&sample("S2.yaml"), &[]);
    let e = ask(&t, "GET", "http://bookinfo.example:9999/", &[]);
    assert_eq!(e.status, None);
    assert_eq!(refusal(&e), "no listener on port 9999: the connection is refused (ports: 8080)");
}

const BOOKINFO_GATEWAY: &[(&str, &str)] = &[("app", "my-gateway-controller")];

#[test]
fn https_redirect_comes_before_any_route() {
    let t = table(&sample("S11.yaml"), BOOKINFO_GATEWAY);
    let e = ask(&t, "GET", "http://uk.bookinfo.com/reviews/1?x=1", &[]);
    assert!(e.routes.is_empty(), "no route is tried: {:?}", e.routes);
    assert!(
        matches!(&e.action, Action::Redirect { status: 301, location } if location == "https://uk.bookinfo.com/reviews/1?x=1")
    );
    assert_eq!(e.status, Some(301));
}

#[test]
fn weighted_destinations_show_their_shares_and_the_header_route_wins_first() {
    let t = table(&sample("S11.yaml"), BOOKINFO_GATEWAY);
    let e = ask(&t, "GET", "https://uk.bookinfo.com/reviews/7", &[]);
    assert_eq!(e.sni.as_deref(), Some(r#"SNI "uk.bookinfo.com" → exact name uk.bookinfo.com"#));
    assert_eq!(e.virtual_host.as_ref().map(|v| v.by), Some("exact"));
    assert_eq!(misses(&e), vec![r#"header cookie absent (wanted exact "user=dev-123")"#]);
    let Action::Forward { destinations } = &e.action else { panic!("{:?}", e.action) };
    let shares: Vec<(&str, f64)> = destinations.iter().map(|d| (d.cluster.as_str(), d.share)).collect();
    assert_eq!(
        shares,
        vec![
            ("outbound|9080||reviews.prod.svc.cluster.local", 80.0),
            ("outbound|7777||reviews.qa.svc.cluster.local", 20.0)
        ]
    );
    let dev = ask(&t, "GET", "https://uk.bookinfo.com/reviews/7", &["Cookie: user=dev-123"]);
    assert!(misses(&dev).is_empty());
    assert_eq!(matched_origin(&dev).as_deref(), Some("bookinfo-namespace/bookinfo-rule http[0] match[0]"));
    let other = ask(&t, "GET", "https://uk.bookinfo.com/ratings", &["Cookie: user=prod"]);
    assert_eq!(other.status, Some(404));
    assert_eq!(
        misses(&other),
        vec![r#"header cookie exact "user=dev-123" ≠ "user=prod""#, r#"uri prefix "/reviews/" ≠ "/ratings""#]
    );
}

#[test]
fn an_sni_no_server_names_is_refused_at_the_handshake() {
    let t = table(&sample("S11.yaml"), BOOKINFO_GATEWAY);
    let e = ask(&t, "GET", "https://other.example/", &[]);
    let why = refusal(&e);
    assert!(why.starts_with(r#"TLS handshake refused: no server on port 443 for SNI "other.example""#), "{why}");
    assert!(why.contains("uk.bookinfo.com"), "{why}");
    let plaintext = ask(&t, "GET", "http://uk.bookinfo.com:443/", &[]);
    assert!(refusal(&plaintext).contains("serves TLS"), "{}", refusal(&plaintext));
}

/// A mesh-only sample bound to a gateway on port 80 (Istio's samples leave `gateways` out).
fn at_gateway(yaml: &str) -> String {
    let gateway = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n";
    format!("{gateway}---\n{}", yaml.replace("  http:\n", "  gateways: [gw]\n  http:\n"))
}

#[test]
fn redirects_show_their_location() {
    // The first of S18's two VirtualServices (both are named `default`: the second replaces it).
    let first = sample("S18.yaml").split("\n---").next().unwrap().to_string();
    let t = table(&at_gateway(&first), &[]);
    let e = ask(&t, "GET", "http://echo.default.svc.cluster.local/foo?k=v", &[]);
    assert!(
        matches!(&e.action, Action::Redirect { status: 301, location } if location == "http://echo.default.svc.cluster.local/new/path?k=v"),
        "{:?}",
        e.action
    );
}

#[test]
fn direct_responses_show_status_and_body() {
    let t = table(&at_gateway(&sample("S20.yaml")), &[]);
    let host = t.route_configs[0].virtual_hosts[0].name.clone();
    let route = &t.route_configs[0].virtual_hosts[0].routes[0];
    let path = match &route.matcher.path.matcher {
        conf::matcher::StringMatcher::Exact(p) | conf::matcher::StringMatcher::Prefix(p) => p.clone(),
        other => panic!("{other:?}"),
    };
    let e = ask(&t, "GET", &format!("http://{host}{path}"), &[]);
    let Action::DirectResponse { status, body } = &e.action else { panic!("{:?}", e.action) };
    assert_eq!((*status, body.as_deref()), (503, Some(r#"{"error": "unknown error"}"#)));
    assert_eq!(e.status, Some(503));
}

#[test]
fn text_output_reads_in_decision_order() {
    let t = table(&sample("S2.yaml"), &[]);
    let text = conf::explain::text(&ask(&t, "GET", "http://bookinfo.example:8080/login", &[]));
    let expected = [
        "request   GET http://bookinfo.example:8080/login",
        "listener  0.0.0.0:8080 HTTP (plaintext HTTP/1.1, h2c)",
        "routes    http.8080, virtual host * (any)",
        r#"  ✗ 1. default/bookinfo http[0] match[0]: uri exact "/productpage" ≠ "/login""#,
        "  ✓ 3. default/bookinfo http[0] match[2]: matched",
        "action    forward",
        "  → outbound|9080||productpage.default.svc.cluster.local 100% (weight 100)",
        "result    forwarded",
    ];
    let mut at = 0;
    for line in expected {
        let found = text[at..].find(line).unwrap_or_else(|| panic!("{line:?} not after byte {at} in:\n{text}"));
        at += found + line.len();
    }
}

#[test]
fn a_server_whose_credential_is_missing_refuses_the_handshake() {
    let built = conf::build(&["examples/demo".into()], &conf::Selection::default()).unwrap();
    let e = ask(&built.table, "GET", "https://localhost:8443/echo", &[]);
    assert_eq!(refusal(&e), r#"TLS handshake refused: the server's credential "demo-cert" is not found"#);
    let http = ask(&built.table, "GET", "http://localhost:8080/echo", &[]);
    assert!(matches!(http.action, Action::Forward { .. }), "{:?}", http.action);
}
