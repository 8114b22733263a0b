//! Node supervision: the control process on each machine runs the shard processes the
//! configuration places there (`tessera server`), restarts them when they exit (exponential
//! backoff, reset after a minute of good health), gives each a log file, and reports them.
//!
//! Each process has a folder `<dir>/shards/<shard>-<port>` holding its TOML configuration, its
//! data, its pid file and `server.log`. A pid file left by an earlier control process that
//! died without stopping its children names a process that is stopped before a new one starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::{ClusterConfig, MachineId, Persistence, ShardId};
use crate::node::Node;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long without exiting is healthy again: backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// One supervised process, as `GET /v1/processes` and `tessera cluster status` show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessReport {
    pub shard: ShardId,
    pub database: String,
    pub port: u16,
    pub role: String,
    /// `running`, `backoff` (waiting to restart) or `failed` (cannot be started).
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub log: String,
}

/// What a process should be: everything its configuration file is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    shard: ShardId,
    database: String,
    port: u16,
    bind: String,
    /// `host port` of the primary, for a replica.
    replicaof: Option<String>,
    persistence: Persistence,
    maxmemory: u64,
    eviction: String,
    password: Option<String>,
    /// This member's API address and the admin token: the shard watches the configuration
    /// there (cluster mode).
    control: String,
    token: String,
}

impl Spec {
    fn key(&self) -> String {
        format!("{}-{}", self.shard, self.port)
    }

    /// The shard's configuration file (Redis's parameter names, as `tessera server` reads
    /// them), written by the `toml` crate so any password or path is quoted correctly.
    fn toml(&self, dir: &Path) -> Result<String, String> {
        #[derive(Serialize)]
        #[serde(rename_all = "kebab-case")]
        struct ServerToml<'a> {
            port: u16,
            bind: &'a str,
            dir: &'a Path,
            pidfile: PathBuf,
            appendonly: bool,
            appendfsync: &'a str,
            save: &'a str,
            maxmemory: u64,
            maxmemory_policy: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            requirepass: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            masterauth: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            replicaof: Option<&'a str>,
            cluster_enabled: bool,
            cluster_control: &'a str,
            cluster_token: &'a str,
            cluster_database: &'a str,
            cluster_announce_ip: &'a str,
        }
        let (appendonly, appendfsync, save) = match self.persistence {
            Persistence::None => (false, "everysec", ""),
            Persistence::Aof => (true, "everysec", ""),
            Persistence::AofAlways => (true, "always", ""),
            Persistence::Snapshot => (false, "everysec", "3600 1 300 100 60 10000"),
        };
        toml::to_string(&ServerToml {
            port: self.port,
            bind: &self.bind,
            dir,
            pidfile: dir.join("server.pid"),
            appendonly,
            appendfsync,
            save,
            maxmemory: self.maxmemory,
            maxmemory_policy: &self.eviction,
            requirepass: self.password.as_deref(),
            masterauth: self.password.as_deref(),
            replicaof: self.replicaof.as_deref(),
            cluster_enabled: true,
            cluster_control: &self.control,
            cluster_token: &self.token,
            cluster_database: &self.database,
            cluster_announce_ip: &self.bind,
        })
        .map_err(|e| format!("writing the shard's configuration: {e}"))
    }
}

/// The processes this machine should run, by key.
fn desired(
    cfg: &ClusterConfig,
    me: MachineId,
    control: &str,
    token: &str,
) -> BTreeMap<String, Spec> {
    let mut out = BTreeMap::new();
    for s in cfg.shards.values() {
        let Some(db) = cfg.databases.get(&s.database) else {
            continue;
        };
        let primary_host = cfg
            .machines
            .get(&s.primary.machine)
            .map(|m| m.host.clone())
            .unwrap_or_default();
        for p in s.placements().filter(|p| p.machine == me) {
            let bind = cfg
                .machines
                .get(&me)
                .map(|m| m.host.clone())
                .unwrap_or_default();
            let spec = Spec {
                shard: s.id,
                database: db.name.clone(),
                port: p.port,
                bind,
                replicaof: (*p != s.primary).then(|| format!("{primary_host} {}", s.primary.port)),
                persistence: db.persistence,
                maxmemory: db.memory / u64::from(db.shard_count.max(1)),
                eviction: db.eviction.clone(),
                password: db.password.clone(),
                control: control.to_string(),
                token: token.to_string(),
            };
            out.insert(spec.key(), spec);
        }
    }
    out
}

