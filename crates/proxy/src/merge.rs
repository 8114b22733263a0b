//! Merging the replies of a command the proxy split across shards (MGET, DEL, ...) or sent to
//! every shard (DBSIZE, KEYS, INFO, ...), as Redis's routing tips describe (`agg_sum`,
//! `all_succeeded`, `one_succeeded`, `agg_logical_and`, ...).

use std::collections::{BTreeMap, HashSet};

use tessera_protocol::frame;

use crate::worker::{Tracking, write_bulk, write_header};

/// How the parts' replies become the client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Merge {
    /// Integers added (DEL, EXISTS, DBSIZE).
    Sum,
    /// The smallest integer (WAIT: the replicas every shard has).
    Min,
    /// The largest integer (CLIENT UNBLOCK: 1 when any shard unblocked the client).
    Max,
    /// The first reply when every part succeeded, else the first error (MSET, FLUSHALL).
    AllSucceeded,
    /// The first success, else the first error (SCRIPT KILL).
    OneSucceeded,
    /// Arrays concatenated (KEYS).
    Concat,
    /// Arrays concatenated without repeats (PUBSUB CHANNELS).
    Union,
    /// `[name, n, name, n, ...]` with the counts added (PUBSUB NUMSUB).
    SumPairs,
    /// Arrays of 0/1 combined element by element with AND (SCRIPT EXISTS).
    And,
    /// The first non-null reply (RANDOMKEY).
    RandomKey,
    /// INFO with the keyspace section summed.
    Info,
    /// Elements reordered into the request's key order (MGET).
    Mget,
    /// A SCAN step on one shard, its cursor made the proxy's.
    Scan,
    /// Bulk strings concatenated, as a bulk (RESP2) or verbatim (RESP3) string (CLIENT LIST
    /// from every worker).
    Text { resp3: bool },
    /// CLIENT KILL addr:port: counts added, `OK` for one, else `No such client`.
    KillOne,
    /// The proxy's own reply (`made`) once every part succeeded (SUBSCRIBE: the confirmations
    /// with the client's counts, sent when every shard has subscribed).
    Confirm,
    /// EXEC's reply with the errors of the commands the proxy refused at EXEC (`refused`)
    /// put back in their places.
    Exec,
}

/// The parts of one split command's reply, as they arrive.
pub(crate) struct Gather {
    merge: Merge,
    parts: Vec<Option<Vec<u8>>>,
    missing: usize,
    /// MGET: for each key of the request, its part and its place in that part's reply.
    pub order: Vec<(u32, u32)>,
    /// SCAN: the shard asked, and how many there are.
    pub scan: (usize, usize),
    /// Confirm: the reply.
    pub made: Vec<u8>,
    /// CLIENT TRACKING ON: the client's mode before it, back in force if a shard refuses.
    pub tracking_before: Option<Option<Box<Tracking>>>,
    /// The merged reply is dropped (CLIENT REPLY OFF or SKIP).
    pub quiet: bool,
    /// Exec: the refused commands' places in the transaction and their errors, in order.
    pub refused: Vec<(usize, Vec<u8>)>,
}

const UNEXPECTED: &[u8] = b"-ERR proxy: a shard sent an unexpected reply\r\n";

/// SCAN cursors through the proxy: the shard's cursor above, the shard's index in the low bits.
pub(crate) const SCAN_SHARD_BITS: u32 = 10;

impl Gather {
    pub(crate) fn new(merge: Merge, parts: usize) -> Gather {
        Gather {
            merge,
            parts: vec![None; parts],
            missing: parts,
            order: Vec::new(),
            scan: (0, 0),
            made: Vec::new(),
            tracking_before: None,
            quiet: false,
            refused: Vec::new(),
        }
    }

    /// Records part `part`; true when every part is in.
    pub(crate) fn add(&mut self, part: u32, reply: &[u8]) -> bool {
        if let Some(slot) = self.parts.get_mut(part as usize)
            && slot.is_none()
        {
            *slot = Some(reply.to_vec());
            self.missing -= 1;
        }
        self.missing == 0
    }

