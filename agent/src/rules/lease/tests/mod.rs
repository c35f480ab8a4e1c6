//! Tests of the lease rules: helpers and the commands one by one here; grant on
//! release and sessions in `grant_on_release`; checks, JSON and caps in `checks`;
//! random histories in `proptests` (built by `histories`); the settle time in
//! `settle`; hold and reboot-now in `host_control`.

use super::*;

mod checks;
mod grant_on_release;
mod histories;
mod host_control;
mod proptests;
mod settle;

fn acquire_max(group: &str, holder: &str, now: UnixMillis, max: u32) -> Command {
    Command::Acquire {
        group: group.to_owned(),
        holder: holder.to_owned(),
        machine_id: format!("mid-{holder}"),
        now,
        default_max_holders: max,
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

fn wref(group: &str, holder: &str) -> WaiterRef {
    WaiterRef::new(group, holder)
}

/// A `DropWaiters` naming `(group, holder)` pairs.
fn drop_waiters(refs: &[(&str, &str)], now: UnixMillis) -> Command {
    Command::DropWaiters {
        waiters: refs.iter().map(|(g, h)| wref(g, h)).collect(),
        now,
    }
}

fn ev(group: &str, kind: EventKind) -> Event {
    Event {
        group: group.to_owned(),
        kind,
    }
}

/// The grant the helpers' commands make (machine id `mid-<holder>`).
fn grant(group: &str, holder: &str, token: u64, granted_at: UnixMillis, claimed: bool) -> Grant {
    Grant {
        group: group.into(),
        holder: holder.into(),
        token,
        machine_id: format!("mid-{holder}"),
        granted_at,
        claimed,
    }
}

/// The two events of a slot handed to the head of the queue: it leaves the
/// queue, then is granted (unclaimed).
fn promoted(group: &str, holder: &str, token: u64, at: UnixMillis) -> [Event; 2] {
    [
        ev(
            group,
            EventKind::LeftQueue {
                holder: holder.into(),
            },
        ),
        ev(
            group,
            EventKind::Granted(grant(group, holder, token, at, false)),
        ),
    ]
}

fn released(group: &str, holder: &str, token: u64, cause: ReleaseCause) -> Event {
    ev(
        group,
        EventKind::Released {
            holder: holder.into(),
            token,
            cause,
        },
    )
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
    // A grant made directly by Acquire is the caller's own: claimed.
    let grant = grant("web", "a", 7, 100, true);
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
    assert_eq!(s.last_token, 7);
    assert!(
        !s.has_session("web", "a"),
        "a claimed grant lives on no session"
    );
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
    assert_eq!(
        waiter,
        &Waiter {
            holder: "b".into(),
            machine_id: "mid-b".into(),
            since: 20
        }
    );
    assert_eq!(s.last_token, 1, "queueing hands out no token");
    assert!(s.has_session("g", "b"));
}

#[test]
fn asking_again_while_queued_changes_nothing() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    ok(&mut s, 3, &acquire("g", "c", 10));
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 4, &acquire("g", "b", 500));
    assert_eq!(
        outcome,
        Outcome::Queued {
            position: 1,
            waiters: 2,
            reason: QueueReason::Full
        }
    );
    assert!(events.is_empty(), "asking again is not a new queue entry");
    assert_eq!(s, before, "not even the waiter's since changes");
    let (outcome, events) = ok(&mut s, 5, &acquire("g", "c", 600));
    assert_eq!(position_of(&outcome), (2, 2));
    assert!(events.is_empty());
    assert_eq!(s, before);

    // While paused, the answer carries the pause.
    ok(&mut s, 6, &pause(Some("g"), "hold on", 700));
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 7, &acquire("g", "c", 800));
    assert_eq!(
        outcome,
        Outcome::Queued {
            position: 2,
            waiters: 2,
            reason: QueueReason::Paused("hold on".into())
        }
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn fifo_with_two_slots() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire_max("g", "a", 0, 2));
    ok(&mut s, 2, &acquire_max("g", "b", 0, 2));
    let c = ok(&mut s, 3, &acquire_max("g", "c", 1, 2)).0;
    assert_eq!(position_of(&c), (1, 1));
    let d = ok(&mut s, 4, &acquire_max("g", "d", 2, 2)).0;
    assert_eq!(position_of(&d), (2, 2));

    // a's slot goes to c, the head, in the release itself; d keeps waiting.
    let (_, events) = ok(&mut s, 5, &release("g", "a", None, 3));
    let mut want = vec![released("g", "a", 1, ReleaseCause::Released)];
    want.extend(promoted("g", "c", 5, 3));
    assert_eq!(events, want);
    assert_eq!(holder_names(&s, "g"), ["b", "c"]);
    assert_eq!(queue_names(&s, "g"), ["d"]);
    // A newcomer waits behind d.
    let e = ok(&mut s, 6, &acquire_max("g", "e", 4, 2)).0;
    assert_eq!(position_of(&e), (2, 2));

    // c takes its slot; then b leaves and d, not e, gets the slot.
    assert_eq!(token_of(&ok(&mut s, 7, &acquire_max("g", "c", 5, 2)).0), 5);
    let (_, events) = ok(&mut s, 8, &release("g", "b", Some(2), 6));
    let mut want = vec![released("g", "b", 2, ReleaseCause::Released)];
    want.extend(promoted("g", "d", 8, 6));
    assert_eq!(events, want);
    assert_eq!(holder_names(&s, "g"), ["c", "d"]);
    assert_eq!(queue_names(&s, "g"), ["e"]);
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
    assert_eq!(events, vec![released("g", "a", 1, ReleaseCause::Released)]);
    releases_nothing(&mut s, 3, &release("g", "a", Some(1), 2));
}

