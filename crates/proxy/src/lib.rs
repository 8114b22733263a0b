//! `tessera proxy`: one endpoint for a database of many shards (issue 8, `docs/CLUSTER.md`).
//!
//! Threads each run their own loop (`worker`) with their own listening socket on the same port
//! (`SO_REUSEPORT`), their own clients and their own connections to the shards. A client's
//! command is parsed with the protocol crate's parser and command table, routed by the hash
//! slot of its keys to the primary serving it, and written into that shard's connection with
//! whatever else is queued for it (one write per loop turn: just-in-time pipelining). Replies
//! come back in order on each shard connection and are put back in each client's order.
//! Multi-key commands are split by slot and merged; all-shard commands are fanned out
//! (`commands`, `merge`).
//!
//! A watcher thread (`tessera_watch`) keeps the database's topology from the control group;
//! workers take a newer one at the top of their next turn.

mod acl;
mod clients;
mod commands;
mod merge;
mod monitor;
mod pubsub;
mod tracking;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tessera_acl::{Acl, LogEntry};
use tessera_protocol::clients::Pause;
use tessera_protocol::cluster::Topology;

/// What a proxy serves and where.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Port to listen on; `None`: the database's endpoint port from the configuration.
    pub port: Option<u16>,
    /// The host the proxy names itself by in CLUSTER SLOTS / SHARDS / NODES (default: the
    /// bind address, or 127.0.0.1 when that is a wildcard).
    pub announce_host: Option<String>,
    /// Worker threads.
    pub threads: usize,
    /// Control members' API addresses (`host:port`), asked in turn.
    pub control: Vec<String>,
    /// The control group's admin token, to read the configuration.
    pub token: Option<String>,
    /// The database this proxy serves.
    pub database: String,
}

/// A client's private connection as its shard knows it.
struct ShardConn {
    /// The connection (a worker's backend key).
    backend: usize,
    addr: String,
    /// The shard's client id for it.
    id: u64,
}

/// State the workers share: the newest topology and the wakers to tell them about it.
pub(crate) struct Shared {
    topology: Mutex<Option<Arc<Topology>>>,
    /// The users of `topology`, made again only when its users or password change (a worker
    /// tells a change by the pointer).
    users: Mutex<Option<Arc<Acl>>>,
    /// ACL LOG, for every worker.
    acl_log: Mutex<VecDeque<LogEntry>>,
    /// The control members and the token, for the changes the proxy makes (ACL SETUSER).
    control: Vec<String>,
    token: Option<String>,
    epoch: AtomicU64,
    wakers: OnceLock<Vec<Arc<mio::Waker>>>,
    /// Each worker's mailbox (CLIENT LIST and KILL across workers).
    mail: OnceLock<Vec<Mutex<Vec<clients::Mail>>>>,
    next_client_id: AtomicU64,
    /// Every client's worker and its key there, by id (CLIENT TRACKING REDIRECT's target).
    clients: Mutex<HashMap<u64, (usize, usize)>>,
    /// Each client's private shard connections that the shard named (for CLIENT UNBLOCK).
    shard_ids: Mutex<HashMap<u64, Vec<ShardConn>>>,
    /// CLIENT PAUSE, for every client of the proxy; `pausing` says whether to look.
    pause: Mutex<Option<Pause>>,
    pausing: AtomicBool,
    /// Where clients reach this proxy: `host`, `port`.
    pub host: String,
    pub port: OnceLock<u16>,
    pub database: String,
    /// What the proxy authenticates to the shards with (`tessera_acl::internal`).
    pub internal_secret: String,
}

impl Shared {
    fn publish(&self, t: Topology) {
        let epoch = t.epoch;
        {
            let mut cur = self.topology.lock().expect("topology lock");
            if cur.as_ref().is_some_and(|c| c.epoch >= epoch) {
                return;
            }
            let same_users = cur
                .as_ref()
                .is_some_and(|c| c.users == t.users && c.password == t.password);
            if !same_users {
                let acl = acl::users_of(t.password.as_deref(), &t.users);
                *self.users.lock().expect("users lock") = Some(Arc::new(acl));
            }
            *cur = Some(Arc::new(t));
        }
        self.epoch.store(epoch, Ordering::Release);
        tracing::info!("proxy: configuration epoch {epoch}");
        for w in self.wakers.get().into_iter().flatten() {
            let _ = w.wake();
        }
    }

