//! `maxmemory` and eviction, after Redis's evict.c: before a command runs, keys are evicted by
//! the configured policy until allocated memory is below `maxmemory`; a `denyoom` command that
//! still finds memory above the limit gets Redis's OOM error.
//!
//! LRU and LFU are approximated as Redis does: `maxmemory-samples` random keys (or keys with a
//! time to live, for the volatile policies) are sampled and the best candidate is evicted.
//! Allocated memory is read from jemalloc at most once per event-loop turn, and again while
//! evicting.

use crate::server::Server;

/// An eviction policy (`maxmemory-policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    VolatileLru,
    AllKeysLfu,
    VolatileLfu,
    AllKeysRandom,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    /// Parses Redis's policy names.
    pub fn parse(s: &str) -> Option<Policy> {
        Some(match s {
            "noeviction" => Policy::NoEviction,
            "allkeys-lru" => Policy::AllKeysLru,
            "volatile-lru" => Policy::VolatileLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "volatile-lfu" => Policy::VolatileLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => return None,
        })
    }

    /// True for the LFU policies, under which keys carry LFU counters.
    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// The access field after an access: an LFU counter update under LFU policies, else the LRU
/// clock.
#[inline]
pub fn next_access(lfu: bool, log_factor: u32, decay_time: u32, old: u32, now: i64) -> u32 {
    if lfu {
        tessera_storage::lfu::on_access(old, now, log_factor, decay_time, rand::random::<f64>())
    } else {
        tessera_storage::db::lru_clock_at(now)
    }
}

impl Server {
    /// Allocated memory, read at most once per event-loop turn.
    fn used_memory_cached(&mut self) -> u64 {
        *self
            .used_memory_cache
            .get_or_insert_with(crate::memory::allocated)
    }

    /// Evicts keys until memory is below `maxmemory`. Returns false when it cannot get there
    /// (policy `noeviction`, or nothing left to evict).
    pub(crate) fn perform_evictions(&mut self, now: i64) -> bool {
        let max = self.config.maxmemory;
        if max == 0 || self.used_memory_cached() <= max {
            return true;
        }
        let Some(policy) = Policy::parse(&self.config.maxmemory_policy) else {
            return false;
        };
        if policy == Policy::NoEviction {
            return false;
        }
        // Bounded, so one command never stalls the loop for long.
        for _ in 0..100_000 {
            let Some(victim) = self.pick_victim(policy, now) else {
                self.used_memory_cache = None;
                return false;
            };
            self.db.remove(&victim);
            self.emit_del(&victim);
            self.stats.evicted_keys += 1;
            // (The event invalidates the key's watches and tracking, as any modification.)
            self.notify(crate::notify::EVICTED, "evicted", &victim);
            let used = crate::memory::allocated();
            self.used_memory_cache = Some(used);
            if used <= max {
                return true;
            }
        }
        false
    }

    /// The best of `maxmemory-samples` candidates for the policy.
    fn pick_victim(&mut self, policy: Policy, now: i64) -> Option<Vec<u8>> {
        let samples = self.config.maxmemory_samples.max(1);
        let decay = self.config.lfu_decay_time;
        let clock = tessera_storage::db::lru_clock_at(now);
        let mut best: Option<(u64, Vec<u8>)> = None;
        for _ in 0..samples {
            let candidate = if policy.volatile_only() {
                let Some((key, at)) = self.db.sample_volatile() else {
                    break;
                };
                if policy == Policy::VolatileTtl {
                    // Sooner expiry is better: rank by the inverse of the time left.
                    Some((u64::MAX - at.max(0) as u64, key.as_bytes().to_vec()))
                } else {
                    self.db.find_stored(key.as_bytes()).map(|e| {
                        (
                            score(policy, e.access(), clock, now, decay),
                            key.as_bytes().to_vec(),
                        )
                    })
                }
            } else {
                self.db.sample_key().map(|e| {
                    (
                        score(policy, e.access(), clock, now, decay),
                        e.key().to_vec(),
                    )
                })
            };
            let Some((sc, key)) = candidate else { continue };
            if matches!(policy, Policy::AllKeysRandom | Policy::VolatileRandom) {
                return Some(key);
            }
            if best.as_ref().is_none_or(|(b, _)| sc > *b) {
                best = Some((sc, key));
            }
        }
        best.map(|(_, k)| k)
    }
}

/// How good an eviction candidate is (higher is better): idle time for LRU, inverse frequency
/// for LFU.
fn score(policy: Policy, access: u32, clock: u32, now: i64, decay: u32) -> u64 {
    if policy.is_lfu() {
        255 - u64::from(tessera_storage::lfu::decayed(access, now, decay))
    } else {
        u64::from(clock.wrapping_sub(access) & 0xFF_FFFF)
    }
}
