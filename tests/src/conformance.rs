//! A harness for the Kubernetes Gateway API conformance tests (kubernetes-sigs/gateway-api
//! `conformance/tests/`), ported with their manifests and expectations as data
//! (`tests/fixtures/gateway-api`): the base Services are in-process echo backends, each Gateway a
//! test addresses is served by its own gateway workload (`gateway.networking.k8s.io/gateway-name`),
//! every request case is sent and checked as the suite checks it (status, backend, what the backend
//! received, response headers, redirect target), and the status conditions it asserts are checked
//! against what Pylon computes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::certs::{Ca, Leaf};
use crate::client::http1;
use crate::gateway::Setup;
use crate::{TestGateway, Upstream};

/// The namespace of the base Gateways.
pub const INFRA: &str = "gateway-conformance-infra";
/// The backends of the base manifests: (namespace, Service).
const BACKENDS: [(&str, &str); 6] = [
    (INFRA, "infra-backend-v1"),
    (INFRA, "infra-backend-v2"),
    (INFRA, "infra-backend-v3"),
    ("gateway-conformance-web-backend", "web-backend"),
    ("gateway-conformance-app-backend", "app-backend-v1"),
    ("gateway-conformance-app-backend", "app-backend-v2"),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/gateway-api")
}

/// One conformance test: its manifests, cases and status assertions, and its backends.
pub struct Conformance {
    /// The test's data.
    pub data: Value,
    /// The configuration: base manifests and the test's.
    pub yaml: String,
    backends: BTreeMap<&'static str, Upstream>,
    gateways: BTreeMap<String, TestGateway>,
    /// The CA the HTTPS listeners' certificate chains to (the suite's
    /// `tls-validity-checks-certificate`).
    ca: Ca,
    /// What did not hold, one line each.
    pub failures: Vec<String>,
    /// Cases checked.
    pub checked: usize,
}