    /// The client's reply, from every part.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let parts: Vec<&[u8]> = self
            .parts
            .iter()
            .map(|p| p.as_deref().unwrap_or(UNEXPECTED))
            .collect();
        let first_error = parts.iter().find(|p| frame::is_error(p));
        match self.merge {
            Merge::OneSucceeded => {
                let ok = parts.iter().find(|p| !frame::is_error(p));
                return ok.unwrap_or(&parts[0]).to_vec();
            }
            Merge::RandomKey => {
                if let Some(p) = parts
                    .iter()
                    .find(|p| !frame::is_error(p) && !frame::is_null(p))
                {
                    return p.to_vec();
                }
            }
            _ => {}
        }
        if let Some(e) = first_error {
            return e.to_vec();
        }
        let merged = match self.merge {
            Merge::Sum => sum(&parts),
            Merge::Min => integers(&parts).and_then(|v| v.into_iter().min().map(int_reply)),
            Merge::Max => integers(&parts).and_then(|v| v.into_iter().max().map(int_reply)),
            Merge::AllSucceeded | Merge::OneSucceeded | Merge::RandomKey => Some(parts[0].to_vec()),
            Merge::Concat => concat(&parts, false),
            Merge::Union => concat(&parts, true),
            Merge::SumPairs => sum_pairs(&parts),
            Merge::And => and(&parts),
            Merge::Info => info(&parts),
            Merge::Mget => mget(&parts, &self.order),
            Merge::Scan => scan(parts[0], self.scan),
            Merge::Confirm => Some(std::mem::take(&mut self.made)),
            Merge::Exec => exec(parts[0], &self.refused),
            Merge::Text { resp3 } => text(&parts, resp3),
            Merge::KillOne => match sum(&parts).as_deref().and_then(frame::integer) {
                Some(0) => Some(b"-ERR No such client\r\n".to_vec()),
                Some(_) => Some(b"+OK\r\n".to_vec()),
                None => None,
            },
        };
        merged.unwrap_or_else(|| UNEXPECTED.to_vec())
    }
}

/// A transaction's reply with the proxy's refusals spliced in; a null (WATCH) or an error
/// (EXECABORT) as it is.
fn exec(reply: &[u8], refused: &[(usize, Vec<u8>)]) -> Option<Vec<u8>> {
    if frame::is_null(reply) {
        return Some(reply.to_vec());
    }
    let ran = frame::elements(reply)?;
    let n = ran.len() + refused.len();
    let mut out = Vec::with_capacity(reply.len() + 128 * refused.len());
    write_header(&mut out, b'*', n);
    let (mut ran, mut refused) = (ran.into_iter(), refused.iter().peekable());
    for i in 0..n {
        match refused.next_if(|(at, _)| *at == i) {
            Some((_, error)) => out.extend_from_slice(error),
            None => out.extend_from_slice(ran.next()?),
        }
    }
    Some(out)
}

fn text(parts: &[&[u8]], resp3: bool) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(frame::string(p)?);
    }
    let mut out = Vec::with_capacity(all.len() + 16);
    let mut r = tessera_protocol::reply::Reply::new(&mut out, resp3);
    r.verbatim("txt", &all);
    Some(out)
}

fn int_reply(n: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.push(b':');
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn integers(parts: &[&[u8]]) -> Option<Vec<i64>> {
    parts.iter().map(|p| frame::integer(p)).collect()
}

fn sum(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut total = 0i64;
    for p in parts {
        total = total.checked_add(frame::integer(p)?)?;
    }
    Some(int_reply(total))
}

fn concat(parts: &[&[u8]], dedupe: bool) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for p in parts {
        for e in frame::elements(p)? {
            if !dedupe || seen.insert(e) {
                all.push(e);
            }
        }
    }
    let kind = if parts[0].first() == Some(&b'~') {
        b'~'
    } else {
        b'*'
    };
    let mut out = Vec::new();
    write_header(&mut out, kind, all.len());
    for e in all {
        out.extend_from_slice(e);
    }
    Some(out)
}

