//! The destination registry (ServiceEntries, WorkloadEntries) and DestinationRules → clusters.
//!
//! A cluster is `(host, subset, port)` (Istio `outbound|port|subset|host`). A destination the
//! registry does not know still gets a cluster, marked not found: requests to it get 503 NC, as in
//! Istio, and compilation warns.

use std::collections::{BTreeMap, HashMap};

use super::auto_mtls::{self, Destination, PeerModes};
use super::Selection;
use crate::config::{Config, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::model::host::{expand_short_name, is_wildcard, subset_of};
use crate::model::Protocol;
use crate::raw::{self, DestinationRule, Resolution, ServiceEntry, Subset, TrafficPolicy};
use crate::table::{Cluster, ClusterId, ClusterPolicy, Endpoint, Service};

/// Services by host, DestinationRules, and the clusters built so far.
pub(crate) struct Registry<'a> {
    config: &'a Config,
    sel: &'a Selection,
    services: HashMap<String, &'a Resource<ServiceEntry>>,
    /// Hosts of Kubernetes Services not exported to this namespace: known, so never looked up in
    /// the cluster's DNS instead.
    hidden: HashMap<String, String>,
    clusters: Vec<Cluster>,
    index: HashMap<(String, Option<String>, u16), ClusterId>,
    /// PeerAuthentication modes, for automatic mTLS.
    peer_modes: PeerModes,
}

/// The DestinationRules for one host, merged as Istio does.
struct MergedRule {
    from: Vec<String>,
    traffic_policy: Option<TrafficPolicy>,
    subsets: Vec<Subset>,
}

impl<'a> Registry<'a> {
    /// Indexes the services visible to this workload's namespace: Kubernetes Services first (as
    /// Istio's aggregate registry lists its Kubernetes registry before ServiceEntries), then
    /// ServiceEntries; the first definition of a host wins.
    pub fn new(
        config: &'a Config,
        sel: &'a Selection,
        kubernetes: &'a [Resource<ServiceEntry>],
        out: &mut Diagnostics,
    ) -> Self {
        let mut services: HashMap<String, &'a Resource<ServiceEntry>> = HashMap::new();
        let mut hidden = HashMap::new();
        for se in kubernetes.iter().chain(&config.service_entries) {
            if !exported(&se.spec.export_to, se.meta.namespace(), &sel.namespace, true) {
                for h in se.spec.hosts.iter().filter(|_| se.meta.id.kind == "Service") {
                    hidden.insert(h.clone(), se.meta.key());
                }
                continue;
            }
            for h in &se.spec.hosts {
                let host = expand_short_name(h, se.meta.namespace(), &sel.domain);
                match services.get(&host) {
                    Some(first) if first.meta.id.kind != se.meta.id.kind => {
                        Reporter::new(&se.meta.id, out).warn(
                            Code::Duplicate,
                            "spec.hosts",
                            format!("host {host} is also Kubernetes Service {}, which wins", first.meta.key()),
                        );
                    }
                    Some(_) => {}
                    None => {
                        services.insert(host, se);
                    }
                }
            }
        }
        let peer_modes = PeerModes::new(config, sel, out);
        Registry { config, sel, services, hidden, clusters: Vec::new(), index: HashMap::new(), peer_modes }
    }

    /// The name of cluster `id`.
    pub fn name(&self, id: ClusterId) -> String {
        self.clusters.get(id).map(|c| c.name.clone()).unwrap_or_default()
    }

    /// The built clusters, in first-use order.
    pub fn into_clusters(self) -> Vec<Cluster> {
        self.clusters
    }

