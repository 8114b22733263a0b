//! Checkpoints, the RDB analogue: a point-in-time image of the keyspace written into the store
//! without fork and without stopping the shard (BGSAVE, BGREWRITEAOF, SAVE, `save` rules,
//! automatic log rewrites, and the save at shutdown).
//!
//! A checkpoint starts at a record boundary of the effect stream (offset O): the turn's effects
//! so far are written as their own log record first. The keyspace snapshot
//! (`tessera_storage::snapshot`, copy-on-write at key granularity) is walked a slice per turn,
//! sized to a tenth of the turn's work (or 5 ms when idle), and its records go to a writer
//! thread that puts them into the store under a new generation. When the walk is done the
//! writer commits: one synced batch names the new image (generation, O, replication ID),
//! drops the log before O and the previous generation. Recovery is then image(O) + log from O.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tessera_persist::{ImageMeta, Store};

use crate::server::{Server, unix_ms};

/// What started a checkpoint (INFO reports BGSAVE and rewrites apart, as Redis does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// BGSAVE or a `save` rule.
    Bgsave,
    /// BGREWRITEAOF, an automatic log rewrite, or turning `appendonly` on.
    Rewrite,
    /// SAVE (and the save at shutdown): runs to the end before the loop goes on.
    Save,
}

/// Records are handed to the writer in chunks of about this size (one RocksDB entry each).
const CHUNK_BYTES: usize = 256 << 10;

enum ToWriter {
    /// A chunk of the snapshot's record stream.
    Records(Vec<u8>),
    Commit(ImageMeta),
}

/// A checkpoint in progress.
pub struct Checkpoint {
    pub kind: Kind,
    pub started: Instant,
    generation: u64,
    offset: u64,
    /// The function libraries at `offset`, kept with the image.
    functions: Vec<Vec<u8>>,
    dirty_at_start: u64,
    tx: Option<SyncSender<ToWriter>>,
    result: Receiver<Result<(), String>>,
    /// Chunk buffers the writer is done with.
    spares: Receiver<Vec<u8>>,
    /// A chunk taken from the snapshot but not yet accepted by the writer.
    pending: Vec<u8>,
    walk_done: bool,
    committing: bool,
}

impl Checkpoint {
    /// True for BGREWRITEAOF and log rewrites (INFO reports them apart from BGSAVE).
    pub fn is_rewrite(&self) -> bool {
        self.kind == Kind::Rewrite
    }
}

/// Checkpoint statistics for INFO and LASTSAVE.
#[derive(Debug)]
pub struct SaveStats {
    pub last_ok: bool,
    pub last_duration_secs: i64,
    pub saves: u64,
    pub rewrites: u64,
    pub last_rewrite_ok: bool,
    pub last_rewrite_secs: i64,
    pub last_attempt: Option<Instant>,
    pub scheduled_bgsave: bool,
    pub scheduled_rewrite: bool,
    /// Keys in the last committed image.
    pub image_keys: u64,
    /// Stream offset of the committed image (the log holds what follows).
    pub image_offset: u64,
    pub next_generation: u64,
}

impl Default for SaveStats {
    fn default() -> Self {
        SaveStats {
            last_ok: true,
            last_duration_secs: -1,
            saves: 0,
            rewrites: 0,
            last_rewrite_ok: true,
            last_rewrite_secs: -1,
            last_attempt: None,
            scheduled_bgsave: false,
            scheduled_rewrite: false,
            image_keys: 0,
            image_offset: 0,
            next_generation: 1,
        }
    }
}

/// Parses `save` rules: "<seconds> <changes>" pairs; "" is none.
pub fn parse_save_rules(s: &str) -> Option<Vec<(u64, u64)>> {
    let words: Vec<&str> = s.split_whitespace().collect();
    if !words.len().is_multiple_of(2) {
        return None;
    }
    words
        .chunks(2)
        .map(|p| Some((p[0].parse().ok()?, p[1].parse().ok()?)))
        .collect()
}

fn writer_thread(
    store: &Store,
    generation: u64,
    rx: &Receiver<ToWriter>,
    result: &SyncSender<Result<(), String>>,
    spares: &SyncSender<Vec<u8>>,
) {
    // Below the event loop: on a busy machine the shard's clients come first and the
    // checkpoint takes what CPU is left (Linux applies a thread's nice value to it alone).
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
    let epoch = store.epoch();
    // Generation numbers are never reused (what an earlier run left was dropped at start).
    let mut failed: Option<String> = store.create_image(generation).err().map(|e| e.to_string());
    let mut seq = 0u64;
    for msg in rx.iter() {
        match msg {
            ToWriter::Records(chunk) => {
                if failed.is_none()
                    && let Err(e) = store.write_image_chunk(generation, seq, &chunk)
                {
                    failed = Some(e.to_string());
                }
                seq += 1;
                // The buffer goes back to the loop for a later chunk.
                let _ = spares.try_send(chunk);
            }
            ToWriter::Commit(meta) => {
                let r = match failed.take() {
                    Some(e) => Err(e),
                    // Records written before a reopen (without the WAL) may be gone.
                    None if store.epoch() != epoch => {
                        Err("the data directory was reopened during the checkpoint".into())
                    }
                    None => store.commit_image(&meta).map_err(|e| e.to_string()),
                };
                if r.is_err() {
                    let _ = store.drop_generation(generation);
                }
                let _ = result.send(r);
                return;
            }
        }
    }
    // The checkpoint was abandoned: its chunks go with the next commit's file deletion.
}

