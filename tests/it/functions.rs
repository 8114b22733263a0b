//! Functions (issue 7): FUNCTION LOAD and friends and FCALL against a real `redis-server`
//! (identical reply bytes), DUMP/RESTORE payloads exchanged with it, libraries kept by the log,
//! the image and full syncs (to Tessera and Redis replicas), and busy functions.

use std::time::Duration;

use crate::scripting::diff_corpus;
use crate::support::{TestServer, wait_for};

const LIB: &str = "#!lua name=mylib\n\
redis.register_function('f1', function(keys, args) return {keys[1], args[1]} end)\n\
redis.register_function{function_name='F2', callback=function(k, a) return redis.call('set', k[1], a[1]) end, flags={'no-writes'}, description='desc'}";

const CORPUS: &[&[&str]] = &[
    &["function", "load", LIB],
    &["fcall", "f1", "1", "a", "b"],
    &["fcall", "F1", "0"],
    &["fcall", "f2", "1", "k", "v"],
    &["fcall_ro", "f1", "1", "a", "b"],
    &["fcall_ro", "f2", "1", "k", "v"],
    &["function", "stats"],
    &["function", "load", "return 1"],
    &["function", "load", "#!lua\nreturn 1"],
    &["function", "load", "#!lua name=x"],
    &["function", "load", "#!lua name=a-b\nreturn 1"],
    &["function", "load", "#!lua name=x foo=bar\nreturn 1"],
    &["function", "load", "#!lua name=x name=y\nreturn 1"],
    &["function", "load", "#!js name=x\nreturn 1"],
    &["function", "load", "#!lua name=empty\nlocal a = 1"],
    &[
        "function",
        "load",
        "#!lua name=mylib\nredis.register_function('zz', function() return 1 end)",
    ],
    &[
        "function",
        "load",
        "#!lua name=other\nredis.register_function('f1', function() return 1 end)",
    ],
    &[
        "function",
        "load",
        "#!lua name=other\nredis.register_function('g', function() return 1 end)\nredis.register_function('G', function() return 1 end)",
    ],
    &[
        "function",
        "load",
        "#!lua name=other\nredis.register_function('g-1', function() return 1 end)",
    ],
    &[
        "function",
        "load",
        "#!lua name=other\nlocal x = string.len('a')",
    ],
    &[
        "function",
        "load",
        "#!lua name=other\nredis.call('set', 'a', 'b')",
    ],
    &["function", "load", "#!lua name=other\nx = 1"],
    &[
        "function",
        "load",
        "#!lua name=other\nredis.register_function('g', function() return 1 end",
    ],
    &["function", "load", "#!lua name=other\nwhile true do end"],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function{function_name='g2', callback=function() return 1 end, flags={'bogus'}}",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function{function_name='g2', callback=function() return 1 end, foo=1}",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function{callback=function() return 1 end}",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function{function_name='x'}",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function{function_name='x', callback=1}",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function{function_name={}, callback=function() end}",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function{function_name='x', callback=function() end, flags='no-writes'}",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function('x')",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function('x', function() end, 1)",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function({}, function() end)",
    ],
    &[
        "function",
        "load",
        "#!lua name=bf\nredis.register_function('x', 1)",
    ],
    &[
        "function",
        "load",
        "#!lua name=num\nredis.register_function(12, function() return 12 end)",
    ],
    &["fcall", "12", "0"],
    &[
        "function",
        "load",
        "#!lua name=rt\nredis.register_function('rt', function() return redis.register_function('h', function() end) end)",
    ],
    &["fcall", "rt", "0"],
    &[
        "function",
        "load",
        "#!lua name=kg\nredis.register_function('kg', function(keys, args) return KEYS end)",
    ],
    &["fcall", "kg", "1", "a"],
    &[
        "function",
        "load",
        "#!lua name=lg\nredis.log(redis.LOG_WARNING, 'loading')\nredis.register_function('lg', function() return redis.REDIS_VERSION_NUM end)",
    ],
    &["fcall", "lg", "0"],
    &["function", "load", "#!lua name=el\nerror('boom')"],
    &[
        "function",
        "load",
        "#!lua name=el\nredis.register_function('el', function(k, a) error('boom') end)\nredis.register_function('el2', function(k, a) return redis.call('nosuch') end)\nredis.register_function('el3', function(k, a) return redis.pcall('incr', k[1]) end)",
    ],
    &["fcall", "el", "0"],
    &["fcall", "el2", "0"],
    &["set", "s", "x"],
    &["fcall", "el3", "1", "s"],
    &[
        "function",
        "load",
        "#!lua name=af\nredis.register_function{function_name='af', callback=function(k, a) return #a end, flags={'no-writes','ALLOW-OOM','allow-stale','no-cluster','allow-cross-slot-keys'}}",
    ],
    &["function", "list", "libraryname", "af"],
    &["function", "list", "withcode", "libraryname", "a*"],
    &["function", "list", "libraryname", "AF"],
    &["function", "list", "libraryname", "nope"],
    &["function", "list", "libraryname"],
    &["function", "list", "withcode", "withcode"],
    &["function", "list", "foo"],
    &["fcall_ro", "af", "0", "1", "2"],
    &[
        "function",
        "load",
        "replace",
        "#!lua name=af\nredis.register_function('f1', function() return 1 end)",
    ],
    &[
        "function",
        "load",
        "replace",
        "#!lua name=af\nredis.register_function('af2', function() return 2 end)",
    ],
    &["fcall", "af", "0"],
    &["fcall", "af2", "0"],
    &[
        "function",
        "load",
        "bogus",
        "#!lua name=z\nredis.register_function('z', function() return 2 end)",
    ],
    &["function", "delete", "nolib"],
    &["function", "delete", "af"],
    &["fcall", "af2", "0"],
    &["fcall", "nope", "0"],
    &["fcall", "f1", "x"],
    &["fcall", "f1", "5", "a"],
    &["fcall", "f1", "-1"],
    &["fcall"],
    &["function", "kill"],
    &["function", "flush", "bogus"],
    &["function", "restore", "garbage"],
    &["function", "restore", "x", "bogus"],
    &["function", "restore", "x", "replace", "y"],
    &["function", "dump", "x"],
    &["function", "stats", "x"],
    &["function", "help"],
    &["function", "flush", "async"],
    &["function", "list"],
    &["function", "stats"],
    &["fcall", "f1", "0"],
];

