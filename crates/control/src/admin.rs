//! The admin side: a client of the REST API, and the `tessera cluster ...` / `tessera db ...`
//! commands built on it (tables for people, `--json` for scripts).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ApiError, DatabaseView, Epoch, LeaveBody, Status};
use crate::model::{DatabaseSpec, Machine, Persistence, Shard};
use crate::supervise::ProcessReport;

/// A REST API client for one member.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `addr` is `host:port` or a URL.
    pub fn new(addr: &str, token: &str) -> Client {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        Client {
            base,
            token: token.to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client without TLS builds"),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ApiError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            ApiError::new(
                "unavailable",
                if e.is_connect() {
                    format!(
                        "cannot reach the control API at {}: is `tessera control` running there? (set --api or TESSERA_API)",
                        self.base
                    )
                } else {
                    format!("{}: {e}", self.base)
                },
            )
        })?;
        let ok = resp.status().is_success();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::new("unavailable", e.to_string()))?;
        if !ok {
            return Err(ApiError::from_body(&bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                "unavailable",
                format!("{}{path} answered something unexpected: {e}", self.base),
            )
        })
    }

    pub async fn status(&self) -> Result<Status, ApiError> {
        self.call(reqwest::Method::GET, "/v1/status", None::<&()>)
            .await
    }

    pub async fn init(&self, name: &str) -> Result<Epoch, ApiError> {
        #[derive(Serialize)]
        struct B<'a> {
            name: &'a str,
        }
        self.call(reqwest::Method::POST, "/v1/cluster/init", Some(&B { name }))
            .await
    }

    pub async fn join(&self, m: &Machine) -> Result<Epoch, ApiError> {
        self.call(reqwest::Method::POST, "/v1/cluster/join", Some(m))
            .await
    }

    pub async fn leave(&self, id: u64) -> Result<Epoch, ApiError> {
        self.call(
            reqwest::Method::POST,
            "/v1/cluster/leave",
            Some(&LeaveBody { id }),
        )
        .await
    }

    pub async fn databases(&self) -> Result<Vec<DatabaseView>, ApiError> {
        self.call(reqwest::Method::GET, "/v1/databases", None::<&()>)
            .await
    }

    pub async fn database(&self, name: &str) -> Result<DatabaseView, ApiError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/databases/{name}"),
            None::<&()>,
        )
        .await
    }

    pub async fn create_database(&self, spec: &DatabaseSpec) -> Result<DatabaseView, ApiError> {
        self.call(reqwest::Method::POST, "/v1/databases", Some(spec))
            .await
    }

    pub async fn delete_database(&self, name: &str) -> Result<Epoch, ApiError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v1/databases/{name}"),
            None::<&()>,
        )
        .await
    }

    pub async fn processes(&self) -> Result<Vec<ProcessReport>, ApiError> {
        self.call(reqwest::Method::GET, "/v1/processes", None::<&()>)
            .await
    }
}

/// An admin command, as the CLI parsed it.
pub enum Admin {
    Init {
        name: String,
    },
    Status,
    /// Asks the member at `--api` to join the cluster `seed` belongs to.
    Join {
        seed: String,
    },
    Leave {
        id: u64,
    },
    DbCreate(DatabaseSpec),
    DbList,
    DbShow {
        name: String,
    },
    DbDelete {
        name: String,
    },
}

/// Runs an admin command against the member at `api`; returns what to print.
pub async fn run(api: &str, token: &str, json: bool, cmd: Admin) -> Result<String, ApiError> {
    let c = Client::new(api, token);
    let out = match cmd {
        Admin::Init { name } => {
            let e = c.init(&name).await?;
            if json {
                to_json(&e)
            } else {
                format!("cluster {name:?} initialized (epoch {})\n", e.epoch)
            }
        }
        Admin::Status => {
            let s = c.status().await?;
            let mut procs = Vec::new();
            for m in &s.machines {
                let r = Client::new(&m.api, token).processes().await;
                procs.push((m.id, r));
            }
            if json {
                let procs: Vec<serde_json::Value> = procs
                    .into_iter()
                    .map(|(id, r)| match r {
                        Ok(p) => serde_json::json!({"machine": id, "processes": p}),
                        Err(e) => serde_json::json!({"machine": id, "error": e}),
                    })
                    .collect();
                to_json(&serde_json::json!({"status": s, "processes": procs}))
            } else {
                status_table(&s, &procs)
            }
        }
        Admin::Join { seed } => {
            let m = c.status().await?.me;
            let e = Client::new(&seed, token).join(&m).await?;
            if json {
                to_json(&e)
            } else {
                format!("machine {} joined (epoch {})\n", m.id, e.epoch)
            }
        }
        Admin::Leave { id } => {
            let e = c.leave(id).await?;
            if json {
                to_json(&e)
            } else {
                format!("machine {id} left the cluster (epoch {})\n", e.epoch)
            }
        }
        Admin::DbCreate(spec) => {
            let d = c.create_database(&spec).await?;
            if json {
                to_json(&d)
            } else {
                let mut t = db_table(std::slice::from_ref(&d));
                t += "\n";
                t += &shard_table(&d);
                t
            }
        }
        Admin::DbList => {
            let v = c.databases().await?;
            if json { to_json(&v) } else { db_table(&v) }
        }
        Admin::DbShow { name } => {
            let d = c.database(&name).await?;
            if json {
                to_json(&d)
            } else {
                let mut t = db_table(std::slice::from_ref(&d));
                t += "\n";
                t += &shard_table(&d);
                t
            }
        }
        Admin::DbDelete { name } => {
            let e = c.delete_database(&name).await?;
            if json {
                to_json(&e)
            } else {
                format!("database {name:?} deleted (epoch {})\n", e.epoch)
            }
        }
    };
    Ok(out)
}

