//! The parts of the security kinds: rules, sources, operations, conditions, JWT rules.

use crate::diagnostic::{Code, Reporter};
use crate::raw::{bracketed, Action, Condition, JwtRule, Operation, Rule, Source};

/// Istio `ValidateAuthorizationPolicy`, one rule (`i`, 0-based as Istio numbers them).
pub(super) fn rule(action: Action, rule: &Rule, i: usize, r: &mut Reporter<'_>) {
    let at = format!("spec.rules[{i}]");
    let mut from_exists = false;
    let mut tcp_in_from = false;
    if let Some(from) = &rule.from {
        if from.is_empty() {
            r.error(Code::Policy, format!("{at}.from"), format!("`from` must not be empty, found at rule {i}"));
        }
        for (j, f) in from.iter().enumerate() {
            let sat = format!("{at}.from[{j}].source");
            match &f.source {
                None => {
                    r.error(Code::Policy, sat, format!("`from.source` must not be nil, found at rule {i}"));
                }
                Some(s) => {
                    from_exists = true;
                    tcp_in_from |= source_has_tcp_fields(s);
                    source(action, s, &sat, i, r);
                }
            }
        }
    }
    let mut to_exists = false;
    let mut tcp_in_to = false;
    if let Some(to) = &rule.to {
        if to.is_empty() {
            r.error(Code::Policy, format!("{at}.to"), format!("`to` must not be empty, found at rule {i}"));
        }
        for (j, t) in to.iter().enumerate() {
            let oat = format!("{at}.to[{j}].operation");
            match &t.operation {
                None => {
                    r.error(Code::Policy, oat, format!("`to.operation` must not be nil, found at rule {i}"));
                }
                Some(o) => {
                    to_exists = true;
                    tcp_in_to |= o.ports.is_some() || o.not_ports.is_some();
                    operation(o, &oat, i, r);
                }
            }
        }
    }
    for (j, c) in rule.when.iter().flatten().enumerate() {
        condition(action, c, &format!("{at}.when[{j}]"), r);
    }
    if action == Action::Deny && ((from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to)) {
        r.warn(
            Code::Policy,
            at,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
        );
    }
}

fn source_has_tcp_fields(s: &Source) -> bool {
    [
        &s.principals,
        &s.not_principals,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.namespaces,
        &s.not_namespaces,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &s.service_accounts,
        &s.not_service_accounts,
    ]
    .iter()
    .any(|l| l.is_some())
}

fn present(l: &Option<Vec<String>>) -> bool {
    l.as_ref().is_some_and(|l| !l.is_empty())
}

