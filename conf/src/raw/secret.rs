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

impl Secret {
    /// A `data` value decoded as the API server decodes it: standard base64, line breaks ignored
    /// (Go's `encoding/base64`), so values wrapped at 76 characters (as `base64` writes them) read.
    pub fn decode(value: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        let joined: String = value.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        base64::engine::general_purpose::STANDARD.decode(joined.trim()).ok()
    }

    /// True for the types Istio may read a credential from (`credentialName`): `kubernetes.io/tls`,
    /// and generic ones (`Opaque`, or none) with `tls.crt`/`cert` keys. Others (registry
    /// credentials, service-account tokens, ...) are never read.
    pub fn may_hold_credentials(&self) -> bool {
        matches!(self.secret_type.as_deref(), None | Some("" | "Opaque" | "kubernetes.io/tls"))
    }
}
