//! Streams: node layout and trimming against a real redis-server, blocking reads, and the
//! time-dependent parts of consumer groups (idle times, claiming) that the byte-for-byte
//! differential corpus cannot cover.

use std::time::{Duration, Instant};

use crate::support::{RawConn, TestServer, encode, wait_for};

fn blocked_clients(s: &TestServer) -> usize {
    let info = s.raw().cmd_str(&["INFO", "clients"]);
    let line = info
        .lines()
        .find(|l| l.starts_with("blocked_clients:"))
        .unwrap()
        .to_string();
    line["blocked_clients:".len()..].trim().parse().unwrap()
}

/// A small deterministic generator, so both servers see the same workload.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Appends, deletes and trims with every node limit in play; after each phase `XINFO STREAM`
/// (node count and radix tree size included), ranges and the digest must equal Redis's.
#[test]
fn node_layout_trimming_and_digests_match_redis_server() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let mut conns = [tessera.raw(), redis.raw()];
    let mut rng = Lcg(7);
    let mut script: Vec<Vec<String>> = Vec::new();
    fn add(script: &mut Vec<Vec<String>>, v: &[&str]) {
        script.push(v.iter().map(|s| s.to_string()).collect());
    }
    let sizes = [1usize, 10, 70, 200, 5000];
    for i in 1..700u64 {
        let mut cmd = vec![
            "XADD".to_string(),
            "big".to_string(),
            format!(
                "{}-{}",
                1000 + i * 3,
                [0u64, 1, 70000, 1 << 40][rng.next(4) as usize]
            ),
        ];
        for _ in 0..[1, 1, 2, 3][rng.next(4) as usize] {
            cmd.push(format!("f{}", [0, 0, 1, 2][rng.next(4) as usize]));
            cmd.push(match rng.next(4) {
                0 => "v".to_string(),
                1 => "-7".to_string(),
                2 => rng.next(1 << 40).to_string(),
                _ => "x".repeat(sizes[rng.next(5) as usize]),
            });
        }
        script.push(cmd);
        if i % 100 == 0 {
            add(&mut script, &["XINFO", "STREAM", "big"]);
        }
    }
    for i in (0..300).step_by(7) {
        let (a, b) = (format!("{}-0", 1000 + i * 3), format!("{}-1", 1000 + i * 3));
        add(&mut script, &["XDEL", "big", &a, &b]);
    }
    for step in [
        &["XTRIM", "big", "MAXLEN", "~", "500"][..],
        &["XTRIM", "big", "MINID", "~", "1900"],
        &["XTRIM", "big", "MAXLEN", "~", "100", "LIMIT", "150"],
        &["XTRIM", "big", "MAXLEN", "250"],
        &["XTRIM", "big", "MINID", "2500"],
    ] {
        add(&mut script, step);
        add(&mut script, &["XINFO", "STREAM", "big"]);
        add(&mut script, &["XRANGE", "big", "-", "+", "COUNT", "3"]);
        add(&mut script, &["XREVRANGE", "big", "+", "-", "COUNT", "3"]);
        add(&mut script, &["DEBUG", "DIGEST-VALUE", "big"]);
    }
    for (entries, bytes) in [("7", "300"), ("0", "300"), ("5", "0")] {
        add(
            &mut script,
            &["CONFIG", "SET", "stream-node-max-entries", entries],
        );
        add(
            &mut script,
            &["CONFIG", "SET", "stream-node-max-bytes", bytes],
        );
        let key = format!("s{entries}-{bytes}");
        for i in 1..200 {
            let id = format!("{i}-0");
            let value = "y".repeat(i % 40);
            add(&mut script, &["XADD", &key, &id, "a", &value]);
        }
        add(&mut script, &["XINFO", "STREAM", &key]);
        add(&mut script, &["XTRIM", &key, "MAXLEN", "~", "50"]);
        add(&mut script, &["XINFO", "STREAM", &key]);
    }
    add(&mut script, &["DEBUG", "DIGEST"]);
    for cmd in &script {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        let [t, r] = conns.each_mut().map(|c| c.cmd(&args));
        assert_eq!(
            String::from_utf8_lossy(&t),
            String::from_utf8_lossy(&r),
            "{cmd:?}"
        );
    }
}

