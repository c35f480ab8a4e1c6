//! The fleet view on one voter (`server::fleet_view`, `server::fleet_state`,
//! `rules::fleet`): `Fleet.Report` and `Fleet.Forward` messages from raw
//! bytes (prost, as the gRPC server decodes them) -> the service's checks
//! (`check_report_call`: every field by `rules::fleet::check_report`, a
//! host reports as itself; `check_forward`: the batch limit) -> the inbox
//! -> `pass_on` (`batches`, then the leader's table, or back into the inbox
//! when the leader cannot be reached) -> the leader's `FleetTable` ->
//! `Fleet.Hosts`; leadership comes and goes in between. The table's and
//! inbox's limit is small (`FleetView::with_capacity`), so it is reached.
//!
//! No panic anywhere. An accepted report has every field within its limit
//! (names by `rules::names`, a known phase, short texts without control
//! characters, the interval in range), and a host certificate reports only
//! as itself; an accepted report round-trips through prost. The inbox holds
//! exactly the latest accepted report per host, never more hosts than its
//! limit, and refuses a new host only when full (ResourceExhausted). Every
//! batch `pass_on` sends passes `check_forward` and fits in one message.
//! The table never holds more hosts than its limit; each entry is the
//! latest report recorded for its host; the host recorded last is in it;
//! a new term starts an empty table; a follower answers no hosts.
#![no_main]

use std::collections::BTreeMap;

use baton::fuzzing::limits::{
    MAX_API_MESSAGE_BYTES, MAX_REPORTS_PER_BATCH, MAX_REPORT_INTERVAL_MS, MAX_REPORT_REASON_LEN,
    MAX_REPORT_WORD_LEN, MIN_REPORT_INTERVAL_MS,
};
use baton::fuzzing::names::{check_group, check_holder, check_text};
use baton::fuzzing::{
    batches, check_forward, check_report_call, Caller, Code, FleetView, Identity, Role, PHASE_NAMES,
};
use baton_fuzz::{FleetAction, FleetScript, FleetStep};
use baton_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const MAX_STEPS: usize = 128;

/// The caller the auth layer let in: Fleet.Report is for hosts, voters and admins.
fn caller(step: &FleetStep) -> Caller {
    let role = match step.role % 4 {
        0 => return Caller::Insecure,
        1 => Role::Host,
        2 => Role::Admin,
        _ => Role::Voter,
    };
    Caller::Certified(Identity {
        name: step.name.clone(),
        role,
    })
}

/// What an accepted report must be, checked field by field.
fn assert_within_limits(report: &pb::HostReport) {
    assert!(check_holder(&report.name).is_ok(), "name {:?}", report.name);
    assert!(
        check_group(&report.group).is_ok(),
        "group {:?}",
        report.group
    );
    assert!(
        PHASE_NAMES.contains(&report.phase.as_str()),
        "phase {:?}",
        report.phase
    );
    let words = [Some(&report.agent_version)]
        .into_iter()
        .chain(report.pending.iter().map(|p| Some(&p.source)))
        .chain(report.pending.iter().map(|p| p.version.as_ref()))
        .flatten();
    for word in words {
        assert!(check_text(word, MAX_REPORT_WORD_LEN).is_ok(), "{word:?}");
    }
    if let Some(pending) = &report.pending {
        let reason = &pending.reason;
        assert!(
            check_text(reason, MAX_REPORT_REASON_LEN).is_ok(),
            "{reason:?}"
        );
    }
    assert!(
        (MIN_REPORT_INTERVAL_MS..=MAX_REPORT_INTERVAL_MS).contains(&report.report_interval_ms),
        "interval {}",
        report.report_interval_ms
    );
    let again = pb::HostReport::decode(&*report.encode_to_vec()).expect("a report decodes");
    assert_eq!(&again, report, "a report round-trips");
}

/// One voter's fleet view and what it must hold.
struct Model {
    view: FleetView,
    capacity: usize,
    /// The latest accepted report per host not yet passed on.
    inbox: BTreeMap<String, pb::HostReport>,
    /// The term this voter leads in, and since when its table collects.
    leading: Option<(u64, u64)>,
    /// The latest report recorded per host in this term.
    recorded: BTreeMap<String, pb::HostReport>,
    last_recorded: Option<String>,
    dropped: u64,
}

impl Model {
    fn report(&mut self, step: &FleetStep, report: &pb::HostReport) {
        if check_report_call(&caller(step), report).is_err() {
            return;
        }
        assert_within_limits(report);
        if let Caller::Certified(Identity {
            name,
            role: Role::Host | Role::Voter,
        }) = caller(step)
        {
            assert_eq!(name, report.name, "a host reported as another");
        }
        let full = self.inbox.len() >= self.capacity && !self.inbox.contains_key(&report.name);
        match self.view.receive(report.clone()) {
            Ok(()) => {
                assert!(!full, "a full inbox took a new host");
                self.inbox.insert(report.name.clone(), report.clone());
            }
            Err(status) => {
                assert!(full, "refused with room: {status:?}");
                assert_eq!(status.code(), Code::ResourceExhausted);
            }
        }
    }

