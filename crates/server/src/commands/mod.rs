//! Command families, one file per group. Each file has its handlers and their argument parsing;
//! data operations live in `tessera_storage`. [`HANDLERS`] names every implemented command;
//! its arity, flags and keys come from the generated Redis command table.

pub mod acl;
pub mod bitmaps;
pub mod cluster;
pub mod connection;
pub mod geo;
pub mod hashes;
pub mod hyperloglog;
pub mod keys;
pub mod lists;
pub mod pubsub;
pub mod replication;
pub mod server;
pub mod sets;
pub mod sort;
pub mod streams;
pub mod strings;
pub mod transactions;
pub mod zsets;

use tessera_protocol::{Args, glob, num};
use tessera_storage::{KeyEntry, OpError, Typed, Value};

use crate::dispatch::{Call, CmdError, Handler};
use crate::server::Server;

/// Every implemented command: `name` or `container|subcommand`, and its handler.
pub static HANDLERS: &[(&str, Handler)] = &[
    // connection
    ("ping", connection::ping),
    ("echo", connection::echo),
    ("hello", connection::hello),
    ("auth", connection::auth),
    ("acl|cat", acl::acl),
    ("acl|deluser", acl::acl),
    ("acl|dryrun", acl::acl),
    ("acl|genpass", acl::acl),
    ("acl|getuser", acl::acl),
    ("acl|help", acl::acl),
    ("acl|list", acl::acl),
    ("acl|load", acl::acl),
    ("acl|log", acl::acl),
    ("acl|save", acl::acl),
    ("acl|setuser", acl::acl),
    ("acl|users", acl::acl),
    ("acl|whoami", acl::acl),
    ("quit", connection::quit),
    // cluster
    ("cluster|countkeysinslot", cluster::cluster),
    ("cluster|getkeysinslot", cluster::cluster),
    ("cluster|help", cluster::cluster),
    ("cluster|info", cluster::cluster),
    ("cluster|keyslot", cluster::cluster),
    ("cluster|myid", cluster::cluster),
    ("cluster|myshardid", cluster::cluster),
    ("cluster|nodes", cluster::cluster),
    ("cluster|shards", cluster::cluster),
    ("cluster|slots", cluster::cluster),
    ("asking", cluster::asking),
    ("readonly", cluster::readonly),
    ("readwrite", cluster::readwrite),
    ("reset", connection::reset),
    ("select", connection::select),
    ("client|id", connection::client),
    ("client|setname", connection::client),
    ("client|getname", connection::client),
    ("client|info", connection::client),
    ("client|list", connection::client),
    ("client|kill", connection::client),
    ("client|setinfo", connection::client),
    ("client|no-evict", connection::client),
    ("client|no-touch", connection::client),
    ("client|reply", connection::client),
    ("client|pause", connection::client),
    ("client|unpause", connection::client),
    ("client|help", connection::client),
    ("client|unblock", connection::client),
    ("client|tracking", connection::client),
    ("client|caching", connection::client),
    ("client|getredir", connection::client),
    ("client|trackinginfo", connection::client),
    // scripting
    ("eval", crate::scripting::eval),
    ("eval_ro", crate::scripting::eval),
    ("evalsha", crate::scripting::evalsha),
    ("evalsha_ro", crate::scripting::evalsha),
    ("script|load", crate::scripting::script),
    ("script|exists", crate::scripting::script),
    ("script|flush", crate::scripting::script),
    ("script|kill", crate::scripting::script),
    ("script|help", crate::scripting::script),
    ("fcall", crate::scripting::fcall),
    ("fcall_ro", crate::scripting::fcall),
    ("function|load", crate::scripting::function),
    ("function|delete", crate::scripting::function),
    ("function|flush", crate::scripting::function),
    ("function|list", crate::scripting::function),
    ("function|dump", crate::scripting::function),
    ("function|restore", crate::scripting::function),
    ("function|stats", crate::scripting::function),
    ("function|kill", crate::scripting::function),
    ("function|help", crate::scripting::function),
    // keys
    ("del", keys::del),
    ("unlink", keys::del),
    ("exists", keys::exists),
    ("type", keys::type_),
    ("rename", keys::rename),
    ("renamenx", keys::rename),
    ("copy", keys::copy),
    ("dump", keys::dump),
    ("restore", keys::restore),
    ("restore-asking", keys::restore),
    ("keys", keys::keys),
    ("scan", keys::scan),
    ("randomkey", keys::randomkey),
    ("dbsize", keys::dbsize),
    ("flushdb", keys::flush),
    ("flushall", keys::flush),
    ("expire", keys::expire),
    ("pexpire", keys::expire),
    ("expireat", keys::expire),
    ("pexpireat", keys::expire),
    ("ttl", keys::ttl),
    ("pttl", keys::ttl),
    ("expiretime", keys::ttl),
    ("pexpiretime", keys::ttl),
    ("persist", keys::persist),
    ("touch", keys::touch),
    ("object|encoding", keys::object),
    ("object|idletime", keys::object),
    ("object|freq", keys::object),
    ("object|refcount", keys::object),
    ("object|help", keys::object),
    // strings
    ("get", strings::get),
    ("set", strings::set),
    ("setnx", strings::setnx),
    ("setex", strings::setex),
    ("psetex", strings::setex),
    ("getset", strings::getset),
    ("getdel", strings::getdel),
    ("getex", strings::getex),
    ("mget", strings::mget),
    ("mset", strings::mset),
    ("msetnx", strings::mset),
    ("append", strings::append),
    ("strlen", strings::strlen),
    ("incr", strings::incr),
    ("decr", strings::incr),
    ("incrby", strings::incr),
    ("decrby", strings::incr),
    ("incrbyfloat", strings::incrbyfloat),
    ("getrange", strings::getrange),
    ("substr", strings::getrange),
    ("setrange", strings::setrange),
    ("lcs", strings::lcs),
    // bitmaps
    ("setbit", bitmaps::setbit),
    ("getbit", bitmaps::getbit),
    ("bitcount", bitmaps::bitcount),
    ("bitpos", bitmaps::bitpos),
    ("bitop", bitmaps::bitop),
    ("bitfield", bitmaps::bitfield),
    ("bitfield_ro", bitmaps::bitfield),
    // hashes
    ("hset", hashes::hset),
    ("hmset", hashes::hset),
    ("hsetnx", hashes::hsetnx),
    ("hget", hashes::hget),
    ("hmget", hashes::hmget),
    ("hdel", hashes::hdel),
    ("hlen", hashes::hlen),
    ("hstrlen", hashes::hstrlen),
    ("hexists", hashes::hexists),
    ("hkeys", hashes::hgetall),
    ("hvals", hashes::hgetall),
    ("hgetall", hashes::hgetall),
    ("hincrby", hashes::hincrby),
    ("hincrbyfloat", hashes::hincrbyfloat),
    ("hrandfield", hashes::hrandfield),
    ("hscan", hashes::hscan),
    // lists
    ("lpush", lists::push),
    ("rpush", lists::push),
    ("lpushx", lists::push),
    ("rpushx", lists::push),
    ("lpop", lists::pop),
    ("rpop", lists::pop),
    ("llen", lists::llen),
    ("lindex", lists::lindex),
    ("lrange", lists::lrange),
    ("ltrim", lists::ltrim),
    ("lset", lists::lset),
    ("linsert", lists::linsert),
    ("lrem", lists::lrem),
    ("lpos", lists::lpos),
    ("lmove", lists::lmove),
    ("rpoplpush", lists::rpoplpush),
    ("lmpop", lists::lmpop),
    ("blpop", lists::blpop),
    ("brpop", lists::blpop),
    ("blmove", lists::blmove),
    ("brpoplpush", lists::blmove),
    ("blmpop", lists::blmpop),
    // sets
    ("sadd", sets::sadd),
    ("srem", sets::srem),
    ("scard", sets::scard),
    ("sismember", sets::sismember),
    ("smismember", sets::sismember),
    ("smembers", sets::smembers),
    ("srandmember", sets::srandmember),
    ("spop", sets::spop),
    ("smove", sets::smove),
    ("sinter", sets::algebra),
    ("sunion", sets::algebra),
    ("sdiff", sets::algebra),
    ("sinterstore", sets::algebra_store),
    ("sunionstore", sets::algebra_store),
    ("sdiffstore", sets::algebra_store),
    ("sintercard", sets::sintercard),
    ("sscan", sets::sscan),
    // sorted sets
    ("zadd", zsets::zadd),
    ("zincrby", zsets::zincrby),
    ("zrem", zsets::zrem),
    ("zcard", zsets::zcard),
    ("zscore", zsets::zscore),
    ("zmscore", zsets::zscore),
    ("zrank", zsets::zrank),
    ("zrevrank", zsets::zrank),
    ("zcount", zsets::zcount),
    ("zlexcount", zsets::zlexcount),
    ("zrange", zsets::zrange),
    ("zrevrange", zsets::zrange),
    ("zrangebyscore", zsets::zrange),
    ("zrevrangebyscore", zsets::zrange),
    ("zrangebylex", zsets::zrange),
    ("zrevrangebylex", zsets::zrange),
    ("zrangestore", zsets::zrangestore),
    ("sort", sort::sort),
    ("geoadd", geo::geoadd),
    ("geopos", geo::geopos),
    ("geodist", geo::geodist),
    ("geohash", geo::geohash),
    ("pfadd", hyperloglog::pfadd),
    ("pfcount", hyperloglog::pfcount),
    ("pfmerge", hyperloglog::pfmerge),
    ("pfdebug", hyperloglog::pfdebug),
    ("pfselftest", hyperloglog::pfselftest),
    ("geosearch", geo::search),
    ("geosearchstore", geo::search),
    ("georadius", geo::search),
    ("georadius_ro", geo::search),
    ("georadiusbymember", geo::search),
    ("georadiusbymember_ro", geo::search),
    ("sort_ro", sort::sort),
    ("zremrangebyrank", zsets::zremrange),
    ("zremrangebyscore", zsets::zremrange),
    ("zremrangebylex", zsets::zremrange),
    ("zpopmin", zsets::zpop),
    ("zpopmax", zsets::zpop),
    ("bzpopmin", zsets::bzpop),
    ("bzpopmax", zsets::bzpop),
    ("zmpop", zsets::zmpop),
    ("bzmpop", zsets::bzmpop),
    ("zrandmember", zsets::zrandmember),
    ("zunion", zsets::zalgebra),
    ("zinter", zsets::zalgebra),
    ("zdiff", zsets::zalgebra),
    ("zunionstore", zsets::zalgebra),
    ("zinterstore", zsets::zalgebra),
    ("zdiffstore", zsets::zalgebra),
    ("zintercard", zsets::zintercard),
    ("zscan", zsets::zscan),
    // pub/sub
    ("subscribe", pubsub::subscribe),
    ("psubscribe", pubsub::subscribe),
    ("ssubscribe", pubsub::subscribe),
    ("unsubscribe", pubsub::unsubscribe),
    ("punsubscribe", pubsub::unsubscribe),
    ("sunsubscribe", pubsub::unsubscribe),
    ("publish", pubsub::publish),
    ("spublish", pubsub::publish),
    ("pubsub|channels", pubsub::pubsub),
    ("pubsub|numsub", pubsub::pubsub),
    ("pubsub|numpat", pubsub::pubsub),
    ("pubsub|shardchannels", pubsub::pubsub),
    ("pubsub|shardnumsub", pubsub::pubsub),
    ("pubsub|help", pubsub::pubsub),
    // transactions
    ("multi", transactions::multi),
    ("exec", transactions::exec),
    ("discard", transactions::discard),
    ("watch", transactions::watch),
    ("unwatch", transactions::unwatch),
    // server
    ("info", server::info),
    // replication
    ("replicaof", replication::replicaof),
    ("slaveof", replication::replicaof),
    ("role", replication::role),
    ("wait", replication::wait),
    ("psync", replication::psync),
    ("sync", replication::psync),
    ("replconf", replication::replconf),
    ("config|get", server::config),
    ("config|set", server::config),
    ("config|resetstat", server::config),
    ("config|rewrite", server::config),
    ("config|help", server::config),
    ("time", server::time),
    ("lastsave", server::lastsave),
    ("save", server::save),
    ("bgsave", server::bgsave),
    ("bgrewriteaof", server::bgrewriteaof),
    ("debug", server::debug),
    ("shutdown", server::shutdown),
    ("monitor", server::monitor),
    ("slowlog|get", server::slowlog),
    ("slowlog|len", server::slowlog),
    ("slowlog|reset", server::slowlog),
    ("slowlog|help", server::slowlog),
    ("latency|latest", server::latency),
    ("latency|history", server::latency),
    ("latency|reset", server::latency),
    ("latency|doctor", server::latency),
    ("latency|graph", server::latency),
    ("latency|histogram", server::latency),
    ("latency|help", server::latency),
    ("command|count", server::command),
    ("command|info", server::command),
    ("command|docs", server::command),
    ("command|getkeys", server::command),
    ("command|getkeysandflags", server::command),
    ("command|list", server::command),
    ("command|help", server::command),
    ("command", server::command),
    // streams
    ("xadd", streams::xadd),
    ("xtrim", streams::xtrim),
    ("xdel", streams::xdel),
    ("xlen", streams::xlen),
    ("xrange", streams::xrange),
    ("xrevrange", streams::xrange),
    ("xread", streams::xread),
    ("xreadgroup", streams::xread),
    ("xgroup|create", streams::xgroup),
    ("xgroup|setid", streams::xgroup),
    ("xgroup|destroy", streams::xgroup),
    ("xgroup|createconsumer", streams::xgroup),
    ("xgroup|delconsumer", streams::xgroup),
    ("xack", streams::xack),
    ("xpending", streams::xpending),
    ("xclaim", streams::xclaim),
    ("xautoclaim", streams::xautoclaim),
    ("xsetid", streams::xsetid),
    ("xinfo|stream", streams::xinfo),
    ("xinfo|groups", streams::xinfo),
    ("xinfo|consumers", streams::xinfo),
    ("xgroup|help", streams::help),
    ("xinfo|help", streams::help),
];

