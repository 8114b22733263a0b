//! Lua scripting as Redis 7 runs it (`eval.c`, `script.c`, `script_lua.c`): one Lua 5.1 state
//! per shard, the script cache, and the run of one script.
//!
//! - **Sandbox.** Scripts see a read-only global table: reading a global that does not exist
//!   and writing any global are errors, as are writes to the library tables (`redis`, `string`,
//!   `math`, ...), through `rawset` and `setmetatable` too. There is no `os`, `io`, `debug`,
//!   `require`, `loadfile`, `dofile` or `print`, and `loadstring` refuses bytecode. Each library
//!   table the script sees is an empty proxy whose `__index` is the real table, so nothing a
//!   script does survives it.
//! - **`redis.call`.** A command runs through [`Server::execute_from_script`] with the checks of
//!   Redis's `scriptCall`; its RESP reply becomes a Lua value ([`convert`]). Errors become tables
//!   `{err = "CODE message"}` which `redis.call` raises and `redis.pcall` returns.
//! - **Errors.** The script runs under `xpcall` with a message handler that turns any error into
//!   such a table and records where in the script it happened, so the reply reads
//!   `-ERR user_script:1: boom script: <sha>, on @user_script:1.` as Redis's does.
//! - **Effects.** Scripts replicate by effects (Redis 7 has no other mode): the commands a script
//!   ran are recorded on the effect stream, wrapped in MULTI/EXEC, and the EVAL itself is not.
//!   `redis.set_repl(redis.REPL_NONE)` leaves the following commands out.
//! - **Time limits.** A count hook checks the clock every 100 000 instructions. Past
//!   `busy-reply-threshold` the server serves other clients between slices of the script:
//!   they get `-BUSY` except for SCRIPT KILL, SHUTDOWN NOSAVE and a few connection commands.
//!   SCRIPT KILL stops a script that has not written; the hook then fires on every line so a
//!   `pcall` in the script cannot swallow the kill.
//! - **Memory.** The Lua state has a limit (`lua-memory-limit`, a Tessera setting): a script that
//!   allocates without bound gets an error instead of taking the shard's memory.

mod convert;
mod functions;
mod libs;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, Variadic, VmState,
};
use sha1::{Digest, Sha1};
use tessera_protocol::Args;
use tessera_storage::Db;
use tessera_storage::db::Loc;

use crate::commands::connection::REDIS_VERSION;
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::server::Server;

pub use convert::{error_text, lua_to_reply};
pub use functions::{Policy, fcall, function};

/// Shebang flags (`#!lua flags=...`), as Redis's `SCRIPT_FLAG_*`.
pub mod flags {
    pub const NO_WRITES: u32 = 1 << 0;
    pub const ALLOW_OOM: u32 = 1 << 1;
    pub const ALLOW_STALE: u32 = 1 << 2;
    pub const NO_CLUSTER: u32 = 1 << 3;
    pub const ALLOW_CROSS_SLOT: u32 = 1 << 4;
    /// A script without a shebang (Redis's `SCRIPT_FLAG_EVAL_COMPAT_MODE`).
    pub const COMPAT: u32 = 1 << 5;

    pub const NAMES: &[(&str, u32)] = &[
        ("no-writes", NO_WRITES),
        ("allow-oom", ALLOW_OOM),
        ("allow-stale", ALLOW_STALE),
        ("no-cluster", NO_CLUSTER),
        ("allow-cross-slot-keys", ALLOW_CROSS_SLOT),
    ];
}

/// How many instructions run between two checks of the clock.
const HOOK_INSTRUCTIONS: u32 = 100_000;
/// How many of a script's declared keys are prefetched before it runs.
const PREFETCH_KEYS: usize = 8;
const KILLED: &str = "Script killed by user with SCRIPT KILL...";
const KILLED_FUNCTION: &str = "Script killed by user with FUNCTION KILL...";

/// A cached script.
pub struct Script {
    pub body: Vec<u8>,
    func: Function,
    pub flags: u32,
}

/// The script that is running.
pub struct Running {
    /// The calling client.
    pub client: usize,
    pub start: Instant,
    /// The script's clock: every command in it sees the same time, as in Redis.
    pub now: i64,
    pub flags: u32,
    /// EVAL_RO / EVALSHA_RO, or the `no-writes` flag.
    pub read_only: bool,
    /// A write command ran: SCRIPT KILL is refused.
    pub wrote: bool,
    /// Memory was over `maxmemory` when the script started (Redis's `pre_command_oom_state`).
    pub oom: bool,
    /// Past `busy-reply-threshold`: other clients are answered `-BUSY`.
    pub busy: bool,
    /// SCRIPT KILL or SHUTDOWN NOSAVE asked it to stop.
    pub kill: bool,
    /// The effect stream's length when the script started, to drop its effects if the server
    /// shuts down in the middle of it.
    pub effects_mark: u64,
    /// A function (FCALL), for FUNCTION STATS; `None` for a script.
    pub function: Option<RunningFunction>,
    /// Cluster mode: the slot of the keys the script declared or first touched (Redis's
    /// `original_client->slot`); its other commands must stay in it.
    pub slot: Option<u16>,
}

/// The function that is running, as FUNCTION STATS shows it.
pub struct RunningFunction {
    pub name: String,
    /// The FCALL command that runs it.
    pub command: Vec<Vec<u8>>,
}

/// State the Lua side shares with the Rust side without borrowing the server.
#[derive(Default)]
struct Shared {
    /// When the hook starts serving other clients.
    busy_at: Cell<Option<Instant>>,
    /// The kill was delivered: the hook raises the error again at every line.
    killed: Cell<bool>,
    /// `redis.setresp`: replies of `redis.call` follow RESP3 rules.
    resp3: Cell<bool>,
    /// `redis.set_repl` flags (`REPL_ALL` = 3).
    repl: Cell<u8>,
    /// Redis's `redisLrand48` state for `math.random`, shared by scripts and functions.
    rand: Cell<u64>,
    /// The error a kill raises (SCRIPT KILL, FUNCTION KILL, or the FUNCTION LOAD timeout).
    kill_text: Cell<&'static str>,
    /// While FUNCTION LOAD runs a library's code: when it is stopped.
    load_deadline: Cell<Option<Instant>>,
    /// The busy hook is calling the run's `redis.pcall` to serve other clients.
    busy_call: Cell<bool>,
    /// Set by `redis.acl_check_cmd` before it calls the run's `redis.pcall`, which then checks
    /// the command instead of running it.
    acl_check: Cell<bool>,
}

