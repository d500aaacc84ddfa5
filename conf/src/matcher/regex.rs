//! RE2-style regular expressions matched against the whole value, as Envoy's `safe_regex` does.
//!
//! The `regex` crate shares RE2's syntax and linear-time guarantee. One difference matters for
//! security: its `\d`, `\w` and `\s` are Unicode-aware while RE2's are ASCII. Patterns are rewritten
//! to the ASCII classes before compiling, so `^\w+$` accepts what Istio accepts and no more.

use std::fmt;

use regex_syntax::ast::{self, Ast, ClassAscii, ClassAsciiKind, ClassPerl, ClassPerlKind, ClassSet, ClassSetItem};
use serde::Serialize;

/// Istio's limit on a regex in a VirtualService (`regex is too large, max length allowed is 1024`).
pub const MAX_REGEX_LEN: usize = 1024;

/// Compiled size limit, so a small pattern cannot build a huge automaton.
const COMPILED_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// A compiled, fully anchored RE2-style regex; displays as the pattern the user wrote. Clones
/// share one compiled regex (and its match-cache pool): routes of many VirtualServices repeat the
/// same patterns.
#[derive(Clone)]
pub struct Re2(std::sync::Arc<Compiled>);

struct Compiled {
    pattern: String,
    regex: ::regex::Regex,
}

impl Re2 {
    /// Compiles `pattern` to match whole values only. The error is the parser's message.
    pub fn full(pattern: &str) -> Result<Re2, String> {
        let ascii = ascii_classes(pattern)?;
        let regex = ::regex::RegexBuilder::new(&format!("^(?:{ascii})$"))
            .size_limit(COMPILED_SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Re2(std::sync::Arc::new(Compiled { pattern: pattern.to_string(), regex })))
    }

    /// Compiles `pattern` for search-and-replace (`uriRegexRewrite`): not anchored.
    pub fn search(pattern: &str) -> Result<Re2, String> {
        let ascii = ascii_classes(pattern)?;
        let regex =
            ::regex::RegexBuilder::new(&ascii).size_limit(COMPILED_SIZE_LIMIT).build().map_err(|e| e.to_string())?;
        Ok(Re2(std::sync::Arc::new(Compiled { pattern: pattern.to_string(), regex })))
    }

    /// True when the whole of `value` matches (for patterns from [`Re2::full`]).
    pub fn is_match(&self, value: &str) -> bool {
        self.0.regex.is_match(value)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0.pattern
    }

    /// The compiled regex (for replacement).
    pub fn regex(&self) -> &::regex::Regex {
        &self.0.regex
    }
}

impl fmt::Debug for Re2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Re2({:?})", self.0.pattern)
    }
}

impl PartialEq for Re2 {
    fn eq(&self, other: &Self) -> bool {
        self.0.pattern == other.0.pattern
    }
}

impl Serialize for Re2 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.pattern)
    }
}

/// Rewrites Perl classes (`\d`, `\w`, `\s` and their negations) to their ASCII POSIX forms.
fn ascii_classes(pattern: &str) -> Result<String, String> {
    let mut tree = ast::parse::Parser::new().parse(pattern).map_err(|e| e.to_string())?;
    rewrite(&mut tree);
    let mut out = String::new();
    ast::print::Printer::new().print(&tree, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn ascii_of(perl: &ClassPerl) -> ClassAscii {
    let kind = match perl.kind {
        ClassPerlKind::Digit => ClassAsciiKind::Digit,
        ClassPerlKind::Space => ClassAsciiKind::Space,
        ClassPerlKind::Word => ClassAsciiKind::Word,
    };
    ClassAscii { span: perl.span, kind, negated: perl.negated }
}

fn rewrite(tree: &mut Ast) {
    match tree {
        Ast::ClassPerl(perl) => {
            let item = ClassSetItem::Ascii(ascii_of(perl));
            *tree = Ast::class_bracketed(ast::ClassBracketed {
                span: perl.span,
                negated: false,
                kind: ClassSet::Item(item),
            });
        }
        Ast::ClassBracketed(class) => rewrite_set(&mut class.kind),
        Ast::Repetition(rep) => rewrite(&mut rep.ast),
        Ast::Group(group) => rewrite(&mut group.ast),
        Ast::Alternation(alt) => alt.asts.iter_mut().for_each(rewrite),
        Ast::Concat(cat) => cat.asts.iter_mut().for_each(rewrite),
        _ => {}
    }
}

fn rewrite_set(set: &mut ClassSet) {
    match set {
        ClassSet::Item(item) => rewrite_item(item),
        ClassSet::BinaryOp(op) => {
            rewrite_set(&mut op.lhs);
            rewrite_set(&mut op.rhs);
        }
    }
}

fn rewrite_item(item: &mut ClassSetItem) {
    match item {
        ClassSetItem::Perl(perl) => *item = ClassSetItem::Ascii(ascii_of(perl)),
        ClassSetItem::Bracketed(class) => rewrite_set(&mut class.kind),
        ClassSetItem::Union(union) => union.items.iter_mut().for_each(rewrite_item),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_matches_the_whole_value_only() {
        let re = Re2::full("/foo").unwrap();
        assert!(re.is_match("/foo"));
        assert!(!re.is_match("/foo/bar"));
        assert!(!re.is_match("x/foo"));
        let re = Re2::full(r"\d+$").unwrap();
        assert!(re.is_match("123"));
        assert!(!re.is_match("a123"));
        let re = Re2::full("a|b").unwrap();
        assert!(re.is_match("a") && re.is_match("b") && !re.is_match("ab"));
    }

    #[test]
    fn perl_classes_are_ascii_like_re2() {
        assert!(!Re2::full(r"\d").unwrap().is_match("٣"));
        assert!(Re2::full(r"\d").unwrap().is_match("3"));
        assert!(!Re2::full(r"\w+").unwrap().is_match("é"));
        assert!(Re2::full(r"[\w-]+").unwrap().is_match("a-b_c"));
        assert!(!Re2::full(r"[\w-]+").unwrap().is_match("é"));
        assert!(Re2::full(r"\D").unwrap().is_match("x"));
        assert!(Re2::full(r".").unwrap().is_match("é"));
    }

    #[test]
    fn case_insensitive_flag_works() {
        assert!(Re2::full("(?i)/ABC").unwrap().is_match("/abc"));
    }

    #[test]
    fn invalid_patterns_report_the_parser_error() {
        assert!(Re2::full("(").is_err());
        assert!(Re2::full("a{2,1}").is_err());
        assert!(Re2::full(r"(?<=a)b").is_err());
    }
}
