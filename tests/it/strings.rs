//! String commands through the `redis` crate.

use redis::{Commands, RedisResult};

use crate::support::TestServer;

#[test]
fn set_options_and_get() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let ok: String = redis::cmd("SET").arg("k").arg("v").query(&mut r).unwrap();
    assert_eq!(ok, "OK");
    let nx: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("w")
        .arg("NX")
        .query(&mut r)
        .unwrap();
    assert_eq!(nx, None);
    let old: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("w")
        .arg("GET")
        .query(&mut r)
        .unwrap();
    assert_eq!(old.as_deref(), Some("v"));
    let xx: Option<String> = redis::cmd("SET")
        .arg("nokey")
        .arg("w")
        .arg("XX")
        .query(&mut r)
        .unwrap();
    assert_eq!(xx, None);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("x")
        .arg("EX")
        .arg(100)
        .query(&mut r)
        .unwrap();
    let ttl: i64 = r.ttl("k").unwrap();
    assert!((99..=100).contains(&ttl));
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("y")
        .arg("KEEPTTL")
        .query(&mut r)
        .unwrap();
    assert!(r.ttl::<_, i64>("k").unwrap() > 0);
    let _: () = r.set("k", "z").unwrap();
    assert_eq!(r.ttl::<_, i64>("k").unwrap(), -1);
    let err: RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(0)
        .query(&mut r);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("invalid expire time in 'set' command")
    );
    let err: RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("NX")
        .arg("XX")
        .query(&mut r);
    assert!(err.unwrap_err().to_string().contains("syntax error"));
}

#[test]
fn counters() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    assert_eq!(r.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(r.incr::<_, _, i64>("n", 41).unwrap(), 42);
    assert_eq!(r.decr::<_, _, i64>("n", 2).unwrap(), 40);
    let _: () = r.set("max", i64::MAX).unwrap();
    let err = r.incr::<_, _, i64>("max", 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("increment or decrement would overflow")
    );
    let _: () = r.set("s", "abc").unwrap();
    let err = r.incr::<_, _, i64>("s", 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range")
    );
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("10.5")
        .query(&mut r)
        .unwrap();
    assert_eq!(f, "10.5");
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("0.1")
        .query(&mut r)
        .unwrap();
    assert_eq!(f, "10.6");
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("-5e1")
        .query(&mut r)
        .unwrap();
    assert_eq!(f, "-39.4");
}

#[test]
fn incr_keeps_the_ttl() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.set_ex("n", 5, 100).unwrap();
    let _: i64 = r.incr("n", 1).unwrap();
    assert!(r.ttl::<_, i64>("n").unwrap() > 0);
}

#[test]
fn append_strlen_ranges() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    assert_eq!(r.append::<_, _, i64>("a", "Hello").unwrap(), 5);
    assert_eq!(r.append::<_, _, i64>("a", " World").unwrap(), 11);
    assert_eq!(r.strlen::<_, i64>("a").unwrap(), 11);
    assert_eq!(r.getrange::<_, String>("a", 0, 4).unwrap(), "Hello");
    assert_eq!(r.getrange::<_, String>("a", -5, -1).unwrap(), "World");
    assert_eq!(r.setrange::<_, _, i64>("a", 6, "Redis").unwrap(), 11);
    assert_eq!(r.get::<_, String>("a").unwrap(), "Hello Redis");
    assert_eq!(r.setrange::<_, _, i64>("pad", 3, "x").unwrap(), 4);
    assert_eq!(r.get::<_, Vec<u8>>("pad").unwrap(), b"\0\0\0x");
    let err: RedisResult<i64> = redis::cmd("SETRANGE")
        .arg("a")
        .arg(-1)
        .arg("x")
        .query(&mut r);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("offset is out of range")
    );
    let err: RedisResult<i64> = redis::cmd("SETRANGE")
        .arg("a")
        .arg(536870911)
        .arg("xx")
        .query(&mut r);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("string exceeds maximum allowed size")
    );
}

#[test]
fn multi_key_and_get_variants() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.mset(&[("a", "1"), ("b", "2")]).unwrap();
    let v: Vec<Option<String>> = r.mget(&["a", "nokey", "b"]).unwrap();
    assert_eq!(v, vec![Some("1".into()), None, Some("2".into())]);
    let nx: i64 = redis::cmd("MSETNX")
        .arg("a")
        .arg("x")
        .arg("c")
        .arg("3")
        .query(&mut r)
        .unwrap();
    assert_eq!(nx, 0);
    assert!(!r.exists::<_, bool>("c").unwrap());
    let old: String = r.getset("a", "9").unwrap();
    assert_eq!(old, "1");
    let del: String = r.get_del("a").unwrap();
    assert_eq!(del, "9");
    assert!(!r.exists::<_, bool>("a").unwrap());
    let v: String = redis::cmd("GETEX")
        .arg("b")
        .arg("PX")
        .arg(50000)
        .query(&mut r)
        .unwrap();
    assert_eq!(v, "2");
    assert!(r.pttl::<_, i64>("b").unwrap() > 40000);
    let _: String = redis::cmd("GETEX")
        .arg("b")
        .arg("PERSIST")
        .query(&mut r)
        .unwrap();
    assert_eq!(r.ttl::<_, i64>("b").unwrap(), -1);
    let set: i64 = redis::cmd("SETNX").arg("b").arg("x").query(&mut r).unwrap();
    assert_eq!(set, 0);
}
