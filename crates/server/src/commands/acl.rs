//! `ACL ...` and the server's side of permissions: the refusal texts and log entries of the
//! verify step, and disconnecting the clients of users that are deleted or replaced.

use std::time::Instant;

use tessera_protocol::Args;
use tessera_protocol::command::CommandSpec;

use crate::acl::commands::{self, LogRequest};
use crate::acl::{self, Context, Denied, LogEntry, Reason, UserId};
use crate::client::ReplyMode;
use crate::dispatch::{Call, CmdError, CmdResult};
use crate::server::{Server, unix_ms};

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
            return denied.refusal_in_exec();
        }
        let context = if self.clients[tok].multi.is_some() {
            Context::Multi
        } else {
            Context::Toplevel
        };
        self.log_acl_denial(tok, spec, args, denied, context);
        denied.refusal(spec)
    }

    pub(crate) fn log_acl_denial(
        &mut self,
        tok: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
        denied: Denied,
        context: Context,
    ) {
        let (reason, object) = denied.logged(spec, args);
        let entry = self.acl_log_entry(tok, reason, context, &object, None);
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

    /// In cluster mode the users are the database's, from the cluster configuration
    /// (`docs/CLUSTER.md`, "Users"): when a new topology changes them, every client's user is
    /// found again by name; clients of a user that has gone are closed, and subscribers to
    /// channels their user no longer allows, as after ACL LOAD and SETUSER.
    pub(crate) fn take_cluster_users(&mut self, answered: &[usize]) {
        let Some((password, lines)) = self.cluster.new_users() else {
            return;
        };
        let users = match acl::Acl::from_lines(password.as_deref(), &lines) {
            Ok(users) => users,
            Err(e) => {
                tracing::error!("the database's users do not load ({e}); the shard keeps its own");
                return;
            }
        };
        let names: Vec<(usize, Vec<u8>)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.internal.is_none() && !c.is_master)
            .map(|(t, c)| (t, self.acl.user(c.user).name.clone()))
            .collect();
        self.acl.take_users_of(users);
        for (t, name) in names {
            let Some(id) = self.acl.id_of(&name) else {
                let c = &mut self.clients[t];
                c.user = acl::DEFAULT_USER;
                c.authenticated = false;
                // The client that made the change (its answer just written, or still to
                // come) closes after it.
                if answered.contains(&t) || c.users_change.is_some() {
                    c.close_after_reply = true;
                } else {
                    super::connection::kill(self, t, usize::MAX);
                }
                continue;
            };
            let c = &mut self.clients[t];
            c.user = id;
            if !keeps_subscriptions(self.acl.user(id), c) {
                super::connection::kill(self, t, usize::MAX);
            }
        }
    }

    /// After `ACL SETUSER` took channels away from `id`, its subscribers to channels no longer
    /// allowed are disconnected (Redis's `ACLKillPubsubClientsIfNeeded`).
    fn disconnect_revoked_subscribers(&mut self, id: UserId, old: &acl::User, me: usize) {
        let new = self.acl.user(id);
        if new.keeps_channels_of(old) {
            return;
        }
        let targets: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.user == id && !keeps_subscriptions(new, c))
            .map(|(t, _)| t)
            .collect();
        for t in targets {
            super::connection::kill(self, t, me);
        }
    }
}

/// Whether client `c` may keep its subscriptions under `user`'s rules (Redis's
/// `ACLKillPubsubClientsIfNeeded`).
fn keeps_subscriptions(user: &acl::User, c: &crate::client::Client) -> bool {
    !c.in_pubsub()
        || user.allows_subscriptions(
            c.subscriptions
                .iter()
                .chain(&c.ssubscriptions)
                .map(|c| &c[..]),
            c.psubscriptions.iter().map(|p| &p[..]),
        )
}

