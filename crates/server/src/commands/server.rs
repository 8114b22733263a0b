//! Server commands: INFO, CONFIG, TIME, LASTSAVE, DEBUG, SHUTDOWN, MONITOR, SLOWLOG, LATENCY,
//! COMMAND.

use std::fmt::Write as _;
use std::time::Duration;

use tessera_protocol::command::{Arg, CommandSpec, acl, flag, key_spec_flag};
use tessera_protocol::command::{BeginSearch, FindKeys};
use tessera_protocol::{Args, Reply, glob};
use tessera_storage::{Expiry, Value, digest};

use super::{int_arg, is};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::info;
use crate::server::{Server, unix_ms};

/// Replies with a HELP text, as Redis's `addReplyHelp`.
pub fn help(call: &mut Call<'_>, lines: &[&str]) -> CmdResult {
    let mut r = call.reply();
    r.array(lines.len());
    for l in lines {
        r.simple(l);
    }
    Ok(())
}

/// `INFO [section [section ...]]`
pub fn info(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sections: Vec<String> = args
        .iter_from(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let text = info::render(s, &sections);
    call.reply().verbatim("txt", text.as_bytes());
    Ok(())
}

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
];

/// `CONFIG GET|SET|RESETSTAT|REWRITE|HELP`
pub fn config(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    match call.spec.name {
        "config|get" => {
            let params = s.config.params();
            let mut found: Vec<&(&str, String)> = Vec::new();
            for pattern in args.iter_from(2) {
                let pattern = pattern.to_ascii_lowercase();
                for p in &params {
                    if glob::matches(&pattern, p.0.as_bytes(), true)
                        && !found.iter().any(|f| f.0 == p.0)
                    {
                        found.push(p);
                    }
                }
            }
            let mut r = call.reply();
            r.map(found.len());
            for (name, value) in found {
                r.bulk(name.as_bytes());
                r.bulk(value.as_bytes());
            }
        }
        "config|set" => {
            if !args.len().is_multiple_of(2) {
                return Err(CmdError::msg(
                    "ERR wrong number of arguments for 'config|set' command",
                ));
            }
            // All or nothing, as Redis 7: apply to a copy, then swap.
            let mut next = s.config.clone();
            let mut seen: Vec<String> = Vec::new();
            for i in (2..args.len()).step_by(2) {
                let name = String::from_utf8_lossy(args.get(i)).to_ascii_lowercase();
                let value = String::from_utf8_lossy(args.get(i + 1)).into_owned();
                if seen.contains(&name) {
                    return Err(CmdError::msg(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
                    )));
                }
                if let Err(reason) = next.set_param(&name, &value) {
                    if reason == "unknown" {
                        return Err(CmdError::msg(format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                        )));
                    }
                    return Err(CmdError::msg(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
                    )));
                }
                seen.push(name);
            }
            if let Err(reason) = s.apply_persistence_config(&next) {
                return Err(CmdError::msg(format!(
                    "ERR CONFIG SET failed (possibly related to argument 'appendonly') - {reason}"
                )));
            }
            if next.sched_policy != s.config.sched_policy
                && let Err(e) = crate::sched::apply(&next.sched_policy)
            {
                return Err(CmdError::msg(format!(
                    "ERR CONFIG SET failed (possibly related to argument 'sched-policy') - {e}"
                )));
            }
            let limits = next.limits();
            s.db.limits = next.compact_limits();
            s.db.lfu = next.lfu();
            let notify_flags = next.notify_flags();
            if next.requirepass != s.config.requirepass || seen.iter().any(|n| n == "requirepass") {
                s.acl.set_requirepass(next.requirepass.as_deref());
            }
            s.acl.all_channels = next.acl_pubsub_default == "allchannels";
            s.acl.log.truncate(next.acllog_max_len);
            s.config = next;
            s.apply_notify_config(notify_flags);
            s.output_limits_on = s.config.normal_output_limited();
            s.update_repl_verify();
            s.scripting.set_memory_limit(s.config.lua_memory_limit);
            for (_, c) in s.clients.iter_mut() {
                if let Some(io) = c.io.as_mut() {
                    io.parser.set_limits(limits);
                }
            }
            call.reply().ok();
        }
        "config|resetstat" => {
            s.stats.reset();
            s.commands.reset_stats();
            s.db.stats = Default::default();
            call.reply().ok();
        }
        "config|rewrite" => {
            s.config
                .rewrite()
                .map_err(|e| CmdError::msg(format!("ERR {e}")))?;
            call.reply().ok();
        }
        _ => return help(call, CONFIG_HELP),
    }
    Ok(())
}

