//! The publish bus (issue 8, `docs/CLUSTER.md`, "Pub/sub across shards"): a PUBLISH a shard
//! serves reaches the subscribers of every node of its database, primaries and replicas, and
//! an SPUBLISH those of its shard's replicas, as Redis Cluster's bus carries them.
//!
//! Each other node gets a thread with one connection, authenticated as the internal bus
//! (`tessera_acl::internal`) with `CLIENT REPLY OFF`; the loop hands it encoded `PUBLISH`
//! commands through a bounded queue and never waits. Whatever is queued goes in one write. A
//! node that cannot be reached, or whose queue is full, misses the messages meanwhile (counted,
//! logged once per outage): pub/sub is at most once, and Redis Cluster drops them on a broken
//! link too. The receiving shard delivers a bus PUBLISH to its own subscribers only.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tessera_acl::internal::Internal;

use crate::repl::handshake::command;

/// Messages queued for one node before new ones are dropped.
const QUEUE: usize = 16 * 1024;
/// Bytes gathered into one write.
const BATCH: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A node that takes no bytes for this long is dropped and reconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an unreachable node is left before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// Another node's thread.
struct Peer {
    /// Its queue; dropping the sender ends the thread.
    queue: SyncSender<Arc<[u8]>>,
    /// The node is of this node's shard.
    same_shard: bool,
    /// Its queue was full at the last message (logged once until one gets through).
    full: AtomicBool,
}

pub struct Bus {
    secret: String,
    /// `host:port` of every other node to its thread.
    peers: HashMap<String, Peer>,
    /// Messages that did not reach a node.
    dropped: Arc<AtomicU64>,
}

impl Bus {
    pub fn new(secret: String) -> Bus {
        Bus {
            secret,
            peers: HashMap::new(),
            dropped: Arc::default(),
        }
    }

    /// The other nodes of the database from a new topology, each with whether it is of this
    /// node's shard.
    pub fn set_peers(&mut self, addrs: BTreeMap<String, bool>) {
        self.peers.retain(|a, _| addrs.contains_key(a));
        for (addr, same_shard) in addrs {
            if let Some(peer) = self.peers.get_mut(&addr) {
                peer.same_shard = same_shard;
                continue;
            }
            let (tx, rx) = sync_channel(QUEUE);
            let (secret, dropped) = (self.secret.clone(), Arc::clone(&self.dropped));
            let name = format!("bus {addr}");
            let target = addr.clone();
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || run_peer(&target, &secret, &rx, &dropped))
            {
                Ok(_) => {
                    self.peers.insert(
                        addr,
                        Peer {
                            queue: tx,
                            same_shard,
                            full: AtomicBool::new(false),
                        },
                    );
                }
                Err(e) => tracing::warn!("publish bus: no thread for {addr}: {e}"),
            }
        }
    }

    /// Messages that did not reach a node (`INFO cluster`'s `cluster_bus_dropped_messages`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends `PUBLISH channel message` to every other node, or `SPUBLISH` to the other nodes
    /// of this shard (`shard`).
    pub fn forward(&self, channel: &[u8], message: &[u8], shard: bool) {
        if self.peers.is_empty() {
            return;
        }
        let word: &[u8] = if shard { b"SPUBLISH" } else { b"PUBLISH" };
        let frame: Arc<[u8]> = command(&[word, channel, message]).into();
        for (addr, peer) in &self.peers {
            if shard && !peer.same_shard {
                continue;
            }
            match peer.queue.try_send(Arc::clone(&frame)) {
                Ok(()) => peer.full.store(false, Ordering::Relaxed),
                Err(e) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, TrySendError::Full(_))
                        && !peer.full.swap(true, Ordering::Relaxed)
                    {
                        tracing::warn!(
                            "publish bus: {addr} takes messages slower than they come; its subscribers miss messages until it catches up"
                        );
                    }
                }
            }
        }
    }
}

