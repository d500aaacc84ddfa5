//! The text form of a [`RouteTable`] (`pylon routes`): listeners, servers, virtual hosts with their
//! ordered routes and destinations, clusters with endpoints — what `istioctl proxy-config` shows,
//! in one view.

use std::fmt::Write;

use crate::matcher::{HeaderMatcher, RouteMatch, StringMatcher};
use crate::table::{
    ChainAction, Cluster, HeaderOps, ListenerKind, PemSource, Route, RouteAction, RouteConfig, RouteTable, Security,
    Server, ServerTls, TcpRoute, WeightedCluster,
};

/// Renders the whole table as text.
pub fn text(t: &RouteTable) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "GATEWAYS {}",
        if t.gateways.is_empty() { "(none select this workload)".to_string() } else { t.gateways.join(", ") }
    );
    gateway_api(&mut out, t);
    policies(&mut out, &t.security);
    out.push_str("\nLISTENERS\n");
    if t.listeners.is_empty() {
        out.push_str("  (none)\n");
    }
    for l in &t.listeners {
        let addr = l.bind.map_or_else(|| "0.0.0.0".to_string(), |b| b.to_string());
        let shown = match t.port_translation.get(&l.port) {
            Some(to) if *to != l.port => format!("{addr}:{} (listens on {to}: Service targetPort)", l.port),
            _ => format!("{addr}:{}", l.port),
        };
        listener(&mut out, t, &shown, &l.kind);
    }
    for rc in &t.route_configs {
        route_config(&mut out, t, rc);
    }
    out.push_str("\nCLUSTERS\n");
    if t.clusters.is_empty() {
        out.push_str("  (none)\n");
    }
    for c in &t.clusters {
        cluster(&mut out, c);
    }
    out
}

/// The Gateway API status section alone (`pylon validate` prints it too).
pub fn gateway_api_status(t: &RouteTable) -> String {
    let mut out = String::new();
    gateway_api(&mut out, t);
    out
}

/// The Gateway API status: each resource (listener, parent) with its conditions, those that do
/// not hold marked.
fn gateway_api(out: &mut String, t: &RouteTable) {
    if t.gateway_api.is_empty() {
        return;
    }
    out.push_str("\nGATEWAY API STATUS\n");
    for s in &t.gateway_api {
        let scope = if s.scope.is_empty() { String::new() } else { format!(" {}", s.scope) };
        let attached = s.attached_routes.map(|n| format!(" (attachedRoutes {n})")).unwrap_or_default();
        let _ = writeln!(out, "  {} {}{scope}{attached}", s.kind, s.name);
        for c in &s.conditions {
            let _ = writeln!(
                out,
                "      {}={} {}: {}",
                c.kind,
                if c.status { "True" } else { "False" },
                c.reason,
                c.message
            );
        }
    }
}

/// `pylon routes --egress`: the ServiceEntry hosts this gateway forwards to, with the gateway ports
/// that reach each, how their addresses are found, whether the gateway originates TLS, and the
/// source address: what an egress gateway lets out. A destination outside the registry is never
/// forwarded (503 NC, or the connection closed), whatever MeshConfig `outboundTrafficPolicy` says:
/// at a gateway, as in Istio, the mode has no passthrough to govern.
pub fn egress(t: &RouteTable) -> String {
    let mut out = String::new();
    let mut reached: std::collections::BTreeMap<usize, std::collections::BTreeSet<u16>> = Default::default();
    let http = |rc: usize| {
        t.route_configs.get(rc).into_iter().flat_map(|rc| &rc.virtual_hosts).flat_map(|vh| &vh.routes).flat_map(|r| {
            match &r.action {
                RouteAction::Forward { destinations, .. } => destinations.iter().map(|d| d.cluster).collect(),
                _ => Vec::new(),
            }
        })
    };
    for l in &t.listeners {
        let clusters: Vec<usize> = match &l.kind {
            ListenerKind::Http { route_config, .. } => http(*route_config).collect(),
            ListenerKind::Tcp { route, .. } => route.destinations.iter().map(|d| d.cluster).collect(),
            ListenerKind::Tls { chains, .. } => chains
                .iter()
                .flat_map(|c| match &c.action {
                    ChainAction::Http { route_config } => http(*route_config).collect::<Vec<_>>(),
                    ChainAction::Tcp { route } | ChainAction::Passthrough { route } => {
                        route.destinations.iter().map(|d| d.cluster).collect()
                    }
                })
                .collect(),
        };
        for c in clusters {
            reached.entry(c).or_default().insert(l.port);
        }
    }
    let external: Vec<String> = reached
        .iter()
        .filter_map(|(id, ports)| {
            let c = t.clusters.get(*id)?;
            let s = c.service.as_ref().ok().filter(|s| s.defined_by.starts_with("ServiceEntry "))?;
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            let tls = c
                .policy
                .origination
                .as_ref()
                .map_or("no TLS origination".to_string(), |o| format!("TLS origination {}", o.mode.as_str()));
            let from = c.source.as_ref().map(|b| format!(", from {}", b.address)).unwrap_or_default();
            Some(format!(
                "  {}:{} ← gateway port {} ({}, {}{from})\n",
                c.host,
                c.port,
                ports.join(", "),
                s.resolution.as_str(),
                tls
            ))
        })
        .collect();
    out.push_str("EGRESS (ServiceEntry hosts reachable through this gateway)\n");
    if external.is_empty() {
        out.push_str("  (none)\n");
    }
    out.extend(external);
    out
}

