//! How each lease command changes the state: the bodies behind [`LeaseState::apply`].

use super::{
    count, Event, EventKind, Grant, Group, HostHold, LeaseState, Outcome, QueueReason,
    RebootRequest, Refusal, ReleaseCause, UnixMillis, Waiter, WaiterRef, MAX_GROUPS,
    MAX_HOST_CONTROLS, MAX_QUEUE,
};

/// The fields of an `Acquire` command.
pub(super) struct AcquireRequest<'a> {
    pub group: &'a str,
    pub holder: &'a str,
    pub machine_id: &'a str,
    pub now: UnixMillis,
    pub default_max_holders: u32,
}

impl LeaseState {
    /// The token for a grant made by the entry at `index`: its index, or one
    /// past the last token when this entry already granted one.
    fn next_token(&self, index: u64) -> u64 {
        index.max(self.last_token.saturating_add(1))
    }

    /// Takes back grants held past the hold timeout (when one is set).
    pub(super) fn expire_holds(
        &mut self,
        now: UnixMillis,
        hold_timeout_ms: Option<u64>,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let Some(timeout) = hold_timeout_ms else {
            return done("nothing expired".to_owned());
        };
        let mut timed_out = 0;
        let mut freed = Vec::new();
        for (name, group) in &mut self.groups {
            group.holders.retain(|grant| {
                if grant.granted_at.saturating_add(timeout) > now {
                    return true;
                }
                timed_out += 1;
                if grant.claimed {
                    freed.push(name.clone());
                }
                events.push(Event {
                    group: name.clone(),
                    kind: EventKind::Released {
                        holder: grant.holder.clone(),
                        token: grant.token,
                        cause: ReleaseCause::HoldTimeout,
                    },
                });
                false
            });
        }
        for name in freed {
            self.settle_slot(&name, now);
        }
        if timed_out == 0 {
            return done("nothing expired".to_owned());
        }
        done(format!(
            "released {timed_out} grant(s) past the hold timeout"
        ))
    }

    /// Drops the named waiters from their queues, and takes back slots handed
    /// to them but not yet claimed. A claimed grant is never touched: its
    /// holder took it and may be rebooting with it.
    pub(super) fn drop_waiters(
        &mut self,
        waiters: &[WaiterRef],
        events: &mut Vec<Event>,
    ) -> Outcome {
        let (mut dropped, mut taken_back) = (0, 0);
        for waiter in waiters {
            let Some(group) = self.groups.get_mut(&waiter.group) else {
                continue;
            };
            if let Some(i) = group.queue_index(&waiter.holder) {
                group.queue.remove(i);
                dropped += 1;
                events.push(Event {
                    group: waiter.group.clone(),
                    kind: EventKind::WaiterDropped {
                        holder: waiter.holder.clone(),
                    },
                });
            } else if let Some(i) = group
                .holders
                .iter()
                .position(|g| g.holder == waiter.holder && !g.claimed)
            {
                let grant = group.holders.remove(i);
                taken_back += 1;
                events.push(Event {
                    group: waiter.group.clone(),
                    kind: EventKind::Released {
                        holder: grant.holder,
                        token: grant.token,
                        cause: ReleaseCause::SessionLost,
                    },
                });
            }
        }
        done(format!(
            "dropped {dropped} waiter(s) whose session lapsed, took back {taken_back} unclaimed slot(s)"
        ))
    }

