//! The reboot lease rules: a deterministic counting semaphore per group, applied from the log.
//!
//! Everything here is pure: time comes in the commands (stamped by the leader when it
//! proposes them) and the fencing token is the raft log index, so every replica that applies
//! the same log ends up with the same state and emits the same events.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::names::{check_group, check_holder, check_machine_id, check_reason, NameError};

/// Milliseconds since the Unix epoch, as stamped into commands by the leader.
pub type UnixMillis = u64;

/// Most holders a group may allow at once (`set-max`, `default_max_holders`).
pub const MAX_HOLDERS_CAP: u32 = 1_000;

/// Most groups the cluster keeps.
pub const MAX_GROUPS: usize = 1_000;

/// Most waiters in one group's queue: a fleet of 10,000 hosts, twice over.
pub const MAX_QUEUE: usize = 20_000;

/// One change to the lease state, as proposed through raft.
///
/// Time and defaults are stamped in by the leader so that applying a command never
/// depends on the replica's clock or configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Take a slot in `group` for `holder`, or queue for one.
    Acquire {
        group: String,
        holder: String,
        machine_id: String,
        now: UnixMillis,
        /// Slot count given to the group if this command creates it.
        default_max_holders: u32,
        /// How long a queued holder keeps its place without polling again.
        waiter_ttl_ms: u64,
    },
    /// Give back a slot and/or leave the queue. Idempotent.
    Release {
        group: String,
        holder: String,
        /// When given, only the grant with this fencing token is released.
        token: Option<u64>,
        now: UnixMillis,
    },
    /// Only run the expiry step: drop stale waiters and, with a hold timeout, overdue grants.
    Expire {
        now: UnixMillis,
        hold_timeout_ms: Option<u64>,
    },
    /// Stop new grants in one group, or in all groups when `group` is `None`.
    Pause {
        group: Option<String>,
        reason: String,
        /// Who asked (the caller's name), shown in status.
        #[serde(default)]
        by: String,
        now: UnixMillis,
        /// Slot count given to the group if this command creates it.
        default_max_holders: u32,
    },
    /// Undo a pause of one group, or the all-groups pause when `group` is `None`.
    Resume {
        group: Option<String>,
        #[serde(default)]
        by: String,
        now: UnixMillis,
    },
    /// Take a slot away from a holder (operator override).
    ForceRelease {
        group: String,
        holder: String,
        #[serde(default)]
        by: String,
        now: UnixMillis,
    },
    /// Change how many holders a group allows at once.
    SetMax {
        group: String,
        max_holders: u32,
        #[serde(default)]
        by: String,
        now: UnixMillis,
        /// Carried for symmetry with the other group-creating commands; a group created by
        /// `SetMax` gets `max_holders` directly.
        default_max_holders: u32,
    },
}

/// A held lease: one slot of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The group the slot belongs to.
    pub group: String,
    /// Who holds it (normally the host name).
    pub holder: String,
    /// Fencing token: the raft log index of the granting command, so strictly increasing.
    pub token: u64,
    /// The holder's machine id, for operators telling reinstalled hosts apart.
    pub machine_id: String,
    /// When the slot was granted; hold timeouts count from here.
    pub granted_at: UnixMillis,
}

/// A holder waiting in a group's FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// Who is waiting.
    pub holder: String,
    /// The waiter's machine id.
    pub machine_id: String,
    /// When it joined the queue (refreshing does not change this).
    pub since: UnixMillis,
    /// The waiter is dropped by the first command applied after this time.
    pub deadline: UnixMillis,
}

/// A named counting semaphore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// How many holders may hold a slot at once.
    pub max_holders: u32,
    /// The group's own pause reason, if paused.
    pub paused: Option<String>,
    /// Who paused it, and when (with `paused`).
    #[serde(default)]
    pub paused_by: Option<String>,
    #[serde(default)]
    pub paused_at: Option<UnixMillis>,
    /// Current grants, in grant order.
    pub holders: Vec<Grant>,
    /// Waiters, first come first served.
    pub queue: VecDeque<Waiter>,
}

impl Group {
    fn new(max_holders: u32) -> Self {
        Self {
            max_holders,
            ..Self::default()
        }
    }

    /// The grant `holder` has in this group, if any.
    pub fn grant(&self, holder: &str) -> Option<&Grant> {
        self.holders.iter().find(|g| g.holder == holder)
    }

