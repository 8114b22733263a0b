//! [`Db`]: the keyspace of a shard, indexed by hash slot.
//!
//! Each of the 16384 slots has its own [`Dict`], so a slot can be counted, listed, snapshotted
//! and migrated on its own, and no resize ever touches more than one slot's keys. Expiry times
//! live in a separate dict (as in Redis), so keys without a TTL pay nothing for them; an entry's
//! `FLAG_VOLATILE` bit says whether to look there. Keys expire lazily when touched and actively
//! through [`Db::active_expire_cycle`], Redis's adaptive sampling cycle.
//!
//! All times are Unix milliseconds passed in by the caller, so one command sees one clock.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tessera_protocol::slot::{SLOTS, key_hash_slot};

use crate::bytes::SmallBytes;
use crate::dict::{Dict, hash};
use crate::value::{ExpireEntry, FLAG_SNAPSHOT, FLAG_VOLATILE, KeyEntry, Value};

/// The LRU clock at Unix time `now_ms`: seconds in 24 bits, as Redis keeps per object.
#[inline]
pub fn lru_clock_at(now_ms: i64) -> u32 {
    ((now_ms / 1000) as u32) & 0xFF_FFFF
}

/// The LRU clock now.
pub fn lru_clock() -> u32 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    lru_clock_at(ms)
}

/// The expiry part of a write, as SET and friends request it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Remove any time to live.
    Persist,
    /// Keep the key's time to live (`KEEPTTL`, and in-place edits like APPEND).
    Keep,
    /// Expire at this Unix time in milliseconds.
    At(i64),
}

/// Counters the keyspace maintains for `INFO`.
#[derive(Clone, Debug, Default)]
pub struct DbStats {
    /// Keys deleted because their time to live ran out (`expired_keys`).
    pub expired_keys: u64,
    /// Running estimate of the share of expired keys among sampled volatile keys, in percent
    /// (`expired_stale_perc`).
    pub expired_stale_perc: f64,
    /// Active expire cycles that stopped at their time limit (`expired_time_cap_reached_count`).
    pub expired_time_cap_reached_count: u64,
    /// Microseconds spent in active expiry (`expire_cycle_cpu_milliseconds` is this / 1000).
    pub expire_cycle_us: u64,
}

/// Tuning of the active expire cycle (`active-expire-effort` 1..10 derives them in Redis).
#[derive(Clone, Copy, Debug)]
pub struct ExpireTuning {
    pub keys_per_loop: usize,
    pub acceptable_stale: u64,
}

impl ExpireTuning {
    /// Redis's values for an `active-expire-effort` of 1..=10.
    pub fn from_effort(effort: u32) -> Self {
        let e = effort.clamp(1, 10) as usize - 1;
        ExpireTuning {
            keys_per_loop: 20 + 20 / 4 * e,
            acceptable_stale: 10 - e as u64,
        }
    }
}

/// The keyspace of one database.
pub struct Db {
    slots: Box<[Dict<KeyEntry>]>,
    expires: Dict<ExpireEntry>,
    /// Number of keys (DBSIZE); per-slot counts are the slot dicts' lengths.
    keys: usize,
    expires_cursor: u64,
    rng: SmallRng,
    /// `INFO` counters.
    pub stats: DbStats,
    /// Thresholds of the compact encodings (from the server's configuration).
    pub limits: crate::types::CompactLimits,
    /// When set, new keys start with an LFU counter instead of an LRU clock (LFU policies).
    pub lfu: bool,
    /// When set, keys deleted because they expired are recorded for [`Db::take_expired`]
    /// (the server turns them into WATCH invalidations).
    pub log_expired: bool,
    expired_log: Vec<SmallBytes>,
    /// When set, keys created are recorded for [`Db::take_new`] (keyspace `new` events).
    pub log_new: bool,
    new_log: Vec<SmallBytes>,
    /// While set nothing expires: loading and replaying the effect stream, where expiry arrives
    /// as explicit DEL effects (Redis: keys never expire while loading or on a replica).
    pub no_expiry: bool,
    /// A replica's keyspace: expired keys are hidden from readers but not deleted (the
    /// primary's DEL removes them, as on a Redis replica).
    pub keep_expired: bool,
    /// The snapshot in progress (`snapshot.rs`): changes save the old state first.
    pub(crate) snapshot: Option<Box<crate::snapshot::Snapshot>>,
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a key lives: its slot and its hash.
#[derive(Clone, Copy)]
pub struct Loc {
    slot: usize,
    hash: u64,
}

#[inline]
fn loc(key: &[u8]) -> Loc {
    Loc {
        slot: key_hash_slot(key) as usize,
        hash: hash(key),
    }
}

impl Db {
    /// Where `key` lives, for [`Db::prefetch`].
    #[inline]
    pub fn locate(key: &[u8]) -> Loc {
        loc(key)
    }

