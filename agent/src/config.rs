//! Configuration: TOML fragments (vendor drop-ins, main file, local drop-ins) merged and validated into Settings.
//!
//! Loading happens in three stages, in the manner of Zincati:
//!
//! 1. **Fragments**: every file is deserialized on its own into `Fragment*`
//!    structs whose fields are all optional and spanned, with unknown keys
//!    rejected. Syntax, unknown-key and wrong-type errors therefore point at
//!    the file that contains them.
//! 2. **Inputs**: fragments are overlaid in merge order, key by key (tables
//!    merge, scalars and arrays replace). Arrays of tables such as
//!    `[[reboot.window]]` are arrays too: a later fragment's entries replace
//!    the earlier array as a whole. Each merged value remembers which
//!    fragment and byte span it came from.
//! 3. **Settings**: defaults are filled in and the merged inputs are
//!    validated; every error names the file, the dotted key and the line of
//!    the value that was finally in force.
//!
//! This module is a leaf: it depends on nothing else in the crate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::civil::{Time, Weekday};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Main configuration file read when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/baton/baton.toml";

/// Directory of vendor (distribution-shipped) drop-ins, read before everything else.
pub const DEFAULT_VENDOR_DIR: &str = "/usr/lib/baton/baton.d";

/// Name of the local drop-in directory, next to the main file.
const DROP_IN_DIR_NAME: &str = "baton.d";

/// Where the kernel exposes this host's name; read for the `node.name` default.
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

const DEFAULT_STATE_DIR: &str = "/var/lib/baton";
const DEFAULT_GROUP: &str = "default";
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(300);
const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_MAX_HOLDERS: u32 = 1;
const DEFAULT_WAITER_TTL: Duration = Duration::from_secs(30);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_OS_RELEASE: &str = "/etc/os-release";
const DEFAULT_REBOOT_REQUIRED: &str = "/var/run/reboot-required";
/// Runs unattended-upgrades as the OS runs it, outside baton's sandbox (the
/// unit's file system is read-only, so dpkg could not work inside it).
const DEFAULT_UNATTENDED_UPGRADE: [&str; 3] = ["systemctl", "start", "apt-daily-upgrade.service"];
const DEFAULT_APT_CONF_DIR: &str = "/etc/apt/apt.conf.d";
const DEFAULT_SENTINEL_FILE: &str = "/var/run/reboot-required";
/// `reboot.time_zone` value meaning the host's zone, resolved at use time.
const LOCALTIME: &str = "localtime";
const DEFAULT_BLOCKER_RETRY: Duration = Duration::from_secs(60);
const DEFAULT_BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const DEFAULT_EVICTION_RETRY: Duration = Duration::from_secs(5);

/// Longest accepted `[[reboot.window]]` length: a window repeats at most weekly.
const MAX_WINDOW_LENGTH: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Accepted day names (matched case-insensitively): short and full form.
const WEEKDAYS: [(Weekday, &str, &str); 7] = [
    (Weekday::Monday, "mon", "monday"),
    (Weekday::Tuesday, "tue", "tuesday"),
    (Weekday::Wednesday, "wed", "wednesday"),
    (Weekday::Thursday, "thu", "thursday"),
    (Weekday::Friday, "fri", "friday"),
    (Weekday::Saturday, "sat", "saturday"),
    (Weekday::Sunday, "sun", "sunday"),
];

/// Longest accepted holder name (node and voter names), as for a DNS name.
const MAX_HOLDER_NAME_CHARS: usize = 253;
/// Longest accepted lease group name.
const MAX_GROUP_CHARS: usize = 128;

// ---------------------------------------------------------------------------
// Settings (validated output)
// ---------------------------------------------------------------------------

/// Validated, fully defaulted runtime configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Identity and local storage of this host.
    pub node: NodeSettings,
    /// Raft cluster membership and transport timings.
    pub cluster: ClusterSettings,
    /// Lease defaults.
    pub lease: LeaseSettings,
    /// Where update state comes from.
    pub updates: UpdateSettings,
    /// How and when this host reboots.
    pub reboot: RebootSettings,
    /// Commands run around a reboot.
    pub hooks: HookSettings,
    /// Node draining; present when the config has a `[kubernetes]` table.
    pub kubernetes: Option<KubernetesSettings>,
    /// Fragments that were read, in merge order.
    pub sources: Vec<PathBuf>,
}

/// `[node]`: identity and local storage of this host.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// Holder name of this host; defaults to the kernel host name.
    pub name: String,
    /// Absolute directory for persistent state (default `/var/lib/baton`).
    pub state_dir: PathBuf,
    /// Lease group this host's agent joins (default `default`).
    pub group: String,
}

/// `[cluster]`: raft membership and transport timings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// Address the gRPC server binds to; required when `node.name` is among
    /// the voters, optional on a client host.
    pub listen: Option<SocketAddr>,
    /// Raft voters; empty means this node only runs as a client.
    pub voters: Vec<VoterSettings>,
    /// Raft heartbeat interval (default 100ms).
    pub heartbeat_interval: Duration,
    /// Minimum raft election timeout; the maximum is 1.5 times this (default 300ms).
    pub election_timeout: Duration,
    /// Log entries between raft snapshots (default 1000).
    pub snapshot_every: u64,
    /// gRPC connect timeout (default 1s).
    pub connect_timeout: Duration,
    /// gRPC request timeout (default 3s).
    pub request_timeout: Duration,
}

/// One `cluster.voters` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterSettings {
    /// Raft node id (>= 1, unique).
    pub id: u64,
    /// Holder name of the voter's host (unique); matched against `node.name`.
    pub name: String,
    /// `host:port` the voter is reachable at (unique); host is an IP or DNS name.
    pub address: String,
}

/// `[lease]`: lease defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseSettings {
    /// Holders a lease admits unless configured otherwise (>= 1, default 1).
    pub default_max_holders: u32,
    /// How long a waiter stays queued without renewing (default 30s).
    pub waiter_ttl: Duration,
    /// Longest a holder may keep a lease; `None` means no limit.
    pub hold_timeout: Option<Duration>,
}

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
    /// `dbus_address`: D-Bus address of the system bus (update_engine,
    /// logind); `None` (default) means the system bus.
    pub dbus_address: Option<String>,
    /// `os_release`: file read by `auto` (default `/etc/os-release`).
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

/// `[reboot] method`: how the reboot itself is performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebootMethod {
    /// `method = "logind"` (default): ask systemd-logind over D-Bus.
    Logind,
    /// `method = "command"` with `command = [...]`: run this command.
    Command(Vec<String>),
}

/// `[reboot]`: how and when this host reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootSettings {
    /// `method` and `command`.
    pub method: RebootMethod,
    /// `time_zone` of the windows: `"localtime"` (default, resolved at use
    /// time) or an IANA name known to the system's time zone database.
    pub time_zone: String,
    /// `[[reboot.window]]`; empty means any time.
    pub windows: Vec<WindowSettings>,
    /// `[[reboot.blocker]]`: all must exit 0 before queueing for the lease.
    pub blockers: Vec<CommandSettings>,
    /// `blocker_retry`: wait before re-running failed blockers (default 1m).
    pub blocker_retry: Duration,
    /// `boot_id_path`: where the current boot id is read
    /// (default `/proc/sys/kernel/random/boot_id`).
    pub boot_id_path: PathBuf,
}

/// One `[[reboot.window]]`: a weekly period in which reboots may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSettings {
    /// `days` on which the window opens, Monday first, without duplicates
    /// (default every day). Written `Mon`..`Sun` or in full, any case.
    pub days: Vec<Weekday>,
    /// `start`: time of day the window opens (`"HH:MM"`, required).
    pub start: Time,
    /// `length`: how long it stays open (required, > 0, at most 7 days).
    pub length: Duration,
}

/// A command to run: a blocker or a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSettings {
    /// `command`: program and arguments (required, non-empty).
    pub command: Vec<String>,
    /// `timeout`: kill the command after this long (default 5m).
    pub timeout: Duration,
    /// `force`: carry on with the reboot even if the command fails (default
    /// false; only accepted in `hooks.before_reboot`).
    pub force: bool,
}

/// `[[hooks.before_reboot]]` and `[[hooks.after_reboot]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    /// Run in order before rebooting.
    pub before_reboot: Vec<CommandSettings>,
    /// Run in order after the reboot.
    pub after_reboot: Vec<CommandSettings>,
}

