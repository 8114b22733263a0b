//! The primary's side: replicas attach with PSYNC/SYNC, get `+CONTINUE` from the backlog or a
//! full sync (an RDB payload produced from a copy-on-write snapshot, then the stream from the
//! snapshot's offset), and acknowledge offsets that WAIT and `min-replicas-to-write` count.

use std::time::{Duration, Instant};

use tessera_storage::rdb;
use tessera_storage::snapshot::Format;

use super::backlog::Backlog;
use crate::server::{Server, unix_ms};

/// Where a replica is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Sent REPLCONF only.
    Handshake,
    /// Waits for the next full sync to start (Redis's `wait_bgsave`).
    WaitBgsave,
    /// Receives the RDB payload (`send_bulk`).
    SendBulk,
    /// Receives the stream (`online`).
    Online,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::WaitBgsave => "wait_bgsave",
            Phase::SendBulk => "send_bulk",
            Phase::Online => "online",
        }
    }
}

/// A client that is (or is about to be) a replica.
pub struct ReplicaState {
    pub phase: Phase,
    pub listening_port: u16,
    pub announced_ip: Option<String>,
    pub capa_eof: bool,
    pub capa_psync2: bool,
    /// The offset the replica last acknowledged (`REPLCONF ACK`), and when.
    pub ack_offset: u64,
    pub ack_time: Instant,
    pub since: Instant,
    /// Stream bytes from the snapshot's offset on, held while the payload is sent.
    pub held: Vec<u8>,
    /// Attached with SYNC: the payload comes without a `+FULLRESYNC` line.
    pub plain_sync: bool,
    /// The payload, kept whole for a replica without `capa eof` (it needs the length first).
    pub whole: Option<Vec<u8>>,
    /// The whole payload is queued; the stream starts at the replica's first ACK (a Redis
    /// replica finds the EOF marker only at the end of what it reads, as Redis's primary
    /// knows: it waits for that ACK too).
    pub payload_sent: bool,
}

impl Default for ReplicaState {
    fn default() -> ReplicaState {
        let now = Instant::now();
        ReplicaState {
            phase: Phase::Handshake,
            listening_port: 0,
            announced_ip: None,
            capa_eof: false,
            capa_psync2: false,
            ack_offset: 0,
            ack_time: now,
            since: now,
            held: Vec::new(),
            plain_sync: false,
            whole: None,
            payload_sent: false,
        }
    }
}

/// How long stream bytes may wait to be written to replicas, and how many.
const STREAM_BATCH: Duration = Duration::from_micros(250);
const STREAM_BATCH_BYTES: usize = 64 << 10;
/// Unwritten payload bytes per replica above which the snapshot waits for the socket.
const SYNC_OUT_HIGH: usize = 8 << 20;
/// Snapshot work per step.
const SYNC_STEP_BYTES: usize = 256 << 10;

/// The full sync in progress: the snapshot's payload goes to every target.
pub struct FullSync {
    /// The stream offset the snapshot is of.
    pub offset: u64,
    pub targets: Vec<usize>,
    mark: String,
    crc: rdb::Crc64Digest,
    pub started: Instant,
    pub bytes: u64,
    /// Every target had too much unwritten at the last step.
    pub blocked: bool,
    /// A chunk buffer to reuse.
    spare: Vec<u8>,
}

/// A client waiting in WAIT.
#[derive(Clone, Copy, Debug)]
pub struct WaitAcks {
    pub offset: u64,
    pub replicas: u64,
    pub deadline: Option<Instant>,
}

impl Server {
    /// Effects are recorded while the log is on or a backlog exists.
    pub(crate) fn update_effects_enabled(&mut self) {
        self.effects.enabled = self.persist.aof || self.repl.backlog.is_some();
    }

