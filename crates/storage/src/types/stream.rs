//! Streams, after Redis's t_stream.c.
//!
//! Entries live in nodes keyed by the ID of the first entry added to them, in a `BTreeMap`
//! (Redis: a radix tree of listpacks). A node fills up as Redis's listpack does: it closes at
//! `stream-node-max-entries` entries (deleted ones count) or when its listpack would reach
//! `stream-node-max-bytes`, computed with Redis's listpack encoding sizes. So the node layout
//! matches Redis's, and with it everything that depends on it: approximate trimming (`~`)
//! removes whole nodes only, and `XINFO STREAM` reports the same `radix-tree-keys`. Deleted
//! entries stay in their node, flagged, until the node is empty, as in Redis.
//!
//! A node packs its entries into one byte buffer, as a listpack does: per entry a flags byte,
//! the ID as varint deltas from the node's first ID, and the length-prefixed values, with the
//! field names only when they differ from the node's first entry's. A one-field entry costs
//! its value plus about six bytes.
//!
//! Consumer groups keep their pending entries lists (PEL) in ordered maps: one per group with
//! the delivery data, one per consumer with its IDs.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::bytes::SmallBytes;
use crate::rdb::RdbError;
use crate::rdb::packed::{Item, ListpackWriter, listpack};

/// A stream entry ID: milliseconds and sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID, or `None` after the last possible one.
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous ID, or `None` before `0-0`.
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// The `ms-seq` text form.
    pub fn to_text(self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }

    /// The 16-byte big-endian key Redis files the ID under.
    fn key(self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.ms.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }
}

/// A view of one entry: its ID and its field-value pairs.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub id: StreamId,
    /// The node's field names when the entry has the same fields (its data is then values
    /// only), or `None` when its data alternates fields and values.
    master: Option<&'a [u8]>,
    data: &'a [u8],
}

impl<'a> Entry<'a> {
    /// The fields and values, alternating.
    pub fn items(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (master, data) = (self.master, self.data);
        let same = master.map(|m| Items(m).zip(Items(data)).flat_map(|(f, v)| [f, v]));
        let own = master.is_none().then_some(Items(data));
        same.into_iter().flatten().chain(own.into_iter().flatten())
    }

    /// Number of fields.
    pub fn field_count(&self) -> usize {
        match self.master {
            Some(_) => Items(self.data).count(),
            None => Items(self.data).count() / 2,
        }
    }
}

/// Iterator over packed strings.
#[derive(Clone)]
pub struct Items<'a>(&'a [u8]);

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let (len, n) = read_varint(self.0);
        let (item, rest) = self.0[n..].split_at(len as usize);
        self.0 = rest;
        Some(item)
    }
}

fn read_varint(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    let mut shift = 0;
    for (i, &byte) in b.iter().enumerate() {
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
        shift += 7;
    }
    (v, b.len())
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pack_into(out: &mut Vec<u8>, items: impl Iterator<Item = impl AsRef<[u8]>>) {
    for item in items {
        let item = item.as_ref();
        push_varint(out, item.len() as u64);
        out.extend_from_slice(item);
    }
}

fn pack(items: &[&[u8]]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 2).sum());
    pack_into(&mut out, items.iter());
    out.into_boxed_slice()
}

/// Size of one listpack element holding `enc` bytes, with its back length.
fn lp_element(enc: usize) -> usize {
    let back = match enc {
        0..=127 => 1,
        128..=16383 => 2,
        16384..=2097151 => 3,
        2097152..=268435455 => 4,
        _ => 5,
    };
    enc + back
}

/// Size of an integer element in a listpack.
fn lp_int(v: i64) -> usize {
    lp_element(match v {
        0..=127 => 1,
        -4096..=4095 => 2,
        -32768..=32767 => 3,
        -8388608..=8388607 => 4,
        -2147483648..=2147483647 => 5,
        _ => 9,
    })
}

