//! Which `GatewayPolicy` module applies to each route. A policy attaches to this workload
//! (`selector`, in its namespace or from the root namespace), to a Gateway (`targetRefs` kind
//! `Gateway`), to one of its servers (`sectionName` = the server's `port.name`), to a
//! VirtualService (kind `VirtualService`) or to one of its HTTP rules (`sectionName` = the rule's
//! `name`). For each module the most specific attachment wins: route > server > Gateway >
//! workload; among equals, the older policy (Istio's order) wins and the others are reported.

use super::Selection;
use crate::config::{Config, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::raw::{Cache, GatewayPolicy, HeaderPolicy, RateLimit};
use crate::table::{
    BoundPolicy, CacheRule, ClientAddressRule, Cluster, HeaderPolicyRule, RateLimitKey, RateLimitRule, Route,
    RouteTable, Server, SourceBind,
};

/// Attachment levels, most specific first.
const LEVELS: [&str; 4] = ["route", "server", "gateway", "workload"];

/// The most specific level at which `p` attaches to `route` served by `servers`, if any. Without
/// a route (modules decided before routing), VirtualService targets never match.
fn level(p: &Resource<GatewayPolicy>, route: Option<&Route>, servers: &[&Server], sel: &Selection) -> Option<usize> {
    if !for_this_workload(p, sel) {
        return None;
    }
    let ns = p.meta.namespace();
    if p.spec.target_refs.is_empty() {
        return Some(3);
    }
    let key = |name: &str| format!("{ns}/{name}");
    p.spec
        .target_refs
        .iter()
        .filter_map(|t| match (t.kind.as_str(), t.section_name.as_str()) {
            ("VirtualService", s) => {
                route.filter(|r| r.virtual_service == key(&t.name) && (s.is_empty() || s == r.rule_name)).map(|_| 0)
            }
            ("Gateway", "") => servers.iter().any(|sv| sv.gateway == key(&t.name)).then_some(2),
            ("Gateway", s) => servers.iter().any(|sv| sv.gateway == key(&t.name) && sv.port_name == s).then_some(1),
            _ => None,
        })
        .min()
}

type Policy = Resource<GatewayPolicy>;

/// True when `p` is for this workload: its selector (if any) matches the workload's labels, and it
/// is in the workload's namespace or the root namespace.
fn for_this_workload(p: &Policy, sel: &Selection) -> bool {
    let ns = p.meta.namespace();
    let selected =
        p.spec.selector.as_ref().is_none_or(|s| s.match_labels.iter().all(|(k, v)| sel.labels.get(k) == Some(v)));
    selected && (ns == sel.namespace || ns == sel.root_namespace)
}

/// The winner of [`most_specific`]: its level, the policy, and the later policies that tie with
/// it (not used).
type MostSpecific<'p> = (usize, &'p Policy, Vec<&'p Policy>);

/// The most specific of `candidates` (level, policy), in Istio's order.
fn most_specific<'p>(candidates: impl Iterator<Item = (usize, &'p Policy)>) -> Option<MostSpecific<'p>> {
    let mut best: Option<MostSpecific<'p>> = None;
    for (l, p) in candidates {
        match &mut best {
            Some((b, _, ties)) if l == *b => ties.push(p),
            Some((b, _, _)) if l > *b => {}
            _ => best = Some((l, p, Vec::new())),
        }
    }
    best
}

/// A module of `GatewayPolicy`.
#[derive(Clone, Copy)]
enum Module {
    RateLimit,
    Headers,
    Cache,
}

impl Module {
    fn set_in(self, p: &GatewayPolicy) -> bool {
        match self {
            Module::RateLimit => p.rate_limit.is_some(),
            Module::Headers => p.headers.is_some(),
            Module::Cache => p.cache.is_some(),
        }
    }

    fn field(self) -> &'static str {
        match self {
            Module::RateLimit => "spec.rateLimit",
            Module::Headers => "spec.headers",
            Module::Cache => "spec.cache",
        }
    }
}

