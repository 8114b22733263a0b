//! Client-side caching: CLIENT TRACKING in its modes, invalidations over RESP3 pushes and
//! RESP2 redirection, compared with a real `redis-server` step by step.

use std::collections::HashMap;

use crate::support::{RawConn, TestServer};

/// One step: a connection (created on first use, `HELLO 3` for ids from 10 on) sends a
/// command, or reads one more reply (`<read>`: an invalidation written to it). `{id:N}` is
/// connection N's client id on that server.
type Step<'a> = (usize, &'a [&'a str]);

const READ: &str = "<read>";

const CORPUS: &[Step] = &[
    // Default mode, RESP3: a key read is invalidated once, when it changes.
    (10, &["CLIENT", "TRACKING", "on"]),
    (10, &["CLIENT", "TRACKINGINFO"]),
    (10, &["CLIENT", "GETREDIR"]),
    (10, &["GET", "a"]),
    (10, &["MGET", "b", "c"]),
    (1, &["SET", "a", "1"]),
    (10, &[READ]),
    (1, &["SET", "a", "2"]),
    (1, &["MSET", "b", "1", "c", "1"]),
    (10, &[READ]),
    (10, &[READ]),
    // The client's own writes: the invalidation follows the reply.
    (10, &["GET", "d"]),
    (10, &["SET", "d", "1"]),
    (10, &[READ]),
    (10, &["GET", "d"]),
    (1, &["EXPIRE", "d", "100"]),
    (10, &[READ]),
    (10, &["GET", "e"]),
    (1, &["FLUSHALL"]),
    (10, &[READ]),
    (10, &["FLUSHDB"]),
    (10, &[READ]),
    (10, &["CLIENT", "TRACKING", "off"]),
    // NOLOOP.
    (11, &["CLIENT", "TRACKING", "on", "noloop"]),
    (11, &["GET", "n"]),
    (11, &["SET", "n", "1"]),
    (11, &["GET", "n"]),
    (1, &["DEL", "n"]),
    (11, &[READ]),
    // OPTIN / OPTOUT with CACHING.
    (12, &["CLIENT", "TRACKING", "on", "optin"]),
    (12, &["GET", "o1"]),
    (12, &["CLIENT", "CACHING", "yes"]),
    (12, &["CLIENT", "TRACKINGINFO"]),
    (12, &["GET", "o2"]),
    (12, &["CLIENT", "TRACKINGINFO"]),
    (1, &["SET", "o1", "x"]),
    (1, &["SET", "o2", "x"]),
    (12, &[READ]),
    (13, &["CLIENT", "TRACKING", "on", "optout"]),
    (13, &["CLIENT", "CACHING", "no"]),
    (13, &["GET", "p1"]),
    (13, &["GET", "p2"]),
    (1, &["SET", "p1", "x"]),
    (1, &["SET", "p2", "x"]),
    (13, &[READ]),
    // Broadcast by prefix, with NOLOOP.
    (
        14,
        &[
            "CLIENT", "TRACKING", "on", "bcast", "prefix", "user:", "prefix", "item:", "noloop",
        ],
    ),
    (14, &["CLIENT", "TRACKINGINFO"]),
    (1, &["SET", "user:1", "x"]),
    (14, &[READ]),
    (1, &["MSET", "item:1", "x", "item:2", "y", "other", "z"]),
    (14, &[READ]),
    (14, &["SET", "user:2", "x"]),
    (1, &["SET", "user:3", "x"]),
    (14, &[READ]),
    (15, &["CLIENT", "TRACKING", "on", "bcast"]),
    (1, &["SET", "anything", "x"]),
    (15, &[READ]),
    // RESP2: invalidations go to a subscribed connection.
    (2, &["SUBSCRIBE", "__redis__:invalidate"]),
    (3, &["CLIENT", "TRACKING", "on", "redirect", "{id:2}"]),
    (3, &["CLIENT", "GETREDIR"]),
    (3, &["GET", "r1"]),
    (1, &["SET", "r1", "x"]),
    (2, &[READ]),
    (3, &["GET", "r2"]),
    (1, &["FLUSHALL"]),
    (2, &[READ]),
    // Errors.
    (4, &["CLIENT", "TRACKING", "on", "redirect", "999999"]),
    (
        4,
        &[
            "CLIENT", "TRACKING", "on", "redirect", "{id:2}", "redirect", "{id:2}",
        ],
    ),
    (4, &["CLIENT", "TRACKING", "on", "redirect", "x"]),
    (4, &["CLIENT", "TRACKING", "on", "prefix", "a"]),
    (4, &["CLIENT", "TRACKING", "on", "bcast", "optin"]),
    (4, &["CLIENT", "TRACKING", "on", "optin", "optout"]),
    (
        4,
        &[
            "CLIENT", "TRACKING", "on", "bcast", "prefix", "a", "prefix", "ab",
        ],
    ),
    (4, &["CLIENT", "TRACKING", "maybe"]),
    (4, &["CLIENT", "TRACKING", "on", "foo"]),
    (4, &["CLIENT", "CACHING", "yes"]),
    (4, &["CLIENT", "TRACKING", "on", "optin"]),
    (4, &["CLIENT", "TRACKING", "on", "optout"]),
    (4, &["CLIENT", "TRACKING", "on", "bcast"]),
    (4, &["CLIENT", "CACHING", "no"]),
    (4, &["CLIENT", "CACHING", "maybe"]),
    (4, &["CLIENT", "TRACKING", "off"]),
    (4, &["CLIENT", "TRACKING", "on", "bcast", "prefix", "a"]),
    (4, &["CLIENT", "TRACKING", "on", "bcast", "prefix", "ab"]),
    (4, &["CLIENT", "TRACKINGINFO"]),
    (4, &["CLIENT", "GETREDIR"]),
    // Scripts: the keys the script is given are tracked when it reads.
    (16, &["CLIENT", "TRACKING", "on"]),
    (
        16,
        &["EVAL", "return redis.call('get', KEYS[1])", "1", "s1"],
    ),
    (16, &["EVAL", "return redis.call('get', 's2')", "0"]),
    (1, &["SET", "s2", "x"]),
    (1, &["SET", "s1", "x"]),
    (16, &[READ]),
    // A broken redirection is reported to a RESP3 client.
    (17, &["CLIENT", "TRACKING", "on", "redirect", "{id:5}"]),
    (5, &["QUIT"]),
    (17, &["GET", "t1"]),
    (1, &["SET", "t1", "x"]),
    (17, &[READ]),
    (17, &["CLIENT", "TRACKINGINFO"]),
    // RESET turns tracking off.
    (18, &["CLIENT", "TRACKING", "on"]),
    (18, &["RESET"]),
    (18, &["CLIENT", "TRACKINGINFO"]),
];

fn run_corpus(port: u16) -> Vec<Vec<u8>> {
    let mut conns: HashMap<usize, RawConn> = HashMap::new();
    let mut ids: HashMap<usize, String> = HashMap::new();
    let mut out = Vec::new();
    let open = |n: usize, conns: &mut HashMap<usize, RawConn>, ids: &mut HashMap<usize, String>| {
        if let std::collections::hash_map::Entry::Vacant(slot) = conns.entry(n) {
            let mut c = RawConn::connect(port);
            if n >= 10 {
                c.cmd_str(&["HELLO", "3"]);
            }
            let id = c.cmd_str(&["CLIENT", "ID"]);
            ids.insert(n, id.trim_start_matches(':').trim_end().to_string());
            slot.insert(c);
        }
    };
    for (n, args) in CORPUS {
        for a in args.iter() {
            if let Some(rest) = a.strip_prefix("{id:") {
                let m: usize = rest.trim_end_matches('}').parse().unwrap();
                open(m, &mut conns, &mut ids);
            }
        }
        open(*n, &mut conns, &mut ids);
        let c = conns.get_mut(n).unwrap();
        if args[0] == READ {
            out.push(c.read_reply());
            continue;
        }
        let args: Vec<String> = args
            .iter()
            .map(|a| match a.strip_prefix("{id:") {
                Some(rest) => ids[&rest.trim_end_matches('}').parse::<usize>().unwrap()].clone(),
                None => a.to_string(),
            })
            .collect();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut reply = c.cmd(&args);
        if args[0].eq_ignore_ascii_case(b"quit") {
            reply.clear();
        }
        out.push(reply);
    }
    out
}

#[test]
fn tracking_replies_as_redis_server() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let a = run_corpus(tessera.port);
    let b = run_corpus(redis.port);
    // The corpus reaches invalidations of every kind.
    let text: Vec<String> = a
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    let count = |what: &str| text.iter().filter(|r| r.contains(what)).count();
    assert!(count(">2\r\n$10\r\ninvalidate\r\n*") >= 8, "{text:?}");
    assert!(count("invalidate\r\n_\r\n") >= 2, "{text:?}");
    assert!(
        count("$20\r\n__redis__:invalidate\r\n*1\r\n$2\r\nr1") == 1,
        "{text:?}"
    );
    assert!(count("__redis__:invalidate\r\n$-1\r\n") == 1, "{text:?}");
    assert!(count("tracking-redir-broken") == 1, "{text:?}");
    assert!(
        count("*2\r\n$6\r\nitem:1\r\n$6\r\nitem:2\r\n") == 1,
        "{text:?}"
    );
    let mut diffs = Vec::new();
    for ((step, x), y) in CORPUS.iter().zip(&a).zip(&b) {
        // Redirect ids differ between the servers.
        let norm = |r: &[u8]| {
            let t = String::from_utf8_lossy(r).into_owned();
            let ids_in_reply = step.1[0] == READ
                || (step.1[0] == "CLIENT" && step.1.len() > 1 && step.1[1] != "TRACKING");
            if ids_in_reply {
                t.split("\r\n")
                    .map(|l| {
                        if l.starts_with(':') && l != ":-1" && l != ":0" {
                            ":<id>"
                        } else {
                            l
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\r\n")
            } else {
                t
            }
        };
        if norm(x) != norm(y) {
            diffs.push(format!(
                "{step:?}\n  tessera: {:?}\n  redis:   {:?}",
                norm(x),
                norm(y)
            ));
        }
    }
    crate::support::assert_no_diffs(&diffs);
}

#[test]
fn tracking_shows_in_client_list_and_info() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.cmd_str(&["HELLO", "3"]);
    c.cmd_str(&["CLIENT", "TRACKING", "on", "bcast", "prefix", "a"]);
    let mut d = s.raw();
    d.cmd_str(&["HELLO", "3"]);
    d.cmd_str(&["CLIENT", "TRACKING", "on"]);
    d.cmd_str(&["MGET", "k1", "k2"]);
    let list = d.cmd_str(&["CLIENT", "LIST"]);
    assert!(list.contains("flags=tB "), "{list}");
    assert!(list.contains("flags=t "), "{list}");
    let info = d.cmd_str(&["INFO"]);
    for field in [
        "tracking_clients:2",
        "tracking_total_keys:2",
        "tracking_total_items:2",
        "tracking_total_prefixes:1",
    ] {
        assert!(info.contains(field), "{field} not in INFO");
    }
    drop(c);
    d.cmd_str(&["CLIENT", "TRACKING", "off"]);
    let mut e = s.raw();
    crate::support::wait_for(
        std::time::Duration::from_secs(5),
        "tracking to stop",
        || {
            e.cmd_str(&["INFO", "stats"])
                .contains("tracking_total_prefixes:0")
                && e.cmd_str(&["INFO", "clients"])
                    .contains("tracking_clients:0")
        },
    );
}

/// Sends a command and reads frames up to its reply: returns the keys of the invalidation
/// pushes that came first, and the reply.
fn cmd_with_pushes(c: &mut RawConn, args: &[&str]) -> (Vec<String>, String) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send_cmd(&args);
    let mut keys = Vec::new();
    loop {
        let frame = String::from_utf8(c.read_reply()).unwrap();
        let Some(rest) = frame.strip_prefix(">2\r\n$10\r\ninvalidate\r\n*") else {
            return (keys, frame);
        };
        // `*<n>\r\n` then `$<len>\r\n<key>\r\n` per key.
        let lines: Vec<&str> = rest.split("\r\n").collect();
        keys.extend(
            lines[1..]
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| p[1].to_string()),
        );
    }
}