fn to_json(v: &impl Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// Left-aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let mut l = String::new();
        for (c, w) in cells.zip(&widths) {
            let _ = write!(l, "{c:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied(), &mut out);
    for r in rows {
        line(&mut r.iter().map(String::as_str), &mut out);
    }
    out
}

fn human_bytes(n: u64) -> String {
    if n == 0 {
        return "-".into();
    }
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0}{}", units[u])
    } else {
        format!("{v:.1}{}", units[u])
    }
}

fn persistence(p: Persistence) -> &'static str {
    match p {
        Persistence::None => "none",
        Persistence::Aof => "aof",
        Persistence::AofAlways => "aof-always",
        Persistence::Snapshot => "snapshot",
    }
}

fn status_table(s: &Status, procs: &[(u64, Result<Vec<ProcessReport>, ApiError>)]) -> String {
    let mut out = format!(
        "cluster {}  epoch {}  leader {}\n\n",
        s.cluster.as_deref().unwrap_or("(not initialized)"),
        s.epoch,
        match (s.leader, &s.leader_address) {
            (Some(l), Some(a)) => format!("{l} ({a})"),
            (Some(l), None) => l.to_string(),
            _ => "none".into(),
        }
    );
    let rows: Vec<Vec<String>> = s
        .machines
        .iter()
        .map(|m| {
            let role = if Some(m.id) == s.leader {
                "leader"
            } else if s.voters.contains(&m.id) {
                "voter"
            } else if s.learners.contains(&m.id) {
                "learner"
            } else {
                "-"
            };
            let health = match procs.iter().find(|(id, _)| *id == m.id) {
                Some((_, Ok(_))) => "up",
                _ => "unreachable",
            };
            vec![
                m.id.to_string(),
                m.api.clone(),
                role.into(),
                health.into(),
                m.rack.clone().unwrap_or("-".into()),
                human_bytes(m.memory),
            ]
        })
        .collect();
    out += &table(
        &["MACHINE", "ADDRESS", "ROLE", "HEALTH", "RACK", "MEMORY"],
        &rows,
    );
    if !s.databases.is_empty() {
        out.push('\n');
        let views: Vec<DatabaseView> = s
            .databases
            .iter()
            .map(|d| DatabaseView {
                database: d.clone(),
                shards: s
                    .shards
                    .iter()
                    .filter(|x| x.database == d.id)
                    .cloned()
                    .collect(),
            })
            .collect();
        out += &db_table(&views);
        out.push('\n');
        let all: Vec<&ProcessReport> = procs
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flatten()
            .collect();
        let mut rows = Vec::new();
        for (machine, r) in procs {
            let Ok(list) = r else { continue };
            for p in list {
                let slots = p
                    .shard
                    .and_then(|id| s.shards.iter().find(|x| x.id == id))
                    .map_or("-".into(), Shard::slots_text);
                rows.push(vec![
                    machine.to_string(),
                    p.database.clone(),
                    p.shard.map_or("-".into(), |s| s.to_string()),
                    slots,
                    p.port.to_string(),
                    p.role.clone(),
                    p.state.clone(),
                    p.pid.map_or("-".into(), |x| x.to_string()),
                    p.restarts.to_string(),
                    p.offset.map_or("-".into(), |o| o.to_string()),
                    lag(p, &all).map_or("-".into(), |l| l.to_string()),
                    p.link.clone().unwrap_or("-".into()),
                ]);
            }
        }
        out += &table(
            &[
                "MACHINE", "DATABASE", "SHARD", "SLOTS", "PORT", "ROLE", "STATE", "PID",
                "RESTARTS", "OFFSET", "LAG", "LINK",
            ],
            &rows,
        );
    }
    out
}

/// How many bytes of the replication stream a replica is behind its shard's primary, by the
/// offsets both reported (a primary's offset read after the replica's may be a little ahead).
fn lag(p: &ProcessReport, all: &[&ProcessReport]) -> Option<u64> {
    if p.role != "replica" {
        return None;
    }
    let primary = all
        .iter()
        .find(|q| q.role == "primary" && q.database == p.database && q.shard == p.shard)?;
    Some(primary.offset?.saturating_sub(p.offset?))
}

fn db_table(dbs: &[DatabaseView]) -> String {
    let rows: Vec<Vec<String>> = dbs
        .iter()
        .map(|d| {
            let d2 = &d.database;
            vec![
                d2.name.clone(),
                d2.port.to_string(),
                d2.shard_count.to_string(),
                if d2.replication { "yes" } else { "no" }.into(),
                persistence(d2.persistence).into(),
                human_bytes(d2.memory),
                d2.eviction.clone(),
            ]
        })
        .collect();
    table(
        &[
            "DATABASE",
            "PORT",
            "SHARDS",
            "REPLICATION",
            "PERSISTENCE",
            "MEMORY",
            "EVICTION",
        ],
        &rows,
    )
}

fn shard_table(d: &DatabaseView) -> String {
    let rows: Vec<Vec<String>> = d
        .shards
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.slots_text(),
                format!("{}:{}", s.primary.machine, s.primary.port),
                s.replicas
                    .iter()
                    .map(|r| format!("{}:{}", r.machine, r.port))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table(
        &["SHARD", "SLOTS", "PRIMARY (machine:port)", "REPLICAS"],
        &rows,
    )
}
