//! Random histories: every apply keeps the lease invariants, events replay to
//! the state, and a second replica agrees on everything.

use std::collections::BTreeSet;

use super::super::*;
use super::histories::{build, op, GROUPS, HOLDERS};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A watcher that only sees events; it must end up with the same holders, queue,
/// sizes and pauses as the state. It also checks FIFO: a slot handed over
/// (unclaimed grant) goes to the holder that just left the head of the queue.
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
        // The (group, holder) that left the head of its queue in the previous event.
        let mut left_head: Option<(String, String)> = None;
        for event in events {
            let just_left = left_head.take();
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
                    prop_assert_eq!(&grant.group, &event.group);
                    prop_assert!(!g.queue.contains(&grant.holder));
                    if !grant.claimed {
                        let head = Some((event.group.clone(), grant.holder.clone()));
                        prop_assert_eq!(just_left, head, "FIFO: handed over past the head");
                    }
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
                    if matches!(event.kind, EventKind::LeftQueue { .. })
                        && g.queue.first() == Some(holder)
                    {
                        left_head = Some((event.group.clone(), holder.clone()));
                    }
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

/// What must hold after every apply.
fn check_invariants(state: &LeaseState) -> Result<(), TestCaseError> {
    let mut sessions = BTreeSet::new();
    for (name, g) in &state.groups {
        prop_assert!(g.max_holders >= 1, "group {} has max 0", name);
        // Grant on release: a group that is not paused has no free slot beside a waiter.
        if state.pause_reason(name).is_none() {
            let settling = state.settling_until(name).len();
            prop_assert!(
                g.queue.is_empty() || g.holders.len() + settling >= g.max_holders as usize,
                "{} has a free slot and waiters",
                name
            );
        }
        for (i, w) in g.queue.iter().enumerate() {
            prop_assert!(g.grant(&w.holder).is_none(), "{} holds and waits", w.holder);
            prop_assert!(
                !g.queue.iter().skip(i + 1).any(|o| o.holder == w.holder),
                "{} queued twice",
                w.holder
            );
            sessions.insert((name.clone(), w.holder.clone()));
        }
        for (i, grant) in g.holders.iter().enumerate() {
            prop_assert_eq!(&grant.group, name);
            prop_assert!(grant.token <= state.last_token);
            prop_assert!(
                !g.holders
                    .iter()
                    .skip(i + 1)
                    .any(|o| o.holder == grant.holder),
                "{} holds twice",
                grant.holder
            );
            if !grant.claimed {
                sessions.insert((name.clone(), grant.holder.clone()));
            }
        }
        // Grant order is token order.
        prop_assert!(g.holders.windows(2).all(|w| w[0].token < w[1].token));
    }
    let listed: Vec<(String, String)> = state.sessions().map(|w| (w.group, w.holder)).collect();
    prop_assert_eq!(listed.len(), sessions.len(), "a session listed twice");
    prop_assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        sessions.clone()
    );
    for (group, holder) in &sessions {
        prop_assert!(state.has_session(group, holder));
    }
    for g in GROUPS {
        for h in HOLDERS {
            let listed = sessions.contains(&(g.to_owned(), h.to_owned()));
            prop_assert_eq!(state.has_session(g, h), listed);
        }
    }
    let start = state
        .groups
        .values()
        .flat_map(|g| g.holders.iter())
        .map(|g| g.granted_at)
        .min();
    prop_assert_eq!(state.next_expiry(Some(7)), start.map(|t| t + 7));
    prop_assert_eq!(state.next_expiry(None), None);
    // Settling slots: only with a settle time, in known groups; the earliest
    // end is next_settle_end.
    for (name, freed) in &state.settling {
        prop_assert!(state.settle_ms > 0 && !freed.is_empty());
        prop_assert!(state.groups.contains_key(name));
    }
    // A held host waits nowhere and holds no slot it has not taken.
    for holder in state.held.keys() {
        for g in state.groups.values() {
            prop_assert!(g.queue_position(holder).is_none(), "held {} queued", holder);
            prop_assert!(
                g.grant(holder).is_none_or(|x| x.claimed),
                "held {} handed a slot",
                holder
            );
        }
    }
    let earliest = state.settling.values().flatten().min();
    prop_assert_eq!(
        state.next_settle_end(),
        earliest.map(|at| at + state.settle_ms)
    );
    Ok(())
}

