//! The Raft log, the vote and the state machine, in one RocksDB database with three column
//! families: `log` (entries by big-endian index), `meta` (vote, committed, last purged) and
//! `sm` (the applied configuration and the current snapshot).
//!
//! Log appends and votes are synced before openraft is told they are durable. The state
//! machine is written without a sync after every apply: a crash may lose its last writes, and
//! openraft then applies those entries again from the log (which is only purged up to a
//! snapshot, and snapshots are synced).

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::{ClusterConfig, Request, Response};

openraft::declare_raft_types!(
    /// The control group's Raft types: requests and responses of [`crate::model`].
    pub TypeConfig:
        D = Request,
        R = Response,
);

pub type NodeId = u64;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const CF_SM: &str = "sm";

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e)).into()
}

/// Opens (or creates) the control store at `path`.
pub fn open(path: &Path) -> Result<(LogStore, StateMachine), rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOG, CF_META, CF_SM]
        .into_iter()
        .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = Arc::new(DB::open_cf_descriptors(&opts, path, cfs)?);
    let state: Applied = get_json(&db, CF_SM, b"state")
        .ok()
        .flatten()
        .unwrap_or_default();
    let (tx, _) = watch::channel(Arc::new(state.config.clone()));
    Ok((
        LogStore { db: db.clone() },
        StateMachine {
            db,
            state,
            config: tx,
        },
    ))
}

fn get_json<T: for<'a> Deserialize<'a>>(db: &DB, cf: &str, key: &[u8]) -> StorageResult<Option<T>> {
    let cf = db.cf_handle(cf).expect("column family created at open");
    match db.get_cf(&cf, key).map_err(read_err)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(read_err),
    }
}

fn put_json<T: Serialize>(
    db: &DB,
    cf: &str,
    key: &[u8],
    value: &T,
    sync: bool,
) -> StorageResult<()> {
    let cf = db.cf_handle(cf).expect("column family created at open");
    let bytes = serde_json::to_vec(value).map_err(write_err)?;
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    db.put_cf_opt(&cf, key, bytes, &wo).map_err(write_err)
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

/// The log and the vote.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    fn last_purged(&self) -> StorageResult<Option<LogId<NodeId>>> {
        get_json(&self.db, CF_META, b"last_purged")
    }

    fn delete_range(&self, from: u64, to_exclusive: u64) -> StorageResult<()> {
        let cf = self.db.cf_handle(CF_LOG).expect("column family");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, from.to_be_bytes(), to_exclusive.to_be_bytes());
        self.db.write_opt(batch, &synced()).map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let cf = self.db.cf_handle(CF_LOG).expect("column family");
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            &cf,
            IteratorMode::From(&start.to_be_bytes(), Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| read_err(std::io::Error::other("a log key is not 8 bytes")))?,
            );
            if !range.contains(&index) {
                break;
            }
            out.push(serde_json::from_slice(&value).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged = self.last_purged()?;
        let cf = self.db.cf_handle(CF_LOG).expect("column family");
        let last = match self.db.iterator_cf(&cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item.map_err(read_err)?;
                let e: Entry<TypeConfig> = serde_json::from_slice(&value).map_err(read_err)?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        put_json(&self.db, CF_META, b"vote", vote, true)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        get_json(&self.db, CF_META, b"vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        put_json(&self.db, CF_META, b"committed", &committed, false)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(get_json(&self.db, CF_META, b"committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.db.cf_handle(CF_LOG).expect("column family");
        let mut batch = WriteBatch::default();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(write_err)?;
            batch.put_cf(&cf, e.log_id.index.to_be_bytes(), bytes);
        }
        let r = self.db.write_opt(batch, &synced());
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.delete_range(log_id.index, u64::MAX)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        put_json(&self.db, CF_META, b"last_purged", &log_id, true)?;
        self.delete_range(0, log_id.index + 1)
    }
}

/// What the state machine has applied.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    pub config: ClusterConfig,
}

/// A snapshot as stored: its meta and the serialized [`Applied`].
#[derive(Serialize, Deserialize)]
struct StoredSnapshot<D> {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: D,
}

/// Keeps `data` as the current snapshot (synced: the log is purged behind it).
fn save_snapshot(
    db: &DB,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> StorageResult<()> {
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data,
    };
    put_json(db, CF_SM, b"snapshot", &stored, true)
}

/// The state machine: the configuration, published on a watch channel after every apply.
pub struct StateMachine {
    db: Arc<DB>,
    state: Applied,
    config: watch::Sender<Arc<ClusterConfig>>,
}

impl StateMachine {
    /// The configuration as applied, updated after every change.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.config.subscribe()
    }

    fn persist(&self) -> StorageResult<()> {
        put_json(&self.db, CF_SM, b"state", &self.state, false)
    }

    fn publish(&self) {
        if self.config.borrow().epoch != self.state.config.epoch
            || self.config.borrow().name != self.state.config.name
        {
            self.config
                .send_replace(Arc::new(self.state.config.clone()));
        }
    }
}

/// Builds snapshots from a copy of the applied state.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    state: Applied,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data = serde_json::to_vec(&self.state).map_err(write_err)?;
        let snapshot_id = match self.state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, unique()),
            None => format!("none-{}", unique()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.last_membership.clone(),
            snapshot_id,
        };
        save_snapshot(&self.db, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for e in entries {
            self.state.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Response::Done {
                    epoch: self.state.config.epoch,
                }),
                EntryPayload::Normal(req) => {
                    out.push(self.state.config.apply(e.log_id.index, &req));
                }
                EntryPayload::Membership(m) => {
                    self.state.last_membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Response::Done {
                        epoch: self.state.config.epoch,
                    });
                }
            }
        }
        self.persist()?;
        self.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let mut state: Applied = serde_json::from_slice(&data).map_err(read_err)?;
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        self.state = state;
        save_snapshot(&self.db, meta, &data)?;
        self.persist()?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot<Vec<u8>>> = get_json(&self.db, CF_SM, b"snapshot")?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let (log, sm) = open(dir.path()).map_err(write_err)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
