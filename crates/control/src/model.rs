//! The cluster configuration: the control group's state machine.
//!
//! Everything here is deterministic: the same configuration and the same [`Request`] give the
//! same result on every member, so placement (which machine runs which shard, which ports) is
//! decided inside [`ClusterConfig::apply`], from the configuration alone. A request that fails
//! validation changes nothing and does not move the epoch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Machines are Raft members: a machine id is its Raft node id.
pub type MachineId = u64;
pub type DatabaseId = u32;
pub type ShardId = u32;

/// Redis Cluster's slot count.
pub const SLOTS: u16 = 16384;
/// The encoding version [`Request`]s are written with; decoders accept this one and older.
pub const ENCODING_VERSION: u16 = 1;
/// How many applied request ids are remembered, so a retried request is not applied twice.
const RECENT_REQUESTS: usize = 1024;
/// Shard processes on a machine take ports from here up.
pub const SHARD_PORT_BASE: u16 = 7100;
/// Database endpoints (proxy ports) are given from here up when the request names none.
pub const ENDPOINT_PORT_BASE: u16 = 12000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    Active,
    /// Taken out of placement: nothing new goes there (it is leaving the cluster).
    Draining,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub id: MachineId,
    /// `host:port` of the machine's control process (REST API and Raft RPCs).
    pub api: String,
    /// The host clients and peers reach this machine's shards and proxy at.
    pub host: String,
    #[serde(default)]
    pub rack: Option<String>,
    /// Memory shards may use on this machine, in bytes (0: not limited).
    #[serde(default)]
    pub memory: u64,
    #[serde(default)]
    pub cpus: u32,
    pub state: MachineState,
    /// The ports shard processes on this machine may take, inclusive (default: from
    /// [`SHARD_PORT_BASE`] up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_ports: Option<[u16; 2]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    /// In memory only.
    None,
    /// The effect log, synced once a second (`appendfsync everysec`).
    Aof,
    /// The effect log, synced before each reply (`appendfsync always`).
    AofAlways,
    /// Checkpoints only (`save` rules, no log).
    Snapshot,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub id: DatabaseId,
    pub name: String,
    /// The endpoint: the port the proxy listens on for this database on every machine.
    pub port: u16,
    pub shard_count: u32,
    pub replication: bool,
    pub persistence: Persistence,
    /// Memory limit of the whole database in bytes (split evenly over its shards; 0: none).
    pub memory: u64,
    #[serde(default)]
    pub password: Option<String>,
    pub eviction: String,
    /// The epoch the database was created at.
    pub created: u64,
    /// The database's users, as `ACL SETUSER` through a proxy or the REST API left them:
    /// `user <name> <rules>` lines in `ACL LIST`'s format (passwords as SHA-256 hashes), in
    /// name order. The default user is `password`'s unless a line describes it
    /// (`tessera_acl::Acl::from_lines`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

/// One process of a shard: where it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub machine: MachineId,
    pub port: u16,
}

/// Inclusive range of hash slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
}

impl SlotRange {
    fn overlaps(&self, other: &SlotRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub id: ShardId,
    pub database: DatabaseId,
    pub primary: Placement,
    pub replicas: Vec<Placement>,
    pub slots: Vec<SlotRange>,
    /// Raised whenever the primary changes; a lease names the role epoch it was granted for.
    pub role_epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub id: u64,
    pub database: DatabaseId,
    pub slots: SlotRange,
    pub from: ShardId,
    pub to: ShardId,
    /// The epoch the migration began at.
    pub started: u64,
}

/// What `CreateDatabase` asks for; placement and ports are decided when it is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    pub name: String,
    /// Endpoint port; the first free one from [`ENDPOINT_PORT_BASE`] when absent.
    #[serde(default)]
    pub port: Option<u16>,
    pub shards: u32,
    pub replication: bool,
    pub persistence: Persistence,
    pub memory: u64,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_eviction")]
    pub eviction: String,
}

/// A database's users, built from its configuration.
fn users_of(db: &Database) -> Result<tessera_acl::Acl, Refusal> {
    tessera_acl::Acl::from_lines(db.password.as_deref(), &db.users).map_err(|e| Refusal {
        code: "invalid".into(),
        message: format!(
            "the stored users of database {:?} do not load: {e}",
            db.name
        ),
    })
}

fn default_eviction() -> String {
    "noeviction".into()
}

/// Fields of a database an update may change (absent: unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseUpdate {
    #[serde(default)]
    pub memory: Option<u64>,
    #[serde(default)]
    pub password: Option<String>,
    /// Removes the password.
    #[serde(default)]
    pub clear_password: bool,
    #[serde(default)]
    pub eviction: Option<String>,
    #[serde(default)]
    pub persistence: Option<Persistence>,
}

