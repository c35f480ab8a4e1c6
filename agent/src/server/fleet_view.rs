//! The Fleet service and its loops: reports in, passed on to the leader in batches, hosts out.
//!
//! A host agent sends `Fleet.Report` to any voter. The voter checks it
//! (`rules::fleet::check_report`, the holder check), keeps the latest per
//! host in its inbox and, every [`PASS_ON_EVERY`], passes the inbox on to
//! the leader in `Fleet.Forward` batches (the leader takes its own inbox
//! directly). The leader stamps each report with its clock and keeps it in
//! a bounded table (`server::fleet_state`): memory only, never the raft
//! log. A voter that becomes leader starts an empty table; it refills
//! within one report interval (every host reports at least that often).
//! `Fleet.Hosts` (admins) is answered by the leader, forwarded there by
//! any voter.

use std::time::Duration;

use baton_proto::v1 as pb;
use baton_proto::v1::fleet_client::FleetClient;
use baton_proto::v1::fleet_server::Fleet;
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::rules::access::{Caller, Rpc};
use crate::rules::limits::{MAX_API_MESSAGE_BYTES, MAX_REPORTS_PER_BATCH, MAX_RESPONSE_BYTES};
use crate::server::auth;
use crate::server::fleet_state::check;
use crate::server::requests::invalid;
use crate::server::routing::{now_ms, Answered, Attempt, Cluster, Routed};

/// How often a voter passes the reports it received on to the leader: a
/// phase change shows in `baton hosts` within this (plus one call).
pub const PASS_ON_EVERY: Duration = Duration::from_millis(200);

/// Room left in a `Fleet.Forward` batch for the message's own framing.
const BATCH_BYTES: usize = MAX_API_MESSAGE_BYTES - 1024;

/// The current term, if this voter leads in it.
fn leading_term(cluster: &Cluster) -> Option<u64> {
    let metrics = cluster.raft.metrics();
    let m = metrics.borrow();
    (m.current_leader == Some(cluster.id)).then_some(m.current_term)
}

