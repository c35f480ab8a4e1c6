//! Configuration: TOML fragments merged into inputs and validated into `Settings`.
//!
//! Fragments are vendor drop-ins, the main file and local drop-ins, in that order.
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
//! One file per stage (`fragments`, `inputs`, `validate`) and one per
//! concern (`cluster`, `updates`, `reboot`, `kubernetes`, `tls`, `metrics`, `fleetlock`: each has its
//! settings and validates its own section). Config sits just above the
//! rules: names, durations and windows are checked with `rules`' own
//! parsers, so a value the config accepts is a value the rules accept.

mod blockers;
mod cluster;
mod fleetlock;
mod fragments;
mod inputs;
mod kubernetes;
mod metrics;
mod notify;
mod reboot;
mod tls;
mod updates;
mod validate;

#[cfg(test)]
mod kured_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use blockers::{BlockerSettings, PrometheusBlockerSettings};
pub use cluster::{ClusterSettings, LeaseSettings, NodeSettings, VoterSettings};
pub use fleetlock::FleetLockSettings;
pub use kubernetes::KubernetesSettings;
pub use metrics::MetricsSettings;
pub use notify::WebhookSettings;
pub use reboot::{CommandSettings, HookSettings, RebootMethod, RebootSettings, LOCALTIME};
pub use tls::{TlsFiles, TlsSettings};
pub use updates::{UpdateSettings, UpdateSourceKind};

use fragments::{list_drop_ins, parse_fragment, read_fragment, read_host_name, DROP_IN_DIR_NAME};
use inputs::Inputs;
use validate::Validator;

/// Main configuration file read when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/baton/baton.toml";

/// Directory of vendor (distribution-shipped) drop-ins, read before everything else.
pub const DEFAULT_VENDOR_DIR: &str = "/usr/lib/baton/baton.d";

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
    /// Mutual TLS for every connection, or plaintext when asked for.
    pub tls: TlsSettings,
    /// The Prometheus endpoint; `None` (the default) when `[metrics] listen` is not set.
    pub metrics: Option<MetricsSettings>,
    /// The FleetLock endpoint (voters); `None` (the default) when `[fleetlock] listen` is not set.
    pub fleetlock: Option<FleetLockSettings>,
    /// `[blockers]`: Prometheus alerts and pods on the node that block a reboot.
    pub blockers: BlockerSettings,
    /// `[[notify.webhook]]`: told when the host drains, reboots, is back or failed.
    pub notify: Vec<WebhookSettings>,
    /// Fragments that were read, in merge order.
    pub sources: Vec<PathBuf>,
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