/// One Lua state with Redis's libraries and sandbox. Scripts (EVAL) and functions (FCALL)
/// each have their own, as in Redis.
struct Engine {
    lua: Lua,
    /// The real globals (KEYS and ARGV are set here); scripts see them through a proxy.
    globals: Table,
    /// `function(f, keys, args)`: runs `f` under `xpcall` with the error handler, with
    /// `(keys, args)` as its arguments when they are given (functions).
    runner: Function,
    /// Functions only: `function(on)` switches the globals that code sees to the library
    /// loading API (`redis.register_function`, `redis.log` and the constants) and back.
    load_mode: Option<Function>,
    /// `redis`'s real table (`call` and `pcall` are set in it for each run).
    redis: Table,
    /// `slot[1]` is the run's `redis.pcall`, which the busy hook calls (with
    /// `Shared::busy_call` set) to serve other clients.
    slot: Table,
}

/// The scripting engines of a shard: scripts and their cache, functions and their libraries.
pub struct Scripting {
    eval: Engine,
    functions: Engine,
    shared: Rc<Shared>,
    scripts: HashMap<[u8; 40], Script>,
    pub libraries: functions::Libraries,
    /// Where `redis.register_function` puts what a library registers while it loads.
    registry: functions::Registry,
    /// Bytes of script bodies in the cache (`used_memory_scripts_eval`).
    pub scripts_bytes: usize,
    /// `lua-memory-limit`. It is in force only while a script runs: with a limit, every call
    /// mlua makes into Lua is protected against allocation errors, which costs a third of a
    /// short script's time, and outside scripts only our own code allocates. It is lifted
    /// again while `redis.call` runs a command and converts its reply.
    memory_limit: u64,
    pub running: Option<Running>,
    /// Reused argument buffers of `redis.call`.
    arg_buf: Vec<u8>,
    arg_spans: Vec<(u32, u32)>,
    reply_buf: Vec<u8>,
    /// Where the running script's first keys live, while their memory is prefetched.
    prefetch: Vec<Loc>,
}

impl Engine {
    /// A Lua state with Redis's libraries and sandbox; `registry` for the functions' state,
    /// whose library code gets `redis.register_function`.
    fn build(shared: &Rc<Shared>, registry: Option<&functions::Registry>) -> mlua::Result<Engine> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let base = lua.globals();
        let globals = lua.create_table()?;
        for name in [
            "assert",
            "collectgarbage",
            "coroutine",
            "error",
            "gcinfo",
            "getmetatable",
            "ipairs",
            "next",
            "pairs",
            "pcall",
            "rawequal",
            "rawget",
            "select",
            "string",
            "table",
            "tonumber",
            "tostring",
            "type",
            "unpack",
            "xpcall",
            "_VERSION",
            "math",
        ] {
            globals.raw_set(name, base.raw_get::<Value>(name)?)?;
        }
        libs::install(&lua, &globals)?;
        let redis = redis_table(&lua, shared)?;
        let slot = lua.create_table()?;
        lua.set_named_registry_value("tessera.slot", slot.clone())?;
        globals.raw_set("redis", redis.clone())?;
        random_functions(&lua, &globals, shared)?;

        let handler = lua.create_function(error_handler)?;
        globals.raw_set("__redis__err__handler", handler.clone())?;
        let errmsg = lua.create_function(|lua, e: Value| match e {
            Value::Error(e) => match e.downcast_ref::<ScriptError>() {
                Some(se) => lua.create_string(&se.0),
                None => lua.create_string(lua_error_message(&e)),
            },
            other => lua.create_string(format!("{other:?}")),
        })?;
        let load_api = match registry {
            Some(r) => Value::Table(functions::load_api(&lua, &redis, r)?),
            None => Value::Nil,
        };

        // The sandbox, written in Lua: proxies for the globals and every library table.
        let setup: Function = lua
            .load(SANDBOX)
            .set_name("=[sandbox]")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()?;
        let (proxy, runner, load_mode): (Table, Function, Option<Function>) =
            setup.call((globals.clone(), handler, errmsg, load_api))?;
        lua.set_globals(proxy)?;
        install_hook(
            &lua,
            shared,
            HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTIONS),
        );
        Ok(Engine {
            lua,
            globals,
            runner,
            load_mode,
            redis,
            slot,
        })
    }

    /// Puts back the hook that checks the clock (after a kill made it fire on every line).
    fn reset_hook(&self, shared: &Rc<Shared>) {
        install_hook(
            &self.lua,
            shared,
            HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTIONS),
        );
    }

    /// Compiles `code` as a chunk named `name` (`@user_script`, `@user_function`).
    fn compile(&self, code: &[u8], name: &str) -> Result<Function, String> {
        self.lua
            .load(code)
            .set_name(name)
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
            .map_err(|e| lua_error_message(&e))
    }
}

impl Scripting {
    /// Fresh Lua states with Redis's libraries and sandbox.
    pub fn new(memory_limit: u64) -> Scripting {
        let shared = Rc::new(Shared::default());
        shared.rand.set(RAND48_START);
        shared.kill_text.set(KILLED);
        let registry = functions::Registry::default();
        let engines = Engine::build(&shared, None)
            .and_then(|e| Ok((e, Engine::build(&shared, Some(&registry))?)));
        let (eval, functions) = match engines {
            Ok(e) => e,
            // Only a broken Lua build fails here (no script has run yet).
            Err(e) => panic!("cannot set up the Lua state: {e}"),
        };
        Scripting {
            eval,
            functions,
            shared,
            scripts: HashMap::new(),
            libraries: functions::Libraries::default(),
            registry,
            scripts_bytes: 0,
            memory_limit,
            running: None,
            arg_buf: Vec::new(),
            arg_spans: Vec::new(),
            reply_buf: Vec::new(),
            prefetch: Vec::new(),
        }
    }

    /// SCRIPT FLUSH: a new Lua state for scripts frees everything the old one held.
    fn flush_scripts(&mut self) -> mlua::Result<()> {
        self.eval = Engine::build(&self.shared, None)?;
        self.scripts.clear();
        self.scripts_bytes = 0;
        Ok(())
    }

    /// Scripts in the cache.
    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    /// True when the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }

