//! [`SmallBytes`]: a byte string of 24 bytes that keeps up to 22 bytes inline, so typical keys
//! and small values cost no allocation of their own.

use std::borrow::Borrow;
use std::fmt;

const INLINE: usize = 22;

/// An immutable byte string, inline up to 22 bytes, boxed beyond.
#[derive(Clone)]
pub enum SmallBytes {
    #[doc(hidden)]
    Inline { len: u8, data: [u8; INLINE] },
    #[doc(hidden)]
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<SmallBytes>() == 24);

impl SmallBytes {
    /// Copies `s`.
    #[inline]
    pub fn new(s: &[u8]) -> Self {
        if s.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..s.len()].copy_from_slice(s);
            SmallBytes::Inline {
                len: s.len() as u8,
                data,
            }
        } else {
            SmallBytes::Heap(s.into())
        }
    }

    /// Takes ownership of `v`, keeping it inline when it is short.
    pub fn from_vec(v: Vec<u8>) -> Self {
        if v.len() <= INLINE {
            Self::new(&v)
        } else {
            SmallBytes::Heap(v.into_boxed_slice())
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, data } => &data[..*len as usize],
            SmallBytes::Heap(b) => b,
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            SmallBytes::Inline { len, .. } => *len as usize,
            SmallBytes::Heap(b) => b.len(),
        }
    }

    /// True for the empty string.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated outside the struct itself.
    pub fn heap_size(&self) -> usize {
        match self {
            SmallBytes::Inline { .. } => 0,
            SmallBytes::Heap(b) => b.len(),
        }
    }
}

// Equality, order and hashing are those of the bytes, whatever the representation: `Borrow<[u8]>`
// requires it (a set of `SmallBytes` is searched with `&[u8]`).
impl PartialEq for SmallBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SmallBytes {}

impl PartialOrd for SmallBytes {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallBytes {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for SmallBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for SmallBytes {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for SmallBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap() {
        for len in [0, 1, 21, 22, 23, 100] {
            let s: Vec<u8> = (0..len as u8).collect();
            let b = SmallBytes::new(&s);
            assert_eq!(b.as_bytes(), &s[..]);
            assert_eq!(b.len(), len);
            assert_eq!(matches!(b, SmallBytes::Inline { .. }), len <= INLINE);
            assert_eq!(SmallBytes::from_vec(s.clone()), b);
        }
    }
}
