//! Update sources: whether an OS update waits for a reboot (update_engine, apt, sentinel).

pub mod apt;
pub mod flatcar;
pub mod sentinel;

use std::path::{Path, PathBuf};

use super::process::ProcessError;
use crate::config::{UpdateSettings, UpdateSourceKind};

pub use apt::automatic_reboot_warning;

/// An OS update that is installed and takes effect only after a reboot: `source`
/// (`"flatcar"`, `"apt"` or `"sentinel"`), `reason` in words (e.g. `update_engine: Flatcar
/// 4152.2.1 downloaded`, `packages: linux-image-6.1.0-28-amd64, libc6`) and `new_version`
/// when the updater tells. The type lives in `host_state` (the pure layer below, which
/// persists it across the reboot); it is re-exported here so that what a source reports
/// and what the state machine keeps are one type.
pub use crate::rules::phases::PendingUpdate;

/// Why an update source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The bus itself could not be reached.
    #[error("cannot connect to D-Bus ({address}): {source}")]
    DbusConnect {
        /// `system bus` or the configured `dbus_address`.
        address: String,
        /// What zbus said.
        source: zbus::Error,
    },
    /// A method call on the bus failed (service absent, refused, timed out, bus gone).
    #[error("D-Bus call {call} ({address}) failed: {source}")]
    DbusCall {
        /// `system bus` or the configured `dbus_address`.
        address: String,
        /// Interface and method, e.g. `com.coreos.update1.Manager.GetStatus`.
        call: &'static str,
        /// What zbus said.
        source: zbus::Error,
    },
    /// A file that the source reads could not be read (other than "it does not exist",
    /// which is an answer, not an error).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// A command (the sentinel command, unattended-upgrade) could not be
    /// started, failed or hung.
    #[error(transparent)]
    Command(#[from] ProcessError),
    /// `source = "auto"` on an OS that is neither Flatcar nor Debian/Ubuntu.
    #[error(
        "{}: ID={id:?}, ID_LIKE={id_like:?} is neither Flatcar nor Debian/Ubuntu, so [updates] source = \"auto\" \
         cannot pick an update source; set source = \"flatcar\", \"apt\" or \"sentinel\"",
        path.display()
    )]
    UnknownOs {
        /// The os-release file read.
        path: PathBuf,
        /// Its `ID` (empty when absent).
        id: String,
        /// Its `ID_LIKE` (empty when absent).
        id_like: String,
    },
    /// Settings that the config loader should have refused.
    #[error("invalid [updates] settings: {0}")]
    Settings(String),
    /// After the reboot, the updater still says a reboot is needed.
    #[error("{updater}: the update is still pending after the reboot: {detail}")]
    StillPending {
        /// `flatcar`, `apt` or `sentinel`.
        updater: &'static str,
        /// What is still pending, in words.
        detail: String,
    },
    /// After the reboot the OS runs another version than the one the update
    /// installed: Flatcar booted its old partition.
    #[error(
        "the update did not take: {} says VERSION_ID={running}, but the update was Flatcar {wanted}, \
         so the host booted its old partition (the new one failed to boot and was rolled back, or \
         was never made the boot partition); look at the previous boot's log (`journalctl -b -1`), \
         update_engine's log (`journalctl -u update-engine`) and the USR-A/USR-B priority, tries \
         and successful flags (`cgpt show` on the boot disk)",
        os_release.display()
    )]
    OldVersionBooted {
        /// The os-release file read.
        os_release: PathBuf,
        /// Its `VERSION_ID` after the reboot.
        running: String,
        /// The version update_engine had downloaded before the reboot.
        wanted: String,
    },
}

impl UpdateError {
    /// Whether asking again later may well succeed: the bus or update_engine is not
    /// (yet) there, or a command hung. Right after boot update_engine may still be
    /// starting, so a transient error from `verify_after_boot` is not a failed update;
    /// `StillPending` and `OldVersionBooted` are.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            UpdateError::DbusConnect { .. }
                | UpdateError::DbusCall { .. }
                | UpdateError::Command(ProcessError::Timeout { .. })
        )
    }
}

/// The update source of this host.
pub enum UpdateSource {
    /// Flatcar's update_engine over D-Bus.
    Flatcar(flatcar::Flatcar),
    /// unattended-upgrades' `reboot-required` file.
    Apt(apt::Apt),
    /// A file or command, as kured does it.
    Sentinel(sentinel::Sentinel),
}

impl UpdateSource {
    /// Picks the source (auto: /etc/os-release ID=flatcar -> flatcar; ID or ID_LIKE containing debian or ubuntu -> apt) and connects.
    pub async fn open(settings: &UpdateSettings) -> Result<UpdateSource, UpdateError> {
        let kind = match settings.source {
            UpdateSourceKind::Auto => detect_os(&settings.os_release).await?,
            other => other,
        };
        Ok(match kind {
            UpdateSourceKind::Flatcar => {
                UpdateSource::Flatcar(flatcar::Flatcar::open(settings).await?)
            }
            UpdateSourceKind::Apt => UpdateSource::Apt(apt::Apt::new(settings)?),
            UpdateSourceKind::Sentinel => {
                UpdateSource::Sentinel(sentinel::Sentinel::new(settings)?)
            }
            // detect_os never answers Auto; None means "no host agent here", and the
            // caller should not open a source at all.
            UpdateSourceKind::Auto | UpdateSourceKind::None => {
                return Err(UpdateError::Settings(format!(
                    "source = {kind:?} has no update source to open"
                )))
            }
        })
    }

