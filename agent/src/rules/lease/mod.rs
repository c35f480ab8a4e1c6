//! The reboot lease rules: a deterministic counting semaphore per group, applied from the log.
//!
//! Everything here is pure: time comes in the commands (stamped by the leader when it
//! proposes them) and fencing tokens come from the raft log index, so every replica that
//! applies the same log ends up with the same state and emits the same events.
//!
//! Waiting costs no entries: a waiter stays queued until it leaves, is granted, or is
//! dropped by a `DropWaiters` entry (the leader proposes one when a waiter's session lapses;
//! sessions live in the leader's memory, see `server::sessions`). Every entry that may free
//! a slot grants it to the head of the queue in the same apply ([`LeaseState::apply`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as stamped into commands by the leader.
pub type UnixMillis = u64;

/// Most holders a group may allow at once (`set-max`, `default_max_holders`).
pub const MAX_HOLDERS_CAP: u32 = 1_000;

/// Most groups the cluster keeps.
pub const MAX_GROUPS: usize = 1_000;

/// How the refusal of a late acquire (one sent before its holder's last
/// release, see [`RecentReleases`]) begins: the host's lease client
/// knows it by this and asks again without naming a release.
pub const LATE_ACQUIRE: &str = "late acquire";

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
    },
    /// Give back a slot and/or leave the queue. Idempotent.
    Release {
        group: String,
        holder: String,
        /// When given, only the grant with this fencing token is released (a
        /// place in the queue stays); without, the queue is left too.
        token: Option<u64>,
        now: UnixMillis,
    },
    /// Take back grants held longer than `hold_timeout_ms` (when set); also the
    /// leader's read barrier (with `None`, it changes nothing).
    Expire {
        now: UnixMillis,
        hold_timeout_ms: Option<u64>,
    },
    /// Drop waiters whose sessions lapsed (the leader saw no keepalive within
    /// the TTL), and take back slots handed to them but not yet claimed.
    DropWaiters {
        waiters: Vec<WaiterRef>,
        now: UnixMillis,
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
    /// Remember that raft voter `voter` has stored log entries (the leader
    /// proposes it once, when it first sees the voter's matched index). Not a
    /// lease change: the state machine keeps the record (`raft::state_machine`),
    /// so that a voter coming back under that id without state, which has
    /// forgotten its vote, is refused even by a leader that has just
    /// restarted and knows no matched index yet (`server::bootstrap`).
    RecordVoter { voter: u64, now: UnixMillis },
    /// Sets the settle time between hosts (`[lease] settle_time`, 0 = off): a slot freed
    /// by a holder that ends a claimed grant is not granted again until this long after.
    /// The leader proposes it when its configuration differs from the state.
    SetSettleTime { settle_ms: u64, now: UnixMillis },
    /// Hold a host (`baton hold`): it may not queue in any group until
    /// `Unhold`; it leaves every queue and an unclaimed slot handed to it goes
    /// back. A grant it has taken stays (the host may be rebooting).
    Hold {
        holder: String,
        reason: String,
        by: String,
        now: UnixMillis,
    },
    /// Lift a hold (`baton unhold`).
    Unhold {
        holder: String,
        by: String,
        now: UnixMillis,
    },
    /// Ask a host to reboot outside its window (`baton reboot-now`), or
    /// withdraw that (`cancel`). Cleared when the host gives back a lease it
    /// took (it rebooted) or is force-released.
    RebootNow {
        holder: String,
        cancel: bool,
        by: String,
        now: UnixMillis,
    },
    /// Several commands proposed at once, in one raft entry (the leader's
    /// group commit, `server::proposals`): applied one after the other at the
    /// entry's index, each on its own (one refused changes nothing of the
    /// others), as if each had its own entry. Neither a batch nor
    /// `RecordVoter` (kept by the raft state machine) goes inside one.
    Batch {
        #[serde(deserialize_with = "batch::decode_batch")]
        commands: Vec<Command>,
    },
}

/// A host an admin holds (`baton hold`): it does not queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHold {
    pub reason: String,
    /// Who held it (the admin's name).
    pub by: String,
    pub at: UnixMillis,
}

/// A reboot an admin asked for (`baton reboot-now`): the host skips its window once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRequest {
    /// Who asked (the admin's name).
    pub by: String,
    pub at: UnixMillis,
}

/// Most hosts held, and most reboot-now requests, the cluster keeps at once.
pub const MAX_HOST_CONTROLS: usize = MAX_QUEUE;

/// A held lease: one slot of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The group the slot belongs to.
    pub group: String,
    /// Who holds it (normally the host name).
    pub holder: String,
    /// Fencing token: the raft log index of the granting command (or one past
    /// the last token, when one command grants several), so strictly increasing.
    pub token: u64,
    /// The holder's machine id, for operators telling reinstalled hosts apart.
    pub machine_id: String,
    /// When the slot was granted; hold timeouts count from here.
    pub granted_at: UnixMillis,
    /// False for a slot handed to the head of the queue on release until the
    /// holder takes it with `Acquire`: until then the slot lives only as long
    /// as the holder's session, so a host that died in the queue cannot sit
    /// on the lease.
    #[serde(default = "claimed_by_default")]
    pub claimed: bool,
}

