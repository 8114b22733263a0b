//! Persistence at run time: the effect log (the AOF analogue) written to the RocksDB store once
//! per event-loop turn, the `appendfsync` policies, and recovery (loading the image and
//! replaying the log tail) with `-LOADING` replies meanwhile.
//!
//! - `appendfsync always`: the turn's effects are written and synced before any reply of the
//!   turn leaves (group commit: one sync for every write of the turn, whatever the number of
//!   clients). A client whose reply may depend on effects not yet durable is held
//!   ([`crate::client::Client::wait_offset`]) until they are.
//! - `everysec`: the turn's effects are written (to the OS, which survives a process crash);
//!   a helper thread syncs once a second.
//! - `no`: written each turn, synced when the OS decides.
//!
//! A failed write keeps its bytes and is retried every turn; meanwhile write commands get
//! `-MISCONF` and `INFO persistence` shows `aof_last_write_status:err`. Reads keep working.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_persist::{Store, StoreError};
use tessera_protocol::{Limits, RequestParser};
use tessera_storage::snapshot::{Record, for_each_record};

use crate::server::{Server, unix_ms};

/// The store's directory inside `dir`.
pub const DATA_DIR: &str = "tessera-data";

/// `appendfsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    pub fn parse(s: &str) -> Option<Fsync> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }
}

/// The `everysec` helper thread: syncs the store once a second when something was written.
struct Syncer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// `appendfsync always`: the thread that writes and syncs each turn's effects while the loop
/// goes on with the next turn. Replies wait for it (`Client::wait_offset`); it wakes the loop
/// when a sync is done. Runs queued meanwhile are written together, under one sync. After a
/// failed write it hands back that run and every later one, in order, and stops; the loop
/// then writes itself (retrying, reopening the store) until the disk accepts writes again.
struct Committer {
    tx: Option<std::sync::mpsc::Sender<(u64, Vec<u8>)>>,
    returned: Receiver<(u64, Vec<u8>)>,
    /// Runs sent and not yet done or handed back.
    in_flight: usize,
    done: Arc<AtomicU64>,
    done_seen: u64,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn committer_thread(
    store: &Store,
    state: &SyncState,
    rx: &Receiver<(u64, Vec<u8>)>,
    back: &std::sync::mpsc::Sender<(u64, Vec<u8>)>,
    done: &AtomicU64,
    waker: &mio::Waker,
) {
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let mut runs = vec![first];
        while let Ok(more) = rx.try_recv() {
            runs.push(more);
        }
        if !failed {
            match store.append_many(&runs, true) {
                Ok(()) => {
                    let (start, bytes) = runs.last().expect("one run at least");
                    let end = start + bytes.len() as u64;
                    state.written.store(end, Ordering::Release);
                    state.durable.store(end, Ordering::Release);
                    done.fetch_add(runs.len() as u64, Ordering::AcqRel);
                    let _ = waker.wake();
                    continue;
                }
                Err(e) => {
                    *state.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    failed = true;
                }
            }
        }
        for run in runs {
            let _ = back.send(run);
        }
        let _ = waker.wake();
    }
}

/// Turns with at least this many bytes of effects are synced by the committer thread.
const ASYNC_COMMIT_BYTES: usize = 16 << 10;

/// Shared between the loop and the syncer.
#[derive(Default)]
struct SyncState {
    /// Offset after the last byte written to the store.
    written: AtomicU64,
    /// Offset after the last byte known durable.
    durable: AtomicU64,
    error: Mutex<Option<String>>,
}

/// Loading in progress: batches from the loader thread, applied a slice of time per turn.
pub struct Loading {
    rx: Receiver<LoadBatch>,
    pub started_unix: i64,
    pub started: Instant,
    pub total_bytes: u64,
    pub loaded_bytes: u64,
    pub keys_loaded: u64,
    parser: RequestParser,
    scratch: Vec<u8>,
}

