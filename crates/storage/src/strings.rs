//! Algorithms on string values that are more than a byte copy: bit counting and searching,
//! BITOP, BITFIELD integers with overflow control, and the longest common subsequence. Ported
//! from Redis's bitops.c and t_string.c, including their edge cases.

/// Number of set bits in `s`, a word at a time.
pub fn popcount(s: &[u8]) -> u64 {
    let mut words = s.chunks_exact(8);
    let mut n: u64 = 0;
    for w in &mut words {
        n += u64::from(u64::from_ne_bytes(w.try_into().expect("chunks of 8")).count_ones());
    }
    n + words
        .remainder()
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum::<u64>()
}

/// Redis's `redisBitpos`: the position of the first bit equal to `bit` in `s`. When looking for
/// a clear bit and there is none, the position just past the end (as if the string were padded
/// with zeros); when looking for a set bit and there is none, -1.
pub fn bitpos(s: &[u8], bit: bool) -> i64 {
    for (i, &b) in s.iter().enumerate() {
        let b = if bit { b } else { !b };
        if b != 0 {
            return i as i64 * 8 + i64::from(b.leading_zeros() as u8);
        }
    }
    if bit { -1 } else { s.len() as i64 * 8 }
}

/// A BITOP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP over `sources` (missing keys as empty strings): the result is as long as the longest
/// source; shorter sources count as zero-padded.
pub fn bitop(op: BitOp, sources: &[&[u8]]) -> Vec<u8> {
    let len = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    let byte = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    (0..len)
        .map(|i| match op {
            BitOp::Not => !byte(sources[0], i),
            BitOp::And => sources.iter().fold(0xFF, |acc, s| acc & byte(s, i)),
            BitOp::Or => sources.iter().fold(0, |acc, s| acc | byte(s, i)),
            BitOp::Xor => sources.iter().fold(0, |acc, s| acc ^ byte(s, i)),
        })
        .collect()
}

/// The value of bit `offset` (0 past the end).
pub fn get_bit(s: &[u8], offset: u64) -> bool {
    let byte = (offset >> 3) as usize;
    s.get(byte).is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

/// Sets bit `offset`, growing `s` with zero bytes as needed; returns the old bit.
pub fn set_bit(s: &mut Vec<u8>, offset: u64, on: bool) -> bool {
    let byte = (offset >> 3) as usize;
    if s.len() <= byte {
        s.resize(byte + 1, 0);
    }
    let mask = 0x80 >> (offset & 7);
    let old = s[byte] & mask != 0;
    if on {
        s[byte] |= mask;
    } else {
        s[byte] &= !mask;
    }
    old
}

/// A BITFIELD integer type: `i1`..`i64` or `u1`..`u63`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldType {
    pub signed: bool,
    pub bits: u32,
}

impl FieldType {
    /// Parses `i8`, `u16`, ... (Redis refuses u64).
    pub fn parse(s: &[u8]) -> Option<FieldType> {
        let (signed, digits) = match s.first()? {
            b'i' | b'I' => (true, &s[1..]),
            b'u' | b'U' => (false, &s[1..]),
            _ => return None,
        };
        let bits: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let max = if signed { 64 } else { 63 };
        (1..=max)
            .contains(&bits)
            .then_some(FieldType { signed, bits })
    }
}

/// BITFIELD overflow behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// Reads an unsigned field of `bits` bits at bit `offset` (zero past the end).
fn get_unsigned(s: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for i in 0..u64::from(bits) {
        v = (v << 1) | u64::from(get_bit(s, offset + i));
    }
    v
}

/// Reads a field as Redis's BITFIELD GET does.
pub fn field_get(s: &[u8], offset: u64, t: FieldType) -> i64 {
    let raw = get_unsigned(s, offset, t.bits);
    if t.signed && t.bits < 64 && raw & (1 << (t.bits - 1)) != 0 {
        // Sign-extend.
        (raw | (u64::MAX << t.bits)) as i64
    } else {
        raw as i64
    }
}

/// Writes a field (the low `bits` bits of `value`), growing `s` as needed.
pub fn field_set(s: &mut Vec<u8>, offset: u64, t: FieldType, value: i64) {
    let v = value as u64;
    for i in 0..u64::from(t.bits) {
        let bit = (v >> (u64::from(t.bits) - 1 - i)) & 1 != 0;
        set_bit(s, offset + i, bit);
    }
}

/// Applies `value + incr` (or a SET of `incr` when `value` is 0 and `set` is true) with the
/// overflow policy; `None` means FAIL refused the operation (Redis's `checkSignedBitfieldOverflow`
/// and `checkUnsignedBitfieldOverflow`).
pub fn field_add(value: i64, incr: i64, t: FieldType, overflow: Overflow) -> Option<i64> {
    let bits = t.bits;
    if t.signed {
        let max: i128 = if bits == 64 {
            i64::MAX as i128
        } else {
            (1i128 << (bits - 1)) - 1
        };
        let min: i128 = -max - 1;
        let sum = value as i128 + incr as i128;
        if sum > max || sum < min {
            return match overflow {
                Overflow::Fail => None,
                Overflow::Sat => Some(if sum > max { max as i64 } else { min as i64 }),
                Overflow::Wrap => {
                    let m = sum as u64;
                    let mask = if bits == 64 {
                        u64::MAX
                    } else {
                        (1u64 << bits) - 1
                    };
                    let low = m & mask;
                    Some(if bits < 64 && low & (1 << (bits - 1)) != 0 {
                        (low | !mask) as i64
                    } else {
                        low as i64
                    })
                }
            };
        }
        Some(sum as i64)
    } else {
        let max: i128 = (1i128 << bits) - 1;
        let sum = value as u64 as i128 + incr as i128;
        if sum > max || sum < 0 {
            return match overflow {
                Overflow::Fail => None,
                Overflow::Sat => Some(if sum > max { max as i64 } else { 0 }),
                Overflow::Wrap => Some((sum as u64 & max as u64) as i64),
            };
        }
        Some(sum as i64)
    }
}

