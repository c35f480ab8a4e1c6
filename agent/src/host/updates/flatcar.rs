//! Flatcar's update_engine over D-Bus: GetStatus for the answer, StatusUpdate for when to ask.
//!
//! Polling is the fallback when the signal cannot be had.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::{OsRelease, PendingUpdate, UpdateError};
use crate::config::UpdateSettings;
use crate::host::dbus::{bus_label, connect_bus};

/// The source's name in `PendingUpdate::source`, logs and status.
pub const NAME: &str = "flatcar";

/// update_engine's state once an update is downloaded, verified and installed to the
/// other partition: it takes effect at the next boot.
pub const UPDATED_NEED_REBOOT: &str = "UPDATE_STATUS_UPDATED_NEED_REBOOT";

const GET_STATUS: &str = "com.coreos.update1.Manager.GetStatus";
const ATTEMPT_UPDATE: &str = "com.coreos.update1.Manager.AttemptUpdate";

/// update_engine's D-Bus interface (Flatcar, formerly CoreOS Container Linux).
#[zbus::proxy(
    interface = "com.coreos.update1.Manager",
    default_service = "com.coreos.update1",
    default_path = "/com/coreos/update1",
    gen_blocking = false
)]
pub trait UpdateEngine {
    /// `(last_checked_time, progress, current_operation, new_version, new_size)`.
    fn get_status(&self) -> zbus::Result<(i64, f64, String, String, i64)>;

    /// Check for an update now (and download/apply it if there is one).
    fn attempt_update(&self) -> zbus::Result<()>;

    /// Forget a downloaded update.
    fn reset_status(&self) -> zbus::Result<()>;

    /// Sent on every state change and download progress step.
    #[zbus(signal)]
    fn status_update(
        &self,
        last_checked_time: i64,
        progress: f64,
        current_operation: &str,
        new_version: &str,
        new_size: i64,
    ) -> zbus::Result<()>;
}

/// What update_engine reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Unix time of the last check.
    pub last_checked_time: i64,
    /// Download progress, 0.0 to 1.0.
    pub progress: f64,
    /// `UPDATE_STATUS_IDLE`, `..._DOWNLOADING`, `..._UPDATED_NEED_REBOOT`, ...
    pub current_operation: String,
    /// Version of the update being handled (empty or `0.0.0` when none).
    pub new_version: String,
    /// Size of the update in bytes.
    pub new_size: i64,
}

impl Status {
    fn from_tuple(
        (last_checked_time, progress, current_operation, new_version, new_size): (
            i64,
            f64,
            String,
            String,
            i64,
        ),
    ) -> Self {
        Status {
            last_checked_time,
            progress,
            current_operation,
            new_version,
            new_size,
        }
    }

    fn needs_reboot(&self) -> bool {
        self.current_operation == UPDATED_NEED_REBOOT
    }

    /// The new version, when update_engine names a real one.
    fn version(&self) -> Option<String> {
        let v = self.new_version.trim();
        (!v.is_empty() && v != "0.0.0").then(|| v.to_string())
    }

    /// What wakes `changed`: the state and the version, not the download progress (which
    /// update_engine reports in many small steps).
    fn key(&self) -> (String, String) {
        (self.current_operation.clone(), self.new_version.clone())
    }
}

/// One connection to the bus, with the proxy and (when the subscription worked) the
/// StatusUpdate stream on it. Dropped as a whole when the connection breaks, so the next
/// use connects and subscribes afresh.
struct Bus {
    proxy: UpdateEngineProxy<'static>,
    signals: Option<StatusUpdateStream>,
}

impl Bus {
    async fn connect(address: Option<&str>) -> Result<Box<Bus>, UpdateError> {
        let conn = connect_bus(address)
            .await
            .map_err(|source| UpdateError::DbusConnect {
                address: bus_label(address),
                source,
            })?;
        let proxy = UpdateEngineProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|source| UpdateError::DbusConnect {
                address: bus_label(address),
                source,
            })?;
        let mut bus = Bus {
            proxy,
            signals: None,
        };
        bus.subscribe(address).await;
        Ok(Box::new(bus))
    }

    /// Subscribes to StatusUpdate. Failure is not fatal: `changed` then polls.
    async fn subscribe(&mut self, address: Option<&str>) {
        match self.proxy.receive_status_update().await {
            Ok(stream) => self.signals = Some(stream),
            Err(e) => tracing::warn!(
                "cannot subscribe to update_engine's StatusUpdate signal on the {}: {e}; polling GetStatus instead",
                bus_label(address)
            ),
        }
    }
}

