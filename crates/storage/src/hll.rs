//! HyperLogLog in Redis's byte format (hyperloglog.c): a string value with the `HYLL`
//! header, 16384 six-bit registers, MurmurHash64A of each element, and Ertl's estimator, so
//! estimates equal Redis's for the same elements.
//!
//! Both of Redis's encodings: a new HLL is sparse (run-length opcodes ZERO, XZERO and VAL),
//! updated in place with Redis's exact algorithm (`hllSparseSet`: split the opcode, then merge
//! adjacent VALs), and promoted to dense when a register passes 32 or the encoding would grow
//! past `hll-sparse-max-bytes`. So the bytes of every HLL equal Redis's for the same commands.

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

/// An empty sparse HyperLogLog (`createHLLObject`): one XZERO opcode covers every register.
pub fn new_sparse() -> Vec<u8> {
    let mut v = vec![0u8; HDR + 2];
    v[..4].copy_from_slice(b"HYLL");
    v[4] = SPARSE;
    xzero_set(&mut v[HDR..], REGISTERS);
    v
}

/// True for the dense encoding.
pub fn is_dense(bytes: &[u8]) -> bool {
    bytes[4] == DENSE
}

const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;

fn is_zero(op: u8) -> bool {
    op & 0xC0 == 0
}

fn is_xzero(op: u8) -> bool {
    op & 0xC0 == 0x40
}

fn val_value(op: u8) -> u8 {
    ((op >> 2) & 0x1F) + 1
}

fn val_len(op: u8) -> usize {
    usize::from(op & 3) + 1
}

fn val_op(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len as u8 - 1)
}

fn xzero_set(p: &mut [u8], len: usize) {
    let l = len - 1;
    p[0] = (l >> 8) as u8 | 0x40;
    p[1] = (l & 0xFF) as u8;
}

/// Appends the opcodes for a run of `len` zero registers.
fn push_zeros(seq: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        let mut op = [0u8; 2];
        xzero_set(&mut op, len);
        seq.extend_from_slice(&op);
    } else {
        seq.push(len as u8 - 1);
    }
}

