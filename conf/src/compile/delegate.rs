//! Delegate VirtualServices (Istio `mergeVirtualServicesIfNeeded`, `mergeHTTPRoute`, `hasConflict`).
//!
//! A root rule with `delegate` is replaced by the delegate's rules, each combined with the root
//! rule: every delegate match must fit inside a root match, and fields the delegate leaves unset
//! are taken from the root. A delegate rule that conflicts with the root is dropped.

use std::collections::BTreeMap;

use super::select::{Rule, RuleRoute};
use crate::config::{Config, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::raw::{HttpMatchRequest, HttpRoute, StringMatch, VirtualService};

/// The HTTP rules of `vs` with every `delegate` rule replaced by the merged delegate rules.
pub(crate) fn merge<'a>(vs: &'a Resource<VirtualService>, config: &'a Config, out: &mut Diagnostics) -> Vec<Rule<'a>> {
    let mut merged = Vec::new();
    for (i, root) in vs.spec.http.iter().enumerate() {
        let Some(d) = &root.delegate else {
            merged.push(Rule { route: RuleRoute::Borrowed(root), owner: vs, index: i, root: None });
            continue;
        };
        let ns = d.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(vs.meta.namespace());
        let path = format!("spec.http[{i}].delegate");
        let found = config
            .virtual_services
            .iter()
            .find(|c| c.meta.namespace() == ns && c.meta.name() == d.name && c.spec.hosts.is_empty());
        let Some(delegate) = found else {
            Reporter::new(&vs.meta.id, out).warn(
                Code::Delegate,
                path,
                format!("delegate VirtualService {ns}/{} not found; the rule is dropped", d.name),
            );
            continue;
        };
        if !exported_to(&delegate.spec.export_to, ns, vs.meta.namespace()) {
            Reporter::new(&vs.meta.id, out).warn(
                Code::Delegate,
                path,
                format!(
                    "delegate VirtualService {ns}/{} is not exported to {}; the rule is dropped",
                    d.name,
                    vs.meta.namespace()
                ),
            );
            continue;
        }
        for (j, sub) in delegate.spec.http.iter().enumerate() {
            match merge_route(root, sub) {
                Some(route) => merged.push(Rule {
                    route: RuleRoute::Merged(Box::new(route)),
                    owner: delegate,
                    index: j,
                    root: Some(i),
                }),
                None => {
                    Reporter::new(&delegate.meta.id, out).warn(
                        Code::Delegate,
                        format!("spec.http[{j}]"),
                        format!(
                            "conflicts with the matches of root VirtualService {}/{} http[{i}]; the rule is dropped",
                            vs.meta.namespace(),
                            vs.meta.name()
                        ),
                    );
                }
            }
        }
    }
    merged
}

fn exported_to(export_to: &[String], delegate_ns: &str, root_ns: &str) -> bool {
    export_to.is_empty() || export_to.iter().any(|e| e == "*" || e == root_ns || (e == "." && delegate_ns == root_ns))
}

/// Istio `mergeHTTPRoute`; `None` when the delegate's matches conflict with the root's.
fn merge_route(root: &HttpRoute, delegate: &HttpRoute) -> Option<HttpRoute> {
    let mut out = delegate.clone();
    out.matches = merge_matches(&root.matches, &delegate.matches)?;
    out.name = match (&root.name, &delegate.name) {
        (Some(r), Some(d)) if !r.is_empty() => Some(format!("{r}-{d}")),
        (r, None) => r.clone(),
        (_, d) => d.clone(),
    };
    macro_rules! inherit {
        ($($field:ident),*) => { $( if out.$field.is_none() { out.$field = root.$field.clone(); } )* };
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percentage,
        cors_policy,
        headers
    );
    if out.mirrors.is_empty() {
        out.mirrors = root.mirrors.clone();
    }
    Some(out)
}

/// Istio `mergeHTTPMatchRequests`: each delegate match combined with every compatible root match.
fn merge_matches(root: &[HttpMatchRequest], delegate: &[HttpMatchRequest]) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(delegate.to_vec());
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for sub in delegate {
        let before = out.len();
        out.extend(root.iter().filter(|r| !has_conflict(r, sub)).map(|r| merge_match(r, sub)));
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

fn merge_maps<V: Clone>(root: &BTreeMap<String, V>, delegate: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(delegate.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Istio `mergeHTTPMatchRequest`: the delegate's conditions, completed by the root's.
fn merge_match(root: &HttpMatchRequest, delegate: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = delegate.clone();
    out.name = match (&root.name, &delegate.name) {
        (Some(r), Some(d)) if !r.is_empty() => Some(format!("{r}-{d}")),
        (r, None) => r.clone(),
        (_, d) => d.clone(),
    };
    for (mine, theirs) in [
        (&mut out.uri, &root.uri),
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        if mine.is_none() {
            mine.clone_from(theirs);
        }
    }
    out.headers = merge_maps(&root.headers, &delegate.headers);
    out.without_headers = merge_maps(&root.without_headers, &delegate.without_headers);
    out.query_params = merge_maps(&root.query_params, &delegate.query_params);
    out.source_labels = merge_maps(&root.source_labels, &delegate.source_labels);
    if out.port.unwrap_or(0) == 0 {
        out.port = root.port;
    }
    if out.source_namespace.is_none() {
        out.source_namespace.clone_from(&root.source_namespace);
    }
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    if out.stat_prefix.is_none() {
        out.stat_prefix.clone_from(&root.stat_prefix);
    }
    out
}

/// Istio `hasConflict`: the leaf match is not a refinement of the root match.
fn has_conflict(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs.iter().any(|(r, l)| string_conflict(r.as_ref(), l.as_ref())) {
        return true;
    }
    let map_conflict = |r: &BTreeMap<String, StringMatch>, l: &BTreeMap<String, StringMatch>| {
        l.iter().any(|(k, lv)| string_conflict(r.get(k), Some(lv)))
    };
    if map_conflict(&root.headers, &leaf.headers)
        || map_conflict(&root.without_headers, &leaf.without_headers)
        || map_conflict(&root.query_params, &leaf.query_params)
    {
        return true;
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    let (rp, lp) = (root.port.unwrap_or(0), leaf.port.unwrap_or(0));
    if rp > 0 && lp > 0 && rp != lp {
        return true;
    }
    if root.source_namespace.as_deref().is_some_and(|n| !n.is_empty()) && leaf.source_namespace != root.source_namespace
    {
        return true;
    }
    if leaf.source_labels.iter().any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v)) {
        return true;
    }
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && (root.gateways.len() < leaf.gateways.len() || leaf.gateways.iter().any(|g| !root.gateways.contains(g)))
}

/// Istio `stringMatchConflict`.
fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let set = crate::raw::given;
    let leaf_any = set(&leaf.regex) || set(&leaf.prefix) || set(&leaf.exact);
    let root_any = set(&root.regex) || set(&root.prefix) || set(&root.exact);
    if (set(&root.regex) && leaf_any) || (set(&leaf.regex) && root_any) {
        return true;
    }
    if let Some(exact) = root.exact.as_deref().filter(|e| !e.is_empty()) {
        return set(&leaf.prefix) || leaf.exact.as_deref() != Some(exact);
    }
    if let Some(prefix) = root.prefix.as_deref().filter(|p| !p.is_empty()) {
        if let Some(lp) = leaf.prefix.as_deref().filter(|p| !p.is_empty()) {
            return !lp.starts_with(prefix);
        }
        if let Some(le) = leaf.exact.as_deref().filter(|e| !e.is_empty()) {
            return !le.starts_with(prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Option<StringMatch> {
        Some(StringMatch { prefix: Some(p.into()), ..Default::default() })
    }

    fn exact(p: &str) -> Option<StringMatch> {
        Some(StringMatch { exact: Some(p.into()), ..Default::default() })
    }

    #[test]
    fn delegate_prefix_must_extend_the_root_prefix() {
        assert!(!string_conflict(prefix("/productpage").as_ref(), prefix("/productpage/v1/").as_ref()));
        assert!(string_conflict(prefix("/productpage").as_ref(), prefix("/reviews").as_ref()));
        assert!(!string_conflict(prefix("/a").as_ref(), exact("/a/b").as_ref()));
        assert!(string_conflict(exact("/a").as_ref(), prefix("/a").as_ref()));
        assert!(!string_conflict(exact("/a").as_ref(), exact("/a").as_ref()));
        assert!(!string_conflict(None, prefix("/x").as_ref()));
    }

    #[test]
    fn delegate_rule_without_match_takes_the_root_matches() {
        let root = HttpRoute {
            matches: vec![HttpMatchRequest { uri: prefix("/reviews"), ..Default::default() }],
            ..Default::default()
        };
        let sub = HttpRoute::default();
        let merged = merge_route(&root, &sub).unwrap();
        assert_eq!(merged.matches, root.matches);
    }
}