/// Sets each route's modules from the policies that apply.
pub(super) fn bind(config: &Config, sel: &Selection, table: &mut RouteTable, out: &mut Diagnostics) {
    for module in [Module::RateLimit, Module::Headers, Module::Cache] {
        bind_module(module, config, sel, table, out);
    }
    bind_client_address(config, sel, table, out);
    bind_security(config, sel, table, out);
}

/// `upstreamBind` per cluster: a policy targeting the cluster's ServiceEntry wins over one for the
/// whole workload; among equals, the older one (Istio's order).
pub(super) fn bind_upstream(config: &Config, sel: &Selection, clusters: &mut [Cluster], out: &mut Diagnostics) {
    let with: Vec<&Policy> = config
        .gateway_policies
        .iter()
        .filter(|p| p.spec.upstream_bind.is_some() && for_this_workload(p, sel))
        .collect();
    for p in &with {
        for (i, t) in p.spec.target_refs.iter().enumerate().filter(|(_, t)| t.kind == "ServiceEntry") {
            let key = format!("{}/{}", p.meta.namespace(), t.name);
            if !config.service_entries.iter().any(|se| se.meta.key() == key) {
                Reporter::new(&p.meta.id, out).warn(
                    Code::Policy,
                    format!("spec.targetRefs[{i}]"),
                    format!("ServiceEntry {key} is not defined; upstreamBind applies to no cluster through it"),
                );
            }
        }
    }
    let mut conflicts = Vec::new();
    for cluster in clusters.iter_mut() {
        let defined_by = cluster.service.as_ref().map(|s| s.defined_by.as_str()).unwrap_or_default();
        let level = |p: &Policy| {
            if p.spec.target_refs.is_empty() {
                return Some(1);
            }
            let ns = p.meta.namespace();
            p.spec
                .target_refs
                .iter()
                .any(|t| t.kind == "ServiceEntry" && defined_by == format!("ServiceEntry {ns}/{}", t.name))
                .then_some(0)
        };
        let Some((_, p, ties)) = most_specific(with.iter().filter_map(|p| Some((level(p)?, *p)))) else { continue };
        conflicts.extend(ties.into_iter().map(|t| (t.meta.id.clone(), p.meta.key(), cluster.name.clone())));
        let Some(b) = &p.spec.upstream_bind else { continue };
        // Validation refused any other address.
        let Ok(address) = b.source_address.parse() else { continue };
        cluster.source =
            Some(SourceBind { policy: p.meta.key(), address, ports: SourceBind::port_range(&b.source_ports) });
    }
    for (id, winner, cluster) in conflicts {
        Reporter::new(&id, out).warn(
            Code::Policy,
            "spec.upstreamBind",
            format!(
                "{winner} sets upstreamBind for {cluster} at the same level and is older; this one is not used there"
            ),
        );
    }
}

