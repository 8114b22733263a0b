//! [`Dict`]: a chained hash table with incremental rehashing, after Redis's `dict.c`.
//!
//! Why not a general-purpose map: Redis's guarantees come from this structure. Rehashing moves a
//! few buckets per operation (or all at once while the table is small), so no single command pays
//! for a whole resize; and [`Dict::scan`]'s reverse-binary cursor returns every entry that is
//! present for the whole scan at least once, even while the table grows or shrinks between calls.
//! Entries live in their own allocation, so a resize moves pointers only.
//!
//! Hashes are computed by [`hash`] (foldhash with a per-process random seed); the dict recomputes
//! them from the keys while rehashing instead of storing them.

use std::hash::BuildHasher;
use std::sync::OnceLock;

/// An entry that can be stored in a [`Dict`].
pub trait Keyed {
    /// The entry's key.
    fn key(&self) -> &[u8];
}

/// The keyspace hash of `key` (seeded once per process, so clients cannot choose collisions).
#[inline]
pub fn hash(key: &[u8]) -> u64 {
    static STATE: OnceLock<foldhash::fast::FixedState> = OnceLock::new();
    STATE
        .get_or_init(|| foldhash::fast::FixedState::with_seed(rand::random()))
        .hash_one(key)
}

/// Asks the CPU to start loading the cache line that holds `value`, for a lookup that comes
/// later: the lookups of a script's keys, spread over the script's set-up, each find their
/// memory already in cache (Redis 8 prefetches a batch of commands' keys the same way).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: a prefetch is a hint. It reads nothing into the program and cannot fault,
    // whatever the address; this one is a live reference's.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

struct Node<E> {
    next: Link<E>,
    entry: E,
}

type Link<E> = Option<Box<Node<E>>>;

/// Tables up to this many buckets are rehashed in one go when they grow: it costs microseconds.
const REHASH_AT_ONCE: usize = 1024;
/// Smallest table.
const INITIAL_SIZE: usize = 4;
/// A table grows when `used >= size`, or, while resizing is discouraged, when
/// `used / size > FORCE_RATIO` (Redis's `dict_force_resize_ratio`).
const FORCE_RATIO: usize = 5;

/// A chained hash table with incremental rehashing.
pub struct Dict<E> {
    tables: [Box<[Link<E>]>; 2],
    used: [usize; 2],
    /// Next bucket of `tables[0]` to move into `tables[1]`, while rehashing.
    rehash_idx: Option<usize>,
}

impl<E: Keyed> Default for Dict<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Keyed> Dict<E> {
    /// An empty dict; allocates nothing until the first insert.
    pub fn new() -> Self {
        Dict {
            tables: [Box::new([]), Box::new([])],
            used: [0, 0],
            rehash_idx: None,
        }
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.used[0] + self.used[1]
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total buckets of both tables.
    pub fn buckets(&self) -> usize {
        self.tables[0].len() + self.tables[1].len()
    }

    /// True while entries are being moved to a new table.
    pub fn is_rehashing(&self) -> bool {
        self.rehash_idx.is_some()
    }

    /// The entry with `key`, whose [`hash`] is `h`.
    #[inline]
    pub fn get(&self, key: &[u8], h: u64) -> Option<&E> {
        if self.is_empty() {
            return None;
        }
        for t in 0..2 {
            let table = &self.tables[t];
            if !table.is_empty() {
                let mut link = &table[h as usize & (table.len() - 1)];
                while let Some(node) = link {
                    if node.entry.key() == key {
                        return Some(&node.entry);
                    }
                    link = &node.next;
                }
            }
            if self.rehash_idx.is_none() {
                break;
            }
        }
        None
    }

    /// Second step of a prefetch (the caller prefetched the dict itself first): starts loading
    /// the bucket that holds `h`, in each table in use.
    #[inline]
    pub fn prefetch_bucket(&self, h: u64) {
        for table in &self.tables {
            if let Some(bucket) = table.get(h as usize & table.len().wrapping_sub(1)) {
                prefetch(bucket);
            }
        }
    }

    /// Third step of a prefetch: starts loading the first entry of the bucket that holds `h`
    /// (the first entry is the key's, unless the bucket chains several).
    #[inline]
    pub fn prefetch_entry(&self, h: u64) {
        for table in &self.tables {
            if let Some(Some(node)) = table.get(h as usize & table.len().wrapping_sub(1)) {
                prefetch(&**node);
            }
        }
    }

    /// The entry with `key`, mutably. Advances a running rehash by one bucket, like Redis's
    /// `dictFind`.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8], h: u64) -> Option<&mut E> {
        if self.is_empty() {
            return None;
        }
        self.rehash_step();
        let rehashing = self.rehash_idx.is_some();
        for table in self.tables.iter_mut() {
            if !table.is_empty() {
                let mask = table.len() - 1;
                let mut link = &mut table[h as usize & mask];
                while let Some(node) = link {
                    if node.entry.key() == key {
                        return Some(&mut node.entry);
                    }
                    link = &mut node.next;
                }
            }
            if !rehashing {
                break;
            }
        }
        None
    }