    fn lead(&mut self, term: u64, now: u64) {
        if term == 0 {
            self.view.follow();
            self.leading = None;
            self.recorded.clear();
            self.last_recorded = None;
            return;
        }
        self.view.lead(term, now);
        if self.leading.map(|(t, _)| t) != Some(term) {
            self.leading = Some((term, now));
            self.recorded.clear();
            self.last_recorded = None;
            self.dropped = 0;
        }
    }

    fn record(&mut self, reports: Vec<pb::HostReport>, now: u64) {
        let Some((term, _)) = self.leading else {
            return;
        };
        for report in &reports {
            self.recorded.insert(report.name.clone(), report.clone());
            self.last_recorded = Some(report.name.clone());
        }
        self.view.record(term, reports, now);
    }

    fn pass_on(&mut self, reached: bool, now: u64) {
        let mut reports = self.view.take_inbox();
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        let expected: Vec<&pb::HostReport> = self.inbox.values().collect();
        assert_eq!(reports.iter().collect::<Vec<_>>(), expected, "the inbox");
        self.inbox.clear();
        if self.leading.is_some() {
            return self.record(reports, now);
        }
        let sent = batches(reports.clone());
        assert_eq!(
            sent.iter().map(|b| b.reports.len()).sum::<usize>(),
            reports.len()
        );
        for batch in &sent {
            assert!(batch.reports.len() <= MAX_REPORTS_PER_BATCH);
            assert!(
                batch.encoded_len() <= MAX_API_MESSAGE_BYTES,
                "{} bytes",
                batch.encoded_len()
            );
            if let Err(status) = check_forward(batch) {
                panic!("the leader refuses a batch a voter passes on: {status:?}");
            }
        }
        if !reached {
            // The leader did not take them: back into the inbox, newest kept.
            for report in &reports {
                self.inbox.insert(report.name.clone(), report.clone());
            }
            self.view.put_back(reports);
        }
    }

    fn forward(&mut self, batch: pb::ReportBatch, now: u64) {
        if check_forward(&batch).is_err() {
            assert!(
                batch.reports.len() > MAX_REPORTS_PER_BATCH
                    || batch
                        .reports
                        .iter()
                        .any(|r| check_report_call(&Caller::Insecure, r).is_err()),
                "a batch of good reports refused"
            );
            return;
        }
        batch.reports.iter().for_each(assert_within_limits);
        self.record(batch.reports, now);
    }

    fn hosts(&mut self, now: u64) {
        let Some(hosts) = self.view.hosts(1, now) else {
            assert!(self.leading.is_none(), "the leader answered no hosts");
            return;
        };
        let (_, since) = self.leading.expect("a follower answered hosts");
        assert_eq!(hosts.since_ms, since);
        assert!(
            hosts.hosts.len() <= self.capacity,
            "{} hosts",
            hosts.hosts.len()
        );
        assert!(hosts.dropped >= self.dropped, "dropped went back");
        self.dropped = hosts.dropped;
        let mut names = Vec::new();
        for entry in &hosts.hosts {
            let report = entry.report.as_ref().expect("an entry has its report");
            assert_eq!(
                Some(report),
                self.recorded.get(&report.name),
                "not the latest"
            );
            names.push(report.name.as_str());
        }
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "hosts by name, once each"
        );
        if let Some(last) = &self.last_recorded {
            assert!(
                names.contains(&last.as_str()),
                "the host heard last was dropped"
            );
        }
        let again = pb::HostsResponse::decode(&*hosts.encode_to_vec()).expect("hosts decode");
        assert_eq!(again, hosts, "Fleet.Hosts round-trips");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(script) = FleetScript::decode(data) else {
        return;
    };
    let capacity = 1 + (script.capacity % 64) as usize;
    let mut model = Model {
        view: FleetView::with_capacity(capacity),
        capacity,
        inbox: BTreeMap::new(),
        leading: None,
        recorded: BTreeMap::new(),
        last_recorded: None,
        dropped: 0,
    };
    for step in script.steps.iter().take(MAX_STEPS) {
        match &step.action {
            None => {}
            Some(FleetAction::Report(report)) => model.report(step, report),
            Some(FleetAction::Forward(batch)) => model.forward(batch.clone(), step.now),
            Some(FleetAction::PassOn(reached)) => model.pass_on(*reached, step.now),
            Some(FleetAction::Lead(term)) => model.lead(*term, step.now),
            Some(FleetAction::Hosts(_)) => model.hosts(step.now),
        }
        assert!(model.inbox.len() <= capacity, "the inbox over its limit");
    }
});
