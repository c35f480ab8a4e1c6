use super::*;
use jiff::civil::{date, time, DateTime};
use jiff::SignedDuration;
use Weekday::*;

fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or_else(|e| panic!("zone {name} missing on this machine: {e}"))
}

fn spec(days: &[Weekday], h: i8, m: i8, length: Duration) -> WindowSpec {
    WindowSpec {
        days: days.to_vec(),
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

    fn window() -> impl Strategy<Value = WindowSpec> {
        (weekday_set(), start_time(), length()).prop_map(|(days, start, length)| WindowSpec {
            days,
            start,
            length,
        })
    }

    /// Windows, a zone and an instant: uniform over 2026-2027, or within 3 days (often 6
    /// hours) of one of the zone's DST changes in that span.
    fn case() -> impl Strategy<Value = (RebootWindows, Timestamp)> {
        (
            prop::collection::vec(window(), 1..=3),
            0..ZONES.len(),
            any::<bool>(),
            any::<Index>(),
            0i64..2 * 365 * 86_400,
            prop_oneof![-3 * 86_400i64..3 * 86_400, -6 * 3_600i64..6 * 3_600],
            0i32..1_000_000_000,
        )
            .prop_map(
                |(windows, zone, near_change, which, offset, delta, nanos)| {
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
                    (RebootWindows::new(windows, tz), t)
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

    /// Open iff inside `[start, start + length)` of a window starting on a listed day,
    /// trying every local day from 9 days before `t` to 2 days after.
    fn naive_open(w: &RebootWindows, t: Timestamp) -> bool {
        let tz = &w.tz;
        let today = tz.to_datetime(t).date();
        (-9..=2).any(|k| {
            let day = today.checked_add(Span::new().days(k)).unwrap();
            w.windows.iter().any(|spec| {
                let listed = spec.days.is_empty() || spec.days.contains(&day.weekday());
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
        fn is_open_matches_brute_force((w, t) in case()) {
            for k in 0..6 {
                let t = t + mins(20 * k);
                prop_assert_eq!(w.is_open(t), naive_open(&w, t), "{} at {}", w.describe(), t);
            }
            // Also right at the edges the rules produce.
            let opens = w.next_open(t).unwrap();
            prop_assert!(naive_open(&w, opens));
            prop_assert!(opens == t || !naive_open(&w, opens - ns(1)));
            if let Some(closes) = w.closes_at(opens) {
                prop_assert!(naive_open(&w, closes - ns(1)));
                prop_assert!(!naive_open(&w, closes));
            }
        }

        #[test]
        fn closes_at_ends_the_open_period((w, t) in case()) {
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
        fn next_open_is_the_first_open_instant((w, t) in case()) {
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