fn sum_pairs(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let first = frame::elements(parts[0])?;
    let mut counts = vec![0i64; first.len() / 2];
    for p in parts {
        let e = frame::elements(p)?;
        if e.len() != first.len() {
            return None;
        }
        for (i, c) in counts.iter_mut().enumerate() {
            *c += frame::integer(e[2 * i + 1])?;
        }
    }
    let mut out = Vec::new();
    let kind = parts[0][0];
    write_header(
        &mut out,
        kind,
        if kind == b'%' {
            counts.len()
        } else {
            first.len()
        },
    );
    for (i, c) in counts.iter().enumerate() {
        out.extend_from_slice(first[2 * i]);
        out.extend_from_slice(&int_reply(*c));
    }
    Some(out)
}

fn and(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let first = frame::elements(parts[0])?;
    let mut all = vec![1i64; first.len()];
    for p in parts {
        let e = frame::elements(p)?;
        if e.len() != all.len() {
            return None;
        }
        for (a, x) in all.iter_mut().zip(e) {
            *a = (*a).min(frame::integer(x)?);
        }
    }
    let mut out = Vec::new();
    write_header(&mut out, b'*', all.len());
    for a in all {
        out.extend_from_slice(&int_reply(a));
    }
    Some(out)
}

fn mget(parts: &[&[u8]], order: &[(u32, u32)]) -> Option<Vec<u8>> {
    let elements: Vec<Vec<&[u8]>> = parts
        .iter()
        .map(|p| frame::elements(p))
        .collect::<Option<_>>()?;
    let mut out = Vec::new();
    write_header(&mut out, b'*', order.len());
    for &(p, i) in order {
        out.extend_from_slice(elements.get(p as usize)?.get(i as usize)?);
    }
    Some(out)
}

fn scan(reply: &[u8], (shard, shards): (usize, usize)) -> Option<Vec<u8>> {
    let e = frame::elements(reply)?;
    if e.len() != 2 {
        return None;
    }
    let next: u64 = std::str::from_utf8(frame::string(e[0])?)
        .ok()?
        .parse()
        .ok()?;
    let cursor = if next != 0 {
        if next >> (64 - SCAN_SHARD_BITS) != 0 {
            return Some(b"-ERR proxy: a shard's SCAN cursor is too large to carry\r\n".to_vec());
        }
        (next << SCAN_SHARD_BITS) | shard as u64
    } else if shard + 1 < shards {
        (shard + 1) as u64
    } else {
        0
    };
    let mut out = Vec::new();
    write_header(&mut out, b'*', 2);
    write_bulk(&mut out, itoa::Buffer::new().format(cursor).as_bytes());
    out.extend_from_slice(e[1]);
    Some(out)
}

/// Counters of INFO that are each shard's share of the database's: summed over the shards.
const SUMMED_INFO_FIELDS: [&str; 5] = [
    "expired_keys",
    "evicted_keys",
    "keyspace_hits",
    "keyspace_misses",
    "cluster_bus_dropped_messages",
];

