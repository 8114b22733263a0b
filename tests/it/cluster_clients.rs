//! A cluster client of another language against a database (issue 8): redis-py's
//! `RedisCluster` (Debian's python3-redis, installed by scripts/setup.sh) straight on the
//! shards, where it finds the six nodes and follows the slots, and through the proxy, which it
//! sees as one node serving every slot. The script is `tests/clients/redis_py_cluster.py`.

use std::process::Command;

use crate::cluster_shared::{nodes, wait_serving};
use crate::proxy::proxied_db;

/// Runs the script against `port`, where it should find `expected_nodes` nodes.
fn redis_py_cluster(port: u16, expected_nodes: usize) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/redis_py_cluster.py");
    let out = Command::new("/usr/bin/python3")
        .args([script, &port.to_string(), &expected_nodes.to_string()])
        .output()
        .expect("Debian's python3 (scripts/setup.sh installs it with python3-redis)");
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "redis-py against port {port}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_py_cluster_client_on_the_shards_and_through_the_proxy() {
    let db = proxied_db(3, true, "none", 2);
    let nodes = nodes(&db);
    wait_serving(&nodes);
    redis_py_cluster(nodes[1].0, 6);
    redis_py_cluster(db.proxy.port, 1);
}