    /// True if a script runs past `busy-reply-threshold`.
    pub fn is_busy(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.busy)
    }

    /// The `-BUSY` reply for what is running.
    pub fn busy_reply(&self) -> &'static str {
        match &self.running {
            Some(r) if r.function.is_some() => BUSY_FUNCTION,
            _ => BUSY,
        }
    }

    /// Applies `lua-memory-limit` (0: none).
    pub fn set_memory_limit(&mut self, limit: u64) {
        self.memory_limit = limit;
    }

    /// Memory the Lua state uses (`used_memory_lua`).
    pub fn used_memory(&self) -> usize {
        self.eval.lua.used_memory()
    }

    /// Memory the functions' Lua state uses (`used_memory_vm_functions`).
    pub fn functions_memory(&self) -> usize {
        self.functions.lua.used_memory()
    }

    /// Compiles `body` and caches it under its SHA1; returns the SHA1 in hex.
    pub fn load(&mut self, body: &[u8]) -> Result<[u8; 40], CmdError> {
        let sha = sha1_hex(body);
        if self.scripts.contains_key(&sha) {
            return Ok(sha);
        }
        let (flags, code) = parse_shebang(body)?;
        let func = self.eval.compile(&code, "@user_script").map_err(|e| {
            CmdError::msg(format!("ERR Error compiling script (new function): {e}"))
        })?;
        self.scripts_bytes += body.len();
        self.scripts.insert(
            sha,
            Script {
                body: body.to_vec(),
                func,
                flags,
            },
        );
        Ok(sha)
    }

    /// The cached script with this SHA1 (any case).
    pub fn get(&self, sha: &[u8]) -> Option<(&[u8; 40], &Script)> {
        let key = sha_key(sha)?;
        self.scripts.get_key_value(&key)
    }

    /// True if the script is cached.
    pub fn exists(&self, sha: &[u8]) -> bool {
        self.get(sha).is_some()
    }
}

fn sha_key(sha: &[u8]) -> Option<[u8; 40]> {
    let mut key: [u8; 40] = sha.try_into().ok()?;
    key.make_ascii_lowercase();
    Some(key)
}

/// The SHA1 of `data` in lower-case hex.
pub fn sha1_hex(data: &[u8]) -> [u8; 40] {
    let digest = Sha1::digest(data);
    let mut out = [0u8; 40];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Splits a `#!lua flags=...` first line from the body. The line is replaced by an empty one so
/// line numbers stay those of the body.
fn parse_shebang(body: &[u8]) -> Result<(u32, std::borrow::Cow<'_, [u8]>), CmdError> {
    if !body.starts_with(b"#!") {
        return Ok((flags::COMPAT, std::borrow::Cow::Borrowed(body)));
    }
    let end = memchr::memchr(b'\n', body).unwrap_or(body.len());
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(CmdError::msg(format!(
            "ERR Unexpected engine in script shebang: {engine}"
        )));
    }
    let mut f = 0;
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(CmdError::msg(format!(
                "ERR Unknown lua shebang option: {part}"
            )));
        };
        for name in list.split(',').filter(|n| !n.is_empty()) {
            match flags::NAMES.iter().find(|(n, _)| *n == name) {
                Some(&(_, bit)) => f |= bit,
                None => {
                    return Err(CmdError::msg(format!(
                        "ERR Unexpected flag in script shebang: {name}"
                    )));
                }
            }
        }
    }
    let mut code = Vec::with_capacity(body.len() - end);
    code.extend_from_slice(&body[end..]);
    Ok((f, std::borrow::Cow::Owned(code)))
}

/// Lua's own text of an error (mlua wraps it).
fn lua_error_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_error_message(cause),
        other => other.to_string(),
    }
}

fn install_hook(lua: &Lua, shared: &Rc<Shared>, triggers: HookTriggers) {
    let shared = shared.clone();
    let hook = move |lua: &Lua, _: &mlua::debug::Debug| -> mlua::Result<VmState> {
        if shared.killed.get() {
            return Err(mlua::Error::RuntimeError(shared.kill_text.get().into()));
        }
        if let Some(deadline) = shared.load_deadline.get() {
            if Instant::now() < deadline {
                return Ok(VmState::Continue);
            }
            shared.kill_text.set(functions::LOAD_TIMEOUT);
            shared.killed.set(true);
            install_hook(lua, &shared, HookTriggers::EVERY_LINE);
            return Err(mlua::Error::RuntimeError(functions::LOAD_TIMEOUT.into()));
        }
        match shared.busy_at.get() {
            Some(at) if Instant::now() >= at => {}
            _ => return Ok(VmState::Continue),
        }
        let slot: Table = lua.named_registry_value("tessera.slot")?;
        let pcall: Function = slot.raw_get(1)?;
        shared.busy_call.set(true);
        if pcall.call::<bool>(())? {
            shared.killed.set(true);
            // From now on every line raises the error, so a pcall cannot swallow it.
            install_hook(lua, &shared, HookTriggers::EVERY_LINE);
            return Err(mlua::Error::RuntimeError(shared.kill_text.get().into()));
        }
        Ok(VmState::Continue)
    };
    // Errors only come from a Lua state out of memory; the hook then stays as it was.
    let _ = lua.set_global_hook(triggers, hook);
}

/// The message handler of the script's `xpcall`: any error becomes `{err = "CODE msg"}` with
/// the script line it came from (Redis's `__redis__err__handler`).
fn error_handler(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let table = match err {
        Value::Table(t) if matches!(t.raw_get::<Value>("err")?, Value::String(_)) => t,
        Value::Table(_) => convert::error_table(lua, b"ERR unknown error")?,
        Value::String(s) => convert::error_table(lua, &[b"ERR ", &s.as_bytes()[..]].concat())?,
        Value::Error(e) => match e.downcast_ref::<ScriptError>() {
            Some(se) => convert::error_table(lua, &se.0)?,
            None => {
                let msg = lua_error_message(&e);
                convert::error_table(lua, &[b"ERR ", msg.as_bytes()].concat())?
            }
        },
        Value::Nil => convert::error_table(lua, b"ERR nil")?,
        other => {
            let s = lua.coerce_string(other)?;
            let text = s.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
            convert::error_table(lua, &[b"ERR ", &text[..]].concat())?
        }
    };
    if table.raw_get::<Value>("source")?.is_nil() {
        for level in 1..64 {
            let Some(found) = lua.inspect_stack(level, |d| {
                let src = d.source();
                let source = src.source.as_deref().unwrap_or("");
                (
                    source.starts_with("@user_").then(|| source.to_string()),
                    d.current_line(),
                )
            }) else {
                break;
            };
            if let (Some(source), line) = found {
                table.raw_set("source", source)?;
                table.raw_set("line", line.unwrap_or(0))?;
                break;
            }
        }
    }
    Ok(table)
}

