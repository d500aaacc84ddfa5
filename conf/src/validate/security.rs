//! `AuthorizationPolicy` and `RequestAuthentication` validation: Istio's rules and messages
//! (istio/istio `pkg/config/validation/validation.go` `ValidateAuthorizationPolicy`,
//! `ValidateRequestAuthentication`, `validateJwtRule`; `pkg/config/security/security.go`
//! `ValidateAttribute`, `CheckValidPathTemplate`), plus Pylon's fail-closed refusals of what it
//! cannot enforce exactly (an ext_authz `CUSTOM` action, Envoy-specific condition keys).

use crate::config::Meta;
use crate::diagnostic::{Code, Reporter};
use crate::raw::{
    Action, AuthorizationPolicy, LabelSelector, PeerAuthentication, PolicyTargetReference, RequestAuthentication,
};

mod rules;

/// Istio `checkDryRunAnnotation`: only ALLOW and DENY policies may be dry-run.
fn dry_run(meta: &Meta, action: Option<Action>, r: &mut Reporter<'_>) {
    const KEY: &str = "istio.io/dry-run";
    let Some(value) = meta.annotations.get(KEY) else { return };
    let at = format!("metadata.annotations[{KEY:?}]");
    let key = meta.key();
    match action {
        None => {
            r.error(Code::Policy, at, format!("{key} has unsupported annotation {KEY}, please remove the annotation"));
        }
        Some(a @ (Action::Custom | Action::Audit)) => {
            r.error(
                Code::Policy,
                at,
                format!(
                    "the annotation {KEY} currently only supports action ALLOW/DENY, found action {} in {key}",
                    action_name(a)
                ),
            );
        }
        Some(_) if parse_bool(value).is_none() => {
            r.error(
                Code::Policy,
                at,
                format!("{key} has annotation {KEY} with invalid value ({value}): not a boolean"),
            );
        }
        Some(_) => {}
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "AUDIT",
        Action::Custom => "CUSTOM",
    }
}

/// Istio `validateOneOfSelectorType`, `validateWorkloadSelector`, `validatePolicyTargetReference`.
fn scope(
    selector: Option<&LabelSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    r: &mut Reporter<'_>,
) {
    let set =
        usize::from(selector.is_some()) + usize::from(target_ref.is_some()) + usize::from(!target_refs.is_empty());
    if set > 1 {
        r.error(Code::Policy, "spec", "only one of targetRefs or workloadSelector can be set");
    }
    if let Some(s) = selector {
        let at = ("spec.selector", "matchLabels");
        super::check_workload_selector(&s.match_labels, at, Code::Policy, super::WITHOUT_LABELS, r);
    }
    let named = target_ref.map(|t| ("spec.targetRef".to_string(), t));
    let many = target_refs.iter().enumerate().map(|(i, t)| (format!("spec.targetRefs[{i}]"), t));
    for (at, t) in named.into_iter().chain(many) {
        if t.name.is_empty() {
            r.error(Code::Policy, format!("{at}.name"), "targetRef name must be set");
        }
        if !t.namespace.is_empty() {
            r.error(
                Code::Policy,
                format!("{at}.namespace"),
                "targetRef namespace must not be set; cross namespace referencing is not supported",
            );
        }
        let group = if t.group.is_empty() { "core" } else { t.group.as_str() };
        let known = matches!(
            (group, t.kind.as_str()),
            ("gateway.networking.k8s.io", "Gateway" | "GatewayClass")
                | ("core", "Service")
                | ("networking.istio.io", "ServiceEntry")
        );
        if !known {
            r.error(
                Code::Policy,
                format!("{at}.kind"),
                format!(
                    "targetRef must be to one of [core/Service networking.istio.io/ServiceEntry \
                     gateway.networking.k8s.io/Gateway gateway.networking.k8s.io/GatewayClass] but was {}/{}",
                    t.group, t.kind
                ),
            );
        }
    }
}

pub(super) fn validate_authorization_policy(meta: &Meta, p: &AuthorizationPolicy, r: &mut Reporter<'_>) {
    dry_run(meta, Some(p.action), r);
    scope(p.selector.as_ref(), p.target_ref.as_ref(), &p.target_refs, r);
    let no_rules = p.rules.is_empty();
    match p.action {
        Action::Custom if no_rules => {
            r.error(
                Code::Policy,
                "spec.rules",
                "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
            );
        }
        Action::Custom if p.provider.as_ref().is_none_or(|pr| pr.name.is_empty()) => {
            r.error(Code::Policy, "spec.provider.name", "`provider.name` must not be empty");
        }
        Action::Custom => {}
        a if p.provider.is_some() => {
            r.error(
                Code::Policy,
                "spec.provider",
                format!("`provider` must not be with non CUSTOM action, found {}", action_name(a)),
            );
        }
        Action::Deny if no_rules => {
            r.error(
                Code::Policy,
                "spec.rules",
                "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
            );
        }
        _ => {}
    }
    for (i, rule) in p.rules.iter().enumerate() {
        rules::rule(p.action, rule, i, r);
    }
}

pub(super) fn validate_request_authentication(meta: &Meta, p: &RequestAuthentication, r: &mut Reporter<'_>) {
    dry_run(meta, None, r);
    scope(p.selector.as_ref(), p.target_ref.as_ref(), &p.target_refs, r);
    for (i, rule) in p.jwt_rules.iter().enumerate() {
        rules::jwt_rule(rule, &format!("spec.jwtRules[{i}]"), r);
    }
}

/// Istio `ValidatePeerAuthentication`, in its order.
pub(super) fn validate_peer_authentication(p: &PeerAuthentication, r: &mut Reporter<'_>) {
    let no_selector = p.selector.as_ref().is_none_or(|s| s.match_labels.is_empty());
    let ports = p.port_level_mtls.as_ref();
    if no_selector && ports.is_some_and(|m| !m.is_empty()) {
        r.error(Code::Policy, "spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS");
    }
    if ports.is_some_and(std::collections::BTreeMap::is_empty) {
        r.error(Code::Policy, "spec.portLevelMtls", "port level mTLS, if defined, must have at least one element");
    }
    for port in ports.into_iter().flat_map(|m| m.keys()) {
        if !(1..=65535).contains(port) {
            r.error(Code::Policy, format!("spec.portLevelMtls[{port}]"), "port must be in range 1..65535");
        }
    }
    scope(p.selector.as_ref(), None, &[], r);
}
