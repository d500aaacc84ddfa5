//! `pylon explain`: where one request goes, and why — the listener, the Gateway server, the
//! virtual host, every route tried with the condition that failed, the action and the cluster.
//!
//! Every decision here is made by the functions the data plane calls (`crate::decide`,
//! `RouteMatch::first_miss`, `Listener::chain`, path normalization), so the explanation cannot
//! drift from what the gateway does. Policies (authentication, authorization) are added by the
//! gateway's command, which holds the policy modules.

pub mod probe;
mod render;
mod why;

use serde::Serialize;

pub use probe::Probe;
pub use render::text;

use crate::decide::{redirect, rewrite, Found};
use crate::matcher::{authority_host, Request};
use crate::table::{
    ChainAction, Listener, ListenerKind, PemSource, Route, RouteAction, RouteConfigId, RouteTable, TcpRoute,
    WeightedCluster,
};

/// Everything `pylon explain` found out about one request.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The request as understood.
    pub request: Probe,
    /// The path routing sees, after MeshConfig `pathNormalization`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_path: Option<String>,
    /// The listener the connection reaches: `0.0.0.0:443 TLS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// The Gateway servers that serve the request (several merge on a plaintext port).
    pub servers: Vec<String>,
    /// How the SNI chose the server of a TLS listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The route table (`http.80`, `https.443.https.gw.default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_config: Option<String>,
    /// The virtual host and how the host chose it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_host: Option<VirtualHostChoice>,
    /// The routes tried, in order, up to the one that matched.
    pub routes: Vec<Considered>,
    /// The route that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Chosen>,
    /// What the gateway does with the request.
    pub action: Action,
    /// What the route does besides (timeout, retries, fault, mirrors, CORS, `GatewayPolicy`
    /// modules).
    pub route_notes: Vec<String>,
    /// The security policies and their decision (filled in by the gateway).
    pub policies: Vec<String>,
    /// The status the gateway answers itself with; `None` when the request is forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Caveats.
    pub notes: Vec<String>,
}

/// The virtual host a request's host chose.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualHostChoice {
    /// Its name (the domain).
    pub name: String,
    /// `exact`, `wildcard` or `any` (`*`).
    pub by: &'static str,
}

/// One route tried.
#[derive(Debug, Clone, Serialize)]
pub struct Considered {
    /// 1-based position in the virtual host.
    pub position: usize,
    /// `namespace/name http[i] match[j]`.
    pub origin: String,
    /// The route's name, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The first condition that failed; `None`: this route matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miss: Option<String>,
}

/// The matched route, by index into the table (as the data plane records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Chosen {
    /// Index into `route_configs`.
    pub config: RouteConfigId,
    /// Index into its `virtual_hosts`.
    pub vhost: usize,
    /// Index into the virtual host's `routes`.
    pub route: usize,
}

/// What happens to the request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Forwarded to one of these, chosen by weight.
    Forward {
        /// The destinations.
        destinations: Vec<Destination>,
    },
    /// Answered with a redirect.
    Redirect {
        /// 301, 302, ...
        status: u16,
        /// The `Location`.
        location: String,
    },
    /// Answered by the route itself.
    DirectResponse {
        /// The status.
        status: u16,
        /// The body.
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// The connection's bytes are proxied (TLS passthrough, TCP).
    TcpProxy {
        /// The VirtualService rule.
        origin: String,
        /// The destinations.
        destinations: Vec<Destination>,
    },
    /// Refused: no listener, no server for the SNI, no virtual host or route, a bad request.
    Refused {
        /// The status, when the refusal is an HTTP answer.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Why.
        reason: String,
    },
}

/// One destination of the request.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// The cluster, `outbound|port|subset|host`.
    pub cluster: String,
    /// Its weight, and its share of requests in percent.
    pub weight: u32,
    /// Share of requests, percent.
    pub share: f64,
    /// Its endpoints, `address:port`.
    pub endpoints: Vec<String>,
    /// Why it cannot take requests, when it cannot (503 NC / UH).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// The path and query sent upstream (HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The authority sent upstream (HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Header operations, in the order they apply.
    pub header_operations: Vec<String>,
}

