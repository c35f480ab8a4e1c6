//! The fleet view's state on a voter: its inbox of host reports, and the leader's table.
//!
//! A voter keeps the latest report of each host it received (its inbox)
//! until `fleet_view::pass_on` sends them to the leader. The leader keeps
//! a [`FleetTable`] per term: a voter that becomes leader starts an empty
//! one, stamped with its start (`since`), and drops it when it stops
//! leading. Memory only: nothing here reaches the raft log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use baton_proto::v1 as pb;
use tonic::Status;

use crate::locks::LockOrRecover;
use crate::rules::fleet::{check_report, FleetTable, ReportFields};
use crate::rules::limits::MAX_FLEET_HOSTS;
use crate::server::requests::invalid;

/// What the leader knows of the fleet, and what this voter has yet to pass on.
struct State {
    /// Most hosts the table and the inbox keep ([`MAX_FLEET_HOSTS`]).
    max_hosts: usize,
    /// The term this voter leads in and keeps the table for; None while it follows.
    term: Option<u64>,
    table: Option<FleetTable<pb::HostReport>>,
    /// The latest report of each host received here, not yet passed on.
    inbox: HashMap<String, pb::HostReport>,
}

/// The fleet view of this voter; cheap to clone (shared).
#[derive(Clone)]
pub struct FleetView {
    state: Arc<Mutex<State>>,
}

impl Default for FleetView {
    fn default() -> Self {
        FleetView::with_capacity(MAX_FLEET_HOSTS)
    }
}

/// A report's fields as the rules check them.
fn fields(report: &pb::HostReport) -> ReportFields<'_> {
    ReportFields {
        name: &report.name,
        group: &report.group,
        phase: &report.phase,
        pending: report
            .pending
            .as_ref()
            .map(|p| (p.source.as_str(), p.reason.as_str(), p.version.as_deref())),
        agent_version: &report.agent_version,
        report_interval_ms: report.report_interval_ms,
    }
}

/// `Fleet.Report` and each report of `Fleet.Forward`: every field within its limit.
pub fn check(report: &pb::HostReport) -> Result<(), Status> {
    check_report(&fields(report)).map_err(invalid)
}