    /// Creates the backlog if there is none. A stream that was not recorded until now may
    /// have a gap at this offset: a new replication ID makes sure nobody continues across it
    /// (Redis does the same when it creates its backlog).
    pub(crate) fn ensure_backlog(&mut self) {
        if self.repl.backlog.is_some() {
            return;
        }
        if !self.effects.enabled && !self.repl.is_replica() {
            self.repl.replid = super::new_replid();
            self.repl.replid2 = None;
        }
        self.repl.backlog = Some(Backlog::new(
            self.config.repl_backlog_size as usize,
            self.effects.offset,
        ));
        self.update_effects_enabled();
    }

    /// Gives the turn's effects (stream bytes from position `start`) to the backlog and the
    /// replicas.
    pub(crate) fn repl_feed(&mut self, start: u64, bytes: &[u8]) {
        if let Some(b) = &mut self.repl.backlog {
            b.append(start, bytes);
        }
        for i in 0..self.repl.replicas.len() {
            let tok = self.repl.replicas[i];
            let Some(c) = self.clients.get_mut(tok) else {
                continue;
            };
            let Some(r) = c.replica.as_mut() else {
                continue;
            };
            match r.phase {
                Phase::Online => {
                    match c.io.as_mut() {
                        Some(io) => {
                            if !r.held.is_empty() {
                                io.out.append(&mut r.held);
                            }
                            io.out.extend_from_slice(bytes);
                        }
                        None => r.held.extend_from_slice(bytes),
                    }
                    if self.repl.stream_since.is_none() {
                        self.repl.stream_since = Some(Instant::now());
                    }
                    self.repl.stream_unsent += bytes.len();
                }
                Phase::SendBulk => r.held.extend_from_slice(bytes),
                Phase::Handshake | Phase::WaitBgsave => {}
            }
        }
    }

    /// Writes the stream to the online replicas once it has waited `STREAM_BATCH` (or grown
    /// past `STREAM_BATCH_BYTES`, or WAIT is waiting for it): one write per replica for many
    /// turns of small writes, instead of one per turn, spares both processes a syscall and a
    /// wakeup per turn at the cost of a fraction of a millisecond of lag.
    pub(crate) fn flush_stream(&mut self, now: bool) {
        let Some(since) = self.repl.stream_since else {
            return;
        };
        if !now
            && since.elapsed() < STREAM_BATCH
            && self.repl.stream_unsent < STREAM_BATCH_BYTES
            && self.repl.waiting.is_empty()
        {
            return;
        }
        self.repl.stream_since = None;
        self.repl.stream_unsent = 0;
        for i in 0..self.repl.replicas.len() {
            self.schedule_write(self.repl.replicas[i]);
        }
    }

    /// When the batched stream must go out (part of the poll timeout).
    pub(crate) fn stream_deadline(&self) -> Option<Instant> {
        self.repl.stream_since.map(|t| t + STREAM_BATCH)
    }

    /// PSYNC (and SYNC, `plain`): attaches the client as a replica. Returns the reply to write
    /// now (`+CONTINUE` and the backlog), or nothing when a full sync will answer.
    pub(crate) fn attach_replica(
        &mut self,
        tok: usize,
        replid: &[u8],
        offset: &[u8],
        plain: bool,
    ) -> Result<Vec<u8>, String> {
        if self
            .clients
            .get(tok)
            .and_then(|c| c.replica.as_ref())
            .is_some_and(|r| r.phase != Phase::Handshake)
        {
            // Already a replica: Redis ignores the command.
            return Ok(Vec::new());
        }
        if let Some(link) = &self.repl.link
            && !link.is_up()
        {
            return Err("NOMASTERLINK Can't SYNC while not connected with my master".into());
        }
        if self.persist.loading.is_some() {
            return Err("LOADING Redis is loading the dataset in memory".into());
        }
        self.ensure_backlog();
        let want: Option<u64> = std::str::from_utf8(offset)
            .ok()
            .and_then(|o| o.parse::<i64>().ok())
            .filter(|&o| o >= 1)
            .map(|o| o as u64 - 1);
        let id_ok = replid == self.repl.replid.as_bytes()
            || self.repl.replid2.as_ref().is_some_and(|(id2, until)| {
                replid == id2.as_bytes() && want.is_some_and(|w| w <= *until)
            });
        let backlog = self.repl.backlog.as_ref().expect("created above");
        let client = self.clients.get_mut(tok).expect("the calling client");
        let r = client.replica.get_or_insert_with(Default::default);
        r.plain_sync = plain;
        r.since = Instant::now();
        r.ack_time = Instant::now();
        let mut reply = Vec::new();
        if !plain
            && id_ok
            && let Some(w) = want
            && backlog.covers(w)
        {
            reply.extend_from_slice(
                if r.capa_psync2 {
                    format!("+CONTINUE {}\r\n", self.repl.replid)
                } else {
                    "+CONTINUE\r\n".into()
                }
                .as_bytes(),
            );
            backlog.copy_from(w, &mut reply);
            r.phase = Phase::Online;
            r.ack_offset = w;
            self.repl.sync_partial_ok += 1;
            tracing::info!(replica = %client.addr, from = w, "partial resynchronization accepted");
        } else {
            if replid != b"?" && !plain {
                self.repl.sync_partial_err += 1;
            }
            r.phase = Phase::WaitBgsave;
            self.repl.sync_full += 1;
            tracing::info!(replica = %client.addr, "full resync requested");
        }
        self.repl.replicas.push(tok);
        self.repl.no_replicas_since = None;
        Ok(reply)
    }

