//! Keyspace notifications: the events each command publishes, compared with a real
//! `redis-server` command by command, plus expiry, eviction and configuration.

use std::time::Duration;

use crate::support::{RawConn, TestServer};

/// Every write command family, its no-op cases and the deletions of emptied collections.
const CORPUS: &[&[&str]] = &[
    // strings and generic
    &["SET", "s", "v"],
    &["SET", "s", "v2", "EX", "100"],
    &["SET", "s", "v3", "KEEPTTL"],
    &["SET", "s", "v", "NX"],
    &["SET", "s", "v", "XX", "GET"],
    &["SETNX", "s2", "x"],
    &["SETNX", "s2", "y"],
    &["SETEX", "s3", "100", "x"],
    &["PSETEX", "s3", "100000", "x"],
    &["GETSET", "s3", "y"],
    &["MSET", "m1", "1", "m2", "2"],
    &["MSETNX", "m3", "1", "m4", "2"],
    &["MSETNX", "m3", "1", "m5", "2"],
    &["APPEND", "s", "tail"],
    &["APPEND", "newappend", "x"],
    &["SETRANGE", "s", "2", "zz"],
    &["SETRANGE", "nosuch", "0", ""],
    &["INCR", "n"],
    &["DECR", "n"],
    &["INCRBY", "n", "5"],
    &["DECRBY", "n", "5"],
    &["INCRBYFLOAT", "n", "1.5"],
    &["INCR", "s"],
    &["GETDEL", "m1"],
    &["GETDEL", "m1"],
    &["GETEX", "m2", "EX", "100"],
    &["GETEX", "m2", "PERSIST"],
    &["GETEX", "m2"],
    &["GETEX", "m2", "PXAT", "1"],
    &["GET", "missing"],
    &["MGET", "missing", "s"],
    &["STRLEN", "missing"],
    &["EXISTS", "missing"],
    &["SETBIT", "b", "3", "1"],
    &["SETBIT", "b", "3", "1"],
    &["BITFIELD", "b", "SET", "u8", "0", "255"],
    &["BITFIELD", "b", "GET", "u8", "0"],
    &["BITOP", "OR", "bo", "b", "s"],
    &["BITOP", "AND", "bo", "missing", "missing2"],
    &["EXPIRE", "s", "100"],
    &["EXPIRE", "s", "100", "NX"],
    &["PEXPIRE", "s", "200000", "GT"],
    &["EXPIREAT", "s", "99999999999"],
    &["PERSIST", "s"],
    &["PERSIST", "s"],
    &["EXPIRE", "s2", "-1"],
    &["EXPIRE", "missing", "10"],
    &["RENAME", "s", "s4"],
    &["RENAME", "s4", "s4"],
    &["RENAMENX", "s4", "m3"],
    &["RENAMENX", "s4", "s5"],
    &["RENAME", "s5", "m3"],
    &["COPY", "m3", "c1"],
    &["COPY", "m3", "c1"],
    &["COPY", "m3", "c1", "REPLACE"],
    &["DEL", "c1", "missing", "m4"],
    &["UNLINK", "m3", "n"],
    &["TOUCH", "s3"],
    &["TYPE", "missing"],
    // lists
    &["LPUSH", "l", "a", "b", "c"],
    &["RPUSH", "l", "d"],
    &["LPUSHX", "nolist", "a"],
    &["RPUSHX", "l", "e"],
    &["LINSERT", "l", "BEFORE", "a", "x"],
    &["LINSERT", "l", "BEFORE", "nope", "x"],
    &["LSET", "l", "0", "y"],
    &["LREM", "l", "0", "x"],
    &["LREM", "l", "0", "nope"],
    &["LTRIM", "l", "0", "10"],
    &["LPOP", "l"],
    &["RPOP", "l", "2"],
    &["LMOVE", "l", "l2", "LEFT", "RIGHT"],
    &["RPOPLPUSH", "l", "l2"],
    &["LMOVE", "l2", "l2", "LEFT", "LEFT"],
    &["LMPOP", "2", "nolist", "l2", "LEFT", "COUNT", "5"],
    &["RPUSH", "l3", "a", "b"],
    &["LTRIM", "l3", "5", "10"],
    &["LRANGE", "missing", "0", "-1"],
    &["LINDEX", "missing", "0"],
    &["BLPOP", "nolist", "l3x", "0.01"],
    &["RPUSH", "l4", "a"],
    &["BRPOP", "l4", "1"],
    &["RPUSH", "l5", "a", "b"],
    &["BLMOVE", "l5", "l6", "RIGHT", "LEFT", "1"],
    &["BLMPOP", "1", "1", "l5", "RIGHT"],
    // sets
    &["SADD", "st", "a", "b", "c"],
    &["SADD", "st", "a"],
    &["SREM", "st", "a", "zz"],
    &["SREM", "st", "zz"],
    &["SMOVE", "st", "st2", "b"],
    &["SMOVE", "st", "st2", "nope"],
    &["SMOVE", "st", "st", "c"],
    &["SMOVE", "st", "st2", "c"],
    &["SADD", "st3", "1", "2", "3"],
    &["SPOP", "st3"],
    &["SPOP", "st3", "0"],
    &["SPOP", "st3", "1"],
    &["SPOP", "st3", "10"],
    &["SADD", "sa", "1", "2"],
    &["SADD", "sb", "2", "3"],
    &["SINTERSTORE", "si", "sa", "sb"],
    &["SUNIONSTORE", "su", "sa", "sb"],
    &["SDIFFSTORE", "sd", "sa", "sb"],
    &["SINTERSTORE", "si", "sa", "missing"],
    &["SDIFFSTORE", "sd", "missing", "sb"],
    &["SUNIONSTORE", "nothing", "missing"],
    &["SISMEMBER", "missing", "a"],
    &["SMEMBERS", "missing"],
    // hashes
    &["HSET", "h", "f", "1", "g", "2"],
    &["HMSET", "h", "f", "3"],
    &["HSETNX", "h", "f", "x"],
    &["HSETNX", "h", "n", "x"],
    &["HINCRBY", "h", "f", "2"],
    &["HINCRBYFLOAT", "h", "f", "0.5"],
    &["HDEL", "h", "nope"],
    &["HDEL", "h", "f", "nope"],
    &["HDEL", "h", "g", "n"],
    &["HGET", "missing", "f"],
    &["HGETALL", "missing"],
    // sorted sets
    &["ZADD", "z", "1", "a", "2", "b", "3", "c"],
    &["ZADD", "z", "1", "a"],
    &["ZADD", "z", "5", "a"],
    &["ZADD", "z", "XX", "1", "nope"],
    &["ZADD", "z", "INCR", "1", "a"],
    &["ZADD", "nozset", "XX", "1", "a"],
    &["ZINCRBY", "z", "1", "b"],
    &["ZREM", "z", "nope"],
    &["ZREM", "z", "c"],
    &["ZADD", "z", "7", "d", "8", "e", "9", "f"],
    &["ZREMRANGEBYRANK", "z", "0", "0"],
    &["ZREMRANGEBYSCORE", "z", "100", "200"],
    &["ZREMRANGEBYSCORE", "z", "0", "7"],
    &["ZREMRANGEBYLEX", "z", "-", "+"],
    &["ZADD", "za", "1", "a", "2", "b"],
    &["ZADD", "zb", "2", "b", "3", "c"],
    &["ZUNIONSTORE", "zu", "2", "za", "zb"],
    &["ZINTERSTORE", "zi", "2", "za", "zb"],
    &["ZDIFFSTORE", "zd", "2", "za", "zb"],
    &["ZRANGESTORE", "zr", "za", "0", "-1"],
    &["ZINTERSTORE", "zi", "2", "za", "missing"],
    &["ZRANGESTORE", "zr", "za", "5", "10"],
    &["ZPOPMIN", "zu"],
    &["ZPOPMAX", "zu", "5"],
    &["ZMPOP", "1", "za", "MIN", "COUNT", "5"],
    &["BZPOPMIN", "zb", "1"],
    &["BZMPOP", "1", "1", "zb", "MAX"],
    &["ZSCORE", "missing", "a"],
    &["ZRANGE", "missing", "0", "-1"],
    // geo (GEOADD is ZADD)
    &["GEOADD", "g", "13.361389", "38.115556", "Palermo"],
    &["GEOADD", "g", "NX", "13.361389", "38.115556", "Palermo"],
    // HyperLogLog
    &["PFADD", "hl", "a", "b"],
    &["PFADD", "hl", "a"],
    &["PFCOUNT", "hl"],
    &["PFMERGE", "hl2", "hl", "nohll"],
    // streams
    &["XADD", "x", "1-0", "a", "1"],
    &["XADD", "x", "MAXLEN", "1", "2-0", "a", "2"],
    &["XADD", "x", "MAXLEN", "5", "3-0", "a", "3"],
    &["XADD", "nox", "NOMKSTREAM", "*", "a", "1"],
    &["XADD", "x", "1-0", "a", "1"],
    &["XDEL", "x", "2-0"],
    &["XDEL", "x", "2-0"],
    &["XTRIM", "x", "MAXLEN", "0"],
    &["XTRIM", "x", "MAXLEN", "0"],
    &["XSETID", "x", "10-0"],
    &["XGROUP", "CREATE", "xg", "g", "$", "MKSTREAM"],
    &["XGROUP", "CREATE", "xg", "g", "$"],
    &["XGROUP", "CREATECONSUMER", "xg", "g", "c1"],
    &["XGROUP", "CREATECONSUMER", "xg", "g", "c1"],
    &["XGROUP", "SETID", "xg", "g", "0"],
    &["XADD", "xg", "1-0", "a", "1"],
    &["XREADGROUP", "GROUP", "g", "c2", "STREAMS", "xg", ">"],
    &["XCLAIM", "xg", "g", "c3", "0", "1-0", "JUSTID"],
    &["XAUTOCLAIM", "xg", "g", "c4", "0", "0"],
    &["XACK", "xg", "g", "1-0"],
    &["XGROUP", "DELCONSUMER", "xg", "g", "c1"],
    &["XGROUP", "DELCONSUMER", "xg", "g", "c1"],
    &["XGROUP", "DESTROY", "xg", "g"],
    &["XGROUP", "DESTROY", "xg", "g"],
    &["XREAD", "STREAMS", "nox", "0"],
    // SORT ... STORE
    &["RPUSH", "srt", "2", "1"],
    &["SORT", "srt", "STORE", "srtd"],
    &["SORT", "srt", "STORE", "srtd"],
    &["SORT", "nosuch", "STORE", "srtd"],
    // transactions deliver the events of their commands
    &[
        "MULTI", ";", "SET", "t1", "1", ";", "LPUSH", "t2", "a", ";", "EXEC",
    ],
    &["FLUSHALL"],
];

