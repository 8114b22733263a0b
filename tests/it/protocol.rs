//! Protocol robustness: inline commands, pipelining, requests split at every byte, malformed and
//! huge lengths, binary and empty arguments, limits.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::{TestServer, encode, wait_for};

#[test]
fn inline_commands_work_like_nc_sends_them() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.send(b"PING\r\nSET k \"a b\\x41\"\nGET k\r\n\r\nECHO ''\r\n");
    assert_eq!(c.read_reply(), b"+PONG\r\n");
    assert_eq!(c.read_reply(), b"+OK\r\n");
    assert_eq!(c.read_reply(), b"$4\r\na bA\r\n");
    assert_eq!(c.read_reply(), b"$0\r\n\r\n");
}

#[test]
fn pipelined_requests_get_replies_in_order() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(encode(&[
            b"SET",
            format!("k{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
        batch.extend(encode(&[b"GET", format!("k{i}").as_bytes()]));
    }
    c.send(&batch);
    for i in 0..1000 {
        assert_eq!(c.read_reply(), b"+OK\r\n");
        let v = i.to_string();
        assert_eq!(
            c.read_reply(),
            format!("${}\r\n{v}\r\n", v.len()).into_bytes()
        );
    }
}

#[test]
fn requests_split_at_every_byte_offset_parse_the_same() {
    let s = TestServer::start(&[]);
    let corpus: Vec<u8> = [
        encode(&[b"SET", b"split", b"v\r\n\x00x"]),
        b"GET split\r\n".to_vec(),
        encode(&[b"APPEND", b"split", b""]),
        encode(&[b"ECHO", &[b'z'; 300]]),
    ]
    .concat();
    for offset in 1..corpus.len() {
        let mut c = s.raw();
        c.send(&corpus[..offset]);
        c.stream.flush().unwrap();
        std::thread::sleep(Duration::from_micros(200));
        c.send(&corpus[offset..]);
        assert_eq!(c.read_reply(), b"+OK\r\n", "offset {offset}");
        assert_eq!(c.read_reply(), b"$5\r\nv\r\n\x00x\r\n", "offset {offset}");
        assert_eq!(c.read_reply(), b":5\r\n", "offset {offset}");
        let mut echo = b"$300\r\n".to_vec();
        echo.extend([b'z'; 300]);
        echo.extend(b"\r\n");
        assert_eq!(c.read_reply(), echo, "offset {offset}");
    }
}

/// Sends `input`, expects `reply` and then the connection closed, as Redis does.
fn assert_protocol_error(s: &TestServer, input: &[u8], reply: &str) {
    let mut c = s.raw();
    c.send(input);
    assert_eq!(
        String::from_utf8_lossy(&c.read_reply()),
        reply,
        "input {:?}",
        String::from_utf8_lossy(input)
    );
    assert!(
        c.is_closed(),
        "connection stays open after {:?}",
        String::from_utf8_lossy(input)
    );
}

#[test]
fn malformed_requests_get_redis_errors_and_are_closed() {
    let s = TestServer::start(&[]);
    assert_protocol_error(
        &s,
        b"*3000000000\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert_protocol_error(
        &s,
        b"*x\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert_protocol_error(
        &s,
        b"*1\r\nfoo\r\n",
        "-ERR Protocol error: expected '$', got 'f'\r\n",
    );
    assert_protocol_error(
        &s,
        b"*1\r\n$-5\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_protocol_error(
        &s,
        b"*1\r\n$600000000\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_protocol_error(
        &s,
        b"SET k \"unbalanced\r\n",
        "-ERR Protocol error: unbalanced quotes in request\r\n",
    );
    let mut long = vec![b'a'; 70 * 1024];
    long.push(b'x');
    assert_protocol_error(&s, &long, "-ERR Protocol error: too big inline request\r\n");
    // The server is still healthy.
    assert_eq!(s.raw().cmd_str(&["PING"]), "+PONG\r\n");
}

#[test]
fn commands_before_a_protocol_error_still_run() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\n1\r\n*1\r\nbad\r\n");
    assert_eq!(c.read_reply(), b"+OK\r\n");
    assert_eq!(
        c.read_reply(),
        b"-ERR Protocol error: expected '$', got 'b'\r\n"
    );
    assert!(c.is_closed());
    assert_eq!(s.raw().cmd_str(&["GET", "x"]), "$1\r\n1\r\n");
}

#[test]
fn negative_and_empty_multibulk_are_skipped() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    c.send(b"*-10\r\n*0\r\n\r\nPING\r\n");
    assert_eq!(c.read_reply(), b"+PONG\r\n");
}

