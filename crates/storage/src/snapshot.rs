//! Point-in-time snapshots of the keyspace without fork: copy-on-write at key granularity.
//!
//! A snapshot walks the slots in order, serializing each slot whole in one step (keys in RDB
//! format, with their expiry). Slots before the cursor are done. Before any change to a key
//! of a slot not yet walked (an update, a deletion, an expiry, a creation), the keyspace
//! serializes the key's current state first, or records that it did not exist, and the walk
//! skips it later. So the records together are exactly the keyspace at the moment the
//! snapshot began, while the shard keeps serving. The same serializer will feed the diskless
//! replication payload and slot migration.

use std::collections::{HashMap, HashSet};

use crate::bytes::SmallBytes;
use crate::db::Db;
use crate::rdb;

/// One key of a snapshot.
#[derive(Debug)]
pub struct SnapRecord {
    /// The key's hash slot (images are ordered by slot, so loading fills one slot at a time).
    pub slot: u16,
    pub key: Vec<u8>,
    /// Absolute Unix milliseconds.
    pub expire_ms: Option<i64>,
    /// RDB type byte and value encoding.
    pub value: Vec<u8>,
}

/// A snapshot in progress.
#[derive(Default)]
pub struct Snapshot {
    /// Slots before this one are serialized.
    cursor: usize,
    /// Keys of slots at or after the cursor already handled (saved before a change, or noted
    /// as absent), by slot: the walk skips them.
    saved: HashMap<usize, HashSet<SmallBytes, foldhash::fast::RandomState>>,
    /// Records not yet taken.
    out: Vec<SnapRecord>,
    out_bytes: usize,
    /// Keys serialized so far.
    pub keys: u64,
}

impl Snapshot {
    fn push(&mut self, r: SnapRecord) {
        self.out_bytes += r.key.len() + r.value.len() + 16;
        self.keys += 1;
        self.out.push(r);
    }
}

impl Db {
    /// Starts a snapshot of the keyspace as it is now (replacing one in progress).
    pub fn begin_snapshot(&mut self) {
        self.snapshot = Some(Box::default());
    }

    /// Abandons the snapshot in progress.
    pub fn end_snapshot(&mut self) {
        self.snapshot = None;
    }

    /// True while a snapshot is in progress.
    pub fn snapshot_running(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Bytes of records waiting to be taken.
    pub fn snapshot_pending_bytes(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| s.out_bytes)
    }

    /// Keys serialized so far, and the slot cursor.
    pub fn snapshot_progress(&self) -> Option<(u64, usize)> {
        self.snapshot.as_ref().map(|s| (s.keys, s.cursor))
    }

    /// Takes the records produced so far.
    pub fn take_snapshot_records(&mut self) -> Vec<SnapRecord> {
        match &mut self.snapshot {
            Some(s) => {
                s.out_bytes = 0;
                std::mem::take(&mut s.out)
            }
            None => Vec::new(),
        }
    }

    /// Walks slots until about `max_bytes` of records are produced or every slot is done.
    /// Returns true when the walk is complete (the records may still wait to be taken).
    pub fn snapshot_step(&mut self, max_bytes: usize) -> bool {
        let Some(mut snap) = self.snapshot.take() else {
            return true;
        };
        let start_bytes = snap.out_bytes;
        while snap.cursor < tessera_protocol::SLOTS && snap.out_bytes - start_bytes < max_bytes {
            let slot = snap.cursor;
            // The keys noted for this slot are no longer needed once it is walked.
            let skip = snap.saved.remove(&slot).unwrap_or_default();
            for entry in self.slot_entries(slot) {
                if !skip.is_empty() && skip.contains(entry.key()) {
                    continue;
                }
                let record = SnapRecord {
                    slot: slot as u16,
                    key: entry.key().to_vec(),
                    expire_ms: self.entry_expire_at(entry),
                    value: encode(entry.value()),
                };
                snap.push(record);
            }
            snap.cursor += 1;
        }
        let done = snap.cursor >= tessera_protocol::SLOTS;
        self.snapshot = Some(snap);
        done
    }

    /// Before a change to `key` (in `slot`): saves its current state if the walk has not
    /// reached it yet.
    #[inline]
    pub(crate) fn before_change(&mut self, key: &[u8], slot: usize, hash: u64) {
        if let Some(s) = &self.snapshot
            && slot >= s.cursor
        {
            self.save_before_change(key, slot, hash);
        }
    }

    #[cold]
    fn save_before_change(&mut self, key: &[u8], slot: usize, hash: u64) {
        let Some(mut snap) = self.snapshot.take() else {
            return;
        };
        if snap
            .saved
            .entry(slot)
            .or_default()
            .insert(SmallBytes::new(key))
            && let Some(entry) = self.stored_at(key, slot, hash)
        {
            let record = SnapRecord {
                slot: slot as u16,
                key: key.to_vec(),
                expire_ms: self.entry_expire_at(entry),
                value: encode(entry.value()),
            };
            snap.push(record);
        }
        self.snapshot = Some(snap);
    }
}

fn encode(v: &crate::value::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    rdb::write_value(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use crate::db::{Db, Expiry};
    use crate::rdb;
    use crate::value::Value;

    fn image(db: &mut Db) -> Vec<(Vec<u8>, Option<i64>, Value)> {
        let mut out = Vec::new();
        loop {
            let done = db.snapshot_step(1000);
            for r in db.take_snapshot_records() {
                let mut rd = rdb::Reader::new(&r.value);
                let kind = rd.u8().unwrap();
                let v = rdb::read_value(&mut rd, kind, &Default::default()).unwrap();
                out.push((r.key, r.expire_ms, v));
            }
            if done {
                break;
            }
        }
        db.end_snapshot();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn the_image_is_the_state_when_it_began() {
        let mut db = Db::new();
        for i in 0..2000 {
            let k = format!("k{i}");
            db.set(k.as_bytes(), Value::Int(i), Expiry::Persist, 0);
        }
        db.set(b"ttl", Value::Int(1), Expiry::At(5000), 0);
        db.begin_snapshot();
        db.snapshot_step(100);
        // Changes after the start, in walked and unwalked slots alike.
        for i in 0..2000 {
            let k = format!("k{i}");
            match i % 4 {
                0 => {
                    db.remove(k.as_bytes());
                }
                1 => {
                    db.set(k.as_bytes(), Value::Int(-1), Expiry::At(9), 0);
                }
                2 => {
                    if let Some(e) = db.get_mut(k.as_bytes(), 0) {
                        *e.value_mut() = Value::Int(-2);
                    }
                }
                _ => {}
            }
            let n = format!("new{i}");
            db.set(n.as_bytes(), Value::Int(0), Expiry::Persist, 0);
            if i % 100 == 0 {
                db.snapshot_step(50);
            }
        }
        let img = image(&mut db);
        let news = img.iter().filter(|r| r.0.starts_with(b"new")).count();
        let mut keys: Vec<_> = img.iter().map(|r| r.0.clone()).collect();
        keys.dedup();
        assert_eq!((news, keys.len()), (0, 2001));
        assert_eq!(img.len(), 2001);
        for (k, exp, v) in img {
            if k == b"ttl" {
                assert_eq!((exp, v), (Some(5000), Value::Int(1)));
                continue;
            }
            let i: i64 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
            assert_eq!(
                (exp, v),
                (None, Value::Int(i)),
                "{}",
                String::from_utf8_lossy(&k)
            );
        }
    }
}