    /// Starts a full sync for the replicas waiting for one, when the snapshot is free and the
    /// `repl-diskless-sync-delay` has passed (or enough replicas wait).
    pub(crate) fn maybe_start_full_sync(&mut self) {
        if self.repl.sync.is_some() || self.checkpoint.is_some() || self.persist.loading.is_some() {
            return;
        }
        let waiting: Vec<usize> = self
            .repl
            .replicas
            .iter()
            .copied()
            .filter(|&t| {
                self.clients
                    .get(t)
                    .and_then(|c| c.replica.as_ref())
                    .is_some_and(|r| r.phase == Phase::WaitBgsave)
            })
            .collect();
        let Some(oldest) = waiting
            .iter()
            .filter_map(|&t| self.clients[t].replica.as_ref().map(|r| r.since))
            .min()
        else {
            return;
        };
        let max = self.config.repl_diskless_sync_max_replicas;
        let delay = Duration::from_secs(self.config.repl_diskless_sync_delay);
        if oldest.elapsed() < delay && (max == 0 || (waiting.len() as u64) < max) {
            return;
        }
        // The payload starts on a turn boundary: the effects so far go out first.
        self.persist_turn();
        let offset = self.effects.offset;
        self.db.begin_snapshot(Format::Rdb);
        let mark: String = super::new_replid();
        let mut header = Vec::new();
        let ctime = (unix_ms() / 1000).to_string();
        let used = crate::memory::allocated().to_string();
        let off = offset.to_string();
        rdb::write_file_header(
            &mut header,
            &[
                (
                    "redis-ver",
                    crate::commands::connection::REDIS_VERSION.as_bytes(),
                ),
                ("redis-bits", b"64"),
                ("ctime", ctime.as_bytes()),
                ("used-mem", used.as_bytes()),
                ("repl-stream-db", b"0"),
                ("repl-id", self.repl.replid.as_bytes()),
                ("repl-offset", off.as_bytes()),
                ("aof-base", b"0"),
            ],
            &self.scripting.libraries.codes(),
            self.db.len() as u64,
            self.db.volatile_len() as u64,
        );
        let mut crc = rdb::crc64_digest();
        crc.update(&header);
        let fullresync = format!("+FULLRESYNC {} {offset}\r\n", self.repl.replid);
        for &t in &waiting {
            let c = &mut self.clients[t];
            let r = c.replica.as_mut().expect("filtered above");
            let Some(io) = c.io.as_mut() else { continue };
            if !r.plain_sync {
                io.out.extend_from_slice(fullresync.as_bytes());
            }
            if r.capa_eof {
                io.out
                    .extend_from_slice(format!("$EOF:{mark}\r\n").as_bytes());
                io.out.extend_from_slice(&header);
            } else {
                r.whole = Some(header.clone());
            }
            r.phase = Phase::SendBulk;
            r.payload_sent = false;
            r.held.clear();
            self.schedule_write(t);
        }
        tracing::info!(
            replicas = waiting.len(),
            offset,
            keys = self.db.len(),
            "starting a full sync (diskless, from a copy-on-write snapshot)"
        );
        self.repl.sync = Some(FullSync {
            offset,
            targets: waiting,
            mark,
            crc,
            started: Instant::now(),
            bytes: header.len() as u64,
            blocked: false,
            spare: Vec::new(),
        });
    }

