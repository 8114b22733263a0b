//! Persistence and the RDB value format: DUMP/RESTORE against a real `redis-server`.

use redis::Value as V;

use crate::support::TestServer;

/// Fills `c` with one key per type and encoding Redis 7.0 has (each key named after it).
fn fill_every_encoding(c: &mut redis::Connection) {
    let mut p = redis::pipe();
    p.cmd("SET").arg("str:int").arg("12345");
    p.cmd("SET").arg("str:bigint").arg("-9223372036854775808");
    p.cmd("SET").arg("str:embstr").arg("hello world");
    p.cmd("SET").arg("str:lzf").arg("abc".repeat(100));
    let noise: String = (0..500)
        .map(|i| char::from(b'!' + ((i * 7919) % 90) as u8))
        .collect();
    p.cmd("SET").arg("str:raw").arg(&noise);
    p.cmd("SET").arg("str:ttl").arg("v").arg("PX").arg(100_000);
    p.cmd("RPUSH")
        .arg("list:small")
        .arg(&["a", "1", "-7", "bb"]);
    for i in 0..3000 {
        p.cmd("RPUSH").arg("list:big").arg(format!("element-{i}"));
    }
    p.cmd("RPUSH")
        .arg("list:huge-item")
        .arg("x".repeat(20_000))
        .arg("y");
    p.cmd("SADD")
        .arg("set:intset")
        .arg(&["1", "-5", "70000", "5000000000"]);
    p.cmd("SADD").arg("set:strings").arg(&["a", "b", "c", "10"]);
    for i in 0..600 {
        p.cmd("SADD").arg("set:bigints").arg(i * 3);
    }
    p.cmd("HSET")
        .arg("hash:small")
        .arg(&["f1", "v1", "f2", "2", "n", "-3"]);
    for i in 0..200 {
        p.cmd("HSET")
            .arg("hash:big")
            .arg(format!("field{i}"))
            .arg(i);
    }
    p.cmd("HSET")
        .arg("hash:longval")
        .arg("f")
        .arg("v".repeat(100));
    p.cmd("ZADD")
        .arg("zset:small")
        .arg(&["1", "a", "2.5", "b", "-inf", "c", "inf", "d"]);
    p.cmd("ZADD")
        .arg("zset:small")
        .arg(&["0.1", "e", "1e100", "f", "-3", "g"]);
    for i in 0..300 {
        p.cmd("ZADD")
            .arg("zset:big")
            .arg(f64::from(i) / 7.0)
            .arg(format!("m{i}"));
    }
    for i in 1..=300 {
        if i % 5 == 0 {
            p.cmd("XADD")
                .arg("stream")
                .arg(format!("{i}-1"))
                .arg(&["other", "x", "f", "y"]);
        } else {
            p.cmd("XADD")
                .arg("stream")
                .arg(format!("{i}-1"))
                .arg(&["f", &i.to_string()]);
        }
    }
    p.cmd("XDEL").arg("stream").arg(&["3-1", "150-1"]);
    p.cmd("XGROUP").arg(&["CREATE", "stream", "g1", "0"]);
    p.cmd("XGROUP").arg(&["CREATE", "stream", "g2", "$"]);
    p.cmd("XREADGROUP").arg(&[
        "GROUP", "g1", "alice", "COUNT", "3", "STREAMS", "stream", ">",
    ]);
    p.cmd("XREADGROUP")
        .arg(&["GROUP", "g1", "bob", "COUNT", "2", "STREAMS", "stream", ">"]);
    p.cmd("XACK").arg(&["stream", "g1", "1-1"]);
    p.cmd("XGROUP")
        .arg(&["CREATECONSUMER", "stream", "g2", "carol"]);
    p.cmd("XADD").arg("stream:empty").arg(&["1-1", "f", "v"]);
    p.cmd("XDEL").arg("stream:empty").arg("1-1");
    p.query::<()>(c).unwrap();
}

fn keys(c: &mut redis::Connection) -> Vec<String> {
    let mut k: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    k.sort();
    k
}

fn digest_value(c: &mut redis::Connection, key: &str) -> String {
    let v: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(c)
        .unwrap();
    v.into_iter().next().unwrap()
}

fn dump(c: &mut redis::Connection, key: &str) -> Vec<u8> {
    redis::cmd("DUMP").arg(key).query(c).unwrap()
}

