//! ACL selectors: which commands, keys and channels a set of rules allows, the rules that
//! change them (`+get`, `-@write`, `~key*`, `%R~pat`, `&chan`, ...), and the description of a
//! selector in the rule syntax, as Redis 7.0's `acl.c` gives it.
//!
//! Commands are numbered over Redis's whole command table (subcommands included), so that rules
//! and their descriptions mean the same here as in Redis, whichever commands Tessera runs.

use std::collections::HashMap;
use std::sync::OnceLock;

use tessera_protocol::CommandTable;
use tessera_protocol::command::{CommandSpec, REDIS_COMMANDS, acl};

use super::has_spaces;

/// Words of the command bitmap: room for every command and subcommand of Redis 7.0.
const WORDS: usize = 8;

/// Every command and subcommand, numbered: each command is followed by its subcommands.
pub struct Universe {
    pub specs: Vec<&'static CommandSpec>,
    /// The subcommands' ids of each id.
    subs: Vec<Vec<usize>>,
    /// Whether the id is a subcommand.
    is_sub: Vec<bool>,
    /// The top-level commands' ids, in table (name) order.
    top: Vec<usize>,
    by_ptr: HashMap<usize, usize>,
}

pub fn universe() -> &'static Universe {
    static U: OnceLock<Universe> = OnceLock::new();
    U.get_or_init(|| {
        let mut u = Universe {
            specs: Vec::new(),
            subs: Vec::new(),
            is_sub: Vec::new(),
            top: Vec::new(),
            by_ptr: HashMap::new(),
        };
        for cmd in REDIS_COMMANDS {
            let id = u.push(cmd, false);
            u.top.push(id);
            for sub in cmd.subcommands {
                let sid = u.push(sub, true);
                u.subs[id].push(sid);
            }
        }
        assert!(
            u.specs.len() <= WORDS * 64,
            "the ACL command bitmap is too small"
        );
        u
    })
}

impl Universe {
    fn push(&mut self, spec: &'static CommandSpec, is_sub: bool) -> usize {
        let id = self.specs.len();
        self.specs.push(spec);
        self.subs.push(Vec::new());
        self.is_sub.push(is_sub);
        self.by_ptr.insert(spec as *const CommandSpec as usize, id);
        id
    }

    /// The id of a command of the table.
    pub fn id(&self, spec: &'static CommandSpec) -> usize {
        self.by_ptr[&(spec as *const CommandSpec as usize)]
    }

    /// A command by name, `name` or `container|sub`, case-insensitively (Redis's
    /// `ACLLookupCommand`).
    pub fn lookup(&self, name: &[u8]) -> Option<usize> {
        let mut parts = name.split(|&b| b == b'|');
        let base = parts.next()?;
        let sub = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let top = CommandTable::redis().get(base)?;
        match sub {
            None => Some(self.id(top)),
            Some(sub) => Some(self.id(top.subcommand(sub)?)),
        }
    }

    /// Ids in Redis's walk order: each command, then its subcommands.
    fn walk(&self) -> impl Iterator<Item = usize> + '_ {
        self.top
            .iter()
            .flat_map(move |&id| std::iter::once(id).chain(self.subs[id].iter().copied()))
    }
}

/// The categories, in Redis's order (`ACL CAT`, and the order rules are described in).
pub const CATEGORIES: [(&str, u32); 21] = [
    ("keyspace", acl::KEYSPACE),
    ("read", acl::READ),
    ("write", acl::WRITE),
    ("set", acl::SET),
    ("sortedset", acl::SORTEDSET),
    ("list", acl::LIST),
    ("hash", acl::HASH),
    ("string", acl::STRING),
    ("bitmap", acl::BITMAP),
    ("hyperloglog", acl::HYPERLOGLOG),
    ("geo", acl::GEO),
    ("stream", acl::STREAM),
    ("pubsub", acl::PUBSUB),
    ("admin", acl::ADMIN),
    ("fast", acl::FAST),
    ("slow", acl::SLOW),
    ("blocking", acl::BLOCKING),
    ("dangerous", acl::DANGEROUS),
    ("connection", acl::CONNECTION),
    ("transaction", acl::TRANSACTION),
    ("scripting", acl::SCRIPTING),
];

