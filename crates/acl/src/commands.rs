//! The parts of `ACL ...` that do not depend on where the users live: argument parsing, the
//! replies of GETUSER, LIST, USERS, CAT, GENPASS, LOG and DRYRUN, and the refusal texts of the
//! permission check, in Redis 7.0's words. The shard (`tessera_server::commands::acl`) keeps
//! its users in its own [`Acl`]; the proxy keeps the database's users from the cluster
//! configuration. Both answer through these functions.

use std::collections::VecDeque;

use tessera_protocol::command::CommandSpec;
use tessera_protocol::{Args, CommandTable, Reply, num};

use crate::selector::{CATEGORIES, Selector, category, universe};
use crate::{Acl, Denied, LogEntry, User, has_spaces, merge_selectors};

pub const NO_ACL_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

pub const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
];

/// A help reply: one status line per text line (Redis's `addReplyHelp`).
pub fn write_help(r: &mut Reply<'_>, lines: &[&str]) {
    r.array(lines.len());
    for l in lines {
        r.simple(l);
    }
}

/// `ACL SETUSER username [rule ...]`: the name and the rules, a selector given over several
/// arguments joined into one.
pub fn parse_setuser<'a>(args: &'a Args<'_>) -> Result<(&'a [u8], Vec<Vec<u8>>), String> {
    let name = args.get(2);
    if has_spaces(name) {
        return Err("ERR Usernames can't contain spaces or null characters".into());
    }
    let ops: Vec<Vec<u8>> = args.iter_from(3).map(<[u8]>::to_vec).collect();
    let ops = merge_selectors(&ops).map_err(|i| {
        format!(
            "ERR Unmatched parenthesis in acl selector starting at '{}'.",
            String::from_utf8_lossy(&ops[i])
        )
    })?;
    Ok((name, ops))
}

/// `ACL DELUSER username [username ...]`: the names (never the default user's).
pub fn parse_deluser<'a>(args: &'a Args<'_>) -> Result<Vec<&'a [u8]>, &'static str> {
    let names: Vec<&[u8]> = args.iter_from(2).collect();
    if names.contains(&&b"default"[..]) {
        return Err("ERR The 'default' user cannot be removed");
    }
    Ok(names)
}

/// `ACL GETUSER`'s reply: the user's flags, passwords, root selector and other selectors;
/// null for no such user.
pub fn write_getuser(r: &mut Reply<'_>, user: Option<&User>) {
    let Some(u) = user else {
        r.null();
        return;
    };
    r.map(6);
    r.bulk(b"flags");
    let flags: Vec<&str> = u.flag_names().collect();
    r.set(flags.len());
    for f in flags {
        r.bulk(f.as_bytes());
    }
    r.bulk(b"passwords");
    r.array(u.passwords.len());
    for p in &u.passwords {
        r.bulk(p.as_bytes());
    }
    let describe = |r: &mut Reply<'_>, sel: &Selector| {
        r.bulk(b"commands");
        r.bulk(sel.describe_commands().as_bytes());
        r.bulk(b"keys");
        r.bulk(&sel.describe_keys());
        r.bulk(b"channels");
        r.bulk(&sel.describe_channels());
    };
    describe(r, &u.selectors[0]);
    r.bulk(b"selectors");
    r.array(u.selectors.len() - 1);
    for sel in &u.selectors[1..] {
        r.map(3);
        describe(r, sel);
    }
}

/// `ACL LIST` (`user <name> <rules>` lines) or, with `names_only`, `ACL USERS`.
pub fn write_list(r: &mut Reply<'_>, acl: &Acl, names_only: bool) {
    let lines: Vec<Vec<u8>> = acl
        .users()
        .map(|(_, u)| if names_only { u.name.clone() } else { u.line() })
        .collect();
    r.array(lines.len());
    for l in &lines {
        r.bulk(l);
    }
}