    /// The 1-based queue position of `holder`, if it is waiting.
    pub fn queue_position(&self, holder: &str) -> Option<u32> {
        self.queue_index(holder).map(|i| count(i + 1))
    }

    fn queue_index(&self, holder: &str) -> Option<usize> {
        self.queue.iter().position(|w| w.holder == holder)
    }

    fn holder_index(&self, holder: &str) -> Option<usize> {
        self.holders.iter().position(|g| g.holder == holder)
    }
}

/// The whole replicated lease state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// Groups by name; created on first use, never removed.
    pub groups: BTreeMap<String, Group>,
    /// The all-groups pause reason, if paused.
    pub paused_all: Option<String>,
    /// Who paused all groups, and when (with `paused_all`).
    #[serde(default)]
    pub paused_all_by: Option<String>,
    #[serde(default)]
    pub paused_all_at: Option<UnixMillis>,
}

/// What applying a command means for its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The caller holds this slot (new, or the one it already had).
    Granted(Grant),
    /// The caller waits at `position` (1-based) of `waiters`.
    Queued {
        position: u32,
        waiters: u32,
        reason: QueueReason,
    },
    /// Result of a `Release`.
    Released {
        /// A grant was removed.
        released: bool,
        /// The holder was removed from the queue.
        left_queue: bool,
        /// The holder holds a grant, but with a different token than given; nothing changed.
        token_mismatch: bool,
    },
    /// Admin commands and `Expire`: what changed, in words.
    Done { message: String },
    /// Applied (waiters and holds past their time were expired), but the
    /// command itself was refused for what the state holds.
    Refused(Refusal),
}

/// Why an applied command changed nothing: the state does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    /// The holder holds a grant recorded with another machine id: two hosts
    /// must never share a lease by sharing a name.
    #[error("{holder} holds a lease in {group} granted to machine {granted_to:?}, not {asked_by:?}; two hosts must not share a name")]
    OtherMachine {
        group: String,
        holder: String,
        granted_to: String,
        asked_by: String,
    },
    /// The group's queue is at [`MAX_QUEUE`].
    #[error("the queue of {group} is full ({max} waiters)")]
    QueueFull { group: String, max: usize },
    /// The cluster has [`MAX_GROUPS`] groups.
    #[error("cannot create group {group}: the cluster has the most groups it keeps ({max})")]
    TooManyGroups { group: String, max: usize },
}

/// Why an `Acquire` was queued rather than granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueReason {
    /// No free slot for the caller (all taken, or claimed by waiters ahead of it).
    Full,
    /// The group or all groups are paused; carries the reason text.
    Paused(String),
}

/// Why a grant ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseCause {
    /// The holder released it.
    Released,
    /// An operator force-released it.
    Forced,
    /// It was held longer than the hold timeout.
    HoldTimeout,
}

/// One observable change, in the group named by [`Event::group`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A slot was granted.
    Granted(Grant),
    /// A holder joined the queue (not emitted when a waiter merely refreshes).
    Queued {
        holder: String,
        position: u32,
        waiters: u32,
    },
    /// A grant ended.
    Released {
        holder: String,
        token: u64,
        cause: ReleaseCause,
    },
    /// A waiter left the queue: it released, or it is about to be granted.
    LeftQueue { holder: String },
    /// A waiter's TTL ran out.
    WaiterDropped { holder: String },
    /// The group was paused, or its pause reason changed.
    Paused { reason: String },
    /// The group's own pause was lifted.
    Resumed,
    /// All groups were paused, or the reason changed; the event's group is "".
    PausedAll { reason: String },
    /// The all-groups pause was lifted; the event's group is "".
    ResumedAll,
    /// The group's max holders changed; also emitted when a group is created.
    MaxChanged { max_holders: u32 },
}

/// A change to one group (or to all groups, with group "").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The group changed; "" for all-groups pause and resume.
    pub group: String,
    /// What changed.
    pub kind: EventKind,
}

/// A command that is rejected before it changes anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LeaseError {
    /// The group name breaks the naming rule (`rules::names::check_group`).
    #[error("invalid group name {name:?}: {reason}")]
    Group { name: String, reason: NameError },
    /// The holder breaks the naming rule (`rules::names::check_holder`).
    #[error("invalid holder {name:?}: {reason}")]
    Holder { name: String, reason: NameError },
    /// 0 would make a group that can never grant; more than the cap lets a
    /// whole fleet reboot at once.
    #[error("invalid max holders {0}: must be 1 to 1000")]
    MaxHolders(u32),
    /// The machine id breaks the rule (`rules::names::check_machine_id`).
    #[error("invalid machine id {id:?}: {reason}")]
    MachineId { id: String, reason: NameError },
    /// The pause reason breaks the rule (`rules::names::check_reason`).
    #[error("invalid pause reason: {0}")]
    Reason(NameError),
}

