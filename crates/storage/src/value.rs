//! Values and keyspace entries.

use crate::bytes::SmallBytes;
use crate::dict::Keyed;
use crate::types::hash::Hash;
use crate::types::list::List;
use crate::types::set::Set;
use crate::types::stream::Stream;
use crate::types::zset::ZSet;

/// A value in the keyspace. Strings have three encodings, as in Redis: `Int` for canonical
/// integers, `Str` for strings stored once, and `Raw` for strings changed in place (APPEND,
/// SETRANGE, SETBIT), which keep spare capacity.
///
/// The other data types are boxed variants, keeping this enum at 24 bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Str(SmallBytes),
    Raw(Box<Vec<u8>>),
    Hash(Box<Hash>),
    Set(Box<Set>),
    List(Box<List>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

const _: () = assert!(std::mem::size_of::<Value>() == 24);

/// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`: strings up to this size report `embstr`.
const EMBSTR_LIMIT: usize = 44;

/// A borrowed view of a string value.
#[derive(Clone, Copy, Debug)]
pub enum StrView<'a> {
    Bytes(&'a [u8]),
    Int(i64),
}

impl StrView<'_> {
    /// The string's bytes, formatting an integer into `buf`.
    pub fn bytes<'b>(&'b self, buf: &'b mut itoa::Buffer) -> &'b [u8] {
        match self {
            StrView::Bytes(b) => b,
            StrView::Int(n) => buf.format(*n).as_bytes(),
        }
    }

    /// Length of the string form.
    pub fn len(&self) -> usize {
        match self {
            StrView::Bytes(b) => b.len(),
            StrView::Int(n) => itoa::Buffer::new().format(*n).len(),
        }
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the string form.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes(&mut itoa::Buffer::new()).to_vec()
    }
}

impl Value {
    /// A string value from bytes, with the integer encoding when the bytes are a canonical
    /// integer of at most 20 characters (Redis's `tryObjectEncoding`).
    #[inline]
    pub fn string(s: &[u8]) -> Value {
        if s.len() <= 20
            && let Some(n) = tessera_protocol::num::parse_i64(s)
        {
            return Value::Int(n);
        }
        Value::Str(SmallBytes::new(s))
    }

    /// A string value from an owned buffer.
    pub fn string_from_vec(v: Vec<u8>) -> Value {
        if v.len() <= 20
            && let Some(n) = tessera_protocol::num::parse_i64(&v)
        {
            return Value::Int(n);
        }
        Value::Str(SmallBytes::from_vec(v))
    }

    /// The Redis type name (`TYPE`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) | Value::Str(_) | Value::Raw(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::List(_) => "list",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// The Redis encoding name (`OBJECT ENCODING`).
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Str(s) if s.len() <= EMBSTR_LIMIT => "embstr",
            Value::Str(_) | Value::Raw(_) => "raw",
            Value::Hash(h) => h.encoding(),
            Value::Set(s) => s.encoding(),
            Value::List(_) => "quicklist",
            Value::ZSet(z) => z.encoding(),
            Value::Stream(_) => "stream",
        }
    }

    /// The string view of a string value, or `None` for other types.
    #[inline]
    pub fn as_str(&self) -> Option<StrView<'_>> {
        match self {
            Value::Int(n) => Some(StrView::Int(*n)),
            Value::Str(s) => Some(StrView::Bytes(s.as_bytes())),
            Value::Raw(v) => Some(StrView::Bytes(v)),
            Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_) | Value::Stream(_) => {
                None
            }
        }
    }

    /// Converts a string value to the in-place encoding and returns its buffer; `None` for
    /// other types.
    pub fn make_raw(&mut self) -> Option<&mut Vec<u8>> {
        let bytes = match self {
            Value::Raw(v) => return Some(v),
            Value::Int(n) => itoa::Buffer::new().format(*n).as_bytes().to_vec(),
            Value::Str(s) => s.as_bytes().to_vec(),
            Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_) | Value::Stream(_) => {
                return None;
            }
        };
        *self = Value::Raw(Box::new(bytes));
        match self {
            Value::Raw(v) => Some(v),
            _ => unreachable!("just stored a Raw value"),
        }
    }

    /// Approximate bytes allocated for the value outside its entry (`MEMORY USAGE`, eviction).
    pub fn heap_size(&self) -> usize {
        match self {
            Value::Int(_) => 0,
            Value::Str(s) => s.heap_size(),
            Value::Raw(v) => 24 + v.capacity(),
            Value::Hash(h) => h.heap_size(),
            Value::Set(s) => s.heap_size(),
            Value::List(l) => l.heap_size(),
            Value::ZSet(z) => z.heap_size(),
            Value::Stream(x) => x.heap_size(),
        }
    }
}

/// A collection type held in a [`Value`] variant, for typed lookups.
pub trait Typed: Sized {
    /// The value as this type, or `None` for another type.
    fn of(v: &Value) -> Option<&Self>;
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    /// An empty value of this type.
    fn empty() -> Value;
}

macro_rules! typed {
    ($($t:ty => $variant:ident),*) => {$(
        impl Typed for $t {
            fn of(v: &Value) -> Option<&Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn of_mut(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn empty() -> Value {
                Value::$variant(Box::default())
            }
        }
    )*};
}

typed!(Hash => Hash, Set => Set, List => List, ZSet => ZSet, Stream => Stream);

/// One key of the keyspace: 56 bytes, so with its chain pointer an entry fills one 64-byte
/// allocation.
#[derive(Debug)]
pub struct KeyEntry {
    pub(crate) key: SmallBytes,
    pub(crate) value: Value,
    /// LRU clock (seconds) or LFU data (minutes << 8 | log counter) of the last access.
    pub(crate) access: u32,
    pub(crate) flags: u32,
}

/// The key has an entry in the expires dict.
pub(crate) const FLAG_VOLATILE: u32 = 1;
/// The running snapshot has this key's state already (saved before a change, or created after
/// the snapshot began): its walk skips the entry, clearing the flag.
pub(crate) const FLAG_SNAPSHOT: u32 = 2;

impl KeyEntry {
    /// The key.
    pub fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The value, mutably.
    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.value
    }

    /// Records an access at `clock` (the LRU clock, in seconds).
    #[inline]
    pub fn touch(&mut self, clock: u32) {
        self.access = clock;
    }

    /// The clock value of the last access.
    pub fn access(&self) -> u32 {
        self.access
    }

    /// True if the key has a time to live.
    pub fn is_volatile(&self) -> bool {
        self.flags & FLAG_VOLATILE != 0
    }
}

impl Keyed for KeyEntry {
    #[inline]
    fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }
}

/// An entry of the expires dict: a key and its absolute expiry time in Unix milliseconds.
#[derive(Debug)]
pub(crate) struct ExpireEntry {
    pub(crate) key: SmallBytes,
    pub(crate) at: i64,
}

impl Keyed for ExpireEntry {
    #[inline]
    fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_redis() {
        assert_eq!(Value::string(b"123").encoding(), "int");
        assert_eq!(Value::string(b"0123").encoding(), "embstr");
        assert_eq!(Value::string(&[b'a'; 44]).encoding(), "embstr");
        assert_eq!(Value::string(&[b'a'; 45]).encoding(), "raw");
        let mut v = Value::string(b"12");
        v.make_raw().unwrap().push(b'3');
        assert_eq!(v.encoding(), "raw");
        assert_eq!(v.as_str().unwrap().to_vec(), b"123");
        assert_eq!(std::mem::size_of::<KeyEntry>(), 56);
    }
}
