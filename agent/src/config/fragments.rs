//! Loading, stage 1: each file deserialized on its own, every key optional and spanned.
//!
//! Syntax, unknown-key and wrong-type errors are found here, so they point
//! at the file that holds them; the dotted key of a serde error is found by
//! walking the spanned TOML tree.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::ConfigError;

/// Name of the local drop-in directory, next to the main file.
pub(super) const DROP_IN_DIR_NAME: &str = "baton.d";

/// Where the kernel exposes this host's name; read for the `node.name` default.
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// `*.toml` entries of a drop-in directory, sorted by file name.
pub(super) fn list_drop_ins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
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

pub(super) fn read_fragment(path: PathBuf) -> Result<(PathBuf, String), ConfigError> {
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// The raw kernel host name, or `None` when it cannot be read.
pub(super) fn read_host_name() -> Option<String> {
    std::fs::read_to_string(HOSTNAME_PATH).ok()
}

/// One configuration file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct Fragment {
    pub(super) node: Option<FragmentNode>,
    /// Spanned so that a missing `cluster.listen` can point at the table.
    pub(super) cluster: Option<Spanned<FragmentCluster>>,
    pub(super) lease: Option<FragmentLease>,
    pub(super) updates: Option<FragmentUpdates>,
    pub(super) reboot: Option<FragmentReboot>,
    pub(super) hooks: Option<FragmentHooks>,
    pub(super) kubernetes: Option<FragmentKubernetes>,
    pub(super) tls: Option<FragmentTls>,
    pub(super) metrics: Option<FragmentMetrics>,
    pub(super) fleetlock: Option<FragmentFleetLock>,
    pub(super) blockers: Option<FragmentBlockers>,
    pub(super) notify: Option<FragmentNotify>,
}

/// A string array as written (command line, day list), each element spanned.
pub(super) type SpannedStrings = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentNode {
    pub(super) name: Option<Spanned<String>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) group: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentCluster {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) voters: Option<Spanned<Vec<Spanned<FragmentVoter>>>>,
    pub(super) heartbeat_interval: Option<Spanned<String>>,
    pub(super) election_timeout: Option<Spanned<String>>,
    pub(super) snapshot_every: Option<Spanned<u64>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
}

/// Voter fields are optional here so that a missing one is reported with
/// the entry's location and full key path rather than serde's bare message.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a voter table such as { id = 1, name = \"cp-1\", address = \"10.0.0.1:7421\" }"
)]
pub(super) struct FragmentVoter {
    pub(super) id: Option<Spanned<u64>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) address: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentLease {
    pub(super) default_max_holders: Option<Spanned<u32>>,
    pub(super) waiter_ttl: Option<Spanned<String>>,
    pub(super) hold_timeout: Option<Spanned<String>>,
    pub(super) settle_time: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentUpdates {
    pub(super) source: Option<Spanned<String>>,
    pub(super) check_interval: Option<Spanned<String>>,
    pub(super) poll_interval: Option<Spanned<String>>,
    pub(super) report_interval: Option<Spanned<String>>,
    pub(super) dbus_address: Option<Spanned<String>>,
    pub(super) os_release: Option<Spanned<String>>,
    pub(super) reboot_required: Option<Spanned<String>>,
    pub(super) unattended_upgrade: Option<SpannedStrings>,
    pub(super) apt_conf_dir: Option<Spanned<String>>,
    pub(super) sentinel_file: Option<Spanned<String>>,
    pub(super) sentinel_command: Option<SpannedStrings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentReboot {
    pub(super) method: Option<Spanned<String>>,
    pub(super) command: Option<SpannedStrings>,
    pub(super) time_zone: Option<Spanned<String>>,
    pub(super) window: Option<Spanned<Vec<Spanned<FragmentWindow>>>>,
    pub(super) freeze: Option<Spanned<Vec<Spanned<FragmentFreeze>>>>,
    pub(super) blocker: Option<Spanned<Vec<Spanned<FragmentCommand>>>>,
    pub(super) blocker_retry: Option<Spanned<String>>,
    pub(super) boot_id_path: Option<Spanned<String>>,
}

/// Like voters, required fields are optional here for better errors.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a window table such as { days = [\"Sat\"], start = \"02:00\", length = \"3h\" }"
)]
pub(super) struct FragmentWindow {
    pub(super) days: Option<SpannedStrings>,
    pub(super) start: Option<Spanned<String>>,
    pub(super) length: Option<Spanned<String>>,
}

/// A freeze period; required fields optional here for better errors.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a freeze table such as { from = \"2026-12-20\", to = \"2027-01-03\", reason = \"holidays\" }"
)]
pub(super) struct FragmentFreeze {
    pub(super) from: Option<Spanned<FreezeTime>>,
    pub(super) to: Option<Spanned<FreezeTime>>,
    pub(super) reason: Option<Spanned<String>>,
}

