//! Grant on release, claiming, session loss (`DropWaiters`) and fencing tokens.

use std::collections::BTreeSet;

use super::*;

/// `g` with max 1: `a` holds (token 1, claimed), then `waiters` queue in order
/// at indexes 2, 3, ...
fn held_by_a_with_queue(waiters: &[&str]) -> LeaseState {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    for (i, w) in waiters.iter().enumerate() {
        let (outcome, _) = ok(&mut s, i as u64 + 2, &acquire("g", w, 10));
        assert_eq!(position_of(&outcome).0 as usize, i + 1);
    }
    s
}

fn session_set(s: &LeaseState) -> BTreeSet<WaiterRef> {
    let all: Vec<WaiterRef> = s.sessions().collect();
    let set: BTreeSet<WaiterRef> = all.iter().cloned().collect();
    assert_eq!(set.len(), all.len(), "a session listed twice: {all:?}");
    set
}

#[test]
fn release_hands_the_slot_to_the_head_of_the_queue_in_the_same_apply() {
    let mut s = held_by_a_with_queue(&["b", "c"]);
    let (outcome, events) = ok(&mut s, 7, &release("g", "a", Some(1), 30));
    assert_eq!(
        outcome,
        Outcome::Released {
            released: true,
            left_queue: false,
            token_mismatch: false
        }
    );
    // Released, then the head leaves the queue, then it is granted: unclaimed,
    // token = the entry's index, granted at the entry's time.
    let handed = grant("g", "b", 7, 30, false);
    assert_eq!(
        events,
        vec![
            released("g", "a", 1, ReleaseCause::Released),
            ev("g", EventKind::LeftQueue { holder: "b".into() }),
            ev("g", EventKind::Granted(handed.clone())),
        ]
    );
    assert_eq!(s.holder_grant("g", "b"), Some(&handed));
    assert_eq!(holder_names(&s, "g"), ["b"]);
    assert_eq!(queue_names(&s, "g"), ["c"]);
    assert_eq!(s.last_token, 7);
    // The handed-over slot lives on b's session until b claims it.
    assert!(s.has_session("g", "b"));
}

#[test]
fn releases_grant_in_fifo_order() {
    let mut s = held_by_a_with_queue(&["h1", "h2", "h3", "h4"]);
    let mut current = ("a".to_owned(), 1);
    for (step, next) in ["h1", "h2", "h3", "h4"].into_iter().enumerate() {
        let index = 10 + 2 * step as u64;
        let (_, events) = ok(
            &mut s,
            index,
            &release("g", &current.0, Some(current.1), 100),
        );
        let mut want = vec![released("g", &current.0, current.1, ReleaseCause::Released)];
        want.extend(promoted("g", next, index, 100));
        assert_eq!(events, want, "step {step}");
        // Half of them claim before passing it on; an unclaimed slot is passed on too.
        if step % 2 == 0 {
            let (outcome, events) = ok(&mut s, index + 1, &acquire("g", next, 101));
            assert_eq!(
                outcome,
                Outcome::Granted(grant("g", next, index, 100, true))
            );
            assert!(events.is_empty());
        }
        current = (next.to_owned(), index);
    }
    assert!(s.groups["g"].queue.is_empty());
    // With nobody waiting, the last release grants nothing.
    let (_, events) = ok(&mut s, 30, &release("g", "h4", None, 200));
    assert_eq!(
        events,
        vec![released("g", "h4", 16, ReleaseCause::Released)]
    );
    assert!(s.groups["g"].holders.is_empty());
}

#[test]
fn a_waiter_leaving_the_queue_lets_the_next_one_move_up() {
    let mut s = held_by_a_with_queue(&["b", "c", "d"]);
    ok(&mut s, 5, &release("g", "b", None, 20));
    assert_eq!(s.groups["g"].queue_position("c"), Some(1));
    let (_, events) = ok(&mut s, 6, &release("g", "a", None, 21));
    assert_eq!(events[1..], promoted("g", "c", 6, 21));
    assert_eq!(queue_names(&s, "g"), ["d"]);
}

