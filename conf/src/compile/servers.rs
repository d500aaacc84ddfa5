//! Gateway servers → the bind plan (Istio `mergeGateways`, with Pylon's conflict errors).
//!
//! Servers are taken in Gateway creation order. On one (bind, port): plaintext HTTP-family servers
//! merge into one route table; TLS servers (terminating or passthrough) share the port when their
//! SNI hosts differ; anything else is a conflict. Istio skips the later server silently; Pylon
//! rejects the configuration naming both (a documented deviation).

use std::collections::HashMap;
use std::net::IpAddr;

use super::credentials;
use super::select::SelectedGateway;
use super::Selection;
use crate::config::Config;
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::model::host::server_hosts;
use crate::model::Protocol;
use crate::raw::{self, ServerTlsMode};
use crate::table::{Server, ServerId, TlsMode};

/// What a port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortClass {
    /// Plaintext HTTP.
    Http,
    /// TLS, chains by SNI.
    Tls,
    /// Opaque TCP.
    Tcp,
}

/// One (bind, port) of the plan.
#[derive(Debug, Clone)]
pub(crate) struct PortPlan {
    pub bind: Option<IpAddr>,
    pub port: u16,
    pub class: PortClass,
    pub servers: Vec<ServerId>,
}

/// The servers in use and how they share ports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub servers: Vec<Server>,
    pub ports: Vec<PortPlan>,
}

/// Where a server was declared, for messages.
struct Place {
    resource: String,
    path: String,
}

