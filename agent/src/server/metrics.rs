//! A voter's metrics: lease state per group, lease changes counted as applied, and raft's state.
//!
//! Gauges are read at each scrape from this voter's applied state
//! (`cluster.view`) and `raft.metrics()`; the counters count the applied
//! changes this voter publishes, from its own subscription (like
//! `session_loops::dispatch_changes`), so followers count them too. They
//! start at zero when the process starts; a watcher that falls more than
//! the change buffer behind (a resync) misses those changes.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use crate::raft::state_machine::Change;
use crate::rules::lease::{EventKind, LeaseState, ReleaseCause};
use crate::server::call_latency::CallLatency;
use crate::server::routing::{Cluster, REACHABLE_WITHIN};
use crate::transport::metrics::Source;

/// The label of per-group metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: String,
}

/// Lease changes applied on this voter since it started.
#[derive(Clone, Default)]
struct Counters {
    grants: Family<GroupLabel, Counter>,
    releases: Family<GroupLabel, Counter>,
    expiries: Family<GroupLabel, Counter>,
}

impl Counters {
    fn count(&self, change: &Change) {
        let Change::Applied { event, .. } = change else {
            return;
        };
        let label = GroupLabel {
            group: event.group.clone(),
        };
        match &event.kind {
            EventKind::Granted(_) => {
                self.grants.get_or_create(&label).inc();
            }
            EventKind::Released { cause, .. } => match cause {
                ReleaseCause::Released | ReleaseCause::Forced => {
                    self.releases.get_or_create(&label).inc();
                }
                ReleaseCause::HoldTimeout | ReleaseCause::SessionLost => {
                    self.expiries.get_or_create(&label).inc();
                }
            },
            _ => {}
        }
    }
}

/// A voter's metrics: the [`Source`] for the endpoint, and the task that
/// counts applied changes (aborted when this is dropped).
pub struct VoterMetrics {
    source: Source,
    counting: tokio::task::JoinHandle<()>,
}

