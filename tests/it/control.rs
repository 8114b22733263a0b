//! The control group: real `tessera control` processes on loopback, driven over the REST API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{free_port, tessera_bin, wait_for};

pub(crate) const TOKEN: &str = "test-token";

/// A range of `n` loopback ports that are free now (for shard processes).
///
/// The range is below the kernel's ephemeral ports (32768 and up), which every `free_port()`
/// and every outgoing connection of the tests running alongside draws from: a shard started a
/// minute after its range was chosen must not find its port taken by one of those. Ranges of
/// one test binary never overlap; the probe guards against another binary's.
pub(crate) fn free_port_range(n: u16) -> [u16; 2] {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 16384;
    const HIGH: u16 = 32768;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        // Test binaries start at different places.
        let start = LOW + (std::process::id() % 256) as u16 * 64;
        let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let mut base = NEXT.fetch_add(n, Ordering::Relaxed);
        if base + n > HIGH {
            NEXT.store(LOW, Ordering::Relaxed);
            base = NEXT.fetch_add(n, Ordering::Relaxed);
        }
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return [base, base + n - 1];
        }
    }
}

pub(crate) struct Member {
    id: u64,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    http: reqwest::blocking::Client,
    /// The shards and proxies of a member killed with SIGKILL, which outlive it: stopped with
    /// the member at the end of the test.
    orphans: Vec<u32>,
}

impl Member {
    fn start(id: u64, dir: PathBuf, extra: &[String]) -> Member {
        let mut m = Member {
            id,
            port: free_port(),
            dir,
            args: extra.to_vec(),
            child: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            orphans: Vec::new(),
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("control.log"))
            .unwrap();
        let child = Command::new(tessera_bin())
            .args(["control", "--fault-injection", "--memory", "1gb"])
            .arg("--id")
            .arg(self.id.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--token")
            .arg(TOKEN)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for(
            Duration::from_secs(20),
            "the control member to listen",
            || self.get("/v1/status").is_ok(),
        );
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", self.addr()))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().map_err(|e| {
            (
                0,
                json!({"error": {"code": "io", "message": e.to_string()}}),
            )
        })?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err((status, v))
        }
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value, (u16, Value)> {
        self.call(reqwest::Method::GET, path, None)
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> Result<Value, (u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn status(&self) -> Value {
        self.get("/v1/status").unwrap()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// SIGKILL. Its shards and proxies go on running, as a dead control member leaves them;
    /// they are stopped with the member at the end of the test (or by the member's next start).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.orphans.extend(children(c.id()));
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after 15 s); then SIGKILL to any of its shards and proxies
    /// still running, left by that or by an earlier `kill`.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.orphans.extend(children(c.id()));
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let start = Instant::now();
            while c.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(15) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for pid in std::mem::take(&mut self.orphans) {
            if tessera_control::supervise::started_in(pid, &self.dir) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }

    /// The configuration as this member applied it, without the request-id memory.
    fn config(&self) -> Value {
        let mut c = self.get("/v1/config?wait_ms=0").unwrap();
        c.as_object_mut().unwrap().remove("recent");
        c
    }
}

/// The processes `pid` started, from every one of its threads.
fn children(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A database with one shard; its endpoint (where the supervisor starts its proxy) on `port`,
/// else on a free port.
fn database(name: &str, port: Option<u16>) -> Value {
    json!({
        "name": name,
        "port": port.unwrap_or_else(free_port),
        "shards": 1,
        "replication": false,
        "persistence": "none",
        "memory": 0,
    })
}

/// Starts `n` members: the first initializes the cluster, the others join it with `--join`.
pub(crate) fn cluster(n: u64, dir: &std::path::Path) -> Vec<Member> {
    let ports = free_port_range(40);
    let shard_ports = vec![
        "--shard-ports".to_string(),
        format!("{}-{}", ports[0], ports[1]),
    ];
    let first = Member::start(1, dir.join("m1"), &shard_ports);
    first
        .post("/v1/cluster/init", json!({"name": "test"}))
        .unwrap();
    let mut members = vec![first];
    for id in 2..=n {
        let mut args = shard_ports.clone();
        args.extend(["--join".to_string(), members[0].addr()]);
        members.push(Member::start(id, dir.join(format!("m{id}")), &args));
    }
    let want_voters = if n >= 3 { 3 } else { 1 };
    wait_for(Duration::from_secs(30), "every member to join", || {
        members.iter().all(|m| {
            let s = m.status();
            s["machines"].as_array().unwrap().len() == n as usize
                && s["voters"].as_array().unwrap().len() == want_voters
        })
    });
    members
}

fn leader(members: &[Member]) -> Option<usize> {
    members.iter().position(|m| {
        m.child.is_some() && m.get("/v1/status").is_ok_and(|s| s["state"] == "leader")
    })
}

fn wait_converged(members: &[&Member]) {
    wait_for(Duration::from_secs(20), "the members to converge", || {
        let c: Vec<Value> = members.iter().map(|m| m.config()).collect();
        c.windows(2).all(|w| w[0] == w[1])
    });
}

/// A member told to stop does not wait for the configuration long-polls made through it (the
/// shards and proxies of every machine watch through any member): they answer at once.
#[test]
fn a_stopping_member_ends_configuration_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = cluster(1, dir.path());
    let epoch = members[0].status()["epoch"].as_u64().unwrap();
    let url = format!(
        "http://{}/v1/config?after={epoch}&wait_ms=60000",
        members[0].addr()
    );
    let poll = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap()
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .map(|r| r.status())
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    members[0].stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the member took {took:?} to stop"
    );
    let status = poll.join().unwrap();
    assert!(status.as_ref().is_ok_and(|s| s.is_success()), "{status:?}");
}

