//! The parts of a table as JSON values that compare across configurations: references by index
//! (which shift whenever anything is added in front) replaced by what they refer to, and fields
//! that only say where a part sits dropped.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::table::{Cluster, Endpoint, Listener, Route, RouteTable, Server, VirtualHost};

/// A table part as JSON. Table types always serialize; `null` stands in should one ever not.
pub(super) fn value(part: &impl Serialize) -> Value {
    serde_json::to_value(part).unwrap_or(Value::Null)
}

/// A JSON object of these fields.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// `part` as JSON with index references named, without the fields in `drop`.
fn named(t: &RouteTable, part: &impl Serialize, drop: &[&str]) -> Value {
    let mut v = value(part);
    resolve(t, &mut v);
    if let Value::Object(map) = &mut v {
        drop.iter().for_each(|f| _ = map.remove(*f));
    }
    v
}

/// A server's identity: its Gateway and port name (Istio keeps port names unique within a
/// Gateway), which survives a server being inserted in front of it; its position otherwise.
pub(super) fn server_key(s: &Server) -> String {
    if s.port_name.is_empty() {
        format!("{} servers[{}]", s.gateway, s.index)
    } else {
        format!("{} port {}", s.gateway, s.port_name)
    }
}

/// Replaces every index reference inside `v` by the name of what it refers to.
fn resolve(t: &RouteTable, v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| resolve(t, i)),
        Value::Object(map) => {
            for (field, inner) in map.iter_mut() {
                match referenced(t, field, inner) {
                    Some(name) => *inner = name,
                    None => resolve(t, inner),
                }
            }
            // A destination or mirror carries its cluster's name next to the index.
            if map.contains_key("cluster") && map.get("cluster") == map.get("name") {
                map.remove("cluster");
            }
        }
        _ => {}
    }
}

/// The name behind an index field of the table (`cluster`, `server`, `servers`, `route_config`,
/// `rate_limit`, `header_policy`, `cache`); `None` for any other field.
fn referenced(t: &RouteTable, field: &str, v: &Value) -> Option<Value> {
    let name = |id: &Value| -> Option<Value> {
        let i = usize::try_from(id.as_u64()?).ok()?;
        let name = match field {
            "cluster" => t.clusters.get(i)?.name.clone(),
            "server" | "servers" => server_key(t.servers.get(i)?),
            "route_config" => t.route_configs.get(i)?.name.clone(),
            "rate_limit" => t.rate_limits.get(i)?.policy.clone(),
            "header_policy" => t.header_policies.get(i)?.policy.clone(),
            "cache" => t.caches.get(i)?.policy.clone(),
            _ => return None,
        };
        Some(Value::String(name))
    };
    match v {
        Value::Array(ids) if field == "servers" => ids.iter().map(name).collect::<Option<Vec<_>>>().map(Value::Array),
        _ => name(v),
    }
}

/// What a listener serves.
pub(super) fn listener(t: &RouteTable, l: &Listener) -> Value {
    named(t, &l.kind, &[])
}

/// A server's settings (its identity and position left out).
pub(super) fn server(t: &RouteTable, s: &Server) -> Value {
    named(t, s, &["gateway", "index", "port_name"])
}

/// A virtual host's own settings and the VirtualServices its routes come from.
pub(super) fn virtual_host(vh: &VirtualHost) -> Value {
    let from: BTreeSet<&str> = vh.routes.iter().map(|r| r.virtual_service.as_str()).collect();
    object([("require_tls", Value::Bool(vh.require_tls)), ("virtual_services", value(&from))])
}

/// What a route matches and does (`origin` left out: a rule's index moves when one is inserted
/// before it, which changes nothing by itself).
pub(super) fn route(t: &RouteTable, r: &Route) -> Value {
    named(t, r, &["origin"])
}

/// A cluster's service, endpoints (by address and port) and policy; its name is its identity.
pub(super) fn cluster(t: &RouteTable, c: &Cluster) -> Value {
    let service = match &c.service {
        Ok(s) => {
            let endpoints: Vec<Value> = s.endpoints.iter().map(endpoint).collect();
            object([
                ("defined_by", value(&s.defined_by)),
                ("protocol", value(&s.protocol)),
                ("resolution", value(&s.resolution)),
                ("endpoints", Value::Array(endpoints)),
            ])
        }
        Err(why) => object([("not_found", value(why))]),
    };
    object([("service", service), ("policy", named(t, &c.policy, &[])), ("source", value(&c.source))])
}

/// An endpoint, named `address:port` (its identity in the list).
fn endpoint(e: &Endpoint) -> Value {
    let mut v = value(e);
    if let Value::Object(map) = &mut v {
        map.remove("address");
        map.remove("port");
        map.insert("endpoint".to_string(), Value::String(format!("{}:{}", e.address, e.port)));
    }
    v
}

/// Everything that applies beyond one route, by subject: security policies, external
/// authorizers, `GatewayPolicy` modules and the workload settings from MeshConfig and the
/// Kubernetes Service.
pub(super) fn policies(t: &RouteTable) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let s = &t.security;
    for p in &s.request_authentications {
        out.insert(format!("RequestAuthentication {}", p.name), named(t, p, &["name"]));
    }
    for p in &s.authorization_policies {
        out.insert(format!("AuthorizationPolicy {}", p.name), named(t, p, &["name"]));
    }
    for a in &s.ext_authz {
        out.insert(format!("ext_authz provider {}", a.name), named(t, a, &["name"]));
    }
    // One rule per route it reaches, all alike but for `level`, which says how the policy was
    // bound, not what it does.
    for r in &t.rate_limits {
        out.entry(format!("GatewayPolicy {} rateLimit", r.policy)).or_insert_with(|| named(t, r, &["policy", "level"]));
    }
    for h in &t.header_policies {
        out.insert(format!("GatewayPolicy {} headers", h.policy), named(t, h, &["policy", "level"]));
    }
    for c in &t.caches {
        out.insert(format!("GatewayPolicy {} cache", c.policy), named(t, c, &["policy", "level"]));
    }
    for rc in t.route_configs.iter().filter(|rc| rc.client_address.is_some() || !rc.security.is_empty()) {
        let modules =
            object([("client_address", value(&rc.client_address)), ("security", named(t, &rc.security, &[]))]);
        out.insert(format!("GatewayPolicy clientAddress and security of routes {}", rc.name), modules);
    }
    out.insert("workload settings".to_string(), settings(t));
    out
}

fn settings(t: &RouteTable) -> Value {
    object([
        ("gateways", value(&t.gateways)),
        ("port_translation", value(&t.port_translation)),
        ("num_trusted_proxies", value(&t.num_trusted_proxies)),
        ("proxy_protocol", value(&t.proxy_protocol)),
        ("path_normalization", value(&t.path_normalization)),
        ("forward_client_cert", value(&t.forward_client_cert)),
    ])
}
