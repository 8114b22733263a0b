//! Node supervision: the control process on each machine runs the processes the configuration
//! places there: the shard processes (`tessera server`) and one proxy per database
//! (`tessera proxy` on the database's endpoint port). It restarts them when they exit
//! (exponential backoff, reset after a minute of good health), gives each a log file, reports
//! them, and stops them all (SIGTERM, then SIGKILL after 10 s) when it is told to stop.
//!
//! Each shard process has a folder `<dir>/shards/<shard>-<port>` holding its TOML
//! configuration, its data, its pid file and `server.log`; each proxy has
//! `<dir>/proxies/<database>-<port>` with its pid file and `proxy.log`, and runs in it. A pid
//! file left by an earlier control process that died without stopping its children names a
//! process that is stopped before a new one starts. Children run in their own process group, so
//! a Ctrl-C at the terminal reaches the control process, which stops them in order.
//!
//! Several control members may share one host address (tests, `tessera up` on one machine):
//! of those, the one with the lowest machine id runs the host's proxies, so each endpoint is
//! bound once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::unix::ffi::OsStrExt as _;

use serde::{Deserialize, Serialize};
use tessera_acl::internal::Internal;

use crate::model::{ClusterConfig, MachineId, Persistence, ShardId};
use crate::node::Node;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long without exiting is healthy again: backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One supervised process, as `GET /v1/processes` and `tessera cluster status` show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessReport {
    /// The shard, for a shard process; none for a proxy.
    pub shard: Option<ShardId>,
    pub database: String,
    pub port: u16,
    /// `primary`, `replica` or `proxy`.
    pub role: String,
    /// `running`, `backoff` (waiting to restart) or `failed` (cannot be started).
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub log: String,
    /// Replication offset of a running shard process when it answered INFO: a primary's
    /// `master_repl_offset`, a replica's `slave_repl_offset` (only in live reports).
    #[serde(default)]
    pub offset: Option<u64>,
    /// A replica's `master_link_status`: `up` or `down` (only in live reports).
    #[serde(default)]
    pub link: Option<String>,
    /// Where the process is reached and what it is asked as (the internal identity), for the
    /// live report.
    #[serde(skip)]
    reach: Option<(String, [String; 2])>,
}

/// What a process should be: everything its command line and configuration file are made
/// from. A change restarts it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Spec {
    Shard(ShardSpec),
    Proxy(ProxySpec),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ShardSpec {
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

/// A database's proxy on this machine's host, on the database's endpoint port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProxySpec {
    database: String,
    port: u16,
    bind: String,
    control: String,
    token: String,
}

impl Spec {
    /// The process's folder under the supervisor's data folder.
    fn folder(&self) -> PathBuf {
        match self {
            Spec::Shard(s) => Path::new("shards").join(format!("{}-{}", s.shard, s.port)),
            Spec::Proxy(p) => Path::new("proxies").join(format!("{}-{}", p.database, p.port)),
        }
    }

    fn database(&self) -> &str {
        match self {
            Spec::Shard(s) => &s.database,
            Spec::Proxy(p) => &p.database,
        }
    }

    fn port(&self) -> u16 {
        match self {
            Spec::Shard(s) => s.port,
            Spec::Proxy(p) => p.port,
        }
    }

    fn shard(&self) -> Option<ShardId> {
        match self {
            Spec::Shard(s) => Some(s.shard),
            Spec::Proxy(_) => None,
        }
    }

    fn role(&self) -> &'static str {
        match self {
            Spec::Shard(s) if s.replicaof.is_some() => "replica",
            Spec::Shard(_) => "primary",
            Spec::Proxy(_) => "proxy",
        }
    }

    fn log_name(&self) -> &'static str {
        match self {
            Spec::Shard(_) => "server.log",
            Spec::Proxy(_) => "proxy.log",
        }
    }
}

impl ShardSpec {
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
            sched_policy: &'a str,
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
            // Shards serve proxies, which pipeline: see `tessera_server::sched`.
            sched_policy: "batch",
        })
        .map_err(|e| format!("writing the shard's configuration: {e}"))
    }
}