pub fn category(name: &[u8]) -> Option<u32> {
    CATEGORIES
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|&(_, f)| f)
}

/// Why a rule was refused; the texts are Redis's `ACLSetUserStringError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    UnknownCommand,
    Syntax,
    KeysAfterAll,
    ChannelsAfterAll,
    NoSuchPassword,
    BadHash,
    FirstArgOfSubcommand,
}

impl RuleError {
    pub fn text(self) -> &'static str {
        match self {
            RuleError::UnknownCommand => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::KeysAfterAll => {
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
            }
            RuleError::ChannelsAfterAll => {
                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
            }
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => {
                "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
            }
            RuleError::FirstArgOfSubcommand => {
                "Allowing first-arg of a subcommand is not supported"
            }
        }
    }
}

/// Key permission bits of a pattern.
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
const ALL_PERMS: u8 = READ | WRITE;

/// One set of permissions: a user has a root selector and any number of `(...)` selectors; a
/// command runs if one selector allows all of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub root: bool,
    pub all_keys: bool,
    pub all_channels: bool,
    /// Every command (`+@all` with nothing taken away since).
    pub all_commands: bool,
    /// `+@all` was the base: future commands are allowed too (Redis's reserved bit).
    future: bool,
    allowed: [u64; WORDS],
    /// Arguments allowed for a command that is otherwise denied (`+select|0`), by id.
    first_args: Vec<(usize, Vec<Vec<u8>>)>,
    /// Key patterns with their `READ`/`WRITE` bits, in the order given.
    pub patterns: Vec<(u8, Vec<u8>)>,
    pub channels: Vec<Vec<u8>>,
}

impl Selector {
    pub fn new(root: bool, all_channels: bool) -> Selector {
        Selector {
            root,
            all_channels,
            ..Selector::default()
        }
    }

    pub fn bit(&self, id: usize) -> bool {
        self.allowed[id / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: usize, on: bool) {
        if on {
            self.allowed[id / 64] |= 1 << (id % 64);
        } else {
            self.allowed[id / 64] &= !(1 << (id % 64));
            self.all_commands = false;
        }
    }

    /// Allows or denies a command, and with a container all its subcommands.
    fn change(&mut self, id: usize, allow: bool) {
        let u = universe();
        self.set_bit(id, allow);
        self.first_args.retain(|(i, _)| *i != id);
        for &sub in &u.subs[id] {
            self.set_bit(sub, allow);
        }
    }

    fn set_category(&mut self, flag: u32, allow: bool) {
        let u = universe();
        for id in u.walk() {
            if u.specs[id].acl_categories & flag != 0 {
                self.change(id, allow);
            }
        }
    }

    fn count_category(&self, flag: u32) -> (usize, usize) {
        let u = universe();
        let (mut on, mut off) = (0, 0);
        for id in u.walk() {
            if u.specs[id].acl_categories & flag != 0 {
                if self.bit(id) {
                    on += 1;
                } else {
                    off += 1;
                }
            }
        }
        (on, off)
    }

    fn all(&mut self, allow: bool) {
        self.allowed = if allow { [u64::MAX; WORDS] } else { [0; WORDS] };
        self.all_commands = allow;
        self.future = allow;
        self.first_args.clear();
    }

    /// The arguments allowed for an otherwise denied command.
    pub fn first_args(&self, id: usize) -> Option<&[Vec<u8>]> {
        self.first_args
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| &a[..])
    }

