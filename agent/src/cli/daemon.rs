//! `baton agent`: the daemon that runs the voter and/or the host agent under systemd.
//!
//! It starts what the config asks for, tells systemd when it is ready, and stops on SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::CliError;
use crate::config::Settings;
use crate::host::agent::HostAgent;
use crate::host::service_manager::ServiceManager;
use crate::server::voter::Voter;

pub(super) async fn run_agent(config: &Path, vendor_dir: &Path) -> Result<ExitCode, CliError> {
    let settings = Settings::load(config, vendor_dir)?;
    let notify = ServiceManager::from_env();
    tracing::info!(
        "baton {} starting as {} (config: {})",
        env!("CARGO_PKG_VERSION"),
        settings.node.name,
        settings
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CliError::Signal)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);

    let voter = match settings.this_voter() {
        Some(_) => Some(Voter::start(&settings).await?),
        None => None,
    };
    // What this host does besides serving the lease, in words for STATUS=.
    let mut agent = None;
    let idle_reason = if settings.cluster.voters.is_empty() {
        Some(format!(
            "not configured: no [cluster] voters in {}; baton reboots nothing until they are set",
            config.display()
        ))
    } else if !HostAgent::enabled(&settings) {
        Some(
            "serving the reboot lease; no updates watched on this host (updates.source = \"none\")"
                .to_string(),
        )
    } else {
        let host = HostAgent::start(settings.clone(), notify).await?;
        agent = Some(tokio::spawn(host.run(stopped)));
        None
    };
    match &idle_reason {
        Some(reason) => {
            tracing::info!("{reason}");
            notify.ready_with_status(reason);
        }
        None => notify.ready(),
    }
    // Without the host agent's loop, a ticker feeds the watchdog: it stops
    // if the runtime itself stalls.
    let pinger = agent.is_none().then(|| {
        let every = notify
            .watchdog_interval()
            .unwrap_or(Duration::from_secs(10));
        tokio::spawn(async move {
            loop {
                notify.watchdog_ping();
                tokio::time::sleep(every).await;
            }
        })
    });

    let agent_failed = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: stopping"); None }
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); None }
        done = async {
            match agent.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => Some(done),
    };
    notify.stopping();
    let _ = stop.send(true);
    if let Some(pinger) = pinger {
        pinger.abort();
    }
    let result = match agent_failed {
        Some(Ok(Err(e))) => Err(CliError::Agent(e)),
        Some(Err(join)) => Err(CliError::Usage(format!("host agent crashed: {join}"))),
        Some(Ok(Ok(()))) => Ok(()),
        None => {
            if let Some(task) = agent {
                // The agent leaves the queue if it waits; give it a moment.
                match tokio::time::timeout(Duration::from_secs(5), task).await {
                    Ok(Ok(Err(e))) => tracing::warn!("host agent stopped with: {e}"),
                    Ok(_) => {}
                    Err(_) => tracing::warn!("host agent did not stop within 5s"),
                }
            }
            Ok(())
        }
    };
    if let Some(voter) = voter {
        voter.stop().await;
    }
    result.map(|()| ExitCode::SUCCESS)
}
