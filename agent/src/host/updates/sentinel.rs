//! kured-style sentinel: a reboot is needed while a file exists, or while a command exits 0.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::{PendingUpdate, UpdateError};
use crate::config::UpdateSettings;
use crate::host::process;

/// The source's name in `PendingUpdate::source`, logs and status.
pub const NAME: &str = "sentinel";

/// The file kured watches by default, and ours when neither file nor command is set.
pub const DEFAULT_FILE: &str = "/var/run/reboot-required";

/// A sentinel command that hangs must not stall the agent; a check that needs longer
/// than this is not a check.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What says "reboot needed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Needed while this file exists.
    File(PathBuf),
    /// Needed while this command exits 0 (kured's `--reboot-sentinel-command`).
    Command(Vec<String>),
}

/// A sentinel file or command as an update source.
pub struct Sentinel {
    probe: Probe,
    poll_interval: Duration,
    /// When `changed` next resolves (kept across calls: cancel-safe).
    next_poll: Instant,
}

impl Sentinel {
    /// The file or the command from the settings (the default file when neither is set).
    pub fn new(settings: &UpdateSettings) -> Result<Sentinel, UpdateError> {
        let probe = match (&settings.sentinel_file, &settings.sentinel_command) {
            (Some(_), Some(_)) => {
                return Err(UpdateError::Settings(
                    "set updates.sentinel_file or updates.sentinel_command, not both".into(),
                ))
            }
            (_, Some(command)) if command.is_empty() => {
                return Err(UpdateError::Settings(
                    "updates.sentinel_command is an empty command".into(),
                ))
            }
            (_, Some(command)) => Probe::Command(command.clone()),
            (Some(file), None) => Probe::File(file.clone()),
            (None, None) => Probe::File(PathBuf::from(DEFAULT_FILE)),
        };
        let poll_interval = settings.poll_interval.max(Duration::from_millis(100));
        Ok(Sentinel {
            probe,
            poll_interval,
            next_poll: Instant::now() + poll_interval,
        })
    }

    /// What this sentinel looks at.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// `Some` while the file exists or the command exits 0. A command that exits non-zero
    /// means "no reboot" (as in kured); one that cannot start, is killed by a signal or
    /// hangs is an error, because it answered nothing.
    pub async fn pending(&mut self) -> Result<Option<PendingUpdate>, UpdateError> {
        let reason = match &self.probe {
            Probe::File(path) => {
                if !super::apt::exists(path).await? {
                    return Ok(None);
                }
                format!("sentinel file {} exists", path.display())
            }
            Probe::Command(argv) => {
                let finished = process::run(argv, &[], Some(COMMAND_TIMEOUT)).await?;
                match finished.output.status.code() {
                    Some(0) => format!("sentinel command `{}` exited 0", finished.command),
                    Some(_) => return Ok(None),
                    None => return Err(finished.failed().into()),
                }
            }
        };
        Ok(Some(PendingUpdate {
            source: NAME.to_string(),
            reason,
            new_version: None,
        }))
    }

    /// Resolves at the next poll.
    pub async fn changed(&mut self) {
        tokio::time::sleep_until(self.next_poll).await;
        self.next_poll = Instant::now() + self.poll_interval;
    }

    /// After the reboot the sentinel must no longer say "reboot needed".
    pub async fn verify_after_boot(&mut self, before: &PendingUpdate) -> Result<(), UpdateError> {
        match self.pending().await? {
            None => Ok(()),
            Some(now) => Err(UpdateError::StillPending {
                updater: NAME,
                detail: format!("{} (before the reboot: {})", now.reason, before.reason),
            }),
        }
    }
}
