//! The effect stream: one ordered stream of deterministic write effects per shard, addressed
//! by a byte offset, for the log (the AOF analogue), replicas and slot migration alike.
//!
//! The stream is Redis's replication stream: RESP arrays of commands, exactly what a Redis
//! replica receives, so the same bytes serve a real Redis replica (issue 5). Each executed
//! command that changed the dataset (its handlers signalled a modification, see
//! [`Server::notify`]) is recorded:
//! - by default as its own arguments;
//! - as explicit effects when its arguments are not deterministic: the handler calls
//!   [`Server::propagate`] (relative TTLs become `PXAT`/`PEXPIREAT` times, SPOP becomes SREM,
//!   INCRBYFLOAT becomes SET, XADD `*` gets its ID, a served BLPOP becomes LPOP, ...);
//! - keys deleted by expiry or eviction become `DEL` effects, placed before the effects of the
//!   command during which they went.
//!
//! A transaction's effects are wrapped in MULTI/EXEC when there are any. Replaying the stream
//! against the state at its start offset gives the state at its end: that is how the log
//! is replayed on start ([`Server::replay`]), with expiry off (the DELs are in the stream).

use tessera_protocol::Args;

use crate::server::Server;

/// The effect stream's producer side.
#[derive(Default)]
pub struct Effects {
    /// Recording is on (the log is on, later: replicas are attached).
    pub enabled: bool,
    /// Encoded effects not yet taken by the log writer.
    pending: Vec<u8>,
    /// Offset after the last byte produced (Redis's `master_repl_offset`).
    pub offset: u64,
    /// The running command recorded explicit effects: its arguments are not recorded.
    explicit: bool,
    /// Inside EXEC: `Some(true)` once MULTI has been written for it.
    multi: Option<bool>,
    /// The running command's own effects are not recorded (a script's
    /// `redis.set_repl(redis.REPL_NONE)`); deletions by expiry still are.
    pub muted: bool,
}

impl Effects {
    /// Appends one effect.
    pub fn emit(&mut self, args: &[&[u8]]) {
        self.emit_iter(args.len(), args.iter().copied());
    }

    /// Appends one effect of `n` arguments.
    fn emit_iter<'a>(&mut self, n: usize, args: impl Iterator<Item = &'a [u8]>) {
        if self.multi == Some(false) {
            self.multi = Some(true);
            self.encode(1, [&b"MULTI"[..]].into_iter());
        }
        self.encode(n, args);
    }

    fn encode<'a>(&mut self, len: usize, args: impl Iterator<Item = &'a [u8]>) {
        let before = self.pending.len();
        tessera_protocol::Reply::new(&mut self.pending, false).command(len, args);
        self.offset += (self.pending.len() - before) as u64;
    }

    /// Appends stream bytes received from this shard's primary as they are.
    pub fn append_raw(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
    }

    /// Takes the effects produced since the last call: (start offset, bytes).
    pub fn take(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.pending.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.pending);
        Some((self.offset - bytes.len() as u64, bytes))
    }

    /// True if effects wait to be taken.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Starts an EXEC: its effects, if any, are wrapped in MULTI/EXEC.
    pub fn begin_exec(&mut self) {
        self.multi = Some(false);
    }

    /// Drops the effects produced after `offset` if none of them were taken yet (a script
    /// stopped by SHUTDOWN NOSAVE leaves nothing of itself), and ends an EXEC without its
    /// closing marker.
    pub fn truncate_to(&mut self, offset: u64) {
        self.multi = None;
        let start = self.offset - self.pending.len() as u64;
        if offset >= start && offset <= self.offset {
            self.pending.truncate((offset - start) as usize);
            self.offset = offset;
        }
    }

    /// True inside an EXEC (or a script's run).
    pub fn in_exec(&self) -> bool {
        self.multi.is_some()
    }

    /// Ends an EXEC.
    pub fn end_exec(&mut self) {
        if self.multi.take() == Some(true) {
            self.encode(1, [&b"EXEC"[..]].into_iter());
        }
    }
}

impl Server {
    /// Records `args` as an effect of the running command, which is then not recorded by its
    /// own arguments (Redis's `alsoPropagate` with the command's propagation prevented).
    pub fn propagate(&mut self, args: &[&[u8]]) {
        if !self.effects.enabled {
            return;
        }
        // Keys that expired during the command go first.
        self.drain_expired_keys();
        if !self.effects.muted {
            self.effects.emit(args);
        }
        self.effects.explicit = true;
    }

    /// Records nothing for the running command even though it modified the dataset (its
    /// effects were recorded another way).
    pub fn propagate_nothing(&mut self) {
        self.effects.explicit = true;
    }

    /// Records the deletion of `key` by expiry or eviction.
    pub(crate) fn emit_del(&mut self, key: &[u8]) {
        if self.effects.enabled {
            self.effects.emit(&[b"DEL", key]);
        }
    }

    /// After a command: records its arguments if it modified the dataset and recorded no
    /// explicit effects.
    pub(crate) fn record_effects(&mut self, args: &Args<'_>, dirty_before: u64) {
        self.drain_expired_keys();
        if std::mem::take(&mut self.effects.explicit) {
            return;
        }
        if self.dirty != dirty_before && !self.effects.muted {
            self.effects.emit_iter(args.len(), args.iter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_bytes_and_exec_wraps() {
        let mut e = Effects {
            enabled: true,
            ..Effects::default()
        };
        e.emit(&[b"SET", b"k", b"v"]);
        assert_eq!(e.offset, 27);
        e.begin_exec();
        e.end_exec();
        assert_eq!(e.offset, 27, "an EXEC without effects records nothing");
        e.begin_exec();
        e.emit(&[b"DEL", b"k"]);
        e.end_exec();
        let (start, bytes) = e.take().unwrap();
        assert_eq!(start, 0);
        assert_eq!(
            bytes,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$5\r\nMULTI\r\n*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n"
        );
        assert!(e.take().is_none());
        e.emit(&[b"DEL", b"x"]);
        assert_eq!(e.take().unwrap().0, bytes.len() as u64);
    }
}