/// `TIME`
pub fn time(_s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut r = call.reply();
    r.array(2);
    r.bulk_int(now.as_secs() as i64);
    r.bulk_int(i64::from(now.subsec_micros()));
    Ok(())
}

/// `LASTSAVE`
pub fn lastsave(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    call.reply().int(s.last_save);
    Ok(())
}

/// `SAVE`: a checkpoint, run to the end before the reply.
pub fn save(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    if s.checkpoint.is_some() {
        return Err(CmdError::msg("ERR Background save already in progress"));
    }
    match s.save_now() {
        Ok(()) => call.reply().ok(),
        Err(_) => return Err(CmdError::msg("ERR")),
    }
    Ok(())
}

/// `BGSAVE [SCHEDULE]`
pub fn bgsave(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    use crate::checkpoint::Kind;
    let schedule = match args.try_get(1) {
        None => false,
        Some(a) if args.len() == 2 && is(a, "schedule") => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    match &s.checkpoint {
        Some(c) if !c.is_rewrite() => Err(CmdError::msg("ERR Background save already in progress")),
        // A log rewrite is the same work: BGSAVE waits for its turn, as in Redis.
        Some(_) if schedule || s.in_exec.is_some() => {
            s.saves.scheduled_bgsave = true;
            call.reply().simple("Background saving scheduled");
            Ok(())
        }
        Some(_) => Err(CmdError::msg(
            "ERR Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
        )),
        None => match s.start_checkpoint(Kind::Bgsave) {
            Ok(()) => {
                call.reply().simple("Background saving started");
                Ok(())
            }
            Err(e) => Err(CmdError::msg(format!("ERR {e}"))),
        },
    }
}

/// `BGREWRITEAOF`: a checkpoint that also drops the log it covers.
pub fn bgrewriteaof(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    use crate::checkpoint::Kind;
    match &s.checkpoint {
        Some(c) if c.is_rewrite() => Err(CmdError::msg(
            "ERR Background append only file rewriting already in progress",
        )),
        Some(_) => {
            s.saves.scheduled_rewrite = true;
            call.reply()
                .simple("Background append only file rewriting scheduled");
            Ok(())
        }
        None => match s.start_checkpoint(Kind::Rewrite) {
            Ok(()) => {
                call.reply()
                    .simple("Background append only file rewriting started");
                Ok(())
            }
            Err(e) => Err(CmdError::msg(format!("ERR {e}"))),
        },
    }
}

const DEBUG_HELP: &[&str] = &[
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Output a hex signature of the values of all the specified keys.",
    "OBJECT <key>",
    "    Show low level info about the key and associated value.",
    "POPULATE <count> [<prefix>] [<size>]",
    "    Create <count> string keys named key:<num>. If <prefix> is specified then",
    "    it is used instead of the 'key' prefix. These are not propagated to",
    "    replicas. Cluster slots are not respected so keys not belonging to the",
    "    current node can be created in cluster mode.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "HELP",
    "    Prints this help.",
];

/// `DEBUG SLEEP|SET-ACTIVE-EXPIRE|OBJECT|DIGEST|DIGEST-VALUE|POPULATE|HELP`
pub fn debug(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = args.get(1);
    if is(sub, "help") {
        return help(call, DEBUG_HELP);
    } else if is(sub, "sleep") && args.len() == 3 {
        let secs = super::float_arg(args.get(2))?;
        std::thread::sleep(Duration::from_secs_f64(secs.clamp(0.0, 3600.0)));
        call.reply().ok();
    } else if is(sub, "set-active-expire") && args.len() == 3 {
        s.active_expire_enabled = int_arg(args.get(2))? != 0;
        call.reply().ok();
    } else if is(sub, "object") && args.len() == 3 {
        let Some(e) = s.db.get(args.get(2), call.now) else {
            return Err(CmdError::msg("ERR no such key"));
        };
        let v = e.value();
        let len = v.as_str().map_or(0, |v| v.len());
        let line = format!(
            "Value at:0x0 refcount:1 encoding:{} serializedlength:{} lru:{} lru_seconds_idle:{}",
            v.encoding(),
            len,
            e.access(),
            (Server::lru_clock().wrapping_sub(e.access())) & 0xFF_FFFF
        );
        call.reply().simple(&line);
    } else if is(sub, "digest") && args.len() == 2 {
        let digest = digest::dataset_digest(&s.db);
        call.reply().status_or_bulk(digest::hex(&digest).as_bytes());
    } else if is(sub, "digest-value") {
        let keys: Vec<Vec<u8>> = args.iter_from(2).map(<[u8]>::to_vec).collect();
        let mut r = Vec::new();
        for k in keys {
            // Like Redis, DEBUG sees logically expired keys that are still stored.
            let d = match s.db.find_stored(&k) {
                Some(e) => digest::value_digest(e.value(), e.is_volatile()),
                None => [0; 20],
            };
            r.push(digest::hex(&d));
        }
        let mut reply = call.reply();
        reply.array(r.len());
        for d in r {
            reply.status_or_bulk(d.as_bytes());
        }
    } else if is(sub, "populate") && (3..=5).contains(&args.len()) {
        let count = int_arg(args.get(2))?;
        if count < 0 {
            return Err(CmdError::msg("ERR count is negative"));
        }
        let prefix = args.try_get(3).unwrap_or(b"key");
        let size = match args.try_get(4) {
            Some(a) => int_arg(a)?.max(0) as usize,
            None => 0,
        };
        for i in 0..count {
            let mut key = prefix.to_vec();
            key.push(b':');
            key.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            if s.db.contains(&key, call.now) {
                continue;
            }
            let mut val = format!("value:{i}").into_bytes();
            if size > 0 {
                val.resize(size, 0);
            }
            s.db.set(&key, Value::string(&val), Expiry::Persist, call.now);
            s.dirty += 1;
            s.propagate(&[b"SET", &key, &val]);
        }
        call.reply().ok();
    } else {
        return Err(CmdError::msg(
            tessera_protocol::command::subcommand_syntax_error(b"debug", sub),
        ));
    }
    Ok(())
}

/// `SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]`
pub fn shutdown(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    for a in args.iter_from(1) {
        if !["nosave", "save", "now", "force", "abort"]
            .iter()
            .any(|o| is(a, o))
        {
            return Err(CmdError::Syntax);
        }
        if is(a, "abort") {
            return Err(CmdError::msg("ERR No shutdown in progress."));
        }
        if is(a, "save") {
            s.shutdown_save = Some(true);
        } else if is(a, "nosave") {
            s.shutdown_save = Some(false);
        }
    }
    // Like Redis, a successful SHUTDOWN closes the connection without a reply.
    s.shutdown_requested = true;
    s.clients[call.client].close_after_reply = true;
    Ok(())
}

/// `MONITOR`
pub fn monitor(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    let c = &mut s.clients[call.client];
    if !c.monitor {
        c.monitor = true;
        s.monitors.push(call.client);
    }
    call.reply().ok();
    Ok(())
}

/// Sends a command to every MONITOR client, in Redis's format:
/// `+1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`.
pub fn feed_monitors(s: &mut Server, tok: usize, args: &Args<'_>) {
    let source = s
        .clients
        .get(tok)
        .map(|c| c.addr.to_string())
        .unwrap_or_default();
    feed_monitors_from(s, tok, &source, args);
}

/// Sends a command to the MONITOR clients other than `tok`, as run by `source` (a client's
/// address, or `lua` for a script's commands, as Redis shows them).
pub fn feed_monitors_from(s: &mut Server, tok: usize, source: &str, args: &Args<'_>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut line = format!("+{}.{:06} [0 {source}]", now.as_secs(), now.subsec_micros(),);
    for a in args.iter() {
        line.push_str(" \"");
        for &b in a {
            match b {
                b'\\' => line.push_str("\\\\"),
                b'"' => line.push_str("\\\""),
                b'\n' => line.push_str("\\n"),
                b'\r' => line.push_str("\\r"),
                b'\t' => line.push_str("\\t"),
                7 => line.push_str("\\a"),
                8 => line.push_str("\\b"),
                0x20..=0x7e => line.push(b as char),
                _ => {
                    let _ = write!(line, "\\x{b:02x}");
                }
            }
        }
        line.push('"');
    }
    line.push_str("\r\n");
    let monitors = s.monitors.clone();
    for m in monitors {
        if m == tok {
            continue;
        }
        if let Some(io) = s.clients.get_mut(m).and_then(|c| c.io.as_mut()) {
            io.out.extend_from_slice(line.as_bytes());
            s.schedule_write(m);
        }
    }
}

const SLOWLOG_HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

/// `SLOWLOG GET [count]|LEN|RESET|HELP`
pub fn slowlog(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    match call.spec.name {
        "slowlog|get" => {
            let count = match args.try_get(2) {
                Some(a) => {
                    let n = int_arg(a).ok().filter(|&n| n >= -1).ok_or_else(|| {
                        CmdError::msg("ERR count should be greater than or equal to -1")
                    })?;
                    if n == -1 { usize::MAX } else { n as usize }
                }
                None => 10,
            };
            let entries: Vec<_> = s.slowlog.entries.iter().take(count).cloned().collect();
            let mut r = call.reply();
            r.array(entries.len());
            for e in entries {
                r.array(6);
                r.int(e.id as i64);
                r.int(e.time);
                r.int(e.duration_us as i64);
                r.array(e.args.len());
                for a in &e.args {
                    r.bulk(a);
                }
                r.bulk(e.peer.as_bytes());
                r.bulk(&e.name);
            }
        }
        "slowlog|len" => call.reply().int(s.slowlog.entries.len() as i64),
        "slowlog|reset" => {
            s.slowlog.entries.clear();
            call.reply().ok();
        }
        _ => return help(call, SLOWLOG_HELP),
    }
    Ok(())
}

const LATENCY_HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

/// `LATENCY LATEST|HISTORY|RESET|DOCTOR|HELP`
pub fn latency(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    match call.spec.name {
        "latency|latest" => {
            let events: Vec<_> = s
                .latency
                .events
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            let mut r = call.reply();
            r.array(events.len());
            for (name, e) in events {
                let last = e.samples.back().copied();
                r.array(4);
                r.bulk(name.as_bytes());
                r.int(last.map_or(0, |l| l.time));
                r.int(last.map_or(0, |l| l.latency_ms as i64));
                r.int(e.max as i64);
            }
        }
        "latency|history" => {
            let name = String::from_utf8_lossy(args.get(2)).into_owned();
            let samples: Vec<_> = s
                .latency
                .events
                .get(name.as_str())
                .map(|e| e.samples.iter().copied().collect())
                .unwrap_or_default();
            let mut r = call.reply();
            r.array(samples.len());
            for sm in samples {
                r.array(2);
                r.int(sm.time);
                r.int(sm.latency_ms as i64);
            }
        }
        "latency|reset" => {
            let n = if args.len() == 2 {
                let n = s.latency.events.len();
                s.latency.events.clear();
                n
            } else {
                let mut n = 0;
                for a in args.iter_from(2) {
                    let name = String::from_utf8_lossy(a);
                    if s.latency.events.remove(name.as_ref()).is_some() {
                        n += 1;
                    }
                }
                n
            };
            call.reply().int(n as i64);
        }
        "latency|histogram" => {
            // All tracked commands, or the named ones (a container names its subcommands).
            let names: Vec<String> = args
                .iter_from(2)
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect();
            let mut hists: Vec<_> = s
                .commands
                .latency_histograms()
                .filter(|(n, _)| {
                    names.is_empty()
                        || names
                            .iter()
                            .any(|w| n == w || n.split('|').next() == Some(w.as_str()))
                })
                .collect();
            hists.sort_by_key(|(n, _)| *n);
            let mut r = call.reply();
            r.map(hists.len());
            for (name, h) in hists {
                let cdf = h.cdf();
                r.bulk(name.as_bytes());
                r.map(2);
                r.bulk(b"calls");
                r.int(h.calls() as i64);
                r.bulk(b"histogram_usec");
                r.map(cdf.len());
                for (us, count) in cdf {
                    r.int(us as i64);
                    r.int(count as i64);
                }
            }
        }
        "latency|graph" => {
            let name = String::from_utf8_lossy(args.get(2)).into_owned();
            let Some(e) = s.latency.events.get(name.as_str()) else {
                return Err(CmdError::msg(format!(
                    "ERR No samples available for event '{name}'"
                )));
            };
            let graph = crate::stats::latency_graph(&name, e, unix_ms() / 1000);
            call.reply().verbatim("txt", graph.as_bytes());
        }
        "latency|doctor" => {
            let mut text = String::new();
            if s.latency.events.is_empty() {
                text.push_str("Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sleep tonight.\n");
            } else {
                text.push_str("Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n");
                for (i, (name, e)) in s.latency.events.iter().enumerate() {
                    let avg = e.samples.iter().map(|x| x.latency_ms).sum::<u64>()
                        / e.samples.len().max(1) as u64;
                    let _ = writeln!(
                        text,
                        "{}. {}: {} latency spikes (average {}ms, mean deviation 0ms, period 0 sec). Worst all time event {}ms.",
                        i + 1,
                        name,
                        e.samples.len(),
                        avg,
                        e.max
                    );
                }
            }
            call.reply().verbatim("txt", text.as_bytes());
        }
        _ => return help(call, LATENCY_HELP),
    }
    Ok(())
}

const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Prints this help.",
];

