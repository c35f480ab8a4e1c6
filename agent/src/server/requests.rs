//! What each Lease, Admin and Control request must satisfy, and the lease command it becomes.
//!
//! Pure: no cluster, no clock, no caller. The services run the check first
//! (InvalidArgument otherwise), then the holder check (`auth::permit_holder`),
//! then route; on the leader they build the command here with the leader's
//! clock, and `Cluster::propose` validates it again (`Command::validate`)
//! before it reaches the log. The fuzz targets (`fuzz/`) feed these
//! prost-decoded bytes, so what they test is what the services run.

use baton_proto::v1 as pb;
use tonic::Status;

use crate::rules::lease::{
    validate_group_name, validate_holder, validate_max, Command, UnixMillis, WaiterRef,
};
use crate::rules::limits::MAX_KEEPALIVE_SESSIONS;
use crate::rules::names::{check_holder, check_host_port, check_reason};

/// A request the rules refuse, as the caller sees it.
pub fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn group_and_holder(group: &str, holder: &str) -> Result<(), Status> {
    validate_group_name(group).map_err(invalid)?;
    validate_holder(holder).map_err(invalid)
}

/// An empty group means every group (pause, resume); any other must be valid.
fn optional_group(group: &str) -> Result<Option<String>, Status> {
    if group.is_empty() {
        Ok(None)
    } else {
        validate_group_name(group).map_err(invalid)?;
        Ok(Some(group.to_string()))
    }
}

/// `Lease.Acquire`. The machine id is left to `Command::validate`.
pub fn check_acquire(req: &pb::AcquireRequest) -> Result<(), Status> {
    group_and_holder(&req.group, &req.holder)
}

/// `Lease.Wait`: as Acquire, which it proposes when it has no place.
pub fn check_wait(req: &pb::WaitRequest) -> Result<(), Status> {
    group_and_holder(&req.group, &req.holder)
}

/// What a Wait stream proposes when it has no place: the same as Acquire.
pub fn wait_as_acquire(req: &pb::WaitRequest) -> pb::AcquireRequest {
    pb::AcquireRequest {
        group: req.group.clone(),
        holder: req.holder.clone(),
        machine_id: req.machine_id.clone(),
        released: req.released,
    }
}

/// `Lease.KeepAlive`: at most [`MAX_KEEPALIVE_SESSIONS`] valid sessions, as keys.
pub fn check_keep_alive(req: &pb::KeepAliveRequest) -> Result<Vec<WaiterRef>, Status> {
    let sessions = &req.sessions;
    if sessions.len() > MAX_KEEPALIVE_SESSIONS {
        return Err(invalid(format!(
            "{} sessions in one keepalive; at most {MAX_KEEPALIVE_SESSIONS}",
            sessions.len()
        )));
    }
    sessions
        .iter()
        .map(|session| {
            group_and_holder(&session.group, &session.holder)?;
            Ok(WaiterRef::new(
                session.group.clone(),
                session.holder.clone(),
            ))
        })
        .collect()
}

/// `Lease.Release`.
pub fn check_release(req: &pb::ReleaseRequest) -> Result<(), Status> {
    group_and_holder(&req.group, &req.holder)
}

/// `Lease.Watch`: one group, or all when empty.
pub fn check_watch(req: &pb::WatchRequest) -> Result<(), Status> {
    optional_group(&req.group).map(drop)
}

/// `Admin.Pause`: an optional group and a reason.
pub fn check_pause(req: &pb::PauseRequest) -> Result<(), Status> {
    optional_group(&req.group)?;
    check_reason(&req.reason)
        .map_err(|e| Status::invalid_argument(format!("a pause needs a reason: {e}")))
}

/// `Admin.Resume`: an optional group.
pub fn check_resume(req: &pb::ResumeRequest) -> Result<(), Status> {
    optional_group(&req.group).map(drop)
}

