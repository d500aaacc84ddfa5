//! Block-style YAML, the form `kubectl`, Helm and most generators write, read straight from its
//! text: a serde `Deserializer` for the subset of YAML that libyaml reads the same way, which gives
//! up ([`GiveUp`]) on anything else so the caller can hand the document to libyaml.
//!
//! libyaml's scanner and parser, with serde_yaml's event list, were 7.0 of the 11.7 billion
//! instructions of loading a 100,000-route table; this reads the same documents in a fraction of
//! that. The subset, line by line (no tab, carriage return, control character or byte-order mark
//! anywhere):
//!
//! - a mapping entry `key: value` or `key:` with its value on the following, deeper lines, the key
//!   plain (`[A-Za-z0-9_][A-Za-z0-9_./-]*`) or quoted;
//! - a sequence item `- value`, `- key: value` (a mapping opened on the item's line) or `-`;
//! - under a key, a sequence at the key's own indentation, as `kubectl` writes it;
//! - a value on the key's line: a plain scalar on one line (not starting with an indicator, holding
//!   no `: `), a single- or double-quoted scalar on one line (double quotes with JSON's escapes),
//!   or a flow collection on one line (`{name: a}`, `["*"]`: [`super::flow`]);
//! - comments after a space, and lines holding only a comment.
//!
//! Everything else (block scalars `|` `>`, anchors, aliases, tags, directives, multi-line scalars
//! and flow collections, a key over several lines) gives up, and so does any line whose indentation
//! fits no open collection: the caller's libyaml then reports the error exactly. A plain scalar is
//! resolved to null, a boolean, an integer, a float or a string by serde_yaml 0.9's own rules
//! (`de::visit_untagged_scalar`, ported below), so that a value decodes the same either way.

use std::borrow::Cow;
use std::fmt;
use std::num::ParseIntError;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The document is outside the subset (or not valid YAML): read it with libyaml.
#[derive(Debug)]
pub(super) struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not block-style YAML of the subset read without libyaml")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    fn custom<T: fmt::Display>(_: T) -> Self {
        GiveUp
    }
}

type Result<T> = std::result::Result<T, GiveUp>;

/// Block collections nested deeper than this give up: with as many flow collections inside them
/// ([`super::flow`]), still under serde_yaml's own limit of 128.
const DEPTH: usize = 60;

/// libyaml refuses a key whose `:` comes more than 1024 characters after its start: with a margin.
pub(super) const KEY_LENGTH: usize = 1000;

/// Every `deserialize_*` method but `any` and `option`, sent to `deserialize_any`: a YAML value
/// says what it is.
macro_rules! forward_to_any {
    () => {
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
            unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
        }
    };
}
pub(super) use forward_to_any;

/// One YAML document being read.
pub(super) struct Block<'t> {
    text: &'t str,
    /// Where the current line starts.
    pos: usize,
    /// The current line, `None` at the end of the text.
    current: Option<Line>,
    /// Open collections.
    depth: usize,
    /// The depth of the collection that last read to its end: a visitor that stops early (serde's
    /// tuples and arrays read their length and stop) would leave the rest unchecked, so it gives up.
    ended: usize,
}

impl<'t> Block<'t> {
    /// `None` if `text` has a character the subset leaves to libyaml.
    pub(super) fn new(text: &'t str) -> Option<Self> {
        printable_without_tabs(text).then(|| Block {
            text,
            pos: 0,
            current: line_at(text, 0),
            depth: 0,
            ended: usize::MAX,
        })
    }

    /// The document's root node.
    pub(super) fn document(&mut self) -> Node<'_, 't> {
        Node { block: self, at: At::Below { parent: -1, same: false } }
    }

    /// Checks that nothing but blank lines and comments follow what was read.
    pub(super) fn end(&mut self) -> Result<()> {
        self.skip_blank();
        match self.line() {
            None => Ok(()),
            Some(_) => Err(GiveUp),
        }
    }

    fn line(&self) -> Option<Line> {
        self.current
    }

    /// Makes the line starting at `pos` the current one.
    fn go(&mut self, pos: usize) {
        self.pos = pos;
        self.current = line_at(self.text, pos);
    }

    /// Moves past lines that are blank or hold only a comment.
    fn skip_blank(&mut self) {
        while let Some(line) = self.line() {
            if line.start < line.end && self.text.as_bytes()[line.start] != b'#' {
                return;
            }
            self.go(line.next);
        }
    }

    fn next_line(&mut self) {
        if let Some(line) = self.line() {
            self.go(line.next);
        }
    }

    fn open(&mut self) -> Result<usize> {
        self.depth += 1;
        self.ended = usize::MAX;
        if self.depth > DEPTH {
            return Err(GiveUp);
        }
        Ok(self.depth)
    }

