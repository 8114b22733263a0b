//! The command table: one entry per Redis command, generated from Redis's own metadata, and the
//! checks and key extraction that read it. The shard's dispatch, `COMMAND`, and the proxy's
//! routing all use this one table.

mod generated;
mod spec;

use std::collections::HashMap;
use std::sync::OnceLock;

pub use generated::{REDIS_COMMANDS, acl, flag, key_spec_flag};
pub use spec::{Arg, BeginSearch, CommandSpec, Doc, FindKeys, KeySpec};

use crate::parse::Args;

impl CommandSpec {
    /// True if `argc` arguments (name included) satisfy the arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// True if the command has the given `flag::*` bit.
    #[inline]
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The full name as Redis reports it in errors and stats (`config|get`).
    pub fn full_name(&self) -> &'static str {
        self.name
    }

    /// The subcommand named `sub` (case-insensitive) of a container command.
    pub fn subcommand(&self, sub: &[u8]) -> Option<&'static CommandSpec> {
        let parent_len = self.name.len() + 1;
        self.subcommands
            .iter()
            .find(|s| s.name.as_bytes()[parent_len..].eq_ignore_ascii_case(sub))
    }

    /// True if this is a container command whose subcommand is the second argument.
    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }

    /// The keys in `args` as `(position, key spec index)`, from the key specs (Redis's
    /// `getKeysFromCommandWithSpecs`). Fails when a key count argument is invalid.
    pub fn key_positions(&self, args: &Args<'_>) -> Result<Vec<(usize, usize)>, KeysError> {
        let mut keys = Vec::new();
        let argc = args.len();
        for (spec_idx, spec) in self.key_specs.iter().enumerate() {
            let first = match spec.begin_search {
                BeginSearch::Index(i) => i as usize,
                BeginSearch::Keyword { keyword, startfrom } => {
                    match find_keyword(args, keyword, startfrom) {
                        Some(i) => i + 1,
                        None => continue,
                    }
                }
                BeginSearch::Unknown => continue,
            };
            let (first, last, step) = match spec.find_keys {
                FindKeys::Range {
                    lastkey,
                    keystep,
                    limit,
                } => {
                    let last = if lastkey >= 0 {
                        first as i64 + i64::from(lastkey)
                    } else if limit <= 1 {
                        argc as i64 + i64::from(lastkey)
                    } else {
                        first as i64
                            + ((argc as i64 - first as i64) / i64::from(limit))
                            + i64::from(lastkey)
                    };
                    (first as i64, last, keystep.max(1) as usize)
                }
                FindKeys::KeyNum {
                    keynumidx,
                    firstkey,
                    keystep,
                } => {
                    let idx = first + keynumidx as usize;
                    let numkeys = args
                        .try_get(idx)
                        .and_then(crate::num::parse_i64)
                        .filter(|&n| n >= 0)
                        .ok_or(KeysError::InvalidArguments)?;
                    let first = first as i64 + i64::from(firstkey);
                    (
                        first,
                        first + numkeys * i64::from(keystep.max(1)) - 1,
                        keystep.max(1) as usize,
                    )
                }
                FindKeys::Unknown => continue,
            };
            if last >= argc as i64 || last < first {
                if self.arity < 0 && last < first {
                    continue;
                }
                return Err(KeysError::InvalidArguments);
            }
            keys.extend(
                (first as usize..=last as usize)
                    .step_by(step)
                    .map(|p| (p, spec_idx)),
            );
        }
        if self.name == "sort" {
            // The STORE key belongs to the last key spec (OW, update).
            let store_spec = self.key_specs.len().saturating_sub(1);
            keys.extend(sort_store_key(args).map(|p| (p, store_spec)));
        }
        // MIGRATE with an empty key argument moves only the keys after KEYS (`migrateGetKeys`).
        if self.name == "migrate" && args.try_get(3) == Some(b"") && keys.len() > 1 {
            keys.retain(|&(p, _)| p != 3);
        }
        Ok(keys)
    }
}

