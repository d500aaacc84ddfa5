//! Kubernetes `ObjectMeta`, read leniently: every field is accepted, the ones below are used.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata` of a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    /// Resource name.
    pub name: String,
    /// Namespace; the workload's namespace when absent.
    pub namespace: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 creation time; orders resources the way Istio does.
    pub creation_timestamp: Option<String>,
}
