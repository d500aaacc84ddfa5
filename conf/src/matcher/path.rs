//! Path normalization before routing (Istio `pathNormalization: BASE`, Envoy `normalize_path`).
//!
//! As Envoy's URL canonicalizer (Chromium's `CanonicalizePath`, which `normalize_path` uses):
//! percent-encoded unreserved characters are decoded (`/%61dmin` is `/admin`, so it cannot sneak
//! past a rule for `/admin`), `\` is a `/`, then RFC 3986 §5.2.4 dot segments are removed from the
//! path (not the query). Slashes are not merged and escaped slashes (`%2F`, `%5C`) are kept, as
//! with Istio's default.

use std::borrow::Cow;

use crate::table::PathNormalization;

/// Normalizes `path_and_query` as MeshConfig `pathNormalization` says (Envoy's `normalize_path`,
/// `merge_slashes` and `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD` as Istio sets
/// them); `None` when the path does not start with `/`.
pub fn normalize_as(path_and_query: &str, mode: PathNormalization) -> Option<Cow<'_, str>> {
    if !path_and_query.starts_with('/') {
        return None;
    }
    match mode {
        PathNormalization::None => Some(Cow::Borrowed(path_and_query)),
        PathNormalization::Base => normalize(path_and_query),
        PathNormalization::MergeSlashes => Some(Cow::Owned(merge_slashes(&normalize(path_and_query)?))),
        PathNormalization::DecodeAndMergeSlashes => {
            let split = path_and_query.find('?').unwrap_or(path_and_query.len());
            let (path, query) = path_and_query.split_at(split);
            let decoded = decode_slashes(path) + query;
            Some(Cow::Owned(merge_slashes(&normalize(&decoded)?)))
        }
    }
}

/// `%2F`/`%2f` as `/` and `%5C`/`%5c` as `\` (which normalization reads as `/`).
fn decode_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).unwrap_or("");
        match code.to_ascii_lowercase().as_str() {
            "2f" => out.push('/'),
            "5c" => out.push('\\'),
            _ => {
                out.push('%');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

/// Runs of `/` in the path (not the query) as one.
fn merge_slashes(path_and_query: &str) -> String {
    let split = path_and_query.find('?').unwrap_or(path_and_query.len());
    let (path, query) = path_and_query.split_at(split);
    let mut out = String::with_capacity(path_and_query.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out + query
}

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
    // Most paths are already normal: no escape, no backslash, no segment that starts with a dot.
    // One look at each byte says so without splitting it (this runs for every request).
    let bytes = path.as_bytes();
    let before = std::iter::once(&b'/').chain(bytes);
    let needs_work = |(&b, &prev): (&u8, &u8)| matches!(b, b'%' | b'\\') || (b == b'.' && prev == b'/');
    let plain = !bytes.iter().zip(before).any(needs_work);
    if plain {
        return Some(Cow::Borrowed(path_and_query));
    }
    let canonical = decode_unreserved(path);
    let path: &str = &canonical;
    let needs_work = path.split('/').any(|s| is_dot(s) || is_dot_dot(s));
    if !needs_work {
        return Some(match canonical {
            Cow::Borrowed(_) => Cow::Borrowed(path_and_query),
            Cow::Owned(p) => Cow::Owned(format!("{p}{query}")),
        });
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

/// `%XX` of an unreserved character (RFC 3986 §2.3: ALPHA, DIGIT, `-`, `.`, `_`, `~`) decoded,
/// and `\` made `/`; every other escape kept as written.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let decoded_at = |i: usize| -> Option<u8> {
        let (h, l) = (hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?);
        let b = u8::try_from(h * 16 + l).ok()?;
        (b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')).then_some(b)
    };
    let changes = (0..bytes.len()).any(|i| bytes[i] == b'\\' || (bytes[i] == b'%' && decoded_at(i).is_some()));
    if !changes {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], decoded_at(i)) {
            (b'%', Some(b)) => {
                out.push(char::from(b));
                i += 3;
            }
            (b'\\', _) => {
                out.push('/');
                i += 1;
            }
            _ => {
                // A whole UTF-8 character (or byte run) up to the next interesting byte.
                let next = (i + 1..bytes.len()).find(|&j| bytes[j] == b'%' || bytes[j] == b'\\').unwrap_or(bytes.len());
                out.push_str(&path[i..next]);
                i = next;
            }
        }
    }
    Cow::Owned(out)
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
    fn unreserved_escapes_are_decoded_and_backslashes_are_slashes() {
        assert_eq!(n("/%61dmin/users"), "/admin/users");
        assert_eq!(n("/%41%2d%5f%7E"), "/A-_~");
        assert_eq!(n("/admin\\x"), "/admin/x");
        assert_eq!(n("/a/%2e%2e/admin"), "/admin");
        assert_eq!(n("/a%2Fb%5Cc%20d?q=%61"), "/a%2Fb%5Cc%20d?q=%61", "other escapes and the query are kept");
        assert_eq!(n("/caf%C3%A9/é"), "/caf%C3%A9/é");
    }

    #[test]
    fn other_paths_are_unchanged() {
        assert_eq!(n("/a//b"), "/a//b");
        assert_eq!(n("/a%2Fb"), "/a%2Fb");
        assert_eq!(n("/..a/b."), "/..a/b.");
        assert_eq!(n("/"), "/");
        assert!(normalize("*").is_none());
    }

    #[test]
    fn mesh_normalization_modes() {
        use crate::table::PathNormalization as N;
        let p = "/a//b/%2Fc/../d?x=//y";
        assert_eq!(normalize_as(p, N::None).as_deref(), Some(p));
        assert_eq!(normalize_as(p, N::Base).as_deref(), Some("/a//b/d?x=//y"));
        assert_eq!(normalize_as(p, N::MergeSlashes).as_deref(), Some("/a/b/d?x=//y"));
        // Decoded, normalized (`..` drops the empty segment), then merged, as Envoy orders them.
        assert_eq!(normalize_as("/a%2F%2Fb/%5C../c", N::DecodeAndMergeSlashes).as_deref(), Some("/a/b/c"));
    }
}
