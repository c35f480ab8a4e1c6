//! The simulated raft log disk: durable only after a seeded fsync; a crash loses the rest.
//!
//! This is a MOCK of the disk, on purpose: no real disk can be crashed
//! deterministically between a write and its fsync, and the production
//! store (`log_store` + `log_writer`: redb and an OS thread) is neither
//! deterministic nor crashable inside turmoil. It keeps the contract the
//! production store keeps with openraft, with the two states explicit:
//!
//! - `append` makes entries readable at once (the leader replicates them
//!   while its own fsync runs) and queues them; a simulated fsync, after a
//!   seeded delay, makes them durable and only then calls openraft's
//!   `LogFlushed` callback;
//! - `save_vote`, `truncate` and `purge` return only once durable (queued
//!   behind earlier writes, as the production writer orders them);
//! - `save_committed` is a hint that becomes durable with the next fsync;
//! - [`SimDisk::crash`] discards everything written but not durable.
//!
//! The [`SimDisk`] outlives the voter process that uses it (the simulation
//! keeps it across crashes and restarts); each start opens a new
//! [`SimLogStore`] on it, whose fsync task belongs to that incarnation.
//! Compiled always (it is small and has no dependencies of its own) so that
//! `examples/simulate.rs` can use it without a cargo feature.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use tokio::sync::{mpsc, oneshot};

use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

use crate::locks::LockOrRecover;

/// What the disk holds (durable) or what readers see (written).
#[derive(Clone, Default)]
struct Image {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// One write, in the order it was made.
enum Op {
    Append(Vec<Entry>),
    Truncate(u64),
    Purge(LogId),
    Vote(Vote<NodeId>),
    Committed(Option<LogId>),
}

impl Image {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(entries) => {
                for entry in entries {
                    self.entries.insert(entry.log_id.index, entry.clone());
                }
            }
            Op::Truncate(from) => {
                self.entries.split_off(from);
            }
            Op::Purge(upto) => {
                self.entries = self.entries.split_off(&(upto.index + 1));
                self.last_purged = Some(*upto);
            }
            Op::Vote(vote) => self.vote = Some(*vote),
            Op::Committed(committed) => self.committed = *committed,
        }
    }
}

/// Who waits for an fsync.
enum Waiter {
    Flushed(LogFlushed<TypeConfig>),
    Done(oneshot::Sender<()>),
}

struct Disk {
    durable: Image,
    written: Image,
    /// Written, not yet durable: (sequence number, write).
    pending: VecDeque<(u64, Op)>,
    waiters: VecDeque<(u64, Waiter)>,
    next_seq: u64,
    /// Bumped by every crash: an fsync task of an earlier process stops.
    incarnation: u64,
    rng: u64,
    /// The fsync delay range (inclusive), in microseconds.
    sync_us: (u64, u64),
    /// Writes lost in crashes so far.
    lost: u64,
}

impl Disk {
    /// splitmix64: the disk's own seeded randomness (fsync delays).
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn sync_delay(&mut self) -> Duration {
        let (min, max) = self.sync_us;
        let span = max.saturating_sub(min) + 1;
        Duration::from_micros(min + self.next_random() % span)
    }

    fn write(&mut self, op: Op, waiter: Option<Waiter>) {
        self.written.apply(&op);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, op));
        if let Some(waiter) = waiter {
            self.waiters.push_back((seq, waiter));
        }
    }
}

/// A voter's simulated disk; survives the simulated crashes of the voter.
#[derive(Clone)]
pub struct SimDisk(Arc<Mutex<Disk>>);

impl SimDisk {
    /// An empty disk whose fsync delays come from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(Disk {
            durable: Image::default(),
            written: Image::default(),
            pending: VecDeque::new(),
            waiters: VecDeque::new(),
            next_seq: 0,
            incarnation: 0,
            rng: seed,
            sync_us: (0, 2_000),
            lost: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.0.lock_or_recover()
    }

    /// fsyncs take between `min` and `max` from now on (a slow disk: long).
    pub fn set_sync_delay(&self, min: Duration, max: Duration) {
        let mut disk = self.lock();
        let min = min.as_micros() as u64;
        disk.sync_us = (min, (max.as_micros() as u64).max(min));
    }

    /// The power goes: what was written but not fsynced is gone, and the
    /// fsync task of the process that wrote it stops. Returns how many
    /// writes were lost.
    pub fn crash(&self) -> u64 {
        let mut disk = self.lock();
        let lost = disk.pending.len() as u64;
        disk.pending.clear();
        disk.waiters.clear();
        disk.written = disk.durable.clone();
        disk.incarnation += 1;
        disk.lost += lost;
        lost
    }

    /// Writes lost in crashes so far.
    pub fn lost_writes(&self) -> u64 {
        self.lock().lost
    }

    /// True when nothing durable is on the disk: no vote, no log.
    pub fn is_pristine(&self) -> bool {
        let disk = self.lock();
        disk.durable.vote.is_none()
            && disk.durable.entries.is_empty()
            && disk.durable.last_purged.is_none()
    }

    /// The log store of a process starting on this disk (what a previous
    /// process left unsynced is gone: see [`SimDisk::crash`]). Starts its
    /// fsync task, so call it inside the process's runtime.
    pub fn open(&self) -> SimLogStore {
        self.crash();
        let incarnation = self.lock().incarnation;
        let (wake, requests) = mpsc::unbounded_channel();
        tokio::spawn(fsync_task(self.clone(), incarnation, requests));
        SimLogStore {
            disk: self.clone(),
            wake,
        }
    }
}

