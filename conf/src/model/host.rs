//! Host names with Istio's wildcard semantics (`pkg/config/host`).
//!
//! A wildcard name has `*` as its whole first label (`*.example.com`) or is `*` alone. Comparisons
//! here are case-sensitive, as in Istio; virtual-host names are lower-cased afterwards.

/// True for `*` and `*.suffix` names.
pub fn is_wildcard(h: &str) -> bool {
    h.starts_with('*')
}

/// Istio `Name.SubsetOf`: every name `a` matches is also matched by `b`.
///
/// `x.foo.com ⊆ *.foo.com`, `*.a.foo.com ⊆ *.foo.com`, everything ⊆ `*`, but `foo.com ⊄ *.foo.com`.
pub fn subset_of(a: &str, b: &str) -> bool {
    match (is_wildcard(a), is_wildcard(b)) {
        (true, true) => a[1..].ends_with(&b[1..]),
        (true, false) => false,
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// Istio `Name.Matches`: the two names have at least one name in common.
pub fn matches(a: &str, b: &str) -> bool {
    match (is_wildcard(a), is_wildcard(b)) {
        (true, true) if a.len() < b.len() => b[1..].ends_with(&a[1..]),
        (true, true) => a[1..].ends_with(&b[1..]),
        (true, false) => b.ends_with(&a[1..]),
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// Istio `Names.Intersection`: for each pair, the more specific name when one contains the other,
/// without duplicates, in the order of `a`.
pub fn intersection(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in a {
        for y in b {
            let keep = if subset_of(x, y) {
                x
            } else if subset_of(y, x) {
                y
            } else {
                continue;
            };
            if !out.contains(keep) {
                out.push(keep.clone());
            }
        }
    }
    out
}

/// Istio `ResolveShortnameToFQDN`: a name without a dot (other than `*`) becomes
/// `<name>.<namespace>.svc.<domain>`; IPs and FQDNs are unchanged.
pub fn expand_short_name(h: &str, namespace: &str, domain: &str) -> String {
    if h == "*" || h.contains('.') || h.contains(':') || h.is_empty() {
        return h.to_string();
    }
    format!("{h}.{namespace}.svc.{domain}")
}

/// The namespace of a Kubernetes service's name (`<service>.<namespace>.svc.<domain>`, which
/// short names expand to); `None` for any other name.
pub fn kubernetes_namespace<'h>(host: &'h str, domain: &str) -> Option<&'h str> {
    let name = host.strip_suffix(domain)?.strip_suffix(".svc.")?;
    if name.contains('*') || name.split('.').count() != 2 {
        return None;
    }
    name.split_once('.').map(|(_, ns)| ns)
}

/// A server host entry split into its namespace part and DNS name (`ns/name`, `./name`, `*/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHost {
    /// `None` for any namespace (no prefix or `*/`), else the namespace (`.` resolved).
    pub namespace: Option<String>,
    /// The DNS name (or `*`).
    pub name: String,
}

impl ServerHost {
    /// Splits `entry`; `gateway_ns` resolves `./`.
    pub fn parse(entry: &str, gateway_ns: &str) -> ServerHost {
        match entry.split_once('/') {
            Some(("*", name)) => ServerHost { namespace: None, name: name.to_string() },
            Some((".", name)) => ServerHost { namespace: Some(gateway_ns.to_string()), name: name.to_string() },
            Some((ns, name)) => ServerHost { namespace: Some(ns.to_string()), name: name.to_string() },
            None => ServerHost { namespace: None, name: entry.to_string() },
        }
    }

    /// Istio `NamesForNamespace`: the name if a resource in `ns` may use it.
    pub fn name_for(&self, ns: &str) -> Option<&str> {
        match &self.namespace {
            Some(n) if n != ns => None,
            _ => Some(&self.name),
        }
    }
}

/// Istio `sanitizeServerHostNamespace`, reduced to what routing needs: the server's hosts with
/// namespaces resolved; `*/*` collapses the whole list to `*`.
pub fn server_hosts(entries: &[String], gateway_ns: &str) -> Vec<ServerHost> {
    if entries.iter().any(|h| h == "*/*") {
        return vec![ServerHost { namespace: None, name: "*".into() }];
    }
    entries.iter().map(|e| ServerHost::parse(e, gateway_ns)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_of_follows_istio() {
        assert!(subset_of("x.foo.com", "*.foo.com"));
        assert!(subset_of("*.a.foo.com", "*.foo.com"));
        assert!(subset_of("*.foo.com", "*"));
        assert!(subset_of("foo.com", "*"));
        assert!(!subset_of("foo.com", "*.foo.com"));
        assert!(!subset_of("*", "*.foo.com"));
        assert!(subset_of("a.b.com", "*.com"));
        assert!(!subset_of("Example.org", "example.org"));
    }

    #[test]
    fn intersection_keeps_the_more_specific_name() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(intersection(&s(&["*.example.com"]), &s(&["a.example.com"])), s(&["a.example.com"]));
        assert_eq!(intersection(&s(&["a.example.com"]), &s(&["*.example.com"])), s(&["a.example.com"]));
        assert_eq!(intersection(&s(&["*"]), &s(&["*.org"])), s(&["*.org"]));
        assert_eq!(intersection(&s(&["*"]), &s(&["*"])), s(&["*"]));
        assert_eq!(intersection(&s(&["foo.bar"]), &s(&["*"])), s(&["foo.bar"]));
        assert!(intersection(&s(&["foo.com"]), &s(&["*.foo.com"])).is_empty());
    }

    #[test]
    fn a_kubernetes_service_name_gives_its_namespace() {
        assert_eq!(kubernetes_namespace("reviews.bookinfo.svc.cluster.local", "cluster.local"), Some("bookinfo"));
        assert_eq!(kubernetes_namespace("reviews.svc.cluster.local", "cluster.local"), None);
        assert_eq!(kubernetes_namespace("a.reviews.bookinfo.svc.cluster.local", "cluster.local"), None);
        assert_eq!(kubernetes_namespace("*.bookinfo.svc.cluster.local", "cluster.local"), None);
        assert_eq!(kubernetes_namespace("reviews.bookinfo.svccluster.local", "cluster.local"), None);
        assert_eq!(kubernetes_namespace("reviews.example.com", "cluster.local"), None);
    }

    #[test]
    fn short_names_expand_in_the_resource_namespace() {
        assert_eq!(expand_short_name("reviews", "bookinfo", "cluster.local"), "reviews.bookinfo.svc.cluster.local");
        assert_eq!(expand_short_name("reviews.prod", "x", "cluster.local"), "reviews.prod");
        assert_eq!(expand_short_name("*", "x", "cluster.local"), "*");
    }

    #[test]
    fn server_host_namespaces_resolve() {
        assert_eq!(ServerHost::parse("./a.com", "gw").name_for("gw"), Some("a.com"));
        assert_eq!(ServerHost::parse("ns1/*", "gw").name_for("ns2"), None);
        assert_eq!(ServerHost::parse("*/a.com", "gw").name_for("any"), Some("a.com"));
        assert_eq!(server_hosts(&["a.com".into(), "*/*".into()], "gw").len(), 1);
    }
}