    /// `"flatcar"`, `"apt"` or `"sentinel"`.
    pub fn name(&self) -> &'static str {
        match self {
            UpdateSource::Flatcar(_) => flatcar::NAME,
            UpdateSource::Apt(_) => apt::NAME,
            UpdateSource::Sentinel(_) => sentinel::NAME,
        }
    }

    /// What is pending now (GetStatus; the reboot-required file; the sentinel file or command).
    pub async fn pending(&mut self) -> Result<Option<PendingUpdate>, UpdateError> {
        match self {
            UpdateSource::Flatcar(s) => s.pending().await,
            UpdateSource::Apt(s) => s.pending().await,
            UpdateSource::Sentinel(s) => s.pending().await,
        }
    }

    /// Resolves when the answer of `pending` may have changed: the StatusUpdate signal
    /// (flatcar), or after poll_interval (all; flatcar too, as a fallback). Cancel-safe
    /// (used in `tokio::select!`): the poll deadline is kept across calls, so a select
    /// loop that wakes more often than poll_interval still sees the poll fire.
    pub async fn changed(&mut self) {
        match self {
            UpdateSource::Flatcar(s) => s.changed().await,
            UpdateSource::Apt(s) => s.changed().await,
            UpdateSource::Sentinel(s) => s.changed().await,
        }
    }

    /// Asks the updater to look for updates now: update_engine AttemptUpdate(); apt: run
    /// the unattended_upgrade command (waits for it, logs its output on failure); sentinel:
    /// nothing.
    pub async fn check_for_updates(&mut self) -> Result<(), UpdateError> {
        match self {
            UpdateSource::Flatcar(s) => s.check_for_updates().await,
            UpdateSource::Apt(s) => s.check_for_updates().await,
            UpdateSource::Sentinel(_) => Ok(()),
        }
    }

    /// After the reboot: is the update applied? `Err(UpdateError::StillPending{..})` when
    /// the updater still wants a reboot. Other errors mean "could not tell" (see
    /// [`UpdateError::is_transient`]): ask again rather than call the update failed. It
    /// makes one attempt and does not wait, so that the caller keeps feeding the watchdog.
    pub async fn verify_after_boot(&mut self, before: &PendingUpdate) -> Result<(), UpdateError> {
        match self {
            UpdateSource::Flatcar(s) => s.verify_after_boot(before).await,
            UpdateSource::Apt(s) => s.verify_after_boot(before).await,
            UpdateSource::Sentinel(s) => s.verify_after_boot(before).await,
        }
    }
}

/// `ID` and `ID_LIKE` of an os-release file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, e.g. `flatcar`, `ubuntu`.
    pub id: String,
    /// `ID_LIKE`, e.g. `debian`; space-separated.
    pub id_like: String,
    /// `VERSION_ID`, e.g. `4152.2.1` on Flatcar.
    pub version_id: String,
}

impl OsRelease {
    /// Parses os-release(5) text: `KEY=value` lines, values optionally quoted; other lines
    /// (comments, blanks, junk) are ignored as the format asks of readers.
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let line = line.trim();
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = unquote(value.trim());
            match key.trim() {
                "ID" => os.id = value,
                "ID_LIKE" => os.id_like = value,
                "VERSION_ID" => os.version_id = value,
                _ => {}
            }
        }
        os
    }

    /// Reads and parses an os-release file.
    pub async fn read(path: &Path) -> Result<OsRelease, UpdateError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| UpdateError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(OsRelease::parse(&text))
    }

    /// The update source `auto` picks for this OS, if any.
    pub fn update_source(&self) -> Option<UpdateSourceKind> {
        let id = self.id.to_ascii_lowercase();
        if id == "flatcar" {
            return Some(UpdateSourceKind::Flatcar);
        }
        let like = self.id_like.to_ascii_lowercase();
        let debian_like = std::iter::once(id.as_str())
            .chain(like.split_whitespace())
            .any(|word| word == "debian" || word == "ubuntu");
        debian_like.then_some(UpdateSourceKind::Apt)
    }
}

/// Strips one level of shell-style quotes and backslash escapes, as os-release values use.
fn unquote(value: &str) -> String {
    let inner = match value.as_bytes() {
        [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
        _ => value,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn detect_os(path: &Path) -> Result<UpdateSourceKind, UpdateError> {
    let os = OsRelease::read(path).await?;
    match os.update_source() {
        Some(kind) => {
            tracing::info!(
                "update source auto: {} says ID={:?} ID_LIKE={:?}, using {:?}",
                path.display(),
                os.id,
                os.id_like,
                kind
            );
            Ok(kind)
        }
        None => Err(UpdateError::UnknownOs {
            path: path.to_path_buf(),
            id: os.id,
            id_like: os.id_like,
        }),
    }
}
