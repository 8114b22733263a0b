//! The shard's RocksDB store: the AOF and RDB analogues in one database.
//!
//! Column families:
//! - `log`: the effect stream (Redis's replication stream: RESP commands), one record per
//!   event-loop turn keyed by the big-endian stream offset of its first byte. Records are
//!   contiguous: each starts where the previous one ends. This is the AOF analogue.
//! - `image-<generation>`: checkpoint images (the RDB analogue), one column family each, in
//!   chunks of about 256 KB keyed by their 8-byte big-endian number. A chunk is a run of the
//!   server's snapshot records (`tessera_storage::snapshot::RecordStream`: slot, key, expiry,
//!   value in RDB format), opaque here. One RocksDB entry per chunk rather than per key keeps
//!   a checkpoint's CPU cost low, and the walk's records come in slot order, so an image loads
//!   one slot at a time. Only the generation named in `meta` is live; a newer one being
//!   written is ignored until it is committed, older ones are dropped by the commit.
//! - `meta`: the format marker, the committed image ([`ImageMeta`]) and the replication ID.
//!
//! A checkpoint commit is one synced write batch: the new image metadata (generation, offset,
//! replication ID) and the deletion of the log prefix it covers; then the older images'
//! column families are dropped. So the data, the offset and the replication ID always change
//! together (invariant 4).
//!
//! The store never interprets RESP or RDB bytes: the server encodes and decodes them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions,
};

const CF_META: &str = "meta";
const CF_LOG: &str = "log";
/// Each image generation has its own column family, `image-<generation>`: replacing an image
/// drops the old one's files at once, with no compaction.
const CF_IMAGE_PREFIX: &str = "image-";

fn image_cf_name(generation: u64) -> String {
    format!("{CF_IMAGE_PREFIX}{generation}")
}

/// The generation of an image column family's name.
fn image_cf_generation(name: &str) -> Option<u64> {
    name.strip_prefix(CF_IMAGE_PREFIX)?.parse().ok()
}

const FORMAT_KEY: &[u8] = b"format";
const FORMAT: &[u8] = b"tessera-store 4";
const IMAGE_KEY: &[u8] = b"image";
const REPLID_KEY: &[u8] = b"replid";

/// What went wrong with the store, with the way out where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB error in {path}: {source}")]
    Rocks {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error(
        "the data directory {path} is damaged: {what}. Run `tessera check-data {path}` for details; restore the directory from a backup, or move it away to start empty"
    )]
    Corrupt { path: PathBuf, what: String },
    #[error(
        "{path} is not a Tessera data directory (no format marker); move it away or point `dir` elsewhere"
    )]
    NotAStore { path: PathBuf },
    #[error("the data directory {path} is closed: reopening it after a write error failed")]
    Closed { path: PathBuf },
}

