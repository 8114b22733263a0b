//! The shard process (`tessera server`): a standalone Redis-compatible server whose keyspace lives
//! on one event-loop thread.
//!
//! The request path (see docs/ARCHITECTURE.md): [`server`] accepts and reads, `tessera_protocol`
//! splits requests off the read buffer, [`dispatch`] looks the command up and runs the verify
//! step, a handler in [`commands`] parses its arguments and calls `tessera_storage`, and the
//! reply is encoded into the client's output buffer, written once per event-loop turn.
//!
//! No locks on the hot path: the event loop owns the keyspace and every client.

use tessera_acl as acl;
pub mod blocking;
pub mod bus;
pub mod checkpoint;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod dispatch;
pub mod effects;
pub mod evict;
pub mod info;
pub mod memory;
pub mod notify;
pub mod persist;
pub mod repl;
pub mod sched;
pub mod scripting;
pub mod server;
pub mod stats;
pub mod tracking;

pub use config::Config;
pub use server::Server;