/// Applies `release`, which must release nothing, leave no queue and
/// change nothing at all.
fn releases_nothing(s: &mut LeaseState, index: u64, release: &Command) {
    let before = s.clone();
    let (outcome, events) = ok(s, index, release);
    assert_eq!(
        outcome,
        Outcome::Released {
            released: false,
            left_queue: false,
            token_mismatch: false
        }
    );
    assert!(events.is_empty());
    assert_eq!(*s, before);
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
    ok(&mut s, 5, &acquire("g", "b", 0));
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 6, &release("g", "a", Some(3), 1));
    assert_eq!(
        outcome,
        Outcome::Released {
            released: false,
            left_queue: false,
            token_mismatch: true
        }
    );
    assert!(events.is_empty(), "the slot stays taken: b is not granted");
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
    assert!(!s.has_session("g", "b"));
}

/// Simulation seed 19690: a host's release of its first grant, sent again
/// late (a retry the network held), came after it had queued for a second
/// roll and put it back at the end of the queue.
#[test]
fn a_late_release_of_an_old_grant_keeps_the_place_in_a_later_queue() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &release("g", "a", Some(1), 1));
    ok(&mut s, 3, &acquire("g", "b", 2));
    ok(&mut s, 4, &acquire("g", "a", 3));
    ok(&mut s, 5, &acquire("g", "c", 4));
    releases_nothing(&mut s, 6, &release("g", "a", Some(1), 5));
    assert_eq!(queue_names(&s, "g"), ["a", "c"]);
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
    let (_, events) = ok(&mut s, 4, &drop_waiters(&[("nope", "a")], 0));
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

    // A slot is free, but the pause keeps newcomers out.
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
    let (outcome, events) = ok(&mut s, 5, &release("g", "a", Some(1), 4));
    assert!(matches!(outcome, Outcome::Released { released: true, .. }));
    assert_eq!(
        events,
        vec![released("g", "a", 1, ReleaseCause::Released)],
        "no grant on release while paused"
    );
    assert_eq!(queue_names(&s, "g"), ["b"]);

    // The resume hands the free slot to b in the same entry.
    let (_, events) = ok(&mut s, 6, &resume(Some("g"), 5));
    let mut want = vec![ev("g", EventKind::Resumed)];
    want.extend(promoted("g", "b", 6, 5));
    assert_eq!(events, want);
    assert_eq!(s.pause_reason("g"), None);
    assert_eq!(s.groups["g"].paused_by, None);
    let (outcome, events) = ok(&mut s, 7, &acquire_max("g", "b", 6, 2));
    assert_eq!(outcome, Outcome::Granted(grant("g", "b", 6, 5, true)));
    assert!(events.is_empty());
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
    assert_eq!(s.queue_reason("b"), QueueReason::Paused("own".into()));
    // Resuming the group alone grants nothing: all groups are still paused.
    let (_, events) = ok(&mut s, 5, &resume(Some("b"), 4));
    assert_eq!(events, vec![ev("b", EventKind::Resumed)]);
    assert_eq!(s.pause_reason("b"), Some("freeze"), "still paused globally");
    assert_eq!(queue_names(&s, "b"), ["h2"]);
    let (outcome, events) = ok(&mut s, 6, &acquire("b", "h2", 5));
    assert_eq!(
        outcome,
        Outcome::Queued {
            position: 1,
            waiters: 1,
            reason: QueueReason::Paused("freeze".into())
        }
    );
    assert!(events.is_empty());

    let (_, events) = ok(&mut s, 7, &resume(None, 6));
    let mut want = vec![ev("", EventKind::ResumedAll)];
    want.extend(promoted("b", "h2", 7, 6));
    assert_eq!(events, want);
    assert_eq!(s.paused_all, None);
    assert_eq!(s.queue_reason("b"), QueueReason::Full);
    assert_eq!(token_of(&ok(&mut s, 8, &acquire("b", "h2", 7)).0), 7);
    assert_eq!(holder_names(&s, "a"), ["h1"], "holders kept their slots");
}