    /// Starts loading the memory a lookup at `at` will read: `step` 0 the slot's dict, 1 its
    /// bucket, 2 the bucket's first entry. Each step reads what the one before loaded, so the
    /// steps go some work apart (a script's set-up) for their loads to arrive meanwhile.
    #[inline]
    pub fn prefetch(&self, at: Loc, step: u8) {
        let dict = &self.slots[at.slot];
        match step {
            0 => crate::dict::prefetch(dict),
            1 => dict.prefetch_bucket(at.hash),
            _ => dict.prefetch_entry(at.hash),
        }
    }

    /// An empty keyspace.
    pub fn new() -> Self {
        Db {
            slots: (0..SLOTS).map(|_| Dict::new()).collect(),
            expires: Dict::new(),
            keys: 0,
            expires_cursor: 0,
            rng: SmallRng::from_os_rng(),
            stats: DbStats::default(),
            limits: crate::types::CompactLimits::default(),
            log_expired: false,
            expired_log: Vec::new(),
            log_new: false,
            new_log: Vec::new(),
            no_expiry: false,
            keep_expired: false,
            snapshot: None,
            lfu: false,
        }
    }

    /// Number of keys, including expired keys not yet deleted (as Redis's `DBSIZE`).
    #[inline]
    pub fn len(&self) -> usize {
        self.keys
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys with a time to live.
    pub fn volatile_len(&self) -> usize {
        self.expires.len()
    }

    /// Number of keys in `slot`.
    pub fn slot_len(&self, slot: u16) -> usize {
        self.slots[slot as usize].len()
    }

    fn expire_at_loc(&self, key: &[u8], l: Loc) -> Option<i64> {
        self.expires.get(key, l.hash).map(|e| e.at)
    }

    /// The access field of a new key: the LRU clock, or an LFU counter under LFU policies.
    fn initial_access(&self, now: i64) -> u32 {
        if self.lfu {
            crate::lfu::initial(now)
        } else {
            lru_clock_at(now)
        }
    }

    /// A random stored key for eviction sampling: a random non-empty slot, then a random key
    /// of it (cheap, close to uniform when keys are spread over many slots).
    pub fn sample_key(&mut self) -> Option<&KeyEntry> {
        if self.keys == 0 {
            return None;
        }
        for _ in 0..64 {
            let slot = self.rng.random_range(0..SLOTS);
            if !self.slots[slot].is_empty() {
                return self.slots[slot].random(&mut self.rng);
            }
        }
        let slot = self.slots.iter().position(|d| !d.is_empty())?;
        self.slots[slot].random(&mut self.rng)
    }

    /// A random key with a time to live, and its expiry time.
    pub fn sample_volatile(&mut self) -> Option<(SmallBytes, i64)> {
        self.expires
            .random(&mut self.rng)
            .map(|e| (e.key.clone(), e.at))
    }

    fn note_expired(&mut self, key: &[u8]) {
        self.stats.expired_keys += 1;
        if self.log_expired {
            self.expired_log.push(SmallBytes::new(key));
        }
    }

    /// Keys deleted by expiry since the last call (while `log_expired` is set).
    pub fn take_expired(&mut self) -> Vec<SmallBytes> {
        std::mem::take(&mut self.expired_log)
    }

    /// Keys created since the last call (while `log_new` is set).
    pub fn take_new(&mut self) -> Vec<SmallBytes> {
        std::mem::take(&mut self.new_log)
    }

    /// True if created keys are waiting in the log.
    pub fn has_new_log(&self) -> bool {
        !self.new_log.is_empty()
    }

    fn note_new(&mut self, key: &[u8]) {
        if self.log_new {
            self.new_log.push(SmallBytes::new(key));
        }
    }

    /// True if expired keys are waiting in the log.
    pub fn has_expired_log(&self) -> bool {
        !self.expired_log.is_empty()
    }

    /// True if `key` is stored but its time to live has run out (not yet deleted).
    pub fn is_logically_expired(&self, key: &[u8], now: i64) -> bool {
        self.find_stored(key).is_some() && self.peek(key, now).is_none()
    }

    /// True if the entry at `l` has expired at `now`; deletes it if so.
    #[inline]
    fn expire_if_needed(&mut self, key: &[u8], l: Loc, now: i64) -> bool {
        match self.expire_at_loc(key, l) {
            Some(at) if at <= now && !self.no_expiry => {
                if self.keep_expired {
                    return true;
                }
                self.remove_at(key, l);
                self.note_expired(key);
                true
            }
            _ => false,
        }
    }

    /// Looks up a live key for reading or writing. An expired key is deleted and not found.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8], now: i64) -> Option<&mut KeyEntry> {
        let l = loc(key);
        // As Redis's expireIfNeeded: the expires dict is consulted only when it holds keys, and
        // the main dict is searched once.
        if !self.expires.is_empty() && self.expire_if_needed(key, l, now) {
            return None;
        }
        let Db {
            slots,
            snapshot,
            expires,
            ..
        } = self;
        let entry = slots[l.slot].get_mut(key, l.hash)?;
        // The caller may change it: a snapshot that has not reached it saves it first.
        crate::snapshot::before_entry_change(snapshot, expires, l.slot, entry);
        Some(entry)
    }

