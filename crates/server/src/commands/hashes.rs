//! Hash commands: HSET and friends, counters, HRANDFIELD, HSCAN.

use rand::seq::index::sample;
use tessera_protocol::Args;
use tessera_storage::{Hash, OpError};

use super::{ScanOptions, int_arg};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::HASH;
use crate::server::Server;

/// `HSET key field value [field value ...]`, `HMSET key field value [field value ...]`
pub fn hset(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if !args.len().is_multiple_of(2) {
        return Err(CmdError::msg(format!(
            "ERR wrong number of arguments for '{}' command",
            call.spec.name
        )));
    }
    let limits = s.db.limits;
    let h = s
        .write_as::<Hash>(call, args.get(1), true)?
        .expect("created when missing");
    let mut added = 0;
    for i in (2..args.len()).step_by(2) {
        if h.set(args.get(i), args.get(i + 1), &limits) {
            added += 1;
        }
    }
    s.notify(HASH, "hset", args.get(1));
    if call.spec.name == "hmset" {
        call.reply().ok()
    } else {
        call.reply().int(added)
    }
    Ok(())
}

/// `HSETNX key field value`
pub fn hsetnx(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let limits = s.db.limits;
    let h = s
        .write_as::<Hash>(call, args.get(1), true)?
        .expect("created when missing");
    let added = h.get(args.get(2)).is_none() && h.set(args.get(2), args.get(3), &limits);
    if added {
        s.notify(HASH, "hset", args.get(1));
    }
    call.reply().int(i64::from(added));
    Ok(())
}

/// `HGET key field`
pub fn hget(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let v = s
        .read_as::<Hash>(call, args.get(1))?
        .and_then(|h| h.get(args.get(2)));
    call.reply().bulk_opt(v);
    Ok(())
}

/// `HMGET key field [field ...]`
pub fn hmget(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let h = s.read_as::<Hash>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    r.array(args.len() - 2);
    for f in args.iter_from(2) {
        r.bulk_opt(h.and_then(|h| h.get(f)));
    }
    Ok(())
}

/// `HDEL key field [field ...]`
pub fn hdel(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let mut n = 0;
    if let Some(h) = s.write_as::<Hash>(call, key, false)? {
        n = args.iter_from(2).filter(|f| h.remove(f)).count();
        if n > 0 {
            s.notify(HASH, "hdel", key);
            s.remove_if_empty(key);
        }
    }
    call.reply().int(n as i64);
    Ok(())
}

/// `HLEN key`
pub fn hlen(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let n = s.read_as::<Hash>(call, args.get(1))?.map_or(0, |h| h.len());
    call.reply().int(n as i64);
    Ok(())
}

/// `HSTRLEN key field`
pub fn hstrlen(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let n = s
        .read_as::<Hash>(call, args.get(1))?
        .and_then(|h| h.get(args.get(2)))
        .map_or(0, <[u8]>::len);
    call.reply().int(n as i64);
    Ok(())
}

/// `HEXISTS key field`
pub fn hexists(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let found = s
        .read_as::<Hash>(call, args.get(1))?
        .is_some_and(|h| h.get(args.get(2)).is_some());
    call.reply().int(i64::from(found));
    Ok(())
}

/// `HGETALL key` (a map in RESP3), `HKEYS key`, `HVALS key`
pub fn hgetall(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let name = call.spec.name;
    let h = s.read_as::<Hash>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    let len = h.map_or(0, |h| h.len());
    match name {
        "hgetall" => r.map(len),
        _ => r.array(len),
    }
    if let Some(h) = h {
        for (f, v) in h.iter() {
            match name {
                "hkeys" => r.bulk(f),
                "hvals" => r.bulk(v),
                _ => {
                    r.bulk(f);
                    r.bulk(v);
                }
            }
        }
    }
    Ok(())
}

