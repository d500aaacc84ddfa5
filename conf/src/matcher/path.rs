//! Path normalization before routing (Istio `pathNormalization: BASE`, Envoy `normalize_path`).
//!
//! RFC 3986 §5.2.4 dot-segment removal on the path (not the query). `%2E` counts as a dot, as in
//! Envoy's URL canonicalizer, so `/a/%2e%2e/b` cannot sneak past a route for `/b`. Slashes are not
//! merged and escaped slashes are kept, as with Istio's default.

use std::borrow::Cow;

fn is_dot(seg: &str) -> bool {
    seg == "." || seg.eq_ignore_ascii_case("%2e")
}

fn is_dot_dot(seg: &str) -> bool {
    matches!(seg.len(), 2 | 4 | 6) && {
        let lower = seg.to_ascii_lowercase();
        matches!(lower.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
    }
}

/// Normalizes the path part of `path_and_query`; `None` when it does not start with `/`
/// (the caller answers 400). The query string is kept verbatim.
pub fn normalize(path_and_query: &str) -> Option<Cow<'_, str>> {
    if !path_and_query.starts_with('/') {
        return None;
    }
    let split = path_and_query.find('?').unwrap_or(path_and_query.len());
    let (path, query) = path_and_query.split_at(split);
    let needs_work = path.split('/').any(|s| is_dot(s) || is_dot_dot(s));
    if !needs_work {
        return Some(Cow::Borrowed(path_and_query));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if is_dot(seg) {
            if i == last {
                out.push("");
            }
        } else if is_dot_dot(seg) {
            out.pop();
            if i == last {
                out.push("");
            }
        } else {
            out.push(seg);
        }
    }
    Some(Cow::Owned(format!("/{}{query}", out.join("/"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(n("/a/b/../c"), "/a/c");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/../a"), "/a");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/a/%2e%2E/b"), "/b");
        assert_eq!(n("/a/.%2e/b?x=/../y"), "/b?x=/../y");
    }

    #[test]
    fn other_paths_are_unchanged() {
        assert_eq!(n("/a//b"), "/a//b");
        assert_eq!(n("/a%2Fb"), "/a%2Fb");
        assert_eq!(n("/..a/b."), "/..a/b.");
        assert_eq!(n("/"), "/");
        assert!(normalize("*").is_none());
    }
}
