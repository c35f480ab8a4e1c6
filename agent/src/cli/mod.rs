//! The `baton` command line: the daemon (`baton agent`) and the operator commands that talk gRPC to any voter.

pub mod client;
pub mod demo;
pub mod local_fleet;
pub mod logging;
pub mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use clap::{Args, Parser, Subcommand};
use tokio_stream::StreamExt;

use crate::cli::client::{Client, ClientError};
use crate::config::{ConfigError, Settings, DEFAULT_CONFIG_PATH, DEFAULT_VENDOR_DIR};
use crate::host::agent::HostAgent;
use crate::host::lease_client::{machine_id, slot_may_be_free};
use crate::host::service_manager::ServiceManager;
use crate::server::voter::{NodeError, Voter};

/// Exit code when a lease was not granted (yet): EX_TEMPFAIL, "try again".
pub const EXIT_QUEUED: u8 = 75;
/// Exit code for a broken configuration: EX_CONFIG. The systemd unit
/// does not restart on it (`RestartPreventExitStatus=78`).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code when no voter could be reached: EX_UNAVAILABLE.
pub const EXIT_UNAVAILABLE: u8 = 69;

/// baton: coordinated, lease-guarded reboots for Flatcar and Ubuntu fleets.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file; drop-ins are read from baton.d/ beside it.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "BATON_CONFIG")]
    pub config: PathBuf,
    /// Directory of vendor drop-ins, read before the configuration file.
    #[arg(long, global = true, default_value = DEFAULT_VENDOR_DIR, hide = true)]
    pub vendor_dir: PathBuf,
    /// Voter to talk to (HOST:PORT); default: this host's listen address, then the other voters.
    #[arg(long, global = true, env = "BATON_ENDPOINT")]
    pub endpoint: Option<String>,
    /// How long to wait for each answer from the cluster.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Where log events go: auto (the journal when run by systemd, else stderr), journal, plain, json.
    #[arg(long, global = true, value_enum, default_value_t = crate::cli::logging::LogFormat::Auto, env = "BATON_LOG_FORMAT")]
    pub log_format: crate::cli::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (until SIGTERM).
    Agent,
    /// Show leader, voters, and per group: holders and queue.
    Status {
        /// Print JSON (stable keys) instead of tables.
        #[arg(long)]
        json: bool,
        /// Answer from the contacted voter's own state, without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Take, queue for, or give back a reboot lease.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Stop granting leases, in one group or in all.
    Pause {
        /// Group to pause; all groups when left out.
        group: Option<String>,
        /// Why (shown in status and the journal).
        #[arg(long)]
        reason: String,
    },
    /// Grant leases again, in one group or in all.
    Resume { group: Option<String> },
    /// Take a lease away from a holder (force-release).
    Unlock { group: String, holder: String },
    /// Set how many hosts of a group may hold the lease at once.
    SetMax { group: String, max_holders: u32 },
    /// Print lease changes as they happen.
    Watch {
        /// Only this group.
        group: Option<String>,
    },
    /// Change the set of voters.
    #[command(subcommand)]
    Voter(VoterCommand),
    /// Roll a local fleet of real agents on loopback, one lease at a time, and show the timeline.
    Demo {
        /// How many hosts (3 of them are voters; with fewer, one is).
        #[arg(long, default_value_t = 5)]
        hosts: usize,
        /// End with the summary as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Give up if the fleet has not rolled by then.
        #[arg(long = "give-up-after", default_value = "5m", value_parser = parse_duration)]
        give_up_after: Duration,
        /// Leave the fleet's configs, state and agent logs in the temp dir.
        #[arg(long)]
        keep_files: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Take a slot; prints the fencing token. Exits 75 when queued instead.
    Acquire(AcquireArgs),
    /// Give the slot back (or leave the queue). Idempotent.
    Release {
        group: String,
        #[arg(long)]
        holder: String,
        /// Release only if the grant carries this token.
        #[arg(long)]
        token: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    pub group: String,
    /// Who takes the lease (usually the host name).
    #[arg(long)]
    pub holder: String,
    /// Stay queued (refreshing the place) until granted.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 75), and leave the queue.
    #[arg(long = "timeout", requires = "wait", value_parser = parse_duration)]
    pub wait_timeout: Option<Duration>,
    /// Machine id recorded with the grant (default: /etc/machine-id).
    #[arg(long)]
    pub machine_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum VoterCommand {
    /// Add a voter (caught up as a learner first). Never reuse an id.
    Add {
        id: u64,
        name: String,
        address: String,
    },
    /// Remove a voter from the cluster.
    Remove { id: u64 },
}

/// Parses "30s", "2h", "1h30m", "500ms" for clap, by the one duration rule.
fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::rules::durations::parse_duration(text).map_err(|e| e.to_string())
}

/// A failed command: the message chain to print and the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("demo: {0}")]
    Demo(#[from] crate::cli::demo::DemoError),
    #[error("host agent: {0}")]
    Agent(#[from] crate::host::agent::AgentError),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) => ExitCode::from(EXIT_CONFIG),
            CliError::Node(NodeError::NotAVoter { .. } | NodeError::WipedState { .. }) => {
                ExitCode::from(EXIT_CONFIG)
            }
            CliError::Client(ClientError::Unreachable { .. }) => ExitCode::from(EXIT_UNAVAILABLE),
            CliError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs one CLI invocation; returns the exit code to use on success paths
/// that are not plain success (e.g. queued).
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Agent => run_agent(&cli.config, &cli.vendor_dir).await,
        Command::Demo {
            hosts,
            json,
            give_up_after,
            keep_files,
        } => {
            crate::cli::demo::run(crate::cli::demo::DemoOptions {
                hosts: *hosts,
                keep_files: *keep_files,
                json: *json,
                timeout: *give_up_after,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        _ => run_client_command(&cli).await,
    }
}

async fn run_agent(config: &Path, vendor_dir: &Path) -> Result<ExitCode, CliError> {
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

/// Where to send CLI calls: `--endpoint`, else the local config's listen
/// address followed by the other voters.
fn endpoints(cli: &Cli) -> Result<Vec<String>, CliError> {
    if let Some(endpoint) = &cli.endpoint {
        return Ok(endpoint.split(',').map(|s| s.trim().to_string()).collect());
    }
    let settings = Settings::load(&cli.config, &cli.vendor_dir).map_err(|e| {
        CliError::Usage(format!(
            "no --endpoint given, and the local configuration gives none: {e}"
        ))
    })?;
    let list = crate::host::lease_client::lease_endpoints(&settings);
    if list.is_empty() {
        return Err(CliError::Usage(format!(
            "no --endpoint given, and {} lists no voters",
            cli.config.display()
        )));
    }
    Ok(list)
}

async fn run_client_command(cli: &Cli) -> Result<ExitCode, CliError> {
    let client = Client::connect(
        &endpoints(cli)?,
        cli.request_timeout.min(Duration::from_secs(3)),
        cli.request_timeout,
    )
    .await?;
    match &cli.command {
        Command::Agent | Command::Demo { .. } => {
            Err(CliError::Usage("not a client command".into()))
        }
        Command::Status { json, stale } => {
            let status = client
                .lease()
                .status(pb::StatusRequest { stale: *stale })
                .await
                .map_err(|s| client.error(s))?
                .into_inner();
            if *json {
                println!("{}", output::status_json(&status));
            } else {
                print!("{}", output::status_text(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lease(LeaseCommand::Acquire(args)) => acquire(&client, args).await,
        Command::Lease(LeaseCommand::Release {
            group,
            holder,
            token,
        }) => {
            let reply = client
                .lease()
                .release(pb::ReleaseRequest {
                    group: group.clone(),
                    holder: holder.clone(),
                    token: *token,
                })
                .await
                .map_err(|s| client.error(s))?
                .into_inner();
            if reply.released {
                println!("released {group} for {holder}");
            } else if reply.left_queue {
                println!("{holder} left the queue of {group}");
            } else {
                println!("{holder} held no lease in {group} (nothing to do)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { group, reason } => {
            let request = pb::PauseRequest {
                group: group.clone().unwrap_or_default(),
                reason: reason.clone(),
            };
            admin_done(&client, client.admin().pause(request).await)
        }
        Command::Resume { group } => {
            let request = pb::ResumeRequest {
                group: group.clone().unwrap_or_default(),
            };
            admin_done(&client, client.admin().resume(request).await)
        }
        Command::Unlock { group, holder } => {
            let request = pb::ForceReleaseRequest {
                group: group.clone(),
                holder: holder.clone(),
            };
            admin_done(&client, client.admin().force_release(request).await)
        }
        Command::SetMax { group, max_holders } => {
            let request = pb::SetMaxRequest {
                group: group.clone(),
                max_holders: *max_holders,
            };
            admin_done(&client, client.admin().set_max(request).await)
        }
        Command::Voter(VoterCommand::Add { id, name, address }) => {
            let request = pb::AddVoterRequest {
                id: *id,
                name: name.clone(),
                address: address.clone(),
            };
            admin_done(&client, client.admin().add_voter(request).await)
        }
        Command::Voter(VoterCommand::Remove { id }) => admin_done(
            &client,
            client
                .admin()
                .remove_voter(pb::RemoveVoterRequest { id: *id })
                .await,
        ),
        Command::Watch { group } => watch(&client, group.clone().unwrap_or_default()).await,
    }
}

fn admin_done(
    client: &Client,
    reply: Result<tonic::Response<pb::AdminResponse>, tonic::Status>,
) -> Result<ExitCode, CliError> {
    let reply = reply.map_err(|s| client.error(s))?.into_inner();
    println!("{}", reply.message);
    Ok(ExitCode::SUCCESS)
}

/// `lease acquire`: once, or with `--wait` until granted, refreshing the
/// queue place and re-trying as soon as the watch stream shows a change.
async fn acquire(client: &Client, args: &AcquireArgs) -> Result<ExitCode, CliError> {
    let request = pb::AcquireRequest {
        group: args.group.clone(),
        holder: args.holder.clone(),
        machine_id: args.machine_id.clone().unwrap_or_else(machine_id),
    };
    let deadline = args.wait_timeout.map(|t| Instant::now() + t);
    let mut watch: Option<tonic::Streaming<pb::WatchEvent>> = None;
    loop {
        let reply = client
            .lease()
            .acquire(request.clone())
            .await
            .map_err(|s| client.error(s))?
            .into_inner();
        let queued = match reply.outcome {
            Some(pb::acquire_response::Outcome::Granted(grant)) => {
                println!("{}", grant.token);
                return Ok(ExitCode::SUCCESS);
            }
            Some(pb::acquire_response::Outcome::Queued(q)) => q,
            None => {
                return Err(ClientError::Rejected {
                    endpoint: client.endpoint().to_string(),
                    message: "empty acquire reply".into(),
                }
                .into())
            }
        };
        if !args.wait {
            println!(
                "queued: position {} of {} ({})",
                queued.position, queued.waiters, queued.reason
            );
            return Ok(ExitCode::from(EXIT_QUEUED));
        }
        eprintln!(
            "waiting: position {} of {} ({})",
            queued.position, queued.waiters, queued.reason
        );
        if watch.is_none() {
            let stream = client
                .lease()
                .watch(pb::WatchRequest {
                    group: args.group.clone(),
                })
                .await
                .map_err(|s| client.error(s))?
                .into_inner();
            watch = Some(stream);
        }
        // Refresh well within the TTL, so one slow round trip never costs the place.
        let refresh = Duration::from_millis(queued.waiter_ttl_ms.max(300) / 3);
        let mut wake = Instant::now() + refresh;
        if let Some(deadline) = deadline {
            if Instant::now() >= deadline {
                let _ = client
                    .lease()
                    .release(pb::ReleaseRequest {
                        group: args.group.clone(),
                        holder: args.holder.clone(),
                        token: None,
                    })
                    .await;
                eprintln!(
                    "gave up waiting after {:?}; left the queue",
                    args.wait_timeout.unwrap_or_default()
                );
                return Ok(ExitCode::from(EXIT_QUEUED));
            }
            wake = wake.min(deadline);
        }
        if let Some(stream) = watch.as_mut() {
            // A change may free our slot: an acquire tells. If the stream
            // ended (voter went away), fall back to refresh polling.
            let woke = async {
                if !slot_may_be_free(stream).await {
                    std::future::pending::<()>().await
                }
            };
            let _ = tokio::time::timeout_at(wake.into(), woke).await;
        }
    }
}

/// `watch`: one line per lease change.
async fn watch(client: &Client, group: String) -> Result<ExitCode, CliError> {
    let mut stream = client
        .lease()
        .watch(pb::WatchRequest { group })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    while let Some(event) = stream.next().await {
        let event = event.map_err(|s| client.error(s))?;
        println!("{}", describe_event(&event));
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_event(event: &pb::WatchEvent) -> String {
    use pb::watch_event::Kind;
    let what = match &event.kind {
        Some(Kind::Snapshot(g)) => format!(
            "state: {} of {} held by [{}], queue [{}]",
            g.holders.len(),
            g.max_holders,
            g.holders
                .iter()
                .map(|h| h.holder.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            g.queue
                .iter()
                .map(|w| w.holder.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Kind::Granted(g)) => format!("granted to {} (token {})", g.holder, g.token),
        Some(Kind::Queued(q)) => format!("{} queued at position {}", q.holder, q.position),
        Some(Kind::Released(r)) => {
            format!("{} released (token {}, {})", r.holder, r.token, r.cause)
        }
        Some(Kind::WaiterDropped(h)) => format!("{h} dropped from the queue (TTL ran out)"),
        Some(Kind::LeftQueue(h)) => format!("{h} left the queue"),
        Some(Kind::Paused(r)) => format!("paused: {r}"),
        Some(Kind::Resumed(_)) => "resumed".to_string(),
        Some(Kind::PausedAll(r)) => format!("all groups paused: {r}"),
        Some(Kind::ResumedAll(_)) => "all groups resumed".to_string(),
        Some(Kind::MaxChanged(n)) => format!("max holders set to {n}"),
        Some(Kind::Resync(_)) => "state replaced by a snapshot; re-reading".to_string(),
        None => "unknown change".to_string(),
    };
    let group = if event.group.is_empty() {
        "*"
    } else {
        &event.group
    };
    format!("[{}] {group}: {what}", event.index)
}
