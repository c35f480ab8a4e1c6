//! User commands: blockers before queueing, and hooks that run only with the lease held.

use tracing::{info, warn};

use super::held_lease::HeldLease;
use super::process::{self, display_command, ProcessError};
use crate::config::CommandSettings;

/// Runs `settings.command` with `env` added and its timeout; Ok when it exits 0.
async fn run(settings: &CommandSettings, env: &[(&str, String)]) -> Result<(), ProcessError> {
    process::run(&settings.command, env, Some(settings.timeout))
        .await?
        .success()
        .map(|_| ())
}

/// Runs every blocker; the first that fails is the answer. Blockers run
/// before queueing, so they get no lease environment.
pub async fn check_blockers(blockers: &[CommandSettings]) -> Result<(), ProcessError> {
    for blocker in blockers {
        run(blocker, &[]).await?;
    }
    Ok(())
}

/// Runs hooks in order with the lease's environment. A failing hook stops
/// the run with its error, unless it is marked `force` (then it is logged
/// and the next one runs).
pub async fn run_hooks(
    hooks: &[CommandSettings],
    lease: &HeldLease,
    phase: &str,
) -> Result<(), ProcessError> {
    let env = lease.env(phase);
    for hook in hooks {
        match run(hook, &env).await {
            Ok(_) => info!("hook {} succeeded", display_command(&hook.command)),
            Err(e) if hook.force => warn!("hook failed, carrying on (force = true): {e}"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
