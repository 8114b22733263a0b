//! Redis 7 functions (`functions.c`, `function_lua.c`): libraries of Lua functions that
//! FUNCTION LOAD registers and FCALL / FCALL_RO call.
//!
//! - A library's code starts with `#!lua name=<library>`. FUNCTION LOAD runs it once in the
//!   functions' own Lua state, with globals that hold only `redis.register_function`,
//!   `redis.log` and the constants (`Engine::load_mode`); what it registers becomes the
//!   library. It has 500 ms to do so.
//! - Library names are case-sensitive, function names are not, and a function name belongs to
//!   one library at a time.
//! - Libraries are data: FUNCTION LOAD/DELETE/FLUSH/RESTORE are recorded on the effect stream
//!   (the log, replicas), a checkpoint image keeps the library codes in its metadata, and a full
//!   sync payload carries them as `RDB_OPCODE_FUNCTION2` records.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{Function, Lua, Table, Value, Variadic};
use tessera_protocol::Args;
use tessera_storage::rdb;

use super::{Engine, Job, Scripting, flags, lua_err, lua_error_message};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::server::Server;

/// The error a library's code gets when it runs past [`LOAD_TIMEOUT_MS`].
pub const LOAD_TIMEOUT: &str = "FUNCTION LOAD timeout";
const LOAD_TIMEOUT_MS: u64 = 500;

const NAME_RULE: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// What `redis.register_function` collects while a library's code runs (`None` otherwise).
#[derive(Clone, Default)]
pub struct Registry(Rc<RefCell<Option<Vec<Registered>>>>);

/// A registered function.
pub struct Registered {
    name: String,
    description: Option<Vec<u8>>,
    flags: u32,
    func: Function,
}

/// A loaded library.
pub struct Library {
    name: String,
    /// The code as loaded, shebang line included (FUNCTION LIST WITHCODE, DUMP).
    code: Vec<u8>,
    /// Sorted by lower-case name.
    functions: Vec<Registered>,
}

/// The loaded libraries.
#[derive(Default)]
pub struct Libraries {
    libs: BTreeMap<String, Library>,
    /// Lower-case function name to its library.
    owner: HashMap<String, String>,
    /// Bytes of library code (`used_memory_functions`).
    pub code_bytes: usize,
}

impl Libraries {
    /// Libraries loaded.
    pub fn len(&self) -> usize {
        self.libs.len()
    }

    /// True if no library is loaded.
    pub fn is_empty(&self) -> bool {
        self.libs.is_empty()
    }

    /// Functions loaded.
    pub fn functions(&self) -> usize {
        self.owner.len()
    }

    /// The codes of all libraries, in name order.
    pub fn codes(&self) -> Vec<Vec<u8>> {
        self.libs.values().map(|l| l.code.clone()).collect()
    }

    fn find(&self, name: &[u8]) -> Option<&Registered> {
        let lower = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        let lib = self.libs.get(self.owner.get(&lower)?)?;
        lib.functions
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&lower))
    }

    /// Adds `new` (Redis's `libraryJoin`): all of them or, on a conflict, none. With
    /// `replace`, a library of the same name is replaced; otherwise it is an error.
    fn join(&mut self, new: Vec<Library>, replace: bool) -> Result<(), String> {
        let replaced: Vec<&str> = new
            .iter()
            .filter(|l| self.libs.contains_key(&l.name))
            .map(|l| l.name.as_str())
            .collect();
        if !replace && let Some(name) = replaced.first() {
            return Err(format!("ERR Library {name} already exists"));
        }
        for lib in &new {
            for f in &lib.functions {
                let lower = f.name.to_ascii_lowercase();
                if let Some(owner) = self.owner.get(&lower)
                    && !replaced.contains(&owner.as_str())
                {
                    return Err(format!("ERR Function {} already exists", f.name));
                }
            }
        }
        for lib in new {
            self.remove(&lib.name.clone());
            for f in &lib.functions {
                self.owner
                    .insert(f.name.to_ascii_lowercase(), lib.name.clone());
            }
            self.code_bytes += lib.code.len();
            self.libs.insert(lib.name.clone(), lib);
        }
        Ok(())
    }

    /// Removes a library; false if there is none of that name.
    fn remove(&mut self, name: &str) -> bool {
        let Some(lib) = self.libs.remove(name) else {
            return false;
        };
        for f in &lib.functions {
            self.owner.remove(&f.name.to_ascii_lowercase());
        }
        self.code_bytes -= lib.code.len();
        true
    }
}