/// The security policies: they apply to every route of the workload.
fn policies(out: &mut String, s: &Security) {
    if s.is_empty() {
        return;
    }
    out.push_str("\nPOLICIES (every route)\n");
    let dry = |d: bool| if d { " [dry-run: logged, not enforced]" } else { "" };
    for p in &s.request_authentications {
        let issuers: Vec<&str> = p.spec.jwt_rules.iter().map(|r| r.issuer.as_str()).collect();
        let _ = writeln!(
            out,
            "  RequestAuthentication {} (by {}): issuers {}{}",
            p.name,
            p.bound_by,
            issuers.join(", "),
            dry(p.dry_run)
        );
    }
    for p in &s.authorization_policies {
        let action = format!("{:?}", p.spec.action).to_uppercase();
        let _ = writeln!(
            out,
            "  AuthorizationPolicy {} (by {}): {action}, {} rule(s){}",
            p.name,
            p.bound_by,
            p.spec.rules.len(),
            dry(p.dry_run)
        );
    }
}

fn server_name(t: &RouteTable, id: usize) -> String {
    t.servers.get(id).map_or_else(String::new, |s| format!("{} servers[{}]", s.gateway, s.index))
}

fn server_line(out: &mut String, s: &Server) {
    let redirect = if s.https_redirect { ", httpsRedirect" } else { "" };
    let _ = writeln!(
        out,
        "    server {} servers[{}] port {} {} hosts {}{redirect}",
        s.gateway,
        s.index,
        s.port_name,
        s.protocol,
        s.hosts.join(",")
    );
}

fn listener(out: &mut String, t: &RouteTable, addr: &str, kind: &ListenerKind) {
    match kind {
        ListenerKind::Http { servers, route_config } => {
            let name = t.route_configs.get(*route_config).map_or("", |r| r.name.as_str());
            let _ = writeln!(out, "  {addr} HTTP (HTTP/1.1, h2c) routes {name}");
            servers.iter().filter_map(|id| t.servers.get(*id)).for_each(|s| server_line(out, s));
        }
        ListenerKind::Tcp { server, route } => {
            let _ = writeln!(out, "  {addr} TCP");
            if let Some(s) = t.servers.get(*server) {
                server_line(out, s);
            }
            tcp_route(out, route, "      ");
        }
        ListenerKind::Tls { chains, .. } => {
            let _ = writeln!(out, "  {addr} TLS (server chosen by SNI: exact, then longest wildcard, then *)");
            for c in chains {
                let sni = if c.sni.is_empty() { "*".to_string() } else { c.sni.join(",") };
                let Some(s) = t.servers.get(c.server) else { continue };
                let mode = s.tls.as_ref().map_or("", |tls| mode_name(tls));
                let _ = writeln!(
                    out,
                    "    sni {sni}: {} servers[{}] port {} {} {mode}",
                    s.gateway, s.index, s.port_name, s.protocol
                );
                if let Some(tls) = &s.tls {
                    certificates(out, tls);
                }
                match &c.action {
                    ChainAction::Http { route_config } => {
                        let _ = writeln!(
                            out,
                            "      routes {}",
                            t.route_configs.get(*route_config).map_or("", |r| r.name.as_str())
                        );
                    }
                    ChainAction::Tcp { route } | ChainAction::Passthrough { route } => tcp_route(out, route, "      "),
                }
            }
        }
    }
}

