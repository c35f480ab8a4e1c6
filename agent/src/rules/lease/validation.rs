//! What a command must be before it reaches the log (`LeaseError`, checks), its time and effect.

use serde::{Deserialize, Serialize};

use super::batch;
use super::{Command, UnixMillis, MAX_HOLDERS_CAP};
use crate::rules::names::{check_group, check_holder, check_machine_id, check_reason, NameError};

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
    #[error("invalid reason: {0}")]
    Reason(NameError),
    /// A batch that is empty, too long, or holds what may not be batched.
    #[error("invalid batch: {0}")]
    Batch(String),
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
                | Command::DropWaiters { .. }
                | Command::ForceRelease { .. }
                | Command::SetMax { .. }
                | Command::Resume { .. }
                | Command::SetSettleTime { .. }
                | Command::Hold { .. }
        ) || matches!(self, Command::Batch { commands } if commands.iter().any(Command::may_free_slot))
    }

    /// The time the leader stamped into the command.
    pub fn now(&self) -> UnixMillis {
        match self {
            Command::Acquire { now, .. }
            | Command::Release { now, .. }
            | Command::Expire { now, .. }
            | Command::DropWaiters { now, .. }
            | Command::Pause { now, .. }
            | Command::Resume { now, .. }
            | Command::ForceRelease { now, .. }
            | Command::SetMax { now, .. }
            | Command::RecordVoter { now, .. }
            | Command::SetSettleTime { now, .. }
            | Command::Hold { now, .. }
            | Command::Unhold { now, .. }
            | Command::RebootNow { now, .. } => *now,
            // Stamped in order: the last is the latest.
            Command::Batch { commands } => commands.last().map_or(0, Command::now),
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
            Command::Expire { .. }
            | Command::SetSettleTime { .. }
            | Command::RecordVoter { .. } => Ok(()),
            Command::Hold { holder, reason, .. } => {
                validate_holder(holder)?;
                check_reason(reason).map_err(LeaseError::Reason)
            }
            Command::Unhold { holder, .. } | Command::RebootNow { holder, .. } => {
                validate_holder(holder)
            }
            Command::DropWaiters { waiters, .. } => waiters.iter().try_for_each(|w| {
                validate_group_name(&w.group)?;
                validate_holder(&w.holder)
            }),
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
            Command::Batch { commands } => batch::validate(commands),
        }
    }
}