impl CommandSpec {
    /// The access flags of the key found through key spec `spec_idx`, with `variable_flags`
    /// resolved for this request as Redis's `setGetKeys` and `bitfieldGetKeys` do.
    pub fn key_flags(&self, args: &Args<'_>, spec_idx: usize) -> u16 {
        use key_spec_flag::{ACCESS, OW, RO, RW, UPDATE, VARIABLE_FLAGS};
        let flags = self.key_specs[spec_idx].flags;
        if flags & VARIABLE_FLAGS == 0 {
            return flags;
        }
        match self.name {
            "set" => {
                let mut i = 3;
                while i < args.len() {
                    let a = args.get(i);
                    if a.eq_ignore_ascii_case(b"get") {
                        return RW | ACCESS | UPDATE;
                    }
                    let takes_value = [&b"ex"[..], b"px", b"exat", b"pxat"]
                        .iter()
                        .any(|o| a.eq_ignore_ascii_case(o));
                    i += 1 + usize::from(takes_value);
                }
                OW | UPDATE
            }
            "bitfield" => {
                let writes = args
                    .iter_from(2)
                    .any(|a| a.eq_ignore_ascii_case(b"set") || a.eq_ignore_ascii_case(b"incrby"));
                if writes {
                    RW | ACCESS | UPDATE
                } else {
                    RO | ACCESS
                }
            }
            _ => flags & !VARIABLE_FLAGS,
        }
    }
}

/// Why keys could not be extracted from a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("ERR Invalid arguments specified for command")]
    InvalidArguments,
}

/// Finds `keyword` (case-insensitive) scanning from `startfrom` (negative: backwards from the
/// end), as Redis's keyword begin-search does.
fn find_keyword(args: &Args<'_>, keyword: &str, startfrom: i32) -> Option<usize> {
    let argc = args.len() as i64;
    let kw = keyword.as_bytes();
    if startfrom >= 0 {
        (startfrom as i64..argc).find(|&i| args.get(i as usize).eq_ignore_ascii_case(kw))
    } else {
        let start = argc + i64::from(startfrom);
        (1..=start)
            .rev()
            .find(|&i| args.get(i as usize).eq_ignore_ascii_case(kw))
    }
    .map(|i| i as usize)
}

/// SORT's `STORE destination` may appear anywhere after the key (Redis's `sortGetKeys`), with
/// the other options' arguments skipped.
fn sort_store_key(args: &Args<'_>) -> Option<usize> {
    let mut i = 2;
    let mut store = None;
    while i < args.len() {
        let a = args.get(i);
        let skip = if a.eq_ignore_ascii_case(b"limit") {
            2
        } else if a.eq_ignore_ascii_case(b"get") || a.eq_ignore_ascii_case(b"by") {
            1
        } else if a.eq_ignore_ascii_case(b"store") {
            if i + 1 < args.len() {
                store = Some(i + 1);
            }
            1
        } else {
            0
        };
        i += 1 + skip;
    }
    store
}

fn trunc(s: &[u8], n: usize) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&s[..s.len().min(n)])
}

/// Redis's error text for an unknown command, with its first arguments quoted.
pub fn unknown_command(args: &Args<'_>) -> String {
    let mut list = String::new();
    for a in args.iter_from(1) {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        list.push('\'');
        list.push_str(&trunc(a, room));
        list.push_str("' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        trunc(args.get(0), 128),
        list
    )
}

/// Redis's `addReplySubcommandSyntaxError`: a subcommand `sub` (as the client typed it) of
/// `name` with arguments its handler does not take.
pub fn subcommand_syntax_error(name: &[u8], sub: &[u8]) -> String {
    format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        trunc(sub, 128),
        String::from_utf8_lossy(name).to_uppercase()
    )
}

/// Redis's error text for an unknown subcommand `sub` of container command `name`.
pub fn unknown_subcommand(name: &[u8], sub: &[u8]) -> String {
    format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        trunc(sub, 128),
        String::from_utf8_lossy(name).to_uppercase()
    )
}

/// The arguments of `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
#[derive(Debug, Default)]
pub struct HelloArgs<'a> {
    pub proto: Option<i64>,
    pub auth: Option<(&'a [u8], &'a [u8])>,
    pub setname: Option<&'a [u8]>,
}

/// Reads HELLO's arguments, with Redis's error texts.
pub fn parse_hello<'a>(args: &Args<'a>) -> Result<HelloArgs<'a>, String> {
    let mut hello = HelloArgs::default();
    if let Some(v) = args.try_get(1) {
        match crate::num::parse_i64(v) {
            Some(v @ 2..=3) => hello.proto = Some(v),
            Some(_) => return Err("NOPROTO unsupported protocol version".into()),
            None => return Err("ERR Protocol version is not an integer or out of range".into()),
        }
    }
    let mut i = 2;
    while i < args.len() {
        let a = args.get(i);
        if a.eq_ignore_ascii_case(b"auth") && i + 2 < args.len() {
            hello.auth = Some((args.get(i + 1), args.get(i + 2)));
            i += 3;
        } else if a.eq_ignore_ascii_case(b"setname") && i + 1 < args.len() {
            hello.setname = Some(args.get(i + 1));
            i += 2;
        } else {
            return Err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(a)
            ));
        }
    }
    Ok(hello)
}