    /// Looks up a live key for writing, inserting `make()` first when it is missing; the key's
    /// slot and hash are computed once.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        key: &[u8],
        now: i64,
        make: impl FnOnce() -> Value,
    ) -> &mut KeyEntry {
        let l = loc(key);
        if !self.expires.is_empty() {
            self.expire_if_needed(key, l, now);
        }
        if self.slots[l.slot].get(key, l.hash).is_none() {
            let entry = KeyEntry {
                key: SmallBytes::new(key),
                value: make(),
                access: self.initial_access(now),
                flags: self.new_entry_flags(l.slot),
            };
            self.slots[l.slot].insert_new(entry, l.hash);
            self.keys += 1;
            self.note_new(key);
        }
        let Db {
            slots,
            snapshot,
            expires,
            ..
        } = self;
        let entry = slots[l.slot]
            .get_mut(key, l.hash)
            .expect("present or inserted just above");
        crate::snapshot::before_entry_change(snapshot, expires, l.slot, entry);
        entry
    }

    /// Looks up a live key for reading. An expired key is deleted and not found.
    #[inline]
    pub fn get(&mut self, key: &[u8], now: i64) -> Option<&KeyEntry> {
        self.get_mut(key, now).map(|e| &*e)
    }

    /// The stored entry of a key, expired or not (for DEBUG commands, which see what is stored).
    pub fn find_stored(&self, key: &[u8]) -> Option<&KeyEntry> {
        let l = loc(key);
        self.slots[l.slot].get(key, l.hash)
    }

    /// Looks up a key without deleting it when it has expired (for read-only callers such as a
    /// snapshot); expired keys are reported as missing.
    pub fn peek(&self, key: &[u8], now: i64) -> Option<&KeyEntry> {
        let l = loc(key);
        let entry = self.slots[l.slot].get(key, l.hash)?;
        if entry.is_volatile()
            && !self.no_expiry
            && self.expire_at_loc(key, l).is_some_and(|at| at <= now)
        {
            return None;
        }
        Some(entry)
    }

    /// True if a live key exists.
    pub fn contains(&mut self, key: &[u8], now: i64) -> bool {
        self.get(key, now).is_some()
    }

    /// The expiry time of a live key: `Some(None)` for a key without TTL, `None` when missing.
    pub fn expire_time(&mut self, key: &[u8], now: i64) -> Option<Option<i64>> {
        let l = loc(key);
        let entry = self.get(key, now)?;
        if !entry.is_volatile() {
            return Some(None);
        }
        Some(self.expire_at_loc(key, l))
    }

