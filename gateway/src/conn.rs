//! The connection context: the listener a connection arrived on
//! and, for TLS, the Gateway server its SNI chose and the client certificate it presented.
//! Resolved once, when the connection is accepted and hand-shaken; every request on the
//! connection reads it instead of re-deriving it.

use std::net::IpAddr;

use std::hash::{Hash, Hasher};

use conf::table::{ChainAction, ListenerKind, RouteConfigId, Server, ServerId, TlsMode};

use crate::snapshot::Snapshot;

use crate::tls::peer::PeerCertificate;

/// What a terminated TLS connection carries to its requests (stored in Pingora's TLS digest).
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// The Gateway port (before `--port-map`).
    pub port: u16,
    /// The listener's bind address in the table (`None`: every address).
    pub bind: Option<IpAddr>,
    /// The configuration generation the server was chosen in.
    pub generation: u64,
    /// The chosen server.
    pub server: ServerId,
    /// Its identity, to find it again in a newer generation: `namespace/gateway` and index.
    pub server_key: (String, usize),
    /// Its settings at the handshake ([`fingerprint`]): after a reload, the connection keeps
    /// routing only if its server is unchanged (a server tightened to MUTUAL, or another server
    /// now at that index, must not serve a connection that never passed its checks).
    pub fingerprint: u64,
    /// The server's mode.
    pub mode: TlsMode,
    /// The route table of the server (HTTPS servers).
    pub route_config: Option<RouteConfigId>,
    /// The ClientHello SNI.
    pub sni: Option<String>,
    /// The certificate the client presented (MUTUAL, OPTIONAL_MUTUAL).
    pub client_cert: Option<PeerCertificate>,
}

impl TlsSession {
    /// The route table for requests on this connection in `snap`: the one chosen at the
    /// handshake, or, after a reload, the same unchanged server's table in the new configuration.
    /// `None` when the server is gone or changed (404).
    pub fn route_config(&self, snap: &Snapshot) -> Option<RouteConfigId> {
        if snap.generation == self.generation {
            return self.route_config;
        }
        let table = &snap.table;
        let (gateway, index) = &self.server_key;
        let server =
            table.servers.iter().position(|s| &s.gateway == gateway && s.index == *index && s.port == self.port)?;
        if snap.server_fingerprints.get(server) != Some(&self.fingerprint) {
            return None;
        }
        table.listeners.iter().find_map(|l| match &l.kind {
            ListenerKind::Tls { chains, .. } => {
                chains.iter().find(|c| c.server == server).and_then(|c| match c.action {
                    ChainAction::Http { route_config } => Some(route_config),
                    _ => None,
                })
            }
            _ => None,
        })
    }
}

/// A digest of everything a server is configured with (hosts, TLS mode, CAs, SAN and pin lists,
/// versions, ...): equal fingerprints, same server.
pub fn fingerprint(server: &Server) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(server).unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: a, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls: {mode: SIMPLE, credentialName: a}\n  - port: {number: 443, name: b, protocol: HTTPS}\n    hosts: [b.example.com]\n    tls: {mode: B_MODE, credentialName: b}\n";

    fn snapshot(b_mode: &str, generation: u64) -> Snapshot {
        let dir = std::env::temp_dir().join(format!("pylon-conn-{}-{b_mode}-{generation}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = GATEWAY.replace("B_MODE", b_mode).replace(
            "credentialName: b}",
            if b_mode == "SIMPLE" {
                "credentialName: b}"
            } else {
                "credentialName: b, caCertificates: /nonexistent/ca.crt}"
            },
        );
        std::fs::write(dir.join("gw.yaml"), yaml).unwrap();
        let built = conf::build(std::slice::from_ref(&dir), &conf::Selection::default()).unwrap();
        assert!(built.is_valid(), "{}", built.diagnostics);
        let _ = std::fs::remove_dir_all(&dir);
        let clusters = built.table.clusters.iter().map(crate::cluster::registry::ClusterRuntime::fixed).collect();
        Snapshot::assemble(built.table, generation, None, clusters)
    }

    fn session(snap: &Snapshot, server: ServerId) -> TlsSession {
        let s = &snap.table.servers[server];
        let route_config = snap.table.route_configs.iter().position(|rc| rc.servers.contains(&server));
        TlsSession {
            port: 443,
            bind: None,
            generation: snap.generation,
            server,
            server_key: (s.gateway.clone(), s.index),
            fingerprint: snap.server_fingerprints[server],
            mode: TlsMode::Simple,
            route_config,
            sni: None,
            client_cert: None,
        }
    }

    #[test]
    fn after_a_reload_a_connection_keeps_only_an_unchanged_server() {
        let old = snapshot("SIMPLE", 1);
        let new = snapshot("MUTUAL", 2);
        let (a, b) = (session(&old, 0), session(&old, 1));
        assert!(a.route_config(&new).is_some(), "server a did not change");
        assert_eq!(b.route_config(&new), None, "server b now asks for client certificates");
        assert_eq!(b.route_config(&old), b.route_config, "same generation: the handshake's table");
    }
}
