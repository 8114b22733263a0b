//! Set commands: SADD and friends, random members, the algebra (SINTER, SUNION, SDIFF and their
//! STORE forms, SINTERCARD), SMOVE, SSCAN.

use rand::seq::index::sample;
use tessera_protocol::Args;
use tessera_storage::{Expiry, OpError, Set, StrView, Value};

use super::{ScanOptions, int_arg, is, signed_count};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::{GENERIC, SET};
use crate::server::Server;

fn reply_member(r: &mut tessera_protocol::Reply<'_>, m: StrView<'_>) {
    match m {
        StrView::Bytes(b) => r.bulk(b),
        StrView::Int(n) => r.bulk_int(n),
    }
}

/// `SADD key member [member ...]`
pub fn sadd(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let limits = s.db.limits;
    let set = s
        .write_as::<Set>(call, args.get(1), true)?
        .expect("created when missing");
    let added = args.iter_from(2).filter(|m| set.add(m, &limits)).count();
    if added > 0 {
        s.notify(SET, "sadd", args.get(1));
    }
    call.reply().int(added as i64);
    Ok(())
}

/// `SREM key member [member ...]`
pub fn srem(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let mut n = 0;
    if let Some(set) = s.write_as::<Set>(call, key, false)? {
        n = args.iter_from(2).filter(|m| set.remove(m)).count();
        if n > 0 {
            s.notify(SET, "srem", key);
            s.remove_if_empty(key);
        }
    }
    call.reply().int(n as i64);
    Ok(())
}

/// `SCARD key`
pub fn scard(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let n = s.read_as::<Set>(call, args.get(1))?.map_or(0, Set::len);
    call.reply().int(n as i64);
    Ok(())
}

/// `SISMEMBER key member`, `SMISMEMBER key member [member ...]`
pub fn sismember(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let multi = call.spec.name == "smismember";
    let set = s.read_as::<Set>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    if multi {
        r.array(args.len() - 2);
    }
    for m in args.iter_from(2) {
        r.int(i64::from(set.is_some_and(|s| s.contains(m))));
    }
    Ok(())
}

/// `SMEMBERS key`
pub fn smembers(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let set = s.read_as::<Set>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    r.set(set.map_or(0, Set::len));
    for m in set.into_iter().flat_map(|s| s.iter()) {
        reply_member(&mut r, m);
    }
    Ok(())
}

/// `SRANDMEMBER key [count]`
pub fn srandmember(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = args.try_get(2).map(signed_count).transpose()?;
    let mut rng = rand::rng();
    let set = s.read_as::<Set>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    let Some(count) = count else {
        match set.and_then(|s| s.random(&mut rng)) {
            Some(m) => reply_member(&mut r, m),
            None => r.null(),
        }
        return Ok(());
    };
    let Some(set) = set.filter(|_| count != 0) else {
        r.array(0);
        return Ok(());
    };
    if count < 0 {
        // Repetitions allowed.
        let n = count.unsigned_abs() as usize;
        r.array(n);
        for _ in 0..n {
            let m = set.random(&mut rng).expect("the set is not empty");
            reply_member(&mut r, m);
        }
    } else if count as usize >= set.len() {
        // The whole set.
        r.array(set.len());
        for m in set.iter() {
            reply_member(&mut r, m);
        }
    } else {
        let all: Vec<StrView<'_>> = set.iter().collect();
        r.array(count as usize);
        for i in sample(&mut rng, all.len(), count as usize) {
            reply_member(&mut r, all[i]);
        }
    }
    Ok(())
}