    /// The cluster for a destination (host already expanded), reporting at `path` why it cannot be
    /// served. `listener_port` is the gateway server port (Istio's default destination port).
    pub fn cluster(
        &mut self,
        dest: &raw::Destination,
        host: &str,
        listener_port: u16,
        path: &dyn std::fmt::Display,
        r: &mut Reporter<'_>,
    ) -> ClusterId {
        let se = self.services.get(host).copied();
        let port = match (dest.port, se) {
            (Some(p), _) => u16::try_from(p.number).unwrap_or(0),
            (None, Some(se)) if se.spec.ports.len() == 1 => u16::try_from(se.spec.ports[0].number).unwrap_or(0),
            _ => listener_port,
        };
        let subset = dest.subset.clone().filter(|s| !s.is_empty());
        let key = (host.to_string(), subset.clone(), port);
        if let Some(id) = self.index.get(&key) {
            return *id;
        }
        let name = format!("outbound|{port}|{}|{host}", subset.as_deref().unwrap_or(""));
        let rule = self.destination_rule(host, se.map(|s| s.meta.namespace()));
        let service = match se {
            None if self.hidden.contains_key(host) => Err(format!(
                "Kubernetes Service {} is not exported to namespace {} (annotation networking.istio.io/exportTo)",
                self.hidden.get(host).map_or("", String::as_str),
                self.sel.namespace
            )),
            None if subset.is_none() && self.is_kubernetes_service(host) => {
                Ok(kubernetes_dns_service(host, port, path, r))
            }
            None => Err(format!("no ServiceEntry or Kubernetes Service defines host {host}")),
            Some(se) => self.service(se, host, port, subset.as_deref(), rule.as_ref()),
        };
        report(&service, se.is_none(), &name, path, r);
        let mut policy = rule.as_ref().map(|r| policy_for(r, port, subset.as_deref())).unwrap_or_default();
        if policy.load_balancer.as_ref().and_then(|lb| lb.simple) == Some(raw::SimpleLb::Passthrough) {
            r.error(
                Code::Unsupported,
                path,
                format!(
                    "DestinationRule {} balances {name} with PASSTHROUGH, which forwards to the connection's original destination: a gateway has none",
                    policy.from.join(", ")
                ),
            )
            .hint = Some("use LEAST_REQUEST, ROUND_ROBIN or RANDOM for the hosts this gateway routes to".into());
        }
        if let Some(mesh_default) = &self.sel.connect_timeout {
            // MeshConfig `connectTimeout`, for clusters whose DestinationRule sets none.
            let pool = policy.connection_pool.get_or_insert_with(Default::default);
            let tcp = pool.tcp.get_or_insert_with(Default::default);
            tcp.connect_timeout.get_or_insert_with(|| mesh_default.clone());
        }
        // Istio's SNI for a mesh destination (`model.BuildDNSSrvSubsetKey`).
        let outbound = format!("outbound_.{port}_.{}_.{host}", subset.as_deref().unwrap_or(""));
        policy.origination = match &policy.tls {
            Some(t) => {
                super::credentials::client_tls(t, &format!("{path} ({name}) tls"), &outbound, self.config, self.sel, r)
            }
            None => {
                let d = Destination { se, service: &service, cluster: &name, outbound: &outbound };
                auto_mtls::origination(&d, &self.peer_modes, self.sel, path, r)
            }
        };
        let id = self.clusters.len();
        self.clusters.push(Cluster { name, host: host.to_string(), subset, port, service, policy, source: None });
        self.index.insert(key, id);
        id
    }

    fn service(
        &self,
        se: &Resource<ServiceEntry>,
        host: &str,
        port: u16,
        subset: Option<&str>,
        rule: Option<&MergedRule>,
    ) -> Result<Service, String> {
        let defined_by = format!("{} {}", se.meta.id.kind, se.meta.key());
        let Some(sp) = se.spec.ports.iter().find(|p| p.number == u32::from(port)) else {
            return Err(format!("{defined_by} has no port {port} for host {host}"));
        };
        let subset_labels = match subset {
            None => None,
            Some(name) => match rule.and_then(|r| r.subsets.iter().find(|s| s.name == name)) {
                Some(s) => Some(&s.labels),
                None => return Err(format!("no DestinationRule defines subset {name} for host {host}")),
            },
        };
        let endpoints = self
            .endpoints(se, host, sp)
            .into_iter()
            .filter(|e| subset_labels.is_none_or(|want| want.iter().all(|(k, v)| e.labels.get(k) == Some(v))))
            .collect();
        Ok(Service { defined_by, protocol: Protocol::parse(&sp.protocol), resolution: se.spec.resolution, endpoints })
    }