/// `state` with the slots that settled by `now` opened and handed to their
/// queues, as every apply does first.
fn settled(state: &LeaseState, index: u64, now: UnixMillis) -> LeaseState {
    let mut state = state.clone();
    if state.drop_settled(now) {
        state.promote(index, now, &mut Vec::new());
    }
    state
    // (Only Acquire hands settled slots over before it acts; these helpers are
    // used for Acquire only.)
}

/// Checks one accepted apply against the state before it.
fn check_apply(
    before: &LeaseState,
    after: &LeaseState,
    (index, cmd): (u64, &Command),
    (outcome, events): (&Outcome, &[Event]),
    last_token: &mut u64,
) -> Result<(), TestCaseError> {
    let grants: Vec<&Grant> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Granted(g) => Some(g),
            _ => None,
        })
        .collect();
    // Tokens strictly increase across the whole history, never below the entry's index.
    for grant in &grants {
        prop_assert!(
            grant.token > *last_token,
            "token {} after {}",
            grant.token,
            last_token
        );
        prop_assert!(
            grant.token >= index,
            "token {} at index {}",
            grant.token,
            index
        );
        prop_assert_eq!(grant.granted_at, cmd.now());
        *last_token = grant.token;
        // A group over its max got no new grant.
        let g = &after.groups[&grant.group];
        prop_assert!(
            g.holders.len() <= g.max_holders as usize,
            "granted over max in {}",
            grant.group
        );
    }
    prop_assert_eq!(after.last_token, *last_token);
    for (name, g) in &after.groups {
        let old = before.groups.get(name).map_or(0, |g| g.holders.len());
        prop_assert!(g.holders.len() <= old.max(g.max_holders as usize));
    }

    // At most one grant made directly, by Acquire, to a newcomer that found a free
    // slot, an empty queue and no pause.
    let direct: Vec<&&Grant> = grants.iter().filter(|g| g.claimed).collect();
    prop_assert!(direct.len() <= 1);
    for grant in direct {
        prop_assert!(
            matches!(cmd, Command::Acquire { .. }),
            "only acquire grants directly"
        );
        prop_assert_eq!(outcome, &Outcome::Granted((*grant).clone()));
        let before = &settled(before, index, cmd.now());
        if let Some(g) = before.groups.get(&grant.group) {
            prop_assert!(
                g.holders.len() < g.max_holders as usize,
                "granted while full"
            );
            prop_assert!(g.queue.is_empty(), "{} jumped the queue", grant.holder);
            prop_assert!(g.paused.is_none() && g.grant(&grant.holder).is_none());
        }
        prop_assert!(before.paused_all.is_none(), "granted while paused");
    }
    // Slots handed over (FIFO is checked by the watcher): only by a command that
    // may free a slot (or by any command once a settling slot has settled),
    // never while paused, to the machine that queued.
    for grant in grants.iter().filter(|g| !g.claimed) {
        let settled_here = before.settling.contains_key(&grant.group);
        prop_assert!(
            cmd.may_free_slot() || settled_here,
            "{:?} handed over a slot",
            cmd
        );
        prop_assert!(after.pause_reason(&grant.group).is_none());
        let waiter = before
            .groups
            .get(&grant.group)
            .and_then(|g| g.queue.iter().find(|w| w.holder == grant.holder));
        prop_assert_eq!(waiter.map(|w| &w.machine_id), Some(&grant.machine_id));
    }

    // Each release cause comes from its own command.
    for event in events {
        let ok = match &event.kind {
            EventKind::Released { cause, .. } => match cause {
                ReleaseCause::Released => matches!(cmd, Command::Release { .. }),
                ReleaseCause::Forced => {
                    matches!(cmd, Command::ForceRelease { .. } | Command::Hold { .. })
                }
                ReleaseCause::HoldTimeout => matches!(cmd, Command::Expire { .. }),
                ReleaseCause::SessionLost => matches!(cmd, Command::DropWaiters { .. }),
            },
            EventKind::WaiterDropped { .. } => matches!(cmd, Command::DropWaiters { .. }),
            _ => true,
        };
        prop_assert!(ok, "{:?} from {:?}", event, cmd);
    }

    if let Command::DropWaiters { waiters, .. } = cmd {
        let named: BTreeSet<(&str, &str)> = waiters
            .iter()
            .map(|w| (w.group.as_str(), w.holder.as_str()))
            .collect();
        for grant in &grants {
            let key = (grant.group.as_str(), grant.holder.as_str());
            prop_assert!(!named.contains(&key), "granted to dropped {:?}", key);
        }
        for w in waiters {
            prop_assert!(!after.has_session(&w.group, &w.holder));
        }
        // Claimed grants are never touched; only named sessions end.
        for (name, g) in &before.groups {
            for grant in g.holders.iter().filter(|g| g.claimed) {
                prop_assert_eq!(after.holder_grant(name, &grant.holder), Some(grant));
            }
        }
        for event in events {
            if let EventKind::WaiterDropped { holder } | EventKind::Released { holder, .. } =
                &event.kind
            {
                prop_assert!(named.contains(&(event.group.as_str(), holder.as_str())));
                prop_assert!(before.has_session(&event.group, holder));
            }
        }
    }

    match (cmd, outcome) {
        (
            Command::Acquire {
                group,
                holder,
                machine_id,
                ..
            },
            Outcome::Granted(grant),
        ) => {
            prop_assert!(grant.claimed);
            prop_assert_eq!(&grant.machine_id, machine_id);
            prop_assert_eq!(after.holder_grant(group, holder), Some(grant));
            if grants.is_empty() {
                // Reentrant, or a claim: same grant, now claimed, nothing else changes.
                let held = before.holder_grant(group, holder);
                prop_assert_eq!(
                    held.map(|g| (g.token, g.granted_at)),
                    Some((grant.token, grant.granted_at))
                );
                prop_assert!(events.is_empty());
                let mut expected = settled(before, index, cmd.now());
                let g = expected.groups.get_mut(group).expect("group");
                g.holders
                    .iter_mut()
                    .for_each(|x| x.claimed |= x.holder == *holder);
                prop_assert_eq!(after, &expected);
            }
        }
        (
            Command::Acquire { group, holder, .. },
            Outcome::Queued {
                position,
                waiters,
                reason,
            },
        ) => {
            let g = &after.groups[group];
            prop_assert_eq!(g.queue_position(holder), Some(*position));
            prop_assert_eq!(*waiters as usize, g.queue.len());
            prop_assert_eq!(reason, &after.queue_reason(group));
            if *reason == QueueReason::Full {
                let settling = after.settling_until(group).len();
                prop_assert!(g.holders.len() + settling >= g.max_holders as usize);
            }
            if before
                .groups
                .get(group)
                .is_some_and(|g| g.queue_position(holder).is_some())
            {
                // Asking again while queued changes nothing (unless a settled
                // slot went to the queue's head in the same apply).
                if events.is_empty() {
                    prop_assert_eq!(after, &settled(before, index, cmd.now()));
                }
            }
        }
        (Command::Acquire { .. }, Outcome::Refused(_)) => {
            if events.is_empty() {
                prop_assert_eq!(after, &settled(before, index, cmd.now()));
            } else {
                // Only a settled slot handed to the queue's head.
                prop_assert!(before.settling.values().any(|f| !f.is_empty()));
            }
        }
        (Command::Acquire { .. }, other) => prop_assert!(false, "acquire answered {:?}", other),
        _ => {}
    }
    Ok(())
}

