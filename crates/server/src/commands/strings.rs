//! String commands: GET, SET and its family, counters, ranges.

use tessera_protocol::{Args, num};
use tessera_storage::{Expiry, OpError, StrView, Value};

use super::{int_arg, is};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::{GENERIC, STRING};
use crate::server::Server;

/// Largest string Redis builds by APPEND or SETRANGE (`proto-max-bulk-len`'s default).
fn check_size(s: &Server, len: u64) -> Result<(), CmdError> {
    if len > s.config.proto_max_bulk_len as u64 {
        return Err(OpError::TooBig.into());
    }
    Ok(())
}

fn reply_str(call: &mut Call<'_>, v: StrView<'_>) {
    match v {
        StrView::Bytes(b) => call.reply().bulk(b),
        StrView::Int(n) => call.reply().bulk_int(n),
    }
}

/// `GET key`
pub fn get(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    match s.read_key(call, args.get(1)) {
        None => call.reply().null(),
        Some(e) => reply_str(call, e.value().as_str().ok_or(OpError::WrongType)?),
    }
    Ok(())
}

/// The condition and expiry options shared by SET and GETEX.
#[derive(Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// Unit and argument of EX/PX/EXAT/PXAT.
    expire: Option<(ExpireUnit, i64)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireUnit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Which command is parsing: SET takes NX/XX/GET/KEEPTTL, GETEX takes PERSIST.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OptionsFor {
    Set,
    GetEx,
}