/// `ACL CAT [category]`: every category, or the commands of one.
pub fn write_cat(r: &mut Reply<'_>, name: Option<&[u8]>) -> Result<(), String> {
    let Some(name) = name else {
        r.array(CATEGORIES.len());
        for (name, _) in CATEGORIES {
            r.bulk(name.as_bytes());
        }
        return Ok(());
    };
    let flag = category(name).ok_or_else(|| {
        let shown = &name[..name.len().min(128)];
        format!("ERR Unknown category '{}'", String::from_utf8_lossy(shown))
    })?;
    let names: Vec<&str> = universe()
        .specs
        .iter()
        .filter(|c| c.acl_categories & flag != 0)
        .map(|c| c.name)
        .collect();
    r.array(names.len());
    for n in names {
        r.bulk(n.as_bytes());
    }
    Ok(())
}

/// `ACL GENPASS [bits]`: a random password of `bits` bits (256 by default) in hex.
pub fn genpass(bits: Option<&[u8]>) -> Result<String, String> {
    const MAX_BITS: i64 = 4096;
    let bits = match bits {
        Some(v) => num::parse_i64(v).ok_or("ERR value is not an integer or out of range")?,
        None => 256,
    };
    if !(1..=MAX_BITS).contains(&bits) {
        return Err(format!(
            "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to {MAX_BITS}"
        ));
    }
    let chars = (bits as usize).div_ceil(4);
    Ok((0..chars)
        .map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("digit below 16"))
        .collect())
}

/// What `ACL LOG [count | RESET]` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRequest {
    Reset,
    Show(usize),
}

pub fn parse_log(arg: Option<&[u8]>) -> Result<LogRequest, &'static str> {
    match arg {
        None => Ok(LogRequest::Show(10)),
        Some(v) if v.eq_ignore_ascii_case(b"reset") => Ok(LogRequest::Reset),
        Some(v) => num::parse_i64(v)
            .map(|n| LogRequest::Show(n.max(0) as usize))
            .ok_or("ERR value is not an integer or out of range"),
    }
}

/// `ACL LOG count`'s reply: the newest `count` entries, ages measured at `now_ms`.
pub fn write_log(r: &mut Reply<'_>, log: &VecDeque<LogEntry>, count: usize, now_ms: i64) {
    let entries: Vec<&LogEntry> = log.iter().take(count).collect();
    r.array(entries.len());
    for e in entries {
        r.map(7);
        r.bulk(b"count");
        r.int(e.count as i64);
        r.bulk(b"reason");
        r.bulk(e.reason.name().as_bytes());
        r.bulk(b"context");
        r.bulk(e.context.name().as_bytes());
        r.bulk(b"object");
        r.bulk(&e.object);
        r.bulk(b"username");
        r.bulk(&e.username);
        r.bulk(b"age-seconds");
        r.double((now_ms - e.ctime_ms) as f64 / 1000.0);
        r.bulk(b"client-info");
        r.bulk(e.client_info.as_bytes());
    }
}

/// `ACL DRYRUN username command [arg ...]`: `Ok(None)` when the user may run it, `Ok(Some)`
/// with the reason when not (a bulk reply), `Err` for an error reply.
pub fn dryrun(acl: &Acl, args: &Args<'_>) -> Result<Option<String>, String> {
    let name = args.get(2);
    let Some(id) = acl.id_of(name) else {
        return Err(format!(
            "ERR User '{}' not found",
            String::from_utf8_lossy(name)
        ));
    };
    let sub = args.skip(3);
    let Some(spec) = lookup(&sub) else {
        return Err(format!(
            "ERR Command '{}' not found",
            String::from_utf8_lossy(args.get(3))
        ));
    };
    Ok(match acl.user(id).check(universe().id(spec), spec, &sub) {
        Ok(()) => None,
        Err(Denied::Command) => Some(format!(
            "This user has no permissions to run the '{}' command",
            spec.name
        )),
        Err(Denied::Key(i)) => Some(format!(
            "This user has no permissions to access the '{}' key",
            String::from_utf8_lossy(sub.get(i))
        )),
        Err(Denied::Channel(i)) => Some(format!(
            "This user has no permissions to access the '{}' channel",
            String::from_utf8_lossy(sub.get(i))
        )),
    })
}

