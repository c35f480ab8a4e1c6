//! The replicated state machine: applies lease commands, keeps snapshots, publishes changes.
//!
//! The applied state lives in memory; what makes it durable is the raft log
//! (fsynced on a majority before anything is applied) plus the snapshots
//! stored here. On start the state is the last snapshot, and openraft replays
//! the log after it.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::storage::{decode, encode, SNAPSHOT};
use super::types::{
    Applied, Entry, LogId, NodeId, StorageError, StoredMembership, TypeConfig, VoterNode,
};
use crate::locks::ReadWriteOrRecover;
use crate::rules::lease::{Command, Event, LeaseState, Outcome, RecentReleases};

/// How many published changes a slow watcher may fall behind before it is resynced.
const EVENT_BUFFER: usize = 4096;

/// Everything the state machine holds; also the snapshot format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub lease: LeaseState,
    /// Voters known to have stored log entries (`Command::RecordVoter`): one
    /// that comes back under its id without state lost its vote.
    #[serde(default)]
    pub stored_voters: BTreeSet<NodeId>,
    /// Each holder's last release (ten minutes), noted from the applied
    /// events: what refuses an acquire sent before it.
    #[serde(default)]
    pub recent_releases: RecentReleases,
}

/// A snapshot's state: the current shape, the shape before the recent
/// releases were added at its end, or the shape before issue 11 added the
/// settle time and per-host control at the end of `LeaseState` (postcard is
/// positional, so an older snapshot simply ends early; JSON ones fill the
/// new fields by default).
fn decode_state(data: &[u8]) -> Result<AppliedState, redb::Error> {
    let current = match decode::<AppliedState>(data) {
        Ok(state) => return Ok(state),
        Err(current) => current,
    };
    if let Ok(old) = decode::<AppliedStateBeforeReleases>(data) {
        return Ok(AppliedState {
            last_applied: old.last_applied,
            membership: old.membership,
            lease: old.lease,
            stored_voters: old.stored_voters,
            // Releases applied before the upgrade are not known: an acquire
            // the network held past one is let through, as before.
            recent_releases: RecentReleases::default(),
        });
    }
    match decode::<AppliedStateBefore11>(data) {
        Ok(old) => Ok(AppliedState {
            last_applied: old.last_applied,
            membership: old.membership,
            lease: LeaseState {
                groups: old.lease.groups,
                paused_all: old.lease.paused_all,
                paused_all_by: old.lease.paused_all_by,
                paused_all_at: old.lease.paused_all_at,
                last_token: old.lease.last_token,
                ..LeaseState::default()
            },
            // The leader records every voter again within a moment.
            stored_voters: BTreeSet::new(),
            recent_releases: RecentReleases::default(),
        }),
        Err(_) => Err(current),
    }
}

/// `AppliedState` as snapshots stored it before the recent releases.
#[derive(Debug, Serialize, Deserialize)]
struct AppliedStateBeforeReleases {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    lease: LeaseState,
    stored_voters: BTreeSet<NodeId>,
}

/// `AppliedState` as snapshots stored it before issue 11.
#[derive(Debug, Serialize, Deserialize)]
struct AppliedStateBefore11 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    lease: LeaseStateBefore11,
}

/// `LeaseState` as snapshots stored it before issue 11.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseStateBefore11 {
    groups: std::collections::BTreeMap<String, crate::rules::lease::Group>,
    paused_all: Option<String>,
    paused_all_by: Option<String>,
    paused_all_at: Option<u64>,
    last_token: u64,
}

/// What watchers receive: one lease change as applied at a log index, or
/// word that the whole state was replaced (snapshot installed) and must be re-read.
#[derive(Debug, Clone)]
pub enum Change {
    Applied { index: u64, event: Event },
    Resync { index: u64 },
}

/// Read access to the applied state, shared with the gRPC services.
#[derive(Clone)]
pub struct StateView {
    state: Arc<RwLock<AppliedState>>,
    changes: broadcast::Sender<Arc<Change>>,
}

impl StateView {
    /// The applied state, locked for reading. Keep the guard short-lived.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // A poisoned lock means a panic while applying; the data is still the
        // last fully applied state because apply mutates a copy first.
        self.state.read_or_recover()
    }

    /// Subscribes to changes applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }
}

/// The state machine openraft drives. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    view: StateView,
}

impl StateMachine {
    /// Loads the last snapshot from `db` (if any) as the starting state.
    pub fn open(db: Arc<Database>) -> Result<Self, StorageError> {
        let stored = read_snapshot(&db).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let state = match stored {
            Some((_, data)) => {
                decode_state(&data).map_err(|e| StorageIOError::read_snapshot(None, &e))?
            }
            None => AppliedState::default(),
        };
        let (changes, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Self {
            db,
            view: StateView {
                state: Arc::new(RwLock::new(state)),
                changes,
            },
        })
    }

    /// A read handle for the services.
    pub fn view(&self) -> StateView {
        self.view.clone()
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
        self.view.state.write_or_recover()
    }

    fn publish(&self, changes: Vec<Change>) {
        for change in changes {
            // No receivers is fine: nobody is watching.
            let _ = self.view.changes.send(Arc::new(change));
        }
    }

