//! [`ZSet`]: sorted sets. Elements are ordered by (score, member).
//!
//! Small sorted sets are one sorted vector (reported as `listpack`, Redis's compact encoding)
//! while they have at most `zset-max-listpack-entries` elements of at most
//! `zset-max-listpack-value` bytes. Larger ones (reported as `skiplist`) keep the order in a
//! chunked sorted list, sorted chunks of up to [`CHUNK`] elements, found by a binary search over
//! the chunks' last elements, with a Fenwick tree over the chunk lengths for ranks, plus a
//! [`Dict`] from member to score. Rank, select-by-rank and range starts cost O(log n) plus a
//! bounded shift inside one chunk; a score lookup is O(1).

use std::cmp::Ordering;

use crate::bytes::SmallBytes;
use crate::dict::{Dict, Keyed, hash};

/// Largest chunk of the ordered list; a chunk splits in two past it.
const CHUNK: usize = 512;

/// One element: score and member.
#[derive(Clone, Debug, PartialEq)]
pub struct Elem {
    pub score: f64,
    pub member: SmallBytes,
}

impl Elem {
    fn cmp_key(&self, score: f64, member: &[u8]) -> Ordering {
        self.score
            .partial_cmp(&score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.member.as_bytes().cmp(member))
    }
}

/// Member to score, for the large encoding.
#[derive(Debug)]
struct Score {
    member: SmallBytes,
    score: f64,
}

impl Keyed for Score {
    fn key(&self) -> &[u8] {
        self.member.as_bytes()
    }
}

/// The ordered elements of a large sorted set.
#[derive(Debug, Default)]
struct Chunks {
    chunks: Vec<Vec<Elem>>,
    /// Fenwick tree over chunk lengths (1-based).
    tree: Vec<usize>,
    len: usize,
}

impl Chunks {
    fn rebuild_tree(&mut self) {
        let n = self.chunks.len();
        self.tree = vec![0; n + 1];
        for (i, c) in self.chunks.iter().enumerate() {
            let mut j = i + 1;
            while j <= n {
                self.tree[j] += c.len();
                j += j & j.wrapping_neg();
            }
        }
    }

    fn tree_add(&mut self, chunk: usize, delta: isize) {
        let mut j = chunk + 1;
        while j < self.tree.len() {
            self.tree[j] = self.tree[j].wrapping_add_signed(delta);
            j += j & j.wrapping_neg();
        }
    }

    /// Elements in chunks before `chunk`.
    fn prefix(&self, chunk: usize) -> usize {
        let mut j = chunk;
        let mut sum = 0;
        while j > 0 {
            sum += self.tree[j];
            j -= j & j.wrapping_neg();
        }
        sum
    }

    /// The chunk and offset of rank `r` (0-based).
    fn locate_rank(&self, mut r: usize) -> (usize, usize) {
        let n = self.chunks.len();
        let mut pos = 0;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step >>= 1;
        }
        (pos, r)
    }

    /// The first chunk whose last element is >= (score, member), and the position in it.
    fn lower_bound(&self, score: f64, member: &[u8]) -> (usize, usize) {
        let c = self.chunks.partition_point(|ch| {
            ch.last()
                .is_some_and(|e| e.cmp_key(score, member) == Ordering::Less)
        });
        if c == self.chunks.len() {
            return (c, 0);
        }
        let p = self.chunks[c].partition_point(|e| e.cmp_key(score, member) == Ordering::Less);
        (c, p)
    }

    fn insert(&mut self, e: Elem) {
        if self.chunks.is_empty() {
            self.chunks.push(vec![e]);
            self.len = 1;
            self.rebuild_tree();
            return;
        }
        let (mut c, mut p) = self.lower_bound(e.score, e.member.as_bytes());
        if c == self.chunks.len() {
            c -= 1;
            p = self.chunks[c].len();
        }
        self.chunks[c].insert(p, e);
        self.len += 1;
        if self.chunks[c].len() > CHUNK {
            let tail = self.chunks[c].split_off(CHUNK / 2);
            self.chunks.insert(c + 1, tail);
            self.rebuild_tree();
        } else {
            self.tree_add(c, 1);
        }
    }

    fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        let (c, p) = self.lower_bound(score, member);
        if c == self.chunks.len() || self.chunks[c][p].cmp_key(score, member) != Ordering::Equal {
            return false;
        }
        self.remove_at(c, p);
        true
    }

    fn remove_at(&mut self, c: usize, p: usize) -> Elem {
        let e = self.chunks[c].remove(p);
        self.len -= 1;
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
            self.rebuild_tree();
        } else {
            self.tree_add(c, -1);
        }
        e
    }

    fn get_rank(&self, r: usize) -> &Elem {
        let (c, o) = self.locate_rank(r);
        &self.chunks[c][o]
    }

    fn rank_of(&self, score: f64, member: &[u8]) -> Option<usize> {
        let (c, p) = self.lower_bound(score, member);
        (c < self.chunks.len() && self.chunks[c][p].cmp_key(score, member) == Ordering::Equal)
            .then(|| self.prefix(c) + p)
    }

    /// Rank of the first element with (score, member) >= the given key.
    fn rank_lower_bound(&self, score: f64, member: &[u8]) -> usize {
        let (c, p) = self.lower_bound(score, member);
        if c == self.chunks.len() {
            self.len
        } else {
            self.prefix(c) + p
        }
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = &Elem> {
        self.chunks.iter().flatten()
    }
}

