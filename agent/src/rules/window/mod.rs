//! Reboot windows: when a host may queue for and hold the lease. Pure: callers pass now.
//!
//! A window starts on each listed weekday (every day when none are listed) at a local
//! wall-clock time and lasts a real elapsed duration, so it may run past midnight and still
//! belongs to the day it started on. Local times that a DST change skips or repeats are
//! resolved once, here:
//! - skipped (spring-forward gap): the window opens at the first instant after the gap,
//!   i.e. at the transition itself (02:30 in a 02:00 -> 03:00 gap opens at 03:00);
//! - repeated (fall-back fold): the window opens at the earlier of the two instants.
//!
//! Equivalently: a window opens at the first instant at which the local clock reads its start
//! time or later on that day. Lengths are real time, so a 3h window over a DST change still
//! lasts 3 hours.
//!
//! Days are weekday names or monthly patterns ("2nd Sat", see [`days`]). Freeze periods
//! ([`freeze`]) close everything they cover: open means inside a window and outside every
//! freeze; `closes_at` is the earlier of the window's end and the next freeze's start,
//! `next_open` skips over freezes.

pub mod days;
pub mod freeze;

use std::time::Duration;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Span, Timestamp};

pub use days::{parse_day_pattern, DayPattern, MonthlyDay};
pub use freeze::{check_freeze, parse_freeze_time, FreezeEnd, FreezeSpec, MAX_FREEZES};

/// Longest window length: a window repeats at most weekly (see [`check_length`]).
pub const MAX_WINDOW_LENGTH: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Day names accepted in a window's `days` (matched case-insensitively), short and full.
/// Monday first; the short name is also how windows are described.
const DAY_NAMES: [(Weekday, &str, &str); 7] = [
    (Weekday::Monday, "Mon", "Monday"),
    (Weekday::Tuesday, "Tue", "Tuesday"),
    (Weekday::Wednesday, "Wed", "Wednesday"),
    (Weekday::Thursday, "Thu", "Thursday"),
    (Weekday::Friday, "Fri", "Friday"),
    (Weekday::Saturday, "Sat", "Saturday"),
    (Weekday::Sunday, "Sun", "Sunday"),
];

/// Local dates looked at per step when walking forward (closes_at, next_open): at least a week,
/// so every window has at least one start in every step.
const STEP_DAYS: i64 = 8;

/// How far closes_at and next_open walk before giving up, in steps (~800 days). Only reached
/// when windows cover every instant from now on (e.g. 48h windows every day) or, for
/// next_open, when no window can open at all (zero lengths, or the end of jiff's range).
const MAX_STEPS: usize = 100;

/// One reboot window, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// Weekdays on which the window starts (every week); with `monthly` also empty, every day.
    pub days: Vec<Weekday>,
    /// Monthly patterns on which the window starts too ("2nd Sat"), in order, no duplicates.
    pub monthly: Vec<MonthlyDay>,
    /// Local wall-clock time at which it starts.
    pub start: Time,
    /// Real elapsed time it stays open: more than zero, at most [`MAX_WINDOW_LENGTH`].
    pub length: Duration,
}

/// Every day of the week, Monday first.
pub fn every_day() -> Vec<Weekday> {
    DAY_NAMES.iter().map(|(day, _, _)| *day).collect()
}

/// A day name: `Mon`..`Sun` or the full English name, in any case.
pub fn parse_weekday(name: &str) -> Option<Weekday> {
    DAY_NAMES
        .iter()
        .find(|(_, short, long)| {
            name.eq_ignore_ascii_case(short) || name.eq_ignore_ascii_case(long)
        })
        .map(|(day, _, _)| *day)
}

