//! `tessera import-rdb FILE`: loads a `dump.rdb` written by Redis 2.x-7.2 into a running Tessera
//! shard, the first step of moving a Redis deployment over.
//!
//! The file is read as a stream (any size), every value is decoded and checked here, then sent
//! as `RESTORE key <expiry> <payload> ABSTTL [REPLACE] [IDLETIME|FREQ]`, pipelined in batches,
//! so the shard records, logs and replicates the keys like any write. Keys already expired are
//! skipped, as Redis skips them when it loads a file as a primary.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tessera_storage::rdb::{self, FileItem, FileReader};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The RDB file (`dump.rdb`).
    file: PathBuf,
    /// The shard's address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// Password (AUTH), if the shard has one.
    #[arg(long, env = "TESSERA_PASSWORD")]
    password: Option<String>,
    /// Replace keys that already exist (otherwise an existing key stops the import).
    #[arg(long)]
    replace: bool,
    /// Load the keys of every Redis database into the shard's one database (otherwise a key
    /// outside database 0 stops the import: Tessera, like Redis Cluster, has one).
    #[arg(long)]
    all_dbs: bool,
    /// Keys per pipelined batch.
    #[arg(long, default_value_t = 512)]
    batch: usize,
}

/// RESP encoding of one command.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Conn {
    fn open(host: &str, port: u16) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect((host, port))
            .with_context(|| format!("cannot connect to {host}:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::with_capacity(1 << 20, stream),
        })
    }

    /// Reads one reply line (the commands used here answer with a status or an error).
    fn reply(&mut self) -> anyhow::Result<Result<String, String>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("the server closed the connection");
        }
        let line = line.trim_end().to_string();
        Ok(match line.strip_prefix('-') {
            Some(err) => Err(err.to_string()),
            None => Ok(line),
        })
    }
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let total = file.metadata()?.len();
    let mut reader = FileReader::open(BufReader::with_capacity(1 << 20, file), Default::default())
        .with_context(|| format!("{} is not a readable RDB file", args.file.display()))?;
    let mut conn = Conn::open(&args.host, args.port)?;
    if let Some(pw) = &args.password {
        let mut buf = Vec::new();
        encode(&mut buf, &[b"AUTH", pw.as_bytes()]);
        conn.writer.write_all(&buf)?;
        conn.writer.flush()?;
        if let Err(e) = conn.reply()? {
            bail!("AUTH failed: {e}");
        }
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {msg} ({eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let (mut loaded, mut expired, mut functions) = (0u64, 0u64, 0u64);
    let mut in_flight: Vec<Vec<u8>> = Vec::with_capacity(args.batch);
    let mut out = Vec::with_capacity(1 << 20);
    let flush = |conn: &mut Conn, out: &mut Vec<u8>, keys: &mut Vec<Vec<u8>>| {
        conn.writer.write_all(out)?;
        conn.writer.flush()?;
        out.clear();
        for key in keys.drain(..) {
            if let Err(e) = conn.reply()? {
                bail!(
                    "RESTORE of key {:?} failed: {e}{}",
                    String::from_utf8_lossy(&key),
                    if e.starts_with("BUSYKEY") {
                        " (use --replace to overwrite existing keys)"
                    } else {
                        ""
                    }
                );
            }
        }
        anyhow::Ok(())
    };
    loop {
        let item = reader.next_item().with_context(|| {
            format!(
                "{} is damaged at byte {}",
                args.file.display(),
                reader.position()
            )
        })?;
        let Some(item) = item else { break };
        match item {
            FileItem::Key {
                db,
                key,
                value,
                expire_ms,
                idle_secs,
                freq,
            } => {
                if db != 0 && !args.all_dbs {
                    bail!(
                        "key {:?} is in database {db}; Tessera has one database per shard: pass --all-dbs to load every database into it",
                        String::from_utf8_lossy(&key)
                    );
                }
                if expire_ms.is_some_and(|at| at <= now_ms()) {
                    expired += 1;
                    continue;
                }
                let payload = rdb::dump(&value);
                let ttl = expire_ms.unwrap_or(0).to_string();
                let mut cmd: Vec<&[u8]> =
                    vec![b"RESTORE", &key, ttl.as_bytes(), &payload, b"ABSTTL"];
                if args.replace {
                    cmd.push(b"REPLACE");
                }
                let idle = idle_secs.map(|s| s.to_string());
                let freq = freq.map(|f| f.to_string());
                if let Some(i) = &idle {
                    cmd.extend([&b"IDLETIME"[..], i.as_bytes()]);
                } else if let Some(f) = &freq {
                    cmd.extend([&b"FREQ"[..], f.as_bytes()]);
                }
                encode(&mut out, &cmd);
                in_flight.push(key);
                loaded += 1;
                if in_flight.len() >= args.batch {
                    flush(&mut conn, &mut out, &mut in_flight)?;
                    bar.set_position(reader.position());
                    bar.set_message(format!("{loaded} keys"));
                }
            }
            FileItem::Function(code) => {
                flush(&mut conn, &mut out, &mut in_flight)?;
                let mut cmd: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
                if args.replace {
                    cmd.push(b"REPLACE");
                }
                cmd.push(&code);
                encode(&mut out, &cmd);
                conn.writer.write_all(&out)?;
                conn.writer.flush()?;
                out.clear();
                if let Err(e) = conn.reply()? {
                    bail!(
                        "FUNCTION LOAD of a library failed: {e}{}",
                        if e.contains("already exists") {
                            " (use --replace to overwrite existing libraries)"
                        } else {
                            ""
                        }
                    );
                }
                functions += 1;
            }
            FileItem::Resize { .. } | FileItem::Aux(..) => {}
        }
    }
    flush(&mut conn, &mut out, &mut in_flight)?;
    bar.finish_and_clear();
    let secs = started
        .elapsed()
        .max(Duration::from_millis(1))
        .as_secs_f64();
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "imported {loaded} keys from {} (RDB version {}) in {secs:.1} s ({:.0} keys/s); {expired} already expired, skipped",
        args.file.display(),
        reader.version,
        loaded as f64 / secs
    )?;
    if functions > 0 {
        writeln!(stdout, "loaded {functions} function libraries")?;
    }
    Ok(())
}