/// On every voter: starts a table when this voter becomes leader, drops it
/// when it stops leading.
pub async fn track_leadership(cluster: Cluster) {
    let mut metrics = cluster.raft.metrics();
    loop {
        let leading = {
            let m = metrics.borrow_and_update();
            (m.current_leader == Some(cluster.id)).then_some(m.current_term)
        };
        match (leading, now_ms()) {
            (Some(term), Ok(now)) => cluster.fleet.lead(term, now),
            (Some(_), Err(_)) => {}
            (None, _) => cluster.fleet.follow(),
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// On every voter: passes the reports received here on to the leader, every
/// [`PASS_ON_EVERY`]. What the leader did not take is tried again next time.
pub async fn pass_on(cluster: Cluster) {
    let mut tick = tokio::time::interval(PASS_ON_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let reports = cluster.fleet.take_inbox();
        if reports.is_empty() {
            continue;
        }
        if let Some(term) = leading_term(&cluster) {
            if let Ok(now) = now_ms() {
                cluster.fleet.record(term, reports, now);
            }
            continue;
        }
        if let Err((why, unsent)) = send_to_leader(&cluster, reports).await {
            debug!("could not pass host reports on to the leader: {why}");
            cluster.fleet.put_back(unsent);
        }
    }
}

/// Batches of at most [`MAX_REPORTS_PER_BATCH`] reports and [`BATCH_BYTES`].
pub fn batches(reports: Vec<pb::HostReport>) -> Vec<pb::ReportBatch> {
    let mut batches = Vec::new();
    let mut current = pb::ReportBatch::default();
    let mut bytes = 0;
    for report in reports {
        let size = report.encoded_len() + 8;
        if !current.reports.is_empty()
            && (current.reports.len() >= MAX_REPORTS_PER_BATCH || bytes + size > BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.reports.push(report);
    }
    if !current.reports.is_empty() {
        batches.push(current);
    }
    batches
}

/// Sends `reports` to the leader; on failure, why, and what was not taken.
async fn send_to_leader(
    cluster: &Cluster,
    reports: Vec<pb::HostReport>,
) -> Result<(), (String, Vec<pb::HostReport>)> {
    let Some((leader, Some(address))) = cluster.leader() else {
        return Err(("no leader".into(), reports));
    };
    let channel = match cluster.dialer.channel(&address) {
        Ok(channel) => channel,
        Err(e) => return Err((e.to_string(), reports)),
    };
    let mut client = FleetClient::new(channel);
    let mut pending = batches(reports).into_iter();
    while let Some(batch) = pending.next() {
        // Batches share the connection to the leader with forwarded calls.
        let sent = match cluster.forward_slots.acquire().await {
            Ok(_slot) => client.forward(batch.clone()).await.map(drop),
            Err(_) => Err(Status::unavailable("this voter is stopping")),
        };
        if let Err(status) = sent {
            let mut unsent = batch.reports;
            unsent.extend(pending.flat_map(|b| b.reports));
            return Err((format!("leader {leader}: {}", status.message()), unsent));
        }
    }
    Ok(())
}

/// `Fleet.Report`'s checks: every field (`rules::fleet::check_report`), and
/// a host reports as itself (admins and an insecure cluster for anyone).
pub fn check_report_call(caller: &Caller, report: &pb::HostReport) -> Result<(), Status> {
    check(report)?;
    auth::permit_holder(caller, Rpc::FleetReport, &report.name)
}

/// `Fleet.Forward`'s checks: at most [`MAX_REPORTS_PER_BATCH`] reports, each as `Fleet.Report` checks it.
pub fn check_forward(batch: &pb::ReportBatch) -> Result<(), Status> {
    if batch.reports.len() > MAX_REPORTS_PER_BATCH {
        return Err(invalid(format!(
            "{} reports in one batch; at most {MAX_REPORTS_PER_BATCH}",
            batch.reports.len()
        )));
    }
    batch.reports.iter().try_for_each(check)
}

/// gRPC `Fleet` service of a voter.
pub struct FleetService {
    cluster: Cluster,
}

impl FleetService {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl Fleet for FleetService {
    async fn report(
        &self,
        request: Request<pb::HostReport>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let caller = auth::caller(&request)?;
        let report = request.into_inner();
        check_report_call(&caller, &report)?;
        self.cluster.fleet.receive(report)?;
        Ok(Response::new(pb::ReportResponse { accepted: 1 }))
    }

    async fn forward(
        &self,
        request: Request<pb::ReportBatch>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let batch = request.into_inner();
        check_forward(&batch)?;
        let Some(term) = leading_term(&self.cluster) else {
            return Err(Status::failed_precondition(format!(
                "voter {} does not lead; pass reports on to the leader",
                self.cluster.id
            )));
        };
        let accepted = u32::try_from(batch.reports.len()).unwrap_or(u32::MAX);
        self.cluster.fleet.record(term, batch.reports, now_ms()?);
        Ok(Response::new(pb::ReportResponse { accepted }))
    }

    async fn hosts(
        &self,
        request: Request<pb::HostsRequest>,
    ) -> Result<Response<pb::HostsResponse>, Status> {
        let request = Routed::new(request)?;
        let cluster = &self.cluster;
        let answer = cluster
            .route(
                &request,
                || async {
                    let (Some(term), Ok(now)) = (leading_term(cluster), now_ms()) else {
                        return Attempt::Retry("leadership moved".into());
                    };
                    cluster.fleet.lead(term, now);
                    match cluster.fleet.hosts(cluster.id, now) {
                        Some(hosts) => Attempt::Done(hosts),
                        None => Attempt::Retry("leadership moved".into()),
                    }
                },
                |channel, forwarded| async move {
                    FleetClient::new(channel)
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .hosts(forwarded)
                        .await
                },
            )
            .await?;
        Ok(Response::new(match answer {
            Answered::Here(hosts) | Answered::ByLeader(hosts) => hosts,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::fleet_state::tests::report;

    #[test]
    fn batches_stay_under_the_message_limit() {
        let mut big = report("h", "reboot-needed");
        big.pending = Some(pb::PendingReboot {
            source: "apt".into(),
            reason: "é".repeat(crate::rules::limits::MAX_REPORT_REASON_LEN),
            version: None,
        });
        let reports: Vec<pb::HostReport> = (0..2_500)
            .map(|i| pb::HostReport {
                name: format!("h{i}"),
                ..if i % 2 == 0 {
                    big.clone()
                } else {
                    report("h", "idle")
                }
            })
            .collect();
        let batches = batches(reports);
        assert_eq!(
            batches.iter().map(|b| b.reports.len()).sum::<usize>(),
            2_500
        );
        for batch in &batches {
            assert!(batch.reports.len() <= MAX_REPORTS_PER_BATCH);
            assert!(batch.encoded_len() <= MAX_API_MESSAGE_BYTES);
        }
        assert!(check(&big).is_ok());
    }

    /// A full table of reports at every field's limit (4-byte characters
    /// where a limit counts characters) still fits in one `Hosts` answer.
    #[test]
    fn a_full_table_of_the_largest_reports_fits_one_answer() {
        use crate::rules::limits::{MAX_FLEET_HOSTS, MAX_REPORT_REASON_LEN, MAX_REPORT_WORD_LEN};
        use crate::rules::names::{MAX_GROUP_LEN, MAX_HOLDER_LEN};
        let wide = |n: usize| "𝄞".repeat(n);
        let largest = pb::HostEntry {
            report: Some(pb::HostReport {
                name: wide(MAX_HOLDER_LEN),
                group: "g".repeat(MAX_GROUP_LEN),
                phase: "reboot-needed".into(),
                pending: Some(pb::PendingReboot {
                    source: wide(MAX_REPORT_WORD_LEN),
                    reason: wide(MAX_REPORT_REASON_LEN),
                    version: Some(wide(MAX_REPORT_WORD_LEN)),
                }),
                last_boot_s: Some(u64::MAX),
                agent_version: wide(MAX_REPORT_WORD_LEN),
                report_interval_ms: u64::MAX,
                phase_since_ms: Some(u64::MAX),
            }),
            last_seen_ms: u64::MAX,
            stale: true,
        };
        let one = pb::HostsResponse {
            hosts: vec![largest],
            leader: u64::MAX,
            since_ms: u64::MAX,
            now_ms: u64::MAX,
            dropped: u64::MAX,
        };
        let per_host = one.hosts[0].encoded_len() + 4; // its tag and length
        let answer = one.encoded_len() + per_host * (MAX_FLEET_HOSTS - 1);
        assert!(
            answer <= MAX_RESPONSE_BYTES,
            "{MAX_FLEET_HOSTS} hosts of {per_host} bytes make a {answer}-byte answer, \
             over the {MAX_RESPONSE_BYTES}-byte limit"
        );
    }
}
