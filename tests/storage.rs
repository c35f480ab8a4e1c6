//! openraft's own storage conformance suite, run against baton's redb log store and state machine.

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