/// A change to the configuration. The encoding is append-only: new variants go at the end,
/// new fields are optional and left out when absent (`#[serde(default, skip_serializing_if =
/// ...)]`, as `Machine::shard_ports`), nothing is renamed or removed; the golden test in
/// `tests/golden_requests.json` holds every variant as first written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Names the cluster; only before anything else is set.
    Init {
        name: String,
    },
    AddMachine(Machine),
    RemoveMachine {
        id: MachineId,
    },
    SetMachineState {
        id: MachineId,
        state: MachineState,
    },
    CreateDatabase(DatabaseSpec),
    UpdateDatabase {
        name: String,
        update: DatabaseUpdate,
    },
    DeleteDatabase {
        name: String,
    },
    /// A failover or a switchover: the new primary and replicas of a shard.
    SetShardRoles {
        shard: ShardId,
        primary: Placement,
        replicas: Vec<Placement>,
        /// The role epoch the change was decided against (refused if the shard moved on).
        expected_role_epoch: u64,
    },
    BeginMigration {
        database: DatabaseId,
        slots: SlotRange,
        from: ShardId,
        to: ShardId,
    },
    /// Ends a migration: `commit` moves the slots to the target shard, otherwise they stay.
    EndMigration {
        id: u64,
        commit: bool,
    },
    /// `ACL SETUSER` on a database's users: the rules, applied in order to the user (a new
    /// one when absent), all or none. Passwords come as hashes (`#...`, `!...`).
    SetUser {
        database: String,
        user: String,
        rules: Vec<String>,
    },
    /// `ACL DELUSER` on a database's users; names that are not users are skipped.
    DeleteUsers {
        database: String,
        users: Vec<String>,
    },
}

/// A request as it goes through the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Encoding version ([`ENCODING_VERSION`]).
    pub v: u16,
    /// Chosen by the client; a retried request with the same id gets the first result.
    pub id: String,
    pub cmd: Command,
}

impl Request {
    pub fn new(id: impl Into<String>, cmd: Command) -> Request {
        Request {
            v: ENCODING_VERSION,
            id: id.into(),
            cmd,
        }
    }
}

/// Why a request was refused. `code` is stable (the REST API returns it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

fn refuse<T>(code: &str, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        code: code.into(),
        message: message.into(),
    })
}

/// The result of applying a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied; the configuration's epoch after it.
    Done {
        epoch: u64,
    },
    /// Applied and created this database.
    Database {
        epoch: u64,
        database: Database,
    },
    Migration {
        epoch: u64,
        id: u64,
    },
    Refused(Refusal),
    /// Applied; how many things it changed (users deleted).
    Count {
        epoch: u64,
        count: u64,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// The Raft log index of the last change (0: nothing yet).
    pub epoch: u64,
    pub name: Option<String>,
    pub machines: BTreeMap<MachineId, Machine>,
    pub databases: BTreeMap<DatabaseId, Database>,
    pub shards: BTreeMap<ShardId, Shard>,
    pub migrations: BTreeMap<u64, Migration>,
    pub next_database: DatabaseId,
    pub next_shard: ShardId,
    pub next_migration: u64,
    /// Ids and results of the last requests applied, oldest first.
    pub recent: VecDeque<(String, Response)>,
}

impl ClusterConfig {
    /// Applies `req` at log index `index`. A refused request leaves everything as it was
    /// except the remembered request id.
    pub fn apply(&mut self, index: u64, req: &Request) -> Response {
        if let Some((_, r)) = self.recent.iter().find(|(id, _)| *id == req.id) {
            return r.clone();
        }
        let response = if req.v > ENCODING_VERSION {
            Response::Refused(Refusal {
                code: "unsupported_version".into(),
                message: format!(
                    "request encoding version {} is newer than this member's {ENCODING_VERSION}: upgrade it",
                    req.v
                ),
            })
        } else {
            // Changes go to a copy (without the request memory), kept only if they validate.
            let recent = std::mem::take(&mut self.recent);
            let mut next = self.clone();
            let r = match next.execute(index, &req.cmd) {
                Ok(r) => {
                    *self = next;
                    r
                }
                Err(refusal) => Response::Refused(refusal),
            };
            self.recent = recent;
            r
        };
        if !req.id.is_empty() {
            self.recent.push_back((req.id.clone(), response.clone()));
            if self.recent.len() > RECENT_REQUESTS {
                self.recent.pop_front();
            }
        }
        response
    }

