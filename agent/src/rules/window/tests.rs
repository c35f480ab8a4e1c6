use super::*;
use days::Nth;
use jiff::civil::{date, time, DateTime};
use jiff::SignedDuration;
use Weekday::*;

fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or_else(|e| panic!("zone {name} missing on this machine: {e}"))
}

fn spec(days: &[Weekday], h: i8, m: i8, length: Duration) -> WindowSpec {
    WindowSpec {
        days: days.to_vec(),
        monthly: Vec::new(),
        start: time(h, m, 0, 0),
        length,
    }
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3_600)
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// An instant from RFC 3339 text, e.g. "2026-03-29T01:00:00Z".
fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// An unambiguous local time in `tz`.
fn local(tz: &TimeZone, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
    let amb = tz.to_ambiguous_timestamp(date(y, mo, d).at(h, mi, 0, 0));
    amb.unambiguous().unwrap()
}

fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

/// Asserts the open period containing `inside` is exactly `[start, end)`.
fn assert_period(w: &RebootWindows, inside: Timestamp, start: Timestamp, end: Timestamp) {
    assert!(w.is_open(start), "open at its start {start}");
    assert!(!w.is_open(start - ns(1)), "closed just before {start}");
    assert!(w.is_open(inside), "open at {inside}");
    assert!(w.is_open(end - ns(1)), "open just before {end}");
    assert!(!w.is_open(end), "closed at {end}");
    assert_eq!(w.closes_at(inside), Some(end));
    assert_eq!(w.closes_at(start), Some(end));
    assert_eq!(w.next_open(start - ns(1)), Some(start));
}

#[test]
fn every_day_window_opens_every_day() {
    let w = RebootWindows::new(vec![spec(&[], 2, 0, hours(1))], TimeZone::UTC);
    for day in 1..=14 {
        let start = local(&TimeZone::UTC, 2026, 6, day, 2, 0);
        assert_period(&w, start + mins(30), start, start + hours(1));
        assert!(!w.is_open(local(&TimeZone::UTC, 2026, 6, day, 12, 0)));
    }
    assert_eq!(w.closes_at(ts("2026-06-03T12:00:00Z")), None);
}

#[test]
fn specific_days_only() {
    let utc = TimeZone::UTC;
    let w = RebootWindows::new(
        vec![spec(&[Saturday, Sunday], 10, 0, hours(4))],
        utc.clone(),
    );
    assert_eq!(date(2026, 6, 6).weekday(), Saturday);
    assert!(w.is_open(local(&utc, 2026, 6, 6, 11, 0)));
    assert!(w.is_open(local(&utc, 2026, 6, 7, 13, 59)));
    assert!(!w.is_open(local(&utc, 2026, 6, 8, 11, 0)), "Monday");
    assert!(!w.is_open(local(&utc, 2026, 6, 5, 11, 0)), "Friday");
    assert_eq!(
        w.next_open(local(&utc, 2026, 6, 8, 11, 0)),
        Some(local(&utc, 2026, 6, 13, 10, 0))
    );
}

#[test]
fn window_wraps_past_midnight_and_belongs_to_its_start_day() {
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(vec![spec(&[Monday], 22, 30, hours(3))], berlin.clone());
    assert_eq!(date(2026, 6, 1).weekday(), Monday);
    assert!(!w.is_open(local(&berlin, 2026, 6, 1, 22, 29)));
    assert!(w.is_open(local(&berlin, 2026, 6, 1, 22, 30)));
    assert!(w.is_open(local(&berlin, 2026, 6, 1, 23, 59)));
    assert!(w.is_open(local(&berlin, 2026, 6, 2, 1, 0)), "Tue 01:00");
    assert!(
        !w.is_open(local(&berlin, 2026, 6, 2, 1, 30)),
        "closes at Tue 01:30"
    );
    assert!(!w.is_open(local(&berlin, 2026, 6, 2, 1, 31)), "Tue 01:31");
    assert!(
        !w.is_open(local(&berlin, 2026, 6, 2, 22, 45)),
        "Tuesday is not a window day"
    );
    // Sunday 22:30 would wrap into Monday, but Sunday is not listed either.
    assert!(!w.is_open(local(&berlin, 2026, 6, 1, 0, 30)));
}

#[test]
fn closes_at_across_midnight() {
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(vec![spec(&[Monday], 22, 30, hours(3))], berlin.clone());
    let tue_0130 = local(&berlin, 2026, 6, 2, 1, 30);
    assert_eq!(
        w.closes_at(local(&berlin, 2026, 6, 1, 23, 0)),
        Some(tue_0130)
    );
    assert_eq!(
        w.closes_at(local(&berlin, 2026, 6, 2, 0, 15)),
        Some(tue_0130)
    );
    assert_eq!(w.closes_at(tue_0130), None, "closed at its end");
    assert_eq!(w.closes_at(local(&berlin, 2026, 6, 2, 1, 31)), None);
}

#[test]
fn overlapping_and_touching_windows_merge() {
    let utc = TimeZone::UTC;
    // Overlapping: Mon 22:00-00:00 and Mon 23:30-Tue 01:30.
    let w = RebootWindows::new(
        vec![
            spec(&[Monday], 22, 0, hours(2)),
            spec(&[Monday], 23, 30, hours(2)),
        ],
        utc.clone(),
    );
    let mon_2200 = local(&utc, 2026, 6, 1, 22, 0);
    let tue_0130 = local(&utc, 2026, 6, 2, 1, 30);
    assert_period(&w, mon_2200 + mins(15), mon_2200, tue_0130);

    // Touching: Mon 20:00-22:00 then Mon 22:00-23:00 is one period.
    let w = RebootWindows::new(
        vec![
            spec(&[Monday], 22, 0, hours(1)),
            spec(&[Monday], 20, 0, hours(2)),
        ],
        utc.clone(),
    );
    let mon_2000 = local(&utc, 2026, 6, 1, 20, 0);
    assert_period(
        &w,
        mon_2000 + mins(30),
        mon_2000,
        local(&utc, 2026, 6, 1, 23, 0),
    );

    // Sunday's window running into Monday merges with Monday's own.
    let w = RebootWindows::new(
        vec![
            spec(&[Sunday], 23, 0, hours(2)),
            spec(&[Monday], 0, 30, hours(1)),
        ],
        utc.clone(),
    );
    let sun_2300 = local(&utc, 2026, 5, 31, 23, 0);
    assert_period(&w, sun_2300, sun_2300, local(&utc, 2026, 6, 1, 1, 30));

    // A gap of one minute keeps them apart.
    let w = RebootWindows::new(
        vec![
            spec(&[Monday], 20, 0, hours(2)),
            spec(&[Monday], 22, 1, hours(1)),
        ],
        utc.clone(),
    );
    assert_eq!(
        w.closes_at(local(&utc, 2026, 6, 1, 21, 0)),
        Some(local(&utc, 2026, 6, 1, 22, 0))
    );
    assert_eq!(
        w.next_open(local(&utc, 2026, 6, 1, 22, 0)),
        Some(local(&utc, 2026, 6, 1, 22, 1))
    );
}