    /// Istio's endpoint port: `endpoint.ports[portName]` > `targetPort` > `number`.
    fn endpoints(&self, se: &Resource<ServiceEntry>, host: &str, sp: &raw::Port) -> Vec<Endpoint> {
        let default_port = sp.target_port.filter(|t| *t > 0).unwrap_or(sp.number);
        let to_endpoint = |we: &raw::WorkloadEntry| Endpoint {
            address: we.address.clone(),
            port: u16::try_from(we.ports.get(&sp.name).copied().filter(|p| *p > 0).unwrap_or(default_port))
                .unwrap_or(0),
            labels: we.labels.clone(),
            weight: we.weight.filter(|w| *w > 0).unwrap_or(1),
            istio_mtls: auto_mtls::is_mesh_workload(we),
        };
        match se.spec.resolution {
            Resolution::None | Resolution::DynamicDns => Vec::new(),
            _ if se.spec.workload_selector.is_some() => {
                self.selected_workloads(se).into_iter().map(to_endpoint).collect()
            }
            Resolution::Dns | Resolution::DnsRoundRobin if se.spec.endpoints.is_empty() && !is_wildcard(host) => {
                vec![Endpoint {
                    address: host.to_string(),
                    port: u16::try_from(default_port).unwrap_or(0),
                    labels: BTreeMap::new(),
                    weight: 1,
                    istio_mtls: false,
                }]
            }
            _ => se.spec.endpoints.iter().map(to_endpoint).collect(),
        }
    }

    /// WorkloadEntries in the ServiceEntry's namespace whose labels include its selector.
    fn selected_workloads(&self, se: &Resource<ServiceEntry>) -> Vec<&'a raw::WorkloadEntry> {
        let Some(selector) = &se.spec.workload_selector else {
            return Vec::new();
        };
        self.config
            .workload_entries
            .iter()
            .filter(|we| we.meta.namespace() == se.meta.namespace())
            .filter(|we| selector.labels.iter().all(|(k, v)| we.spec.labels.get(k) == Some(v)))
            .map(|we| &we.spec)
            .collect()
    }

    /// Istio `PushContext.destinationRule`: the workload's namespace, then the service's, then the
    /// root namespace; the first level with a matching rule wins, most specific host first.
    fn destination_rule(&self, host: &str, service_ns: Option<&str>) -> Option<MergedRule> {
        let proxy_ns = self.sel.namespace.as_str();
        let levels = [
            Some(proxy_ns),
            service_ns.filter(|ns| *ns != proxy_ns),
            Some(self.sel.root_namespace.as_str()).filter(|ns| *ns != proxy_ns),
        ];
        levels.into_iter().flatten().find_map(|ns| {
            let candidates: Vec<(&Resource<DestinationRule>, String)> = self
                .config
                .destination_rules
                .iter()
                .filter(|dr| dr.meta.namespace() == ns && self.dr_visible(dr, ns == proxy_ns))
                .map(|dr| (dr, expand_short_name(&dr.spec.host, dr.meta.namespace(), &self.sel.domain)))
                .filter(|(_, h)| subset_of(host, h))
                .collect();
            let best =
                candidates.iter().map(|(_, h)| h).min_by_key(|h| (is_wildcard(h), std::cmp::Reverse(h.len())))?.clone();
            Some(merge_rules(candidates.iter().filter(|(_, h)| *h == best).map(|(dr, _)| *dr)))
        })
    }

    fn dr_visible(&self, dr: &Resource<DestinationRule>, local: bool) -> bool {
        if let Some(sel) = &dr.spec.workload_selector {
            return local && sel.match_labels.iter().all(|(k, v)| self.sel.labels.get(k) == Some(v));
        }
        exported(&dr.spec.export_to, dr.meta.namespace(), &self.sel.namespace, local)
    }
}

/// Istio `exportTo`: empty or `*` = everyone; `.` = own namespace; names list namespaces.
fn exported(export_to: &[String], ns: &str, proxy_ns: &str, allow_local: bool) -> bool {
    export_to.is_empty()
        || export_to.iter().any(|e| e == "*" || e == proxy_ns || (allow_local && e == "." && ns == proxy_ns))
}

/// Istio `mergeDestinationRule`: subsets concatenated (first name wins), first traffic policy wins.
fn merge_rules<'r>(rules: impl Iterator<Item = &'r Resource<DestinationRule>>) -> MergedRule {
    let mut merged = MergedRule { from: Vec::new(), traffic_policy: None, subsets: Vec::new() };
    for dr in rules {
        merged.from.push(dr.meta.key());
        if merged.traffic_policy.is_none() {
            merged.traffic_policy.clone_from(&dr.spec.traffic_policy);
        }
        for s in &dr.spec.subsets {
            if !merged.subsets.iter().any(|m| m.name == s.name) {
                merged.subsets.push(s.clone());
            }
        }
    }
    merged
}

