//! Decoding straight from the YAML parser's events by the rules `serde_yaml::Value` applies when a
//! value tree is decoded into a type, so that a document decodes to the same resource either way.
//!
//! serde_yaml's own event deserializer is more lenient than its value tree: it reads the plain
//! scalar `80` into a string field, and a map given a key twice keeps the last. The value tree holds
//! `80` as a number, which a string field refuses, takes `null` for an empty list or map, and
//! refuses a duplicate key (`DuplicateKeyError`). [`Strict`] asks the parser for each value as it
//! is (`deserialize_any`, which is how the value tree is built) and applies the value tree's rule
//! for the type wanted. A tagged value (`!Tag`) is refused here: the caller reads such a document
//! through the value tree, which words every problem exactly.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor};

/// What decoding has met: an ignored field, and the key being read.
#[derive(Default)]
pub(super) struct Seen {
    /// A field the type does not have was skipped (as `serde_ignored` reports them).
    pub(super) ignored: Cell<bool>,
    /// A mapping's key is being read: its scalar's hash goes to `key`.
    reading_key: Cell<bool>,
    key: Cell<Option<u64>>,
}

/// `de`, decoded as its value tree would be.
pub(super) struct Strict<'s, D> {
    de: D,
    seen: &'s Seen,
}

impl<'s, D> Strict<'s, D> {
    pub(super) fn new(de: D, seen: &'s Seen) -> Self {
        Strict { de, seen }
    }
}

/// The value tree's kinds of value a type can be read from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Any,
    Bool,
    Number,
    Str,
    Unit,
    /// A sequence, or null for an empty one.
    Seq,
    /// A mapping, or null for an empty one.
    Map,
    /// A string naming a unit variant.
    Enum,
}

impl<'s, 'de, D: Deserializer<'de>> Strict<'s, D> {
    fn want<V: Visitor<'de>>(self, want: Want, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_any(As { visitor, want, seen: self.seen })
    }
}

macro_rules! wanting {
    ($($method:ident => $want:ident),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.want(Want::$want, visitor)
        })*
    };
}