struct Proc {
    spec: Spec,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
    started: Instant,
    restarts: u32,
    backoff: Duration,
    next_start: Instant,
    last_exit: Option<String>,
    failed: Option<String>,
}

/// The supervisor's table, shared with the API.
#[derive(Default)]
pub struct Table {
    reports: Mutex<Vec<ProcessReport>>,
}

/// The processes as last seen.
pub fn report(node: &Node) -> Vec<ProcessReport> {
    node.processes
        .reports
        .lock()
        .expect("process table")
        .clone()
}

/// Runs the supervisor until the process exits: reconciles on every configuration change and
/// every 200 ms.
pub async fn run(node: Arc<Node>, dir: PathBuf, server_bin: PathBuf) {
    let base = dir.join("shards");
    let mut procs: BTreeMap<String, Proc> = BTreeMap::new();
    let mut rx = node.config.clone();
    loop {
        let cfg = rx.borrow_and_update().clone();
        let want = desired(&cfg, node.id, &node.me.api, &node.token);
        // Gone or changed: stop it. (Until failover switches roles in place, a role change
        // restarts the process with its new configuration; its data stays in its folder.)
        let stale: Vec<String> = procs
            .iter()
            .filter(|(k, p)| want.get(*k) != Some(&p.spec))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(mut p) = procs.remove(&k) {
                stop(&mut p).await;
                if !want.contains_key(&k) {
                    tracing::info!(
                        shard = p.spec.shard,
                        port = p.spec.port,
                        "shard process removed from this machine"
                    );
                    let _ = tokio::fs::remove_dir_all(&p.dir).await;
                }
            }
        }
        for (k, spec) in &want {
            procs.entry(k.clone()).or_insert_with(|| Proc {
                spec: spec.clone(),
                dir: base.join(k),
                child: None,
                started: Instant::now(),
                restarts: 0,
                backoff: BACKOFF_FIRST,
                next_start: Instant::now(),
                last_exit: None,
                failed: None,
            });
        }
        for p in procs.values_mut() {
            watch_one(p, &server_bin).await;
        }
        *node.processes.reports.lock().expect("process table") = procs
            .values()
            .map(|p| ProcessReport {
                shard: p.spec.shard,
                database: p.spec.database.clone(),
                port: p.spec.port,
                role: if p.spec.replicaof.is_some() {
                    "replica"
                } else {
                    "primary"
                }
                .into(),
                state: match (&p.child, &p.failed) {
                    (Some(_), _) => "running",
                    (None, Some(_)) => "failed",
                    (None, None) => "backoff",
                }
                .into(),
                pid: p.child.as_ref().and_then(|c| c.id()),
                restarts: p.restarts,
                last_exit: p.failed.clone().or_else(|| p.last_exit.clone()),
                log: p.dir.join("server.log").to_string_lossy().into_owned(),
            })
            .collect();
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

/// Reaps an exited process and starts one that should run.
async fn watch_one(p: &mut Proc, server_bin: &Path) {
    if let Some(child) = &mut p.child {
        match child.try_wait() {
            Ok(None) => {
                if p.started.elapsed() >= HEALTHY_AFTER {
                    p.backoff = BACKOFF_FIRST;
                }
                return;
            }
            Ok(Some(status)) => {
                tracing::warn!(shard = p.spec.shard, port = p.spec.port, %status, backoff_ms = p.backoff.as_millis() as u64, "shard process exited; restarting it");
                p.last_exit = Some(status.to_string());
            }
            Err(e) => p.last_exit = Some(e.to_string()),
        }
        p.child = None;
        p.restarts += 1;
        p.next_start = Instant::now() + p.backoff;
        p.backoff = (p.backoff * 2).min(BACKOFF_MAX);
        return;
    }
    if Instant::now() < p.next_start {
        return;
    }
    match start(p, server_bin).await {
        Ok(child) => {
            p.child = Some(child);
            p.started = Instant::now();
            p.failed = None;
        }
        Err(e) => {
            tracing::error!(shard = p.spec.shard, port = p.spec.port, error = %e, "cannot start the shard process");
            p.failed = Some(e);
            p.next_start = Instant::now() + p.backoff;
            p.backoff = (p.backoff * 2).min(BACKOFF_MAX);
        }
    }
}

async fn start(p: &mut Proc, server_bin: &Path) -> Result<tokio::process::Child, String> {
    tokio::fs::create_dir_all(&p.dir)
        .await
        .map_err(|e| format!("creating {}: {e}", p.dir.display()))?;
    let conf = p.dir.join("tessera.toml");
    stop_leftover(&p.dir.join("server.pid"), &conf).await;
    // The file holds the admin token: readable by this user only, as `admin-token` is.
    tokio::fs::write(&conf, p.spec.toml(&p.dir)?)
        .await
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600))
        })
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let log_path = p.dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    tracing::info!(shard = p.spec.shard, port = p.spec.port, log = %log_path.display(), "starting a shard process");
    tokio::process::Command::new(server_bin)
        .arg("server")
        .arg("--config")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {}: {e}", server_bin.display()))
}