/// The process's fsync: waits for writes, "syncs" for a seeded time, then
/// makes everything written before the sync began durable and tells those
/// who wait, in order.
async fn fsync_task(disk: SimDisk, incarnation: u64, mut requests: mpsc::UnboundedReceiver<()>) {
    while requests.recv().await.is_some() {
        while requests.try_recv().is_ok() {}
        let (upto, delay) = {
            let mut d = disk.lock();
            if d.incarnation != incarnation {
                return;
            }
            (d.next_seq, d.sync_delay())
        };
        tokio::time::sleep(delay).await;
        let done = {
            let mut d = disk.lock();
            if d.incarnation != incarnation {
                return;
            }
            while d.pending.front().is_some_and(|(seq, _)| *seq < upto) {
                if let Some((_, op)) = d.pending.pop_front() {
                    d.durable.apply(&op);
                }
            }
            let mut done = Vec::new();
            while d.waiters.front().is_some_and(|(seq, _)| *seq < upto) {
                if let Some((_, waiter)) = d.waiters.pop_front() {
                    done.push(waiter);
                }
            }
            done
        };
        for waiter in done {
            match waiter {
                Waiter::Flushed(callback) => callback.log_io_completed(Ok(())),
                Waiter::Done(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }
}

/// openraft's log storage on a [`SimDisk`], for one process.
#[derive(Clone)]
pub struct SimLogStore {
    disk: SimDisk,
    wake: mpsc::UnboundedSender<()>,
}

fn gone() -> std::io::Error {
    std::io::Error::other("the simulated process crashed")
}

impl SimLogStore {
    /// Writes `op` and returns once it is durable.
    async fn write_durably(&self, op: Op) -> Result<(), std::io::Error> {
        let (tx, rx) = oneshot::channel();
        self.disk.lock().write(op, Some(Waiter::Done(tx)));
        self.wake.send(()).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

impl RaftLogReader<TypeConfig> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let disk = self.disk.lock();
        Ok(disk
            .written
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let disk = self.disk.lock();
        let last = disk.written.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: disk.written.last_purged,
            last_log_id: last.or(disk.written.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_durably(Op::Vote(*vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.disk.lock().written.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.disk.lock().write(Op::Committed(committed), None);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.disk.lock().written.committed)
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.disk
            .lock()
            .write(Op::Append(entries), Some(Waiter::Flushed(callback)));
        self.wake
            .send(())
            .map_err(|_| StorageIOError::write_logs(&gone()).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_durably(Op::Truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_durably(Op::Purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_loses_what_was_not_synced_and_keeps_what_was() {
        let disk = SimDisk::new(7);
        disk.set_sync_delay(Duration::from_millis(10), Duration::from_millis(10));
        let mut store = disk.open();
        store.save_vote(&Vote::new(1, 1)).await.unwrap();
        // Durable: the vote was saved before save_vote returned.
        disk.lock()
            .write(Op::Append(vec![entry(1), entry(2)]), None);
        disk.lock().write(Op::Append(vec![entry(3)]), None);
        // Readable at once, not durable yet.
        assert_eq!(store.try_get_log_entries(1..4).await.unwrap().len(), 3);
        assert_eq!(disk.crash(), 2);
        let mut store = disk.open();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
        assert!(store.try_get_log_entries(1..4).await.unwrap().is_empty());
        assert!(!disk.is_pristine());
        // Truncate and purge are durable when they return.
        store
            .write_durably(Op::Append(vec![entry(1), entry(2), entry(3)]))
            .await
            .unwrap();
        store
            .truncate(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .await
            .unwrap();
        store
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 1))
            .await
            .unwrap();
        assert_eq!(disk.crash(), 0);
        let mut store = disk.open();
        let left: Vec<u64> = store
            .try_get_log_entries(0..10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(left, vec![2]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(2));
    }

    #[test]
    fn fsync_delays_stay_in_their_range() {
        let disk = SimDisk::new(3);
        disk.set_sync_delay(Duration::from_millis(50), Duration::from_millis(500));
        let mut d = disk.lock();
        for _ in 0..1000 {
            let delay = d.sync_delay();
            assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(500));
        }
    }
}