/// Explains `probe` against `table`.
pub fn explain(table: &RouteTable, probe: &Probe) -> Explanation {
    let mut e = Explanation {
        request: probe.clone(),
        normalized_path: None,
        listener: None,
        servers: Vec::new(),
        sni: None,
        route_config: None,
        virtual_host: None,
        routes: Vec::new(),
        route: None,
        action: Action::Refused { status: None, reason: String::new() },
        route_notes: Vec::new(),
        policies: Vec::new(),
        status: None,
        notes: Vec::new(),
    };
    match connection(table, probe, &mut e) {
        Ok(Some(rc)) => http(table, probe, rc, &mut e),
        Ok(None) => {}
        Err(refused) => e.action = refused,
    }
    e.status = match &e.action {
        Action::Refused { status, .. } => *status,
        Action::Redirect { status, .. } | Action::DirectResponse { status, .. } => Some(*status),
        Action::Forward { .. } | Action::TcpProxy { .. } => None,
    };
    e
}

/// The listener and server of the connection: `Ok(Some)` the route table to route the request
/// with, `Ok(None)` when the connection is proxied as bytes (the action is set), `Err` the
/// refusal.
fn connection(table: &RouteTable, probe: &Probe, e: &mut Explanation) -> Result<Option<RouteConfigId>, Action> {
    let on_port: Vec<_> = table.listeners.iter().filter(|l| l.port == probe.port).collect();
    // The listener bound to every address, else the first bound one (as if the request came to it).
    let Some(listener) = on_port.iter().find(|l| l.bind.is_none()).or(on_port.first()) else {
        let ports: Vec<String> = table.listeners.iter().map(|l| l.port.to_string()).collect();
        return Err(refused(
            None,
            format!("no listener on port {}: the connection is refused (ports: {})", probe.port, list(&ports)),
        ));
    };
    let addr = listener.bind.map_or_else(|| "0.0.0.0".to_string(), |b| b.to_string());
    let tls = probe.scheme == "https";
    match &listener.kind {
        ListenerKind::Http { servers, route_config } => {
            e.listener = Some(format!("{addr}:{} HTTP (plaintext HTTP/1.1, h2c)", listener.port));
            e.servers = servers.iter().map(|s| server(table, *s)).collect();
            if tls {
                return Err(refused(
                    None,
                    format!("port {} is plaintext HTTP: a TLS ClientHello is not HTTP (400); use http://", probe.port),
                ));
            }
            Ok(Some(*route_config))
        }
        ListenerKind::Tcp { server: s, route } => {
            e.listener = Some(format!("{addr}:{} TCP", listener.port));
            e.servers = vec![server(table, *s)];
            e.action = tcp(table, route);
            Ok(None)
        }
        ListenerKind::Tls { .. } => {
            e.listener = Some(format!("{addr}:{} TLS (server chosen by SNI)", listener.port));
            if !tls {
                let reason =
                    format!("port {} serves TLS: a plaintext request fails the handshake; use https://", probe.port);
                return Err(refused(None, reason));
            }
            tls_chain(table, listener, probe, e)
        }
    }
}