#[test]
fn binary_keys_and_empty_values_round_trip() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let key: &[u8] = b"\x00\r\n\xff key";
    assert_eq!(c.cmd(&[b"SET", key, b""]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", key]), b"$0\r\n\r\n");
    assert_eq!(c.cmd(&[b"EXISTS", key]), b":1\r\n");
    assert_eq!(c.cmd(&[b"SET", b"", b"empty key"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", b""]), b"$9\r\nempty key\r\n");
}

#[test]
fn large_values_arrive_intact() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let big: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.cmd(&[b"SET", b"big", &big]), b"+OK\r\n");
    let reply = c.cmd(&[b"GET", b"big"]);
    assert_eq!(
        &reply[reply.len() - big.len() - 2..reply.len() - 2],
        &big[..]
    );
    assert_eq!(c.cmd_str(&["STRLEN", "big"]), format!(":{}\r\n", big.len()));
}

#[test]
fn unauthenticated_clients_have_tighter_limits() {
    let s = TestServer::start(&["--requirepass", "secret"]);
    assert_protocol_error(
        &s,
        b"*20\r\n",
        "-ERR Protocol error: unauthenticated multibulk length\r\n",
    );
    assert_protocol_error(
        &s,
        b"*1\r\n$100000\r\n",
        "-ERR Protocol error: unauthenticated bulk length\r\n",
    );
    let mut c = s.raw();
    assert_eq!(
        c.cmd_str(&["GET", "k"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.cmd_str(&["AUTH", "secret"]), "+OK\r\n");
    c.send(b"*20\r\n");
    for _ in 0..20 {
        c.send(b"$1\r\nx\r\n");
    }
    assert!(c.read_reply().starts_with(b"-ERR unknown command 'x'"));
}

#[test]
fn query_buffer_limit_closes_the_client() {
    let s = TestServer::start(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd_str(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"]),
        "+OK\r\n"
    );
    let mut c = s.raw();
    // A bulk that never completes: the buffer grows past the limit and the client is closed.
    c.send(b"*2\r\n$3\r\nSET\r\n$100000000\r\n");
    let chunk = vec![b'x'; 256 * 1024];
    for _ in 0..8 {
        if c.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    assert!(c.is_closed());
    assert_eq!(admin.cmd_str(&["PING"]), "+PONG\r\n");
}

#[test]
fn maxclients_rejects_extra_connections() {
    let s = TestServer::start(&["--maxclients", "2"]);
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(a.cmd_str(&["PING"]), "+PONG\r\n");
    assert_eq!(b.cmd_str(&["PING"]), "+PONG\r\n");
    let mut c = s.raw();
    assert_eq!(c.read_reply(), b"-ERR max number of clients reached\r\n");
    drop(a);
    wait_for(Duration::from_secs(5), "a free client slot", || {
        let mut d = s.raw();
        d.send(b"PING\r\n");
        d.read_reply() == b"+PONG\r\n"
    });
}

#[test]
fn resp3_replies_use_resp3_types() {
    let s = TestServer::start(&[]);
    let mut c = s.raw();
    let hello = c.cmd_str(&["HELLO", "3"]);
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n"), "{hello}");
    assert_eq!(c.cmd_str(&["GET", "missing"]), "_\r\n");
    assert!(c.cmd_str(&["CONFIG", "GET", "hz"]).starts_with("%1\r\n"));
    assert!(c.cmd_str(&["INFO", "server"]).starts_with("=")); // verbatim string
    assert_eq!(
        c.cmd_str(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert!(c.cmd_str(&["HELLO", "2"]).starts_with("*14\r\n"));
    assert_eq!(c.cmd_str(&["GET", "missing"]), "$-1\r\n");
}

#[test]
fn a_client_that_does_not_read_its_replies_is_held_back_not_buffered() {
    let s = TestServer::start(&[]);
    let mut admin = s.raw();
    let value = vec![b'v'; 1024 * 1024];
    assert_eq!(admin.cmd(&[b"SET", b"big", &value]), b"+OK\r\n");
    let used = |admin: &mut crate::support::RawConn| -> u64 {
        let info = admin.cmd_str(&["INFO", "memory"]);
        let line = info
            .lines()
            .find(|l| l.starts_with("used_memory:"))
            .unwrap()
            .to_string();
        line["used_memory:".len()..].trim().parse().unwrap()
    };
    let before = used(&mut admin);
    let mut c = s.raw();
    let requests = 300;
    let mut batch = Vec::new();
    for _ in 0..requests {
        batch.extend(encode(&[b"GET", b"big"]));
    }
    c.send(&batch);
    std::thread::sleep(Duration::from_millis(500));
    let during = used(&mut admin);
    // 300 MB of replies were asked for; the server holds at most ~64 MB of them.
    assert!(
        during - before < 150 * 1024 * 1024,
        "output grew by {} bytes",
        during - before
    );
    let mut expected = format!("${}\r\n", value.len()).into_bytes();
    expected.extend(&value);
    expected.extend(b"\r\n");
    for i in 0..requests {
        assert_eq!(c.read_reply(), expected, "reply {i}");
    }
    assert_eq!(c.cmd_str(&["PING"]), "+PONG\r\n");
}

/// A client that floods its socket (as `redis-cli --pipe` does) is read a budget at a time:
/// every request still runs, its replies do not pile up in the server (100 MB of replies are
/// asked for in one write), and a second client is answered while the flood goes on.
#[test]
fn a_flooding_client_is_served_in_turns_without_piling_up_replies() {
    let s = TestServer::start(&[]);
    let mut other = s.raw();
    let value = vec![b'v'; 1000];
    assert_eq!(other.cmd(&[b"SET", b"k", &value]), b"+OK\r\n");
    let reply_len = format!("${}\r\n", value.len()).len() + value.len() + 2;
    let port = s.port;
    let n = 100_000;
    let writer = std::thread::spawn(move || {
        let mut c = crate::support::RawConn::connect(port);
        let batch: Vec<u8> = (0..n).flat_map(|_| encode(&[b"GET", b"k"])).collect();
        let mut stream = c.stream.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seen = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            while seen < n * reply_len {
                let got = std::io::Read::read(&mut stream, &mut buf).unwrap();
                assert!(got > 0, "closed after {seen} bytes");
                seen += got;
            }
            seen
        });
        c.send(&batch);
        reader.join().unwrap()
    });
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    assert_eq!(other.cmd_str(&["PING"]), "+PONG\r\n");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        writer.join().unwrap(),
        n * reply_len,
        "every request was answered"
    );
    std::thread::sleep(Duration::from_millis(150));
    let info = other.cmd_str(&["INFO", "memory"]);
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (peak, used) = (field("used_memory_peak:"), field("used_memory:"));
    assert!(peak < used + 16 * 1024 * 1024, "peak {peak}, now {used}");
}
