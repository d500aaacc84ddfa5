//! Route matching: one compiled `HTTPMatchRequest` against one request (Istio → Envoy semantics).

use std::borrow::Cow;

use serde::Serialize;

use super::StringMatcher;

/// Read access to request headers; multiple values of one name are comma-joined, as Envoy matches.
pub trait RequestHeaders {
    /// The value of `name` (lower-case), comma-joined when repeated; `None` when absent.
    fn value(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl RequestHeaders for Vec<(String, String)> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let first = values.next()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                values.for_each(|v| {
                    joined.push(',');
                    joined.push_str(v);
                });
                Some(Cow::Owned(joined))
            }
        }
    }
}

/// What route matching sees of a request.
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:scheme` (`http` or `https`).
    pub scheme: &'a str,
    /// `:authority` / Host as received (port included).
    pub authority: &'a str,
    /// `:path` after normalization, with the query string.
    pub path: &'a str,
    /// The regular headers.
    pub headers: &'a dyn RequestHeaders,
    /// Where the path ends (its query string or fragment starts), found once: every exact and
    /// regex path condition of every route tried reads it.
    path_end: usize,
}

impl<'a> Request<'a> {
    /// The request as routing sees it; `path` after normalization, with the query string.
    pub fn new(
        method: &'a str,
        scheme: &'a str,
        authority: &'a str,
        path: &'a str,
        headers: &'a dyn RequestHeaders,
    ) -> Self {
        let path_end = path.bytes().position(|b| matches!(b, b'?' | b'#')).unwrap_or(path.len());
        Request { method, scheme, authority, path, headers, path_end }
    }

    /// The path without query string or fragment.
    pub fn path_only(&self) -> &str {
        self.path.get(..self.path_end).unwrap_or(self.path)
    }

    /// The raw query string (after `?`, before `#`), if any.
    pub fn query(&self) -> Option<&str> {
        let q = &self.path[self.path.find('?')? + 1..];
        Some(&q[..q.find('#').unwrap_or(q.len())])
    }

    /// The value a query condition on `name` sees: the first occurrence's, as sent (`?key`
    /// has the empty value); `None` when absent.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The value a header condition on `name` sees: pseudo-headers from the request line,
    /// others from the headers (repeated ones comma-joined).
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            ":method" => Some(Cow::Borrowed(self.method)),
            ":scheme" => Some(Cow::Borrowed(self.scheme)),
            ":authority" | "host" => Some(Cow::Borrowed(self.authority)),
            ":path" => Some(Cow::Borrowed(self.path)),
            _ => self.headers.value(name),
        }
    }
}

/// The path condition of a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathMatcher {
    /// Exact, prefix or regex (never `Present`).
    #[serde(flatten)]
    pub matcher: StringMatcher,
    /// `ignoreUriCase` (exact and prefix only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
}

impl PathMatcher {
    /// Istio's default when `uri` is absent: prefix `/`.
    pub fn any() -> Self {
        PathMatcher { matcher: StringMatcher::Prefix("/".into()), ignore_case: false }
    }

    /// Envoy: prefix matches the path as received (query included); exact and regex match the path
    /// without its query string.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        match &self.matcher {
            StringMatcher::Prefix(_) => self.matcher.matches(req.path, self.ignore_case),
            m => m.matches(req.path_only(), self.ignore_case),
        }
    }
}

/// A header condition (`headers`, `withoutHeaders`, and `method` / `authority` / `scheme`, which
/// Istio turns into header matchers on the pseudo-headers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderMatcher {
    /// Lower-case header name or pseudo-header (`:method`).
    pub name: String,
    /// The value condition.
    pub matcher: StringMatcher,
    /// `withoutHeaders`: the condition must not hold; a missing header counts as the empty string.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

impl HeaderMatcher {
    /// Envoy header matching with Istio's `treat_missing_header_as_empty` for `withoutHeaders`.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        let hit = match (req.header(&self.name), &self.matcher) {
            (None, StringMatcher::Present) => false,
            (None, m) if self.invert => m.matches("", false),
            (None, _) => false,
            (Some(v), m) => m.matches(&v, false),
        };
        hit != self.invert
    }
}

