//! Lua scripting (issue 7): EVAL and friends against a real `redis-server` (identical reply
//! bytes), real-world scripts, scripts that never end or allocate without bound, and effects
//! replication to replicas and the log.

use std::time::{Duration, Instant};

use crate::support::{RawConn, TestServer, wait_for};

/// Scripts whose replies must be byte-identical to Redis 7.0's: conversions both ways, errors
/// and their positions, the sandbox, shebang flags, the libraries, SCRIPT subcommands.
const CORPUS: &[&[&str]] = &[
    &["eval", "return redis.error_reply('x y')", "0"],
    &["eval", "return redis.error_reply('-x y')", "0"],
    &["eval", "return {err='bad'}", "0"],
    &["eval", "return {err='-bad'}", "0"],
    &["eval", "return redis.status_reply('fine')", "0"],
    &["eval", "return {ok='-fine'}", "0"],
    &["eval", "error('boom')", "0"],
    &["eval", "error()", "0"],
    &["eval", "error(nil)", "0"],
    &["eval", "error(12)", "0"],
    &["eval", "error({err='x\\ny'})", "0"],
    &["eval", "return redis.pcall('set','a','b','c')", "0"],
    &[
        "eval",
        "local r = redis.pcall('set','a','b','c'); return r['err']",
        "0",
    ],
    &[
        "eval",
        "local r = redis.pcall('nosuch'); return r['err']",
        "0",
    ],
    &["eval", "return 'x' ..", "0"],
    &["eval", "#!lua flags=no-writes\nreturn 1", "0"],
    &["eval", "#!lua flags=bogus\nreturn 1", "0"],
    &["eval", "#!lua2\nreturn 1", "0"],
    &["eval", "#!lua name=x\nreturn 1", "0"],
    &[
        "eval",
        "#!lua flags=no-writes\nreturn redis.call('set','a',1)",
        "0",
    ],
    &["eval", "#!lua\nreturn redis.call('set','a',1)", "0"],
    &["eval", "#!lua\nreturn redis.call('set','a',1)", "1", "a"],
    &["eval", "#!lua\nreturn redis.call('get','b')", "1", "a"],
    &["eval", "return redis.call('get','b')", "1", "a"],
    &["eval", "#!lua\nerror('x')", "0"],
    &["eval", "return 1", "-1"],
    &["eval", "return 1", "3"],
    &["eval", "return 1", "x"],
    &["evalsha", "abc", "0"],
    &["evalsha", "ffffffffffffffffffffffffffffffffffffffff", "0"],
    &["script", "load", "return 1"],
    &["script", "load", "return ("],
    &[
        "script",
        "exists",
        "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
        "x",
    ],
    &["evalsha", "E0E1F9FABFC9D4800C877A703B823AC0578FF8DB", "0"],
    &["script", "kill"],
    &["script", "flush", "bogus"],
    &["script", "flush", "async"],
    &["script", "help"],
    &[
        "eval",
        "return {1,'a',{2.5, true, false}, redis.status_reply('ok'), redis.error_reply('e')}",
        "0",
    ],
    &[
        "eval",
        "redis.setresp(3); return redis.call('hgetall','nokey')",
        "0",
    ],
    &["eval", "redis.setresp(4)", "0"],
    &["eval", "return redis.sha1hex('')", "0"],
    &["eval", "return redis.sha1hex()", "0"],
    &["eval", "return redis.log(redis.LOG_WARNING, 'hi', 3)", "0"],
    &["eval", "return redis.log(99, 'hi')", "0"],
    &["eval", "return redis.set_repl(redis.REPL_ALL)", "0"],
    &["eval", "return redis.set_repl(99)", "0"],
    &["eval", "return redis.replicate_commands()", "0"],
    &[
        "eval",
        "return {redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL, redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}",
        "0",
    ],
    &[
        "eval",
        "return {redis.error_reply('-x'), {err='FOO x'}, {err='-y'}}",
        "0",
    ],
    &["eval", "return redis.error_reply('-x y').err", "0"],
    &["eval", "return redis.error_reply(5)", "0"],
    &["eval", "return redis.error_reply()", "0"],
    &["eval", "return redis.status_reply(5)", "0"],
    &["eval", "return {1,2,nil,4}", "0"],
    &["eval", "return {a=1}", "0"],
    &["eval", "return {1.9, -1.9, 1e20, 0/0, 1/0}", "0"],
    &["eval", "return 1e20", "0"],
    &["eval", "return 'x\\0y'", "0"],
    &["eval", "return nil", "0"],
    &["eval", "return function() end", "0"],
    &[
        "eval",
        "return KEYS[1] .. ARGV[1] .. #KEYS .. #ARGV",
        "1",
        "k",
        "a",
    ],
    &["eval", "return type(os) .. type(io)", "0"],
    &["eval", "return type(loadfile)", "0"],
    &["eval", "return type(debug)", "0"],
    &["eval", "return type(coroutine)", "0"],
    &["eval", "return type(print)", "0"],
    &["eval", "return type(loadstring)", "0"],
    &["eval", "return type(load)", "0"],
    &["eval", "return type(require)", "0"],
    &["eval", "return type(getfenv)", "0"],
    &["eval", "return type(setfenv)", "0"],
    &["eval", "return type(newproxy)", "0"],
    &["eval", "return type(gcinfo)", "0"],
    &["eval", "return type(collectgarbage)", "0"],
    &["eval", "return type(unpack)", "0"],
    &["eval", "return _VERSION", "0"],
    &["eval", "return type(package)", "0"],
    &["eval", "return type(module)", "0"],
    &["eval", "return type(dofile)", "0"],
    &["eval", "return type(cjson) .. type(bit)", "0"],
    &["eval", "return math.random(100)", "0"],
    &["eval", "return tostring(math.random())", "0"],
    &[
        "eval",
        "return {math.random(1,10), math.random(5), math.random(1000000)}",
        "0",
    ],
    &["eval", "redis.call = nil", "0"],
    &["eval", "local t = redis; t.x = 1", "0"],
    &["eval", "setmetatable(_G, nil)", "0"],
    &["eval", "getmetatable('').__index.upper = nil", "0"],
    &["eval", "return rawget(_G, 'nosuch')", "0"],
    &["eval", "local t = {} t.x = 1 return t.x", "0"],
    &["eval", "x = 10", "0"],
    &["eval", "return y", "0"],
    &["eval", "string.foo = 1", "0"],
    &["eval", "rawset(_G,'x',1)", "0"],
    &["eval", "return redis.call('nosuch')", "0"],
    &["eval", "return redis.call('get')", "0"],
    &["eval", "return redis.call({})", "0"],
    &["eval", "return redis.call('blpop','q',0)", "0"],
    &["eval", "return redis.call('subscribe','q')", "0"],
    &["eval", "return redis.call('eval','return 1', 0)", "0"],
    &["eval_ro", "return redis.call('set','q',1)", "0"],
    &["eval", "return redis.call('incr','a')", "0"],
    &[
        "eval",
        "redis.call('set','n',10) return redis.call('incr','n')",
        "0",
    ],
    &["eval", "return redis.call('set','f', 3.5)", "0"],
    &["eval", "return redis.call('get','f')", "0"],
    &[
        "eval",
        "return redis.call('set','f', 1e20) .. redis.call('get', 'f')",
        "0",
    ],
    &[
        "eval",
        "return redis.call('set','f', 12345678901234567) and redis.call('get', 'f')",
        "0",
    ],
    &["eval", "return redis.call('object')", "0"],
    &["eval", "return redis.call('object', 'nosuch')", "0"],
    &["eval", "return redis.call()", "0"],
    &["eval", "return redis.pcall()", "0"],
    &[
        "eval",
        "return bit.band(0xff, 0x0f) .. bit.tohex(255) .. bit.tohex(-1, -4) .. bit.lshift(1, 31) .. bit.bnot(0)",
        "0",
    ],
    &["eval", "return cjson.encode({1,2,3,'a',{b=1}})", "0"],
    &[
        "eval",
        "return cjson.encode({a='x/y', b=1.5, c=true, d=cjson.null})",
        "0",
    ],
    &[
        "eval",
        "local t = cjson.decode('[1,2,{\"a\":[true,false,null]},\"\\\\u00e9\"]') return {t[1], t[2], tostring(t[3].a[1]), t[4]}",
        "0",
    ],
    &["eval", "return cjson.decode('{')", "0"],
    &["eval", "return cjson.encode({[1]=1, [100]=2})", "0"],
    &["eval", "return cjson.encode(function() end)", "0"],
    &["eval", "return cjson.encode({})", "0"],
    &["eval", "return cjson.encode('\\1\\127é')", "0"],
    &["eval", "return cjson.encode(0.1)", "0"],
    &["eval", "return cjson.encode(1/0)", "0"],
    &["eval", "return loadstring('return 1')()", "0"],
    &[
        "eval",
        "return loadstring(string.dump(function() return 1 end))",
        "0",
    ],
    &["eval", "return pcall(function() error('x') end)", "0"],
    &[
        "eval",
        "local ok, e = pcall(function() redis.call('nosuch') end) return e['err']",
        "0",
    ],
    &["eval", "return redis.call('hset','h','a','1','b','2')", "0"],
    &["eval", "return redis.call('hgetall','h')", "0"],
    &[
        "eval",
        "redis.setresp(3) return redis.call('hgetall','h')",
        "0",
    ],
    &[
        "eval",
        "redis.setresp(3) local t = redis.call('hgetall','h') return t.map.a",
        "0",
    ],
    &[
        "eval",
        "redis.setresp(3) return redis.call('get','nokey') == nil",
        "0",
    ],
    &["eval", "return redis.call('get','nokey') == false", "0"],
    &[
        "eval",
        "redis.setresp(3) local t = redis.call('zadd','z','1.5','m') return redis.call('zscore','z','m').double",
        "0",
    ],
    &["eval", "return tostring(redis.call('zscore','z','m'))", "0"],
    &["eval", "return redis.call('ping')", "0"],
    &["eval", "return redis.call('ping').ok", "0"],
    &["eval", "return redis.call('set','qq','v','GET')", "0"],
    &["eval", "return redis.call('lpush','l','a','b')", "0"],
    &["eval", "return redis.call('lrange','l',0,-1)", "0"],
    &["eval", "return redis.call('type','l')", "0"],
    &["eval", "return redis.call('get','l')", "0"],
    &["eval", "return redis.pcall('get','l')", "0"],
    &["eval", "return {redis.pcall('get','l')}", "0"],
    &[
        "eval",
        "return string.format('%d %s %5.2f', 3, 'x', 1.5)",
        "0",
    ],
    &["eval", "return table.concat({1,2,3}, ',')", "0"],
    &["eval", "return ('abc'):upper()", "0"],
    &["eval", "return #KEYS", "0"],
    &["eval", "return tonumber('0x10')", "0"],
    &[
        "eval",
        "return coroutine.wrap(function() coroutine.yield(5) end)()",
        "0",
    ],
    &["eval", "return select('#', 1, 2, 3)", "0"],
    &["eval", "return unpack({1,2,3})", "0"],
    &["eval", "return {unpack({1,2,3})}", "0"],
    &[
        "eval",
        "return tostring(1e15) .. ' ' .. tostring(0.1) .. ' ' .. 2^53",
        "0",
    ],
    &[
        "eval",
        "local ok, e = pcall(function() redis.call('nosuch') end) return type(e)",
        "0",
    ],
    &[
        "eval",
        "local ok, e = pcall(function() redis.call('nosuch') end) return tostring(e)",
        "0",
    ],
    &[
        "eval",
        "local ok, e = pcall(function() redis.call('get', 'l') end) return {type(e), tostring(e)}",
        "0",
    ],
    &[
        "eval",
        "local ok, e = pcall(function() error({err='x'}) end) return {type(e), tostring(e), e.err}",
        "0",
    ],
    &[
        "eval",
        "local ok, e = pcall(function() error('x') end) return {type(e), tostring(e)}",
        "0",
    ],
    &[
        "eval",
        "local ok, e = pcall(function() cjson.encode(function() end) end) return {type(e), tostring(e)}",
        "0",
    ],
    &[
        "eval",
        "local ok, e = pcall(function() redis.call('nosuch') end) error(e)",
        "0",
    ],
    &["eval", "return cjson.decode('[1,]')", "0"],
    &["eval", "return cjson.decode('')", "0"],
    &["eval", "return cjson.decode('x')", "0"],
    &["eval", "return cjson.decode('[1 2]')", "0"],
    &["eval", "return cjson.decode('{\"a\" 1}')", "0"],
    &["eval", "return cjson.decode('{1:2}')", "0"],
    &["eval", "return cjson.decode('[1]x')", "0"],
    &["eval", "return cjson.decode('\"\\\\ud800\"')", "0"],
    &["eval", "return cjson.decode('[tru]')", "0"],
    &["eval", "return cjson.decode('[01]')", "0"],
    &["eval", "return cjson.decode()", "0"],
    &["eval", "return cjson.encode()", "0"],
    &["eval", "return bit.band('x')", "0"],
    &["eval", "return bit.tohex()", "0"],
    &["eval", "return {pcall(cjson.decode, 'x')}", "0"],
    &["eval", "return {pcall(redis.setresp, 4)}", "0"],
    &["eval", "return {pcall(redis.call, 'nosuch')}", "0"],
    &["eval", "return {pcall(error)}", "0"],
    // struct.
    &["eval", "return struct.pack('>i4<i4', 1, 2)", "0"],
    &[
        "eval",
        "return struct.pack('bBhHlLTiI', -1, 255, -2, 65535, -3, 4, 5, -6, 7)",
        "0",
    ],
    &[
        "eval",
        "return struct.pack('i1i2i3i5i8i16', 1, -2, 3, -4, 5, -6)",
        "0",
    ],
    &["eval", "return struct.pack('!4bi!8bd', 1, 2, 3, 1.5)", "0"],
    &[
        "eval",
        "return struct.pack('>fd<fd', 1.5, -2.25, 0.1, 1e300)",
        "0",
    ],
    &[
        "eval",
        "return struct.pack('c3c0sx', 'abcdef', 'xy', 'zz')",
        "0",
    ],
    &["eval", "return struct.pack('c5', 'ab')", "0"],
    &["eval", "return struct.pack('i33', 1)", "0"],
    &["eval", "return struct.pack('!3i', 1)", "0"],
    &["eval", "return struct.pack('q', 1)", "0"],
    &["eval", "return struct.pack('i', 'x')", "0"],
    &["eval", "return struct.pack('i')", "0"],
    &["eval", "return struct.pack()", "0"],
    &["eval", "return struct.pack('i', 2^40)", "0"],
    &["eval", "return struct.pack('I', -1)", "0"],
    &[
        "eval",
        "return {struct.unpack('>i4<i4', struct.pack('>i4<i4', -1, 2))}",
        "0",
    ],
    &[
        "eval",
        "return {struct.unpack('bBhHlLiI', struct.pack('bBhHlLiI', -1, 255, -2, 65535, -3, 4, -6, 7))}",
        "0",
    ],
    &[
        "eval",
        "return {struct.unpack('i3I3', struct.pack('i3I3', -5, 5))}",
        "0",
    ],
    &[
        "eval",
        "return {struct.unpack('d', struct.pack('d', 1.5))}",
        "0",
    ],
    &[
        "eval",
        "return tostring(struct.unpack('f', struct.pack('f', 0.1)))",
        "0",
    ],
    &[
        "eval",
        "return {struct.unpack('bc0', struct.pack('bc0', 3, 'abc'))}",
        "0",
    ],
    &["eval", "return {struct.unpack('c0', 'abc')}", "0"],
    &["eval", "return {struct.unpack('szx', 'hello\\0z\\0')}", "0"],
    &["eval", "return {struct.unpack('s', 'hello')}", "0"],
    &["eval", "return {struct.unpack('i', 'ab')}", "0"],
    &["eval", "return {struct.unpack('b', 'ab', 2)}", "0"],
    &["eval", "return {struct.unpack('b', 'ab', 0)}", "0"],
    &["eval", "return {struct.unpack('b', 'ab', 4)}", "0"],
    &["eval", "return {struct.unpack('b', 'ab', 3)}", "0"],
    &[
        "eval",
        "return {struct.unpack('!4bi', struct.pack('!4bi', 1, 2))}",
        "0",
    ],
    &["eval", "return struct.size('!4bi')", "0"],
    &["eval", "return struct.size('bhild')", "0"],
    &["eval", "return struct.size('s')", "0"],
    &["eval", "return struct.size('c0')", "0"],
    &["eval", "return struct.size('y')", "0"],
    &["eval", "return struct.size('i99999999999')", "0"],
    &["eval", "return {struct.unpack('>I2', '\\1\\2')}", "0"],
    &["eval", "return {struct.unpack('b', 'ab', -1)}", "0"],
    &["eval", "return {struct.unpack('', 'ab', 4)}", "0"],
    &["eval", "return {struct.unpack('', 'ab', -1)}", "0"],
    &["eval", "return struct.pack('iii', 1)", "0"],
    // cmsgpack.
    // Nesting as deep as Redis's decoder allows, one level more, and far more.
    &[
        "eval",
        "local t = cmsgpack.unpack(string.rep('\\145', 3999) .. '\\1') return type(t)",
        "0",
    ],
    &[
        "eval",
        "local t = cmsgpack.unpack(string.rep('\\145', 4000) .. '\\1') return type(t)",
        "0",
    ],
    &[
        "eval",
        "local t = cmsgpack.unpack(string.rep('\\145', 1000000) .. '\\1') return type(t)",
        "0",
    ],
    &[
        "eval",
        "local t = cmsgpack.unpack(string.rep('\\129\\1', 3998) .. '\\1') return type(t)",
        "0",
    ],
    &[
        "eval",
        "return cmsgpack.pack(1, -1, 0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649)",
        "0",
    ],
    &[
        "eval",
        "return cmsgpack.pack(1.5, 0.1, -2.25, 1e300, 1/0, -1/0, 2^53, 2^63, -2^63)",
        "0",
    ],
    &[
        "eval",
        "return cmsgpack.pack(true, false, nil, 'abc', string.rep('x', 31), string.rep('x', 32), string.rep('y', 300), string.rep('z', 70000))",
        "0",
    ],
    &[
        "eval",
        "return cmsgpack.pack({}, {1,2,3}, {a=1}, {1,2,nil,4}, {[2]=1}, {[1.5]=1}, {x={y={z=1}}})",
        "0",
    ],
    &[
        "eval",
        "local t = {} for i=1,20 do t[i]=i end return cmsgpack.pack(t)",
        "0",
    ],
    &[
        "eval",
        "local t = {} for i=1,20 do t['k'..i]=i end return cmsgpack.pack(t)",
        "0",
    ],
    &[
        "eval",
        "local t = {} local c = t for i=1,20 do c.n = {} c = c.n end return cmsgpack.pack(t)",
        "0",
    ],
    &["eval", "return cmsgpack.pack(print)", "0"],
    &["eval", "return cmsgpack.pack()", "0"],
    &["eval", "return cmsgpack.pack(redis.call)", "0"],
    &[
        "eval",
        "return {cmsgpack.unpack(cmsgpack.pack(1, 'a', {1,2}, {a='b'}, true, false, 1.5))}",
        "0",
    ],
    &[
        "eval",
        "local t = cmsgpack.unpack(cmsgpack.pack({a={1,2,{b='c'}}})) return {t.a[1], t.a[2], t.a[3].b}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 1)}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 2)}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2, 1)}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), -1)}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 10)}",
        "0",
    ],
    &["eval", "return {cmsgpack.unpack('')}", "0"],
    &["eval", "return {cmsgpack.unpack('\\146\\1')}", "0"],
    &["eval", "return {cmsgpack.unpack('\\193')}", "0"],
    &["eval", "return {cmsgpack.unpack('\\212\\1\\2')}", "0"],
    &["eval", "return {cmsgpack.unpack('\\205\\1')}", "0"],
    &[
        "eval",
        "return {cmsgpack.unpack('\\196\\3abc\\197\\0\\1z')}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255')}",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack('\\211\\128\\0\\0\\0\\0\\0\\0\\0')}",
        "0",
    ],
    &[
        "eval",
        "return tostring(cmsgpack.unpack('\\202\\63\\192\\0\\0'))",
        "0",
    ],
    &[
        "eval",
        "return {cmsgpack.unpack('\\221\\255\\255\\255\\255')}",
        "0",
    ],
    &["eval", "return {cmsgpack.unpack('\\129\\192\\1')}", "0"],
    &["eval", "return {cmsgpack.unpack(123)}", "0"],
    &["eval", "return {cmsgpack.unpack()}", "0"],
    &["eval", "return {cmsgpack.unpack({})}", "0"],
    &["eval", "return cmsgpack._VERSION .. cmsgpack._NAME", "0"],
    &["eval", "return {pcall(cmsgpack.unpack, '\\193')}", "0"],
];

