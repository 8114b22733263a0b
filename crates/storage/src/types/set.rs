//! [`Set`]: sets of byte strings, a sorted integer array (`intset`) while every member is an
//! integer and there are at most `set-max-intset-entries`, a [`Dict`] (`hashtable`) otherwise.

use super::CompactLimits;
use crate::bytes::SmallBytes;
use crate::dict::{Dict, Keyed, hash};
use crate::value::StrView;

/// One member of a hashtable-encoded set.
#[derive(Debug)]
pub struct Member(pub SmallBytes);

impl Keyed for Member {
    fn key(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A set value.
pub enum Set {
    Ints(Vec<i64>),
    /// Boxed so a small (intset) set stays a 32-byte value.
    Table(Box<Dict<Member>>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Ints(Vec::new())
    }
}

impl std::fmt::Debug for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(
                self.iter()
                    .map(|m| String::from_utf8_lossy(&m.to_vec()).into_owned()),
            )
            .finish()
    }
}

impl Clone for Set {
    fn clone(&self) -> Self {
        match self {
            Set::Ints(v) => Set::Ints(v.clone()),
            Set::Table(d) => {
                let mut n = Dict::new();
                for m in d.iter() {
                    n.insert_new(Member(m.0.clone()), hash(m.0.as_bytes()));
                }
                Set::Table(Box::new(n))
            }
        }
    }
}

impl PartialEq for Set {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|m| other.contains(&m.to_vec()))
    }
}

/// A member as a canonical integer, the way an intset stores it.
fn as_int(member: &[u8]) -> Option<i64> {
    (member.len() <= 20)
        .then(|| tessera_protocol::num::parse_i64(member))
        .flatten()
}

impl Set {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            Set::Ints(v) => v.len(),
            Set::Table(d) => d.len(),
        }
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Ints(_) => "intset",
            Set::Table(_) => "hashtable",
        }
    }

    /// True if `member` is in the set.
    pub fn contains(&self, member: &[u8]) -> bool {
        match self {
            Set::Ints(v) => as_int(member).is_some_and(|n| v.binary_search(&n).is_ok()),
            Set::Table(d) => d.get(member, hash(member)).is_some(),
        }
    }

    /// Adds `member`. Returns true if it was not there.
    pub fn add(&mut self, member: &[u8], limits: &CompactLimits) -> bool {
        if let Set::Ints(v) = self {
            if let Some(n) = as_int(member) {
                match v.binary_search(&n) {
                    Ok(_) => return false,
                    Err(pos) if v.len() < limits.set_max_intset_entries => {
                        v.insert(pos, n);
                        return true;
                    }
                    Err(_) => {}
                }
            }
            self.convert();
        }
        let Set::Table(d) = self else {
            unreachable!("converted above")
        };
        let h = hash(member);
        if d.get(member, h).is_some() {
            return false;
        }
        d.insert_new(Member(SmallBytes::new(member)), h);
        true
    }

    fn convert(&mut self) {
        let Set::Ints(v) = self else { return };
        let mut d = Dict::new();
        for n in v.iter() {
            let s = itoa::Buffer::new().format(*n).as_bytes().to_vec();
            let h = hash(&s);
            d.insert_new(Member(SmallBytes::from_vec(s)), h);
        }
        *self = Set::Table(Box::new(d));
    }

    /// Removes `member`. Returns true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self {
            Set::Ints(v) => match as_int(member).map(|n| v.binary_search(&n)) {
                Some(Ok(pos)) => {
                    v.remove(pos);
                    true
                }
                _ => false,
            },
            Set::Table(d) => d.remove(member, hash(member)).is_some(),
        }
    }

    /// Every member (ascending while an intset).
    pub fn iter(&self) -> Box<dyn Iterator<Item = StrView<'_>> + '_> {
        match self {
            Set::Ints(v) => Box::new(v.iter().map(|n| StrView::Int(*n))),
            Set::Table(d) => Box::new(d.iter().map(|m| StrView::Bytes(m.0.as_bytes()))),
        }
    }

    /// A random member.
    pub fn random(&self, rng: &mut impl rand::Rng) -> Option<StrView<'_>> {
        match self {
            Set::Ints(v) => (!v.is_empty()).then(|| StrView::Int(v[rng.random_range(0..v.len())])),
            Set::Table(d) => d.random(rng).map(|m| StrView::Bytes(m.0.as_bytes())),
        }
    }

    /// One SSCAN step: an intset is returned whole with cursor 0, as Redis does.
    pub fn scan<'a>(&'a self, cursor: u64, count: usize, mut f: impl FnMut(StrView<'a>)) -> u64 {
        match self {
            Set::Ints(v) => {
                v.iter().for_each(|n| f(StrView::Int(*n)));
                0
            }
            Set::Table(d) => {
                let mut cursor = cursor;
                let mut emitted = 0;
                let mut budget = count.saturating_mul(10).max(1);
                loop {
                    cursor = d.scan(cursor, |m| {
                        emitted += 1;
                        f(StrView::Bytes(m.0.as_bytes()));
                    });
                    budget -= 1;
                    if cursor == 0 || emitted >= count || budget == 0 {
                        return cursor;
                    }
                }
            }
        }
    }

    /// Approximate bytes allocated.
    pub fn heap_size(&self) -> usize {
        match self {
            Set::Ints(v) => v.capacity() * 8,
            Set::Table(d) => d.len() * 32 + d.buckets() * 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intset_until_a_string_or_the_limit() {
        let limits = CompactLimits {
            set_max_intset_entries: 3,
            ..CompactLimits::default()
        };
        let mut s = Set::new();
        for m in [&b"3"[..], b"1", b"2"] {
            assert!(s.add(m, &limits));
        }
        assert!(!s.add(b"2", &limits));
        assert_eq!(s.encoding(), "intset");
        let members: Vec<Vec<u8>> = s.iter().map(|m| m.to_vec()).collect();
        assert_eq!(members, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        assert!(!s.contains(b"01"));
        assert!(s.add(b"4", &limits));
        assert_eq!(s.encoding(), "hashtable");
        assert!(s.contains(b"1") && s.contains(b"4"));
        let mut t = Set::new();
        t.add(b"a", &CompactLimits::default());
        assert_eq!(t.encoding(), "hashtable");
        assert!(t.remove(b"a") && t.is_empty());
    }
}