/// `COMMAND [COUNT | LIST | INFO ... | DOCS ... | GETKEYS ... | HELP]`
pub fn command(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let mut specs: Vec<&'static CommandSpec> = s.commands.specs().collect();
    specs.sort_by_key(|c| c.name);
    match (args.len(), call.spec.name) {
        (1, _) => {
            let mut r = call.reply();
            r.array(specs.len());
            for spec in specs {
                command_info(s, &mut r, spec);
            }
        }
        (_, "command|count") => call.reply().int(specs.len() as i64),
        (_, "command|list") => {
            if args.len() > 2 {
                // COMMAND LIST FILTERBY <MODULE name | ACLCAT category | PATTERN pattern>
                if args.len() != 5 || !is(args.get(2), "filterby") {
                    return Err(CmdError::Syntax);
                }
                let (k, v) = (args.get(3), args.get(4));
                if is(k, "pattern") {
                    specs.retain(|c| glob::matches(v, c.name.as_bytes(), true));
                } else if is(k, "aclcat") {
                    let cat = format!("@{}", String::from_utf8_lossy(v).to_ascii_lowercase());
                    let bit = acl::NAMES.iter().position(|n| *n == cat);
                    specs.retain(|c| bit.is_some_and(|b| c.acl_categories & (1 << b) != 0));
                } else if is(k, "module") {
                    specs.clear();
                } else {
                    return Err(CmdError::Syntax);
                }
            }
            let mut r = call.reply();
            r.array(specs.len());
            for c in specs {
                r.bulk(c.name.as_bytes());
            }
        }
        (_, "command|info") => {
            let wanted: Vec<Option<&'static CommandSpec>> = if args.len() == 2 {
                specs.iter().map(|c| Some(*c)).collect()
            } else {
                args.iter_from(2).map(|n| s.commands.spec(n)).collect()
            };
            let mut r = call.reply();
            r.array(wanted.len());
            for spec in wanted {
                match spec {
                    Some(spec) => command_info(s, &mut r, spec),
                    None => r.null(),
                }
            }
        }
        (_, "command|docs") => {
            let wanted: Vec<&'static CommandSpec> = if args.len() == 2 {
                specs
            } else {
                args.iter_from(2)
                    .filter_map(|n| s.commands.spec(n))
                    .collect()
            };
            let mut r = call.reply();
            r.map(wanted.len());
            for spec in wanted {
                r.bulk(spec.name.as_bytes());
                command_docs(s, &mut r, spec);
            }
        }
        (_, "command|getkeys" | "command|getkeysandflags") => {
            let with_flags = call.spec.name == "command|getkeysandflags";
            let name = args.get(2);
            let Some(spec) = tessera_protocol::CommandTable::redis().get(name) else {
                return Err(CmdError::msg("ERR Invalid command specified"));
            };
            // Re-base the arguments at the command name.
            let owned: Vec<Vec<u8>> = args.iter_from(2).map(<[u8]>::to_vec).collect();
            let (buf, spans) = join(&owned);
            let sub = Args::from_parts(&buf, &spans);
            let spec = if spec.is_container() && sub.len() >= 2 {
                spec.subcommand(sub.get(1)).unwrap_or(spec)
            } else {
                spec
            };
            // Redis's order of checks (commandGetKeysCommand).
            if spec.key_specs.is_empty() {
                return Err(CmdError::msg("ERR The command has no key arguments"));
            }
            if !spec.arity_ok(sub.len()) {
                return Err(CmdError::msg(
                    "ERR Invalid number of arguments specified for command",
                ));
            }
            let keys = spec.key_positions(&sub).unwrap_or_default();
            if keys.is_empty() {
                if spec.has(flag::NO_MANDATORY_KEYS) {
                    call.reply().array(0);
                    return Ok(());
                }
                return Err(CmdError::msg("ERR Invalid arguments specified for command"));
            }
            let mut r = call.reply();
            r.array(keys.len());
            for (pos, spec_idx) in keys {
                if with_flags {
                    let fl = names_of(
                        u32::from(spec.key_flags(&sub, spec_idx)),
                        key_spec_flag::NAMES,
                    );
                    r.array(2);
                    r.bulk(sub.get(pos));
                    r.set(fl.len());
                    for f in fl {
                        r.simple(f);
                    }
                } else {
                    r.bulk(sub.get(pos));
                }
            }
        }
        _ => return help(call, COMMAND_HELP),
    }
    Ok(())
}

