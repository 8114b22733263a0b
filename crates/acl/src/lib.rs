//! Users and permissions, as Redis 7.0's ACL: users with SHA-256 password hashes and
//! selectors, the permission check run before every command (scripts' commands included), the
//! ACL log, and the ACL file. `requirepass` is the default user's password.
//!
//! Shared by the shard (`tessera_server::commands::acl`: the verify step, `AUTH`, `ACL ...`,
//! killing the clients of a deleted user), the proxy (the database's users from the cluster
//! configuration) and the control group (which applies `ACL SETUSER` rules to the stored users).
//! Everything here is deterministic but `ACL GENPASS`: the same rules give the same users on
//! every member. Depends on the protocol crate's command table only.

pub mod commands;
pub mod internal;
pub mod selector;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use sha2::{Digest, Sha256};
use tessera_protocol::Args;
use tessera_protocol::command::{CommandSpec, key_spec_flag};
use tessera_protocol::glob;

use selector::{READ, WRITE};
pub use selector::{RuleError, Selector};

/// A user's index in `Acl::users`; the default user is always 0.
pub type UserId = usize;
pub const DEFAULT_USER: UserId = 0;
/// The user of internal connections (`internal`): every command, key and channel. It is no
/// user of the list: ACL LIST, GETUSER and DELUSER never see it.
pub const INTERNAL_USER: UserId = UserId::MAX;

const ON: u8 = 1;
const OFF: u8 = 2;
const NOPASS: u8 = 4;
const SKIP_SANITIZE: u8 = 8;
const SANITIZE: u8 = 16;
/// User flags in the order Redis describes them.
const FLAG_NAMES: [(&str, u8); 5] = [
    ("on", ON),
    ("off", OFF),
    ("nopass", NOPASS),
    ("skip-sanitize-payload", SKIP_SANITIZE),
    ("sanitize-payload", SANITIZE),
];

/// One user: flags, password hashes (lowercase hex SHA-256) and selectors, the root first.
#[derive(Clone, Debug)]
pub struct User {
    pub name: Vec<u8>,
    flags: u8,
    pub passwords: Vec<String>,
    pub selectors: Vec<Selector>,
    /// Every command, key and channel: the check can be skipped.
    unrestricted: bool,
}

/// Why a command was refused, with the argument at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

impl Denied {
    /// Redis's `ACL_DENIED_*` order: the error reported is the highest of all selectors'.
    fn rank(self) -> (u8, usize) {
        match self {
            Denied::Command => (1, 0),
            Denied::Key(i) => (2, i),
            Denied::Channel(i) => (4, i),
        }
    }
}

pub fn hash_password(pass: &[u8]) -> String {
    to_hex(&Sha256::digest(pass))
}

/// Lowercase hex digits.
fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(2 * bytes.len());
    for b in bytes {
        hex.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
        hex.push(char::from_digit(u32::from(b & 15), 16).expect("nibble"));
    }
    hex
}

