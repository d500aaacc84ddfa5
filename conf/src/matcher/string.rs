//! Istio `StringMatch` at run time.

use serde::Serialize;

use super::Re2;

/// A compiled `StringMatch`, or a presence check (`{}` or `regex: "*"` in headers and query params).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StringMatcher {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The whole value matches this RE2 regex.
    Regex(Re2),
    /// The value is present (any value).
    Present,
}

impl StringMatcher {
    /// Matches `value`, ASCII case-insensitively for exact and prefix when `ignore_case`.
    pub fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            StringMatcher::Exact(s) if ignore_case => value.eq_ignore_ascii_case(s),
            StringMatcher::Exact(s) => value == s,
            StringMatcher::Prefix(p) if ignore_case => {
                value.len() >= p.len() && value.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            StringMatcher::Prefix(p) => value.starts_with(p.as_str()),
            StringMatcher::Regex(re) => re.is_match(value),
            StringMatcher::Present => true,
        }
    }

    /// A short human form: `exact /a`, `prefix /b`, `regex ^x`, `present`.
    pub fn describe(&self) -> String {
        match self {
            StringMatcher::Exact(s) => format!("exact {s:?}"),
            StringMatcher::Prefix(s) => format!("prefix {s:?}"),
            StringMatcher::Regex(r) => format!("regex {:?}", r.as_str()),
            StringMatcher::Present => "present".to_string(),
        }
    }
}