impl Denied {
    /// The error a refused command gets (Redis's `addACLLogEntry` callers in
    /// `processCommand`).
    pub fn refusal(self, spec: &CommandSpec) -> String {
        match self {
            Denied::Command => format!(
                "NOPERM this user has no permissions to run the '{}' command",
                spec.name
            ),
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denied::Channel(_) => {
                "NOPERM this user has no permissions to access one of the channels used as arguments"
                    .into()
            }
        }
    }

    /// The error EXEC gives a queued command the rules no longer allow.
    pub fn refusal_in_exec(self) -> String {
        let reason = match self {
            Denied::Command => "no permission to execute the command or subcommand",
            Denied::Key(_) => "no permission to touch the specified keys",
            Denied::Channel(_) => "no permission to access one of the channels used as arguments",
        };
        format!(
            "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {reason}"
        )
    }

    /// The log's reason and the object at fault (the command's name, or the argument).
    pub fn logged(self, spec: &CommandSpec, args: &Args<'_>) -> (crate::Reason, Vec<u8>) {
        match self {
            Denied::Command => (crate::Reason::Command, spec.name.as_bytes().to_vec()),
            Denied::Key(i) => (crate::Reason::Key, args.get(i).to_vec()),
            Denied::Channel(i) => (crate::Reason::Channel, args.get(i).to_vec()),
        }
    }
}

/// The command a request names among all of Redis's (Redis's `lookupCommand`): a container's
/// subcommand when one is given; `None` for an unknown command or subcommand.
pub fn lookup(args: &Args<'_>) -> Option<&'static CommandSpec> {
    let spec = CommandTable::redis().get(args.try_get(0)?)?;
    if spec.is_container() && args.len() >= 2 {
        return spec.subcommand(args.get(1));
    }
    Some(spec)
}

/// SETUSER rules with every clear-text password (`>pass`, `<pass`) replaced by its hash
/// (`#hash`, `!hash`): the same user results, and the password itself goes no further (the
/// proxy sends rules to the control group this way, so no log or configuration holds it).
pub fn hash_passwords(ops: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    ops.into_iter()
        .map(|op| match op.first() {
            Some(b'>') => format!("#{}", crate::hash_password(&op[1..])).into_bytes(),
            Some(b'<') => format!("!{}", crate::hash_password(&op[1..])).into_bytes(),
            _ => op,
        })
        .collect()
}

/// SORT and SORT_RO for a user that may not read every key ([`crate::User::sort_refusal`]):
/// Redis's error for the first BY pattern with a `*` or GET option. `None` when there is none,
/// or when a syntax or number error comes first (the command reports those).
pub(crate) fn sort_denial(args: &Args<'_>, read_only: bool) -> Option<&'static str> {
    let is = |a: &[u8], w: &str| a.eq_ignore_ascii_case(w.as_bytes());
    let mut i = 2;
    while i < args.len() {
        let a = args.get(i);
        let left = args.len() - i - 1;
        if is(a, "asc") || is(a, "desc") || is(a, "alpha") {
        } else if is(a, "limit") && left >= 2 {
            if num::parse_i64(args.get(i + 1)).is_none()
                || num::parse_i64(args.get(i + 2)).is_none()
            {
                return None;
            }
            i += 2;
        } else if is(a, "store") && left >= 1 && !read_only {
            i += 1;
        } else if is(a, "by") && left >= 1 {
            if args.get(i + 1).contains(&b'*') {
                return Some("ERR BY option of SORT denied due to insufficient ACL permissions.");
            }
            i += 1;
        } else if is(a, "get") && left >= 1 {
            return Some("ERR GET option of SORT denied due to insufficient ACL permissions.");
        } else {
            return None;
        }
        i += 1;
    }
    None
}
