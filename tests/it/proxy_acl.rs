//! Users and permissions through the proxy (issue 8): ACL SETUSER and DELUSER through one
//! proxy change the database's users in the cluster configuration, every proxy of the database
//! checks every command against them, and the frames a client reads are a real redis-server's.

use std::time::Duration;

use serde_json::json;

use crate::proxy::{key_per_shard, proxied_db, same_frames_as_redis};
use crate::support::{RawConn, wait_for};

/// Every frame of `cmds` on `c`, as text.
fn run(c: &mut RawConn, cmds: &[&[&str]], got: &mut Vec<String>) {
    for cmd in cmds {
        got.push(c.cmd_str(cmd));
    }
    got.push("--".into());
}

/// Users made, read back, checked and deleted through `port`; `k` are keys on three shards.
fn acl_script(port: u16, k: &[String]) -> Vec<String> {
    let mut admin = RawConn::connect(port);
    let mut got = Vec::new();
    run(
        &mut admin,
        &[
            // (Rules that list single commands are left out: Redis lists them in its hash
            // table's order, Tessera in name order; docs/COMMANDS.md.)
            &[
                "ACL", "SETUSER", "app", "on", ">s3cret", "~app:*", "&news:*", "+@string",
            ],
            &[
                "ACL",
                "SETUSER",
                "app",
                "+@list",
                "+@pubsub",
                "(+get ~other:*)",
            ],
            &["ACL", "SETUSER", "bad", "+nosuch"],
            &["ACL", "SETUSER", "bad", "+get\r\n+ping"],
            &["ACL", "SETUSER", "bad", "(+get", "~x"],
            &["ACL", "SETUSER", "bad name"],
            &["ACL", "SETUSER", "off-user"],
            &["ACL", "SETUSER", "sorter", "on", ">p", "~s:*", "+@all"],
            &["ACL", "GETUSER", "app"],
            &["ACL", "GETUSER", "nobody"],
            &["ACL", "LIST"],
            &["ACL", "USERS"],
            &["ACL", "WHOAMI"],
            &["ACL", "DRYRUN", "app", "SET", "app:1", "x"],
            &["ACL", "DRYRUN", "app", "SET", "other:1", "x"],
            &["ACL", "DRYRUN", "app", "GET", "other:1"],
            &["ACL", "DRYRUN", "app", "FLUSHALL"],
            &["ACL", "DRYRUN", "app", "PUBLISH", "elsewhere", "x"],
            &["ACL", "DRYRUN", "nobody", "GET", "x"],
            &["ACL", "DRYRUN", "app", "NOSUCH"],
            &["ACL", "CAT"],
            &["ACL", "CAT", "nosuch"],
            &["ACL", "GENPASS", "0"],
            &["ACL", "LOG", "RESET"],
        ],
        &mut got,
    );
    let mut app = RawConn::connect(port);
    let k1 = format!("app:{{{}}}", k[0]);
    let k2 = format!("app:{{{}}}", k[1]);
    run(
        &mut app,
        &[
            &["AUTH", "app", "wrong"],
            &["AUTH", "nobody", "s3cret"],
            &["AUTH", "app", "s3cret"],
            &["SET", &k1, "1"],
            &["MSET", &k1, "a", &k2, "b"],
            &["MGET", &k1, &k2],
            &["SET", &k[2], "x"],
            &["GET", "other:1"],
            &["MGET", &k1, &k[1]],
            &["FLUSHALL"],
            &["KEYS", "*"],
            &["PUBLISH", "news:today", "hi"],
            &["PUBLISH", "elsewhere", "hi"],
            &["MULTI"],
            &["INCR", &k1],
            &["DEL", &k[0]],
            &["EXEC"],
            &["GET", &k1],
            &["ACL", "WHOAMI"],
        ],
        &mut got,
    );
    // SORT's BY and GET patterns read keys it does not name: only for a user who may read
    // every key.
    let mut sorter = RawConn::connect(port);
    let s1 = format!("s:{{{}}}", k[0]);
    run(
        &mut sorter,
        &[
            &["AUTH", "sorter", "p"],
            &["RPUSH", &s1, "3", "1", "2"],
            &["SORT", &s1],
            &["SORT", &s1, "BY", "nosort"],
            &["SORT", &s1, "BY", "w_*"],
            &["SORT", &s1, "GET", "#"],
            &["SORT_RO", &s1, "DESC", "GET", "#"],
            &["SORT", &s1, "LIMIT", "0", "x", "GET", "#"],
            &["SORT", &s1, "NOSUCH", "GET", "#"],
        ],
        &mut got,
    );
    // Rules changed between MULTI and EXEC: a command no longer allowed answers Redis's
    // "rules changed" error in its place in EXEC's reply; the others run.
    let mut mover = RawConn::connect(port);
    let m1 = format!("m:{{{}}}", k[1]);
    run(
        &mut admin,
        &[&["ACL", "SETUSER", "mover", "on", ">m", "~m:*", "+@all"]],
        &mut got,
    );
    run(
        &mut mover,
        &[
            &["AUTH", "mover", "m"],
            &["MULTI"],
            &["SET", &m1, "1"],
            &["INCR", &m1],
            &["GET", &m1],
            &["INCRBY", &m1, "5"],
        ],
        &mut got,
    );
    run(
        &mut admin,
        &[&["ACL", "SETUSER", "mover", "-incr", "-incrby"]],
        &mut got,
    );
    run(&mut mover, &[&["EXEC"], &["GET", &m1]], &mut got);
    // A client of the user, blocked when the user is deleted.
    app.send_cmd(&[b"BLPOP", format!("app:{{{}}}:list", k[2]).as_bytes(), b"0"]);
    std::thread::sleep(Duration::from_millis(50));
    run(
        &mut admin,
        &[
            &["ACL", "DELUSER", "default"],
            &["ACL", "DELUSER", "off-user", "nobody"],
            &["ACL", "USERS"],
            &["ACL", "DELUSER", "app"],
        ],
        &mut got,
    );
    // The deleted user's connection is closed, blocked as it is.
    app.stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut closed = false;
    for _ in 0..250 {
        if app.is_closed() {
            closed = true;
            break;
        }
    }
    got.push(format!("closed: {closed}"));
    got.push(admin.cmd_str(&["AUTH", "app", "s3cret"]));
    got
}