    /// Grants every free slot to the head of its group's queue, in group-name
    /// order, unless the group or all groups are paused. Run after every
    /// command, so the entry that frees a slot is the one that hands it over.
    pub(super) fn promote(&mut self, index: u64, now: UnixMillis, events: &mut Vec<Event>) {
        let _ = self.drop_settled(now);
        if self.paused_all.is_some() {
            return;
        }
        let mut token = self.next_token(index);
        let mut last_granted = None;
        for (name, group) in &mut self.groups {
            if group.paused.is_some() {
                continue;
            }
            let settling = self.settling.get(name).map_or(0, Vec::len);
            while group.holders.len() + settling < group.max_holders as usize {
                let Some(waiter) = group.queue.pop_front() else {
                    break;
                };
                events.push(Event {
                    group: name.clone(),
                    kind: EventKind::LeftQueue {
                        holder: waiter.holder.clone(),
                    },
                });
                let grant = Grant {
                    group: name.clone(),
                    holder: waiter.holder,
                    token,
                    machine_id: waiter.machine_id,
                    granted_at: now,
                    claimed: false,
                };
                last_granted = Some(token);
                // At the top of u64 tokens stop growing, as in `next_token`
                // (2^64 entries: never in practice; never an overflow panic).
                token = token.saturating_add(1);
                group.holders.push(grant.clone());
                events.push(Event {
                    group: name.clone(),
                    kind: EventKind::Granted(grant),
                });
            }
        }
        if let Some(last) = last_granted {
            self.last_token = last;
        }
    }

    /// The group, created with `max_holders` (and announced) if missing;
    /// refused when the cluster already keeps [`MAX_GROUPS`].
    pub(super) fn ensure_group(
        &mut self,
        name: &str,
        max_holders: u32,
        events: &mut Vec<Event>,
    ) -> Result<&mut Group, Refusal> {
        if !self.groups.contains_key(name) {
            if self.groups.len() >= MAX_GROUPS {
                return Err(Refusal::TooManyGroups {
                    group: name.to_owned(),
                    max: MAX_GROUPS,
                });
            }
            // Announce the new group's size so a watcher replaying events knows it too.
            events.push(Event {
                group: name.to_owned(),
                kind: EventKind::MaxChanged { max_holders },
            });
        }
        Ok(self
            .groups
            .entry(name.to_owned())
            .or_insert_with(|| Group::new(max_holders)))
    }

    pub(super) fn acquire(
        &mut self,
        index: u64,
        req: AcquireRequest<'_>,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let token = self.next_token(index);
        let paused_all = self.paused_all.clone();
        let settling = self.settling.get(req.group).map_or(0, Vec::len);
        if let Some(hold) = self.held.get(req.holder) {
            // A held host gets back a grant it has (reentrant), nothing new.
            let holds = self
                .groups
                .get(req.group)
                .is_some_and(|g| g.grant(req.holder).is_some());
            if !holds {
                return Outcome::Refused(Refusal::Held {
                    holder: req.holder.to_owned(),
                    reason: hold.reason.clone(),
                    by: hold.by.clone(),
                });
            }
        }
        let group = match self.ensure_group(req.group, req.default_max_holders, events) {
            Ok(group) => group,
            Err(refusal) => return Outcome::Refused(refusal),
        };
        if let Some(grant) = group.holders.iter_mut().find(|g| g.holder == req.holder) {
            if grant.machine_id != req.machine_id {
                return Outcome::Refused(Refusal::OtherMachine {
                    group: req.group.to_owned(),
                    holder: req.holder.to_owned(),
                    granted_to: grant.machine_id.clone(),
                    asked_by: req.machine_id.to_owned(),
                });
            }
            // Reentrant: a holder that retries (e.g. after a lost reply) gets its grant
            // back, and a slot handed over on release becomes its own.
            grant.claimed = true;
            return Outcome::Granted(grant.clone());
        }

        let pause = group.paused.clone().or(paused_all);
        if let Some(i) = group.queue_index(req.holder) {
            let waiter = &group.queue[i];
            if waiter.machine_id != req.machine_id {
                return Outcome::Refused(Refusal::QueuedByOtherMachine {
                    group: req.group.to_owned(),
                    holder: req.holder.to_owned(),
                    queued_by: waiter.machine_id.clone(),
                    asked_by: req.machine_id.to_owned(),
                });
            }
            // Asking again keeps the waiter's place; it costs no change.
            return Outcome::Queued {
                position: count(i + 1),
                waiters: count(group.queue.len()),
                reason: pause.map_or(QueueReason::Full, QueueReason::Paused),
            };
        }
        let free = group.holders.len() + settling < group.max_holders as usize;
        // After every apply a free slot has no one waiting for it (unless paused), so a
        // newcomer is granted exactly when nobody is ahead of it.
        if pause.is_none() && free && group.queue.is_empty() {
            let grant = Grant {
                group: req.group.to_owned(),
                holder: req.holder.to_owned(),
                token,
                machine_id: req.machine_id.to_owned(),
                granted_at: req.now,
                claimed: true,
            };
            group.holders.push(grant.clone());
            events.push(Event {
                group: req.group.to_owned(),
                kind: EventKind::Granted(grant.clone()),
            });
            self.last_token = token;
            return Outcome::Granted(grant);
        }
        if group.queue.len() >= MAX_QUEUE {
            return Outcome::Refused(Refusal::QueueFull {
                group: req.group.to_owned(),
                max: MAX_QUEUE,
            });
        }
        group.queue.push_back(Waiter {
            holder: req.holder.to_owned(),
            machine_id: req.machine_id.to_owned(),
            since: req.now,
        });
        let waiters = count(group.queue.len());
        events.push(Event {
            group: req.group.to_owned(),
            kind: EventKind::Queued {
                holder: req.holder.to_owned(),
                position: waiters,
                waiters,
            },
        });
        Outcome::Queued {
            position: waiters,
            waiters,
            reason: pause.map_or(QueueReason::Full, QueueReason::Paused),
        }
    }

