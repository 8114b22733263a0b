//! CLIENT REPLY, CLIENT UNBLOCK, CLIENT PAUSE / UNPAUSE and WAIT through the proxy (issue 8):
//! the frames a client reads compared with a real redis-server's, and with one shard process
//! alone, so that a difference is known to be the proxy's.

use std::time::{Duration, Instant};

use crate::proxy::{key_per_shard, proxied_db, same_frames_as_redis};
use crate::support::{RawConn, TestServer, wait_for};

/// Sends `cmds` in one write, then `ECHO end`: every frame that comes back before `end`.
fn batch(c: &mut RawConn, cmds: &[&[&str]], got: &mut Vec<String>) {
    let mut out = Vec::new();
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        out.extend_from_slice(&crate::support::encode(&args));
    }
    out.extend_from_slice(&crate::support::encode(&[b"ECHO", b"end"]));
    c.send(&out);
    loop {
        let frame = String::from_utf8_lossy(&c.read_reply()).into_owned();
        if frame == "$3\r\nend\r\n" {
            break;
        }
        got.push(frame);
    }
    got.push("--".into());
}

/// CLIENT REPLY OFF / SKIP / ON through `port`, keys `k` on three shards through the proxy.
fn reply_script(port: u16, k: &[String]) -> Vec<String> {
    let (k1, k2, k3) = (k[0].as_str(), k[1].as_str(), k[2].as_str());
    let mut c = RawConn::connect(port);
    let mut got = Vec::new();
    for cmds in [
        &[
            &["CLIENT", "REPLY", "SKIP"][..],
            &["SET", k1, "1"],
            &["GET", k1],
        ][..],
        &[
            &["CLIENT", "REPLY", "OFF"],
            &["SET", k1, "2"],
            &["CLIENT", "REPLY", "SKIP"],
            &["GET", k1],
            &["CLIENT", "REPLY", "ON"],
            &["GET", k1],
        ],
        // Errors, split and fanned-out commands, a blocking command: all silent.
        &[
            &["CLIENT", "REPLY", "OFF"],
            &["NOSUCH"],
            &["CLIENT", "REPLY", "bad"],
            &["MSET", k1, "a", k2, "b", k3, "c"],
            &["MGET", k1, k2, k3],
            &["DEL", k2, k3],
            &["BLPOP", "nolist", "0.05"],
            &["DBSIZE"],
            &["CLIENT", "REPLY", "ON"],
            &["MGET", k1, k2, k3],
        ],
        &[
            &["CLIENT", "REPLY", "bad"],
            &["CLIENT", "REPLY", "SKIP", "x"],
            &["CLIENT", "REPLY"],
        ],
        &[
            &["CLIENT", "REPLY", "SKIP"],
            &["CLIENT", "REPLY", "SKIP"],
            &["GET", k1],
            &["GET", k1],
        ],
        &[
            &["CLIENT", "REPLY", "SKIP"],
            &["MULTI"],
            &["GET", k1],
            &["EXEC"],
            &["GET", k1],
        ],
        // SKIP applies to the next command only, whatever shards it uses.
        &[
            &["CLIENT", "REPLY", "SKIP"],
            &["MGET", k1, k2, k3],
            &["BLPOP", "nolist", "0.05"],
            &["GET", k1],
        ],
        // RESET ends OFF and answers.
        &[&["CLIENT", "REPLY", "OFF"], &["RESET"], &["GET", k1]],
    ] {
        batch(&mut c, cmds, &mut got);
    }
    // Subscription confirmations and messages are pushes: they come even with replies off.
    let mut w = RawConn::connect(port);
    c.send_cmd(&[b"CLIENT", b"REPLY", b"OFF"]);
    got.push(String::from_utf8_lossy(&c.cmd(&[b"SUBSCRIBE", b"ch"])).into_owned());
    got.push(w.cmd_str(&["PUBLISH", "ch", "m"]));
    got.push(String::from_utf8_lossy(&c.read_reply()).into_owned());
    got.push(String::from_utf8_lossy(&c.cmd(&[b"UNSUBSCRIBE"])).into_owned());
    batch(&mut c, &[&["PING"], &["CLIENT", "REPLY", "ON"]], &mut got);
    let mut r3 = RawConn::connect(port);
    r3.cmd_str(&["HELLO", "3"]);
    r3.send_cmd(&[b"CLIENT", b"REPLY", b"OFF"]);
    got.push(String::from_utf8_lossy(&r3.cmd(&[b"SUBSCRIBE", b"ch3"])).into_owned());
    got.push(w.cmd_str(&["PUBLISH", "ch3", "m3"]));
    got.push(String::from_utf8_lossy(&r3.read_reply()).into_owned());
    batch(&mut r3, &[&["PING"], &["CLIENT", "REPLY", "ON"]], &mut got);
    w.cmd_str(&["DEL", k1]);
    got
}

