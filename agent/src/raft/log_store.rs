//! Raft log storage on redb: entries, vote and markers, fsynced before openraft is told.
//!
//! Writes go through `log_writer` (one thread, in order, appends grouped
//! into one commit); entries appended but not yet on disk stay readable in
//! the tail, as openraft's contract asks (readable once `append` returns).
//! openraft 0.9.25 itself waits for the leader's flush before it replicates.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::log_writer::{self, LogWriter, Tail, Write};

use super::storage::{decode, encode, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOG, META};
use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::locks::LockOrRecover;

/// The raft log and vote, stored in redb. Cheap to clone (shares the
/// database, the tail and the writer).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    tail: Tail,
    writer: LogWriter,
}

impl LogStore {
    /// The log in `db`, with its writer thread started.
    pub fn new(db: Arc<Database>) -> std::io::Result<Self> {
        let tail = Tail::default();
        let writer = LogWriter::start(db.clone(), tail.clone())?;
        Ok(Self { db, tail, writer })
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

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, redb::Error> {
        self.read(|txn| {
            let table = txn.open_table(META)?;
            match table.get(key)? {
                Some(bytes) => decode(bytes.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Hands `write` (made with `done`) to the writer and waits for it.
    async fn write_through(
        &self,
        write: impl FnOnce(log_writer::Done) -> Write,
    ) -> Result<(), redb::Error> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.writer
            .send(write(done))
            .map_err(|e| redb::Error::Io(std::io::Error::other(e)))?;
        result
            .await
            .map_err(|e| redb::Error::Io(std::io::Error::other(e)))?
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), redb::Error> {
        let bytes = encode(value)?;
        self.write_through(|done| Write::Meta {
            key,
            bytes,
            durability,
            done,
        })
        .await
    }

    /// Makes `entries` readable at once and queues their write; `flushed`
    /// is told once they are on disk.
    fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        flushed: log_writer::Flushed,
    ) -> Result<(), StorageError> {
        let mut rows = Vec::new();
        let mut ids = Vec::new();
        let mut readable = Vec::new();
        for entry in entries {
            rows.push((entry.log_id.index, encode(&entry).map_err(write_err)?));
            ids.push(entry.log_id);
            readable.push(entry);
        }
        // Readable now, as openraft's contract asks; on disk when the writer
        // calls back.
        self.tail
            .lock_or_recover()
            .extend(readable.into_iter().map(|e| (e.log_id.index, e)));
        self.writer
            .send(Write::Append { rows, ids, flushed })
            .map_err(|e| StorageIOError::write_logs(&std::io::Error::other(e)).into())
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
        // The tail first: the writer drops an entry from it only after the
        // commit that stores it, so an entry missing from this copy is in
        // the read below. (Read the other way round, an entry committed and
        // dropped between the two reads was in neither.)
        let pending: Vec<Entry> = self
            .tail
            .lock_or_recover()
            .range((start, end))
            .map(|(_, entry)| entry.clone())
            .collect();
        let stored = self
            .read(|txn| {
                let table = txn.open_table(LOG)?;
                let mut entries = Vec::new();
                for item in table.range::<u64>((start, end))? {
                    let (_, value) = item?;
                    entries.push(decode::<Entry>(value.value())?);
                }
                Ok(entries)
            })
            .map_err(|e| StorageIOError::read_logs(&e))?;
        if pending.is_empty() {
            return Ok(stored);
        }
        // Appended entries not yet on disk are newer than anything stored at their index.
        let mut entries: std::collections::BTreeMap<u64, Entry> =
            stored.into_iter().map(|e| (e.log_id.index, e)).collect();
        entries.extend(pending.into_iter().map(|entry| (entry.log_id.index, entry)));
        Ok(entries.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            self.read_meta(KEY_LAST_PURGED).map_err(read_err)?;
        let pending = self
            .tail
            .lock_or_recover()
            .last_key_value()
            .map(|(_, entry)| entry.log_id);
        let last = match pending {
            Some(last) => Some(last),
            None => self
                .read(|txn| {
                    let table = txn.open_table(LOG)?;
                    let last = match table.last()? {
                        Some((_, value)) => Some(decode::<Entry>(value.value())?.log_id),
                        None => None,
                    };
                    Ok(last)
                })
                .map_err(read_err)?,
        };
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
        // Not written on its own: it is only a hint for replay at start-up,
        // stored with the next append. Reads do not rely on it (see
        // routing::ensure_linearizable's barrier).
        self.writer
            .note_committed(encode(&committed).map_err(write_err)?);
        Ok(())
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
        self.append_then(
            entries,
            Box::new(move |result| callback.log_io_completed(result)),
        )
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Gone for readers at once; gone from disk before this returns.
        self.tail
            .lock_or_recover()
            .retain(|index, _| *index < log_id.index);
        self.write_through(|done| Write::Truncate {
            from: log_id.index,
            done,
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Stored as a `LogId` (and read as one in `get_log_state`).
        let marker = encode(&log_id).map_err(write_err)?;
        self.write_through(|done| Write::Purge {
            upto: log_id.index,
            marker,
            done,
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// A reader that runs while the writer commits sees every appended
    /// entry: in the tail until it is stored, in redb after.
    #[test]
    fn appended_entries_stay_readable_while_the_writer_stores_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = super::super::storage::open_database(dir.path()).expect("database");
        let store = LogStore::new(db).expect("log store");
        let appended = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (mut store, appended, done) = (store.clone(), appended.clone(), done.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                let (mut reads, mut missing) = (0u64, 0u64);
                while !done.load(Ordering::Acquire) {
                    let last = appended.load(Ordering::Acquire);
                    if last == 0 {
                        continue;
                    }
                    let first = last.saturating_sub(32).max(1);
                    let got = runtime
                        .block_on(store.try_get_log_entries(first..=last))
                        .expect("read");
                    reads += 1;
                    if got.len() as u64 != last - first + 1 {
                        missing += 1;
                    }
                }
                (reads, missing)
            })
        };
        // One entry per commit, each awaited: every commit drops an entry
        // from the tail while the reader runs.
        let (stored, on_disk) = std::sync::mpsc::channel();
        for index in 1..=500 {
            let stored = stored.clone();
            store
                .append_then(
                    [entry(index)],
                    Box::new(move |result| {
                        let _ = stored.send(result.is_ok());
                    }),
                )
                .expect("queued");
            appended.store(index, Ordering::Release);
            assert_eq!(on_disk.recv(), Ok(true), "entry {index} was not stored");
        }
        done.store(true, Ordering::Release);
        let (reads, missing) = reader.join().expect("reader");
        assert!(reads > 100, "the reader ran only {reads} times");
        assert_eq!(
            missing, 0,
            "{missing} of {reads} reads missed an appended entry"
        );
    }
}
