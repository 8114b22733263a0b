//! The libraries Redis adds to Lua: `bit` (LuaBitOp), `cjson`, `cmsgpack` and `struct`,
//! written against their documented behaviour.

use mlua::{Lua, Table, Value, Variadic};

mod cjson;
mod cmsgpack;
mod lstruct;

/// Adds the libraries to the globals table.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    globals.raw_set("bit", bit(lua)?)?;
    globals.raw_set("cjson", cjson::module(lua)?)?;
    globals.raw_set("cmsgpack", cmsgpack::module(lua)?)?;
    globals.raw_set("struct", lstruct::module(lua)?)?;
    Ok(())
}

fn arg_error(n: usize, func: &str, msg: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!("bad argument #{n} to '{func}' ({msg})"))
}

/// Prefixes an error of a library function with its caller's position, as C libraries'
/// `luaL_error` does (`user_script:1: ...`).
pub fn located(lua: &Lua, e: mlua::Error) -> mlua::Error {
    let mlua::Error::RuntimeError(msg) = e else {
        return e;
    };
    let at = lua.inspect_stack(1, |d| {
        let line = d.current_line()?;
        let src = d.source().short_src?.into_owned();
        Some(format!("{src}:{line}: "))
    });
    mlua::Error::RuntimeError(format!("{}{msg}", at.flatten().unwrap_or_default()))
}

/// A library function: its errors carry the caller's position.
fn function<F>(lua: &Lua, f: F) -> mlua::Result<mlua::Function>
where
    F: Fn(&Lua, Variadic<Value>) -> mlua::Result<Value> + 'static,
{
    lua.create_function(move |lua, a: Variadic<Value>| f(lua, a).map_err(|e| located(lua, e)))
}

/// A number argument, as Lua's `luaL_checknumber` (numeric strings convert).
fn number(args: &[Value], i: usize, func: &str) -> mlua::Result<f64> {
    match args.get(i) {
        Some(Value::Integer(n)) => Ok(*n as f64),
        Some(Value::Number(n)) => Ok(*n),
        Some(Value::String(s)) => std::str::from_utf8(&s.as_bytes())
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .ok_or_else(|| arg_error(i + 1, func, "number expected, got string")),
        Some(v) => Err(arg_error(
            i + 1,
            func,
            &format!("number expected, got {}", v.type_name()),
        )),
        None => Err(arg_error(i + 1, func, "number expected, got no value")),
    }
}

/// LuaBitOp's conversion of a Lua number to a 32-bit integer (modulo 2^32).
fn tobit(n: f64) -> i32 {
    if !n.is_finite() {
        return 0;
    }
    // Round to nearest as LuaBitOp's `2^52 + 2^51` trick does, then wrap.
    let r = n.round_ties_even();
    (r.rem_euclid(4_294_967_296.0) as u64) as u32 as i32
}

fn int(v: i32) -> mlua::Result<Value> {
    Ok(Value::Integer(i64::from(v)))
}

fn bit(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "tobit",
        function(lua, |_, a| int(tobit(number(&a, 0, "tobit")?)))?,
    )?;
    t.raw_set(
        "bnot",
        function(lua, |_, a| int(!tobit(number(&a, 0, "bnot")?)))?,
    )?;
    type Fold = fn(i32, i32) -> i32;
    let folds: [(&str, Fold); 3] = [
        ("band", |a, b| a & b),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ];
    for (name, op) in folds {
        t.raw_set(
            name,
            function(lua, move |_, a| {
                let mut acc = tobit(number(&a, 0, name)?);
                for i in 1..a.len() {
                    acc = op(acc, tobit(number(&a, i, name)?));
                }
                int(acc)
            })?,
        )?;
    }
    type Shift = fn(i32, u32) -> i32;
    let shifts: [(&str, Shift); 5] = [
        ("lshift", |a, n| ((a as u32) << n) as i32),
        ("rshift", |a, n| ((a as u32) >> n) as i32),
        ("arshift", |a, n| a >> n),
        ("rol", |a, n| (a as u32).rotate_left(n) as i32),
        ("ror", |a, n| (a as u32).rotate_right(n) as i32),
    ];
    for (name, op) in shifts {
        t.raw_set(
            name,
            function(lua, move |_, a| {
                let x = tobit(number(&a, 0, name)?);
                let n = (tobit(number(&a, 1, name)?) & 31) as u32;
                int(op(x, n))
            })?,
        )?;
    }
    t.raw_set(
        "bswap",
        function(lua, |_, a| int(tobit(number(&a, 0, "bswap")?).swap_bytes()))?,
    )?;
    t.raw_set(
        "tohex",
        function(lua, |lua, a| {
            let x = tobit(number(&a, 0, "tohex")?) as u32;
            let n = if a.len() > 1 {
                tobit(number(&a, 1, "tohex")?)
            } else {
                8
            };
            let digits = n.unsigned_abs().min(8) as usize;
            let text = if n < 0 {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            Ok(Value::String(lua.create_string(&text[8 - digits..])?))
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tobit_wraps_like_luabitop() {
        assert_eq!(tobit(0xffff_ffffu32 as f64), -1);
        assert_eq!(tobit(4_294_967_296.0 + 5.0), 5);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(2.5), 2);
        assert_eq!(tobit(3.5), 4);
    }
}
