//! Users and permissions at the proxy (`docs/CLUSTER.md`, "Users").
//!
//! The database's users come with its configuration: the default user opened by the database
//! password, and the `ACL LIST` lines of `Topology::users` (`tessera_acl::Acl::from_lines`).
//! Every command is checked here, after authentication and before it is routed, as a shard
//! checks it, and a transaction's commands again at EXEC; the shards are reached as the
//! internal identity (`tessera_acl::internal`) and never see the clients' users. A script
//! runs on a shard with the proxy's rights, so EVAL, EVALSHA and FCALL need a user allowed
//! everything.
//!
//! ACL SETUSER and DELUSER change the configuration through the control group (a thread of
//! their own makes the request; passwords go as hashes) and are answered once this proxy
//! holds the configuration they made, so the client's next command already sees it. Every
//! proxy of the database then takes the same users from the same configuration. ACL LOG is
//! this proxy's, shared by its workers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tessera_acl::commands::{self, LogRequest};
use tessera_acl::selector::universe;
use tessera_acl::{Acl, Context, DEFAULT_USER, LogEntry, Reason};
use tessera_protocol::Args;
use tessera_protocol::command::CommandSpec;
use tessera_protocol::parse::{Limits, RequestParser};

use tessera_watch::users;

use crate::Shared;
use crate::clients::Mail;
use crate::worker::{Multi, To, Worker};

/// Entries ACL LOG keeps (Redis's `acllog-max-len` default).
const LOG_MAX_LEN: usize = 128;
/// How long an ACL change waits for this proxy to see the configuration it made.
const SEEN_WITHIN: Duration = Duration::from_secs(5);
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const SCRIPT_NEEDS_ALL: &str = "NOPERM this user has no permissions to run scripts through the proxy: a script runs on the shard with the proxy's rights, so it needs a user allowed every command, key and channel";

