//! Every command of the command table through the proxy to a 3-shard database, compared with one
//! real redis-server given the same commands (issue 8): the differential corpus and the steps
//! below, once with every key in one slot and once with the keys where they fall. Across slots
//! a multi-key command the proxy cannot split answers Redis Cluster's CROSSSLOT error (and is
//! then not sent to redis-server, so both hold the same data). The commands the proxy answers
//! differently by design are listed in `DIFFERENT`; the test fails on any command of the table
//! that no step reaches.

use std::collections::BTreeSet;
use std::time::Duration;

use tessera_protocol::command::CommandSpec;
use tessera_protocol::slot::pattern_hash_slot;
use tessera_protocol::{CommandTable, key_hash_slot};

use crate::differential::{CORPUS, Step, s, sorted, unordered};
use crate::proxy::proxied_db;
use crate::support::{RawConn, TestServer, assert_no_diffs};

/// How the proxy's reply to a command relates to redis-server's, where it is not the same bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Refused: `ERR <NAME> is not available through the proxy: ...` (docs/COMMANDS.md says why).
    Refused,
    /// Answered by the proxy as the one node of a cluster (a standalone redis-server has cluster
    /// support disabled); checked in `proxy.rs`. Here: any reply but an error.
    AsClusterNode,
    /// A reply that differs between any two servers (ids, clocks, memory, counters, random
    /// picks, compression): the same RESP type as redis-server's.
    Shape,
    /// An integer of seconds read off a clock that ticks between the two servers' replies (or
    /// under load, between the two requests): within 2 of redis-server's.
    Seconds,
    /// The proxy's reply, exactly, where a standalone redis-server answers otherwise (Redis
    /// Cluster's refusals, a Redis 7.2 command, the shards' config files).
    Is(&'static str),
    /// Not in Tessera yet (docs/COMMANDS.md): the shard's unknown (sub)command error.
    NotInTessera,
}

const DIFFERENT: &[(&str, Expect)] = {
    use Expect::*;
    &[
        ("acl|genpass", Shape),
        // The users are the cluster configuration's: nothing to save, nothing to load (a
        // redis-server without an ACL file refuses both).
        ("acl|load", Is("+OK\r\n")),
        ("acl|save", Is("+OK\r\n")),
        ("asking", AsClusterNode),
        ("readonly", AsClusterNode),
        ("readwrite", AsClusterNode),
        ("cluster|addslots", Refused),
        ("cluster|addslotsrange", Refused),
        ("cluster|bumpepoch", Refused),
        ("cluster|count-failure-reports", Refused),
        ("cluster|countkeysinslot", AsClusterNode),
        ("cluster|delslots", Refused),
        ("cluster|delslotsrange", Refused),
        ("cluster|failover", Refused),
        ("cluster|flushslots", Refused),
        ("cluster|forget", Refused),
        ("cluster|getkeysinslot", AsClusterNode),
        ("cluster|help", Refused),
        ("cluster|info", AsClusterNode),
        ("cluster|keyslot", AsClusterNode),
        ("cluster|links", Refused),
        ("cluster|meet", Refused),
        ("cluster|myid", AsClusterNode),
        ("cluster|myshardid", AsClusterNode),
        ("cluster|nodes", AsClusterNode),
        ("cluster|replicas", Refused),
        ("cluster|replicate", Refused),
        ("cluster|reset", Refused),
        ("cluster|saveconfig", Refused),
        ("cluster|set-config-epoch", Refused),
        ("cluster|setslot", Refused),
        ("cluster|shards", AsClusterNode),
        ("cluster|slaves", Refused),
        ("cluster|slots", AsClusterNode),
        ("client|no-evict", Refused),
        ("client|no-touch", Refused),
        ("client|id", Shape),
        ("client|info", Shape),
        ("client|list", Shape),
        ("debug", Refused),
        ("failover", Refused),
        ("module|help", Refused),
        ("module|list", Refused),
        ("module|load", Refused),
        ("module|loadex", Refused),
        ("module|unload", Refused),
        ("monitor", Is("+OK\r\n")),
        ("psync", Refused),
        ("replconf", Refused),
        ("replicaof", Refused),
        ("shutdown", Refused),
        ("slaveof", Refused),
        ("sync", Refused),
        ("info", Shape),
        ("lastsave", Shape),
        ("time", Shape),
        ("object|idletime", Seconds),
        ("role", Shape),
        ("latency|doctor", Shape),
        ("slowlog|get", Shape),
        ("slowlog|len", Shape),
        ("bgsave", Shape),
        ("bgrewriteaof", Shape),
        ("randomkey", Shape),
        // Redis 7.2's text: SETINFO, NO-TOUCH and KILL ID are there too.
        ("client|help", Shape),
        // Tessera never LZF-compresses what it dumps.
        ("function|dump", Shape),
        // Tessera's COMMAND lists only the commands it has.
        ("command|count", Shape),
        ("move", Is("-ERR MOVE is not allowed in cluster mode\r\n")),
        (
            "swapdb",
            Is("-ERR SWAPDB is not allowed in cluster mode\r\n"),
        ),
        ("client|setinfo", Is("+OK\r\n")),
        ("config|rewrite", Is("+OK\r\n")),
        // Issue 8 leaves these to a later issue (docs/COMMANDS.md).
        ("migrate", NotInTessera),
        ("lolwut", NotInTessera),
        ("script|debug", NotInTessera),
        ("memory|doctor", NotInTessera),
        ("memory|help", NotInTessera),
        ("memory|malloc-stats", NotInTessera),
        ("memory|purge", NotInTessera),
        ("memory|stats", NotInTessera),
        ("memory|usage", NotInTessera),
    ]
};