/// Checks a group name, as the lease rules need it.
pub fn validate_group_name(name: &str) -> Result<(), LeaseError> {
    check_group(name).map_err(|reason| LeaseError::Group {
        name: name.to_owned(),
        reason,
    })
}

/// Checks a holder name, as the lease rules need it.
pub fn validate_holder(holder: &str) -> Result<(), LeaseError> {
    check_holder(holder).map_err(|reason| LeaseError::Holder {
        name: holder.to_owned(),
        reason,
    })
}

/// Checks a max holders value: 1 to [`MAX_HOLDERS_CAP`].
pub fn validate_max(max_holders: u32) -> Result<(), LeaseError> {
    if !(1..=MAX_HOLDERS_CAP).contains(&max_holders) {
        return Err(LeaseError::MaxHolders(max_holders));
    }
    Ok(())
}

impl Command {
    /// Whether applying this may free a slot (or let a waiter in). Waiters
    /// watching a follower learn of it only once the follower knows the
    /// entry is committed, so the leader tells followers at once after these.
    pub fn may_free_slot(&self) -> bool {
        matches!(
            self,
            Command::Release { .. }
                | Command::Expire { .. }
                | Command::ForceRelease { .. }
                | Command::SetMax { .. }
                | Command::Resume { .. }
        )
    }

    /// The time the leader stamped into the command.
    pub fn now(&self) -> UnixMillis {
        match self {
            Command::Acquire { now, .. }
            | Command::Release { now, .. }
            | Command::Expire { now, .. }
            | Command::Pause { now, .. }
            | Command::Resume { now, .. }
            | Command::ForceRelease { now, .. }
            | Command::SetMax { now, .. } => *now,
        }
    }

    /// Checks every field `apply` would reject, so the server can refuse before proposing.
    ///
    /// `default_max_holders` must be at least 1 wherever it is carried, whether or not this
    /// particular application creates a group: whether it does depends on the state, and
    /// the check should not.
    pub fn validate(&self) -> Result<(), LeaseError> {
        match self {
            Command::Acquire {
                group,
                holder,
                machine_id,
                default_max_holders,
                ..
            } => {
                validate_group_name(group)?;
                validate_holder(holder)?;
                check_machine_id(machine_id).map_err(|reason| LeaseError::MachineId {
                    id: machine_id.clone(),
                    reason,
                })?;
                validate_max(*default_max_holders)
            }
            Command::Release { group, holder, .. }
            | Command::ForceRelease { group, holder, .. } => {
                validate_group_name(group)?;
                validate_holder(holder)
            }
            Command::Expire { .. } => Ok(()),
            Command::Pause {
                group,
                reason,
                default_max_holders,
                ..
            } => {
                if let Some(group) = group {
                    validate_group_name(group)?;
                }
                check_reason(reason).map_err(LeaseError::Reason)?;
                validate_max(*default_max_holders)
            }
            Command::Resume { group, .. } => group.as_deref().map_or(Ok(()), validate_group_name),
            Command::SetMax {
                group,
                max_holders,
                default_max_holders,
                ..
            } => {
                validate_group_name(group)?;
                validate_max(*max_holders)?;
                validate_max(*default_max_holders)
            }
        }
    }
}