#[test]
fn claiming_sets_claimed_keeps_the_token_and_emits_nothing() {
    let mut s = held_by_a_with_queue(&["b"]);
    ok(&mut s, 3, &release("g", "a", None, 40));
    assert_eq!(
        s.holder_grant("g", "b"),
        Some(&grant("g", "b", 3, 40, false))
    );

    let (outcome, events) = ok(&mut s, 9, &acquire("g", "b", 50));
    // Same token and grant time, now claimed; index 9 hands out no token.
    let claimed = grant("g", "b", 3, 40, true);
    assert_eq!(outcome, Outcome::Granted(claimed.clone()));
    assert!(events.is_empty());
    assert_eq!(s.holder_grant("g", "b"), Some(&claimed));
    assert_eq!(s.last_token, 3);
    assert!(!s.has_session("g", "b"));
    assert_eq!(s.sessions().count(), 0);

    // Claiming again is the plain reentrant acquire.
    let before = s.clone();
    let (again, events) = ok(&mut s, 10, &acquire("g", "b", 60));
    assert_eq!(again, Outcome::Granted(claimed));
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn an_unclaimed_slot_released_by_its_holder_goes_to_the_next_waiter() {
    let mut s = held_by_a_with_queue(&["b", "c"]);
    ok(&mut s, 4, &release("g", "a", None, 40));
    // b gave up waiting and releases the slot it was handed but never claimed.
    let (outcome, events) = ok(&mut s, 5, &release("g", "b", Some(4), 41));
    assert!(matches!(outcome, Outcome::Released { released: true, .. }));
    let mut want = vec![released("g", "b", 4, ReleaseCause::Released)];
    want.extend(promoted("g", "c", 5, 41));
    assert_eq!(events, want);
}

#[test]
fn a_dropped_waiter_leaves_the_queue_and_is_never_granted() {
    let mut s = held_by_a_with_queue(&["b", "c"]);
    let (outcome, events) = ok(&mut s, 4, &drop_waiters(&[("g", "b")], 20));
    assert!(matches!(outcome, Outcome::Done { .. }));
    assert_eq!(
        events,
        vec![ev("g", EventKind::WaiterDropped { holder: "b".into() })]
    );
    assert_eq!(queue_names(&s, "g"), ["c"]);
    assert!(!s.has_session("g", "b"));

    // The next slot goes to c, the one after that to nobody.
    let (_, events) = ok(&mut s, 5, &release("g", "a", None, 21));
    let mut want = vec![released("g", "a", 1, ReleaseCause::Released)];
    want.extend(promoted("g", "c", 5, 21));
    assert_eq!(events, want);
    let (_, events) = ok(&mut s, 6, &release("g", "c", None, 22));
    assert_eq!(events, vec![released("g", "c", 5, ReleaseCause::Released)]);
    assert!(s.holder_grant("g", "b").is_none());
    // Dropping it again changes nothing.
    let before = s.clone();
    let (_, events) = ok(&mut s, 7, &drop_waiters(&[("g", "b")], 23));
    assert!(events.is_empty());
    assert_eq!(s, before);
    // If b asks again, it is a newcomer (here with a free slot: granted, claimed).
    let (outcome, _) = ok(&mut s, 8, &acquire("g", "b", 24));
    assert_eq!(outcome, Outcome::Granted(grant("g", "b", 8, 24, true)));
}

#[test]
fn a_slot_freed_in_the_same_entry_skips_the_dropped_waiters() {
    let mut s = held_by_a_with_queue(&["b", "c", "d"]);
    ok(&mut s, 5, &release("g", "a", None, 20)); // b holds, unclaimed
                                                 // b's session and c's lapse together: the slot goes to d, in this entry.
    let (_, events) = ok(&mut s, 6, &drop_waiters(&[("g", "c"), ("g", "b")], 30));
    let mut want = vec![
        ev("g", EventKind::WaiterDropped { holder: "c".into() }),
        released("g", "b", 5, ReleaseCause::SessionLost),
    ];
    want.extend(promoted("g", "d", 6, 30));
    assert_eq!(events, want);
    assert_eq!(holder_names(&s, "g"), ["d"]);
    assert!(s.groups["g"].queue.is_empty());
}

#[test]
fn dropping_an_unclaimed_holder_takes_the_slot_back_and_grants_the_next_waiter() {
    let mut s = held_by_a_with_queue(&["b", "c"]);
    ok(&mut s, 4, &release("g", "a", None, 20));
    assert_eq!(s.holder_grant("g", "b").map(|g| g.claimed), Some(false));
    let (outcome, events) = ok(&mut s, 5, &drop_waiters(&[("g", "b")], 30));
    assert!(matches!(outcome, Outcome::Done { .. }));
    let mut want = vec![released("g", "b", 4, ReleaseCause::SessionLost)];
    want.extend(promoted("g", "c", 5, 30));
    assert_eq!(events, want);
    assert_eq!(holder_names(&s, "g"), ["c"]);
    assert!(s.groups["g"].queue.is_empty());
    assert_eq!(s.last_token, 5);
}

#[test]
fn drop_waiters_never_touches_a_claimed_grant() {
    // a's grant was made by Acquire: claimed from the start.
    let mut s = held_by_a_with_queue(&["b", "c"]);
    let before = s.clone();
    let (_, events) = ok(&mut s, 4, &drop_waiters(&[("g", "a")], 20));
    assert!(events.is_empty());
    assert_eq!(s, before);

    // b's grant was handed over, then claimed.
    ok(&mut s, 5, &release("g", "a", None, 21));
    ok(&mut s, 6, &acquire("g", "b", 22));
    let before = s.clone();
    let (_, events) = ok(&mut s, 7, &drop_waiters(&[("g", "b"), ("g", "a")], 23));
    assert!(events.is_empty());
    assert_eq!(s, before);
    assert_eq!(
        s.holder_grant("g", "b"),
        Some(&grant("g", "b", 5, 21, true))
    );
}

#[test]
fn drop_waiters_ignores_unknown_refs() {
    let mut s = held_by_a_with_queue(&["b"]);
    let before = s.clone();
    let (outcome, events) = ok(
        &mut s,
        3,
        &drop_waiters(&[("nope", "b"), ("g", "zz"), ("other", "a")], 20),
    );
    assert!(matches!(outcome, Outcome::Done { .. }));
    assert!(events.is_empty());
    assert_eq!(s, before, "no group created, nobody dropped");
}

#[test]
fn raising_max_grants_waiters_in_the_same_entry_with_increasing_tokens() {
    let mut s = held_by_a_with_queue(&["b", "c", "d"]);
    let (_, events) = ok(&mut s, 10, &set_max("g", 3, 50));
    let mut want = vec![ev("g", EventKind::MaxChanged { max_holders: 3 })];
    want.extend(promoted("g", "b", 10, 50));
    want.extend(promoted("g", "c", 11, 50));
    assert_eq!(events, want);
    assert_eq!(s.last_token, 11);
    assert_eq!(queue_names(&s, "g"), ["d"]);
    // The next entry's index (11) is not past the last token: it gets 12,
    // also for a grant made directly by Acquire.
    let (outcome, _) = ok(&mut s, 11, &acquire("other", "x", 51));
    assert_eq!(outcome, Outcome::Granted(grant("other", "x", 12, 51, true)));
    let (_, events) = ok(&mut s, 12, &release("g", "a", None, 52));
    assert_eq!(events[1..], promoted("g", "d", 13, 52));
    // Once the index is past the last token, the index it is again.
    let (outcome, _) = ok(&mut s, 20, &acquire("third", "y", 53));
    assert_eq!(token_of(&outcome), 20);
    assert_eq!(s.last_token, 20);
}

#[test]
fn resuming_a_group_grants_its_waiters_in_the_same_entry() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &pause(Some("g"), "hold on", 0));
    ok(&mut s, 2, &set_max("g", 3, 0));
    for (i, h) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let (outcome, _) = ok(&mut s, i as u64 + 3, &acquire_max("g", h, 1, 3));
        assert_eq!(position_of(&outcome), (i as u32 + 1, i as u32 + 1));
    }
    assert!(
        s.groups["g"].holders.is_empty(),
        "nothing granted while paused"
    );
    let (_, events) = ok(&mut s, 7, &resume(Some("g"), 2));
    let mut want = vec![ev("g", EventKind::Resumed)];
    for (i, h) in ["a", "b", "c"].into_iter().enumerate() {
        want.extend(promoted("g", h, 7 + i as u64, 2));
    }
    assert_eq!(events, want);
    assert_eq!(s.last_token, 9);
    assert_eq!(queue_names(&s, "g"), ["d"]);
    // A newcomer waits behind d.
    let (outcome, _) = ok(&mut s, 8, &acquire_max("g", "e", 3, 3));
    assert_eq!(position_of(&outcome), (2, 2));
}

