//! `tessera up`: a whole local cluster in the foreground. A control member (machine 1) runs in
//! this process and supervises the shard processes and the database's proxy as its children;
//! the first run initializes the cluster and creates the database, a later run over the same
//! `--dir` finds both in the control member's state and starts the same processes over the same
//! data. Ctrl-C (or SIGTERM) stops the proxy, then the shards, then the control member.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use tessera_acl::internal::Internal;
use tessera_control::admin::Client;
use tessera_control::api::{ApiError, DatabaseView};
use tessera_control::model::DatabaseSpec;
use tessera_control::probe;

use crate::control::{parse_memory, parse_persistence, parse_port_range};

/// How long the cluster may take to serve its first request.
const READY_WITHIN: Duration = Duration::from_secs(90);

#[derive(Args)]
pub struct UpArgs {
    /// Data folder: the control member's state and every shard's data (kept across runs).
    #[arg(long, default_value = "tessera-cluster")]
    dir: PathBuf,
    /// The database's endpoint: the port the proxy listens on.
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// Shards (hash slots are split evenly between them). Used when the database is created.
    #[arg(long, default_value_t = 3)]
    shards: u32,
    /// Replicas per shard: 0 or 1. Used when the database is created.
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Address every process listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port of the control member's REST API.
    #[arg(long, default_value_t = 7400)]
    api_port: u16,
    /// Ports the shard processes may take, e.g. 7100-7199 (default: from 7100 up).
    #[arg(long)]
    shard_ports: Option<String>,
    /// none, aof, aof-always or snapshot. Used when the database is created.
    #[arg(long, default_value = "aof")]
    persistence: String,
    /// Memory of the whole database, split over its shards (e.g. 1gb; 0: not limited).
    #[arg(long, default_value = "0")]
    memory: String,
    /// Password clients give with AUTH. Used when the database is created.
    #[arg(long, env = "TESSERA_REQUIREPASS", hide_env_values = true)]
    password: Option<String>,
    /// The database's name.
    #[arg(long, default_value = "default")]
    name: String,
}

pub fn run_up(args: UpArgs) -> anyhow::Result<()> {
    if args.replicas > 1 {
        bail!(
            "--replicas {}: a shard has at most one replica for now",
            args.replicas
        );
    }
    let spec = DatabaseSpec {
        name: args.name.clone(),
        port: Some(args.port),
        shards: args.shards,
        replication: args.replicas == 1,
        persistence: parse_persistence(&args.persistence)?,
        memory: parse_memory(&args.memory)?,
        password: args.password.clone(),
        eviction: "noeviction".into(),
    };
    let shard_ports = args
        .shard_ports
        .as_deref()
        .map(parse_port_range)
        .transpose()?;
    let listen = resolve(&args.bind, args.api_port)?;
    let endpoint = resolve(&args.bind, args.port)?;
    let control_dir = args.dir.join("control");
    // A Redis already on the port is the usual reason a first run cannot serve: say so now.
    // (On a later run the port may still be held by this cluster's own proxy, left running by
    // a `tessera up` that was killed; the supervisor stops that one.)
    if !control_dir.join("control-data").exists() {
        std::net::TcpListener::bind(endpoint).with_context(|| {
            format!(
                "{endpoint} is in use (another Redis server?): stop it or pick another port with --port"
            )
        })?;
    }
    std::fs::create_dir_all(&control_dir)
        .with_context(|| format!("creating {}", control_dir.display()))?;
    let token = tessera_control::admin_token(&control_dir, None)?;
    let opts = tessera_control::Options {
        id: Some(1),
        dir: control_dir.clone(),
        listen,
        advertise: None,
        host: Some(args.bind.clone()),
        rack: None,
        memory: 0,
        cpus: 0,
        shard_ports,
        token: Some(token.clone()),
        join: None,
        fault_injection: false,
        snapshot_logs: 1000,
        server_bin: std::env::current_exe()?,
    };
    let api = listen.to_string();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let mut control = tokio::spawn(tessera_control::run(opts));
            let ready = async {
                let view = set_up(&api, &token, &spec).await?;
                wait_ready(&api, &token, &view, endpoint, spec.password.as_deref()).await?;
                Ok::<_, anyhow::Error>(view)
            };
            tokio::select! {
                r = &mut control => return r.context("the control member")?,
                r = ready => match r {
                    Ok(view) => say(&banner(&view, &args, &api, &spec)),
                    Err(e) => {
                        // Stop what did start (SIGTERM takes the control member's own path),
                        // then report why.
                        signal_self();
                        let _ = control.await;
                        return Err(e);
                    }
                },
            }
            control.await.context("the control member")?
        })
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))
}

