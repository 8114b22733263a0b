//! One control process: its Raft member, the network between members, writes (forwarded to
//! the leader), membership changes and the lease table.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, ChangeMembers, Raft, RaftNetwork, RaftNetworkFactory, ServerState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::api::ApiError;
use crate::model::{ClusterConfig, Command, Machine, MachineId, Request, Response, ShardId};
use crate::store::{NodeId, TypeConfig};

/// The header naming the member an RPC comes from (for fault injection).
pub const FROM_HEADER: &str = "x-tessera-from";
/// How long a write may take before the caller is told its outcome is unknown.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lease rules (docs/LEASES.md): a primary holds a lease for `LEASE` from the moment it
/// *sent* its renewal; the leader counts it from when it *granted* it, which is later.
pub const LEASE: Duration = Duration::from_millis(3000);

/// The members this one pretends it cannot reach (test builds: `--fault-injection`).
#[derive(Default)]
pub struct Faults {
    pub enabled: bool,
    blocked: Mutex<HashSet<NodeId>>,
}

impl Faults {
    pub fn new(enabled: bool) -> Faults {
        Faults {
            enabled,
            blocked: Mutex::default(),
        }
    }

    pub fn blocked(&self, id: NodeId) -> bool {
        self.enabled && self.blocked.lock().expect("faults lock").contains(&id)
    }

    pub fn set(&self, ids: impl IntoIterator<Item = NodeId>) {
        *self.blocked.lock().expect("faults lock") = ids.into_iter().collect();
    }
}

/// The Raft RPC client for one peer.
pub struct Peer {
    http: reqwest::Client,
    token: Arc<str>,
    me: NodeId,
    target: NodeId,
    url: String,
    faults: Arc<Faults>,
}

/// Creates [`Peer`]s.
#[derive(Clone)]
pub struct Network {
    pub http: reqwest::Client,
    pub token: Arc<str>,
    pub me: NodeId,
    pub faults: Arc<Faults>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            http: self.http.clone(),
            token: self.token.clone(),
            me: self.me,
            target,
            url: format!("http://{}", node.addr),
            faults: self.faults.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Peer {
    async fn call<Q, P, E>(
        &self,
        path: &str,
        req: &Q,
        ttl: Duration,
    ) -> Result<P, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Q: Serialize,
        P: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.faults.blocked(self.target) {
            return Err(RPCError::Unreachable(Unreachable::new(&Msg(
                "blocked by fault injection".into(),
            ))));
        }
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&*self.token)
            .header(FROM_HEADER, self.me.to_string())
            .timeout(ttl)
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(RPCError::Network(NetworkError::new(&Msg(format!(
                "{path}: {status}: {body}"
            )))));
        }
        let r: Result<P, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("/raft/append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("/raft/snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("/raft/vote", &rpc, option.hard_ttl()).await
    }
}

/// A lease as the leader recorded it.
#[derive(Clone, Copy, Debug)]
struct Grant {
    machine: MachineId,
    role_epoch: u64,
    until: Instant,
}

/// What a primary asks for when it renews its lease.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub shard: ShardId,
    pub machine: MachineId,
    pub role_epoch: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseGrant {
    pub shard: ShardId,
    /// How long the lease lasts, counted from when the primary sent its request.
    pub duration_ms: u64,
    pub epoch: u64,
}

/// The leader's lease table.
#[derive(Default)]
struct Leases {
    /// When this member last became leader (leases granted by earlier leaders are unknown to
    /// it, so it assumes one may run until `LEASE` after this).
    leader_since: Option<Instant>,
    grants: HashMap<ShardId, Grant>,
}

/// A running control member.
pub struct Node {
    pub id: NodeId,
    pub me: Machine,
    pub raft: Raft<TypeConfig>,
    pub config: watch::Receiver<Arc<ClusterConfig>>,
    pub http: reqwest::Client,
    pub token: Arc<str>,
    pub faults: Arc<Faults>,
    leases: Mutex<Leases>,
    pub processes: crate::supervise::Table,
    next_request: std::sync::atomic::AtomicU64,
    /// True once the member is stopping: the supervisor stops its processes and configuration
    /// long-polls answer at once, so the API's graceful shutdown does not wait for them.
    pub stopping: watch::Sender<bool>,
}

