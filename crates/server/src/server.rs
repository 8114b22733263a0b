//! [`Server`]: the shard's single-threaded event loop, which owns the keyspace and every client.
//!
//! One mio (epoll, edge-triggered) loop does what Redis's `ae` loop does: accept, read, parse and
//! execute every complete request of a readable client, queue the replies, and write all pending
//! replies just before waiting again (`before_sleep`), so a pipelined batch costs one read and one
//! write. A timer runs the cron `hz` times a second (active expiry, client timeouts, stats).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tessera_protocol::Reply;
use tessera_storage::{Db, ExpireTuning};

use crate::client::Client;
use crate::config::Config;
use crate::dispatch::Commands;
use crate::stats::{LatencyMonitor, SlowLog, Stats};

const LISTENER: Token = Token(usize::MAX - 1);
/// The persistence threads wake the loop with this token (a sync is done).
const WAKER: Token = Token(usize::MAX - 2);
/// Initial read buffer, as Redis's `PROTO_IOBUF_LEN`.
/// Adaptive busy polling: after a turn with events, the loop polls without sleeping for up to
/// `busy-poll-us`, but only while events have been arriving closer together than that (a
/// moving average of the gaps between active turns). Under steady traffic the next request is
/// then picked up without the server having gone to sleep, which spares the sending client the
/// cost of waking it; a lightly loaded server, whose requests are further apart than the
/// window, never spins.
struct BusyPoll {
    last_active: Instant,
    /// Moving average of the gap between active turns, in microseconds.
    avg_gap_us: f64,
}

impl BusyPoll {
    fn new(now: Instant) -> BusyPoll {
        BusyPoll {
            last_active: now,
            avg_gap_us: f64::MAX,
        }
    }

    fn active(&mut self, now: Instant) {
        let gap = now.duration_since(self.last_active).as_secs_f64() * 1e6;
        self.avg_gap_us = if self.avg_gap_us == f64::MAX {
            gap
        } else {
            self.avg_gap_us * 0.875 + gap * 0.125
        };
        self.last_active = now;
    }

    fn spinning(&self, window: Duration) -> bool {
        let w = window.as_secs_f64() * 1e6;
        w > 0.0 && self.avg_gap_us < w && self.last_active.elapsed() < window
    }
}

/// Bytes read from one client per event-loop turn before others (and its replies) go first.
const READ_BUDGET: usize = 256 * 1024;
/// Reply bytes one client may accumulate in a turn before its replies are written.
const OUTPUT_BUDGET: usize = 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Output buffers larger than this are released once written.
const OUT_KEEP: usize = 64 * 1024;
/// A client with more unwritten output than this is not read from until it drains: a client
/// that sends requests without reading replies is held back by TCP instead of growing the
/// server's memory without bound.
const OUT_BACKPRESSURE: usize = 64 * 1024 * 1024;