/// Steps for the commands the differential corpus leaves out.
const EXTRA: &[Step] = &[
    s(&["SET", "dk", "v"]),
    s(&["DUMP", "nokey"]),
    s(&["RESTORE", "dk2", "0", "not a payload"]),
    s(&["RESTORE-ASKING", "dk2", "0", "not a payload"]),
    s(&["OBJECT", "REFCOUNT", "dk"]),
    s(&["OBJECT", "IDLETIME", "dk"]),
    s(&["MOVE", "dk", "1"]),
    // SORT BY and GET with a pattern in the sorted key's slot run in cluster mode too.
    s(&["RPUSH", "{t}sl2", "2", "1", "3"]),
    s(&["MSET", "{t}w_1", "5", "{t}w_2", "0", "{t}w_3", "9"]),
    s(&[
        "SORT", "{t}sl2", "BY", "{t}w_*", "GET", "#", "GET", "{t}w_*",
    ]),
    s(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "dk"]),
    s(&["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "dk"]),
    s(&["SCRIPT", "LOAD", "return 1"]),
    s(&[
        "SCRIPT",
        "EXISTS",
        "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
        "ffff",
    ]),
    s(&["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"]),
    s(&[
        "EVALSHA_RO",
        "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
        "0",
    ]),
    s(&["SCRIPT", "KILL"]),
    s(&["SCRIPT", "DEBUG", "NO"]),
    s(&["SCRIPT", "FLUSH"]),
    s(&[
        "SCRIPT",
        "EXISTS",
        "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
    ]),
    s(&["SCRIPT", "HELP"]),
    s(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=tablelib\nredis.register_function{function_name='tf', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}",
    ]),
    s(&["FCALL", "tf", "1", "dk"]),
    s(&["FCALL_RO", "tf", "1", "dk"]),
    s(&["FUNCTION", "LIST"]),
    s(&["FUNCTION", "STATS"]),
    s(&["FUNCTION", "KILL"]),
    s(&["FUNCTION", "HELP"]),
    s(&["FUNCTION", "RESTORE", "not a payload"]),
    s(&["FUNCTION", "DUMP"]),
    s(&["FUNCTION", "DELETE", "tablelib"]),
    s(&["FUNCTION", "DELETE", "tablelib"]),
    s(&["FUNCTION", "FLUSH"]),
    s(&["RANDOMKEY"]),
    s(&["COMMAND", "COUNT"]),
    s(&["CONFIG", "RESETSTAT"]),
    s(&["CONFIG", "REWRITE"]),
    s(&["SAVE"]),
    s(&["BGSAVE"]),
    s(&["BGREWRITEAOF"]),
    s(&["LASTSAVE"]),
    s(&["TIME"]),
    s(&["INFO", "keyspace"]),
    s(&["ROLE"]),
    s(&["LOLWUT"]),
    s(&["MEMORY", "USAGE", "dk"]),
    s(&["MEMORY", "DOCTOR"]),
    s(&["MEMORY", "STATS"]),
    s(&["MEMORY", "MALLOC-STATS"]),
    s(&["MEMORY", "PURGE"]),
    s(&["MEMORY", "HELP"]),
    s(&["LATENCY", "DOCTOR"]),
    s(&["LATENCY", "GRAPH", "command"]),
    s(&["LATENCY", "HISTORY", "command"]),
    s(&["LATENCY", "LATEST"]),
    s(&["LATENCY", "RESET"]),
    s(&["SLOWLOG", "GET", "1"]),
    s(&["SLOWLOG", "LEN"]),
    s(&["SLOWLOG", "RESET"]),
    s(&["CLIENT", "HELP"]),
    s(&["CLIENT", "ID"]),
    s(&["CLIENT", "INFO"]),
    s(&["CLIENT", "LIST"]),
    s(&["CLIENT", "SETINFO", "LIB-NAME", "table"]),
    s(&["CLIENT", "NO-TOUCH", "ON"]),
    s(&["CLIENT", "TRACKING", "ON"]),
    s(&["CLIENT", "CACHING", "YES"]),
    s(&["CLIENT", "GETREDIR"]),
    s(&["CLIENT", "TRACKINGINFO"]),
    s(&["CLIENT", "REPLY", "ON"]),
    s(&["CLIENT", "PAUSE", "0", "WRITE"]),
    s(&["CLIENT", "UNPAUSE"]),
    s(&["CLIENT", "UNBLOCK", "999999"]),
    s(&["PUBSUB", "SHARDCHANNELS"]),
    s(&["PUBSUB", "SHARDNUMSUB", "a", "b"]),
    s(&["MIGRATE", "127.0.0.1", "1", "dk", "0", "10"]),
    s(&["WAIT", "0", "0"]),
    s(&["SWAPDB", "0", "1"]),
    s(&["ASKING"]),
    s(&["READONLY"]),
    s(&["READWRITE"]),
    s(&["FAILOVER", "ABORT"]),
    s(&["REPLICAOF", "NO", "ONE"]),
    s(&["SLAVEOF", "NO", "ONE"]),
    s(&["REPLCONF", "ACK", "0"]),
    s(&["PSYNC", "?", "-1"]),
    s(&["SYNC"]),
    s(&["MODULE", "HELP"]),
    s(&["MODULE", "LIST"]),
    s(&["MODULE", "LOAD", "/nonexistent.so"]),
    s(&["MODULE", "LOADEX", "/nonexistent.so"]),
    s(&["MODULE", "UNLOAD", "nosuch"]),
    s(&["ACL", "CAT"]),
    s(&["ACL", "DELUSER", "nosuch"]),
    s(&["ACL", "DRYRUN", "default", "GET", "k"]),
    s(&["ACL", "GENPASS"]),
    s(&["ACL", "GETUSER", "default"]),
    s(&["ACL", "HELP"]),
    s(&["ACL", "LIST"]),
    s(&["ACL", "LOAD"]),
    s(&["ACL", "LOG"]),
    s(&["ACL", "SAVE"]),
    s(&["ACL", "SETUSER", "nosuch", "off"]),
    s(&["ACL", "USERS"]),
    s(&["ACL", "WHOAMI"]),
    s(&["CLUSTER", "ADDSLOTS", "1"]),
    s(&["CLUSTER", "ADDSLOTSRANGE", "1", "2"]),
    s(&["CLUSTER", "BUMPEPOCH"]),
    s(&["CLUSTER", "COUNT-FAILURE-REPORTS", "x"]),
    s(&["CLUSTER", "COUNTKEYSINSLOT", "1"]),
    s(&["CLUSTER", "DELSLOTS", "1"]),
    s(&["CLUSTER", "DELSLOTSRANGE", "1", "2"]),
    s(&["CLUSTER", "FAILOVER"]),
    s(&["CLUSTER", "FLUSHSLOTS"]),
    s(&["CLUSTER", "FORGET", "x"]),
    s(&["CLUSTER", "GETKEYSINSLOT", "1", "1"]),
    s(&["CLUSTER", "HELP"]),
    s(&["CLUSTER", "INFO"]),
    s(&["CLUSTER", "KEYSLOT", "x"]),
    s(&["CLUSTER", "LINKS"]),
    s(&["CLUSTER", "MEET", "127.0.0.1", "1"]),
    s(&["CLUSTER", "MYID"]),
    s(&["CLUSTER", "MYSHARDID"]),
    s(&["CLUSTER", "NODES"]),
    s(&["CLUSTER", "REPLICAS", "x"]),
    s(&["CLUSTER", "REPLICATE", "x"]),
    s(&["CLUSTER", "RESET"]),
    s(&["CLUSTER", "SAVECONFIG"]),
    s(&["CLUSTER", "SET-CONFIG-EPOCH", "1"]),
    s(&["CLUSTER", "SETSLOT", "1", "STABLE"]),
    s(&["CLUSTER", "SHARDS"]),
    s(&["CLUSTER", "SLAVES", "x"]),
    s(&["CLUSTER", "SLOTS"]),
    s(&["DEBUG", "SLEEP", "0"]),
    unordered(&["KEYS", "*"]),
    s(&["FLUSHDB"]),
    s(&["RANDOMKEY"]),
    s(&["RESET"]),
    s(&["QUIT"]),
];

