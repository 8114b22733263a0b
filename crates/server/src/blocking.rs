//! Blocked clients (BLPOP and friends), as Redis's blocked.c does it.
//!
//! A blocking command that finds no data files a [`BlockRequest`] instead of replying. The
//! dispatcher then parks the client: its arguments are kept, it joins a FIFO queue for each key
//! it waits on, and its later input waits in its buffer. After every write command, keys that
//! have waiters are marked ready; right after that command, the waiters of each ready key re-run
//! their command in the order they blocked (first blocked, first served) until one finds no
//! data again. Timeouts are kept sorted and checked at every event-loop turn, so they have
//! sub-second precision. A blocked client costs nothing while it waits and blocks nobody else.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use tessera_protocol::{Args, Reply};

use crate::server::Server;

/// What a blocking handler asks for when it finds no data.
#[derive(Debug)]
pub struct BlockRequest {
    pub keys: Vec<Vec<u8>>,
    /// `None` blocks forever.
    pub timeout: Option<Duration>,
    /// The command to run again instead of the one given (XREAD pins its `$` IDs).
    pub args: Option<Vec<Vec<u8>>>,
}

/// The state of a blocked client.
#[derive(Debug)]
pub struct Blocked {
    /// The command to run again when a key is ready.
    pub args: Vec<Vec<u8>>,
    pub keys: Vec<Vec<u8>>,
    pub deadline: Option<Instant>,
}

/// How a blocked client is released without data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The timeout ran out (or `CLIENT UNBLOCK ... TIMEOUT`): a null reply.
    Timeout,
    /// `CLIENT UNBLOCK ... ERROR`.
    Error,
}

/// The server's blocking state.
#[derive(Debug, Default)]
pub struct Blocking {
    /// Waiting clients per key, in the order they blocked.
    by_key: HashMap<Vec<u8>, VecDeque<usize>>,
    /// Keys written since their waiters were last served.
    ready: VecDeque<Vec<u8>>,
    deadlines: BTreeSet<(Instant, usize)>,
    /// Set by a blocking handler that found no data.
    pub request: Option<BlockRequest>,
    /// The blocked client whose command is being run again.
    pub retrying: Option<usize>,
    /// Clients released this turn, whose buffered input runs in `before_sleep`.
    released: Vec<usize>,
}

impl Blocking {
    /// Number of blocked clients (`blocked_clients`).
    pub fn count(&self, server_clients: &slab::Slab<crate::client::Client>) -> usize {
        server_clients
            .iter()
            .filter(|(_, c)| c.blocked.is_some())
            .count()
    }

    /// True if some client waits on `key`.
    #[inline]
    pub fn is_awaited(&self, key: &[u8]) -> bool {
        !self.by_key.is_empty() && self.by_key.contains_key(key)
    }

    /// True when nobody is blocked on any key.
    #[inline]
    pub fn nobody_waits(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Marks `key` as written.
    pub fn mark_ready(&mut self, key: &[u8]) {
        if self.is_awaited(key) && !self.ready.iter().any(|k| k == key) {
            self.ready.push_back(key.to_vec());
        }
    }

    /// True if keys are waiting to be served.
    #[inline]
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Asks the dispatcher to block the running command's client on `keys` (a blocking
    /// handler that found no data calls this instead of replying).
    pub fn wait_on(&mut self, keys: Vec<Vec<u8>>, timeout: Option<Duration>) {
        self.request = Some(BlockRequest {
            keys,
            timeout,
            args: None,
        });
    }

    /// The earliest timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }
}

impl Server {
    /// Parks client `tok`, which ran `args` and asked to block.
    pub(crate) fn block_client(&mut self, tok: usize, args: &Args<'_>, req: BlockRequest) {
        let deadline = req.timeout.map(|t| {
            let now = Instant::now();
            now.checked_add(t)
                .unwrap_or(now + Duration::from_secs(100 * 365 * 86400))
        });
        for key in &req.keys {
            let queue = self.blocking.by_key.entry(key.clone()).or_default();
            if !queue.contains(&tok) {
                queue.push_back(tok);
            }
        }
        if let Some(d) = deadline {
            self.blocking.deadlines.insert((d, tok));
        }
        if let Some(c) = self.clients.get_mut(tok) {
            c.blocked = Some(Blocked {
                args: req
                    .args
                    .unwrap_or_else(|| args.iter().map(<[u8]>::to_vec).collect()),
                keys: req.keys,
                deadline,
            });
        }
    }

    /// Removes client `tok` from every queue (when served, released or gone).
    pub(crate) fn forget_blocked(&mut self, tok: usize, blocked: &Blocked) {
        for key in &blocked.keys {
            if let Some(q) = self.blocking.by_key.get_mut(key) {
                q.retain(|&t| t != tok);
                if q.is_empty() {
                    self.blocking.by_key.remove(key);
                }
            }
        }
        if let Some(d) = blocked.deadline {
            self.blocking.deadlines.remove(&(d, tok));
        }
    }