#[test]
fn dump_restore_round_trips_with_redis() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let (mut t, mut r) = (tessera.redis(), redis.redis());
    fill_every_encoding(&mut r);
    let names = keys(&mut r);
    assert_eq!(names.len(), 19);
    for key in &names {
        // Redis -> Tessera: same content, same encoding.
        let payload = dump(&mut r, key);
        let at: i64 = redis::cmd("PEXPIRETIME").arg(key).query(&mut r).unwrap();
        let () = redis::cmd("RESTORE")
            .arg(key)
            .arg(at.max(0))
            .arg(&payload)
            .arg("ABSTTL")
            .query(&mut t)
            .unwrap_or_else(|e| panic!("RESTORE {key}: {e}"));
        assert_eq!(
            digest_value(&mut t, key),
            digest_value(&mut r, key),
            "{key}"
        );
        let enc = |c: &mut redis::Connection| -> String {
            redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(key)
                .query(c)
                .unwrap()
        };
        assert_eq!(enc(&mut t), enc(&mut r), "encoding of {key}");
        // Tessera -> Redis: the payload Tessera writes restores into Redis unchanged.
        let back = format!("back:{key}");
        let payload = dump(&mut t, key);
        let () = redis::cmd("RESTORE")
            .arg(&back)
            .arg(at.max(0))
            .arg(&payload)
            .arg("ABSTTL")
            .query(&mut r)
            .unwrap_or_else(|e| panic!("Redis RESTORE of Tessera's {key}: {e}"));
        assert_eq!(
            digest_value(&mut r, &back),
            digest_value(&mut r, key),
            "{key}"
        );
    }
    // Consumer groups, their PELs and consumers came across too.
    let info = |c: &mut redis::Connection| -> V {
        redis::cmd("XINFO")
            .arg(&["STREAM", "stream", "FULL"])
            .query(c)
            .unwrap()
    };
    let strip_times = |v: V| format!("{v:?}").split("seen-time").count();
    assert_eq!(strip_times(info(&mut t)), strip_times(info(&mut r)));
    let pending = |c: &mut redis::Connection| -> V {
        redis::cmd("XPENDING")
            .arg(&["stream", "g1"])
            .query(c)
            .unwrap()
    };
    assert_eq!(pending(&mut t), pending(&mut r));
}

