//! Request checks before routing, and the authority sent upstream.

use std::borrow::Cow;

use conf::matcher::RequestHeaders;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::error::Outcome;

/// Envoy's default request header limits at an Istio gateway: 60 KiB and 100 headers → 431.
const MAX_HEADER_BYTES: usize = 60 * 1024;
const MAX_HEADERS: usize = 100;
/// The longest request target (path and query): beyond it, 414. Targets over 64 KiB never reach
/// Pylon (Pingora answers 400: the `http` crate's URI limit).
const MAX_URI_BYTES: usize = 32 * 1024;

/// Reads request headers for route matching (values of a repeated header are comma-joined).
pub struct HeaderView<'a>(pub &'a http::HeaderMap);

impl RequestHeaders for HeaderView<'_> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        joined(self.0.get_all(name))
    }
}

/// The lines of a repeated header as one value, comma-joined (RFC 9110 §5.3); `None` when absent.
pub fn joined(lines: http::header::GetAll<'_, http::HeaderValue>) -> Option<Cow<'_, str>> {
    let mut values = lines.into_iter().map(|v| String::from_utf8_lossy(v.as_bytes()));
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

/// The request's authority: the URI's (HTTP/2 `:authority`, absolute-form) or the Host header.
/// Borrowed: it is read for every request.
pub fn authority(req: &RequestHeader) -> std::borrow::Cow<'_, str> {
    if let Some(a) = req.uri.authority() {
        return a.as_str().into();
    }
    // A visible-ASCII check is cheaper than decoding UTF-8 and passes every valid host.
    let host = req.headers.get(http::header::HOST);
    host.map(|h| h.to_str().map_or_else(|_| String::from_utf8_lossy(h.as_bytes()), Cow::Borrowed)).unwrap_or_default()
}

/// What the checks learn of a request's head on their way.
#[derive(Debug, Default, Clone, Copy)]
pub struct Head {
    /// The size of its header lines (Istio's `request_bytes` counts them).
    pub bytes: usize,
    /// It waits for `100 Continue` before sending its body.
    pub expects_continue: bool,
    /// A gRPC request (`content-type: application/grpc…`).
    pub grpc: bool,
}

/// Framing and size checks Pingora does not do, with what they learn of the head on their way;
/// `Some` is the reply to send.
pub fn check(session: &Session) -> (Head, Option<Outcome>) {
    let req = session.req_header();
    let h = &req.headers;
    let h1 = !session.as_downstream().is_http2();
    // One pass over the headers instead of a hashed lookup per name.
    let (mut head, mut lengths, mut chunked, mut host) = (Head::default(), 0, false, false);
    for (name, v) in h {
        head.bytes += crate::telemetry::record::header_line_bytes(name, v);
        if name == http::header::CONTENT_LENGTH {
            // A list (`5, 5`) counts as several values.
            lengths += 1 + usize::from(v.as_bytes().contains(&b','));
        }
        chunked |= name == http::header::TRANSFER_ENCODING;
        host |= name == http::header::HOST;
        head.expects_continue |= name == http::header::EXPECT && is_continue(v);
        head.grpc |= name == http::header::CONTENT_TYPE && v.as_bytes().starts_with(b"application/grpc");
    }
    // Request smuggling: Content-Length with Transfer-Encoding is rejected outright, as Envoy does.
    // Pingora drops the Content-Length before we see the header map, so look at the raw bytes.
    let refused = if chunked && raw_has_content_length(session) {
        Some(Outcome::BadRequest)
    } else if lengths > 1 {
        // Several Content-Length values, even equal ones (`5, 5`), are refused rather than
        // collapsed (RFC 9110 §8.6 allows either; nginx refuses too).
        Some(Outcome::BadRequest)
    } else if h1 && req.version == http::Version::HTTP_11 && !host && req.uri.authority().is_none() {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host (and not in absolute form) is a 400.
        Some(Outcome::BadRequest)
    } else if req.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_BYTES {
        Some(Outcome::UriTooLong)
    } else if h.len() > MAX_HEADERS || head.bytes > MAX_HEADER_BYTES {
        Some(Outcome::HeadersTooLarge)
    } else {
        None
    };
    (head, refused)
}

fn is_continue(v: &http::HeaderValue) -> bool {
    v.as_bytes().eq_ignore_ascii_case(b"100-continue")
}

/// `true` for a request that waits for `100 Continue` before sending its body.
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.headers.get(http::header::EXPECT).is_some_and(is_continue)
}