fn source(action: Action, s: &Source, at: &str, i: usize, r: &mut Reporter<'_>) {
    let lists = [
        ("Principals", "principals", &s.principals),
        ("RequestPrincipals", "requestPrincipals", &s.request_principals),
        ("Namespaces", "namespaces", &s.namespaces),
        ("IpBlocks", "ipBlocks", &s.ip_blocks),
        ("RemoteIpBlocks", "remoteIpBlocks", &s.remote_ip_blocks),
        ("NotPrincipals", "notPrincipals", &s.not_principals),
        ("NotRequestPrincipals", "notRequestPrincipals", &s.not_request_principals),
        ("NotNamespaces", "notNamespaces", &s.not_namespaces),
        ("NotIpBlocks", "notIpBlocks", &s.not_ip_blocks),
        ("NotRemoteIpBlocks", "notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ];
    let accounts = [
        ("ServiceAccounts", "serviceAccounts", &s.service_accounts),
        ("NotServiceAccounts", "notServiceAccounts", &s.not_service_accounts),
    ];
    let domains = [
        ("TrustDomains", "trustDomains", &s.trust_domains),
        ("NotTrustDomains", "notTrustDomains", &s.not_trust_domains),
    ];
    let identities =
        present(&s.principals) || present(&s.not_principals) || present(&s.namespaces) || present(&s.not_namespaces);
    if identities && (present(&s.service_accounts) || present(&s.not_service_accounts)) {
        r.error(
            Code::Policy,
            at,
            format!("cannot set serviceAccounts with namespaces or principals, found at rule {i}"),
        );
    }
    if !lists.iter().chain(&accounts).chain(&domains).any(|(_, _, l)| present(l)) {
        r.error(Code::Policy, at, format!("`from.source` must not be empty, found at rule {i}"));
    }
    for (name, field, list) in lists {
        empty_values(name, list, &format!("{at}.{field}"), r);
    }
    for (_, field, list) in [&lists[3], &lists[4], &lists[8], &lists[9]] {
        for v in list.iter().flatten().filter(|v| !v.is_empty()) {
            if let Err(e) = ip(v) {
                r.error(Code::Policy, format!("{at}.{field}"), e);
            }
        }
    }
    for (name, field, list) in accounts {
        for v in list.iter().flatten() {
            if let Err(e) = service_account(v, name) {
                r.error(Code::Policy, format!("{at}.{field}"), e);
            }
        }
    }
    for (name, field, list) in domains {
        for v in list.iter().flatten() {
            if let Err(e) = wildcard_value(v, name).and_then(|()| trust_domain(v, name)) {
                r.error(Code::Policy, format!("{at}.{field}"), e);
            }
        }
    }
    if action == Action::Custom {
        custom_source(s, at, r);
    }
}

/// Istio: a CUSTOM policy cannot match identities (ext_authz runs before authentication).
fn custom_source(s: &Source, at: &str, r: &mut Reporter<'_>) {
    {
        let custom = [
            ("From.Namespaces", &s.namespaces),
            ("From.NotNamespaces", &s.not_namespaces),
            ("From.ServiceAccounts", &s.service_accounts),
            ("From.NotServiceAccounts", &s.not_service_accounts),
            ("From.TrustDomains", &s.trust_domains),
            ("From.NotTrustDomains", &s.not_trust_domains),
            ("From.Principals", &s.principals),
            ("From.NotPrincipals", &s.not_principals),
            ("From.RequestPrincipals", &s.request_principals),
            ("From.NotRequestPrincipals", &s.not_request_principals),
        ];
        for (name, list) in custom {
            if present(list) {
                r.error(Code::Policy, at, format!("{name} is currently not supported with CUSTOM action"));
            }
        }
    }
}

/// Istio `CheckEmptyValues`.
fn empty_values(name: &str, list: &Option<Vec<String>>, at: &str, r: &mut Reporter<'_>) {
    if list.iter().flatten().any(String::is_empty) {
        r.error(Code::Policy, at, format!("empty value not allowed, found in {name}"));
    }
}

/// Istio `ValidateIPs` for one value: a CIDR when it has a `/`, else an address.
fn ip(v: &str) -> Result<(), String> {
    if v.contains('/') {
        v.parse::<ipnet::IpNet>().map(|_| ()).map_err(|e| format!("bad CIDR range ({v}): {e}"))
    } else {
        v.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| format!("bad IP address ({v})"))
    }
}

/// Istio `ValidatePorts` for one value.
fn port(v: &str) -> Result<(), String> {
    match v.parse::<u32>() {
        Ok(p) if p <= 65535 => Ok(()),
        Ok(_) => Err(format!("bad port ({v}): <nil>")),
        Err(e) => Err(format!("bad port ({v}): {e}")),
    }
}

/// Istio `CheckServiceAccount` for one value.
fn service_account(v: &str, name: &str) -> Result<(), String> {
    let format = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
    if v.is_empty() {
        return Err(format!("empty value not allowed, found in {name}"));
    }
    if v.contains('*') {
        return Err(format!("wildcard not allowed, found in {name}"));
    }
    if v.matches('/').count() > 1 {
        return Err(format!("{format}, found {v:?} in {name}"));
    }
    if v.len() > 320 {
        return Err(format!("value cannot exceed 320 characters, found {v:?} in {name}"));
    }
    match v.split_once('/') {
        Some(("", _)) => Err(format!("{format}, found empty namespace {v:?} in {name}")),
        Some((_, "")) => Err(format!("{format}, found empty serviceAccount {v:?} in {name}")),
        _ => Ok(()),
    }
}

/// Istio `CheckWildcardValues` for one value.
fn wildcard_value(v: &str, name: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("empty value not allowed, found in {name}"));
    }
    match v.matches('*').count() {
        0 => Ok(()),
        1 if v == "*" || v.starts_with('*') || v.ends_with('*') => Ok(()),
        1 => Err(format!("wildcard is only allowed at the start or end, found in {name}: {v:?}")),
        _ => Err(format!("at most one wildcard is allowed, found in {name}: {v:?}")),
    }
}

