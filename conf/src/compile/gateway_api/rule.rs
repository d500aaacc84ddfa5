//! One HTTPRoute's rules → Istio HTTP rules (istio/istio `conversion.go` `convertHTTPRoute`,
//! `createURIMatch`, `createHeadersMatch`, `createRedirectFilter`, `createRewriteFilter`,
//! `createMirrorFilter`, `buildHTTPDestination`), split one per match and ranked for
//! `sortHTTPRoutes`.
//!
//! `PathPrefix /foo` has path-segment semantics (it matches `/foo`, `/foo/` and `/foo/bar`, never
//! `/foobar`): Istio emits Envoy's `path_separated_prefix`. Pylon writes the same thing in Istio
//! terms, as two rules side by side: `exact /foo`, then `prefix /foo/`, each with its own
//! `ReplacePrefixMatch` result (`/foo` → `R`, `/foo/bar` → `R/bar`).

use std::collections::BTreeMap;

use super::refs::{backend, Grants};
use crate::config::{Config, Resource};
use crate::raw::gateway_api::{
    HeaderModifier, HttpRouteFilter, HttpRouteMatch, HttpRouteRule, KubeHttpRoute, PathModifier,
};
use crate::raw::{
    Destination, HeaderOperations, Headers, HttpDirectResponse, HttpMatchRequest, HttpMirrorPolicy, HttpRedirect,
    HttpRetry, HttpRewrite, HttpRoute, HttpRouteDestination, Percent, PortSelector, RedirectPortSelection,
    RegexRewrite, StringMatch,
};

use super::super::Selection;

/// Gateway API precedence of one match (compared greatest first): not a catch-all (Envoy moves
/// those last: `SortVHostRoutes`), path kind (Exact > Prefix > Regex), path length, a method,
/// the number of header matches, then of query matches.
pub(super) type Rank = (bool, u8, usize, bool, usize, usize);

/// The Istio rules of one match.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    /// Its precedence.
    pub rank: Rank,
    /// One rule, or two for a `PathPrefix` other than `/`.
    pub routes: Vec<HttpRoute>,
}

/// A route's rules, or none when a rule has an error that drops the route; the last error
/// (reason, message) goes to `ResolvedRefs`, as Istio reports it.
pub(super) struct Converted {
    /// The rules (`None`: the route is dropped).
    pub units: Option<Vec<Unit>>,
    /// The last problem.
    pub error: Option<(&'static str, String)>,
}

/// What a rule does, whatever its match.
struct Action {
    base: HttpRoute,
    redirect: Option<crate::raw::gateway_api::RequestRedirect>,
    rewrite: Option<crate::raw::gateway_api::UrlRewrite>,
}

/// Converts every rule of `route`.
pub(super) fn convert(
    route: &Resource<KubeHttpRoute>,
    kind: &str,
    config: &Config,
    sel: &Selection,
    grants: &Grants<'_>,
) -> Converted {
    let scope = Scope { kind, namespace: route.meta.namespace(), config, sel, grants };
    let mut units = Vec::new();
    let mut error = None;
    let mut hard = false;
    for (i, r) in route.spec.rules.iter().enumerate() {
        let name = r.name.clone().unwrap_or_else(|| format!("{}.{}.{i}", route.meta.namespace(), route.meta.name()));
        let mut problems = Vec::new();
        let action = action(r, name, &scope, &mut problems);
        // Istio reports the last problem; a problem that drops the route is reported before any
        // other, so that the status says why the route is not served.
        if let Some(shown) = problems.iter().rev().find(|p| p.2).or(problems.last()) {
            error = Some((shown.0, shown.1.clone()));
            hard |= problems.iter().any(|p| p.2);
        }
        let default = [HttpRouteMatch::default()];
        let matches = if r.matches.is_empty() { &default[..] } else { &r.matches[..] };
        units.extend(matches.iter().map(|m| unit(m, &action)));
    }
    Converted { units: (!hard).then_some(units), error }
}

/// What resolving a route's references needs: the route's kind and namespace (ReferenceGrants
/// name them), the configuration, the workload, the grants.
struct Scope<'a> {
    kind: &'a str,
    namespace: &'a str,
    config: &'a Config,
    sel: &'a Selection,
    grants: &'a Grants<'a>,
}