/// A sorted set value.
pub enum ZSet {
    /// Sorted by (score, member).
    Packed(Vec<Elem>),
    /// Boxed so a small (packed) sorted set stays a 32-byte value.
    Large(Box<Large>),
}

/// The large encoding: the ordered chunks and the member-to-score dict.
#[derive(Default)]
pub struct Large {
    order: Chunks,
    scores: Dict<Score>,
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::Packed(Vec::new())
    }
}

impl std::fmt::Debug for ZSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|e| (e.score, String::from_utf8_lossy(e.member.as_bytes()))),
            )
            .finish()
    }
}

impl Clone for ZSet {
    fn clone(&self) -> Self {
        let mut z = ZSet::new();
        let limits = ZLimits {
            max_listpack_entries: usize::MAX,
            max_listpack_value: usize::MAX,
        };
        let big = ZLimits {
            max_listpack_entries: 0,
            max_listpack_value: 0,
        };
        let l = if matches!(self, ZSet::Packed(_)) {
            limits
        } else {
            big
        };
        for e in self.iter() {
            z.insert(e.score, e.member.as_bytes(), &l);
        }
        z
    }
}

impl PartialEq for ZSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// Thresholds of the compact encoding.
#[derive(Clone, Copy, Debug)]
pub struct ZLimits {
    pub max_listpack_entries: usize,
    pub max_listpack_value: usize,
}