fn cmd(c: &mut RawConn, args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.cmd(&args)
}

pub(crate) fn diff_corpus(corpus: &[&[&str]], resp3: bool) {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let (mut t, mut r) = (tessera.raw(), redis.raw());
    if resp3 {
        t.cmd_str(&["HELLO", "3"]);
        r.cmd_str(&["HELLO", "3"]);
    }
    let mut diffs = Vec::new();
    for step in corpus {
        let (a, b) = (cmd(&mut t, step), cmd(&mut r, step));
        if a != b {
            diffs.push(format!(
                "{step:?}\n  tessera: {:?}\n  redis:   {:?}",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            ));
        }
    }
    crate::support::assert_no_diffs(&diffs);
}

#[test]
fn scripts_reply_as_redis_server_resp2() {
    diff_corpus(CORPUS, false);
}

#[test]
fn scripts_reply_as_redis_server_resp3() {
    diff_corpus(CORPUS, true);
}

const RATE_LIMITER: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
  return {1, limit - count - 1}
end
return {0, 0}
"#;

const TOKEN_BUCKET: &str = r#"
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1 allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
return {allowed, tostring(tokens)}
"#;

const REDLOCK_RELEASE: &str = r#"
if redis.call("get",KEYS[1]) == ARGV[1] then
    return redis.call("del",KEYS[1])
