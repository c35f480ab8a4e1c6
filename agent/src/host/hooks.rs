//! User commands: blockers (must pass before queueing) and before/after-reboot hooks (run only with the lease held), each with a timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tracing::{info, warn};

use crate::config::CommandSettings;
use crate::host::held_lease::HeldLease;

/// Why a command did not succeed. Carries its output for the journal.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{command}: cannot start: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command}: no exit within {timeout:?} (killed){}", tail(output))]
    Timeout {
        command: String,
        timeout: Duration,
        output: String,
    },
    #[error("{command}: exit {code}{}", tail(output))]
    Failed {
        command: String,
        code: String,
        output: String,
    },
}

/// The last lines of a command's output, for one readable log line.
fn tail(output: &str) -> String {
    let text = output.trim();
    if text.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    format!(": {}", lines[start..].join(" | "))
}

/// The command line as one string, for messages.
pub fn command_line(command: &[String]) -> String {
    command.join(" ")
}

/// Runs `settings.command` with `env` added, kills it after the timeout,
/// and returns its combined output on success.
pub async fn run(
    settings: &CommandSettings,
    env: &[(&str, String)],
) -> Result<String, CommandError> {
    let shown = command_line(&settings.command);
    let Some((program, args)) = settings.command.split_first() else {
        return Err(CommandError::Spawn {
            command: shown,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        });
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().map_err(|source| CommandError::Spawn {
        command: shown.clone(),
        source,
    })?;
    match tokio::time::timeout(settings.timeout, child.wait_with_output()).await {
        Err(_) => Err(CommandError::Timeout {
            command: shown,
            timeout: settings.timeout,
            output: String::new(),
        }),
        Ok(Err(source)) => Err(CommandError::Spawn {
            command: shown,
            source,
        }),
        Ok(Ok(out)) => {
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            if out.status.success() {
                Ok(output)
            } else {
                Err(CommandError::Failed {
                    command: shown,
                    code: out
                        .status
                        .code()
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "by signal".to_string()),
                    output,
                })
            }
        }
    }
}

/// Runs every blocker; the first that fails is the answer. Blockers run
/// before queueing, so they get no lease environment.
pub async fn check_blockers(blockers: &[CommandSettings]) -> Result<(), CommandError> {
    for blocker in blockers {
        run(blocker, &[]).await?;
    }
    Ok(())
}

/// The environment hooks see.
fn lease_env(lease: &HeldLease, phase: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BATON_GROUP", lease.group().to_string()),
        ("BATON_HOLDER", lease.holder().to_string()),
        ("BATON_TOKEN", lease.token().to_string()),
        ("BATON_PHASE", phase.to_string()),
    ]
}

/// Runs hooks in order with the lease's environment. A failing hook stops
/// the run with its error, unless it is marked `force` (then it is logged
/// and the next one runs).
pub async fn run_hooks(
    hooks: &[CommandSettings],
    lease: &HeldLease,
    phase: &str,
) -> Result<(), CommandError> {
    let env = lease_env(lease, phase);
    for hook in hooks {
        match run(hook, &env).await {
            Ok(_) => info!(
                BATON_PHASE = phase,
                "hook {} succeeded",
                command_line(&hook.command)
            ),
            Err(e) if hook.force => warn!(
                BATON_PHASE = phase,
                "hook failed, carrying on (force = true): {e}"
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(script: &str, timeout_ms: u64, force: bool) -> CommandSettings {
        CommandSettings {
            command: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
            force,
        }
    }

    #[tokio::test]
    async fn hooks_get_the_lease_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!(
            "echo $BATON_GROUP $BATON_HOLDER $BATON_TOKEN $BATON_PHASE > {}",
            out.display()
        );
        let lease = HeldLease::from_grant("workers", "h1", 42);
        run_hooks(&[cmd(&script, 5000, false)], &lease, "draining")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(out).unwrap().trim(),
            "workers h1 42 draining"
        );
    }

    #[tokio::test]
    async fn a_failing_hook_stops_the_run_with_its_output() {
        let lease = HeldLease::from_grant("g", "h", 1);
        let err = run_hooks(
            &[
                cmd("echo draining failed >&2; exit 3", 5000, false),
                cmd("exit 0", 5000, false),
            ],
            &lease,
            "draining",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("exit 3"), "{err}");
        assert!(err.contains("draining failed"), "{err}");
    }

    #[tokio::test]
    async fn a_forced_hook_failure_does_not_stop_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("second-ran");
        let lease = HeldLease::from_grant("g", "h", 1);
        run_hooks(
            &[
                cmd("exit 1", 5000, true),
                cmd(&format!("touch {}", marker.display()), 5000, false),
            ],
            &lease,
            "draining",
        )
        .await
        .unwrap();
        assert!(marker.exists());
    }

    #[tokio::test]
    async fn a_hook_that_hangs_is_killed_at_its_timeout() {
        let started = std::time::Instant::now();
        let err = check_blockers(&[cmd("sleep 30", 200, false)])
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error_naming_it() {
        let settings = CommandSettings {
            command: vec!["/nonexistent/blocker".into()],
            timeout: Duration::from_secs(1),
            force: false,
        };
        let err = check_blockers(&[settings]).await.unwrap_err().to_string();
        assert!(err.contains("/nonexistent/blocker"), "{err}");
    }
}