    /// Stores a snapshot unless a newer one is stored already; returns
    /// whether it was stored.
    ///
    /// A snapshot built here can finish after a newer one arrived from the
    /// leader and was installed (the builder runs beside the apply loop);
    /// openraft then purges the log up to the installed one. Overwriting it
    /// with the older build would leave a store that cannot start: the
    /// snapshot ends before the log begins (found by the simulation, seed
    /// 19137).
    fn store_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, VoterNode>,
        data: &[u8],
    ) -> Result<bool, redb::Error> {
        let encoded = encode(meta)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(SNAPSHOT)?;
            let stored = match table.get("meta")? {
                Some(bytes) => Some(decode::<SnapshotMeta<NodeId, VoterNode>>(bytes.value())?),
                None => None,
            };
            if stored.is_some_and(|stored| stored.last_log_id > meta.last_log_id) {
                return Ok(false);
            }
            table.insert("meta", encoded.as_slice())?;
            table.insert("data", data)?;
        }
        txn.commit()?;
        Ok(true)
    }
}

/// A stored snapshot: its meta and its data, both as stored bytes.
type StoredSnapshot = (Vec<u8>, Vec<u8>);

fn read_snapshot(db: &Database) -> Result<Option<StoredSnapshot>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let meta = table.get("meta")?.map(|v| v.value().to_vec());
    let data = table.get("data")?.map(|v| v.value().to_vec());
    Ok(meta.zip(data))
}

