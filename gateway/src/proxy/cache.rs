//! Response caching on the matched route (`GatewayPolicy` `cache`), with Pingora's cache layer:
//! which requests use the cache, the key, and which responses are stored (RFC 9111's rules for a
//! shared cache, <https://www.rfc-editor.org/rfc/rfc9111>).
//!
//! - Only `GET` and `HEAD`, after routing and every policy check (a cached response is never
//!   served to a request the policies refuse).
//! - Key: scheme, host (lower case, default port dropped), path and query; the zone, the matched
//!   route and the chosen destination; then the configured key headers.
//! - Stored: final responses (not 206) whose `Cache-Control`/`Expires` make them fresh for a while
//!   (`s-maxage` > `max-age` > `Expires`), or, with `defaultTtl`, responses without freshness
//!   information in the status codes RFC 9111 §4.2.2 lets a cache give heuristic freshness.
//!   Never stored: `no-store`, `private`, a `Vary` outside the allow-list (or `*`), `Set-Cookie`,
//!   a request with `Cache-Control: no-store`, and responses to requests with `Authorization`
//!   unless the response says `public`, `s-maxage` or `must-revalidate` (RFC 9111 §3.5).
//! - `Age` from the upstream counts against freshness (§4.2.3); a request's `Cache-Control:
//!   no-cache` (or `max-age=0`, or `Pragma: no-cache`) makes the gateway revalidate first.

use std::time::{Duration, SystemTime};

use pingora::cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora::cache::filters::resp_cacheable;
use pingora::cache::key::HashBinary;
use pingora::cache::{
    CacheKey, CacheMeta, CacheMetaDefaults, CacheOptionOverrides, CachePhase, NoCacheReason, RespCacheable,
    VarianceBuilder,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use conf::table::CacheRule;

use super::ctx::Ctx;

/// Status codes a cache may give heuristic freshness (RFC 9110 §15.1, "heuristically cacheable").
const HEURISTIC: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// The response header telling whether the cache answered.
pub const STATUS_HEADER: &str = "x-cache";

/// The cache rule of the request's route.
fn rule(ctx: &Ctx) -> Option<&CacheRule> {
    ctx.snap.table.caches.get(ctx.cache?)
}

/// `request_cache_filter`: turns the cache on for a `GET` or `HEAD` on a route with a cache.
pub fn enable(session: &mut Session, ctx: &mut Ctx) {
    let Some(index) = ctx.route().and_then(|r| r.cache) else { return };
    let req = session.req_header();
    let cacheable_method = matches!(req.method, http::Method::GET | http::Method::HEAD);
    if ctx.outcome.is_some() || !cacheable_method || session.is_upgrade_req() {
        return;
    }
    let (Some(rule), Some(zone), Some(lock)) =
        (ctx.snap.table.caches.get(index), ctx.snap.caches.get(index), ctx.snap.cache_lock)
    else {
        return;
    };
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(Duration::from_millis(rule.lock_timeout_ms));
    session.cache.enable(*zone, None, None, Some(lock), Some(overrides));
    session.cache.set_max_file_size_bytes(usize::try_from(rule.max_entry_bytes).unwrap_or(usize::MAX));
    ctx.cache = Some(index);
}

/// `scheme://host[:port]/path?query` as the cache and the purge endpoint name a response: the
/// host in lower case, the scheme's default port dropped.
pub fn url(scheme: &str, authority: &str, path_and_query: &str) -> String {
    let (host, port) = conf::matcher::split_authority(authority);
    let default = matches!((scheme, port), (_, None) | ("http", Some("80")) | ("https", Some("443")));
    let port = port.filter(|_| !default).map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{}{port}{path_and_query}", host.to_ascii_lowercase())
}

/// `cache_key_callback`: the URL, then NUL-separated the zone, the matched route and the chosen
/// destination (two routes, or a canary and its stable version, never share a stored response),
/// then each key header as name, `=`, values. NUL cannot occur in a URL, a name or a header value,
/// so the parts cannot run into each other; the zone is also the user tag. The zone in the hashed
/// part keeps zones apart in the cache lock too.
pub fn key(session: &Session, ctx: &Ctx) -> pingora::Result<CacheKey> {
    let Some(rule) = rule(ctx) else {
        return Error::e_explain(ErrorType::InternalError, "the cache is on without a cache rule");
    };
    let req = session.req_header();
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut primary = url(ctx.scheme, &super::request::authority(req), path).into_bytes();
    let route = ctx.route().map_or("", |r| r.origin.as_str());
    let cluster = ctx.cluster.and_then(|c| ctx.snap.upstreams.get(c)).map_or("", |u| u.name.as_str());
    for part in [rule.policy.as_str(), route, cluster] {
        primary.push(0);
        primary.extend_from_slice(part.as_bytes());
    }
    for name in &rule.key_headers {
        primary.push(0);
        primary.extend_from_slice(name.as_bytes());
        primary.push(b'=');
        for (i, v) in req.headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                primary.push(b',');
            }
            primary.extend_from_slice(v.as_bytes());
        }
    }
    Ok(CacheKey::new(primary, rule.policy.as_str()))
}

