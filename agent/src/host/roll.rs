//! The host agent's roll: reboot-needed, drain, reboot, check, undrain, release.
//!
//! The phases after `idle` (see `agent`) and around the wait for the lease
//! (see `lease_wait`); each turns what happened into an `Event`.

use std::time::Duration;

use tracing::{error, info, warn};

use crate::host::agent::{
    HostAgent, NodeMark, CHECK_RETRY, MIN_WINDOW_WAIT, NOTIFY_FLUSH, REBOOT_GRACE,
    REBOOT_NOW_SOURCE, RETRY,
};
use crate::host::hooks;
use crate::host::lease_client::HostLeaseError;
use crate::rules::notify::NotifyEvent;
use crate::rules::phases::{self, DrainRecord, Event, FailedUpdate, RememberedLease};

impl HostAgent {
    pub(super) async fn reboot_needed(&mut self) -> Option<Event> {
        self.learn_orders().await;
        let forced = self.orders.reboot_now_by.is_some();
        let pending = if self.phase_update_source() == Some(REBOOT_NOW_SOURCE) && forced {
            // The admin's reboot, with nothing from the update source.
            Ok(Some(()))
        } else {
            Self::with_watchdog(&self.notify, self.updates.pending())
                .await
                .map(|p| p.map(|_| ()))
        };
        match pending {
            Ok(None) if !forced => return Some(Event::UpdateGone),
            Ok(_) => {}
            Err(e) => {
                warn!("update source: {e}");
                self.wait_for_update_news().await;
                return None;
            }
        }
        if !self.marked_needed {
            self.marked_needed = self.mark_node(NodeMark::RebootNeeded).await;
        }
        if let Some(held) = &self.orders.held {
            self.say(format!("reboot needed: held by admin: {held}"));
            self.wait(self.settings.updates.poll_interval).await;
            return None;
        }
        let now = jiff::Timestamp::now();
        if !self.may_reboot_now(now) {
            let opens = self.windows.next_open(now);
            if let Some((until, reason)) = self.windows.frozen_at(now) {
                // A freeze: no reboot starts, windows or not.
                let mut text = format!(
                    "reboot needed: frozen until {}",
                    self.windows.local_time(until)
                );
                if let Some(reason) = reason {
                    text.push_str(&format!(" ({reason})"));
                }
                if let Some(opens) = opens.filter(|&t| t > until) {
                    text.push_str(&format!(", next window opens {opens}"));
                }
                self.say(text);
            } else if let Some(opens) = opens {
                self.say(format!(
                    "reboot needed: waiting for the reboot window ({}), next opens {opens}",
                    self.windows.describe()
                ));
            }
            // Until the window opens, asking the update source (whether the
            // update is still pending) once per poll_interval.
            let poll = self.settings.updates.poll_interval;
            let until_open = opens
                .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
                .map_or(poll, |d| d.min(poll));
            self.wait(until_open.max(MIN_WINDOW_WAIT)).await;
            return None;
        }
        if let Some(reason) = self.blocked_now().await {
            warn!("blocker says not now: {reason}");
            self.notify
                .status(&format!("reboot needed: blocked: {reason}"));
            self.last_status = None;
            self.wait(self.settings.reboot.blocker_retry).await;
            return None;
        }
        Some(Event::ClearedToQueue)
    }

    /// Runs every blocker, before queueing and again after a grant: why
    /// not now, or `None` when all pass.
    pub(super) async fn blocked_now(&self) -> Option<String> {
        let checked =
            Self::with_watchdog(&self.notify, self.blockers.check(self.kube.as_ref())).await;
        checked.err().map(|e| e.to_string())
    }