#[test]
fn merged_period_can_span_many_days() {
    // Daily 24h windows touch each other: one period, which in UTC never ends.
    let w = RebootWindows::new(vec![spec(&[], 0, 0, hours(24))], TimeZone::UTC);
    let now = ts("2026-06-03T12:00:00Z");
    assert!(w.is_open(now));
    assert_eq!(w.closes_at(now), None, "open for good: no closing instant");
    assert_eq!(w.next_open(now), Some(now));

    // In Berlin the 25-hour fall-back day leaves an hour uncovered: 23:00-00:00 CET.
    let w = RebootWindows::new(vec![spec(&[], 0, 0, hours(24))], tz("Europe/Berlin"));
    assert_eq!(w.closes_at(now), Some(ts("2026-10-25T22:00:00Z")));
    assert_eq!(
        w.next_open(ts("2026-10-25T22:00:00Z")),
        Some(ts("2026-10-25T23:00:00Z"))
    );
    // Mon-Fri 24h windows: one period from Monday 00:00 to Saturday 00:00.
    let w = RebootWindows::new(
        vec![spec(
            &[Monday, Tuesday, Wednesday, Thursday, Friday],
            0,
            0,
            hours(24),
        )],
        TimeZone::UTC,
    );
    assert_eq!(
        w.closes_at(ts("2026-06-02T05:00:00Z")),
        Some(ts("2026-06-06T00:00:00Z"))
    );
}

#[test]
fn next_open_after_a_window_closes() {
    let utc = TimeZone::UTC;
    let daily = RebootWindows::new(vec![spec(&[], 2, 0, hours(1))], utc.clone());
    let close = local(&utc, 2026, 6, 3, 3, 0);
    assert_eq!(
        daily.next_open(close),
        Some(local(&utc, 2026, 6, 4, 2, 0)),
        "next day"
    );
    assert_eq!(
        daily.next_open(local(&utc, 2026, 6, 3, 1, 0)),
        Some(local(&utc, 2026, 6, 3, 2, 0)),
        "later today"
    );
    let open = local(&utc, 2026, 6, 3, 2, 30);
    assert_eq!(daily.next_open(open), Some(open), "open now");

    let berlin = tz("Europe/Berlin");
    let weekly = RebootWindows::new(vec![spec(&[Monday], 22, 30, hours(3))], berlin.clone());
    assert_eq!(
        weekly.next_open(local(&berlin, 2026, 6, 2, 1, 30)),
        Some(local(&berlin, 2026, 6, 8, 22, 30)),
        "next week"
    );
    assert_eq!(
        weekly.next_open(local(&berlin, 2026, 6, 1, 22, 29)),
        Some(local(&berlin, 2026, 6, 1, 22, 30))
    );
}

#[test]
fn no_windows_is_always_open() {
    for w in [
        RebootWindows::always(),
        RebootWindows::new(Vec::new(), tz("Europe/Berlin")),
        RebootWindows::default(),
    ] {
        assert!(w.is_always());
        assert!(w.windows.is_empty());
        for t in [Timestamp::MIN, ts("2026-03-29T01:30:00Z"), Timestamp::MAX] {
            assert!(w.is_open(t));
            assert_eq!(w.closes_at(t), None);
            assert_eq!(w.next_open(t), None);
        }
        assert_eq!(w.describe(), "always");
    }
    assert!(!RebootWindows::new(vec![spec(&[], 0, 0, hours(1))], TimeZone::UTC).is_always());
}

#[test]
fn describe_lists_windows() {
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(
        vec![spec(&[Monday, Tuesday], 22, 30, hours(3))],
        berlin.clone(),
    );
    assert_eq!(w.describe(), "Mon,Tue 22:30 for 3h (Europe/Berlin)");

    let w = RebootWindows::new(
        vec![
            spec(&[Sunday, Tuesday, Monday, Tuesday], 22, 30, mins(90)),
            spec(&[], 4, 0, hours(48)),
            WindowSpec {
                days: vec![Saturday],
                monthly: Vec::new(),
                start: time(4, 5, 6, 0),
                length: Duration::from_millis(90_500),
            },
            spec(
                &[
                    Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday,
                ],
                0,
                0,
                hours(7 * 24) - mins(1),
            ),
        ],
        berlin,
    );
    assert_eq!(
        w.describe(),
        "Mon,Tue,Sun 22:30 for 1h30m (Europe/Berlin); \
         every day 04:00 for 2d (Europe/Berlin); \
         Sat 04:05:06 for 1m30.5s (Europe/Berlin); \
         every day 00:00 for 6d23h59m (Europe/Berlin)"
    );

    let fixed = jiff::tz::offset(5).to_time_zone();
    let w = RebootWindows::new(vec![spec(&[Friday], 1, 2, mins(45))], fixed);
    assert_eq!(w.describe(), "Fri 01:02 for 45m (UTC+05)");
    let w = RebootWindows::new(vec![spec(&[Friday], 1, 2, mins(45))], TimeZone::UTC);
    assert_eq!(w.describe(), "Fri 01:02 for 45m (UTC)");
}

#[test]
fn berlin_spring_forward_start_in_gap_opens_when_clock_jumps() {
    // 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z; 02:30 does not exist.
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(vec![spec(&[Sunday], 2, 30, hours(1))], berlin.clone());
    let start = ts("2026-03-29T01:00:00Z");
    assert_eq!(berlin.to_datetime(start), date(2026, 3, 29).at(3, 0, 0, 0));
    assert_eq!(w.next_open(ts("2026-03-28T12:00:00Z")), Some(start));
    // It lasts its real length: 03:00-04:00 CEST.
    assert_period(&w, start, start, ts("2026-03-29T02:00:00Z"));
    // Sundays either side are ordinary: 02:30 CET and 02:30 CEST.
    assert_eq!(
        w.next_open(ts("2026-03-21T12:00:00Z")),
        Some(ts("2026-03-22T01:30:00Z"))
    );
    assert_eq!(
        w.next_open(ts("2026-03-29T02:00:00Z")),
        Some(ts("2026-04-05T00:30:00Z"))
    );
}

