//! One compiled `AuthorizationPolicy` rule: `from` AND `to` AND every `when`; within `from` and
//! `to` the entries are ORed; within an entry the fields are ANDed; within a field the values are
//! ORed and the `not` values must all fail (istio.io/latest/docs/reference/config/security/authorization-policy/).

use pingora_http::RequestHeader;

use super::matchers::{IpBlock, PathPattern, Pattern, PrincipalPattern};
use crate::Context;

/// A field of a source, operation or condition: values (any matches) and not-values (none
/// matches). A field that is not written is `None` and matches anything.
#[derive(Debug, Clone)]
pub(crate) struct Field<T> {
    pub values: Option<Vec<T>>,
    pub not: Option<Vec<T>>,
}

impl<T> Field<T> {
    pub fn new(values: Option<Vec<T>>, not: Option<Vec<T>>) -> Self {
        Field { values: values.filter(|v| !v.is_empty()), not: not.filter(|v| !v.is_empty()) }
    }

    /// True when the attribute (`None` when the request has none) satisfies the field: an
    /// absent attribute fails `values` and passes `not`, as Envoy's RBAC does.
    pub fn check(&self, attribute: impl Fn(&T) -> bool) -> bool {
        let any = |list: &Option<Vec<T>>| list.as_ref().map(|l| l.iter().any(&attribute));
        any(&self.values).unwrap_or(true) && !any(&self.not).unwrap_or(false)
    }

    pub fn is_set(&self) -> bool {
        self.values.is_some() || self.not.is_some()
    }
}

/// `from.source`.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub principals: Field<Pattern>,
    pub request_principals: Field<PrincipalPattern>,
    pub namespaces: Field<Pattern>,
    pub service_accounts: Field<Pattern>,
    pub trust_domains: Field<Pattern>,
    pub ip_blocks: Field<IpBlock>,
    pub remote_ip_blocks: Field<IpBlock>,
}

impl Source {
    pub fn matches(&self, cx: &Context) -> bool {
        let principal = cx.peer_principal.as_deref();
        let namespace = principal.and_then(namespace_of);
        let service_account = principal.and_then(service_account_of);
        let token = cx.identity.as_ref();
        self.ip_blocks.check(|b| b.contains(cx.peer))
            && self.remote_ip_blocks.check(|b| b.contains(cx.client))
            && self.principals.check(|p| principal.is_some_and(|v| p.matches(v)))
            && self.request_principals.check(|p| token.is_some_and(|t| p.matches(&t.issuer, &t.subject)))
            && self.namespaces.check(|p| namespace.is_some_and(|v| p.matches(v)))
            && self.service_accounts.check(|p| service_account.as_deref().is_some_and(|v| p.matches(v)))
            && self.trust_domains.check(|p| principal.and_then(trust_domain_of).is_some_and(|v| p.matches(v)))
    }

    /// True when only the peer address decides this source (it can be checked on accept).
    pub fn peer_address_only(&self) -> bool {
        !self.remote_ip_blocks.is_set()
            && !self.principals.is_set()
            && !self.request_principals.is_set()
            && !self.namespaces.is_set()
            && !self.service_accounts.is_set()
            && !self.trust_domains.is_set()
    }
}

/// The namespace of a SPIFFE principal `<trust-domain>/ns/<ns>/sa/<sa>`.
fn namespace_of(principal: &str) -> Option<&str> {
    let mut parts = principal.split('/');
    parts.by_ref().find(|p| *p == "ns")?;
    parts.next()
}

/// The trust domain of a SPIFFE principal.
fn trust_domain_of(principal: &str) -> Option<&str> {
    principal.split('/').next().filter(|t| !t.is_empty())
}

/// `<ns>/<sa>` of a SPIFFE principal.
fn service_account_of(principal: &str) -> Option<String> {
    let ns = namespace_of(principal)?;
    let (_, sa) = principal.split_once("/sa/")?;
    Some(format!("{ns}/{sa}"))
}

/// `to.operation`.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub hosts: Field<Pattern>,
    pub ports: Field<u16>,
    pub methods: Field<Pattern>,
    pub paths: Field<PathPattern>,
}

impl Operation {
    pub fn matches(&self, req: &RequestHeader, cx: &Context) -> bool {
        let host = authority(req).to_ascii_lowercase();
        let host_no_port = strip_port(&host);
        let path = req.uri.path();
        self.hosts.check(|p| p.matches(&host) || p.matches(host_no_port))
            && self.ports.check(|p| port_matches(*p, cx))
            && self.methods.check(|m| m.matches(req.method.as_str()))
            && self.paths.check(|p| p.matches(path))
    }
}

