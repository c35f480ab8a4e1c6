use super::*;
use crate::rules::names::{NameError, MAX_GROUP_LEN, MAX_HOLDER_LEN};

const TTL: u64 = 1_000;

fn acquire_max(group: &str, holder: &str, now: UnixMillis, max: u32) -> Command {
    Command::Acquire {
        group: group.to_owned(),
        holder: holder.to_owned(),
        machine_id: format!("mid-{holder}"),
        now,
        default_max_holders: max,
        waiter_ttl_ms: TTL,
    }
}

fn acquire(group: &str, holder: &str, now: UnixMillis) -> Command {
    acquire_max(group, holder, now, 1)
}

fn release(group: &str, holder: &str, token: Option<u64>, now: UnixMillis) -> Command {
    Command::Release {
        group: group.to_owned(),
        holder: holder.to_owned(),
        token,
        now,
    }
}

fn pause(group: Option<&str>, reason: &str, now: UnixMillis) -> Command {
    Command::Pause {
        by: "ops".into(),
        group: group.map(str::to_owned),
        reason: reason.to_owned(),
        now,
        default_max_holders: 1,
    }
}

fn resume(group: Option<&str>, now: UnixMillis) -> Command {
    Command::Resume {
        by: "ops".into(),
        group: group.map(str::to_owned),
        now,
    }
}

fn set_max(group: &str, max_holders: u32, now: UnixMillis) -> Command {
    Command::SetMax {
        by: "ops".into(),
        group: group.to_owned(),
        max_holders,
        now,
        default_max_holders: 1,
    }
}

fn force(group: &str, holder: &str, now: UnixMillis) -> Command {
    Command::ForceRelease {
        by: "ops".into(),
        group: group.to_owned(),
        holder: holder.to_owned(),
        now,
    }
}

fn expire(now: UnixMillis, hold_timeout_ms: Option<u64>) -> Command {
    Command::Expire {
        now,
        hold_timeout_ms,
    }
}

fn ev(group: &str, kind: EventKind) -> Event {
    Event {
        group: group.to_owned(),
        kind,
    }
}

/// Applies a command that must be accepted.
fn ok(state: &mut LeaseState, index: u64, cmd: &Command) -> (Outcome, Vec<Event>) {
    state.apply(index, cmd).expect("command accepted")
}

fn token_of(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Granted(grant) => grant.token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn position_of(outcome: &Outcome) -> (u32, u32) {
    match outcome {
        Outcome::Queued {
            position, waiters, ..
        } => (*position, *waiters),
        other => panic!("expected queued, got {other:?}"),
    }
}

fn queue_names(state: &LeaseState, group: &str) -> Vec<String> {
    state.groups[group]
        .queue
        .iter()
        .map(|w| w.holder.clone())
        .collect()
}

fn holder_names(state: &LeaseState, group: &str) -> Vec<String> {
    state.groups[group]
        .holders
        .iter()
        .map(|g| g.holder.clone())
        .collect()
}

#[test]
fn first_acquire_creates_group_and_grants() {
    let mut s = LeaseState::default();
    let (outcome, events) = ok(&mut s, 7, &acquire_max("web", "a", 100, 2));
    let grant = Grant {
        group: "web".into(),
        holder: "a".into(),
        token: 7,
        machine_id: "mid-a".into(),
        granted_at: 100,
    };
    assert_eq!(outcome, Outcome::Granted(grant.clone()));
    assert_eq!(
        events,
        vec![
            ev("web", EventKind::MaxChanged { max_holders: 2 }),
            ev("web", EventKind::Granted(grant.clone())),
        ]
    );
    assert_eq!(s.groups["web"].max_holders, 2);
    assert_eq!(s.holder_grant("web", "a"), Some(&grant));
}

#[test]
fn acquire_is_reentrant() {
    let mut s = LeaseState::default();
    let (first, _) = ok(&mut s, 1, &acquire("g", "a", 10));
    let before = s.clone();
    let (again, events) = ok(&mut s, 2, &acquire("g", "a", 20));
    assert_eq!(again, first);
    assert_eq!(token_of(&again), 1);
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn full_group_queues_newcomer() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 10));
    let (outcome, events) = ok(&mut s, 2, &acquire("g", "b", 20));
    assert_eq!(
        outcome,
        Outcome::Queued {
            position: 1,
            waiters: 1,
            reason: QueueReason::Full
        }
    );
    assert_eq!(
        events,
        vec![ev(
            "g",
            EventKind::Queued {
                holder: "b".into(),
                position: 1,
                waiters: 1
            }
        )]
    );
    let waiter = &s.groups["g"].queue[0];
    assert_eq!((waiter.since, waiter.deadline), (20, 20 + TTL));
    assert_eq!(waiter.machine_id, "mid-b");
}

#[test]
fn polling_again_keeps_place_and_refreshes_deadline() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    ok(&mut s, 3, &acquire("g", "c", 10));
    let (outcome, events) = ok(&mut s, 4, &acquire("g", "b", 500));
    assert_eq!(position_of(&outcome), (1, 2));
    assert!(events.is_empty(), "a refresh is not a new queue entry");
    assert_eq!(queue_names(&s, "g"), ["b", "c"]);
    let b = &s.groups["g"].queue[0];
    assert_eq!((b.since, b.deadline), (0, 500 + TTL));
    assert_eq!(
        s.groups["g"].queue.get(1).map(|w| w.deadline),
        Some(10 + TTL)
    );
}

