//! Listeners and HTTP route tables (Istio `buildGatewayHTTPRouteConfig`).

use std::collections::{BTreeMap, HashSet};

use super::l4;
use super::route;
use super::servers::{sni_hosts, terminates, Plan, PortClass, PortPlan};
use super::Ctx;
use crate::diagnostic::{Code, Reporter};
use crate::matcher::VirtualHostIndex;
use crate::model::host::{intersection, ServerHost};
use crate::model::Protocol;
use crate::table::{
    ChainAction, FilterChain, Listener, ListenerKind, Route, RouteConfig, RouteConfigId, Server, ServerId, VirtualHost,
};

/// Builds every listener of the plan, appending the route tables they use to `route_configs`.
pub(super) fn listeners(plan: &Plan, route_configs: &mut Vec<RouteConfig>, ctx: &mut Ctx<'_, '_>) -> Vec<Listener> {
    let mut out = Vec::new();
    for pp in &plan.ports {
        let kind = match pp.class {
            PortClass::Http => {
                let bind = pp.bind.map(|b| format!(".{b}")).unwrap_or_default();
                let id =
                    add_route_config(format!("http.{}{bind}", pp.port), &pp.servers, &plan.servers, route_configs, ctx);
                Some(ListenerKind::Http { servers: pp.servers.clone(), route_config: id })
            }
            PortClass::Tls => tls_listener(pp, plan, route_configs, ctx),
            PortClass::Tcp => {
                let server = pp.servers[0];
                l4::tcp_route(&plan.servers[server], ctx).map(|route| ListenerKind::Tcp { server, route })
            }
        };
        match kind {
            Some(kind) => out.push(Listener { bind: pp.bind, port: pp.port, kind }),
            None => no_listener(pp, &plan.servers, ctx),
        }
    }
    out
}

fn tls_listener(
    pp: &PortPlan,
    plan: &Plan,
    route_configs: &mut Vec<RouteConfig>,
    ctx: &mut Ctx<'_, '_>,
) -> Option<ListenerKind> {
    let mut chains = Vec::new();
    for &id in &pp.servers {
        let s = &plan.servers[id];
        if !terminates(s) {
            chains.extend(l4::passthrough_chains(id, s, ctx));
        } else if s.protocol == Protocol::Tls {
            if let Some(route) = l4::tcp_route(s, ctx) {
                chains.push(FilterChain { server: id, sni: sni_hosts(s), action: ChainAction::Tcp { route } });
            }
        } else {
            let (gw_ns, gw_name) = s.gateway.split_once('/').unwrap_or(("", &s.gateway));
            let bind = s.bind.map(|b| format!(".{b}")).unwrap_or_default();
            let name = format!("https.{}.{}.{gw_name}.{gw_ns}{bind}", s.port, s.port_name);
            let route_config = add_route_config(name, &[id], &plan.servers, route_configs, ctx);
            chains.push(FilterChain { server: id, sni: sni_hosts(s), action: ChainAction::Http { route_config } });
        }
    }
    if chains.is_empty() {
        return None;
    }
    Some(ListenerKind::Tls { index: sni_index(&chains), chains })
}

/// Envoy's filter-chain match on `server_names`: a chain without names takes any SNI (or none).
fn sni_index(chains: &[FilterChain]) -> VirtualHostIndex {
    let names: Vec<(String, usize)> = chains
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let names = if c.sni.is_empty() { vec!["*".to_string()] } else { c.sni.clone() };
            names.into_iter().map(move |n| (n.to_ascii_lowercase(), i))
        })
        .collect();
    VirtualHostIndex::new(names.iter().map(|(n, i)| (n.as_str(), *i)))
}

/// Istio opens no listener for TCP and TLS servers without routes.
fn no_listener(pp: &PortPlan, servers: &[Server], ctx: &mut Ctx<'_, '_>) {
    for &id in &pp.servers {
        let s = &servers[id];
        let Some(gw) = ctx.config.gateways.iter().find(|g| g.meta.key() == s.gateway) else {
            continue;
        };
        Reporter::new(&gw.meta.id, ctx.out)
            .warn(
                Code::Route,
                format!("spec.servers[{}]", s.index),
                format!("no VirtualService routes for port {}; nothing listens on it, as in Istio", s.port),
            )
            .hint = Some("bind a VirtualService with tcp or tls routes to this Gateway".into());
    }
}

/// A virtual host being built: routes from each VirtualService once.
#[derive(Default)]
struct VhostBuilder {
    require_tls: bool,
    routes: Vec<Route>,
    from: HashSet<String>,
}

