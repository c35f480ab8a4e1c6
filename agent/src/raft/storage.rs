//! The raft database: one redb file, every table baton keeps in it, and how records are encoded.
//!
//! `log_store` (log, vote, markers) and `state_machine` (snapshots) both
//! use these tables and this encoding (`codec`); neither knows the other.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec;

/// Log entries by index, each an openraft `Entry` (encoded by `codec`).
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small raft markers by name (`vote`, `committed`, `last_purged`).
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// The markers in [`META`].
pub(super) const KEY_VOTE: &str = "vote";
pub(super) const KEY_COMMITTED: &str = "committed";
pub(super) const KEY_LAST_PURGED: &str = "last_purged";

/// redb's page cache size.
const REDB_CACHE_BYTES: usize = 4 << 20;
/// The current snapshot: `meta` (`SnapshotMeta`) and `data` (`AppliedState`).
pub(super) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

/// Why the raft database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open raft database {path}: {source}")]
    Database {
        path: std::path::PathBuf,
        source: Box<redb::Error>,
    },
}

/// Opens (or creates) the raft database file `raft.redb` in `state_dir`.
pub fn open_database(state_dir: &Path) -> Result<Arc<Database>, OpenError> {
    std::fs::create_dir_all(state_dir).map_err(|source| OpenError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let path = state_dir.join("raft.redb");
    // The lease state is tiny and the log is read mostly at its tail: a small
    // page cache keeps a voter's memory small (redb's default is 1 GiB).
    let db = Database::builder()
        .set_cache_size(REDB_CACHE_BYTES)
        .create(&path)
        .map_err(|e| OpenError::Database {
            path: path.clone(),
            source: Box::new(e.into()),
        })?;
    create_tables(&db).map_err(|e| OpenError::Database {
        path,
        source: Box::new(e),
    })?;
    Ok(Arc::new(db))
}

/// A raft database in memory, nothing on disk: for the deterministic
/// simulation (`examples/simulate.rs`), whose voters keep it across their
/// simulated crashes for the state machine's snapshots (which production
/// commits durably, so a crash keeps them too).
pub fn open_in_memory() -> Result<Arc<Database>, redb::Error> {
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(redb::Error::from)?;
    create_tables(&db)?;
    Ok(Arc::new(db))
}

/// Creates the tables up front so that readers never see "table missing".
fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(META)?;
    txn.open_table(SNAPSHOT)?;
    txn.commit()?;
    Ok(())
}

/// `value` as a stored record (see `codec`), with redb's error type.
pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, redb::Error> {
    codec::encode(value).map_err(|e| redb::Error::Io(std::io::Error::other(e)))
}

/// A stored record (see `codec`), with redb's error type.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, redb::Error> {
    codec::decode(bytes).map_err(|e| {
        redb::Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("corrupt raft record: {e}"),
        ))
    })
}