    fn close(&mut self, depth: usize) -> Result<()> {
        self.depth -= 1;
        (self.ended == depth).then_some(()).ok_or(GiveUp)
    }

    /// The mapping whose keys are at column `indent`, its first entry (key, and where its value
    /// starts) on the current line.
    fn mapping<'de, V: Visitor<'de>>(
        &mut self,
        indent: usize,
        first: (Scalar<'t>, usize),
        visitor: V,
    ) -> Result<V::Value>
    where
        't: 'de,
    {
        let depth = self.open()?;
        let value = visitor.visit_map(Mapping { block: self, indent, first: Some(first), value: None, depth })?;
        self.close(depth)?;
        Ok(value)
    }

    /// The sequence whose `-` are at column `indent`.
    fn sequence<'de, V: Visitor<'de>>(&mut self, indent: usize, visitor: V) -> Result<V::Value>
    where
        't: 'de,
    {
        let depth = self.open()?;
        let value = visitor.visit_seq(Sequence { block: self, indent, depth })?;
        self.close(depth)?;
        Ok(value)
    }

    /// The scalar starting at `from` on the current line, which it ends; the line is consumed.
    fn scalar(&mut self, from: usize) -> Result<Scalar<'t>> {
        let line = self.line().ok_or(GiveUp)?;
        let scalar = scalar(self.text, from, line.end)?;
        self.go(line.next);
        Ok(scalar)
    }
}

/// The line starting at `pos`, `None` at the end of the text.
fn line_at(text: &str, pos: usize) -> Option<Line> {
    let rest = text.get(pos..).filter(|rest| !rest.is_empty())?;
    let end = rest.find('\n').map_or(text.len(), |n| pos + n);
    let indent = rest.bytes().take_while(|b| *b == b' ').count();
    Some(Line { indent, start: (pos + indent).min(end), end, next: (end + 1).min(text.len()) })
}

/// A line: its indentation, where its content starts and ends (the `\n` excluded), and where the
/// next line starts.
#[derive(Clone, Copy)]
struct Line {
    indent: usize,
    start: usize,
    end: usize,
    next: usize,
}

/// No tab, carriage return or other control character (a newline aside), and none of the
/// characters libyaml refuses or takes for a line break (U+0080–U+009F, U+2028, U+2029, a
/// byte-order mark, U+FFFE, U+FFFF).
fn printable_without_tabs(text: &str) -> bool {
    // Branch-free over each 64 bytes, so that it vectorises: this reads every byte of the file.
    let ascii = text
        .as_bytes()
        .chunks(64)
        .all(|chunk| chunk.iter().fold(true, |ok, b| ok & ((0x20..0x7f).contains(b) | (*b == b'\n'))));
    if ascii {
        return true;
    }
    text.chars().all(|c| match c {
        '\n' => true,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => false,
        '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => false,
        _ => true,
    })
}

/// `- ` or a lone `-`: a sequence item.
fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// The rest of a line after a value: nothing, or a comment after a space.
pub(super) fn only_comment(rest: &str) -> bool {
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

/// A value written on one line: a scalar (its text and how it was written) or a flow collection.
#[derive(Debug, PartialEq)]
pub(super) enum Scalar<'t> {
    Plain(&'t str),
    Quoted(Cow<'t, str>),
    /// `[...]` or `{...}`: the rest of the line from its opening bracket ([`super::flow`]).
    Flow(&'t str),
}

/// The scalar at `from`, which runs to `end` (the end of its line) but for a trailing comment.
fn scalar(text: &str, from: usize, end: usize) -> Result<Scalar<'_>> {
    let rest = &text[from..end];
    let first = rest.as_bytes().first().copied().ok_or(GiveUp)?;
    match first {
        b'"' | b'\'' => {
            let (value, after) = quoted(text, from, end)?;
            match only_comment(&text[after..end]) {
                true => Ok(Scalar::Quoted(value)),
                false => Err(GiveUp),
            }
        }
        b'[' | b'{' => Ok(Scalar::Flow(rest)),
        // Indicators: a plain scalar cannot start with them (`-`, `?`, `:` only before a space,
        // but a `- ` is a sequence and the rest is rare enough for libyaml).
        b']' | b'}' | b',' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b':' => Err(GiveUp),
        b'-' if rest.len() == 1 || rest.as_bytes()[1] == b' ' => Err(GiveUp),
        _ => {
            // Up to a comment; `a: b` on a value's line, or a `:` ending it, is a mapping where
            // none can start.
            let bytes = rest.as_bytes();
            let mut len = bytes.len();
            for (i, b) in bytes.iter().enumerate() {
                match (b, bytes.get(i + 1)) {
                    (b' ', Some(b'#')) => {
                        len = i;
                        break;
                    }
                    (b':', Some(b' ')) => return Err(GiveUp),
                    _ => {}
                }
            }
            let body = rest[..len].trim_end_matches(' ');
            match body.ends_with(':') {
                true => Err(GiveUp),
                false => Ok(Scalar::Plain(body)),
            }
        }
    }
}

/// The quoted scalar at `from` (its opening quote) and where it ends, within the line.
pub(super) fn quoted(text: &str, from: usize, end: usize) -> Result<(Cow<'_, str>, usize)> {
    let bytes = &text.as_bytes()[..end];
    let quote = bytes[from];
    let start = from + 1;
    let mut owned: Option<String> = None;
    let mut i = start;
    let mut copied = start;
    loop {
        let b = *bytes.get(i).ok_or(GiveUp)?;
        if b == quote {
            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                // `''` is one quote.
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&text[copied..=i]);
                i += 2;
                copied = i;
                continue;
            }
            let value = match owned {
                None => Cow::Borrowed(&text[start..i]),
                Some(mut s) => {
                    s.push_str(&text[copied..i]);
                    Cow::Owned(s)
                }
            };
            return Ok((value, i + 1));
        }
        if b == b'\\' && quote == b'"' {
            let s = owned.get_or_insert_with(String::new);
            s.push_str(&text[copied..i]);
            let (c, len) = escape(&bytes[i + 1..])?;
            s.push(c);
            i += 1 + len;
            copied = i;
            continue;
        }
        i += 1;
    }
}

