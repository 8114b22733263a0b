//! The shard's configuration: command-line flags, an optional TOML file (every flag also settable
//! there, with Redis's parameter names), and the parameters `CONFIG GET|SET` exposes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tessera_protocol::Limits;

/// The largest query buffer: argument offsets in a request are 32-bit.
const MAX_QUERY_BUFFER: u64 = u32::MAX as u64;

/// Configuration of a shard server. Field names are Redis's parameter names with `_` for `-`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub port: u16,
    pub bind: String,
    pub requirepass: Option<String>,
    pub maxclients: usize,
    pub timeout: u64,
    pub tcp_keepalive: u64,
    pub hz: u32,
    #[serde(deserialize_with = "de_memory")]
    pub proto_max_bulk_len: usize,
    #[serde(deserialize_with = "de_memory")]
    pub client_query_buffer_limit: usize,
    pub slowlog_log_slower_than: i64,
    pub slowlog_max_len: usize,
    pub latency_monitor_threshold: u64,
    /// Per-command latency histograms (`LATENCY HISTOGRAM`, `INFO latencystats`).
    pub latency_tracking: bool,
    /// Percentiles `INFO latencystats` reports, as Redis's space-separated list.
    pub latency_tracking_info_percentiles: String,
    pub active_expire_effort: u32,
    #[serde(alias = "hash-max-ziplist-entries")]
    pub hash_max_listpack_entries: usize,
    #[serde(alias = "hash-max-ziplist-value")]
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    #[serde(alias = "zset-max-ziplist-entries")]
    pub zset_max_listpack_entries: usize,
    #[serde(alias = "zset-max-ziplist-value")]
    pub zset_max_listpack_value: usize,
    #[serde(deserialize_with = "de_memory")]
    pub stream_node_max_bytes: u64,
    pub stream_node_max_entries: u64,
    #[serde(deserialize_with = "de_memory")]
    pub hll_sparse_max_bytes: u64,
    pub jemalloc_bg_thread: bool,
    /// Adaptive busy polling window in microseconds (0: off); see `server::BusyPoll`.
    pub busy_poll_us: u64,
    /// The event loop's CPU scheduling policy, `normal` or `batch` (`sched.rs`).
    pub sched_policy: String,
    /// Milliseconds a script runs before other clients are answered `-BUSY` (0: never).
    #[serde(alias = "lua-time-limit")]
    pub busy_reply_threshold: u64,
    /// Bytes the Lua state may allocate (0: no limit); a Tessera setting.
    #[serde(deserialize_with = "de_memory")]
    pub lua_memory_limit: u64,
    /// `<class> <hard> <soft> <seconds>` for the normal, replica and pubsub classes.
    pub client_output_buffer_limit: String,
    pub enable_debug_command: String,
    pub dir: PathBuf,
    pub logfile: String,
    pub loglevel: String,
    pub pidfile: Option<PathBuf>,
    #[serde(deserialize_with = "de_memory")]
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub maxmemory_samples: usize,
    pub lfu_log_factor: u32,
    pub lfu_decay_time: u32,
    /// Keyspace notification classes, as given.
    pub notify_keyspace_events: String,
    pub databases: u32,
    pub appendonly: bool,
    pub appendfsync: String,
    pub save: String,
    /// `host port` of the primary this shard replicates (REPLICAOF), or none.
    #[serde(alias = "slaveof")]
    pub replicaof: Option<String>,
    pub masterauth: Option<String>,
    pub masteruser: Option<String>,
    #[serde(deserialize_with = "de_memory")]
    pub repl_backlog_size: u64,
    pub repl_backlog_ttl: u64,
    pub repl_timeout: u64,
    pub repl_ping_replica_period: u64,
    /// Tessera's full sync is always diskless; `no` is accepted for compatibility.
    pub repl_diskless_sync: bool,
    pub repl_diskless_sync_delay: u64,
    pub repl_diskless_sync_max_replicas: u64,
    #[serde(alias = "slave-read-only")]
    pub replica_read_only: bool,
    #[serde(alias = "slave-serve-stale-data")]
    pub replica_serve_stale_data: bool,
    #[serde(alias = "slave-priority")]
    pub replica_priority: u64,
    /// Microseconds to pause after each key loaded at startup (Redis's testing knob, to make
    /// the loading state observable); 0 for none.
    pub key_load_delay: u64,
    #[serde(alias = "min-slaves-to-write")]
    pub min_replicas_to_write: u64,
    #[serde(alias = "min-slaves-max-lag")]
    pub min_replicas_max_lag: u64,
    /// Without a password on the default user, only loopback clients are served.
    pub protected_mode: bool,
    /// The ACL file `ACL LOAD` reads and `ACL SAVE` writes; loaded at startup.
    pub aclfile: Option<PathBuf>,
    pub acllog_max_len: usize,
    /// Keys the client-side caching table remembers before it forgets random ones (0: no
    /// limit).
    pub tracking_table_max_keys: usize,
    /// Cluster mode (issue 8): the shard learns its slots from the control group.
    pub cluster_enabled: bool,
    /// Control members' API addresses (`host:port`, comma-separated) to watch.
    pub cluster_control: String,
    /// The control group's admin token. Not shown by CONFIG GET: it administers the cluster.
    pub cluster_token: Option<String>,
    /// The database this shard belongs to, by name.
    pub cluster_database: String,
    /// The host this shard is known by in the configuration (its machine's host); `bind`'s
    /// first address when empty.
    pub cluster_announce_ip: String,
    /// `allchannels` or `resetchannels`: the channels new users may use.
    pub acl_pubsub_default: String,
    /// The file this configuration was read from (`CONFIG REWRITE` writes it back).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 6379,
            bind: "127.0.0.1".into(),
            requirepass: None,
            maxclients: 10000,
            timeout: 0,
            tcp_keepalive: 300,
            hz: 10,
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            slowlog_log_slower_than: 10000,
            slowlog_max_len: 128,
            latency_monitor_threshold: 0,
            latency_tracking: true,
            latency_tracking_info_percentiles: "50 99 99.9".into(),
            active_expire_effort: 1,
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            stream_node_max_bytes: 4096,
            stream_node_max_entries: 100,
            hll_sparse_max_bytes: 3000,
            jemalloc_bg_thread: true,
            busy_poll_us: 50,
            sched_policy: "normal".into(),
            busy_reply_threshold: 5000,
            lua_memory_limit: 1024 * 1024 * 1024,
            client_output_buffer_limit:
                "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60".into(),
            enable_debug_command: "no".into(),
            dir: PathBuf::from("."),
            logfile: String::new(),
            loglevel: "notice".into(),
            pidfile: None,
            maxmemory: 0,
            maxmemory_policy: "noeviction".into(),
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            notify_keyspace_events: String::new(),
            databases: 1,
            appendonly: false,
            appendfsync: "everysec".into(),
            // Redis's default rules: after an hour and one change, five minutes and 100
            // changes, a minute and 10000 changes.
            save: "3600 1 300 100 60 10000".into(),
            replicaof: None,
            masterauth: None,
            masteruser: None,
            repl_backlog_size: 1 << 20,
            repl_backlog_ttl: 3600,
            repl_timeout: 60,
            repl_ping_replica_period: 10,
            repl_diskless_sync: true,
            repl_diskless_sync_delay: 5,
            repl_diskless_sync_max_replicas: 0,
            replica_read_only: true,
            replica_serve_stale_data: true,
            replica_priority: 100,
            key_load_delay: 0,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            protected_mode: true,
            aclfile: None,
            acllog_max_len: 128,
            tracking_table_max_keys: 1_000_000,
            cluster_enabled: false,
            cluster_control: String::new(),
            cluster_token: None,
            cluster_database: String::new(),
            cluster_announce_ip: String::new(),
            acl_pubsub_default: "resetchannels".into(),
            config_file: None,
        }
    }
}