/// Redis's `functionsVerifyName`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The library's name and the code without its shebang line (whose newline stays, so line
/// numbers are those of the whole text), as `functionExtractLibMetaData`.
fn parse_metadata(code: &[u8]) -> Result<(String, &[u8]), String> {
    if !code.starts_with(b"#!") {
        return Err("ERR Missing library metadata".into());
    }
    let Some(end) = memchr::memchr(b'\n', code) else {
        return Err("ERR Invalid library metadata".into());
    };
    let line = String::from_utf8_lossy(&code[2..end]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    let mut name = None;
    for part in parts {
        match part.strip_prefix("name=") {
            Some(_) if name.is_some() => {
                return Err(
                    "ERR Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            Some(n) => name = Some(n.to_string()),
            None => return Err(format!("ERR Invalid metadata value given: {part}")),
        }
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".into());
    };
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    if !valid_name(&name) {
        return Err(format!("ERR {NAME_RULE}"));
    }
    Ok((name, &code[end..]))
}

/// The `redis` table a library's code sees while it loads.
pub(super) fn load_api(lua: &Lua, redis: &Table, registry: &Registry) -> mlua::Result<Table> {
    let api = lua.create_table()?;
    for name in [
        "log",
        "LOG_DEBUG",
        "LOG_VERBOSE",
        "LOG_NOTICE",
        "LOG_WARNING",
        "REDIS_VERSION",
        "REDIS_VERSION_NUM",
    ] {
        api.raw_set(name, redis.raw_get::<Value>(name)?)?;
    }
    let registry = registry.clone();
    api.raw_set(
        "register_function",
        lua.create_function(move |lua, args: Variadic<Value>| {
            let f = match args.as_slice() {
                [named] => named_args(lua, named)?,
                [name, callback] => {
                    let Some(name) = lua_string(lua, name)? else {
                        return Err(lua_err(
                            "first argument to redis.register_function must be a string",
                        ));
                    };
                    let Value::Function(func) = callback else {
                        return Err(lua_err(
                            "second argument to redis.register_function must be a function",
                        ));
                    };
                    Registered {
                        name: String::from_utf8_lossy(&name).into_owned(),
                        description: None,
                        flags: 0,
                        func: func.clone(),
                    }
                }
                _ => {
                    return Err(lua_err(
                        "wrong number of arguments to redis.register_function",
                    ));
                }
            };
            let mut sink = registry.0.borrow_mut();
            let Some(list) = sink.as_mut() else {
                return Err(lua_err(
                    "redis.register_function can only be called on FUNCTION LOAD command",
                ));
            };
            if !valid_name(&f.name) {
                return Err(lua_err(NAME_RULE));
            }
            // Case-sensitive here (Redis's library dictionary), although FCALL is not.
            if list.iter().any(|g| g.name == f.name) {
                return Err(lua_err("Function already exists in the library"));
            }
            list.push(f);
            Ok(())
        })?,
    )?;
    Ok(api)
}

/// A string or a number as a string (Lua's `lua_isstring`).
fn lua_string(lua: &Lua, v: &Value) -> mlua::Result<Option<Vec<u8>>> {
    Ok(match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(_) | Value::Number(_) => {
            lua.coerce_string(v.clone())?.map(|s| s.as_bytes().to_vec())
        }
        _ => None,
    })
}

/// `redis.register_function{function_name=..., callback=..., flags={...}, description=...}`.
fn named_args(lua: &Lua, v: &Value) -> mlua::Result<Registered> {
    let Value::Table(t) = v else {
        return Err(lua_err(
            "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
        ));
    };
    let (mut name, mut description, mut func, mut fl) = (None, None, None, 0);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Some(key) = lua_string(lua, &k)? else {
            return Err(lua_err(
                "named argument key given to redis.register_function is not a string",
            ));
        };
        let key = String::from_utf8_lossy(&key).to_ascii_lowercase();
        match key.as_str() {
            "function_name" => match lua_string(lua, &v)? {
                Some(n) => name = Some(String::from_utf8_lossy(&n).into_owned()),
                None => {
                    return Err(lua_err(
                        "function_name argument given to redis.register_function must be a string",
                    ));
                }
            },
            "description" => match lua_string(lua, &v)? {
                Some(d) => description = Some(d),
                None => {
                    return Err(lua_err(
                        "description argument given to redis.register_function must be a string",
                    ));
                }
            },
            "callback" => match v {
                Value::Function(f) => func = Some(f),
                _ => {
                    return Err(lua_err(
                        "callback argument given to redis.register_function must be a function",
                    ));
                }
            },
            "flags" => {
                let Value::Table(list) = v else {
                    return Err(lua_err(
                        "flags argument to redis.register_function must be a table representing function flags",
                    ));
                };
                fl = 0;
                for i in 1.. {
                    let item: Value = list.raw_get(i)?;
                    if item.is_nil() {
                        break;
                    }
                    let found = lua_string(lua, &item)?.and_then(|s| {
                        flags::NAMES
                            .iter()
                            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(&s))
                    });
                    match found {
                        Some(&(_, bit)) => fl |= bit,
                        None => return Err(lua_err("unknown flag given")),
                    }
                }
            }
            _ => {
                return Err(lua_err("unknown argument given to redis.register_function"));
            }
        }
    }
    let Some(name) = name else {
        return Err(lua_err(
            "redis.register_function must get a function name argument",
        ));
    };
    let Some(func) = func else {
        return Err(lua_err(
            "redis.register_function must get a callback argument",
        ));
    };
    Ok(Registered {
        name,
        description,
        flags: fl,
        func,
    })
}

