//! Which `GatewayPolicy` module applies to each route. A policy attaches to this workload
//! (`selector`, in its namespace or from the root namespace), to a Gateway (`targetRefs` kind
//! `Gateway`), to one of its servers (`sectionName` = the server's `port.name`), to a
//! VirtualService (kind `VirtualService`) or to one of its HTTP rules (`sectionName` = the rule's
//! `name`). For each module the most specific attachment wins: route > server > Gateway >
//! workload; among equals, the older policy (Istio's order) wins and the others are reported.

use super::Selection;
use crate::config::{Config, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::raw::{GatewayPolicy, RateLimit};
use crate::table::{RateLimitKey, RateLimitRule, Route, RouteTable, Server};

/// Attachment levels, most specific first.
const LEVELS: [&str; 4] = ["route", "server", "gateway", "workload"];

/// The most specific level at which `p` attaches to `route` served by `servers`, if any.
fn level(p: &Resource<GatewayPolicy>, route: &Route, servers: &[&Server], sel: &Selection) -> Option<usize> {
    let ns = p.meta.namespace();
    let selected =
        p.spec.selector.as_ref().is_none_or(|s| s.match_labels.iter().all(|(k, v)| sel.labels.get(k) == Some(v)));
    let in_scope = ns == sel.namespace || ns == sel.root_namespace;
    if !selected || !in_scope {
        return None;
    }
    if p.spec.target_refs.is_empty() {
        return Some(3);
    }
    let key = |name: &str| format!("{ns}/{name}");
    p.spec
        .target_refs
        .iter()
        .filter_map(|t| match (t.kind.as_str(), t.section_name.as_str()) {
            ("VirtualService", s) => {
                (route.virtual_service == key(&t.name) && (s.is_empty() || s == route.rule_name)).then_some(0)
            }
            ("Gateway", "") => servers.iter().any(|sv| sv.gateway == key(&t.name)).then_some(2),
            ("Gateway", s) => servers.iter().any(|sv| sv.gateway == key(&t.name) && sv.port_name == s).then_some(1),
            _ => None,
        })
        .min()
}

/// Sets each route's rate limit from the policies that apply.
pub(super) fn bind(config: &Config, sel: &Selection, table: &mut RouteTable, out: &mut Diagnostics) {
    let with_limits: Vec<&Resource<GatewayPolicy>> =
        config.gateway_policies.iter().filter(|p| p.spec.rate_limit.is_some()).collect();
    if with_limits.is_empty() {
        return;
    }
    let mut rules = Vec::new();
    let mut conflicts = Vec::new();
    for rc in &mut table.route_configs {
        let servers: Vec<&Server> = rc.servers.iter().filter_map(|id| table.servers.get(*id)).collect();
        for route in rc.virtual_hosts.iter_mut().flat_map(|vh| vh.routes.iter_mut()) {
            let mut best: Option<(usize, &Resource<GatewayPolicy>)> = None;
            for p in &with_limits {
                let Some(l) = level(p, route, &servers, sel) else { continue };
                match best {
                    Some((b, winner)) if l == b => {
                        conflicts.push((p.meta.id.clone(), winner.meta.key(), route.origin.clone()))
                    }
                    Some((b, _)) if l > b => {}
                    _ => best = Some((l, p)),
                }
            }
            let Some((l, p)) = best else { continue };
            let Some(rl) = &p.spec.rate_limit else { continue };
            route.rate_limit = Some(rules.len());
            rules.push(rule(rl, p.meta.key(), LEVELS[l]));
        }
    }
    for (id, winner, origin) in conflicts {
        Reporter::new(&id, out).warn(
            Code::Policy,
            "spec.rateLimit",
            format!(
                "{winner} sets the rate limit of {origin} at the same level and is older; this one is not used there"
            ),
        );
    }
    table.rate_limits = rules;
}

fn rule(rl: &RateLimit, policy: String, level: &'static str) -> RateLimitRule {
    let seconds = match rl.unit.as_str() {
        "minute" => 60.0,
        "hour" => 3600.0,
        _ => 1.0,
    };
    RateLimitRule {
        policy,
        level,
        per_second: f64::from(rl.requests) / seconds,
        burst: rl.burst.unwrap_or(rl.requests).max(1),
        key: match rl.key.as_str() {
            "host" => RateLimitKey::Host,
            "client" => RateLimitKey::Client,
            _ => RateLimitKey::Route,
        },
        max_keys: rl.max_keys.map_or(10_000, |m| usize::try_from(m).unwrap_or(usize::MAX)),
        response_headers: rl.response_headers,
    }
}
