//! unattended-upgrades: a reboot is pending while `/var/run/reboot-required` exists.
//!
//! Also spots apt configs that let unattended-upgrades reboot on its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::{PendingUpdate, UpdateError};
use crate::config::UpdateSettings;
use crate::host::process::{self, describe_status, display_command, output_tail};

/// The source's name in `PendingUpdate::source`, logs and status.
pub const NAME: &str = "apt";

/// At most this many package names go into the reason; the rest are counted.
const MAX_LISTED_PACKAGES: usize = 20;

/// unattended-upgrades as an update source.
pub struct Apt {
    reboot_required: PathBuf,
    pkgs: PathBuf,
    unattended_upgrade: Vec<String>,
    poll_interval: Duration,
    /// When `changed` next resolves (kept across calls: cancel-safe).
    next_poll: Instant,
}

impl Apt {
    /// Takes the paths and the command from the settings; touches nothing yet.
    pub fn new(settings: &UpdateSettings) -> Result<Apt, UpdateError> {
        if settings.unattended_upgrade.is_empty() {
            return Err(UpdateError::Settings(
                "updates.unattended_upgrade is an empty command".into(),
            ));
        }
        let poll_interval = settings.poll_interval.max(Duration::from_millis(100));
        Ok(Apt {
            reboot_required: settings.reboot_required.clone(),
            pkgs: pkgs_path(&settings.reboot_required),
            unattended_upgrade: settings.unattended_upgrade.clone(),
            poll_interval,
            next_poll: Instant::now() + poll_interval,
        })
    }

    /// `Some` while the reboot-required file exists; the reason lists the packages from
    /// `reboot-required.pkgs`.
    pub async fn pending(&mut self) -> Result<Option<PendingUpdate>, UpdateError> {
        if !exists(&self.reboot_required).await? {
            return Ok(None);
        }
        let packages = self.packages().await;
        let reason = if packages.is_empty() {
            format!("{} exists", self.reboot_required.display())
        } else {
            let mut listed = packages
                .iter()
                .take(MAX_LISTED_PACKAGES)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if packages.len() > MAX_LISTED_PACKAGES {
                listed.push_str(&format!(
                    " and {} more",
                    packages.len() - MAX_LISTED_PACKAGES
                ));
            }
            format!("packages: {listed}")
        };
        Ok(Some(PendingUpdate {
            source: NAME.to_string(),
            reason,
            new_version: None,
        }))
    }

    /// The packages that asked for the reboot, in order, without repeats (the .pkgs file
    /// is appended to by every package's postinst, so names repeat). A missing or
    /// unreadable list is no reason to ignore the reboot-required file itself.
    async fn packages(&self) -> Vec<String> {
        let text = match tokio::fs::read_to_string(&self.pkgs).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", self.pkgs.display());
                return Vec::new();
            }
        };
        let mut packages: Vec<String> = Vec::new();
        for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !packages.iter().any(|p| p == name) {
                packages.push(name.to_string());
            }
        }
        packages
    }

    /// Resolves at the next poll (the file has no change signal we can rely on).
    pub async fn changed(&mut self) {
        tokio::time::sleep_until(self.next_poll).await;
        self.next_poll = Instant::now() + self.poll_interval;
    }

    /// Runs the unattended_upgrade command and waits for it. On failure its output goes to
    /// the log, since that is where the operator will look.
    pub async fn check_for_updates(&mut self) -> Result<(), UpdateError> {
        let command = display_command(&self.unattended_upgrade);
        tracing::info!("running `{command}` to install updates");
        // No timeout: an upgrade may take long, and killing dpkg half-way breaks the host.
        let finished = process::run(&self.unattended_upgrade, &[], None).await?;
        if finished.output.status.success() {
            tracing::info!("`{command}` finished");
            return Ok(());
        }
        tracing::warn!(
            "`{command}` failed ({}); its output: {}",
            describe_status(finished.output.status),
            output_tail(&finished.output, 40)
        );
        Err(finished.failed().into())
    }

    /// After the reboot the reboot-required file must be gone (it lives in /run, which a
    /// reboot empties; if it is back, something asked for another reboot).
    pub async fn verify_after_boot(&mut self, before: &PendingUpdate) -> Result<(), UpdateError> {
        if !exists(&self.reboot_required).await? {
            return Ok(());
        }
        Err(UpdateError::StillPending {
            updater: NAME,
            detail: format!(
                "{} still exists (before the reboot: {})",
                self.reboot_required.display(),
                before.reason
            ),
        })
    }
}

/// `/var/run/reboot-required` -> `/var/run/reboot-required.pkgs`.
fn pkgs_path(reboot_required: &Path) -> PathBuf {
    let mut name = reboot_required.as_os_str().to_owned();
    name.push(".pkgs");
    PathBuf::from(name)
}