/// The request's authority: the URI's (HTTP/2 `:authority`) or the `Host` header.
fn authority(req: &RequestHeader) -> &str {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("")
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets), split as routing
/// splits it.
fn strip_port(host: &str) -> &str {
    conf::matcher::split_authority(host).0
}

/// Istio's `ports` and `destination.port` name the port the gateway listens on; Pylon also
/// accepts the Gateway server's port, which is what users write when no port mapping applies.
pub(crate) fn port_matches(port: u16, cx: &Context) -> bool {
    port == cx.port || cx.local.is_some_and(|l| l.port() == port)
}

/// What a `request.headers[...]` condition reads.
#[derive(Debug, Clone)]
pub(crate) enum HeaderKey {
    /// A header.
    Named(http::HeaderName),
    /// `:authority` (the URI's, else `Host`).
    Authority,
    /// `:method`.
    Method,
    /// `:path` (with the query).
    Path,
}

impl HeaderKey {
    /// The value, as Envoy matches it: the values of a repeated header joined with `,`; bytes
    /// that are not UTF-8 replaced rather than the value dropped.
    fn value(&self, req: &RequestHeader) -> Option<String> {
        match self {
            HeaderKey::Authority => Some(authority(req).to_string()).filter(|a| !a.is_empty()),
            HeaderKey::Method => Some(req.method.as_str().to_string()),
            HeaderKey::Path => Some(req.uri.path_and_query().map_or("/", |p| p.as_str()).to_string()),
            HeaderKey::Named(name) => {
                let values: Vec<String> = req
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                (!values.is_empty()).then(|| values.join(","))
            }
        }
    }
}

/// A `when` condition.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    /// `request.headers[name]` (a pseudo-header name reads the request line).
    Header(HeaderKey, Field<Pattern>),
    /// `source.ip`.
    SourceIp(Field<IpBlock>),
    /// `remote.ip`.
    RemoteIp(Field<IpBlock>),
    /// `destination.ip`.
    DestinationIp(Field<IpBlock>),
    /// `destination.port`.
    DestinationPort(Field<u16>),
    /// `source.principal`.
    SourcePrincipal(Field<Pattern>),
    /// `source.namespace`.
    SourceNamespace(Field<Pattern>),
    /// `source.serviceAccount` (`ns/sa`).
    SourceServiceAccount(Field<Pattern>),
    /// `source.trustDomain`.
    SourceTrustDomain(Field<Pattern>),
    /// `request.auth.principal`.
    AuthPrincipal(Field<PrincipalPattern>),
    /// `request.auth.audiences`.
    AuthAudiences(Field<Pattern>),
    /// `request.auth.presenter`.
    AuthPresenter(Field<Pattern>),
    /// `request.auth.claims[a][b]...`.
    AuthClaim(Vec<String>, Field<Pattern>),
    /// `connection.sni`.
    Sni(Field<Pattern>),
}

impl Condition {
    pub fn matches(&self, req: &RequestHeader, cx: &Context) -> bool {
        let one = |f: &Field<Pattern>, v: Option<&str>| f.check(|p| v.is_some_and(|v| p.matches(v)));
        let identity = cx.identity.as_ref();
        match self {
            Condition::Header(key, f) => {
                // Envoy's `*` on a header is `present_match`: an empty value is present too.
                let value = key.value(req);
                f.check(|p| value.as_deref().is_some_and(|v| matches!(p, Pattern::Present) || p.matches(v)))
            }
            Condition::SourceIp(f) => f.check(|b| b.contains(cx.peer)),
            Condition::RemoteIp(f) => f.check(|b| b.contains(cx.client)),
            Condition::DestinationIp(f) => f.check(|b| cx.local.is_some_and(|l| b.contains(l.ip()))),
            Condition::DestinationPort(f) => f.check(|p| port_matches(*p, cx)),
            Condition::SourcePrincipal(f) => one(f, cx.peer_principal.as_deref()),
            Condition::SourceNamespace(f) => one(f, cx.peer_principal.as_deref().and_then(namespace_of)),
            Condition::SourceServiceAccount(f) => {
                one(f, cx.peer_principal.as_deref().and_then(service_account_of).as_deref())
            }
            Condition::SourceTrustDomain(f) => one(f, cx.peer_principal.as_deref().and_then(trust_domain_of)),
            Condition::AuthPrincipal(f) => f.check(|p| identity.is_some_and(|t| p.matches(&t.issuer, &t.subject))),
            Condition::AuthPresenter(f) => one(f, identity.and_then(|i| i.presenter.as_deref())),
            Condition::AuthAudiences(f) => {
                f.check(|p| identity.is_some_and(|i| i.audiences.iter().any(|a| p.matches(a))))
            }
            Condition::AuthClaim(path, f) => {
                let values = identity.map(|i| i.claim_values(path)).unwrap_or_default();
                f.check(|p| values.iter().any(|v| p.matches(v)))
            }
            Condition::Sni(f) => one(f, cx.sni.as_deref()),
        }
    }

