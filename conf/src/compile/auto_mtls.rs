//! Istio's automatic mutual TLS at a gateway: a destination with no DestinationRule `tls` gets
//! `ISTIO_MUTUAL` to the endpoints that are mesh workloads, and plaintext to the others.
//!
//! As Istio decides it (istio/istio `pilot/pkg/networking/core/cluster_tls.go`
//! `buildUpstreamTLSSettings`, and `PushContext.BestEffortInferServiceMTLSMode`):
//! - only for services inside the mesh: Kubernetes Services, and ServiceEntries with
//!   `location: MESH_INTERNAL` (MESH_EXTERNAL, the default, never);
//! - only when MeshConfig `enableAutoMtls` is on (the default);
//! - the service's mode is its namespace's PeerAuthentication (no selector), else the mesh-wide one
//!   (in the root namespace), else PERMISSIVE; `DISABLE` there means plaintext. Workload-level
//!   policies (`selector`, `portLevelMtls`) are not consulted: Istio cannot tell which workloads a
//!   service has when it builds a client's cluster, and neither can Pylon;
//! - an endpoint is a mesh workload when it is labelled `security.istio.io/tlsMode: istio` (the
//!   label Istio's sidecar injector puts on pods), or, for a WorkloadEntry without that label, when
//!   it names a `serviceAccount` (istio/istio `serviceentry/conversion.go`
//!   `getTLSModeFromWorkloadEntry`).
//!
//! A gateway's own listeners are governed by its Gateway servers, not by PeerAuthentication (Istio
//! applies PeerAuthentication to sidecars' inbound traffic).

use std::collections::BTreeMap;

use super::Selection;
use crate::config::{Config, Resource};
use crate::diagnostic::{Code, Diagnostics, Reporter};
use crate::raw::{ClientTlsMode, ClientTlsSettings, Location, PeerMtlsMode, ServiceEntry, WorkloadEntry};
use crate::table::{ClientTls, Service};

/// The label that says an endpoint runs Istio's proxy and accepts mesh mutual TLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// True when the endpoint is a mesh workload (see the module comment).
pub fn is_mesh_workload(we: &WorkloadEntry) -> bool {
    match we.labels.get(TLS_MODE_LABEL) {
        Some(mode) => mode == "istio",
        None => we.service_account.as_deref().is_some_and(|sa| !sa.is_empty()),
    }
}

/// The mesh and namespace modes of the PeerAuthentications in the configuration.
#[derive(Debug, Default)]
pub(super) struct PeerModes {
    /// The mesh-wide mode (root namespace, no selector); `None`: no such policy.
    mesh: Option<PeerMtlsMode>,
    /// Namespace-level modes as written (`UNSET` inherits the mesh's).
    namespaces: BTreeMap<String, PeerMtlsMode>,
}

