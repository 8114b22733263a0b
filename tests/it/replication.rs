//! Replication (issue 5): full and partial syncs between Tessera shards and with a real
//! `redis-server` in both directions, promotion, WAIT, and processes killed mid-sync.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::{TestServer, wait_for};

fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(c).unwrap()
}

/// One `field:value` of INFO.
fn field(c: &mut redis::Connection, section: &str, name: &str) -> String {
    let text = info(c, section);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {name}:\n{text}"))
        .trim()
        .to_string()
}

fn num(c: &mut redis::Connection, section: &str, name: &str) -> i64 {
    field(c, section, name).parse().unwrap()
}

fn digest(c: &mut redis::Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

/// A Tessera primary whose full syncs start right away.
fn primary(extra: &[&str]) -> TestServer {
    let mut args = vec!["--save", "", "--repl-diskless-sync-delay", "0"];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

fn replica_of(primary: &TestServer, extra: &[&str]) -> TestServer {
    let spec = format!("127.0.0.1 {}", primary.port);
    let mut args = vec![
        "--save",
        "",
        "--repl-diskless-sync-delay",
        "0",
        "--replicaof",
        &spec,
    ];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// Waits until `replica` is linked to its primary and has applied all of its stream.
fn wait_synced(primary: &TestServer, replica: &TestServer) {
    let mut p = primary.redis();
    let mut r = replica.redis();
    wait_for(Duration::from_secs(60), "the replica to catch up", || {
        let link = field(&mut r, "replication", "master_link_status");
        link == "up"
            && num(&mut r, "replication", "slave_repl_offset")
                == num(&mut p, "replication", "master_repl_offset")
    });
}

/// Writes every data type from a thread until stopped; returns the commands sent.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Writer {
    fn start(server: &TestServer, tag: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let mut c = server.redis();
        let (flag, tag) = (Arc::clone(&stop), tag.to_string());
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let k = |n: u64| format!("{tag}:{}", n % 500);
                let mut p = redis::pipe();
                for _ in 0..20 {
                    i += 1;
                    match i % 10 {
                        0 => p.cmd("SET").arg(k(i)).arg(i),
                        1 => p.cmd("INCR").arg(format!("{tag}:ctr")),
                        2 => p.cmd("RPUSH").arg(k(i) + ":l").arg(i),
                        3 => p.cmd("HSET").arg(k(i) + ":h").arg(i % 7).arg(i),
                        4 => p.cmd("ZADD").arg(k(i) + ":z").arg(i % 13).arg(i),
                        5 => p.cmd("SADD").arg(k(i) + ":s").arg(i % 50),
                        6 => p.cmd("XADD").arg(k(i) + ":x").arg("*").arg("f").arg(i),
                        7 => p.cmd("SET").arg(k(i) + ":t").arg(i).arg("EX").arg(1000),
                        8 => p.cmd("LPOP").arg(k(i - 6) + ":l"),
                        _ => p.cmd("SPOP").arg(k(i - 4) + ":s"),
                    };
                }
                let _: redis::Value = p.query(&mut c).unwrap();
            }
            i
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// Fills a server with keys of every type (`n` strings from DEBUG POPULATE).
fn fill(server: &TestServer, n: u64) {
    let mut c = server.redis();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(n)
        .arg("key")
        .arg(16)
        .query(&mut c)
        .unwrap();
    let mut p = redis::pipe();
    for i in 0..300 {
        p.cmd("RPUSH")
            .arg(format!("list:{i}"))
            .arg(&[i, i + 1, i + 2]);
        p.cmd("HSET").arg(format!("hash:{i}")).arg("f").arg(i);
        p.cmd("SADD").arg(format!("set:{i}")).arg(&[i, i * 2]);
        p.cmd("SADD").arg(format!("sset:{i}")).arg("a").arg("b");
        p.cmd("ZADD").arg(format!("zset:{i}")).arg(i).arg("m");
        p.cmd("XADD")
            .arg(format!("stream:{i}"))
            .arg("*")
            .arg("f")
            .arg(i);
        p.cmd("SET")
            .arg(format!("ttl:{i}"))
            .arg(i)
            .arg("EX")
            .arg(10_000);
        p.cmd("PFADD").arg(format!("hll:{i}")).arg(&["a", "b", "c"]);
    }
    // Large encodings too.
    for i in 0..1000 {
        p.cmd("HSET").arg("bighash").arg(i).arg("x".repeat(80));
        p.cmd("ZADD").arg("bigzset").arg(i).arg(format!("m{i}"));
        p.cmd("SADD").arg("bigset").arg(format!("m{i}"));
    }
    p.cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:1")
        .arg("g")
        .arg("0");
    let _: redis::Value = p.query(&mut c).unwrap();
}

#[test]
fn full_sync_under_writes_ends_identical() {
    let p = primary(&[]);
    fill(&p, 50_000);
    let writer = Writer::start(&p, "w");
    std::thread::sleep(Duration::from_millis(200));
    let r = replica_of(&p, &[]);
    let mut rc = r.redis();
    wait_for(Duration::from_secs(30), "the link to come up", || {
        field(&mut rc, "replication", "master_link_status") == "up"
    });
    std::thread::sleep(Duration::from_millis(500));
    let sent = writer.stop();
    assert!(sent > 1000, "the writer kept writing ({sent})");
    wait_synced(&p, &r);
    let mut pc = p.redis();
    assert_eq!(digest(&mut pc), digest(&mut rc));
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut rc).unwrap();
    assert!(dbsize > 50_000);
    // A read-only replica refuses writes with Redis's error; reads work.
    let e = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut rc)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("You can't write against a read only replica"),
        "{e}"
    );
    let v: String = redis::cmd("GET").arg("key:7").query(&mut rc).unwrap();
    assert_eq!(v.len(), 16);
    // ROLE on both sides.
    let role: redis::Value = redis::cmd("ROLE").query(&mut rc).unwrap();
    let text = format!("{role:?}");
    assert!(
        text.contains("slave") && text.contains("connected"),
        "{text}"
    );
    let role: redis::Value = redis::cmd("ROLE").query(&mut pc).unwrap();
    assert!(format!("{role:?}").contains("master"));
    assert_eq!(num(&mut pc, "stats", "sync_full"), 1);
    assert!(
        field(&mut pc, "replication", "slave0").contains("state=online"),
        "{}",
        info(&mut pc, "replication")
    );
}

