//! `security.istio.io` `AuthorizationPolicy` and `RequestAuthentication`
//! (istio/api `security/v1beta1/authorization_policy.proto`, `request_authentication.proto`).

use serde::{Deserialize, Serialize};

use super::LabelSelector;

/// Istio `type.v1beta1.PolicyTargetReference`: the object a policy attaches to (a Gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyTargetReference {
    /// API group of the target (`gateway.networking.k8s.io`, `networking.istio.io`, ...).
    pub group: String,
    /// Kind of the target (`Gateway`, `GatewayClass`, `Service`, `ServiceEntry`).
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Namespace of the target; must be the policy's own when set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Istio `AuthorizationPolicy` spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthorizationPolicy {
    /// Workloads the policy applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The resource the policy attaches to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources the policy attaches to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Rules, ORed; none: the policy matches nothing.
    pub rules: Vec<Rule>,
    /// What a match does (default `ALLOW`).
    pub action: Action,
    /// The external authorizer of a `CUSTOM` policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

/// Istio `AuthorizationPolicy.Action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow a request only if it matches a rule (the default).
    #[default]
    Allow,
    /// Deny a request that matches a rule.
    Deny,
    /// Mark a request that matches a rule for audit; no effect on the decision.
    Audit,
    /// Ask the external authorizer named by `provider`.
    Custom,
}

/// Istio `AuthorizationPolicy.ExtensionProvider`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ExtensionProvider {
    /// A provider of MeshConfig `extensionProviders`.
    pub name: String,
}

/// Istio `Rule`: `from` AND `to` AND every `when`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Rule {
    /// Sources, ORed; none: any source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<RuleFrom>>,
    /// Operations, ORed; none: any operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    /// Conditions, ANDed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Vec<Condition>>,
}

/// Istio `Rule.From`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RuleFrom {
    /// The source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// Istio `Rule.To`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RuleTo {
    /// The operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Istio `Source`: fields ANDed, the values of one field ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Source {
    /// Peer identities (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    /// Peer identities that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_principals: Option<Vec<String>>,
    /// Request identities (`iss/sub` of a JWT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_principals: Option<Vec<String>>,
    /// Request identities that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_request_principals: Option<Vec<String>>,
    /// Peer namespaces (from the mTLS identity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Peer namespaces that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_namespaces: Option<Vec<String>>,
    /// Peer service accounts (`ns/sa`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<Vec<String>>,
    /// Peer service accounts that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_service_accounts: Option<Vec<String>>,
    /// Peer trust domains (from the mTLS identity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domains: Option<Vec<String>>,
    /// Peer trust domains that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_trust_domains: Option<Vec<String>>,
    /// Peer addresses (IPs or CIDRs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_blocks: Option<Vec<String>>,
    /// Peer addresses that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ip_blocks: Option<Vec<String>>,
    /// Client addresses (after the trusted `X-Forwarded-For` hops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip_blocks: Option<Vec<String>>,
    /// Client addresses that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_remote_ip_blocks: Option<Vec<String>>,
}

/// Istio `Operation`: fields ANDed, the values of one field ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Operation {
    /// Hosts (`:authority`), case-insensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Hosts that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_hosts: Option<Vec<String>>,
    /// Destination ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    /// Destination ports that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ports: Option<Vec<String>>,
    /// Methods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Methods that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_methods: Option<Vec<String>>,
    /// Normalized paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Paths that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_paths: Option<Vec<String>>,
}

/// Istio `Condition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    /// The attribute (`request.headers[x]`, `source.ip`, ...).
    pub key: String,
    /// Values, ORed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Values that must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_values: Option<Vec<String>>,
}

/// Istio `RequestAuthentication` spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestAuthentication {
    /// Workloads the policy applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The resource the policy attaches to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources the policy attaches to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// How tokens are found and verified; a token valid for any rule is accepted.
    pub jwt_rules: Vec<JwtRule>,
}

/// Istio `JWTRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JwtRule {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// Accepted `aud` values (any one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the JSON Web Key Set is fetched.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jwks_uri: String,
    /// The JSON Web Key Set, inline.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jwks: String,
    /// Headers the token is read from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token is read from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies the token is read from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// A header that receives the verified payload (base64url).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output_payload_to_header: String,
    /// Keep the token in the request forwarded upstream (default: removed).
    pub forward_original_token: bool,
    /// Claims copied to request headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// How long fetching the key set may take (default 5 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Claims whose string value is split on spaces (`scope` and `permission` always are).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
}

/// Istio `JWTHeader`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct JwtHeader {
    /// The header name.
    pub name: String,
    /// A prefix before the token (`Bearer `), which must be present.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// Istio `ClaimToHeader`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClaimToHeader {
    /// The request header to set.
    pub header: String,
    /// The claim (nested claims separated by `.`).
    pub claim: String,
}

/// The names of a bracketed condition key: `prefix[a][b]` → `["a", "b"]` (`request.headers[x]`,
/// `request.auth.claims[a][b]`); `None` unless every name is non-empty.
pub fn bracketed(key: &str, prefix: &str) -> Option<Vec<String>> {
    let mut rest = key.strip_prefix(prefix)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.strip_prefix('[')?.split_once(']')?;
        if name.is_empty() || name.contains('[') {
            return None;
        }
        out.push(name.to_string());
        rest = after;
    }
    (!out.is_empty()).then_some(out)
}

/// Istio `PeerAuthentication` spec: the mutual TLS a workload's sidecar accepts. At a gateway it
/// says what the gateway's upstreams expect (Istio's automatic mTLS); the gateway's own listeners
/// take their TLS from its Gateway servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerAuthentication {
    /// Workloads the policy applies to; none: the namespace (or the mesh, in the root namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The mode for every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<PeerMutualTls>,
    /// Modes by workload port (selector policies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_level_mtls: Option<std::collections::BTreeMap<i64, PeerMutualTls>>,
}

/// Istio `PeerAuthentication.MutualTLS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerMutualTls {
    /// The mode.
    pub mode: PeerMtlsMode,
}

/// Istio `PeerAuthentication.MutualTLS.Mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PeerMtlsMode {
    /// Inherit from the parent (namespace from mesh; mesh: PERMISSIVE).
    #[default]
    Unset,
    /// Plaintext only.
    Disable,
    /// Plaintext and mutual TLS.
    Permissive,
    /// Mutual TLS only.
    Strict,
}

impl PeerMtlsMode {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerMtlsMode::Unset => "UNSET",
            PeerMtlsMode::Disable => "DISABLE",
            PeerMtlsMode::Permissive => "PERMISSIVE",
            PeerMtlsMode::Strict => "STRICT",
        }
    }
}
