//! The subset of Istio's MeshConfig (`--mesh-config`) Pylon honours:
//! `rootNamespace` (where mesh-wide policies live) and
//! `defaultConfig.gatewayTopology.numTrustedProxies` (how many proxies in front of the gateway
//! are trusted to append to `X-Forwarded-For`, istio.io/latest/docs/ops/configuration/traffic-management/network-topologies/).
//! Other fields are read and ignored, as a MeshConfig file carries many that concern sidecars.

use serde::Deserialize;

/// MeshConfig, as Pylon reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshConfig {
    /// `rootNamespace`.
    pub root_namespace: Option<String>,
    /// `defaultConfig`.
    pub default_config: ProxyConfig,
}

/// `defaultConfig` (Istio ProxyConfig).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyConfig {
    /// `gatewayTopology`.
    pub gateway_topology: Option<Topology>,
}

/// `gatewayTopology`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Topology {
    /// `numTrustedProxies`.
    pub num_trusted_proxies: u32,
}

impl MeshConfig {
    /// Parses MeshConfig YAML (the `mesh` key of Istio's ConfigMap, or the file it mounts).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(MeshConfig::default());
        }
        serde_yaml::from_str(text).map_err(|e| format!("MeshConfig: {e}"))
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
        sel.num_trusted_proxies = self.default_config.gateway_topology.as_ref().map_or(0, |t| t.num_trusted_proxies);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        assert!(MeshConfig::parse("rootNamespace: [").is_err());
    }
}
