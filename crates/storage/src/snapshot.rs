//! Point-in-time snapshots of the keyspace without fork: copy-on-write at key granularity.
//!
//! A snapshot walks the slots in order, serializing each slot whole in one step (keys in RDB
//! format, with their expiry). Slots before the cursor are done. Before any change to a key
//! of a slot not yet walked (an update, a deletion, an expiry), the keyspace serializes the
//! key's current state first and flags the entry; a key created in such a slot is flagged at
//! birth (it was not there when the snapshot began). The walk skips flagged entries, clearing
//! the flag. So the records together are exactly the keyspace at the moment the snapshot
//! began, while the shard keeps serving, at no memory cost per key beyond the records in
//! flight. The same serializer will feed the diskless replication payload and slot migration.

use crate::db::Db;
use crate::rdb;
use crate::value::{FLAG_SNAPSHOT, Value};

/// The records of a snapshot, as a byte stream: per key its hash slot (2 bytes), the key and
/// its record ([`Record`]: expiry and the value in RDB format), the key and the record each
/// with a 4-byte length, all little-endian. Checkpoints store it in chunks as it is, and the
/// loader reads it with [`for_each_record`].
///
/// A snapshot for a replica's full sync writes the keys as an RDB file's body instead
/// ([`Format::Rdb`]), ready to stream.
#[derive(Default)]
pub struct RecordStream {
    buf: Vec<u8>,
    /// Records in `buf`.
    pub records: u64,
    pub format: Format,
}

/// What a snapshot produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// [`RecordStream`] records (checkpoints).
    #[default]
    Records,
    /// Keys as an RDB file holds them (expiry, type, key, value): a replica's payload.
    Rdb,
}

impl RecordStream {
    /// Appends one key.
    pub fn push(&mut self, slot: u16, key: &[u8], expire_ms: Option<i64>, value: &Value) {
        if self.format == Format::Rdb {
            rdb::write_file_key(&mut self.buf, key, expire_ms, value);
            self.records += 1;
            return;
        }
        let b = &mut self.buf;
        b.extend_from_slice(&slot.to_le_bytes());
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(key);
        let len_at = b.len();
        b.extend_from_slice(&[0; 4]);
        match expire_ms {
            Some(at) => {
                b.push(1);
                b.extend_from_slice(&at.to_le_bytes());
            }
            None => b.push(0),
        }
        rdb::write_value(b, value);
        let rec = (b.len() - len_at - 4) as u32;
        b[len_at..len_at + 4].copy_from_slice(&rec.to_le_bytes());
        self.records += 1;
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the bytes buffered, leaving `spare` (emptied) to buffer the next ones: chunk
    /// buffers go round instead of being allocated for every chunk.
    pub fn take(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        self.records = 0;
        spare.clear();
        std::mem::replace(&mut self.buf, spare)
    }
}

/// One record of a [`RecordStream`]: the expiry and the RDB-encoded value.
pub struct Record<'a> {
    /// Absolute Unix milliseconds.
    pub expire_ms: Option<i64>,
    /// RDB type byte and value encoding.
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    pub fn decode(b: &'a [u8]) -> Option<Record<'a>> {
        match b.first()? {
            0 => Some(Record {
                expire_ms: None,
                value: &b[1..],
            }),
            1 => Some(Record {
                expire_ms: Some(i64::from_le_bytes(b.get(1..9)?.try_into().ok()?)),
                value: &b[9..],
            }),
            _ => None,
        }
    }

    /// The value, decoded (collections take the encodings `limits` give them).
    pub fn value(&self, limits: &crate::types::CompactLimits) -> Result<Value, rdb::RdbError> {
        let mut r = rdb::Reader::new(self.value);
        let kind = r.u8()?;
        let v = rdb::read_value(&mut r, kind, limits)?;
        if r.position() != self.value.len() as u64 {
            return Err(rdb::RdbError::Corrupt("bytes after the value"));
        }
        Ok(v)
    }
}

/// Calls `f` with the slot, key and record of each record in `bytes` (a chunk of a
/// [`RecordStream`]); an error names what is wrong with a malformed chunk.
pub fn for_each_record(
    bytes: &[u8],
    mut f: impl FnMut(u16, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut p = 0;
    let take = |p: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = bytes
            .get(*p..p.saturating_add(n))
            .ok_or("an image chunk ends inside a record")?;
        *p += n;
        Ok(s)
    };
    while p < bytes.len() {
        let slot = u16::from_le_bytes(take(&mut p, 2)?.try_into().expect("2 bytes"));
        let klen = u32::from_le_bytes(take(&mut p, 4)?.try_into().expect("4 bytes")) as usize;
        let key = take(&mut p, klen)?;
        let rlen = u32::from_le_bytes(take(&mut p, 4)?.try_into().expect("4 bytes")) as usize;
        let rec = take(&mut p, rlen)?;
        f(slot, key, rec)?;
    }
    Ok(())
}

/// A snapshot in progress.
#[derive(Default)]
pub struct Snapshot {
    /// Slots before this one are serialized.
    cursor: usize,
    /// Records not yet taken.
    out: RecordStream,
    /// Keys serialized so far.
    pub keys: u64,
}

impl Db {
    /// Starts a snapshot of the keyspace as it is now (replacing one in progress).
    pub fn begin_snapshot(&mut self, format: Format) {
        self.end_snapshot();
        let mut snap = Box::<Snapshot>::default();
        snap.out.format = format;
        self.snapshot = Some(snap);
    }

