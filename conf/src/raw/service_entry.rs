//! `networking.istio.io` `ServiceEntry` and `WorkloadEntry`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Port, WorkloadSelector};

/// Istio `ServiceEntry` spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceEntry {
    /// Hosts of the service.
    pub hosts: Vec<String>,
    /// Virtual IPs (sidecar capture only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Ports (a `null` one kept as [`Port::null`], for validation to refuse).
    #[serde(deserialize_with = "nullable_ports")]
    pub ports: Vec<Port>,
    /// Inside or outside the mesh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How endpoints are found.
    pub resolution: Resolution,
    /// Inline endpoints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Selects WorkloadEntries instead of inline endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces the service is visible to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// SANs expected of the endpoints' certificates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// Istio `ServiceEntry.Location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (default).
    MeshExternal,
    /// Inside the mesh.
    MeshInternal,
}

/// Istio `ServiceEntry.Resolution`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Already resolved (the proto default): a gateway has no endpoints for it.
    #[default]
    None,
    /// Endpoints are the given IPs.
    Static,
    /// Every address the names resolve to.
    Dns,
    /// The first address the (single) name resolves to.
    DnsRoundRobin,
    /// Resolved per request (dynamic forward proxy).
    DynamicDns,
}

impl Resolution {
    /// The resolution as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::None => "NONE",
            Resolution::Static => "STATIC",
            Resolution::Dns => "DNS",
            Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
            Resolution::DynamicDns => "DYNAMIC_DNS",
        }
    }
}

/// Istio `WorkloadEntry` spec (also a ServiceEntry endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadEntry {
    /// IP, hostname or `unix://` path.
    pub address: String,
    /// Port name → endpoint port.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// Labels (subsets select on them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `region/zone/subzone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Service account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// A list of ports whose `null` entries are kept (as [`Port::null`]).
fn nullable_ports<'de, D>(d: D) -> Result<Vec<Port>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let ports: Vec<Option<Port>> = serde::Deserialize::deserialize(d)?;
    Ok(ports.into_iter().map(|p| p.unwrap_or(Port { null: true, ..Port::default() })).collect())
}
