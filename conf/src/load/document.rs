//! One YAML document → one resource (or several, for a `List`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::decode::decode;
use crate::config::{parse_timestamp, Config, Foreign, Meta, Origin, Resource};
use crate::diagnostic::{Code, Diagnostic, Diagnostics, Location, Reporter, ResourceRef, Severity};
use crate::raw::{self, ObjectMeta};

/// A decoded resource of any kind.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per document, moved once into its list
pub enum Loaded {
    /// Gateway.
    Gateway(Resource<raw::Gateway>),
    /// VirtualService.
    VirtualService(Resource<raw::VirtualService>),
    /// DestinationRule.
    DestinationRule(Resource<raw::DestinationRule>),
    /// ServiceEntry.
    ServiceEntry(Resource<raw::ServiceEntry>),
    /// WorkloadEntry.
    WorkloadEntry(Resource<raw::WorkloadEntry>),
    /// Secret.
    Secret(Resource<raw::Secret>),
    /// Kubernetes Service.
    KubeService(Resource<raw::KubeService>),
    /// Kubernetes Endpoints.
    Endpoints(Resource<raw::Endpoints>),
    /// Kubernetes EndpointSlice.
    EndpointSlice(Resource<raw::EndpointSlice>),
    /// RequestAuthentication.
    RequestAuthentication(Resource<raw::RequestAuthentication>),
    /// AuthorizationPolicy.
    AuthorizationPolicy(Resource<raw::AuthorizationPolicy>),
    /// PeerAuthentication.
    PeerAuthentication(Resource<raw::PeerAuthentication>),
    /// GatewayPolicy.
    GatewayPolicy(Resource<raw::GatewayPolicy>),
    /// Gateway API `GatewayClass`.
    GatewayClass(Resource<raw::gateway_api::GatewayClass>),
    /// Gateway API `Gateway`.
    KubeGateway(Resource<raw::gateway_api::KubeGateway>),
    /// Gateway API `HTTPRoute`.
    KubeHttpRoute(Resource<raw::gateway_api::KubeHttpRoute>),
    /// Gateway API `GRPCRoute`.
    GrpcRoute(Resource<raw::gateway_api::GrpcRoute>),
    /// Gateway API `TLSRoute`.
    TlsRoute(Resource<raw::gateway_api::L4Route>),
    /// Gateway API `TCPRoute`.
    TcpRoute(Resource<raw::gateway_api::L4Route>),
    /// Gateway API `ReferenceGrant`.
    ReferenceGrant(Resource<raw::gateway_api::ReferenceGrant>),
    /// Anything else.
    Foreign(Foreign),
}

impl Loaded {
    pub(super) fn meta(&self) -> &Meta {
        match self {
            Loaded::Gateway(r) => &r.meta,
            Loaded::VirtualService(r) => &r.meta,
            Loaded::DestinationRule(r) => &r.meta,
            Loaded::ServiceEntry(r) => &r.meta,
            Loaded::WorkloadEntry(r) => &r.meta,
            Loaded::Secret(r) => &r.meta,
            Loaded::KubeService(r) => &r.meta,
            Loaded::Endpoints(r) => &r.meta,
            Loaded::EndpointSlice(r) => &r.meta,
            Loaded::RequestAuthentication(r) => &r.meta,
            Loaded::AuthorizationPolicy(r) => &r.meta,
            Loaded::PeerAuthentication(r) => &r.meta,
            Loaded::GatewayPolicy(r) => &r.meta,
            Loaded::GatewayClass(r) => &r.meta,
            Loaded::KubeGateway(r) => &r.meta,
            Loaded::KubeHttpRoute(r) => &r.meta,
            Loaded::GrpcRoute(r) => &r.meta,
            Loaded::TlsRoute(r) => &r.meta,
            Loaded::TcpRoute(r) => &r.meta,
            Loaded::ReferenceGrant(r) => &r.meta,
            Loaded::Foreign(f) => &f.meta,
        }
    }

