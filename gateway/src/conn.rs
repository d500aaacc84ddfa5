//! The connection context (DESIGN.md "Connection context"): the listener a connection arrived on
//! and, for TLS, the Gateway server its SNI chose and the client certificate it presented.
//! Resolved once, when the connection is accepted and hand-shaken; every request on the
//! connection reads it instead of re-deriving it.

use std::net::IpAddr;

use conf::table::{ChainAction, ListenerKind, RouteConfigId, RouteTable, ServerId, TlsMode};

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
    /// The route table for requests on this connection in `table` (of `generation`): the one
    /// chosen at the handshake, or, after a reload, the same server's table in the new
    /// configuration. `None` when the server is gone (404).
    pub fn route_config(&self, table: &RouteTable, generation: u64) -> Option<RouteConfigId> {
        if generation == self.generation {
            return self.route_config;
        }
        let (gateway, index) = &self.server_key;
        let server =
            table.servers.iter().position(|s| &s.gateway == gateway && s.index == *index && s.port == self.port)?;
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

/// The plaintext HTTP route table of the listener for Gateway port `port` bound to `local` (or to
/// every address).
pub fn plaintext_route_config(table: &RouteTable, port: u16, local: Option<IpAddr>) -> Option<RouteConfigId> {
    let http = |l: &&conf::table::Listener| matches!(l.kind, ListenerKind::Http { .. }) && l.port == port;
    let listener = table
        .listeners
        .iter()
        .filter(http)
        .find(|l| l.bind.is_some() && l.bind == local)
        .or_else(|| table.listeners.iter().filter(http).find(|l| l.bind.is_none()))?;
    match listener.kind {
        ListenerKind::Http { route_config, .. } => Some(route_config),
        _ => None,
    }
}
