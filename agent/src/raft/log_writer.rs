//! The raft log's one writer thread: writes in order, appends grouped into one fsync.
//!
//! openraft wants `append` to return once the entries are readable and to
//! be told through a callback when they are on disk. The log store keeps
//! appended entries readable in memory (its tail) and hands the write to
//! this thread; the thread commits whatever appends queued up meanwhile in
//! one redb transaction (one fsync: group commit), then drops them from the
//! tail and calls their callbacks. Votes, truncation and purging go through
//! the same queue, so no write ever overtakes an earlier one.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use redb::{Database, Durability};
use tokio::sync::oneshot;

use super::storage::{KEY_COMMITTED, KEY_LAST_PURGED, LOG, META};
use super::types::{Entry, LogId};

use crate::locks::LockOrRecover;

/// Entries appended but not yet on disk, by index: what reads see first.
pub(super) type Tail = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// Told once appended entries are on disk (or that the write failed):
/// openraft's `LogFlushed` callback in production.
pub(super) type Flushed = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Answers a write that the caller waits for.
pub(super) type Done = oneshot::Sender<Result<(), redb::Error>>;

/// One write, in the order the log store made it.
pub(super) enum Write {
    /// Entries (index, encoded) to store; `flushed` is told once they are on disk.
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        ids: Vec<LogId>,
        flushed: Flushed,
    },
    /// A marker (`vote`, `last_purged`, ...) to store with `durability`.
    Meta {
        key: &'static str,
        bytes: Vec<u8>,
        durability: Durability,
        done: Done,
    },
    /// Delete entries from `from` on.
    Truncate { from: u64, done: Done },
    /// Delete entries up to `upto`, storing `marker` as `last_purged` in the same commit.
    Purge {
        upto: u64,
        marker: Vec<u8>,
        done: Done,
    },
}

/// The handle of the writer thread; the thread ends when every handle is gone.
#[derive(Clone)]
pub(super) struct LogWriter {
    queue: mpsc::Sender<Write>,
    /// The newest committed log id (encoded), stored with the next append:
    /// it is only a hint for replay at start-up, not worth its own commit.
    committed: Arc<Mutex<Option<Vec<u8>>>>,
}

/// Why a write could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("the raft log writer has stopped")]
pub(super) struct WriterGone;

impl LogWriter {
    /// Starts the writer thread for `db`; it drops flushed entries from `tail`.
    pub(super) fn start(db: Arc<Database>, tail: Tail) -> std::io::Result<LogWriter> {
        let (queue, writes) = mpsc::channel();
        let committed = Arc::new(Mutex::new(None));
        let hint = committed.clone();
        std::thread::Builder::new()
            .name("baton-log-writer".into())
            .spawn(move || run(&db, &tail, &hint, &writes))?;
        Ok(LogWriter { queue, committed })
    }

    pub(super) fn send(&self, write: Write) -> Result<(), WriterGone> {
        self.queue.send(write).map_err(|_| WriterGone)
    }

    /// Remembers the committed log id for the next append's commit.
    pub(super) fn note_committed(&self, bytes: Vec<u8>) {
        *self.committed.lock_or_recover() = Some(bytes);
    }
}

/// The writer thread: takes every write queued so far, commits runs of
/// appends together, everything else on its own, in order.
fn run(
    db: &Database,
    tail: &Tail,
    committed: &Mutex<Option<Vec<u8>>>,
    writes: &mpsc::Receiver<Write>,
) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        batch.extend(writes.try_iter());
        let mut appends = Vec::new();
        for write in batch {
            match write {
                Write::Append { rows, ids, flushed } => appends.push((rows, ids, flushed)),
                other => {
                    commit_appends(db, tail, committed, std::mem::take(&mut appends));
                    commit_other(db, other);
                }
            }
        }
        commit_appends(db, tail, committed, appends);
    }
}

type Appends = Vec<(Vec<(u64, Vec<u8>)>, Vec<LogId>, Flushed)>;

/// One transaction, one fsync for all `appends`; then they leave the tail
/// and their callbacks learn they are on disk (or that the write failed).
fn commit_appends(
    db: &Database,
    tail: &Tail,
    committed: &Mutex<Option<Vec<u8>>>,
    appends: Appends,
) {
    if appends.is_empty() {
        return;
    }
    let hint = committed.lock_or_recover().take();
    let result = (|| -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(LOG)?;
            for (rows, _, _) in &appends {
                for (index, bytes) in rows {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            if let Some(hint) = &hint {
                txn.open_table(META)?
                    .insert(KEY_COMMITTED, hint.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    })();
    if result.is_ok() {
        let mut tail = tail.lock_or_recover();
        for id in appends.iter().flat_map(|(_, ids, _)| ids) {
            // A truncation may have replaced the entry meanwhile: drop only this one.
            if tail.get(&id.index).is_some_and(|entry| entry.log_id == *id) {
                tail.remove(&id.index);
            }
        }
    }
    for (_, _, flushed) in appends {
        flushed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
    }
}

fn commit_other(db: &Database, write: Write) {
    let (result, done) = match write {
        Write::Append { .. } => return,
        Write::Meta {
            key,
            bytes,
            durability,
            done,
        } => (
            transact(db, durability, |txn| {
                txn.open_table(META)?.insert(key, bytes.as_slice())?;
                Ok(())
            }),
            done,
        ),
        Write::Truncate { from, done } => (
            transact(db, Durability::Immediate, |txn| {
                txn.open_table(LOG)?.retain_in(from.., |_, _| false)?;
                Ok(())
            }),
            done,
        ),
        Write::Purge { upto, marker, done } => (
            // Marker and deletion in one transaction: a node that lost
            // `last_purged` could not restart after compaction.
            transact(db, Durability::Immediate, |txn| {
                txn.open_table(META)?
                    .insert(KEY_LAST_PURGED, marker.as_slice())?;
                txn.open_table(LOG)?.retain_in(..=upto, |_, _| false)?;
                Ok(())
            }),
            done,
        ),
    };
    // The caller may have given up waiting; the write happened all the same.
    let _ = done.send(result);
}

fn transact(
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