    /// Inserts an entry whose key is not present (callers look it up first).
    #[inline]
    pub fn insert_new(&mut self, entry: E, h: u64) -> &mut E {
        self.rehash_step();
        self.expand_if_needed();
        let t = usize::from(self.rehash_idx.is_some());
        let table = &mut self.tables[t];
        let slot = &mut table[h as usize & (table.len() - 1)];
        let next = slot.take();
        self.used[t] += 1;
        &mut slot.insert(Box::new(Node { next, entry })).entry
    }

    /// Removes and returns the entry with `key`.
    pub fn remove(&mut self, key: &[u8], h: u64) -> Option<E> {
        if self.is_empty() {
            return None;
        }
        self.rehash_step();
        for t in 0..2 {
            let table = &mut self.tables[t];
            if !table.is_empty() {
                let mask = table.len() - 1;
                let mut link = &mut table[h as usize & mask];
                while link.as_ref().is_some_and(|n| n.entry.key() != key) {
                    link = &mut link.as_mut().expect("checked by the loop condition").next;
                }
                if let Some(mut node) = link.take() {
                    *link = node.next.take();
                    self.used[t] -= 1;
                    return Some(node.entry);
                }
            }
            if self.rehash_idx.is_none() {
                break;
            }
        }
        None
    }

    /// Removes every entry, returning the old tables' contents as a dict (for dropping them on
    /// another thread).
    pub fn take(&mut self) -> Dict<E> {
        std::mem::take(self)
    }

    fn expand_if_needed(&mut self) {
        if self.rehash_idx.is_some() {
            return;
        }
        let size = self.tables[0].len();
        if size == 0 {
            self.tables[0] = new_table(INITIAL_SIZE);
        } else if self.used[0] >= size && (resize_allowed() || self.used[0] / size > FORCE_RATIO) {
            self.resize(self.used[0] + 1);
        }
    }

    /// Starts moving to a table of at least `size` buckets.
    fn resize(&mut self, size: usize) {
        let size = size.max(INITIAL_SIZE).next_power_of_two();
        if size == self.tables[0].len() || self.rehash_idx.is_some() {
            return;
        }
        self.tables[1] = new_table(size);
        self.rehash_idx = Some(0);
        if size <= REHASH_AT_ONCE && self.tables[0].len() <= REHASH_AT_ONCE {
            while self.rehash(usize::MAX) {}
        }
    }

    /// Sizes an empty (or smaller) table for `n` entries at once, so loading does not grow it
    /// step by step.
    pub fn reserve(&mut self, n: usize) {
        if self.rehash_idx.is_none() && self.tables[0].len() < n {
            if self.used[0] == 0 {
                self.tables[0] = new_table(n.max(INITIAL_SIZE).next_power_of_two());
            } else {
                self.resize(n);
            }
        }
    }