    /// Sets a key to `value`, replacing any old value, and applies `expiry`. Returns the old
    /// value if the key existed.
    pub fn set(&mut self, key: &[u8], value: Value, expiry: Expiry, now: i64) -> Option<Value> {
        let l = loc(key);
        let no_expiry = self.no_expiry;
        let Db {
            slots,
            snapshot,
            expires,
            ..
        } = &mut *self;
        if let Some(entry) = slots[l.slot].get_mut(key, l.hash) {
            crate::snapshot::before_entry_change(snapshot, expires, l.slot, entry);
            let volatile = entry.flags & FLAG_VOLATILE != 0;
            let expired =
                volatile && !no_expiry && expires.get(key, l.hash).is_some_and(|e| e.at <= now);
            if !expired {
                let old = std::mem::replace(&mut entry.value, value);
                self.apply_expiry(key, l, expiry, volatile);
                return Some(old);
            }
            // The old value had already expired: the write creates a new key.
            self.remove_at(key, l);
            self.note_expired(key);
        }
        let entry = KeyEntry {
            key: SmallBytes::new(key),
            value,
            access: self.initial_access(now),
            flags: self.new_entry_flags(l.slot),
        };
        self.slots[l.slot].insert_new(entry, l.hash);
        self.keys += 1;
        self.note_new(key);
        self.apply_expiry(key, l, expiry, false);
        None
    }

    fn apply_expiry(&mut self, key: &[u8], l: Loc, expiry: Expiry, volatile: bool) {
        match expiry {
            Expiry::Keep => {}
            Expiry::Persist => {
                if volatile {
                    self.expires.remove(key, l.hash);
                    self.set_volatile_flag(key, l, false);
                }
            }
            Expiry::At(at) => {
                if let Some(e) = self.expires.get_mut(key, l.hash) {
                    e.at = at;
                } else {
                    self.expires.insert_new(
                        ExpireEntry {
                            key: SmallBytes::new(key),
                            at,
                        },
                        l.hash,
                    );
                }
                self.set_volatile_flag(key, l, true);
            }
        }
    }

    fn set_volatile_flag(&mut self, key: &[u8], l: Loc, on: bool) {
        if let Some(entry) = self.slots[l.slot].get_mut(key, l.hash) {
            if on {
                entry.flags |= FLAG_VOLATILE;
            } else {
                entry.flags &= !FLAG_VOLATILE;
            }
        }
    }

    /// Sets the expiry time of a live key. Returns false when the key does not exist.
    pub fn set_expire(&mut self, key: &[u8], at: i64, now: i64) -> bool {
        if self.get(key, now).is_none() {
            return false;
        }
        self.apply_expiry(key, loc(key), Expiry::At(at), true);
        true
    }

    /// Removes the time to live of a live key. Returns true if it had one.
    pub fn persist(&mut self, key: &[u8], now: i64) -> bool {
        match self.get(key, now) {
            Some(e) if e.is_volatile() => {
                self.apply_expiry(key, loc(key), Expiry::Persist, true);
                true
            }
            _ => false,
        }
    }