/// The password hash a rule names: `>pass` and `<pass` hash the clear text, `#hash` and
/// `!hash` give it (64 lowercase hex digits).
fn rule_hash(op: &[u8]) -> Result<String, RuleError> {
    let text = &op[1..];
    match op[0] {
        b'>' | b'<' => Ok(hash_password(text)),
        _ if valid_hash(text) => Ok(String::from_utf8_lossy(text).into_owned()),
        _ => Err(RuleError::BadHash),
    }
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64 && h.iter().all(|&c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares without an early exit, so timing tells nothing of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True if a user name or pattern has a space or a NUL (Redis's `ACLStringHasSpaces`).
pub fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&b| b.is_ascii_whitespace() || b == 0 || b == 0x0b)
}

impl User {
    fn new(name: &[u8], all_channels: bool) -> User {
        User {
            name: name.to_vec(),
            flags: OFF,
            passwords: Vec::new(),
            selectors: vec![Selector::new(true, all_channels)],
            unrestricted: false,
        }
    }

    /// The internal connections' user ([`INTERNAL_USER`]), named as CLIENT LIST shows it.
    fn internal() -> User {
        let mut u = User::new(b"(internal)", true);
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            u.apply(op.as_bytes(), true)
                .expect("the internal user's rules are valid");
        }
        u
    }

    /// Redis's default user: on, no password, every command, key and channel.
    fn default_user(all_channels: bool) -> User {
        let mut u = User::new(b"default", all_channels);
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            u.apply(op.as_bytes(), all_channels)
                .expect("the default user's rules are valid");
        }
        u
    }

    pub fn enabled(&self) -> bool {
        self.flags & ON != 0
    }

    /// Every command, key and channel is allowed: nothing needs checking.
    #[inline]
    pub fn unrestricted(&self) -> bool {
        self.unrestricted
    }

    /// Whether a client of this user may keep these subscriptions after its rules changed
    /// (Redis's `ACLKillPubsubClientsIfNeeded`): channels and shard channels must match a
    /// channel pattern of some selector, patterns must be one of them literally.
    pub fn allows_subscriptions<'a>(
        &self,
        channels: impl IntoIterator<Item = &'a [u8]>,
        patterns: impl IntoIterator<Item = &'a [u8]>,
    ) -> bool {
        if self.selectors.iter().any(|s| s.all_channels) {
            return true;
        }
        let allowed: Vec<&[u8]> = self
            .selectors
            .iter()
            .flat_map(|s| s.channels.iter().map(Vec::as_slice))
            .collect();
        patterns.into_iter().all(|p| allowed.contains(&p))
            && channels
                .into_iter()
                .all(|ch| allowed.iter().any(|p| glob::matches(p, ch, false)))
    }

    /// True when this user allows every channel the other allowed (nobody needs to lose a
    /// subscription).
    pub fn keeps_channels_of(&self, old: &User) -> bool {
        if self.selectors.iter().any(|s| s.all_channels) {
            return true;
        }
        let allowed: Vec<&Vec<u8>> = self.selectors.iter().flat_map(|s| &s.channels).collect();
        !old.selectors.iter().any(|s| s.all_channels)
            && old
                .selectors
                .iter()
                .flat_map(|s| &s.channels)
                .all(|c| allowed.contains(&c))
    }

    pub fn nopass(&self) -> bool {
        self.flags & NOPASS != 0
    }

    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FLAG_NAMES
            .iter()
            .filter(|(_, f)| self.flags & f != 0)
            .map(|(n, _)| *n)
    }

    /// Applies one rule (Redis's `ACLSetUser`). `all_channels`: `acl-pubsub-default`.
    pub fn apply(&mut self, op: &[u8], all_channels: bool) -> Result<(), RuleError> {
        let result = self.apply_rule(op, all_channels);
        self.unrestricted = self
            .selectors
            .iter()
            .any(|s| s.all_commands && s.all_keys && s.all_channels);
        result
    }

    fn apply_rule(&mut self, op: &[u8], all_channels: bool) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if op.is_empty() {
            return Ok(());
        }
        if is("on") {
            self.flags = self.flags & !OFF | ON;
        } else if is("off") {
            self.flags = self.flags & !ON | OFF;
        } else if is("skip-sanitize-payload") {
            self.flags = self.flags & !SANITIZE | SKIP_SANITIZE;
        } else if is("sanitize-payload") {
            self.flags = self.flags & !SKIP_SANITIZE | SANITIZE;
        } else if is("nopass") {
            self.flags |= NOPASS;
            self.passwords.clear();
        } else if is("resetpass") {
            self.flags &= !NOPASS;
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let hash = rule_hash(op)?;
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.flags &= !NOPASS;
        } else if op[0] == b'<' || op[0] == b'!' {
            let hash = rule_hash(op)?;
            let pos = self
                .passwords
                .iter()
                .position(|p| *p == hash)
                .ok_or(RuleError::NoSuchPassword)?;
            self.passwords.remove(pos);
        } else if op[0] == b'(' && op[op.len() - 1] == b')' {
            let mut s = Selector::new(false, all_channels);
            let inner = &op[1..op.len() - 1];
            // (Unbalanced quotes inside give an empty selector, as in Redis.)
            for rule in tessera_protocol::parse::split_line(inner).unwrap_or_default() {
                s.apply(&rule)?;
            }
            self.selectors.push(s);
        } else if is("clearselectors") {
            self.selectors.truncate(1);
        } else if is("reset") {
            for op in [
                "resetpass",
                "resetkeys",
                "resetchannels",
                "off",
                "sanitize-payload",
                "clearselectors",
                "-@all",
            ] {
                self.apply_rule(op.as_bytes(), all_channels)?;
                if op == "resetchannels" && all_channels {
                    self.apply_rule(b"allchannels", all_channels)?;
                }
            }
        } else {
            self.selectors[0].apply(op)?;
        }
        Ok(())
    }

    /// `user <name> <rules>`, a line of `ACL LIST` and of the ACL file.
    pub fn line(&self) -> Vec<u8> {
        let mut line = b"user ".to_vec();
        line.extend_from_slice(&self.name);
        line.push(b' ');
        line.extend_from_slice(&self.describe());
        line
    }

    /// The user's rules, as `ACL LIST` and the ACL file give them (Redis's `ACLDescribeUser`).
    pub fn describe(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for name in self.flag_names() {
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
        }
        for p in &self.passwords {
            out.push(b'#');
            out.extend_from_slice(p.as_bytes());
            out.push(b' ');
        }
        for s in &self.selectors {
            if s.root {
                out.extend_from_slice(&s.describe());
            } else {
                out.extend_from_slice(b" (");
                out.extend_from_slice(&s.describe());
                out.push(b')');
            }
        }
        out
    }

    /// Whether the password opens this user (a disabled user opens to none).
    fn opens_with(&self, pass: &[u8]) -> bool {
        if !self.enabled() {
            return false;
        }
        if self.nopass() {
            return true;
        }
        let hash = hash_password(pass);
        // Every hash is compared, so timing does not tell which one matched.
        self.passwords.iter().fold(false, |ok, p| {
            same_secret(p.as_bytes(), hash.as_bytes()) | ok
        })
    }

    /// May this user run the command `spec` (number `id`) with `args`? Some selector must allow
    /// the command, its keys and its channels (Redis's `ACLCheckAllUserCommandPerm`).
    #[inline]
    pub fn check(
        &self,
        id: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
    ) -> Result<(), Denied> {
        if self.unrestricted {
            return Ok(());
        }
        self.check_selectors(id, spec, args)
    }

    /// SORT and SORT_RO: Redis's error for a BY pattern or GET option, which read keys the
    /// command does not name, when this user may not read every key; `None` when it may run.
    pub fn sort_refusal(
        &self,
        spec: &'static CommandSpec,
        args: &Args<'_>,
    ) -> Option<&'static str> {
        if self.unrestricted || self.reads_every_key(selector::universe().id(spec), spec, args) {
            return None;
        }
        commands::sort_denial(args, spec.name == "sort_ro")
    }

    /// Whether some selector allows this command and reading every key (Redis's
    /// `ACLUserCheckCmdWithUnrestrictedKeyAccess` with `CMD_KEY_ACCESS`).
    fn reads_every_key(&self, id: usize, spec: &'static CommandSpec, args: &Args<'_>) -> bool {
        let mut keys = None;
        self.selectors.iter().any(|s| {
            check_selector(s, id, spec, args, &mut keys).is_ok()
                && (s.all_keys
                    || s.patterns
                        .iter()
                        .any(|(f, p)| f & READ == READ && p.as_slice() == b"*"))
        })
    }

    fn check_selectors(
        &self,
        id: usize,
        spec: &'static CommandSpec,
        args: &Args<'_>,
    ) -> Result<(), Denied> {
        let mut keys: Option<Vec<(usize, u8)>> = None;
        let mut worst = Denied::Command;
        for s in &self.selectors {
            match check_selector(s, id, spec, args, &mut keys) {
                Ok(()) => return Ok(()),
                Err(d) => {
                    if d.rank() > worst.rank() {
                        worst = d;
                    }
                }
            }
        }
        Err(worst)
    }
}