fn trust_domain(v: &str, name: &str) -> Result<(), String> {
    if v.contains('/') {
        return Err(format!("trust domain must not contain '/', found in {name}: {v:?}"));
    }
    Ok(())
}

fn operation(o: &Operation, at: &str, i: usize, r: &mut Reporter<'_>) {
    let lists = [
        ("Ports", "ports", &o.ports),
        ("Methods", "methods", &o.methods),
        ("Paths", "paths", &o.paths),
        ("Hosts", "hosts", &o.hosts),
        ("NotPorts", "notPorts", &o.not_ports),
        ("NotMethods", "notMethods", &o.not_methods),
        ("NotPaths", "notPaths", &o.not_paths),
        ("NotHosts", "notHosts", &o.not_hosts),
    ];
    if !lists.iter().any(|(_, _, l)| present(l)) {
        r.error(Code::Policy, at, format!("`to.operation` must not be empty, found at rule {i}"));
    }
    for (name, field, list) in lists {
        empty_values(name, list, &format!("{at}.{field}"), r);
    }
    for (field, list) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for v in list.iter().flatten().filter(|v| !v.is_empty()) {
            if let Err(e) = port(v) {
                r.error(Code::Policy, format!("{at}.{field}"), e);
            }
        }
    }
    for (name, field, list) in [("Paths", "paths", &o.paths), ("NotPaths", "notPaths", &o.not_paths)] {
        for v in list.iter().flatten() {
            if let Err(e) = path_template(v, name) {
                r.error(Code::Policy, format!("{at}.{field}"), e);
            }
        }
    }
}

