//! The subset of Istio's MeshConfig (`--mesh-config`) Pylon honours:
//! `rootNamespace` (where mesh-wide policies live), `extensionProviders` (the external
//! authorizers of `CUSTOM` AuthorizationPolicies; `envoyExtAuthzHttp` only) and
//! `defaultConfig.gatewayTopology.numTrustedProxies` (how many proxies in front of the gateway
//! are trusted to append to `X-Forwarded-For`, istio.io/latest/docs/ops/configuration/traffic-management/network-topologies/).
//! `defaultConfig.gatewayTopology.proxyProtocol` (connections start with a PROXY protocol header),
//! `defaultConfig.gatewayTopology.forwardClientCertDetails`, `defaultHttpRetryPolicy`,
//! `pathNormalization`, `connectTimeout`, `trustDomain`, `trustDomainAliases` and `enableAutoMtls`. `outboundTrafficPolicy.mode` (`ALLOW_ANY`,
//! `REGISTRY_ONLY`) is checked and means at a gateway what it means in Istio's: nothing, since a
//! gateway forwards only to the destinations its routes name, and a destination outside the
//! registry gets 503 NC in either mode (the mode decides what a sidecar does with traffic to an
//! unknown host, which a gateway has none of). Other fields are read and reported as having no
//! effect, as a MeshConfig file carries many that concern sidecars.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// MeshConfig, as Pylon reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshConfig {
    /// `rootNamespace`.
    pub root_namespace: Option<String>,
    /// `defaultConfig`.
    pub default_config: ProxyConfig,
    /// `extensionProviders`.
    pub extension_providers: Vec<ExtensionProvider>,
    /// `defaultHttpRetryPolicy`.
    pub default_http_retry_policy: Option<crate::raw::HttpRetry>,
    /// `pathNormalization`.
    pub path_normalization: Option<PathNormalizationConfig>,
    /// `connectTimeout`.
    pub connect_timeout: Option<String>,
    /// `outboundTrafficPolicy` (checked; no passthrough at a gateway to govern).
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// `trustDomain`: the mesh's SPIFFE trust domain.
    pub trust_domain: Option<String>,
    /// `trustDomainAliases`.
    pub trust_domain_aliases: Vec<String>,
    /// `enableAutoMtls` (default true).
    pub enable_auto_mtls: Option<bool>,
    /// Fields Pylon does not use, by YAML path (filled by [`MeshConfig::parse`]).
    #[serde(skip)]
    pub ignored: Vec<String>,
}

/// `outboundTrafficPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutboundTrafficPolicy {
    /// `ALLOW_ANY` (Istio's default) or `REGISTRY_ONLY`.
    pub mode: String,
}

/// `pathNormalization`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PathNormalizationConfig {
    /// `NONE`, `BASE` (default), `MERGE_SLASHES` or `DECODE_AND_MERGE_SLASHES`.
    pub normalization: String,
}

/// One of MeshConfig `extensionProviders`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionProvider {
    /// The name `CUSTOM` policies refer to.
    pub name: String,
    /// An HTTP external authorizer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    /// Any other kind of provider (`envoyExtAuthzGrpc`, tracers, loggers): kept to be named in
    /// errors when a policy uses it.
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// Istio `MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationHttpProvider`
/// (istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtAuthzHttp {
    /// The authorizer's host (a ServiceEntry host).
    pub service: String,
    /// Its port.
    pub port: u32,
    /// How long a check may take (default 600s in Istio's API; Pylon uses it as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Prepended to the request path in the check request.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Allow the request when the authorizer cannot be reached.
    pub fail_open: bool,
    /// The status sent when the authorizer cannot be reached (default 403).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_on_error: String,
    /// Request headers copied into the check request (besides Host, Method, Path).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include_request_headers_in_check: Vec<String>,
    /// Headers added to the check request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// The request body in the check (not implemented: refused when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<serde_yaml::Value>,
    /// Authorizer response headers copied to the request sent upstream on allow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Authorizer response headers copied to the client's response on deny.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Authorizer response headers copied to the client's response on allow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// `defaultConfig` (Istio ProxyConfig).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyConfig {
    /// `gatewayTopology`.
    pub gateway_topology: Option<Topology>,
}

