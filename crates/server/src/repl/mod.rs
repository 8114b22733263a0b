//! Replication with Redis's own protocol (issue 5): a real `redis-server` can replicate from a
//! Tessera shard and the other way round.
//!
//! - **Primary side** (`primary.rs`): a client that sends `PSYNC` (or `SYNC`) becomes a replica.
//!   `+CONTINUE` streams the effect stream from the backlog (`backlog.rs`); `+FULLRESYNC`
//!   streams an RDB payload in Redis's diskless EOF-marker format, produced a slice per turn by
//!   the same copy-on-write snapshot as the checkpoints (no fork, no file), then the stream from
//!   the snapshot's offset. WAIT counts real `REPLCONF ACK` offsets.
//! - **Replica side** (`replica.rs`): REPLICAOF starts a sync thread that connects, runs the
//!   handshake (`handshake.rs`, a state machine without I/O) and loads an RDB payload into a
//!   new keyspace while the old one keeps serving; the loop swaps them and applies the
//!   primary's stream from then on, feeding the same bytes to its own effect stream (log,
//!   backlog, chained replicas) so offsets match the primary's.
//!
//! Replication IDs follow psync2: `replid` names the history this shard's stream belongs to,
//! `replid2` the one it had before its last promotion, valid up to `second_offset`, so replicas
//! of the old primary continue with a promoted sibling.

pub mod backlog;
pub mod handshake;
pub mod primary;
pub mod replica;

use std::time::Instant;

use backlog::Backlog;

/// A new random replication ID (40 hex characters).
pub fn new_replid() -> String {
    (0..40)
        .map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("digit below 16"))
        .collect()
}

/// The replication state of the shard.
pub struct Repl {
    /// The ID of the history of the effect stream (`master_replid`).
    pub replid: String,
    /// The previous ID (`master_replid2`) and the first position not in it (Redis's
    /// `second_repl_offset` is that plus one); `None` when there is none.
    pub replid2: Option<(String, u64)>,
    /// Created when the first replica attaches, or when this shard becomes a replica.
    pub backlog: Option<Backlog>,
    /// Since when no replica has been attached (the backlog is freed after `repl-backlog-ttl`).
    pub no_replicas_since: Option<Instant>,
    /// Clients that are replicas (sent PSYNC or SYNC), in arrival order.
    pub replicas: Vec<usize>,
    /// The full sync whose RDB payload is being produced.
    pub sync: Option<primary::FullSync>,
    /// Clients waiting in WAIT.
    pub waiting: Vec<usize>,
    /// A `REPLCONF GETACK` goes to the replicas at the end of the turn (WAIT asked for acks).
    pub getack_due: bool,
    /// The link to this shard's primary, when it is a replica.
    pub link: Option<replica::Link>,
    /// The verify step has replication checks to make (a replica, or `min-replicas-to-write`).
    pub verify: bool,
    pub last_ping: Instant,
    /// Full syncs served (`sync_full`), partial ones accepted and refused.
    pub sync_full: u64,
    pub sync_partial_ok: u64,
    pub sync_partial_err: u64,
    /// Reply scratch for the primary's commands.
    pub scratch: Vec<u8>,
    /// Since when stream bytes wait in the replicas' buffers, and how many.
    pub stream_since: Option<Instant>,
    pub stream_unsent: usize,
}

/// Parses `replicaof`'s "<host> <port>".
pub fn parse_replicaof(spec: &str) -> Option<(String, u16)> {
    let mut words = spec.split_whitespace();
    let host = words.next()?;
    let port = words.next()?.parse().ok()?;
    words.next().is_none().then(|| (host.to_string(), port))
}

impl Repl {
    pub fn new(replid: String) -> Repl {
        Repl {
            replid,
            replid2: None,
            backlog: None,
            no_replicas_since: Some(Instant::now()),
            replicas: Vec::new(),
            sync: None,
            waiting: Vec::new(),
            getack_due: false,
            link: None,
            verify: false,
            last_ping: Instant::now(),
            sync_full: 0,
            sync_partial_ok: 0,
            sync_partial_err: 0,
            scratch: Vec::new(),
            stream_since: None,
            stream_unsent: 0,
        }
    }

    /// True when this shard replicates a primary.
    pub fn is_replica(&self) -> bool {
        self.link.is_some()
    }
}