/// Closes the replica's connection on the primary.
fn kill_replica_links(p: &TestServer) {
    let mut c = p.redis();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut c)
        .unwrap();
}

#[test]
fn reconnect_continues_from_the_backlog_or_syncs_in_full() {
    let p = primary(&[]);
    fill(&p, 1000);
    let r = replica_of(&p, &[]);
    wait_synced(&p, &r);
    let mut pc = p.redis();
    let mut rc = r.redis();
    // A few seconds away, a little written meanwhile: the replica continues.
    r.signal("-STOP");
    kill_replica_links(&p);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("during:{i}"))
            .arg(i)
            .query(&mut pc)
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    r.signal("-CONT");
    wait_synced(&p, &r);
    assert_eq!(num(&mut pc, "stats", "sync_full"), 1);
    assert_eq!(num(&mut pc, "stats", "sync_partial_ok"), 1);
    assert_eq!(digest(&mut pc), digest(&mut rc));

    // Away while more than the backlog was written: a full sync.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-backlog-size")
        .arg("16kb")
        .query(&mut pc)
        .unwrap();
    r.signal("-STOP");
    kill_replica_links(&p);
    for i in 0..2000 {
        let _: () = redis::cmd("SET")
            .arg(format!("past:{i}"))
            .arg("v".repeat(20))
            .query(&mut pc)
            .unwrap();
    }
    r.signal("-CONT");
    wait_synced(&p, &r);
    assert_eq!(num(&mut pc, "stats", "sync_full"), 2);
    assert_eq!(digest(&mut pc), digest(&mut rc));
}