    /// Produces payload for about `budget`, pausing while the targets' sockets are behind.
    /// True while the sync can use more turns right away.
    pub(crate) fn full_sync_step(&mut self, budget: Duration) -> bool {
        let Some(mut sync) = self.repl.sync.take() else {
            return false;
        };
        sync.targets.retain(|&t| {
            self.clients
                .get(t)
                .and_then(|c| c.replica.as_ref())
                .is_some_and(|r| r.phase == Phase::SendBulk)
        });
        if sync.targets.is_empty() {
            self.db.end_snapshot();
            tracing::info!("full sync abandoned: no replica left to receive it");
            return false;
        }
        let start = Instant::now();
        sync.blocked = false;
        loop {
            let behind = sync
                .targets
                .iter()
                .map(|&t| self.clients.get(t).map_or(0, |c| c.pending_output()))
                .max()
                .unwrap_or(0);
            if behind >= SYNC_OUT_HIGH {
                sync.blocked = true;
                break;
            }
            let done = self.db.snapshot_step(SYNC_STEP_BYTES);
            let mut spare = std::mem::take(&mut sync.spare);
            // Room for a step and the keys changes save meanwhile: no growth while filling.
            spare.reserve(2 * SYNC_STEP_BYTES);
            let chunk = self.db.take_snapshot_records(spare);
            if !chunk.is_empty() {
                self.send_payload(&mut sync, chunk);
            }
            if done {
                self.finish_full_sync(sync);
                return false;
            }
            if start.elapsed() >= budget {
                break;
            }
        }
        let blocked = sync.blocked;
        self.repl.sync = Some(sync);
        !blocked
    }

    fn send_payload(&mut self, sync: &mut FullSync, mut chunk: Vec<u8>) {
        sync.crc.update(&chunk);
        sync.bytes += chunk.len() as u64;
        for &t in &sync.targets {
            let Some(c) = self.clients.get_mut(t) else {
                continue;
            };
            let r = c.replica.as_mut().expect("a target is a replica");
            match (&mut r.whole, c.io.as_mut()) {
                (Some(whole), _) => whole.extend_from_slice(&chunk),
                // One replica whose socket took everything: the chunk becomes its output
                // buffer, without a copy.
                (None, Some(io)) if sync.targets.len() == 1 && io.out_pos == io.out.len() => {
                    io.out.clear();
                    io.out_pos = 0;
                    std::mem::swap(&mut io.out, &mut chunk);
                }
                (None, Some(io)) => io.out.extend_from_slice(&chunk),
                (None, None) => {}
            }
        }
        chunk.clear();
        sync.spare = chunk;
        for i in 0..sync.targets.len() {
            self.schedule_write(sync.targets[i]);
        }
    }

    fn finish_full_sync(&mut self, sync: FullSync) {
        let FullSync {
            mut crc,
            targets,
            mark,
            ..
        } = sync;
        self.db.end_snapshot();
        crc.update(&[rdb::OP_EOF]);
        let mut trailer = vec![rdb::OP_EOF];
        trailer.extend_from_slice(&crc.finalize().to_le_bytes());
        for &t in &targets {
            let Some(c) = self.clients.get_mut(t) else {
                continue;
            };
            let r = c.replica.as_mut().expect("a target is a replica");
            let Some(io) = c.io.as_mut() else { continue };
            match r.whole.take() {
                Some(mut whole) => {
                    whole.extend_from_slice(&trailer);
                    io.out
                        .extend_from_slice(format!("${}\r\n", whole.len()).as_bytes());
                    io.out.extend_from_slice(&whole);
                    io.out.append(&mut r.held);
                    r.phase = Phase::Online;
                }
                None => {
                    io.out.extend_from_slice(&trailer);
                    io.out.extend_from_slice(mark.as_bytes());
                    r.payload_sent = true;
                }
            }
            r.ack_time = Instant::now();
            self.schedule_write(t);
        }
        tracing::info!(
            replicas = targets.len(),
            bytes = sync.bytes,
            seconds = sync.started.elapsed().as_secs_f64(),
            "full sync payload sent"
        );
    }

