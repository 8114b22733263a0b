//! The REST API (JSON, `/v1/...`) and the Raft RPC endpoints (`/raft/...`), one axum router.
//! Every route but `/v1/openapi.json` wants `Authorization: Bearer <admin token>`. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with stable codes (docs/CONTROL.md).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};

use crate::model::{
    ClusterConfig, Command, Database, DatabaseSpec, DatabaseUpdate, Machine, Request, Response,
    Shard,
};
use crate::node::{FROM_HEADER, LeaseRequest, Node, check};
use crate::store::{NodeId, TypeConfig};
use crate::supervise::ProcessReport;

/// The OpenAPI document, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An error as the API returns it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    /// The leader's address, with `not_leader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

impl std::error::Error for ApiError {}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.into(),
            message: message.into(),
            leader: None,
        }
    }

    /// Reads an error body; anything else becomes an `unavailable` error holding the text.
    pub fn from_body(body: &[u8]) -> ApiError {
        serde_json::from_slice::<ErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_else(|_| ApiError::new("unavailable", String::from_utf8_lossy(body)))
    }

    pub fn status(&self) -> StatusCode {
        match self.code.as_str() {
            "invalid" | "unsupported_version" => StatusCode::BAD_REQUEST,
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "unknown_machine" | "unknown_database" | "unknown_shard" | "unknown_migration"
            | "not_found" => StatusCode::NOT_FOUND,
            "not_leader" => StatusCode::MISDIRECTED_REQUEST,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "timeout" => StatusCode::GATEWAY_TIMEOUT,
            "not_enough_memory" => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::CONFLICT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        (self.status(), Json(ErrorBody { error: self })).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// A JSON body; a malformed one is an `invalid` error in the API's error format.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: HttpRequest, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| ApiError::new("invalid", e.body_text()))
    }
}

/// Query parameters; malformed ones are an `invalid` error in the API's error format.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|e| ApiError::new("invalid", e.body_text()))
    }
}
type Shared = Arc<Node>;

/// The whole router for one member.
pub fn router(node: Arc<Node>) -> Router {
    let v1 = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/cluster/init", post(init))
        .route("/v1/cluster/join", post(join))
        .route("/v1/cluster/leave", post(leave))
        .route("/v1/machines", get(machines))
        .route("/v1/machines/{id}", get(machine))
        .route("/v1/databases", get(databases).post(create_database))
        .route(
            "/v1/databases/{name}",
            get(database).patch(update_database).delete(delete_database),
        )
        .route("/v1/databases/{name}/slots", get(slots))
        .route(
            "/v1/databases/{name}/users",
            get(users).delete(delete_users),
        )
        .route("/v1/databases/{name}/users/{user}", put(set_user))
        .route("/v1/shards", get(shards))
        .route("/v1/config", get(watch_config))
        .route("/v1/leases", get(leases).post(renew_lease))
        .route("/v1/processes", get(processes))
        .route("/v1/internal/write", post(internal_write))
        .route("/v1/debug/faults", post(set_faults))
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        .route_layer(middleware::from_fn_with_state(node.clone(), authorize));
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .merge(v1)
        .fallback(|| async { ApiError::new("not_found", "no such endpoint: see /v1/openapi.json") })
        .with_state(node)
}

async fn authorize(
    State(node): State<Shared>,
    headers: HeaderMap,
    req: HttpRequest,
    next: Next,
) -> HttpResponse {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|t| constant_time_eq(t.as_bytes(), node.token.as_bytes())) {
        return ApiError::new(
            "unauthorized",
            "missing or wrong admin token: pass it as `Authorization: Bearer <token>` (the CLI reads --token or TESSERA_ADMIN_TOKEN)",
        )
        .into_response();
    }
    // Fault injection: a member we "cannot reach" cannot reach us either.
    let from = headers
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    if from.is_some_and(|f| node.faults.blocked(f)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "blocked by fault injection",
        )
            .into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// `GET /v1/status`.
#[derive(Serialize, Deserialize)]
pub struct Status {
    pub cluster: Option<String>,
    pub epoch: u64,
    pub node: NodeId,
    /// This member's own machine description (what it joins with).
    pub me: Machine,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub leader_address: Option<String>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub last_applied: Option<u64>,
    /// The last log index the current snapshot covers.
    pub snapshot: Option<u64>,
    /// The log is purged up to this index.
    pub purged: Option<u64>,
    pub machines: Vec<Machine>,
    pub databases: Vec<Database>,
    pub shards: Vec<Shard>,
}