/// Kill the leader: a new one within 2 s, writes go on; restart every member: the
/// configuration is kept. Also measures how soon a watcher on a follower sees a commit.
#[test]
fn leader_failover_and_full_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = cluster(3, dir.path());
    let l = leader(&members).expect("a leader");

    // Watch latency: a long-poll on each follower returns after the leader commits.
    let epoch = members[l].status()["epoch"].as_u64().unwrap();
    let watchers: Vec<_> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != l)
        .map(|(_, m)| {
            let url = format!("http://{}/v1/config?after={epoch}&wait_ms=10000", m.addr());
            std::thread::spawn(move || {
                let r = reqwest::blocking::Client::new()
                    .get(url)
                    .bearer_auth(TOKEN)
                    .send()
                    .unwrap();
                let v: Value = r.json().unwrap();
                (Instant::now(), v["epoch"].as_u64().unwrap())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    members[l]
        .post("/v1/databases", database("first", None))
        .unwrap();
    let committed = Instant::now();
    for w in watchers {
        let (seen, e) = w.join().unwrap();
        assert!(e > epoch);
        eprintln!(
            "watch: a follower's watcher saw the change {} ms after the leader answered",
            seen.saturating_duration_since(committed).as_millis()
        );
    }

    let killed_at = Instant::now();
    members[l].kill();
    let mut new_leader = None;
    while killed_at.elapsed() < Duration::from_secs(10) {
        if let Some(n) = leader(&members) {
            new_leader = Some(n);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let failover = killed_at.elapsed();
    eprintln!(
        "failover: a new leader {} ms after SIGKILL of the old one",
        failover.as_millis()
    );
    let n = new_leader.expect("no new leader within 10 s");
    assert!(
        failover <= Duration::from_secs(2),
        "failover took {failover:?}"
    );
    // Writes go on, through any survivor.
    let other = (0..3).find(|i| *i != l && *i != n).unwrap();
    members[other]
        .post("/v1/databases", database("second", None))
        .unwrap();
    // The killed member comes back and catches up.
    members[l].spawn();
    wait_converged(&members.iter().collect::<Vec<_>>());

    // Restart all: nothing is lost.
    let before = members[0].config();
    for m in &mut members {
        m.stop();
    }
    for m in &mut members {
        m.spawn();
    }
    wait_for(
        Duration::from_secs(20),
        "a leader after the restart",
        || leader(&members).is_some(),
    );
    for m in &members {
        assert_eq!(m.config()["databases"], before["databases"]);
        assert!(m.config()["epoch"].as_u64() >= before["epoch"].as_u64());
    }
    members[0]
        .post("/v1/databases", database("third", None))
        .unwrap();
    wait_converged(&members.iter().collect::<Vec<_>>());
}

/// SIGSTOP the leader for 10 s under a steady stream of writes: the others elect a leader, the
/// paused one steps down when it wakes, and every acknowledged write is there exactly once.
#[test]
fn paused_leader_steps_down_and_no_write_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(3, dir.path());
    let l = leader(&members).expect("a leader");
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    members[l].signal("STOP");
    let paused = Instant::now();
    let mut acked = Vec::new();
    let mut i = 0;
    while paused.elapsed() < Duration::from_secs(10) {
        let name = format!("w{i}");
        let target = &members[others[i % 2]];
        if target.post("/v1/databases", database(&name, None)).is_ok() {
            acked.push(name);
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        !acked.is_empty(),
        "no write succeeded while the leader was paused"
    );
    members[l].signal("CONT");
    wait_for(
        Duration::from_secs(10),
        "the paused leader to step down",
        || members[l].status()["state"] != "leader",
    );
    wait_converged(&members.iter().collect::<Vec<_>>());
    let names: Vec<String> = members[l].config()["databases"]
        .as_object()
        .unwrap()
        .values()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    for a in &acked {
        assert_eq!(
            names.iter().filter(|n| *n == a).count(),
            1,
            "{a} in {names:?}"
        );
    }
}

/// Isolate the leader with the fault-injecting transport: the minority commits nothing, the
/// majority goes on, and after healing everyone holds the majority's configuration.
#[test]
fn partitioned_leader_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(3, dir.path());
    let l = leader(&members).expect("a leader");
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let before = members[l].config();
    let ids: Vec<u64> = others.iter().map(|i| members[*i].id).collect();
    members[l]
        .post("/v1/debug/faults", json!({"blocked": ids}))
        .unwrap();
    for o in &others {
        members[*o]
            .post("/v1/debug/faults", json!({"blocked": [members[l].id]}))
            .unwrap();
    }
    // The isolated leader cannot commit.
    let r = members[l].post("/v1/databases", database("minority", None));
    let (status, body) = r.expect_err("the minority committed a write");
    assert!(
        body["error"]["code"] == "timeout" || body["error"]["code"] == "unavailable",
        "{status} {body}"
    );
    assert_eq!(members[l].config()["epoch"], before["epoch"]);
    // The majority elects a leader and commits.
    wait_for(
        Duration::from_secs(10),
        "a leader on the majority side",
        || {
            others
                .iter()
                .any(|o| members[*o].status()["state"] == "leader")
        },
    );
    members[others[0]]
        .post("/v1/databases", database("majority", None))
        .unwrap();
    assert_eq!(members[l].config()["epoch"], before["epoch"]);
    // Heal.
    for m in &members {
        m.post("/v1/debug/faults", json!({"blocked": []})).unwrap();
    }
    wait_converged(&members.iter().collect::<Vec<_>>());
    let cfg = members[l].config();
    let names: Vec<&str> = cfg["databases"]
        .as_object()
        .unwrap()
        .values()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"majority"), "{names:?}");
    assert!(!names.contains(&"minority"), "{names:?}");
}

/// One machine: a database's shard process is started, restarted after SIGKILL and reported;
/// invalid requests are refused with stable codes and change nothing; deleting the database
/// stops its process.
#[test]
fn supervision_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(1, dir.path());
    let m = &members[0];
    let endpoint = free_port();
    let db = m
        .post("/v1/databases", database("cache", Some(endpoint)))
        .unwrap();
    let port = db["shards"][0]["primary"]["port"].as_u64().unwrap() as u16;
    let ping = |port: u16| {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    };
    wait_for(
        Duration::from_secs(20),
        "the shard process to serve",
        || ping(port),
    );
    // The database's proxy runs on its endpoint and routes to the shard.
    let process = |role: &str| -> Value {
        let all = m.get("/v1/processes").unwrap();
        let found = all.as_array().unwrap().iter().find(|p| p["role"] == role);
        found.cloned().unwrap_or(Value::Null)
    };
    wait_for(Duration::from_secs(20), "the proxy to serve", || {
        redis::Client::open(format!("redis://127.0.0.1:{endpoint}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("SET").arg("k").arg("v").query::<String>(&mut c))
            .is_ok()
    });
    assert_eq!(process("proxy")["port"], endpoint);
    // A second proxy on the same endpoint is refused, not let in to share the port.
    let mut second = Command::new(tessera_bin())
        .args(["proxy", "--database", "cache", "--token", TOKEN])
        .args(["--control", &m.addr(), "--port", &endpoint.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while second.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = second.kill();
    let second = second.wait_with_output().unwrap();
    assert!(
        !second.status.success()
            && String::from_utf8_lossy(&second.stderr).contains("listening on"),
        "{second:?}"
    );
    assert_eq!(process("proxy")["shard"], Value::Null);
    assert_eq!(
        crate::support::RawConn::connect(port).cmd_str(&["GET", "k"]),
        "$1\r\nv\r\n"
    );
    let primary = process("primary");
    let pid = primary["pid"].as_u64().unwrap();
    assert_eq!(primary["state"], "running");
    assert!(
        Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    wait_for(
        Duration::from_secs(20),
        "the shard process to be restarted",
        || {
            let p = process("primary");
            p["restarts"] == 1 && p["state"] == "running" && p["pid"].as_u64() != Some(pid)
        },
    );
    wait_for(
        Duration::from_secs(20),
        "the restarted shard to serve",
        || ping(port),
    );

    // Invalid requests: refused, configuration unchanged.
    let before = m.config();
    let cases = [
        (database("cache", None), 409, "database_exists"),
        (database("other", Some(endpoint)), 409, "port_in_use"),
        (database("other", Some(m.port)), 409, "port_in_use"),
        (database("bad name!", None), 400, "invalid"),
        (
            json!({"name": "x", "shards": 0, "replication": false, "persistence": "none", "memory": 0}),
            400,
            "invalid",
        ),
    ];
    for (body, status, code) in cases {
        let (s, e) = m.post("/v1/databases", body.clone()).unwrap_err();
        assert_eq!(
            (s, e["error"]["code"].as_str().unwrap()),
            (status, code),
            "{body}: {e}"
        );
    }
    let (s, e) = m.post("/v1/databases", json!({"name": 5})).unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (400, "invalid"),
        "{e}"
    );
    let (s, e) = m.get("/v1/machines/abc").unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (400, "invalid"),
        "{e}"
    );
    let (s, e) = m.get("/v1/config?after=x").unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (400, "invalid"),
        "{e}"
    );
    let (s, e) = m.get("/v1/nothing").unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (404, "not_found"),
        "{e}"
    );
    let (s, e) = m.post("/v1/cluster/leave", json!({"id": 99})).unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (404, "unknown_machine")
    );
    let (s, e) = m.post("/v1/cluster/leave", json!({"id": 1})).unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (409, "machine_in_use")
    );
    let bad_token = reqwest::blocking::Client::new()
        .get(format!("http://{}/v1/status", m.addr()))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(bad_token.status().as_u16(), 401);
    assert_eq!(m.config(), before);
    // The OpenAPI document needs no token and lists every route.
    let doc: Value = reqwest::blocking::get(format!("http://{}/v1/openapi.json", m.addr()))
        .unwrap()
        .json()
        .unwrap();
    for path in [
        "/v1/status",
        "/v1/databases/{name}",
        "/v1/config",
        "/v1/leases",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }

    // Deleting the database stops its process.
    m.call(reqwest::Method::DELETE, "/v1/databases/cache", None)
        .unwrap();
    wait_for(Duration::from_secs(20), "the shard process to stop", || {
        !ping(port)
            && !ping(endpoint)
            && m.get("/v1/processes")
                .unwrap()
                .as_array()
                .unwrap()
                .is_empty()
    });
}

