//! `conf::diff`: what a configuration change changes in the compiled table. Each test builds an old
//! and a new configuration from YAML and pins what the comparison reports.

use conf::diff::{compare, render_text, Change, Kind, Report, Section};

const GATEWAY: &str = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
";

/// `reviews` and `ratings`, one ServiceEntry each, so that an endpoint change touches one cluster.
fn services(reviews_endpoints: &str) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: {reviews_endpoints}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings}}
spec:
  hosts: [ratings.default.svc.cluster.local]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"
    )
}

/// A VirtualService `name` for `host` on `gw` with these `http` rules (YAML, indented by two).
fn virtual_service(name: &str, host: &str, http: &str) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  gateways: [gw]
  http:
{http}"
    )
}

const TO_REVIEWS_A: &str = "
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]";
const TO_REVIEWS_B: &str = "
  - match: [{uri: {prefix: /b}}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]";

/// The gateway, the services and `rest` (more documents).
fn config(rest: &str) -> String {
    config_with(GATEWAY, "[{address: 127.0.0.1}]", rest)
}

fn config_with(gateway: &str, reviews_endpoints: &str, rest: &str) -> String {
    format!("{gateway}---{}---{rest}", services(reviews_endpoints))
}

fn diff(old: &str, new: &str) -> Report {
    let sel = conf::Selection::default();
    let old = conf::build_str("old.yaml", old, &sel);
    assert!(old.is_valid(), "the old configuration is valid:\n{}", old.diagnostics);
    compare(&old, &conf::build_str("new.yaml", new, &sel))
}

fn of(report: &Report, section: Section) -> Vec<&Change> {
    report.changes.iter().filter(|c| c.section == section).collect()
}

fn brief(c: &Change) -> (Section, Kind, &str) {
    (c.section, c.kind, c.subject.as_str())
}

#[test]
fn identical_configurations_change_nothing() {
    let yaml = config(&virtual_service("bookinfo", "bookinfo.example", &format!("{TO_REVIEWS_A}{TO_REVIEWS_B}")));
    let report = diff(&yaml, &yaml);
    assert!(!report.has_changes(), "{}", render_text(&report));
    assert!(report.new_valid && report.new_diagnostics.is_empty());
    assert_eq!(render_text(&report), "no change\n");
}

#[test]
fn a_route_added_before_others_is_one_addition_not_a_cascade() {
    let old = config(&virtual_service("bookinfo", "bookinfo.example", &format!("{TO_REVIEWS_A}{TO_REVIEWS_B}")));
    // The new first rule goes to a cluster the old table does not have: every rule index and
    // cluster index after it shifts, which must not read as a change.
    let first = "
  - match: [{uri: {prefix: /ratings}}]
    route: [{destination: {host: ratings.default.svc.cluster.local}}]";
    let new = config(&virtual_service("bookinfo", "bookinfo.example", &format!("{first}{TO_REVIEWS_A}{TO_REVIEWS_B}")));
    let report = diff(&old, &new);
    let briefs: Vec<_> = report.changes.iter().map(brief).collect();
    assert_eq!(
        briefs,
        [
            (
                Section::Route,
                Kind::Added,
                "route http.80 bookinfo.example: default/bookinfo http[0] match[0] (path prefix \"/ratings\")"
            ),
            (Section::Cluster, Kind::Added, "cluster outbound|9080||ratings.default.svc.cluster.local"),
        ],
        "{}",
        render_text(&report)
    );
    assert_eq!(
        report.changes[0].details,
        ["position: 1", "action: forward to outbound|9080||ratings.default.svc.cluster.local weight 100"]
    );
}