/// The command (`config|get` for a subcommand) a request names, if the table has it.
fn spec_of(args: &[String]) -> Option<&'static CommandSpec> {
    let table = CommandTable::redis();
    let spec = table.get(args.first()?.as_bytes())?;
    match args.get(1) {
        Some(sub) if spec.is_container() => spec.subcommand(sub.as_bytes()),
        _ if spec.is_container() => None,
        _ => Some(spec),
    }
}

/// SORT's refusal in cluster mode of a BY or GET pattern forming keys in other slots than the
/// sorted key's, where the step has such a pattern.
fn sort_pattern_denied(args: &[String], reply: &str) -> bool {
    let Some(option) = ["BY", "GET"].into_iter().find(|o| {
        reply.starts_with(&format!(
            "-ERR {o} option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots."
        ))
    }) else {
        return false;
    };
    let slot = key_hash_slot(args[1].as_bytes());
    args.windows(2).any(|w| {
        w[0].eq_ignore_ascii_case(option)
            && w[1].contains('*')
            && pattern_hash_slot(w[1].as_bytes()) != Some(slot)
    })
}

fn expectation(name: &str) -> Option<Expect> {
    DIFFERENT.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}

/// A RESP3 message or invalidation push: it may come before or after replies to later
/// commands through the proxy (it comes over another shard connection), so messages are
/// compared apart. (A flush invalidates once per shard through the proxy.)
fn is_message(frame: &[u8]) -> bool {
    [
        &b">3\r\n$7\r\nmessage\r\n"[..],
        b">4\r\n$8\r\npmessage\r\n",
        b">3\r\n$8\r\nsmessage\r\n",
        b">2\r\n$10\r\ninvalidate\r\n",
    ]
    .iter()
    .any(|m| frame.starts_with(m))
}