/// A broken bus connection (as opposed to an error answer from a reachable service, such as
/// "update_engine is not running"): only then is a new connection needed.
fn connection_lost(error: &zbus::Error) -> bool {
    match error {
        zbus::Error::MethodError(..) | zbus::Error::FDO(_) => false,
        // No answer in time: update_engine hangs, the connection is fine; retrying on a
        // new one would only double the wait.
        zbus::Error::InputOutput(e) => e.kind() != std::io::ErrorKind::TimedOut,
        _ => true,
    }
}

/// Flatcar's update_engine as an update source.
pub struct Flatcar {
    address: Option<String>,
    os_release: PathBuf,
    poll_interval: Duration,
    /// Boxed: the proxy and stream are large, and `UpdateSource` holds this inline.
    bus: Option<Box<Bus>>,
    /// When `changed` next resolves without a signal (kept across calls: cancel-safe).
    next_poll: Instant,
    /// `changed` (re)connects or resubscribes at most once per poll interval, so a bus
    /// that is down is not hammered.
    next_reconnect: Instant,
    /// The state and version last seen, to wake `changed` only when they change.
    last_seen: Option<(String, String)>,
}

impl Flatcar {
    /// Connects to the bus and subscribes to StatusUpdate. update_engine itself need not
    /// be running yet (it is asked on `pending`).
    pub async fn open(settings: &UpdateSettings) -> Result<Flatcar, UpdateError> {
        let address = settings.dbus_address.clone();
        let poll_interval = settings.poll_interval.max(Duration::from_millis(100));
        let bus = Bus::connect(address.as_deref()).await?;
        let now = Instant::now();
        Ok(Flatcar {
            address,
            os_release: settings.os_release.clone(),
            poll_interval,
            bus: Some(bus),
            next_poll: now + poll_interval,
            next_reconnect: now + poll_interval,
            last_seen: None,
        })
    }

    fn bus_label(&self) -> String {
        bus_label(self.address.as_deref())
    }

    /// The connected bus, connecting first if the last connection broke.
    async fn bus(&mut self) -> Result<&mut Bus, UpdateError> {
        let bus = match self.bus.take() {
            Some(bus) => bus,
            None => {
                let bus = Bus::connect(self.address.as_deref()).await?;
                tracing::info!("reconnected to update_engine on the {}", self.bus_label());
                bus
            }
        };
        Ok(self.bus.insert(bus))
    }