impl ZSet {
    /// An empty sorted set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ZSet::Packed(v) => v.len(),
            ZSet::Large(l) => l.order.len,
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        match self {
            ZSet::Packed(_) => "listpack",
            ZSet::Large(_) => "skiplist",
        }
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            ZSet::Packed(v) => v
                .iter()
                .find(|e| e.member.as_bytes() == member)
                .map(|e| e.score),
            ZSet::Large(l) => {
                let Large { scores, .. } = &**l;
                scores.get(member, hash(member)).map(|s| s.score)
            }
        }
    }

    fn convert(&mut self) {
        let ZSet::Packed(v) = self else { return };
        let mut order = Chunks::default();
        let mut scores = Dict::new();
        for e in std::mem::take(v) {
            scores.insert_new(
                Score {
                    member: e.member.clone(),
                    score: e.score,
                },
                hash(e.member.as_bytes()),
            );
            order.insert(e);
        }
        *self = ZSet::Large(Box::new(Large { order, scores }));
    }

    /// Inserts a member known to be absent.
    fn insert(&mut self, score: f64, member: &[u8], limits: &ZLimits) {
        if let ZSet::Packed(v) = self {
            if v.len() < limits.max_listpack_entries && member.len() <= limits.max_listpack_value {
                let p = v.partition_point(|e| e.cmp_key(score, member) == Ordering::Less);
                v.insert(
                    p,
                    Elem {
                        score,
                        member: SmallBytes::new(member),
                    },
                );
                return;
            }
            self.convert();
        }
        let ZSet::Large(l) = self else {
            unreachable!("converted above")
        };
        let Large { order, scores, .. } = &mut **l;
        scores.insert_new(
            Score {
                member: SmallBytes::new(member),
                score,
            },
            hash(member),
        );
        order.insert(Elem {
            score,
            member: SmallBytes::new(member),
        });
    }

    /// Sets `member`'s score, adding it if absent. Returns the previous score.
    pub fn set(&mut self, score: f64, member: &[u8], limits: &ZLimits) -> Option<f64> {
        let old = self.score(member);
        match old {
            None => self.insert(score, member, limits),
            Some(o) if o == score => {}
            Some(o) => {
                self.remove_scored(o, member);
                self.insert(score, member, limits);
            }
        }
        old
    }

    fn remove_scored(&mut self, score: f64, member: &[u8]) {
        match self {
            ZSet::Packed(v) => {
                if let Some(p) = v.iter().position(|e| e.member.as_bytes() == member) {
                    v.remove(p);
                }
            }
            ZSet::Large(l) => {
                let Large { order, scores, .. } = &mut **l;
                order.remove(score, member);
                scores.remove(member, hash(member));
            }
        }
    }

    /// Removes `member`. Returns true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.score(member) {
            Some(s) => {
                self.remove_scored(s, member);
                true
            }
            None => false,
        }
    }

    /// The 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        match self {
            ZSet::Packed(v) => v.iter().position(|e| e.member.as_bytes() == member),
            ZSet::Large(l) => {
                let Large { order, scores, .. } = &**l;
                let s = scores.get(member, hash(member))?.score;
                order.rank_of(s, member)
            }
        }
    }

    /// The element at 0-based ascending rank `r`.
    pub fn at(&self, r: usize) -> Option<&Elem> {
        if r >= self.len() {
            return None;
        }
        Some(match self {
            ZSet::Packed(v) => &v[r],
            ZSet::Large(l) => l.order.get_rank(r),
        })
    }

    /// Number of elements ordered before (score, member).
    pub fn rank_lower_bound(&self, score: f64, member: &[u8]) -> usize {
        match self {
            ZSet::Packed(v) => v.partition_point(|e| e.cmp_key(score, member) == Ordering::Less),
            ZSet::Large(l) => l.order.rank_lower_bound(score, member),
        }
    }

    /// Number of elements with score < `score` (or <= when `inclusive_of_equal`).
    pub fn count_below(&self, score: f64, include_equal: bool) -> usize {
        match self {
            ZSet::Packed(v) => v.partition_point(|e| {
                if include_equal {
                    e.score <= score
                } else {
                    e.score < score
                }
            }),
            ZSet::Large(l) => {
                let order = &l.order;
                // Binary search on ranks with element access.
                let (mut lo, mut hi) = (0usize, order.len);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    let s = order.get_rank(mid).score;
                    let before = if include_equal { s <= score } else { s < score };
                    if before {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        }
    }

    /// Number of elements whose member is ordered before `member` in a set where all scores are
    /// equal (lex ranges), or <= when `include_equal`.
    pub fn count_below_lex(&self, member: &[u8], include_equal: bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let m = self
                .at(mid)
                .expect("mid is below the length")
                .member
                .as_bytes();
            let before = if include_equal {
                m <= member
            } else {
                m < member
            };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Every element in ascending order.
    pub fn iter(&self) -> Box<dyn DoubleEndedIterator<Item = &Elem> + '_> {
        match self {
            ZSet::Packed(v) => Box::new(v.iter()),
            ZSet::Large(l) => Box::new(l.order.iter()),
        }
    }

    /// Elements of ascending ranks `start..end`.
    pub fn range(
        &self,
        start: usize,
        end: usize,
    ) -> Box<dyn DoubleEndedIterator<Item = &Elem> + '_> {
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            ZSet::Packed(v) => Box::new(v[start..end].iter()),
            ZSet::Large(l) => {
                let order = &l.order;
                if start == end {
                    return Box::new(std::iter::empty());
                }
                let (c, o) = order.locate_rank(start);
                let (ce, oe) = order.locate_rank(end - 1);
                let chunks = &order.chunks[c..=ce];
                let n = chunks.len();
                Box::new(chunks.iter().enumerate().flat_map(move |(i, ch)| {
                    let a = if i == 0 { o } else { 0 };
                    let b = if i == n - 1 { oe + 1 } else { ch.len() };
                    ch[a..b].iter()
                }))
            }
        }
    }

    /// Removes and returns the element at ascending rank `r`.
    pub fn remove_rank(&mut self, r: usize) -> Option<Elem> {
        if r >= self.len() {
            return None;
        }
        Some(match self {
            ZSet::Packed(v) => v.remove(r),
            ZSet::Large(l) => {
                let Large { order, scores, .. } = &mut **l;
                let (c, o) = order.locate_rank(r);
                let e = order.remove_at(c, o);
                scores.remove(e.member.as_bytes(), hash(e.member.as_bytes()));
                e
            }
        })
    }

    /// One ZSCAN step: a packed sorted set is returned whole with cursor 0, as Redis does.
    pub fn scan<'a>(&'a self, cursor: u64, count: usize, mut f: impl FnMut(&'a [u8], f64)) -> u64 {
        match self {
            ZSet::Packed(v) => {
                for e in v {
                    f(e.member.as_bytes(), e.score);
                }
                0
            }
            ZSet::Large(l) => {
                let Large { scores, .. } = &**l;
                let mut cursor = cursor;
                let mut emitted = 0;
                let mut budget = count.saturating_mul(10).max(1);
                loop {
                    cursor = scores.scan(cursor, |s| {
                        emitted += 1;
                        f(s.member.as_bytes(), s.score);
                    });
                    budget -= 1;
                    if cursor == 0 || emitted >= count || budget == 0 {
                        return cursor;
                    }
                }
            }
        }
    }

    /// A random element.
    pub fn random(&self, rng: &mut impl rand::Rng) -> Option<&Elem> {
        if self.is_empty() {
            return None;
        }
        self.at(rng.random_range(0..self.len()))
    }

    /// Approximate bytes allocated.
    pub fn heap_size(&self) -> usize {
        match self {
            ZSet::Packed(v) => v.capacity() * 32,
            ZSet::Large(l) => {
                let Large { order, scores, .. } = &**l;
                order.len * 32 + scores.len() * 48 + scores.buckets() * 8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big() -> ZLimits {
        ZLimits {
            max_listpack_entries: 0,
            max_listpack_value: 0,
        }
    }

    #[test]
    fn ranks_and_ranges_in_both_encodings() {
        for limits in [
            ZLimits {
                max_listpack_entries: 128,
                max_listpack_value: 64,
            },
            big(),
        ] {
            let mut z = ZSet::new();
            for i in (0..3000).rev() {
                assert!(
                    z.set(f64::from(i % 100), format!("m{i:05}").as_bytes(), &limits)
                        .is_none()
                );
            }
            if limits.max_listpack_entries == 0 {
                assert_eq!(z.encoding(), "skiplist");
            }
            assert_eq!(z.len(), 3000);
            // Order: by score, then member.
            let all: Vec<&Elem> = z.iter().collect();
            for w in all.windows(2) {
                assert!(w[0].cmp_key(w[1].score, w[1].member.as_bytes()) == Ordering::Less);
            }
            for r in [0, 1, 511, 512, 1500, 2999] {
                let e = z.at(r).unwrap().clone();
                assert_eq!(z.rank(e.member.as_bytes()), Some(r));
            }
            let mid: Vec<_> = z.range(100, 105).map(|e| e.member.clone()).collect();
            let expect: Vec<_> = all[100..105].iter().map(|e| e.member.clone()).collect();
            assert_eq!(mid, expect);
            assert_eq!(z.count_below(50.0, false), 1500);
            assert_eq!(z.count_below(50.0, true), 1530);
            assert_eq!(z.set(1000.0, b"m00000", &limits), Some(0.0));
            assert_eq!(z.rank(b"m00000"), Some(2999));
            assert!(z.remove(b"m00000") && !z.remove(b"m00000"));
            let e = z.remove_rank(0).unwrap();
            assert_eq!(z.score(e.member.as_bytes()), None);
            assert_eq!(z.len(), 2998);
        }
    }
}
