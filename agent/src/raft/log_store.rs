//! Raft log storage on redb: entries, vote and markers, fsynced before openraft is told.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::storage::{decode, encode, LOG, META};
use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// The raft log and vote, stored in redb. Cheap to clone (shares the database).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    /// True when nothing was ever written: no vote and no log. A voter in
    /// this state bootstraps the cluster from its config.
    pub fn is_pristine(&self) -> Result<bool, StorageError> {
        let vote: Option<Vote<NodeId>> = self.read_meta(KEY_VOTE).map_err(read_err)?;
        let empty = self
            .read(|txn| {
                let table = txn.open_table(LOG)?;
                let empty = table.first()?.is_none();
                Ok(empty)
            })
            .map_err(read_err)?;
        Ok(vote.is_none() && empty)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Runs `f` in one write transaction and commits it with `durability`.
    /// Blocking: call from `spawn_blocking` (see `write_blocking`).
    fn write(
        db: &Database,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(durability)?;
        f(&txn)?;
        txn.commit()?;
        Ok(())
    }

    /// Runs a write on the blocking pool, so the fsync does not stall the runtime.
    async fn write_blocking(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    ) -> Result<(), redb::Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || Self::write(&db, durability, f))
            .await
            .map_err(|join| redb::Error::Io(std::io::Error::other(join)))?
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, redb::Error> {
        self.read(|txn| {
            let table = txn.open_table(META)?;
            match table.get(key)? {
                Some(bytes) => decode(bytes.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), redb::Error> {
        let bytes = encode(value)?;
        self.write_blocking(durability, move |txn| {
            let mut table = txn.open_table(META)?;
            table.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
    }
}

fn read_err(e: redb::Error) -> StorageError {
    StorageIOError::read(&e).into()
}

fn write_err(e: redb::Error) -> StorageError {
    StorageIOError::write(&e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        self.read(|txn| {
            let table = txn.open_table(LOG)?;
            let mut entries = Vec::new();
            for item in table.range::<u64>((start, end))? {
                let (_, value) = item?;
                entries.push(decode::<Entry>(value.value())?);
            }
            Ok(entries)
        })
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            self.read_meta(KEY_LAST_PURGED).map_err(read_err)?;
        let last = self
            .read(|txn| {
                let table = txn.open_table(LOG)?;
                let last = match table.last()? {
                    Some((_, value)) => Some(decode::<Entry>(value.value())?.log_id),
                    None => None,
                };
                Ok(last)
            })
            .map_err(read_err)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        // Immediate: a vote must be on disk before we answer the candidate.
        self.write_meta(KEY_VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced on its own: it is only a hint for replay at start-up,
        // and the next log append or vote makes it durable anyway. Reads do
        // not rely on it (see cluster::ensure_linearizable's barrier).
        self.write_meta(KEY_COMMITTED, &committed, Durability::None)
            .await
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(KEY_COMMITTED)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((entry.log_id.index, encode(&entry).map_err(write_err)?));
        }
        let result = self
            .write_blocking(Durability::Immediate, move |txn| {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &rows {
                    table.insert(*index, bytes.as_slice())?;
                }
                Ok(())
            })
            .await;
        // The callback is the promise "on disk": call it only after commit returned.
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_blocking(Durability::Immediate, move |txn| {
            let mut table = txn.open_table(LOG)?;
            table.retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Stored as a `LogId` (and read as one in `get_log_state`).
        let marker = encode(&log_id).map_err(write_err)?;
        // Marker and deletion in one transaction: a node that lost
        // `last_purged` could not restart after compaction.
        self.write_blocking(Durability::Immediate, move |txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert(KEY_LAST_PURGED, marker.as_slice())?;
            let mut table = txn.open_table(LOG)?;
            table.retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