impl Scope<'_> {
    fn backend(&self, b: &crate::raw::gateway_api::BackendRef) -> super::refs::Backend {
        backend(b, self.kind, self.namespace, self.config, self.sel, self.grants)
    }
}

/// A problem: (reason, message, drops the route).
type Problem = (&'static str, String, bool);

/// The rule's filters, backends, timeouts and retries as an Istio rule without its match.
fn action(r: &HttpRouteRule, name: String, scope: &Scope<'_>, problems: &mut Vec<Problem>) -> Action {
    let mut base = HttpRoute { name: Some(name), ..HttpRoute::default() };
    let mut redirect = None;
    let mut rewrite = None;
    for f in &r.filters {
        match f.kind.as_str() {
            "RequestHeaderModifier" | "ResponseHeaderModifier" => {
                modify_headers(base.headers.get_or_insert_with(Headers::default), f, problems);
            }
            "RequestRedirect" => redirect.clone_from(&f.request_redirect),
            "URLRewrite" => rewrite.clone_from(&f.url_rewrite),
            "CORS" => base.cors_policy = f.cors.as_ref().map(cors),
            "RequestMirror" => {
                let Some(m) = &f.request_mirror else { continue };
                match scope.backend(&m.backend_ref) {
                    Ok((host, port)) => base.mirrors.push(HttpMirrorPolicy {
                        destination: Some(destination(host, port)),
                        percentage: mirror_percent(m),
                    }),
                    Err((reason, message)) => problems.push((reason, message, false)),
                }
            }
            other => problems.push(("InvalidFilter", format!("unsupported filter type {other:?}"), true)),
        }
    }
    if redirect.is_none() {
        route_to(&mut base, r, scope, problems);
    }
    timeouts(&mut base, r);
    Action { base, redirect, rewrite }
}

fn modify_headers(h: &mut Headers, f: &HttpRouteFilter, problems: &mut Vec<Problem>) {
    let (ops, m) = match (&f.request_header_modifier, &f.response_header_modifier) {
        (Some(m), _) if f.kind == "RequestHeaderModifier" => (&mut h.request, m),
        (_, Some(m)) if f.kind == "ResponseHeaderModifier" => (&mut h.response, m),
        _ => return,
    };
    if let Some(bad) = m.set.iter().chain(&m.add).find(|h| h.value.chars().any(char::is_control)) {
        problems.push(("InvalidFilter", format!("header {:?} value contains invalid characters", bad.name), true));
    }
    // A second filter of the same type replaces the first (Istio).
    *ops = Some(operations(m));
}

/// Istio `headerListToMap`: lower-case names, the first of duplicates wins.
fn operations(m: &HeaderModifier) -> HeaderOperations {
    let map = |list: &[crate::raw::gateway_api::HttpHeader]| {
        let mut out = BTreeMap::new();
        for h in list {
            out.entry(h.name.to_ascii_lowercase()).or_insert_with(|| h.value.clone());
        }
        out
    };
    HeaderOperations { set: map(&m.set), add: map(&m.add), remove: m.remove.clone() }
}

fn mirror_percent(m: &crate::raw::gateway_api::RequestMirror) -> Option<Percent> {
    if let Some(f) = &m.fraction {
        let den = f.denominator.filter(|d| *d > 0).unwrap_or(100);
        return Some(Percent { value: 100.0 * f64::from(f.numerator) / f64::from(den) });
    }
    m.percent.map(|p| Percent { value: f64::from(p) })
}

fn destination(host: String, port: u32) -> Destination {
    Destination { host, subset: None, port: Some(PortSelector { number: port }) }
}

/// Istio `buildHTTPDestination`: no weight at all → 500; zero weights dropped; one backend left
/// → no weight; a backend that cannot be used keeps its share, which answers 500.
fn route_to(base: &mut HttpRoute, r: &HttpRouteRule, scope: &Scope<'_>, problems: &mut Vec<Problem>) {
    let weight = |w: Option<u32>| w.unwrap_or(1);
    if r.backend_refs.iter().map(|b| u64::from(weight(b.weight))).sum::<u64>() == 0 {
        base.direct_response = Some(HttpDirectResponse { status: 500, body: None });
        return;
    }
    let kept: Vec<_> = r.backend_refs.iter().filter(|b| weight(b.weight) > 0).collect();
    let single = kept.len() == 1;
    for b in kept {
        let dest = match scope.backend(&b.backend()) {
            Ok((host, port)) => destination(host, port),
            Err((reason, message)) => {
                let hard = reason == "InvalidDestination";
                problems.push((reason, message, hard));
                // Istio's `{}`: no such cluster, so this share answers 500.
                Destination::default()
            }
        };
        let mut headers = None;
        for f in &b.filters {
            match f.kind.as_str() {
                "RequestHeaderModifier" | "ResponseHeaderModifier" => {
                    modify_headers(headers.get_or_insert_with(Headers::default), f, problems);
                }
                other => problems.push(("InvalidFilter", format!("unsupported filter type {other:?}"), true)),
            }
        }
        let weight = if single { 0 } else { i32::try_from(weight(b.weight)).unwrap_or(i32::MAX) };
        base.route.push(HttpRouteDestination { destination: Some(dest), weight, headers });
    }
}

/// `timeouts.request` is the route timeout; `backendRequest` is the per-try timeout with a
/// `retry`, and otherwise replaces the route timeout (Istio). `retry`: `attempts` (default 2),
/// retried on Envoy's connection failures and the listed codes.
fn timeouts(base: &mut HttpRoute, r: &HttpRouteRule) {
    let nonzero = |d: &Option<String>| d.clone().filter(|d| !disables(d));
    base.timeout = r.timeouts.as_ref().and_then(|t| nonzero(&t.request));
    if let Some(retry) = &r.retry {
        let attempts = retry.attempts.unwrap_or(2);
        let codes: Vec<String> = retry.codes.iter().map(u16::to_string).collect();
        let retry_on = if attempts == 0 {
            String::new()
        } else {
            std::iter::once("connect-failure,refused-stream,unavailable,cancelled".to_string())
                .chain(codes)
                .collect::<Vec<_>>()
                .join(",")
        };
        base.retries = Some(HttpRetry {
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            retry_on: Some(retry_on),
            backoff: retry.backoff.clone(),
            ..HttpRetry::default()
        });
    }
    if let Some(per_try) = r.timeouts.as_ref().and_then(|t| nonzero(&t.backend_request)) {
        match base.retries.as_mut() {
            Some(retries) => retries.per_try_timeout = Some(per_try),
            None => base.timeout = Some(per_try),
        }
    }
}

/// The Istio rules of one match, with the redirect and rewrite each path needs.
fn unit(m: &HttpRouteMatch, a: &Action) -> Unit {
    let kind = m.path.as_ref().and_then(|p| p.kind.as_deref()).unwrap_or("PathPrefix");
    let value = m.path.as_ref().and_then(|p| p.value.clone()).unwrap_or_else(|| "/".into());
    let mut headers = BTreeMap::new();
    for h in &m.headers {
        headers.insert(h.name.to_ascii_lowercase(), string_match(h.kind.as_deref(), &h.value));
    }
    let mut query = BTreeMap::new();
    for q in &m.query_params {
        query.insert(q.name.clone(), string_match(q.kind.as_deref(), &q.value));
    }
    let method = m.method.as_ref().map(|v| StringMatch { exact: Some(v.clone()), ..StringMatch::default() });
    let request = |uri: StringMatch| HttpMatchRequest {
        uri: Some(uri),
        headers: headers.clone(),
        query_params: query.clone(),
        method: method.clone(),
        ..HttpMatchRequest::default()
    };
    let prefix = if value == "/" { "/".to_string() } else { value.strip_suffix('/').unwrap_or(&value).to_string() };
    let (rank_kind, rank_len, routes) = match kind {
        "Exact" => (3, value.len(), vec![with_paths(a, request(exact(&value)), Paths::Whole)]),
        "RegularExpression" => {
            let re = StringMatch { regex: Some(value.clone()), ..StringMatch::default() };
            (1, value.len(), vec![with_paths(a, request(re), Paths::Whole)])
        }
        _ if prefix == "/" => (2, 1, vec![with_paths(a, request(starts("/")), Paths::Under)]),
        _ => (
            2,
            prefix.len(),
            vec![
                with_paths(a, request(exact(&prefix)), Paths::Whole),
                with_paths(a, request(starts(&format!("{prefix}/"))), Paths::Under),
            ],
        ),
    };
    let catch_all = kind == "PathPrefix" && prefix == "/" && headers.is_empty() && query.is_empty() && method.is_none();
    Unit { rank: (!catch_all, rank_kind, rank_len, method.is_some(), headers.len(), query.len()), routes }
}

fn exact(v: &str) -> StringMatch {
    StringMatch { exact: Some(v.to_string()), ..StringMatch::default() }
}

fn starts(v: &str) -> StringMatch {
    StringMatch { prefix: Some(v.to_string()), ..StringMatch::default() }
}

fn string_match(kind: Option<&str>, value: &str) -> StringMatch {
    match kind {
        Some("RegularExpression") => StringMatch { regex: Some(value.to_string()), ..StringMatch::default() },
        _ => exact(value),
    }
}

/// Which part of the path an Istio rule matched: all of it (`exact`, `regex`, the bare prefix), or
/// the segments of a `PathPrefix` (the `prefix /foo/` rule, whose match includes the slash).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paths {
    Whole,
    Under,
}