#[test]
fn restore_options_and_errors_match_redis() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let (mut t, mut r) = (tessera.raw(), redis.raw());
    for c in [&mut t, &mut r] {
        c.cmd(&[b"SET", b"src", b"value"]);
        c.cmd(&[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"]);
    }
    let payload = r.cmd(&[b"DUMP", b"src"]);
    // The bulk string's body.
    let start = payload.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = payload[start..payload.len() - 2].to_vec();
    let mut bad_crc = body.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xFF;
    let mut bad_version = body.clone();
    bad_version[n - 10] = 99;
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"RESTORE", b"src", b"0", &body],
        vec![b"RESTORE", b"dst", b"-1", &body],
        vec![b"RESTORE", b"dst", b"abc", &body],
        vec![b"RESTORE", b"dst", b"0", &bad_crc],
        vec![b"RESTORE", b"dst", b"0", &bad_version],
        vec![b"RESTORE", b"dst", b"0", b"short"],
        vec![b"RESTORE", b"dst", b"0", &body, b"BOGUS"],
        vec![b"RESTORE", b"dst", b"0", &body, b"IDLETIME", b"-1"],
        vec![b"RESTORE", b"dst", b"0", &body, b"FREQ", b"256"],
        vec![
            b"RESTORE",
            b"dst",
            b"0",
            &body,
            b"IDLETIME",
            b"5",
            b"FREQ",
            b"5",
        ],
        vec![b"RESTORE", b"dst", b"0", &body, b"IDLETIME"],
        vec![b"RESTORE", b"dst", b"0", &body, b"IDLETIME", b"1000"],
        vec![b"OBJECT", b"IDLETIME", b"dst"],
        vec![b"RESTORE", b"dst", b"0", &body],
        vec![b"RESTORE", b"dst", b"0", &body, b"REPLACE"],
        vec![b"TTL", b"dst"],
        vec![b"RESTORE", b"dst", b"5000", &body, b"REPLACE"],
        vec![b"PTTL", b"dst"],
        vec![b"RESTORE", b"dst", b"1", &body, b"REPLACE", b"ABSTTL"],
        vec![b"EXISTS", b"dst"],
        vec![b"RESTORE", b"dst2", b"99999999999999", &body, b"ABSTTL"],
        vec![b"EXPIRETIME", b"dst2"],
        vec![b"DUMP", b"nokey"],
        vec![
            b"RESTORE",
            b"dst3",
            b"0",
            b"\x00\x03abc\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ],
        vec![b"GET", b"dst3"],
    ];
    for args in &cases {
        let (a, b) = (t.cmd(args), r.cmd(args));
        let pttl = args[0] == b"PTTL";
        if pttl {
            // Both are a little under 5000.
            let parse = |v: &[u8]| {
                String::from_utf8_lossy(&v[1..v.len() - 2])
                    .parse::<i64>()
                    .unwrap()
            };
            assert!((4000..=5000).contains(&parse(&a)) && (4000..=5000).contains(&parse(&b)));
        } else {
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "{:?}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn restore_never_trusts_the_payload() {
    // Random corruptions of valid payloads: an error reply or a value, never a crash.
    let tessera = TestServer::start(&[]);
    let mut t = tessera.redis();
    fill_every_encoding(&mut t);
    let payloads: Vec<Vec<u8>> = keys(&mut t).iter().map(|k| dump(&mut t, k)).collect();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..3000 {
        let mut p = payloads[round % payloads.len()].clone();
        let body = p.len() - 10;
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % body;
            p[at] = next() as u8;
        }
        if next() % 4 == 0 {
            p.truncate(body - (next() as usize % body.min(50)));
            p.extend_from_slice(&10u16.to_le_bytes());
        } else {
            p.truncate(body + 2);
        }
        // A correct checksum, so the decoder itself must catch the damage.
        let crc = crc_redis(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        let _: redis::RedisResult<()> = redis::cmd("RESTORE")
            .arg("fuzz")
            .arg(0)
            .arg(&p)
            .arg("REPLACE")
            .query(&mut t);
    }
    let pong: String = redis::cmd("PING").query(&mut t).unwrap();
    assert_eq!(pong, "PONG");
}

/// Redis's CRC-64 (Jones, reflected), bit by bit: an independent check of the server's.
fn crc_redis(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95AC_9329_AC4B_C9B5; // 0xad93d23594c935a9 reflected
    let mut crc = 0u64;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// SIGKILL, then a new server on the same data directory, loaded.
fn kill_and_restart(server: TestServer, args: &[&str]) -> TestServer {
    server.signal("-KILL");
    drop(server);
    let server = TestServer::start(args);
    server.wait_loaded();
    server
}

/// What a writer's first `n` commands leave: one iteration is SET, INCR, RPUSH, HSET, ZADD.
fn expected_state(n: u64) -> [u64; 5] {
    let (full, part) = (n / 5, n % 5);
    let mut s = [full; 5];
    for c in s.iter_mut().take(part as usize) {
        *c += 1;
    }
    s
}

/// The state a writer's keys show: (SETs, INCRs, RPUSHes, HSETs, ZADDs) applied.
fn observed_state(c: &mut redis::Connection, t: usize) -> [u64; 5] {
    let ctr: Option<u64> = redis::cmd("GET").arg(format!("{t}:ctr")).query(c).unwrap();
    let llen: u64 = redis::cmd("LLEN")
        .arg(format!("{t}:list"))
        .query(c)
        .unwrap();
    let hlen: u64 = redis::cmd("HLEN").arg(format!("{t}:h")).query(c).unwrap();
    let zcard: u64 = redis::cmd("ZCARD").arg(format!("{t}:z")).query(c).unwrap();
    // SET keys are numbered: the count is the first missing one (checked to be a prefix).
    let mut sets = ctr.unwrap_or(0).saturating_sub(1);
    while redis::cmd("EXISTS")
        .arg(format!("{t}:k:{sets}"))
        .query::<i64>(c)
        .unwrap()
        == 1
    {
        sets += 1;
    }
    [sets, ctr.unwrap_or(0), llen, hlen, zcard]
}

/// One writer: runs its command sequence from `start` until the connection fails. Returns
/// the number of commands acknowledged, and (time, count) samples.
fn write_until_error(port: u16, t: usize, start: u64) -> (u64, Vec<(std::time::Instant, u64)>) {
    let mut samples = Vec::new();
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return (start, samples);
    };
    let Ok(mut c) = client.get_connection() else {
        return (start, samples);
    };
    let mut n = start;
    loop {
        let i = n / 5;
        let mut cmd = match n % 5 {
            0 => redis::cmd("SET"),
            1 => redis::cmd("INCR"),
            2 => redis::cmd("RPUSH"),
            3 => redis::cmd("HSET"),
            _ => redis::cmd("ZADD"),
        };
        match n % 5 {
            0 => cmd.arg(format!("{t}:k:{i}")).arg(i),
            1 => cmd.arg(format!("{t}:ctr")),
            2 => cmd.arg(format!("{t}:list")).arg(i),
            3 => cmd.arg(format!("{t}:h")).arg(i).arg(i),
            _ => cmd.arg(format!("{t}:z")).arg(i).arg(i),
        };
        if cmd.query::<redis::Value>(&mut c).is_err() {
            return (n, samples);
        }
        n += 1;
        if n.is_multiple_of(64) {
            samples.push((std::time::Instant::now(), n));
        }
    }
}

/// SIGKILL at random points under a write load; every restart must show, per writer, exactly
/// the acknowledged commands, plus at most the one in flight (`always`), or lose at most about
/// the last second (`everysec`).
fn crash_rounds(fsync: &str, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let args = ["--dir", &d, "--appendonly", "yes", "--appendfsync", fsync];
    let writers = 4;
    let mut counts = vec![0u64; writers];
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..rounds {
        let server = TestServer::start(&args);
        server.wait_loaded();
        let mut c = server.redis();
        for (t, n) in counts.iter_mut().enumerate() {
            let seen = observed_state(&mut c, t);
            // After a kill, the command in flight may or may not have been applied.
            assert!(
                seen == expected_state(*n) || seen == expected_state(*n + 1),
                "round {round} ({fsync}), writer {t}: {seen:?} is neither {:?} nor {:?}",
                expected_state(*n),
                expected_state(*n + 1)
            );
            *n = if seen == expected_state(*n) {
                *n
            } else {
                *n + 1
            };
        }
        let port = server.port;
        let handles: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(t, &n)| std::thread::spawn(move || write_until_error(port, t, n)))
            .collect();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(std::time::Duration::from_millis(100 + rng % 400));
        let killed_at = std::time::Instant::now();
        server.signal("-KILL");
        for (t, h) in handles.into_iter().enumerate() {
            let (acked, samples) = h.join().unwrap();
            counts[t] = match fsync {
                "always" => acked,
                // everysec: what was acknowledged more than about a second before the kill
                // must be there; later acknowledgements may be lost.
                _ => samples
                    .iter()
                    .rev()
                    .find(|(at, _)| killed_at.duration_since(*at).as_millis() > 1500)
                    .map_or(counts[t], |s| s.1),
            };
        }
        drop(server);
        if fsync != "always" {
            // The loss bound only: restart and take what is there as the new baseline,
            // after checking it is a prefix of what was written and not older than allowed.
            let server = TestServer::start(&args);
            server.wait_loaded();
            let mut c = server.redis();
            for (t, n) in counts.iter_mut().enumerate() {
                let seen = observed_state(&mut c, t);
                let applied: u64 = seen.iter().sum();
                assert_eq!(seen, expected_state(applied), "writer {t}: not a prefix");
                assert!(applied >= *n, "writer {t}: lost more than the last second");
                *n = applied;
            }
        }
    }
    // The last state loads too.
    let server = TestServer::start(&args);
    server.wait_loaded();
    let mut c = server.redis();
    for (t, &n) in counts.iter().enumerate() {
        let seen = observed_state(&mut c, t);
        assert!(seen == expected_state(n) || seen == expected_state(n + 1));
    }
    assert!(
        counts.iter().sum::<u64>() > 1000,
        "the writers made progress: {counts:?}"
    );
}

#[test]
fn crash_safety_always() {
    crash_rounds("always", 20);
}

#[test]
fn crash_safety_everysec() {
    crash_rounds("everysec", 5);
}

fn run(c: &mut redis::Connection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or(redis::Value::Nil)
}

fn digest(c: &mut redis::Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

/// Every kind of effect rewrite replays to the same dataset: random choices, relative times,
/// served blocking pops, transactions, claims, expiry and eviction-free deletions.
#[test]
fn replayed_log_gives_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let args = ["--dir", &d, "--appendonly", "yes"];
    let server = TestServer::start(&args);
    let mut c = server.redis();
    let corpus: &[&[&str]] = &[
        &["SET", "s", "v", "EX", "1000"],
        &["SET", "s2", "v", "PX", "500000", "GET"],
        &["SETEX", "s3", "1000", "v"],
        &["PSETEX", "s4", "1000000", "v"],
        &["SET", "short", "v", "PX", "30"],
        &["SET", "n", "10"],
        &["INCRBYFLOAT", "n", "0.1"],
        &["INCRBYFLOAT", "n", "1e-3"],
        &["EXPIRE", "n", "5000"],
        &["SET", "e", "v"],
        &["EXPIRE", "e", "-1"],
        &["GETEX", "s", "PX", "700000"],
        &["GETEX", "s2", "PERSIST"],
        &["SADD", "set", "a", "b", "c", "d", "e", "f", "g"],
        &["SPOP", "set"],
        &["SPOP", "set", "3"],
        &["HSET", "h", "f", "1.5"],
        &["HINCRBYFLOAT", "h", "f", "0.25"],
        &["RPUSH", "l", "1", "2", "3", "4", "5"],
        &["BLPOP", "l", "0"],
        &["BRPOP", "l", "0"],
        &["BLMOVE", "l", "l2", "LEFT", "RIGHT", "0"],
        &["LMPOP", "1", "l", "RIGHT", "COUNT", "5"],
        &["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"],
        &["BZPOPMIN", "z", "0"],
        &["ZMPOP", "1", "z", "MAX", "COUNT", "2"],
        &["XADD", "x", "*", "f", "1"],
        &["XADD", "x", "*", "f", "2"],
        &["XADD", "x", "MAXLEN", "~", "1", "*", "f", "3"],
        &["XGROUP", "CREATE", "x", "g", "0"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "x",
            ">",
        ],
        &["XCLAIM", "x", "g", "c2", "0", "0-1"],
        &["XAUTOCLAIM", "x", "g", "c3", "0", "0"],
        &["XACK", "x", "g", "0-1"],
        &["MULTI"],
        &["INCR", "tx"],
        &["SPOP", "set"],
        &["EXPIRE", "tx", "100"],
        &["EXEC"],
        &["PFADD", "hll", "a", "b", "c"],
        &["PFCOUNT", "hll"],
        &[
            "RESTORE",
            "r",
            "100000",
            "\u{0}\u{c0}\u{1}\n\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
        ],
        &["COPY", "h", "h2"],
        &["RENAME", "h2", "h3"],
        &["DEL", "l2"],
    ];
    for cmd in corpus {
        run(&mut c, cmd);
    }
    // A real RESTORE payload, with a relative TTL.
    let payload: Vec<u8> = redis::cmd("DUMP").arg("h").query(&mut c).unwrap();
    let () = redis::cmd("RESTORE")
        .arg("r2")
        .arg(100_000)
        .arg(&payload)
        .query(&mut c)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    // `short` expired: touching it deletes it (a DEL effect), then APPEND makes a new key.
    run(&mut c, &["APPEND", "short", "new"]);
    let before = digest(&mut c);
    let times: Vec<i64> = ["s", "s3", "s4", "n", "tx", "r2", "short"]
        .iter()
        .map(|k| redis::cmd("PEXPIRETIME").arg(*k).query(&mut c).unwrap())
        .collect();
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&["x", "g", "-", "+", "10"])
        .query(&mut c)
        .unwrap();
    // The group's pending entries with their absolute delivery times and counts, and last ID
    // and entries read (consumers' seen times are the replay's, as on a Redis replica).
    let full = |server: &TestServer| {
        let text =
            String::from_utf8_lossy(&server.raw().cmd(&[b"XINFO", b"STREAM", b"x", b"FULL"]))
                .into_owned();
        let mut out = String::new();
        let mut skip_next = false;
        for line in text.split("\r\n") {
            if skip_next {
                skip_next = false;
                continue;
            }
            skip_next = line == "seen-time";
            out.push_str(line);
            out.push('|');
        }
        out
    };
    let full_before = full(&server);
    let server = kill_and_restart(server, &args);
    let mut c = server.redis();
    assert_eq!(digest(&mut c), before);
    let after: Vec<i64> = ["s", "s3", "s4", "n", "tx", "r2", "short"]
        .iter()
        .map(|k| redis::cmd("PEXPIRETIME").arg(*k).query(&mut c).unwrap())
        .collect();
    assert_eq!(after, times);
    let owners = |v: &redis::Value| format!("{v:?}").replace(char::is_numeric, "");
    let pending_after: redis::Value = redis::cmd("XPENDING")
        .arg(&["x", "g", "-", "+", "10"])
        .query(&mut c)
        .unwrap();
    assert_eq!(owners(&pending_after), owners(&pending));
    assert_eq!(full(&server), full_before);
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
    assert!(info.contains("aof_enabled:1"), "{info}");
}