#[test]
fn swapped_routes_are_one_route_moved_with_both_positions() {
    let old = config(&virtual_service("bookinfo", "bookinfo.example", &format!("{TO_REVIEWS_A}{TO_REVIEWS_B}")));
    let new = config(&virtual_service("bookinfo", "bookinfo.example", &format!("{TO_REVIEWS_B}{TO_REVIEWS_A}")));
    let report = diff(&old, &new);
    assert_eq!(
        render_text(&report),
        "\
moved   route http.80 bookinfo.example: default/bookinfo http[1] match[0] (path prefix \"/a\")
    position: 1 → 2
    now after default/bookinfo http[0] match[0] (path prefix \"/b\")
1 change(s)
"
    );
    assert_eq!(report.changes[0].kind, Kind::Reordered);
}

#[test]
fn a_weight_change_names_the_destination_and_both_weights() {
    let split = |reviews: u32, ratings: u32| {
        format!(
            "
  - name: split
    route:
    - {{destination: {{host: reviews.default.svc.cluster.local}}, weight: {reviews}}}
    - {{destination: {{host: ratings.default.svc.cluster.local}}, weight: {ratings}}}"
        )
    };
    let old = config(&virtual_service("bookinfo", "bookinfo.example", &split(50, 50)));
    let new = config(&virtual_service("bookinfo", "bookinfo.example", &split(20, 80)));
    let report = diff(&old, &new);
    assert_eq!(
        render_text(&report),
        "\
changed route http.80 bookinfo.example: default/bookinfo http[0] \"split\"
    action.destinations[outbound|9080||ratings.default.svc.cluster.local].weight: 50 → 80
    action.destinations[outbound|9080||reviews.default.svc.cluster.local].weight: 50 → 20
1 change(s)
"
    );
    assert_eq!(report.changes[0].kind, Kind::Changed);
}

#[test]
fn a_host_moved_to_another_virtual_service_names_both() {
    let old = config(&virtual_service("a", "bookinfo.example", TO_REVIEWS_A));
    let new = config(&virtual_service("b", "bookinfo.example", TO_REVIEWS_A));
    let report = diff(&old, &new);
    let hosts = of(&report, Section::VirtualHost);
    assert_eq!(hosts.len(), 1, "{}", render_text(&report));
    assert_eq!(brief(hosts[0]), (Section::VirtualHost, Kind::Changed, "virtual host http.80 bookinfo.example"));
    assert_eq!(hosts[0].details, ["virtual_services: [\"default/a\"] → [\"default/b\"]"]);
    let routes: Vec<_> = of(&report, Section::Route).into_iter().map(brief).collect();
    assert_eq!(
        routes,
        [
            (
                Section::Route,
                Kind::Removed,
                "route http.80 bookinfo.example: default/a http[0] match[0] (path prefix \"/a\")"
            ),
            (
                Section::Route,
                Kind::Added,
                "route http.80 bookinfo.example: default/b http[0] match[0] (path prefix \"/a\")"
            ),
        ]
    );
}

#[test]
fn a_server_on_a_new_port_opens_a_listener_with_its_server_host_and_routes() {
    let old = config(&virtual_service("bookinfo", "bookinfo.example", TO_REVIEWS_A));
    // In front of the existing server: every server index shifts, which must not read as a change.
    let gateway = GATEWAY.replace(
        "  servers:\n",
        "  servers:\n  - port: {number: 8080, name: http-alt, protocol: HTTP}\n    hosts: ['*']\n",
    );
    let new =
        config_with(&gateway, "[{address: 127.0.0.1}]", &virtual_service("bookinfo", "bookinfo.example", TO_REVIEWS_A));
    let report = diff(&old, &new);
    let briefs: Vec<_> = report.changes.iter().map(brief).collect();
    assert_eq!(
        briefs,
        [
            (Section::Listener, Kind::Added, "listener 0.0.0.0:8080"),
            (Section::Server, Kind::Added, "server default/gw port http-alt"),
            (Section::VirtualHost, Kind::Added, "virtual host http.8080 bookinfo.example"),
            (
                Section::Route,
                Kind::Added,
                "route http.8080 bookinfo.example: default/bookinfo http[0] match[0] (path prefix \"/a\")"
            ),
        ],
        "{}",
        render_text(&report)
    );
    assert!(render_text(&report).starts_with("opened  listener 0.0.0.0:8080\n"));
}

#[test]
fn an_endpoint_added_to_a_service_entry_changes_its_cluster_naming_the_endpoint() {
    let routes = virtual_service("bookinfo", "bookinfo.example", TO_REVIEWS_A);
    let old = config(&routes);
    let new = config_with(GATEWAY, "[{address: 127.0.0.1}, {address: 127.0.0.2, weight: 3}]", &routes);
    let report = diff(&old, &new);
    let briefs: Vec<_> = report.changes.iter().map(brief).collect();
    assert_eq!(briefs, [(Section::Cluster, Kind::Changed, "cluster outbound|9080||reviews.default.svc.cluster.local")]);
    assert_eq!(report.changes[0].details, ["service.endpoints[127.0.0.2:9080]: added {\"weight\":3}"]);
}

#[test]
fn an_invalid_new_configuration_is_not_compared_and_its_errors_are_new_diagnostics() {
    let old = config(&virtual_service("bookinfo", "bookinfo.example", TO_REVIEWS_A));
    let bad = "
  - match: [{uri: {regex: '('}}]
    route: [{destination: {host: ratings.default.svc.cluster.local}}]";
    // Besides the error, a route the old table does not have: none of it may be reported.
    let new = config(&virtual_service("bookinfo", "bookinfo.example", &format!("{TO_REVIEWS_A}{TO_REVIEWS_B}{bad}")));
    let report = diff(&old, &new);
    assert!(!report.new_valid);
    assert!(report.changes.is_empty(), "{}", render_text(&report));
    assert!(report.new_diagnostics.iter().any(|d| d.is_error() && d.code == conf::Code::Regex), "{report:?}");
    assert!(render_text(&report).ends_with("not compared: the new configuration is invalid\n"));
}

#[test]
fn a_new_warning_is_a_new_diagnostic_and_old_ones_are_not() {
    let unknown = |host: &str| {
        format!(
            "
  - match: [{{uri: {{prefix: /{host}}}}}]
    route: [{{destination: {{host: {host}.default.svc.cluster.local}}}}]"
        )
    };
    let old = config(&virtual_service("bookinfo", "bookinfo.example", &unknown("details")));
    let new = config(&virtual_service(
        "bookinfo",
        "bookinfo.example",
        &format!("{}{}", unknown("details"), unknown("products")),
    ));
    let report = diff(&old, &new);
    assert!(report.new_valid);
    let lines: Vec<String> = report.new_diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("warning[unknown-host]") && lines[0].contains("products"), "{lines:?}");
    assert!(render_text(&report).contains(&format!("new diagnostics:\n    {}\n", lines[0])));
}
