//! Cluster mode (issue 8, `docs/CLUSTER.md`): the shard learns its database's topology from the
//! control group, redirects keys it does not serve as Redis Cluster does (`-MOVED`,
//! `-CROSSSLOT`, `-CLUSTERDOWN`), and answers the CLUSTER commands cluster-aware clients use.
//!
//! A watcher thread long-polls the control group's `GET /v1/config?after=EPOCH` and sends each
//! newer topology to the loop, which takes it in `before_sleep`; an older epoch never replaces
//! a newer one.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use tessera_acl::internal::Internal;
use tessera_protocol::cluster::{Node, ShardView, Topology};
use tessera_protocol::command::flag;
use tessera_protocol::{Args, CommandSpec, key_hash_slot};
use tessera_watch::users::{self, Answer};

use crate::config::Config;
use crate::server::Server;

/// The control group's answer to client id's users change.
type Answered = (u64, Answer);

/// How long the answer to a users change waits for this shard to hold the epoch it made.
const SEEN_WITHIN: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Cluster {
    pub enabled: bool,
    /// The newest topology, `None` before the first.
    pub topology: Option<Arc<Topology>>,
    /// Where this shard is in `topology`: its shard's index and whether it is the primary.
    pub me: Option<Me>,
    updates: Option<Receiver<Topology>>,
    /// PUBLISH to the other nodes of the database.
    pub bus: Option<crate::bus::Bus>,
    /// The password and users last taken from a topology.
    users_taken: Option<(Option<String>, Vec<String>)>,
    /// The control members and the admin token, for ACL SETUSER and DELUSER.
    control: Vec<String>,
    token: Option<String>,
    database: String,
    /// Answers to those changes, by client id, from their threads; and those waiting for the
    /// epoch they made.
    answers: Option<(Sender<Answered>, Receiver<Answered>)>,
    waiting: Vec<(u64, Answer, Instant)>,
    waker: Option<Arc<mio::Waker>>,
    /// This process's `host` and `port` as the configuration names them.
    host: String,
    port: u16,
}

#[derive(Clone, Copy, Debug)]
pub struct Me {
    pub shard: usize,
    pub primary: bool,
    pub node: usize,
}