/// The shard server.
pub struct Server {
    pub config: Config,
    pub db: Db,
    pub clients: Slab<Client>,
    pub stats: Stats,
    pub commands: Commands,
    pub slowlog: SlowLog,
    pub latency: LatencyMonitor,
    pub pause: Option<tessera_protocol::clients::Pause>,
    /// Clients in MONITOR mode.
    pub monitors: Vec<usize>,
    /// `DEBUG SET-ACTIVE-EXPIRE`.
    pub active_expire_enabled: bool,
    /// Clients blocked in BLPOP and friends.
    pub blocking: crate::blocking::Blocking,
    /// Pub/sub subscriptions.
    pub pubsub: crate::commands::pubsub::PubSub,
    /// Keys watched by clients (WATCH).
    pub watches: crate::commands::transactions::Watches,
    /// The client whose EXEC is running.
    pub in_exec: Option<usize>,
    /// Allocated memory as read this event-loop turn (for `maxmemory`).
    pub used_memory_cache: Option<u64>,
    /// Keyspace notification classes published (0 when off).
    pub notify_flags: u32,
    /// The classes [`Server::notify`] looks at: `notify_flags`, plus every modification while
    /// some client watches keys.
    pub notify_gate: u32,
    /// Keyspace events waiting to be published.
    pub events: crate::notify::Pending,
    pub start: Instant,
    pub start_unix_ms: i64,
    pub run_id: String,
    pub local_addr: SocketAddr,
    /// Set by SHUTDOWN or a signal; the loop exits at its next turn.
    pub shutdown_requested: bool,
    /// Unix time (seconds) of the last successful save (`LASTSAVE`).
    pub last_save: i64,
    /// Changes to the dataset so far (Redis's `server.dirty`).
    pub dirty: u64,
    /// `dirty` at the last save: `rdb_changes_since_last_save` is the difference.
    pub dirty_at_save: u64,
    pub effects: crate::effects::Effects,
    /// Lua scripting: the Lua state, the script cache and the running script.
    pub scripting: crate::scripting::Scripting,
    /// Users and permissions.
    pub acl: crate::acl::Acl,
    /// Client-side caching: tracked keys and prefixes.
    pub tracking: crate::tracking::Tracking,
    pub cluster: crate::cluster::Cluster,
    /// Client ids to their tokens.
    pub client_ids: HashMap<u64, usize>,
    pub persist: crate::persist::Persistence,
    /// The checkpoint in progress.
    pub checkpoint: Option<crate::checkpoint::Checkpoint>,
    pub saves: crate::checkpoint::SaveStats,
    /// SHUTDOWN SAVE (`Some(true)`) or NOSAVE (`Some(false)`); by default the `save` rules
    /// decide.
    pub shutdown_save: Option<bool>,
    /// Replication (`repl`): replicas of this shard, and its link to a primary.
    pub repl: crate::repl::Repl,
    /// Wakes the loop from other threads (persistence syncs, the replica's sync thread).
    pub(crate) waker: Option<Arc<mio::Waker>>,
    /// The last poll returned events (checkpoints take a bigger slice of idle turns).
    turn_had_events: bool,
    poll: Poll,
    listener: TcpListener,
    pending_writes: Vec<usize>,
    /// Clients whose socket may still hold input after their per-turn read budget.
    pending_reads: Vec<usize>,
    /// The command clock (see [`Clock`]).
    pub(crate) clock: Clock,
    /// True when `client-output-buffer-limit normal` sets a limit (checked per command).
    pub(crate) output_limits_on: bool,
    paused_clients: Vec<usize>,
    next_client_id: u64,
    signal: Arc<AtomicBool>,
    fast_expire_due: bool,
    last_cron: Instant,
    cron_loops: u64,
    /// When the current event-loop turn started (one clock read per turn, not per read).
    turn_start: Instant,
    /// A client other than the primary's link had events this turn (busy polling).
    client_events: bool,
}

/// Unix time in milliseconds.
#[inline]
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix time derived from the monotonic clock: each command reads the clock once (an `Instant`
/// that also times it) instead of twice. The wall-clock base is read again every event-loop
/// turn, so a wall-clock change is seen within one turn.
#[derive(Debug)]
pub struct Clock {
    base: Instant,
    base_unix_us: i64,
}

impl Clock {
    fn new() -> Clock {
        let mut c = Clock {
            base: Instant::now(),
            base_unix_us: 0,
        };
        c.resync(Instant::now());
        c
    }

    /// Takes `now` (just read) and the wall clock as the new base.
    pub fn resync(&mut self, now: Instant) {
        self.base = now;
        self.base_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
    }

    /// Unix milliseconds at `at` (an instant of this turn).
    pub fn unix_ms_at(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.base).as_micros() as i64;
        (self.base_unix_us + since) / 1000
    }
}

/// Redis's refusal of a remote client while protected mode is on and the default user has no
/// password.
const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

