//! The host agent's state machine: its phases and the only transitions between them. Pure.
//!
//! From "update pending" to "rebooted, checked, released".
//!
//! The agent (`host_agent`) does the I/O of each phase and reports what
//! happened as an [`Event`]; [`next`] decides the next phase. The phase is
//! persisted after every transition, so the agent resumes where it was
//! after a crash or after the reboot it caused ([`resume`]).

use serde::{Deserialize, Serialize};

/// An OS update that waits for a reboot, as an update source reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// "flatcar", "apt" or "sentinel".
    pub source: String,
    /// In words, e.g. "packages: linux-image-6.1.0-28-amd64, libc6".
    pub reason: String,
    /// The version that the reboot activates, where the source knows it.
    pub new_version: Option<String>,
}

impl PendingUpdate {
    /// Whether `other` is the same update: the same source and, where the
    /// source names a version (update_engine), the same version; otherwise
    /// the same reason (apt's package list; a sentinel's file or command,
    /// which names no version and so is always the same update).
    pub fn is_same_update(&self, other: &PendingUpdate) -> bool {
        self.source == other.source
            && match (&self.new_version, &other.new_version) {
                (Some(a), Some(b)) => a == b,
                (None, None) => self.reason == other.reason,
                _ => false,
            }
    }
}

/// An update that did not take: after its reboot the check found it not
/// active (the old version booted, or the updater still wants a reboot).
/// Kept on disk so that the host does not reboot for that update again; a
/// different update goes ahead, and an operator may remove the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUpdate {
    /// The update, as the source reported it before the reboot.
    pub update: PendingUpdate,
    /// What the check after the reboot found, in words.
    pub error: String,
    /// When the check failed (RFC 3339, stamped by the agent).
    pub failed_at: String,
    /// The boot in which it failed.
    pub boot_id: String,
}

impl FailedUpdate {
    /// Whether this record stops the host from rebooting for `pending`.
    pub fn blocks(&self, pending: &PendingUpdate) -> bool {
        self.update.is_same_update(pending)
    }
}

/// What the Kubernetes drain did, kept across the reboot so that the node
/// is uncordoned after boot only if we cordoned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRecord {
    pub node: String,
    pub we_cordoned: bool,
    pub evicted: Vec<String>,
}

/// A grant as remembered on disk. Not proof of holding: after a restart the
/// agent re-checks it with the cluster before draining or rebooting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedLease {
    pub group: String,
    pub holder: String,
    pub token: u64,
}

/// Where the host is on its way through an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// No update pending.
    Idle,
    /// An update waits for a reboot; window and blockers not yet passed.
    RebootNeeded { update: PendingUpdate },
    /// In the queue for the lease.
    WaitingForLease { update: PendingUpdate },
    /// Holding the lease: running before-reboot hooks, draining the node.
    Draining {
        update: PendingUpdate,
        lease: RememberedLease,
    },
    /// Drained; the reboot was (or is about to be) asked for. `boot_id` is
    /// the boot we are leaving: a different one at start means we rebooted.
    Rebooting {
        update: PendingUpdate,
        lease: RememberedLease,
        drain: Option<DrainRecord>,
        boot_id: String,
    },
    /// Back from the reboot: checking the update is active and the host healthy.
    PostReboot {
        update: PendingUpdate,
        lease: RememberedLease,
        drain: Option<DrainRecord>,
    },
    /// Checks passed: undoing the drain (after-reboot hooks ran; uncordon).
    Undraining {
        lease: RememberedLease,
        drain: Option<DrainRecord>,
    },
    /// Giving the lease back.
    Releasing { lease: RememberedLease },
}

