//! ServiceEntry and WorkloadEntry validation (Istio `ValidateServiceEntry`, `validateWorkloadEntry`).

use std::collections::HashSet;

use super::names::{
    is_dns1123_label, is_ip, validate_fqdn, validate_partial_wildcard, validate_port, validate_wildcard_domain,
};
use super::{check_export_to, check_labels};
use crate::config::Meta;
use crate::diagnostic::{Code, Reporter};
use crate::model::Protocol;
use crate::raw::{Resolution, ServiceEntry, WorkloadEntry};

pub(super) fn validate(meta: &Meta, se: &ServiceEntry, r: &mut Reporter<'_>) {
    if let Some(sel) = &se.workload_selector {
        // Istio (ValidateServiceEntry) reports a bad selector alone, and words the warning its way.
        let without_labels =
            "service entry: workload selector specified without labels, will be applied to all services in namespace";
        if super::check_workload_selector(
            &sel.labels,
            ("spec.workloadSelector", "labels"),
            Code::Name,
            without_labels,
            r,
        ) {
            return;
        }
    }
    if se.workload_selector.is_some() && !se.endpoints.is_empty() {
        r.error(Code::Endpoint, "spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry");
    }
    validate_hosts(se, r);
    let cidr = se.addresses.iter().any(|a| a.contains('/'));
    for (i, a) in se.addresses.iter().enumerate() {
        if a.parse::<ipnet::IpNet>().is_err() && !is_ip(a) {
            r.error(Code::Endpoint, format!("spec.addresses[{i}]"), format!("{a} is not a valid CIDR block"));
        }
    }
    if cidr && !matches!(se.resolution, Resolution::None | Resolution::Static) {
        r.error(Code::Resolution, "spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types");
    }
    let port_names = validate_ports(se, auto_allocates(meta, se), r);
    validate_resolution(se, &port_names, r);
    if se.resolution != Resolution::None && se.hosts.len() > 1 {
        let opaque = se
            .ports
            .iter()
            .filter(|p| !p.null)
            .any(|p| !Protocol::parse(&p.protocol).is_some_and(|p| p.is_http() || p.is_tls()));
        if opaque {
            r.error(Code::Resolution, "spec.ports", "multiple hosts provided with non-HTTP, non-TLS ports");
        }
    }
    check_export_to(r, "spec.exportTo", meta.namespace(), &se.export_to, true);
}

fn validate_hosts(se: &ServiceEntry, r: &mut Reporter<'_>) {
    if se.hosts.is_empty() {
        r.error(Code::Host, "spec.hosts", "service entry must have at least one host");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
        if h == "*" {
            r.error(Code::Host, at, format!("invalid host {h}"));
            continue;
        }
        if let Err(e) = validate_wildcard_domain(h) {
            r.error(Code::Host, at.clone(), e);
        }
        if let Err(e) = validate_partial_wildcard(h) {
            r.warn(Code::Host, at, e);
        }
    }
}

/// Istio `ShouldV2AutoAllocateIPFromConfig` (auto-allocation on, as in Istio's default): Istio
/// gives addresses to a ServiceEntry unless its resolution is NONE or it opts out with the label
/// `networking.istio.io/enable-autoallocate-ip: "false"`.
fn auto_allocates(meta: &Meta, se: &ServiceEntry) -> bool {
    let opted_out =
        meta.labels.get("networking.istio.io/enable-autoallocate-ip").is_some_and(|v| v.eq_ignore_ascii_case("false"));
    se.resolution != Resolution::None && !opted_out
}

fn validate_ports(se: &ServiceEntry, auto_allocation: bool, r: &mut Reporter<'_>) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    for (i, p) in se.ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        if p.null {
            r.error(Code::Port, at, "service entry port may not be null");
            continue;
        }
        if !names.insert(p.name.clone()) {
            r.error(Code::Port, format!("{at}.name"), format!("service entry port name {:?} already defined", p.name));
        }
        if !numbers.insert(p.number) {
            r.error(Code::Port, format!("{at}.number"), format!("service entry port {} already defined", p.number));
        }
        if let Some(t) = p.target_port.filter(|t| *t != 0) {
            if let Err(e) = validate_port(t) {
                r.error(Code::Port, format!("{at}.targetPort"), e);
            }
        }
        if !is_dns1123_label(&p.name) {
            r.error(Code::Port, format!("{at}.name"), format!("invalid port name: {}", p.name));
        }
        if !p.protocol.is_empty() && Protocol::parse(&p.protocol).is_none() {
            r.error(Code::Port, format!("{at}.protocol"), format!("unsupported protocol: {}", p.protocol));
        }
        if let Err(e) = validate_port(p.number) {
            r.error(Code::Port, format!("{at}.number"), e);
        }
        // Istio: without addresses, given or allocated, a TCP port cannot be captured by sidecars.
        if se.addresses.is_empty() && !auto_allocation && (p.protocol.is_empty() || p.protocol == "TCP") {
            r.warn(
                Code::Port,
                format!("{at}.protocol"),
                "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
            );
        }
    }
    names
}