    /// Abandons the running full sync (FLUSHALL, a new dataset): its replicas are
    /// disconnected and will sync again.
    pub(crate) fn abort_full_sync(&mut self) {
        if let Some(sync) = self.repl.sync.take() {
            self.db.end_snapshot();
            for t in sync.targets {
                if let Some(c) = self.clients.get_mut(t) {
                    c.close_asap = true;
                    self.schedule_write(t);
                }
            }
        }
    }

    /// Replicas that acknowledged `offset` or more.
    pub(crate) fn acked_replicas(&self, offset: u64) -> u64 {
        self.repl
            .replicas
            .iter()
            .filter_map(|&t| self.clients.get(t)?.replica.as_ref())
            .filter(|r| r.phase == Phase::Online && r.ack_offset >= offset)
            .count() as u64
    }

    /// Online replicas whose last acknowledgement is at most `min-replicas-max-lag` old.
    pub(crate) fn good_replicas(&self) -> u64 {
        let max_lag = self.config.min_replicas_max_lag;
        self.repl
            .replicas
            .iter()
            .filter_map(|&t| self.clients.get(t)?.replica.as_ref())
            .filter(|r| r.phase == Phase::Online && r.ack_time.elapsed().as_secs() <= max_lag)
            .count() as u64
    }

    /// `REPLCONF ACK <offset>` from a replica.
    pub(crate) fn replica_ack(&mut self, tok: usize, offset: u64) {
        let Some(c) = self.clients.get_mut(tok) else {
            return;
        };
        let Some(r) = c.replica.as_mut() else {
            return;
        };
        if r.phase == Phase::SendBulk && r.payload_sent {
            // The replica loaded the payload: the stream since the snapshot follows.
            r.phase = Phase::Online;
            if let Some(io) = c.io.as_mut() {
                io.out.append(&mut r.held);
            }
            self.schedule_write(tok);
            let Some(r) = self.clients[tok].replica.as_mut() else {
                return;
            };
            r.ack_offset = r.ack_offset.max(offset);
            r.ack_time = Instant::now();
            return;
        }
        if r.phase != Phase::Online {
            return;
        }
        r.ack_offset = r.ack_offset.max(offset);
        r.ack_time = Instant::now();
        if !self.repl.waiting.is_empty() {
            self.release_waiters(false);
        }
    }

