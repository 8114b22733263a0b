//! `tessera`: one binary for every Tessera process: `tessera server` (a shard), `tessera control`
//! (a control group member) and the admin commands `tessera cluster` and `tessera db`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod control;
mod import;
mod up;
use tessera_server::{Config, Server};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "A clustered, Redis-compatible key-value server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a shard server (standalone, Redis-compatible).
    Server(Box<ServerArgs>),
    /// Verify a data directory: reads every image record and log record; exit code 1 and
    /// what is wrong if anything is.
    CheckData {
        /// The server's `dir`, or its `tessera-data` directory.
        dir: PathBuf,
    },
    /// Load a dump.rdb written by Redis 2.x-7.2 into a running Tessera shard (RESTORE).
    ImportRdb(import::ImportArgs),
    /// Run a control group member (one per machine): cluster configuration, supervision, REST API.
    Control(Box<control::ControlArgs>),
    /// Run a database's proxy: one endpoint routing to its shards by hash slot.
    Proxy(ProxyArgs),
    /// Start a whole local cluster in the foreground: a control member, shards with replicas
    /// and a proxy on port 6379. Ctrl-C stops it; run it again to start over the same data.
    Up(Box<up::UpArgs>),
    /// Cluster administration: init, status, join, leave.
    Cluster {
        #[command(flatten)]
        target: control::Target,
        #[command(subcommand)]
        cmd: control::ClusterCmd,
    },
    /// Databases: create, list, show, delete.
    Db {
        #[command(flatten)]
        target: control::Target,
        #[command(subcommand)]
        cmd: control::DbCmd,
    },
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// The database to serve.
    #[arg(long)]
    database: String,
    /// Control members' API addresses (host:port, comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    control: Vec<String>,
    /// The control group's admin token, to read the configuration.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port to listen on (default: the database's endpoint port; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Host the proxy names itself by in CLUSTER SLOTS (default: the bind address).
    #[arg(long)]
    announce_host: Option<String>,
    /// Worker threads (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// TOML configuration file; every flag below can also be set there (Redis's names).
    #[arg(long)]
    config: Option<PathBuf>,
    /// TCP port (0 picks a free one and prints it).
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// Password clients must give with AUTH.
    #[arg(long, env = "TESSERA_REQUIREPASS")]
    requirepass: Option<String>,
    /// Maximum number of connected clients.
    #[arg(long)]
    maxclients: Option<usize>,
    /// Allow DEBUG: yes, local (loopback clients only) or no.
    #[arg(long)]
    enable_debug_command: Option<String>,
    /// Write the process id to this file.
    #[arg(long)]
    pidfile: Option<PathBuf>,
    /// Log level: debug, verbose, notice, warning.
    #[arg(long)]
    loglevel: Option<String>,
    /// Working directory: the data directory (`tessera-data`) lives in it.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Log every write to the data directory (the AOF analogue): yes or no.
    #[arg(long)]
    appendonly: Option<String>,
    /// When the log is synced: always (before each reply), everysec, or no.
    #[arg(long)]
    appendfsync: Option<String>,
    /// Checkpoint rules, "<seconds> <changes> ..." ("" for none), as Redis's `save`.
    #[arg(long)]
    save: Option<String>,
    /// Replicate this primary: "<host> <port>" (Redis's `replicaof`).
    #[arg(long)]
    replicaof: Option<String>,
    /// Password to give the primary (Redis's `masterauth`).
    #[arg(long, env = "TESSERA_MASTERAUTH")]
    masterauth: Option<String>,
    /// Seconds a primary waits for more replicas before a full sync starts (default 5).
    #[arg(long)]
    repl_diskless_sync_delay: Option<String>,
    /// ACL file: users loaded at startup, by ACL LOAD, and written by ACL SAVE.
    #[arg(long)]
    aclfile: Option<PathBuf>,
    /// Serve only loopback clients while the default user has no password: yes or no.
    #[arg(long)]
    protected_mode: Option<String>,
    /// The event loop's CPU scheduling policy: normal, or batch (Linux's SCHED_BATCH: no
    /// wakeup preemption; the supervisor's shards use it).
    #[arg(long)]
    sched_policy: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => run_server(*args),
        Command::CheckData { dir } => match tessera_server::persist::check_data(&dir) {
            Ok(report) => {
                use std::io::Write as _;
                std::io::stdout().lock().write_all(report.as_bytes())?;
                Ok(())
            }
            Err(e) => {
                eprintln!("tessera check-data: {}: {e}", dir.display());
                std::process::exit(1);
            }
        },
        Command::ImportRdb(args) => import::run(args),
        Command::Control(args) => {
            init_logging("info");
            control::run_control(*args)
        }
        Command::Up(args) => {
            init_logging("warn");
            up::run_up(*args)
        }
        Command::Proxy(args) => {
            init_logging("info");
            run_proxy(args)
        }
        Command::Cluster { target, cmd } => control::run_cluster(target, cmd),
        Command::Db { target, cmd } => control::run_db(target, cmd),
    }
}