/// `SPOP key [count]`
pub fn spop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = match args.try_get(2) {
        None => None,
        Some(a) => {
            let n = int_arg(a)?;
            if n < 0 {
                return Err(CmdError::msg("ERR value is out of range, must be positive"));
            }
            Some(n as usize)
        }
    };
    let key = args.get(1);
    let mut rng = rand::rng();
    let resp3 = call.resp3;
    let Some(set) = s.write_as::<Set>(call, key, false)? else {
        let mut r = Call::reply_to(call.out, resp3);
        if count.is_some() {
            r.set(0)
        } else {
            r.null()
        }
        return Ok(());
    };
    let popped: Vec<Vec<u8>> = match count {
        None => set
            .random(&mut rng)
            .map(|m| m.to_vec())
            .into_iter()
            .collect(),
        Some(n) if n >= set.len() => set.iter().map(|m| m.to_vec()).collect(),
        Some(n) => {
            let all: Vec<Vec<u8>> = set.iter().map(|m| m.to_vec()).collect();
            sample(&mut rng, all.len(), n)
                .into_iter()
                .map(|i| all[i].clone())
                .collect()
        }
    };
    for m in &popped {
        set.remove(m);
    }
    if !popped.is_empty() {
        s.notify(SET, "spop", key);
        s.remove_if_empty(key);
        // The random choice is recorded as the members it removed.
        if s.effects.enabled {
            let mut effect: Vec<&[u8]> = Vec::with_capacity(popped.len() + 2);
            effect.extend([&b"SREM"[..], key]);
            effect.extend(popped.iter().map(Vec::as_slice));
            s.propagate(&effect);
        }
    }
    let mut r = Call::reply_to(call.out, resp3);
    match count {
        None => r.bulk_opt(popped.first().map(Vec::as_slice)),
        Some(_) => {
            r.set(popped.len());
            for m in &popped {
                r.bulk(m);
            }
        }
    }
    Ok(())
}

/// `SMOVE source destination member`
pub fn smove(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (src, dst, member) = (args.get(1), args.get(2), args.get(3));
    let src_is_set = match s.db.get(src, call.now) {
        None => {
            call.reply().int(0);
            return Ok(());
        }
        Some(e) => matches!(e.value(), Value::Set(_)),
    };
    let dst_ok =
        s.db.get(dst, call.now)
            .is_none_or(|e| matches!(e.value(), Value::Set(_)));
    if !src_is_set || !dst_ok {
        return Err(OpError::WrongType.into());
    }
    if src == dst {
        let found = s
            .read_as::<Set>(call, src)?
            .is_some_and(|set| set.contains(member));
        call.reply().int(i64::from(found));
        return Ok(());
    }
    let removed = s
        .write_as::<Set>(call, src, false)?
        .is_some_and(|set| set.remove(member));
    if !removed {
        call.reply().int(0);
        return Ok(());
    }
    s.notify(SET, "srem", src);
    s.remove_if_empty(src);
    let limits = s.db.limits;
    let added = s
        .write_as::<Set>(call, dst, true)?
        .expect("created when missing")
        .add(member, &limits);
    if added {
        s.notify(SET, "sadd", dst);
    }
    call.reply().int(1);
    Ok(())
}

/// What a set-algebra command computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

/// Computes `op` over the sets at `keys` (Redis's `sinterGenericCommand` and
/// `sunionDiffGenericCommand`): every key's type is checked first (WRONGTYPE), then a missing
/// key counts as an empty set.
fn compute(s: &mut Server, call: &Call<'_>, op: SetOp, keys: &[&[u8]]) -> Result<Set, CmdError> {
    let limits = s.db.limits;
    // First pass: expiry, statistics and type checks, in key order.
    let mut missing = false;
    for key in keys {
        missing |= s.read_as::<Set>(call, key)?.is_none();
    }
    if missing && op == SetOp::Inter {
        return Ok(Set::new());
    }
    // Second pass: borrow the live sets without copying them.
    let sets: Vec<Option<&Set>> = keys
        .iter()
        .map(|k| {
            s.db.find_stored(k).and_then(|e| match e.value() {
                Value::Set(set) => Some(&**set),
                _ => None,
            })
        })
        .collect();
    let mut result = Set::new();
    match op {
        SetOp::Inter => {
            let mut sets: Vec<&Set> = sets.into_iter().flatten().collect();
            // Iterate the smallest set, check membership in the others.
            sets.sort_by_key(|s| s.len());
            let (first, rest) = sets.split_first().expect("at least one key");
            for m in first.iter() {
                let m = m.to_vec();
                if rest.iter().all(|other| other.contains(&m)) {
                    result.add(&m, &limits);
                }
            }
        }
        SetOp::Union => {
            for set in sets.iter().flatten() {
                for m in set.iter() {
                    result.add(&m.to_vec(), &limits);
                }
            }
        }
        SetOp::Diff => {
            if let Some(Some(first)) = sets.first() {
                for m in first.iter() {
                    let m = m.to_vec();
                    if !sets[1..].iter().flatten().any(|other| other.contains(&m)) {
                        result.add(&m, &limits);
                    }
                }
            }
        }
    }
    Ok(result)
}