    /// Applies one rule (Redis's `ACLSetSelector`).
    pub fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if op.is_empty() {
            return Err(RuleError::Syntax);
        }
        if is("allkeys") || is("~*") {
            self.all_keys = true;
            self.patterns.clear();
        } else if is("resetkeys") {
            self.all_keys = false;
            self.patterns.clear();
        } else if is("allchannels") || is("&*") {
            self.all_channels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.all_channels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.all(true);
        } else if is("nocommands") || is("-@all") {
            self.all(false);
        } else if op[0] == b'~' || op[0] == b'%' {
            if self.all_keys {
                return Err(RuleError::KeysAfterAll);
            }
            let (flags, pattern) = if op[0] == b'%' {
                // (`%RW` without `~` is the empty pattern, as in Redis.)
                let mut flags = 0;
                let mut offset = 1;
                while offset < op.len() {
                    match op[offset].to_ascii_uppercase() {
                        b'R' if flags & READ == 0 => flags |= READ,
                        b'W' if flags & WRITE == 0 => flags |= WRITE,
                        b'~' => {
                            offset += 1;
                            break;
                        }
                        _ => return Err(RuleError::Syntax),
                    }
                    offset += 1;
                }
                if flags == 0 {
                    return Err(RuleError::Syntax);
                }
                (flags, &op[offset..])
            } else {
                (ALL_PERMS, &op[1..])
            };
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            match self.patterns.iter_mut().find(|(_, p)| p == pattern) {
                Some((f, _)) => *f |= flags,
                None => self.patterns.push((flags, pattern.to_vec())),
            }
            self.all_keys = false;
        } else if op[0] == b'&' {
            if self.all_channels {
                return Err(RuleError::ChannelsAfterAll);
            }
            let pattern = &op[1..];
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pattern) {
                self.channels.push(pattern.to_vec());
            }
            self.all_channels = false;
        } else if (op[0] == b'+' || op[0] == b'-') && op.get(1) == Some(&b'@') {
            let flag = category(&op[2..]).ok_or(RuleError::UnknownCommand)?;
            self.set_category(flag, op[0] == b'+');
        } else if op[0] == b'+' {
            self.allow_command(&op[1..])?;
        } else if op[0] == b'-' {
            let id = universe()
                .lookup(&op[1..])
                .ok_or(RuleError::UnknownCommand)?;
            self.change(id, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    /// `+command`, `+container|sub`, or `+command|first-arg`.
    fn allow_command(&mut self, name: &[u8]) -> Result<(), RuleError> {
        let u = universe();
        let Some(bar) = name.iter().rposition(|&b| b == b'|') else {
            let id = u.lookup(name).ok_or(RuleError::UnknownCommand)?;
            self.change(id, true);
            return Ok(());
        };
        let (base, sub) = (&name[..bar], &name[bar + 1..]);
        let id = u.lookup(base).ok_or(RuleError::UnknownCommand)?;
        if u.is_sub[id] {
            return Err(RuleError::FirstArgOfSubcommand);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if u.specs[id].is_container() {
            let sid = u.lookup(name).ok_or(RuleError::UnknownCommand)?;
            self.change(sid, true);
        } else {
            tracing::warn!(
                "Deprecation warning: Allowing a first arg of an otherwise blocked command is a misuse of ACL and may get disabled in the future (offender: +{})",
                String::from_utf8_lossy(name)
            );
            let args = match self.first_args.iter_mut().find(|(i, _)| *i == id) {
                Some((_, args)) => args,
                None => {
                    self.first_args.push((id, Vec::new()));
                    &mut self.first_args.last_mut().expect("just pushed").1
                }
            };
            if !args.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                args.push(sub.to_vec());
            }
        }
        Ok(())
    }

    /// The command rules that rebuild this selector's bitmap: `+@all` or `-@all`, the best
    /// fitting categories, then single commands (Redis's `ACLDescribeSelectorCommandRules`).
    pub fn describe_commands(&self) -> String {
        let u = universe();
        let additive = !self.future;
        let mut rules = String::from(if additive { "-@all " } else { "+@all " });
        let mut fake = Selector::default();
        fake.all(!additive);
        let mut temp = Selector {
            allowed: self.allowed,
            ..Selector::default()
        };
        let mut applied = [false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut min_diff, mut max_same) = (usize::MAX, 0);
            for (j, &(_, flag)) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = temp.count_category(flag);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < min_diff || (diff == min_diff && same > max_same)) {
                    best = Some(j);
                    min_diff = diff;
                    max_same = same;
                }
            }
            let Some(j) = best else { break };
            let (name, flag) = CATEGORIES[j];
            fake.set_category(flag, additive);
            temp.set_category(flag, !additive);
            rules.push_str(if additive { "+@" } else { "-@" });
            rules.push_str(name);
            rules.push(' ');
            applied[j] = true;
        }
        for &top in &u.top {
            for id in std::iter::once(top).chain(u.subs[top].iter().copied()) {
                let mine = self.bit(id);
                if mine != fake.bit(id) {
                    rules.push(if mine { '+' } else { '-' });
                    rules.push_str(u.specs[id].name);
                    rules.push(' ');
                    fake.change(id, mine);
                }
                if !mine && let Some(args) = self.first_args(id) {
                    for a in args {
                        rules.push('+');
                        rules.push_str(u.specs[id].name);
                        rules.push('|');
                        rules.push_str(&String::from_utf8_lossy(a));
                        rules.push(' ');
                    }
                }
            }
        }
        rules.pop();
        rules
    }

    /// Keys, channels and commands in rule syntax (Redis's `ACLDescribeSelector`).
    pub fn describe(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.all_keys {
            out.extend_from_slice(b"~* ");
        } else {
            for (flags, p) in &self.patterns {
                out.extend_from_slice(pattern_prefix(*flags));
                out.extend_from_slice(p);
                out.push(b' ');
            }
        }
        if self.all_channels {
            out.extend_from_slice(b"&* ");
        } else {
            out.extend_from_slice(b"resetchannels ");
            for c in &self.channels {
                out.push(b'&');
                out.extend_from_slice(c);
                out.push(b' ');
            }
        }
        out.extend_from_slice(self.describe_commands().as_bytes());
        out
    }

    /// The key patterns as `ACL GETUSER` shows them.
    pub fn describe_keys(&self) -> Vec<u8> {
        if self.all_keys {
            return b"~*".to_vec();
        }
        let mut out = Vec::new();
        for (i, (flags, p)) in self.patterns.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(pattern_prefix(*flags));
            out.extend_from_slice(p);
        }
        out
    }

    /// The channel patterns as `ACL GETUSER` shows them.
    pub fn describe_channels(&self) -> Vec<u8> {
        if self.all_channels {
            return b"&*".to_vec();
        }
        let mut out = Vec::new();
        for (i, c) in self.channels.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.push(b'&');
            out.extend_from_slice(c);
        }
        out
    }
}