/// `[kubernetes]`: drain this node before rebooting, uncordon after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// `kubeconfig` path; `None` (default) means the KUBECONFIG environment
    /// variable or the in-cluster config.
    pub kubeconfig: Option<PathBuf>,
    /// `node_name` of this host in Kubernetes (default `node.name`).
    pub node_name: String,
    /// `drain_timeout`: give up evicting after this, then abort, uncordon and
    /// release the lease (default 10m).
    pub drain_timeout: Duration,
    /// `grace_period` given to evicted pods; `None` (default) means each pod's own.
    pub grace_period: Option<Duration>,
    /// `pod_selector`: label selector; only matching pods are evicted.
    /// `None` (default) means all pods.
    pub pod_selector: Option<String>,
    /// `ready_timeout`: how long to wait after boot for the node to be Ready
    /// (default 10m).
    pub ready_timeout: Duration,
    /// `eviction_retry`: back-off after an eviction is refused with 429
    /// by a PodDisruptionBudget (default 5s).
    pub eviction_retry: Duration,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or drop-in directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File or directory that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// A key has an unknown name, a wrong type or an invalid value.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// Fragment holding the offending key.
        file: PathBuf,
        /// 1-based line of the key or value.
        line: usize,
        /// Dotted key path, e.g. `cluster.voters[1].address`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A fragment is not valid TOML.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// Fragment that failed to parse.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// Parser message.
        message: String,
    },
    /// A required key is set by no fragment.
    #[error("{key}: required, but no configuration fragment sets it")]
    Missing {
        /// Dotted key path, e.g. `cluster.listen`.
        key: String,
    },
    /// A value derived from the environment rather than a fragment is invalid.
    #[error("{key}: default value {value:?} is invalid ({message}); set {key} explicitly")]
    InvalidDefault {
        /// Dotted key path, e.g. `node.name`.
        key: String,
        /// The derived value.
        value: String,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// Loads PATH plus drop-ins (vendor_dir for vendor defaults).
    ///
    /// Merge order: `vendor_dir/*.toml` (by name, minus those masked by a
    /// same-named local drop-in), then `path`, then `<dir of path>/baton.d/*.toml`
    /// (by name). A missing `path` is an error only when there is no drop-in at
    /// all; missing drop-in directories are fine.
    pub fn load(path: &Path, vendor_dir: &Path) -> Result<Settings, ConfigError> {
        let local_dir = path
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(DROP_IN_DIR_NAME);
        let local = list_drop_ins(&local_dir)?;
        // systemd convention: a local drop-in named like a vendor one replaces
        // it outright, so an admin can neutralise a vendor default with an
        // empty file (or a symlink to /dev/null).
        let vendor: Vec<PathBuf> = list_drop_ins(vendor_dir)?
            .into_iter()
            .filter(|v| !local.iter().any(|l| l.file_name() == v.file_name()))
            .collect();
        let have_drop_ins = !local.is_empty() || !vendor.is_empty();

        let mut fragments = Vec::with_capacity(vendor.len() + 1 + local.len());
        for file in vendor {
            fragments.push(read_fragment(file)?);
        }
        match std::fs::read_to_string(path) {
            Ok(text) => fragments.push((path.to_path_buf(), text)),
            // Packages may configure a host entirely through drop-ins.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && have_drop_ins => {}
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        for file in local {
            fragments.push(read_fragment(file)?);
        }
        Settings::from_fragments(&fragments)
    }

    /// Same, from in-memory fragments (file name, text) in merge order: used by tests.
    pub fn from_fragments(fragments: &[(PathBuf, String)]) -> Result<Settings, ConfigError> {
        let mut inputs = Inputs::default();
        for (index, (file, text)) in fragments.iter().enumerate() {
            let fragment = parse_fragment(file, text)?;
            inputs.overlay(fragment, index);
        }
        let validator = Validator { fragments };
        let mut settings = validator.settings(inputs, read_host_name)?;
        settings.sources = fragments.iter().map(|(file, _)| file.clone()).collect();
        Ok(settings)
    }

    /// This node's voter entry, if its name is among the voters.
    pub fn this_voter(&self) -> Option<&VoterSettings> {
        self.cluster
            .voters
            .iter()
            .find(|voter| voter.name == self.node.name)
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// `*.toml` entries of a drop-in directory, sorted by file name.
fn list_drop_ins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Hidden files are editor swap files and package-manager leftovers.
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        let path = entry.path();
        // Follow symlinks; anything but a directory is read, so a symlink to
        // /dev/null (systemd-style masking) counts as an empty fragment.
        // A dangling symlink is kept so that reading it reports the problem.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        files.push(path);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn read_fragment(path: PathBuf) -> Result<(PathBuf, String), ConfigError> {
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// The raw kernel host name, or `None` when it cannot be read.
fn read_host_name() -> Option<String> {
    std::fs::read_to_string(HOSTNAME_PATH).ok()
}

/// Default `node.name` from a (possibly missing) raw host name.
fn host_name_or_localhost(raw: Option<String>) -> String {
    raw.map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

// ---------------------------------------------------------------------------
// Stage 1: fragments (one file each)
// ---------------------------------------------------------------------------

/// One configuration file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct Fragment {
    node: Option<FragmentNode>,
    /// Spanned so that a missing `cluster.listen` can point at the table.
    cluster: Option<Spanned<FragmentCluster>>,
    lease: Option<FragmentLease>,
    updates: Option<FragmentUpdates>,
    reboot: Option<FragmentReboot>,
    hooks: Option<FragmentHooks>,
    kubernetes: Option<FragmentKubernetes>,
}

/// A string array as written (command line, day list), each element spanned.
type SpannedStrings = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct FragmentNode {
    name: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct FragmentCluster {
    listen: Option<Spanned<String>>,
    voters: Option<Spanned<Vec<Spanned<FragmentVoter>>>>,
    heartbeat_interval: Option<Spanned<String>>,
    election_timeout: Option<Spanned<String>>,
    snapshot_every: Option<Spanned<u64>>,
    connect_timeout: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
}

/// Voter fields are optional here so that a missing one is reported with
/// the entry's location and full key path rather than serde's bare message.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a voter table such as { id = 1, name = \"cp-1\", address = \"10.0.0.1:7421\" }"
)]
struct FragmentVoter {
    id: Option<Spanned<u64>>,
    name: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct FragmentLease {
    default_max_holders: Option<Spanned<u32>>,
    waiter_ttl: Option<Spanned<String>>,
    hold_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct FragmentUpdates {
    source: Option<Spanned<String>>,
    check_interval: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    dbus_address: Option<Spanned<String>>,
    os_release: Option<Spanned<String>>,
    reboot_required: Option<Spanned<String>>,
    unattended_upgrade: Option<SpannedStrings>,
    apt_conf_dir: Option<Spanned<String>>,
    sentinel_file: Option<Spanned<String>>,
    sentinel_command: Option<SpannedStrings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct FragmentReboot {
    method: Option<Spanned<String>>,
    command: Option<SpannedStrings>,
    time_zone: Option<Spanned<String>>,
    window: Option<Spanned<Vec<Spanned<FragmentWindow>>>>,
    blocker: Option<Spanned<Vec<Spanned<FragmentCommand>>>>,
    blocker_retry: Option<Spanned<String>>,
    boot_id_path: Option<Spanned<String>>,
}

/// Like voters, required fields are optional here for better errors.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a window table such as { days = [\"Sat\"], start = \"02:00\", length = \"3h\" }"
)]
struct FragmentWindow {
    days: Option<SpannedStrings>,
    start: Option<Spanned<String>>,
    length: Option<Spanned<String>>,
}

/// A blocker or hook entry.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a command table such as { command = [\"/usr/local/bin/check\"], timeout = \"30s\" }"
)]
struct FragmentCommand {
    command: Option<SpannedStrings>,
    timeout: Option<Spanned<String>>,
    force: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct FragmentHooks {
    before_reboot: Option<Spanned<Vec<Spanned<FragmentCommand>>>>,
    after_reboot: Option<Spanned<Vec<Spanned<FragmentCommand>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct FragmentKubernetes {
    kubeconfig: Option<Spanned<String>>,
    node_name: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
    grace_period: Option<Spanned<String>>,
    pod_selector: Option<Spanned<String>>,
    ready_timeout: Option<Spanned<String>>,
    eviction_retry: Option<Spanned<String>>,
}

/// Deserializes one fragment, turning parser and serde errors into
/// file/line/key errors.
fn parse_fragment(file: &Path, text: &str) -> Result<Fragment, ConfigError> {
    let error = match toml::from_str::<Fragment>(text) {
        Ok(fragment) => return Ok(fragment),
        Err(error) => error,
    };
    let line = error.span().map_or(1, |span| line_of(text, span.start));
    // Serde errors carry a span but no path; re-parse into the spanned tree
    // (cheap: configs are small, and only on the error path) to name the key.
    // If even that fails, the document itself is malformed.
    let tree = match DeTable::parse(text) {
        Ok(tree) => tree,
        Err(syntax) => {
            return Err(ConfigError::Syntax {
                file: file.to_path_buf(),
                line: syntax.span().map_or(line, |span| line_of(text, span.start)),
                message: syntax.message().to_owned(),
            })
        }
    };
    let key = error
        .span()
        .and_then(|span| key_path_at(tree.get_ref(), &span));
    let message = match error.message().strip_prefix("unknown field") {
        Some(rest) => format!("unknown key{rest}"),
        None => error.message().to_owned(),
    };
    Err(match key {
        Some(key) => ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            key,
            message,
        },
        None => ConfigError::Syntax {
            file: file.to_path_buf(),
            line,
            message,
        },
    })
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// Dotted path of the innermost key or value whose span encloses `target`.
fn key_path_at(root: &DeTable<'_>, target: &Range<usize>) -> Option<String> {
    let mut best = None;
    walk_table(root, "", target, &mut best);
    best.map(|(_, path)| path)
}

/// Best match so far: (span length, path). Smaller spans are more specific.
type PathMatch = Option<(usize, String)>;

fn walk_table(table: &DeTable<'_>, prefix: &str, target: &Range<usize>, best: &mut PathMatch) {
    for (key, value) in table.iter() {
        let mut path = prefix.to_owned();
        if !path.is_empty() {
            path.push('.');
        }
        push_key(&mut path, key.get_ref());
        consider(&key.span(), &path, target, best);
        walk_value(value, &path, target, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    target: &Range<usize>,
    best: &mut PathMatch,
) {
    consider(&value.span(), path, target, best);
    // Spans of `[table]` headers do not enclose their bodies, so children are
    // always searched rather than pruned by the parent's span.
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, target, best),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_value(item, &format!("{path}[{index}]"), target, best);
            }
        }
        _ => {}
    }
}

fn consider(span: &Range<usize>, path: &str, target: &Range<usize>, best: &mut PathMatch) {
    let encloses = span.start <= target.start && target.end <= span.end;
    let narrower = best.as_ref().is_none_or(|(len, _)| span.len() < *len);
    if encloses && narrower {
        *best = Some((span.len(), path.to_owned()));
    }
}

/// Appends a key as TOML would write it: bare when possible, quoted otherwise.
fn push_key(path: &mut String, key: &str) {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        // Debug quoting matches TOML basic-string escaping closely enough
        // for an error message.
        let _ = write!(path, "{key:?}");
    }
}

// ---------------------------------------------------------------------------
// Stage 2: merged inputs
// ---------------------------------------------------------------------------

/// A merged value with the fragment (index into the fragment list) and byte
/// span it came from, so validation can point at the right file and line.
#[derive(Debug)]
struct Located<T> {
    value: T,
    fragment: usize,
    span: Range<usize>,
}

impl<T> Located<T> {
    fn new(value: Spanned<T>, fragment: usize) -> Located<T> {
        let span = value.span();
        Located {
            value: value.into_inner(),
            fragment,
            span,
        }
    }
}

/// Replaces `slot` with `value` if the later fragment sets it.
fn overlay<T>(slot: &mut Option<Located<T>>, value: Option<Spanned<T>>, fragment: usize) {
    if let Some(value) = value {
        *slot = Some(Located::new(value, fragment));
    }
}

/// A merged string array whose elements keep their own spans.
type LocatedStrings = Located<Vec<Spanned<String>>>;

#[derive(Debug, Default)]
struct Inputs {
    node: NodeInputs,
    cluster: ClusterInputs,
    lease: LeaseInputs,
    updates: UpdatesInputs,
    reboot: RebootInputs,
    hooks: HooksInputs,
    kubernetes: KubernetesInputs,
}

#[derive(Debug, Default)]
struct NodeInputs {
    name: Option<Located<String>>,
    state_dir: Option<Located<String>>,
    group: Option<Located<String>>,
}

#[derive(Debug, Default)]
struct ClusterInputs {
    /// The `[cluster]` table (header or dotted key) of the last fragment
    /// that has one: where a missing `listen` is reported.
    table: Option<Located<()>>,
    listen: Option<Located<String>>,
    /// Arrays replace as a whole; entries keep their own spans.
    voters: Option<Located<Vec<Spanned<FragmentVoter>>>>,
    heartbeat_interval: Option<Located<String>>,
    election_timeout: Option<Located<String>>,
    snapshot_every: Option<Located<u64>>,
    connect_timeout: Option<Located<String>>,
    request_timeout: Option<Located<String>>,
}

#[derive(Debug, Default)]
struct LeaseInputs {
    default_max_holders: Option<Located<u32>>,
    waiter_ttl: Option<Located<String>>,
    hold_timeout: Option<Located<String>>,
}

#[derive(Debug, Default)]
struct UpdatesInputs {
    source: Option<Located<String>>,
    check_interval: Option<Located<String>>,
    poll_interval: Option<Located<String>>,
    dbus_address: Option<Located<String>>,
    os_release: Option<Located<String>>,
    reboot_required: Option<Located<String>>,
    unattended_upgrade: Option<LocatedStrings>,
    apt_conf_dir: Option<Located<String>>,
    sentinel_file: Option<Located<String>>,
    sentinel_command: Option<LocatedStrings>,
}

#[derive(Debug, Default)]
struct RebootInputs {
    method: Option<Located<String>>,
    command: Option<LocatedStrings>,
    time_zone: Option<Located<String>>,
    window: Option<Located<Vec<Spanned<FragmentWindow>>>>,
    blocker: Option<Located<Vec<Spanned<FragmentCommand>>>>,
    blocker_retry: Option<Located<String>>,
    boot_id_path: Option<Located<String>>,
}

#[derive(Debug, Default)]
struct HooksInputs {
    before_reboot: Option<Located<Vec<Spanned<FragmentCommand>>>>,
    after_reboot: Option<Located<Vec<Spanned<FragmentCommand>>>>,
}

#[derive(Debug, Default)]
struct KubernetesInputs {
    /// Some fragment has a `[kubernetes]` table, even an empty one.
    present: bool,
    kubeconfig: Option<Located<String>>,
    node_name: Option<Located<String>>,
    drain_timeout: Option<Located<String>>,
    grace_period: Option<Located<String>>,
    pod_selector: Option<Located<String>>,
    ready_timeout: Option<Located<String>>,
    eviction_retry: Option<Located<String>>,
}

impl Inputs {
    /// Overlays a later fragment: tables merge key by key, scalars and arrays
    /// replace. Arrays of tables (`[[reboot.window]]`, `[[reboot.blocker]]`,
    /// `[[hooks.before_reboot]]`, `[[hooks.after_reboot]]`) are arrays like
    /// any other: a later fragment that has entries replaces the earlier
    /// fragment's whole array instead of appending to it, so a drop-in can
    /// redefine the windows without repeating or knowing the vendor's, and
    /// `window = []` under `[reboot]` clears them.
    fn overlay(&mut self, fragment: Fragment, index: usize) {
        if let Some(node) = fragment.node {
            let n = &mut self.node;
            overlay(&mut n.name, node.name, index);
            overlay(&mut n.state_dir, node.state_dir, index);
            overlay(&mut n.group, node.group, index);
        }
        if let Some(cluster) = fragment.cluster {
            let c = &mut self.cluster;
            let span = cluster.span();
            let cluster = cluster.into_inner();
            c.table = Some(Located {
                value: (),
                fragment: index,
                span,
            });
            overlay(&mut c.listen, cluster.listen, index);
            overlay(&mut c.voters, cluster.voters, index);
            overlay(&mut c.heartbeat_interval, cluster.heartbeat_interval, index);
            overlay(&mut c.election_timeout, cluster.election_timeout, index);
            overlay(&mut c.snapshot_every, cluster.snapshot_every, index);
            overlay(&mut c.connect_timeout, cluster.connect_timeout, index);
            overlay(&mut c.request_timeout, cluster.request_timeout, index);
        }
        if let Some(lease) = fragment.lease {
            let l = &mut self.lease;
            overlay(&mut l.default_max_holders, lease.default_max_holders, index);
            overlay(&mut l.waiter_ttl, lease.waiter_ttl, index);
            overlay(&mut l.hold_timeout, lease.hold_timeout, index);
        }
        if let Some(updates) = fragment.updates {
            let u = &mut self.updates;
            overlay(&mut u.source, updates.source, index);
            overlay(&mut u.check_interval, updates.check_interval, index);
            overlay(&mut u.poll_interval, updates.poll_interval, index);
            overlay(&mut u.dbus_address, updates.dbus_address, index);
            overlay(&mut u.os_release, updates.os_release, index);
            overlay(&mut u.reboot_required, updates.reboot_required, index);
            overlay(&mut u.unattended_upgrade, updates.unattended_upgrade, index);
            overlay(&mut u.apt_conf_dir, updates.apt_conf_dir, index);
            overlay(&mut u.sentinel_file, updates.sentinel_file, index);
            overlay(&mut u.sentinel_command, updates.sentinel_command, index);
        }
        if let Some(reboot) = fragment.reboot {
            let r = &mut self.reboot;
            overlay(&mut r.method, reboot.method, index);
            overlay(&mut r.command, reboot.command, index);
            overlay(&mut r.time_zone, reboot.time_zone, index);
            overlay(&mut r.window, reboot.window, index);
            overlay(&mut r.blocker, reboot.blocker, index);
            overlay(&mut r.blocker_retry, reboot.blocker_retry, index);
            overlay(&mut r.boot_id_path, reboot.boot_id_path, index);
        }
        if let Some(hooks) = fragment.hooks {
            let h = &mut self.hooks;
            overlay(&mut h.before_reboot, hooks.before_reboot, index);
            overlay(&mut h.after_reboot, hooks.after_reboot, index);
        }
        if let Some(kubernetes) = fragment.kubernetes {
            let k = &mut self.kubernetes;
            k.present = true;
            overlay(&mut k.kubeconfig, kubernetes.kubeconfig, index);
            overlay(&mut k.node_name, kubernetes.node_name, index);
            overlay(&mut k.drain_timeout, kubernetes.drain_timeout, index);
            overlay(&mut k.grace_period, kubernetes.grace_period, index);
            overlay(&mut k.pod_selector, kubernetes.pod_selector, index);
            overlay(&mut k.ready_timeout, kubernetes.ready_timeout, index);
            overlay(&mut k.eviction_retry, kubernetes.eviction_retry, index);
        }
    }
}