fn add_route_config(
    name: String,
    ids: &[ServerId],
    servers: &[Server],
    configs: &mut Vec<RouteConfig>,
    ctx: &mut Ctx<'_, '_>,
) -> RouteConfigId {
    let mut vhosts: BTreeMap<String, VhostBuilder> = BTreeMap::new();
    // (gateway, VirtualService) pairs already built: building one again (another server of the
    // same gateway) reports nothing new. Routes are built per server rather than kept: a cache of
    // every VirtualService's routes doubled the peak memory of a 100,000-route compile.
    let mut built: HashSet<(String, String)> = HashSet::new();
    for &id in ids {
        let s = &servers[id];
        let tls = s.tls.is_some() || s.https_redirect;
        let hosts: Vec<ServerHost> = s.hosts.iter().map(|h| ServerHost::parse(h, "")).collect();
        for vs in ctx.bound.for_gateway(&s.gateway) {
            let server_names: Vec<String> =
                hosts.iter().filter_map(|h| h.name_for(vs.res.meta.namespace())).map(str::to_string).collect();
            let common = intersection(&server_names, &vs.hosts);
            if common.is_empty() {
                continue;
            }
            let routes = if built.insert((s.gateway.clone(), vs.key.clone())) {
                route::build(vs, s.port, &s.gateway, tls, ctx)
            } else {
                let reported = std::mem::take(&mut *ctx.out);
                let routes = route::build(vs, s.port, &s.gateway, tls, ctx);
                *ctx.out = reported;
                routes
            };
            let mut wanting = Vec::new();
            for h in common {
                let name = h.to_ascii_lowercase();
                let vh = vhosts.entry(name.clone()).or_default();
                vh.require_tls |= s.https_redirect;
                if !routes.is_empty() && vh.from.insert(vs.key.clone()) {
                    wanting.push(name);
                }
            }
            // Copies for all hosts but the last, which takes the routes themselves.
            if let Some((last, others)) = wanting.split_last() {
                for h in others {
                    vhosts.entry(h.clone()).or_default().routes.extend(routes.iter().cloned());
                }
                let vh = vhosts.entry(last.clone()).or_default();
                if vh.routes.is_empty() {
                    vh.routes = routes; // the usual case, one VirtualService per host: no copy
                } else {
                    vh.routes.extend(routes);
                }
            }
        }
        if s.https_redirect {
            // Istio: every host of a redirecting server redirects, with or without routes.
            for h in &hosts {
                vhosts.entry(h.name.to_ascii_lowercase()).or_default().require_tls = true;
            }
        }
    }
    let virtual_hosts: Vec<VirtualHost> = vhosts.into_iter().map(|(name, b)| finish(name, b)).collect();
    let index = VirtualHostIndex::new(virtual_hosts.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)));
    configs.push(RouteConfig {
        name,
        servers: ids.to_vec(),
        virtual_hosts,
        index,
        client_address: None,
        security: Default::default(),
    });
    configs.len() - 1
}

/// Istio `SortVHostRoutes`: catch-all routes move to the end, keeping relative order (a stable
/// sort, in place).
fn finish(name: String, b: VhostBuilder) -> VirtualHost {
    let mut routes = b.routes;
    routes.sort_by_key(|r| r.matcher.is_catch_all());
    routes.shrink_to_fit();
    VirtualHost { name, require_tls: b.require_tls, routes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Listener, TcpRoute};

    fn chain(server: ServerId, sni: &[&str]) -> FilterChain {
        let route = TcpRoute { origin: String::new(), destinations: Vec::new() };
        FilterChain {
            server,
            sni: sni.iter().map(|s| s.to_string()).collect(),
            action: ChainAction::Passthrough { route },
        }
    }

    fn listener(chains: Vec<FilterChain>) -> Listener {
        Listener { bind: None, port: 443, kind: ListenerKind::Tls { index: sni_index(&chains), chains } }
    }

    fn server_for(l: &Listener, sni: Option<&str>) -> Option<ServerId> {
        l.chain(sni).map(|(_, c)| c.server)
    }

    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_any() {
        let l = listener(vec![
            chain(0, &["*.example.com"]),
            chain(1, &["api.example.com"]),
            chain(2, &["*.eu.example.com"]),
            chain(3, &[]),
        ]);
        assert_eq!(server_for(&l, Some("api.example.com")), Some(1));
        assert_eq!(server_for(&l, Some("API.Example.com.")), Some(1), "case and a trailing dot do not matter");
        assert_eq!(server_for(&l, Some("www.eu.example.com")), Some(2));
        assert_eq!(server_for(&l, Some("www.example.com")), Some(0));
        assert_eq!(server_for(&l, Some("example.org")), Some(3));
        assert_eq!(server_for(&l, None), Some(3), "no SNI: only a chain without names");
    }

    #[test]
    fn without_a_catch_all_a_miss_has_no_chain() {
        let l = listener(vec![chain(0, &["a.example.com"]), chain(1, &["*.example.org"])]);
        assert_eq!(server_for(&l, Some("b.example.com")), None);
        assert_eq!(server_for(&l, Some("example.org")), None, "*.example.org does not cover example.org");
        assert_eq!(server_for(&l, None), None);
    }
}
