//! Configuration: TOML fragments (vendor drop-ins, main file, local drop-ins) merged and validated into Settings.
//!
//! Loading happens in three stages, in the manner of Zincati:
//!
//! 1. **Fragments**: every file is deserialized on its own into `Fragment*`
//!    structs whose fields are all optional and spanned, with unknown keys
//!    rejected. Syntax, unknown-key and wrong-type errors therefore point at
//!    the file that contains them.
//! 2. **Inputs**: fragments are overlaid in merge order, key by key (tables
//!    merge, scalars and arrays replace). Each merged value remembers which
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
const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(400);
const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_MAX_HOLDERS: u32 = 1;
const DEFAULT_WAITER_TTL: Duration = Duration::from_secs(30);

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
    /// Address the gRPC server binds to.
    pub listen: SocketAddr,
    /// Raft voters; empty means this node only runs as a client.
    pub voters: Vec<VoterSettings>,
    /// Raft heartbeat interval (default 100ms).
    pub heartbeat_interval: Duration,
    /// Minimum raft election timeout; the maximum is twice this (default 400ms).
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
    cluster: Option<FragmentCluster>,
    lease: Option<FragmentLease>,
}

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

/// Replaces `slot` with `value` if the later fragment sets it.
fn overlay<T>(slot: &mut Option<Located<T>>, value: Option<Spanned<T>>, fragment: usize) {
    if let Some(value) = value {
        let span = value.span();
        *slot = Some(Located {
            value: value.into_inner(),
            fragment,
            span,
        });
    }
}

#[derive(Debug, Default)]
struct Inputs {
    node: NodeInputs,
    cluster: ClusterInputs,
    lease: LeaseInputs,
}

#[derive(Debug, Default)]
struct NodeInputs {
    name: Option<Located<String>>,
    state_dir: Option<Located<String>>,
    group: Option<Located<String>>,
}

#[derive(Debug, Default)]
struct ClusterInputs {
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

impl Inputs {
    /// Overlays a later fragment: tables merge, scalars and arrays replace.
    fn overlay(&mut self, fragment: Fragment, index: usize) {
        if let Some(node) = fragment.node {
            let n = &mut self.node;
            overlay(&mut n.name, node.name, index);
            overlay(&mut n.state_dir, node.state_dir, index);
            overlay(&mut n.group, node.group, index);
        }
        if let Some(cluster) = fragment.cluster {
            let c = &mut self.cluster;
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
        Ok(Settings {
            node: self.node(inputs.node, host_name)?,
            cluster: self.cluster(inputs.cluster)?,
            lease: self.lease(inputs.lease)?,
            sources: Vec::new(),
        })
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
        let state_dir = match inputs.state_dir {
            Some(dir) => {
                // The daemon may chdir or run from anywhere; a relative path
                // would silently split its state.
                if !Path::new(&dir.value).is_absolute() {
                    return Err(self.error(
                        &dir,
                        "node.state_dir",
                        format!("{:?} is not an absolute path", dir.value),
                    ));
                }
                PathBuf::from(dir.value)
            }
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };
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

    fn cluster(&self, inputs: ClusterInputs) -> Result<ClusterSettings, ConfigError> {
        let listen = inputs.listen.ok_or_else(|| ConfigError::Missing {
            key: "cluster.listen".to_owned(),
        })?;
        let listen = listen.value.parse::<SocketAddr>().map_err(|e| {
            self.error(
                &listen,
                "cluster.listen",
                format!("invalid socket address {:?}: {e}", listen.value),
            )
        })?;

        let voters = match inputs.voters {
            Some(voters) => self.voters(voters)?,
            None => Vec::new(),
        };

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
        let hold_timeout = inputs
            .hold_timeout
            .as_ref()
            .map(|at| self.parse_duration(at, "lease.hold_timeout"))
            .transpose()?;
        Ok(LeaseSettings {
            default_max_holders,
            waiter_ttl,
            hold_timeout,
        })
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
                    listen: "127.0.0.1:7421".parse().unwrap(),
                    voters: (1..=3)
                        .map(|i| VoterSettings {
                            id: i,
                            name: format!("cp-{i}"),
                            address: format!("127.0.0.1:742{i}"),
                        })
                        .collect(),
                    heartbeat_interval: Duration::from_millis(100),
                    election_timeout: Duration::from_millis(400),
                    snapshot_every: 1000,
                    connect_timeout: Duration::from_secs(1),
                    request_timeout: Duration::from_secs(3),
                },
                lease: LeaseSettings {
                    default_max_holders: 1,
                    waiter_ttl: Duration::from_secs(30),
                    hold_timeout: None,
                },
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
        assert_eq!(settings.cluster.listen.port(), 7422);
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
    fn listen_is_required() {
        let err = load_one("[node]\nname = \"n1\"\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Missing { key } if key == "cluster.listen"),
            "{err:?}"
        );
        assert!(err.to_string().contains("cluster.listen"), "{err}");
        // No fragments at all is the same situation.
        assert!(matches!(
            Settings::from_fragments(&[]),
            Err(ConfigError::Missing { .. })
        ));
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
