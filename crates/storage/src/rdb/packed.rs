//! Redis's packed blobs as they appear in RDB files: listpacks (written and read), and the
//! older ziplists, zipmaps and intsets (read only). Every reader checks every length against
//! the blob, so a corrupt blob is an error, never a panic or an out-of-bounds read.

use super::RdbError;

/// One element of a packed blob: an integer or a byte string.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Item<'_> {
    /// The element as bytes (integers in decimal).
    pub fn to_vec(self) -> Vec<u8> {
        match self {
            Item::Int(v) => itoa::Buffer::new().format(v).as_bytes().to_vec(),
            Item::Str(s) => s.to_vec(),
        }
    }

    /// The element as an integer, when it is one (strings holding canonical integers too).
    pub fn as_int(self) -> Option<i64> {
        match self {
            Item::Int(v) => Some(v),
            Item::Str(s) => tessera_protocol::num::parse_i64(s),
        }
    }
}

fn corrupt(what: &'static str) -> RdbError {
    RdbError::Corrupt(what)
}

/// A listpack being written (Redis's listpack.c encoding, canonical as `lpAppend` makes it).
pub struct ListpackWriter {
    buf: Vec<u8>,
    count: usize,
}

impl Default for ListpackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ListpackWriter {
    pub fn new() -> Self {
        ListpackWriter {
            buf: vec![0; 6],
            count: 0,
        }
    }

    /// Bytes of the finished listpack so far (header and end byte included).
    pub fn size(&self) -> usize {
        self.buf.len() + 1
    }