/// Sends one step (commands separated by `;`) and returns the events it published, as
/// `channel message` lines.
fn events_of(c: &mut RawConn, sub: &mut RawConn, args: &[&str], marker: usize) -> Vec<String> {
    for command in args.split(|a| *a == ";") {
        c.cmd_str(command);
    }
    let marker = format!("marker-{marker}");
    c.cmd_str(&["PUBLISH", "__keyspace@0__:.marker", &marker]);
    let mut events = Vec::new();
    loop {
        let reply = String::from_utf8_lossy(&sub.read_reply()).into_owned();
        let parts: Vec<&str> = reply.split("\r\n").collect();
        // *4 $8 pmessage $len pattern $len channel $len message
        let (channel, message) = (parts[6], parts[8]);
        if message == marker {
            return events;
        }
        events.push(format!("{channel} {message}"));
    }
}

fn subscriber(s: &TestServer) -> RawConn {
    let mut sub = s.raw();
    sub.cmd_str(&["PSUBSCRIBE", "__key*__:*"]);
    sub
}

#[test]
fn every_command_publishes_the_events_redis_does() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let mut diffs = Vec::new();
    let mut conns = Vec::new();
    for s in [&tessera, &redis] {
        let mut c = s.raw();
        assert_eq!(
            c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "KEAmn"]),
            "+OK\r\n"
        );
        conns.push((c, subscriber(s)));
    }
    for (i, args) in CORPUS.iter().enumerate() {
        let (t, r) = conns.split_at_mut(1);
        let a = events_of(&mut t[0].0, &mut t[0].1, args, i);
        let b = events_of(&mut r[0].0, &mut r[0].1, args, i);
        if a != b {
            diffs.push(format!("{args:?}\n  tessera: {a:?}\n  redis:   {b:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} commands publish other events than redis-server:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn expiry_and_lazy_expiry_publish_expired() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "Exm"]);
    let mut sub = subscriber(&s);
    // Active expiry.
    c.cmd_str(&["SET", "a", "1", "PX", "20"]);
    let msg = String::from_utf8_lossy(&sub.read_reply()).into_owned();
    assert!(msg.contains("__keyevent@0__:expired\r\n$1\r\na"), "{msg}");
    // Lazy expiry comes before the key miss of the same command.
    c.cmd_str(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    c.cmd_str(&["SET", "b", "1", "PX", "1"]);
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(c.cmd_str(&["GET", "b"]), "$-1\r\n");
    let first = String::from_utf8_lossy(&sub.read_reply()).into_owned();
    let second = String::from_utf8_lossy(&sub.read_reply()).into_owned();
    assert!(
        first.contains("__keyevent@0__:expired\r\n$1\r\nb"),
        "{first}"
    );
    assert!(
        second.contains("__keyevent@0__:keymiss\r\n$1\r\nb"),
        "{second}"
    );
}

#[test]
fn eviction_publishes_evicted() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "Ee"]);
    let mut sub = subscriber(&s);
    c.cmd_str(&["DEBUG", "POPULATE", "2000", "key", "100"]);
    c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]);
    c.cmd_str(&["CONFIG", "SET", "maxmemory", "1"]);
    c.cmd_str(&["GET", "x"]);
    let msg = String::from_utf8_lossy(&sub.read_reply()).into_owned();
    assert!(msg.contains("__keyevent@0__:evicted\r\n"), "{msg}");
    c.cmd_str(&["CONFIG", "SET", "maxmemory", "0"]);
}