/// The keys of a request with the permissions each needs (`READ` for access, `WRITE` for
/// insert, update and delete).
fn key_needs(spec: &'static CommandSpec, args: &Args<'_>) -> Vec<(usize, u8)> {
    use key_spec_flag::{ACCESS, DELETE, INSERT, NOT_KEY, UPDATE};
    let Ok(positions) = spec.key_positions(args) else {
        return Vec::new();
    };
    positions
        .into_iter()
        .filter(|&(_, ks)| spec.key_specs[ks].flags & NOT_KEY == 0)
        .map(|(pos, ks)| {
            let flags = spec.key_flags(args, ks);
            let mut need = 0;
            if flags & ACCESS != 0 {
                need |= READ;
            }
            if flags & (INSERT | DELETE | UPDATE) != 0 {
                need |= WRITE;
            }
            (pos, need)
        })
        .collect()
}

fn check_selector(
    s: &Selector,
    id: usize,
    spec: &'static CommandSpec,
    args: &Args<'_>,
    keys: &mut Option<Vec<(usize, u8)>>,
) -> Result<(), Denied> {
    use tessera_protocol::command::flag;
    if !s.all_commands && !spec.has(flag::NO_AUTH) && !s.bit(id) {
        // The command may still be allowed with this first argument (`+select|0`).
        let arg_idx = if spec.name.contains('|') { 2 } else { 1 };
        let allowed = s.first_args(id).is_some_and(|list| {
            args.try_get(arg_idx)
                .is_some_and(|a| list.iter().any(|f| f.eq_ignore_ascii_case(a)))
        });
        if !allowed {
            return Err(Denied::Command);
        }
    }
    if !s.all_keys && !spec.key_specs.is_empty() {
        let keys = keys.get_or_insert_with(|| key_needs(spec, args));
        for &(pos, need) in keys.iter() {
            let key = args.get(pos);
            let ok = s
                .patterns
                .iter()
                .any(|(f, p)| f & need == need && glob::matches(p, key, false));
            if !ok {
                return Err(Denied::Key(pos));
            }
        }
    }
    if !s.all_channels {
        let (range, literal) = match spec.name {
            "publish" | "spublish" => (1..2.min(args.len()), false),
            "subscribe" | "ssubscribe" => (1..args.len(), false),
            "psubscribe" => (1..args.len(), true),
            _ => (0..0, false),
        };
        for pos in range {
            if !channel_allowed(&s.channels, args.get(pos), literal) {
                return Err(Denied::Channel(pos));
            }
        }
    }
    Ok(())
}