#[test]
fn resuming_all_groups_grants_in_every_group_but_the_own_paused() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &pause(None, "freeze", 0));
    ok(&mut s, 2, &acquire("x", "h1", 1));
    ok(&mut s, 3, &acquire_max("y", "h2", 1, 2));
    ok(&mut s, 4, &acquire_max("y", "h3", 1, 2));
    ok(&mut s, 5, &acquire("z", "h4", 1));
    ok(&mut s, 6, &pause(Some("x"), "own", 2));
    let (_, events) = ok(&mut s, 7, &resume(None, 3));
    // Groups in name order, tokens strictly increasing across them.
    let mut want = vec![ev("", EventKind::ResumedAll)];
    want.extend(promoted("y", "h2", 7, 3));
    want.extend(promoted("y", "h3", 8, 3));
    want.extend(promoted("z", "h4", 9, 3));
    assert_eq!(events, want);
    assert_eq!(queue_names(&s, "x"), ["h1"], "x is still paused on its own");
    // Index 8 is behind the last token (9): x's waiter gets 10.
    let (_, events) = ok(&mut s, 8, &resume(Some("x"), 4));
    let mut want = vec![ev("x", EventKind::Resumed)];
    want.extend(promoted("x", "h1", 10, 4));
    assert_eq!(events, want);
    assert_eq!(s.last_token, 10);
}

