//! HTTP rule validation (Istio `validateHTTPRoute` and the checks it calls).

use std::fmt::Display;

use crate::at::At;

use base64::Engine;

use super::http_match::{validate_matches, validate_regex};
use super::names::{
    is_authority, validate_header_op_name, validate_header_value, validate_port, validate_request_header_op_name,
    validate_wildcard_domain,
};
use super::{check_duration, Regexes};
use crate::diagnostic::{Code, Reporter};
use crate::model::Duration;
use crate::raw::{
    CorsPolicy, Destination, Headers, HttpDirectResponse, HttpFaultInjection, HttpMirrorPolicy, HttpRedirect,
    HttpRetry, HttpRewrite, HttpRoute, HttpRouteDestination, Percent,
};

/// Where a rule sits: Istio validates root and delegate rules differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteKind {
    /// A rule of a VirtualService with hosts and without `delegate`.
    Independent,
    /// A rule with `delegate`.
    Root,
    /// A rule of a delegate VirtualService (no hosts).
    Delegate,
}

pub(super) fn validate_http_route(
    http: &HttpRoute,
    kind: RouteKind,
    path: &dyn Display,
    r: &mut Reporter<'_>,
    re: &mut Regexes,
) {
    validate_conflicts(http, kind, path, r);
    validate_matches(&http.matches, path, r, re);
    if let Some(h) = &http.headers {
        validate_headers(h, &At::Field(path, "headers"), r);
    }
    if let Some(cors) = &http.cors_policy {
        validate_cors(cors, &At::Field(path, "corsPolicy"), r, re);
    }
    if let Some(fault) = &http.fault {
        validate_fault(fault, &At::Field(path, "fault"), r);
    }
    validate_mirror(http, path, r);
    if let Some(redirect) = &http.redirect {
        validate_redirect(redirect, http, &At::Field(path, "redirect"), r);
    }
    if let Some(dr) = &http.direct_response {
        validate_direct_response(dr, &At::Field(path, "directResponse"), r);
    }
    if let Some(retry) = &http.retries {
        validate_retry(retry, &At::Field(path, "retries"), r);
    }
    if let Some(rewrite) = &http.rewrite {
        validate_rewrite(rewrite, &At::Field(path, "rewrite"), r, re);
    }
    validate_authority_rewrite(http, path, r);
    validate_http_destinations(&http.route, &At::Field(path, "route"), r);
    if let Some(t) = &http.timeout {
        check_duration(r, &At::Field(path, "timeout"), t);
    }
}

fn validate_conflicts(http: &HttpRoute, kind: RouteKind, path: &dyn Display, r: &mut Reporter<'_>) {
    let name = http.name.as_deref().unwrap_or_default();
    if kind == RouteKind::Root {
        if http.redirect.is_some() {
            r.error(
                Code::Delegate,
                format!("{path}.redirect"),
                format!("root HTTP route {name} must not specify redirect"),
            );
        }
        if !http.route.is_empty() {
            r.error(Code::Delegate, format!("{path}.route"), format!("root HTTP route {name} must not specify route"));
        }
        return;
    }
    if kind == RouteKind::Delegate && http.delegate.is_some() {
        r.error(Code::Delegate, format!("{path}.delegate"), "delegate HTTP route cannot contain delegate");
    }
    let mut conflict = |field: &str, msg: &str| {
        r.error(Code::Route, format!("{path}.{field}"), msg);
    };
    if http.redirect.is_some() {
        if !http.route.is_empty() {
            conflict("route", "HTTP route cannot contain both route and redirect");
        }
        if http.fault.is_some() {
            conflict("fault", "HTTP route cannot contain both fault and redirect");
        }
        if http.rewrite.is_some() {
            conflict("rewrite", "HTTP route rule cannot contain both rewrite and redirect");
        }
        if http.direct_response.is_some() {
            conflict("directResponse", "HTTP route rule cannot contain both direct_response and redirect");
        }
    } else if http.direct_response.is_some() {
        if !http.route.is_empty() {
            conflict("route", "HTTP route cannot contain both route and direct_response");
        }
        if http.fault.is_some() {
            conflict("fault", "HTTP route cannot contain both fault and direct_response");
        }
        if http.rewrite.is_some() {
            conflict("rewrite", "HTTP route rule cannot contain both rewrite and direct_response");
        }
    } else if http.route.is_empty() && kind != RouteKind::Root {
        r.error(Code::Route, path, "HTTP route, redirect or direct_response is required").hint =
            Some("add route with a destination, or a redirect, or a directResponse".into());
    }
    if http.mirror.is_some() && !http.mirrors.is_empty() {
        r.error(Code::Mirror, format!("{path}.mirrors"), "HTTP route cannot contain both mirror and mirrors");
    }
}

