//! Runs the snapshot's security policies on a request, before routing (Envoy's `jwt_authn` and
//! RBAC filters run before its router).

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;
use pingora::proxy::Session;

use super::ctx::Ctx;
use super::reply::LocalReply;

/// `Some((reply, details))` when a policy denies the request.
pub async fn check(session: &mut Session, ctx: &Ctx) -> Option<(LocalReply, String)> {
    let chain = ctx.snap.chain_for(ctx.route_config).clone();
    if chain.is_empty() {
        return None;
    }
    let Some(mut cx) = context(session, ctx) else {
        // No peer address to decide on: refuse rather than skip the policies.
        let reply = policy::LocalReply::rbac_denied("rbac_access_denied_matched_policy[no_peer_address]");
        return Some((LocalReply { status: 403, headers: Vec::new(), body: Bytes::from(reply.body) }, reply.details));
    };
    let external = crate::ext_authz::Authorizers(&ctx.snap);
    match chain.request(session.req_header_mut(), &mut cx, SystemTime::now(), &external).await {
        policy::Decision::Allow => None,
        policy::Decision::Deny(d) => {
            tracing::debug!(status = d.status, details = %d.details, peer = %cx.peer, "request denied by policy");
            let mut headers = d.headers;
            headers.push(("content-type".into(), "text/plain".into()));
            Some((LocalReply { status: d.status, headers, body: Bytes::from(d.body) }, d.details))
        }
    }
}

/// What the policies see of this request's connection.
fn context(session: &Session, ctx: &Ctx) -> Option<policy::Context> {
    let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())?;
    let mut cx = policy::Context::new(peer, ctx.port);
    cx.client = client_address(session, peer, ctx);
    cx.local = session.server_addr().and_then(|a| a.as_inet()).copied();
    if let Some(tls) = &ctx.tls {
        cx.sni.clone_from(&tls.sni);
        cx.peer_principal = tls.client_cert.as_ref().and_then(principal);
    }
    Some(cx)
}

/// The route table's `GatewayPolicy` `clientAddress`, if any.
fn client_address_rule(ctx: &Ctx) -> Option<&conf::table::ClientAddressRule> {
    ctx.route_config.and_then(|rc| ctx.snap.table.route_configs.get(rc)).and_then(|rc| rc.client_address.as_ref())
}

/// True when `peer` is a proxy the gateway trusts: inside the `clientAddress` `trustedCidrs`, or
/// any peer when proxies are trusted by count (`numTrustedProxies` > 0, as Envoy's
/// `xff_num_trusted_hops`).
pub fn trusted_hop(peer: IpAddr, ctx: &Ctx) -> bool {
    match client_address_rule(ctx) {
        Some(r) if !r.trusted_cidrs.is_empty() => r.trusted_cidrs.iter().any(|n| n.contains(&peer)),
        Some(r) => r.num_trusted_proxies > 0,
        None => ctx.snap.table.num_trusted_proxies > 0,
    }
}

/// The client address of a request from `peer`: the route table's `GatewayPolicy`
/// `clientAddress`, else MeshConfig's `numTrustedProxies`.
pub fn client_address(session: &Session, peer: IpAddr, ctx: &Ctx) -> IpAddr {
    match client_address_rule(ctx) {
        Some(r) if !r.trusted_cidrs.is_empty() => behind_trusted_cidrs(session, peer, &r.trusted_cidrs),
        Some(r) => remote_address(session, peer, r.num_trusted_proxies),
        None => remote_address(session, peer, ctx.snap.table.num_trusted_proxies),
    }
}

/// The `x-forwarded-for` entries, left to right, each parsed on its own (an entry that is not an
/// address is `None` but keeps its position: a client's garbage must not shift which entry a
/// trusted proxy appended).
fn forwarded_for(session: &Session) -> Vec<Option<IpAddr>> {
    session
        .req_header()
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|e| std::str::from_utf8(e).ok().and_then(|s| s.trim().parse::<IpAddr>().ok()))
        .collect()
}

/// Envoy's trusted client address with `use_remote_address: true` and `xff_num_trusted_hops: n`:
/// the peer when `n` is 0, else the `n`th address from the right of `X-Forwarded-For` (the peer
/// when the header has fewer, or one that is not an address).
/// <https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-for>
pub fn remote_address(session: &Session, peer: IpAddr, n: u32) -> IpAddr {
    if n == 0 {
        return peer;
    }
    let entries = forwarded_for(session);
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    entries.len().checked_sub(n).and_then(|i| entries.get(i).copied().flatten()).unwrap_or(peer)
}

/// Envoy's `xff_trusted_cidrs`: when the peer is a trusted proxy, the client is the rightmost
/// `x-forwarded-for` entry outside the trusted ranges (the leftmost one when all are inside, the
/// last trusted one when an entry is not an address); a peer outside them is the client.
pub fn behind_trusted_cidrs(session: &Session, peer: IpAddr, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut last = peer;
    for entry in forwarded_for(session).into_iter().rev() {
        match entry {
            Some(ip) if !is_trusted(&ip) => return ip,
            Some(ip) => last = ip,
            None => return last,
        }
    }
    last
}

/// The facts of a TCP connection the authorization policies decide on (no request on it).
pub struct Connection<'a> {
    /// The TCP peer.
    pub peer: Option<std::net::SocketAddr>,
    /// The local address.
    pub local: Option<std::net::SocketAddr>,
    /// The Gateway port.
    pub port: u16,
    /// The TLS server name.
    pub sni: Option<&'a str>,
    /// The verified client certificate of a terminated connection.
    pub client_cert: Option<&'a crate::tls::peer::PeerCertificate>,
}

/// True when the policies let a TCP connection through (TCP servers, TLS passthrough and
/// TLS-terminated TCP routes), as Istio's network RBAC filter decides; logged when not.
pub fn l4_allowed(snap: &crate::snapshot::Snapshot, c: &Connection<'_>) -> bool {
    if snap.policies.is_empty() {
        return true;
    }
    let Some(peer) = c.peer else { return false };
    let mut cx = policy::Context::new(peer.ip(), c.port);
    cx.local = c.local;
    cx.sni = c.sni.map(str::to_string);
    cx.peer_principal = c.client_cert.and_then(principal);
    match snap.policies.l4(&cx) {
        policy::Decision::Allow => true,
        policy::Decision::Deny(d) => {
            tracing::debug!(peer = %peer, port = c.port, details = %d.details, "connection denied by policy");
            false
        }
    }
}

/// The SPIFFE identity of a verified client certificate, without `spiffe://`.
fn principal(cert: &crate::tls::peer::PeerCertificate) -> Option<String> {
    cert.verified.then(|| cert.uris.iter().find_map(|u| u.strip_prefix("spiffe://")).map(str::to_string)).flatten()
}
