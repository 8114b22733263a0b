//! What the proxy does with each command: route it by the slot of its keys, split it by slot,
//! send it to every shard, send it to any shard, answer it itself, or refuse it.

use std::collections::HashMap;
use std::sync::OnceLock;

use tessera_protocol::clients::{self, Family, Pause};
use tessera_protocol::command::{self, CommandSpec, CommandTable, REDIS_COMMANDS, flag};
use tessera_protocol::{Args, SLOTS, key_hash_slot, num};

use crate::merge::{Gather, Merge, SCAN_SHARD_BITS};
use crate::worker::{
    Multi, Pending, To, WaitFor, Watch, Worker, write_bulk, write_command, write_header,
};

/// How the proxy serves a command.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// To the shard serving the slot of its keys (they must share one), or any shard when it
    /// has none.
    Keyed,
    /// Split by slot, each part to its shard; the replies merged.
    Split(Merge),
    /// To every shard; the replies merged.
    All(Merge),
    /// To any one shard.
    Any,
    /// SCAN: one shard at a time, the cursor naming the shard.
    Scan,
    /// CLUSTER COUNTKEYSINSLOT / GETKEYSINSLOT: to the shard serving the slot argument.
    SlotArgument,
    /// Answered by the proxy.
    Local,
    /// A command that may block: by the slot of its keys, on the client's private connection.
    Blocking,
    /// PUBLISH: to the shard serving the channel's slot, where its subscribers are.
    Channel,
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE (`pubsub.rs`).
    Subscribe,
    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE.
    Unsubscribe,
    /// MONITOR (`monitor.rs`).
    Monitor,
    /// CLIENT TRACKING and CLIENT CACHING (`tracking.rs`).
    Tracking,
    /// WAIT (`worker::WaitFor`).
    Wait,
    /// ACL ... (`acl.rs`).
    Acl,
    /// Not served through the proxy, for the reason given.
    Refused(&'static str),
    /// Refused as Redis Cluster refuses it, with this error.
    Error(&'static str),
}

/// Commands that need a connection of their own to a shard the proxy does not make yet
/// (issue 8: WAIT, CLIENT REPLY/PAUSE).
const NEEDS_PINNING: &str = "it needs a pinned shard connection, which the proxy does not have yet";
const CROSS_SHARD_WATCH: &str = "CROSSSLOT Keys in request don't hash to the same slot (through the proxy, the keys a client watches and its transaction's keys must be on one shard)";
const WATCH_LOST: &str = "EXECABORT Transaction discarded: the proxy lost its connection to the shard holding the watched keys";
const NOT_THROUGH_PROXY: &str = "it administers one shard process; run it against the shards";

fn classify(spec: &CommandSpec) -> Kind {
    use Merge::*;
    match spec.name {
        "ping" | "echo" | "quit" | "hello" | "auth" | "select" | "reset" | "readonly"
        | "readwrite" | "asking" | "multi" | "exec" | "discard" | "watch" | "unwatch"
        | "client|setname" | "client|getname" | "client|id" | "client|info" | "client|list"
        | "client|kill" | "client|setinfo" | "client|reply" | "client|pause" | "client|unpause"
        | "client|unblock" | "cluster|slots" | "cluster|shards" | "cluster|nodes"
        | "cluster|info" | "cluster|myid" | "cluster|myshardid" | "cluster|keyslot" => Kind::Local,
        "cluster|countkeysinslot" | "cluster|getkeysinslot" => Kind::SlotArgument,
        "mget" => Kind::Split(Mget),
        "mset" => Kind::Split(AllSucceeded),
        "del" | "unlink" | "exists" | "touch" => Kind::Split(Sum),
        "dbsize" | "latency|reset" => Kind::All(Sum),
        "keys" => Kind::All(Concat),
        "randomkey" => Kind::All(RandomKey),
        "info" => Kind::All(Info),
        "scan" => Kind::Scan,
        "flushall" | "flushdb" | "script|load" | "script|flush" | "function|load"
        | "function|flush" | "function|delete" | "function|restore" | "config|set"
        | "config|resetstat" | "config|rewrite" | "save" | "bgsave" | "bgrewriteaof"
        | "slowlog|reset" | "memory|purge" => Kind::All(AllSucceeded),
        "script|exists" => Kind::All(And),
        "script|kill" | "function|kill" => Kind::All(OneSucceeded),
        "pubsub|channels" | "pubsub|shardchannels" => Kind::All(Union),
        "pubsub|numsub" | "pubsub|shardnumsub" => Kind::All(SumPairs),
        // A pattern subscribed through the proxy is on every shard: any one counts them all.
        "pubsub|numpat" => Kind::Any,
        "publish" => Kind::Channel,
        "subscribe" | "psubscribe" | "ssubscribe" => Kind::Subscribe,
        "unsubscribe" | "punsubscribe" | "sunsubscribe" => Kind::Unsubscribe,
        "monitor" => Kind::Monitor,
        "client|tracking" | "client|caching" | "client|trackinginfo" | "client|getredir" => {
            Kind::Tracking
        }
        "wait" => Kind::Wait,
        // They would change a shard connection every client shares.
        "client|no-evict" | "client|no-touch" => {
            Kind::Refused("it would apply to a shard connection other clients share")
        }
        "shutdown" | "replicaof" | "slaveof" | "failover" | "sync" | "psync" | "replconf"
        | "debug" => Kind::Refused(NOT_THROUGH_PROXY),
        // A cluster has database 0 only.
        "move" => Kind::Error("ERR MOVE is not allowed in cluster mode"),
        "swapdb" => Kind::Error("ERR SWAPDB is not allowed in cluster mode"),
        name if name.starts_with("module") || name.starts_with("cluster") => {
            Kind::Refused(NOT_THROUGH_PROXY)
        }
        name if name.starts_with("acl") => Kind::Acl,
        // XREAD and XREADGROUP block only with BLOCK: see `handle`.
        "xread" | "xreadgroup" => Kind::Keyed,
        _ if spec.has(flag::BLOCKING) && !spec.key_specs.is_empty() => Kind::Blocking,
        _ if spec.has(flag::BLOCKING) => Kind::Refused(NEEDS_PINNING),
        _ if spec.key_specs.is_empty() => Kind::Any,
        _ => Kind::Keyed,
    }
}

/// The kind of every command and subcommand, by the address of its spec.
fn kind_of(spec: &'static CommandSpec) -> Kind {
    static KINDS: OnceLock<HashMap<usize, Kind, foldhash::fast::RandomState>> = OnceLock::new();
    let kinds = KINDS.get_or_init(|| {
        let mut m = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for c in REDIS_COMMANDS {
            m.insert(c as *const CommandSpec as usize, classify(c));
            for s in c.subcommands {
                m.insert(s as *const CommandSpec as usize, classify(s));
            }
        }
        m
    });
    kinds
        .get(&(spec as *const CommandSpec as usize))
        .copied()
        .unwrap_or(Kind::Any)
}

/// Appends a client's request for a shard: as it came when it came as RESP, re-encoded when
/// it was an inline command.
pub(crate) fn write_request(out: &mut Vec<u8>, raw: &[u8], args: &Args<'_>) {
    if raw.first() == Some(&b'*') {
        out.extend_from_slice(raw);
    } else {
        let parts: Vec<&[u8]> = args.iter().collect();
        write_command(out, &parts);
    }
}

/// The slot of a request's keys: `Ok(None)` for none (or keys the table cannot find: the
/// shard will explain), CROSSSLOT when they differ.
pub(crate) fn slot_of(
    spec: &'static CommandSpec,
    args: &Args<'_>,
) -> Result<Option<u16>, &'static str> {
    // The common case: one key at a fixed place.
    if spec.first_key > 0 && spec.first_key == spec.last_key && !spec.has(flag::MOVABLEKEYS) {
        return Ok(args.try_get(spec.first_key as usize).map(key_hash_slot));
    }
    let Ok(keys) = spec.key_positions(args) else {
        return Ok(None);
    };
    let mut slot = None;
    for (pos, _) in keys {
        let s = key_hash_slot(args.get(pos));
        match slot {
            None => slot = Some(s),
            Some(first) if first != s => {
                return Err("CROSSSLOT Keys in request don't hash to the same slot");
            }
            Some(_) => {}
        }
    }
    Ok(slot)
}