#[test]
fn a_promoted_replica_keeps_the_old_id_and_its_sibling_continues() {
    let p = primary(&[]);
    fill(&p, 1000);
    let r1 = replica_of(&p, &[]);
    let r2 = replica_of(&p, &[]);
    wait_synced(&p, &r1);
    wait_synced(&p, &r2);
    let mut pc = p.redis();
    let old_id = field(&mut pc, "replication", "master_replid");
    let offset = num(&mut pc, "replication", "master_repl_offset");
    drop(p);

    let mut c1 = r1.redis();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut c1)
        .unwrap();
    assert_eq!(field(&mut c1, "replication", "role"), "master");
    assert_eq!(field(&mut c1, "replication", "master_replid2"), old_id);
    assert_eq!(
        num(&mut c1, "replication", "second_repl_offset"),
        offset + 1
    );
    assert_ne!(field(&mut c1, "replication", "master_replid"), old_id);
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("promotion")
        .query(&mut c1)
        .unwrap();

    let mut c2 = r2.redis();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(r1.port)
        .query(&mut c2)
        .unwrap();
    wait_synced(&r1, &r2);
    assert_eq!(num(&mut c1, "stats", "sync_full"), 0, "no full sync");
    assert_eq!(num(&mut c1, "stats", "sync_partial_ok"), 1);
    let v: String = redis::cmd("GET").arg("after").query(&mut c2).unwrap();
    assert_eq!(v, "promotion");
    assert_eq!(digest(&mut c1), digest(&mut c2));
    assert_eq!(
        field(&mut c2, "replication", "master_replid"),
        field(&mut c1, "replication", "master_replid")
    );
}

#[test]
fn sigkill_in_the_middle_of_a_full_sync() {
    // Big enough that the sync takes a while: 200k keys of 200 bytes.
    let p = primary(&[]);
    let mut pc = p.redis();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(200_000)
        .arg("key")
        .arg(200)
        .query(&mut pc)
        .unwrap();
    let before = digest(&mut pc);
    // The replica is killed as soon as its sync has started.
    let r = replica_of(&p, &[]);
    wait_for(Duration::from_secs(30), "the payload transfer", || {
        num(&mut pc, "stats", "sync_full") >= 1
    });
    r.signal("-KILL");
    drop(r);
    // The primary is unharmed and serves writes; the next sync succeeds.
    let _: () = redis::cmd("SET").arg("x").arg("1").query(&mut pc).unwrap();
    let _: () = redis::cmd("DEL").arg("x").query(&mut pc).unwrap();
    assert_eq!(digest(&mut pc), before);
    let r = replica_of(&p, &[]);
    wait_synced(&p, &r);
    let mut rc = r.redis();
    assert_eq!(digest(&mut rc), before);

    // Now the primary dies while a second replica loads: the replica keeps serving what it
    // had (here: nothing yet), and syncs from a new primary.
    let r2 = replica_of(&p, &[]);
    let mut r2c = r2.redis();
    wait_for(Duration::from_secs(30), "the second sync to start", || {
        num(&mut pc, "stats", "sync_full") >= 3
    });
    p.signal("-KILL");
    drop(p);
    let _: String = redis::cmd("PING").query(&mut r2c).unwrap();
    assert_eq!(field(&mut r2c, "replication", "master_link_status"), "down");
    let p2 = primary(&[]);
    fill(&p2, 100);
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(p2.port)
        .query(&mut r2c)
        .unwrap();
    wait_synced(&p2, &r2);
    let mut p2c = p2.redis();
    assert_eq!(digest(&mut p2c), digest(&mut r2c));
    // The replica that synced from the first primary still has its data.
    assert_eq!(digest(&mut rc), before);
}

