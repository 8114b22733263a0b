//! Server and introspection commands, configuration, shutdown.

use std::time::Duration;

use redis::Commands;

use crate::support::{TestServer, encode, wait_for};

fn info(r: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(r).unwrap()
}

fn field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO:\n{info}"))
        .to_string()
}

#[test]
fn info_has_redis_fields() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.set("a", 1).unwrap();
    let _: Option<String> = r.get("nokey").unwrap();
    let all = info(&mut r, "everything");
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Keyspace",
        "# Commandstats",
        "# Errorstats",
    ] {
        assert!(all.contains(section), "missing {section}");
    }
    assert_eq!(field(&all, "tcp_port"), s.port.to_string());
    assert_eq!(field(&all, "connected_clients"), "1");
    assert!(field(&all, "used_memory").parse::<u64>().unwrap() > 0);
    assert!(field(&all, "used_memory_rss").parse::<u64>().unwrap() > 0);
    assert_eq!(field(&all, "keyspace_misses"), "1");
    assert!(all.contains("db0:keys=1,expires=0"));
    assert!(all.contains("cmdstat_set:calls=1,"));
    let only = info(&mut r, "memory");
    assert!(only.starts_with("# Memory") && !only.contains("# Server"));
}

#[test]
fn errorstats_and_commandstats_count_failures() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["SET", "s", "x"]);
    c.cmd_str(&["INCR", "s"]);
    c.cmd_str(&["GET"]);
    c.cmd_str(&["NOSUCH"]);
    let text = c.cmd_str(&["INFO", "everything"]);
    assert!(text.contains("errorstat_ERR:count=3"), "{text}");
    assert!(
        text.contains("cmdstat_incr:calls=1,") && text.contains("failed_calls=1"),
        "{text}"
    );
    assert!(
        text.contains("cmdstat_get:calls=0,") && text.contains("rejected_calls=1"),
        "{text}"
    );
    c.cmd_str(&["CONFIG", "RESETSTAT"]);
    let text = c.cmd_str(&["INFO", "errorstats"]);
    assert!(!text.contains("errorstat_ERR"), "{text}");
}

#[test]
fn config_set_get_and_rewrite() {
    let s = TestServer::start_with_config("maxclients = 500\nhz = 20\n");
    let mut r = s.redis();
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut r)
        .unwrap();
    assert_eq!(v, ["maxclients", "500"]);
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("h?")
        .query(&mut r)
        .unwrap();
    assert_eq!(v, ["hz", "20"]);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg("600")
        .arg("slowlog-max-len")
        .arg("5")
        .query(&mut r)
        .unwrap();
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg("1")
        .arg("hz")
        .arg("x")
        .query::<()>(&mut r);
    assert!(err.is_err());
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut r)
        .unwrap();
    assert_eq!(
        v,
        ["maxclients", "600"],
        "a failed CONFIG SET changes nothing"
    );
    let _: () = redis::cmd("CONFIG").arg("REWRITE").query(&mut r).unwrap();
}

#[test]
fn slowlog_records_slow_commands() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg("0")
        .query(&mut r)
        .unwrap();
    let _: () = r.set("k", "v").unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut r).unwrap();
    assert!(len >= 2);
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1)
        .query(&mut r)
        .unwrap();
    assert_eq!(entries.len(), 1);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg("-1")
        .query(&mut r)
        .unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut r).unwrap();
    let _: () = r.set("k", "v").unwrap();
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut r).unwrap();
    assert_eq!(len, 0);
}

#[test]
fn latency_monitor_records_spikes() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("latency-monitor-threshold")
        .arg("10")
        .query(&mut r)
        .unwrap();
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.05")
        .query(&mut r)
        .unwrap();
    let latest: Vec<(String, i64, i64, i64)> =
        redis::cmd("LATENCY").arg("LATEST").query(&mut r).unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].0, "command");
    assert!(latest[0].2 >= 50);
    let graph: String = redis::cmd("LATENCY")
        .arg("GRAPH")
        .arg("command")
        .query(&mut r)
        .unwrap();
    assert!(graph.starts_with("command - high "), "{graph}");
    assert!(graph.contains(&"-".repeat(80)), "{graph}");
    let err = redis::cmd("LATENCY")
        .arg("GRAPH")
        .arg("nosuch")
        .query::<String>(&mut r);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("No samples available for event 'nosuch'")
    );
    let n: i64 = redis::cmd("LATENCY").arg("RESET").query(&mut r).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn latency_histograms_track_every_command() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    for i in 0..100 {
        c.cmd_str(&["SET", &format!("k{i}"), "v"]);
    }
    c.cmd_str(&["CONFIG", "GET", "hz"]);
    let h = c.cmd_str(&["LATENCY", "HISTOGRAM", "set", "config"]);
    assert!(
        h.starts_with("*4\r\n$10\r\nconfig|get\r\n*4\r\n$5\r\ncalls\r\n:1\r\n"),
        "{h}"
    );
    assert!(
        h.contains("$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:100\r\n$14\r\nhistogram_usec\r\n"),
        "{h}"
    );
    let info = c.cmd_str(&["INFO", "latencystats"]);
    assert!(info.contains("latency_percentiles_usec_set:p50="), "{info}");
    assert!(info.contains(",p99.9="), "{info}");
    c.cmd_str(&[
        "CONFIG",
        "SET",
        "latency-tracking-info-percentiles",
        "50 75",
    ]);
    let info = c.cmd_str(&["INFO", "latencystats"]);
    assert!(info.contains(",p75=") && !info.contains("p99"), "{info}");
    c.cmd_str(&["CONFIG", "RESETSTAT"]);
    c.cmd_str(&["CONFIG", "SET", "latency-tracking", "no"]);
    c.cmd_str(&["SET", "k", "v"]);
    assert_eq!(c.cmd_str(&["LATENCY", "HISTOGRAM", "set"]), "*0\r\n");
}

