//! VirtualService validation (Istio `ValidateVirtualService`, TLS and TCP routes).

use std::fmt::Display;

use crate::at::At;

use super::http_route::{validate_http_route, validate_weighted, RouteKind};
use super::names::{is_dns1123_label, is_ip, is_jwt_claim, validate_fqdn, validate_port, validate_wildcard_domain};
use super::{check_export_to, check_labels, unreachable, Regexes};
use crate::config::Meta;
use crate::diagnostic::{Code, Reporter};
use crate::model::host;
use crate::raw::{RouteDestination, TlsMatchAttributes, VirtualService};

pub(super) fn validate(meta: &Meta, vs: &VirtualService, r: &mut Reporter<'_>, regexes: &mut Regexes) {
    let delegate = vs.hosts.is_empty();
    if delegate {
        if !vs.gateways.is_empty() {
            r.error(Code::Delegate, "spec.gateways", "delegate virtual service must have no gateways specified");
        }
        if !vs.tls.is_empty() {
            r.error(Code::Delegate, "spec.tls", "delegate virtual service must have no tls route specified");
        }
        if !vs.tcp.is_empty() {
            r.error(Code::Delegate, "spec.tcp", "delegate virtual service must have no tcp route specified");
        }
    }
    validate_gateway_names(&vs.gateways, &"spec.gateways", r);
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
    if applies_to_mesh {
        check_jwt_claims(vs, r);
    }
    validate_hosts(vs, applies_to_mesh, r);
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        r.error(Code::Route, "spec", "http, tcp or tls must be provided in virtual service");
    }
    for (i, route) in vs.http.iter().enumerate() {
        let kind = match (delegate, route.delegate.is_some()) {
            (true, _) => RouteKind::Delegate,
            (false, true) => RouteKind::Root,
            (false, false) => RouteKind::Independent,
        };
        validate_http_route(route, kind, &At::Index(&"spec.http", i), r, regexes);
    }
    validate_tls_routes(vs, r);
    validate_tcp_routes(vs, r);
    check_export_to(r, "spec.exportTo", meta.namespace(), &vs.export_to, false);
    unreachable::analyze(&vs.http, r);
}

fn validate_tls_routes(vs: &VirtualService, r: &mut Reporter<'_>) {
    for (i, tls) in vs.tls.iter().enumerate() {
        let path = format!("spec.tls[{i}]");
        if tls.matches.is_empty() {
            r.error(Code::Route, format!("{path}.match"), "TLS route must have at least one match condition");
        }
        for (j, m) in tls.matches.iter().enumerate() {
            validate_tls_match(m, vs, &format!("{path}.match[{j}]"), r);
        }
        if tls.route.is_empty() {
            r.error(Code::Route, format!("{path}.route"), "TLS route is required");
        }
        validate_route_destinations(&tls.route, &At::Field(&path, "route"), r);
    }
}

fn validate_tcp_routes(vs: &VirtualService, r: &mut Reporter<'_>) {
    for (i, tcp) in vs.tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        for (j, m) in tcp.matches.iter().enumerate() {
            let at = format!("{path}.match[{j}]");
            check_subnets(&m.destination_subnets, &At::Field(&at, "destinationSubnets"), r);
            if let Some(subnet) = m.source_subnet.as_deref().filter(|s| !s.is_empty()) {
                check_subnets(&[subnet.to_string()], &At::Field(&at, "sourceSubnet"), r);
            }
            check_match_port(m.port, &at, r);
            check_labels(r, &At::Field(&at, "sourceLabels"), &m.source_labels);
            validate_gateway_names(&m.gateways, &At::Field(&at, "gateways"), r);
            l4_no_effect(
                m.destination_subnets.is_empty()
                    && m.source_subnet.is_none()
                    && m.source_labels.is_empty()
                    && m.source_namespace.is_none(),
                &at,
                r,
            );
        }
        if tcp.route.is_empty() {
            r.error(Code::Route, format!("{path}.route"), "TCP route is required");
        }
        validate_route_destinations(&tcp.route, &At::Field(&path, "route"), r);
    }
}

/// Istio `validateGatewayNames` (every entry is checked, where Istio stops at the first short name).
pub(super) fn validate_gateway_names(names: &[String], path: &dyn Display, r: &mut Reporter<'_>) {
    for (i, name) in names.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match name.split_once('/') {
            None => {
                if name.contains('.') {
                    let parts: Vec<&str> = name.split('.').collect();
                    let recommended = format!("{}/{}", parts.get(1).unwrap_or(&""), parts[0]);
                    r.warn(
                        Code::Gateways,
                        at.clone(),
                        format!("using legacy gatewayName format {name:?}; prefer the <namespace>/<name> format: {recommended:?}"),
                    );
                }
                if let Err(e) = validate_fqdn(name) {
                    r.error(Code::Gateways, at, e);
                }
            }
            Some((ns, gw)) => {
                if ns.is_empty() || gw.is_empty() {
                    r.error(Code::Gateways, at.clone(), "config namespace and gateway name cannot be empty");
                }
                if !is_dns1123_label(ns) {
                    r.error(Code::Gateways, at.clone(), format!("invalid value for namespace: {ns:?}"));
                }
                if !is_dns1123_label(gw) {
                    r.error(Code::Gateways, at, format!("invalid value for gateway name: {gw:?}"));
                }
            }
        }
    }
}

