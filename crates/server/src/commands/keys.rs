//! Generic key commands: DEL, EXISTS, TYPE, RENAME, COPY, KEYS, SCAN, expiry, OBJECT.

use tessera_protocol::{Args, glob};
use tessera_storage::Expiry;

use super::{int_arg, is};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::notify::GENERIC;
use crate::server::Server;

/// `DEL key [key ...]`, `UNLINK key [key ...]`
pub fn del(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let mut n = 0;
    for key in args.iter_from(1) {
        if s.db.remove_live(key, call.now).is_some() {
            s.notify(GENERIC, "del", key);
            n += 1;
        }
    }
    call.reply().int(n);
    Ok(())
}

/// `EXISTS key [key ...]`
pub fn exists(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let mut n = 0;
    for key in args.iter_from(1) {
        if s.read_key(call, key).is_some() {
            n += 1;
        }
    }
    call.reply().int(n);
    Ok(())
}

/// `TYPE key`
pub fn type_(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let name = s
        .read_key(call, args.get(1))
        .map_or("none", |e| e.value().type_name());
    call.reply().simple(name);
    Ok(())
}

/// `RENAME key newkey`, `RENAMENX key newkey`
pub fn rename(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let nx = call.spec.name == "renamenx";
    let (src, dst) = (args.get(1), args.get(2));
    let Some(at) = s.db.expire_time(src, call.now) else {
        return Err(CmdError::msg("ERR no such key"));
    };
    if src == dst {
        if nx {
            call.reply().int(0)
        } else {
            call.reply().ok()
        }
        return Ok(());
    }
    if nx && s.db.contains(dst, call.now) {
        call.reply().int(0);
        return Ok(());
    }
    let value = s.db.remove(src).expect("looked up just above");
    let expiry = at.map_or(Expiry::Persist, Expiry::At);
    // The destination is deleted, then created (a `new` event, as Redis's dbAdd).
    s.db.remove_live(dst, call.now);
    s.db.set(dst, value, expiry, call.now);
    s.notify(GENERIC, "rename_from", src);
    s.notify(GENERIC, "rename_to", dst);
    if nx {
        call.reply().int(1)
    } else {
        call.reply().ok()
    }
    Ok(())
}