// ---------------------------------------------------------------------------
// Stage 3: validation
// ---------------------------------------------------------------------------

/// Turns merged inputs into settings, resolving locations against the fragments.
struct Validator<'a> {
    fragments: &'a [(PathBuf, String)],
}

impl Validator<'_> {
    fn error_at(
        &self,
        fragment: usize,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (file, line) = match self.fragments.get(fragment) {
            Some((file, text)) => (file.clone(), line_of(text, span.start)),
            None => (PathBuf::new(), 1),
        };
        ConfigError::Invalid {
            file,
            line,
            key: key.into(),
            message: message.into(),
        }
    }

    fn error<T>(
        &self,
        at: &Located<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error_at(at.fragment, &at.span, key, message)
    }

    fn settings(
        &self,
        inputs: Inputs,
        host_name: impl FnOnce() -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let node = self.node(inputs.node, host_name)?;
        let cluster = self.cluster(inputs.cluster, &node.name)?;
        let kubernetes = if inputs.kubernetes.present {
            Some(self.kubernetes(inputs.kubernetes, &node.name)?)
        } else {
            None
        };
        Ok(Settings {
            cluster,
            lease: self.lease(inputs.lease)?,
            updates: self.updates(inputs.updates)?,
            reboot: self.reboot(inputs.reboot)?,
            hooks: self.hooks(inputs.hooks)?,
            kubernetes,
            node,
            sources: Vec::new(),
        })
    }

    /// `file:line` of a merged value, for messages that mention a second key.
    fn location<T>(&self, at: &Located<T>) -> String {
        match self.fragments.get(at.fragment) {
            Some((file, text)) => format!("{}:{}", file.display(), line_of(text, at.span.start)),
            None => "?".to_owned(),
        }
    }

    fn node(
        &self,
        inputs: NodeInputs,
        host_name: impl FnOnce() -> Option<String>,
    ) -> Result<NodeSettings, ConfigError> {
        let name = match inputs.name {
            Some(name) => {
                check_holder_name(&name.value).map_err(|m| self.error(&name, "node.name", m))?;
                name.value
            }
            None => {
                let name = host_name_or_localhost(host_name());
                check_holder_name(&name).map_err(|message| ConfigError::InvalidDefault {
                    key: "node.name".to_owned(),
                    value: name.clone(),
                    message,
                })?;
                name
            }
        };
        let state_dir = self.path_or(inputs.state_dir, "node.state_dir", DEFAULT_STATE_DIR)?;
        let group = match inputs.group {
            Some(group) => {
                check_group(&group.value).map_err(|m| self.error(&group, "node.group", m))?;
                group.value
            }
            None => DEFAULT_GROUP.to_owned(),
        };
        Ok(NodeSettings {
            name,
            state_dir,
            group,
        })
    }

    fn cluster(
        &self,
        inputs: ClusterInputs,
        node_name: &str,
    ) -> Result<ClusterSettings, ConfigError> {
        let listen = inputs
            .listen
            .map(|listen| {
                listen.value.parse::<SocketAddr>().map_err(|e| {
                    self.error(
                        &listen,
                        "cluster.listen",
                        format!("invalid socket address {:?}: {e}", listen.value),
                    )
                })
            })
            .transpose()?;

        let voters = match inputs.voters {
            Some(voters) => self.voters(voters)?,
            None => Vec::new(),
        };
        // A voter serves raft and the lease API; a client host only calls out.
        if listen.is_none() {
            if let Some(index) = voters.iter().position(|v| v.name == node_name) {
                let message = format!(
                    "required because node.name {node_name:?} is a voter (cluster.voters[{index}])"
                );
                return Err(match &inputs.table {
                    Some(table) => self.error(table, "cluster.listen", message),
                    None => ConfigError::Missing {
                        key: "cluster.listen".to_owned(),
                    },
                });
            }
        }

        let heartbeat_interval = self.duration(
            inputs.heartbeat_interval.as_ref(),
            "cluster.heartbeat_interval",
            DEFAULT_HEARTBEAT_INTERVAL,
        )?;
        let election_timeout = self.duration(
            inputs.election_timeout.as_ref(),
            "cluster.election_timeout",
            DEFAULT_ELECTION_TIMEOUT,
        )?;
        // Below this a follower can time out between two heartbeats of a
        // healthy leader and start needless elections.
        if election_timeout <= heartbeat_interval.saturating_mul(2) {
            let message = format!(
                "election_timeout ({election_timeout:?}) must be greater than \
                 2 * heartbeat_interval ({heartbeat_interval:?})"
            );
            // Blame whichever of the two was actually configured.
            return Err(
                match (&inputs.election_timeout, &inputs.heartbeat_interval) {
                    (Some(at), _) => self.error(at, "cluster.election_timeout", message),
                    (None, Some(at)) => self.error(at, "cluster.heartbeat_interval", message),
                    (None, None) => ConfigError::InvalidDefault {
                        key: "cluster.election_timeout".to_owned(),
                        value: format!("{election_timeout:?}"),
                        message,
                    },
                },
            );
        }

        let snapshot_every = match inputs.snapshot_every {
            Some(at) if at.value == 0 => {
                return Err(self.error(&at, "cluster.snapshot_every", "must be at least 1"))
            }
            Some(at) => at.value,
            None => DEFAULT_SNAPSHOT_EVERY,
        };
        let connect_timeout = self.duration(
            inputs.connect_timeout.as_ref(),
            "cluster.connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let request_timeout = self.duration(
            inputs.request_timeout.as_ref(),
            "cluster.request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
        )?;

        Ok(ClusterSettings {
            listen,
            voters,
            heartbeat_interval,
            election_timeout,
            snapshot_every,
            connect_timeout,
            request_timeout,
        })
    }

    fn voters(
        &self,
        voters: Located<Vec<Spanned<FragmentVoter>>>,
    ) -> Result<Vec<VoterSettings>, ConfigError> {
        let fragment = voters.fragment;
        let mut out: Vec<VoterSettings> = Vec::with_capacity(voters.value.len());
        // Maps from an identifying value to the index of the first entry using it.
        let mut ids = HashMap::new();
        let mut names = HashMap::new();
        let mut addresses = HashMap::new();

        for (index, entry) in voters.value.into_iter().enumerate() {
            let entry_span = entry.span();
            let entry = entry.into_inner();
            let key = |field: &str| format!("cluster.voters[{index}].{field}");
            let required = |field: &str| {
                self.error_at(fragment, &entry_span, key(field), "required key is missing")
            };
            let id = entry.id.ok_or_else(|| required("id"))?;
            let name = entry.name.ok_or_else(|| required("name"))?;
            let address = entry.address.ok_or_else(|| required("address"))?;
            let invalid = |span: Range<usize>, field: &str, message: String| {
                self.error_at(fragment, &span, key(field), message)
            };

            // Raft reserves no id, but 0 is the conventional "unset" value
            // and would be easy to produce by mistake.
            if *id.get_ref() == 0 {
                return Err(invalid(id.span(), "id", "must be at least 1".to_owned()));
            }
            if let Some(first) = ids.insert(*id.get_ref(), index) {
                let message = format!(
                    "duplicate voter id {} (also used by cluster.voters[{first}])",
                    id.get_ref()
                );
                return Err(invalid(id.span(), "id", message));
            }

            check_holder_name(name.get_ref()).map_err(|m| invalid(name.span(), "name", m))?;
            if let Some(first) = names.insert(name.get_ref().clone(), index) {
                let message = format!(
                    "duplicate voter name {:?} (also used by cluster.voters[{first}])",
                    name.get_ref()
                );
                return Err(invalid(name.span(), "name", message));
            }

            check_host_port(address.get_ref()).map_err(|m| {
                let message = format!("invalid address {:?}: {m}", address.get_ref());
                invalid(address.span(), "address", message)
            })?;
            // DNS names are case-insensitive, so compare case-folded.
            if let Some(first) = addresses.insert(address.get_ref().to_ascii_lowercase(), index) {
                let message = format!(
                    "duplicate voter address {:?} (also used by cluster.voters[{first}])",
                    address.get_ref()
                );
                return Err(invalid(address.span(), "address", message));
            }

            out.push(VoterSettings {
                id: id.into_inner(),
                name: name.into_inner(),
                address: address.into_inner(),
            });
        }
        Ok(out)
    }

    fn lease(&self, inputs: LeaseInputs) -> Result<LeaseSettings, ConfigError> {
        let default_max_holders = match inputs.default_max_holders {
            Some(at) if at.value == 0 => {
                return Err(self.error(&at, "lease.default_max_holders", "must be at least 1"))
            }
            Some(at) => at.value,
            None => DEFAULT_MAX_HOLDERS,
        };
        let waiter_ttl = self.duration(
            inputs.waiter_ttl.as_ref(),
            "lease.waiter_ttl",
            DEFAULT_WAITER_TTL,
        )?;
        let hold_timeout =
            self.optional_duration(inputs.hold_timeout.as_ref(), "lease.hold_timeout")?;
        Ok(LeaseSettings {
            default_max_holders,
            waiter_ttl,
            hold_timeout,
        })
    }

    fn updates(&self, inputs: UpdatesInputs) -> Result<UpdateSettings, ConfigError> {
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
            dbus_address,
            os_release,
            reboot_required,
            unattended_upgrade,
            apt_conf_dir,
            sentinel_file,
            sentinel_command,
        })
    }

    fn reboot(&self, inputs: RebootInputs) -> Result<RebootSettings, ConfigError> {
        let method = match inputs.method.as_ref().map(|at| (at, at.value.as_str())) {
            None | Some((_, "logind")) => {
                if let Some(command) = inputs.command {
                    let method = match &inputs.method {
                        Some(at) => format!("\"logind\" ({})", self.location(at)),
                        None => "\"logind\" (the default)".to_owned(),
                    };
                    let message = format!(
                        "only used with method = \"command\", but reboot.method is {method}"
                    );
                    return Err(self.error(&command, "reboot.command", message));
                }
                RebootMethod::Logind
            }
            Some((at, "command")) => match inputs.command {
                Some(command) => {
                    RebootMethod::Command(self.command_line(command, "reboot.command")?)
                }
                None => {
                    return Err(self.error(
                        at,
                        "reboot.method",
                        "method \"command\" needs reboot.command, \
                         e.g. command = [\"/usr/sbin/shutdown\", \"-r\", \"now\"]",
                    ))
                }
            },
            Some((at, other)) => {
                let message =
                    format!("unknown reboot method {other:?}; expected \"logind\" or \"command\"");
                return Err(self.error(at, "reboot.method", message));
            }
        };

        let time_zone = match inputs.time_zone {
            // Resolved when windows are evaluated, so that a changed
            // /etc/localtime is picked up without a restart.
            Some(at) if at.value == LOCALTIME => at.value,
            Some(at) => match jiff::tz::TimeZone::get(&at.value) {
                Ok(_) => at.value,
                Err(e) => {
                    let message = format!(
                        "unknown time zone {:?} ({e}); use \"localtime\" or an IANA \
                         name such as \"Europe/Berlin\"",
                        at.value
                    );
                    return Err(self.error(&at, "reboot.time_zone", message));
                }
            },
            None => LOCALTIME.to_owned(),
        };
        let windows = match inputs.window {
            Some(list) => self.windows(list)?,
            None => Vec::new(),
        };
        let blockers = match inputs.blocker {
            Some(list) => self.commands(list, "reboot.blocker", false)?,
            None => Vec::new(),
        };
        let blocker_retry = self.duration(
            inputs.blocker_retry.as_ref(),
            "reboot.blocker_retry",
            DEFAULT_BLOCKER_RETRY,
        )?;
        let boot_id_path = self.path_or(
            inputs.boot_id_path,
            "reboot.boot_id_path",
            DEFAULT_BOOT_ID_PATH,
        )?;
        Ok(RebootSettings {
            method,
            time_zone,
            windows,
            blockers,
            blocker_retry,
            boot_id_path,
        })
    }

    fn windows(
        &self,
        list: Located<Vec<Spanned<FragmentWindow>>>,
    ) -> Result<Vec<WindowSettings>, ConfigError> {
        let fragment = list.fragment;
        let mut out = Vec::with_capacity(list.value.len());
        for (index, entry) in list.value.into_iter().enumerate() {
            let entry_span = entry.span();
            let entry = entry.into_inner();
            let key = |field: &str| format!("reboot.window[{index}].{field}");
            let required = |field: &str| {
                self.error_at(fragment, &entry_span, key(field), "required key is missing")
            };
            let start = Located::new(entry.start.ok_or_else(|| required("start"))?, fragment);
            let length = Located::new(entry.length.ok_or_else(|| required("length"))?, fragment);

            let days = match entry.days {
                Some(days) => self.days(Located::new(days, fragment), &key("days"))?,
                None => WEEKDAYS.iter().map(|(day, _, _)| *day).collect(),
            };
            let start_time =
                parse_time_of_day(&start.value).map_err(|m| self.error(&start, key("start"), m))?;
            let length_value = self.parse_duration(&length, &key("length"))?;
            if length_value > MAX_WINDOW_LENGTH {
                return Err(self.error(
                    &length,
                    key("length"),
                    format!(
                        "window length {:?} is longer than a week (at most \"168h\")",
                        length.value
                    ),
                ));
            }
            out.push(WindowSettings {
                days,
                start: start_time,
                length: length_value,
            });
        }
        Ok(out)
    }

    /// A non-empty list of day names, returned Monday first without duplicates.
    fn days(&self, days: LocatedStrings, key: &str) -> Result<Vec<Weekday>, ConfigError> {
        if days.value.is_empty() {
            return Err(self.error(
                &days,
                key,
                "must name at least one day; leave days out for every day",
            ));
        }
        let mut out = Vec::with_capacity(days.value.len());
        for (index, name) in days.value.iter().enumerate() {
            let day = parse_weekday(name.get_ref()).ok_or_else(|| {
                self.error_at(
                    days.fragment,
                    &name.span(),
                    format!("{key}[{index}]"),
                    format!(
                        "unknown day {:?}; expected Mon, Tue, Wed, Thu, Fri, Sat or Sun \
                         (or the full name)",
                        name.get_ref()
                    ),
                )
            })?;
            if !out.contains(&day) {
                out.push(day);
            }
        }
        out.sort_by_key(|day| day.to_monday_zero_offset());
        Ok(out)
    }

    fn hooks(&self, inputs: HooksInputs) -> Result<HookSettings, ConfigError> {
        Ok(HookSettings {
            before_reboot: match inputs.before_reboot {
                Some(list) => self.commands(list, "hooks.before_reboot", true)?,
                None => Vec::new(),
            },
            after_reboot: match inputs.after_reboot {
                Some(list) => self.commands(list, "hooks.after_reboot", false)?,
                None => Vec::new(),
            },
        })
    }

    /// Blocker or hook entries; `force` is accepted only where it means something.
    fn commands(
        &self,
        list: Located<Vec<Spanned<FragmentCommand>>>,
        key: &str,
        force_allowed: bool,
    ) -> Result<Vec<CommandSettings>, ConfigError> {
        let fragment = list.fragment;
        let mut out = Vec::with_capacity(list.value.len());
        for (index, entry) in list.value.into_iter().enumerate() {
            let entry_span = entry.span();
            let entry = entry.into_inner();
            let key = |field: &str| format!("{key}[{index}].{field}");
            let command = entry.command.ok_or_else(|| {
                self.error_at(
                    fragment,
                    &entry_span,
                    key("command"),
                    "required key is missing",
                )
            })?;
            let command = self.command_line(Located::new(command, fragment), &key("command"))?;
            let timeout = match entry.timeout {
                Some(timeout) => {
                    self.parse_duration(&Located::new(timeout, fragment), &key("timeout"))?
                }
                None => DEFAULT_COMMAND_TIMEOUT,
            };
            let force = match entry.force {
                Some(force) if !force_allowed => {
                    return Err(self.error_at(
                        fragment,
                        &force.span(),
                        key("force"),
                        "only hooks.before_reboot entries can be forced",
                    ))
                }
                Some(force) => force.into_inner(),
                None => false,
            };
            out.push(CommandSettings {
                command,
                timeout,
                force,
            });
        }
        Ok(out)
    }

    fn kubernetes(
        &self,
        inputs: KubernetesInputs,
        node_name: &str,
    ) -> Result<KubernetesSettings, ConfigError> {
        let kubeconfig = inputs
            .kubeconfig
            .map(|at| self.path(at, "kubernetes.kubeconfig"))
            .transpose()?;
        let node_name = match inputs.node_name {
            Some(at) => {
                check_holder_name(&at.value)
                    .map_err(|m| self.error(&at, "kubernetes.node_name", m))?;
                at.value
            }
            None => node_name.to_owned(),
        };
        let drain_timeout = self.duration(
            inputs.drain_timeout.as_ref(),
            "kubernetes.drain_timeout",
            DEFAULT_DRAIN_TIMEOUT,
        )?;
        let grace_period =
            self.optional_duration(inputs.grace_period.as_ref(), "kubernetes.grace_period")?;
        let pod_selector = match inputs.pod_selector {
            // An empty selector would select every pod, which is what
            // leaving the key out already says; more likely a mistake.
            Some(at) if at.value.trim().is_empty() => {
                return Err(self.error(
                    &at,
                    "kubernetes.pod_selector",
                    "must not be empty; leave pod_selector out to evict all pods",
                ))
            }
            Some(at) => Some(at.value),
            None => None,
        };
        let ready_timeout = self.duration(
            inputs.ready_timeout.as_ref(),
            "kubernetes.ready_timeout",
            DEFAULT_READY_TIMEOUT,
        )?;
        let eviction_retry = self.duration(
            inputs.eviction_retry.as_ref(),
            "kubernetes.eviction_retry",
            DEFAULT_EVICTION_RETRY,
        )?;
        Ok(KubernetesSettings {
            kubeconfig,
            node_name,
            drain_timeout,
            grace_period,
            pod_selector,
            ready_timeout,
            eviction_retry,
        })
    }

    /// A command line: program and arguments; the program must be named.
    fn command_line(&self, at: LocatedStrings, key: &str) -> Result<Vec<String>, ConfigError> {
        let Some(program) = at.value.first() else {
            return Err(self.error(
                &at,
                key,
                "must not be empty; give the program and its arguments, \
                 e.g. [\"/usr/local/bin/check\", \"--quiet\"]",
            ));
        };
        if program.get_ref().is_empty() {
            return Err(self.error_at(
                at.fragment,
                &program.span(),
                format!("{key}[0]"),
                "program name must not be empty",
            ));
        }
        // exec cannot pass NUL; reject it here rather than at reboot time.
        if let Some((index, arg)) = at
            .value
            .iter()
            .enumerate()
            .find(|(_, arg)| arg.get_ref().contains('\0'))
        {
            return Err(self.error_at(
                at.fragment,
                &arg.span(),
                format!("{key}[{index}]"),
                "must not contain a NUL character",
            ));
        }
        Ok(at.value.into_iter().map(Spanned::into_inner).collect())
    }

    /// An absolute path: the daemon may chdir or run from anywhere, and a
    /// relative path would silently depend on that (or split its state).
    fn path(&self, at: Located<String>, key: &str) -> Result<PathBuf, ConfigError> {
        if !Path::new(&at.value).is_absolute() {
            return Err(self.error(&at, key, format!("{:?} is not an absolute path", at.value)));
        }
        Ok(PathBuf::from(at.value))
    }

    fn path_or(
        &self,
        input: Option<Located<String>>,
        key: &str,
        default: &str,
    ) -> Result<PathBuf, ConfigError> {
        input.map_or_else(|| Ok(PathBuf::from(default)), |at| self.path(at, key))
    }

    fn optional_duration(
        &self,
        input: Option<&Located<String>>,
        key: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        input.map(|at| self.parse_duration(at, key)).transpose()
    }

    fn duration(
        &self,
        input: Option<&Located<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        input.map_or(Ok(default), |at| self.parse_duration(at, key))
    }

    /// Parses a jiff "friendly" duration (`"30s"`, `"1h30m"`, `"500ms"`) that must be > 0.
    fn parse_duration(&self, at: &Located<String>, key: &str) -> Result<Duration, ConfigError> {
        let text = &at.value;
        let signed = text
            .parse::<jiff::SignedDuration>()
            .map_err(|e| self.error(at, key, format!("invalid duration {text:?}: {e}")))?;
        if signed <= jiff::SignedDuration::ZERO {
            return Err(self.error(
                at,
                key,
                format!("duration {text:?} must be greater than zero"),
            ));
        }
        Duration::try_from(signed)
            .map_err(|e| self.error(at, key, format!("invalid duration {text:?}: {e}")))
    }
}

