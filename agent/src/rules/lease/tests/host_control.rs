//! Per-host control: `Hold`/`Unhold` (the host does not queue) and `RebootNow`.

use super::*;

fn hold(holder: &str, reason: &str, now: UnixMillis) -> Command {
    Command::Hold {
        holder: holder.into(),
        reason: reason.into(),
        by: "alice".into(),
        now,
    }
}

fn unhold(holder: &str, now: UnixMillis) -> Command {
    Command::Unhold {
        holder: holder.into(),
        by: "alice".into(),
        now,
    }
}

fn reboot_now(holder: &str, cancel: bool, now: UnixMillis) -> Command {
    Command::RebootNow {
        holder: holder.into(),
        cancel,
        by: "alice".into(),
        now,
    }
}

#[test]
fn a_held_host_is_refused_with_the_reason_and_who_held_it() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &hold("h1", "disk replacement", 5));
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 2, &acquire("w", "h1", 10));
    let Outcome::Refused(refusal) = outcome else {
        panic!("held host not refused: {outcome:?}");
    };
    let text = refusal.to_string();
    assert!(
        text.contains("h1 is held by alice: disk replacement"),
        "{text}"
    );
    assert!(events.is_empty());
    assert_eq!(
        s, before,
        "a refused acquire changes nothing (no group made)"
    );
    assert_eq!(
        s.held["h1"],
        HostHold {
            reason: "disk replacement".into(),
            by: "alice".into(),
            at: 5
        }
    );
}

#[test]
fn holding_a_queued_host_takes_it_out_of_the_queue_and_unhold_lets_it_queue_again() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("w", "h1", 1));
    ok(&mut s, 2, &acquire("w", "h2", 2));
    ok(&mut s, 3, &acquire("w", "h3", 3));
    let (outcome, events) = ok(&mut s, 4, &hold("h2", "flaky NIC", 4));
    assert_eq!(
        events,
        [ev(
            "w",
            EventKind::LeftQueue {
                holder: "h2".into()
            }
        )]
    );
    assert!(
        matches!(outcome, Outcome::Done { message } if message.contains("left the queue of w"))
    );
    assert_eq!(queue_names(&s, "w"), ["h3"]);
    // The release hands the slot past the held host.
    let (_, events) = ok(&mut s, 5, &release("w", "h1", None, 5));
    assert!(events.contains(&ev("w", EventKind::Granted(grant("w", "h3", 5, 5, false)))));

    ok(&mut s, 6, &unhold("h2", 6));
    assert!(s.held.is_empty());
    let (outcome, _) = ok(&mut s, 7, &acquire("w", "h2", 7));
    assert_eq!(position_of(&outcome), (1, 1));
}

#[test]
fn a_hold_does_not_take_a_lease_away_but_takes_back_an_unclaimed_slot() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("w", "h1", 1));
    let (outcome, events) = ok(&mut s, 2, &hold("h1", "look first", 2));
    assert!(events.is_empty());
    let Outcome::Done { message } = outcome else {
        panic!()
    };
    assert!(
        message.contains("keeps its lease in w (token 1)"),
        "{message}"
    );
    // Reentrant: it gets its own grant back while held.
    let (outcome, _) = ok(&mut s, 3, &acquire("w", "h1", 3));
    assert_eq!(token_of(&outcome), 1);

    // A slot handed over but not taken goes to the next in line.
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("w", "h1", 1));
    ok(&mut s, 2, &acquire("w", "h2", 2));
    ok(&mut s, 3, &acquire("w", "h3", 3));
    ok(&mut s, 4, &release("w", "h1", None, 4));
    assert!(s.holder_grant("w", "h2").is_some_and(|g| !g.claimed));
    let (_, events) = ok(&mut s, 5, &hold("h2", "not now", 5));
    assert_eq!(events[0], released("w", "h2", 4, ReleaseCause::Forced));
    assert!(events.contains(&ev("w", EventKind::Granted(grant("w", "h3", 5, 5, false)))));
}

#[test]
fn reboot_now_is_kept_until_the_host_gives_back_a_lease_it_took() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &reboot_now("h1", false, 1));
    assert_eq!(
        s.reboot_now["h1"],
        RebootRequest {
            by: "alice".into(),
            at: 1
        }
    );
    ok(&mut s, 2, &acquire("w", "h1", 2));
    // Leaving a queue or giving back an untaken slot does not clear it ...
    ok(&mut s, 3, &release("w", "h9", None, 3));
    assert!(s.reboot_now.contains_key("h1"));
    // ... giving back the lease it took does.
    ok(&mut s, 4, &release("w", "h1", None, 4));
    assert!(s.reboot_now.is_empty());

    ok(&mut s, 5, &reboot_now("h2", false, 5));
    ok(&mut s, 6, &reboot_now("h2", true, 6));
    assert!(s.reboot_now.is_empty());
    ok(&mut s, 7, &reboot_now("h3", false, 7));
    ok(&mut s, 8, &acquire("w", "h3", 8));
    ok(&mut s, 9, &force("w", "h3", 9));
    assert!(s.reboot_now.is_empty());
}

#[test]
fn host_controls_are_checked_and_capped() {
    let mut s = LeaseState::default();
    assert!(s.apply(1, &hold("", "x", 1)).is_err());
    assert!(s.apply(1, &hold("h1", "", 1)).is_err());
    assert!(s.apply(1, &hold("h1", &"x".repeat(10_000), 1)).is_err());
    assert!(s.apply(1, &reboot_now("bad host", false, 1)).is_err());
    assert_eq!(s, LeaseState::default());
    for i in 0..MAX_HOST_CONTROLS {
        s.held.insert(
            format!("h{i}"),
            HostHold {
                reason: "r".into(),
                by: "a".into(),
                at: 0,
            },
        );
    }
    let (outcome, _) = ok(&mut s, 2, &hold("one-more", "r", 2));
    assert!(matches!(
        outcome,
        Outcome::Refused(Refusal::TooManyHostControls { .. })
    ));
    // Changing the reason of a held host is not one more.
    let (outcome, _) = ok(&mut s, 3, &hold("h1", "new reason", 3));
    assert!(matches!(outcome, Outcome::Done { .. }));
}