/// The `authorization` and `requestAuthentication` of GatewayPolicies: added (not replacing) to
/// the checks of every HTTP route table whose servers a policy reaches at the workload, Gateway
/// or server level. A policy that also reaches a server without HTTP requests (TCP, TLS, HTTPS
/// passthrough) cannot be enforced there, so the configuration is refused.
fn bind_security(config: &Config, sel: &Selection, table: &mut RouteTable, out: &mut Diagnostics) {
    for p in config
        .gateway_policies
        .iter()
        .filter(|p| p.spec.authorization.is_some() || p.spec.request_authentication.is_some())
    {
        let opaque: Vec<&Server> =
            table.servers.iter().filter(|s| !serves_http(s)).filter(|s| level(p, None, &[*s], sel).is_some()).collect();
        for s in opaque {
            Reporter::new(&p.meta.id, out).error(
                Code::Unsupported,
                "spec.targetRefs",
                format!(
                    "reaches {} servers[{}] ({:?}), which carries no HTTP requests: its authorization and requestAuthentication cannot be checked there",
                    s.gateway, s.index, s.protocol
                ),
            )
            .hint = Some("target the HTTP servers by sectionName, or use an AuthorizationPolicy (it applies to TCP as Istio's network RBAC)".into());
        }
        for rc in &mut table.route_configs {
            let servers: Vec<&Server> = rc.servers.iter().filter_map(|id| table.servers.get(*id)).collect();
            if level(p, None, &servers, sel).is_none() {
                continue;
            }
            if let Some(a) = &p.spec.authorization {
                rc.security.authorization_policies.push(BoundPolicy {
                    name: p.meta.key(),
                    bound_by: "GatewayPolicy",
                    dry_run: false,
                    spec: a.clone(),
                });
            }
            if let Some(ra) = &p.spec.request_authentication {
                rc.security.request_authentications.push(BoundPolicy {
                    name: p.meta.key(),
                    bound_by: "GatewayPolicy",
                    dry_run: false,
                    spec: ra.clone(),
                });
            }
        }
    }
}

/// True for servers whose connections carry HTTP requests the gateway sees.
fn serves_http(s: &Server) -> bool {
    let terminated_https = s.protocol == crate::model::Protocol::Https
        && !s.tls.as_ref().is_some_and(|t| t.mode == crate::table::TlsMode::Passthrough);
    s.protocol.is_http() || terminated_https
}

