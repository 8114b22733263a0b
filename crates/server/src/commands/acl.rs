//! `ACL ...` and the server's side of permissions: the refusal texts and log entries of the
//! verify step, and disconnecting the clients of users that are deleted or replaced.

use std::time::Instant;

use tessera_protocol::Args;
use tessera_protocol::command::CommandSpec;

use super::{int_arg, is};
use crate::acl::selector::{CATEGORIES, category, universe};
use crate::acl::{self, Context, Denied, LogEntry, Reason, UserId};
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::server::{Server, unix_ms};

const NO_ACL_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

const ACL_HELP: &[&str] = &[
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

impl Server {
    /// The refusal of a command the client's user may not run, logged in the ACL log. Inside
    /// EXEC the rules changed after the command was queued, and the text says so.
    pub(crate) fn acl_refusal(
        &mut self,
        tok: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
        denied: Denied,
    ) -> String {
        if self.in_exec == Some(tok) {
            self.log_acl_denial(tok, spec, args, denied, Context::Multi);
            let reason = match denied {
                Denied::Command => "no permission to execute the command or subcommand",
                Denied::Key(_) => "no permission to touch the specified keys",
                Denied::Channel(_) => {
                    "no permission to access one of the channels used as arguments"
                }
            };
            return format!(
                "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {reason}"
            );
        }
        let context = if self.clients[tok].multi.is_some() {
            Context::Multi
        } else {
            Context::Toplevel
        };
        self.log_acl_denial(tok, spec, args, denied, context);
        match denied {
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

    pub(crate) fn log_acl_denial(
        &mut self,
        tok: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
        denied: Denied,
        context: Context,
    ) {
        let (reason, object) = match denied {
            Denied::Command => (Reason::Command, spec.name.as_bytes()),
            Denied::Key(i) => (Reason::Key, args.get(i)),
            Denied::Channel(i) => (Reason::Channel, args.get(i)),
        };
        let entry = self.acl_log_entry(tok, reason, context, object, None);
        let max = self.config.acllog_max_len;
        self.acl.log_event(entry, max);
    }

    /// A log entry for client `tok`; `username` for failed authentications (the name tried).
    pub(crate) fn acl_log_entry(
        &self,
        tok: usize,
        reason: Reason,
        context: Context,
        object: &[u8],
        username: Option<&[u8]>,
    ) -> LogEntry {
        let (user, client_info) = match self.clients.get(tok) {
            Some(c) => {
                let name = &self.acl.user(c.user).name;
                (
                    name.clone(),
                    super::connection::client_line(tok, c, Instant::now(), name),
                )
            }
            None => (b"default".to_vec(), String::new()),
        };
        LogEntry {
            count: 1,
            reason,
            context,
            object: object.to_vec(),
            username: username.map_or(user, <[u8]>::to_vec),
            ctime_ms: unix_ms(),
            client_info,
        }
    }

    /// Disconnects the clients authenticated as the users `gone` (deleted or replaced): they
    /// fall back to the default user, unauthenticated, and close (the caller after its reply).
    fn disconnect_users(&mut self, gone: &[UserId], me: usize) {
        let targets: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.user != acl::DEFAULT_USER && gone.contains(&c.user))
            .map(|(t, _)| t)
            .collect();
        for t in targets {
            let c = &mut self.clients[t];
            c.user = acl::DEFAULT_USER;
            c.authenticated = false;
            super::connection::kill(self, t, me);
        }
    }

    /// After `ACL SETUSER` took channels away from `id`, its subscribers to channels no longer
    /// allowed are disconnected (Redis's `ACLKillPubsubClientsIfNeeded`).
    fn disconnect_revoked_subscribers(&mut self, id: UserId, old: &acl::User, me: usize) {
        let new = self.acl.user(id);
        if new.selectors.iter().any(|s| s.all_channels) {
            return;
        }
        let allowed: Vec<Vec<u8>> = new
            .selectors
            .iter()
            .flat_map(|s| s.channels.iter().cloned())
            .collect();
        let kept = old
            .selectors
            .iter()
            .flat_map(|s| s.channels.iter())
            .all(|c| allowed.contains(c));
        if kept {
            return;
        }
        let by_glob = |ch: &[u8]| {
            allowed
                .iter()
                .any(|p| tessera_protocol::glob::matches(p, ch, false))
        };
        let targets: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.user == id
                    && c.in_pubsub()
                    && (c.psubscriptions.iter().any(|p| !allowed.contains(p))
                        || c.subscriptions.iter().any(|ch| !by_glob(ch))
                        || c.ssubscriptions.iter().any(|ch| !by_glob(ch)))
            })
            .map(|(t, _)| t)
            .collect();
        for t in targets {
            super::connection::kill(self, t, me);
        }
    }
}