    pub(super) fn release(
        &mut self,
        group_name: &str,
        holder: &str,
        (token, now): (Option<u64>, UnixMillis),
        events: &mut Vec<Event>,
    ) -> Outcome {
        let (mut released, mut left_queue, mut token_mismatch) = (false, false, false);
        let mut settle = false;
        // Releasing in an unknown group changes nothing; in particular it must not create it.
        if let Some(group) = self.groups.get_mut(group_name) {
            if let Some(i) = group.holder_index(holder) {
                let held = group.holders[i].token;
                if token.is_some_and(|t| t != held) {
                    // A stale release (from before a re-grant) must not free the new grant.
                    token_mismatch = true;
                } else {
                    settle = group.holders.remove(i).claimed;
                    released = true;
                    events.push(Event {
                        group: group_name.to_owned(),
                        kind: EventKind::Released {
                            holder: holder.to_owned(),
                            token: held,
                            cause: ReleaseCause::Released,
                        },
                    });
                }
            }
            // A release with a token names a grant. Sent again late (a retry,
            // a forward the network held), it must not cost the holder its
            // place in a later queue: only a release without one leaves it.
            let leaves_queue = token.is_none();
            if let Some(i) = group.queue_index(holder).filter(|_| leaves_queue) {
                group.queue.remove(i);
                left_queue = true;
                events.push(Event {
                    group: group_name.to_owned(),
                    kind: EventKind::LeftQueue {
                        holder: holder.to_owned(),
                    },
                });
            }
        }
        if settle {
            self.settle_slot(group_name, now);
            // It took the lease and gives it back: it rebooted (or gave up).
            self.reboot_now.remove(holder);
        }
        Outcome::Released {
            released,
            left_queue,
            token_mismatch,
        }
    }

    pub(super) fn pause_all(
        &mut self,
        reason: &str,
        by: &str,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) -> Outcome {
        if self.paused_all.as_deref() == Some(reason) {
            return done(format!("all groups already paused: {reason}"));
        }
        self.paused_all = Some(reason.to_owned());
        self.paused_all_by = Some(by.to_owned());
        self.paused_all_at = Some(now);
        events.push(Event {
            group: String::new(),
            kind: EventKind::PausedAll {
                reason: reason.to_owned(),
            },
        });
        done(format!("paused all groups: {reason}"))
    }

    /// `pause`: the reason, who asked, and when.
    pub(super) fn pause_group(
        &mut self,
        name: &str,
        (reason, by, now): (&str, &str, UnixMillis),
        default_max_holders: u32,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let group = match self.ensure_group(name, default_max_holders, events) {
            Ok(group) => group,
            Err(refusal) => return Outcome::Refused(refusal),
        };
        if group.paused.as_deref() == Some(reason) {
            return done(format!("group {name} already paused: {reason}"));
        }
        group.paused = Some(reason.to_owned());
        group.paused_by = Some(by.to_owned());
        group.paused_at = Some(now);
        events.push(Event {
            group: name.to_owned(),
            kind: EventKind::Paused {
                reason: reason.to_owned(),
            },
        });
        done(format!("paused group {name}: {reason}"))
    }

