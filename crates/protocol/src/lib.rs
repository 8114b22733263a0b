//! Tessera's protocol layer: everything about the wire that both the shard and the proxy need.
//!
//! - [`parse`]: the hand-written RESP request parser (arrays of bulk strings and inline commands),
//!   incremental and zero-copy: arguments are spans of the caller's read buffer.
//! - [`reply`]: the RESP2/RESP3 reply encoder, writing straight into an output buffer.
//! - [`command`]: the command table generated from Redis's own metadata (arity, flags, key
//!   specs, ACL categories, routing tips, docs) and key extraction from it.
//! - [`slot`]: the Redis Cluster hash slot of a key (CRC16/XMODEM with `{hash tags}`).
//! - [`clients`]: CLIENT LIST lines and the CLIENT LIST / KILL filters.
//! - [`glob`] and [`num`]: Redis's glob matcher and its strict number parsing and formatting.
//!
//! This crate depends on no runtime and on no other Tessera crate: it never sees a socket or the
//! keyspace (invariant 7 of the architecture).

pub mod clients;
pub mod cluster;
pub mod command;
pub mod frame;
pub mod glob;
pub mod num;
pub mod parse;
pub mod reply;
pub mod slot;

/// The Redis version Tessera answers as (HELLO, INFO, scripts).
pub const REDIS_VERSION: &str = "7.0.15";

pub use command::{CommandSpec, CommandTable};
pub use parse::{Args, Limits, ParseError, RequestParser};
pub use reply::Reply;
pub use slot::{SLOTS, key_hash_slot};
