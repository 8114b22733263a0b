//! [`Hash`]: field-value maps, packed (`listpack`, insertion order) while small, a [`Dict`]
//! (`hashtable`) beyond `hash-max-listpack-entries` entries or `hash-max-listpack-value` bytes.

use super::CompactLimits;
use super::packed::Packed;
use crate::bytes::SmallBytes;
use crate::dict::{Dict, Keyed, hash};

/// One field of a hashtable-encoded hash.
#[derive(Debug)]
pub struct Field {
    pub field: SmallBytes,
    pub value: SmallBytes,
}

impl Keyed for Field {
    fn key(&self) -> &[u8] {
        self.field.as_bytes()
    }
}

/// A hash value.
pub enum Hash {
    /// Fields and values alternating, in insertion order.
    Packed(Packed),
    /// Boxed so a small (packed) hash stays a 32-byte value.
    Table(Box<Dict<Field>>),
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl Clone for Hash {
    fn clone(&self) -> Self {
        match self {
            Hash::Packed(p) => Hash::Packed(p.clone()),
            Hash::Table(_) => {
                let mut d = Dict::new();
                for (f, v) in self.iter() {
                    d.insert_new(
                        Field {
                            field: SmallBytes::new(f),
                            value: SmallBytes::new(v),
                        },
                        hash(f),
                    );
                }
                Hash::Table(Box::new(d))
            }
        }
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(f) == Some(v))
    }
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Packed(Packed::new())
    }
}

impl Hash {
    /// An empty hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        match self {
            Hash::Packed(p) => p.len() / 2,
            Hash::Table(d) => d.len(),
        }
    }

    /// True without fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Packed(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }

    /// Index (in pairs) of `field` in the packed form.
    fn packed_index(p: &Packed, field: &[u8]) -> Option<usize> {
        p.iter().step_by(2).position(|f| f == field)
    }

    /// The value of `field`.
    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Packed(p) => {
                let mut it = p.iter();
                while let Some(f) = it.next() {
                    let v = it.next()?;
                    if f == field {
                        return Some(v);
                    }
                }
                None
            }
            Hash::Table(d) => d.get(field, hash(field)).map(|e| e.value.as_bytes()),
        }
    }

    /// Sets `field` to `value`. Returns true if the field is new.
    pub fn set(&mut self, field: &[u8], value: &[u8], limits: &CompactLimits) -> bool {
        if let Hash::Packed(p) = self {
            let too_big = field.len() > limits.hash_max_listpack_value
                || value.len() > limits.hash_max_listpack_value;
            if !too_big {
                if let Some(i) = Self::packed_index(p, field) {
                    p.replace(2 * i + 1, value);
                    return false;
                }
                if p.len() / 2 < limits.hash_max_listpack_entries {
                    p.push(field);
                    p.push(value);
                    return true;
                }
            }
            self.convert();
        }
        let Hash::Table(d) = self else {
            unreachable!("converted above")
        };
        let h = hash(field);
        if let Some(e) = d.get_mut(field, h) {
            e.value = SmallBytes::new(value);
            return false;
        }
        d.insert_new(
            Field {
                field: SmallBytes::new(field),
                value: SmallBytes::new(value),
            },
            h,
        );
        true
    }

    /// Converts the packed form to a table.
    fn convert(&mut self) {
        let Hash::Packed(p) = self else { return };
        let mut d = Dict::new();
        {
            let mut it = p.iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                let field = Field {
                    field: SmallBytes::new(f),
                    value: SmallBytes::new(v),
                };
                d.insert_new(field, hash(f));
            }
        }
        *self = Hash::Table(Box::new(d));
    }

    /// Removes `field`. Returns true if it existed.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Packed(p) => match Self::packed_index(p, field) {
                Some(i) => {
                    p.remove(2 * i, 2);
                    true
                }
                None => false,
            },
            Hash::Table(d) => d.remove(field, hash(field)).is_some(),
        }
    }

    /// Every field and value (insertion order while packed).
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Hash::Packed(p) => {
                let mut it = p.iter();
                Box::new(std::iter::from_fn(move || Some((it.next()?, it.next()?))))
            }
            Hash::Table(d) => Box::new(d.iter().map(|e| (e.field.as_bytes(), e.value.as_bytes()))),
        }
    }

    /// One HSCAN step: a packed hash is returned whole with cursor 0, as Redis does.
    pub fn scan<'a>(
        &'a self,
        cursor: u64,
        count: usize,
        mut f: impl FnMut(&'a [u8], &'a [u8]),
    ) -> u64 {
        match self {
            Hash::Packed(_) => {
                for (k, v) in self.iter() {
                    f(k, v);
                }
                0
            }
            Hash::Table(d) => {
                let mut cursor = cursor;
                let mut emitted = 0;
                let mut budget = count.saturating_mul(10).max(1);
                loop {
                    cursor = d.scan(cursor, |e| {
                        emitted += 1;
                        f(e.field.as_bytes(), e.value.as_bytes());
                    });
                    budget -= 1;
                    if cursor == 0 || emitted >= count || budget == 0 {
                        return cursor;
                    }
                }
            }
        }
    }

    /// A random field and its value.
    pub fn random(&self, rng: &mut impl rand::Rng) -> Option<(&[u8], &[u8])> {
        match self {
            Hash::Packed(p) => {
                if p.is_empty() {
                    return None;
                }
                let i = rng.random_range(0..p.len() / 2);
                Some((p.get(2 * i)?, p.get(2 * i + 1)?))
            }
            Hash::Table(d) => d
                .random(rng)
                .map(|e| (e.field.as_bytes(), e.value.as_bytes())),
        }
    }

    /// Approximate bytes allocated.
    pub fn heap_size(&self) -> usize {
        match self {
            Hash::Packed(p) => p.heap_size(),
            Hash::Table(d) => d.len() * 64 + d.buckets() * 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_until_the_limits() {
        let limits = CompactLimits {
            hash_max_listpack_entries: 4,
            ..CompactLimits::default()
        };
        let mut h = Hash::new();
        for i in 0..4 {
            assert!(h.set(format!("f{i}").as_bytes(), b"v", &limits));
        }
        assert_eq!(h.encoding(), "listpack");
        assert!(!h.set(b"f1", b"w", &limits));
        assert_eq!(h.get(b"f1"), Some(&b"w"[..]));
        let order: Vec<&[u8]> = h.iter().map(|(f, _)| f).collect();
        assert_eq!(order, [&b"f0"[..], b"f1", b"f2", b"f3"]);
        assert!(h.set(b"f4", b"v", &limits));
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), 5);
        assert_eq!(h.get(b"f1"), Some(&b"w"[..]));
        assert!(h.remove(b"f0") && !h.remove(b"f0"));
        let mut long = Hash::new();
        long.set(b"f", &[b'x'; 65], &CompactLimits::default());
        assert_eq!(long.encoding(), "hashtable");
    }
}
