//! The control group: the cluster configuration replicated with Raft (openraft), the watch and
//! lease APIs shards and proxies use, node supervision, and the REST API.

// openraft's error types (StorageError, RaftError) are large and fixed by its traits.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod api;
pub mod model;
pub mod node;
pub mod probe;
pub mod store;
pub mod supervise;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::model::{Machine, MachineState};
use crate::node::{Faults, Network, Node};

/// Options of `tessera control`.
#[derive(Clone, Debug)]
pub struct Options {
    /// This machine's id (its Raft node id); kept in `<dir>/node-id` after the first start.
    pub id: Option<u64>,
    pub dir: PathBuf,
    /// Address the REST API and Raft RPCs listen on.
    pub listen: SocketAddr,
    /// Address other members and the CLI reach this member at (default: `listen`).
    pub advertise: Option<String>,
    /// The host this machine's shards are reached at (default: the advertised host).
    pub host: Option<String>,
    pub rack: Option<String>,
    pub memory: u64,
    pub cpus: u32,
    /// Ports shard processes here may take (inclusive).
    pub shard_ports: Option<[u16; 2]>,
    pub token: Option<String>,
    /// A member of the cluster to join at start.
    pub join: Option<String>,
    pub fault_injection: bool,
    /// A Raft snapshot is taken every this many log entries; the log is purged behind it.
    pub snapshot_logs: u64,
    /// The `tessera` binary shard processes run from.
    pub server_bin: PathBuf,
}

/// Reads the admin token: given, or the one in `<dir>/admin-token`, or a new random one
/// written there (mode 0600).
pub fn admin_token(dir: &std::path::Path, given: Option<String>) -> anyhow::Result<String> {
    if let Some(t) = given.filter(|t| !t.is_empty()) {
        return Ok(t);
    }
    let path = dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let t = format!("{:032x}", rand::random::<u128>());
    std::fs::write(&path, &t).with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(t)
}

/// The machine id: the one kept in `<dir>/node-id`, else `given`, else a random one; kept.
fn machine_id(dir: &std::path::Path, given: Option<u64>) -> anyhow::Result<u64> {
    let path = dir.join("node-id");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let id: u64 = t
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a number", path.display()))?;
        if let Some(g) = given.filter(|g| *g != id) {
            anyhow::bail!(
                "{} says this machine is {id}, not {g}: drop --id or use another --dir",
                path.display()
            );
        }
        return Ok(id);
    }
    let id = given.unwrap_or_else(|| rand::random::<u64>() >> 12 | 1);
    std::fs::write(&path, id.to_string())?;
    Ok(id)
}

/// Runs a control member until the process is stopped.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let id = machine_id(&opts.dir, opts.id)?;
    let token: Arc<str> = admin_token(&opts.dir, opts.token.clone())?.into();
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let local = listener.local_addr()?;
    let api = opts.advertise.clone().unwrap_or_else(|| local.to_string());
    let host = opts.host.clone().unwrap_or_else(|| {
        api.rsplit_once(':')
            .map_or(api.clone(), |(h, _)| h.to_string())
    });
    let me = Machine {
        id,
        api: api.clone(),
        host,
        rack: opts.rack.clone(),
        memory: opts.memory,
        cpus: opts.cpus,
        state: MachineState::Active,
        shard_ports: opts.shard_ports,
    };
    let (log, sm) = store::open(&opts.dir.join("control-data"))
        .with_context(|| format!("opening {}", opts.dir.join("control-data").display()))?;
    let config_rx = sm.watch();
    let raft_config = openraft::Config {
        cluster_name: "tessera".into(),
        heartbeat_interval: 80,
        election_timeout_min: 250,
        election_timeout_max: 500,
        install_snapshot_timeout: 2000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(opts.snapshot_logs.max(2)),
        max_in_snapshot_log_to_keep: opts.snapshot_logs / 5,
        purge_batch_size: 1,
        ..Default::default()
    }
    .validate()?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .build()?;
    let network = Network {
        http,
        token: token.clone(),
        me: id,
        faults: Arc::new(Faults::new(opts.fault_injection)),
    };
    let raft = openraft::Raft::new(id, Arc::new(raft_config), network.clone(), log, sm).await?;
    let node = Node::new(me.clone(), raft, config_rx, &network);
    // Scripts and tests read the address from this line.
    tracing::info!(id, api = %api, "control member listening");
    eprintln!("tessera control: machine {id} listening on {local}");
    let supervisor = tokio::spawn(supervise::run(
        node.clone(),
        opts.dir.clone(),
        opts.server_bin.clone(),
        node.stopping.subscribe(),
    ));
    if let Some(seed) = opts.join.clone() {
        let node = node.clone();
        tokio::spawn(async move { join_at_start(&node, &seed).await });
    }
    let app = api::router(node.clone());
    // On SIGINT or SIGTERM: the supervised processes stop first (their configuration watches
    // end with them), then the API, whose configuration long-polls (other machines' processes
    // watching through this member) answer at once instead of holding the shutdown.
    let member = node.clone();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping the supervised processes");
        member.stopping.send_replace(true);
        let _ = supervisor.await;
    });
    serve.await?;
    tracing::info!("control member stopping");
    let _ = node.raft.shutdown().await;
    Ok(())
}

/// `--join`: asks `seed` (any member) to add this machine, until it is in the configuration.
async fn join_at_start(node: &Node, seed: &str) {
    let mut wait = Duration::from_millis(200);
    loop {
        if node.current().machines.get(&node.id) == Some(&node.me) {
            return;
        }
        match admin::Client::new(seed, &node.token).join(&node.me).await {
            Ok(_) => {
                tracing::info!(seed, "joined the cluster");
                return;
            }
            Err(e) if e.code == "machine_exists" => {
                tracing::error!(seed, error = %e, "cannot join");
                return;
            }
            Err(e) => tracing::warn!(seed, error = %e, "joining the cluster failed; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
