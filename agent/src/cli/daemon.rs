//! `baton agent`: the daemon that runs the voter and/or the host agent under systemd.
//!
//! It starts what the config asks for, tells systemd when it is ready, and stops on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::logging::error_chain;
use super::CliError;
use crate::config::{Settings, TlsSettings};
use crate::host::agent::HostAgent;
use crate::host::service_manager::ServiceManager;
use crate::rules::access::Role;
use crate::server::fleetlock::FleetLockServer;
use crate::server::metrics::VoterMetrics;
use crate::server::voter::Voter;
use crate::transport::metrics::{MetricsServer, Source};
use crate::transport::tls::{TlsMode, TlsState};

/// How often the TLS files are looked at for changes (SIGHUP: at once).
const TLS_CHECK: Duration = Duration::from_secs(10);

/// A certificate this close to its expiry is warned about, daily.
const EXPIRY_WARNING_SECS: i64 = 14 * 24 * 60 * 60;

/// The STATUS= warning topic of TLS.
const TLS_WARNING: &str = "tls";

/// When the daemon lets go of its start-up pages: after the agent's first
/// rounds (stray check, orders, update source) and the voter's first
/// election and catch-up ran.
const RELEASE_STARTUP_PAGES_AFTER: Duration = Duration::from_secs(30);

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
    warn_if_exposed(&settings);
    // A host with no voters talks to nobody: it needs no certificate yet
    // (a fresh install says what is missing instead of failing on TLS).
    let configured = !settings.cluster.voters.is_empty();
    let tls = if configured {
        tls_mode(&settings)?
    } else {
        TlsMode::Insecure
    };
    let tls_watch = match &tls {
        TlsMode::Mutual(state) => Some(tokio::spawn(watch_tls(state.clone(), notify.clone()))),
        TlsMode::Insecure if configured => {
            tracing::warn!(
                "INSECURE: [tls] insecure = true: plaintext, and anyone who reaches this host's port may call it"
            );
            notify.warn(
                TLS_WARNING,
                Some("INSECURE: no TLS ([tls] insecure = true)".into()),
            );
            None
        }
        TlsMode::Insecure => None,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CliError::Signal)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);

    let mut voter = match settings.this_voter() {
        Some(_) => match start_voter(&settings, &tls, &notify, &mut term).await? {
            Some(voter) => Some(voter),
            None => return Ok(ExitCode::SUCCESS),
        },
        None => None,
    };
    // What this host does besides serving the lease, in words for STATUS=.
    let mut agent = None;
    let mut host_metrics = None;
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
        match HostAgent::start(settings.clone(), notify.clone(), tls.clone()).await {
            Ok(host) => {
                host_metrics = Some(host.metrics());
                agent = Some(tokio::spawn(host.run(stopped)));
                None
            }
            // The voter serves the whole fleet: one host's broken agent
            // state must not take it down.
            Err(e) if voter.is_some() => Some(agent_down(&e.to_string())),
            Err(e) => return Err(e.into()),
        }
    };
    // Off unless `[metrics] listen` is set; stops when dropped (at return).
    let _metrics = match &settings.metrics {
        Some(metrics) => {
            let mut sources: Vec<Source> = Vec::new();
            let voter_metrics = voter
                .as_ref()
                .map(|v| VoterMetrics::start(v.cluster().clone(), v.call_latency()));
            if let Some(voter_metrics) = &voter_metrics {
                sources.push(voter_metrics.source());
            }
            if let Some(host_metrics) = &host_metrics {
                sources.push(host_metrics.source());
            }
            let server = MetricsServer::start(metrics.listen, tls.clone(), sources)
                .await
                .map_err(CliError::Metrics)?;
            Some((server, voter_metrics))
        }
        None => None,
    };
    // Off unless `[fleetlock] listen` is set (voters only, see config);
    // stops when dropped (at return).
    let _fleetlock = match (&settings.fleetlock, &voter) {
        (Some(fleetlock), Some(voter)) => Some(
            FleetLockServer::start(fleetlock, voter.cluster().clone(), tls.clone())
                .await
                .map_err(CliError::FleetLock)?,
        ),
        _ => None,
    };
    match &idle_reason {
        Some(reason) => {
            tracing::info!("{reason}");
            notify.ready_with_status(reason);
        }
        None => notify.ready(),
    }
    tokio::spawn(release_startup_pages_later());

    // The host agent pings the watchdog from its own loop; this loop pings
    // when there is no agent, and, with a voter, pings (and lets the agent
    // ping) only while the raft core and the gRPC server answer.
    let mut ticks = tokio::time::interval(
        notify
            .watchdog_interval()
            .unwrap_or(Duration::from_secs(10)),
    );
    let stop_cause = loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break StopCause::Signal }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); break StopCause::Signal }
            failure = async {
                match voter.as_mut() {
                    Some(voter) => voter.failure().await,
                    None => std::future::pending().await,
                }
            } => break StopCause::VoterFailed(failure),
            done = async {
                match agent.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                agent = None;
                let failed = match done {
                    Ok(Ok(())) => break StopCause::Signal,
                    Ok(Err(e)) => CliError::Agent(e),
                    Err(join) => CliError::Usage(format!("host agent crashed: {join}")),
                };
                if voter.is_none() {
                    break StopCause::AgentFailed(failed);
                }
                notify.status(&agent_down(&error_chain(&failed)));
            }
            _ = ticks.tick() => {
                if let Some(voter) = &voter {
                    let alive = voter.responsive().await;
                    if !alive {
                        tracing::error!("the raft core or the gRPC server does not answer: not feeding the watchdog");
                    }
                    notify.set_others_alive(alive);
                }
                if agent.is_none() {
                    notify.watchdog_ping();
                }
            }
        }
    };
    notify.stopping();
    let _ = stop.send(true);
    if let Some(tls_watch) = tls_watch {
        tls_watch.abort();
    }
    let result = match stop_cause {
        StopCause::VoterFailed(failure) => {
            // Exit non-zero at once: systemd restarts baton from what is on
            // disk. The agent's own state is safe on disk at every step.
            if let Some(task) = agent {
                task.abort();
            }
            return Err(failure.into());
        }
        StopCause::AgentFailed(e) => Err(e),
        StopCause::Signal => {
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

/// How often a voter still starting tells systemd so (and extends its start
/// timeout by twice this).
const START_PROGRESS: Duration = Duration::from_secs(10);

/// Once the daemon has settled, its start-up code leaves memory
/// (`cli::resident`); what it uses again comes back.
async fn release_startup_pages_later() {
    tokio::time::sleep(RELEASE_STARTUP_PAGES_AFTER).await;
    match super::resident::release_startup_pages() {
        Ok(bytes) => tracing::debug!(
            "paged out the binary's start-up pages ({:.1} MiB mapped)",
            bytes as f64 / (1024.0 * 1024.0)
        ),
        Err(e) => tracing::debug!("cannot page out the binary's start-up pages: {e}"),
    }
}

/// Starts the voter. A voter without state waits, for as long as it takes,
/// until a majority of the voters answer (the operator may start them one
/// by one): meanwhile SIGTERM/SIGINT stop it at once (`None`), and systemd
/// hears that it is still starting, so it neither hangs a `systemctl stop`
/// nor is killed by `TimeoutStartSec=`.
async fn start_voter(
    settings: &Settings,
    tls: &TlsMode,
    notify: &ServiceManager,
    term: &mut tokio::signal::unix::Signal,
) -> Result<Option<Voter>, CliError> {
    let started = tokio::time::Instant::now();
    let start = Voter::start(settings, tls.clone());
    tokio::pin!(start);
    let mut progress = tokio::time::interval_at(started + START_PROGRESS, START_PROGRESS);
    loop {
        tokio::select! {
            voter = &mut start => return Ok(Some(voter?)),
            _ = term.recv() => {
                tracing::info!("SIGTERM while the voter was starting: stopping");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT while the voter was starting: stopping");
                break;
            }
            _ = progress.tick() => {
                notify.extend_start(START_PROGRESS * 2);
                notify.status(&format!(
                    "voter starting for {}s: a voter without state waits until a majority of the configured voters answer (see the log)",
                    started.elapsed().as_secs()
                ));
            }
        }
    }
    // Dropping the half-started voter ends its tasks with the runtime: no
    // worse than a crash, which the store survives (writes are fsynced
    // before they are acknowledged).
    notify.stopping();
    Ok(None)
}

/// Why the daemon's main loop ended.
enum StopCause {
    /// SIGTERM/SIGINT, or the agent finished on its own.
    Signal,
    VoterFailed(crate::server::voter::NodeError),
    AgentFailed(CliError),
}

/// The log line and STATUS= of a voter whose host agent stopped.
fn agent_down(error: &str) -> String {
    let text = format!(
        "host agent stopped: {error}; this voter keeps serving the lease, but this host takes no updates until the cause is fixed and baton restarted (systemctl restart baton)"
    );
    tracing::error!("{text}");
    text
}

/// How this daemon talks to the cluster; unreadable TLS files are a
/// configuration error (the unit does not restart on it).
/// The certificate must name this host as `node.name` (the cluster takes
/// lease calls only for the certificate's own name) and, on a voter, carry
/// the voter role (or raft refuses it): said at start, not at 3 a.m.
fn tls_mode(settings: &Settings) -> Result<TlsMode, CliError> {
    let files = match &settings.tls {
        TlsSettings::Insecure => return Ok(TlsMode::Insecure),
        TlsSettings::Mutual(files) => files,
    };
    let state = TlsState::load(files)?;
    let own = state.current().own.clone();
    if own.name != settings.node.name {
        return Err(CliError::Identity(format!(
            "{} names {:?}, but node.name is {:?}: the cluster accepts lease calls only for the certificate's own name; issue it for {:?}",
            files.cert.display(),
            own.name,
            settings.node.name,
            settings.node.name
        )));
    }
    if settings.this_voter().is_some() && own.role != Some(Role::Voter) {
        return Err(CliError::Identity(format!(
            "{} has role {}, but {} is a voter: issue it with --role voter (and --address for each address peers dial)",
            files.cert.display(),
            own.role.map_or("none", |r| r.as_str()),
            settings.node.name
        )));
    }
    Ok(TlsMode::Mutual(state))
}

/// Reads the TLS files again when they change (or on SIGHUP), so a
/// rotation needs no restart; warns when the certificate nears its expiry.
async fn watch_tls(state: Arc<TlsState>, notify: ServiceManager) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(TLS_CHECK);
    let mut warned_day = None;
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let reloaded = if forced {
            state.reload().map(|()| true)
        } else {
            state.reload_if_changed()
        };
        match reloaded {
            Ok(true) => {
                let own = &state.current().own;
                tracing::info!(
                    "TLS: read {} again: {} ({}), valid until {}",
                    state.files().cert.display(),
                    own.name,
                    own.role.map_or("no role", |r| r.as_str()),
                    unix_date(own.not_after)
                );
                warned_day = None;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("TLS: cannot use the changed files, keeping the old ones: {e}")
            }
        }
        let not_after = state.current().own.not_after;
        let now = jiff::Timestamp::now().as_second();
        if not_after - now < EXPIRY_WARNING_SECS {
            let days = (not_after - now).div_euclid(86_400);
            let text = format!(
                "certificate {} expires {} ({days} days)",
                state.files().cert.display(),
                unix_date(not_after)
            );
            if warned_day != Some(now / 86_400) {
                tracing::warn!(
                    "TLS: {text}; issue a new one and replace the file (no restart needed)"
                );
                warned_day = Some(now / 86_400);
            }
            notify.warn(TLS_WARNING, Some(text));
        } else {
            notify.warn(TLS_WARNING, None);
        }
    }
}

/// Unix seconds as an RFC 3339 date, for messages.
fn unix_date(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

/// Warns when a config file is writable, or the TLS key readable, by others:
/// the daemon runs as root and reboots the machine.
fn warn_if_exposed(settings: &Settings) {
    let mode = |path: &Path| std::fs::metadata(path).ok().map(|m| m.permissions().mode());
    for file in &settings.sources {
        if mode(file).is_some_and(|m| m & 0o022 != 0) {
            tracing::warn!(
                "{} is writable by other users; it decides when this host reboots (chmod go-w)",
                file.display()
            );
        }
    }
    if let TlsSettings::Mutual(files) = &settings.tls {
        if mode(&files.key).is_some_and(|m| m & 0o077 != 0) {
            tracing::warn!(
                "{} is readable by other users; it is this host's identity (chmod 600)",
                files.key.display()
            );
        }
    }
}