async fn status(State(node): State<Shared>) -> ApiResult<Status> {
    let m = node.raft.metrics().borrow().clone();
    let cfg = node.current();
    let membership = m.membership_config.membership();
    Ok(Json(Status {
        cluster: cfg.name.clone(),
        epoch: cfg.epoch,
        node: node.id,
        me: node.me.clone(),
        state: format!("{:?}", m.state).to_lowercase(),
        term: m.current_term,
        leader: m.current_leader,
        leader_address: m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone())),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        last_applied: m.last_applied.map(|l| l.index),
        snapshot: m.snapshot.map(|l| l.index),
        purged: m.purged.map(|l| l.index),
        machines: cfg.machines.values().cloned().collect(),
        databases: cfg.databases.values().cloned().collect(),
        shards: cfg.shards.values().cloned().collect(),
    }))
}

#[derive(Deserialize)]
struct InitBody {
    name: String,
}

#[derive(Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: u64,
}

async fn init(State(node): State<Shared>, Body(b): Body<InitBody>) -> ApiResult<Epoch> {
    Ok(Json(Epoch {
        epoch: node.init(&b.name).await?,
    }))
}

/// Leader-only operations are forwarded to the leader by the member that receives them.
async fn on_leader<T: for<'a> Deserialize<'a>>(
    node: &Node,
    path: &str,
    body: &impl Serialize,
) -> Result<Option<T>, ApiError> {
    if node.is_leader() {
        return Ok(None);
    }
    let e = node.not_leader();
    let Some(addr) = e.leader.clone() else {
        return Err(ApiError::new(
            "unavailable",
            "the control group has no leader",
        ));
    };
    node.post_member(&addr, path, body, Duration::from_secs(30))
        .await
        .map(Some)
}

async fn join(State(node): State<Shared>, Body(m): Body<Machine>) -> ApiResult<Epoch> {
    if let Some(r) = on_leader(&node, "/v1/cluster/join", &m).await? {
        return Ok(Json(r));
    }
    Ok(Json(Epoch {
        epoch: node.join(m).await?,
    }))
}

#[derive(Serialize, Deserialize)]
pub struct LeaveBody {
    pub id: NodeId,
}

async fn leave(State(node): State<Shared>, Body(b): Body<LeaveBody>) -> ApiResult<Epoch> {
    if let Some(r) = on_leader(&node, "/v1/cluster/leave", &b).await? {
        return Ok(Json(r));
    }
    Ok(Json(Epoch {
        epoch: node.leave(b.id).await?,
    }))
}

async fn machines(State(node): State<Shared>) -> ApiResult<Vec<Machine>> {
    Ok(Json(node.current().machines.values().cloned().collect()))
}

async fn machine(State(node): State<Shared>, Path(id): Path<String>) -> ApiResult<Machine> {
    let id: NodeId = id
        .parse()
        .map_err(|_| ApiError::new("invalid", format!("{id:?} is not a machine id")))?;
    node.current()
        .machines
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::new("unknown_machine", format!("there is no machine {id}")))
}

/// A database with its shards, as `GET /v1/databases/{name}` returns it.
#[derive(Serialize, Deserialize)]
pub struct DatabaseView {
    #[serde(flatten)]
    pub database: Database,
    pub shards: Vec<Shard>,
}

fn view(cfg: &ClusterConfig, db: &Database) -> DatabaseView {
    let mut db = db.clone();
    // The password is not shown back, only whether there is one.
    db.password = db.password.map(|_| "********".into());
    DatabaseView {
        shards: cfg.shards_of(db.id).into_iter().cloned().collect(),
        database: db,
    }
}

async fn databases(State(node): State<Shared>) -> ApiResult<Vec<DatabaseView>> {
    let cfg = node.current();
    Ok(Json(
        cfg.databases.values().map(|d| view(&cfg, d)).collect(),
    ))
}

async fn database(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult<DatabaseView> {
    let cfg = node.current();
    let db = cfg.database_named(&name)?;
    Ok(Json(view(&cfg, db)))
}

impl From<crate::model::Refusal> for ApiError {
    fn from(f: crate::model::Refusal) -> ApiError {
        ApiError::new(&f.code, f.message)
    }
}

/// Waits until this member has applied `epoch` (writes answer once the leader applied them;
/// a follower may be a moment behind), so a read after a write sees it.
async fn applied(node: &Node, epoch: u64) -> Arc<ClusterConfig> {
    let mut rx = node.config.clone();
    let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|c| c.epoch >= epoch)).await;
    node.current()
}