/// A 24-hour time of day, `HH:MM` (a one-digit hour is accepted too).
fn parse_time_of_day(text: &str) -> Result<Time, String> {
    let invalid = || format!("invalid time {text:?}, expected HH:MM from 00:00 to 23:59");
    let (hour, minute) = text.split_once(':').ok_or_else(invalid)?;
    let digits = |s: &str, max_len: usize| {
        (1..=max_len).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(hour, 2) || minute.len() != 2 || !digits(minute, 2) {
        return Err(invalid());
    }
    let hour = hour.parse::<i8>().map_err(|_| invalid())?;
    let minute = minute.parse::<i8>().map_err(|_| invalid())?;
    Time::new(hour, minute, 0, 0).map_err(|_| invalid())
}

/// A day name: `Mon`..`Sun` or the full English name, in any case.
fn parse_weekday(name: &str) -> Option<Weekday> {
    let name = name.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|(_, short, long)| name == *short || name == *long)
        .map(|(day, _, _)| *day)
}

/// A holder name: 1..=253 characters, no control characters, no whitespace.
fn check_holder_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err("must not be empty".to_owned());
    }
    if chars > MAX_HOLDER_NAME_CHARS {
        return Err(format!(
            "{chars} characters, at most {MAX_HOLDER_NAME_CHARS} allowed"
        ));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{name:?} contains {bad:?}; control characters and whitespace are not allowed"
        ));
    }
    Ok(())
}

/// A lease group: `[a-zA-Z0-9._-]{1,128}`.
fn check_group(group: &str) -> Result<(), String> {
    if let Some(bad) = group
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{group:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    // Only ASCII is left at this point, so bytes are characters.
    if group.is_empty() || group.len() > MAX_GROUP_CHARS {
        return Err(format!(
            "{group:?} must be 1 to {MAX_GROUP_CHARS} characters long"
        ));
    }
    Ok(())
}

/// A `host:port` address: port 1..=65535, host an IPv4 address, a bracketed
/// IPv6 address or a DNS name. Resolution is left to connect time.
fn check_host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_owned())?;
    match port.parse::<u16>() {
        Ok(0) => return Err("port must be between 1 and 65535".to_owned()),
        Ok(_) => {}
        Err(_) => return Err(format!("invalid port {port:?}, expected 1 to 65535")),
    }
    if host.is_empty() {
        return Err("host must not be empty".to_owned());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated IPv6 address {host:?}"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|e| format!("invalid IPv6 address {inner:?}: {e}"));
    }
    if host.contains(':') {
        return Err("IPv6 addresses must be written in brackets, e.g. [::1]:7421".to_owned());
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    check_dns_name(host)
}

/// RFC 1123 host name: dot-separated labels of 1..=63 ASCII letters, digits
/// and hyphens, not starting or ending with a hyphen; at most 253 characters.
fn check_dns_name(host: &str) -> Result<(), String> {
    if host.len() > MAX_HOLDER_NAME_CHARS {
        return Err(format!(
            "host name longer than {MAX_HOLDER_NAME_CHARS} characters"
        ));
    }
    let mut last = "";
    for label in host.split('.') {
        let valid = (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "{host:?} is neither an IP address nor a valid DNS name"
            ));
        }
        last = label;
    }
    // An all-numeric last label means a mistyped IPv4 address, e.g. "10.0.0.256".
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"[node]
name = "cp-1"                 # default: the host name
state_dir = "/var/lib/baton"  # default
# group = "default"

[cluster]
listen = "127.0.0.1:7421"
voters = [
  { id = 1, name = "cp-1", address = "127.0.0.1:7421" },
  { id = 2, name = "cp-2", address = "127.0.0.1:7422" },
  { id = 3, name = "cp-3", address = "127.0.0.1:7423" },
]
# heartbeat_interval = "100ms"
# election_timeout = "400ms"
# snapshot_every = 1000
# connect_timeout = "1s"
# request_timeout = "3s"

