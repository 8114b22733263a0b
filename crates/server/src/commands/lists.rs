//! List commands: pushes and pops, indexes and ranges, LINSERT, LREM, LPOS, LMOVE, RPOPLPUSH,
//! LMPOP, and the blocking family (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP), which files a
//! `BlockRequest` when it finds no data (see `blocking.rs`).

use tessera_protocol::Args;
use tessera_storage::{End, List, OpError};

use super::{int_arg, is};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::LIST;
use crate::server::Server;

fn end_of(a: &[u8]) -> Result<End, CmdError> {
    if is(a, "left") {
        Ok(End::Left)
    } else if is(a, "right") {
        Ok(End::Right)
    } else {
        Err(CmdError::Syntax)
    }
}

/// `LPUSH key element [element ...]` and RPUSH, LPUSHX, RPUSHX.
pub fn push(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let name = call.spec.name;
    let end = if name.starts_with('l') {
        End::Left
    } else {
        End::Right
    };
    let only_existing = name.ends_with('x');
    let len = match s.write_as::<List>(call, args.get(1), !only_existing)? {
        Some(list) => {
            for e in args.iter_from(2) {
                list.push(end, e);
            }
            let len = list.len();
            s.notify(LIST, push_event(end), args.get(1));
            len
        }
        None => 0,
    };
    call.reply().int(len as i64);
    Ok(())
}

fn push_event(end: End) -> &'static str {
    match end {
        End::Left => "lpush",
        End::Right => "rpush",
    }
}

/// The pop command of an end, as effects record it.
fn pop_name(end: End) -> &'static [u8] {
    match end {
        End::Left => b"LPOP",
        End::Right => b"RPOP",
    }
}

/// An end as LMOVE names it.
fn end_name(end: End) -> &'static [u8] {
    match end {
        End::Left => b"LEFT",
        End::Right => b"RIGHT",
    }
}

fn pop_event(end: End) -> &'static str {
    match end {
        End::Left => "lpop",
        End::Right => "rpop",
    }
}

/// A positive count (`getPositiveLongFromObjectOrReply`).
fn positive_count(a: &[u8]) -> Result<usize, CmdError> {
    let n = int_arg(a)?;
    if n < 0 {
        return Err(CmdError::msg("ERR value is out of range, must be positive"));
    }
    Ok(n as usize)
}

/// `LPOP key [count]`, `RPOP key [count]`
pub fn pop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::msg(format!(
            "ERR wrong number of arguments for '{}' command",
            call.spec.name
        )));
    }
    let end = if call.spec.name == "lpop" {
        End::Left
    } else {
        End::Right
    };
    let count = args.try_get(2).map(positive_count).transpose()?;
    let key = args.get(1);
    let resp3 = call.resp3;
    let Some(list) = s.write_as::<List>(call, key, false)? else {
        let mut r = Call::reply_to(call.out, resp3);
        if count.is_some() {
            r.null_array()
        } else {
            r.null()
        }
        return Ok(());
    };
    let mut r = Call::reply_to(call.out, resp3);
    if count == Some(0) {
        r.array(0);
        return Ok(());
    }
    match count {
        None => r.bulk_opt(list.pop(end).as_ref().map(|e| e.as_bytes())),
        Some(0) => {}
        Some(n) => {
            let n = n.min(list.len());
            r.array(n);
            for _ in 0..n {
                let e = list.pop(end).expect("n is within the length");
                r.bulk(e.as_bytes());
            }
        }
    }
    let empty = list.is_empty();
    s.notify(LIST, pop_event(end), key);
    if empty {
        s.db.remove(key);
        s.notify(crate::notify::GENERIC, "del", key);
    }
    Ok(())
}

/// `LLEN key`
pub fn llen(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let n = s.read_as::<List>(call, args.get(1))?.map_or(0, |l| l.len());
    call.reply().int(n as i64);
    Ok(())
}

/// `LINDEX key index`
pub fn lindex(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let i = int_arg(args.get(2))?;
    let list = s.read_as::<List>(call, args.get(1))?;
    let v = list.and_then(|l| l.index(i).map(|p| l.0[p].as_bytes()));
    Call::reply_to(call.out, call.resp3).bulk_opt(v);
    Ok(())
}

/// `LRANGE key start stop`
pub fn lrange(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (start, stop) = (int_arg(args.get(2))?, int_arg(args.get(3))?);
    let list = s.read_as::<List>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    match list.and_then(|l| l.range(start, stop).map(|range| (l, range))) {
        None => r.array(0),
        Some((l, (a, b))) => {
            r.array(b - a + 1);
            for e in l.0.range(a..=b) {
                r.bulk(e.as_bytes());
            }
        }
    }
    Ok(())
}

/// `LTRIM key start stop`
pub fn ltrim(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (start, stop) = (int_arg(args.get(2))?, int_arg(args.get(3))?);
    let key = args.get(1);
    if let Some(list) = s.write_as::<List>(call, key, false)? {
        match list.range(start, stop) {
            None => list.0.clear(),
            Some((a, b)) => {
                list.0.truncate(b + 1);
                list.0.drain(..a);
            }
        }
        s.notify(LIST, "ltrim", key);
        s.remove_if_empty(key);
    }
    call.reply().ok();
    Ok(())
}

