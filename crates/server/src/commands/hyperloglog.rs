//! HyperLogLog commands: PFADD, PFCOUNT, PFMERGE (`tessera_storage::hll` holds the format).

use tessera_protocol::Args;
use tessera_storage::{Expiry, OpError, Value, hll};

use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::STRING;
use crate::server::Server;

const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
const CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";

/// The registers of the HLL at `key` and whether it is dense (`None` when missing); errors
/// for other values.
fn read_registers(
    s: &mut Server,
    call: &Call<'_>,
    key: &[u8],
) -> Result<Option<(Vec<u8>, bool)>, CmdError> {
    let Some(e) = s.read_key(call, key) else {
        return Ok(None);
    };
    let v = e.value().as_str().ok_or(OpError::WrongType)?;
    let mut ibuf = itoa::Buffer::new();
    let bytes = v.bytes(&mut ibuf);
    if !hll::is_valid(bytes) {
        return Err(CmdError::msg(NOT_HLL));
    }
    let regs = hll::registers(bytes).ok_or_else(|| CmdError::msg(CORRUPT))?;
    Ok(Some((regs, hll::is_dense(bytes))))
}

/// The bytes of the HLL at `key` for writing, created (sparse) when missing. Returns whether
/// it was created.
fn write_hll<'s>(
    s: &'s mut Server,
    call: &Call<'_>,
    key: &[u8],
) -> Result<(&'s mut Vec<u8>, bool), CmdError> {
    let mut created = false;
    if s.write_key(call, key).is_none() {
        s.db.set(
            key,
            Value::Raw(Box::new(hll::new_sparse())),
            Expiry::Persist,
            call.now,
        );
        created = true;
    }
    let e = s
        .write_key(call, key)
        .expect("present or created just above");
    let valid = e.value().as_str().ok_or(OpError::WrongType)?;
    let mut ibuf = itoa::Buffer::new();
    if !hll::is_valid(valid.bytes(&mut ibuf)) {
        return Err(CmdError::msg(NOT_HLL));
    }
    let bytes = e.value_mut().make_raw().ok_or(OpError::WrongType)?;
    Ok((bytes, created))
}

/// `PFADD key [element ...]`
pub fn pfadd(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let max = s.config.hll_sparse_max_bytes as usize;
    let (bytes, created) = write_hll(s, call, key)?;
    let mut updated = created;
    for e in args.iter_from(2) {
        updated |= hll::add(bytes, e, max).ok_or_else(|| CmdError::msg(CORRUPT))?;
    }
    if updated {
        hll::invalidate_cache(bytes);
        s.notify(STRING, "pfadd", key);
    }
    call.reply().int(i64::from(updated));
    Ok(())
}

/// `PFCOUNT key [key ...]`: one key uses and refreshes its cached count; several are merged.
pub fn pfcount(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len() == 2 {
        let key = args.get(1);
        let Some((regs, _)) = read_registers(s, call, key)? else {
            call.reply().int(0);
            return Ok(());
        };
        let e = s.write_key(call, key).expect("read just above");
        let bytes = e.value_mut().make_raw().ok_or(OpError::WrongType)?;
        let n = match hll::cached(bytes) {
            Some(n) => n,
            None => {
                let n = hll::count(&regs);
                hll::set_cache(bytes, n);
                // The cache is part of the value: PFCOUNT is recorded, as in Redis.
                s.dirty += 1;
                n
            }
        };
        call.reply().int(n as i64);
        return Ok(());
    }
    let mut merged = vec![0u8; hll::REGISTERS];
    for key in args.iter_from(1) {
        if let Some((regs, _)) = read_registers(s, call, key)? {
            for (m, r) in merged.iter_mut().zip(regs) {
                *m = (*m).max(r);
            }
        }
    }
    call.reply().int(hll::count(&merged) as i64);
    Ok(())
}

/// `PFMERGE destkey [sourcekey ...]`: the target stays sparse unless an input is dense.
pub fn pfmerge(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let mut merged = vec![0u8; hll::REGISTERS];
    let mut use_dense = false;
    // The destination's own registers count too (Redis merges argv[1..]).
    for key in args.iter_from(1) {
        if let Some((regs, dense)) = read_registers(s, call, key)? {
            use_dense |= dense;
            for (m, r) in merged.iter_mut().zip(regs) {
                *m = (*m).max(r);
            }
        }
    }
    let key = args.get(1);
    let max = s.config.hll_sparse_max_bytes as usize;
    let (bytes, _) = write_hll(s, call, key)?;
    if use_dense && !hll::make_dense(bytes) {
        return Err(CmdError::msg(CORRUPT));
    }
    for (i, &v) in merged.iter().enumerate() {
        if v > 0 {
            hll::set_register(bytes, i, v, max).ok_or_else(|| CmdError::msg(CORRUPT))?;
        }
    }
    hll::invalidate_cache(bytes);
    s.notify(STRING, "pfadd", key);
    call.reply().ok();
    Ok(())
}

/// `PFDEBUG <GETREG | DECODE | ENCODING | TODENSE> key`
pub fn pfdebug(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = args.get(1);
    let key = args.get(2);
    let Some(e) = s.write_key(call, key) else {
        return Err(CmdError::msg("ERR The specified key does not exist"));
    };
    let mut ibuf = itoa::Buffer::new();
    let v = e.value().as_str().ok_or(OpError::WrongType)?;
    if !hll::is_valid(v.bytes(&mut ibuf)) {
        return Err(CmdError::msg(NOT_HLL));
    }
    let bytes = e.value_mut().make_raw().ok_or(OpError::WrongType)?;
    let mut r = Call::reply_to(call.out, call.resp3);
    if super::is(sub, "getreg") {
        if !hll::make_dense(bytes) {
            return Err(CmdError::msg(CORRUPT));
        }
        let regs = hll::registers(bytes).ok_or_else(|| CmdError::msg(CORRUPT))?;
        r.array(regs.len());
        for v in regs {
            r.int(i64::from(v));
        }
    } else if super::is(sub, "decode") {
        let text = hll::decode_sparse(bytes)
            .ok_or_else(|| CmdError::msg("ERR HLL encoding is not sparse"))?;
        r.bulk(text.as_bytes());
    } else if super::is(sub, "encoding") {
        r.simple(if hll::is_dense(bytes) {
            "dense"
        } else {
            "sparse"
        });
    } else if super::is(sub, "todense") {
        let sparse = !hll::is_dense(bytes);
        if sparse && !hll::make_dense(bytes) {
            return Err(CmdError::msg(CORRUPT));
        }
        r.int(i64::from(sparse));
    } else {
        return Err(CmdError::msg(format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(sub)
        )));
    }
    Ok(())
}

/// `PFSELFTEST`: checks the register encoding and the estimator's error with both encodings.
pub fn pfselftest(_: &mut Server, call: &mut Call<'_>, _: &Args<'_>) -> CmdResult {
    match hll::self_test() {
        Ok(()) => call.reply().ok(),
        Err(e) => return Err(CmdError::msg(format!("ERR TESTFAILED {e}"))),
    }
    Ok(())
}