/// Runs `f` on the upstream request's own `http` header map, then hands the request back to
/// Pingora without its record of the client's header-name case. Headers set through Pingora's
/// `RequestHeader` had each name parsed again and two maps grown one entry at a time; here names
/// parsed once are inserted into one map, reserved ahead. Header names then go upstream in lower
/// case, as Envoy writes HTTP/1 header names (its default `header_key_format`, which Istio's gateway
/// keeps), except the few Pingora writes in title case (`Host`, `Content-Length`, `Connection`, …).
/// The request target is kept as Pingora held it (verbatim when the URI cannot hold it).
pub fn with_header_map<R>(req: &mut RequestHeader, f: impl FnOnce(&mut http::HeaderMap) -> R) -> R {
    let from_uri = req.uri.path_and_query().is_some_and(|pq| pq.as_str().as_bytes() == req.raw_path());
    let raw = (!from_uri).then(|| req.raw_path().to_vec());
    let end_stream = req.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(req, placeholder).into();
    let out = f(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(raw) = raw {
        // Pingora parsed it when the request arrived; it parses the same way again.
        if let Err(e) = req.set_raw_path(&raw) {
            tracing::debug!(error = %e, "request target kept in its URI form");
        }
    }
    if end_stream == Some(false) {
        req.set_send_end_stream(false);
    }
    out
}

/// An address as text for a header. IPv4 without `core::fmt`: this runs for every request, and
/// formatting four octets through `Display` cost more than the rest of the forwarding headers.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// An absolute-form target (`GET http://host/path`) becomes origin-form (`/path`) upstream:
/// HTTP/1.1 origin servers expect origin-form (RFC 9112 §3.2.1); the host is in the Host header.
pub fn to_origin_form(req: &mut RequestHeader) {
    if req.uri.scheme().is_none() {
        return;
    }
    let origin = req.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string();
    if let Ok(uri) = origin.parse::<http::Uri>() {
        req.set_uri(uri);
    }
}

fn raw_has_content_length(session: &Session) -> bool {
    if session.as_downstream().is_http2() {
        return false;
    }
    let raw = session.as_downstream().to_h1_raw();
    raw.split(|b| *b == b'\n').any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

/// Normalizes the request path in place as MeshConfig `pathNormalization` says (Istio's default
/// `BASE`): routing and the upstream both see the normalized path. `Err` for a path that is not
/// origin-form.
pub fn normalize_path(session: &mut Session, mode: conf::table::PathNormalization) -> Result<(), Outcome> {
    let req = session.req_header();
    let pq = req.uri.path_and_query().map(|pq| pq.as_str()).ok_or(Outcome::BadRequest)?;
    // Most paths are already normal: borrowed, nothing is copied.
    let uri = match conf::matcher::path::normalize_as(pq, mode).ok_or(Outcome::BadRequest)? {
        std::borrow::Cow::Owned(normalized) if normalized != pq => {
            Some(with_path_and_query(&req.uri, &normalized).ok_or(Outcome::BadRequest)?)
        }
        _ => None,
    };
    if let Some(uri) = uri {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_their_display_form() {
        for ip in ["0.0.0.0", "9.10.99.100", "127.0.0.1", "255.255.255.255", "10.200.3.45", "::1", "2001:db8::7"] {
            let parsed: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(parsed), parsed.to_string());
        }
    }

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn upstream_header_names_are_lower_case_as_envoy_writes_them() {
        let mut req = RequestHeader::build("GET", b"/a?b=1", None).unwrap();
        req.append_header("X-Tenant", "t1").unwrap();
        req.append_header("X-Tenant", "t2").unwrap();
        assert!(wire(&req).contains("X-Tenant: t1"));
        let count = with_header_map(&mut req, |h| {
            h.insert("x-added", http::HeaderValue::from_static("1"));
            h.len()
        });
        assert_eq!(count, 3);
        assert_eq!(wire(&req), "x-tenant: t1\r\nx-tenant: t2\r\nx-added: 1\r\n");
        assert_eq!(
            (req.method.as_str(), req.uri.to_string(), req.raw_path()),
            ("GET", "/a?b=1".into(), &b"/a?b=1"[..])
        );
    }

    #[test]
    fn a_target_kept_verbatim_stays_verbatim() {
        for target in [&b"http://shop.example.com/a"[..], &b"/caf\xe9"[..]] {
            let mut req = RequestHeader::build("GET", target, None).unwrap();
            let utf8 = req.raw_path_is_utf8();
            req.append_header("X-Tenant", "t1").unwrap();
            with_header_map(&mut req, |_| ());
            assert_eq!((wire(&req), req.raw_path(), req.raw_path_is_utf8()), ("x-tenant: t1\r\n".into(), target, utf8));
        }
    }
}
