//! Sorted set commands, after Redis's t_zset.c: ZADD and friends, the ZRANGE family (by rank,
//! score and lex, REV, LIMIT, WITHSCORES, STORE), removals by range, pops (blocking too),
//! ZRANDMEMBER, the algebra (ZUNION, ZINTER, ZDIFF, their STORE forms, ZINTERCARD), ZSCAN.

use rand::seq::index::sample;
use tessera_protocol::{Args, Reply, num};
use tessera_storage::{Expiry, OpError, Value, ZSet};

use super::{ScanOptions, int_arg, is};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::{GENERIC, ZSET as ZSET_EVENTS};
use crate::server::Server;

const NOT_FLOAT: &str = "ERR value is not a valid float";
const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";

fn score_arg(a: &[u8]) -> Result<f64, CmdError> {
    num::parse_f64(a).ok_or_else(|| CmdError::msg(NOT_FLOAT))
}

/// C's `strtod` over the whole string, as range parsing uses it: leading spaces are skipped and
/// an empty string is 0.
pub(crate) fn strtod(a: &[u8]) -> Option<f64> {
    let start = a
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(a.len());
    let t = &a[start..];
    if t.is_empty() {
        return Some(0.0);
    }
    num::parse_f64(t)
}

/// One end of a score range.
#[derive(Clone, Copy, Debug)]
struct Bound {
    value: f64,
    exclusive: bool,
}

fn score_bound(a: &[u8]) -> Option<Bound> {
    match a.first() {
        Some(b'(') => strtod(&a[1..]).map(|value| Bound {
            value,
            exclusive: true,
        }),
        _ => strtod(a).map(|value| Bound {
            value,
            exclusive: false,
        }),
    }
}

