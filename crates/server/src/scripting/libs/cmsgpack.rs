//! `cmsgpack`: MessagePack as Redis's `lua_cmsgpack.c` (0.4.0) encodes and decodes it.
//!
//! - Numbers with an integral value become the smallest integer encoding, others a float32
//!   when that loses nothing, otherwise a float64; strings are `str` types; booleans and nil
//!   their own codes; functions and other values nil.
//! - A table whose keys are exactly 1..n is an array, any other table a map (keys in `next`
//!   order); tables nested deeper than 16 levels become nil.
//! - Decoding knows the types lua_cmsgpack 0.4.0 knows: not `bin` and `ext`.
//! - `unpack` returns every value of a stream of them; `unpack_one` and `unpack_limit` also
//!   return the offset of what follows (-1 at the end).

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::{located, number};

const MAX_NESTING: usize = 16;
/// How deep decoded arrays and maps may nest: where Redis's Lua stack runs out (each level
/// holds a table on it).
const MAX_DECODE_DEPTH: usize = 3999;

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.is_empty() {
                return Err(located(
                    lua,
                    super::arg_error(0, "pack", "MessagePack pack needs input."),
                ));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                encode(lua, v, 0, &mut out)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, args: Variadic<Value>| {
            let s = string_arg(&args, "unpack").map_err(|e| located(lua, e))?;
            unpack(lua, &s, 0, 0).map_err(|e| located(lua, e))
        })?,
    )?;
    t.raw_set(
        "unpack_one",
        lua.create_function(|lua, args: Variadic<Value>| {
            let s = string_arg(&args, "unpack_one").map_err(|e| located(lua, e))?;
            let offset = optional_int(&args, 1, "unpack_one").map_err(|e| located(lua, e))?;
            unpack(lua, &s, 1, offset).map_err(|e| located(lua, e))
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        lua.create_function(|lua, args: Variadic<Value>| {
            let s = string_arg(&args, "unpack_limit").map_err(|e| located(lua, e))?;
            let limit = number(&args, 1, "unpack_limit").map_err(|e| located(lua, e))? as i64;
            let offset = optional_int(&args, 2, "unpack_limit").map_err(|e| located(lua, e))?;
            unpack(lua, &s, limit, offset).map_err(|e| located(lua, e))
        })?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

fn string_arg(args: &[Value], func: &str) -> mlua::Result<Vec<u8>> {
    match args.first() {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Integer(_) | Value::Number(_)) => {
            let n = number(args, 0, func)?;
            let mut out = Vec::new();
            tessera_protocol::num::write_g(&mut out, n, 14);
            Ok(out)
        }
        Some(v) => Err(super::arg_error(
            1,
            func,
            &format!("string expected, got {}", v.type_name()),
        )),
        None => Err(super::arg_error(1, func, "string expected, got no value")),
    }
}

fn optional_int(args: &[Value], i: usize, func: &str) -> mlua::Result<i64> {
    match args.get(i) {
        None | Some(Value::Nil) => Ok(0),
        Some(_) => Ok(number(args, i, func)? as i64),
    }
}

fn encode(lua: &Lua, v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(n) => encode_int(*n, out),
        Value::Number(n) => encode_number(*n, out),
        Value::String(s) => encode_bytes(&s.as_bytes(), out),
        Value::Table(t) if level < MAX_NESTING => encode_table(lua, t, level, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_number(n: f64, out: &mut Vec<u8>) {
    // lua_cmsgpack's IS_INT64_EQUIVALENT (2^63 does not fit: C's conversion overflows).
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) && n == (n as i64) as f64
    {
        encode_int(n as i64, out);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_bytes(s: &[u8], out: &mut Vec<u8>) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn header(out: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// lua_cmsgpack's `table_is_an_array`: positive integral keys without holes.
fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut count, mut max) = (0usize, 0f64);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => return Ok(None),
        };
        if n <= 0.0 || n.floor() != n {
            return Ok(None);
        }
        max = max.max(n);
        count += 1;
    }
    Ok((max == count as f64).then_some(count))
}

fn encode_table(lua: &Lua, t: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    if let Some(n) = array_len(t)? {
        header(out, n, 0x90, 0xdc, 0xdd);
        for i in 1..=n {
            encode(lua, &t.raw_get::<Value>(i)?, level + 1, out)?;
        }
        return Ok(());
    }
    let pairs: Vec<(Value, Value)> = t
        .clone()
        .pairs::<Value, Value>()
        .collect::<mlua::Result<_>>()?;
    header(out, pairs.len(), 0x80, 0xde, 0xdf);
    for (k, v) in &pairs {
        encode(lua, k, level + 1, out)?;
        encode(lua, v, level + 1, out)?;
    }
    Ok(())
}

enum DecodeError {
    Eof,
    BadFormat,
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Eof)?;
        let b = self.s.get(self.pos..end).ok_or(DecodeError::Eof)?;
        self.pos = end;
        Ok(b)
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }
}