fn check_jwt_claims(vs: &VirtualService, r: &mut Reporter<'_>) {
    for (i, route) in vs.http.iter().enumerate() {
        for (j, m) in route.matches.iter().enumerate() {
            for key in m.headers.keys().chain(m.without_headers.keys()).filter(|k| is_jwt_claim(k)) {
                r.error(
                    Code::Match,
                    format!("spec.http[{i}].match[{j}]"),
                    format!(
                        "JWT claim based routing (key: {key}) is only supported for gateway, found no gateways: {:?}",
                        vs.gateways
                    ),
                );
            }
        }
    }
}

/// Istio `isGateway`: the VirtualService is not bound to the mesh.
fn bound_to_gateway(vs: &VirtualService) -> bool {
    !vs.gateways.iter().any(|g| g == "mesh")
}

fn validate_hosts(vs: &VirtualService, applies_to_mesh: bool, r: &mut Reporter<'_>) {
    let mut all_valid = true;
    // Istio: with gateways listed and none of them the mesh, hosts may be Istio's generated SNI
    // names when a TLS rule matches on SNI.
    let applies_to_gateway = !vs.gateways.is_empty() && bound_to_gateway(vs);
    let sni = vs.tls.iter().any(|t| t.matches.iter().any(|m| !m.sni_hosts.is_empty()));
    for (i, h) in vs.hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
        let checked = if applies_to_gateway {
            super::names::validate_gateway_bound_domain(sni, h)
        } else {
            validate_wildcard_domain(h)
        };
        match checked {
            Err(e) if !is_ip(h) => {
                r.error(Code::Host, at, e);
                all_valid = false;
            }
            Ok(()) if applies_to_mesh && h == "*" => {
                r.error(
                    Code::Host,
                    at,
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                )
                .hint = Some("list the gateway in spec.gateways (without mesh) to use host *".into());
                all_valid = false;
            }
            _ => {}
        }
    }
    if !all_valid {
        return;
    }
    for (i, a) in vs.hosts.iter().enumerate() {
        for b in &vs.hosts[i + 1..] {
            if host::matches(a, b) {
                r.error(Code::Host, "spec.hosts", format!("duplicate hosts in virtual service: {a} & {b}"));
            }
        }
    }
}

fn validate_tls_match(m: &TlsMatchAttributes, vs: &VirtualService, at: &dyn Display, r: &mut Reporter<'_>) {
    let hosts = &vs.hosts;
    if m.sni_hosts.is_empty() {
        r.error(Code::Match, format!("{at}.sniHosts"), "TLS match must have at least one SNI host");
    }
    for (k, sni) in m.sni_hosts.iter().enumerate() {
        let path = format!("{at}.sniHosts[{k}]");
        let checked = if bound_to_gateway(vs) {
            super::names::validate_gateway_bound_domain(true, sni)
        } else {
            validate_wildcard_domain(sni)
        };
        match checked {
            Err(_) if is_ip(sni) => {
                r.warn(
                    Code::Match,
                    path,
                    format!("using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"),
                );
            }
            Err(e) => {
                r.error(Code::Match, path, e);
            }
            Ok(()) if !hosts.iter().any(|h| host::subset_of(sni, h)) => {
                r.error(
                    Code::Match,
                    path,
                    format!(
                        "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                        hosts.join(", ")
                    ),
                );
            }
            Ok(()) => {}
        }
    }
    check_subnets(&m.destination_subnets, &At::Field(at, "destinationSubnets"), r);
    check_match_port(m.port, at, r);
    check_labels(r, &At::Field(at, "sourceLabels"), &m.source_labels);
    validate_gateway_names(&m.gateways, &At::Field(at, "gateways"), r);
    l4_no_effect(m.destination_subnets.is_empty() && m.source_labels.is_empty() && m.source_namespace.is_none(), at, r);
}

/// Istio evaluates only `port` and `gateways` of TLS and TCP matches at a gateway (`l4SingleMatch`).
fn l4_no_effect(nothing_ignored: bool, at: &dyn Display, r: &mut Reporter<'_>) {
    if !nothing_ignored {
        r.warn(
            Code::NoEffect,
            at,
            "destinationSubnets, sourceSubnet, sourceLabels and sourceNamespace of TLS and TCP matches have no effect at a gateway",
        );
    }
}

fn check_match_port(port: Option<u32>, at: &dyn Display, r: &mut Reporter<'_>) {
    if let Some(p) = port.filter(|p| *p != 0) {
        if let Err(e) = validate_port(p) {
            r.error(Code::Port, format!("{at}.port"), e);
        }
    }
}

fn check_subnets(subnets: &[String], path: &dyn Display, r: &mut Reporter<'_>) {
    for (i, s) in subnets.iter().enumerate() {
        if s.parse::<ipnet::IpNet>().is_err() && !is_ip(s) {
            r.error(Code::Match, format!("{path}[{i}]"), format!("{s} is not a valid CIDR block"));
        }
    }
}

/// Istio `validateRouteDestinations` (TLS and TCP routes).
fn validate_route_destinations(route: &[RouteDestination], path: &dyn Display, r: &mut Reporter<'_>) {
    let items: Vec<_> = route.iter().map(|d| (d.destination.as_ref(), d.weight, None)).collect();
    validate_weighted(&items, path, r);
}