/// Builds the `redis` table's functions that need no server.
fn redis_table(lua: &Lua, shared: &Rc<Shared>) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    redis.raw_set("REDIS_VERSION", REDIS_VERSION)?;
    redis.raw_set("REDIS_VERSION_NUM", redis_version_num())?;
    for (name, v) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.raw_set(name, v)?;
    }
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, args: Variadic<Value>| {
            let [Value::String(s)] = args.as_slice() else {
                return Err(lua_err("wrong number of arguments"));
            };
            lua.create_string(sha1_hex(&s.as_bytes()))
        })?,
    )?;
    redis.raw_set(
        "error_reply",
        lua.create_function(|lua, args: Variadic<Value>| {
            let [Value::String(s)] = args.as_slice() else {
                return convert::error_table(lua, b"ERR wrong number or type of arguments");
            };
            let msg = s.as_bytes();
            let mut err = Vec::with_capacity(msg.len() + 1);
            if !msg.starts_with(b"-") {
                err.push(b'-');
            }
            err.extend_from_slice(&msg);
            convert::error_table(lua, &error_text(&err))
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(|lua, args: Variadic<Value>| {
            let [Value::String(s)] = args.as_slice() else {
                return convert::error_table(lua, b"ERR wrong number or type of arguments");
            };
            let t = lua.create_table_with_capacity(0, 1)?;
            t.raw_set("ok", s.clone())?;
            Ok(t)
        })?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.len() < 2 {
                return Err(lua_err("redis.log() requires two arguments or more."));
            }
            let level = match &args[0] {
                Value::Integer(l) => *l,
                Value::Number(l) => *l as i64,
                _ => return Err(lua_err("First argument must be a number (log level).")),
            };
            if !(0..=3).contains(&level) {
                return Err(lua_err("Invalid debug level."));
            }
            let mut text = String::new();
            for (i, v) in args.iter().skip(1).enumerate() {
                if i > 0 {
                    text.push(' ');
                }
                if let Some(s) = lua.coerce_string(v.clone())? {
                    text.push_str(&s.to_string_lossy());
                }
            }
            match level {
                0 => tracing::debug!(target: "lua", "{text}"),
                1 | 2 => tracing::info!(target: "lua", "{text}"),
                _ => tracing::warn!(target: "lua", "{text}"),
            }
            Ok(())
        })?,
    )?;
    let s = shared.clone();
    redis.raw_set(
        "setresp",
        lua.create_function(move |_, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(lua_err("redis.setresp() requires one argument."));
            }
            let v = match &args[0] {
                Value::Integer(v) => *v,
                Value::Number(v) => *v as i64,
                _ => 0,
            };
            if v != 2 && v != 3 {
                return Err(lua_err("RESP version must be 2 or 3."));
            }
            s.resp3.set(v == 3);
            Ok(())
        })?,
    )?;
    let s = shared.clone();
    redis.raw_set(
        "set_repl",
        lua.create_function(move |_, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(lua_err("redis.set_repl() requires one argument."));
            }
            let v = match &args[0] {
                Value::Integer(v) => *v,
                Value::Number(v) => *v as i64,
                _ => -1,
            };
            if !(0..=3).contains(&v) {
                return Err(lua_err(
                    "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                ));
            }
            s.repl.set(v as u8);
            Ok(())
        })?,
    )?;
    // The run's `redis.pcall` answers for it (see `Shared::acl_check`).
    let s = shared.clone();
    redis.raw_set(
        "acl_check_cmd",
        lua.create_function(move |lua, argv: MultiValue| {
            let slot: Table = lua.named_registry_value("tessera.slot")?;
            let pcall: Function = slot.raw_get(1)?;
            s.acl_check.set(true);
            let result = pcall.call::<Value>(argv);
            s.acl_check.set(false);
            result
        })?,
    )?;
    // Effects replication is the only mode since Redis 7: these remain for old scripts.
    redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    redis.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    redis.raw_set(
        "debug",
        lua.create_function(|_, _: Variadic<Value>| Ok(()))?,
    )?;
    Ok(redis)
}

/// `MAJOR << 16 | MINOR << 8 | PATCH` of the Redis version we report.
fn redis_version_num() -> i64 {
    let mut n = 0;
    for part in REDIS_VERSION.split('.').take(3) {
        n = n << 8 | part.parse::<i64>().unwrap_or(0);
    }
    n
}

/// An error of Redis's own Lua API (`redis.*`): its text has a code, like Redis's error
/// tables, and no position.
#[derive(Debug)]
struct ScriptError(Vec<u8>);

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl std::error::Error for ScriptError {}

fn lua_err(msg: &str) -> mlua::Error {
    mlua::Error::external(ScriptError(format!("ERR {msg}").into_bytes()))
}

/// `math.random` and `math.randomseed` on Redis's `rand48`, reset before every script so a
/// script's random numbers do not depend on what ran before it.
fn random_functions(lua: &Lua, globals: &Table, shared: &Rc<Shared>) -> mlua::Result<()> {
    let math: Table = globals.raw_get("math")?;
    let s = shared.clone();
    math.raw_set(
        "random",
        lua.create_function(move |_, args: Variadic<Value>| {
            let r = lrand48(&s.rand) % 2_147_483_647;
            let r = r as f64 / 2_147_483_647.0;
            let num = |v: &Value| match v {
                Value::Integer(i) => Ok(*i as f64),
                Value::Number(n) => Ok(*n),
                _ => Err(lua_err("bad argument to 'random' (number expected)")),
            };
            match args.as_slice() {
                [] => Ok(r),
                [m] => {
                    let m = num(m)?.floor();
                    if m < 1.0 {
                        return Err(lua_err("bad argument #1 to 'random' (interval is empty)"));
                    }
                    Ok((r * m).floor() + 1.0)
                }
                [l, u] => {
                    let (l, u) = (num(l)?.floor(), num(u)?.floor());
                    if l > u {
                        return Err(lua_err("bad argument #2 to 'random' (interval is empty)"));
                    }
                    Ok((r * (u - l + 1.0)).floor() + l)
                }
                _ => Err(lua_err("wrong number of arguments")),
            }
        })?,
    )?;
    let s = shared.clone();
    math.raw_set(
        "randomseed",
        lua.create_function(move |_, seed: f64| {
            srand48(&s.rand, seed as i64 as i32);
            Ok(())
        })?,
    )?;
    Ok(())
}