    pub(super) fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Loaded::Gateway(r) => &mut r.meta,
            Loaded::VirtualService(r) => &mut r.meta,
            Loaded::DestinationRule(r) => &mut r.meta,
            Loaded::ServiceEntry(r) => &mut r.meta,
            Loaded::WorkloadEntry(r) => &mut r.meta,
            Loaded::Secret(r) => &mut r.meta,
            Loaded::KubeService(r) => &mut r.meta,
            Loaded::Endpoints(r) => &mut r.meta,
            Loaded::EndpointSlice(r) => &mut r.meta,
            Loaded::RequestAuthentication(r) => &mut r.meta,
            Loaded::AuthorizationPolicy(r) => &mut r.meta,
            Loaded::PeerAuthentication(r) => &mut r.meta,
            Loaded::GatewayPolicy(r) => &mut r.meta,
            Loaded::GatewayClass(r) => &mut r.meta,
            Loaded::KubeGateway(r) => &mut r.meta,
            Loaded::KubeHttpRoute(r) => &mut r.meta,
            Loaded::GrpcRoute(r) => &mut r.meta,
            Loaded::TlsRoute(r) => &mut r.meta,
            Loaded::TcpRoute(r) => &mut r.meta,
            Loaded::ReferenceGrant(r) => &mut r.meta,
            Loaded::Foreign(f) => &mut f.meta,
        }
    }
}

/// Appends a resource to its list.
pub(super) fn store(config: &mut Config, loaded: Loaded) {
    match loaded {
        Loaded::Gateway(r) => config.gateways.push(r),
        Loaded::VirtualService(r) => config.virtual_services.push(r),
        Loaded::DestinationRule(r) => config.destination_rules.push(r),
        Loaded::ServiceEntry(r) => config.service_entries.push(r),
        Loaded::WorkloadEntry(r) => config.workload_entries.push(r),
        Loaded::Secret(r) => config.secrets.push(r),
        Loaded::KubeService(r) => config.kube_services.push(r),
        Loaded::Endpoints(r) => config.endpoints.push(r),
        Loaded::EndpointSlice(r) => config.endpoint_slices.push(r),
        Loaded::RequestAuthentication(r) => config.request_authentications.push(r),
        Loaded::AuthorizationPolicy(r) => config.authorization_policies.push(r),
        Loaded::PeerAuthentication(r) => config.peer_authentications.push(r),
        Loaded::GatewayPolicy(r) => config.gateway_policies.push(r),
        Loaded::GatewayClass(r) => config.gateway_classes.push(r),
        Loaded::KubeGateway(r) => config.kube_gateways.push(r),
        Loaded::KubeHttpRoute(r) => config.http_routes.push(r),
        Loaded::GrpcRoute(r) => config.grpc_routes.push(r),
        Loaded::TlsRoute(r) => config.tls_routes.push(r),
        Loaded::TcpRoute(r) => config.tcp_routes.push(r),
        Loaded::ReferenceGrant(r) => config.reference_grants.push(r),
        Loaded::Foreign(f) => config.foreign.push(f),
    }
}

/// Removes a resource by identity; returns its load index.
pub(super) fn remove(config: &mut Config, id: &ResourceRef) -> Option<usize> {
    fn take<T>(list: &mut Vec<Resource<T>>, id: &ResourceRef) -> Option<usize> {
        let pos = list.iter().position(|r| &r.meta.id == id)?;
        Some(list.remove(pos).meta.load_index)
    }
    take(&mut config.gateways, id)
        .or_else(|| take(&mut config.virtual_services, id))
        .or_else(|| take(&mut config.destination_rules, id))
        .or_else(|| take(&mut config.service_entries, id))
        .or_else(|| take(&mut config.workload_entries, id))
        .or_else(|| take(&mut config.secrets, id))
        .or_else(|| take(&mut config.kube_services, id))
        .or_else(|| take(&mut config.endpoints, id))
        .or_else(|| take(&mut config.endpoint_slices, id))
        .or_else(|| take(&mut config.request_authentications, id))
        .or_else(|| take(&mut config.authorization_policies, id))
        .or_else(|| take(&mut config.peer_authentications, id))
        .or_else(|| take(&mut config.gateway_policies, id))
        .or_else(|| take(&mut config.gateway_classes, id))
        .or_else(|| take(&mut config.kube_gateways, id))
        .or_else(|| take(&mut config.http_routes, id))
        .or_else(|| take(&mut config.grpc_routes, id))
        .or_else(|| take(&mut config.tls_routes, id))
        .or_else(|| take(&mut config.tcp_routes, id))
        .or_else(|| take(&mut config.reference_grants, id))
        .or_else(|| {
            let pos = config.foreign.iter().position(|f| &f.meta.id == id)?;
            Some(config.foreign.remove(pos).meta.load_index)
        })
}