fn mode_name(tls: &ServerTls) -> &'static str {
    match tls.mode {
        crate::table::TlsMode::Passthrough => "PASSTHROUGH",
        crate::table::TlsMode::Simple => "SIMPLE",
        crate::table::TlsMode::Mutual => "MUTUAL",
        crate::table::TlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
        crate::table::TlsMode::IstioMutual => "ISTIO_MUTUAL",
    }
}

fn pem(p: &PemSource) -> String {
    match p {
        PemSource::File { path } => format!("file {}", path.display()),
        PemSource::Secret { secret, key, .. } => format!("secret {secret} {key}"),
        PemSource::Missing { credential } => format!("MISSING {credential} (handshakes refused)"),
    }
}

fn certificates(out: &mut String, tls: &ServerTls) {
    for c in &tls.certificates {
        let _ = writeln!(out, "      certificate {}; key {}", pem(&c.cert), pem(&c.key));
    }
    if let Some(ca) = &tls.client_ca {
        let _ = writeln!(out, "      client CA {}", pem(ca));
    }
    if let Some(crl) = &tls.ca_crl {
        let _ = writeln!(out, "      client CRL {}", pem(crl));
    }
    if tls.mode == crate::table::TlsMode::Passthrough {
        return;
    }
    let version = |v: crate::raw::TlsProtocol| {
        serde_json::to_value(v).ok().and_then(|j| j.as_str().map(str::to_string)).unwrap_or_default()
    };
    let mut params = vec![format!("TLS {}..{}", version(tls.min_version), version(tls.max_version))];
    if !tls.cipher_suites.is_empty() {
        params.push(format!("ciphers {}", tls.cipher_suites.join(":")));
    }
    if !tls.ecdh_curves.is_empty() {
        params.push(format!("curves {}", tls.ecdh_curves.join(":")));
    }
    let _ = writeln!(out, "      {}", params.join("; "));
}

fn tcp_route(out: &mut String, r: &TcpRoute, indent: &str) {
    let _ = writeln!(out, "{indent}tcp proxy ({}) {}", r.origin, destinations(&r.destinations));
}

/// A destination's share of requests in percent, to two decimals.
pub(crate) fn share(weight: u32, total: u64) -> f64 {
    let pct = if total == 0 { 0.0 } else { f64::from(weight) * 100.0 / total as f64 };
    (pct * 100.0).round() / 100.0
}

fn destinations(list: &[WeightedCluster]) -> String {
    let total: u64 = list.iter().map(|d| u64::from(d.weight)).sum();
    if list.is_empty() {
        return "→ (no destination)".into();
    }
    let parts: Vec<String> = list.iter().map(|d| format!("{} {}%", d.name, share(d.weight, total))).collect();
    format!("→ {}", parts.join(", "))
}

fn route_config(out: &mut String, t: &RouteTable, rc: &RouteConfig) {
    let servers: Vec<String> = rc.servers.iter().map(|id| server_name(t, *id)).collect();
    let _ = writeln!(out, "\nROUTES {} (servers: {})", rc.name, servers.join("; "));
    route_config_policies(out, rc);
    if rc.virtual_hosts.is_empty() {
        out.push_str("  (no virtual hosts: every request gets 404 NR)\n");
    }
    for vh in &rc.virtual_hosts {
        let redirect = if vh.require_tls { " (httpsRedirect: plaintext requests get 301 to https)" } else { "" };
        let _ = writeln!(out, "  virtual host {}{redirect}", vh.name);
        if vh.routes.is_empty() && !vh.require_tls {
            out.push_str("    (no routes: 404 NR)\n");
        }
        for (i, r) in vh.routes.iter().enumerate() {
            route(out, i + 1, r);
            route_policies(out, t, r);
        }
    }
}

/// The `GatewayPolicy` modules of a route table: client address, added security checks.
fn route_config_policies(out: &mut String, rc: &RouteConfig) {
    if let Some(c) = &rc.client_address {
        let how = if c.trusted_cidrs.is_empty() {
            format!("{} trusted proxies", c.num_trusted_proxies)
        } else {
            format!(
                "trusted proxies {}",
                c.trusted_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            )
        };
        let _ = writeln!(out, "  client address: {how} (GatewayPolicy {})", c.policy);
    }
    for p in &rc.security.request_authentications {
        let _ = writeln!(out, "  also RequestAuthentication of GatewayPolicy {}", p.name);
    }
    for p in &rc.security.authorization_policies {
        let action = format!("{:?}", p.spec.action).to_uppercase();
        let _ = writeln!(
            out,
            "  also AuthorizationPolicy of GatewayPolicy {}: {action}, {} rule(s)",
            p.name,
            p.spec.rules.len()
        );
    }
}

