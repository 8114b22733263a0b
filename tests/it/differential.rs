//! The same command corpus sent to Tessera and to a real `redis-server` (Debian's 7.0): the reply
//! bytes must be identical. Commands whose reply order is unspecified compare sorted elements.

use crate::support::{RawConn, TestServer};

/// One step of the corpus: arguments, and whether the reply is an unordered array.
struct Step(&'static [&'static str], bool);

const fn s(args: &'static [&'static str]) -> Step {
    Step(args, false)
}

const fn unordered(args: &'static [&'static str]) -> Step {
    Step(args, true)
}

const CORPUS: &[Step] = &[
    // connection
    s(&["PING"]),
    s(&["PING", "hello world"]),
    s(&["PING", "a", "b"]),
    s(&["ECHO", "\u{e9}\r\n\x00"]),
    s(&["SELECT", "0"]),
    s(&["SELECT", "x"]),
    s(&["CLIENT", "SETNAME", "bad name"]),
    s(&["CLIENT", "SETNAME", "good-name"]),
    s(&["CLIENT", "GETNAME"]),
    s(&["CLIENT", "NOSUCH"]),
    s(&["CLIENT", "REPLY", "maybe"]),
    s(&["CLIENT", "PAUSE", "abc"]),
    s(&["CLIENT", "UNPAUSE"]),
    s(&["CLIENT", "KILL", "1.2.3.4:5"]),
    s(&["CLIENT", "KILL", "ID", "0"]),
    s(&["CLIENT", "NO-EVICT", "maybe"]),
    s(&["AUTH", "pw"]),
    s(&["AUTH", "a", "b", "c"]),
    s(&["HELLO", "4"]),
    s(&["HELLO", "x"]),
    // unknown commands and arity
    s(&["NOSUCHCOMMAND", "a", "b"]),
    s(&["GET"]),
    s(&["GET", "a", "b"]),
    s(&["CONFIG"]),
    s(&["CONFIG", "NOSUCH"]),
    // strings
    s(&["SET", "k", "v"]),
    s(&["GET", "k"]),
    s(&["GET", "nokey"]),
    s(&["SET", "k", "v2", "NX"]),
    s(&["SET", "k", "v3", "XX", "GET"]),
    s(&["SET", "k", "v4", "NX", "GET"]),
    s(&["SET", "nokey", "v", "XX", "GET"]),
    s(&["SET", "k", "v", "EX", "0"]),
    s(&["SET", "k", "v", "EX", "abc"]),
    s(&["SET", "k", "v", "EX", "-5"]),
    s(&["SET", "k", "v", "PX", "10", "EX", "10"]),
    s(&["SET", "k", "v", "KEEPTTL", "EX", "10"]),
    s(&["SET", "k", "v", "NX", "XX"]),
    s(&["SET", "k", "v", "EX"]),
    s(&["SET", "k", "v", "BOGUS"]),
    s(&["SET", "k", "v", "EXAT", "9223372036854775807"]),
    s(&["SET", "k", "v", "EX", "9223372036854775807"]),
    s(&["SETNX", "k", "x"]),
    s(&["SETNX", "k2", "x"]),
    s(&["SETEX", "k", "0", "v"]),
    s(&["SETEX", "k", "abc", "v"]),
    s(&["PSETEX", "k", "-1", "v"]),
    s(&["SETEX", "ex", "100", "v"]),
    s(&["TTL", "ex"]),
    s(&["GETSET", "k", "new"]),
    s(&["GETSET", "fresh", "v"]),
    s(&["GETDEL", "k"]),
    s(&["GETDEL", "k"]),
    s(&["GETEX", "fresh"]),
    s(&["GETEX", "fresh", "EX", "0"]),
    s(&["GETEX", "fresh", "PERSIST", "EX", "10"]),
    s(&["GETEX", "fresh", "EXAT", "1"]),
    s(&["EXISTS", "fresh"]),
    s(&["MSET", "a", "1", "b", "2"]),
    s(&["MSET", "a", "1", "b"]),
    s(&["MGET", "a", "b", "nokey"]),
    s(&["MSETNX", "a", "1", "c", "3"]),
    s(&["MSETNX", "c", "3", "d", "4"]),
    s(&["APPEND", "a", "23"]),
    s(&["APPEND", "newkey", "xyz"]),
    s(&["STRLEN", "a"]),
    s(&["STRLEN", "nokey"]),
    s(&["INCR", "a"]),
    s(&["INCRBY", "a", "10"]),
    s(&["INCRBY", "a", "abc"]),
    s(&["INCRBY", "a", " 1"]),
    s(&["DECRBY", "a", "5"]),
    s(&["DECR", "counter"]),
    s(&["INCR", "newkey"]),
    s(&["SET", "max", "9223372036854775807"]),
    s(&["INCR", "max"]),
    s(&["DECRBY", "max", "-9223372036854775808"]),
    s(&["SET", "min", "-9223372036854775808"]),
    s(&["DECR", "min"]),
    s(&["INCRBYFLOAT", "f", "1.5"]),
    s(&["INCRBYFLOAT", "f", "2.25"]),
    s(&["INCRBYFLOAT", "f", "abc"]),
    s(&["INCRBYFLOAT", "f", "1e2"]),
    s(&["INCRBYFLOAT", "newkey", "1"]),
    s(&["SET", "ld", "0.1"]),
    s(&["INCRBYFLOAT", "ld", "0.2"]),
    s(&["INCRBYFLOAT", "ld", "1000000"]),
    s(&["INCRBYFLOAT", "ld", "-1000000.3"]),
    s(&["INCRBYFLOAT", "ld", "1e300"]),
    s(&["INCRBYFLOAT", "ld", "-1e300"]),
    s(&["INCRBYFLOAT", "ld", "0x1.8p1"]),
    s(&["INCRBYFLOAT", "ld", "1e-20"]),
    s(&["INCRBYFLOAT", "ld", "inf"]),
    s(&["INCRBYFLOAT", "ld", "1e5000"]),
    s(&["INCRBYFLOAT", "ld", " 1"]),
    s(&["SET", "ld", "1.1e4932"]),
    s(&["INCRBYFLOAT", "ld", "1.1e4932"]),
    s(&["INCRBYFLOAT", "ld", "-2.2e4932"]),
    s(&["SET", "str", "Hello World"]),
    s(&["GETRANGE", "str", "0", "4"]),
    s(&["GETRANGE", "str", "-5", "-1"]),
    s(&["GETRANGE", "str", "5", "3"]),
    s(&["GETRANGE", "str", "-1", "-5"]),
    s(&["GETRANGE", "str", "0", "100"]),
    s(&["GETRANGE", "nokey", "0", "-1"]),
    s(&["GETRANGE", "str", "x", "1"]),
    s(&["SUBSTR", "str", "0", "2"]),
    s(&["SETRANGE", "str", "6", "Redis"]),
    s(&["GET", "str"]),
    s(&["SETRANGE", "str", "20", "!"]),
    s(&["GET", "str"]),
    s(&["SETRANGE", "nokey2", "0", ""]),
    s(&["EXISTS", "nokey2"]),
    s(&["SETRANGE", "str", "-1", "x"]),
    s(&["SETRANGE", "str", "536870911", "xx"]),
    s(&["SET", "num", "12"]),
    s(&["SETRANGE", "num", "1", "3"]),
    s(&["GET", "num"]),
    // LCS
    s(&["MSET", "lcs1", "ohmytext", "lcs2", "mynewtext"]),
    s(&["LCS", "lcs1", "lcs2"]),
    s(&["LCS", "lcs1", "lcs2", "LEN"]),
    s(&["LCS", "lcs1", "lcs2", "IDX"]),
    s(&[
        "LCS",
        "lcs1",
        "lcs2",
        "IDX",
        "MINMATCHLEN",
        "4",
        "WITHMATCHLEN",
    ]),
    s(&["LCS", "lcs1", "lcs2", "IDX", "LEN"]),
    s(&["LCS", "lcs1", "nokey"]),
    s(&["LCS", "lcs1", "lcs2", "BOGUS"]),
    // bitmaps
    s(&["SETBIT", "bm", "7", "1"]),
    s(&["SETBIT", "bm", "7", "0"]),
    s(&["SETBIT", "bm", "100", "1"]),
    s(&["SETBIT", "bm", "-1", "1"]),
    s(&["SETBIT", "bm", "4294967296", "1"]),
    s(&["SETBIT", "bm", "1", "2"]),
    s(&["GETBIT", "bm", "100"]),
    s(&["GETBIT", "bm", "1000000"]),
    s(&["GETBIT", "nokey", "1"]),
    s(&["SET", "foobar", "foobar"]),
    s(&["BITCOUNT", "foobar"]),
    s(&["BITCOUNT", "foobar", "0", "0"]),
    s(&["BITCOUNT", "foobar", "1", "1"]),
    s(&["BITCOUNT", "foobar", "1", "1", "BYTE"]),
    s(&["BITCOUNT", "foobar", "5", "30", "BIT"]),
    s(&["BITCOUNT", "foobar", "-3", "-1", "BIT"]),
    s(&["BITCOUNT", "foobar", "-1", "-3"]),
    s(&["BITCOUNT", "foobar", "0"]),
    s(&["BITCOUNT", "foobar", "0", "1", "BOGUS"]),
    s(&["BITCOUNT", "nokey"]),
    s(&["BITPOS", "foobar", "1"]),
    s(&["BITPOS", "foobar", "0"]),
    s(&["BITPOS", "foobar", "1", "2"]),
    s(&["BITPOS", "foobar", "1", "2", "-1", "BYTE"]),
    s(&["BITPOS", "foobar", "1", "7", "15", "BIT"]),
    s(&["BITPOS", "foobar", "0", "0", "-1"]),
    s(&["BITPOS", "foobar", "0", "3", "30", "BIT"]),
    s(&["BITPOS", "foobar", "0", "9", "12", "BIT"]),
    s(&["BITPOS", "foobar", "2"]),
    s(&["BITPOS", "nokey", "0"]),
    s(&["BITPOS", "nokey", "1"]),
    s(&["BITPOS", "foobar", "1", "10", "5"]),
    s(&["SET", "ones", "\u{7f}\u{7f}"]),
    s(&["BITPOS", "ones", "0"]),
    s(&["BITPOS", "ones", "0", "0", "-1"]),
    s(&["BITPOS", "ones", "1", "1", "-1", "BIT"]),
    s(&["BITOP", "AND", "dest", "foobar", "lcs1"]),
    s(&["GET", "dest"]),
    s(&["BITOP", "OR", "dest", "foobar", "lcs1"]),
    s(&["GET", "dest"]),
    s(&["BITOP", "XOR", "dest", "foobar", "nokey"]),
    s(&["GET", "dest"]),
    s(&["BITOP", "NOT", "dest", "foobar"]),
    s(&["GET", "dest"]),
    s(&["BITOP", "NOT", "dest", "foobar", "lcs1"]),
    s(&["BITOP", "NAND", "dest", "foobar"]),
    s(&["BITOP", "AND", "dest", "nokey", "nokey2"]),
    s(&["EXISTS", "dest"]),
    s(&[
        "BITFIELD", "bf", "SET", "i8", "0", "100", "GET", "i8", "0", "INCRBY", "i8", "0", "100",
    ]),
    s(&[
        "BITFIELD", "bf", "OVERFLOW", "SAT", "INCRBY", "i8", "0", "100", "OVERFLOW", "FAIL",
        "INCRBY", "i8", "0", "1",
    ]),
    s(&[
        "BITFIELD", "bf", "SET", "u8", "#1", "-1", "OVERFLOW", "SAT", "SET", "u8", "#2", "-1",
        "OVERFLOW", "FAIL", "SET", "u8", "#3", "300",
    ]),
    s(&[
        "BITFIELD", "bf", "GET", "u4", "0", "GET", "i5", "3", "GET", "u63", "0", "GET", "i64", "0",
    ]),
    s(&[
        "BITFIELD", "bf", "INCRBY", "u2", "100", "1", "OVERFLOW", "WRAP", "INCRBY", "u2", "100",
        "-5",
    ]),
    s(&["GET", "bf"]),
    s(&["BITFIELD", "bf", "GET", "u64", "0"]),
    s(&["BITFIELD", "bf", "GET", "i8", "-1"]),
    s(&["BITFIELD", "bf", "GET", "i8"]),
    s(&["BITFIELD", "bf", "OVERFLOW", "MAYBE"]),
    s(&["BITFIELD", "bf", "SET", "i8", "0", "x"]),
    s(&["BITFIELD", "nokey", "GET", "u8", "0"]),
    s(&["EXISTS", "nokey"]),
    s(&["BITFIELD_RO", "bf", "GET", "u8", "0"]),
    s(&["BITFIELD_RO", "bf", "SET", "u8", "0", "1"]),
    s(&["BITFIELD", "foobar"]),
    // hashes
    s(&["HSET", "h", "f1", "v1", "f2", "v2", "f3", "3"]),
    s(&["HSET", "h", "f1", "v1b", "f4", "v4"]),
    s(&["HSET", "h", "f1"]),
    s(&["HMSET", "h", "f5", "v5"]),
    s(&["HGETALL", "h"]),
    s(&["HKEYS", "h"]),
    s(&["HVALS", "h"]),
    s(&["HGET", "h", "f1"]),
    s(&["HGET", "h", "nofield"]),
    s(&["HGET", "nokey", "f"]),
    s(&["HMGET", "h", "f1", "nofield", "f2"]),
    s(&["HMGET", "nokey", "a", "b"]),
    s(&["HLEN", "h"]),
    s(&["HLEN", "nokey"]),
    s(&["HSTRLEN", "h", "f1"]),
    s(&["HSTRLEN", "h", "nofield"]),
    s(&["HEXISTS", "h", "f2"]),
    s(&["HEXISTS", "h", "nofield"]),
    s(&["HSETNX", "h", "f1", "x"]),
    s(&["HSETNX", "h", "f6", "v6"]),
    s(&["HDEL", "h", "f2", "f2", "nofield"]),
    s(&["HGETALL", "h"]),
    s(&["OBJECT", "ENCODING", "h"]),
    s(&["TYPE", "h"]),
    s(&["HINCRBY", "h", "f3", "10"]),
    s(&["HINCRBY", "h", "f1", "1"]),
    s(&["HINCRBY", "h", "new", "-5"]),
    s(&["HINCRBY", "h", "f3", "x"]),
    s(&["HSET", "h", "max", "9223372036854775807"]),
    s(&["HINCRBY", "h", "max", "1"]),
    s(&["HINCRBYFLOAT", "h", "fl", "0.1"]),
    s(&["HINCRBYFLOAT", "h", "fl", "0.2"]),
    s(&["HINCRBYFLOAT", "h", "f1", "1"]),
    s(&["HINCRBYFLOAT", "h", "fl", "abc"]),
    s(&["HINCRBYFLOAT", "h", "fl", "inf"]),
    s(&["HINCRBYFLOAT", "nohash", "f", "abc"]),
    s(&["EXISTS", "nohash"]),
    s(&["HGETALL", "h"]),
    s(&["GET", "h"]),
    s(&["HGET", "str", "f"]),
    s(&["HSET", "str", "f", "v"]),
    s(&[
        "HDEL", "h", "f1", "f3", "f4", "f5", "f6", "new", "max", "fl",
    ]),
    s(&["EXISTS", "h"]),
    s(&[
        "HSET",
        "big",
        "f",
        "0123456789012345678901234567890123456789012345678901234567890123456789",
    ]),
    s(&["OBJECT", "ENCODING", "big"]),
    s(&["HRANDFIELD", "nokey"]),
    s(&["HRANDFIELD", "nokey", "3"]),
    s(&["HRANDFIELD", "big"]),
    s(&["HRANDFIELD", "big", "0"]),
    s(&["HRANDFIELD", "big", "5", "WITHVALUES"]),
    s(&["HRANDFIELD", "big", "-2", "WITHVALUES"]),
    s(&["HRANDFIELD", "big", "1", "BOGUS"]),
    s(&["HRANDFIELD", "big", "-9223372036854775808"]),
    s(&["HSCAN", "big", "0"]),
    s(&["HSCAN", "nokey", "0"]),
    s(&["HSCAN", "big", "0", "MATCH", "x*"]),
    s(&["HSCAN", "big", "abc"]),
    s(&["HSCAN", "big", "0", "TYPE", "string"]),
    s(&["HSET", "h2", "a", "1", "b", "2", "c", "3"]),
    s(&["HSCAN", "h2", "0", "MATCH", "[ab]", "COUNT", "1"]),
    s(&["DEBUG", "DIGEST-VALUE", "h2", "big"]),
    s(&["CONFIG", "SET", "hash-max-listpack-entries", "2"]),
    s(&["HSET", "h3", "a", "1", "b", "2"]),
    s(&["OBJECT", "ENCODING", "h3"]),
    s(&["HSET", "h3", "c", "3"]),
    s(&["OBJECT", "ENCODING", "h3"]),
    unordered(&["HKEYS", "h3"]),
    s(&["CONFIG", "SET", "hash-max-listpack-entries", "128"]),
    s(&["CONFIG", "GET", "hash-max-ziplist-entries"]),
    // keys
    s(&["EXISTS", "a", "b", "a", "nokey"]),
    s(&["TYPE", "a"]),
    s(&["TYPE", "nokey"]),
    s(&["RENAME", "a", "a2"]),
    s(&["RENAME", "nokey", "x"]),
    s(&["RENAME", "a2", "a2"]),
    s(&["RENAMENX", "a2", "b"]),
    s(&["RENAMENX", "a2", "a3"]),
    s(&["COPY", "a3", "a4"]),
    s(&["COPY", "a3", "a4"]),
    s(&["COPY", "a3", "a4", "REPLACE"]),
    s(&["COPY", "a3", "a3"]),
    s(&["COPY", "a3", "a5", "BOGUS"]),
    s(&["DEL", "a3", "a4", "nokey"]),
    s(&["UNLINK", "b"]),
    unordered(&["KEYS", "*"]),
    unordered(&["KEYS", "m*"]),
    s(&["KEYS", "nomatch*"]),
    s(&["DBSIZE"]),
    s(&["SCAN", "abc"]),
    s(&["SCAN", "0", "COUNT", "0"]),
    s(&["SCAN", "0", "BOGUS", "1"]),
    s(&["SCAN", "0", "COUNT"]),
    // expiry, with absolute times so the replies are deterministic
    s(&["SET", "e", "v"]),
    s(&["TTL", "e"]),
    s(&["PTTL", "nokey"]),
    s(&["EXPIRETIME", "e"]),
    s(&["EXPIREAT", "e", "4102444800"]),
    s(&["EXPIRETIME", "e"]),
    s(&["PEXPIRETIME", "e"]),
    s(&["EXPIREAT", "e", "4102444801", "NX"]),
    s(&["EXPIREAT", "e", "4102444801", "XX"]),
    s(&["EXPIREAT", "e", "4102444700", "GT"]),
    s(&["EXPIREAT", "e", "4102444700", "LT"]),
    s(&["EXPIRETIME", "e"]),
    s(&["PEXPIREAT", "e", "4102444800123"]),
    s(&["PEXPIRETIME", "e"]),
    s(&["EXPIRE", "e", "10", "NX", "XX"]),
    s(&["EXPIRE", "e", "10", "GT", "LT"]),
    s(&["EXPIRE", "e", "10", "BOGUS"]),
    s(&["EXPIRE", "e", "abc"]),
    s(&["EXPIRE", "e", "9223372036854775807"]),
    s(&["PEXPIRE", "e", "9223372036854775807"]),
    s(&["PERSIST", "e"]),
    s(&["PERSIST", "e"]),
    s(&["PEXPIREAT", "e", "9223372036854775807"]),
    s(&["PEXPIRETIME", "e"]),
    s(&["PERSIST", "e"]),
    s(&["CLIENT", "PAUSE", "9223372036854775807", "WRITE"]),
    s(&["CLIENT", "UNPAUSE"]),
    s(&["EXPIRE", "e", "100", "GT"]),
    s(&["EXPIRE", "e", "100", "LT"]),
    s(&["EXPIRE", "nokey", "10"]),
    s(&["EXPIRE", "e", "-1"]),
    s(&["EXISTS", "e"]),
    s(&["TOUCH", "a2", "nokey", "max"]),
    // objects
    s(&["SET", "int", "12345"]),
    s(&["SET", "emb", "hello"]),
    s(&["SET", "lead0", "0123"]),
    s(&["OBJECT", "ENCODING", "int"]),
    s(&["OBJECT", "ENCODING", "emb"]),
    s(&["OBJECT", "ENCODING", "lead0"]),
    s(&["OBJECT", "ENCODING", "str"]),
    s(&["OBJECT", "ENCODING", "nokey"]),
    s(&["OBJECT", "FREQ", "int"]),
    s(&["OBJECT", "HELP"]),
    s(&["OBJECT", "NOSUCH", "int"]),
    // DEBUG DIGEST uses Redis's algorithm: the same data gives the same digest.
    s(&["DEBUG", "DIGEST"]),
    s(&["DEBUG", "DIGEST-VALUE", "int", "emb", "str", "nokey"]),
    s(&["SETEX", "volatile", "1000", "v"]),
    s(&["DEBUG", "DIGEST-VALUE", "volatile"]),
    s(&["DEBUG", "DIGEST"]),
    // server and introspection
    s(&["CONFIG", "GET", "maxclients"]),
    s(&["CONFIG", "GET", "nosuchparam"]),
    s(&["CONFIG", "SET", "hz", "abc"]),
    s(&["CONFIG", "SET", "nosuch", "1"]),
    s(&["CONFIG", "SET", "maxclients"]),
    s(&["CONFIG", "HELP"]),
    s(&["SLOWLOG", "HELP"]),
    s(&["LATENCY", "HELP"]),
    s(&["LATENCY", "HISTOGRAM", "nosuchcommand"]),
    s(&["SLOWLOG", "GET", "-2"]),
    s(&["DEBUG", "NOSUCH"]),
    s(&["COMMAND", "INFO", "get", "set", "nosuchcommand"]),
    // Not `COMMAND INFO object`: Redis lists subcommands in its randomly seeded dict order.
    s(&["COMMAND", "INFO", "incr", "mget", "ping"]),
    s(&["COMMAND", "DOCS", "get", "set"]),
    s(&["COMMAND", "GETKEYS", "set", "a", "b"]),
    s(&["COMMAND", "GETKEYS", "mset", "a", "1", "b", "2"]),
    s(&["COMMAND", "GETKEYS", "eval", "return 1", "2", "x", "y", "z"]),
    s(&["COMMAND", "GETKEYS", "get"]),
    s(&["COMMAND", "GETKEYS", "ping"]),
    s(&["COMMAND", "GETKEYS", "nosuch"]),
    s(&["COMMAND", "GETKEYS", "eval", "s", "x"]),
    s(&["COMMAND", "GETKEYS", "eval", "s", "0"]),
    s(&["COMMAND", "GETKEYS", "get", "k"]),
    s(&["COMMAND", "GETKEYSANDFLAGS", "set", "a", "b"]),
    s(&[
        "COMMAND",
        "GETKEYSANDFLAGS",
        "set",
        "a",
        "b",
        "EX",
        "get",
        "GET",
    ]),
    s(&[
        "COMMAND",
        "GETKEYSANDFLAGS",
        "bitfield",
        "a",
        "GET",
        "u8",
        "0",
    ]),
    s(&[
        "COMMAND",
        "GETKEYSANDFLAGS",
        "bitfield",
        "a",
        "SET",
        "u8",
        "0",
        "1",
    ]),
    s(&["COMMAND", "GETKEYSANDFLAGS", "mset", "a", "1", "b", "2"]),
    s(&["COMMAND", "GETKEYS", "zunionstore", "d", "x", "a"]),
    s(&["COMMAND", "HELP"]),
    unordered(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "incrby*"]),
    unordered(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "bitmap"]),
    s(&["COMMAND", "LIST", "FILTERBY", "MODULE", "x"]),
    s(&["COMMAND", "LIST", "FILTERBY", "PATTERN"]),
    s(&["COMMAND", "LIST", "PATTERN", "x"]),
    s(&["SHUTDOWN", "BOGUS"]),
];

