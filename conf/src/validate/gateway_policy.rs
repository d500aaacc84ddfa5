//! `GatewayPolicy` validation: what it targets and its modules' settings.

use crate::diagnostic::{Code, Reporter};
use crate::raw::GatewayPolicy;

pub(super) fn validate(p: &GatewayPolicy, r: &mut Reporter<'_>) {
    for (i, t) in p.target_refs.iter().enumerate() {
        let at = format!("spec.targetRefs[{i}]");
        if !t.group.is_empty() && t.group != "networking.istio.io" {
            r.error(Code::Policy, format!("{at}.group"), format!("group {:?} is not networking.istio.io", t.group));
        }
        if t.kind != "Gateway" && t.kind != "VirtualService" {
            r.error(Code::Policy, format!("{at}.kind"), format!("kind {:?} is not Gateway or VirtualService", t.kind));
        }
        if t.name.is_empty() {
            r.error(Code::Policy, format!("{at}.name"), "name must be set");
        }
    }
    if let Some(s) = &p.selector {
        if s.match_labels.is_empty() {
            r.warn(Code::Policy, "spec.selector", "workload selector specified without labels");
        }
    }
    match &p.rate_limit {
        None => {
            r.warn(Code::NoEffect, "spec", "no module is set (rateLimit); the policy has no effect");
        }
        Some(rl) => {
            if rl.requests == 0 {
                r.error(Code::Policy, "spec.rateLimit.requests", "requests must be at least 1");
            }
            if !matches!(rl.unit.as_str(), "second" | "minute" | "hour") {
                r.error(
                    Code::Policy,
                    "spec.rateLimit.unit",
                    format!("unit {:?} is not second, minute or hour", rl.unit),
                );
            }
            if rl.burst == Some(0) {
                r.error(Code::Policy, "spec.rateLimit.burst", "burst must be at least 1");
            }
            if !matches!(rl.key.as_str(), "" | "route" | "host" | "client") {
                r.error(Code::Policy, "spec.rateLimit.key", format!("key {:?} is not route, host or client", rl.key));
            }
            if rl.max_keys == Some(0) {
                r.error(Code::Policy, "spec.rateLimit.maxKeys", "maxKeys must be at least 1");
            }
        }
    }
}