impl LeaseState {
    /// Applies one command at raft log `index`. Deterministic. On Err, state is unchanged.
    ///
    /// The index becomes the fencing token of a new grant, so it must increase from call to
    /// call. Every observable change is reported as an event, in the order it happened.
    pub fn apply(
        &mut self,
        index: u64,
        cmd: &Command,
    ) -> Result<(Outcome, Vec<Event>), LeaseError> {
        // Validate before anything else so that a rejected command does not even run the
        // expiry step: nothing is ever half-applied.
        cmd.validate()?;
        let now = cmd.now();
        let mut events = Vec::new();
        let hold_timeout = match cmd {
            Command::Expire {
                hold_timeout_ms, ..
            } => *hold_timeout_ms,
            _ => None,
        };
        let (dropped, timed_out) = self.expire(now, hold_timeout, &mut events);

        let outcome = match cmd {
            Command::Acquire {
                group,
                holder,
                machine_id,
                now,
                default_max_holders,
                waiter_ttl_ms,
            } => self.acquire(
                index,
                AcquireRequest {
                    group,
                    holder,
                    machine_id,
                    now: *now,
                    default_max_holders: *default_max_holders,
                    waiter_ttl_ms: *waiter_ttl_ms,
                },
                &mut events,
            ),
            Command::Release {
                group,
                holder,
                token,
                ..
            } => self.release(group, holder, *token, &mut events),
            Command::Expire { .. } => Outcome::Done {
                message: expiry_message(dropped, timed_out),
            },
            Command::Pause {
                group: None,
                reason,
                by,
                now,
                ..
            } => self.pause_all(reason, by, *now, &mut events),
            Command::Pause {
                group: Some(group),
                reason,
                by,
                now,
                default_max_holders,
            } => self.pause_group(group, (reason, by, *now), *default_max_holders, &mut events),
            Command::Resume { group: None, .. } => self.resume_all(&mut events),
            Command::Resume {
                group: Some(group), ..
            } => self.resume_group(group, &mut events),
            Command::ForceRelease { group, holder, .. } => {
                self.force_release(group, holder, &mut events)
            }
            Command::SetMax {
                group, max_holders, ..
            } => self.set_max(group, *max_holders, &mut events),
        };
        Ok((outcome, events))
    }

    /// The earliest time at which an Expire command would change something (earliest waiter deadline; earliest granted_at + hold_timeout when given). The leader uses it to schedule Expire.
    ///
    /// A waiter is dropped only once `deadline < now`, so its contribution is `deadline + 1`:
    /// an Expire stamped exactly at the deadline would change nothing, and a leader that
    /// re-read this value would propose it again at once.
    pub fn next_expiry(&self, hold_timeout_ms: Option<u64>) -> Option<UnixMillis> {
        let waiters = self
            .groups
            .values()
            .flat_map(|g| g.queue.iter())
            // A deadline of u64::MAX never passes, so it schedules nothing.
            .filter_map(|w| w.deadline.checked_add(1));
        let grants = hold_timeout_ms.into_iter().flat_map(|timeout| {
            self.groups
                .values()
                .flat_map(|g| g.holders.iter())
                .map(move |grant| grant.granted_at.saturating_add(timeout))
        });
        waiters.chain(grants).min()
    }

    /// Effective pause reason of a group (its own, else the all-groups one).
    pub fn pause_reason(&self, group: &str) -> Option<&str> {
        self.groups
            .get(group)
            .and_then(|g| g.paused.as_deref())
            .or(self.paused_all.as_deref())
    }

    /// The grant `holder` has in `group`, if any.
    pub fn holder_grant(&self, group: &str, holder: &str) -> Option<&Grant> {
        self.groups.get(group).and_then(|g| g.grant(holder))
    }

    /// Drops waiters past their deadline and, with a hold timeout, grants held too long.
    /// Returns how many of each were removed.
    fn expire(
        &mut self,
        now: UnixMillis,
        hold_timeout_ms: Option<u64>,
        events: &mut Vec<Event>,
    ) -> (usize, usize) {
        let (mut dropped, mut timed_out) = (0, 0);
        for (name, group) in &mut self.groups {
            group.queue.retain(|w| {
                if w.deadline < now {
                    dropped += 1;
                    events.push(Event {
                        group: name.clone(),
                        kind: EventKind::WaiterDropped {
                            holder: w.holder.clone(),
                        },
                    });
                    false
                } else {
                    true
                }
            });
            if let Some(timeout) = hold_timeout_ms {
                group.holders.retain(|grant| {
                    if grant.granted_at.saturating_add(timeout) <= now {
                        timed_out += 1;
                        events.push(Event {
                            group: name.clone(),
                            kind: EventKind::Released {
                                holder: grant.holder.clone(),
                                token: grant.token,
                                cause: ReleaseCause::HoldTimeout,
                            },
                        });
                        false
                    } else {
                        true
                    }
                });
            }
        }
        (dropped, timed_out)
    }