/// Owned arguments as one buffer with spans.
fn join(parts: &[Vec<u8>]) -> (Vec<u8>, Vec<(u32, u32)>) {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for p in parts {
        let start = buf.len() as u32;
        buf.extend_from_slice(p);
        spans.push((start, buf.len() as u32));
    }
    (buf, spans)
}

fn names_of(bits: u32, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// One `COMMAND INFO` entry, as Redis's `addReplyCommandInfo`.
fn command_info(s: &Server, r: &mut Reply<'_>, spec: &'static CommandSpec) {
    let mut flags = names_of(spec.flags & !flag::MOVABLEKEYS, flag::NAMES);
    if spec.has(flag::MOVABLEKEYS) {
        flags.push("movablekeys");
    }
    r.array(10);
    r.bulk(spec.name.as_bytes());
    r.int(i64::from(spec.arity));
    r.set(flags.len());
    for f in flags {
        r.simple(f);
    }
    r.int(i64::from(spec.first_key));
    r.int(i64::from(spec.last_key));
    r.int(i64::from(spec.key_step));
    let cats = names_of(spec.acl_categories, acl::NAMES);
    r.set(cats.len());
    for c in cats {
        r.simple(c);
    }
    r.set(spec.tips.len());
    for t in spec.tips {
        r.bulk(t.as_bytes());
    }
    r.set(spec.key_specs.len());
    for ks in spec.key_specs {
        let fl = names_of(u32::from(ks.flags), key_spec_flag::NAMES);
        r.map(3 + usize::from(ks.notes.is_some()));
        if let Some(n) = ks.notes {
            r.bulk(b"notes");
            r.bulk(n.as_bytes());
        }
        r.bulk(b"flags");
        r.set(fl.len());
        for f in fl {
            r.simple(f);
        }
        r.bulk(b"begin_search");
        r.map(2);
        r.bulk(b"type");
        match ks.begin_search {
            BeginSearch::Index(i) => {
                r.bulk(b"index");
                r.bulk(b"spec");
                r.map(1);
                r.bulk(b"index");
                r.int(i64::from(i));
            }
            BeginSearch::Keyword { keyword, startfrom } => {
                r.bulk(b"keyword");
                r.bulk(b"spec");
                r.map(2);
                r.bulk(b"keyword");
                r.bulk(keyword.as_bytes());
                r.bulk(b"startfrom");
                r.int(i64::from(startfrom));
            }
            BeginSearch::Unknown => {
                r.bulk(b"unknown");
                r.bulk(b"spec");
                r.map(0);
            }
        }
        r.bulk(b"find_keys");
        r.map(2);
        r.bulk(b"type");
        match ks.find_keys {
            FindKeys::Range {
                lastkey,
                keystep,
                limit,
            } => {
                r.bulk(b"range");
                r.bulk(b"spec");
                r.map(3);
                r.bulk(b"lastkey");
                r.int(i64::from(lastkey));
                r.bulk(b"keystep");
                r.int(i64::from(keystep));
                r.bulk(b"limit");
                r.int(i64::from(limit));
            }
            FindKeys::KeyNum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                r.bulk(b"keynum");
                r.bulk(b"spec");
                r.map(3);
                r.bulk(b"keynumidx");
                r.int(i64::from(keynumidx));
                r.bulk(b"firstkey");
                r.int(i64::from(firstkey));
                r.bulk(b"keystep");
                r.int(i64::from(keystep));
            }
            FindKeys::Unknown => {
                r.bulk(b"unknown");
                r.bulk(b"spec");
                r.map(0);
            }
        }
    }
    // Redis replies an empty set for a command without subcommands, an array otherwise.
    let subs = s.commands.implemented_subcommands(spec);
    if subs.is_empty() {
        r.set(0)
    } else {
        r.array(subs.len())
    }
    for sub in subs {
        command_info(s, r, sub);
    }
}

