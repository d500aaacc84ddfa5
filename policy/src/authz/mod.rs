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
use rule::{HttpOnly, Rule};

/// One policy, compiled.
#[derive(Debug, Clone)]
struct Compiled {
    /// `namespace/name`.
    name: String,
    dry_run: bool,
    rules: Vec<Rule>,
}

impl Compiled {
    /// Envoy's RBAC denial naming this policy's rule (`response_code_details`).
    fn denied(&self, rule: usize) -> Decision {
        Decision::Deny(LocalReply::rbac_denied(format!(
            "rbac_access_denied_matched_policy[ns[{}]-policy[{}]-rule[{rule}]]",
            namespace(&self.name),
            policy_name(&self.name)
        )))
    }

    /// The index of the first matching rule.
    fn matching_rule(&self, req: &RequestHeader, cx: &Context) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(req, cx))
    }
}

/// Every bound `AuthorizationPolicy`, grouped by action in Istio's evaluation order.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    /// `CUSTOM` policies with the index of their provider.
    custom: Vec<(usize, Compiled)>,
    deny: Vec<Compiled>,
    allow: Vec<Compiled>,
    audit: Vec<Compiled>,
}

impl Authorizer {
    /// The provider to ask when a `CUSTOM` policy matches the request (Istio evaluates CUSTOM
    /// first, before authentication).
    pub fn custom(&self, req: &RequestHeader, cx: &Context) -> Option<usize> {
        self.custom.iter().find(|(_, p)| p.matching_rule(req, cx).is_some()).map(|(provider, _)| *provider)
    }

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
                return p.denied(rule);
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

    /// Decides on a TCP connection (a TCP server, a TLS passthrough or TLS-terminated TCP
    /// route), as Istio's network RBAC filter does: DENY rules without their HTTP-only fields,
    /// then ALLOW rules that have none. `cx` holds the addresses, port, SNI and peer identity.
    pub fn decide_l4(&self, cx: &Context) -> Decision {
        let req_free = |p: &Compiled, http: HttpOnly| p.rules.iter().position(|r| r.matches_l4(cx, http));
        // An HTTP authorizer cannot judge a TCP connection: one a CUSTOM rule covers is denied
        // (Pylon fails closed where Istio leaves the policy out of TCP filter chains).
        if let Some((_, p)) = self.custom.iter().find(|(_, p)| req_free(p, HttpOnly::Ignore).is_some()) {
            return p.denied(0);
        }
        for p in &self.audit {
            if let Some(rule) = req_free(p, HttpOnly::Ignore) {
                tracing::info!(policy = %p.name, rule, "AUDIT policy matched a connection");
            }
        }
        for p in &self.deny {
            if let Some(rule) = req_free(p, HttpOnly::Ignore) {
                if p.dry_run {
                    tracing::info!(policy = %p.name, rule, "dry-run DENY policy would deny the connection");
                    continue;
                }
                return p.denied(rule);
            }
        }
        let enforced: Vec<&Compiled> = self.allow.iter().filter(|p| !p.dry_run).collect();
        if enforced.is_empty() || enforced.iter().any(|p| req_free(p, HttpOnly::Fail).is_some()) {
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
                return p.denied(rule);
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