/// What happened while the agent worked on a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The update source reports an update waiting for a reboot.
    UpdatePending(PendingUpdate),
    /// The update source no longer reports one (e.g. it was withdrawn).
    UpdateGone,
    /// Inside a window, all blockers passed: may queue.
    ClearedToQueue,
    /// The window closed before a grant (leave the queue).
    WindowClosed,
    /// The cluster granted the lease.
    Granted(RememberedLease),
    /// Granted, but a blocker re-checked before the drain says not now (the
    /// host may have waited hours in the queue): give the lease back
    /// without draining, and queue again later.
    BlockedAfterGrant { reason: String },
    /// Drained (hooks ran, node cordoned and evicted).
    Drained {
        drain: Option<DrainRecord>,
        boot_id: String,
    },
    /// A before-reboot hook or the drain failed; undo and give the lease back.
    DrainFailed { drain: Option<DrainRecord> },
    /// Just before the reboot call, the cluster said we no longer hold the
    /// lease (or hold it under another token): undo the drain, start over.
    LeaseLost,
    /// Post-reboot checks passed.
    Checked,
    /// The node is undrained.
    Undrained,
    /// The lease is given back.
    Released,
}

/// A transition the state machine does not allow: a bug in the agent, or
/// an event that came too late (e.g. after a restart).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no transition from {phase} on {event}")]
pub struct InvalidTransition {
    pub phase: &'static str,
    pub event: String,
}

/// Every `Phase::name`, in the order a roll goes through them (metrics
/// give each a 0 or 1).
pub const PHASE_NAMES: [&str; 8] = [
    "idle",
    "reboot-needed",
    "waiting-for-lease",
    "draining",
    "rebooting",
    "post-reboot",
    "undraining",
    "releasing",
];

impl Phase {
    /// The phase's name as logged (`BATON_PHASE`) and persisted.
    pub fn name(&self) -> &'static str {
        // Keep PHASE_NAMES in step (a test walks every phase against it).
        match self {
            Phase::Idle => "idle",
            Phase::RebootNeeded { .. } => "reboot-needed",
            Phase::WaitingForLease { .. } => "waiting-for-lease",
            Phase::Draining { .. } => "draining",
            Phase::Rebooting { .. } => "rebooting",
            Phase::PostReboot { .. } => "post-reboot",
            Phase::Undraining { .. } => "undraining",
            Phase::Releasing { .. } => "releasing",
        }
    }

    /// The update waiting for its reboot, in the phases before the reboot.
    pub fn pending_update(&self) -> Option<&PendingUpdate> {
        match self {
            Phase::RebootNeeded { update }
            | Phase::WaitingForLease { update }
            | Phase::Draining { update, .. }
            | Phase::Rebooting { update, .. } => Some(update),
            Phase::Idle
            | Phase::PostReboot { .. }
            | Phase::Undraining { .. }
            | Phase::Releasing { .. } => None,
        }
    }

    /// The lease this phase holds (as remembered), if any.
    pub fn lease(&self) -> Option<&RememberedLease> {
        match self {
            Phase::Draining { lease, .. }
            | Phase::Rebooting { lease, .. }
            | Phase::PostReboot { lease, .. }
            | Phase::Undraining { lease, .. }
            | Phase::Releasing { lease } => Some(lease),
            Phase::Idle | Phase::RebootNeeded { .. } | Phase::WaitingForLease { .. } => None,
        }
    }

    /// The phase in plain words, for `systemctl status` (STATUS=).
    pub fn describe(&self) -> String {
        let holding = |lease: &RememberedLease, what: &str| {
            format!(
                "holding reboot lease (group {}, token {}): {what}",
                lease.group, lease.token
            )
        };
        match self {
            Phase::Idle => "idle: no update pending".to_string(),
            Phase::RebootNeeded { update } => format!("reboot needed: {}", update.reason),
            Phase::WaitingForLease { .. } => "waiting for lease".to_string(),
            Phase::Draining { lease, .. } => holding(lease, "draining"),
            Phase::Rebooting { lease, .. } => holding(lease, "rebooting"),
            Phase::PostReboot { lease, .. } => holding(lease, "checking after reboot"),
            Phase::Undraining { lease, .. } => holding(lease, "undraining"),
            Phase::Releasing { lease } => holding(lease, "releasing"),
        }
    }
}

