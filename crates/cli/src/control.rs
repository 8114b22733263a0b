//! `tessera control`, `tessera cluster ...` and `tessera db ...`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tessera_control::admin::{self, Admin};
use tessera_control::model::{DatabaseSpec, Persistence};

/// `tessera control`: one control member per machine.
#[derive(Args)]
pub struct ControlArgs {
    /// Data folder: the Raft log and state, the node id, the admin token, shard folders.
    #[arg(long, default_value = "tessera-control")]
    dir: PathBuf,
    /// Address the REST API and the Raft RPCs listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Address others reach this member at (default: the listening address).
    #[arg(long)]
    advertise: Option<String>,
    /// Host clients reach this machine's shards at (default: the advertised host).
    #[arg(long)]
    host: Option<String>,
    /// Machine id (default: random at first start, then kept in <dir>/node-id).
    #[arg(long)]
    id: Option<u64>,
    /// Rack or zone, for replica placement.
    #[arg(long)]
    rack: Option<String>,
    /// Memory shards may use on this machine (e.g. 8gb; 0: not limited).
    #[arg(long, default_value = "0")]
    memory: String,
    /// CPU cores for shards (informational).
    #[arg(long, default_value_t = 0)]
    cpus: u32,
    /// Ports shard processes on this machine may take, e.g. 7100-7999.
    #[arg(long)]
    shard_ports: Option<String>,
    /// The admin token (every member of a cluster needs the same one; default: <dir>/admin-token,
    /// created at first start).
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Join the cluster of this member (host:port) at start.
    #[arg(long)]
    join: Option<String>,
    /// Allow POST /v1/debug/faults (tests: simulated partitions).
    #[arg(long)]
    fault_injection: bool,
    /// Take a Raft snapshot every this many log entries (the log is purged behind it).
    #[arg(long, default_value_t = 1000)]
    snapshot_logs: u64,
}

pub fn run_control(args: ControlArgs) -> anyhow::Result<()> {
    let memory = parse_memory(&args.memory)?;
    let shard_ports = args
        .shard_ports
        .as_deref()
        .map(parse_port_range)
        .transpose()?;
    let opts = tessera_control::Options {
        id: args.id,
        dir: args.dir,
        listen: args.listen,
        advertise: args.advertise,
        host: args.host,
        rack: args.rack,
        memory,
        cpus: args.cpus,
        shard_ports,
        token: args.token,
        join: args.join,
        fault_injection: args.fault_injection,
        snapshot_logs: args.snapshot_logs,
        server_bin: std::env::current_exe()?,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(tessera_control::run(opts))
}

/// `--shard-ports 7100-7999`.
pub(crate) fn parse_port_range(r: &str) -> anyhow::Result<[u16; 2]> {
    r.split_once('-')
        .and_then(|(a, b)| Some([a.parse::<u16>().ok()?, b.parse::<u16>().ok()?]))
        .filter(|[a, b]| a <= b && *a > 0)
        .ok_or_else(|| anyhow::anyhow!("--shard-ports {r:?}: give a range such as 7100-7999"))
}

/// `--persistence`: none, aof, aof-always or snapshot.
pub(crate) fn parse_persistence(p: &str) -> anyhow::Result<Persistence> {
    Ok(match p {
        "none" => Persistence::None,
        "aof" => Persistence::Aof,
        "aof-always" => Persistence::AofAlways,
        "snapshot" => Persistence::Snapshot,
        other => anyhow::bail!("--persistence {other:?}: use none, aof, aof-always or snapshot"),
    })
}

pub(crate) fn parse_memory(s: &str) -> anyhow::Result<u64> {
    tessera_server::config::parse_memory(s)
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not a memory size (e.g. 512mb, 4gb)"))
}

/// Where the admin commands find the control API.
#[derive(Args)]
pub struct Target {
    /// A control member, host:port.
    #[arg(
        long,
        env = "TESSERA_API",
        default_value = "127.0.0.1:7400",
        global = true
    )]
    api: String,
    /// The admin token.
    #[arg(
        long,
        env = "TESSERA_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Read the admin token from this file (a member's <dir>/admin-token).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// JSON output, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Start a new cluster with the member at --api as its first machine.
    Init {
        /// The cluster's name.
        #[arg(long, default_value = "tessera")]
        name: String,
    },
    /// Machines, Raft roles, databases and the processes each machine runs.
    Status,
    /// Add the member at --api to the cluster that SEED (host:port of a member) belongs to.
    Join { seed: String },
    /// Remove a machine from the cluster (it must run no shards).
    Leave {
        /// The machine id.
        id: u64,
    },
}

#[derive(Subcommand)]
pub enum DbCmd {
    /// Create a database: its shards are placed on machines and started.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// A replica for every shard, on another machine when there is one.
        #[arg(long)]
        replication: bool,
        /// Total memory (split over the shards), e.g. 1gb.
        #[arg(long, default_value = "0")]
        memory: String,
        /// none, aof, aof-always or snapshot.
        #[arg(long, default_value = "aof")]
        persistence: String,
        /// Endpoint port (default: the first free one from 12000).
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        password: Option<String>,
        /// maxmemory-policy of the shards.
        #[arg(long, default_value = "noeviction")]
        eviction: String,
    },
    /// All databases.
    List,
    /// One database with its shards.
    Show { name: String },
    /// Delete a database and stop its shards.
    Delete { name: String },
}

fn token(t: &Target) -> anyhow::Result<String> {
    if let Some(tok) = &t.token {
        return Ok(tok.clone());
    }
    let path = match &t.token_file {
        Some(p) => p.clone(),
        None => PathBuf::from("tessera-control/admin-token"),
    };
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|_| {
            anyhow::anyhow!(
                "no admin token: pass --token, set TESSERA_ADMIN_TOKEN, or --token-file <control dir>/admin-token ({} is not readable)",
                path.display()
            )
        })
}

fn run_admin(t: &Target, cmd: Admin) -> anyhow::Result<()> {
    let token = token(t)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(admin::run(&t.api, &token, t.json, cmd)) {
        Ok(out) => {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(out.as_bytes())?;
            Ok(())
        }
        Err(e) => {
            if t.json {
                eprintln!("{}", serde_json::json!({ "error": e }));
            } else {
                eprintln!("error: {} ({})", e.message, e.code);
            }
            std::process::exit(1);
        }
    }
}

pub fn run_cluster(t: Target, cmd: ClusterCmd) -> anyhow::Result<()> {
    let cmd = match cmd {
        ClusterCmd::Init { name } => Admin::Init { name },
        ClusterCmd::Status => Admin::Status,
        ClusterCmd::Join { seed } => Admin::Join { seed },
        ClusterCmd::Leave { id } => Admin::Leave { id },
    };
    run_admin(&t, cmd)
}

pub fn run_db(t: Target, cmd: DbCmd) -> anyhow::Result<()> {
    let cmd = match cmd {
        DbCmd::Create {
            name,
            shards,
            replication,
            memory,
            persistence,
            port,
            password,
            eviction,
        } => Admin::DbCreate(DatabaseSpec {
            name,
            port,
            shards,
            replication,
            persistence: parse_persistence(&persistence)?,
            memory: parse_memory(&memory)?,
            password,
            eviction,
        }),
        DbCmd::List => Admin::DbList,
        DbCmd::Show { name } => Admin::DbShow { name },
        DbCmd::Delete { name } => Admin::DbDelete { name },
    };
    run_admin(&t, cmd)
}
