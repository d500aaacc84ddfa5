//! Small builders for the Istio YAML the end-to-end tests serve.

use crate::Upstream;

/// A Gateway `gw` (namespace default) with one HTTP server on `port` for `hosts`.
pub fn gateway(port: u16, hosts: &[&str]) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    hosts: [{}]\n---\n",
        quoted(hosts)
    )
}

/// A STATIC ServiceEntry `name` for `host` on port 80 whose endpoints are `upstreams`, each labelled
/// `version: <upstream name>`.
pub fn service(name: &str, host: &str, upstreams: &[&Upstream]) -> String {
    let endpoints: Vec<String> = upstreams
        .iter()
        .map(|u| format!("  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: {}}}}}", u.port(), u.name))
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n{}\n---\n",
        endpoints.join("\n")
    )
}

/// A STATIC ServiceEntry `name` for `host` on port 80 whose endpoints are `(port, weight)` on
/// 127.0.0.1 (upstreams that are not [`Upstream`]s: faulty ones, raw listeners, closed ports).
pub fn service_at(name: &str, host: &str, endpoints: &[(u16, u32)]) -> String {
    let endpoints: Vec<String> =
        endpoints.iter().map(|(p, w)| format!("{{address: 127.0.0.1, ports: {{http: {p}}}, weight: {w}}}")).collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{}]\n---\n",
        endpoints.join(", ")
    )
}

/// Kubernetes Endpoints for Service `ns/name`: one address, 127.0.0.1:`at`, on the port named
/// `port_name` (empty: unnamed).
pub fn kube_endpoints(ns: &str, name: &str, port_name: &str, at: u16) -> String {
    format!("apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {name}, namespace: {ns}}}\nsubsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{name: '{port_name}', port: {at}}}]}}]\n---\n")
}

/// A Kubernetes Service `ns/name` with one port `port` named `port_name` (`extra`: more fields of
/// the port in YAML flow, like `appProtocol: kubernetes.io/h2c`), and its Endpoints on
/// 127.0.0.1:`at`.
pub fn kube_service(ns: &str, name: &str, port_name: &str, port: u16, extra: &str, at: u16) -> String {
    let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: '{port_name}', port: {port}{extra}}}]\n---\n")
        + &kube_endpoints(ns, name, port_name, at)
}

/// A VirtualService `name` bound to `gw` for `hosts`, with `http` as its (YAML) rules.
pub fn virtual_service(name: &str, hosts: &[&str], http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{}]\n  gateways: [gw]\n  http:\n{}\n---\n",
        quoted(hosts),
        indent(http, 2)
    )
}

fn quoted(hosts: &[&str]) -> String {
    hosts.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ")
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.trim_matches('\n').lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}
