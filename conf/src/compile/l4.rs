//! TCP and TLS-passthrough routes at a gateway (Istio `buildGatewayNetworkFiltersFromTCPRoutes`,
//! `buildGatewayNetworkFiltersFromTLSRoutes`): only `port` and `gateways` of a match count.

use std::collections::HashSet;

use super::route::{destination, share};
use super::select::{resolve_gateway_name, BoundVs};
use super::Ctx;
use crate::diagnostic::{Code, Reporter};
use crate::model::host::{matches, ServerHost};
use crate::raw::RouteDestination;
use crate::table::{ChainAction, FilterChain, Server, ServerId, TcpRoute, WeightedCluster};

/// Istio `pickMatchingGatewayHosts`: a VirtualService host overlaps a server host (a `ns/` host
/// only for VirtualServices in that namespace).
fn overlaps(vs: &BoundVs<'_>, server: &Server) -> bool {
    server
        .hosts
        .iter()
        .map(|h| ServerHost::parse(h, ""))
        .any(|h| h.name_for(vs.res.meta.namespace()).is_some_and(|name| vs.hosts.iter().any(|v| matches(name, v))))
}

/// Istio `l4SingleMatch`: `port` and `gateways` only.
fn l4_match(port: Option<u32>, gateways: &[String], vs_ns: &str, server: &Server) -> bool {
    let port_ok = port.is_none_or(|p| p == 0 || p == u32::from(server.port));
    port_ok && (gateways.is_empty() || gateways.iter().any(|g| resolve_gateway_name(g, vs_ns) == server.gateway))
}

/// The first `tcp` rule of the first overlapping VirtualService whose matches hold.
pub(super) fn tcp_route(server: &Server, ctx: &mut Ctx<'_, '_>) -> Option<TcpRoute> {
    for vs in ctx.bound.for_gateway(&server.gateway) {
        if !overlaps(vs, server) {
            continue;
        }
        let ns = vs.res.meta.namespace();
        let found = vs.res.spec.tcp.iter().enumerate().find(|(_, tcp)| {
            tcp.matches.is_empty() || tcp.matches.iter().any(|m| l4_match(m.port, &m.gateways, ns, server))
        });
        if let Some((i, tcp)) = found {
            let destinations = weighted(vs, &tcp.route, &format!("spec.tcp[{i}]"), server.port, ctx);
            return Some(TcpRoute { origin: format!("{} tcp[{i}]", vs.key), destinations });
        }
    }
    None
}

/// One chain per matching `tls` match of the overlapping VirtualServices; an SNI name already
/// taken on this server is skipped with a warning, as Istio skips it.
pub(super) fn passthrough_chains(id: ServerId, server: &Server, ctx: &mut Ctx<'_, '_>) -> Vec<FilterChain> {
    let mut chains = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    for vs in ctx.bound.for_gateway(&server.gateway) {
        if !overlaps(vs, server) {
            continue;
        }
        let ns = vs.res.meta.namespace();
        for (i, tls) in vs.res.spec.tls.iter().enumerate() {
            for (j, m) in tls.matches.iter().enumerate() {
                if !l4_match(m.port, &m.gateways, ns, server) {
                    continue;
                }
                let dup: Vec<&String> = m.sni_hosts.iter().filter(|h| taken.contains(*h)).collect();
                if !dup.is_empty() {
                    Reporter::new(&vs.res.meta.id, ctx.out).warn(
                        Code::Conflict,
                        format!("spec.tls[{i}].match[{j}]"),
                        format!("SNI {dup:?} on port {} is already routed by an earlier rule; this match is skipped, as in Istio", server.port),
                    );
                    continue;
                }
                taken.extend(m.sni_hosts.iter().cloned());
                let destinations = weighted(vs, &tls.route, &format!("spec.tls[{i}]"), server.port, ctx);
                let route = TcpRoute { origin: format!("{} tls[{i}]", vs.key), destinations };
                chains.push(FilterChain {
                    server: id,
                    sni: m.sni_hosts.clone(),
                    action: ChainAction::Passthrough { route },
                });
            }
        }
    }
    chains
}

fn weighted(
    vs: &BoundVs<'_>,
    route: &[RouteDestination],
    path: &str,
    port: u16,
    ctx: &mut Ctx<'_, '_>,
) -> Vec<WeightedCluster> {
    let several = route.len() > 1;
    let mut out = Vec::new();
    for (k, d) in route.iter().enumerate() {
        let (Some(dest), Some(weight)) = (&d.destination, share(several, d.weight)) else { continue };
        let (cluster, name) = destination(vs.res, dest, port, &format!("{path}.route[{k}].destination"), ctx);
        out.push(WeightedCluster { cluster, name, weight, headers: None });
    }
    out
}