/// Redis's `parseExtendedStringArgumentsOrReply`.
fn parse_set_options(
    args: &Args<'_>,
    from: usize,
    cmd: OptionsFor,
) -> Result<SetOptions, CmdError> {
    let mut o = SetOptions::default();
    let mut i = from;
    while i < args.len() {
        let a = args.get(i);
        let next = args.try_get(i + 1);
        let has_expire = o.expire.is_some() || o.keepttl || o.persist;
        if cmd == OptionsFor::Set && is(a, "nx") && !o.xx {
            o.nx = true;
        } else if cmd == OptionsFor::Set && is(a, "xx") && !o.nx {
            o.xx = true;
        } else if cmd == OptionsFor::Set && is(a, "get") {
            o.get = true;
        } else if cmd == OptionsFor::Set && is(a, "keepttl") && !has_expire {
            o.keepttl = true;
        } else if cmd == OptionsFor::GetEx && is(a, "persist") && !has_expire {
            o.persist = true;
        } else if let Some(unit) = expire_unit(a).filter(|_| !has_expire && next.is_some()) {
            o.expire = Some((unit, int_arg(next.expect("checked by the filter"))?));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

fn expire_unit(a: &[u8]) -> Option<ExpireUnit> {
    if is(a, "ex") {
        Some(ExpireUnit::Ex)
    } else if is(a, "px") {
        Some(ExpireUnit::Px)
    } else if is(a, "exat") {
        Some(ExpireUnit::ExAt)
    } else if is(a, "pxat") {
        Some(ExpireUnit::PxAt)
    } else {
        None
    }
}

/// Converts an expire argument to absolute Unix milliseconds, with Redis's checks and error.
fn expire_at(unit: ExpireUnit, v: i64, now: i64, cmd: &str) -> Result<i64, CmdError> {
    let invalid = || CmdError::msg(format!("ERR invalid expire time in '{cmd}' command"));
    if v <= 0 {
        return Err(invalid());
    }
    let ms = match unit {
        ExpireUnit::Ex | ExpireUnit::ExAt => v.checked_mul(1000).ok_or_else(invalid)?,
        ExpireUnit::Px | ExpireUnit::PxAt => v,
    };
    match unit {
        ExpireUnit::Ex | ExpireUnit::Px => ms.checked_add(now).ok_or_else(invalid),
        ExpireUnit::ExAt | ExpireUnit::PxAt => Ok(ms),
    }
}

/// `SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds |
/// PXAT unix-time-milliseconds | KEEPTTL]`
pub fn set(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let o = parse_set_options(args, 3, OptionsFor::Set)?;
    let at = o
        .expire
        .map(|(u, v)| expire_at(u, v, call.now, "set"))
        .transpose()?;
    let key = args.get(1);
    // Plain SET needs no lookup of its own: `Db::set` finds the key once.
    let old = if o.nx || o.xx || o.get {
        match s.db.get(key, call.now) {
            Some(e) => {
                let v = e.value();
                if o.get && v.as_str().is_none() {
                    return Err(OpError::WrongType.into());
                }
                Some(v.as_str().map(|v| v.to_vec()))
            }
            None => None,
        }
    } else {
        None
    };
    if (o.nx && old.is_some()) || (o.xx && old.is_none()) {
        if o.get {
            call.reply().bulk_opt(old.flatten().as_deref());
        } else {
            call.reply().null();
        }
        return Ok(());
    }
    let expiry = match (at, o.keepttl) {
        (Some(at), _) => Expiry::At(at),
        (None, true) => Expiry::Keep,
        (None, false) => Expiry::Persist,
    };
    s.db.set(key, Value::string(args.get(2)), expiry, call.now);
    s.notify(STRING, "set", key);
    if let Some(at) = at {
        s.notify(GENERIC, "expire", key);
        // Recorded with the absolute time (Redis's rewrite to `SET key value PXAT ms`).
        if !matches!(o.expire, Some((ExpireUnit::PxAt, _))) {
            let mut buf = itoa::Buffer::new();
            s.propagate(&[b"SET", key, args.get(2), b"PXAT", buf.format(at).as_bytes()]);
        }
    }
    if o.get {
        call.reply().bulk_opt(old.flatten().as_deref());
    } else {
        call.reply().ok();
    }
    Ok(())
}

/// `SETNX key value`
pub fn setnx(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    if s.db.contains(key, call.now) {
        call.reply().int(0);
    } else {
        s.db.set(key, Value::string(args.get(2)), Expiry::Persist, call.now);
        s.notify(STRING, "set", key);
        call.reply().int(1);
    }
    Ok(())
}

/// `SETEX key seconds value`, `PSETEX key milliseconds value`
pub fn setex(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let unit = if call.spec.name == "setex" {
        ExpireUnit::Ex
    } else {
        ExpireUnit::Px
    };
    let at = expire_at(unit, int_arg(args.get(2))?, call.now, call.spec.name)?;
    s.db.set(
        args.get(1),
        Value::string(args.get(3)),
        Expiry::At(at),
        call.now,
    );
    s.notify(STRING, "set", args.get(1));
    s.notify(GENERIC, "expire", args.get(1));
    let mut buf = itoa::Buffer::new();
    let at = buf.format(at).as_bytes();
    s.propagate(&[b"SET", args.get(1), args.get(3), b"PXAT", at]);
    call.reply().ok();
    Ok(())
}

/// `GETSET key value`
pub fn getset(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let old = match s.db.get(key, call.now) {
        Some(e) => Some(e.value().as_str().ok_or(OpError::WrongType)?.to_vec()),
        None => None,
    };
    s.db.set(key, Value::string(args.get(2)), Expiry::Persist, call.now);
    s.notify(STRING, "set", key);
    call.reply().bulk_opt(old.as_deref());
    Ok(())
}

/// `GETDEL key`
pub fn getdel(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    match s.read_key(call, key) {
        None => call.reply().null(),
        Some(e) => {
            let v = e.value().as_str().ok_or(OpError::WrongType)?.to_vec();
            s.db.remove(key);
            s.notify(GENERIC, "del", key);
            call.reply().bulk(&v);
        }
    }
    Ok(())
}

/// `GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT
/// unix-time-milliseconds | PERSIST]`
pub fn getex(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let o = parse_set_options(args, 2, OptionsFor::GetEx)?;
    let at = o
        .expire
        .map(|(u, v)| expire_at(u, v, call.now, "getex"))
        .transpose()?;
    let key = args.get(1);
    let Some(e) = s.read_key(call, key) else {
        call.reply().null();
        return Ok(());
    };
    let v = e.value().as_str().ok_or(OpError::WrongType)?.to_vec();
    if let Some(at) = at {
        // An absolute time in the past deletes the key (Redis's `checkAlreadyExpired`).
        if at <= call.now && !s.db.no_expiry {
            s.db.remove(key);
            s.notify(GENERIC, "del", key);
            s.propagate(&[b"DEL", key]);
        } else {
            s.db.set_expire(key, at, call.now);
            s.notify(GENERIC, "expire", key);
            s.propagate(&[b"PEXPIREAT", key, itoa::Buffer::new().format(at).as_bytes()]);
        }
    } else if o.persist && s.db.persist(key, call.now) {
        s.notify(GENERIC, "persist", key);
        s.propagate(&[b"PERSIST", key]);
    }
    call.reply().bulk(&v);
    Ok(())
}

/// `MGET key [key ...]`
pub fn mget(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    call.reply().array(args.len() - 1);
    for key in args.iter_from(1) {
        match s.read_key(call, key).and_then(|e| e.value().as_str()) {
            Some(v) => reply_str(call, v),
            None => call.reply().null(),
        }
    }
    Ok(())
}

/// `MSET key value [key value ...]`, `MSETNX key value [key value ...]`
pub fn mset(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::msg(format!(
            "ERR wrong number of arguments for '{}' command",
            call.spec.name
        )));
    }
    let nx = call.spec.name == "msetnx";
    if nx
        && (1..args.len())
            .step_by(2)
            .any(|i| s.db.contains(args.get(i), call.now))
    {
        call.reply().int(0);
        return Ok(());
    }
    for i in (1..args.len()).step_by(2) {
        s.db.set(
            args.get(i),
            Value::string(args.get(i + 1)),
            Expiry::Persist,
            call.now,
        );
        s.notify(STRING, "set", args.get(i));
    }
    if nx {
        call.reply().int(1)
    } else {
        call.reply().ok()
    }
    Ok(())
}

/// `APPEND key value`
pub fn append(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (key, tail) = (args.get(1), args.get(2));
    let max = s.config.proto_max_bulk_len as u64;
    let len = match s.write_key(call, key) {
        None => {
            s.db.set(key, Value::string(tail), Expiry::Persist, call.now);
            tail.len()
        }
        Some(e) => {
            let cur = e.value().as_str().ok_or(OpError::WrongType)?.len();
            if (cur + tail.len()) as u64 > max {
                return Err(OpError::TooBig.into());
            }
            let buf = e.value_mut().make_raw().ok_or(OpError::WrongType)?;
            buf.extend_from_slice(tail);
            buf.len()
        }
    };
    s.notify(STRING, "append", key);
    call.reply().int(len as i64);
    Ok(())
}

/// `STRLEN key`
pub fn strlen(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let len = match s.read_key(call, args.get(1)) {
        None => 0,
        Some(e) => e.value().as_str().ok_or(OpError::WrongType)?.len(),
    };
    call.reply().int(len as i64);
    Ok(())
}

/// The integer held by a string value.
fn value_int(v: &Value) -> Result<i64, CmdError> {
    match v.as_str().ok_or(OpError::WrongType)? {
        StrView::Int(n) => Ok(n),
        StrView::Bytes(b) => num::parse_i64(b).ok_or(CmdError::NotInteger),
    }
}

/// `INCR key`, `DECR key`, `INCRBY key increment`, `DECRBY key decrement`
pub fn incr(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let delta = match call.spec.name {
        "incr" => 1,
        "decr" => -1,
        "incrby" => int_arg(args.get(2))?,
        _ => {
            let d = int_arg(args.get(2))?;
            d.checked_neg()
                .ok_or_else(|| CmdError::msg("ERR decrement would overflow"))?
        }
    };
    let key = args.get(1);
    let result = match s.write_key(call, key) {
        Some(e) => {
            let cur = value_int(e.value())?;
            let n = cur.checked_add(delta).ok_or(OpError::Overflow)?;
            // In place: the key keeps its time to live.
            *e.value_mut() = Value::Int(n);
            n
        }
        None => {
            s.db.set(key, Value::Int(delta), Expiry::Persist, call.now);
            delta
        }
    };
    s.notify(STRING, "incrby", key);
    call.reply().int(result);
    Ok(())
}

/// `INCRBYFLOAT key increment`
///
/// Computed as Redis does, in 80-bit `long double` (emulated exactly, see
/// `tessera_storage::longdouble`), so results match Redis digit for digit.
pub fn incrbyfloat(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    use tessera_storage::longdouble::{IncrFloatError, incr_by_float};
    let key = args.get(1);
    let cur = match s.write_key(call, key) {
        Some(e) => e.value().as_str().ok_or(OpError::WrongType)?.to_vec(),
        None => b"0".to_vec(),
    };
    let text = incr_by_float(&cur, args.get(2)).map_err(|e| match e {
        IncrFloatError::NotFloat => OpError::NotFloat,
        IncrFloatError::NanOrInfinity => OpError::NanOrInfinity,
    })?;
    match s.write_key(call, key) {
        // In place: the key keeps its time to live.
        Some(e) => *e.value_mut() = Value::string(text.as_bytes()),
        None => {
            s.db.set(
                key,
                Value::string(text.as_bytes()),
                Expiry::Persist,
                call.now,
            );
        }
    }
    s.notify(STRING, "incrbyfloat", key);
    // Recorded as the value it produced (Redis's rewrite to `SET key value KEEPTTL`).
    s.propagate(&[b"SET", key, text.as_bytes(), b"KEEPTTL"]);
    call.reply().bulk(text.as_bytes());
    Ok(())
}

/// Redis's clamping of `start`/`end` string ranges (GETRANGE): negative from the end.
fn clamp_range(start: i64, end: i64, len: i64) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    end = end.min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some((start as usize, end as usize))
}