    /// Calls update_engine (`method` names the call in errors). A broken
    /// connection is replaced and the call tried once more, so a restarted
    /// bus costs one log line, not an error.
    async fn call<T, F, Fut>(&mut self, method: &'static str, call: F) -> Result<T, UpdateError>
    where
        F: Fn(UpdateEngineProxy<'static>) -> Fut,
        Fut: Future<Output = zbus::Result<T>>,
    {
        let mut retried = false;
        loop {
            let proxy = self.bus().await?.proxy.clone();
            match call(proxy).await {
                Ok(value) => return Ok(value),
                Err(e) if connection_lost(&e) && !retried => {
                    tracing::info!("update_engine connection lost ({e}); reconnecting");
                    self.bus = None;
                    retried = true;
                }
                Err(source) => {
                    if connection_lost(&source) {
                        self.bus = None;
                    }
                    return Err(UpdateError::DbusCall {
                        address: self.bus_label(),
                        call: method,
                        source,
                    });
                }
            }
        }
    }

    /// update_engine's status now.
    pub async fn status(&mut self) -> Result<Status, UpdateError> {
        let tuple = self
            .call(GET_STATUS, |proxy| async move { proxy.get_status().await })
            .await?;
        let status = Status::from_tuple(tuple);
        self.last_seen = Some(status.key());
        Ok(status)
    }

    /// `Some` when update_engine reports UPDATE_STATUS_UPDATED_NEED_REBOOT.
    pub async fn pending(&mut self) -> Result<Option<PendingUpdate>, UpdateError> {
        let status = self.status().await?;
        if !status.needs_reboot() {
            return Ok(None);
        }
        let new_version = status.version();
        let reason = match &new_version {
            Some(v) => format!("update_engine: Flatcar {v} downloaded"),
            None => "update_engine: an update is downloaded and needs a reboot".to_string(),
        };
        Ok(Some(PendingUpdate {
            source: NAME.to_string(),
            reason,
            new_version,
        }))
    }

    /// Resolves on a StatusUpdate that changes the state or version, or at the next poll.
    pub async fn changed(&mut self) {
        let now = Instant::now();
        if now >= self.next_reconnect {
            let needs_bus = self.bus.is_none();
            let needs_signals = self.bus.as_ref().is_some_and(|b| b.signals.is_none());
            if needs_bus || needs_signals {
                self.next_reconnect = now + self.poll_interval;
                let address = self.address.clone();
                if needs_bus {
                    match Bus::connect(address.as_deref()).await {
                        Ok(bus) => {
                            tracing::info!(
                                "reconnected to update_engine on the {}",
                                self.bus_label()
                            );
                            self.bus = Some(bus);
                        }
                        Err(e) => tracing::debug!("update_engine: {e}; polling"),
                    }
                } else if let Some(bus) = self.bus.as_mut() {
                    bus.subscribe(address.as_deref()).await;
                }
            }
        }

        let deadline = self.next_poll;
        let last_seen = &mut self.last_seen;
        let stream_ended = match self.bus.as_mut().and_then(|b| b.signals.as_mut()) {
            Some(signals) => {
                let wait = async {
                    loop {
                        let Some(signal) = signals.next().await else {
                            return true;
                        };
                        match signal.args() {
                            Ok(args) => {
                                let key = (
                                    args.current_operation.to_string(),
                                    args.new_version.to_string(),
                                );
                                tracing::debug!(
                                    "update_engine StatusUpdate: {} {} ({:.0}%)",
                                    args.current_operation,
                                    args.new_version,
                                    args.progress * 100.0
                                );
                                if last_seen.as_ref() != Some(&key) {
                                    *last_seen = Some(key);
                                    return false;
                                }
                            }
                            // A signal we cannot read still says something happened.
                            Err(e) => {
                                tracing::debug!("unreadable StatusUpdate signal: {e}");
                                return false;
                            }
                        }
                    }
                };
                tokio::select! {
                    ended = wait => {
                        if !ended {
                            return;
                        }
                        true
                    }
                    _ = tokio::time::sleep_until(deadline) => false,
                }
            }
            None => {
                tokio::time::sleep_until(deadline).await;
                false
            }
        };
        if stream_ended {
            // The connection is most likely gone (bus restarted). Drop it; the next
            // `pending` or (rate-limited) `changed` connects again. Meanwhile poll.
            tracing::warn!(
                "update_engine's StatusUpdate signal stream on the {} ended; polling every {:?} until reconnected",
                self.bus_label(),
                self.poll_interval
            );
            self.bus = None;
            tokio::time::sleep_until(deadline).await;
        }
        self.next_poll = Instant::now() + self.poll_interval;
    }

    /// Calls AttemptUpdate(): update_engine checks for, downloads and installs an update in
    /// the background; its StatusUpdate signals tell the progress.
    pub async fn check_for_updates(&mut self) -> Result<(), UpdateError> {
        self.call(ATTEMPT_UPDATE, |proxy| async move {
            proxy.attempt_update().await
        })
        .await
    }

    /// After the reboot, update_engine must no longer say UPDATED_NEED_REBOOT, and
    /// os-release's VERSION_ID must be the version update_engine downloaded (when it named
    /// one). Otherwise the host booted the old partition again: the update did not take.
    pub async fn verify_after_boot(&mut self, before: &PendingUpdate) -> Result<(), UpdateError> {
        let status = self.status().await?;
        if status.needs_reboot() {
            let detail = match (&before.new_version, status.version()) {
                (Some(wanted), _) => format!(
                    "update_engine still reports {UPDATED_NEED_REBOOT}: Flatcar {wanted} was downloaded before the reboot but is not running"
                ),
                (None, Some(now)) => {
                    format!("update_engine still reports {UPDATED_NEED_REBOOT} (Flatcar {now})")
                }
                (None, None) => format!("update_engine still reports {UPDATED_NEED_REBOOT}"),
            };
            return Err(UpdateError::StillPending {
                updater: NAME,
                detail,
            });
        }
        // update_engine starts afresh after booting the old partition (idle,
        // no reboot needed), so only the running version tells that the new
        // one did not boot.
        let Some(wanted) = &before.new_version else {
            return Ok(());
        };
        match OsRelease::read(&self.os_release).await {
            Ok(os) if os.version_id == *wanted => {}
            Ok(os) if os.version_id.is_empty() => tracing::warn!(
                "{} has no VERSION_ID: cannot tell whether Flatcar {wanted} is running",
                self.os_release.display()
            ),
            Ok(os) => {
                return Err(UpdateError::OldVersionBooted {
                    os_release: self.os_release.clone(),
                    running: os.version_id,
                    wanted: wanted.clone(),
                })
            }
            Err(e) => tracing::warn!("{e}: cannot tell whether Flatcar {wanted} is running"),
        }
        Ok(())
    }
}