/// Why a command is not served here.
pub enum Redirect {
    Moved(u16, String),
    CrossSlot,
    Down(&'static str),
}

impl Redirect {
    pub fn text(&self) -> String {
        match self {
            Redirect::Moved(slot, addr) => format!("MOVED {slot} {addr}"),
            Redirect::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot".into(),
            Redirect::Down(why) => format!("CLUSTERDOWN {why}"),
        }
    }
}

impl Cluster {
    /// Starts watching the control group when cluster mode is on.
    pub fn start(config: &Config) -> Cluster {
        if !config.cluster_enabled {
            return Cluster::default();
        }
        let host = if config.cluster_announce_ip.is_empty() {
            config
                .bind
                .split_whitespace()
                .next()
                .unwrap_or("127.0.0.1")
                .to_string()
        } else {
            config.cluster_announce_ip.clone()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let members: Vec<String> = config
            .cluster_control
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        let token = config.cluster_token.clone();
        let database = config.cluster_database.clone();
        if members.is_empty() {
            tracing::warn!("cluster-enabled without cluster-control: the cluster stays down");
        } else if let Err(e) =
            tessera_watch::spawn(members.clone(), token.clone(), database.clone(), move |t| {
                tx.send(t).is_ok()
            })
        {
            tracing::warn!("cannot start the cluster watcher: {e}");
        }
        Cluster {
            enabled: true,
            topology: None,
            me: None,
            updates: Some(rx),
            bus: config.internal_secret().map(crate::bus::Bus::new),
            users_taken: None,
            control: members,
            token,
            database,
            answers: Some(std::sync::mpsc::channel()),
            waiting: Vec::new(),
            waker: None,
            host,
            port: config.port,
        }
    }

    /// Takes the newest topology the watcher sent, if it is newer than the one held; true when
    /// it did.
    pub fn take_updates(&mut self) -> bool {
        let Some(rx) = &self.updates else {
            return false;
        };
        let mut newest = None;
        while let Ok(t) = rx.try_recv() {
            newest = Some(t);
        }
        let Some(t) = newest else {
            return false;
        };
        if self
            .topology
            .as_ref()
            .is_some_and(|old| old.epoch >= t.epoch)
        {
            return false;
        }
        self.me = t.shards.iter().enumerate().find_map(|(i, s)| {
            s.nodes()
                .position(|n| n.port == self.port && n.host == self.host)
                .map(|node| Me {
                    shard: i,
                    primary: node == 0,
                    node,
                })
        });
        if self.me.is_none() {
            tracing::warn!(
                "the configuration at epoch {} does not place {}:{} in database '{}'",
                t.epoch,
                self.host,
                self.port,
                t.database
            );
        }
        tracing::info!("cluster configuration epoch {}", t.epoch);
        if let Some(bus) = &mut self.bus {
            let me = (self.host.as_str(), self.port);
            let my_shard = self.me.map(|m| m.shard);
            bus.set_peers(
                t.shards
                    .iter()
                    .enumerate()
                    .flat_map(|(i, s)| s.nodes().map(move |n| (n, Some(i) == my_shard)))
                    .filter(|(n, _)| (n.host.as_str(), n.port) != me)
                    .map(|(n, same)| (n.addr(), same))
                    .collect(),
            );
        }
        self.topology = Some(Arc::new(t));
        true
    }

    /// Makes a change to the database's users (ACL SETUSER, DELUSER) for client `id` on a
    /// thread of its own; [`Cluster::take_answers`] gives the answer once this shard holds the
    /// configuration it made.
    pub fn change_users(&self, id: u64, change: users::Change) -> Result<(), String> {
        let Some((tx, _)) = &self.answers else {
            return Err("ERR this shard is not in a cluster".into());
        };
        let (tx, waker) = (tx.clone(), self.waker.clone());
        let (control, token) = (self.control.clone(), self.token.clone());
        std::thread::Builder::new()
            .name("cluster-acl".into())
            .spawn(move || {
                let answer = change.run(&control, token.as_deref());
                if tx.send((id, answer)).is_ok()
                    && let Some(w) = waker
                {
                    let _ = w.wake();
                }
            })
            .map(drop)
            .map_err(|e| format!("ERR cannot reach the control group: {e}"))
    }

    /// The database the shard serves.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.waker = Some(waker);
    }

    /// The answers to users changes whose epoch this shard now holds (or that waited
    /// [`SEEN_WITHIN`] for it), by client id.
    pub fn take_answers(&mut self) -> Vec<(u64, Vec<u8>)> {
        if let Some((_, rx)) = &self.answers {
            let deadline = Instant::now() + SEEN_WITHIN;
            self.waiting
                .extend(rx.try_iter().map(|(id, a)| (id, a, deadline)));
        }
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let held = self.topology.as_ref().map_or(0, |t| t.epoch);
        let now = Instant::now();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, a, deadline)| a.epoch.is_none_or(|e| e <= held) || now >= *deadline);
        self.waiting = waiting;
        ready.into_iter().map(|(id, a, _)| (id, a.frame)).collect()
    }

    /// True unless the topology gives `channel`'s slot to another shard: where the proxy's
    /// pattern subscriptions (made on every shard) are served a PUBLISH.
    pub fn serves_channel(&self, channel: &[u8]) -> bool {
        let (Some(t), Some(me)) = (&self.topology, self.me) else {
            return true;
        };
        t.owner_index(key_hash_slot(channel))
            .is_none_or(|i| i == me.shard)
    }

    /// The database's password and users of the newest topology when they are not the ones
    /// taken last (`Server::take_cluster_users`), marked taken.
    pub fn new_users(&mut self) -> Option<(Option<String>, Vec<String>)> {
        let t = self.topology.as_ref()?;
        let users = (t.password.clone(), t.users.clone());
        if self.users_taken.as_ref() == Some(&users) {
            return None;
        }
        self.users_taken = Some(users.clone());
        Some(users)
    }

    /// This shard and node in the topology.
    pub fn myself(&self) -> Option<(&ShardView, &Node)> {
        let t = self.topology.as_ref()?;
        let me = self.me?;
        let s = &t.shards[me.shard];
        Some((s, s.nodes().nth(me.node)?))
    }

    /// Where the keys of a request go: `Ok` when this shard serves them. `slots` are the slots
    /// of the request's keys (all of a transaction's at EXEC); `read` is a read-only command
    /// from a READONLY connection, which a replica serves for its own shard's slots.
    pub fn route(
        &self,
        slots: impl Iterator<Item = u16>,
        read: bool,
        asking: bool,
    ) -> Result<(), Redirect> {
        let mut slot = None;
        for s in slots {
            match slot {
                None => slot = Some(s),
                Some(first) if first != s => return Err(Redirect::CrossSlot),
                Some(_) => {}
            }
        }
        let Some(slot) = slot else {
            return Ok(());
        };
        let (Some(t), Some(me)) = (&self.topology, self.me) else {
            return Err(Redirect::Down("The cluster is down"));
        };
        let Some(owner) = t.owner(slot) else {
            return Err(Redirect::Down("Hash slot not served"));
        };
        let mine = t.shards[me.shard].id == owner.id;
        if mine && (me.primary || read) {
            return Ok(());
        }
        // ASK targets are served once an importing slot exists (slot migrations, not yet).
        let _ = asking;
        Err(Redirect::Moved(slot, owner.primary.addr()))
    }
}