    /// Shrinks a table that is less than 10% full (Redis's `htNeedsResize`), from the cron.
    pub fn shrink_if_needed(&mut self) {
        let size = self.tables[0].len();
        if self.rehash_idx.is_none() && size > INITIAL_SIZE && self.used[0] * 100 / size < 10 {
            self.resize(self.used[0]);
        }
    }

    #[inline]
    fn rehash_step(&mut self) {
        if self.rehash_idx.is_some() {
            self.rehash(1);
        }
    }

    /// Moves up to `n` buckets to the new table (visiting at most `10 n` empty ones). Returns
    /// true while there is more to move.
    pub fn rehash(&mut self, n: usize) -> bool {
        let Some(mut idx) = self.rehash_idx else {
            return false;
        };
        let mut empty_visits = n.saturating_mul(10);
        let mut n = n;
        while n > 0 && self.used[0] != 0 {
            n -= 1;
            while self.tables[0][idx].is_none() {
                idx += 1;
                empty_visits -= 1;
                if empty_visits == 0 {
                    self.rehash_idx = Some(idx);
                    return true;
                }
            }
            let mut chain = self.tables[0][idx].take();
            let mask = self.tables[1].len() - 1;
            while let Some(mut node) = chain {
                chain = node.next.take();
                let b = hash(node.entry.key()) as usize & mask;
                node.next = self.tables[1][b].take();
                self.tables[1][b] = Some(node);
                self.used[0] -= 1;
                self.used[1] += 1;
            }
            idx += 1;
        }
        if self.used[0] == 0 {
            self.tables[0] = std::mem::replace(&mut self.tables[1], Box::new([]));
            self.used = [self.used[1], 0];
            self.rehash_idx = None;
            return false;
        }
        self.rehash_idx = Some(idx);
        true
    }

    /// One step of Redis's `dictScan`: calls `f` for the entries of the buckets at `cursor` and
    /// returns the next cursor (0 when the scan is complete).
    pub fn scan<'a>(&'a self, cursor: u64, mut f: impl FnMut(&'a E)) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut v = cursor;
        fn emit<'a, E>(table: &'a [Link<E>], idx: usize, f: &mut impl FnMut(&'a E)) {
            let mut link = &table[idx];
            while let Some(node) = link {
                f(&node.entry);
                link = &node.next;
            }
        }
        if self.rehash_idx.is_none() {
            let m0 = (self.tables[0].len() - 1) as u64;
            emit(&self.tables[0], (v & m0) as usize, &mut f);
            v |= !m0;
            v = v.reverse_bits().wrapping_add(1).reverse_bits();
        } else {
            let (small, big) = if self.tables[0].len() <= self.tables[1].len() {
                (&self.tables[0], &self.tables[1])
            } else {
                (&self.tables[1], &self.tables[0])
            };
            let m0 = (small.len() - 1) as u64;
            let m1 = (big.len() - 1) as u64;
            if !small.is_empty() {
                emit(small, (v & m0) as usize, &mut f);
            }
            loop {
                emit(big, (v & m1) as usize, &mut f);
                v |= !m1;
                v = v.reverse_bits().wrapping_add(1).reverse_bits();
                if v & (m0 ^ m1) == 0 {
                    break;
                }
            }
        }
        v
    }

    /// A random entry: a random non-empty bucket, then a random entry of its chain (Redis's
    /// `dictGetRandomKey`).
    pub fn random(&self, rng: &mut impl rand::Rng) -> Option<&E> {
        if self.is_empty() {
            return None;
        }
        let bucket = loop {
            let (t, idx) = match self.rehash_idx {
                Some(start) => {
                    let total = self.tables[0].len() + self.tables[1].len() - start;
                    let i = start + rng.random_range(0..total);
                    if i >= self.tables[0].len() {
                        (1, i - self.tables[0].len())
                    } else {
                        (0, i)
                    }
                }
                None => (0, rng.random_range(0..self.tables[0].len())),
            };
            if let Some(node) = &self.tables[t][idx] {
                break node;
            }
        };
        let mut chain_len = 0;
        let mut link = Some(bucket);
        while let Some(node) = link {
            chain_len += 1;
            link = node.next.as_ref();
        }
        let mut pick = rng.random_range(0..chain_len);
        let mut node = bucket;
        while pick > 0 {
            node = node.next.as_ref().expect("pick is below the chain length");
            pick -= 1;
        }
        Some(&node.entry)
    }