/// Header operations of a rule or a destination.
fn validate_headers(h: &Headers, path: &dyn Display, r: &mut Reporter<'_>) {
    if let Some(req) = &h.request {
        for (op, map) in [("set", &req.set), ("add", &req.add)] {
            for (name, value) in map {
                let section = At::Field(path, "request");
                let field = At::Field(&section, op);
                let at = At::Key(&field, name);
                if let Err(e) = validate_request_header_op_name(name).and_then(|()| validate_header_value(value)) {
                    r.error(Code::Header, at, e);
                } else {
                    unsupported_variables(value, &at, r);
                }
            }
        }
        for (i, name) in req.remove.iter().enumerate() {
            if let Err(e) = validate_header_op_name(name) {
                r.error(Code::Header, format!("{path}.request.remove[{i}]"), e);
            }
        }
    }
    if let Some(resp) = &h.response {
        for (op, map) in [("set", &resp.set), ("add", &resp.add)] {
            for (name, value) in map {
                let section = At::Field(path, "response");
                let field = At::Field(&section, op);
                let at = At::Key(&field, name);
                if let Err(e) = validate_header_op_name(name).and_then(|()| validate_header_value(value)) {
                    r.error(Code::Header, at, e);
                } else {
                    unsupported_variables(value, &at, r);
                }
            }
        }
        for (i, name) in resp.remove.iter().enumerate() {
            if let Err(e) = validate_header_op_name(name) {
                r.error(Code::Header, format!("{path}.response.remove[{i}]"), e);
            }
        }
    }
}

/// Envoy substitutes `%NAME%` variables in header values; Pylon does not yet, so it refuses them
/// rather than sending the text literally.
fn unsupported_variables(value: &str, at: &dyn Display, r: &mut Reporter<'_>) {
    if let Ok(vars) = super::names::header_variables(value) {
        if let Some(var) = vars.first() {
            r.error(Code::Unsupported, at, format!("header value variable %{var}% is not supported by this version"))
                .hint = Some("use a literal value; write a literal % as %%".into());
        }
    }
}

const CORS_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "OPTIONS", "TRACE", "DELETE", "CONNECT"];

fn validate_cors(cors: &CorsPolicy, path: &dyn Display, r: &mut Reporter<'_>, re: &mut Regexes) {
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        let origins = At::Field(path, "allowOrigins");
        let at = At::Index(&origins, i);
        let value = origin.exact.as_deref().or(origin.prefix.as_deref()).or(origin.regex.as_deref()).unwrap_or("");
        if value.is_empty() {
            r.error(Code::Cors, at, format!("'{value}' is not a valid match type for CORS allow origins"));
        } else if let Some(regex) = &origin.regex {
            validate_regex(regex, "corsPolicy.allowOrigins", &at, r, re);
        }
    }
    for (i, m) in cors.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            r.error(Code::Cors, format!("{path}.allowMethods[{i}]"), format!("{m:?} is not a supported HTTP method"));
        }
    }
    for (field, list) in [("allowHeaders", &cors.allow_headers), ("exposeHeaders", &cors.expose_headers)] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" && !super::names::is_token(h) {
                r.error(
                    Code::Cors,
                    format!("{path}.{field}[{i}]"),
                    format!("header name {h} is not a valid header name"),
                );
            }
        }
    }
    if let Some(max_age) = &cors.max_age {
        let at = At::Field(path, "maxAge");
        if check_duration(r, &at, max_age).is_some_and(Duration::finer_than_seconds) {
            r.error(Code::Cors, at, "max_age duration is accurate only to seconds precision");
        }
    }
    if !cors.allow_origin.is_empty() {
        r.warn(
            Code::Cors,
            format!("{path}.allowOrigin"),
            "allowOrigin is deprecated; use allowOrigins with exact matches",
        );
    }
}