/// One encoded item: a value, or the header of an array or map of `n` items (pairs).
enum Item {
    Value(Value),
    Array(usize),
    Map(usize),
}

fn item(lua: &Lua, c: &mut Cursor<'_>) -> mlua::Result<Result<Item, DecodeError>> {
    let tag = match c.take(1) {
        Ok(b) => b[0],
        Err(e) => return Ok(Err(e)),
    };
    let num = |n: f64| Value::Number(n);
    macro_rules! tri {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            }
        };
    }
    let v = match tag {
        0x00..=0x7f => num(f64::from(tag)),
        0x80..=0x8f => return Ok(Ok(Item::Map(usize::from(tag & 0x0f)))),
        0x90..=0x9f => return Ok(Ok(Item::Array(usize::from(tag & 0x0f)))),
        0xa0..=0xbf => Value::String(lua.create_string(tri!(c.take(usize::from(tag & 0x1f))))?),
        0xc0 => Value::Nil,
        0xc2 => Value::Boolean(false),
        0xc3 => Value::Boolean(true),
        0xd9 => {
            let n = tri!(c.be(1)) as usize;
            Value::String(lua.create_string(tri!(c.take(n)))?)
        }
        0xda => {
            let n = tri!(c.be(2)) as usize;
            Value::String(lua.create_string(tri!(c.take(n)))?)
        }
        0xdb => {
            let n = tri!(c.be(4)) as usize;
            Value::String(lua.create_string(tri!(c.take(n)))?)
        }
        0xca => num(f64::from(f32::from_bits(tri!(c.be(4)) as u32))),
        0xcb => num(f64::from_bits(tri!(c.be(8)))),
        0xcc => num(tri!(c.be(1)) as f64),
        0xcd => num(tri!(c.be(2)) as f64),
        0xce => num(tri!(c.be(4)) as f64),
        // As lua_cmsgpack: through a signed 64-bit integer.
        0xcf => num(tri!(c.be(8)) as i64 as f64),
        0xd0 => num(f64::from(tri!(c.be(1)) as u8 as i8)),
        0xd1 => num(f64::from(tri!(c.be(2)) as u16 as i16)),
        0xd2 => num(f64::from(tri!(c.be(4)) as u32 as i32)),
        0xd3 => num(tri!(c.be(8)) as i64 as f64),
        0xdc => {
            let n = tri!(c.be(2)) as usize;
            return Ok(Ok(Item::Array(n)));
        }
        0xdd => {
            let n = tri!(c.be(4)) as usize;
            return Ok(Ok(Item::Array(n)));
        }
        0xde => {
            let n = tri!(c.be(2)) as usize;
            return Ok(Ok(Item::Map(n)));
        }
        0xdf => {
            let n = tri!(c.be(4)) as usize;
            return Ok(Ok(Item::Map(n)));
        }
        0xe0..=0xff => num(f64::from(tag as i8)),
        _ => return Ok(Err(DecodeError::BadFormat)),
    };
    Ok(Ok(Item::Value(v)))
}

