//! Request checks before routing, and the authority sent upstream.

use std::borrow::Cow;

use conf::matcher::RequestHeaders;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::error::Outcome;

/// Envoy's default request header limits at an Istio gateway: 60 KiB and 100 headers → 431.
const MAX_HEADER_BYTES: usize = 60 * 1024;
const MAX_HEADERS: usize = 100;

/// Reads request headers for route matching (values of a repeated header are comma-joined).
pub struct HeaderView<'a>(pub &'a http::HeaderMap);

impl RequestHeaders for HeaderView<'_> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.0.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
        let first = values.next()?;
        let rest: Vec<Cow<'_, str>> = values.collect();
        if rest.is_empty() {
            return Some(first);
        }
        let mut joined = first.into_owned();
        for v in rest {
            joined.push(',');
            joined.push_str(&v);
        }
        Some(Cow::Owned(joined))
    }
}

/// The request's authority: the URI's (HTTP/2 `:authority`, absolute-form) or the Host header.
pub fn authority(req: &RequestHeader) -> String {
    if let Some(a) = req.uri.authority() {
        return a.as_str().to_string();
    }
    req.headers.get(http::header::HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()).unwrap_or_default()
}

/// Framing and size checks Pingora does not do; `Some` is the reply to send.
pub fn check(session: &Session) -> Option<Outcome> {
    let h = &session.req_header().headers;
    // Request smuggling: Content-Length with Transfer-Encoding is rejected outright, as Envoy does.
    // Pingora drops the Content-Length before we see the header map, so look at the raw bytes.
    if h.contains_key(http::header::TRANSFER_ENCODING) && raw_has_content_length(session) {
        return Some(Outcome::BadRequest);
    }
    let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if h.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(Outcome::HeadersTooLarge);
    }
    None
}

fn raw_has_content_length(session: &Session) -> bool {
    if session.as_downstream().is_http2() {
        return false;
    }
    let raw = session.as_downstream().to_h1_raw();
    raw.split(|b| *b == b'\n').any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

/// Normalizes the request path in place (Istio `pathNormalization: BASE`): routing and the
/// upstream both see the normalized path. `Err` for a path that is not origin-form.
pub fn normalize_path(session: &mut Session) -> Result<(), Outcome> {
    let req = session.req_header();
    let Some(pq) = req.uri.path_and_query().map(|pq| pq.as_str().to_string()) else { return Err(Outcome::BadRequest) };
    let normalized = conf::matcher::path::normalize(&pq).ok_or(Outcome::BadRequest)?;
    if normalized != pq {
        let uri = with_path_and_query(&session.req_header().uri, &normalized).ok_or(Outcome::BadRequest)?;
        session.req_header_mut().set_uri(uri);
    }
    Ok(())
}

/// `uri` with another path and query; scheme and authority (HTTP/2 `:authority`) are kept.
pub fn with_path_and_query(uri: &http::Uri, path_and_query: &str) -> Option<http::Uri> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Replaces the authority sent upstream (Host for HTTP/1, `:authority` for HTTP/2).
pub fn rewrite_authority(req: &mut RequestHeader, authority: &str) -> pingora::Result<()> {
    req.insert_header(http::header::HOST, authority)?;
    if req.uri.authority().is_some() {
        let mut parts = req.uri.clone().into_parts();
        parts.authority = authority.parse().ok();
        if let Ok(uri) = http::Uri::from_parts(parts) {
            req.set_uri(uri);
        }
    }
    Ok(())
}