#[test]
fn xread_block_dollar_gets_only_entries_added_after_it_blocked() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["XADD", "st", "1-0", "a", "1"]);
    let mut waiter = s.raw();
    waiter.send(&encode(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"other", b"st", b"$", b"$",
    ]));
    wait_for(Duration::from_secs(5), "the reader to block", || {
        blocked_clients(&s) == 1
    });
    assert_eq!(c.cmd_str(&["PING"]), "+PONG\r\n", "nobody else is blocked");
    // A write that adds nothing new does not release the reader.
    c.cmd_str(&["XDEL", "st", "9-0"]);
    assert_eq!(blocked_clients(&s), 1);
    c.cmd_str(&["XADD", "st", "2-0", "b", "2"]);
    assert_eq!(
        waiter.read_reply(),
        b"*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(blocked_clients(&s), 0);
    // With data there, BLOCK answers at once.
    assert_eq!(
        c.cmd_str(&["XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "st", "0"]),
        "*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
}

#[test]
fn xread_block_times_out_with_sub_second_precision() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let start = Instant::now();
    assert_eq!(
        c.cmd_str(&["XREAD", "BLOCK", "150", "STREAMS", "st", "$"]),
        "*-1\r\n"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(900),
        "{waited:?}"
    );
    c.cmd_str(&["HELLO", "3"]);
    assert_eq!(
        c.cmd_str(&["XREAD", "BLOCK", "50", "STREAMS", "st", "$"]),
        "_\r\n"
    );
}

fn xreadgroup_block(c: &mut RawConn, consumer: &str) {
    c.send(&encode(&[
        b"XREADGROUP",
        b"GROUP",
        b"g",
        consumer.as_bytes(),
        b"BLOCK",
        b"0",
        b"STREAMS",
        b"st",
        b">",
    ]));
}

#[test]
fn blocked_group_readers_are_served_in_order_one_entry_each() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["XGROUP", "CREATE", "st", "g", "$", "MKSTREAM"]);
    let mut first = s.raw();
    xreadgroup_block(&mut first, "c1");
    wait_for(Duration::from_secs(5), "c1 to block", || {
        blocked_clients(&s) == 1
    });
    let mut second = s.raw();
    xreadgroup_block(&mut second, "c2");
    wait_for(Duration::from_secs(5), "c2 to block", || {
        blocked_clients(&s) == 2
    });
    c.cmd_str(&["XADD", "st", "1-0", "a", "1"]);
    assert_eq!(
        String::from_utf8(first.read_reply()).unwrap(),
        "*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        blocked_clients(&s),
        1,
        "the entry went to the first reader only"
    );
    // A transaction's XADD wakes the second reader when EXEC runs.
    c.cmd_str(&["MULTI"]);
    c.cmd_str(&["XADD", "st", "2-0", "b", "2"]);
    assert_eq!(blocked_clients(&s), 1);
    c.cmd_str(&["EXEC"]);
    assert!(
        String::from_utf8(second.read_reply())
            .unwrap()
            .contains("2-0")
    );
    let pending = c.cmd_str(&["XPENDING", "st", "g"]);
    assert_eq!(
        pending,
        "*4\r\n:2\r\n$3\r\n1-0\r\n$3\r\n2-0\r\n*2\r\n*2\r\n$2\r\nc1\r\n$1\r\n1\r\n*2\r\n$2\r\nc2\r\n$1\r\n1\r\n"
    );
}

#[test]
fn deleting_the_stream_or_group_releases_group_readers_with_redis_errors() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["XGROUP", "CREATE", "st", "g", "$", "MKSTREAM"]);
    let mut group_reader = s.raw();
    xreadgroup_block(&mut group_reader, "c1");
    let mut plain_reader = s.raw();
    plain_reader.send(&encode(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"st", b"$",
    ]));
    wait_for(Duration::from_secs(5), "both to block", || {
        blocked_clients(&s) == 2
    });
    c.cmd_str(&["DEL", "st"]);
    assert_eq!(
        group_reader.read_reply(),
        b"-UNBLOCKED the stream key no longer exists\r\n"
    );
    assert_eq!(blocked_clients(&s), 1, "a plain XREAD keeps waiting");
    c.cmd_str(&["XADD", "st", "5-0", "a", "1"]);
    assert!(
        String::from_utf8(plain_reader.read_reply())
            .unwrap()
            .contains("5-0")
    );

    c.cmd_str(&["XGROUP", "CREATE", "st", "g", "$"]);
    xreadgroup_block(&mut group_reader, "c1");
    wait_for(Duration::from_secs(5), "the reader to block", || {
        blocked_clients(&s) == 1
    });
    c.cmd_str(&["XGROUP", "DESTROY", "st", "g"]);
    assert_eq!(
        group_reader.read_reply(),
        b"-NOGROUP the consumer group this client was blocked on no longer exists\r\n"
    );
    assert_eq!(blocked_clients(&s), 0);
}

#[test]
fn client_unblock_and_disconnect_release_stream_readers() {
    let s = TestServer::start(&[]);
    let mut reader = s.raw();
    let id = reader.cmd_str(&["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim();
    reader.send(&encode(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"st", b"$",
    ]));
    wait_for(Duration::from_secs(5), "the reader to block", || {
        blocked_clients(&s) == 1
    });
    let mut c = s.raw();
    assert_eq!(c.cmd_str(&["CLIENT", "UNBLOCK", id]), ":1\r\n");
    assert_eq!(reader.read_reply(), b"*-1\r\n");
    reader.send(&encode(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"st", b"$",
    ]));
    wait_for(Duration::from_secs(5), "the reader to block", || {
        blocked_clients(&s) == 1
    });
    assert_eq!(c.cmd_str(&["CLIENT", "UNBLOCK", id, "ERROR"]), ":1\r\n");
    assert_eq!(
        reader.read_reply(),
        b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    );
    reader.send(&encode(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"st", b"$",
    ]));
    wait_for(Duration::from_secs(5), "the reader to block", || {
        blocked_clients(&s) == 1
    });
    drop(reader);
    wait_for(Duration::from_secs(5), "the reader to go", || {
        blocked_clients(&s) == 0
    });
    assert_eq!(c.cmd_str(&["XADD", "st", "1-0", "a", "1"]), "$3\r\n1-0\r\n");
}