/// `cache_vary_filter`: the variant of a stored response this request wants, from the values of
/// the request headers its `Vary` names.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    let names = vary_names(meta.headers());
    if names.is_empty() {
        return None;
    }
    let mut builder = VarianceBuilder::new();
    for name in names {
        let values: Vec<u8> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .flat_map(|v| v.as_bytes().iter().copied().chain(std::iter::once(b',')))
            .collect();
        builder.add_owned_name_value(name, values);
    }
    builder.finalize()
}

/// The header names of every `Vary` value, in lower case.
fn vary_names(headers: &http::HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// True when the request's own directives (`Cache-Control`, or HTTP/1.0 `Pragma`) include
/// `directive`.
fn request_says(req: &RequestHeader, directive: &str) -> bool {
    let listed = |name: http::header::HeaderName| {
        req.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|d| {
            let d = d.trim();
            d.eq_ignore_ascii_case(directive) || (directive == "no-cache" && d.eq_ignore_ascii_case("max-age=0"))
        })
    };
    listed(http::header::CACHE_CONTROL) || (directive == "no-cache" && listed(http::header::PRAGMA))
}

/// `cache_hit_filter`: a request asking for a validated response makes the gateway revalidate
/// the stored one first (RFC 9111 §5.2.1.4).
pub fn must_revalidate(req: &RequestHeader) -> bool {
    request_says(req, "no-cache")
}

/// `response_cache_filter`: whether and how long the response may be stored.
pub fn cacheable(session: &Session, resp: &ResponseHeader, ctx: &Ctx) -> RespCacheable {
    let uncacheable = |why| RespCacheable::Uncacheable(NoCacheReason::Custom(why));
    let Some(rule) = rule(ctx) else { return uncacheable("no cache rule") };
    let req = session.req_header();
    if resp.status.as_u16() == 206 || resp.status.is_informational() {
        return uncacheable("partial or informational response");
    }
    if request_says(req, "no-store") {
        return uncacheable("request no-store");
    }
    if resp.headers.contains_key(http::header::SET_COOKIE) {
        return uncacheable("set-cookie");
    }
    let vary = vary_names(&resp.headers);
    if vary.iter().any(|n| n == "*" || !rule.vary.contains(n)) {
        return uncacheable("vary outside the allow-list");
    }
    let cc = CacheControl::from_resp_headers(resp);
    let authorized = req.headers.contains_key(http::header::AUTHORIZATION);
    let defaults = CacheMetaDefaults::new(|_| None, rule.stale_while_revalidate_secs, rule.stale_if_error_secs);
    match resp_cacheable(cc.as_ref(), resp.clone(), authorized, &defaults) {
        RespCacheable::Cacheable(meta) => RespCacheable::Cacheable(aged(meta, resp, rule)),
        RespCacheable::Uncacheable(why) => heuristic(rule, cc.as_ref(), resp, authorized)
            .map_or(RespCacheable::Uncacheable(why), |m| RespCacheable::Cacheable(aged(m, resp, rule))),
    }
}