/// The users a configuration describes. A configuration whose lines do not load (they are
/// made by the control group from rules it checked, so this is a bug) leaves the default user
/// alone, logged.
pub(crate) fn users_of(password: Option<&str>, lines: &[String]) -> Acl {
    Acl::from_lines(password, lines).unwrap_or_else(|e| {
        tracing::error!(
            "proxy: the database's users do not load ({e}); only the default user can log in"
        );
        Acl::new(password, false)
    })
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn is_script(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

impl Worker {
    /// The users in force (none before the first configuration).
    fn users(&self) -> Option<&Acl> {
        self.acl.as_deref()
    }

    /// True when clients need no AUTH: the configuration is known and its default user has
    /// no password. Before the first configuration nobody is let in.
    pub(crate) fn open_access(&self) -> bool {
        self.users().is_some_and(|a| !a.auth_required())
    }

    /// Takes the users of a new configuration: each client's user is found again by name; the
    /// clients of a user that has gone are closed (the one that deleted it once it has its
    /// answer), and so are subscribers to channels their user no longer allows, as Redis does
    /// after ACL SETUSER, DELUSER and LOAD.
    pub(crate) fn take_users(&mut self, acl: Arc<Acl>) {
        let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
        for key in keys {
            let c = &mut self.clients[key];
            let id = if c.user_name.is_empty() {
                Some(DEFAULT_USER)
            } else {
                acl.id_of(&c.user_name)
            };
            let Some(id) = id else {
                if c.acl_pending {
                    c.user = DEFAULT_USER;
                    c.authed = false;
                    c.closing = true;
                    self.mark_client(key);
                } else {
                    self.close_client(key);
                }
                continue;
            };
            c.user = id;
            let user = acl.user(id);
            let keeps = c.subs.as_ref().is_none_or(|s| {
                let (channels, patterns) = s.names();
                user.allows_subscriptions(channels, patterns)
            });
            if !keeps {
                self.close_client(key);
            }
        }
        self.acl = Some(acl);
    }

    /// The permission check of client `key`'s command: the error to answer, logged in ACL
    /// LOG, when its user may not run it.
    pub(crate) fn check_permission(
        &mut self,
        key: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
    ) -> Result<(), String> {
        let Some(acl) = self.acl.as_ref() else {
            return Ok(());
        };
        let c = &self.clients[key];
        let user = acl.user(c.user);
        if user.unrestricted() {
            return Ok(());
        }
        let id = universe().id(spec);
        let denied = match user.check(id, spec, args) {
            Ok(()) if is_script(spec) => return Err(SCRIPT_NEEDS_ALL.into()),
            Ok(()) if matches!(spec.name, "sort" | "sort_ro") => {
                return user
                    .sort_refusal(spec, args)
                    .map_or(Ok(()), |e| Err(e.into()));
            }
            Ok(()) => return Ok(()),
            Err(d) => d,
        };
        let context = if c.multi.is_some() {
            Context::Multi
        } else {
            Context::Toplevel
        };
        let (reason, object) = denied.logged(spec, args);
        self.log_acl(key, reason, context, object, None);
        Err(denied.refusal(spec))
    }

    /// EXEC: client `key`'s queued commands checked again, as Redis's `execCommand` does
    /// (the users may have changed since they were queued): the refused ones' positions and
    /// error frames, which take their places in EXEC's reply.
    pub(crate) fn recheck_queued(&mut self, key: usize, m: &Multi) -> Vec<(usize, Vec<u8>)> {
        let Some(acl) = self.acl.clone() else {
            return Vec::new();
        };
        let user = acl.user(self.clients[key].user);
        if user.unrestricted() {
            return Vec::new();
        }
        let mut refused = Vec::new();
        let mut parser = RequestParser::new(Limits::default());
        let mut start = 0;
        for (i, &len) in m.lens.iter().enumerate() {
            let raw = &m.cmds[start..start + len as usize];
            start += len as usize;
            let Ok(Some(_)) = parser.parse(raw, true) else {
                continue;
            };
            let args = parser.args(raw);
            let Some(spec) = crate::commands::spec_of(&args) else {
                continue;
            };
            let text = match user.check(universe().id(spec), spec, &args) {
                Ok(()) if is_script(spec) => SCRIPT_NEEDS_ALL.to_string(),
                Ok(()) => match user.sort_refusal(spec, &args) {
                    Some(e) => e.to_string(),
                    None => continue,
                },
                Err(denied) => {
                    let (reason, object) = denied.logged(spec, &args);
                    self.log_acl(key, reason, Context::Multi, object, None);
                    denied.refusal_in_exec()
                }
            };
            let mut frame = Vec::new();
            tessera_protocol::Reply::new(&mut frame, false).error(&text);
            refused.push((i, frame));
        }
        refused
    }

    fn log_acl(
        &self,
        key: usize,
        reason: Reason,
        context: Context,
        object: Vec<u8>,
        username: Option<&[u8]>,
    ) {
        let entry = LogEntry {
            count: 1,
            reason,
            context,
            object,
            username: username.map_or_else(|| self.user_name(key).to_vec(), <[u8]>::to_vec),
            ctime_ms: unix_ms(),
            client_info: self.client_line(key),
        };
        let mut log = self.shared.acl_log.lock().expect("acl log lock");
        tessera_acl::log_event(&mut log, entry, LOG_MAX_LEN);
    }

    /// The name of client `key`'s user.
    pub(crate) fn user_name(&self, key: usize) -> &[u8] {
        let name = &self.clients[key].user_name;
        if name.is_empty() { b"default" } else { name }
    }

    /// AUTH and HELLO's AUTH: client `key` becomes `user` (the default one when none is
    /// named) if `pass` opens it. A failure is logged under the name tried; `command` is the
    /// command as the client spelled it.
    pub(crate) fn authenticate(
        &mut self,
        key: usize,
        command: &[u8],
        user: Option<&[u8]>,
        pass: &[u8],
    ) -> Result<(), &'static str> {
        let Some(acl) = self.acl.clone() else {
            return Err("CLUSTERDOWN The cluster is down");
        };
        let name = user.unwrap_or(b"default");
        match acl.authenticate(name, pass) {
            Some(id) => {
                let c = &mut self.clients[key];
                c.user = id;
                c.user_name = if id == DEFAULT_USER {
                    Vec::new()
                } else {
                    name.to_vec()
                };
                c.authed = true;
                Ok(())
            }
            None => {
                let context = if self.clients[key].multi.is_some() {
                    Context::Multi
                } else {
                    Context::Toplevel
                };
                self.log_acl(key, Reason::Auth, context, command.to_vec(), Some(name));
                Err(WRONGPASS)
            }
        }
    }

    /// True when the default user has no password (AUTH with a password alone is an error
    /// then, as in Redis).
    pub(crate) fn default_nopass(&self) -> bool {
        self.users().is_some_and(|a| a.user(DEFAULT_USER).nopass())
    }

    /// `ACL <subcommand> ...` at the proxy.
    pub(crate) fn acl_command(&mut self, key: usize, spec: &CommandSpec, args: &Args<'_>) {
        let Some(acl) = self.acl.clone() else {
            return self.reply_error(key, "CLUSTERDOWN The cluster is down");
        };
        match spec.name {
            "acl|setuser" => match commands::parse_setuser(args) {
                Ok((name, ops)) => self.set_user(key, name, ops),
                Err(e) => self.reply_error(key, &e),
            },
            "acl|deluser" => match commands::parse_deluser(args) {
                Ok(names) => self.delete_users(key, &names),
                Err(e) => self.reply_error(key, e),
            },
            "acl|getuser" => {
                let user = acl.id_of(args.get(2)).map(|id| acl.user(id));
                self.reply_with(key, |r| commands::write_getuser(r, user));
            }
            "acl|list" | "acl|users" => {
                let names_only = spec.name == "acl|users";
                self.reply_with(key, |r| commands::write_list(r, &acl, names_only));
            }
            "acl|whoami" => {
                let name = self.user_name(key).to_vec();
                self.reply_with(key, |r| r.bulk(&name));
            }
            // The users are the configuration's, kept by the control group: there is nothing
            // unsaved to save, and nothing newer to load.
            "acl|save" | "acl|load" => self.reply_with(key, |r| r.ok()),
            "acl|cat" => {
                let mut frame = Vec::new();
                let resp3 = self.clients[key].resp3;
                match commands::write_cat(
                    &mut tessera_protocol::Reply::new(&mut frame, resp3),
                    args.try_get(2),
                ) {
                    Ok(()) => self.reply_with(key, |r| r.raw(&frame)),
                    Err(e) => self.reply_error(key, &e),
                }
            }
            "acl|genpass" => match commands::genpass(args.try_get(2)) {
                Ok(pass) => self.reply_with(key, |r| r.bulk(pass.as_bytes())),
                Err(e) => self.reply_error(key, &e),
            },
            "acl|log" => match commands::parse_log(args.try_get(2)) {
                Ok(LogRequest::Reset) => {
                    self.shared.acl_log.lock().expect("acl log lock").clear();
                    self.reply_with(key, |r| r.ok());
                }
                Ok(LogRequest::Show(count)) => {
                    let shared = Arc::clone(&self.shared);
                    let log = shared.acl_log.lock().expect("acl log lock");
                    self.reply_with(key, |r| commands::write_log(r, &log, count, unix_ms()));
                }
                Err(e) => self.reply_error(key, e),
            },
            "acl|dryrun" => match commands::dryrun(&acl, args) {
                Ok(None) => self.reply_with(key, |r| r.ok()),
                Ok(Some(why)) => self.reply_with(key, |r| r.bulk(why.as_bytes())),
                Err(e) => self.reply_error(key, &e),
            },
            _ => self.reply_with(key, |r| commands::write_help(r, commands::HELP)),
        }
    }

    /// ACL SETUSER: the rules go to the control group, passwords as hashes.
    fn set_user(&mut self, key: usize, name: &[u8], ops: Vec<Vec<u8>>) {
        let rules = commands::hash_passwords(ops);
        match users::set_user(&self.shared.database, name, rules) {
            Ok(change) => self.control_write(key, change),
            Err(e) => self.reply_error(key, e),
        }
    }

    /// ACL DELUSER: the names go to the control group; the reply is how many it deleted.
    fn delete_users(&mut self, key: usize, names: &[&[u8]]) {
        let change = users::delete_users(&self.shared.database, names);
        self.control_write(key, change);
    }

    /// Makes a change through the control API on a thread of its own; client `key`'s reply
    /// is posted back to this worker once this proxy has the configuration the change made.
    fn control_write(&mut self, key: usize, change: users::Change) {
        let to = self.expect_one(key);
        self.clients[key].acl_pending = true;
        let shared = Arc::clone(&self.shared);
        let worker = self.index;
        let spawned = std::thread::Builder::new()
            .name("proxy-acl".into())
            .spawn(move || {
                let answer = change.run(&shared.control, shared.token.as_deref());
                if let Some(epoch) = answer.epoch {
                    shared.wait_for_epoch(epoch, SEEN_WITHIN);
                }
                let frame = answer.frame;
                shared.post(worker, Mail::AclAnswer { to, frame });
            });
        if let Err(e) = spawned {
            let frame = users::error_frame(&format!("cannot reach the control group: {e}"));
            self.acl_answer(to, &frame);
        }
    }
}

impl Worker {
    /// The answer to an ACL change, for the client that made it.
    pub(crate) fn acl_answer(&mut self, to: To, frame: &[u8]) {
        if let To::Client { key, id, .. } = to
            && let Some(c) = self.clients.get_mut(key)
            && c.id == id
        {
            c.acl_pending = false;
        }
        self.deliver(to, frame);
    }
}

impl Shared {
    /// Waits (on a helper thread) until this proxy holds configuration `epoch` or `within`
    /// has passed.
    fn wait_for_epoch(&self, epoch: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.epoch() < epoch && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