else
    return 0
end
"#;

const SIDEKIQ_FETCH: &str = r#"
local key, now = KEYS[1], ARGV[1]
local jobs = redis.call("zrangebyscore", key, "-inf", now, "limit", 0, 1)
if jobs[1] then
  redis.call("zrem", key, jobs[1])
  redis.call("lpush", KEYS[2], jobs[1])
  return jobs[1]
end
return redis.call("rpoplpush", KEYS[2], KEYS[3])
"#;

const BULLMQ_MOVE_TO_ACTIVE: &str = r#"
local rcall = redis.call
local waitKey, activeKey, eventsKey = KEYS[1], KEYS[2], KEYS[3]
local jobId = rcall("LMOVE", waitKey, activeKey, "RIGHT", "LEFT")
if not jobId then
  return {0, 0}
end
local opts = cjson.decode(ARGV[4])
local jobKey = ARGV[1] .. jobId
rcall("SET", jobKey .. ":lock", ARGV[2], "PX", opts.lockDuration)
rcall("XADD", eventsKey, "MAXLEN", "~", 10000, ARGV[3] .. "-" .. jobId, "event", "active",
  "jobId", jobId, "prev", "waiting")
rcall("HSET", jobKey, "processedOn", ARGV[3])
local attempts = rcall("HINCRBY", jobKey, "ats", 1)
local data = rcall("HGETALL", jobKey)
return {data, jobId, attempts, cjson.encode({id = jobId, attempts = attempts})}
"#;

