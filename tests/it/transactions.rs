//! MULTI/EXEC/WATCH across clients: invalidation by writes, expiry and flushes; wake-ups.

use std::time::Duration;

use crate::support::{TestServer, encode, wait_for};

#[test]
fn another_clients_write_invalidates_watch() {
    let s = TestServer::start(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    a.cmd_str(&["SET", "k", "1"]);
    assert_eq!(a.cmd_str(&["WATCH", "k"]), "+OK\r\n");
    b.cmd_str(&["INCR", "k"]);
    a.cmd_str(&["MULTI"]);
    a.cmd_str(&["SET", "k", "mine"]);
    assert_eq!(a.cmd_str(&["EXEC"]), "*-1\r\n");
    assert_eq!(a.cmd_str(&["GET", "k"]), "$1\r\n2\r\n");
    // Without interference the transaction runs.
    a.cmd_str(&["WATCH", "k"]);
    a.cmd_str(&["MULTI"]);
    a.cmd_str(&["SET", "k", "mine"]);
    assert_eq!(a.cmd_str(&["EXEC"]), "*1\r\n+OK\r\n");
}

#[test]
fn expiry_and_flushall_invalidate_watch() {
    let s = TestServer::start(&[]);
    let mut a = s.raw();
    a.cmd_str(&["SET", "k", "v", "PX", "50"]);
    a.cmd_str(&["WATCH", "k"]);
    std::thread::sleep(Duration::from_millis(120));
    a.cmd_str(&["MULTI"]);
    a.cmd_str(&["PING"]);
    assert_eq!(
        a.cmd_str(&["EXEC"]),
        "*-1\r\n",
        "an expired watched key fails EXEC"
    );
    a.cmd_str(&["SET", "k", "v"]);
    a.cmd_str(&["WATCH", "k"]);
    s.raw().cmd_str(&["FLUSHALL"]);
    a.cmd_str(&["MULTI"]);
    a.cmd_str(&["PING"]);
    assert_eq!(a.cmd_str(&["EXEC"]), "*-1\r\n");
    a.cmd_str(&["WATCH", "missing"]);
    s.raw().cmd_str(&["FLUSHALL"]);
    a.cmd_str(&["MULTI"]);
    a.cmd_str(&["PING"]);
    assert_eq!(
        a.cmd_str(&["EXEC"]),
        "*1\r\n+PONG\r\n",
        "flushing a missing key changes nothing"
    );
}

/// Only real modifications invalidate a watch, as in Redis: each write that changes nothing
/// leaves the transaction alone, each that changes something aborts it. The same holds with
/// keyspace notifications on, which share the signal.
#[test]
fn only_real_modifications_invalidate_watch() {
    let s = TestServer::start(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    b.cmd_str(&["SET", "str", "v"]);
    b.cmd_str(&["SADD", "set", "m"]);
    b.cmd_str(&["ZADD", "z", "1", "m"]);
    b.cmd_str(&["RPUSH", "l", "x"]);
    let cases: &[(&[&str], bool)] = &[
        (&["SET", "str", "w", "NX"], false),
        (&["SADD", "set", "m"], false),
        (&["SREM", "set", "nope"], false),
        (&["ZADD", "z", "1", "m"], false),
        (&["LREM", "l", "0", "nope"], false),
        (&["HDEL", "nohash", "f"], false),
        (&["PERSIST", "str"], false),
        (&["EXPIRE", "str", "100", "XX"], false),
        (&["DEL", "missing"], false),
        (&["SET", "str", "w", "XX"], true),
        (&["SADD", "set", "n"], true),
        (&["ZADD", "z", "2", "m"], true),
        (&["LPOP", "l"], true),
        (&["DEL", "set"], true),
    ];
    for notify in ["", "KEA"] {
        a.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", notify]);
        for (cmd, invalidates) in cases {
            let key = cmd[1];
            a.cmd_str(&["WATCH", key]);
            b.cmd_str(cmd);
            a.cmd_str(&["MULTI"]);
            a.cmd_str(&["PING"]);
            let expected = if *invalidates {
                "*-1\r\n"
            } else {
                "*1\r\n+PONG\r\n"
            };
            assert_eq!(
                a.cmd_str(&["EXEC"]),
                expected,
                "{cmd:?} (notify '{notify}')"
            );
        }
        b.cmd_str(&["SADD", "set", "m"]);
        b.cmd_str(&["ZADD", "z", "1", "m"]);
        b.cmd_str(&["RPUSH", "l", "x"]);
    }
}

#[test]
fn runtime_errors_do_not_stop_the_transaction() {
    let s = TestServer::start(&[]);
    let mut a = s.raw();
    a.cmd_str(&["SET", "s", "text"]);
    a.cmd_str(&["MULTI"]);
    a.cmd_str(&["INCR", "s"]);
    a.cmd_str(&["SET", "t", "1"]);
    let reply = a.cmd_str(&["EXEC"]);
    assert!(
        reply.starts_with("*2\r\n-ERR value is not an integer"),
        "{reply}"
    );
    assert!(reply.ends_with("+OK\r\n"), "{reply}");
    assert_eq!(a.cmd_str(&["GET", "t"]), "$1\r\n1\r\n");
}

#[test]
fn exec_wakes_blocked_clients() {
    let s = TestServer::start(&[]);
    let mut waiter = s.raw();
    waiter.send(&encode(&[b"BLPOP", b"q", b"0"]));
    let mut admin = s.raw();
    wait_for(Duration::from_secs(5), "the client to block", || {
        admin
            .cmd_str(&["INFO", "clients"])
            .contains("blocked_clients:1")
    });
    let mut a = s.raw();
    a.cmd_str(&["MULTI"]);
    a.cmd_str(&["RPUSH", "q", "1", "2"]);
    a.cmd_str(&["LPOP", "q"]);
    assert_eq!(a.cmd_str(&["EXEC"]), "*2\r\n:2\r\n$1\r\n1\r\n");
    // The waiter is served after the whole transaction, with what is left.
    assert_eq!(waiter.read_reply(), b"*2\r\n$1\r\nq\r\n$1\r\n2\r\n");
}
