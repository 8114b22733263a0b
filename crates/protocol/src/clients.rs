//! CLIENT LIST / CLIENT INFO lines and the CLIENT LIST / CLIENT KILL filters, as Redis 7.0
//! writes and reads them: shared by the shard and the proxy, which keep their clients apart.

use std::time::{Duration, Instant};

use crate::command::{self, CommandSpec, flag};
use crate::{Args, num};

/// A client type of `TYPE` in CLIENT LIST and CLIENT KILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    Master,
    /// `replica` or `slave`.
    Replica,
    Pubsub,
}

impl ClientType {
    pub fn parse(t: &[u8]) -> Result<ClientType, String> {
        let is = |w: &str| t.eq_ignore_ascii_case(w.as_bytes());
        if is("normal") {
            Ok(ClientType::Normal)
        } else if is("master") {
            Ok(ClientType::Master)
        } else if is("replica") || is("slave") {
            Ok(ClientType::Replica)
        } else if is("pubsub") {
            Ok(ClientType::Pubsub)
        } else {
            Err(format!(
                "ERR Unknown client type '{}'",
                String::from_utf8_lossy(t)
            ))
        }
    }
}

const SYNTAX: &str = "ERR syntax error";

/// The three kinds of subscription: channels, patterns and shard channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Channel,
    Pattern,
    Shard,
}

impl Family {
    /// The family a (un)subscribe command (or confirmation word) is about.
    pub fn of(command: &str) -> Family {
        match command {
            "psubscribe" | "punsubscribe" => Family::Pattern,
            "ssubscribe" | "sunsubscribe" => Family::Shard,
            _ => Family::Channel,
        }
    }

    /// True for the six (un)subscribe commands, whose confirmations are pushes: Redis sends
    /// them even with CLIENT REPLY OFF.
    pub fn is_subscription(command: &str) -> bool {
        matches!(
            command,
            "subscribe"
                | "psubscribe"
                | "ssubscribe"
                | "unsubscribe"
                | "punsubscribe"
                | "sunsubscribe"
        )
    }

    /// The (subscribe, unsubscribe) words of confirmations and commands.
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            Family::Channel => ("subscribe", "unsubscribe"),
            Family::Pattern => ("psubscribe", "punsubscribe"),
            Family::Shard => ("ssubscribe", "sunsubscribe"),
        }
    }
}

/// The refusal of `name` (a command's full name) to a RESP2 client in subscribed mode, or
/// `None` when it may run there (Redis's processCommand check).
pub fn subscribed_mode_refusal(name: &str) -> Option<String> {
    let allowed = matches!(
        name,
        "subscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "sunsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ping"
            | "quit"
            | "reset"
    );
    (!allowed).then(|| {
        format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        )
    })
}

/// PING in RESP2 subscribed mode: `["pong", message]`.
pub fn subscribed_pong(r: &mut crate::Reply<'_>, message: Option<&[u8]>) {
    r.array(2);
    r.bulk(b"pong");
    r.bulk(message.unwrap_or_default());
}

/// Checks a CLIENT SETNAME / HELLO SETNAME name.
pub fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    Ok(())
}

/// A `CLIENT PAUSE` in force.
#[derive(Clone, Copy, Debug)]
pub struct Pause {
    pub until: Instant,
    /// `CLIENT PAUSE WRITE`: only commands that may write wait.
    pub writes_only: bool,
}

