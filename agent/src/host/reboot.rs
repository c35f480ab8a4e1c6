//! The reboot call: logind over the system D-Bus, or a configured command — only with the lease held.

use std::process::Stdio;
use std::time::Duration;

use crate::config::RebootMethod;
use crate::host::held_lease::HeldLease;
use crate::host::updates::{bus_label, connect_bus, describe_status, display_command, output_tail};

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
    /// `[reboot] method = "command"` with an empty command.
    #[error("reboot.command is empty")]
    EmptyCommand,
    /// The reboot command could not be started.
    #[error("cannot run reboot command `{command}`: {source}")]
    Spawn {
        /// The command line as configured.
        command: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The reboot command exited non-zero or was killed.
    #[error("reboot command `{command}` failed ({status}){}", if output.is_empty() { String::new() } else { format!(": {output}") })]
    CommandFailed {
        /// The command line as configured.
        command: String,
        /// Exit status in words.
        status: String,
        /// The last lines of its output.
        output: String,
    },
    /// The reboot command did not return in time (and was killed).
    #[error("reboot command `{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout {
        /// The command line as configured.
        command: String,
        /// How long it was given.
        timeout: Duration,
    },
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
                    BATON_PHASE = "rebooting",
                    BATON_GROUP = lease.group(),
                    BATON_HOLDER = lease.holder(),
                    BATON_TOKEN = lease.token(),
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
                tracing::info!(
                    BATON_PHASE = "rebooting",
                    BATON_GROUP = lease.group(),
                    BATON_TOKEN = lease.token(),
                    "logind accepted the reboot"
                );
                Ok(())
            }
            Method::Command(argv) => {
                let command = display_command(argv);
                tracing::info!(
                    BATON_PHASE = "rebooting",
                    BATON_GROUP = lease.group(),
                    BATON_HOLDER = lease.holder(),
                    BATON_TOKEN = lease.token(),
                    "rebooting with `{command}`, holding the lease ({lease})"
                );
                run_reboot_command(argv, lease).await?;
                tracing::info!(
                    BATON_PHASE = "rebooting",
                    BATON_GROUP = lease.group(),
                    BATON_TOKEN = lease.token(),
                    "`{command}` exited 0"
                );
                Ok(())
            }
        }
    }
}

/// Runs the reboot command with the lease in its environment (the same variables the
/// drain hooks get), stdin closed, output captured for the error message.
async fn run_reboot_command(argv: &[String], lease: &HeldLease) -> Result<(), RebootError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RebootError::EmptyCommand);
    };
    let command = display_command(argv);
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("BATON_GROUP", lease.group())
        .env("BATON_HOLDER", lease.holder())
        .env("BATON_TOKEN", lease.token().to_string())
        .env("BATON_PHASE", "rebooting")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RebootError::Spawn {
            command: command.clone(),
            source,
        })?;
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => return Err(RebootError::Spawn { command, source }),
        Err(_) => {
            return Err(RebootError::CommandTimeout {
                command,
                timeout: COMMAND_TIMEOUT,
            })
        }
    };
    if output.status.success() {
        return Ok(());
    }
    Err(RebootError::CommandFailed {
        command,
        status: describe_status(output.status),
        output: output_tail(&output, 5),
    })
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
        assert!(matches!(err, RebootError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/reboot"), "{err}");

        let empty = Rebooter::new(&RebootMethod::Command(Vec::new()), None);
        assert!(matches!(
            empty.reboot(&lease()).await,
            Err(RebootError::EmptyCommand)
        ));
    }
}
