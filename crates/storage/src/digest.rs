//! `DEBUG DIGEST` and `DEBUG DIGEST-VALUE` with Redis's algorithm (debug.c), so a Tessera server
//! and a real Redis holding the same data report the same digest: replication tests compare
//! them across the two.
//!
//! Per key: `mix(key)`, `mix(type as a big-endian u32)`, `mix(value)`, and the text
//! `!!expire!!` XORed in for a key with a time to live (its time does not count); the key
//! digests' SHA-1s are XORed together after the database id was mixed in. `mix(d, x)` is
//! `SHA1(d XOR SHA1(x))`. Logically expired keys that are still stored count, as in Redis.

use crate::db::Db;
use crate::types::stream::StreamId;
use crate::value::Value;

/// Redis's type numbers (`OBJ_STRING` ...), mixed into each key's digest.
fn type_number(v: &Value) -> u32 {
    match v {
        Value::Int(_) | Value::Str(_) | Value::Raw(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::ZSet(_) => 3,
        Value::Hash(_) => 4,
        Value::Stream(_) => 6,
    }
}

/// `xorDigest`: XORs `SHA1(data)` into `digest`.
fn xor_digest(digest: &mut [u8; 20], data: &[u8]) {
    for (d, h) in digest.iter_mut().zip(sha1(data)) {
        *d ^= h;
    }
}

/// `mixDigest`: `digest = SHA1(digest XOR SHA1(data))`.
fn mix_digest(digest: &mut [u8; 20], data: &[u8]) {
    xor_digest(digest, data);
    *digest = sha1(&digest[..]);
}

/// Mixes a value into `digest` as Redis 7's `xorObjectDigest`: its type number, its contents,
/// then `!!expire!!` XORed in when the key has a time to live.
fn object_digest(digest: &mut [u8; 20], v: &Value, volatile: bool) {
    mix_digest(digest, &type_number(v).to_be_bytes());
    match v {
        Value::Int(_) | Value::Str(_) | Value::Raw(_) => {
            if let Some(s) = v.as_str() {
                mix_digest(digest, s.bytes(&mut itoa::Buffer::new()));
            }
        }
        // Ordered elements: mixed in order.
        Value::List(l) => {
            for e in l.0.iter() {
                mix_digest(digest, e.as_bytes());
            }
        }
        // Elements with their scores (%.17g), XORed.
        Value::ZSet(z) => {
            for e in z.iter() {
                let mut element = [0u8; 20];
                mix_digest(&mut element, e.member.as_bytes());
                mix_digest(&mut element, tessera_protocol::num::g17(e.score).as_bytes());
                xor_digest(digest, &element);
            }
        }
        // Unordered members: XOR of their digests.
        Value::Set(s) => {
            for m in s.iter() {
                xor_digest(digest, m.bytes(&mut itoa::Buffer::new()));
            }
        }
        Value::Hash(h) => {
            for (f, val) in h.iter() {
                let mut element = [0u8; 20];
                mix_digest(&mut element, f);
                mix_digest(&mut element, val);
                xor_digest(digest, &element);
            }
        }
        // Entries in order: the ID as `ms.seq`, then each field and value.
        Value::Stream(st) => {
            for e in st.range(StreamId::MIN, StreamId::MAX) {
                mix_digest(digest, format!("{}.{}", e.id.ms, e.id.seq).as_bytes());
                for item in e.items() {
                    mix_digest(digest, item);
                }
            }
        }
    }
    if volatile {
        xor_digest(digest, b"!!expire!!");
    }
}

/// The digest of one key's value (`DEBUG DIGEST-VALUE`).
pub fn value_digest(v: &Value, volatile: bool) -> [u8; 20] {
    let mut digest = [0u8; 20];
    object_digest(&mut digest, v, volatile);
    digest
}

/// The digest of the whole keyspace (`DEBUG DIGEST`): all zeros when it is empty.
pub fn dataset_digest(db: &Db) -> [u8; 20] {
    let mut fin = [0u8; 20];
    if db.is_empty() {
        return fin;
    }
    // The database id (0), as Redis's htonl(j).
    mix_digest(&mut fin, &0u32.to_be_bytes());
    for e in db.iter() {
        let mut digest = [0u8; 20];
        mix_digest(&mut digest, e.key());
        object_digest(&mut digest, e.value(), e.is_volatile());
        // Redis folds in the SHA-1 of each key's digest (`xorDigest(final, digest, 20)`).
        xor_digest(&mut fin, &digest);
    }
    fin
}

/// Lower-case hex of a digest.
pub fn hex(d: &[u8; 20]) -> String {
    use std::fmt::Write as _;
    d.iter().fold(String::with_capacity(40), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-1 (FIPS 180-1), for digests only, not for security.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let bits = (data.len() as u64).wrapping_mul(8);
    let mut tail = data[data.len() / 64 * 64..].to_vec();
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&bits.to_be_bytes());
    for block in data.chunks_exact(64).chain(tail.chunks_exact(64)) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_answers() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(&sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        assert_eq!(
            hex(&sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }
}