/// The command table, looked up by name.
pub struct CommandTable {
    by_name: HashMap<&'static str, &'static CommandSpec>,
}

impl CommandTable {
    /// The table of every Redis 7.0 command.
    pub fn redis() -> &'static CommandTable {
        static TABLE: OnceLock<CommandTable> = OnceLock::new();
        TABLE.get_or_init(|| CommandTable {
            by_name: REDIS_COMMANDS.iter().map(|c| (c.name, c)).collect(),
        })
    }

    /// The command named `name`, case-insensitively.
    pub fn get(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        let mut lower = [0u8; 32];
        let lower = lower.get_mut(..name.len())?;
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        self.by_name.get(std::str::from_utf8(lower).ok()?).copied()
    }

    /// The command or subcommand a request names: for container commands (`CONFIG GET`), the
    /// subcommand when the request has one.
    pub fn resolve(&self, args: &Args<'_>) -> Option<&'static CommandSpec> {
        let spec = self.get(args.try_get(0)?)?;
        if spec.is_container() && args.len() >= 2 {
            return spec.subcommand(args.get(1)).or(Some(spec));
        }
        Some(spec)
    }

    /// All commands (not subcommands), sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static CommandSpec> {
        REDIS_COMMANDS.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(parts: &[&str]) -> (Vec<u8>, Vec<(u32, u32)>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for p in parts {
            let start = buf.len() as u32;
            buf.extend_from_slice(p.as_bytes());
            spans.push((start, buf.len() as u32));
        }
        (buf, spans)
    }

    fn keys(parts: &[&str]) -> Result<Vec<String>, KeysError> {
        let (buf, spans) = args_of(parts);
        let args = Args::from_parts(&buf, &spans);
        let spec = CommandTable::redis().resolve(&args).expect("known command");
        Ok(spec
            .key_positions(&args)?
            .into_iter()
            .map(|(i, _)| String::from_utf8(args.get(i).to_vec()).unwrap())
            .collect())
    }

    #[test]
    fn looks_up_case_insensitively() {
        let t = CommandTable::redis();
        assert_eq!(t.get(b"GeT").unwrap().arity, 2);
        assert!(t.get(b"nosuchcommand").is_none());
        assert!(t.get(&[b'a'; 100]).is_none());
        let (buf, spans) = args_of(&["config", "GET", "x"]);
        assert_eq!(
            t.resolve(&Args::from_parts(&buf, &spans)).unwrap().name,
            "config|get"
        );
        assert!(REDIS_COMMANDS.len() >= 240);
    }

    #[test]
    fn arity() {
        let t = CommandTable::redis();
        let get = t.get(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(3));
        let set = t.get(b"set").unwrap();
        assert!(set.arity_ok(3) && set.arity_ok(9) && !set.arity_ok(2));
    }

    #[test]
    fn extracts_keys_like_command_getkeys() {
        // Expected values from `COMMAND GETKEYS` on redis-server 7.0.
        assert_eq!(keys(&["set", "a", "b"]).unwrap(), ["a"]);
        assert_eq!(keys(&["mset", "a", "1", "b", "2"]).unwrap(), ["a", "b"]);
        assert_eq!(keys(&["del", "a", "b", "c"]).unwrap(), ["a", "b", "c"]);
        assert_eq!(
            keys(&["zunionstore", "d", "2", "a", "b", "weights", "1", "2"]).unwrap(),
            ["d", "a", "b"]
        );
        assert_eq!(
            keys(&["eval", "return 1", "2", "k1", "k2", "arg"]).unwrap(),
            ["k1", "k2"]
        );
        assert_eq!(
            keys(&["xread", "count", "2", "streams", "s1", "s2", "0", "0"]).unwrap(),
            ["s1", "s2"]
        );
        assert_eq!(
            keys(&["sort", "k", "limit", "0", "1", "store", "dst"]).unwrap(),
            ["k", "dst"]
        );
        assert_eq!(
            keys(&["migrate", "h", "1", "", "0", "5", "keys", "a", "b"]).unwrap(),
            ["a", "b"]
        );
        assert_eq!(keys(&["eval", "s", "x"]), Err(KeysError::InvalidArguments));
        assert_eq!(keys(&["ping"]).unwrap(), Vec::<String>::new());
    }
}