/// `tracking-table-max-keys`: past the limit, random keys are forgotten before the next
/// command and their readers told, as with redis-server (which keys is random on both).
#[test]
fn tracking_table_keeps_to_its_limit() {
    let tessera = TestServer::start(&[]);
    let redis = TestServer::start_redis();
    let run = |port: u16| {
        let mut a = RawConn::connect(port);
        let mut b = RawConn::connect(port);
        for c in [&mut a, &mut b] {
            c.cmd_str(&["HELLO", "3"]);
            c.cmd_str(&["CLIENT", "TRACKING", "on"]);
        }
        assert_eq!(
            a.cmd_str(&["CONFIG", "SET", "tracking-table-max-keys", "5"]),
            "+OK\r\n"
        );
        // b reads three keys a reads too: forgetting one of them tells both.
        for k in ["k0", "k1", "k2"] {
            assert_eq!(
                cmd_with_pushes(&mut b, &["GET", k]),
                (vec![], "_\r\n".into())
            );
        }
        let mut heard_a = Vec::new();
        for i in 0..10 {
            let (keys, reply) = cmd_with_pushes(&mut a, &["GET", &format!("k{i}")]);
            assert_eq!(reply, "_\r\n");
            heard_a.extend(keys);
        }
        let (keys, info) = cmd_with_pushes(&mut a, &["INFO", "stats"]);
        heard_a.extend(keys);
        let total = |info: &str, field: &str| -> usize {
            let line = info.lines().find(|l| l.starts_with(field)).unwrap();
            line[field.len() + 1..].parse().unwrap()
        };
        let keys = total(&info, "tracking_total_keys");
        // b's invalidations are waiting on its connection; a PING collects them.
        let (heard_b, _) = cmd_with_pushes(&mut b, &["PING"]);
        let forgotten_b = heard_a
            .iter()
            .filter(|k| ["k0", "k1", "k2"].contains(&k.as_str()));
        assert_eq!(
            {
                let mut f: Vec<&String> = forgotten_b.collect();
                f.sort();
                f
            },
            {
                let mut h: Vec<&String> = heard_b.iter().collect();
                h.sort();
                h
            },
            "b hears exactly the forgotten keys it read"
        );
        let mut distinct = heard_a.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), heard_a.len(), "a key is forgotten once");
        // Limit 0: no limit.
        a.cmd_str(&["CONFIG", "SET", "tracking-table-max-keys", "0"]);
        for i in 10..20 {
            cmd_with_pushes(&mut a, &["GET", &format!("k{i}")]);
        }
        let (more, info) = cmd_with_pushes(&mut a, &["INFO", "stats"]);
        (
            heard_a.len(),
            keys,
            more.len(),
            total(&info, "tracking_total_keys"),
        )
    };
    let got = run(tessera.port);
    assert_eq!(got, (5, 5, 0, 15));
    assert_eq!(got, run(redis.port));
}
