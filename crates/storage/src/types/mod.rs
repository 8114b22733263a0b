//! Collection value types. Each has a compact encoding for small values (the idea of Redis's
//! listpack and intset, with Redis's thresholds and `OBJECT ENCODING` names) and a full
//! structure it converts to as it grows; it never converts back, as in Redis.

pub mod hash;
pub mod list;
pub mod packed;
pub mod set;
pub mod stream;
pub mod zset;

/// Thresholds of the compact encodings (`hash-max-listpack-entries` and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactLimits {
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
}

impl CompactLimits {
    /// The sorted set thresholds.
    pub fn zset(&self) -> zset::ZLimits {
        zset::ZLimits {
            max_listpack_entries: self.zset_max_listpack_entries,
            max_listpack_value: self.zset_max_listpack_value,
        }
    }
}

impl Default for CompactLimits {
    fn default() -> Self {
        CompactLimits {
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
        }
    }
}