    /// Answers WAIT clients whose replicas acknowledged enough, and with `check_deadlines`
    /// also those whose time ran out.
    pub(crate) fn release_waiters(&mut self, check_deadlines: bool) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.repl.waiting.len() {
            let tok = self.repl.waiting[i];
            let Some(w) = self.clients.get(tok).and_then(|c| c.wait_acks) else {
                self.repl.waiting.swap_remove(i);
                continue;
            };
            let acked = self.acked_replicas(w.offset);
            let expired = check_deadlines && w.deadline.is_some_and(|d| now >= d);
            if acked >= w.replicas || expired {
                self.repl.waiting.swap_remove(i);
                let c = &mut self.clients[tok];
                c.wait_acks = None;
                let resp3 = c.resp3;
                let muted = c.muted();
                if let Some(io) = c.io.as_mut().filter(|_| !muted) {
                    tessera_protocol::Reply::new(&mut io.out, resp3).int(acked as i64);
                }
                self.schedule_write(tok);
                // Requests the client sent meanwhile run now.
                self.process_input(tok);
                continue;
            }
            i += 1;
        }
    }

    /// The earliest WAIT deadline.
    pub(crate) fn next_wait_deadline(&self) -> Option<Instant> {
        self.repl
            .waiting
            .iter()
            .filter_map(|&t| self.clients.get(t)?.wait_acks?.deadline)
            .min()
    }

    /// Forgets a client that is going away.
    pub(crate) fn repl_forget_client(&mut self, tok: usize) {
        if let Some(pos) = self.repl.replicas.iter().position(|&t| t == tok) {
            self.repl.replicas.remove(pos);
            if self.repl.replicas.is_empty() {
                self.repl.no_replicas_since = Some(Instant::now());
            }
            tracing::info!(client = tok, "replica connection lost");
        }
        self.repl.waiting.retain(|&t| t != tok);
    }

    /// Once a turn: GETACKs WAIT asked for, full syncs to start and to produce, WAIT timeouts.
    pub(crate) fn repl_before_sleep(&mut self) {
        if std::mem::take(&mut self.repl.getack_due) && !self.repl.replicas.is_empty() {
            self.effects.emit(&[b"REPLCONF", b"GETACK", b"*"]);
        }
        if self.repl.sync.is_none() && !self.repl.replicas.is_empty() {
            self.maybe_start_full_sync();
        }
        if !self.repl.waiting.is_empty() {
            self.release_waiters(true);
        }
    }

    /// The full sync's share of a turn: half of the turn's own work when clients are busy,
    /// 10 ms of an idle turn.
    pub(crate) fn repl_sync_budget(&self, turn_work: Duration, had_events: bool) -> Duration {
        if had_events {
            (turn_work / 2).max(Duration::from_micros(200))
        } else {
            Duration::from_millis(10)
        }
    }

    /// From the cron: pings into the stream, dead replicas, the backlog's time to live.
    pub(crate) fn repl_primary_cron(&mut self) {
        let period = Duration::from_secs(self.config.repl_ping_replica_period);
        if !self.repl.replicas.is_empty()
            && !self.repl.is_replica()
            && self.repl.last_ping.elapsed() >= period
        {
            self.repl.last_ping = Instant::now();
            self.effects.emit(&[b"PING"]);
        }
        let timeout = Duration::from_secs(self.config.repl_timeout);
        let mut dead = Vec::new();
        for &t in &self.repl.replicas {
            let Some(c) = self.clients.get(t) else {
                continue;
            };
            let Some(r) = c.replica.as_ref() else {
                continue;
            };
            // Old replicas that never send REPLCONF ACK are not timed out (as Redis).
            if r.phase == Phase::Online && r.ack_offset > 0 && r.ack_time.elapsed() > timeout {
                tracing::warn!(replica = %c.addr, "disconnecting timedout replica");
                dead.push(t);
            }
        }
        for t in dead {
            self.free_client(t);
        }
        // Output limits of the `replica` class.
        for i in 0..self.repl.replicas.len() {
            let t = self.repl.replicas[i];
            let pending = self.clients.get(t).map_or(0, |c| {
                let held = c.replica.as_ref().map_or(0, |r| r.held.len());
                let out = match c.replica.as_ref().map(|r| r.phase) {
                    Some(Phase::Online) => c.pending_output(),
                    _ => 0,
                };
                held + out
            });
            if pending > 0 {
                self.check_output_limit(t, pending as u64);
            }
        }
        if let Some(b) = &mut self.repl.backlog
            && b.size() != self.config.repl_backlog_size as usize
        {
            b.resize(self.config.repl_backlog_size as usize);
        }
        if let (Some(since), Some(_)) = (self.repl.no_replicas_since, &self.repl.backlog) {
            let ttl = self.config.repl_backlog_ttl;
            if ttl > 0 && !self.repl.is_replica() && since.elapsed().as_secs() >= ttl {
                tracing::info!("replication backlog freed after {ttl} seconds without replicas");
                self.repl.backlog = None;
                self.update_effects_enabled();
            }
        }
    }
}
