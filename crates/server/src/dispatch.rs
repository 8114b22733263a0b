//! Command dispatch: the registry of implemented commands (the generated Redis command table
//! joined with handlers), the one verify step before any handler runs, and the one place where
//! errors become wire text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use tessera_protocol::command::{self, CommandSpec, CommandTable, flag};
use tessera_protocol::{Args, Reply};
use tessera_storage::OpError;

use crate::commands;
use crate::server::{Server, unix_ms};
use crate::stats::{CommandStats, LatencyHistogram};

/// What a handler returns when it fails. Successful replies are written by the handler itself.
#[derive(Debug)]
pub enum CmdError {
    /// A storage error, already carrying Redis's text.
    Op(OpError),
    /// `ERR syntax error`.
    Syntax,
    /// `ERR value is not an integer or out of range`.
    NotInteger,
    /// Any other error; the text includes its code (`ERR ...`, `NOAUTH ...`).
    Msg(Cow<'static, str>),
}

impl From<OpError> for CmdError {
    fn from(e: OpError) -> Self {
        CmdError::Op(e)
    }
}

impl CmdError {
    /// An error with a formatted message (code included).
    pub fn msg(s: impl Into<Cow<'static, str>>) -> Self {
        CmdError::Msg(s.into())
    }

    /// Redis's wire text (without the leading `-`).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            CmdError::Op(e) => Cow::Owned(e.to_string()),
            CmdError::Syntax => Cow::Borrowed("ERR syntax error"),
            CmdError::NotInteger => Cow::Borrowed("ERR value is not an integer or out of range"),
            CmdError::Msg(m) => Cow::Borrowed(m),
        }
    }
}

/// A handler's result.
pub type CmdResult = Result<(), CmdError>;

/// The client token of commands replayed from the effect stream (no client).
pub const REPLAY_CLIENT: usize = usize::MAX;

/// The context of one command execution.
pub struct Call<'a> {
    /// The calling client's slab token.
    pub client: usize,
    pub out: &'a mut Vec<u8>,
    pub resp3: bool,
    /// Unix milliseconds when the command started: one clock for the whole command.
    pub now: i64,
    pub spec: &'static CommandSpec,
}

impl Call<'_> {
    /// A reply encoder for the caller's output buffer.
    #[inline]
    pub fn reply(&mut self) -> Reply<'_> {
        Reply::new(self.out, self.resp3)
    }

    /// A reply encoder built from the output buffer alone, for handlers that keep a borrow of
    /// the keyspace (through the server) while they write the reply.
    #[inline]
    pub fn reply_to(out: &mut Vec<u8>, resp3: bool) -> Reply<'_> {
        Reply::new(out, resp3)
    }
}

/// A command handler.
pub type Handler = fn(&mut Server, &mut Call<'_>, &Args<'_>) -> CmdResult;