    pub(super) async fn draining(&mut self, remembered: &RememberedLease) -> Option<Event> {
        let held = match self.proof(remembered).await {
            Ok(Some(held)) => held,
            Ok(None) => {
                warn!("the lease is no longer ours; undoing the drain");
                return Some(Event::LeaseLost);
            }
            Err(e) => {
                warn!("cannot confirm the lease: {e}");
                self.wait(RETRY).await;
                return None;
            }
        };
        let now = jiff::Timestamp::now();
        if !self.may_reboot_now(now) {
            if self.windows.frozen_at(now).is_some() {
                warn!("a freeze began before the drain; giving the lease back");
            } else {
                warn!("reboot window closed before the drain; giving the lease back");
            }
            return Some(Event::DrainFailed { drain: None });
        }
        if std::mem::take(&mut self.recheck_blockers) {
            if let Some(reason) = self.blocked_now().await {
                warn!(
                    "a blocker says not now after the grant ({reason}); giving the lease back \
                     without draining, queueing again in {:?}",
                    self.settings.reboot.blocker_retry
                );
                self.notify.status(&format!(
                    "holding reboot lease (group {}, token {}): blocked after the grant \
                     ({reason}); giving it back undrained",
                    held.group(),
                    held.token()
                ));
                return Some(Event::BlockedAfterGrant { reason });
            }
        }
        self.mark_node(NodeMark::InProgress(&held)).await;
        let mut record: Option<DrainRecord> = None;
        if let Some(kube) = &self.kube {
            let drained = Self::with_watchdog(&self.notify, kube.drain(&held)).await;
            let forced = kube.take_forced();
            if !forced.is_empty() {
                let text = format!(
                    "FORCED DRAIN: deleted {} instead of evicting (kubernetes.force_after passed; \
                     their PodDisruptionBudget was bypassed)",
                    forced.join(", ")
                );
                error!("{text}");
                self.metrics.drain_forced();
                self.notifier
                    .send(NotifyEvent::Failed, &self.roll_version(), &text);
                self.notify.status(&format!(
                    "holding reboot lease (group {}, token {}): {text}",
                    held.group(),
                    held.token()
                ));
            }
            match drained {
                Ok(r) => record = Some(r),
                Err(e) => {
                    error!("kubernetes drain failed: {e}");
                    self.metrics.drain_failed();
                    return Some(Event::DrainFailed { drain: e.record() });
                }
            }
        }
        let hooks = self.settings.hooks.before_reboot.clone();
        if let Err(e) =
            Self::with_watchdog(&self.notify, hooks::run_hooks(&hooks, &held, "draining")).await
        {
            error!("before-reboot hook failed: {e}");
            self.metrics.hook_failed();
            return Some(Event::DrainFailed { drain: record });
        }
        Some(Event::Drained {
            drain: record,
            boot_id: self.boot_id.clone(),
        })
    }

    pub(super) async fn rebooting(
        &mut self,
        remembered: &RememberedLease,
        drain: Option<DrainRecord>,
    ) -> Option<Event> {
        // Give the "rebooting" notification a moment to leave (bounded),
        // before the lease check, so that the check stays right before the call.
        self.notifier.flush(NOTIFY_FLUSH).await;
        // Safety rule: re-check with a linearizable read, right before the
        // call, that we still hold the lease under our token.
        self.held = None;
        let held = match self.proof(remembered).await {
            Ok(Some(held)) => held,
            Ok(None) => {
                warn!(
                    "the lease is no longer ours (token {}); not rebooting",
                    remembered.token
                );
                return Some(Event::LeaseLost);
            }
            Err(e) => {
                warn!("cannot confirm the lease before rebooting: {e}");
                self.wait(RETRY).await;
                return None;
            }
        };
        // Only the window, not freezes: a host that began draining before a freeze started
        // is already on its way down, and a freeze does not stop it. An admin's
        // reboot-now skips the window.
        let now = jiff::Timestamp::now();
        if !self.windows.in_window(now) && !self.may_reboot_now(now) {
            warn!("reboot window closed before the reboot call; undoing the drain");
            return Some(Event::DrainFailed { drain });
        }
        info!("rebooting now ({held})");
        if let Err(e) = self.rebooter.reboot(&held).await {
            error!("reboot failed: {e}");
            return Some(Event::DrainFailed { drain });
        }
        // The machine goes down under us; keep the watchdog fed meanwhile.
        self.wait(REBOOT_GRACE).await;
        warn!("still up {REBOOT_GRACE:?} after the reboot call; trying again");
        None
    }