#[test]
fn proxy_client_reply_as_redis() {
    let db = proxied_db(3, false, "none", 2);
    let mut p = db.proxy.raw();
    let keys = key_per_shard(&mut p);
    same_frames_as_redis(db.proxy.port, &keys, reply_script);
    // QUIT with replies off closes the connection without a word (redis-server 7.0 leaves it
    // open: nothing is left to write, so it never gets to close it).
    let alone = TestServer::start(&[]);
    for port in [alone.port, db.proxy.port] {
        let mut c = RawConn::connect(port);
        c.send_cmd(&[b"CLIENT", b"REPLY", b"OFF"]);
        c.send_cmd(&[b"QUIT"]);
        assert!(c.is_closed());
        assert_eq!(
            c.pending_replies(Duration::from_millis(10)),
            Vec::<Vec<u8>>::new()
        );
    }
}

/// Sends CLIENT UNBLOCK for `id` from `b` until it unblocks something (the blocked command
/// may not have reached its server yet), and returns that reply.
fn unblock(b: &mut RawConn, id: &str, how: &[&str]) -> String {
    let mut args = vec!["CLIENT", "UNBLOCK", id];
    args.extend_from_slice(how);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = b.cmd_str(&args);
        if r != ":0\r\n" || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// CLIENT UNBLOCK through `port` of blocking commands and WAIT, and its errors.
fn unblock_script(port: u16) -> Vec<String> {
    let mut a = RawConn::connect(port);
    let mut b = RawConn::connect(port);
    let mut got = Vec::new();
    let id = a.cmd_str(&["CLIENT", "ID"])[1..].trim_end().to_string();
    a.send_cmd(&[b"BLPOP", b"ublist", b"0"]);
    got.push(unblock(&mut b, &id, &[]));
    got.push(String::from_utf8_lossy(&a.read_reply()).into_owned());
    a.send_cmd(&[b"BRPOP", b"ublist", b"0"]);
    got.push(unblock(&mut b, &id, &["ERROR"]));
    got.push(String::from_utf8_lossy(&a.read_reply()).into_owned());
    a.send_cmd(&[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"ubstream", b"$"]);
    got.push(unblock(&mut b, &id, &["timeout"]));
    got.push(String::from_utf8_lossy(&a.read_reply()).into_owned());
    // WAIT with no replicas waits for ever: TIMEOUT answers the count so far.
    a.send_cmd(&[b"WAIT", b"1", b"0"]);
    std::thread::sleep(Duration::from_millis(200));
    got.push(unblock(&mut b, &id, &[]));
    got.push(String::from_utf8_lossy(&a.read_reply()).into_owned());
    a.send_cmd(&[b"WAIT", b"1", b"0"]);
    std::thread::sleep(Duration::from_millis(200));
    got.push(unblock(&mut b, &id, &["ERROR"]));
    got.push(String::from_utf8_lossy(&a.read_reply()).into_owned());
    // The client goes on; one that is not blocked, or not there, is not unblocked.
    got.push(a.cmd_str(&["LPUSH", "ublist", "x"]));
    for args in [
        &["CLIENT", "UNBLOCK", &id][..],
        &["CLIENT", "UNBLOCK", "999999"],
        &["CLIENT", "UNBLOCK", "-5"],
        &["CLIENT", "UNBLOCK", "x"],
        &["CLIENT", "UNBLOCK", "1", "foo"],
        &["CLIENT", "UNBLOCK", "x", "foo"],
        &["CLIENT", "UNBLOCK", "1", "error", "x"],
    ] {
        got.push(b.cmd_str(args));
    }
    got.push(a.cmd_str(&["DEL", "ublist"]));
    got
}

#[test]
fn proxy_client_unblock_as_redis() {
    let db = proxied_db(3, false, "none", 2);
    let redis = TestServer::start_redis();
    let want = unblock_script(redis.port);
    let alone = TestServer::start(&[]);
    assert_eq!(unblock_script(alone.port), want);
    // Twice, so that the two clients are on one worker thread or on two.
    for _ in 0..2 {
        assert_eq!(unblock_script(db.proxy.port), want);
    }
}

/// CLIENT PAUSE's errors through `port`.
fn pause_errors(port: u16) -> Vec<String> {
    let mut c = RawConn::connect(port);
    [
        &["CLIENT", "PAUSE", "-1"][..],
        &["CLIENT", "PAUSE", "abc"],
        &["CLIENT", "PAUSE", "abc", "foo"],
        &["CLIENT", "PAUSE", "10", "write", "extra"],
        &["CLIENT", "PAUSE", "100000000000000000000"],
        &["CLIENT", "UNPAUSE", "x"],
    ]
    .iter()
    .map(|args| c.cmd_str(args))
    .collect()
}

/// CLIENT PAUSE through the proxy holds every client of the proxy: WRITE holds writes only
/// (and a transaction that writes), ALL everything but the commands that end or observe a
/// pause; the time running out or CLIENT UNPAUSE lets them go, in order.
#[test]
fn proxy_pauses_its_clients() {
    let db = proxied_db(3, false, "none", 2);
    let redis = TestServer::start_redis();
    let want = pause_errors(redis.port);
    assert_eq!(pause_errors(db.proxy.port), want);

    let mut admin = db.proxy.raw();
    // Several clients, so that both worker threads have some.
    let mut clients: Vec<RawConn> = (0..4).map(|_| db.proxy.raw()).collect();
    assert_eq!(
        admin.cmd_str(&["CLIENT", "PAUSE", "400", "WRITE"]),
        "+OK\r\n"
    );
    let started = Instant::now();
    for c in &mut clients {
        assert_eq!(c.cmd_str(&["GET", "pk"]), "$-1\r\n");
        c.send_cmd(&[b"SET", b"pk", b"1"]);
        c.send_cmd(&[b"GET", b"pk"]);
    }
    for c in &mut clients {
        assert!(c.pending_replies(Duration::from_millis(50)).is_empty());
    }
    for c in &mut clients {
        assert_eq!(c.read_reply(), b"+OK\r\n");
        assert_eq!(c.read_reply(), b"$1\r\n1\r\n");
    }
    let held = started.elapsed();
    assert!(held >= Duration::from_millis(350), "held for {held:?}");
    assert!(held < Duration::from_secs(3), "held for {held:?}");

    // A transaction: queueing reads passes, EXEC of one that writes waits.
    let c = &mut clients[0];
    assert_eq!(c.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "pk"]), "+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["EXEC"]), "*1\r\n$1\r\n1\r\n");
    assert_eq!(c.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.cmd_str(&["INCR", "pk"]), "+QUEUED\r\n");
    assert_eq!(
        admin.cmd_str(&["CLIENT", "PAUSE", "60000", "WRITE"]),
        "+OK\r\n"
    );
    c.send_cmd(&[b"EXEC"]);
    c.send_cmd(&[b"EVAL", b"return 1", b"0"]);
    assert!(c.pending_replies(Duration::from_millis(100)).is_empty());
    // A shorter or weaker pause does not change it; UNPAUSE ends it.
    assert_eq!(admin.cmd_str(&["CLIENT", "PAUSE", "10", "ALL"]), "+OK\r\n");
    assert!(c.pending_replies(Duration::from_millis(100)).is_empty());
    assert_eq!(admin.cmd_str(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    assert_eq!(c.read_reply(), b"*1\r\n:2\r\n");
    assert_eq!(c.read_reply(), b":1\r\n");

    // ALL holds reads too; PING and UNPAUSE go through.
    assert_eq!(admin.cmd_str(&["CLIENT", "PAUSE", "60000"]), "+OK\r\n");
    for c in &mut clients {
        c.send_cmd(&[b"GET", b"pk"]);
        assert_eq!(
            db.proxy.raw().cmd_str(&["PING"]),
            "+PONG\r\n",
            "PING is not held"
        );
    }
    // An empty request or an unknown subcommand is not held (nor does it upset the proxy).
    let mut e = db.proxy.raw();
    e.send(b"*0\r\n");
    assert!(
        e.cmd_str(&["CLIENT", "NOSUCH"])
            .starts_with("-ERR unknown subcommand")
    );
    assert_eq!(e.cmd_str(&["PING"]), "+PONG\r\n");
    for c in &mut clients {
        assert!(c.pending_replies(Duration::from_millis(50)).is_empty());
    }
    assert_eq!(admin.cmd_str(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    for c in &mut clients {
        assert_eq!(c.read_reply(), b"$1\r\n2\r\n");
    }
    assert_eq!(admin.cmd_str(&["DEL", "pk"]), ":1\r\n");
}

/// WAIT through the proxy waits on every shard for what the client wrote before it: once it
/// answers, each replica has the client's writes. The reply is the smallest count.
#[test]
fn proxy_wait_reaches_every_shards_replicas() {
    let db = proxied_db(3, true, "none", 2);
    let mut p = db.proxy.raw();
    let keys = key_per_shard(&mut p);
    // Each primary's replica.
    let replicas: Vec<u16> = db
        .primaries
        .iter()
        .map(|&port| {
            let mut shard = RawConn::connect(port);
            let mut replica = None;
            wait_for(Duration::from_secs(30), "the replicas to be online", || {
                let info = shard.cmd_str(&["INFO", "replication"]);
                replica = info
                    .lines()
                    .find(|l| l.starts_with("slave0:") && l.contains("state=online"))
                    .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("port=")))
                    .and_then(|p| p.parse().ok());
                replica.is_some()
            });
            replica.unwrap()
        })
        .collect();
    for round in 0..20 {
        let value = format!("v{round}");
        let mut out = Vec::new();
        for k in &keys {
            out.extend(crate::support::encode(&[
                b"SET",
                k.as_bytes(),
                value.as_bytes(),
            ]));
        }
        out.extend(crate::support::encode(&[b"WAIT", b"1", b"5000"]));
        out.extend(crate::support::encode(&[b"GET", keys[0].as_bytes()]));
        p.send(&out);
        for _ in &keys {
            assert_eq!(p.read_reply(), b"+OK\r\n");
        }
        assert_eq!(p.read_reply(), b":1\r\n");
        assert_eq!(
            p.read_reply(),
            format!("${}\r\n{value}\r\n", value.len()).as_bytes()
        );
        for (k, &port) in keys.iter().zip(&replicas) {
            let mut r = RawConn::connect(port);
            assert_eq!(r.cmd_str(&["READONLY"]), "+OK\r\n");
            assert_eq!(
                r.cmd_str(&["GET", k]),
                format!("${}\r\n{value}\r\n", value.len()),
                "the replica of {k} has the write WAIT counted"
            );
        }
    }
    // One replica per shard: WAIT 2 answers 1 when its time runs out.
    let started = Instant::now();
    assert_eq!(p.cmd_str(&["WAIT", "2", "200"]), ":1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(190));
    // Inside a transaction WAIT does not wait: the replicas that have acknowledged the shard's
    // offset (docs/COMMANDS.md: the shard's, not the client's).
    assert_eq!(p.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(p.cmd_str(&["WAIT", "2", "0"]), "+QUEUED\r\n");
    let exec = p.cmd_str(&["EXEC"]);
    assert!(exec == "*1\r\n:1\r\n" || exec == "*1\r\n:0\r\n", "{exec}");
    assert_eq!(
        p.cmd_str(&["WAIT", "x", "0"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        p.cmd_str(&["WAIT", "1", "-1"]),
        "-ERR timeout is negative\r\n"
    );
}
