//! The replica's side: REPLICAOF, the sync thread, and the primary's stream.
//!
//! A sync attempt runs on its own thread: it connects, runs the handshake and, for a full
//! sync, reads the RDB payload (EOF-marker or length format) straight from the socket into a
//! new keyspace, while the loop keeps serving the old one (Redis's `repl-diskless-load
//! swapdb`). The loop then swaps the keyspaces in one step and takes the socket over as the
//! primary's client. The primary's commands are applied through [`Server::replay`] with
//! expiry off, and the same bytes are appended to this shard's own effect stream, so its
//! offset is the primary's and its log, backlog and chained replicas get the primary's stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use tessera_protocol::Args;
use tessera_storage::rdb::{FileItem, FileReader};
use tessera_storage::{CompactLimits, Db};

use super::handshake::{Handshake, Step};
use crate::server::{Server, unix_ms};

/// The link to the primary.
pub struct Link {
    pub host: String,
    pub port: u16,
    /// The primary's client, once the stream flows.
    pub client: Option<usize>,
    /// The sync attempt in progress.
    attempt: Option<Attempt>,
    last_attempt: Option<Instant>,
    pub down_since: Instant,
    /// The database the stream's SELECT chose: only database 0 is applied.
    pub stream_db: u64,
    /// Commands of other databases skipped, and commands that failed, since the link began.
    pub skipped: u64,
    pub failed: u64,
    pub last_ack: Instant,
}

/// What a sync attempt reports while it runs.
#[derive(Default)]
pub struct Progress {
    /// 0 connecting, 1 handshake, 2 receiving the payload.
    pub phase: AtomicU8,
    /// Payload size (-1: EOF-marker format, size unknown).
    pub total: AtomicI64,
    pub read: AtomicU64,
    pub last_io_ms: AtomicI64,
}

struct Attempt {
    rx: Receiver<Outcome>,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
}

enum Outcome {
    Full {
        stream: TcpStream,
        leftover: Vec<u8>,
        db: Box<Db>,
        /// The primary's function libraries.
        functions: Vec<Vec<u8>>,
        replid: String,
        offset: u64,
        skipped: u64,
    },
    Continue {
        stream: TcpStream,
        leftover: Vec<u8>,
        replid: Option<String>,
    },
    Failed(String),
}

impl Link {
    pub fn new(host: String, port: u16) -> Link {
        Link {
            host,
            port,
            client: None,
            attempt: None,
            last_attempt: None,
            down_since: Instant::now(),
            stream_db: 0,
            skipped: 0,
            failed: 0,
            last_ack: Instant::now(),
        }
    }

    /// True while the primary's stream flows (`master_link_status:up`).
    pub fn is_up(&self) -> bool {
        self.client.is_some()
    }