impl Pause {
    /// `CLIENT PAUSE timeout [WRITE|ALL]` on top of the pause in force, if any: a new pause
    /// never shortens or weakens one in force (Redis's `pauseClients`). Errors in Redis's
    /// order and words.
    pub fn parse(args: &Args<'_>, current: Option<Pause>, now: Instant) -> Result<Pause, String> {
        if args.len() > 4 {
            return Err(command::subcommand_syntax_error(args.get(0), args.get(1)));
        }
        let writes_only = match args.try_get(3) {
            None => false,
            Some(a) if a.eq_ignore_ascii_case(b"write") => true,
            Some(a) if a.eq_ignore_ascii_case(b"all") => false,
            Some(_) => return Err("ERR CLIENT PAUSE mode must be WRITE or ALL".into()),
        };
        let ms =
            num::parse_i64(args.get(2)).ok_or("ERR timeout is not an integer or out of range")?;
        if ms < 0 {
            return Err("ERR timeout is negative".into());
        }
        // A timeout beyond what the clock can add means "until CLIENT UNPAUSE".
        let until = now
            .checked_add(Duration::from_millis(ms as u64))
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86400));
        Ok(match current {
            Some(p) if p.until > now => Pause {
                until: p.until.max(until),
                writes_only: p.writes_only && writes_only,
            },
            _ => Pause { until, writes_only },
        })
    }

    /// True when a command of `spec` waits for the pause to end. The commands that observe
    /// or end a pause go through.
    pub fn holds(&self, spec: &CommandSpec) -> bool {
        if matches!(
            spec.name,
            "client|unpause" | "client|pause" | "info" | "ping" | "quit"
        ) {
            return false;
        }
        !self.writes_only || Pause::may_write(spec)
    }

    /// True for the commands CLIENT PAUSE WRITE holds.
    pub fn may_write(spec: &CommandSpec) -> bool {
        spec.has(flag::WRITE) || spec.name == "publish" || spec.name.starts_with("eval")
    }
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: the client's id, and true for ERROR. Errors in
/// Redis's order and words.
pub fn parse_unblock(args: &Args<'_>) -> Result<(i64, bool), String> {
    if args.len() > 4 {
        return Err(command::subcommand_syntax_error(args.get(0), args.get(1)));
    }
    let error = match args.try_get(3) {
        None => false,
        Some(a) if a.eq_ignore_ascii_case(b"timeout") => false,
        Some(a) if a.eq_ignore_ascii_case(b"error") => true,
        Some(_) => return Err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR".into()),
    };
    let id = num::parse_i64(args.get(2)).ok_or("ERR value is not an integer or out of range")?;
    Ok((id, error))
}

/// A CLIENT SETINFO attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibInfo {
    Name,
    Version,
}

/// `CLIENT SETINFO <LIB-NAME|LIB-VER> value`: the attribute and its value (`None`: cleared).
pub fn parse_setinfo(attr: &[u8], value: &[u8]) -> Result<(LibInfo, Option<Vec<u8>>), String> {
    if value.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(attr).to_uppercase()
        ));
    }
    let which = if attr.eq_ignore_ascii_case(b"lib-name") {
        LibInfo::Name
    } else if attr.eq_ignore_ascii_case(b"lib-ver") {
        LibInfo::Version
    } else {
        return Err(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        ));
    };
    Ok((which, (!value.is_empty()).then(|| value.to_vec())))
}

/// `CLIENT LIST [TYPE type] [ID id [id ...]]`: which clients to list (none: all).
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub kind: Option<ClientType>,
    pub ids: Option<Vec<u64>>,
}

impl ListFilter {
    pub fn parse(args: &Args<'_>) -> Result<ListFilter, String> {
        let mut f = ListFilter::default();
        let mut i = 2;
        while i < args.len() {
            let a = args.get(i);
            if a.eq_ignore_ascii_case(b"type") && i + 1 < args.len() {
                f.kind = Some(ClientType::parse(args.get(i + 1))?);
                i += 2;
            } else if a.eq_ignore_ascii_case(b"id") && i + 1 < args.len() {
                let mut ids = Vec::new();
                for id in args.iter_from(i + 1) {
                    match num::parse_i64(id) {
                        Some(n) if n > 0 => ids.push(n as u64),
                        _ => return Err("ERR Invalid client ID".into()),
                    }
                }
                f.ids = Some(ids);
                i = args.len();
            } else {
                return Err(SYNTAX.into());
            }
        }
        Ok(f)
    }

