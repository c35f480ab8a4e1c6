//! Conversions between the lease rules' types and the public protobuf messages.

use baton_proto::v1 as pb;

use crate::rules::lease::{
    EventKind, Grant, Group, HostHold, LeaseState, QueueReason, RebootRequest, Refusal,
    ReleaseCause,
};

/// A grant as sent on the wire.
pub fn grant(grant: &Grant) -> pb::Grant {
    pb::Grant {
        group: grant.group.clone(),
        holder: grant.holder.clone(),
        token: grant.token,
        machine_id: grant.machine_id.clone(),
        granted_at_ms: grant.granted_at,
        claimed: grant.claimed,
    }
}

/// A refused command as the caller sees it: a cap is ResourceExhausted, a
/// name two machines share is FailedPrecondition.
pub fn refusal_status(refusal: &Refusal) -> tonic::Status {
    match refusal {
        Refusal::QueueFull { .. }
        | Refusal::TooManyGroups { .. }
        | Refusal::TooManyHostControls { .. } => {
            tonic::Status::resource_exhausted(refusal.to_string())
        }
        Refusal::OtherMachine { .. }
        | Refusal::QueuedByOtherMachine { .. }
        | Refusal::Held { .. } => tonic::Status::failed_precondition(refusal.to_string()),
    }
}

/// Why a caller was queued, in the words status and the CLI show.
pub fn queue_reason(reason: &QueueReason) -> String {
    match reason {
        QueueReason::Full => "full".to_string(),
        QueueReason::Paused(why) => format!("paused: {why}"),
    }
}

/// One group's status; its pause shows the all-groups pause when it has none of its own.
pub fn group_status(lease: &LeaseState, name: &str, group: &Group) -> pb::GroupStatus {
    pb::GroupStatus {
        name: name.to_string(),
        max_holders: group.max_holders,
        paused: lease.pause_reason(name).map(str::to_string),
        paused_by: group.paused_by.clone(),
        paused_at_ms: group.paused_at,
        settling_until_ms: lease.settling_until(name),
        holders: group
            .holders
            .iter()
            .map(|g| pb::Holder {
                holder: g.holder.clone(),
                token: g.token,
                machine_id: g.machine_id.clone(),
                since_ms: g.granted_at,
                claimed: g.claimed,
            })
            .collect(),
        queue: group
            .queue
            .iter()
            .enumerate()
            .map(|(i, w)| pb::Waiter {
                holder: w.holder.clone(),
                position: i as u32 + 1,
                since_ms: w.since,
                expires_ms: 0,
            })
            .collect(),
    }
}

/// The status of `name` in `lease`, or an empty group of `default_max` if
/// it does not exist (yet, or any more).
pub fn group_status_or_empty(lease: &LeaseState, name: &str, default_max: u32) -> pb::GroupStatus {
    match lease.groups.get(name) {
        Some(group) => group_status(lease, name, group),
        None => pb::GroupStatus {
            name: name.to_string(),
            max_holders: default_max,
            paused: lease.pause_reason(name).map(str::to_string),
            paused_by: None,
            paused_at_ms: None,
            settling_until_ms: lease.settling_until(name),
            holders: Vec::new(),
            queue: Vec::new(),
        },
    }
}

/// The protobuf form of one applied lease event.
pub fn event_kind(kind: &EventKind) -> pb::watch_event::Kind {
    use pb::watch_event::Kind;
    match kind {
        EventKind::Granted(g) => Kind::Granted(grant(g)),
        EventKind::Queued {
            holder,
            position,
            waiters,
        } => Kind::Queued(pb::Queued {
            position: *position,
            waiters: *waiters,
            reason: String::new(),
            waiter_ttl_ms: 0,
            holder: holder.clone(),
        }),
        EventKind::Released {
            holder,
            token,
            cause,
        } => Kind::Released(pb::Released {
            holder: holder.clone(),
            token: *token,
            cause: match cause {
                ReleaseCause::Released => "released",
                ReleaseCause::Forced => "forced",
                ReleaseCause::HoldTimeout => "hold-timeout",
                ReleaseCause::SessionLost => "session-lost",
            }
            .to_string(),
        }),
        EventKind::LeftQueue { holder } => Kind::LeftQueue(holder.clone()),
        EventKind::WaiterDropped { holder } => Kind::WaiterDropped(holder.clone()),
        EventKind::Paused { reason } => Kind::Paused(reason.clone()),
        EventKind::Resumed => Kind::Resumed(true),
        EventKind::PausedAll { reason } => Kind::PausedAll(reason.clone()),
        EventKind::ResumedAll => Kind::ResumedAll(true),
        EventKind::MaxChanged { max_holders } => Kind::MaxChanged(*max_holders),
    }
}

/// One hold, as the Control service and status send it.
pub fn hold_entry(holder: &str, hold: &HostHold) -> pb::HostHold {
    pb::HostHold {
        holder: holder.to_string(),
        reason: hold.reason.clone(),
        by: hold.by.clone(),
        at_ms: hold.at,
    }
}

/// One reboot-now request, as the Control service and status send it.
pub fn reboot_entry(holder: &str, request: &RebootRequest) -> pb::RebootNowEntry {
    pb::RebootNowEntry {
        holder: holder.to_string(),
        by: request.by.clone(),
        at_ms: request.at,
    }
}

/// The holds in `lease`, as status lists them.
pub fn held_hosts(lease: &LeaseState) -> Vec<pb::HostHold> {
    lease
        .held
        .iter()
        .map(|(h, hold)| hold_entry(h, hold))
        .collect()
}

/// The reboot-now requests in `lease`, as status lists them.
pub fn reboot_requests(lease: &LeaseState) -> Vec<pb::RebootNowEntry> {
    lease
        .reboot_now
        .iter()
        .map(|(h, request)| reboot_entry(h, request))
        .collect()
}