/// `HINCRBY key field increment`
pub fn hincrby(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let incr = int_arg(args.get(3))?;
    let limits = s.db.limits;
    let h = s
        .write_as::<Hash>(call, args.get(1), true)?
        .expect("created when missing");
    let field = args.get(2);
    let cur = match h.get(field) {
        Some(v) => tessera_protocol::num::parse_i64(v)
            .ok_or_else(|| CmdError::msg("ERR hash value is not an integer"))?,
        None => 0,
    };
    let n = cur.checked_add(incr).ok_or(OpError::Overflow)?;
    h.set(field, itoa::Buffer::new().format(n).as_bytes(), &limits);
    s.notify(HASH, "hincrby", args.get(1));
    call.reply().int(n);
    Ok(())
}

/// `HINCRBYFLOAT key field increment`, in Redis's `long double` arithmetic.
pub fn hincrbyfloat(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    use tessera_storage::longdouble::{IncrFloatError, LongDouble, Parsed};
    let incr = args.get(3);
    match LongDouble::parse(incr) {
        None => return Err(OpError::NotFloat.into()),
        // Redis checks the increment itself before the field.
        Some(Parsed::Infinite) => return Err(CmdError::msg("ERR value is NaN or Infinity")),
        Some(Parsed::Finite(_)) => {}
    }
    let limits = s.db.limits;
    let key = args.get(1);
    let h = s
        .write_as::<Hash>(call, key, true)?
        .expect("created when missing");
    let field = args.get(2);
    let cur = h.get(field).map_or_else(|| b"0".to_vec(), <[u8]>::to_vec);
    let text = match tessera_storage::longdouble::incr_by_float(&cur, incr) {
        Ok(t) => t,
        Err(IncrFloatError::NotFloat) => {
            s.remove_if_empty(key);
            return Err(CmdError::msg("ERR hash value is not a float"));
        }
        Err(IncrFloatError::NanOrInfinity) => {
            s.remove_if_empty(key);
            return Err(OpError::NanOrInfinity.into());
        }
    };
    h.set(field, text.as_bytes(), &limits);
    s.notify(HASH, "hincrbyfloat", key);
    // Recorded as the value it produced (Redis's rewrite to HSET).
    s.propagate(&[b"HSET", key, field, text.as_bytes()]);
    call.reply().bulk(text.as_bytes());
    Ok(())
}

/// `HRANDFIELD key [count [WITHVALUES]]`
pub fn hrandfield(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (count, with_values) = super::rand_args(args, "withvalues")?;
    let resp3 = call.resp3;
    let mut rng = rand::rng();
    let h = s.read_as::<Hash>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, resp3);
    let Some(count) = count else {
        r.bulk_opt(h.and_then(|h| h.random(&mut rng)).map(|(f, _)| f));
        return Ok(());
    };
    let Some(h) = h else {
        r.array(0);
        return Ok(());
    };
    let pairs: Vec<(&[u8], &[u8])> = if count < 0 {
        // Repetitions allowed: `-count` independent picks.
        (0..count.unsigned_abs())
            .filter_map(|_| h.random(&mut rng))
            .collect()
    } else if count as usize >= h.len() {
        h.iter().collect()
    } else {
        let all: Vec<_> = h.iter().collect();
        sample(&mut rng, all.len(), count as usize)
            .into_iter()
            .map(|i| all[i])
            .collect()
    };
    if with_values {
        r.array(if resp3 { pairs.len() } else { pairs.len() * 2 });
        for (f, v) in pairs {
            if resp3 {
                r.array(2);
            }
            r.bulk(f);
            r.bulk(v);
        }
    } else {
        r.array(pairs.len());
        for (f, _) in pairs {
            r.bulk(f);
        }
    }
    Ok(())
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count]`
pub fn hscan(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let o = ScanOptions::parse(args, 2, false)?;
    let h = s.read_as::<Hash>(call, args.get(1))?;
    let mut found: Vec<(&[u8], &[u8])> = Vec::new();
    let next = match h {
        Some(h) => h.scan(o.cursor, o.count, |f, v| {
            if o.matches(f) {
                found.push((f, v));
            }
        }),
        None => 0,
    };
    let mut r = Call::reply_to(call.out, call.resp3);
    r.array(2);
    r.bulk(itoa::Buffer::new().format(next).as_bytes());
    r.array(found.len() * 2);
    for (f, v) in found {
        r.bulk(f);
        r.bulk(v);
    }
    Ok(())
}