/// One `COMMAND DOCS` entry, as Redis's `addReplyCommandDocs`.
fn command_docs(s: &Server, r: &mut Reply<'_>, spec: &'static CommandSpec) {
    let d = &spec.doc;
    let subs = s.commands.implemented_subcommands(spec);
    let n = 3
        + usize::from(d.complexity.is_some())
        + usize::from(!d.doc_flags.is_empty())
        + usize::from(d.deprecated_since.is_some())
        + usize::from(d.replaced_by.is_some())
        + usize::from(!d.history.is_empty())
        + usize::from(!d.arguments.is_empty())
        + usize::from(!subs.is_empty());
    r.map(n);
    r.bulk(b"summary");
    r.bulk(d.summary.as_bytes());
    r.bulk(b"since");
    r.bulk(d.since.as_bytes());
    r.bulk(b"group");
    r.bulk(d.group.as_bytes());
    if let Some(c) = d.complexity {
        r.bulk(b"complexity");
        r.bulk(c.as_bytes());
    }
    if !d.doc_flags.is_empty() {
        r.bulk(b"doc_flags");
        r.set(d.doc_flags.len());
        for f in d.doc_flags {
            r.simple(f);
        }
    }
    if let Some(v) = d.deprecated_since {
        r.bulk(b"deprecated_since");
        r.bulk(v.as_bytes());
    }
    if let Some(v) = d.replaced_by {
        r.bulk(b"replaced_by");
        r.bulk(v.as_bytes());
    }
    if !d.history.is_empty() {
        r.bulk(b"history");
        r.set(d.history.len());
        for (v, t) in d.history {
            r.array(2);
            r.bulk(v.as_bytes());
            r.bulk(t.as_bytes());
        }
    }
    if !d.arguments.is_empty() {
        r.bulk(b"arguments");
        doc_args(r, d.arguments);
    }
    if !subs.is_empty() {
        r.bulk(b"subcommands");
        r.map(subs.len());
        for sub in subs {
            r.bulk(sub.name.as_bytes());
            command_docs(s, r, sub);
        }
    }
}