/// Grants recorded before claiming existed were all taken by their holder.
fn claimed_by_default() -> bool {
    true
}

/// A holder waiting in a group's FIFO queue. It stays until it leaves, is
/// granted, or its session lapses (a `DropWaiters` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// Who is waiting.
    pub holder: String,
    /// The waiter's machine id.
    pub machine_id: String,
    /// When it joined the queue.
    pub since: UnixMillis,
}

/// A waiter named in a `DropWaiters` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WaiterRef {
    pub group: String,
    pub holder: String,
}

impl WaiterRef {
    /// The waiter `holder` in `group`.
    pub fn new(group: impl Into<String>, holder: impl Into<String>) -> Self {
        WaiterRef {
            group: group.into(),
            holder: holder.into(),
        }
    }
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
    pub queue: Queue,
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
        self.queue.index_of(holder)
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
    /// The last fencing token handed out (tokens strictly increase, also
    /// when one entry grants several slots).
    #[serde(default)]
    pub last_token: u64,
    /// Settle time between hosts in milliseconds (0 = off), as `SetSettleTime` set it.
    #[serde(default)]
    pub settle_ms: u64,
    /// Per group, when claimed grants ended while a settle time was set: each such
    /// slot stays closed until `freed_at + settle_ms` (oldest first; settled entries
    /// are dropped by the next apply).
    #[serde(default)]
    pub settling: BTreeMap<String, Vec<UnixMillis>>,
    /// Hosts held by an admin (`Hold`), by holder name.
    #[serde(default)]
    pub held: BTreeMap<String, HostHold>,
    /// Reboots asked for outside the window (`RebootNow`), by holder name.
    #[serde(default)]
    pub reboot_now: BTreeMap<String, RebootRequest>,
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
    /// Applied, but the command itself was refused for what the state holds
    /// (nothing changed).
    Refused(Refusal),
    /// What each command of a `Command::Batch` came to, in its order.
    Batch(Vec<Outcome>),
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
    /// The holder waits in the queue for another machine id: told at once,
    /// not only when the slot comes.
    #[error("{holder} is queued in {group} by machine {queued_by:?}, not {asked_by:?}; two hosts must not share a name")]
    QueuedByOtherMachine {
        group: String,
        holder: String,
        queued_by: String,
        asked_by: String,
    },
    /// The group's queue is at [`MAX_QUEUE`].
    #[error("the queue of {group} is full ({max} waiters)")]
    QueueFull { group: String, max: usize },
    /// The cluster has [`MAX_GROUPS`] groups.
    #[error("cannot create group {group}: the cluster has the most groups it keeps ({max})")]
    TooManyGroups { group: String, max: usize },
    /// An admin holds the host (`baton hold`): it may not queue.
    #[error("{holder} is held by {by}: {reason} (baton unhold {holder} lets it queue again)")]
    Held {
        holder: String,
        reason: String,
        by: String,
    },
    /// The cluster keeps [`MAX_HOST_CONTROLS`] holds or reboot-now requests.
    #[error("cannot {what} {holder}: the cluster keeps at most {max}")]
    TooManyHostControls {
        what: String,
        holder: String,
        max: usize,
    },
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
    /// It was handed over on release, but the holder's session lapsed before
    /// the holder took it.
    SessionLost,
}

/// One observable change, in the group named by [`Event::group`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A slot was granted.
    Granted(Grant),
    /// A holder joined the queue (not emitted when a waiter asks again).
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
    /// A waiter's session lapsed.
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

impl LeaseState {
    /// Applies one command at raft log `index`. Deterministic. On Err, state is unchanged.
    ///
    /// Indexes must increase from call to call: new grants get tokens from them. After the
    /// command itself, every free slot goes to the head of its group's queue (grant on
    /// release), so after any apply no group has both a free slot and a waiter, unless paused.
    /// Every observable change is reported as an event, in the order it happened.
    pub fn apply(
        &mut self,
        index: u64,
        cmd: &Command,
    ) -> Result<(Outcome, Vec<Event>), LeaseError> {
        // Validate first: a rejected command changes nothing at all.
        cmd.validate()?;
        Ok(self.apply_valid(index, cmd))
    }

