//! Redis's conversions between replies and Lua values (`script_lua.c`):
//! - a command's reply, as the RESP a handler wrote, becomes a Lua value for `redis.call`
//!   (RESP2 rules by default, RESP3 rules after `redis.setresp(3)`);
//! - a script's return value becomes the reply, in the caller's protocol.

use mlua::{Lua, Table, Value};
use tessera_protocol::Reply;

/// Nesting deeper than this is refused (a table that contains itself would never end).
const MAX_DEPTH: usize = 1000;

/// The `err` text of an error table built from an error reply or message, as Redis's
/// `luaPushErrorBuff`: `-CODE msg` keeps its code, a message without one gets `ERR`.
pub fn error_text(msg: &[u8]) -> Vec<u8> {
    let (code, text): (&[u8], &[u8]) = match msg.strip_prefix(b"-") {
        Some(rest) => match rest.iter().position(|&b| b == b' ') {
            Some(sp) => (&rest[..sp], &rest[sp + 1..]),
            None => (b"ERR", rest),
        },
        None => (b"ERR", msg),
    };
    let text = trim_crlf(text);
    let mut out = Vec::with_capacity(code.len() + 1 + text.len());
    out.extend_from_slice(code);
    out.push(b' ');
    out.extend_from_slice(text);
    out
}

fn trim_crlf(mut s: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// A table `{err = text}` as `redis.call` errors and `redis.pcall` results are.
pub fn error_table(lua: &Lua, err: &[u8]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 2)?;
    t.raw_set("err", lua.create_string(err)?)?;
    Ok(t)
}

/// Reads one reply from `buf` at `*pos` (RESP our handlers wrote, so well-formed) and builds
/// its Lua value. `resp3` selects the RESP3 rules (`redis.setresp(3)`).
pub fn reply_to_lua(lua: &Lua, buf: &[u8], pos: &mut usize, resp3: bool) -> mlua::Result<Value> {
    let kind = buf[*pos];
    let line = read_line(buf, pos);
    Ok(match kind {
        b':' => Value::Number(parse_i64(line) as f64),
        b'$' => match parse_i64(line) {
            n if n < 0 => null(resp3),
            n => {
                let s = lua.create_string(&buf[*pos..*pos + n as usize])?;
                *pos += n as usize + 2;
                Value::String(s)
            }
        },
        b'+' => {
            let t = lua.create_table_with_capacity(0, 1)?;
            t.raw_set("ok", lua.create_string(line)?)?;
            Value::Table(t)
        }
        b'-' => {
            let mut err = Vec::with_capacity(line.len() + 1);
            err.push(b'-');
            err.extend_from_slice(line);
            Value::Table(error_table(lua, &error_text(&err))?)
        }
        b'*' | b'>' => match parse_i64(line) {
            n if n < 0 => null(resp3),
            n => {
                let t = lua.create_table_with_capacity(n as usize, 0)?;
                for i in 1..=n {
                    let v = reply_to_lua(lua, buf, pos, resp3)?;
                    t.raw_set(i, v)?;
                }
                Value::Table(t)
            }
        },
        b'%' => {
            let n = parse_i64(line).max(0) as usize;
            let map = lua.create_table_with_capacity(0, n)?;
            for _ in 0..n {
                let k = reply_to_lua(lua, buf, pos, resp3)?;
                let v = reply_to_lua(lua, buf, pos, resp3)?;
                map.raw_set(k, v)?;
            }
            wrap(lua, "map", Value::Table(map))?
        }
        b'~' => {
            let n = parse_i64(line).max(0) as usize;
            let set = lua.create_table_with_capacity(0, n)?;
            for _ in 0..n {
                let k = reply_to_lua(lua, buf, pos, resp3)?;
                set.raw_set(k, true)?;
            }
            wrap(lua, "set", Value::Table(set))?
        }
        b'_' => Value::Nil,
        b'#' => Value::Boolean(line == b"t"),
        b',' => {
            let v = tessera_protocol::num::parse_f64(line).unwrap_or(f64::NAN);
            wrap(lua, "double", Value::Number(v))?
        }
        b'(' => wrap(lua, "big_number", Value::String(lua.create_string(line)?))?,
        b'=' => {
            let n = parse_i64(line).max(4) as usize;
            let body = &buf[*pos..*pos + n];
            *pos += n + 2;
            let v = lua.create_table_with_capacity(0, 2)?;
            v.raw_set("format", lua.create_string(&body[..3])?)?;
            v.raw_set("string", lua.create_string(&body[4..])?)?;
            wrap(lua, "verbatim_string", Value::Table(v))?
        }
        b'|' => {
            // Attributes are skipped; the reply follows them.
            let n = parse_i64(line).max(0);
            for _ in 0..n * 2 {
                reply_to_lua(lua, buf, pos, resp3)?;
            }
            reply_to_lua(lua, buf, pos, resp3)?
        }
        _ => Value::Nil,
    })
}

/// RESP2 nulls are `false` in Lua, RESP3 nulls `nil`.
fn null(resp3: bool) -> Value {
    if resp3 {
        Value::Nil
    } else {
        Value::Boolean(false)
    }
}

fn wrap(lua: &Lua, field: &str, v: Value) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set(field, v)?;
    Ok(Value::Table(t))
}

fn read_line<'a>(buf: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let start = *pos + 1;
    let end = memchr::memchr(b'\r', &buf[start..]).map_or(buf.len(), |i| start + i);
    *pos = (end + 2).min(buf.len());
    &buf[start..end]
}

fn parse_i64(s: &[u8]) -> i64 {
    tessera_protocol::num::parse_i64(s).unwrap_or(0)
}

