//! Istio's value matchers for authorization (istio/istio `pilot/pkg/security/authz/matcher`):
//! `*` alone matches any present value, `abc*` a prefix, `*abc` a suffix, anything else exactly;
//! paths may also be templates with `{*}` (one segment) and `{**}` (the rest of the path).

use std::net::IpAddr;

use ipnet::IpNet;

/// A string pattern as Istio writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: any value, as long as there is one.
    Present,
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
    /// `abc`.
    Exact(String),
}

impl Pattern {
    /// Parses `text`; `fold` lowers the case of the pattern (hosts match case-insensitively).
    pub fn new(text: &str, fold: bool) -> Self {
        let t = if fold { text.to_ascii_lowercase() } else { text.to_string() };
        if t == "*" {
            Pattern::Present
        } else if let Some(p) = t.strip_suffix('*') {
            Pattern::Prefix(p.to_string())
        } else if let Some(s) = t.strip_prefix('*') {
            Pattern::Suffix(s.to_string())
        } else {
            Pattern::Exact(t)
        }
    }

    /// True when `value` matches (`value` already case-folded where the pattern is).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Present => !value.is_empty(),
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
            Pattern::Suffix(s) => value.ends_with(s.as_str()),
            Pattern::Exact(e) => value == e,
        }
    }
}

/// A `requestPrincipals` / `request.auth.principal` value as Istio translates it: split at the
/// last `/` into an issuer and a subject matched on their own (so `*` needs both, and `iss` with
/// a `/` in it cannot pose as another issuer's subject); only a leading or a trailing `*` of the
/// whole value is a wildcard (istio/istio `pilot/pkg/security/authz/model/generator.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalPattern {
    iss: Pattern,
    sub: Pattern,
}

impl PrincipalPattern {
    /// Parses one value.
    pub fn new(v: &str) -> Self {
        let exact = |s: &str| Pattern::Exact(s.to_string());
        if v == "*" {
            return PrincipalPattern { iss: Pattern::Present, sub: Pattern::Present };
        }
        match v.rfind('/') {
            Some(i) => {
                let (iss, sub) = (&v[..i], &v[i + 1..]);
                if v.starts_with('*') {
                    PrincipalPattern { iss: Pattern::new(iss, false), sub: exact(sub) }
                } else if v.ends_with('*') {
                    PrincipalPattern { iss: exact(iss), sub: Pattern::new(sub, false) }
                } else {
                    PrincipalPattern { iss: exact(iss), sub: exact(sub) }
                }
            }
            // No `/`: `*x` is any issuer with a subject ending in x; `x*` an issuer starting with x.
            None if v.starts_with('*') => PrincipalPattern { iss: Pattern::Present, sub: Pattern::new(v, false) },
            None if v.ends_with('*') => PrincipalPattern { iss: Pattern::new(v, false), sub: Pattern::Present },
            None => PrincipalPattern { iss: exact(v), sub: exact("") },
        }
    }

    /// True when the token's issuer and subject both match.
    pub fn matches(&self, iss: &str, sub: &str) -> bool {
        self.iss.matches(iss) && self.sub.matches(sub)
    }
}

/// A path pattern: Istio's string forms, or a template (`/books/{*}/pages/{**}`).
#[derive(Debug, Clone)]
pub enum PathPattern {
    /// `*`, `abc*`, `*abc`, `abc`.
    Plain(Pattern),
    /// A template, as the fully anchored regex Envoy's `uri_template` matcher uses.
    Template(regex::Regex),
}

/// Envoy `uri_template` (source/extensions/path/uri_template_lib): `{*}` is one segment of
/// these characters, `{**}` any run of them and `/`.
const SEGMENT: &str = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=]";