enum LoadBatch {
    /// A chunk of image records (`tessera_storage::snapshot::RecordStream`).
    Image(Vec<u8>),
    /// A log record: its start offset and bytes.
    Log(u64, Vec<u8>),
    /// The end: the stream offset after the last record, or what went wrong.
    Done(Result<u64, String>),
}

/// The persistence state of the shard.
pub struct Persistence {
    pub store: Option<Arc<Store>>,
    pub path: PathBuf,
    /// Effects are appended to the log (`appendonly yes`).
    pub aof: bool,
    pub fsync: Fsync,
    /// Effects taken from the stream and not yet written: (start offset, bytes).
    pub(crate) unwritten: Option<(u64, Vec<u8>)>,
    sync: Arc<SyncState>,
    syncer: Option<Syncer>,
    /// The last write (or sync) failed: writes get MISCONF until one succeeds.
    pub write_error: Option<String>,
    /// Clients whose replies wait for durability.
    pub held: Vec<usize>,
    pub loading: Option<Loading>,
    pub last_load_keys: u64,
    /// The replication ID the stream offsets belong to (kept in the store).
    pub replid: String,
    /// The log is on but held back until the first checkpoint commits (`appendonly yes` at
    /// run time): effects wait in memory, as Redis's rewrite buffer.
    pub log_blocked: bool,
    last_reopen: Option<Instant>,
    committer: Option<Committer>,
    /// The durable offset up to which held replies were released.
    released: u64,
    /// Shutting down: the loop writes the last effects itself.
    shutting_down: bool,
    /// Wakes the loop when the committer is done with a run.
    waker: Option<Arc<mio::Waker>>,
}

impl Persistence {
    /// Opens the store when there is one in `dir` or `appendonly` is on; errors name the fix.
    pub fn open(dir: &Path, aof: bool, fsync: Fsync) -> Result<Persistence, StoreError> {
        let path = dir.join(DATA_DIR);
        let store = if aof || Store::exists(&path) {
            Some(Arc::new(Store::open(&path, true)?))
        } else {
            None
        };
        let mut p = Persistence {
            store,
            path,
            aof,
            fsync,
            unwritten: None,
            sync: Arc::default(),
            syncer: None,
            write_error: None,
            held: Vec::new(),
            loading: None,
            last_load_keys: 0,
            replid: String::new(),
            log_blocked: false,
            last_reopen: None,
            committer: None,
            released: 0,
            shutting_down: false,
            waker: None,
        };
        p.replid = match &p.store {
            Some(s) => s.replid()?,
            None => None,
        }
        .unwrap_or_else(crate::repl::new_replid);
        p.start_syncer();
        Ok(p)
    }