    /// Number of elements.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Appends a string; canonical integers are stored as integers, as Redis does.
    pub fn push_str(&mut self, s: &[u8]) {
        if s.len() <= 20
            && let Some(v) = tessera_protocol::num::parse_i64(s)
        {
            return self.push_int(v);
        }
        let start = self.buf.len();
        let n = s.len();
        if n < 64 {
            self.buf.push(0x80 | n as u8);
        } else if n < 4096 {
            self.buf.push(0xE0 | (n >> 8) as u8);
            self.buf.push(n as u8);
        } else {
            self.buf.push(0xF0);
            self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(s);
        self.finish_element(start);
    }

    /// Appends an integer.
    pub fn push_int(&mut self, v: i64) {
        let start = self.buf.len();
        match v {
            0..=127 => self.buf.push(v as u8),
            -4096..=4095 => {
                let u = (v as u64) & 0x1FFF;
                self.buf.push(0xC0 | (u >> 8) as u8);
                self.buf.push(u as u8);
            }
            -32768..=32767 => {
                self.buf.push(0xF1);
                self.buf.extend_from_slice(&(v as i16).to_le_bytes());
            }
            -8388608..=8388607 => {
                self.buf.push(0xF2);
                self.buf.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            -2147483648..=2147483647 => {
                self.buf.push(0xF3);
                self.buf.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                self.buf.push(0xF4);
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.finish_element(start);
    }

    /// Appends an element.
    pub fn push(&mut self, item: Item<'_>) {
        match item {
            Item::Int(v) => self.push_int(v),
            Item::Str(s) => self.push_str(s),
        }
    }

    fn finish_element(&mut self, start: usize) {
        let l = (self.buf.len() - start) as u64;
        // The back length: 7 bits per byte, most significant first, the high bit set on all
        // but the first byte (which is read last, walking backwards).
        let mut back = [0u8; 5];
        let mut n = 1;
        while l >> (7 * n) != 0 {
            n += 1;
        }
        for (i, b) in back[..n].iter_mut().enumerate() {
            let shift = 7 * (n - 1 - i);
            *b = ((l >> shift) & 127) as u8 | if i == 0 { 0 } else { 128 };
        }
        self.buf.extend_from_slice(&back[..n]);
        self.count += 1;
    }

    /// The finished listpack.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xFF);
        let total = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let count = self.count.min(65535) as u16;
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

/// Bytes of a back length for an element of `l` bytes.
fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

fn take(b: &[u8], at: usize, n: usize) -> Result<&[u8], RdbError> {
    b.get(at..at.checked_add(n).ok_or(corrupt("length overflow"))?)
        .ok_or(corrupt("element runs past the end of its blob"))
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// A signed little-endian integer of 1 to 8 bytes.
fn le_int(bytes: &[u8]) -> i64 {
    let mut v = 0u64;
    for (i, &x) in bytes.iter().enumerate() {
        v |= u64::from(x) << (8 * i);
    }
    sign_extend(v, 8 * bytes.len() as u32)
}

/// The elements of a listpack, validated: header length, element encodings, back lengths and
/// the end byte.
pub fn listpack(lp: &[u8]) -> Result<Vec<Item<'_>>, RdbError> {
    if lp.len() < 7 {
        return Err(corrupt("listpack shorter than its header"));
    }
    let total = u32::from_le_bytes(lp[..4].try_into().expect("4 bytes")) as usize;
    if total != lp.len() {
        return Err(corrupt("listpack length does not match its header"));
    }
    let declared = u16::from_le_bytes([lp[4], lp[5]]) as usize;
    let mut items = Vec::with_capacity(declared.min(lp.len()));
    let mut p = 6;
    loop {
        let &b = lp.get(p).ok_or(corrupt("listpack without end byte"))?;
        if b == 0xFF {
            if p + 1 != lp.len() {
                return Err(corrupt("bytes after the listpack end"));
            }
            break;
        }
        let start = p;
        let item = match b {
            0x00..=0x7F => {
                p += 1;
                Item::Int(i64::from(b))
            }
            0x80..=0xBF => {
                let n = (b & 0x3F) as usize;
                let s = take(lp, p + 1, n)?;
                p += 1 + n;
                Item::Str(s)
            }
            0xC0..=0xDF => {
                let lo = *take(lp, p + 1, 1)?.first().expect("1 byte");
                p += 2;
                Item::Int(sign_extend(u64::from(b & 0x1F) << 8 | u64::from(lo), 13))
            }
            0xE0..=0xEF => {
                let lo = *take(lp, p + 1, 1)?.first().expect("1 byte");
                let n = ((b & 0x0F) as usize) << 8 | lo as usize;
                let s = take(lp, p + 2, n)?;
                p += 2 + n;
                Item::Str(s)
            }
            0xF0 => {
                let n = u32::from_le_bytes(take(lp, p + 1, 4)?.try_into().expect("4")) as usize;
                let s = take(lp, p + 5, n)?;
                p += 5 + n;
                Item::Str(s)
            }
            0xF1..=0xF4 => {
                let width = match b {
                    0xF1 => 2,
                    0xF2 => 3,
                    0xF3 => 4,
                    _ => 8,
                };
                let v = le_int(take(lp, p + 1, width)?);
                p += 1 + width;
                Item::Int(v)
            }
            _ => return Err(corrupt("unknown listpack element encoding")),
        };
        let len = p - start;
        let back = take(lp, p, backlen_size(len))?;
        let mut decoded = 0usize;
        for &x in back {
            decoded = decoded << 7 | (x & 127) as usize;
        }
        if decoded != len {
            return Err(corrupt("listpack back length does not match its element"));
        }
        p += back.len();
        items.push(item);
    }
    if declared != 65535 && declared != items.len() {
        return Err(corrupt("listpack element count does not match its header"));
    }
    Ok(items)
}

/// The elements of a ziplist (RDB files before Redis 7.0).
pub fn ziplist(zl: &[u8]) -> Result<Vec<Item<'_>>, RdbError> {
    if zl.len() < 11 {
        return Err(corrupt("ziplist shorter than its header"));
    }
    let total = u32::from_le_bytes(zl[..4].try_into().expect("4 bytes")) as usize;
    if total != zl.len() {
        return Err(corrupt("ziplist length does not match its header"));
    }
    let declared = u16::from_le_bytes([zl[8], zl[9]]) as usize;
    let mut items = Vec::with_capacity(declared.min(zl.len()));
    let mut p = 10;
    let mut prev_len = 0usize;
    loop {
        let &b = zl.get(p).ok_or(corrupt("ziplist without end byte"))?;
        if b == 0xFF {
            if p + 1 != zl.len() {
                return Err(corrupt("bytes after the ziplist end"));
            }
            break;
        }
        let start = p;
        let prevlen = if b < 254 {
            p += 1;
            b as usize
        } else {
            let v = u32::from_le_bytes(take(zl, p + 1, 4)?.try_into().expect("4")) as usize;
            p += 5;
            v
        };
        if prevlen != prev_len {
            return Err(corrupt("ziplist previous-entry length is wrong"));
        }
        let &enc = zl.get(p).ok_or(corrupt("ziplist entry without encoding"))?;
        let item = match enc >> 6 {
            0 => {
                let n = (enc & 0x3F) as usize;
                let s = take(zl, p + 1, n)?;
                p += 1 + n;
                Item::Str(s)
            }
            1 => {
                let lo = *take(zl, p + 1, 1)?.first().expect("1 byte");
                let n = ((enc & 0x3F) as usize) << 8 | lo as usize;
                let s = take(zl, p + 2, n)?;
                p += 2 + n;
                Item::Str(s)
            }
            2 => {
                let n = u32::from_be_bytes(take(zl, p + 1, 4)?.try_into().expect("4")) as usize;
                let s = take(zl, p + 5, n)?;
                p += 5 + n;
                Item::Str(s)
            }
            _ => {
                let (width, v) = match enc {
                    0xC0 => (2, None),
                    0xD0 => (4, None),
                    0xE0 => (8, None),
                    0xF0 => (3, None),
                    0xFE => (1, None),
                    0xF1..=0xFD => (0, Some(i64::from(enc & 0x0F) - 1)),
                    _ => return Err(corrupt("unknown ziplist entry encoding")),
                };
                let v = match v {
                    Some(v) => v,
                    None => le_int(take(zl, p + 1, width)?),
                };
                p += 1 + width;
                Item::Int(v)
            }
        };
        prev_len = p - start;
        items.push(item);
    }
    if declared != 65535 && declared != items.len() {
        return Err(corrupt("ziplist entry count does not match its header"));
    }
    Ok(items)
}

/// The fields and values of a zipmap (hashes in RDB files of Redis 2.4 and older).
pub fn zipmap(zm: &[u8]) -> Result<Vec<Item<'_>>, RdbError> {
    let mut items = Vec::new();
    let mut p = 1;
    let read_len = |p: &mut usize| -> Result<Option<usize>, RdbError> {
        let &b = zm.get(*p).ok_or(corrupt("zipmap without end byte"))?;
        Ok(match b {
            0xFF => None,
            254 => {
                let v = u32::from_le_bytes(take(zm, *p + 1, 4)?.try_into().expect("4")) as usize;
                *p += 5;
                Some(v)
            }
            253 => return Err(corrupt("invalid zipmap length")),
            n => {
                *p += 1;
                Some(n as usize)
            }
        })
    };
    loop {
        let Some(klen) = read_len(&mut p)? else {
            if p + 1 != zm.len() {
                return Err(corrupt("bytes after the zipmap end"));
            }
            break;
        };
        items.push(Item::Str(take(zm, p, klen)?));
        p += klen;
        let vlen = read_len(&mut p)?.ok_or(corrupt("zipmap field without value"))?;
        let free = *take(zm, p, 1)?.first().expect("1 byte") as usize;
        p += 1;
        items.push(Item::Str(take(zm, p, vlen)?));
        p += vlen + free;
    }
    Ok(items)
}

/// The integers of an intset, checked to be strictly ascending.
pub fn intset(is: &[u8]) -> Result<Vec<i64>, RdbError> {
    if is.len() < 8 {
        return Err(corrupt("intset shorter than its header"));
    }
    let width = u32::from_le_bytes(is[..4].try_into().expect("4")) as usize;
    let count = u32::from_le_bytes(is[4..8].try_into().expect("4")) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(corrupt("invalid intset encoding"));
    }
    if count.checked_mul(width).and_then(|n| n.checked_add(8)) != Some(is.len()) {
        return Err(corrupt("intset length does not match its header"));
    }
    let mut out = Vec::with_capacity(count);
    for chunk in is[8..].chunks_exact(width) {
        let v = match width {
            2 => i64::from(i16::from_le_bytes(chunk.try_into().expect("2"))),
            4 => i64::from(i32::from_le_bytes(chunk.try_into().expect("4"))),
            _ => i64::from_le_bytes(chunk.try_into().expect("8")),
        };
        if out.last().is_some_and(|&last| last >= v) {
            return Err(corrupt("intset not in ascending order"));
        }
        out.push(v);
    }
    Ok(out)
}

/// An intset of sorted, distinct integers.
pub fn write_intset(values: &[i64]) -> Vec<u8> {
    let width = values
        .iter()
        .map(|&v| {
            if i16::try_from(v).is_ok() {
                2
            } else if i32::try_from(v).is_ok() {
                4
            } else {
                8
            }
        })
        .max()
        .unwrap_or(2);
    let mut out = Vec::with_capacity(8 + width * values.len());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for &v in values {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpack_round_trip() {
        let mut w = ListpackWriter::new();
        let long = vec![b'x'; 5000];
        let mid = vec![b'y'; 200];
        let ints = [
            0i64,
            127,
            128,
            -1,
            4095,
            -4096,
            32767,
            -32768,
            8388607,
            -8388608,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ];
        for v in ints {
            w.push_int(v);
        }
        w.push_str(b"hello");
        w.push_str(&mid);
        w.push_str(&long);
        w.push_str(b"-17");
        w.push_str(b"007");
        let lp = w.finish();
        let items = listpack(&lp).unwrap();
        let mut want: Vec<Item<'_>> = ints.iter().map(|&v| Item::Int(v)).collect();
        want.extend([
            Item::Str(b"hello"),
            Item::Str(&mid),
            Item::Str(&long),
            Item::Int(-17),
            Item::Str(b"007"),
        ]);
        assert_eq!(items, want);
        // Every truncation is an error, never a panic.
        for n in 0..lp.len() {
            assert!(listpack(&lp[..n]).is_err());
        }
    }

    #[test]
    fn listpack_bytes_match_redis() {
        // RPUSH l a 1 (Redis 7.0, OBJECT ENCODING listpack in a quicklist node).
        let mut w = ListpackWriter::new();
        w.push_str(b"a");
        w.push_str(b"1");
        assert_eq!(
            w.finish(),
            [0x0c, 0, 0, 0, 0x02, 0, 0x81, b'a', 0x02, 0x01, 0x01, 0xff]
        );
    }

    /// A ziplist as Redis 6 writes it for `RPUSH l a 1 -300 100000 big`: the header (total
    /// bytes, tail offset, count), entries with previous-entry lengths, the end byte.
    #[test]
    fn ziplist_of_redis_6() {
        let mut zl = vec![0u8; 10];
        let mut prev = 0u8;
        let mut entry = |zl: &mut Vec<u8>, enc: &[u8]| {
            let start = zl.len();
            zl.push(prev);
            zl.extend_from_slice(enc);
            prev = (zl.len() - start) as u8;
        };
        entry(&mut zl, &[0x01, b'a']); // 6-bit string length
        entry(&mut zl, &[0xF2]); // immediate 1 (0xF1 + 1)
        entry(&mut zl, &[0xC0, 0xD4, 0xFE]); // int16 -300
        entry(&mut zl, &[0xF0, 0xA0, 0x86, 0x01]); // int24 100000
        entry(&mut zl, &[0x03, b'b', b'i', b'g']);
        zl.push(0xFF);
        let total = zl.len() as u32;
        zl[..4].copy_from_slice(&total.to_le_bytes());
        zl[8..10].copy_from_slice(&5u16.to_le_bytes());
        let items = ziplist(&zl).unwrap();
        assert_eq!(
            items,
            [
                Item::Str(b"a"),
                Item::Int(1),
                Item::Int(-300),
                Item::Int(100000),
                Item::Str(b"big")
            ]
        );
        for n in 0..zl.len() {
            assert!(ziplist(&zl[..n]).is_err());
        }
        // A wrong previous-entry length is corruption.
        let mut bad = zl.clone();
        bad[13] = 9;
        assert!(ziplist(&bad).is_err());
    }

    /// A zipmap as Redis 2.4 writes small hashes: `{f: v, ab: 12}`.
    #[test]
    fn zipmap_of_redis_2() {
        let zm = [
            2, 1, b'f', 1, 0, b'v', 2, b'a', b'b', 2, 1, b'1', b'2', b'x', 0xFF,
        ];
        assert_eq!(
            zipmap(&zm).unwrap(),
            [
                Item::Str(b"f"),
                Item::Str(b"v"),
                Item::Str(b"ab"),
                Item::Str(b"12")
            ]
        );
        assert!(zipmap(&zm[..8]).is_err());
    }

    #[test]
    fn intset_round_trip() {
        let v = [-70000i64, -3, 5, 1 << 40];
        assert_eq!(intset(&write_intset(&v)).unwrap(), v);
        assert_eq!(write_intset(&[1, 2]).len(), 12);
        assert!(intset(&write_intset(&[2, 1])).is_err());
    }
}
