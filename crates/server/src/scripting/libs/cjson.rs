//! `cjson`: JSON for scripts with lua-cjson's rules as Redis ships it (`encode`, `decode`,
//! `null`, and the settings functions, which accept and ignore their arguments except where
//! noted).
//! - Numbers encode as `%.14g`; NaN and infinities are errors.
//! - A table whose keys are all positive integers is an array (holes become `null`), unless it
//!   is excessively sparse; an empty table is `{}`; other tables are objects with string or
//!   number keys.
//! - Strings escape `"`, `\`, `/`, control characters and DEL, and pass other bytes through.
//! - `decode` makes `null` into `cjson.null` and nests at most 1000 levels.

use mlua::{LightUserData, Lua, Table, Value, Variadic};

const MAX_DEPTH: usize = 1000;

fn err(msg: String) -> mlua::Error {
    mlua::Error::RuntimeError(msg)
}

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "encode",
        super::function(lua, |lua, args| {
            if args.len() != 1 {
                return Err(err(
                    "bad argument #1 to 'encode' (expected 1 argument)".into()
                ));
            }
            let mut out = Vec::new();
            encode(&args[0], &mut out, 0)?;
            Ok(Value::String(lua.create_string(&out)?))
        })?,
    )?;
    t.raw_set(
        "decode",
        super::function(lua, |lua, args| {
            let [Value::String(s)] = args.as_slice() else {
                return Err(err(
                    "bad argument #1 to 'decode' (expected 1 argument)".into()
                ));
            };
            let bytes = s.as_bytes();
            let mut d = Decoder {
                lua,
                s: &bytes,
                pos: 0,
            };
            d.skip_ws();
            let v = d.value(0)?;
            d.skip_ws();
            if d.pos < d.s.len() {
                return Err(d.error("the end"));
            }
            Ok(v)
        })?,
    )?;
    t.raw_set("null", null())?;
    for name in [
        "encode_sparse_array",
        "encode_max_depth",
        "decode_max_depth",
        "encode_number_precision",
        "encode_keep_buffer",
        "encode_invalid_numbers",
        "decode_invalid_numbers",
    ] {
        t.raw_set(name, lua.create_function(|_, a: Variadic<Value>| Ok(a))?)?;
    }
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

fn encode(v: &Value, out: &mut Vec<u8>, depth: usize) -> mlua::Result<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(u) if u.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => encode_number(*i as f64, out)?,
        Value::Number(n) => encode_number(*n, out)?,
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth + 1 > MAX_DEPTH {
                return Err(err(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                )));
            }
            encode_table(t, out, depth + 1)?;
        }
        other => {
            return Err(err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )));
        }
    }
    Ok(())
}