/// Real-world scripts give the same replies and leave the same data as in redis-server.
#[test]
fn real_world_scripts_match_redis_server() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let mut results = Vec::new();
    for server in [&tessera, &redis] {
        let mut c = server.raw();
        let mut out = Vec::new();
        for i in 0..8 {
            let now = (1000 + i * 150).to_string();
            out.push(cmd(
                &mut c,
                &[
                    "EVAL",
                    RATE_LIMITER,
                    "1",
                    "rl",
                    &now,
                    "1000",
                    "5",
                    &format!("req{i}"),
                ],
            ));
            out.push(cmd(
                &mut c,
                &["EVAL", TOKEN_BUCKET, "1", "tb", "2", "3", &now],
            ));
        }
        out.push(cmd(&mut c, &["ZRANGE", "rl", "0", "-1", "WITHSCORES"]));
        out.push(cmd(&mut c, &["SET", "lock", "token-1", "PX", "30000"]));
        out.push(cmd(
            &mut c,
            &["EVAL", REDLOCK_RELEASE, "1", "lock", "token-2"],
        ));
        out.push(cmd(
            &mut c,
            &["EVAL", REDLOCK_RELEASE, "1", "lock", "token-1"],
        ));
        out.push(cmd(&mut c, &["EXISTS", "lock"]));
        let sha = String::from_utf8(cmd(&mut c, &["SCRIPT", "LOAD", SIDEKIQ_FETCH])).unwrap();
        let sha = sha.lines().nth(1).unwrap().to_string();
        out.push(cmd(
            &mut c,
            &[
                "ZADD", "schedule", "10", "job-a", "20", "job-b", "99", "job-c",
            ],
        ));
        for now in ["5", "15", "25", "25", "25", "25"] {
            out.push(cmd(
                &mut c,
                &["EVALSHA", &sha, "3", "schedule", "queue", "working", now],
            ));
        }
        out.push(cmd(&mut c, &["LRANGE", "working", "0", "-1"]));
        out.push(cmd(&mut c, &["RPUSH", "bull:wait", "1", "2", "3"]));
        for _ in 0..4 {
            out.push(cmd(
                &mut c,
                &[
                    "EVAL",
                    BULLMQ_MOVE_TO_ACTIVE,
                    "3",
                    "bull:wait",
                    "bull:active",
                    "bull:events",
                    "bull:job:",
                    "worker-token",
                    "1700000000000",
                    r#"{"lockDuration":30000}"#,
                ],
            ));
        }
        out.push(cmd(&mut c, &["XRANGE", "bull:events", "-", "+"]));
        out.push(cmd(&mut c, &["LRANGE", "bull:active", "0", "-1"]));
        out.push(cmd(&mut c, &["HGETALL", "bull:job:1"]));
        out.push(cmd(
            &mut c,
            &["EXISTS", "bull:job:1:lock", "bull:job:4:lock"],
        ));
        results.push(out);
    }
    for (i, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b),
            "step {i} differs (left: tessera, right: redis)"
        );
    }
}