/// The filter chain the SNI chooses on a TLS listener, and what it does.
fn tls_chain(
    table: &RouteTable,
    listener: &Listener,
    probe: &Probe,
    e: &mut Explanation,
) -> Result<Option<RouteConfigId>, Action> {
    let sni = probe.sni.as_deref();
    let Some((_, chain)) = listener.chain(sni) else {
        let ListenerKind::Tls { chains, .. } = &listener.kind else { return Ok(None) };
        let names: Vec<String> = chains.iter().flat_map(|c| c.sni.iter().cloned()).collect();
        let reason = format!(
            "TLS handshake refused: no server on port {} for SNI {:?} (server names: {})",
            probe.port,
            sni.unwrap_or(""),
            list(&names)
        );
        return Err(refused(None, reason));
    };
    e.servers = vec![server(table, chain.server)];
    e.sni = Some(sni_rule(sni.unwrap_or(""), &chain.sni));
    if let Some(credential) = missing_credential(table, chain.server) {
        let reason = format!("TLS handshake refused: the server's credential {credential:?} is not found");
        return Err(refused(None, reason));
    }
    match &chain.action {
        ChainAction::Http { route_config } => Ok(Some(*route_config)),
        ChainAction::Tcp { route } | ChainAction::Passthrough { route } => {
            e.action = tcp(table, route);
            Ok(None)
        }
    }
}

/// The credential of a terminating server that is not found (its handshakes are refused until
/// it appears).
fn missing_credential(table: &RouteTable, server: usize) -> Option<&str> {
    let tls = table.servers.get(server)?.tls.as_ref()?;
    tls.certificates.iter().flat_map(|c| [&c.cert, &c.key]).find_map(|p| match p {
        PemSource::Missing { credential } => Some(credential.as_str()),
        _ => None,
    })
}

/// Which SNI rule of a chain matched: exact, wildcard or any.
fn sni_rule(sni: &str, names: &[String]) -> String {
    let sni = sni.trim_end_matches('.').to_ascii_lowercase();
    if names.is_empty() {
        return format!("SNI {sni:?} → the server that takes any name");
    }
    if names.contains(&sni) {
        return format!("SNI {sni:?} → exact name {sni}");
    }
    let wildcard = names.iter().filter(|n| n.starts_with("*.") && sni.ends_with(&n[1..])).max_by_key(|n| n.len());
    format!("SNI {sni:?} → wildcard {}", wildcard.map_or("*", String::as_str))
}

