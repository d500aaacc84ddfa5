//! Authorization, the firewall: Istio `AuthorizationPolicy` (Envoy's RBAC filters as Istio
//! generates them, istio.io/latest/docs/concepts/security/#authorization-policy-precedence).
//!
//! Evaluation order: `CUSTOM`, then `DENY` (any matching rule denies), then `ALLOW` (when any
//! `ALLOW` policy applies, a request that matches none is denied; when none applies, it is
//! allowed). `AUDIT` never changes the decision. Dry-run policies (`istio.io/dry-run: "true"`)
//! are evaluated and logged, never enforced. A policy without rules matches nothing; a rule
//! without fields matches everything.

mod build;
pub mod matchers;
mod rule;

use std::net::IpAddr;

use pingora_http::RequestHeader;

use crate::{Context, Decision, LocalReply};
use rule::Rule;

/// One policy, compiled.
#[derive(Debug, Clone)]
struct Compiled {
    /// `namespace/name`.
    name: String,
    dry_run: bool,
    rules: Vec<Rule>,
}

impl Compiled {
    /// The index of the first matching rule.
    fn matching_rule(&self, req: &RequestHeader, cx: &Context) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(req, cx))
    }
}

/// Every bound `AuthorizationPolicy`, grouped by action in Istio's evaluation order.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    deny: Vec<Compiled>,
    allow: Vec<Compiled>,
    audit: Vec<Compiled>,
}

impl Authorizer {
    /// Decides on a request.
    pub fn decide(&self, req: &RequestHeader, cx: &Context) -> Decision {
        for p in &self.audit {
            if let Some(rule) = p.matching_rule(req, cx) {
                tracing::info!(policy = %p.name, rule, "AUDIT policy matched");
            }
        }
        for p in &self.deny {
            if let Some(rule) = p.matching_rule(req, cx) {
                if p.dry_run {
                    tracing::info!(policy = %p.name, rule, "dry-run DENY policy would deny the request");
                    continue;
                }
                return Decision::Deny(LocalReply::rbac_denied(format!(
                    "rbac_access_denied_matched_policy[ns[{}]-policy[{}]-rule[{rule}]]",
                    namespace(&p.name),
                    policy_name(&p.name)
                )));
            }
        }
        let (enforced, dry): (Vec<&Compiled>, Vec<&Compiled>) = self.allow.iter().partition(|p| !p.dry_run);
        if !dry.is_empty() {
            let allowed = dry.iter().any(|p| p.matching_rule(req, cx).is_some());
            tracing::info!(allowed, "dry-run ALLOW policies evaluated");
        }
        if enforced.is_empty() || enforced.iter().any(|p| p.matching_rule(req, cx).is_some()) {
            Decision::Allow
        } else {
            Decision::Deny(LocalReply::rbac_denied("rbac_access_denied_matched_policy[none]"))
        }
    }

    /// Decides on a connection before it is read (`cx` holds its addresses and port only):
    /// denied when an enforced DENY rule that depends only on those matches.
    pub fn connection(&self, cx: &Context) -> Decision {
        for p in self.deny.iter().filter(|p| !p.dry_run) {
            if let Some(rule) = p.rules.iter().position(|r| r.on_connection(cx) == Some(true)) {
                return Decision::Deny(LocalReply::rbac_denied(format!(
                    "rbac_access_denied_matched_policy[ns[{}]-policy[{}]-rule[{rule}]]",
                    namespace(&p.name),
                    policy_name(&p.name)
                )));
            }
        }
        Decision::Allow
    }

    /// True when some enforced DENY rule can refuse connections on accept.
    pub fn denies_connections(&self) -> bool {
        let probe = Context::new(IpAddr::from([0, 0, 0, 0]), 0);
        self.deny.iter().filter(|p| !p.dry_run).any(|p| p.rules.iter().any(|r| r.on_connection(&probe).is_some()))
    }
}

fn namespace(name: &str) -> &str {
    name.split_once('/').map_or("", |(ns, _)| ns)
}

fn policy_name(name: &str) -> &str {
    name.split_once('/').map_or(name, |(_, n)| n)
}
