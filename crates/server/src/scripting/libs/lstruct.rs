//! `struct`: binary packing as Roberto Ierusalimschy's `struct` library (Redis's
//! `lua_struct.c`) does it on a 64-bit little-endian machine: `pack(fmt, ...)`,
//! `unpack(fmt, data [, pos])` and `size(fmt)`.
//!
//! Format: `>` big-endian, `<` little-endian, `![n]` alignment, `x` a zero byte, `b`/`B` char,
//! `h`/`H` short, `l`/`L` long (8 bytes), `T` size_t, `i[n]`/`I[n]` an integer of n bytes
//! (default 4, at most 32), `c[n]` n characters (`c0`: the whole string, or in `unpack` the
//! length given by the previous number), `s` a zero-terminated string, `f` float, `d` double.

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::{arg_error, located, number};

const MAX_INT_SIZE: usize = 32;
const MAX_ALIGN: usize = 8;

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, a: Variadic<Value>| pack(lua, &a).map_err(|e| located(lua, e)))?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, a: Variadic<Value>| {
            unpack(lua, &a).map_err(|e| located(lua, e))
        })?,
    )?;
    t.raw_set(
        "size",
        lua.create_function(|lua, a: Variadic<Value>| size(&a).map_err(|e| located(lua, e)))?,
    )?;
    Ok(t)
}

fn err(msg: String) -> mlua::Error {
    mlua::Error::RuntimeError(msg)
}

/// `luaL_checklstring`: a string, or a number as Lua writes it.
fn bytes(args: &[Value], i: usize, func: &str) -> mlua::Result<Vec<u8>> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Integer(_) | Value::Number(_)) => {
            let mut out = Vec::new();
            tessera_protocol::num::write_g(&mut out, number(args, i, func)?, 14);
            Ok(out)
        }
        Some(v) => Err(arg_error(
            i + 1,
            func,
            &format!("string expected, got {}", v.type_name()),
        )),
        None => Err(arg_error(i + 1, func, "string expected, got no value")),
    }
}

#[derive(Clone, Copy)]
struct Header {
    big: bool,
    align: usize,
}

const DEFAULT: Header = Header {
    big: false,
    align: 1,
};

/// A format being read.
struct Format<'a> {
    f: &'a [u8],
    pos: usize,
}