/// The kinds Pylon decodes, by API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Gateway,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Secret,
    KubeService,
    Endpoints,
    EndpointSlice,
    RequestAuthentication,
    AuthorizationPolicy,
    PeerAuthentication,
    GatewayPolicy,
    GatewayClass,
    KubeGateway,
    KubeHttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    ReferenceGrant,
}

pub(super) fn routed_kind(group: &str, version: &str, kind: &str) -> Option<Kind> {
    match (group, kind) {
        ("networking.istio.io", _) if !matches!(version, "v1" | "v1beta1" | "v1alpha3") => None,
        ("networking.istio.io", "Gateway") => Some(Kind::Gateway),
        ("networking.istio.io", "VirtualService") => Some(Kind::VirtualService),
        ("networking.istio.io", "DestinationRule") => Some(Kind::DestinationRule),
        ("networking.istio.io", "ServiceEntry") => Some(Kind::ServiceEntry),
        ("networking.istio.io", "WorkloadEntry") => Some(Kind::WorkloadEntry),
        ("", "Secret") if version == "v1" => Some(Kind::Secret),
        ("", "Service") if version == "v1" => Some(Kind::KubeService),
        ("", "Endpoints") if version == "v1" => Some(Kind::Endpoints),
        ("discovery.k8s.io", "EndpointSlice") if version == "v1" => Some(Kind::EndpointSlice),
        ("security.istio.io", _) if !matches!(version, "v1" | "v1beta1") => None,
        ("security.istio.io", "RequestAuthentication") => Some(Kind::RequestAuthentication),
        ("security.istio.io", "AuthorizationPolicy") => Some(Kind::AuthorizationPolicy),
        ("security.istio.io", "PeerAuthentication") => Some(Kind::PeerAuthentication),
        ("gateway.pylon.dev", "GatewayPolicy") if version == "v1alpha1" => Some(Kind::GatewayPolicy),
        ("gateway.networking.k8s.io", kind) if matches!(version, "v1" | "v1beta1" | "v1alpha2" | "v1alpha3") => {
            gateway_api_kind(kind)
        }
        _ => None,
    }
}

/// The Gateway API kinds Pylon serves.
fn gateway_api_kind(kind: &str) -> Option<Kind> {
    Some(match kind {
        "GatewayClass" => Kind::GatewayClass,
        "Gateway" => Kind::KubeGateway,
        "HTTPRoute" => Kind::KubeHttpRoute,
        "GRPCRoute" => Kind::GrpcRoute,
        "TLSRoute" => Kind::TlsRoute,
        "TCPRoute" => Kind::TcpRoute,
        "ReferenceGrant" => Kind::ReferenceGrant,
        _ => return None,
    })
}

/// Reads one document. Problems go to `out`; what could be decoded is returned.
pub(super) fn read(value: Value, origin: &Origin, namespace: &str, out: &mut Diagnostics) -> Vec<Loaded> {
    let Value::Mapping(mut map) = value else {
        if !value.is_null() {
            out.push(file_problem(origin, "a document must be a mapping with apiVersion, kind and metadata"));
        }
        return Vec::new();
    };
    let api_version = take_string(&mut map, "apiVersion");
    let kind = take_string(&mut map, "kind");
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        out.push(file_problem(origin, "the document has no apiVersion or kind"));
        return Vec::new();
    };
    if kind == "List" || kind.ends_with("List") && map.contains_key("items") {
        return read_list(map, origin, namespace, out);
    }
    let Some(meta) = read_meta(&mut map, &kind, origin, namespace, out) else {
        return Vec::new();
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
    let Some(routed) = routed_kind(group, version, &kind) else {
        return vec![Loaded::Foreign(foreign(meta, group, &map))];
    };
    decode_kind(routed, meta, map, out).into_iter().collect()
}

