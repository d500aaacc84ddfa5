//! Which `RequestAuthentication` and `AuthorizationPolicy` resources apply to this workload
//! (istio.io/latest/docs/reference/config/type/workload-selector/, and `targetRefs` in
//! istio.io/latest/docs/reference/config/security/authorization-policy/):
//! - with `targetRef`/`targetRefs`: a Kubernetes Gateway API `Gateway` in the policy's namespace
//!   whose name is this workload's `gateway.networking.k8s.io/gateway-name` label;
//! - otherwise a policy in this workload's namespace, or in the root namespace (mesh-wide), whose
//!   `selector.matchLabels` are all among this workload's labels (no selector: every workload).

use super::clusters::Registry;
use super::Selection;
use crate::config::{Config, Meta, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::raw::{Action, LabelSelector, PolicyTargetReference};
use crate::table::{BoundPolicy, ExtAuthz, Security};

/// The label Istio's automated deployment puts on the pods of a Gateway API `Gateway`.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The policies that apply, in Istio's order; a note for each that does not.
pub(super) fn bind(config: &Config, sel: &Selection, registry: &mut Registry<'_>, out: &mut Diagnostics) -> Security {
    let authorization_policies = bound(&config.authorization_policies, sel, out, |s| {
        (s.selector.as_ref(), targets(&s.target_ref, &s.target_refs))
    });
    let mut ext_authz = Vec::new();
    for (p, r) in config.authorization_policies.iter().filter_map(|r| {
        let bound = authorization_policies.iter().find(|b| b.name == r.meta.key())?;
        Some((bound, r))
    }) {
        let Some(provider) = p.spec.provider.as_ref().filter(|_| p.spec.action == Action::Custom) else { continue };
        if ext_authz.iter().any(|e: &ExtAuthz| e.name == provider.name) {
            continue;
        }
        let mut rep = Reporter::new(&r.meta.id, out);
        if let Some(e) = ext_authz_provider(&provider.name, sel, registry, &mut rep) {
            ext_authz.push(e);
        }
    }
    Security {
        request_authentications: bound(&config.request_authentications, sel, out, |s| {
            (s.selector.as_ref(), targets(&s.target_ref, &s.target_refs))
        }),
        authorization_policies,
        ext_authz,
    }
}

/// Resolves a `CUSTOM` policy's provider: an `envoyExtAuthzHttp` of MeshConfig whose service a
/// ServiceEntry defines. Anything else is an error: the policy cannot be enforced.
fn ext_authz_provider(
    name: &str,
    sel: &Selection,
    registry: &mut Registry<'_>,
    r: &mut Reporter<'_>,
) -> Option<ExtAuthz> {
    let Some(p) = sel.extension_providers.iter().find(|p| p.name == name) else {
        r.error(
            Code::Policy,
            "spec.provider.name",
            format!("provider {name:?} is not defined in MeshConfig extensionProviders"),
        )
        .hint = Some("define it under extensionProviders in the --mesh-config file".into());
        return None;
    };
    let Some(http) = &p.envoy_ext_authz_http else {
        let kinds: Vec<&str> = p.other.keys().map(String::as_str).collect();
        r.error(
            Code::Unsupported,
            "spec.provider.name",
            format!("provider {name:?} is {}; only envoyExtAuthzHttp authorizers are implemented", kinds.join(", ")),
        );
        return None;
    };
    if http.include_request_body_in_check.is_some() || !http.headers_to_downstream_on_allow.is_empty() {
        r.error(
            Code::Unsupported,
            "spec.provider.name",
            format!("provider {name:?}: includeRequestBodyInCheck and headersToDownstreamOnAllow are not implemented"),
        );
        return None;
    }
    let timeout = match http.timeout.as_deref().map(crate::model::Duration::parse) {
        None => std::time::Duration::from_secs(600),
        Some(Ok(d)) => d.to_std(),
        Some(Err(e)) => {
            r.error(Code::Duration, "spec.provider.name", format!("provider {name:?} timeout: {e}"));
            return None;
        }
    };
    let port = u16::try_from(http.port).ok().filter(|p| *p > 0);
    let Some(port) = port else {
        r.error(
            Code::Port,
            "spec.provider.name",
            format!("provider {name:?}: port {} is not a port number", http.port),
        );
        return None;
    };
    let dest = crate::raw::Destination {
        host: http.service.clone(),
        port: Some(crate::raw::PortSelector { number: u32::from(port) }),
        ..Default::default()
    };
    let host = crate::model::host::expand_short_name(&http.service, &sel.namespace, &sel.domain);
    let cluster = registry.cluster(&dest, &host, port, &"spec.provider.name", r);
    Some(ExtAuthz { name: name.to_string(), cluster, timeout, provider: http.clone() })
}

fn targets<'a>(
    one: &'a Option<PolicyTargetReference>,
    many: &'a [PolicyTargetReference],
) -> Vec<&'a PolicyTargetReference> {
    one.iter().chain(many).collect()
}

fn bound<T: Clone>(
    list: &[Resource<T>],
    sel: &Selection,
    out: &mut Diagnostics,
    scope: impl Fn(&T) -> (Option<&LabelSelector>, Vec<&PolicyTargetReference>),
) -> Vec<BoundPolicy<T>> {
    let mut result = Vec::new();
    for r in list {
        let (selector, targets) = scope(&r.spec);
        match applies(&r.meta, selector, &targets, sel) {
            Some(bound_by) => result.push(BoundPolicy {
                name: r.meta.key(),
                bound_by,
                dry_run: r
                    .meta
                    .annotations
                    .get("istio.io/dry-run")
                    .is_some_and(|v| crate::validate::parse_bool(v) == Some(true)),
                spec: r.spec.clone(),
            }),
            None => {
                Reporter::new(&r.meta.id, out).warn(Code::Skipped, "", "does not apply to this workload; skipped");
            }
        }
    }
    result
}

/// Why the policy applies, or `None`.
fn applies(
    meta: &Meta,
    selector: Option<&LabelSelector>,
    targets: &[&PolicyTargetReference],
    sel: &Selection,
) -> Option<&'static str> {
    let ns = meta.namespace();
    if !targets.is_empty() {
        let gateway = sel.labels.get(GATEWAY_NAME_LABEL)?;
        let hit = targets.iter().any(|t| {
            t.group == "gateway.networking.k8s.io"
                && t.kind == "Gateway"
                && &t.name == gateway
                && (t.namespace.is_empty() || t.namespace == ns)
        });
        return (hit && ns == sel.namespace).then_some("targetRef");
    }
    let in_scope = ns == sel.namespace || ns == sel.root_namespace;
    let selected = selector.is_none_or(|s| s.match_labels.iter().all(|(k, v)| sel.labels.get(k) == Some(v)));
    if !(in_scope && selected) {
        return None;
    }
    Some(match (selector.is_some(), ns == sel.namespace) {
        (true, _) => "selector",
        (false, true) => "namespace",
        (false, false) => "root namespace",
    })
}