/// A query parameter condition on the first occurrence of the parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryMatcher {
    /// Parameter name.
    pub name: String,
    /// Value condition (`Present` for `{}` or `regex: "*"`).
    pub matcher: StringMatcher,
}

impl QueryMatcher {
    /// Envoy: only the first value of the parameter counts; `?key` has the empty value. Names and
    /// values are compared as sent, percent-encoding included (Envoy's route matching parses the
    /// query with `QueryParamsMulti::parseQueryString`, which does not decode: `source/common/router/config_impl.cc`).
    pub fn matches(&self, req: &Request<'_>) -> bool {
        req.query_param(&self.name).is_some_and(|v| self.matcher.matches(v, false))
    }
}

/// A condition of a [`RouteMatch`] that a request does not meet.
#[derive(Debug, Clone, Copy)]
pub enum Miss<'m> {
    /// The path condition.
    Path(&'m PathMatcher),
    /// A header condition (`headers`, `withoutHeaders`, `method`, `authority`, `scheme`).
    Header(&'m HeaderMatcher),
    /// A query parameter condition.
    Query(&'m QueryMatcher),
}

/// One compiled `HTTPMatchRequest`: every condition must hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteMatch {
    /// The path condition.
    pub path: PathMatcher,
    /// Header conditions, including `:method`, `:authority` and `:scheme`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatcher>,
    /// Query parameter conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<QueryMatcher>,
}

impl RouteMatch {
    /// Matches everything (a rule without `match`).
    pub fn any() -> Self {
        RouteMatch { path: PathMatcher::any(), headers: Vec::new(), query: Vec::new() }
    }

    /// True when every condition holds for `req`.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.first_miss(req).is_none()
    }

    /// The first condition that does not hold for `req`, in the order they are checked: the
    /// path, the headers, the query parameters. `None` when the route matches. (`matches` is
    /// this, so `pylon explain` reports the very check the data plane made.)
    pub fn first_miss(&self, req: &Request<'_>) -> Option<Miss<'_>> {
        if !self.path.matches(req) {
            return Some(Miss::Path(&self.path));
        }
        if let Some(h) = self.headers.iter().find(|h| !h.matches(req)) {
            return Some(Miss::Header(h));
        }
        self.query.iter().find(|q| !q.matches(req)).map(Miss::Query)
    }

    /// Istio `IsCatchAllRoute`: prefix `/` (or regex `.*`) with no header or query condition.
    pub fn is_catch_all(&self) -> bool {
        let path_all = match &self.path.matcher {
            StringMatcher::Prefix(p) => p == "/",
            StringMatcher::Regex(r) => r.as_str() == ".*",
            _ => false,
        };
        path_all && self.headers.is_empty() && self.query.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::Re2;

    fn req<'a>(path: &'a str, headers: &'a Vec<(String, String)>) -> Request<'a> {
        Request::new("GET", "http", "example.com:8080", path, headers)
    }

    static NO: Vec<(String, String)> = Vec::new();

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn prefix_match_is_a_string_prefix() {
        let m = PathMatcher { matcher: StringMatcher::Prefix("/policy".into()), ignore_case: false };
        assert!(m.matches(&req("/policy-author", &NO)));
        assert!(m.matches(&req("/policy?x=1", &NO)));
        assert!(!m.matches(&req("/Policy", &NO)));
    }

    #[test]
    fn exact_and_regex_ignore_the_query_string() {
        let exact = PathMatcher { matcher: StringMatcher::Exact("/a".into()), ignore_case: false };
        assert!(exact.matches(&req("/a?b=c", &NO)));
        assert!(!exact.matches(&req("/a/b", &NO)));
        let re = PathMatcher { matcher: StringMatcher::Regex(Re2::full("/a/[0-9]+").unwrap()), ignore_case: false };
        assert!(re.matches(&req("/a/12?x", &NO)));
        assert!(!re.matches(&req("/a/12/x", &NO)));
    }

    #[test]
    fn ignore_uri_case_applies_to_exact_and_prefix() {
        let m = PathMatcher { matcher: StringMatcher::Prefix("/API".into()), ignore_case: true };
        assert!(m.matches(&req("/api/v1", &NO)));
        let m = PathMatcher { matcher: StringMatcher::Exact("/Login".into()), ignore_case: true };
        assert!(m.matches(&req("/LOGIN", &NO)));
    }

    #[test]
    fn repeated_headers_match_comma_joined() {
        let headers = h(&[("x-a", "1"), ("x-a", "2")]);
        let m = HeaderMatcher { name: "x-a".into(), matcher: StringMatcher::Exact("1,2".into()), invert: false };
        assert!(m.matches(&req("/", &headers)));
    }

    #[test]
    fn without_headers_treats_missing_as_empty() {
        let none = h(&[]);
        let jason = h(&[("end-user", "jason")]);
        let exact =
            HeaderMatcher { name: "end-user".into(), matcher: StringMatcher::Exact("jason".into()), invert: true };
        assert!(exact.matches(&req("/", &none)));
        assert!(!exact.matches(&req("/", &jason)));
        let any = HeaderMatcher {
            name: "end-user".into(),
            matcher: StringMatcher::Regex(Re2::full(".*").unwrap()),
            invert: true,
        };
        assert!(!any.matches(&req("/", &none)));
        let present = HeaderMatcher { name: "end-user".into(), matcher: StringMatcher::Present, invert: true };
        assert!(present.matches(&req("/", &none)));
        assert!(!present.matches(&req("/", &jason)));
    }

    #[test]
    fn missing_header_does_not_match_a_header_condition() {
        let m =
            HeaderMatcher { name: "x".into(), matcher: StringMatcher::Regex(Re2::full(".*").unwrap()), invert: false };
        assert!(!m.matches(&req("/", &NO)));
    }

    #[test]
    fn pseudo_headers_are_matched() {
        let m = HeaderMatcher {
            name: ":authority".into(),
            matcher: StringMatcher::Exact("example.com:8080".into()),
            invert: false,
        };
        assert!(m.matches(&req("/", &NO)));
        let m = HeaderMatcher { name: ":method".into(), matcher: StringMatcher::Exact("GET".into()), invert: false };
        assert!(m.matches(&req("/", &NO)));
    }

    #[test]
    fn query_params_use_the_first_value() {
        let m = QueryMatcher { name: "k".into(), matcher: StringMatcher::Exact("1".into()) };
        assert!(m.matches(&req("/?k=1&k=2", &NO)));
        assert!(!m.matches(&req("/?k=2&k=1", &NO)));
        let empty = QueryMatcher { name: "k".into(), matcher: StringMatcher::Exact(String::new()) };
        assert!(empty.matches(&req("/?k", &NO)));
        assert!(empty.matches(&req("/?k=", &NO)));
        assert!(!empty.matches(&req("/", &NO)));
        let re = QueryMatcher { name: "id".into(), matcher: StringMatcher::Regex(Re2::full(r"\d+$").unwrap()) };
        assert!(re.matches(&req("/?id=123", &NO)));
        assert!(!re.matches(&req("/?id=a123", &NO)));
        let raw = QueryMatcher { name: "q".into(), matcher: StringMatcher::Exact("a%2Fb".into()) };
        assert!(raw.matches(&req("/?q=a%2Fb", &NO)), "matched as sent");
        let decoded = QueryMatcher { name: "q".into(), matcher: StringMatcher::Exact("true".into()) };
        assert!(!decoded.matches(&req("/?q=%74rue", &NO)), "never decoded");
    }

    #[test]
    fn catch_all_is_prefix_slash_without_conditions() {
        assert!(RouteMatch::any().is_catch_all());
        let mut m = RouteMatch::any();
        m.headers.push(HeaderMatcher {
            name: ":method".into(),
            matcher: StringMatcher::Exact("GET".into()),
            invert: false,
        });
        assert!(!m.is_catch_all());
        let empty_prefix = RouteMatch {
            path: PathMatcher { matcher: StringMatcher::Prefix(String::new()), ignore_case: false },
            ..RouteMatch::any()
        };
        assert!(!empty_prefix.is_catch_all());
    }
}