impl Server {
    /// Binds the listener; the server runs with [`Server::run`].
    pub fn bind(config: Config) -> io::Result<Server> {
        let addr: SocketAddr =
            format!("{}:{}", config.bind, config.port)
                .parse()
                .or_else(|_| {
                    use std::net::ToSocketAddrs;
                    (config.bind.as_str(), config.port)
                        .to_socket_addrs()?
                        .next()
                        .ok_or_else(|| io::Error::other("bind address resolves to nothing"))
                })?;
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let signal = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&signal))?;
        }
        let run_id: String = (0..40)
            .map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("digit below 16"))
            .collect();
        let now = unix_ms();
        let mut db = Db::new();
        db.limits = config.compact_limits();
        db.lfu = config.lfu();
        let notify_flags = config.notify_flags();
        let fsync = crate::persist::Fsync::parse(&config.appendfsync)
            .ok_or_else(|| io::Error::other("appendfsync must be always, everysec or no"))?;
        let mut persist = crate::persist::Persistence::open(&config.dir, config.appendonly, fsync)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        persist.set_waker(Arc::clone(&waker));
        let repl = crate::repl::Repl::new(persist.replid.clone());
        let mut acl = crate::acl::Acl::new(
            config.requirepass.as_deref(),
            config.acl_pubsub_default == "allchannels",
        );
        if let Some(path) = &config.aclfile {
            acl.load_file(path).map_err(|e| {
                io::Error::other(format!("Aborting startup because of ACL errors: {e}"))
            })?;
        }
        acl.set_internal_secret(config.internal_secret());
        let mut server = Server {
            acl,
            tracking: Default::default(),
            cluster: {
                let mut cluster = crate::cluster::Cluster::start(&config);
                cluster.set_waker(Arc::clone(&waker));
                cluster
            },
            client_ids: HashMap::new(),
            db,
            clients: Slab::with_capacity(64),
            stats: Stats::default(),
            commands: Commands::new(),
            slowlog: SlowLog::default(),
            latency: LatencyMonitor::default(),
            pause: None,
            monitors: Vec::new(),
            active_expire_enabled: true,
            blocking: Default::default(),
            watches: Default::default(),
            pubsub: Default::default(),
            in_exec: None,
            used_memory_cache: None,
            notify_flags: 0,
            notify_gate: 0,
            events: Default::default(),
            start: Instant::now(),
            start_unix_ms: now,
            run_id,
            local_addr,
            shutdown_requested: false,
            last_save: now / 1000,
            dirty: 0,
            dirty_at_save: 0,
            effects: Default::default(),
            scripting: crate::scripting::Scripting::new(config.lua_memory_limit),
            persist,
            checkpoint: None,
            saves: Default::default(),
            shutdown_save: None,
            repl,
            waker: Some(waker),
            turn_had_events: false,
            poll,
            listener,
            pending_writes: Vec::new(),
            pending_reads: Vec::new(),
            clock: Clock::new(),
            output_limits_on: config.normal_output_limited(),
            paused_clients: Vec::new(),
            next_client_id: 1,
            signal,
            fast_expire_due: false,
            last_cron: Instant::now(),
            cron_loops: 0,
            turn_start: Instant::now(),
            client_events: false,
            config,
        };
        server.apply_notify_config(notify_flags);
        server.effects.enabled = server.persist.aof;
        server.update_expired_logging();
        server
            .start_loading()
            .map_err(|e| io::Error::other(e.to_string()))?;
        if let Some(spec) = server.config.replicaof.clone() {
            let (host, port) = crate::repl::parse_replicaof(&spec).ok_or_else(|| {
                io::Error::other(format!("replicaof must be \"<host> <port>\", not {spec:?}"))
            })?;
            server.replicate_from(host, port);
        }
        server.update_repl_verify();
        Ok(server)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs the event loop until SHUTDOWN or SIGTERM/SIGINT.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        crate::memory::set_background_thread(self.config.jemalloc_bg_thread);
        if let Err(e) = crate::sched::apply(&self.config.sched_policy) {
            tracing::warn!("sched-policy {}: {e}", self.config.sched_policy);
        }
        tracing::info!(addr = %self.local_addr, "ready to accept connections");
        let mut busy = BusyPoll::new(Instant::now());
        loop {
            let period = Duration::from_millis(1000 / u64::from(self.config.hz.max(1)));
            let since = self.last_cron.elapsed();
            let window = Duration::from_micros(self.config.busy_poll_us);
            let mut timeout = if self.fast_expire_due
                || self.persist.loading.is_some()
                || !self.pending_writes.is_empty()
                || !self.pending_reads.is_empty()
                || busy.spinning(window)
                || self.repl.sync.as_ref().is_some_and(|s| !s.blocked)
            {
                Duration::ZERO
            } else {
                period.saturating_sub(since)
            };
            if self.checkpoint.is_some() {
                // A checkpoint advances in turns: a quiet millisecond makes an idle turn.
                timeout = timeout.min(Duration::from_millis(1));
            }
            // Wake up for the earliest blocking timeout.
            if let Some(d) = self.blocking.next_deadline() {
                timeout = timeout.min(d.saturating_duration_since(Instant::now()));
            }
            if let Some(d) = self.next_wait_deadline() {
                timeout = timeout.min(d.saturating_duration_since(Instant::now()));
            }
            if let Some(d) = self.stream_deadline() {
                timeout = timeout.min(d.saturating_duration_since(Instant::now()));
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.turn_start = Instant::now();
            self.turn_had_events = !events.is_empty();
            if !events.is_empty() {
                self.clock.resync(self.turn_start);
            }
            self.client_events = false;
            self.used_memory_cache = None;
            for tok in std::mem::take(&mut self.pending_reads) {
                self.on_readable(tok);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    // before_sleep releases the replies a finished sync made durable.
                    WAKER => {}
                    Token(tok) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(tok);
                        }
                        if event.is_writable() {
                            self.flush_client(tok);
                        }
                    }
                }
            }
            if self.repl.link.is_some() {
                self.poll_sync_attempt();
            }
            // Only clients' requests make spinning worth it: a replica whose events are its
            // primary's stream would burn a core the primary and its clients need.
            if self.client_events {
                busy.active(self.turn_start);
            }
            if self.persist.loading.is_some() {
                // Loading runs in slices between turns, so clients get -LOADING meanwhile.
                self.load_step(Duration::from_millis(20));
            }
            if self.last_cron.elapsed() >= period {
                self.cron();
            }
            self.before_sleep();
            if self.signal.load(Ordering::Relaxed) {
                tracing::warn!("received a shutdown signal, scheduling shutdown");
                self.shutdown_requested = true;
            }
            if self.shutdown_requested {
                self.shutdown();
                return Ok(());
            }
        }
    }

    /// Serves clients while a script runs past `busy-reply-threshold` (Redis's
    /// `processEventsWhileBlocked`): new connections are accepted and requests answered, which
    /// the busy check of `execute` turns into `-BUSY` for most commands. The script's own client
    /// and a primary's stream are not read now: they are read at the next turn.
    ///
    /// On the first call (`first`) every client is tried once, and pending connections
    /// accepted: the turn that started the script may have taken their readiness already
    /// (edge-triggered epoll reports it once).
    pub(crate) fn process_events_while_busy(&mut self, running: usize, first: bool) {
        self.turn_start = Instant::now();
        if first {
            self.accept_all();
            let toks: Vec<usize> = self
                .clients
                .iter()
                .filter(|(tok, c)| *tok != running && !c.is_master && c.io.is_some())
                .map(|(tok, _)| tok)
                .collect();
            for tok in toks {
                self.on_readable(tok);
            }
        }
        let mut events = Events::with_capacity(256);
        if self.poll.poll(&mut events, Some(Duration::ZERO)).is_err() {
            return;
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_all(),
                WAKER => {}
                Token(tok) => {
                    let deferred =
                        tok == running || self.clients.get(tok).is_some_and(|c| c.is_master);
                    if deferred {
                        if !self.pending_reads.contains(&tok) {
                            self.pending_reads.push(tok);
                        }
                        continue;
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.on_readable(tok);
                    }
                    if event.is_writable() {
                        self.flush_client(tok);
                    }
                }
            }
        }
        self.write_pending(Some(running));
    }

    /// Writes every client queued for output and frees those CLIENT KILL marked; `keep` (the
    /// client of a running script) stays queued.
    fn write_pending(&mut self, keep: Option<usize>) {
        let mut pending = std::mem::take(&mut self.pending_writes);
        for &tok in &pending {
            if Some(tok) == keep {
                continue;
            }
            if let Some(c) = self.clients.get_mut(tok) {
                c.pending_write = false;
                if c.close_asap {
                    self.free_client(tok);
                    continue;
                }
                self.flush_client(tok);
            }
        }
        // Keep the buffer's capacity for the next turn.
        pending.retain(|&t| Some(t) == keep);
        pending.append(&mut self.pending_writes);
        self.pending_writes = pending;
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    self.stats.total_connections_received += 1;
                    if self.clients.len() >= self.config.maxclients {
                        self.stats.rejected_connections += 1;
                        let _ = stream.write(b"-ERR max number of clients reached\r\n");
                        continue;
                    }
                    if self.config.protected_mode
                        && self.acl.user(crate::acl::DEFAULT_USER).nopass()
                        && !addr.ip().is_loopback()
                        && !addr.ip().to_canonical().is_loopback()
                    {
                        self.stats.rejected_connections += 1;
                        let _ = stream.write(PROTECTED_MODE_DENIED);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    if self.config.tcp_keepalive > 0 {
                        let ka = socket2::TcpKeepalive::new()
                            .with_time(Duration::from_secs(self.config.tcp_keepalive));
                        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
                    }
                    let entry = self.clients.vacant_entry();
                    let tok = entry.key();
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(tok), Interest::READABLE)
                    {
                        tracing::warn!(error = %e, "cannot register a new client");
                        continue;
                    }
                    let id = self.next_client_id;
                    self.next_client_id += 1;
                    let auth = !self.acl.auth_required();
                    self.client_ids.insert(id, tok);
                    entry.insert(Client::new(id, stream, addr, self.config.limits(), auth));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: try again at the next readiness event.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    /// Registers a connection made by the server itself (the link to a primary) under the
    /// token its client will get.
    pub(crate) fn register_client(&mut self, stream: &mut mio::net::TcpStream) -> Option<usize> {
        let tok = self.clients.vacant_key();
        match self
            .poll
            .registry()
            .register(stream, Token(tok), Interest::READABLE)
        {
            Ok(()) => Some(tok),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register a connection");
                None
            }
        }
    }

    pub(crate) fn next_client_id(&mut self) -> u64 {
        self.next_client_id += 1;
        self.next_client_id - 1
    }

    /// Reads what the client's socket holds.
    pub(crate) fn read_client(&mut self, tok: usize) {
        self.on_readable(tok);
    }

    fn on_readable(&mut self, tok: usize) {
        let mut taken = 0;
        loop {
            let limit = self.config.client_query_buffer_limit;
            let Some(client) = self.clients.get_mut(tok) else {
                return;
            };
            if client.close_asap || client.output_blocked {
                return;
            }
            self.client_events |= !client.is_master;
            let Some(io) = client.io.as_mut() else { return };
            // Make room: reuse consumed space first, then grow; a large bulk argument sizes
            // the buffer to fit it so it is read straight into place.
            let (start, end) = (io.start, io.end);
            if end == io.buf.len() {
                if start > 0 {
                    io.buf.copy_within(start..end, 0);
                    io.end -= start;
                    io.start = 0;
                } else {
                    let wanted = io.parser.wanted().unwrap_or(0);
                    let grow =
                        (io.buf.len().max(READ_CHUNK)).max(wanted.saturating_sub(io.buf.len()));
                    io.buf.resize(io.buf.len() + grow.min(64 * 1024 * 1024), 0);
                }
            }
            let space = io.buf.len() - io.end;
            let end = io.end;
            match client.stream.read(&mut io.buf[end..]) {
                Ok(0) => {
                    self.free_client(tok);
                    return;
                }
                Ok(n) => {
                    self.stats.total_reads_processed += 1;
                    io.end += n;
                    client.last_interaction = self.turn_start;
                    self.stats.net_input_bytes += n as u64;
                    if io.end - io.start > limit {
                        tracing::warn!(client = %client.addr, "closing client that reached max query buffer length");
                        self.free_client(tok);
                        return;
                    }
                    self.process_input(tok);
                    // A short read drained the socket: edge-triggered epoll reports new data.
                    if n < space {
                        return;
                    }
                    // A client that keeps its socket full gets READ_BUDGET per turn: its
                    // replies go out in between, so neither its replies nor its unread
                    // requests pile up in memory, and other clients get their turn.
                    taken += n;
                    let out = self
                        .clients
                        .get(tok)
                        .and_then(|c| c.io.as_ref())
                        .map_or(0, |io| io.out.len());
                    if taken >= READ_BUDGET || out >= OUTPUT_BUDGET {
                        self.pending_reads.push(tok);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.free_client(tok);
                    return;
                }
            }
        }
    }

    /// Parses and executes every complete request in the client's buffer.
    pub(crate) fn process_input(&mut self, tok: usize) {
        let Some(client) = self.clients.get_mut(tok) else {
            return;
        };
        let Some(mut io) = client.io.take() else {
            return;
        };
        loop {
            if io.start == io.end {
                io.start = 0;
                io.end = 0;
                break;
            }
            let client = &mut self.clients[tok];
            if client.close_after_reply
                || client.close_asap
                || client.blocked.is_some()
                || client.wait_acks.is_some()
                || client.users_change.is_some()
            {
                break;
            }
            let pending = io.out.len() - io.out_pos;
            if self.output_limits_on && pending > 0 && self.check_output_limit(tok, pending as u64)
            {
                break;
            }
            let client = &mut self.clients[tok];
            if pending > OUT_BACKPRESSURE {
                client.output_blocked = true;
                break;
            }
            let authenticated = client.authenticated || !self.acl.auth_required();
            let parsed = io.parser.parse(&io.buf[io.start..io.end], authenticated);
            match parsed {
                Ok(Some(n)) => {
                    let args = io.parser.args(&io.buf[io.start..io.end]);
                    if self.clients[tok].is_master {
                        // The primary's stream: applied, never answered.
                        let raw = &io.buf[io.start..io.start + n];
                        let mut scratch = std::mem::take(&mut self.repl.scratch);
                        if !args.is_empty() {
                            self.apply_from_master(&args, raw, &mut io.out, &mut scratch);
                        }
                        self.repl.scratch = scratch;
                        io.start += n;
                        continue;
                    }
                    if !args.is_empty() {
                        if self.is_paused_for(tok, &args) {
                            // Keep the request in the buffer (the parser is back at a request
                            // start); it runs again on unpause.
                            let client = &mut self.clients[tok];
                            if !client.paused {
                                client.paused = true;
                                self.paused_clients.push(tok);
                            }
                            break;
                        }
                        self.execute(tok, &mut io.out, &args);
                        if self.blocking.has_ready() {
                            self.serve_ready_keys();
                        }
                    }
                    io.start += n;
                }
                Ok(None) => break,
                Err(e) => {
                    self.stats.total_error_replies += 1;
                    self.stats.count_error("ERR");
                    let resp3 = self.clients[tok].resp3;
                    Reply::new(&mut io.out, resp3).error(&format!("ERR {e}"));
                    tracing::info!(client = %self.clients[tok].addr, error = %e, "protocol error, closing client");
                    self.clients[tok].close_after_reply = true;
                    break;
                }
            }
        }
        let has_output = io.out.len() > io.out_pos;
        if self.output_limits_on && has_output {
            self.check_output_limit(tok, (io.out.len() - io.out_pos) as u64);
        }
        let Some(client) = self.clients.get_mut(tok) else {
            return;
        };
        client.io = Some(io);
        if (has_output || client.close_after_reply || client.close_asap) && !client.pending_write {
            client.pending_write = true;
            self.pending_writes.push(tok);
        }
    }

    /// Queues a client for a write in `before_sleep` (used when another client's command
    /// produced output for it, e.g. MONITOR).
    pub fn schedule_write(&mut self, tok: usize) {
        if let Some(c) = self.clients.get_mut(tok)
            && !c.pending_write
        {
            c.pending_write = true;
            self.pending_writes.push(tok);
        }
    }

    /// True when CLIENT PAUSE holds client `tok`'s command `args`: as Redis, an EXEC counts
    /// as a write when a queued command may write.
    fn is_paused_for(&self, tok: usize, args: &tessera_protocol::Args<'_>) -> bool {
        let Some(pause) = self.pause else {
            return false;
        };
        if Instant::now() >= pause.until {
            return false;
        }
        let Some(spec) = self.commands.spec_of(args) else {
            return false;
        };
        if pause.holds(spec) {
            return true;
        }
        let queue = self.clients.get(tok).and_then(|c| c.multi.as_ref());
        spec.name == "exec"
            && queue.is_some_and(|m| {
                m.queue.iter().any(|cmd| {
                    let (buf, spans) = crate::commands::transactions::flatten(cmd);
                    let args = tessera_protocol::Args::from_parts(&buf, &spans);
                    self.commands
                        .spec_of(&args)
                        .is_some_and(|queued| pause.holds(queued))
                })
            })
    }

    /// Writes as much pending output as the socket takes.
    fn flush_client(&mut self, tok: usize) {
        let durable = self.persist.durable();
        let Some(client) = self.clients.get_mut(tok) else {
            return;
        };
        if client.wait_offset > durable {
            // `appendfsync always`: the reply waits until the effects it follows are synced.
            if !self.persist.held.contains(&tok) {
                self.persist.held.push(tok);
            }
            return;
        }
        let Some(io) = client.io.as_mut() else { return };
        while io.out_pos < io.out.len() {
            match client.stream.write(&io.out[io.out_pos..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.stats.total_writes_processed += 1;
                    io.out_pos += n;
                    self.stats.net_output_bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.free_client(tok);
                    return;
                }
            }
        }
        let done = io.out_pos == io.out.len();
        if done {
            io.out.clear();
            io.out_pos = 0;
            // A replica's buffer is kept: its stream keeps coming.
            if io.out.capacity() > OUT_KEEP && client.replica.is_none() {
                io.out = Vec::new();
            }
        }
        if done && (client.close_after_reply || client.close_asap) {
            self.free_client(tok);
            return;
        }
        let resume = client.output_blocked && io.out.len() - io.out_pos <= OUT_BACKPRESSURE / 2;
        // Ask for writable events only while output is stuck.
        if done == client.want_write {
            client.want_write = !done;
            let interest = if done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut client.stream, Token(tok), interest);
        }
        if resume {
            // Run what is buffered, then read what the socket holds: no new edge will
            // announce data that arrived while the client was held back.
            client.output_blocked = false;
            self.process_input(tok);
            self.on_readable(tok);
        }
    }

    /// Closes a connection and forgets the client.
    pub fn free_client(&mut self, tok: usize) {
        self.disable_tracking(tok);
        if let Some(c) = self.clients.get(tok) {
            self.client_ids.remove(&c.id);
        }
        if let Some(mut client) = self.clients.try_remove(tok) {
            let _ = self.poll.registry().deregister(&mut client.stream);
            if client.replica.is_some() || client.wait_acks.is_some() {
                self.repl_forget_client(tok);
            }
            if client.is_master {
                self.master_lost(tok);
            }
            if client.monitor {
                self.monitors.retain(|&t| t != tok);
            }
            if let Some(blocked) = client.blocked.take() {
                self.forget_blocked(tok, &blocked);
            }
            if client.in_pubsub() {
                // The client is gone from the slab: drop its subscriptions by token.
                self.pubsub.forget(tok, &client);
            }
            if !client.watched.is_empty() {
                // Put the client back briefly so its watches can be dropped by token.
                let watched = client.watched;
                for key in watched {
                    if let Some(list) = self.watches.by_key_mut().get_mut(&key) {
                        list.retain(|&t| t != tok);
                        if list.is_empty() {
                            self.watches.by_key_mut().remove(&key);
                        }
                    }
                }
                self.update_expired_logging();
            }
        }
    }

    fn before_sleep(&mut self) {
        if self.fast_expire_due && self.active_expire_enabled && !self.repl.is_replica() {
            let tuning = ExpireTuning::from_effort(self.config.active_expire_effort);
            self.fast_expire_due = self.db.active_expire_cycle(tuning, 1000, unix_ms);
            self.drain_expired_keys();
        }
        if self.notify_flags != 0 {
            self.publish_events(usize::MAX, &mut Vec::new());
        }
        if self.cluster.enabled {
            let new = self.cluster.take_updates();
            let answered = self.answer_users_changes();
            if new {
                self.take_cluster_users(&answered);
            }
            for tok in answered {
                self.process_input(tok);
            }
        }
        if self.tracking.clients > 0 {
            self.tracking_broadcast();
        }
        self.handle_blocked_in_before_sleep();
        // Resume clients whose pause ended.
        if !self.paused_clients.is_empty() && self.pause.is_none_or(|p| Instant::now() >= p.until) {
            self.pause = None;
            for tok in std::mem::take(&mut self.paused_clients) {
                if let Some(c) = self.clients.get_mut(tok) {
                    c.paused = false;
                    self.process_input(tok);
                }
            }
        }
        self.repl_before_sleep();
        // The turn's effects go to the log (and replicas) before any reply of the turn.
        self.persist_turn();
        self.flush_stream(false);
        if self.repl.sync.is_some() {
            let budget = self.repl_sync_budget(self.turn_start.elapsed(), self.turn_had_events);
            self.full_sync_step(budget);
        }
        if self.checkpoint.is_some() {
            // A twentieth of the turn's own work (at least one slot), or 2 ms
            // of a turn that found nothing to do for a millisecond.
            let budget = if self.turn_had_events {
                self.turn_start.elapsed() / 20
            } else {
                Duration::from_millis(2)
            };
            self.checkpoint_step(budget);
        }
        self.write_pending(None);
    }

    fn cron(&mut self) {
        // Redis samples the memory peak in its cron too.
        crate::memory::note_peak();
        self.last_cron = Instant::now();
        self.cron_loops += 1;
        let hz = u64::from(self.config.hz.max(1));
        // A replica's keys expire by the primary's DELs.
        if self.active_expire_enabled && !self.repl.is_replica() {
            // Redis's slow cycle: 25% of the cron period at most.
            let budget_us = 1_000_000 * 25 / hz / 100;
            let tuning = ExpireTuning::from_effort(self.config.active_expire_effort);
            self.fast_expire_due = self.db.active_expire_cycle(tuning, budget_us, unix_ms);
        }
        self.drain_expired_keys();
        self.retry_store();
        self.checkpoint_cron();
        self.repl_primary_cron();
        self.repl_replica_cron();
        self.db.rehash_and_shrink(1000);
        self.stats.sample_ops();
        if let Some(p) = self.pause
            && Instant::now() >= p.until
        {
            self.pause = None;
        }
        self.clients_cron();
    }

    /// Closes idle clients (`timeout`) and releases idle read buffers.
    fn clients_cron(&mut self) {
        let timeout = self.config.timeout;
        let now = Instant::now();
        let mut to_close = Vec::new();
        for (tok, c) in self.clients.iter_mut() {
            let idle = now.duration_since(c.last_interaction);
            let replication = c.is_master || c.replica.is_some();
            if timeout > 0 && !c.monitor && !replication && idle.as_secs() >= timeout {
                to_close.push(tok);
                continue;
            }
            if let Some(io) = c.io.as_mut()
                && io.start == io.end
                && !io.buf.is_empty()
                && idle.as_secs() >= 2
            {
                io.buf = Vec::new();
                io.start = 0;
                io.end = 0;
            }
        }
        for tok in to_close {
            self.free_client(tok);
        }
    }

    fn shutdown(&mut self) {
        tracing::warn!("user requested shutdown");
        self.persist_on_shutdown();
        // Write what is pending, then close every client.
        let toks: Vec<usize> = self.clients.iter().map(|(t, _)| t).collect();
        for tok in toks {
            self.flush_client(tok);
            self.free_client(tok);
        }
        if let Some(pidfile) = &self.config.pidfile {
            let _ = std::fs::remove_file(pidfile);
        }
        tracing::warn!("Tessera is now ready to exit, bye bye...");
    }

    /// Uptime in seconds.
    pub fn uptime(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// The LRU clock (seconds, 24 bits) Redis stores per object.
    pub fn lru_clock() -> u32 {
        tessera_storage::db::lru_clock()
    }

    /// Number of cron runs so far.
    pub fn cron_loops(&self) -> u64 {
        self.cron_loops
    }
}
