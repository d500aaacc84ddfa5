//! Route actions and per-route policies: redirects, direct responses, header operations, rewrite,
//! timeout, retries, fault injection, mirrors and CORS, as Istio translates them.

use base64::Engine;

use super::route::destination;
use super::select::Rule;
use super::Ctx;
use crate::matcher::{RouteMatch, StringMatcher};
use crate::model::Duration;
use crate::raw::{self, Headers, HttpDirectResponse, HttpRedirect, RedirectPortSelection};
use crate::table::{Cors, Fault, FaultAbort, HeaderOps, Mirror, Redirect, RetryPolicy, Rewrite, Route, RouteAction};
use crate::validate::names::is_authority;

/// Istio `ApplyRedirect`; `None` when the redirect cannot be generated.
pub(super) fn redirect(r: &HttpRedirect, matcher: &RouteMatch, port: u16, tls: bool) -> Option<RouteAction> {
    let code = match r.redirect_code {
        0 | 301 => 301,
        c @ (302 | 303 | 307 | 308) => c as u16,
        _ => return None,
    };
    let mut new_port = match (r.port, r.derive_port) {
        (Some(p), _) => u16::try_from(p).ok(),
        // Istio: routes are built per server port, so the request port is the server port.
        (None, Some(RedirectPortSelection::FromRequestPort)) => Some(port),
        _ => None,
    };
    let scheme = r.scheme.clone().filter(|s| !s.is_empty());
    // Istio does not write an explicit :80 for http or :443 for https; without a scheme, the
    // server's (a server with `tls` counts as https, as in Istio's `ApplyRedirect`).
    let effective = scheme.as_deref().unwrap_or(if tls { "https" } else { "http" });
    if matches!((effective, new_port), ("http", Some(80)) | ("https", Some(443))) {
        new_port = None;
    }
    let prefix_rewrite = r.prefix_rewrite.clone().filter(|_| matches!(matcher.path.matcher, StringMatcher::Prefix(_)));
    Some(RouteAction::Redirect(Redirect {
        code,
        scheme,
        authority: r.authority.clone().filter(|a| !a.is_empty()),
        port: new_port,
        uri: r.uri.clone().filter(|u| !u.is_empty()),
        prefix_rewrite,
    }))
}

/// Istio `ApplyDirectResponse`.
pub(super) fn direct_response(dr: &HttpDirectResponse) -> RouteAction {
    let body = dr.body.as_ref().and_then(|b| match (&b.string, &b.bytes) {
        (Some(s), _) => Some(s.clone().into_bytes()),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD.decode(encoded).ok(),
        (None, None) => None,
    });
    RouteAction::DirectResponse { status: u16::try_from(dr.status).unwrap_or(500), body }
}

/// Istio `TranslateHeadersOperations`: `:authority` / `host` in request set or add is a host rewrite.
pub(super) fn header_ops(h: &Headers) -> HeaderOps {
    let mut ops = HeaderOps::default();
    // Envoy format strings: `%%` is a literal `%` (variables are rejected by validation).
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.replace("%%", "%"))).collect::<Vec<_>>()
    };
    if let Some(req) = &h.request {
        for (k, v) in pairs(&req.set) {
            if is_authority(&k) {
                ops.authority.get_or_insert(v);
            } else {
                ops.request_set.push((k, v));
            }
        }
        for (k, v) in pairs(&req.add) {
            if is_authority(&k) {
                ops.authority.get_or_insert(v);
            } else {
                ops.request_add.push((k, v));
            }
        }
        ops.request_remove = req.remove.iter().map(|n| n.to_ascii_lowercase()).collect();
    }
    if let Some(resp) = &h.response {
        ops.response_set = pairs(&resp.set);
        ops.response_add = pairs(&resp.add);
        ops.response_remove = resp.remove.iter().map(|n| n.to_ascii_lowercase()).collect();
    }
    ops
}

fn duration(s: Option<&String>) -> Option<Duration> {
    s.and_then(|s| Duration::parse(s).ok())
}