async fn stop(p: &mut Proc) {
    if let Some(mut child) = p.child.take() {
        if let Some(pid) = child.id() {
            signal(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Stops the process a pid file names when it is still the `tessera server` of `conf` (left
/// running by a control process that died), not whatever process took its pid since.
async fn stop_leftover(pidfile: &Path, conf: &Path) {
    let Ok(text) = tokio::fs::read_to_string(pidfile).await else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    let cmdline = tokio::fs::read(format!("/proc/{pid}/cmdline"))
        .await
        .unwrap_or_default();
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == conf.as_os_str().as_encoded_bytes());
    if !ours {
        return;
    }
    tracing::warn!(
        pid,
        "stopping a shard process left by an earlier control process"
    );
    signal(pid, rustix::process::Signal::KILL);
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any password survives the configuration file (control characters, quotes, unicode).
    #[test]
    fn configuration_file_quotes_everything() {
        let password = "a\"b\\c\u{1b}d\ne\u{7f}é".to_string();
        let spec = Spec {
            shard: 3,
            database: "db".into(),
            port: 7100,
            bind: "127.0.0.1".into(),
            replicaof: Some("10.0.0.1 7101".into()),
            persistence: Persistence::AofAlways,
            maxmemory: 1 << 30,
            eviction: "allkeys-lru".into(),
            password: Some(password.clone()),
            control: "10.0.0.1:7400".into(),
            token: "t\"k".into(),
        };
        let text = spec.toml(Path::new("/data/shards/3-7100")).unwrap();
        let v: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(v["requirepass"].as_str(), Some(password.as_str()));
        assert_eq!(v["masterauth"].as_str(), Some(password.as_str()));
        assert_eq!(v["replicaof"].as_str(), Some("10.0.0.1 7101"));
        assert_eq!(v["appendfsync"].as_str(), Some("always"));
        assert_eq!(v["maxmemory-policy"].as_str(), Some("allkeys-lru"));
        assert_eq!(v["cluster-enabled"].as_bool(), Some(true));
        assert_eq!(v["cluster-control"].as_str(), Some("10.0.0.1:7400"));
        assert_eq!(v["cluster-token"].as_str(), Some("t\"k"));
        assert_eq!(v["cluster-database"].as_str(), Some("db"));
        assert_eq!(v["cluster-announce-ip"].as_str(), Some("127.0.0.1"));
        assert_eq!(
            v["pidfile"].as_str(),
            Some("/data/shards/3-7100/server.pid")
        );
    }
}