[lease]
default_max_holders = 1
waiter_ttl = "30s"
# hold_timeout = "2h"
"#;

    /// A valid config with a fixed node name, for tests that change one key.
    const MINIMAL: &str = "[node]\nname = \"n1\"\n[cluster]\nlisten = \"127.0.0.1:7421\"\n";

    fn frag(name: &str, text: &str) -> (PathBuf, String) {
        (PathBuf::from(name), text.to_owned())
    }

    fn load_one(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_fragments(&[frag("/etc/baton/baton.toml", text)])
    }

    /// Asserts an `Invalid` error and returns its message.
    #[track_caller]
    fn assert_invalid(
        result: Result<Settings, ConfigError>,
        file: &str,
        key: &str,
        line: usize,
    ) -> String {
        match result {
            Err(ConfigError::Invalid {
                file: f,
                line: l,
                key: k,
                message,
            }) => {
                assert_eq!(
                    (f.as_path(), k.as_str(), l),
                    (Path::new(file), key, line),
                    "message: {message}"
                );
                message
            }
            other => panic!("expected Invalid at {file}:{line} {key}, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_invalid_one(text: &str, key: &str, line: usize) -> String {
        assert_invalid(load_one(text), "/etc/baton/baton.toml", key, line)
    }

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    // --- the example and defaults -------------------------------------------

    #[test]
    fn example_parses_as_written() {
        let settings = load_one(EXAMPLE).unwrap();
        assert_eq!(
            settings,
            Settings {
                node: NodeSettings {
                    name: "cp-1".into(),
                    state_dir: "/var/lib/baton".into(),
                    group: "default".into(),
                },
                cluster: ClusterSettings {
                    listen: Some("127.0.0.1:7421".parse().unwrap()),
                    voters: (1..=3)
                        .map(|i| VoterSettings {
                            id: i,
                            name: format!("cp-{i}"),
                            address: format!("127.0.0.1:742{i}"),
                        })
                        .collect(),
                    heartbeat_interval: Duration::from_millis(100),
                    election_timeout: Duration::from_millis(300),
                    snapshot_every: 1000,
                    connect_timeout: Duration::from_secs(1),
                    request_timeout: Duration::from_secs(3),
                },
                lease: LeaseSettings {
                    default_max_holders: 1,
                    waiter_ttl: Duration::from_secs(30),
                    hold_timeout: None,
                },
                updates: UpdateSettings {
                    source: UpdateSourceKind::Auto,
                    check_interval: None,
                    poll_interval: Duration::from_secs(10),
                    dbus_address: None,
                    os_release: "/etc/os-release".into(),
                    reboot_required: "/var/run/reboot-required".into(),
                    unattended_upgrade: vec![
                        "systemctl".into(),
                        "start".into(),
                        "apt-daily-upgrade.service".into(),
                    ],
                    apt_conf_dir: "/etc/apt/apt.conf.d".into(),
                    sentinel_file: None,
                    sentinel_command: None,
                },
                reboot: RebootSettings {
                    method: RebootMethod::Logind,
                    time_zone: "localtime".into(),
                    windows: vec![],
                    blockers: vec![],
                    blocker_retry: Duration::from_secs(60),
                    boot_id_path: "/proc/sys/kernel/random/boot_id".into(),
                },
                hooks: HookSettings {
                    before_reboot: vec![],
                    after_reboot: vec![],
                },
                kubernetes: None,
                sources: vec![PathBuf::from("/etc/baton/baton.toml")],
            }
        );
        assert_eq!(settings.this_voter().map(|v| v.id), Some(1));
    }

    #[test]
    fn voter_files_differ_only_in_name_and_listen() {
        let text = EXAMPLE
            .replace("name = \"cp-1\"                 #", "name = \"cp-2\" #")
            .replace("listen = \"127.0.0.1:7421\"", "listen = \"127.0.0.1:7422\"");
        let settings = load_one(&text).unwrap();
        assert_eq!(settings.node.name, "cp-2");
        assert_eq!(settings.cluster.listen.map(|l| l.port()), Some(7422));
        assert_eq!(settings.this_voter().map(|v| v.id), Some(2));
    }

    #[test]
    fn defaults_fill_unset_keys() {
        let settings = load_one("[cluster]\nlisten = \"[::1]:7421\"\n").unwrap();
        assert!(!settings.node.name.is_empty());
        assert_eq!(settings.node.state_dir, Path::new("/var/lib/baton"));
        assert_eq!(settings.node.group, "default");
        assert!(settings.cluster.voters.is_empty());
        assert_eq!(settings.cluster.snapshot_every, 1000);
        assert_eq!(settings.lease.default_max_holders, 1);
        assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(30));
        assert_eq!(settings.lease.hold_timeout, None);
        assert_eq!(settings.this_voter(), None);
    }

    #[test]
    fn node_name_defaults_to_trimmed_host_name_or_localhost() {
        assert_eq!(host_name_or_localhost(Some("cp-9\n".into())), "cp-9");
        assert_eq!(host_name_or_localhost(Some(" \n".into())), "localhost");
        assert_eq!(host_name_or_localhost(None), "localhost");

        let validator = Validator { fragments: &[] };
        let mut inputs = Inputs::default();
        inputs.overlay(
            toml::from_str(MINIMAL.replace("name = \"n1\"", "").as_str()).unwrap(),
            0,
        );
        let settings = validator
            .settings(inputs, || Some("host-a\n".into()))
            .unwrap();
        assert_eq!(settings.node.name, "host-a");

        let mut inputs = Inputs::default();
        inputs.overlay(
            toml::from_str("[cluster]\nlisten = \"127.0.0.1:1\"\n").unwrap(),
            0,
        );
        let err = validator
            .settings(inputs, || Some("bad host".into()))
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidDefault { key, .. } if key == "node.name"),
            "{err:?}"
        );
    }

    #[test]
    fn durations_use_friendly_format() {
        let text = format!(
            "{MINIMAL}heartbeat_interval = \"50ms\"\nelection_timeout = \"1s\"\n\
             connect_timeout = \"1m\"\nrequest_timeout = \"1h30m\"\nsnapshot_every = 5\n\
             [lease]\nwaiter_ttl = \"2h\"\nhold_timeout = \"500ms\"\ndefault_max_holders = 3\n"
        );
        let settings = load_one(&text).unwrap();
        let c = &settings.cluster;
        assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(c.election_timeout, Duration::from_secs(1));
        assert_eq!(c.connect_timeout, Duration::from_secs(60));
        assert_eq!(c.request_timeout, Duration::from_secs(5400));
        assert_eq!(c.snapshot_every, 5);
        assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(7200));
        assert_eq!(
            settings.lease.hold_timeout,
            Some(Duration::from_millis(500))
        );
        assert_eq!(settings.lease.default_max_holders, 3);
    }

    #[test]
    fn array_of_tables_voters_parse() {
        let text = format!(
            "{MINIMAL}[[cluster.voters]]\nid = 7\nname = \"n1\"\naddress = \"cp-1.example.com:7421\"\n\
             [[cluster.voters]]\nid = 8\nname = \"n2\"\naddress = \"[fd00::2]:7421\"\n"
        );
        let settings = load_one(&text).unwrap();
        assert_eq!(settings.cluster.voters.len(), 2);
        assert_eq!(settings.cluster.voters[1].address, "[fd00::2]:7421");
        assert_eq!(settings.this_voter().map(|v| v.id), Some(7));
    }

    // --- cluster.listen ---------------------------------------------------------

    #[test]
    fn listen_is_optional_on_a_client_host() {
        // No `[cluster]` table at all: a client host with no voters yet.
        let settings = load_one("[node]\nname = \"n1\"\n").unwrap();
        assert_eq!(settings.cluster.listen, None);
        assert!(settings.cluster.voters.is_empty());
        assert_eq!(settings.cluster.snapshot_every, 1000);
        // No fragments at all is the same situation.
        assert!(Settings::from_fragments(&[]).is_ok());
        // Voters that do not include this node.
        let text = "[node]\nname = \"worker-1\"\n[cluster]\n\
                    voters = [{ id = 1, name = \"cp-1\", address = \"h:1\" }]\n";
        let settings = load_one(text).unwrap();
        assert_eq!(settings.cluster.listen, None);
        assert_eq!(settings.this_voter(), None);
    }

    #[test]
    fn listen_is_required_on_a_voter() {
        let voters = "voters = [\n{ id = 1, name = \"a\", address = \"h:1\" },\n\
                      { id = 2, name = \"n1\", address = \"h:2\" },\n]\n";
        let text = format!("[node]\nname = \"n1\"\n\n[cluster]\n{voters}");
        let message = assert_invalid_one(&text, "cluster.listen", 4);
        assert!(message.contains("cluster.voters[1]"), "{message}");
        // Without a `[cluster]` header, the dotted key's table is blamed.
        let text =
            "[node]\nname = \"a\"\n\n[[cluster.voters]]\nid = 1\nname = \"a\"\naddress = \"h:1\"\n";
        assert_invalid_one(text, "cluster.listen", 4);
        // Voters from a vendor drop-in, node name from the main file: the
        // last `[cluster]` table is where listen belongs.
        let fragments = [
            frag("vendor.toml", &format!("[cluster]\n{voters}")),
            frag(
                "main.toml",
                "[node]\nname = \"n1\"\n[cluster]\nheartbeat_interval = \"50ms\"\n",
            ),
            frag("local.toml", "[lease]\nwaiter_ttl = \"1m\"\n"),
        ];
        assert_invalid(
            Settings::from_fragments(&fragments),
            "main.toml",
            "cluster.listen",
            3,
        );
        let fragments = [
            fragments[0].clone(),
            frag(
                "main.toml",
                "[node]\nname = \"n1\"\n[cluster]\nlisten = \"0.0.0.0:7421\"\n",
            ),
        ];
        let settings = Settings::from_fragments(&fragments).unwrap();
        assert_eq!(
            settings.cluster.listen,
            Some("0.0.0.0:7421".parse().unwrap())
        );
        assert_eq!(settings.this_voter().map(|v| v.id), Some(2));
    }

    #[test]
    fn listen_missing_without_a_located_table_is_a_missing_error() {
        // Unreachable through fragments (voters always come with a
        // `cluster` table), but the fallback must still name the key.
        let validator = Validator { fragments: &[] };
        let mut inputs = Inputs::default();
        inputs.overlay(
            toml::from_str("[node]\nname = \"n1\"\n[cluster]\nvoters = [{ id = 1, name = \"n1\", address = \"h:1\" }]\n")
                .unwrap(),
            0,
        );
        inputs.cluster.table = None;
        let err = validator.settings(inputs, || None).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Missing { key } if key == "cluster.listen"),
            "{err:?}"
        );
        assert!(err.to_string().contains("cluster.listen"), "{err}");
    }

    #[test]
    fn listen_must_be_a_socket_address() {
        let text = "[node]\nname = \"n1\"\n\n\n\n[cluster]\nlisten = \"127.0.0.1:99999\"\n";
        let err = load_one(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/baton/baton.toml:7: cluster.listen: invalid socket address \
             \"127.0.0.1:99999\": invalid socket address syntax"
        );
        assert_invalid_one(text, "cluster.listen", 7);
        assert_invalid_one("[cluster]\nlisten = \"localhost:1\"\n", "cluster.listen", 2);
    }

    // --- voters -------------------------------------------------------------

    fn with_voters(voters: &str) -> String {
        format!("{MINIMAL}voters = [\n{voters}]\n")
    }

    #[test]
    fn empty_voter_list_means_client_only() {
        let settings = load_one(&with_voters("")).unwrap();
        assert!(settings.cluster.voters.is_empty());
        assert_eq!(settings.this_voter(), None);
    }

    #[test]
    fn voter_id_must_be_positive() {
        let text = with_voters("{ id = 0, name = \"a\", address = \"h:1\" },\n");
        let message = assert_invalid_one(&text, "cluster.voters[0].id", 6);
        assert!(message.contains("at least 1"), "{message}");
    }

    #[test]
    fn voter_ids_must_be_unique() {
        let text = with_voters(
            "{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 1, name = \"b\", address = \"h:2\" },\n",
        );
        let message = assert_invalid_one(&text, "cluster.voters[1].id", 7);
        assert!(message.contains("cluster.voters[0]"), "{message}");
    }

    #[test]
    fn voter_names_must_be_unique() {
        let text = with_voters(
            "{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 2, name = \"a\", address = \"h:2\" },\n",
        );
        assert_invalid_one(&text, "cluster.voters[1].name", 7);
    }

    #[test]
    fn voter_names_must_be_valid_holder_names() {
        let text = with_voters("{ id = 1, name = \"a b\", address = \"h:1\" },\n");
        assert_invalid_one(&text, "cluster.voters[0].name", 6);
    }

    #[test]
    fn voter_addresses_must_be_unique() {
        let text = with_voters(
            "{ id = 1, name = \"a\", address = \"Host:1\" },\n{ id = 2, name = \"b\", address = \"host:1\" },\n",
        );
        assert_invalid_one(&text, "cluster.voters[1].address", 7);
    }

    #[test]
    fn voter_address_must_be_host_and_port() {
        for bad in [
            "host",
            "host:0",
            "host:99999",
            "host:",
            ":7421",
            "::1:7421",
            "[::1:7421",
            "[zz::1]:7421",
            "-bad.example:1",
            "bad_host:1",
            "a..b:1",
            "10.0.0.256:1",
            "h st:1",
        ] {
            let text = with_voters(&format!(
                "{{ id = 1, name = \"a\", address = \"{bad}\" }},\n"
            ));
            let message = assert_invalid_one(&text, "cluster.voters[0].address", 6);
            assert!(message.contains("invalid address"), "{bad}: {message}");
        }
        for good in [
            "10.0.0.1:1",
            "[::1]:65535",
            "cp-1:7421",
            "cp-1.example.com:7421",
            "A1:2",
        ] {
            assert_eq!(check_host_port(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn voter_fields_are_required() {
        let text = with_voters("{ id = 1, name = \"a\" },\n");
        let message = assert_invalid_one(&text, "cluster.voters[0].address", 6);
        assert!(message.contains("missing"), "{message}");
    }

    // --- node ---------------------------------------------------------------

    #[test]
    fn node_name_must_be_a_valid_holder_name() {
        let base = "[cluster]\nlisten = \"127.0.0.1:1\"\n[node]\n";
        let long = "x".repeat(254);
        for bad in ["", "a b", "tab\there", "bell\u{7}", long.as_str()] {
            let text = format!("{base}name = {}\n", toml_string(bad));
            assert_invalid_one(&text, "node.name", 4);
        }
        let ok = format!("{base}name = \"{}\"\n", "x".repeat(253));
        assert!(load_one(&ok).is_ok());
        assert!(load_one(&format!("{base}name = \"höst/1@dc\"\n")).is_ok());
    }

    /// A TOML basic string for `s` (control characters escaped).
    fn toml_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            if c.is_control() {
                out.push_str(&format!("\\u{:04X}", c as u32));
            } else {
                out.push(c);
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn node_group_must_match_pattern() {
        let long = "g".repeat(129);
        for bad in ["", "a b", "a/b", "grüppe", long.as_str()] {
            // A second fragment, since MINIMAL already opens `[node]`.
            let result = Settings::from_fragments(&[
                frag("main.toml", MINIMAL),
                frag("50-group.toml", &format!("\n[node]\ngroup = \"{bad}\"\n")),
            ]);
            assert_invalid(result, "50-group.toml", "node.group", 3);
        }
        let ok = MINIMAL.replace("name = \"n1\"", "name = \"n1\"\ngroup = \"A-z_0.9\"");
        assert_eq!(load_one(&ok).unwrap().node.group, "A-z_0.9");
        assert_eq!(check_group(&"g".repeat(128)), Ok(()));
    }

    #[test]
    fn node_state_dir_must_be_absolute() {
        let text =
            "[node]\nname = \"n1\"\nstate_dir = \"var/lib\"\n[cluster]\nlisten = \"127.0.0.1:1\"\n";
        assert_invalid_one(text, "node.state_dir", 3);
    }

    // --- lease and timings --------------------------------------------------

    #[test]
    fn default_max_holders_must_be_positive() {
        let text = format!("{MINIMAL}[lease]\ndefault_max_holders = 0\n");
        assert_invalid_one(&text, "lease.default_max_holders", 6);
    }

    #[test]
    fn durations_must_parse_and_be_positive() {
        for (bad, why) in [
            ("soon", "invalid duration"),
            ("0s", "greater than zero"),
            ("-5s", "greater than zero"),
            ("1d", "invalid duration"),
        ] {
            let text = format!("{MINIMAL}[lease]\n\nwaiter_ttl = \"{bad}\"\n");
            let message = assert_invalid_one(&text, "lease.waiter_ttl", 7);
            assert!(message.contains(why), "{bad}: {message}");
        }
        for key in [
            "heartbeat_interval",
            "election_timeout",
            "connect_timeout",
            "request_timeout",
        ] {
            let text = format!("{MINIMAL}{key} = \"0ms\"\n");
            assert_invalid_one(&text, &format!("cluster.{key}"), 5);
        }
        let text = format!("{MINIMAL}[lease]\nhold_timeout = \"never\"\n");
        assert_invalid_one(&text, "lease.hold_timeout", 6);
    }

    #[test]
    fn election_timeout_must_exceed_twice_heartbeat() {
        let text =
            format!("{MINIMAL}heartbeat_interval = \"100ms\"\nelection_timeout = \"200ms\"\n");
        let message = assert_invalid_one(&text, "cluster.election_timeout", 6);
        assert!(message.contains("2 * heartbeat_interval"), "{message}");
        // Only the heartbeat was configured: it is the one to blame.
        let text = format!("{MINIMAL}heartbeat_interval = \"300ms\"\n");
        assert_invalid_one(&text, "cluster.heartbeat_interval", 5);
        let text =
            format!("{MINIMAL}heartbeat_interval = \"100ms\"\nelection_timeout = \"201ms\"\n");
        assert!(load_one(&text).is_ok());
    }

    #[test]
    fn snapshot_every_must_be_positive() {
        let text = format!("{MINIMAL}snapshot_every = 0\n");
        assert_invalid_one(&text, "cluster.snapshot_every", 5);
    }

    // --- unknown keys, types, syntax ---------------------------------------

    #[test]
    fn unknown_top_level_key() {
        let text = format!("{MINIMAL}\n");
        let text = format!("bogus = 1\n{text}");
        let message = assert_invalid_one(&text, "bogus", 1);
        assert!(message.starts_with("unknown key `bogus`"), "{message}");
    }

    #[test]
    fn unknown_top_level_table() {
        assert_invalid_one(&format!("{MINIMAL}[leases]\nx = 1\n"), "leases", 5);
    }

    #[test]
    fn unknown_key_in_table() {
        let text = format!("{MINIMAL}\nlisten_on = \"x\"\n");
        let message = assert_invalid_one(&text, "cluster.listen_on", 6);
        assert!(message.contains("`listen`"), "{message}");
        assert_invalid_one("node.name = \"n\"\nnode.nmae = \"x\"\n", "node.nmae", 2);
    }

    #[test]
    fn unknown_key_in_voter_entry() {
        let text = with_voters(
            "{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 2, name = \"b\", adress = \"h:2\" },\n",
        );
        assert_invalid_one(&text, "cluster.voters[1].adress", 7);
        let text =
            format!("{MINIMAL}[[cluster.voters]]\nid = 1\n[[cluster.voters]]\nid = 2\nport = 3\n");
        assert_invalid_one(&text, "cluster.voters[1].port", 9);
    }

    #[test]
    fn unusual_keys_are_quoted_in_paths() {
        assert_invalid_one("[node]\n\"my key\" = 1\n", "node.\"my key\"", 2);
    }

    #[test]
    fn wrong_type() {
        let text = format!("{MINIMAL}[lease]\ndefault_max_holders = \"one\"\n");
        let message = assert_invalid_one(&text, "lease.default_max_holders", 6);
        assert!(message.contains("invalid type"), "{message}");
        assert_invalid_one(
            &format!("{MINIMAL}snapshot_every = -1\n"),
            "cluster.snapshot_every",
            5,
        );
        assert_invalid_one("node = 3\n", "node", 1);
        assert_invalid_one(&with_voters("\"cp-1:1\",\n"), "cluster.voters[0]", 6);
        assert_invalid_one(
            &format!("{MINIMAL}election_timeout = 400\n"),
            "cluster.election_timeout",
            5,
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let text = "[node]\nname = \"n1\"\n\n[cluster]\nlisten = 127.0.0.1:7421\n";
        match load_one(text) {
            Err(ConfigError::Syntax {
                file,
                line,
                message,
            }) => {
                assert_eq!(file, Path::new("/etc/baton/baton.toml"));
                assert_eq!(line, 5, "{message}");
            }
            other => panic!("expected syntax error, got {other:?}"),
        }
        let err = load_one("[node]\nname = \"a\"\n[node]\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Syntax { line: 3, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("/etc/baton/baton.toml:3: "),
            "{err}"
        );
    }

    // --- merging --------------------------------------------------------------

    #[test]
    fn tables_merge_and_arrays_replace() {
        let fragments = [
            frag("vendor.toml", &with_voters("{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 2, name = \"b\", address = \"h:2\" },\n")),
            frag("main.toml", "[node]\nstate_dir = \"/srv/baton\"\n[cluster]\nvoters = [{ id = 9, name = \"z\", address = \"h:9\" }]\n"),
        ];
        let settings = Settings::from_fragments(&fragments).unwrap();
        assert_eq!(settings.node.name, "n1");
        assert_eq!(settings.node.state_dir, Path::new("/srv/baton"));
        assert_eq!(settings.cluster.voters.len(), 1);
        assert_eq!(settings.cluster.voters[0].id, 9);
        assert_eq!(
            settings.sources,
            vec![PathBuf::from("vendor.toml"), PathBuf::from("main.toml")]
        );
    }

    #[test]
    fn errors_point_at_the_value_in_force() {
        // The first fragment's bad value is overridden, so it is not reported;
        // the second fragment's bad value is, with that fragment's location.
        let fragments = [
            frag(
                "a.toml",
                &format!("{MINIMAL}[lease]\nwaiter_ttl = \"bad\"\n"),
            ),
            frag("b.toml", "\n\n[lease]\nwaiter_ttl = \"0s\"\n"),
        ];
        assert_invalid(
            Settings::from_fragments(&fragments),
            "b.toml",
            "lease.waiter_ttl",
            4,
        );
        let fragments = [
            frag(
                "a.toml",
                &format!("{MINIMAL}[lease]\nwaiter_ttl = \"bad\"\n"),
            ),
            frag("b.toml", "[lease]\nwaiter_ttl = \"5s\"\n"),
        ];
        assert!(Settings::from_fragments(&fragments).is_ok());
    }

    // --- updates, reboot, hooks, kubernetes -------------------------------------

    const FULL_EXAMPLE: &str = r#"[node]
name = "worker-7"
group = "workers"

[cluster]
voters = [ { id = 1, name = "cp-1", address = "10.0.0.1:7421" } ]

[updates]
source = "apt"
check_interval = "6h"

[reboot]
time_zone = "Europe/Berlin"
[[reboot.window]]
days = ["Mon", "Tue", "Wed", "Thu"]
start = "22:30"
length = "3h"
[[reboot.blocker]]
command = ["/usr/local/bin/no-active-backups"]
timeout = "30s"

[[hooks.before_reboot]]
command = ["/usr/local/bin/stop-workload"]
timeout = "2m"
force = true
[[hooks.after_reboot]]
command = ["/usr/local/bin/health-check"]

[kubernetes]
kubeconfig = "/etc/kubernetes/kubelet.conf"
drain_timeout = "15m"
pod_selector = "app!=critical"
"#;

    fn with(text: &str) -> String {
        format!("{MINIMAL}{text}")
    }

    fn command(argv: &[&str], timeout: Duration, force: bool) -> CommandSettings {
        CommandSettings {
            command: argv.iter().map(|s| s.to_string()).collect(),
            timeout,
            force,
        }
    }

    #[test]
    fn full_example_parses_as_written() {
        let settings = load_one(FULL_EXAMPLE).unwrap();
        assert_eq!(settings.node.name, "worker-7");
        assert_eq!(settings.node.group, "workers");
        assert_eq!(settings.cluster.listen, None);
        assert_eq!(settings.this_voter(), None);
        assert_eq!(
            settings.updates,
            UpdateSettings {
                source: UpdateSourceKind::Apt,
                check_interval: Some(Duration::from_secs(6 * 3600)),
                poll_interval: Duration::from_secs(10),
                dbus_address: None,
                os_release: "/etc/os-release".into(),
                reboot_required: "/var/run/reboot-required".into(),
                unattended_upgrade: vec![
                    "systemctl".into(),
                    "start".into(),
                    "apt-daily-upgrade.service".into(),
                ],
                apt_conf_dir: "/etc/apt/apt.conf.d".into(),
                sentinel_file: None,
                sentinel_command: None,
            }
        );
        assert_eq!(
            settings.reboot,
            RebootSettings {
                method: RebootMethod::Logind,
                time_zone: "Europe/Berlin".into(),
                windows: vec![WindowSettings {
                    days: vec![
                        Weekday::Monday,
                        Weekday::Tuesday,
                        Weekday::Wednesday,
                        Weekday::Thursday
                    ],
                    start: Time::new(22, 30, 0, 0).unwrap(),
                    length: Duration::from_secs(3 * 3600),
                }],
                blockers: vec![command(
                    &["/usr/local/bin/no-active-backups"],
                    Duration::from_secs(30),
                    false
                )],
                blocker_retry: Duration::from_secs(60),
                boot_id_path: "/proc/sys/kernel/random/boot_id".into(),
            }
        );
        assert_eq!(
            settings.hooks,
            HookSettings {
                before_reboot: vec![command(
                    &["/usr/local/bin/stop-workload"],
                    Duration::from_secs(120),
                    true
                )],
                after_reboot: vec![command(
                    &["/usr/local/bin/health-check"],
                    Duration::from_secs(300),
                    false
                )],
            }
        );
        assert_eq!(
            settings.kubernetes,
            Some(KubernetesSettings {
                kubeconfig: Some("/etc/kubernetes/kubelet.conf".into()),
                node_name: "worker-7".into(),
                drain_timeout: Duration::from_secs(15 * 60),
                grace_period: None,
                pod_selector: Some("app!=critical".into()),
                ready_timeout: Duration::from_secs(600),
                eviction_retry: Duration::from_secs(5),
            })
        );
    }

    #[test]
    fn every_new_key_can_be_set() {
        let text = with(
            "[updates]\nsource = \"sentinel\"\npoll_interval = \"1m\"\n\
             dbus_address = \"unix:path=/run/dbus/system_bus_socket\"\n\
             os_release = \"/usr/lib/os-release\"\nreboot_required = \"/run/reboot-required\"\n\
             unattended_upgrade = [\"/usr/bin/unattended-upgrade\", \"-v\"]\n\
             apt_conf_dir = \"/etc/apt/conf.d\"\nsentinel_command = [\"/bin/check\", \"\"]\n\
             [reboot]\nmethod = \"command\"\ncommand = [\"/usr/sbin/shutdown\", \"-r\", \"now\"]\n\
             time_zone = \"UTC\"\nblocker_retry = \"10s\"\nboot_id_path = \"/tmp/boot_id\"\n\
             window = [{ start = \"7:05\", length = \"168h\" }, \
                       { days = [\"sunday\", \"SAT\", \"Sun\"], start = \"00:00\", length = \"1m\" }]\n\
             [kubernetes]\nnode_name = \"k8s-n1\"\ngrace_period = \"45s\"\n\
             ready_timeout = \"20m\"\neviction_retry = \"1s\"\n",
        );
        let settings = load_one(&text).unwrap();
        let u = &settings.updates;
        assert_eq!(u.source, UpdateSourceKind::Sentinel);
        assert_eq!(u.poll_interval, Duration::from_secs(60));
        assert_eq!(
            u.dbus_address.as_deref(),
            Some("unix:path=/run/dbus/system_bus_socket")
        );
        assert_eq!(u.os_release, Path::new("/usr/lib/os-release"));
        assert_eq!(u.reboot_required, Path::new("/run/reboot-required"));
        assert_eq!(u.unattended_upgrade, ["/usr/bin/unattended-upgrade", "-v"]);
        assert_eq!(u.apt_conf_dir, Path::new("/etc/apt/conf.d"));
        // An explicit command means no default sentinel file.
        assert_eq!(u.sentinel_file, None);
        assert_eq!(
            u.sentinel_command,
            Some(vec!["/bin/check".to_owned(), String::new()])
        );
        let r = &settings.reboot;
        assert_eq!(
            r.method,
            RebootMethod::Command(vec!["/usr/sbin/shutdown".into(), "-r".into(), "now".into()])
        );
        assert_eq!(r.time_zone, "UTC");
        assert_eq!(r.blocker_retry, Duration::from_secs(10));
        assert_eq!(r.boot_id_path, Path::new("/tmp/boot_id"));
        assert_eq!(r.windows.len(), 2);
        assert_eq!(r.windows[0].days.len(), 7);
        assert_eq!(r.windows[0].days[0], Weekday::Monday);
        assert_eq!(r.windows[0].start, Time::new(7, 5, 0, 0).unwrap());
        assert_eq!(r.windows[0].length, Duration::from_secs(7 * 24 * 3600));
        // Any case, full names, duplicates dropped, Monday first.
        assert_eq!(r.windows[1].days, [Weekday::Saturday, Weekday::Sunday]);
        let k = settings.kubernetes.unwrap();
        assert_eq!(k.node_name, "k8s-n1");
        assert_eq!(k.kubeconfig, None);
        assert_eq!(k.grace_period, Some(Duration::from_secs(45)));
        assert_eq!(k.ready_timeout, Duration::from_secs(1200));
        assert_eq!(k.eviction_retry, Duration::from_secs(1));
        assert_eq!(k.drain_timeout, Duration::from_secs(600));
    }

    #[test]
    fn sentinel_file_defaults_only_for_the_sentinel_source() {
        let settings = load_one(&with("[updates]\nsource = \"sentinel\"\n")).unwrap();
        assert_eq!(
            settings.updates.sentinel_file.as_deref(),
            Some(Path::new("/var/run/reboot-required"))
        );
        let settings = load_one(&with("[updates]\nsource = \"flatcar\"\n")).unwrap();
        assert_eq!(settings.updates.source, UpdateSourceKind::Flatcar);
        assert_eq!(settings.updates.sentinel_file, None);
        let settings = load_one(&with(
            "[updates]\nsource = \"sentinel\"\nsentinel_file = \"/run/need-reboot\"\n",
        ))
        .unwrap();
        assert_eq!(
            settings.updates.sentinel_file.as_deref(),
            Some(Path::new("/run/need-reboot"))
        );
    }

    #[test]
    fn kubernetes_is_present_only_with_its_table() {
        assert_eq!(load_one(MINIMAL).unwrap().kubernetes, None);
        // An empty table enables it with every default, node name included.
        let k = load_one(&with("[kubernetes]\n"))
            .unwrap()
            .kubernetes
            .unwrap();
        assert_eq!(k.node_name, "n1");
        assert_eq!(k.kubeconfig, None);
        assert_eq!(k.drain_timeout, Duration::from_secs(600));
        assert_eq!(k.pod_selector, None);
        // A table from any fragment counts.
        let fragments = [
            frag("main.toml", MINIMAL),
            frag("50-k8s.toml", "[kubernetes]\n"),
            frag("60-other.toml", "[lease]\nwaiter_ttl = \"1m\"\n"),
        ];
        let settings = Settings::from_fragments(&fragments).unwrap();
        assert!(settings.kubernetes.is_some());
    }

    #[test]
    fn kubernetes_node_name_must_be_valid() {
        assert_invalid_one(
            &with("[kubernetes]\nnode_name = \"a b\"\n"),
            "kubernetes.node_name",
            6,
        );
    }

    #[test]
    fn unknown_keys_in_new_tables_and_entries() {
        for (text, key, line) in [
            ("[updates]\nsorce = \"apt\"\n", "updates.sorce", 6),
            ("[reboot]\n\nmethode = \"logind\"\n", "reboot.methode", 7),
            ("[reboot]\nwindows = []\n", "reboot.windows", 6),
            (
                "[[reboot.window]]\nstart = \"01:00\"\nlenght = \"1h\"\n",
                "reboot.window[0].lenght",
                7,
            ),
            (
                "[[reboot.blocker]]\ncommand = [\"a\"]\n[[reboot.blocker]]\ncmd = [\"b\"]\n",
                "reboot.blocker[1].cmd",
                8,
            ),
            ("[hooks]\nbefore = []\n", "hooks.before", 6),
            (
                "[[hooks.before_reboot]]\ncommand = [\"a\"]\ntimout = \"1s\"\n",
                "hooks.before_reboot[0].timout",
                7,
            ),
            (
                "[hooks]\nafter_reboot = [{ command = [\"a\"], retries = 3 }]\n",
                "hooks.after_reboot[0].retries",
                6,
            ),
            (
                "[kubernetes]\nkube_config = \"/x\"\n",
                "kubernetes.kube_config",
                6,
            ),
        ] {
            let message = assert_invalid_one(&with(text), key, line);
            assert!(message.starts_with("unknown key"), "{key}: {message}");
        }
    }

    #[test]
    fn wrong_types_in_new_tables() {
        for (text, key, line) in [
            (
                "[[hooks.before_reboot]]\ncommand = [\"a\"]\nforce = \"yes\"\n",
                "hooks.before_reboot[0].force",
                7,
            ),
            (
                "[[reboot.window]]\ndays = \"Mon\"\n",
                "reboot.window[0].days",
                6,
            ),
            ("[reboot]\ncommand = \"reboot\"\n", "reboot.command", 6),
            (
                "[reboot]\nwindow = [\"Mon 02:00\"]\n",
                "reboot.window[0]",
                6,
            ),
            ("[hooks]\nbefore_reboot = 1\n", "hooks.before_reboot", 6),
        ] {
            let message = assert_invalid_one(&with(text), key, line);
            assert!(message.contains("invalid type"), "{key}: {message}");
        }
        let message = assert_invalid_one(&format!("kubernetes = true\n{MINIMAL}"), "kubernetes", 1);
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn update_source_must_be_known() {
        let message =
            assert_invalid_one(&with("[updates]\nsource = \"yum\"\n"), "updates.source", 6);
        assert!(message.contains("\"sentinel\""), "{message}");
        // Values are case-sensitive, like every other enumerated key.
        assert_invalid_one(&with("[updates]\nsource = \"Apt\"\n"), "updates.source", 6);
    }

    #[test]
    fn sentinel_file_and_command_are_exclusive() {
        let text =
            with("[updates]\nsentinel_file = \"/run/x\"\nsentinel_command = [\"/bin/check\"]\n");
        let message = assert_invalid_one(&text, "updates.sentinel_command", 7);
        assert!(message.contains("baton.toml:6"), "{message}");
        // Across fragments, the later one is blamed and the other located.
        let fragments = [
            frag(
                "main.toml",
                &with("[updates]\nsentinel_command = [\"c\"]\n"),
            ),
            frag("50-file.toml", "[updates]\nsentinel_file = \"/run/x\"\n"),
        ];
        let message = assert_invalid(
            Settings::from_fragments(&fragments),
            "50-file.toml",
            "updates.sentinel_file",
            2,
        );
        assert!(message.contains("main.toml:6"), "{message}");
    }

    #[test]
    fn reboot_method_must_be_known() {
        let message = assert_invalid_one(
            &with("[reboot]\nmethod = \"systemctl\"\n"),
            "reboot.method",
            6,
        );
        assert!(message.contains("\"logind\""), "{message}");
    }

    #[test]
    fn method_command_needs_a_command() {
        let message = assert_invalid_one(
            &with("[reboot]\nmethod = \"command\"\n"),
            "reboot.method",
            6,
        );
        assert!(message.contains("reboot.command"), "{message}");
    }

    #[test]
    fn command_is_only_for_method_command() {
        let message = assert_invalid_one(
            &with("[reboot]\ncommand = [\"/sbin/reboot\"]\n"),
            "reboot.command",
            6,
        );
        assert!(message.contains("the default"), "{message}");
        let message = assert_invalid_one(
            &with("[reboot]\nmethod = \"logind\"\n\ncommand = [\"/sbin/reboot\"]\n"),
            "reboot.command",
            8,
        );
        assert!(message.contains("baton.toml:6"), "{message}");
    }

    #[test]
    fn command_arrays_must_not_be_empty() {
        let hooks = "[[hooks.before_reboot]]\ncommand = [\"a\"]\n\
                     [[hooks.before_reboot]]\ncommand = []\n";
        let message = assert_invalid_one(&with(hooks), "hooks.before_reboot[1].command", 8);
        assert!(message.contains("must not be empty"), "{message}");
        for (text, key, line) in [
            (
                "[reboot]\nmethod = \"command\"\ncommand = []\n",
                "reboot.command",
                7,
            ),
            (
                "[updates]\nsentinel_command = []\n",
                "updates.sentinel_command",
                6,
            ),
            (
                "[updates]\nunattended_upgrade = []\n",
                "updates.unattended_upgrade",
                6,
            ),
            (
                "[reboot]\nblocker = [{ command = [] }]\n",
                "reboot.blocker[0].command",
                6,
            ),
            (
                "[hooks]\nafter_reboot = [{ command = [\"\", \"x\"] }]\n",
                "hooks.after_reboot[0].command[0]",
                6,
            ),
            (
                "[updates]\nsentinel_command = [\"/bin/x\", \"a\\u0000b\"]\n",
                "updates.sentinel_command[1]",
                6,
            ),
        ] {
            assert_invalid_one(&with(text), key, line);
        }
    }

    #[test]
    fn command_entries_need_a_command() {
        let text = with("[[reboot.blocker]]\ntimeout = \"1s\"\n");
        let message = assert_invalid_one(&text, "reboot.blocker[0].command", 5);
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn force_is_only_for_before_reboot_hooks() {
        let text = with("[[reboot.blocker]]\ncommand = [\"a\"]\nforce = true\n");
        assert_invalid_one(&text, "reboot.blocker[0].force", 7);
        let text = with("[[hooks.after_reboot]]\ncommand = [\"a\"]\nforce = false\n");
        assert_invalid_one(&text, "hooks.after_reboot[0].force", 7);
    }

    fn with_window(body: &str) -> String {
        with(&format!("[[reboot.window]]\n{body}"))
    }

    #[test]
    fn window_start_must_be_hh_mm() {
        for bad in [
            "25:00", "24:00", "2am", "12:60", "1:5", "", "12:00:00", "123:00", "-1:00", "+1:00",
            " 1:00", "22.30",
        ] {
            let text = with_window(&format!("start = \"{bad}\"\nlength = \"1h\"\n"));
            let message = assert_invalid_one(&text, "reboot.window[0].start", 6);
            assert!(message.contains("HH:MM"), "{bad}: {message}");
        }
        for (good, hour, minute) in [("00:00", 0, 0), ("23:59", 23, 59), ("7:05", 7, 5)] {
            assert_eq!(
                parse_time_of_day(good),
                Ok(Time::new(hour, minute, 0, 0).unwrap()),
                "{good}"
            );
        }
    }

    #[test]
    fn window_days_must_be_known() {
        let text =
            with_window("days = [\"Mon\", \"Funday\"]\nstart = \"01:00\"\nlength = \"1h\"\n");
        let message = assert_invalid_one(&text, "reboot.window[0].days[1]", 6);
        assert!(message.contains("\"Funday\""), "{message}");
        for bad in ["M", "tues", "Mo", ""] {
            assert_eq!(parse_weekday(bad), None, "{bad}");
        }
        let text = with_window("days = []\nstart = \"01:00\"\nlength = \"1h\"\n");
        assert_invalid_one(&text, "reboot.window[0].days", 6);
    }

    #[test]
    fn window_length_must_be_positive_and_at_most_a_week() {
        for (bad, why) in [
            ("0s", "greater than zero"),
            ("168h1s", "longer than a week"),
            ("200h", "longer than a week"),
            ("1d", "invalid duration"),
        ] {
            let text = with_window(&format!("start = \"01:00\"\nlength = \"{bad}\"\n"));
            let message = assert_invalid_one(&text, "reboot.window[0].length", 7);
            assert!(message.contains(why), "{bad}: {message}");
        }
    }

    #[test]
    fn window_start_and_length_are_required() {
        let text = with(
            "[[reboot.window]]\nstart = \"01:00\"\nlength = \"1h\"\n[[reboot.window]]\nlength = \"1h\"\n",
        );
        assert_invalid_one(&text, "reboot.window[1].start", 8);
        let text = with("[reboot]\nwindow = [{ start = \"01:00\" }]\n");
        assert_invalid_one(&text, "reboot.window[0].length", 6);
    }

    #[test]
    fn time_zone_must_be_known() {
        for bad in ["Mars/Olympus_Mons", "", "Europe/berlin-ish", "local"] {
            let text = with(&format!("[reboot]\ntime_zone = \"{bad}\"\n"));
            let message = assert_invalid_one(&text, "reboot.time_zone", 6);
            assert!(message.contains("unknown time zone"), "{bad}: {message}");
        }
        for good in ["localtime", "UTC", "America/New_York"] {
            let text = with(&format!("[reboot]\ntime_zone = \"{good}\"\n"));
            assert_eq!(load_one(&text).unwrap().reboot.time_zone, good);
        }
    }

    #[test]
    fn new_durations_must_parse_and_be_positive() {
        for (table, key) in [
            ("updates", "check_interval"),
            ("updates", "poll_interval"),
            ("reboot", "blocker_retry"),
            ("kubernetes", "drain_timeout"),
            ("kubernetes", "grace_period"),
            ("kubernetes", "ready_timeout"),
            ("kubernetes", "eviction_retry"),
        ] {
            for (bad, why) in [("0s", "greater than zero"), ("later", "invalid duration")] {
                let text = with(&format!("[{table}]\n{key} = \"{bad}\"\n"));
                let message = assert_invalid_one(&text, &format!("{table}.{key}"), 6);
                assert!(message.contains(why), "{table}.{key} = {bad}: {message}");
            }
        }
        for entry in [
            "[[reboot.blocker]]",
            "[[hooks.before_reboot]]",
            "[[hooks.after_reboot]]",
        ] {
            let key = format!("{}[0].timeout", entry.trim_matches(['[', ']']));
            for bad in ["0ms", "5 mins please"] {
                let text = with(&format!(
                    "{entry}\ncommand = [\"a\"]\ntimeout = \"{bad}\"\n"
                ));
                assert_invalid_one(&text, &key, 7);
            }
        }
    }

    #[test]
    fn pod_selector_must_not_be_empty() {
        for bad in ["", "  "] {
            let text = with(&format!("[kubernetes]\npod_selector = \"{bad}\"\n"));
            assert_invalid_one(&text, "kubernetes.pod_selector", 6);
        }
    }

    #[test]
    fn new_paths_must_be_absolute() {
        for (table, key) in [
            ("updates", "os_release"),
            ("updates", "reboot_required"),
            ("updates", "apt_conf_dir"),
            ("updates", "sentinel_file"),
            ("reboot", "boot_id_path"),
            ("kubernetes", "kubeconfig"),
        ] {
            for bad in ["relative/path", ""] {
                let text = with(&format!("[{table}]\n{key} = \"{bad}\"\n"));
                let message = assert_invalid_one(&text, &format!("{table}.{key}"), 6);
                assert!(message.contains("absolute"), "{table}.{key}: {message}");
            }
        }
    }

    #[test]
    fn dbus_address_must_look_like_one() {
        let text = with("[updates]\ndbus_address = \"/run/dbus/system_bus_socket\"\n");
        assert_invalid_one(&text, "updates.dbus_address", 6);
    }

    #[test]
    fn arrays_of_tables_replace_earlier_fragments() {
        let vendor = with(
            "[reboot]\ntime_zone = \"UTC\"\n\
             [[reboot.window]]\nstart = \"01:00\"\nlength = \"1h\"\n\
             [[reboot.window]]\nstart = \"02:00\"\nlength = \"1h\"\n\
             [[reboot.blocker]]\ncommand = [\"vendor-blocker\"]\n\
             [[hooks.before_reboot]]\ncommand = [\"vendor-before\"]\n\
             [[hooks.after_reboot]]\ncommand = [\"vendor-after\"]\n",
        );
        let local = "[[reboot.window]]\nstart = \"03:00\"\nlength = \"2h\"\n\
                     [[hooks.before_reboot]]\ncommand = [\"local-before\"]\n";
        let fragments = [frag("vendor.toml", &vendor), frag("local.toml", local)];
        let settings = Settings::from_fragments(&fragments).unwrap();
        let r = &settings.reboot;
        // Replaced, not appended.
        assert_eq!(r.windows.len(), 1);
        assert_eq!(r.windows[0].start, Time::new(3, 0, 0, 0).unwrap());
        // Keys the later fragment does not set survive: tables still merge.
        assert_eq!(r.time_zone, "UTC");
        assert_eq!(r.blockers[0].command, ["vendor-blocker"]);
        assert_eq!(settings.hooks.before_reboot.len(), 1);
        assert_eq!(settings.hooks.before_reboot[0].command, ["local-before"]);
        assert_eq!(settings.hooks.after_reboot[0].command, ["vendor-after"]);

        // An empty array clears the earlier one.
        let fragments = [
            frag("vendor.toml", &vendor),
            frag("local.toml", "[reboot]\nwindow = []\nblocker = []\n"),
        ];
        let settings = Settings::from_fragments(&fragments).unwrap();
        assert!(settings.reboot.windows.is_empty());
        assert!(settings.reboot.blockers.is_empty());
        assert_eq!(settings.hooks.before_reboot.len(), 1);

        // Errors in a replaced array are not reported; in the new one they
        // name the later fragment.
        let bad_vendor = with("[[reboot.window]]\nstart = \"99:00\"\nlength = \"1h\"\n");
        let fragments = [frag("vendor.toml", &bad_vendor), frag("local.toml", local)];
        assert!(Settings::from_fragments(&fragments).is_ok());
        let fragments = [
            frag("vendor.toml", &vendor),
            frag(
                "local.toml",
                "[[reboot.window]]\nstart = \"3pm\"\nlength = \"1h\"\n",
            ),
        ];
        assert_invalid(
            Settings::from_fragments(&fragments),
            "local.toml",
            "reboot.window[0].start",
            2,
        );
    }

    #[test]
    fn new_tables_merge_key_by_key() {
        let fragments = [
            frag(
                "vendor.toml",
                &with("[updates]\nsource = \"apt\"\n[kubernetes]\ndrain_timeout = \"5m\"\n"),
            ),
            frag(
                "local.toml",
                "[updates]\ncheck_interval = \"1h\"\n[kubernetes]\npod_selector = \"a=b\"\n",
            ),
        ];
        let settings = Settings::from_fragments(&fragments).unwrap();
        assert_eq!(settings.updates.source, UpdateSourceKind::Apt);
        assert_eq!(
            settings.updates.check_interval,
            Some(Duration::from_secs(3600))
        );
        let k = settings.kubernetes.unwrap();
        assert_eq!(k.drain_timeout, Duration::from_secs(300));
        assert_eq!(k.pod_selector.as_deref(), Some("a=b"));
    }

    // --- files (through `load`) ----------------------------------------------

    struct Tree {
        _dir: tempfile::TempDir,
        main: PathBuf,
        local: PathBuf,
        vendor: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/baton");
        Tree {
            main: etc.join("baton.toml"),
            local: etc.join("baton.d"),
            vendor: dir.path().join("usr/lib/baton/baton.d"),
            _dir: dir,
        }
    }

    #[test]
    fn load_reads_main_file_without_drop_in_dirs() {
        let t = tree();
        write(&t.main, EXAMPLE);
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.node.name, "cp-1");
        assert_eq!(settings.sources, vec![t.main.clone()]);
    }

    #[test]
    fn drop_in_overrides_main() {
        let t = tree();
        write(&t.main, EXAMPLE);
        write(
            &t.local.join("50-ttl.toml"),
            "[lease]\nwaiter_ttl = \"45s\"\n",
        );
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(45));
        // Untouched keys of the same table survive.
        assert_eq!(settings.lease.default_max_holders, 1);
    }

    #[test]
    fn main_overrides_vendor_and_order_is_vendor_main_local() {
        let t = tree();
        write(
            &t.vendor.join("10-defaults.toml"),
            "[lease]\nwaiter_ttl = \"1m\"\ndefault_max_holders = 4\n",
        );
        write(&t.main, &format!("{MINIMAL}[lease]\nwaiter_ttl = \"2m\"\n"));
        write(
            &t.local.join("20-local.toml"),
            "[node]\ngroup = \"canary\"\n",
        );
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(120));
        assert_eq!(settings.lease.default_max_holders, 4);
        assert_eq!(settings.node.group, "canary");
        assert_eq!(
            settings.sources,
            vec![
                t.vendor.join("10-defaults.toml"),
                t.main.clone(),
                t.local.join("20-local.toml")
            ]
        );
    }

    #[test]
    fn drop_ins_apply_in_name_order() {
        let t = tree();
        write(&t.main, MINIMAL);
        write(
            &t.local.join("20-b.toml"),
            "[lease]\nwaiter_ttl = \"20s\"\n",
        );
        write(
            &t.local.join("10-a.toml"),
            "[lease]\nwaiter_ttl = \"10s\"\n",
        );
        write(&t.local.join("30-c.toml"), "[node]\ngroup = \"c\"\n");
        // Not drop-ins: wrong extension, hidden, a directory.
        write(&t.local.join("99-z.toml.bak"), "garbage =");
        write(&t.local.join(".99-z.toml"), "garbage =");
        std::fs::create_dir_all(t.local.join("98-dir.toml")).unwrap();
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(20));
        assert_eq!(
            settings.sources,
            vec![
                t.main.clone(),
                t.local.join("10-a.toml"),
                t.local.join("20-b.toml"),
                t.local.join("30-c.toml"),
            ]
        );
    }

    #[test]
    fn local_drop_in_masks_same_named_vendor_drop_in() {
        let t = tree();
        write(
            &t.vendor.join("10-x.toml"),
            "[lease]\ndefault_max_holders = 9\n",
        );
        write(
            &t.vendor.join("20-y.toml"),
            "[lease]\nwaiter_ttl = \"9s\"\n",
        );
        write(&t.main, MINIMAL);
        write(&t.local.join("10-x.toml"), "");
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.lease.default_max_holders, 1);
        assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(9));
        assert_eq!(
            settings.sources,
            vec![
                t.vendor.join("20-y.toml"),
                t.main.clone(),
                t.local.join("10-x.toml")
            ]
        );
    }

    #[test]
    fn dev_null_symlink_masks_vendor_drop_in() {
        let t = tree();
        write(
            &t.vendor.join("10-x.toml"),
            "[lease]\ndefault_max_holders = 9\n",
        );
        write(&t.main, MINIMAL);
        std::fs::create_dir_all(&t.local).unwrap();
        std::os::unix::fs::symlink("/dev/null", t.local.join("10-x.toml")).unwrap();
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.lease.default_max_holders, 1);
        assert_eq!(
            settings.sources,
            vec![t.main.clone(), t.local.join("10-x.toml")]
        );
    }

    #[test]
    fn errors_in_drop_ins_name_the_drop_in() {
        let t = tree();
        write(&t.main, MINIMAL);
        let drop_in = t.local.join("50-bad.toml");
        write(&drop_in, "# comment\n[lease]\ndefault_max_holders = 0\n");
        let result = Settings::load(&t.main, &t.vendor);
        assert_invalid(
            result,
            drop_in.to_str().unwrap(),
            "lease.default_max_holders",
            3,
        );

        write(&drop_in, "[lease]\nwaiter_tll = \"1s\"\n");
        let result = Settings::load(&t.main, &t.vendor);
        assert_invalid(result, drop_in.to_str().unwrap(), "lease.waiter_tll", 2);

        write(&drop_in, "[lease\n");
        let err = Settings::load(&t.main, &t.vendor).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Syntax { file, line: 1, .. } if *file == drop_in),
            "{err:?}"
        );

        let vendor_file = t.vendor.join("10-vendor.toml");
        std::fs::remove_file(&drop_in).unwrap();
        write(&vendor_file, "\n[cluster]\nlisten = \"nope\"\n");
        write(&t.main, "[node]\nname = \"n1\"\n");
        let result = Settings::load(&t.main, &t.vendor);
        assert_invalid(result, vendor_file.to_str().unwrap(), "cluster.listen", 3);
    }

    #[test]
    fn missing_main_file_is_an_error_naming_it() {
        let t = tree();
        let err = Settings::load(&t.main, &t.vendor).unwrap_err();
        match &err {
            ConfigError::Read { path, source } => {
                assert_eq!(path, &t.main);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Read error, got {other:?}"),
        }
        assert!(err.to_string().contains(t.main.to_str().unwrap()), "{err}");
    }

    #[test]
    fn missing_main_file_is_allowed_with_drop_ins() {
        let t = tree();
        write(&t.vendor.join("10-base.toml"), MINIMAL);
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.sources, vec![t.vendor.join("10-base.toml")]);

        let t = tree();
        write(&t.local.join("10-base.toml"), MINIMAL);
        let settings = Settings::load(&t.main, &t.vendor).unwrap();
        assert_eq!(settings.sources, vec![t.local.join("10-base.toml")]);
    }

    #[test]
    fn unreadable_main_file_is_an_error_even_with_drop_ins() {
        let t = tree();
        write(&t.local.join("10-base.toml"), MINIMAL);
        // A directory where the file should be: not NotFound, so not skipped.
        std::fs::create_dir_all(&t.main).unwrap();
        let err = Settings::load(&t.main, &t.vendor).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Read { path, .. } if *path == t.main),
            "{err:?}"
        );
    }

    #[test]
    fn line_of_counts_newlines_before_offset() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }
}
