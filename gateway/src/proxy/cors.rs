//! CORS (VirtualService `corsPolicy`), as Envoy's CORS filter applies it after the fault filter:
//! a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed origin
//! is answered here with 200 and the policy's headers; other requests from an allowed origin go on,
//! and their responses get `access-control-allow-origin` (and the credentials and exposed-headers
//! headers). A preflight from another origin is forwarded (`unmatchedPreflights: FORWARD`, the
//! default) or answered 200 without CORS headers (`IGNORE`).
//! <https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/cors_filter>

use bytes::Bytes;
use conf::table::Cors;
use pingora::http::{RequestHeader, ResponseHeader};

use super::ctx::Ctx;
use super::reply::LocalReply;

/// True when `origin` is allowed: a matcher matches it, or one matches `*` (any origin).
fn allowed(cors: &Cors, origin: &str) -> bool {
    cors.allow_origins.iter().any(|m| m.matches("*", false) || m.matches(origin, false))
}

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

/// Checks the request against the matched route's policy. Returns the preflight's reply when the
/// gateway answers it; otherwise remembers the request's allowed origin for [`response`].
pub fn request(req: &RequestHeader, ctx: &mut Ctx) -> Option<LocalReply> {
    let cors = ctx.route()?.cors.as_ref()?;
    let origin = header(req, "origin")?;
    let preflight = req.method == http::Method::OPTIONS && header(req, "access-control-request-method").is_some();
    if !allowed(cors, origin) {
        let ignored = preflight && !cors.forward_unmatched_preflights;
        return ignored.then(|| LocalReply { status: 200, headers: Vec::new(), body: Bytes::new() });
    }
    if !preflight {
        ctx.cors_origin = Some(origin.to_string());
        return None;
    }
    let mut headers = vec![("access-control-allow-origin".to_string(), origin.to_string())];
    if cors.allow_credentials == Some(true) {
        headers.push(("access-control-allow-credentials".into(), "true".into()));
    }
    let lists =
        [("access-control-allow-methods", &cors.allow_methods), ("access-control-allow-headers", &cors.allow_headers)];
    for (name, values) in lists {
        if !values.is_empty() {
            headers.push((name.to_string(), values.join(",")));
        }
    }
    if let Some(age) = cors.max_age {
        headers.push(("access-control-max-age".into(), (age.as_millis() / 1000).to_string()));
    }
    Some(LocalReply { status: 200, headers, body: Bytes::new() })
}

/// The CORS headers of a response to an allowed cross-origin request.
pub fn response(resp: &mut ResponseHeader, ctx: &Ctx) -> pingora::Result<()> {
    let (Some(origin), Some(cors)) = (&ctx.cors_origin, ctx.route().and_then(|r| r.cors.as_ref())) else {
        return Ok(());
    };
    resp.insert_header("access-control-allow-origin", origin.as_str())?;
    if cors.allow_credentials == Some(true) {
        resp.insert_header("access-control-allow-credentials", "true")?;
    }
    if !cors.expose_headers.is_empty() {
        resp.insert_header("access-control-expose-headers", cors.expose_headers.join(","))?;
    }
    Ok(())
}