/// `clientAddress` per route table (the servers sharing a port, or one TLS server): the most
/// specific of server > Gateway > workload among the policies that apply to any of its servers.
fn bind_client_address(config: &Config, sel: &Selection, table: &mut RouteTable, out: &mut Diagnostics) {
    let with: Vec<&Resource<GatewayPolicy>> =
        config.gateway_policies.iter().filter(|p| p.spec.client_address.is_some()).collect();
    if with.is_empty() {
        return;
    }
    for rc in &mut table.route_configs {
        let servers: Vec<&Server> = rc.servers.iter().filter_map(|id| table.servers.get(*id)).collect();
        let candidates = with.iter().filter_map(|p| Some((level(p, None, &servers, sel)?, *p)));
        let Some((_, p, ties)) = most_specific(candidates) else { continue };
        for tie in ties {
            Reporter::new(&tie.meta.id, out).warn(
                Code::Policy,
                "spec.clientAddress",
                format!(
                    "{} sets the client address of {} at the same level and is older; this one is not used there",
                    p.meta.key(),
                    rc.name
                ),
            );
        }
        let Some(c) = &p.spec.client_address else { continue };
        rc.client_address = Some(ClientAddressRule {
            policy: p.meta.key(),
            num_trusted_proxies: c.num_trusted_proxies.unwrap_or(sel.num_trusted_proxies),
            trusted_cidrs: c
                .trusted_cidrs
                .iter()
                .filter_map(|v| {
                    v.parse::<ipnet::IpNet>()
                        .ok()
                        .or_else(|| v.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
                })
                .collect(),
        });
    }
}

fn bind_module(module: Module, config: &Config, sel: &Selection, table: &mut RouteTable, out: &mut Diagnostics) {
    let with: Vec<&Resource<GatewayPolicy>> =
        config.gateway_policies.iter().filter(|p| module.set_in(&p.spec)).collect();
    if with.is_empty() {
        return;
    }
    let mut conflicts = Vec::new();
    let (mut rate_limits, mut header_policies, mut caches) = (Vec::new(), Vec::new(), Vec::new());
    for rc in &mut table.route_configs {
        let servers: Vec<&Server> = rc.servers.iter().filter_map(|id| table.servers.get(*id)).collect();
        for route in rc.virtual_hosts.iter_mut().flat_map(|vh| vh.routes.iter_mut()) {
            let candidates = with.iter().filter_map(|p| Some((level(p, Some(&*route), &servers, sel)?, *p)));
            let Some((l, p, ties)) = most_specific(candidates) else { continue };
            conflicts.extend(ties.into_iter().map(|t| (t.meta.id.clone(), p.meta.key(), route.origin.clone())));
            match (module, &p.spec.rate_limit, &p.spec.headers, &p.spec.cache) {
                (Module::RateLimit, Some(rl), _, _) => {
                    route.rate_limit = Some(rate_limits.len());
                    rate_limits.push(rule(rl, p.meta.key(), LEVELS[l]));
                }
                (Module::Headers, _, Some(h), _) => {
                    route.header_policy =
                        Some(shared(&mut header_policies, p, || header_rule(h, p.meta.key(), LEVELS[l])));
                }
                (Module::Cache, _, _, Some(c)) => {
                    route.cache = Some(shared(&mut caches, p, || cache_rule(c, p.meta.key(), LEVELS[l])));
                }
                _ => {}
            }
        }
    }
    for (id, winner, origin) in conflicts {
        Reporter::new(&id, out).warn(
            Code::Policy,
            module.field(),
            format!(
                "{winner} sets this module for {origin} at the same level and is older; this one is not used there"
            ),
        );
    }
    match module {
        Module::RateLimit => table.rate_limits = rate_limits,
        Module::Headers => table.header_policies = header_policies.into_iter().map(|(_, h)| h).collect(),
        Module::Cache => table.caches = caches.into_iter().map(|(_, c)| c).collect(),
    }
}

/// The index of `p`'s rule in `rules` (one per policy, shared by the routes it reaches), made
/// with `make` the first time.
fn shared<T>(rules: &mut Vec<(String, T)>, p: &Policy, make: impl FnOnce() -> T) -> usize {
    let key = p.meta.key();
    rules.iter().position(|(name, _)| *name == key).unwrap_or_else(|| {
        rules.push((key, make()));
        rules.len() - 1
    })
}

/// Whole seconds of a valid duration (validation refused the others).
fn seconds(v: Option<&String>) -> Option<u32> {
    let d = crate::model::Duration::parse(v?).ok()?;
    Some(u32::try_from(d.as_millis() / 1000).unwrap_or(u32::MAX))
}

fn cache_rule(c: &Cache, policy: String, level: &'static str) -> CacheRule {
    let size = |v: Option<&String>| v.and_then(|v| crate::model::quantity::bytes(v).ok());
    let lower = |names: &[String]| names.iter().map(|n| n.to_ascii_lowercase()).collect::<Vec<_>>();
    CacheRule {
        policy,
        level,
        max_bytes: size(c.max_size.as_ref()).unwrap_or(CacheRule::DEFAULT_MAX_BYTES),
        max_entry_bytes: size(c.max_entry_size.as_ref()).unwrap_or(CacheRule::DEFAULT_MAX_ENTRY_BYTES),
        default_ttl_secs: seconds(c.default_ttl.as_ref()),
        stale_while_revalidate_secs: seconds(c.stale_while_revalidate.as_ref()).unwrap_or(0),
        stale_if_error_secs: seconds(c.stale_if_error.as_ref()).unwrap_or(0),
        vary: c.vary.as_deref().map_or_else(|| vec!["accept-encoding".to_string()], lower),
        key_headers: lower(&c.key_headers),
        status_header: c.status_header,
        lock_timeout_ms: c
            .lock_timeout
            .as_ref()
            .and_then(|v| crate::model::Duration::parse(v).ok())
            .map_or(CacheRule::DEFAULT_LOCK_TIMEOUT_MS, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

fn header_rule(h: &HeaderPolicy, policy: String, level: &'static str) -> HeaderPolicyRule {
    let response = h.response.clone().unwrap_or_default();
    HeaderPolicyRule {
        policy,
        level,
        replace_forwarded_for: h.x_forwarded_for == "replace",
        forwarded: h.forwarded,
        generate_request_id: h.request_id == "generate",
        response_set: response.set.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        response_remove: response.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    }
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