impl Conformance {
    /// Loads test `name` and starts its backends.
    pub async fn load(name: &str) -> Conformance {
        let data: Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("cases/{name}.json"))).unwrap())
                .unwrap();
        let mut backends = BTreeMap::new();
        for (_, service) in BACKENDS {
            backends.insert(service, Upstream::start(service).await);
        }
        let mut yaml = std::fs::read_to_string(fixtures().join("base.yaml")).unwrap();
        for m in data["manifests"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            yaml += "\n---\n";
            yaml += &std::fs::read_to_string(fixtures().join(m)).unwrap();
        }
        for (service, up) in &backends {
            yaml = yaml.replace(&format!("{{PORT:{service}}}"), &up.port().to_string());
        }
        let ca = Ca::new("tls-validity-checks");
        // The suite's names, and `example.org` itself: OpenSSL, unlike Go, never lets `*.org`
        // cover a name directly under a top-level domain.
        let cert = ca.issue(&Leaf::server(&[
            "*.org",
            "*.wildcard.org",
            "example.org",
            "second-example.org",
            "unknown-example.org",
        ]));
        let indent = |pem: String| pem.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n");
        let yaml = yaml
            .replace("{GATEWAY_CLASS_NAME}", "istio")
            .replace("{CERT:tls-validity-checks-certificate}", &indent(cert.cert_pem()))
            .replace("{KEY:tls-validity-checks-certificate}", &indent(cert.key_pem()));
        Conformance { data, yaml, backends, gateways: BTreeMap::new(), ca, failures: Vec::new(), checked: 0 }
    }

    /// The selection of the workload that runs Gateway `name` of the infra namespace.
    pub fn selection(name: &str) -> conf::Selection {
        conf::Selection {
            labels: BTreeMap::from([(conf::compile::GATEWAY_NAME_LABEL.to_string(), name.to_string())]),
            namespace: INFRA.into(),
            ..conf::Selection::default()
        }
    }

    /// Removes the document of `kind` named `name` (the suite deletes resources mid-test), and
    /// restarts the gateways.
    pub fn delete(&mut self, kind: &str, name: &str) {
        let docs: Vec<&str> = self.yaml.split("\n---\n").collect();
        let kept: Vec<&str> = docs
            .into_iter()
            .filter(|d| !(d.contains(&format!("kind: {kind}")) && d.contains(&format!("name: {name}\n"))))
            .collect();
        self.yaml = kept.join("\n---\n");
        self.gateways.clear();
    }

    /// The gateway workload that runs Gateway `name` (started on first use).
    pub fn gateway(&mut self, name: &str) -> &TestGateway {
        let yaml = &self.yaml;
        self.gateways
            .entry(name.to_string())
            .or_insert_with(|| TestGateway::start_with(yaml, Setup::gateway_api(name, INFRA)))
    }

    /// Sends every case of every group of the test (over TLS for the HTTPS listener).
    pub async fn run_cases(&mut self) {
        let groups = self.data["groups"].as_array().cloned().unwrap_or_default();
        for g in groups {
            let label = g["name"].as_str().unwrap_or("").to_string();
            if let Some(rest) = label.strip_prefix("ACTION: delete ") {
                let (kind, qualified) = rest.split_once(' ').unwrap();
                let name = qualified.split(' ').next().unwrap().rsplit('/').next().unwrap();
                self.delete(kind, name);
                continue;
            }
            let Some(gw) = g["gw"].as_str() else { continue };
            let (name, rest) = gw.split_once(':').unwrap();
            let port: u16 = rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap();
            let addr = self.gateway(name).addr(port);
            let tls = gw.contains("HTTPS") || g["tls"].is_object();
            for mut c in g["cases"].as_array().cloned().unwrap_or_default() {
                self.tag_request(&mut c);
                if tls || c["request"]["scheme"].as_str() == Some("https") {
                    self.https_case(addr, &c).await;
                } else {
                    self.case(&format!("http://{addr}"), port, &c).await;
                }
            }
        }
    }

    async fn case(&mut self, base: &str, port: u16, c: &Value) {
        let req = &c["request"];
        let (method, path) = (req["method"].as_str().unwrap_or("GET"), req["path"].as_str().unwrap_or("/"));
        let mut r = http1().request(method.parse().unwrap(), format!("{base}{path}"));
        // The suite's requests go to the Gateway's address on the listener port: without a host
        // of their own, they carry that address (no port when it is 80).
        let address = if port == 80 { "127.0.0.1".to_string() } else { format!("127.0.0.1:{port}") };
        r = r.header("host", req["host"].as_str().unwrap_or(&address));
        for (k, v) in req["headers"].as_object().into_iter().flatten() {
            r = r.header(k.as_str(), v.as_str().unwrap_or(""));
        }
        for (k, v) in c["backend_set_response_headers"].as_object().into_iter().flatten() {
            r = r.header("x-reply-header", format!("{k}: {}", v.as_str().unwrap_or("")));
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: Value = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
        self.checked += 1;
        let what = format!("{method} {} {path}", req["host"].as_str().unwrap_or("-"));
        let mut problems = expectations(&c["expect"], status, &headers, &body, &self.backends);
        problems.extend(self.mirrored(c, path).await);
        self.failures.extend(problems.into_iter().map(|p| format!("{what}: {p}")));
    }

    /// The backends a copy of the request to `path` must reach (the suite reads their logs; here,
    /// what they received), within 5 s.
    async fn mirrored(&self, c: &Value, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for name in c["mirrored_to"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let Some(up) = self.backends.get(name) else {
                out.push(format!("no backend {name}"));
                continue;
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !up.seen().iter().any(|s| s.path == path) {
                if std::time::Instant::now() > deadline {
                    out.push(format!("no mirrored copy of {path} reached {name}"));
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        out
    }

    /// How many of `n` requests to `/` on port 80 of Gateway `gateway` each backend answered.
    pub async fn distribution(&mut self, gateway: &str, n: usize) -> BTreeMap<String, usize> {
        let base = self.gateway(gateway).url(80);
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let r = crate::client::get(&http1(), &base, "127.0.0.1", "/", &[]).await;
            *counts.entry(r.upstream().unwrap_or("-").to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// The suite tags some requests with a unique query parameter (to find their mirrored
    /// copies): added to the request path and to the path the backend must see.
    fn tag_request(&mut self, c: &mut Value) {
        let Some(param) = c["request_id_query_param"].as_str().map(str::to_string) else { return };
        let id = format!("{param}={}", self.checked);
        let tag = |path: &mut Value| {
            if let Some(p) = path.as_str() {
                let sep = if p.contains('?') { '&' } else { '?' };
                *path = Value::String(format!("{p}{sep}{id}"));
            }
        };
        tag(&mut c["request"]["path"]);
        tag(&mut c["expect"]["backend_request"]["path"]);
    }

    /// A case over TLS: SNI and `Host` are the case's host, the server verified against the
    /// suite's certificate.
    async fn https_case(&mut self, addr: std::net::SocketAddr, c: &Value) {
        let req = &c["request"];
        let (host, path) = (req["host"].as_str().unwrap_or("example.org"), req["path"].as_str().unwrap_or("/"));
        let client = crate::tls::Client::to(host, &self.ca.cert);
        self.checked += 1;
        let reply = match client.get(addr, host, path, &[]).await {
            Ok(r) => r,
            Err(e) => {
                self.failures.push(format!("https {host} {path}: {e}"));
                return;
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &reply.headers {
            if let (Ok(k), Ok(v)) = (reqwest::header::HeaderName::from_bytes(k.as_bytes()), v.parse()) {
                headers.append(k, v);
            }
        }
        let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let problems = expectations(&c["expect"], reply.status, &headers, &body, &self.backends);
        self.failures.extend(problems.into_iter().map(|p| format!("https {host} {path}: {p}")));
    }

    /// Checks the status assertions the test makes that are about conditions.
    pub fn check_status(&mut self) {
        let asserts = self.data["status_assertions"].as_array().cloned().unwrap_or_default();
        for a in asserts {
            let Some(kind) = a["assert"].as_str() else { continue };
            let gateway = a["gateway"].as_str().and_then(|g| g.split('/').nth(1)).unwrap_or("same-namespace");
            let status = conf::build_str("conformance.yaml", &self.yaml, &Self::selection(gateway)).table.gateway_api;
            if !status.iter().any(|s| s.kind == "Gateway") {
                // A Gateway this port does not define (the HTTPS ones need the suite's certificates).
                continue;
            }
            let routes: Vec<String> = match (a["route"].as_str(), a["routes"].as_array()) {
                (Some(r), _) => vec![r.to_string()],
                (None, Some(list)) => list.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => Vec::new(),
            };
            let condition = |route: &str, kind: &str, want: bool, reason: Option<&str>| {
                status.iter().filter(|s| s.kind != "Gateway" && s.name == route).any(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.kind == kind && c.status == want && reason.is_none_or(|r| c.reason == r))
                })
            };
            for route in &routes {
                let ok = match kind {
                    "GatewayAndHTTPRoutesMustBeAccepted" | "GatewayAndTLSRoutesMustBeAccepted" => {
                        condition(route, "Accepted", true, None)
                    }
                    "HTTPRouteMustHaveResolvedRefsConditionsTrue" => condition(route, "ResolvedRefs", true, None),
                    "HTTPRouteMustHaveCondition" => {
                        let c = &a["condition"];
                        let want = c["status"].as_str() == Some("True");
                        let reason = c["reason"].as_str().filter(|r| !r.is_empty() && *r != "(any)");
                        condition(route, c["type"].as_str().unwrap_or(""), want, reason)
                    }
                    "HTTPRouteMustHaveNoAcceptedParents" => !condition(route, "Accepted", true, None),
                    _ => true,
                };
                if !ok {
                    self.failures.push(format!("{kind} {route}: {status:?}"));
                }
            }
            if kind == "GatewayStatusMustHaveListeners" {
                self.failures.extend(listeners(&a["listeners"], &status));
            }
            if kind == "GatewayMustHaveZeroRoutes" {
                for s in status.iter().filter(|s| s.attached_routes.is_some_and(|n| n > 0)) {
                    self.failures.push(format!("{kind}: {} {:?} routes", s.scope, s.attached_routes));
                }
            }
        }
    }
}

/// The listener conditions and attached-route counts `GatewayStatusMustHaveListeners` asserts
/// (not `supportedKinds`, which Pylon's status does not list).
fn listeners(want: &Value, status: &[conf::table::ApiStatus]) -> Vec<String> {
    let mut out = Vec::new();
    for l in want.as_array().into_iter().flatten() {
        let name = l["name"].as_str().unwrap_or("");
        let Some(s) = status.iter().find(|s| s.kind == "Gateway" && s.scope == format!("listener {name}")) else {
            out.push(format!("no status for listener {name}: {status:?}"));
            continue;
        };
        for c in l["conditions"].as_array().into_iter().flatten() {
            let (kind, holds) = (c["type"].as_str().unwrap_or(""), c["status"].as_str() == Some("True"));
            let reason = c["reason"].as_str().filter(|r| !r.is_empty() && *r != "(any)");
            if !s.conditions.iter().any(|x| x.kind == kind && x.status == holds && reason.is_none_or(|r| x.reason == r))
            {
                out.push(format!("listener {name}: no {kind}={holds} {reason:?} in {:?}", s.conditions));
            }
        }
        if let Some(n) = l["attachedRoutes"].as_u64() {
            if s.attached_routes.and_then(|a| u64::try_from(a).ok()) != Some(n) {
                out.push(format!("listener {name}: attachedRoutes {:?}, wanted {n}", s.attached_routes));
            }
        }
    }
    out
}

/// What of `expect` the response does not meet.
fn expectations(
    expect: &Value,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    backends: &BTreeMap<&'static str, Upstream>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut statuses: Vec<u64> = match &expect["status"] {
        Value::Array(list) => list.iter().filter_map(Value::as_u64).collect(),
        v => v.as_u64().into_iter().collect(),
    };
    // Where the suite takes 408 for 504 (a timeout), so does this.
    statuses.extend(expect["timeout_codes_equivalent"].as_array().into_iter().flatten().filter_map(Value::as_u64));
    if !statuses.contains(&u64::from(status)) {
        out.push(format!("status {status}, wanted {statuses:?} (body {body})"));
        return out;
    }
    if let Some(backend) = expect["backend"].as_str() {
        let answered = body["upstream"].as_str().unwrap_or("-");
        if answered != backend {
            out.push(format!("answered by {answered}, wanted {backend}"));
        } else if let Some(up) = backends.get(backend) {
            out.extend(received(&expect["backend_request"], &up.last()));
        }
    }
    for (k, v) in expect["response_headers"].as_object().into_iter().flatten() {
        let got: Vec<&str> = headers.get_all(k.as_str()).iter().filter_map(|v| v.to_str().ok()).collect();
        if got.join(",") != v.as_str().unwrap_or("") {
            out.push(format!("response header {k}: {got:?}, wanted {v}"));
        }
    }
    let squeeze = |v: &str| {
        if expect["response_ignore_whitespace"] == Value::Bool(true) {
            v.replace(' ', "")
        } else {
            v.to_string()
        }
    };
    for (k, allowed) in expect["response_headers_one_of"].as_object().into_iter().flatten() {
        let got =
            squeeze(&headers.get_all(k.as_str()).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(","));
        if !allowed.as_array().into_iter().flatten().filter_map(Value::as_str).any(|a| squeeze(a) == got) {
            out.push(format!("response header {k}: {got:?}, wanted one of {allowed}"));
        }
    }
    if expect["namespace"].as_str() == Some("") && !body["upstream"].is_null() {
        out.push(format!("answered by backend {}, wanted the gateway itself", body["upstream"]));
    }
    for k in expect["response_absent_headers"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if headers.contains_key(k) {
            out.push(format!("response header {k} present"));
        }
    }
    if expect["redirect"].is_object() {
        out.extend(redirect(&expect["redirect"], headers));
    }
    out
}

/// What the backend received that `want` does not allow.
fn received(want: &Value, seen: &crate::upstream::Seen) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(path) = want["path"].as_str() {
        if seen.path != path {
            out.push(format!("backend saw path {}, wanted {path}", seen.path));
        }
    }
    if let Some(host) = want["host"].as_str() {
        if seen.header("host") != Some(host) {
            out.push(format!("backend saw host {:?}, wanted {host}", seen.header("host")));
        }
    }
    for (k, v) in want["headers"].as_object().into_iter().flatten() {
        let got: Vec<&str> =
            seen.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str()).collect();
        if got.join(",") != v.as_str().unwrap_or("") {
            out.push(format!("backend saw {k}: {got:?}, wanted {v}"));
        }
    }
    for k in want["absent_headers"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if seen.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)) {
            out.push(format!("backend saw header {k}, which must be removed"));
        }
    }
    out
}

/// The `Location` against the expected scheme, host, port and path (a port left out must be
/// the scheme's default).
fn redirect(want: &Value, headers: &reqwest::header::HeaderMap) -> Vec<String> {
    let Some(location) = headers.get("location").and_then(|v| v.to_str().ok()) else {
        return vec!["no Location".into()];
    };
    let Ok(url) = reqwest::Url::parse(location) else { return vec![format!("Location {location} is not a URL")] };
    let mut out = Vec::new();
    let check = |what: &str, got: Option<String>, wanted: Option<String>, out: &mut Vec<String>| {
        if let Some(w) = wanted {
            if got.as_deref() != Some(w.as_str()) {
                out.push(format!("Location {location}: {what} {got:?}, wanted {w}"));
            }
        }
    };
    check("scheme", Some(url.scheme().to_string()), want["scheme"].as_str().map(str::to_string), &mut out);
    check("host", url.host_str().map(str::to_string), want["host"].as_str().map(str::to_string), &mut out);
    check("path", Some(url.path().to_string()), want["path"].as_str().map(str::to_string), &mut out);
    let port = url.port();
    let wanted = want["port"].as_u64().map(|p| p.to_string()).or_else(|| want["port"].as_str().map(str::to_string));
    match wanted {
        Some(p) => check("port", port.map(|p| p.to_string()), Some(p), &mut out),
        None if port.is_some() => out.push(format!("Location {location}: port {port:?}, wanted the scheme's default")),
        None => {}
    }
    out
}
