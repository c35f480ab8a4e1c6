//! The settle time between hosts: a freed slot stays closed for `settle_ms`.

use super::*;

fn settle(settle_ms: u64, now: UnixMillis) -> Command {
    Command::SetSettleTime { settle_ms, now }
}

/// A group "w" of `max` slots with a settle time of 1000 ms, h1 holding (claimed).
fn settled_group(max: u32) -> LeaseState {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &settle(1_000, 0));
    ok(&mut s, 2, &acquire_max("w", "h1", 10, max));
    s
}

#[test]
fn a_released_slot_settles_before_the_queue_gets_it() {
    let mut s = settled_group(1);
    ok(&mut s, 3, &acquire("w", "h2", 20));
    let (_, events) = ok(&mut s, 4, &release("w", "h1", None, 100));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Granted(_))),
        "granted while settling: {events:?}"
    );
    assert_eq!(queue_names(&s, "w"), ["h2"]);
    assert_eq!(s.settling_until("w"), [1_100]);
    assert_eq!(s.next_settle_end(), Some(1_100));

    // An Expire before the end changes nothing; at the end it hands the slot over.
    let (_, events) = ok(&mut s, 5, &expire(1_099, None));
    assert!(events.is_empty(), "{events:?}");
    let (_, events) = ok(&mut s, 6, &expire(1_100, None));
    assert_eq!(events, promoted("w", "h2", 6, 1_100));
    assert_eq!(s.next_settle_end(), None);
    assert!(s.settling.is_empty());
}

#[test]
fn an_acquire_into_a_settling_slot_queues() {
    let mut s = settled_group(1);
    ok(&mut s, 3, &release("w", "h1", None, 100));
    let (outcome, _) = ok(&mut s, 4, &acquire("w", "h2", 500));
    assert_eq!(position_of(&outcome), (1, 1));
    // The next command after the settle time grants it, whatever it is.
    let (outcome, events) = ok(&mut s, 5, &acquire("w", "h3", 1_200));
    assert_eq!(position_of(&outcome), (1, 1));
    assert!(events.contains(&ev(
        "w",
        EventKind::Granted(grant("w", "h2", 5, 1_200, false))
    )));
    // A newcomer after the settle time, with nobody waiting, is granted at once.
    let mut s = settled_group(1);
    ok(&mut s, 3, &release("w", "h1", None, 100));
    let (outcome, _) = ok(&mut s, 4, &acquire("w", "h2", 1_100));
    assert_eq!(token_of(&outcome), 4);
}

#[test]
fn each_freed_slot_settles_on_its_own() {
    let mut s = settled_group(2);
    ok(&mut s, 3, &acquire_max("w", "h2", 20, 2));
    ok(&mut s, 4, &acquire_max("w", "h3", 30, 2));
    ok(&mut s, 5, &acquire_max("w", "h4", 40, 2));
    ok(&mut s, 6, &release("w", "h1", None, 100));
    ok(&mut s, 7, &release("w", "h2", None, 600));
    assert_eq!(s.settling_until("w"), [1_100, 1_600]);
    let (_, events) = ok(&mut s, 8, &expire(1_100, None));
    assert_eq!(events, promoted("w", "h3", 8, 1_100));
    assert_eq!(queue_names(&s, "w"), ["h4"]);
    let (_, events) = ok(&mut s, 9, &expire(1_600, None));
    assert_eq!(events, promoted("w", "h4", 9, 1_600));
}

#[test]
fn forced_and_timed_out_grants_settle_too_unclaimed_ones_do_not() {
    let mut s = settled_group(1);
    ok(&mut s, 3, &force("w", "h1", 100));
    assert_eq!(s.settling_until("w"), [1_100]);

    let mut s = settled_group(1);
    ok(&mut s, 3, &expire(5_000, Some(1_000)));
    assert_eq!(s.settling_until("w"), [6_000]);

    // A slot handed over but never claimed: its holder never went down.
    let mut s = settled_group(1);
    ok(&mut s, 3, &acquire("w", "h2", 20));
    ok(&mut s, 4, &release("w", "h1", None, 100));
    ok(&mut s, 5, &expire(1_100, None));
    assert!(s.holder_grant("w", "h2").is_some_and(|g| !g.claimed));
    ok(&mut s, 6, &release("w", "h2", None, 1_200));
    assert!(s.settling.is_empty());
    let mut s2 = s.clone();
    ok(&mut s, 7, &drop_waiters(&[], 1_300));
    ok(&mut s2, 7, &acquire("w", "h3", 1_300));
    assert_eq!(holder_names(&s2, "w"), ["h3"]);
}

#[test]
fn setting_the_settle_time_to_zero_opens_every_settling_slot() {
    let mut s = settled_group(1);
    ok(&mut s, 3, &acquire("w", "h2", 20));
    ok(&mut s, 4, &release("w", "h1", None, 100));
    let (_, events) = ok(&mut s, 5, &settle(0, 200));
    assert_eq!(events, promoted("w", "h2", 5, 200));
    assert!(s.settling.is_empty());
    // Without a settle time nothing is recorded.
    ok(&mut s, 6, &acquire("w", "h2", 300));
    ok(&mut s, 7, &release("w", "h2", None, 400));
    assert!(s.settling.is_empty());
    assert_eq!(s.next_settle_end(), None);
}

#[test]
fn a_shorter_settle_time_applies_to_slots_already_settling() {
    let mut s = settled_group(1);
    ok(&mut s, 3, &acquire("w", "h2", 20));
    ok(&mut s, 4, &release("w", "h1", None, 100));
    ok(&mut s, 5, &settle(300, 200));
    assert_eq!(s.next_settle_end(), Some(400));
    let (_, events) = ok(&mut s, 6, &expire(400, None));
    assert_eq!(events, promoted("w", "h2", 6, 400));
}

#[test]
fn a_paused_group_keeps_its_settle_and_resume_respects_it() {
    let mut s = settled_group(1);
    ok(&mut s, 3, &acquire("w", "h2", 20));
    ok(&mut s, 4, &release("w", "h1", None, 100));
    ok(&mut s, 5, &pause(Some("w"), "look", 150));
    ok(&mut s, 6, &resume(Some("w"), 500));
    assert_eq!(queue_names(&s, "w"), ["h2"], "resumed into a settling slot");
    let (_, events) = ok(&mut s, 7, &expire(1_100, None));
    assert_eq!(events, promoted("w", "h2", 7, 1_100));
}

#[test]
fn every_release_settles_also_above_a_lowered_size() {
    let mut s = settled_group(3);
    for (i, h) in ["h2", "h3"].iter().enumerate() {
        ok(&mut s, 3 + i as u64, &acquire_max("w", h, 20, 3));
    }
    ok(&mut s, 5, &set_max("w", 1, 30));
    for (i, h) in ["h1", "h2", "h3"].iter().enumerate() {
        ok(&mut s, 6 + i as u64, &release("w", h, None, 100 + i as u64));
    }
    assert_eq!(s.settling_until("w"), [1_100, 1_101, 1_102]);
    // Raised again, the group still waits for its hosts to settle.
    ok(&mut s, 9, &set_max("w", 3, 200));
    let (outcome, _) = ok(&mut s, 10, &acquire("w", "h4", 300));
    assert_eq!(position_of(&outcome), (1, 1));
    let (_, events) = ok(&mut s, 11, &expire(1_100, None));
    assert_eq!(events, promoted("w", "h4", 11, 1_100));
}
