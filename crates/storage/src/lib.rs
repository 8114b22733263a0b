//! Tessera's storage layer: the keyspace of a shard and the operations on its values.
//!
//! - [`Db`]: the keyspace, one [`Dict`] per hash slot plus an expires dict, with lazy and active
//!   expiry, SCAN, RANDOMKEY and per-slot access for cluster mode.
//! - [`Value`]: the value types and their encodings; [`strings`] holds the string and bitmap
//!   operations.
//!
//! This crate never sees RESP or a socket (invariant 7): operations take bytes and return
//! `Result<T, OpError>`; the server turns errors into Redis's wire text in one place.
//! It holds no locks: the keyspace belongs to the shard's one event-loop thread.

pub mod bytes;
pub mod db;
pub mod dict;
pub mod digest;
pub mod error;
pub mod hll;
pub mod lfu;
pub mod longdouble;
pub mod rdb;
pub mod snapshot;
pub mod strings;
pub mod types;
pub mod value;

pub use bytes::SmallBytes;
pub use db::{Db, DbStats, ExpireTuning, Expiry, FlushedDb};
pub use dict::Dict;
pub use error::OpError;
pub use types::CompactLimits;
pub use types::hash::Hash;
pub use types::list::{End, List};
pub use types::set::Set;
pub use types::stream::{Stream, StreamId};
pub use types::zset::{Elem, ZSet};
pub use value::{KeyEntry, StrView, Typed, Value};