#[test]
fn fifo_with_two_slots() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire_max("g", "a", 0, 2));
    ok(&mut s, 2, &acquire_max("g", "b", 0, 2));
    assert_eq!(
        position_of(&ok(&mut s, 3, &acquire_max("g", "c", 1, 2)).0),
        (1, 1)
    );
    assert_eq!(
        position_of(&ok(&mut s, 4, &acquire_max("g", "d", 2, 2)).0),
        (2, 2)
    );

    ok(&mut s, 5, &release("g", "a", None, 3));
    // One free slot, but c is ahead of d: d must keep waiting.
    assert_eq!(
        position_of(&ok(&mut s, 6, &acquire_max("g", "d", 4, 2)).0),
        (2, 2)
    );
    // A newcomer has both waiters ahead of it.
    assert_eq!(
        position_of(&ok(&mut s, 7, &acquire_max("g", "e", 4, 2)).0),
        (3, 3)
    );

    let (outcome, events) = ok(&mut s, 8, &acquire_max("g", "c", 5, 2));
    assert_eq!(token_of(&outcome), 8);
    assert_eq!(
        events[0],
        ev("g", EventKind::LeftQueue { holder: "c".into() })
    );
    assert!(matches!(&events[1].kind, EventKind::Granted(g) if g.holder == "c"));
    assert_eq!(queue_names(&s, "g"), ["d", "e"]);
    assert_eq!(holder_names(&s, "g"), ["b", "c"]);

    // Full again: d is first but there is no slot.
    assert_eq!(
        position_of(&ok(&mut s, 9, &acquire_max("g", "d", 6, 2)).0),
        (1, 2)
    );
    ok(&mut s, 10, &release("g", "b", None, 7));
    assert_eq!(
        position_of(&ok(&mut s, 11, &acquire_max("g", "e", 8, 2)).0),
        (2, 2)
    );
    assert_eq!(
        token_of(&ok(&mut s, 12, &acquire_max("g", "d", 9, 2)).0),
        12
    );
    assert_eq!(holder_names(&s, "g"), ["c", "d"]);
}

#[test]
fn waiter_behind_free_slots_is_not_blocked() {
    // With three slots and two waiters, a third caller still fits: FIFO only holds
    // back callers whose slot is claimed by someone ahead.
    let mut s = LeaseState::default();
    ok(&mut s, 1, &pause(Some("g"), "hold on", 0));
    ok(&mut s, 2, &set_max("g", 3, 0));
    ok(&mut s, 3, &acquire_max("g", "a", 1, 3));
    ok(&mut s, 4, &acquire_max("g", "b", 1, 3));
    ok(&mut s, 5, &resume(Some("g"), 2));
    assert_eq!(token_of(&ok(&mut s, 6, &acquire_max("g", "c", 3, 3)).0), 6);
    // b is second in the queue, with two slots free: granted too.
    assert_eq!(token_of(&ok(&mut s, 7, &acquire_max("g", "b", 3, 3)).0), 7);
    assert_eq!(token_of(&ok(&mut s, 8, &acquire_max("g", "a", 3, 3)).0), 8);
    assert!(s.groups["g"].queue.is_empty());
}

#[test]
fn release_is_idempotent() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    let (outcome, events) = ok(&mut s, 2, &release("g", "a", None, 1));
    assert_eq!(
        outcome,
        Outcome::Released {
            released: true,
            left_queue: false,
            token_mismatch: false
        }
    );
    assert_eq!(
        events,
        vec![ev(
            "g",
            EventKind::Released {
                holder: "a".into(),
                token: 1,
                cause: ReleaseCause::Released
            }
        )]
    );
    let before = s.clone();
    let (again, events) = ok(&mut s, 3, &release("g", "a", Some(1), 2));
    assert_eq!(
        again,
        Outcome::Released {
            released: false,
            left_queue: false,
            token_mismatch: false
        }
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn release_with_matching_token_releases() {
    let mut s = LeaseState::default();
    ok(&mut s, 4, &acquire("g", "a", 0));
    let (outcome, _) = ok(&mut s, 5, &release("g", "a", Some(4), 1));
    assert!(matches!(outcome, Outcome::Released { released: true, .. }));
    assert!(s.holder_grant("g", "a").is_none());
}

#[test]
fn release_with_stale_token_is_a_mismatch_not_an_error() {
    let mut s = LeaseState::default();
    ok(&mut s, 4, &acquire("g", "a", 0));
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 5, &release("g", "a", Some(3), 1));
    assert_eq!(
        outcome,
        Outcome::Released {
            released: false,
            left_queue: false,
            token_mismatch: true
        }
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn release_by_waiter_leaves_queue() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    ok(&mut s, 3, &acquire("g", "c", 0));
    let (outcome, events) = ok(&mut s, 4, &release("g", "b", None, 1));
    assert_eq!(
        outcome,
        Outcome::Released {
            released: false,
            left_queue: true,
            token_mismatch: false
        }
    );
    assert_eq!(
        events,
        vec![ev("g", EventKind::LeftQueue { holder: "b".into() })]
    );
    assert_eq!(queue_names(&s, "g"), ["c"]);
    assert_eq!(s.groups["g"].queue_position("c"), Some(1));
}

#[test]
fn commands_on_unknown_group_do_not_create_it() {
    let mut s = LeaseState::default();
    let (outcome, events) = ok(&mut s, 1, &release("nope", "a", Some(3), 0));
    assert_eq!(
        outcome,
        Outcome::Released {
            released: false,
            left_queue: false,
            token_mismatch: false
        }
    );
    assert!(events.is_empty());
    let (_, events) = ok(&mut s, 2, &resume(Some("nope"), 0));
    assert!(events.is_empty());
    let (_, events) = ok(&mut s, 3, &force("nope", "a", 0));
    assert!(events.is_empty());
    assert_eq!(s, LeaseState::default());
}

#[test]
fn paused_group_keeps_holders_queues_acquires_and_allows_release() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire_max("g", "a", 0, 2));
    let (outcome, events) = ok(&mut s, 2, &pause(Some("g"), "bad kernel", 1));
    assert!(matches!(outcome, Outcome::Done { .. }));
    assert_eq!(
        events,
        vec![ev(
            "g",
            EventKind::Paused {
                reason: "bad kernel".into()
            }
        )]
    );
    assert_eq!(s.pause_reason("g"), Some("bad kernel"));
    assert_eq!(holder_names(&s, "g"), ["a"]);

    let (outcome, _) = ok(&mut s, 3, &acquire_max("g", "b", 2, 2));
    assert_eq!(
        outcome,
        Outcome::Queued {
            position: 1,
            waiters: 1,
            reason: QueueReason::Paused("bad kernel".into())
        }
    );
    // The holder is not affected by the pause, neither on retry nor on release.
    assert_eq!(token_of(&ok(&mut s, 4, &acquire_max("g", "a", 3, 2)).0), 1);
    let (outcome, _) = ok(&mut s, 5, &release("g", "a", Some(1), 4));
    assert!(matches!(outcome, Outcome::Released { released: true, .. }));

    let (_, events) = ok(&mut s, 6, &resume(Some("g"), 5));
    assert_eq!(events, vec![ev("g", EventKind::Resumed)]);
    assert_eq!(s.pause_reason("g"), None);
    assert_eq!(token_of(&ok(&mut s, 7, &acquire_max("g", "b", 6, 2)).0), 7);
}