/// `gatewayTopology`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Topology {
    /// `numTrustedProxies`.
    pub num_trusted_proxies: u32,
    /// `proxyProtocol` (`{}` turns it on).
    pub proxy_protocol: Option<serde_yaml::Value>,
    /// `forwardClientCertDetails`.
    pub forward_client_cert_details: Option<String>,
}

impl MeshConfig {
    /// Parses MeshConfig YAML (the `mesh` key of Istio's ConfigMap, or the file it mounts).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(MeshConfig::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let mut ignored = Vec::new();
        // serde_ignored writes `?` for an `Option` level: its `a.?.b` is `a.b` in the YAML.
        let mut mesh: MeshConfig =
            serde_ignored::deserialize(de, |path| ignored.push(path.to_string().replace(".?", "")))
                .map_err(|e| format!("MeshConfig: {e}"))?;
        // Extension providers keep the kinds Pylon does not serve, to name them in errors.
        ignored.retain(|p| !p.starts_with("extensionProviders."));
        mesh.ignored = ignored;
        mesh.check()?;
        Ok(mesh)
    }

    /// Values Pylon cannot apply are errors (a typo must not silently change the behaviour).
    fn check(&self) -> Result<(), String> {
        if let Some(p) = &self.path_normalization {
            if !matches!(p.normalization.as_str(), "" | "NONE" | "BASE" | "MERGE_SLASHES" | "DECODE_AND_MERGE_SLASHES")
            {
                return Err(format!("MeshConfig: pathNormalization.normalization {:?} is not NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES", p.normalization));
            }
        }
        let fcc = self.default_config.gateway_topology.as_ref().and_then(|t| t.forward_client_cert_details.as_deref());
        if let Some(v) = fcc {
            if !matches!(
                v,
                "UNDEFINED" | "SANITIZE" | "FORWARD_ONLY" | "APPEND_FORWARD" | "SANITIZE_SET" | "ALWAYS_FORWARD_ONLY"
            ) {
                return Err(format!("MeshConfig: defaultConfig.gatewayTopology.forwardClientCertDetails {v:?} is not one of SANITIZE, FORWARD_ONLY, APPEND_FORWARD, SANITIZE_SET, ALWAYS_FORWARD_ONLY"));
            }
        }
        if let Some(t) = &self.connect_timeout {
            crate::model::Duration::parse(t).map_err(|e| format!("MeshConfig: connectTimeout: {e}"))?;
        }
        if let Some(p) = &self.outbound_traffic_policy {
            if !matches!(p.mode.as_str(), "" | "ALLOW_ANY" | "REGISTRY_ONLY") {
                return Err(format!(
                    "MeshConfig: outboundTrafficPolicy.mode {:?} is not ALLOW_ANY or REGISTRY_ONLY",
                    p.mode
                ));
            }
        }
        Ok(())
    }

    /// Reads `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Applies it to the workload selection.
    pub fn apply(&self, sel: &mut crate::Selection) {
        if let Some(ns) = self.root_namespace.as_ref().filter(|n| !n.is_empty()) {
            sel.root_namespace.clone_from(ns);
        }
        let topology = self.default_config.gateway_topology.as_ref();
        sel.num_trusted_proxies = topology.map_or(0, |t| t.num_trusted_proxies);
        sel.proxy_protocol = topology.is_some_and(|t| t.proxy_protocol.as_ref().is_some_and(|v| !v.is_null()));
        sel.extension_providers.clone_from(&self.extension_providers);
        sel.default_http_retry_policy.clone_from(&self.default_http_retry_policy);
        sel.connect_timeout.clone_from(&self.connect_timeout);
        if let Some(td) = self.trust_domain.as_ref().filter(|t| !t.is_empty()) {
            sel.trust_domain.clone_from(td);
        }
        sel.trust_domain_aliases.clone_from(&self.trust_domain_aliases);
        sel.auto_mtls = self.enable_auto_mtls.unwrap_or(true);
        use crate::table::{ForwardClientCert, PathNormalization};
        sel.path_normalization = match self.path_normalization.as_ref().map(|p| p.normalization.as_str()) {
            Some("NONE") => PathNormalization::None,
            Some("MERGE_SLASHES") => PathNormalization::MergeSlashes,
            Some("DECODE_AND_MERGE_SLASHES") => PathNormalization::DecodeAndMergeSlashes,
            _ => PathNormalization::Base,
        };
        sel.forward_client_cert = match topology.and_then(|t| t.forward_client_cert_details.as_deref()) {
            Some("SANITIZE") => ForwardClientCert::Sanitize,
            Some("FORWARD_ONLY") => ForwardClientCert::ForwardOnly,
            Some("ALWAYS_FORWARD_ONLY") => ForwardClientCert::AlwaysForwardOnly,
            Some("APPEND_FORWARD") => ForwardClientCert::AppendForward,
            _ => ForwardClientCert::SanitizeSet,
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_domain_and_its_aliases_are_read() {
        let m = MeshConfig::parse("trustDomain: corp.example\ntrustDomainAliases: [old.example]\n").unwrap();
        let mut sel = crate::Selection::default();
        assert_eq!(sel.trust_domain, "cluster.local");
        m.apply(&mut sel);
        assert_eq!(
            (sel.trust_domain.as_str(), sel.trust_domain_aliases.clone()),
            ("corp.example", vec!["old.example".to_string()])
        );
        assert!(m.ignored.is_empty(), "{:?}", m.ignored);
    }

    #[test]
    fn the_root_namespace_and_trusted_proxies_are_read_and_the_rest_ignored() {
        let m = MeshConfig::parse(
            "rootNamespace: mesh-root\naccessLogFile: /dev/stdout\ndefaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n  holdApplicationUntilProxyStarts: true\n",
        )
        .unwrap();
        let mut sel = crate::Selection::default();
        m.apply(&mut sel);
        assert_eq!(sel.root_namespace, "mesh-root");
        assert_eq!(sel.num_trusted_proxies, 2);
        assert_eq!(m.ignored, ["accessLogFile", "defaultConfig.holdApplicationUntilProxyStarts"]);
        assert!(MeshConfig::parse("rootNamespace: [").is_err());
    }

    #[test]
    fn the_gateway_subset_is_applied_and_bad_values_refused() {
        let m = MeshConfig::parse(
            "defaultHttpRetryPolicy: {attempts: 4, retryOn: 5xx}\npathNormalization: {normalization: MERGE_SLASHES}\nconnectTimeout: 2s\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}\ndefaultConfig: {gatewayTopology: {forwardClientCertDetails: APPEND_FORWARD}}\n",
        )
        .unwrap();
        assert!(m.ignored.is_empty(), "{:?}", m.ignored);
        let mut sel = crate::Selection::default();
        m.apply(&mut sel);
        assert_eq!(sel.default_http_retry_policy.map(|r| r.attempts), Some(4));
        assert_eq!(sel.path_normalization, crate::table::PathNormalization::MergeSlashes);
        assert_eq!(sel.connect_timeout.as_deref(), Some("2s"));
        assert_eq!(sel.forward_client_cert, crate::table::ForwardClientCert::AppendForward);
        assert!(MeshConfig::parse("pathNormalization: {normalization: MERGE}").is_err());
        assert!(MeshConfig::parse("connectTimeout: soon").is_err());
        assert!(MeshConfig::parse("defaultConfig: {gatewayTopology: {forwardClientCertDetails: KEEP}}").is_err());
        let mode = MeshConfig::parse("outboundTrafficPolicy: {mode: REGISTRY-ONLY}").unwrap_err();
        assert!(mode.contains("is not ALLOW_ANY or REGISTRY_ONLY"), "{mode}");
        let proxy = MeshConfig::parse("outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.example}}");
        assert_eq!(proxy.unwrap().ignored, ["outboundTrafficPolicy.egressProxy"], "reported as having no effect");
    }
}