    pub(super) async fn post_reboot(
        &mut self,
        update: &phases::PendingUpdate,
        remembered: &RememberedLease,
    ) -> Option<Event> {
        let verified = if update.source == REBOOT_NOW_SOURCE {
            // An admin's reboot with no update: nothing to find active.
            Ok(())
        } else {
            Self::with_watchdog(&self.notify, self.updates.verify_after_boot(update)).await
        };
        match verified {
            Ok(()) => self.forget_failed_update(update),
            // Right after boot the updater may not be up yet: ask again.
            Err(e) if e.is_transient() => {
                warn!("cannot ask the updater yet: {e}");
                self.wait(RETRY).await;
                return None;
            }
            // The host came back without the update (e.g. a rollback): say
            // so loudly, remember the update so that the host does not
            // reboot for it again, and finish this round (undrain, release).
            Err(e) => {
                let record = FailedUpdate {
                    update: update.clone(),
                    error: e.to_string(),
                    failed_at: jiff::Timestamp::now().to_string(),
                    boot_id: self.boot_id.clone(),
                };
                if let Err(save) = self.phase_file.save_failed_update(&record) {
                    // Not going on unrecorded: the host would reboot for
                    // this update again and again.
                    error!("update not active after the reboot: {e}; cannot record it ({save}); trying again");
                    self.wait(CHECK_RETRY).await;
                    return None;
                }
                error!(
                    "update not active after the reboot: {e}. Recorded in {}: this host will \
                     not reboot for this update again (a newer one goes ahead; remove the file \
                     to try this one again)",
                    self.phase_file.failed_update_path().display()
                );
                self.failed = true;
            }
        }
        let hooks = self.settings.hooks.after_reboot.clone();
        if !hooks.is_empty() {
            let held = match self.proof(remembered).await {
                Ok(Some(held)) => held,
                Ok(None) => {
                    warn!(
                        "the lease was taken from us during the reboot; skipping after-reboot hooks"
                    );
                    return Some(Event::Checked);
                }
                Err(e) => {
                    warn!("cannot confirm the lease: {e}");
                    self.wait(RETRY).await;
                    return None;
                }
            };
            if let Err(e) =
                Self::with_watchdog(&self.notify, hooks::run_hooks(&hooks, &held, "post-reboot"))
                    .await
            {
                // Keep holding: a host that is unhealthy after its update
                // stops the roll until an operator looks (baton unlock).
                error!("post-reboot check failed, holding the lease: {e}");
                self.metrics.hook_failed();
                if !std::mem::replace(&mut self.check_failure_notified, true) {
                    let message = format!(
                        "post-reboot check failed, holding the lease (the roll stops): {e}"
                    );
                    self.notifier
                        .send(NotifyEvent::Failed, &self.roll_version(), &message);
                }
                self.notify.status(&format!(
                    "holding reboot lease (group {}, token {}): post-reboot check failed: {e}",
                    held.group(),
                    held.token()
                ));
                self.wait(CHECK_RETRY).await;
                return None;
            }
        }
        Some(Event::Checked)
    }

    /// After `update` took: an earlier update that did not is history now.
    pub(super) fn forget_failed_update(&self, update: &phases::PendingUpdate) {
        let earlier = match self.phase_file.failed_update() {
            Ok(Some(earlier)) => earlier,
            Ok(None) => return,
            Err(e) => {
                warn!("{e}");
                return;
            }
        };
        match self.phase_file.clear_failed_update() {
            Ok(_) => info!(
                "{} is active; forgetting that {} did not take",
                update.reason, earlier.update.reason
            ),
            Err(e) => warn!("{e}"),
        }
    }

    pub(super) async fn undraining(
        &mut self,
        remembered: &RememberedLease,
        drain: Option<&DrainRecord>,
    ) -> Option<Event> {
        let Some(record) = drain else {
            return Some(Event::Undrained);
        };
        if self.kube.is_none() {
            return Some(Event::Undrained);
        }
        let held = self.proof(remembered).await.ok().flatten();
        let Some(kube) = &self.kube else {
            return Some(Event::Undrained);
        };
        let result = match &held {
            Some(held) => Self::with_watchdog(&self.notify, kube.undrain(held, record)).await,
            // Not holding any more: still put the node back into service.
            None => Self::with_watchdog(&self.notify, kube.abort(record)).await,
        };
        match result {
            Ok(()) => Some(Event::Undrained),
            Err(e) => {
                warn!("undrain failed, retrying: {e}");
                self.wait(CHECK_RETRY).await;
                None
            }
        }
    }

    pub(super) async fn releasing(&mut self, remembered: &RememberedLease) -> Option<Event> {
        // The release clears a reboot-now request: remember which one, so a
        // voter that applies the release a moment later does not ask again.
        self.learn_orders().await;
        let served = self.orders.reboot_now_at;
        match self.lease.release(Some(remembered.token)).await {
            Ok(()) => {
                self.served_reboot_now = served.or(self.served_reboot_now);
                self.orders.reboot_now_by = None;
                self.orders.reboot_now_at = None;
                Some(Event::Released)
            }
            // Another token holds it now (force-released and re-granted to
            // us?): nothing of ours to give back.
            Err(HostLeaseError::Refused(why)) => {
                warn!("release refused ({why}); treating the lease as gone");
                Some(Event::Released)
            }
            Err(e) => {
                warn!("cannot release the lease yet: {e}");
                self.wait(RETRY).await;
                None
            }
        }
    }
}
