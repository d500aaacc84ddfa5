//! What Gateway API references name, and whether they may: ReferenceGrants (istio/istio
//! `gatewaycommon/references.go`), certificate Secrets (`conversion.go` `buildTLS`) and backends
//! (`buildDestination`).

use super::GROUP;
use crate::config::{Config, Resource};
use crate::raw::gateway_api::{BackendRef, GatewayTls, KubeGateway, ReferenceGrant};
use crate::raw::{ServerTlsMode, ServerTlsSettings};

use super::super::credentials::GATEWAY_API_SECRET;
use super::super::Selection;

/// The ReferenceGrants of the configuration.
pub(super) struct Grants<'a> {
    grants: &'a [Resource<ReferenceGrant>],
}

impl<'a> Grants<'a> {
    /// The grants of `config`.
    pub fn new(config: &'a Config) -> Self {
        Grants { grants: &config.reference_grants }
    }

    /// True when a ReferenceGrant in `to_ns` lets `from_kind` resources of `from_ns` refer to the
    /// `to_group`/`to_kind` named `name` (a grant without a name covers every one of the kind).
    pub fn allows(&self, from_kind: &str, from_ns: &str, to: (&str, &str), to_ns: &str, name: &str) -> bool {
        let (to_group, to_kind) = to;
        self.grants.iter().filter(|g| g.meta.namespace() == to_ns).any(|g| {
            g.spec.from.iter().any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n.is_empty() || n == name)
                })
        })
    }
}

/// Why a listener's TLS cannot be served: (field, reason, message).
pub(super) type TlsError = (&'static str, &'static str, String);

/// Istio `buildTLS`: `Passthrough`, or `Terminate` with the certificates of `certificateRefs`
/// (Secrets; another namespace's only with a ReferenceGrant). The listener option
/// `gateway.istio.io/tls-terminate-mode: ISTIO_MUTUAL` terminates with the mesh identity instead.
pub(super) fn server_tls(
    tls: &GatewayTls,
    grants: &Grants<'_>,
    gw: &Resource<KubeGateway>,
    _sel: &Selection,
) -> Result<ServerTlsSettings, TlsError> {
    if tls.mode.as_deref() == Some("Passthrough") {
        return Ok(ServerTlsSettings { mode: ServerTlsMode::Passthrough, ..ServerTlsSettings::default() });
    }
    match tls.options.get("gateway.istio.io/tls-terminate-mode").map(String::as_str) {
        Some("ISTIO_MUTUAL") => {
            return Ok(ServerTlsSettings { mode: ServerTlsMode::IstioMutual, ..ServerTlsSettings::default() })
        }
        None | Some("SIMPLE") => {}
        Some(other) => {
            return Err((
                "tls",
                "InvalidCertificateRef",
                format!("tls-terminate-mode {other} is not supported by this version (SIMPLE and ISTIO_MUTUAL are)"),
            ));
        }
    }
    if tls.certificate_refs.len() > 2 {
        return Err(("tls", "InvalidCertificateRef", "TLS mode can only support up to 2 server certificates".into()));
    }
    let gw_ns = gw.meta.namespace();
    let mut names = Vec::new();
    for c in &tls.certificate_refs {
        let ns = c.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(gw_ns);
        if ns != gw_ns && !grants.allows("Gateway", gw_ns, ("", "Secret"), ns, &c.name) {
            return Err(("tls", "RefNotPermitted", format!("certificateRef {}/{ns} not accessible to a Gateway in namespace {gw_ns:?} (missing a ReferenceGrant?)", c.name)));
        }
        let (group, kind) = (c.group.as_deref().unwrap_or(""), c.kind.as_deref().unwrap_or("Secret"));
        if !group.is_empty() || kind != "Secret" {
            return Err((
                "tls",
                "InvalidCertificateRef",
                format!("invalid certificate reference {group}/{kind}/{}.{ns}, only secret is allowed", c.name),
            ));
        }
        names.push(if ns == gw_ns { c.name.clone() } else { format!("{GATEWAY_API_SECRET}{ns}/{}", c.name) });
    }
    if names.is_empty() {
        return Err((
            "tls",
            "InvalidCertificateRef",
            "no certificateRefs: a Terminate listener needs a certificate".into(),
        ));
    }
    let mut settings = ServerTlsSettings { mode: ServerTlsMode::Simple, ..ServerTlsSettings::default() };
    if names.len() == 1 {
        settings.credential_name = names.pop();
    } else {
        settings.credential_names = names;
    }
    Ok(settings)
}

/// A backend as a destination host and port, or why it cannot be one: (reason, message).
pub(super) type Backend = Result<(String, u32), (&'static str, String)>;

/// Istio `buildDestination` for a backend of a `route_kind` in `route_ns`: a Service
/// (`<name>.<namespace>.svc.<domain>`, which must be in the configuration when it lists Services
/// at all; without any, the cluster's DNS finds it, as for VirtualServices) or a
/// `networking.istio.io/Hostname` (a ServiceEntry host, by exact name); another namespace's only
/// with a ReferenceGrant; `port` required.
pub(super) fn backend(
    b: &BackendRef,
    route_kind: &str,
    route_ns: &str,
    config: &Config,
    sel: &Selection,
    grants: &Grants<'_>,
) -> Backend {
    let (group, kind) = (b.group.as_deref().unwrap_or(""), b.kind.as_deref().unwrap_or("Service"));
    let ns = b.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(route_ns);
    if ns != route_ns && !grants.allows(route_kind, route_ns, (group, kind), ns, &b.name) {
        return Err(("RefNotPermitted", format!("backendRef {}/{ns} not accessible to a {route_kind} in namespace {route_ns:?} (missing a ReferenceGrant?)", b.name)));
    }
    let port = b.port.ok_or(("InvalidDestination", "port is required in backendRef".to_string()))?;
    match (group, kind) {
        ("" | "core", "Service") => {
            if b.name.contains('.') {
                return Err((
                    "InvalidDestination",
                    "service name invalid; the name of the Service must be used, not the hostname.".into(),
                ));
            }
            let host = format!("{}.{ns}.svc.{}", b.name, sel.domain);
            let registry = &config.kube_services;
            let known =
                registry.is_empty() || registry.iter().any(|s| s.meta.namespace() == ns && s.meta.name() == b.name);
            if known {
                Ok((host, port))
            } else {
                Err(("BackendNotFound", format!("backend({host}) not found")))
            }
        }
        ("networking.istio.io", "Hostname") => {
            if b.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
                return Err(("InvalidDestination", "namespace may not be set with Hostname type".into()));
            }
            let known = config.service_entries.iter().any(|se| se.spec.hosts.iter().any(|h| h == &b.name));
            if known {
                Ok((b.name.clone(), port))
            } else {
                Err(("BackendNotFound", format!("backend({}) not found", b.name)))
            }
        }
        _ => Err(("InvalidKind", format!("referencing unsupported backendRef: group {group:?} kind {kind:?}"))),
    }
}