    pub(super) fn resume_all(&mut self, events: &mut Vec<Event>) -> Outcome {
        if self.paused_all.take().is_none() {
            return done("all groups were not paused".to_owned());
        }
        self.paused_all_by = None;
        self.paused_all_at = None;
        events.push(Event {
            group: String::new(),
            kind: EventKind::ResumedAll,
        });
        done("resumed all groups".to_owned())
    }

    pub(super) fn resume_group(&mut self, name: &str, events: &mut Vec<Event>) -> Outcome {
        // Like release, resuming an unknown group must not create it.
        let Some(group) = self.groups.get_mut(name) else {
            return done(format!("no group {name}; nothing to resume"));
        };
        group.paused_by = None;
        group.paused_at = None;
        if group.paused.take().is_none() {
            let note = match &self.paused_all {
                Some(reason) => format!(" (all groups are still paused: {reason})"),
                None => String::new(),
            };
            return done(format!("group {name} was not paused{note}"));
        }
        events.push(Event {
            group: name.to_owned(),
            kind: EventKind::Resumed,
        });
        let note = match &self.paused_all {
            Some(reason) => format!("; all groups are still paused: {reason}"),
            None => String::new(),
        };
        done(format!("resumed group {name}{note}"))
    }

    pub(super) fn force_release(
        &mut self,
        name: &str,
        holder: &str,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let Some(group) = self.groups.get_mut(name) else {
            return done(format!("no group {name}; nothing to release"));
        };
        let Some(i) = group.holder_index(holder) else {
            return done(format!("{holder} holds no lease in group {name}"));
        };
        let grant = group.holders.remove(i);
        events.push(Event {
            group: name.to_owned(),
            kind: EventKind::Released {
                holder: grant.holder,
                token: grant.token,
                cause: ReleaseCause::Forced,
            },
        });
        if grant.claimed {
            self.settle_slot(name, now);
        }
        self.reboot_now.remove(holder);
        done(format!(
            "force-released {holder} from group {name} (token {})",
            grant.token
        ))
    }

    pub(super) fn set_max(
        &mut self,
        name: &str,
        max_holders: u32,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let Some(group) = self.groups.get_mut(name) else {
            // Creating the group with the requested size announces it once, not twice.
            if let Err(refusal) = self.ensure_group(name, max_holders, events) {
                return Outcome::Refused(refusal);
            }
            return done(format!(
                "created group {name} with max holders {max_holders}"
            ));
        };
        let old = group.max_holders;
        if old == max_holders {
            return done(format!("group {name} already allows {max_holders} holders"));
        }
        group.max_holders = max_holders;
        events.push(Event {
            group: name.to_owned(),
            kind: EventKind::MaxChanged { max_holders },
        });
        let mut message = format!("max holders of group {name}: {old} -> {max_holders}");
        if group.holders.len() > max_holders as usize {
            // Lowering never evicts: current holders finish, and no one new gets in until
            // the group is back below the limit.
            message.push_str(&format!(
                " ({} current holders keep their slots)",
                group.holders.len()
            ));
        }
        done(message)
    }
}