    /// The newest topology, with its epoch.
    pub(crate) fn topology(&self) -> Option<Arc<Topology>> {
        self.topology.lock().expect("topology lock").clone()
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The users of the newest topology.
    pub(crate) fn users(&self) -> Option<Arc<Acl>> {
        self.users.lock().expect("users lock").clone()
    }

    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records that client `id` is `key` on worker `worker`, or (`None`) that it has gone.
    pub(crate) fn register(&self, id: u64, at: Option<(usize, usize)>) {
        let mut clients = self.clients.lock().expect("clients lock");
        match at {
            Some(at) => clients.insert(id, at),
            None => {
                self.shard_ids.lock().expect("shard ids lock").remove(&id);
                clients.remove(&id)
            }
        };
    }

    /// Records the shard's id for client `id`'s private connection `b` to `addr` (none: the
    /// connection is closed).
    pub(crate) fn note_shard_id(&self, id: u64, b: usize, addr: &str, shard_id: Option<u64>) {
        let mut all = self.shard_ids.lock().expect("shard ids lock");
        let list = all.entry(id).or_default();
        list.retain(|c| c.backend != b);
        if let Some(id) = shard_id {
            list.push(ShardConn {
                backend: b,
                addr: addr.to_string(),
                id,
            });
        }
        if list.is_empty() {
            all.remove(&id);
        }
    }

    /// Client `id`'s private connections as the shards know them: (address, shard's id).
    pub(crate) fn shard_ids(&self, id: u64) -> Vec<(String, u64)> {
        let all = self.shard_ids.lock().expect("shard ids lock");
        all.get(&id)
            .map(|l| l.iter().map(|c| (c.addr.clone(), c.id)).collect())
            .unwrap_or_default()
    }

    /// The CLIENT PAUSE in force at `now`.
    pub(crate) fn pause(&self, now: Instant) -> Option<Pause> {
        if !self.pausing.load(Ordering::Acquire) {
            return None;
        }
        let mut p = self.pause.lock().expect("pause lock");
        match *p {
            Some(pause) if pause.until > now => Some(pause),
            _ => {
                *p = None;
                self.pausing.store(false, Ordering::Release);
                None
            }
        }
    }

    /// True while a CLIENT PAUSE may be in force (one atomic read, for every command).
    pub(crate) fn pausing(&self) -> bool {
        self.pausing.load(Ordering::Relaxed)
    }

    /// Starts, extends or (with `None`) ends the pause; the workers look at their held
    /// clients again.
    pub(crate) fn set_pause(&self, pause: Option<Pause>) {
        let mut p = self.pause.lock().expect("pause lock");
        *p = pause;
        self.pausing.store(pause.is_some(), Ordering::Release);
        drop(p);
        for w in self.wakers.get().into_iter().flatten() {
            let _ = w.wake();
        }
    }

    /// Where client `id` is: its worker and its key there.
    pub(crate) fn locate(&self, id: u64) -> Option<(usize, usize)> {
        self.clients.lock().expect("clients lock").get(&id).copied()
    }

    /// The number of workers.
    pub(crate) fn workers(&self) -> usize {
        self.wakers.get().map_or(0, Vec::len)
    }

    /// Leaves `mail` in worker `w`'s mailbox and wakes it.
    pub(crate) fn post(&self, w: usize, mail: clients::Mail) {
        if let (Some(boxes), Some(wakers)) = (self.mail.get(), self.wakers.get()) {
            boxes[w].lock().expect("mailbox lock").push(mail);
            let _ = wakers[w].wake();
        }
    }

    /// Empties worker `w`'s mailbox.
    pub(crate) fn take_mail(&self, w: usize) -> Vec<clients::Mail> {
        match self.mail.get() {
            Some(boxes) => std::mem::take(&mut *boxes[w].lock().expect("mailbox lock")),
            None => Vec::new(),
        }
    }
}

/// A running proxy: its worker threads serve until the process ends.
pub struct Proxy {
    addr: SocketAddr,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts watching the configuration, binds the listening sockets and starts the workers.
    /// Without a port, the database's endpoint port is taken from the first configuration.
    pub fn start(config: Config) -> anyhow::Result<Proxy> {
        if config.control.is_empty() {
            bail!("the proxy needs at least one control member (--control)");
        }
        let host = match &config.announce_host {
            Some(h) => h.clone(),
            None if config.bind == "0.0.0.0" || config.bind == "::" => "127.0.0.1".to_string(),
            None => config.bind.clone(),
        };
        let shared = Arc::new(Shared {
            topology: Mutex::new(None),
            users: Mutex::new(None),
            acl_log: Mutex::new(VecDeque::new()),
            control: config.control.clone(),
            token: config.token.clone(),
            epoch: AtomicU64::new(0),
            wakers: OnceLock::new(),
            mail: OnceLock::new(),
            next_client_id: AtomicU64::new(1),
            clients: Mutex::new(HashMap::new()),
            shard_ids: Mutex::new(HashMap::new()),
            pause: Mutex::new(None),
            pausing: AtomicBool::new(false),
            host,
            port: OnceLock::new(),
            database: config.database.clone(),
            internal_secret: tessera_acl::internal::secret(
                config.token.as_deref().unwrap_or(""),
                &config.database,
            ),
        });
        let watched = Arc::clone(&shared);
        tessera_watch::spawn(
            config.control.clone(),
            config.token.clone(),
            config.database.clone(),
            move |t| {
                watched.publish(t);
                true
            },
        )
        .context("starting the configuration watcher")?;

        let port = match config.port {
            Some(p) => p,
            None => wait_for_port(&shared)?,
        };
        let addr = (config.bind.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", config.bind))?
            .next()
            .with_context(|| format!("no address for {}", config.bind))?;
        let count = config.threads.max(1);
        if addr.port() != 0 {
            claim(addr).with_context(|| format!("listening on {addr}"))?;
        }
        let mut listeners = Vec::with_capacity(count);
        let mut bound = addr;
        for i in 0..count {
            let l = listen(bound).with_context(|| format!("listening on {bound}"))?;
            if i == 0 {
                bound = l.local_addr()?;
            }
            listeners.push(l);
        }
        let _ = shared.port.set(bound.port());
        let mut workers = Vec::with_capacity(count);
        let mut wakers = Vec::with_capacity(count);
        let _ = shared
            .mail
            .set((0..count).map(|_| Mutex::new(Vec::new())).collect());
        for (i, l) in listeners.into_iter().enumerate() {
            let w = worker::Worker::new(Arc::clone(&shared), i, l)?;
            wakers.push(w.waker());
            workers.push(w);
        }
        let _ = shared.wakers.set(wakers);
        let threads = workers
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                std::thread::Builder::new()
                    .name(format!("proxy-{i}"))
                    .spawn(move || w.run())
            })
            .collect::<Result<_, _>>()
            .context("starting the worker threads")?;
        tracing::info!(
            "proxy for database '{}' listening on {bound} with {count} threads",
            config.database
        );
        Ok(Proxy {
            addr: bound,
            threads,
        })
    }

    /// Where the proxy listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the workers (they run until the process ends).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Waits for the first configuration, for the database's endpoint port.
fn wait_for_port(shared: &Shared) -> anyhow::Result<u16> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        if let Some(t) = shared.topology() {
            if t.port == 0 {
                bail!("database '{}' has no endpoint port", shared.database);
            }
            return Ok(t.port);
        }
        if !warned && started.elapsed() > Duration::from_secs(10) {
            warned = true;
            tracing::warn!(
                "proxy: still waiting for the configuration of database '{}'",
                shared.database
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fails when something listens on `addr` already, another proxy's `SO_REUSEPORT` sockets
/// included (which [`listen`] would otherwise join, splitting the clients between the two).
fn claim(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// A listening socket that other threads' sockets share the port of (`SO_REUSEPORT`).
fn listen(addr: SocketAddr) -> std::io::Result<mio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}