fn doc_args(r: &mut Reply<'_>, args: &[Arg]) {
    r.array(args.len());
    for a in args {
        let n = 2
            + usize::from(a.key_spec_index >= 0)
            + usize::from(a.token.is_some())
            + usize::from(a.since.is_some())
            + usize::from(a.deprecated_since.is_some())
            + usize::from(!a.flags.is_empty())
            + usize::from(!a.arguments.is_empty());
        r.map(n);
        r.bulk(b"name");
        r.bulk(a.name.as_bytes());
        r.bulk(b"type");
        r.bulk(a.kind.as_bytes());
        if a.key_spec_index >= 0 {
            r.bulk(b"key_spec_index");
            r.int(i64::from(a.key_spec_index));
        }
        if let Some(t) = a.token {
            r.bulk(b"token");
            r.bulk(t.as_bytes());
        }
        if let Some(v) = a.since {
            r.bulk(b"since");
            r.bulk(v.as_bytes());
        }
        if let Some(v) = a.deprecated_since {
            r.bulk(b"deprecated_since");
            r.bulk(v.as_bytes());
        }
        if !a.flags.is_empty() {
            r.bulk(b"flags");
            r.set(a.flags.len());
            for f in a.flags {
                r.simple(f);
            }
        }
        if !a.arguments.is_empty() {
            r.bulk(b"arguments");
            doc_args(r, a.arguments);
        }
    }
}

/// Milliseconds since the Unix epoch, re-exported for handlers that need a fresh clock.
pub fn now_ms() -> i64 {
    unix_ms()
}