fn server(table: &RouteTable, id: usize) -> String {
    table.servers.get(id).map_or_else(String::new, |s| {
        format!("{} servers[{}] port {} {} hosts {}", s.gateway, s.index, s.port, s.protocol, s.hosts.join(","))
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn refused(status: Option<u16>, reason: String) -> Action {
    Action::Refused { status, reason }
}

fn tcp(table: &RouteTable, route: &TcpRoute) -> Action {
    Action::TcpProxy { origin: route.origin.clone(), destinations: destinations(table, &route.destinations, None) }
}

/// Routing in the route table `rc`: virtual host, routes, action.
fn http(table: &RouteTable, probe: &Probe, rc: RouteConfigId, e: &mut Explanation) {
    let Some(config) = table.route_configs.get(rc) else { return };
    e.route_config = Some(config.name.clone());
    let Some(path) = crate::matcher::path::normalize_as(&probe.path, table.path_normalization) else {
        e.action = refused(Some(400), format!("path {:?} is not a valid origin-form path", probe.path));
        return;
    };
    e.normalized_path = (path != probe.path).then(|| path.to_string());
    let view = Request::new(&probe.method, &probe.scheme, &probe.authority, &path, &probe.headers);
    let found = config.find(&view);
    let host = authority_host(&probe.authority);
    let vhost = match found {
        Found::NoVirtualHost => {
            let hosts: Vec<String> = config.virtual_hosts.iter().map(|v| v.name.clone()).collect();
            e.action = refused(
                Some(404),
                format!("no virtual host of {} for host {host:?} (hosts: {})", config.name, list(&hosts)),
            );
            return;
        }
        Found::HttpsRedirect { vhost } | Found::NoRoute { vhost } | Found::Route { vhost, .. } => vhost,
    };
    let Some(v) = config.virtual_hosts.get(vhost) else { return };
    let by = if v.name == "*" {
        "any"
    } else if v.name == host {
        "exact"
    } else {
        "wildcard"
    };
    e.virtual_host = Some(VirtualHostChoice { name: v.name.clone(), by });
    let tried = match found {
        Found::Route { route, .. } => route + 1,
        Found::NoRoute { .. } => v.routes.len(),
        _ => 0,
    };
    e.routes = v.routes.iter().take(tried).enumerate().map(|(i, r)| considered(i, r, &view)).collect();
    match found {
        Found::HttpsRedirect { .. } => {
            e.action = Action::Redirect { status: 301, location: redirect::https(&probe.authority, &path) };
            e.notes.push("httpsRedirect: plaintext requests are redirected before any route is tried".into());
        }
        Found::NoRoute { .. } => {
            e.action = refused(
                Some(404),
                format!(
                    "no route of virtual host {} matches (404 NR); Istio does not fall back to another host",
                    v.name
                ),
            );
        }
        Found::Route { route, .. } => {
            let Some(r) = v.routes.get(route) else { return };
            e.route = Some(Chosen { config: rc, vhost, route });
            e.action = action(table, r, probe, &path);
            e.route_notes = crate::render::behaviour_lines(r);
            e.route_notes.extend(crate::render::policy_lines(table, r));
        }
        Found::NoVirtualHost => {}
    }
}

fn considered(i: usize, r: &Route, view: &Request<'_>) -> Considered {
    Considered {
        position: i + 1,
        origin: r.origin.clone(),
        name: r.name.clone(),
        miss: r.matcher.first_miss(view).map(|m| why::miss(m, view)),
    }
}

/// The matched route's action for this request.
fn action(table: &RouteTable, r: &Route, probe: &Probe, path: &str) -> Action {
    match &r.action {
        RouteAction::Redirect(rd) => Action::Redirect {
            status: rd.code,
            location: redirect::location(rd, &probe.scheme, &probe.authority, path, r.matched_prefix()),
        },
        RouteAction::DirectResponse { status, body } => Action::DirectResponse {
            status: *status,
            body: body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
        },
        RouteAction::Forward { destinations: list, .. } => {
            let upstream = Upstream { route: r, path, authority: &probe.authority };
            Action::Forward { destinations: destinations(table, list, Some(upstream)) }
        }
    }
}

/// What an HTTP request sent upstream is made from.
#[derive(Clone, Copy)]
struct Upstream<'a> {
    route: &'a Route,
    path: &'a str,
    authority: &'a str,
}

fn destinations(table: &RouteTable, list: &[WeightedCluster], upstream: Option<Upstream<'_>>) -> Vec<Destination> {
    let total: u64 = list.iter().map(|d| u64::from(d.weight)).sum();
    list.iter()
        .map(|d| {
            let cluster = table.clusters.get(d.cluster);
            let (endpoints, unavailable) = match cluster.map(|c| &c.service) {
                None => (Vec::new(), Some("no such cluster (503 NC)".to_string())),
                Some(Err(why)) => (Vec::new(), Some(format!("{why} (503 NC)"))),
                Some(Ok(s)) if s.endpoints.is_empty() => (Vec::new(), Some("no endpoints (503 UH)".to_string())),
                Some(Ok(s)) => (s.endpoints.iter().map(|ep| format!("{}:{}", ep.address, ep.port)).collect(), None),
            };
            let mut dest = Destination {
                cluster: d.name.clone(),
                weight: d.weight,
                share: crate::render::share(d.weight, total),
                endpoints,
                unavailable,
                path: None,
                authority: None,
                header_operations: Vec::new(),
            };
            if let Some(u) = upstream {
                let rewritten = u.route.rewrite.as_deref().and_then(|rw| rewrite::path(u.path, rw, &u.route.matcher));
                dest.path = Some(rewritten.unwrap_or_else(|| u.path.to_string()));
                dest.authority = Some(u.route.authority_override(Some(d.cluster)).unwrap_or(u.authority).to_string());
                dest.header_operations =
                    u.route.header_ops(Some(d.cluster)).flat_map(crate::render::header_ops).collect();
            }
            dest
        })
        .collect()
}
