//! The host agent's metrics: phase, pending reboot, last boot, drain and hook failures.
//!
//! The agent reports to a [`HostMetrics`] as it goes (a phase change, a
//! failure); the endpoint reads it at each scrape. Times in a phase and
//! since a reboot became required count from when this process saw them.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::locks::LockOrRecover;
use crate::rules::phases::{Phase, PHASE_NAMES};
use crate::transport::metrics::Source;

/// Where the kernel says when it booted (`btime`, unix seconds).
const PROC_STAT: &str = "/proc/stat";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// What the agent last reported.
struct Seen {
    phase: &'static str,
    phase_since: Instant,
    /// The pending update's version ("" when the source names none) and
    /// since when it has been pending, while a reboot is required.
    pending: Option<(String, Instant)>,
}

/// The host agent's metrics; cheap to clone (shared).
#[derive(Clone)]
pub struct HostMetrics {
    seen: Arc<Mutex<Seen>>,
    drain_failures: Counter,
    hook_failures: Counter,
    forced_drains: Counter,
}

/// The update waiting for a reboot, in the phases before the reboot.
fn pending_version(phase: &Phase) -> Option<String> {
    phase
        .pending_update()
        .map(|update| update.new_version.clone().unwrap_or_default())
}

impl HostMetrics {
    pub fn new(phase: &Phase) -> HostMetrics {
        let now = Instant::now();
        HostMetrics {
            seen: Arc::new(Mutex::new(Seen {
                phase: phase.name(),
                phase_since: now,
                pending: pending_version(phase).map(|version| (version, now)),
            })),
            drain_failures: Counter::default(),
            hook_failures: Counter::default(),
            forced_drains: Counter::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock_or_recover()
    }

    /// The agent moved to `phase`.
    pub fn phase(&self, phase: &Phase) {
        let now = Instant::now();
        let mut seen = self.lock();
        if seen.phase != phase.name() {
            seen.phase = phase.name();
            seen.phase_since = now;
        }
        seen.pending = match (pending_version(phase), seen.pending.take()) {
            // The same reboot still required: keep counting from the start.
            (Some(version), Some((_, since))) => Some((version, since)),
            (Some(version), None) => Some((version, now)),
            (None, _) => None,
        };
    }

    /// A Kubernetes drain failed.
    pub fn drain_failed(&self) {
        self.drain_failures.inc();
    }

    /// A drain deleted pods instead of evicting them (`force_after`).
    pub fn drain_forced(&self) {
        self.forced_drains.inc();
    }

    /// A before- or after-reboot hook failed.
    pub fn hook_failed(&self) {
        self.hook_failures.inc();
    }

    /// The endpoint's view of these metrics.
    pub fn source(&self) -> Source {
        let metrics = self.clone();
        Arc::new(move |registry: &mut Registry| metrics.register(registry, boot_time()))
    }

    fn register(&self, registry: &mut Registry, boot_time: Option<u64>) {
        let phase = Family::<PhaseLabel, Gauge>::default();
        let phase_seconds = Gauge::<f64, AtomicU64>::default();
        let required = Family::<VersionLabel, Gauge>::default();
        let required_seconds = Gauge::<f64, AtomicU64>::default();
        {
            let seen = self.lock();
            for name in PHASE_NAMES {
                let label = PhaseLabel {
                    phase: name.to_string(),
                };
                phase
                    .get_or_create(&label)
                    .set(i64::from(name == seen.phase));
            }
            phase_seconds.set(seen.phase_since.elapsed().as_secs_f64());
            match &seen.pending {
                Some((version, since)) => {
                    let label = VersionLabel {
                        version: version.clone(),
                    };
                    required.get_or_create(&label).set(1);
                    required_seconds.set(since.elapsed().as_secs_f64());
                }
                None => {
                    let label = VersionLabel {
                        version: String::new(),
                    };
                    required.get_or_create(&label).set(0);
                }
            }
        }
        registry.register(
            "baton_host_phase",
            "1 for the phase the host agent is in, 0 for the others",
            phase,
        );
        registry.register(
            "baton_host_phase_seconds",
            "How long the host agent has been in its current phase (since this process saw it enter)",
            phase_seconds,
        );
        registry.register(
            "baton_host_reboot_required",
            "1 while an update waits for its reboot (label version: the version it activates, when the source names one)",
            required,
        );
        registry.register(
            "baton_host_reboot_required_seconds",
            "How long a reboot has been required (since this process first saw it; 0 when none is)",
            required_seconds,
        );
        if let Some(boot_time) = boot_time {
            let gauge: Gauge = Gauge::default();
            gauge.set(i64::try_from(boot_time).unwrap_or(i64::MAX));
            registry.register(
                "baton_host_last_reboot_timestamp_seconds",
                "When this host last booted (the kernel's btime), unix seconds",
                gauge,
            );
        }
        registry.register(
            "baton_host_drain_failures",
            "Kubernetes drains that failed, since the agent started",
            self.drain_failures.clone(),
        );
        registry.register(
            "baton_host_hook_failures",
            "Before- and after-reboot hooks that failed, since the agent started",
            self.hook_failures.clone(),
        );
        registry.register(
            "baton_host_forced_drains",
            "Kubernetes drains that deleted pods a PodDisruptionBudget kept (kubernetes.force_after), since the agent started",
            self.forced_drains.clone(),
        );
    }
}

/// The kernel's boot time (`btime` in /proc/stat), if it can be read.
pub(crate) fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string(PROC_STAT).ok()?;
    parse_btime(&stat)
}

fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::phases::PendingUpdate;

    fn text(metrics: &HostMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry, Some(1_700_000_000));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_default();
        out
    }

    #[track_caller]
    fn has(out: &str, line: &str) {
        assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
    }

    #[test]
    fn phase_and_pending_reboot() {
        let metrics = HostMetrics::new(&Phase::Idle);
        let out = text(&metrics);
        has(&out, "baton_host_phase{phase=\"idle\"} 1");
        has(&out, "baton_host_phase{phase=\"draining\"} 0");
        has(&out, "baton_host_reboot_required{version=\"\"} 0");
        has(&out, "baton_host_last_reboot_timestamp_seconds 1700000000");
        has(&out, "baton_host_drain_failures_total 0");

        let update = PendingUpdate {
            source: "flatcar".into(),
            reason: "update".into(),
            new_version: Some("4081.2.1".into()),
        };
        metrics.phase(&Phase::RebootNeeded {
            update: update.clone(),
        });
        metrics.phase(&Phase::WaitingForLease { update });
        metrics.hook_failed();
        let out = text(&metrics);
        has(&out, "baton_host_phase{phase=\"idle\"} 0");
        has(&out, "baton_host_phase{phase=\"waiting-for-lease\"} 1");
        has(&out, "baton_host_reboot_required{version=\"4081.2.1\"} 1");
        has(&out, "baton_host_hook_failures_total 1");
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("baton_host_phase{"))
                .count(),
            PHASE_NAMES.len()
        );
    }

    #[test]
    fn btime_is_read_from_proc_stat_text() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1733100000\nprocesses 9\n";
        assert_eq!(parse_btime(stat), Some(1_733_100_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }
}