/// A freeze bound as written: a string, or a bare TOML date or date-time (`2026-12-20`),
/// kept as text for the rules' parser (which refuses offsets and bare times).
#[derive(Debug)]
pub(super) struct FreezeTime(pub(super) String);

impl FreezeTime {
    /// The text, with the bound's span.
    pub(super) fn text(at: Spanned<FreezeTime>) -> Spanned<String> {
        let span = at.span();
        Spanned::new(span, at.into_inner().0)
    }
}

impl<'de> Deserialize<'de> for FreezeTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = FreezeTime;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a date such as \"2026-12-20\" or a date-time such as \"2026-12-20T06:00\"",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FreezeTime, E> {
                Ok(FreezeTime(v.to_owned()))
            }
            // toml hands a bare date or date-time over as a one-entry map.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<FreezeTime, A::Error> {
                let datetime = toml::value::Datetime::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(FreezeTime(datetime.to_string()))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// A blocker or hook entry.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a command table such as { command = [\"/usr/local/bin/check\"], timeout = \"30s\" }"
)]
pub(super) struct FragmentCommand {
    pub(super) command: Option<SpannedStrings>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) force: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentHooks {
    pub(super) before_reboot: Option<Spanned<Vec<Spanned<FragmentCommand>>>>,
    pub(super) after_reboot: Option<Spanned<Vec<Spanned<FragmentCommand>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentKubernetes {
    pub(super) kubeconfig: Option<Spanned<String>>,
    pub(super) node_name: Option<Spanned<String>>,
    pub(super) drain_timeout: Option<Spanned<String>>,
    pub(super) grace_period: Option<Spanned<String>>,
    pub(super) pod_selector: Option<Spanned<String>>,
    pub(super) ready_timeout: Option<Spanned<String>>,
    pub(super) eviction_retry: Option<Spanned<String>>,
    pub(super) force_after: Option<Spanned<String>>,
    pub(super) annotate_node: Option<Spanned<bool>>,
    pub(super) pre_reboot_labels: Option<SpannedStrings>,
    pub(super) post_reboot_labels: Option<SpannedStrings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentTls {
    pub(super) ca: Option<Spanned<String>>,
    pub(super) cert: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) insecure: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentMetrics {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) allow_remote: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentFleetLock {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) groups: Option<SpannedStrings>,
    pub(super) allow_networks: Option<SpannedStrings>,
    pub(super) poll_ttl: Option<Spanned<String>>,
}

/// `[blockers]`: the built-in blockers (kured's), beside `[[reboot.blocker]]` commands.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentBlockers {
    pub(super) pod_selectors: Option<SpannedStrings>,
    pub(super) prometheus: Option<Spanned<FragmentPrometheus>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentPrometheus {
    pub(super) url: Option<Spanned<String>>,
    pub(super) alert_filter: Option<Spanned<String>>,
    pub(super) alert_filter_match_only: Option<Spanned<bool>>,
    pub(super) firing_only: Option<Spanned<bool>>,
    pub(super) timeout: Option<Spanned<String>>,
}

/// `[notify]`: where the agent tells what it does.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct FragmentNotify {
    pub(super) webhook: Option<Spanned<Vec<Spanned<FragmentWebhook>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a webhook table such as { url = \"https://hooks.slack.com/services/...\" }"
)]
pub(super) struct FragmentWebhook {
    pub(super) url: Option<Spanned<String>>,
    pub(super) template: Option<Spanned<String>>,
    pub(super) events: Option<SpannedStrings>,
    pub(super) timeout: Option<Spanned<String>>,
}

/// Deserializes one fragment, turning parser and serde errors into
/// file/line/key errors.
pub(super) fn parse_fragment(file: &Path, text: &str) -> Result<Fragment, ConfigError> {
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
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// Dotted path of the innermost key or value whose span encloses `target`.
pub(super) fn key_path_at(root: &DeTable<'_>, target: &Range<usize>) -> Option<String> {
    let mut best = None;
    walk_table(root, "", target, &mut best);
    best.map(|(_, path)| path)
}

/// Best match so far: (span length, path). Smaller spans are more specific.
pub(super) type PathMatch = Option<(usize, String)>;

pub(super) fn walk_table(
    table: &DeTable<'_>,
    prefix: &str,
    target: &Range<usize>,
    best: &mut PathMatch,
) {
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

pub(super) fn walk_value(
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

pub(super) fn consider(
    span: &Range<usize>,
    path: &str,
    target: &Range<usize>,
    best: &mut PathMatch,
) {
    let encloses = span.start <= target.start && target.end <= span.end;
    let narrower = best.as_ref().is_none_or(|(len, _)| span.len() < *len);
    if encloses && narrower {
        *best = Some((span.len(), path.to_owned()));
    }
}

/// Appends a key as TOML would write it: bare when possible, quoted otherwise.
pub(super) fn push_key(path: &mut String, key: &str) {
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