#[test]
fn pause_creates_missing_group() {
    let mut s = LeaseState::default();
    let cmd = Command::Pause {
        by: "ops".into(),
        group: Some("new".into()),
        reason: "later".into(),
        now: 0,
        default_max_holders: 3,
    };
    let (_, events) = ok(&mut s, 1, &cmd);
    assert_eq!(
        events,
        vec![
            ev("new", EventKind::MaxChanged { max_holders: 3 }),
            ev(
                "new",
                EventKind::Paused {
                    reason: "later".into()
                }
            ),
        ]
    );
    assert_eq!(s.groups["new"].max_holders, 3);
    assert_eq!(s.groups["new"].paused.as_deref(), Some("later"));
}

#[test]
fn repeated_pause_only_reports_changes() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &pause(Some("g"), "one", 0));
    let (_, events) = ok(&mut s, 2, &pause(Some("g"), "one", 1));
    assert!(events.is_empty());
    let (_, events) = ok(&mut s, 3, &pause(Some("g"), "two", 2));
    assert_eq!(
        events,
        vec![ev(
            "g",
            EventKind::Paused {
                reason: "two".into()
            }
        )]
    );
    ok(&mut s, 4, &resume(Some("g"), 3));
    let (_, events) = ok(&mut s, 5, &resume(Some("g"), 4));
    assert!(events.is_empty());
    let (_, events) = ok(&mut s, 6, &resume(None, 5));
    assert!(
        events.is_empty(),
        "resuming all when not paused changes nothing"
    );
}

#[test]
fn global_pause_applies_to_every_group() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("a", "h1", 0));
    let (_, events) = ok(&mut s, 2, &pause(None, "freeze", 1));
    assert_eq!(
        events,
        vec![ev(
            "",
            EventKind::PausedAll {
                reason: "freeze".into()
            }
        )]
    );
    assert_eq!(s.pause_reason("a"), Some("freeze"));
    assert_eq!(s.pause_reason("never-seen"), Some("freeze"));

    let (outcome, _) = ok(&mut s, 3, &acquire("b", "h2", 2));
    assert_eq!(
        outcome,
        Outcome::Queued {
            position: 1,
            waiters: 1,
            reason: QueueReason::Paused("freeze".into())
        }
    );
    // A group's own reason takes precedence in reports.
    ok(&mut s, 4, &pause(Some("b"), "own", 3));
    assert_eq!(s.pause_reason("b"), Some("own"));
    ok(&mut s, 5, &resume(Some("b"), 4));
    assert_eq!(s.pause_reason("b"), Some("freeze"), "still paused globally");
    assert!(matches!(
        ok(&mut s, 6, &acquire("b", "h2", 5)).0,
        Outcome::Queued { .. }
    ));

    let (_, events) = ok(&mut s, 7, &resume(None, 6));
    assert_eq!(events, vec![ev("", EventKind::ResumedAll)]);
    assert_eq!(s.paused_all, None);
    assert_eq!(token_of(&ok(&mut s, 8, &acquire("b", "h2", 7)).0), 8);
    assert_eq!(holder_names(&s, "a"), ["h1"], "holders kept their slots");
}