    fn start_syncer(&mut self) {
        self.syncer = None;
        let Some(store) = self.store.clone() else {
            return;
        };
        if !self.aof || self.fsync != Fsync::EverySec {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::clone(&self.sync);
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("tessera-fsync".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_secs(1));
                    let written = state.written.load(Ordering::Acquire);
                    if written > state.durable.load(Ordering::Acquire) {
                        match store.sync() {
                            Ok(()) => state.durable.store(written, Ordering::Release),
                            Err(e) => {
                                *state.error.lock().expect("not poisoned") = Some(e.to_string())
                            }
                        }
                    }
                }
            })
            .expect("spawning the fsync thread");
        self.syncer = Some(Syncer {
            stop,
            handle: Some(handle),
        });
    }

    /// Gives the persistence a way to wake the event loop (the committer's).
    pub fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.waker = Some(waker);
    }

    /// Starts the committer when `always` is on and writes succeed; stops it otherwise.
    fn ensure_committer(&mut self) {
        let wanted = self.aof
            && self.fsync == Fsync::Always
            && self.write_error.is_none()
            && !self.shutting_down;
        if !wanted {
            if self.committer.as_ref().is_some_and(|c| c.in_flight == 0) {
                self.committer = None;
            }
            return;
        }
        if self.committer.is_some() {
            return;
        }
        let (Some(store), Some(waker)) = (self.store.clone(), self.waker.clone()) else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (btx, brx) = std::sync::mpsc::channel();
        let done = Arc::new(AtomicU64::new(0));
        let (state, done2) = (Arc::clone(&self.sync), Arc::clone(&done));
        let handle = std::thread::Builder::new()
            .name("tessera-commit".into())
            .spawn(move || committer_thread(&store, &state, &rx, &btx, &done2, &waker))
            .expect("spawning the commit thread");
        self.committer = Some(Committer {
            tx: Some(tx),
            returned: brx,
            in_flight: 0,
            done,
            done_seen: 0,
            handle: Some(handle),
        });
    }

    /// The store, created in `dir` on first use (a first checkpoint, `appendonly yes`).
    pub(crate) fn store_or_create(&mut self) -> Result<Arc<Store>, String> {
        if let Some(s) = &self.store {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(Store::open(&self.path, true).map_err(|e| e.to_string())?);
        self.store = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Offset after the last byte known durable.
    pub fn durable(&self) -> u64 {
        self.sync.durable.load(Ordering::Acquire)
    }

    /// Bytes of effects waiting to be written.
    pub fn unwritten_len(&self) -> usize {
        self.unwritten.as_ref().map_or(0, |(_, b)| b.len())
    }

    /// True when replies must wait for the sync of the effects they follow.
    pub fn holds_replies(&self) -> bool {
        self.aof && self.fsync == Fsync::Always
    }
}

impl Server {
    /// At the end of a turn, before replies are written: appends the turn's effects to the
    /// log (synced under `always`), then releases the clients that waited for them.
    pub(crate) fn persist_turn(&mut self) {
        let taken = self.effects.take();
        if let Some((start, bytes)) = &taken {
            self.repl_feed(*start, bytes);
        }
        if !self.persist.aof {
            return;
        }
        if let Some((start, bytes)) = taken {
            match &mut self.persist.unwritten {
                Some((_, pending)) => pending.extend_from_slice(&bytes),
                None => self.persist.unwritten = Some((start, bytes)),
            }
        }
        let sync_error = self.persist.sync.error.lock().expect("not poisoned").take();
        if let Some(e) = sync_error {
            self.note_write_error(e);
        }
        if self.persist.log_blocked {
            return;
        }
        if self.persist_by_committer() {
            return;
        }
        let Some((start, bytes)) = self.persist.unwritten.take() else {
            return;
        };
        let store = self
            .persist
            .store
            .clone()
            .expect("the store is open while aof is on");
        let sync = self.persist.fsync == Fsync::Always;
        match store.append(start, &bytes, None, sync) {
            Ok(()) => {
                let end = start + bytes.len() as u64;
                self.persist.sync.written.store(end, Ordering::Release);
                if sync || self.persist.fsync == Fsync::No {
                    // `no` never waits on a sync: what is written counts as done.
                    self.persist.sync.durable.store(end, Ordering::Release);
                }
                if self.persist.write_error.take().is_some() {
                    tracing::warn!("the data directory accepts writes again; writes resume");
                }
                for tok in std::mem::take(&mut self.persist.held) {
                    self.schedule_write(tok);
                }
            }
            Err(StoreError::Closed { .. }) if self.persist.write_error.is_some() => {
                // Still closed after the write error that closed it: that error stands.
                self.persist.unwritten = Some((start, bytes));
            }
            Err(e) => {
                self.persist.unwritten = Some((start, bytes));
                self.note_write_error(e.to_string());
            }
        }
    }

    /// `appendfsync always` with the committer: hands it the turn's effects and releases the
    /// clients whose replies it made durable. Returns false when the loop must write itself
    /// (no committer, or a failed write being handed back).
    fn persist_by_committer(&mut self) -> bool {
        self.persist.ensure_committer();
        let Some(c) = self.persist.committer.as_mut() else {
            return false;
        };
        let done = c.done.load(Ordering::Acquire);
        c.in_flight -= (done - c.done_seen) as usize;
        c.done_seen = done;
        // Runs handed back after a failure: older than what waits, so they go first.
        let mut back: Option<(u64, Vec<u8>)> = None;
        while let Ok((start, bytes)) = c.returned.try_recv() {
            c.in_flight -= 1;
            match &mut back {
                Some((_, b)) => b.extend_from_slice(&bytes),
                None => back = Some((start, bytes)),
            }
        }
        let in_flight = c.in_flight;
        if let Some((start, mut bytes)) = back {
            if let Some((_, later)) = self.persist.unwritten.take() {
                bytes.extend_from_slice(&later);
            }
            self.persist.unwritten = Some((start, bytes));
        }
        if self.persist.write_error.is_some() {
            // Wait for every run to come back, then the loop writes (in order) itself.
            if in_flight == 0 {
                self.persist.committer = None;
            }
            return in_flight > 0 || self.persist.committer.is_some();
        }
        // A small turn (few clients, no pipelining) is synced right here: its clients wait
        // for nothing else, and a hand-off to the committer would only add latency. A big
        // one goes to the committer, and the loop reads the next requests meanwhile.
        if in_flight == 0
            && self
                .persist
                .unwritten
                .as_ref()
                .is_some_and(|(_, b)| b.len() < ASYNC_COMMIT_BYTES)
        {
            return false;
        }
        if let Some(run) = self.persist.unwritten.take() {
            let c = self.persist.committer.as_mut().expect("checked above");
            if c.tx.as_ref().is_some_and(|tx| tx.send(run).is_ok()) {
                c.in_flight += 1;
            }
        }
        let durable = self.persist.durable();
        if durable > self.persist.released {
            self.persist.released = durable;
            for tok in std::mem::take(&mut self.persist.held) {
                self.schedule_write(tok);
            }
        }
        true
    }

    /// Waits until the committer has written or handed back everything (shutdown).
    pub(crate) fn drain_committer(&mut self) {
        self.persist.shutting_down = true;
        let start = Instant::now();
        while self
            .persist
            .committer
            .as_ref()
            .is_some_and(|c| c.in_flight > 0)
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(1));
            self.persist_turn();
        }
        // In flight or handed back, every run is accounted for: the loop takes over.
        if self
            .persist
            .committer
            .as_ref()
            .is_some_and(|c| c.in_flight == 0)
        {
            self.persist.committer = None;
        }
        // What was handed back (a failed write) is written by the loop one last time.
        self.persist_turn();
    }

    /// From the cron, while writes fail: reopens the store once a second (RocksDB refuses
    /// every write after a failed one until it is reopened), so writes resume by themselves
    /// once the disk accepts them again.
    pub(crate) fn retry_store(&mut self) {
        if self.persist.write_error.is_none()
            || self
                .persist
                .last_reopen
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.persist.last_reopen = Some(Instant::now());
        if let Some(store) = &self.persist.store {
            match store.reopen() {
                Ok(()) => {
                    tracing::info!("reopened the data directory after a write error");
                    self.persist_turn();
                }
                Err(e) => tracing::warn!(error = %e, "reopening the data directory failed"),
            }
        }
    }

    fn note_write_error(&mut self, e: String) {
        // Redis's text names the system error only ("No space left on device").
        let e = match e.find("No space left on device") {
            Some(_) => "No space left on device".to_string(),
            None => e,
        };
        if self.persist.write_error.is_none() {
            tracing::warn!(error = %e, "writing the effect log failed; writes are refused (MISCONF) until it succeeds");
        }
        self.persist.write_error = Some(e);
    }

    /// Applies `appendonly` and `appendfsync` from a configuration about to take effect.
    pub(crate) fn apply_persistence_config(&mut self, next: &crate::Config) -> Result<(), String> {
        let fsync = Fsync::parse(&next.appendfsync).ok_or("invalid appendfsync")?;
        if next.appendonly && !self.persist.aof {
            if self.persist.loading.is_some() {
                return Err("the dataset is loading".into());
            }
            let store = self.persist.store_or_create()?;
            let image = store.image().map_err(|e| e.to_string())?;
            self.persist.aof = true;
            self.effects.enabled = true;
            self.update_expired_logging();
            if !self.db.is_empty() || image.is_some() || self.effects.offset != 0 {
                // The log starts at the current offset, held back until a checkpoint at that
                // offset is committed (until then a restart loads what was there before).
                self.persist.log_blocked = true;
                self.abort_checkpoint();
                if let Err(e) = self.start_checkpoint(crate::checkpoint::Kind::Rewrite) {
                    self.persist.aof = false;
                    self.update_effects_enabled();
                    self.persist.log_blocked = false;
                    return Err(e);
                }
            }
        } else if !next.appendonly && self.persist.aof {
            self.persist_turn();
            self.persist.aof = false;
            self.update_effects_enabled();
        }
        self.persist.fsync = fsync;
        self.persist.start_syncer();
        self.update_expired_logging();
        Ok(())
    }

    /// The MISCONF reply while the log cannot be written, for commands that may write.
    pub(crate) fn misconf(&self) -> Option<String> {
        self.persist
            .write_error
            .as_ref()
            .map(|e| format!("MISCONF Errors writing to the AOF file: {e}"))
    }

    /// Starts loading the store's image and log tail, if there is anything to load.
    pub(crate) fn start_loading(&mut self) -> Result<(), StoreError> {
        let Some(store) = self.persist.store.clone() else {
            return Ok(());
        };
        let image = store.image()?;
        let log_from = image.as_ref().map_or(0, |i| i.offset);
        let aof = self.persist.aof;
        // A checkpoint an earlier run did not commit leaves chunks of a newer generation.
        store.drop_generations_from(image.as_ref().map_or(1, |i| i.generation + 1))?;
        if let Some(img) = &image {
            self.scripting
                .restore_libraries(&img.functions, crate::scripting::Policy::Flush)
                .map_err(|e| StoreError::Corrupt {
                    path: store.path().to_path_buf(),
                    what: format!("a function library of the image does not load: {e}"),
                })?;
            self.db.reserve(img.keys as usize);
            self.saves.image_offset = img.offset;
            self.saves.image_keys = img.keys;
            self.saves.next_generation = img.generation + 1;
        }
        if !aof {
            // Without the log, only the image counts: a log tail left from an earlier run
            // with `appendonly yes` is stale and goes.
            store.drop_log_from(log_from)?;
        }
        if aof && image.is_none() && store.log_start()?.is_some_and(|s| s > 0) {
            return Err(StoreError::Corrupt {
                path: store.path().to_path_buf(),
                what: "the effect log starts after offset 0 but no checkpoint image covers its beginning".into(),
            });
        }
        let (log_bytes, image_bytes) = store.disk_sizes();
        let total = image_bytes + if aof { log_bytes } else { 0 };
        let (tx, rx) = sync_channel::<LoadBatch>(16);
        std::thread::Builder::new()
            .name("tessera-loader".into())
            .spawn(move || load_thread(&store, image, aof, log_from, &tx))
            .expect("spawning the loader thread");
        self.db.no_expiry = true;
        self.effects.enabled = false;
        self.persist.loading = Some(Loading {
            rx,
            started_unix: unix_ms() / 1000,
            started: Instant::now(),
            total_bytes: total,
            loaded_bytes: 0,
            keys_loaded: 0,
            parser: RequestParser::new(Limits::default()),
            scratch: Vec::new(),
        });
        self.effects.offset = log_from;
        Ok(())
    }

    /// Applies loaded batches for up to `budget`; true while loading goes on.
    pub(crate) fn load_step(&mut self, budget: Duration) -> bool {
        let Some(mut l) = self.persist.loading.take() else {
            return false;
        };
        let start = Instant::now();
        let mut done = None;
        while start.elapsed() < budget {
            let batch = match l.rx.recv_timeout(budget.saturating_sub(start.elapsed())) {
                Ok(b) => b,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    done = Some(Err("the loader thread stopped".to_string()));
                    break;
                }
            };
            match batch {
                LoadBatch::Image(chunk) => {
                    let now = unix_ms();
                    let mut keys = 0;
                    let r = for_each_record(&chunk, |slot, key, rec| {
                        keys += 1;
                        self.key_load_delay();
                        self.load_record(slot, key, rec, now).map_err(|e| {
                            format!(
                                "image record of key {:?}: {e}",
                                String::from_utf8_lossy(key)
                            )
                        })
                    });
                    if let Err(e) = r {
                        done = Some(Err(e));
                    }
                    l.keys_loaded += keys;
                    l.loaded_bytes += chunk.len() as u64;
                }
                LoadBatch::Log(offset, bytes) => {
                    l.loaded_bytes += bytes.len() as u64;
                    if let Err(e) = self.replay_record(&mut l, offset, &bytes) {
                        done = Some(Err(e));
                    }
                    self.effects.offset = offset + bytes.len() as u64;
                }
                LoadBatch::Done(r) => done = Some(r),
            }
            if done.is_some() {
                break;
            }
        }
        match done {
            None => {
                self.persist.loading = Some(l);
                true
            }
            Some(Err(e)) => {
                tracing::error!(
                    "loading {} failed: {e}. The data directory is damaged: run `tessera check-data {}`, restore it from a backup, or move it away to start empty",
                    self.persist.path.display(),
                    self.persist.path.display()
                );
                std::process::exit(1);
            }
            Some(Ok(end)) => {
                self.effects.offset = end;
                self.db.no_expiry = false;
                self.update_effects_enabled();
                self.update_expired_logging();
                self.persist.sync.written.store(end, Ordering::Release);
                self.persist.sync.durable.store(end, Ordering::Release);
                self.persist.last_load_keys = self.db.len() as u64;
                self.dirty_at_save = self.dirty;
                tracing::info!(
                    keys = self.db.len(),
                    offset = end,
                    seconds = l.started.elapsed().as_secs_f64(),
                    "DB loaded from disk"
                );
                false
            }
        }
    }

    /// `key-load-delay`: a pause per loaded key or replayed command, for tests.
    fn key_load_delay(&self) {
        if self.config.key_load_delay > 0 {
            std::thread::sleep(Duration::from_micros(self.config.key_load_delay));
        }
    }

    fn load_record(&mut self, slot: u16, key: &[u8], rec: &[u8], now: i64) -> Result<(), String> {
        let r = Record::decode(rec).ok_or("unreadable record header")?;
        let value = r.value(&self.db.limits).map_err(|e| e.to_string())?;
        // Keys of an image are distinct: no lookup before the insert.
        if !self
            .db
            .insert_loaded(usize::from(slot), key, value, r.expire_ms, now)
        {
            return Err("the key is filed under another hash slot".into());
        }
        Ok(())
    }

    fn replay_record(&mut self, l: &mut Loading, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let mut pos = 0;
        while pos < bytes.len() {
            let n = match l.parser.parse(&bytes[pos..], true) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    return Err(format!(
                        "the log record at offset {offset} ends inside a command"
                    ));
                }
                Err(e) => return Err(format!("the log record at offset {offset}: {e}")),
            };
            let args = l.parser.args(&bytes[pos..]);
            self.key_load_delay();
            if let Err(e) = self.replay(&args, &mut l.scratch) {
                if e.contains("cannot be replayed") || e.starts_with("ERR unknown command") {
                    return Err(format!("the log record at offset {offset}: {e}"));
                }
                // The command failed when it first ran too (it is in the log because it
                // changed something before failing); it fails the same way again.
                tracing::debug!(error = %e, "a replayed command failed as it did originally");
            }
            pos += n;
        }
        Ok(())
    }
}