struct Entry {
    spec: &'static CommandSpec,
    /// The command's number in the ACL bitmaps.
    acl_id: usize,
    handler: Handler,
    /// Implemented subcommands of a container command: (lower-case name, entry index).
    subs: Vec<(&'static str, usize)>,
    stats: CommandStats,
    /// Created on the first call while `latency-tracking` is on.
    latency: Option<Box<LatencyHistogram>>,
}

/// The implemented commands.
pub struct Commands {
    entries: Vec<Entry>,
    by_name: HashMap<&'static [u8], usize, foldhash::fast::RandomState>,
}

impl Default for Commands {
    fn default() -> Self {
        Self::new()
    }
}

impl Commands {
    /// Builds the registry from [`commands::HANDLERS`].
    pub fn new() -> Self {
        let table = CommandTable::redis();
        let acl_ids = crate::acl::selector::universe();
        let mut entries: Vec<Entry> = Vec::new();
        let mut by_name = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for &(name, handler) in commands::HANDLERS {
            let (parent, sub) = match name.split_once('|') {
                Some((p, s)) => (p, Some(s)),
                None => (name, None),
            };
            let parent_spec = table
                .get(parent.as_bytes())
                .unwrap_or_else(|| panic!("{parent} is not in the Redis command table"));
            let parent_idx = *by_name
                .entry(parent_spec.name.as_bytes())
                .or_insert_with(|| {
                    entries.push(Entry {
                        spec: parent_spec,
                        acl_id: acl_ids.id(parent_spec),
                        handler,
                        subs: Vec::new(),
                        stats: CommandStats::default(),
                        latency: None,
                    });
                    entries.len() - 1
                });
            if let Some(sub) = sub {
                let spec = parent_spec
                    .subcommand(sub.as_bytes())
                    .unwrap_or_else(|| panic!("{name} is not in the Redis command table"));
                entries.push(Entry {
                    spec,
                    acl_id: acl_ids.id(spec),
                    handler,
                    subs: Vec::new(),
                    stats: CommandStats::default(),
                    latency: None,
                });
                let idx = entries.len() - 1;
                entries[parent_idx].subs.push((sub, idx));
            }
        }
        Commands { entries, by_name }
    }

    /// The entry index of the command a request names, or an error text for unknown commands
    /// and subcommands. `Ok` may still name a container without its subcommand (arity fails).
    fn lookup(&self, args: &Args<'_>) -> Result<usize, String> {
        let name = args.get(0);
        let mut lower = [0u8; 32];
        let idx = match lower.get_mut(..name.len()) {
            Some(buf) => {
                buf.copy_from_slice(name);
                buf.make_ascii_lowercase();
                self.by_name.get(&*buf).copied()
            }
            None => None,
        };
        let Some(idx) = idx else {
            return Err(command::unknown_command(args));
        };
        let entry = &self.entries[idx];
        if entry.spec.is_container() && args.len() >= 2 {
            let sub = args.get(1);
            return entry
                .subs
                .iter()
                .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(sub))
                .map(|&(_, i)| i)
                .ok_or_else(|| command::unknown_subcommand(name, sub));
        }
        Ok(idx)
    }

