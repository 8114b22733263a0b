//! Generic key commands.

use std::collections::HashSet;

use redis::{Commands, RedisResult};

use crate::support::TestServer;

#[test]
fn del_exists_type_rename_copy() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.mset(&[("a", "1"), ("b", "2")]).unwrap();
    assert_eq!(r.exists::<_, i64>(&["a", "b", "a", "c"]).unwrap(), 3);
    assert_eq!(
        redis::cmd("TYPE").arg("a").query::<String>(&mut r).unwrap(),
        "string"
    );
    assert_eq!(
        redis::cmd("TYPE")
            .arg("zz")
            .query::<String>(&mut r)
            .unwrap(),
        "none"
    );
    let _: () = r.rename("a", "c").unwrap();
    assert_eq!(r.get::<_, String>("c").unwrap(), "1");
    assert_eq!(r.rename_nx::<_, _, i64>("c", "b").unwrap(), 0);
    let err: RedisResult<()> = r.rename("nokey", "x");
    assert!(err.unwrap_err().to_string().contains("no such key"));
    let copied: i64 = redis::cmd("COPY").arg("c").arg("d").query(&mut r).unwrap();
    assert_eq!(copied, 1);
    let copied: i64 = redis::cmd("COPY").arg("c").arg("d").query(&mut r).unwrap();
    assert_eq!(copied, 0);
    let copied: i64 = redis::cmd("COPY")
        .arg("b")
        .arg("d")
        .arg("REPLACE")
        .query(&mut r)
        .unwrap();
    assert_eq!(copied, 1);
    assert_eq!(r.get::<_, String>("d").unwrap(), "2");
    assert_eq!(r.del::<_, i64>(&["b", "c", "d", "zz"]).unwrap(), 3);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 0);
}

#[test]
fn rename_keeps_the_ttl() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.set_ex("a", "v", 100).unwrap();
    let _: () = r.rename("a", "b").unwrap();
    assert!(r.ttl::<_, i64>("b").unwrap() > 90);
}

#[test]
fn scan_returns_every_key_once_per_full_iteration() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    for i in 0..2000 {
        let _: () = r.set(format!("key:{i}"), i).unwrap();
    }
    let _: () = r.set("other", 1).unwrap();
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("key:*")
            .arg("COUNT")
            .arg(50)
            .query(&mut r)
            .unwrap();
        for k in keys {
            assert!(seen.insert(k), "duplicate key");
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 2000);
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("hash")
        .arg("COUNT")
        .arg(5000)
        .query(&mut r)
        .unwrap();
    assert!(keys.is_empty());
    let err: RedisResult<()> = redis::cmd("SCAN").arg("abc").query(&mut r);
    assert!(err.unwrap_err().to_string().contains("invalid cursor"));
}

#[test]
fn keys_randomkey_flush() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    assert_eq!(
        redis::cmd("RANDOMKEY")
            .query::<Option<String>>(&mut r)
            .unwrap(),
        None
    );
    let _: () = r
        .mset(&[("foo", "1"), ("foobar", "2"), ("bar", "3")])
        .unwrap();
    let mut keys: Vec<String> = r.keys("foo*").unwrap();
    keys.sort();
    assert_eq!(keys, ["foo", "foobar"]);
    let k: String = redis::cmd("RANDOMKEY").query(&mut r).unwrap();
    assert!(["foo", "foobar", "bar"].contains(&k.as_str()));
    let _: () = redis::cmd("FLUSHALL").arg("ASYNC").query(&mut r).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 0);
    let _: () = r.set("x", 1).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(&mut r).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 0);
}

#[test]
fn object_encoding_and_idletime() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.set("i", 12345).unwrap();
    let _: () = r.set("e", "hello").unwrap();
    let _: () = r.set("raw", "x".repeat(100)).unwrap();
    let enc = |r: &mut redis::Connection, k: &str| -> String {
        redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(k)
            .query(r)
            .unwrap()
    };
    assert_eq!(enc(&mut r, "i"), "int");
    assert_eq!(enc(&mut r, "e"), "embstr");
    assert_eq!(enc(&mut r, "raw"), "raw");
    let _: i64 = r.append("e", "!").unwrap();
    assert_eq!(enc(&mut r, "e"), "raw");
    let idle: i64 = redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg("i")
        .query(&mut r)
        .unwrap();
    assert!(idle <= 1);
    let none: Option<String> = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("nokey")
        .query(&mut r)
        .unwrap();
    assert_eq!(none, None);
}