impl LeaseState {
    /// `hold`: the reason, who asked, and when. The host leaves every queue
    /// and gives back slots handed to it but not taken; a grant it took stays.
    pub(super) fn hold(
        &mut self,
        holder: &str,
        (reason, by, now): (&str, &str, UnixMillis),
        events: &mut Vec<Event>,
    ) -> Outcome {
        if !self.held.contains_key(holder) && self.held.len() >= MAX_HOST_CONTROLS {
            return Outcome::Refused(Refusal::TooManyHostControls {
                what: "hold".to_owned(),
                holder: holder.to_owned(),
                max: MAX_HOST_CONTROLS,
            });
        }
        self.held.insert(
            holder.to_owned(),
            HostHold {
                reason: reason.to_owned(),
                by: by.to_owned(),
                at: now,
            },
        );
        let mut notes = Vec::new();
        for (name, group) in &mut self.groups {
            if let Some(i) = group.queue_index(holder) {
                group.queue.remove(i);
                notes.push(format!("left the queue of {name}"));
                events.push(Event {
                    group: name.clone(),
                    kind: EventKind::LeftQueue {
                        holder: holder.to_owned(),
                    },
                });
            }
            if let Some(i) = group.holder_index(holder) {
                if group.holders[i].claimed {
                    notes.push(format!(
                        "keeps its lease in {name} (token {}): a hold does not take a lease \
                         away, `baton unlock {name} {holder}` does",
                        group.holders[i].token
                    ));
                } else {
                    let grant = group.holders.remove(i);
                    notes.push(format!("gave back the slot of {name} handed to it"));
                    events.push(Event {
                        group: name.clone(),
                        kind: EventKind::Released {
                            holder: grant.holder,
                            token: grant.token,
                            cause: ReleaseCause::Forced,
                        },
                    });
                }
            }
        }
        let mut message = format!("held {holder}: {reason}");
        if !notes.is_empty() {
            message.push_str(&format!(" ({})", notes.join("; ")));
        }
        done(message)
    }

    pub(super) fn unhold(&mut self, holder: &str) -> Outcome {
        match self.held.remove(holder) {
            Some(_) => done(format!("unheld {holder}: it may queue again")),
            None => done(format!("{holder} was not held")),
        }
    }

    pub(super) fn reboot_now(
        &mut self,
        holder: &str,
        cancel: bool,
        by: &str,
        now: UnixMillis,
    ) -> Outcome {
        if cancel {
            return match self.reboot_now.remove(holder) {
                Some(_) => done(format!("withdrew the reboot asked of {holder}")),
                None => done(format!("no reboot was asked of {holder}")),
            };
        }
        if !self.reboot_now.contains_key(holder) && self.reboot_now.len() >= MAX_HOST_CONTROLS {
            return Outcome::Refused(Refusal::TooManyHostControls {
                what: "ask a reboot of".to_owned(),
                holder: holder.to_owned(),
                max: MAX_HOST_CONTROLS,
            });
        }
        self.reboot_now.insert(
            holder.to_owned(),
            RebootRequest {
                by: by.to_owned(),
                at: now,
            },
        );
        let note = match self.held.get(holder) {
            Some(hold) => format!(" (it is held: {}; it reboots once unheld)", hold.reason),
            None => String::new(),
        };
        done(format!(
            "asked {holder} to reboot outside its window: it queues for the lease at its next \
             check{note}"
        ))
    }

    /// Sets the settle time; 0 ends every settle at once.
    pub(super) fn set_settle_time(&mut self, settle_ms: u64) -> Outcome {
        if self.settle_ms == settle_ms {
            return done(format!("settle time already {settle_ms} ms"));
        }
        let old = self.settle_ms;
        self.settle_ms = settle_ms;
        if settle_ms == 0 {
            self.settling.clear();
        }
        done(format!("settle time: {old} ms -> {settle_ms} ms"))
    }

    /// A claimed grant in `group` ended at `now`: with a settle time set, its
    /// slot stays closed until `now + settle_ms`. (Bounded: a grant is made
    /// only while holders plus settling slots are below `max_holders`, and
    /// an ending grant turns a holder into a settling slot, so the two
    /// together never pass [`super::MAX_HOLDERS_CAP`].)
    pub(super) fn settle_slot(&mut self, group: &str, now: UnixMillis) {
        if self.settle_ms == 0 {
            return;
        }
        let freed = self.settling.entry(group.to_owned()).or_default();
        freed.push(now);
        freed.sort_unstable();
    }

    /// Forgets settling slots whose settle time has passed at `now`; true if any did.
    pub(super) fn drop_settled(&mut self, now: UnixMillis) -> bool {
        let settle_ms = self.settle_ms;
        let mut opened = false;
        self.settling.retain(|_, freed| {
            let before = freed.len();
            freed.retain(|at| at.saturating_add(settle_ms) > now);
            opened |= freed.len() != before;
            !freed.is_empty()
        });
        opened
    }
}

fn done(message: String) -> Outcome {
    Outcome::Done { message }
}