/// A channel against patterns: by glob, or (for a PSUBSCRIBE pattern) literally.
fn channel_allowed(patterns: &[Vec<u8>], channel: &[u8], literal: bool) -> bool {
    patterns.iter().any(|p| {
        if literal {
            p == channel
        } else {
            glob::matches(p, channel, false)
        }
    })
}

/// Why an ACL log entry was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Command,
    Key,
    Channel,
    Auth,
}

/// Where the refused command ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Toplevel,
    Multi,
    Lua,
}

/// One entry of `ACL LOG`; similar events within a minute are counted on one entry.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub count: u64,
    pub reason: Reason,
    pub context: Context,
    pub object: Vec<u8>,
    pub username: Vec<u8>,
    pub ctime_ms: i64,
    pub client_info: String,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Toplevel => "toplevel",
            Context::Multi => "multi",
            Context::Lua => "lua",
        }
    }
}

/// Every user, the log, and `acl-pubsub-default`.
pub struct Acl {
    users: Vec<Option<User>>,
    names: BTreeMap<Vec<u8>, UserId>,
    pub log: VecDeque<LogEntry>,
    /// `acl-pubsub-default allchannels`: new users and selectors start with every channel.
    pub all_channels: bool,
    /// The default user has a password or is off: new connections must authenticate.
    auth_required: bool,
    /// [`INTERNAL_USER`].
    internal: User,
    /// The secret internal connections authenticate with; none outside a cluster.
    internal_secret: Option<String>,
}