impl Server {
    /// Starts a checkpoint. Errors are Redis's texts for the caller to reply with.
    pub(crate) fn start_checkpoint(&mut self, kind: Kind) -> Result<(), String> {
        if self.checkpoint.is_some() || self.repl.sync.is_some() {
            return Err("Background save already in progress".into());
        }
        if self.persist.loading.is_some() {
            return Err("the dataset is loading".into());
        }
        let store = self.persist.store_or_create()?;
        // The image must start on a record boundary of the log.
        self.persist_turn();
        let generation = self.saves.next_generation;
        self.saves.next_generation += 1;
        let (tx, rx) = sync_channel::<ToWriter>(2);
        let (rtx, rrx) = sync_channel(1);
        let (stx, srx) = sync_channel(3);
        std::thread::Builder::new()
            .name("tessera-checkpoint".into())
            .spawn(move || writer_thread(&store, generation, &rx, &rtx, &stx))
            .map_err(|e| e.to_string())?;
        self.db
            .begin_snapshot(tessera_storage::snapshot::Format::Records);
        self.saves.last_attempt = Some(Instant::now());
        self.checkpoint = Some(Checkpoint {
            kind,
            started: Instant::now(),
            generation,
            offset: self.effects.offset,
            functions: self.scripting.libraries.codes(),
            dirty_at_start: self.dirty,
            tx: Some(tx),
            result: rrx,
            spares: srx,
            pending: Vec::new(),
            walk_done: false,
            committing: false,
        });
        tracing::info!(
            ?kind,
            generation,
            offset = self.effects.offset,
            "checkpoint started"
        );
        Ok(())
    }

    /// Abandons the running checkpoint (FLUSHALL, as Redis kills its BGSAVE child).
    pub(crate) fn abort_checkpoint(&mut self) {
        if self.checkpoint.take().is_some() {
            self.db.end_snapshot();
            tracing::info!("checkpoint abandoned");
        }
    }

    /// Advances the running checkpoint by about `budget` of work. Returns true while it runs.
    pub(crate) fn checkpoint_step(&mut self, budget: Duration) -> bool {
        let Some(mut cp) = self.checkpoint.take() else {
            return false;
        };
        let start = Instant::now();
        loop {
            // Hand over what is waiting, in chunks; stop producing while the writer is behind.
            if cp.pending.is_empty()
                && (cp.walk_done || self.db.snapshot_pending_bytes() >= CHUNK_BYTES)
            {
                let spare = cp.spares.try_recv().unwrap_or_default();
                cp.pending = self.db.take_snapshot_records(spare);
            }
            if !cp.pending.is_empty() {
                let tx = cp.tx.as_ref().expect("the writer runs until the commit");
                match tx.try_send(ToWriter::Records(std::mem::take(&mut cp.pending))) {
                    Ok(()) => {}
                    Err(TrySendError::Full(ToWriter::Records(back))) => {
                        cp.pending = back;
                        break;
                    }
                    Err(_) => {
                        self.db.end_snapshot();
                        self.finish_checkpoint(cp, Err("the checkpoint writer stopped".into()));
                        return false;
                    }
                }
            }
            if cp.walk_done || start.elapsed() >= budget {
                break;
            }
            // Small steps, so a turn's budget is not overshot by much.
            cp.walk_done = self.db.snapshot_step(2 << 10);
        }
        if cp.walk_done && cp.pending.is_empty() && !cp.committing {
            let rest = self.db.take_snapshot_records(Vec::new());
            if !rest.is_empty() {
                cp.pending = rest;
                self.checkpoint = Some(cp);
                return true;
            }
            let keys = self.db.snapshot_progress().map_or(0, |p| p.0);
            self.db.end_snapshot();
            let meta = ImageMeta {
                generation: cp.generation,
                offset: cp.offset,
                replid: self.repl.replid.clone(),
                keys,
                saved_at_ms: unix_ms(),
                functions: std::mem::take(&mut cp.functions),
            };
            self.saves.image_keys = keys;
            let tx = cp.tx.take().expect("not yet committing");
            if tx.send(ToWriter::Commit(meta)).is_err() {
                self.finish_checkpoint(cp, Err("the checkpoint writer stopped".into()));
                return false;
            }
            cp.committing = true;
        }
        if cp.committing {
            match cp.result.try_recv() {
                Ok(r) => {
                    self.finish_checkpoint(cp, r);
                    return false;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.finish_checkpoint(cp, Err("the checkpoint writer stopped".into()));
                    return false;
                }
            }
        }
        self.checkpoint = Some(cp);
        true
    }