impl FleetView {
    /// A view whose table and inbox keep at most `max_hosts` hosts (at least
    /// one); the daemon's keeps [`MAX_FLEET_HOSTS`] (`Default`).
    pub fn with_capacity(max_hosts: usize) -> Self {
        FleetView {
            state: Arc::new(Mutex::new(State {
                max_hosts: max_hosts.max(1),
                term: None,
                table: None,
                inbox: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }

    /// Keeps a checked report until it is passed on. A new host in a full
    /// inbox is refused (it comes again at its next report).
    pub fn receive(&self, report: pb::HostReport) -> Result<(), Status> {
        let mut state = self.lock();
        if state.inbox.len() >= state.max_hosts && !state.inbox.contains_key(&report.name) {
            return Err(Status::resource_exhausted(format!(
                "this voter holds {} reports not yet passed on to the leader; report again later",
                state.max_hosts
            )));
        }
        state.inbox.insert(report.name.clone(), report);
        Ok(())
    }

    /// The inbox, emptied.
    pub fn take_inbox(&self) -> Vec<pb::HostReport> {
        self.lock()
            .inbox
            .drain()
            .map(|(_, report)| report)
            .collect()
    }

    /// Reports that could not be passed on go back, unless a newer one came.
    pub fn put_back(&self, reports: Vec<pb::HostReport>) {
        let mut state = self.lock();
        for report in reports {
            if state.inbox.len() >= state.max_hosts {
                return;
            }
            state.inbox.entry(report.name.clone()).or_insert(report);
        }
    }

    /// This voter leads in `term`: a table for that term, started now if new.
    pub fn lead(&self, term: u64, now: u64) {
        let mut state = self.lock();
        if state.term != Some(term) {
            state.term = Some(term);
            state.table = Some(FleetTable::with_capacity(now, state.max_hosts));
        }
    }

    /// This voter does not lead: no table (a later term starts afresh).
    pub fn follow(&self) {
        let mut state = self.lock();
        state.term = None;
        state.table = None;
    }

    /// Records reports on the leader of `term`, heard of at `now`.
    pub fn record(&self, term: u64, reports: Vec<pb::HostReport>, now: u64) {
        self.lead(term, now);
        let mut state = self.lock();
        if let Some(table) = state.table.as_mut() {
            for report in reports {
                let name = report.name.clone();
                table.record(&name, report.report_interval_ms, report, now);
            }
        }
    }

    /// Hosts that reported within their stale limit; None unless this voter leads.
    pub fn reporting(&self, now: u64) -> Option<u32> {
        let state = self.lock();
        let table = state.table.as_ref()?;
        Some(u32::try_from(table.reporting(now)).unwrap_or(u32::MAX))
    }

    /// The view as `Fleet.Hosts` answers it; None unless this voter leads.
    pub fn hosts(&self, leader: u64, now: u64) -> Option<pb::HostsResponse> {
        let state = self.lock();
        let table = state.table.as_ref()?;
        Some(pb::HostsResponse {
            hosts: table
                .entries()
                .into_iter()
                .map(|(_, entry)| pb::HostEntry {
                    report: Some(entry.report.clone()),
                    last_seen_ms: entry.last_seen_ms,
                    stale: entry.is_stale(now),
                })
                .collect(),
            leader,
            since_ms: table.since_ms(),
            now_ms: now,
            dropped: table.dropped(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid report of `name` in `phase`, for tests.
    pub(crate) fn report(name: &str, phase: &str) -> pb::HostReport {
        pb::HostReport {
            name: name.into(),
            group: "workers".into(),
            phase: phase.into(),
            agent_version: "0.1.0".into(),
            report_interval_ms: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn the_leader_keeps_the_latest_report_and_a_new_term_starts_afresh() {
        let view = FleetView::default();
        assert_eq!(view.reporting(0), None, "a follower keeps no table");
        view.receive(report("h1", "idle")).unwrap();
        view.receive(report("h1", "draining")).unwrap();
        let inbox = view.take_inbox();
        assert_eq!(inbox.len(), 1, "the inbox keeps the latest per host");
        view.record(3, inbox, 10_000);
        let hosts = view.hosts(1, 10_500).unwrap();
        assert_eq!(hosts.hosts.len(), 1);
        assert_eq!(hosts.hosts[0].report.as_ref().unwrap().phase, "draining");
        assert_eq!((hosts.since_ms, hosts.leader), (10_000, 1));
        assert!(!hosts.hosts[0].stale);
        assert!(view.hosts(1, 13_001).unwrap().hosts[0].stale);
        assert_eq!(view.reporting(10_500), Some(1));
        // Same term: the table stays; a new term: it starts empty.
        view.record(3, vec![report("h2", "idle")], 11_000);
        assert_eq!(view.hosts(1, 11_000).unwrap().hosts.len(), 2);
        view.follow();
        assert!(view.hosts(1, 11_000).is_none());
        view.record(5, vec![report("h2", "idle")], 20_000);
        let hosts = view.hosts(1, 20_000).unwrap();
        assert_eq!((hosts.hosts.len(), hosts.since_ms), (1, 20_000));
    }

    #[test]
    fn the_host_limit_bounds_the_inbox_and_the_table() {
        let view = FleetView::with_capacity(2);
        view.receive(report("h1", "idle")).unwrap();
        view.receive(report("h2", "idle")).unwrap();
        let full = view.receive(report("h3", "idle")).unwrap_err();
        assert_eq!(full.code(), tonic::Code::ResourceExhausted);
        view.receive(report("h1", "draining")).unwrap();
        let mut reports = view.take_inbox();
        reports.push(report("h3", "idle"));
        view.record(1, reports, 1_000);
        let hosts = view.hosts(1, 1_000).unwrap();
        assert_eq!((hosts.hosts.len(), hosts.dropped), (2, 1));
    }

    #[test]
    fn unsent_reports_go_back_unless_a_newer_one_came() {
        let view = FleetView::default();
        view.receive(report("h1", "draining")).unwrap();
        view.put_back(vec![report("h1", "idle"), report("h2", "idle")]);
        let mut inbox = view.take_inbox();
        inbox.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(inbox[0].phase, "draining");
        assert_eq!(inbox[1].name, "h2");
    }
}