    /// Redis's ROLE state: connect, connecting, sync, connected.
    pub fn state(&self) -> &'static str {
        if self.client.is_some() {
            return "connected";
        }
        match &self.attempt {
            None => "connect",
            Some(a) => match a.progress.phase.load(Ordering::Relaxed) {
                0 => "connecting",
                1 => "handshake",
                _ => "sync",
            },
        }
    }

    /// The payload transfer in progress: (total or -1, read, seconds since the last I/O).
    pub fn transfer(&self) -> Option<(i64, u64, i64)> {
        let a = self.attempt.as_ref()?;
        let p = &a.progress;
        if p.phase.load(Ordering::Relaxed) < 2 {
            return None;
        }
        let idle = (unix_ms() - p.last_io_ms.load(Ordering::Relaxed)) / 1000;
        Some((
            p.total.load(Ordering::Relaxed),
            p.read.load(Ordering::Relaxed),
            idle.max(0),
        ))
    }

    fn cancel(&mut self) {
        if let Some(a) = self.attempt.take() {
            a.cancel.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Settings a sync thread needs.
struct SyncParams {
    addr: String,
    auth: Option<(Option<String>, String)>,
    my_port: u16,
    replid: String,
    offset: u64,
    timeout: Duration,
    limits: CompactLimits,
    lfu: bool,
}

/// Counts payload bytes as they are read.
struct Counting<'a, R> {
    inner: R,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    read: u64,
}

impl<R: BufRead> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<'_, R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("sync cancelled"));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.read += n as u64;
        if self.read & 0xFFFF < n as u64 {
            self.progress.read.store(self.read, Ordering::Relaxed);
            self.progress.last_io_ms.store(unix_ms(), Ordering::Relaxed);
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = Vec::new();
    r.take(64 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading from master: {e}"))?;
    if line.last() != Some(&b'\n') {
        return Err("the master closed the connection".into());
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| "the master sent a line that is not text".into())
}

fn sync_thread(p: SyncParams, progress: &Progress, cancel: &AtomicBool) -> Outcome {
    match run_sync(p, progress, cancel) {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e),
    }
}

fn run_sync(p: SyncParams, progress: &Progress, cancel: &AtomicBool) -> Result<Outcome, String> {
    let addrs: Vec<SocketAddr> = p
        .addr
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", p.addr))?
        .collect();
    let addr = addrs
        .first()
        .ok_or("the master's address resolves to nothing")?;
    let stream = TcpStream::connect_timeout(addr, p.timeout)
        .map_err(|e| format!("Error condition on socket for SYNC: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(p.timeout))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader =
        BufReader::with_capacity(256 << 10, stream.try_clone().map_err(|e| e.to_string())?);
    progress.phase.store(1, Ordering::Relaxed);
    let mut hs = Handshake::new(p.auth, p.my_port, p.replid, p.offset);
    let mut send = hs.start();
    let (replid, offset) = loop {
        writer
            .write_all(&send)
            .map_err(|e| format!("writing to master: {e}"))?;
        let mut line = read_line(&mut reader)?;
        // A primary preparing the payload sends newlines to keep the link alive.
        while line.is_empty() {
            line = read_line(&mut reader)?;
        }
        match hs.on_reply(&line) {
            Step::Send(b) => send = b,
            Step::Failed(e) => return Err(e),
            Step::Continue { replid } => {
                let leftover = reader.buffer().to_vec();
                return Ok(Outcome::Continue {
                    stream,
                    leftover,
                    replid,
                });
            }
            Step::FullSync { replid, offset } => break (replid, offset),
        }
    };
    // The payload: `$EOF:<40 bytes>` (diskless) or `$<length>`, after keep-alive newlines.
    let mut header = read_line(&mut reader)?;
    while header.is_empty() {
        header = read_line(&mut reader)?;
    }
    if let Some(e) = header.strip_prefix('-') {
        return Err(format!("MASTER aborted replication with an error: {e}"));
    }
    let spec = header
        .strip_prefix('$')
        .ok_or_else(|| format!("Bad protocol from MASTER, the first byte is not '$': {header}"))?;
    let mark = match spec.strip_prefix("EOF:") {
        Some(m) if m.len() == 40 => Some(m.as_bytes().to_vec()),
        Some(_) => return Err("the master's EOF marker is not 40 bytes".into()),
        None => None,
    };
    let length = match &mark {
        Some(_) => None,
        None => Some(
            spec.parse::<u64>()
                .map_err(|_| format!("the master sent a bad payload length: {spec}"))?,
        ),
    };
    progress
        .total
        .store(length.map_or(-1, |l| l as i64), Ordering::Relaxed);
    progress.last_io_ms.store(unix_ms(), Ordering::Relaxed);
    progress.phase.store(2, Ordering::Relaxed);
    let started = Instant::now();
    let mut db = Box::new(Db::new());
    db.limits = p.limits;
    db.lfu = p.lfu;
    db.keep_expired = true;
    let mut skipped = 0u64;
    let mut functions = Vec::new();
    {
        let mut counting = Counting {
            inner: &mut reader,
            progress,
            cancel,
            read: 0,
        };
        let mut limited;
        let input: &mut dyn BufRead = match length {
            Some(l) => {
                limited = (&mut counting).take(l);
                &mut limited
            }
            None => &mut counting,
        };
        load_payload(input, &mut db, &mut functions, &p.limits, &mut skipped)?;
        if let Some(l) = length {
            // Whatever the RDB did not use of the announced length is skipped.
            let used = counting.read;
            if used < l {
                std::io::copy(&mut (&mut counting).take(l - used), &mut std::io::sink())
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    if let Some(mark) = mark {
        let mut got = [0u8; 40];
        reader
            .read_exact(&mut got)
            .map_err(|e| format!("reading the payload's end marker: {e}"))?;
        if got[..] != mark[..] {
            return Err("the payload does not end with its EOF marker".into());
        }
    }
    tracing::info!(
        keys = db.len(),
        skipped,
        seconds = started.elapsed().as_secs_f64(),
        "MASTER <-> REPLICA sync: payload loaded"
    );
    let leftover = reader.buffer().to_vec();
    Ok(Outcome::Full {
        stream,
        leftover,
        db,
        functions,
        replid,
        offset,
        skipped,
    })
}

/// `REPLCONF ACK <offset>`, as a replica tells its primary how far it has applied the stream.
fn ack(out: &mut Vec<u8>, offset: u64) {
    let mut n = itoa::Buffer::new();
    tessera_protocol::Reply::new(out, false)
        .command(3, [&b"REPLCONF"[..], b"ACK", n.format(offset).as_bytes()]);
}

/// Reads an RDB payload into `db` and `functions` (library codes). Keys of databases other than
/// 0 are counted in `skipped`.
fn load_payload(
    input: &mut dyn BufRead,
    db: &mut Db,
    functions: &mut Vec<Vec<u8>>,
    limits: &CompactLimits,
    skipped: &mut u64,
) -> Result<(), String> {
    let mut file = FileReader::open(input, *limits).map_err(|e| format!("the payload: {e}"))?;
    let now = unix_ms();
    let mut reserved = false;
    while let Some(item) = file
        .next_item()
        .map_err(|e| format!("the payload at byte {}: {e}", file.position()))?
    {
        match item {
            FileItem::Key {
                db: n,
                key,
                value,
                expire_ms,
                ..
            } => {
                if n != 0 {
                    *skipped += 1;
                    continue;
                }
                if db.find_stored(&key).is_some() {
                    return Err(format!(
                        "the payload holds key {:?} twice",
                        String::from_utf8_lossy(&key)
                    ));
                }
                let slot = tessera_protocol::key_hash_slot(&key) as usize;
                db.insert_loaded(slot, &key, value, expire_ms, now);
            }
            FileItem::Resize { keys, .. } if !reserved => {
                reserved = true;
                // Sized up front from what the primary announces, within reason: a bad
                // figure must not allocate gigabytes before any key has arrived.
                db.reserve(keys.min(1 << 24) as usize);
            }
            FileItem::Function(code) => functions.push(code),
            FileItem::Resize { .. } | FileItem::Aux(..) => {}
        }
    }
    Ok(())
}

impl Server {
    /// `REPLICAOF host port`: follows that primary (keeping the data until the sync replaces
    /// it). Returns false if it already does.
    pub(crate) fn replicate_from(&mut self, host: String, port: u16) -> bool {
        if self
            .repl
            .link
            .as_ref()
            .is_some_and(|l| l.host.eq_ignore_ascii_case(&host) && l.port == port)
        {
            return false;
        }
        self.drop_link();
        // Chained replicas sync again with us (they continue: the ID is kept).
        self.disconnect_replicas();
        self.repl.link = Some(Link::new(host.clone(), port));
        self.ensure_backlog();
        self.db.keep_expired = true;
        self.update_repl_verify();
        tracing::info!(%host, port, "connecting to MASTER");
        self.start_sync_attempt();
        true
    }

    /// `REPLICAOF NO ONE`: becomes a primary. The stream's ID becomes the second ID, so
    /// replicas of the old primary continue with this one.
    pub(crate) fn promote(&mut self) {
        if self.repl.link.is_none() {
            return;
        }
        self.drop_link();
        let old = std::mem::replace(&mut self.repl.replid, super::new_replid());
        self.repl.replid2 = Some((old, self.effects.offset));
        self.db.keep_expired = false;
        self.update_repl_verify();
        // Replicas learn the new ID when they reconnect (and continue).
        self.disconnect_replicas();
        self.repl.no_replicas_since = Some(Instant::now());
        tracing::info!(
            replid = %self.repl.replid,
            offset = self.effects.offset,
            "MASTER MODE enabled"
        );
    }

    fn drop_link(&mut self) {
        if let Some(mut link) = self.repl.link.take() {
            link.cancel();
            if let Some(tok) = link.client.take() {
                self.free_client(tok);
            }
        }
    }

    /// Disconnects every replica of this shard.
    pub(crate) fn disconnect_replicas(&mut self) {
        self.abort_full_sync();
        for tok in std::mem::take(&mut self.repl.replicas) {
            if let Some(c) = self.clients.get_mut(tok) {
                c.close_asap = true;
                self.schedule_write(tok);
            }
        }
        self.repl.no_replicas_since = Some(Instant::now());
    }

    pub(crate) fn update_repl_verify(&mut self) {
        self.repl.verify = self.repl.is_replica() || self.config.min_replicas_to_write > 0;
    }

    fn start_sync_attempt(&mut self) {
        let Some(link) = self.repl.link.as_mut() else {
            return;
        };
        // After loading: the offset asked for is where the loaded data ends.
        if link.attempt.is_some() || link.client.is_some() || self.persist.loading.is_some() {
            return;
        }
        link.last_attempt = Some(Instant::now());
        let params = SyncParams {
            addr: format!("{}:{}", link.host, link.port),
            // In a cluster the replica is an internal connection, whatever the users say.
            auth: match self.config.internal_secret() {
                Some(secret) => Some((
                    Some(tessera_acl::internal::Internal::Replica.name().to_string()),
                    secret,
                )),
                None => self
                    .config
                    .masterauth
                    .clone()
                    .map(|p| (self.config.masteruser.clone(), p)),
            },
            my_port: self.local_addr.port(),
            replid: self.repl.replid.clone(),
            offset: self.effects.offset,
            timeout: Duration::from_secs(self.config.repl_timeout.max(1)),
            limits: self.db.limits,
            lfu: self.db.lfu,
        };
        let (tx, rx): (SyncSender<Outcome>, _) = sync_channel(1);
        let progress = Arc::new(Progress::default());
        let cancel = Arc::new(AtomicBool::new(false));
        let (p2, c2) = (Arc::clone(&progress), Arc::clone(&cancel));
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name("tessera-sync".into())
            .spawn(move || {
                let outcome = sync_thread(params, &p2, &c2);
                if tx.send(outcome).is_ok()
                    && let Some(w) = waker
                {
                    let _ = w.wake();
                }
            });
        match spawned {
            Ok(_) => {
                link.attempt = Some(Attempt {
                    rx,
                    progress,
                    cancel,
                })
            }
            Err(e) => tracing::warn!(error = %e, "cannot start the sync thread"),
        }
    }

    /// Once a turn while a sync attempt runs: takes its outcome.
    pub(crate) fn poll_sync_attempt(&mut self) {
        let Some(link) = self.repl.link.as_mut() else {
            return;
        };
        let Some(a) = &link.attempt else { return };
        let outcome = match a.rx.try_recv() {
            Ok(o) => o,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Outcome::Failed("the sync thread stopped".into()),
        };
        link.attempt = None;
        match outcome {
            Outcome::Failed(e) => {
                tracing::warn!(error = %e, host = %link.host, port = link.port, "sync with master failed; retrying in a second");
            }
            Outcome::Continue {
                stream,
                leftover,
                replid,
            } => {
                if let Some(id) = replid
                    && id != self.repl.replid
                {
                    // The primary was promoted: its new history continues ours.
                    let old = std::mem::replace(&mut self.repl.replid, id);
                    self.repl.replid2 = Some((old, self.effects.offset));
                    self.disconnect_replicas();
                }
                tracing::info!(
                    offset = self.effects.offset,
                    "MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization"
                );
                self.attach_master(stream, leftover);
            }
            Outcome::Full {
                stream,
                leftover,
                db,
                functions,
                replid,
                offset,
                skipped,
            } => {
                if skipped > 0 {
                    tracing::warn!(
                        skipped,
                        "keys of databases other than 0 in the master's payload were skipped: Tessera has database 0 only"
                    );
                }
                self.install_synced_db(db, &functions, replid, offset);
                self.attach_master(stream, leftover);
            }
        }
    }

    /// Replaces the keyspace with one loaded from the primary at `offset` of `replid`.
    fn install_synced_db(
        &mut self,
        db: Box<Db>,
        functions: &[Vec<u8>],
        replid: String,
        offset: u64,
    ) {
        // Chained replicas and anything built on the old dataset start again.
        self.disconnect_replicas();
        self.abort_checkpoint();
        self.touch_watched_existing();
        self.tracking_flush();
        let old = std::mem::replace(&mut self.db, *db);
        std::thread::spawn(move || drop(old));
        self.update_expired_logging();
        if let Err(e) = self
            .scripting
            .restore_libraries(functions, crate::scripting::Policy::Flush)
        {
            // The primary ran them: only a Lua difference gets here. The keys are kept.
            tracing::warn!(error = %e, "the master's function libraries do not load");
        }
        self.dirty += 1;
        self.repl.replid = replid;
        self.repl.replid2 = None;
        // Effects of the old dataset not yet taken are moot.
        let _ = self.effects.take();
        self.effects.offset = offset;
        if let Some(b) = &mut self.repl.backlog {
            b.reset(offset);
        }
        if self.persist.aof {
            // The log restarts at `offset` from an image of the new dataset.
            self.drain_committer();
            self.persist.unwritten = None;
            self.persist.log_blocked = true;
            if let Err(e) = self.start_checkpoint(crate::checkpoint::Kind::Rewrite) {
                tracing::warn!(error = %e, "cannot start the checkpoint of the synced dataset");
            }
        }
        tracing::info!(
            keys = self.db.len(),
            offset,
            "MASTER <-> REPLICA sync: Finished with success"
        );
    }

    /// Takes the primary's socket over as a client whose commands are the stream.
    fn attach_master(&mut self, stream: TcpStream, leftover: Vec<u8>) {
        let addr = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_read_timeout(None);
        let mut stream = mio::net::TcpStream::from_std(stream);
        let Some(tok) = self.register_client(&mut stream) else {
            return;
        };
        let id = self.next_client_id();
        let mut client = crate::client::Client::new(id, stream, addr, self.config.limits(), true);
        client.is_master = true;
        self.client_ids.insert(id, tok);
        if let Some(io) = client.io.as_mut() {
            io.end = leftover.len();
            io.buf = leftover;
        }
        let inserted = self.clients.insert(client);
        debug_assert_eq!(inserted, tok, "registered under the next free token");
        if let Some(link) = self.repl.link.as_mut() {
            link.client = Some(tok);
            link.stream_db = 0;
            link.last_ack = Instant::now();
        }
        // The first ACK tells the primary the payload is loaded.
        self.send_ack(tok);
        self.process_input(tok);
        // Data that arrived before registration raises no new edge.
        self.read_client(tok);
    }

    /// One command of the primary's stream (`raw` is its bytes).
    pub(crate) fn apply_from_master(
        &mut self,
        args: &Args<'_>,
        raw: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        let name = args.get(0);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let stream_db = self.repl.link.as_ref().map_or(0, |l| l.stream_db);
        if is("ping") || is("multi") || is("exec") {
            // Markers: PINGs keep the link alive, a transaction arrives whole in one turn.
        } else if is("replconf") {
            if args.len() >= 2 && args.get(1).eq_ignore_ascii_case(b"getack") {
                // The acknowledgement covers the stream before this command.
                ack(out, self.effects.offset);
            }
        } else if is("select") {
            let n = std::str::from_utf8(args.get(1))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            if let Some(l) = self.repl.link.as_mut() {
                l.stream_db = n;
            }
        } else if stream_db != 0 {
            if let Some(l) = self.repl.link.as_mut() {
                l.skipped += 1;
                if l.skipped.is_power_of_two() {
                    tracing::warn!(
                        skipped = l.skipped,
                        db = stream_db,
                        "commands of databases other than 0 in the master's stream are skipped: Tessera has database 0 only"
                    );
                }
            }
        } else {
            let enabled = std::mem::replace(&mut self.effects.enabled, false);
            self.db.no_expiry = true;
            let r = self.replay(args, scratch);
            self.db.no_expiry = false;
            self.effects.enabled = enabled;
            if let Err(e) = r
                && let Some(l) = self.repl.link.as_mut()
            {
                l.failed += 1;
                if l.failed.is_power_of_two() {
                    tracing::warn!(
                        error = %e,
                        failed = l.failed,
                        "a command from the master failed on this replica"
                    );
                }
            }
        }
        self.effects.append_raw(raw);
    }

    /// From the cron: reconnects a lost link, sends `REPLCONF ACK` every second, and drops a
    /// link the primary has been silent on for `repl-timeout`.
    pub(crate) fn repl_replica_cron(&mut self) {
        let Some(link) = self.repl.link.as_mut() else {
            return;
        };
        match link.client {
            None => {
                if link.attempt.is_none()
                    && link
                        .last_attempt
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    self.start_sync_attempt();
                }
            }
            Some(tok) => {
                let timeout = Duration::from_secs(self.config.repl_timeout);
                let silent = self
                    .clients
                    .get(tok)
                    .map_or(Duration::ZERO, |c| c.last_interaction.elapsed());
                if silent > timeout {
                    tracing::warn!("MASTER timeout: no data nor PING received...");
                    self.free_client(tok);
                    return;
                }
                if link.last_ack.elapsed() >= Duration::from_secs(1) {
                    link.last_ack = Instant::now();
                    self.send_ack(tok);
                }
            }
        }
    }

    fn send_ack(&mut self, tok: usize) {
        let Some(io) = self.clients.get_mut(tok).and_then(|c| c.io.as_mut()) else {
            return;
        };
        ack(&mut io.out, self.effects.offset);
        self.schedule_write(tok);
    }

    /// The primary's client went away: the link is down until the next attempt succeeds.
    pub(crate) fn master_lost(&mut self, tok: usize) {
        if let Some(link) = self.repl.link.as_mut()
            && link.client == Some(tok)
        {
            link.client = None;
            link.down_since = Instant::now();
            link.last_attempt = None;
            tracing::warn!("connection with master lost; reconnecting with PSYNC");
        }
    }
}