impl StoreError {
    /// True for errors of the disk (no space, I/O) rather than of the data.
    pub fn is_io(&self) -> bool {
        match self {
            StoreError::Rocks { source, .. } => matches!(
                source.kind(),
                rocksdb::ErrorKind::IOError
                    | rocksdb::ErrorKind::Busy
                    | rocksdb::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

/// The committed checkpoint image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageMeta {
    pub generation: u64,
    /// The effect stream offset the image is the state at.
    pub offset: u64,
    /// The replication ID the offset belongs to (40 hex characters).
    pub replid: String,
    pub keys: u64,
    /// Unix milliseconds when the image was complete.
    pub saved_at_ms: i64,
    /// The function libraries' codes (FUNCTION LOAD) at the image's offset.
    pub functions: Vec<Vec<u8>>,
}

impl ImageMeta {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(72);
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.keys.to_le_bytes());
        v.extend_from_slice(&self.saved_at_ms.to_le_bytes());
        v.extend_from_slice(self.replid.as_bytes());
        // The replication ID is text: a zero byte ends it, and the libraries follow.
        if !self.functions.is_empty() {
            v.push(0);
            for code in &self.functions {
                v.extend_from_slice(&(code.len() as u32).to_le_bytes());
                v.extend_from_slice(code);
            }
        }
        v
    }

    fn decode(b: &[u8]) -> Option<ImageMeta> {
        if b.len() < 32 {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let rest = &b[32..];
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        let mut functions = Vec::new();
        let mut lib = rest.get(end + 1..).unwrap_or_default();
        while !lib.is_empty() {
            let len = u32::from_le_bytes(lib.get(..4)?.try_into().ok()?) as usize;
            functions.push(lib.get(4..4 + len)?.to_vec());
            lib = &lib[4 + len..];
        }
        Some(ImageMeta {
            generation: u(0),
            offset: u(8),
            keys: u(16),
            saved_at_ms: u(24) as i64,
            replid: String::from_utf8(rest[..end].to_vec()).ok()?,
            functions,
        })
    }
}

/// The store of one shard.
pub struct Store {
    /// Behind a lock so the store can be reopened in place after a write error (RocksDB keeps
    /// refusing writes after one, even once the disk has room again).
    db: RwLock<Option<DB>>,
    path: PathBuf,
    /// Incremented by each reopen: image records written before it (without the WAL) are
    /// gone, so a checkpoint that spans a reopen must not commit.
    epoch: AtomicU64,
    /// The image generations that have a column family.
    images: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

fn cf<'d>(db: &'d DB, name: &str) -> &'d rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("the column families are created on open")
}

fn open_db(dir: &Path, create: bool) -> Result<DB, StoreError> {
    let cache = Cache::new_lru_cache(8 << 20);
    let mut opts = Options::default();
    opts.create_if_missing(create);
    opts.create_missing_column_families(create);
    opts.set_paranoid_checks(true);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(3);
    opts.set_max_total_wal_size(64 << 20);
    let mut cfs = vec![
        ColumnFamilyDescriptor::new(CF_META, cf_options(&cache, false, 1 << 20)),
        ColumnFamilyDescriptor::new(CF_LOG, cf_options(&cache, true, 16 << 20)),
    ];
    // Every image generation present (the committed one, and any a crash left behind).
    if let Ok(names) = DB::list_cf(&Options::default(), dir) {
        for name in names {
            if image_cf_generation(&name).is_some() {
                cfs.push(ColumnFamilyDescriptor::new(name, image_options(&cache)));
            }
        }
    }
    DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| {
        if source.kind() == rocksdb::ErrorKind::Corruption {
            StoreError::Corrupt {
                path: dir.to_path_buf(),
                what: source.to_string(),
            }
        } else {
            StoreError::Rocks {
                path: dir.to_path_buf(),
                source,
            }
        }
    })
}

fn cf_options(cache: &Cache, compress: bool, write_buffer: usize) -> Options {
    let mut o = Options::default();
    // Small memtables: a checkpoint streams the whole keyspace through them, and the shard's
    // memory (a checkpoint may take at most 20% over the dataset) counts them.
    o.set_write_buffer_size(write_buffer);
    o.set_max_write_buffer_number(2);
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(cache);
    t.set_block_size(16 << 10);
    o.set_block_based_table_factory(&t);
    o.set_compression_type(if compress {
        rocksdb::DBCompressionType::Lz4
    } else {
        rocksdb::DBCompressionType::None
    });
    o
}

/// An image column family: chunks are written once, in order, and read once, so small
/// memtables are enough and compaction would be wasted work (the whole family is dropped when
/// a newer image is committed).
fn image_options(cache: &Cache) -> Options {
    // Uncompressed: compressing every image costs the CPU the shard's clients need, and the
    // RDB encoding is compact already.
    let mut o = cf_options(cache, false, 2 << 20);
    o.set_disable_auto_compactions(true);
    o.set_level_zero_slowdown_writes_trigger(1 << 20);
    o.set_level_zero_stop_writes_trigger(1 << 20);
    o
}

impl Store {
    /// True if `dir` holds a store (or at least a RocksDB directory).
    pub fn exists(dir: &Path) -> bool {
        dir.join("CURRENT").exists()
    }

