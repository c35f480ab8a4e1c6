//! Host reports to the voters (`baton hosts`): at each phase change and every report interval.
//!
//! The agent tells a [`Reporter`] each phase it enters; a task of its own
//! sends the latest report to any voter (`Fleet.Report`, failing over as
//! the lease calls do) at once on a change, and again every
//! `[updates] report_interval` when nothing changes. It runs beside the
//! agent's loop, so the update source is still asked only once per
//! `poll_interval`.

use std::time::Duration;

use baton_proto::v1 as pb;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Settings;
use crate::host::lease_client::HostLeaseClient;
use crate::host::metrics::boot_time;
use crate::rules::fleet::fit_text;
use crate::rules::limits::{MAX_REPORT_REASON_LEN, MAX_REPORT_WORD_LEN};
use crate::rules::phases::Phase;

/// After a report no voter took, try again this soon (or at the interval, if sooner).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// This agent's version, as reported.
const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Now in unix milliseconds (0 if the clock is before 1970: informational).
fn now_ms() -> u64 {
    crate::clock::since_unix_epoch().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What this host reports while in `phase` (entered at `phase_since_ms`).
pub fn report_of(settings: &Settings, phase: &Phase, phase_since_ms: u64) -> pb::HostReport {
    pb::HostReport {
        name: settings.node.name.clone(),
        group: settings.node.group.clone(),
        phase: phase.name().to_string(),
        pending: phase.pending_update().map(|update| pb::PendingReboot {
            source: fit_text(&update.source, MAX_REPORT_WORD_LEN),
            reason: fit_text(&update.reason, MAX_REPORT_REASON_LEN),
            version: update
                .new_version
                .as_deref()
                .map(|v| fit_text(v, MAX_REPORT_WORD_LEN)),
        }),
        last_boot_s: boot_time(),
        agent_version: AGENT_VERSION.to_string(),
        report_interval_ms: u64::try_from(settings.updates.report_interval.as_millis())
            .unwrap_or(u64::MAX),
        phase_since_ms: Some(phase_since_ms),
    }
}

/// The agent's side: what to report now.
pub struct Reporter {
    settings: Settings,
    latest: watch::Sender<pb::HostReport>,
    /// The sending task's parts until [`Reporter::start`] takes them.
    task: Option<(HostLeaseClient, watch::Receiver<pb::HostReport>)>,
}

/// Ends the sending task when dropped (the agent stopped).
pub struct Reporting(tokio::task::JoinHandle<()>);

impl Drop for Reporting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Reporter {
    /// A reporter for this host, starting in `phase`, sending through `client`.
    pub fn new(settings: &Settings, phase: &Phase, client: HostLeaseClient) -> Reporter {
        let (latest, receiver) = watch::channel(report_of(settings, phase, now_ms()));
        Reporter {
            settings: settings.clone(),
            latest,
            task: Some((client, receiver)),
        }
    }

    /// The agent entered `phase`: report it now.
    pub fn phase(&self, phase: &Phase) {
        self.latest
            .send_replace(report_of(&self.settings, phase, now_ms()));
    }

    /// Starts sending (once); the task ends when the returned guard is dropped.
    pub fn start(&mut self) -> Option<Reporting> {
        let (client, receiver) = self.task.take()?;
        let every = self.settings.updates.report_interval;
        Some(Reporting(tokio::spawn(send_reports(
            client, receiver, every,
        ))))
    }
}

/// Sends the latest report at once and after every change, and every
/// `every` when nothing changes; says once when the voters stop (and start
/// again) taking reports.
async fn send_reports(
    mut client: HostLeaseClient,
    mut latest: watch::Receiver<pb::HostReport>,
    every: Duration,
) {
    let mut failing = false;
    loop {
        let report = latest.borrow_and_update().clone();
        match client.report(&report).await {
            Ok(()) if failing => {
                info!("reporting to the voters again (baton hosts)");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    warn!("cannot report this host to the voters (baton hosts): {e}");
                }
                failing = true;
            }
        }
        let wait = if failing {
            every.min(RETRY_AFTER_FAILURE)
        } else {
            every
        };
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::fleet::{check_report, ReportFields};
    use crate::rules::phases::PendingUpdate;

    #[test]
    fn what_an_agent_reports_passes_the_voters_checks() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("baton.toml");
        std::fs::write(
            &config,
            "[node]\nname = \"h1\"\ngroup = \"workers\"\n[updates]\nsource = \"sentinel\"\nreport_interval = \"2s\"\n",
        )
        .unwrap();
        let settings = Settings::load(&config, &dir.path().join("none")).unwrap();
        let update = PendingUpdate {
            source: "apt".into(),
            reason: format!("packages: {}", "linux-image-6.1.0-28-amd64 ".repeat(100)),
            new_version: None,
        };
        let report = report_of(&settings, &Phase::RebootNeeded { update }, 5);
        let pending = report.pending.as_ref().unwrap();
        assert_eq!(
            (report.name.as_str(), report.group.as_str()),
            ("h1", "workers")
        );
        assert_eq!(report.phase, "reboot-needed");
        assert_eq!(report.report_interval_ms, 2_000);
        assert_eq!(pending.reason.chars().count(), MAX_REPORT_REASON_LEN);
        let fields = ReportFields {
            name: &report.name,
            group: &report.group,
            phase: &report.phase,
            pending: Some((&pending.source, &pending.reason, pending.version.as_deref())),
            agent_version: &report.agent_version,
            report_interval_ms: report.report_interval_ms,
        };
        check_report(&fields).unwrap();
        assert!(report_of(&settings, &Phase::Idle, 5).pending.is_none());
    }
}
