//! HyperLogLog commands: PFADD, PFCOUNT, PFMERGE (`tessera_storage::hll` holds the format).

use tessera_protocol::Args;
use tessera_storage::{Expiry, OpError, Value, hll};

use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::STRING;
use crate::server::Server;

const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

/// The registers of the HLL at `key` (`None` when missing); errors for other values.
fn read_registers(
    s: &mut Server,
    call: &Call<'_>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, CmdError> {
    let Some(e) = s.read_key(call, key) else {
        return Ok(None);
    };
    let v = e.value().as_str().ok_or(OpError::WrongType)?;
    let mut ibuf = itoa::Buffer::new();
    let bytes = v.bytes(&mut ibuf);
    if !hll::is_valid(bytes) {
        return Err(CmdError::msg(NOT_HLL));
    }
    hll::registers(bytes)
        .map(Some)
        .ok_or_else(|| CmdError::msg(NOT_HLL))
}

/// The dense bytes of the HLL at `key` for writing, created when missing. Returns whether it
/// was created.
fn write_dense<'s>(
    s: &'s mut Server,
    call: &Call<'_>,
    key: &[u8],
) -> Result<(&'s mut Vec<u8>, bool), CmdError> {
    let mut created = false;
    if s.write_key(call, key).is_none() {
        s.db.set(
            key,
            Value::Raw(Box::new(hll::new_dense())),
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
    if !hll::make_dense(bytes) {
        return Err(CmdError::msg(NOT_HLL));
    }
    Ok((bytes, created))
}

/// `PFADD key [element ...]`
pub fn pfadd(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let (bytes, created) = write_dense(s, call, key)?;
    let mut updated = created;
    for e in args.iter_from(2) {
        updated |= hll::add_dense(bytes, e);
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
        let Some(regs) = read_registers(s, call, key)? else {
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
                n
            }
        };
        call.reply().int(n as i64);
        return Ok(());
    }
    let mut merged = vec![0u8; hll::REGISTERS];
    for key in args.iter_from(1) {
        if let Some(regs) = read_registers(s, call, key)? {
            for (m, r) in merged.iter_mut().zip(regs) {
                *m = (*m).max(r);
            }
        }
    }
    call.reply().int(hll::count(&merged) as i64);
    Ok(())
}

/// `PFMERGE destkey [sourcekey ...]`
pub fn pfmerge(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let mut merged = vec![0u8; hll::REGISTERS];
    // The destination's own registers count too (Redis merges argv[1..]).
    for key in args.iter_from(1) {
        if let Some(regs) = read_registers(s, call, key)? {
            for (m, r) in merged.iter_mut().zip(regs) {
                *m = (*m).max(r);
            }
        }
    }
    let key = args.get(1);
    let (bytes, _) = write_dense(s, call, key)?;
    hll::merge_into_dense(bytes, &merged);
    hll::invalidate_cache(bytes);
    s.notify(STRING, "pfadd", key);
    call.reply().ok();
    Ok(())
}
