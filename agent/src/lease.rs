//! The reboot lease rules: a deterministic counting semaphore per group, applied from the raft log.
//!
//! Everything here is pure: time comes in the commands (stamped by the leader when it
//! proposes them) and the fencing token is the raft log index, so every replica that applies
//! the same log ends up with the same state and emits the same events.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as stamped into commands by the leader.
pub type UnixMillis = u64;

/// Longest accepted group name, in characters.
pub const MAX_GROUP_NAME_LEN: usize = 128;

/// Longest accepted holder name, in characters: a fully qualified host name fits.
pub const MAX_HOLDER_LEN: usize = 253;

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
        now: UnixMillis,
        /// Slot count given to the group if this command creates it.
        default_max_holders: u32,
    },
    /// Undo a pause of one group, or the all-groups pause when `group` is `None`.
    Resume {
        group: Option<String>,
        now: UnixMillis,
    },
    /// Take a slot away from a holder (operator override).
    ForceRelease {
        group: String,
        holder: String,
        now: UnixMillis,
    },
    /// Change how many holders a group allows at once.
    SetMax {
        group: String,
        max_holders: u32,
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
    /// The group name is empty, too long or has characters outside `[a-zA-Z0-9._-]`.
    #[error("invalid group name {0:?}: use 1 to 128 of [a-zA-Z0-9._-]")]
    InvalidGroup(String),
    /// The holder is empty, too long or has control characters.
    #[error("invalid holder {0:?}: use 1 to 253 characters without control characters")]
    InvalidHolder(String),
    /// A max holders of 0 would make a group that can never grant.
    #[error("invalid max holders {0}: must be at least 1")]
    InvalidMax(u32),
}

/// Checks a group name: 1 to 128 characters of `[a-zA-Z0-9._-]`.
pub fn validate_group_name(name: &str) -> Result<(), LeaseError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    // All allowed characters are ASCII, so the byte length is the character length.
    if name.is_empty() || name.len() > MAX_GROUP_NAME_LEN || !name.bytes().all(allowed) {
        return Err(LeaseError::InvalidGroup(name.to_owned()));
    }
    Ok(())
}

/// Checks a holder: 1 to 253 characters, none of them control characters.
pub fn validate_holder(holder: &str) -> Result<(), LeaseError> {
    if holder.is_empty()
        || holder.chars().count() > MAX_HOLDER_LEN
        || holder.chars().any(char::is_control)
    {
        return Err(LeaseError::InvalidHolder(holder.to_owned()));
    }
    Ok(())
}

