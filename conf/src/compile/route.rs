//! One VirtualService's HTTP rules → routes for one gateway server port
//! (Istio `BuildHTTPRoutesForVirtualService`, `translateRoute`, `TranslateRouteMatch`).

use super::select::{resolve_gateway_name, BoundVs, Rule};
use super::Ctx;
use crate::at::At;
use crate::config::Resource;
use crate::diagnostic::Reporter;
use crate::matcher::{HeaderMatcher, PathMatcher, QueryMatcher, RouteMatch, StringMatcher};
use crate::model::host::expand_short_name;
use crate::raw::{HttpMatchRequest, StringMatch, VirtualService};
use crate::table::{Route, RouteAction, WeightedCluster};

/// The routes `vs` contributes on server port `port` of `gateway`, in declaration order: one per
/// match, config-time filters applied, stopping after the first catch-all.
pub(super) fn build(vs: &BoundVs<'_>, port: u16, gateway: &str, tls: bool, ctx: &mut Ctx<'_, '_>) -> Vec<Route> {
    // At most one route per match (or per rule without matches): sized once, since a `Route` is
    // large and a 100,000-route table moved each through several regrowths.
    let mut out = Vec::with_capacity(vs.http.iter().map(|r| r.route.matches.len().max(1)).sum());
    for rule in &vs.http {
        if rule.route.matches.is_empty() {
            out.extend(translate(vs, rule, None, (port, tls), ctx));
            // Istio: a rule without matches matches everything; later rules are never reached.
            break;
        }
        let mut catch_all = false;
        for (j, m) in rule.route.matches.iter().enumerate() {
            if !applies_here(m, vs.res.meta.namespace(), port, gateway, ctx) {
                continue;
            }
            if let Some(route) = translate(vs, rule, Some((j, m)), (port, tls), ctx) {
                catch_all = route.matcher.is_catch_all();
                out.push(route);
                if catch_all {
                    break;
                }
            }
        }
        if catch_all {
            break;
        }
    }
    out
}

/// Istio `translateRoute` filters and `sourceMatchHTTP`: `port`, then `gateways` (which overrides
/// the source conditions), else `sourceLabels` ⊆ workload labels and `sourceNamespace`.
fn applies_here(m: &HttpMatchRequest, vs_ns: &str, port: u16, gateway: &str, ctx: &Ctx<'_, '_>) -> bool {
    if m.port.is_some_and(|p| p != 0 && p != u32::from(port)) {
        return false;
    }
    if !m.gateways.is_empty() {
        return m.gateways.iter().any(|g| resolve_gateway_name(g, vs_ns) == gateway);
    }
    let labels_ok = m.source_labels.iter().all(|(k, v)| ctx.sel.labels.get(k) == Some(v));
    labels_ok && m.source_namespace.as_deref().is_none_or(|ns| ns.is_empty() || ns == ctx.sel.namespace)
}

fn translate(
    vs: &BoundVs<'_>,
    rule: &Rule<'_>,
    m: Option<(usize, &HttpMatchRequest)>,
    (port, tls): (u16, bool),
    ctx: &mut Ctx<'_, '_>,
) -> Option<Route> {
    let mut name = rule.route.name.clone().unwrap_or_default();
    if let Some(match_name) = m.and_then(|(_, m)| m.name.as_deref()) {
        name = format!("{name}.{match_name}");
    }
    // `namespace/name http[i] match[j]`, pushed rather than formatted: once a route, 100,000 times.
    let mut origin = rule.owner.meta.key();
    origin.reserve(32);
    origin.push_str(" http[");
    push_decimal(&mut origin, rule.index);
    origin.push(']');
    if let Some((j, _)) = m {
        origin.push_str(" match[");
        push_decimal(&mut origin, j);
        origin.push(']');
    }
    if let Some(root) = rule.root {
        origin.push_str(&format!(" (delegated by {} http[{root}])", vs.key));
    }
    let matcher = match m {
        Some((_, m)) => route_match(m, ctx)?,
        None => RouteMatch::any(),
    };
    let action = action(rule, &matcher, (port, tls), ctx)?;
    let mut route = super::extras::route_extras(rule, port, ctx);
    route.name = name;
    route.origin = origin;
    route.matcher = matcher;
    route.action = action;
    Some(route)
}