impl Node {
    pub fn new(
        me: Machine,
        raft: Raft<TypeConfig>,
        config: watch::Receiver<Arc<ClusterConfig>>,
        network: &Network,
    ) -> Arc<Node> {
        let node = Arc::new(Node {
            id: me.id,
            me,
            raft,
            config,
            http: network.http.clone(),
            token: network.token.clone(),
            faults: network.faults.clone(),
            leases: Mutex::new(Leases::default()),
            processes: Default::default(),
            next_request: std::sync::atomic::AtomicU64::new(0),
            stopping: watch::Sender::new(false),
        });
        let weak = Arc::downgrade(&node);
        let mut metrics = node.raft.metrics();
        tokio::spawn(async move {
            loop {
                let leader = metrics.borrow_and_update().state == ServerState::Leader;
                let Some(node) = weak.upgrade() else { return };
                {
                    let mut l = node.leases.lock().expect("lease lock");
                    match (leader, l.leader_since) {
                        (true, None) => l.leader_since = Some(Instant::now()),
                        (false, Some(_)) => {
                            l.leader_since = None;
                            l.grants.clear();
                        }
                        _ => {}
                    }
                }
                drop(node);
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        node
    }

    /// The configuration as this member has applied it.
    pub fn current(&self) -> Arc<ClusterConfig> {
        self.config.borrow().clone()
    }

    /// A request id unique across members and restarts.
    fn request_id(&self) -> String {
        let n = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{t:x}-{n}", self.id)
    }

    /// Commits a command through the leader and returns its result. Retried with the same
    /// request id while there is no leader, so it is applied at most once.
    pub async fn write(&self, cmd: Command) -> Result<Response, ApiError> {
        self.submit(Request::new(self.request_id(), cmd)).await
    }

    pub async fn submit(&self, req: Request) -> Result<Response, ApiError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut sent = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(r) = tokio::time::timeout(left, self.raft.client_write(req.clone())).await
            else {
                // Proposed here but not committed in time (no quorum).
                return Err(ApiError::new(
                    "timeout",
                    "the change was proposed but not committed in time (no quorum?); it may or may not be applied (retrying with the same request id is safe)",
                ));
            };
            match r {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    if let (Some(id), Some(leader)) = (f.leader_id, f.leader_node)
                        && id != self.id
                    {
                        sent = true;
                        match self.forward(id, &leader.addr, &req).await {
                            Ok(r) => return Ok(r),
                            Err(e) if e.code != "unavailable" => return Err(e),
                            Err(_) => {}
                        }
                    }
                }
                Err(RaftError::APIError(e)) => {
                    return Err(ApiError::new("invalid", e.to_string()));
                }
                Err(RaftError::Fatal(e)) => {
                    return Err(ApiError::new(
                        "unavailable",
                        format!("this member stopped: {e}"),
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(if sent {
                    ApiError::new(
                        "timeout",
                        "no leader confirmed the change in time; it may or may not be applied (retrying with the same request id is safe)",
                    )
                } else {
                    ApiError::new("unavailable", "the control group has no leader")
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a write to the leader (`leader` at `addr`) for it to commit.
    async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        req: &Request,
    ) -> Result<Response, ApiError> {
        if self.faults.blocked(leader) {
            return Err(ApiError::new("unavailable", "the leader is unreachable"));
        }
        self.post_member(addr, "/v1/internal/write", req, WRITE_TIMEOUT)
            .await
    }

    /// POSTs `body` to another member and reads its JSON answer, or its API error.
    pub async fn post_member<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &impl Serialize,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let resp = self
            .http
            .post(format!("http://{addr}{path}"))
            .bearer_auth(&*self.token)
            .header(FROM_HEADER, self.id.to_string())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| ApiError::new("unavailable", format!("forwarding to the leader: {e}")))?;
        let ok = resp.status().is_success();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::new("unavailable", e.to_string()))?;
        if ok {
            serde_json::from_slice(&bytes).map_err(|e| ApiError::new("unavailable", e.to_string()))
        } else {
            Err(ApiError::from_body(&bytes))
        }
    }

    pub fn current_leader_id(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Starts a cluster with this member as its only voter.
    pub async fn init(&self, name: &str) -> Result<u64, ApiError> {
        let mut members = BTreeMap::new();
        members.insert(
            self.id,
            BasicNode {
                addr: self.me.api.clone(),
            },
        );
        if self.current().name.is_some() || self.raft.is_initialized().await.unwrap_or(false) {
            return Err(ApiError::new(
                "already_initialized",
                "this member already belongs to a cluster",
            ));
        }
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ApiError::new("already_initialized", e.to_string()))?;
        let r = self.write(Command::Init { name: name.into() }).await?;
        check(r)?;
        check(self.write(Command::AddMachine(self.me.clone())).await?)
    }

    /// Adds a machine: a learner first, then a voter while there are fewer voters than the
    /// group should have (1 for 1-2 machines, 3 for 3-4, 5 from 5).
    pub async fn join(&self, m: Machine) -> Result<u64, ApiError> {
        self.leader_only()?;
        if let Some(old) = self.current().machines.get(&m.id)
            && *old != m
        {
            return Err(ApiError::new(
                "machine_exists",
                format!("machine {} is already a member with other settings", m.id),
            ));
        }
        self.raft
            .add_learner(
                m.id,
                BasicNode {
                    addr: m.api.clone(),
                },
                true,
            )
            .await
            .map_err(|e| ApiError::new("unavailable", format!("adding a learner: {e}")))?;
        let epoch = check(self.write(Command::AddMachine(m)).await?)?;
        self.balance_voters(None).await?;
        Ok(epoch)
    }

    /// Removes a machine from the group and the configuration.
    pub async fn leave(&self, id: MachineId) -> Result<u64, ApiError> {
        self.leader_only()?;
        let cfg = self.current();
        if !cfg.machines.contains_key(&id) {
            return Err(ApiError::new(
                "unknown_machine",
                format!("there is no machine {id} in the cluster"),
            ));
        }
        if let Some(s) = cfg
            .shards
            .values()
            .find(|s| s.placements().any(|p| p.machine == id))
        {
            return Err(ApiError::new(
                "machine_in_use",
                format!(
                    "machine {id} still runs a process of shard {}: delete its database or move the shard first",
                    s.id
                ),
            ));
        }
        self.balance_voters(Some(id)).await?;
        let mut gone = BTreeSet::new();
        gone.insert(id);
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(gone), false)
            .await
            .map_err(|e| ApiError::new("unavailable", format!("removing the member: {e}")))?;
        check(self.write(Command::RemoveMachine { id }).await?)
    }

    /// Makes the voter set the right size, preferring current voters, then learners by id;
    /// `leaving` is never a voter.
    async fn balance_voters(&self, leaving: Option<NodeId>) -> Result<(), ApiError> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let all: BTreeSet<NodeId> = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| Some(*id) != leaving)
            .collect();
        let target = match all.len() {
            0..=2 => 1,
            3..=4 => 3,
            _ => 5,
        };
        let mut next: BTreeSet<NodeId> = voters
            .iter()
            .copied()
            .filter(|v| Some(*v) != leaving)
            .take(target)
            .collect();
        for id in &all {
            if next.len() >= target {
                break;
            }
            next.insert(*id);
        }
        if next.is_empty() || next == voters {
            return Ok(());
        }
        self.raft
            .change_membership(next, true)
            .await
            .map_err(|e| ApiError::new("unavailable", format!("changing the voters: {e}")))?;
        Ok(())
    }

    fn leader_only(&self) -> Result<(), ApiError> {
        if self.is_leader() {
            return Ok(());
        }
        Err(self.not_leader())
    }

    pub fn not_leader(&self) -> ApiError {
        let leader = self.current_leader_id();
        let addr = leader.and_then(|l| {
            self.raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
        });
        let mut e = ApiError::new(
            "not_leader",
            match &addr {
                Some(a) => format!("this member is not the leader; the leader is at {a}"),
                None => "this member is not the leader, and no leader is known".into(),
            },
        );
        e.leader = addr;
        e
    }

    /// Renews (or grants) the write lease of a shard's primary. Only the leader grants; it
    /// refuses a machine that is not the shard's primary at that role epoch.
    pub fn renew_lease(&self, req: &LeaseRequest) -> Result<LeaseGrant, ApiError> {
        self.leader_only()?;
        let cfg = self.current();
        let shard = cfg.shards.get(&req.shard).ok_or_else(|| {
            ApiError::new("unknown_shard", format!("there is no shard {}", req.shard))
        })?;
        if shard.primary.machine != req.machine || shard.role_epoch != req.role_epoch {
            return Err(ApiError::new(
                "stale_epoch",
                format!(
                    "machine {} at role epoch {} is not the primary of shard {} (machine {} at role epoch {} is)",
                    req.machine, req.role_epoch, req.shard, shard.primary.machine, shard.role_epoch
                ),
            ));
        }
        let mut l = self.leases.lock().expect("lease lock");
        l.grants.insert(
            req.shard,
            Grant {
                machine: req.machine,
                role_epoch: req.role_epoch,
                until: Instant::now() + LEASE,
            },
        );
        Ok(LeaseGrant {
            shard: req.shard,
            duration_ms: LEASE.as_millis() as u64,
            epoch: cfg.epoch,
        })
    }

    /// Whether no primary of `shard` can hold a lease any more, as far as this leader knows:
    /// the last grant ran out, and so has any lease an earlier leader may have granted.
    pub fn lease_expired(&self, shard: ShardId) -> bool {
        let l = self.leases.lock().expect("lease lock");
        let now = Instant::now();
        let Some(since) = l.leader_since else {
            return false;
        };
        now >= since + LEASE && l.grants.get(&shard).is_none_or(|g| now >= g.until)
    }

    /// The leases this leader granted that still run: (shard, machine, role epoch, ms left).
    pub fn leases(&self) -> Vec<(ShardId, MachineId, u64, u64)> {
        let l = self.leases.lock().expect("lease lock");
        let now = Instant::now();
        let mut v: Vec<_> = l
            .grants
            .iter()
            .filter(|(_, g)| g.until > now)
            .map(|(s, g)| {
                (
                    *s,
                    g.machine,
                    g.role_epoch,
                    (g.until - now).as_millis() as u64,
                )
            })
            .collect();
        v.sort();
        v
    }
}

/// The epoch of an applied change, or its refusal as an error.
pub fn check(r: Response) -> Result<u64, ApiError> {
    match r {
        Response::Done { epoch }
        | Response::Database { epoch, .. }
        | Response::Migration { epoch, .. }
        | Response::Count { epoch, .. } => Ok(epoch),
        Response::Refused(f) => Err(f.into()),
    }
}
