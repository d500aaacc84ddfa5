//! The Kubernetes service registry: each `Service`, with the endpoints its `EndpointSlice`s (or,
//! without any, its `Endpoints`) list and the labels of the `Pod`s behind them, becomes the service
//! Istio's Kubernetes controller makes of it (istio/istio
//! `pilot/pkg/serviceregistry/kube/conversion.go` `ConvertService`, and the EndpointSlice
//! controller): host `<name>.<namespace>.svc.<domain>`, ports with the protocol Istio infers from
//! `appProtocol` or the port name, endpoints on the pods' ports matched by port name.
//!
//! Also the gateway's own Service: one in this workload's namespace whose selector picks this
//! workload translates a Gateway server port (the Service `port`) to the port the pod listens on
//! (its `targetPort`), as Istio's gateway listeners do.

use std::collections::{BTreeMap, HashMap};

use super::Selection;
use crate::config::{Config, Foreign, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::model::Protocol;
use crate::raw::{
    EndpointPort, IntOrString, KubeService, ObjectReference, Port, Resolution, ServiceEntry, WorkloadEntry,
    EXPORT_TO_ANNOTATION, SERVICE_NAME_LABEL,
};

/// Every Service as the ServiceEntry it amounts to (its `meta` is the Service's, so messages and
/// `pylon routes` name the Service).
pub(super) fn service_entries(config: &Config, sel: &Selection, out: &mut Diagnostics) -> Vec<Resource<ServiceEntry>> {
    let pods: HashMap<(&str, &str), &Foreign> = config
        .foreign
        .iter()
        .filter(|f| f.group.is_empty() && f.meta.id.kind == "Pod")
        .map(|f| ((f.meta.namespace(), f.meta.name()), f))
        .collect();
    config
        .kube_services
        .iter()
        .map(|svc| Resource { meta: svc.meta.clone(), spec: convert(svc, config, &pods, sel, out) })
        .collect()
}

fn convert(
    svc: &Resource<KubeService>,
    config: &Config,
    pods: &HashMap<(&str, &str), &Foreign>,
    sel: &Selection,
    out: &mut Diagnostics,
) -> ServiceEntry {
    let mut r = Reporter::new(&svc.meta.id, out);
    let spec = &svc.spec;
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        if !(1..=65535).contains(&p.port) {
            r.warn(Code::Port, format!("spec.ports[{i}].port"), format!("port {} is not in 1-65535; skipped", p.port));
            continue;
        }
        let protocol = Protocol::from_kubernetes(p.port, &p.name, p.protocol.as_deref(), p.app_protocol.as_deref());
        let target_port = match p.target_port {
            Some(IntOrString::Int(n)) if n > 0 => Some(n),
            _ => None,
        };
        ports.push(Port {
            number: p.port,
            protocol: protocol.map(|p| p.as_str().to_string()).unwrap_or_default(),
            name: p.name.clone(),
            target_port,
            null: false,
        });
    }
    let export_to = svc
        .meta
        .annotations
        .get(EXPORT_TO_ANNOTATION)
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let host = format!("{}.{}.svc.{}", svc.meta.name(), svc.meta.namespace(), sel.domain);
    let (resolution, endpoints) = match &spec.external_name {
        // Istio: an ExternalName service is DNS-resolved, its name on the Service ports.
        Some(name) if spec.is_external_name() => {
            let ports = spec.ports.iter().map(|p| (p.name.clone(), p.port)).collect();
            (Resolution::Dns, vec![WorkloadEntry { address: name.clone(), ports, ..WorkloadEntry::default() }])
        }
        _ => (Resolution::Static, endpoints(svc, config, pods)),
    };
    ServiceEntry { hosts: vec![host], ports, resolution, endpoints, export_to, ..ServiceEntry::default() }
}