/// Lua 5.1's number to C `long long`, as Redis converts it: out of range and NaN give the
/// x86 conversion's `LLONG_MIN`.
pub fn number_to_i64(n: f64) -> i64 {
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) {
        n as i64
    } else {
        i64::MIN
    }
}

/// Writes a script's return value as a reply (Redis's `luaReplyToRedisReply`). Booleans follow
/// the script's protocol (`redis.setresp`): RESP2 scripts answer 1 and null.
pub fn lua_to_reply(v: &Value, r: &mut Reply<'_>, script_resp3: bool) {
    let mut w = Writer { r, script_resp3 };
    w.value(v, 0);
}

struct Writer<'a, 'b> {
    r: &'a mut Reply<'b>,
    script_resp3: bool,
}

impl Writer<'_, '_> {
    fn value(&mut self, v: &Value, depth: usize) {
        let r = &mut *self.r;
        if depth > MAX_DEPTH {
            r.error("ERR reached lua stack limit");
            return;
        }
        match v {
            Value::String(s) => r.bulk(&s.as_bytes()),
            Value::Boolean(b) => {
                if self.script_resp3 {
                    r.boolean(*b);
                } else if *b {
                    r.int(1);
                } else {
                    r.null();
                }
            }
            Value::Integer(i) => r.int(*i),
            Value::Number(n) => r.int(number_to_i64(*n)),
            Value::Table(t) => self.table(t, depth),
            _ => r.null(),
        }
    }

    fn table(&mut self, t: &Table, depth: usize) {
        let r = &mut *self.r;
        if let Ok(Value::String(err)) = t.raw_get::<Value>("err") {
            r.error_bytes(&err.as_bytes());
            return;
        }
        if let Ok(Value::String(ok)) = t.raw_get::<Value>("ok") {
            r.simple_bytes(&ok.as_bytes());
            return;
        }
        match t.raw_get::<Value>("double") {
            Ok(Value::Number(n)) => return r.double(n),
            Ok(Value::Integer(n)) => return r.double(n as f64),
            _ => {}
        }
        if let Ok(Value::String(s)) = t.raw_get::<Value>("big_number") {
            // Redis checks nothing here; a RESP3 big number must be digits, so other text is
            // sent as a bulk string.
            let digits = s.as_bytes();
            match std::str::from_utf8(&digits) {
                Ok(d)
                    if !d.is_empty()
                        && d.trim_start_matches('-')
                            .bytes()
                            .all(|b| b.is_ascii_digit()) =>
                {
                    r.big_number(d)
                }
                _ => r.bulk(&digits),
            }
            return;
        }
        if let Ok(Value::Table(v)) = t.raw_get::<Value>("verbatim_string")
            && let (Ok(Value::String(format)), Ok(Value::String(text))) =
                (v.raw_get::<Value>("format"), v.raw_get::<Value>("string"))
        {
            let format = format.as_bytes();
            match std::str::from_utf8(&format) {
                Ok(f) if f.len() == 3 => r.verbatim(f, &text.as_bytes()),
                _ => r.bulk(&text.as_bytes()),
            }
            return;
        }
        if let Ok(Value::Table(map)) = t.raw_get::<Value>("map") {
            let pairs: Vec<(Value, Value)> =
                map.pairs::<Value, Value>().filter_map(Result::ok).collect();
            if r.resp3() {
                r.map(pairs.len());
            } else {
                r.array(pairs.len() * 2);
            }
            for (k, v) in &pairs {
                self.value(k, depth + 1);
                self.value(v, depth + 1);
            }
            return;
        }
        if let Ok(Value::Table(set)) = t.raw_get::<Value>("set") {
            let keys: Vec<Value> = set
                .pairs::<Value, Value>()
                .filter_map(|p| p.ok().map(|(k, _)| k))
                .collect();
            if r.resp3() {
                r.set(keys.len());
            } else {
                r.array(keys.len());
            }
            for k in &keys {
                self.value(k, depth + 1);
            }
            return;
        }
        // An array: elements 1, 2, ... up to the first nil.
        let mut items = Vec::new();
        loop {
            match t.raw_get::<Value>(items.len() + 1) {
                Ok(Value::Nil) | Err(_) => break,
                Ok(v) => items.push(v),
            }
        }
        r.array(items.len());
        for v in &items {
            self.value(v, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_get_a_code() {
        assert_eq!(error_text(b"-ERR syntax error\r\n"), b"ERR syntax error");
        assert_eq!(error_text(b"-WRONGTYPE Operation"), b"WRONGTYPE Operation");
        assert_eq!(error_text(b"-x"), b"ERR x");
        assert_eq!(error_text(b"x y"), b"ERR x y");
        assert_eq!(error_text(b""), b"ERR ");
    }

    #[test]
    fn numbers_convert_as_redis_does() {
        assert_eq!(number_to_i64(1.9), 1);
        assert_eq!(number_to_i64(-1.9), -1);
        assert_eq!(number_to_i64(1e20), i64::MIN);
        assert_eq!(number_to_i64(f64::NAN), i64::MIN);
        assert_eq!(number_to_i64(f64::INFINITY), i64::MIN);
    }

    #[test]
    fn replies_round_trip() {
        let lua = Lua::new();
        let buf = b"*3\r\n:1\r\n$2\r\nab\r\n*-1\r\n";
        let mut pos = 0;
        let v = reply_to_lua(&lua, buf, &mut pos, false).unwrap();
        assert_eq!(pos, buf.len());
        let mut out = Vec::new();
        lua_to_reply(&v, &mut Reply::new(&mut out, false), false);
        assert_eq!(out, b"*3\r\n:1\r\n$2\r\nab\r\n$-1\r\n");
    }
}
