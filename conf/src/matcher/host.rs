//! Virtual-host selection by Host / `:authority` (Envoy's virtual-host
//! domain matching: <https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-virtualhost>).

use std::borrow::Cow;

/// The host part of an authority, lower-cased, without port (`[::1]:80` → `[::1]`).
pub fn authority_host(authority: &str) -> Cow<'_, str> {
    let host = split_authority(authority).0;
    // Clients send lower case almost always: copy only to fold case (this runs for every request).
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// An authority as (host, port): `example.com:8080` → (`example.com`, `Some("8080")`),
/// `[::1]:80` → (`[::1]`, `Some("80")`); the host keeps its case.
pub fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => (h, Some(port)),
        _ => (authority, None),
    }
}

/// Finds the virtual host for a request host: exact name, then the longest wildcard suffix
/// (`*.foo.com` matches `a.foo.com` and `a.b.foo.com`), then `*`. No fallback beyond that.
#[derive(Debug, Clone, Default)]
pub struct VirtualHostIndex {
    /// hashbrown's default hasher (foldhash): a request's host is hashed on every request, and
    /// std's SipHash cost several times as much.
    exact: hashbrown::HashMap<String, usize>,
    /// (suffix including the leading dot, index), longest suffix first.
    wildcard: Vec<(String, usize)>,
    any: Option<usize>,
}

impl VirtualHostIndex {
    /// Indexes `(domain, id)` pairs; domains are lower-case virtual-host names.
    pub fn new<'a>(domains: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let mut index = VirtualHostIndex::default();
        for (domain, id) in domains {
            if domain == "*" {
                index.any.get_or_insert(id);
            } else if let Some(suffix) = domain.strip_prefix('*') {
                index.wildcard.push((suffix.to_string(), id));
            } else {
                index.exact.entry(domain.to_string()).or_insert(id);
            }
        }
        index.wildcard.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        index
    }

    /// The virtual host for `host` (already lower-cased and without port).
    pub fn find(&self, host: &str) -> Option<usize> {
        if let Some(id) = self.exact.get(host) {
            return Some(*id);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, id)| *id)
            .or(self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_ignored_and_case_folded() {
        assert_eq!(authority_host("Foo.Example.com:12345"), "foo.example.com");
        assert_eq!(authority_host("[::1]:80"), "[::1]");
        assert_eq!(authority_host("example.com"), "example.com");
        assert_eq!(split_authority("Host:81"), ("Host", Some("81")));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
    }

    #[test]
    fn exact_beats_longest_wildcard_beats_star() {
        let idx = VirtualHostIndex::new([("*", 0), ("*.com", 1), ("*.example.com", 2), ("a.example.com", 3)]);
        assert_eq!(idx.find("a.example.com"), Some(3));
        assert_eq!(idx.find("b.example.com"), Some(2));
        assert_eq!(idx.find("x.y.example.com"), Some(2));
        assert_eq!(idx.find("example.com"), Some(1));
        assert_eq!(idx.find("example.org"), Some(0));
    }

    #[test]
    fn no_vhost_without_star() {
        let idx = VirtualHostIndex::new([("*.example.com", 0)]);
        assert_eq!(idx.find("example.com"), None);
    }
}