/// Redis's decoder runs out of Lua stack this deep.
fn too_deep(kind: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!(
        "stack overflow (in function mp_decode_to_lua_{kind})"
    ))
}

/// An array or map being filled.
struct Open {
    table: Table,
    /// Items (arrays) or pairs (maps) still to come.
    left: usize,
    /// Arrays: the next index. Maps: unused.
    next: usize,
    is_map: bool,
    /// Maps: the key read, waiting for its value.
    key: Option<Value>,
}

/// Decodes one value, nested arrays and maps with a stack of their own (a deep payload must
/// not exhaust the server's stack), as deep as Redis's decoder goes.
fn decode(lua: &Lua, c: &mut Cursor<'_>) -> mlua::Result<Result<Value, DecodeError>> {
    let mut open: Vec<Open> = Vec::new();
    loop {
        let mut value = match item(lua, c)? {
            Err(e) => return Ok(Err(e)),
            Ok(Item::Value(v)) => v,
            Ok(Item::Array(_)) if open.len() >= MAX_DECODE_DEPTH => return Err(too_deep("array")),
            Ok(Item::Map(_)) if open.len() >= MAX_DECODE_DEPTH => return Err(too_deep("hash")),
            Ok(Item::Array(n)) => {
                // Each item takes a byte at least: a bigger count is missing bytes, not
                // memory to take.
                let table = lua.create_table_with_capacity(n.min(c.s.len() - c.pos), 0)?;
                if n > 0 {
                    open.push(Open {
                        table,
                        left: n,
                        next: 1,
                        is_map: false,
                        key: None,
                    });
                    continue;
                }
                Value::Table(table)
            }
            Ok(Item::Map(n)) => {
                let table = lua.create_table_with_capacity(0, n.min(c.s.len() - c.pos))?;
                if n > 0 {
                    open.push(Open {
                        table,
                        left: n,
                        next: 0,
                        is_map: true,
                        key: None,
                    });
                    continue;
                }
                Value::Table(table)
            }
        };
        // Put the value in its container; a container it completes goes in its own.
        loop {
            let Some(top) = open.last_mut() else {
                return Ok(Ok(value));
            };
            if top.is_map {
                let Some(key) = top.key.take() else {
                    top.key = Some(value);
                    break;
                };
                if key.is_nil() {
                    // Lua's own error from inside the library: no position.
                    return Err(crate::scripting::lua_err("table index is nil"));
                }
                top.table.raw_set(key, value)?;
            } else {
                top.table.raw_set(top.next, value)?;
                top.next += 1;
            }
            top.left -= 1;
            if top.left > 0 {
                break;
            }
            let done = open.pop().expect("the top exists");
            value = Value::Table(done.table);
        }
    }
}

/// lua_cmsgpack's `mp_unpack_full`: `limit` 0 with `offset` 0 decodes everything and returns
/// only the values; otherwise the offset after them comes first.
fn unpack(lua: &Lua, s: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    let decode_all = limit == 0 && offset == 0;
    if offset < 0 || limit < 0 {
        return Err(mlua::Error::RuntimeError(format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            s.len()
        )));
    }
    if offset as usize > s.len() {
        return Err(mlua::Error::RuntimeError(format!(
            "Start offset {offset} greater than input length {}.",
            s.len()
        )));
    }
    let limit = if decode_all { i64::MAX } else { limit };
    let mut c = Cursor {
        s,
        pos: offset as usize,
    };
    let mut values = MultiValue::new();
    let mut count = 0;
    while c.pos < s.len() && count < limit {
        match decode(lua, &mut c)? {
            Ok(v) => values.push_back(v),
            Err(DecodeError::Eof) => {
                return Err(mlua::Error::RuntimeError("Missing bytes in input.".into()));
            }
            Err(DecodeError::BadFormat) => {
                return Err(mlua::Error::RuntimeError(
                    "Bad data format in input.".into(),
                ));
            }
        }
        count += 1;
    }
    if !decode_all {
        let next = if c.pos == s.len() { -1 } else { c.pos as i64 };
        values.push_front(Value::Integer(next));
    }
    Ok(values)
}
