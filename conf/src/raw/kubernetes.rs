//! Core `v1` `Service` and `Endpoints` and `discovery.k8s.io/v1` `EndpointSlice`: the Kubernetes
//! service registry, as `kubectl get svc,endpoints,endpointslices -o yaml` dumps it.
//!
//! These are Kubernetes' own kinds, read leniently: a dump carries `status`, `managedFields` and
//! fields of newer Kubernetes versions that Pylon has no use for. Only the fields below are read.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Core `v1` `Service` spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeService {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    /// The pods the Service selects (empty: endpoints are managed by hand).
    pub selector: BTreeMap<String, String>,
    /// The Service's ports.
    pub ports: Vec<ServicePort>,
    /// `None` for a headless service.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// The DNS name an `ExternalName` service aliases.
    pub external_name: Option<String>,
    /// Endpoints that are not ready receive traffic too.
    pub publish_not_ready_addresses: bool,
}

impl KubeService {
    /// True for `type: ExternalName`.
    pub fn is_external_name(&self) -> bool {
        self.service_type.as_deref() == Some("ExternalName")
    }
}

/// One port of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    /// Port name (required when there are several); its prefix gives the protocol.
    pub name: String,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
    /// The application protocol (`http`, `kubernetes.io/h2c`, `grpc`, ...); wins over the name.
    pub app_protocol: Option<String>,
    /// The Service port.
    pub port: u32,
    /// The pods' port: a number or the name of a container port.
    pub target_port: Option<IntOrString>,
}

/// A Kubernetes `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(u32),
    /// A name.
    String(String),
}

/// Core `v1` `Endpoints` (read from the top level: it has no `spec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Endpoints {
    /// Sets of addresses sharing ports.
    pub subsets: Vec<EndpointSubset>,
}

/// One `Endpoints` subset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSubset {
    /// Ready addresses.
    pub addresses: Vec<EndpointAddress>,
    /// Addresses whose pods are not ready.
    pub not_ready_addresses: Vec<EndpointAddress>,
    /// The ports, named as the Service's.
    pub ports: Vec<EndpointPort>,
}

/// One `Endpoints` address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointAddress {
    /// The pod's IP.
    pub ip: String,
    /// The pod behind the address.
    pub target_ref: Option<ObjectReference>,
}

/// A port of an `Endpoints` subset or an `EndpointSlice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointPort {
    /// The Service port's name (empty for a single unnamed port).
    pub name: Option<String>,
    /// The pods' port number.
    pub port: Option<u32>,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
}

/// `discovery.k8s.io/v1` `EndpointSlice` (read from the top level: it has no `spec`). Its Service
/// is named by the `kubernetes.io/service-name` label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlice {
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// The endpoints.
    pub endpoints: Vec<SliceEndpoint>,
    /// The ports, named as the Service's.
    pub ports: Vec<EndpointPort>,
}

/// One endpoint of an `EndpointSlice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SliceEndpoint {
    /// Its addresses (all of one family; Kubernetes uses the first).
    pub addresses: Vec<String>,
    /// Readiness.
    pub conditions: EndpointConditions,
    /// The pod behind the endpoint.
    pub target_ref: Option<ObjectReference>,
}

/// `EndpointSlice` endpoint conditions; an absent condition counts as true (Kubernetes API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointConditions {
    /// Ready for traffic.
    pub ready: Option<bool>,
    /// Terminating: no new traffic.
    pub terminating: Option<bool>,
}

/// A reference to another object (the pod behind an endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectReference {
    /// `Pod`.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The object's namespace.
    pub namespace: Option<String>,
}

/// The `kubernetes.io/service-name` label of an `EndpointSlice`.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The annotation that scopes a Service's visibility, as `exportTo` does a ServiceEntry's.
pub const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";
