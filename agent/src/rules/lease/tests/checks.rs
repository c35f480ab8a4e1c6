//! Command checks, JSON (also legacy), machine ids and caps.

use super::*;
use crate::rules::names::{NameError, MAX_GROUP_LEN, MAX_HOLDER_LEN};

#[test]
fn invalid_commands_leave_state_unchanged() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "a", 0));
    ok(&mut s, 2, &acquire("g", "b", 0));
    let before = s.clone();
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
        (acquire("", "a", 5), group("", NameError::Empty)),
        (acquire("a b", "a", 5), group("a b", char_in_group(' '))),
        (
            acquire("grüppe", "a", 5),
            group("grüppe", char_in_group('ü')),
        ),
        (
            acquire(&long_group, "a", 5),
            group(&long_group, NameError::TooLong { len: 129, max: 128 }),
        ),
        (acquire("g", "", 5), holder("", NameError::Empty)),
        (
            acquire("g", "a\nb", 5),
            holder("a\nb", char_in_holder('\n')),
        ),
        (
            acquire("g", &long_holder, 5),
            holder(&long_holder, NameError::TooLong { len: 254, max: 253 }),
        ),
        (acquire_max("g", "c", 5, 0), LeaseError::MaxHolders(0)),
        (
            release("g/x", "a", None, 5),
            group("g/x", char_in_group('/')),
        ),
        (
            release("g", "\u{7f}", None, 5),
            holder("\u{7f}", char_in_holder('\u{7f}')),
        ),
        (force("g", "", 5), holder("", NameError::Empty)),
        (pause(Some("g g"), "r", 5), group("g g", char_in_group(' '))),
        (resume(Some(""), 5), group("", NameError::Empty)),
        (set_max("g", 0, 5), LeaseError::MaxHolders(0)),
        (
            Command::Pause {
                by: "ops".into(),
                group: None,
                reason: "r".into(),
                now: 5,
                default_max_holders: 0,
            },
            LeaseError::MaxHolders(0),
        ),
        // One bad name refuses the whole DropWaiters: the good ones stay queued too.
        (
            drop_waiters(&[("g", "b"), ("a b", "x")], 5),
            group("a b", char_in_group(' ')),
        ),
        (
            drop_waiters(&[("g", "b"), ("g", "")], 5),
            holder("", NameError::Empty),
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
    assert!(expire(0, None).validate().is_ok());
    assert!(resume(None, 0).validate().is_ok());
    assert!(drop_waiters(&[], 0).validate().is_ok());
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
fn command_now_and_may_free_slot_for_every_variant() {
    let cmds = [
        (acquire("g", "a", 1), false),
        (release("g", "a", None, 2), true),
        (expire(3, None), true),
        (pause(None, "r", 4), false),
        (resume(None, 5), true),
        (force("g", "a", 6), true),
        (set_max("g", 1, 7), true),
        (drop_waiters(&[("g", "a")], 8), true),
    ];
    let nows: Vec<_> = cmds.iter().map(|(c, _)| c.now()).collect();
    assert_eq!(nows, [1, 2, 3, 4, 5, 6, 7, 8]);
    for (cmd, frees) in &cmds {
        assert_eq!(cmd.may_free_slot(), *frees, "{cmd:?}");
    }
}

#[test]
fn commands_and_outcomes_round_trip_through_json() {
    let mut s = LeaseState::default();
    for cmd in [acquire("g", "a", 1), drop_waiters(&[("g", "b")], 2)] {
        let json = serde_json::to_string(&cmd).expect("serialize");
        assert_eq!(serde_json::from_str::<Command>(&json).expect("parse"), cmd);
    }
    let cmd = acquire("g", "a", 1);
    let (outcome, events) = ok(&mut s, 1, &cmd);
    let json = serde_json::to_string(&(&outcome, &events)).expect("serialize");
    let back: (Outcome, Vec<Event>) = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, (outcome, events));
    let err: Result<Outcome, LeaseError> = Err(LeaseError::MaxHolders(0));
    let json = serde_json::to_string(&err).expect("serialize");
    let back: Result<Outcome, LeaseError> = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, err);
}

#[test]
fn legacy_json_still_parses() {
    // A grant written before claiming existed was taken by its holder.
    let json = r#"{"group":"g","holder":"a","token":4,"machine_id":"m","granted_at":9}"#;
    let legacy: Grant = serde_json::from_str(json).expect("parse");
    assert!(legacy.claimed);
    assert_eq!(legacy.token, 4);
    // Old log entries and snapshots carry waiter TTLs and deadlines: ignored.
    let json = r#"{"Acquire":{"group":"g","holder":"b","machine_id":"m","now":5,
        "default_max_holders":1,"waiter_ttl_ms":1000}}"#;
    let cmd: Command = serde_json::from_str(json).expect("parse");
    assert_eq!(
        cmd,
        Command::Acquire {
            group: "g".into(),
            holder: "b".into(),
            machine_id: "m".into(),
            now: 5,
            default_max_holders: 1,
        }
    );
    let json = r#"{"groups":{"g":{"max_holders":1,"paused":null,
        "holders":[{"group":"g","holder":"a","token":4,"machine_id":"m","granted_at":9}],
        "queue":[{"holder":"b","machine_id":"m","since":5,"deadline":1005}]}},
        "paused_all":null}"#;
    let mut s: LeaseState = serde_json::from_str(json).expect("parse");
    assert_eq!(s.last_token, 0);
    assert!(s.groups["g"].holders[0].claimed);
    assert_eq!(s.sessions().collect::<Vec<_>>(), [wref("g", "b")]);
    // The next grant still gets a larger token than the old ones.
    let (_, events) = ok(&mut s, 10, &release("g", "a", None, 20));
    assert_eq!(
        events[2],
        ev(
            "g",
            EventKind::Granted(Grant {
                machine_id: "m".into(),
                ..grant("g", "b", 10, 20, false)
            })
        )
    );
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

    // Nor can another machine claim a slot handed over on release.
    ok(&mut s, 4, &acquire("g", "w", 3));
    ok(&mut s, 5, &release("g", "h", None, 4));
    let mut other = acquire("g", "w", 5);
    if let Command::Acquire { machine_id, .. } = &mut other {
        *machine_id = "another-machine".into();
    }
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 6, &other);
    assert!(
        matches!(&outcome, Outcome::Refused(Refusal::OtherMachine { granted_to, .. }) if granted_to == "mid-w"),
        "{outcome:?}"
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
    assert!(!s.groups["g"].holders[0].claimed);
}

