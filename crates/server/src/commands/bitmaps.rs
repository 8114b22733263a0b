//! Bitmap commands on string values: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD,
//! BITFIELD_RO. The bit algorithms live in `tessera_storage::strings`.

use tessera_protocol::Args;
use tessera_storage::strings::{self, BitOp, FieldType, Overflow};
use tessera_storage::{Expiry, OpError, Value};

use super::{int_arg, is};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::{GENERIC, STRING};
use crate::server::Server;

/// Parses a bit offset (Redis's `getBitOffsetFromArgument`): `N`, or `#N` in units of `bits`
/// when `hash_ok`, below `proto-max-bulk-len * 8`.
fn bit_offset(s: &Server, a: &[u8], hash_ok: bool, bits: u32) -> Result<u64, CmdError> {
    let err = || CmdError::Op(OpError::BitOffset);
    let (mul, digits) = match a.first() {
        Some(b'#') if hash_ok => (u64::from(bits), &a[1..]),
        _ => (1, a),
    };
    let n = tessera_protocol::num::parse_i64(digits)
        .filter(|&n| n >= 0)
        .ok_or_else(err)?;
    let offset = (n as u64).checked_mul(mul).ok_or_else(err)?;
    if (offset >> 3) >= s.config.proto_max_bulk_len as u64 {
        return Err(err());
    }
    Ok(offset)
}

/// The bytes of a string key for reading, or an empty string for a missing key.
fn read_bytes(s: &mut Server, call: &Call<'_>, key: &[u8]) -> Result<Option<Vec<u8>>, CmdError> {
    match s.read_key(call, key) {
        None => Ok(None),
        Some(e) => Ok(Some(e.value().as_str().ok_or(OpError::WrongType)?.to_vec())),
    }
}

/// `SETBIT key offset value`
pub fn setbit(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let offset = bit_offset(s, args.get(2), false, 0)?;
    let on = match args.get(3) {
        b"1" => true,
        b"0" => false,
        _ => return Err(CmdError::msg("ERR bit is not an integer or out of range")),
    };
    let key = args.get(1);
    // Signalled when the key is created or grows, or the bit changes (Redis 7).
    let (old, changed) = match s.write_key(call, key) {
        Some(e) => {
            let buf = e.value_mut().make_raw().ok_or(OpError::WrongType)?;
            let len = buf.len();
            let old = strings::set_bit(buf, offset, on);
            (old, old != on || buf.len() != len)
        }
        None => {
            let mut buf = Vec::new();
            strings::set_bit(&mut buf, offset, on);
            s.db.set(key, Value::Raw(Box::new(buf)), Expiry::Persist, call.now);
            (false, true)
        }
    };
    if changed {
        s.notify(STRING, "setbit", key);
    }
    call.reply().int(i64::from(old));
    Ok(())
}

/// `GETBIT key offset`
pub fn getbit(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let offset = bit_offset(s, args.get(2), false, 0)?;
    let bit = match s.read_key(call, args.get(1)) {
        None => false,
        Some(e) => {
            let v = e.value().as_str().ok_or(OpError::WrongType)?;
            strings::get_bit(v.bytes(&mut itoa::Buffer::new()), offset)
        }
    };
    call.reply().int(i64::from(bit));
    Ok(())
}

/// A `start end [BYTE|BIT]` range resolved against a string, as BITCOUNT and BITPOS do it:
/// byte bounds plus the masks of bits outside the range in the first and last byte.
struct BitRange {
    start: i64,
    end: i64,
    first_mask: u8,
    last_mask: u8,
}

fn resolve_range(mut start: i64, mut end: i64, len: i64, bit_unit: bool) -> BitRange {
    let total = if bit_unit { len << 3 } else { len };
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0).min(total - 1);
    let (mut first_mask, mut last_mask) = (0, 0);
    if bit_unit && start <= end {
        first_mask = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_mask = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    BitRange {
        start,
        end,
        first_mask,
        last_mask,
    }
}