#[test]
fn force_release_removes_grant() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    let (outcome, events) = ok(&mut s, 3, &force("g", "a", 1));
    assert!(matches!(outcome, Outcome::Done { .. }));
    assert_eq!(
        events,
        vec![ev(
            "g",
            EventKind::Released {
                holder: "a".into(),
                token: 1,
                cause: ReleaseCause::Forced
            }
        )]
    );
    assert!(s.holder_grant("g", "a").is_none());
    // Not holding: no-op, and the queue is left alone.
    let before = s.clone();
    let (_, events) = ok(&mut s, 4, &force("g", "b", 2));
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn lowering_max_keeps_holders_until_below() {
    let mut s = LeaseState::default();
    for (i, h) in ["a", "b", "c"].into_iter().enumerate() {
        ok(&mut s, i as u64 + 1, &acquire_max("g", h, 0, 3));
    }
    let (outcome, events) = ok(&mut s, 4, &set_max("g", 1, 1));
    assert!(matches!(outcome, Outcome::Done { .. }));
    assert_eq!(
        events,
        vec![ev("g", EventKind::MaxChanged { max_holders: 1 })]
    );
    assert_eq!(holder_names(&s, "g"), ["a", "b", "c"]);

    assert!(matches!(
        ok(&mut s, 5, &acquire("g", "d", 2)).0,
        Outcome::Queued { .. }
    ));
    ok(&mut s, 6, &release("g", "a", None, 3));
    assert!(matches!(
        ok(&mut s, 7, &acquire("g", "d", 4)).0,
        Outcome::Queued { .. }
    ));
    ok(&mut s, 8, &release("g", "b", None, 5));
    assert!(matches!(
        ok(&mut s, 9, &acquire("g", "d", 6)).0,
        Outcome::Queued { .. }
    ));
    ok(&mut s, 10, &release("g", "c", None, 7));
    assert_eq!(token_of(&ok(&mut s, 11, &acquire("g", "d", 8)).0), 11);
}

#[test]
fn raising_max_lets_waiters_in() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    ok(&mut s, 3, &set_max("g", 2, 1));
    assert_eq!(token_of(&ok(&mut s, 4, &acquire("g", "b", 2)).0), 4);
    let (_, events) = ok(&mut s, 5, &set_max("g", 2, 3));
    assert!(events.is_empty(), "same max is not a change");
}

#[test]
fn set_max_creates_group() {
    let mut s = LeaseState::default();
    let (_, events) = ok(&mut s, 1, &set_max("g", 5, 0));
    assert_eq!(
        events,
        vec![ev("g", EventKind::MaxChanged { max_holders: 5 })]
    );
    assert_eq!(s.groups["g"].max_holders, 5);
}

#[test]
fn stale_waiters_are_dropped_by_any_command() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0)); // deadline TTL
    ok(&mut s, 3, &acquire("g", "c", 500)); // deadline 500 + TTL
                                            // At the deadline itself the waiter is still alive.
    let (_, events) = ok(&mut s, 4, &set_max("other", 1, TTL));
    assert_eq!(
        events,
        vec![ev("other", EventKind::MaxChanged { max_holders: 1 })]
    );
    assert_eq!(queue_names(&s, "g"), ["b", "c"]);
    // Any command, even for another group, expires it first.
    let (_, events) = ok(&mut s, 5, &release("other", "x", None, TTL + 1));
    assert_eq!(
        events,
        vec![ev("g", EventKind::WaiterDropped { holder: "b".into() })]
    );
    assert_eq!(queue_names(&s, "g"), ["c"]);
    // A dropped waiter that polls again is a newcomer at the back.
    let (outcome, events) = ok(&mut s, 6, &acquire("g", "c", 2 * TTL + 501));
    assert_eq!(
        events[0],
        ev("g", EventKind::WaiterDropped { holder: "c".into() })
    );
    assert_eq!(position_of(&outcome), (1, 1));
    assert_eq!(s.groups["g"].queue[0].since, 2 * TTL + 501);
}

#[test]
fn expire_drops_waiters_and_reports() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    let (outcome, events) = ok(&mut s, 3, &expire(TTL + 1, None));
    assert!(matches!(outcome, Outcome::Done { ref message } if message.contains('1')));
    assert_eq!(
        events,
        vec![ev("g", EventKind::WaiterDropped { holder: "b".into() })]
    );
    let (outcome, events) = ok(&mut s, 4, &expire(TTL + 2, None));
    assert_eq!(
        outcome,
        Outcome::Done {
            message: "nothing expired".into()
        }
    );
    assert!(events.is_empty());
}

#[test]
fn hold_timeout_only_via_expire() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire_max("g", "a", 0, 2));
    ok(&mut s, 2, &acquire_max("g", "b", 300, 2));
    let (_, events) = ok(&mut s, 3, &expire(999, Some(1_000)));
    assert!(events.is_empty());
    // Other commands carry no hold timeout and never expire grants.
    ok(&mut s, 4, &acquire_max("g", "a", 5_000, 2));
    assert_eq!(holder_names(&s, "g"), ["a", "b"]);
    let (_, events) = ok(&mut s, 5, &expire(5_000, Some(4_800)));
    assert_eq!(
        events,
        vec![ev(
            "g",
            EventKind::Released {
                holder: "a".into(),
                token: 1,
                cause: ReleaseCause::HoldTimeout
            }
        )]
    );
    // Exactly at granted_at + timeout counts as expired.
    let (_, events) = ok(&mut s, 6, &expire(5_100, Some(4_800)));
    assert_eq!(events.len(), 1);
    assert!(s.groups["g"].holders.is_empty());
}

#[test]
fn next_expiry_points_at_first_change() {
    let mut s = LeaseState::default();
    assert_eq!(s.next_expiry(Some(10)), None);
    ok(&mut s, 1, &acquire("g", "a", 100));
    assert_eq!(s.next_expiry(None), None);
    assert_eq!(s.next_expiry(Some(5_000)), Some(5_100));
    ok(&mut s, 2, &acquire("g", "b", 200)); // deadline 200 + TTL
    assert_eq!(s.next_expiry(None), Some(200 + TTL + 1));
    assert_eq!(s.next_expiry(Some(5_000)), Some(200 + TTL + 1));
    assert_eq!(s.next_expiry(Some(50)), Some(150));

    // An Expire just before changes nothing, at the reported time it does.
    let at = s.next_expiry(None).expect("a waiter");
    let (_, events) = ok(&mut s, 3, &expire(at - 1, None));
    assert!(events.is_empty());
    let (_, events) = ok(&mut s, 4, &expire(at, None));
    assert_eq!(events.len(), 1);
    assert_eq!(s.next_expiry(None), None);
}