/// `ReplacePrefixMatch R` for a rule matching `paths`: the whole path becomes `R`; under the
/// prefix, the matched `/foo/` becomes `R/` (or `/` when `R` is `/`).
fn replaced_prefix(r: &str, paths: Paths) -> String {
    let r = r.trim_end_matches('/');
    match (r.is_empty(), paths) {
        (true, _) => "/".to_string(),
        (false, Paths::Whole) => r.to_string(),
        (false, Paths::Under) => format!("{r}/"),
    }
}

fn with_paths(a: &Action, m: HttpMatchRequest, paths: Paths) -> HttpRoute {
    let mut route = a.base.clone();
    route.matches = vec![m];
    if let Some(rd) = &a.redirect {
        let (uri, prefix_rewrite) = match &rd.path {
            Some(PathModifier { kind, replace_full_path: Some(p), .. }) if kind == "ReplaceFullPath" => {
                (Some(p.clone()), None)
            }
            Some(PathModifier { kind, replace_prefix_match: Some(p), .. }) if kind == "ReplacePrefixMatch" => {
                let r = replaced_prefix(p, paths);
                if paths == Paths::Whole {
                    (Some(r), None)
                } else {
                    (None, Some(r))
                }
            }
            _ => (None, None),
        };
        let derive = match (rd.port, &rd.scheme) {
            (Some(_), _) => None,
            (None, Some(_)) => Some(RedirectPortSelection::FromProtocolDefault),
            (None, None) => Some(RedirectPortSelection::FromRequestPort),
        };
        route.route.clear();
        route.direct_response = None;
        route.redirect = Some(HttpRedirect {
            uri,
            prefix_rewrite,
            authority: rd.hostname.clone(),
            port: rd.port,
            derive_port: derive,
            scheme: rd.scheme.clone(),
            // The API's default (the CRD sets it where an API server applies defaults).
            redirect_code: u32::from(rd.status_code.unwrap_or(302)),
        });
    }
    if let Some(rw) = &a.rewrite {
        let mut rewrite = HttpRewrite { authority: rw.hostname.clone(), ..HttpRewrite::default() };
        match &rw.path {
            Some(PathModifier { kind, replace_full_path: Some(p), .. }) if kind == "ReplaceFullPath" => {
                rewrite.uri_regex_rewrite = Some(RegexRewrite { pattern: "/.*".into(), rewrite: p.clone() });
            }
            Some(PathModifier { kind, replace_prefix_match: Some(p), .. }) if kind == "ReplacePrefixMatch" => {
                rewrite.uri = Some(replaced_prefix(p, paths));
            }
            _ => {}
        }
        if rewrite != HttpRewrite::default() {
            route.rewrite = Some(rewrite);
        }
    }
    route
}