    /// Ends the snapshot (done, or abandoned: the flags it left on entries it did not reach
    /// are cleared).
    pub fn end_snapshot(&mut self) {
        if let Some(s) = self.snapshot.take() {
            self.clear_snapshot_flags(s.cursor);
        }
    }

    /// True while a snapshot is in progress.
    pub fn snapshot_running(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Bytes of records waiting to be taken.
    pub fn snapshot_pending_bytes(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| s.out.len())
    }

    /// Keys serialized so far, and the slot cursor.
    pub fn snapshot_progress(&self) -> Option<(u64, usize)> {
        self.snapshot.as_ref().map(|s| (s.keys, s.cursor))
    }

    /// Takes the records produced so far (a [`RecordStream`] chunk), leaving `spare` as the
    /// buffer for the next ones.
    pub fn take_snapshot_records(&mut self, spare: Vec<u8>) -> Vec<u8> {
        match &mut self.snapshot {
            Some(s) => s.out.take(spare),
            None => Vec::new(),
        }
    }

    /// Walks slots until about `max_bytes` of records are produced or every slot is done.
    /// Returns true when the walk is complete (the records may still wait to be taken).
    pub fn snapshot_step(&mut self, max_bytes: usize) -> bool {
        let Some(mut snap) = self.snapshot.take() else {
            return true;
        };
        let start_bytes = snap.out.len();
        while snap.cursor < tessera_protocol::SLOTS && snap.out.len() - start_bytes < max_bytes {
            let slot = snap.cursor;
            self.walk_slot(slot, |entry, expire_ms| {
                snap.out
                    .push(slot as u16, entry.key(), expire_ms, entry.value());
                snap.keys += 1;
            });
            snap.cursor += 1;
        }
        let done = snap.cursor >= tessera_protocol::SLOTS;
        self.snapshot = Some(snap);
        done
    }

    /// The flags of an entry created now in `slot`: flagged when the walk has not reached the
    /// slot (the key was not there when the snapshot began).
    #[inline]
    pub(crate) fn new_entry_flags(&self, slot: usize) -> u32 {
        match &self.snapshot {
            Some(s) if slot >= s.cursor => FLAG_SNAPSHOT,
            _ => 0,
        }
    }
}

/// Before a change to `entry` (in `slot`, updated or just removed): a running snapshot that
/// has not reached the slot serializes the entry first and flags it.
#[inline]
pub(crate) fn before_entry_change(
    snapshot: &mut Option<Box<Snapshot>>,
    expires: &crate::dict::Dict<crate::value::ExpireEntry>,
    slot: usize,
    entry: &mut crate::value::KeyEntry,
) {
    if let Some(snap) = snapshot
        && slot >= snap.cursor
        && entry.flags & FLAG_SNAPSHOT == 0
    {
        save_entry(snap, expires, slot, entry);
    }
}

#[cold]
fn save_entry(
    snap: &mut Snapshot,
    expires: &crate::dict::Dict<crate::value::ExpireEntry>,
    slot: usize,
    entry: &mut crate::value::KeyEntry,
) {
    entry.flags |= FLAG_SNAPSHOT;
    let expire_ms = if entry.is_volatile() {
        expires
            .get(entry.key(), crate::dict::hash(entry.key()))
            .map(|e| e.at)
    } else {
        None
    };
    snap.out
        .push(slot as u16, entry.key(), expire_ms, entry.value());
    snap.keys += 1;
}

#[cfg(test)]
mod tests {
    use crate::db::{Db, Expiry};
    use crate::value::Value;

    fn image(db: &mut Db) -> Vec<(Vec<u8>, Option<i64>, Value)> {
        let mut out = Vec::new();
        loop {
            let done = db.snapshot_step(1000);
            let chunk = db.take_snapshot_records(Vec::new());
            super::for_each_record(&chunk, |slot, key, rec| {
                assert_eq!(slot, tessera_protocol::key_hash_slot(key));
                let r = super::Record::decode(rec).unwrap();
                let v = r.value(&Default::default()).unwrap();
                out.push((key.to_vec(), r.expire_ms, v));
                Ok(())
            })
            .unwrap();
            if done {
                break;
            }
        }
        db.end_snapshot();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn an_abandoned_snapshot_leaves_no_marks() {
        let mut db = Db::new();
        for i in 0..500 {
            db.set(
                format!("k{i}").as_bytes(),
                Value::Int(i),
                Expiry::Persist,
                0,
            );
        }
        db.begin_snapshot(super::Format::Records);
        db.snapshot_step(10);
        for i in 0..500 {
            if let Some(e) = db.get_mut(format!("k{i}").as_bytes(), 0) {
                *e.value_mut() = Value::Int(-i);
            }
        }
        db.set(b"late", Value::Int(7), Expiry::Persist, 0);
        db.end_snapshot();
        db.begin_snapshot(super::Format::Records);
        let img = image(&mut db);
        assert_eq!(img.len(), 501);
        for (k, _, v) in img {
            if k != b"late" {
                let i: i64 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
                assert_eq!(v, Value::Int(-i));
            }
        }
    }

    #[test]
    fn the_image_is_the_state_when_it_began() {
        let mut db = Db::new();
        for i in 0..2000 {
            let k = format!("k{i}");
            db.set(k.as_bytes(), Value::Int(i), Expiry::Persist, 0);
        }
        db.set(b"ttl", Value::Int(1), Expiry::At(5000), 0);
        db.begin_snapshot(super::Format::Records);
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