/// Raises the open files limit to what `maxclients` needs (32 descriptors are reserved for the
/// server itself), or lowers `maxclients` to what the system allows, as Redis does.
fn adjust_open_files_limit(config: &mut tessera_server::Config) {
    const RESERVED: u64 = 32;
    let wanted = config.maxclients as u64 + RESERVED;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit >= wanted => {}
        Ok(limit) => {
            let reduced = limit.saturating_sub(RESERVED).max(1) as usize;
            tracing::warn!(
                "You requested maxclients of {} requiring at least {wanted} max file descriptors. \
                 Current maximum open files is {limit}. maxclients has been reduced to {reduced} \
                 to compensate for low ulimit.",
                config.maxclients
            );
            config.maxclients = reduced;
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.port {
        config.port = v;
    }
    if let Some(v) = args.bind {
        config.bind = v;
    }
    if let Some(v) = args.requirepass {
        config.requirepass = Some(v);
    }
    if let Some(v) = args.maxclients {
        config.maxclients = v;
    }
    if let Some(v) = args.enable_debug_command {
        config.enable_debug_command = v;
    }
    if let Some(v) = args.pidfile {
        config.pidfile = Some(v);
    }
    if let Some(v) = args.loglevel {
        config.loglevel = v;
    }
    if let Some(v) = args.dir {
        config.dir = v;
    }
    if let Some(v) = args.aclfile {
        config.aclfile = Some(v);
    }
    for (name, value) in [
        ("appendonly", args.appendonly),
        ("appendfsync", args.appendfsync),
        ("save", args.save),
        ("masterauth", args.masterauth),
        ("repl-diskless-sync-delay", args.repl_diskless_sync_delay),
        ("protected-mode", args.protected_mode),
        ("sched-policy", args.sched_policy),
    ] {
        if let Some(v) = value {
            config
                .set_param(name, &v)
                .map_err(|e| anyhow::anyhow!("--{name} {v}: {e}"))?;
        }
    }
    if let Some(v) = args.replicaof {
        if tessera_server::repl::parse_replicaof(&v).is_none() {
            anyhow::bail!("--replicaof takes \"<host> <port>\", not {v:?}");
        }
        config.replicaof = Some(v);
    }
    config.validate()?;
    let filter = match config.loglevel.as_str() {
        "debug" => "debug",
        "verbose" => "info",
        "warning" => "warn",
        "nothing" => "off",
        _ => "info",
    };
    init_logging(filter);
    adjust_open_files_limit(&mut config);
    let mut server = Server::bind(config.clone())
        .with_context(|| format!("cannot start the server on {}:{}", config.bind, config.port))?;
    if let Some(pidfile) = &config.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pidfile {}", pidfile.display()))?;
    }
    tessera_server::memory::mark_startup();
    // Tests and scripts that ask for port 0 read the chosen port from this line.
    eprintln!("tessera: listening on {}", server.local_addr());
    server.run()?;
    Ok(())
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let proxy = tessera_proxy::Proxy::start(tessera_proxy::Config {
        bind: args.bind,
        port: args.port,
        announce_host: args.announce_host,
        threads,
        control: args.control,
        token: args.token,
        database: args.database,
    })?;
    // Tests and scripts that ask for port 0 read the chosen port from this line.
    eprintln!("tessera: proxy listening on {}", proxy.local_addr());
    proxy.wait();
    Ok(())
}

fn init_logging(filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