#[test]
fn client_commands() {
    let s = TestServer::start(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(a.cmd_str(&["CLIENT", "SETNAME", "alpha"]), "+OK\r\n");
    let id_b = b.cmd_str(&["CLIENT", "ID"]);
    let id_b = id_b.trim_start_matches(':').trim_end();
    let list = a.cmd_str(&["CLIENT", "LIST"]);
    assert!(
        list.contains("name=alpha") && list.contains(&format!("id={id_b} ")),
        "{list}"
    );
    assert_eq!(a.cmd_str(&["CLIENT", "KILL", "ID", id_b]), ":1\r\n");
    assert!(b.is_closed());
    // CLIENT REPLY OFF silences replies until ON.
    a.send(&crate::support::encode(&[b"CLIENT", b"REPLY", b"OFF"]));
    a.send(&crate::support::encode(&[b"SET", b"x", b"1"]));
    assert_eq!(a.cmd_str(&["CLIENT", "REPLY", "ON"]), "+OK\r\n");
    a.send(&crate::support::encode(&[b"CLIENT", b"REPLY", b"SKIP"]));
    a.send(&crate::support::encode(&[b"GET", b"x"]));
    assert_eq!(a.cmd_str(&["GET", "x"]), "$1\r\n1\r\n");
    assert_eq!(
        a.cmd_str(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"]),
        "+OK\r\n"
    );
    assert!(a.cmd_str(&["CLIENT", "INFO"]).contains("lib-name=mylib"));
}

#[test]
fn client_pause_holds_writes_until_unpause() {
    let s = TestServer::start(&[]);
    let mut admin = s.raw();
    let mut writer = s.raw();
    assert_eq!(
        admin.cmd_str(&["CLIENT", "PAUSE", "100000", "WRITE"]),
        "+OK\r\n"
    );
    assert_eq!(
        writer.cmd_str(&["GET", "k"]),
        "$-1\r\n",
        "reads go through a WRITE pause"
    );
    writer.send(&crate::support::encode(&[b"SET", b"k", b"v"]));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(admin.cmd_str(&["GET", "k"]), "$-1\r\n", "the write is held");
    assert_eq!(admin.cmd_str(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    assert_eq!(writer.read_reply(), b"+OK\r\n");
    assert_eq!(admin.cmd_str(&["GET", "k"]), "$1\r\nv\r\n");
    // An EXEC is a write when its queued commands write, as in Redis; a read-only one runs.
    assert_eq!(writer.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(writer.cmd_str(&["GET", "k"]), "+QUEUED\r\n");
    assert_eq!(
        admin.cmd_str(&["CLIENT", "PAUSE", "100000", "WRITE"]),
        "+OK\r\n"
    );
    assert_eq!(writer.cmd_str(&["EXEC"]), "*1\r\n$1\r\nv\r\n");
    assert_eq!(admin.cmd_str(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    assert_eq!(writer.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(writer.cmd_str(&["INCR", "n"]), "+QUEUED\r\n");
    assert_eq!(
        admin.cmd_str(&["CLIENT", "PAUSE", "100000", "WRITE"]),
        "+OK\r\n"
    );
    writer.send(&crate::support::encode(&[b"EXEC"]));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(admin.cmd_str(&["GET", "n"]), "$-1\r\n", "the EXEC is held");
    assert_eq!(admin.cmd_str(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    assert_eq!(writer.read_reply(), b"*1\r\n:1\r\n");
}

#[test]
fn monitor_streams_commands() {
    let s = TestServer::start(&[]);
    let mut m = s.raw();
    assert_eq!(m.cmd_str(&["MONITOR"]), "+OK\r\n");
    let mut c = s.raw();
    c.cmd_str(&["SET", "mk", "a b\"c"]);
    let line = String::from_utf8_lossy(&m.read_reply()).into_owned();
    assert!(line.contains("\"SET\" \"mk\" \"a b\\\"c\""), "{line}");
}

#[test]
fn shutdown_command_stops_the_server() {
    let mut s = TestServer::start(&[]);
    let mut c = s.raw();
    c.send(&crate::support::encode(&[b"SHUTDOWN"]));
    assert!(c.is_closed());
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.set("k", "v").unwrap();
    s.signal("-TERM");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(s.log().contains("shutdown"), "{}", s.log());
}

#[test]
fn idle_clients_are_closed_after_timeout() {
    let s = TestServer::start_with_config("timeout = 1\n");
    let mut c = s.raw();
    assert_eq!(c.cmd_str(&["PING"]), "+PONG\r\n");
    wait_for(
        Duration::from_secs(5),
        "the idle client to be closed",
        || c.is_closed(),
    );
}

#[test]
fn thousands_of_clients_are_served_at_once() {
    // The test process needs a descriptor per connection too.
    rlimit::increase_nofile_limit(6000).unwrap();
    let s = TestServer::start(&[]);
    let mut clients: Vec<_> = (0..2000).map(|_| s.raw()).collect();
    for c in clients.iter_mut() {
        c.send(b"PING\r\n");
    }
    for c in clients.iter_mut() {
        assert_eq!(c.read_reply(), b"+PONG\r\n");
    }
    let mut admin = s.raw();
    let info = admin.cmd_str(&["INFO", "clients"]);
    assert!(info.contains("connected_clients:2001"), "{info}");
    drop(clients);
    wait_for(Duration::from_secs(10), "the clients to be gone", || {
        admin
            .cmd_str(&["INFO", "clients"])
            .contains("connected_clients:1\r")
    });
}

/// Tessera's own settings: adaptive busy polling and jemalloc's background thread can be
/// changed at run time, with range checks, and the server keeps answering either way.
#[test]
fn busy_polling_and_jemalloc_settings_apply_at_run_time() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd_str(&["CONFIG", "GET", "busy-poll-us"]),
        "*2\r\n$12\r\nbusy-poll-us\r\n$2\r\n50\r\n"
    );
    assert!(
        c.cmd_str(&["CONFIG", "SET", "busy-poll-us", "2000000"])
            .starts_with("-ERR CONFIG SET failed")
    );
    for value in ["0", "1000", "50"] {
        assert_eq!(
            c.cmd_str(&["CONFIG", "SET", "busy-poll-us", value]),
            "+OK\r\n"
        );
        for i in 0..200 {
            assert_eq!(c.cmd_str(&["SET", "k", &i.to_string()]), "+OK\r\n");
        }
        assert_eq!(c.cmd_str(&["GET", "k"]), "$3\r\n199\r\n");
    }
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "jemalloc-bg-thread", "no"]),
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["CONFIG", "GET", "jemalloc-bg-thread"]),
        "*2\r\n$18\r\njemalloc-bg-thread\r\n$2\r\nno\r\n"
    );
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "jemalloc-bg-thread", "yes"]),
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["PING"]), "+PONG\r\n");
}