/// `redisLrand48`'s state before any seeding; scripts share one sequence for the life of the
/// process, as in Redis 7.
const RAND48_START: u64 = 0x1234_ABCD_330E;

fn srand48(state: &Cell<u64>, seed: i32) {
    state.set((u64::from(seed as u32) << 16) | 0x330E);
}

fn lrand48(state: &Cell<u64>) -> u64 {
    let x = state.get().wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB) & ((1 << 48) - 1);
    state.set(x);
    x >> 17
}

/// Argument spans of a request in its buffer.
type Spans = Vec<(u32, u32)>;

/// The sandbox: read-only proxies of the globals and the library tables, the guarded
/// `rawset`/`setmetatable`/`loadstring`/`load`, `redis.call`/`redis.pcall` over the per-run
/// implementation in `slot`, and the runner.
const SANDBOX: &str = r#"
local G, handler, errmsg, load_api = ...
local rawset_, rawget_, setmetatable_, loadstring_, error_, type_, xpcall_, pcall_ =
  rawset, rawget, setmetatable, loadstring, error, type, xpcall, pcall
local concat = table.concat
local protected = setmetatable_({}, {__mode = 'k'})
local function deny() error_('Attempt to modify a readonly table', 2) end
local function proxy(t)
  local p = setmetatable_({}, {__index = t, __newindex = deny, __metatable = false})
  protected[p] = true
  return p
