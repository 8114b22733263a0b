//! The types of the command table. The table itself (`generated.rs`) is produced from Redis's
//! own `COMMAND` / `COMMAND DOCS` output by `tools/gen_command_table.py`.

/// One command or subcommand (`config|get`).
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name; subcommands are `parent|sub`.
    pub name: &'static str,
    /// Redis arity: `n` means exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    /// `flag::*` bits.
    pub flags: u32,
    /// Legacy key positions (`first`, `last`, `step`) as `COMMAND INFO` reports them.
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    /// `acl::*` bits.
    pub acl_categories: u32,
    /// Routing and output tips (`request_policy:all_shards`, `nondeterministic_output`, ...).
    pub tips: &'static [&'static str],
    /// Key specifications: where the keys are and how they are accessed.
    pub key_specs: &'static [KeySpec],
    /// Subcommands, for container commands such as `CONFIG` and `CLIENT`.
    pub subcommands: &'static [CommandSpec],
    /// `COMMAND DOCS` fields.
    pub doc: Doc,
}

/// How to find one group of keys in a request (Redis 7 key specs).
#[derive(Debug)]
pub struct KeySpec {
    pub notes: Option<&'static str>,
    /// `key_spec_flag::*` bits.
    pub flags: u16,
    pub begin_search: BeginSearch,
    pub find_keys: FindKeys,
}

/// Where the search for keys begins.
#[derive(Debug)]
pub enum BeginSearch {
    /// At a fixed argument index.
    Index(i32),
    /// After the first (or, with a negative `startfrom`, last) occurrence of a keyword.
    Keyword {
        keyword: &'static str,
        startfrom: i32,
    },
    /// Only the command itself knows (it sets `movablekeys`).
    Unknown,
}

/// Which arguments from the beginning are keys.
#[derive(Debug)]
pub enum FindKeys {
    /// `lastkey` relative to the beginning (negative: from the end), every `keystep`; `limit`
    /// divides the remaining arguments when `lastkey` is -1.
    Range {
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// A count argument at `keynumidx`, then the keys from `firstkey`, every `keystep`.
    KeyNum {
        keynumidx: i32,
        firstkey: i32,
        keystep: i32,
    },
    Unknown,
}

/// `COMMAND DOCS` fields of a command.
#[derive(Debug)]
pub struct Doc {
    pub summary: &'static str,
    pub since: &'static str,
    pub group: &'static str,
    pub complexity: Option<&'static str>,
    pub doc_flags: &'static [&'static str],
    pub deprecated_since: Option<&'static str>,
    pub replaced_by: Option<&'static str>,
    pub history: &'static [(&'static str, &'static str)],
    pub arguments: &'static [Arg],
}

/// One argument of a command's syntax, as `COMMAND DOCS` describes it.
#[derive(Debug)]
pub struct Arg {
    pub name: &'static str,
    /// `key`, `string`, `integer`, `double`, `pattern`, `unix-time`, `pure-token`, `oneof`,
    /// `block`.
    pub kind: &'static str,
    /// Index into the command's key specs, or -1.
    pub key_spec_index: i32,
    pub token: Option<&'static str>,
    pub since: Option<&'static str>,
    pub deprecated_since: Option<&'static str>,
    /// `optional`, `multiple`, `multiple_token`.
    pub flags: &'static [&'static str],
    pub arguments: &'static [Arg],
}