/// Why a configuration could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.config_file = Some(path.into());
        config.validate()?;
        Ok(config)
    }

    /// Checks values that have a valid range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=500).contains(&self.hz) {
            return Err(ConfigError::Invalid("hz must be between 1 and 500".into()));
        }
        if !(1..=10).contains(&self.active_expire_effort) {
            return Err(ConfigError::Invalid(
                "active-expire-effort must be 1..10".into(),
            ));
        }
        if !(1024 * 1024..=MAX_QUERY_BUFFER).contains(&(self.client_query_buffer_limit as u64)) {
            return Err(ConfigError::Invalid(
                "client-query-buffer-limit must be between 1mb and 4gb".into(),
            ));
        }
        if crate::notify::parse(&self.notify_keyspace_events).is_none() {
            return Err(ConfigError::Invalid(
                "notify-keyspace-events: invalid event class character, use 'Ag$lshzxeKEtmdn'"
                    .into(),
            ));
        }
        if !crate::sched::POLICIES.contains(&self.sched_policy.as_str()) {
            return Err(ConfigError::Invalid(
                "sched-policy must be normal or batch".into(),
            ));
        }
        if self.databases != 1 {
            return Err(ConfigError::Invalid(
                "databases must be 1: Tessera has one database per shard, like Redis Cluster"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Applies `client-output-buffer-limit` groups; classes not given keep their limits.
    fn set_output_limits(&mut self, value: &str) -> Result<(), String> {
        use crate::commands::pubsub::parse_output_limits;
        let given = parse_output_limits(value).ok_or_else(|| {
            "argument(s) must be a list of <class> <hard> <soft> <seconds>".to_string()
        })?;
        let mut all = parse_output_limits(&self.client_output_buffer_limit).unwrap_or_default();
        for g in given {
            all.retain(|a| a.0 != g.0);
            all.push(g);
        }
        all.sort_by_key(|a| {
            ["normal", "replica", "pubsub"]
                .iter()
                .position(|c| *c == a.0)
        });
        self.client_output_buffer_limit = all
            .iter()
            .map(|(c, h, s, t)| {
                let c = if c == "replica" { "slave" } else { c.as_str() };
                format!("{c} {h} {s} {t}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        Ok(())
    }

    /// The `client-output-buffer-limit` of a class: (hard, soft, soft seconds); 0 is no limit.
    pub fn normal_output_limited(&self) -> bool {
        let (hard, soft, _) = self.output_limit("normal");
        hard > 0 || soft > 0
    }

    pub fn output_limit(&self, class: &str) -> (u64, u64, u64) {
        crate::commands::pubsub::parse_output_limits(&self.client_output_buffer_limit)
            .unwrap_or_default()
            .into_iter()
            .find(|(c, ..)| c == class)
            .map_or((0, 0, 0), |(_, h, s, t)| (h, s, t))
    }

    /// The secret of the cluster's internal connections (`tessera_acl::internal`), in cluster
    /// mode only.
    pub fn internal_secret(&self) -> Option<String> {
        self.cluster_enabled.then(|| {
            tessera_acl::internal::secret(
                self.cluster_token.as_deref().unwrap_or(""),
                &self.cluster_database,
            )
        })
    }

    /// The keyspace notification classes set.
    pub fn notify_flags(&self) -> u32 {
        crate::notify::parse(&self.notify_keyspace_events).unwrap_or(0)
    }

    /// True under an LFU eviction policy (keys carry LFU counters).
    pub fn lfu(&self) -> bool {
        crate::evict::Policy::parse(&self.maxmemory_policy).is_some_and(|p| p.is_lfu())
    }

    /// The stream node limits this configuration sets.
    pub fn stream_limits(&self) -> tessera_storage::types::stream::NodeLimits {
        tessera_storage::types::stream::NodeLimits {
            max_bytes: self.stream_node_max_bytes,
            max_entries: self.stream_node_max_entries,
        }
    }

    /// The compact encoding thresholds this configuration sets.
    pub fn compact_limits(&self) -> tessera_storage::CompactLimits {
        tessera_storage::CompactLimits {
            hash_max_listpack_entries: self.hash_max_listpack_entries,
            hash_max_listpack_value: self.hash_max_listpack_value,
            set_max_intset_entries: self.set_max_intset_entries,
            zset_max_listpack_entries: self.zset_max_listpack_entries,
            zset_max_listpack_value: self.zset_max_listpack_value,
        }
    }

    /// The protocol limits this configuration sets.
    pub fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.proto_max_bulk_len,
            ..Limits::default()
        }
    }

    /// Every parameter `CONFIG GET` knows, in Redis's naming, with its current value.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let b = |v: bool| if v { "yes" } else { "no" }.to_string();
        vec![
            ("port", self.port.to_string()),
            ("bind", self.bind.clone()),
            ("requirepass", self.requirepass.clone().unwrap_or_default()),
            ("maxclients", self.maxclients.to_string()),
            ("timeout", self.timeout.to_string()),
            ("tcp-keepalive", self.tcp_keepalive.to_string()),
            ("hz", self.hz.to_string()),
            ("proto-max-bulk-len", self.proto_max_bulk_len.to_string()),
            (
                "client-query-buffer-limit",
                self.client_query_buffer_limit.to_string(),
            ),
            (
                "slowlog-log-slower-than",
                self.slowlog_log_slower_than.to_string(),
            ),
            ("slowlog-max-len", self.slowlog_max_len.to_string()),
            (
                "latency-monitor-threshold",
                self.latency_monitor_threshold.to_string(),
            ),
            ("latency-tracking", b(self.latency_tracking)),
            (
                "latency-tracking-info-percentiles",
                self.latency_tracking_info_percentiles.clone(),
            ),
            (
                "active-expire-effort",
                self.active_expire_effort.to_string(),
            ),
            (
                "hash-max-listpack-entries",
                self.hash_max_listpack_entries.to_string(),
            ),
            (
                "hash-max-listpack-value",
                self.hash_max_listpack_value.to_string(),
            ),
            (
                "hash-max-ziplist-entries",
                self.hash_max_listpack_entries.to_string(),
            ),
            (
                "hash-max-ziplist-value",
                self.hash_max_listpack_value.to_string(),
            ),
            (
                "set-max-intset-entries",
                self.set_max_intset_entries.to_string(),
            ),
            (
                "client-output-buffer-limit",
                self.client_output_buffer_limit.clone(),
            ),
            (
                "zset-max-listpack-entries",
                self.zset_max_listpack_entries.to_string(),
            ),
            (
                "zset-max-listpack-value",
                self.zset_max_listpack_value.to_string(),
            ),
            (
                "zset-max-ziplist-entries",
                self.zset_max_listpack_entries.to_string(),
            ),
            (
                "zset-max-ziplist-value",
                self.zset_max_listpack_value.to_string(),
            ),
            ("busy-poll-us", self.busy_poll_us.to_string()),
            ("sched-policy", self.sched_policy.clone()),
            (
                "busy-reply-threshold",
                self.busy_reply_threshold.to_string(),
            ),
            ("lua-time-limit", self.busy_reply_threshold.to_string()),
            ("lua-memory-limit", self.lua_memory_limit.to_string()),
            (
                "jemalloc-bg-thread",
                if self.jemalloc_bg_thread { "yes" } else { "no" }.to_string(),
            ),
            (
                "hll-sparse-max-bytes",
                self.hll_sparse_max_bytes.to_string(),
            ),
            (
                "stream-node-max-bytes",
                self.stream_node_max_bytes.to_string(),
            ),
            (
                "stream-node-max-entries",
                self.stream_node_max_entries.to_string(),
            ),
            ("enable-debug-command", self.enable_debug_command.clone()),
            ("dir", self.dir.display().to_string()),
            ("logfile", self.logfile.clone()),
            ("loglevel", self.loglevel.clone()),
            (
                "pidfile",
                self.pidfile
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("maxmemory", self.maxmemory.to_string()),
            ("maxmemory-policy", self.maxmemory_policy.clone()),
            ("maxmemory-samples", self.maxmemory_samples.to_string()),
            ("lfu-log-factor", self.lfu_log_factor.to_string()),
            ("lfu-decay-time", self.lfu_decay_time.to_string()),
            (
                "notify-keyspace-events",
                crate::notify::format(self.notify_flags()),
            ),
            ("databases", self.databases.to_string()),
            ("appendonly", b(self.appendonly)),
            ("appendfsync", self.appendfsync.clone()),
            ("save", self.save.clone()),
            ("replicaof", self.replicaof.clone().unwrap_or_default()),
            ("masterauth", self.masterauth.clone().unwrap_or_default()),
            ("masteruser", self.masteruser.clone().unwrap_or_default()),
            ("repl-backlog-size", self.repl_backlog_size.to_string()),
            ("repl-backlog-ttl", self.repl_backlog_ttl.to_string()),
            ("repl-timeout", self.repl_timeout.to_string()),
            (
                "repl-ping-replica-period",
                self.repl_ping_replica_period.to_string(),
            ),
            ("repl-diskless-sync", b(self.repl_diskless_sync)),
            (
                "repl-diskless-sync-delay",
                self.repl_diskless_sync_delay.to_string(),
            ),
            (
                "repl-diskless-sync-max-replicas",
                self.repl_diskless_sync_max_replicas.to_string(),
            ),
            ("replica-read-only", b(self.replica_read_only)),
            ("replica-serve-stale-data", b(self.replica_serve_stale_data)),
            ("replica-priority", self.replica_priority.to_string()),
            ("key-load-delay", self.key_load_delay.to_string()),
            (
                "min-replicas-to-write",
                self.min_replicas_to_write.to_string(),
            ),
            (
                "min-replicas-max-lag",
                self.min_replicas_max_lag.to_string(),
            ),
            ("protected-mode", b(self.protected_mode)),
            (
                "aclfile",
                self.aclfile
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("acllog-max-len", self.acllog_max_len.to_string()),
            (
                "tracking-table-max-keys",
                self.tracking_table_max_keys.to_string(),
            ),
            ("acl-pubsub-default", self.acl_pubsub_default.clone()),
            ("cluster-enabled", b(self.cluster_enabled)),
            ("cluster-control", self.cluster_control.clone()),
            ("cluster-database", self.cluster_database.clone()),
            ("cluster-announce-ip", self.cluster_announce_ip.clone()),
        ]
    }

    /// Sets one parameter from its `CONFIG SET` text. Errors are Redis's reasons, which the caller
    /// wraps in `ERR CONFIG SET failed (possibly related to argument '...') - <reason>`.
    pub fn set_param(&mut self, name: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())
        }
        fn mem(v: &str) -> Result<u64, String> {
            parse_memory(v).ok_or_else(|| "argument must be a memory value".to_string())
        }
        fn yes_no(v: &str) -> Result<bool, String> {
            match v.to_ascii_lowercase().as_str() {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err("argument must be 'yes' or 'no'".into()),
            }
        }
        match name {
            "requirepass" => {
                self.requirepass = (!value.is_empty()).then(|| value.to_string());
            }
            "maxclients" => self.maxclients = num(value)?,
            "timeout" => self.timeout = num(value)?,
            "tcp-keepalive" => self.tcp_keepalive = num(value)?,
            "hz" => {
                // Redis clamps hz to 1..=500.
                self.hz = num::<i64>(value)?.clamp(1, 500) as u32;
            }
            "proto-max-bulk-len" => self.proto_max_bulk_len = mem(value)? as usize,
            "client-query-buffer-limit" => {
                let v = mem(value)?;
                if !(1024 * 1024..=MAX_QUERY_BUFFER).contains(&v) {
                    return Err("argument must be between 1mb and 4gb".into());
                }
                self.client_query_buffer_limit = v as usize;
            }
            "slowlog-log-slower-than" => self.slowlog_log_slower_than = num(value)?,
            "slowlog-max-len" => self.slowlog_max_len = num(value)?,
            "latency-monitor-threshold" => self.latency_monitor_threshold = num(value)?,
            "latency-tracking" => self.latency_tracking = yes_no(value)?,
            "hash-max-listpack-entries" | "hash-max-ziplist-entries" => {
                self.hash_max_listpack_entries = num(value)?
            }
            "hash-max-listpack-value" | "hash-max-ziplist-value" => {
                self.hash_max_listpack_value = num(value)?
            }
            "set-max-intset-entries" => self.set_max_intset_entries = num(value)?,
            "client-output-buffer-limit" => self.set_output_limits(value)?,
            "zset-max-listpack-entries" | "zset-max-ziplist-entries" => {
                self.zset_max_listpack_entries = num(value)?
            }
            "zset-max-listpack-value" | "zset-max-ziplist-value" => {
                self.zset_max_listpack_value = num(value)?
            }
            "latency-tracking-info-percentiles" => {
                if parse_percentiles(value).is_none() {
                    return Err("argument(s) must be a list of percentiles between 0 and 100".into());
                }
                self.latency_tracking_info_percentiles = value.into();
            }
            "active-expire-effort" => {
                let v: u32 = num(value)?;
                if !(1..=10).contains(&v) {
                    return Err("argument must be between 1 and 10 inclusive".into());
                }
                self.active_expire_effort = v;
            }
            "loglevel" => match value {
                "debug" | "verbose" | "notice" | "warning" | "nothing" => {
                    self.loglevel = value.into()
                }
                _ => return Err("argument(s) must be one of the following: debug, verbose, notice, warning, nothing".into()),
            },
            "maxmemory" => self.maxmemory = mem(value)?,
            "stream-node-max-bytes" => self.stream_node_max_bytes = mem(value)?,
            "hll-sparse-max-bytes" => self.hll_sparse_max_bytes = mem(value)?,
            "busy-reply-threshold" | "lua-time-limit" => self.busy_reply_threshold = num(value)?,
            "lua-memory-limit" => self.lua_memory_limit = mem(value)?,
            "busy-poll-us" => {
                let v: u64 = num(value)?;
                if v > 1_000_000 {
                    return Err("argument must be between 0 and 1000000 inclusive".into());
                }
                self.busy_poll_us = v;
            }
            "sched-policy" => {
                let v = value.to_ascii_lowercase();
                if !crate::sched::POLICIES.contains(&v.as_str()) {
                    return Err("argument must be one of the following: normal, batch".into());
                }
                self.sched_policy = v;
            }
            "jemalloc-bg-thread" => {
                self.jemalloc_bg_thread = yes_no(value)?;
                crate::memory::set_background_thread(self.jemalloc_bg_thread);
            }
            "stream-node-max-entries" => self.stream_node_max_entries = num(value)?,
            "maxmemory-policy" => match crate::evict::Policy::parse(value) {
                Some(_) => self.maxmemory_policy = value.into(),
                None => return Err("argument(s) must be one of the following: volatile-lru, allkeys-lru, volatile-lfu, allkeys-lfu, volatile-random, allkeys-random, volatile-ttl, noeviction".into()),
            },
            "maxmemory-samples" => {
                let v: usize = num(value)?;
                if !(1..=64).contains(&v) {
                    return Err("argument must be between 1 and 64 inclusive".into());
                }
                self.maxmemory_samples = v;
            }
            "lfu-log-factor" => self.lfu_log_factor = num(value)?,
            "lfu-decay-time" => self.lfu_decay_time = num(value)?,
            "notify-keyspace-events" => match crate::notify::parse(value) {
                // Kept as given: the canonical text Redis prints drops `n` next to `A`.
                Some(_) => self.notify_keyspace_events = value.into(),
                None => {
                    return Err(
                        "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into(),
                    );
                }
            },
            // Applied by the server (it opens the store and starts or stops the log).
            "appendonly" => self.appendonly = yes_no(value)?,
            "appendfsync" => match crate::persist::Fsync::parse(value) {
                Some(_) => self.appendfsync = value.to_ascii_lowercase(),
                None => {
                    return Err("argument(s) must be one of the following: always, everysec, no".into());
                }
            },
            "save" => {
                if crate::checkpoint::parse_save_rules(value).is_none() {
                    return Err("Invalid save parameters".into());
                }
                self.save = value.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            "masterauth" => self.masterauth = (!value.is_empty()).then(|| value.to_string()),
            "masteruser" => self.masteruser = (!value.is_empty()).then(|| value.to_string()),
            "repl-backlog-size" => {
                // Redis's minimum backlog is 16 KB.
                self.repl_backlog_size = mem(value)?.max(16 * 1024);
            }
            "repl-backlog-ttl" => self.repl_backlog_ttl = num(value)?,
            "repl-timeout" | "repl-ping-replica-period" | "repl-ping-slave-period" => {
                let v: u64 = num(value)?;
                if v == 0 {
                    return Err("argument must be between 1 and 2147483647 inclusive".into());
                }
                if name == "repl-timeout" {
                    self.repl_timeout = v;
                } else {
                    self.repl_ping_replica_period = v;
                }
            }
            "repl-diskless-sync" => self.repl_diskless_sync = yes_no(value)?,
            "repl-diskless-sync-delay" => self.repl_diskless_sync_delay = num(value)?,
            "repl-diskless-sync-max-replicas" => {
                self.repl_diskless_sync_max_replicas = num(value)?
            }
            "replica-read-only" | "slave-read-only" => self.replica_read_only = yes_no(value)?,
            "replica-serve-stale-data" | "slave-serve-stale-data" => {
                self.replica_serve_stale_data = yes_no(value)?
            }
            "replica-priority" | "slave-priority" => self.replica_priority = num(value)?,
            "key-load-delay" => self.key_load_delay = num(value)?,
            "min-replicas-to-write" | "min-slaves-to-write" => {
                self.min_replicas_to_write = num(value)?
            }
            "min-replicas-max-lag" | "min-slaves-max-lag" => {
                self.min_replicas_max_lag = num(value)?
            }
            "protected-mode" => self.protected_mode = yes_no(value)?,
            "acllog-max-len" => self.acllog_max_len = num(value)?,
            "tracking-table-max-keys" => self.tracking_table_max_keys = num(value)?,
            "acl-pubsub-default" => {
                let v = value.to_ascii_lowercase();
                if v != "allchannels" && v != "resetchannels" {
                    return Err("argument(s) must be one of the following: allchannels, resetchannels".into());
                }
                self.acl_pubsub_default = v;
            }
            // Set in the file or with REPLICAOF, as in Redis.
            "replicaof" | "slaveof" => return Err("unknown".into()),
            "port" | "bind" | "enable-debug-command" | "dir" | "logfile" | "pidfile"
            | "databases" | "aclfile" | "cluster-enabled" | "cluster-control" | "cluster-token"
            | "cluster-database" | "cluster-announce-ip" => {
                return Err("can't set immutable config".into());
            }
            _ => return Err("unknown".into()),
        }
        Ok(())
    }

    /// Writes the configuration back to its file (`CONFIG REWRITE`), as TOML.
    pub fn rewrite(&self) -> Result<(), String> {
        let Some(path) = &self.config_file else {
            return Err("The server is running without a config file".into());
        };
        let mut text = String::from("# Rewritten by CONFIG REWRITE.\n");
        for (name, value) in self.params() {
            let default = Config::default();
            let is_default = default
                .params()
                .iter()
                .any(|(n, v)| *n == name && *v == value);
            // Old names are aliases: writing both would be a duplicate key.
            if is_default || name.contains("ziplist") {
                continue;
            }
            let rendered = match name {
                "appendonly"
                | "latency-tracking"
                | "repl-diskless-sync"
                | "replica-read-only"
                | "replica-serve-stale-data"
                | "cluster-enabled"
                | "protected-mode" => (value == "yes").to_string(),
                "bind"
                | "aclfile"
                | "acl-pubsub-default"
                | "requirepass"
                | "enable-debug-command"
                | "dir"
                | "logfile"
                | "loglevel"
                | "pidfile"
                | "maxmemory-policy"
                | "notify-keyspace-events"
                | "save"
                | "appendfsync"
                | "replicaof"
                | "masterauth"
                | "masteruser"
                | "cluster-control"
                | "cluster-database"
                | "cluster-announce-ip"
                | "latency-tracking-info-percentiles"
                | "client-output-buffer-limit" => {
                    format!("{value:?}")
                }
                _ => value,
            };
            text.push_str(&format!("{name} = {rendered}\n"));
        }
        // The control group's admin token is kept, though CONFIG GET does not show it.
        if let Some(token) = &self.cluster_token {
            text.push_str(&format!("cluster-token = {token:?}\n"));
        }
        std::fs::write(path, text).map_err(|e| format!("Rewriting config file: {e}"))
    }
}

/// A memory value in a TOML file: a number of bytes, or a string with Redis's units (`"512mb"`).
fn de_memory<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mem {
        Bytes(u64),
        Text(String),
    }
    let bytes = match Mem::deserialize(d)? {
        Mem::Bytes(n) => n,
        Mem::Text(s) => parse_memory(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid memory value {s:?}")))?,
    };
    T::try_from(bytes).map_err(|_| serde::de::Error::custom("memory value out of range"))
}

/// Parses `latency-tracking-info-percentiles`: numbers between 0 and 100, space-separated.
pub fn parse_percentiles(s: &str) -> Option<Vec<f64>> {
    s.split_whitespace()
        .map(|p| p.parse::<f64>().ok().filter(|v| (0.0..=100.0).contains(v)))
        .collect()
}

/// Parses Redis memory values: `1024`, `1k`, `1kb`, `1m`, `1mb`, `1g`, `1gb` (k = 1000,
/// kb = 1024, case-insensitive).
pub fn parse_memory(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mul = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("512MB"), Some(512 << 20));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("12"), Some(12));
        assert_eq!(parse_memory("1x"), None);
        assert_eq!(parse_memory(""), None);
    }

    #[test]
    fn toml_uses_redis_names() {
        let c: Config =
            toml::from_str("port = 7000\nrequirepass = \"s\"\nproto-max-bulk-len = 1024").unwrap();
        assert_eq!(
            (c.port, c.requirepass.as_deref(), c.proto_max_bulk_len),
            (7000, Some("s"), 1024)
        );
        assert!(toml::from_str::<Config>("nosuch = 1").is_err());
        let c: Config = toml::from_str("maxmemory = \"1gb\"").unwrap();
        assert_eq!(c.maxmemory, 1 << 30);
        assert!(toml::from_str::<Config>("maxmemory = \"lots\"").is_err());
    }
}