impl PeerModes {
    /// Reads the policies in Istio's order (oldest first; the oldest namespace- or mesh-level one of
    /// a namespace wins, the others are reported and ignored).
    pub(super) fn new(config: &Config, sel: &Selection, out: &mut Diagnostics) -> Self {
        let mut modes = PeerModes::default();
        let mut first: BTreeMap<&str, String> = BTreeMap::new();
        for p in &config.peer_authentications {
            let ns = p.meta.namespace();
            let mode = p.spec.mtls.as_ref().map(|m| m.mode).unwrap_or_default();
            let mut r = Reporter::new(&p.meta.id, out);
            let Some(selector) = p.spec.selector.as_ref().filter(|s| !s.match_labels.is_empty()) else {
                if let Some(older) = first.get(ns) {
                    let scope = if ns == sel.root_namespace { "mesh" } else { "namespace" };
                    r.warn(Code::Policy, "", format!("{older} is already the {scope}-level PeerAuthentication of {ns}; Istio uses the oldest, and this one is ignored"));
                    continue;
                }
                first.insert(ns, p.meta.key());
                if ns == sel.root_namespace {
                    modes.mesh = Some(mode);
                } else {
                    modes.namespaces.insert(ns.to_string(), mode);
                }
                continue;
            };
            let selects_this = (ns == sel.namespace || ns == sel.root_namespace)
                && selector.match_labels.iter().all(|(k, v)| sel.labels.get(k) == Some(v));
            if selects_this {
                r.warn(Code::Policy, "spec.selector", "selects this gateway, whose listeners take their TLS from its Gateway servers: PeerAuthentication governs sidecars, and has no effect here").hint =
                    Some("set the TLS of a gateway port in its Gateway server (`tls.mode` SIMPLE, MUTUAL or ISTIO_MUTUAL)".into());
            } else if mode == PeerMtlsMode::Disable || has_disable(&p.spec) {
                r.warn(Code::Policy, "spec.selector", "a workload-level DISABLE does not change what the gateway sends: Istio's automatic mTLS follows the mesh and namespace policies only, so these workloads still get mutual TLS when labelled as mesh workloads").hint =
                    Some("give their host a DestinationRule with `trafficPolicy.tls.mode: DISABLE`".into());
            }
        }
        modes
    }

    /// The mode of services in `namespace`: never `UNSET` (PERMISSIVE by default).
    pub(super) fn of(&self, namespace: &str) -> PeerMtlsMode {
        let mesh = self.mesh.filter(|m| *m != PeerMtlsMode::Unset).unwrap_or(PeerMtlsMode::Permissive);
        match self.namespaces.get(namespace) {
            Some(PeerMtlsMode::Unset) | None => mesh,
            Some(mode) => *mode,
        }
    }
}

fn has_disable(p: &crate::raw::PeerAuthentication) -> bool {
    p.port_level_mtls.iter().flat_map(|m| m.values()).any(|m| m.mode == PeerMtlsMode::Disable)
}

/// What automatic mTLS does for one cluster without a DestinationRule `tls`.
pub(super) struct Destination<'a> {
    /// The service's definition, when the registry has one.
    pub se: Option<&'a Resource<ServiceEntry>>,
    /// The service (endpoints flagged as mesh workloads or not).
    pub service: &'a Result<Service, String>,
    /// The cluster's name, for messages.
    pub cluster: &'a str,
    /// Istio's outbound SNI for the cluster.
    pub outbound: &'a str,
}

/// `ISTIO_MUTUAL` for the mesh workloads of `d`, or `None` (plaintext). Without an identity, mesh
/// workloads in a STRICT namespace are an error (they refuse plaintext), and in a PERMISSIVE one a
/// warning (they get plaintext).
pub(super) fn origination(
    d: &Destination<'_>,
    modes: &PeerModes,
    sel: &Selection,
    path: &dyn std::fmt::Display,
    r: &mut Reporter<'_>,
) -> Option<ClientTls> {
    let Some(se) = d.se else {
        dns_only(d, modes, sel, path, r);
        return None;
    };
    let inside = se.meta.id.kind == "Service" || se.spec.location == Some(Location::MeshInternal);
    if !inside || !sel.auto_mtls {
        return None;
    }
    let ns = se.meta.namespace();
    let mode = modes.of(ns);
    let workloads = d.service.as_ref().map_or(0, |s| s.endpoints.iter().filter(|e| e.istio_mtls).count());
    if mode == PeerMtlsMode::Disable || workloads == 0 {
        return None;
    }
    if sel.identity_dir.is_none() {
        let what = format!("{workloads} endpoint(s) of {} are mesh workloads ({TLS_MODE_LABEL}: istio) in namespace {ns}, whose PeerAuthentication mode is {}", d.cluster, mode.as_str());
        let hint = "give Pylon the mesh identity with --identity-dir DIR (cert-chain.pem, key.pem, root-cert.pem), or set DestinationRule `trafficPolicy.tls.mode: DISABLE` for the host to send plaintext knowingly";
        if mode == PeerMtlsMode::Strict {
            r.error(Code::Unsupported, path, format!("{what}: they accept only Istio mutual TLS, which needs the mesh's workload identity, and this workload has none")).hint = Some(hint.into());
        } else {
            r.warn(
                Code::Unsupported,
                path,
                format!("{what}: without a workload identity they get plaintext, which PERMISSIVE accepts"),
            )
            .hint = Some(hint.into());
        }
        return None;
    }
    let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..ClientTlsSettings::default() };
    let mut tls = super::credentials::istio_mutual(&settings, &format!("{path} ({})", d.cluster), d.outbound, sel, r)?;
    tls.auto = true;
    Some(tls)
}