    /// True when only the peer address and the port decide this condition.
    pub fn connection_only(&self) -> bool {
        matches!(self, Condition::SourceIp(_) | Condition::DestinationPort(_))
    }
}

/// How a rule is evaluated on a TCP connection (Istio's network RBAC filter): fields only HTTP
/// has (`hosts`, `methods`, `paths`, `requestPrincipals`, `request.headers`, `request.auth.*`)
/// cannot be checked. Istio drops them from DENY and AUDIT rules (which then match more) and
/// drops whole ALLOW rules that use them (which then match nothing):
/// istio/istio `pilot/pkg/security/authz/model` ("is HTTP only").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpOnly {
    /// DENY and AUDIT: ignore the HTTP-only fields.
    Ignore,
    /// ALLOW: a rule with an HTTP-only field never matches.
    Fail,
}

impl Source {
    fn has_http_only(&self) -> bool {
        self.request_principals.is_set()
    }

    fn matches_l4(&self, cx: &Context) -> bool {
        let mut s = self.clone();
        s.request_principals = Field::new(None, None);
        s.matches(cx)
    }
}

impl Operation {
    fn has_http_only(&self) -> bool {
        self.hosts.is_set() || self.methods.is_set() || self.paths.is_set()
    }

    fn matches_l4(&self, cx: &Context) -> bool {
        self.ports.check(|p| port_matches(*p, cx))
    }
}

impl Condition {
    fn http_only(&self) -> bool {
        matches!(
            self,
            Condition::Header(..)
                | Condition::AuthPrincipal(_)
                | Condition::AuthAudiences(_)
                | Condition::AuthPresenter(_)
                | Condition::AuthClaim(..)
        )
    }
}

/// A rule. `None` lists match anything; a written but empty list cannot pass validation.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub from: Option<Vec<Source>>,
    pub to: Option<Vec<Operation>>,
    pub when: Vec<Condition>,
}

impl Rule {
    pub fn matches(&self, req: &RequestHeader, cx: &Context) -> bool {
        self.from.as_ref().is_none_or(|f| f.iter().any(|s| s.matches(cx)))
            && self.to.as_ref().is_none_or(|t| t.iter().any(|o| o.matches(req, cx)))
            && self.when.iter().all(|c| c.matches(req, cx))
    }

    /// The rule on a TCP connection, without a request (see [`HttpOnly`]).
    pub fn matches_l4(&self, cx: &Context, http_only: HttpOnly) -> bool {
        let uses_http = self.from.iter().flatten().any(Source::has_http_only)
            || self.to.iter().flatten().any(Operation::has_http_only)
            || self.when.iter().any(Condition::http_only);
        if uses_http && http_only == HttpOnly::Fail {
            return false;
        }
        let empty = RequestHeader::build("GET", b"/", None);
        let Ok(req) = empty else { return false };
        self.from.as_ref().is_none_or(|f| f.iter().any(|s| s.matches_l4(cx)))
            && self.to.as_ref().is_none_or(|t| t.iter().any(|o| o.matches_l4(cx)))
            && self.when.iter().filter(|c| !c.http_only()).all(|c| c.matches(&req, cx))
    }

    /// For DENY rules decided on accept: `Some(matches)` when the rule names peer addresses
    /// and nothing but them and ports decides it, `None` when the request is needed (a rule
    /// without addresses, such as `{}`, is left to the request: HTTP clients get a 403).
    pub fn on_connection(&self, cx: &Context) -> Option<bool> {
        let from_ok = self.from.as_ref().is_none_or(|f| f.iter().all(Source::peer_address_only));
        if !from_ok || self.to.is_some() || !self.when.iter().all(Condition::connection_only) {
            return None;
        }
        let names_addresses = self.from.as_ref().is_some_and(|f| f.iter().any(|s| s.ip_blocks.is_set()))
            || self.when.iter().any(|c| matches!(c, Condition::SourceIp(_)));
        if !names_addresses {
            return None;
        }
        let from = self.from.as_ref().is_none_or(|f| f.iter().any(|s| s.matches(cx)));
        let when = self.when.iter().all(|c| match c {
            Condition::SourceIp(f) => f.check(|b| b.contains(cx.peer)),
            Condition::DestinationPort(f) => f.check(|p| port_matches(*p, cx)),
            _ => false,
        });
        Some(from && when)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_must_have_digits_to_be_stripped() {
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(strip_port("a.com:"), "a.com:", "an empty port is not a port");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.com"), "a.com");
    }
}
