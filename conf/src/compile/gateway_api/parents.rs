//! Which listeners a route attaches to (istio/istio `conversion.go` `extractParentReferenceInfo`,
//! `referenceAllowed`, `hostnameAllowedByIsolation`; `conditions.go` `createRouteStatus`).

use super::listeners::Parent;
use super::{fails, holds, GROUP};
use crate::config::Meta;
use crate::model::host::{matches, subset_of};
use crate::raw::gateway_api::ParentReference;
use crate::table::Condition;

/// Reports the status of a route of `kind` for each of its `attachments`: `Accepted` as the
/// attachment says, `ResolvedRefs` from `error` (the problem the status shows, if any).
pub(super) fn report_route(
    kind: &str,
    meta: &Meta,
    attachments: &[Attachment],
    error: Option<&(&'static str, String)>,
    t: &mut super::Translated,
    out: &mut crate::diagnostic::Diagnostics,
) {
    let resolved = match error {
        Some((reason, message)) => fails("ResolvedRefs", reason, message.clone()),
        None => holds("ResolvedRefs", "ResolvedRefs", "All references resolved"),
    };
    for a in attachments {
        let status = crate::table::ApiStatus {
            kind: kind.into(),
            name: meta.key(),
            scope: a.scope.clone(),
            conditions: vec![a.accepted.clone(), resolved.clone()],
            attached_routes: None,
        };
        super::report(status, &meta.id, "spec.parentRefs", t, out);
    }
}

/// One parentRef of a route that names the Gateway this workload runs.
pub(super) struct Attachment {
    /// The parentRef as `namespace/name[/section][:port]` (the status entry's scope).
    pub scope: String,
    /// The listeners it attaches to (indices into the parents).
    pub listeners: Vec<usize>,
    /// The `Accepted` condition.
    pub accepted: Condition,
}

/// The parentRefs of a route of `kind` in `meta`'s namespace with `hostnames` that name the
/// Gateway of `parents` (others belong to other workloads or controllers: no status from here).
pub(super) fn attach(
    refs: &[ParentReference],
    kind: &str,
    meta: &Meta,
    hostnames: &[String],
    parents: &[Parent],
) -> Vec<Attachment> {
    let Some(first) = parents.first() else { return Vec::new() };
    let route_ns = meta.namespace();
    let mut out = Vec::new();
    for r in refs {
        let group = r.group.as_deref().unwrap_or(GROUP);
        let ns = r.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(route_ns);
        if group != GROUP || r.kind.as_deref().unwrap_or("Gateway") != "Gateway" {
            continue;
        }
        if ns != first.gateway_namespace || r.name != first.gateway_name {
            continue;
        }
        let mut listeners = Vec::new();
        let mut denied: Vec<(u8, &'static str, String)> = Vec::new();
        for (i, p) in parents.iter().enumerate() {
            match allowed(r, kind, route_ns, hostnames, p) {
                Ok(()) => listeners.push(i),
                Err(d) => denied.push(d),
            }
        }
        let accepted = if listeners.is_empty() {
            let best = denied.iter().map(|d| d.0).max().unwrap_or(0);
            let same: Vec<&(u8, &str, String)> = denied.iter().filter(|d| d.0 == best).collect();
            let reason = same.first().map_or("NoMatchingParent", |d| d.1);
            let message = same.iter().map(|d| d.2.as_str()).collect::<Vec<_>>().join("; ");
            fails("Accepted", reason, message)
        } else if listeners.len() > 1 {
            holds("Accepted", "Accepted", &format!("Route was valid, bound to {} parents", listeners.len()))
        } else {
            holds("Accepted", "Accepted", "Route was valid")
        };
        out.push(Attachment { scope: scope(r, ns), listeners, accepted });
    }
    out
}

fn scope(r: &ParentReference, ns: &str) -> String {
    let section = r.section_name.as_deref().map(|s| format!("/{s}")).unwrap_or_default();
    let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("parent {ns}/{}{section}{port}", r.name)
}

/// Istio `referenceAllowed`, in its order; `Err` is (rank, reason, message): a better-ranked
/// refusal is reported when no listener accepts.
fn allowed(
    r: &ParentReference,
    kind: &str,
    route_ns: &str,
    hostnames: &[String],
    p: &Parent,
) -> Result<(), (u8, &'static str, String)> {
    if let Some(port) = r.port.filter(|port| *port != p.port) {
        return Err((1, "NoMatchingParent", format!("port {port} not found")));
    }
    if let Some(section) = r.section_name.as_deref().filter(|s| *s != p.listener) {
        return Err((1, "NoMatchingParent", format!("sectionName {section:?} not found")));
    }
    let any = ["*".to_string()];
    let hosts = if hostnames.is_empty() { &any[..] } else { hostnames };
    let listener_host = p.hostname.as_deref().unwrap_or("*");
    let namespace_ok = p.namespaces.iter().any(|n| n == "*" || n == route_ns);
    if !hosts.iter().any(|h| matches(listener_host, h)) {
        return Err((
            2,
            "NoMatchingListenerHostname",
            format!("no hostnames matched parent hostname {listener_host:?}"),
        ));
    }
    if !namespace_ok {
        return Err((3, "NotAllowedByListeners", format!("hostnames matched parent hostname {listener_host:?}, but namespace {route_ns:?} is not allowed by the parent")));
    }
    if !p.kinds.contains(&kind) {
        return Err((3, "NotAllowedByListeners", format!("kind {GROUP}/v1/{kind} is not allowed")));
    }
    Ok(())
}

/// Istio `hostnameAllowedByIsolation`: a route host on a wildcard (or host-less) listener is left
/// to another listener of the same port and protocol whose hostname covers it more exactly.
pub(super) fn isolated(p: &Parent, route_host: &str) -> bool {
    let ours = p.hostname.as_deref().unwrap_or("");
    if !ours.is_empty() && !ours.starts_with('*') {
        return true;
    }
    if !ours.is_empty() && !matches(route_host, ours) {
        return false;
    }
    !p.others.iter().flatten().any(|other| ours.len() <= other.len() && subset_of(route_host, other))
}