#[test]
fn berlin_fall_back_start_in_fold_opens_at_first_occurrence() {
    // 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z; 02:30 happens at 00:30Z and 01:30Z.
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(vec![spec(&[Sunday], 2, 30, hours(1))], berlin.clone());
    let first = ts("2026-10-25T00:30:00Z");
    assert_eq!(w.next_open(ts("2026-10-24T12:00:00Z")), Some(first));
    // One real hour: closes at the second 02:30, which does not reopen it.
    let end = ts("2026-10-25T01:30:00Z");
    assert_period(&w, first, first, end);
    assert!(!w.is_open(end + mins(10)));
    assert_eq!(w.next_open(end), Some(ts("2026-11-01T01:30:00Z")));
}

#[test]
fn berlin_window_across_change_lasts_real_length() {
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(vec![spec(&[Sunday], 1, 0, hours(3))], berlin.clone());
    // Spring: 01:00 CET to 05:00 CEST is 3 real hours.
    let start = w.next_open(ts("2026-03-28T12:00:00Z")).unwrap();
    assert_eq!(start, ts("2026-03-29T00:00:00Z"));
    let end = w.closes_at(start).unwrap();
    assert_eq!(end.duration_since(start), SignedDuration::from_hours(3));
    assert_eq!(berlin.to_datetime(end), date(2026, 3, 29).at(5, 0, 0, 0));
    // Autumn: 01:00 CEST to 03:00 CET is 3 real hours.
    let start = w.next_open(ts("2026-10-24T12:00:00Z")).unwrap();
    assert_eq!(start, ts("2026-10-24T23:00:00Z"));
    let end = w.closes_at(start).unwrap();
    assert_eq!(end.duration_since(start), SignedDuration::from_hours(3));
    assert_eq!(berlin.to_datetime(end), date(2026, 10, 25).at(3, 0, 0, 0));
}

#[test]
fn new_york_dst_changes() {
    let ny = tz("America/New_York");
    // 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.
    let w = RebootWindows::new(vec![spec(&[Sunday], 2, 30, mins(90))], ny.clone());
    let start = w.next_open(ts("2026-03-07T12:00:00Z")).unwrap();
    assert_eq!(start, ts("2026-03-08T07:00:00Z"));
    assert_eq!(ny.to_datetime(start), date(2026, 3, 8).at(3, 0, 0, 0));
    assert_eq!(w.closes_at(start), Some(start + mins(90)));
    // 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z; 01:30 is first 05:30Z (EDT).
    let w = RebootWindows::new(vec![spec(&[Sunday], 1, 30, hours(1))], ny.clone());
    let start = w.next_open(ts("2026-10-31T12:00:00Z")).unwrap();
    assert_eq!(start, ts("2026-11-01T05:30:00Z"));
    assert_period(&w, start, start, ts("2026-11-01T06:30:00Z"));
    // 3h windows across both changes last 3 real hours.
    let w = RebootWindows::new(vec![spec(&[Sunday], 0, 30, hours(3))], ny.clone());
    for (before, expected_start) in [
        ("2026-03-07T12:00:00Z", "2026-03-08T05:30:00Z"),
        ("2026-10-31T12:00:00Z", "2026-11-01T04:30:00Z"),
    ] {
        let start = w.next_open(ts(before)).unwrap();
        assert_eq!(start, ts(expected_start));
        let end = w.closes_at(start).unwrap();
        assert_eq!(end.duration_since(start), SignedDuration::from_hours(3));
    }
}

#[test]
fn lord_howe_half_hour_changes() {
    let lh = tz("Australia/Lord_Howe");
    // 2026-10-04: 02:00 +10:30 -> 02:30 +11 at 2026-10-03T15:30Z.
    let w = RebootWindows::new(vec![spec(&[Sunday], 2, 15, mins(30))], lh.clone());
    let start = w.next_open(ts("2026-10-02T00:00:00Z")).unwrap();
    assert_eq!(start, ts("2026-10-03T15:30:00Z"));
    assert_eq!(lh.to_datetime(start), date(2026, 10, 4).at(2, 30, 0, 0));
    assert_eq!(w.closes_at(start), Some(ts("2026-10-03T16:00:00Z")));
    // 2026-04-05: 02:00 +11 -> 01:30 +10:30 at 2026-04-04T15:00Z; 01:45 first at 14:45Z.
    let w = RebootWindows::new(vec![spec(&[Sunday], 1, 45, mins(30))], lh);
    let start = w.next_open(ts("2026-04-03T00:00:00Z")).unwrap();
    assert_eq!(start, ts("2026-04-04T14:45:00Z"));
    assert_period(&w, start, start, ts("2026-04-04T15:15:00Z"));
}

#[test]
fn far_ends_of_time_do_not_panic() {
    let w = RebootWindows::new(vec![spec(&[Monday], 22, 30, hours(3))], tz("Europe/Berlin"));
    for t in [Timestamp::MIN, Timestamp::MAX] {
        let _ = (w.is_open(t), w.closes_at(t), w.next_open(t), w.describe());
    }
}

// --- monthly patterns ---------------------------------------------------------------------

fn monthly(text: &str) -> MonthlyDay {
    match parse_day_pattern(text) {
        Ok(DayPattern::Monthly(m)) => m,
        other => panic!("{text}: {other:?}"),
    }
}

/// A window on monthly patterns only.
fn monthly_spec(patterns: &[&str], h: i8, m: i8, length: Duration) -> WindowSpec {
    WindowSpec {
        days: Vec::new(),
        monthly: patterns.iter().map(|p| monthly(p)).collect(),
        start: time(h, m, 0, 0),
        length,
    }
}

