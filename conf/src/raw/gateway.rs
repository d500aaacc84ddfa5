//! `networking.istio.io` `Gateway`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Istio `Gateway` spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Gateway {
    /// The servers (ports, hosts, TLS) this gateway exposes.
    pub servers: Vec<Server>,
    /// Labels of the workloads this gateway applies to; absent = every gateway workload.
    pub selector: Option<BTreeMap<String, String>>,
}

/// Istio `Server`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Server {
    /// The port to listen on and its protocol.
    pub port: Option<Port>,
    /// IP or `unix://` path to bind instead of every address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// `[namespace/]dnsName` entries.
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Hidden and not implemented by Istio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<String>,
    /// Optional server name (stats prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Istio `Port` (Gateway and ServiceEntry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Port {
    /// The port number.
    pub number: u32,
    /// `HTTP|HTTPS|GRPC|GRPC-WEB|HTTP2|MONGO|TCP|TLS` (case-insensitive).
    pub protocol: String,
    /// The port name.
    pub name: String,
    /// Deprecated; rejected on Gateways, the endpoint port on ServiceEntries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
    /// Written as `null` in a ServiceEntry's ports (refused: `service entry port may not be null`).
    #[serde(skip)]
    pub null: bool,
}

/// Istio `ServerTLSSettings.TLSmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Do not terminate; route by SNI (the proto default).
    #[default]
    Passthrough,
    /// Terminate with a server certificate.
    Simple,
    /// Terminate and require a client certificate.
    Mutual,
    /// Passthrough with SNI-encoded destinations (multi-network east-west).
    AutoPassthrough,
    /// Terminate with the mesh's workload identity.
    IstioMutual,
    /// Terminate; validate a client certificate when one is presented.
    OptionalMutual,
}

impl ServerTlsMode {
    /// The mode as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerTlsMode::Passthrough => "PASSTHROUGH",
            ServerTlsMode::Simple => "SIMPLE",
            ServerTlsMode::Mutual => "MUTUAL",
            ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
            ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
            ServerTlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
        }
    }
}

/// Istio `ServerTLSSettings.TLSProtocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum TlsProtocol {
    /// Let the implementation choose.
    #[default]
    #[serde(rename = "TLS_AUTO")]
    Auto,
    /// TLS 1.0.
    #[serde(rename = "TLSV1_0")]
    V1_0,
    /// TLS 1.1.
    #[serde(rename = "TLSV1_1")]
    V1_1,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    V1_2,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    V1_3,
}

/// Istio `ServerTLSSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerTlsSettings {
    /// 301-redirect plaintext requests to https.
    pub https_redirect: bool,
    /// How TLS is handled (default PASSTHROUGH).
    pub mode: ServerTlsMode,
    /// PEM certificate file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// PEM private key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// PEM CA bundle to verify client certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// CRL file for client certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// Name of a credential (Secret or `--credentials-dir` entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Up to two credentials (RSA + ECDSA).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credential_names: Vec<String>,
    /// Up to two certificate/key file pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_certificates: Vec<TlsCertificate>,
    /// A separate credential holding the client CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert_credential_name: Option<String>,
    /// Allowed client certificate SANs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Allowed client certificate SPKI hashes (base64 SHA-256).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    /// Allowed client certificate hashes (hex SHA-256).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version (default TLS 1.2).
    pub min_protocol_version: TlsProtocol,
    /// Maximum TLS version (default TLS 1.3).
    pub max_protocol_version: TlsProtocol,
    /// Allowed cipher suites (OpenSSL names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// Allowed ECDH curves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ecdh_curves: Vec<String>,
    /// Accept client certificates that fail validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// Istio `ServerTLSSettings.TLSCertificate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsCertificate {
    /// PEM certificate file.
    pub server_certificate: String,
    /// PEM private key file.
    pub private_key: String,
    /// PEM CA bundle file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
}
