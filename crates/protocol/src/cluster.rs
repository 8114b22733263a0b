//! One database's view of the cluster configuration, as shards and the proxy route by it: which
//! shard serves each hash slot, where its primary and replicas listen, and the Redis Cluster
//! replies made from it (`CLUSTER SLOTS`, `CLUSTER SHARDS`, `CLUSTER NODES`).
//!
//! It is read from the control group's configuration (`GET /v1/config`, JSON), of which it
//! takes only what routing needs, so neither the shard nor the proxy links the control crate.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha1::{Digest, Sha1};

use crate::reply::Reply;
use crate::slot::SLOTS;

/// A slot no shard serves.
const UNASSIGNED: u16 = u16::MAX;

/// One process of a shard: where it listens, and its Redis Cluster node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// 40 hex digits, stable for a placement (database, shard, machine, port).
    pub id: String,
    pub host: String,
    pub port: u16,
}

impl Node {
    /// `host:port`, as MOVED and CLUSTER NODES write it.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardView {
    /// The control group's shard id.
    pub id: u64,
    /// `CLUSTER MYSHARDID`: 40 hex digits.
    pub shard_id: String,
    pub primary: Node,
    pub replicas: Vec<Node>,
    /// Inclusive slot ranges, sorted.
    pub slots: Vec<(u16, u16)>,
}

impl ShardView {
    /// The primary, then the replicas.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }
}

/// A database's shards and its slot table at one configuration epoch.
#[derive(Clone, Debug)]
pub struct Topology {
    pub epoch: u64,
    pub database: String,
    /// The database's endpoint port (where its proxy listens) and password, if any.
    pub port: u16,
    pub password: Option<String>,
    /// The database's users beyond what `password` says, as `ACL LIST` lines (the proxy
    /// enforces them: `tessera_acl::Acl::from_lines`).
    pub users: Vec<String>,
    /// Sorted by shard id.
    pub shards: Vec<ShardView>,
    /// Index into `shards` for each slot, or [`UNASSIGNED`].
    owner: Box<[u16]>,
}

/// The part of the control group's `ClusterConfig` routing reads (unknown fields are skipped).
#[derive(Deserialize)]
struct ConfigJson {
    epoch: u64,
    #[serde(default)]
    machines: BTreeMap<u64, MachineJson>,
    #[serde(default)]
    databases: BTreeMap<u64, DatabaseJson>,
    #[serde(default)]
    shards: BTreeMap<u64, ShardJson>,
}

#[derive(Deserialize)]
struct MachineJson {
    host: String,
}

#[derive(Deserialize)]
struct DatabaseJson {
    name: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    users: Vec<String>,
}

#[derive(Deserialize)]
struct ShardJson {
    database: u64,
    primary: PlacementJson,
    #[serde(default)]
    replicas: Vec<PlacementJson>,
    #[serde(default)]
    slots: Vec<RangeJson>,
}

#[derive(Deserialize)]
struct PlacementJson {
    machine: u64,
    port: u16,
}

#[derive(Deserialize)]
struct RangeJson {
    start: u16,
    end: u16,
}

