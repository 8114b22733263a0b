//! The proxy (issue 8, step 3) in front of a 3-shard database started by a control member:
//! routing by slot, split and merged multi-key commands, all-shard commands, transactions,
//! scripts, RESP3, the one-node cluster view, and replies compared with a real redis-server.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::control::{Member, TOKEN, cluster};
use crate::support::{RawConn, TestServer, free_port, wait_for};

pub(crate) struct ProxiedDb {
    members: Vec<Member>,
    pub primaries: Vec<u16>,
    pub proxy: TestServer,
    pub dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A control member, a database of `shards` shards (with replicas when `replication`) kept as
/// `persistence` says, and a proxy for it with `threads` workers.
pub(crate) fn proxied_db(
    shards: u32,
    replication: bool,
    persistence: &str,
    threads: usize,
) -> ProxiedDb {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(1, dir.path());
    let db = members[0]
        .post(
            "/v1/databases",
            json!({"name": "cache", "port": free_port(), "shards": shards,
                   "replication": replication, "persistence": persistence, "memory": 0}),
        )
        .unwrap();
    let primaries: Vec<u16> = db["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["primary"]["port"].as_u64().unwrap() as u16)
        .collect();
    for &port in &primaries {
        wait_for(Duration::from_secs(30), "the shards to be up", || {
            redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        });
    }
    let proxy = proxy_for(&members[0], threads);
    let mut c = proxy.raw();
    wait_for(Duration::from_secs(10), "the proxy to route", || {
        c.cmd_str(&["SET", "probe", "1"]) == "+OK\r\n"
    });
    c.cmd_str(&["DEL", "probe"]);
    ProxiedDb {
        members,
        primaries,
        proxy,
        dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

impl ProxiedDb {
    /// The control member that runs the database.
    pub(crate) fn member(&self) -> &Member {
        &self.members[0]
    }

    pub(crate) fn member_mut(&mut self) -> &mut Member {
        &mut self.members[0]
    }

    /// Another `tessera proxy` for the same database.
    pub(crate) fn second_proxy(&self) -> TestServer {
        proxy_for(self.member(), 2)
    }
}

/// A `tessera proxy` with `threads` workers for database `cache` of `member`'s cluster.
fn proxy_for(member: &Member, threads: usize) -> TestServer {
    let control = member.addr();
    let threads = threads.to_string();
    TestServer::start_proxy(&[
        "--database",
        "cache",
        "--control",
        &control,
        "--token",
        TOKEN,
        "--threads",
        &threads,
    ])
}

/// Keys of the shard at `port` (read directly, as `EVAL` sees them there).
fn shard_keys(port: u16) -> usize {
    let mut c = RawConn::connect(port);
    c.cmd_str(&["DBSIZE"])
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap()
}

pub(crate) fn int(reply: &str) -> i64 {
    reply.trim_start_matches(':').trim().parse().unwrap()
}

/// The bulk strings of an array reply, read with the redis crate's parser.
pub(crate) fn strings(reply: &[u8]) -> Vec<String> {
    let v = redis::parse_redis_value(reply).unwrap();
    let redis::Value::Array(items) = v else {
        panic!("{v:?}")
    };
    items
        .into_iter()
        .map(|i| match i {
            redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// A shard that closes the proxy's connection (CLIENT KILL, a `timeout`) is reached again by
/// the next command: a connection that was up is made again at once, without the wait that
/// follows a shard that cannot be reached.
#[test]
fn proxy_reconnects_at_once_to_a_shard_that_closed_its_connection() {
    let db = proxied_db(3, false, "none", 1);
    let mut c = db.proxy.raw();
    let keys = key_per_shard(&mut c);
    for k in &keys {
        assert_eq!(c.cmd_str(&["SET", k, "v"]), "+OK\r\n");
    }
    for round in 0..5 {
        for &port in &db.primaries {
            let killed = RawConn::connect(port).cmd_str(&["CLIENT", "KILL", "TYPE", "normal"]);
            assert!(killed.starts_with(':'), "{killed}");
        }
        // The proxy sees its connections close; the next commands make new ones.
        std::thread::sleep(Duration::from_millis(20));
        for k in &keys {
            assert_eq!(c.cmd_str(&["GET", k]), "$1\r\nv\r\n", "round {round}");
        }
    }
}

/// Requests cut anywhere reach the proxy whole: a pipeline with a 100 KB value, written in
/// pieces of 1 byte to 20 KB (a client's partial request is kept in a buffer of its own, its
/// complete ones are read from the worker's), interleaved with a second client's.
#[test]
fn proxy_reads_requests_cut_anywhere() {
    use std::io::Write as _;
    let db = proxied_db(3, false, "none", 1);
    let big = "v".repeat(100_000);
    let mut pipeline = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300 {
        let key = format!("cut{i}");
        let value = if i % 50 == 7 {
            big.clone()
        } else {
            format!("value{i}")
        };
        pipeline.extend(crate::support::encode(&[
            b"SET",
            key.as_bytes(),
            value.as_bytes(),
        ]));
        pipeline.extend(crate::support::encode(&[b"GET", key.as_bytes()]));
        expected.push("+OK\r\n".to_string());
        expected.push(format!("${}\r\n{value}\r\n", value.len()));
    }
    let mut c = db.proxy.raw();
    let mut other = db.proxy.raw();
    let sizes = [1, 7, 3, 4096, 20_000, 16_385, 2, 900];
    let mut at = 0;
    for (i, size) in sizes.iter().cycle().enumerate() {
        if at >= pipeline.len() {
            break;
        }
        let end = (at + size).min(pipeline.len());
        c.stream.write_all(&pipeline[at..end]).unwrap();
        at = end;
        if i % 16 == 0 {
            assert_eq!(other.cmd_str(&["PING"]), "+PONG\r\n");
        }
    }
    for want in &expected {
        assert_eq!(&String::from_utf8(c.read_reply()).unwrap(), want);
    }
}

#[test]
fn proxy_routes_splits_and_merges() {
    let db = proxied_db(3, false, "none", 2);
    let mut p = db.proxy.raw();

    // Single-key commands land on their shards; every shard gets a share.
    for i in 0..300 {
        assert_eq!(
            p.cmd_str(&["SET", &format!("k:{i}"), &i.to_string()]),
            "+OK\r\n"
        );
    }
    let per_shard: Vec<usize> = db.primaries.iter().map(|&s| shard_keys(s)).collect();
    assert!(per_shard.iter().all(|&n| n > 50), "{per_shard:?}");
    assert_eq!(per_shard.iter().sum::<usize>(), 300);
    assert_eq!(p.cmd_str(&["DBSIZE"]), ":300\r\n");
    assert_eq!(p.cmd_str(&["GET", "k:7"]), "$1\r\n7\r\n");

    // Split commands: the merged reply keeps the request's key order.
    let reply = p.cmd(&[b"MGET", b"k:1", b"k:2", b"nope", b"k:3", b"k:1"]);
    assert_eq!(
        reply,
        b"*5\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n$1\r\n1\r\n"
    );
    let mut mset = vec!["MSET".to_string()];
    for i in 0..50 {
        mset.push(format!("m:{i}"));
        mset.push(format!("v{i}"));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(p.cmd_str(&mset), "+OK\r\n");
    let keys: Vec<String> = (0..50).map(|i| format!("m:{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let values = strings(&p.cmd(&mget.iter().map(|s| s.as_bytes()).collect::<Vec<_>>()));
    assert_eq!(values, (0..50).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(
        p.cmd_str(&["EXISTS", "m:1", "m:2", "m:1", "none"]),
        ":3\r\n"
    );
    assert_eq!(p.cmd_str(&["TOUCH", "m:1", "m:2", "none"]), ":2\r\n");
    assert_eq!(p.cmd_str(&["DEL", "m:1", "m:2", "m:3", "none"]), ":3\r\n");
    assert_eq!(p.cmd_str(&["UNLINK", "m:4", "m:5"]), ":2\r\n");
    assert_eq!(p.cmd_str(&["DBSIZE"]), ":345\r\n");
    assert_eq!(
        p.cmd_str(&["MSET", "a", "1", "b"]),
        "-ERR wrong number of arguments for 'mset' command\r\n"
    );
    // Multi-key commands that cannot be split: one slot, or CROSSSLOT.
    assert_eq!(
        p.cmd_str(&["MSETNX", "x1", "1", "x2", "2"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(p.cmd_str(&["MSETNX", "{t}1", "1", "{t}2", "2"]), ":1\r\n");
    assert_eq!(p.cmd_str(&["RENAME", "{t}1", "{t}3"]), "+OK\r\n");

    // All-shard commands.
    let all: BTreeSet<String> = strings(&p.cmd(&[b"KEYS", b"k:*"])).into_iter().collect();
    assert_eq!(all.len(), 300);
    let mut cursor = "0".to_string();
    let mut scanned = BTreeSet::new();
    let mut steps = 0;
    loop {
        let reply = p.cmd(&[b"SCAN", cursor.as_bytes(), b"COUNT", b"50"]);
        let v = redis::parse_redis_value(&reply).unwrap();
        let redis::Value::Array(parts) = v else {
            panic!()
        };
        let redis::Value::BulkString(c) = &parts[0] else {
            panic!()
        };
        cursor = String::from_utf8(c.clone()).unwrap();
        let redis::Value::Array(keys) = &parts[1] else {
            panic!()
        };
        for k in keys {
            let redis::Value::BulkString(k) = k else {
                panic!()
            };
            scanned.insert(String::from_utf8(k.clone()).unwrap());
        }
        steps += 1;
        if cursor == "0" {
            break;
        }
        assert!(steps < 1000);
    }
    assert_eq!(scanned.len(), 347);
    assert!(scanned.is_superset(&all));
    assert_eq!(p.cmd_str(&["SCAN", "x"]), "-ERR invalid cursor\r\n");
    let random = p.cmd_str(&["RANDOMKEY"]);
    assert!(
        random.starts_with('$') && !random.starts_with("$-1"),
        "{random}"
    );
    let info = p.cmd_str(&["INFO", "keyspace"]);
    assert!(info.contains("db0:keys=347,expires=0,avg_ttl=0"), "{info}");

    // Scripts: loaded on every shard, so EVALSHA works for keys anywhere.
    let sha = p.cmd_str(&["SCRIPT", "LOAD", "return redis.call('get', KEYS[1])"]);
    let sha = sha.lines().nth(1).unwrap().to_string();
    for i in 0..20 {
        let key = format!("k:{i}");
        assert_eq!(
            p.cmd_str(&["EVALSHA", &sha, "1", &key]),
            format!("${}\r\n{i}\r\n", i.to_string().len())
        );
    }
    assert_eq!(
        p.cmd_str(&["SCRIPT", "EXISTS", &sha, "0000"]),
        "*2\r\n:1\r\n:0\r\n"
    );
    assert_eq!(
        p.cmd_str(&["EVAL", "return 1", "2", "k:1", "k:2"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );

    // Transactions: queued at the proxy, sent as one block to the slot's shard.
    assert_eq!(p.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(p.cmd_str(&["SET", "{u}a", "1"]), "+QUEUED\r\n");
    assert_eq!(p.cmd_str(&["INCR", "{u}a"]), "+QUEUED\r\n");
    assert_eq!(p.cmd_str(&["MGET", "{u}a", "{u}b"]), "+QUEUED\r\n");
    assert_eq!(
        p.cmd_str(&["EXEC"]),
        "*3\r\n+OK\r\n:2\r\n*2\r\n$1\r\n2\r\n$-1\r\n"
    );
    assert_eq!(p.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(p.cmd_str(&["SET", "{u}a", "1"]), "+QUEUED\r\n");
    assert_eq!(
        p.cmd_str(&["SET", "{v}a", "1"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        p.cmd_str(&["EXEC"]),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(p.cmd_str(&["EXEC"]), "-ERR EXEC without MULTI\r\n");

    // Pipelining: 2000 commands in one write, across every shard, replies in order.
    let mut batch = Vec::new();
    for i in 0..2000 {
        if i % 2 == 0 {
            batch.extend(crate::support::encode(&[
                b"INCR",
                format!("c:{}", i % 37).as_bytes(),
            ]));
        } else {
            batch.extend(crate::support::encode(&[
                b"GET",
                format!("k:{}", i % 300).as_bytes(),
            ]));
        }
    }
    p.send(&batch);
    let mut counters = [0i64; 37];
    for i in 0..2000 {
        let reply = String::from_utf8(p.read_reply()).unwrap();
        if i % 2 == 0 {
            counters[i % 37] += 1;
            assert_eq!(int(&reply), counters[i % 37], "reply {i}");
        } else {
            let v = (i % 300).to_string();
            assert_eq!(reply, format!("${}\r\n{v}\r\n", v.len()), "reply {i}");
        }
    }

    // Local commands.
    assert_eq!(p.cmd_str(&["PING"]), "+PONG\r\n");
    assert_eq!(p.cmd_str(&["ECHO", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(p.cmd_str(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        p.cmd_str(&["SELECT", "1"]),
        "-ERR SELECT is not allowed in cluster mode\r\n"
    );
    assert_eq!(p.cmd_str(&["CLIENT", "SETNAME", "me"]), "+OK\r\n");
    assert_eq!(p.cmd_str(&["CLIENT", "GETNAME"]), "$2\r\nme\r\n");
    assert!(
        p.cmd_str(&["AUTH", "x"])
            .starts_with("-ERR AUTH <password> called without any password configured")
    );
    // Without BLOCK (a stream may be named `block`), XREAD is an ordinary read.
    assert_eq!(p.cmd_str(&["XREAD", "STREAMS", "block", "0"]), "*-1\r\n");

    // RESP3: the client's protocol reaches the shard over a RESP3 connection.
    assert!(p.cmd_str(&["HELLO", "3"]).starts_with("%7\r\n"));
    p.cmd_str(&["HSET", "h", "f", "v"]);
    assert_eq!(p.cmd_str(&["HGETALL", "h"]), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(p.cmd_str(&["GET", "nope"]), "_\r\n");
    assert_eq!(p.cmd_str(&["HELLO", "2"]).chars().next(), Some('*'));
    assert_eq!(p.cmd_str(&["GET", "nope"]), "$-1\r\n");

    // The proxy is the one node of the cluster it shows: cluster clients work through it.
    let slots = p.cmd_str(&["CLUSTER", "SLOTS"]);
    assert!(
        slots.starts_with(&format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:{}\r\n",
            db.proxy.port
        )),
        "{slots}"
    );
    assert_eq!(p.cmd_str(&["CLUSTER", "KEYSLOT", "foo"]), ":12182\r\n");
    let myid = p.cmd_str(&["CLUSTER", "MYID"]);
    let shard_id = p.cmd_str(&["CLUSTER", "MYSHARDID"]);
    assert!(myid.starts_with("$40\r\n") && shard_id.starts_with("$40\r\n"));
    assert_ne!(myid, shard_id);
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", db.proxy.port)])
            .unwrap();
    let mut cc = client.get_connection().unwrap();
    for i in 0..100 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k:{i}"))
            .query(&mut cc)
            .unwrap();
        assert_eq!(v, i);
    }

    assert_eq!(p.cmd_str(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(p.cmd_str(&["DBSIZE"]), ":0\r\n");
}

/// One key on each shard of a 3-shard proxied database, in shard order.
pub(crate) fn key_per_shard(p: &mut RawConn) -> Vec<String> {
    [0..=5460, 5461..=10922, 10923..=16383]
        .into_iter()
        .map(|range| key_in(p, range))
        .collect()
}

/// What `script` reads through the proxy at `port` with `keys` (one per shard), from an empty
/// database, must be what it reads from a new redis-server and from one new shard process
/// alone (so that a difference is known to be the proxy's).
pub(crate) fn same_frames_as_redis(
    port: u16,
    keys: &[String],
    script: fn(u16, &[String]) -> Vec<String>,
) {
    let redis = TestServer::start_redis();
    let want = script(redis.port, keys);
    let alone = TestServer::start(&[]);
    assert_eq!(script(alone.port, keys), want, "a shard alone");
    // Empty, as the two servers just started are.
    assert_eq!(RawConn::connect(port).cmd_str(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(script(port, keys), want, "through the proxy");
}

/// A key of the proxied database whose slot is in `range` (the shards' ranges are even).
fn key_in(p: &mut crate::support::RawConn, range: std::ops::RangeInclusive<i64>) -> String {
    (0..)
        .map(|i| format!("key{i}"))
        .find(|k| range.contains(&int(&p.cmd_str(&["CLUSTER", "KEYSLOT", k]))))
        .unwrap()
}

/// Blocking commands and WATCH go over a private connection of the client's: nothing shared
/// waits behind them, replies stay in order, and a transaction runs where its keys are watched.
#[test]
fn proxy_pins_blocking_commands_and_watch() {
    // One worker thread: every client shares its shard connections.
    let db = proxied_db(3, false, "none", 1);
    let mut a = db.proxy.raw();
    let mut b = db.proxy.raw();
    let q = key_in(&mut b, 0..=5460);
    let same_shard = key_in(&mut b, 0..=5460);

    // A blocked BLPOP, with a command pipelined behind it.
    a.send_cmd(&[b"BLPOP", q.as_bytes(), b"0"]);
    a.send_cmd(&[b"PING"]);
    std::thread::sleep(Duration::from_millis(100));
    // Other clients, on the same shard too, are served meanwhile.
    for i in 0..50 {
        let k = format!("{same_shard}{{{q}}}{i}");
        assert_eq!(b.cmd_str(&["SET", &k, "v"]), "+OK\r\n");
    }
    assert_eq!(b.cmd_str(&["GET", &same_shard]), "$-1\r\n");
    assert_eq!(b.cmd_str(&["RPUSH", &q, "hello"]), ":1\r\n");
    assert_eq!(
        a.read_reply(),
        format!("*2\r\n${}\r\n{q}\r\n$5\r\nhello\r\n", q.len()).as_bytes()
    );
    assert_eq!(a.read_reply(), b"+PONG\r\n");
    // A timeout answers as Redis does; so do the other blocking commands and XREAD BLOCK.
    assert_eq!(a.cmd_str(&["BLPOP", &q, "0.05"]), "*-1\r\n");
    assert_eq!(a.cmd_str(&["BZPOPMIN", "z", "0.05"]), "*-1\r\n");
    a.send_cmd(&[
        b"XREAD", b"COUNT", b"1", b"BLOCK", b"0", b"STREAMS", b"s", b"$",
    ]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(b.cmd_str(&["XADD", "s", "*", "f", "v"]).starts_with('$'));
    let read = String::from_utf8(a.read_reply()).unwrap();
    assert!(
        read.starts_with("*1\r\n") && read.contains("\r\nf\r\n"),
        "{read}"
    );
    assert!(
        a.cmd_str(&["BLPOP", &q, &same_shard, "x", "0"])
            .starts_with("-CROSSSLOT")
    );

    // A client that leaves while blocked takes nothing: its private connection is closed.
    let mut gone = db.proxy.raw();
    gone.send_cmd(&[b"BLPOP", b"q2", b"0"]);
    std::thread::sleep(Duration::from_millis(100));
    drop(gone);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.cmd_str(&["RPUSH", "q2", "x"]), ":1\r\n");
    assert_eq!(b.cmd_str(&["LLEN", "q2"]), ":1\r\n");
    // One that leaves in the same breath as its command: the proxy goes on serving.
    // (16384 bytes, the proxy's first read, so it reads on and sees the end in the same turn.)
    let mut burst = Vec::new();
    burst.extend_from_slice(b"*2\r\n$4\r\nECHO\r\n$16330\r\n");
    burst.extend_from_slice(&[b'x'; 16330]);
    burst.extend_from_slice(b"\r\n*3\r\n$5\r\nBLPOP\r\n$2\r\nq3\r\n$1\r\n0\r\n");
    assert_eq!(burst.len(), 16384);
    for _ in 0..20 {
        let mut brief = db.proxy.raw();
        brief.send(&burst);
        brief.stream.shutdown(std::net::Shutdown::Both).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.cmd_str(&["PING"]), "+PONG\r\n");

    // WATCH: a change by another client aborts EXEC; none lets it run.
    let w = q.clone();
    assert_eq!(a.cmd_str(&["WATCH", &w]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["SET", &w, "1"]), "+QUEUED\r\n");
    assert_eq!(b.cmd_str(&["SET", &w, "2"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["EXEC"]), "*-1\r\n");
    assert_eq!(a.cmd_str(&["GET", &w]), "$1\r\n2\r\n");
    assert_eq!(a.cmd_str(&["WATCH", &w]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["SET", &w, "3"]), "+QUEUED\r\n");
    assert_eq!(a.cmd_str(&["EXEC"]), "*1\r\n+OK\r\n");
    // UNWATCH and DISCARD end the watch; EXEC of an empty transaction still checks it.
    assert_eq!(a.cmd_str(&["WATCH", &w]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["UNWATCH"]), "+OK\r\n");
    assert_eq!(b.cmd_str(&["SET", &w, "4"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["SET", &w, "5"]), "+QUEUED\r\n");
    assert_eq!(a.cmd_str(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(a.cmd_str(&["WATCH", &w]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["DISCARD"]), "+OK\r\n");
    assert_eq!(b.cmd_str(&["SET", &w, "6"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["EXEC"]), "*0\r\n");
    assert_eq!(a.cmd_str(&["WATCH", &w]), "+OK\r\n");
    assert_eq!(b.cmd_str(&["SET", &w, "7"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["EXEC"]), "*-1\r\n");
    assert_eq!(a.cmd_str(&["UNWATCH"]), "+OK\r\n");
    // Watched keys and the transaction on another shard: refused, nothing runs.
    let far = key_in(&mut b, 10922..=16383);
    assert_eq!(a.cmd_str(&["WATCH", &w]), "+OK\r\n");
    assert!(a.cmd_str(&["WATCH", &far]).starts_with("-CROSSSLOT"));
    assert_eq!(a.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["SET", &far, "x"]), "+QUEUED\r\n");
    assert!(a.cmd_str(&["EXEC"]).starts_with("-CROSSSLOT"));
    assert_eq!(a.cmd_str(&["GET", &far]), "$-1\r\n");
    // After EXEC the watch is over: another shard's keys may be watched.
    assert_eq!(a.cmd_str(&["WATCH", &far]), "+OK\r\n");
    assert_eq!(a.cmd_str(&["UNWATCH"]), "+OK\r\n");
}

/// One subscriber and one publisher through `port`: every frame either reads, in order.
/// `c` are channels (through the proxy, on three different shards).
fn pubsub_script(port: u16, c: &[String]) -> Vec<String> {
    let mut s = RawConn::connect(port);
    let mut p = RawConn::connect(port);
    let mut got = Vec::new();
    let read = |conn: &mut RawConn, n: usize, got: &mut Vec<String>| {
        for _ in 0..n {
            got.push(String::from_utf8_lossy(&conn.read_reply()).into_owned());
        }
    };
    let (c1, c2, c3) = (c[0].as_str(), c[1].as_str(), c[2].as_str());
    s.send_cmd(&[b"SUBSCRIBE", c1.as_bytes(), c2.as_bytes(), c3.as_bytes()]);
    read(&mut s, 3, &mut got);
    for cmd in [
        &["PSUBSCRIBE", "n*"][..],
        &["SUBSCRIBE", c1],
        &["SUBSCRIBE", "nc"],
    ] {
        got.push(s.cmd_str(cmd));
    }
    for (channel, frames) in [
        (c1, 1),
        (c3, 1),
        ("nc", 2),
        ("n1", 1),
        ("n2", 1),
        ("other", 0),
    ] {
        got.push(p.cmd_str(&["PUBLISH", channel, "hello"]));
        read(&mut s, frames, &mut got);
    }
    // RESP2 subscribed mode: only (un)subscribing, PING, QUIT and RESET.
    for cmd in [&["GET", "k"][..], &["PING"], &["PING", "hi"]] {
        got.push(s.cmd_str(cmd));
    }
    for cmd in [
        &["PUBSUB", "NUMSUB", c1, c2, "zz"][..],
        &["PUBSUB", "NUMPAT"],
    ] {
        got.push(p.cmd_str(cmd));
    }
    s.send_cmd(&[b"UNSUBSCRIBE", c1.as_bytes(), c2.as_bytes()]);
    read(&mut s, 2, &mut got);
    got.push(p.cmd_str(&["PUBLISH", c1, "gone"]));
    got.push(s.cmd_str(&["PUNSUBSCRIBE"]));
    got.push(p.cmd_str(&["PUBLISH", "n1", "gone"]));
    s.send_cmd(&[b"UNSUBSCRIBE", c3.as_bytes(), b"nc", b"never"]);
    read(&mut s, 3, &mut got);
    got.push(s.cmd_str(&["UNSUBSCRIBE"]));
    // Out of subscribed mode.
    got.push(s.cmd_str(&["GET", "k"]));
    // Shard channels: one slot per command.
    s.send_cmd(&[b"SSUBSCRIBE", b"{t}a", b"{t}b"]);
    read(&mut s, 2, &mut got);
    got.push(p.cmd_str(&["SPUBLISH", "{t}a", "hi"]));
    read(&mut s, 1, &mut got);
    got.push(p.cmd_str(&["PUBSUB", "SHARDNUMSUB", "{t}a", "{t}c"]));
    got.push(s.cmd_str(&["SUBSCRIBE", c2]));
    s.send_cmd(&[b"SUNSUBSCRIBE", b"{t}b", b"{t}a"]);
    read(&mut s, 2, &mut got);
    got.push(s.cmd_str(&["RESET"]));
    got.push(p.cmd_str(&["PUBLISH", c2, "after reset"]));
    got.push(s.cmd_str(&["GET", "k"]));
    // RESP3: pushes, and any command while subscribed.
    let mut r = RawConn::connect(port);
    r.cmd_str(&["HELLO", "3"]);
    got.push(r.cmd_str(&["SUBSCRIBE", c3]));
    got.push(r.cmd_str(&["GET", "k"]));
    got.push(p.cmd_str(&["PUBLISH", c3, "pushed"]));
    read(&mut r, 1, &mut got);
    got.push(r.cmd_str(&["UNSUBSCRIBE"]));
    got.push(r.cmd_str(&["PING"]));
    got
}

/// SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE through the proxy: the same frames as from one
/// redis-server, with channels on different shards; a lost shard connection disconnects
/// the subscriber.
#[test]
fn proxy_serves_pub_sub() {
    let db = proxied_db(3, false, "none", 2);
    let mut p = db.proxy.raw();
    let channels = key_per_shard(&mut p);
    let redis = TestServer::start_redis();
    let want = pubsub_script(redis.port, &channels);
    let got = pubsub_script(db.proxy.port, &channels);
    assert_eq!(got, want);

    // A pattern hears every shard's channels; each PUBLISH reaches it once.
    let mut s = db.proxy.raw();
    assert_eq!(
        s.cmd_str(&["PSUBSCRIBE", "all.*"]),
        "*3\r\n$10\r\npsubscribe\r\n$5\r\nall.*\r\n:1\r\n"
    );
    let mut slots = BTreeSet::new();
    for i in 0..30 {
        let channel = format!("all.{i}");
        slots.insert(int(&p.cmd_str(&["CLUSTER", "KEYSLOT", &channel])) * 3 / 16384);
        assert_eq!(p.cmd_str(&["PUBLISH", &channel, "m"]), ":1\r\n");
        let frame = s.read_reply();
        assert_eq!(strings(&frame), ["pmessage", "all.*", &channel, "m"]);
    }
    assert_eq!(slots.len(), 3, "the channels cover every shard");
    assert_eq!(p.cmd_str(&["PUBSUB", "NUMPAT"]), ":1\r\n");
    // Shard channels of different slots in one command.
    assert!(
        s.cmd_str(&["SSUBSCRIBE", &channels[0], &channels[1]])
            .starts_with("-CROSSSLOT")
    );
    // Channels of every shard are listed.
    let mut t = db.proxy.raw();
    t.send_cmd(&[
        b"SUBSCRIBE",
        channels[0].as_bytes(),
        channels[1].as_bytes(),
        channels[2].as_bytes(),
    ]);
    for _ in 0..3 {
        t.read_reply();
    }
    let listed: BTreeSet<String> = strings(&p.cmd(&[b"PUBSUB", b"CHANNELS"]))
        .into_iter()
        .collect();
    assert_eq!(listed, channels.iter().cloned().collect());
    // The shard of a subscription drops the proxy's connection: the subscriber is
    // disconnected (its library subscribes again); others are not.
    let mut shard = RawConn::connect(db.primaries[0]);
    assert!(int(&shard.cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"])) >= 1);
    wait_for(
        Duration::from_secs(5),
        "the subscriber to be disconnected",
        || t.is_closed(),
    );
    assert_eq!(p.cmd_str(&["PING"]), "+PONG\r\n");
    // `s` lost its pattern on that shard too.
    assert!(s.is_closed());
    // A subscriber that leaves takes its subscriptions along.
    drop(s);
    wait_for(Duration::from_secs(5), "the subscriptions to end", || {
        p.cmd_str(&["PUBSUB", "NUMPAT"]) == ":0\r\n"
    });
    assert_eq!(p.cmd_str(&["PUBLISH", &channels[1], "m"]), ":0\r\n");

    // One command may name any number of channels (on every shard): each is confirmed with
    // the running count, and UNSUBSCRIBE without arguments ends them all.
    let mut many = db.proxy.raw();
    let names: Vec<String> = (0..20000).map(|i| format!("many:{i}")).collect();
    let mut cmd: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    cmd.extend(names.iter().map(|n| n.as_bytes()));
    many.send_cmd(&cmd);
    for i in 1..=names.len() {
        let frame = many.read_reply();
        assert!(frame.ends_with(format!(":{i}\r\n").as_bytes()), "{i}");
    }
    assert_eq!(p.cmd_str(&["PUBLISH", "many:777", "m"]), ":1\r\n");
    assert_eq!(strings(&many.read_reply()), ["message", "many:777", "m"]);
    many.send_cmd(&[b"UNSUBSCRIBE"]);
    for i in (0..names.len()).rev() {
        let frame = many.read_reply();
        assert!(frame.ends_with(format!(":{i}\r\n").as_bytes()), "{i}");
    }
    assert_eq!(many.cmd_str(&["PING"]), "+PONG\r\n");
    assert_eq!(p.cmd_str(&["PUBLISH", "many:777", "m"]), ":0\r\n");
}

/// A RESP3 tracking client `t` and a writer `w` through `port`, keys `k` on three different
/// shards through the proxy: every frame `t` reads, in order (invalidations of keys on different
/// shards, which may come in either order through the proxy, sorted within one write).
fn tracking_script(port: u16, k: &[String]) -> Vec<String> {
    let mut t = RawConn::connect(port);
    let mut w = RawConn::connect(port);
    let mut got = Vec::new();
    let read = |t: &mut RawConn, n: usize, got: &mut Vec<String>| {
        let mut frames: Vec<String> = (0..n)
            .map(|_| String::from_utf8_lossy(&t.read_reply()).into_owned())
            .collect();
        frames.sort();
        got.extend(frames);
    };
    let (k1, k2, k3) = (k[0].as_str(), k[1].as_str(), k[2].as_str());
    t.cmd_str(&["HELLO", "3"]);
    for cmd in [
        &["CLIENT", "TRACKINGINFO"][..],
        &["CLIENT", "GETREDIR"],
        &["CLIENT", "CACHING", "YES"],
        &["CLIENT", "TRACKING", "ON"],
        &["CLIENT", "TRACKINGINFO"],
        &["CLIENT", "GETREDIR"],
        &["CLIENT", "CACHING", "YES"],
        &["GET", k1],
        &["GET", k2],
        &["MGET", k3, "nothere"],
    ] {
        got.push(t.cmd_str(cmd));
    }
    // Each write to a key t read invalidates it once.
    got.push(w.cmd_str(&["SET", k1, "a"]));
    read(&mut t, 1, &mut got);
    got.push(w.cmd_str(&["MSET", k2, "b", k3, "c"]));
    read(&mut t, 2, &mut got);
    got.push(w.cmd_str(&["SET", k1, "again"]));
    // Not read since: nothing comes before the reply.
    got.push(t.cmd_str(&["PING"]));
    // t's own write: the reply, then the invalidation.
    got.push(t.cmd_str(&["GET", k2]));
    got.push(t.cmd_str(&["SET", k2, "mine"]));
    read(&mut t, 1, &mut got);
    // OPTIN: only what follows CLIENT CACHING YES is tracked, in a transaction too.
    for cmd in [
        &["CLIENT", "TRACKING", "ON", "OPTOUT"][..],
        &["CLIENT", "TRACKING", "OFF"],
        &["CLIENT", "TRACKING", "ON", "OPTIN"],
        &["GET", k1],
        &["CLIENT", "CACHING", "NO"],
        &["CLIENT", "CACHING", "YES"],
        &["CLIENT", "TRACKINGINFO"],
        &["GET", k2],
        &["GET", k3],
    ] {
        got.push(t.cmd_str(cmd));
    }
    got.push(w.cmd_str(&["MSET", k1, "d", k3, "e"]));
    got.push(w.cmd_str(&["SET", k2, "f"]));
    read(&mut t, 1, &mut got);
    for cmd in [
        &["CLIENT", "CACHING", "YES"][..],
        &["MULTI"],
        &["GET", k1],
        &["EXEC"],
        &["CLIENT", "CACHING", "YES"],
        &["MGET", k2, k3],
    ] {
        got.push(t.cmd_str(cmd));
    }
    got.push(w.cmd_str(&["DEL", k1, k2, k3]));
    read(&mut t, 3, &mut got);
    // NOLOOP: t's own writes tell t nothing.
    for cmd in [
        &["CLIENT", "TRACKING", "OFF"][..],
        &["CLIENT", "TRACKING", "ON", "NOLOOP"],
        &["GET", k1],
        &["SET", k1, "own"],
        &["PING"],
    ] {
        got.push(t.cmd_str(cmd));
    }
    // BCAST: every key under a prefix, read or not.
    for cmd in [
        &["CLIENT", "TRACKING", "OFF"][..],
        &[
            "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "b:", "PREFIX", "c:",
        ],
        &["CLIENT", "TRACKING", "ON", "OPTIN"],
        &["CLIENT", "TRACKINGINFO"],
    ] {
        got.push(t.cmd_str(cmd));
    }
    for key in ["b:1", "b:2", "c:3", "b:4", "c:5"] {
        got.push(w.cmd_str(&["SET", key, "x"]));
        read(&mut t, 1, &mut got);
    }
    got.push(w.cmd_str(&["SET", "d:1", "x"]));
    got.push(t.cmd_str(&["PING"]));
    // RESET ends tracking.
    got.push(t.cmd_str(&["RESET"]));
    got.push(w.cmd_str(&["SET", "b:1", "y"]));
    got.push(t.cmd_str(&["CLIENT", "TRACKINGINFO"]));
    got
}

/// CLIENT TRACKING REDIRECT through `port`: invalidations of keys `k` (on three shards through
/// the proxy) reach a subscribed RESP2 target and a RESP3 one, and a target that goes breaks
/// the redirect. Every frame read, with each target's id written `ID`.
fn redirect_script(port: u16, k: &[String]) -> Vec<String> {
    let mut got = Vec::new();
    let id_of = |conn: &mut RawConn| conn.cmd_str(&["CLIENT", "ID"])[1..].trim_end().to_string();
    let mut w = RawConn::connect(port);
    let (k1, k2, k3) = (k[0].as_str(), k[1].as_str(), k[2].as_str());
    // Several pairs: through the proxy, target and tracker are on the same thread or not.
    for _ in 0..4 {
        let mut target = RawConn::connect(port);
        let id = id_of(&mut target);
        let mut t = RawConn::connect(port);
        let read = |conn: &mut RawConn, n: usize, got: &mut Vec<String>| {
            let mut frames: Vec<String> = (0..n)
                .map(|_| {
                    String::from_utf8_lossy(&conn.read_reply())
                        .replace(&format!(":{id}\r\n"), ":ID\r\n")
                })
                .collect();
            frames.sort();
            got.extend(frames);
        };
        got.push(target.cmd_str(&["SUBSCRIBE", "__redis__:invalidate"]));
        for cmd in [
            &["CLIENT", "TRACKING", "ON", "REDIRECT", &id][..],
            &["CLIENT", "GETREDIR"],
            &["CLIENT", "TRACKINGINFO"],
            &["GET", k1],
            &["GET", k2],
            &["MGET", k3, k1],
        ] {
            got.push(t.cmd_str(cmd).replace(&format!(":{id}\r\n"), ":ID\r\n"));
        }
        got.push(w.cmd_str(&["SET", k1, "a"]));
        read(&mut target, 1, &mut got);
        got.push(w.cmd_str(&["MSET", k2, "b", k3, "c"]));
        read(&mut target, 2, &mut got);
        for cmd in [
            &["CLIENT", "TRACKING", "ON", "REDIRECT", &id][..],
            &["CLIENT", "TRACKING", "OFF"],
            &["GET", k1],
            &["CLIENT", "GETREDIR"],
        ] {
            got.push(t.cmd_str(cmd).replace(&format!(":{id}\r\n"), ":ID\r\n"));
        }
        got.push(w.cmd_str(&["SET", k1, "b"]));
        got.push(target.cmd_str(&["PING"]));
    }
    // A RESP3 target of a BCAST tracker.
    let mut target = RawConn::connect(port);
    target.cmd_str(&["HELLO", "3"]);
    let id = id_of(&mut target);
    let mut t = RawConn::connect(port);
    let on = [
        "CLIENT", "TRACKING", "ON", "REDIRECT", &id, "BCAST", "PREFIX", "p:",
    ];
    got.push(t.cmd_str(&on));
    got.push(
        t.cmd_str(&["CLIENT", "TRACKINGINFO"])
            .replace(&format!(":{id}\r\n"), ":ID\r\n"),
    );
    for key in ["p:1", "p:2", "p:3"] {
        got.push(w.cmd_str(&["SET", key, "x"]));
        got.push(String::from_utf8_lossy(&target.read_reply()).into_owned());
    }
    // The target goes: the (RESP3) tracker hears it once, at the next invalidation.
    let mut t3 = RawConn::connect(port);
    t3.cmd_str(&["HELLO", "3"]);
    got.push(t3.cmd_str(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id]));
    got.push(t3.cmd_str(&["GET", k1]));
    drop(target);
    std::thread::sleep(Duration::from_millis(300));
    got.push(w.cmd_str(&["SET", k1, "c"]));
    got.push(String::from_utf8_lossy(&t3.read_reply()).replace(&format!(":{id}\r\n"), ":ID\r\n"));
    got.push(
        t3.cmd_str(&["CLIENT", "TRACKINGINFO"])
            .replace(&format!(":{id}\r\n"), ":ID\r\n"),
    );
    got.push(w.cmd_str(&["SET", "p:1", "y"]));
    got.push(t3.cmd_str(&["PING"]));
    got.push(t3.cmd_str(&["CLIENT", "TRACKING", "ON", "REDIRECT", "999999"]));
    got
}

/// CLIENT TRACKING through the proxy: the same frames as from one redis-server, for keys on
/// three shards; losing a tracking connection disconnects the client.
#[test]
fn proxy_tracks_keys_for_client_side_caching() {
    let db = proxied_db(3, false, "none", 2);
    let mut p = db.proxy.raw();
    let keys = key_per_shard(&mut p);
    same_frames_as_redis(db.proxy.port, &keys, tracking_script);
    same_frames_as_redis(db.proxy.port, &keys, redirect_script);

    // Changing REDIRECT takes tracking off first through the proxy.
    let mut t = db.proxy.raw();
    let id = t.cmd_str(&["CLIENT", "ID"])[1..].trim_end().to_string();
    assert_eq!(t.cmd_str(&["CLIENT", "TRACKING", "ON"]), "+OK\r\n");
    assert!(
        t.cmd_str(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])
            .starts_with("-ERR CLIENT TRACKING through the proxy: turn tracking OFF")
    );
    assert_eq!(t.cmd_str(&["CLIENT", "TRACKING", "OFF"]), "+OK\r\n");
    assert_eq!(t.cmd_str(&["CLIENT", "TRACKING", "ON", "BCAST"]), "+OK\r\n");
    let me = client_lines(&t.cmd(&[b"CLIENT", b"INFO"]));
    assert_eq!(
        (me[0]["flags"].as_str(), me[0]["redir"].as_str()),
        ("tB", "0")
    );
    // A flush invalidates everything, once per shard.
    let mut r = db.proxy.raw();
    r.cmd_str(&["HELLO", "3"]);
    assert_eq!(r.cmd_str(&["CLIENT", "TRACKING", "ON"]), "+OK\r\n");
    assert_eq!(p.cmd_str(&["FLUSHALL"]), "+OK\r\n");
    for _ in 0..3 {
        assert_eq!(r.read_reply(), b">2\r\n$10\r\ninvalidate\r\n_\r\n");
    }
    // The shard forgets what a lost connection read: the client is disconnected, so that its
    // library drops its cache. Other clients stay.
    assert_eq!(r.cmd_str(&["GET", &keys[0]]), "_\r\n");
    let mut shard = RawConn::connect(db.primaries[0]);
    let tracking: Vec<String> = client_lines(&shard.cmd(&[b"CLIENT", b"LIST"]))
        .into_iter()
        .filter(|c| c["flags"].contains('t'))
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(tracking.len(), 2, "t and r track on the first shard");
    for id in &tracking {
        assert_eq!(shard.cmd_str(&["CLIENT", "KILL", "ID", id]), ":1\r\n");
    }
    wait_for(
        Duration::from_secs(5),
        "the tracking clients to be disconnected",
        || r.is_closed() && t.is_closed(),
    );
    assert_eq!(p.cmd_str(&["PING"]), "+PONG\r\n");
}

/// The `field=value` pairs of each line of a CLIENT LIST / CLIENT INFO reply.
fn client_lines(reply: &[u8]) -> Vec<HashMap<String, String>> {
    let text = match redis::parse_redis_value(reply).unwrap() {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        other => panic!("{other:?}"),
    };
    text.lines()
        .map(|l| {
            l.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// MONITOR through the proxy shows what every shard runs until RESET; it cannot be queued.
#[test]
fn proxy_monitors_every_shard() {
    let db = proxied_db(3, false, "none", 2);
    let mut p = db.proxy.raw();
    let keys = key_per_shard(&mut p);
    let mut m = db.proxy.raw();
    assert_eq!(m.cmd_str(&["MONITOR"]), "+OK\r\n");
    for k in &keys {
        assert_eq!(p.cmd_str(&["SET", k, "v"]), "+OK\r\n");
    }
    // Each shard's feed, in Redis's format: `+<time> [0 <addr>] "SET" "<key>" "v"`.
    let mut feed = Vec::new();
    while !keys.iter().all(|k| {
        feed.iter()
            .any(|l: &String| l.ends_with(&format!("] \"SET\" \"{k}\" \"v\"\r\n")))
    }) {
        assert!(feed.len() < 100, "{feed:?}");
        let line = String::from_utf8(m.read_reply()).unwrap();
        assert!(line.starts_with('+') && line.contains(" [0 "), "{line:?}");
        feed.push(line);
    }
    let list = client_lines(&p.cmd(&[b"CLIENT", b"LIST"]));
    assert_eq!(list.iter().filter(|c| c["flags"] == "O").count(), 1);

    // RESET ends the feed: what follows is the client's own replies.
    m.send_cmd(&[b"RESET"]);
    while m.read_reply() != b"+RESET\r\n" {}
    assert_eq!(p.cmd_str(&["SET", &keys[0], "w"]), "+OK\r\n");
    assert_eq!(m.cmd_str(&["PING"]), "+PONG\r\n");
    let list = client_lines(&p.cmd(&[b"CLIENT", b"LIST"]));
    assert_eq!(list.iter().filter(|c| c["flags"] == "O").count(), 0);

    // (redis-server queues it and then never answers EXEC.)
    assert_eq!(m.cmd_str(&["MULTI"]), "+OK\r\n");
    assert!(
        m.cmd_str(&["MONITOR"])
            .starts_with("-ERR MONITOR cannot be part of a transaction")
    );
    assert!(m.cmd_str(&["EXEC"]).starts_with("-EXECABORT"));
}

/// CLIENT LIST, INFO and KILL see and reach the clients of every worker thread.
#[test]
fn proxy_lists_and_kills_clients() {
    let db = proxied_db(3, false, "none", 2);
    let mut p = db.proxy.raw();
    let mut others: Vec<RawConn> = (0..8).map(|_| db.proxy.raw()).collect();
    let ids: Vec<String> = others
        .iter_mut()
        .map(|c| {
            c.cmd_str(&["CLIENT", "ID"])
                .trim_start_matches(':')
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(
        others[0].cmd_str(&["CLIENT", "SETNAME", "alpha"]),
        "+OK\r\n"
    );
    assert_eq!(
        others[1].cmd_str(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
        "+OK\r\n"
    );
    assert!(
        others[1]
            .cmd_str(&["CLIENT", "SETINFO", "LIB-VER", "a b"])
            .starts_with("-ERR LIB-VER cannot contain spaces")
    );
    assert_eq!(
        others[2].cmd_str(&["SUBSCRIBE", "news"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(others[3].cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(others[3].cmd_str(&["SET", "k", "v"]), "+QUEUED\r\n");

    // Every client of both workers, once each, as Redis writes them.
    let lines = client_lines(&p.cmd(&[b"CLIENT", b"LIST"]));
    assert_eq!(lines.len(), 9, "{lines:?}");
    let by_id: HashMap<&str, &HashMap<String, String>> =
        lines.iter().map(|l| (l["id"].as_str(), l)).collect();
    for id in &ids {
        let l = by_id[id.as_str()];
        assert_eq!(l["laddr"], format!("127.0.0.1:{}", db.proxy.port));
        assert!(l["addr"].starts_with("127.0.0.1:"));
        assert_eq!(l["db"], "0");
        assert_eq!(l["user"], "default");
    }
    assert_eq!(by_id[ids[0].as_str()]["name"], "alpha");
    assert_eq!(by_id[ids[0].as_str()]["cmd"], "client|setname");
    assert_eq!(by_id[ids[1].as_str()]["lib-name"], "redis-py");
    assert_eq!(by_id[ids[2].as_str()]["flags"], "P");
    assert_eq!(by_id[ids[2].as_str()]["sub"], "1");
    assert_eq!(by_id[ids[3].as_str()]["flags"], "x");
    assert_eq!(by_id[ids[3].as_str()]["multi"], "1");
    let pubsub = client_lines(&p.cmd(&[b"CLIENT", b"LIST", b"TYPE", b"pubsub"]));
    assert_eq!(pubsub.len(), 1);
    assert_eq!(pubsub[0]["id"], ids[2]);
    let two = client_lines(&p.cmd(&[
        b"CLIENT",
        b"LIST",
        b"ID",
        ids[4].as_bytes(),
        ids[5].as_bytes(),
    ]));
    assert_eq!(two.len(), 2);
    assert!(
        p.cmd_str(&["CLIENT", "LIST", "TYPE", "nope"])
            .starts_with("-ERR Unknown client type 'nope'")
    );
    let me = client_lines(&p.cmd(&[b"CLIENT", b"INFO"]));
    assert_eq!(me.len(), 1);
    assert_eq!(me[0]["cmd"], "client|info");

    // KILL by id, by address (the old form), by type; the asker only with SKIPME no.
    assert_eq!(p.cmd_str(&["CLIENT", "KILL", "ID", &ids[4]]), ":1\r\n");
    assert!(others[4].is_closed());
    let addr = by_id[ids[5].as_str()]["addr"].clone();
    assert_eq!(p.cmd_str(&["CLIENT", "KILL", &addr]), "+OK\r\n");
    assert!(others[5].is_closed());
    assert_eq!(
        p.cmd_str(&["CLIENT", "KILL", &addr]),
        "-ERR No such client\r\n"
    );
    assert_eq!(p.cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"]), ":1\r\n");
    assert!(others[2].is_closed());
    assert_eq!(
        p.cmd_str(&["CLIENT", "KILL", "USER", "nobody"]),
        "-ERR No such user 'nobody'\r\n"
    );
    assert_eq!(
        p.cmd_str(&["CLIENT", "KILL", "ID", "0"]),
        "-ERR client-id should be greater than 0\r\n"
    );
    let my_id = p
        .cmd_str(&["CLIENT", "ID"])
        .trim_start_matches(':')
        .trim()
        .to_string();
    assert_eq!(p.cmd_str(&["CLIENT", "KILL", "ID", &my_id]), ":0\r\n");
    assert!(
        p.cmd_str(&["CLIENT", "NO-TOUCH", "ON"])
            .starts_with("-ERR CLIENT NO-TOUCH is not available through the proxy")
    );
    assert_eq!(
        p.cmd_str(&["CLIENT", "KILL", "ID", &my_id, "SKIPME", "no"]),
        ":1\r\n"
    );
    assert!(p.is_closed());
    let mut q = db.proxy.raw();
    assert_eq!(client_lines(&q.cmd(&[b"CLIENT", b"LIST"])).len(), 6);
}

#[test]
fn proxy_replies_as_redis() {
    let db = proxied_db(3, false, "none", 1);
    let redis = TestServer::start_redis();
    let mut p = db.proxy.raw();
    let mut r = redis.raw();
    let script: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["SET", "b", "2", "EX", "100"],
        &["GET", "a"],
        &["GETSET", "a", "3"],
        &["INCRBY", "n", "5"],
        &["INCRBYFLOAT", "f", "1.5"],
        &["APPEND", "a", "xyz"],
        &["STRLEN", "a"],
        &["MGET", "a", "b", "c", "n", "f"],
        &["MSET", "a", "1", "c", "3", "d", "4"],
        &["EXISTS", "a", "b", "c", "d", "e"],
        &["LPUSH", "l", "1", "2", "3"],
        &["LRANGE", "l", "0", "-1"],
        &["RPOPLPUSH", "l", "l"],
        &["SADD", "s", "x", "y"],
        &["SISMEMBER", "s", "x"],
        &["HSET", "h", "f1", "v1", "f2", "v2"],
        &["HGETALL", "h"],
        &["ZADD", "z", "1", "a", "2", "b"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["XADD", "x", "1-1", "f", "v"],
        &["XRANGE", "x", "-", "+"],
        &["TYPE", "z"],
        &["TTL", "b"],
        &["OBJECT", "ENCODING", "l"],
        &["EXPIRE", "a", "100"],
        &["PERSIST", "a"],
        &["GET"],
        &["NOSUCH", "x", "y"],
        &["CONFIG", "NOSUCH"],
        &["SET", "a"],
        &["INCR", "h"],
        &["EVAL", "return {1, 'two', KEYS[1]}", "1", "a"],
        &["EVAL", "return 1", "3", "a"],
        &["DEL", "a", "b", "c", "d", "l", "s", "h", "z", "x", "n", "f"],
        &["DBSIZE"],
        &["PING"],
        &["PING", "hello"],
        &["ECHO", "x"],
        &["MULTI"],
        &["SET", "{x}1", "a"],
        &["LPUSH", "{x}1", "b"],
        &["GET", "{x}1"],
        &["EXEC"],
        &["MULTI"],
        &["NOSUCH"],
        &["EXEC"],
        &["DISCARD"],
        &["MULTI"],
        &["MULTI"],
        &["DISCARD"],
    ];
    let mut diffs = Vec::new();
    for cmd in script {
        let a = p.cmd_str(cmd);
        let b = r.cmd_str(cmd);
        if a != b {
            diffs.push(format!("{cmd:?}: proxy {a:?}, redis {b:?}"));
        }
    }
    crate::support::assert_no_diffs(&diffs);
}

/// SIGKILL of a shard under load through the proxy: commands in flight get errors, never a
/// wrong reply; commands meanwhile fail fast; traffic resumes once the supervisor has
/// restarted the shard, with every acknowledged write there.
#[test]
fn proxy_survives_a_shard_restart() {
    let db = proxied_db(3, false, "aof", 2);
    let port = db.proxy.port;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = RawConn::connect(port);
                // key -> Some(value) once acknowledged, None while a SET's outcome is unknown
                let mut written: HashMap<String, Option<String>> = HashMap::new();
                let (mut ok, mut errors, mut ok_after_error) = (0, 0, 0);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("w:{t}:{}", n % 200);
                    let value = n.to_string();
                    let reply = c.cmd_str(&["SET", &key, &value]);
                    if reply == "+OK\r\n" {
                        written.insert(key.clone(), Some(value));
                        ok += 1;
                        if errors > 0 {
                            ok_after_error += 1;
                        }
                    } else {
                        assert!(
                            reply.starts_with("-ERR proxy: ")
                                || reply.starts_with("-LOADING")
                                || reply.starts_with("-CLUSTERDOWN"),
                            "unexpected reply to SET: {reply:?}"
                        );
                        written.insert(key.clone(), None);
                        errors += 1;
                        continue;
                    }
                    let reply = c.cmd_str(&["GET", &key]);
                    if reply.starts_with('-') {
                        assert!(reply.starts_with("-ERR proxy: "), "{reply:?}");
                        errors += 1;
                    } else if let Some(Some(v)) = written.get(&key) {
                        assert_eq!(reply, format!("${}\r\n{v}\r\n", v.len()), "GET {key}");
                    }
                }
                (ok, errors, ok_after_error, written)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    // Kill the first primary; its supervisor starts it again from its log.
    let victim = db.primaries[0];
    let pidfile = std::fs::read_dir(db.dir.join("m1/shards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("-{victim}")))
        .unwrap()
        .join("server.pid");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let killed = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(Duration::from_secs(30), "the shard to be restarted", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim() != pid)
            && RawConn::connect_timeout(victim).is_some()
    });
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let mut total_errors = 0;
    let mut check = db.proxy.raw();
    for w in workers {
        let (ok, errors, ok_after_error, written) = w.join().unwrap();
        assert!(ok > 100, "{ok} writes");
        total_errors += errors;
        if errors > 0 {
            assert!(ok_after_error > 0, "traffic resumed after the errors");
        }
        // Every acknowledged write is there after the restart.
        for (key, v) in written {
            if let Some(v) = v {
                assert_eq!(
                    check.cmd_str(&["GET", &key]),
                    format!("${}\r\n{v}\r\n", v.len())
                );
            }
        }
    }
    assert!(
        total_errors > 0,
        "the kill was seen ({:?} ago)",
        killed.elapsed()
    );
}