/// Raises register `index` of a sparse HLL to `count`, as Redis's `hllSparseSet`. Returns
/// whether it changed, or `None` for a corrupt encoding. The HLL turns dense when the value
/// does not fit a VAL opcode or the encoding would pass `max_bytes`.
pub fn sparse_set(bytes: &mut Vec<u8>, index: usize, count: u8, max_bytes: usize) -> Option<bool> {
    if count > VAL_MAX_VALUE {
        return promote_and_set(bytes, index, count);
    }
    // Find the opcode covering `index`.
    let end = bytes.len();
    let mut p = HDR;
    let mut first = 0;
    let mut prev = None;
    let mut span = 0;
    while p < end {
        let op = bytes[p];
        let oplen;
        (span, oplen) = if is_zero(op) {
            (usize::from(op & 0x3F) + 1, 1)
        } else if op & 0x80 != 0 {
            (val_len(op), 1)
        } else {
            let lo = usize::from(*bytes.get(p + 1)?);
            ((usize::from(op & 0x3F) << 8 | lo) + 1, 2)
        };
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= end {
        return None;
    }
    let op = bytes[p];
    let last = first + span - 1;
    if op & 0x80 != 0 {
        let old = val_value(op);
        if old >= count {
            return Some(false);
        }
        if span == 1 {
            bytes[p] = val_op(count, 1);
            merge_vals(bytes, prev.unwrap_or(HDR));
            invalidate_cache(bytes);
            return Some(true);
        }
    }
    if is_zero(op) && span == 1 {
        bytes[p] = val_op(count, 1);
        merge_vals(bytes, prev.unwrap_or(HDR));
        invalidate_cache(bytes);
        return Some(true);
    }
    // Split the opcode: [run before] VAL(count) [run after].
    let mut seq = Vec::with_capacity(5);
    if op & 0x80 == 0 {
        if index != first {
            push_zeros(&mut seq, index - first);
        }
        seq.push(val_op(count, 1));
        if index != last {
            push_zeros(&mut seq, last - index);
        }
    } else {
        let cur = val_value(op);
        if index != first {
            seq.push(val_op(cur, index - first));
        }
        seq.push(val_op(count, 1));
        if index != last {
            seq.push(val_op(cur, last - index));
        }
    }
    let oldlen = if is_xzero(op) { 2 } else { 1 };
    if seq.len() > oldlen && bytes.len() + seq.len() - oldlen > max_bytes {
        return promote_and_set(bytes, index, count);
    }
    bytes.splice(p..p + oldlen, seq);
    merge_vals(bytes, prev.unwrap_or(HDR));
    invalidate_cache(bytes);
    Some(true)
}

/// Merges adjacent VAL opcodes of equal value, scanning up to 5 opcodes from `p` (step 4 of
/// Redis's `hllSparseSet`).
fn merge_vals(bytes: &mut Vec<u8>, mut p: usize) {
    let mut scan = 5;
    while p < bytes.len() && scan > 0 {
        scan -= 1;
        let op = bytes[p];
        if is_xzero(op) {
            p += 2;
            continue;
        }
        if is_zero(op) {
            p += 1;
            continue;
        }
        if let Some(&next) = bytes.get(p + 1)
            && next & 0x80 != 0
            && val_value(op) == val_value(next)
        {
            let len = val_len(op) + val_len(next);
            if len <= VAL_MAX_LEN {
                bytes[p + 1] = val_op(val_value(op), len);
                bytes.remove(p);
                continue;
            }
        }
        p += 1;
    }
}

fn promote_and_set(bytes: &mut Vec<u8>, index: usize, count: u8) -> Option<bool> {
    if !make_dense(bytes) {
        return None;
    }
    set_dense(&mut bytes[HDR..], index, count);
    invalidate_cache(bytes);
    Some(true)
}

/// Sets register `index` to at least `count` in either encoding; `None` for a corrupt HLL.
pub fn set_register(
    bytes: &mut Vec<u8>,
    index: usize,
    count: u8,
    max_bytes: usize,
) -> Option<bool> {
    if bytes[4] == DENSE {
        let regs = &mut bytes[HDR..];
        if get_dense(regs, index) < count {
            set_dense(regs, index, count);
            return Some(true);
        }
        return Some(false);
    }
    sparse_set(bytes, index, count, max_bytes)
}

/// Adds an element (`hllAdd`); whether a register grew, `None` for a corrupt HLL.
pub fn add(bytes: &mut Vec<u8>, element: &[u8], max_bytes: usize) -> Option<bool> {
    let (i, count) = pattern(element);
    set_register(bytes, i, count, max_bytes)
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

/// The opcodes of a sparse HLL as `PFDEBUG DECODE` prints them; `None` for a dense one.
pub fn decode_sparse(bytes: &[u8]) -> Option<String> {
    if bytes[4] != SPARSE {
        return None;
    }
    let body = &bytes[HDR..];
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let op = body[i];
        if is_zero(op) {
            out.push(format!("z:{}", usize::from(op & 0x3F) + 1));
            i += 1;
        } else if is_xzero(op) {
            let lo = usize::from(body.get(i + 1).copied().unwrap_or(0));
            out.push(format!("Z:{}", (usize::from(op & 0x3F) << 8 | lo) + 1));
            i += 2;
        } else {
            out.push(format!("v:{},{}", val_value(op), val_len(op)));
            i += 1;
        }
    }
    Some(out.join(" "))
}

/// `PFSELFTEST`: every register value reads back in the dense encoding, the sparse and dense
/// encodings hold the same registers as elements are added, and the estimate stays within
/// five standard errors (1.04/sqrt(m)) at growing cardinalities.
pub fn self_test() -> Result<(), String> {
    let mut dense = new_dense();
    for i in 0..REGISTERS {
        set_dense(&mut dense[HDR..], i, (i * 7 % 64) as u8);
    }
    for i in 0..REGISTERS {
        let got = get_dense(&dense[HDR..], i);
        if got != (i * 7 % 64) as u8 {
            return Err(format!("register {i} reads {got}"));
        }
    }
    let mut sparse = new_sparse();
    let mut dense = new_dense();
    let relerr = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1u64;
    for n in 1..=1_000_000u64 {
        let e = n.to_le_bytes();
        add(&mut sparse, &e, 3000).ok_or("corrupt sparse encoding")?;
        add(&mut dense, &e, 3000).ok_or("corrupt dense encoding")?;
        if n == checkpoint {
            checkpoint *= 10;
            let (a, b) = (registers(&sparse), registers(&dense));
            if a.is_none() || a != b {
                return Err(format!("sparse and dense registers differ at {n}"));
            }
            let est = count(&b.unwrap_or_default()) as f64;
            let err = (est - n as f64).abs() / n as f64;
            let max = if n < 10 { 0.2 } else { relerr * 5.0 };
            if err > max {
                return Err(format!("estimate {est} for {n} elements"));
            }
        }
    }
    Ok(())
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
        let mut h = new_sparse();
        for i in 0..100_000 {
            add(&mut h, format!("e{i}").as_bytes(), 3000).unwrap();
        }
        assert!(is_dense(&h), "promoted past 3000 bytes");
        let n = count(&registers(&h).unwrap());
        assert!((98_000..102_000).contains(&n), "{n}");
        assert_eq!(count(&registers(&new_dense()).unwrap()), 0);
        assert_eq!(count(&registers(&new_sparse()).unwrap()), 0);
    }

    #[test]
    fn sparse_updates_split_and_merge_opcodes() {
        let mut h = new_sparse();
        assert_eq!(&h[HDR..], [0x7F, 0xFF]);
        // A register in the middle splits XZERO into XZERO, VAL, XZERO.
        assert_eq!(sparse_set(&mut h, 100, 3, 3000), Some(true));
        assert_eq!(h.len(), HDR + 5);
        assert_eq!(sparse_set(&mut h, 100, 2, 3000), Some(false));
        // Its neighbour with the same value merges into one VAL of length 2.
        assert_eq!(sparse_set(&mut h, 101, 3, 3000), Some(true));
        let regs = registers(&h).unwrap();
        assert_eq!((regs[99], regs[100], regs[101], regs[102]), (0, 3, 3, 0));
        assert!(h[HDR..].contains(&val_op(3, 2)));
        // Values above 32 do not fit a VAL opcode: the HLL turns dense.
        assert_eq!(sparse_set(&mut h, 5, 40, 3000), Some(true));
        assert!(is_dense(&h));
        assert_eq!(registers(&h).unwrap()[5], 40);
    }
}