/// A script that never ends: other clients get -BUSY past the threshold, SCRIPT KILL stops it
/// (even when it catches errors with pcall), and the server serves again.
#[test]
fn a_script_that_never_ends_is_killed() {
    let server = TestServer::start(&[]);
    server
        .raw()
        .cmd_str(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    for body in [
        "local i = 0 while true do i = i + 1 end",
        "while true do pcall(function() local i = 0 while true do i = i + 1 end end) end",
    ] {
        let mut looping = server.raw();
        looping.send_cmd(&[b"EVAL", body.as_bytes(), b"0"]);
        let mut other = server.raw();
        std::thread::sleep(Duration::from_millis(50));
        // Before the threshold the other client waits; past it, it is answered -BUSY.
        let started = Instant::now();
        let reply = other.cmd_str(&["GET", "x"]);
        assert!(
            reply.starts_with("-BUSY Redis is busy running a script."),
            "{reply}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(other.cmd_str(&["SCRIPT", "KILL"]), "+OK\r\n");
        let reply = String::from_utf8(looping.read_reply()).unwrap();
        assert!(
            reply.starts_with("-ERR Script killed by user with SCRIPT KILL..."),
            "{reply}"
        );
        assert_eq!(
            other.cmd_str(&["SCRIPT", "KILL"]),
            "-NOTBUSY No scripts in execution right now.\r\n"
        );
        assert_eq!(looping.cmd_str(&["PING"]), "+PONG\r\n");
    }
}

/// A script that wrote cannot be killed; SHUTDOWN NOSAVE stops the server, and the script's
/// writes are not kept.
#[test]
fn a_busy_script_that_wrote_is_unkillable_until_shutdown_nosave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let mut server = TestServer::start(&["--dir", path, "--appendonly", "yes"]);
    let mut c = server.raw();
    c.cmd_str(&["CONFIG", "SET", "lua-time-limit", "100"]);
    assert_eq!(c.cmd_str(&["SET", "before", "1"]), "+OK\r\n");
    let mut looping = server.raw();
    looping.send_cmd(&[
        b"EVAL",
        b"redis.call('set', 'during', '1') while true do end",
        b"0",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let reply = c.cmd_str(&["SCRIPT", "KILL"]);
    assert!(
        reply.starts_with("-UNKILLABLE Sorry the script already executed write commands"),
        "{reply}"
    );
    assert!(c.cmd_str(&["SHUTDOWN"]).starts_with("-BUSY"));
    c.send_cmd(&[b"SHUTDOWN", b"NOSAVE"]);
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "the server did not stop"
    );
    let server = TestServer::start(&["--dir", path, "--appendonly", "yes"]);
    server.wait_loaded();
    let mut c = server.raw();
    assert_eq!(c.cmd_str(&["GET", "before"]), "$1\r\n1\r\n");
    assert_eq!(c.cmd_str(&["EXISTS", "during"]), ":0\r\n");
}

/// Bad scripts get errors and the server goes on: unbounded allocation, deep recursion,
/// a table that contains itself, errors inside pcall, every Lua type returned.
#[test]
fn bad_scripts_get_errors_and_the_server_goes_on() {
    let server = TestServer::start(&[]);
    let mut c = server.raw();
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "lua-memory-limit", "64mb"]),
        "+OK\r\n"
    );
    let reply = c.cmd_str(&[
        "EVAL",
        "local t = {} while true do t[#t + 1] = string.rep('x', 1000000) .. #t end",
        "0",
    ]);
    assert!(reply.starts_with("-ERR not enough memory"), "{reply}");
    let reply = c.cmd_str(&[
        "EVAL",
        "local function f(n) return f(n + 1) + 1 end return f(1)",
        "0",
    ]);
    assert!(
        reply.starts_with("-ERR user_script:1: stack overflow"),
        "{reply}"
    );
    let reply = c.cmd_str(&["EVAL", "local t = {} t[1] = t return t", "0"]);
    assert!(reply.contains("-ERR reached lua stack limit"), "{reply}");
    let reply = c.cmd_str(&[
        "EVAL",
        "local ok, e = pcall(function() error('inner') end) return {tostring(ok), e}",
        "0",
    ]);
    assert_eq!(
        reply,
        "*2\r\n$5\r\nfalse\r\n$20\r\nuser_script:1: inner\r\n"
    );
    let reply = c.cmd_str(&[
        "EVAL",
        "return {1, 2.5, 'three', true, false, nil, function() end, coroutine.create(function() end), {ok='s'}, {err='E x'}}",
        "0",
    ]);
    assert_eq!(reply, "*5\r\n:1\r\n:2\r\n$5\r\nthree\r\n:1\r\n$-1\r\n");
    // The Lua state still works after all of that.
    assert_eq!(
        c.cmd_str(&["EVAL", "return redis.call('ping')", "0"]),
        "+PONG\r\n"
    );
}