/// A 24-hour time of day, `HH:MM` (a one-digit hour is accepted too).
pub fn parse_time_of_day(text: &str) -> Result<Time, String> {
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

/// A window's length: at most [`MAX_WINDOW_LENGTH`] (more than zero is the
/// duration parser's rule). `written` is the length as configured, for the message.
pub fn check_length(length: Duration, written: &str) -> Result<(), String> {
    if length > MAX_WINDOW_LENGTH {
        return Err(format!(
            "window length {written:?} is longer than a week (at most \"168h\")"
        ));
    }
    Ok(())
}

impl WindowSpec {
    /// Whether the window starts on local date `date`.
    fn starts_on(&self, date: Date) -> bool {
        (self.days.is_empty() && self.monthly.is_empty())
            || self.days.contains(&date.weekday())
            || self.monthly.iter().any(|m| m.matches(date))
    }
}

/// A freeze resolved to instants in the windows' zone: closed on `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    /// First frozen instant.
    pub start: Timestamp,
    /// First instant no longer frozen.
    pub end: Timestamp,
    /// Why, as configured.
    pub reason: Option<String>,
}

impl Freeze {
    fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// A host's reboot windows, all evaluated in one time zone. No windows means always open.
#[derive(Debug, Clone)]
pub struct RebootWindows {
    windows: Vec<WindowSpec>,
    tz: TimeZone,
    /// Sorted by start; may overlap.
    freezes: Vec<Freeze>,
    /// Local days to look back for a window that may still be open: the longest window plus
    /// slack for offset changes, so even lengths past [`MAX_WINDOW_LENGTH`] give right answers.
    lookback_days: i64,
}

/// One occurrence of a window: open on `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Interval {
    start: Timestamp,
    end: Timestamp,
}

impl Interval {
    fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// The occurrences of all windows starting on a run of local dates.
struct Step {
    /// Sorted by start.
    intervals: Vec<Interval>,
    /// Per window, its latest start in the step (None when it has none, which only happens
    /// at the edge of jiff's date range). Later steps only start later (see `window_start`).
    last_starts: Vec<Option<Timestamp>>,
}

impl RebootWindows {
    /// Windows evaluated in `tz`. An empty list means always open.
    ///
    /// The config module has already validated each window (length > 0 and at most
    /// [`MAX_WINDOW_LENGTH`], see [`check_length`]); this only asserts it in debug builds. A zero-length window never
    /// opens.
    pub fn new(windows: Vec<WindowSpec>, tz: TimeZone) -> Self {
        debug_assert!(
            windows
                .iter()
                .all(|w| !w.length.is_zero() && w.length <= MAX_WINDOW_LENGTH),
            "window lengths must be in (0, 7 days]: {windows:?}"
        );
        let longest = windows.iter().map(|w| w.length).max().unwrap_or_default();
        // +2: one day for rounding up, one for an offset change moving the local date. Capped
        // so date arithmetic stays in range for absurd (unvalidated) lengths.
        let lookback_days = (longest.as_secs() / 86_400).min(3_660) as i64 + 2;
        RebootWindows {
            windows,
            tz,
            freezes: Vec::new(),
            lookback_days,
        }
    }

    /// These windows with freeze periods, resolved in the windows' zone like window starts
    /// (see the module docs). A freeze whose bounds cannot be resolved (outside jiff's range;
    /// the config's year limits keep them far inside) is left out.
    pub fn with_freezes(mut self, freezes: &[FreezeSpec]) -> Self {
        self.freezes = freezes
            .iter()
            .filter_map(|f| {
                let start = self.window_start(f.from.date(), f.from.time())?;
                let end = self.window_start(f.until.date(), f.until.time())?;
                (start < end).then(|| Freeze {
                    start,
                    end,
                    reason: f.reason.clone(),
                })
            })
            .collect();
        self.freezes.sort_by_key(|f| (f.start, f.end));
        self
    }

    /// No windows: always open.
    pub fn always() -> Self {
        RebootWindows::new(Vec::new(), TimeZone::UTC)
    }

    /// Whether there are no windows and no freezes, so the host may reboot at any time.
    pub fn is_always(&self) -> bool {
        self.windows.is_empty() && self.freezes.is_empty()
    }