fn validate_resolution(se: &ServiceEntry, port_names: &HashSet<String>, r: &mut Reporter<'_>) {
    match se.resolution {
        Resolution::None => {
            if !se.endpoints.is_empty() {
                r.error(Code::Resolution, "spec.endpoints", "no endpoints should be provided for resolution type none");
            }
            if se.workload_selector.is_some() {
                r.warn(
                    Code::Resolution,
                    "spec.workloadSelector",
                    "workloadSelector should not be set when resolution mode is NONE",
                );
            }
        }
        Resolution::Static => {
            for (i, ep) in se.endpoints.iter().enumerate() {
                validate_endpoint(ep, Some(port_names), se.ports.len(), false, &format!("spec.endpoints[{i}]"), r);
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => validate_dns(se, port_names, r),
        Resolution::DynamicDns => {
            r.error(
                Code::Unsupported,
                "spec.resolution",
                "DYNAMIC_DNS (per-request forward proxying) is not supported by this version",
            )
            .hint = Some("list the hosts with resolution DNS".into());
        }
    }
}

fn validate_dns(se: &ServiceEntry, port_names: &HashSet<String>, r: &mut Reporter<'_>) {
    let mode = se.resolution.as_str();
    if se.endpoints.is_empty() {
        for (i, h) in se.hosts.iter().enumerate() {
            if validate_fqdn(h).is_err() {
                r.error(
                    Code::Resolution,
                    format!("spec.hosts[{i}]"),
                    format!("hosts must be FQDN if no endpoints are provided for resolution mode {mode}"),
                );
            }
        }
    }
    if se.resolution == Resolution::DnsRoundRobin && se.endpoints.len() > 1 {
        r.error(
            Code::Resolution,
            "spec.endpoints",
            format!("there must only be 0 or 1 endpoint for resolution mode {mode}"),
        );
    }
    // Istio's `IsTCP` here counts HTTPS and TLS ports as TCP too.
    let tcp = se
        .ports
        .iter()
        .filter(|p| !p.null)
        .any(|p| Protocol::parse(&p.protocol).is_some_and(|p| p.is_tcp() || p.is_tls()));
    if !se.addresses.is_empty() && tcp && se.hosts.len() > 1 {
        r.warn(
            Code::Resolution,
            "spec.addresses",
            "service entry can not have more than one host specified simultaneously with address and tcp port",
        );
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        let at = format!("spec.endpoints[{i}]");
        if !is_ip(&ep.address) && validate_fqdn(&ep.address).is_err() {
            r.error(
                Code::Endpoint,
                format!("{at}.address"),
                format!("endpoint address {:?} is not a valid FQDN or an IP address", ep.address),
            );
        }
        check_labels(r, &format!("{at}.labels"), &ep.labels);
        endpoint_ports(ep, Some(port_names), &at, r);
        no_effect_fields(ep, &at, r);
    }
}

fn endpoint_ports(ep: &WorkloadEntry, port_names: Option<&HashSet<String>>, at: &str, r: &mut Reporter<'_>) {
    for (name, port) in &ep.ports {
        let path = format!("{at}.ports[{name:?}]");
        if port_names.is_some_and(|names| !names.contains(name)) {
            r.error(Code::Endpoint, path.clone(), format!("endpoint port {port} is not defined by the service entry"));
        }
        if !is_dns1123_label(name) {
            r.error(Code::Port, path.clone(), format!("invalid port name: {name}"));
        }
        if let Err(e) = validate_port(*port) {
            r.error(Code::Port, path, e);
        }
    }
}

/// Istio `validateWorkloadEntry`; `port_names` are the ServiceEntry's ports (None for a standalone
/// WorkloadEntry), `fqdn_ok` allows host names as addresses.
fn validate_endpoint(
    ep: &WorkloadEntry,
    port_names: Option<&HashSet<String>>,
    service_ports: usize,
    fqdn_ok: bool,
    at: &str,
    r: &mut Reporter<'_>,
) {
    if ep.address.is_empty() {
        if let Some(net) = &ep.network {
            r.warn(Code::Endpoint, format!("{at}.address"), format!("address is unset with network {net:?}"));
        } else {
            r.error(Code::Endpoint, format!("{at}.address"), "address is required");
        }
    } else if let Some(path) = ep.address.strip_prefix("unix://") {
        if !path.starts_with('/') && !path.starts_with('@') {
            r.error(Code::Endpoint, format!("{at}.address"), format!("{path} is not an absolute path to a file"));
        }
        if !ep.ports.is_empty() {
            r.error(
                Code::Endpoint,
                format!("{at}.ports"),
                format!("unix endpoint {} must not include ports", ep.address),
            );
        }
        if port_names.is_some() && service_ports != 1 {
            r.error(Code::Endpoint, format!("{at}.address"), "exactly 1 service port required for unix endpoints");
        }
        r.error(Code::Unsupported, format!("{at}.address"), "unix socket endpoints are not supported by this version");
    } else if !(is_ip(&ep.address) || fqdn_ok && validate_fqdn(&ep.address).is_ok()) {
        r.error(
            Code::Endpoint,
            format!("{at}.address"),
            format!("endpoint address {:?} is not a valid IP address", ep.address),
        );
    }
    check_labels(r, &format!("{at}.labels"), &ep.labels);
    endpoint_ports(ep, port_names, at, r);
    no_effect_fields(ep, at, r);
}

fn no_effect_fields(ep: &WorkloadEntry, at: &str, r: &mut Reporter<'_>) {
    if ep.network.is_some() {
        r.warn(
            Code::NoEffect,
            format!("{at}.network"),
            "network has no effect: Pylon does not route across mesh networks",
        );
    }
    if ep.locality.is_some() {
        r.warn(
            Code::NoEffect,
            format!("{at}.locality"),
            "locality has no effect: Pylon does not do locality load balancing",
        );
    }
    if ep.service_account.is_some() {
        r.warn(
            Code::NoEffect,
            format!("{at}.serviceAccount"),
            "serviceAccount has no effect: it only names a mesh identity",
        );
    }
}

/// A standalone `WorkloadEntry` (selected by a ServiceEntry's `workloadSelector`).
pub(super) fn validate_workload_entry(we: &WorkloadEntry, r: &mut Reporter<'_>) {
    validate_endpoint(we, None, 0, true, "spec", r);
}