    fn execute(&mut self, index: u64, cmd: &Command) -> Result<Response, Refusal> {
        match cmd {
            Command::Init { name } => {
                if let Some(existing) = &self.name {
                    return refuse(
                        "already_initialized",
                        format!("the cluster is already initialized as {existing:?}"),
                    );
                }
                if name.is_empty() {
                    return refuse("invalid", "the cluster name is empty");
                }
                self.name = Some(name.clone());
            }
            Command::AddMachine(m) => {
                if let Some(old) = self.machines.get(&m.id) {
                    if old == m {
                        return Ok(Response::Done { epoch: self.epoch });
                    }
                    return refuse(
                        "machine_exists",
                        format!("machine {} is already a member", m.id),
                    );
                }
                if let Some(other) = self.machines.values().find(|o| o.api == m.api) {
                    return refuse(
                        "address_in_use",
                        format!("machine {} already has the address {}", other.id, m.api),
                    );
                }
                if m.api.is_empty() || m.host.is_empty() {
                    return refuse("invalid", "a machine needs an API address and a host");
                }
                self.machines.insert(m.id, m.clone());
            }
            Command::RemoveMachine { id } => {
                self.machine(*id)?;
                if let Some(s) = self
                    .shards
                    .values()
                    .find(|s| s.placements().any(|p| p.machine == *id))
                {
                    return refuse(
                        "machine_in_use",
                        format!(
                            "machine {id} still runs a process of shard {}: delete its database or move the shard first",
                            s.id
                        ),
                    );
                }
                self.machines.remove(id);
            }
            Command::SetMachineState { id, state } => {
                let m = self
                    .machines
                    .get_mut(id)
                    .ok_or_else(|| unknown_machine(*id))?;
                m.state = *state;
            }
            Command::CreateDatabase(spec) => {
                let db = self.create_database(index, spec)?;
                self.epoch = index;
                return Ok(Response::Database {
                    epoch: index,
                    database: db,
                });
            }
            Command::UpdateDatabase { name, update } => {
                let db = self.database_named(name)?.clone();
                let mut db2 = db.clone();
                if let Some(m) = update.memory {
                    self.check_memory(db.id, m, db.shard_count)?;
                    db2.memory = m;
                }
                if update.clear_password {
                    db2.password = None;
                }
                if let Some(p) = &update.password {
                    db2.password = Some(p.clone());
                }
                if db2.password != db.password && !db.users.is_empty() {
                    // A default user the lines describe takes the new password as well.
                    let mut acl = users_of(&db)?;
                    acl.set_requirepass(db2.password.as_deref());
                    db2.users = acl.to_lines(db2.password.as_deref());
                }
                if let Some(e) = &update.eviction {
                    check_eviction(e)?;
                    db2.eviction = e.clone();
                }
                if let Some(p) = update.persistence {
                    db2.persistence = p;
                }
                self.databases.insert(db.id, db2);
            }
            Command::DeleteDatabase { name } => {
                let id = self.database_named(name)?.id;
                if self.migrations.values().any(|m| m.database == id) {
                    return refuse(
                        "migration_in_progress",
                        format!("database {name:?} has a slot migration in progress"),
                    );
                }
                self.databases.remove(&id);
                self.shards.retain(|_, s| s.database != id);
            }
            Command::SetShardRoles {
                shard,
                primary,
                replicas,
                expected_role_epoch,
            } => {
                let s = self
                    .shards
                    .get(shard)
                    .ok_or_else(|| Refusal {
                        code: "unknown_shard".into(),
                        message: format!("there is no shard {shard}"),
                    })?
                    .clone();
                if s.role_epoch != *expected_role_epoch {
                    return refuse(
                        "stale_epoch",
                        format!(
                            "shard {shard} is at role epoch {}, not {expected_role_epoch}",
                            s.role_epoch
                        ),
                    );
                }
                let mut all: Vec<Placement> = vec![*primary];
                all.extend(replicas);
                for p in &all {
                    self.machine(p.machine)?;
                }
                let mut seen = BTreeSet::new();
                for p in &all {
                    if !seen.insert((p.machine, p.port)) {
                        return refuse(
                            "invalid",
                            format!("machine {} port {} is named twice", p.machine, p.port),
                        );
                    }
                    // The same processes may swap roles; new ones need free ports.
                    if !s.placements().any(|q| q == p) && !self.port_free(p.machine, p.port) {
                        return refuse(
                            "port_in_use",
                            format!("port {} is in use on machine {}", p.port, p.machine),
                        );
                    }
                }
                let s = self.shards.get_mut(shard).expect("checked above");
                s.primary = *primary;
                s.replicas = replicas.clone();
                s.role_epoch = index;
            }
            Command::BeginMigration {
                database,
                slots,
                from,
                to,
            } => {
                if slots.start > slots.end || slots.end >= SLOTS {
                    return refuse("invalid", "a slot range is start..=end within 0..16383");
                }
                for id in [from, to] {
                    match self.shards.get(id) {
                        Some(s) if s.database == *database => {}
                        _ => {
                            return refuse(
                                "unknown_shard",
                                format!("database {database} has no shard {id}"),
                            );
                        }
                    }
                }
                if from == to {
                    return refuse("invalid", "a migration needs two different shards");
                }
                let owned = &self.shards[from].slots;
                if !(slots.start..=slots.end)
                    .all(|slot| owned.iter().any(|r| r.start <= slot && slot <= r.end))
                {
                    return refuse(
                        "invalid",
                        format!(
                            "shard {from} does not own all of slots {}-{}",
                            slots.start, slots.end
                        ),
                    );
                }
                if self
                    .migrations
                    .values()
                    .any(|m| m.database == *database && m.slots.overlaps(slots))
                {
                    return refuse(
                        "migration_in_progress",
                        "some of these slots are already migrating",
                    );
                }
                let id = self.next_migration;
                self.next_migration += 1;
                self.migrations.insert(
                    id,
                    Migration {
                        id,
                        database: *database,
                        slots: *slots,
                        from: *from,
                        to: *to,
                        started: index,
                    },
                );
                self.epoch = index;
                return Ok(Response::Migration { epoch: index, id });
            }
            Command::EndMigration { id, commit } => {
                let m = self.migrations.remove(id).ok_or_else(|| Refusal {
                    code: "unknown_migration".into(),
                    message: format!("there is no migration {id}"),
                })?;
                if *commit {
                    let from = self
                        .shards
                        .get_mut(&m.from)
                        .expect("migrations name live shards");
                    from.slots = subtract(&from.slots, m.slots);
                    let to = self
                        .shards
                        .get_mut(&m.to)
                        .expect("migrations name live shards");
                    to.slots.push(m.slots);
                    to.slots = normalize(&to.slots);
                }
            }
            Command::SetUser {
                database,
                user,
                rules,
            } => {
                let db = self.database_named(database)?.clone();
                let mut acl = users_of(&db)?;
                if tessera_acl::has_spaces(user.as_bytes()) {
                    return refuse(
                        "invalid",
                        "ERR Usernames can't contain spaces or null characters",
                    );
                }
                let ops: Vec<Vec<u8>> = rules.iter().map(|r| r.as_bytes().to_vec()).collect();
                if let Err(e) = acl.set_user(user.as_bytes(), &ops) {
                    return refuse("invalid", e);
                }
                let mut db2 = db;
                db2.users = acl.to_lines(db2.password.as_deref());
                self.databases.insert(db2.id, db2);
            }
            Command::DeleteUsers { database, users } => {
                let db = self.database_named(database)?.clone();
                if users.iter().any(|u| u == "default") {
                    return refuse("invalid", "ERR The 'default' user cannot be removed");
                }
                let mut acl = users_of(&db)?;
                let count = users
                    .iter()
                    .filter(|u| acl.remove_user(u.as_bytes()).is_some())
                    .count() as u64;
                let mut db2 = db;
                db2.users = acl.to_lines(db2.password.as_deref());
                self.databases.insert(db2.id, db2);
                self.epoch = index;
                return Ok(Response::Count {
                    epoch: index,
                    count,
                });
            }
        }
        self.epoch = index;
        Ok(Response::Done { epoch: index })
    }

