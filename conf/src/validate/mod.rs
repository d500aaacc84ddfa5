//! Validation: Istio's rules and messages for every kind (Istio's `pkg/config/validation`),
//! every problem collected in one pass. Nothing here depends on which workload is running:
//! `pylon validate` reports what Istio's validating webhook would, plus Pylon's strictness.

mod destination_rule;
mod gateway;
mod gateway_api;
mod gateway_policy;
mod http_match;
mod http_route;
pub mod names;
mod secret;
mod security;

pub(crate) use security::parse_bool;
mod service_entry;
mod unreachable;
mod virtual_service;

use std::fmt::Display;

use std::collections::HashMap;

pub use gateway::{is_valid_cipher_suite, is_valid_ecdh_curve};

use crate::config::Config;
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::matcher::Re2;
use crate::model::Duration;

/// Regexes compiled during validation, reused by compilation so each is compiled once.
#[derive(Debug, Default, Clone)]
pub struct Regexes {
    compiled: HashMap<(String, bool), Result<Re2, String>>,
}

impl Regexes {
    /// The compiled form of `pattern`: fully anchored when `full`, else for search-and-replace.
    pub fn get(&mut self, pattern: &str, full: bool) -> Result<Re2, String> {
        self.compiled
            .entry((pattern.to_string(), full))
            .or_insert_with(|| if full { Re2::full(pattern) } else { Re2::search(pattern) })
            .clone()
    }
}

/// Validates every resource of `config` for a workload in `namespace`, appending problems to `out`;
/// returns the compiled regexes.
pub fn validate(config: &Config, namespace: &str, out: &mut Diagnostics) -> Regexes {
    let mut regexes = Regexes::default();
    for gw in &config.gateways {
        gateway::validate(&gw.meta, &gw.spec, &mut Reporter::new(&gw.meta.id, out));
    }
    // VirtualServices are most of a large configuration and independent of each other here: they
    // are validated on every core, their problems kept in order.
    let parts = crate::parallel::in_parts(&config.virtual_services, |_, part| {
        let (mut found, mut compiled) = (Diagnostics::default(), Regexes::default());
        for vs in part {
            virtual_service::validate(&vs.meta, &vs.spec, &mut Reporter::new(&vs.meta.id, &mut found), &mut compiled);
        }
        (found, compiled)
    });
    for (found, compiled) in parts {
        out.extend(found);
        regexes.compiled.extend(compiled.compiled);
    }
    for dr in &config.destination_rules {
        destination_rule::validate(&dr.meta, &dr.spec, &mut Reporter::new(&dr.meta.id, out));
    }
    for se in &config.service_entries {
        service_entry::validate(&se.meta, &se.spec, &mut Reporter::new(&se.meta.id, out));
    }
    for we in &config.workload_entries {
        service_entry::validate_workload_entry(&we.spec, &mut Reporter::new(&we.meta.id, out));
    }
    // A credentialName reads Secrets in the workload's namespace only: the others are not Pylon's.
    for secret in config.secrets.iter().filter(|s| s.meta.namespace() == namespace) {
        secret::validate(&secret.spec, &mut Reporter::new(&secret.meta.id, out));
    }
    for p in &config.authorization_policies {
        security::validate_authorization_policy(&p.meta, &p.spec, &mut Reporter::new(&p.meta.id, out));
    }
    for p in &config.gateway_policies {
        gateway_policy::validate(&p.spec, &mut Reporter::new(&p.meta.id, out));
        embedded_security(p, out);
    }
    for route in &config.http_routes {
        gateway_api::http_route(&route.spec, &mut Reporter::new(&route.meta.id, out), &mut regexes);
    }
    for p in &config.peer_authentications {
        security::validate_peer_authentication(&p.spec, &mut Reporter::new(&p.meta.id, out));
    }
    for p in &config.request_authentications {
        security::validate_request_authentication(&p.meta, &p.spec, &mut Reporter::new(&p.meta.id, out));
    }
    regexes
}

/// Istio `ValidateDuration`: at least 1ms, whole milliseconds. Returns the duration when valid.
fn check_duration(r: &mut Reporter<'_>, path: &dyn Display, value: &str) -> Option<Duration> {
    match Duration::parse(value) {
        Err(e) => {
            r.error(Code::Duration, path, e);
            None
        }
        Ok(d) if d < Duration::from_millis(1) => {
            r.error(Code::Duration, path, "duration must be greater than 1ms");
            None
        }
        Ok(d) if d.finer_than_millis() => {
            r.error(Code::Duration, path, "only durations to ms precision are supported");
            None
        }
        Ok(d) => Some(d),
    }
}

/// A duration that may be zero (connection-pool timeouts, where `0s` disables).
fn check_duration_or_zero(r: &mut Reporter<'_>, path: &dyn Display, value: &str) {
    match Duration::parse(value) {
        Err(e) => {
            r.error(Code::Duration, path, e);
        }
        Ok(d) if d.is_zero() => {}
        Ok(_) => {
            check_duration(r, path, value);
        }
    }
}