    /// True for a client with `id` of type `kind`.
    pub fn matches(&self, id: u64, kind: ClientType) -> bool {
        self.kind.is_none_or(|k| k == kind) && self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}

/// `CLIENT KILL addr:port` (`old`: the reply is OK or `No such client`) or
/// `CLIENT KILL <ID id|TYPE type|USER name|ADDR addr|LADDR addr|SKIPME yes|no> ...`.
#[derive(Clone, Debug)]
pub struct KillFilter {
    pub old: bool,
    pub id: Option<u64>,
    pub kind: Option<ClientType>,
    pub user: Option<Vec<u8>>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    pub skipme: bool,
}

impl KillFilter {
    /// Parses the arguments; the caller checks that `user` exists.
    pub fn parse(args: &Args<'_>) -> Result<KillFilter, String> {
        let mut f = KillFilter {
            old: false,
            id: None,
            kind: None,
            user: None,
            addr: None,
            laddr: None,
            skipme: true,
        };
        if args.len() == 3 {
            f.old = true;
            f.skipme = false;
            f.addr = Some(String::from_utf8_lossy(args.get(2)).into_owned());
            return Ok(f);
        }
        if !args.len().is_multiple_of(2) {
            return Err(SYNTAX.into());
        }
        for i in (2..args.len()).step_by(2) {
            let (k, v) = (args.get(i), args.get(i + 1));
            let is = |w: &str| k.eq_ignore_ascii_case(w.as_bytes());
            if is("id") {
                match num::parse_i64(v) {
                    Some(n) if n > 0 => f.id = Some(n as u64),
                    _ => return Err("ERR client-id should be greater than 0".into()),
                }
            } else if is("addr") {
                f.addr = Some(String::from_utf8_lossy(v).into_owned());
            } else if is("laddr") {
                f.laddr = Some(String::from_utf8_lossy(v).into_owned());
            } else if is("type") {
                f.kind = Some(ClientType::parse(v)?);
            } else if is("user") {
                f.user = Some(v.to_vec());
            } else if is("skipme") {
                f.skipme = if v.eq_ignore_ascii_case(b"yes") {
                    true
                } else if v.eq_ignore_ascii_case(b"no") {
                    false
                } else {
                    return Err(SYNTAX.into());
                };
            } else {
                return Err(SYNTAX.into());
            }
        }
        Ok(f)
    }

    /// True for the client described (`me`: it is the one asking).
    pub fn matches(&self, c: &Line<'_>, kind: ClientType, me: bool) -> bool {
        self.id.is_none_or(|id| c.id == id)
            && self.kind.is_none_or(|k| k == kind)
            && self.user.as_deref().is_none_or(|u| u == c.user)
            && self.addr.as_deref().is_none_or(|a| a == c.addr)
            && self.laddr.as_deref().is_none_or(|a| a == c.laddr)
            && !(self.skipme && me)
    }
}

/// One client as CLIENT LIST shows it.
#[derive(Clone, Debug, Default)]
pub struct Line<'a> {
    pub id: u64,
    pub addr: &'a str,
    pub laddr: &'a str,
    pub fd: usize,
    pub name: &'a [u8],
    pub age: u64,
    pub idle: u64,
    pub flags: &'a str,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// Commands queued in MULTI, or -1.
    pub multi: i64,
    pub qbuf: usize,
    pub qbuf_free: usize,
    pub rbs: usize,
    pub obl: usize,
    pub oll: usize,
    pub omem: usize,
    pub cmd: &'a str,
    pub user: &'a [u8],
    pub redir: i64,
    pub resp: u8,
    pub lib_name: &'a [u8],
    pub lib_ver: &'a [u8],
}

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        write!(
            f,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp={} obl={} oll={} omem={} tot-mem={} events=r cmd={} user={} redir={} resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            text(self.name),
            self.age,
            self.idle,
            self.flags,
            self.sub,
            self.psub,
            self.ssub,
            self.multi,
            self.qbuf,
            self.qbuf_free,
            self.rbs,
            self.qbuf,
            self.obl,
            self.oll,
            self.omem,
            self.qbuf + self.qbuf_free + self.omem,
            self.cmd,
            text(self.user),
            self.redir,
            self.resp,
            text(self.lib_name),
            text(self.lib_ver),
        )
    }
}