/// The character a double-quoted escape (after its `\`) stands for, and the escape's length.
/// JSON's escapes, which YAML shares; the others give up.
fn escape(after: &[u8]) -> Result<(char, usize)> {
    let c = match after.first().ok_or(GiveUp)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'n' => '\n',
        b't' => '\t',
        b'r' => '\r',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'0' => '\0',
        b'u' => {
            let hex = after.get(1..5).filter(|h| h.iter().all(u8::is_ascii_hexdigit)).ok_or(GiveUp)?;
            let hex = std::str::from_utf8(hex).map_err(|_| GiveUp)?;
            let code = u32::from_str_radix(hex, 16).map_err(|_| GiveUp)?;
            // A surrogate, which libyaml refuses, is no `char` either.
            return Ok((char::from_u32(code).ok_or(GiveUp)?, 5));
        }
        _ => return Err(GiveUp),
    };
    Ok((c, 1))
}

/// If the content at `from` (to `end`) is a mapping entry: its key and where its value starts
/// (after the `:`). Gives up on a key outside the subset.
fn entry(text: &str, from: usize, end: usize) -> Result<Option<(Scalar<'_>, usize)>> {
    let bytes = text.as_bytes();
    let (key, colon) = match bytes[from] {
        // A flow collection is a value (as a key it is outside the subset).
        b'[' | b'{' => return Ok(None),
        b'"' | b'\'' => {
            let (key, after) = quoted(text, from, end)?;
            let colon = after + text[after..end].len() - text[after..end].trim_start_matches(' ').len();
            if bytes.get(colon) != Some(&b':') {
                return Ok(None);
            }
            (Scalar::Quoted(key), colon)
        }
        _ => {
            let line = &bytes[from..end];
            let mut colon = None;
            for (i, b) in line.iter().enumerate() {
                let next = line.get(i + 1);
                match b {
                    b':' if matches!(next, None | Some(b' ')) => {
                        colon = Some(i);
                        break;
                    }
                    // A comment starts before any `: `.
                    b' ' if next == Some(&b'#') => break,
                    _ => {}
                }
            }
            let Some(colon) = colon else { return Ok(None) };
            let key = text[from..from + colon].trim_end_matches(' ');
            if !plain_key(key) {
                return Err(GiveUp);
            }
            (Scalar::Plain(key), from + colon)
        }
    };
    if colon - from > KEY_LENGTH {
        return Err(GiveUp);
    }
    // After the `:`, a space or the end of the line.
    let after = colon + 1;
    Ok((after == end || bytes.get(after) == Some(&b' ')).then_some((key, after)))
}

/// `[A-Za-z0-9_][A-Za-z0-9_./-]*`.
pub(super) fn plain_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
}

/// Where a node is.
#[derive(Clone, Copy)]
enum At {
    /// On the current line from `from` on; `item`: right after a sequence's `- `, where a mapping
    /// may open.
    Inline { from: usize, item: bool },
    /// On the lines after the current one, indented deeper than `parent` (or, if `same`, a
    /// sequence at `parent`'s indentation); null if there is none.
    Below { parent: isize, same: bool },
}

