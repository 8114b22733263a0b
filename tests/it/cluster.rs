//! Shards in cluster mode (issue 8): a database of three shards with replicas, started by a
//! control member, redirecting as Redis Cluster does; cluster-aware clients (`redis-cli -c`,
//! the `redis` crate's cluster client) work against the shards directly.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::control::cluster;
use crate::support::{RawConn, free_port, wait_for};

/// Slot of a key, as Redis Cluster computes it (CRC16/XMODEM of the hash tag or key).
fn slot_of(conn: &mut RawConn, key: &str) -> u16 {
    let r = conn.cmd_str(&["CLUSTER", "KEYSLOT", key]);
    r.trim_start_matches(':').trim().parse().unwrap()
}

/// `slot range -> primary port` from CLUSTER SLOTS (RESP2, read with the redis crate).
fn slot_owners(port: u16) -> Vec<(u16, u16, u16)> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut c = client.get_connection().unwrap();
    let v: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
    let mut out = Vec::new();
    for range in v {
        let redis::Value::Array(parts) = range else {
            panic!("{range:?}")
        };
        let int = |v: &redis::Value| match v {
            redis::Value::Int(n) => *n as u16,
            other => panic!("{other:?}"),
        };
        let redis::Value::Array(primary) = &parts[2] else {
            panic!()
        };
        out.push((int(&parts[0]), int(&parts[1]), int(&primary[1])));
    }
    out.sort();
    out
}

