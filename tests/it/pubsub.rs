//! Pub/sub across clients: delivery, patterns, shard channels, introspection, slow subscribers.

use std::io::Write;
use std::time::Duration;

use crate::support::{TestServer, wait_for};

#[test]
fn messages_reach_channel_and_pattern_subscribers() {
    let s = TestServer::start(&[]);
    let mut sub = s.raw();
    assert_eq!(
        sub.cmd_str(&["SUBSCRIBE", "news"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        sub.cmd_str(&["PSUBSCRIBE", "n*"]),
        "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n"
    );
    let mut p = s.raw();
    assert_eq!(p.cmd_str(&["PUBLISH", "news", "hi"]), ":2\r\n");
    assert_eq!(
        sub.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        sub.read_reply(),
        b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        p.cmd_str(&["PUBSUB", "NUMSUB", "news", "other"]),
        "*4\r\n$4\r\nnews\r\n:1\r\n$5\r\nother\r\n:0\r\n"
    );
    assert_eq!(p.cmd_str(&["PUBSUB", "NUMPAT"]), ":1\r\n");
    assert_eq!(
        p.cmd_str(&["PUBSUB", "CHANNELS", "n*"]),
        "*1\r\n$4\r\nnews\r\n"
    );
    let info = p.cmd_str(&["INFO", "stats"]);
    assert!(
        info.contains("pubsub_channels:1") && info.contains("pubsub_patterns:1"),
        "{info}"
    );
    drop(sub);
    wait_for(Duration::from_secs(5), "the subscriber to go", || {
        p.cmd_str(&["PUBSUB", "NUMPAT"]) == ":0\r\n"
    });
    assert_eq!(p.cmd_str(&["PUBLISH", "news", "hi"]), ":0\r\n");
}

#[test]
fn resp3_subscribers_get_pushes_and_keep_running_commands() {
    let s = TestServer::start(&[]);
    let mut sub = s.raw();
    sub.cmd_str(&["HELLO", "3"]);
    assert_eq!(
        sub.cmd_str(&["SSUBSCRIBE", "shard"]),
        ">3\r\n$10\r\nssubscribe\r\n$5\r\nshard\r\n:1\r\n"
    );
    assert_eq!(sub.cmd_str(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(s.raw().cmd_str(&["SPUBLISH", "shard", "m"]), ":1\r\n");
    assert_eq!(
        sub.read_reply(),
        b">3\r\n$8\r\nsmessage\r\n$5\r\nshard\r\n$1\r\nm\r\n"
    );
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected() {
    let s = TestServer::start(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd_str(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 256kb 60"
        ]),
        "+OK\r\n"
    );
    assert!(
        admin
            .cmd_str(&["CONFIG", "GET", "client-output-buffer-limit"])
            .contains("pubsub 1048576 262144 60")
    );
    let mut sub = s.raw();
    sub.cmd_str(&["SUBSCRIBE", "firehose"]);
    // Stop reading; publish far more than the hard limit (and than the socket buffers hold).
    let payload = "x".repeat(64 * 1024);
    let mut publisher = s.raw();
    for _ in 0..400 {
        let reply = publisher.cmd_str(&["PUBLISH", "firehose", &payload]);
        if reply == ":0\r\n" {
            break;
        }
    }
    wait_for(
        Duration::from_secs(10),
        "the slow subscriber to be dropped",
        || {
            publisher
                .cmd_str(&["PUBSUB", "NUMSUB", "firehose"])
                .ends_with(":0\r\n")
        },
    );
    let _ = sub.stream.flush();
}