/// Istio `createCorsFilter`: origins `*` → any origin, a single trailing `*` → a prefix, other
/// wildcards → a regex, others exact; credentials only when true; preflights that do not match
/// are answered without CORS headers (`IGNORE`).
fn cors(c: &crate::raw::gateway_api::Opaque) -> crate::raw::CorsPolicy {
    let strings = |key: &str| -> Vec<String> {
        c.get(key)
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let origin = |o: String| -> StringMatch {
        if o == "*" {
            return StringMatch {
                regex: Some(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s?#]+$".into()),
                ..StringMatch::default()
            };
        }
        match o.matches('*').count() {
            0 => exact(&o),
            1 if o.ends_with('*') => starts(o.trim_end_matches('*')),
            _ => {
                let parts: Vec<String> = o.split('*').map(regex::escape).collect();
                StringMatch { regex: Some(format!("^{}$", parts.join(".*"))), ..StringMatch::default() }
            }
        }
    };
    let max_age = c.get("maxAge").and_then(serde_yaml::Value::as_u64).filter(|s| *s > 0).map(|s| format!("{s}s"));
    crate::raw::CorsPolicy {
        allow_origins: strings("allowOrigins").into_iter().map(origin).collect(),
        allow_methods: strings("allowMethods"),
        allow_headers: strings("allowHeaders"),
        expose_headers: strings("exposeHeaders"),
        max_age,
        allow_credentials: c.get("allowCredentials").and_then(serde_yaml::Value::as_bool).filter(|b| *b),
        unmatched_preflights: Some(crate::raw::UnmatchedPreflights::Ignore),
        ..crate::raw::CorsPolicy::default()
    }
}

/// A Gateway API duration that turns the timeout off: empty or zero (`0s`, `0ms`, `0.0s`).
fn disables(duration: &str) -> bool {
    duration.chars().take_while(|c| c.is_ascii_digit() || *c == '.').all(|c| c == '0' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_duration_of_any_unit_turns_the_timeout_off() {
        for off in ["", "0", "0s", "0ms", "00s", "0.0s"] {
            assert!(disables(off), "{off}");
        }
        for on in ["500ms", "1s", "10s", "0.5s", "1h"] {
            assert!(!disables(on), "{on}");
        }
    }

    #[test]
    fn replace_prefix_match_keeps_what_follows_the_prefix() {
        assert_eq!(replaced_prefix("/one", Paths::Whole), "/one");
        assert_eq!(replaced_prefix("/one", Paths::Under), "/one/");
        assert_eq!(replaced_prefix("/one/", Paths::Under), "/one/");
        assert_eq!(replaced_prefix("/", Paths::Whole), "/");
        assert_eq!(replaced_prefix("/", Paths::Under), "/");
        assert_eq!(replaced_prefix("", Paths::Under), "/");
    }
}