/// `sched-policy`: the event loop thread (the process's main thread) runs under SCHED_BATCH
/// (policy 3 in /proc) when asked, at start and at run time, and back under SCHED_OTHER (0).
#[test]
fn sched_policy_sets_the_loop_threads_policy() {
    let s = TestServer::start(&["--sched-policy", "batch"]);
    let policy = || {
        let text = std::fs::read_to_string(format!("/proc/{}/sched", s.pid())).unwrap();
        let line = text.lines().find(|l| l.starts_with("policy")).unwrap();
        line.rsplit(':').next().unwrap().trim().to_string()
    };
    // (The loop starts just after the server says where it listens.)
    wait_for(Duration::from_secs(5), "SCHED_BATCH", || policy() == "3");
    let mut c = s.raw();
    assert_eq!(
        c.cmd_str(&["CONFIG", "GET", "sched-policy"]),
        "*2\r\n$12\r\nsched-policy\r\n$5\r\nbatch\r\n"
    );
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "sched-policy", "normal"]),
        "+OK\r\n"
    );
    assert_eq!(policy(), "0");
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "sched-policy", "fast"]),
        "-ERR CONFIG SET failed (possibly related to argument 'sched-policy') - argument must be one of the following: normal, batch\r\n"
    );
    assert_eq!(policy(), "0");
}

/// `client-output-buffer-limit normal`: off by default (Tessera then holds a slow reader back
/// by TCP); when set, a client whose unsent replies pass the hard limit is disconnected, as by
/// Redis, while other clients carry on.
#[test]
fn normal_output_buffer_limit_disconnects_like_redis() {
    for server in [TestServer::start(&[]), TestServer::start_redis()] {
        let mut admin = server.raw();
        let value = vec![b'x'; 2_000_000];
        assert_eq!(admin.cmd(&[b"SET", b"big", &value]), b"+OK\r\n");
        let mut c = server.raw();
        assert_eq!(c.cmd(&[b"GET", b"big"]).len(), value.len() + 12);
        assert_eq!(
            admin.cmd_str(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "normal 1mb 0 0"
            ]),
            "+OK\r\n"
        );
        c.send(&encode(&[b"GET", b"big"]));
        assert!(c.is_closed(), "the client went over the hard limit");
        assert_eq!(admin.cmd_str(&["GET", "missing"]), "$-1\r\n");
        assert_eq!(admin.cmd_str(&["PING"]), "+PONG\r\n");
    }
}
