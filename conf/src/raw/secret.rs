//! Core `v1` `Secret` (type `kubernetes.io/tls`), the source of `credentialName`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The parts of a Kubernetes `Secret` Pylon reads (it has no `spec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Secret {
    /// `kubernetes.io/tls`, `Opaque`, ...
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    /// Base64-encoded values.
    pub data: BTreeMap<String, String>,
    /// Plain values (merged over `data` by the API server).
    pub string_data: BTreeMap<String, String>,
}