fn read_list(mut map: serde_yaml::Mapping, origin: &Origin, ns: &str, out: &mut Diagnostics) -> Vec<Loaded> {
    match map.remove("items") {
        Some(Value::Sequence(items)) => items.into_iter().flat_map(|item| read(item, origin, ns, out)).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(_) => {
            out.push(file_problem(origin, "items of a List must be a sequence"));
            Vec::new()
        }
    }
}

fn decode_kind(kind: Kind, meta: Meta, mut map: serde_yaml::Mapping, out: &mut Diagnostics) -> Option<Loaded> {
    // Kubernetes' own kinds are read leniently (a dump carries `status` and fields Pylon has no
    // use for); Secret, Endpoints and EndpointSlice have no `spec`.
    let mut r = Reporter::new(&meta.id, out);
    match kind {
        Kind::Secret => {
            return Some(Loaded::Secret(Resource { spec: decode(top_level(map), "", &mut r, true)?, meta }))
        }
        Kind::Endpoints => {
            return Some(Loaded::Endpoints(Resource { spec: decode(top_level(map), "", &mut r, true)?, meta }))
        }
        Kind::EndpointSlice => {
            return Some(Loaded::EndpointSlice(Resource { spec: decode(top_level(map), "", &mut r, true)?, meta }))
        }
        _ => {}
    }
    let spec = map.remove("spec").unwrap_or(Value::Null);
    let spec = if spec.is_null() { Value::Mapping(Default::default()) } else { spec };
    with_spec(kind, &mut SpecValue { meta: &meta, spec: Some(spec), out })
}

/// Where a resource's metadata and spec are decoded from, once its kind says the spec's type.
pub(super) trait SpecSource {
    /// The metadata and the spec as `S`; `lenient` lets fields `S` does not have pass.
    fn decode<S: DeserializeOwned>(&mut self, lenient: bool) -> Option<(Meta, S)>;
}

/// A spec's value tree, its problems reported against the resource.
struct SpecValue<'a> {
    meta: &'a Meta,
    spec: Option<Value>,
    out: &'a mut Diagnostics,
}

impl SpecSource for SpecValue<'_> {
    fn decode<S: DeserializeOwned>(&mut self, lenient: bool) -> Option<(Meta, S)> {
        let mut r = Reporter::new(&self.meta.id, self.out);
        let spec = decode(self.spec.take()?, "spec", &mut r, lenient)?;
        Some((self.meta.clone(), spec))
    }
}

/// The resource of a kind with a `spec`, decoded from `source`; `None` for a kind without one.
pub(super) fn with_spec(kind: Kind, source: &mut impl SpecSource) -> Option<Loaded> {
    fn resource<S: DeserializeOwned>(source: &mut impl SpecSource, lenient: bool) -> Option<Resource<S>> {
        source.decode(lenient).map(|(meta, spec)| Resource { meta, spec })
    }
    let s = source;
    Some(match kind {
        Kind::KubeService => Loaded::KubeService(resource(s, true)?),
        Kind::Gateway => Loaded::Gateway(resource(s, false)?),
        Kind::VirtualService => Loaded::VirtualService(resource(s, false)?),
        Kind::DestinationRule => Loaded::DestinationRule(resource(s, false)?),
        Kind::ServiceEntry => Loaded::ServiceEntry(resource(s, false)?),
        Kind::WorkloadEntry => Loaded::WorkloadEntry(resource(s, false)?),
        Kind::RequestAuthentication => Loaded::RequestAuthentication(resource(s, false)?),
        Kind::AuthorizationPolicy => Loaded::AuthorizationPolicy(resource(s, false)?),
        Kind::PeerAuthentication => Loaded::PeerAuthentication(resource(s, false)?),
        Kind::GatewayPolicy => Loaded::GatewayPolicy(resource(s, false)?),
        Kind::GatewayClass => Loaded::GatewayClass(resource(s, false)?),
        Kind::KubeGateway => Loaded::KubeGateway(resource(s, false)?),
        Kind::KubeHttpRoute => Loaded::KubeHttpRoute(resource(s, false)?),
        Kind::GrpcRoute => Loaded::GrpcRoute(resource(s, false)?),
        Kind::TlsRoute => Loaded::TlsRoute(resource(s, false)?),
        Kind::TcpRoute => Loaded::TcpRoute(resource(s, false)?),
        Kind::ReferenceGrant => Loaded::ReferenceGrant(resource(s, false)?),
        Kind::Secret | Kind::Endpoints | Kind::EndpointSlice => return None,
    })
}