    fn machine(&self, id: MachineId) -> Result<&Machine, Refusal> {
        self.machines.get(&id).ok_or_else(|| unknown_machine(id))
    }

    pub fn database_named(&self, name: &str) -> Result<&Database, Refusal> {
        self.databases
            .values()
            .find(|d| d.name == name)
            .ok_or_else(|| Refusal {
                code: "unknown_database".into(),
                message: format!("there is no database {name:?}"),
            })
    }

    /// The shards of a database, in slot order.
    pub fn shards_of(&self, db: DatabaseId) -> Vec<&Shard> {
        let mut v: Vec<&Shard> = self.shards.values().filter(|s| s.database == db).collect();
        v.sort_by_key(|s| s.slots.first().map(|r| r.start));
        v
    }

    /// Ports taken on a machine's host (machines may share one, as on a test box): shard
    /// processes and control processes there, and every database endpoint (a proxy runs on
    /// each machine).
    fn ports_in_use(&self, machine: MachineId) -> BTreeSet<u16> {
        let host = self.machines.get(&machine).map(|m| m.host.as_str());
        let same_host: BTreeSet<MachineId> = self
            .machines
            .values()
            .filter(|m| m.id == machine || Some(m.host.as_str()) == host)
            .map(|m| m.id)
            .collect();
        let mut used: BTreeSet<u16> = self
            .shards
            .values()
            .flat_map(|s| s.placements())
            .filter(|p| same_host.contains(&p.machine))
            .map(|p| p.port)
            .collect();
        used.extend(self.databases.values().map(|d| d.port));
        for id in &same_host {
            used.extend(api_port(&self.machines[id].api));
        }
        used
    }

    fn port_free(&self, machine: MachineId, port: u16) -> bool {
        !self.ports_in_use(machine).contains(&port)
    }

    /// Memory placed on each machine (bytes), without database `except`.
    fn memory_used(&self, except: Option<DatabaseId>) -> BTreeMap<MachineId, u64> {
        let mut used = BTreeMap::new();
        for s in self.shards.values() {
            if Some(s.database) == except {
                continue;
            }
            let Some(db) = self.databases.get(&s.database) else {
                continue;
            };
            let per = db.memory / u64::from(db.shard_count.max(1));
            for p in s.placements() {
                *used.entry(p.machine).or_insert(0) += per;
            }
        }
        used
    }