/// The value BITFIELD SET stores for `value` under the overflow policy (`None`: FAIL refused).
/// Redis checks an unsigned SET value as a `u64`, so a negative value saturates to the maximum.
pub fn field_set_value(value: i64, t: FieldType, overflow: Overflow) -> Option<i64> {
    if t.signed {
        return field_add(0, value, t, overflow);
    }
    let max = (1u64 << t.bits) - 1;
    let v = value as u64;
    if v <= max {
        return Some(v as i64);
    }
    match overflow {
        Overflow::Fail => None,
        Overflow::Sat => Some(max as i64),
        Overflow::Wrap => Some((v & max) as i64),
    }
}

/// A common-subsequence match of LCS IDX: ranges in A and B (inclusive) and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LcsMatch {
    pub a: (u32, u32),
    pub b: (u32, u32),
    pub len: u32,
}

/// The result of LCS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lcs {
    pub len: u32,
    pub string: Vec<u8>,
    /// Matches from the end of the strings backwards, as Redis reports them.
    pub matches: Vec<LcsMatch>,
}

/// The longest common subsequence of `a` and `b` with Redis's dynamic program and its
/// backtracking, so `IDX` ranges come out exactly as Redis reports them. The caller checks the
/// table size (`(a+1)*(b+1)*4` bytes) against its memory limit first.
pub fn lcs(a: &[u8], b: &[u8], min_match_len: u32) -> Lcs {
    let (alen, blen) = (a.len(), b.len());
    let w = blen + 1;
    let mut dp = vec![0u32; (alen + 1) * w];
    for i in 1..=alen {
        for j in 1..=blen {
            dp[i * w + j] = if a[i - 1] == b[j - 1] {
                dp[(i - 1) * w + j - 1] + 1
            } else {
                dp[(i - 1) * w + j].max(dp[i * w + j - 1])
            };
        }
    }
    let total = dp[alen * w + blen];
    let mut result = vec![0u8; total as usize];
    let mut matches = Vec::new();
    let (mut i, mut j, mut idx) = (alen, blen, total as usize);
    let none = alen as u32;
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (none, 0u32, 0u32, 0u32);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if a_start == none {
                a_start = (i - 1) as u32;
                a_end = a_start;
                b_start = (j - 1) as u32;
                b_end = b_start;
            } else if a_start == i as u32 && b_start == j as u32 {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if dp[(i - 1) * w + j] > dp[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != none {
                emit = true;
            }
        }
        let match_len = a_end.wrapping_sub(a_start).wrapping_add(1);
        if emit {
            if min_match_len == 0 || match_len >= min_match_len {
                matches.push(LcsMatch {
                    a: (a_start, a_end),
                    b: (b_start, b_end),
                    len: match_len,
                });
            }
            a_start = none;
        }
    }
    Lcs {
        len: total,
        string: result,
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_positions() {
        assert_eq!(popcount(b"foobar"), 26);
        assert_eq!(popcount(&[0xFF; 17]), 136);
        assert_eq!(bitpos(&[0xFF, 0xF0, 0x00], false), 12);
        assert_eq!(bitpos(&[0x00, 0x0F], true), 12);
        assert_eq!(bitpos(&[0x00], true), -1);
        assert_eq!(bitpos(&[0xFF], false), 8);
    }

    #[test]
    fn bits_and_ops() {
        let mut s = Vec::new();
        assert!(!set_bit(&mut s, 7, true));
        assert_eq!(s, [1]);
        assert!(get_bit(&s, 7));
        assert!(!get_bit(&s, 100));
        assert_eq!(bitop(BitOp::And, &[b"\xff\x0f", b"\x0f"]), b"\x0f\x00");
        assert_eq!(bitop(BitOp::Or, &[b"\xf0", b"\x0f\x01"]), b"\xff\x01");
        assert_eq!(bitop(BitOp::Not, &[b"\x0f"]), b"\xf0");
    }

    #[test]
    fn bitfields_with_overflow() {
        let i8t = FieldType::parse(b"i8").unwrap();
        let u2 = FieldType::parse(b"u2").unwrap();
        assert!(FieldType::parse(b"u64").is_none());
        assert!(FieldType::parse(b"i65").is_none());
        assert_eq!(field_add(127, 1, i8t, Overflow::Wrap), Some(-128));
        assert_eq!(field_add(127, 1, i8t, Overflow::Sat), Some(127));
        assert_eq!(field_add(127, 1, i8t, Overflow::Fail), None);
        assert_eq!(field_add(3, 1, u2, Overflow::Wrap), Some(0));
        assert_eq!(field_add(0, -1, u2, Overflow::Sat), Some(0));
        let mut s = Vec::new();
        field_set(&mut s, 0, i8t, -1);
        assert_eq!(s, [0xFF]);
        assert_eq!(field_get(&s, 0, i8t), -1);
        assert_eq!(field_get(&s, 4, u2), 3);
    }

    #[test]
    fn lcs_like_redis() {
        let r = lcs(b"ohmytext", b"mynewtext", 0);
        assert_eq!(r.string, b"mytext");
        assert_eq!(r.len, 6);
        assert_eq!(
            r.matches,
            [
                LcsMatch {
                    a: (4, 7),
                    b: (5, 8),
                    len: 4
                },
                LcsMatch {
                    a: (2, 3),
                    b: (0, 1),
                    len: 2
                }
            ]
        );
        assert_eq!(lcs(b"ohmytext", b"mynewtext", 4).matches.len(), 1);
    }
}