/// The `GatewayPolicy` modules of one route: rate limit, headers, cache.
fn route_policies(out: &mut String, t: &RouteTable, r: &Route) {
    for l in policy_lines(t, r) {
        let _ = writeln!(out, "       {l}");
    }
}

/// The `GatewayPolicy` modules bound to a route, one line each.
pub(crate) fn policy_lines(t: &RouteTable, r: &Route) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(rl) = r.rate_limit.and_then(|i| t.rate_limits.get(i)) {
        let key = format!("{:?}", rl.key).to_lowercase();
        lines.push(format!(
            "rate limit {}/s, burst {}, per {key} (GatewayPolicy {}, {} level)",
            rl.per_second, rl.burst, rl.policy, rl.level
        ));
    }
    if let Some(h) = r.header_policy.and_then(|i| t.header_policies.get(i)) {
        let mut parts = Vec::new();
        parts.extend(h.replace_forwarded_for.then(|| "x-forwarded-for replaced".to_string()));
        parts.extend(h.forwarded.then(|| "Forwarded added".to_string()));
        parts.extend(h.generate_request_id.then(|| "new x-request-id".to_string()));
        parts.extend(h.response_set.iter().map(|(k, v)| format!("response set {k}: {v}")));
        parts.extend(h.response_remove.iter().map(|k| format!("response remove {k}")));
        lines.push(format!("headers: {} (GatewayPolicy {}, {} level)", parts.join(", "), h.policy, h.level));
    }
    if let Some(c) = r.cache.and_then(|i| t.caches.get(i)) {
        let ttl = c.default_ttl_secs.map_or("none".to_string(), |s| format!("{s}s"));
        lines.push(format!(
            "cache {} bytes, entries up to {} bytes, default ttl {ttl}, vary on [{}] (GatewayPolicy {}, {} level)",
            c.max_bytes,
            c.max_entry_bytes,
            c.vary.join(", "),
            c.policy,
            c.level
        ));
    }
    lines
}

fn route(out: &mut String, n: usize, r: &Route) {
    let name = if r.name.is_empty() { String::new() } else { format!(" {:?}", r.name) };
    let _ = writeln!(out, "    {n}. {}{name}: {}", r.origin, describe_match(&r.matcher));
    let action = match &r.action {
        RouteAction::Forward { destinations: d, .. } => destinations(d),
        RouteAction::Redirect(rd) => {
            let mut parts = vec![format!("redirect {}", rd.code)];
            parts.extend(rd.scheme.as_ref().map(|s| format!("scheme {s}")));
            parts.extend(rd.authority.as_ref().map(|a| format!("authority {a}")));
            parts.extend(rd.port.map(|p| format!("port {p}")));
            parts.extend(rd.uri.as_ref().map(|u| format!("uri {u}")));
            parts.extend(rd.prefix_rewrite.as_ref().map(|u| format!("prefix {u}")));
            format!("→ {}", parts.join(", "))
        }
        RouteAction::DirectResponse { status, body } => {
            let body = body.as_ref().map(|b| format!(" body {:?}", String::from_utf8_lossy(b))).unwrap_or_default();
            format!("→ direct response {status}{body}")
        }
    };
    let _ = writeln!(out, "       {action}");
    extras(out, r);
}

fn extras(out: &mut String, r: &Route) {
    let mut lines = Vec::new();
    if let Some(rw) = &r.rewrite {
        let mut parts = Vec::new();
        parts.extend(rw.uri.as_ref().map(|u| format!("uri {u}")));
        parts.extend(rw.uri_regex.as_ref().map(|(re, to)| format!("uri regex {:?} → {to:?}", re.as_str())));
        parts.extend(rw.authority.as_ref().map(|a| format!("authority {a}")));
        lines.push(format!("rewrite {}", parts.join(", ")));
    }
    lines.extend(header_ops(&r.headers));
    lines.extend(behaviour_lines(r));
    for l in lines {
        let _ = writeln!(out, "       {l}");
    }
}

