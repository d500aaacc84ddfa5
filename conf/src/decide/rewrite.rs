//! Istio `HTTPRewrite` of the path sent upstream.

use crate::matcher::{RouteMatch, StringMatcher};
use crate::table::Rewrite;

/// The path and query sent upstream after `rw`, or `None` when it leaves the path alone.
/// `rewrite.uri` replaces the matched prefix for prefix matches, else the whole path (the query
/// is kept unless the new path has one); `uriRegexRewrite` replaces every match in the path.
pub fn path(path_and_query: &str, rw: &Rewrite, m: &RouteMatch) -> Option<String> {
    let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    let new_path = match (&rw.uri, &rw.uri_regex, &m.path.matcher) {
        (Some(uri), _, StringMatcher::Prefix(prefix)) => {
            let rest =
                if m.path.ignore_case || path.starts_with(prefix.as_str()) { path.get(prefix.len()..) } else { None };
            format!("{uri}{}", rest.unwrap_or(""))
        }
        (Some(uri), _, _) => uri.clone(),
        (None, Some((re, with)), _) => re.regex().replace_all(path, with.as_str()).into_owned(),
        (None, None, _) => return None,
    };
    Some(match query {
        Some(q) if !new_path.contains('?') => format!("{new_path}?{q}"),
        _ => new_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{PathMatcher, Re2};

    fn matching(m: StringMatcher) -> RouteMatch {
        RouteMatch { path: PathMatcher { matcher: m, ignore_case: false }, ..RouteMatch::any() }
    }

    fn uri(u: &str) -> Rewrite {
        Rewrite { uri: Some(u.into()), uri_regex: None, authority: None }
    }

    #[test]
    fn uri_replaces_the_matched_prefix_and_keeps_the_query() {
        let m = matching(StringMatcher::Prefix("/api/".into()));
        assert_eq!(path("/api/v1/x?a=1", &uri("/"), &m).as_deref(), Some("/v1/x?a=1"));
    }

    #[test]
    fn uri_replaces_the_whole_path_of_exact_and_regex_matches() {
        let m = matching(StringMatcher::Exact("/old".into()));
        assert_eq!(path("/old?q", &uri("/new"), &m).as_deref(), Some("/new?q"));
        assert_eq!(path("/old?q", &uri("/new?x=1"), &m).as_deref(), Some("/new?x=1"));
    }

    #[test]
    fn regex_rewrite_replaces_every_match() {
        let rw =
            Rewrite { uri: None, uri_regex: Some((Re2::search("/v[0-9]").unwrap(), "/v9".into())), authority: None };
        let m = matching(StringMatcher::Prefix("/".into()));
        assert_eq!(path("/v1/a/v2?k", &rw, &m).as_deref(), Some("/v9/a/v9?k"));
    }

    #[test]
    fn no_path_rewrite_leaves_the_path() {
        let rw = Rewrite { uri: None, uri_regex: None, authority: Some("h".into()) };
        assert_eq!(path("/a", &rw, &RouteMatch::any()), None);
    }
}
