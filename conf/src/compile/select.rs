//! Which Gateways select this workload, and which VirtualServices bind to each of them.

use std::collections::HashSet;

use super::{delegate, Selection};
use crate::config::{Config, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter, Severity};
use crate::model::host::expand_short_name;
use crate::raw::{Gateway, HttpRoute, VirtualService};

/// Istio's reserved gateway name for sidecars.
pub(crate) const MESH: &str = "mesh";

/// A Gateway that selects this workload.
pub(crate) struct SelectedGateway<'a> {
    /// `namespace/name`.
    pub key: String,
    /// The resource.
    pub res: &'a Resource<Gateway>,
}

/// Istio `mergeGateways` selection: `selector ⊆ labels` (a missing selector selects every workload),
/// in creation order.
pub(crate) fn gateways<'a>(config: &'a Config, sel: &Selection, out: &mut Diagnostics) -> Vec<SelectedGateway<'a>> {
    let mut selected = Vec::new();
    for gw in &config.gateways {
        let selector = gw.spec.selector.as_ref();
        let applies = selector.is_none_or(|s| s.iter().all(|(k, v)| sel.labels.get(k) == Some(v)));
        if applies {
            selected.push(SelectedGateway { key: gw.meta.key(), res: gw });
        } else {
            let wanted = selector
                .map(|s| s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            Reporter::new(&gw.meta.id, out)
                .warn(
                    Code::Unselected,
                    "spec.selector",
                    format!(
                        "selector {wanted} does not match this workload's labels {}; the Gateway is ignored",
                        sel.labels_text()
                    ),
                )
                .hint =
                Some("run with --labels matching the selector if this Gateway is meant for this workload".into());
        }
    }
    if selected.is_empty() {
        out.global(
            Severity::Warning,
            Code::NoGateway,
            format!("labels {}", sel.labels_text()),
            "no Gateway selects this workload; nothing listens on data ports".into(),
        )
        .hint = Some("set --labels to the selector of your Gateway".into());
    }
    selected
}

/// Istio `resolveGatewayName`: `name` → `<vs-namespace>/name`, `./name` → `<vs-namespace>/name`,
/// legacy `name.ns.svc.cluster.local` → `ns/name`; `mesh` stays.
pub(crate) fn resolve_gateway_name(name: &str, vs_namespace: &str) -> String {
    if name == MESH {
        return name.to_string();
    }
    match name.split_once('/') {
        Some((".", gw)) => format!("{vs_namespace}/{gw}"),
        Some(_) => name.to_string(),
        None => match name.split_once('.') {
            None => format!("{vs_namespace}/{name}"),
            Some((gw, rest)) => format!("{}/{gw}", rest.split('.').next().unwrap_or(rest)),
        },
    }
}

/// A VirtualService as the gateway sees it: gateways resolved, hosts expanded, delegates merged.
pub(crate) struct BoundVs<'a> {
    /// The resource.
    pub res: &'a Resource<VirtualService>,
    /// `namespace/name`.
    pub key: String,
    /// Resolved `spec.gateways`.
    pub gateways: Vec<String>,
    /// Hosts with short names expanded.
    pub hosts: Vec<String>,
    /// HTTP rules with delegates merged in.
    pub http: Vec<Rule<'a>>,
    /// Istio's visibility class for this workload's namespace: 0 private, 1 exported, 2 public.
    class: u8,
}

/// One HTTP rule and the VirtualService it was written in (a delegate's rules keep theirs).
pub(crate) struct Rule<'a> {
    /// The rule as written, or merged with its root rule for delegates.
    pub route: RuleRoute<'a>,
    /// The VirtualService that declares it: short names expand, and problems are reported, there.
    pub owner: &'a Resource<VirtualService>,
    /// Its index in the owner's `spec.http`.
    pub index: usize,
    /// For a delegate's rule, the index of the root rule that delegated.
    pub root: Option<usize>,
}

/// A rule's `HttpRoute`: borrowed from its VirtualService, or made by merging a delegate's rule
/// with its root (boxed: a `Cow` would keep a whole `HttpRoute` inline for every rule).
pub(crate) enum RuleRoute<'a> {
    /// As written.
    Borrowed(&'a HttpRoute),
    /// Merged with the root rule.
    Merged(Box<HttpRoute>),
}