#[test]
fn invalid_commands_leave_state_unchanged() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    let before = s.clone();
    // Every one of these is at a time when b's TTL has run out: rejecting must not
    // even run the expiry step.
    let late = 10 * TTL;
    let long_group = "g".repeat(MAX_GROUP_LEN + 1);
    let long_holder = "h".repeat(MAX_HOLDER_LEN + 1);
    let group = |name: &str, reason| LeaseError::Group {
        name: name.into(),
        reason,
    };
    let holder = |name: &str, reason| LeaseError::Holder {
        name: name.into(),
        reason,
    };
    let char_in_group = |bad| NameError::GroupCharacter { bad };
    let char_in_holder = |bad| NameError::HolderCharacter { bad };
    let cases = [
        (acquire("", "a", late), group("", NameError::Empty)),
        (acquire("a b", "a", late), group("a b", char_in_group(' '))),
        (
            acquire("grüppe", "a", late),
            group("grüppe", char_in_group('ü')),
        ),
        (
            acquire(&long_group, "a", late),
            group(&long_group, NameError::TooLong { len: 129, max: 128 }),
        ),
        (acquire("g", "", late), holder("", NameError::Empty)),
        (
            acquire("g", "a\nb", late),
            holder("a\nb", char_in_holder('\n')),
        ),
        (
            acquire("g", &long_holder, late),
            holder(&long_holder, NameError::TooLong { len: 254, max: 253 }),
        ),
        (acquire_max("g", "c", late, 0), LeaseError::MaxHolders(0)),
        (
            release("g/x", "a", None, late),
            group("g/x", char_in_group('/')),
        ),
        (
            release("g", "\u{7f}", None, late),
            holder("\u{7f}", char_in_holder('\u{7f}')),
        ),
        (force("g", "", late), holder("", NameError::Empty)),
        (
            pause(Some("g g"), "r", late),
            group("g g", char_in_group(' ')),
        ),
        (resume(Some(""), late), group("", NameError::Empty)),
        (set_max("g", 0, late), LeaseError::MaxHolders(0)),
        (
            Command::Pause {
                by: "ops".into(),
                group: None,
                reason: "r".into(),
                now: late,
                default_max_holders: 0,
            },
            LeaseError::MaxHolders(0),
        ),
    ];
    for (i, (cmd, want)) in cases.iter().enumerate() {
        assert_eq!(s.apply(10 + i as u64, cmd), Err(want.clone()), "{cmd:?}");
        assert_eq!(cmd.validate(), Err(want.clone()));
        assert_eq!(s, before, "{cmd:?} changed the state");
    }
}

#[test]
fn validators_accept_edges() {
    assert!(validate_group_name("a.b_c-D9").is_ok());
    assert!(validate_group_name(&"x".repeat(MAX_GROUP_LEN)).is_ok());
    assert!(validate_group_name(&"x".repeat(MAX_GROUP_LEN + 1)).is_err());
    assert!(validate_holder("node-1.example.com").is_ok());
    assert!(
        validate_holder(&"é".repeat(MAX_HOLDER_LEN)).is_ok(),
        "counted in chars"
    );
    assert!(validate_holder("tab\there").is_err());
    // The same rule as node.name in the config: no whitespace in a holder.
    assert!(validate_holder("a b").is_err());
    assert!(validate_max(1).is_ok());
    assert!(Command::Expire {
        now: 0,
        hold_timeout_ms: None
    }
    .validate()
    .is_ok());
    assert!(resume(None, 0).validate().is_ok());
}

#[test]
fn error_messages_name_the_rule() {
    assert_eq!(
        validate_group_name("a b").unwrap_err().to_string(),
        "invalid group name \"a b\": contains ' '; only ASCII letters, digits, '.', '_' and '-' are allowed"
    );
    assert!(validate_holder(&"h".repeat(300))
        .unwrap_err()
        .to_string()
        .contains("at most 253"));
    assert!(LeaseError::MaxHolders(0)
        .to_string()
        .contains("must be 1 to 1000"));
}

