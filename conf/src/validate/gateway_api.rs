//! The Gateway API's own rules for routes (the CRDs' OpenAPI and CEL validation in
//! kubernetes-sigs/gateway-api `apis/v1/httproute_types.go`), and RE2 regexes, which Istio's
//! controller passes to Envoy as they are: a configuration that breaks them is refused here,
//! with the route and the YAML path, instead of being dropped when served.

use super::http_match::validate_regex;
use super::Regexes;
use crate::diagnostic::{Code, Reporter};
use crate::raw::gateway_api::{HttpRouteFilter, HttpRouteRule, HttpValueMatch, KubeHttpRoute};

/// Validates an HTTPRoute.
pub(super) fn http_route(route: &KubeHttpRoute, r: &mut Reporter<'_>, re: &mut Regexes) {
    for (i, rule) in route.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        for (j, m) in rule.matches.iter().enumerate() {
            let at = format!("{at}.matches[{j}]");
            if let Some(p) = &m.path {
                let kind = p.kind.as_deref().unwrap_or("PathPrefix");
                let value = p.value.as_deref().unwrap_or("/");
                match kind {
                    "Exact" | "PathPrefix" if !value.starts_with('/') => {
                        r.error(Code::Match, format!("{at}.path.value"), "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']");
                    }
                    "Exact" | "PathPrefix"
                        if value.contains("//") || value.contains("/./") || value.contains("/../") =>
                    {
                        r.error(Code::Match, format!("{at}.path.value"), "must not contain '//', '/./' or '/../'");
                    }
                    "RegularExpression" => validate_regex(value, "path", &format!("{at}.path.value"), r, re),
                    "Exact" | "PathPrefix" => {}
                    other => {
                        r.error(Code::Match, format!("{at}.path.type"), format!("unsupported value {other:?}: supported values: \"Exact\", \"PathPrefix\", \"RegularExpression\""));
                    }
                }
            }
            values(&m.headers, &format!("{at}.headers"), r, re);
            values(&m.query_params, &format!("{at}.queryParams"), r, re);
        }
        rewrite_needs_one_prefix_match(rule, &at, r);
        timeouts(rule, &at, r);
        for (j, f) in rule.filters.iter().enumerate() {
            filter(f, &format!("{at}.filters[{j}]"), r);
        }
    }
}

fn values(list: &[HttpValueMatch], at: &str, r: &mut Reporter<'_>, re: &mut Regexes) {
    for (k, v) in list.iter().enumerate() {
        if v.kind.as_deref() == Some("RegularExpression") {
            validate_regex(&v.value, &v.name, &format!("{at}[{k}].value"), r, re);
        }
    }
}

/// Durations (GEP-2257: `1h`, `10s`, `500ms`, `1h30m`), and CEL: `backendRequest` no longer than
/// `request`.
fn timeouts(rule: &HttpRouteRule, at: &str, r: &mut Reporter<'_>) {
    let Some(t) = &rule.timeouts else { return };
    let mut parsed = |field: &str, value: &Option<String>| {
        let v = value.as_deref()?;
        match crate::model::Duration::parse(v) {
            Ok(d) => Some(d),
            Err(e) => {
                r.error(Code::Duration, format!("{at}.timeouts.{field}"), e);
                None
            }
        }
    };
    let (request, backend) = (parsed("request", &t.request), parsed("backendRequest", &t.backend_request));
    if let (Some(request), Some(backend)) = (request, backend) {
        if request > crate::model::Duration::default() && backend > request {
            r.error(
                Code::Duration,
                format!("{at}.timeouts.backendRequest"),
                "backendRequest timeout cannot be longer than request timeout",
            );
        }
    }
}

/// CEL: `ReplacePrefixMatch` needs exactly one `PathPrefix` match.
fn rewrite_needs_one_prefix_match(rule: &HttpRouteRule, at: &str, r: &mut Reporter<'_>) {
    let prefix_replaced = rule.filters.iter().any(|f| {
        let path = f
            .url_rewrite
            .as_ref()
            .and_then(|u| u.path.as_ref())
            .or(f.request_redirect.as_ref().and_then(|rd| rd.path.as_ref()));
        path.is_some_and(|p| p.kind == "ReplacePrefixMatch")
    });
    let prefix_matches = rule
        .matches
        .iter()
        .filter(|m| m.path.as_ref().is_none_or(|p| p.kind.as_deref().unwrap_or("PathPrefix") == "PathPrefix"))
        .count();
    if prefix_replaced && (rule.matches.len() > 1 || (!rule.matches.is_empty() && prefix_matches != 1)) {
        r.error(Code::Rewrite, format!("{at}.filters"), "When using URLRewrite or RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified");
    }
}

/// CEL: the field of a filter's type is set, and only that one.
fn filter(f: &HttpRouteFilter, at: &str, r: &mut Reporter<'_>) {
    let set = [
        ("RequestHeaderModifier", f.request_header_modifier.is_some()),
        ("ResponseHeaderModifier", f.response_header_modifier.is_some()),
        ("RequestMirror", f.request_mirror.is_some()),
        ("RequestRedirect", f.request_redirect.is_some()),
        ("URLRewrite", f.url_rewrite.is_some()),
        ("CORS", f.cors.is_some()),
        ("ExternalAuth", f.external_auth.is_some()),
        ("ExtensionRef", f.extension_ref.is_some()),
    ];
    for (kind, present) in set {
        if present != (f.kind == kind) {
            let field = kind[..1].to_ascii_lowercase() + &kind[1..];
            let field = if kind == "URLRewrite" {
                "urlRewrite".to_string()
            } else if kind == "CORS" {
                "cors".to_string()
            } else {
                field
            };
            let rule = if present { "must be nil if the filter.type is not" } else { "must be specified for" };
            r.error(Code::Route, at, format!("filter.{field} {rule} {kind}"));
        }
    }
}