/// Parses an integer argument (Redis's `getLongLongFromObjectOrReply`).
#[inline]
pub fn int_arg(a: &[u8]) -> Result<i64, CmdError> {
    num::parse_i64(a).ok_or(CmdError::NotInteger)
}

/// Parses a float argument (`getDoubleFromObjectOrReply`).
pub fn float_arg(a: &[u8]) -> Result<f64, CmdError> {
    num::parse_f64(a).ok_or(CmdError::Op(OpError::NotFloat))
}

/// Parses a count that may be negative (SRANDMEMBER, HRANDFIELD, ZRANDMEMBER), as
/// `getRangeLongFromObjectOrReply` over `-LONG_MAX..=LONG_MAX`.
pub fn signed_count(a: &[u8]) -> Result<i64, CmdError> {
    let n = int_arg(a)?;
    if n == i64::MIN {
        return Err(CmdError::msg(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    Ok(n)
}

/// `key [count [<with>]]` of HRANDFIELD (`withvalues`) and ZRANDMEMBER (`withscores`): the
/// count, and whether the flag was given.
pub fn rand_args(args: &Args<'_>, with: &str) -> Result<(Option<i64>, bool), CmdError> {
    let count = args.try_get(2).map(signed_count).transpose()?;
    let flag = match args.try_get(3) {
        None => false,
        Some(a) if args.len() == 4 && is(a, with) => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    Ok((count, flag))
}

/// Parses `numkeys key [key ...] <where> [COUNT count]` from argument `at` on (LMPOP, BLMPOP,
/// ZMPOP, BZMPOP): the keys, the side `side` makes of the `<where>` word, and the count.
pub fn parse_multi_pop<'a, W>(
    args: &Args<'a>,
    at: usize,
    side: impl Fn(&[u8]) -> Option<W>,
) -> Result<(Vec<&'a [u8]>, W, usize), CmdError> {
    let numkeys = int_arg(args.get(at))
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| CmdError::msg("ERR numkeys should be greater than 0"))?
        as usize;
    let where_idx = at + 1 + numkeys;
    if where_idx >= args.len() {
        return Err(CmdError::Syntax);
    }
    let side = side(args.get(where_idx)).ok_or(CmdError::Syntax)?;
    let mut count = None;
    let mut i = where_idx + 1;
    while i < args.len() {
        if count.is_none() && is(args.get(i), "count") && i + 1 < args.len() {
            let n = int_arg(args.get(i + 1))
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| CmdError::msg("ERR count should be greater than 0"))?;
            count = Some(n as usize);
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok((
        (at + 1..where_idx).map(|k| args.get(k)).collect(),
        side,
        count.unwrap_or(1),
    ))
}

/// True if `a` equals `lit` ignoring ASCII case.
#[inline]
pub fn is(a: &[u8], lit: &str) -> bool {
    a.eq_ignore_ascii_case(lit.as_bytes())
}

/// Options of SCAN, HSCAN, SSCAN and ZSCAN: `cursor [MATCH pattern] [COUNT count]`, and
/// `[TYPE type]` for SCAN.
pub struct ScanOptions<'a> {
    pub cursor: u64,
    pub count: usize,
    /// `None` when absent or `*`.
    pub pattern: Option<&'a [u8]>,
    pub type_filter: Option<&'a [u8]>,
}

impl<'a> ScanOptions<'a> {
    /// Parses the cursor at `at` and the options after it.
    pub fn parse(args: &Args<'a>, at: usize, allow_type: bool) -> Result<Self, CmdError> {
        let cursor = std::str::from_utf8(args.get(at))
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| CmdError::msg("ERR invalid cursor"))?;
        let mut o = ScanOptions {
            cursor,
            count: 10,
            pattern: None,
            type_filter: None,
        };
        let mut i = at + 1;
        while i < args.len() {
            let a = args.get(i);
            let Some(v) = args.try_get(i + 1) else {
                return Err(CmdError::Syntax);
            };
            if is(a, "count") {
                let n = int_arg(v)?;
                if n < 1 {
                    return Err(CmdError::Syntax);
                }
                o.count = n as usize;
            } else if is(a, "match") {
                o.pattern = (v != b"*").then_some(v);
            } else if is(a, "type") && allow_type {
                o.type_filter = Some(v);
            } else {
                return Err(CmdError::Syntax);
            }
            i += 2;
        }
        Ok(o)
    }

    /// True if `name` passes the MATCH pattern.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.pattern.is_none_or(|p| glob::matches(p, name, false))
    }
}