/// A kind without `spec`: its top-level fields, less the metadata already read.
fn top_level(mut map: serde_yaml::Mapping) -> Value {
    map.remove("metadata");
    Value::Mapping(map)
}

fn read_meta(
    map: &mut serde_yaml::Mapping,
    kind: &str,
    origin: &Origin,
    namespace: &str,
    out: &mut Diagnostics,
) -> Option<Meta> {
    let value = map.remove("metadata").unwrap_or(Value::Null);
    let meta: ObjectMeta = match serde_yaml::from_value(value) {
        Ok(m) => m,
        Err(e) => {
            out.push(file_problem(origin, &format!("{kind}: metadata is invalid: {e}")));
            return None;
        }
    };
    meta_from(meta, kind, origin, namespace, out)
}

/// A resource's identity, labels and order from its `metadata`; `None` (reported) without a name.
pub(super) fn meta_from(
    meta: ObjectMeta,
    kind: &str,
    origin: &Origin,
    namespace: &str,
    out: &mut Diagnostics,
) -> Option<Meta> {
    if meta.name.is_empty() {
        out.push(file_problem(origin, &format!("{kind} has no metadata.name")));
        return None;
    }
    let id = ResourceRef {
        kind: kind.to_string(),
        namespace: meta.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| namespace.to_string()),
        name: meta.name.clone(),
    };
    let created = meta.creation_timestamp.as_deref().and_then(parse_timestamp);
    if meta.creation_timestamp.is_some() && created.is_none() {
        let mut r = Reporter::new(&id, out);
        r.warn(
            Code::InvalidValue,
            "metadata.creationTimestamp",
            "not an RFC 3339 time; the resource is ordered as if it had none",
        )
        .hint = Some("use the form 2024-05-01T10:00:00Z".into());
    }
    Some(Meta {
        id,
        labels: meta.labels,
        annotations: meta.annotations,
        created,
        load_index: 0,
        origin: origin.clone(),
    })
}

fn foreign(meta: Meta, group: &str, map: &serde_yaml::Mapping) -> Foreign {
    let spec = map.get("spec");
    let labels_at = |outer: &str, inner: &str| -> Option<BTreeMap<String, String>> {
        let v = spec?.get(outer)?.get(inner)?;
        serde_yaml::from_value(v.clone()).ok()
    };
    let selector = labels_at("selector", "matchLabels").or_else(|| labels_at("workloadSelector", "labels"));
    let has_target_refs = spec.is_some_and(|s| s.get("targetRef").is_some() || s.get("targetRefs").is_some());
    Foreign { meta, group: group.to_string(), selector, has_target_refs }
}

fn take_string(map: &mut serde_yaml::Mapping, key: &str) -> Option<String> {
    match map.remove(key)? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn file_problem(origin: &Origin, message: &str) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: Code::Document,
        location: Location::Document { file: origin.file.clone(), document: origin.document },
        message: message.to_string(),
        hint: Some("every document needs apiVersion, kind and metadata.name, as kubectl requires".into()),
    }
}
