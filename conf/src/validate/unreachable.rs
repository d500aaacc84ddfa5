//! Istio `analyzeUnreachableHTTPRules`: warnings for rules and matches no request can reach
//! (analyzers IST0130 VirtualServiceUnreachableRule and IST0131 VirtualServiceIneffectiveMatch).

use std::collections::BTreeMap;

use crate::diagnostic::{Code, Reporter};
use crate::raw::{HttpMatchRequest, HttpRoute, StringMatch};

/// Istio `routeName`: `"name"` when the rule has one, else `#index`.
fn rule_name(route: &HttpRoute, i: usize) -> String {
    route.name.as_deref().map_or_else(|| format!("#{i}"), |n| format!("{n:?}"))
}

fn match_name(m: &HttpMatchRequest, i: usize) -> String {
    m.name.as_deref().map_or_else(|| format!("#{i}"), |n| format!("{n:?}"))
}

/// The fields of a prefix match that decide whether an earlier one covers it (`genMatchHTTPRoutes`).
struct PrefixMatch {
    rule: usize,
    rule_str: String,
    match_str: String,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    without: BTreeMap<String, String>,
}

fn encode(sm: &StringMatch) -> String {
    match (&sm.exact, &sm.prefix) {
        (Some(e), _) => format!("exact:{e}"),
        (None, Some(p)) => format!("prefix:{p}"),
        _ => String::new(),
    }
}

fn encode_map(m: &BTreeMap<String, StringMatch>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), encode(v))).collect()
}

fn prefix_match(route: &HttpRoute, m: &HttpMatchRequest, rule: usize, idx: usize) -> Option<PrefixMatch> {
    let prefix = m.uri.as_ref()?.prefix.clone().filter(|p| !p.is_empty())?;
    Some(PrefixMatch {
        rule,
        rule_str: rule_name(route, rule),
        match_str: match_name(m, idx),
        prefix,
        port: m.port.unwrap_or(0),
        method: m.method.as_ref().map_or_else(|| "exact:GET".to_string(), encode),
        authority: m.authority.as_ref().map(encode).unwrap_or_default(),
        headers: encode_map(&m.headers),
        query: encode_map(&m.query_params),
        without: encode_map(&m.without_headers),
    })
}

fn map_covered(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, va)| b.get(k).is_some_and(|vb| vb.starts_with(va.as_str())))
}

/// Istio `coveredValidation`: everything `b` (later) matches, `a` (earlier) matches too.
fn covered(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && b.method.starts_with(&a.method)
        && b.authority.starts_with(&a.authority)
        && map_covered(&a.headers, &b.headers)
        && map_covered(&a.query, &b.query)
        && map_covered(&a.without, &b.without)
}

fn without_name(m: &HttpMatchRequest) -> HttpMatchRequest {
    HttpMatchRequest { name: None, ..m.clone() }
}

/// Reports unreachable rules and shadowed matches of one VirtualService's `http` list.
pub(super) fn analyze(routes: &[HttpRoute], r: &mut Reporter<'_>) {
    let mut seen: Vec<(HttpMatchRequest, usize)> = Vec::new();
    let mut empty_match_at: Option<usize> = None;
    let mut prefixes = Vec::new();
    for (rule, route) in routes.iter().enumerate() {
        let path = format!("spec.http[{rule}]");
        let name = rule_name(route, rule);
        if route.matches.is_empty() {
            if empty_match_at.is_some() {
                unused(r, &path, &name, "only the last rule can have no matches");
            }
            empty_match_at = Some(rule);
            continue;
        }
        let mut duplicates = 0;
        for (i, m) in route.matches.iter().enumerate() {
            if empty_match_at.is_some() {
                unused(r, &path, &name, "route without matches defined before");
                continue;
            }
            let key = without_name(m);
            if let Some((_, dup)) = seen.iter().find(|(k, _)| *k == key) {
                let msg = format!(
                    "virtualService rule {name} match {} is not used (duplicate/overlapping match in rule {})",
                    match_name(m, i),
                    rule_name(&routes[*dup], *dup)
                );
                r.warn(Code::IneffectiveMatch, format!("{path}.match[{i}]"), msg);
                duplicates += 1;
                continue;
            }
            seen.push((key, rule));
            prefixes.extend(prefix_match(route, m, rule, i));
        }
        if duplicates == route.matches.len() {
            unused(r, &path, &name, "all matches used by prior rules");
        }
    }
    report_overlaps(&prefixes, r);
}

fn unused(r: &mut Reporter<'_>, path: &str, name: &str, reason: &str) {
    r.warn(Code::UnreachableRule, path, format!("virtualService rule {name} not used ({reason})"));
}

fn report_overlaps(prefixes: &[PrefixMatch], r: &mut Reporter<'_>) {
    for (i, a) in prefixes.iter().enumerate() {
        for b in &prefixes[i + 1..] {
            if b.prefix == a.prefix || !covered(a, b) {
                continue;
            }
            let msg = format!(
                "virtualService rule {} match {} of prefix {} is not used (duplicate/overlapping match in rule {} of prefix {} on {})",
                b.rule_str, b.match_str, b.prefix, a.match_str, a.prefix, a.rule_str
            );
            r.warn(Code::IneffectiveMatch, format!("spec.http[{}]", b.rule), msg);
        }
    }
}