impl Acl {
    pub fn new(requirepass: Option<&str>, all_channels: bool) -> Acl {
        let mut acl = Acl {
            users: vec![Some(User::default_user(all_channels))],
            names: BTreeMap::from([(b"default".to_vec(), DEFAULT_USER)]),
            log: VecDeque::new(),
            all_channels,
            auth_required: false,
            internal: User::internal(),
            internal_secret: None,
        };
        acl.set_requirepass(requirepass);
        acl
    }

    pub fn user(&self, id: UserId) -> &User {
        if id == INTERNAL_USER {
            return &self.internal;
        }
        match self.users.get(id) {
            Some(Some(u)) => u,
            _ => self.users[DEFAULT_USER]
                .as_ref()
                .expect("the default user exists"),
        }
    }

    pub fn id_of(&self, name: &[u8]) -> Option<UserId> {
        self.names.get(name).copied()
    }

    /// Users in name order.
    pub fn users(&self) -> impl Iterator<Item = (UserId, &User)> + '_ {
        self.names.values().map(|&id| (id, self.user(id)))
    }

    /// New connections start unauthenticated (Redis's `authRequired`).
    #[inline]
    pub fn auth_required(&self) -> bool {
        self.auth_required
    }

    fn refresh(&mut self) {
        let d = self.user(DEFAULT_USER);
        self.auth_required = !d.nopass() || !d.enabled();
    }

    /// `requirepass`: the default user's only password, or no password.
    pub fn set_requirepass(&mut self, pass: Option<&str>) {
        let all = self.all_channels;
        let d = self.users[DEFAULT_USER]
            .as_mut()
            .expect("the default user exists");
        let _ = d.apply(b"resetpass", all);
        match pass {
            Some(p) => {
                let _ = d.apply(format!(">{p}").as_bytes(), all);
            }
            None => {
                let _ = d.apply(b"nopass", all);
            }
        }
        self.refresh();
    }

    /// Lets internal connections in with `secret` (`internal::secret`), or nobody (`None`).
    pub fn set_internal_secret(&mut self, secret: Option<String>) {
        self.internal_secret = secret;
    }

    pub fn internal_secret(&self) -> Option<&str> {
        self.internal_secret.as_deref()
    }

    /// True when `pass` is the internal connections' secret.
    pub fn opens_internal(&self, pass: &[u8]) -> bool {
        self.internal_secret
            .as_ref()
            .is_some_and(|s| same_secret(s.as_bytes(), pass))
    }

    /// The user these credentials open, if any (Redis's `ACLCheckUserCredentials`).
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<UserId> {
        let id = self.id_of(name)?;
        self.user(id).opens_with(pass).then_some(id)
    }

    /// A database's users as the cluster configuration keeps them (`docs/CLUSTER.md`, "Users"):
    /// the default user opened by `requirepass` (or by none), then every `user <name> <rules>`
    /// line, each of which describes its user entirely, the default one included. Channels
    /// start closed (`acl-pubsub-default resetchannels`, Redis 7's default).
    pub fn from_lines(requirepass: Option<&str>, lines: &[String]) -> Result<Acl, String> {
        let mut acl = Acl::new(requirepass, false);
        for line in lines {
            let argv: Vec<&[u8]> = line.as_bytes().split(|&b| b == b' ').collect();
            if argv.len() < 2 || argv[0] != b"user" || has_spaces(argv[1]) {
                return Err(format!("not a user line: {line:?}"));
            }
            let ops: Vec<Vec<u8>> = argv[2..].iter().map(|a| a.to_vec()).collect();
            let ops = merge_selectors(&ops)
                .map_err(|_| format!("unmatched parenthesis in a selector of {line:?}"))?;
            acl.put_user(argv[1], &ops, true)?;
        }
        Ok(acl)
    }

    /// The lines [`Acl::from_lines`] rebuilds these users from: every user but a default one
    /// that `requirepass` alone describes, in name order.
    pub fn to_lines(&self, requirepass: Option<&str>) -> Vec<String> {
        let plain_default = Acl::new(requirepass, self.all_channels)
            .user(DEFAULT_USER)
            .line();
        self.users()
            .filter(|&(id, u)| id != DEFAULT_USER || u.line() != plain_default)
            .map(|(_, u)| String::from_utf8_lossy(&u.line()).into_owned())
            .collect()
    }

    /// `ACL SETUSER`: applies every rule to a copy and keeps it only if all are valid. Returns
    /// the user's id and, for an existing user, its rules before the change.
    pub fn set_user(
        &mut self,
        name: &[u8],
        ops: &[Vec<u8>],
    ) -> Result<(UserId, Option<User>), String> {
        self.put_user(name, ops, false)
    }

    /// [`Acl::set_user`], from a new user's rules with `fresh` (the rules describe it whole).
    fn put_user(
        &mut self,
        name: &[u8],
        ops: &[Vec<u8>],
        fresh: bool,
    ) -> Result<(UserId, Option<User>), String> {
        let existing = self.id_of(name);
        let mut user = match existing {
            Some(id) if !fresh => self.user(id).clone(),
            _ => User::new(name, self.all_channels),
        };
        for op in ops {
            user.apply(op, self.all_channels).map_err(|e| {
                format!(
                    "ERR Error in ACL SETUSER modifier '{}': {}",
                    String::from_utf8_lossy(op),
                    e.text()
                )
            })?;
        }
        let (id, old) = match existing {
            Some(id) => (id, self.users[id].replace(user)),
            None => {
                let id = match self.users.iter().position(Option::is_none) {
                    Some(free) => free,
                    None => {
                        self.users.push(None);
                        self.users.len() - 1
                    }
                };
                self.users[id] = Some(user);
                self.names.insert(name.to_vec(), id);
                (id, None)
            }
        };
        self.refresh();
        Ok((id, old))
    }

    /// Takes every user of `other` (a database's users from the cluster configuration),
    /// keeping this one's log and internal secret. Ids are `other`'s: find clients' users again
    /// by name.
    pub fn take_users_of(&mut self, other: Acl) {
        self.users = other.users;
        self.names = other.names;
        self.refresh();
    }

    /// Removes a user (never the default one); its id may be reused.
    pub fn remove_user(&mut self, name: &[u8]) -> Option<UserId> {
        let id = self.names.remove(name)?;
        self.users[id] = None;
        Some(id)
    }

    /// Adds an entry to the log (see [`log_event`]).
    pub fn log_event(&mut self, entry: LogEntry, max_len: usize) {
        log_event(&mut self.log, entry, max_len);
    }

    /// The ACL file's text: one `user <name> <rules>` line per user, in name order.
    pub fn file_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (_, u) in self.users() {
            out.extend_from_slice(&u.line());
            out.push(b'\n');
        }
        out
    }

    /// `ACL LOAD` and startup: replaces every user with the file's, or changes nothing and
    /// returns every error found (Redis's `ACLLoadFromFile`). On success the ids of the users
    /// replaced (all but the default one, whose rules are updated in place) are returned.
    pub fn load_file(&mut self, path: &Path) -> Result<Vec<UserId>, String> {
        let fname = path.display();
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "Error loading ACLs, opening file '{fname}': {}",
                strerror(&e)
            )
        })?;
        self.load_text(&text, &fname.to_string())
    }

    /// Replaces every user with those of `text`, lines in the ACL file's format, as
    /// [`Acl::load_file`] does; `fname` names the source in errors.
    pub fn load_text(&mut self, text: &[u8], fname: &str) -> Result<Vec<UserId>, String> {
        let mut errors = String::new();
        let mut users: BTreeMap<Vec<u8>, User> = BTreeMap::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let linenum = i + 1;
            let line = trim(line, b" \t\r\n");
            if line.is_empty() {
                continue;
            }
            let argv: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            if argv[0] != b"user" || argv.len() < 2 {
                errors.push_str(&format!(
                    "{fname}:{linenum} should start with user keyword followed by the username. "
                ));
                continue;
            }
            let name = argv[1];
            if has_spaces(name) {
                errors.push_str(&format!(
                    "'{fname}:{linenum}: username '{}' contains invalid characters. ",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            if users.contains_key(name) {
                errors.push_str(&format!(
                    "WARNING: Duplicate user '{}' found on line {linenum}. ",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            let mut user = User::new(name, self.all_channels);
            let ops: Vec<Vec<u8>> = argv[2..].iter().map(|a| a.to_vec()).collect();
            match merge_selectors(&ops) {
                Ok(ops) => {
                    for op in ops {
                        let op = trim(&op, b"\t\r\n");
                        if let Err(e) = user.apply(op, self.all_channels) {
                            errors.push_str(&format!("{fname}:{linenum}: {}. ", e.text()));
                        }
                    }
                }
                Err(_) => errors.push_str(&format!(
                    "{fname}:{linenum}: Unmatched parenthesis in selector definition."
                )),
            }
            users.insert(name.to_vec(), user);
        }
        if !errors.is_empty() {
            errors.push_str(
                "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
            );
            return Err(errors);
        }
        let default = users
            .remove(&b"default"[..])
            .unwrap_or_else(|| User::default_user(self.all_channels));
        let replaced: Vec<UserId> = self
            .names
            .values()
            .copied()
            .filter(|&id| id != DEFAULT_USER)
            .collect();
        self.users = vec![Some(default)];
        self.names = BTreeMap::from([(b"default".to_vec(), DEFAULT_USER)]);
        for (name, user) in users {
            self.users.push(Some(user));
            self.names.insert(name, self.users.len() - 1);
        }
        self.refresh();
        Ok(replaced)
    }

    /// `ACL SAVE`: writes the users to `path` through a temporary file.
    pub fn save_file(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let result =
            std::fs::write(&tmp, self.file_text()).and_then(|()| std::fs::rename(&tmp, path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Adds an entry to an ACL log, or counts it on a similar recent one (Redis's
/// `addACLLogEntry`); the log keeps `max_len` entries.
pub fn log_event(log: &mut VecDeque<LogEntry>, entry: LogEntry, max_len: usize) {
    const GROUPING_MS: i64 = 60_000;
    let similar = log.iter().take(10).position(|e| {
        e.reason == entry.reason
            && e.context == entry.context
            && (e.ctime_ms - entry.ctime_ms).abs() <= GROUPING_MS
            && e.object == entry.object
            && e.username == entry.username
    });
    match similar.and_then(|i| log.remove(i)) {
        Some(mut e) => {
            e.count += 1;
            e.ctime_ms = entry.ctime_ms;
            e.client_info = entry.client_info;
            log.push_front(e);
        }
        None => {
            log.push_front(entry);
            log.truncate(max_len);
        }
    }
}

/// The C library's text for an I/O error, without Rust's `(os error N)`.
fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn trim<'a>(s: &'a [u8], set: &[u8]) -> &'a [u8] {
    let start = s.iter().position(|b| !set.contains(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !set.contains(b))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Joins a selector given over several arguments (`(+get` `~k*)`) into one, as Redis's
/// `ACLMergeSelectorArguments`; the error is the index where an unclosed selector starts.
pub fn merge_selectors(ops: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, usize> {
    let mut out = Vec::with_capacity(ops.len());
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (i, op) in ops.iter().enumerate() {
        if let Some((_, sel)) = open.as_mut() {
            sel.push(b' ');
            sel.extend_from_slice(op);
            if op.last() == Some(&b')') {
                out.push(open.take().expect("open selector").1);
            }
            continue;
        }
        if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((i, op.clone()));
            continue;
        }
        out.push(op.clone());
    }
    match open {
        Some((i, _)) => Err(i),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_sha256() {
        // `ACL SETUSER u1 >p1` on redis-server 7.0 stores this hash.
        assert_eq!(
            hash_password(b"p1"),
            "f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a"
        );
        let mut acl = Acl::new(Some("secret"), false);
        assert!(acl.auth_required());
        assert_eq!(acl.authenticate(b"default", b"secret"), Some(DEFAULT_USER));
        assert_eq!(acl.authenticate(b"default", b"wrong"), None);
        acl.set_requirepass(None);
        assert!(!acl.auth_required());
    }

    #[test]
    fn setuser_is_all_or_nothing() {
        let mut acl = Acl::new(None, false);
        let ops = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        acl.set_user(b"u", &ops(&["on", ">pw", "+get"])).unwrap();
        let err = acl.set_user(b"u", &ops(&["off", "+nosuch"])).unwrap_err();
        assert_eq!(
            err,
            "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
        );
        let u = acl.user(acl.id_of(b"u").unwrap());
        assert!(u.enabled());
        assert_eq!(
            String::from_utf8(u.describe()).unwrap(),
            format!("on #{} resetchannels -@all +get", hash_password(b"pw"))
        );
    }

    /// The cluster configuration's lines give back the same users, and a default user that
    /// the password alone describes is left out.
    #[test]
    fn users_survive_their_configuration_lines() {
        let ops = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let mut acl = Acl::new(Some("pw"), false);
        assert!(acl.to_lines(Some("pw")).is_empty());
        acl.set_user(
            b"app",
            &ops(&["on", ">s", "~app:*", "+@read", "(+set ~w:*)"]),
        )
        .unwrap();
        acl.set_user(b"off", &ops(&["off"])).unwrap();
        let lines = acl.to_lines(Some("pw"));
        assert_eq!(lines.len(), 2);
        let back = Acl::from_lines(Some("pw"), &lines).unwrap();
        assert_eq!(back.to_lines(Some("pw")), lines);
        assert_eq!(back.file_text(), acl.file_text());
        assert!(back.authenticate(b"app", b"s").is_some());
        assert!(back.authenticate(b"default", b"pw").is_some());
        // A changed default user is kept, whole: its line wins over the password.
        acl.set_user(b"default", &ops(&["resetpass", ">other", "-@all", "+get"]))
            .unwrap();
        let lines = acl.to_lines(Some("pw"));
        assert_eq!(lines.len(), 3);
        let back = Acl::from_lines(Some("pw"), &lines).unwrap();
        assert!(back.authenticate(b"default", b"pw").is_none());
        assert!(back.authenticate(b"default", b"other").is_some());
        assert!(Acl::from_lines(None, &["usr x on".into()]).is_err());
        assert!(Acl::from_lines(None, &["user x +nosuch".into()]).is_err());
    }

    #[test]
    fn merges_selector_arguments() {
        let ops = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            merge_selectors(&ops(&["on", "(+get", "~a)", "(~b)"])).unwrap(),
            ops(&["on", "(+get ~a)", "(~b)"])
        );
        assert_eq!(merge_selectors(&ops(&["on", "(+get", "~a"])), Err(1));
    }
}