#[test]
fn clients_get_loading_while_the_dataset_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let args = ["--dir", &d, "--appendonly", "yes", "--appendfsync", "no"];
    let server = TestServer::start(&args);
    let mut c = server.redis();
    let () = redis::cmd("DEBUG")
        .arg(&["POPULATE", "20000", "key", "100"])
        .query(&mut c)
        .unwrap();
    // As a checkpoint image: it loads in chunks, with clients served between them.
    let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    crate::support::wait_for(std::time::Duration::from_secs(60), "the checkpoint", || {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        info.contains("aof_rewrites:1")
    });
    drop(c);
    server.signal("-KILL");
    drop(server);
    // 100 us per key: loading lasts at least two seconds, whatever the machine's speed.
    let server = TestServer::start_with_config(&format!(
        "dir = {d:?}\nappendonly = true\nappendfsync = \"no\"\nenable-debug-command = \"yes\"\nkey-load-delay = 100\n"
    ));
    let mut raw = server.raw();
    let reply = raw.cmd(&[b"GET", b"key:1"]);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-LOADING Redis is loading the dataset in memory\r\n"
    );
    let info = raw.cmd(&[b"INFO", b"persistence"]);
    let info = String::from_utf8_lossy(&info).to_string();
    assert!(info.contains("\r\nloading:1\r\n"), "{info}");
    assert!(info.contains("loading_loaded_perc:"), "{info}");
    server.wait_loaded();
    let mut c = server.redis();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 20_000);
}

