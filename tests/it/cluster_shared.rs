//! What the nodes of a cluster database share (issue 8): a PUBLISH reaches the subscribers of
//! every node once, wherever it was made, as in Redis Cluster (clients connected straight to
//! the shards and the proxy's clients alike); the database's users are the shards' users too,
//! while the proxy, the replicas and the supervisor reach the shards as the internal identity.

use std::time::Duration;

use crate::proxy::{ProxiedDb, int, key_per_shard, proxied_db, strings};
use crate::support::{RawConn, wait_for};

/// Each shard's primary port and replica ports.
pub(crate) fn nodes(db: &ProxiedDb) -> Vec<(u16, Vec<u16>)> {
    let v = db.member().get("/v1/databases/cache").unwrap();
    let port = |p: &serde_json::Value| p["port"].as_u64().unwrap() as u16;
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let replicas = s["replicas"].as_array().unwrap().iter().map(port);
            (port(&s["primary"]), replicas.collect())
        })
        .collect()
}

/// Waits until every node has its configuration and a replica its primary's data.
pub(crate) fn wait_serving(nodes: &[(u16, Vec<u16>)]) {
    for (primary, replicas) in nodes {
        for &port in std::iter::once(primary).chain(replicas) {
            wait_for(Duration::from_secs(30), "every node to serve", || {
                RawConn::connect_timeout(port).is_some_and(|mut c| {
                    c.cmd_str(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                        && (port == *primary
                            || c.cmd_str(&["INFO", "replication"])
                                .contains("master_link_status:up"))
                })
            });
        }
    }
}

/// A connection to `port` subscribed with `command` (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE).
fn subscribed(port: u16, command: &str, name: &str) -> RawConn {
    let mut c = RawConn::connect(port);
    let reply = c.cmd_str(&[command, name]);
    assert!(
        reply.starts_with("*3\r\n") && reply.contains(name),
        "{reply}"
    );
    c
}

/// Every subscriber got exactly the one message `want` (`{pattern}` stands for the pattern
/// of a pmessage) and nothing else.
fn each_hears_once(subscribers: &mut [(&str, RawConn)], channel: &str, message: &str) {
    for (what, c) in subscribers.iter_mut() {
        let got: Vec<Vec<String>> = c
            .pending_replies(Duration::from_millis(400))
            .iter()
            .map(|f| strings(f))
            .collect();
        let want = match what.strip_prefix("pattern ") {
            Some(p) => vec!["pmessage", p, channel, message],
            None if what.starts_with("shard") => vec!["smessage", channel, message],
            None => vec!["message", channel, message],
        };
        assert_eq!(got, [want], "{what}");
    }
}

#[test]
fn publish_reaches_every_node_once() {
    let db = proxied_db(3, true, "none", 2);
    let nodes = nodes(&db);
    wait_serving(&nodes);
    let mut p = db.proxy.raw();
    // Channels are hashed as keys are: one whose slot is the third shard's.
    let channel = key_per_shard(&mut p)[2].clone();
    let ch = channel.as_str();
    let (owner, owner_replica) = (nodes[2].0, nodes[2].1[0]);

    // Subscribers straight on every node, a pattern on a replica of another shard, and the
    // proxy's clients (its channel on the owner, its pattern on every primary).
    let mut subs: Vec<(&str, RawConn)> = Vec::new();
    for (primary, replicas) in &nodes {
        subs.push(("primary", subscribed(*primary, "SUBSCRIBE", ch)));
        for &r in replicas {
            subs.push(("replica", subscribed(r, "SUBSCRIBE", ch)));
        }
    }
    subs.push((
        "pattern key*",
        subscribed(nodes[0].1[0], "PSUBSCRIBE", "key*"),
    ));
    subs.push(("proxy", subscribed(db.proxy.port, "SUBSCRIBE", ch)));
    subs.push(("pattern k*", subscribed(db.proxy.port, "PSUBSCRIBE", "k*")));

    // On a primary that does not serve the channel's slot: the reply counts that node's own
    // receivers, as Redis Cluster's does.
    let mut a = RawConn::connect(nodes[0].0);
    assert_eq!(a.cmd_str(&["PUBLISH", ch, "m1"]), ":1\r\n");
    each_hears_once(&mut subs, ch, "m1");
    // Through the proxy, on the owner: its subscriber and the proxy's two.
    assert_eq!(p.cmd_str(&["PUBLISH", ch, "m2"]), ":3\r\n");
    each_hears_once(&mut subs, ch, "m2");
    // On a replica, and from a script.
    let mut r = RawConn::connect(nodes[1].1[0]);
    assert_eq!(r.cmd_str(&["PUBLISH", ch, "m3"]), ":1\r\n");
    each_hears_once(&mut subs, ch, "m3");
    let script = "return redis.call('PUBLISH', ARGV[1], ARGV[2])";
    assert_eq!(
        a.cmd_str(&["EVAL", script, "0", ch, "m4"]),
        ":1\r\n",
        "a script's PUBLISH"
    );
    each_hears_once(&mut subs, ch, "m4");

    // A shard channel: the owner's replica hears it too (subscribed there without READONLY,
    // as a Redis replica allows); another shard redirects.
    let mut shard_subs = vec![
        ("shard replica", subscribed(owner_replica, "SSUBSCRIBE", ch)),
        ("shard proxy", subscribed(db.proxy.port, "SSUBSCRIBE", ch)),
    ];
    let mut o = RawConn::connect(owner);
    assert_eq!(o.cmd_str(&["SPUBLISH", ch, "s1"]), ":1\r\n");
    each_hears_once(&mut shard_subs, ch, "s1");
    assert!(a.cmd_str(&["SPUBLISH", ch, "s2"]).starts_with("-MOVED "));
    // A shard channel's message is no channel's.
    for (what, c) in subs.iter_mut().chain(&mut shard_subs) {
        assert_eq!(
            c.pending_replies(Duration::from_millis(100)),
            [[0u8; 0]; 0],
            "{what}"
        );
    }

    // Nobody poses as an internal connection.
    assert_eq!(
        a.cmd_str(&["AUTH", "internal bus", "guess"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        int(&a.cmd_str(&["PUBSUB", "NUMPAT"])),
        1,
        "the proxy's pattern"
    );
    // Every node took every message: none counted as missed.
    for port in [nodes[0].0, owner, owner_replica] {
        let info = RawConn::connect(port).cmd_str(&["INFO", "cluster"]);
        assert!(info.contains("cluster_enabled:1\r\n"), "{info}");
        assert!(
            info.contains("cluster_bus_dropped_messages:0\r\n"),
            "{info}"
        );
    }
}

#[test]
fn shards_take_the_database_users() {
    let db = proxied_db(3, true, "none", 1);
    let nodes = nodes(&db);
    wait_serving(&nodes);
    let mut admin = db.proxy.raw();
    let keys = key_per_shard(&mut admin);
    for rules in [
        &["admin", "on", ">apw", "+@all", "~*", "&*"][..],
        &["app", "on", ">pw", "~app:*", "+@string"],
    ] {
        let mut cmd = vec!["ACL", "SETUSER"];
        cmd.extend_from_slice(rules);
        assert_eq!(admin.cmd_str(&cmd), "+OK\r\n");
    }
    assert_eq!(admin.cmd_str(&["AUTH", "admin", "apw"]), "+OK\r\n");

    // A cluster client straight on a shard logs in as the database's user, with its rights.
    let app_key = format!("app:{{{}}}", keys[0]);
    let mut app = RawConn::connect(nodes[0].0);
    wait_for(
        Duration::from_secs(5),
        "the shard to have the users",
        || app.cmd_str(&["AUTH", "app", "pw"]) == "+OK\r\n",
    );
    assert_eq!(app.cmd_str(&["SET", &app_key, "v"]), "+OK\r\n");
    assert_eq!(
        app.cmd_str(&["GET", &keys[0]]),
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    );
    assert_eq!(
        app.cmd_str(&["ACL", "WHOAMI"]),
        "-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n"
    );
    let mut shard_admin = RawConn::connect(nodes[0].0);
    assert_eq!(shard_admin.cmd_str(&["AUTH", "admin", "apw"]), "+OK\r\n");
    assert_eq!(shard_admin.cmd_str(&["ACL", "WHOAMI"]), "$5\r\nadmin\r\n");
    assert!(
        shard_admin
            .cmd_str(&["ACL", "LIST"])
            .contains("user app on #")
    );

    // ACL SETUSER and DELUSER on a shard, a replica even, change the database's users, as
    // through the proxy: the answer comes once that shard has the change, and the proxy and
    // the other shards have it soon after.
    let mut r = RawConn::connect(nodes[2].1[0]);
    assert_eq!(r.cmd_str(&["AUTH", "admin", "apw"]), "+OK\r\n");
    assert_eq!(
        r.cmd_str(&["ACL", "SETUSER", "ops", "on", ">opw", "+@all", "~*"]),
        "+OK\r\n"
    );
    assert_eq!(r.cmd_str(&["AUTH", "ops", "opw"]), "+OK\r\n");
    for port in [nodes[0].0, db.proxy.port] {
        let mut c = RawConn::connect(port);
        wait_for(Duration::from_secs(5), "the user everywhere", || {
            c.cmd_str(&["AUTH", "ops", "opw"]) == "+OK\r\n"
        });
    }
    assert!(
        r.cmd_str(&["ACL", "SETUSER", "ops", "+nosuch"])
            .starts_with("-ERR Error in ACL SETUSER modifier '+nosuch'"),
    );
    assert_eq!(r.cmd_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.cmd_str(&["ACL", "SETUSER", "ops", "off"]), "+QUEUED\r\n");
    assert!(
        r.cmd_str(&["EXEC"])
            .starts_with("*1\r\n-ERR a cluster database's users change through its control group")
    );
    // A client that deletes its own user gets its answer, then is closed.
    let mut own = RawConn::connect(nodes[0].0);
    assert_eq!(own.cmd_str(&["AUTH", "ops", "opw"]), "+OK\r\n");
    own.send_cmd(&[b"ACL", b"DELUSER", b"ops"]);
    own.send_cmd(&[b"PING"]);
    assert_eq!(own.read_reply(), b":1\r\n");
    wait_for(Duration::from_secs(5), "the client to be closed", || {
        own.is_closed()
    });
    assert_eq!(
        own.pending_replies(Duration::from_millis(10)),
        [[0u8; 0]; 0],
        "nothing after the answer"
    );

    // The default user loses its rights: the proxy still reaches every shard for admin, a
    // replica that reconnects still replicates, the supervisor still reads the offsets.
    assert_eq!(
        admin.cmd_str(&["ACL", "SETUSER", "default", "-@all", "+ping"]),
        "+OK\r\n"
    );
    let mut plain = RawConn::connect(nodes[1].0);
    wait_for(
        Duration::from_secs(5),
        "the shard to restrict default",
        || plain.cmd_str(&["SET", "x", "1"]).starts_with("-NOPERM"),
    );
    for (i, (_, replicas)) in nodes.iter().enumerate() {
        let mut r = RawConn::connect(replicas[0]);
        assert_eq!(r.cmd_str(&["AUTH", "admin", "apw"]), "+OK\r\n");
        assert_eq!(int(&r.cmd_str(&["CLIENT", "KILL", "TYPE", "master"])), 1);
        assert_eq!(admin.cmd_str(&["SET", &keys[i], "after"]), "+OK\r\n");
        assert_eq!(r.cmd_str(&["READONLY"]), "+OK\r\n");
        wait_for(Duration::from_secs(10), "the replica to catch up", || {
            r.cmd_str(&["GET", &keys[i]]) == "$5\r\nafter\r\n"
        });
    }
    let processes = db.member().get("/v1/processes").unwrap();
    let shards: Vec<&serde_json::Value> = processes
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] != "proxy")
        .collect();
    assert_eq!(shards.len(), 6);
    for p in shards {
        assert!(p["offset"].as_u64().is_some(), "{p}");
    }

    // A deleted user's clients on the shards are closed.
    assert_eq!(admin.cmd_str(&["ACL", "DELUSER", "app"]), ":1\r\n");
    wait_for(
        Duration::from_secs(5),
        "the app client to be closed",
        || app.is_closed(),
    );
}