/// The settle time, against a model kept from the events alone: a group never
/// has more holders plus slots freed less than `settle_ms` ago (counted up to
/// its size) than its size, when a grant is made. So no host is granted a slot
/// before `released_at + settle_ms`.
fn check_settle(
    before: &LeaseState,
    after: &LeaseState,
    (cmd, events): (&Command, &[Event]),
    freed: &mut Vec<(String, UnixMillis)>,
) -> Result<(), TestCaseError> {
    let now = cmd.now();
    if after.settle_ms == 0 {
        freed.clear();
    }
    for event in events {
        if let EventKind::Released { holder, token, .. } = &event.kind {
            let was_claimed = before
                .holder_grant(&event.group, holder)
                .is_some_and(|g| g.claimed && g.token == *token);
            if was_claimed && after.settle_ms > 0 {
                freed.push((event.group.clone(), now));
            }
        }
    }
    let settle = after.settle_ms;
    freed.retain(|(_, at)| at + settle > now);
    for event in events {
        if let EventKind::Granted(grant) = &event.kind {
            let g = &after.groups[&grant.group];
            let max = g.max_holders as usize;
            let settling = freed.iter().filter(|(n, _)| *n == grant.group).count();
            prop_assert!(
                g.holders.len() + settling.min(max) <= max,
                "granted {} in {} at {} while {} slot(s) settle",
                grant.holder,
                grant.group,
                now,
                settling
            );
        }
    }
    // Every slot the state keeps closed was freed by a claimed grant less than
    // `settle_ms` ago (the state keeps at most a group's size of them).
    for name in after.groups.keys() {
        let opens = after.settling_until(name);
        let model = freed.iter().filter(|(n, _)| n == name).count();
        prop_assert!(
            opens.len() <= model,
            "{} settles {:?}, model {}",
            name,
            opens,
            model
        );
        prop_assert!(opens.iter().all(|&t| t > now));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_histories_keep_invariants(
        steps in proptest::collection::vec((op(), 0u64..40, 1u64..3), 1..100)
    ) {
        let mut state = LeaseState::default();
        let mut watcher = Watcher::default();
        let mut now: UnixMillis = 1_000;
        let mut index = 0;
        let mut last_token = 0;
        let mut log = Vec::new();
        // The settle model: when claimed grants ended while a settle time was set.
        let mut freed: Vec<(String, UnixMillis)> = Vec::new();

        for (op, dt, gap) in &steps {
            now += dt;
            index += gap;
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
                    check_apply(&before, &state, (index, &cmd), (outcome, events), &mut last_token)?;
                    watcher.replay(events)?;
                    prop_assert_eq!(&watcher, &Watcher::of(&state));
                    check_invariants(&state)?;
                    check_settle(&before, &state, (&cmd, events), &mut freed)?;
                }
            }
            let json = serde_json::to_string(&state).expect("serialize");
            let back: LeaseState = serde_json::from_str(&json).expect("parse");
            prop_assert_eq!(&back, &state);
            log.push((index, cmd, result));
        }

        // Determinism: a second replica applying the same log (as it travels, in
        // JSON, and restored from a snapshot half way) agrees on everything.
        let mut replica = LeaseState::default();
        for (i, (index, cmd, result)) in log.iter().enumerate() {
            if i == log.len() / 2 {
                let snapshot = serde_json::to_string(&replica).expect("serialize");
                replica = serde_json::from_str(&snapshot).expect("parse");
            }
            let cmd: Command = serde_json::from_str(&serde_json::to_string(cmd).expect("serialize"))
                .expect("parse");
            prop_assert_eq!(&replica.apply(*index, &cmd), result);
        }
        prop_assert_eq!(&replica, &state);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The leader's group commit (`Command::Batch`) changes nothing but the
    /// entry count: a batch applied at one index answers, reports and ends in
    /// exactly what its commands applied one by one at that index do, and
    /// tokens still strictly increase across batches.
    #[test]
    fn batches_apply_as_their_commands_would_one_by_one(
        batches in proptest::collection::vec(
            proptest::collection::vec((op(), 0u64..40), 1..6),
            1..40,
        )
    ) {
        let mut one_by_one = LeaseState::default();
        let mut batched = LeaseState::default();
        let mut now: UnixMillis = 1_000;
        let mut index = 0;
        let mut last_token = 0;
        for ops in &batches {
            index += 1;
            let mut commands = Vec::new();
            let mut outcomes = Vec::new();
            let mut events = Vec::new();
            for (op, dt) in ops {
                now += dt;
                let cmd = build(op, &one_by_one, now);
                // The leader validates each command before it joins a batch.
                if cmd.validate().is_err() {
                    continue;
                }
                let (outcome, applied) =
                    one_by_one.apply(index, &cmd).expect("a valid command applies");
                events.extend(applied);
                outcomes.push(outcome);
                commands.push(cmd);
            }
            if commands.is_empty() {
                continue;
            }
            let batch = Command::Batch { commands };
            let json = serde_json::to_string(&batch).expect("serialize");
            let batch: Command = serde_json::from_str(&json).expect("parse");
            let (outcome, applied) = batched.apply(index, &batch).expect("a valid batch applies");
            prop_assert_eq!(outcome, Outcome::Batch(outcomes));
            prop_assert_eq!(&applied, &events);
            prop_assert_eq!(&batched, &one_by_one);
            check_invariants(&batched)?;
            for event in &applied {
                if let EventKind::Granted(grant) = &event.kind {
                    prop_assert!(grant.token > last_token, "token {} after {}", grant.token, last_token);
                    prop_assert!(grant.token >= index);
                    last_token = grant.token;
                }
            }
        }
    }
}