fn run(conn: &mut RawConn, step: &Step) -> Vec<u8> {
    let args: Vec<&[u8]> = step.0.iter().map(|a| a.as_bytes()).collect();
    let reply = conn.cmd(&args);
    if !step.1 {
        return reply;
    }
    // An unordered array: compare its elements sorted.
    let text = String::from_utf8_lossy(&reply).into_owned();
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    let header = lines.remove(0);
    let mut items: Vec<String> = lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| c.join("\r\n"))
        .collect();
    items.sort();
    format!("{header}\r\n{}", items.join("\r\n")).into_bytes()
}

fn compare(resp3: bool) {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let mut t = tessera.raw();
    let mut r = redis.raw();
    if resp3 {
        t.cmd_str(&["HELLO", "3"]);
        r.cmd_str(&["HELLO", "3"]);
    }
    let mut diffs = Vec::new();
    for step in CORPUS {
        let (a, b) = (run(&mut t, step), run(&mut r, step));
        if a != b {
            diffs.push(format!(
                "{:?}\n  tessera: {:?}\n  redis:   {:?}",
                step.0,
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} replies differ from redis-server:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn replies_match_redis_server_resp2() {
    compare(false);
}

#[test]
fn replies_match_redis_server_resp3() {
    compare(true);
}

/// The field names of `INFO everything` on a fresh server, without per-command, per-error and
/// per-database lines and Tessera's own `tessera_version`.
fn info_fields(server: &TestServer) -> Vec<String> {
    let text = server.raw().cmd_str(&["INFO", "everything"]);
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.to_string()))
        .filter(|n| {
            !["cmdstat_", "errorstat_", "latency_percentiles_usec_", "db"]
                .iter()
                .any(|p| n.starts_with(p))
                && n != "tessera_version"
        })
        .collect()
}

#[test]
fn info_has_every_redis_field_in_redis_order() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    assert_eq!(info_fields(&tessera), info_fields(&redis));
}
