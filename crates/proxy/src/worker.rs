//! One proxy thread: its listening socket, its clients, its connections to the shards, and the
//! loop that moves requests and replies between them.
//!
//! Requests for a shard are appended to that shard connection's output buffer as they are
//! parsed and written once per loop turn, so every client's command that arrived in the same
//! turn shares one write (just-in-time pipelining). The buffer keeps each request until its
//! reply has come back, so a `-MOVED`, `-ASK` or `-TRYAGAIN` reply can be followed by sending
//! the same bytes elsewhere; replies come back in request order, so the buffer is a FIFO.
//!
//! Each client has a queue of the replies it is owed, in request order. A reply that arrives
//! for the head of the queue is copied straight into the client's output; one that arrives
//! early (another shard was faster) waits in its entry.
//!
//! A command that may block a shard connection (BLPOP and the other blocking commands, XREAD
//! and XREADGROUP with BLOCK) and WATCH with the transaction after it go over a private
//! connection of the client's to the shard (made on first use, kept until the client leaves),
//! so nothing waits behind them on the shared connections. Subscriptions live there too
//! (`pubsub.rs`): messages from a private connection go straight to its client. So do all the
//! commands of a client with CLIENT TRACKING on (`tracking.rs`).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tessera_protocol::cluster::Topology;
use tessera_protocol::frame::{self, FrameScanner};
use tessera_protocol::parse::{Limits, RequestParser};
use tessera_protocol::reply::Reply;

use crate::Shared;
use crate::merge::Gather;
use crate::pubsub::{PushKind, Subs, push_kind};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CLIENT_BASE: usize = 2;
const BACKEND_BASE: usize = 1 << 32;
/// The size of a connection's first read buffer; it doubles while a request or reply needs it.
const READ_CHUNK: usize = 16 * 1024;
/// Replies a client may be owed, and bytes of replies it has not read, before the proxy stops
/// reading its requests (it reads again below half of both).
const MAX_PENDING: usize = 1024;
const MAX_UNREAD: usize = 8 << 20;
/// Redirections (`MOVED`, `ASK`, `TRYAGAIN`) followed for one command before its client gets
/// the last one.
const MAX_REDIRECTS: u8 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a shard connection cannot be made, commands for it fail at once for this long.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
const TRYAGAIN_DELAY: Duration = Duration::from_millis(20);
/// Bytes of messages a subscribed client may leave unread before it is disconnected (Redis's
/// default `client-output-buffer-limit pubsub` hard limit).
const PUBSUB_UNREAD_LIMIT: usize = 32 << 20;

/// A reply a client is owed, in request order.
pub(crate) enum Pending {
    /// One shard's reply, passed through.
    Wait,
    /// One shard's reply, dropped (CLIENT REPLY OFF or SKIP).
    Quiet,
    /// Several shards' replies, merged.
    Gather(Box<Gather>),
    /// A reply that is ready but waits for the ones before it.
    Done(Vec<u8>),
}

/// A transaction being queued at the proxy (MULTI ... EXEC): its commands go to the shard as
/// one block at EXEC.
#[derive(Default)]
pub(crate) struct Multi {
    /// The queued commands, encoded, one after the other; `lens` gives each one's length.
    pub cmds: Vec<u8>,
    pub lens: Vec<u32>,
    /// The slot of the keys so far.
    pub slot: Option<u16>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    pub failed: bool,
    /// A queued command may write: CLIENT PAUSE WRITE holds the EXEC.
    pub may_write: bool,
}

pub(crate) struct Client {
    pub id: u64,
    stream: TcpStream,
    /// The client's address and the proxy's, as CLIENT LIST shows them.
    pub peer: String,
    pub local: String,
    pub created: Instant,
    /// When its last command came, and which (`idle=`, `cmd=`).
    pub active: Instant,
    pub cmd: &'static str,
    pub lib_name: Option<Vec<u8>>,
    pub lib_ver: Option<Vec<u8>>,
    inb: Vec<u8>,
    filled: usize,
    parser: Option<RequestParser>,
    out: Vec<u8>,
    written: usize,
    pub queue: VecDeque<Pending>,
    /// The request sequence number of `queue[0]`.
    pub head_seq: u64,
    pub resp3: bool,
    pub authed: bool,
    /// The client's user (`Worker::acl`), and its name (empty for the default user), by which
    /// it is found again when the users change.
    pub user: tessera_acl::UserId,
    pub user_name: Vec<u8>,
    /// ACL SETUSER or DELUSER sent to the control group and not yet answered: if the change
    /// deletes the client's own user, it is closed after the answer, not before.
    pub acl_pending: bool,
    pub name: Option<Vec<u8>>,
    pub multi: Option<Multi>,
    /// The client's private shard connections (blocking commands, WATCH).
    pub private: Vec<usize>,
    /// WATCH is in force on this private connection.
    pub watch: Option<Watch>,
    /// Channels, patterns and shard channels subscribed to.
    pub subs: Option<Box<Subs>>,
    /// MONITOR is on: its feeds are private connections in monitor mode.
    pub monitoring: bool,
    /// CLIENT TRACKING is on: the client's commands go over its private connections, where
    /// each shard remembers the keys it read and sends the invalidations (`tracking.rs`).
    pub tracking: Option<Box<Tracking>>,
    /// CLIENT CACHING was given for the next command or transaction.
    pub caching: bool,
    /// CLIENT TRACKING ON REDIRECT being set up: nothing else is read until it is done.
    pub setup: Option<Box<Setup>>,
    /// WAIT being answered: nothing else is read until it is done.
    pub wait: Option<Box<WaitFor>>,
    /// CLIENT REPLY OFF is in force; CLIENT REPLY SKIP was given for the next command.
    pub reply_off: bool,
    pub skip_next: bool,
    /// The command being served gets no reply (Redis's `CLIENT_REPLY_OFF|CLIENT_REPLY_SKIP`;
    /// pushes still go out, as in Redis).
    pub quiet: bool,
    /// Close once the replies owed are written (QUIT, a protocol error).
    pub closing: bool,
    /// Its next command waits for CLIENT PAUSE to end (it is in the worker's `held`).
    pub held: bool,
    /// Not read while it is owed `MAX_PENDING` replies.
    paused: bool,
    dirty: bool,
}

impl Client {
    /// True while the client has a subscription (RESP2's subscribed mode; CLIENT LIST's `P`).
    pub(crate) fn subscribed(&self) -> bool {
        self.subs.as_ref().is_some_and(|s| s.subscribed())
    }

    /// Bytes of requests in the read buffer, and the buffer's size (while the client's
    /// requests are being handled the buffer is lent out: its size is not known then).
    pub(crate) fn input_use(&self) -> (usize, usize) {
        (self.filled, self.inb.len().max(self.filled))
    }

    pub(crate) fn fd(&self) -> usize {
        self.stream.as_raw_fd() as usize
    }