fn load_thread(
    store: &Store,
    image: Option<tessera_persist::ImageMeta>,
    aof: bool,
    log_from: u64,
    tx: &SyncSender<LoadBatch>,
) {
    let result = (|| -> Result<u64, StoreError> {
        if let Some(img) = &image {
            store.scan_image(img.generation, |chunk| {
                Ok(tx.send(LoadBatch::Image(chunk.to_vec())).is_ok())
            })?;
        }
        if !aof {
            return Ok(log_from);
        }
        store.scan_log(log_from, |offset, bytes| {
            Ok(tx.send(LoadBatch::Log(offset, bytes.to_vec())).is_ok())
        })
    })();
    let _ = tx.send(LoadBatch::Done(result.map_err(|e| e.to_string())));
}

/// `tessera check-data DIR`: opens the store and reads all of it: the image's records (every
/// value decoded), their count against the image's, and the log after it (contiguous, every
/// record whole commands). Returns a report, or what is wrong.
pub fn check_data(dir: &Path) -> Result<String, String> {
    let path = if dir.join("CURRENT").exists() {
        dir.to_path_buf()
    } else {
        dir.join(DATA_DIR)
    };
    let store = Store::open(&path, false).map_err(|e| e.to_string())?;
    let mut report = format!("data directory {}\n", path.display());
    let image = store.image().map_err(|e| e.to_string())?;
    let limits = tessera_storage::CompactLimits::default();
    let log_from = match &image {
        None => {
            report.push_str("image: none\n");
            0
        }
        Some(img) => {
            let mut keys = 0u64;
            let mut bad: Option<String> = None;
            store
                .scan_image(img.generation, |chunk| {
                    let r = for_each_record(chunk, |slot, k, v| {
                        let ok = slot == tessera_protocol::key_hash_slot(k)
                            && Record::decode(v).is_some_and(|r| r.value(&limits).is_ok());
                        if !ok {
                            return Err(format!(
                                "the image record of key {:?} does not decode",
                                String::from_utf8_lossy(k)
                            ));
                        }
                        keys += 1;
                        Ok(())
                    });
                    match r {
                        Ok(()) => Ok(true),
                        Err(e) => {
                            bad = Some(e);
                            Ok(false)
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            if let Some(b) = bad {
                return Err(b);
            }
            if keys != img.keys {
                return Err(format!(
                    "the image has {keys} keys, its metadata says {}",
                    img.keys
                ));
            }
            report.push_str(&format!(
                "image: generation {}, offset {}, {keys} keys, saved at {} (unix ms), replication ID {}\n",
                img.generation, img.offset, img.saved_at_ms, img.replid
            ));
            img.offset
        }
    };
    if image.is_none()
        && store
            .log_start()
            .map_err(|e| e.to_string())?
            .is_some_and(|s| s > 0)
    {
        return Err("the log starts after offset 0 but no image covers its beginning".into());
    }
    let mut records = 0u64;
    let mut commands = 0u64;
    let mut parser = RequestParser::new(Limits::default());
    let mut bad: Option<String> = None;
    let end = store
        .scan_log(log_from, |offset, bytes| {
            records += 1;
            let mut pos = 0;
            while pos < bytes.len() {
                match parser.parse(&bytes[pos..], true) {
                    Ok(Some(n)) => {
                        pos += n;
                        commands += 1;
                    }
                    _ => {
                        bad = Some(format!(
                            "the log record at offset {offset} is not whole commands"
                        ));
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
        .map_err(|e| e.to_string())?;
    if let Some(b) = bad {
        return Err(b);
    }
    report.push_str(&format!(
        "log: {records} records, {commands} commands, offsets {log_from} to {end}\nok\n"
    ));
    Ok(report)
}