#[test]
fn wait_counts_real_acknowledgements() {
    let p = primary(&[]);
    let r1 = replica_of(&p, &[]);
    let r2 = replica_of(&p, &[]);
    wait_synced(&p, &r1);
    wait_synced(&p, &r2);
    let mut pc = p.redis();
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut pc).unwrap();
    let n: i64 = redis::cmd("WAIT").arg(2).arg(5000).query(&mut pc).unwrap();
    assert_eq!(n, 2);
    r2.signal("-STOP");
    let _: () = redis::cmd("SET").arg("b").arg("2").query(&mut pc).unwrap();
    let started = Instant::now();
    let n: i64 = redis::cmd("WAIT").arg(2).arg(700).query(&mut pc).unwrap();
    let took = started.elapsed();
    r2.signal("-CONT");
    assert_eq!(n, 1, "only the running replica acknowledged");
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // WAIT on a replica is refused.
    let mut rc = r1.redis();
    let e = redis::cmd("WAIT")
        .arg(1)
        .arg(10)
        .query::<i64>(&mut rc)
        .unwrap_err();
    assert!(
        e.to_string().contains("WAIT cannot be used with replica"),
        "{e}"
    );
    // min-replicas-to-write counts good replicas.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-replicas-to-write")
        .arg(3)
        .query(&mut pc)
        .unwrap();
    let e = redis::cmd("SET")
        .arg("c")
        .arg("3")
        .query::<()>(&mut pc)
        .unwrap_err();
    assert!(e.to_string().contains("Not enough good replicas"), "{e}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-replicas-to-write")
        .arg(2)
        .query(&mut pc)
        .unwrap();
    wait_for(Duration::from_secs(5), "both replicas to be good", || {
        redis::cmd("SET")
            .arg("c")
            .arg("3")
            .query::<()>(&mut pc)
            .is_ok()
    });
}

#[test]
fn a_real_redis_replicates_from_tessera() {
    let p = primary(&[]);
    fill(&p, 20_000);
    let writer = Writer::start(&p, "w");
    let redis_replica = TestServer::start_redis_with(&[]);
    let mut rc = redis_replica.redis();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(p.port)
        .query(&mut rc)
        .unwrap();
    wait_for(Duration::from_secs(30), "the redis replica's link", || {
        field(&mut rc, "replication", "master_link_status") == "up"
    });
    std::thread::sleep(Duration::from_millis(300));
    writer.stop();
    wait_synced(&p, &redis_replica);
    let mut pc = p.redis();
    assert_eq!(digest(&mut pc), digest(&mut rc));
    // WAIT counts the Redis replica's acknowledgements.
    let _: () = redis::cmd("SET").arg("z").arg("1").query(&mut pc).unwrap();
    let n: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut pc).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn tessera_replicates_from_a_real_redis_and_takes_over() {
    let redis_primary = TestServer::start_redis_with(&["--repl-diskless-sync-delay", "0"]);
    fill(&redis_primary, 20_000);
    let mut pc = redis_primary.redis();
    // A key in another database is skipped (Tessera has database 0 only).
    let _: () = redis::cmd("SELECT").arg(3).query(&mut pc).unwrap();
    let _: () = redis::cmd("SET")
        .arg("elsewhere")
        .arg("1")
        .query(&mut pc)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut pc).unwrap();
    let writer = Writer::start(&redis_primary, "w");
    let r = replica_of(&redis_primary, &[]);
    let mut rc = r.redis();
    wait_for(Duration::from_secs(30), "the link", || {
        field(&mut rc, "replication", "master_link_status") == "up"
    });
    std::thread::sleep(Duration::from_millis(300));
    writer.stop();
    // Redis's digest covers every database: the other one is emptied (through the stream,
    // where Tessera skips it too).
    let _: () = redis::cmd("SELECT").arg(3).query(&mut pc).unwrap();
    let _: () = redis::cmd("DEL").arg("elsewhere").query(&mut pc).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut pc).unwrap();
    wait_synced(&redis_primary, &r);
    assert_eq!(digest(&mut pc), digest(&mut rc));
    // The migration path: stop following, take writes.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut rc)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("mine")
        .arg("1")
        .query(&mut rc)
        .unwrap();
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut rc).unwrap();
    let redis_size: i64 = redis::cmd("DBSIZE").query(&mut pc).unwrap();
    assert_eq!(dbsize, redis_size + 1);
}