/// Initializes the cluster and creates the database unless an earlier run did.
async fn set_up(api: &str, token: &str, spec: &DatabaseSpec) -> anyhow::Result<DatabaseView> {
    let c = Client::new(api, token);
    let status = retry(|| c.status()).await?;
    if status.cluster.is_none() {
        retry(|| c.init("local")).await?;
    }
    match retry(|| c.database(&spec.name)).await {
        Ok(view) => {
            let d = &view.database;
            if d.shard_count != spec.shards
                || spec.port != Some(d.port)
                || d.replication != spec.replication
            {
                eprintln!(
                    "tessera up: database {:?} exists from an earlier run with {} shards on port {}; it is kept as it is",
                    d.name, d.shard_count, d.port
                );
            }
            Ok(view)
        }
        Err(e) if e.code == "unknown_database" => match retry(|| c.create_database(spec)).await {
            // A retried request that had been applied.
            Err(e) if e.code == "database_exists" => Ok(retry(|| c.database(&spec.name)).await?),
            r => Ok(r?),
        },
        Err(e) => Err(e.into()),
    }
}

/// Repeats a request the control member could not serve yet (no leader, not listening).
async fn retry<T, F, Fut>(f: F) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let started = tokio::time::Instant::now();
    loop {
        match f().await {
            Err(e) if e.code == "unavailable" && started.elapsed() < READY_WITHIN => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

/// Waits until every primary has its slots from the configuration (`cluster_state:ok`) and the
/// proxy answers DBSIZE, which it sends to every shard. A process that keeps failing to start
/// ends the wait with its log's last line.
async fn wait_ready(
    api: &str,
    token: &str,
    view: &DatabaseView,
    endpoint: SocketAddr,
    password: Option<&str>,
) -> anyhow::Result<()> {
    let c = Client::new(api, token);
    let started = tokio::time::Instant::now();
    let primaries: Vec<String> = view
        .shards
        .iter()
        .map(|s| SocketAddr::new(endpoint.ip(), s.primary.port).to_string())
        .collect();
    // The shards are asked as the internal identity, whatever the database's users say.
    let secret = tessera_acl::internal::secret(token, &view.database.name);
    let internal = [Internal::Control.name(), secret.as_str()];
    let password: Vec<&str> = password.into_iter().collect();
    let within = Duration::from_secs(2);
    loop {
        let mut ready = true;
        for addr in &primaries {
            let info = probe::request(addr, &internal, &["CLUSTER", "INFO"], within).await;
            ready = info
                .as_deref()
                .and_then(probe::text)
                .is_some_and(|t| t.contains("cluster_state:ok"));
            if !ready {
                break;
            }
        }
        if ready
            && probe::request(&endpoint.to_string(), &password, &["DBSIZE"], within)
                .await
                .is_some_and(|r| r.starts_with(b":"))
        {
            return Ok(());
        }
        for p in c.processes().await.unwrap_or_default() {
            if p.restarts >= 3 || p.state == "failed" {
                let last = std::fs::read_to_string(&p.log)
                    .ok()
                    .and_then(|t| t.lines().last().map(str::to_string))
                    .unwrap_or_default();
                bail!(
                    "the {} on port {} cannot start ({}): {last} (log: {})",
                    p.role,
                    p.port,
                    p.last_exit.as_deref().unwrap_or("exited"),
                    p.log
                );
            }
        }
        if started.elapsed() > READY_WITHIN {
            bail!(
                "the cluster did not serve within {} s: see the logs under the data folder",
                READY_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn banner(view: &DatabaseView, args: &UpArgs, api: &str, spec: &DatabaseSpec) -> String {
    let d = &view.database;
    let host = &args.bind;
    let mut out = format!(
        "\nTessera is up: database {:?}, {} shards{}.\n\n  endpoint   {host}:{}    redis-cli -h {host} -p {}{}\n",
        d.name,
        d.shard_count,
        if d.replication {
            ", each with a replica"
        } else {
            ""
        },
        d.port,
        d.port,
        if spec.password.is_some() {
            " -a <password>"
        } else {
            ""
        },
    );
    for s in &view.shards {
        let replicas: Vec<String> = s
            .replicas
            .iter()
            .map(|p| format!("{host}:{}", p.port))
            .collect();
        out += &format!(
            "  shard {:<4} {host}:{} (slots {}){}\n",
            s.id,
            s.primary.port,
            s.slots_text(),
            if replicas.is_empty() {
                String::new()
            } else {
                format!(", replica {}", replicas.join(", "))
            }
        );
    }
    let token_file = args.dir.join("control").join("admin-token");
    out += &format!(
        "  REST API   http://{api}/v1/status (bearer token in {})\n  status     tessera cluster status --api {api} --token-file {}\n\n\
         Data is in {}. Ctrl-C stops everything; the same command starts it again with the same data.\n",
        token_file.display(),
        token_file.display(),
        args.dir.display(),
    );
    out
}

fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn signal_self() {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
}
