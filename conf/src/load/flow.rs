//! Flow collections written on one line (`{name: a, labels: {app: web}}`, `["*"]`), inside a
//! block-style document: the part of YAML's flow style that libyaml reads the same way, for
//! [`super::block`]. Anything else gives up, as there.
//!
//! The subset: `[` items `]` and `{` entries `}`, nested, closed on the line they open; items and
//! values are flow collections, quoted scalars or plain scalars holding none of `,[]{}#:`; keys
//! are plain (`[A-Za-z0-9_][A-Za-z0-9_./-]*`) or quoted, followed by `: `. An empty item or value,
//! a trailing comma, a key without a value and a `:` in a plain scalar give up.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::block::{forward_to_any, is_null, plain_key, quoted, visit_plain, GiveUp, Scalar, KEY_LENGTH};

type Result<T> = std::result::Result<T, GiveUp>;

/// Flow collections nested deeper than this give up (see the block reader's limit).
const DEPTH: usize = 60;

/// Reads the flow collection that starts `line` (at its `[` or `{`), which must be followed by
/// nothing but a comment.
pub(super) fn deserialize<'de, V: Visitor<'de>>(line: &'de str, visitor: V) -> Result<V::Value> {
    let mut flow = Flow { text: line, pos: 0, depth: 0, ended: usize::MAX };
    let value = flow.node(visitor)?;
    match super::block::only_comment(&line[flow.pos..]) {
        true => Ok(value),
        false => Err(GiveUp),
    }
}

struct Flow<'t> {
    text: &'t str,
    pos: usize,
    depth: usize,
    /// The depth of the collection whose closing bracket was read last: a visitor that stops
    /// before it (serde's tuples and arrays read their length and stop) would let the outer
    /// collection take that bracket for its own, and a missing bracket go unseen.
    ended: usize,
}

impl<'t> Flow<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Steps over `byte` if it comes next (after spaces).
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_spaces();
        let next = self.peek() == Some(byte);
        self.pos += usize::from(next);
        next
    }

    fn node<'de, V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value>
    where
        't: 'de,
    {
        self.skip_spaces();
        match self.peek().ok_or(GiveUp)? {
            open @ (b'[' | b'{') => {
                self.pos += 1;
                self.depth += 1;
                self.ended = usize::MAX;
                let depth = self.depth;
                if depth > DEPTH {
                    return Err(GiveUp);
                }
                let value = match open {
                    b'[' => visitor.visit_seq(Items { flow: self, first: true })?,
                    _ => visitor.visit_map(Entries { flow: self, first: true })?,
                };
                self.depth -= 1;
                (self.ended == depth).then_some(value).ok_or(GiveUp)
            }
            b'"' | b'\'' => {
                let (value, after) = quoted(self.text, self.pos, self.text.len())?;
                self.pos = after;
                Scalar::Quoted(value).deserialize_any(visitor)
            }
            _ => visit_plain(self.plain()?, visitor),
        }
    }

    /// A plain scalar: up to the next `,[]{}#:`, its trailing spaces dropped.
    fn plain(&mut self) -> Result<&'t str> {
        let rest = &self.text[self.pos..];
        let bytes = rest.as_bytes();
        match bytes.first().ok_or(GiveUp)? {
            b'-' if matches!(bytes.get(1), None | Some(b' ' | b',' | b']' | b'}')) => return Err(GiveUp),
            b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b'"' | b'\'' => return Err(GiveUp),
            _ => {}
        }
        // What follows (`#` or `:` included) must then be a `,` or a closing bracket.
        let len = bytes.iter().position(|b| b",[]{}#:".contains(b)).unwrap_or(bytes.len());
        let value = rest[..len].trim_end_matches(' ');
        if value.is_empty() {
            return Err(GiveUp);
        }
        self.pos += len;
        Ok(value)
    }

    /// Before an item or entry: `,` between them, the closing bracket after the last (`None`).
    fn next(&mut self, first: &mut bool, close: u8) -> Result<Option<()>> {
        if self.eat(close) {
            self.ended = self.depth;
            return Ok(None);
        }
        if !std::mem::take(first) && !self.eat(b',') {
            return Err(GiveUp);
        }
        // An empty item, or a trailing comma (`[a,]`), is left to libyaml.
        self.skip_spaces();
        match self.peek() {
            None | Some(b',' | b']' | b'}') => Err(GiveUp),
            Some(_) => Ok(Some(())),
        }
    }
}

/// A flow node as a deserializer.
struct Node<'f, 't> {
    flow: &'f mut Flow<'t>,
}

impl<'de, 't: 'de> Deserializer<'de> for Node<'_, 't> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.flow.node(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.flow.skip_spaces();
        let at = self.flow.pos;
        let null =
            !matches!(self.flow.peek(), Some(b'[' | b'{' | b'"' | b'\'')) && self.flow.plain().is_ok_and(is_null);
        if null {
            return visitor.visit_none();
        }
        self.flow.pos = at;
        visitor.visit_some(self)
    }

    forward_to_any!();
}

/// The items of a flow sequence.
struct Items<'f, 't> {
    flow: &'f mut Flow<'t>,
    first: bool,
}

impl<'de, 't: 'de> SeqAccess<'de> for Items<'_, 't> {
    type Error = GiveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.flow.next(&mut self.first, b']')? {
            None => Ok(None),
            Some(()) => seed.deserialize(Node { flow: &mut *self.flow }).map(Some),
        }
    }
}

/// The entries of a flow mapping.
struct Entries<'f, 't> {
    flow: &'f mut Flow<'t>,
    first: bool,
}

impl<'de, 't: 'de> MapAccess<'de> for Entries<'_, 't> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.flow.next(&mut self.first, b'}')?.is_none() {
            return Ok(None);
        }
        let flow = &mut *self.flow;
        let start = flow.pos;
        let key = match flow.peek() {
            Some(b'"' | b'\'') => {
                let (key, after) = quoted(flow.text, flow.pos, flow.text.len())?;
                flow.pos = after;
                flow.skip_spaces();
                Scalar::Quoted(key)
            }
            _ => {
                let rest = &flow.text[flow.pos..];
                let len = rest
                    .bytes()
                    .position(|b| !(b.is_ascii_alphanumeric() || b"_./-".contains(&b)))
                    .unwrap_or(rest.len());
                let key = &rest[..len];
                if !plain_key(key) {
                    return Err(GiveUp);
                }
                flow.pos += len;
                Scalar::Plain(key)
            }
        };
        if !flow.text[flow.pos..].starts_with(": ") || flow.pos - start > KEY_LENGTH {
            return Err(GiveUp);
        }
        // An empty value is an empty plain scalar, which gives up.
        flow.pos += 2;
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(Node { flow: &mut *self.flow })
    }
}