impl Format<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.f.get(self.pos)?;
        self.pos += 1;
        Some(c)
    }

    fn num(&mut self, default: usize) -> mlua::Result<usize> {
        if !self.f.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: usize = 0;
        while let Some(&d) = self.f.get(self.pos).filter(|d| d.is_ascii_digit()) {
            a = a
                .checked_mul(10)
                .and_then(|a| a.checked_add(usize::from(d - b'0')))
                .filter(|&a| a <= i32::MAX as usize)
                .ok_or_else(|| err("integral size overflow".into()))?;
            self.pos += 1;
        }
        Ok(a)
    }

    /// `optsize`: the size of an option (0 for those that take no room).
    fn size(&mut self, opt: u8) -> mlua::Result<usize> {
        Ok(match opt {
            b'b' | b'B' | b'x' => 1,
            b'h' | b'H' => 2,
            b'l' | b'L' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.num(1)?,
            b'i' | b'I' => {
                let n = self.num(4)?;
                if n > MAX_INT_SIZE {
                    return Err(err(format!(
                        "integral size {n} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                n
            }
            _ => 0,
        })
    }

    /// `controloptions`.
    fn control(&mut self, opt: u8, h: &mut Header, func: &str) -> mlua::Result<()> {
        match opt {
            b' ' => {}
            b'>' => h.big = true,
            b'<' => h.big = false,
            b'!' => {
                let a = self.num(MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return Err(err(format!("alignment {a} is not a power of 2")));
                }
                h.align = a;
            }
            _ => {
                return Err(arg_error(
                    1,
                    func,
                    &format!("invalid format option '{}'", char::from(opt)),
                ));
            }
        }
        Ok(())
    }
}

fn to_align(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn pack(lua: &Lua, args: &[Value]) -> mlua::Result<Value> {
    let fmt = bytes(args, 0, "pack")?;
    // The library pushes a nil after its arguments: a missing one is "got nil".
    let mut args = args.to_vec();
    args.resize(args.len().max(fmt.len() + 2), Value::Nil);
    let args = &args[..];
    let mut f = Format { f: &fmt, pos: 0 };
    let mut h = DEFAULT;
    let mut arg = 1;
    let mut out = Vec::new();
    while let Some(opt) = f.next() {
        let mut size = f.size(opt)?;
        let pad = to_align(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number(args, arg, "pack")?;
                arg += 1;
                let mut value = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let mut buf = vec![0u8; size];
                for i in 0..size {
                    let at = if h.big { size - 1 - i } else { i };
                    buf[at] = value as u8;
                    value >>= 8;
                }
                out.extend_from_slice(&buf);
            }
            b'x' => out.push(0),
            b'f' => {
                let v = number(args, arg, "pack")? as f32;
                arg += 1;
                out.extend_from_slice(&if h.big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                });
            }
            b'd' => {
                let v = number(args, arg, "pack")?;
                arg += 1;
                out.extend_from_slice(&if h.big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                });
            }
            b'c' | b's' => {
                let s = bytes(args, arg, "pack")?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // The library names the argument after the string (its own slip).
                    return Err(arg_error(arg + 1, "pack", "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => f.control(opt, &mut h, "pack")?,
        }
    }
    Ok(Value::String(lua.create_string(&out)?))
}

fn unpack(lua: &Lua, args: &[Value]) -> mlua::Result<MultiValue> {
    let fmt = bytes(args, 0, "unpack")?;
    let data = bytes(args, 1, "unpack")?;
    let start = match args.get(2) {
        None | Some(Value::Nil) => 1,
        Some(_) => number(args, 2, "unpack")? as i64,
    };
    let ld = data.len();
    if start == 0 {
        return Err(arg_error(3, "unpack", "offset must be 1 or greater"));
    }
    // The library's position is unsigned: a negative offset is past any data.
    let mut pos = (start - 1) as u64 as usize;
    let mut f = Format { f: &fmt, pos: 0 };
    let mut h = DEFAULT;
    let mut out = MultiValue::new();
    let too_short = || arg_error(2, "unpack", "data string too short");
    while let Some(opt) = f.next() {
        let mut size = f.size(opt)?;
        pos = pos.wrapping_add(to_align(pos, &h, opt, size));
        if size > ld || pos > ld - size {
            return Err(too_short());
        }
        let field = &data[pos..pos + size];
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let mut l: u64 = 0;
                for i in 0..size {
                    let b = if h.big { field[i] } else { field[size - 1 - i] };
                    l = l.checked_shl(8).unwrap_or(0) | u64::from(b);
                }
                let v = if opt.is_ascii_lowercase() {
                    let mask = (!0u64).checked_shl((size * 8).saturating_sub(1) as u32);
                    let mask = mask.unwrap_or(0);
                    if l & mask != 0 {
                        l |= mask;
                    }
                    l as i64 as f64
                } else {
                    l as f64
                };
                out.push_back(Value::Number(v));
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = field.try_into().expect("4 bytes");
                let v = if h.big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                };
                out.push_back(Value::Number(f64::from(v)));
            }
            b'd' => {
                let b: [u8; 8] = field.try_into().expect("8 bytes");
                let v = if h.big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                };
                out.push_back(Value::Number(v));
            }
            b'c' => {
                if size == 0 {
                    let prev = match out.pop_back() {
                        Some(Value::Number(n)) => n,
                        Some(Value::Integer(n)) => n as f64,
                        _ => return Err(err("format 'c0' needs a previous size".into())),
                    };
                    size = if prev > 0.0 { prev as usize } else { 0 };
                    if size > ld || pos > ld - size {
                        return Err(too_short());
                    }
                }
                out.push_back(Value::String(lua.create_string(&data[pos..pos + size])?));
            }
            b's' => {
                let Some(end) = memchr::memchr(0, &data[pos..]) else {
                    return Err(err("unfinished string in data".into()));
                };
                size = end + 1;
                out.push_back(Value::String(lua.create_string(&data[pos..pos + end])?));
            }
            _ => f.control(opt, &mut h, "unpack")?,
        }
        pos += size;
    }
    out.push_back(Value::Integer((pos as i64).wrapping_add(1)));
    Ok(out)
}

fn size(args: &[Value]) -> mlua::Result<Value> {
    let fmt = bytes(args, 0, "size")?;
    let mut f = Format { f: &fmt, pos: 0 };
    let mut h = DEFAULT;
    let mut pos = 0usize;
    while let Some(opt) = f.next() {
        let size = f.size(opt)?;
        pos += to_align(pos, &h, opt, size);
        if opt == b's' {
            return Err(arg_error(1, "size", "option 's' has no fixed size"));
        }
        if opt == b'c' && size == 0 {
            return Err(arg_error(1, "size", "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            f.control(opt, &mut h, "size")?;
        }
        pos += size;
    }
    Ok(Value::Integer(pos as i64))
}