/// INFO from every shard: the first shard's text, with the keyspace section and the counters
/// of `SUMMED_INFO_FIELDS` summed over all.
fn info(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let texts: Vec<String> = parts
        .iter()
        .map(|p| frame::string(p).map(|s| String::from_utf8_lossy(s).into_owned()))
        .collect::<Option<_>>()?;
    // db index -> (keys, expires, sum of avg_ttl weighted by expires)
    let mut dbs: BTreeMap<u32, (u64, u64, u128)> = BTreeMap::new();
    let mut sums = [0u64; SUMMED_INFO_FIELDS.len()];
    for t in &texts {
        for line in t.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if let Some(i) = SUMMED_INFO_FIELDS.iter().position(|f| *f == name) {
                sums[i] += value.parse::<u64>().unwrap_or(0);
            }
        }
        for line in keyspace_lines(t) {
            let Some((db, fields)) = line.split_once(':') else {
                continue;
            };
            let Some(n) = db.strip_prefix("db").and_then(|n| n.parse().ok()) else {
                continue;
            };
            let (mut keys, mut expires, mut ttl) = (0u64, 0u64, 0u64);
            for f in fields.split(',') {
                match f.split_once('=') {
                    Some(("keys", v)) => keys = v.parse().unwrap_or(0),
                    Some(("expires", v)) => expires = v.parse().unwrap_or(0),
                    Some(("avg_ttl", v)) => ttl = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
            let e = dbs.entry(n).or_default();
            e.0 += keys;
            e.1 += expires;
            e.2 += u128::from(ttl) * u128::from(expires);
        }
    }
    let mut merged = String::new();
    let mut in_keyspace = false;
    for line in texts[0].split("\r\n") {
        if line.starts_with('#') {
            in_keyspace = line == "# Keyspace";
            merged.push_str(line);
            merged.push_str("\r\n");
            if in_keyspace {
                for (db, (keys, expires, ttl)) in &dbs {
                    let avg = if *expires > 0 {
                        ttl / u128::from(*expires)
                    } else {
                        0
                    };
                    merged.push_str(&format!(
                        "db{db}:keys={keys},expires={expires},avg_ttl={avg}\r\n"
                    ));
                }
            }
            continue;
        }
        if in_keyspace && line.starts_with("db") {
            continue;
        }
        if let Some((name, _)) = line.split_once(':')
            && let Some(i) = SUMMED_INFO_FIELDS.iter().position(|f| *f == name)
        {
            merged.push_str(&format!("{name}:{}\r\n", sums[i]));
            continue;
        }
        merged.push_str(line);
        merged.push_str("\r\n");
    }
    // split() gave one more (empty) piece after the text's last CRLF.
    merged.truncate(merged.len() - 2);
    let mut out = Vec::new();
    if parts[0].first() == Some(&b'=') {
        write_header(&mut out, b'=', merged.len() + 4);
        out.extend_from_slice(b"txt:");
        out.extend_from_slice(merged.as_bytes());
        out.extend_from_slice(b"\r\n");
    } else {
        write_bulk(&mut out, merged.as_bytes());
    }
    Some(out)
}

fn keyspace_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split("\r\n")
        .skip_while(|l| *l != "# Keyspace")
        .skip(1)
        .take_while(|l| !l.starts_with('#') && !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(merge: Merge, parts: &[&[u8]]) -> String {
        let mut g = Gather::new(merge, parts.len());
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(g.add(i as u32, p), i + 1 == parts.len());
        }
        String::from_utf8(g.finish()).unwrap()
    }

    #[test]
    fn merges_client_list_kill_and_confirmations() {
        let lines: &[&[u8]] = &[b"$4\r\na=1\n\r\n", b"$0\r\n\r\n", b"$4\r\nb=2\n\r\n"];
        assert_eq!(
            merged(Merge::Text { resp3: false }, lines),
            "$8\r\na=1\nb=2\n\r\n"
        );
        assert_eq!(
            merged(Merge::Text { resp3: true }, lines),
            "=12\r\ntxt:a=1\nb=2\n\r\n"
        );
        assert_eq!(merged(Merge::KillOne, &[b":0\r\n", b":1\r\n"]), "+OK\r\n");
        assert_eq!(
            merged(Merge::KillOne, &[b":0\r\n", b":0\r\n"]),
            "-ERR No such client\r\n"
        );
        let mut g = Gather::new(Merge::Confirm, 2);
        g.made = b"made".to_vec();
        g.add(0, b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
        g.add(1, b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n");
        assert_eq!(g.finish(), b"made");
        let mut g = Gather::new(Merge::Confirm, 2);
        g.made = b"made".to_vec();
        g.add(0, b"-NOPERM x\r\n");
        g.add(1, b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n");
        assert_eq!(g.finish(), b"-NOPERM x\r\n");
    }

    #[test]
    fn merges_as_the_routing_tips_say() {
        assert_eq!(merged(Merge::Sum, &[b":2\r\n", b":3\r\n"]), ":5\r\n");
        assert_eq!(
            merged(Merge::Sum, &[b":2\r\n", b"-ERR x\r\n"]),
            "-ERR x\r\n"
        );
        assert_eq!(
            merged(Merge::AllSucceeded, &[b"+OK\r\n", b"+OK\r\n"]),
            "+OK\r\n"
        );
        assert_eq!(
            merged(Merge::OneSucceeded, &[b"-NOTBUSY x\r\n", b"+OK\r\n"]),
            "+OK\r\n"
        );
        assert_eq!(
            merged(
                Merge::Concat,
                &[b"*1\r\n$1\r\na\r\n", b"*0\r\n", b"*1\r\n$1\r\nb\r\n"]
            ),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            merged(Merge::Union, &[b"*1\r\n$1\r\na\r\n", b"*1\r\n$1\r\na\r\n"]),
            "*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            merged(
                Merge::SumPairs,
                &[b"*2\r\n$1\r\nc\r\n:1\r\n", b"*2\r\n$1\r\nc\r\n:2\r\n"]
            ),
            "*2\r\n$1\r\nc\r\n:3\r\n"
        );
        assert_eq!(
            merged(Merge::And, &[b"*2\r\n:1\r\n:1\r\n", b"*2\r\n:1\r\n:0\r\n"]),
            "*2\r\n:1\r\n:0\r\n"
        );
        assert_eq!(
            merged(Merge::RandomKey, &[b"$-1\r\n", b"$1\r\nk\r\n"]),
            "$1\r\nk\r\n"
        );
        assert_eq!(merged(Merge::RandomKey, &[b"_\r\n", b"_\r\n"]), "_\r\n");
        assert_eq!(
            merged(Merge::Sum, &[b"+OK\r\n"]),
            String::from_utf8_lossy(UNEXPECTED)
        );
    }

    #[test]
    fn mget_puts_values_back_in_key_order() {
        let mut g = Gather::new(Merge::Mget, 2);
        // Keys a, b, c: a and c in part 0, b in part 1.
        g.order = vec![(0, 0), (1, 0), (0, 1)];
        g.add(1, b"*1\r\n$1\r\nB\r\n");
        g.add(0, b"*2\r\n$1\r\nA\r\n$-1\r\n");
        assert_eq!(g.finish(), b"*3\r\n$1\r\nA\r\n$1\r\nB\r\n$-1\r\n");
    }

    #[test]
    fn scan_cursors_walk_every_shard() {
        let mut g = Gather::new(Merge::Scan, 1);
        g.scan = (1, 3);
        g.add(0, b"*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n");
        let cursor = (17u64 << SCAN_SHARD_BITS) | 1;
        assert_eq!(
            String::from_utf8(g.finish()).unwrap(),
            format!(
                "*2\r\n${}\r\n{cursor}\r\n*1\r\n$1\r\nk\r\n",
                cursor.to_string().len()
            )
        );
        let mut g = Gather::new(Merge::Scan, 1);
        g.scan = (1, 3);
        g.add(0, b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(g.finish(), b"*2\r\n$1\r\n2\r\n*0\r\n");
        let mut g = Gather::new(Merge::Scan, 1);
        g.scan = (2, 3);
        g.add(0, b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(g.finish(), b"*2\r\n$1\r\n0\r\n*0\r\n");
    }

    #[test]
    fn info_sums_the_keyspace_and_the_counters() {
        let a = "# Server\r\nredis_version:7.0.15\r\n\r\n# Stats\r\nkeyspace_hits:4\r\ntotal_commands_processed:10\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=100\r\n";
        let b = "# Server\r\nredis_version:7.0.15\r\n\r\n# Stats\r\nkeyspace_hits:5\r\ntotal_commands_processed:20\r\n\r\n# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=300\r\n";
        let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len()).into_bytes();
        let (a, b) = (bulk(a), bulk(b));
        let out = merged(Merge::Info, &[&a, &b]);
        assert!(
            out.ends_with("# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=200\r\n\r\n"),
            "{out:?}"
        );
        assert!(
            out.contains(
                "redis_version:7.0.15\r\n\r\n# Stats\r\nkeyspace_hits:9\r\ntotal_commands_processed:10\r\n\r\n# Keyspace"
            ),
            "{out:?}"
        );
    }
}