/// Istio `MergeTrafficPolicy`: top-level, its port-level settings for `port` (which replace the four
/// policies wholesale), then the subset's fields, then the subset's port-level settings.
fn policy_for(rule: &MergedRule, port: u16, subset: Option<&str>) -> ClusterPolicy {
    let mut p = ClusterPolicy { from: rule.from.clone(), ..ClusterPolicy::default() };
    if let Some(tp) = &rule.traffic_policy {
        apply(&mut p, tp, port);
    }
    let subset_policy =
        subset.and_then(|name| rule.subsets.iter().find(|s| s.name == name)).and_then(|s| s.traffic_policy.as_ref());
    if let Some(tp) = subset_policy {
        apply(&mut p, tp, port);
    }
    p
}

fn apply(p: &mut ClusterPolicy, tp: &TrafficPolicy, port: u16) {
    if tp.load_balancer.is_some() {
        p.load_balancer.clone_from(&tp.load_balancer);
    }
    if tp.connection_pool.is_some() {
        p.connection_pool.clone_from(&tp.connection_pool);
    }
    if tp.outlier_detection.is_some() {
        p.outlier_detection.clone_from(&tp.outlier_detection);
    }
    if tp.tls.is_some() {
        p.tls.clone_from(&tp.tls);
    }
    if let Some(pl) = tp.port_level_settings.iter().find(|pl| pl.port_number() == u32::from(port)) {
        p.load_balancer.clone_from(&pl.load_balancer);
        p.connection_pool.clone_from(&pl.connection_pool);
        p.outlier_detection.clone_from(&pl.outlier_detection);
        p.tls.clone_from(&pl.tls);
    }
}

impl Registry<'_> {
    /// A Kubernetes service's name (`<service>.<namespace>.svc.<domain>`, which short names
    /// expand to): a gateway pod finds it through the cluster's DNS even without a registry.
    fn is_kubernetes_service(&self, host: &str) -> bool {
        crate::model::host::kubernetes_namespace(host, &self.sel.domain).is_some()
    }
}

/// A Kubernetes service reached through the cluster's DNS: its name resolves to the Service's
/// ClusterIP, and the destination port is the Service port. The protocol is HTTP/1.1 (Istio would
/// infer it from the Service's port name, which is not known here).
fn kubernetes_dns_service(host: &str, port: u16, path: &dyn std::fmt::Display, r: &mut Reporter<'_>) -> Service {
    r.warn(
        Code::UnknownHost,
        path,
        format!("no ServiceEntry or Kubernetes Service defines host {host}: it is routed to the Kubernetes service through the cluster's DNS, port {port}, over HTTP/1.1"),
    );
    Service {
        defined_by: "Kubernetes DNS (no ServiceEntry or Service)".to_string(),
        protocol: Some(crate::model::Protocol::Http),
        resolution: Resolution::Dns,
        endpoints: vec![crate::table::Endpoint {
            address: host.to_string(),
            port,
            labels: Default::default(),
            weight: 1,
            istio_mtls: false,
        }],
    }
}

/// Why requests to a cluster will fail, if they will.
fn report(
    service: &Result<Service, String>,
    unknown_host: bool,
    name: &str,
    path: &dyn std::fmt::Display,
    r: &mut Reporter<'_>,
) {
    match service {
        Err(why) => {
            let code = if unknown_host {
                Code::UnknownHost
            } else if why.contains("subset") {
                Code::UnknownSubset
            } else {
                Code::UnknownPort
            };
            r.warn(code, path, format!("{why}; requests routed here get 503 (NC)")).hint =
                Some("define the destination with a ServiceEntry or a Kubernetes Service (and the subset with a DestinationRule)".into());
        }
        Ok(s) if s.endpoints.is_empty() => {
            r.warn(
                Code::NoEndpoints,
                path,
                format!(
                    "cluster {name} has no endpoints ({}); requests routed here get 503 (UH)",
                    no_endpoint_reason(s)
                ),
            );
        }
        Ok(_) => {}
    }
}

fn no_endpoint_reason(s: &Service) -> &'static str {
    match s.resolution {
        Resolution::None => "resolution NONE: a gateway has no original destination to forward to",
        _ => "no endpoint matches",
    }
}
