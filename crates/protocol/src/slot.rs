//! Redis Cluster hash slots: `CRC16(key) mod 16384`, where a non-empty `{...}` section (the first
//! `{` and the first `}` after it) replaces the key, so related keys can share a slot.

use crc::{CRC_16_XMODEM, Crc, Table};

/// Number of hash slots in a Redis Cluster keyspace.
pub const SLOTS: usize = 16384;

/// Slice-by-16 tables: a typical key is hashed in one or two steps.
const CRC16: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_XMODEM);

/// The hash slot of `key`, exactly as Redis Cluster computes it (`keyHashSlot` in cluster.c).
#[inline]
pub fn key_hash_slot(key: &[u8]) -> u16 {
    crc_slot(hash_tag(key).unwrap_or(key))
}

#[inline]
fn crc_slot(hashed: &[u8]) -> u16 {
    CRC16.checksum(hashed) & (SLOTS as u16 - 1)
}

/// The one slot of every key a glob pattern can match, if there is one (Redis's
/// `patternHashSlot`): `None` when a wildcard, class or escape comes before a non-empty
/// `{tag}` closes.
pub fn pattern_hash_slot(pattern: &[u8]) -> Option<u16> {
    // Where the first `{` is; `Empty` after `{}`, which leaves the whole pattern hashed.
    #[derive(PartialEq)]
    enum Tag {
        None,
        Open(usize),
        Empty,
    }
    let mut tag = Tag::None;
    for (i, &c) in pattern.iter().enumerate() {
        match c {
            b'*' | b'?' | b'[' | b'\\' => return None,
            b'{' if tag == Tag::None => tag = Tag::Open(i),
            b'}' => {
                if let Tag::Open(open) = tag {
                    if i == open + 1 {
                        tag = Tag::Empty;
                    } else {
                        return Some(crc_slot(&pattern[open + 1..i]));
                    }
                }
            }
            _ => {}
        }
    }
    Some(crc_slot(pattern))
}

/// The hash tag of a key: the bytes between the first `{` and the first `}` after it, if that
/// section is non-empty.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = memchr::memchr(b'{', key)?;
    let rest = &key[open + 1..];
    let close = memchr::memchr(b'}', rest)?;
    (close > 0).then(|| &rest[..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from Redis Cluster's specification and `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        assert_eq!(key_hash_slot(b"123456789"), 12739);
        assert_eq!(key_hash_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_hash_slot(b"{user1000}.followers"), 3443);
        assert_eq!(key_hash_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_hash_slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(pattern_hash_slot(b"{user1000}.*"), Some(3443));
        assert_eq!(pattern_hash_slot(b"foo"), Some(key_hash_slot(b"foo")));
        assert_eq!(pattern_hash_slot(b"w_*"), None);
        assert_eq!(pattern_hash_slot(b"w_{a*}"), None);
        assert_eq!(pattern_hash_slot(b"{}{a}*"), None);
        assert_eq!(pattern_hash_slot(b"x\\{a}"), None);
        assert_eq!(key_hash_slot(b"foo{bar}{zap}"), 5061);
        assert_eq!(key_hash_slot(b"foo{bar}{zap}"), key_hash_slot(b"bar"));
        assert_eq!(key_hash_slot(b""), 0);
        assert_eq!(key_hash_slot(b"foo"), 12182);
        assert_eq!(key_hash_slot(b"{"), key_hash_slot(b"{"));
        assert_eq!(key_hash_slot(b"a{}"), key_hash_slot(b"a{}"));
    }
}