/// A checkpoint taken while writers change keys in every slot is exactly the state at its
/// offset: restarting from it plus the log that follows gives the dataset the writers left.
#[test]
fn checkpoint_under_writes_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let args = ["--dir", &d, "--appendonly", "yes", "--save", ""];
    let server = TestServer::start(&args);
    let mut c = server.redis();
    let () = redis::cmd("DEBUG")
        .arg(&["POPULATE", "200000", "key", "8"])
        .query(&mut c)
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = server.port;
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let mut i = t * 7919;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i = (i * 31 + 17) % 200_000;
                    let key = format!("key:{i}");
                    let mut p = redis::pipe();
                    p.cmd("APPEND").arg(&key).arg("x");
                    p.cmd("INCR").arg(format!("ctr:{}", i % 1000));
                    p.cmd("RPUSH").arg(format!("list:{}", i % 50)).arg(i);
                    p.cmd("HINCRBY")
                        .arg(format!("h:{}", i % 100))
                        .arg("f")
                        .arg(1);
                    if i % 3 == 0 {
                        p.cmd("DEL").arg(format!("key:{}", (i + 1) % 200_000));
                    }
                    if i % 5 == 0 {
                        p.cmd("SET")
                            .arg(format!("new:{i}"))
                            .arg(i)
                            .arg("EX")
                            .arg(1000);
                    }
                    p.query::<()>(&mut c).unwrap();
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let reply: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    assert_eq!(reply, "Background append only file rewriting started");
    crate::support::wait_for(std::time::Duration::from_secs(60), "the checkpoint", || {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        info.contains("aof_rewrites:1")
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
    assert!(info.contains("aof_last_bgrewrite_status:ok"), "{info}");
    let before = digest(&mut c);
    let keys: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    let server = kill_and_restart(server, &args);
    let mut c = server.redis();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), keys);
    assert_eq!(digest(&mut c), before);
    let log = server.log();
    assert!(log.contains("DB loaded from disk"), "{log}");
}