impl std::ops::Deref for RuleRoute<'_> {
    type Target = HttpRoute;
    fn deref(&self) -> &HttpRoute {
        match self {
            RuleRoute::Borrowed(r) => r,
            RuleRoute::Merged(r) => r,
        }
    }
}

/// Every VirtualService that can bind to a gateway, in Istio's order.
pub(crate) struct BoundServices<'a> {
    list: Vec<BoundVs<'a>>,
}

impl<'a> BoundServices<'a> {
    /// Resolves every VirtualService with hosts; warns about mesh-only ones and unknown gateways.
    pub fn new(config: &'a Config, sel: &Selection, out: &mut Diagnostics) -> Self {
        let known: HashSet<String> = config.gateways.iter().map(|g| g.meta.key()).collect();
        let mut list = Vec::new();
        for vs in config.virtual_services.iter().filter(|vs| !vs.spec.hosts.is_empty()) {
            let ns = vs.meta.namespace();
            let gateways: Vec<String> = vs.spec.gateways.iter().map(|g| resolve_gateway_name(g, ns)).collect();
            report_binding(vs, &gateways, &known, out);
            let Some(class) = visibility(&vs.spec.export_to, ns, &sel.namespace) else {
                continue;
            };
            let hosts = vs.spec.hosts.iter().map(|h| expand_short_name(h, ns, &sel.domain)).collect();
            let http = delegate::merge(vs, config, out);
            list.push(BoundVs { res: vs, key: vs.meta.key(), gateways, hosts, http, class });
        }
        BoundServices { list }
    }

    /// Istio `VirtualServicesForGateway`: private, then exported, then public; creation order within.
    pub fn for_gateway(&self, gateway: &str) -> Vec<&BoundVs<'a>> {
        let mut out: Vec<&BoundVs<'a>> =
            self.list.iter().filter(|vs| vs.gateways.iter().any(|g| g == gateway)).collect();
        out.sort_by_key(|vs| vs.class);
        out
    }
}

fn report_binding(vs: &Resource<VirtualService>, gateways: &[String], known: &HashSet<String>, out: &mut Diagnostics) {
    let mut r = Reporter::new(&vs.meta.id, out);
    if gateways.iter().all(|g| g == MESH) {
        r.warn(
            Code::MeshOnly,
            "spec.gateways",
            "applies to the mesh only (spec.gateways is empty or only mesh); no gateway uses its rules",
        )
        .hint = Some("list the Gateway in spec.gateways, as namespace/name".into());
        return;
    }
    for (i, g) in gateways.iter().enumerate().filter(|(_, g)| *g != MESH && !known.contains(*g)) {
        r.warn(
            Code::UnknownGateway,
            format!("spec.gateways[{i}]"),
            format!("Gateway {g} is not in the configuration"),
        )
        .hint = Some("check the name and namespace; a short name refers to the VirtualService's namespace".into());
    }
}

/// Istio's VirtualService visibility for a proxy namespace; `None` = not visible.
fn visibility(export_to: &[String], vs_ns: &str, proxy_ns: &str) -> Option<u8> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return Some(2);
    }
    if export_to.iter().any(|e| e == "~") {
        return None;
    }
    let private = vs_ns == proxy_ns && export_to.iter().any(|e| e == "." || e == vs_ns);
    if private {
        Some(0)
    } else if export_to.iter().any(|e| e == proxy_ns) {
        Some(1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_names_resolve_like_istio() {
        assert_eq!(resolve_gateway_name("gw", "ns1"), "ns1/gw");
        assert_eq!(resolve_gateway_name("./gw", "ns1"), "ns1/gw");
        assert_eq!(resolve_gateway_name("other/gw", "ns1"), "other/gw");
        assert_eq!(resolve_gateway_name("gw.istio-system.svc.cluster.local", "ns1"), "istio-system/gw");
        assert_eq!(resolve_gateway_name("mesh", "ns1"), "mesh");
    }

    #[test]
    fn export_to_orders_private_exported_public() {
        assert_eq!(visibility(&[], "a", "gw"), Some(2));
        assert_eq!(visibility(&[".".into()], "gw", "gw"), Some(0));
        assert_eq!(visibility(&[".".into()], "a", "gw"), None);
        assert_eq!(visibility(&["gw".into()], "a", "gw"), Some(1));
        assert_eq!(visibility(&["other".into()], "a", "gw"), None);
    }
}