impl VoterMetrics {
    /// Starts counting the changes `cluster` applies from now on; shows
    /// the call durations in `latency`.
    pub fn start(cluster: Cluster, latency: CallLatency) -> VoterMetrics {
        let counters = Counters::default();
        let mut changes = cluster.view.subscribe();
        let counting = {
            let counters = counters.clone();
            tokio::spawn(async move {
                loop {
                    match changes.recv().await {
                        Ok(change) => counters.count(&change),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        let source: Source = Arc::new(move |registry: &mut Registry| {
            register(registry, &cluster, &counters);
            registry.register(
                "baton_grpc_call_duration_seconds",
                "How long Lease, Admin, Fleet and Control calls took on this voter, to the response (streams: to their opening)",
                latency.family(),
            );
        });
        VoterMetrics { source, counting }
    }

    pub fn source(&self) -> Source {
        self.source.clone()
    }
}

impl Drop for VoterMetrics {
    fn drop(&mut self) {
        self.counting.abort();
    }
}

fn now_secs() -> f64 {
    crate::clock::since_unix_epoch().map_or(0.0, |d| d.as_secs_f64())
}

fn register(registry: &mut Registry, cluster: &Cluster, counters: &Counters) {
    {
        let state = cluster.view.read();
        register_lease(registry, &state.lease, now_secs());
    }
    registry.register(
        "baton_lease_grants",
        "Slots granted, as applied on this voter since it started",
        counters.grants.clone(),
    );
    registry.register(
        "baton_lease_releases",
        "Grants ended by their holder or an operator (force-release), as applied on this voter since it started",
        counters.releases.clone(),
    );
    registry.register(
        "baton_lease_expiries",
        "Grants ended by the hold timeout or a lapsed session (unclaimed hand-over), as applied on this voter since it started",
        counters.expiries.clone(),
    );
    register_raft(registry, cluster);
}

/// The per-group gauges of the applied lease state at `now` (unix seconds).
fn register_lease(registry: &mut Registry, lease: &LeaseState, now: f64) {
    let holders = Family::<GroupLabel, Gauge>::default();
    let queue = Family::<GroupLabel, Gauge>::default();
    let max = Family::<GroupLabel, Gauge>::default();
    let paused = Family::<GroupLabel, Gauge>::default();
    let oldest = Family::<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (name, group) in &lease.groups {
        let label = GroupLabel {
            group: name.clone(),
        };
        holders
            .get_or_create(&label)
            .set(i64::try_from(group.holders.len()).unwrap_or(i64::MAX));
        queue
            .get_or_create(&label)
            .set(i64::try_from(group.queue.len()).unwrap_or(i64::MAX));
        max.get_or_create(&label).set(i64::from(group.max_holders));
        paused
            .get_or_create(&label)
            .set(i64::from(lease.pause_reason(name).is_some()));
        let held_since = group.holders.iter().map(|g| g.granted_at).min();
        let held = held_since.map_or(0.0, |at| (now - at as f64 / 1000.0).max(0.0));
        oldest.get_or_create(&label).set(held);
    }
    registry.register("baton_lease_holders", "Slots held now", holders);
    registry.register(
        "baton_lease_queue_length",
        "Hosts waiting in the queue",
        queue,
    );
    registry.register("baton_lease_max_holders", "Slots the group has", max);
    registry.register(
        "baton_lease_paused",
        "1 when the group is paused (on its own or with all groups)",
        paused,
    );
    registry.register(
        "baton_lease_oldest_hold_seconds",
        "How long the longest-held slot has been held (0 when none is held)",
        oldest,
    );
    register_host_control(registry, lease);
}

/// The per-host orders of the applied state (the Control service's).
fn register_host_control(registry: &mut Registry, lease: &LeaseState) {
    registry.register(
        "baton_control_held_hosts",
        "Hosts held by an admin (baton hold): they do not queue until unheld",
        gauge(lease.held.len() as u64),
    );
    registry.register(
        "baton_control_reboot_now_pending",
        "Hosts asked to reboot outside their window (baton reboot-now) that have not rebooted yet",
        gauge(lease.reboot_now.len() as u64),
    );
}

fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

/// Raft's state as this voter sees it.
fn register_raft(registry: &mut Registry, cluster: &Cluster) {
    let metrics = cluster.raft.metrics().borrow().clone();
    let leading = metrics.current_leader == Some(cluster.id);
    let membership = metrics.membership_config.membership();
    let voters: Vec<_> = membership.voter_ids().collect();
    // As `baton status` shows it: the leader knows who answered lately; a
    // follower knows itself and whether it hears a leader.
    let reachable = voters
        .iter()
        .filter(|id| {
            **id == cluster.id
                || if leading {
                    cluster.health.answered_within(**id, REACHABLE_WITHIN)
                } else {
                    metrics.current_leader == Some(**id)
                }
        })
        .count();
    registry.register(
        "baton_raft_is_leader",
        "1 when this voter is the raft leader",
        gauge(u64::from(leading)),
    );
    registry.register(
        "baton_raft_has_leader",
        "1 when this voter knows a leader",
        gauge(u64::from(metrics.current_leader.is_some())),
    );
    registry.register(
        "baton_raft_term",
        "The raft term this voter is in",
        gauge(metrics.current_term),
    );
    registry.register(
        "baton_raft_last_log_index",
        "The last index in this voter's raft log",
        gauge(metrics.last_log_index.unwrap_or(0)),
    );
    registry.register(
        "baton_raft_applied_index",
        "The last raft index this voter applied",
        gauge(metrics.last_applied.map_or(0, |id| id.index)),
    );
    registry.register(
        "baton_raft_voters",
        "Voters in the raft membership",
        gauge(voters.len() as u64),
    );
    registry.register(
        "baton_raft_peers_reachable",
        "Voters reachable as this voter sees it, itself included: on the leader, those that answered in the last 2 s; on a follower, itself and its leader",
        gauge(reachable as u64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lease::{Grant, Group, HostHold, RebootRequest, Waiter};

    fn text(lease: &LeaseState, now: f64) -> String {
        let mut registry = Registry::default();
        register_lease(&mut registry, lease, now);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_default();
        out
    }

    #[test]
    fn lease_gauges_per_group() {
        let mut lease = LeaseState::default();
        let mut workers = Group {
            max_holders: 2,
            ..Group::default()
        };
        for (holder, at) in [("h1", 100_000), ("h2", 400_000)] {
            workers.holders.push(Grant {
                group: "workers".into(),
                holder: holder.into(),
                token: 1,
                machine_id: String::new(),
                granted_at: at,
                claimed: true,
            });
        }
        workers.queue.push_back(Waiter {
            holder: "h3".into(),
            machine_id: String::new(),
            since: 0,
        });
        lease.groups.insert("workers".into(), workers);
        lease.groups.insert(
            "cp".into(),
            Group {
                max_holders: 1,
                paused: Some("maintenance".into()),
                ..Group::default()
            },
        );
        let out = text(&lease, 1000.0);
        for line in [
            "baton_lease_holders{group=\"workers\"} 2",
            "baton_lease_holders{group=\"cp\"} 0",
            "baton_lease_queue_length{group=\"workers\"} 1",
            "baton_lease_max_holders{group=\"workers\"} 2",
            "baton_lease_paused{group=\"cp\"} 1",
            "baton_lease_paused{group=\"workers\"} 0",
            "baton_lease_oldest_hold_seconds{group=\"workers\"} 900.0",
            "baton_lease_oldest_hold_seconds{group=\"cp\"} 0.0",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
        }
        assert!(
            out.lines().any(|l| l == "baton_control_held_hosts 0"),
            "{out}"
        );
        lease.held.insert(
            "h3".into(),
            HostHold {
                reason: "disk swap".into(),
                by: "ops".into(),
                at: 5,
            },
        );
        lease.reboot_now.insert(
            "h4".into(),
            RebootRequest {
                by: "ops".into(),
                at: 6,
            },
        );
        let out = text(&lease, 1000.0);
        for line in [
            "baton_control_held_hosts 1",
            "baton_control_reboot_now_pending 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
        }
        // A pause of all groups counts for every group.
        lease.paused_all = Some("freeze".into());
        let out = text(&lease, 1000.0);
        assert!(
            out.contains("baton_lease_paused{group=\"workers\"} 1"),
            "{out}"
        );
    }

    #[test]
    fn counters_count_applied_grants_releases_and_expiries() {
        use crate::rules::lease::Event;
        let counters = Counters::default();
        let applied = |kind| Change::Applied {
            index: 1,
            event: Event {
                group: "workers".into(),
                kind,
            },
        };
        let grant = Grant {
            group: "workers".into(),
            holder: "h1".into(),
            token: 1,
            machine_id: String::new(),
            granted_at: 0,
            claimed: true,
        };
        counters.count(&applied(EventKind::Granted(grant)));
        for cause in [
            ReleaseCause::Released,
            ReleaseCause::Forced,
            ReleaseCause::HoldTimeout,
        ] {
            counters.count(&applied(EventKind::Released {
                holder: "h1".into(),
                token: 1,
                cause,
            }));
        }
        counters.count(&Change::Resync { index: 2 });
        let label = GroupLabel {
            group: "workers".into(),
        };
        assert_eq!(counters.grants.get_or_create(&label).get(), 1);
        assert_eq!(counters.releases.get_or_create(&label).get(), 2);
        assert_eq!(counters.expiries.get_or_create(&label).get(), 1);
    }
}