#[test]
fn shards_redirect_and_cluster_clients_follow() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(1, dir.path());
    let m = &members[0];
    let db = m
        .post(
            "/v1/databases",
            json!({"name": "cache", "port": free_port(), "shards": 3, "replication": true,
                   "persistence": "none", "memory": 0}),
        )
        .unwrap();
    let shards = db["shards"].as_array().unwrap();
    let primaries: Vec<u16> = shards
        .iter()
        .map(|s| s["primary"]["port"].as_u64().unwrap() as u16)
        .collect();
    let replicas: Vec<u16> = shards
        .iter()
        .map(|s| s["replicas"][0]["port"].as_u64().unwrap() as u16)
        .collect();
    for &port in primaries.iter().chain(&replicas) {
        wait_for(
            Duration::from_secs(30),
            "every shard process to have the configuration",
            || {
                redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            },
        );
    }

    // Every node gives the same map: three ranges covering every slot, one per primary.
    let owners = slot_owners(primaries[0]);
    assert_eq!(owners.len(), 3, "{owners:?}");
    assert_eq!(owners[0].0, 0);
    assert_eq!(owners[2].1, 16383);
    for w in owners.windows(2) {
        assert_eq!(w[0].1 + 1, w[1].0, "{owners:?}");
    }
    let mut by_owner: Vec<u16> = owners.iter().map(|o| o.2).collect();
    by_owner.sort();
    let mut sorted = primaries.clone();
    sorted.sort();
    assert_eq!(by_owner, sorted);
    for &port in primaries.iter().chain(&replicas) {
        assert_eq!(slot_owners(port), owners);
    }
    let owner_of = |slot: u16| {
        owners
            .iter()
            .find(|o| o.0 <= slot && slot <= o.1)
            .unwrap()
            .2
    };

    // Node ids: 40 hex digits, one per process; NODES names each once, with `myself`.
    let mut ids = HashMap::new();
    let mut shard_ids = HashMap::new();
    for &port in primaries.iter().chain(&replicas) {
        let mut c = RawConn::connect(port);
        let id = c.cmd_str(&["CLUSTER", "MYID"]);
        let id = id.lines().nth(1).unwrap().to_string();
        assert_eq!(id.len(), 40);
        let nodes = c.cmd_str(&["CLUSTER", "NODES"]);
        let mine: Vec<&str> = nodes.lines().filter(|l| l.contains("myself")).collect();
        assert_eq!(mine.len(), 1, "{nodes}");
        assert!(mine[0].starts_with(&id), "{nodes}");
        assert_eq!(nodes.lines().filter(|l| l.len() > 40).count(), 6, "{nodes}");
        assert!(ids.insert(id, port).is_none());
        // A primary and its replica share their shard's id (Redis 7.2's CLUSTER MYSHARDID).
        let shard_id = c.cmd_str(&["CLUSTER", "MYSHARDID"]);
        assert!(shard_id.starts_with("$40\r\n"), "{shard_id}");
        *shard_ids.entry(shard_id).or_insert(0) += 1;
        // The control group's admin token stays out of CONFIG GET.
        assert_eq!(c.cmd_str(&["CONFIG", "GET", "cluster-token"]), "*0\r\n");
        let shards = c.cmd_str(&["CLUSTER", "SHARDS"]);
        assert_eq!(shards.matches("$4\r\nrole\r\n").count(), 6, "{shards}");
    }
    assert_eq!(shard_ids.len(), primaries.len(), "{shard_ids:?}");
    assert!(shard_ids.values().all(|&n| n == 2), "{shard_ids:?}");

    // Direct access: the owner serves a key, any other node answers MOVED to the owner;
    // multi-key commands across slots get CROSSSLOT.
    let mut conns: Vec<RawConn> = primaries.iter().map(|&p| RawConn::connect(p)).collect();
    let mut moved = 0;
    for i in 0..60 {
        let key = format!("key:{i}");
        let slot = slot_of(&mut conns[0], &key);
        let owner = owner_of(slot);
        for (j, c) in conns.iter_mut().enumerate() {
            let reply = c.cmd_str(&["SET", &key, "v"]);
            if primaries[j] == owner {
                assert_eq!(reply, "+OK\r\n");
            } else {
                assert_eq!(reply, format!("-MOVED {slot} 127.0.0.1:{owner}\r\n"));
                moved += 1;
            }
        }
    }
    assert_eq!(moved, 120);
    let cross = conns[0].cmd_str(&["MSET", "a", "1", "b", "2"]);
    assert_eq!(
        cross,
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    let tagged = owner_of(slot_of(&mut conns[0], "{t}"));
    let i = primaries.iter().position(|&p| p == tagged).unwrap();
    assert_eq!(
        conns[i].cmd_str(&["MSET", "{t}a", "1", "{t}b", "2"]),
        "+OK\r\n"
    );
    // A transaction across slots is discarded at EXEC with CROSSSLOT.
    let c = &mut conns[i];
    c.cmd_str(&["MULTI"]);
    c.cmd_str(&["SET", "{t}a", "3"]);
    c.cmd_str(&["GET", "{t}b"]);
    assert_eq!(c.cmd_str(&["EXEC"]), "*2\r\n+OK\r\n$1\r\n2\r\n");
    // Scripts: undeclared keys must be local and, without allow-cross-slot-keys, in the slot
    // of the declared (or first) keys.
    let t_slot = slot_of(&mut conns[0], "{t}");
    let mut local_other = None;
    let mut remote = None;
    for k in 0..1000 {
        let key = format!("probe:{k}");
        let slot = slot_of(&mut conns[0], &key);
        if owner_of(slot) == tagged && slot != t_slot {
            local_other.get_or_insert(key);
        } else if owner_of(slot) != tagged {
            remote.get_or_insert(key);
        }
    }
    let (local_other, remote) = (local_other.unwrap(), remote.unwrap());
    let c = &mut conns[i];
    assert_eq!(
        c.cmd_str(&["EVAL", "return redis.call('get', KEYS[1])", "1", "{t}a"]),
        "$1\r\n3\r\n"
    );
    let body = format!("return redis.call('get', '{remote}')");
    assert!(
        c.cmd_str(&["EVAL", &body, "0"])
            .starts_with("-ERR Script attempted to access a non local key in a cluster node")
    );
    let body = format!("redis.call('get', KEYS[1]) return redis.call('get', '{local_other}')");
    assert!(
        c.cmd_str(&["EVAL", &body, "1", "{t}a"])
            .starts_with("-ERR Script attempted to access keys that do not hash to the same slot")
    );
    let body = format!("#!lua flags=allow-cross-slot-keys\n{body}");
    assert_eq!(c.cmd_str(&["EVAL", &body, "1", "{t}a"]), "$-1\r\n");
    assert_eq!(
        c.cmd_str(&["EVAL", "#!lua flags=no-cluster\nreturn 1", "0"]),
        "-ERR Can not run script on cluster, 'no-cluster' flag is set.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["EVAL", "return 1", "2", "a", "b"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );

    // Replicas: MOVED to the primary, unless READONLY for a read of their own shard.
    let replica_of_tagged = replicas[i];
    let mut r = RawConn::connect(replica_of_tagged);
    assert_eq!(
        r.cmd_str(&["GET", "{t}a"]),
        format!(
            "-MOVED {} 127.0.0.1:{tagged}\r\n",
            slot_of(&mut conns[0], "{t}")
        )
    );
    assert_eq!(r.cmd_str(&["READONLY"]), "+OK\r\n");
    wait_for(Duration::from_secs(10), "the replica to catch up", || {
        r.cmd_str(&["GET", "{t}a"]) == "$1\r\n3\r\n"
    });
    assert!(r.cmd_str(&["SET", "{t}a", "4"]).starts_with("-MOVED "));
    assert_eq!(r.cmd_str(&["READWRITE"]), "+OK\r\n");
    assert!(r.cmd_str(&["GET", "{t}a"]).starts_with("-MOVED "));

    // redis-cli -c follows MOVED from any node.
    for k in 0..20 {
        let key = format!("cli:{k}");
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &primaries[k % 3].to_string(), "SET", &key, "x"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &primaries[(k + 1) % 3].to_string(), "GET", &key])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "x");
    }

    // The redis crate's cluster client, from one seed, across all slots.
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", primaries[0])])
            .unwrap();
    let mut cc = client.get_connection().unwrap();
    for k in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("cc:{k}"))
            .arg(k)
            .query(&mut cc)
            .unwrap();
    }
    let mut total = 0;
    for &p in &primaries {
        let mut c = RawConn::connect(p);
        let n: usize = c
            .cmd_str(&["EVAL", "return #redis.call('keys', 'cc:*')", "0"])
            .trim_start_matches(':')
            .trim()
            .parse()
            .unwrap();
        assert!(n > 100, "each shard holds a share: {n}");
        total += n;
    }
    assert_eq!(total, 500);
    for k in 0..500 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("cc:{k}"))
            .query(&mut cc)
            .unwrap();
        assert_eq!(v, k);
    }
    // COUNTKEYSINSLOT and GETKEYSINSLOT on the owner.
    let slot = slot_of(&mut conns[0], "cc:7");
    let i = primaries.iter().position(|&p| p == owner_of(slot)).unwrap();
    let n = conns[i].cmd_str(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
    assert!(n.starts_with(':') && n != ":0\r\n", "{n}");
    let keys = conns[i].cmd_str(&["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "10"]);
    assert!(keys.contains("cc:7"), "{keys}");
}

/// Without cluster mode the CLUSTER commands answer as a standalone redis-server does.
#[test]
fn cluster_commands_without_cluster_mode() {
    let tessera = crate::support::TestServer::start(&[]);
    let redis = crate::support::TestServer::start_redis();
    for args in [
        &["CLUSTER", "INFO"][..],
        &["CLUSTER", "KEYSLOT", "a"],
        &["CLUSTER", "SLOTS"],
        &["READONLY"],
        &["ASKING"],
        &["CLUSTER", "NOSUCH"],
        &["CLUSTER", "HELP"],
    ] {
        let a = RawConn::connect(tessera.port).cmd_str(args);
        let b = RawConn::connect(redis.port).cmd_str(args);
        assert_eq!(a, b, "{args:?}");
    }
}
