//! The control group: the cluster configuration replicated with Raft (openraft), the watch and
//! lease APIs shards and proxies use, node supervision, and the REST API.

// openraft's error types (StorageError, RaftError) are large and fixed by its traits.
#![allow(clippy::result_large_err)]

pub mod model;
pub mod store;