#[test]
fn command_now_for_every_variant() {
    let cmds = [
        acquire("g", "a", 1),
        release("g", "a", None, 2),
        expire(3, None),
        pause(None, "r", 4),
        resume(None, 5),
        force("g", "a", 6),
        set_max("g", 1, 7),
    ];
    let nows: Vec<_> = cmds.iter().map(Command::now).collect();
    assert_eq!(nows, [1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn commands_and_outcomes_round_trip_through_json() {
    let mut s = LeaseState::default();
    let cmd = acquire("g", "a", 1);
    let json = serde_json::to_string(&cmd).expect("serialize");
    assert_eq!(serde_json::from_str::<Command>(&json).expect("parse"), cmd);
    let (outcome, events) = ok(&mut s, 1, &cmd);
    let json = serde_json::to_string(&(&outcome, &events)).expect("serialize");
    let back: (Outcome, Vec<Event>) = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, (outcome, events));
    let err: Result<Outcome, LeaseError> = Err(LeaseError::MaxHolders(0));
    let json = serde_json::to_string(&err).expect("serialize");
    let back: Result<Outcome, LeaseError> = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, err);
}

mod prop {
    use super::super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    const GROUPS: [&str; 3] = ["alpha", "beta", "gamma"];
    const HOLDERS: [&str; 6] = ["h0", "h1", "h2", "h3", "h4", "h5"];
    const REASONS: [&str; 2] = ["kernel", "maintenance"];
    const DEFAULT_MAX: u32 = 2;

    /// A command shape; tokens are resolved against the state when the command is built,
    /// so releases sometimes carry the right token.
    #[derive(Debug, Clone)]
    enum Op {
        Acquire { g: usize, h: usize, ttl: u64 },
        Release { g: usize, h: usize, token: u8 },
        Expire { timeout: Option<u64> },
        Pause { g: Option<usize>, reason: usize },
        Resume { g: Option<usize> },
        Force { g: usize, h: usize },
        SetMax { g: usize, max: u32 },
        Invalid { which: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        let g = 0..GROUPS.len();
        let h = 0..HOLDERS.len();
        prop_oneof![
            8 => (g.clone(), h.clone(), 0u64..120).prop_map(|(g, h, ttl)| Op::Acquire { g, h, ttl }),
            4 => (g.clone(), h.clone(), 0u8..3).prop_map(|(g, h, token)| Op::Release { g, h, token }),
            2 => proptest::option::of(0u64..300).prop_map(|timeout| Op::Expire { timeout }),
            1 => (proptest::option::of(g.clone()), 0..REASONS.len())
                .prop_map(|(g, reason)| Op::Pause { g, reason }),
            1 => proptest::option::of(g.clone()).prop_map(|g| Op::Resume { g }),
            1 => (g.clone(), h).prop_map(|(g, h)| Op::Force { g, h }),
            1 => (g, 0u32..4).prop_map(|(g, max)| Op::SetMax { g, max }),
            1 => (0u8..4).prop_map(|which| Op::Invalid { which }),
        ]
    }

    fn build(op: &Op, state: &LeaseState, now: UnixMillis) -> Command {
        match *op {
            Op::Acquire { g, h, ttl } => Command::Acquire {
                group: GROUPS[g].into(),
                holder: HOLDERS[h].into(),
                machine_id: format!("mid-{h}"),
                now,
                default_max_holders: DEFAULT_MAX,
                waiter_ttl_ms: ttl,
            },
            Op::Release { g, h, token } => {
                let held = state.holder_grant(GROUPS[g], HOLDERS[h]).map(|g| g.token);
                let token = match token {
                    0 => None,
                    1 => held.or(Some(1)),
                    _ => held.map(|t| t + 1).or(Some(0)),
                };
                Command::Release {
                    group: GROUPS[g].into(),
                    holder: HOLDERS[h].into(),
                    token,
                    now,
                }
            }
            Op::Expire { timeout } => Command::Expire {
                now,
                hold_timeout_ms: timeout,
            },
            Op::Pause { g, reason } => Command::Pause {
                by: "ops".into(),
                group: g.map(|g| GROUPS[g].into()),
                reason: REASONS[reason].into(),
                now,
                default_max_holders: DEFAULT_MAX,
            },
            Op::Resume { g } => Command::Resume {
                by: "ops".into(),
                group: g.map(|g| GROUPS[g].into()),
                now,
            },
            Op::Force { g, h } => Command::ForceRelease {
                by: "ops".into(),
                group: GROUPS[g].into(),
                holder: HOLDERS[h].into(),
                now,
            },
            Op::SetMax { g, max } => Command::SetMax {
                by: "ops".into(),
                group: GROUPS[g].into(),
                max_holders: max,
                now,
                default_max_holders: DEFAULT_MAX,
            },
            Op::Invalid { which } => match which {
                0 => Command::Acquire {
                    group: "no spaces allowed".into(),
                    holder: "h0".into(),
                    machine_id: String::new(),
                    now,
                    default_max_holders: DEFAULT_MAX,
                    waiter_ttl_ms: 10,
                },
                1 => Command::Release {
                    group: GROUPS[0].into(),
                    holder: String::new(),
                    token: None,
                    now,
                },
                2 => Command::ForceRelease {
                    by: "ops".into(),
                    group: GROUPS[1].into(),
                    holder: "bad\u{0}holder".into(),
                    now,
                },
                _ => Command::Pause {
                    by: "ops".into(),
                    group: Some(String::new()),
                    reason: "x".into(),
                    now,
                    default_max_holders: DEFAULT_MAX,
                },
            },
        }
    }

    /// A watcher that only sees events; it must end up with the same holders, queue,
    /// sizes and pauses as the state.
    #[derive(Debug, Default, PartialEq)]
    struct Watcher {
        groups: BTreeMap<String, WatchedGroup>,
        paused_all: Option<String>,
    }

    #[derive(Debug, Default, PartialEq)]
    struct WatchedGroup {
        max_holders: u32,
        paused: Option<String>,
        holders: Vec<(String, u64)>,
        queue: Vec<String>,
    }

    impl Watcher {
        fn replay(&mut self, events: &[Event]) -> Result<(), TestCaseError> {
            for event in events {
                if let EventKind::PausedAll { reason } = &event.kind {
                    prop_assert_eq!(event.group.as_str(), "");
                    self.paused_all = Some(reason.clone());
                    continue;
                }
                if event.kind == EventKind::ResumedAll {
                    prop_assert_eq!(event.group.as_str(), "");
                    self.paused_all = None;
                    continue;
                }
                let g = self.groups.entry(event.group.clone()).or_default();
                match &event.kind {
                    EventKind::Granted(grant) => {
                        prop_assert!(!g.queue.contains(&grant.holder));
                        g.holders.push((grant.holder.clone(), grant.token));
                    }
                    EventKind::Queued {
                        holder,
                        position,
                        waiters,
                    } => {
                        g.queue.push(holder.clone());
                        prop_assert_eq!(*position as usize, g.queue.len());
                        prop_assert_eq!(*waiters as usize, g.queue.len());
                    }
                    EventKind::Released { holder, token, .. } => {
                        let before = g.holders.len();
                        g.holders.retain(|(h, t)| !(h == holder && t == token));
                        prop_assert_eq!(g.holders.len() + 1, before);
                    }
                    EventKind::LeftQueue { holder } | EventKind::WaiterDropped { holder } => {
                        let before = g.queue.len();
                        g.queue.retain(|h| h != holder);
                        prop_assert_eq!(g.queue.len() + 1, before);
                    }
                    EventKind::Paused { reason } => g.paused = Some(reason.clone()),
                    EventKind::Resumed => g.paused = None,
                    EventKind::MaxChanged { max_holders } => g.max_holders = *max_holders,
                    EventKind::PausedAll { .. } | EventKind::ResumedAll => {}
                }
            }
            Ok(())
        }

        fn of(state: &LeaseState) -> Self {
            let groups = state
                .groups
                .iter()
                .map(|(name, g)| {
                    let watched = WatchedGroup {
                        max_holders: g.max_holders,
                        paused: g.paused.clone(),
                        holders: g
                            .holders
                            .iter()
                            .map(|x| (x.holder.clone(), x.token))
                            .collect(),
                        queue: g.queue.iter().map(|w| w.holder.clone()).collect(),
                    };
                    (name.clone(), watched)
                })
                .collect();
            Watcher {
                groups,
                paused_all: state.paused_all.clone(),
            }
        }
    }

    fn check_invariants(state: &LeaseState, now: UnixMillis) -> Result<(), TestCaseError> {
        for (name, g) in &state.groups {
            prop_assert!(g.max_holders >= 1, "group {} has max 0", name);
            for (i, w) in g.queue.iter().enumerate() {
                prop_assert!(w.deadline >= now, "stale waiter {} in {}", w.holder, name);
                prop_assert!(g.grant(&w.holder).is_none(), "{} holds and waits", w.holder);
                prop_assert!(
                    !g.queue.iter().skip(i + 1).any(|o| o.holder == w.holder),
                    "{} queued twice",
                    w.holder
                );
            }
            for (i, grant) in g.holders.iter().enumerate() {
                prop_assert_eq!(&grant.group, name);
                prop_assert!(
                    !g.holders
                        .iter()
                        .skip(i + 1)
                        .any(|o| o.holder == grant.holder),
                    "{} holds twice",
                    grant.holder
                );
            }
            // Grant order is token order.
            prop_assert!(g.holders.windows(2).all(|w| w[0].token < w[1].token));
        }
        Ok(())
    }

    /// Checks a new grant against the state it was made from.
    fn check_new_grant(
        before: &LeaseState,
        after: &LeaseState,
        grant: &Grant,
    ) -> Result<(), TestCaseError> {
        let (max, holders, ahead, paused) = match before.groups.get(&grant.group) {
            Some(g) => (
                g.max_holders as usize,
                g.holders.len(),
                g.queue
                    .iter()
                    .filter(|w| w.deadline >= grant.granted_at)
                    .position(|w| w.holder == grant.holder)
                    .unwrap_or_else(|| {
                        g.queue
                            .iter()
                            .filter(|w| w.deadline >= grant.granted_at)
                            .count()
                    }),
                g.paused.is_some(),
            ),
            None => (DEFAULT_MAX as usize, 0, 0, false),
        };
        prop_assert!(holders < max, "granted at {}/{} holders", holders, max);
        prop_assert!(ahead < max - holders, "{} jumped the queue", grant.holder);
        prop_assert!(
            !paused && before.paused_all.is_none(),
            "granted while paused"
        );
        let g = &after.groups[&grant.group];
        prop_assert!(g.holders.len() <= g.max_holders as usize);
        Ok(())
    }

    proptest! {
               #![proptest_config(ProptestConfig::with_cases(300))]

               #[test]
               fn random_histories_keep_invariants(
                   steps in proptest::collection::vec((op(), 0u64..40), 1..80)
               ) {
                   let mut state = LeaseState::default();
                   let mut watcher = Watcher::default();
                   let mut now: UnixMillis = 1_000;
                   let mut last_token = 0;
                   let mut log = Vec::new();

                   for (i, (op, dt)) in steps.iter().enumerate() {
                       now += dt;
                       let index = i as u64 + 1;
                       let cmd = build(op, &state, now);
                       let before = state.clone();
                       let result = state.apply(index, &cmd);
                       match &result {
                           Err(_) => {
                               prop_assert!(cmd.validate().is_err());
                               prop_assert_eq!(&state, &before);
                           }
                           Ok((outcome, events)) => {
                               prop_assert!(cmd.validate().is_ok());
                               let new_grants: Vec<&Grant> = events
                                   .iter()
                                   .filter_map(|e| match &e.kind {
                                       EventKind::Granted(g) => Some(g),
                                       _ => None,
                                   })
                                   .collect();
                               prop_assert!(new_grants.len() <= 1);
                               for grant in &new_grants {
                                   let is_acquire = matches!(cmd, Command::Acquire { .. });
    prop_assert!(is_acquire, "only acquire grants");
                                   prop_assert_eq!(grant.token, index);
                                   prop_assert!(grant.token > last_token, "tokens must increase");
                                   last_token = grant.token;
                                   prop_assert_eq!(outcome, &Outcome::Granted((*grant).clone()));
                                   check_new_grant(&before, &state, grant)?;
                               }
                               if let Outcome::Granted(grant) = outcome {
                                   if new_grants.is_empty() {
                                       // Reentrant: the grant it already had.
                                       let held = before.holder_grant(&grant.group, &grant.holder);
                                       prop_assert_eq!(held, Some(grant));
                                   }
                                   prop_assert_eq!(state.holder_grant(&grant.group, &grant.holder), Some(grant));
                               }
                               if let (Outcome::Queued { position, waiters, .. }, Command::Acquire { group, holder, .. }) = (outcome, &cmd) {
                                   let g = &state.groups[group];
                                   prop_assert_eq!(g.queue_position(holder), Some(*position));
                                   prop_assert_eq!(*waiters as usize, g.queue.len());
                               }
                               watcher.replay(events)?;
                               prop_assert_eq!(&watcher, &Watcher::of(&state));
                               check_invariants(&state, now)?;
                           }
                       }
                       let json = serde_json::to_string(&state).expect("serialize");
                       let back: LeaseState = serde_json::from_str(&json).expect("parse");
                       prop_assert_eq!(&back, &state);
                       log.push((cmd, result));
                   }

                   // Determinism: a second replica applying the same log agrees on everything.
                   let mut replica = LeaseState::default();
                   for (i, (cmd, result)) in log.iter().enumerate() {
                       prop_assert_eq!(&replica.apply(i as u64 + 1, cmd), result);
                   }
                   prop_assert_eq!(&replica, &state);
               }
           }
}

#[test]
fn a_held_name_from_another_machine_is_refused_and_changes_nothing() {
    let mut s = LeaseState::default();
    let granted = token_of(&ok(&mut s, 1, &acquire("g", "h", 0)).0);
    let mut other = acquire("g", "h", 1);
    if let Command::Acquire { machine_id, .. } = &mut other {
        *machine_id = "another-machine".into();
    }
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 2, &other);
    assert!(
        matches!(&outcome, Outcome::Refused(Refusal::OtherMachine { granted_to, .. }) if granted_to == "mid-h"),
        "{outcome:?}"
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
    // The machine that holds it gets its grant back, as always.
    assert_eq!(token_of(&ok(&mut s, 3, &acquire("g", "h", 2)).0), granted);
}

#[test]
fn the_queue_and_the_number_of_groups_are_capped() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "holder", 0));
    let group = s.groups.get_mut("g").unwrap();
    for i in 0..MAX_QUEUE {
        group.queue.push_back(Waiter {
            holder: format!("w{i}"),
            machine_id: String::new(),
            since: 0,
            deadline: u64::MAX,
        });
    }
    let (outcome, _) = ok(&mut s, 2, &acquire("g", "one-too-many", 1));
    assert!(
        matches!(outcome, Outcome::Refused(Refusal::QueueFull { max, .. }) if max == MAX_QUEUE)
    );
    // A waiter already in the queue still refreshes its place.
    let (outcome, _) = ok(&mut s, 3, &acquire("g", "w5", 1));
    assert!(
        matches!(outcome, Outcome::Queued { position: 6, .. }),
        "{outcome:?}"
    );

    let mut s = LeaseState::default();
    for i in 0..MAX_GROUPS {
        s.groups.insert(format!("g{i}"), Group::new(1));
    }
    for cmd in [
        acquire("new", "h", 0),
        pause(Some("new"), "r", 0),
        set_max("new", 2, 0),
    ] {
        let (outcome, events) = ok(&mut s, 1, &cmd);
        assert!(
            matches!(outcome, Outcome::Refused(Refusal::TooManyGroups { .. })),
            "{cmd:?}: {outcome:?}"
        );
        assert!(events.is_empty());
        assert!(!s.groups.contains_key("new"));
    }
    // Existing groups keep working.
    assert!(matches!(
        ok(&mut s, 2, &acquire("g7", "h", 0)).0,
        Outcome::Granted(_)
    ));
}

