//! Connection commands: PING, ECHO, HELLO, AUTH, QUIT, RESET, SELECT, CLIENT.

use std::time::Instant;

use tessera_protocol::Args;
use tessera_protocol::clients::{self, ClientType, KillFilter, Line, ListFilter};

use super::{int_arg, is};
use crate::acl;
use crate::client::{Client, ReplyMode};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::repl::primary::Phase;
use crate::server::Server;

/// The Redis version Tessera is compatible with, reported where clients look for it.
pub use tessera_protocol::REDIS_VERSION;

/// `PING [message]`
pub fn ping(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let c = &s.clients[call.client];
    if args.len() <= 2 && !c.resp3 && c.in_pubsub() {
        super::pubsub::subscribed_ping(call, args);
        return Ok(());
    }
    match args.try_get(1) {
        None => call.reply().simple("PONG"),
        Some(m) if args.len() == 2 => call.reply().bulk(m),
        Some(_) => {
            return Err(CmdError::msg(
                "ERR wrong number of arguments for 'ping' command",
            ));
        }
    }
    Ok(())
}

/// `ECHO message`
pub fn echo(_s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    call.reply().bulk(args.get(1));
    Ok(())
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Authenticates client `tok` as `user`, or logs the failure (Redis's `ACLAuthenticateUser`).
fn authenticate(
    s: &mut Server,
    tok: usize,
    args: &Args<'_>,
    user: &[u8],
    pass: &[u8],
) -> CmdResult {
    // A cluster's internal connection (`tessera_acl::internal`): its own name and secret.
    let internal = acl::internal::Internal::from_name(user);
    let opened = match internal {
        Some(_) => s.acl.opens_internal(pass).then_some(acl::INTERNAL_USER),
        None => s.acl.authenticate(user, pass),
    };
    match opened {
        Some(id) => {
            let c = &mut s.clients[tok];
            c.authenticated = true;
            c.user = id;
            c.internal = internal;
            Ok(())
        }
        None => {
            let context = if s.clients[tok].multi.is_some() {
                acl::Context::Multi
            } else {
                acl::Context::Toplevel
            };
            let entry = s.acl_log_entry(tok, acl::Reason::Auth, context, args.get(0), Some(user));
            let max = s.config.acllog_max_len;
            s.acl.log_event(entry, max);
            Err(CmdError::msg(WRONGPASS))
        }
    }
}

/// `AUTH [username] password`
pub fn auth(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let (user, pass) = if args.len() == 3 {
        (Some(args.get(1)), args.get(2))
    } else {
        (None, args.get(1))
    };
    if user.is_none() && s.acl.user(acl::DEFAULT_USER).nopass() {
        return Err(CmdError::msg(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    }
    authenticate(s, call.client, args, user.unwrap_or(b"default"), pass)?;
    call.reply().ok();
    Ok(())
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub fn hello(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let tessera_protocol::command::HelloArgs {
        proto,
        auth,
        setname,
    } = tessera_protocol::command::parse_hello(args).map_err(CmdError::msg)?;
    if let Some((user, pass)) = auth {
        authenticate(s, call.client, args, user, pass)?;
    }
    if !s.clients[call.client].authenticated && s.acl.auth_required() {
        return Err(CmdError::msg(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(name) = setname {
        validate_name(name)?;
        s.clients[call.client].name = (!name.is_empty()).then(|| name.to_vec());
    }
    if let Some(p) = proto {
        call.resp3 = p == 3;
        s.clients[call.client].resp3 = p == 3;
    }
    let id = s.clients[call.client].id;
    let role: &[u8] = if s.repl.is_replica() {
        b"replica"
    } else {
        b"master"
    };
    call.reply().hello(id as i64, role);
    Ok(())
}

/// `QUIT`
pub fn quit(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    call.reply().ok();
    s.clients[call.client].close_after_reply = true;
    Ok(())
}

/// `RESET`
pub fn reset(s: &mut Server, call: &mut Call<'_>, _args: &Args<'_>) -> CmdResult {
    let auth = !s.acl.auth_required();
    let tok = call.client;
    s.disable_tracking(tok);
    let c = &mut s.clients[tok];
    c.user = acl::DEFAULT_USER;
    c.internal = None;
    c.resp3 = false;
    c.name = None;
    c.reply_mode = ReplyMode::On;
    c.no_evict = false;
    c.no_touch = false;
    c.authenticated = auth;
    if c.monitor {
        c.monitor = false;
        s.monitors.retain(|&t| t != tok);
    }
    c.multi = None;
    s.unwatch_all(tok);
    s.unsubscribe_all_silently(tok);
    call.resp3 = false;
    call.reply().simple("RESET");
    Ok(())
}

/// `SELECT index`
pub fn select(_s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let db = int_arg(args.get(1))?;
    if db != 0 {
        return Err(CmdError::msg("ERR DB index is out of range"));
    }
    call.reply().ok();
    Ok(())
}

fn validate_name(name: &[u8]) -> Result<(), CmdError> {
    clients::check_name(name).map_err(CmdError::msg)
}

/// One line of CLIENT LIST / CLIENT INFO, in Redis's field order.
pub(crate) fn client_line(tok: usize, c: &Client, now: Instant, user: &[u8]) -> String {
    let mut flags = String::new();
    if c.is_master {
        flags.push('M');
    }
    if c.replica
        .as_ref()
        .is_some_and(|r| r.phase != Phase::Handshake)
    {
        flags.push('S');
    }
    if c.monitor {
        flags.push('O');
    }
    if c.close_after_reply {
        flags.push('c');
    }
    if c.no_evict {
        flags.push('e');
    }
    if c.no_touch {
        flags.push('T');
    }
    if c.multi.is_some() {
        flags.push('x');
    }
    if c.in_pubsub() {
        flags.push('P');
    }
    if c.blocked.is_some() {
        flags.push('b');
    }
    if let Some(t) = &c.tracking {
        flags.push('t');
        if t.broken_redirect {
            flags.push('R');
        }
        if t.bcast {
            flags.push('B');
        }
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let (qbuf, qbuf_free) =
        c.io.as_ref()
            .map_or((0, 0), |io| (io.end - io.start, io.buf.len() - io.end));
    let (obl, omem) =
        c.io.as_ref()
            .map_or((0, 0), |io| (io.out.len() - io.out_pos, io.out.capacity()));
    let addr = c.addr.to_string();
    let laddr = c.laddr.map(|a| a.to_string()).unwrap_or_default();
    Line {
        id: c.id,
        addr: &addr,
        laddr: &laddr,
        fd: tok + 8,
        name: c.name.as_deref().unwrap_or_default(),
        age: now.duration_since(c.created).as_secs(),
        idle: now.duration_since(c.last_interaction).as_secs(),
        flags: &flags,
        sub: c.subscriptions.len(),
        psub: c.psubscriptions.len(),
        ssub: c.ssubscriptions.len(),
        multi: c.multi.as_ref().map_or(-1, |m| m.queue.len() as i64),
        qbuf,
        qbuf_free,
        rbs: c.io.as_ref().map_or(0, |io| io.buf.len()),
        obl,
        oll: 0,
        omem,
        cmd: c.last_cmd,
        user,
        redir: c.tracking.as_ref().map_or(-1, |t| t.redirect as i64),
        resp: if c.resp3 { 3 } else { 2 },
        lib_name: c.lib_name.as_deref().unwrap_or_default(),
        lib_ver: c.lib_ver.as_deref().unwrap_or_default(),
    }
    .to_string()
}

/// Redis 7.2's text (7.0's, with SETINFO, NO-TOUCH and KILL ID).
const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "HELP",
    "    Prints this help.",
];

/// The type CLIENT LIST and CLIENT KILL see a client as.
fn client_type(c: &Client) -> ClientType {
    if c.is_master {
        ClientType::Master
    } else if c
        .replica
        .as_ref()
        .is_some_and(|r| r.phase != Phase::Handshake)
    {
        ClientType::Replica
    } else if c.in_pubsub() {
        ClientType::Pubsub
    } else {
        ClientType::Normal
    }
}

fn on_off(a: &[u8]) -> Result<bool, CmdError> {
    if is(a, "on") {
        Ok(true)
    } else if is(a, "off") {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

/// `CLIENT <subcommand> ...`
pub fn client(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let sub = args.get(1);
    let tok = call.client;
    match call.spec.name {
        "client|id" => call.reply().int(s.clients[tok].id as i64),
        "client|setname" => {
            let name = args.get(2);
            validate_name(name)?;
            s.clients[tok].name = (!name.is_empty()).then(|| name.to_vec());
            call.reply().ok();
        }
        "client|getname" => {
            let name = s.clients[tok].name.clone();
            call.reply().bulk_opt(name.as_deref());
        }
        "client|info" => {
            let user = &s.acl.user(s.clients[tok].user).name;
            let line = client_line(tok, &s.clients[tok], Instant::now(), user) + "\n";
            call.reply().verbatim("txt", line.as_bytes());
        }
        "client|list" => {
            let filter = ListFilter::parse(args).map_err(CmdError::msg)?;
            let now = Instant::now();
            let mut text = String::new();
            for (t, c) in s.clients.iter() {
                if !filter.matches(c.id, client_type(c)) {
                    continue;
                }
                text.push_str(&client_line(t, c, now, &s.acl.user(c.user).name));
                text.push('\n');
            }
            call.reply().verbatim("txt", text.as_bytes());
        }
        "client|kill" => return client_kill(s, call, args),
        "client|setinfo" => {
            let (which, v) =
                clients::parse_setinfo(args.get(2), args.get(3)).map_err(CmdError::msg)?;
            let c = &mut s.clients[tok];
            match which {
                clients::LibInfo::Name => c.lib_name = v,
                clients::LibInfo::Version => c.lib_ver = v,
            }
            call.reply().ok();
        }
        "client|no-evict" => {
            s.clients[tok].no_evict = on_off(args.get(2))?;
            call.reply().ok();
        }
        "client|no-touch" => {
            s.clients[tok].no_touch = on_off(args.get(2))?;
            call.reply().ok();
        }
        "client|reply" => {
            let a = args.get(2);
            let mode = if is(a, "on") {
                ReplyMode::On
            } else if is(a, "off") {
                ReplyMode::Off
            } else if is(a, "skip") {
                ReplyMode::SkipNext
            } else {
                return Err(CmdError::Syntax);
            };
            s.clients[tok].reply_mode = mode;
            if mode == ReplyMode::On {
                call.reply().ok();
            }
        }
        "client|pause" => {
            let pause =
                clients::Pause::parse(args, s.pause, Instant::now()).map_err(CmdError::msg)?;
            s.pause = Some(pause);
            call.reply().ok();
        }
        "client|unpause" => {
            s.pause = None;
            call.reply().ok();
        }
        "client|tracking" => {
            crate::tracking::client_tracking(s, tok, args).map_err(CmdError::msg)?;
            call.reply().ok();
        }
        "client|caching" => {
            crate::tracking::client_caching(s, tok, args.get(2)).map_err(CmdError::msg)?;
            call.reply().ok();
        }
        "client|getredir" => {
            let redir = s.clients[tok]
                .tracking
                .as_ref()
                .map_or(-1, |t| t.redirect as i64);
            call.reply().int(redir);
        }
        "client|trackinginfo" => crate::tracking::tracking_info(s, tok, &mut call.reply()),
        "client|unblock" => {
            let (id, error) = clients::parse_unblock(args).map_err(CmdError::msg)?;
            let how = if error {
                crate::blocking::Release::Error
            } else {
                crate::blocking::Release::Timeout
            };
            let target = s
                .clients
                .iter()
                .find(|(_, c)| c.id == id as u64)
                .map(|(t, _)| t);
            let done =
                target.is_some_and(|t| s.release_blocked(t, how) || s.release_waiter(t, how));
            call.reply().int(i64::from(done));
        }
        "client|help" => return super::server::help(call, CLIENT_HELP),
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(sub)
            )));
        }
    }
    Ok(())
}

/// `CLIENT KILL ip:port` or `CLIENT KILL <filter> <value> ...`
fn client_kill(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let me = call.client;
    let filter = KillFilter::parse(args).map_err(CmdError::msg)?;
    if let Some(u) = &filter.user
        && s.acl.id_of(u).is_none()
    {
        return Err(CmdError::msg(format!(
            "ERR No such user '{}'",
            String::from_utf8_lossy(u)
        )));
    }
    let targets: Vec<usize> = s
        .clients
        .iter()
        .filter(|&(t, c)| {
            // USER names a user of the list, never the internal connections' user.
            if filter.user.is_some() && c.internal.is_some() {
                return false;
            }
            let user = &s.acl.user(c.user).name;
            let addr = c.addr.to_string();
            let laddr = c.laddr.map(|a| a.to_string()).unwrap_or_default();
            let line = Line {
                id: c.id,
                addr: &addr,
                laddr: &laddr,
                user,
                ..Line::default()
            };
            filter.matches(&line, client_type(c), t == me)
        })
        .map(|(t, _)| t)
        .collect();
    if filter.old {
        let Some(&t) = targets.first() else {
            return Err(CmdError::msg("ERR No such client"));
        };
        kill(s, t, me);
        call.reply().ok();
        return Ok(());
    }
    for &t in &targets {
        kill(s, t, me);
    }
    call.reply().int(targets.len() as i64);
    Ok(())
}

/// Closes client `t`: the caller itself after its reply, others right away.
pub(crate) fn kill(s: &mut Server, t: usize, me: usize) {
    if t == me {
        s.clients[t].close_after_reply = true;
    } else {
        s.clients[t].close_asap = true;
        s.schedule_write(t);
    }
}