#[test]
fn the_queue_and_the_number_of_groups_are_capped() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "holder", 0));
    let group = s.groups.get_mut("g").unwrap();
    for i in 0..MAX_QUEUE {
        group.queue.push_back(Waiter {
            holder: format!("w{i}"),
            machine_id: format!("mid-w{i}"),
            since: 0,
        });
    }
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 2, &acquire("g", "one-too-many", 1));
    assert!(
        matches!(outcome, Outcome::Refused(Refusal::QueueFull { max, .. }) if max == MAX_QUEUE)
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
    // A waiter already in the queue still gets its place.
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

#[test]
fn a_queued_name_from_another_machine_is_refused_at_once() {
    let mut s = LeaseState::default();
    ok(&mut s, 1, &acquire("g", "h", 0));
    ok(&mut s, 2, &acquire("g", "w", 1));
    let mut other = acquire("g", "w", 2);
    if let Command::Acquire { machine_id, .. } = &mut other {
        *machine_id = "another-machine".into();
    }
    let before = s.clone();
    let (outcome, events) = ok(&mut s, 3, &other);
    assert!(
        matches!(&outcome, Outcome::Refused(Refusal::QueuedByOtherMachine { queued_by, .. }) if queued_by == "mid-w"),
        "{outcome:?}"
    );
    assert!(events.is_empty());
    assert_eq!(s, before);
}

/// Found while fuzzing (fuzz/corpus/raft_payloads/crash-token-at-u64-max): a
/// slot handed to a waiter at log index u64::MAX (or from a snapshot whose
/// last token is u64::MAX) overflowed `token += 1` in `promote`: a panic in
/// debug builds, a wrap to 0 in release ones.
#[test]
fn a_hand_over_at_the_top_of_the_token_space_does_not_overflow() {
    let mut s = LeaseState::default();
    ok(&mut s, u64::MAX - 2, &acquire("g", "a", 1));
    ok(&mut s, u64::MAX - 1, &acquire("g", "b", 2));
    ok(&mut s, u64::MAX, &release("g", "a", None, 3));
    let g = &s.groups["g"];
    assert_eq!(g.holders.len(), 1);
    assert_eq!(g.holders[0].holder, "b");
    assert_eq!(g.holders[0].token, u64::MAX);
    assert_eq!(s.last_token, u64::MAX);
}

#[test]
fn a_batch_is_refused_whole_when_empty_too_long_nested_or_invalid() {
    let refused = |commands: Vec<Command>| {
        let mut state = LeaseState::default();
        state.apply(1, &acquire("g", "a", 10)).expect("acquire");
        let before = state.clone();
        let error = state
            .apply(2, &Command::Batch { commands })
            .expect_err("refused");
        assert_eq!(state, before, "a refused batch changed the state");
        error.to_string()
    };
    assert!(refused(Vec::new()).contains("1 to 64"));
    let too_many = (0..=MAX_BATCH)
        .map(|i| acquire(&format!("g{i}"), "a", 20))
        .collect();
    assert!(refused(too_many).contains("1 to 64"));
    let nested = Command::Batch {
        commands: vec![acquire("g", "b", 20)],
    };
    assert!(refused(vec![acquire("g", "b", 20), nested]).contains("inside a batch"));
    let voter = Command::RecordVoter { voter: 2, now: 20 };
    assert!(refused(vec![voter]).contains("on its own"));
    // One invalid command refuses the whole batch: the leader validates
    // each before it joins one, so a batch is never half valid.
    let invalid = acquire("no spaces allowed", "b", 20);
    assert!(refused(vec![release("g", "a", None, 20), invalid]).contains("invalid group"));
}

#[test]
fn a_batch_answers_each_command_and_a_refusal_stops_none_of_the_others() {
    let mut state = LeaseState::default();
    let batch = Command::Batch {
        commands: vec![
            acquire("g", "a", 10),
            acquire("g", "b", 11),
            // Same name, other machine: refused, and the rest still apply.
            Command::Acquire {
                group: "g".into(),
                holder: "a".into(),
                machine_id: "elsewhere".into(),
                now: 12,
                default_max_holders: 1,
            },
            release("g", "a", None, 13),
        ],
    };
    let (outcome, _events) = state.apply(7, &batch).expect("applies");
    let Outcome::Batch(results) = outcome else {
        panic!("not a batch outcome: {outcome:?}");
    };
    assert_eq!(results.len(), 4);
    assert!(matches!(&results[0], Outcome::Granted(g) if g.token == 7));
    assert!(matches!(&results[1], Outcome::Queued { position: 1, .. }));
    assert!(matches!(
        &results[2],
        Outcome::Refused(Refusal::OtherMachine { .. })
    ));
    assert!(matches!(
        &results[3],
        Outcome::Released { released: true, .. }
    ));
    // a's release handed the slot to b in the same entry, with the next token.
    let b = state
        .holder_grant("g", "b")
        .expect("b was granted on a's release");
    assert_eq!(b.token, 8);
    assert!(!b.claimed);
}
