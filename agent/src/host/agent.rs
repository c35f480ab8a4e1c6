//! The host agent: drives this host from "update pending" back to idle, one phase at a time.
//!
//! Through the lease, the drain, the reboot and the checks after it.
//!
//! The rules of which phase follows which live in `rules::phases`; this
//! module holds the agent, its loop and the idle phase, `lease_wait` the
//! wait for the lease, and `roll` the phases from reboot-needed to the
//! release. Each does the I/O of its phases and turns what happened into an
//! `Event`.
//! Every transition is persisted before the agent acts on the new phase.

use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use tokio::sync::watch;
use tracing::{info, warn, Instrument};

use crate::config::{Settings, UpdateSourceKind, LOCALTIME};
use crate::host::blockers::Blockers;
use crate::host::fleet_report::Reporter;
use crate::host::held_lease::HeldLease;
use crate::host::kubernetes::KubeDrainer;
use crate::host::lease_client::{
    lease_dialer, lease_endpoints, machine_id, HostLeaseClient, HostLeaseError, HostOrders,
};
use crate::host::metrics::HostMetrics;
use crate::host::notify::Notifier;
use crate::host::phase_file::{PhaseFile, PhaseFileError};
use crate::host::process::display_command;
use crate::host::reboot::Rebooter;
use crate::host::service_manager::ServiceManager;
use crate::host::updates::{self, UpdateSource};
use crate::log_fields;
use crate::rules::notify::NotifyEvent;
use crate::rules::phases::{self, Event, Phase, RememberedLease};
use crate::rules::window::RebootWindows;
use crate::transport::http_client::{HttpClient, HttpError};
use crate::transport::tls::TlsMode;

/// Between retries after a call that failed and may well work in a moment
/// (the lease cluster unreachable, update_engine not up yet after boot).
pub(super) const RETRY: Duration = Duration::from_secs(1);
/// How long to wait for the machine to go down after a successful reboot
/// call before trying again.
pub(super) const REBOOT_GRACE: Duration = Duration::from_secs(300);
/// Longest wait, before the reboot call, for notifications under way.
pub(super) const NOTIFY_FLUSH: Duration = Duration::from_secs(2);
/// Between retries of post-reboot checks and of undrain.
pub(super) const CHECK_RETRY: Duration = Duration::from_secs(15);
/// The shortest wait for a reboot window to open (a guard against a busy
/// loop should the window rules say "opens now" while not open).
pub(super) const MIN_WINDOW_WAIT: Duration = Duration::from_millis(100);
/// The update source of a reboot an admin asked for (`baton reboot-now`)
/// while the host's own update source reported nothing.
pub(super) const REBOOT_NOW_SOURCE: &str = "reboot-now";

