//! The reboot call: logind over D-Bus, or a configured command; only with the lease held.

use std::time::Duration;

use super::dbus::{bus_label, connect_bus};
use super::held_lease::HeldLease;
use super::process::{self, display_command, ProcessError};
use crate::config::RebootMethod;

const LOGIND_REBOOT: &str = "org.freedesktop.login1.Manager.Reboot";

/// A reboot command (e.g. `systemctl reboot`) only queues the shutdown and returns; one
/// that takes longer than this is stuck, and the agent should hear so rather than hold the
/// lease forever.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// systemd-logind's manager interface; only the call we need.
#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1",
    gen_blocking = false
)]
pub trait LoginManager {
    /// Reboots the machine; `interactive = false`: never wait for a polkit prompt.
    fn reboot(&self, interactive: bool) -> zbus::Result<()>;
}

/// Why the reboot call failed.
#[derive(Debug, thiserror::Error)]
pub enum RebootError {
    /// The bus could not be reached.
    #[error("cannot connect to D-Bus ({address}) to reboot through logind: {source}")]
    Connect {
        /// `system bus` or the configured `dbus_address`.
        address: String,
        /// What zbus said.
        source: zbus::Error,
    },
    /// logind refused or did not answer.
    #[error("D-Bus call {call} ({address}) failed: {source}")]
    Call {
        /// `system bus` or the configured `dbus_address`.
        address: String,
        /// Interface and method.
        call: &'static str,
        /// What zbus said (e.g. access denied by polkit, an inhibitor, no logind).
        source: zbus::Error,
    },
    /// The reboot command failed, hung, or could not be started.
    #[error("reboot command: {0}")]
    Command(#[from] ProcessError),
}

#[derive(Debug, Clone)]
enum Method {
    Logind,
    Command(Vec<String>),
}

/// Makes this host reboot, given proof that it holds the lease.
#[derive(Debug, Clone)]
pub struct Rebooter {
    method: Method,
    dbus_address: Option<String>,
}

impl Rebooter {
    /// `dbus_address`: the bus logind is on (None: the system bus).
    pub fn new(method: &RebootMethod, dbus_address: Option<&str>) -> Self {
        let method = match method {
            RebootMethod::Logind => Method::Logind,
            RebootMethod::Command(argv) => Method::Command(argv.clone()),
        };
        Rebooter {
            method,
            dbus_address: dbus_address.map(str::to_string),
        }
    }

    /// Reboots this host: org.freedesktop.login1.Manager.Reboot(false) on the bus, or runs
    /// the command (exit 0 expected). Takes the held lease as proof; logs holder/token. It
    /// calls once and never retries: whether to try again is the caller's decision, made
    /// after re-checking the lease.
    pub async fn reboot(&self, lease: &HeldLease) -> Result<(), RebootError> {
        match &self.method {
            Method::Logind => {
                let address = bus_label(self.dbus_address.as_deref());
                tracing::info!(
                    "rebooting through logind ({LOGIND_REBOOT} on the {address}), holding the lease ({lease})"
                );
                let conn = connect_bus(self.dbus_address.as_deref())
                    .await
                    .map_err(|source| RebootError::Connect {
                        address: address.clone(),
                        source,
                    })?;
                let proxy = LoginManagerProxy::builder(&conn)
                    .cache_properties(zbus::proxy::CacheProperties::No)
                    .build()
                    .await
                    .map_err(|source| RebootError::Connect {
                        address: address.clone(),
                        source,
                    })?;
                proxy
                    .reboot(false)
                    .await
                    .map_err(|source| RebootError::Call {
                        address,
                        call: LOGIND_REBOOT,
                        source,
                    })?;
                tracing::info!("logind accepted the reboot");
                Ok(())
            }
            Method::Command(argv) => {
                let command = display_command(argv);
                tracing::info!("rebooting with `{command}`, holding the lease ({lease})");
                run_reboot_command(argv, lease).await?;
                tracing::info!("`{command}` exited 0");
                Ok(())
            }
        }
    }
}

/// Runs the reboot command with the lease in its environment (the same variables the
/// drain hooks get); it must exit 0 within [`COMMAND_TIMEOUT`].
async fn run_reboot_command(argv: &[String], lease: &HeldLease) -> Result<(), RebootError> {
    process::run(argv, &lease.env("rebooting"), Some(COMMAND_TIMEOUT))
        .await?
        .success()?;
    Ok(())
}

// The reboot tests live here, not in tests/dbus.rs, because they need a `HeldLease`, and
// only the crate itself can make one (`HeldLease::from_grant` is pub(crate) on purpose).
#[cfg(test)]
mod tests {
    use super::*;
    use baton_testkit::dbus::{DbusDaemon, LogindService};