impl<'s, 'de, D: Deserializer<'de>> Deserializer<'de> for Strict<'s, D> {
    type Error = D::Error;

    wanting! {
        deserialize_any => Any, deserialize_bool => Bool,
        deserialize_i8 => Number, deserialize_i16 => Number, deserialize_i32 => Number,
        deserialize_i64 => Number, deserialize_i128 => Number, deserialize_u8 => Number,
        deserialize_u16 => Number, deserialize_u32 => Number, deserialize_u64 => Number,
        deserialize_u128 => Number, deserialize_f32 => Number, deserialize_f64 => Number,
        deserialize_char => Str, deserialize_str => Str, deserialize_string => Str,
        deserialize_identifier => Str, deserialize_unit => Unit, deserialize_seq => Seq,
        deserialize_map => Map,
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _: V) -> Result<V::Value, D::Error> {
        Err(de::Error::custom("bytes are read from the value tree"))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // serde_yaml's parser and its value tree take the same scalars for null.
        self.de.deserialize_option(As { visitor, want: Want::Any, seen: self.seen })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.want(Want::Unit, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.want(Want::Seq, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.want(Want::Seq, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.want(Want::Map, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.want(Want::Enum, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.seen.ignored.set(true);
        // Read through, not skipped: a key given twice in it is refused by the value tree too.
        self.want(Want::Any, visitor)
    }
}

/// The visitor of the value wanted, given the value the parser found.
struct As<'s, V> {
    visitor: V,
    want: Want,
    seen: &'s Seen,
}

impl<V> As<'_, V> {
    /// Notes a key's scalar (kind and bytes) to find it given twice.
    fn key(&self, kind: u8, bytes: &[u8]) {
        if self.seen.reading_key.get() {
            // FNV-1a: a collision only sends the document to the value tree.
            let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ u64::from(kind), |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            self.seen.key.set(Some(hash));
        }
    }

    fn accepts(&self, kind: Want) -> bool {
        self.want == Want::Any || self.want == kind
    }
}

impl<'de, V: Visitor<'de>> As<'_, V> {
    fn string<E: de::Error>(self, s: &str, visit: impl FnOnce(V) -> Result<V::Value, E>) -> Result<V::Value, E> {
        self.key(0, s.as_bytes());
        match self.want {
            Want::Any | Want::Str => visit(self.visitor),
            Want::Enum => self.visitor.visit_enum(s.into_deserializer()),
            _ => Err(E::invalid_type(Unexpected::Str(s), &self)),
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for As<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.key(1, &[u8::from(v)]);
        match self.accepts(Want::Bool) {
            true => self.visitor.visit_bool(v),
            false => Err(E::invalid_type(Unexpected::Bool(v), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        // The value tree holds a non-negative integer as one number whatever its sign (`-0` is
        // `0`), so the two are one key there.
        match u64::try_from(v) {
            Ok(unsigned) => self.key(3, &unsigned.to_le_bytes()),
            Err(_) => self.key(2, &v.to_le_bytes()),
        }
        match self.accepts(Want::Number) {
            true => self.visitor.visit_i64(v),
            false => Err(E::invalid_type(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.key(3, &v.to_le_bytes());
        match self.accepts(Want::Number) {
            true => self.visitor.visit_u64(v),
            false => Err(E::invalid_type(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<V::Value, E> {
        self.key(4, &v.to_le_bytes());
        match self.accepts(Want::Number) {
            true => self.visitor.visit_i128(v),
            false => Err(E::invalid_type(Unexpected::Other("an integer"), &self)),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<V::Value, E> {
        self.key(5, &v.to_le_bytes());
        match self.accepts(Want::Number) {
            true => self.visitor.visit_u128(v),
            false => Err(E::invalid_type(Unexpected::Other("an integer"), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.key(6, &v.to_le_bytes());
        match self.accepts(Want::Number) {
            true => self.visitor.visit_f64(v),
            false => Err(E::invalid_type(Unexpected::Float(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.string(v, |visitor| visitor.visit_str(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.string(v, |visitor| visitor.visit_borrowed_str(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.key(0, v.as_bytes());
        match self.want {
            Want::Any | Want::Str => self.visitor.visit_string(v),
            Want::Enum => self.visitor.visit_enum(v.into_deserializer()),
            _ => Err(E::invalid_type(Unexpected::Str(&v), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.key(7, &[]);
        match self.want {
            Want::Any | Want::Unit => self.visitor.visit_unit(),
            // The value tree reads null as an empty sequence or mapping.
            Want::Seq => self.visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<()>())),
            Want::Map => self.visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<((), ())>())),
            _ => Err(E::invalid_type(Unexpected::Unit, &self)),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Strict::new(d, self.seen))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Strict::new(d, self.seen))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if self.seen.reading_key.get() || !self.accepts(Want::Seq) {
            return Err(de::Error::invalid_type(Unexpected::Seq, &self));
        }
        self.visitor.visit_seq(StrictSeq { seq, seen: self.seen })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        if self.seen.reading_key.get() || !self.accepts(Want::Map) {
            return Err(de::Error::invalid_type(Unexpected::Map, &self));
        }
        self.visitor.visit_map(StrictMap { map, seen: self.seen, keys: Keys::default() })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<V::Value, A::Error> {
        Err(de::Error::custom("a tagged value is read from the value tree"))
    }
}

/// A seed whose value is decoded strictly.
struct StrictSeed<'s, T> {
    seed: T,
    seen: &'s Seen,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.seed.deserialize(Strict::new(d, self.seen))
    }
}

struct StrictSeq<'s, A> {
    seq: A,
    seen: &'s Seen,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.seq.next_element_seed(StrictSeed { seed, seen: self.seen })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

struct StrictMap<'s, A> {
    map: A,
    seen: &'s Seen,
    keys: Keys,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let seen = self.seen;
        seen.reading_key.set(true);
        seen.key.set(None);
        let key = self.map.next_key_seed(StrictSeed { seed, seen });
        seen.reading_key.set(false);
        let Some(key) = key? else { return Ok(None) };
        let hash = seen.key.take().ok_or_else(|| de::Error::custom("a key that is not a scalar"))?;
        match self.keys.insert(hash) {
            true => Ok(Some(key)),
            false => Err(de::Error::custom("a key given twice")),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(StrictSeed { seed, seen: self.seen })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// The hashes of one mapping's keys: most mappings have a few, kept without allocating.
#[derive(Default)]
struct Keys {
    first: [u64; 16],
    count: usize,
    more: Vec<u64>,
}

impl Keys {
    /// False if `hash` was seen before.
    fn insert(&mut self, hash: u64) -> bool {
        if self.first[..self.count.min(16)].contains(&hash) || self.more.contains(&hash) {
            return false;
        }
        match self.first.get_mut(self.count) {
            Some(slot) => *slot = hash,
            None => self.more.push(hash),
        }
        self.count += 1;
        true
    }
}