/// `defaultTtl` for a response that carries no freshness information and may be stored.
fn heuristic(
    rule: &CacheRule,
    cc: Option<&CacheControl>,
    resp: &ResponseHeader,
    authorized: bool,
) -> Option<CacheMeta> {
    let ttl = rule.default_ttl_secs?;
    let silent = cc.is_none_or(|c| c.is_cacheable() != Cacheable::No && c.fresh_duration().is_none());
    let authorized_ok = !authorized || cc.is_some_and(|c| c.allow_caching_authorized_req());
    if !silent || !authorized_ok || resp.headers.contains_key(http::header::EXPIRES) {
        return None;
    }
    if !HEURISTIC.contains(&resp.status.as_u16()) {
        return None;
    }
    let mut header = resp.clone();
    if let Some(c) = cc {
        c.strip_private_headers(&mut header);
    }
    let now = SystemTime::now();
    let (swr, sie) = stale_windows(cc, rule);
    Some(CacheMeta::new(now + Duration::from_secs(u64::from(ttl)), now, swr, sie, header))
}

fn stale_windows(cc: Option<&CacheControl>, rule: &CacheRule) -> (u32, u32) {
    let defaults = CacheMetaDefaults::new(|_| None, rule.stale_while_revalidate_secs, rule.stale_if_error_secs);
    pingora::cache::filters::calculate_serve_stale_durations(cc, &defaults)
}

/// The response's `Age` counts as time already spent in caches (RFC 9111 §4.2.3): the stored
/// response is that much older, so it is fresh that much less long.
fn aged(meta: CacheMeta, resp: &ResponseHeader, rule: &CacheRule) -> CacheMeta {
    let age = resp.headers.get(http::header::AGE).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let Some(age) = age.filter(|a: &u64| *a > 0).map(Duration::from_secs) else { return meta };
    let (Some(fresh_until), Some(created)) = (meta.fresh_until().checked_sub(age), meta.created().checked_sub(age))
    else {
        return meta;
    };
    let cc = CacheControl::from_resp_headers(resp);
    let (swr, sie) = stale_windows(cc.as_ref(), rule);
    CacheMeta::new(fresh_until, created, swr, sie, meta.response_header_copy())
}

/// `should_serve_stale`: during revalidation (`error` None) when the stored response allows it,
/// and when the upstream failed (not when the client did) within `stale-if-error`.
pub fn serve_stale(error: Option<&Error>, ctx: &mut Ctx) -> bool {
    let serve = error.is_none_or(|e| *e.esource() != ErrorSource::Downstream);
    if serve && error.is_some() {
        // The stale response answers the request: it did not fail.
        ctx.outcome = None;
    }
    serve
}

/// What the cache did for the request, in nginx's `$upstream_cache_status` words; `None` when the
/// route has no cache.
pub fn status(session: &Session, ctx: &Ctx) -> Option<&'static str> {
    ctx.cache?;
    Some(match session.cache.phase() {
        CachePhase::Hit => "HIT",
        CachePhase::Stale => "STALE",
        CachePhase::StaleUpdating => "UPDATING",
        CachePhase::Expired => "EXPIRED",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
        CachePhase::Bypass => "BYPASS",
        _ => "MISS",
    })
}

/// `response_filter`: records the cache status, and adds `x-cache` when the rule asks for it.
pub fn response(session: &Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> pingora::Result<()> {
    let Some(status) = status(session, ctx) else { return Ok(()) };
    ctx.cache_status = Some(status);
    if rule(ctx).is_some_and(|r| r.status_header) {
        resp.insert_header(STATUS_HEADER, status)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_drop_default_ports_and_lower_the_host() {
        assert_eq!(url("http", "Shop.Example.com:80", "/a?b"), "http://shop.example.com/a?b");
        assert_eq!(url("https", "shop.example.com:443", "/"), "https://shop.example.com/");
        assert_eq!(url("http", "shop.example.com:8080", "/"), "http://shop.example.com:8080/");
        assert_eq!(url("https", "[::1]:80", "/"), "https://[::1]:80/");
    }

    #[test]
    fn vary_names_are_listed_once_in_lower_case() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("vary", "Accept-Encoding, accept-language").unwrap();
        resp.append_header("vary", "accept-encoding").unwrap();
        assert_eq!(vary_names(&resp.headers), ["accept-encoding", "accept-language"]);
    }

    #[test]
    fn a_request_asks_for_revalidation_with_no_cache_max_age_0_or_pragma() {
        for (name, value, expected) in [
            ("cache-control", "no-cache", true),
            ("cache-control", "max-age=0", true),
            ("pragma", "no-cache", true),
            ("cache-control", "max-age=60", false),
        ] {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.insert_header(name, value).unwrap();
            assert_eq!(must_revalidate(&req), expected, "{name}: {value}");
        }
    }
}