/// One node of the document: a mapping, a sequence or a scalar.
pub(super) struct Node<'b, 't> {
    block: &'b mut Block<'t>,
    at: At,
}

impl<'t> Node<'_, 't> {
    /// What the node is, before reading it: `None` for a null (an empty value, or a plain `null`,
    /// `~`...), which is consumed.
    fn null(&mut self) -> Result<bool> {
        match self.at {
            At::Inline { from, item } => {
                let line = self.block.line().ok_or(GiveUp)?;
                if item && entry(self.block.text, from, line.end)?.is_some() {
                    return Ok(false);
                }
                match scalar(self.block.text, from, line.end)? {
                    Scalar::Plain(s) if is_null(s) => {
                        self.block.go(line.next);
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
            At::Below { .. } => Ok(self.below()?.is_none()),
        }
    }

    /// The line a node below starts on, if there is one.
    fn below(&mut self) -> Result<Option<Line>> {
        let At::Below { parent, same } = self.at else { return Err(GiveUp) };
        self.block.skip_blank();
        let Some(line) = self.block.line() else { return Ok(None) };
        let content = &self.block.text[line.start..line.end];
        let indent = line.indent as isize;
        let nested = indent > parent || (same && indent == parent && is_item(content));
        Ok(nested.then_some(line))
    }
}

impl<'de, 't: 'de> Deserializer<'de> for Node<'_, 't> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.at {
            At::Inline { from, item } => {
                let line = self.block.line().ok_or(GiveUp)?;
                let content = &self.block.text[from..line.end];
                if is_item(content) {
                    // `- - a`, or a sequence after a key on its line (an error).
                    return Err(GiveUp);
                }
                if item {
                    if let Some(first) = entry(self.block.text, from, line.end)? {
                        let column = from - self.block.pos;
                        return self.block.mapping(column, first, visitor);
                    }
                }
                self.block.scalar(from)?.deserialize_any(visitor)
            }
            At::Below { .. } => {
                let Some(line) = self.below()? else { return visitor.visit_unit() };
                let content = &self.block.text[line.start..line.end];
                if is_item(content) {
                    self.block.sequence(line.indent, visitor)
                } else if let Some(first) = entry(self.block.text, line.start, line.end)? {
                    self.block.mapping(line.indent, first, visitor)
                } else {
                    // A scalar on a line of its own (perhaps over several lines).
                    Err(GiveUp)
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.null()? {
            true => visitor.visit_none(),
            false => visitor.visit_some(self),
        }
    }

    forward_to_any!();
}

/// A block mapping being read.
struct Mapping<'b, 't> {
    block: &'b mut Block<'t>,
    /// The keys' column.
    indent: usize,
    /// The first entry, read to find the mapping.
    first: Option<(Scalar<'t>, usize)>,
    /// Where the value of the key just read is.
    value: Option<At>,
    depth: usize,
}

impl<'de, 't: 'de> MapAccess<'de> for Mapping<'_, 't> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let (key, value) = match self.first.take() {
            Some(first) => first,
            None => {
                self.block.skip_blank();
                let Some(line) = self.block.line() else {
                    self.block.ended = self.depth;
                    return Ok(None);
                };
                let content = &self.block.text[line.start..line.end];
                if line.indent < self.indent {
                    self.block.ended = self.depth;
                    return Ok(None);
                }
                if line.indent > self.indent || is_item(content) {
                    return Err(GiveUp);
                }
                entry(self.block.text, line.start, line.end)?.ok_or(GiveUp)?
            }
        };
        let line = self.block.line().ok_or(GiveUp)?;
        let rest = &self.block.text[value..line.end];
        self.value = Some(if only_comment(rest) {
            self.block.next_line();
            At::Below { parent: self.indent as isize, same: true }
        } else {
            let from = value + rest.len() - rest.trim_start_matches(' ').len();
            At::Inline { from, item: false }
        });
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let at = self.value.take().ok_or(GiveUp)?;
        seed.deserialize(Node { block: &mut *self.block, at })
    }
}

/// A block sequence being read.
struct Sequence<'b, 't> {
    block: &'b mut Block<'t>,
    /// The `-`s' column.
    indent: usize,
    depth: usize,
}

impl<'de, 't: 'de> SeqAccess<'de> for Sequence<'_, 't> {
    type Error = GiveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        self.block.skip_blank();
        let line = match self.block.line() {
            Some(line) if line.indent == self.indent && is_item(&self.block.text[line.start..line.end]) => line,
            Some(line) if line.indent > self.indent => return Err(GiveUp),
            // A shallower line, or a key at the sequence's own indentation (under a mapping's key).
            _ => {
                self.block.ended = self.depth;
                return Ok(None);
            }
        };
        let rest = &self.block.text[line.start + 1..line.end];
        let at = if only_comment(rest) {
            self.block.next_line();
            At::Below { parent: self.indent as isize, same: false }
        } else {
            let from = line.start + 1 + rest.len() - rest.trim_start_matches(' ').len();
            At::Inline { from, item: true }
        };
        seed.deserialize(Node { block: &mut *self.block, at }).map(Some)
    }
}

impl<'de, 't: 'de> Deserializer<'de> for Scalar<'t> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Scalar::Plain(s) => visit_plain(s, visitor),
            Scalar::Quoted(Cow::Borrowed(s)) => visitor.visit_borrowed_str(s),
            Scalar::Quoted(Cow::Owned(s)) => visitor.visit_string(s),
            Scalar::Flow(line) => super::flow::deserialize(line, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self {
            Scalar::Plain(s) if is_null(s) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    forward_to_any!();
}

// A plain scalar's type, by serde_yaml 0.9.34's rules (`de.rs`: `visit_untagged_scalar`,
// `parse_null`, `parse_bool`, `visit_int`, `parse_unsigned_int`, `parse_negative_int`,
// `parse_f64`, `digits_but_not_number`), https://github.com/dtolnay/serde-yaml.

pub(super) fn is_null(s: &str) -> bool {
    matches!(s, "" | "null" | "Null" | "NULL" | "~")
}

pub(super) fn visit_plain<'de, V: Visitor<'de>>(v: &'de str, visitor: V) -> Result<V::Value> {
    if is_null(v) {
        return visitor.visit_unit();
    }
    match v {
        "true" | "True" | "TRUE" => return visitor.visit_bool(true),
        "false" | "False" | "FALSE" => return visitor.visit_bool(false),
        _ => {}
    }
    // No number starts otherwise (Rust's float syntax aside: `inf` and `nan`, which are refused
    // as not finite).
    if v.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        if let Some(int) = parse_unsigned_int(v, u64::from_str_radix) {
            return visitor.visit_u64(int);
        }
        if let Some(int) = parse_negative_int(v, i64::from_str_radix) {
            return visitor.visit_i64(int);
        }
        if let Some(int) = parse_unsigned_int(v, u128::from_str_radix) {
            return visitor.visit_u128(int);
        }
        if let Some(int) = parse_negative_int(v, i128::from_str_radix) {
            return visitor.visit_i128(int);
        }
        if !digits_but_not_number(v) {
            if let Some(float) = parse_f64(v) {
                return visitor.visit_f64(float);
            }
        }
    }
    visitor.visit_borrowed_str(v)
}

/// `0x`, `0o` and `0b` after an optional `+`, or decimal digits.
fn parse_unsigned_int<T>(
    scalar: &str,
    from_str_radix: fn(&str, u32) -> std::result::Result<T, ParseIntError>,
) -> Option<T> {
    let unpositive = scalar.strip_prefix('+').unwrap_or(scalar);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

/// `-0x`, `-0o` and `-0b`, or decimal digits with their sign.
fn parse_negative_int<T>(
    scalar: &str,
    from_str_radix: fn(&str, u32) -> std::result::Result<T, ParseIntError>,
) -> Option<T> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = scalar.strip_prefix(prefix) {
            if let Ok(int) = from_str_radix(&format!("-{rest}"), radix) {
                return Some(int);
            }
        }
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(scalar, 10).ok()
}

fn parse_f64(scalar: &str) -> Option<f64> {
    let unpositive = match scalar.strip_prefix('+') {
        Some(unpositive) if unpositive.starts_with(['+', '-']) => return None,
        Some(unpositive) => unpositive,
        None => scalar,
    };
    if let ".inf" | ".Inf" | ".INF" = unpositive {
        return Some(f64::INFINITY);
    }
    if let "-.inf" | "-.Inf" | "-.INF" = scalar {
        return Some(f64::NEG_INFINITY);
    }
    if let ".nan" | ".NaN" | ".NAN" = scalar {
        return Some(f64::NAN.copysign(1.0));
    }
    unpositive.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Leading zeros before digits: a string in YAML 1.2.
fn digits_but_not_number(scalar: &str) -> bool {
    let scalar = scalar.strip_prefix(['-', '+']).unwrap_or(scalar);
    scalar.len() > 1 && scalar.starts_with('0') && scalar[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_yaml::Value;

    use super::*;

    /// The document as read here, `None` if this gives up.
    fn block(text: &str) -> Option<Value> {
        let mut block = Block::new(text)?;
        let value = Value::deserialize(block.document()).ok()?;
        block.end().ok().map(|()| value)
    }

    /// The document as libyaml and serde_yaml read it.
    fn libyaml(text: &str) -> std::result::Result<Value, String> {
        let mut documents = serde_yaml::Deserializer::from_str(text);
        let value = documents.next().map_or(Ok(Value::Null), Value::deserialize).map_err(|e| e.to_string())?;
        match documents.next() {
            None => Ok(value),
            Some(_) => Err("two documents".into()),
        }
    }

    /// Whether `text` is read here; if it is, it must be what libyaml reads.
    fn agrees(name: &str, text: &str) -> bool {
        let Some(value) = block(text) else { return false };
        assert_eq!(Ok(&value), libyaml(text).as_ref(), "{name}:\n{text}");
        true
    }

    const RESOURCE: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: "vs"   # a comment
  labels:
    app: web
    'version': 'it''s'
spec:
  hosts:
  - a.example
  - "b.example"
  gateways: []
  exportTo:
    - "."
  http:
  # a comment line
  - match:
    - uri:
        prefix: /api
      headers:
        x-user: {}
    route:
    -   destination:
          host: a.svc
          port: {number: 80}
        weight: 90
    -
      destination:
        host: b.svc
      weight: 10
    timeout: 10s
    headers:
      request:
        set:
          x-route: "api \"v1\" \u00e9\/"

"#;

    #[test]
    fn block_style_reads_as_libyaml_reads_it_or_not_at_all() {
        let cases: &[(&str, String, bool)] = &[
            ("a resource", RESOURCE.into(), true),
            ("a resource without flow", RESOURCE.replace("port: {number: 80}", "port:\n            number: 80"), true),
            ("scalars", "a: 1\nb: -2\nc: 0x1f\nd: 0o17\ne: 0b11\nf: 1.5\ng: .inf\nh: -.Inf\ni: 012\nj: +3\nk: ~\nl: null\nm: True\nn: FALSE\no: yes\np: 1e3\ns: 1_000\nt: 127.0.0.1\nu: 10s\nv: -0\nw: 0x\nx: .5\ny: nan\nz: \"1\"\n".into(), true),
            // A value tree holds no 128-bit integer: both refuse it.
            ("integers beyond 64 bits", "q: 99999999999999999999999\n".into(), false),
            ("negative integers beyond 64 bits", "r: -99999999999999999999999\n".into(), false),
            ("keys of every type", "1: a\ntrue: b\nnull: c\n1.5: d\n\"x y\": e\n'': f\n".into(), true),
            ("a key twice", "a: 1\na: 2\n".into(), false),
            ("a sequence of mappings and sequences", "- a: 1\n  b:\n  - x\n  - y\n-\n  - w\n- \n- c\n".into(), true),
            ("a sequence on an item's line", "- - a\n".into(), false),
            ("empty values", "a:\nb:\n  # nothing\nc: ~\nd:\n".into(), true),
            ("a root sequence", "- 1\n- two\n".into(), true),
            ("indentation that fits nothing", "a:\n    b: 1\n  c: 2\n".into(), false),
            ("a deeper key after a value", "a: 1\n  b: 2\n".into(), false),
            ("a sequence item after a value", "a: 1\n- b\n".into(), false),
            ("a multi-line plain scalar", "a: one\n  two\n".into(), false),
            ("a scalar on its own line", "a:\n  one\n".into(), false),
            ("a block scalar", "a: |\n  text\n".into(), false),
            ("flow collections", "a: [1, -2, b c, \"d\", 'e', ~, [], {}]\nf: {g: [h, {i: j}], \"k\": 'l', m: null}\nn: [ o , p ]  # q\n- r\n".replace("- r\n", ""), true),
            ("a flow sequence over two lines", "a: [1,\n  2]\n".into(), false),
            ("a trailing comma", "a: [1, 2,]\n".into(), false),
            ("an empty item", "a: [1, , 2]\n".into(), false),
            ("a pair in a flow sequence", "a: [b: c]\n".into(), false),
            ("a key without a value", "a: {b}\n".into(), false),
            ("an empty value", "a: {b: }\n".into(), false),
            ("a colon in a flow scalar", "a: [http://x]\nb: [\"http://x\"]\n".into(), false),
            ("a quoted colon in a flow scalar", "b: [\"http://x\"]\n".into(), true),
            ("a comment inside a flow", "a: [b # c\n  ]\n".into(), false),
            ("something after a flow", "a: [b] c\n".into(), false),
            ("a key twice in a flow mapping", "a: {b: 1, b: 2}\n".into(), false),
            ("a flow mapping as an item", "- {a: 1}\n- [b]\n".into(), true),
            ("a sequence item in a flow", "a: [- b]\n".into(), false),
            ("an anchor", "a: &x 1\nb: *x\n".into(), false),
            ("a tag", "a: !!str 1\n".into(), false),
            ("a tab", "a:\t1\n".into(), false),
            ("a carriage return", "a: 1\r\n".into(), false),
            ("a mapping on a value's line", "a: b: c\n".into(), false),
            ("a value ending in a colon", "a: b:\n".into(), false),
            ("a sequence on a key's line", "a: - b\n".into(), false),
            ("a quoted scalar running on", "a: \"b\" c\n".into(), false),
            ("a quoted scalar over two lines", "a: \"b\n  c\"\n".into(), false),
            ("an escape JSON has not", "a: \"\\x41\"\n".into(), false),
            ("a surrogate escape", "a: \"\\ud800\"\n".into(), false),
            ("a sign in a \\u escape", "a: \"\\u+041\"\n".into(), false),
            ("a document end", "a: 1\n...\n".into(), false),
            ("a second document", "a: 1\n---\nb: 2\n".into(), false),
            ("a comment right after a quote", "a: \"b\"#c\n".into(), false),
            ("a comment without a space", "a: b#c\nd: e # f\n".into(), true),
            ("colons in values", "a: http://x:80/y\nb: a:b\n".into(), true),
            ("a nested sequence at its key's column", "a:\n  b:\n  - 1\n  c: 2\n".into(), true),
            ("an empty document", "# nothing\n".into(), true),
            ("a scalar document", "just text\n".into(), false),
            ("non-ASCII", "a: é — ✓\n\"ключ\": 'значение'\n".into(), true),
            ("a line separator", "a: b\u{2028}c\n".into(), false),
        ];
        for (name, text, read) in cases {
            assert_eq!(agrees(name, text), *read, "{name}: read here? libyaml: {:?}", libyaml(text));
        }
    }

    #[test]
    fn keys_and_nesting_past_libyamls_limits_are_left_to_it() {
        let cases: &[(&str, String, bool)] = &[
            ("a key of 1,000 characters", format!("{}: 1\n", "k".repeat(1000)), true),
            ("a key of 1,025 characters", format!("{}: 1\n", "k".repeat(1025)), false),
            ("a quoted key of 1,025 characters", format!("\"{}\": 1\n", "k".repeat(1023)), false),
            ("a key far from its colon", format!("k{}: 1\n", " ".repeat(1030)), false),
            ("a flow key of 1,025 characters", format!("a: {{{}: 1}}\n", "k".repeat(1025)), false),
            ("nested past serde_yaml's limit", format!("a:{}\n", " [".repeat(130) + &"]".repeat(130)), false),
            (
                "nested 119 deep",
                (0..59).map(|i| format!("{}k:\n", " ".repeat(i))).collect::<String>()
                    + &" ".repeat(59)
                    + "v: "
                    + &"[".repeat(59)
                    + &"]".repeat(59)
                    + "\n",
                true,
            ),
        ];
        for (name, text, read) in cases {
            assert_eq!(agrees(name, text), *read, "{name}: read here? libyaml: {:?}", libyaml(text).is_ok());
        }
    }

    /// Every YAML document in the repository's tests, fixtures and deployment files.
    fn corpus() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        let mut dirs: Vec<_> =
            ["conf/tests", "tests/fixtures", "deploy", "gateway/tests"].iter().map(|d| root.join(d)).collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                match path.extension().and_then(|e| e.to_str()) {
                    _ if path.is_dir() => dirs.push(path),
                    Some("yaml" | "yml") => files.push(path),
                    _ => {}
                }
            }
        }
        files.sort();
        let mut documents = Vec::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            for (i, document) in super::super::split_documents(&text).enumerate() {
                documents.push((format!("{} document {}", file.display(), i + 1), document.to_string()));
            }
        }
        documents
    }

    #[test]
    fn every_yaml_document_in_the_repository_reads_as_libyaml_reads_it() {
        let documents = corpus();
        let read = documents.iter().filter(|(name, text)| agrees(name, text)).count();
        // The tests' own documents are mostly written in flow style (`metadata: {name: a}`), which
        // is left to libyaml; the samples and deployment files are block style.
        assert!(
            documents.len() > 300 && read * 4 > documents.len(),
            "{read} of {} documents read here",
            documents.len()
        );
    }

    /// Each line of `text` changed in the ways a hand or a template gets YAML wrong.
    fn mutations(text: &str) -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        let with = |i: usize, replacement: &[String]| {
            let mut changed: Vec<String> = lines[..i].iter().map(|l| l.to_string()).collect();
            changed.extend_from_slice(replacement);
            changed.extend(lines[i + 1..].iter().map(|l| l.to_string()));
            changed.join("\n") + "\n"
        };
        for (i, line) in lines.iter().enumerate() {
            let content = line.trim_start();
            let indent = line.len() - content.len();
            out.push(with(i, &[]));
            out.push(with(i, &[format!(" {line}")]));
            out.push(with(i, &[line[1.min(indent)..].to_string()]));
            out.push(with(i, &[line.to_string(), line.to_string()]));
            out.push(with(i, &[line.replacen(": ", ":", 1)]));
            out.push(with(i, &[line.replacen(": ", " : ", 1)]));
            out.push(with(i, &[format!("{line}:")]));
            out.push(with(i, &[format!("{line} x")]));
            out.push(with(i, &[format!("{}- {content}", &line[..indent])]));
            out.push(with(i, &[line.replacen("- ", "", 1)]));
            out.push(with(i, &[line.replacen("- ", "-", 1)]));
            out.push(with(i, &[line.replace('"', "")]));
            out.push(with(i, &[format!("{line}\"")]));
            out.push(with(i, &[line.to_string(), format!("{}  more", &line[..indent])]));
            out.push(with(i, &[line.to_string(), format!("{}- more", &line[..indent])]));
            out.push(with(i, &[line.to_string(), format!("{}more: 1", &line[..indent])]));
        }
        out
    }

    #[test]
    fn mistakes_in_a_document_read_as_libyaml_reads_them_or_not_at_all() {
        let mut documents: Vec<String> =
            corpus().into_iter().map(|(_, text)| text).filter(|t| block(t).is_some()).take(40).collect();
        documents.push(RESOURCE.replace("port: {number: 80}", "port:\n            number: 80"));
        let (mut tried, mut read) = (0, 0);
        for document in &documents {
            for (i, changed) in mutations(document).iter().enumerate() {
                tried += 1;
                read += usize::from(agrees(&format!("mutation {i}"), changed));
            }
        }
        // The mistakes libyaml refuses are given up on here; the rest are read alike.
        assert!(read > 0 && read < tried, "{read} of {tried} read here");
    }

    #[test]
    fn a_character_put_in_or_taken_out_anywhere_reads_as_libyaml_reads_it_or_not_at_all() {
        let inserted =
            [":", " ", "-", "#", "\"", "'", "[", "{", "&", "*", "|", ">", "\n", "\\", "é", "?", ",", "0", "~", "!"];
        // With its flow mappings, and all in block style.
        for document in [RESOURCE.to_string(), RESOURCE.replace("port: {number: 80}", "port:\n            number: 80")]
        {
            let (mut tried, mut read) = (0, 0);
            let boundaries: Vec<usize> = (0..=document.len()).filter(|i| document.is_char_boundary(*i)).collect();
            for (n, &at) in boundaries.iter().enumerate() {
                let (before, after) = document.split_at(at);
                let mut changed: Vec<String> = inserted.iter().map(|c| format!("{before}{c}{after}")).collect();
                if let Some(&next) = boundaries.get(n + 1) {
                    changed.push(format!("{before}{}", &document[next..]));
                }
                for text in changed {
                    tried += 1;
                    read += usize::from(agrees(&format!("changed at byte {at}"), &text));
                }
            }
            assert!(read > 0 && read < tried, "{read} of {tried} read here");
        }
    }

    /// Reads the first item or entry of a collection and stops.
    struct First;

    impl<'de> Visitor<'de> for First {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a collection")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            seq.next_element::<de::IgnoredAny>().map(drop)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            map.next_entry::<de::IgnoredAny, de::IgnoredAny>().map(drop)
        }
    }

    impl<'de> DeserializeSeed<'de> for First {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            d.deserialize_any(First)
        }
    }

    #[test]
    fn a_collection_not_read_to_its_end_gives_up() {
        for text in ["- a\n- b\n", "a: 1\nb: 2\n"] {
            let mut block = Block::new(text).unwrap();
            assert!(block.document().deserialize_any(First).is_err(), "{text}");
        }
        for text in ["[b, c]", "{b: 1, c: 2}"] {
            assert!(super::super::flow::deserialize(text, First).is_err(), "{text}");
        }
        // A tuple reads its length and stops: the outer list must not take the inner `]` for
        // its own, or the bracket missing at the end would go unseen (libyaml refuses this).
        let mut block = Block::new("a: [[x, y, [z, w]\n").unwrap();
        let read = std::collections::BTreeMap::<String, Vec<(String, String)>>::deserialize(block.document());
        assert!(read.is_err(), "{read:?}");
    }
}
