//! Why a route did not match, in words: the condition and what the request had instead.

use crate::matcher::{Miss, Request, StringMatcher};

/// `uri prefix "/api" ≠ "/v2/x"`, `header x-tenant absent`, `query v exact "2" ≠ "1"`, ...
pub fn miss(m: Miss<'_>, req: &Request<'_>) -> String {
    match m {
        Miss::Path(p) => {
            let seen = match p.matcher {
                StringMatcher::Prefix(_) => req.path,
                _ => req.path_only(),
            };
            let case = if p.ignore_case { " (ignoring case)" } else { "" };
            format!("uri {}{case} ≠ {seen:?}", p.matcher.describe())
        }
        Miss::Header(h) => {
            let what = match h.name.as_str() {
                ":method" => "method".to_string(),
                ":authority" => "authority".to_string(),
                ":scheme" => "scheme".to_string(),
                name => format!("header {name}"),
            };
            match (req.header(&h.name), h.invert) {
                (Some(v), true) => format!("without {what} {}: it is {v:?}", h.matcher.describe()),
                (None, true) => format!("without {what} {}: absent counts as \"\"", h.matcher.describe()),
                (None, false) => format!("{what} absent (wanted {})", h.matcher.describe()),
                (Some(v), false) => format!("{what} {} ≠ {v:?}", h.matcher.describe()),
            }
        }
        Miss::Query(q) => match req.query_param(&q.name) {
            None => format!("query {} absent (wanted {})", q.name, q.matcher.describe()),
            Some(v) => format!("query {} {} ≠ {v:?}", q.name, q.matcher.describe()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{HeaderMatcher, PathMatcher, QueryMatcher, RouteMatch};

    fn why(m: &RouteMatch, path: &str, headers: &Vec<(String, String)>) -> String {
        let req = Request::new("GET", "http", "a.example", path, headers);
        miss(m.first_miss(&req).expect("a miss"), &req)
    }

    #[test]
    fn each_kind_of_condition_says_what_the_request_had() {
        let none = Vec::new();
        let prefix = RouteMatch {
            path: PathMatcher { matcher: StringMatcher::Prefix("/api".into()), ignore_case: false },
            ..RouteMatch::any()
        };
        assert_eq!(why(&prefix, "/v2/x", &none), r#"uri prefix "/api" ≠ "/v2/x""#);
        let header = |name: &str, invert| RouteMatch {
            headers: vec![HeaderMatcher { name: name.into(), matcher: StringMatcher::Exact("a".into()), invert }],
            ..RouteMatch::any()
        };
        assert_eq!(why(&header("x-tenant", false), "/", &none), r#"header x-tenant absent (wanted exact "a")"#);
        let tenant_b = vec![("x-tenant".to_string(), "b".to_string())];
        assert_eq!(why(&header("x-tenant", false), "/", &tenant_b), r#"header x-tenant exact "a" ≠ "b""#);
        assert_eq!(why(&header(":method", false), "/", &none), r#"method exact "a" ≠ "GET""#);
        let tenant_a = vec![("x-tenant".to_string(), "a".to_string())];
        assert_eq!(why(&header("x-tenant", true), "/", &tenant_a), r#"without header x-tenant exact "a": it is "a""#);
        let query = RouteMatch {
            query: vec![QueryMatcher { name: "v".into(), matcher: StringMatcher::Exact("2".into()) }],
            ..RouteMatch::any()
        };
        assert_eq!(why(&query, "/?v=1", &none), r#"query v exact "2" ≠ "1""#);
        assert_eq!(why(&query, "/", &none), r#"query v absent (wanted exact "2")"#);
    }
}