/// `n` in decimal.
fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// Istio `TranslateRouteMatch`.
fn route_match(m: &HttpMatchRequest, ctx: &mut Ctx<'_, '_>) -> Option<RouteMatch> {
    let path = match &m.uri {
        Some(sm) if sm.exact.is_some() || sm.prefix.is_some() || sm.regex.is_some() => {
            PathMatcher { matcher: string_matcher(sm, false, ctx)?, ignore_case: m.ignore_uri_case }
        }
        _ => PathMatcher { ignore_case: m.ignore_uri_case, ..PathMatcher::any() },
    };
    let mut headers = Vec::new();
    for (name, sm) in &m.headers {
        headers.push(HeaderMatcher {
            name: name.to_ascii_lowercase(),
            matcher: string_matcher(sm, true, ctx)?,
            invert: false,
        });
    }
    for (name, sm) in &m.without_headers {
        headers.push(HeaderMatcher {
            name: name.to_ascii_lowercase(),
            matcher: string_matcher(sm, true, ctx)?,
            invert: true,
        });
    }
    headers.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, sm) in [(":method", &m.method), (":authority", &m.authority), (":scheme", &m.scheme)] {
        if let Some(sm) = sm {
            headers.push(HeaderMatcher { name: name.into(), matcher: string_matcher(sm, true, ctx)?, invert: false });
        }
    }
    let mut query = Vec::new();
    for (name, sm) in &m.query_params {
        query.push(QueryMatcher { name: name.clone(), matcher: string_matcher(sm, true, ctx)? });
    }
    Some(RouteMatch { path, headers, query })
}

/// A `StringMatch` as a matcher; with `presence`, `{}` and `regex: "*"` mean "present" (Istio
/// `canBeConvertedToPresentMatch`).
fn string_matcher(sm: &StringMatch, presence: bool, ctx: &mut Ctx<'_, '_>) -> Option<StringMatcher> {
    if let Some(e) = &sm.exact {
        return Some(StringMatcher::Exact(e.clone()));
    }
    if let Some(p) = &sm.prefix {
        return Some(StringMatcher::Prefix(p.clone()));
    }
    match &sm.regex {
        Some(re) if presence && re == "*" => Some(StringMatcher::Present),
        Some(re) => ctx.regexes.get(re, true).ok().map(StringMatcher::Regex),
        None if presence => Some(StringMatcher::Present),
        None => None,
    }
}

fn action(r: &Rule<'_>, matcher: &RouteMatch, (port, tls): (u16, bool), ctx: &mut Ctx<'_, '_>) -> Option<RouteAction> {
    let (rule, i) = (&r.route, r.index);
    if let Some(redirect) = &rule.redirect {
        return super::extras::redirect(redirect, matcher, port, tls);
    }
    if let Some(dr) = &rule.direct_response {
        return Some(super::extras::direct_response(dr));
    }
    let several = rule.route.len() > 1;
    let mut destinations = Vec::new();
    for (k, d) in rule.route.iter().enumerate() {
        let (Some(dest), Some(weight)) = (&d.destination, share(several, d.weight)) else { continue };
        // The path is written out only if a diagnostic names it.
        let rule_at = At::Index(&"spec.http", i);
        let routes_at = At::Field(&rule_at, "route");
        let item_at = At::Index(&routes_at, k);
        let (cluster, name) = destination(r.owner, dest, port, &At::Field(&item_at, "destination"), ctx);
        let headers = d.headers.as_ref().map(super::extras::header_ops).filter(|h| !h.is_empty()).map(Box::new);
        destinations.push(WeightedCluster { cluster, name, weight, headers });
    }
    destinations.shrink_to_fit();
    Some(RouteAction::Forward { destinations, weighted: several })
}

/// A destination's weight, `None` when it gets no traffic. Istio: with several destinations, weight
/// 0 gets nothing; a single destination gets everything whatever its weight.
pub(super) fn share(several: bool, weight: i32) -> Option<u32> {
    let w = if several { u32::try_from(weight).unwrap_or(0) } else { 100 };
    (w > 0).then_some(w)
}

/// The cluster of a destination written in `owner` (short names expand in its namespace; problems
/// are reported on it).
pub(super) fn destination(
    owner: &Resource<VirtualService>,
    dest: &crate::raw::Destination,
    port: u16,
    path: &dyn std::fmt::Display,
    ctx: &mut Ctx<'_, '_>,
) -> (usize, String) {
    let host = expand_short_name(&dest.host, owner.meta.namespace(), &ctx.sel.domain);
    let mut r = Reporter::new(&owner.meta.id, ctx.out);
    let id = ctx.registry.cluster(dest, &host, port, path, &mut r);
    (id, ctx.registry.name(id))
}

#[cfg(test)]
mod tests {
    #[test]
    fn indexes_are_written_in_decimal() {
        for n in [0, 7, 10, 12_345, usize::MAX] {
            let mut out = String::from("http[");
            super::push_decimal(&mut out, n);
            assert_eq!(out, format!("http[{n}"));
        }
    }
}