/// The value of an integer reply.
fn integer(reply: &[u8]) -> Option<i64> {
    match redis::parse_redis_value(reply) {
        Ok(redis::Value::Int(n)) => Some(n),
        _ => None,
    }
}

/// Sends a command and reads its reply, setting message pushes aside.
fn exchange(
    conn: &mut RawConn,
    args: &[&[u8]],
    unordered: bool,
    messages: &mut Vec<Vec<u8>>,
) -> Vec<u8> {
    conn.send_cmd(args);
    loop {
        let reply = conn.read_reply();
        if !is_message(&reply) {
            return if unordered { sorted(&reply) } else { reply };
        }
        messages.push(reply);
    }
}

struct Comparison {
    proxy: RawConn,
    redis: RawConn,
    /// The message pushes each has read.
    messages: [Vec<Vec<u8>>; 2],
    /// A second redis-server connection, for COMMAND GETKEYS beside the corpus's own state.
    keys: RawConn,
    one_slot: bool,
    diffs: Vec<String>,
    reached: BTreeSet<&'static str>,
}

impl Comparison {
    /// The keys of a request, as redis-server finds them.
    fn keys_of(&mut self, args: &[String]) -> Vec<String> {
        let mut getkeys: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        getkeys.extend(args.iter().map(|a| a.as_bytes()));
        let reply = self.keys.cmd(&getkeys);
        match redis::parse_redis_value(&reply) {
            Ok(redis::Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| match v {
                    redis::Value::BulkString(b) => String::from_utf8(b).ok(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn step(&mut self, step: &Step) {
        let mut args: Vec<String> = step.0.iter().map(|a| a.to_string()).collect();
        let keys = self.keys_of(&args);
        if self.one_slot {
            for a in args.iter_mut().skip(1) {
                if keys.contains(a) {
                    *a = format!("{{t}}{a}");
                }
            }
        }
        let spec = spec_of(&args);
        if let Some(spec) = spec {
            self.reached.insert(spec.full_name());
        }
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let expect = spec.and_then(|s| expectation(s.full_name()));
        let ours = exchange(&mut self.proxy, &bytes, step.1, &mut self.messages[0]);
        let text = String::from_utf8_lossy(&ours).into_owned();
        let mut differs = |why: String| self.diffs.push(format!("{args:?}: {why}"));
        match expect {
            Some(Expect::Refused) => {
                let name = spec.unwrap().full_name().replace('|', " ").to_uppercase();
                if !text.starts_with(&format!("-ERR {name} is not available through the proxy")) {
                    differs(format!("not refused: {text:?}"));
                }
                return;
            }
            Some(Expect::AsClusterNode) => {
                if text.starts_with('-') {
                    differs(format!("an error: {text:?}"));
                }
                return;
            }
            Some(Expect::Is(reply)) => {
                if text != reply {
                    differs(format!("{text:?} instead of {reply:?}"));
                }
                return;
            }
            Some(Expect::NotInTessera) => {
                if !text.starts_with("-ERR unknown") {
                    differs(format!("now in Tessera: {text:?}"));
                }
                return;
            }
            _ => {}
        }
        let slots: BTreeSet<u16> = keys.iter().map(|k| key_hash_slot(k.as_bytes())).collect();
        if !self.one_slot && slots.len() > 1 && text.starts_with("-CROSSSLOT") {
            return;
        }
        if sort_pattern_denied(&args, &text) {
            return;
        }
        let theirs = exchange(&mut self.redis, &bytes, step.1, &mut self.messages[1]);
        let same = match expect {
            Some(Expect::Shape) => ours.first() == theirs.first(),
            Some(Expect::Seconds) => match (integer(&ours), integer(&theirs)) {
                (Some(a), Some(b)) => (a - b).abs() <= 2,
                _ => false,
            },
            _ => ours == theirs,
        };
        if !same {
            differs(format!(
                "\n  proxy: {text:?}\n  redis: {:?}",
                String::from_utf8_lossy(&theirs)
            ));
        }
    }
}

fn compare(one_slot: bool, resp3: bool) {
    let db = proxied_db(3, false, "none", 2);
    let redis = TestServer::start_redis();
    let mut c = Comparison {
        proxy: db.proxy.raw(),
        redis: redis.raw(),
        keys: redis.raw(),
        one_slot,
        diffs: Vec::new(),
        reached: BTreeSet::new(),
        messages: Default::default(),
    };
    if resp3 {
        c.proxy.cmd_str(&["HELLO", "3"]);
        c.redis.cmd_str(&["HELLO", "3"]);
    }
    for step in CORPUS {
        c.step(step);
    }
    // The corpus ends subscribed, with replies of its last commands unread: the same ones, and
    // the same messages in any order.
    let mut rest = [Vec::new(), Vec::new()];
    for (i, conn) in [&mut c.proxy, &mut c.redis].into_iter().enumerate() {
        for frame in conn.pending_replies(Duration::from_millis(300)) {
            if is_message(&frame) {
                c.messages[i].push(frame);
            } else {
                rest[i].push(frame);
            }
        }
        c.messages[i].sort();
    }
    if rest[0] != rest[1] || c.messages[0] != c.messages[1] {
        c.diffs.push(format!(
            "the corpus's unread replies and messages: proxy {:?} {:?}, redis {:?} {:?}",
            rest[0], c.messages[0], rest[1], c.messages[1]
        ));
    }
    // New connections for the rest.
    c.proxy = db.proxy.raw();
    c.redis = redis.raw();
    if resp3 {
        c.proxy.cmd_str(&["HELLO", "3"]);
        c.redis.cmd_str(&["HELLO", "3"]);
    }
    for step in EXTRA {
        c.step(step);
    }
    // MONITOR last, on a connection of its own: the shards' feed follows its +OK.
    c.proxy = db.proxy.raw();
    c.step(&s(&["MONITOR"]));
    let missed: Vec<&str> = CommandTable::redis()
        .iter()
        .filter(|spec| !spec.is_container() && !c.reached.contains(spec.full_name()))
        .map(|spec| spec.full_name())
        .collect();
    assert!(missed.is_empty(), "no step reaches {missed:?}");
    assert_no_diffs(&c.diffs);
}

#[test]
fn every_command_through_the_proxy_with_keys_in_one_slot() {
    compare(true, false);
}

#[test]
fn every_command_through_the_proxy_with_keys_across_slots() {
    compare(false, true);
}