/// `Admin.ForceRelease`.
pub fn check_force_release(req: &pb::ForceReleaseRequest) -> Result<(), Status> {
    group_and_holder(&req.group, &req.holder)
}

/// `Admin.SetMax`.
pub fn check_set_max(req: &pb::SetMaxRequest) -> Result<(), Status> {
    validate_group_name(&req.group).map_err(invalid)?;
    validate_max(req.max_holders).map_err(invalid)
}

/// `Admin.AddVoter`: an id of at least 1, a name and a `host:port`. Whether
/// the id is taken is the service's to check (it reads the membership).
pub fn check_add_voter(req: &pb::AddVoterRequest) -> Result<(), Status> {
    if req.id == 0 {
        return Err(Status::invalid_argument("a voter id must be at least 1"));
    }
    check_holder(&req.name)
        .map_err(|e| Status::invalid_argument(format!("invalid voter name {:?}: {e}", req.name)))?;
    check_host_port(&req.address).map_err(|e| {
        Status::invalid_argument(format!("invalid voter address {:?}: {e}", req.address))
    })
}

/// The command a checked Acquire becomes, stamped by the leader.
pub fn acquire_command(
    req: &pb::AcquireRequest,
    now: UnixMillis,
    default_max_holders: u32,
) -> Command {
    Command::Acquire {
        group: req.group.clone(),
        holder: req.holder.clone(),
        machine_id: req.machine_id.clone(),
        now,
        default_max_holders,
    }
}

/// The command a checked Release becomes.
pub fn release_command(req: &pb::ReleaseRequest, now: UnixMillis) -> Command {
    Command::Release {
        group: req.group.clone(),
        holder: req.holder.clone(),
        token: req.token,
        now,
    }
}

/// The command a checked Pause becomes; `by` is the caller's name.
pub fn pause_command(
    req: &pb::PauseRequest,
    by: &str,
    now: UnixMillis,
    default_max_holders: u32,
) -> Command {
    Command::Pause {
        group: (!req.group.is_empty()).then(|| req.group.clone()),
        reason: req.reason.clone(),
        by: by.to_string(),
        now,
        default_max_holders,
    }
}

/// The command a checked Resume becomes.
pub fn resume_command(req: &pb::ResumeRequest, by: &str, now: UnixMillis) -> Command {
    Command::Resume {
        group: (!req.group.is_empty()).then(|| req.group.clone()),
        by: by.to_string(),
        now,
    }
}

/// The command a checked ForceRelease becomes.
pub fn force_release_command(req: &pb::ForceReleaseRequest, by: &str, now: UnixMillis) -> Command {
    Command::ForceRelease {
        group: req.group.clone(),
        holder: req.holder.clone(),
        by: by.to_string(),
        now,
    }
}

/// `Control.Hold`: a holder and a reason.
pub fn check_hold(req: &pb::HoldRequest) -> Result<(), Status> {
    validate_holder(&req.holder).map_err(invalid)?;
    check_reason(&req.reason)
        .map_err(|e| Status::invalid_argument(format!("a hold needs a reason: {e}")))
}

/// `Control.Unhold`, `Control.RebootNow`, `Control.HostControl`: a holder.
pub fn check_host(holder: &str) -> Result<(), Status> {
    validate_holder(holder).map_err(invalid)
}

/// The command a checked Hold becomes; `by` is the caller's name.
pub fn hold_command(req: &pb::HoldRequest, by: &str, now: UnixMillis) -> Command {
    Command::Hold {
        holder: req.holder.clone(),
        reason: req.reason.clone(),
        by: by.to_string(),
        now,
    }
}

/// The command a checked Unhold becomes.
pub fn unhold_command(req: &pb::UnholdRequest, by: &str, now: UnixMillis) -> Command {
    Command::Unhold {
        holder: req.holder.clone(),
        by: by.to_string(),
        now,
    }
}