#[test]
fn day_patterns_parse_in_any_case_and_bad_ones_say_why() {
    for (text, nth, weekday) in [
        ("2nd Sat", Nth::Second, Saturday),
        ("second saturday", Nth::Second, Saturday),
        ("LAST sun", Nth::Last, Sunday),
        ("1st Mon", Nth::First, Monday),
        ("first  monday", Nth::First, Monday),
        ("3rd Wed", Nth::Third, Wednesday),
        ("fourth Fri", Nth::Fourth, Friday),
    ] {
        assert_eq!(monthly(text), MonthlyDay { nth, weekday }, "{text}");
    }
    assert_eq!(parse_day_pattern("Tue"), Ok(DayPattern::Weekly(Tuesday)));
    assert_eq!(parse_day_pattern("sunday"), Ok(DayPattern::Weekly(Sunday)));
    for (bad, why) in [
        ("6th sat", "unknown ordinal \"6th\""),
        ("5th sun", "there is no 5th"),
        ("2nd funday", "unknown day \"funday\""),
        ("2nd", "unknown day \"2nd\""),
        ("2nd sat sun", "unknown day"),
        ("", "unknown day"),
        ("second-sat", "unknown day"),
    ] {
        let message = parse_day_pattern(bad).unwrap_err();
        assert!(message.contains(why), "{bad:?}: {message}");
    }
}