/// A connection's tracking mode as `CLIENT TRACKINGINFO` shows it (shard and proxy).
#[derive(Default)]
pub struct TrackingInfo<'a> {
    pub on: bool,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    /// `CLIENT CACHING` was given for the next command.
    pub caching: bool,
    pub noloop: bool,
    pub broken_redirect: bool,
    /// The client invalidations go to (0: itself).
    pub redirect: u64,
    /// Broadcast prefixes, sorted.
    pub prefixes: &'a [Vec<u8>],
}

impl TrackingInfo<'_> {
    /// The reply, in Redis's field and flag order.
    pub fn write(&self, r: &mut crate::Reply<'_>) {
        let mut flags: Vec<&str> = Vec::new();
        if !self.on {
            flags.push("off");
        } else {
            flags.push("on");
            if self.bcast {
                flags.push("bcast");
            }
            if self.optin {
                flags.push("optin");
                if self.caching {
                    flags.push("caching-yes");
                }
            }
            if self.optout {
                flags.push("optout");
                if self.caching {
                    flags.push("caching-no");
                }
            }
            if self.noloop {
                flags.push("noloop");
            }
            if self.broken_redirect {
                flags.push("broken_redirect");
            }
        }
        r.map(3);
        r.bulk(b"flags");
        r.set(flags.len());
        for f in flags {
            r.bulk(f.as_bytes());
        }
        r.bulk(b"redirect");
        r.int(if self.on { self.redirect as i64 } else { -1 });
        r.bulk(b"prefixes");
        r.array(self.prefixes.len());
        for p in self.prefixes {
            r.bulk(p);
        }
    }
}

/// The options of `CLIENT TRACKING on|off [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN]
/// [OPTOUT] [NOLOOP]`, as Redis reads them (shard and proxy).
#[derive(Default)]
pub struct TrackingOptions {
    /// The client invalidations go to, and the place of its argument.
    pub redirect: Option<(u64, usize)>,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    pub prefixes: Vec<Vec<u8>>,
}

impl TrackingOptions {
    /// Reads the options after ON/OFF; `exists` says whether a REDIRECT target is a client,
    /// checked where Redis checks it (before the options after it).
    pub fn parse(
        args: &crate::Args<'_>,
        exists: impl Fn(u64) -> bool,
    ) -> Result<TrackingOptions, &'static str> {
        let is = |a: &[u8], w: &str| a.eq_ignore_ascii_case(w.as_bytes());
        let mut opts = TrackingOptions::default();
        let mut j = 3;
        while j < args.len() {
            let a = args.get(j);
            let more = j + 1 < args.len();
            if is(a, "redirect") && more {
                j += 1;
                if opts.redirect.is_some() {
                    return Err("ERR A client can only redirect to a single other client");
                }
                let id = crate::num::parse_i64(args.get(j))
                    .ok_or("ERR value is not an integer or out of range")?;
                if id <= 0 || !exists(id as u64) {
                    return Err("ERR The client ID you want redirect to does not exist");
                }
                opts.redirect = Some((id as u64, j));
            } else if is(a, "bcast") {
                opts.bcast = true;
            } else if is(a, "optin") {
                opts.optin = true;
            } else if is(a, "optout") {
                opts.optout = true;
            } else if is(a, "noloop") {
                opts.noloop = true;
            } else if is(a, "prefix") && more {
                j += 1;
                opts.prefixes.push(args.get(j).to_vec());
            } else {
                return Err("ERR syntax error");
            }
            j += 1;
        }
        Ok(opts)
    }
}
