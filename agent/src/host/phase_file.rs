//! The host agent's phase on disk (`agent.json`), written atomically to survive crashes.
//!
//! Temp file, fsync, rename, fsync of the directory: it survives the reboot the agent causes.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::rules::phases::Phase;

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
}

/// `agent.json` in the state directory.
#[derive(Debug, Clone)]
pub struct PhaseFile {
    path: PathBuf,
}

impl PhaseFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("agent.json"),
        }
    }

    /// The persisted phase; `Idle` when there is none yet.
    pub fn load(&self) -> Result<Phase, PhaseFileError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PhaseFileError::Corrupt {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Phase::Idle),
            Err(source) => Err(PhaseFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the persisted phase. After this returns, a crash or power
    /// loss leaves either the old or the new phase on disk, never a mix.
    pub fn save(&self, phase: &Phase) -> Result<(), PhaseFileError> {
        let write_err = |source| PhaseFileError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let temp = self.path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(phase).map_err(|e| write_err(std::io::Error::other(e)))?;
        let mut file = std::fs::File::create(&temp).map_err(write_err)?;
        file.write_all(&bytes).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(write_err)?;
        // The rename itself must be durable too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::phases::{PendingUpdate, RememberedLease};

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