fn op_of(name: &str) -> SetOp {
    if name.starts_with("sinter") {
        SetOp::Inter
    } else if name.starts_with("sunion") {
        SetOp::Union
    } else {
        SetOp::Diff
    }
}

/// `SINTER key [key ...]`, `SUNION key [key ...]`, `SDIFF key [key ...]`
pub fn algebra(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let keys: Vec<&[u8]> = args.iter_from(1).collect();
    let result = compute(s, call, op_of(call.spec.name), &keys)?;
    let mut r = call.reply();
    r.set(result.len());
    for m in result.iter() {
        reply_member(&mut r, m);
    }
    Ok(())
}

/// `SINTERSTORE destination key [key ...]` and the SUNION and SDIFF forms.
pub fn algebra_store(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let keys: Vec<&[u8]> = args.iter_from(2).collect();
    let result = compute(s, call, op_of(call.spec.name), &keys)?;
    let dst = args.get(1);
    let n = result.len();
    if n == 0 {
        if s.db.remove_live(dst, call.now).is_some() {
            s.notify(GENERIC, "del", dst);
        }
    } else {
        s.db.set(dst, Value::Set(Box::new(result)), Expiry::Persist, call.now);
        let event = match call.spec.name {
            "sinterstore" => "sinterstore",
            "sunionstore" => "sunionstore",
            _ => "sdiffstore",
        };
        s.notify(SET, event, dst);
    }
    call.reply().int(n as i64);
    Ok(())
}

/// `SINTERCARD numkeys key [key ...] [LIMIT limit]`
pub fn sintercard(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let numkeys = int_arg(args.get(1))
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| CmdError::msg("ERR numkeys should be greater than 0"))?
        as usize;
    if numkeys > args.len() - 2 {
        return Err(CmdError::msg(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let mut limit = 0usize;
    let mut i = 2 + numkeys;
    while i < args.len() {
        if is(args.get(i), "limit") && i + 1 < args.len() {
            let n = int_arg(args.get(i + 1))
                .ok()
                .filter(|&n| n >= 0)
                .ok_or_else(|| CmdError::msg("ERR LIMIT can't be negative"))?;
            limit = n as usize;
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let keys: Vec<&[u8]> = (2..2 + numkeys).map(|i| args.get(i)).collect();
    let n = compute(s, call, SetOp::Inter, &keys)?.len();
    call.reply()
        .int(if limit > 0 { n.min(limit) } else { n } as i64);
    Ok(())
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`
pub fn sscan(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let o = ScanOptions::parse(args, 2, false)?;
    let set = s.read_as::<Set>(call, args.get(1))?;
    let mut found: Vec<Vec<u8>> = Vec::new();
    let next = match set {
        Some(set) => set.scan(o.cursor, o.count, |m| {
            let m = m.to_vec();
            if o.matches(&m) {
                found.push(m);
            }
        }),
        None => 0,
    };
    let mut r = Call::reply_to(call.out, call.resp3);
    r.array(2);
    r.bulk(itoa::Buffer::new().format(next).as_bytes());
    r.array(found.len());
    for m in &found {
        r.bulk(m);
    }
    Ok(())
}
