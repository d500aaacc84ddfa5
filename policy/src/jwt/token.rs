//! Where tokens are found in a request, and taking them out of it.
//!
//! Istio: with none of `fromHeaders`, `fromParams`, `fromCookies`, a rule reads
//! `Authorization: Bearer <token>` and the `access_token` query parameter
//! (<https://istio.io/latest/docs/reference/config/security/jwt/#JWTRule>), Envoy's default
//! locations (<https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/jwt_authn/v3/config.proto>).

use http::header::{HeaderName, AUTHORIZATION, COOKIE};
use pingora_http::RequestHeader;

/// One place a token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A header whose value starts with `prefix` (case-sensitive, as in Envoy), stripped.
    Header { name: HeaderName, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// A token found at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// Index into the locations the token was looked for in.
    pub(crate) location: usize,
    pub(crate) token: String,
}

/// Istio's default locations.
pub(crate) fn default_locations() -> Vec<Location> {
    vec![Location::Header { name: AUTHORIZATION, prefix: "Bearer ".into() }, Location::Param("access_token".into())]
}

/// The locations of a rule, in Envoy's order: headers, then query parameters, then cookies.
pub(crate) fn rule_locations(rule: &conf::raw::JwtRule) -> Result<Vec<Location>, String> {
    if rule.from_headers.is_empty() && rule.from_params.is_empty() && rule.from_cookies.is_empty() {
        return Ok(default_locations());
    }
    let mut out = Vec::new();
    for h in &rule.from_headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("fromHeaders: {:?} is not a header name", h.name))?;
        out.push(Location::Header { name, prefix: h.prefix.clone() });
    }
    out.extend(rule.from_params.iter().map(|p| Location::Param(p.clone())));
    out.extend(rule.from_cookies.iter().map(|c| Location::Cookie(c.clone())));
    Ok(out)
}

/// Every token at `locations`, in their order; empty tokens are not tokens.
pub(crate) fn extract(req: &RequestHeader, locations: &[Location]) -> Vec<Found> {
    let mut found = Vec::new();
    for (index, location) in locations.iter().enumerate() {
        let tokens: Vec<String> = match location {
            Location::Header { name, prefix } => header_token(req, name, prefix).into_iter().collect(),
            Location::Param(param) => query_values(req.uri.query().unwrap_or(""), param),
            Location::Cookie(cookie) => cookie_values(req, cookie),
        };
        found.extend(tokens.into_iter().filter(|t| !t.is_empty()).map(|token| Found { location: index, token }));
    }
    found
}

/// Envoy's header extraction (`jwt_authn/extractor.cc`): the values of the header joined with
/// `,` (bytes that are not UTF-8 replaced, never a reason to skip the header), the prefix found
/// anywhere in them, then the first run of token characters after it. So `x, Bearer <t>` and
/// `Bearer <t>\x80` carry the token `<t>`, which must then verify.
fn header_token(req: &RequestHeader, name: &HeaderName, prefix: &str) -> Option<String> {
    let values: Vec<String> =
        req.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
    if values.is_empty() {
        return None;
    }
    let joined = values.join(",");
    let after = if prefix.is_empty() { 0 } else { joined.find(prefix)? + prefix.len() };
    let token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let rest = &joined[after..];
    let start = rest.find(token_char)?;
    let run = &rest[start..];
    let end = run.find(|c: char| !token_char(c)).unwrap_or(run.len());
    Some(run[..end].to_string())
}

/// Takes a verified token out of the request. Envoy's `forward: false` removes the header; it
/// leaves query parameters and cookies alone (`JwtParamLocation::removeJwt` is a no-op), and so
/// does Pylon.
pub(crate) fn remove(req: &mut RequestHeader, location: &Location) {
    if let Location::Header { name, .. } = location {
        req.remove_header(name);
    }
}

/// The values of query parameter `name`, percent-decoded (`+` is a space in a form query).
fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
        .collect()
}

/// The values of cookie `name` from every `cookie` header (`a=b; c=d`, RFC 6265 §4.2.1), quotes
/// around a value removed (as Envoy's `parseCookieValue`).
pub fn cookie_values(req: &RequestHeader, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for header in &req.headers.get_all(COOKIE) {
        let text = String::from_utf8_lossy(header.as_bytes());
        let pairs = text.split(';').filter_map(|pair| pair.trim().split_once('='));
        out.extend(pairs.filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().trim_matches('"').to_string()));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i + 1..i + 3) {
            Some([h, l]) if bytes[i] == b'%' => hex(*h).zip(hex(*l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 2;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn request(path: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            req.append_header(*k, *v).unwrap();
        }
        req
    }

    fn tokens(req: &RequestHeader, locations: &[Location]) -> Vec<(usize, String)> {
        extract(req, locations).into_iter().map(|f| (f.location, f.token)).collect()
    }

    #[test]
    fn default_locations_are_the_bearer_header_and_access_token_param() {
        let req = request("/p?x=1&access_token=q.q.q", &[("authorization", "Bearer h.h.h")]);
        assert_eq!(tokens(&req, &default_locations()), vec![(0, "h.h.h".into()), (1, "q.q.q".into())]);
    }

    #[test]
    fn the_prefix_is_found_anywhere_and_the_token_ends_at_the_first_other_byte() {
        let req = request("/", &[("authorization", "x, Bearer a.b.c")]);
        assert_eq!(tokens(&req, &default_locations()), vec![(0, "a.b.c".into())]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("authorization", http::HeaderValue::from_bytes(b"Bearer a.b.c\x80").unwrap()).unwrap();
        assert_eq!(
            tokens(&req, &default_locations()),
            vec![(0, "a.b.c".into())],
            "a non-UTF-8 byte does not hide the token"
        );
    }

    #[test]
    fn a_header_prefix_must_match_exactly() {
        let req = request("/", &[("authorization", "bearer h.h.h")]);
        assert!(tokens(&req, &default_locations()).is_empty());
        let custom = [Location::Header { name: HeaderName::from_static("x-jwt"), prefix: "Token ".into() }];
        let req = request("/", &[("x-jwt", "Token a.b.c")]);
        assert_eq!(tokens(&req, &custom), vec![(0, "a.b.c".into())]);
    }

    #[test]
    fn cookies_and_params_are_read_by_name() {
        let locations = [Location::Cookie("session".into()), Location::Param("t".into())];
        let req = request("/?t=p%2Eq.r", &[("cookie", "a=b; session=c.d.e"), ("cookie", "z=1")]);
        assert_eq!(tokens(&req, &locations), vec![(0, "c.d.e".into()), (1, "p.q.r".into())]);
    }

    #[test]
    fn only_header_tokens_are_removed() {
        let mut req = request("/?access_token=a.b.c", &[("authorization", "Bearer a.b.c")]);
        for location in default_locations() {
            remove(&mut req, &location);
        }
        assert!(req.headers.get("authorization").is_none());
        assert_eq!(req.uri.query(), Some("access_token=a.b.c"));
    }
}