#[test]
fn functions_reply_as_redis_server_resp2() {
    diff_corpus(CORPUS, false);
}

#[test]
fn functions_reply_as_redis_server_resp3() {
    diff_corpus(CORPUS, true);
}

fn q<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&[u8]]) -> redis::RedisResult<T> {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// FUNCTION DUMP payloads go both ways between Redis and Tessera, with the restore policies.
#[test]
fn function_payloads_restore_across_redis_and_tessera() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let (mut t, mut r) = (tessera.redis(), redis.redis());
    // A long library: Redis compresses it in its payload (LZF).
    let long = format!(
        "#!lua name=long\n{}redis.register_function('l', function(k, a) return #a end)",
        "-- padding padding padding padding\n".repeat(40)
    );
    for lib in [LIB, &long] {
        let _: String = q(&mut r, &[b"FUNCTION", b"LOAD", lib.as_bytes()]).unwrap();
    }
    let payload: Vec<u8> = q(&mut r, &[b"FUNCTION", b"DUMP"]).unwrap();
    let _: () = q(&mut t, &[b"FUNCTION", b"RESTORE", &payload]).unwrap();
    let got: Vec<String> = q(&mut t, &[b"FCALL", b"f1", b"1", b"a", b"b"]).unwrap();
    assert_eq!(got, ["a", "b"]);
    let n: i64 = q(&mut t, &[b"FCALL", b"L", b"0", b"x", b"y"]).unwrap();
    assert_eq!(n, 2);
    // APPEND (the default) refuses libraries that exist; REPLACE and FLUSH do not.
    let err = q::<()>(&mut t, &[b"FUNCTION", b"RESTORE", &payload]).unwrap_err();
    assert!(
        err.to_string().contains("Library long already exists")
            || err.to_string().contains("Library mylib already exists"),
        "{err}"
    );
    let _: () = q(&mut t, &[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"]).unwrap();
    let _: String = q(
        &mut t,
        &[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=extra\nredis.register_function('e', function() return 'e' end)",
        ],
    )
    .unwrap();
    // Tessera's payload restores into Redis.
    let ours: Vec<u8> = q(&mut t, &[b"FUNCTION", b"DUMP"]).unwrap();
    let _: () = q(&mut r, &[b"FUNCTION", b"RESTORE", &ours, b"FLUSH"]).unwrap();
    let e: String = q(&mut r, &[b"FCALL", b"e", b"0"]).unwrap();
    assert_eq!(e, "e");
    let stats: redis::Value = q(&mut r, &[b"FUNCTION", b"STATS"]).unwrap();
    assert!(format!("{stats:?}").contains("int(4)") || format!("{stats:?}").contains("Int(4)"));
    // FLUSH empties first; a payload that is not functions, or is damaged, changes nothing.
    let _: () = q(&mut t, &[b"FUNCTION", b"RESTORE", &payload, b"FLUSH"]).unwrap();
    assert!(q::<String>(&mut t, &[b"FCALL", b"e", b"0"]).is_err());
    let _: () = q(&mut t, &[b"SET", b"k", b"v"]).unwrap();
    let key_payload: Vec<u8> = q(&mut t, &[b"DUMP", b"k"]).unwrap();
    let err = q::<()>(&mut t, &[b"FUNCTION", b"RESTORE", &key_payload]).unwrap_err();
    assert!(
        err.to_string().contains("given type is not a function"),
        "{err}"
    );
    let mut damaged = payload.clone();
    damaged[5] ^= 0x55;
    let err = q::<()>(&mut t, &[b"FUNCTION", b"RESTORE", &damaged, b"FLUSH"]).unwrap_err();
    assert!(err.to_string().contains("checksum are wrong"), "{err}");
    let n: i64 = q(&mut t, &[b"FCALL", b"l", b"0", b"x"]).unwrap();
    assert_eq!(n, 1);
}

const RO_LIB: &str = "#!lua name=rolib\n\
redis.register_function{function_name='ro', callback=function(k, a) return a[1] end, flags={'no-writes'}}";

/// FCALL_RO of `name` (a read-only replica refuses functions that may write, as Redis does).
fn fcall_ro(c: &mut redis::Connection, name: &str) -> redis::RedisResult<String> {
    q(c, &[b"FCALL_RO", name.as_bytes(), b"0", b"x"])
}

/// Libraries are data: they survive restarts (from the log, then from an image) and reach
/// Tessera and Redis replicas by full sync and by the stream.
#[test]
fn libraries_survive_restarts_and_reach_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let args = [
        "--dir",
        path,
        "--appendonly",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ];
    let primary = TestServer::start(&args);
    let mut p = primary.redis();
    for lib in [LIB, RO_LIB] {
        let _: String = q(&mut p, &[b"FUNCTION", b"LOAD", lib.as_bytes()]).unwrap();
    }
    let _: String = q(
        &mut p,
        &[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=gone\nredis.register_function('gone', function() return 1 end)",
        ],
    )
    .unwrap();
    let _: () = q(&mut p, &[b"FUNCTION", b"DELETE", b"gone"]).unwrap();
    // From the log.
    drop(primary);
    let primary = TestServer::start(&args);
    primary.wait_loaded();
    let mut p = primary.redis();
    let got: Vec<String> = q(&mut p, &[b"FCALL", b"f1", b"1", b"a", b"b"]).unwrap();
    assert_eq!(got, ["a", "b"]);
    assert!(q::<i64>(&mut p, &[b"FCALL", b"gone", b"0"]).is_err());
    // From an image (the log before it is gone).
    let _: String = q(&mut p, &[b"BGREWRITEAOF"]).unwrap();
    wait_for(Duration::from_secs(20), "the rewrite", || {
        q::<String>(&mut p, &[b"INFO", b"persistence"])
            .unwrap()
            .contains("aof_rewrite_in_progress:0")
    });
    drop(primary);
    let primary = TestServer::start(&args);
    primary.wait_loaded();
    let mut p = primary.redis();
    assert_eq!(fcall_ro(&mut p, "ro").unwrap(), "x");
    let info: String = q(&mut p, &[b"INFO", b"memory"]).unwrap();
    assert!(info.contains("number_of_libraries:2"), "{info}");
    assert!(info.contains("number_of_functions:3"), "{info}");

    // Replicas: a Tessera one and a Redis one, by full sync, then by the stream.
    let spec = format!("127.0.0.1 {}", primary.port);
    let port = primary.port.to_string();
    let ours = TestServer::start(&["--replicaof", &spec]);
    let theirs = TestServer::start_redis_with(&["--replicaof", "127.0.0.1", &port]);
    for replica in [&ours, &theirs] {
        let mut r = replica.redis();
        wait_for(Duration::from_secs(30), "the replica's full sync", || {
            fcall_ro(&mut r, "ro").is_ok_and(|v| v == "x")
        });
    }
    let _: String = q(
        &mut p,
        &[b"FUNCTION", b"LOAD", b"#!lua name=later\nredis.register_function{function_name='later', callback=function() return 'l' end, flags={'no-writes'}}"],
    )
    .unwrap();
    let _: () = q(&mut p, &[b"FUNCTION", b"DELETE", b"rolib"]).unwrap();
    for replica in [&ours, &theirs] {
        let mut r = replica.redis();
        wait_for(Duration::from_secs(30), "the replica's stream", || {
            fcall_ro(&mut r, "later").is_ok_and(|v| v == "l") && fcall_ro(&mut r, "ro").is_err()
        });
    }

    // A Tessera replica of a Redis primary gets its libraries too.
    let redis_primary = TestServer::start_redis();
    let mut rp = redis_primary.redis();
    let _: String = q(&mut rp, &[b"FUNCTION", b"LOAD", RO_LIB.as_bytes()]).unwrap();
    let spec = format!("127.0.0.1 {}", redis_primary.port);
    let ours = TestServer::start(&["--replicaof", &spec]);
    let mut r = ours.redis();
    wait_for(Duration::from_secs(30), "the sync from Redis", || {
        fcall_ro(&mut r, "ro").is_ok_and(|v| v == "x")
    });
}

/// A function that never ends: others get Redis's -BUSY for functions, FUNCTION STATS shows
/// it, SCRIPT KILL points to FUNCTION KILL, and FUNCTION KILL stops it.
#[test]
fn a_busy_function_is_killed_with_function_kill() {
    let server = TestServer::start(&[]);
    let mut c = server.raw();
    c.cmd_str(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    let reply = c.cmd_str(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=loop\nredis.register_function{function_name='spin', callback=function(k, a) while true do pcall(function() while true do end end) end end, flags={'no-writes'}}",
    ]);
    assert_eq!(reply, "$4\r\nloop\r\n");
    let mut looping = server.raw();
    looping.send_cmd(&[b"FCALL_RO", b"spin", b"1", b"key"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.cmd_str(&["GET", "x"]),
        "-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["SCRIPT", "KILL"]),
        "-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.\r\n"
    );
    let stats = c.cmd_str(&["FUNCTION", "STATS"]);
    assert!(
        stats.starts_with("*4\r\n$14\r\nrunning_script\r\n*6\r\n$4\r\nname\r\n$4\r\nspin\r\n$7\r\ncommand\r\n*4\r\n$8\r\nFCALL_RO\r\n$4\r\nspin\r\n$1\r\n1\r\n$3\r\nkey\r\n$11\r\nduration_ms\r\n:"),
        "{stats}"
    );
    assert_eq!(c.cmd_str(&["FUNCTION", "KILL"]), "+OK\r\n");
    let reply = String::from_utf8(looping.read_reply()).unwrap();
    assert!(
        reply.starts_with("-ERR Script killed by user with FUNCTION KILL... script: spin"),
        "{reply}"
    );
    assert_eq!(
        c.cmd_str(&["FUNCTION", "KILL"]),
        "-NOTBUSY No scripts in execution right now.\r\n"
    );
    assert_eq!(looping.cmd_str(&["PING"]), "+PONG\r\n");
    // A busy script: FUNCTION KILL points to SCRIPT KILL.
    looping.send_cmd(&[b"EVAL", b"while true do end", b"0"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.cmd_str(&["FUNCTION", "KILL"]),
        "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
    );
    assert_eq!(c.cmd_str(&["SCRIPT", "KILL"]), "+OK\r\n");
    assert!(
        String::from_utf8(looping.read_reply())
            .unwrap()
            .starts_with("-ERR Script killed by user with SCRIPT KILL...")
    );
}

/// MONITOR shows EVAL, EVALSHA and FCALL before the commands they run, which appear as run by
/// `lua`, as Redis shows them.
#[test]
fn monitor_shows_script_commands_as_redis() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let mut lines = Vec::new();
    for server in [&tessera, &redis] {
        let mut monitor = server.raw();
        assert_eq!(monitor.cmd_str(&["MONITOR"]), "+OK\r\n");
        let mut c = server.raw();
        for step in [
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=mon\nredis.register_function('monf', function(k, a) return redis.call('get', k[1]) end)",
            ][..],
            &[
                "EVAL",
                "redis.call('set', KEYS[1], '1') return redis.call('get', KEYS[1])",
                "1",
                "x",
            ],
            &["FCALL", "monf", "1", "x"],
            &["EVALSHA", "nosuchsha", "0"],
            &["PING"],
        ] {
            c.cmd_str(step);
        }
        let mut seen = Vec::new();
        loop {
            let line = String::from_utf8(monitor.read_reply()).unwrap();
            // "+<time> [0 <source>] <command>": the source is `lua` or a client address.
            let (_, rest) = line.split_once(" [0 ").unwrap();
            let (source, command) = rest.split_once("] ").unwrap();
            let source = if source == "lua" { "lua" } else { "client" };
            seen.push(format!("{source} {}", command.trim_end()));
            if command.starts_with("\"PING\"") || command.starts_with("\"ping\"") {
                break;
            }
        }
        lines.push(seen);
    }
    assert_eq!(lines[0], lines[1]);
    assert_eq!(lines[0].len(), 8, "{:?}", lines[0]);
}