/// The processes this machine should run, by folder.
fn desired(
    cfg: &ClusterConfig,
    me: MachineId,
    control: &str,
    token: &str,
) -> BTreeMap<PathBuf, Spec> {
    let mut out = BTreeMap::new();
    let host = cfg
        .machines
        .get(&me)
        .map(|m| m.host.clone())
        .unwrap_or_default();
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
            let spec = Spec::Shard(ShardSpec {
                shard: s.id,
                database: db.name.clone(),
                port: p.port,
                bind: host.clone(),
                replicaof: (*p != s.primary).then(|| format!("{primary_host} {}", s.primary.port)),
                persistence: db.persistence,
                maxmemory: db.memory / u64::from(db.shard_count.max(1)),
                eviction: db.eviction.clone(),
                password: db.password.clone(),
                control: control.to_string(),
                token: token.to_string(),
            });
            out.insert(spec.folder(), spec);
        }
    }
    // One proxy per database per host address: the member with the lowest id there runs it.
    let first_on_host = cfg
        .machines
        .values()
        .filter(|m| m.host == host)
        .map(|m| m.id)
        .min();
    if cfg.machines.contains_key(&me) && first_on_host == Some(me) {
        for db in cfg.databases.values() {
            let spec = Spec::Proxy(ProxySpec {
                database: db.name.clone(),
                port: db.port,
                bind: host.clone(),
                control: control.to_string(),
                token: token.to_string(),
            });
            out.insert(spec.folder(), spec);
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

impl Proc {
    fn report(&self) -> ProcessReport {
        ProcessReport {
            shard: self.spec.shard(),
            database: self.spec.database().to_string(),
            port: self.spec.port(),
            role: self.spec.role().into(),
            state: match (&self.child, &self.failed) {
                (Some(_), _) => "running",
                (None, Some(_)) => "failed",
                (None, None) => "backoff",
            }
            .into(),
            pid: self.child.as_ref().and_then(|c| c.id()),
            restarts: self.restarts,
            last_exit: self.failed.clone().or_else(|| self.last_exit.clone()),
            log: self
                .dir
                .join(self.spec.log_name())
                .to_string_lossy()
                .into_owned(),
            offset: None,
            link: None,
            reach: match &self.spec {
                Spec::Shard(s) => Some((
                    format!("{}:{}", s.bind, s.port),
                    [
                        Internal::Control.name().to_string(),
                        tessera_acl::internal::secret(&s.token, &s.database),
                    ],
                )),
                Spec::Proxy(_) => None,
            },
        }
    }
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

/// The processes as last seen, with each running shard's replication offset and link status
/// asked of it now (INFO replication; all at once, half a second at most).
pub async fn report_live(node: &Node) -> Vec<ProcessReport> {
    let mut reports = report(node);
    let mut asks = tokio::task::JoinSet::new();
    for (i, r) in reports.iter().enumerate() {
        if let (Some((addr, [user, secret])), "running") = (r.reach.clone(), r.state.as_str()) {
            asks.spawn(async move {
                let reply = crate::probe::request(
                    &addr,
                    &[&user, &secret],
                    &["INFO", "replication"],
                    Duration::from_millis(500),
                )
                .await;
                (i, reply.as_deref().and_then(crate::probe::text))
            });
        }
    }
    while let Some(Ok((i, info))) = asks.join_next().await {
        let Some(info) = info else { continue };
        let r = &mut reports[i];
        let field = if r.role == "replica" {
            "slave_repl_offset"
        } else {
            "master_repl_offset"
        };
        r.offset = crate::probe::info_field(&info, field).and_then(|v| v.parse().ok());
        if r.role == "replica" {
            r.link = crate::probe::info_field(&info, "master_link_status").map(str::to_string);
        }
    }
    reports
}

/// Runs the supervisor: reconciles on every configuration change and every 200 ms, until
/// `stop` turns true; then stops every process (proxies first) and returns.
pub async fn run(
    node: Arc<Node>,
    dir: PathBuf,
    server_bin: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Absolute, so a proxy's working folder and its pid file's check agree.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let mut procs: BTreeMap<PathBuf, Proc> = BTreeMap::new();
    let mut rx = node.config.clone();
    while !*stop.borrow() {
        let cfg = rx.borrow_and_update().clone();
        let want = desired(&cfg, node.id, &node.me.api, &node.token);
        // Gone or changed: stop it. (Until failover switches roles in place, a role change
        // restarts the process with its new configuration; its data stays in its folder.)
        let stale: Vec<PathBuf> = procs
            .iter()
            .filter(|(k, p)| want.get(*k) != Some(&p.spec))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(mut p) = procs.remove(&k) {
                stop_all(std::slice::from_mut(&mut p)).await;
                if !want.contains_key(&k) {
                    tracing::info!(
                        database = p.spec.database(),
                        port = p.spec.port(),
                        role = p.spec.role(),
                        "process removed from this machine"
                    );
                    let _ = tokio::fs::remove_dir_all(&p.dir).await;
                }
            }
        }
        for (k, spec) in &want {
            procs.entry(k.clone()).or_insert_with(|| Proc {
                spec: spec.clone(),
                dir: dir.join(k),
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
        *node.processes.reports.lock().expect("process table") =
            procs.values().map(Proc::report).collect();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = rx.changed() => {}
            _ = stop.changed() => {}
        }
    }
    let (mut proxies, mut shards): (Vec<Proc>, Vec<Proc>) = procs
        .into_values()
        .partition(|p| matches!(p.spec, Spec::Proxy(_)));
    stop_all(&mut proxies).await;
    stop_all(&mut shards).await;
    node.processes
        .reports
        .lock()
        .expect("process table")
        .clear();
    tracing::info!("supervised processes stopped");
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
                tracing::warn!(database = p.spec.database(), port = p.spec.port(), role = p.spec.role(), %status, backoff_ms = p.backoff.as_millis() as u64, "process exited; restarting it");
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
            tracing::error!(database = p.spec.database(), port = p.spec.port(), role = p.spec.role(), error = %e, "cannot start the process");
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
    let pidfile = p.dir.join(match p.spec {
        Spec::Shard(_) => "server.pid",
        Spec::Proxy(_) => "proxy.pid",
    });
    stop_leftover(&pidfile, &p.dir).await;
    let mut cmd = tokio::process::Command::new(server_bin);
    match &p.spec {
        Spec::Shard(s) => {
            let conf = p.dir.join("tessera.toml");
            // The file holds the admin token: readable by this user only, as `admin-token` is.
            write_private(&conf, &s.toml(&p.dir)?).await?;
            cmd.arg("server").arg("--config").arg(&conf);
        }
        Spec::Proxy(x) => {
            cmd.arg("proxy")
                .arg("--database")
                .arg(&x.database)
                .arg("--control")
                .arg(&x.control)
                .arg("--bind")
                .arg(&x.bind)
                .arg("--port")
                .arg(x.port.to_string())
                // In the environment, not on the command line every user can read.
                .env("TESSERA_ADMIN_TOKEN", &x.token);
        }
    }
    let log_path = p.dir.join(p.spec.log_name());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    tracing::info!(database = p.spec.database(), port = p.spec.port(), role = p.spec.role(), log = %log_path.display(), "starting a process");
    let child = cmd
        .current_dir(&p.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {}: {e}", server_bin.display()))?;
    // A shard writes its own pid file; a proxy's is written here.
    if let (Spec::Proxy(_), Some(pid)) = (&p.spec, child.id()) {
        write_private(&pidfile, &pid.to_string()).await?;
    }
    Ok(child)
}

/// Writes a file readable by this user only.
async fn write_private(path: &Path, text: &str) -> Result<(), String> {
    tokio::fs::write(path, text)
        .await
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        })
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Stops processes: SIGTERM to all of them, then each gets [`STOP_GRACE`] before SIGKILL.
async fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter() {
        if let Some(pid) = p.child.as_ref().and_then(|c| c.id()) {
            signal(pid, rustix::process::Signal::TERM);
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for p in procs.iter_mut() {
        let Some(mut child) = p.child.take() else {
            continue;
        };
        if tokio::time::timeout_at(deadline, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                database = p.spec.database(),
                port = p.spec.port(),
                role = p.spec.role(),
                "process did not stop in time; killing it"
            );
            let _ = child.kill().await;
        }
    }
}

/// Stops the process a pid file names when it is still one this supervisor started in
/// `folder` (left running by a control process that died), not whatever process took its pid
/// since.
async fn stop_leftover(pidfile: &Path, folder: &Path) {
    let Ok(text) = tokio::fs::read_to_string(pidfile).await else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    if !started_in(pid, folder) {
        return;
    }
    tracing::warn!(pid, "stopping a process left by an earlier control process");
    signal(pid, rustix::process::Signal::KILL);
    for _ in 0..100 {
        if !alive(pid).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether process `pid` runs in `folder` or below it, or names such a path in its arguments:
/// a process a supervisor started there, not one that took its pid since. (Reads of `/proc`,
/// which do not block.)
pub fn started_in(pid: u32, folder: &Path) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cwd.is_some_and(|c| c.starts_with(folder))
        || cmdline
            .split(|b| *b == 0)
            .any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)).starts_with(folder))
}

/// Whether a process exists and has not exited. An orphan's parent is whatever adopted it,
/// which may never reap it (a container without an init): a zombie counts as gone.
async fn alive(pid: u32) -> bool {
    let Ok(stat) = tokio::fs::read_to_string(format!("/proc/{pid}/stat")).await else {
        return false;
    };
    // `pid (comm) state ...`: the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
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

    /// Every machine runs its shard processes; of the machines sharing a host address, the
    /// lowest id runs that host's proxy, bound to the host, on the database's port.
    #[test]
    fn one_proxy_per_database_per_host() {
        use crate::model::{Command, DatabaseSpec, Machine, MachineState, Request};
        let mut cfg = ClusterConfig::default();
        let mut index = 1;
        let mut apply = |cfg: &mut ClusterConfig, cmd: Command| {
            index += 1;
            cfg.apply(index, &Request::new(format!("r{index}"), cmd));
        };
        apply(&mut cfg, Command::Init { name: "t".into() });
        for (id, host) in [(2, "127.0.0.1"), (1, "127.0.0.1"), (3, "10.0.0.3")] {
            apply(
                &mut cfg,
                Command::AddMachine(Machine {
                    id,
                    api: format!("{host}:{}", 7400 + id),
                    host: host.into(),
                    rack: None,
                    memory: 0,
                    cpus: 0,
                    state: MachineState::Active,
                    shard_ports: None,
                }),
            );
        }
        apply(
            &mut cfg,
            Command::CreateDatabase(DatabaseSpec {
                name: "cache".into(),
                port: Some(6379),
                shards: 3,
                replication: true,
                persistence: Persistence::None,
                memory: 0,
                password: None,
                eviction: "noeviction".into(),
            }),
        );
        let proxies = |me: MachineId| -> Vec<ProxySpec> {
            desired(&cfg, me, "api", "token")
                .into_values()
                .filter_map(|s| match s {
                    Spec::Proxy(p) => Some(p),
                    Spec::Shard(_) => None,
                })
                .collect()
        };
        let shards = |me: MachineId| {
            desired(&cfg, me, "api", "token")
                .values()
                .filter(|s| s.shard().is_some())
                .count()
        };
        assert_eq!(shards(1) + shards(2) + shards(3), 6);
        assert!(shards(2) > 0);
        assert_eq!(proxies(2), []);
        let [p1] = &proxies(1)[..] else {
            panic!("{:?}", proxies(1))
        };
        assert_eq!(
            (p1.database.as_str(), p1.port, p1.bind.as_str()),
            ("cache", 6379, "127.0.0.1")
        );
        let [p3] = &proxies(3)[..] else {
            panic!("{:?}", proxies(3))
        };
        assert_eq!(p3.bind, "10.0.0.3");
        assert_eq!(
            desired(&cfg, 1, "api", "token")
                .keys()
                .find(|k| k.starts_with("proxies")),
            Some(&PathBuf::from("proxies/cache-6379"))
        );
    }

    /// Any password survives the configuration file (control characters, quotes, unicode).
    #[test]
    fn configuration_file_quotes_everything() {
        let password = "a\"b\\c\u{1b}d\ne\u{7f}é".to_string();
        let spec = ShardSpec {
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
