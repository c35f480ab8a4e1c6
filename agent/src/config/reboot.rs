//! `[reboot]` and `[hooks]`: how and when this host reboots, and their validation.

use std::path::PathBuf;
use std::time::Duration;

use jiff::civil::Weekday;
use toml::Spanned;

use super::fragments::{FragmentCommand, FragmentFreeze, FragmentWindow, FreezeTime};
use super::inputs::{HooksInputs, Located, LocatedStrings, RebootInputs};
use super::validate::Validator;
use super::ConfigError;
use crate::rules::names::check_reason;
use crate::rules::window::{
    check_freeze, check_length, every_day, parse_day_pattern, parse_freeze_time, parse_time_of_day,
    DayPattern, FreezeEnd, FreezeSpec, MonthlyDay, WindowSpec, MAX_FREEZES,
};

/// `reboot.time_zone` value meaning the host's zone, resolved at use time.
pub const LOCALTIME: &str = "localtime";
const DEFAULT_BLOCKER_RETRY: Duration = Duration::from_secs(60);
const DEFAULT_BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);

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
    pub windows: Vec<WindowSpec>,
    /// `[[reboot.freeze]]`: periods when no reboot starts, windows or not.
    pub freezes: Vec<FreezeSpec>,
    /// `[[reboot.blocker]]`: all must exit 0 before queueing for the lease.
    pub blockers: Vec<CommandSettings>,
    /// `blocker_retry`: wait before re-running failed blockers (default 1m).
    pub blocker_retry: Duration,
    /// `boot_id_path`: where the current boot id is read
    /// (default `/proc/sys/kernel/random/boot_id`).
    pub boot_id_path: PathBuf,
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

impl Validator<'_> {
    pub(super) fn reboot(&self, inputs: RebootInputs) -> Result<RebootSettings, ConfigError> {
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
        let freezes = match inputs.freeze {
            Some(list) => self.freezes(list)?,
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
            freezes,
            blockers,
            blocker_retry,
            boot_id_path,
        })
    }

    pub(super) fn windows(
        &self,
        list: Located<Vec<Spanned<FragmentWindow>>>,
    ) -> Result<Vec<WindowSpec>, ConfigError> {
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

            let (days, monthly) = match entry.days {
                Some(days) => self.days(Located::new(days, fragment), &key("days"))?,
                None => (every_day(), Vec::new()),
            };
            let start_time =
                parse_time_of_day(&start.value).map_err(|m| self.error(&start, key("start"), m))?;
            let length_value = self.parse_duration(&length, &key("length"))?;
            check_length(length_value, &length.value)
                .map_err(|m| self.error(&length, key("length"), m))?;
            out.push(WindowSpec {
                days,
                monthly,
                start: start_time,
                length: length_value,
            });
        }
        Ok(out)
    }

    /// A non-empty list of day names and monthly patterns ("2nd Sat"): the weekdays Monday
    /// first, the monthly patterns in month order, both without duplicates.
    pub(super) fn days(
        &self,
        days: LocatedStrings,
        key: &str,
    ) -> Result<(Vec<Weekday>, Vec<MonthlyDay>), ConfigError> {
        if days.value.is_empty() {
            return Err(self.error(
                &days,
                key,
                "must name at least one day; leave days out for every day",
            ));
        }
        let mut out = Vec::with_capacity(days.value.len());
        let mut monthly = Vec::new();
        for (index, name) in days.value.iter().enumerate() {
            let pattern = parse_day_pattern(name.get_ref()).map_err(|message| {
                self.error_at(
                    days.fragment,
                    &name.span(),
                    format!("{key}[{index}]"),
                    message,
                )
            })?;
            match pattern {
                DayPattern::Weekly(day) if !out.contains(&day) => out.push(day),
                DayPattern::Monthly(m) if !monthly.contains(&m) => monthly.push(m),
                _ => {}
            }
        }
        out.sort_by_key(|day| day.to_monday_zero_offset());
        monthly.sort_by_key(|m: &MonthlyDay| (m.nth, m.weekday.to_monday_zero_offset()));
        Ok((out, monthly))
    }

    /// `[[reboot.freeze]]` entries: `from` and `to` required (see
    /// [`crate::rules::window::freeze`] for their forms), `reason` optional.
    pub(super) fn freezes(
        &self,
        list: Located<Vec<Spanned<FragmentFreeze>>>,
    ) -> Result<Vec<FreezeSpec>, ConfigError> {
        let fragment = list.fragment;
        if list.value.len() > MAX_FREEZES {
            return Err(self.error(
                &list,
                "reboot.freeze",
                format!(
                    "{} freeze periods; at most {MAX_FREEZES} (drop the past ones)",
                    list.value.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(list.value.len());
        for (index, entry) in list.value.into_iter().enumerate() {
            let entry_span = entry.span();
            let entry = entry.into_inner();
            let key = |field: &str| format!("reboot.freeze[{index}].{field}");
            let required = |field: &str| {
                self.error_at(fragment, &entry_span, key(field), "required key is missing")
            };
            let from = entry.from.map(FreezeTime::text);
            let to = entry.to.map(FreezeTime::text);
            let from = Located::new(from.ok_or_else(|| required("from"))?, fragment);
            let to = Located::new(to.ok_or_else(|| required("to"))?, fragment);
            let from_time = parse_freeze_time(&from.value, FreezeEnd::From)
                .map_err(|m| self.error(&from, key("from"), m))?;
            let until = parse_freeze_time(&to.value, FreezeEnd::To)
                .map_err(|m| self.error(&to, key("to"), m))?;
            check_freeze(from_time, until, &from.value, &to.value)
                .map_err(|m| self.error(&to, key("to"), m))?;
            let reason = match entry.reason {
                Some(reason) => {
                    let reason = Located::new(reason, fragment);
                    check_reason(&reason.value)
                        .map_err(|e| self.error(&reason, key("reason"), e.to_string()))?;
                    Some(reason.value)
                }
                None => None,
            };
            out.push(FreezeSpec {
                from: from_time,
                until,
                reason,
            });
        }
        Ok(out)
    }

    pub(super) fn hooks(&self, inputs: HooksInputs) -> Result<HookSettings, ConfigError> {
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
    pub(super) fn commands(
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
}
