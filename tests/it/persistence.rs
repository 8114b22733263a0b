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
