//! openraft's own storage conformance suite, run against baton's redb log store and state machine.

use baton::simulation::{open_in_memory, SimDisk, SimLogStore};
use baton::{open_database, LogStore, StateMachine, StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

/// Each test of the suite gets a fresh database in its own temp dir; the
/// dir is the guard that keeps it alive for the test.
struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let db = open_database(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        let state_machine = StateMachine::open(db.clone())?;
        let log_store = LogStore::new(db).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn redb_store_passes_openraft_conformance_suite() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("storage conformance failed: {e}");
    }
}

/// The simulation's disk (raft::sim_store) keeps the same contract with
/// openraft: each test gets a fresh simulated disk.
struct SimBuilder;

impl StoreBuilder<TypeConfig, SimLogStore, StateMachine, SimDisk> for SimBuilder {
    async fn build(&self) -> Result<(SimDisk, SimLogStore, StateMachine), StorageError> {
        let disk = SimDisk::new(1);
        let db = open_in_memory().map_err(|e| openraft::StorageIOError::write(&e))?;
        let state_machine = StateMachine::open(db)?;
        Ok((disk.clone(), disk.open(), state_machine))
    }
}

#[test]
fn simulated_disk_passes_openraft_conformance_suite() {
    if let Err(e) = Suite::test_all(SimBuilder) {
        panic!("storage conformance failed: {e}");
    }
}