/// A route with every policy of `rule` filled in; the caller sets name, origin, match and action.
pub(super) fn route_extras(r: &Rule<'_>, port: u16, ctx: &mut Ctx<'_, '_>) -> Route {
    let rule = &r.route;
    let mut headers = rule.headers.as_ref().map(header_ops).unwrap_or_default();
    let rewrite = rule.rewrite.as_ref().map(|rw| Rewrite {
        uri: rw.uri.clone().filter(|u| !u.is_empty()),
        uri_regex: rw
            .uri_regex_rewrite
            .as_ref()
            .and_then(|rr| Some((ctx.regexes.get(&rr.pattern, false).ok()?, substitution(&rr.rewrite)))),
        authority: rw.authority.clone().filter(|a| !a.is_empty()),
    });
    // Istio: rewrite.authority wins over a route-level :authority header operation.
    if let Some(a) = rewrite.as_ref().and_then(|rw| rw.authority.clone()) {
        headers.authority = Some(a);
    }
    Route {
        name: String::new(),
        origin: String::new(),
        matcher: RouteMatch::any(),
        action: RouteAction::Forward { destinations: Vec::new(), weighted: false },
        headers,
        gateway_api: r.owner.meta.annotations.get(super::gateway_api::ROUTE_SEMANTICS).is_some_and(|v| v == "gateway"),
        rewrite: rewrite.map(Box::new),
        timeout: duration(rule.timeout.as_ref()),
        retries: rule
            .retries
            .as_ref()
            .or(ctx.sel.default_http_retry_policy.as_ref())
            .map(|r| Box::new(retry_policy(r))),
        fault: rule.fault.as_ref().map(|f| Box::new(fault(f))),
        mirrors: mirrors(r, port, ctx),
        cors: rule.cors_policy.as_ref().map(|c| Box::new(cors(c, ctx))),
        virtual_service: r.owner.meta.key(),
        rule_name: rule.name.clone().unwrap_or_default(),
        rate_limit: None,
        header_policy: None,
        cache: None,
    }
}

/// RE2's substitution syntax (`\1`, used by Istio's `uriRegexRewrite`) in the `regex` crate's
/// (`${1}`); a literal `$` is escaped.
fn substitution(re2: &str) -> String {
    let mut out = String::with_capacity(re2.len() + 8);
    let mut chars = re2.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            ('$', _) => out.push_str("$$"),
            (c, _) => out.push(c),
        }
    }
    out
}

/// Istio's default `retryOn` (since 1.24, without 503).
const DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// Istio's retry translation: numeric `retryOn` entries become retriable status codes; without
/// `retryOn`, Istio's default conditions apply to the given `attempts`.
fn retry_policy(r: &raw::HttpRetry) -> RetryPolicy {
    let mut retry_on = Vec::new();
    let mut codes = Vec::new();
    let on = r.retry_on.as_deref().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_RETRY_ON);
    for policy in on.split(',').filter(|p| !p.is_empty()) {
        match policy.parse::<u16>() {
            Ok(code) => codes.push(code),
            Err(_) => retry_on.push(policy.to_string()),
        }
    }
    if !codes.is_empty() && !retry_on.iter().any(|p| p == "retriable-status-codes") {
        retry_on.push("retriable-status-codes".into());
    }
    RetryPolicy {
        attempts: u32::try_from(r.attempts).unwrap_or(0),
        per_try_timeout: duration(r.per_try_timeout.as_ref()),
        retry_on,
        retriable_status_codes: codes,
        backoff: duration(r.backoff.as_ref()),
        ignore_previous_hosts: r.retry_ignore_previous_hosts != Some(false),
    }
}