#[test]
fn force_release_grants_the_next_waiter_past_the_last_token() {
    let mut s = held_by_a_with_queue(&["b", "c", "d"]);
    ok(&mut s, 10, &set_max("g", 3, 50)); // b gets 10, c gets 11
    assert_eq!(s.last_token, 11);
    // A force release frees one slot: the head gets it in the same entry,
    // with a token past the last one although the index is 11.
    let (outcome, events) = ok(&mut s, 11, &force("g", "a", 51));
    assert!(matches!(outcome, Outcome::Done { .. }));
    let mut want = vec![released("g", "a", 1, ReleaseCause::Forced)];
    want.extend(promoted("g", "d", 12, 51));
    assert_eq!(events, want);
    assert_eq!(holder_names(&s, "g"), ["b", "c", "d"]);
    // The force release of an unclaimed grant is just as final.
    let (_, events) = ok(&mut s, 13, &force("g", "d", 52));
    assert_eq!(events, vec![released("g", "d", 12, ReleaseCause::Forced)]);
    assert!(!s.has_session("g", "d"));
}

#[test]
fn hold_timeout_expire_grants_waiters_in_every_group_in_the_same_entry() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire_max("g", "a", 0, 2));
    ok(&mut s, 2, &acquire_max("g", "b", 0, 2));
    ok(&mut s, 3, &acquire("h", "x", 0));
    for (i, (group, holder)) in [("g", "c"), ("g", "d"), ("g", "e"), ("h", "y")]
        .into_iter()
        .enumerate()
    {
        ok(&mut s, i as u64 + 4, &acquire_max(group, holder, 50, 2));
    }
    let (_, events) = ok(&mut s, 10, &expire(100, Some(100)));
    let mut want = vec![
        released("g", "a", 1, ReleaseCause::HoldTimeout),
        released("g", "b", 2, ReleaseCause::HoldTimeout),
        released("h", "x", 3, ReleaseCause::HoldTimeout),
    ];
    want.extend(promoted("g", "c", 10, 100));
    want.extend(promoted("g", "d", 11, 100));
    want.extend(promoted("h", "y", 12, 100));
    assert_eq!(events, want);
    assert_eq!(queue_names(&s, "g"), ["e"]);
    assert_eq!(s.last_token, 12);
    // The handed-over slots count their hold time from the Expire.
    assert_eq!(s.next_expiry(Some(100)), Some(200));
}