end
-- Redis's pcall hands the script an error's text, not its table.
local function pcall_result(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if type_(e) == 'table' then
    local s = rawget_(e, 'err')
    if type_(s) == 'string' then e = s end
  elseif type_(e) == 'userdata' then
    e = errmsg(e)
  end
  return false, e
end
G.pcall = function(...) return pcall_result(pcall_(...)) end
G.rawset = function(t, k, v)
  if protected[t] then error_('Attempt to modify a readonly table', 0) end
  return rawset_(t, k, v)
end
G.setmetatable = function(t, m)
  if protected[t] then error_('Attempt to modify a readonly table', 0) end
  return setmetatable_(t, m)
end
G.loadstring = function(s, name)
  if type_(s) == 'string' and s:byte(1) == 27 then
    return nil, 'loading binary chunks is not allowed'
  end
  return loadstring_(s, name)
end
G.load = function(f, name)
  if type_(f) ~= 'function' then return loadstring_(f, name) end
  local parts = {}
  while true do
    local p = f()
    if p == nil or p == '' then break end
    parts[#parts + 1] = p
  end
  return G.loadstring(concat(parts), name)
end
for _, name in ipairs({'string', 'table', 'math', 'coroutine', 'bit', 'cjson', 'cmsgpack', 'struct', 'redis'}) do
  if G[name] ~= nil then G[name] = proxy(G[name]) end
end
local string_mt = getmetatable('')
string_mt.__index = G.string
string_mt.__metatable = proxy({__index = G.string})
local function missing_text(k)
  return "Script attempted to access nonexistent global variable '" .. tostring(k) .. "'"
end
local function missing(_, k) error_(missing_text(k), 2) end
setmetatable_(G, {__index = missing})
local globals_mt = {__index = G, __newindex = deny, __metatable = false}
local globals = setmetatable_({}, globals_mt)
protected[globals] = true
G._G = globals
local function run(f, keys, args)
  if keys == nil then return xpcall_(f, handler) end
  return xpcall_(function() return f(keys, args) end, handler)
end
local load_mode
if load_api ~= nil then
  -- What a library's code sees while FUNCTION LOAD runs it: `redis` with the loading API
  -- only, and no other global; a missing field of `redis` is an error too.
  local load_globals = {redis = setmetatable_({}, {
    __index = function(_, k)
      local v = rawget_(load_api, k)
      if v == nil then error_(missing_text(k), 2) end
      return v
    end,
    __newindex = deny, __metatable = false})}
  protected[load_globals.redis] = true
  setmetatable_(load_globals, {__index = missing})
  load_mode = function(on)
    if on then globals_mt.__index = load_globals else globals_mt.__index = G end
  end
end
return globals, run, load_mode
"#;

/// What [`Server::run_lua`] runs: a cached script or a library's function.
pub(crate) struct Job {
    func: Function,
    flags: u32,
    /// The function's name (FCALL); `None` for a script.
    function: Option<String>,
}

impl Server {
    /// Runs a cached script for `EVAL`/`EVALSHA` (`read_only` for the `_RO` variants), with
    /// `args[3..3 + numkeys]` as KEYS and the rest as ARGV.
    pub(crate) fn run_script(
        &mut self,
        call: &mut Call<'_>,
        sha: [u8; 40],
        args: &Args<'_>,
        numkeys: usize,
        read_only: bool,
    ) -> CmdResult {
        let Some(script) = self.scripting.scripts.get(&sha) else {
            return Err(CmdError::msg(
                "NOSCRIPT No matching script. Please use EVAL.",
            ));
        };
        let job = Job {
            func: script.func.clone(),
            flags: script.flags,
            function: None,
        };
        self.run_lua(call, job, &sha, args, numkeys, read_only)
    }

    /// Runs a script or a function: `args[3..3 + numkeys]` are its keys, the rest its
    /// arguments (KEYS and ARGV for a script, the function's two parameters for a function).
    /// `name` names it in error replies.
    pub(crate) fn run_lua(
        &mut self,
        call: &mut Call<'_>,
        job: Job,
        name: &[u8],
        args: &Args<'_>,
        numkeys: usize,
        read_only_cmd: bool,
    ) -> CmdResult {
        let Job {
            func,
            flags: script_flags,
            function,
        } = job;
        let tok = call.client;
        let compat = script_flags & flags::COMPAT != 0;
        if !compat && read_only_cmd && script_flags & flags::NO_WRITES == 0 {
            return Err(CmdError::msg(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        let read_only = read_only_cmd || script_flags & flags::NO_WRITES != 0;
        let oom = self.config.maxmemory > 0 && !self.perform_evictions(call.now);
        if !compat {
            self.check_script_flags(tok, script_flags, read_only, oom)?;
        }

        // The declared keys' memory starts loading now, in three dependent steps spread over
        // the set-up, so the script's first commands find their keys in cache.
        let mut prefetch = std::mem::take(&mut self.scripting.prefetch);
        prefetch.clear();
        prefetch.extend(
            args.iter()
                .skip(3)
                .take(numkeys.min(PREFETCH_KEYS))
                .map(Db::locate),
        );
        for &at in &prefetch {
            self.db.prefetch(at, 0);
        }

        // KEYS and ARGV.
        let sc = &self.scripting;
        let engine = if function.is_some() {
            &sc.functions
        } else {
            &sc.eval
        };
        let lua = engine.lua.clone();
        let to_table = |from: usize, to: usize| -> mlua::Result<Table> {
            let t = lua.create_table_with_capacity(to - from, 0)?;
            for (i, a) in args.iter().skip(from).take(to - from).enumerate() {
                t.raw_set(i + 1, lua.create_string(a)?)?;
            }
            Ok(t)
        };
        let first = 3;
        let prepared = to_table(first, first + numkeys).and_then(|keys| {
            let argv = to_table(first + numkeys, args.len())?;
            if function.is_some() {
                return Ok((Value::Table(keys), Value::Table(argv)));
            }
            engine.globals.raw_set("KEYS", keys)?;
            engine.globals.raw_set("ARGV", argv)?;
            Ok((Value::Nil, Value::Nil))
        });
        let (keys, argv) = match prepared {
            Ok(p) => p,
            Err(e) => return Err(script_setup_error(&e)),
        };
        for &at in &prefetch {
            self.db.prefetch(at, 1);
        }
        let runner = engine.runner.clone();
        let redis = engine.redis.clone();
        let slot = engine.slot.clone();

        let shared = sc.shared.clone();
        shared.resp3.set(false);
        shared.repl.set(3);
        shared.killed.set(false);
        let kill_text = if function.is_some() {
            KILLED_FUNCTION
        } else {
            KILLED
        };
        shared.kill_text.set(kill_text);
        let threshold = self.config.busy_reply_threshold;
        let start = Instant::now();
        shared
            .busy_at
            .set((threshold > 0).then(|| start + Duration::from_millis(threshold)));
        self.scripting.running = Some(Running {
            client: tok,
            start,
            now: call.now,
            flags: script_flags,
            read_only,
            wrote: false,
            oom,
            busy: false,
            kill: false,
            effects_mark: self.effects.offset,
            slot: (self.cluster.enabled && numkeys > 0)
                .then(|| tessera_protocol::key_hash_slot(args.get(3))),
            function: function.map(|name| RunningFunction {
                name,
                command: args.iter().map(<[u8]>::to_vec).collect(),
            }),
        });
        // Inside EXEC the transaction's MULTI/EXEC already wraps the script's effects.
        let nested = self.effects.in_exec();
        if !nested {
            self.effects.begin_exec();
        }

        let memory_limit = self.scripting.memory_limit;
        let result = {
            let server = RefCell::new(&mut *self);
            lua.scope(|scope| {
                // `redis.call` and `redis.pcall` must be C functions (a Lua wrapper would be
                // tail-called, and the script's line lost from error replies). The busy hook
                // calls `pcall` with `busy_call` set, sparing a third function per run.
                let call = scope.create_function(|lua, argv: MultiValue| {
                    let (v, failed) = server.borrow_mut().script_redis_call(lua, argv)?;
                    match v {
                        Value::Table(t) if failed => {
                            let err: mlua::LuaString = t.raw_get("err")?;
                            Err(mlua::Error::external(ScriptError(err.as_bytes().to_vec())))
                        }
                        v => Ok(v),
                    }
                })?;
                let pcall = scope.create_function(|lua, argv: MultiValue| {
                    let mut server = server.borrow_mut();
                    if server.scripting.shared.busy_call.replace(false) {
                        return Ok(Value::Boolean(server.serve_while_busy()));
                    }
                    if server.scripting.shared.acl_check.replace(false) {
                        return server.script_acl_check(&argv);
                    }
                    Ok(server.script_redis_call(lua, argv)?.0)
                })?;
                redis.raw_set("call", call)?;
                redis.raw_set("pcall", pcall.clone())?;
                slot.raw_set(1, pcall)?;
                {
                    let server = server.borrow();
                    for &at in &prefetch {
                        server.db.prefetch(at, 2);
                    }
                }
                if memory_limit > 0 {
                    lua.set_memory_limit(memory_limit as usize)?;
                }
                let out = runner.call::<MultiValue>((func, keys, argv));
                if memory_limit > 0 {
                    lua.set_memory_limit(0)?;
                }
                out
            })
        };

        self.scripting.prefetch = prefetch;
        let running = self.scripting.running.take();
        let is_function = running.as_ref().is_some_and(|r| r.function.is_some());
        let sc = &self.scripting;
        let engine = if is_function { &sc.functions } else { &sc.eval };
        sc.shared.busy_at.set(None);
        if sc.shared.killed.replace(false) {
            engine.reset_hook(&sc.shared);
        }
        if !is_function {
            let _ = engine.globals.raw_set("KEYS", Value::Nil);
            let _ = engine.globals.raw_set("ARGV", Value::Nil);
        }
        if self.shutdown_requested
            && let Some(r) = &running
            && r.kill
        {
            // SHUTDOWN NOSAVE during the script: none of its effects are kept.
            self.effects.truncate_to(r.effects_mark);
        } else if !nested {
            self.effects.end_exec();
        }
        // The commands recorded their own effects; the EVAL is not recorded.
        self.propagate_nothing();
        if let Some(r) = &running
            && r.busy
        {
            tracing::warn!(
                "slow script finished after {} ms",
                r.start.elapsed().as_millis()
            );
        }

        let values = match result {
            Ok(v) => v,
            Err(e) => return Err(script_setup_error(&e)),
        };
        let mut values = values.into_iter();
        let ok = matches!(values.next(), Some(Value::Boolean(true)));
        let value = values.next().unwrap_or(Value::Nil);
        if ok {
            let script_resp3 = self.scripting.shared.resp3.get();
            lua_to_reply(&value, &mut call.reply(), script_resp3);
            return Ok(());
        }
        if matches!(value, Value::String(_)) {
            // Out of memory (the only error that skips the message handler): free what the
            // script left before the next one runs.
            let _ = lua.gc_collect();
            let _ = lua.gc_collect();
        }
        let killed = running.as_ref().is_some_and(|r| r.kill);
        Err(CmdError::msg(script_error_text(
            &value,
            &String::from_utf8_lossy(name),
            killed.then_some(kill_text),
        )))
    }

    /// Redis's `scriptPrepareForRun` checks for scripts that declared flags.
    fn check_script_flags(
        &self,
        tok: usize,
        script_flags: u32,
        read_only: bool,
        oom: bool,
    ) -> CmdResult {
        if script_flags & flags::NO_CLUSTER != 0 && self.cluster.enabled {
            return Err(CmdError::msg(
                "ERR Can not run script on cluster, 'no-cluster' flag is set.",
            ));
        }
        if let Some(text) =
            self.replication_refusal(tok, !read_only, script_flags & flags::ALLOW_STALE != 0)
        {
            return Err(CmdError::msg(text));
        }
        if !read_only {
            if let Some(text) = self.disk_refusal() {
                return Err(CmdError::Msg(text));
            }
            if oom && script_flags & flags::ALLOW_OOM == 0 {
                return Err(CmdError::msg(
                    "OOM command not allowed when used memory > 'maxmemory'.",
                ));
            }
        }
        Ok(())
    }

    /// A script's command arguments as a request, in the reusable buffers (the caller puts
    /// them back); the error for no arguments or a value that is not a string or a number.
    fn script_args(&mut self, argv: &MultiValue) -> Result<(Vec<u8>, Spans), &'static [u8]> {
        if argv.is_empty() {
            return Err(b"ERR Please specify at least one argument for this redis lib call");
        }
        let mut buf = std::mem::take(&mut self.scripting.arg_buf);
        let mut spans = std::mem::take(&mut self.scripting.arg_spans);
        buf.clear();
        spans.clear();
        for v in argv.iter() {
            let start = buf.len() as u32;
            match v {
                Value::String(s) => buf.extend_from_slice(&s.as_bytes()),
                Value::Integer(i) => {
                    buf.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes())
                }
                Value::Number(n) => tessera_protocol::num::write_g(&mut buf, *n, 14),
                _ => {
                    self.scripting.arg_buf = buf;
                    self.scripting.arg_spans = spans;
                    return Err(b"ERR Lua redis lib command arguments must be strings or integers");
                }
            }
            spans.push((start, buf.len() as u32));
        }
        Ok((buf, spans))
    }

    /// `redis.acl_check_cmd(command, ...)`: may the script's user run this command?
    fn script_acl_check(&mut self, argv: &MultiValue) -> mlua::Result<Value> {
        let raise = |text: &[u8]| Err(mlua::Error::external(ScriptError(text.to_vec())));
        let (buf, spans) = match self.script_args(argv) {
            Ok(parts) => parts,
            Err(text) => return raise(text),
        };
        let args = Args::from_parts(&buf, &spans);
        let user = self
            .scripting
            .running
            .as_ref()
            .and_then(|r| self.clients.get(r.client))
            .map_or(crate::acl::DEFAULT_USER, |c| c.user);
        let allowed = crate::acl::commands::lookup(&args).map(|spec| {
            let id = crate::acl::selector::universe().id(spec);
            self.acl.user(user).check(id, spec, &args).is_ok()
        });
        self.scripting.arg_buf = buf;
        self.scripting.arg_spans = spans;
        match allowed {
            Some(ok) => Ok(Value::Boolean(ok)),
            None => raise(b"ERR Invalid command passed to redis.acl_check_cmd()"),
        }
    }

    /// `redis.call` / `redis.pcall`: runs one command for the script. Returns the reply as a Lua
    /// value, and true when it is an error (which `redis.call` raises).
    ///
    /// The memory limit is lifted while the command runs and its reply becomes Lua values:
    /// with a limit set, mlua wraps every string and table it makes in a protected call (about
    /// a tenth of a short script's cost). A reply is bounded by the data set; the script's own
    /// next allocation meets the limit again.
    fn script_redis_call(&mut self, lua: &Lua, argv: MultiValue) -> mlua::Result<(Value, bool)> {
        let limit = self.scripting.memory_limit;
        if limit > 0 {
            lua.set_memory_limit(0)?;
        }
        let result = self.script_redis_call_unlimited(lua, argv);
        if limit > 0 {
            lua.set_memory_limit(limit as usize)?;
        }
        result
    }

    fn script_redis_call_unlimited(
        &mut self,
        lua: &Lua,
        argv: MultiValue,
    ) -> mlua::Result<(Value, bool)> {
        let failed = |lua: &Lua, err: &[u8]| -> mlua::Result<(Value, bool)> {
            let t = convert::error_table(lua, err)?;
            t.raw_set("ignore_error_stats_update", true)?;
            Ok((Value::Table(t), true))
        };
        let (buf, spans) = match self.script_args(&argv) {
            Ok(parts) => parts,
            Err(text) => return failed(lua, text),
        };
        let mut out = std::mem::take(&mut self.scripting.reply_buf);
        out.clear();
        let resp3 = self.scripting.shared.resp3.get();
        let repl_none = self.scripting.shared.repl.get() == 0;
        let outcome =
            self.execute_from_script(&Args::from_parts(&buf, &spans), &mut out, resp3, repl_none);
        self.scripting.arg_buf = buf;
        self.scripting.arg_spans = spans;
        let result = match outcome {
            Err(text) => failed(lua, &error_text(&[b"-", text.as_bytes()].concat())),
            Ok(()) if out.first() == Some(&b'-') => {
                let end = out.len().saturating_sub(2);
                failed(lua, &error_text(&out[..end]))
            }
            Ok(()) => {
                let mut pos = 0;
                convert::reply_to_lua(lua, &out, &mut pos, resp3).map(|v| (v, false))
            }
        };
        self.scripting.reply_buf = out;
        result
    }

    /// Called by the hook while a script runs past `busy-reply-threshold`: serves other
    /// clients (they get `-BUSY` for most commands) and tells whether to kill the script.
    fn serve_while_busy(&mut self) -> bool {
        let Some(running) = self.scripting.running.as_mut() else {
            return false;
        };
        let first = !running.busy;
        if first {
            running.busy = true;
            tracing::warn!(
                "slow script detected: still in execution after {} milliseconds. You can try killing the script using the SCRIPT KILL command.",
                running.start.elapsed().as_millis()
            );
        }
        let client = running.client;
        self.process_events_while_busy(client, first);
        let Some(running) = self.scripting.running.as_mut() else {
            return false;
        };
        if self.shutdown_requested && self.shutdown_save == Some(false) {
            running.kill = true;
        }
        running.kill
    }
}

/// Text of an error that stopped the script before it ran (out of memory setting KEYS, ...).
fn script_setup_error(e: &mlua::Error) -> CmdError {
    CmdError::msg(format!("ERR {}", lua_error_message(e)))
}

/// The reply text of a script that failed: `<err> script: <name>, on <source>:<line>.`
fn script_error_text(value: &Value, name: &str, killed: Option<&str>) -> String {
    let (mut msg, mut at) = (String::from("ERR unknown error"), None);
    match value {
        Value::Table(t) => {
            if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
                msg = e.to_string_lossy();
            }
            if let (Ok(Value::String(src)), Ok(line)) =
                (t.raw_get::<Value>("source"), t.raw_get::<i64>("line"))
            {
                at = Some((src.to_string_lossy(), line));
            }
        }
        // A memory error skips the message handler.
        Value::String(s) => msg = format!("ERR {}", s.to_string_lossy()),
        _ => {}
    }
    if let Some(text) = killed {
        // Whatever the script did with the error (a pcall), the kill is what it ends with.
        msg = format!("ERR {text}");
    }
    match at {
        Some((src, line)) => format!("{msg} script: {name}, on {src}:{line}."),
        None => format!("{msg} script: {name}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// EVAL, EVALSHA and FCALL skip the usual MONITOR line (written after a command ran) and
/// write theirs first, so the commands they run come after them, as in Redis.
pub(crate) fn feed_monitors(s: &mut Server, call: &Call<'_>, args: &Args<'_>) {
    if !s.monitors.is_empty() {
        crate::commands::server::feed_monitors(s, call.client, args);
    }
}

/// SCRIPT FLUSH's and FUNCTION FLUSH's option: none, SYNC or ASYNC (both flush at once).
fn flush_option_ok(args: &Args<'_>) -> bool {
    match args.len() {
        2 => true,
        3 => {
            let a = args.get(2);
            a.eq_ignore_ascii_case(b"sync") || a.eq_ignore_ascii_case(b"async")
        }
        _ => false,
    }
}

/// Parses EVAL's numkeys.
fn numkeys(args: &Args<'_>) -> Result<usize, CmdError> {
    let n = tessera_protocol::num::parse_i64(args.get(2)).ok_or(CmdError::NotInteger)?;
    if n < 0 {
        return Err(CmdError::msg("ERR Number of keys can't be negative"));
    }
    if n as usize > args.len() - 3 {
        return Err(CmdError::msg(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    Ok(n as usize)
}

/// `EVAL script numkeys [key ...] [arg ...]` and `EVAL_RO`.
pub fn eval(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    feed_monitors(s, call, args);
    let n = numkeys(args)?;
    let sha = s.scripting.load(args.get(1))?;
    let ro = call.spec.name == "eval_ro";
    s.run_script(call, sha, args, n, ro)
}

/// `EVALSHA sha1 numkeys [key ...] [arg ...]` and `EVALSHA_RO`.
pub fn evalsha(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    feed_monitors(s, call, args);
    let n = numkeys(args)?;
    let Some(sha) = sha_key(args.get(1)) else {
        return Err(CmdError::msg(
            "NOSCRIPT No matching script. Please use EVAL.",
        ));
    };
    let ro = call.spec.name == "evalsha_ro";
    s.run_script(call, sha, args, n, ro)
}

/// `SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP`.
pub fn script(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = args.get(1).to_ascii_lowercase();
    match &sub[..] {
        b"load" => {
            let sha = s.scripting.load(args.get(2))?;
            call.reply().bulk(&sha);
        }
        b"exists" => {
            let mut r = call.reply();
            r.array(args.len() - 2);
            for sha in args.iter_from(2) {
                r.int(i64::from(s.scripting.exists(sha)));
            }
        }
        b"flush" => {
            if !flush_option_ok(args) {
                return Err(CmdError::msg(
                    "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
                ));
            }
            s.scripting
                .flush_scripts()
                .map_err(|e| CmdError::msg(format!("ERR {}", lua_error_message(&e))))?;
            call.reply().ok();
        }
        b"kill" => match s.scripting.running.as_mut() {
            None => return Err(CmdError::msg("NOTBUSY No scripts in execution right now.")),
            Some(r) if r.function.is_some() => return Err(CmdError::msg(BUSY_FUNCTION)),
            Some(r) if r.wrote => return Err(CmdError::msg(UNKILLABLE)),
            Some(r) => {
                r.kill = true;
                call.reply().ok();
            }
        },
        _ => {
            let lines = [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DEBUG (YES|SYNC|NO)",
                "    Set the debug mode for subsequent scripts executed.",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "    When called without the optional mode argument, the behavior is determined by the",
                "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                "    * ASYNC: Asynchronously flush the scripts cache.",
                "    * SYNC: Synchronously flush the scripts cache.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Prints this help.",
            ];
            return crate::commands::server::help(call, &lines);
        }
    }
    Ok(())
}

pub const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";

/// The reply to commands other clients send while a script is busy.
pub const BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// The same while a function is busy.
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// Commands served while a script is busy (Redis's `processCommand` list).
pub fn allowed_while_busy(name: &str, args: &Args<'_>) -> bool {
    match name {
        "auth" | "hello" | "replconf" | "multi" | "discard" | "watch" | "unwatch" | "reset"
        | "script|kill" | "function|kill" | "function|stats" => true,
        "shutdown" => args.len() == 2 && args.get(1).eq_ignore_ascii_case(b"nosave"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_is_lower_hex() {
        assert_eq!(&sha1_hex(b""), b"da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn rand48_follows_redis() {
        let state = Cell::new(RAND48_START);
        // A new Redis 7.0 answers `EVAL "return math.random(100)" 0` with 40, then 85.
        for want in [40.0, 85.0] {
            let r = (lrand48(&state) % 2_147_483_647) as f64 / 2_147_483_647.0;
            assert_eq!((r * 100.0).floor() + 1.0, want);
        }
    }

    #[test]
    fn shebangs() {
        assert_eq!(parse_shebang(b"return 1").unwrap().0, flags::COMPAT);
        let (f, code) = parse_shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert_eq!(f, flags::NO_WRITES | flags::ALLOW_OOM);
        assert_eq!(&*code, b"\nreturn 1");
        assert!(parse_shebang(b"#!lua2\n").is_err());
        assert!(parse_shebang(b"#!lua flags=bogus\n").is_err());
        assert!(parse_shebang(b"#!lua name=x\n").is_err());
    }
}