/// One end of a lex range: `-`, `+`, `[x` or `(x`.
#[derive(Clone, Debug)]
enum Lex {
    Min,
    Max,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

fn lex_bound(a: &[u8]) -> Option<Lex> {
    match a.first()? {
        b'-' if a.len() == 1 => Some(Lex::Min),
        b'+' if a.len() == 1 => Some(Lex::Max),
        b'[' => Some(Lex::Incl(a[1..].to_vec())),
        b'(' => Some(Lex::Excl(a[1..].to_vec())),
        _ => None,
    }
}

/// The ascending rank range `[a, b)` of elements within a score range.
fn score_span(z: &ZSet, min: Bound, max: Bound) -> (usize, usize) {
    let a = z.count_below(min.value, min.exclusive);
    let b = z.count_below(max.value, !max.exclusive);
    (a, b.max(a))
}

/// The ascending rank range `[a, b)` of elements within a lex range.
fn lex_span(z: &ZSet, min: &Lex, max: &Lex) -> (usize, usize) {
    let a = match min {
        Lex::Min => 0,
        Lex::Max => z.len(),
        Lex::Incl(m) => z.count_below_lex(m, false),
        Lex::Excl(m) => z.count_below_lex(m, true),
    };
    let b = match max {
        Lex::Min => 0,
        Lex::Max => z.len(),
        Lex::Incl(m) => z.count_below_lex(m, true),
        Lex::Excl(m) => z.count_below_lex(m, false),
    };
    (a, b.max(a))
}

fn reply_score(r: &mut Reply<'_>, score: f64) {
    r.double(score);
}

/// `ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]`
pub fn zadd(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut at = 2;
    while at < args.len() {
        let a = args.get(at);
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if is(a, "ch") {
            ch = true;
        } else if is(a, "incr") {
            incr = true;
        } else if is(a, "gt") {
            gt = true;
        } else if is(a, "lt") {
            lt = true;
        } else {
            break;
        }
        at += 1;
    }
    let pairs = args.len() - at;
    if pairs == 0 || !pairs.is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    if xx && nx {
        return Err(CmdError::msg(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if ((gt || lt) && nx) || (gt && lt) {
        return Err(CmdError::msg(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && pairs > 2 {
        return Err(CmdError::msg(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let scores: Vec<f64> = (at..args.len())
        .step_by(2)
        .map(|i| score_arg(args.get(i)))
        .collect::<Result<_, _>>()?;
    let limits = s.db.limits.zset();
    let key = args.get(1);
    let exists = s.write_as::<ZSet>(call, key, false)?.is_some();
    let mut last: Option<f64> = None;
    let (mut added, mut updated) = (0, 0);
    if exists || !xx {
        let z = s
            .write_as::<ZSet>(call, key, true)?
            .expect("created when missing");
        for (j, score) in scores.iter().enumerate() {
            let member = args.get(at + 2 * j + 1);
            match z.score(member) {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { cur + score } else { *score };
                    if new.is_nan() {
                        s.remove_if_empty(key);
                        return Err(CmdError::msg(NAN_SCORE));
                    }
                    if (lt && new >= cur) || (gt && new <= cur) {
                        continue;
                    }
                    if new != cur {
                        z.set(new, member, &limits);
                        updated += 1;
                    }
                    last = Some(new);
                }
                None => {
                    if xx {
                        continue;
                    }
                    z.set(*score, member, &limits);
                    added += 1;
                    last = Some(*score);
                }
            }
        }
        if added > 0 || updated > 0 {
            s.notify(ZSET_EVENTS, if incr { "zincr" } else { "zadd" }, key);
        }
        s.remove_if_empty(key);
    }
    let mut r = call.reply();
    if incr {
        match last {
            Some(v) => reply_score(&mut r, v),
            None => r.null(),
        }
    } else {
        r.int(if ch { added + updated } else { added });
    }
    Ok(())
}

/// `ZINCRBY key increment member`
pub fn zincrby(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let incr = score_arg(args.get(2))?;
    let limits = s.db.limits.zset();
    let key = args.get(1);
    let z = s
        .write_as::<ZSet>(call, key, true)?
        .expect("created when missing");
    let member = args.get(3);
    let old = z.score(member);
    let new = old.unwrap_or(0.0) + incr;
    if new.is_nan() {
        s.remove_if_empty(key);
        return Err(CmdError::msg(NAN_SCORE));
    }
    z.set(new, member, &limits);
    if old != Some(new) {
        s.notify(ZSET_EVENTS, "zincr", key);
    }
    reply_score(&mut call.reply(), new);
    Ok(())
}

/// `ZREM key member [member ...]`
pub fn zrem(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let mut n = 0;
    if let Some(z) = s.write_as::<ZSet>(call, key, false)? {
        n = args.iter_from(2).filter(|m| z.remove(m)).count();
        if n > 0 {
            s.notify(ZSET_EVENTS, "zrem", key);
            s.remove_if_empty(key);
        }
    }
    call.reply().int(n as i64);
    Ok(())
}

/// `ZCARD key`
pub fn zcard(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let n = s.read_as::<ZSet>(call, args.get(1))?.map_or(0, ZSet::len);
    call.reply().int(n as i64);
    Ok(())
}

/// `ZSCORE key member`, `ZMSCORE key member [member ...]`
pub fn zscore(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let multi = call.spec.name == "zmscore";
    let z = s.read_as::<ZSet>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    if multi {
        r.array(args.len() - 2);
    }
    for m in args.iter_from(2) {
        match z.and_then(|z| z.score(m)) {
            Some(v) => reply_score(&mut r, v),
            None => r.null(),
        }
    }
    Ok(())
}

/// `ZRANK key member`, `ZREVRANK key member`
pub fn zrank(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let rev = call.spec.name == "zrevrank";
    let z = s.read_as::<ZSet>(call, args.get(1))?;
    let rank = z.and_then(|z| {
        z.rank(args.get(2))
            .map(|r| if rev { z.len() - 1 - r } else { r })
    });
    let mut r = Call::reply_to(call.out, call.resp3);
    match rank {
        Some(n) => r.int(n as i64),
        None => r.null(),
    }
    Ok(())
}

/// `ZCOUNT key min max`
pub fn zcount(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (Some(min), Some(max)) = (score_bound(args.get(2)), score_bound(args.get(3))) else {
        return Err(CmdError::msg("ERR min or max is not a float"));
    };
    let n = s.read_as::<ZSet>(call, args.get(1))?.map_or(0, |z| {
        let (a, b) = score_span(z, min, max);
        b - a
    });
    call.reply().int(n as i64);
    Ok(())
}

/// `ZLEXCOUNT key min max`
pub fn zlexcount(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (Some(min), Some(max)) = (lex_bound(args.get(2)), lex_bound(args.get(3))) else {
        return Err(CmdError::msg("ERR min or max not valid string range item"));
    };
    let n = s.read_as::<ZSet>(call, args.get(1))?.map_or(0, |z| {
        let (a, b) = lex_span(z, &min, &max);
        b - a
    });
    call.reply().int(n as i64);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeType {
    Rank,
    Score,
    Lex,
}

/// A parsed ZRANGE-family request.
struct RangeRequest {
    kind: RangeType,
    rev: bool,
    withscores: bool,
    /// (offset, count); count < 0 means all.
    limit: Option<(i64, i64)>,
    min: Vec<u8>,
    max: Vec<u8>,
}

/// Parses the ZRANGE family (Redis's `zrangeGenericCommand`): `at` is the index of the first
/// range argument; `preset` fixes the type and direction for the legacy commands.
fn parse_range(
    args: &Args<'_>,
    at: usize,
    preset: Option<(RangeType, bool)>,
    store: bool,
) -> Result<RangeRequest, CmdError> {
    let (mut kind, mut rev) = (None, None);
    if let Some((k, r)) = preset {
        kind = Some(k);
        rev = Some(r);
    }
    let mut withscores = false;
    let mut limit = None;
    let mut j = at + 2;
    while j < args.len() {
        let a = args.get(j);
        let left = args.len() - j - 1;
        if is(a, "withscores") && !store {
            withscores = true;
        } else if is(a, "limit") && left >= 2 {
            limit = Some((int_arg(args.get(j + 1))?, int_arg(args.get(j + 2))?));
            j += 2;
        } else if rev.is_none() && is(a, "rev") {
            rev = Some(true);
        } else if kind.is_none() && is(a, "bylex") {
            kind = Some(RangeType::Lex);
        } else if kind.is_none() && is(a, "byscore") {
            kind = Some(RangeType::Score);
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let kind = kind.unwrap_or(RangeType::Rank);
    let rev = rev.unwrap_or(false);
    if limit.is_some() && kind == RangeType::Rank {
        return Err(CmdError::msg(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && kind == RangeType::Lex {
        return Err(CmdError::msg(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (args.get(at).to_vec(), args.get(at + 1).to_vec());
    if rev && kind != RangeType::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    Ok(RangeRequest {
        kind,
        rev,
        withscores,
        limit,
        min,
        max,
    })
}

/// Resolves a range request to the elements it selects, in reply order.
fn select(z: Option<&ZSet>, q: &RangeRequest) -> Result<Vec<(Vec<u8>, f64)>, CmdError> {
    // Ranges are parsed before the key is looked at, as in Redis.
    enum Span {
        Rank(i64, i64),
        Ranks(usize, usize),
    }
    let pick = |z: &ZSet| -> Result<Span, CmdError> {
        Ok(match q.kind {
            RangeType::Rank => Span::Rank(int_arg(&q.min)?, int_arg(&q.max)?),
            RangeType::Score => {
                let (Some(min), Some(max)) = (score_bound(&q.min), score_bound(&q.max)) else {
                    return Err(CmdError::msg("ERR min or max is not a float"));
                };
                let (a, b) = score_span(z, min, max);
                Span::Ranks(a, b)
            }
            RangeType::Lex => {
                let (Some(min), Some(max)) = (lex_bound(&q.min), lex_bound(&q.max)) else {
                    return Err(CmdError::msg("ERR min or max not valid string range item"));
                };
                let (a, b) = lex_span(z, &min, &max);
                Span::Ranks(a, b)
            }
        })
    };
    let empty = ZSet::new();
    let span = pick(z.unwrap_or(&empty))?;
    let Some(z) = z else { return Ok(Vec::new()) };
    let len = z.len() as i64;
    let (a, b) = match span {
        Span::Rank(mut start, mut end) => {
            if start < 0 {
                start += len;
            }
            if end < 0 {
                end += len;
            }
            start = start.max(0);
            if start > end || start >= len {
                return Ok(Vec::new());
            }
            end = end.min(len - 1);
            if q.rev {
                ((len - 1 - end) as usize, (len - start) as usize)
            } else {
                (start as usize, end as usize + 1)
            }
        }
        Span::Ranks(a, b) => (a, b),
    };
    let items: Box<dyn Iterator<Item = &tessera_storage::Elem>> = if q.rev {
        Box::new(z.range(a, b).rev())
    } else {
        Box::new(z.range(a, b))
    };
    let items = match q.limit {
        Some((offset, _)) if offset < 0 => return Ok(Vec::new()),
        Some((offset, count)) => {
            let take = if count < 0 {
                usize::MAX
            } else {
                count as usize
            };
            Box::new(items.skip(offset as usize).take(take)) as Box<dyn Iterator<Item = _>>
        }
        None => items,
    };
    Ok(items
        .map(|e| (e.member.as_bytes().to_vec(), e.score))
        .collect())
}

fn reply_elements(r: &mut Reply<'_>, items: &[(Vec<u8>, f64)], withscores: bool) {
    let resp3 = r.resp3();
    r.array(if withscores && !resp3 {
        items.len() * 2
    } else {
        items.len()
    });
    for (m, score) in items {
        if withscores && resp3 {
            r.array(2);
        }
        r.bulk(m);
        if withscores {
            reply_score(r, *score);
        }
    }
}

/// `ZRANGE`, `ZREVRANGE`, `ZRANGEBYSCORE`, `ZREVRANGEBYSCORE`, `ZRANGEBYLEX`, `ZREVRANGEBYLEX`
pub fn zrange(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let preset = match call.spec.name {
        "zrevrange" => Some((RangeType::Rank, true)),
        "zrangebyscore" => Some((RangeType::Score, false)),
        "zrevrangebyscore" => Some((RangeType::Score, true)),
        "zrangebylex" => Some((RangeType::Lex, false)),
        "zrevrangebylex" => Some((RangeType::Lex, true)),
        _ => None,
    };
    let q = parse_range(args, 2, preset, false)?;
    let z = s.read_as::<ZSet>(call, args.get(1))?;
    let items = select(z, &q)?;
    reply_elements(
        &mut Call::reply_to(call.out, call.resp3),
        &items,
        q.withscores,
    );
    Ok(())
}

/// `ZRANGESTORE dst src min max [BYSCORE | BYLEX] [REV] [LIMIT offset count]`
pub fn zrangestore(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let q = parse_range(args, 3, None, true)?;
    let z = s.read_as::<ZSet>(call, args.get(2))?;
    let items = select(z, &q)?;
    let n = store(s, call, args.get(1), items.into_iter(), "zrangestore");
    call.reply().int(n as i64);
    Ok(())
}

/// Stores elements as a new sorted set at `dst` (deleting it when empty); returns the count.
fn store(
    s: &mut Server,
    call: &Call<'_>,
    dst: &[u8],
    items: impl Iterator<Item = (Vec<u8>, f64)>,
    event: &'static str,
) -> usize {
    let limits = s.db.limits.zset();
    let mut z = ZSet::new();
    for (m, score) in items {
        z.set(score, &m, &limits);
    }
    let n = z.len();
    if n == 0 {
        if s.db.remove_live(dst, call.now).is_some() {
            s.notify(GENERIC, "del", dst);
        }
    } else {
        s.db.set(dst, Value::ZSet(Box::new(z)), Expiry::Persist, call.now);
        s.notify(ZSET_EVENTS, event, dst);
    }
    n
}

/// `ZREMRANGEBYRANK key start stop`, `ZREMRANGEBYSCORE key min max`, `ZREMRANGEBYLEX key min max`
pub fn zremrange(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let kind = match call.spec.name {
        "zremrangebyrank" => RangeType::Rank,
        "zremrangebyscore" => RangeType::Score,
        _ => RangeType::Lex,
    };
    let q = RangeRequest {
        kind,
        rev: false,
        withscores: false,
        limit: None,
        min: args.get(2).to_vec(),
        max: args.get(3).to_vec(),
    };
    let key = args.get(1);
    let z = s.write_as::<ZSet>(call, key, false)?.map(|z| &*z);
    let items = select(z, &q)?;
    if let Some(z) = s.write_as::<ZSet>(call, key, false)?
        && !items.is_empty()
    {
        for (m, _) in &items {
            z.remove(m);
        }
        s.notify(ZSET_EVENTS, call.spec.name, key);
        s.remove_if_empty(key);
    }
    call.reply().int(items.len() as i64);
    Ok(())
}

fn pop_event(max: bool) -> &'static str {
    if max { "zpopmax" } else { "zpopmin" }
}

/// Pops up to `count` elements from the low or high end.
fn pop_n(z: &mut ZSet, max: bool, count: usize) -> Vec<(Vec<u8>, f64)> {
    let mut out = Vec::with_capacity(count.min(z.len()));
    for _ in 0..count.min(z.len()) {
        let r = if max { z.len() - 1 } else { 0 };
        let e = z.remove_rank(r).expect("rank within the length");
        out.push((e.member.as_bytes().to_vec(), e.score));
    }
    out
}

/// `ZPOPMIN key [count]`, `ZPOPMAX key [count]`
pub fn zpop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let max = call.spec.name == "zpopmax";
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
    let popped = match s.write_as::<ZSet>(call, key, false)? {
        Some(z) => pop_n(z, max, count.unwrap_or(1)),
        None => Vec::new(),
    };
    if !popped.is_empty() {
        s.notify(ZSET_EVENTS, pop_event(max), key);
        s.remove_if_empty(key);
    }
    let mut r = call.reply();
    // Without COUNT: a flat [member, score]; with COUNT in RESP3: pairs.
    let nested = count.is_some() && r.resp3();
    r.array(if nested {
        popped.len()
    } else {
        popped.len() * 2
    });
    for (m, score) in &popped {
        if nested {
            r.array(2);
        }
        r.bulk(m);
        reply_score(&mut r, *score);
    }
    Ok(())
}

/// `BZPOPMIN key [key ...] timeout`, `BZPOPMAX key [key ...] timeout`
pub fn bzpop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let max = call.spec.name == "bzpopmax";
    let timeout = crate::blocking::parse_timeout(args.get(args.len() - 1))?;
    let keys: Vec<&[u8]> = (1..args.len() - 1).map(|i| args.get(i)).collect();
    for key in &keys {
        if let Some(z) = s.write_as::<ZSet>(call, key, false)?
            && !z.is_empty()
        {
            let (m, score) = pop_n(z, max, 1).remove(0);
            s.notify(ZSET_EVENTS, pop_event(max), key);
            s.remove_if_empty(key);
            s.propagate(&[zpop_name(max), key]);
            let mut r = call.reply();
            r.array(3);
            r.bulk(key);
            r.bulk(&m);
            reply_score(&mut r, score);
            return Ok(());
        }
    }
    s.blocking
        .wait_on(keys.iter().map(|k| k.to_vec()).collect(), timeout);
    Ok(())
}

/// The pop command of an end, as effects record it.
fn zpop_name(max: bool) -> &'static [u8] {
    if max { b"ZPOPMAX" } else { b"ZPOPMIN" }
}

/// The `<MIN | MAX>` word of ZMPOP and BZMPOP: true for MAX.
fn min_max(w: &[u8]) -> Option<bool> {
    if is(w, "min") {
        Some(false)
    } else if is(w, "max") {
        Some(true)
    } else {
        None
    }
}

/// Pops from the first non-empty sorted set; replies `[key, [[member, score] ...]]`. Returns
/// false, replying nothing, when all are empty.
fn zmpop_some(
    s: &mut Server,
    call: &mut Call<'_>,
    keys: &[&[u8]],
    max: bool,
    count: usize,
) -> Result<bool, CmdError> {
    for key in keys {
        let Some(z) = s.write_as::<ZSet>(call, key, false)? else {
            continue;
        };
        if z.is_empty() {
            continue;
        }
        let popped = pop_n(z, max, count);
        s.notify(ZSET_EVENTS, pop_event(max), key);
        s.remove_if_empty(key);
        // Recorded as Redis does: `ZPOPMIN|ZPOPMAX key count`.
        let mut buf = itoa::Buffer::new();
        s.propagate(&[zpop_name(max), key, buf.format(popped.len()).as_bytes()]);
        let mut r = call.reply();
        r.array(2);
        r.bulk(key);
        r.array(popped.len());
        for (m, score) in &popped {
            r.array(2);
            r.bulk(m);
            reply_score(&mut r, *score);
        }
        return Ok(true);
    }
    Ok(false)
}

/// `ZMPOP numkeys key [key ...] <MIN | MAX> [COUNT count]`
pub fn zmpop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (keys, max, count) = super::parse_multi_pop(args, 1, min_max)?;
    if !zmpop_some(s, call, &keys, max, count)? {
        call.reply().null_array();
    }
    Ok(())
}

/// `BZMPOP timeout numkeys key [key ...] <MIN | MAX> [COUNT count]`
pub fn bzmpop(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let timeout = crate::blocking::parse_timeout(args.get(1))?;
    let (keys, max, count) = super::parse_multi_pop(args, 2, min_max)?;
    if !zmpop_some(s, call, &keys, max, count)? {
        s.blocking
            .wait_on(keys.iter().map(|k| k.to_vec()).collect(), timeout);
    }
    Ok(())
}

/// `ZRANDMEMBER key [count [WITHSCORES]]`
pub fn zrandmember(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (count, withscores) = super::rand_args(args, "withscores")?;
    let mut rng = rand::rng();
    let z = s.read_as::<ZSet>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    let Some(count) = count else {
        r.bulk_opt(
            z.and_then(|z| z.random(&mut rng))
                .map(|e| e.member.as_bytes()),
        );
        return Ok(());
    };
    let Some(z) = z else {
        r.array(0);
        return Ok(());
    };
    let items: Vec<(Vec<u8>, f64)> = if count < 0 {
        (0..count.unsigned_abs())
            .filter_map(|_| z.random(&mut rng))
            .map(|e| (e.member.as_bytes().to_vec(), e.score))
            .collect()
    } else if count as usize >= z.len() {
        // The whole set, highest first: Redis walks sorted sets from the tail here.
        z.iter()
            .rev()
            .map(|e| (e.member.as_bytes().to_vec(), e.score))
            .collect()
    } else {
        sample(&mut rng, z.len(), count as usize)
            .into_iter()
            .filter_map(|i| z.at(i))
            .map(|e| (e.member.as_bytes().to_vec(), e.score))
            .collect()
    };
    reply_elements(&mut r, &items, withscores);
    Ok(())
}

/// Members with their scores.
type Scored = Vec<(Vec<u8>, f64)>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// Reads the sorted sets (or plain sets, with score 1) at `keys`; `None` for missing keys.
fn inputs(
    s: &mut Server,
    call: &Call<'_>,
    keys: &[Vec<u8>],
) -> Result<Vec<Option<Scored>>, CmdError> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let v = match s.read_key(call, key).map(|e| e.value()) {
            None => None,
            Some(Value::ZSet(z)) => Some(
                z.iter()
                    .map(|e| (e.member.as_bytes().to_vec(), e.score))
                    .collect(),
            ),
            Some(Value::Set(set)) => Some(set.iter().map(|m| (m.to_vec(), 1.0)).collect()),
            Some(_) => return Err(OpError::WrongType.into()),
        };
        out.push(v);
    }
    Ok(out)
}

/// `ZUNION|ZINTER|ZDIFF numkeys key ... [WEIGHTS ...] [AGGREGATE ...] [WITHSCORES]` and the
/// STORE forms (`ZUNIONSTORE destination numkeys key ...`).
pub fn zalgebra(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let name = call.spec.name;
    let store_to = name.ends_with("store").then(|| args.get(1));
    let at = if store_to.is_some() { 2 } else { 1 };
    let op = &name[1..5];
    let numkeys = int_arg(args.get(at))?;
    if numkeys < 1 {
        return Err(CmdError::msg(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - at - 1 {
        return Err(CmdError::Syntax);
    }
    let keys: Vec<Vec<u8>> = (at + 1..at + 1 + numkeys)
        .map(|i| args.get(i).to_vec())
        .collect();
    let mut weights = vec![1.0; numkeys];
    let mut aggregate = Aggregate::Sum;
    let mut withscores = false;
    let mut i = at + 1 + numkeys;
    while i < args.len() {
        let a = args.get(i);
        let left = args.len() - i - 1;
        if op != "diff" && is(a, "weights") && left >= numkeys {
            for (j, w) in weights.iter_mut().enumerate() {
                *w = num::parse_f64(args.get(i + 1 + j))
                    .ok_or_else(|| CmdError::msg("ERR weight value is not a float"))?;
            }
            i += numkeys;
        } else if op != "diff" && is(a, "aggregate") && left >= 1 {
            let v = args.get(i + 1);
            aggregate = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            i += 1;
        } else if store_to.is_none() && is(a, "withscores") {
            withscores = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let sets = inputs(s, call, &keys)?;
    let combine = |a: f64, b: f64| -> f64 {
        match aggregate {
            // Redis: inf + -inf in SUM is 0, not NaN.
            Aggregate::Sum => {
                let v = a + b;
                if v.is_nan() { 0.0 } else { v }
            }
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        }
    };
    let weighted = |score: f64, w: f64| -> f64 {
        let v = score * w;
        if v.is_nan() { 0.0 } else { v }
    };
    let mut result: Vec<(Vec<u8>, f64)> = Vec::new();
    if op.starts_with("unio") {
        let mut acc: std::collections::HashMap<Vec<u8>, f64> = std::collections::HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        for (set, w) in sets.iter().zip(&weights) {
            for (m, score) in set.iter().flatten() {
                let v = weighted(*score, *w);
                match acc.get_mut(m) {
                    Some(cur) => *cur = combine(*cur, v),
                    None => {
                        acc.insert(m.clone(), v);
                        order.push(m.clone());
                    }
                }
            }
        }
        result = order
            .into_iter()
            .map(|m| {
                let v = acc[&m];
                (m, v)
            })
            .collect();
    } else if op.starts_with("inte") {
        if sets.iter().all(Option::is_some) {
            let sets: Vec<&Vec<(Vec<u8>, f64)>> = sets.iter().flatten().collect();
            let maps: Vec<std::collections::HashMap<&[u8], f64>> = sets
                .iter()
                .map(|s| s.iter().map(|(m, v)| (m.as_slice(), *v)).collect())
                .collect();
            for (m, score) in sets[0] {
                let mut v = weighted(*score, weights[0]);
                let mut all = true;
                for (j, map) in maps.iter().enumerate().skip(1) {
                    match map.get(m.as_slice()) {
                        Some(o) => v = combine(v, weighted(*o, weights[j])),
                        None => {
                            all = false;
                            break;
                        }
                    }
                }
                if all {
                    result.push((m.clone(), v));
                }
            }
        }
    } else if let Some(Some(first)) = sets.first() {
        let others: Vec<std::collections::HashSet<&[u8]>> = sets[1..]
            .iter()
            .flatten()
            .map(|s| s.iter().map(|(m, _)| m.as_slice()).collect())
            .collect();
        for (m, score) in first {
            if !others.iter().any(|o| o.contains(m.as_slice())) {
                result.push((m.clone(), *score));
            }
        }
    }
    // Results come back in sorted-set order.
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    match store_to {
        Some(dst) => {
            let n = store(s, call, dst, result.into_iter(), call.spec.name);
            call.reply().int(n as i64);
        }
        None => reply_elements(&mut call.reply(), &result, withscores),
    }
    Ok(())
}

/// `ZINTERCARD numkeys key [key ...] [LIMIT limit]`
pub fn zintercard(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let numkeys = int_arg(args.get(1))?;
    if numkeys < 1 {
        return Err(CmdError::msg(
            "ERR at least 1 input key is needed for 'zintercard' command",
        ));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - 2 {
        return Err(CmdError::Syntax);
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
    let keys: Vec<Vec<u8>> = (2..2 + numkeys).map(|i| args.get(i).to_vec()).collect();
    let sets = inputs(s, call, &keys)?;
    let n = if sets.iter().all(Option::is_some) {
        let sets: Vec<&Vec<(Vec<u8>, f64)>> = sets.iter().flatten().collect();
        let maps: Vec<std::collections::HashSet<&[u8]>> = sets
            .iter()
            .map(|s| s.iter().map(|(m, _)| m.as_slice()).collect())
            .collect();
        sets[0]
            .iter()
            .filter(|(m, _)| maps.iter().skip(1).all(|o| o.contains(m.as_slice())))
            .count()
    } else {
        0
    };
    call.reply()
        .int(if limit > 0 { n.min(limit) } else { n } as i64);
    Ok(())
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`
pub fn zscan(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let o = ScanOptions::parse(args, 2, false)?;
    let z = s.read_as::<ZSet>(call, args.get(1))?;
    let mut found: Vec<(&[u8], f64)> = Vec::new();
    let next = match z {
        Some(z) => z.scan(o.cursor, o.count, |m, score| {
            if o.matches(m) {
                found.push((m, score));
            }
        }),
        None => 0,
    };
    let mut r = Call::reply_to(call.out, call.resp3);
    r.array(2);
    r.bulk(itoa::Buffer::new().format(next).as_bytes());
    r.array(found.len() * 2);
    for (m, score) in found {
        r.bulk(m);
        // ZSCAN scores are strings even in RESP3.
        r.bulk(num::g17(score).as_bytes());
    }
    Ok(())
}