/// Istio `CheckValidPathTemplate` for one path.
fn path_template(path: &str, name: &str) -> Result<(), String> {
    let is_template = path.contains("{*}") || path.contains("{**}");
    let trimmed = path.trim_matches('/');
    let literal =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b));
    let mut found_any = false;
    for segment in trimmed.split('/') {
        match segment {
            "{*}" | "{**}" if found_any => {
                return Err(format!("invalid or unsupported path {trimmed}, found in {name}. {{**}} is not the last operator"))
            }
            "{*}" => {}
            "{**}" => found_any = true,
            s if s.contains('{') || s.contains('}') => {
                return Err(format!(
                    "invalid or unsupported path {trimmed}, found in {name}. Contains '{{' or '}}' beyond a supported path template"
                ))
            }
            s if is_template && !literal(s) => {
                return Err(format!(
                    "invalid or unsupported path {trimmed}, found in {name}. Contains segment {s} with invalid string literal"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Istio `ValidateAttribute` (and the checks around it in `ValidateAuthorizationPolicy`).
fn condition(action: Action, c: &Condition, at: &str, r: &mut Reporter<'_>) {
    let key = c.key.as_str();
    if key.is_empty() {
        r.error(Code::Policy, format!("{at}.key"), "`key` must not be empty");
        return;
    }
    if !present(&c.values) && !present(&c.not_values) {
        r.error(Code::Policy, at, format!("at least one of `values` or `notValues` must be set for key {key}"));
    }
    if action == Action::Custom
        && (matches!(key, "source.namespace" | "source.serviceAccount" | "source.trustDomain" | "source.principal")
            || key.starts_with("request.auth."))
    {
        r.error(Code::Policy, format!("{at}.key"), format!("{key} is currently not supported with CUSTOM action"));
    }
    for (what, list, field) in [("value", &c.values, "values"), ("notValue", &c.not_values, "notValues")] {
        if let Err(e) = attribute(key, list.as_deref().unwrap_or_default()) {
            r.error(Code::Policy, format!("{at}.{field}"), format!("invalid `{what}` for `key` {key}: {e}"));
        }
    }
    if key.starts_with("experimental.envoy.filters.") {
        r.error(
            Code::Unsupported,
            format!("{at}.key"),
            format!("{key} reads Envoy filter metadata, which Pylon does not have"),
        )
        .hint = Some("Pylon refuses a condition it cannot evaluate rather than ignore it".into());
    } else if (key.starts_with("request.headers[") && bracketed(key, "request.headers").is_none_or(|n| n.len() != 1))
        || (key.starts_with("request.auth.claims[") && bracketed(key, "request.auth.claims").is_none())
    {
        // Istio accepts `request.headersX[a]` and `claims[a]b`; Pylon cannot tell what they mean.
        r.error(Code::Policy, format!("{at}.key"), format!("bad key ({key}): should have format a[b]"));
    } else if let Some(name) = bracketed(key, "request.headers").and_then(|n| n.into_iter().next()) {
        let pseudo = matches!(name.to_ascii_lowercase().as_str(), ":authority" | ":method" | ":path");
        let token = crate::validate::names::is_token(&name);
        if !(pseudo || token) {
            r.error(
                Code::Unsupported,
                format!("{at}.key"),
                format!("{name:?} is not a header Pylon can read (pseudo-headers: :authority, :method, :path)"),
            );
        }
    }
}

/// Istio `ValidateAttribute` for the values of one key.
fn attribute(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    let each = |f: &dyn Fn(&str) -> Result<(), String>| values.iter().try_for_each(|v| f(v));
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => each(&ip),
        "destination.port" => each(&port),
        "source.serviceAccount" => each(&|v| service_account(v, key)),
        "source.trustDomain" => each(&|v| wildcard_value(v, key)),
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(()),
        "destination.namespace" => Err(format!("attribute {key} is replaced by the metadata.namespace")),
        "destination.name" | "destination.user" => {
            Err(format!("deprecated attribute {key}: only supported in v1alpha1"))
        }
        k if k.starts_with("destination.labels") => {
            Err(format!("attribute {key} is replaced by the workload selector"))
        }
        k if k.starts_with("request.headers")
            || k.starts_with("request.auth.claims")
            || k.starts_with("experimental.envoy.filters.") =>
        {
            map_key(k)
        }
        _ => Err(format!("unknown attribute: {key}")),
    }
}

/// Istio `validateMapKey`: `a[b]` with something between the brackets.
fn map_key(key: &str) -> Result<(), String> {
    match key.find('[') {
        Some(open) if key.ends_with(']') && open > 0 && open + 2 < key.len() => Ok(()),
        _ => Err(format!("bad key ({key}): should have format a[b]")),
    }
}

/// Istio `validateJwtRule` and `warnPrivateJwksKeys`.
pub(super) fn jwt_rule(rule: &JwtRule, at: &str, r: &mut Reporter<'_>) {
    for (j, a) in rule.audiences.iter().enumerate() {
        if a.is_empty() {
            r.error(Code::Jwt, format!("{at}.audiences[{j}]"), "audience must be non-empty string");
        }
    }
    if rule.issuer.is_empty() && rule.jwks_uri.is_empty() {
        r.error(Code::Jwt, format!("{at}.issuer"), "issuer or jwksUri must be non-empty string");
    }
    if !rule.jwks_uri.is_empty() {
        if let Err(e) = jwks_uri(&rule.jwks_uri) {
            r.error(Code::Jwt, format!("{at}.jwksUri"), e);
        } else if https_ip(&rule.jwks_uri) {
            r.error(
                Code::Unsupported,
                format!("{at}.jwksUri"),
                "an https key set at an IP address cannot be verified by Pylon (its certificate check needs a host name)",
            )
            .hint = Some("name the key set server by a DNS name its certificate carries".into());
        }
    }
    if !rule.jwks_uri.is_empty() && !rule.jwks.is_empty() {
        r.error(Code::Jwt, format!("{at}.jwks"), "only one of jwks or jwksUri can be set");
    }
    if !rule.jwks.is_empty() {
        jwks(&rule.jwks, &format!("{at}.jwks"), r);
    }
    if rule.jwks_uri.is_empty() && rule.jwks.is_empty() && !rule.issuer.is_empty() {
        r.error(
            Code::Unsupported,
            format!("{at}.jwksUri"),
            "neither jwks nor jwksUri is set: Istio discovers the keys from the issuer's OpenID configuration, which this version does not do",
        )
        .hint = Some("set jwksUri to the jwks_uri of the issuer's /.well-known/openid-configuration".into());
    }
    jwt_locations(rule, at, r);
    if let Some(t) = &rule.timeout {
        super::super::check_duration(r, &format!("{at}.timeout"), t);
    }
}

fn jwt_locations(rule: &JwtRule, at: &str, r: &mut Reporter<'_>) {
    for (j, h) in rule.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            r.error(Code::Jwt, format!("{at}.fromHeaders[{j}].name"), "location header name must be non-empty string");
        }
    }
    for (j, q) in rule.from_params.iter().enumerate() {
        if q.is_empty() {
            r.error(Code::Jwt, format!("{at}.fromParams[{j}]"), "location query must be non-empty string");
        }
    }
    for (j, c) in rule.from_cookies.iter().enumerate() {
        if c.is_empty() {
            r.error(Code::Jwt, format!("{at}.fromCookies[{j}]"), "cookie name must be non-empty string");
        }
    }
    for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
        let cat = format!("{at}.outputClaimToHeaders[{j}]");
        if c.header.is_empty() || c.claim.is_empty() {
            r.error(Code::Jwt, cat, "outputClaimToHeaders header and claim value must be non-empty string");
        } else if !c.header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            r.error(Code::Jwt, format!("{cat}.header"), format!("header name {} is not a valid header name", c.header));
        }
    }
}

