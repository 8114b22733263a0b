//! Blocking list commands: wake-ups, order, timeouts, CLIENT UNBLOCK, disconnects.

use std::time::{Duration, Instant};

use crate::support::{TestServer, encode, wait_for};

fn blocked_clients(s: &TestServer) -> usize {
    let info = s.raw().cmd_str(&["INFO", "clients"]);
    let line = info
        .lines()
        .find(|l| l.starts_with("blocked_clients:"))
        .unwrap()
        .to_string();
    line["blocked_clients:".len()..].trim().parse().unwrap()
}

#[test]
fn blpop_serves_at_once_when_data_is_there() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["RPUSH", "q", "a", "b"]);
    assert_eq!(
        c.cmd_str(&["BLPOP", "nothing", "q", "0"]),
        "*2\r\n$1\r\nq\r\n$1\r\na\r\n"
    );
    assert_eq!(
        c.cmd_str(&["BRPOP", "q", "0"]),
        "*2\r\n$1\r\nq\r\n$1\r\nb\r\n"
    );
    assert_eq!(c.cmd_str(&["EXISTS", "q"]), ":0\r\n");
}

#[test]
fn a_push_from_another_client_wakes_the_blocked_one() {
    let s = TestServer::start(&[]);
    let mut waiter = s.raw();
    waiter.send(&encode(&[b"BLPOP", b"q", b"0"]));
    wait_for(Duration::from_secs(5), "the client to block", || {
        blocked_clients(&s) == 1
    });
    assert_eq!(
        s.raw().cmd_str(&["PING"]),
        "+PONG\r\n",
        "others are not blocked"
    );
    assert_eq!(s.raw().cmd_str(&["LPUSH", "q", "x"]), ":1\r\n");
    assert_eq!(waiter.read_reply(), b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
    assert_eq!(
        s.raw().cmd_str(&["LLEN", "q"]),
        ":0\r\n",
        "the element went to the waiter"
    );
    assert_eq!(blocked_clients(&s), 0);
}

#[test]
fn timeouts_have_sub_second_precision() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let start = Instant::now();
    assert_eq!(c.cmd_str(&["BLPOP", "q", "0.2"]), "*-1\r\n");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_millis(900),
        "{elapsed:?}"
    );
    c.cmd_str(&["HELLO", "3"]);
    assert_eq!(c.cmd_str(&["BRPOPLPUSH", "q", "d", "0.05"]), "_\r\n");
}

#[test]
fn first_blocked_first_served() {
    let s = TestServer::start(&[]);
    let mut first = s.raw();
    let mut second = s.raw();
    first.send(&encode(&[b"BLPOP", b"q", b"0"]));
    wait_for(Duration::from_secs(5), "first to block", || {
        blocked_clients(&s) == 1
    });
    second.send(&encode(&[b"BLPOP", b"q", b"0"]));
    wait_for(Duration::from_secs(5), "second to block", || {
        blocked_clients(&s) == 2
    });
    s.raw().cmd_str(&["RPUSH", "q", "1"]);
    assert_eq!(first.read_reply(), b"*2\r\n$1\r\nq\r\n$1\r\n1\r\n");
    s.raw().cmd_str(&["RPUSH", "q", "2", "3"]);
    assert_eq!(second.read_reply(), b"*2\r\n$1\r\nq\r\n$1\r\n2\r\n");
    assert_eq!(
        s.raw().cmd_str(&["LRANGE", "q", "0", "-1"]),
        "*1\r\n$1\r\n3\r\n"
    );
}

#[test]
fn blmove_and_blmpop_are_woken() {
    let s = TestServer::start(&[]);
    let mut mover = s.raw();
    let mut mpop = s.raw();
    mover.send(&encode(&[
        b"BLMOVE", b"src", b"dst", b"LEFT", b"RIGHT", b"0",
    ]));
    mpop.send(&encode(&[
        b"BLMPOP", b"0", b"2", b"a", b"dst", b"LEFT", b"COUNT", b"5",
    ]));
    wait_for(Duration::from_secs(5), "both to block", || {
        blocked_clients(&s) == 2
    });
    s.raw().cmd_str(&["RPUSH", "src", "v"]);
    assert_eq!(mover.read_reply(), b"$1\r\nv\r\n");
    // The move pushed to dst, which wakes the BLMPOP client in turn.
    assert_eq!(mpop.read_reply(), b"*2\r\n$3\r\ndst\r\n*1\r\n$1\r\nv\r\n");
}