impl Scripting {
    /// Runs a library's code and returns what it registered (not yet added).
    fn compile_library(&mut self, code: &[u8]) -> Result<Library, String> {
        let (name, body) = parse_metadata(code)?;
        let func = self
            .functions
            .compile(body, "@user_function")
            .map_err(|e| format!("ERR Error compiling function: {e}"))?;
        let engine = &self.functions;
        let load_mode = engine
            .load_mode
            .clone()
            .expect("the functions' engine has a loading mode");
        *self.registry.0.borrow_mut() = Some(Vec::new());
        let shared = &self.shared;
        shared.killed.set(false);
        shared.load_deadline.set(Some(
            Instant::now() + Duration::from_millis(LOAD_TIMEOUT_MS),
        ));
        let lua = &engine.lua;
        let run = || -> mlua::Result<(bool, Value)> {
            load_mode.call::<()>(true)?;
            if self.memory_limit > 0 {
                lua.set_memory_limit(self.memory_limit as usize)?;
            }
            let out = engine
                .runner
                .call::<(bool, Value)>((func, Value::Nil, Value::Nil));
            if self.memory_limit > 0 {
                lua.set_memory_limit(0)?;
            }
            load_mode.call::<()>(false)?;
            out
        };
        let result = run();
        shared.load_deadline.set(None);
        if shared.killed.replace(false) {
            engine.reset_hook(shared);
        }
        let registered = self.registry.0.borrow_mut().take().unwrap_or_default();
        let err = match result {
            Ok((true, _)) => None,
            Ok((false, Value::Table(t))) => Some(
                t.raw_get::<Option<mlua::LuaString>>("err")
                    .ok()
                    .flatten()
                    .map_or_else(|| "ERR unknown error".into(), |s| s.to_string_lossy()),
            ),
            Ok((false, Value::String(s))) => Some(format!("ERR {}", s.to_string_lossy())),
            Ok((false, _)) => Some("ERR unknown error".into()),
            Err(e) => Some(format!("ERR {}", lua_error_message(&e))),
        };
        if let Some(err) = err {
            // Whatever failed, the globals must be the scripts' again.
            let _ = load_mode.call::<()>(false);
            let _ = lua.gc_collect();
            return Err(format!("ERR Error registering functions: {err}"));
        }
        if registered.is_empty() {
            return Err("ERR No functions registered".into());
        }
        let mut functions = registered;
        functions.sort_by_key(|f| f.name.to_ascii_lowercase());
        Ok(Library {
            name,
            code: code.to_vec(),
            functions,
        })
    }