    /// `apply` of a command that passed `validate` (a batch's commands pass
    /// with the batch).
    fn apply_valid(&mut self, index: u64, cmd: &Command) -> (Outcome, Vec<Event>) {
        let mut events = Vec::new();
        // Before an Acquire, slots whose settle time has passed go to the queue
        // at once, so a newcomer queues behind the waiters that were there
        // first. After any other command `promote` opens and hands them over
        // (with the settle time the command may have just set).
        if matches!(cmd, Command::Acquire { .. }) && self.drop_settled(cmd.now()) {
            self.promote(index, cmd.now(), &mut events);
        }
        let outcome = match cmd {
            Command::Acquire {
                group,
                holder,
                machine_id,
                now,
                default_max_holders,
            } => self.acquire(
                index,
                AcquireRequest {
                    group,
                    holder,
                    machine_id,
                    now: *now,
                    default_max_holders: *default_max_holders,
                },
                &mut events,
            ),
            Command::Release {
                group,
                holder,
                token,
                now,
            } => self.release(group, holder, (*token, *now), &mut events),
            Command::Expire {
                now,
                hold_timeout_ms,
            } => self.expire_holds(*now, *hold_timeout_ms, &mut events),
            Command::DropWaiters { waiters, .. } => self.drop_waiters(waiters, &mut events),
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
            Command::ForceRelease {
                group, holder, now, ..
            } => self.force_release(group, holder, *now, &mut events),
            Command::SetMax {
                group, max_holders, ..
            } => self.set_max(group, *max_holders, &mut events),
            // Kept by the raft state machine; nothing of the lease changes.
            Command::RecordVoter { voter, .. } => Outcome::Done {
                message: format!("voter {voter} recorded as having stored entries"),
            },
            Command::SetSettleTime { settle_ms, .. } => self.set_settle_time(*settle_ms),
            Command::Hold {
                holder,
                reason,
                by,
                now,
            } => self.hold(holder, (reason, by, *now), &mut events),
            Command::Unhold { holder, .. } => self.unhold(holder),
            Command::RebootNow {
                holder,
                cancel,
                by,
                now,
            } => self.reboot_now(holder, *cancel, by, *now),
            // Each command promotes after itself.
            Command::Batch { commands } => return self.apply_batch(index, commands),
        };
        self.promote(index, cmd.now(), &mut events);
        (outcome, events)
    }

    /// The earliest time at which an `Expire` would take back a grant (a
    /// hold timeout); None without one. The leader schedules `Expire` by it.
    pub fn next_expiry(&self, hold_timeout_ms: Option<u64>) -> Option<UnixMillis> {
        let timeout = hold_timeout_ms?;
        self.groups
            .values()
            .flat_map(|g| g.holders.iter())
            .map(|grant| grant.granted_at.saturating_add(timeout))
            .min()
    }

    /// The earliest time at which a settling slot opens again (see
    /// [`Command::SetSettleTime`]); None when nothing settles. The leader
    /// proposes an `Expire` then, whose apply hands the slot to the queue.
    pub fn next_settle_end(&self) -> Option<UnixMillis> {
        if self.settle_ms == 0 {
            return None;
        }
        self.settling
            .values()
            .flat_map(|freed| freed.iter())
            .map(|at| at.saturating_add(self.settle_ms))
            .min()
    }

    /// When the settling slots of `group` open again, earliest first.
    pub fn settling_until(&self, group: &str) -> Vec<UnixMillis> {
        if self.settle_ms == 0 {
            return Vec::new();
        }
        self.settling.get(group).map_or_else(Vec::new, |freed| {
            freed
                .iter()
                .map(|at| at.saturating_add(self.settle_ms))
                .collect()
        })
    }

    /// Everyone whose place lives on a session, as `DropWaiters` names them:
    /// every waiter, and every holder of an unclaimed slot.
    pub fn sessions(&self) -> impl Iterator<Item = WaiterRef> + '_ {
        self.groups.iter().flat_map(|(name, group)| {
            let unclaimed = group.holders.iter().filter(|g| !g.claimed);
            group
                .queue
                .iter()
                .map(|w| &w.holder)
                .chain(unclaimed.map(|g| &g.holder))
                .map(move |holder| WaiterRef {
                    group: name.clone(),
                    holder: holder.clone(),
                })
        })
    }

    /// Whether `holder`'s place in `group` lives on a session (it waits, or
    /// holds an unclaimed slot).
    pub fn has_session(&self, group: &str, holder: &str) -> bool {
        self.groups.get(group).is_some_and(|g| {
            g.queue.contains(holder) || g.grant(holder).is_some_and(|grant| !grant.claimed)
        })
    }

    /// Effective pause reason of a group (its own, else the all-groups one).
    pub fn pause_reason(&self, group: &str) -> Option<&str> {
        self.groups
            .get(group)
            .and_then(|g| g.paused.as_deref())
            .or(self.paused_all.as_deref())
    }

    /// Why a waiter in `group` waits: the pause, or no free slot.
    pub fn queue_reason(&self, group: &str) -> QueueReason {
        self.pause_reason(group)
            .map_or(QueueReason::Full, |reason| {
                QueueReason::Paused(reason.to_owned())
            })
    }

    /// The grant `holder` has in `group`, if any.
    pub fn holder_grant(&self, group: &str, holder: &str) -> Option<&Grant> {
        self.groups.get(group).and_then(|g| g.grant(holder))
    }
}

mod batch;
mod ops;
mod queue;
mod recent_releases;
mod validation;

pub use batch::MAX_BATCH;
pub use queue::Queue;
pub use recent_releases::RecentReleases;
pub use validation::{validate_group_name, validate_holder, validate_max, LeaseError};

use ops::AcquireRequest;

/// A count as the wire carries it (queues are capped far below `u32::MAX`).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