    /// Whether a reboot may start at `now`: inside a window (always without windows) and
    /// outside every freeze.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.in_window(now) && self.frozen_at(now).is_none()
    }

    /// If `now` is frozen: until when (the end of the run of overlapping or touching freezes
    /// that covers now) and the reason of the earliest-starting freeze that covers now.
    pub fn frozen_at(&self, now: Timestamp) -> Option<(Timestamp, Option<&str>)> {
        let covering = self.freezes.iter().find(|f| f.contains(now))?;
        let mut until = covering.end;
        // Sorted by start: extend through every freeze that starts by the current end.
        for f in &self.freezes {
            if f.start <= until && f.end > until {
                until = f.end;
            }
        }
        Some((until, covering.reason.as_deref()))
    }

    /// Whether some window is open at `now`, freezes aside (always true without windows). For
    /// steps a freeze does not stop once begun (see the host agent).
    pub fn in_window(&self, now: Timestamp) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let today = self.tz.to_datetime(now).date();
        // A window open at `now` started at or before it (so on today, or tomorrow's date if
        // an offset change moved it), and at most its length before it.
        self.step(shift(today, -self.lookback_days), shift(today, 1))
            .intervals
            .iter()
            .any(|iv| iv.contains(now))
    }

    /// If a window is open at `now`: when the open period closes. Overlapping or touching
    /// windows count as one period (return the end of the union containing now). None when
    /// closed at `now`, or when always open — including when the windows cover every instant
    /// for the next ~2 years (e.g. 48h windows every day), which is always open in effect.
    ///
    /// With freezes: the earlier of that and the start of the next freeze (None when closed
    /// now, frozen or not).
    pub fn closes_at(&self, now: Timestamp) -> Option<Timestamp> {
        if !self.is_open(now) {
            return None;
        }
        let next_freeze = self
            .freezes
            .iter()
            .map(|f| f.start)
            .filter(|&s| s > now)
            .min();
        match (self.window_closes_at(now), next_freeze) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// closes_at for the windows alone.
    fn window_closes_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.windows.is_empty() {
            return None;
        }
        let today = self.tz.to_datetime(now).date();
        let mut to = shift(today, STEP_DAYS);
        let mut step = self.step(shift(today, -self.lookback_days), to);
        // The first step holds every occurrence that can contain `now` (see is_open).
        let mut end = step
            .intervals
            .iter()
            .filter(|iv| iv.contains(now))
            .map(|iv| iv.end)
            .max()?;
        // Occurrences seen but starting after `end` so far; a later one may still reach them.
        let mut pending: Vec<Interval> = Vec::new();
        for _ in 0..MAX_STEPS {
            pending.extend(step.intervals);
            pending.sort_unstable();
            let mut used = 0;
            for iv in &pending {
                if iv.start > end {
                    break;
                }
                end = end.max(iv.end);
                used += 1;
            }
            pending.drain(..used);
            // Every window's starts only grow, so once each has started after `end` in this
            // step, nothing later can reach back to extend the period. A window with no start
            // in the step (a monthly one; or at the end of jiff's range) next starts on a
            // later date, at or after the instant the next step's first date begins.
            let next_from = add_days(to, 1);
            let next_step_begins = next_from.and_then(|d| self.window_start(d, Time::midnight()));
            let done = step.last_starts.iter().all(|s| match s {
                Some(s) => *s > end,
                None => next_step_begins.is_none_or(|b| b > end),
            });
            if done {
                return Some(end);
            }
            let from = next_from?;
            to = add_days(from, STEP_DAYS - 1)?;
            step = self.step(from, to);
        }
        None
    }

    /// `now` if open now; else the next instant a window opens outside every freeze (which
    /// may be a freeze's end, inside a window). None only if always() (never closed), or
    /// if nothing can ever open: zero-length windows, or the end of jiff's range (year 9999).
    /// Monthly windows open at most ~5 weeks apart; the walk is bounded (~2 years per
    /// freeze passed over).
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        if self.is_always() {
            return None;
        }
        let mut t = now;
        // Each round either returns or moves past the end of a run of freezes, which then
        // never covers t again: at most one round per freeze, plus one.
        for _ in 0..=self.freezes.len() {
            t = if self.windows.is_empty() {
                t
            } else {
                self.window_next_open(t)?
            };
            match self.frozen_at(t) {
                None => return Some(t),
                Some((until, _)) => t = until,
            }
        }
        None
    }

    /// next_open for the windows alone.
    fn window_next_open(&self, now: Timestamp) -> Option<Timestamp> {
        if self.in_window(now) {
            return Some(now);
        }
        // Closed now, so the next open instant is the earliest start after `now`: an instant
        // inside an occurrence that started at or before `now` would make `now` open too.
        let today = self.tz.to_datetime(now).date();
        let mut from = shift(today, -1);
        // Windows whose first start after `now` is found (or that can never open).
        let mut settled: Vec<bool> = self.windows.iter().map(|w| w.length.is_zero()).collect();
        let mut best: Option<Timestamp> = None;
        for _ in 0..MAX_STEPS {
            let to = add_days(from, STEP_DAYS - 1)?;
            for (i, w) in self.windows.iter().enumerate() {
                if settled[i] {
                    continue;
                }
                // Starts grow with the date, so a window's first start after `now` in date
                // order is its earliest one.
                let first = self
                    .occurrences(w, from, to)
                    .map(|iv| iv.start)
                    .find(|&s| s > now);
                if let Some(s) = first {
                    settled[i] = true;
                    best = Some(best.map_or(s, |b| b.min(s)));
                }
            }
            if settled.iter().all(|&s| s) {
                return best;
            }
            from = add_days(to, 1)?;
        }
        best
    }

    /// One line for status and logs, e.g. "Mon,Tue 22:30 for 3h (Europe/Berlin)" joined by
    /// "; ", or "always".
    pub fn describe(&self) -> String {
        if self.windows.is_empty() {
            return "always".to_string();
        }
        let zone = zone_name(&self.tz);
        self.windows
            .iter()
            .map(|w| {
                format!(
                    "{} {} for {} ({zone})",
                    describe_days(&w.days, &w.monthly),
                    describe_time(w.start),
                    describe_length(w.length)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The freezes for status and logs, e.g. "2026-12-20 00:00 CET to 2027-01-04 00:00 CET
    /// (Christmas)" joined by "; ", or "none".
    pub fn describe_freezes(&self) -> String {
        if self.freezes.is_empty() {
            return "none".to_string();
        }
        self.freezes
            .iter()
            .map(|f| {
                let mut text =
                    format!("{} to {}", self.local_time(f.start), self.local_time(f.end));
                if let Some(reason) = &f.reason {
                    text.push_str(&format!(" ({reason})"));
                }
                text
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `t` as the windows' wall clock shows it, e.g. "2027-01-04 00:00 CET" (seconds only
    /// when set).
    pub fn local_time(&self, t: Timestamp) -> String {
        let local = self.tz.to_datetime(t);
        let info = self.tz.to_offset_info(t);
        format!(
            "{} {} {}",
            local.date(),
            describe_time(local.time()),
            info.abbreviation()
        )
    }

    /// When window `w` opens on local date `date`, following the DST rules in the module docs.
    ///
    /// Non-decreasing in `date` (it is the first instant at which the local clock reads
    /// `date` + start or later), which lets closes_at and next_open stop walking early.
    fn window_start(&self, date: Date, start: Time) -> Option<Timestamp> {
        let ambiguous = self.tz.to_ambiguous_timestamp(date.to_datetime(start));
        match ambiguous.offset() {
            // The clock skips `start`: open when it jumps, the first instant after the gap.
            // "earlier" resolves the gap with the offset from after it, which lands before the
            // jump, so the next transition is the jump. (jiff's "compatible" would instead
            // shift the start by the gap's size, to 03:30 for 02:30 in a 02:00 -> 03:00 gap.)
            AmbiguousOffset::Gap { .. } => {
                let before_jump = ambiguous.earlier().ok()?;
                let jump = self.tz.following(before_jump).next()?;
                Some(jump.timestamp())
            }
            // Unambiguous, or repeated: take the earlier instant.
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
                ambiguous.earlier().ok()
            }
        }
    }

    /// Occurrences of window `w` starting on local dates `from..=to`, in start order. Dates or
    /// instants outside jiff's range are skipped.
    fn occurrences<'a>(
        &'a self,
        w: &'a WindowSpec,
        from: Date,
        to: Date,
    ) -> impl Iterator<Item = Interval> + 'a {
        let dates =
            std::iter::successors(Some(from), |d| d.tomorrow().ok()).take_while(move |d| *d <= to);
        dates.filter(|d| w.starts_on(*d)).filter_map(|d| {
            let start = self.window_start(d, w.start)?;
            let end = start.checked_add(w.length).ok()?;
            Some(Interval { start, end })
        })
    }

    /// All windows' occurrences starting on local dates `from..=to`.
    fn step(&self, from: Date, to: Date) -> Step {
        let mut intervals = Vec::new();
        let mut last_starts = Vec::with_capacity(self.windows.len());
        for w in &self.windows {
            let before = intervals.len();
            intervals.extend(self.occurrences(w, from, to));
            last_starts.push(intervals[before..].last().map(|iv: &Interval| iv.start));
        }
        intervals.sort_unstable();
        Step {
            intervals,
            last_starts,
        }
    }
}

impl Default for RebootWindows {
    /// Always open, like a host with no windows configured.
    fn default() -> Self {
        RebootWindows::always()
    }
}

/// `date` moved by `days`, or None outside jiff's range: for walking, which stops there.
fn add_days(date: Date, days: i64) -> Option<Date> {
    date.checked_add(Span::new().days(days)).ok()
}

/// `date` moved by `days`, clamped to jiff's range: for the dates around `now`, where the
/// clamped end simply has no more occurrences.
fn shift(date: Date, days: i64) -> Date {
    date.saturating_add(Span::new().days(days))
}

fn zone_name(tz: &TimeZone) -> String {
    if let Some(name) = tz.iana_name() {
        return name.to_string();
    }
    match tz.to_fixed_offset() {
        Ok(offset) => format!("UTC{offset}"),
        Err(_) => "unnamed zone".to_string(),
    }
}

/// "Mon,Tue" in week order whatever the configured order, or "every day"; monthly patterns
/// after the weekdays, as configured: "Mon,2nd Sat,last Sun".
fn describe_days(days: &[Weekday], monthly: &[MonthlyDay]) -> String {
    let mut listed: Vec<String> = DAY_NAMES
        .iter()
        .filter(|(day, _, _)| days.contains(day))
        .map(|(_, short, _)| short.to_string())
        .collect();
    if listed.len() == DAY_NAMES.len() {
        return "every day".to_string();
    }
    listed.extend(monthly.iter().map(MonthlyDay::describe));
    if listed.is_empty() {
        "every day".to_string()
    } else {
        listed.join(",")
    }
}

/// The short name of `day`, e.g. "Sat".
fn short_day_name(day: Weekday) -> &'static str {
    DAY_NAMES
        .iter()
        .find(|(d, _, _)| *d == day)
        .map_or("?", |(_, short, _)| *short)
}

/// "22:30", with seconds (and fractions) only when set.
fn describe_time(t: Time) -> String {
    if t.second() == 0 && t.subsec_nanosecond() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        t.to_string()
    }
}

/// "3h", "1h30m", "2d12h", "1m30.5s".
fn describe_length(length: Duration) -> String {
    let secs = length.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
    ];
    let mut out: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    let (s, nanos) = (secs % 60, length.subsec_nanos());
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    } else if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests;