    /// True if CLIENT PAUSE holds back this request.
    /// The spec of the command (or subcommand) a request names.
    pub fn spec_of(&self, args: &Args<'_>) -> Option<&'static CommandSpec> {
        self.lookup(args).ok().map(|i| self.entries[i].spec)
    }

    /// The specs of every implemented top-level command (`COMMAND`, `COMMAND COUNT`).
    pub fn specs(&self) -> impl Iterator<Item = &'static CommandSpec> + '_ {
        self.by_name.values().map(|&i| self.entries[i].spec)
    }

    /// The spec of an implemented command by name.
    pub fn spec(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        let lower = name.to_ascii_lowercase();
        self.by_name.get(&lower[..]).map(|&i| self.entries[i].spec)
    }

    /// Implemented subcommands of a container command, in Redis's table order.
    pub fn implemented_subcommands(&self, spec: &'static CommandSpec) -> Vec<&'static CommandSpec> {
        let Some(&i) = self.by_name.get(spec.name.as_bytes()) else {
            return Vec::new();
        };
        let subs = &self.entries[i].subs;
        spec.subcommands
            .iter()
            .filter(|sub| {
                subs.iter()
                    .any(|&(_, s)| std::ptr::eq(self.entries[s].spec, *sub))
            })
            .collect()
    }

    /// Per-command statistics, for `INFO commandstats`, of commands called at least once.
    pub fn stats(&self) -> impl Iterator<Item = (&'static str, CommandStats)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.stats.calls > 0 || e.stats.rejected_calls > 0 || e.stats.failed_calls > 0)
            .map(|e| (e.spec.name, e.stats))
    }

    /// Latency histograms of commands called while tracking was on, by full name.
    pub fn latency_histograms(
        &self,
    ) -> impl Iterator<Item = (&'static str, &LatencyHistogram)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.latency.as_deref().map(|h| (e.spec.name, h)))
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset_stats(&mut self) {
        for e in &mut self.entries {
            e.stats = CommandStats::default();
            e.latency = None;
        }
    }
}

impl Server {
    /// Runs one request of client `tok`, writing its reply into `out` (and after it, the
    /// invalidations of keys the client tracks and changed itself).
    #[inline]
    pub(crate) fn execute(&mut self, tok: usize, out: &mut Vec<u8>, args: &Args<'_>) {
        self.tracking_enter(tok);
        self.tracking_limit(out);
        self.execute_request(tok, out, args);
        self.tracking_leave(out);
    }

    fn execute_request(&mut self, tok: usize, out: &mut Vec<u8>, args: &Args<'_>) {
        let resp3 = self.clients[tok].resp3;
        let idx = match self.commands.lookup(args) {
            Ok(idx) => idx,
            Err(text) => {
                self.reject(tok, out, None, &text);
                return;
            }
        };
        let spec = self.commands.entries[idx].spec;
        // The verify step: arity, authentication, protected commands.
        if !spec.arity_ok(args.len()) {
            let text = format!("ERR wrong number of arguments for '{}' command", spec.name);
            self.reject(tok, out, Some(idx), &text);
            return;
        }
        if self.scripting.is_busy() && !crate::scripting::allowed_while_busy(spec.name, args) {
            self.reject(tok, out, Some(idx), self.scripting.busy_reply());
            return;
        }
        let client = &self.clients[tok];
        if !client.authenticated && self.acl.auth_required() && !spec.has(flag::NO_AUTH) {
            self.reject(tok, out, Some(idx), "NOAUTH Authentication required.");
            return;
        }
        if let Err(denied) =
            self.acl
                .user(client.user)
                .check(self.commands.entries[idx].acl_id, spec, args)
        {
            let text = self.acl_refusal(tok, spec, args, denied);
            self.reject(tok, out, Some(idx), &text);
            return;
        }
        if self.cluster.enabled
            && let Some(redirect) = self.cluster_refusal(tok, spec, args)
        {
            self.cluster_reject(tok, out, idx, &redirect.text());
            return;
        }
        let c = &self.clients[tok];
        if !c.resp3
            && c.in_pubsub()
            && let Some(text) = tessera_protocol::clients::subscribed_mode_refusal(spec.name)
        {
            self.reject(tok, out, Some(idx), &text);
            return;
        }
        if spec.name.starts_with("debug") && !self.debug_allowed(tok) {
            self.reject(tok, out, Some(idx), DEBUG_NOT_ALLOWED);
            return;
        }
        if self.persist.loading.is_some() && !spec.has(flag::LOADING) {
            self.reject(
                tok,
                out,
                Some(idx),
                "LOADING Redis is loading the dataset in memory",
            );
            return;
        }
        // Writes (and PING, as in Redis) are refused while the log cannot be written.
        if (spec.has(flag::WRITE) || spec.name == "ping")
            && let Some(text) = self.disk_refusal()
        {
            self.reject(tok, out, Some(idx), &text);
            return;
        }
        if self.repl.verify
            && let Some(text) =
                self.replication_refusal(tok, spec.has(flag::WRITE), spec.has(flag::STALE))
        {
            self.reject(tok, out, Some(idx), text);
            return;
        }

        // maxmemory: evict first; a command that may grow memory is refused when that fails
        // (not inside EXEC or a blocked client's retry, which passed this check already).
        if self.config.maxmemory > 0
            && self.in_exec != Some(tok)
            && self.blocking.retrying != Some(tok)
        {
            let in_multi = self.clients[tok].multi.is_some();
            let reject_on_oom = spec.has(flag::DENYOOM)
                || (in_multi && !matches!(spec.name, "exec" | "discard" | "quit" | "reset"));
            if !self.perform_evictions(unix_ms()) && reject_on_oom {
                self.reject(
                    tok,
                    out,
                    Some(idx),
                    "OOM command not allowed when used memory > 'maxmemory'.",
                );
                return;
            }
        }
        // Inside MULTI, commands are queued (Redis's processCommand).
        if self.clients[tok].multi.is_some()
            && !matches!(
                spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            )
        {
            if spec.has(flag::NO_MULTI) {
                self.reject(
                    tok,
                    out,
                    Some(idx),
                    "ERR Command not allowed inside a transaction",
                );
                return;
            }
            if let Some(m) = self.clients[tok].multi.as_mut() {
                m.queue.push(args.iter().map(<[u8]>::to_vec).collect());
            }
            out.extend_from_slice(b"+QUEUED\r\n");
            return;
        }

        let out_start = out.len();
        let started = Instant::now();
        let now = self.clock.unix_ms_at(started);
        let mut call = Call {
            client: tok,
            out,
            resp3,
            now,
            spec,
        };
        let handler = self.commands.entries[idx].handler;
        let dirty_before = self.dirty;
        let result = handler(self, &mut call, args);
        self.tracking_remember(tok, spec, args);
        if let Some(req) = self.blocking.request.take() {
            if self.blocking.retrying == Some(tok) {
                // Still no data: the client stays blocked (the retry loop sees the request).
                self.blocking.request = Some(req);
            } else if self.in_exec == Some(tok) {
                // Inside EXEC a blocking command does not wait: it answers as timed out.
                Reply::new(out, resp3).null_array();
            } else {
                self.block_client(tok, args, req);
            }
            return;
        }
        if result.is_ok() {
            self.wake_blocked_on_keys(spec, args);
        }
        if self.effects.enabled {
            self.record_effects(args, dirty_before);
            // (While the disk refuses writes, reads are answered: only the writes that did not
            // reach the disk wait, and new writes are refused.)
            if self.persist.holds_replies()
                && self.persist.write_error.is_none()
                && self.effects.offset > self.persist.durable()
                && let Some(c) = self.clients.get_mut(tok)
            {
                // The reply may show effects not yet durable: it waits for the sync.
                c.wait_offset = self.effects.offset;
            }
        } else {
            self.drain_expired_keys();
        }
        let duration_us = started.elapsed().as_micros() as u64;
        let out = call.out;
        let failed = match result {
            Ok(()) => false,
            Err(e) => {
                let text = e.text();
                self.count_error_text(&text);
                Reply::new(out, resp3).error(&text);
                true
            }
        };
        if self.notify_flags != 0 {
            self.publish_events(tok, out);
        }
        self.stats.total_commands_processed += 1;
        self.count_call(idx, duration_us, failed);
        self.after_call(tok, out, out_start, args, spec, duration_us);
    }

    /// Applies one command of the effect stream (recovery; later, a replica's stream from its
    /// primary). Nothing expires meanwhile (`Db::no_expiry`), nothing blocks, no reply is
    /// kept; MULTI/EXEC/SELECT are markers only (a record of the log is applied whole).
    pub(crate) fn replay(&mut self, args: &Args<'_>, scratch: &mut Vec<u8>) -> Result<(), String> {
        let name = args.get(0);
        for marker in ["multi", "exec", "select", "ping", "replconf"] {
            if name.eq_ignore_ascii_case(marker.as_bytes()) {
                return Ok(());
            }
        }
        let idx = self.commands.lookup(args)?;
        let spec = self.commands.entries[idx].spec;
        // Write commands only, and PFCOUNT (it updates the cached cardinality, as Redis
        // records it): a damaged log cannot run anything else.
        if !spec.arity_ok(args.len()) || !spec.has(flag::WRITE) && spec.name != "pfcount" {
            return Err(format!("'{}' cannot be replayed here", spec.name));
        }
        scratch.clear();
        let now = unix_ms();
        let mut call = Call {
            client: REPLAY_CLIENT,
            out: scratch,
            resp3: false,
            now,
            spec,
        };
        let handler = self.commands.entries[idx].handler;
        let result = handler(self, &mut call, args);
        self.blocking.request = None;
        self.db.take_expired();
        result.map_err(|e| e.text().into_owned())
    }

    /// Runs one command for a script's `redis.call` with the checks of Redis's `scriptCall`,
    /// writing its reply (in `resp3` or RESP2) to `out`. A refusal before running is returned
    /// as its error text. `repl_none`: the command's effects are not recorded
    /// (`redis.set_repl(redis.REPL_NONE)`).
    pub(crate) fn execute_from_script(
        &mut self,
        args: &Args<'_>,
        out: &mut Vec<u8>,
        resp3: bool,
        repl_none: bool,
    ) -> Result<(), Cow<'static, str>> {
        let Some(running) = self.scripting.running.as_ref() else {
            return Err(Cow::Borrowed("ERR no script is running"));
        };
        let (tok, now, read_only, oom, flags) = (
            running.client,
            running.now,
            running.read_only,
            running.oom,
            running.flags,
        );
        let idx = self
            .commands
            .lookup(args)
            .map_err(|_| Cow::Borrowed("ERR Unknown Redis command called from script"))?;
        let spec = self.commands.entries[idx].spec;
        if !spec.arity_ok(args.len()) || spec.is_container() && args.len() < 2 {
            return Err(Cow::Borrowed(
                "ERR Wrong number of args calling Redis command from script",
            ));
        }
        if spec.has(flag::NOSCRIPT) {
            return Err(Cow::Borrowed(
                "ERR This Redis command is not allowed from script",
            ));
        }
        let user = self
            .clients
            .get(tok)
            .map_or(crate::acl::DEFAULT_USER, |c| c.user);
        if let Err(denied) =
            self.acl
                .user(user)
                .check(self.commands.entries[idx].acl_id, spec, args)
        {
            self.log_acl_denial(tok, spec, args, denied, crate::acl::Context::Lua);
            return Err(Cow::Borrowed(match denied {
                crate::acl::Denied::Command => {
                    "ERR The user executing the script can't run this command or subcommand"
                }
                crate::acl::Denied::Key(_) => {
                    "ERR The user executing the script can't access at least one of the keys mentioned in the command arguments"
                }
                crate::acl::Denied::Channel(_) => {
                    "ERR The user executing the script can't publish to the channel mentioned in the command"
                }
            }));
        }
        if spec.has(flag::WRITE) {
            if read_only {
                return Err(Cow::Borrowed(
                    "ERR Write commands are not allowed from read-only scripts.",
                ));
            }
            if let Some(text) = self.disk_refusal() {
                return Err(text);
            }
            // (Stale data was allowed or refused when the script started.)
            if self.repl.verify
                && let Some(text) = self.replication_refusal(tok, true, true)
            {
                return Err(Cow::Borrowed(text));
            }
            let wrote = self.scripting.running.as_ref().is_some_and(|r| r.wrote);
            // Scripts without flags are refused at their first write when memory was full.
            if oom
                && !wrote
                && spec.has(flag::DENYOOM)
                && flags & crate::scripting::flags::ALLOW_OOM == 0
            {
                return Err(Cow::Borrowed(
                    "OOM command not allowed when used memory > 'maxmemory'.",
                ));
            }
            if let Some(r) = self.scripting.running.as_mut() {
                r.wrote = true;
            }
        }
        if self.cluster.enabled
            && let Some(text) = self.script_cluster_refusal(tok, spec, args, flags)
        {
            return Err(Cow::Borrowed(text));
        }
        let started = Instant::now();
        let mut call = Call {
            client: tok,
            out,
            resp3,
            now,
            spec,
        };
        let handler = self.commands.entries[idx].handler;
        let dirty_before = self.dirty;
        self.effects.muted = repl_none;
        let result = handler(self, &mut call, args);
        self.tracking_script_read(spec);
        if self.blocking.request.take().is_some() {
            // A blocking command in a script does not wait: it answers as timed out.
            Reply::new(call.out, resp3).null_array();
        }
        if result.is_ok() {
            self.wake_blocked_on_keys(spec, args);
        }
        if self.effects.enabled {
            self.record_effects(args, dirty_before);
        } else {
            self.drain_expired_keys();
        }
        self.effects.muted = false;
        if !self.monitors.is_empty() && !spec.has(flag::SKIP_MONITOR) && !spec.has(flag::ADMIN) {
            crate::commands::server::feed_monitors_from(self, tok, "lua", args);
        }
        let failed = match result {
            Ok(()) => false,
            Err(e) => {
                Reply::new(call.out, resp3).error(&e.text());
                true
            }
        };
        self.count_call(idx, started.elapsed().as_micros() as u64, failed);
        Ok(())
    }

    /// After a write: clients blocked on the keys it wrote are woken. (WATCHes are invalidated
    /// by the handlers' `notify` calls: only real modifications count, as in Redis.)
    #[inline]
    fn wake_blocked_on_keys(&mut self, spec: &'static CommandSpec, args: &Args<'_>) {
        if spec.has(flag::WRITE) && !self.blocking.nobody_waits() {
            for (pos, _) in spec.key_positions(args).unwrap_or_default() {
                self.blocking.mark_ready(args.get(pos));
            }
        }
    }

    /// Counts a call in `INFO commandstats` and the command's latency histogram.
    fn count_call(&mut self, idx: usize, duration_us: u64, failed: bool) {
        let entry = &mut self.commands.entries[idx];
        entry.stats.calls += 1;
        entry.stats.usec += duration_us;
        if failed {
            entry.stats.failed_calls += 1;
        }
        if self.config.latency_tracking {
            entry
                .latency
                .get_or_insert_with(Default::default)
                .record(duration_us);
        }
    }

    fn after_call(
        &mut self,
        tok: usize,
        out: &mut Vec<u8>,
        out_start: usize,
        args: &Args<'_>,
        spec: &'static CommandSpec,
        duration_us: u64,
    ) {
        let blocking = self.blocking.request.is_some();
        let Some(client) = self.clients.get_mut(tok) else {
            return;
        };
        client.last_cmd = spec.name;
        // CLIENT CACHING applies to the next command only (CLIENT commands and MULTI's queue
        // keep it).
        if let Some(t) = client.tracking.as_mut()
            && t.caching
            && client.multi.is_none()
            && !spec.name.starts_with("client|")
        {
            t.caching = false;
        }
        // ASKING applies to the next command only (MULTI's queue keeps it), as in Redis.
        if client.asking && client.multi.is_none() && spec.name != "asking" {
            client.asking = false;
        }
        // A command that blocked (or WAIT) replies when it is released, muted or not then.
        let blocked = blocking || client.wait_acks.is_some();
        // Subscription confirmations are pushes: they go out whatever CLIENT REPLY says.
        if !blocked
            && client.muted()
            && !tessera_protocol::clients::Family::is_subscription(spec.name)
        {
            out.truncate(out_start);
        }
        let threshold = self.config.slowlog_log_slower_than;
        if threshold >= 0 && duration_us >= threshold as u64 && !spec.has(flag::SKIP_SLOWLOG) {
            let c = &self.clients[tok];
            let peer = c.addr.to_string();
            let name = c.name.clone().unwrap_or_default();
            self.slowlog
                .push(args, duration_us, peer, name, self.config.slowlog_max_len);
        }
        let event = if spec.has(flag::FAST) {
            "fast-command"
        } else {
            "command"
        };
        self.latency.record(
            event,
            duration_us / 1000,
            self.config.latency_monitor_threshold,
        );
        if !self.monitors.is_empty() && !spec.has(flag::SKIP_MONITOR) && !spec.has(flag::ADMIN) {
            commands::server::feed_monitors(self, tok, args);
        }
    }

    /// Replies to a request refused before running, counting it as Redis does; inside MULTI
    /// the transaction is flagged so EXEC aborts, and a refused EXEC discards the transaction
    /// with the reason (Redis's `execCommandAbort`).
    /// A request this shard does not serve (cluster mode): EXEC discards the transaction, a
    /// queued command flags it, and the client gets the redirection itself, as in Redis.
    fn cluster_reject(&mut self, tok: usize, out: &mut Vec<u8>, idx: usize, text: &str) {
        let entry = &mut self.commands.entries[idx];
        entry.stats.rejected_calls += 1;
        if entry.spec.name == "exec" {
            self.clients[tok].multi = None;
            self.unwatch_all(tok);
        } else if let Some(m) = self.clients[tok].multi.as_mut() {
            m.aborted = true;
        }
        self.count_error_text(text);
        Reply::new(out, self.clients[tok].resp3).error(text);
    }

    fn reject(&mut self, tok: usize, out: &mut Vec<u8>, idx: Option<usize>, text: &str) {
        let mut exec_abort = None;
        if let Some(idx) = idx {
            let entry = &mut self.commands.entries[idx];
            entry.stats.rejected_calls += 1;
            if entry.spec.name == "exec" {
                exec_abort = Some(format!(
                    "EXECABORT Transaction discarded because of: {text}"
                ));
            }
        }
        let text = match &exec_abort {
            Some(t) => {
                self.clients[tok].multi = None;
                self.unwatch_all(tok);
                t.as_str()
            }
            None => {
                if let Some(m) = self.clients[tok].multi.as_mut() {
                    m.aborted = true;
                }
                text
            }
        };
        self.count_error_text(text);
        let start = out.len();
        Reply::new(out, self.clients[tok].resp3).error(text);
        if self.clients[tok].muted() {
            out.truncate(start);
        }
    }

    /// A replica refuses writes (`replica-read-only`) and, with its link down and
    /// `replica-serve-stale-data no`, most commands; a primary with `min-replicas-to-write`
    /// refuses writes without enough good replicas.
    /// `writes`: the command (or script) may write; `stale_ok`: it may run on stale data.
    pub(crate) fn replication_refusal(
        &self,
        tok: usize,
        writes: bool,
        stale_ok: bool,
    ) -> Option<&'static str> {
        match &self.repl.link {
            Some(link) => {
                if !link.is_up() && !self.config.replica_serve_stale_data && !stale_ok {
                    return Some(
                        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                    );
                }
                (self.config.replica_read_only && writes && !self.clients[tok].is_master)
                    .then_some("READONLY You can't write against a read only replica.")
            }
            None => (writes
                && self.config.min_replicas_to_write > 0
                && self.good_replicas() < self.config.min_replicas_to_write)
                .then_some("NOREPLICAS Not enough good replicas to write."),
        }
    }

    /// Writes are refused while the log cannot be written or the last checkpoint failed
    /// (`stop-writes-on-bgsave-error`).
    pub(crate) fn disk_refusal(&self) -> Option<Cow<'static, str>> {
        if let Some(text) = self.misconf() {
            return Some(Cow::Owned(text));
        }
        self.bgsave_misconf().map(Cow::Borrowed)
    }

    fn count_error_text(&mut self, text: &str) {
        self.stats.total_error_replies += 1;
        let code = text.split(' ').next().unwrap_or("ERR");
        self.stats.count_error(code);
    }

    fn debug_allowed(&self, tok: usize) -> bool {
        match self.config.enable_debug_command.as_str() {
            "yes" => true,
            "local" => self.clients[tok].is_local,
            _ => false,
        }
    }
}

const DEBUG_NOT_ALLOWED: &str = "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.";