/// One node's thread: writes what is queued, (re)connecting as needed, until the bus lets the
/// node go.
fn run_peer(addr: &str, secret: &str, rx: &Receiver<Arc<[u8]>>, dropped: &AtomicU64) {
    let mut link: Option<TcpStream> = None;
    let mut retry_at = Instant::now();
    let mut down = false;
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv() {
        buf.clear();
        buf.extend_from_slice(&first);
        let mut n = 1u64;
        while buf.len() < BATCH {
            let Ok(f) = rx.try_recv() else { break };
            buf.extend_from_slice(&f);
            n += 1;
        }
        if link.as_ref().is_some_and(|s| !open(s)) {
            link = None;
        }
        if link.is_none() && Instant::now() >= retry_at {
            match connect(addr, secret) {
                Ok(s) => {
                    if down {
                        tracing::info!("publish bus: {addr} is reached again");
                    }
                    down = false;
                    link = Some(s);
                }
                Err(e) => {
                    if !down {
                        tracing::warn!(
                            "publish bus: cannot reach {addr} ({e}); its subscribers miss messages until it answers"
                        );
                    }
                    down = true;
                    retry_at = Instant::now() + RETRY;
                }
            }
        }
        let sent = link.as_mut().is_some_and(|s| match s.write_all(&buf) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("publish bus: writing to {addr}: {e}");
                false
            }
        });
        if !sent {
            link = None;
            dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// An authenticated connection to the node at `addr` that answers nothing.
fn connect(addr: &str, secret: &str) -> io::Result<TcpStream> {
    let to = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    let mut hello = command(&[b"AUTH", Internal::Bus.name().as_bytes(), secret.as_bytes()]);
    hello.extend_from_slice(&command(&[b"CLIENT", b"REPLY", b"OFF"]));
    s.write_all(&hello)?;
    let mut reply = [0u8; 5];
    s.read_exact(&mut reply)?;
    if &reply != b"+OK\r\n" {
        return Err(io::Error::other(format!(
            "the node refused the internal identity ({})",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(s)
}

/// False once the node closed the connection or sent anything (it answers nothing after
/// `CLIENT REPLY OFF`, so bytes are an error before it closes).
fn open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let peeked = s.peek(&mut [0u8; 1]);
    let waiting = matches!(&peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).is_ok() && waiting
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn counts_what_an_unreachable_node_misses() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .to_string();
        let mut bus = Bus::new("secret".into());
        bus.set_peers(BTreeMap::from([(addr, false)]));
        bus.forward(b"ch", b"m1", false);
        // An SPUBLISH is not for a node of another shard: not sent, not missed.
        bus.forward(b"ch", b"m2", true);
        wait_for("the miss to be counted", || bus.dropped() == 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(bus.dropped(), 1);
    }

    #[test]
    fn sends_as_the_internal_bus_and_counts_what_a_stalled_node_misses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut bus = Bus::new("secret".into());
        bus.set_peers(BTreeMap::from([(addr, true)]));
        bus.forward(b"ch", b"first", true);

        let (mut node, _) = listener.accept().unwrap();
        node.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut expected = command(&[b"AUTH", b"internal bus", b"secret"]);
        expected.extend_from_slice(&command(&[b"CLIENT", b"REPLY", b"OFF"]));
        let mut hello = vec![0u8; expected.len()];
        node.read_exact(&mut hello).unwrap();
        assert_eq!(hello, expected);
        node.write_all(b"+OK\r\n").unwrap();
        let expected = command(&[b"SPUBLISH", b"ch", b"first"]);
        let mut first = vec![0u8; expected.len()];
        node.read_exact(&mut first).unwrap();
        assert_eq!(first, expected);

        // The node reads nothing more: its socket buffers and then its queue fill, and the
        // loop drops what does not fit instead of waiting.
        let message = vec![b'x'; 1024];
        let started = Instant::now();
        for _ in 0..4 * QUEUE {
            bus.forward(b"ch", &message, true);
        }
        assert!(started.elapsed() < Duration::from_secs(2), "forward waited");
        assert!(bus.dropped() > 0, "nothing dropped");
        assert!(bus.dropped() < 4 * QUEUE as u64, "everything dropped");
    }
}