/// `COPY source destination [DB destination-db] [REPLACE]`
pub fn copy(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (src, dst) = (args.get(1), args.get(2));
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        let a = args.get(i);
        if is(a, "replace") {
            replace = true;
        } else if is(a, "db") && i + 1 < args.len() {
            let db = int_arg(args.get(i + 1))
                .map_err(|_| CmdError::msg("ERR value is not an integer or out of range"))?;
            if db != 0 {
                return Err(CmdError::msg("ERR DB index is out of range"));
            }
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if src == dst {
        return Err(CmdError::msg(
            "ERR source and destination objects are the same",
        ));
    }
    let Some(at) = s.db.expire_time(src, call.now) else {
        call.reply().int(0);
        return Ok(());
    };
    if !replace && s.db.contains(dst, call.now) {
        call.reply().int(0);
        return Ok(());
    }
    let value =
        s.db.get(src, call.now)
            .expect("looked up just above")
            .value()
            .clone();
    s.db.remove_live(dst, call.now);
    s.db.set(dst, value, at.map_or(Expiry::Persist, Expiry::At), call.now);
    s.notify(GENERIC, "copy_to", dst);
    call.reply().int(1);
    Ok(())
}

/// `KEYS pattern`
pub fn keys(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let pattern = args.get(1);
    let all = pattern == b"*";
    let now = call.now;
    let mut found = Vec::new();
    for e in s.db.iter() {
        if (all || glob::matches(pattern, e.key(), false))
            && s.db.entry_expire_at(e).is_none_or(|at| at > now)
        {
            found.push(e.key().to_vec());
        }
    }
    call.reply().array(found.len());
    for k in &found {
        call.reply().bulk(k);
    }
    Ok(())
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
pub fn scan(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let o = super::ScanOptions::parse(args, 1, true)?;
    let now = call.now;
    let mut found = Vec::new();
    let next = s.db.scan(o.cursor, o.count, |e| {
        if !o.matches(e.key()) {
            return;
        }
        if o.type_filter
            .is_some_and(|t| !t.eq_ignore_ascii_case(e.value().type_name().as_bytes()))
        {
            return;
        }
        found.push(e.key().to_vec());
    });
    // Expired keys are filtered (and deleted) after the scan step, as Redis does.
    found.retain(|k| s.db.contains(k, now));
    let mut r = call.reply();
    r.array(2);
    r.bulk(itoa::Buffer::new().format(next).as_bytes());
    r.array(found.len());
    for k in &found {
        r.bulk(k);
    }
    Ok(())
}

/// `RANDOMKEY`
pub fn randomkey(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    let key = s.db.random_key(call.now);
    call.reply().bulk_opt(key.as_ref().map(|k| k.as_bytes()));
    Ok(())
}

/// `DBSIZE`
pub fn dbsize(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    call.reply().int(s.db.len() as i64);
    Ok(())
}

/// `FLUSHDB [ASYNC | SYNC]`, `FLUSHALL [ASYNC | SYNC]`
pub fn flush(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let asynchronous = match args.try_get(1) {
        None => false,
        Some(a) if args.len() == 2 && is(a, "async") => true,
        Some(a) if args.len() == 2 && is(a, "sync") => false,
        Some(_) => return Err(CmdError::Syntax),
    };
    s.touch_watched_existing();
    s.tracking_flush();
    s.dirty += 1;
    // As Redis kills its BGSAVE child: the image being taken is of a dataset that is gone.
    let restart = s.checkpoint.is_some();
    let old = s.db.flush();
    s.abort_checkpoint();
    // A replica receiving a payload of the old dataset must sync again.
    s.abort_full_sync();
    if asynchronous {
        // Redis's lazyfree: the memory is released on another thread.
        std::thread::spawn(move || drop(old));
    } else {
        drop(old);
    }
    // With `save` rules, Redis saves the empty dataset right away.
    if restart || !s.config.save.trim().is_empty() {
        let _ = s.start_checkpoint(crate::checkpoint::Kind::Bgsave);
    }
    call.reply().ok();
    Ok(())
}

/// The NX/XX/GT/LT flags of the EXPIRE family.
#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

/// `EXPIRE key seconds [NX | XX | GT | LT]` and PEXPIRE, EXPIREAT, PEXPIREAT.
pub fn expire(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let name = call.spec.name;
    let mut f = ExpireFlags::default();
    for a in args.iter_from(3) {
        if is(a, "nx") {
            f.nx = true;
        } else if is(a, "xx") {
            f.xx = true;
        } else if is(a, "gt") {
            f.gt = true;
        } else if is(a, "lt") {
            f.lt = true;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(a)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(CmdError::msg(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(CmdError::msg(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let v = int_arg(args.get(2))?;
    let invalid = || CmdError::msg(format!("ERR invalid expire time in '{name}' command"));
    let seconds = name == "expire" || name == "expireat";
    let relative = name == "expire" || name == "pexpire";
    let mut when = if seconds {
        v.checked_mul(1000).ok_or_else(invalid)?
    } else {
        v
    };
    if relative {
        when = when.checked_add(call.now).ok_or_else(invalid)?;
    }
    let key = args.get(1);
    let Some(current) = s.db.expire_time(key, call.now) else {
        call.reply().int(0);
        return Ok(());
    };
    // A key without a TTL counts as an infinite TTL for GT and LT.
    let ok = if f.nx {
        current.is_none()
    } else if f.xx {
        current.is_some()
    } else {
        true
    } && (!f.gt || current.is_some_and(|c| when > c))
        && (!f.lt || current.is_none_or(|c| when < c));
    if !ok {
        call.reply().int(0);
        return Ok(());
    }
    if when <= call.now && !s.db.no_expiry {
        // A time in the past deletes the key.
        s.db.remove(key);
        s.notify(GENERIC, "del", key);
        s.propagate(&[b"DEL", key]);
    } else {
        s.db.set_expire(key, when, call.now);
        s.notify(GENERIC, "expire", key);
        // Recorded with the absolute time, without the conditions (they held).
        s.propagate(&[
            b"PEXPIREAT",
            key,
            itoa::Buffer::new().format(when).as_bytes(),
        ]);
    }
    call.reply().int(1);
    Ok(())
}

/// `TTL key`, `PTTL key`, `EXPIRETIME key`, `PEXPIRETIME key`
pub fn ttl(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let name = call.spec.name;
    let key = args.get(1);
    let n = match s.db.expire_time(key, call.now) {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => match name {
            "ttl" => (at - call.now).max(0).saturating_add(500) / 1000,
            "pttl" => (at - call.now).max(0),
            // Rounded, as Redis's ttlGenericCommand does for every seconds variant.
            "expiretime" => at.saturating_add(500) / 1000,
            _ => at,
        },
    };
    if n != -2 {
        s.stats.keyspace_hits += 1;
    } else {
        s.stats.keyspace_misses += 1;
        s.notify(crate::notify::KEY_MISS, "keymiss", key);
    }
    call.reply().int(n);
    Ok(())
}

/// `PERSIST key`
pub fn persist(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let done = s.db.persist(args.get(1), call.now);
    if done {
        s.notify(GENERIC, "persist", args.get(1));
    }
    call.reply().int(i64::from(done));
    Ok(())
}

/// `TOUCH key [key ...]`
pub fn touch(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    exists(s, call, args)
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// `OBJECT ENCODING|IDLETIME|FREQ|REFCOUNT key`, `OBJECT HELP`
pub fn object(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = args.get(1);
    if is(sub, "help") {
        return super::server::help(call, OBJECT_HELP);
    }
    let key = args.get(2);
    let (lfu, _, decay) = s.access_policy();
    // OBJECT does not touch the key (Redis's LOOKUP_NOTOUCH).
    let Some(e) = s.db.get(key, call.now) else {
        call.reply().null();
        return Ok(());
    };
    if is(sub, "encoding") {
        let enc = e.value().encoding();
        call.reply().bulk(enc.as_bytes());
    } else if is(sub, "idletime") {
        if lfu {
            return Err(CmdError::msg(
                "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        let idle = (Server::lru_clock().wrapping_sub(e.access()) & 0xFF_FFFF) as i64;
        call.reply().int(idle);
    } else if is(sub, "freq") {
        if !lfu {
            return Err(CmdError::msg(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        let freq = tessera_storage::lfu::decayed(e.access(), call.now, decay);
        call.reply().int(i64::from(freq));
    } else {
        // Values are never shared, except that Redis reports shared integers as
        // INT_MAX; Tessera has no shared objects.
        call.reply().int(1);
    }
    Ok(())
}

/// `DUMP key`: the value in Redis's RDB format with version and CRC-64 footer.
pub fn dump(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    match s.db.get(args.get(1), call.now) {
        Some(e) => {
            let payload = tessera_storage::rdb::dump(e.value());
            call.reply().bulk(&payload);
        }
        None => call.reply().null(),
    }
    Ok(())
}

/// `RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]`,
/// with Redis's checks in Redis's order.
pub fn restore(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    use tessera_storage::rdb::{self, PayloadError};
    let key = args.get(1);
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut i = 4;
    while i < args.len() {
        let a = args.get(i);
        let more = i + 1 < args.len();
        if is(a, "replace") {
            replace = true;
        } else if is(a, "absttl") {
            absttl = true;
        } else if is(a, "idletime") && more && freq.is_none() {
            let v = int_arg(args.get(i + 1))?;
            if v < 0 {
                return Err(CmdError::msg("ERR Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(v);
            i += 1;
        } else if is(a, "freq") && more && idle.is_none() {
            let v = int_arg(args.get(i + 1))?;
            if !(0..=255).contains(&v) {
                return Err(CmdError::msg(
                    "ERR Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            freq = Some(v);
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if !replace && s.db.contains(key, call.now) {
        return Err(CmdError::msg("BUSYKEY Target key name already exists."));
    }
    let ttl = int_arg(args.get(2))?;
    if ttl < 0 {
        return Err(CmdError::msg("ERR Invalid TTL value, must be >= 0"));
    }
    let value = match rdb::restore(args.get(3), &s.config.compact_limits()) {
        Ok(v) => v,
        Err(PayloadError::VersionOrChecksum) => {
            return Err(CmdError::msg(
                "ERR DUMP payload version or checksum are wrong",
            ));
        }
        Err(PayloadError::BadData(_)) => return Err(CmdError::msg("ERR Bad data format")),
    };
    let deleted = replace && s.db.remove_live(key, call.now).is_some();
    let at = match ttl {
        0 => None,
        t if absttl => Some(t),
        t => Some(t.saturating_add(call.now)),
    };
    if at.is_some_and(|at| at <= call.now) && !s.db.no_expiry {
        // Already expired: the key is not created (and an old one stays deleted).
        if deleted {
            s.notify(GENERIC, "del", key);
            s.propagate(&[b"DEL", key]);
        }
        call.reply().ok();
        return Ok(());
    }
    s.db.set(key, value, at.map_or(Expiry::Persist, Expiry::At), call.now);
    let (lfu, _, _) = s.access_policy();
    if let Some(e) = s.db.get_mut(key, call.now) {
        match (lfu, freq, idle) {
            (true, Some(f), _) => {
                e.touch((tessera_storage::lfu::minutes(call.now) << 8) | f as u32)
            }
            (false, _, Some(idle)) => {
                e.touch(Server::lru_clock().wrapping_sub(idle as u32) & 0xFF_FFFF)
            }
            _ => {}
        }
    }
    s.notify(GENERIC, "restore", key);
    if let Some(at) = at {
        s.propagate(&[
            b"RESTORE",
            key,
            at.to_string().as_bytes(),
            args.get(3),
            b"ABSTTL",
            b"REPLACE",
        ]);
    }
    call.reply().ok();
    Ok(())
}
