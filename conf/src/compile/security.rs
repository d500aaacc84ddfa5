//! Which `RequestAuthentication` and `AuthorizationPolicy` resources apply to this workload
//! (istio.io/latest/docs/reference/config/type/workload-selector/, and `targetRefs` in
//! istio.io/latest/docs/reference/config/security/authorization-policy/):
//! - with `targetRef`/`targetRefs`: a Kubernetes Gateway API `Gateway` in the policy's namespace
//!   whose name is this workload's `gateway.networking.k8s.io/gateway-name` label;
//! - otherwise a policy in this workload's namespace, or in the root namespace (mesh-wide), whose
//!   `selector.matchLabels` are all among this workload's labels (no selector: every workload).

use super::Selection;
use crate::config::{Config, Meta, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::raw::{LabelSelector, PolicyTargetReference};
use crate::table::{BoundPolicy, Security};

/// The label Istio's automated deployment puts on the pods of a Gateway API `Gateway`.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The policies that apply, in Istio's order; a note for each that does not.
pub(super) fn bind(config: &Config, sel: &Selection, out: &mut Diagnostics) -> Security {
    Security {
        request_authentications: bound(&config.request_authentications, sel, out, |s| {
            (s.selector.as_ref(), targets(&s.target_ref, &s.target_refs))
        }),
        authorization_policies: bound(&config.authorization_policies, sel, out, |s| {
            (s.selector.as_ref(), targets(&s.target_ref, &s.target_refs))
        }),
    }
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
                dry_run: r.meta.annotations.get("istio.io/dry-run").is_some_and(|v| v == "true"),
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