/// True for XREAD / XREADGROUP with a BLOCK option (before STREAMS: a stream named `block`
/// does not count).
fn stream_read_blocks(args: &Args<'_>) -> bool {
    let mut i = 1;
    while i < args.len() {
        let a = args.get(i);
        if is(a, "streams") {
            return false;
        }
        if is(a, "block") {
            return true;
        }
        i += if is(a, "group") {
            3
        } else if is(a, "count") {
            2
        } else {
            1
        };
    }
    false
}

/// The command table's entry for a request, its subcommand's for a container.
pub(crate) fn spec_of(args: &Args<'_>) -> Option<&'static CommandSpec> {
    let spec = CommandTable::redis().get(args.get(0))?;
    if spec.is_container() && args.len() >= 2 {
        return spec.subcommand(args.get(1));
    }
    Some(spec)
}

pub(crate) fn is(a: &[u8], word: &str) -> bool {
    a.eq_ignore_ascii_case(word.as_bytes())
}

impl Worker {
    /// Serves one request of client `key`; `raw` is its bytes as they came.
    pub(crate) fn handle(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let c = &mut self.clients[key];
        c.quiet = c.reply_off || std::mem::take(&mut c.skip_next);
        self.serve(key, args, raw);
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        c.quiet = false;
        // CLIENT CACHING applies to the next command or transaction only, as in Redis's
        // `resetClient`.
        if c.caching && c.multi.is_none() && !is(args.get(0), "client") {
            c.caching = false;
        }
    }

    fn serve(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let Some(mut spec) = CommandTable::redis().get(args.get(0)) else {
            return self.refuse_queued(key, &command::unknown_command(args));
        };
        if spec.is_container() && args.len() >= 2 {
            match spec.subcommand(args.get(1)) {
                Some(s) => spec = s,
                None => {
                    let text = command::unknown_subcommand(args.get(0), args.get(1));
                    return self.refuse_queued(key, &text);
                }
            }
        }
        let now = self.now;
        let c = &mut self.clients[key];
        c.active = now;
        c.cmd = spec.name;
        // Subscription confirmations are pushes: they go out whatever CLIENT REPLY says.
        if c.quiet && Family::is_subscription(spec.name) {
            c.quiet = false;
        }
        if !spec.arity_ok(args.len()) {
            let text = format!("ERR wrong number of arguments for '{}' command", spec.name);
            return self.reject(key, spec, &text);
        }
        if !self.clients[key].authed && self.open_access() {
            // Connected before the configuration said there is no password.
            self.clients[key].authed = true;
        }
        if !self.clients[key].authed && !spec.has(flag::NO_AUTH) {
            let text = if self.topology.is_none() {
                "CLUSTERDOWN The cluster is down"
            } else {
                "NOAUTH Authentication required."
            };
            return self.reject(key, spec, text);
        }
        if let Err(text) = self.check_permission(key, spec, args) {
            return self.reject(key, spec, &text);
        }
        let c = &self.clients[key];
        if !c.resp3 && c.subscribed() {
            if let Some(text) = clients::subscribed_mode_refusal(spec.name) {
                return self.refuse_queued(key, &text);
            }
            if spec.name == "ping" {
                return self.subscribed_ping(key, args);
            }
        }
        if c.multi.is_some()
            && !matches!(
                spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            )
        {
            return self.queue_in_multi(key, spec, args, raw);
        }
        match kind_of(spec) {
            Kind::Keyed => {
                if matches!(spec.name, "xread" | "xreadgroup") && stream_read_blocks(args) {
                    return self.blocking(key, spec, args, raw);
                }
                match slot_of(spec, args) {
                    Ok(Some(slot)) => self.forward_to_slot(key, slot, raw, args),
                    Ok(None) => self.forward_to_any(key, raw, args),
                    Err(e) => self.reply_error(key, e),
                }
            }
            Kind::Split(merge) => self.split(key, spec, args, raw, merge),
            Kind::All(merge) => self.fan_out(key, raw, args, merge),
            Kind::Any => self.forward_to_any(key, raw, args),
            Kind::Scan => self.scan(key, args),
            Kind::SlotArgument => match num::parse_i64(args.get(2)) {
                Some(s) if (0..SLOTS as i64).contains(&s) => {
                    self.forward_to_slot(key, s as u16, raw, args)
                }
                _ => self.reply_error(key, "ERR Invalid or out of range slot"),
            },
            Kind::Local => self.local(key, spec, args, raw),
            Kind::Blocking => self.blocking(key, spec, args, raw),
            Kind::Channel => self.forward_to_slot(key, key_hash_slot(args.get(1)), raw, args),
            Kind::Subscribe => self.subscribe(key, spec, args),
            Kind::Unsubscribe => self.unsubscribe(key, spec, args),
            Kind::Monitor => self.monitor(key),
            Kind::Tracking if spec.name == "client|tracking" => {
                self.client_tracking(key, args, raw)
            }
            Kind::Tracking if spec.name == "client|caching" => {
                self.client_caching(key, args.get(2))
            }
            Kind::Tracking if spec.name == "client|getredir" => self.get_redirect(key, args, raw),
            Kind::Wait => self.wait(key, args, raw),
            Kind::Acl => self.acl_command(key, spec, args),
            Kind::Tracking => self.tracking_info(key, args, raw),
            Kind::Refused(why) => self.refuse(key, spec, why),
            Kind::Error(text) => self.reply_error(key, text),
        }
    }

    /// A command that may block, on the client's private connection to the shard of its keys:
    /// the shared connection is never held up, and the client's later commands are answered
    /// after it, in order.
    fn blocking(&mut self, key: usize, spec: &'static CommandSpec, args: &Args<'_>, raw: &[u8]) {
        let slot = match slot_of(spec, args) {
            Ok(Some(slot)) => slot,
            // No keys the table can find (BLMPOP 0 0 ...): the shard explains.
            Ok(None) => return self.forward_to_any(key, raw, args),
            Err(e) => return self.reply_error(key, e),
        };
        match self
            .slot_addr(slot)
            .and_then(|addr| self.command_backend(key, &addr))
        {
            Ok(b) => self.forward(key, b, raw, args),
            Err(e) => self.reply_error(key, &e),
        }
    }

    /// True when CLIENT PAUSE holds client `key`'s next command (`args`): the client is put
    /// in the worker's `held` until the pause ends. A command that fails its checks is
    /// answered at once, as in Redis.
    pub(crate) fn held_by_pause(&mut self, key: usize, args: &Args<'_>) -> bool {
        let Some(pause) = self.shared.pause(self.now) else {
            return false;
        };
        let c = &mut self.clients[key];
        // Not an empty request, an unknown (sub)command, a wrong arity or a client that has
        // not authenticated: those are answered with their error.
        let Some(spec) = CommandTable::redis()
            .resolve(args)
            .filter(|s| !s.is_container() && s.arity_ok(args.len()) && c.authed)
        else {
            return false;
        };
        let exec_writes = spec.name == "exec" && c.multi.as_ref().is_some_and(|m| m.may_write);
        if !pause.holds(spec) && !exec_writes {
            return false;
        }
        if !c.held {
            c.held = true;
            self.held.push(key);
        }
        true
    }

    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: sent to each shard where the client has a
    /// connection of its own (a blocking command or WAIT waits there), under the shard's id
    /// for it; 1 when a shard unblocked it.
    fn client_unblock(&mut self, key: usize, args: &Args<'_>) {
        let (target, error) = match clients::parse_unblock(args) {
            Ok(t) => t,
            Err(e) => return self.reply_error(key, &e),
        };
        let conns = u64::try_from(target)
            .map(|id| self.shared.shard_ids(id))
            .unwrap_or_default();
        if conns.is_empty() {
            return self.reply_with(key, |r| r.int(0));
        }
        let part = self.expect_parts(key, Gather::new(Merge::Max, conns.len()));
        let how: &[u8] = if error { b"ERROR" } else { b"TIMEOUT" };
        for (i, (addr, sid)) in conns.iter().enumerate() {
            let to = part(i);
            let sid = itoa::Buffer::new().format(*sid).as_bytes().to_vec();
            match self.addr_backend(addr, false) {
                Ok(b) => self.send(b, to, 0, |o| {
                    write_command(o, &[b"CLIENT", b"UNBLOCK", &sid, how])
                }),
                Err(e) => self.deliver(to, format!("-{e}\r\n").as_bytes()),
            }
        }
    }

    /// WAIT: to every shard, once the client's earlier replies are in (`worker::WaitFor`).
    fn wait(&mut self, key: usize, args: &Args<'_>, raw: &[u8]) {
        let addrs = match self.primary_addrs() {
            Ok(a) => a,
            Err(e) => return self.reply_error(key, e),
        };
        let mut request = Vec::with_capacity(raw.len());
        write_request(&mut request, raw, args);
        let gather = Gather::new(Merge::Min, addrs.len());
        let (_, seq) = self.expect(key, Pending::Gather(Box::new(gather)));
        self.clients[key].wait = Some(Box::new(WaitFor {
            seq,
            unsent: Some((addrs, request)),
        }));
        self.wait_step(key);
    }

    /// WATCH: on the client's private connection to the shard of the keys, where EXEC then
    /// sends the transaction. Every key a client watches must be on one shard.
    fn watch(&mut self, key: usize, spec: &'static CommandSpec, args: &Args<'_>, raw: &[u8]) {
        let slot = match slot_of(spec, args) {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                return self.reply_error(key, "ERR wrong number of arguments for 'watch' command");
            }
            Err(e) => return self.reply_error(key, e),
        };
        let addr = match self.slot_addr(slot) {
            Ok(a) => a,
            Err(e) => return self.reply_error(key, &e),
        };
        if let Some(w) = self.clients[key].watch
            && self.backend_addr(w.backend) != addr
        {
            return self.reply_error(key, CROSS_SHARD_WATCH);
        }
        match self.private_backend(key, &addr) {
            Ok(b) => {
                let c = &mut self.clients[key];
                // A connection lost since an earlier WATCH stays lost: EXEC refuses.
                let lost = c.watch.is_some_and(|w| w.lost);
                c.watch = Some(Watch { backend: b, lost });
                self.forward(key, b, raw, args);
            }
            Err(e) => self.reply_error(key, &e),
        }
    }

    /// Ends WATCH at the shard (after EXEC the shard has ended it itself); `reply` sends the
    /// shard's answer to the client, else it is dropped.
    fn unwatch(&mut self, key: usize, raw: Option<(&[u8], &Args<'_>)>) {
        let Some(w) = self.clients[key].watch.take() else {
            if raw.is_some() {
                self.reply_with(key, |r| r.ok());
            }
            return;
        };
        match raw {
            Some((raw, args)) if !w.lost => self.forward(key, w.backend, raw, args),
            Some(_) => self.reply_with(key, |r| r.ok()),
            None if !w.lost => {
                self.send(w.backend, To::Discard, 0, |o| {
                    write_command(o, &[b"UNWATCH"])
                });
            }
            None => {}
        }
    }

    fn refuse(&mut self, key: usize, spec: &CommandSpec, why: &str) {
        let name = spec.name.replace('|', " ").to_uppercase();
        self.reply_error(
            key,
            &format!("ERR {name} is not available through the proxy: {why}"),
        );
    }

    /// A command refused before it runs (arity, authentication, permissions): inside MULTI
    /// the transaction is doomed, and a refused EXEC discards it with the reason (Redis's
    /// `rejectCommand` and `execCommandAbort`).
    fn reject(&mut self, key: usize, spec: &CommandSpec, text: &str) {
        if spec.name != "exec" {
            return self.refuse_queued(key, text);
        }
        self.clients[key].multi = None;
        self.unwatch(key, None);
        let reason = text.strip_prefix("ERR ").unwrap_or(text);
        let text = format!("EXECABORT Transaction discarded because of: {reason}");
        self.reply_error(key, &text);
    }

    /// An error that also dooms the transaction being queued, as Redis's `flagTransaction`.
    fn refuse_queued(&mut self, key: usize, text: &str) {
        if let Some(m) = &mut self.clients[key].multi {
            m.failed = true;
        }
        self.reply_error(key, text);
    }

    fn forward_to_slot(&mut self, key: usize, slot: u16, raw: &[u8], args: &Args<'_>) {
        match self.client_slot_backend(key, slot) {
            Ok(b) => self.forward(key, b, raw, args),
            Err(e) => self.reply_error(key, &e),
        }
    }

    pub(crate) fn forward_to_any(&mut self, key: usize, raw: &[u8], args: &Args<'_>) {
        match self
            .any_shard()
            .map_err(String::from)
            .and_then(|s| self.client_shard_backend(key, s))
        {
            Ok(b) => self.forward(key, b, raw, args),
            Err(e) => self.reply_error(key, &e),
        }
    }

    pub(crate) fn forward(&mut self, key: usize, b: usize, raw: &[u8], args: &Args<'_>) {
        let to = self.expect_one(key);
        self.send(b, to, 0, |o| write_request(o, raw, args));
    }

    /// MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: one command per slot of the keys.
    fn split(
        &mut self,
        key: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
        raw: &[u8],
        merge: Merge,
    ) {
        let step = if spec.name == "mset" { 2 } else { 1 };
        if !(args.len() - 1).is_multiple_of(step) {
            // MSET with a key missing its value (a shard would see CROSSSLOT first).
            let text = format!("ERR wrong number of arguments for '{}' command", spec.name);
            return self.reply_error(key, &text);
        }
        // (slot, argument positions of its keys)
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        let mut order = Vec::with_capacity(args.len() / step);
        for pos in (1..args.len()).step_by(step) {
            let slot = key_hash_slot(args.get(pos));
            let g = match groups.iter().position(|(s, _)| *s == slot) {
                Some(g) => g,
                None => {
                    groups.push((slot, Vec::new()));
                    groups.len() - 1
                }
            };
            order.push((g as u32, groups[g].1.len() as u32));
            groups[g].1.push(pos);
        }
        if groups.len() == 1 {
            return self.forward_to_slot(key, groups[0].0, raw, args);
        }
        let mut gather = Gather::new(merge, groups.len());
        if merge == Merge::Mget {
            gather.order = order;
        }
        let part = self.expect_parts(key, gather);
        let name = args.get(0);
        for (i, (slot, positions)) in groups.into_iter().enumerate() {
            let to = part(i);
            match self.client_slot_backend(key, slot) {
                Ok(b) => self.send(b, to, 0, |o| {
                    write_header(o, b'*', 1 + positions.len() * step);
                    write_bulk(o, name);
                    for p in positions {
                        for i in p..p + step {
                            write_bulk(o, args.get(i));
                        }
                    }
                }),
                Err(e) => self.deliver(to, format!("-{e}\r\n").as_bytes()),
            }
        }
    }

    /// A command every shard runs; the replies merged.
    fn fan_out(&mut self, key: usize, raw: &[u8], args: &Args<'_>, merge: Merge) {
        let shards = match self.shard_count() {
            Ok(n) => n,
            Err(e) => return self.reply_error(key, e),
        };
        let part = self.expect_parts(key, Gather::new(merge, shards));
        for shard in 0..shards {
            let to = part(shard);
            match self.client_shard_backend(key, shard) {
                Ok(b) => self.send(b, to, 0, |o| write_request(o, raw, args)),
                Err(e) => self.deliver(to, format!("-{e}\r\n").as_bytes()),
            }
        }
    }

    /// `SCAN cursor ...`: the proxy's cursor is the shard's cursor shifted left, with the
    /// shard's index in the low bits; a finished shard hands over to the next.
    fn scan(&mut self, key: usize, args: &Args<'_>) {
        let shards = match self.shard_count() {
            Ok(n) => n,
            Err(e) => return self.reply_error(key, e),
        };
        let Some(cursor) = std::str::from_utf8(args.get(1))
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return self.reply_error(key, "ERR invalid cursor");
        };
        let shard = (cursor & ((1 << SCAN_SHARD_BITS) - 1)) as usize;
        if shard >= shards {
            return self.reply_error(key, "ERR invalid cursor");
        }
        let inner = itoa::Buffer::new()
            .format(cursor >> SCAN_SHARD_BITS)
            .to_owned();
        let mut gather = Gather::new(Merge::Scan, 1);
        gather.scan = (shard, shards);
        let b = match self.client_shard_backend(key, shard) {
            Ok(b) => b,
            Err(e) => return self.reply_error(key, &e),
        };
        let (id, seq) = self.expect(key, Pending::Gather(Box::new(gather)));
        let to = To::Client {
            key,
            id,
            seq,
            part: 0,
        };
        let mut parts: Vec<&[u8]> = args.iter().collect();
        parts[1] = inner.as_bytes();
        self.send(b, to, 0, |o| write_command(o, &parts));
    }

    /// A command inside MULTI: checked and kept at the proxy until EXEC.
    fn queue_in_multi(
        &mut self,
        key: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
        raw: &[u8],
    ) {
        if spec.has(flag::NO_MULTI) {
            return self.refuse_queued(key, "ERR Command not allowed inside a transaction");
        }
        let slot = match kind_of(spec) {
            // Inside EXEC a blocking command does not block.
            Kind::Keyed | Kind::Split(_) | Kind::Blocking => match slot_of(spec, args) {
                Ok(slot) => slot,
                Err(e) => return self.refuse_queued(key, e),
            },
            Kind::SlotArgument => num::parse_i64(args.get(2))
                .filter(|s| (0..SLOTS as i64).contains(s))
                .map(|s| s as u16),
            // Inside EXEC, WAIT does not wait: one shard answers.
            Kind::Any | Kind::Wait => None,
            // The flag applies inside the transaction, on the shard.
            Kind::Tracking if spec.name != "client|tracking" => None,
            Kind::Channel => Some(key_hash_slot(args.get(1))),
            Kind::Local if matches!(spec.name, "ping" | "echo") => None,
            Kind::Error(text) => return self.refuse_queued(key, text),
            _ => {
                let name = spec.name.replace('|', " ").to_uppercase();
                let text = format!("ERR {name} cannot be part of a transaction through the proxy");
                return self.refuse_queued(key, &text);
            }
        };
        let Some(m) = self.clients[key].multi.as_mut() else {
            return;
        };
        if let Some(s) = slot {
            match m.slot {
                Some(first) if first != s => {
                    return self.refuse_queued(
                        key,
                        "CROSSSLOT Keys in request don't hash to the same slot",
                    );
                }
                _ => m.slot = Some(s),
            }
        }
        m.may_write |= Pause::may_write(spec);
        let before = m.cmds.len();
        write_request(&mut m.cmds, raw, args);
        m.lens.push((m.cmds.len() - before) as u32);
        self.reply_with(key, |r| r.simple("QUEUED"));
    }

    /// EXEC: the queued commands go to their shard as one block, MULTI ... EXEC, on the
    /// shared connection (nothing can come between them there); only EXEC's reply is kept.
    fn exec(&mut self, key: usize) {
        let Some(m) = self.clients[key].multi.take() else {
            return self.reply_error(key, "ERR EXEC without MULTI");
        };
        let watch = self.clients[key].watch;
        if m.failed {
            self.unwatch(key, None);
            return self.reply_error(
                key,
                "EXECABORT Transaction discarded because of previous errors.",
            );
        }
        if watch.is_some_and(|w| w.lost) {
            self.unwatch(key, None);
            return self.reply_error(key, WATCH_LOST);
        }
        if m.lens.is_empty() && watch.is_none() {
            return self.reply_with(key, |r| r.array(0));
        }
        let backend = match (watch, m.slot) {
            // Watched keys: the transaction runs where they are watched, on that connection.
            (Some(w), slot) => {
                let same = slot.is_none_or(|slot| {
                    self.slot_addr(slot)
                        .is_ok_and(|a| a == self.backend_addr(w.backend))
                });
                if !same {
                    self.unwatch(key, None);
                    return self.reply_error(key, CROSS_SHARD_WATCH);
                }
                self.clients[key].watch = None;
                self.send_caching(key, w.backend);
                Ok(w.backend)
            }
            (None, Some(slot)) => self.client_slot_backend(key, slot),
            (None, None) => self
                .any_shard()
                .map_err(String::from)
                .and_then(|s| self.client_shard_backend(key, s)),
        };
        let b = match backend {
            Ok(b) => b,
            Err(e) => return self.reply_error(key, &e),
        };
        // Commands the client's user may no longer run stay here; their errors take their
        // places in EXEC's reply (`Merge::Exec`).
        let refused = self.recheck_queued(key, &m);
        let left_out: Vec<usize> = refused.iter().map(|&(i, _)| i).collect();
        let to = if refused.is_empty() {
            self.expect_one(key)
        } else {
            let mut g = Gather::new(Merge::Exec, 1);
            g.refused = refused;
            self.expect_parts(key, g)(0)
        };
        self.send(b, To::Discard, 0, |o| write_command(o, &[b"MULTI"]));
        let mut start = 0;
        for (i, len) in m.lens.into_iter().enumerate() {
            let end = start + len as usize;
            if !left_out.contains(&i) {
                self.send(b, To::Discard, 0, |o| {
                    o.extend_from_slice(&m.cmds[start..end])
                });
            }
            start = end;
        }
        self.send(b, to, 0, |o| write_command(o, &[b"EXEC"]));
    }

    /// Commands the proxy answers itself.
    fn local(&mut self, key: usize, spec: &'static CommandSpec, args: &Args<'_>, raw: &[u8]) {
        match spec.name {
            // Redis's arity for PING is "-1", its command checks for more than one argument.
            "ping" if args.len() > 2 => {
                self.reply_error(key, "ERR wrong number of arguments for 'ping' command")
            }
            "ping" => match args.try_get(1) {
                Some(m) => {
                    let m = m.to_vec();
                    self.reply_with(key, |r| r.bulk(&m));
                }
                None => self.reply_with(key, |r| r.simple("PONG")),
            },
            "echo" => {
                let m = args.get(1).to_vec();
                self.reply_with(key, |r| r.bulk(&m));
            }
            "quit" => {
                self.reply_with(key, |r| r.ok());
                self.clients[key].closing = true;
                // Closed once its replies are out, even with none to write (CLIENT REPLY OFF).
                self.mark_client(key);
            }
            "select" => match num::parse_i64(args.get(1)) {
                Some(0) => self.reply_with(key, |r| r.ok()),
                Some(_) => self.reply_error(key, "ERR SELECT is not allowed in cluster mode"),
                None => self.reply_error(key, "ERR value is not an integer or out of range"),
            },
            "readonly" | "readwrite" | "asking" => self.reply_with(key, |r| r.ok()),
            "auth" => {
                let (user, pass) = match args.len() {
                    2 => (None, args.get(1)),
                    3 => (Some(args.get(1)), args.get(2)),
                    _ => return self.reply_error(key, "ERR syntax error"),
                };
                if user.is_none() && self.default_nopass() {
                    return self.reply_error(
                        key,
                        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                    );
                }
                match self.authenticate(key, args.get(0), user, pass) {
                    Ok(()) => self.reply_with(key, |r| r.ok()),
                    Err(e) => self.reply_error(key, e),
                }
            }
            "hello" => self.hello(key, args),
            "reset" => {
                self.unwatch(key, None);
                self.unsubscribe_all(key);
                self.stop_monitor(key);
                self.stop_tracking(key);
                let authed = self.open_access();
                let c = &mut self.clients[key];
                c.multi = None;
                // RESET answers even after CLIENT REPLY OFF, which it ends.
                c.quiet &= !c.reply_off;
                c.reply_off = false;
                c.skip_next = false;
                c.resp3 = false;
                c.name = None;
                c.authed = authed;
                c.user = tessera_acl::DEFAULT_USER;
                c.user_name.clear();
                self.reply_with(key, |r| r.simple("RESET"));
            }
            "multi" => {
                let c = &mut self.clients[key];
                if c.multi.is_some() {
                    return self.reply_error(key, "ERR MULTI calls can not be nested");
                }
                c.multi = Some(Multi::default());
                self.reply_with(key, |r| r.ok());
            }
            "exec" => self.exec(key),
            "discard" => match self.clients[key].multi.take() {
                Some(_) => {
                    self.unwatch(key, None);
                    self.reply_with(key, |r| r.ok())
                }
                None => self.reply_error(key, "ERR DISCARD without MULTI"),
            },
            "watch" => {
                if self.clients[key].multi.is_some() {
                    return self.reply_error(key, "ERR WATCH inside MULTI is not allowed");
                }
                self.watch(key, spec, args, raw);
            }
            "unwatch" => self.unwatch(key, Some((raw, args))),
            "client|setname" => {
                let name = args.get(2);
                if let Err(e) = clients::check_name(name) {
                    return self.reply_error(key, e);
                }
                self.clients[key].name = (!name.is_empty()).then(|| name.to_vec());
                self.reply_with(key, |r| r.ok());
            }
            "client|setinfo" => match clients::parse_setinfo(args.get(2), args.get(3)) {
                Ok((which, v)) => {
                    let c = &mut self.clients[key];
                    match which {
                        clients::LibInfo::Name => c.lib_name = v,
                        clients::LibInfo::Version => c.lib_ver = v,
                    }
                    self.reply_with(key, |r| r.ok());
                }
                Err(e) => self.reply_error(key, &e),
            },
            "client|reply" => {
                let c = &mut self.clients[key];
                let mode = args.get(2);
                if is(mode, "on") {
                    c.reply_off = false;
                    c.quiet = false;
                    self.reply_with(key, |r| r.ok());
                } else if is(mode, "off") {
                    c.reply_off = true;
                } else if is(mode, "skip") {
                    c.skip_next = !c.reply_off;
                } else {
                    self.reply_error(key, "ERR syntax error");
                }
            }
            "client|pause" => match Pause::parse(args, self.shared.pause(self.now), self.now) {
                Ok(p) => {
                    self.shared.set_pause(Some(p));
                    self.reply_with(key, |r| r.ok());
                }
                Err(e) => self.reply_error(key, &e),
            },
            "client|unpause" => {
                self.shared.set_pause(None);
                self.reply_with(key, |r| r.ok());
            }
            "client|unblock" => self.client_unblock(key, args),
            "client|info" => self.client_info(key),
            "client|list" => self.client_all(key, false, args),
            "client|kill" => self.client_all(key, true, args),
            "client|getname" => {
                let name = self.clients[key].name.clone();
                self.reply_with(key, |r| r.bulk_opt(name.as_deref()));
            }
            "client|id" => {
                let id = self.clients[key].id as i64;
                self.reply_with(key, |r| r.int(id));
            }
            "cluster|keyslot" => {
                let slot = key_hash_slot(args.get(2));
                self.reply_with(key, |r| r.int(i64::from(slot)));
            }
            "cluster|slots" | "cluster|shards" | "cluster|nodes" | "cluster|info"
            | "cluster|myid" | "cluster|myshardid" => self.cluster_view(key, spec.name),
            other => {
                tracing::error!("proxy: no local handler for {other}");
                self.reply_error(key, "ERR proxy: internal error");
            }
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`, as a shard answers.
    fn hello(&mut self, key: usize, args: &Args<'_>) {
        let command::HelloArgs {
            proto,
            auth,
            setname,
        } = match command::parse_hello(args) {
            Ok(h) => h,
            Err(e) => return self.reply_error(key, &e),
        };
        if let Some((user, pass)) = auth
            && let Err(e) = self.authenticate(key, args.get(0), Some(user), pass)
        {
            return self.reply_error(key, e);
        }
        if !self.clients[key].authed {
            return self.reply_error(
                key,
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = setname {
            if let Err(e) = clients::check_name(name) {
                return self.reply_error(key, e);
            }
            self.clients[key].name = (!name.is_empty()).then(|| name.to_vec());
        }
        let c = &mut self.clients[key];
        if let Some(p) = proto {
            c.resp3 = p == 3;
        }
        let id = c.id as i64;
        self.reply_with(key, |r| r.hello(id, b"master"));
    }

    /// CLUSTER SLOTS, SHARDS, NODES, INFO and MYID as a one-node cluster: the proxy serves
    /// every slot, so cluster-aware clients send everything here.
    fn cluster_view(&mut self, key: usize, name: &str) {
        let Some(view) = self.view.take() else {
            return self.reply_error(key, "CLUSTERDOWN The cluster is down");
        };
        let me = &view.shards[0].primary;
        match name {
            "cluster|slots" => self.reply_with(key, |r| view.write_slots(r)),
            "cluster|shards" => self.reply_with(key, |r| view.write_shards(r, |_| 0)),
            "cluster|nodes" => {
                let text = view.nodes_text(Some(&me.id));
                self.reply_with(key, |r| r.verbatim("txt", text.as_bytes()));
            }
            "cluster|info" => {
                let text = view.info_text(true);
                self.reply_with(key, |r| r.verbatim("txt", text.as_bytes()));
            }
            "cluster|myshardid" => {
                let id = view.shards[0].shard_id.clone();
                self.reply_with(key, |r| r.bulk(id.as_bytes()));
            }
            _ => {
                let id = me.id.clone();
                self.reply_with(key, |r| r.bulk(id.as_bytes()));
            }
        }
        self.view = Some(view);
    }
}