/// ACL SETUSER and DELUSER on a cluster shard: the users are the database's, so the change
/// goes to the control group (as through the proxy) and the client waits, reading nothing
/// more, until this shard holds the configuration it made (`Server::answer_users_changes`).
fn change_cluster_users(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let tok = call.client;
    if s.in_exec == Some(tok) || s.scripting.running.is_some() {
        return Err(CmdError::msg(
            "ERR a cluster database's users change through its control group: ACL SETUSER and DELUSER cannot run inside a transaction or a script",
        ));
    }
    let database = s.cluster.database();
    let change = if call.spec.name == "acl|setuser" {
        let (name, ops) = commands::parse_setuser(args).map_err(CmdError::msg)?;
        let rules = commands::hash_passwords(ops);
        tessera_watch::users::set_user(database, name, rules).map_err(CmdError::msg)?
    } else {
        let names = commands::parse_deluser(args).map_err(CmdError::msg)?;
        tessera_watch::users::delete_users(database, &names)
    };
    let c = &s.clients[tok];
    let quiet = c.reply_mode != ReplyMode::On;
    s.cluster
        .change_users(c.id, change)
        .map_err(CmdError::msg)?;
    s.clients[tok].users_change = Some(quiet);
    Ok(())
}

impl Server {
    /// Writes the control group's answers to users changes once this shard holds the epoch
    /// they made; returns the clients answered.
    pub(crate) fn answer_users_changes(&mut self) -> Vec<usize> {
        let mut answered = Vec::new();
        for (id, frame) in self.cluster.take_answers() {
            let Some(&tok) = self.client_ids.get(&id) else {
                continue;
            };
            let c = &mut self.clients[tok];
            let quiet = c.users_change.take().unwrap_or(true);
            if !quiet && let Some(io) = c.io.as_mut() {
                io.out.extend_from_slice(&frame);
            }
            self.schedule_write(tok);
            answered.push(tok);
        }
        answered
    }
}

/// `ACL <subcommand> ...`
pub fn acl(s: &mut Server, call: &mut Call<'_>, args: &Args<'_>) -> CmdResult {
    let tok = call.client;
    if s.cluster.enabled {
        match call.spec.name {
            "acl|setuser" | "acl|deluser" => return change_cluster_users(s, call, args),
            // The users are the configuration's, kept by the control group: there is
            // nothing unsaved to save, and nothing newer to load.
            "acl|save" | "acl|load" => {
                call.reply().ok();
                return Ok(());
            }
            _ => {}
        }
    }
    match call.spec.name {
        "acl|setuser" => {
            let (name, ops) = commands::parse_setuser(args).map_err(CmdError::msg)?;
            let (id, old) = s.acl.set_user(name, &ops).map_err(CmdError::msg)?;
            if let Some(old) = old {
                s.disconnect_revoked_subscribers(id, &old, tok);
            }
            call.reply().ok();
        }
        "acl|deluser" => {
            let names = commands::parse_deluser(args).map_err(CmdError::msg)?;
            let mut gone = Vec::new();
            for name in names {
                if let Some(id) = s.acl.remove_user(name) {
                    gone.push(id);
                }
            }
            s.disconnect_users(&gone, tok);
            call.reply().int(gone.len() as i64);
        }
        "acl|getuser" => {
            let user = s.acl.id_of(args.get(2)).map(|id| s.acl.user(id));
            commands::write_getuser(&mut call.reply(), user);
        }
        "acl|list" | "acl|users" => {
            let names_only = call.spec.name == "acl|users";
            commands::write_list(&mut call.reply(), &s.acl, names_only)
        }
        "acl|whoami" => {
            let name = s.acl.user(s.clients[tok].user).name.clone();
            call.reply().bulk(&name);
        }
        "acl|load" => {
            let Some(path) = s.config.aclfile.clone() else {
                return Err(CmdError::msg(commands::NO_ACL_FILE));
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
                return Err(CmdError::msg(commands::NO_ACL_FILE));
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
            commands::write_cat(&mut call.reply(), args.try_get(2)).map_err(CmdError::msg)?
        }
        "acl|genpass" => {
            let pass = commands::genpass(args.try_get(2)).map_err(CmdError::msg)?;
            call.reply().bulk(pass.as_bytes());
        }
        "acl|log" => match commands::parse_log(args.try_get(2)).map_err(CmdError::msg)? {
            LogRequest::Reset => {
                s.acl.log.clear();
                call.reply().ok();
            }
            LogRequest::Show(count) => {
                commands::write_log(&mut call.reply(), &s.acl.log, count, unix_ms())
            }
        },
        "acl|dryrun" => match commands::dryrun(&s.acl, args).map_err(CmdError::msg)? {
            None => call.reply().ok(),
            Some(why) => call.reply().bulk(why.as_bytes()),
        },
        _ => return super::server::help(call, commands::HELP),
    }
    Ok(())
}