/// `LSET key index element`
pub fn lset(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let i = int_arg(args.get(2))?;
    let Some(list) = s.write_as::<List>(call, args.get(1), false)? else {
        return Err(OpError::NoSuchKey.into());
    };
    let p = list
        .index(i)
        .ok_or_else(|| CmdError::msg("ERR index out of range"))?;
    list.0[p] = tessera_storage::SmallBytes::new(args.get(3));
    s.notify(LIST, "lset", args.get(1));
    call.reply().ok();
    Ok(())
}

/// `LINSERT key <BEFORE | AFTER> pivot element`
pub fn linsert(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let after = match args.get(2) {
        a if is(a, "after") => true,
        a if is(a, "before") => false,
        _ => return Err(CmdError::Syntax),
    };
    let n = match s.write_as::<List>(call, args.get(1), false)? {
        None => 0,
        Some(list) => match list.0.iter().position(|e| e.as_bytes() == args.get(3)) {
            None => -1,
            Some(p) => {
                list.0.insert(
                    p + usize::from(after),
                    tessera_storage::SmallBytes::new(args.get(4)),
                );
                let len = list.len() as i64;
                s.notify(LIST, "linsert", args.get(1));
                len
            }
        },
    };
    call.reply().int(n);
    Ok(())
}

/// `LREM key count element`
pub fn lrem(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let count = int_arg(args.get(2))?;
    let key = args.get(1);
    let target = args.get(3);
    let mut removed = 0usize;
    if let Some(list) = s.write_as::<List>(call, key, false)? {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        let mut kept = std::collections::VecDeque::with_capacity(list.len());
        let items: Vec<_> = list.0.drain(..).collect();
        if count < 0 {
            // From the tail.
            for e in items.into_iter().rev() {
                if removed < limit && e.as_bytes() == target {
                    removed += 1;
                } else {
                    kept.push_front(e);
                }
            }
        } else {
            for e in items {
                if removed < limit && e.as_bytes() == target {
                    removed += 1;
                } else {
                    kept.push_back(e);
                }
            }
        }
        list.0 = kept;
        if removed > 0 {
            s.notify(LIST, "lrem", key);
            s.remove_if_empty(key);
        }
    }
    call.reply().int(removed as i64);
    Ok(())
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`
pub fn lpos(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<usize>, 0usize);
    let mut i = 3;
    while i < args.len() {
        let (opt, v) = (args.get(i), args.try_get(i + 1));
        let Some(v) = v else {
            return Err(CmdError::Syntax);
        };
        if is(opt, "rank") {
            rank = int_arg(v)?;
            if rank == 0 {
                return Err(CmdError::msg(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            if rank == i64::MIN {
                return Err(CmdError::msg(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                ));
            }
        } else if is(opt, "count") {
            let n = int_arg(v)?;
            if n < 0 {
                return Err(CmdError::msg("ERR COUNT can't be negative"));
            }
            count = Some(n as usize);
        } else if is(opt, "maxlen") {
            let n = int_arg(v)?;
            if n < 0 {
                return Err(CmdError::msg("ERR MAXLEN can't be negative"));
            }
            maxlen = n as usize;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let target = args.get(2);
    let list = s.read_as::<List>(call, args.get(1))?;
    let mut matches = Vec::new();
    if let Some(l) = list {
        let want = match count {
            Some(0) => usize::MAX,
            Some(n) => n,
            None => 1,
        };
        let scan_len = if maxlen == 0 {
            l.len()
        } else {
            maxlen.min(l.len())
        };
        let mut skip = rank.unsigned_abs() - 1;
        let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
            Box::new(0..scan_len)
        } else {
            Box::new((l.len() - scan_len..l.len()).rev())
        };
        for p in positions {
            if l.0[p].as_bytes() == target {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                matches.push(p as i64);
                if matches.len() >= want {
                    break;
                }
            }
        }
    }
    let mut r = Call::reply_to(call.out, call.resp3);
    match count {
        None => match matches.first() {
            Some(&p) => r.int(p),
            None => r.null(),
        },
        Some(_) => {
            r.array(matches.len());
            for p in matches {
                r.int(p);
            }
        }
    }
    Ok(())
}

/// Pops from `src` at `from` and pushes onto `dst` at `to` (LMOVE, RPOPLPUSH), with Redis's
/// checks: a missing or empty source replies null before the destination's type is checked.
fn lmove_generic(
    s: &mut Server,
    call: &mut Call<'_>,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
) -> CmdResult {
    let resp3 = call.resp3;
    if s.write_as::<List>(call, src, false)?
        .is_none_or(|l| l.is_empty())
    {
        Call::reply_to(call.out, resp3).null();
        return Ok(());
    }
    if s.db
        .get(dst, call.now)
        .is_some_and(|e| !matches!(e.value(), tessera_storage::Value::List(_)))
    {
        return Err(OpError::WrongType.into());
    }
    let value = s
        .write_as::<List>(call, src, false)?
        .and_then(|l| l.pop(from))
        .expect("checked non-empty");
    // As Redis: the push is signalled before the pop, the source deleted last.
    s.write_as::<List>(call, dst, true)?
        .expect("created when missing")
        .push(to, value.as_bytes());
    s.notify(LIST, push_event(to), dst);
    s.notify(LIST, pop_event(from), src);
    s.remove_if_empty(src);
    // BLMOVE and BRPOPLPUSH are recorded as the move they made.
    s.propagate(&[b"LMOVE", src, dst, end_name(from), end_name(to)]);
    Call::reply_to(call.out, resp3).bulk(value.as_bytes());
    Ok(())
}

/// `LMOVE source destination <LEFT | RIGHT> <LEFT | RIGHT>`
pub fn lmove(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (from, to) = (end_of(args.get(3))?, end_of(args.get(4))?);
    lmove_generic(s, call, args.get(1), args.get(2), from, to)
}

/// `RPOPLPUSH source destination`
pub fn rpoplpush(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    lmove_generic(s, call, args.get(1), args.get(2), End::Right, End::Left)
}

/// Pops up to `count` elements from the first non-empty list and replies `[key, [elements]]`.
/// Returns false, replying nothing, when every list is empty.
fn mpop(
    s: &mut Server,
    call: &mut Call<'_>,
    keys: &[&[u8]],
    end: End,
    count: usize,
) -> Result<bool, CmdError> {
    for key in keys {
        let Some(list) = s.write_as::<List>(call, key, false)? else {
            continue;
        };
        if list.is_empty() {
            continue;
        }
        let n = count.min(list.len());
        let popped: Vec<_> = (0..n).filter_map(|_| list.pop(end)).collect();
        s.notify(LIST, pop_event(end), key);
        s.remove_if_empty(key);
        // Recorded as Redis does: `LPOP|RPOP key count`.
        let mut buf = itoa::Buffer::new();
        s.propagate(&[pop_name(end), key, buf.format(popped.len()).as_bytes()]);
        let mut r = call.reply();
        r.array(2);
        r.bulk(key);
        r.array(popped.len());
        for e in &popped {
            r.bulk(e.as_bytes());
        }
        return Ok(true);
    }
    Ok(false)
}

/// `LMPOP numkeys key [key ...] <LEFT | RIGHT> [COUNT count]`
pub fn lmpop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (keys, end, count) = super::parse_multi_pop(args, 1, |w| end_of(w).ok())?;
    if !mpop(s, call, &keys, end, count)? {
        call.reply().null_array();
    }
    Ok(())
}

/// `BLPOP key [key ...] timeout`, `BRPOP key [key ...] timeout`
pub fn blpop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let end = if call.spec.name == "blpop" {
        End::Left
    } else {
        End::Right
    };
    let timeout = crate::blocking::parse_timeout(args.get(args.len() - 1))?;
    let keys: Vec<&[u8]> = (1..args.len() - 1).map(|i| args.get(i)).collect();
    for key in &keys {
        if let Some(list) = s.write_as::<List>(call, key, false)?
            && let Some(e) = list.pop(end)
        {
            s.notify(LIST, pop_event(end), key);
            s.remove_if_empty(key);
            s.propagate(&[pop_name(end), key]);
            let mut r = call.reply();
            r.array(2);
            r.bulk(key);
            r.bulk(e.as_bytes());
            return Ok(());
        }
    }
    s.blocking
        .wait_on(keys.iter().map(|k| k.to_vec()).collect(), timeout);
    Ok(())
}

/// `BLMOVE source destination <LEFT | RIGHT> <LEFT | RIGHT> timeout`,
/// `BRPOPLPUSH source destination timeout`
pub fn blmove(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (from, to, timeout_at) = if call.spec.name == "blmove" {
        (end_of(args.get(3))?, end_of(args.get(4))?, 5)
    } else {
        (End::Right, End::Left, 3)
    };
    let timeout = crate::blocking::parse_timeout(args.get(timeout_at))?;
    let src = args.get(1);
    if s.write_as::<List>(call, src, false)?
        .is_some_and(|l| !l.is_empty())
    {
        return lmove_generic(s, call, src, args.get(2), from, to);
    }
    s.blocking.wait_on(vec![src.to_vec()], timeout);
    Ok(())
}

/// `BLMPOP timeout numkeys key [key ...] <LEFT | RIGHT> [COUNT count]`
pub fn blmpop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let timeout = crate::blocking::parse_timeout(args.get(1))?;
    let (keys, end, count) = super::parse_multi_pop(args, 2, |w| end_of(w).ok())?;
    if !mpop(s, call, &keys, end, count)? {
        s.blocking
            .wait_on(keys.iter().map(|k| k.to_vec()).collect(), timeout);
    }
    Ok(())
}