/// `GETRANGE key start end`, `SUBSTR key start end`
pub fn getrange(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let start = int_arg(args.get(2))?;
    let end = int_arg(args.get(3))?;
    let Some(e) = s.read_key(call, args.get(1)) else {
        call.reply().bulk(b"");
        return Ok(());
    };
    let v = e.value().as_str().ok_or(OpError::WrongType)?;
    let mut ibuf = itoa::Buffer::new();
    let bytes = v.bytes(&mut ibuf);
    match clamp_range(start, end, bytes.len() as i64) {
        Some((a, b)) => call.reply().bulk(&bytes[a..=b]),
        None => call.reply().bulk(b""),
    }
    Ok(())
}

/// `SETRANGE key offset value`
pub fn setrange(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let offset = int_arg(args.get(2))?;
    if offset < 0 {
        return Err(CmdError::msg("ERR offset is out of range"));
    }
    let (key, value) = (args.get(1), args.get(3));
    let end = offset as u64 + value.len() as u64;
    let max = s.config.proto_max_bulk_len as u64;
    let len = match s.write_key(call, key) {
        None => {
            if value.is_empty() {
                call.reply().int(0);
                return Ok(());
            }
            check_size(s, end)?;
            let mut buf = vec![0u8; offset as usize];
            buf.extend_from_slice(value);
            let len = buf.len();
            s.db.set(key, Value::Raw(Box::new(buf)), Expiry::Persist, call.now);
            len
        }
        Some(e) => {
            let cur = e.value().as_str().ok_or(OpError::WrongType)?.len();
            if value.is_empty() {
                call.reply().int(cur as i64);
                return Ok(());
            }
            if end > max {
                return Err(OpError::TooBig.into());
            }
            let buf = e.value_mut().make_raw().ok_or(OpError::WrongType)?;
            let end = end as usize;
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[offset as usize..end].copy_from_slice(value);
            buf.len()
        }
    };
    s.notify(STRING, "setrange", key);
    call.reply().int(len as i64);
    Ok(())
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]`
pub fn lcs(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (mut len, mut idx, mut with_len, mut min_len) = (false, false, false, 0u32);
    let mut i = 3;
    while i < args.len() {
        let a = args.get(i);
        if is(a, "idx") {
            idx = true;
        } else if is(a, "len") {
            len = true;
        } else if is(a, "withmatchlen") {
            with_len = true;
        } else if is(a, "minmatchlen") && i + 1 < args.len() {
            let n = int_arg(args.get(i + 1))?;
            min_len = n.clamp(0, i64::from(u32::MAX)) as u32;
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let mut fetch =
        |key: &[u8]| -> Result<Vec<u8>, CmdError> {
            match s.read_key(call, key) {
                None => Ok(Vec::new()),
                Some(e) => e.value().as_str().map(|v| v.to_vec()).ok_or_else(|| {
                    CmdError::msg("ERR The specified keys must contain string values")
                }),
            }
        };
    let a = fetch(args.get(1))?;
    let b = fetch(args.get(2))?;
    if len && idx {
        return Err(CmdError::msg(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    // The dynamic program's table must fit the transient memory limit, as in Redis.
    let table = (a.len() as u64 + 1) * (b.len() as u64 + 1) * 4;
    if table > s.config.proto_max_bulk_len as u64 {
        return Err(CmdError::msg(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let result = tessera_storage::strings::lcs(&a, &b, min_len);
    let mut r = call.reply();
    if idx {
        r.map(2);
        r.bulk(b"matches");
        r.array(result.matches.len());
        for m in &result.matches {
            r.array(2 + usize::from(with_len));
            r.array(2);
            r.int(i64::from(m.a.0));
            r.int(i64::from(m.a.1));
            r.array(2);
            r.int(i64::from(m.b.0));
            r.int(i64::from(m.b.1));
            if with_len {
                r.int(i64::from(m.len));
            }
        }
        r.bulk(b"len");
        r.int(i64::from(result.len));
    } else if len {
        r.int(i64::from(result.len));
    } else {
        r.bulk(&result.string);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::clamp_range;

    #[test]
    fn ranges_clamp_like_redis() {
        assert_eq!(clamp_range(0, -1, 5), Some((0, 4)));
        assert_eq!(clamp_range(-3, -1, 5), Some((2, 4)));
        assert_eq!(clamp_range(3, 100, 5), Some((3, 4)));
        assert_eq!(clamp_range(4, 2, 5), None);
        assert_eq!(clamp_range(-1, -3, 5), None);
        assert_eq!(clamp_range(0, 0, 0), None);
    }
}
