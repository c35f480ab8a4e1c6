//! `[updates]`: where this host learns that it needs a reboot, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use super::inputs::UpdatesInputs;
use super::validate::Validator;
use super::ConfigError;
use crate::rules::fleet::DEFAULT_REPORT_INTERVAL;
use crate::rules::limits::{MAX_REPORT_INTERVAL_MS, MIN_REPORT_INTERVAL_MS};

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_OS_RELEASE: &str = "/etc/os-release";
const DEFAULT_REBOOT_REQUIRED: &str = "/var/run/reboot-required";
/// Runs unattended-upgrades as the OS runs it, outside baton's sandbox (the
/// unit's file system is read-only, so dpkg could not work inside it).
const DEFAULT_UNATTENDED_UPGRADE: [&str; 3] = ["systemctl", "start", "apt-daily-upgrade.service"];
const DEFAULT_APT_CONF_DIR: &str = "/etc/apt/apt.conf.d";
const DEFAULT_SENTINEL_FILE: &str = "/var/run/reboot-required";

/// `[updates] source`: which updater tells this host that it needs a reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateSourceKind {
    /// `"auto"` (default): chosen from `os_release` (Flatcar or apt).
    Auto,
    /// `"flatcar"`: update_engine over D-Bus.
    Flatcar,
    /// `"apt"`: unattended-upgrades and the `reboot_required` file.
    Apt,
    /// `"sentinel"`: a sentinel file or command (kured-compatible).
    Sentinel,
    /// `"none"`: no host agent on this host (a voter that only serves the
    /// lease, or a host that must never be rebooted by baton).
    None,
}

/// `[updates]`: where update state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSettings {
    /// `source`: the updater to watch (default `auto`).
    pub source: UpdateSourceKind,
    /// `check_interval`: ask the updater to look for updates this often
    /// (update_engine AttemptUpdate / run unattended_upgrade); `None`
    /// (default) leaves that to the OS's own timers.
    pub check_interval: Option<Duration>,
    /// `poll_interval`: how often file and command sources are re-checked,
    /// and update_engine's status as a fallback to its signal (default 10s).
    pub poll_interval: Duration,
    /// `report_interval`: how often the host agent tells the voters what it
    /// does (the fleet view, `baton hosts`) when nothing changes; every
    /// phase change is reported at once (default 30s, 1s to 1h).
    pub report_interval: Duration,
    /// `dbus_address`: D-Bus address of the system bus (update_engine,
    /// logind); `None` (default) means the system bus.
    pub dbus_address: Option<String>,
    /// `os_release`: file read by `auto` (`ID`), and by the flatcar source
    /// after a reboot (`VERSION_ID` must be the new version) (default
    /// `/etc/os-release`).
    pub os_release: PathBuf,
    /// `reboot_required`: apt's reboot flag file; the reason is read from the
    /// same path plus `.pkgs` (default `/var/run/reboot-required`).
    pub reboot_required: PathBuf,
    /// `unattended_upgrade`: command run every `check_interval` by the apt
    /// source (default `["systemctl", "start", "apt-daily-upgrade.service"]`).
    pub unattended_upgrade: Vec<String>,
    /// `apt_conf_dir`: scanned at start to warn when
    /// `Unattended-Upgrade::Automatic-Reboot` is on (default `/etc/apt/apt.conf.d`).
    pub apt_conf_dir: PathBuf,
    /// `sentinel_file`: sentinel source: a reboot is needed while this file
    /// exists. Defaults to `/var/run/reboot-required` when `source = "sentinel"`
    /// and no `sentinel_command` is set.
    pub sentinel_file: Option<PathBuf>,
    /// `sentinel_command`: sentinel source: exit status 0 means a reboot is
    /// needed. Mutually exclusive with `sentinel_file`.
    pub sentinel_command: Option<Vec<String>>,
}