    fn lease() -> HeldLease {
        HeldLease::from_grant("workers", "host-a", 42)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logind_reboot_is_called_once_per_call_with_interactive_false() {
        let bus = DbusDaemon::start();
        let logind = LogindService::start(&bus.address()).await;
        let address = bus.address();
        let rebooter = Rebooter::new(&RebootMethod::Logind, Some(&address));

        rebooter.reboot(&lease()).await.expect("first reboot call");
        assert_eq!(logind.reboot_calls(), vec![false]);

        rebooter.reboot(&lease()).await.expect("second reboot call");
        assert_eq!(logind.reboot_calls(), vec![false, false]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logind_missing_is_a_clear_error() {
        let bus = DbusDaemon::start();
        let address = bus.address();
        let rebooter = Rebooter::new(&RebootMethod::Logind, Some(&address));
        let err = rebooter
            .reboot(&lease())
            .await
            .expect_err("no logind on this bus");
        let text = err.to_string();
        assert!(matches!(err, RebootError::Call { .. }), "{text}");
        assert!(
            text.contains(LOGIND_REBOOT) && text.contains(&address),
            "{text}"
        );
    }

    #[tokio::test]
    async fn bus_missing_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let address = format!("unix:path={}", dir.path().join("no-bus").display());
        let rebooter = Rebooter::new(&RebootMethod::Logind, Some(&address));
        let err = rebooter.reboot(&lease()).await.expect_err("no bus there");
        assert!(matches!(err, RebootError::Connect { .. }), "{err}");
        assert!(err.to_string().contains(&address), "{err}");
    }

    #[tokio::test]
    async fn command_method_runs_the_command_with_the_lease_in_its_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = dir.path().join("rebooted");
        let script = format!(
            "echo \"$BATON_GROUP $BATON_HOLDER $BATON_TOKEN\" > '{}'",
            marker.display()
        );
        let rebooter = Rebooter::new(
            &RebootMethod::Command(vec!["sh".into(), "-c".into(), script]),
            None,
        );
        rebooter.reboot(&lease()).await.expect("reboot command");
        let written = std::fs::read_to_string(&marker).expect("the command ran");
        assert_eq!(written.trim(), "workers host-a 42");
    }

    #[tokio::test]
    async fn failing_command_is_an_error_naming_it() {
        let rebooter = Rebooter::new(
            &RebootMethod::Command(vec![
                "sh".into(),
                "-c".into(),
                "echo nope >&2; exit 3".into(),
            ]),
            None,
        );
        let err = rebooter.reboot(&lease()).await.expect_err("exit 3");
        let text = err.to_string();
        assert!(
            text.contains("exit status 3") && text.contains("nope") && text.contains("sh -c"),
            "{text}"
        );

        let missing = Rebooter::new(
            &RebootMethod::Command(vec!["/nonexistent/reboot".into()]),
            None,
        );
        let err = missing.reboot(&lease()).await.expect_err("no such program");
        assert!(
            matches!(err, RebootError::Command(ProcessError::Spawn { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/reboot"), "{err}");

        let empty = Rebooter::new(&RebootMethod::Command(Vec::new()), None);
        assert!(matches!(
            empty.reboot(&lease()).await,
            Err(RebootError::Command(ProcessError::Empty))
        ));
    }
}