/// BGSAVE, SAVE, LASTSAVE and the `save` rules, with the image alone (no log) on restart.
#[test]
fn bgsave_save_and_save_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let args = ["--dir", &d, "--save", "1 1"];
    let server = TestServer::start(&args);
    let mut c = server.redis();
    let before: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    let () = redis::cmd("SET").arg("a").arg("1").query(&mut c).unwrap();
    // The rule (1 second, 1 change) fires from the cron.
    crate::support::wait_for(std::time::Duration::from_secs(10), "a save by rule", || {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        info.contains("rdb_saves:1") && info.contains("rdb_changes_since_last_save:0")
    });
    let after: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(after >= before);
    let () = redis::cmd("RPUSH").arg("l").arg("x").query(&mut c).unwrap();
    let ok: String = redis::cmd("SAVE").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let started: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(started, "Background saving started");
    let bad: redis::RedisResult<()> = redis::cmd("BGSAVE").arg("NOW").query(&mut c);
    assert!(bad.is_err());
    let bad: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg(&["SET", "save", "1 2 3"])
        .query(&mut c);
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("Invalid save parameters")
    );
    crate::support::wait_for(std::time::Duration::from_secs(10), "the BGSAVE", || {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        info.contains("rdb_bgsave_in_progress:0")
    });
    let digest_before = digest(&mut c);
    // SHUTDOWN NOSAVE: what was written since the last save is not saved.
    let () = redis::cmd("SET")
        .arg("unsaved")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut c);
    let mut server = server;
    server.wait_exit(std::time::Duration::from_secs(10));
    drop(server);
    let server = TestServer::start(&args);
    server.wait_loaded();
    let mut c = server.redis();
    assert_eq!(digest(&mut c), digest_before);
    // A plain SHUTDOWN with save rules saves.
    let () = redis::cmd("SET")
        .arg("saved")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let digest_before = digest(&mut c);
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
    let mut server = server;
    server.wait_exit(std::time::Duration::from_secs(10));
    drop(server);
    let server = TestServer::start(&args);
    server.wait_loaded();
    let mut c = server.redis();
    assert_eq!(digest(&mut c), digest_before);
}