fn hex_id(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Topology {
    /// Reads database `database`'s topology from the control group's configuration (JSON).
    pub fn from_config_json(json: &[u8], database: &str) -> Result<Topology, String> {
        let cfg: ConfigJson =
            serde_json::from_slice(json).map_err(|e| format!("configuration: {e}"))?;
        let Some((&db_id, db)) = cfg.databases.iter().find(|(_, d)| d.name == database) else {
            return Err(format!("configuration: no database named '{database}'"));
        };
        let node = |shard: u64, p: &PlacementJson| -> Result<Node, String> {
            let host = cfg
                .machines
                .get(&p.machine)
                .map(|m| m.host.clone())
                .ok_or_else(|| format!("configuration: shard {shard} on unknown machine"))?;
            Ok(Node {
                id: hex_id(&format!("node:{db_id}:{shard}:{}:{}", p.machine, p.port)),
                host,
                port: p.port,
            })
        };
        let mut shards = Vec::new();
        for (&id, s) in cfg.shards.iter().filter(|(_, s)| s.database == db_id) {
            let mut slots: Vec<(u16, u16)> = s
                .slots
                .iter()
                .filter(|r| r.start <= r.end && usize::from(r.end) < SLOTS)
                .map(|r| (r.start, r.end))
                .collect();
            slots.sort_unstable();
            shards.push(ShardView {
                id,
                shard_id: hex_id(&format!("shard:{db_id}:{id}")),
                primary: node(id, &s.primary)?,
                replicas: s
                    .replicas
                    .iter()
                    .map(|p| node(id, p))
                    .collect::<Result<_, _>>()?,
                slots,
            });
        }
        let mut t = Topology::new(cfg.epoch, database, shards);
        t.port = db.port;
        t.password = db.password.clone();
        t.users = db.users.clone();
        Ok(t)
    }

    /// The view a proxy gives cluster-aware clients: one node, the proxy at `host:port`,
    /// serving every slot of `database`.
    pub fn single_node(epoch: u64, database: &str, host: &str, port: u16) -> Topology {
        let node = Node {
            id: hex_id(&format!("proxy:{database}:{host}:{port}")),
            host: host.to_string(),
            port,
        };
        let shard = ShardView {
            id: 0,
            shard_id: hex_id(&format!("proxy-shard:{database}:{host}:{port}")),
            primary: node,
            replicas: Vec::new(),
            slots: vec![(0, (SLOTS - 1) as u16)],
        };
        Topology::new(epoch, database, vec![shard])
    }

    /// A topology of `shards` (sorted by id here).
    pub fn new(epoch: u64, database: &str, mut shards: Vec<ShardView>) -> Topology {
        shards.sort_by_key(|s| s.id);
        let mut owner = vec![UNASSIGNED; SLOTS].into_boxed_slice();
        for (i, s) in shards.iter().enumerate() {
            for &(start, end) in &s.slots {
                for slot in start..=end {
                    owner[usize::from(slot)] = i as u16;
                }
            }
        }
        Topology {
            epoch,
            database: database.to_string(),
            port: 0,
            password: None,
            users: Vec::new(),
            shards,
            owner,
        }
    }

    /// The shard serving `slot`.
    #[inline]
    pub fn owner(&self, slot: u16) -> Option<&ShardView> {
        self.shards
            .get(usize::from(*self.owner.get(usize::from(slot))?))
    }

    /// The index in `shards` of the shard serving `slot`.
    #[inline]
    pub fn owner_index(&self, slot: u16) -> Option<usize> {
        match *self.owner.get(usize::from(slot))? {
            UNASSIGNED => None,
            i => Some(usize::from(i)),
        }
    }

    /// `CLUSTER INFO`'s text, Redis Cluster's fields; `ok` when the node serves its slots.
    pub fn info_text(&self, ok: bool) -> String {
        let assigned = self.assigned_slots();
        let nodes = self.known_nodes();
        let size = self.shards.iter().filter(|s| !s.slots.is_empty()).count();
        let epoch = self.epoch;
        format!(
            "cluster_enabled:1\r\ncluster_state:{}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{nodes}\r\ncluster_size:{size}\r\ncluster_current_epoch:{epoch}\r\ncluster_my_epoch:{epoch}\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n",
            if ok && assigned == SLOTS {
                "ok"
            } else {
                "fail"
            },
        )
    }

    /// The shard with control id `id`.
    pub fn shard(&self, id: u64) -> Option<&ShardView> {
        self.shards.iter().find(|s| s.id == id)
    }

    /// The shard a node (by `host`, `port`) belongs to, and whether it is the primary.
    pub fn find_node(&self, host: &str, port: u16) -> Option<(&ShardView, &Node)> {
        self.shards.iter().find_map(|s| {
            s.nodes()
                .find(|n| n.port == port && n.host == host)
                .map(|n| (s, n))
        })
    }

    /// Slots some shard serves.
    pub fn assigned_slots(&self) -> usize {
        self.owner.iter().filter(|&&o| o != UNASSIGNED).count()
    }

    /// Nodes of all shards.
    pub fn known_nodes(&self) -> usize {
        self.shards.iter().map(|s| 1 + s.replicas.len()).sum()
    }

    /// `CLUSTER SLOTS`: for each slot range, its primary then its replicas, each as `[host,
    /// port, id, {}]` (Redis 7's form, with no extra networking metadata). Ranges in slot
    /// order.
    pub fn write_slots(&self, r: &mut Reply<'_>) {
        let mut ranges: Vec<(u16, u16, &ShardView)> = self
            .shards
            .iter()
            .flat_map(|s| s.slots.iter().map(move |&(a, b)| (a, b, s)))
            .collect();
        ranges.sort_unstable_by_key(|&(a, ..)| a);
        r.array(ranges.len());
        for (start, end, s) in ranges {
            r.array(2 + 1 + s.replicas.len());
            r.int(i64::from(start));
            r.int(i64::from(end));
            for n in s.nodes() {
                r.array(4);
                r.bulk(n.host.as_bytes());
                r.int(i64::from(n.port));
                r.bulk(n.id.as_bytes());
                // The endpoints besides the preferred one: none (a map in Redis 7).
                r.map(0);
            }
        }
    }

    /// `CLUSTER SHARDS`: each shard's slots (as start, end pairs) and nodes, as Redis 7.0
    /// describes them. `offset` gives a node's replication offset when known.
    pub fn write_shards(&self, r: &mut Reply<'_>, offset: impl Fn(&Node) -> i64) {
        r.array(self.shards.len());
        for s in &self.shards {
            r.map(2);
            r.bulk(b"slots");
            r.array(s.slots.len() * 2);
            for &(a, b) in &s.slots {
                r.int(i64::from(a));
                r.int(i64::from(b));
            }
            r.bulk(b"nodes");
            r.array(1 + s.replicas.len());
            for (i, n) in s.nodes().enumerate() {
                r.map(7);
                r.bulk(b"id");
                r.bulk(n.id.as_bytes());
                r.bulk(b"port");
                r.int(i64::from(n.port));
                r.bulk(b"ip");
                r.bulk(n.host.as_bytes());
                r.bulk(b"endpoint");
                r.bulk(n.host.as_bytes());
                r.bulk(b"role");
                r.bulk(if i == 0 { b"master" } else { b"replica" });
                r.bulk(b"replication-offset");
                r.int(offset(n));
                r.bulk(b"health");
                r.bulk(b"online");
            }
        }
    }

    /// `CLUSTER NODES`: one line per node, `myself` flagged when given.
    pub fn nodes_text(&self, myself: Option<&str>) -> String {
        let mut out = String::new();
        for s in &self.shards {
            for (i, n) in s.nodes().enumerate() {
                let me = if myself == Some(n.id.as_str()) {
                    "myself,"
                } else {
                    ""
                };
                let (role, master) = if i == 0 {
                    ("master", "-")
                } else {
                    ("slave", s.primary.id.as_str())
                };
                out.push_str(&format!(
                    "{} {}:{}@{} {me}{role} {master} 0 0 {} connected",
                    n.id,
                    n.host,
                    n.port,
                    u32::from(n.port) + 10000,
                    self.epoch,
                ));
                if i == 0 {
                    for &(a, b) in &s.slots {
                        if a == b {
                            out.push_str(&format!(" {a}"));
                        } else {
                            out.push_str(&format!(" {a}-{b}"));
                        }
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "epoch": 42,
        "name": "test",
        "machines": {"1": {"id": 1, "host": "10.0.0.1", "api": "x"},
                     "2": {"id": 2, "host": "10.0.0.2", "api": "y"}},
        "databases": {"1": {"id": 1, "name": "cache", "port": 12000},
                      "2": {"id": 2, "name": "other"}},
        "shards": {
            "1": {"id": 1, "database": 1, "primary": {"machine": 1, "port": 7100},
                  "replicas": [{"machine": 2, "port": 7101}],
                  "slots": [{"start": 0, "end": 8191}]},
            "2": {"id": 2, "database": 1, "primary": {"machine": 2, "port": 7100},
                  "replicas": [], "slots": [{"start": 8192, "end": 16383}]},
            "3": {"id": 3, "database": 2, "primary": {"machine": 1, "port": 7102},
                  "replicas": [], "slots": [{"start": 0, "end": 16383}]}
        }
    }"#;

    #[test]
    fn reads_one_database_from_the_configuration() {
        let t = Topology::from_config_json(CONFIG.as_bytes(), "cache").unwrap();
        assert_eq!(t.epoch, 42);
        assert_eq!(t.shards.len(), 2);
        assert_eq!(t.owner(0).unwrap().id, 1);
        assert_eq!(t.owner(8191).unwrap().id, 1);
        assert_eq!(t.owner(8192).unwrap().primary.addr(), "10.0.0.2:7100");
        assert_eq!(t.assigned_slots(), SLOTS);
        assert_eq!(t.known_nodes(), 3);
        let (s, n) = t.find_node("10.0.0.2", 7101).unwrap();
        assert_eq!((s.id, n.port), (1, 7101));
        assert_eq!(n.id.len(), 40);
        assert_ne!(t.shards[0].primary.id, t.shards[0].replicas[0].id);
        assert!(Topology::from_config_json(CONFIG.as_bytes(), "none").is_err());
        assert!(Topology::from_config_json(b"{", "cache").is_err());
    }

    #[test]
    fn renders_cluster_replies() {
        let t = Topology::from_config_json(CONFIG.as_bytes(), "cache").unwrap();
        let mut out = Vec::new();
        t.write_slots(&mut Reply::new(&mut out, false));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("*2\r\n*4\r\n:0\r\n:8191\r\n*4\r\n$8\r\n10.0.0.1\r\n:7100\r\n"));
        let nodes = t.nodes_text(Some(&t.shards[1].primary.id));
        let lines: Vec<&str> = nodes.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].ends_with(" master - 0 0 42 connected 0-8191"),
            "{nodes}"
        );
        assert!(lines[1].contains(" slave "), "{nodes}");
        assert!(
            lines[2].contains("10.0.0.2:7100@17100 myself,master"),
            "{nodes}"
        );
    }
}
