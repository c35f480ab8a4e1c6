//! Which days a window starts on: weekly day names and monthly patterns ("2nd Sat", "last Sun").
//!
//! A window's `days` list mixes both: `["Mon", "2nd Sat", "last Sun"]` starts on every
//! Monday, on the second Saturday and on the last Sunday of each month. A monthly pattern is
//! an ordinal (`1st`..`4th` or `first`..`fourth`, or `last`) and a day name, in any case,
//! separated by spaces. The n-th weekday of a month is the one on day `7(n-1)+1` to `7n`;
//! the last is the one in the month's final seven days. There is no "5th": not every month
//! has one (use `last`).

use jiff::civil::{Date, Weekday};

use super::parse_weekday;

/// Which of a month's weekdays a monthly pattern means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Nth {
    /// Days 1 to 7.
    First,
    /// Days 8 to 14.
    Second,
    /// Days 15 to 21.
    Third,
    /// Days 22 to 28.
    Fourth,
    /// The month's last seven days.
    Last,
}

/// Ordinals accepted in a monthly pattern, as written (matched case-insensitively), and the
/// short form used to describe it.
const ORDINALS: [(Nth, &str, &str); 5] = [
    (Nth::First, "1st", "first"),
    (Nth::Second, "2nd", "second"),
    (Nth::Third, "3rd", "third"),
    (Nth::Fourth, "4th", "fourth"),
    (Nth::Last, "last", "last"),
];

/// One monthly pattern: e.g. the second Saturday of every month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MonthlyDay {
    /// Which one in the month.
    pub nth: Nth,
    /// Which weekday.
    pub weekday: Weekday,
}

/// One entry of a window's `days`: a weekday every week, or a monthly pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayPattern {
    /// `"Mon"`, `"Saturday"`.
    Weekly(Weekday),
    /// `"2nd Sat"`, `"last Sunday"`, `"first mon"`.
    Monthly(MonthlyDay),
}

impl MonthlyDay {
    /// Whether `date` is this pattern's day in its month.
    pub fn matches(&self, date: Date) -> bool {
        if date.weekday() != self.weekday {
            return false;
        }
        let day = date.day();
        match self.nth {
            Nth::First => day <= 7,
            Nth::Second => (8..=14).contains(&day),
            Nth::Third => (15..=21).contains(&day),
            Nth::Fourth => (22..=28).contains(&day),
            Nth::Last => day > date.days_in_month() - 7,
        }
    }

    /// "2nd Sat", "last Sun".
    pub fn describe(&self) -> String {
        let ordinal = ORDINALS
            .iter()
            .find(|(nth, _, _)| *nth == self.nth)
            .map_or("?", |(_, short, _)| *short);
        format!("{ordinal} {}", super::short_day_name(self.weekday))
    }
}

/// A `days` entry: a day name (see [`parse_weekday`]) or an ordinal and a day name. The error
/// says what is wrong in words.
pub fn parse_day_pattern(text: &str) -> Result<DayPattern, String> {
    let mut words = text.split_whitespace();
    let (first, second, rest) = (words.next(), words.next(), words.next());
    let expected = "expected a day name (Mon..Sun or the full name) or a monthly pattern \
                    such as \"2nd Sat\" or \"last Sun\" (1st, 2nd, 3rd, 4th or last)";
    match (first, second, rest) {
        (Some(name), None, None) => parse_weekday(name)
            .map(DayPattern::Weekly)
            .ok_or_else(|| format!("unknown day {text:?}; {expected}")),
        (Some(ordinal), Some(name), None) => {
            let nth = ORDINALS
                .iter()
                .find(|(_, short, long)| {
                    ordinal.eq_ignore_ascii_case(short) || ordinal.eq_ignore_ascii_case(long)
                })
                .map(|(nth, _, _)| *nth)
                .ok_or_else(|| {
                    format!(
                        "unknown ordinal {ordinal:?} in {text:?}; expected 1st, 2nd, 3rd, 4th \
                         or last (first..fourth also work; there is no 5th, use last)"
                    )
                })?;
            let weekday = parse_weekday(name)
                .ok_or_else(|| format!("unknown day {name:?} in {text:?}; {expected}"))?;
            Ok(DayPattern::Monthly(MonthlyDay { nth, weekday }))
        }
        _ => Err(format!("unknown day {text:?}; {expected}")),
    }
}
