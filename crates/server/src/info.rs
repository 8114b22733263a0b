//! `INFO`: the sections and field names of Redis 7.0, filled from real figures (jemalloc's
//! allocator statistics, getrusage, the keyspace's counters).

use std::fmt::Write as _;

use crate::commands::connection::REDIS_VERSION;
use crate::server::Server;

/// Every section in Redis's order, and whether a plain `INFO` includes it.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
];

/// Renders the requested sections (none: the default set; `all`, `everything`, `default`).
pub fn render(s: &Server, requested: &[String]) -> String {
    let defaults = SECTIONS.iter().filter(|(_, d)| *d).map(|(n, _)| *n);
    let mut sections: Vec<&str> = Vec::new();
    if requested.is_empty() {
        sections.extend(defaults.clone());
    }
    for r in requested {
        match r.as_str() {
            "all" | "everything" => sections.extend(SECTIONS.iter().map(|(n, _)| *n)),
            "default" => sections.extend(defaults.clone()),
            other => sections.push(other),
        }
    }
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for name in sections {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let before = out.len();
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let added = section(s, name, &mut out);
        if !added {
            out.truncate(before);
        }
    }
    out
}

fn section(s: &Server, name: &str, o: &mut String) -> bool {
    macro_rules! w { ($($t:tt)*) => { let _ = write!(o, $($t)*); o.push_str("\r\n"); } }
    match name {
        "server" => {
            w!("# Server");
            w!("redis_version:{REDIS_VERSION}");
            w!("tessera_version:{}", env!("CARGO_PKG_VERSION"));
            w!("redis_git_sha1:00000000");
            w!("redis_git_dirty:0");
            w!("redis_build_id:0");
            w!("redis_mode:standalone");
            w!("os:{} {}", std::env::consts::OS, std::env::consts::ARCH);
            w!("arch_bits:64");
            w!("monotonic_clock:POSIX clock_gettime");
            w!("multiplexing_api:epoll");
            w!("atomicvar_api:c11-builtin");
            w!("gcc_version:0.0.0");
            w!("process_id:{}", std::process::id());
            w!("process_supervised:no");
            w!("run_id:{}", s.run_id);
            w!("tcp_port:{}", s.local_addr().port());
            w!("server_time_usec:{}", crate::server::unix_ms() * 1000);
            w!("uptime_in_seconds:{}", s.uptime());
            w!("uptime_in_days:{}", s.uptime() / 86400);
            w!("hz:{}", s.config.hz);
            w!("configured_hz:{}", s.config.hz);
            w!("lru_clock:{}", Server::lru_clock());
            w!(
                "executable:{}",
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            w!(
                "config_file:{}",
                s.config
                    .config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            w!("io_threads_active:0");
        }
        "clients" => {
            w!("# Clients");
            w!("connected_clients:{}", s.clients.len());
            w!("cluster_connections:0");
            w!("maxclients:{}", s.config.maxclients);
            let (mut max_in, mut max_out) = (0usize, 0usize);
            for (_, c) in s.clients.iter() {
                if let Some(io) = &c.io {
                    max_in = max_in.max(io.buf.len());
                    max_out = max_out.max(io.out.capacity());
                }
            }
            w!("client_recent_max_input_buffer:{max_in}");
            w!("client_recent_max_output_buffer:{max_out}");
            w!("blocked_clients:{}", s.blocking.count(&s.clients));
            w!("tracking_clients:{}", s.tracking.clients);
            w!("clients_in_timeout_table:0");
        }
        "memory" => {
            let m = crate::memory::stats();
            let overhead = s.db.buckets() as u64 * 8;
            let dataset = m.allocated.saturating_sub(m.startup);
            w!("# Memory");
            w!("used_memory:{}", m.allocated);
            w!("used_memory_human:{}", human(m.allocated));
            w!("used_memory_rss:{}", m.rss);
            w!("used_memory_rss_human:{}", human(m.rss));
            w!("used_memory_peak:{}", m.peak);
            w!("used_memory_peak_human:{}", human(m.peak));
            w!(
                "used_memory_peak_perc:{:.2}%",
                m.allocated as f64 * 100.0 / m.peak.max(1) as f64
            );
            w!("used_memory_overhead:{overhead}");
            w!("used_memory_startup:{}", m.startup);
            w!("used_memory_dataset:{dataset}");
            w!(
                "used_memory_dataset_perc:{:.2}%",
                dataset as f64 * 100.0 / m.allocated.max(1) as f64
            );
            w!("allocator_allocated:{}", m.allocated);
            w!("allocator_active:{}", m.active);
            w!("allocator_resident:{}", m.resident);
            w!("total_system_memory:{}", m.total_system);
            w!("total_system_memory_human:{}", human(m.total_system));
            let lua = s.scripting.used_memory() as u64;
            let vm_functions = s.scripting.functions_memory() as u64;
            let scripts = s.scripting.scripts_bytes as u64;
            let libs = &s.scripting.libraries;
            let functions = libs.code_bytes as u64;
            w!("used_memory_lua:{lua}");
            w!("used_memory_vm_eval:{lua}");
            w!("used_memory_lua_human:{}", human(lua));
            w!("used_memory_scripts_eval:{scripts}");
            w!("number_of_cached_scripts:{}", s.scripting.len());
            w!("number_of_functions:{}", libs.functions());
            w!("number_of_libraries:{}", libs.len());
            w!("used_memory_vm_functions:{vm_functions}");
            w!("used_memory_vm_total:{}", lua + vm_functions);
            w!("used_memory_vm_total_human:{}", human(lua + vm_functions));
            w!("used_memory_functions:{functions}");
            w!("used_memory_scripts:{}", scripts + functions);
            w!("used_memory_scripts_human:{}", human(scripts + functions));
            w!("maxmemory:{}", s.config.maxmemory);
            w!("maxmemory_human:{}", human(s.config.maxmemory));
            w!("maxmemory_policy:{}", s.config.maxmemory_policy);
            w!(
                "allocator_frag_ratio:{:.2}",
                m.active as f64 / m.allocated.max(1) as f64
            );
            w!(
                "allocator_frag_bytes:{}",
                m.active.saturating_sub(m.allocated)
            );
            w!(
                "allocator_rss_ratio:{:.2}",
                m.resident as f64 / m.active.max(1) as f64
            );
            w!(
                "allocator_rss_bytes:{}",
                m.resident as i64 - m.active as i64
            );
            w!(
                "rss_overhead_ratio:{:.2}",
                m.rss as f64 / m.resident.max(1) as f64
            );
            w!("rss_overhead_bytes:{}", m.rss as i64 - m.resident as i64);
            w!(
                "mem_fragmentation_ratio:{:.2}",
                m.rss as f64 / m.allocated.max(1) as f64
            );
            w!(
                "mem_fragmentation_bytes:{}",
                m.rss as i64 - m.allocated as i64
            );
            let clients: u64 = s
                .clients
                .iter()
                .filter_map(|(_, c)| c.io.as_ref())
                .map(|io| (io.buf.capacity() + io.out.capacity()) as u64)
                .sum();
            w!("mem_not_counted_for_evict:0");
            w!(
                "mem_replication_backlog:{}",
                s.repl.backlog.as_ref().map_or(0, |b| b.histlen())
            );
            w!("mem_total_replication_buffers:0");
            w!("mem_clients_slaves:0");
            w!("mem_clients_normal:{clients}");
            w!("mem_cluster_links:0");
            w!("mem_aof_buffer:0");
            w!("mem_allocator:jemalloc-5.3.0");
            w!("active_defrag_running:0");
            w!("lazyfree_pending_objects:0");
            w!("lazyfreed_objects:0");
        }
        "persistence" => {
            let p = &s.persist;
            let sv = &s.saves;
            let cp = s.checkpoint.as_ref();
            let bgsave = cp.filter(|c| !c.is_rewrite());
            let rewrite = cp.filter(|c| c.is_rewrite());
            let (processed, _) = s.db.snapshot_progress().unwrap_or((0, 0));
            let ok = |b: bool| if b { "ok" } else { "err" };
            w!("# Persistence");
            w!("loading:{}", u8::from(p.loading.is_some()));
            w!("async_loading:0");
            w!("current_cow_peak:0");
            w!("current_cow_size:0");
            w!("current_cow_size_age:0");
            w!("current_fork_perc:0.00");
            w!(
                "current_save_keys_processed:{}",
                if cp.is_some() { processed } else { 0 }
            );
            w!(
                "current_save_keys_total:{}",
                if cp.is_some() { s.db.len() } else { 0 }
            );
            w!(
                "rdb_changes_since_last_save:{}",
                s.dirty.saturating_sub(s.dirty_at_save)
            );
            w!("rdb_bgsave_in_progress:{}", u8::from(bgsave.is_some()));
            w!("rdb_last_save_time:{}", s.last_save);
            w!("rdb_last_bgsave_status:{}", ok(sv.last_ok));
            w!("rdb_last_bgsave_time_sec:{}", sv.last_duration_secs);
            w!(
                "rdb_current_bgsave_time_sec:{}",
                bgsave.map_or(-1, |c| c.started.elapsed().as_secs() as i64)
            );
            w!("rdb_saves:{}", sv.saves);
            w!("rdb_last_cow_size:0");
            w!("rdb_last_load_keys_expired:0");
            w!("rdb_last_load_keys_loaded:{}", p.last_load_keys);
            w!("aof_enabled:{}", u8::from(p.aof));
            w!("aof_rewrite_in_progress:{}", u8::from(rewrite.is_some()));
            w!("aof_rewrite_scheduled:{}", u8::from(sv.scheduled_rewrite));
            w!("aof_last_rewrite_time_sec:{}", sv.last_rewrite_secs);
            w!(
                "aof_current_rewrite_time_sec:{}",
                rewrite.map_or(-1, |c| c.started.elapsed().as_secs() as i64)
            );
            w!("aof_last_bgrewrite_status:{}", ok(sv.last_rewrite_ok));
            w!("aof_rewrites:{}", sv.rewrites);
            w!("aof_rewrites_consecutive_failures:0");
            w!("aof_last_write_status:{}", ok(p.write_error.is_none()));
            w!("aof_last_cow_size:0");
            w!("module_fork_in_progress:0");
            w!("module_fork_last_cow_size:0");
            if p.aof {
                let image = p.store.as_ref().map_or(0, |st| st.disk_sizes().1);
                let log = s.effects.offset.saturating_sub(sv.image_offset);
                w!("aof_current_size:{}", image + log);
                w!("aof_base_size:{image}");
                w!("aof_pending_rewrite:{}", u8::from(sv.scheduled_rewrite));
                w!("aof_buffer_length:{}", p.unwritten_len());
                w!("aof_pending_bio_fsync:0");
                w!("aof_delayed_fsync:0");
            }
            if let Some(l) = &p.loading {
                let elapsed = l.started.elapsed().as_secs_f64();
                let perc = if l.total_bytes > 0 {
                    (l.loaded_bytes as f64 * 100.0 / l.total_bytes as f64).min(100.0)
                } else {
                    0.0
                };
                let eta = if l.loaded_bytes > 0 && l.total_bytes > l.loaded_bytes {
                    ((l.total_bytes - l.loaded_bytes) as f64 * elapsed / l.loaded_bytes as f64)
                        as u64
                } else {
                    1
                };
                w!("loading_start_time:{}", l.started_unix);
                w!("loading_total_bytes:{}", l.total_bytes);
                w!("loading_rdb_used_mem:0");
                w!("loading_loaded_bytes:{}", l.loaded_bytes);
                w!("loading_loaded_perc:{perc:.2}");
                w!("loading_eta_seconds:{eta}");
            }
        }
        "stats" => {
            let st = &s.stats;
            let db = &s.db.stats;
            let (kin, kout) = st.instantaneous_kbps();
            w!("# Stats");
            w!(
                "total_connections_received:{}",
                st.total_connections_received
            );
            w!("total_commands_processed:{}", st.total_commands_processed);
            w!("instantaneous_ops_per_sec:{}", st.instantaneous_ops());
            w!("total_net_input_bytes:{}", st.net_input_bytes);
            w!("total_net_output_bytes:{}", st.net_output_bytes);
            w!("total_net_repl_input_bytes:0");
            w!("total_net_repl_output_bytes:0");
            w!("instantaneous_input_kbps:{kin:.2}");
            w!("instantaneous_output_kbps:{kout:.2}");
            w!("instantaneous_input_repl_kbps:0.00");
            w!("instantaneous_output_repl_kbps:0.00");
            w!("rejected_connections:{}", st.rejected_connections);
            w!("sync_full:{}", s.repl.sync_full);
            w!("sync_partial_ok:{}", s.repl.sync_partial_ok);
            w!("sync_partial_err:{}", s.repl.sync_partial_err);
            w!("expired_keys:{}", db.expired_keys);
            w!("expired_stale_perc:{:.2}", db.expired_stale_perc);
            w!(
                "expired_time_cap_reached_count:{}",
                db.expired_time_cap_reached_count
            );
            w!(
                "expire_cycle_cpu_milliseconds:{}",
                db.expire_cycle_us / 1000
            );
            w!("evicted_keys:{}", st.evicted_keys);
            w!("evicted_clients:0");
            w!("total_eviction_exceeded_time:0");
            w!("current_eviction_exceeded_time:0");
            w!("keyspace_hits:{}", st.keyspace_hits);
            w!("keyspace_misses:{}", st.keyspace_misses);
            w!("pubsub_channels:{}", s.pubsub.channel_count());
            w!("pubsub_patterns:{}", s.pubsub.pattern_count());
            w!("pubsubshard_channels:{}", s.pubsub.shard_channel_count());
            for f in [
                "latest_fork_usec:0",
                "total_forks:0",
                "migrate_cached_sockets:0",
                "slave_expires_tracked_keys:0",
                "active_defrag_hits:0",
                "active_defrag_misses:0",
                "active_defrag_key_hits:0",
                "active_defrag_key_misses:0",
                "total_active_defrag_time:0",
                "current_active_defrag_time:0",
            ] {
                w!("{f}");
            }
            w!("tracking_total_keys:{}", s.tracking.total_keys());
            w!("tracking_total_items:{}", s.tracking.total_items());
            w!("tracking_total_prefixes:{}", s.tracking.total_prefixes());
            w!("unexpected_error_replies:{}", st.unexpected_error_replies);
            w!("total_error_replies:{}", st.total_error_replies);
            w!("dump_payload_sanitizations:0");
            w!("total_reads_processed:{}", st.total_reads_processed);
            w!("total_writes_processed:{}", st.total_writes_processed);
            w!("io_threaded_reads_processed:0");
            w!("io_threaded_writes_processed:0");
            w!("reply_buffer_shrinks:0");
            w!("reply_buffer_expands:0");
        }
        "replication" => {
            w!("# Replication");
            let offset = s.effects.offset;
            match &s.repl.link {
                Some(link) => {
                    w!("role:slave");
                    w!("master_host:{}", link.host);
                    w!("master_port:{}", link.port);
                    w!(
                        "master_link_status:{}",
                        if link.is_up() { "up" } else { "down" }
                    );
                    let last_io = link
                        .client
                        .and_then(|t| s.clients.get(t))
                        .map_or(-1, |c| c.last_interaction.elapsed().as_secs() as i64);
                    w!("master_last_io_seconds_ago:{last_io}");
                    let transfer = link.transfer();
                    w!("master_sync_in_progress:{}", u8::from(transfer.is_some()));
                    w!("slave_read_repl_offset:{offset}");
                    w!("slave_repl_offset:{offset}");
                    if let Some((total, read, idle)) = transfer {
                        w!("master_sync_total_bytes:{total}");
                        w!("master_sync_read_bytes:{read}");
                        let left = if total >= 0 { total - read as i64 } else { -1 };
                        w!("master_sync_left_bytes:{left}");
                        let perc = if total > 0 {
                            read as f64 * 100.0 / total as f64
                        } else {
                            0.0
                        };
                        w!("master_sync_perc:{perc:.2}");
                        w!("master_sync_last_io_seconds_ago:{idle}");
                    }
                    if !link.is_up() {
                        w!(
                            "master_link_down_since_seconds:{}",
                            link.down_since.elapsed().as_secs()
                        );
                    }
                    w!("slave_priority:{}", s.config.replica_priority);
                    w!("slave_read_only:{}", u8::from(s.config.replica_read_only));
                    w!("replica_announced:1");
                }
                None => {
                    w!("role:master");
                }
            }
            w!("connected_slaves:{}", s.repl.replicas.len());
            if s.repl.link.is_none() && s.config.min_replicas_to_write > 0 {
                w!("min_slaves_good_slaves:{}", s.good_replicas());
            }
            let mut n = 0;
            for &t in &s.repl.replicas {
                let Some(c) = s.clients.get(t) else { continue };
                let Some(r) = c.replica.as_ref() else {
                    continue;
                };
                w!(
                    "slave{n}:ip={},port={},state={},offset={},lag={}",
                    crate::commands::replication::replica_ip(c),
                    r.listening_port,
                    r.phase.name(),
                    r.ack_offset,
                    r.ack_time.elapsed().as_secs()
                );
                n += 1;
            }
            w!("master_failover_state:no-failover");
            w!("master_replid:{}", s.repl.replid);
            match &s.repl.replid2 {
                Some((id, until)) => {
                    w!("master_replid2:{id}");
                    w!("master_repl_offset:{offset}");
                    w!("second_repl_offset:{}", until + 1);
                }
                None => {
                    w!("master_replid2:0000000000000000000000000000000000000000");
                    w!("master_repl_offset:{offset}");
                    w!("second_repl_offset:-1");
                }
            }
            match &s.repl.backlog {
                Some(b) => {
                    w!("repl_backlog_active:1");
                    w!("repl_backlog_size:{}", b.size());
                    w!("repl_backlog_first_byte_offset:{}", b.first() + 1);
                    w!("repl_backlog_histlen:{}", b.histlen());
                }
                None => {
                    w!("repl_backlog_active:0");
                    w!("repl_backlog_size:{}", s.config.repl_backlog_size);
                    w!("repl_backlog_first_byte_offset:0");
                    w!("repl_backlog_histlen:0");
                }
            }
        }
        "cpu" => {
            let (user, sys) = crate::memory::cpu_times();
            let (main_user, main_sys) = crate::memory::main_thread_cpu_times();
            w!("# CPU");
            w!("used_cpu_sys:{sys:.6}");
            w!("used_cpu_user:{user:.6}");
            w!("used_cpu_sys_children:0.000000");
            w!("used_cpu_user_children:0.000000");
            w!("used_cpu_sys_main_thread:{main_sys:.6}");
            w!("used_cpu_user_main_thread:{main_user:.6}");
        }
        "modules" => {
            w!("# Modules");
        }
        "errorstats" => {
            w!("# Errorstats");
            for (code, n) in &s.stats.errorstats {
                w!("errorstat_{code}:count={n}");
            }
        }
        "cluster" => {
            w!("# Cluster");
            w!("cluster_enabled:{}", u8::from(s.cluster.enabled));
            // Tessera's own: PUBLISH and SPUBLISH messages the publish bus could not hand to
            // another node (its queue was full or the node could not be reached).
            if let Some(bus) = &s.cluster.bus {
                w!("cluster_bus_dropped_messages:{}", bus.dropped());
            }
        }
        "keyspace" => {
            w!("# Keyspace");
            if !s.db.is_empty() {
                w!(
                    "db0:keys={},expires={},avg_ttl=0",
                    s.db.len(),
                    s.db.volatile_len()
                );
            }
        }
        "latencystats" => {
            w!("# Latencystats");
            let percentiles =
                crate::config::parse_percentiles(&s.config.latency_tracking_info_percentiles)
                    .unwrap_or_default();
            let mut hists: Vec<_> = s.commands.latency_histograms().collect();
            hists.sort_by_key(|(n, _)| *n);
            for (name, h) in hists {
                let fields: Vec<String> = percentiles
                    .iter()
                    .map(|p| format!("p{}={:.3}", trim_float(*p), h.percentile_us(*p)))
                    .collect();
                w!("latency_percentiles_usec_{name}:{}", fields.join(","));
            }
        }
        "commandstats" => {
            w!("# Commandstats");
            let mut stats: Vec<_> = s.commands.stats().collect();
            stats.sort_by_key(|(n, _)| *n);
            for (name, c) in stats {
                let per = if c.calls > 0 {
                    c.usec as f64 / c.calls as f64
                } else {
                    0.0
                };
                w!(
                    "cmdstat_{name}:calls={},usec={},usec_per_call={per:.2},rejected_calls={},failed_calls={}",
                    c.calls,
                    c.usec,
                    c.rejected_calls,
                    c.failed_calls
                );
            }
        }
        _ => return false,
    }
    true
}

/// A percentile as Redis prints it in field names: `%f` with trailing zeros removed.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Redis's `bytesToHuman`.
fn human(n: u64) -> String {
    let n = n as f64;
    const K: f64 = 1024.0;
    if n < K {
        format!("{}B", n as u64)
    } else if n < K * K {
        format!("{:.2}K", n / K)
    } else if n < K * K * K {
        format!("{:.2}M", n / (K * K))
    } else if n < K * K * K * K {
        format!("{:.2}G", n / (K * K * K))
    } else {
        format!("{:.2}T", n / (K * K * K * K))
    }
}
