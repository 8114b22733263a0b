//! Stream commands, after Redis's t_stream.c: XADD and trimming, ranges, XREAD (blocking too),
//! consumer groups (XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM), XINFO, XSETID.
//!
//! A blocked XREAD re-runs with its `$` IDs replaced by the IDs they stood for when it blocked,
//! so it is served exactly the entries added after it blocked.

use std::time::Duration;

use tessera_protocol::{Args, Reply};
use tessera_storage::types::stream::{ENTRIES_READ_UNKNOWN, Entry, Group, Trim};
use tessera_storage::{Stream, StreamId};

use super::{int_arg, is};
use crate::blocking::BlockRequest;
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::STREAM;
use crate::server::Server;

const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// Redis's `string2ull`: a canonical integer, or what `strtoull` accepts whole (leading
/// blanks, a sign, leading zeros; a minus sign negates modulo 2^64).
fn ull(s: &[u8]) -> Option<u64> {
    if let Some(v) = tessera_protocol::num::parse_i64(s) {
        return u64::try_from(v).ok();
    }
    let mut i = s.iter().position(|c| !c.is_ascii_whitespace())?;
    let neg = match s[i] {
        b'-' => {
            i += 1;
            true
        }
        b'+' => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = &s[i..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Parses an ID as Redis's `streamGenericParseIDOrReply`: `ms-seq`, `ms` (the sequence is
/// `missing_seq`), and unless `strict`, `-` and `+`. With `seq_auto`, `ms-*` gives
/// `(ms-0, false)`; the flag says whether the sequence was given.
fn parse_id_full(
    a: &[u8],
    missing_seq: u64,
    strict: bool,
    seq_auto: bool,
) -> Result<(StreamId, bool), CmdError> {
    let invalid = || CmdError::msg(INVALID_ID);
    if a.len() > 127 {
        return Err(invalid());
    }
    match a {
        b"-" | b"+" if strict => return Err(invalid()),
        b"-" => return Ok((StreamId::MIN, true)),
        b"+" => return Ok((StreamId::MAX, true)),
        _ => {}
    }
    // C strings end at a NUL byte.
    let a = &a[..a.iter().position(|&c| c == 0).unwrap_or(a.len())];
    match a.iter().position(|&c| c == b'-') {
        None => Ok((
            StreamId::new(ull(a).ok_or_else(invalid)?, missing_seq),
            true,
        )),
        Some(dash) => {
            let ms = ull(&a[..dash]).ok_or_else(invalid)?;
            let rest = &a[dash + 1..];
            if seq_auto && rest == b"*" {
                return Ok((StreamId::new(ms, 0), false));
            }
            Ok((StreamId::new(ms, ull(rest).ok_or_else(invalid)?), true))
        }
    }
}

fn parse_id(a: &[u8], missing_seq: u64) -> Result<StreamId, CmdError> {
    parse_id_full(a, missing_seq, false, false).map(|(id, _)| id)
}

fn parse_strict_id(a: &[u8]) -> Result<StreamId, CmdError> {
    parse_id_full(a, 0, true, false).map(|(id, _)| id)
}

/// An interval end for XRANGE and XPENDING: `(` makes it exclusive.
fn interval_id(a: &[u8], missing_seq: u64, start: bool) -> Result<StreamId, CmdError> {
    if a.len() > 1 && a[0] == b'(' {
        let id = parse_id_full(&a[1..], missing_seq, true, false)?.0;
        let moved = if start { id.next() } else { id.prev() };
        return moved.ok_or_else(|| {
            CmdError::msg(if start {
                "ERR invalid start ID for the interval"
            } else {
                "ERR invalid end ID for the interval"
            })
        });
    }
    parse_id(a, missing_seq)
}

fn reply_id(r: &mut Reply<'_>, id: StreamId) {
    let mut buf = itoa::Buffer::new();
    let mut text = Vec::with_capacity(42);
    text.extend_from_slice(buf.format(id.ms).as_bytes());
    text.push(b'-');
    text.extend_from_slice(buf.format(id.seq).as_bytes());
    r.bulk(&text);
}

fn reply_entry(r: &mut Reply<'_>, e: Entry<'_>) {
    r.array(2);
    reply_id(r, e.id);
    r.array(e.field_count() * 2);
    for item in e.items() {
        r.bulk(item);
    }
}

fn no_group_error(key: &[u8], group: &[u8]) -> CmdError {
    CmdError::msg(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// The trimming options of XADD and XTRIM.
struct TrimArgs {
    trim: Option<Trim>,
    approx: bool,
    limit: u64,
    nomkstream: bool,
    /// XADD: the ID (`None` for `*`) and whether its sequence was given.
    id: Option<(StreamId, bool)>,
    /// XADD: where the fields start.
    next: usize,
}

/// Redis's `streamParseAddOrTrimArgsOrReply`.
/// `node_max_entries` (`stream-node-max-entries`) sets the default LIMIT of `~` trimming.
fn parse_trim_args(
    node_max_entries: u64,
    args: &Args<'_>,
    xadd: bool,
) -> Result<TrimArgs, CmdError> {
    let mut t = TrimArgs {
        trim: None,
        approx: false,
        limit: 0,
        nomkstream: false,
        id: None,
        next: args.len(),
    };
    let mut limit_given = false;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = args.get(i);
        if xadd && opt == b"*" {
            t.next = i + 1;
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if t.trim.is_some() {
                return Err(CmdError::msg(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            t.approx = false;
            let next = args.get(i + 1);
            if more >= 2 && next == b"~" {
                t.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let value = args.get(i + 1);
            t.trim = Some(if is(opt, "maxlen") {
                let n = int_arg(value)?;
                if n < 0 {
                    return Err(CmdError::msg("ERR The MAXLEN argument must be >= 0."));
                }
                Trim::MaxLen(n as u64)
            } else {
                Trim::MinId(parse_strict_id(value)?)
            });
            i += 1;
        } else if is(opt, "limit") && more > 0 {
            let n = int_arg(args.get(i + 1))?;
            if n < 0 {
                return Err(CmdError::msg("ERR The LIMIT argument must be >= 0."));
            }
            t.limit = n as u64;
            limit_given = true;
            i += 1;
        } else if xadd && is(opt, "nomkstream") {
            t.nomkstream = true;
        } else if xadd {
            t.id = Some(parse_id_full(opt, 0, true, true)?);
            t.next = i + 1;
            break;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if t.limit > 0 && t.trim.is_none() {
        return Err(CmdError::msg(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && t.trim.is_none() {
        return Err(CmdError::msg(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit_given {
        if !t.approx {
            return Err(CmdError::msg(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
    } else if t.approx {
        t.limit = 100 * node_max_entries;
        if t.limit == 0 || t.limit > 1_000_000 {
            t.limit = 10_000;
        }
    }
    Ok(t)
}

/// `XADD key [NOMKSTREAM] [<MAXLEN | MINID> [= | ~] threshold [LIMIT count]] <* | id>
/// field value [field value ...]`
pub fn xadd(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let t = parse_trim_args(s.config.stream_node_max_entries, args, true)?;
    let fields = t.next;
    if fields + 2 > args.len() || (args.len() - fields) % 2 == 1 {
        return Err(CmdError::msg(
            "ERR wrong number of arguments for 'xadd' command",
        ));
    }
    if let Some((id, true)) = t.id
        && id.is_zero()
    {
        return Err(CmdError::msg(
            "ERR The ID specified in XADD must be greater than 0-0",
        ));
    }
    let key = args.get(1);
    let limits = s.config.stream_limits();
    let Some(st) = s.write_as::<Stream>(call, key, !t.nomkstream)? else {
        call.reply().null();
        return Ok(());
    };
    if st.last_id == StreamId::MAX {
        return Err(CmdError::msg(
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    let too_small = || {
        CmdError::msg(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        )
    };
    let id = match t.id {
        None => {
            let now = call.now.max(0) as u64;
            if now > st.last_id.ms {
                StreamId::new(now, 0)
            } else {
                st.last_id.next().ok_or_else(too_small)?
            }
        }
        Some((id, true)) => id,
        Some((id, false)) if id.ms == st.last_id.ms => {
            if st.last_id.seq == u64::MAX {
                return Err(too_small());
            }
            StreamId::new(id.ms, st.last_id.seq + 1)
        }
        Some((id, false)) => id,
    };
    if id <= st.last_id {
        return Err(too_small());
    }
    let items: Vec<&[u8]> = args.iter_from(fields).collect();
    if items.iter().map(|i| i.len()).sum::<usize>() > 1 << 30 {
        return Err(CmdError::msg("ERR Elements are too large to be stored"));
    }
    st.append(id, &items, limits);
    let trimmed = t.trim.map_or(0, |how| st.trim(how, t.approx, t.limit));
    let len_after = st.len();
    reply_id(&mut call.reply(), id);
    s.notify(STREAM, "xadd", key);
    if trimmed > 0 {
        s.notify(STREAM, "xtrim", key);
    }
    // Recorded with its ID and, when it trimmed, the exact length it left (approximate
    // trimming depends on the node layout, which depends on the configuration).
    if s.effects.enabled {
        let id_text = id.to_text();
        let mut buf = itoa::Buffer::new();
        let mut effect: Vec<&[u8]> = vec![b"XADD", key];
        if trimmed > 0 {
            effect.extend([&b"MAXLEN"[..], b"=", buf.format(len_after).as_bytes()]);
        }
        effect.push(id_text.as_bytes());
        effect.extend(items.iter().copied());
        s.propagate(&effect);
    }
    Ok(())
}

/// `XTRIM key <MAXLEN | MINID> [= | ~] threshold [LIMIT count]`
pub fn xtrim(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let node_max_entries = s.config.stream_node_max_entries;
    let Some(st) = s.write_as::<Stream>(call, key, false)? else {
        call.reply().int(0);
        return Ok(());
    };
    let t = parse_trim_args(node_max_entries, args, false)?;
    let removed = t.trim.map_or(0, |how| st.trim(how, t.approx, t.limit));
    let len_after = st.len();
    call.reply().int(removed as i64);
    if removed > 0 {
        s.notify(STREAM, "xtrim", key);
        let mut buf = itoa::Buffer::new();
        let len = buf.format(len_after).as_bytes();
        s.propagate(&[b"XTRIM", key, b"MAXLEN", b"=", len]);
    }
    Ok(())
}

/// `XDEL key id [id ...]`
pub fn xdel(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let key = args.get(1);
    let Some(st) = s.write_as::<Stream>(call, key, false)? else {
        call.reply().int(0);
        return Ok(());
    };
    // All IDs are checked before any is deleted.
    let ids = args
        .iter_from(2)
        .map(parse_strict_id)
        .collect::<Result<Vec<_>, _>>()?;
    let mut deleted = 0;
    for id in ids {
        if st.delete(id) {
            if id > st.max_deleted_id {
                st.max_deleted_id = id;
            }
            deleted += 1;
        }
    }
    call.reply().int(deleted);
    if deleted > 0 {
        s.notify(STREAM, "xdel", key);
    }
    Ok(())
}

/// `XLEN key`
pub fn xlen(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let n = s
        .read_as::<Stream>(call, args.get(1))?
        .map_or(0, |st| st.len());
    call.reply().int(n as i64);
    Ok(())
}

/// `XRANGE key start end [COUNT count]`, `XREVRANGE key end start [COUNT count]`
pub fn xrange(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let rev = call.spec.name == "xrevrange";
    let (start_arg, end_arg) = if rev { (3, 2) } else { (2, 3) };
    let start = interval_id(args.get(start_arg), 0, true)?;
    let end = interval_id(args.get(end_arg), u64::MAX, false)?;
    let mut count: Option<usize> = None;
    let mut i = 4;
    while i < args.len() {
        if is(args.get(i), "count") && i + 1 < args.len() {
            count = Some(int_arg(args.get(i + 1))?.max(0) as usize);
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let st = s.read_as::<Stream>(call, args.get(1))?;
    let mut r = Call::reply_to(call.out, call.resp3);
    let Some(st) = st else {
        r.array(0);
        return Ok(());
    };
    if count == Some(0) {
        r.null_array();
        return Ok(());
    }
    let limit = count.unwrap_or(usize::MAX);
    let entries: Vec<Entry<'_>> = if start > end {
        Vec::new()
    } else if rev {
        st.range_rev(start, end).take(limit).collect()
    } else {
        st.range(start, end).take(limit).collect()
    };
    r.array(entries.len());
    for e in entries {
        reply_entry(&mut r, e);
    }
    Ok(())
}

/// Where an XREAD or XREADGROUP reads a stream from.
#[derive(Clone, Copy)]
enum ReadFrom {
    /// After this ID (`$` resolved, or an explicit ID).
    After(StreamId),
    /// `>`: entries never delivered to the group.
    New,
}

/// `XREAD [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]`,
/// `XREADGROUP GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key
/// [key ...] id [id ...]`
pub fn xread(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let xreadgroup = call.spec.name == "xreadgroup";
    let mut block: Option<Option<Duration>> = None;
    let mut count = 0usize;
    let mut group: Option<(&[u8], &[u8])> = None;
    let mut noack = false;
    let mut streams_at = 0;
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = args.get(i);
        if is(opt, "block") && more > 0 {
            i += 1;
            let ms = num_arg(args.get(i), "ERR timeout is not an integer or out of range")?;
            if ms < 0 {
                return Err(CmdError::msg("ERR timeout is negative"));
            }
            if ms.checked_add(call.now).is_none() {
                return Err(CmdError::msg("ERR timeout is out of range"));
            }
            block = Some((ms > 0).then(|| Duration::from_millis(ms as u64)));
        } else if is(opt, "count") && more > 0 {
            i += 1;
            count = int_arg(args.get(i))?.max(0) as usize;
        } else if is(opt, "streams") && more > 0 {
            streams_at = i + 1;
            if !(args.len() - streams_at).is_multiple_of(2) {
                let (name, symbol) = if xreadgroup {
                    ("xreadgroup", '>')
                } else {
                    ("xread", '$')
                };
                return Err(CmdError::msg(format!(
                    "ERR Unbalanced '{name}' list of streams: for each stream key an ID or '{symbol}' must be specified."
                )));
            }
            break;
        } else if is(opt, "group") && more >= 2 {
            if !xreadgroup {
                return Err(CmdError::msg(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group = Some((args.get(i + 1), args.get(i + 2)));
            i += 2;
        } else if is(opt, "noack") {
            if !xreadgroup {
                return Err(CmdError::msg(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if streams_at == 0 {
        return Err(CmdError::Syntax);
    }
    if xreadgroup && group.is_none() {
        return Err(CmdError::msg("ERR Missing GROUP option for XREADGROUP"));
    }
    let n = (args.len() - streams_at) / 2;
    let retrying = s.blocking.retrying == Some(call.client);

    // Resolve every key and ID before serving any.
    let mut from = Vec::with_capacity(n);
    for k in 0..n {
        let key = args.get(streams_at + k);
        let id_arg = args.get(streams_at + n + k);
        let st = match s.read_as::<Stream>(call, key) {
            Ok(st) => st,
            // A key that changed type under a blocked reader counts as gone.
            Err(_) if retrying => None,
            Err(e) => return Err(e),
        };
        if let Some((gname, _)) = group
            && st.is_none_or(|st| !st.groups.contains_key(gname))
        {
            if retrying {
                return Err(CmdError::msg(if st.is_none() {
                    "UNBLOCKED the stream key no longer exists"
                } else {
                    "NOGROUP the consumer group this client was blocked on no longer exists"
                }));
            }
            return Err(CmdError::msg(format!(
                "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(gname)
            )));
        }
        from.push(if id_arg == b"$" {
            if xreadgroup {
                return Err(CmdError::msg(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            ReadFrom::After(st.map_or(StreamId::MIN, |st| st.last_id))
        } else if id_arg == b">" {
            if !xreadgroup {
                return Err(CmdError::msg(
                    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            ReadFrom::New
        } else {
            match parse_strict_id(id_arg)? {
                StreamId::MAX if xreadgroup => ReadFrom::New,
                id => ReadFrom::After(id),
            }
        });
    }

    // Serve what can be served now.
    let mut body = Vec::new();
    let mut served = 0;
    let mut created = Vec::new();
    // XREADGROUP's effects, as Redis records them (deterministic: delivery times included),
    // built only while effects are recorded.
    let mut group_effects: Vec<(&[u8], Vec<Effect>)> = Vec::new();
    let record = s.effects.enabled;
    for (k, &f) in from.iter().enumerate() {
        let key = args.get(streams_at + k);
        let mut r = Reply::new(&mut body, call.resp3);
        let done = match group {
            None => {
                let ReadFrom::After(after) = f else { continue };
                let Some(st) = s.read_as::<Stream>(call, key).unwrap_or(None) else {
                    continue;
                };
                let Some(start) = after.next() else { continue };
                if st.last().is_none_or(|e| e.id <= after) {
                    continue;
                }
                if !call.resp3 {
                    r.array(2);
                }
                r.bulk(key);
                let entries: Vec<Entry<'_>> = st
                    .range(start, StreamId::MAX)
                    .take(if count == 0 { usize::MAX } else { count })
                    .collect();
                r.array(entries.len());
                for e in entries {
                    reply_entry(&mut r, e);
                }
                true
            }
            Some((gname, consumer)) => {
                let now = call.now;
                // A read through a group changes it (pending entries, last ID, seen time).
                s.dirty += 1;
                let Some(st) = s.write_as::<Stream>(call, key, false)? else {
                    continue;
                };
                let last_before = st.groups.get(gname).map(|g| g.last_id);
                let g = st.groups.get_mut(gname).expect("checked above");
                if g.ensure_consumer(consumer, now) {
                    created.push(key);
                }

                if let Some(c) = g.consumers.get_mut(consumer) {
                    c.seen_time = now;
                }
                match f {
                    ReadFrom::After(after) => {
                        if !call.resp3 {
                            r.array(2);
                        }
                        r.bulk(key);
                        let ids = serve_history(&mut r, st, gname, consumer, after, count, now);
                        if record {
                            group_effects
                                .push((key, read_effects(st, key, gname, consumer, &ids, false)));
                        }
                        true
                    }
                    ReadFrom::New => {
                        let last = g.last_id;
                        if st.last().is_none_or(|e| e.id <= last) {
                            false
                        } else {
                            if !call.resp3 {
                                r.array(2);
                            }
                            r.bulk(key);
                            let ids =
                                serve_new(&mut r, st, gname, consumer, last, count, noack, now);
                            let moved = st.groups.get(gname).map(|g| g.last_id) != last_before;
                            if record {
                                group_effects.push((
                                    key,
                                    read_effects(st, key, gname, consumer, &ids, moved),
                                ));
                            }
                            true
                        }
                    }
                }
            }
        };
        if done {
            served += 1;
        }
    }
    for key in &created {
        s.notify(STREAM, "xgroup-createconsumer", key);
    }
    if let Some((gname, consumer)) = group {
        let mut any = false;
        for key in &created {
            if !group_effects.iter().any(|(k, _)| k == key) {
                group_effects.push((key, Vec::new()));
            }
        }
        for (key, effects) in &group_effects {
            let created = created.contains(key);
            any |= propagate_group_change(s, key, gname, consumer, created, effects);
        }
        if !any {
            s.propagate_nothing();
        }
    }
    if served > 0 {
        let mut r = call.reply();
        if r.resp3() {
            r.map(served);
        } else {
            r.array(served);
        }
        call.out.extend_from_slice(&body);
        return Ok(());
    }
    match block {
        Some(timeout) => {
            // Block with `$` pinned to the IDs it stands for now.
            let mut again: Vec<Vec<u8>> = args.iter().map(<[u8]>::to_vec).collect();
            for (k, f) in from.iter().enumerate() {
                if let ReadFrom::After(id) = f
                    && again[streams_at + n + k] == b"$"
                {
                    again[streams_at + n + k] = id.to_text().into_bytes();
                }
            }
            s.blocking.request = Some(BlockRequest {
                keys: (0..n).map(|k| args.get(streams_at + k).to_vec()).collect(),
                timeout,
                args: Some(again),
            });
        }
        None => call.reply().null_array(),
    }
    Ok(())
}

/// An integer argument with a command-specific error text.
fn num_arg(a: &[u8], err: &'static str) -> Result<i64, CmdError> {
    tessera_protocol::num::parse_i64(a).ok_or(CmdError::msg(err))
}

/// An effect with owned arguments.
type Effect = Vec<Vec<u8>>;

/// Redis's forced XCLAIM for each of `ids` pending in group `g` (`streamPropagateXCLAIM`):
/// `XCLAIM key group consumer 0 id TIME t RETRYCOUNT n FORCE JUSTID LASTID last`, which
/// replays exactly (no idle time is compared again).
fn forced_xclaims(
    g: &Group,
    key: &[u8],
    gname: &[u8],
    consumer: &[u8],
    ids: &[StreamId],
) -> Vec<Effect> {
    let last = g.last_id.to_text().into_bytes();
    ids.iter()
        .filter_map(|id| {
            let nack = g.pel.get(id)?;
            Some(vec![
                b"XCLAIM".to_vec(),
                key.to_vec(),
                gname.to_vec(),
                consumer.to_vec(),
                b"0".to_vec(),
                id.to_text().into_bytes(),
                b"TIME".to_vec(),
                nack.delivery_time.to_string().into_bytes(),
                b"RETRYCOUNT".to_vec(),
                nack.delivery_count.to_string().into_bytes(),
                b"FORCE".to_vec(),
                b"JUSTID".to_vec(),
                b"LASTID".to_vec(),
                last.clone(),
            ])
        })
        .collect()
}

/// The effects of one stream's part of an XREADGROUP, as Redis records them: the forced
/// XCLAIMs of the delivered entries, then the group's new last ID and entries read when it
/// moved (`streamPropagateGroupID`).
fn read_effects(
    st: &Stream,
    key: &[u8],
    gname: &[u8],
    consumer: &[u8],
    ids: &[StreamId],
    moved: bool,
) -> Vec<Effect> {
    let Some(g) = st.groups.get(gname) else {
        return Vec::new();
    };
    let mut out = forced_xclaims(g, key, gname, consumer, ids);
    if moved {
        out.push(vec![
            b"XGROUP".to_vec(),
            b"SETID".to_vec(),
            key.to_vec(),
            gname.to_vec(),
            g.last_id.to_text().into_bytes(),
            b"ENTRIESREAD".to_vec(),
            g.entries_read.to_string().into_bytes(),
        ]);
    }
    out
}

/// Records effects built as owned arguments; true if there were any.
fn propagate_all(s: &mut Server, effects: &[Effect]) -> bool {
    for effect in effects {
        let parts: Vec<&[u8]> = effect.iter().map(Vec::as_slice).collect();
        s.propagate(&parts);
    }
    !effects.is_empty()
}

/// Records a group read or claim: its effects, and the consumer's creation when nothing
/// else records it (a forced XCLAIM creates the consumer when replayed).
fn propagate_group_change(
    s: &mut Server,
    key: &[u8],
    gname: &[u8],
    consumer: &[u8],
    created: bool,
    effects: &[Effect],
) -> bool {
    let claims = effects.iter().any(|e| e[0] == b"XCLAIM");
    if created && !claims {
        s.propagate(&[b"XGROUP", b"CREATECONSUMER", key, gname, consumer]);
    }
    propagate_all(s, effects) || created
}

/// XREADGROUP with `>`: delivers the entries after the group's last ID and adds them to the
/// pending lists (unless NOACK).
#[allow(clippy::too_many_arguments)]
fn serve_new(
    r: &mut Reply<'_>,
    st: &mut Stream,
    gname: &[u8],
    consumer: &[u8],
    last: StreamId,
    count: usize,
    noack: bool,
    now: i64,
) -> Vec<StreamId> {
    let ids: Vec<StreamId> = st
        .range(last.next().unwrap_or(StreamId::MAX), StreamId::MAX)
        .take(if count == 0 { usize::MAX } else { count })
        .map(|e| e.id)
        .collect();
    r.array(ids.len());
    for &id in &ids {
        st.advance_group(gname, id);
        if let Some(e) = st.get(id) {
            reply_entry(r, e);
        }
        if !noack && let Some(g) = st.groups.get_mut(gname) {
            g.deliver(id, consumer, now);
        }
    }
    if noack { Vec::new() } else { ids }
}

/// XREADGROUP with an ID: the consumer's pending entries after it, delivered again.
fn serve_history(
    r: &mut Reply<'_>,
    st: &mut Stream,
    gname: &[u8],
    consumer: &[u8],
    after: StreamId,
    count: usize,
    now: i64,
) -> Vec<StreamId> {
    let Some(start) = after.next() else {
        r.array(0);
        return Vec::new();
    };
    let g = st.groups.get(gname).expect("group checked");
    let ids: Vec<StreamId> = g
        .consumers
        .get(consumer)
        .map(|c| {
            c.pel
                .range(start..)
                .take(if count == 0 { usize::MAX } else { count })
                .copied()
                .collect()
        })
        .unwrap_or_default();
    r.array(ids.len());
    let mut delivered = Vec::with_capacity(ids.len());
    for id in ids {
        match st.get(id) {
            Some(e) => {
                reply_entry(r, e);
                if let Some(nack) = st.groups.get_mut(gname).and_then(|g| g.pel.get_mut(&id)) {
                    nack.delivery_time = now;
                    nack.delivery_count += 1;
                    delivered.push(id);
                }
            }
            None => {
                r.array(2);
                reply_id(r, id);
                r.null_array();
            }
        }
    }
    delivered
}

fn no_such_group(key: &[u8], group: &[u8]) -> CmdError {
    CmdError::msg(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ))
}

fn entries_read_arg(a: &[u8]) -> Result<i64, CmdError> {
    let n = int_arg(a)?;
    if n < 0 && n != ENTRIES_READ_UNKNOWN {
        return Err(CmdError::msg(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok(n)
}

/// `XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER key group ...`
pub fn xgroup(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = call.spec.name;
    let key = args.get(2);
    let gname = args.get(3);
    let mut mkstream = false;
    let mut entries_read = ENTRIES_READ_UNKNOWN;
    if sub == "xgroup|create" {
        let mut i = 5;
        while i < args.len() {
            if is(args.get(i), "mkstream") {
                mkstream = true;
                i += 1;
            } else if is(args.get(i), "entriesread") && i + 1 < args.len() {
                entries_read = entries_read_arg(args.get(i + 1))?;
                i += 2;
            } else {
                return Err(subcommand_syntax(call));
            }
        }
    }
    let Some(st) = s.write_as::<Stream>(call, key, false)? else {
        if !mkstream {
            return Err(CmdError::msg(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            ));
        }
        let id = match args.get(4) {
            b"$" => StreamId::MIN,
            a => parse_strict_id(a)?,
        };
        let st = s
            .write_as::<Stream>(call, key, true)?
            .expect("just created");
        st.groups
            .insert(gname.to_vec(), Group::new(id, entries_read));
        call.reply().ok();
        s.notify(STREAM, "xgroup-create", key);
        return Ok(());
    };
    let exists = st.groups.contains_key(gname);
    if !exists && sub != "xgroup|create" && sub != "xgroup|destroy" {
        return Err(no_such_group(key, gname));
    }
    match sub {
        "xgroup|create" => {
            let id = match args.get(4) {
                b"$" => st.last_id,
                a => parse_strict_id(a)?,
            };
            if exists {
                return Err(CmdError::msg(
                    "BUSYGROUP Consumer Group name already exists",
                ));
            }
            st.groups
                .insert(gname.to_vec(), Group::new(id, entries_read));
            call.reply().ok();
            s.notify(STREAM, "xgroup-create", key);
        }
        "xgroup|setid" => {
            let id = match args.get(4) {
                b"$" => st.last_id,
                a => parse_id(a, 0)?,
            };
            if args.len() == 7 {
                if !is(args.get(5), "entriesread") {
                    return Err(subcommand_syntax(call));
                }
                entries_read = entries_read_arg(args.get(6))?;
            } else if args.len() != 5 {
                return Err(subcommand_syntax(call));
            }
            let g = st.groups.get_mut(gname).expect("checked above");
            g.last_id = id;
            g.entries_read = entries_read;
            call.reply().ok();
            s.notify(STREAM, "xgroup-setid", key);
        }
        "xgroup|destroy" => {
            if st.groups.remove(gname).is_some() {
                call.reply().int(1);
                s.notify(STREAM, "xgroup-destroy", key);
            } else {
                call.reply().int(0);
            }
        }
        "xgroup|createconsumer" => {
            let g = st.groups.get_mut(gname).expect("checked above");
            let created = g.ensure_consumer(args.get(4), call.now);
            call.reply().int(i64::from(created));
            if created {
                s.notify(STREAM, "xgroup-createconsumer", key);
            }
        }
        _ => {
            let g = st.groups.get_mut(gname).expect("checked above");
            match g.remove_consumer(args.get(4)) {
                Some(pending) => {
                    call.reply().int(pending as i64);
                    s.notify(STREAM, "xgroup-delconsumer", key);
                }
                None => call.reply().int(0),
            }
        }
    }
    Ok(())
}

fn subcommand_syntax(call: &Call<'_>) -> CmdError {
    let name = call.spec.name.replace('|', " ");
    let (container, sub) = name.split_once(' ').unwrap_or((&name, ""));
    CmdError::msg(format!(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {}.",
        format_args!("{} HELP", container.to_uppercase())
    ))
}

/// `XACK key group id [id ...]`
pub fn xack(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let gname = args.get(2);
    let Some(g) = s
        .write_as::<Stream>(call, args.get(1), false)?
        .and_then(|st| st.groups.get_mut(gname))
    else {
        call.reply().int(0);
        return Ok(());
    };
    // All IDs are checked before any is acknowledged.
    let ids = args
        .iter_from(3)
        .map(parse_strict_id)
        .collect::<Result<Vec<_>, _>>()?;
    let acked = ids.into_iter().filter(|&id| g.ack(id)).count();
    s.dirty += acked as u64;
    call.reply().int(acked as i64);
    Ok(())
}

/// `XPENDING key group [[IDLE min-idle-time] start end count [consumer]]`
pub fn xpending(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let argc = args.len();
    if argc != 3 && !(6..=9).contains(&argc) {
        return Err(CmdError::Syntax);
    }
    let mut range = None;
    let mut min_idle = 0;
    let mut consumer = None;
    if argc >= 6 {
        let mut at = 3;
        if is(args.get(3), "idle") {
            min_idle = int_arg(args.get(4))?;
            if argc < 8 {
                return Err(CmdError::Syntax);
            }
            at += 2;
        }
        let count = int_arg(args.get(at + 2))?.max(0) as usize;
        let start = interval_id(args.get(at), 0, true)?;
        let end = interval_id(args.get(at + 1), u64::MAX, false)?;
        if at + 3 < argc {
            consumer = Some(args.get(at + 3));
        }
        range = Some((start, end, count));
    }
    let key = args.get(1);
    let gname = args.get(2);
    let now = call.now;
    let st = s.read_as::<Stream>(call, key)?;
    let Some(g) = st.and_then(|st| st.groups.get(gname)) else {
        return Err(no_group_error(key, gname));
    };
    let mut r = Call::reply_to(call.out, call.resp3);
    let Some((start, end, count)) = range else {
        r.array(4);
        r.int(g.pel.len() as i64);
        match (g.pel.first_key_value(), g.pel.last_key_value()) {
            (Some((first, _)), Some((last, _))) => {
                reply_id(&mut r, *first);
                reply_id(&mut r, *last);
                let busy: Vec<_> = g
                    .consumers
                    .iter()
                    .filter(|(_, c)| !c.pel.is_empty())
                    .collect();
                r.array(busy.len());
                for (name, c) in busy {
                    r.array(2);
                    r.bulk(name);
                    r.bulk_int(c.pel.len() as i64);
                }
            }
            _ => {
                r.null();
                r.null();
                r.null_array();
            }
        }
        return Ok(());
    };
    let ids: Vec<StreamId> = match consumer {
        Some(name) => match g.consumers.get(name) {
            Some(c) if start <= end => c.pel.range(start..=end).copied().collect(),
            _ => Vec::new(),
        },
        None if start <= end => g.pel.range(start..=end).map(|(id, _)| *id).collect(),
        None => Vec::new(),
    };
    let rows: Vec<_> = ids
        .into_iter()
        .filter_map(|id| g.pel.get(&id).map(|n| (id, n)))
        .filter(|(_, n)| min_idle == 0 || now - n.delivery_time >= min_idle)
        .take(count)
        .collect();
    r.array(rows.len());
    for (id, nack) in rows {
        r.array(4);
        reply_id(&mut r, id);
        r.bulk(nack.consumer.as_bytes());
        r.int((now - nack.delivery_time).max(0));
        r.int(nack.delivery_count as i64);
    }
    Ok(())
}

/// `XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-time-milliseconds]
/// [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]`
pub fn xclaim(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (key, gname, consumer) = (args.get(1), args.get(2), args.get(3));
    let record = s.effects.enabled;
    let now = call.now;
    let Some(st) = s
        .write_as::<Stream>(call, key, false)?
        .filter(|st| st.groups.contains_key(gname))
    else {
        return Err(no_group_error(key, gname));
    };
    let min_idle = num_arg(args.get(4), "ERR Invalid min-idle-time argument for XCLAIM")?.max(0);
    let mut j = 5;
    let mut ids = Vec::new();
    while j < args.len() {
        match parse_strict_id(args.get(j)) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let (mut force, mut justid) = (false, false);
    let mut delivery_time: Option<i64> = None;
    let mut retry_count: Option<i64> = None;
    let mut last_id = StreamId::MIN;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = args.get(j);
        if is(opt, "force") {
            force = true;
        } else if is(opt, "justid") {
            justid = true;
        } else if is(opt, "idle") && more > 0 {
            j += 1;
            let idle = num_arg(args.get(j), "ERR Invalid IDLE option argument for XCLAIM")?;
            delivery_time = Some(now.wrapping_sub(idle));
        } else if is(opt, "time") && more > 0 {
            j += 1;
            delivery_time = Some(num_arg(
                args.get(j),
                "ERR Invalid TIME option argument for XCLAIM",
            )?);
        } else if is(opt, "retrycount") && more > 0 {
            j += 1;
            retry_count = Some(num_arg(
                args.get(j),
                "ERR Invalid RETRYCOUNT option argument for XCLAIM",
            )?);
        } else if is(opt, "lastid") && more > 0 {
            j += 1;
            last_id = parse_strict_id(args.get(j))?;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
        j += 1;
    }
    let delivery_time = match delivery_time {
        Some(t) if (0..=now).contains(&t) => t,
        _ => now,
    };
    let mut created = false;
    let mut claimed = Vec::new();
    {
        let exists: Vec<bool> = ids.iter().map(|&id| st.get(id).is_some()).collect();
        let g = st.groups.get_mut(gname).expect("checked");
        if last_id > g.last_id {
            g.last_id = last_id;
        }
        for (&id, exists) in ids.iter().zip(exists) {
            if !exists {
                g.ack(id);
                continue;
            }
            let fresh = if force && !g.pel.contains_key(&id) {
                g.pel.insert(
                    id,
                    tessera_storage::types::stream::Nack {
                        consumer: tessera_storage::SmallBytes::new(b""),
                        delivery_time: now,
                        delivery_count: 1,
                    },
                );
                true
            } else {
                false
            };
            let Some(nack) = g.pel.get(&id) else { continue };
            if !fresh && min_idle > 0 && now - nack.delivery_time < min_idle {
                continue;
            }
            if !created && g.ensure_consumer(consumer, now) {
                created = true;
            }
            if let Some(c) = g.consumers.get_mut(consumer) {
                c.seen_time = now;
            }
            g.transfer(id, consumer);
            let nack = g.pel.get_mut(&id).expect("present");
            nack.delivery_time = delivery_time;
            match retry_count {
                Some(n) if n >= 0 => nack.delivery_count = n as u64,
                _ if !justid => nack.delivery_count += 1,
                _ => {}
            }
            claimed.push(id);
        }
    }
    let effects = claim_effects(record, st, key, gname, consumer, &claimed, &[]);
    let changed = created || !claimed.is_empty();
    let mut r = Call::reply_to(call.out, call.resp3);
    r.array(claimed.len());
    for id in claimed {
        match (justid, st.get(id)) {
            (false, Some(e)) => reply_entry(&mut r, e),
            _ => reply_id(&mut r, id),
        }
    }
    if created {
        s.notify(STREAM, "xgroup-createconsumer", key);
    }
    if changed {
        s.dirty += 1;
        propagate_group_change(s, key, gname, consumer, created, &effects);
    }
    Ok(())
}

/// The effects of XCLAIM/XAUTOCLAIM (built only while effects are recorded): the claimed
/// entries' forced XCLAIMs (read from the group after the claim), and an XACK per deleted
/// entry they dropped from the PEL.
fn claim_effects(
    record: bool,
    st: &Stream,
    key: &[u8],
    gname: &[u8],
    consumer: &[u8],
    claimed: &[StreamId],
    deleted: &[StreamId],
) -> Vec<Effect> {
    if !record {
        return Vec::new();
    }
    let g = st.groups.get(gname).expect("the group was checked");
    let mut out = forced_xclaims(g, key, gname, consumer, claimed);
    out.extend(deleted.iter().map(|id| {
        vec![
            b"XACK".to_vec(),
            key.to_vec(),
            gname.to_vec(),
            id.to_text().into_bytes(),
        ]
    }));
    out
}

/// `XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]`
pub fn xautoclaim(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (key, gname, consumer) = (args.get(1), args.get(2), args.get(3));
    let record = s.effects.enabled;
    let min_idle = num_arg(
        args.get(4),
        "ERR Invalid min-idle-time argument for XAUTOCLAIM",
    )?
    .max(0);
    let start = interval_id(args.get(5), 0, true)?;
    let mut count: i64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        let opt = args.get(j);
        if is(opt, "count") && j + 1 < args.len() {
            count = match tessera_protocol::num::parse_i64(args.get(j + 1)) {
                Some(n) if (1..=i64::MAX / 16).contains(&n) => n,
                _ => return Err(CmdError::msg("ERR COUNT must be > 0")),
            };
            j += 1;
        } else if is(opt, "justid") {
            justid = true;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let now = call.now;
    let Some(st) = s
        .write_as::<Stream>(call, key, false)?
        .filter(|st| st.groups.contains_key(gname))
    else {
        return Err(no_group_error(key, gname));
    };
    let mut attempts = count.saturating_mul(10);
    let pel: Vec<StreamId> = st
        .groups
        .get(gname)
        .expect("checked")
        .pel
        .range(start..)
        .map(|(id, _)| *id)
        .collect();
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut created = false;
    let mut next = StreamId::MIN;
    let mut examined = 0;
    for &id in &pel {
        if attempts == 0 || count == 0 {
            break;
        }
        attempts -= 1;
        examined += 1;
        let exists = st.get(id).is_some();
        let g = st.groups.get_mut(gname).expect("checked");
        if !exists {
            g.ack(id);
            deleted.push(id);
            count -= 1;
            continue;
        }
        let nack = g.pel.get(&id).expect("from the PEL");
        if min_idle > 0 && now - nack.delivery_time < min_idle {
            continue;
        }
        if !created && g.ensure_consumer(consumer, now) {
            created = true;
        }
        if let Some(c) = g.consumers.get_mut(consumer) {
            c.seen_time = now;
        }
        g.transfer(id, consumer);
        let nack = g.pel.get_mut(&id).expect("present");
        nack.delivery_time = now;
        if !justid {
            nack.delivery_count += 1;
        }
        claimed.push(id);
        count -= 1;
    }
    if let Some(&id) = pel.get(examined) {
        next = id;
    }
    let effects = claim_effects(record, st, key, gname, consumer, &claimed, &deleted);
    let changed = created || !claimed.is_empty() || !deleted.is_empty();
    let mut r = Call::reply_to(call.out, call.resp3);
    r.array(3);
    reply_id(&mut r, next);
    r.array(claimed.len());
    for id in claimed {
        match (justid, st.get(id)) {
            (false, Some(e)) => reply_entry(&mut r, e),
            _ => reply_id(&mut r, id),
        }
    }
    r.array(deleted.len());
    for id in deleted {
        reply_id(&mut r, id);
    }
    if created {
        s.notify(STREAM, "xgroup-createconsumer", key);
    }
    if changed {
        s.dirty += 1;
        propagate_group_change(s, key, gname, consumer, created, &effects);
    }
    Ok(())
}

/// `XSETID key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]`
pub fn xsetid(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let id = parse_strict_id(args.get(2))?;
    let mut entries_added: Option<u64> = None;
    let mut max_deleted = StreamId::MIN;
    let mut i = 3;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = args.get(i);
        if is(opt, "entriesadded") && more > 0 {
            let n = int_arg(args.get(i + 1))?;
            if n < 0 {
                return Err(CmdError::msg("ERR entries_added must be positive"));
            }
            entries_added = Some(n as u64);
        } else if is(opt, "maxdeletedid") && more > 0 {
            max_deleted = parse_strict_id(args.get(i + 1))?;
            if id < max_deleted {
                return Err(CmdError::msg(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let key = args.get(1);
    let Some(st) = s.write_as::<Stream>(call, key, false)? else {
        return Err(CmdError::msg("ERR no such key"));
    };
    if id < st.max_deleted_id {
        return Err(CmdError::msg(
            "ERR The ID specified in XSETID is smaller than current max_deleted_entry_id",
        ));
    }
    if let Some(last) = st.last() {
        if id < last.id {
            return Err(CmdError::msg(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if entries_added.is_some_and(|n| st.len() > n) {
            return Err(CmdError::msg(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    st.last_id = id;
    if let Some(n) = entries_added {
        st.entries_added = n;
    }
    if !max_deleted.is_zero() {
        st.max_deleted_id = max_deleted;
    }
    call.reply().ok();
    s.notify(STREAM, "xsetid", key);
    Ok(())
}

/// `XINFO STREAM key [FULL [COUNT count]]`, `XINFO GROUPS key`, `XINFO CONSUMERS key group`
pub fn xinfo(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = call.spec.name;
    let key = args.get(2);
    let mut full = None;
    if sub == "xinfo|stream" && args.len() > 3 {
        if !is(args.get(3), "full") {
            return Err(subcommand_syntax(call));
        }
        let mut count = 10;
        if args.len() > 4 {
            if args.len() != 6 || !is(args.get(4), "count") {
                return Err(subcommand_syntax(call));
            }
            count = int_arg(args.get(5))?;
            if count < 0 {
                count = 10;
            }
        }
        full = Some(if count == 0 {
            usize::MAX
        } else {
            count as usize
        });
    }
    let now = call.now;
    let Some(st) = s.read_as::<Stream>(call, key)? else {
        return Err(CmdError::msg("ERR no such key"));
    };
    let mut r = Call::reply_to(call.out, call.resp3);
    match sub {
        "xinfo|consumers" => {
            let gname = args.get(3);
            let Some(g) = st.groups.get(gname) else {
                return Err(no_such_group(key, gname));
            };
            r.array(g.consumers.len());
            for (name, c) in &g.consumers {
                r.map(3);
                r.bulk(b"name");
                r.bulk(name);
                r.bulk(b"pending");
                r.int(c.pel.len() as i64);
                r.bulk(b"idle");
                r.int((now - c.seen_time).max(0));
            }
        }
        "xinfo|groups" => {
            r.array(st.groups.len());
            for (name, g) in &st.groups {
                r.map(6);
                r.bulk(b"name");
                r.bulk(name);
                r.bulk(b"consumers");
                r.int(g.consumers.len() as i64);
                r.bulk(b"pending");
                r.int(g.pel.len() as i64);
                r.bulk(b"last-delivered-id");
                reply_id(&mut r, g.last_id);
                reply_group_position(&mut r, st, g);
            }
        }
        _ => {
            r.map(if full.is_some() { 9 } else { 10 });
            r.bulk(b"length");
            r.int(st.len() as i64);
            r.bulk(b"radix-tree-keys");
            r.int(st.node_count() as i64);
            r.bulk(b"radix-tree-nodes");
            r.int(st.rax_node_count() as i64);
            r.bulk(b"last-generated-id");
            reply_id(&mut r, st.last_id);
            r.bulk(b"max-deleted-entry-id");
            reply_id(&mut r, st.max_deleted_id);
            r.bulk(b"entries-added");
            r.int(st.entries_added as i64);
            r.bulk(b"recorded-first-entry-id");
            reply_id(&mut r, st.first_id);
            match full {
                None => {
                    r.bulk(b"groups");
                    r.int(st.groups.len() as i64);
                    r.bulk(b"first-entry");
                    match st.first() {
                        Some(e) => reply_entry(&mut r, e),
                        None => r.null(),
                    }
                    r.bulk(b"last-entry");
                    match st.last() {
                        Some(e) => reply_entry(&mut r, e),
                        None => r.null(),
                    }
                }
                Some(count) => {
                    r.bulk(b"entries");
                    let entries: Vec<Entry<'_>> =
                        st.range(StreamId::MIN, StreamId::MAX).take(count).collect();
                    r.array(entries.len());
                    for e in entries {
                        reply_entry(&mut r, e);
                    }
                    r.bulk(b"groups");
                    r.array(st.groups.len());
                    for (name, g) in &st.groups {
                        reply_group_full(&mut r, st, name, g, count);
                    }
                }
            }
        }
    }
    Ok(())
}

/// `entries-read` and `lag` of a group.
fn reply_group_position(r: &mut Reply<'_>, st: &Stream, g: &Group) {
    r.bulk(b"entries-read");
    if g.entries_read == ENTRIES_READ_UNKNOWN {
        r.null();
    } else {
        r.int(g.entries_read);
    }
    r.bulk(b"lag");
    match st.lag(g) {
        Some(lag) => r.int(lag as i64),
        None => r.null(),
    }
}

fn reply_group_full(r: &mut Reply<'_>, st: &Stream, name: &[u8], g: &Group, count: usize) {
    r.map(7);
    r.bulk(b"name");
    r.bulk(name);
    r.bulk(b"last-delivered-id");
    reply_id(r, g.last_id);
    reply_group_position(r, st, g);
    r.bulk(b"pel-count");
    r.int(g.pel.len() as i64);
    r.bulk(b"pending");
    let pending: Vec<_> = g.pel.iter().take(count).collect();
    r.array(pending.len());
    for (id, nack) in pending {
        r.array(4);
        reply_id(r, *id);
        r.bulk(nack.consumer.as_bytes());
        r.int(nack.delivery_time);
        r.int(nack.delivery_count as i64);
    }
    r.bulk(b"consumers");
    r.array(g.consumers.len());
    for (cname, c) in &g.consumers {
        r.map(4);
        r.bulk(b"name");
        r.bulk(cname);
        r.bulk(b"seen-time");
        r.int(c.seen_time);
        r.bulk(b"pel-count");
        r.int(c.pel.len() as i64);
        r.bulk(b"pending");
        let ids: Vec<_> = c.pel.iter().take(count).collect();
        r.array(ids.len());
        for id in ids {
            let nack = &g.pel[id];
            r.array(3);
            reply_id(r, *id);
            r.int(nack.delivery_time);
            r.int(nack.delivery_count as i64);
        }
    }
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

/// `XGROUP HELP`, `XINFO HELP`
pub fn help(_: &mut Server, call: &mut Call<'_>, _: &Args<'_>) -> CmdResult {
    let lines = if call.spec.name == "xgroup|help" {
        XGROUP_HELP
    } else {
        XINFO_HELP
    };
    super::server::help(call, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_redis() {
        assert_eq!(parse_id(b"5", 0).unwrap(), StreamId::new(5, 0));
        assert_eq!(
            parse_id(b"5", u64::MAX).unwrap(),
            StreamId::new(5, u64::MAX)
        );
        assert_eq!(parse_id(b"5-3", 0).unwrap(), StreamId::new(5, 3));
        assert_eq!(parse_id(b"-", 0).unwrap(), StreamId::MIN);
        assert_eq!(parse_id(b"+", 0).unwrap(), StreamId::MAX);
        assert!(parse_strict_id(b"+").is_err());
        assert!(parse_id(b"-1", 0).is_err());
        assert!(parse_id(b"abc", 0).is_err());
        assert!(parse_id(b"1-", 0).is_err());
        assert_eq!(parse_id(b"007", 0).unwrap(), StreamId::new(7, 0));
        assert_eq!(
            parse_id_full(b"5-*", 0, true, true).unwrap(),
            (StreamId::new(5, 0), false)
        );
        assert!(parse_id(b"18446744073709551616", 0).is_err());
        assert_eq!(
            parse_id(b"18446744073709551615-18446744073709551615", 0).unwrap(),
            StreamId::MAX
        );
    }
}