fn event_name(event: &Event) -> String {
    match event {
        Event::UpdatePending(_) => "update-pending".into(),
        Event::UpdateGone => "update-gone".into(),
        Event::ClearedToQueue => "cleared-to-queue".into(),
        Event::WindowClosed => "window-closed".into(),
        Event::Granted(l) => format!("granted(token {})", l.token),
        Event::BlockedAfterGrant { .. } => "blocked-after-grant".into(),
        Event::Drained { .. } => "drained".into(),
        Event::DrainFailed { .. } => "drain-failed".into(),
        Event::LeaseLost => "lease-lost".into(),
        Event::Checked => "checked".into(),
        Event::Undrained => "undrained".into(),
        Event::Released => "released".into(),
    }
}

/// The next phase after `event` in `phase`.
pub fn next(phase: &Phase, event: Event) -> Result<Phase, InvalidTransition> {
    use Event as E;
    use Phase as P;
    let next = match (phase, event) {
        (P::Idle, E::UpdatePending(update)) => P::RebootNeeded { update },
        (P::RebootNeeded { .. }, E::UpdatePending(update)) => P::RebootNeeded { update },
        (P::RebootNeeded { .. } | P::WaitingForLease { .. }, E::UpdateGone) => P::Idle,
        (P::RebootNeeded { update }, E::ClearedToQueue) => P::WaitingForLease {
            update: update.clone(),
        },
        (P::WaitingForLease { update }, E::WindowClosed) => P::RebootNeeded {
            update: update.clone(),
        },
        (P::WaitingForLease { update }, E::Granted(lease)) => P::Draining {
            update: update.clone(),
            lease,
        },
        // Nothing drained yet: straight to giving the lease back; the
        // update is still pending, so the agent comes back through Idle
        // (after its back-off) and queues again.
        (P::Draining { lease, .. }, E::BlockedAfterGrant { .. }) => P::Releasing {
            lease: lease.clone(),
        },
        (P::Draining { update, lease }, E::Drained { drain, boot_id }) => P::Rebooting {
            update: update.clone(),
            lease: lease.clone(),
            drain,
            boot_id,
        },
        // A failed drain, or a lease lost before the reboot call: undo what
        // was done and give the lease back (Undraining -> Releasing); the
        // update is still pending, so the agent comes back through Idle.
        (P::Draining { lease, .. }, E::DrainFailed { drain })
        | (
            P::Rebooting {
                lease, drain: _, ..
            },
            E::DrainFailed { drain },
        ) => P::Undraining {
            lease: lease.clone(),
            drain,
        },
        (P::Draining { lease, .. }, E::LeaseLost) => P::Undraining {
            lease: lease.clone(),
            drain: None,
        },
        (P::Rebooting { lease, drain, .. }, E::LeaseLost) => P::Undraining {
            lease: lease.clone(),
            drain: drain.clone(),
        },
        (P::PostReboot { lease, drain, .. }, E::Checked) => P::Undraining {
            lease: lease.clone(),
            drain: drain.clone(),
        },
        (P::Undraining { lease, .. }, E::Undrained) => P::Releasing {
            lease: lease.clone(),
        },
        (P::Releasing { .. }, E::Released) => P::Idle,
        (phase, event) => {
            return Err(InvalidTransition {
                phase: phase.name(),
                event: event_name(&event),
            })
        }
    };
    Ok(next)
}