async fn create_database(
    State(node): State<Shared>,
    Body(spec): Body<DatabaseSpec>,
) -> Result<(StatusCode, Json<DatabaseView>), ApiError> {
    let r = node.write(Command::CreateDatabase(spec)).await?;
    match r {
        Response::Database { epoch, database } => {
            let cfg = applied(&node, epoch).await;
            Ok((StatusCode::CREATED, Json(view(&cfg, &database))))
        }
        other => Err(check(other)
            .err()
            .unwrap_or_else(|| ApiError::new("unavailable", "unexpected reply to CreateDatabase"))),
    }
}

async fn update_database(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Body(update): Body<DatabaseUpdate>,
) -> ApiResult<DatabaseView> {
    let epoch = check(
        node.write(Command::UpdateDatabase {
            name: name.clone(),
            update,
        })
        .await?,
    )?;
    let cfg = applied(&node, epoch).await;
    let db = cfg.database_named(&name)?;
    Ok(Json(view(&cfg, db)))
}

async fn delete_database(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult<Epoch> {
    let epoch = check(node.write(Command::DeleteDatabase { name }).await?)?;
    Ok(Json(Epoch { epoch }))
}

async fn users(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult<Vec<String>> {
    let cfg = node.current();
    Ok(Json(cfg.database_named(&name)?.users.clone()))
}

/// `PUT /v1/databases/{name}/users/{user}`'s body: ACL SETUSER's rules.
#[derive(Deserialize)]
struct UserRules {
    rules: Vec<String>,
}

/// ACL SETUSER for a database. Clear-text passwords are hashed here, before the Raft log.
async fn set_user(
    State(node): State<Shared>,
    Path((name, user)): Path<(String, String)>,
    Body(b): Body<UserRules>,
) -> ApiResult<Epoch> {
    let ops = b.rules.into_iter().map(String::into_bytes).collect();
    let rules = tessera_acl::commands::hash_passwords(ops)
        .into_iter()
        .map(|r| String::from_utf8(r).expect("rules were text and hashes are hex"))
        .collect();
    let cmd = Command::SetUser {
        database: name,
        user,
        rules,
    };
    let epoch = check(node.write(cmd).await?)?;
    applied(&node, epoch).await;
    Ok(Json(Epoch { epoch }))
}

#[derive(Deserialize)]
struct UserNames {
    users: Vec<String>,
}

#[derive(Serialize)]
struct Deleted {
    epoch: u64,
    deleted: u64,
}

/// ACL DELUSER for a database: how many of the users named were deleted.
async fn delete_users(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Body(b): Body<UserNames>,
) -> ApiResult<Deleted> {
    let cmd = Command::DeleteUsers {
        database: name,
        users: b.users,
    };
    match node.write(cmd).await? {
        Response::Count { epoch, count } => {
            applied(&node, epoch).await;
            Ok(Json(Deleted {
                epoch,
                deleted: count,
            }))
        }
        other => Err(check(other)
            .err()
            .unwrap_or_else(|| ApiError::new("unavailable", "unexpected reply to DeleteUsers"))),
    }
}

async fn slots(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult<Vec<SlotOwner>> {
    let cfg = node.current();
    let db = cfg.database_named(&name)?;
    let mut out = Vec::new();
    for s in cfg.shards_of(db.id) {
        let host = cfg
            .machines
            .get(&s.primary.machine)
            .map(|m| m.host.clone())
            .unwrap_or_default();
        for r in &s.slots {
            out.push(SlotOwner {
                start: r.start,
                end: r.end,
                shard: s.id,
                primary: format!("{host}:{}", s.primary.port),
            });
        }
    }
    out.sort_by_key(|o| o.start);
    Ok(Json(out))
}

/// One range of a database's slot map.
#[derive(Serialize, Deserialize)]
pub struct SlotOwner {
    pub start: u16,
    pub end: u16,
    pub shard: u32,
    pub primary: String,
}

async fn shards(State(node): State<Shared>) -> ApiResult<Vec<Shard>> {
    Ok(Json(node.current().shards.values().cloned().collect()))
}

#[derive(Deserialize)]
struct WatchQuery {
    /// Answer once the epoch is greater than this.
    #[serde(default)]
    after: u64,
    /// Longest wait in milliseconds (at most 60000); the current configuration then.
    #[serde(default = "default_wait")]
    wait_ms: u64,
}

fn default_wait() -> u64 {
    30_000
}

/// `GET /v1/config?after=EPOCH&wait_ms=MS`: long-poll for the configuration.
async fn watch_config(
    State(node): State<Shared>,
    Params(q): Params<WatchQuery>,
) -> ApiResult<ClusterConfig> {
    let mut rx = node.config.clone();
    let mut stopping = node.stopping.subscribe();
    let wait = Duration::from_millis(q.wait_ms.min(60_000));
    // A member that is stopping answers at once (the watcher then asks another member).
    tokio::select! {
        _ = tokio::time::timeout(wait, rx.wait_for(|c| c.epoch > q.after)) => {}
        _ = stopping.wait_for(|s| *s) => {}
    }
    let mut cfg = (*node.current()).clone();
    cfg.recent.clear();
    Ok(Json(cfg))
}

/// A running lease, as `GET /v1/leases` lists them (leader only).
#[derive(Serialize, Deserialize)]
pub struct LeaseView {
    pub shard: u32,
    pub machine: NodeId,
    pub role_epoch: u64,
    pub remaining_ms: u64,
}

async fn leases(State(node): State<Shared>) -> ApiResult<Vec<LeaseView>> {
    if !node.is_leader() {
        return Err(node.not_leader());
    }
    Ok(Json(
        node.leases()
            .into_iter()
            .map(|(shard, machine, role_epoch, remaining_ms)| LeaseView {
                shard,
                machine,
                role_epoch,
                remaining_ms,
            })
            .collect(),
    ))
}

async fn renew_lease(
    State(node): State<Shared>,
    Body(req): Body<LeaseRequest>,
) -> ApiResult<crate::node::LeaseGrant> {
    Ok(Json(node.renew_lease(&req)?))
}

async fn processes(State(node): State<Shared>) -> ApiResult<Vec<ProcessReport>> {
    Ok(Json(crate::supervise::report_live(&node).await))
}

async fn internal_write(
    State(node): State<Shared>,
    Body(req): Body<Request>,
) -> ApiResult<Response> {
    // One hop only: a member that is not the leader any more says so.
    let Ok(r) = tokio::time::timeout(Duration::from_secs(5), node.raft.client_write(req)).await
    else {
        return Err(ApiError::new(
            "timeout",
            "the leader proposed the change but did not commit it in time; it may or may not be applied",
        ));
    };
    match r {
        Ok(r) => Ok(Json(r.data)),
        Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(_))) => {
            Err(ApiError::new("unavailable", "the leader changed"))
        }
        Err(e) => Err(ApiError::new("unavailable", e.to_string())),
    }
}

#[derive(Deserialize)]
struct FaultsBody {
    /// Members to treat as unreachable (empty: heal).
    blocked: Vec<NodeId>,
}

async fn set_faults(State(node): State<Shared>, Body(b): Body<FaultsBody>) -> ApiResult<Epoch> {
    if !node.faults.enabled {
        return Err(ApiError::new(
            "not_found",
            "fault injection is off (start the member with --fault-injection)",
        ));
    }
    node.faults.set(b.blocked);
    Ok(Json(Epoch {
        epoch: node.current().epoch,
    }))
}

async fn raft_append(State(node): State<Shared>, body: Bytes) -> HttpResponse {
    let req: AppendEntriesRequest<TypeConfig> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::new("invalid", e.to_string()).into_response(),
    };
    Json(node.raft.append_entries(req).await).into_response()
}

async fn raft_vote(State(node): State<Shared>, body: Bytes) -> HttpResponse {
    let req: VoteRequest<NodeId> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::new("invalid", e.to_string()).into_response(),
    };
    Json(node.raft.vote(req).await).into_response()
}

async fn raft_snapshot(State(node): State<Shared>, body: Bytes) -> HttpResponse {
    let req: InstallSnapshotRequest<TypeConfig> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::new("invalid", e.to_string()).into_response(),
    };
    let r: Result<_, RaftError<NodeId, InstallSnapshotError>> =
        node.raft.install_snapshot(req).await;
    Json(r).into_response()
}