/// Istio `validateExportTo`.
fn check_export_to(r: &mut Reporter<'_>, path: &str, namespace: &str, export_to: &[String], service_entry: bool) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, e) in export_to.iter().enumerate() {
        let key = if e == "." { namespace } else { e.as_str() };
        let at = format!("{path}[{i}]");
        if seen.contains(&key) {
            let msg = if key != e {
                format!("duplicate entries in exportTo: . and current namespace {namespace}")
            } else {
                format!("duplicate entries in exportTo for entry {e}")
            };
            r.error(Code::ExportTo, at, msg);
            continue;
        }
        let valid = matches!(key, "*" | ".") || (e == "~" && service_entry) || names::is_dns1123_label(key);
        if valid {
            seen.push(key);
        } else if e == "~" {
            r.error(Code::ExportTo, at, "exportTo ~ (none) is not allowed for Istio configuration objects");
        } else {
            r.error(Code::ExportTo, at, "only .,*, or a valid DNS 1123 label is allowed as exportTo entry");
        }
    }
    if seen.contains(&"*") && export_to.len() > 1 {
        r.error(Code::ExportTo, path, "cannot have both public (*) and non-public exportTo values for a resource");
    }
    if seen.contains(&"~") && export_to.len() > 1 {
        r.error(Code::ExportTo, path, "cannot export service entry to no one (~) and someone");
    }
}

/// Validates a label map (selectors, endpoint labels).
fn check_labels(r: &mut Reporter<'_>, path: &dyn Display, labels: &std::collections::BTreeMap<String, String>) {
    if let Err(e) = names::validate_labels(labels) {
        r.error(Code::Name, path, e);
    }
}

/// Istio `validateWorkloadSelector` (and `ValidateAlphaWorkloadSelector`, the same for
/// ServiceEntry's `labels`): no empty keys, no `*`, and `without_labels` as a warning for a
/// selector without labels. `at` is the selector, `field` its labels (`matchLabels` or `labels`).
/// True when there were errors.
fn check_workload_selector(
    labels: &std::collections::BTreeMap<String, String>,
    (at, field): (&str, &str),
    code: Code,
    without_labels: &str,
    r: &mut Reporter<'_>,
) -> bool {
    if labels.is_empty() {
        r.warn(code, at, without_labels);
    }
    let mut found = false;
    for (k, v) in labels {
        let pair = format!("{k}={v}");
        if k.is_empty() {
            r.error(code, format!("{at}.{field}"), format!("empty key is not supported in selector: {pair:?}"));
            found = true;
        }
        if k.contains('*') || v.contains('*') {
            r.error(code, format!("{at}.{field}"), format!("wildcard is not supported in selector: {pair:?}"));
            found = true;
        }
    }
    found
}

/// Istio's warning for a selector without labels.
const WITHOUT_LABELS: &str = "workload selector specified without labels";

/// A `GatewayPolicy`'s `authorization` and `requestAuthentication` are validated as the Istio
/// kinds they embed, with paths under their field; they may not carry their own scope.
fn embedded_security(p: &crate::config::Resource<crate::raw::GatewayPolicy>, out: &mut Diagnostics) {
    let mut found = Diagnostics::default();
    if let Some(a) = &p.spec.authorization {
        let mut r = Reporter::new(&p.meta.id, &mut found);
        security::validate_authorization_policy(&p.meta, a, &mut r);
        if a.selector.is_some() || a.target_ref.is_some() || !a.target_refs.is_empty() {
            r.error(
                Code::Policy,
                "spec",
                "the GatewayPolicy's selector and targetRefs decide where it applies; remove them here",
            );
        }
        if a.action == crate::raw::Action::Custom {
            r.error(
                Code::Unsupported,
                "spec.action",
                "CUSTOM is not available in a GatewayPolicy; use an AuthorizationPolicy",
            );
        }
        prefix(&mut found, "spec.authorization");
        out.0.append(&mut found.0);
    }
    if let Some(ra) = &p.spec.request_authentication {
        let mut r = Reporter::new(&p.meta.id, &mut found);
        security::validate_request_authentication(&p.meta, ra, &mut r);
        if ra.selector.is_some() || ra.target_ref.is_some() || !ra.target_refs.is_empty() {
            r.error(
                Code::Policy,
                "spec",
                "the GatewayPolicy's selector and targetRefs decide where it applies; remove them here",
            );
        }
        prefix(&mut found, "spec.requestAuthentication");
        out.0.append(&mut found.0);
    }
}

/// Moves the paths of `found` (`spec...`) under `field`.
fn prefix(found: &mut Diagnostics, field: &str) {
    for d in &mut found.0 {
        if let crate::diagnostic::Location::Resource { path, .. } = &mut d.location {
            if let Some(rest) = path.strip_prefix("spec") {
                *path = format!("{field}{rest}");
            }
        }
    }
}