    fn check_memory(&self, db: DatabaseId, memory: u64, shards: u32) -> Result<(), Refusal> {
        let per = memory / u64::from(shards.max(1));
        let used = self.memory_used(Some(db));
        for s in self.shards.values().filter(|s| s.database == db) {
            for p in s.placements() {
                let m = &self.machines[&p.machine];
                if m.memory > 0 && used.get(&m.id).copied().unwrap_or(0) + per > m.memory {
                    return refuse(
                        "not_enough_memory",
                        format!(
                            "machine {} has {} bytes for shards, not enough",
                            m.id, m.memory
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn create_database(&mut self, index: u64, spec: &DatabaseSpec) -> Result<Database, Refusal> {
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return refuse(
                "invalid",
                "a database name is letters, digits, '-' and '_', and not empty",
            );
        }
        if self.database_named(&spec.name).is_ok() {
            return refuse(
                "database_exists",
                format!("a database named {:?} already exists", spec.name),
            );
        }
        if spec.shards == 0 || spec.shards > u32::from(SLOTS) {
            return refuse("invalid", "a database has 1 to 16384 shards");
        }
        check_eviction(&spec.eviction)?;
        let active: Vec<&Machine> = self
            .machines
            .values()
            .filter(|m| m.state == MachineState::Active)
            .collect();
        if active.is_empty() {
            return refuse(
                "no_machines",
                "the cluster has no active machine: join one first",
            );
        }
        let port = match spec.port {
            Some(p) => {
                if p == 0 {
                    return refuse("invalid", "port 0 is not an endpoint");
                }
                if let Some(m) = self.machines.values().find(|m| !self.port_free(m.id, p)) {
                    return refuse(
                        "port_in_use",
                        format!("port {p} is already in use on machine {}", m.id),
                    );
                }
                p
            }
            None => (ENDPOINT_PORT_BASE..=u16::MAX)
                .find(|p| self.machines.values().all(|m| self.port_free(m.id, *p)))
                .ok_or_else(|| Refusal {
                    code: "port_in_use".into(),
                    message: "no endpoint port is free".into(),
                })?,
        };
        let db = Database {
            id: self.next_database,
            name: spec.name.clone(),
            port,
            shard_count: spec.shards,
            replication: spec.replication,
            persistence: spec.persistence,
            memory: spec.memory,
            password: spec.password.clone(),
            eviction: spec.eviction.clone(),
            created: index,
            users: Vec::new(),
        };
        self.next_database += 1;
        self.databases.insert(db.id, db.clone());
        // Placement: each process goes to the active machine with the fewest processes
        // (ties: lowest id) that has the memory; a replica avoids its primary's machine, and
        // its rack when racks are given, whenever another machine allows it.
        let per = spec.memory / u64::from(spec.shards);
        let mut memory = self.memory_used(None);
        let mut load: BTreeMap<MachineId, usize> = active.iter().map(|m| (m.id, 0)).collect();
        for s in self.shards.values() {
            for p in s.placements() {
                if let Some(n) = load.get_mut(&p.machine) {
                    *n += 1;
                }
            }
        }
        let machines: Vec<Machine> = active.into_iter().cloned().collect();
        let ranges = split_slots(spec.shards);
        for range in ranges {
            let mut pick = |avoid: &[&Machine],
                            cfg: &ClusterConfig|
             -> Result<Placement, Refusal> {
                let fits = |m: &&Machine| {
                    m.memory == 0 || memory.get(&m.id).copied().unwrap_or(0) + per <= m.memory
                };
                let score = |m: &&Machine| {
                    let same_machine = avoid.iter().any(|a| a.id == m.id);
                    let same_rack = m.rack.is_some() && avoid.iter().any(|a| a.rack == m.rack);
                    (same_machine, same_rack, load[&m.id], m.id)
                };
                let m = machines
                    .iter()
                    .filter(fits)
                    .min_by_key(score)
                    .ok_or_else(|| Refusal {
                        code: "not_enough_memory".into(),
                        message: format!(
                            "no machine has {per} bytes free for a shard of {:?}",
                            spec.name
                        ),
                    })?;
                let [lo, hi] = m.shard_ports.unwrap_or([SHARD_PORT_BASE, u16::MAX]);
                let port = (lo..=hi)
                    .find(|p| cfg.port_free(m.id, *p))
                    .ok_or_else(|| Refusal {
                        code: "port_in_use".into(),
                        message: format!("machine {} has no free port", m.id),
                    })?;
                *memory.entry(m.id).or_insert(0) += per;
                *load.get_mut(&m.id).expect("active machine") += 1;
                Ok(Placement {
                    machine: m.id,
                    port,
                })
            };
            let primary = pick(&[], self)?;
            let id = self.next_shard;
            self.next_shard += 1;
            self.shards.insert(
                id,
                Shard {
                    id,
                    database: db.id,
                    primary,
                    replicas: Vec::new(),
                    slots: vec![range],
                    role_epoch: index,
                },
            );
            if spec.replication {
                let pm = self.machines[&primary.machine].clone();
                let replica = pick(&[&pm], self)?;
                self.shards
                    .get_mut(&id)
                    .expect("just added")
                    .replicas
                    .push(replica);
            }
        }
        self.check_slots(db.id)?;
        Ok(db)
    }

    /// Every slot of the database owned by exactly one shard.
    fn check_slots(&self, db: DatabaseId) -> Result<(), Refusal> {
        let mut ranges: Vec<SlotRange> = self
            .shards
            .values()
            .filter(|s| s.database == db)
            .flat_map(|s| s.slots.iter().copied())
            .collect();
        ranges.sort();
        let mut next = 0u32;
        for r in ranges {
            if u32::from(r.start) != next {
                return refuse(
                    "invalid",
                    format!(
                        "slot {} is owned twice or not at all",
                        r.start.min(next as u16)
                    ),
                );
            }
            next = u32::from(r.end) + 1;
        }
        if next != u32::from(SLOTS) {
            return refuse("invalid", format!("slot {next} is not owned"));
        }
        Ok(())
    }

    /// The shard that owns `slot` in database `db`.
    pub fn slot_owner(&self, db: DatabaseId, slot: u16) -> Option<&Shard> {
        self.shards
            .values()
            .find(|s| s.database == db && s.slots.iter().any(|r| r.start <= slot && slot <= r.end))
    }
}

impl Shard {
    pub fn placements(&self) -> impl Iterator<Item = &Placement> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// The slot ranges, as `0-5460,5461-10921`.
    pub fn slots_text(&self) -> String {
        let ranges: Vec<String> = self
            .slots
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end))
            .collect();
        ranges.join(",")
    }
}

fn unknown_machine(id: MachineId) -> Refusal {
    Refusal {
        code: "unknown_machine".into(),
        message: format!("there is no machine {id} in the cluster"),
    }
}

fn check_eviction(e: &str) -> Result<(), Refusal> {
    const POLICIES: [&str; 8] = [
        "noeviction",
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ];
    if POLICIES.contains(&e) {
        Ok(())
    } else {
        refuse(
            "invalid",
            format!(
                "eviction policy {e:?} is not one of {}",
                POLICIES.join(", ")
            ),
        )
    }
}

fn api_port(api: &str) -> Option<u16> {
    api.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// 16384 slots in `n` contiguous ranges, as even as they divide.
pub fn split_slots(n: u32) -> Vec<SlotRange> {
    let total = u32::from(SLOTS);
    (0..n)
        .map(|i| SlotRange {
            start: (i * total / n) as u16,
            end: ((i + 1) * total / n - 1) as u16,
        })
        .collect()
}

fn subtract(ranges: &[SlotRange], cut: SlotRange) -> Vec<SlotRange> {
    let mut out = Vec::new();
    for r in ranges {
        if !r.overlaps(&cut) {
            out.push(*r);
            continue;
        }
        if r.start < cut.start {
            out.push(SlotRange {
                start: r.start,
                end: cut.start - 1,
            });
        }
        if r.end > cut.end {
            out.push(SlotRange {
                start: cut.end + 1,
                end: r.end,
            });
        }
    }
    out
}

fn normalize(ranges: &[SlotRange]) -> Vec<SlotRange> {
    let mut v = ranges.to_vec();
    v.sort();
    let mut out: Vec<SlotRange> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(last) if u32::from(last.end) + 1 >= u32::from(r.start) => {
                last.end = last.end.max(r.end)
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(id: u64, rack: Option<&str>) -> Machine {
        Machine {
            id,
            api: format!("127.0.0.1:{}", 9000 + id),
            host: "127.0.0.1".into(),
            rack: rack.map(String::from),
            memory: 4 << 30,
            cpus: 2,
            state: MachineState::Active,
            shard_ports: None,
        }
    }

    fn spec(name: &str, shards: u32) -> DatabaseSpec {
        DatabaseSpec {
            name: name.into(),
            port: None,
            shards,
            replication: true,
            persistence: Persistence::Aof,
            memory: 1 << 30,
            password: None,
            eviction: "noeviction".into(),
        }
    }

    fn cluster(machines: &[Machine]) -> (ClusterConfig, u64) {
        let mut c = ClusterConfig::default();
        let mut i = 1;
        assert!(matches!(
            c.apply(i, &Request::new("init", Command::Init { name: "t".into() })),
            Response::Done { .. }
        ));
        for m in machines {
            i += 1;
            let r = c.apply(
                i,
                &Request::new(format!("m{}", m.id), Command::AddMachine(m.clone())),
            );
            assert!(matches!(r, Response::Done { .. }), "{r:?}");
        }
        (c, i)
    }

    #[test]
    fn create_database_places_replicas_apart_and_covers_every_slot() {
        let (mut c, i) = cluster(&[
            machine(1, Some("a")),
            machine(2, Some("a")),
            machine(3, Some("b")),
        ]);
        let r = c.apply(
            i + 1,
            &Request::new("db", Command::CreateDatabase(spec("cache", 3))),
        );
        let Response::Database { database, epoch } = r else {
            panic!("{r:?}")
        };
        assert_eq!(epoch, i + 1);
        assert_eq!(c.epoch, i + 1);
        assert_eq!(database.port, ENDPOINT_PORT_BASE);
        let shards = c.shards_of(database.id);
        assert_eq!(shards.len(), 3);
        for s in &shards {
            assert_eq!(s.replicas.len(), 1);
            let (p, r) = (
                &c.machines[&s.primary.machine],
                &c.machines[&s.replicas[0].machine],
            );
            assert_ne!(p.id, r.id);
            // Racks a and b: a replica avoids its primary's rack.
            assert_ne!(p.rack, r.rack, "{s:?}");
        }
        for slot in [0, 5461, 16383] {
            assert!(c.slot_owner(database.id, slot).is_some());
        }
        c.check_slots(database.id).unwrap();
        // Ports never collide on a machine.
        for m in c.machines.keys() {
            let ports: Vec<u16> = c
                .shards
                .values()
                .flat_map(|s| s.placements())
                .filter(|p| p.machine == *m)
                .map(|p| p.port)
                .collect();
            let set: BTreeSet<u16> = ports.iter().copied().collect();
            assert_eq!(set.len(), ports.len());
        }
    }

    #[test]
    fn one_machine_holds_primary_and_replica() {
        let (mut c, i) = cluster(&[machine(1, None)]);
        let r = c.apply(
            i + 1,
            &Request::new("db", Command::CreateDatabase(spec("x", 2))),
        );
        assert!(matches!(r, Response::Database { .. }), "{r:?}");
        assert!(c.shards.values().all(|s| s.replicas[0].machine == 1));
    }

    #[test]
    fn invalid_requests_change_nothing() {
        let (mut c, mut i) = cluster(&[machine(1, None), machine(2, None)]);
        i += 1;
        let r = c.apply(
            i,
            &Request::new("db", Command::CreateDatabase(spec("x", 2))),
        );
        let Response::Database { database, .. } = r else {
            panic!()
        };
        let before = c.clone();
        let shard = *c.shards.keys().next().unwrap();
        let cases: Vec<(Command, &str)> = vec![
            (Command::CreateDatabase(spec("x", 1)), "database_exists"),
            (
                Command::CreateDatabase(DatabaseSpec {
                    port: Some(database.port),
                    ..spec("y", 1)
                }),
                "port_in_use",
            ),
            (
                Command::CreateDatabase(DatabaseSpec {
                    port: Some(9001),
                    ..spec("y", 1)
                }),
                "port_in_use",
            ),
            (Command::CreateDatabase(spec("", 1)), "invalid"),
            (Command::CreateDatabase(spec("y", 0)), "invalid"),
            (
                Command::CreateDatabase(DatabaseSpec {
                    memory: 100 << 30,
                    ..spec("y", 1)
                }),
                "not_enough_memory",
            ),
            (
                Command::CreateDatabase(DatabaseSpec {
                    eviction: "sometimes".into(),
                    ..spec("y", 1)
                }),
                "invalid",
            ),
            (Command::RemoveMachine { id: 7 }, "unknown_machine"),
            (Command::RemoveMachine { id: 1 }, "machine_in_use"),
            (
                Command::SetMachineState {
                    id: 9,
                    state: MachineState::Draining,
                },
                "unknown_machine",
            ),
            (
                Command::DeleteDatabase {
                    name: "nope".into(),
                },
                "unknown_database",
            ),
            (
                Command::SetShardRoles {
                    shard,
                    primary: Placement {
                        machine: 5,
                        port: 1,
                    },
                    replicas: vec![],
                    expected_role_epoch: c.shards[&shard].role_epoch,
                },
                "unknown_machine",
            ),
            (
                Command::SetShardRoles {
                    shard,
                    primary: c.shards[&shard].replicas[0],
                    replicas: vec![c.shards[&shard].primary],
                    expected_role_epoch: 1,
                },
                "stale_epoch",
            ),
            (
                Command::BeginMigration {
                    database: database.id,
                    slots: SlotRange {
                        start: 0,
                        end: 16383,
                    },
                    from: shard,
                    to: shard + 1,
                },
                "invalid",
            ),
            (
                Command::BeginMigration {
                    database: database.id,
                    slots: SlotRange { start: 10, end: 5 },
                    from: shard,
                    to: shard + 1,
                },
                "invalid",
            ),
            (
                Command::EndMigration {
                    id: 3,
                    commit: true,
                },
                "unknown_migration",
            ),
            (
                Command::Init {
                    name: "again".into(),
                },
                "already_initialized",
            ),
            (
                Command::AddMachine(Machine {
                    id: 3,
                    ..machine(1, None)
                }),
                "address_in_use",
            ),
        ];
        for (n, (cmd, code)) in cases.into_iter().enumerate() {
            i += 1;
            let r = c.apply(i, &Request::new(format!("bad{n}"), cmd.clone()));
            match r {
                Response::Refused(f) => assert_eq!(f.code, code, "{cmd:?}: {}", f.message),
                other => panic!("{cmd:?} was applied: {other:?}"),
            }
            let mut now = c.clone();
            now.recent = before.recent.clone();
            assert_eq!(now, before, "{cmd:?} changed the configuration");
        }
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let (mut c, i) = cluster(&[machine(1, None)]);
        let req = Request::new("same", Command::CreateDatabase(spec("x", 1)));
        let first = c.apply(i + 1, &req);
        let again = c.apply(i + 2, &req);
        assert_eq!(first, again);
        assert_eq!(c.databases.len(), 1);
        assert_eq!(c.epoch, i + 1);
    }

    #[test]
    fn migration_moves_slots() {
        let (mut c, i) = cluster(&[machine(1, None), machine(2, None)]);
        c.apply(
            i + 1,
            &Request::new("db", Command::CreateDatabase(spec("x", 2))),
        );
        let ids: Vec<ShardId> = c.shards.keys().copied().collect();
        let r = c.apply(
            i + 2,
            &Request::new(
                "mig",
                Command::BeginMigration {
                    database: 0,
                    slots: SlotRange { start: 0, end: 99 },
                    from: ids[0],
                    to: ids[1],
                },
            ),
        );
        let Response::Migration { id, .. } = r else {
            panic!("{r:?}")
        };
        c.apply(
            i + 3,
            &Request::new("end", Command::EndMigration { id, commit: true }),
        );
        assert_eq!(c.slot_owner(0, 50).unwrap().id, ids[1]);
        assert_eq!(c.slot_owner(0, 100).unwrap().id, ids[0]);
        c.check_slots(0).unwrap();
        assert!(c.migrations.is_empty());
    }

    /// ACL SETUSER and DELUSER on a database's users: all or nothing, lines in ACL LIST's
    /// format, the default user kept out while its password alone describes it, and a new
    /// password reaching a default user the lines describe.
    #[test]
    fn users_are_set_and_deleted() {
        let (mut c, i) = cluster(&[machine(1, None), machine(2, None)]);
        let r = c.apply(
            i + 1,
            &Request::new("db", Command::CreateDatabase(spec("cache", 1))),
        );
        assert!(matches!(r, Response::Database { .. }), "{r:?}");
        let i = i + 1;
        let set = |user: &str, rules: &[&str]| Command::SetUser {
            database: "cache".into(),
            user: user.into(),
            rules: rules.iter().map(|r| r.to_string()).collect(),
        };
        let hash = tessera_acl::hash_password(b"s");
        let r = c.apply(
            i + 1,
            &Request::new(
                "u1",
                set("app", &["on", &format!("#{hash}"), "~app:*", "+get"]),
            ),
        );
        assert_eq!(r, Response::Done { epoch: i + 1 });
        let users = &c.database_named("cache").unwrap().users;
        assert_eq!(
            users,
            &[format!(
                "user app on #{hash} ~app:* resetchannels -@all +get"
            )]
        );
        let r = c.apply(i + 2, &Request::new("u2", set("app", &["off", "+nosuch"])));
        let Response::Refused(f) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            f.message,
            "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
        );
        assert_eq!(c.epoch, i + 1);
        c.apply(
            i + 3,
            &Request::new("u3", set("default", &["-@all", "+ping"])),
        );
        assert_eq!(c.database_named("cache").unwrap().users.len(), 2);
        let update = Command::UpdateDatabase {
            name: "cache".into(),
            update: DatabaseUpdate {
                password: Some("pw".into()),
                ..DatabaseUpdate::default()
            },
        };
        c.apply(i + 4, &Request::new("u4", update));
        let db = c.database_named("cache").unwrap();
        let acl = tessera_acl::Acl::from_lines(db.password.as_deref(), &db.users).unwrap();
        assert!(acl.authenticate(b"default", b"pw").is_some());
        let del = |users: &[&str]| Command::DeleteUsers {
            database: "cache".into(),
            users: users.iter().map(|u| u.to_string()).collect(),
        };
        let r = c.apply(i + 5, &Request::new("u5", del(&["app", "nobody"])));
        assert_eq!(
            r,
            Response::Count {
                epoch: i + 5,
                count: 1
            }
        );
        let r = c.apply(i + 6, &Request::new("u6", del(&["default"])));
        assert!(matches!(r, Response::Refused(_)), "{r:?}");
    }

    /// The encoding is frozen: every variant as first written decodes to the same request and
    /// encodes to the same bytes. Append new cases; never edit old ones.
    #[test]
    fn request_encoding_is_frozen() {
        let golden: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../tests/golden_requests.json")).unwrap();
        let expected = golden_requests();
        assert_eq!(golden.len(), expected.len());
        for (g, e) in golden.iter().zip(&expected) {
            let decoded: Request = serde_json::from_value(g.clone()).unwrap();
            assert_eq!(&decoded, e);
            assert_eq!(&serde_json::to_value(e).unwrap(), g);
        }
    }

    fn golden_requests() -> Vec<Request> {
        let p = Placement {
            machine: 2,
            port: 7100,
        };
        [
            Command::Init {
                name: "prod".into(),
            },
            Command::AddMachine(machine(1, Some("r1"))),
            Command::RemoveMachine { id: 1 },
            Command::SetMachineState {
                id: 1,
                state: MachineState::Draining,
            },
            Command::CreateDatabase(spec("cache", 3)),
            Command::UpdateDatabase {
                name: "cache".into(),
                update: DatabaseUpdate {
                    memory: Some(2 << 30),
                    password: None,
                    clear_password: true,
                    eviction: Some("allkeys-lru".into()),
                    persistence: Some(Persistence::Snapshot),
                },
            },
            Command::DeleteDatabase {
                name: "cache".into(),
            },
            Command::SetShardRoles {
                shard: 4,
                primary: p,
                replicas: vec![Placement {
                    machine: 3,
                    port: 7101,
                }],
                expected_role_epoch: 17,
            },
            Command::BeginMigration {
                database: 0,
                slots: SlotRange { start: 0, end: 99 },
                from: 0,
                to: 1,
            },
            Command::EndMigration {
                id: 0,
                commit: true,
            },
            Command::SetUser {
                database: "cache".into(),
                user: "app".into(),
                rules: vec![
                    "on".into(),
                    "#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8".into(),
                    "~app:*".into(),
                    "+@read".into(),
                    "(+set ~w:*)".into(),
                ],
            },
            Command::DeleteUsers {
                database: "cache".into(),
                users: vec!["app".into(), "old".into()],
            },
        ]
        .into_iter()
        .enumerate()
        .map(|(i, c)| Request::new(format!("req-{i}"), c))
        .collect()
    }

    #[test]
    #[ignore = "prints the golden file; run it only to add a new variant"]
    fn print_golden_requests() {
        let v: Vec<serde_json::Value> = golden_requests()
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        tracing::info!("{}", serde_json::to_string_pretty(&v).unwrap());
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden_requests.json"),
            serde_json::to_string_pretty(&v).unwrap() + "\n",
        )
        .unwrap();
    }
}