    /// Opens the store at `dir`, creating it when `create` is set and it does not exist.
    pub fn open(dir: &Path, create: bool) -> Result<Store, StoreError> {
        let path = dir.to_path_buf();
        let fresh = !Self::exists(dir);
        if fresh && !create {
            return Err(StoreError::NotAStore { path });
        }
        // A directory with files but no CURRENT is a damaged store, never a fresh one: creating
        // a database there would hide the data it held.
        if fresh && std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(StoreError::Corrupt {
                path,
                what: "its CURRENT file is missing".into(),
            });
        }
        let store = Store {
            db: RwLock::new(Some(open_db(dir, create)?)),
            path,
            epoch: AtomicU64::new(0),
            images: Default::default(),
        };
        *store.images.lock().unwrap_or_else(|e| e.into_inner()) =
            DB::list_cf(&Options::default(), dir)
                .unwrap_or_default()
                .iter()
                .filter_map(|n| image_cf_generation(n))
                .collect();
        {
            let guard = store.guard();
            let db = guard.as_ref().expect("just opened");
            let meta = cf(db, CF_META);
            match db.get_cf(meta, FORMAT_KEY).map_err(|e| store.err(e))? {
                Some(f) if f == FORMAT => {}
                Some(f) => {
                    return Err(StoreError::Corrupt {
                        path: store.path.clone(),
                        what: format!("unknown format {:?}", String::from_utf8_lossy(&f)),
                    });
                }
                None if fresh => {
                    let mut w = WriteOptions::default();
                    w.set_sync(true);
                    db.put_cf_opt(meta, FORMAT_KEY, FORMAT, &w)
                        .map_err(|e| store.err(e))?;
                }
                None => {
                    return Err(StoreError::NotAStore {
                        path: store.path.clone(),
                    });
                }
            }
        }
        Ok(store)
    }

    fn guard(&self) -> RwLockReadGuard<'_, Option<DB>> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes and opens the database again: after a write error (a full disk), RocksDB refuses
    /// every write until then. Its recovery drops a torn last WAL record.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        // The old handle must close first (it holds the directory's lock).
        *guard = None;
        *guard = Some(open_db(&self.path, false)?);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The reopen count (see [`Store::reopen`]).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.path.clone(),
        }
    }

    fn err(&self, source: rocksdb::Error) -> StoreError {
        if source.kind() == rocksdb::ErrorKind::Corruption {
            StoreError::Corrupt {
                path: self.path.clone(),
                what: source.to_string(),
            }
        } else {
            StoreError::Rocks {
                path: self.path.clone(),
                source,
            }
        }
    }

    fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// Appends the effect stream bytes starting at `start`. With `sync` the call returns once
    /// they are on disk. `replid` is written in the same batch when given (it changed).
    pub fn append(
        &self,
        start: u64,
        data: &[u8],
        replid: Option<&str>,
        sync: bool,
    ) -> Result<(), StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let mut b = WriteBatch::default();
        b.put_cf(cf(db, CF_LOG), start.to_be_bytes(), data);
        if let Some(id) = replid {
            b.put_cf(cf(db, CF_META), REPLID_KEY, id.as_bytes());
        }
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        db.write_opt(b, &w).map_err(|e| self.err(e))
    }

    /// Appends several runs of the effect stream in one write (one sync for all of them).
    pub fn append_many(&self, runs: &[(u64, Vec<u8>)], sync: bool) -> Result<(), StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let mut b = WriteBatch::default();
        for (start, data) in runs {
            b.put_cf(cf(db, CF_LOG), start.to_be_bytes(), data);
        }
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        db.write_opt(b, &w).map_err(|e| self.err(e))
    }

    /// Makes every append so far durable (`appendfsync everysec`).
    pub fn sync(&self) -> Result<(), StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        db.flush_wal(true).map_err(|e| self.err(e))
    }

    /// The replication ID last written.
    pub fn replid(&self) -> Result<Option<String>, StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        Ok(db
            .get_cf(cf(db, CF_META), REPLID_KEY)
            .map_err(|e| self.err(e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The committed image, if any.
    pub fn image(&self) -> Result<Option<ImageMeta>, StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let found = db
            .get_cf(cf(db, CF_META), IMAGE_KEY)
            .map_err(|e| self.err(e))?;
        drop(guard);
        match found {
            None => Ok(None),
            Some(b) => ImageMeta::decode(&b)
                .map(Some)
                .ok_or_else(|| self.corrupt("the image metadata is unreadable")),
        }
    }

    /// Writes chunk `seq` of an image being built (not yet visible: no WAL, flushed at
    /// commit).
    pub fn write_image_chunk(
        &self,
        generation: u64,
        seq: u64,
        chunk: &[u8],
    ) -> Result<(), StoreError> {
        let name = image_cf_name(generation);
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let image = db
            .cf_handle(&name)
            .ok_or_else(|| self.corrupt("an image column family vanished while it was written"))?;
        let mut w = WriteOptions::default();
        w.disable_wal(true);
        db.put_cf_opt(image, seq.to_be_bytes(), chunk, &w)
            .map_err(|e| self.err(e))
    }

    /// Creates the column family of a new image, `generation` (before its first chunk).
    pub fn create_image(&self, generation: u64) -> Result<(), StoreError> {
        let name = image_cf_name(generation);
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_mut().ok_or_else(|| self.closed())?;
        if db.cf_handle(&name).is_none() {
            let cache = Cache::new_lru_cache(1 << 20);
            db.create_cf(&name, &image_options(&cache))
                .map_err(|e| self.err(e))?;
        }
        self.images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(generation);
        Ok(())
    }

    /// The generations that have a column family.
    fn image_generations(&self) -> Vec<u64> {
        self.images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Deletes every generation from `generation` on: what an earlier run left of a checkpoint
    /// it did not commit.
    pub fn drop_generations_from(&self, generation: u64) -> Result<(), StoreError> {
        for g in self.image_generations() {
            if g >= generation {
                self.drop_generation(g)?;
            }
        }
        Ok(())
    }

    /// Deletes image `generation` (an image abandoned half-way, or replaced): its column
    /// family and with it its files.
    pub fn drop_generation(&self, generation: u64) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_mut().ok_or_else(|| self.closed())?;
        let name = image_cf_name(generation);
        if db.cf_handle(&name).is_some() {
            db.drop_cf(&name).map_err(|e| self.err(e))?;
        }
        self.images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&generation);
        Ok(())
    }

    /// Makes image `meta` the committed one: its records are flushed to disk first, then one
    /// synced batch records it, drops the log before its offset and the previous generation.
    pub fn commit_image(&self, meta: &ImageMeta) -> Result<(), StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let image = db
            .cf_handle(&image_cf_name(meta.generation))
            .ok_or_else(|| self.corrupt("the image being committed has no column family"))?;
        db.flush_cf(image).map_err(|e| self.err(e))?;
        let mut b = WriteBatch::default();
        b.put_cf(cf(db, CF_META), IMAGE_KEY, meta.encode());
        b.put_cf(cf(db, CF_META), REPLID_KEY, meta.replid.as_bytes());
        b.delete_range_cf(
            cf(db, CF_LOG),
            0u64.to_be_bytes(),
            meta.offset.to_be_bytes(),
        );
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.write_opt(b, &w).map_err(|e| self.err(e))?;
        // Let compaction reclaim the deleted log soon rather than eventually.
        db.compact_range_cf(
            cf(db, CF_LOG),
            None::<&[u8]>,
            Some(meta.offset.to_be_bytes()),
        );
        drop(guard);
        // The older images (replaced, or abandoned half-way) go, files and all.
        for g in self.image_generations() {
            if g < meta.generation
                && let Err(e) = self.drop_generation(g)
            {
                tracing::warn!(error = %e, generation = g, "dropping an older image failed");
            }
        }
        Ok(())
    }

    /// Calls `f` with each chunk of image `generation`, in order.
    /// `f` returns false to stop.
    pub fn scan_image(
        &self,
        generation: u64,
        mut f: impl FnMut(&[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let image = db.cf_handle(&image_cf_name(generation)).ok_or_else(|| {
            self.corrupt(format!(
                "image {generation}, named as committed, is missing"
            ))
        })?;
        let mut it = db.raw_iterator_cf(image);
        it.seek_to_first();
        let mut expect = 0u64;
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if k != expect.to_be_bytes() {
                return Err(self.corrupt(format!("image {generation} lacks chunk {expect}")));
            }
            expect += 1;
            if !f(v)? {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|e| self.err(e))
    }

    /// Calls `f` with each log record from offset `from` on, in order, checking that they are
    /// contiguous. Returns the offset after the last record.
    pub fn scan_log(
        &self,
        from: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let mut expect = from;
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let it = db.iterator_cf(
            cf(db, CF_LOG),
            IteratorMode::From(&from.to_be_bytes(), Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let start = u64::from_be_bytes(
                k[..]
                    .try_into()
                    .map_err(|_| self.corrupt("a log key is not 8 bytes"))?,
            );
            if start != expect {
                return Err(self.corrupt(format!(
                    "the effect log has a gap: a record starts at offset {start}, the previous one ended at {expect}"
                )));
            }
            expect = start + v.len() as u64;
            if !f(start, &v)? {
                break;
            }
        }
        Ok(expect)
    }

    /// Deletes the log from `offset` on (a stale tail, when the log is off).
    pub fn drop_log_from(&self, offset: u64) -> Result<(), StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        db.delete_range_cf(cf(db, CF_LOG), offset.to_be_bytes(), u64::MAX.to_be_bytes())
            .map_err(|e| self.err(e))?;
        // u64::MAX itself is excluded from the range; no record can start there.
        Ok(())
    }

    /// The first log offset, if the log is not empty.
    pub fn log_start(&self) -> Result<Option<u64>, StoreError> {
        let guard = self.guard();
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let mut it = db.raw_iterator_cf(cf(db, CF_LOG));
        it.seek_to_first();
        if !it.valid() {
            it.status().map_err(|e| self.err(e))?;
            return Ok(None);
        }
        let k = it.key().unwrap_or_default();
        Ok(Some(u64::from_be_bytes(
            k.try_into()
                .map_err(|_| self.corrupt("a log key is not 8 bytes"))?,
        )))
    }

    /// Bytes of the log and image (approximate, from RocksDB's properties: files on disk and
    /// memtables).
    pub fn disk_sizes(&self) -> (u64, u64) {
        let guard = self.guard();
        let Some(db) = guard.as_ref() else {
            return (0, 0);
        };
        let prop = |name_cf: &str, name: &str| {
            db.property_int_value_cf(cf(db, name_cf), name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        let size = |c: &str| {
            prop(c, "rocksdb.total-sst-files-size") + prop(c, "rocksdb.cur-size-all-mem-tables")
        };
        let images: u64 = self
            .image_generations()
            .iter()
            .filter(|g| db.cf_handle(&image_cf_name(**g)).is_some())
            .map(|g| size(&image_cf_name(*g)))
            .sum();
        (size(CF_LOG), images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_image_and_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        assert!(matches!(
            Store::open(&path, false),
            Err(StoreError::NotAStore { .. })
        ));
        {
            let s = Store::open(&path, true).unwrap();
            s.append(0, b"abc", Some("id1"), true).unwrap();
            s.append(3, b"defg", None, false).unwrap();
            s.sync().unwrap();
            let mut seen = Vec::new();
            let end = s
                .scan_log(0, |o, b| {
                    seen.push((o, b.to_vec()));
                    Ok(true)
                })
                .unwrap();
            assert_eq!(end, 7);
            assert_eq!(seen.len(), 2);
            s.create_image(1).unwrap();
            s.write_image_chunk(1, 0, b"chunk").unwrap();
            s.commit_image(&ImageMeta {
                generation: 1,
                offset: 3,
                replid: "id2".into(),
                keys: 1,
                saved_at_ms: 5,
                functions: vec![b"#!lua name=a\n".to_vec(), Vec::new()],
            })
            .unwrap();
        }
        let s = Store::open(&path, false).unwrap();
        let img = s.image().unwrap().unwrap();
        assert_eq!((img.generation, img.offset), (1, 3));
        assert_eq!(img.replid, "id2");
        assert_eq!(img.functions, [b"#!lua name=a\n".to_vec(), Vec::new()]);
        assert_eq!(s.replid().unwrap().as_deref(), Some("id2"));
        assert_eq!(s.log_start().unwrap(), Some(3));
        let mut keys = Vec::new();
        s.scan_image(1, |chunk| {
            keys.push(chunk.to_vec());
            Ok(true)
        })
        .unwrap();
        assert_eq!(keys, [b"chunk".to_vec()]);
        assert_eq!(s.scan_log(3, |_, _| Ok(true)).unwrap(), 7);
        // A gap is corruption.
        s.append(100, b"x", None, true).unwrap();
        assert!(matches!(
            s.scan_log(3, |_, _| Ok(true)),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
