//! `pylon diff`: what a configuration change changes in the compiled table, before it is applied.
//!
//! Two built configurations are compared part by part: listeners by address and port, servers by
//! Gateway and port name, virtual hosts by route table and domain, routes by an identity that
//! survives rules being inserted around them (and by their order, since the first matching route
//! wins), clusters by name, and policies by name. A changed part lists the fields that differ,
//! each as `path: old → new`, with references by index replaced by what they refer to so that
//! nothing is reported just because something was added in front of it.

mod fields;
mod render;
mod routes;
mod view;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

pub use render::render_text;

use crate::table::{RouteTable, VirtualHost};
use crate::{Built, Diagnostic};

/// The part of the table a change is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// A listening socket: what is served on one address and port.
    Listener,
    /// A Gateway server.
    Server,
    /// A virtual host of an HTTP route table.
    VirtualHost,
    /// A route of a virtual host.
    Route,
    /// An upstream cluster: its service, endpoints and DestinationRule policy.
    Cluster,
    /// Security policies, `GatewayPolicy` modules, external authorizers and workload settings.
    Policy,
}

/// What happened to a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Only the new table has it.
    Added,
    /// Only the old table has it.
    Removed,
    /// Both have it, with different settings.
    Changed,
    /// A route both have now comes at another place among the others: requests that more than
    /// one route matches may go elsewhere.
    Reordered,
}

/// One change between the old and the new table.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The part of the table.
    pub section: Section,
    /// What happened to it.
    pub kind: Kind,
    /// Which part, as `pylon routes` names it (`route http.80 bookinfo.example: default/bookinfo
    /// http[1] match[0] "reviews-v2"`).
    pub subject: String,
    /// What changed: `path: old → new`, `path: added value`, `path: removed value`; for added and
    /// removed routes, their position and action; for reordered routes, the positions and the
    /// routes they crossed.
    pub details: Vec<String>,
}

/// Everything a configuration change changes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The table changes, listeners first, then servers, virtual hosts with their routes,
    /// clusters and policies; empty when the new configuration is invalid.
    pub changes: Vec<Change>,
    /// The diagnostics of the new configuration the old one does not have (errors included).
    pub new_diagnostics: Vec<Diagnostic>,
    /// The new configuration has no errors; when it has, its table was not compared.
    pub new_valid: bool,
}

impl Report {
    /// True when the compiled table changes.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Compares the tables `old` and `new` compile to, and the diagnostics `new` adds. An invalid
/// `new` is not compared: its table is not what would be served.
pub fn compare(old: &Built, new: &Built) -> Report {
    let known: HashSet<String> = old.diagnostics.iter().map(ToString::to_string).collect();
    let new_diagnostics = new.diagnostics.iter().filter(|d| !known.contains(&d.to_string())).cloned().collect();
    let new_valid = new.is_valid();
    let changes = if new_valid { tables(&old.table, &new.table) } else { Vec::new() };
    Report { changes, new_diagnostics, new_valid }
}

fn tables(old: &RouteTable, new: &RouteTable) -> Vec<Change> {
    let mut out = Vec::new();
    let listeners = |t: &RouteTable| -> Vec<(String, Value)> {
        t.listeners
            .iter()
            .map(|l| {
                let addr = l.bind.map_or_else(|| "0.0.0.0".to_string(), |b| b.to_string());
                (format!("listener {addr}:{}", l.port), view::listener(t, l))
            })
            .collect()
    };
    parts(Section::Listener, listeners(old), listeners(new), &mut out);
    let servers = |t: &RouteTable| -> Vec<(String, Value)> {
        t.servers.iter().map(|s| (format!("server {}", view::server_key(s)), view::server(t, s))).collect()
    };
    parts(Section::Server, servers(old), servers(new), &mut out);
    virtual_hosts(old, new, &mut out);
    let clusters = |t: &RouteTable| -> Vec<(String, Value)> {
        t.clusters.iter().map(|c| (format!("cluster {}", c.name), view::cluster(t, c))).collect()
    };
    parts(Section::Cluster, clusters(old), clusters(new), &mut out);
    parts(
        Section::Policy,
        view::policies(old).into_iter().collect(),
        view::policies(new).into_iter().collect(),
        &mut out,
    );
    out
}

/// Compares parts by subject: removed ones in old order, then added and changed ones in new order.
fn parts(section: Section, old: Vec<(String, Value)>, new: Vec<(String, Value)>, out: &mut Vec<Change>) {
    let new_keys: HashSet<&str> = new.iter().map(|(k, _)| k.as_str()).collect();
    let change = |kind, subject: &str, details| Change { section, kind, subject: subject.to_string(), details };
    for (k, _) in old.iter().filter(|(k, _)| !new_keys.contains(k.as_str())) {
        out.push(change(Kind::Removed, k, Vec::new()));
    }
    let old: HashMap<&str, &Value> = old.iter().map(|(k, v)| (k.as_str(), v)).collect();
    for (k, v) in &new {
        match old.get(k.as_str()) {
            None => out.push(change(Kind::Added, k, Vec::new())),
            Some(was) => {
                let details = fields::differences(was, v);
                if !details.is_empty() {
                    out.push(change(Kind::Changed, k, details));
                }
            }
        }
    }
}

/// Virtual hosts by route table and domain, each followed by the changes of its routes.
fn virtual_hosts(old: &RouteTable, new: &RouteTable, out: &mut Vec<Change>) {
    let (old_hosts, new_hosts) = (hosts(old), hosts(new));
    let old_at: HashMap<_, _> = old_hosts.iter().copied().collect();
    let new_at: HashMap<_, _> = new_hosts.iter().copied().collect();
    let removed = old_hosts.iter().filter(|(k, _)| !new_at.contains_key(k)).map(|(k, vh)| (*k, Some(*vh), None));
    let kept = new_hosts.iter().map(|(k, vh)| (*k, old_at.get(k).copied(), Some(*vh)));
    for ((rc, name), was, is) in removed.collect::<Vec<_>>().into_iter().chain(kept) {
        let subject = format!("virtual host {rc} {name}");
        let side = |vh: Option<&VirtualHost>| vh.map(|vh| (subject.clone(), view::virtual_host(vh)));
        parts(Section::VirtualHost, side(was).into_iter().collect(), side(is).into_iter().collect(), out);
        routes::compare(rc, name, &routes::Side { table: old, host: was }, &routes::Side { table: new, host: is }, out);
    }
}

/// Every virtual host of `t` by (route table name, domain), in table order.
fn hosts(t: &RouteTable) -> Vec<((&str, &str), &VirtualHost)> {
    t.route_configs
        .iter()
        .flat_map(|rc| rc.virtual_hosts.iter().map(move |vh| ((rc.name.as_str(), vh.name.as_str()), vh)))
        .collect()
}
