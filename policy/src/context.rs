//! What policies know about a request besides its header.

use std::net::{IpAddr, SocketAddr};

/// The connection and request facts policies decide on. Filled by the gateway once per request;
/// authentication adds the [`Identity`] a token proved.
#[derive(Debug, Clone)]
pub struct Context {
    /// The address of the TCP peer (Istio `source.ip`, `ipBlocks`).
    pub peer: IpAddr,
    /// The client address after the trusted `X-Forwarded-For` hops (Istio `remote.ip`,
    /// `remoteIpBlocks`); the peer when no hop is trusted.
    pub client: IpAddr,
    /// The local address the connection arrived on (Istio `destination.ip`); its port is the
    /// one Pylon listens on (after `--port-map`).
    pub local: Option<SocketAddr>,
    /// The Gateway server port the request arrived on. Istio's `destination.port` and `ports`
    /// match it or the listening port (Istio's gateway listens on the Service's target port).
    pub port: u16,
    /// The TLS server name, when the connection is TLS (Istio `connection.sni`).
    pub sni: Option<String>,
    /// The peer's identity from a verified client certificate: its SPIFFE URI SAN without
    /// `spiffe://` (Istio `source.principal`, `principals`, `namespaces`).
    pub peer_principal: Option<String>,
    /// The identity a verified token proved (Istio `request.auth.*`, `requestPrincipals`).
    pub identity: Option<Identity>,
}

impl Context {
    /// A context for a plaintext request from `peer` on Gateway port `port` (tests, tools).
    pub fn new(peer: IpAddr, port: u16) -> Self {
        Context { peer, client: peer, local: None, port, sni: None, peer_principal: None, identity: None }
    }
}

/// What a verified JSON Web Token says about the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `iss/sub` (Istio `request.auth.principal`, as logged).
    pub principal: String,
    /// `iss`.
    pub issuer: String,
    /// `sub` (empty when the token has none).
    pub subject: String,
    /// `aud` (Istio `request.auth.audiences`).
    pub audiences: Vec<String>,
    /// `azp` (Istio `request.auth.presenter`).
    pub presenter: Option<String>,
    /// Every claim of the payload (Istio `request.auth.claims[...]`).
    pub claims: serde_json::Value,
    /// Top-level claims whose string value is a space-separated list (`scope`, `permission`
    /// and the rule's `spaceDelimitedClaims`).
    pub space_delimited: Vec<String>,
}

impl Identity {
    /// The string values of the claim at `path` (nested claims one key per element): a string,
    /// each string of a list, or — for `scope`, `permission` and the claims listed in
    /// `spaceDelimitedClaims` — each word of a string. Numbers and booleans never match, as in
    /// Envoy's metadata matcher.
    pub fn claim_values(&self, path: &[String]) -> Vec<String> {
        let mut v = &self.claims;
        for key in path {
            match v.get(key) {
                Some(next) => v = next,
                None => return Vec::new(),
            }
        }
        let scalar = |v: &serde_json::Value| v.as_str().map(str::to_string);
        match v {
            serde_json::Value::Array(items) => items.iter().filter_map(scalar).collect(),
            serde_json::Value::String(s) if path.len() == 1 && self.space_delimited.contains(&path[0]) => {
                s.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect()
            }
            other => scalar(other).into_iter().collect(),
        }
    }
}