/// Script effects reach replicas and the log as the commands the script ran: random values
/// and the time are the same on the replica and after a restart.
#[test]
fn script_effects_replicate_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let primary = TestServer::start(&[
        "--dir",
        path,
        "--appendonly",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]);
    let spec = format!("127.0.0.1 {}", primary.port);
    let replica = TestServer::start(&["--replicaof", &spec, "--repl-diskless-sync-delay", "0"]);
    let mut p = primary.redis();
    let mut r = replica.redis();
    // After the full sync: a snapshot copies the dataset, REPL_NONE or not.
    wait_for(Duration::from_secs(20), "the replica to link", || {
        redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut r)
            .unwrap()
            .contains("master_link_status:up")
    });
    let script = "redis.call('set', 'r', tostring(math.random())) \
                  redis.call('set', 't', redis.call('time')[2]) \
                  redis.call('incr', 'n') \
                  redis.set_repl(redis.REPL_NONE) redis.call('set', 'local', 1) \
                  redis.call('set', 'local_ex', 1, 'EX', 100) \
                  return redis.call('get', 'r')";
    for _ in 0..5 {
        let _: String = redis::cmd("EVAL").arg(script).arg(0).query(&mut p).unwrap();
    }
    // A script inside a transaction: one MULTI/EXEC around everything.
    let _: () = redis::pipe()
        .atomic()
        .cmd("EVAL")
        .arg("redis.call('incr', 'n') redis.call('set', 'm', tostring(math.random()))")
        .arg(0)
        .ignore()
        .cmd("INCR")
        .arg("n")
        .ignore()
        .query(&mut p)
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the replica to apply the scripts",
        || {
            redis::cmd("GET")
                .arg("n")
                .query::<Option<String>>(&mut r)
                .unwrap()
                .as_deref()
                == Some("7")
        },
    );
    for key in ["r", "t", "m"] {
        let a: String = redis::cmd("GET").arg(key).query(&mut p).unwrap();
        let b: String = redis::cmd("GET").arg(key).query(&mut r).unwrap();
        assert_eq!(a, b, "{key} differs on the replica");
    }
    let local: Option<String> = redis::cmd("GET").arg("local").query(&mut r).unwrap();
    assert_eq!(local, None, "REPL_NONE effects reached the replica");
    // SET EX is recorded as an explicit effect (an absolute time): REPL_NONE covers it too.
    let local_ex: Option<String> = redis::cmd("GET").arg("local_ex").query(&mut r).unwrap();
    assert_eq!(
        local_ex, None,
        "REPL_NONE explicit effects reached the replica"
    );
    let before: String = redis::cmd("GET").arg("r").query(&mut p).unwrap();
    drop(primary);
    let primary = TestServer::start(&["--dir", path, "--appendonly", "yes"]);
    primary.wait_loaded();
    let mut p = primary.redis();
    let after: String = redis::cmd("GET").arg("r").query(&mut p).unwrap();
    assert_eq!(before, after);
    // The script cache is not persisted, as in Redis.
    let sha = String::from_utf8(crate::support::RawConn::connect(primary.port).cmd(&[
        b"SCRIPT",
        b"LOAD",
        b"return 1",
    ]))
    .unwrap();
    assert!(sha.contains("e0e1f9fabfc9d4800c877a703b823ac0578ff8db"));
}

/// A write from a script wakes a client blocked on the key, and the waiter sees the script's
/// whole effect.
#[test]
fn a_script_write_wakes_blocked_clients() {
    let server = TestServer::start(&[]);
    let mut waiter = server.raw();
    waiter.send_cmd(&[b"BLPOP", b"jobs", b"5"]);
    let mut c = server.raw();
    wait_for(Duration::from_secs(5), "the waiter to block", || {
        c.cmd_str(&["INFO", "clients"])
            .contains("blocked_clients:1")
    });
    let reply = c.cmd_str(&[
        "EVAL",
        "redis.call('rpush', KEYS[1], 'a', 'b') return redis.call('llen', KEYS[1])",
        "1",
        "jobs",
    ]);
    assert_eq!(reply, ":2\r\n");
    assert_eq!(
        String::from_utf8(waiter.read_reply()).unwrap(),
        "*2\r\n$4\r\njobs\r\n$1\r\na\r\n"
    );
    assert_eq!(
        c.cmd_str(&["LRANGE", "jobs", "0", "-1"]),
        "*1\r\n$1\r\nb\r\n"
    );
}