    /// Serves the waiters of every ready key.
    pub(crate) fn serve_ready_keys(&mut self) {
        while let Some(key) = self.blocking.ready.pop_front() {
            while let Some(&tok) = self.blocking.by_key.get(&key).and_then(|q| q.front()) {
                if !self.retry_blocked(tok) {
                    break;
                }
            }
        }
    }

    /// Runs the command of blocked client `tok` again. Returns false if it is still blocked.
    fn retry_blocked(&mut self, tok: usize) -> bool {
        let Some(client) = self.clients.get_mut(tok) else {
            return true;
        };
        let (Some(blocked), Some(mut io)) = (client.blocked.take(), client.io.take()) else {
            return true;
        };
        let mut buf = Vec::new();
        let mut spans = Vec::with_capacity(blocked.args.len());
        for a in &blocked.args {
            let start = buf.len() as u32;
            buf.extend_from_slice(a);
            spans.push((start, buf.len() as u32));
        }
        self.blocking.retrying = Some(tok);
        self.execute(tok, &mut io.out, &Args::from_parts(&buf, &spans));
        self.blocking.retrying = None;
        let still_blocked = self.blocking.request.take().is_some();
        let Some(client) = self.clients.get_mut(tok) else {
            return true;
        };
        client.io = Some(io);
        if still_blocked {
            client.blocked = Some(blocked);
            return false;
        }
        self.forget_blocked(tok, &blocked);
        self.release_done(tok);
        true
    }

    /// Replies to blocked client `tok` without data and releases it.
    pub(crate) fn release_blocked(&mut self, tok: usize, how: Release) -> bool {
        let Some(client) = self.clients.get_mut(tok) else {
            return false;
        };
        let Some(blocked) = client.blocked.take() else {
            return false;
        };
        self.release_reply(tok, how, |r| r.null_array());
        self.forget_blocked(tok, &blocked);
        self.release_done(tok);
        true
    }

    /// CLIENT UNBLOCK of a client in WAIT: TIMEOUT answers the replicas that acknowledged so
    /// far, as when its time runs out.
    pub(crate) fn release_waiter(&mut self, tok: usize, how: Release) -> bool {
        let Some(w) = self.clients.get_mut(tok).and_then(|c| c.wait_acks.take()) else {
            return false;
        };
        let acked = self.acked_replicas(w.offset);
        self.release_reply(tok, how, |r| r.int(acked as i64));
        self.release_done(tok);
        true
    }

    /// The reply of client `tok` released without data: `timeout`'s, or CLIENT UNBLOCK's
    /// error; none when CLIENT REPLY mutes it.
    fn release_reply(&mut self, tok: usize, how: Release, timeout: impl FnOnce(&mut Reply<'_>)) {
        let client = &mut self.clients[tok];
        let resp3 = client.resp3;
        if client.muted() {
            return;
        }
        if let Some(io) = client.io.as_mut() {
            let mut r = Reply::new(&mut io.out, resp3);
            match how {
                Release::Timeout => timeout(&mut r),
                Release::Error => r.error("UNBLOCKED client unblocked via CLIENT UNBLOCK"),
            }
        }
    }

    fn release_done(&mut self, tok: usize) {
        self.schedule_write(tok);
        self.blocking.released.push(tok);
    }

    /// Releases clients whose timeout ran out, and runs the input of released clients.
    pub(crate) fn handle_blocked_in_before_sleep(&mut self) {
        let now = Instant::now();
        while let Some(&(d, tok)) = self.blocking.deadlines.first() {
            if d > now {
                break;
            }
            self.blocking.deadlines.pop_first();
            self.release_blocked(tok, Release::Timeout);
        }
        for tok in std::mem::take(&mut self.blocking.released) {
            self.process_input(tok);
        }
    }
}

/// Parses a blocking timeout in seconds (decimals allowed), as Redis's
/// `getTimeoutFromObjectOrReply`: `None` for 0 (forever).
pub fn parse_timeout(a: &[u8]) -> Result<Option<Duration>, crate::dispatch::CmdError> {
    use crate::dispatch::CmdError;
    let v = tessera_protocol::num::parse_f64(a)
        .ok_or_else(|| CmdError::msg("ERR timeout is not a float or out of range"))?;
    if v < 0.0 {
        return Err(CmdError::msg("ERR timeout is negative"));
    }
    if !v.is_finite() || v * 1000.0 > i64::MAX as f64 {
        return Err(CmdError::msg("ERR timeout is out of range"));
    }
    let ms = (v * 1000.0) as u64;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}