    /// FUNCTION LOAD: returns the library's name.
    pub fn load_library(&mut self, code: &[u8], replace: bool) -> Result<String, String> {
        let (name, _) = parse_metadata(code)?;
        if !replace && self.libraries.libs.contains_key(&name) {
            return Err(format!("ERR Library '{name}' already exists"));
        }
        let lib = self.compile_library(code)?;
        self.libraries.join(vec![lib], true)?;
        Ok(name)
    }

    /// FUNCTION FLUSH: a new Lua state for functions.
    fn flush_functions(&mut self) -> Result<(), String> {
        self.functions = Engine::build(&self.shared, Some(&self.registry))
            .map_err(|e| format!("ERR {}", lua_error_message(&e)))?;
        self.libraries = Libraries::default();
        Ok(())
    }

    /// Loads libraries from codes (FUNCTION RESTORE, an image, a full sync), all or none.
    /// `policy`: `flush`, `append` or `replace`, as FUNCTION RESTORE's.
    pub fn restore_libraries(&mut self, codes: &[Vec<u8>], policy: Policy) -> Result<(), String> {
        let mut new: Vec<Library> = Vec::with_capacity(codes.len());
        for code in codes {
            let lib = self.compile_library(code)?;
            if new.iter().any(|l| l.name == lib.name) {
                return Err(format!("ERR Library '{}' already exists", lib.name));
            }
            new.push(lib);
        }
        match policy {
            Policy::Flush => {
                // The functions' Lua state is kept: the new libraries were made in it.
                self.libraries = Libraries::default();
                self.libraries.join(new, false)
            }
            Policy::Append => self.libraries.join(new, false),
            Policy::Replace => self.libraries.join(new, true),
        }
    }
}

/// FUNCTION RESTORE's policy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Policy {
    Flush,
    Append,
    Replace,
}