/// The command a checked RebootNow becomes.
pub fn reboot_now_command(req: &pb::RebootNowRequest, by: &str, now: UnixMillis) -> Command {
    Command::RebootNow {
        holder: req.holder.clone(),
        cancel: req.cancel,
        by: by.to_string(),
        now,
    }
}

/// The command a checked SetMax becomes.
pub fn set_max_command(
    req: &pb::SetMaxRequest,
    by: &str,
    now: UnixMillis,
    default_max_holders: u32,
) -> Command {
    Command::SetMax {
        group: req.group.clone(),
        max_holders: req.max_holders,
        by: by.to_string(),
        now,
        default_max_holders,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_an_empty_group_means_every_group() {
        let acquire = |group: &str, holder: &str| pb::AcquireRequest {
            group: group.into(),
            holder: holder.into(),
            machine_id: String::new(),
            released: None,
        };
        assert!(check_acquire(&acquire("workers", "node-1")).is_ok());
        for (group, holder) in [("", "node-1"), ("a b", "node-1"), ("g", "localhost")] {
            let status = check_acquire(&acquire(group, holder)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
        let pause = pb::PauseRequest {
            group: String::new(),
            reason: "incident".into(),
        };
        assert!(check_pause(&pause).is_ok());
        assert!(matches!(
            pause_command(&pause, "admin", 5, 1),
            Command::Pause { group: None, .. }
        ));
        let no_reason = pb::PauseRequest {
            group: "g".into(),
            reason: " ".into(),
        };
        assert!(check_pause(&no_reason)
            .unwrap_err()
            .message()
            .contains("needs a reason"));
    }

    #[test]
    fn what_the_services_accept_propose_accepts() {
        let release = pb::ReleaseRequest {
            group: "g".into(),
            holder: "h".into(),
            token: Some(3),
        };
        check_release(&release).unwrap();
        release_command(&release, 1).validate().unwrap();
        let set_max = pb::SetMaxRequest {
            group: "g".into(),
            max_holders: 0,
        };
        assert!(check_set_max(&set_max).is_err());
        let keep_alive = pb::KeepAliveRequest {
            sessions: vec![
                pb::SessionRef {
                    group: "g".into(),
                    holder: "h".into(),
                };
                MAX_KEEPALIVE_SESSIONS + 1
            ],
        };
        assert!(check_keep_alive(&keep_alive).is_err());
        let voter = |id, address: &str| pb::AddVoterRequest {
            id,
            name: "cp-4".into(),
            address: address.into(),
        };
        assert!(check_add_voter(&voter(4, "10.0.0.4:7421")).is_ok());
        assert!(check_add_voter(&voter(0, "10.0.0.4:7421")).is_err());
        assert!(check_add_voter(&voter(4, "10.0.0.4")).is_err());
    }

    #[test]
    fn host_control_requests_are_checked_and_record_the_caller() {
        let hold = pb::HoldRequest {
            holder: "h1".into(),
            reason: "disk swap".into(),
        };
        check_hold(&hold).unwrap();
        let command = hold_command(&hold, "ops", 9);
        command.validate().unwrap();
        assert!(matches!(&command, Command::Hold { by, now: 9, .. } if by == "ops"));
        let no_reason = pb::HoldRequest {
            holder: "h1".into(),
            reason: String::new(),
        };
        assert!(check_hold(&no_reason)
            .unwrap_err()
            .message()
            .contains("a hold needs a reason"));
        assert!(check_hold(&pb::HoldRequest {
            holder: "two words".into(),
            reason: "r".into(),
        })
        .is_err());
        assert!(check_host("").is_err());
        let reboot = pb::RebootNowRequest {
            holder: "h1".into(),
            cancel: true,
        };
        check_host(&reboot.holder).unwrap();
        assert!(matches!(
            reboot_now_command(&reboot, "ops", 1),
            Command::RebootNow { cancel: true, .. }
        ));
        let unhold = pb::UnholdRequest {
            holder: "h1".into(),
        };
        unhold_command(&unhold, "ops", 2).validate().unwrap();
    }
}
