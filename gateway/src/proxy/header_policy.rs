//! The `GatewayPolicy` `headers` module on the matched route: what the forwarded request headers
//! and the response headers are.

use conf::table::HeaderPolicyRule;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use super::ctx::Ctx;

/// The route's header settings, if a `GatewayPolicy` gives it some.
pub fn of(ctx: &Ctx) -> Option<&HeaderPolicyRule> {
    ctx.route().and_then(|r| r.header_policy).and_then(|i| ctx.snap.table.header_policies.get(i))
}

/// A new request id, when the route's policy always makes one (before the forwarding headers are
/// written, so the access log and the upstream see the same one).
pub fn request_id(ctx: &mut Ctx) {
    if of(ctx).is_some_and(|h| h.generate_request_id) && ctx.request_id.is_none() {
        ctx.request_id = Some(crate::edge::forwarded::new_request_id());
    }
}

/// `x-forwarded-for` replaced by the client address, and an RFC 7239 `Forwarded` element
/// appended (`for`, `proto`, `host`), as the policy asks.
pub fn request(req: &mut RequestHeader, ctx: &Ctx, client: Option<std::net::IpAddr>) -> Result<()> {
    let Some(h) = of(ctx) else { return Ok(()) };
    let Some(client) = client else { return Ok(()) };
    if h.replace_forwarded_for {
        req.insert_header("x-forwarded-for", client.to_string())?;
    }
    if h.forwarded {
        // RFC 7239 §6: an IPv6 address is quoted and bracketed.
        let node = if client.is_ipv6() { format!("\"[{client}]\"") } else { client.to_string() };
        // The Host is the client's: quoted-pair escapes keep it from closing the string and
        // adding elements of its own (RFC 7230 §3.2.6).
        let host = super::request::authority(req).replace('\\', "\\\\").replace('"', "\\\"");
        let element = format!("for={node};proto={};host=\"{host}\"", ctx.scheme);
        let prev = req.headers.get("forwarded").and_then(|v| v.to_str().ok()).map(str::to_string);
        let value = match prev.filter(|p| !p.trim().is_empty()) {
            Some(p) => format!("{p}, {element}"),
            None => element,
        };
        req.insert_header("forwarded", value)?;
    }
    Ok(())
}

/// The response headers the policy sets and removes.
pub fn response(resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
    let Some(h) = of(ctx) else { return Ok(()) };
    for name in &h.response_remove {
        resp.remove_header(name);
    }
    for (k, v) in &h.response_set {
        resp.insert_header(k.clone(), v.as_str())?;
    }
    Ok(())
}