/// Size of a string element in a listpack (canonical integers are stored as integers).
fn lp_str(s: &[u8]) -> usize {
    if s.len() <= 20
        && let Some(v) = tessera_protocol::num::parse_i64(s)
    {
        return lp_int(v);
    }
    lp_element(match s.len() {
        0..=63 => 1 + s.len(),
        64..=4095 => 2 + s.len(),
        _ => 5 + s.len(),
    })
}

/// Entry flags, as Redis's.
const DELETED: u8 = 1;
const SAME_FIELDS: u8 = 2;

/// A node: up to `stream-node-max-entries` entries, deleted ones included.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    master: StreamId,
    /// The field names of the first entry (the listpack's master entry).
    master_fields: Box<[u8]>,
    /// The entries: flags, ms and seq deltas (varints), data length (varint), data.
    buf: Vec<u8>,
    live: u64,
    deleted: u64,
    /// Bytes of the equivalent listpack but for the live and deleted counters.
    bytes: usize,
}

/// One record of a node's buffer.
struct Record<'a> {
    /// Offset of the flags byte.
    at: usize,
    flags: u8,
    id: StreamId,
    data: &'a [u8],
}

/// Iterator over a node's records, deleted ones included.
struct Records<'a> {
    node: &'a Node,
    pos: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let buf = &self.node.buf;
        if self.pos >= buf.len() {
            return None;
        }
        let at = self.pos;
        let flags = buf[at];
        let mut p = at + 1;
        let (ms, n) = read_varint(&buf[p..]);
        p += n;
        let (seq, n) = read_varint(&buf[p..]);
        p += n;
        let (len, n) = read_varint(&buf[p..]);
        p += n;
        let data = &buf[p..p + len as usize];
        self.pos = p + len as usize;
        let m = self.node.master;
        Some(Record {
            at,
            flags,
            id: StreamId::new(m.ms.wrapping_add(ms), m.seq.wrapping_add(seq)),
            data,
        })
    }
}

impl Node {
    fn lp_bytes(&self) -> usize {
        self.bytes + lp_int(self.live as i64) + lp_int(self.deleted as i64)
    }

    fn records(&self) -> Records<'_> {
        Records { node: self, pos: 0 }
    }

    fn entry<'a>(&'a self, r: &Record<'a>) -> Entry<'a> {
        Entry {
            id: r.id,
            master: (r.flags & SAME_FIELDS != 0).then_some(&*self.master_fields),
            data: r.data,
        }
    }

    /// The live entries, in order.
    fn entries(&self) -> impl DoubleEndedIterator<Item = Entry<'_>> + '_ {
        let live: Vec<Entry<'_>> = self
            .records()
            .filter(|r| r.flags & DELETED == 0)
            .map(|r| self.entry(&r))
            .collect();
        live.into_iter()
    }

    /// The ID of the last record, deleted or not.
    fn last_id(&self) -> Option<StreamId> {
        self.records().last().map(|r| r.id)
    }

    /// The node as Redis's stream listpack: the master entry (live and deleted counts, the
    /// master fields, a zero terminator), then per entry its flags, ID deltas, fields or
    /// values only, and lp-count.
    fn to_listpack(&self) -> Vec<u8> {
        let mut w = ListpackWriter::new();
        w.push_int(self.live as i64);
        w.push_int(self.deleted as i64);
        let nfields = Items(&self.master_fields).count();
        w.push_int(nfields as i64);
        for f in Items(&self.master_fields) {
            w.push_str(f);
        }
        w.push_int(0);
        for r in self.records() {
            w.push_int(i64::from(r.flags));
            w.push_int(r.id.ms.wrapping_sub(self.master.ms) as i64);
            w.push_int(r.id.seq.wrapping_sub(self.master.seq) as i64);
            let lp_count = if r.flags & SAME_FIELDS != 0 {
                Items(r.data).for_each(|v| w.push_str(v));
                nfields as i64 + 3
            } else {
                let n = Items(r.data).count() / 2;
                w.push_int(n as i64);
                Items(r.data).for_each(|v| w.push_str(v));
                2 * n as i64 + 4
            };
            w.push_int(lp_count);
        }
        w.finish()
    }
}

