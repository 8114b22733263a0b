//! Hashes and sets beyond what the differential test can compare: random members, large
//! (hashtable-encoded) values, full HSCAN/SSCAN iterations, WRONGTYPE across types.

use std::collections::HashSet;

use redis::Commands;

use crate::support::TestServer;

#[test]
fn random_members_follow_the_count_rules() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let members: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    let _: i64 = r.sadd("s", &members).unwrap();
    let picked: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("s")
        .arg(5)
        .query(&mut r)
        .unwrap();
    assert_eq!(
        picked.iter().collect::<HashSet<_>>().len(),
        5,
        "positive counts are distinct"
    );
    let picked: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("s")
        .arg(-50)
        .query(&mut r)
        .unwrap();
    assert_eq!(picked.len(), 50, "negative counts may repeat");
    assert!(picked.iter().all(|m| members.contains(m)));
    let popped: Vec<String> = redis::cmd("SPOP").arg("s").arg(7).query(&mut r).unwrap();
    assert_eq!(popped.iter().collect::<HashSet<_>>().len(), 7);
    assert_eq!(r.scard::<_, i64>("s").unwrap(), 13);
    for m in &popped {
        assert!(!r.sismember::<_, _, bool>("s", m).unwrap());
    }
    let fields: Vec<(String, String)> = (0..10)
        .map(|i| (format!("f{i}"), format!("v{i}")))
        .collect();
    let _: () = r.hset_multiple("h", &fields).unwrap();
    let picked: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(4)
        .arg("WITHVALUES")
        .query(&mut r)
        .unwrap();
    assert_eq!(picked.len(), 8);
    for pair in picked.chunks(2) {
        assert_eq!(
            pair[1],
            pair[0].replace('f', "v"),
            "values follow their fields"
        );
    }
}

#[test]
fn large_collections_convert_and_scan_completely() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    for i in 0..3000 {
        let _: i64 = r.hset("big", format!("field:{i}"), i).unwrap();
        let _: i64 = r.sadd("bigset", format!("member:{i}")).unwrap();
    }
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("big")
        .query(&mut r)
        .unwrap();
    assert_eq!(enc, "hashtable");
    assert_eq!(r.hlen::<_, i64>("big").unwrap(), 3000);
    assert_eq!(r.hget::<_, _, i64>("big", "field:1234").unwrap(), 1234);
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg("big")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query(&mut r)
            .unwrap();
        for pair in items.chunks(2) {
            seen.insert(pair[0].clone());
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 3000);
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg("bigset")
            .arg(cursor)
            .query(&mut r)
            .unwrap();
        seen.extend(items);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 3000);
    let inter: HashSet<String> = r.sinter(&["bigset", "bigset"]).unwrap();
    assert_eq!(inter.len(), 3000);
}

#[test]
fn types_do_not_mix() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    let _: i64 = r.hset("h", "f", "v").unwrap();
    let _: i64 = r.sadd("s", "m").unwrap();
    let _: () = r.set("str", "x").unwrap();
    for err in [
        r.get::<_, String>("h").unwrap_err(),
        r.sadd::<_, _, i64>("h", "m").unwrap_err(),
        r.hget::<_, _, String>("s", "f").unwrap_err(),
        r.hset::<_, _, _, i64>("str", "f", "v").unwrap_err(),
        r.append::<_, _, i64>("s", "x").unwrap_err(),
    ] {
        assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    }
}

#[test]
fn large_sorted_sets_keep_ranks_and_ranges_exact() {
    let s = TestServer::start(&[]);
    let mut r = s.redis();
    // 5000 members with repeated scores, inserted out of order.
    let mut model: Vec<(i64, String)> = Vec::new();
    for i in 0..5000i64 {
        let m = format!("m{:05}", (i * 7919) % 5000);
        let score = (i * 31) % 97;
        let _: i64 = r.zadd("big", &m, score).unwrap();
        model.push((score, m));
    }
    model.sort();
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("big")
        .query(&mut r)
        .unwrap();
    assert_eq!(enc, "skiplist");
    for rank in [0usize, 1, 255, 256, 511, 512, 2500, 4999] {
        let (score, m) = &model[rank];
        assert_eq!(
            r.zrank::<_, _, Option<usize>>("big", m).unwrap(),
            Some(rank)
        );
        let got: Vec<String> = r.zrange("big", rank as isize, rank as isize).unwrap();
        assert_eq!(&got[0], m);
        assert_eq!(r.zscore::<_, _, i64>("big", m).unwrap(), *score);
    }
    let in_range: Vec<String> = r.zrangebyscore("big", 10, 12).unwrap();
    let expect: Vec<String> = model
        .iter()
        .filter(|(sc, _)| (10..=12).contains(sc))
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(in_range, expect);
    assert_eq!(
        r.zcount::<_, _, _, usize>("big", 10, 12).unwrap(),
        expect.len()
    );
    // Remove a band and check the ranks around it.
    let removed: usize = r.zrembyscore("big", 0, 5).unwrap();
    let rest: Vec<&(i64, String)> = model.iter().filter(|(sc, _)| *sc > 5).collect();
    assert_eq!(removed, 5000 - rest.len());
    assert_eq!(
        r.zrank::<_, _, Option<usize>>("big", &rest[100].1).unwrap(),
        Some(100)
    );
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("ZSCAN")
            .arg("big")
            .arg(cursor)
            .query(&mut r)
            .unwrap();
        for pair in items.chunks(2) {
            seen.insert(pair[0].clone());
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), rest.len());
}