/// Checks a max holders value: at least 1.
pub fn validate_max(max_holders: u32) -> Result<(), LeaseError> {
    if max_holders == 0 {
        return Err(LeaseError::InvalidMax(max_holders));
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
                default_max_holders,
                ..
            } => {
                validate_group_name(group)?;
                validate_holder(holder)?;
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
                default_max_holders,
                ..
            } => {
                if let Some(group) = group {
                    validate_group_name(group)?;
                }
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
                ..
            } => self.pause_all(reason, &mut events),
            Command::Pause {
                group: Some(group),
                reason,
                default_max_holders,
                ..
            } => self.pause_group(group, reason, *default_max_holders, &mut events),
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

    /// The group, created with `max_holders` (and announced) if missing.
    fn ensure_group(
        &mut self,
        name: &str,
        max_holders: u32,
        events: &mut Vec<Event>,
    ) -> &mut Group {
        if !self.groups.contains_key(name) {
            // Announce the new group's size so a watcher replaying events knows it too.
            events.push(Event {
                group: name.to_owned(),
                kind: EventKind::MaxChanged { max_holders },
            });
        }
        self.groups
            .entry(name.to_owned())
            .or_insert_with(|| Group::new(max_holders))
    }

    fn acquire(&mut self, index: u64, req: AcquireRequest<'_>, events: &mut Vec<Event>) -> Outcome {
        let paused_all = self.paused_all.clone();
        let group = self.ensure_group(req.group, req.default_max_holders, events);
        if let Some(grant) = group.grant(req.holder) {
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

    fn pause_all(&mut self, reason: &str, events: &mut Vec<Event>) -> Outcome {
        if self.paused_all.as_deref() == Some(reason) {
            return done(format!("all groups already paused: {reason}"));
        }
        self.paused_all = Some(reason.to_owned());
        events.push(Event {
            group: String::new(),
            kind: EventKind::PausedAll {
                reason: reason.to_owned(),
            },
        });
        done(format!("paused all groups: {reason}"))
    }

    fn pause_group(
        &mut self,
        name: &str,
        reason: &str,
        default_max_holders: u32,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let group = self.ensure_group(name, default_max_holders, events);
        if group.paused.as_deref() == Some(reason) {
            return done(format!("group {name} already paused: {reason}"));
        }
        group.paused = Some(reason.to_owned());
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
            self.ensure_group(name, max_holders, events);
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
mod tests {
    use super::*;

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
            group: group.map(str::to_owned),
            reason: reason.to_owned(),
            now,
            default_max_holders: 1,
        }
    }

    fn resume(group: Option<&str>, now: UnixMillis) -> Command {
        Command::Resume {
            group: group.map(str::to_owned),
            now,
        }
    }

    fn set_max(group: &str, max_holders: u32, now: UnixMillis) -> Command {
        Command::SetMax {
            group: group.to_owned(),
            max_holders,
            now,
            default_max_holders: 1,
        }
    }

    fn force(group: &str, holder: &str, now: UnixMillis) -> Command {
        Command::ForceRelease {
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
        let long_group = "g".repeat(MAX_GROUP_NAME_LEN + 1);
        let long_holder = "h".repeat(MAX_HOLDER_LEN + 1);
        let cases = [
            (
                acquire("", "a", late),
                LeaseError::InvalidGroup(String::new()),
            ),
            (
                acquire("a b", "a", late),
                LeaseError::InvalidGroup("a b".into()),
            ),
            (
                acquire("grüppe", "a", late),
                LeaseError::InvalidGroup("grüppe".into()),
            ),
            (
                acquire(&long_group, "a", late),
                LeaseError::InvalidGroup(long_group.clone()),
            ),
            (
                acquire("g", "", late),
                LeaseError::InvalidHolder(String::new()),
            ),
            (
                acquire("g", "a\nb", late),
                LeaseError::InvalidHolder("a\nb".into()),
            ),
            (
                acquire("g", &long_holder, late),
                LeaseError::InvalidHolder(long_holder.clone()),
            ),
            (acquire_max("g", "c", late, 0), LeaseError::InvalidMax(0)),
            (
                release("g/x", "a", None, late),
                LeaseError::InvalidGroup("g/x".into()),
            ),
            (
                release("g", "\u{7f}", None, late),
                LeaseError::InvalidHolder("\u{7f}".into()),
            ),
            (
                force("g", "", late),
                LeaseError::InvalidHolder(String::new()),
            ),
            (
                pause(Some("g g"), "r", late),
                LeaseError::InvalidGroup("g g".into()),
            ),
            (
                resume(Some(""), late),
                LeaseError::InvalidGroup(String::new()),
            ),
            (set_max("g", 0, late), LeaseError::InvalidMax(0)),
            (
                Command::Pause {
                    group: None,
                    reason: "r".into(),
                    now: late,
                    default_max_holders: 0,
                },
                LeaseError::InvalidMax(0),
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
        assert!(validate_group_name(&"x".repeat(MAX_GROUP_NAME_LEN)).is_ok());
        assert!(validate_group_name(&"x".repeat(MAX_GROUP_NAME_LEN + 1)).is_err());
        assert!(validate_holder("node-1.example.com").is_ok());
        assert!(
            validate_holder(&"é".repeat(MAX_HOLDER_LEN)).is_ok(),
            "counted in chars"
        );
        assert!(validate_holder("tab\there").is_err());
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
            LeaseError::InvalidGroup("a b".into()).to_string(),
            "invalid group name \"a b\": use 1 to 128 of [a-zA-Z0-9._-]"
        );
        assert!(LeaseError::InvalidHolder(String::new())
            .to_string()
            .contains("253"));
        assert!(LeaseError::InvalidMax(0).to_string().contains("at least 1"));
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
        let err: Result<Outcome, LeaseError> = Err(LeaseError::InvalidMax(0));
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
                    group: g.map(|g| GROUPS[g].into()),
                    reason: REASONS[reason].into(),
                    now,
                    default_max_holders: DEFAULT_MAX,
                },
                Op::Resume { g } => Command::Resume {
                    group: g.map(|g| GROUPS[g].into()),
                    now,
                },
                Op::Force { g, h } => Command::ForceRelease {
                    group: GROUPS[g].into(),
                    holder: HOLDERS[h].into(),
                    now,
                },
                Op::SetMax { g, max } => Command::SetMax {
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
                        group: GROUPS[1].into(),
                        holder: "bad\u{0}holder".into(),
                        now,
                    },
                    _ => Command::Pause {
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
}