/// A pending entry of a consumer group: delivered, not yet acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct Nack {
    pub consumer: SmallBytes,
    /// Unix time in milliseconds of the last delivery.
    pub delivery_time: i64,
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Consumer {
    /// Unix time in milliseconds the consumer was last active.
    pub seen_time: i64,
    pub pel: BTreeSet<StreamId>,
}

/// `entries_read` of a group whose position is unknown.
pub const ENTRIES_READ_UNKNOWN: i64 = -1;

/// A consumer group.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Group {
    pub last_id: StreamId,
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Nack>,
    pub consumers: BTreeMap<Vec<u8>, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// Assigns pending entry `id` to `consumer` (which must exist), as a new delivery at
    /// `now`. A pending entry of another consumer moves over.
    pub fn deliver(&mut self, id: StreamId, consumer: &[u8], now: i64) {
        if let Some(old) = self.pel.get(&id)
            && let Some(c) = self.consumers.get_mut(old.consumer.as_bytes())
        {
            c.pel.remove(&id);
        }
        self.pel.insert(
            id,
            Nack {
                consumer: SmallBytes::new(consumer),
                delivery_time: now,
                delivery_count: 1,
            },
        );
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }

    /// Removes `id` from the pending lists; true if it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        match self.pel.remove(&id) {
            Some(nack) => {
                if let Some(c) = self.consumers.get_mut(nack.consumer.as_bytes()) {
                    c.pel.remove(&id);
                }
                true
            }
            None => false,
        }
    }

    /// Moves pending entry `id` to `consumer` (which must exist).
    pub fn transfer(&mut self, id: StreamId, consumer: &[u8]) {
        let Some(nack) = self.pel.get_mut(&id) else {
            return;
        };
        if nack.consumer.as_bytes() != consumer {
            if let Some(c) = self.consumers.get_mut(nack.consumer.as_bytes()) {
                c.pel.remove(&id);
            }
            nack.consumer = SmallBytes::new(consumer);
        }
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }

    /// Creates `name` if missing (seen now); true if it was created.
    pub fn ensure_consumer(&mut self, name: &[u8], now: i64) -> bool {
        if self.consumers.contains_key(name) {
            return false;
        }
        self.consumers.insert(
            name.to_vec(),
            Consumer {
                seen_time: now,
                pel: BTreeSet::new(),
            },
        );
        true
    }

    /// Deletes consumer `name` and its pending entries; the number of pending entries it had.
    pub fn remove_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pel {
            self.pel.remove(id);
        }
        Some(c.pel.len())
    }
}

/// How to trim a stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// A stream.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Stream {
    nodes: BTreeMap<StreamId, Node>,
    length: u64,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Vec<u8>, Group>,
}

/// The node limits (`stream-node-max-bytes`, `stream-node-max-entries`; 0 is no limit).
#[derive(Clone, Copy, Debug)]
pub struct NodeLimits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_bytes: 4096,
            max_entries: 100,
        }
    }
}

/// Redis's `STREAM_LISTPACK_MAX_SIZE`.
const LISTPACK_MAX_SIZE: u64 = 1 << 30;

