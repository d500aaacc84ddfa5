//! `GatewayPolicy` validation: what it targets and its modules' settings.

use crate::diagnostic::{Code, Reporter};
use crate::raw::GatewayPolicy;

pub(super) fn validate(p: &GatewayPolicy, r: &mut Reporter<'_>) {
    for (i, t) in p.target_refs.iter().enumerate() {
        let at = format!("spec.targetRefs[{i}]");
        if !t.group.is_empty() && t.group != "networking.istio.io" {
            r.error(Code::Policy, format!("{at}.group"), format!("group {:?} is not networking.istio.io", t.group));
        }
        if t.kind != "Gateway" && t.kind != "VirtualService" {
            r.error(Code::Policy, format!("{at}.kind"), format!("kind {:?} is not Gateway or VirtualService", t.kind));
        }
        if t.name.is_empty() {
            r.error(Code::Policy, format!("{at}.name"), "name must be set");
        }
    }
    if let Some(s) = &p.selector {
        if s.match_labels.is_empty() {
            r.warn(Code::Policy, "spec.selector", "workload selector specified without labels");
        }
    }
    if let Some(h) = &p.headers {
        headers(h, r);
    }
    if let Some(c) = &p.client_address {
        client_address(p, c, r);
    }
    if let Some(c) = &p.cache {
        cache(c, r);
    }
    let security = p.authorization.is_some() || p.request_authentication.is_some();
    if security && p.target_refs.iter().any(|t| t.kind == "VirtualService") {
        r.error(
            Code::Policy,
            "spec.targetRefs",
            "authorization and requestAuthentication bind to the workload, a Gateway or a server: they run before a route is chosen",
        );
    }
    match &p.rate_limit {
        None if p.headers.is_none()
            && p.cache.is_none()
            && p.client_address.is_none()
            && p.authorization.is_none()
            && p.request_authentication.is_none() =>
        {
            r.warn(
                Code::NoEffect,
                "spec",
                "no module is set (rateLimit, headers, cache, clientAddress, authorization, requestAuthentication); the policy has no effect",
            );
        }
        None => {}
        Some(rl) => rate_limit(rl, r),
    }
}

fn headers(h: &crate::raw::HeaderPolicy, r: &mut Reporter<'_>) {
    if !matches!(h.x_forwarded_for.as_str(), "" | "append" | "replace") {
        r.error(
            Code::Policy,
            "spec.headers.xForwardedFor",
            format!("{:?} is not append or replace", h.x_forwarded_for),
        );
    }
    if !matches!(h.request_id.as_str(), "" | "keep" | "generate") {
        r.error(Code::Policy, "spec.headers.requestId", format!("{:?} is not keep or generate", h.request_id));
    }
    let Some(resp) = &h.response else { return };
    let names = resp.set.keys().map(|k| ("set", k)).chain(resp.remove.iter().map(|k| ("remove", k)));
    for (field, name) in names {
        let token = super::names::is_token(name);
        let framing =
            matches!(name.to_ascii_lowercase().as_str(), "content-length" | "transfer-encoding" | "connection");
        if !token || framing {
            r.error(
                Code::Header,
                format!("spec.headers.response.{field}"),
                format!("{name:?} is not a response header a policy may change"),
            );
        }
    }
    for (k, v) in &resp.set {
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            r.error(Code::Header, format!("spec.headers.response.set[{k:?}]"), "the value has a line break or NUL");
        }
    }
}

fn client_address(p: &GatewayPolicy, c: &crate::raw::ClientAddress, r: &mut Reporter<'_>) {
    for (i, cidr) in c.trusted_cidrs.iter().enumerate() {
        if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
            r.error(
                Code::Policy,
                format!("spec.clientAddress.trustedCidrs[{i}]"),
                format!("{cidr:?} is not an IP address or CIDR range"),
            );
        }
    }
    if c.num_trusted_proxies.is_none() && c.trusted_cidrs.is_empty() {
        r.error(Code::Policy, "spec.clientAddress", "set numTrustedProxies or trustedCidrs");
    }
    if p.target_refs.iter().any(|t| t.kind == "VirtualService") {
        r.error(
            Code::Policy,
            "spec.clientAddress",
            "clientAddress binds to the workload, a Gateway or a server: the client address is needed before a route is chosen",
        )
        .hint = Some("put clientAddress in a policy that targets the Gateway (or one of its servers)".into());
    }
}

fn rate_limit(rl: &crate::raw::RateLimit, r: &mut Reporter<'_>) {
    if rl.requests == 0 {
        r.error(Code::Policy, "spec.rateLimit.requests", "requests must be at least 1");
    }
    if !matches!(rl.unit.as_str(), "second" | "minute" | "hour") {
        r.error(Code::Policy, "spec.rateLimit.unit", format!("unit {:?} is not second, minute or hour", rl.unit));
    }
    if rl.burst == Some(0) {
        r.error(Code::Policy, "spec.rateLimit.burst", "burst must be at least 1");
    }
    if !matches!(rl.key.as_str(), "" | "route" | "host" | "client") {
        r.error(Code::Policy, "spec.rateLimit.key", format!("key {:?} is not route, host or client", rl.key));
    }
    if rl.max_keys.is_some_and(|m| m == 0 || m > 1_000_000) {
        r.error(Code::Policy, "spec.rateLimit.maxKeys", "maxKeys must be between 1 and 1000000");
    }
}

fn cache(c: &crate::raw::Cache, r: &mut Reporter<'_>) {
    let size = |field: &str, v: &Option<String>, r: &mut Reporter<'_>| {
        let parsed = v.as_deref().map(crate::model::quantity::bytes)?;
        match parsed {
            Ok(0) => {
                r.error(Code::Policy, format!("spec.cache.{field}"), "must be more than 0 bytes");
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                r.error(Code::Policy, format!("spec.cache.{field}"), e);
                None
            }
        }
    };
    let max = size("maxSize", &c.max_size, r);
    let entry = size("maxEntrySize", &c.max_entry_size, r);
    if entry.unwrap_or(crate::table::CacheRule::DEFAULT_MAX_ENTRY_BYTES)
        > max.unwrap_or(crate::table::CacheRule::DEFAULT_MAX_BYTES)
    {
        r.error(Code::Policy, "spec.cache.maxEntrySize", "is larger than maxSize: no response could be stored");
    }
    let durations = [
        ("defaultTtl", &c.default_ttl),
        ("staleWhileRevalidate", &c.stale_while_revalidate),
        ("staleIfError", &c.stale_if_error),
        ("lockTimeout", &c.lock_timeout),
    ];
    for (field, v) in durations {
        let Some(v) = v else { continue };
        match crate::model::Duration::parse(v) {
            Err(e) => {
                r.error(Code::Policy, format!("spec.cache.{field}"), e);
            }
            Ok(d) if d.as_millis() < 1000 && field != "lockTimeout" => {
                r.error(
                    Code::Policy,
                    format!("spec.cache.{field}"),
                    "must be at least 1s (HTTP caching counts whole seconds)",
                );
            }
            Ok(_) => {}
        }
    }
    let names = c.vary.iter().flatten().map(|n| ("vary", n)).chain(c.key_headers.iter().map(|n| ("keyHeaders", n)));
    for (field, name) in names {
        if name == "*" || !super::names::is_token(name) {
            r.error(Code::Header, format!("spec.cache.{field}"), format!("{name:?} is not a request header name"));
        }
    }
}
