//! HyperLogLog in Redis's byte format (hyperloglog.c): a string value with the `HYLL`
//! header, 16384 six-bit registers, MurmurHash64A of each element, and Ertl's estimator, so
//! estimates equal Redis's for the same elements.
//!
//! Tessera writes the dense encoding; it reads both encodings, so sparse HLLs made by Redis
//! (restored or SET byte for byte) count and merge correctly and become dense on the first
//! write. TODO(#3): write the sparse encoding for small HLLs as Redis does (memory, and GET /
//! DUMP bytes equal to Redis's).

pub const REGISTERS: usize = 1 << 14;
const P: u32 = 14;
const Q: usize = 64 - P as usize;
const BITS: usize = 6;
const MAX: u8 = (1 << BITS) - 1;
const HDR: usize = 16;
pub const DENSE_SIZE: usize = HDR + (REGISTERS * BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// Redis's `MurmurHash64A` (little-endian reads).
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element goes to and the run length of zeros it sets (`hllPatLen`).
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn get_dense(regs: &[u8], i: usize) -> u8 {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let b0 = u16::from(regs[byte]);
    let b1 = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) as u8) & MAX
}

fn set_dense(regs: &mut [u8], i: usize, v: u8) {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let v = u16::from(v);
    regs[byte] &= !((u16::from(MAX) << fb) as u8);
    regs[byte] |= (v << fb) as u8;
    if let Some(b) = regs.get_mut(byte + 1) {
        *b &= !((u16::from(MAX) >> (8 - fb)) as u8);
        *b |= (v >> (8 - fb)) as u8;
    }
}

/// True if `bytes` is a HyperLogLog Redis would accept (`isHLLObjectOrReply`).
pub fn is_valid(bytes: &[u8]) -> bool {
    bytes.len() >= HDR
        && &bytes[..4] == b"HYLL"
        && bytes[4] <= SPARSE
        && (bytes[4] != DENSE || bytes.len() == DENSE_SIZE)
}

/// An empty dense HyperLogLog.
pub fn new_dense() -> Vec<u8> {
    let mut v = vec![0u8; DENSE_SIZE];
    v[..4].copy_from_slice(b"HYLL");
    v
}

/// The registers of a valid HyperLogLog, one byte each; `None` for a corrupt sparse encoding.
pub fn registers(bytes: &[u8]) -> Option<Vec<u8>> {
    let body = &bytes[HDR..];
    if bytes[4] == DENSE {
        return Some((0..REGISTERS).map(|i| get_dense(body, i)).collect());
    }
    let mut regs = Vec::with_capacity(REGISTERS);
    let mut i = 0;
    while i < body.len() {
        let op = body[i];
        if op & 0xC0 == 0 {
            regs.resize(regs.len() + usize::from(op & 0x3F) + 1, 0);
            i += 1;
        } else if op & 0xC0 == 0x40 {
            let run = (usize::from(op & 0x3F) << 8 | usize::from(*body.get(i + 1)?)) + 1;
            regs.resize(regs.len() + run, 0);
            i += 2;
        } else {
            let v = ((op >> 2) & 0x1F) + 1;
            regs.resize(regs.len() + usize::from(op & 3) + 1, v);
            i += 1;
        }
        if regs.len() > REGISTERS {
            return None;
        }
    }
    (regs.len() == REGISTERS).then_some(regs)
}

/// Makes `bytes` dense (a sparse HLL is expanded). Returns false when it is corrupt.
pub fn make_dense(bytes: &mut Vec<u8>) -> bool {
    if bytes[4] == DENSE {
        return true;
    }
    let Some(regs) = registers(bytes) else {
        return false;
    };
    let mut dense = new_dense();
    dense[8..16].copy_from_slice(&bytes[8..16]);
    for (i, &v) in regs.iter().enumerate() {
        if v > 0 {
            set_dense(&mut dense[HDR..], i, v);
        }
    }
    *bytes = dense;
    true
}

/// Adds an element to a dense HLL; true if a register grew (the cached count is then stale).
pub fn add_dense(bytes: &mut [u8], element: &[u8]) -> bool {
    let (i, count) = pattern(element);
    let regs = &mut bytes[HDR..];
    if get_dense(regs, i) < count {
        set_dense(regs, i, count);
        true
    } else {
        false
    }
}

/// Sets every register of a dense HLL to at least `regs[i]`.
pub fn merge_into_dense(bytes: &mut [u8], regs: &[u8]) {
    let body = &mut bytes[HDR..];
    for (i, &v) in regs.iter().enumerate() {
        if get_dense(body, i) < v {
            set_dense(body, i, v);
        }
    }
}

pub fn invalidate_cache(bytes: &mut [u8]) {
    bytes[15] |= 0x80;
}

/// The cached count, when valid.
pub fn cached(bytes: &[u8]) -> Option<u64> {
    (bytes[15] & 0x80 == 0).then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8")))
}

pub fn set_cache(bytes: &mut [u8], count: u64) {
    bytes[8..16].copy_from_slice(&count.to_le_bytes());
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// Redis's `hllCount` over registers (Ertl's estimator).
pub fn count(regs: &[u8]) -> u64 {
    let m = REGISTERS as f64;
    let mut histo = [0u32; 64];
    for &r in regs {
        histo[usize::from(r)] += 1;
    }
    let mut z = m * tau((m - f64::from(histo[Q + 1])) / m);
    for j in (1..=Q).rev() {
        z += f64::from(histo[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histo[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip() {
        let mut h = new_dense();
        for i in [0, 1, 2, 3, 4, 5, 1000, REGISTERS - 1] {
            set_dense(&mut h[HDR..], i, (i % 63) as u8 + 1);
        }
        for i in [0, 1, 2, 3, 4, 5, 1000, REGISTERS - 1] {
            assert_eq!(get_dense(&h[HDR..], i), (i % 63) as u8 + 1);
        }
        assert_eq!(get_dense(&h[HDR..], 6), 0);
    }

    #[test]
    fn estimates_are_close() {
        let mut h = new_dense();
        for i in 0..100_000 {
            add_dense(&mut h, format!("e{i}").as_bytes());
        }
        let n = count(&registers(&h).unwrap());
        assert!((98_000..102_000).contains(&n), "{n}");
        assert_eq!(count(&registers(&new_dense()).unwrap()), 0);
    }
}