/// `https://` with an IP literal as the host.
fn https_ip(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("https://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.parse::<std::net::IpAddr>().is_ok()
}

/// Istio `ParseJwksURI`.
fn jwks_uri(uri: &str) -> Result<(), String> {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
    if scheme != "http" && scheme != "https" {
        return Err(format!("URI scheme {scheme:?} is not supported"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let port =
        authority.rsplit_once(':').filter(|(h, _)| !h.ends_with(']') || authority.starts_with('[')).map(|(_, p)| p);
    match port {
        Some(p) if !authority.ends_with(']') && p.parse::<u16>().is_err() => {
            Err(format!("parse {uri:?}: invalid port \":{p}\" after host"))
        }
        _ if authority.is_empty() => Err(format!("jwksUri {uri:?} has no host")),
        _ => Ok(()),
    }
}

/// The inline key set must parse; private key material is warned about.
fn jwks(text: &str, at: &str, r: &mut Reporter<'_>) {
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(text);
    let keys = match parsed {
        Ok(v) => v.get("keys").and_then(|k| k.as_array().cloned()),
        Err(e) => {
            r.error(Code::Jwt, at, format!("jwks parse error: {e}"));
            return;
        }
    };
    let Some(keys) = keys else {
        r.error(Code::Jwt, at, "jwks parse error: the key set has no \"keys\" list");
        return;
    };
    for (i, k) in keys.iter().enumerate() {
        let private = k.get("d").is_some() || k.get("kty").and_then(|t| t.as_str()) == Some("oct");
        if private {
            r.warn(
                Code::Jwt,
                at,
                format!(
                    "jwks key at index {i} contains private key material; only public keys are used for verification"
                ),
            );
        }
    }
}