impl Server {
    /// How key accesses are recorded: (LFU policy, `lfu-log-factor`, `lfu-decay-time`).
    #[inline]
    pub fn access_policy(&self) -> (bool, u32, u32) {
        (
            self.db.lfu,
            self.config.lfu_log_factor,
            self.config.lfu_decay_time,
        )
    }

    /// The value of type `T` at `key` for reading (`None` when missing); WRONGTYPE for a value
    /// of another type.
    pub fn read_as<T: Typed>(
        &mut self,
        call: &Call<'_>,
        key: &[u8],
    ) -> Result<Option<&T>, CmdError> {
        match self.read_key(call, key) {
            None => Ok(None),
            Some(e) => T::of(e.value()).map(Some).ok_or(OpError::WrongType.into()),
        }
    }

    /// The value of type `T` at `key` for writing, created empty when `create` and missing.
    pub fn write_as<T: Typed>(
        &mut self,
        call: &Call<'_>,
        key: &[u8],
        create: bool,
    ) -> Result<Option<&mut T>, CmdError> {
        let make: fn() -> Value = T::empty;
        match self.write_entry(call, key, create.then_some(make)) {
            None => Ok(None),
            Some(e) => T::of_mut(e.value_mut())
                .map(Some)
                .ok_or(OpError::WrongType.into()),
        }
    }