impl PathPattern {
    /// Parses a path as Istio does: a template when it contains `{*}` or `{**}`.
    pub fn new(text: &str) -> Result<Self, String> {
        if !text.contains("{*}") && !text.contains("{**}") {
            return Ok(PathPattern::Plain(Pattern::new(text, false)));
        }
        let mut re = String::from("^");
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("{**}") {
                re.push_str(&format!("(?:{}|/)*", SEGMENT));
                rest = r;
            } else if let Some(r) = rest.strip_prefix("{*}") {
                re.push_str(&format!("{SEGMENT}+"));
                rest = r;
            } else {
                let next = rest.find('{').filter(|i| *i > 0).unwrap_or(rest.len());
                re.push_str(&regex::escape(&rest[..next]));
                rest = &rest[next..];
            }
        }
        re.push('$');
        regex::Regex::new(&re).map(PathPattern::Template).map_err(|e| format!("path template {text:?}: {e}"))
    }

    /// True when `path` (without its query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Plain(p) => p.matches(path),
            PathPattern::Template(re) => re.is_match(path),
        }
    }
}

/// An `ipBlocks` entry: an address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock(IpNet);

impl IpBlock {
    /// Parses `1.2.3.4` or `1.2.3.0/24`; `None` when it is neither.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Some(IpBlock(net));
        }
        text.parse::<IpAddr>().ok().map(|a| IpBlock(IpNet::from(a)))
    }

    /// True when `ip` is inside the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_principals_match_issuer_and_subject_apart() {
        let star = PrincipalPattern::new("*");
        assert!(star.matches("https://idp", "alice"));
        assert!(!star.matches("https://idp", ""), "a token without sub is not a principal");
        let exact = PrincipalPattern::new("https://idp/t/admin");
        assert!(exact.matches("https://idp/t", "admin"));
        assert!(!exact.matches("https://idp", "t/admin"), "the split is at the last slash");
        assert!(PrincipalPattern::new("https://idp/*").matches("https://idp", "bob"));
        assert!(!PrincipalPattern::new("https://idp/*").matches("https://idp", ""));
        assert!(PrincipalPattern::new("*idp/alice").matches("https://idp", "alice"));
        assert!(!PrincipalPattern::new("*a/b*").matches("xa", "bc"), "only one end is a wildcard");
    }

    #[test]
    fn a_star_alone_needs_a_value() {
        assert!(Pattern::new("*", false).matches("x"));
        assert!(!Pattern::new("*", false).matches(""));
    }

    #[test]
    fn a_trailing_star_is_a_prefix_and_a_leading_star_a_suffix() {
        assert!(Pattern::new("/api/*", false).matches("/api/v1"));
        assert!(!Pattern::new("/api/*", false).matches("/apix"));
        assert!(Pattern::new("*.png", false).matches("/a/b.png"));
        assert!(!Pattern::new("/x", false).matches("/x/"));
    }

    #[test]
    fn one_segment_templates_match_exactly_one_segment() {
        let p = PathPattern::new("/books/{*}/pages").unwrap();
        assert!(p.matches("/books/1/pages"));
        assert!(!p.matches("/books/1/2/pages"));
        assert!(!p.matches("/books//pages"));
    }

    #[test]
    fn rest_templates_match_anything_after_the_slash_but_not_the_bare_prefix() {
        let p = PathPattern::new("/files/{**}").unwrap();
        assert!(p.matches("/files/a"));
        assert!(p.matches("/files/a/b/c.txt"));
        assert!(p.matches("/files/"));
        assert!(!p.matches("/files"));
        assert!(!p.matches("/filesx/a"));
        let middle = PathPattern::new("/foo/{**}/bar").unwrap();
        assert!(middle.matches("/foo/a/b/bar"));
        assert!(!middle.matches("/foo/a/b/baz"));
        assert!(
            PathPattern::new("/a.b/{*}").unwrap().matches("/a.b/x")
                && !PathPattern::new("/a.b/{*}").unwrap().matches("/aXb/x")
        );
    }

    #[test]
    fn ip_blocks_take_addresses_and_ranges_and_mapped_addresses() {
        let net = IpBlock::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(IpBlock::parse("192.168.1.1").unwrap().contains("192.168.1.1".parse().unwrap()));
        assert!(IpBlock::parse("nope").is_none());
    }
}