#[test]
fn monthly_patterns_pick_one_day_in_every_month() {
    // Known 2026 dates (from the calendar).
    let second_sat = [10, 14, 14, 11, 9, 13, 11, 8, 12, 10, 14, 12];
    let last_sun = [25, 22, 29, 26, 31, 28, 26, 30, 27, 25, 29, 27];
    let fourth_mon = [26, 23, 23, 27, 25, 22, 27, 24, 28, 26, 23, 28];
    for (pattern, days) in [
        ("2nd Sat", second_sat),
        ("last Sun", last_sun),
        ("4th Mon", fourth_mon),
    ] {
        let m = monthly(pattern);
        for (month, day) in (1..=12).zip(days) {
            let matching: Vec<i8> = (1..=date(2026, month, 1).days_in_month())
                .filter(|&d| m.matches(date(2026, month, d)))
                .collect();
            assert_eq!(matching, vec![day], "{pattern} in 2026-{month:02}");
        }
    }
    // Leap years: February 2028 has a 29th (a Tuesday), 2027's does not.
    assert!(monthly("last Tue").matches(date(2028, 2, 29)));
    assert!(!monthly("last Tue").matches(date(2028, 2, 22)));
    assert!(monthly("last Tue").matches(date(2027, 2, 23)));
    assert!(monthly("last Thu").matches(date(2028, 2, 24)));
    // Every pattern, every month of 2024-2030: exactly one day; "last" is in the final week.
    for nth in ["1st", "2nd", "3rd", "4th", "last"] {
        for day in every_day() {
            let m = MonthlyDay {
                nth: monthly(&format!("{nth} Mon")).nth,
                weekday: day,
            };
            for year in 2024..=2030 {
                for month in 1..=12 {
                    let hits: Vec<Date> = (1..=date(year, month, 1).days_in_month())
                        .map(|d| date(year, month, d))
                        .filter(|d| m.matches(*d))
                        .collect();
                    assert_eq!(hits.len(), 1, "{m:?} in {year}-{month}");
                    assert_eq!(hits[0].weekday(), day);
                    if nth == "last" {
                        assert_ne!(
                            hits[0].checked_add(Span::new().days(7)).unwrap().month(),
                            month
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn second_saturday_window_next_open_is_weeks_away() {
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(
        vec![monthly_spec(&["2nd Sat"], 2, 0, hours(3))],
        berlin.clone(),
    );
    let jan_10 = local(&berlin, 2026, 1, 10, 2, 0);
    assert_period(&w, jan_10 + hours(1), jan_10, jan_10 + hours(3));
    // The Saturday after is not a window day.
    assert!(!w.is_open(local(&berlin, 2026, 1, 17, 3, 0)));
    // From just after January's window: February's, five weeks later.
    let feb_14 = local(&berlin, 2026, 2, 14, 2, 0);
    assert_eq!(w.next_open(jan_10 + hours(3)), Some(feb_14));
    assert_eq!(w.closes_at(jan_10 + hours(3)), None);
    // Across the year end: December's is the 12th, then 2027-01-09.
    let dec_12 = local(&berlin, 2026, 12, 12, 2, 0);
    assert_eq!(
        w.next_open(local(&berlin, 2026, 11, 15, 0, 0)),
        Some(dec_12)
    );
    assert_eq!(
        w.next_open(dec_12 + hours(3)),
        Some(local(&berlin, 2027, 1, 9, 2, 0))
    );
    assert_eq!(
        w.describe(),
        "2nd Sat 02:00 for 3h (Europe/Berlin)",
        "described as written"
    );
}

#[test]
fn last_sunday_window_runs_into_the_next_month() {
    let utc = TimeZone::UTC;
    // The last Sunday of May 2026 is the 31st: 23:00 for 3h ends on 1 June at 02:00.
    let w = RebootWindows::new(
        vec![monthly_spec(&["last Sun"], 23, 0, hours(3))],
        utc.clone(),
    );
    let may_31 = local(&utc, 2026, 5, 31, 23, 0);
    let jun_1_0200 = local(&utc, 2026, 6, 1, 2, 0);
    assert_period(&w, local(&utc, 2026, 6, 1, 1, 0), may_31, jun_1_0200);
    assert_eq!(
        w.closes_at(local(&utc, 2026, 6, 1, 0, 30)),
        Some(jun_1_0200)
    );
    // June's last Sunday is the 28th.
    assert_eq!(
        w.next_open(jun_1_0200),
        Some(local(&utc, 2026, 6, 28, 23, 0))
    );
    // December 2026 -> January 2027.
    let dec_27 = local(&utc, 2026, 12, 27, 23, 0);
    assert_period(
        &w,
        local(&utc, 2026, 12, 28, 1, 0),
        dec_27,
        dec_27 + hours(3),
    );
}

#[test]
fn monthly_and_weekly_days_combine_and_merge() {
    let utc = TimeZone::UTC;
    // Every Saturday 22:00 for 2h, and on the last Saturday also 23:00 for 5h.
    let w = RebootWindows::new(
        vec![
            spec(&[Saturday], 22, 0, hours(2)),
            monthly_spec(&["last Sat"], 23, 0, hours(5)),
        ],
        utc.clone(),
    );
    // 2026-06-27 is June's last Saturday: one period 22:00 to Sunday 04:00.
    let start = local(&utc, 2026, 6, 27, 22, 0);
    assert_period(&w, start + mins(30), start, local(&utc, 2026, 6, 28, 4, 0));
    // 2026-06-20 is an ordinary Saturday: 22:00 to 00:00.
    let start = local(&utc, 2026, 6, 20, 22, 0);
    assert_period(&w, start + mins(30), start, start + hours(2));
    // Weekly names and monthly patterns in one `days` list.
    let mut both = spec(&[Monday], 1, 0, hours(1));
    both.monthly = vec![monthly("1st Sun")];
    let w = RebootWindows::new(vec![both], utc.clone());
    assert!(w.is_open(local(&utc, 2026, 6, 1, 1, 30)), "a Monday");
    assert!(
        w.is_open(local(&utc, 2026, 6, 7, 1, 30)),
        "June's 1st Sunday"
    );
    assert!(!w.is_open(local(&utc, 2026, 6, 14, 1, 30)), "2nd Sunday");
    assert_eq!(w.describe(), "Mon,1st Sun 01:00 for 1h (UTC)");
}

#[test]
fn monthly_windows_on_dst_sundays() {
    let berlin = tz("Europe/Berlin");
    // Berlin springs forward on the last Sunday of March (2026-03-29, 02:00 -> 03:00) and
    // falls back on the last Sunday of October (2026-10-25, 03:00 -> 02:00).
    let w = RebootWindows::new(
        vec![monthly_spec(&["last Sun"], 2, 30, hours(2))],
        berlin.clone(),
    );
    // In the gap: opens when the clock jumps, 01:00 UTC, for 2 real hours.
    assert_period(
        &w,
        ts("2026-03-29T02:00:00Z"),
        ts("2026-03-29T01:00:00Z"),
        ts("2026-03-29T03:00:00Z"),
    );
    // In the fold: the earlier 02:30 (CEST, 00:30 UTC).
    assert_period(
        &w,
        ts("2026-10-25T01:00:00Z"),
        ts("2026-10-25T00:30:00Z"),
        ts("2026-10-25T02:30:00Z"),
    );
    assert_eq!(
        w.next_open(ts("2026-09-28T00:00:00Z")),
        Some(ts("2026-10-25T00:30:00Z"))
    );

    let ny = tz("America/New_York");
    // New York: 2nd Sunday of March (2026-03-08, 02:00 -> 03:00 EDT), 1st Sunday of
    // November (2026-11-01, 02:00 EDT -> 01:00 EST).
    let w = RebootWindows::new(
        vec![monthly_spec(&["2nd Sun", "1st Sun"], 2, 15, hours(1))],
        ny.clone(),
    );
    // 02:15 does not exist on 2026-03-08: opens at 03:00 EDT = 07:00 UTC.
    assert_period(
        &w,
        ts("2026-03-08T07:30:00Z"),
        ts("2026-03-08T07:00:00Z"),
        ts("2026-03-08T08:00:00Z"),
    );
    // 1st Sunday of March 2026 is the 1st: 02:15 EST = 07:15 UTC.
    assert!(w.is_open(ts("2026-03-01T07:15:00Z")));
    // On 2026-11-01, 02:15 happens once (EST, 07:15 UTC): after the fold.
    assert_period(
        &w,
        ts("2026-11-01T07:45:00Z"),
        ts("2026-11-01T07:15:00Z"),
        ts("2026-11-01T08:15:00Z"),
    );
}

// --- freezes ----------------------------------------------------------------------------

fn freeze(from: &str, to: &str, reason: Option<&str>) -> FreezeSpec {
    let from_text = from;
    let from = parse_freeze_time(from, FreezeEnd::From).unwrap();
    let until = parse_freeze_time(to, FreezeEnd::To).unwrap();
    check_freeze(from, until, from_text, to).unwrap();
    FreezeSpec {
        from,
        until,
        reason: reason.map(str::to_string),
    }
}

#[test]
fn christmas_freeze_across_the_year_end() {
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::new(vec![spec(&[Saturday], 23, 0, hours(3))], berlin.clone())
        .with_freezes(&[freeze("2026-12-20", "2027-01-03", Some("Christmas"))]);
    let freeze_start = local(&berlin, 2026, 12, 20, 0, 0);
    let freeze_end = local(&berlin, 2027, 1, 4, 0, 0);
    // Saturday 19 December 23:00: the window opens, and the freeze cuts it at midnight.
    let dec_19 = local(&berlin, 2026, 12, 19, 23, 0);
    assert!(w.is_open(dec_19));
    assert_eq!(w.closes_at(dec_19 + mins(10)), Some(freeze_start));
    assert!(!w.is_open(freeze_start), "frozen from midnight");
    assert!(w.in_window(freeze_start), "though the window is open");
    // Saturdays 26 December and 2 January are frozen; the `to` date is frozen all day.
    assert!(!w.is_open(local(&berlin, 2026, 12, 26, 23, 30)));
    assert!(!w.is_open(local(&berlin, 2027, 1, 2, 23, 30)));
    assert!(!w.is_open(local(&berlin, 2027, 1, 3, 1, 0)));
    assert_eq!(w.closes_at(local(&berlin, 2026, 12, 26, 23, 30)), None);
    // Next open: the first Saturday after it, 9 January.
    let jan_9 = local(&berlin, 2027, 1, 9, 23, 0);
    assert_eq!(w.next_open(dec_19 + hours(1)), Some(jan_9));
    assert_eq!(
        w.next_open(local(&berlin, 2026, 12, 1, 0, 0)),
        Some(local(&berlin, 2026, 12, 5, 23, 0))
    );
    assert_period(&w, jan_9 + hours(1), jan_9, jan_9 + hours(3));
    // What STATUS says.
    let (until, reason) = w.frozen_at(local(&berlin, 2026, 12, 25, 12, 0)).unwrap();
    assert_eq!(until, freeze_end);
    assert_eq!(reason, Some("Christmas"));
    assert_eq!(w.local_time(until), "2027-01-04 00:00 CET");
    assert_eq!(w.frozen_at(freeze_end), None);
    assert_eq!(w.frozen_at(freeze_start - ns(1)), None);
    assert_eq!(
        w.describe_freezes(),
        "2026-12-20 00:00 CET to 2027-01-04 00:00 CET (Christmas)"
    );
}

#[test]
fn a_window_open_when_a_freeze_ends_opens_then() {
    let utc = TimeZone::UTC;
    // Every day 22:00 for 4h; frozen until 2027-01-04 00:00 (date-time, exclusive).
    let w = RebootWindows::new(vec![spec(&[], 22, 0, hours(4))], utc.clone())
        .with_freezes(&[freeze("2027-01-01T00:00", "2027-01-04T00:00", None)]);
    let end = local(&utc, 2027, 1, 4, 0, 0);
    assert_eq!(w.next_open(local(&utc, 2027, 1, 2, 12, 0)), Some(end));
    assert!(w.is_open(end));
    assert!(!w.is_open(end - ns(1)));
    assert_eq!(w.closes_at(end), Some(local(&utc, 2027, 1, 4, 2, 0)));
    let (until, reason) = w.frozen_at(end - ns(1)).unwrap();
    assert_eq!((until, reason), (end, None));
}

#[test]
fn freezes_without_windows() {
    let utc = TimeZone::UTC;
    let w = RebootWindows::always().with_freezes(&[freeze("2026-08-01", "2026-08-01", None)]);
    assert!(RebootWindows::always().is_always());
    // (always() is UTC.)
    assert!(!w.is_always());
    let start = local(&utc, 2026, 8, 1, 0, 0);
    let end = local(&utc, 2026, 8, 2, 0, 0);
    assert!(w.is_open(start - ns(1)));
    assert!(!w.is_open(start));
    assert!(!w.is_open(end - ns(1)));
    assert!(w.is_open(end));
    assert_eq!(w.closes_at(start - hours(5)), Some(start));
    assert_eq!(w.closes_at(end), None, "no more freezes: open for good");
    assert_eq!(w.next_open(start + hours(3)), Some(end));
    assert_eq!(w.next_open(end + hours(3)), Some(end + hours(3)));
    assert_eq!(w.describe(), "always");
}

#[test]
fn overlapping_and_touching_freezes_are_skipped_together() {
    let ny = tz("America/New_York");
    let w = RebootWindows::new(vec![spec(&[], 3, 0, hours(1))], ny.clone()).with_freezes(&[
        // Given out of order; the 10th-12th touches the 13th-15th at midnight, which overlaps
        // the 14th-20th.
        freeze("2026-07-14", "2026-07-20", Some("audit")),
        freeze("2026-07-10", "2026-07-12", Some("release")),
        freeze("2026-07-13T00:00", "2026-07-15T12:00", None),
    ]);
    let (until, reason) = w.frozen_at(local(&ny, 2026, 7, 11, 3, 30)).unwrap();
    assert_eq!(until, local(&ny, 2026, 7, 21, 0, 0));
    assert_eq!(reason, Some("release"));
    assert_eq!(
        w.next_open(local(&ny, 2026, 7, 10, 5, 0)),
        Some(local(&ny, 2026, 7, 21, 3, 0))
    );
    assert_eq!(
        w.frozen_at(local(&ny, 2026, 7, 16, 3, 0)).unwrap().1,
        Some("audit")
    );
    assert!(w.is_open(local(&ny, 2026, 7, 9, 3, 30)));
    assert!(w.is_open(local(&ny, 2026, 7, 21, 3, 30)));
}

#[test]
fn freeze_bounds_in_dst_changes() {
    let berlin = tz("Europe/Berlin");
    let w = RebootWindows::always().with_freezes(&[]);
    assert!(w.is_always());
    // 02:30 does not exist on 2026-03-29 in Berlin: the freeze starts when the clock jumps.
    let w = RebootWindows::new(vec![spec(&[], 0, 0, hours(24))], berlin.clone())
        .with_freezes(&[freeze("2026-03-29T02:30", "2026-10-25T02:30", None)]);
    assert!(w.is_open(ts("2026-03-29T00:59:59Z")));
    assert!(!w.is_open(ts("2026-03-29T01:00:00Z")));
    // 02:30 happens twice on 2026-10-25: the freeze ends at the first (CEST, 00:30 UTC).
    assert!(!w.is_open(ts("2026-10-25T00:29:59Z")));
    assert!(w.is_open(ts("2026-10-25T00:30:00Z")));
    assert_eq!(
        w.next_open(ts("2026-06-01T00:00:00Z")),
        Some(ts("2026-10-25T00:30:00Z"))
    );
    // A freeze over the summer: the local time of its end, in summer time.
    assert_eq!(
        w.local_time(ts("2026-10-25T00:30:00Z")),
        "2026-10-25 02:30 CEST"
    );
}

#[test]
fn freeze_times_parse_and_bad_ones_say_why() {
    let dt = |y, mo, d, h, mi| date(y, mo, d).at(h, mi, 0, 0);
    for (text, end, want) in [
        ("2026-12-20", FreezeEnd::From, dt(2026, 12, 20, 0, 0)),
        ("2026-12-20", FreezeEnd::To, dt(2026, 12, 21, 0, 0)),
        ("2026-12-31", FreezeEnd::To, dt(2027, 1, 1, 0, 0)),
        ("2028-02-29", FreezeEnd::To, dt(2028, 3, 1, 0, 0)),
        ("2026-12-20T06:00", FreezeEnd::To, dt(2026, 12, 20, 6, 0)),
        ("2026-12-20 06:00", FreezeEnd::From, dt(2026, 12, 20, 6, 0)),
    ] {
        assert_eq!(parse_freeze_time(text, end), Ok(want), "{text}");
    }
    assert_eq!(
        parse_freeze_time("2026-12-20T06:00:30", FreezeEnd::From),
        Ok(date(2026, 12, 20).at(6, 0, 30, 0))
    );
    for (bad, why) in [
        ("2027-02-29", "no such date"),
        ("2026-13-01", "no such date"),
        ("1999-12-31", "out of range"),
        ("2201-01-01", "out of range"),
        ("20261220", "expected YYYY-MM-DD"),
        ("2026-12-20T25:00", "expected YYYY-MM-DD"),
        ("2026-12-20T06:00Z", "expected YYYY-MM-DD"),
        ("2026-12-20T06:00+01:00", "expected YYYY-MM-DD"),
        ("2026-12-20T6:00", "expected YYYY-MM-DD"),
        ("next week", "expected YYYY-MM-DD"),
        ("", "expected YYYY-MM-DD"),
        ("+026-12-20", "expected YYYY-MM-DD"),
    ] {
        let message = parse_freeze_time(bad, FreezeEnd::From).unwrap_err();
        assert!(message.contains(why), "{bad:?}: {message}");
    }
    let from = parse_freeze_time("2027-01-03", FreezeEnd::From).unwrap();
    let until = parse_freeze_time("2026-12-20", FreezeEnd::To).unwrap();
    let message = check_freeze(from, until, "2027-01-03", "2026-12-20").unwrap_err();
    assert!(message.contains("ends before it starts"), "{message}");
    // The same date in both: that one day.
    let until = parse_freeze_time("2027-01-03", FreezeEnd::To).unwrap();
    assert_eq!(
        check_freeze(from, until, "2027-01-03", "2027-01-03"),
        Ok(())
    );
    // Equal date-times: empty, refused.
    let t = parse_freeze_time("2027-01-03T05:00", FreezeEnd::To).unwrap();
    assert!(check_freeze(t, t, "a", "b").is_err());
    let until = parse_freeze_time("2028-01-04", FreezeEnd::To).unwrap();
    let message = check_freeze(from, until, "2027-01-03", "2028-01-04").unwrap_err();
    assert!(message.contains("longer than 366 days"), "{message}");
}

#[test]
fn next_open_past_the_most_freezes() {
    let utc = TimeZone::UTC;
    // 64 freezes of 6 days each with one free day between them (not merged), from
    // 2027-01-01, and a window on the last Sunday of each month: most last Sundays fall in
    // a freeze, so next_open passes over many of them.
    let start = date(2027, 1, 1);
    let specs: Vec<FreezeSpec> = (0..MAX_FREEZES as i64)
        .map(|i| {
            let from = start.checked_add(Span::new().days(7 * i)).unwrap();
            let to = from.checked_add(Span::new().days(5)).unwrap();
            freeze(&from.to_string(), &to.to_string(), None)
        })
        .collect();
    let w = RebootWindows::new(
        vec![monthly_spec(&["last Sun"], 2, 0, hours(1))],
        utc.clone(),
    )
    .with_freezes(&specs);
    let from = local(&utc, 2026, 12, 31, 12, 0);
    let started = std::time::Instant::now();
    let got = w.next_open(from);
    let took = started.elapsed();
    // By hand: the first last Sunday at 02:00 not inside any freeze.
    let want = (0..800)
        .map(|k| start.checked_add(Span::new().days(k)).unwrap())
        .filter(|d| {
            d.weekday() == Sunday
                && d.checked_add(Span::new().days(7)).unwrap().month() != d.month()
        })
        .map(|d| local(&utc, d.year(), d.month(), d.day(), 2, 0))
        .find(|&t| {
            specs.iter().all(|f| {
                let (a, b) = (
                    utc.to_timestamp(f.from).unwrap(),
                    utc.to_timestamp(f.until).unwrap(),
                );
                !(a <= t && t < b)
            })
        });
    assert!(want.is_some());
    assert_eq!(got, want);
    println!("next_open past {MAX_FREEZES} freezes: {got:?} in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// Property tests against an independent, brute-force model.
mod props {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const ZONES: [&str; 4] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
    ];

    fn weekday_set() -> impl Strategy<Value = Vec<Weekday>> {
        // Bit i of the mask selects every_day()[i]; 0 is the empty list, i.e. every day.
        (0u8..128).prop_map(|mask| {
            every_day()
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, d)| d)
                .collect()
        })
    }

    fn start_time() -> impl Strategy<Value = Time> {
        prop_oneof![
            1 => (0i8..24, 0i8..60).prop_map(|(h, m)| time(h, m, 0, 0)),
            1 => (0i8..24, 0i8..60, 0i8..60).prop_map(|(h, m, s)| time(h, m, s, 0)),
            // Around the DST changes of the zones under test (01:00-03:59 local), so that
            // starts in gaps and folds come up often.
            2 => (1i8..4, prop::sample::select(vec![0i8, 15, 29, 30, 45, 59]))
                .prop_map(|(h, m)| time(h, m, 0, 0)),
        ]
    }

    fn length() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (1u64..=2_880).prop_map(|m| Duration::from_secs(m * 60)),
            (60u64..=172_800).prop_map(Duration::from_secs),
            prop::sample::select(vec![1u64, 3, 23, 24, 25, 48]).prop_map(hours),
        ]
    }

    /// Up to two monthly patterns; often none.
    fn monthly_set() -> impl Strategy<Value = Vec<MonthlyDay>> {
        let one = (0usize..5, 0usize..7).prop_map(|(n, d)| {
            let nth = [Nth::First, Nth::Second, Nth::Third, Nth::Fourth, Nth::Last][n];
            MonthlyDay {
                nth,
                weekday: every_day()[d],
            }
        });
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(one, 1..=2),
        ]
    }

    fn window() -> impl Strategy<Value = WindowSpec> {
        (weekday_set(), monthly_set(), start_time(), length()).prop_map(
            |(days, monthly, start, length)| WindowSpec {
                days,
                monthly,
                start,
                length,
            },
        )
    }

    /// Up to two freezes in 2026-2027, from an hour to 40 days long, often none.
    fn freezes() -> impl Strategy<Value = Vec<FreezeSpec>> {
        let one = (0i64..2 * 365 * 24, 1i64..40 * 24, start_time()).prop_map(
            |(from_hours, length_hours, at)| {
                let base = date(2026, 1, 1).to_datetime(at);
                let from = base.checked_add(Span::new().hours(from_hours)).unwrap();
                let until = from.checked_add(Span::new().hours(length_hours)).unwrap();
                FreezeSpec {
                    from,
                    until,
                    reason: None,
                }
            },
        );
        prop_oneof![
            1 => Just(Vec::new()),
            1 => prop::collection::vec(one, 1..=2),
        ]
    }

    /// Windows, a zone and an instant: uniform over 2026-2027, or within 3 days (often 6
    /// hours) of one of the zone's DST changes in that span.
    fn case() -> impl Strategy<Value = (RebootWindows, Timestamp, Vec<FreezeSpec>)> {
        (
            prop::collection::vec(window(), 1..=3),
            freezes(),
            0..ZONES.len(),
            any::<bool>(),
            any::<Index>(),
            0i64..2 * 365 * 86_400,
            prop_oneof![-3 * 86_400i64..3 * 86_400, -6 * 3_600i64..6 * 3_600],
            0i32..1_000_000_000,
        )
            .prop_map(
                |(windows, freezes, zone, near_change, which, offset, delta, nanos)| {
                    let tz = tz(ZONES[zone]);
                    let from = ts("2026-01-01T00:00:00Z");
                    let until = ts("2028-01-01T00:00:00Z");
                    let changes: Vec<Timestamp> = tz
                        .following(from)
                        .map(|c| c.timestamp())
                        .take_while(|&c| c < until)
                        .collect();
                    let base = if near_change && !changes.is_empty() {
                        changes[which.index(changes.len())].as_second() + delta
                    } else {
                        from.as_second() + offset
                    };
                    let t = Timestamp::new(base, nanos).unwrap();
                    (
                        RebootWindows::new(windows, tz).with_freezes(&freezes),
                        t,
                        freezes,
                    )
                },
            )
    }

    /// The first instant at which `tz`'s clock reads `dt` or later (near `dt`), computed
    /// without jiff's disambiguation: try every offset the zone uses within a day and a
    /// half, keep those that read back as `dt`; if none does, `dt` is skipped, so binary
    /// search for the first instant the clock reads past it.
    fn naive_start(tz: &TimeZone, dt: DateTime) -> Timestamp {
        let as_utc = jiff::tz::Offset::UTC.to_timestamp(dt).unwrap();
        let exact = (-72..=72)
            .map(|k| tz.to_offset(as_utc + SignedDuration::from_mins(30 * k)))
            .filter_map(|offset| offset.to_timestamp(dt).ok())
            .filter(|&t| tz.to_datetime(t) == dt)
            .min();
        if let Some(t) = exact {
            return t;
        }
        let (mut lo, mut hi) = (
            (as_utc - SignedDuration::from_hours(36)).as_nanosecond(),
            (as_utc + SignedDuration::from_hours(36)).as_nanosecond(),
        );
        let reads_past = |n: i128| tz.to_datetime(Timestamp::from_nanosecond(n).unwrap()) >= dt;
        assert!(!reads_past(lo) && reads_past(hi));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if reads_past(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Timestamp::from_nanosecond(hi).unwrap()
    }

    /// Whether `day` is the `nth` weekday of its month, counted by hand.
    fn naive_monthly(m: &MonthlyDay, day: Date) -> bool {
        let index = (day.day() - 1) / 7; // 0 for days 1-7, ...
        let week_later = day.checked_add(Span::new().days(7)).unwrap();
        let in_last_week = week_later.month() != day.month();
        day.weekday() == m.weekday
            && match m.nth {
                Nth::First => index == 0,
                Nth::Second => index == 1,
                Nth::Third => index == 2,
                Nth::Fourth => index == 3,
                Nth::Last => in_last_week,
            }
    }

    /// Open iff inside `[start, start + length)` of a window starting on a listed day,
    /// trying every local day from 9 days before `t` to 2 days after, and outside every
    /// freeze (its bounds resolved like window starts, by `naive_start`).
    fn naive_open(w: &RebootWindows, t: Timestamp, freezes: &[FreezeSpec]) -> bool {
        let tz = &w.tz;
        let frozen = freezes
            .iter()
            .any(|f| naive_start(tz, f.from) <= t && t < naive_start(tz, f.until));
        if frozen {
            return false;
        }
        if w.windows.is_empty() {
            return true;
        }
        let today = tz.to_datetime(t).date();
        (-9..=2).any(|k| {
            let day = today.checked_add(Span::new().days(k)).unwrap();
            w.windows.iter().any(|spec| {
                let listed = (spec.days.is_empty() && spec.monthly.is_empty())
                    || spec.days.contains(&day.weekday())
                    || spec.monthly.iter().any(|m| naive_monthly(m, day));
                let start = naive_start(tz, day.to_datetime(spec.start));
                listed && start <= t && t < start + spec.length
            })
        })
    }

    /// `k/8` of the way from `a` to `b`.
    fn between(a: Timestamp, b: Timestamp, k: i128) -> Timestamp {
        let n = a.as_nanosecond() + (b.as_nanosecond() - a.as_nanosecond()) * k / 8;
        Timestamp::from_nanosecond(n).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn is_open_matches_brute_force((w, t, f) in case()) {
            for k in 0..6 {
                let t = t + mins(20 * k);
                prop_assert_eq!(w.is_open(t), naive_open(&w, t, &f), "{} at {}", w.describe(), t);
            }
            // Also right at the edges the rules produce.
            let opens = w.next_open(t).unwrap();
            prop_assert!(naive_open(&w, opens, &f));
            prop_assert!(opens == t || !naive_open(&w, opens - ns(1), &f));
            if let Some(closes) = w.closes_at(opens) {
                prop_assert!(naive_open(&w, closes - ns(1), &f));
                prop_assert!(!naive_open(&w, closes, &f));
            }
        }

        #[test]
        fn closes_at_ends_the_open_period((w, t, _f) in case()) {
            match (w.is_open(t), w.closes_at(t)) {
                (false, None) => {}
                (false, Some(c)) => prop_assert!(false, "closed at {} but closes_at {}", t, c),
                (true, Some(c)) => {
                    prop_assert!(c > t);
                    for k in 1..8 {
                        prop_assert!(w.is_open(between(t, c, k)));
                    }
                    prop_assert!(w.is_open(c - ns(1)));
                    prop_assert!(!w.is_open(c), "merged period ends at {}", c);
                }
                // Open with no end in sight: windows cover every instant from here on.
                (true, None) => {
                    for k in 0..50i64 {
                        let later = t + SignedDuration::from_secs(k * 8 * 86_400 + k * k * 977);
                        prop_assert!(w.is_open(later), "open for good, closed at {}", later);
                    }
                }
            }
        }

        #[test]
        fn next_open_is_the_first_open_instant((w, t, _f) in case()) {
            let n = w.next_open(t).unwrap();
            prop_assert!(n >= t);
            prop_assert!(w.is_open(n));
            prop_assert_eq!(n == t, w.is_open(t));
            if n > t {
                for k in 1..8 {
                    prop_assert!(!w.is_open(between(t, n, k)));
                }
                prop_assert!(!w.is_open(n - ns(1)));
                prop_assert_eq!(w.next_open(n - ns(1)), Some(n));
            }
        }
    }
}
