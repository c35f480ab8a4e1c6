//! The host agent's phase on disk (`agent.json`), written atomically to survive crashes.
//!
//! Temp file, fsync, rename, fsync of the directory: it survives the reboot the agent causes.
//! Beside it, `failed-update.json`: the update that did not take, so that the host does not
//! reboot for it again (an operator removes the file to let it try again).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use crate::rules::phases::{FailedUpdate, Phase};

/// The phase, in the state directory.
pub const PHASE_FILE: &str = "agent.json";
/// The update that did not take, in the state directory.
pub const FAILED_UPDATE_FILE: &str = "failed-update.json";

/// Why the phase could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PhaseFileError {
    #[error("cannot write agent state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read agent state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agent state {path} is corrupt ({source}); move it away to start from idle")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the record of an update that did not take, {path}, is corrupt ({source}); \
         not rebooting for any update until it is removed"
    )]
    CorruptFailedUpdate {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `agent.json` and `failed-update.json` in the state directory.
#[derive(Debug, Clone)]
pub struct PhaseFile {
    path: PathBuf,
    failed_update: PathBuf,
}

impl PhaseFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(PHASE_FILE),
            failed_update: state_dir.join(FAILED_UPDATE_FILE),
        }
    }

    /// The persisted phase; `Idle` when there is none yet.
    pub fn load(&self) -> Result<Phase, PhaseFileError> {
        match read_json(&self.path)? {
            Some(Ok(phase)) => Ok(phase),
            Some(Err(source)) => Err(PhaseFileError::Corrupt {
                path: self.path.clone(),
                source,
            }),
            None => Ok(Phase::Idle),
        }
    }

    /// Replaces the persisted phase. After this returns, a crash or power
    /// loss leaves either the old or the new phase on disk, never a mix.
    pub fn save(&self, phase: &Phase) -> Result<(), PhaseFileError> {
        write_atomically(&self.path, phase)
    }

    /// Where the update that did not take is kept (`failed-update.json`).
    pub fn failed_update_path(&self) -> &Path {
        &self.failed_update
    }

    /// The update that did not take, if one is recorded. Read afresh on
    /// every call, so that an operator's removal counts at once.
    pub fn failed_update(&self) -> Result<Option<FailedUpdate>, PhaseFileError> {
        match read_json(&self.failed_update)? {
            Some(Ok(record)) => Ok(Some(record)),
            Some(Err(source)) => Err(PhaseFileError::CorruptFailedUpdate {
                path: self.failed_update.clone(),
                source,
            }),
            None => Ok(None),
        }
    }

    /// Records the update that did not take (replacing an earlier record).
    pub fn save_failed_update(&self, record: &FailedUpdate) -> Result<(), PhaseFileError> {
        write_atomically(&self.failed_update, record)
    }

    /// Forgets the update that did not take; `true` when there was a record.
    pub fn clear_failed_update(&self) -> Result<bool, PhaseFileError> {
        match std::fs::remove_file(&self.failed_update) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(PhaseFileError::Remove {
                path: self.failed_update.clone(),
                source,
            }),
        }
    }
}

/// `path` parsed as JSON: `None` when it does not exist, `Some(Err)` when
/// it does not parse.
fn read_json<T: DeserializeOwned>(
    path: &Path,
) -> Result<Option<Result<T, serde_json::Error>>, PhaseFileError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PhaseFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `value` as JSON to `path`: temp file, fsync, rename, fsync of the
/// directory, so that a crash leaves the old or the new content.
fn write_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), PhaseFileError> {
    let write_err = |source| PhaseFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let temp = path.with_extension("json.tmp");
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| write_err(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&temp).map_err(write_err)?;
    file.write_all(&bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(write_err)?;
    // The rename itself must be durable too.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::phases::{PendingUpdate, RememberedLease};

    fn record(version: &str) -> FailedUpdate {
        FailedUpdate {
            update: PendingUpdate {
                source: "flatcar".into(),
                reason: format!("update_engine: Flatcar {version} downloaded"),
                new_version: Some(version.into()),
            },
            error: "the update did not take".into(),
            failed_at: "2025-01-01T00:00:00Z".into(),
            boot_id: "boot-b".into(),
        }
    }

    #[test]
    fn a_failed_update_is_kept_beside_the_phase_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let file = PhaseFile::new(dir.path());
        assert_eq!(file.failed_update().unwrap(), None);
        assert!(!file.clear_failed_update().unwrap(), "nothing to clear");
        file.save_failed_update(&record("4152.2.1")).unwrap();
        file.save(&Phase::Idle).unwrap();
        assert_eq!(file.failed_update().unwrap(), Some(record("4152.2.1")));
        assert_eq!(file.load().unwrap(), Phase::Idle, "two files, two things");
        // A newer failure replaces the older one.
        file.save_failed_update(&record("4152.2.2")).unwrap();
        assert_eq!(file.failed_update().unwrap(), Some(record("4152.2.2")));
        // An operator's `rm` counts at once (read afresh every time).
        std::fs::remove_file(dir.path().join(FAILED_UPDATE_FILE)).unwrap();
        assert_eq!(file.failed_update().unwrap(), None);
        file.save_failed_update(&record("4152.2.1")).unwrap();
        assert!(file.clear_failed_update().unwrap());
        assert_eq!(file.failed_update().unwrap(), None);
    }

    #[test]
    fn a_corrupt_failed_update_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = PhaseFile::new(dir.path());
        std::fs::write(file.failed_update_path(), b"{\"update\": 3}").unwrap();
        let err = file.failed_update().unwrap_err().to_string();
        assert!(err.contains(FAILED_UPDATE_FILE), "{err}");
        assert!(err.contains("until it is removed"), "{err}");
    }

    #[test]
    fn missing_file_means_idle_and_saved_phases_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = PhaseFile::new(dir.path());
        assert_eq!(file.load().unwrap(), Phase::Idle);
        let phase = Phase::Rebooting {
            update: PendingUpdate {
                source: "apt".into(),
                reason: "packages: libc6".into(),
                new_version: None,
            },
            lease: RememberedLease {
                group: "g".into(),
                holder: "h".into(),
                token: 3,
            },
            drain: None,
            boot_id: "abc".into(),
        };
        file.save(&phase).unwrap();
        assert_eq!(file.load().unwrap(), phase);
        assert!(!file.path.with_extension("json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = PhaseFile::new(dir.path());
        std::fs::write(&file.path, b"{not json").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("agent.json"), "{err}");
        assert!(err.contains("corrupt"), "{err}");
    }
}