    /// Deletes `key` if its collection became empty (Redis never keeps empty collections).
    pub fn remove_if_empty(&mut self, key: &[u8]) {
        let empty = self.db.find_stored(key).is_some_and(|e| match e.value() {
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            _ => false,
        });
        if empty {
            self.db.remove(key);
            self.notify(crate::notify::GENERIC, "del", key);
        }
    }

    /// Looks up a key for reading: counts a keyspace hit or miss and updates the key's access
    /// time, unless the client asked for `CLIENT NO-TOUCH` (Redis's `lookupKeyRead`).
    pub fn read_key(&mut self, call: &Call<'_>, key: &[u8]) -> Option<&mut KeyEntry> {
        let (lfu, log_factor, decay) = self.access_policy();
        let no_touch =
            self.clients.get(call.client).is_some_and(|c| c.no_touch) && call.spec.name != "touch";
        if self.notify_flags & crate::notify::KEY_MISS != 0 && !self.db.contains(key, call.now) {
            self.stats.keyspace_misses += 1;
            self.notify(crate::notify::KEY_MISS, "keymiss", key);
            return None;
        }
        match self.db.get_mut(key, call.now) {
            Some(entry) => {
                self.stats.keyspace_hits += 1;
                if !no_touch {
                    entry.touch(crate::evict::next_access(
                        lfu,
                        log_factor,
                        decay,
                        entry.access(),
                        call.now,
                    ));
                }
                Some(entry)
            }
            None => {
                self.stats.keyspace_misses += 1;
                None
            }
        }
    }

    /// Looks up a key for writing (no hit/miss accounting, as Redis's `lookupKeyWrite`).
    pub fn write_key(&mut self, call: &Call<'_>, key: &[u8]) -> Option<&mut KeyEntry> {
        self.write_entry(call, key, None)
    }

    /// Looks up a key for writing, first creating it with `make()` when given and missing, and
    /// records the access for the eviction policy.
    pub fn write_entry(
        &mut self,
        call: &Call<'_>,
        key: &[u8],
        make: Option<fn() -> Value>,
    ) -> Option<&mut KeyEntry> {
        let (lfu, log_factor, decay) = self.access_policy();
        let entry = match make {
            Some(make) => self.db.get_or_insert_with(key, call.now, make),
            None => self.db.get_mut(key, call.now)?,
        };
        entry.touch(crate::evict::next_access(
            lfu,
            log_factor,
            decay,
            entry.access(),
            call.now,
        ));
        Some(entry)
    }
}
