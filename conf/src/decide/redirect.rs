//! The `Location` of an Istio `HTTPRedirect` (Envoy's `RedirectAction`).

use crate::matcher::split_authority;
use crate::table::Redirect;

/// The `Location` of a Gateway server's `httpsRedirect`: the same authority and path (query
/// included) over `https`.
pub fn https(authority: &str, path: &str) -> String {
    format!("https://{authority}{path}")
}

/// Builds the `Location` of an Istio `HTTPRedirect` (Envoy `RedirectAction` semantics).
///
/// `scheme` and `authority` are the request's; `path` is the normalized path with query;
/// `matched_prefix` is the route's prefix match, for `prefixRewrite`.
pub fn location(r: &Redirect, scheme: &str, authority: &str, path: &str, matched_prefix: Option<&str>) -> String {
    let new_scheme = r.scheme.as_deref().unwrap_or(scheme);
    let host = match (&r.authority, r.port) {
        (Some(a), Some(p)) => format!("{}:{p}", strip_port(a)),
        (Some(a), None) => a.clone(),
        (None, Some(p)) => format!("{}:{p}", strip_port(authority)),
        (None, None) if new_scheme != scheme && has_default_port(authority, scheme) => {
            strip_port(authority).to_string()
        }
        (None, None) => authority.to_string(),
    };
    let (req_path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let new_path = match (&r.uri, &r.prefix_rewrite, matched_prefix) {
        (Some(uri), _, _) => uri.clone(),
        // The route matched the prefix (ASCII case aside, with ignoreUriCase).
        (None, Some(rewrite), Some(prefix)) if starts_with_ignore_case(req_path, prefix) => {
            format!("{rewrite}{}", req_path.get(prefix.len()..).unwrap_or(""))
        }
        _ => req_path.to_string(),
    };
    // Envoy keeps the request's query unless the new path carries one.
    let query = if new_path.contains('?') { None } else { query };
    let mut out = format!("{new_scheme}://{host}{new_path}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn strip_port(authority: &str) -> &str {
    split_authority(authority).0
}

fn has_default_port(authority: &str, scheme: &str) -> bool {
    matches!((scheme, split_authority(authority).1), ("http", Some("80")) | ("https", Some("443")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> Redirect {
        Redirect { code: 301, scheme: None, authority: None, port: None, uri: None, prefix_rewrite: None }
    }

    #[test]
    fn uri_replaces_the_path_and_keeps_the_query() {
        let r = Redirect { uri: Some("/new/path".into()), ..redirect() };
        assert_eq!(location(&r, "http", "b", "/foo?key=value", None), "http://b/new/path?key=value");
        let r = Redirect { uri: Some("/new?x=1".into()), ..redirect() };
        assert_eq!(location(&r, "http", "b", "/foo?key=value", None), "http://b/new?x=1");
    }

    #[test]
    fn request_port_is_kept_unless_replaced() {
        let r = Redirect { port: None, uri: Some("/foo".into()), ..redirect() };
        assert_eq!(location(&r, "http", "b:80", "/x", None), "http://b:80/foo");
        let r = Redirect { port: Some(85), uri: Some("/foo".into()), ..redirect() };
        assert_eq!(location(&r, "http", "b", "/x", None), "http://b:85/foo");
        assert_eq!(location(&r, "http", "b:85", "/x", None), "http://b:85/foo");
    }

    #[test]
    fn scheme_change_drops_the_old_default_port() {
        let r = Redirect { scheme: Some("https".into()), ..redirect() };
        assert_eq!(location(&r, "http", "b:80", "/x", None), "https://b/x");
        assert_eq!(location(&r, "http", "b:8080", "/x", None), "https://b:8080/x");
    }

    #[test]
    fn authority_replaces_the_host_and_its_port() {
        let r = Redirect { authority: Some("new.example.com".into()), ..redirect() };
        assert_eq!(location(&r, "http", "old:8080", "/x", None), "http://new.example.com/x");
    }

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix() {
        let r = Redirect { prefix_rewrite: Some("/new/".into()), ..redirect() };
        assert_eq!(location(&r, "http", "b", "/foo/bar?q", Some("/foo/")), "http://b/new/bar?q");
        assert_eq!(location(&r, "http", "b", "/FOO/bar", Some("/foo/")), "http://b/new/bar");
    }
}