#[test]
fn max_holders_is_capped() {
    assert!(validate_max(MAX_HOLDERS_CAP).is_ok());
    assert_eq!(
        validate_max(MAX_HOLDERS_CAP + 1),
        Err(LeaseError::MaxHolders(MAX_HOLDERS_CAP + 1))
    );
    assert!(set_max("g", u32::MAX, 0).validate().is_err());
}

#[test]
fn a_pause_records_who_and_when_and_a_resume_clears_it() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &pause(Some("g"), "kernel CVE", 42));
    let group = &s.groups["g"];
    assert_eq!(group.paused_by.as_deref(), Some("ops"));
    assert_eq!(group.paused_at, Some(42));
    ok(&mut s, 2, &pause(None, "freeze", 43));
    assert_eq!(s.paused_all_by.as_deref(), Some("ops"));
    assert_eq!(s.paused_all_at, Some(43));
    ok(&mut s, 3, &resume(Some("g"), 44));
    ok(&mut s, 4, &resume(None, 45));
    assert_eq!(s.groups["g"].paused_by, None);
    assert_eq!(s.paused_all_by, None);
    // Machine ids and reasons are checked like names.
    let mut long = acquire("g", "h", 0);
    if let Command::Acquire { machine_id, .. } = &mut long {
        *machine_id = "m".repeat(65);
    }
    assert!(matches!(long.validate(), Err(LeaseError::MachineId { .. })));
    assert!(matches!(
        pause(None, "bell\u{7}", 0).validate(),
        Err(LeaseError::Reason(_))
    ));
}
