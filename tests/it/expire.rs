//! TTL behaviour: millisecond precision, lazy and active expiry, the NX/XX/GT/LT options.

use std::time::Duration;

use redis::Commands;

use crate::support::{TestServer, wait_for};

fn dbsize(r: &mut redis::Connection) -> i64 {
    redis::cmd("DBSIZE").query(r).unwrap()
}

#[test]
fn keys_expire_with_millisecond_precision() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("PX")
        .arg(150)
        .query(&mut r)
        .unwrap();
    let pttl: i64 = r.pttl("k").unwrap();
    assert!((100..=150).contains(&pttl), "pttl {pttl}");
    assert!(r.exists::<_, bool>("k").unwrap());
    wait_for(Duration::from_secs(3), "k to expire", || {
        !r.exists::<_, bool>("k").unwrap()
    });
    assert_eq!(r.ttl::<_, i64>("k").unwrap(), -2);
    assert_eq!(r.pttl::<_, i64>("k").unwrap(), -2);
}

#[test]
fn expire_family_and_options() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.set("k", "v").unwrap();
    assert_eq!(r.ttl::<_, i64>("k").unwrap(), -1);
    let q = |r: &mut redis::Connection, args: &[&str]| -> i64 {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(r).unwrap()
    };
    assert_eq!(q(&mut r, &["EXPIRE", "k", "100", "XX"]), 0);
    assert_eq!(q(&mut r, &["EXPIRE", "k", "100", "NX"]), 1);
    assert_eq!(q(&mut r, &["EXPIRE", "k", "50", "GT"]), 0);
    assert_eq!(q(&mut r, &["EXPIRE", "k", "200", "GT"]), 1);
    assert_eq!(q(&mut r, &["EXPIRE", "k", "300", "LT"]), 0);
    assert_eq!(q(&mut r, &["PEXPIRE", "k", "100000", "LT"]), 1);
    let at: i64 = q(&mut r, &["EXPIRETIME", "k"]);
    let pat: i64 = q(&mut r, &["PEXPIRETIME", "k"]);
    // Rounded to the nearest second, as Redis does.
    assert_eq!(at, (pat + 500) / 1000);
    assert_eq!(q(&mut r, &["PERSIST", "k"]), 1);
    assert_eq!(q(&mut r, &["PERSIST", "k"]), 0);
    assert_eq!(q(&mut r, &["EXPIRETIME", "k"]), -1);
    assert_eq!(q(&mut r, &["EXPIREAT", "k", "1"]), 1);
    assert!(
        !r.exists::<_, bool>("k").unwrap(),
        "a past EXPIREAT deletes the key"
    );
    assert_eq!(q(&mut r, &["EXPIRE", "nokey", "10"]), 0);
    let err = redis::cmd("EXPIRE")
        .arg("k")
        .arg("10")
        .arg("NX")
        .arg("XX")
        .query::<i64>(&mut r);
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("NX and XX, GT or LT options at the same time are not compatible")
    );
}

#[test]
fn active_expiry_removes_keys_nobody_reads() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    for i in 0..1000 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .arg("PX")
            .arg(100)
            .query(&mut r)
            .unwrap();
    }
    let _: () = r.set("persistent", "v").unwrap();
    wait_for(Duration::from_secs(5), "active expiry", || {
        dbsize(&mut r) == 1
    });
    let info: String = redis::cmd("INFO").arg("stats").query(&mut r).unwrap();
    assert!(info.contains("expired_keys:1000"), "{info}");
}

#[test]
fn debug_set_active_expire_stops_the_cycle() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut r)
        .unwrap();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .arg("PX")
            .arg(20)
            .query(&mut r)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dbsize(&mut r), 100, "keys stay counted until touched");
    assert_eq!(r.get::<_, Option<String>>("k1").unwrap(), None);
    assert_eq!(dbsize(&mut r), 99, "a lookup deletes the expired key");
    let _: () = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(1)
        .query(&mut r)
        .unwrap();
    wait_for(Duration::from_secs(5), "active expiry", || {
        dbsize(&mut r) == 0
    });
}

#[test]
fn overwriting_a_volatile_key_clears_its_ttl() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: () = r.set_ex("k", "v", 100).unwrap();
    let _: () = r.set("k", "w").unwrap();
    assert_eq!(r.ttl::<_, i64>("k").unwrap(), -1);
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut r).unwrap();
    assert!(info.contains("db0:keys=1,expires=0"), "{info}");
}