    pub(crate) fn out_capacity(&self) -> usize {
        self.out.capacity()
    }
}

/// CLIENT TRACKING ON as the client gave it.
pub(crate) struct Tracking {
    /// The command, encoded: every private connection of the client's sends it first.
    pub command: Vec<u8>,
    pub optin: bool,
    pub optout: bool,
    pub bcast: bool,
    pub noloop: bool,
    pub redirect: Option<Box<Redirect>>,
}

/// CLIENT TRACKING ON REDIRECT: each shard sends the invalidations to a connection of the
/// client's own there (a feed), and the proxy passes them to the target.
pub(crate) struct Redirect {
    /// The proxy client invalidations go to.
    pub target: u64,
    /// The command's arguments: `args[at]` becomes the shard's id for the feed.
    pub args: Vec<Vec<u8>>,
    pub at: usize,
    /// Each shard's address and its id for the client's feed there.
    pub feeds: Vec<(String, u64)>,
    /// BCAST prefixes, sorted (for CLIENT TRACKINGINFO).
    pub prefixes: Vec<Vec<u8>>,
    /// The target has gone.
    pub broken: bool,
}

impl Tracking {
    /// The command for the client's connection to `addr`; none for a redirecting client
    /// without a feed there.
    pub(crate) fn command_for(&self, addr: &str) -> Option<Vec<u8>> {
        let Some(r) = &self.redirect else {
            return Some(self.command.clone());
        };
        let (_, id) = r.feeds.iter().find(|(a, _)| a == addr)?;
        let id = itoa::Buffer::new().format(*id).as_bytes().to_vec();
        let args: Vec<&[u8]> = r
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| if i == r.at { &id[..] } else { &a[..] })
            .collect();
        let mut out = Vec::new();
        write_command(&mut out, &args);
        Some(out)
    }
}

/// CLIENT TRACKING ON REDIRECT waiting for the shards' ids of its feeds; the client's later
/// commands wait with it.
pub(crate) struct Setup {
    pub tracking: Tracking,
    /// Per shard: its primary's address, the feed connection, and the shard's id for it.
    pub shards: Vec<(String, usize, Option<u64>)>,
    /// The client's reply: its sequence number.
    pub seq: u64,
    pub waiting: usize,
    /// Why a feed could not be made.
    pub failed: Option<Vec<u8>>,
}

/// WAIT through the proxy: each shard's primary waits for its replicas to reach the offset it
/// has when the WAIT arrives. It is sent once the client's earlier replies are in, so every
/// write the client made before is within that offset, and on the client's private
/// connections, since a shard blocks the connection that waits. The reply is the smallest
/// count; the client's later commands wait for it, as Redis blocks the client.
pub(crate) struct WaitFor {
    /// The reply's sequence number.
    pub seq: u64,
    /// Until it is sent: every shard's primary (one part of the reply each) and the command.
    pub unsent: Option<(Vec<String>, Vec<u8>)>,
}

/// Keys a client watches, on its private connection `backend`.
#[derive(Clone, Copy)]
pub(crate) struct Watch {
    pub backend: usize,
    /// The connection failed since WATCH: the shard forgot the watched keys, so EXEC must not
    /// run the transaction.
    pub lost: bool,
}

/// Where a shard's reply goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum To {
    /// Part `part` of client `key`'s reply number `seq` (`id` tells a reused slab key apart).
    Client {
        key: usize,
        id: u64,
        seq: u64,
        part: u32,
    },
    /// Nobody: ASKING, the MULTI and QUEUED replies of a transaction.
    Discard,
    /// The shard's id for client `key`'s feed to shard number `shard` (`tracking.rs`).
    Feed { key: usize, id: u64, shard: u32 },
    /// The shard's id for client `key`'s private connection `backend` (CLIENT UNBLOCK).
    ShardId { key: usize, id: u64, backend: usize },
    /// The connection's own set-up (AUTH, HELLO): an error is logged.
    Handshake,
}

#[derive(Clone, Copy)]
struct Inflight {
    to: To,
    /// The request's length in the connection's output buffer.
    len: u32,
    redirects: u8,
}

/// A connection to one shard process, shared by every client of the thread.
struct Backend {
    addr: String,
    resp3: bool,
    /// The client a private connection belongs to; none for a shared one.
    owner: Option<usize>,
    /// A (un)subscribe command was sent on this private connection: RESP2 arrays may be
    /// messages.
    pubsub: bool,
    /// The shard's count of this connection's subscriptions, channels and patterns, and
    /// shard channels (from its last confirmations).
    subscriptions: [i64; 2],
    /// A private connection used for one feed only.
    feed: Option<Feed>,
    /// CLIENT TRACKING ON was sent on this private connection.
    tracking: bool,
    stream: Option<TcpStream>,
    connected: bool,
    connect_deadline: Instant,
    /// Requests: `[head, sent)` written and waiting for replies, `[sent, len)` to write.
    out: Vec<u8>,
    head: usize,
    sent: usize,
    inb: Vec<u8>,
    filled: usize,
    scanner: FrameScanner,
    inflight: VecDeque<Inflight>,
    /// Down: commands fail at once until then.
    retry_at: Option<Instant>,
    last_error: String,
    dirty: bool,
}

/// What a private connection used for one thing only brings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// MONITOR was sent: once its `+OK` has come, everything is the shard's feed.
    Monitor,
    /// A RESP3 connection where the shard sends a redirecting tracking client's
    /// invalidations (`tracking.rs`).
    Invalidations,
}

/// A command to send again after `-TRYAGAIN`.
struct Retry {
    at: Instant,
    addr: String,
    resp3: bool,
    owner: Option<usize>,
    to: To,
    redirects: u8,
    req: Vec<u8>,
}

pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    /// This worker's place among the proxy's (its mailbox).
    pub index: usize,
    /// The time at the start of this loop turn.
    pub now: Instant,
    poll: Poll,
    waker: Arc<Waker>,
    listener: TcpListener,
    pub clients: Slab<Client>,
    backends: Slab<Backend>,
    by_addr: HashMap<(String, bool), usize>,
    pub topology: Option<Arc<Topology>>,
    /// The database's users (`acl.rs`), from the same configuration.
    pub acl: Option<Arc<tessera_acl::Acl>>,
    epoch: u64,
    /// Per shard of `topology`: its primary's connection, RESP2 and RESP3.
    routes: Vec<[Option<usize>; 2]>,
    /// Slots a shard said have moved, until the next topology.
    moved: HashMap<u16, String>,
    /// The proxy as cluster-aware clients see it: one node serving every slot.
    pub view: Option<Topology>,
    dirty_clients: Vec<usize>,
    dirty_backends: Vec<usize>,
    resume: Vec<usize>,
    /// Clients whose next command waits for CLIENT PAUSE to end.
    pub held: Vec<usize>,
    retries: Vec<Retry>,
    /// Round robin over the shards for commands any shard can answer.
    next_any: usize,
    /// The read buffer of clients with no partial request (`client_readable`).
    rbuf: Vec<u8>,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        index: usize,
        mut listener: TcpListener,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Worker {
            shared,
            index,
            now: Instant::now(),
            poll,
            waker,
            listener,
            clients: Slab::new(),
            backends: Slab::new(),
            by_addr: HashMap::new(),
            topology: None,
            acl: None,
            epoch: 0,
            routes: Vec::new(),
            moved: HashMap::new(),
            view: None,
            dirty_clients: Vec::new(),
            dirty_backends: Vec::new(),
            resume: Vec::new(),
            held: Vec::new(),
            retries: Vec::new(),
            next_any: 0,
            rbuf: vec![0; READ_CHUNK],
        })
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if !self.resume.is_empty() {
                Duration::ZERO
            } else if !self.retries.is_empty() {
                Duration::from_millis(5)
            } else if !self.held.is_empty() {
                // Awake when the pause ends (CLIENT UNPAUSE wakes every worker).
                let now = Instant::now();
                self.shared
                    .pause(now)
                    .map_or(Duration::ZERO, |p| p.until - now)
                    .min(Duration::from_millis(100))
            } else {
                Duration::from_millis(100)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!("proxy: poll failed: {e}");
                return;
            }
            self.now = Instant::now();
            self.check_topology();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.read_mail(),
                    Token(t) if t >= BACKEND_BASE => {
                        let b = t - BACKEND_BASE;
                        if ev.is_writable() {
                            self.backend_writable(b);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.backend_readable(b);
                        }
                    }
                    Token(t) => {
                        let key = t - CLIENT_BASE;
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.client_readable(key);
                        }
                        if ev.is_writable() {
                            self.mark_client(key);
                        }
                    }
                }
            }
            self.timers();
            self.flush();
        }
    }

    fn check_topology(&mut self) {
        if self.shared.epoch() == self.epoch {
            return;
        }
        let Some(t) = self.shared.topology() else {
            return;
        };
        self.epoch = t.epoch;
        self.routes = vec![[None, None]; t.shards.len()];
        self.moved.clear();
        let port = self.shared.port.get().copied().unwrap_or(t.port);
        self.view = Some(Topology::single_node(
            t.epoch,
            &t.database,
            &self.shared.host,
            port,
        ));
        self.topology = Some(t);
        if let Some(users) = self.shared.users()
            && !self.acl.as_ref().is_some_and(|a| Arc::ptr_eq(a, &users))
        {
            self.take_users(users);
        }
    }

    // ---- clients ----

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let authed = self.open_access();
                    let entry = self.clients.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(CLIENT_BASE + key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!("proxy: cannot register a client: {e}");
                        continue;
                    }
                    let id = self.shared.next_client_id();
                    self.shared.register(id, Some((self.index, key)));
                    entry.insert(Client {
                        id,
                        stream,
                        peer: peer.to_string(),
                        local,
                        created: self.now,
                        active: self.now,
                        cmd: "NULL",
                        lib_name: None,
                        lib_ver: None,
                        inb: Vec::new(),
                        filled: 0,
                        parser: Some(RequestParser::new(Limits::default())),
                        out: Vec::new(),
                        written: 0,
                        queue: VecDeque::new(),
                        head_seq: 0,
                        resp3: false,
                        authed,
                        user: tessera_acl::DEFAULT_USER,
                        user_name: Vec::new(),
                        acl_pending: false,
                        name: None,
                        multi: None,
                        private: Vec::new(),
                        watch: None,
                        subs: None,
                        monitoring: false,
                        tracking: None,
                        caching: false,
                        setup: None,
                        wait: None,
                        reply_off: false,
                        skip_next: false,
                        quiet: false,
                        closing: false,
                        held: false,
                        paused: false,
                        dirty: false,
                    });
                }
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors, most likely: try again on the next event.
                    tracing::warn!("proxy: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads a client's requests and handles them. A client with no partial request left
    /// reads into the worker's buffer, so an idle client holds no buffer of its own (1000
    /// clients do not spread their requests over 1000 buffers); what is left of a partial
    /// request is kept in the client's own.
    fn client_readable(&mut self, key: usize) {
        loop {
            let Some(c) = self.clients.get_mut(key) else {
                return;
            };
            if c.paused || c.closing {
                return;
            }
            let shared = c.filled == 0;
            let mut buf = if shared {
                std::mem::take(&mut self.rbuf)
            } else {
                std::mem::take(&mut c.inb)
            };
            if buf.len() < READ_CHUNK {
                buf.resize(READ_CHUNK, 0);
            } else if c.filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let filled = c.filled;
            let room = buf.len() - filled;
            let n = match c.stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.give_back(key, shared, buf);
                    self.close_client(key);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.give_back(key, shared, buf);
                    continue;
                }
                Err(e) => {
                    self.give_back(key, shared, buf);
                    if !would_block(&e) {
                        self.close_client(key);
                    }
                    return;
                }
            };
            let filled = filled + n;
            let pos = self.handle_input(key, &buf, filled);
            match self.clients.get_mut(key) {
                Some(c) if shared => {
                    // A partial request (or requests held back) stays with the client, in a
                    // buffer it keeps while it is no larger than a read (a client that often
                    // leaves one does not allocate it again each time); a larger one goes.
                    if pos < filled {
                        c.inb.clear();
                        c.inb.extend_from_slice(&buf[pos..filled]);
                        c.inb.resize(c.inb.len().max(READ_CHUNK), 0);
                    } else if c.inb.capacity() > READ_CHUNK {
                        c.inb = Vec::new();
                    }
                    c.filled = filled - pos;
                    self.rbuf = buf;
                }
                Some(c) => {
                    c.inb = buf;
                    c.filled = consume(&mut c.inb, filled, pos);
                }
                None => {
                    if shared {
                        self.rbuf = buf;
                    }
                    return;
                }
            }
            // A short read emptied the socket: the next bytes bring a new event.
            if n < room {
                return;
            }
        }
    }

    /// Puts a read buffer back where [`Worker::client_readable`] took it from.
    fn give_back(&mut self, key: usize, shared: bool, buf: Vec<u8>) {
        if shared {
            self.rbuf = buf;
        } else if let Some(c) = self.clients.get_mut(key) {
            c.inb = buf;
        }
    }

    /// Parses and handles the complete requests in a client's own buffer (after a pause).
    fn process_input(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let inb = std::mem::take(&mut c.inb);
        let filled = c.filled;
        let pos = self.handle_input(key, &inb, filled);
        if let Some(c) = self.clients.get_mut(key) {
            c.inb = inb;
            c.filled = consume(&mut c.inb, filled, pos);
        }
    }

    /// Parses and handles the complete requests in `inb[..filled]`, client `key`'s input;
    /// returns where the unhandled input starts.
    fn handle_input(&mut self, key: usize, inb: &[u8], filled: usize) -> usize {
        let Some(mut parser) = self.clients.get_mut(key).and_then(|c| c.parser.take()) else {
            return 0;
        };
        let mut pos = 0;
        while pos < filled {
            let c = &mut self.clients[key];
            if c.closing || c.setup.is_some() || c.wait.is_some() {
                break;
            }
            if c.queue.len() >= MAX_PENDING || c.out.len() - c.written > MAX_UNREAD {
                c.paused = true;
                break;
            }
            match parser.parse(&inb[pos..filled], c.authed) {
                Ok(Some(n)) => {
                    let raw = &inb[pos..pos + n];
                    let args = parser.args(raw);
                    if self.shared.pausing() && self.held_by_pause(key, &args) {
                        // Read again, from this command, when the pause ends.
                        break;
                    }
                    if !args.is_empty() {
                        self.handle(key, &args, raw);
                    }
                    pos += n;
                }
                Ok(None) => break,
                Err(e) => {
                    self.reply_error(key, &format!("ERR {e}"));
                    self.clients[key].closing = true;
                    break;
                }
            }
        }
        if let Some(c) = self.clients.get_mut(key) {
            c.parser = Some(parser);
        }
        pos
    }

    /// Client `key`'s input is read and handled again at the end of this loop turn.
    pub(crate) fn resume_client(&mut self, key: usize) {
        self.resume.push(key);
    }

    pub(crate) fn mark_client(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty_clients.push(key);
        }
    }

    fn flush_client(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        c.dirty = false;
        while c.written < c.out.len() {
            match c.stream.write(&c.out[c.written..]) {
                Ok(0) => break,
                Ok(n) => c.written += n,
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close_client(key);
                    return;
                }
            }
        }
        if c.paused && c.queue.len() < MAX_PENDING / 2 && c.out.len() - c.written < MAX_UNREAD / 2 {
            c.paused = false;
            self.resume.push(key);
        }
        if c.written == c.out.len() {
            c.out.clear();
            c.written = 0;
            if c.out.capacity() > 1 << 20 {
                c.out.shrink_to(READ_CHUNK);
            }
            if c.closing && c.queue.is_empty() {
                self.close_client(key);
            }
        }
    }

    pub(crate) fn close_client(&mut self, key: usize) {
        if let Some(mut c) = self.clients.try_remove(key) {
            self.shared.register(c.id, None);
            let _ = self.poll.registry().deregister(&mut c.stream);
            // Closing a private connection ends what blocks there and the shard's WATCH.
            for b in c.private {
                if let Some(mut s) = self.backends.try_remove(b).and_then(|be| be.stream) {
                    let _ = self.poll.registry().deregister(&mut s);
                }
            }
        }
    }

    /// Adds a reply the client is owed; returns what a shard's reply to it is addressed to.
    pub(crate) fn expect(&mut self, key: usize, p: Pending) -> (u64, u64) {
        let c = &mut self.clients[key];
        let seq = c.head_seq + c.queue.len() as u64;
        let p = match p {
            Pending::Wait if c.quiet => Pending::Quiet,
            Pending::Gather(mut g) if c.quiet => {
                g.quiet = true;
                Pending::Gather(g)
            }
            p => p,
        };
        c.queue.push_back(p);
        (c.id, seq)
    }

    /// Adds a reply of one shard's (or the proxy's own) the client is owed; returns where it is
    /// addressed.
    pub(crate) fn expect_one(&mut self, key: usize) -> To {
        let (id, seq) = self.expect(key, Pending::Wait);
        To::Client {
            key,
            id,
            seq,
            part: 0,
        }
    }

    /// Adds a reply made of parts the client is owed; returns where part `i` is addressed.
    pub(crate) fn expect_parts(&mut self, key: usize, g: Gather) -> impl Fn(usize) -> To + use<> {
        let (id, seq) = self.expect(key, Pending::Gather(Box::new(g)));
        move |part| To::Client {
            key,
            id,
            seq,
            part: part as u32,
        }
    }

    /// A reply the proxy makes itself, in its place among the client's replies.
    pub(crate) fn reply_with(&mut self, key: usize, f: impl FnOnce(&mut Reply<'_>)) {
        let c = &mut self.clients[key];
        if c.quiet {
            return;
        }
        if c.queue.is_empty() {
            f(&mut Reply::new(&mut c.out, c.resp3));
        } else {
            let mut v = Vec::new();
            f(&mut Reply::new(&mut v, c.resp3));
            c.queue.push_back(Pending::Done(v));
        }
        self.mark_client(key);
    }

    pub(crate) fn reply_error(&mut self, key: usize, text: &str) {
        self.reply_with(key, |r| r.error(text));
    }

    /// A message (or another push) from one of the client's private connections: after the
    /// replies the client is owed. A client that leaves too many unread is disconnected.
    pub(crate) fn push_to(&mut self, key: usize, frame: &[u8]) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let queued: usize = c
            .queue
            .iter()
            .map(|p| match p {
                Pending::Done(v) => v.len(),
                _ => 0,
            })
            .sum();
        if c.out.len() - c.written + queued > PUBSUB_UNREAD_LIMIT {
            tracing::warn!(
                "proxy: client {} left more than {PUBSUB_UNREAD_LIMIT} bytes of messages unread; disconnecting it",
                c.id
            );
            self.close_client(key);
            return;
        }
        if c.queue.is_empty() {
            c.out.extend_from_slice(frame);
        } else {
            c.queue.push_back(Pending::Done(frame.to_vec()));
        }
        self.mark_client(key);
    }

    /// Hands a shard's reply (or an error made for it) to whoever it is for.
    pub(crate) fn deliver(&mut self, to: To, frame: &[u8]) {
        let (key, id, seq, part) = match to {
            To::Client { key, id, seq, part } => (key, id, seq, part),
            To::Discard => return,
            To::Feed { key, id, shard } => return self.feed_id(key, id, shard as usize, frame),
            To::ShardId { key, id, backend } => {
                if let (Some(sid), Some(c), Some(be)) = (
                    frame::integer(frame),
                    self.clients.get(key),
                    self.backends.get(backend),
                ) && c.id == id
                {
                    self.shared
                        .note_shard_id(id, backend, &be.addr, Some(sid as u64));
                }
                return;
            }
            To::Handshake => {
                if frame::is_error(frame) {
                    tracing::warn!(
                        "proxy: a shard refused the connection's set-up: {}",
                        String::from_utf8_lossy(frame).trim_end()
                    );
                }
                return;
            }
        };
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        if c.id != id || seq < c.head_seq {
            return;
        }
        let idx = (seq - c.head_seq) as usize;
        let Some(p) = c.queue.get_mut(idx) else {
            return;
        };
        match p {
            Pending::Wait if idx == 0 => c.out.extend_from_slice(frame),
            Pending::Wait => {
                *p = Pending::Done(frame.to_vec());
                return;
            }
            Pending::Quiet if idx == 0 => {}
            Pending::Quiet => {
                *p = Pending::Done(Vec::new());
                return;
            }
            Pending::Gather(g) => {
                if !g.add(part, frame) {
                    return;
                }
                let merged = g.finish();
                // CLIENT TRACKING ON refused: the shards keep the mode the client had.
                if let Some(before) = g.tracking_before.take()
                    && frame::is_error(&merged)
                {
                    c.tracking = before;
                }
                let merged = if g.quiet { Vec::new() } else { merged };
                if idx > 0 {
                    *p = Pending::Done(merged);
                    return;
                }
                c.out.extend_from_slice(&merged);
            }
            Pending::Done(_) => return,
        }
        // The head of the queue was answered: it and the ready replies after it go out.
        c.queue.pop_front();
        c.head_seq += 1;
        while let Some(Pending::Done(_)) = c.queue.front() {
            if let Some(Pending::Done(r)) = c.queue.pop_front() {
                c.out.extend_from_slice(&r);
            }
            c.head_seq += 1;
        }
        let waiting = c.wait.is_some();
        self.mark_client(key);
        if waiting {
            self.wait_step(key);
        }
    }

    /// Moves client `key`'s WAIT on: sent once it heads the client's replies, done (and the
    /// client's input read again) once answered.
    pub(crate) fn wait_step(&mut self, key: usize) {
        let c = &mut self.clients[key];
        let Some(w) = c.wait.as_mut() else {
            return;
        };
        if w.seq < c.head_seq {
            c.wait = None;
            self.resume_client(key);
            return;
        }
        if w.seq != c.head_seq {
            return;
        }
        let Some((addrs, request)) = w.unsent.take() else {
            return;
        };
        let (id, seq) = (c.id, w.seq);
        for (part, addr) in addrs.iter().enumerate() {
            let to = To::Client {
                key,
                id,
                seq,
                part: part as u32,
            };
            match self.private_backend(key, addr) {
                Ok(b) => self.send(b, to, 0, |o| o.extend_from_slice(&request)),
                Err(e) => self.deliver(to, format!("-{e}\r\n").as_bytes()),
            }
        }
    }

    // ---- shard connections ----

    /// The connection of this thread to the process at `addr`, made on first use.
    fn backend_at(&mut self, addr: &str, resp3: bool) -> usize {
        if let Some(&b) = self.by_addr.get(&(addr.to_string(), resp3)) {
            return b;
        }
        let b = self.new_backend(addr, resp3, None);
        self.by_addr.insert((addr.to_string(), resp3), b);
        b
    }

    /// Client `key`'s private connection to the process at `addr`, made on first use.
    pub(crate) fn private_backend(&mut self, key: usize, addr: &str) -> Result<usize, String> {
        let resp3 = self.clients[key].resp3;
        let found = self.clients[key].private.iter().copied().find(|&b| {
            let be = &self.backends[b];
            be.addr == addr && be.resp3 == resp3 && be.feed.is_none()
        });
        let b = match found {
            Some(b) => b,
            None => {
                let b = self.new_backend(addr, resp3, Some(key));
                self.clients[key].private.push(b);
                b
            }
        };
        self.ensure_connected(b)?;
        Ok(b)
    }

    /// A new private connection of client `key` to `addr`, used for `feed` only.
    pub(crate) fn feed_backend(
        &mut self,
        key: usize,
        addr: &str,
        feed: Feed,
    ) -> Result<usize, String> {
        let resp3 = feed == Feed::Invalidations || self.clients[key].resp3;
        let b = self.new_backend(addr, resp3, Some(key));
        self.backends[b].feed = Some(feed);
        self.clients[key].private.push(b);
        match self.ensure_connected(b) {
            Ok(()) => Ok(b),
            Err(e) => {
                self.drop_private(key, b);
                Err(e)
            }
        }
    }

    /// Client `key`'s connections used for `feed`.
    pub(crate) fn feed_backends(&self, key: usize, feed: Feed) -> Vec<usize> {
        self.clients[key]
            .private
            .iter()
            .copied()
            .filter(|&b| self.backends[b].feed == Some(feed))
            .collect()
    }

    /// Client `key`'s private connections where CLIENT TRACKING ON was sent, and that are
    /// connected or connecting.
    pub(crate) fn tracking_backends(&self, key: usize) -> Vec<usize> {
        self.clients[key]
            .private
            .iter()
            .copied()
            .filter(|&b| self.backends[b].tracking && self.backends[b].stream.is_some())
            .collect()
    }

    /// Records whether CLIENT TRACKING ON is in force on connection `b`.
    pub(crate) fn set_tracking(&mut self, b: usize, on: bool) {
        self.backends[b].tracking = on;
    }

    /// Closes private connection `b` of client `key`; what was in flight on it gets an error.
    pub(crate) fn drop_private(&mut self, key: usize, b: usize) {
        // Closed on purpose: not a lost feed that would close the client.
        self.backends[b].feed = None;
        if !self.backends[b].inflight.is_empty() {
            self.fail_backend(b, "closed by the client");
        }
        if let Some(mut s) = self.backends.try_remove(b).and_then(|be| be.stream) {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let c = &mut self.clients[key];
        c.private.retain(|&p| p != b);
        self.shared.note_shard_id(c.id, b, "", None);
    }

    /// The address of the primary serving `slot`.
    pub(crate) fn slot_addr(&self, slot: u16) -> Result<String, String> {
        if let Some(addr) = self.moved.get(&slot) {
            return Ok(addr.clone());
        }
        let shard = self.slot_owner(slot)?;
        let t = self.topology.as_ref().expect("a topology owns the slot");
        Ok(t.shards[shard].primary.addr())
    }

    /// The index of the shard the topology says serves `slot`.
    fn slot_owner(&self, slot: u16) -> Result<usize, &'static str> {
        self.topology
            .as_ref()
            .ok_or("CLUSTERDOWN The cluster is down")?
            .owner_index(slot)
            .ok_or("CLUSTERDOWN Hash slot not served")
    }

    /// The address of connection `b`.
    pub(crate) fn backend_addr(&self, b: usize) -> &str {
        &self.backends[b].addr
    }

    fn new_backend(&mut self, addr: &str, resp3: bool, owner: Option<usize>) -> usize {
        self.backends.insert(Backend {
            addr: addr.to_string(),
            resp3,
            owner,
            pubsub: false,
            subscriptions: [0; 2],
            feed: None,
            tracking: false,
            stream: None,
            connected: false,
            connect_deadline: Instant::now(),
            out: Vec::new(),
            head: 0,
            sent: 0,
            inb: vec![0; READ_CHUNK],
            filled: 0,
            scanner: FrameScanner::new(),
            inflight: VecDeque::new(),
            retry_at: None,
            last_error: String::new(),
            dirty: false,
        })
    }

    /// Connects `b` if it is not connected: `Err` with the reason when it is down.
    fn ensure_connected(&mut self, b: usize) -> Result<(), String> {
        let be = &mut self.backends[b];
        if be.stream.is_some() {
            return Ok(());
        }
        if let Some(at) = be.retry_at
            && Instant::now() < at
        {
            return Err(be.last_error.clone());
        }
        let addr = be.addr.clone();
        let resolved = addr
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| addr.to_socket_addrs().ok().and_then(|mut a| a.next()));
        let connected = match resolved {
            Some(sa) => TcpStream::connect(sa).and_then(|mut s| {
                self.poll.registry().register(
                    &mut s,
                    Token(BACKEND_BASE + b),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(s)
            }),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "cannot resolve the address",
            )),
        };
        let be = &mut self.backends[b];
        match connected {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                be.stream = Some(s);
                be.connected = false;
                be.connect_deadline = Instant::now() + CONNECT_TIMEOUT;
                be.retry_at = None;
            }
            Err(e) => {
                be.retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
                be.last_error = format!("ERR proxy: shard {addr} is unreachable ({e})");
                return Err(be.last_error.clone());
            }
        }
        // The shard lets the proxy in whatever the database's users say.
        let secret = Arc::clone(&self.shared);
        self.send(b, To::Handshake, 0, |o| {
            let user = tessera_acl::internal::Internal::Proxy.name();
            write_command(
                o,
                &[b"AUTH", user.as_bytes(), secret.internal_secret.as_bytes()],
            );
        });
        if self.backends[b].resp3 {
            self.send(b, To::Handshake, 0, |o| write_command(o, &[b"HELLO", b"3"]));
        }
        // The shard's id for a client's own connection, for CLIENT UNBLOCK.
        let be = &self.backends[b];
        if be.feed.is_none()
            && let Some(owner) = be.owner
            && let Some(c) = self.clients.get(owner)
        {
            let to = To::ShardId {
                key: owner,
                id: c.id,
                backend: b,
            };
            self.send(b, to, 0, |o| write_command(o, &[b"CLIENT", b"ID"]));
        }
        // A tracking client's new connection tracks what it reads from the start.
        let be = &self.backends[b];
        if be.feed.is_none()
            && let Some(owner) = be.owner
            && let Some(t) = self.clients.get(owner).and_then(|c| c.tracking.as_ref())
        {
            match t.command_for(&be.addr) {
                Some(command) => {
                    self.backends[b].tracking = true;
                    self.send(b, To::Handshake, 0, |o| o.extend_from_slice(&command));
                }
                None => {
                    // No feed at that address for its invalidations: the client goes, as
                    // when a tracking connection is lost.
                    tracing::warn!(
                        "proxy: a client tracking with REDIRECT needs a connection to {}, where it has no feed; disconnecting it",
                        be.addr
                    );
                    self.clients[owner].closing = true;
                    self.mark_client(owner);
                }
            }
        }
        Ok(())
    }

    /// The connection to the primary of shard `shard` (an index into the topology).
    pub(crate) fn shard_backend(&mut self, shard: usize, resp3: bool) -> Result<usize, String> {
        let cached = self
            .routes
            .get(shard)
            .ok_or("CLUSTERDOWN The cluster is down")?[usize::from(resp3)];
        let b = match cached {
            Some(b) => b,
            None => {
                let addr = self
                    .topology
                    .as_ref()
                    .ok_or("CLUSTERDOWN The cluster is down")?
                    .shards[shard]
                    .primary
                    .addr();
                let b = self.backend_at(&addr, resp3);
                self.routes[shard][usize::from(resp3)] = Some(b);
                b
            }
        };
        self.ensure_connected(b)?;
        Ok(b)
    }

    /// The connection for client `key`'s command to the primary serving `slot`: a tracking
    /// client's own (the shard remembers the keys each connection read), else the thread's
    /// shared one.
    pub(crate) fn client_slot_backend(&mut self, key: usize, slot: u16) -> Result<usize, String> {
        let c = &self.clients[key];
        if c.tracking.is_none() {
            return self.slot_backend(slot, c.resp3);
        }
        let addr = self.slot_addr(slot)?;
        self.command_backend(key, &addr)
    }

    /// The connection for client `key`'s command to the primary of shard `shard`, as
    /// `client_slot_backend` chooses.
    pub(crate) fn client_shard_backend(
        &mut self,
        key: usize,
        shard: usize,
    ) -> Result<usize, String> {
        let c = &self.clients[key];
        if c.tracking.is_none() {
            return self.shard_backend(shard, c.resp3);
        }
        let addr = self
            .topology
            .as_ref()
            .and_then(|t| t.shards.get(shard))
            .ok_or("CLUSTERDOWN The cluster is down")?
            .primary
            .addr();
        self.command_backend(key, &addr)
    }

    /// Client `key`'s private connection to `addr` for its next command, with the client's
    /// CLIENT CACHING sent first when it gave one for it.
    pub(crate) fn command_backend(&mut self, key: usize, addr: &str) -> Result<usize, String> {
        let b = self.private_backend(key, addr)?;
        self.send_caching(key, b);
        Ok(b)
    }

    /// Sends client `key`'s CLIENT CACHING on its connection `b`, if it gave one, before the
    /// command it applies to. Not before a CLIENT command: the shard would keep the flag past
    /// it, for a command on that connection the client did not give it for.
    pub(crate) fn send_caching(&mut self, key: usize, b: usize) {
        let c = &self.clients[key];
        if c.caching
            && !c.cmd.starts_with("client|")
            && self.backends[b].tracking
            && let Some(t) = &c.tracking
        {
            let word: &[u8] = if t.optin { b"yes" } else { b"no" };
            self.send(b, To::Discard, 0, |o| {
                write_command(o, &[b"CLIENT", b"CACHING", word])
            });
        }
    }

    /// The connection to the primary serving `slot`.
    pub(crate) fn slot_backend(&mut self, slot: u16, resp3: bool) -> Result<usize, String> {
        if !self.moved.is_empty()
            && let Some(addr) = self.moved.get(&slot).cloned()
        {
            return self.addr_backend(&addr, resp3);
        }
        let shard = self.slot_owner(slot)?;
        self.shard_backend(shard, resp3)
    }

    /// The thread's shared connection to the process at `addr`, connected.
    pub(crate) fn addr_backend(&mut self, addr: &str, resp3: bool) -> Result<usize, String> {
        let b = self.backend_at(addr, resp3);
        self.ensure_connected(b)?;
        Ok(b)
    }

    /// The address of every shard's primary.
    pub(crate) fn primary_addrs(&self) -> Result<Vec<String>, &'static str> {
        let shards = self.shard_count()?;
        let t = self.topology.as_ref().expect("shards have a topology");
        Ok(t.shards[..shards]
            .iter()
            .map(|s| s.primary.addr())
            .collect())
    }

    /// The number of shards, or the error for a cluster without a configuration yet.
    pub(crate) fn shard_count(&self) -> Result<usize, &'static str> {
        match &self.topology {
            Some(t) if !t.shards.is_empty() => Ok(t.shards.len()),
            _ => Err("CLUSTERDOWN The cluster is down"),
        }
    }

    /// A shard for commands any shard answers, in turn.
    pub(crate) fn any_shard(&mut self) -> Result<usize, &'static str> {
        let n = self.shard_count()?;
        self.next_any = (self.next_any + 1) % n;
        Ok(self.next_any)
    }

    /// Queues a (un)subscribe command on private connection `b`.
    pub(crate) fn send_subscription(&mut self, b: usize, to: To, write: impl FnOnce(&mut Vec<u8>)) {
        self.backends[b].pubsub = true;
        self.send(b, to, 0, write);
    }

    /// Queues a request on connection `b`; `write` appends its bytes.
    pub(crate) fn send(
        &mut self,
        b: usize,
        to: To,
        redirects: u8,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let be = &mut self.backends[b];
        let before = be.out.len();
        write(&mut be.out);
        let len = (be.out.len() - before) as u32;
        be.inflight.push_back(Inflight { to, len, redirects });
        if !be.dirty {
            be.dirty = true;
            self.dirty_backends.push(b);
        }
    }

    fn backend_writable(&mut self, b: usize) {
        let Some(be) = self.backends.get_mut(b) else {
            return;
        };
        let Some(stream) = &be.stream else {
            return;
        };
        if !be.connected {
            if let Ok(Some(e)) | Err(e) = stream.take_error() {
                self.fail_backend(b, &e.to_string());
                return;
            }
            match stream.peer_addr() {
                Ok(_) => be.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.fail_backend(b, &e.to_string());
                    return;
                }
            }
        }
        self.flush_backend(b);
    }

    fn flush_backend(&mut self, b: usize) {
        // A client's private connection goes with the client, maybe in the turn it was used.
        let Some(be) = self.backends.get_mut(b) else {
            return;
        };
        be.dirty = false;
        if !be.connected {
            return;
        }
        let Some(stream) = &mut be.stream else {
            return;
        };
        let mut failed = None;
        while be.sent < be.out.len() {
            match stream.write(&be.out[be.sent..]) {
                Ok(0) => break,
                Ok(n) => be.sent += n,
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(why) = failed {
            self.fail_backend(b, &why);
        }
    }

    fn backend_readable(&mut self, b: usize) {
        loop {
            let Some(be) = self.backends.get_mut(b) else {
                return;
            };
            let Some(stream) = &mut be.stream else {
                return;
            };
            if be.filled == be.inb.len() {
                let len = be.inb.len() * 2;
                be.inb.resize(len, 0);
            }
            let room = be.inb.len() - be.filled;
            match stream.read(&mut be.inb[be.filled..]) {
                Ok(0) => {
                    self.fail_backend(b, "the shard closed the connection");
                    return;
                }
                Ok(n) => {
                    be.filled += n;
                    if !self.process_replies(b) || n < room {
                        return;
                    }
                }
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail_backend(b, &e.to_string());
                    return;
                }
            }
        }
    }

    /// Hands out the complete replies in `b`'s input; false when the connection failed.
    fn process_replies(&mut self, b: usize) -> bool {
        let be = &mut self.backends[b];
        let inb = std::mem::take(&mut be.inb);
        let filled = be.filled;
        let mut pos = 0;
        let mut ok = true;
        while pos < filled {
            match self.backends[b].scanner.scan(&inb[pos..filled]) {
                Ok(Some(n)) => {
                    let reply = &inb[pos..pos + n];
                    pos += n;
                    if !self.on_reply(b, reply) {
                        ok = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.backends[b].inb = inb;
                    self.fail_backend(b, &e.to_string());
                    return false;
                }
            }
        }
        let be = &mut self.backends[b];
        be.inb = inb;
        if !ok {
            return false;
        }
        be.filled = consume(&mut be.inb, filled, pos);
        true
    }

    /// One reply from `b`: the answer to its oldest request in flight.
    fn on_reply(&mut self, b: usize, reply: &[u8]) -> bool {
        let be = &mut self.backends[b];
        if be.feed == Some(Feed::Monitor) && be.inflight.is_empty() {
            if let Some(owner) = be.owner {
                self.push_to(owner, reply);
            }
            return true;
        }
        if be.feed == Some(Feed::Invalidations) && reply.first() == Some(&b'>') {
            if let Some(owner) = be.owner {
                self.redirect_invalidation(owner, reply);
            }
            return true;
        }
        let push = reply.first() == Some(&b'>');
        if push || (be.pubsub && reply.first() == Some(&b'*')) {
            let Some(owner) = be.owner else {
                // A push on a shared connection (nothing subscribes on one): not a reply.
                return true;
            };
            match push_kind(reply) {
                // RESP2: an array is a message only while the connection has subscriptions
                // (then nothing else can come: a subscribed RESP2 client runs no other command).
                PushKind::Message(family, name) if push || be.subscriptions != [0, 0] => {
                    let wanted = self
                        .clients
                        .get(owner)
                        .is_some_and(|c| c.subs.as_ref().is_some_and(|s| s.wants(b, family, name)));
                    if wanted {
                        self.push_to(owner, reply);
                    }
                    return true;
                }
                PushKind::Confirm(family, count, left) => {
                    be.subscriptions
                        [usize::from(family == tessera_protocol::clients::Family::Shard)] = count;
                    if let Some(name) = left
                        && let Some(c) = self.clients.get_mut(owner)
                        && c.subs.as_mut().is_some_and(|s| s.left(b, family, name))
                    {
                        c.subs = None;
                    }
                }
                _ if push => {
                    self.push_to(owner, reply);
                    return true;
                }
                _ => {}
            }
        }
        let be = &mut self.backends[b];
        let Some(inf) = be.inflight.pop_front() else {
            self.fail_backend(b, "a reply to no request");
            return false;
        };
        let start = be.head;
        be.head += inf.len as usize;
        let redirect = matches!(inf.to, To::Client { .. })
            && inf.redirects < MAX_REDIRECTS
            && (reply.starts_with(b"-MOVED ")
                || reply.starts_with(b"-ASK ")
                || reply.starts_with(b"-TRYAGAIN"));
        let req = redirect.then(|| be.out[start..be.head].to_vec());
        if be.head == be.out.len() {
            be.out.clear();
            be.head = 0;
            be.sent = 0;
        } else if be.head > 64 * 1024 && be.head * 2 > be.out.len() {
            be.out.drain(..be.head);
            be.sent -= be.head;
            be.head = 0;
        }
        match req {
            Some(req) => self.redirect(b, inf, reply, req),
            None => self.deliver(inf.to, reply),
        }
        true
    }

    /// Follows a `-MOVED`, `-ASK` or `-TRYAGAIN` reply to `req`.
    fn redirect(&mut self, b: usize, inf: Inflight, reply: &[u8], req: Vec<u8>) {
        let resp3 = self.backends[b].resp3;
        let text = String::from_utf8_lossy(&reply[1..reply.len() - 2]).into_owned();
        let mut words = text.split(' ');
        let kind = words.next().unwrap_or_default();
        if kind == "TRYAGAIN" {
            self.retries.push(Retry {
                at: Instant::now() + TRYAGAIN_DELAY,
                addr: self.backends[b].addr.clone(),
                resp3,
                owner: self.backends[b].owner,
                to: inf.to,
                redirects: inf.redirects + 1,
                req,
            });
            return;
        }
        let (Some(slot), Some(addr)) = (
            words.next().and_then(|s| s.parse::<u16>().ok()),
            words.next(),
        ) else {
            self.deliver(inf.to, reply);
            return;
        };
        let asking = kind == "ASK";
        if !asking {
            if self.moved.len() > 16384 {
                self.moved.clear();
            }
            self.moved.insert(slot, addr.to_string());
        }
        let owner = self.backends[b].owner;
        self.resend(addr, resp3, owner, inf.to, inf.redirects + 1, &req, asking);
    }

    /// Sends a redirected request to `addr`: on the owner's private connection when it came
    /// from one (a blocking command must not wait on a shared connection).
    #[allow(clippy::too_many_arguments)]
    fn resend(
        &mut self,
        addr: &str,
        resp3: bool,
        owner: Option<usize>,
        to: To,
        redirects: u8,
        req: &[u8],
        asking: bool,
    ) {
        let b = match owner {
            Some(key) if self.clients.contains(key) => self.private_backend(key, addr),
            Some(_) => return,
            None => {
                let b = self.backend_at(addr, resp3);
                self.ensure_connected(b).map(|()| b)
            }
        };
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                self.deliver(to, format!("-{e}\r\n").as_bytes());
                return;
            }
        };
        if asking {
            self.send(b, To::Discard, 0, |o| write_command(o, &[b"ASKING"]));
        }
        self.send(b, to, redirects, |o| o.extend_from_slice(req));
    }

    /// Drops connection `b`: every command in flight on it gets an error (never a guess at
    /// its reply), and new commands fail until a new connection can be made.
    fn fail_backend(&mut self, b: usize, why: &str) {
        let be = &mut self.backends[b];
        if let Some(mut s) = be.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        tracing::warn!("proxy: connection to shard {} failed: {why}", be.addr);
        if let Some(key) = be.owner
            && let Some(c) = self.clients.get_mut(key)
            && let Some(w) = &mut c.watch
            && w.backend == b
        {
            w.lost = true;
        }
        // Its subscriptions are gone with the connection: the client goes too (once it has
        // what it is owed), so that its client library subscribes again.
        if let Some(key) = self.backends[b].owner
            && let Some(c) = self.clients.get_mut(key)
            && (c.subs.as_ref().is_some_and(|s| s.uses(b))
                || self.backends[b].feed == Some(Feed::Monitor)
                // The shard forgot the keys the client read, or where to tell it: the client
                // must drop its cache.
                || ((self.backends[b].tracking
                    || self.backends[b].feed == Some(Feed::Invalidations))
                    && c.tracking.is_some()))
        {
            c.closing = true;
            self.mark_client(key);
        }
        let be = &mut self.backends[b];
        be.pubsub = false;
        be.subscriptions = [0; 2];
        be.tracking = false;
        // A connection that was up (the shard closed it, or a timeout did) is made again by
        // the next command; one that could not be made waits before the next try.
        be.retry_at = (!be.connected).then(|| Instant::now() + RECONNECT_BACKOFF);
        be.connected = false;
        be.last_error = format!("ERR proxy: shard {} is unreachable ({why})", be.addr);
        let inflight = std::mem::take(&mut be.inflight);
        let addr = be.addr.clone();
        let mut offset = be.head;
        let sent = be.sent;
        be.out.clear();
        be.head = 0;
        be.sent = 0;
        be.filled = 0;
        be.scanner = FrameScanner::new();
        for inf in inflight {
            let text = if offset < sent {
                format!(
                    "-ERR proxy: lost the connection to shard {addr} ({why}); the command may or may not have run\r\n"
                )
            } else {
                format!(
                    "-ERR proxy: shard {addr} is unreachable ({why}); the command was not run\r\n"
                )
            };
            offset += inf.len as usize;
            self.deliver(inf.to, text.as_bytes());
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if !self.held.is_empty() && self.shared.pause(now).is_none() {
            for key in std::mem::take(&mut self.held) {
                if let Some(c) = self.clients.get_mut(key) {
                    c.held = false;
                    self.resume.push(key);
                }
            }
        }
        let late: Vec<usize> = self
            .backends
            .iter()
            .filter(|(_, be)| be.stream.is_some() && !be.connected && now > be.connect_deadline)
            .map(|(b, _)| b)
            .collect();
        for b in late {
            self.fail_backend(b, "connection timed out");
        }
        if self.retries.iter().any(|r| r.at <= now) {
            let (due, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries)
                .into_iter()
                .partition(|r| r.at <= now);
            self.retries = later;
            for r in due {
                self.resend(&r.addr, r.resp3, r.owner, r.to, r.redirects, &r.req, false);
            }
        }
    }

    /// The end of a loop turn: clients that may read again are read, then every connection
    /// with something queued is written, shards first.
    fn flush(&mut self) {
        while let Some(key) = self.resume.pop() {
            self.process_input(key);
            self.client_readable(key);
        }
        let mut list = std::mem::take(&mut self.dirty_backends);
        for &b in &list {
            self.flush_backend(b);
        }
        list.clear();
        self.dirty_backends = list;
        let mut list = std::mem::take(&mut self.dirty_clients);
        for &key in &list {
            self.flush_client(key);
        }
        list.clear();
        if self.dirty_clients.is_empty() {
            self.dirty_clients = list;
        }
    }
}

/// Drops the `pos` bytes handled from a read buffer holding `filled`; returns what is left. A
/// buffer grown for one big request or reply shrinks back once it is empty.
fn consume(buf: &mut Vec<u8>, filled: usize, pos: usize) -> usize {
    if pos > 0 {
        buf.copy_within(pos..filled, 0);
    }
    let left = filled - pos;
    if left == 0 && buf.len() > 4 * READ_CHUNK {
        buf.truncate(READ_CHUNK);
        buf.shrink_to_fit();
    }
    left
}

/// Appends a command in RESP (an array of bulk strings).
pub(crate) fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    write_header(out, b'*', args.len());
    for a in args {
        write_bulk(out, a);
    }
}

pub(crate) fn write_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn write_bulk(out: &mut Vec<u8>, a: &[u8]) {
    write_header(out, b'$', a.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}