#[test]
fn configuration_is_validated_and_printed_as_redis_does() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "Q"]),
        "-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.\r\n"
    );
    c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "KEAnm"]);
    assert_eq!(
        c.cmd_str(&["CONFIG", "GET", "notify-keyspace-events"]),
        "*2\r\n$22\r\nnotify-keyspace-events\r\n$4\r\nAKEm\r\n"
    );
    // Classes without K or E publish nothing.
    c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "A"]);
    let mut sub = subscriber(&s);
    c.cmd_str(&["SET", "k", "v"]);
    c.cmd_str(&["PUBLISH", "__keyspace@0__:x", "only"]);
    let msg = String::from_utf8_lossy(&sub.read_reply()).into_owned();
    assert!(msg.ends_with("$4\r\nonly\r\n"), "{msg}");
    // A RESP3 client gets its own events as push messages after the reply.
    let mut me = s.raw();
    me.cmd_str(&["HELLO", "3"]);
    c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "E$"]);
    me.cmd_str(&["SUBSCRIBE", "__keyevent@0__:set"]);
    assert_eq!(me.cmd_str(&["SET", "k", "v"]), "+OK\r\n");
    let push = String::from_utf8_lossy(&me.read_reply()).into_owned();
    assert!(push.starts_with(">3\r\n$7\r\nmessage\r\n"), "{push}");
}