fn check_percentage(p: Option<&Percent>, path: &dyn Display, r: &mut Reporter<'_>) {
    let Some(p) = p else { return };
    if p.value < 0.0 || p.value > 100.0 || (p.value > 0.0 && p.value < 0.0001) {
        r.error(Code::Fault, path, format!("percentage {} is neither 0.0, nor in range [0.0001, 100.0]", p.value));
    }
}

fn validate_fault(fault: &HttpFaultInjection, path: &dyn Display, r: &mut Reporter<'_>) {
    if fault.abort.is_none() && fault.delay.is_none() {
        r.error(Code::Fault, path, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(abort) = &fault.abort {
        let at = At::Field(path, "abort");
        check_percentage(abort.percentage.as_ref(), &At::Field(&at, "percentage"), r);
        if let Some(status) = &abort.grpc_status {
            if crate::model::grpc::status_code(status).is_none() {
                r.error(
                    Code::Fault,
                    format!("{at}.grpcStatus"),
                    format!("gRPC status {status:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"),
                );
            }
        } else if abort.http2_error.is_some() {
            r.error(Code::Fault, format!("{at}.http2Error"), "HTTP/2 abort fault injection not supported yet");
        } else if let Some(status) = abort.http_status {
            if !(200..=600).contains(&status) {
                r.error(
                    Code::Fault,
                    format!("{at}.httpStatus"),
                    format!("HTTP status {status} is not in range 200-599"),
                );
            }
        } else {
            r.warn(Code::Fault, at, "abort configured, but error type not set");
        }
    }
    if let Some(delay) = &fault.delay {
        let at = At::Field(path, "delay");
        check_percentage(delay.percentage.as_ref(), &At::Field(&at, "percentage"), r);
        if let Some(d) = &delay.fixed_delay {
            check_duration(r, &At::Field(&at, "fixedDelay"), d);
        }
        if let Some(d) = &delay.exponential_delay {
            check_duration(r, &At::Field(&at, "exponentialDelay"), d);
            r.error(Code::Fault, format!("{at}.exponentialDelay"), "exponentialDelay not supported yet");
        }
        if delay.percent.is_some() {
            r.warn(Code::Fault, format!("{at}.percent"), "percent is deprecated; use percentage");
        }
    }
}

fn validate_mirror(http: &HttpRoute, path: &dyn Display, r: &mut Reporter<'_>) {
    if let Some(value) = http.mirror_percent {
        if value > 100 {
            r.error(
                Code::Mirror,
                format!("{path}.mirrorPercent"),
                format!("mirror_percent must have a max value of 100 (it has {value})"),
            );
        }
        r.warn(
            Code::Mirror,
            format!("{path}.mirrorPercent"),
            r#"using deprecated setting "mirrorPercent", use "mirrorPercentage" instead"#,
        );
    }
    if let Some(p) = &http.mirror_percentage {
        let at = At::Field(path, "mirrorPercentage");
        if p.value > 100.0 {
            r.error(
                Code::Mirror,
                at,
                format!("mirror_percentage must have a max value of 100 (it has {:.6})", p.value),
            );
        } else if p.value < 0.0 {
            r.error(Code::Mirror, at, format!("mirror_percentage must have a min value of 0 (it has {:.6})", p.value));
        }
    }
    if let Some(m) = &http.mirror {
        validate_destination(m, &At::Field(path, "mirror"), r);
    }
    validate_mirrors(&http.mirrors, &At::Field(path, "mirrors"), r);
}

fn validate_mirrors(mirrors: &[HttpMirrorPolicy], path: &dyn Display, r: &mut Reporter<'_>) {
    for (i, m) in mirrors.iter().enumerate() {
        let at = At::Index(path, i);
        let Some(dest) = &m.destination else {
            r.error(Code::Mirror, format!("{at}.destination"), "destination is required for mirrors");
            continue;
        };
        validate_destination(dest, &At::Field(&at, "destination"), r);
        if let Some(p) = &m.percentage {
            if p.value > 100.0 {
                r.error(
                    Code::Mirror,
                    format!("{at}.percentage"),
                    format!("mirror percentage must have a max value of 100 (it has {:.6})", p.value),
                );
            } else if p.value < 0.0 {
                r.error(
                    Code::Mirror,
                    format!("{at}.percentage"),
                    format!("mirror percentage must have a min value of 0 (it has {:.6})", p.value),
                );
            }
        }
    }
}

fn validate_redirect(redirect: &HttpRedirect, http: &HttpRoute, path: &dyn Display, r: &mut Reporter<'_>) {
    let has_port = redirect.port.is_some() || redirect.derive_port.is_some();
    let empty = |s: &Option<String>| s.as_deref().unwrap_or_default().is_empty();
    if empty(&redirect.uri)
        && empty(&redirect.prefix_rewrite)
        && empty(&redirect.authority)
        && !has_port
        && empty(&redirect.scheme)
    {
        r.error(Code::Redirect, path, "redirect must specify URI, authority, scheme, or port");
    }
    if redirect.uri.is_some() && redirect.prefix_rewrite.is_some() {
        r.error(Code::Redirect, path, "redirect may only specify one of uri or prefix_rewrite");
    }
    if redirect.prefix_rewrite.is_some()
        && http.matches.iter().any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        r.error(
            Code::Redirect,
            format!("{path}.prefixRewrite"),
            "redirect prefix_rewrite requires all URI matches to use prefix match type",
        );
    }
    if redirect.port.is_some() && redirect.derive_port.is_some() {
        r.error(Code::Redirect, path, "redirect may only specify one of port or derivePort");
    }
    if redirect.redirect_code != 0 && !(300..=399).contains(&redirect.redirect_code) {
        r.error(
            Code::Redirect,
            format!("{path}.redirectCode"),
            format!("{} is not a valid redirect code, must be 3xx", redirect.redirect_code),
        );
    } else if !matches!(redirect.redirect_code, 0 | 301 | 302 | 303 | 307 | 308) {
        r.error(
            Code::Redirect,
            format!("{path}.redirectCode"),
            format!("redirect code {} is not supported", redirect.redirect_code),
        )
        .hint = Some("use 301, 302, 303, 307 or 308; Istio generates no redirect for other codes".into());
    }
    if redirect.scheme.as_deref().is_some_and(|s| !s.is_empty() && s != "http" && s != "https") {
        r.error(Code::Redirect, format!("{path}.scheme"), r#"invalid redirect scheme, must be "http" or "https""#);
    }
    if let Some(p) = redirect.port.filter(|p| *p > 0) {
        if let Err(e) = validate_port(p) {
            r.error(Code::Redirect, format!("{path}.port"), e);
        }
    }
}

/// Istio's limits on local reply bodies.
const MAX_DIRECT_RESPONSE: usize = 1024 * 1024;
const WARN_DIRECT_RESPONSE: usize = 100 * 1024;

fn validate_direct_response(dr: &HttpDirectResponse, path: &dyn Display, r: &mut Reporter<'_>) {
    if let Some(body) = &dr.body {
        let size = match (&body.string, &body.bytes) {
            (Some(s), _) => Some(s.len()),
            (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(bytes) => Some(bytes.len()),
                Err(e) => {
                    r.error(
                        Code::DirectResponse,
                        format!("{path}.body.bytes"),
                        format!("body.bytes is not valid base64: {e}"),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if body.string.is_some() && body.bytes.is_some() {
            r.error(Code::DirectResponse, format!("{path}.body"), "only one of string or bytes may be set in a body");
        }
        match size {
            Some(n) if n > MAX_DIRECT_RESPONSE => {
                r.error(
                    Code::DirectResponse,
                    format!("{path}.body"),
                    "large direct_responses may impact control plane performance, must be less than 1MB",
                );
            }
            Some(n) if n > WARN_DIRECT_RESPONSE => {
                r.warn(
                    Code::DirectResponse,
                    format!("{path}.body"),
                    "large direct_responses may impact control plane performance",
                );
            }
            _ => {}
        }
    }
    if !(200..=600).contains(&dr.status) {
        r.error(
            Code::DirectResponse,
            format!("{path}.status"),
            format!("HTTP status {} is not in range 200-599", dr.status),
        );
    }
}

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// HTTP status codes Go's `http.StatusText` knows (Istio accepts only these in `retryOn`).
fn known_status(code: u32) -> bool {
    matches!(code, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

fn validate_retry(retry: &HttpRetry, path: &dyn Display, r: &mut Reporter<'_>) {
    if retry.attempts < 0 {
        r.error(Code::Retry, format!("{path}.attempts"), "attempts cannot be negative");
    }
    if retry.attempts == 0
        && (retry.per_try_timeout.is_some() || retry.retry_on.is_some() || retry.retry_remote_localities.is_some())
    {
        r.error(Code::Retry, path, "http retry policy configured when attempts are set to 0 (disabled)");
    }
    if let Some(t) = &retry.per_try_timeout {
        check_duration(r, &At::Field(path, "perTryTimeout"), t);
    }
    if let Some(on) = retry.retry_on.as_deref().filter(|s| !s.is_empty()) {
        for policy in on.split(',') {
            let valid = match policy.parse::<u32>() {
                Ok(code) => known_status(code),
                Err(_) => RETRY_ON.contains(&policy),
            };
            if !valid {
                r.error(Code::Retry, format!("{path}.retryOn"), format!("{policy:?} is not a valid retryOn policy"));
            }
        }
    }
    if let Some(b) = &retry.backoff {
        check_duration(r, &At::Field(path, "backoff"), b);
    }
    retry_no_effect(retry, path, r);
}

/// Retry settings Istio accepts that cannot act at a Pylon gateway.
fn retry_no_effect(retry: &HttpRetry, path: &dyn Display, r: &mut Reporter<'_>) {
    if retry.retry_remote_localities.is_some() {
        r.warn(
            Code::NoEffect,
            format!("{path}.retryRemoteLocalities"),
            "has no effect: Pylon endpoints carry no locality, so every retry may go to any endpoint",
        );
    }
    for (policy, why) in [
        ("retriable-headers", "Istio has no field for the response headers it would retry on"),
        ("http3-post-connect-failure", "Pylon does not speak HTTP/3 to upstreams"),
    ] {
        if retry.retry_on.as_deref().is_some_and(|on| on.split(',').any(|p| p == policy)) {
            r.warn(Code::NoEffect, format!("{path}.retryOn"), format!("{policy} has no effect: {why}"));
        }
    }
}

fn validate_rewrite(rewrite: &HttpRewrite, path: &dyn Display, r: &mut Reporter<'_>, re: &mut Regexes) {
    let uri = rewrite.uri.as_deref().unwrap_or_default();
    let authority = rewrite.authority.as_deref().unwrap_or_default();
    if !uri.is_empty() && rewrite.uri_regex_rewrite.is_some() {
        r.error(Code::Rewrite, path, "rewrite may only contain one of URI or UriRegexRewrite");
    }
    if uri.is_empty() && rewrite.uri_regex_rewrite.is_none() && authority.is_empty() {
        r.error(
            Code::Rewrite,
            path,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified",
        );
    }
    if let Some(rr) = &rewrite.uri_regex_rewrite {
        let at = At::Field(path, "uriRegexRewrite");
        if rr.pattern.is_empty() || rr.rewrite.is_empty() {
            r.error(Code::Rewrite, at, "UriRegexRewrite requires both Rewrite and Match fields to be specified");
        } else if let Err(e) = re.get(&rr.pattern, false) {
            r.error(
                Code::Regex,
                format!("{at}.match"),
                format!("\"HTTPRewrite.UriRegexRewrite.Match\": {e}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"),
            );
        }
    }
}

/// Istio `validateAuthorityRewrite`: the authority may be set once (rewrite or a request header op).
fn validate_authority_rewrite(http: &HttpRoute, path: &dyn Display, r: &mut Reporter<'_>) {
    let mut current = http.rewrite.as_ref().and_then(|rw| rw.authority.clone()).unwrap_or_default();
    let Some(req) = http.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    for (op, map) in [("set", &req.set), ("add", &req.add)] {
        for (k, v) in map.iter().filter(|(k, _)| is_authority(k)) {
            if !current.is_empty() {
                r.error(
                    Code::Header,
                    format!("{path}.headers.request.{op}[{k:?}]"),
                    format!("authority header cannot be set multiple times: have {current:?}, attempting to set {v:?}"),
                );
                return;
            }
            current = v.clone();
        }
    }
}

/// Istio `validateDestination`.
pub(super) fn validate_destination(d: &Destination, path: &dyn Display, r: &mut Reporter<'_>) {
    if d.host == "*" {
        r.error(Code::Destination, format!("{path}.host"), "invalid destination host *");
    } else if let Err(e) = validate_wildcard_domain(&d.host) {
        r.error(Code::Destination, format!("{path}.host"), e);
    }
    if let Some(subset) = d.subset.as_deref().filter(|s| !s.is_empty()) {
        if !super::names::is_dns1123_label(subset) {
            r.error(Code::Destination, format!("{path}.subset"), format!("subset name is invalid: {subset}"));
        }
    }
    if let Some(port) = d.port {
        if let Err(e) = validate_port(port.number) {
            r.error(Code::Destination, format!("{path}.port.number"), e);
        }
    }
}

/// Istio `validateHTTPRouteDestinations`.
fn validate_http_destinations(route: &[HttpRouteDestination], path: &dyn Display, r: &mut Reporter<'_>) {
    let items: Vec<_> = route.iter().map(|d| (d.destination.as_ref(), d.weight, d.headers.as_ref())).collect();
    validate_weighted(&items, path, r);
}

/// Istio `validateHTTPRouteDestinations` / `validateRouteDestinations`: each destination valid, no
/// negative weight, and a non-zero total when there are several. Items are (destination, weight,
/// destination-level headers).
pub(super) fn validate_weighted(
    items: &[(Option<&Destination>, i32, Option<&Headers>)],
    path: &dyn Display,
    r: &mut Reporter<'_>,
) {
    let mut total: i64 = 0;
    for (i, (dest, weight, headers)) in items.iter().enumerate() {
        let at = At::Index(path, i);
        match dest {
            None => {
                r.error(Code::Destination, format!("{at}.destination"), "destination is required");
            }
            Some(dest) => validate_destination(dest, &At::Field(&at, "destination"), r),
        }
        if let Some(h) = headers {
            validate_headers(h, &At::Field(&at, "headers"), r);
        }
        if *weight < 0 {
            r.error(Code::Weight, format!("{at}.weight"), format!("weight {weight} < 0"));
        }
        total += i64::from(*weight);
    }
    if items.len() > 1 && total == 0 {
        r.error(Code::Weight, path, "total destination weight = 0").hint =
            Some("give at least one destination a positive weight".into());
    }
}