impl Validator<'_> {
    pub(super) fn updates(&self, inputs: UpdatesInputs) -> Result<UpdateSettings, ConfigError> {
        let source = match &inputs.source {
            None => UpdateSourceKind::Auto,
            Some(at) => match at.value.as_str() {
                "auto" => UpdateSourceKind::Auto,
                "flatcar" => UpdateSourceKind::Flatcar,
                "apt" => UpdateSourceKind::Apt,
                "sentinel" => UpdateSourceKind::Sentinel,
                "none" => UpdateSourceKind::None,
                other => {
                    return Err(self.error(
                        at,
                        "updates.source",
                        format!(
                            "unknown update source {other:?}; expected \"auto\", \"flatcar\", \
                             \"apt\", \"sentinel\" or \"none\""
                        ),
                    ))
                }
            },
        };
        if let (Some(file), Some(command)) = (&inputs.sentinel_file, &inputs.sentinel_command) {
            // Blame whichever was written last; it is the likelier addition.
            let (at_file, at_command) = (
                (file.fragment, file.span.start),
                (command.fragment, command.span.start),
            );
            return Err(if at_command > at_file {
                let message = format!(
                    "conflicts with updates.sentinel_file ({}); set only one of them",
                    self.location(file)
                );
                self.error(command, "updates.sentinel_command", message)
            } else {
                let message = format!(
                    "conflicts with updates.sentinel_command ({}); set only one of them",
                    self.location(command)
                );
                self.error(file, "updates.sentinel_file", message)
            });
        }

        let check_interval =
            self.optional_duration(inputs.check_interval.as_ref(), "updates.check_interval")?;
        let poll_interval = self.duration(
            inputs.poll_interval.as_ref(),
            "updates.poll_interval",
            DEFAULT_POLL_INTERVAL,
        )?;
        let report_interval = self.duration(
            inputs.report_interval.as_ref(),
            "updates.report_interval",
            DEFAULT_REPORT_INTERVAL,
        )?;
        let report_ms = u64::try_from(report_interval.as_millis()).unwrap_or(u64::MAX);
        if let (Some(at), false) = (
            &inputs.report_interval,
            (MIN_REPORT_INTERVAL_MS..=MAX_REPORT_INTERVAL_MS).contains(&report_ms),
        ) {
            return Err(self.error(
                at,
                "updates.report_interval",
                format!("{:?} is out of range: 1s to 1h", at.value),
            ));
        }
        let dbus_address = match inputs.dbus_address {
            // Every D-Bus address is `transport:key=value,...`.
            Some(at) if !at.value.contains(':') => {
                let message = format!(
                    "invalid D-Bus address {:?}, expected e.g. \
                     \"unix:path=/run/dbus/system_bus_socket\"",
                    at.value
                );
                return Err(self.error(&at, "updates.dbus_address", message));
            }
            Some(at) => Some(at.value),
            None => None,
        };
        let os_release =
            self.path_or(inputs.os_release, "updates.os_release", DEFAULT_OS_RELEASE)?;
        let reboot_required = self.path_or(
            inputs.reboot_required,
            "updates.reboot_required",
            DEFAULT_REBOOT_REQUIRED,
        )?;
        let unattended_upgrade = match inputs.unattended_upgrade {
            Some(at) => self.command_line(at, "updates.unattended_upgrade")?,
            None => DEFAULT_UNATTENDED_UPGRADE
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let apt_conf_dir = self.path_or(
            inputs.apt_conf_dir,
            "updates.apt_conf_dir",
            DEFAULT_APT_CONF_DIR,
        )?;
        let sentinel_command = inputs
            .sentinel_command
            .map(|at| self.command_line(at, "updates.sentinel_command"))
            .transpose()?;
        let sentinel_file = match inputs.sentinel_file {
            Some(at) => Some(self.path(at, "updates.sentinel_file")?),
            None if source == UpdateSourceKind::Sentinel && sentinel_command.is_none() => {
                Some(PathBuf::from(DEFAULT_SENTINEL_FILE))
            }
            None => None,
        };
        Ok(UpdateSettings {
            source,
            check_interval,
            poll_interval,
            report_interval,
            dbus_address,
            os_release,
            reboot_required,
            unattended_upgrade,
            apt_conf_dir,
            sentinel_file,
            sentinel_command,
        })
    }
}
