//! HTTP match validation (Istio `validateHTTPRouteMatchRequest`, `validateStringMatch`).

use std::fmt::Display;

use crate::at::At;

use super::names::{is_dns1123_label, is_jwt_claim, validate_match_header_name, validate_port};
use super::virtual_service::validate_gateway_names;
use super::{check_labels, Regexes};
use crate::diagnostic::{Code, Reporter};
use crate::matcher::MAX_REGEX_LEN;
use crate::raw::{HttpMatchRequest, StringMatch};

pub(super) fn validate_matches(
    matches: &[HttpMatchRequest],
    path: &dyn Display,
    r: &mut Reporter<'_>,
    re: &mut Regexes,
) {
    for (i, m) in matches.iter().enumerate() {
        let matches = At::Field(path, "match");
        let at = At::Index(&matches, i);
        validate_match(m, &at, r, re);
    }
}

fn validate_match(m: &HttpMatchRequest, at: &dyn Display, r: &mut Reporter<'_>, re: &mut Regexes) {
    header_matches(&m.headers, "headers", &At::Field(at, "headers"), r, re);
    header_matches(&m.without_headers, "withoutHeaders", &At::Field(at, "withoutHeaders"), r, re);
    if let Some(uri) = &m.uri {
        one_of(uri, &At::Field(at, "uri"), r);
        if let Some(regex) = &uri.regex {
            validate_regex(regex, "uri", &At::Field(&At::Field(at, "uri"), "regex"), r, re);
        }
    }
    for (field, sm) in [("scheme", &m.scheme), ("method", &m.method), ("authority", &m.authority)] {
        if let Some(sm) = sm {
            string_match(sm, field, &At::Field(at, field), r, re);
        }
    }
    for (name, sm) in &m.query_params {
        string_match(sm, "queryParams", &At::Key(&At::Field(at, "queryParams"), name), r, re);
    }
    if let Some(port) = m.port.filter(|p| *p != 0) {
        if let Err(e) = validate_port(port) {
            r.error(Code::Port, format!("{at}.port"), e);
        }
    }
    if m.stat_prefix.is_some() {
        r.warn(
            Code::NoEffect,
            format!("{at}.statPrefix"),
            "has no effect: it names Envoy's per-route statistics, and Pylon exports Istio's standard metrics only",
        );
    }
    check_labels(r, &At::Field(at, "sourceLabels"), &m.source_labels);
    validate_gateway_names(&m.gateways, &At::Field(at, "gateways"), r);
    if let Some(ns) = m.source_namespace.as_deref().filter(|n| !n.is_empty()) {
        if !is_dns1123_label(ns) {
            r.error(Code::Match, format!("{at}.sourceNamespace"), format!("sourceNamespace match {ns} is invalid"));
        }
    }
}

/// `headers` or `withoutHeaders`: valid names, no JWT claims (not routed on), valid matches.
fn header_matches(
    map: &std::collections::BTreeMap<String, StringMatch>,
    field: &str,
    at: &dyn Display,
    r: &mut Reporter<'_>,
    re: &mut Regexes,
) {
    for (name, sm) in map {
        let path = At::Key(at, name);
        if sm.null {
            r.error(Code::Header, path, format!("header match {name} cannot be null"));
        }
        if let Err(e) = validate_match_header_name(name) {
            r.error(Code::Header, path, e);
        }
        if is_jwt_claim(name) {
            r.error(
                Code::Unsupported,
                path,
                "routing on JWT claims (@request.auth.claims) is not supported by this version (RequestAuthentication and AuthorizationPolicy claims are)",
            );
        }
        // Istio: under withoutHeaders, `regex: "*"` is not RE2 but a presence match (under headers
        // Istio compiles it, and it fails).
        if !(field == "withoutHeaders" && sm.regex.as_deref() == Some("*")) {
            string_match(sm, field, &path, r, re);
        }
    }
}

/// A `StringMatch` is a protobuf oneof: at most one of exact, prefix and regex.
fn one_of(sm: &StringMatch, path: &dyn Display, r: &mut Reporter<'_>) {
    let set = [sm.exact.is_some(), sm.prefix.is_some(), sm.regex.is_some()].iter().filter(|b| **b).count();
    if set > 1 {
        r.error(Code::Match, path, "only one of exact, prefix or regex may be set in a string match");
    }
}

/// Istio `validateStringMatch`: prefixes may not be empty, regexes must compile.
fn string_match(sm: &StringMatch, where_: &str, path: &dyn Display, r: &mut Reporter<'_>, re: &mut Regexes) {
    one_of(sm, path, r);
    if sm.prefix.as_deref() == Some("") {
        r.error(Code::Match, format!("{path}.prefix"), format!("{where_:?}: prefix string match should not be empty"));
    }
    if let Some(regex) = &sm.regex {
        validate_regex(regex, where_, &At::Field(path, "regex"), r, re);
    }
}

/// Istio `validateStringMatchRegexp`: non-empty, at most 1024 characters, valid RE2.
pub(super) fn validate_regex(regex: &str, where_: &str, path: &dyn Display, r: &mut Reporter<'_>, re: &mut Regexes) {
    if regex.is_empty() {
        r.error(Code::Regex, path, format!("{where_:?}: regex string match should not be empty"));
    } else if regex.len() > MAX_REGEX_LEN {
        r.error(Code::Regex, path, format!("{where_:?}: regex is too large, max length allowed is {MAX_REGEX_LEN}"));
    } else if let Err(e) = re.get(regex, true) {
        // The regex crate's error ends with a line `error: <what>`; keep only what is wrong.
        let last = e.lines().last().unwrap_or_default().trim();
        let e = last.strip_prefix("error: ").unwrap_or(last).to_string();
        r.error(
            Code::Regex,
            path,
            format!(
                "{where_:?}: error parsing regexp: {e}: `{regex}`; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
            ),
        );
    }
}
