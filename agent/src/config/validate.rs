//! Loading, stage 3: the validator's shared tools (locations, durations, paths, names).
//!
//! Each concern validates its own section in its own file (`cluster`,
//! `updates`, `reboot`, `kubernetes`), with the rules' parsers; this file
//! holds what they share and puts the sections together.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::fragments::line_of;
use super::inputs::{Inputs, Located, LocatedStrings};
use super::{ConfigError, Settings};
use crate::rules::durations::parse_duration;
use crate::rules::names::{check_group, check_holder};

/// Turns merged inputs into settings, resolving locations against the fragments.
pub(super) struct Validator<'a> {
    pub(super) fragments: &'a [(PathBuf, String)],
}

impl Validator<'_> {
    pub(super) fn error_at(
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

    pub(super) fn error<T>(
        &self,
        at: &Located<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error_at(at.fragment, &at.span, key, message)
    }

    pub(super) fn settings(
        &self,
        mut inputs: Inputs,
        host_name: impl FnOnce() -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let node = self.node(inputs.node, host_name)?;
        let cluster = self.cluster(inputs.cluster, &node.name)?;
        let is_voter = cluster.voters.iter().any(|voter| voter.name == node.name);
        let fleetlock = self.fleetlock(inputs.fleetlock, is_voter)?;
        let kubernetes_present = inputs.kubernetes.present;
        let kubernetes = if kubernetes_present {
            Some(self.kubernetes(std::mem::take(&mut inputs.kubernetes), &node.name)?)
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
            tls: self.tls(inputs.tls)?,
            metrics: self.metrics(inputs.metrics)?,
            fleetlock,
            blockers: self.blockers(inputs.blockers, kubernetes_present)?,
            notify: self.notify(inputs.notify)?,
            node,
            sources: Vec::new(),
        })
    }

    /// `file:line` of a merged value, for messages that mention a second key.
    pub(super) fn location<T>(&self, at: &Located<T>) -> String {
        match self.fragments.get(at.fragment) {
            Some((file, text)) => format!("{}:{}", file.display(), line_of(text, at.span.start)),
            None => "?".to_owned(),
        }
    }

    /// A command line: program and arguments; the program must be named.
    pub(super) fn command_line(
        &self,
        at: LocatedStrings,
        key: &str,
    ) -> Result<Vec<String>, ConfigError> {
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
    pub(super) fn path(&self, at: Located<String>, key: &str) -> Result<PathBuf, ConfigError> {
        if !Path::new(&at.value).is_absolute() {
            return Err(self.error(&at, key, format!("{:?} is not an absolute path", at.value)));
        }
        Ok(PathBuf::from(at.value))
    }

    pub(super) fn path_or(
        &self,
        input: Option<Located<String>>,
        key: &str,
        default: &str,
    ) -> Result<PathBuf, ConfigError> {
        input.map_or_else(|| Ok(PathBuf::from(default)), |at| self.path(at, key))
    }

    pub(super) fn optional_duration(
        &self,
        input: Option<&Located<String>>,
        key: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        input.map(|at| self.parse_duration(at, key)).transpose()
    }

    pub(super) fn duration(
        &self,
        input: Option<&Located<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        input.map_or(Ok(default), |at| self.parse_duration(at, key))
    }

    /// A duration by the one rule (`rules::durations`): friendly syntax, greater than zero.
    pub(super) fn parse_duration(
        &self,
        at: &Located<String>,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        parse_duration(&at.value).map_err(|e| self.error(at, key, e.to_string()))
    }
}

/// The naming rule for holders (`rules::names`), as a config message that quotes the value.
pub(super) fn holder_name(name: &str) -> Result<(), String> {
    check_holder(name).map_err(|reason| format!("{name:?}: {reason}"))
}

/// The naming rule for groups (`rules::names`), as a config message that quotes the value.
pub(super) fn group_name(group: &str) -> Result<(), String> {
    check_group(group).map_err(|reason| format!("{group:?}: {reason}"))
}