fn encode_number(n: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
    if !n.is_finite() {
        return Err(err("Cannot serialise number: must not be NaN or Inf".into()));
    }
    tessera_protocol::num::write_g(out, n, 14);
    Ok(())
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn encode_table(t: &Table, out: &mut Vec<u8>, depth: usize) -> mlua::Result<()> {
    let pairs: Vec<(Value, Value)> = t.pairs::<Value, Value>().collect::<mlua::Result<_>>()?;
    // An array: positive integer keys only, not excessively sparse (lua-cjson's defaults:
    // ratio 2, safe 10).
    let mut max = 0usize;
    let mut is_array = !pairs.is_empty();
    for (k, _) in &pairs {
        let n = match k {
            Value::Integer(i) if *i >= 1 => *i as usize,
            Value::Number(f) if *f >= 1.0 && f.fract() == 0.0 => *f as usize,
            _ => {
                is_array = false;
                break;
            }
        };
        max = max.max(n);
    }
    if is_array {
        if max > 10 && max > pairs.len() * 2 {
            return Err(err(
                "Cannot serialise table: excessively sparse array".into()
            ));
        }
        out.push(b'[');
        for i in 1..=max {
            if i > 1 {
                out.push(b',');
            }
            let v: Value = t.raw_get(i)?;
            encode(&v, out, depth)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match k {
            Value::String(s) => encode_string(&s.as_bytes(), out),
            Value::Integer(n) => {
                out.push(b'"');
                encode_number(*n as f64, out)?;
                out.push(b'"');
            }
            Value::Number(n) => {
                out.push(b'"');
                encode_number(*n, out)?;
                out.push(b'"');
            }
            _ => {
                return Err(err(
                    "Cannot serialise table: table key must be a number or string".into(),
                ));
            }
        }
        out.push(b':');
        encode(v, out, depth)?;
    }
    out.push(b'}');
    Ok(())
}

struct Decoder<'a> {
    lua: &'a Lua,
    s: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn error(&self, expected: &str) -> mlua::Error {
        // lua-cjson names the token it found.
        let rest = &self.s[self.pos.min(self.s.len())..];
        let found = match rest.first() {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b',') => "T_COMMA",
            Some(b':') => "T_COLON",
            Some(b'"') => "T_STRING",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            Some(b't') if rest.starts_with(b"true") => "T_BOOLEAN",
            Some(b'f') if rest.starts_with(b"false") => "T_BOOLEAN",
            Some(b'n') if rest.starts_with(b"null") => "T_NULL",
            Some(_) => "invalid token",
        };
        err(format!(
            "Expected {expected} but found {found} at character {}",
            self.pos + 1
        ))
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        match self.s.get(self.pos) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.lua.create_string(self.string()?)?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", Value::Boolean(true)),
            Some(b'f') => self.literal(b"false", Value::Boolean(false)),
            Some(b'n') => self.literal(b"null", null()),
            _ => Err(self.error("value")),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> mlua::Result<Value> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.error("value"))
        }
    }

    fn nest(&self, depth: usize) -> mlua::Result<()> {
        if depth > MAX_DEPTH {
            return Err(err(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.pos + 1
            )));
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> mlua::Result<Value> {
        self.nest(depth)?;
        self.pos += 1;
        let t = self.lua.create_table()?;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        loop {
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return Err(self.error("object key string"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b':') {
                return Err(self.error("colon"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            t.raw_set(self.lua.create_string(key)?, v)?;
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return Err(self.error("comma or object end")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> mlua::Result<Value> {
        self.nest(depth)?;
        self.pos += 1;
        let t = self.lua.create_table()?;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        let mut i = 1;
        loop {
            self.skip_ws();
            let v = self.value(depth)?;
            t.raw_set(i, v)?;
            i += 1;
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                _ => return Err(self.error("comma or array end")),
            }
        }
    }

    fn number(&mut self) -> mlua::Result<Value> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.pos) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .map(Value::Number)
            .ok_or_else(|| {
                self.pos = start;
                self.error("value")
            })
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.pos..self.pos + 4)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
        self.pos += 4;
        Some(v)
    }

    fn string(&mut self) -> mlua::Result<Vec<u8>> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => {
                    self.pos = start;
                    return Err(err(format!(
                        "Expected value but found unexpected end of string at character {}",
                        self.s.len() + 1
                    )));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(&c) = self.s.get(self.pos) else {
                        continue;
                    };
                    self.pos += 1;
                    match c {
                        b'"' | b'\\' | b'/' => out.push(c),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            // Errors point at the escape's backslash.
                            let start = self.pos - 2;
                            let bad = |pos: usize| {
                                err(format!(
                                    "Expected value but found invalid unicode escape code at character {}",
                                    pos + 1
                                ))
                            };
                            let mut cp = self.hex4().ok_or_else(|| bad(start))?;
                            if (0xD800..0xDC00).contains(&cp) {
                                // A surrogate pair.
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(bad(start));
                                }
                                self.pos += 2;
                                let low = self.hex4().ok_or_else(|| bad(start))?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(bad(start));
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(bad(start));
                            }
                            let ch = char::from_u32(cp).ok_or_else(|| bad(start))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            return Err(err(format!(
                                "Expected value but found invalid escape code at character {}",
                                start + 1
                            )));
                        }
                    }
                }
                Some(&b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}