    /// Calls `f` with every entry, mutably.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut E)) {
        for t in self.tables.iter_mut() {
            for link in t.iter_mut() {
                let mut link = link.as_deref_mut();
                while let Some(node) = link {
                    f(&mut node.entry);
                    link = node.next.as_deref_mut();
                }
            }
        }
    }

    /// Every entry, in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.tables.iter().flat_map(|t| t.iter()).flat_map(|link| {
            let mut link = link.as_deref();
            std::iter::from_fn(move || {
                let node = link?;
                link = node.next.as_deref();
                Some(&node.entry)
            })
        })
    }
}

impl<E> Drop for Dict<E> {
    fn drop(&mut self) {
        // Unlink chains iteratively: dropping a long chain recursively could overflow the stack.
        for table in self.tables.iter_mut() {
            for link in table.iter_mut() {
                let mut chain = link.take();
                while let Some(mut node) = chain {
                    chain = node.next.take();
                }
            }
        }
    }
}

fn new_table<E>(size: usize) -> Box<[Link<E>]> {
    std::iter::repeat_with(|| None).take(size).collect()
}

/// Whether tables may grow at a load factor of 1. Redis turns this off while a fork child runs;
/// Tessera never forks, so it is always on.
fn resize_allowed() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[derive(Debug)]
    struct E(Vec<u8>);
    impl Keyed for E {
        fn key(&self) -> &[u8] {
            &self.0
        }
    }

    fn k(i: usize) -> Vec<u8> {
        format!("key:{i}").into_bytes()
    }

    fn insert(d: &mut Dict<E>, i: usize) {
        let key = k(i);
        let h = hash(&key);
        assert!(d.get(&key, h).is_none());
        d.insert_new(E(key), h);
    }

    #[test]
    fn insert_get_remove_across_rehash() {
        let mut d = Dict::new();
        for i in 0..20_000 {
            insert(&mut d, i);
        }
        assert_eq!(d.len(), 20_000);
        for i in 0..20_000 {
            let key = k(i);
            assert!(d.get(&key, hash(&key)).is_some(), "{i}");
        }
        for i in (0..20_000).step_by(2) {
            let key = k(i);
            assert!(d.remove(&key, hash(&key)).is_some());
        }
        assert_eq!(d.len(), 10_000);
        assert_eq!(d.iter().count(), 10_000);
        d.shrink_if_needed();
        while d.rehash(100) {}
        for i in 0..20_000 {
            let key = k(i);
            assert_eq!(d.get(&key, hash(&key)).is_some(), i % 2 == 1);
        }
    }

    #[test]
    fn scan_returns_every_stable_entry_while_the_table_grows_and_shrinks() {
        let mut d = Dict::new();
        for i in 0..5000 {
            insert(&mut d, i);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = d.scan(cursor, |e| {
                seen.insert(e.0.clone());
            });
            // Grow during the scan, then shrink, with rehashing in progress between calls.
            step += 1;
            if step == 10 {
                for i in 5000..60_000 {
                    insert(&mut d, i);
                }
            }
            if step == 40 {
                for i in 5000..60_000 {
                    let key = k(i);
                    d.remove(&key, hash(&key));
                }
                d.shrink_if_needed();
            }
            d.rehash(3);
            if cursor == 0 {
                break;
            }
        }
        for i in 0..5000 {
            assert!(seen.contains(&k(i)), "scan missed key {i}");
        }
    }

    #[test]
    fn random_finds_entries() {
        let mut d = Dict::new();
        let mut rng = rand::rng();
        assert!(d.random(&mut rng).is_none());
        for i in 0..100 {
            insert(&mut d, i);
        }
        let mut seen = HashSet::new();
        for _ in 0..5000 {
            seen.insert(d.random(&mut rng).unwrap().0.clone());
        }
        assert!(seen.len() > 90);
    }
}