/// The phase to continue from after the agent (re)starts with `persisted`
/// on disk, given the current boot id.
///
/// - `rebooting` with another boot id: we rebooted; check ourselves.
/// - `rebooting` with the same boot id: the reboot did not happen (crash
///   around the call); stay, the agent re-verifies the lease and calls again.
/// - `draining`: the drain was interrupted; the agent re-verifies the lease
///   and either drains again (still pending, still holding) or undoes it.
/// - everything else continues as it was.
pub fn resume(persisted: Phase, boot_id: &str) -> Phase {
    match persisted {
        Phase::Rebooting {
            update,
            lease,
            drain,
            boot_id: before,
        } if before != boot_id => Phase::PostReboot {
            update,
            lease,
            drain,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> PendingUpdate {
        PendingUpdate {
            source: "sentinel".into(),
            reason: "sentinel file exists".into(),
            new_version: None,
        }
    }

    fn lease() -> RememberedLease {
        RememberedLease {
            group: "workers".into(),
            holder: "h1".into(),
            token: 7,
        }
    }

    /// The whole happy path, in order, through every phase.
    #[test]
    fn a_full_roll_visits_every_phase_in_order() {
        let mut phase = Phase::Idle;
        let mut names = vec![phase.name()];
        let steps = vec![
            Event::UpdatePending(update()),
            Event::ClearedToQueue,
            Event::Granted(lease()),
            Event::Drained {
                drain: None,
                boot_id: "boot-a".into(),
            },
        ];
        for event in steps {
            phase = next(&phase, event).unwrap();
            names.push(phase.name());
        }
        phase = resume(phase, "boot-b");
        names.push(phase.name());
        for event in [Event::Checked, Event::Undrained, Event::Released] {
            phase = next(&phase, event).unwrap();
            names.push(phase.name());
        }
        assert_eq!(
            names,
            [
                "idle",
                "reboot-needed",
                "waiting-for-lease",
                "draining",
                "rebooting",
                "post-reboot",
                "undraining",
                "releasing",
                "idle"
            ]
        );
        assert_eq!(names[..PHASE_NAMES.len()], PHASE_NAMES);
    }

    #[test]
    fn resume_after_reboot_only_when_the_boot_id_changed() {
        let rebooting = Phase::Rebooting {
            update: update(),
            lease: lease(),
            drain: None,
            boot_id: "boot-a".into(),
        };
        assert_eq!(resume(rebooting.clone(), "boot-a"), rebooting);
        assert_eq!(resume(rebooting, "boot-b").name(), "post-reboot");
        let draining = Phase::Draining {
            update: update(),
            lease: lease(),
        };
        assert_eq!(resume(draining.clone(), "boot-b"), draining);
    }

    #[test]
    fn a_lost_lease_before_the_reboot_undoes_the_drain_and_keeps_the_record() {
        let drain = DrainRecord {
            node: "n1".into(),
            we_cordoned: true,
            evicted: vec!["default/web-1".into()],
        };
        let rebooting = Phase::Rebooting {
            update: update(),
            lease: lease(),
            drain: Some(drain.clone()),
            boot_id: "boot-a".into(),
        };
        let phase = next(&rebooting, Event::LeaseLost).unwrap();
        assert_eq!(
            phase,
            Phase::Undraining {
                lease: lease(),
                drain: Some(drain)
            }
        );
    }

    #[test]
    fn a_failed_drain_goes_to_undraining() {
        let draining = Phase::Draining {
            update: update(),
            lease: lease(),
        };
        let phase = next(&draining, Event::DrainFailed { drain: None }).unwrap();
        assert_eq!(phase.name(), "undraining");
    }

    #[test]
    fn a_blocker_after_the_grant_gives_the_lease_back_without_draining() {
        let draining = Phase::Draining {
            update: update(),
            lease: lease(),
        };
        let blocked = Event::BlockedAfterGrant {
            reason: "alert NodeDown firing".into(),
        };
        let phase = next(&draining, blocked.clone()).unwrap();
        assert_eq!(phase, Phase::Releasing { lease: lease() });
        // Only from draining: before a grant there is nothing to give back,
        // and once drained the way back is undraining.
        for other in [
            Phase::Idle,
            Phase::RebootNeeded { update: update() },
            Phase::WaitingForLease { update: update() },
            Phase::Rebooting {
                update: update(),
                lease: lease(),
                drain: None,
                boot_id: "b".into(),
            },
            Phase::Undraining {
                lease: lease(),
                drain: None,
            },
        ] {
            assert!(next(&other, blocked.clone()).is_err(), "{}", other.name());
        }
    }

    #[test]
    fn leaving_the_queue_when_the_window_closes() {
        let waiting = Phase::WaitingForLease { update: update() };
        assert_eq!(
            next(&waiting, Event::WindowClosed).unwrap(),
            Phase::RebootNeeded { update: update() }
        );
    }

    #[test]
    fn transitions_that_make_no_sense_are_refused() {
        let idle = Phase::Idle;
        assert!(next(&idle, Event::Granted(lease())).is_err());
        assert!(next(&idle, Event::Released).is_err());
        let waiting = Phase::WaitingForLease { update: update() };
        assert!(next(
            &waiting,
            Event::Drained {
                drain: None,
                boot_id: "x".into()
            }
        )
        .is_err());
        // No way to reach rebooting without a grant and a drain.
        for event in [Event::ClearedToQueue, Event::UpdatePending(update())] {
            let phase = next(&Phase::Idle, event).unwrap_or(Phase::Idle);
            assert_ne!(phase.name(), "rebooting");
        }
    }

    #[test]
    fn only_holding_phases_carry_a_lease() {
        assert!(Phase::Idle.lease().is_none());
        assert!(Phase::WaitingForLease { update: update() }
            .lease()
            .is_none());
        assert_eq!(Phase::Releasing { lease: lease() }.lease(), Some(&lease()));
    }

    #[test]
    fn status_text_says_what_is_going_on() {
        let phase = Phase::Draining {
            update: update(),
            lease: RememberedLease {
                group: "workers".into(),
                holder: "h1".into(),
                token: 412,
            },
        };
        assert_eq!(
            phase.describe(),
            "holding reboot lease (group workers, token 412): draining"
        );
        assert_eq!(Phase::Idle.describe(), "idle: no update pending");
    }

    fn flatcar(version: Option<&str>) -> PendingUpdate {
        PendingUpdate {
            source: "flatcar".into(),
            reason: match version {
                Some(v) => format!("update_engine: Flatcar {v} downloaded"),
                None => "update_engine: an update is downloaded and needs a reboot".into(),
            },
            new_version: version.map(str::to_string),
        }
    }

    fn failed(update: PendingUpdate) -> FailedUpdate {
        FailedUpdate {
            update,
            error: "the update did not take".into(),
            failed_at: "2025-01-01T00:00:00Z".into(),
            boot_id: "boot-b".into(),
        }
    }

    #[test]
    fn a_failed_update_blocks_only_the_same_update() {
        let record = failed(flatcar(Some("4152.2.1")));
        assert!(record.blocks(&flatcar(Some("4152.2.1"))));
        assert!(
            !record.blocks(&flatcar(Some("4152.2.2"))),
            "a newer version"
        );
        assert!(
            !record.blocks(&flatcar(None)),
            "a version unknown is not the same"
        );
        // Another source never matches, even with the same words.
        let mut apt = flatcar(Some("4152.2.1"));
        apt.source = "apt".into();
        assert!(!record.blocks(&apt));
        // Without versions the reason tells: apt's package list.
        let packages = |list: &str| PendingUpdate {
            source: "apt".into(),
            reason: format!("packages: {list}"),
            new_version: None,
        };
        let record = failed(packages("linux-image-6.1.0-28-amd64"));
        assert!(record.blocks(&packages("linux-image-6.1.0-28-amd64")));
        assert!(!record.blocks(&packages("linux-image-6.1.0-29-amd64")));
        // A sentinel names no version: the same file is the same update.
        assert!(failed(update()).blocks(&update()));
    }

    #[test]
    fn a_failed_update_round_trips_through_json() {
        let record = failed(flatcar(Some("4152.2.1")));
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<FailedUpdate>(&text).unwrap(), record);
    }

    #[test]
    fn phases_round_trip_through_json() {
        let phase = Phase::Rebooting {
            update: update(),
            lease: lease(),
            drain: None,
            boot_id: "b".into(),
        };
        let text = serde_json::to_string(&phase).unwrap();
        assert!(text.contains("\"phase\":\"rebooting\""), "{text}");
        assert_eq!(serde_json::from_str::<Phase>(&text).unwrap(), phase);
    }
}