/// The FUNCTION DUMP payload of these library codes: an `RDB_OPCODE_FUNCTION2` record per
/// library, the RDB version and the CRC-64, as Redis's.
pub fn dump_payload(codes: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for code in codes {
        rdb::write_function(&mut out, code);
    }
    out.extend_from_slice(&rdb::RDB_VERSION.to_le_bytes());
    let crc = rdb::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The library codes of a FUNCTION DUMP payload.
pub fn parse_payload(payload: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    rdb::restore_functions(payload).map_err(|e| match e {
        rdb::PayloadError::VersionOrChecksum => {
            "ERR DUMP payload version or checksum are wrong".into()
        }
        rdb::PayloadError::BadData(rdb::RdbError::Unsupported(_)) => {
            "ERR given type is not a function".into()
        }
        rdb::PayloadError::BadData(_) => "ERR can not read data type".into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Commands

/// `FCALL function numkeys [key ...] [arg ...]` and `FCALL_RO`.
pub fn fcall(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    super::feed_monitors(s, call, args);
    let Some(n) = tessera_protocol::num::parse_i64(args.get(2)) else {
        return Err(CmdError::msg("ERR Bad number of keys provided"));
    };
    if n < 0 {
        return Err(CmdError::msg("ERR Number of keys can't be negative"));
    }
    if n as usize > args.len() - 3 {
        return Err(CmdError::msg(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let Some(f) = s.scripting.libraries.find(args.get(1)) else {
        return Err(CmdError::msg("ERR Function not found"));
    };
    let job = Job {
        func: f.func.clone(),
        flags: f.flags,
        function: Some(f.name.clone()),
    };
    let name = f.name.clone();
    let ro = call.spec.name == "fcall_ro";
    s.run_lua(call, job, name.as_bytes(), args, n as usize, ro)
}

/// `FUNCTION LOAD|DELETE|FLUSH|LIST|DUMP|RESTORE|STATS|KILL|HELP`.
pub fn function(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = args.get(1).to_ascii_lowercase();
    match &sub[..] {
        b"load" => {
            let (replace, code) = match args.len() {
                3 => (false, args.get(2)),
                4 if args.get(2).eq_ignore_ascii_case(b"replace") => (true, args.get(3)),
                4 => {
                    return Err(CmdError::msg(format!(
                        "ERR Unknown option given: {}",
                        String::from_utf8_lossy(args.get(2))
                    )));
                }
                _ => return Err(wrong_subcommand(args)),
            };
            let name = s
                .scripting
                .load_library(code, replace)
                .map_err(CmdError::msg)?;
            s.dirty += 1;
            call.reply().bulk(name.as_bytes());
        }
        b"delete" => {
            let name = String::from_utf8_lossy(args.get(2));
            if !s.scripting.libraries.remove(&name) {
                return Err(CmdError::msg("ERR Library not found"));
            }
            s.dirty += 1;
            call.reply().ok();
        }
        b"flush" => {
            if !super::flush_option_ok(args) {
                return Err(CmdError::msg(
                    "ERR FUNCTION FLUSH only supports SYNC|ASYNC option",
                ));
            }
            s.scripting.flush_functions().map_err(CmdError::msg)?;
            s.dirty += 1;
            call.reply().ok();
        }
        b"list" => list(s, call, args)?,
        b"dump" => {
            let payload = dump_payload(&s.scripting.libraries.codes());
            call.reply().bulk(&payload);
        }
        b"restore" => {
            let policy = match args.len() {
                3 => Policy::Append,
                4 => match &args.get(3).to_ascii_lowercase()[..] {
                    b"flush" => Policy::Flush,
                    b"append" => Policy::Append,
                    b"replace" => Policy::Replace,
                    _ => {
                        return Err(CmdError::msg(
                            "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
                        ));
                    }
                },
                _ => return Err(wrong_subcommand(args)),
            };
            let codes = parse_payload(args.get(2)).map_err(CmdError::msg)?;
            s.scripting
                .restore_libraries(&codes, policy)
                .map_err(CmdError::msg)?;
            s.dirty += 1;
            call.reply().ok();
        }
        b"stats" => stats(s, call),
        b"kill" => match s.scripting.running.as_mut() {
            None => return Err(CmdError::msg("NOTBUSY No scripts in execution right now.")),
            Some(r) if r.function.is_none() => return Err(CmdError::msg(super::BUSY)),
            Some(r) if r.wrote => return Err(CmdError::msg(super::UNKILLABLE)),
            Some(r) => {
                r.kill = true;
                call.reply().ok();
            }
        },
        _ => help(call),
    }
    Ok(())
}

fn wrong_subcommand(args: &Args<'_>) -> CmdError {
    CmdError::msg(tessera_protocol::command::subcommand_syntax_error(
        args.get(0),
        args.get(1),
    ))
}

/// `FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]`.
fn list(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let (mut pattern, mut with_code) = (None, false);
    let mut i = 2;
    while i < args.len() {
        let a = args.get(i);
        if a.eq_ignore_ascii_case(b"withcode") && !with_code {
            with_code = true;
        } else if a.eq_ignore_ascii_case(b"libraryname") && pattern.is_none() {
            if i + 1 >= args.len() {
                return Err(CmdError::msg("ERR library name argument was not given"));
            }
            pattern = Some(args.get(i + 1));
            i += 1;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(a)
            )));
        }
        i += 1;
    }
    let libs: Vec<&Library> = s
        .scripting
        .libraries
        .libs
        .values()
        .filter(|l| {
            pattern.is_none_or(|p| tessera_protocol::glob::matches(p, l.name.as_bytes(), true))
        })
        .collect();
    let mut r = call.reply();
    r.array(libs.len());
    for lib in libs {
        r.map(3 + usize::from(with_code));
        r.bulk(b"library_name");
        r.bulk(lib.name.as_bytes());
        r.bulk(b"engine");
        r.bulk(b"LUA");
        r.bulk(b"functions");
        r.array(lib.functions.len());
        for f in &lib.functions {
            r.map(3);
            r.bulk(b"name");
            r.bulk(f.name.as_bytes());
            r.bulk(b"description");
            match &f.description {
                Some(d) => r.bulk(d),
                None => r.null(),
            }
            r.bulk(b"flags");
            let names: Vec<&str> = flags::NAMES
                .iter()
                .filter(|(_, bit)| f.flags & bit != 0)
                .map(|(n, _)| *n)
                .collect();
            r.set(names.len());
            for n in names {
                r.simple(n);
            }
        }
        if with_code {
            r.bulk(b"library_code");
            r.bulk(&lib.code);
        }
    }
    Ok(())
}

/// `FUNCTION STATS`.
fn stats(s: &mut Server, call: &mut Call<'_>) {
    let sc = &s.scripting;
    let mut r = call.reply();
    r.map(2);
    r.bulk(b"running_script");
    match sc
        .running
        .as_ref()
        .and_then(|run| Some((run, run.function.as_ref()?)))
    {
        None => r.null(),
        Some((run, f)) => {
            r.map(3);
            r.bulk(b"name");
            r.bulk(f.name.as_bytes());
            r.bulk(b"command");
            r.array(f.command.len());
            for a in &f.command {
                r.bulk(a);
            }
            r.bulk(b"duration_ms");
            r.int(run.start.elapsed().as_millis() as i64);
        }
    }
    r.bulk(b"engines");
    r.map(1);
    r.bulk(b"LUA");
    r.map(2);
    r.bulk(b"libraries_count");
    r.int(sc.libraries.len() as i64);
    r.bulk(b"functions_count");
    r.int(sc.libraries.functions() as i64);
}

fn help(call: &mut Call<'_>) {
    let lines = [
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries:",
        "    * Library name",
        "    * The engine used to run the Library",
        "    * Library description",
        "    * Functions list",
        "    * Library code (if WITHCODE is given)",
        "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
        "STATS",
        "    Return information about the current function running:",
        "    * Function name",
        "    * Command used to run the function",
        "    * Duration in MS that the function is running",
        "    If no function is running, return nil",
        "    In addition, returns a list of available engines.",
        "KILL",
        "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the libraries.",
        "    * SYNC: Synchronously flush the libraries.",
        "DUMP",
        "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
        "    control how to handle existing libraries (default APPEND):",
        "    * FLUSH: delete all existing libraries.",
        "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
        "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
        "      libraries with the new libraries (notice that even on this option there is a chance of failure",
        "      in case of functions name collision with another library).",
        "HELP",
        "    Prints this help.",
    ];
    let _ = crate::commands::server::help(call, &lines);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let (name, body) = parse_metadata(b"#!lua name=lib1\nreturn 1").unwrap();
        assert_eq!(name, "lib1");
        assert_eq!(body, b"\nreturn 1");
        assert_eq!(parse_metadata(b"#!LUA   name=x  \n").unwrap().0, "x");
        for (code, err) in [
            (&b"return 1"[..], "ERR Missing library metadata"),
            (b"#!lua name=x", "ERR Invalid library metadata"),
            (b"#!lua\n", "ERR Library name was not given"),
            (b"#!js name=x\n", "ERR Engine 'js' not found"),
            (
                b"#!lua foo=bar\n",
                "ERR Invalid metadata value given: foo=bar",
            ),
            (
                b"#!lua name=a name=b\n",
                "ERR Invalid metadata value, name argument was given multiple times",
            ),
            (
                b"#!lua name=a-b\n",
                "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
            ),
        ] {
            assert_eq!(parse_metadata(code).unwrap_err(), err, "{code:?}");
        }
    }

    #[test]
    fn payload_round_trip() {
        let codes = vec![b"#!lua name=a\nx".to_vec(), b"#!lua name=b\ny".to_vec()];
        let p = dump_payload(&codes);
        assert_eq!(parse_payload(&p).unwrap(), codes);
        let mut bad = p.clone();
        bad[3] ^= 1;
        assert!(parse_payload(&bad).unwrap_err().contains("checksum"));
        // Redis 7.0.15's FUNCTION DUMP of one library.
        let redis = b"\xf5@J#!lua name=lib1\nredis.register_function('b1', function(k, a) return 1 end)\n\x00O\x86\xbf\xa2h\xb8\x19\xb1";
        let codes = parse_payload(redis).unwrap();
        assert_eq!(dump_payload(&codes), redis);
    }
}
