//! Integration tests: real `tessera server` processes on loopback, driven by the `redis` crate,
//! a raw RESP client, and compared with a real `redis-server`.

mod support;

mod acl;
mod blocking;
mod cluster;
mod cluster_clients;
mod cluster_shared;
mod collections;
mod control;
mod differential;
mod eviction;
mod expire;
mod functions;
mod keys;
mod notifications;
mod persistence;
mod protocol;
mod proxy;
mod proxy_acl;
mod proxy_clients;
mod proxy_table;
mod pubsub;
mod replication;
mod scripting;
mod server;
mod streams;
mod strings;
mod tracking;
mod transactions;
mod up;