/// Parses a flat RESP reply into its integers, in order.
fn integers(reply: &str) -> Vec<i64> {
    reply
        .split("\r\n")
        .filter_map(|l| l.strip_prefix(':'))
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn idle_times_drive_xpending_xclaim_and_xautoclaim() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    for i in 1..=5 {
        c.cmd_str(&["XADD", "st", &format!("{i}-0"), "n", &i.to_string()]);
    }
    c.cmd_str(&["XGROUP", "CREATE", "st", "g", "0"]);
    c.cmd_str(&["XREADGROUP", "GROUP", "g", "alice", "STREAMS", "st", ">"]);
    std::thread::sleep(Duration::from_millis(120));
    // Extended XPENDING reports idle times and delivery counts.
    let rows = c.cmd_str(&["XPENDING", "st", "g", "-", "+", "10", "alice"]);
    let ints = integers(&rows);
    assert_eq!(ints.len(), 10, "{rows}");
    for pair in ints.chunks(2) {
        assert!(pair[0] >= 120 && pair[0] < 5000, "idle {}", pair[0]);
        assert_eq!(pair[1], 1);
    }
    assert_eq!(
        c.cmd_str(&["XPENDING", "st", "g", "IDLE", "60000", "-", "+", "10"]),
        "*0\r\n"
    );
    // XCLAIM honours min-idle-time, moves entries and counts the delivery.
    assert_eq!(
        c.cmd_str(&["XCLAIM", "st", "g", "bob", "60000", "1-0", "JUSTID"]),
        "*0\r\n"
    );
    assert_eq!(
        c.cmd_str(&["XCLAIM", "st", "g", "bob", "100", "1-0", "2-0", "JUSTID"]),
        "*2\r\n$3\r\n1-0\r\n$3\r\n2-0\r\n"
    );
    let rows = c.cmd_str(&["XPENDING", "st", "g", "-", "+", "10", "bob"]);
    let ints = integers(&rows);
    assert!(ints[0] < 100, "claiming resets the idle time: {rows}");
    assert_eq!(ints[1], 1, "JUSTID does not count a delivery");
    // IDLE sets the idle time; RETRYCOUNT the delivery count.
    c.cmd_str(&[
        "XCLAIM",
        "st",
        "g",
        "bob",
        "0",
        "3-0",
        "IDLE",
        "500000",
        "RETRYCOUNT",
        "9",
    ]);
    let row = c.cmd_str(&["XPENDING", "st", "g", "3-0", "3-0", "1"]);
    let ints = integers(&row);
    assert!(ints[0] >= 500000 && ints[0] < 505000, "{row}");
    assert_eq!(ints[1], 9);
    // XAUTOCLAIM walks the PEL from a cursor, COUNT at a time.
    let reply = c.cmd_str(&[
        "XAUTOCLAIM",
        "st",
        "g",
        "carol",
        "100",
        "0",
        "COUNT",
        "2",
        "JUSTID",
    ]);
    assert_eq!(
        reply, "*3\r\n$3\r\n5-0\r\n*2\r\n$3\r\n3-0\r\n$3\r\n4-0\r\n*0\r\n",
        "1-0 and 2-0 are not idle enough; 3-0 and 4-0 are claimed; 5-0 is next"
    );
    let reply = c.cmd_str(&["XAUTOCLAIM", "st", "g", "carol", "0", "5-0"]);
    assert_eq!(
        reply,
        "*3\r\n$3\r\n0-0\r\n*1\r\n*2\r\n$3\r\n5-0\r\n*2\r\n$1\r\nn\r\n$1\r\n5\r\n*0\r\n"
    );
    // XINFO reports consumers with their idle time and pending counts.
    let info = c.cmd_str(&["XINFO", "CONSUMERS", "st", "g"]);
    assert!(
        info.contains("$5\r\nalice\r\n$7\r\npending\r\n:0"),
        "{info}"
    );
    assert!(info.contains("$3\r\nbob\r\n$7\r\npending\r\n:2"), "{info}");
    assert!(
        info.contains("$5\r\ncarol\r\n$7\r\npending\r\n:3"),
        "{info}"
    );
    let full = c.cmd_str(&["XINFO", "STREAM", "st", "FULL"]);
    assert!(full.contains("$9\r\nseen-time\r\n:"), "{full}");
    assert!(full.contains("$9\r\npel-count\r\n:5"), "{full}");
}