/// `ACL <subcommand> ...`
pub fn acl(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let tok = call.client;
    match call.spec.name {
        "acl|setuser" => {
            let name = args.get(2);
            if acl::has_spaces(name) {
                return Err(CmdError::msg(
                    "ERR Usernames can't contain spaces or null characters",
                ));
            }
            let ops: Vec<Vec<u8>> = args.iter_from(3).map(<[u8]>::to_vec).collect();
            let ops = acl::merge_selectors(&ops).map_err(|i| {
                CmdError::msg(format!(
                    "ERR Unmatched parenthesis in acl selector starting at '{}'.",
                    String::from_utf8_lossy(&ops[i])
                ))
            })?;
            let (id, old) = s.acl.set_user(name, &ops).map_err(CmdError::msg)?;
            if let Some(old) = old {
                s.disconnect_revoked_subscribers(id, &old, tok);
            }
            call.reply().ok();
        }
        "acl|deluser" => {
            if args.iter_from(2).any(|n| n == b"default") {
                return Err(CmdError::msg("ERR The 'default' user cannot be removed"));
            }
            let mut gone = Vec::new();
            for name in args.iter_from(2) {
                if let Some(id) = s.acl.remove_user(name) {
                    gone.push(id);
                }
            }
            s.disconnect_users(&gone, tok);
            call.reply().int(gone.len() as i64);
        }
        "acl|getuser" => {
            let Some(id) = s.acl.id_of(args.get(2)) else {
                call.reply().null();
                return Ok(());
            };
            let u = s.acl.user(id);
            let mut r = call.reply();
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
            let describe = |r: &mut tessera_protocol::Reply<'_>, sel: &acl::Selector| {
                r.bulk(b"commands");
                r.bulk(sel.describe_commands().as_bytes());
                r.bulk(b"keys");
                r.bulk(&sel.describe_keys());
                r.bulk(b"channels");
                r.bulk(&sel.describe_channels());
            };
            describe(&mut r, &u.selectors[0]);
            r.bulk(b"selectors");
            r.array(u.selectors.len() - 1);
            for sel in &u.selectors[1..] {
                r.map(3);
                describe(&mut r, sel);
            }
        }
        "acl|list" | "acl|users" => {
            let names_only = call.spec.name == "acl|users";
            let lines: Vec<Vec<u8>> = s
                .acl
                .users()
                .map(|(_, u)| {
                    if names_only {
                        return u.name.clone();
                    }
                    let mut line = b"user ".to_vec();
                    line.extend_from_slice(&u.name);
                    line.push(b' ');
                    line.extend_from_slice(&u.describe());
                    line
                })
                .collect();
            let mut r = call.reply();
            r.array(lines.len());
            for l in &lines {
                r.bulk(l);
            }
        }
        "acl|whoami" => {
            let name = s.acl.user(s.clients[tok].user).name.clone();
            call.reply().bulk(&name);
        }
        "acl|load" => {
            let Some(path) = s.config.aclfile.clone() else {
                return Err(CmdError::msg(NO_ACL_FILE));
            };
            let replaced = s
                .acl
                .load_file(&path)
                .map_err(|e| CmdError::msg(format!("ERR {e}")))?;
            s.disconnect_users(&replaced, tok);
            call.reply().ok();
        }
        "acl|save" => {
            let Some(path) = s.config.aclfile.clone() else {
                return Err(CmdError::msg(NO_ACL_FILE));
            };
            if let Err(e) = s.acl.save_file(&path) {
                tracing::warn!("Writing ACL file for ACL SAVE: {e}");
                return Err(CmdError::msg(
                    "ERR There was an error trying to save the ACLs. Please check the server logs for more information",
                ));
            }
            call.reply().ok();
        }
        "acl|cat" => {
            let mut r = call.reply();
            match args.try_get(2) {
                None => {
                    r.array(CATEGORIES.len());
                    for (name, _) in CATEGORIES {
                        r.bulk(name.as_bytes());
                    }
                }
                Some(name) => {
                    let flag = category(name).ok_or_else(|| {
                        let shown = &name[..name.len().min(128)];
                        CmdError::msg(format!(
                            "ERR Unknown category '{}'",
                            String::from_utf8_lossy(shown)
                        ))
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
                }
            }
        }
        "acl|genpass" => {
            const MAX_BITS: i64 = 4096;
            let bits = match args.try_get(2) {
                Some(v) => int_arg(v)?,
                None => 256,
            };
            if !(1..=MAX_BITS).contains(&bits) {
                return Err(CmdError::msg(format!(
                    "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to {MAX_BITS}"
                )));
            }
            let chars = (bits as usize).div_ceil(4);
            let pass: String = (0..chars)
                .map(|_| {
                    char::from_digit(rand::random_range(0..16u32), 16).expect("digit below 16")
                })
                .collect();
            call.reply().bulk(pass.as_bytes());
        }
        "acl|log" => {
            let mut count = 10;
            if let Some(v) = args.try_get(2) {
                if is(v, "reset") {
                    s.acl.log.clear();
                    call.reply().ok();
                    return Ok(());
                }
                count = int_arg(v)?.max(0) as usize;
            }
            let now = unix_ms();
            let entries: Vec<&LogEntry> = s.acl.log.iter().take(count).collect();
            let mut r = call.reply();
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
                r.double((now - e.ctime_ms) as f64 / 1000.0);
                r.bulk(b"client-info");
                r.bulk(e.client_info.as_bytes());
            }
        }
        "acl|dryrun" => {
            let name = args.get(2);
            let Some(id) = s.acl.id_of(name) else {
                return Err(CmdError::msg(format!(
                    "ERR User '{}' not found",
                    String::from_utf8_lossy(name)
                )));
            };
            let sub = args.skip(3);
            let Some(spec) = lookup(&sub) else {
                return Err(CmdError::msg(format!(
                    "ERR Command '{}' not found",
                    String::from_utf8_lossy(args.get(3))
                )));
            };
            let u = universe();
            match s.acl.user(id).check(u.id(spec), spec, &sub) {
                Ok(()) => call.reply().ok(),
                Err(d) => {
                    let text = match d {
                        Denied::Command => format!(
                            "This user has no permissions to run the '{}' command",
                            spec.name
                        ),
                        Denied::Key(i) => format!(
                            "This user has no permissions to access the '{}' key",
                            String::from_utf8_lossy(sub.get(i))
                        ),
                        Denied::Channel(i) => format!(
                            "This user has no permissions to access the '{}' channel",
                            String::from_utf8_lossy(sub.get(i))
                        ),
                    };
                    call.reply().bulk(text.as_bytes());
                }
            }
        }
        _ => return super::server::help(call, ACL_HELP),
    }
    Ok(())
}

/// The command a request names among all of Redis's (Redis's `lookupCommand`): a container's
/// subcommand when one is given; `None` for an unknown command or subcommand.
pub(crate) fn lookup(args: &Args<'_>) -> Option<&'static CommandSpec> {
    let spec = tessera_protocol::CommandTable::redis().get(args.try_get(0)?)?;
    if spec.is_container() && args.len() >= 2 {
        return spec.subcommand(args.get(1));
    }
    Some(spec)
}