fn unit_arg(a: &[u8]) -> Result<bool, CmdError> {
    if is(a, "bit") {
        Ok(true)
    } else if is(a, "byte") {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

/// `BITCOUNT key [start end [BYTE | BIT]]`
pub fn bitcount(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let Some(bytes) = read_bytes(s, call, args.get(1))? else {
        call.reply().int(0);
        return Ok(());
    };
    let len = bytes.len() as i64;
    let range = match args.len() {
        2 => BitRange {
            start: 0,
            end: len - 1,
            first_mask: 0,
            last_mask: 0,
        },
        4 | 5 => {
            let start = int_arg(args.get(2))?;
            let end = int_arg(args.get(3))?;
            let bit_unit = match args.try_get(4) {
                Some(a) => unit_arg(a)?,
                None => false,
            };
            if start < 0 && end < 0 && start > end {
                call.reply().int(0);
                return Ok(());
            }
            resolve_range(start, end, len, bit_unit)
        }
        _ => return Err(CmdError::Syntax),
    };
    if range.start > range.end {
        call.reply().int(0);
        return Ok(());
    }
    let (a, b) = (range.start as usize, range.end as usize);
    let mut count = strings::popcount(&bytes[a..=b]) as i64;
    // Bits of the edge bytes outside the range were counted: take them back out.
    count -= i64::from((bytes[a] & range.first_mask).count_ones());
    count -= i64::from((bytes[b] & range.last_mask).count_ones());
    call.reply().int(count);
    Ok(())
}

/// `BITPOS key bit [start [end [BYTE | BIT]]]`
pub fn bitpos(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let bit = match int_arg(args.get(2))? {
        0 => false,
        1 => true,
        _ => return Err(CmdError::msg("ERR The bit argument must be 1 or 0.")),
    };
    let Some(p) = read_bytes(s, call, args.get(1))? else {
        call.reply().int(if bit { -1 } else { 0 });
        return Ok(());
    };
    let len = p.len() as i64;
    let mut end_given = false;
    let range = match args.len() {
        3 => BitRange {
            start: 0,
            end: len - 1,
            first_mask: 0,
            last_mask: 0,
        },
        4..=6 => {
            let start = int_arg(args.get(3))?;
            let bit_unit = match args.try_get(5) {
                Some(a) => unit_arg(a)?,
                None => false,
            };
            let end = match args.try_get(4) {
                Some(a) => {
                    end_given = true;
                    int_arg(a)?
                }
                None if bit_unit => (len << 3) + 7,
                None => len - 1,
            };
            resolve_range(start, end, len, bit_unit)
        }
        _ => return Err(CmdError::Syntax),
    };
    if range.start > range.end {
        call.reply().int(-1);
        return Ok(());
    }
    // Redis's bitposCommand: the first and last byte are searched with their out-of-range bits
    // forced to the value not looked for.
    let force = |b: u8, mask: u8| if bit { b & !mask } else { b | mask };
    let (mut start, end) = (range.start as usize, range.end as usize);
    let mut bytes = end - start + 1;
    let pos = 'found: {
        if range.first_mask != 0 {
            let mut c = force(p[start], range.first_mask);
            if range.last_mask != 0 && bytes == 1 {
                c = force(c, range.last_mask);
            }
            let pos = strings::bitpos(&[c], bit);
            if bytes == 1 || (pos != -1 && pos != 8) {
                break 'found pos;
            }
            start += 1;
            bytes -= 1;
        }
        let cur = bytes - usize::from(range.last_mask != 0);
        if cur > 0 {
            let pos = strings::bitpos(&p[start..start + cur], bit);
            if bytes == cur || (pos != -1 && pos != (cur as i64) << 3) {
                break 'found pos;
            }
            start += cur;
            bytes -= cur;
        }
        strings::bitpos(&[force(p[end], range.last_mask)], bit)
    };
    // With an explicit end, a clear bit just past the range is not in the range.
    let reply = if end_given && !bit && pos == (bytes as i64) << 3 {
        -1
    } else if pos != -1 {
        pos + ((start as i64) << 3)
    } else {
        pos
    };
    call.reply().int(reply);
    Ok(())
}

/// `BITOP <AND | OR | XOR | NOT> destkey key [key ...]`
pub fn bitop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let op = args.get(1);
    let op = if is(op, "and") {
        BitOp::And
    } else if is(op, "or") {
        BitOp::Or
    } else if is(op, "xor") {
        BitOp::Xor
    } else if is(op, "not") {
        BitOp::Not
    } else {
        return Err(CmdError::Syntax);
    };
    if op == BitOp::Not && args.len() != 4 {
        return Err(CmdError::msg(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let mut sources = Vec::with_capacity(args.len() - 3);
    for key in args.iter_from(3) {
        sources.push(read_bytes(s, call, key)?.unwrap_or_default());
    }
    let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
    let result = strings::bitop(op, &refs);
    let dest = args.get(2);
    let len = result.len();
    if result.is_empty() {
        if s.db.remove_live(dest, call.now).is_some() {
            s.notify(GENERIC, "del", dest);
        }
    } else {
        s.db.set(
            dest,
            Value::Raw(Box::new(result)),
            Expiry::Persist,
            call.now,
        );
        s.notify(STRING, "set", dest);
    }
    call.reply().int(len as i64);
    Ok(())
}

/// One BITFIELD operation.
enum FieldOp {
    Get(FieldType, u64),
    Set(FieldType, u64, i64, Overflow),
    IncrBy(FieldType, u64, i64, Overflow),
}

/// `BITFIELD key [GET type offset | [OVERFLOW <WRAP | SAT | FAIL>] <SET type offset value |
/// INCRBY type offset increment> ...]`, and `BITFIELD_RO key [GET type offset ...]`
pub fn bitfield(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let read_only = call.spec.name == "bitfield_ro";
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut i = 2;
    let parse_type = |a: &[u8]| {
        FieldType::parse(a).ok_or_else(|| {
            CmdError::msg(
                "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
            )
        })
    };
    while i < args.len() {
        let a = args.get(i);
        let remaining = args.len() - i - 1;
        if is(a, "get") && remaining >= 2 {
            let t = parse_type(args.get(i + 1))?;
            ops.push(FieldOp::Get(
                t,
                bit_offset(s, args.get(i + 2), true, t.bits)?,
            ));
            i += 3;
        } else if (is(a, "set") || is(a, "incrby")) && remaining >= 3 {
            if read_only {
                return Err(CmdError::msg(
                    "ERR BITFIELD_RO only supports the GET subcommand",
                ));
            }
            let t = parse_type(args.get(i + 1))?;
            let offset = bit_offset(s, args.get(i + 2), true, t.bits)?;
            let v = int_arg(args.get(i + 3))?;
            ops.push(if is(a, "set") {
                FieldOp::Set(t, offset, v, overflow)
            } else {
                FieldOp::IncrBy(t, offset, v, overflow)
            });
            i += 4;
        } else if is(a, "overflow") && remaining >= 1 {
            if read_only {
                return Err(CmdError::msg(
                    "ERR BITFIELD_RO only supports the GET subcommand",
                ));
            }
            let o = args.get(i + 1);
            overflow = if is(o, "wrap") {
                Overflow::Wrap
            } else if is(o, "sat") {
                Overflow::Sat
            } else if is(o, "fail") {
                Overflow::Fail
            } else {
                return Err(CmdError::msg("ERR Invalid OVERFLOW type specified"));
            };
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let key = args.get(1);
    let writes = ops.iter().any(|op| !matches!(op, FieldOp::Get(..)));
    let found = if writes {
        s.write_key(call, key)
    } else {
        s.read_key(call, key)
    };
    let mut buf = match found {
        Some(e) => e.value().as_str().ok_or(OpError::WrongType)?.to_vec(),
        None => Vec::new(),
    };
    let mut changes = 0;
    let mut results: Vec<Option<i64>> = Vec::with_capacity(ops.len());
    for op in &ops {
        results.push(match *op {
            FieldOp::Get(t, off) => Some(strings::field_get(&buf, off, t)),
            FieldOp::Set(t, off, v, ov) => {
                let old = strings::field_get(&buf, off, t);
                // SET stores the value with the overflow policy applied, replying the old one.
                match strings::field_set_value(v, t, ov) {
                    Some(nv) => {
                        strings::field_set(&mut buf, off, t, nv);
                        changes += 1;
                        Some(old)
                    }
                    None => None,
                }
            }
            FieldOp::IncrBy(t, off, incr, ov) => {
                let old = strings::field_get(&buf, off, t);
                let nv = strings::field_add(old, incr, t, ov);
                if let Some(nv) = nv {
                    strings::field_set(&mut buf, off, t, nv);
                    changes += 1;
                }
                nv
            }
        });
    }
    if writes {
        match s.write_key(call, key) {
            Some(e) => *e.value_mut() = Value::Raw(Box::new(buf)),
            None => {
                s.db.set(key, Value::Raw(Box::new(buf)), Expiry::Persist, call.now);
            }
        }
        if changes > 0 {
            s.notify(STRING, "setbit", key);
        }
    }
    let mut r = call.reply();
    r.array(results.len());
    for v in results {
        match v {
            Some(n) => r.int(n),
            None => r.null(),
        }
    }
    Ok(())
}