    fn finish_checkpoint(&mut self, cp: Checkpoint, result: Result<(), String>) {
        let secs = cp.started.elapsed().as_secs() as i64;
        let ok = result.is_ok();
        match cp.kind {
            Kind::Rewrite => {
                self.saves.last_rewrite_ok = ok;
                self.saves.last_rewrite_secs = secs;
            }
            Kind::Bgsave | Kind::Save => self.saves.last_duration_secs = secs,
        }
        self.saves.last_ok = ok;
        match result {
            Ok(()) => {
                self.saves.saves += 1;
                if cp.kind == Kind::Rewrite {
                    self.saves.rewrites += 1;
                }
                self.saves.image_offset = cp.offset;
                self.dirty_at_save = cp.dirty_at_start;
                self.last_save = unix_ms() / 1000;
                self.persist.log_blocked = false;
                tracing::info!(
                    keys = self.saves.image_keys,
                    offset = cp.offset,
                    seconds = cp.started.elapsed().as_secs_f64(),
                    "checkpoint done"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
    }

    /// SAVE: a checkpoint run to the end before anything else.
    pub(crate) fn save_now(&mut self) -> Result<(), String> {
        self.start_checkpoint(Kind::Save)?;
        while self.checkpoint.is_some() {
            if !self.checkpoint_step(Duration::from_millis(100)) {
                break;
            }
            if self.checkpoint.as_ref().is_some_and(|c| c.committing) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.saves.last_ok {
            Ok(())
        } else {
            Err("ERR".into())
        }
    }

    /// From the cron: `save` rules, scheduled saves, automatic log rewrites.
    pub(crate) fn checkpoint_cron(&mut self) {
        if self.checkpoint.is_some() || self.persist.loading.is_some() || self.repl.sync.is_some() {
            return;
        }
        if std::mem::take(&mut self.saves.scheduled_rewrite) {
            let _ = self.start_checkpoint(Kind::Rewrite);
            return;
        }
        if std::mem::take(&mut self.saves.scheduled_bgsave) {
            let _ = self.start_checkpoint(Kind::Bgsave);
            return;
        }
        let changes = self.dirty.saturating_sub(self.dirty_at_save);
        let since = (unix_ms() / 1000).saturating_sub(self.last_save) as u64;
        // After a failure, retry no sooner than 5 s later (Redis's CONFIG_BGSAVE_RETRY_DELAY).
        let may_retry = self.saves.last_ok
            || self
                .saves
                .last_attempt
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if may_retry
            && changes > 0
            && parse_save_rules(&self.config.save)
                .unwrap_or_default()
                .iter()
                .any(|&(secs, n)| changes >= n && since >= secs)
        {
            let _ = self.start_checkpoint(Kind::Bgsave);
            return;
        }
        // The log is rewritten when it has grown past the image by 100% and at least 64 MB
        // (Redis's auto-aof-rewrite-percentage and auto-aof-rewrite-min-size defaults).
        if self.persist.aof && may_retry {
            let log = self.effects.offset.saturating_sub(self.saves.image_offset);
            let base = self.persist.store.as_ref().map_or(0, |s| s.disk_sizes().1);
            if log >= (64 << 20) && log >= base {
                let _ = self.start_checkpoint(Kind::Rewrite);
            }
        }
    }

    /// At shutdown: the log is written and synced; a checkpoint is taken when SHUTDOWN SAVE
    /// asked for one, or by default when `save` rules are set and something changed.
    pub(crate) fn persist_on_shutdown(&mut self) {
        if self.persist.loading.is_some() {
            return;
        }
        self.persist_turn();
        self.drain_committer();
        if self.persist.aof
            && let Some(store) = &self.persist.store
            && let Err(e) = store.sync()
        {
            tracing::warn!(error = %e, "syncing the log at shutdown failed");
        }
        let rules = !self.config.save.trim().is_empty();
        let changed = self.dirty != self.dirty_at_save;
        let save = self.shutdown_save.unwrap_or(rules && changed);
        if save {
            self.abort_checkpoint();
            tracing::warn!("saving the final checkpoint before exiting");
            if self.save_now().is_err() {
                tracing::warn!("the final checkpoint failed");
            }
        }
    }

    /// The MISCONF text while the last checkpoint failed and `save` rules are set (Redis's
    /// `stop-writes-on-bgsave-error yes`).
    pub(crate) fn bgsave_misconf(&self) -> Option<&'static str> {
        (!self.saves.last_ok && !self.config.save.trim().is_empty()).then_some(
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.",
        )
    }
}