#[test]
fn client_unblock_releases_with_a_timeout_or_an_error() {
    let s = TestServer::start(&[]);
    let mut waiter = s.raw();
    let id = waiter.cmd_str(&["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim_end().to_string();
    waiter.send(&encode(&[b"BLPOP", b"q", b"0"]));
    wait_for(Duration::from_secs(5), "the client to block", || {
        blocked_clients(&s) == 1
    });
    assert_eq!(s.raw().cmd_str(&["CLIENT", "UNBLOCK", &id]), ":1\r\n");
    assert_eq!(waiter.read_reply(), b"*-1\r\n");
    assert_eq!(s.raw().cmd_str(&["CLIENT", "UNBLOCK", &id]), ":0\r\n");
    waiter.send(&encode(&[b"BRPOP", b"q", b"0"]));
    wait_for(Duration::from_secs(5), "the client to block", || {
        blocked_clients(&s) == 1
    });
    assert_eq!(
        s.raw().cmd_str(&["CLIENT", "UNBLOCK", &id, "ERROR"]),
        ":1\r\n"
    );
    assert_eq!(
        waiter.read_reply(),
        b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    );
    assert_eq!(
        s.raw().cmd_str(&["CLIENT", "UNBLOCK", &id, "MAYBE"]),
        "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
    );
}

#[test]
fn a_disconnected_waiter_takes_nothing() {
    let s = TestServer::start(&[]);
    let mut waiter = s.raw();
    waiter.send(&encode(&[b"BLPOP", b"q", b"0"]));
    wait_for(Duration::from_secs(5), "the client to block", || {
        blocked_clients(&s) == 1
    });
    drop(waiter);
    wait_for(Duration::from_secs(5), "the client to go", || {
        blocked_clients(&s) == 0
    });
    s.raw().cmd_str(&["RPUSH", "q", "kept"]);
    assert_eq!(
        s.raw().cmd_str(&["LRANGE", "q", "0", "-1"]),
        "*1\r\n$4\r\nkept\r\n"
    );
}

#[test]
fn pipelined_commands_wait_for_the_blocked_one() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let mut batch = encode(&[b"BLPOP", b"q", b"0"]);
    batch.extend(encode(&[b"GET", b"after"]));
    c.send(&batch);
    wait_for(Duration::from_secs(5), "the client to block", || {
        blocked_clients(&s) == 1
    });
    s.raw().cmd_str(&["SET", "after", "yes"]);
    s.raw().cmd_str(&["LPUSH", "q", "x"]);
    assert_eq!(c.read_reply(), b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
    assert_eq!(c.read_reply(), b"$3\r\nyes\r\n");
}

#[test]
fn timeout_errors() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd_str(&["BLPOP", "q", "-1"]),
        "-ERR timeout is negative\r\n"
    );
    assert_eq!(
        c.cmd_str(&["BLPOP", "q", "abc"]),
        "-ERR timeout is not a float or out of range\r\n"
    );
    c.cmd_str(&["SET", "str", "x"]);
    assert!(c.cmd_str(&["BLPOP", "str", "0"]).starts_with("-WRONGTYPE"));
}

#[test]
fn bzpopmin_is_woken_by_zadd() {
    let s = TestServer::start(&[]);
    let mut waiter = s.raw();
    waiter.send(&encode(&[b"BZPOPMIN", b"z", b"0"]));
    wait_for(Duration::from_secs(5), "the client to block", || {
        blocked_clients(&s) == 1
    });
    s.raw().cmd_str(&["ZADD", "z", "2", "b", "1", "a"]);
    assert_eq!(
        waiter.read_reply(),
        b"*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    let mut mpop = s.raw();
    mpop.send(&encode(&[b"BZMPOP", b"0.1", b"1", b"none", b"MAX"]));
    assert_eq!(mpop.read_reply(), b"*-1\r\n");
}