/// What a route does besides choosing a destination: timeout, retries, fault, mirrors, CORS.
pub(crate) fn behaviour_lines(r: &Route) -> Vec<String> {
    let mut lines = Vec::new();
    lines.extend(r.timeout.map(|t| format!("timeout {t}")));
    lines.extend(r.retries.as_ref().map(|p| format!("retries {} on {}", p.attempts, p.retry_on.join(","))));
    if let Some(f) = &r.fault {
        lines.extend(f.delay.as_ref().map(|(d, p)| format!("fault delay {d} for {p}%")));
        lines.extend(f.abort.as_ref().map(|(a, p)| format!("fault abort {a:?} for {p}%")));
    }
    lines.extend(r.mirrors.iter().map(|m| format!("mirror {} {}%", m.name, m.percent)));
    lines.extend(r.cors.as_ref().map(|c| {
        format!("cors origins {}", c.allow_origins.iter().map(StringMatcher::describe).collect::<Vec<_>>().join(", "))
    }));
    lines
}

/// Header operations in words, one entry per kind (`request set k=v ...`).
pub(crate) fn header_ops(h: &HeaderOps) -> Vec<String> {
    let mut out = Vec::new();
    let kv = |v: &[(String, String)]| v.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    for (what, list) in [
        ("request set", &h.request_set),
        ("request add", &h.request_add),
        ("response set", &h.response_set),
        ("response add", &h.response_add),
    ] {
        if !list.is_empty() {
            out.push(format!("{what} {}", kv(list)));
        }
    }
    for (what, list) in [("request remove", &h.request_remove), ("response remove", &h.response_remove)] {
        if !list.is_empty() {
            out.push(format!("{what} {}", list.join(" ")));
        }
    }
    out.extend(h.authority.as_ref().map(|a| format!("host rewrite {a}")));
    out
}

/// A match in words: `path prefix "/"`, `header end-user exact "jason"`, ...
pub fn describe_match(m: &RouteMatch) -> String {
    let mut parts =
        vec![format!("path {}{}", m.path.matcher.describe(), if m.path.ignore_case { " (ignore case)" } else { "" })];
    parts.extend(m.headers.iter().map(describe_header));
    parts.extend(m.query.iter().map(|q| format!("query {} {}", q.name, q.matcher.describe())));
    parts.join(" and ")
}

fn describe_header(h: &HeaderMatcher) -> String {
    let not = if h.invert { "without " } else { "" };
    format!("{not}header {} {}", h.name, h.matcher.describe())
}

fn cluster(out: &mut String, c: &Cluster) {
    match &c.service {
        Err(why) => {
            let _ = writeln!(out, "  {} NOT FOUND: {why} (503 NC)", c.name);
        }
        Ok(s) => {
            let proto = s.protocol.map_or("UNSET (HTTP/1.1)", |p| p.as_str());
            let _ = writeln!(out, "  {} {} {proto} ({})", c.name, s.resolution.as_str(), s.defined_by);
            if s.endpoints.is_empty() {
                out.push_str("      (no endpoints: 503 UH)\n");
            }
            for e in &s.endpoints {
                let labels = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                let labels = if labels.is_empty() { String::new() } else { format!(" [{labels}]") };
                let weight = if e.weight == 1 { String::new() } else { format!(" weight {}", e.weight) };
                let auto = c.policy.origination.as_ref().is_some_and(|o| o.auto);
                let mesh = if auto && e.istio_mtls { " (mesh workload: ISTIO_MUTUAL)" } else { "" };
                let _ = writeln!(out, "      {}:{}{labels}{weight}{mesh}", e.address, e.port);
            }
        }
    }
    if !c.policy.from.is_empty() {
        let _ = writeln!(out, "      policy from DestinationRule {}", c.policy.from.join(", "));
    }
    if let Some(o) = &c.policy.origination {
        let how = if o.auto { " to mesh workloads only, by automatic mTLS; plaintext to the others" } else { "" };
        let _ = writeln!(out, "      TLS origination {}{how}", o.mode.as_str());
    }
    if let Some(b) = &c.source {
        let ports = b.ports.map(|(l, h)| format!(" ports {l}-{h}")).unwrap_or_default();
        let _ = writeln!(out, "      connections from {}{ports} (GatewayPolicy {})", b.address, b.policy);
    }
}