/// The Service's endpoints: from its EndpointSlices when it has any (Istio reads only those), else
/// from its Endpoints. Ready endpoints only, unless the Service publishes those not ready;
/// terminating ones never. One entry per address, its ports by Service port name.
fn endpoints(
    svc: &Resource<KubeService>,
    config: &Config,
    pods: &HashMap<(&str, &str), &Foreign>,
) -> Vec<WorkloadEntry> {
    let (ns, name) = (svc.meta.namespace(), svc.meta.name());
    let all = svc.spec.publish_not_ready_addresses;
    let mut found: Vec<(&str, Option<&ObjectReference>, &[EndpointPort])> = Vec::new();
    let slices: Vec<_> = config
        .endpoint_slices
        .iter()
        .filter(|s| s.meta.namespace() == ns && s.meta.labels.get(SERVICE_NAME_LABEL).is_some_and(|n| n == name))
        .collect();
    if slices.is_empty() {
        for e in config.endpoints.iter().filter(|e| e.meta.namespace() == ns && e.meta.name() == name) {
            for subset in &e.spec.subsets {
                let not_ready = subset.not_ready_addresses.iter().filter(|_| all);
                for a in subset.addresses.iter().chain(not_ready) {
                    found.push((&a.ip, a.target_ref.as_ref(), &subset.ports));
                }
            }
        }
    }
    for slice in slices.iter().filter(|s| !s.spec.address_type.eq_ignore_ascii_case("FQDN")) {
        for ep in &slice.spec.endpoints {
            let ready = ep.conditions.ready.unwrap_or(true) && ep.conditions.terminating != Some(true);
            if let Some(address) = ep.addresses.first().filter(|_| ready || all) {
                found.push((address, ep.target_ref.as_ref(), &slice.spec.ports));
            }
        }
    }
    let mut by_address: BTreeMap<&str, WorkloadEntry> = BTreeMap::new();
    for (address, target, ports) in found {
        let entry = by_address.entry(address).or_insert_with(|| WorkloadEntry {
            address: address.to_string(),
            labels: pod_labels(target, ns, pods),
            ..WorkloadEntry::default()
        });
        for p in ports.iter().filter(|p| !p.protocol.as_deref().is_some_and(|x| x.eq_ignore_ascii_case("UDP"))) {
            if let Some(port) = p.port {
                entry.ports.insert(p.name.clone().unwrap_or_default(), port);
            }
        }
    }
    by_address.into_values().collect()
}

/// The labels of the pod behind an endpoint (which subsets select on), when the configuration has it.
fn pod_labels(
    target: Option<&ObjectReference>,
    ns: &str,
    pods: &HashMap<(&str, &str), &Foreign>,
) -> BTreeMap<String, String> {
    target
        .filter(|t| t.kind == "Pod")
        .and_then(|t| pods.get(&(t.namespace.as_deref().unwrap_or(ns), t.name.as_str())))
        .map(|pod| pod.meta.labels.clone())
        .unwrap_or_default()
}

/// Gateway server port → the port this workload listens on, from the Services in its namespace
/// that select it (the first such Service to name a port wins). A named `targetPort` cannot be
/// resolved without the pod spec: that port keeps its number, with a warning.
pub(super) fn port_translation(config: &Config, sel: &Selection, out: &mut Diagnostics) -> BTreeMap<u16, u16> {
    let mut map = BTreeMap::new();
    let selects_us =
        |s: &KubeService| !s.selector.is_empty() && s.selector.iter().all(|(k, v)| sel.labels.get(k) == Some(v));
    for svc in config.kube_services.iter().filter(|s| s.meta.namespace() == sel.namespace && selects_us(&s.spec)) {
        let mut r = Reporter::new(&svc.meta.id, out);
        for (i, p) in svc.spec.ports.iter().enumerate() {
            let Ok(port) = u16::try_from(p.port) else { continue };
            match &p.target_port {
                Some(IntOrString::Int(t)) => {
                    if let Ok(t) = u16::try_from(*t).map(|t| if t == 0 { port } else { t }) {
                        map.entry(port).or_insert(t);
                    }
                }
                Some(IntOrString::String(name)) => {
                    r.warn(
                        Code::Port,
                        format!("spec.ports[{i}].targetPort"),
                        format!("the named target port {name:?} cannot be resolved without the pod spec; Gateway servers on port {port} listen on {port}"),
                    )
                    .hint = Some("give the target port as a number, or map the port with --port-map".into());
                }
                None => {}
            }
        }
    }
    map
}
