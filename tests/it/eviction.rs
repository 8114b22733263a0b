//! maxmemory and the eviction policies: fill past the limit and check what remains.

use std::time::Duration;

use crate::support::{RawConn, TestServer};

fn used_memory(c: &mut RawConn) -> u64 {
    let info = c.cmd_str(&["INFO", "memory"]);
    let line = info
        .lines()
        .find(|l| l.starts_with("used_memory:"))
        .unwrap()
        .to_string();
    line["used_memory:".len()..].trim().parse().unwrap()
}

fn field(c: &mut RawConn, section: &str, name: &str) -> u64 {
    let info = c.cmd_str(&["INFO", section]);
    let prefix = format!("{name}:");
    let line = info
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap()
        .to_string();
    line[prefix.len()..].trim().parse().unwrap()
}

/// Sets maxmemory to what is used now plus `extra` bytes.
fn limit(c: &mut RawConn, extra: u64, policy: &str) -> u64 {
    let max = used_memory(c) + extra;
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "maxmemory", &max.to_string()]),
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", policy]),
        "+OK\r\n"
    );
    max
}

#[test]
fn noeviction_refuses_writes_but_serves_reads() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["SET", "before", "v"]);
    limit(&mut c, 1 << 20, "noeviction");
    let value = "x".repeat(1000);
    let mut refused = false;
    for i in 0..5000 {
        let reply = c.cmd_str(&["SET", &format!("k{i}"), &value]);
        if reply.starts_with("-OOM") {
            assert_eq!(
                reply,
                "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
            );
            refused = true;
            break;
        }
    }
    assert!(refused, "writes past maxmemory are refused");
    assert_eq!(c.cmd_str(&["GET", "before"]), "$1\r\nv\r\n");
    assert_eq!(
        c.cmd_str(&["DEL", "before"]),
        ":1\r\n",
        "commands that free memory still run"
    );
}

#[test]
fn every_policy_keeps_memory_bounded() {
    for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
        let s = TestServer::start(&[]);
        let mut c = s.raw();
        let max = limit(&mut c, 2 << 20, policy);
        let value = "x".repeat(500);
        for i in 0..20_000 {
            let reply = c.cmd_str(&["SET", &format!("k{i}"), &value]);
            assert_eq!(reply, "+OK\r\n", "{policy}: {reply}");
        }
        let evicted = field(&mut c, "stats", "evicted_keys");
        assert!(evicted > 5000, "{policy}: evicted {evicted}");
        assert!(
            used_memory(&mut c) < max + (1 << 20),
            "{policy}: memory stays near the limit"
        );
    }
}

#[test]
fn volatile_policies_only_evict_keys_with_a_ttl() {
    for policy in [
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let s = TestServer::start(&[]);
        let mut c = s.raw();
        let value = "x".repeat(500);
        for i in 0..200 {
            c.cmd_str(&["SET", &format!("keep{i}"), &value]);
        }
        limit(&mut c, 2 << 20, policy);
        let mut oom = false;
        for i in 0..20_000 {
            let reply = c.cmd_str(&["SET", &format!("tmp{i}"), &value, "EX", "1000"]);
            if reply.starts_with("-OOM") {
                oom = true;
                break;
            }
        }
        for i in 0..200 {
            assert_eq!(
                c.cmd_str(&["EXISTS", &format!("keep{i}")]),
                ":1\r\n",
                "{policy}"
            );
        }
        assert!(field(&mut c, "stats", "evicted_keys") > 1000, "{policy}");
        // Without volatile keys left to evict, writes of persistent keys end in OOM.
        for i in 0..20_000 {
            if c.cmd_str(&["SET", &format!("more{i}"), &value])
                .starts_with("-OOM")
            {
                oom = true;
                break;
            }
        }
        assert!(oom, "{policy}: OOM once only persistent keys remain");
    }
}

#[test]
fn lru_keeps_recently_used_keys() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let value = "x".repeat(500);
    for i in 0..3000 {
        c.cmd_str(&["SET", &format!("k{i}"), &value]);
    }
    // The LRU clock has a resolution of one second, as Redis's.
    std::thread::sleep(Duration::from_millis(2100));
    for i in 0..100 {
        c.cmd_str(&["GET", &format!("k{i}")]);
    }
    c.cmd_str(&["CONFIG", "SET", "maxmemory-samples", "10"]);
    limit(&mut c, 0, "allkeys-lru");
    for i in 0..1500 {
        c.cmd_str(&["SET", &format!("new{i}"), &value]);
    }
    let hot = (0..100)
        .filter(|i| c.cmd_str(&["EXISTS", &format!("k{i}")]) == ":1\r\n")
        .count();
    let cold = (1000..1100)
        .filter(|i| c.cmd_str(&["EXISTS", &format!("k{i}")]) == ":1\r\n")
        .count();
    assert!(
        hot > 90 && hot > cold,
        "hot keys survive: hot {hot}, cold {cold}"
    );
}

#[test]
fn lfu_makes_object_freq_meaningful() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]);
    c.cmd_str(&["SET", "k", "v"]);
    for _ in 0..50 {
        c.cmd_str(&["GET", "k"]);
    }
    let freq: i64 = c
        .cmd_str(&["OBJECT", "FREQ", "k"])
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(freq > 5, "frequency grows with accesses: {freq}");
    assert!(
        c.cmd_str(&["OBJECT", "IDLETIME", "k"])
            .starts_with("-ERR An LFU maxmemory policy is selected")
    );
    c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    assert!(
        c.cmd_str(&["OBJECT", "FREQ", "k"])
            .starts_with("-ERR An LFU maxmemory policy is not selected")
    );
}