#[test]
fn force_release_removes_grant_and_leaves_the_queue_alone() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    ok(&mut s, 3, &acquire("g", "c", 0));
    let (outcome, events) = ok(&mut s, 4, &force("g", "a", 1));
    assert!(matches!(outcome, Outcome::Done { .. }));
    let mut want = vec![released("g", "a", 1, ReleaseCause::Forced)];
    want.extend(promoted("g", "b", 4, 1));
    assert_eq!(events, want);
    assert!(s.holder_grant("g", "a").is_none());
    // Not holding (c only waits): no-op, and the queue is left alone.
    let before = s.clone();
    let (_, events) = ok(&mut s, 5, &force("g", "c", 2));
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

    assert_eq!(position_of(&ok(&mut s, 5, &acquire("g", "d", 2)).0), (1, 1));
    // Releases that leave the group at or over its max grant nothing.
    let (_, events) = ok(&mut s, 6, &release("g", "a", None, 3));
    assert_eq!(events, vec![released("g", "a", 1, ReleaseCause::Released)]);
    let (_, events) = ok(&mut s, 7, &release("g", "b", None, 4));
    assert_eq!(events, vec![released("g", "b", 2, ReleaseCause::Released)]);
    assert_eq!(queue_names(&s, "g"), ["d"]);
    // The last one frees the only slot: d gets it in the same entry.
    let (_, events) = ok(&mut s, 8, &release("g", "c", None, 5));
    let mut want = vec![released("g", "c", 3, ReleaseCause::Released)];
    want.extend(promoted("g", "d", 8, 5));
    assert_eq!(events, want);
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
    let (_, events) = ok(&mut s, 2, &set_max("g", 5, 1));
    assert!(events.is_empty(), "same max is not a change");
}

#[test]
fn expire_without_a_hold_timeout_is_a_read_barrier() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    let before = s.clone();
    // Waiters have no deadline any more: however late, nothing is dropped.
    let (outcome, events) = ok(&mut s, 3, &expire(u64::MAX, None));
    assert_eq!(
        outcome,
        Outcome::Done {
            message: "nothing expired".into()
        }
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn hold_timeout_only_via_expire() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire_max("g", "a", 0, 2));
    ok(&mut s, 2, &acquire_max("g", "b", 300, 2));
    let (outcome, events) = ok(&mut s, 3, &expire(999, Some(1_000)));
    assert!(events.is_empty());
    assert_eq!(
        outcome,
        Outcome::Done {
            message: "nothing expired".into()
        }
    );
    // Other commands carry no hold timeout and never expire grants.
    ok(&mut s, 4, &acquire_max("g", "a", 5_000, 2));
    assert_eq!(holder_names(&s, "g"), ["a", "b"]);
    let (outcome, events) = ok(&mut s, 5, &expire(5_000, Some(4_800)));
    assert!(matches!(outcome, Outcome::Done { ref message } if message.contains('1')));
    assert_eq!(
        events,
        vec![released("g", "a", 1, ReleaseCause::HoldTimeout)]
    );
    // Exactly at granted_at + timeout counts as expired.
    let (_, events) = ok(&mut s, 6, &expire(5_100, Some(4_800)));
    assert_eq!(
        events,
        vec![released("g", "b", 2, ReleaseCause::HoldTimeout)]
    );
    assert!(s.groups["g"].holders.is_empty());
}

#[test]
fn next_expiry_only_counts_hold_timeouts() {
    let mut s = LeaseState::default();
    assert_eq!(s.next_expiry(Some(10)), None);
    ok(&mut s, 1, &acquire("g", "a", 100));
    assert_eq!(s.next_expiry(None), None);
    assert_eq!(s.next_expiry(Some(5_000)), Some(5_100));
    // A waiter adds no expiry: its session lives on the leader.
    ok(&mut s, 2, &acquire("g", "b", 200));
    assert_eq!(s.next_expiry(None), None);
    assert_eq!(s.next_expiry(Some(5_000)), Some(5_100));
    assert_eq!(s.next_expiry(Some(50)), Some(150));

    // An Expire just before changes nothing; at the reported time it does,
    // and b's new slot counts from its grant.
    let (_, events) = ok(&mut s, 3, &expire(149, Some(50)));
    assert!(events.is_empty());
    let (_, events) = ok(&mut s, 4, &expire(150, Some(50)));
    let mut want = vec![released("g", "a", 1, ReleaseCause::HoldTimeout)];
    want.extend(promoted("g", "b", 4, 150));
    assert_eq!(events, want);
    assert_eq!(s.next_expiry(Some(50)), Some(200));
}