    /// Deletes a key, live or expired. Returns its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<Value> {
        self.remove_at(key, loc(key))
    }

    /// Deletes a live key; an expired key counts as missing. Returns its value.
    pub fn remove_live(&mut self, key: &[u8], now: i64) -> Option<Value> {
        self.get(key, now)?;
        self.remove(key)
    }

    fn remove_at(&mut self, key: &[u8], l: Loc) -> Option<Value> {
        let mut entry = self.slots[l.slot].remove(key, l.hash)?;
        self.keys -= 1;
        // A snapshot that has not reached the key saves it before it goes.
        crate::snapshot::before_entry_change(&mut self.snapshot, &self.expires, l.slot, &mut entry);
        if entry.flags & FLAG_VOLATILE != 0 {
            self.expires.remove(key, l.hash);
        }
        Some(entry.value)
    }

    /// Deletes every key. Returns the old contents, which the caller may drop on another thread
    /// (`FLUSHALL ASYNC`).
    pub fn flush(&mut self) -> FlushedDb {
        let slots = std::mem::replace(&mut self.slots, (0..SLOTS).map(|_| Dict::new()).collect());
        let expires = self.expires.take();
        self.keys = 0;
        self.expires_cursor = 0;
        FlushedDb {
            _slots: slots,
            _expires: expires,
        }
    }

    /// A random live key (`RANDOMKEY`): a slot chosen with probability proportional to its key
    /// count, then a random key of that slot. Expired keys met on the way are deleted.
    ///
    /// Choosing the slot walks the 16384 slot lengths (microseconds), which keeps inserts and
    /// deletes free of any per-slot bookkeeping beyond the dicts themselves.
    pub fn random_key(&mut self, now: i64) -> Option<SmallBytes> {
        // Bounded like Redis, which gives up after many expired keys in a row on a replica.
        for _ in 0..100 {
            if self.keys == 0 {
                return None;
            }
            let mut nth = self.rng.random_range(0..self.keys);
            let slot = self
                .slots
                .iter()
                .position(|d| {
                    if nth < d.len() {
                        return true;
                    }
                    nth -= d.len();
                    false
                })
                .expect("the slot lengths add up to the key count");
            let key = self.slots[slot].random(&mut self.rng)?.key.clone();
            if self.get(key.as_bytes(), now).is_some() {
                return Some(key);
            }
        }
        None
    }

    /// One step of `SCAN`: visits keys from `cursor` until about `count` keys were emitted, and
    /// returns the next cursor (0 when complete). The cursor is the slot in its low 14 bits and
    /// the slot dict's scan cursor above, so Redis's guarantee holds: a key present from the
    /// start to the end of a full scan is returned at least once.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&KeyEntry)) -> u64 {
        let mut slot = (cursor & (SLOTS as u64 - 1)) as usize;
        let mut inner = cursor >> 14;
        let mut emitted = 0;
        let mut iterations = count.saturating_mul(10).max(1);
        loop {
            // Empty slots cost one length check, so they do not count as iterations.
            if self.slots[slot].is_empty() {
                slot += 1;
                if slot == SLOTS {
                    return 0;
                }
                inner = 0;
                continue;
            }
            inner = self.slots[slot].scan(inner, |e| {
                emitted += 1;
                f(e);
            });
            if inner == 0 {
                slot += 1;
                if slot == SLOTS {
                    return 0;
                }
            }
            iterations -= 1;
            if emitted >= count || iterations == 0 {
                return (inner << 14) | slot as u64;
            }
        }
    }

    /// Every key entry (for `KEYS`, `DEBUG DIGEST` and tests); includes expired keys.
    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.slots.iter().flat_map(|d| d.iter())
    }

    /// The keys of one slot, up to `count` (`CLUSTER GETKEYSINSLOT`).
    pub fn slot_keys(&self, slot: u16, count: usize) -> Vec<SmallBytes> {
        self.slots[slot as usize]
            .iter()
            .take(count)
            .map(|e| e.key.clone())
            .collect()
    }

    /// Expiry time of an entry met while iterating.
    /// Sizes the slot dicts for `keys` keys in all (loading an image of that many).
    pub fn reserve(&mut self, keys: usize) {
        let per_slot = keys / SLOTS;
        if per_slot > 4 {
            for d in &mut self.slots {
                d.reserve(per_slot);
            }
        }
    }

    /// Adds a key that is known to be absent, from a checkpoint image: no lookup, no events.
    /// Returns false, adding nothing, if `slot` is not the key's slot (a damaged image).
    pub fn insert_loaded(
        &mut self,
        slot: usize,
        key: &[u8],
        value: Value,
        expire_at: Option<i64>,
        now: i64,
    ) -> bool {
        if key_hash_slot(key) as usize != slot {
            return false;
        }
        let h = hash(key);
        let entry = KeyEntry {
            key: SmallBytes::new(key),
            value,
            access: self.initial_access(now),
            flags: 0,
        };
        self.slots[slot].insert_new(entry, h);
        self.keys += 1;
        if let Some(at) = expire_at {
            self.apply_expiry(key, Loc { slot, hash: h }, Expiry::At(at), false);
        }
        true
    }

    /// Calls `f` with every entry of `slot` and its expiry, except the entries flagged as
    /// already in the snapshot, whose flag it clears (the snapshot walk).
    pub(crate) fn walk_slot(&mut self, slot: usize, mut f: impl FnMut(&KeyEntry, Option<i64>)) {
        let expires = &self.expires;
        self.slots[slot].for_each_mut(|e| {
            if e.flags & FLAG_SNAPSHOT != 0 {
                e.flags &= !FLAG_SNAPSHOT;
                return;
            }
            let at = if e.flags & FLAG_VOLATILE != 0 {
                expires.get(e.key(), hash(e.key())).map(|x| x.at)
            } else {
                None
            };
            f(e, at);
        });
    }

    /// Clears the snapshot flags of slots `from..` (a snapshot abandoned before its walk got
    /// there).
    pub(crate) fn clear_snapshot_flags(&mut self, from: usize) {
        for d in &mut self.slots[from.min(SLOTS)..] {
            d.for_each_mut(|e| e.flags &= !FLAG_SNAPSHOT);
        }
    }

    pub fn entry_expire_at(&self, entry: &KeyEntry) -> Option<i64> {
        if !entry.is_volatile() {
            return None;
        }
        self.expires
            .get(entry.key(), hash(entry.key()))
            .map(|e| e.at)
    }

    /// Redis's adaptive active expire cycle: samples volatile keys `keys_per_loop` at a time and
    /// deletes the expired ones, repeating while more than `acceptable_stale` percent of a
    /// sample had expired, until `time_limit_us` is spent. Returns true if it stopped at the time
    /// limit (the server then runs fast cycles between event loop turns).
    pub fn active_expire_cycle(
        &mut self,
        tuning: ExpireTuning,
        time_limit_us: u64,
        now_ms: impl Fn() -> i64,
    ) -> bool {
        if self.no_expiry {
            return false;
        }
        let start = std::time::Instant::now();
        let mut iteration = 0u64;
        let mut total_sampled = 0u64;
        let mut total_expired = 0u64;
        let mut timed_out = false;
        let mut expired_keys = Vec::new();
        loop {
            let num = self.expires.len().min(tuning.keys_per_loop);
            if num == 0 {
                break;
            }
            let now = now_ms();
            let max_buckets = num * 20;
            let (mut sampled, mut checked) = (0usize, 0usize);
            expired_keys.clear();
            while sampled < num && checked < max_buckets {
                self.expires_cursor = self.expires.scan(self.expires_cursor, |e| {
                    sampled += 1;
                    if e.at <= now {
                        expired_keys.push(e.key.clone());
                    }
                });
                checked += 1;
                if self.expires_cursor == 0 {
                    break;
                }
            }
            for key in &expired_keys {
                self.remove(key.as_bytes());
                if self.log_expired {
                    self.expired_log.push(key.clone());
                }
            }
            let expired = expired_keys.len() as u64;
            self.stats.expired_keys += expired;
            total_sampled += sampled as u64;
            total_expired += expired;
            iteration += 1;
            if iteration & 0xf == 0 && start.elapsed().as_micros() as u64 > time_limit_us {
                timed_out = true;
                self.stats.expired_time_cap_reached_count += 1;
                break;
            }
            let repeat = sampled == 0 || expired * 100 / sampled as u64 > tuning.acceptable_stale;
            if !repeat {
                break;
            }
        }
        let perc = if total_sampled > 0 {
            total_expired as f64 * 100.0 / total_sampled as f64
        } else {
            0.0
        };
        self.stats.expired_stale_perc = perc * 0.05 + self.stats.expired_stale_perc * 0.95;
        self.stats.expire_cycle_us += start.elapsed().as_micros() as u64;
        timed_out
    }

    /// Incremental housekeeping from the cron: shrinks sparse tables and advances rehashing for
    /// about `budget_us` microseconds.
    pub fn rehash_and_shrink(&mut self, budget_us: u64) {
        let start = std::time::Instant::now();
        self.expires.shrink_if_needed();
        while self.expires.rehash(100) {
            if start.elapsed().as_micros() as u64 > budget_us {
                return;
            }
        }
        for slot in self.slots.iter_mut() {
            if slot.is_rehashing() {
                while slot.rehash(100) {
                    if start.elapsed().as_micros() as u64 > budget_us {
                        return;
                    }
                }
            }
        }
    }

    /// Shrinks the dict of one slot if it became sparse (after deletions), from the cron.
    pub fn shrink_slot(&mut self, slot: usize) {
        self.slots[slot].shrink_if_needed();
    }

    /// Total hash table buckets (for `INFO memory`-style overhead figures).
    pub fn buckets(&self) -> usize {
        self.slots.iter().map(Dict::buckets).sum::<usize>() + self.expires.buckets()
    }
}