pub(crate) fn plan(selected: &[SelectedGateway<'_>], config: &Config, sel: &Selection, out: &mut Diagnostics) -> Plan {
    let mut plan = Plan::default();
    let mut places: Vec<Place> = Vec::new();
    // (bind, port) → index in plan.ports; (bind, port, host) → server that owns the host.
    let mut ports: HashMap<(Option<IpAddr>, u16), usize> = HashMap::new();
    let mut tls_hosts: HashMap<(Option<IpAddr>, u16, String), ServerId> = HashMap::new();
    for gw in selected {
        for (i, s) in gw.res.spec.servers.iter().enumerate() {
            let path = format!("spec.servers[{i}]");
            let mut r = Reporter::new(&gw.res.meta.id, out);
            let Some((server, class)) = build_server(gw, i, s, config, sel, &mut r) else {
                continue;
            };
            let key = (server.bind, server.port);
            let here = Place { resource: gw.res.meta.id.to_string(), path: path.clone() };
            if let Some(&p) = ports.get(&key) {
                let existing = &plan.ports[p];
                if let Some(why) = conflict(existing.class, class, &server, &plan.servers[existing.servers[0]]) {
                    report_conflict(&mut r, &path, server.port, &places[existing.servers[0]], why);
                    continue;
                }
            }
            if server.tls.is_some() || server.https_redirect {
                let dup = server
                    .hosts
                    .iter()
                    .find_map(|h| tls_hosts.get(&(key.0, key.1, h.clone())).map(|id| (h.clone(), *id)));
                if let Some((host, other)) = dup {
                    report_conflict(&mut r, &path, server.port, &places[other], format!("duplicate host {host:?}"));
                    continue;
                }
                let id = plan.servers.len();
                for h in &server.hosts {
                    tls_hosts.insert((key.0, key.1, h.clone()), id);
                }
            }
            let id = plan.servers.len();
            plan.servers.push(server);
            places.push(here);
            match ports.get(&key) {
                Some(&p) => plan.ports[p].servers.push(id),
                None => {
                    ports.insert(key, plan.ports.len());
                    plan.ports.push(PortPlan { bind: key.0, port: key.1, class, servers: vec![id] });
                }
            }
        }
    }
    plan
}

fn conflict(existing: PortClass, new: PortClass, server: &Server, first: &Server) -> Option<String> {
    match (existing, new) {
        (PortClass::Http, PortClass::Http) | (PortClass::Tls, PortClass::Tls) => None,
        (PortClass::Tcp, PortClass::Tcp) => Some("two TCP servers cannot share a port".into()),
        _ => Some(format!("protocol {} cannot share the port with protocol {}", server.protocol, first.protocol)),
    }
}

fn report_conflict(r: &mut Reporter<'_>, path: &str, port: u16, other: &Place, why: String) {
    r.error(
        Code::Conflict,
        path,
        format!(
            "port {port}: conflicts with {} {}: {why}; Istio would silently skip this server",
            other.resource, other.path
        ),
    )
    .hint = Some("give each host and protocol one server per port, or bind the servers to different addresses".into());
}

/// Builds a server and its port class; `None` for servers validation already rejected.
fn build_server(
    gw: &SelectedGateway<'_>,
    index: usize,
    s: &raw::Server,
    config: &Config,
    sel: &Selection,
    r: &mut Reporter<'_>,
) -> Option<(Server, PortClass)> {
    let port = s.port.as_ref()?;
    let protocol = Protocol::parse(&port.protocol)?;
    let number = u16::try_from(port.number).ok().filter(|n| *n != 0)?;
    let bind = match s.bind.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => Some(b.parse::<IpAddr>().ok()?),
        None => None,
    };
    let path = format!("spec.servers[{index}]");
    let class = if protocol.is_http() {
        PortClass::Http
    } else if protocol.is_tls() {
        PortClass::Tls
    } else if protocol.is_tcp() {
        PortClass::Tcp
    } else {
        r.error(
            Code::Unsupported,
            format!("{path}.port.protocol"),
            format!("{protocol} servers are not supported at a gateway"),
        );
        return None;
    };
    let tls = match (class, &s.tls) {
        (PortClass::Tls, Some(t)) => Some(credentials::server_tls(t, &format!("{path}.tls"), config, sel, r)?),
        // Validation rejects HTTPS and TLS servers without tls settings.
        (PortClass::Tls, None) => return None,
        _ => None,
    };
    let hosts = server_hosts(&s.hosts, gw.res.meta.namespace());
    let server = Server {
        gateway: gw.key.clone(),
        index,
        port: number,
        port_name: port.name.clone(),
        protocol,
        bind,
        hosts: hosts
            .iter()
            .map(|h| h.namespace.as_ref().map_or_else(|| h.name.clone(), |ns| format!("{ns}/{}", h.name)))
            .collect(),
        https_redirect: class == PortClass::Http && s.tls.as_ref().is_some_and(|t| t.https_redirect),
        tls,
    };
    Some((server, class))
}

/// Istio `GetSNIHostsForServer`: hosts without namespaces, de-duplicated and sorted; `*` = any SNI.
pub(crate) fn sni_hosts(server: &Server) -> Vec<String> {
    let mut names: Vec<String> =
        server.hosts.iter().map(|h| h.rsplit_once('/').map_or(h.as_str(), |(_, n)| n).to_string()).collect();
    if names.iter().any(|n| n == "*") {
        return Vec::new();
    }
    names.sort();
    names.dedup();
    names
}

/// True when the server terminates TLS.
pub(crate) fn terminates(server: &Server) -> bool {
    server.tls.as_ref().is_some_and(|t| t.mode != TlsMode::Passthrough)
}

/// Pylon's TLS mode for a raw mode; `None` for modes validation rejects as unsupported.
pub(crate) fn tls_mode(mode: ServerTlsMode) -> Option<TlsMode> {
    match mode {
        ServerTlsMode::Passthrough => Some(TlsMode::Passthrough),
        ServerTlsMode::Simple => Some(TlsMode::Simple),
        ServerTlsMode::Mutual => Some(TlsMode::Mutual),
        ServerTlsMode::OptionalMutual => Some(TlsMode::OptionalMutual),
        ServerTlsMode::IstioMutual => Some(TlsMode::IstioMutual),
        ServerTlsMode::AutoPassthrough => None,
    }
}