/// What the node is marked with, at each step (`host::kubernetes::node_marks`).
pub(super) enum NodeMark<'a> {
    RebootNeeded,
    InProgress(&'a HeldLease),
    Rebooted,
    Idle,
}

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] PhaseFileError),
    #[error("cannot read boot id from {path}: {source}")]
    BootId {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("update source: {0}")]
    Updates(#[from] updates::UpdateError),
    #[error("kubernetes: {0}")]
    Kubernetes(#[from] crate::host::kubernetes::DrainError),
    #[error("time zone {name:?}: {source}")]
    TimeZone { name: String, source: jiff::Error },
    #[error(transparent)]
    Transition(#[from] phases::InvalidTransition),
    #[error("HTTP client (Prometheus blocker, webhooks): {0}")]
    Http(#[from] HttpError),
}

/// Everything the agent works with.
pub struct HostAgent {
    pub(super) settings: Settings,
    pub(super) phase_file: PhaseFile,
    phase: Phase,
    pub(super) lease: HostLeaseClient,
    pub(super) updates: UpdateSource,
    pub(super) rebooter: Rebooter,
    pub(super) kube: Option<KubeDrainer>,
    pub(super) windows: RebootWindows,
    pub(super) notify: ServiceManager,
    pub(super) boot_id: String,
    /// Proof of holding, from the grant or a re-verification in this process.
    pub(super) held: Option<HeldLease>,
    /// The Wait stream while queued: our session, and how the grant comes.
    pub(super) wait_stream: Option<tonic::Streaming<pb::WaitEvent>>,
    /// After a failed attempt, do not queue again before this.
    retry_after: Option<Instant>,
    /// The last attempt failed (set on drain failure or lost lease).
    pub(super) failed: bool,
    /// Whether the start-up check for a lease we hold but do not remember ran.
    stray_checked: bool,
    /// The queue position last shown, so STATUS changes only when it does.
    pub(super) last_position: Option<(u32, u32)>,
    /// The last waiting text sent by `say`, so it is sent once per change.
    pub(super) last_status: Option<String>,
    /// When the updater was last asked to check for updates.
    last_update_check: Option<Instant>,
    /// What the metrics endpoint shows of this agent.
    pub(super) metrics: HostMetrics,
    /// What the voters show of this agent (`baton hosts`).
    reporter: Reporter,
    /// Granted in this process and not drained yet: run the blockers again
    /// before the drain (the host may have waited hours in the queue). Not
    /// set when resuming a drain after a restart: it may have begun.
    pub(super) recheck_blockers: bool,
    /// Why the last grant was given back undrained, shown while backing off.
    blocked_after_grant: Option<String>,
    /// Every blocker: commands, Prometheus alerts, pods on the node.
    pub(super) blockers: Blockers,
    /// `[[notify.webhook]]`s, told of draining, rebooting, back, failed.
    pub(super) notifier: Notifier,
    /// A failing after-reboot check was notified (once per streak).
    pub(super) check_failure_notified: bool,
    /// The node is annotated "reboot needed" for the current update.
    pub(super) marked_needed: bool,
    /// Idle: baton's marks on the node are known to be gone.
    marks_cleared: bool,
    /// What an admin asked of this host, as last learnt (once per poll
    /// while idle or waiting for a window, and when a Wait stream fails).
    pub(super) orders: HostOrders,
    /// The reboot-now request (its time) this host rebooted for and released.
    pub(super) served_reboot_now: Option<u64>,
}

/// An id that changes at every boot of this host: the kernel's boot id,
/// plus PID 1's start time.
///
/// The start time matters in containers: systemd-nspawn gives each
/// container boot its own boot id, but the unit's sandbox
/// (ProtectKernelTunables, ProtectControlGroups, ProtectProc) shows the
/// kernel's, which does not change when the container reboots (nor does it
/// in LXC). PID 1 is new at every boot, so its start time tells.
fn read_boot_id(settings: &Settings) -> Result<String, AgentError> {
    let path = &settings.reboot.boot_id_path;
    let boot_id = std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| AgentError::BootId {
            path: path.clone(),
            source,
        })?;
    Ok(match pid1_start_time() {
        Some(start) => format!("{boot_id}@{start}"),
        None => boot_id,
    })
}

/// PID 1's start time in clock ticks since boot (field 22 of /proc/1/stat).
fn pid1_start_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/1/stat").ok()?;
    // The command name (field 2) may hold spaces; count after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn reboot_windows(settings: &Settings) -> Result<RebootWindows, AgentError> {
    if settings.reboot.windows.is_empty() && settings.reboot.freezes.is_empty() {
        return Ok(RebootWindows::always());
    }
    let name = settings.reboot.time_zone.as_str();
    let tz = if name == LOCALTIME {
        jiff::tz::TimeZone::system()
    } else {
        jiff::tz::TimeZone::get(name).map_err(|source| AgentError::TimeZone {
            name: name.to_string(),
            source,
        })?
    };
    Ok(RebootWindows::new(settings.reboot.windows.clone(), tz)
        .with_freezes(&settings.reboot.freezes))
}

/// The span every agent event is logged in: BATON_PHASE, BATON_GROUP,
/// BATON_HOLDER, and BATON_TOKEN while the phase holds a lease.
fn agent_span(settings: &Settings, phase: &str, lease: Option<&RememberedLease>) -> tracing::Span {
    log_fields::lease_span(
        Some(phase),
        lease.map_or(&settings.node.group, |l| &l.group),
        Some(&settings.node.name),
        lease.map(|l| l.token),
    )
}

impl HostAgent {
    /// Whether this host runs the agent at all (`[updates] source = "none"`
    /// makes a voter that only serves the lease).
    pub fn enabled(settings: &Settings) -> bool {
        settings.updates.source != UpdateSourceKind::None
    }

    /// Loads the persisted phase, resumes it for this boot, and opens the
    /// update source, the reboot method and (if configured) Kubernetes.
    pub async fn start(
        settings: Settings,
        notify: ServiceManager,
        tls: TlsMode,
    ) -> Result<HostAgent, AgentError> {
        let phase_file = PhaseFile::new(&settings.node.state_dir);
        let boot_id = read_boot_id(&settings)?;
        let persisted = phase_file.load()?;
        let phase = phases::resume(persisted.clone(), &boot_id);
        let span = agent_span(&settings, phase.name(), phase.lease());
        Self::open(settings, notify, tls, phase_file, persisted, phase, boot_id)
            .instrument(span)
            .await
    }

    /// The rest of `start`, inside the span of the phase it resumes.
    async fn open(
        settings: Settings,
        notify: ServiceManager,
        tls: TlsMode,
        phase_file: PhaseFile,
        persisted: Phase,
        phase: Phase,
        boot_id: String,
    ) -> Result<HostAgent, AgentError> {
        if phase != persisted {
            info!(
                "back from the reboot (boot id {boot_id}): {} -> {}",
                persisted.name(),
                phase.name()
            );
            phase_file.save(&phase)?;
        } else if phase != Phase::Idle {
            info!("resuming in phase {}", phase.name());
        }
        let updates = UpdateSource::open(&settings.updates).await?;
        if updates.name() == "apt" {
            if let Some(warning) = updates::automatic_reboot_warning(&settings.updates.apt_conf_dir)
            {
                warn!("{warning}");
            }
        }
        let kube = match &settings.kubernetes {
            Some(k) => Some(KubeDrainer::connect(k).await?),
            None => None,
        };
        let dialer = lease_dialer(
            settings.cluster.connect_timeout,
            settings.cluster.request_timeout,
            tls,
        );
        let machine_id = machine_id();
        let client = || {
            HostLeaseClient::new(
                lease_endpoints(&settings),
                dialer.clone(),
                &settings.node.group,
                &settings.node.name,
                &machine_id,
            )
        };
        let lease = client();
        let reporter = Reporter::new(&settings, &phase, client());
        let windows = reboot_windows(&settings)?;
        info!(
            "host agent for {} in group {}: updates from {}, reboot windows: {}, freezes: {}, \
             reboot by {}",
            settings.node.name,
            settings.node.group,
            updates.name(),
            windows.describe(),
            windows.describe_freezes(),
            match &settings.reboot.method {
                crate::config::RebootMethod::Logind => "logind".to_string(),
                crate::config::RebootMethod::Command(c) => display_command(c),
            }
        );
        let rebooter = Rebooter::new(
            &settings.reboot.method,
            settings.updates.dbus_address.as_deref(),
        );
        // One HTTP client (one pool) for the alerts blocker and webhooks.
        let http = if settings.blockers.prometheus.is_some() || !settings.notify.is_empty() {
            Some(HttpClient::new()?)
        } else {
            None
        };
        let blockers = Blockers::new(
            settings.reboot.blockers.clone(),
            &settings.blockers,
            http.as_ref(),
        )?;
        info!("blockers: {}", blockers.describe());
        let notifier = Notifier::new(
            settings.notify.clone(),
            http,
            &settings.node.name,
            &settings.node.group,
        );
        let metrics = HostMetrics::new(&phase);
        let agent = HostAgent {
            blockers,
            notifier,
            check_failure_notified: false,
            marked_needed: false,
            marks_cleared: false,
            phase_file,
            phase,
            lease,
            updates,
            rebooter,
            kube,
            windows,
            notify,
            boot_id,
            held: None,
            wait_stream: None,
            retry_after: None,
            failed: false,
            stray_checked: false,
            last_position: None,
            last_status: None,
            last_update_check: None,
            metrics,
            reporter,
            recheck_blockers: false,
            blocked_after_grant: None,
            orders: HostOrders::default(),
            served_reboot_now: None,
            settings,
        };
        agent.notify.status(&agent.phase.describe());
        Ok(agent)
    }

    /// This agent's metrics, for the endpoint (`[metrics] listen`).
    pub fn metrics(&self) -> HostMetrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown` turns true. Returns the error that stopped it.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
        // Reports go out beside the loop, for as long as it runs.
        let _reporting = self.reporter.start();
        loop {
            self.notify.watchdog_ping();
            if *shutdown.borrow() {
                self.on_shutdown().await;
                return Ok(());
            }
            let span = agent_span(&self.settings, self.phase.name(), self.phase.lease());
            let step = tokio::select! {
                event = self.step().instrument(span) => event?,
                _ = shutdown.changed() => None,
            };
            if let Some(event) = step {
                self.transition(event)?;
            }
        }
    }

    /// Leaves the queue on shutdown; a held lease stays held (we resume).
    async fn on_shutdown(&mut self) {
        if let Phase::WaitingForLease { .. } = self.phase {
            if let Err(e) = self.lease.release(None).await {
                warn!("could not leave the queue on shutdown: {e}");
            }
        }
    }

    /// Persists and announces the phase that `event` leads to.
    fn transition(&mut self, event: Event) -> Result<(), AgentError> {
        match &event {
            Event::DrainFailed { .. } | Event::LeaseLost => self.failed = true,
            Event::BlockedAfterGrant { reason } => {
                self.failed = true;
                self.blocked_after_grant = Some(reason.clone());
            }
            Event::Released => {
                self.held = None;
                if std::mem::take(&mut self.failed) {
                    self.retry_after = Some(Instant::now() + self.settings.reboot.blocker_retry);
                }
            }
            _ => {}
        }
        self.recheck_blockers = matches!(event, Event::Granted(_));
        self.announce(&event);
        let next = phases::next(&self.phase, event)?;
        self.phase_file.save(&next)?;
        // Logged as the new phase, with the lease of either side (a release
        // is logged with the token it gave back).
        let lease = next.lease().or(self.phase.lease());
        agent_span(&self.settings, next.name(), lease)
            .in_scope(|| info!("{} -> {}", self.phase.name(), next.name()));
        self.notify.status(&next.describe());
        self.metrics.phase(&next);
        self.reporter.phase(&next);
        if next == Phase::Idle {
            self.marked_needed = false;
            self.marks_cleared = false;
        }
        self.last_status = None;
        if !matches!(next, Phase::WaitingForLease { .. }) {
            self.wait_stream = None;
            self.last_position = None;
        }
        self.phase = next;
        Ok(())
    }

    /// The version the current roll is for (the update's reason when the
    /// source names no version), for notifications.
    pub(super) fn roll_version(&self) -> String {
        match &self.phase {
            Phase::RebootNeeded { update }
            | Phase::WaitingForLease { update }
            | Phase::Draining { update, .. }
            | Phase::Rebooting { update, .. }
            | Phase::PostReboot { update, .. } => update
                .new_version
                .clone()
                .unwrap_or_else(|| update.reason.clone()),
            Phase::Idle | Phase::Undraining { .. } | Phase::Releasing { .. } => String::new(),
        }
    }

    /// Annotates or labels the node (`[kubernetes]`); informational, so a
    /// failure is logged and the roll goes on. `true` when done (or nothing
    /// to do).
    pub(super) async fn mark_node(&self, mark: NodeMark<'_>) -> bool {
        let Some(kube) = &self.kube else {
            return true;
        };
        let result = match mark {
            NodeMark::RebootNeeded => {
                let version = self.roll_version();
                Self::with_watchdog(&self.notify, kube.mark_reboot_needed(&version)).await
            }
            NodeMark::InProgress(held) => {
                Self::with_watchdog(&self.notify, kube.mark_in_progress(held)).await
            }
            NodeMark::Rebooted => Self::with_watchdog(&self.notify, kube.mark_rebooted()).await,
            NodeMark::Idle => Self::with_watchdog(&self.notify, kube.clear_marks())
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                warn!("node annotations/labels not updated (the roll goes on): {e}");
                false
            }
        }
    }

    /// Tells the webhooks about `event` (fire and forget).
    fn announce(&mut self, event: &Event) {
        let (kind, message) = match event {
            Event::Granted(lease) => (
                NotifyEvent::Draining,
                format!("holding the reboot lease (token {}), draining", lease.token),
            ),
            Event::Drained { .. } => (NotifyEvent::Rebooting, "drained, rebooting".to_string()),
            Event::Checked if self.failed => (
                NotifyEvent::Failed,
                "back from the reboot, but the update did not take; undraining, not \
                 rebooting for it again"
                    .to_string(),
            ),
            Event::Checked => (
                NotifyEvent::Back,
                "back from the reboot, checks passed; undraining".to_string(),
            ),
            Event::DrainFailed { .. } => (
                NotifyEvent::Failed,
                "drain or before-reboot hook failed (or the window closed); undoing it and \
                 giving the lease back"
                    .to_string(),
            ),
            Event::LeaseLost => (
                NotifyEvent::Failed,
                "the lease was taken away before the reboot; undoing the drain".to_string(),
            ),
            _ => return,
        };
        if matches!(event, Event::Checked) {
            self.check_failure_notified = false;
        }
        self.notifier.send(kind, &self.roll_version(), &message);
    }

    /// Does the work of the current phase; `Some(event)` when something
    /// happened, `None` to come round again.
    async fn step(&mut self) -> Result<Option<Event>, AgentError> {
        let phase = self.phase.clone();
        Ok(match phase {
            Phase::Idle => self.idle().await,
            Phase::RebootNeeded { .. } => self.reboot_needed().await,
            Phase::WaitingForLease { .. } => self.waiting_for_lease().await,
            Phase::Draining { lease, .. } => self.draining(&lease).await,
            Phase::Rebooting { lease, drain, .. } => self.rebooting(&lease, drain).await,
            Phase::PostReboot { update, lease, .. } => {
                let event = self.post_reboot(&update, &lease).await;
                if event == Some(Event::Checked) {
                    self.mark_node(NodeMark::Rebooted).await;
                }
                event
            }
            Phase::Undraining { lease, drain } => self.undraining(&lease, drain.as_ref()).await,
            Phase::Releasing { lease } => self.releasing(&lease).await,
        })
    }

    /// Tells the journal and systemd what the agent waits for, once per change.
    pub(super) fn say(&mut self, text: String) {
        if self.last_status.as_deref() != Some(text.as_str()) {
            info!("{text}");
            self.notify.status(&text);
            self.last_status = Some(text);
        }
    }

    /// Waits the whole of `duration`, pinging the watchdog meanwhile. A
    /// shutdown ends the wait at once: `run` drops the step on it.
    pub(super) async fn wait(&self, duration: Duration) {
        Self::with_watchdog(&self.notify, tokio::time::sleep(duration)).await;
    }

    /// Runs `work` (bounded by its own timeouts, or ended by `run` on
    /// shutdown) while pinging the watchdog: at once (the lease calls before
    /// it are not fed) and then every half `WatchdogSec`, since hooks,
    /// drains and waits may take longer than that.
    pub(super) async fn with_watchdog<T>(
        notify: &ServiceManager,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let Some(every) = notify.watchdog_interval() else {
            return work.await;
        };
        tokio::pin!(work);
        // The first tick is at once.
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = ticks.tick() => notify.watchdog_ping(),
            }
        }
    }

    /// The proof of holding `remembered`: from this process's grant, or
    /// re-verified with a linearizable read. `Ok(None)`: not held any more.
    pub(super) async fn proof(
        &mut self,
        remembered: &RememberedLease,
    ) -> Result<Option<HeldLease>, HostLeaseError> {
        if let Some(held) = &self.held {
            if held.token() == remembered.token {
                return Ok(Some(held.clone()));
            }
        }
        let verified = self.lease.verify(remembered).await?;
        self.held = verified.clone();
        Ok(verified)
    }

    async fn idle(&mut self) -> Option<Event> {
        if !self.stray_checked {
            // A lease we hold but do not remember (state lost, or an old
            // crash): give it back so it does not block the group.
            self.give_back_stray().await;
        }
        // Annotations and pre-reboot labels of a roll that ended without a
        // reboot (update gone, blocked, drain failed): gone once idle.
        if !self.marks_cleared {
            self.marks_cleared = self.mark_node(NodeMark::Idle).await;
        }
        // A cordon of ours that no drain record remembers (the agent
        // stopped mid-drain): undo it. Once per process; logs its own errors.
        if let Some(kube) = &self.kube {
            let _ = Self::with_watchdog(&self.notify, kube.undo_unrecorded_cordon()).await;
        }
        if let Some(until) = self.retry_after {
            let now = Instant::now();
            if now < until {
                if let Some(reason) = &self.blocked_after_grant {
                    let text = format!(
                        "reboot needed: blocked after the grant ({reason}); lease given back \
                         undrained, trying again in {:?}",
                        until - now
                    );
                    self.say(text);
                }
                self.wait(until - now).await;
                return None;
            }
            self.retry_after = None;
            self.blocked_after_grant = None;
        }
        self.learn_orders().await;
        if self.orders.grant.is_some() {
            // Idle, yet the cluster shows a grant for us: a late retry of an
            // acquire of ours (held by the network) took it after we had
            // released, or someone acquired in our name. Nobody would give
            // it back: a stuck lock.
            self.give_back_stray().await;
        }
        let pending = Self::with_watchdog(&self.notify, self.updates.pending()).await;
        if let (Ok(None), Some(by)) = (&pending, &self.orders.reboot_now_by) {
            // Like kured's sentinel: an admin's reboot-now reboots the host
            // even when its update source reports nothing.
            let update = phases::PendingUpdate {
                source: REBOOT_NOW_SOURCE.to_string(),
                reason: format!("reboot asked by {by} (baton reboot-now)"),
                new_version: None,
            };
            info!("{}", update.reason);
            return Some(Event::UpdatePending(update));
        }
        match pending {
            Ok(Some(update)) => match self.phase_file.failed_update() {
                Ok(Some(failed)) if failed.blocks(&update) => self.warn_once(
                    format!(
                        "idle: not rebooting for {}: it did not take (found {}); waiting for a \
                         newer update (to try this one again, remove {})",
                        update.reason,
                        failed.failed_at,
                        self.phase_file.failed_update_path().display()
                    ),
                    &failed.error,
                ),
                Ok(_) => {
                    info!("update pending: {}", update.reason);
                    return Some(Event::UpdatePending(update));
                }
                // Unreadable: not rebooting, rather than perhaps again for
                // an update that did not take.
                Err(e) => self.warn_once(
                    format!("idle: {} is pending, but not rebooting", update.reason),
                    &e.to_string(),
                ),
            },
            Ok(None) => {
                // Nothing pending: back to the plain idle status.
                if self.last_status.take().is_some() {
                    self.notify.status(&self.phase.describe());
                }
            }
            Err(e) => warn!("update source: {e}"),
        }
        self.wait_for_update_news().await;
        None
    }

    /// Gives back a grant this idle host holds (checked by a linearizable
    /// read); the start-up check is done once that read answered.
    async fn give_back_stray(&mut self) {
        match self.lease.give_back_stray().await {
            Ok(Some(token)) => {
                warn!("holding a lease this host does not remember (token {token}); released it");
                self.stray_checked = true;
            }
            Ok(None) => self.stray_checked = true,
            Err(e) => warn!("cannot check for a lease this host holds: {e}"),
        }
    }

    /// Tells systemd `status` and the journal `status` with `why`, as a
    /// warning, once per change of `status`.
    fn warn_once(&mut self, status: String, why: &str) {
        if self.last_status.as_deref() != Some(status.as_str()) {
            warn!("{status}: {why}");
            self.notify.status(&status);
            self.last_status = Some(status);
        }
    }

    /// Waits until the update source may answer differently: its signal
    /// (update_engine's StatusUpdate) or its next poll, once per
    /// `poll_interval`. With `check_interval`, asks the updater to look for
    /// updates when that is due (at once the first time), and returns then
    /// so that the answer is read again.
    pub(super) async fn wait_for_update_news(&mut self) {
        let check_due = self.settings.updates.check_interval.map(|every| {
            self.last_update_check
                .map_or_else(Instant::now, |at| at + every)
        });
        let updates = &mut self.updates;
        let check_now = Self::with_watchdog(&self.notify, async {
            tokio::select! {
                _ = updates.changed() => false,
                _ = async {
                    match check_due {
                        Some(due) => tokio::time::sleep_until(due.into()).await,
                        None => std::future::pending().await,
                    }
                } => true,
            }
        })
        .await;
        if check_now {
            self.last_update_check = Some(Instant::now());
            let checked = Self::with_watchdog(&self.notify, self.updates.check_for_updates()).await;
            if let Err(e) = checked {
                warn!("asking the updater to check for updates failed: {e}");
            }
        }
    }

    /// Asks the cluster what an admin asked of this host; on failure keeps
    /// what it knew (the lease calls that follow fail loudly on their own).
    pub(super) async fn learn_orders(&mut self) {
        match self.lease.orders().await {
            Ok(mut orders) => {
                if orders.reboot_now_at.is_some() && orders.reboot_now_at == self.served_reboot_now
                {
                    // Done already; this voter has not applied our release yet.
                    orders.reboot_now_by = None;
                    orders.reboot_now_at = None;
                }
                if orders != self.orders {
                    if let Some(by) = &orders.reboot_now_by {
                        warn!("{by} asked this host to reboot now (baton reboot-now): skipping the reboot window");
                    }
                    if let Some(held) = &orders.held {
                        warn!("held by admin: {held}: not queueing for the lease");
                    }
                }
                self.orders = orders;
            }
            Err(e) => tracing::debug!("cannot learn what an admin asked of this host: {e}"),
        }
    }

    /// Whether this host may hold the lease now: its window is open, or an
    /// admin asked it to reboot now.
    pub(super) fn may_reboot_now(&self, now: jiff::Timestamp) -> bool {
        self.orders.reboot_now_by.is_some()
            || self.phase_update_source() == Some(REBOOT_NOW_SOURCE)
            || self.windows.is_open(now)
    }

    /// The update source of the phase's pending update, if it has one.
    pub(super) fn phase_update_source(&self) -> Option<&str> {
        match &self.phase {
            Phase::RebootNeeded { update }
            | Phase::WaitingForLease { update }
            | Phase::Draining { update, .. }
            | Phase::Rebooting { update, .. }
            | Phase::PostReboot { update, .. } => Some(update.source.as_str()),
            _ => None,
        }
    }
}