#[test]
fn proxy_checks_users_as_redis_does() {
    let db = proxied_db(3, false, "none", 2);
    let keys = key_per_shard(&mut db.proxy.raw());
    same_frames_as_redis(db.proxy.port, &keys, acl_script);
}

/// The users live in the cluster configuration: a second proxy knows them, the REST API shows
/// them with hashed passwords only, and each proxy's ACL LOG records its own refusals.
#[test]
fn proxy_users_reach_every_proxy_of_the_database() {
    let db = proxied_db(3, false, "none", 2);
    let other = db.second_proxy();
    let mut admin = db.proxy.raw();
    assert_eq!(
        admin.cmd_str(&[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">pw",
            "~app:*",
            "+@all",
            "-flushall"
        ]),
        "+OK\r\n"
    );
    let users = db.member().get("/v1/databases/cache/users").unwrap();
    let hash = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
    assert_eq!(
        users,
        json!([format!(
            "user app on #{hash} ~app:* resetchannels +@all -flushall"
        )])
    );
    let mut there = other.raw();
    wait_for(
        Duration::from_secs(10),
        "the second proxy to know app",
        || there.cmd_str(&["AUTH", "app", "pw"]) == "+OK\r\n",
    );
    assert_eq!(there.cmd_str(&["SET", "app:1", "v"]), "+OK\r\n");
    assert_eq!(
        there.cmd_str(&["FLUSHALL"]),
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n"
    );
    // A script would run with the proxy's rights on the shard: only a user allowed
    // everything may run one.
    let eval = there.cmd_str(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "app:1"]);
    assert!(eval.starts_with("-NOPERM "), "{eval}");
    assert_eq!(
        admin.cmd_str(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "app:1"]),
        "$1\r\nv\r\n"
    );
    let log = there.cmd_str(&["ACL", "LOG"]);
    assert!(log.contains("flushall") && log.contains("app"), "{log}");
    assert_eq!(admin.cmd_str(&["ACL", "LOG"]), "*0\r\n");
    // Through the REST API too, with a clear-text password hashed on the way in.
    db.member()
        .call(
            reqwest::Method::PUT,
            "/v1/databases/cache/users/ops",
            Some(json!({"rules": ["on", ">ops-pw", "+@all", "~*"]})),
        )
        .unwrap();
    let users = db.member().get("/v1/databases/cache/users").unwrap();
    assert!(!users.to_string().contains("ops-pw"), "{users}");
    wait_for(Duration::from_secs(10), "the proxy to know ops", || {
        RawConn::connect(db.proxy.port).cmd_str(&["AUTH", "ops", "ops-pw"]) == "+OK\r\n"
    });
    // CLIENT LIST shows each client's user, and CLIENT KILL USER finds them.
    let mut mine = db.proxy.raw();
    assert_eq!(mine.cmd_str(&["AUTH", "app", "pw"]), "+OK\r\n");
    assert!(admin.cmd_str(&["CLIENT", "LIST"]).contains(" user=app "));
    assert_eq!(admin.cmd_str(&["CLIENT", "KILL", "USER", "app"]), ":1\r\n");
    assert_eq!(
        admin.cmd_str(&["CLIENT", "KILL", "USER", "nobody"]),
        "-ERR No such user 'nobody'\r\n"
    );
    // Deleting the user on one proxy closes its connections on the other.
    assert_eq!(admin.cmd_str(&["ACL", "DELUSER", "app", "ops"]), ":2\r\n");
    there
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    wait_for(Duration::from_secs(10), "app's connection to close", || {
        there.is_closed()
    });
    assert_eq!(
        RawConn::connect(other.port).cmd_str(&["AUTH", "app", "pw"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
}

/// Without the control group, users cannot change (the error says why, at once) and the
/// proxy goes on serving with the users it has.
#[test]
fn proxy_refuses_user_changes_without_the_control_group() {
    let mut db = proxied_db(3, false, "none", 1);
    let mut admin = db.proxy.raw();
    assert_eq!(
        admin.cmd_str(&["ACL", "SETUSER", "app", "on", ">pw", "+@all", "~*"]),
        "+OK\r\n"
    );
    db.member_mut().kill();
    let started = std::time::Instant::now();
    let reply = admin.cmd_str(&["ACL", "SETUSER", "late", "on"]);
    assert!(reply.starts_with("-ERR control member "), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let reply = admin.cmd_str(&["ACL", "DELUSER", "app"]);
    assert!(reply.starts_with("-ERR control member "), "{reply}");
    let mut app = db.proxy.raw();
    assert_eq!(app.cmd_str(&["AUTH", "app", "pw"]), "+OK\r\n");
    assert_eq!(app.cmd_str(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(app.cmd_str(&["GET", "k"]), "$1\r\nv\r\n");
}
