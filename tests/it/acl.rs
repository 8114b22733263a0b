//! ACL: users, rules, the permission checks of commands, keys, channels and scripts, the log,
//! the ACL file and protected mode, compared with a real `redis-server` where it can be.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{RawConn, TestServer};

/// One step: which connection (created on first use) sends which command.
type Step<'a> = (usize, &'a [&'a str]);

const LIB: &str = "#!lua name=acllib\nredis.register_function('f', function(keys) return redis.call('get', keys[1]) end)";

const CORPUS: &[Step] = &[
    // Users and rules.
    (
        0,
        &[
            "ACL", "SETUSER", "alice", "on", ">pw1", ">pw2", "~cache:*", "&news.*", "+@read",
            "+@string", "-getdel",
        ],
    ),
    (0, &["ACL", "GETUSER", "alice"]),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "alice",
            "<pw2",
            "#6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
            "!6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
        ],
    ),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "bob",
            "on",
            "nopass",
            "%R~r:*",
            "%W~w:*",
            "+@all",
            "-@dangerous",
        ],
    ),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "carol",
            "on",
            ">c",
            "(+get ~x:*)",
            "(+set",
            "~y:*)",
            "+ping",
            "resetchannels",
            "&chan:*",
        ],
    ),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "dave",
            "on",
            ">d",
            "-@all",
            "+select|0",
            "+config|get",
            "+client",
            "-client|kill",
        ],
    ),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "erin",
            "on",
            ">e",
            "+eval",
            "+evalsha",
            "+fcall",
            "+get",
            "~e:*",
            "skip-sanitize-payload",
        ],
    ),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "frank",
            "on",
            ">f",
            "+subscribe",
            "+psubscribe",
            "+publish",
            "+ping",
            "&news.*",
            "&exact",
        ],
    ),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "gina",
            "on",
            ">g",
            "+@all",
            "-@write",
            "+set",
            "allkeys",
            "allchannels",
            "-@hash",
            "+hset",
        ],
    ),
    (
        0,
        &[
            "ACL",
            "SETUSER",
            "hank",
            "reset",
            "+@hyperloglog",
            "+@geo",
            "+@stream",
            "+@bitmap",
            "+@sortedset",
            "+@list",
            "+@set",
            "+@hash",
            "sanitize-payload",
        ],
    ),
    (0, &["ACL", "GETUSER", "carol"]),
    (0, &["ACL", "GETUSER", "gina"]),
    (0, &["ACL", "GETUSER", "nosuch"]),
    (0, &["ACL", "LIST"]),
    (0, &["ACL", "USERS"]),
    (0, &["ACL", "WHOAMI"]),
    (0, &["ACL", "CAT"]),
    (0, &["ACL", "CAT", "nosuch"]),
    // Malformed rules change nothing.
    (0, &["ACL", "SETUSER", "alice", "off", "+nosuch"]),
    (0, &["ACL", "SETUSER", "alice", "-@nosuch"]),
    (0, &["ACL", "SETUSER", "alice", "allkeys", "~more"]),
    (0, &["ACL", "SETUSER", "alice", "allchannels", "&more"]),
    (0, &["ACL", "SETUSER", "alice", "<nosuchpass"]),
    (0, &["ACL", "SETUSER", "alice", "#abc"]),
    (0, &["ACL", "SETUSER", "alice", "!ABCDEF"]),
    (0, &["ACL", "SETUSER", "alice", "+config|get|x"]),
    (0, &["ACL", "SETUSER", "alice", "+select|"]),
    (0, &["ACL", "SETUSER", "alice", "%X~a"]),
    (0, &["ACL", "SETUSER", "alice", "%~a"]),
    (0, &["ACL", "SETUSER", "alice", "~a b"]),
    (0, &["ACL", "SETUSER", "alice", "whatever"]),
    (0, &["ACL", "SETUSER", "alice", "(+get", "~a"]),
    (0, &["ACL", "SETUSER", "alice", "(~a b)"]),
    (0, &["ACL", "SETUSER", "bad user"]),
    (
        0,
        &["ACL", "SETUSER", "x", "%RW", "%R~", "()", "", "(", ")"],
    ),
    (0, &["ACL", "GETUSER", "x"]),
    (0, &["ACL", "GETUSER", "alice"]),
    (0, &["ACL", "DELUSER", "default"]),
    (0, &["ACL", "DELUSER", "x", "nosuch"]),
    (0, &["ACL", "GENPASS", "0"]),
    (0, &["ACL", "GENPASS", "4097"]),
    (0, &["ACL", "GENPASS", "abc"]),
    (0, &["ACL", "LOAD"]),
    (0, &["ACL", "SAVE"]),
    (0, &["ACL", "LOG", "abc"]),
    (0, &["ACL", "WHOAMI", "x"]),
    (0, &["ACL", "NOSUCH"]),
    (0, &["ACL", "HELP"]),
    // AUTH.
    (1, &["AUTH", "alice", "wrong"]),
    (1, &["AUTH", "a", "b", "c"]),
    (1, &["AUTH", "pw1"]),
    (1, &["AUTH", "alice", "pw1"]),
    (1, &["ACL", "WHOAMI"]),
    (1, &["GET", "cache:1"]),
    (1, &["GET", "other"]),
    (1, &["SET", "cache:1", "v"]),
    (1, &["GETDEL", "cache:1"]),
    (1, &["HGET", "cache:h", "f"]),
    (1, &["MGET", "cache:1", "cache:2", "other"]),
    (1, &["PUBLISH", "news.1", "m"]),
    (1, &["CONFIG", "GET", "maxmemory"]),
    (1, &["EVAL", "return 1", "0"]),
    (1, &["NOSUCHCOMMAND"]),
    (1, &["GET"]),
    // Read and write key patterns.
    (2, &["AUTH", "bob", "anything"]),
    (2, &["SET", "w:1", "v"]),
    (2, &["SET", "r:1", "v"]),
    (2, &["GET", "r:1"]),
    (2, &["GET", "w:1"]),
    (2, &["COPY", "r:1", "w:2"]),
    (2, &["COPY", "w:1", "r:2"]),
    (2, &["LMOVE", "r:l", "w:l", "LEFT", "LEFT"]),
    (2, &["EXISTS", "r:1", "w:1"]),
    (2, &["EXISTS", "x"]),
    (2, &["SET", "w:1", "v", "GET"]),
    (2, &["FLUSHALL"]),
    (2, &["DEBUG", "SLEEP", "0"]),
    (2, &["PUBLISH", "any", "m"]),
    // Selectors.
    (3, &["AUTH", "carol", "c"]),
    (3, &["GET", "x:1"]),
    (3, &["SET", "y:1", "v"]),
    (3, &["SET", "x:1", "v"]),
    (3, &["GET", "y:1"]),
    (3, &["DEL", "x:1"]),
    (3, &["PING"]),
    // First arguments and subcommands.
    (4, &["AUTH", "dave", "d"]),
    (4, &["SELECT", "0"]),
    (4, &["SELECT", "1"]),
    (4, &["CONFIG", "GET", "maxmemory"]),
    (4, &["CONFIG", "SET", "maxmemory", "0"]),
    (4, &["CLIENT", "GETNAME"]),
    (4, &["CLIENT", "KILL", "ID", "123456"]),
    // Categories.
    (11, &["AUTH", "gina", "g"]),
    (11, &["SET", "k", "v"]),
    (11, &["INCR", "n"]),
    (11, &["HSET", "h", "f", "v"]),
    (11, &["HDEL", "h", "f"]),
    (11, &["GET", "k"]),
    (0, &["ACL", "SETUSER", "hank", "on", "nopass", "~*"]),
    (12, &["AUTH", "hank", "x"]),
    (12, &["LPUSH", "l", "a"]),
    (12, &["SADD", "s", "a"]),
    (12, &["PFADD", "p", "a"]),
    (12, &["SETBIT", "b", "1", "1"]),
    (12, &["GET", "k"]),
    (12, &["XADD", "x", "1-1", "f", "v"]),
    (12, &["PING"]),
    // Dry runs.
    (0, &["ACL", "DRYRUN", "alice", "get", "cache:1"]),
    (0, &["ACL", "DRYRUN", "alice", "get", "other"]),
    (0, &["ACL", "DRYRUN", "alice", "del", "cache:1"]),
    (0, &["ACL", "DRYRUN", "frank", "publish", "other", "m"]),
    (0, &["ACL", "DRYRUN", "frank", "publish", "news.1", "m"]),
    (0, &["ACL", "DRYRUN", "nosuch", "get", "x"]),
    (0, &["ACL", "DRYRUN", "alice", "nosuch", "x"]),
    (0, &["ACL", "DRYRUN", "dave", "config", "set", "x", "y"]),
    // Transactions: refused when queued, and when the rules changed before EXEC.
    (1, &["MULTI"]),
    (1, &["GET", "cache:1"]),
    (1, &["EXEC"]),
    (
        0,
        &["ACL", "SETUSER", "alice", "+multi", "+exec", "+discard"],
    ),
    (1, &["MULTI"]),
    (1, &["GET", "cache:1"]),
    (1, &["GET", "nope"]),
    (1, &["EXEC"]),
    (1, &["MULTI"]),
    (1, &["GET", "cache:2"]),
    (1, &["SET", "cache:2", "v"]),
    (
        0,
        &["ACL", "SETUSER", "alice", "resetkeys", "~other:*", "-set"],
    ),
    (1, &["EXEC"]),
    (
        0,
        &["ACL", "SETUSER", "alice", "resetkeys", "~cache:*", "+set"],
    ),
    // Scripts and functions run with the caller's permissions.
    (0, &["FUNCTION", "LOAD", LIB]),
    (5, &["AUTH", "erin", "e"]),
    (5, &["EVAL", "return redis.call('get', 'e:1')", "0"]),
    (5, &["EVAL", "return redis.call('get', 'x')", "0"]),
    (5, &["EVAL", "return redis.pcall('get', 'x')", "0"]),
    (5, &["EVAL", "return redis.call('set', 'e:1', 'v')", "0"]),
    (5, &["EVAL", "return redis.pcall('publish', 'c', 'm')", "0"]),
    (
        5,
        &["EVAL", "return redis.acl_check_cmd('get', 'e:1')", "0"],
    ),
    (5, &["EVAL", "return redis.acl_check_cmd('get', 'x')", "0"]),
    (
        5,
        &["EVAL", "return redis.acl_check_cmd('set', 'e:1', 'v')", "0"],
    ),
    (
        5,
        &[
            "EVAL",
            "return redis.acl_check_cmd('config', 'get', 'x')",
            "0",
        ],
    ),
    (5, &["EVAL", "return redis.acl_check_cmd('nosuch')", "0"]),
    (5, &["EVAL", "return redis.acl_check_cmd()", "0"]),
    (5, &["EVAL", "return redis.acl_check_cmd({})", "0"]),
    (
        5,
        &["EVAL", "return pcall(redis.acl_check_cmd, 'nosuch')", "0"],
    ),
    (5, &["FCALL", "f", "1", "e:1"]),
    (5, &["FCALL", "f", "1", "zz"]),
    (0, &["EVAL", "return redis.acl_check_cmd('flushall')", "0"]),
    // Channels.
    (6, &["AUTH", "frank", "f"]),
    (6, &["PUBLISH", "news.1", "m"]),
    (6, &["PUBLISH", "exact", "m"]),
    (6, &["PUBLISH", "other", "m"]),
    (6, &["PSUBSCRIBE", "n*"]),
    (6, &["PSUBSCRIBE", "news.*"]),
    (7, &["AUTH", "frank", "f"]),
    (7, &["SUBSCRIBE", "news.1", "other"]),
    (7, &["SUBSCRIBE", "news.1", "exact"]),
    // requirepass is the default user's password.
    (0, &["CONFIG", "SET", "requirepass", "sekret"]),
    (0, &["ACL", "GETUSER", "default"]),
    (9, &["PING"]),
    (9, &["AUTH", "wrong"]),
    (9, &["HELLO", "3", "AUTH", "default", "wrong"]),
    (9, &["AUTH", "sekret"]),
    (9, &["ACL", "WHOAMI"]),
    (0, &["CONFIG", "SET", "requirepass", ""]),
    (0, &["ACL", "SETUSER", "default", "resetpass"]),
    (10, &["GET", "k"]),
    (10, &["AUTH", "alice", "pw1"]),
    (10, &["GET", "cache:1"]),
    (0, &["ACL", "SETUSER", "default", "nopass"]),
    (1, &["RESET"]),
    (1, &["ACL", "WHOAMI"]),
    // The log, newest first, with repeated events counted once.
    (0, &["ACL", "LOG", "2"]),
    (0, &["ACL", "LOG"]),
    (0, &["ACL", "LOG", "RESET"]),
    (0, &["ACL", "LOG"]),
];