/// A small tmpfs as the data directory (root only, as CI runs): unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// Disk full under `appendfsync always`: the write that did not reach the disk is not
/// answered, new writes get MISCONF, reads are served, `INFO` shows the error; once space
/// returns the held reply arrives and writes resume by themselves; nothing acknowledged is lost.
#[test]
fn disk_full_gives_misconf_and_recovers() {
    let Some(fs) = Tmpfs::mount("24m") else {
        eprintln!("disk_full_gives_misconf_and_recovers: skipped, mounting a tmpfs needs root");
        return;
    };
    let d = fs.0.path().to_str().unwrap().to_string();
    let args = [
        "--dir",
        &d,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ];
    let server = TestServer::start(&args);
    let filler = fs.0.path().join("filler");
    std::fs::write(&filler, vec![0u8; 16 << 20]).unwrap();
    let mut w = server.raw();
    w.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let value = vec![b'v'; 1000];
    let mut acked = 0u64;
    let held = loop {
        assert!(acked < 100_000, "the disk never filled");
        let key = format!("k:{acked}");
        w.send_cmd(&[b"SET", key.as_bytes(), &value]);
        let mut buf = [0u8; 64];
        match std::io::Read::read(&mut w.stream, &mut buf) {
            Ok(n) => {
                assert_eq!(&buf[..n], b"+OK\r\n");
                acked += 1;
            }
            Err(_) => break acked,
        }
    };
    let mut o = server.raw();
    let misconf = o.cmd_str(&["SET", "other", "1"]);
    assert_eq!(
        misconf,
        "-MISCONF Errors writing to the AOF file: No space left on device\r\n"
    );
    assert!(o.cmd_str(&["GET", "k:0"]).starts_with("$1000\r\n"));
    let info = o.cmd_str(&["INFO", "persistence"]);
    assert!(info.contains("aof_last_write_status:err"), "{info}");
    std::fs::remove_file(&filler).unwrap();
    // The held write is answered once it is on disk, and writes are accepted again.
    w.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut w.stream, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"+OK\r\n");
    assert_eq!(o.cmd_str(&["SET", "other", "1"]), "+OK\r\n");
    let info = o.cmd_str(&["INFO", "persistence"]);
    assert!(info.contains("aof_last_write_status:ok"), "{info}");
    let server = kill_and_restart(server, &args);
    let mut c = server.redis();
    let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    // Every acknowledged write, the held one (acknowledged after the disk came back) and `other`.
    assert_eq!(n, held + 2);
    drop(server);
    drop(fs);
}