    /// The group, created with `max_holders` (and announced) if missing;
    /// refused when the cluster already keeps [`MAX_GROUPS`].
    fn ensure_group(
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

    fn acquire(&mut self, index: u64, req: AcquireRequest<'_>, events: &mut Vec<Event>) -> Outcome {
        let paused_all = self.paused_all.clone();
        let group = match self.ensure_group(req.group, req.default_max_holders, events) {
            Ok(group) => group,
            Err(refusal) => return Outcome::Refused(refusal),
        };
        if let Some(grant) = group.grant(req.holder) {
            if grant.machine_id != req.machine_id {
                return Outcome::Refused(Refusal::OtherMachine {
                    group: req.group.to_owned(),
                    holder: req.holder.to_owned(),
                    granted_to: grant.machine_id.clone(),
                    asked_by: req.machine_id.to_owned(),
                });
            }
            // Reentrant: a holder that retries (e.g. after a lost reply) gets its grant back.
            return Outcome::Granted(grant.clone());
        }

        let queued_at = group.queue_index(req.holder);
        // A newcomer has the whole queue ahead of it.
        let ahead = queued_at.unwrap_or(group.queue.len());
        let free = (group.max_holders as usize).saturating_sub(group.holders.len());
        let pause = group.paused.clone().or(paused_all);

        if pause.is_none() && ahead < free {
            if let Some(i) = queued_at {
                group.queue.remove(i);
                events.push(Event {
                    group: req.group.to_owned(),
                    kind: EventKind::LeftQueue {
                        holder: req.holder.to_owned(),
                    },
                });
            }
            let grant = Grant {
                group: req.group.to_owned(),
                holder: req.holder.to_owned(),
                token: index,
                machine_id: req.machine_id.to_owned(),
                granted_at: req.now,
            };
            group.holders.push(grant.clone());
            events.push(Event {
                group: req.group.to_owned(),
                kind: EventKind::Granted(grant.clone()),
            });
            return Outcome::Granted(grant);
        }

        let deadline = req.now.saturating_add(req.waiter_ttl_ms);
        let position = match queued_at.and_then(|i| group.queue.get_mut(i).map(|w| (i, w))) {
            Some((i, waiter)) => {
                // Polling again keeps the waiter's place and keeps it alive.
                waiter.deadline = deadline;
                i + 1
            }
            None => {
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
                    deadline,
                });
                events.push(Event {
                    group: req.group.to_owned(),
                    kind: EventKind::Queued {
                        holder: req.holder.to_owned(),
                        position: count(group.queue.len()),
                        waiters: count(group.queue.len()),
                    },
                });
                group.queue.len()
            }
        };
        Outcome::Queued {
            position: count(position),
            waiters: count(group.queue.len()),
            reason: pause.map_or(QueueReason::Full, QueueReason::Paused),
        }
    }

    fn release(
        &mut self,
        group_name: &str,
        holder: &str,
        token: Option<u64>,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let (mut released, mut left_queue, mut token_mismatch) = (false, false, false);
        // Releasing in an unknown group changes nothing; in particular it must not create it.
        if let Some(group) = self.groups.get_mut(group_name) {
            if let Some(i) = group.holder_index(holder) {
                let held = group.holders[i].token;
                if token.is_some_and(|t| t != held) {
                    // A stale release (from before a re-grant) must not free the new grant.
                    token_mismatch = true;
                } else {
                    group.holders.remove(i);
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
            if let Some(i) = group.queue_index(holder) {
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
        Outcome::Released {
            released,
            left_queue,
            token_mismatch,
        }
    }

    fn pause_all(
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
    fn pause_group(
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

    fn resume_all(&mut self, events: &mut Vec<Event>) -> Outcome {
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

    fn resume_group(&mut self, name: &str, events: &mut Vec<Event>) -> Outcome {
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

    fn force_release(&mut self, name: &str, holder: &str, events: &mut Vec<Event>) -> Outcome {
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
        done(format!(
            "force-released {holder} from group {name} (token {})",
            grant.token
        ))
    }

    fn set_max(&mut self, name: &str, max_holders: u32, events: &mut Vec<Event>) -> Outcome {
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

/// The fields of an `Acquire`, borrowed, so `acquire` does not take seven arguments.
struct AcquireRequest<'a> {
    group: &'a str,
    holder: &'a str,
    machine_id: &'a str,
    now: UnixMillis,
    default_max_holders: u32,
    waiter_ttl_ms: u64,
}

fn done(message: String) -> Outcome {
    Outcome::Done { message }
}

fn expiry_message(dropped: usize, timed_out: usize) -> String {
    if dropped == 0 && timed_out == 0 {
        return "nothing expired".to_owned();
    }
    format!(
        "dropped {dropped} expired waiter(s), released {timed_out} grant(s) past the hold timeout"
    )
}

/// Counts for outcomes and events; a queue can never really hold u32::MAX hosts.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
