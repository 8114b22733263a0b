//! [`Client`]: one connection's state.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use tessera_protocol::{Limits, RequestParser};

/// `CLIENT REPLY` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Skip the reply of the next command only.
    Skip,
    /// Set by `CLIENT REPLY SKIP`: becomes `Skip` once that command has run.
    SkipNext,
}

/// The connection's buffers: taken out of the client while its input is processed, so command
/// handlers can borrow the rest of the server freely.
pub struct Io {
    /// Read buffer: `buf[start..end]` holds bytes read and not yet consumed, starting at a
    /// request boundary; `buf` is kept zero-initialised up to its length, so reads need no
    /// memset.
    pub buf: Vec<u8>,
    pub start: usize,
    pub end: usize,
    pub parser: RequestParser,
    /// Replies not yet written; `out[out_pos..]` is pending.
    pub out: Vec<u8>,
    pub out_pos: usize,
}

/// One client connection.
pub struct Client {
    pub id: u64,
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub laddr: Option<SocketAddr>,
    /// `None` while the buffers are lent out to the command being processed.
    pub io: Option<Box<Io>>,
    pub resp3: bool,
    pub authenticated: bool,
    /// The ACL user the connection runs as (the default user until AUTH).
    pub user: crate::acl::UserId,
    /// A cluster's internal connection (user `INTERNAL_USER`) and its role.
    pub internal: Option<crate::acl::internal::Internal>,
    /// Client-side caching mode, when tracking is on.
    pub tracking: Option<crate::tracking::ClientTracking>,
    pub name: Option<Vec<u8>>,
    pub lib_name: Option<Vec<u8>>,
    pub lib_ver: Option<Vec<u8>>,
    pub reply_mode: ReplyMode,
    pub no_evict: bool,
    pub no_touch: bool,
    pub monitor: bool,
    /// Close once the pending output is written (QUIT, protocol errors, CLIENT KILL of self).
    pub close_after_reply: bool,
    /// Close as soon as possible, pending output or not.
    pub close_asap: bool,
    /// Stopped by CLIENT PAUSE with a command waiting in its buffer.
    pub paused: bool,
    /// Not read from while its unwritten output is above the backpressure threshold.
    pub output_blocked: bool,
    /// Waiting in a blocking command (BLPOP ...).
    pub blocked: Option<crate::blocking::Blocked>,
    /// Inside MULTI: the queued commands.
    pub multi: Option<crate::commands::transactions::MultiState>,
    /// Keys this client WATCHes.
    pub watched: Vec<Vec<u8>>,
    /// A watched key was modified: EXEC will fail.
    pub dirty_cas: bool,
    /// Subscribed channels, patterns and shard channels, in subscription order.
    pub subscriptions: Vec<Vec<u8>>,
    pub psubscriptions: Vec<Vec<u8>>,
    pub ssubscriptions: Vec<Vec<u8>>,
    /// Since when the output has been above the soft output buffer limit.
    pub soft_limit_since: Option<Instant>,
    /// True while the socket is registered for writable events.
    pub want_write: bool,
    /// True while on the server's pending-write list.
    pub pending_write: bool,
    /// `appendfsync always`: the effect stream offset that must be durable before the
    /// pending output may be written.
    pub wait_offset: u64,
    pub created: Instant,
    pub last_interaction: Instant,
    /// Name of the last command run (`cmd=` in CLIENT LIST).
    pub last_cmd: &'static str,
    pub is_local: bool,
    /// The link to this shard's primary: its commands are the replication stream.
    pub is_master: bool,
    /// READONLY (cluster mode): reads of this shard's slots are served on a replica.
    pub readonly: bool,
    /// ASKING (cluster mode): the next command may use a slot being imported.
    pub asking: bool,
    /// Set by REPLCONF, PSYNC or SYNC: the client is (becoming) a replica.
    pub replica: Option<Box<crate::repl::primary::ReplicaState>>,
    /// Waiting in WAIT.
    pub wait_acks: Option<crate::repl::primary::WaitAcks>,
    /// Waiting for the control group's answer to its ACL SETUSER or DELUSER (cluster mode);
    /// true when the answer is to be dropped (CLIENT REPLY OFF or SKIP).
    pub users_change: Option<bool>,
}

impl Client {
    /// True when the reply being written now is dropped (CLIENT REPLY OFF, or SKIP for this
    /// command); moves SKIP on, as Redis's `resetClient`.
    pub fn muted(&mut self) -> bool {
        match self.reply_mode {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::Skip => {
                self.reply_mode = ReplyMode::On;
                true
            }
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::Skip;
                true
            }
        }
    }

    /// A new client for an accepted connection.
    pub fn new(id: u64, stream: TcpStream, addr: SocketAddr, limits: Limits, auth: bool) -> Self {
        let laddr = stream.local_addr().ok();
        let now = Instant::now();
        Client {
            id,
            stream,
            addr,
            laddr,
            io: Some(Box::new(Io {
                buf: Vec::new(),
                start: 0,
                end: 0,
                parser: RequestParser::new(limits),
                out: Vec::new(),
                out_pos: 0,
            })),
            resp3: false,
            authenticated: auth,
            user: crate::acl::DEFAULT_USER,
            internal: None,
            tracking: None,
            name: None,
            lib_name: None,
            lib_ver: None,
            reply_mode: ReplyMode::On,
            no_evict: false,
            no_touch: false,
            monitor: false,
            close_after_reply: false,
            close_asap: false,
            paused: false,
            output_blocked: false,
            blocked: None,
            multi: None,
            watched: Vec::new(),
            dirty_cas: false,
            subscriptions: Vec::new(),
            psubscriptions: Vec::new(),
            ssubscriptions: Vec::new(),
            soft_limit_since: None,
            want_write: false,
            pending_write: false,
            wait_offset: 0,
            created: now,
            last_interaction: now,
            last_cmd: "NULL",
            is_local: addr.ip().is_loopback(),
            is_master: false,
            readonly: false,
            asking: false,
            replica: None,
            wait_acks: None,
            users_change: None,
        }
    }

    /// True with any subscription (Redis's `CLIENT_PUBSUB`).
    pub fn in_pubsub(&self) -> bool {
        !self.subscriptions.is_empty()
            || !self.psubscriptions.is_empty()
            || !self.ssubscriptions.is_empty()
    }

    /// Bytes of output not yet written.
    pub fn pending_output(&self) -> usize {
        self.io.as_ref().map_or(0, |io| io.out.len() - io.out_pos)
    }
}