/// The contents of a flushed keyspace, to be dropped where convenient.
pub struct FlushedDb {
    _slots: Box<[Dict<KeyEntry>]>,
    _expires: Dict<ExpireEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn s(v: &Value) -> Vec<u8> {
        v.as_str().unwrap().to_vec()
    }

    #[test]
    fn set_get_remove() {
        let mut db = Db::new();
        assert!(
            db.set(b"a", Value::string(b"1"), Expiry::Persist, 0)
                .is_none()
        );
        assert_eq!(s(db.get(b"a", 0).unwrap().value()), b"1");
        assert_eq!(
            s(&db
                .set(b"a", Value::string(b"2"), Expiry::Persist, 0)
                .unwrap()),
            b"1"
        );
        assert_eq!(db.len(), 1);
        assert!(db.remove(b"a").is_some());
        assert!(db.get(b"a", 0).is_none());
        assert_eq!(db.len(), 0);
    }

    #[test]
    fn keys_expire_lazily() {
        let mut db = Db::new();
        db.set(b"k", Value::string(b"v"), Expiry::At(100), 0);
        assert_eq!(db.expire_time(b"k", 50), Some(Some(100)));
        assert!(db.get(b"k", 99).is_some());
        assert!(db.get(b"k", 100).is_none());
        assert_eq!(db.len(), 0);
        assert_eq!(db.volatile_len(), 0);
        assert_eq!(db.stats.expired_keys, 1);
    }