/// `tessera import-rdb` of a dump.rdb written by the real redis-server: the same content, key
/// by key (DEBUG DIGEST-VALUE) and as a whole (DEBUG DIGEST), TTLs included; expired keys are
/// skipped; keys outside database 0 need --all-dbs.
#[test]
fn import_rdb_written_by_redis() {
    let rdir = tempfile::tempdir().unwrap();
    let rd = rdir.path().to_str().unwrap().to_string();
    let redis = TestServer::start_redis_with(&["--dir", &rd, "--dbfilename", "dump.rdb"]);
    let mut r = redis.redis();
    fill_every_encoding(&mut r);
    let () = redis::cmd("DEBUG")
        .arg(&["POPULATE", "20000", "pop", "30"])
        .query(&mut r)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("gone")
        .arg("1")
        .arg("PX")
        .arg(150)
        .query(&mut r)
        .unwrap();
    let ok: String = redis::cmd("SAVE").query(&mut r).unwrap();
    assert_eq!(ok, "OK");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let tessera = TestServer::start(&[]);
    let out = std::process::Command::new(crate::support::tessera_bin())
        .args(["import-rdb", &format!("{rd}/dump.rdb"), "--port"])
        .arg(tessera.port.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 already expired, skipped"), "{stdout}");
    let mut t = tessera.redis();
    // `gone` expired in Redis too by now (reading it deletes it there).
    let gone: Option<String> = redis::cmd("GET").arg("gone").query(&mut r).unwrap();
    assert_eq!(gone, None);
    let rn: i64 = redis::cmd("DBSIZE").query(&mut r).unwrap();
    let tn: i64 = redis::cmd("DBSIZE").query(&mut t).unwrap();
    assert_eq!(tn, rn);
    for key in keys(&mut r) {
        assert_eq!(
            digest_value(&mut t, &key),
            digest_value(&mut r, &key),
            "{key}"
        );
    }
    assert_eq!(digest(&mut t), digest(&mut r));
    // Importing again collides with the keys now there; --replace overwrites them.
    let again = std::process::Command::new(crate::support::tessera_bin())
        .args(["import-rdb", &format!("{rd}/dump.rdb"), "--port"])
        .arg(tessera.port.to_string())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--replace"));
    let replace = std::process::Command::new(crate::support::tessera_bin())
        .args([
            "import-rdb",
            &format!("{rd}/dump.rdb"),
            "--replace",
            "--port",
        ])
        .arg(tessera.port.to_string())
        .output()
        .unwrap();
    assert!(replace.status.success());
    // Another database: refused without --all-dbs.
    let () = redis::cmd("SELECT").arg(3).query(&mut r).unwrap();
    let () = redis::cmd("SET")
        .arg("in-db-3")
        .arg("x")
        .query(&mut r)
        .unwrap();
    let _: String = redis::cmd("SAVE").query(&mut r).unwrap();
    let other = std::process::Command::new(crate::support::tessera_bin())
        .args([
            "import-rdb",
            &format!("{rd}/dump.rdb"),
            "--replace",
            "--port",
        ])
        .arg(tessera.port.to_string())
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("--all-dbs"));
    // A damaged file is refused with the byte where it went wrong.
    let mut bytes = std::fs::read(format!("{rd}/dump.rdb")).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(format!("{rd}/half.rdb"), &bytes).unwrap();
    let half = std::process::Command::new(crate::support::tessera_bin())
        .args([
            "import-rdb",
            &format!("{rd}/half.rdb"),
            "--replace",
            "--port",
        ])
        .arg(tessera.port.to_string())
        .output()
        .unwrap();
    assert!(!half.status.success());
    assert!(String::from_utf8_lossy(&half.stderr).contains("damaged at byte"));
}

/// `tessera check-data` reports a good directory; a damaged one stops the server at start with
/// a message naming what is wrong and the way out, and check-data fails on it too.
#[test]
fn damaged_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let args = ["--dir", &d, "--appendonly", "yes", "--save", ""];
    let server = TestServer::start(&args);
    let mut c = server.redis();
    let () = redis::cmd("DEBUG")
        .arg(&["POPULATE", "50000", "key", "100"])
        .query(&mut c)
        .unwrap();
    let _: String = redis::cmd("SAVE").query(&mut c).unwrap();
    let () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
    let mut server = server;
    server.wait_exit(std::time::Duration::from_secs(10));
    let check = |path: &str| {
        std::process::Command::new(crate::support::tessera_bin())
            .args(["check-data", path])
            .output()
            .unwrap()
    };
    let good = check(&d);
    let report = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{report}");
    assert!(
        report.contains("50000 keys") && report.ends_with("ok\n"),
        "{report}"
    );
    // Damage the biggest table file in the middle.
    let data = dir.path().join("tessera-data");
    let sst = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a table file");
    let mut bytes = std::fs::read(&sst).unwrap();
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(&sst, &bytes).unwrap();
    let bad = check(&d);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("check-data"));
    let mut server = TestServer::start(&args);
    let code = server.wait_exit(std::time::Duration::from_secs(30));
    assert_eq!(code, Some(1));
    let log = server.log();
    assert!(
        log.contains("damaged") && log.contains("tessera check-data"),
        "{log}"
    );
    // Without CURRENT, the directory is not taken for an empty one.
    std::fs::remove_file(data.join("CURRENT")).unwrap();
    let out = std::process::Command::new(crate::support::tessera_bin())
        .args(["server", "--port", "0", "--dir", &d, "--appendonly", "yes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CURRENT file is missing"));
}