/// Istio `TranslateFault`: an omitted percentage injects nothing.
fn fault(f: &raw::HttpFaultInjection) -> Fault {
    let percent =
        |p: Option<&raw::Percent>, legacy: Option<i32>| p.map_or_else(|| f64::from(legacy.unwrap_or(0)), |p| p.value);
    let delay = f
        .delay
        .as_ref()
        .and_then(|d| Some((duration(d.fixed_delay.as_ref())?, percent(d.percentage.as_ref(), d.percent))));
    let abort = f.abort.as_ref().and_then(|a| {
        let what = match (&a.grpc_status, a.http_status) {
            (Some(g), _) => FaultAbort::Grpc(g.clone()),
            (None, Some(code)) => FaultAbort::Http(u16::try_from(code).ok()?),
            (None, None) => return None,
        };
        Some((what, percent(a.percentage.as_ref(), None)))
    });
    Fault { delay, abort }
}

/// `mirror` with `mirrorPercentage` (or the deprecated `mirrorPercent`; default 100), or `mirrors`.
fn mirrors(r: &Rule<'_>, port: u16, ctx: &mut Ctx<'_, '_>) -> Vec<Mirror> {
    let (rule, i) = (&r.route, r.index);
    let mut out = Vec::new();
    if let Some(m) = &rule.mirror {
        let percent = rule.mirror_percentage.map(|p| p.value).or(rule.mirror_percent.map(f64::from)).unwrap_or(100.0);
        let (cluster, name) = destination(r.owner, m, port, &format!("spec.http[{i}].mirror"), ctx);
        out.push(Mirror { cluster, name, percent });
    }
    for (k, m) in rule.mirrors.iter().enumerate() {
        let Some(dest) = &m.destination else { continue };
        let (cluster, name) =
            destination(r.owner, dest, port, &format!("spec.http[{i}].mirrors[{k}].destination"), ctx);
        out.push(Mirror { cluster, name, percent: m.percentage.map_or(100.0, |p| p.value) });
    }
    out
}

fn cors(c: &raw::CorsPolicy, ctx: &mut Ctx<'_, '_>) -> Cors {
    let mut origins: Vec<StringMatcher> = c.allow_origin.iter().map(|o| StringMatcher::Exact(o.clone())).collect();
    for o in &c.allow_origins {
        let m = match (&o.exact, &o.prefix, &o.regex) {
            (Some(e), _, _) => Some(StringMatcher::Exact(e.clone())),
            (None, Some(p), _) => Some(StringMatcher::Prefix(p.clone())),
            (None, None, Some(r)) => ctx.regexes.get(r, true).ok().map(StringMatcher::Regex),
            _ => None,
        };
        origins.extend(m);
    }
    Cors {
        allow_origins: origins,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: duration(c.max_age.as_ref()),
        allow_credentials: c.allow_credentials,
        forward_unmatched_preflights: c.unmatched_preflights != Some(raw::UnmatchedPreflights::Ignore),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_without_retry_on_keep_istio_default_conditions() {
        let p = retry_policy(&raw::HttpRetry { attempts: 3, ..Default::default() });
        assert_eq!(p.attempts, 3);
        assert!(p.retry_on.iter().any(|c| c == "connect-failure"), "{:?}", p.retry_on);
        let p = retry_policy(&raw::HttpRetry { attempts: 1, retry_on: Some("5xx,503".into()), ..Default::default() });
        assert_eq!(p.retry_on, vec!["5xx", "retriable-status-codes"]);
        assert_eq!(p.retriable_status_codes, vec![503]);
    }

    #[test]
    fn set_and_add_of_one_header_keep_both_and_unescape_percent() {
        let h = Headers {
            request: Some(raw::HeaderOperations {
                set: [("X-A".to_string(), "1".to_string())].into(),
                add: [("x-a".to_string(), "100%%".to_string())].into(),
                remove: vec![],
            }),
            response: None,
        };
        let ops = header_ops(&h);
        assert_eq!(ops.request_set, vec![("x-a".to_string(), "1".to_string())]);
        assert_eq!(ops.request_add, vec![("x-a".to_string(), "100%".to_string())]);
    }

    #[test]
    fn re2_substitutions_become_regex_crate_ones() {
        assert_eq!(substitution(r"/customprefix/\2/\1"), "/customprefix/${2}/${1}");
        assert_eq!(substitution(r"/a$b\\c"), "/a$$b\\c");
    }
}