/// Whether `path` exists; errors other than "not found" (e.g. permission) are errors,
/// not a "no".
pub(super) async fn exists(path: &Path) -> Result<bool, UpdateError> {
    match tokio::fs::metadata(path).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(UpdateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

const AUTOMATIC_REBOOT: &str = "unattended-upgrade::automatic-reboot";

/// apt only: Some(warning text) if the apt configuration in `apt_conf_dir` sets
/// `Unattended-Upgrade::Automatic-Reboot` to true (`"true"`, `"1"`, `true`, `yes`, ...),
/// reading files as apt does: in name order, later settings winning, skipping comments
/// (`//`, `/* */`, `#`) and files apt ignores, and understanding the nested form
/// `Unattended-Upgrade { Automatic-Reboot "true"; };`. When the directory is named
/// `apt.conf.d`, the `apt.conf` beside it is read last, as apt does.
pub fn automatic_reboot_warning(apt_conf_dir: &Path) -> Option<String> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(apt_conf_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter(|e| e.file_name().to_str().is_some_and(apt_reads_file))
            .map(|e| e.path())
            .collect(),
        Err(e) => {
            tracing::debug!("cannot read {}: {e}", apt_conf_dir.display());
            Vec::new()
        }
    };
    files.sort();
    if apt_conf_dir.file_name().is_some_and(|n| n == "apt.conf.d") {
        if let Some(parent) = apt_conf_dir.parent() {
            files.push(parent.join("apt.conf"));
        }
    }

    // The last assignment wins, as in apt.
    let mut verdict: Option<(bool, String, PathBuf)> = None;
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!("cannot read {}: {e}", file.display());
                }
                continue;
            }
        };
        for (key, value) in parse_apt_conf(&text) {
            if key.eq_ignore_ascii_case(AUTOMATIC_REBOOT) {
                verdict = Some((apt_bool(&value), value, file.clone()));
            }
        }
    }
    match verdict {
        Some((true, value, file)) => Some(format!(
            "Unattended-Upgrade::Automatic-Reboot is {value:?} in {}: unattended-upgrades will reboot this host \
             by itself, without the baton lease, so many hosts can go down at once. Set it to \"false\" and let \
             baton do the reboots",
            file.display()
        )),
        _ => None,
    }
}

/// apt's rule for files in a `.d` directory: only `[A-Za-z0-9_.-]` in the name, and no
/// extension or `.conf` (so `foo.dpkg-old`, `foo.bak`, `foo~` are ignored).
fn apt_reads_file(name: &str) -> bool {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return false;
    }
    match name.rsplit_once('.') {
        None => true,
        Some((_, ext)) => ext == "conf",
    }
}

/// apt's StringToBool with the default of unattended-upgrades (false) for anything else.
fn apt_bool(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    matches!(v.as_str(), "1" | "yes" | "true" | "with" | "on" | "enable")
}

#[derive(Debug, PartialEq)]
enum Token {
    Text(String),
    Open,
    Close,
    End,
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if !word.is_empty() {
            tokens.push(Token::Text(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                flush(&mut word, &mut tokens);
                let mut value = String::new();
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    value.push(q);
                }
                tokens.push(Token::Text(value));
            }
            '/' if chars.peek() == Some(&'/') => {
                flush(&mut word, &mut tokens);
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut tokens);
                chars.next();
                let mut prev = '\0';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            '#' if word.is_empty() => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '{' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Open);
            }
            '}' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Close);
            }
            ';' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::End);
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

/// The `key value` assignments of an apt.conf text, in order, with scopes expanded
/// (`A { B "v"; };` gives `A::B = v`). Lists and malformed bits are skipped: this reader
/// only has to find one setting, not validate apt's configuration.
fn parse_apt_conf(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut scopes: Vec<String> = Vec::new();
    let mut statement: Vec<String> = Vec::new();
    let qualify = |scopes: &[String], name: &str| match scopes.last() {
        Some(scope) if !scope.is_empty() => format!("{scope}::{name}"),
        _ => name.to_string(),
    };
    for token in tokenize(text) {
        match token {
            Token::Text(t) => statement.push(t),
            Token::Open => {
                let scope = match statement.first() {
                    Some(name) => qualify(&scopes, name),
                    None => scopes.last().cloned().unwrap_or_default(),
                };
                scopes.push(scope);
                statement.clear();
            }
            Token::Close => {
                scopes.pop();
                statement.clear();
            }
            Token::End => {
                if let [name, value, ..] = statement.as_slice() {
                    out.push((qualify(&scopes, name), value.clone()));
                }
                statement.clear();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_nested_and_commented_settings() {
        let text = r#"
            // Unattended-Upgrade::Automatic-Reboot "true";
            /* Unattended-Upgrade::Automatic-Reboot "true"; */
            # Unattended-Upgrade::Automatic-Reboot "true";
            APT::Periodic::Update-Package-Lists "1";
            Unattended-Upgrade { Automatic-Reboot "true"; Origins-Pattern { "origin=Debian"; }; };
            Acquire::http::Proxy "http://proxy:3128"; // a URL is not a comment
        "#;
        assert_eq!(
            parse_apt_conf(text),
            vec![
                (
                    "APT::Periodic::Update-Package-Lists".to_string(),
                    "1".to_string()
                ),
                (
                    "Unattended-Upgrade::Automatic-Reboot".to_string(),
                    "true".to_string()
                ),
                (
                    "Acquire::http::Proxy".to_string(),
                    "http://proxy:3128".to_string()
                ),
            ]
        );
    }

    #[test]
    fn apt_file_name_rules() {
        assert!(apt_reads_file("50unattended-upgrades"));
        assert!(apt_reads_file("99local.conf"));
        assert!(!apt_reads_file("50unattended-upgrades.dpkg-old"));
        assert!(!apt_reads_file("50unattended-upgrades~"));
        assert!(!apt_reads_file("local.bak"));
    }

    #[test]
    fn bool_values() {
        for v in ["true", "TRUE", "1", "yes", "on"] {
            assert!(apt_bool(v), "{v}");
        }
        for v in ["false", "0", "no", "off", "2", ""] {
            assert!(!apt_bool(v), "{v}");
        }
    }
}