fn pattern_prefix(flags: u8) -> &'static [u8] {
    match flags {
        READ => b"%R~",
        WRITE => b"%W~",
        _ => b"~",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(ops: &[&str]) -> String {
        let mut s = Selector::new(true, false);
        for op in ops {
            s.apply(op.as_bytes()).unwrap();
        }
        String::from_utf8(s.describe()).unwrap()
    }

    #[test]
    fn describes_like_redis() {
        // Expected texts from ACL LIST on redis-server 7.0.15.
        assert_eq!(
            rules(&["+@read", "+@write", "~k*", "&ch*"]),
            "~k* resetchannels &ch* -@all +@write +@read"
        );
        assert_eq!(
            rules(&["+get", "+set", "%R~r*", "%W~w*"]),
            "%R~r* %W~w* resetchannels -@all +get +set"
        );
        assert_eq!(
            rules(&["+@all", "-@dangerous", "-get", "+select|0"]),
            "resetchannels +@all -@dangerous -get"
        );
        assert_eq!(
            rules(&["allkeys", "allchannels", "allcommands"]),
            "~* &* +@all"
        );
    }

    #[test]
    fn refuses_malformed_rules() {
        let mut s = Selector::new(true, false);
        for (op, err) in [
            ("+nosuch", RuleError::UnknownCommand),
            ("-@nosuch", RuleError::UnknownCommand),
            ("+config|get|x", RuleError::FirstArgOfSubcommand),
            ("+select|", RuleError::Syntax),
            ("%X~a", RuleError::Syntax),
            ("%~a", RuleError::Syntax),
            ("%RR~a", RuleError::Syntax),
            ("~a b", RuleError::Syntax),
            ("whatever", RuleError::Syntax),
        ] {
            assert_eq!(s.apply(op.as_bytes()), Err(err), "{op}");
        }
        s.apply(b"allkeys").unwrap();
        assert_eq!(s.apply(b"~a"), Err(RuleError::KeysAfterAll));
    }
}