/// Redis lists single-command rules in its hash table's order, which changes with every
/// process: runs of them are sorted. Client details and ages are blanked.
fn normalize(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let mut out: Vec<String> = Vec::new();
    for line in text.split("\r\n") {
        if line.starts_with("id=") {
            if out.last().is_some_and(|l| l.starts_with('$')) {
                out.pop();
            }
            out.push("<client-info>".into());
            continue;
        }
        let mut tokens: Vec<String> = line.split(' ').map(str::to_string).collect();
        let single = |t: &str| {
            let t = t.trim_start_matches('(').trim_end_matches(')');
            (t.starts_with('+') || t.starts_with('-')) && !t[1..].starts_with('@') && t.len() > 1
        };
        let mut i = 0;
        while i < tokens.len() {
            if !single(&tokens[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < tokens.len() && single(&tokens[i]) && !tokens[i].starts_with('(') {
                i += 1;
                if tokens[i - 1].ends_with(')') {
                    break;
                }
            }
            if i == start {
                i += 1;
                continue;
            }
            let closes = tokens[i - 1].ends_with(')');
            let mut run: Vec<String> = tokens[start..i]
                .iter()
                .map(|t| t.trim_end_matches(')').to_string())
                .collect();
            run.sort();
            if closes {
                run.last_mut().expect("non-empty run").push(')');
            }
            tokens.splice(start..i, run);
        }
        out.push(tokens.join(" "));
    }
    let joined = out.join("\r\n");
    // `age-seconds` is a double: its bulk length and digits vary.
    let mut result = String::new();
    let mut lines = joined.split("\r\n").peekable();
    while let Some(l) = lines.next() {
        result.push_str(l);
        result.push_str("\r\n");
        if l == "age-seconds" {
            lines.next();
            lines.next();
            result.push_str("<age>\r\n");
        }
    }
    result
}

fn run(conns: &mut HashMap<usize, RawConn>, port: u16, resp3: bool, step: &Step) -> Vec<u8> {
    let c = conns.entry(step.0).or_insert_with(|| {
        let mut c = RawConn::connect(port);
        if resp3 {
            c.cmd_str(&["HELLO", "3"]);
        }
        c
    });
    let args: Vec<&[u8]> = step.1.iter().map(|a| a.as_bytes()).collect();
    c.cmd(&args)
}

fn diff_with_redis(corpus: &[Step], resp3: bool) {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let (mut t, mut r) = (HashMap::new(), HashMap::new());
    let mut diffs = Vec::new();
    for step in corpus {
        let a = normalize(&run(&mut t, tessera.port, resp3, step));
        let b = normalize(&run(&mut r, redis.port, resp3, step));
        if a != b {
            diffs.push(format!("{step:?}\n  tessera: {a:?}\n  redis:   {b:?}"));
        }
    }
    crate::support::assert_no_diffs(&diffs);
}

#[test]
fn acl_replies_as_redis_server_resp2() {
    diff_with_redis(CORPUS, false);
}

#[test]
fn acl_replies_as_redis_server_resp3() {
    diff_with_redis(CORPUS, true);
}

/// Commands that probe each category, with a key argument slot (`{}`).
const PROBES: &[&[&str]] = &[
    &["GET", "{}"],
    &["SET", "{}", "v"],
    &["APPEND", "{}", "v"],
    &["DEL", "{}"],
    &["EXISTS", "{}"],
    &["EXPIRE", "{}", "100"],
    &["TYPE", "{}"],
    &["HSET", "{}:h", "f", "v"],
    &["HGET", "{}:h", "f"],
    &["LPUSH", "{}:l", "a"],
    &["LRANGE", "{}:l", "0", "-1"],
    &["BLPOP", "{}:l", "0.01"],
    &["SADD", "{}:s", "a"],
    &["SMEMBERS", "{}:s"],
    &["ZADD", "{}:z", "1", "a"],
    &["ZRANGE", "{}:z", "0", "-1"],
    &["SETBIT", "{}:b", "1", "1"],
    &["BITCOUNT", "{}:b"],
    &["PFADD", "{}:p", "a"],
    &["PFCOUNT", "{}:p"],
    &["GEOADD", "{}:g", "13.36", "38.11", "p"],
    &["GEOPOS", "{}:g", "p"],
    &["XADD", "{}:x", "1-1", "f", "v"],
    &["XLEN", "{}:x"],
    &["PUBLISH", "chan", "m"],
    &["PUBSUB", "NUMSUB", "chan"],
    &["PING"],
    &["ECHO", "x"],
    &["DBSIZE"],
    &["KEYS", "nomatch*"],
    &["CONFIG", "GET", "maxmemory"],
    &["CLIENT", "GETNAME"],
    &["INFO", "keyspace"],
    &["MULTI"],
    &["DISCARD"],
    &["EVAL", "return 1", "0"],
    &["SCRIPT", "EXISTS", "abc"],
    &["FUNCTION", "LIST"],
    &["OBJECT", "ENCODING", "{}"],
    &["SORT", "{}:l"],
];

/// INFO keyspace with `avg_ttl` (and so the bulk length) blanked: Redis estimates it in its
/// expire cycle and keeps the estimate after the keys with a TTL are gone.
fn blank_avg_ttl(reply: String) -> String {
    if !reply.contains(",avg_ttl=") {
        return reply;
    }
    reply
        .split("\r\n")
        .map(|line| match line.split_once(",avg_ttl=") {
            Some((fields, _)) => format!("{fields},avg_ttl=<estimate>"),
            None if line.starts_with('$') => "$<len>".to_string(),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Each category allowed alone, against commands of every category, on keys the user may
/// and may not use: Tessera's answers are redis-server's.
#[test]
fn permission_matrix_matches_redis_server() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let mut diffs = Vec::new();
    let mut checked = 0;
    let categories: Vec<String> = {
        let reply = String::from_utf8(tessera.raw().cmd(&[b"ACL", b"CAT"])).unwrap();
        reply
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(categories.len(), 21);
    for cat in &categories {
        let user = format!("u-{cat}");
        let rule = format!("+@{cat}");
        let setuser: &[&str] = &["ACL", "SETUSER", &user, "on", ">pw", "~ok:*", "&*", &rule];
        let mut conns = Vec::new();
        for port in [tessera.port, redis.port] {
            let mut admin = RawConn::connect(port);
            assert_eq!(admin.cmd_str(setuser), "+OK\r\n");
            let mut c = RawConn::connect(port);
            assert_eq!(c.cmd_str(&["AUTH", &user, "pw"]), "+OK\r\n");
            conns.push(c);
        }
        for probe in PROBES {
            for key in ["ok:1", "no:1"] {
                let args: Vec<String> = probe.iter().map(|a| a.replace("{}", key)).collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let a = blank_avg_ttl(conns[0].cmd_str(&args));
                let b = blank_avg_ttl(conns[1].cmd_str(&args));
                checked += 1;
                if a != b {
                    diffs.push(format!(
                        "{user} {args:?}\n  tessera: {a:?}\n  redis:   {b:?}"
                    ));
                }
            }
        }
    }
    assert!(checked > 1500);
    assert!(
        diffs.is_empty(),
        "{} of {checked} replies differ from redis-server:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn deleted_users_and_revoked_channels_disconnect_their_clients() {
    let s = TestServer::start(&[]);
    let mut admin = s.raw();
    admin.cmd_str(&[
        "ACL", "SETUSER", "u", "on", ">p", "+@all", "~*", "&a*", "&b",
    ]);
    let mut c = s.raw();
    assert_eq!(c.cmd_str(&["AUTH", "u", "p"]), "+OK\r\n");
    let mut sub = s.raw();
    assert_eq!(sub.cmd_str(&["AUTH", "u", "p"]), "+OK\r\n");
    sub.cmd_str(&["SUBSCRIBE", "b"]);
    let mut other = s.raw();
    assert_eq!(other.cmd_str(&["PING"]), "+PONG\r\n");

    // Adding channels keeps the subscriber; taking `b` away disconnects it.
    assert_eq!(admin.cmd_str(&["ACL", "SETUSER", "u", "&c"]), "+OK\r\n");
    sub.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(!sub.is_closed());
    assert_eq!(
        admin.cmd_str(&["ACL", "SETUSER", "u", "resetchannels", "&a*"]),
        "+OK\r\n"
    );
    sub.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(sub.is_closed());
    assert_eq!(c.cmd_str(&["PING"]), "+PONG\r\n");

    // Deleting the user closes its connections, and only those.
    assert_eq!(admin.cmd_str(&["ACL", "DELUSER", "u"]), ":1\r\n");
    assert!(c.is_closed());
    assert_eq!(other.cmd_str(&["PING"]), "+PONG\r\n");

    // A user deleting itself gets its reply, then the connection closes.
    admin.cmd_str(&["ACL", "SETUSER", "v", "on", "nopass", "+@all"]);
    let mut v = s.raw();
    assert_eq!(v.cmd_str(&["AUTH", "v", "x"]), "+OK\r\n");
    assert_eq!(v.cmd_str(&["ACL", "DELUSER", "v"]), ":1\r\n");
    assert!(v.is_closed());
    assert_eq!(
        admin.cmd_str(&["CLIENT", "KILL", "USER", "v"]),
        "-ERR No such user 'v'\r\n"
    );
}

#[test]
fn acl_file_is_loaded_saved_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.acl");
    std::fs::write(
        &path,
        "user default on nopass ~* &* +@all\n\nuser reader on >r ~* resetchannels -@all +@read\n",
    )
    .unwrap();
    let s = TestServer::start(&["--aclfile", path.to_str().unwrap()]);
    let mut c = s.raw();
    assert_eq!(c.cmd_str(&["AUTH", "reader", "r"]), "+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "k"]), "$-1\r\n");
    assert_eq!(
        c.cmd_str(&["SET", "k", "v"]),
        "-NOPERM this user has no permissions to run the 'set' command\r\n"
    );

    let mut admin = s.raw();
    admin.cmd_str(&["ACL", "SETUSER", "writer", "on", ">w", "~w:*", "+@write"]);
    assert_eq!(admin.cmd_str(&["ACL", "SAVE"]), "+OK\r\n");
    let saved = std::fs::read_to_string(&path).unwrap();
    let list = admin.cmd_str(&["ACL", "LIST"]);
    for line in saved.lines() {
        assert!(list.contains(line), "{line:?} not in {list:?}");
    }
    assert_eq!(saved.lines().count(), 3);

    // A file with errors changes nothing and names every error.
    std::fs::write(
        &path,
        "user default on nopass ~* &* +@all\nuser bad on +nosuch\nnotauser x\nuser bad2 (+get\n",
    )
    .unwrap();
    let p = path.display();
    assert_eq!(
        admin.cmd_str(&["ACL", "LOAD"]),
        format!(
            "-ERR {p}:2: Unknown command or category name in ACL. {p}:3 should start with user keyword followed by the username. {p}:4: Unmatched parenthesis in selector definition.WARNING: ACL errors detected, no change to the previously active ACL rules was performed\r\n"
        )
    );
    assert_eq!(c.cmd_str(&["GET", "k"]), "$-1\r\n");

    // Loading replaces every user: connections of users other than default are closed.
    std::fs::write(&path, "user reader on >r2 ~* +@all\n").unwrap();
    assert_eq!(admin.cmd_str(&["ACL", "LOAD"]), "+OK\r\n");
    assert!(c.is_closed());
    assert_eq!(
        admin.cmd_str(&["ACL", "USERS"]),
        "*2\r\n$7\r\ndefault\r\n$6\r\nreader\r\n"
    );
    let mut c = s.raw();
    assert_eq!(c.cmd_str(&["AUTH", "reader", "r2"]), "+OK\r\n");

    // A broken file stops the server from starting.
    std::fs::write(&path, "user x +nosuch\n").unwrap();
    let out = std::process::Command::new(crate::support::tessera_bin())
        .args(["server", "--port", "0", "--aclfile", path.to_str().unwrap()])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unknown command or category name in ACL"),
        "{err}"
    );
}

#[test]
fn genpass_and_hello_auth() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    for (bits, chars) in [("1", 1), ("5", 2), ("256", 64), ("4096", 1024)] {
        let reply = c.cmd_str(&["ACL", "GENPASS", bits]);
        let body = reply.split("\r\n").nth(1).unwrap();
        assert_eq!(body.len(), chars, "{reply}");
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
    assert_ne!(
        c.cmd_str(&["ACL", "GENPASS"]),
        c.cmd_str(&["ACL", "GENPASS"])
    );
    c.cmd_str(&["ACL", "SETUSER", "h", "on", ">p", "+@all", "~*"]);
    let mut h = s.raw();
    let reply = h.cmd_str(&["HELLO", "3", "AUTH", "h", "p", "SETNAME", "n"]);
    assert!(reply.starts_with("%7\r\n"), "{reply}");
    assert_eq!(h.cmd_str(&["ACL", "WHOAMI"]), "$1\r\nh\r\n");
    let info = h.cmd_str(&["CLIENT", "INFO"]);
    assert!(info.contains(" user=h "), "{info}");
    assert!(info.contains(" name=n "), "{info}");
}

/// A non-loopback address of this machine, if it has one.
fn external_ip() -> Option<std::net::IpAddr> {
    let usable = |ip: &std::net::IpAddr| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified();
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .ok()
        .and_then(|sock| {
            sock.connect("8.8.8.8:53").ok()?;
            Some(sock.local_addr().ok()?.ip())
        });
    if let Some(ip) = routed.filter(usable) {
        return Some(ip);
    }
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse().ok())
        .find(usable)
}

#[test]
fn protected_mode_refuses_remote_clients_without_a_password() {
    use std::io::Read;
    let s = TestServer::start(&["--bind", "0.0.0.0"]);
    let ip = external_ip().expect("this test needs a non-loopback address on the machine");
    // PING then QUIT: the server closes the connection either way.
    let read_all = |ip: std::net::IpAddr| {
        let mut conn = std::net::TcpStream::connect((ip, s.port)).unwrap();
        std::io::Write::write_all(&mut conn, b"PING\r\nQUIT\r\n").unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut bytes = Vec::new();
        let _ = conn.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let refused = read_all(ip);
    assert!(
        refused.starts_with("-DENIED Redis is running in protected mode"),
        "{refused}"
    );
    // Loopback clients are served; a password on the default user opens the door.
    let mut local = s.raw();
    assert_eq!(local.cmd_str(&["PING"]), "+PONG\r\n");
    assert_eq!(
        local.cmd_str(&["CONFIG", "SET", "requirepass", "pw"]),
        "+OK\r\n"
    );
    assert_eq!(read_all(ip), "-NOAUTH Authentication required.\r\n+OK\r\n");
    assert_eq!(
        local.cmd_str(&["CONFIG", "SET", "requirepass", ""]),
        "+OK\r\n"
    );
    assert_eq!(
        local.cmd_str(&["CONFIG", "SET", "protected-mode", "no"]),
        "+OK\r\n"
    );
    assert_eq!(read_all(ip), "+PONG\r\n+OK\r\n");
}
