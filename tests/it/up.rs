//! `tessera up`: a whole local cluster from a clean folder, used with `redis-cli` and
//! `redis-benchmark`, stopped with Ctrl-C (SIGINT) and started again over the same data.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::control::free_port_range;
use serde_json::Value;

use crate::support::{free_port, tessera_bin, wait_for};

struct Up {
    child: Child,
    /// What it printed once it served.
    banner: String,
}

impl Up {
    fn start(dir: &Path, port: u16, api: u16, shard_ports: [u16; 2]) -> Up {
        let mut child = Command::new(tessera_bin())
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .args(["--port", &port.to_string()])
            .args(["--api-port", &api.to_string()])
            .args([
                "--shard-ports",
                &format!("{}-{}", shard_ports[0], shard_ports[1]),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tessera up");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line.starts_with("Data is in") {
                    let _ = tx.send(std::mem::take(&mut banner));
                }
            }
        });
        let banner = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("tessera up to print that it serves");
        Up { child, banner }
    }

    /// Ctrl-C: everything stops, and the process exits by itself.
    fn interrupt(mut self) {
        signal(self.child.id(), "-INT");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "tessera up exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tessera up did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), "-TERM");
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn up_serves_and_starts_again_with_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster");
    let (port, api) = (free_port(), free_port());
    let shard_ports = free_port_range(20);
    let up = Up::start(&data, port, api, shard_ports);
    assert!(
        up.banner.contains(&format!("127.0.0.1:{port}"))
            && up.banner.contains("3 shards, each with a replica")
            && up
                .banner
                .contains(&format!("http://127.0.0.1:{api}/v1/status")),
        "{}",
        up.banner
    );

    // redis-cli and redis-benchmark against the endpoint.
    assert_eq!(redis_cli(port, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(redis_cli(port, &["GET", "greeting"]), "hello");
    let bench = Command::new("redis-benchmark")
        .args(["-p", &port.to_string()])
        .args(["-t", "set,get", "-n", "20000", "-r", "100000", "-q"])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&bench.stdout);
    assert!(bench.status.success(), "{bench:?}");
    for test in ["SET: ", "GET: "] {
        assert!(
            text.lines()
                .any(|l| l.contains(test) && l.contains("requests per second")),
            "{text}"
        );
    }

    // Keys in every shard, of several types, through the `redis` crate.
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut c = client.get_connection().unwrap();
    for i in 0..300 {
        redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value {i}"))
            .query::<()>(&mut c)
            .unwrap();
    }
    redis::cmd("HSET")
        .arg("user:1")
        .arg("name")
        .arg("ada")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("RPUSH")
        .arg("queue")
        .arg(&["a", "b", "c"])
        .query::<()>(&mut c)
        .unwrap();
    let before: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    drop(c);

    // The admin view: the proxy and six shard processes, all running, each replica linked
    // and caught up with its primary's replication offset.
    let token_file = data.join("control").join("admin-token");
    let admin = |args: &[&str]| -> String {
        let out = Command::new(tessera_bin())
            .args(args)
            .args(["--api", &format!("127.0.0.1:{api}")])
            .arg("--token-file")
            .arg(&token_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let caught_up = || {
        let status: Value = serde_json::from_str(&admin(&["cluster", "status", "--json"])).unwrap();
        let procs: Vec<Value> = status["processes"][0]["processes"]
            .as_array()
            .unwrap()
            .clone();
        let running = procs.iter().filter(|p| p["state"] == "running").count();
        let proxies = procs.iter().filter(|p| p["role"] == "proxy").count();
        let replicas_ok = procs.iter().filter(|p| p["role"] == "replica").all(|r| {
            let primary = procs
                .iter()
                .find(|p| p["role"] == "primary" && p["shard"] == r["shard"])
                .unwrap();
            r["link"] == "up" && r["offset"].as_u64().is_some() && r["offset"] == primary["offset"]
        });
        running == 7 && proxies == 1 && replicas_ok
    };
    wait_for(
        Duration::from_secs(60),
        "every replica to catch up",
        caught_up,
    );
    let table = admin(&["cluster", "status"]);
    for column in ["SLOTS", "OFFSET", "LAG", "LINK", "0-5460", " proxy "] {
        assert!(table.contains(column), "{column}: {table}");
    }

    // A second database on the running cluster gets its own endpoint.
    let second = free_port();
    admin(&[
        "db",
        "create",
        "second",
        "--shards",
        "2",
        "--port",
        &second.to_string(),
    ]);
    wait_for(Duration::from_secs(30), "the second endpoint", || {
        Command::new("redis-cli")
            .args(["-p", &second.to_string(), "SET", "other", "db"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "OK")
    });
    // Every shard of it answers (the SET above needed only one of them up).
    wait_for(
        Duration::from_secs(30),
        "every shard of the second database",
        || redis_cli(second, &["DBSIZE"]) == "1",
    );
    assert_eq!(redis_cli(port, &["EXISTS", "other"]), "0");

    // Ctrl-C stops every process.
    up.interrupt();
    assert!(!listening(port), "the proxy still listens");
    assert!(!listening(second), "the second proxy still listens");
    for p in shard_ports[0]..=shard_ports[1] {
        assert!(!listening(p), "a shard still listens on {p}");
    }

    // Started again over the same folder: the same data.
    let up = Up::start(&data, port, api, shard_ports);
    let mut c = client.get_connection().unwrap();
    // The replicas and the proxy may still be reconnecting: wait for every shard to answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after: u64 = loop {
        match redis::cmd("DBSIZE").query(&mut c) {
            Ok(n) => break n,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(after, before);
    for i in 0..300 {
        let v: String = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, format!("value {i}"));
    }
    let name: String = redis::cmd("HGET")
        .arg("user:1")
        .arg("name")
        .query(&mut c)
        .unwrap();
    assert_eq!(name, "ada");
    let queue: Vec<String> = redis::cmd("LRANGE")
        .arg("queue")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(queue, ["a", "b", "c"]);
    assert_eq!(redis_cli(port, &["GET", "greeting"]), "hello");
    wait_for(Duration::from_secs(30), "the second database", || {
        Command::new("redis-cli")
            .args(["-p", &second.to_string(), "GET", "other"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "db")
    });
    up.interrupt();
}

/// A port another server holds is reported at once, and nothing is left running.
#[test]
fn up_refuses_a_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(tessera_bin())
        .arg("up")
        .arg("--dir")
        .arg(dir.path())
        .args(["--port", &port.to_string()])
        .args(["--api-port", &free_port().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port} is in use")),
        "{err}"
    );
    let out = Command::new(tessera_bin())
        .args(["up", "--replicas", "2"])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at most one replica"),
        "{out:?}"
    );
}