impl Stream {
    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Appends an entry with ID `id`, which must be greater than the last ID.
    /// `items` alternates fields and values.
    pub fn append(&mut self, id: StreamId, items: &[&[u8]], limits: NodeLimits) {
        let fields: Vec<&[u8]> = items.iter().step_by(2).copied().collect();
        let total: usize = items.iter().map(|i| i.len()).sum();
        let max_bytes = match limits.max_bytes {
            0 => LISTPACK_MAX_SIZE,
            b => b.min(LISTPACK_MAX_SIZE),
        };
        let open = self.nodes.last_key_value().is_some_and(|(_, n)| {
            (n.lp_bytes() + total) < max_bytes as usize
                && (limits.max_entries == 0 || n.live + n.deleted < limits.max_entries)
        });
        if !open {
            if let Some(mut last) = self.nodes.last_entry() {
                last.get_mut().buf.shrink_to_fit();
            }
            let master_fields = pack(&fields);
            // Header and end byte, count and deleted aside, num-fields, fields, terminator.
            let bytes = 7
                + lp_int(fields.len() as i64)
                + fields.iter().map(|f| lp_str(f)).sum::<usize>()
                + lp_int(0);
            self.nodes.insert(
                id,
                Node {
                    master: id,
                    master_fields,
                    buf: Vec::new(),
                    live: 0,
                    deleted: 0,
                    bytes,
                },
            );
        }
        let node = self
            .nodes
            .last_entry()
            .map(|e| e.into_mut())
            .expect("a node was just ensured");
        let same = Items(&node.master_fields).eq(fields.iter().copied());
        let ms_diff = id.ms.wrapping_sub(node.master.ms) as i64;
        let seq_diff = id.seq.wrapping_sub(node.master.seq) as i64;
        let mut size = lp_int(if same { 2 } else { 0 }) + lp_int(ms_diff) + lp_int(seq_diff);
        let mut lp_count = fields.len() as i64 + 3;
        if !same {
            size += lp_int(fields.len() as i64);
            size += fields.iter().map(|f| lp_str(f)).sum::<usize>();
            lp_count += fields.len() as i64 + 1;
        }
        size += items
            .iter()
            .skip(1)
            .step_by(2)
            .map(|v| lp_str(v))
            .sum::<usize>();
        size += lp_int(lp_count);
        node.bytes += size;
        node.live += 1;
        let mut data = Vec::new();
        if same {
            pack_into(&mut data, items.iter().skip(1).step_by(2));
        } else {
            pack_into(&mut data, items.iter());
        }
        let first_in_node = node.buf.is_empty();
        node.buf.push(if same { SAME_FIELDS } else { 0 });
        push_varint(&mut node.buf, ms_diff as u64);
        push_varint(&mut node.buf, seq_diff as u64);
        push_varint(&mut node.buf, data.len() as u64);
        node.buf.extend_from_slice(&data);
        if first_in_node {
            // Size the buffer for a full node of entries like this one, so it is not grown
            // (and copied) as it fills, nor left with doubling slack.
            let per_entry = node.buf.len();
            let entries = match limits.max_entries {
                0 => usize::MAX,
                n => n as usize,
            };
            let want = per_entry
                .saturating_mul(entries)
                .min(max_bytes as usize)
                .min(1 << 16);
            node.buf.reserve_exact(want.saturating_sub(node.buf.len()));
        }
        if self.length == 0 {
            self.first_id = id;
        }
        self.length += 1;
        self.last_id = id;
        self.entries_added += 1;
    }

