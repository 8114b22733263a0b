//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis's multi.c).
//!
//! Inside MULTI the dispatcher queues commands (except EXEC, DISCARD, MULTI, WATCH, QUIT,
//! RESET) and a rejection at queue time flags the transaction, so EXEC answers EXECABORT. A
//! write to a watched key by any client, its expiry, or a FLUSHALL/FLUSHDB that removed it marks
//! the watcher, and EXEC then replies a null array. Run-time errors inside EXEC do not stop the
//! other commands. Blocking commands inside EXEC answer at once, as if they had timed out.

use std::collections::HashMap;

use tessera_protocol::Args;

use crate::dispatch::{Call, CmdError, CmdResult};
use crate::server::Server;

/// A queued command's arguments as one buffer and its spans, for [`Args::from_parts`].
pub(crate) fn flatten(parts: &[Vec<u8>]) -> (Vec<u8>, Vec<(u32, u32)>) {
    let mut buf = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    let mut spans = Vec::with_capacity(parts.len());
    for p in parts {
        let start = buf.len() as u32;
        buf.extend_from_slice(p);
        spans.push((start, buf.len() as u32));
    }
    (buf, spans)
}

/// A transaction being queued.
#[derive(Debug, Default)]
pub struct MultiState {
    pub queue: Vec<Vec<Vec<u8>>>,
    /// A command was rejected while queueing: EXEC answers EXECABORT.
    pub aborted: bool,
}

/// Watched keys of all clients.
#[derive(Debug, Default)]
pub struct Watches {
    by_key: HashMap<Vec<u8>, Vec<usize>>,
}

impl Watches {
    /// True when no client watches anything.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The watchers per key.
    pub(crate) fn by_key_mut(&mut self) -> &mut HashMap<Vec<u8>, Vec<usize>> {
        &mut self.by_key
    }
}

impl Server {
    /// Marks every client watching `key` (Redis's `touchWatchedKey`).
    pub(crate) fn touch_watched(&mut self, key: &[u8]) {
        if let Some(clients) = self.watches.by_key.get(key) {
            for &tok in clients {
                if let Some(c) = self.clients.get_mut(tok) {
                    c.dirty_cas = true;
                }
            }
        }
    }

    /// A key changed: its watches and the tracking clients that read it are invalidated
    /// (Redis's `signalModifiedKey`).
    pub(crate) fn signal_modified(&mut self, key: &[u8]) {
        self.touch_watched(key);
        if self.tracking.clients > 0 {
            self.tracking_invalidate(key);
        }
    }

    /// Before a flush: marks the watchers of keys that exist.
    pub(crate) fn touch_watched_existing(&mut self) {
        let keys: Vec<Vec<u8>> = self
            .watches
            .by_key
            .keys()
            .filter(|k| self.db.find_stored(k).is_some())
            .cloned()
            .collect();
        for k in keys {
            self.touch_watched(&k);
        }
    }

    /// Turns keys deleted by expiry into WATCH invalidations.
    pub(crate) fn drain_expired_keys(&mut self) {
        if self.db.has_expired_log() {
            let notify = self.notify_flags & crate::notify::EXPIRED != 0;
            for key in self.db.take_expired() {
                self.emit_del(key.as_bytes());
                self.signal_modified(key.as_bytes());
                if notify {
                    self.events
                        .events
                        .push(("expired", key.as_bytes().to_vec()));
                }
            }
        }
    }

    /// Expired keys are recorded while someone watches keys or `expired` events are on; while
    /// someone watches keys, every keyspace event also reaches [`Server::notify`]'s slow path,
    /// which invalidates the watches of the key (Redis's `signalModifiedKey`).
    pub(crate) fn update_expired_logging(&mut self) {
        let watching = !self.watches.is_empty() || self.tracking.clients > 0;
        self.db.log_expired =
            watching || self.effects.enabled || self.notify_flags & crate::notify::EXPIRED != 0;
        self.notify_gate = self.notify_flags | if watching { crate::notify::MODIFIED } else { 0 };
    }

    /// Forgets the watches of client `tok` (EXEC, DISCARD, UNWATCH, RESET, disconnect).
    pub(crate) fn unwatch_all(&mut self, tok: usize) {
        let Some(c) = self.clients.get_mut(tok) else {
            return;
        };
        c.dirty_cas = false;
        for key in std::mem::take(&mut c.watched) {
            if let Some(list) = self.watches.by_key.get_mut(&key) {
                list.retain(|&t| t != tok);
                if list.is_empty() {
                    self.watches.by_key.remove(&key);
                }
            }
        }
        self.update_expired_logging();
    }
}

/// `MULTI`
pub fn multi(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    let c = &mut s.clients[call.client];
    if c.multi.is_some() {
        return Err(CmdError::msg("ERR MULTI calls can not be nested"));
    }
    c.multi = Some(MultiState::default());
    call.reply().ok();
    Ok(())
}

/// `DISCARD`
pub fn discard(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    if s.clients[call.client].multi.take().is_none() {
        return Err(CmdError::msg("ERR DISCARD without MULTI"));
    }
    s.unwatch_all(call.client);
    call.reply().ok();
    Ok(())
}

/// `EXEC`
pub fn exec(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    let tok = call.client;
    let Some(state) = s.clients[tok].multi.take() else {
        return Err(CmdError::msg("ERR EXEC without MULTI"));
    };
    // A watched key whose time to live ran out counts as modified.
    let now = call.now;
    let expired = s.clients[tok]
        .watched
        .iter()
        .any(|k| s.db.is_logically_expired(k, now));
    let dirty = s.clients[tok].dirty_cas || expired;
    s.unwatch_all(tok);
    if state.aborted {
        return Err(CmdError::msg(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    if dirty {
        call.reply().null_array();
        return Ok(());
    }
    call.reply().array(state.queue.len());
    s.in_exec = Some(tok);
    s.effects.begin_exec();
    for parts in &state.queue {
        let (buf, spans) = flatten(parts);
        s.execute(tok, call.out, &Args::from_parts(&buf, &spans));
        // A command in the transaction may change the protocol (HELLO).
        call.resp3 = s.clients.get(tok).is_some_and(|c| c.resp3);
    }
    s.in_exec = None;
    // The commands recorded their own effects; EXEC closes the wrapping.
    s.propagate_nothing();
    s.effects.end_exec();
    Ok(())
}

/// `WATCH key [key ...]`
pub fn watch(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let tok = call.client;
    if s.clients[tok].multi.is_some() {
        return Err(CmdError::msg("ERR WATCH inside MULTI is not allowed"));
    }
    for key in args.iter_from(1) {
        let c = &mut s.clients[tok];
        if c.watched.iter().any(|k| k == key) {
            continue;
        }
        c.watched.push(key.to_vec());
        s.watches.by_key.entry(key.to_vec()).or_default().push(tok);
    }
    s.update_expired_logging();
    call.reply().ok();
    Ok(())
}

/// `UNWATCH`
pub fn unwatch(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    s.unwatch_all(call.client);
    call.reply().ok();
    Ok(())
}
