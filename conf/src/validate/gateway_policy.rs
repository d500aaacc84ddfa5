//! `GatewayPolicy` validation: what it targets and its modules' settings.

use crate::diagnostic::{Code, Reporter};
use crate::raw::GatewayPolicy;

pub(super) fn validate(p: &GatewayPolicy, r: &mut Reporter<'_>) {
    for (i, t) in p.target_refs.iter().enumerate() {
        let at = format!("spec.targetRefs[{i}]");
        if !t.group.is_empty() && t.group != "networking.istio.io" {
            r.error(Code::Policy, format!("{at}.group"), format!("group {:?} is not networking.istio.io", t.group));
        }
        if !matches!(t.kind.as_str(), "Gateway" | "VirtualService" | "ServiceEntry") {
            r.error(
                Code::Policy,
                format!("{at}.kind"),
                format!("kind {:?} is not Gateway, VirtualService or ServiceEntry", t.kind),
            );
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
    if let Some(b) = &p.upstream_bind {
        upstream_bind(b, r);
    }
    targets_for_upstream_bind(p, r);
    let security = p.authorization.is_some() || p.request_authentication.is_some();
    if security && p.target_refs.iter().any(|t| t.kind == "VirtualService") {
        r.error(
            Code::Policy,
            "spec.targetRefs",
            "authorization and requestAuthentication bind to the workload, a Gateway or a server: they run before a route is chosen",
        );
    }
    match &p.rate_limit {
        None if !sets_request_modules(p) && p.upstream_bind.is_none() => {
            r.warn(
                Code::NoEffect,
                "spec",
                "no module is set (rateLimit, headers, cache, clientAddress, authorization, requestAuthentication, upstreamBind); the policy has no effect",
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

/// `upstreamBind` is a property of upstream connections, and ServiceEntries name upstreams only:
/// the two go together, and with nothing else.
fn targets_for_upstream_bind(p: &GatewayPolicy, r: &mut Reporter<'_>) {
    let to_service_entry = p.target_refs.iter().any(|t| t.kind == "ServiceEntry");
    let to_traffic = p.target_refs.iter().any(|t| t.kind == "Gateway" || t.kind == "VirtualService");
    if p.upstream_bind.is_some() && to_traffic {
        r.error(
            Code::Policy,
            "spec.upstreamBind",
            "upstreamBind binds to the workload (no targetRefs) or to ServiceEntries: it applies to upstream connections, which Gateways and routes share",
        )
        .hint = Some("put upstreamBind in a policy of its own, with a selector or ServiceEntry targetRefs".into());
    }
    if to_service_entry && sets_request_modules(p) {
        r.error(
            Code::Policy,
            "spec.targetRefs",
            "a ServiceEntry target takes only upstreamBind: the other modules apply to requests, chosen by Gateway, server or route",
        );
    }
}

/// True when `p` sets a module that applies to requests (every module but `upstreamBind`).
fn sets_request_modules(p: &GatewayPolicy) -> bool {
    p.rate_limit.is_some()
        || p.headers.is_some()
        || p.cache.is_some()
        || p.client_address.is_some()
        || p.authorization.is_some()
        || p.request_authentication.is_some()
}

fn upstream_bind(b: &crate::raw::UpstreamBind, r: &mut Reporter<'_>) {
    match b.source_address.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
            r.error(
                Code::Policy,
                "spec.upstreamBind.sourceAddress",
                format!("{ip} is not an address of this host connections can be made from"),
            );
        }
        Ok(_) => {}
        Err(_) => {
            r.error(
                Code::Policy,
                "spec.upstreamBind.sourceAddress",
                format!("{:?} is not an IP address", b.source_address),
            );
        }
    }
    if !b.source_ports.is_empty() && crate::table::SourceBind::port_range(&b.source_ports).is_none() {
        r.error(
            Code::Policy,
            "spec.upstreamBind.sourcePorts",
            format!("{:?} is not LOW-HIGH with 1 <= LOW < HIGH <= 65535", b.source_ports),
        );
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