    /// The entry with ID `id`.
    pub fn get(&self, id: StreamId) -> Option<Entry<'_>> {
        let (_, node) = self.nodes.range(..=id).next_back()?;
        node.records()
            .find(|r| r.id == id && r.flags & DELETED == 0)
            .map(|r| node.entry(&r))
    }

    /// Entries with IDs in `start..=end`, in order.
    pub fn range(&self, start: StreamId, end: StreamId) -> impl Iterator<Item = Entry<'_>> + '_ {
        let from = self
            .nodes
            .range(..=start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        self.nodes
            .range(from..)
            .flat_map(|(_, n)| {
                n.records()
                    .filter(|r| r.flags & DELETED == 0)
                    .map(move |r| n.entry(&r))
            })
            .skip_while(move |e| e.id < start)
            .take_while(move |e| e.id <= end)
    }

    /// Entries with IDs in `start..=end`, last first.
    pub fn range_rev(
        &self,
        start: StreamId,
        end: StreamId,
    ) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.nodes
            .range(..=end)
            .rev()
            .flat_map(|(_, n)| n.entries().rev())
            .skip_while(move |e| e.id > end)
            .take_while(move |e| e.id >= start)
    }

    /// The first live entry.
    pub fn first(&self) -> Option<Entry<'_>> {
        self.range(StreamId::MIN, StreamId::MAX).next()
    }

    /// The last live entry.
    pub fn last(&self) -> Option<Entry<'_>> {
        self.range_rev(StreamId::MIN, StreamId::MAX).next()
    }

    /// Deletes entry `id`; true if it existed. The node goes when its last entry does.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some((&key, node)) = self.nodes.range_mut(..=id).next_back() else {
            return false;
        };
        let Some(at) = node
            .records()
            .find(|r| r.id == id && r.flags & DELETED == 0)
            .map(|r| r.at)
        else {
            return false;
        };
        node.buf[at] |= DELETED;
        node.live -= 1;
        node.deleted += 1;
        if node.live == 0 {
            self.nodes.remove(&key);
        }
        self.length -= 1;
        if self.length == 0 {
            self.first_id = StreamId::MIN;
        } else if id == self.first_id {
            self.first_id = self.first().map_or(StreamId::MIN, |e| e.id);
        }
        true
    }

    /// Trims the stream as Redis's `streamTrim`: whole nodes first; with `approx` nothing
    /// else, otherwise entries of the next node too. `limit` (0: none) caps the entries
    /// removed, in whole nodes. Returns the number of entries removed.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: u64) -> u64 {
        let mut removed = 0;
        while let Some((&key, node)) = self.nodes.first_key_value() {
            if let Trim::MaxLen(max) = how
                && self.length <= max
            {
                break;
            }
            if limit > 0 && removed + node.live > limit {
                break;
            }
            let whole = match how {
                Trim::MaxLen(max) => self.length - node.live >= max,
                Trim::MinId(min) => node.last_id().is_some_and(|last| last < min),
            };
            if whole {
                self.length -= node.live;
                removed += node.live;
                self.nodes.remove(&key);
                continue;
            }
            if approx {
                break;
            }
            let node = self.nodes.get_mut(&key).expect("the first node");
            let records: Vec<(usize, u8, StreamId)> =
                node.records().map(|r| (r.at, r.flags, r.id)).collect();
            for (at, flags, id) in records {
                let stop = match how {
                    Trim::MaxLen(max) => self.length <= max,
                    Trim::MinId(min) => id >= min,
                };
                if stop {
                    break;
                }
                if flags & DELETED == 0 {
                    node.buf[at] |= DELETED;
                    node.live -= 1;
                    node.deleted += 1;
                    self.length -= 1;
                    removed += 1;
                }
            }
            break;
        }
        if removed > 0 {
            self.first_id = self.first().map_or(StreamId::MIN, |e| e.id);
        }
        removed
    }

    /// Every node as Redis's stream listpack (RDB and DUMP), with its master ID.
    pub(crate) fn node_listpacks(&self) -> Vec<(StreamId, Vec<u8>)> {
        self.nodes
            .iter()
            .map(|(k, n)| (*k, n.to_listpack()))
            .collect()
    }

    /// Adds a node read from a Redis stream listpack whose master entry has ID `master`. Nodes
    /// must come in ID order; a node with no live entry is dropped (Redis never keeps one).
    pub(crate) fn push_listpack_node(
        &mut self,
        master: StreamId,
        lp: &[u8],
    ) -> Result<(), RdbError> {
        let bad = RdbError::Corrupt;
        let items = listpack(lp)?;
        let mut it = items.into_iter();
        let int = |it: &mut std::vec::IntoIter<Item<'_>>| {
            it.next()
                .and_then(Item::as_int)
                .ok_or(bad("stream listpack: integer expected"))
        };
        let count = int(&mut it)?;
        let deleted = int(&mut it)?;
        let nfields = int(&mut it)?;
        if count < 0 || deleted < 0 || nfields < 0 || nfields as usize > lp.len() {
            return Err(bad("stream listpack: invalid master entry"));
        }
        let mut fields = Vec::with_capacity(nfields as usize);
        for _ in 0..nfields {
            fields.push(
                it.next()
                    .ok_or(bad("stream listpack: truncated master entry"))?
                    .to_vec(),
            );
        }
        if int(&mut it)? != 0 {
            return Err(bad("stream listpack: master entry without terminator"));
        }
        if self
            .nodes
            .last_key_value()
            .is_some_and(|(&k, n)| k >= master || n.last_id().is_some_and(|last| last >= master))
        {
            return Err(bad("stream nodes out of order"));
        }
        let mut node = Node {
            master,
            master_fields: pack(&fields.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            buf: Vec::new(),
            live: 0,
            deleted: 0,
            bytes: lp.len().saturating_sub(lp_int(count) + lp_int(deleted)),
        };
        let mut last: Option<StreamId> = None;
        let mut data = Vec::new();
        while it.len() > 0 {
            let flags = int(&mut it)?;
            if !(0..=3).contains(&flags) {
                return Err(bad("stream listpack: invalid entry flags"));
            }
            let flags = flags as u8;
            let ms = int(&mut it)?;
            let seq = int(&mut it)?;
            let id = StreamId::new(
                master.ms.wrapping_add(ms as u64),
                master.seq.wrapping_add(seq as u64),
            );
            if id < master || last.is_some_and(|l| id <= l) {
                return Err(bad("stream listpack: entry IDs out of order"));
            }
            last = Some(id);
            data.clear();
            let n = if flags & SAME_FIELDS != 0 {
                for _ in 0..nfields {
                    let v = it.next().ok_or(bad("stream listpack: truncated entry"))?;
                    pack_into(&mut data, std::iter::once(v.to_vec()));
                }
                nfields + 3
            } else {
                let n = int(&mut it)?;
                if n < 0 || n as usize > lp.len() {
                    return Err(bad("stream listpack: invalid field count"));
                }
                for _ in 0..2 * n {
                    let v = it.next().ok_or(bad("stream listpack: truncated entry"))?;
                    pack_into(&mut data, std::iter::once(v.to_vec()));
                }
                2 * n + 4
            };
            if int(&mut it)? != n {
                return Err(bad("stream listpack: invalid lp-count"));
            }
            node.buf.push(flags);
            push_varint(&mut node.buf, ms as u64);
            push_varint(&mut node.buf, seq as u64);
            push_varint(&mut node.buf, data.len() as u64);
            node.buf.extend_from_slice(&data);
            if flags & DELETED != 0 {
                node.deleted += 1;
            } else {
                node.live += 1;
            }
        }
        if node.live != count as u64 || node.deleted != deleted as u64 {
            return Err(bad("stream listpack: entry counts do not match"));
        }
        if node.live > 0 {
            node.buf.shrink_to_fit();
            self.length += node.live;
            self.nodes.insert(master, node);
        }
        Ok(())
    }

    /// Number of nodes (`radix-tree-keys`).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of radix tree nodes Redis's rax would have for these node keys
    /// (`radix-tree-nodes`): the root, the keys, every branching prefix and its children.
    pub fn rax_node_count(&self) -> usize {
        let keys: Vec<[u8; 16]> = self.nodes.keys().map(|k| k.key()).collect();
        let mut prefixes: HashSet<&[u8]> = HashSet::new();
        prefixes.insert(&[]);
        for k in &keys {
            prefixes.insert(k);
        }
        for pair in keys.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let l = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
            prefixes.insert(&a[..l]);
            prefixes.insert(&a[..l + 1]);
            prefixes.insert(&b[..l + 1]);
        }
        prefixes.len()
    }

    /// Approximate heap bytes.
    pub fn heap_size(&self) -> usize {
        let mut size = std::mem::size_of::<Stream>();
        for node in self.nodes.values() {
            size += 96 + node.master_fields.len() + node.buf.capacity();
        }
        for g in self.groups.values() {
            size += 96 + g.pel.len() * 80;
            for (name, c) in &g.consumers {
                size += 64 + name.len() + c.pel.len() * 40;
            }
        }
        size
    }

    /// The group's position in the stream's history, when it can be known: Redis's
    /// `streamEstimateDistanceFromFirstEverEntry`.
    pub fn estimate_entries_read(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.length == 0 && id <= self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        if self.max_deleted_id.is_zero() || self.max_deleted_id < self.first_id {
            if id < self.first_id {
                return Some(self.entries_added - self.length);
            }
            if id == self.first_id {
                return Some(self.entries_added - self.length + 1);
            }
        }
        None
    }

    /// True if a deleted entry may lie in `start..=MAX` (Redis's `streamRangeHasTombstones`).
    pub fn has_tombstones_after(&self, start: StreamId) -> bool {
        if self.length == 0 || self.max_deleted_id.is_zero() {
            return false;
        }
        if self.first_id > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id
    }

    /// The lag of a group: entries not yet read by it, when known.
    pub fn lag(&self, g: &Group) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != ENTRIES_READ_UNKNOWN && !self.has_tombstones_after(g.last_id) {
            return Some(self.entries_added.wrapping_sub(g.entries_read as u64));
        }
        self.estimate_entries_read(g.last_id)
            .map(|read| self.entries_added - read)
    }

    /// Updates a group's position after delivering entry `id` to it (`XREADGROUP >`).
    pub fn advance_group(&mut self, group: &[u8], id: StreamId) {
        let tombstones = self.has_tombstones_after(id);
        let estimate = self.estimate_entries_read(id);
        let added = self.entries_added;
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if id <= g.last_id {
            return;
        }
        if g.entries_read != ENTRIES_READ_UNKNOWN && !tombstones {
            g.entries_read += 1;
        } else if added > 0 {
            g.entries_read = estimate.map_or(ENTRIES_READ_UNKNOWN, |v| v as i64);
        }
        g.last_id = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 0)
    }

    #[test]
    fn nodes_close_at_max_entries_and_trim_by_node() {
        let mut s = Stream::default();
        for i in 1..=250 {
            s.append(id(i), &[b"f", b"v"], NodeLimits::default());
        }
        assert_eq!(s.len(), 250);
        assert_eq!(s.node_count(), 3);
        assert_eq!(s.range(id(100), id(102)).count(), 3);
        assert_eq!(s.range_rev(id(100), id(102)).next().unwrap().id, id(102));
        // Approximate: only whole nodes go.
        assert_eq!(s.trim(Trim::MaxLen(120), true, 0), 100);
        assert_eq!(s.len(), 150);
        // Exact: the rest of the way inside the next node.
        assert_eq!(s.trim(Trim::MaxLen(120), false, 0), 30);
        assert_eq!(s.first().unwrap().id, id(131));
        assert_eq!(s.first_id, id(131));
        assert!(s.delete(id(131)));
        assert!(!s.delete(id(131)));
        assert_eq!(s.first_id, id(132));
        assert_eq!(
            s.get(id(150)).unwrap().items().collect::<Vec<_>>(),
            [b"f", b"v"]
        );
    }

    #[test]
    fn rax_nodes_follow_redis() {
        let mut s = Stream::default();
        s.append(StreamId::new(1, 1), &[b"a", b"1"], NodeLimits::default());
        assert_eq!(s.rax_node_count(), 2);
    }

    #[test]
    fn listpack_sizes() {
        assert_eq!(lp_int(5), 2);
        assert_eq!(lp_int(-1), 3);
        assert_eq!(lp_str(b"hello"), 7);
        assert_eq!(lp_str(b"123"), 2);
        assert_eq!(lp_str(&[b'x'; 200]), 204);
    }
}