#[test]
fn sessions_list_waiters_and_unclaimed_holders_only() {
    let mut s = held_by_a_with_queue(&["b", "c"]);
    ok(&mut s, 4, &acquire_max("h", "x", 0, 2)); // claimed
    assert_eq!(
        session_set(&s),
        BTreeSet::from([wref("g", "b"), wref("g", "c")])
    );
    ok(&mut s, 5, &release("g", "a", None, 10)); // b holds, unclaimed
    assert_eq!(
        session_set(&s),
        BTreeSet::from([wref("g", "b"), wref("g", "c")])
    );
    assert!(s.has_session("g", "b"));
    assert!(s.has_session("g", "c"));
    assert!(!s.has_session("g", "a"), "released");
    assert!(!s.has_session("h", "x"), "claimed");
    assert!(!s.has_session("g", "zz"));
    assert!(!s.has_session("nope", "b"));
    ok(&mut s, 6, &acquire("g", "b", 11)); // claims
    assert_eq!(session_set(&s), BTreeSet::from([wref("g", "c")]));
    ok(&mut s, 7, &drop_waiters(&[("g", "c")], 12));
    assert!(session_set(&s).is_empty());
}

#[test]
fn queue_reason_says_why_waiters_wait() {
    let mut s = held_by_a_with_queue(&["b"]);
    assert_eq!(s.queue_reason("g"), QueueReason::Full);
    ok(&mut s, 3, &pause(None, "freeze", 1));
    assert_eq!(s.queue_reason("g"), QueueReason::Paused("freeze".into()));
    ok(&mut s, 4, &pause(Some("g"), "own", 2));
    assert_eq!(s.queue_reason("g"), QueueReason::Paused("own".into()));
    assert_eq!(
        s.queue_reason("unknown"),
        QueueReason::Paused("freeze".into())
    );
    ok(&mut s, 5, &resume(None, 3));
    ok(&mut s, 6, &resume(Some("g"), 4));
    assert_eq!(s.queue_reason("g"), QueueReason::Full);
}

#[test]
fn a_second_replica_applying_the_same_log_agrees() {
    let log = [
        acquire_max("g", "a", 0, 2),
        acquire_max("g", "b", 1, 2),
        acquire_max("g", "c", 2, 2),
        acquire_max("g", "d", 3, 2),
        pause(None, "freeze", 4),
        release("g", "a", None, 5),
        release("g", "b", None, 6),
        resume(None, 7),
        drop_waiters(&[("g", "c")], 8),
        acquire_max("g", "d", 9, 2),
        expire(20, Some(5)),
    ];
    let run = || {
        let mut s = LeaseState::default();
        let results: Vec<_> = log
            .iter()
            .enumerate()
            .map(|(i, cmd)| s.apply(i as u64 + 1, cmd))
            .collect();
        (s, results)
    };
    let (first, results) = run();
    assert_eq!(run(), (first.clone(), results.clone()));
    // Both slots went c and d's way at the resume; c's session lapsed before it claimed.
    let resume_events = &results[7].as_ref().unwrap().1;
    assert_eq!(resume_events.len(), 5);
    assert_eq!(holder_names(&first, "g"), Vec::<String>::new());
    assert_eq!(first.last_token, 9);
}

#[test]
fn a_snapshot_with_a_free_slot_beside_a_waiter_is_settled_by_the_next_entry() {
    // A snapshot from before grant on release: a free slot, and b waiting for it.
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    s.groups.get_mut("g").unwrap().holders.clear();
    // A newcomer does not jump the queue; b gets the slot in the same entry.
    let (outcome, events) = ok(&mut s, 10, &acquire("g", "c", 5));
    assert!(matches!(outcome, Outcome::Queued { .. }), "{outcome:?}");
    assert_eq!(events[1..], promoted("g", "b", 10, 5));
    assert_eq!(holder_names(&s, "g"), ["b"]);
    assert_eq!(queue_names(&s, "g"), ["c"]);
    // Even a read barrier settles it.
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    s.groups.get_mut("g").unwrap().holders.clear();
    let (_, events) = ok(&mut s, 3, &expire(6, None));
    assert_eq!(events, promoted("g", "b", 3, 6));
}