    #[test]
    fn set_clears_or_keeps_ttl() {
        let mut db = Db::new();
        db.set(b"k", Value::string(b"v"), Expiry::At(100), 0);
        db.set(b"k", Value::string(b"w"), Expiry::Keep, 0);
        assert_eq!(db.expire_time(b"k", 0), Some(Some(100)));
        db.set(b"k", Value::string(b"x"), Expiry::Persist, 0);
        assert_eq!(db.expire_time(b"k", 0), Some(None));
        assert_eq!(db.volatile_len(), 0);
    }

    #[test]
    fn active_expiry_deletes_expired_keys() {
        let mut db = Db::new();
        for i in 0..1000 {
            let at = if i % 2 == 0 { 10 } else { 1_000_000 };
            db.set(
                format!("k{i}").as_bytes(),
                Value::string(b"v"),
                Expiry::At(at),
                0,
            );
        }
        for _ in 0..200 {
            db.active_expire_cycle(ExpireTuning::from_effort(1), 25_000, || 20);
        }
        assert_eq!(db.len(), 500);
        assert_eq!(db.stats.expired_keys, 500);
    }

    #[test]
    fn scan_covers_all_slots() {
        let mut db = Db::new();
        for i in 0..3000 {
            db.set(
                format!("key:{i}").as_bytes(),
                Value::string(b"v"),
                Expiry::Persist,
                0,
            );
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            cursor = db.scan(cursor, 10, |e| {
                seen.insert(e.key().to_vec());
            });
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 3000);
    }

    #[test]
    fn random_key_is_weighted_by_slot() {
        let mut db = Db::new();
        assert!(db.random_key(0).is_none());
        for i in 0..50 {
            db.set(
                format!("{{tag}}{i}").as_bytes(),
                Value::string(b"v"),
                Expiry::Persist,
                0,
            );
        }
        db.set(b"lonely", Value::string(b"v"), Expiry::Persist, 0);
        let lonely = (0..2000)
            .filter(|_| db.random_key(0).unwrap().as_bytes() == b"lonely")
            .count();
        assert!(lonely < 200, "lonely chosen {lonely} times of 2000");
    }
}