/// Four machines (three voters, one learner): a dead voter is replaced by the learner through
/// joint consensus and removed; the group keeps committing.
#[test]
fn a_dead_voter_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = cluster(4, dir.path());
    let s = members[0].status();
    assert_eq!(s["voters"].as_array().unwrap().len(), 3, "{s}");
    assert_eq!(s["learners"].as_array().unwrap().len(), 1, "{s}");
    let learner = s["learners"][0].as_u64().unwrap();
    // A voter that is not the leader dies.
    let l = leader(&members).unwrap();
    let dead = (0..4)
        .find(|i| *i != l && members[*i].id != learner)
        .unwrap();
    let dead_id = members[dead].id;
    members[dead].kill();
    members[l]
        .post("/v1/cluster/leave", json!({"id": dead_id}))
        .unwrap();
    let s = members[l].status();
    let voters: Vec<u64> = s["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(voters.len(), 3, "{s}");
    assert!(
        voters.contains(&learner) && !voters.contains(&dead_id),
        "{s}"
    );
    assert!(
        s["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != dead_id)
    );
    members[l]
        .post("/v1/databases", database("after", None))
        .unwrap();
    let alive: Vec<&Member> = members.iter().filter(|m| m.child.is_some()).collect();
    wait_converged(&alive);
}

/// Leases: only the leader grants them, only to a shard's current primary; the admin CLI
/// creates and lists databases, in tables and in JSON.
#[test]
fn leases_and_admin_cli() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(3, dir.path());
    let l = leader(&members).unwrap();
    let follower = &members[(l + 1) % 3];
    let cli = |args: &[&str]| {
        let out = Command::new(tessera_bin())
            .args(args)
            .args(["--api", &follower.addr(), "--token", TOKEN])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = cli(&[
        "db",
        "create",
        "sessions",
        "--shards",
        "2",
        "--replication",
        "--memory",
        "64mb",
        "--persistence",
        "none",
        "--port",
        &free_port().to_string(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("sessions") && out.contains("0-8191") && out.contains("8192-16383"),
        "{out}"
    );
    let (ok, out, _) = cli(&["db", "list", "--json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["name"], "sessions");
    assert_eq!(list[0]["shards"].as_array().unwrap().len(), 2);
    let (ok, _, err) = cli(&["db", "create", "sessions"]);
    assert!(!ok);
    assert!(
        err.contains("already exists") && err.contains("database_exists"),
        "{err}"
    );
    let (ok, out, _) = cli(&["cluster", "status"]);
    assert!(ok);
    assert!(out.contains("leader") && out.contains("sessions"), "{out}");
    let shard = &list[0]["shards"][0];
    let lease = json!({
        "shard": shard["id"],
        "machine": shard["primary"]["machine"],
        "role_epoch": shard["role_epoch"],
    });
    let g = members[l].post("/v1/leases", lease.clone()).unwrap();
    assert_eq!(g["duration_ms"], 3000);
    let running = members[l].get("/v1/leases").unwrap();
    assert_eq!(running[0]["shard"], shard["id"]);
    let (s, e) = follower.post("/v1/leases", lease.clone()).unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (421, "not_leader")
    );
    assert_eq!(e["error"]["leader"], members[l].addr());
    let mut wrong = lease.clone();
    wrong["machine"] = shard["replicas"][0]["machine"].clone();
    let (s, e) = members[l].post("/v1/leases", wrong).unwrap_err();
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (409, "stale_epoch")
    );
    let (ok, out, _) = cli(&["db", "delete", "sessions"]);
    assert!(ok, "{out}");
}

/// With a snapshot every 20 entries the log is purged behind it, and a machine that joins later
/// is brought up to date from the snapshot.
#[test]
fn snapshots_purge_the_log_and_catch_up_a_new_member() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_port_range(10);
    let args = [
        "--snapshot-logs".to_string(),
        "20".to_string(),
        "--shard-ports".to_string(),
        format!("{}-{}", ports[0], ports[1]),
    ];
    let first = Member::start(1, dir.path().join("m1"), &args);
    first
        .post("/v1/cluster/init", json!({"name": "snap"}))
        .unwrap();
    first.post("/v1/databases", database("db", None)).unwrap();
    for i in 1..=60u64 {
        first
            .call(
                reqwest::Method::PATCH,
                "/v1/databases/db",
                Some(json!({"memory": i << 20})),
            )
            .unwrap();
    }
    wait_for(Duration::from_secs(10), "a snapshot and a purge", || {
        let s = first.status();
        s["snapshot"].as_u64().unwrap_or(0) >= 40 && s["purged"].as_u64().unwrap_or(0) > 0
    });
    let mut join = args.to_vec();
    join.extend(["--join".to_string(), first.addr()]);
    let second = Member::start(2, dir.path().join("m2"), &join);
    wait_converged(&[&first, &second]);
    assert_eq!(second.config()["databases"]["0"]["memory"], 60u64 << 20);
    assert!(second.status()["snapshot"].as_u64().unwrap_or(0) > 0);
}