/// A Kubernetes service reached through the cluster's DNS only: Pylon cannot tell whether its
/// pods are mesh workloads, and sends plaintext; under STRICT that is worth a warning.
fn dns_only(
    d: &Destination<'_>,
    modes: &PeerModes,
    sel: &Selection,
    path: &dyn std::fmt::Display,
    r: &mut Reporter<'_>,
) {
    let Ok(service) = d.service else { return };
    let Some(host) = service.endpoints.first().map(|e| e.address.as_str()) else { return };
    let Some(ns) = crate::model::host::kubernetes_namespace(host, &sel.domain) else { return };
    if sel.auto_mtls && modes.of(ns) == PeerMtlsMode::Strict {
        r.warn(Code::Policy, path, format!("namespace {ns} is STRICT, but {host} is reached through the cluster's DNS, so Pylon cannot tell whether its pods are mesh workloads: it sends plaintext, which their sidecars refuse")).hint =
            Some("include the Service with its EndpointSlices and Pods (labelled security.istio.io/tlsMode: istio), or give the host a DestinationRule with `trafficPolicy.tls.mode: ISTIO_MUTUAL`".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(yaml: &str) -> PeerModes {
        let sel = Selection::default();
        let loaded = crate::load::load_str("pa.yaml", yaml, &sel.namespace);
        let mut out = Diagnostics::default();
        PeerModes::new(&loaded.config, &sel, &mut out)
    }

    fn pa(name: &str, ns: &str, mode: &str) -> String {
        format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{mtls: {{mode: {mode}}}}}\n---\n")
    }

    #[test]
    fn a_namespace_inherits_the_mesh_mode_unless_it_sets_its_own() {
        let m = modes(
            &(pa("mesh", "istio-system", "STRICT")
                + &pa("legacy", "legacy", "DISABLE")
                + &pa("unset", "apps", "UNSET")),
        );
        assert_eq!(m.of("default"), PeerMtlsMode::Strict);
        assert_eq!(m.of("apps"), PeerMtlsMode::Strict, "UNSET inherits");
        assert_eq!(m.of("legacy"), PeerMtlsMode::Disable);
    }

    #[test]
    fn without_policies_every_namespace_is_permissive() {
        assert_eq!(modes("").of("default"), PeerMtlsMode::Permissive);
        assert_eq!(modes(&pa("mesh", "istio-system", "UNSET")).of("default"), PeerMtlsMode::Permissive);
    }

    #[test]
    fn a_workload_entry_is_a_mesh_workload_by_its_label_or_its_service_account() {
        let we = |labels: &[(&str, &str)], sa: Option<&str>| WorkloadEntry {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            service_account: sa.map(str::to_string),
            ..WorkloadEntry::default()
        };
        assert!(is_mesh_workload(&we(&[(TLS_MODE_LABEL, "istio")], None)));
        assert!(!is_mesh_workload(&we(&[(TLS_MODE_LABEL, "disabled")], Some("reviews"))), "the label wins");
        assert!(is_mesh_workload(&we(&[], Some("reviews"))));
        assert!(!is_mesh_workload(&we(&[], None)));
    }
}
