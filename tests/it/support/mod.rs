//! Shared helpers for the integration tests: real `tessera server` and `redis-server` processes
//! on free loopback ports, a raw RESP client that returns exact reply bytes, and `wait_for`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `tessera` binary: `TESSERA_BIN`, or the one in the target directory of this test binary.
/// `cargo test` does not rebuild it: run `cargo build --workspace` first (`scripts/test.sh`
/// does).
pub fn tessera_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TESSERA_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile directory");
    let bin = dir.join("tessera");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace` before the tests (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Polls `cond` every 10 ms until it holds, panicking with `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free loopback port (for servers that cannot bind port 0 and report it, like redis-server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server process, killed on drop.
pub struct TestServer {
    pub port: u16,
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts `tessera server` on a free port with DEBUG enabled, plus `extra` flags.
    /// Its working directory (`--dir`) is a fresh temporary one unless `extra` names one.
    pub fn start(extra: &[&str]) -> TestServer {
        let mut cmd = Command::new(tessera_bin());
        cmd.args(["server", "--port", "0", "--enable-debug-command", "yes"])
            .args(extra);
        let dir = if extra.contains(&"--dir") {
            None
        } else {
            let dir = tempfile::tempdir().unwrap();
            cmd.arg("--dir").arg(dir.path());
            Some(dir)
        };
        Self::spawn_tessera(cmd, dir)
    }

    /// Waits until the dataset is loaded (`loading:0`).
    pub fn wait_loaded(&self) {
        let mut c = self.redis();
        wait_for(Duration::from_secs(60), "the dataset to load", || {
            redis::cmd("INFO")
                .arg("persistence")
                .query::<String>(&mut c)
                .is_ok_and(|i| i.lines().any(|l| l.trim_end() == "loading:0"))
        });
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `tessera server --config <file>` with the given TOML text.
    pub fn start_with_config(toml: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.toml");
        std::fs::write(&path, toml).unwrap();
        let mut cmd = Command::new(tessera_bin());
        cmd.args(["server", "--port", "0", "--config"]).arg(&path);
        Self::spawn_tessera(cmd, Some(dir))
    }

    /// Starts `tessera proxy --port 0` with `args` (database, control members, token).
    pub fn start_proxy(args: &[&str]) -> TestServer {
        let mut cmd = Command::new(tessera_bin());
        cmd.args(["proxy", "--port", "0"]).args(args);
        Self::spawn_tessera(cmd, None)
    }

    fn spawn_tessera(mut cmd: Command, dir: Option<tempfile::TempDir>) -> TestServer {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .strip_prefix("tessera: listening on ")
                    .or_else(|| line.strip_prefix("tessera: proxy listening on "));
                if let Some(addr) = addr
                    && let Some(tx) = tx.take()
                {
                    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
                    let _ = tx.send(port);
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("tessera did not start: {}", log.lock().unwrap());
            }
        };
        TestServer {
            port,
            child,
            log,
            _dir: dir,
        }
    }

    /// Starts a real `redis-server` (Debian's package) as the oracle, without persistence.
    pub fn start_redis() -> TestServer {
        Self::start_redis_with(&[])
    }

    /// Starts a real `redis-server` with extra arguments (they come last, so they win).
    pub fn start_redis_with(extra: &[&str]) -> TestServer {
        for _ in 0..5 {
            let port = free_port();
            // Its own directory: a replica writes the payload it receives to dump.rdb there.
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args(["--appendonly", "no", "--enable-debug-command", "yes"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (the README's test command installs it)");
            let mut server = TestServer {
                port,
                child,
                log: Arc::new(Mutex::new(String::new())),
                _dir: Some(dir),
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                if server.child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = server.child.kill();
        }
        panic!("could not start redis-server");
    }

    /// A `redis` crate connection.
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// A raw RESP connection.
    pub fn raw(&self) -> RawConn {
        RawConn::connect(self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
        assert!(status.unwrap().success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                start.elapsed() < timeout,
                "server did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw connection: writes any bytes, reads whole replies as their exact bytes.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// A connection, or `None` when nothing accepts one within a second.
    pub fn connect_timeout(port: u16) -> Option<RawConn> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        stream.set_nodelay(true).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        Some(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a command as a RESP array.
    pub fn send_cmd(&mut self, args: &[&[u8]]) {
        self.send(&encode(args));
    }

    /// Sends a command and returns its reply's bytes.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send_cmd(args);
        self.read_reply()
    }

    /// Like [`RawConn::cmd`], with string arguments, returning the reply as text.
    pub fn cmd_str(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        String::from_utf8_lossy(&self.cmd(&args)).into_owned()
    }

    /// Reads one complete reply and returns its exact bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = reply_len(&self.buf, 0) {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply (got {:?})",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The replies that arrive within `wait`, however many.
    pub fn pending_replies(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let _ = self.is_closed();
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut replies = Vec::new();
        while let Some(n) = reply_len(&self.buf, 0) {
            replies.push(self.buf.drain(..n).collect());
        }
        replies
    }

    /// True once the server has closed the connection (reads any pending bytes first).
    pub fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // The read timeout ran out with the connection still open.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The length of the complete reply starting at `at`, if the buffer holds all of it.
fn reply_len(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&buf[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    match buf[at] {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after - at),
        b'$' | b'=' | b'!' => {
            let n: i64 = header.parse().ok()?;
            if n < 0 {
                return Some(after - at);
            }
            let end = after + n as usize + 2;
            (buf.len() >= end).then_some(end - at)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n: i64 = header.parse().ok()?;
            let items = if buf[at] == b'%' || buf[at] == b'|' {
                n * 2
            } else {
                n
            };
            let mut pos = after;
            for _ in 0..items.max(0) {
                pos += reply_len(buf, pos)?;
            }
            let len = pos - at;
            // An attribute precedes the reply it describes.
            if buf[at] == b'|' {
                Some(len + reply_len(buf, pos)?)
            } else {
                Some(len)
            }
        }
        _ => panic!("unexpected reply type byte {:?}", buf[at] as char),
    }
}

/// Fails with every difference listed when a comparison with redis-server found any.
pub fn assert_no_diffs(diffs: &[String]) {
    assert!(
        diffs.is_empty(),
        "{} replies differ from redis-server:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