impl Server {
    /// The cluster check of a command a script runs (Redis's `scriptVerifyClusterState`): its
    /// keys must be served here and, unless the script allows cross-slot keys, stay in the
    /// slot of the keys it declared (or first touched).
    pub(crate) fn script_cluster_refusal(
        &mut self,
        tok: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
        script_flags: u32,
    ) -> Option<&'static str> {
        let c = self.clients.get(tok)?;
        if c.is_master || spec.key_specs.is_empty() {
            return None;
        }
        let read = c.readonly && !spec.has(flag::WRITE);
        let keys = spec.key_positions(args).unwrap_or_default();
        let slot_of = |&(pos, _): &(usize, usize)| key_hash_slot(args.get(pos));
        match self.cluster.route(keys.iter().map(slot_of), read, c.asking) {
            Ok(()) => {}
            Err(Redirect::Down(_)) => {
                return Some("ERR Script attempted to execute a command while the cluster is down");
            }
            Err(_) => {
                return Some("ERR Script attempted to access a non local key in a cluster node");
            }
        }
        let slot = keys.first().map(slot_of)?;
        if script_flags & crate::scripting::flags::ALLOW_CROSS_SLOT != 0 {
            return None;
        }
        let running = self.scripting.running.as_mut()?;
        match running.slot {
            None => running.slot = Some(slot),
            Some(s) if s != slot => {
                return Some(
                    "ERR Script attempted to access keys that do not hash to the same slot",
                );
            }
            Some(_) => {}
        }
        None
    }

    /// The verify step's cluster check (Redis's `getNodeByQuery`): `None` when this shard
    /// serves the request. EXEC checks the keys of every queued command.
    pub(crate) fn cluster_refusal(
        &self,
        tok: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
    ) -> Option<Redirect> {
        let c = &self.clients[tok];
        // The primary's stream, and another node's SPUBLISH for this shard's subscribers.
        if c.is_master || c.internal == Some(Internal::Bus) {
            return None;
        }
        // A replica serves its shard's channels (SSUBSCRIBE, SPUBLISH) as Redis's does.
        let read = (c.readonly || spec.has(flag::PUBSUB)) && !spec.has(flag::WRITE);
        let asking = c.asking;
        if spec.name == "exec" {
            let queue = c.multi.as_ref().map(|m| m.queue.as_slice()).unwrap_or(&[]);
            let mut slots = Vec::new();
            let mut writes = false;
            for cmd in queue {
                let (buf, spans) = crate::commands::transactions::flatten(cmd);
                let args = Args::from_parts(&buf, &spans);
                let Some(spec) = self.commands.spec_of(&args) else {
                    continue;
                };
                writes |= spec.has(flag::WRITE);
                for (pos, _) in spec.key_positions(&args).unwrap_or_default() {
                    slots.push(key_hash_slot(args.get(pos)));
                }
            }
            let read = c.readonly && !writes;
            return self.cluster.route(slots.into_iter(), read, asking).err();
        }
        if spec.key_specs.is_empty() {
            return None;
        }
        let keys = spec.key_positions(args).unwrap_or_default();
        self.cluster
            .route(
                keys.iter().map(|&(pos, _)| key_hash_slot(args.get(pos))),
                read,
                asking,
            )
            .err()
    }
}