fn snapshot_err(e: &redb::Error) -> StorageError {
    StorageIOError::write_snapshot(None, e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.view.read().clone();
        let data = encode(&state).map_err(|e| snapshot_err(&e))?;
        let snapshot_id = match state.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id.term, log_id.leader_id.node_id, log_id.index
            ),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let this = self.clone();
        let (meta, data) =
            off_the_runtime(move || this.store_snapshot(&meta, &data).map(|_| (meta, data)))
                .await
                .map_err(|e| snapshot_err(&redb::Error::Io(std::io::Error::other(e))))?
                .map_err(|e| snapshot_err(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Runs blocking disk work (a snapshot written or read whole) on tokio's
/// blocking pool, so the daemon's workers keep serving meanwhile. On a
/// current-thread runtime (the deterministic simulation, tests) it runs
/// here instead: a second OS thread would finish at a moment the simulated
/// clock cannot repeat, and such a runtime has no other worker to keep free.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => Ok(work()),
        _ => tokio::task::spawn_blocking(work).await,
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.view.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut results = Vec::new();
        let mut published = Vec::new();
        {
            let mut state = self.write_state();
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                let applied = match entry.payload {
                    EntryPayload::Blank => Ok(Outcome::Done {
                        message: "leader elected".to_string(),
                    }),
                    EntryPayload::Normal(Command::RecordVoter { voter, .. }) => {
                        state.stored_voters.insert(voter);
                        Ok(Outcome::Done {
                            message: format!("voter {voter} has stored entries"),
                        })
                    }
                    EntryPayload::Normal(ref command) => {
                        match state.lease.apply(entry.log_id.index, command) {
                            Ok((outcome, events)) => {
                                state.recent_releases.note(&events, command.now());
                                published.extend(events.into_iter().map(|event| Change::Applied {
                                    index: entry.log_id.index,
                                    event,
                                }));
                                Ok(outcome)
                            }
                            Err(rejected) => Err(rejected),
                        }
                    }
                    EntryPayload::Membership(ref membership) => {
                        state.membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        Ok(Outcome::Done {
                            message: "voters changed".to_string(),
                        })
                    }
                };
                results.push(applied);
            }
        }
        self.publish(published);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, VoterNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut incoming: AppliedState = decode_state(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // The meta is authoritative for what the snapshot covers.
        incoming.last_applied = meta.last_log_id;
        incoming.membership = meta.last_membership.clone();
        let this = self.clone();
        let meta_owned = meta.clone();
        let stored = data.clone();
        // openraft installs only snapshots newer than its own, so a newer
        // one stored here is not expected; if there is one, it stays (a
        // restart then starts from it and replays the log after it).
        off_the_runtime(move || this.store_snapshot(&meta_owned, &stored))
            .await
            .map_err(|e| snapshot_err(&redb::Error::Io(std::io::Error::other(e))))?
            .map_err(|e| snapshot_err(&e))?;
        let previous = std::mem::replace(&mut *self.write_state(), incoming);
        drop(previous);
        // Watchers cannot replay a snapshot as events: a resync marker tells
        // them to re-read the whole state.
        let _ = self.view.changes.send(Arc::new(Change::Resync {
            index: meta.last_log_id.map(|l| l.index).unwrap_or(0),
        }));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let db = self.db.clone();
        let stored = off_the_runtime(move || read_snapshot(&db))
            .await
            .map_err(|e| {
                StorageIOError::read_snapshot(None, &redb::Error::Io(std::io::Error::other(e)))
            })?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        match stored {
            Some((meta, data)) => {
                let meta: SnapshotMeta<NodeId, VoterNode> =
                    decode(&meta).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data)),
                }))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::storage::open_in_memory;
    use openraft::{CommittedLeaderId, Membership};

    fn meta_at(index: u64) -> SnapshotMeta<NodeId, VoterNode> {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), index)),
            last_membership: StoredMembership::new(None, Membership::default()),
            snapshot_id: format!("2-1-{index}"),
        }
    }

    #[tokio::test]
    async fn a_snapshot_built_before_an_install_does_not_overwrite_it() {
        // The interleaving of seed 19137: the builder read the state at
        // 284, a snapshot up to 290 was installed (and openraft purged the
        // log up to it), then the build stored its older state.
        let db = open_in_memory().expect("in-memory redb");
        let mut sm = StateMachine::open(db.clone()).expect("open");
        sm.write_state().last_applied = meta_at(284).last_log_id;
        let built = encode(&*sm.view.read()).expect("encode");

        let mut installed = AppliedState {
            last_applied: meta_at(290).last_log_id,
            ..AppliedState::default()
        };
        installed.lease.last_token = 7;
        let bytes = encode(&installed).expect("encode");
        sm.install_snapshot(&meta_at(290), Box::new(Cursor::new(bytes)))
            .await
            .expect("install");

        assert!(!sm.store_snapshot(&meta_at(284), &built).expect("store"));
        let current = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(current.meta.last_log_id, meta_at(290).last_log_id);
        // What a restart loads.
        let restarted = StateMachine::open(db).expect("reopen");
        assert_eq!(restarted.view.read().last_applied, meta_at(290).last_log_id);
        assert_eq!(restarted.view.read().lease.last_token, 7);
        // A newer build is stored.
        assert!(sm.store_snapshot(&meta_at(300), &built).expect("store"));
    }

    #[test]
    fn snapshots_from_before_the_settle_time_still_load() {
        let mut lease = LeaseState::default();
        let acquire = crate::rules::lease::Command::Acquire {
            group: "workers".into(),
            holder: "h1".into(),
            machine_id: "m1".into(),
            now: 5,
            default_max_holders: 1,
        };
        lease.apply(3, &acquire).expect("apply");
        let old = AppliedStateBefore11 {
            last_applied: None,
            membership: StoredMembership::default(),
            lease: LeaseStateBefore11 {
                groups: lease.groups.clone(),
                paused_all: Some("freeze".into()),
                paused_all_by: Some("ops".into()),
                paused_all_at: Some(4),
                last_token: lease.last_token,
            },
        };
        let bytes = encode(&old).expect("encode");
        let state = decode_state(&bytes).expect("old snapshot loads");
        assert_eq!(state.lease.groups, lease.groups);
        assert_eq!(state.lease.paused_all.as_deref(), Some("freeze"));
        assert_eq!(state.lease.last_token, 3);
        assert_eq!(state.lease.settle_ms, 0);

        let mut current = state.clone();
        current.lease.settle_ms = 2_000;
        current
            .lease
            .settling
            .insert("workers".into(), vec![10, 20]);
        current.lease.held.insert(
            "h2".into(),
            crate::rules::lease::HostHold {
                reason: "disk".into(),
                by: "ops".into(),
                at: 7,
            },
        );
        current.lease.reboot_now.insert(
            "h3".into(),
            crate::rules::lease::RebootRequest {
                by: "ops".into(),
                at: 8,
            },
        );
        let bytes = encode(&current).expect("encode");
        assert_eq!(decode_state(&bytes).expect("current loads"), current);
        assert!(decode_state(&[1, 0xff, 0xff]).is_err());
    }

    #[test]
    fn releases_are_remembered_in_the_snapshot_and_older_snapshots_still_load() {
        let mut state = AppliedState::default();
        let acquire = Command::Acquire {
            group: "workers".into(),
            holder: "h1".into(),
            machine_id: "m1".into(),
            now: 5,
            default_max_holders: 1,
        };
        let release = Command::Release {
            group: "workers".into(),
            holder: "h1".into(),
            token: Some(3),
            now: 9,
        };
        for (index, command) in [(3, &acquire), (4, &release)] {
            let (_, events) = state.lease.apply(index, command).expect("apply");
            state.recent_releases.note(&events, command.now());
        }
        let key = crate::rules::lease::WaiterRef::new("workers", "h1");
        assert_eq!(state.recent_releases.released_since(&key, 0, 10), Some(3));
        let bytes = encode(&state).expect("encode");
        let loaded = decode_state(&bytes).expect("current loads");
        assert_eq!(loaded, state);
        assert_eq!(loaded.recent_releases.released_since(&key, 0, 10), Some(3));

        // A snapshot stored before the releases were kept: the same state,
        // with none remembered.
        let old = AppliedStateBeforeReleases {
            last_applied: None,
            membership: StoredMembership::default(),
            lease: state.lease.clone(),
            stored_voters: BTreeSet::from([1, 2]),
        };
        let loaded = decode_state(&encode(&old).expect("encode")).expect("older loads");
        assert_eq!(loaded.lease, state.lease);
        assert_eq!(loaded.stored_voters, BTreeSet::from([1, 2]));
        assert!(loaded.recent_releases.is_empty());
    }
}
