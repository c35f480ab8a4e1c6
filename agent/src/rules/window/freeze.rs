//! Freeze periods: local dates or date-times when no reboot starts, windows or not; their limits.
//!
//! `from` is the first frozen instant; `to` ends the freeze: a date means the whole day is
//! frozen (to the next midnight), a date-time is the first instant no longer frozen. Both
//! are wall-clock times in the windows' zone, resolved like window starts (a skipped time
//! means the instant the clock jumps, a repeated one the earlier instant).

use jiff::civil::{Date, DateTime, Time};
use jiff::Span;

/// Most `[[reboot.freeze]]` entries a host accepts.
pub const MAX_FREEZES: usize = 64;
/// Earliest year a freeze may name (an older one is a typo).
pub const MIN_FREEZE_YEAR: i16 = 2000;
/// Latest year a freeze may name (a later one is a typo, or reboots switched off for good:
/// remove the windows' host from the fleet for that).
pub const MAX_FREEZE_YEAR: i16 = 2200;
/// Longest freeze, in days: a longer one is almost surely a mistyped year.
pub const MAX_FREEZE_DAYS: i64 = 366;

/// One freeze, as configured (validated: `from < until`, within the limits above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeSpec {
    /// First frozen wall-clock time.
    pub from: DateTime,
    /// First wall-clock time no longer frozen (a `to` date's next midnight).
    pub until: DateTime,
    /// Why, for STATUS and the logs.
    pub reason: Option<String>,
}

/// Which end of a freeze a written time is: a date means its start for `from`, and the next
/// midnight (the whole day frozen) for `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeEnd {
    /// `from`.
    From,
    /// `to`.
    To,
}

/// A freeze bound: `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM` / `YYYY-MM-DD HH:MM` (seconds
/// optional), no offset or zone (the windows' zone applies), years
/// [`MIN_FREEZE_YEAR`]..=[`MAX_FREEZE_YEAR`].
pub fn parse_freeze_time(text: &str, end: FreezeEnd) -> Result<DateTime, String> {
    let invalid = || {
        format!(
            "invalid date {text:?}, expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (local time in \
             the windows' time zone, no offset)"
        )
    };
    let (date_text, time_text) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let b = date_text.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(invalid());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i16, String> {
        date_text[range].parse::<i16>().map_err(|_| invalid())
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(MIN_FREEZE_YEAR..=MAX_FREEZE_YEAR).contains(&year) {
        return Err(format!(
            "year {year} in {text:?} is out of range ({MIN_FREEZE_YEAR} to {MAX_FREEZE_YEAR})"
        ));
    }
    let date = Date::new(year, month as i8, day as i8)
        .map_err(|_| format!("no such date {date_text:?} in {text:?}"))?;
    match time_text {
        Some(t) => Ok(date.to_datetime(parse_clock(t).ok_or_else(invalid)?)),
        None => match end {
            FreezeEnd::From => Ok(date.to_datetime(Time::midnight())),
            FreezeEnd::To => date
                .tomorrow()
                .map(|d| d.to_datetime(Time::midnight()))
                .map_err(|_| invalid()),
        },
    }
}

/// `HH:MM` or `HH:MM:SS`, two digits each.
fn parse_clock(text: &str) -> Option<Time> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let n = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<i8>());
    Time::new(n(0).ok()?, n(1).ok()?, n(2).ok()?, 0).ok()
}

/// A freeze's range: `to` after `from`, at most [`MAX_FREEZE_DAYS`] long. The texts are the
/// bounds as written, for the message.
pub fn check_freeze(
    from: DateTime,
    until: DateTime,
    from_text: &str,
    to_text: &str,
) -> Result<(), String> {
    if until <= from {
        return Err(format!(
            "the freeze ends before it starts: to = {to_text:?} is not after from = \
             {from_text:?} (a date as `to` freezes that whole day)"
        ));
    }
    let longest = from
        .checked_add(Span::new().days(MAX_FREEZE_DAYS))
        .map_err(|e| format!("freeze from {from_text:?}: {e}"))?;
    if until > longest {
        return Err(format!(
            "the freeze from {from_text:?} to {to_text:?} is longer than {MAX_FREEZE_DAYS} days"
        ));
    }
    Ok(())
}
