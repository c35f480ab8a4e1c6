//! The operator commands: one gRPC call (or stream) to any voter, its output and exit code.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use tokio_stream::StreamExt;

use super::client::{Client, ClientError};
use super::output;
use super::{AcquireArgs, Cli, CliError, Command, LeaseCommand, VoterCommand, EXIT_QUEUED};
use crate::config::{ConfigError, Settings, TlsFiles, TlsSettings};
use crate::host::lease_client::{lease_endpoints, machine_id};
use crate::transport::tls::{TlsMode, TlsState};

/// Where to send CLI calls: `--endpoint`, else the local config's listen
/// address followed by the other voters.
fn endpoints(cli: &Cli, local: &Result<Settings, ConfigError>) -> Result<Vec<String>, CliError> {
    if let Some(endpoint) = &cli.endpoint {
        return Ok(endpoint.split(',').map(|s| s.trim().to_string()).collect());
    }
    let settings = local.as_ref().map_err(|e| {
        CliError::Usage(format!(
            "no --endpoint given, and the local configuration gives none: {e}"
        ))
    })?;
    let list = lease_endpoints(settings);
    if list.is_empty() {
        return Err(CliError::Usage(format!(
            "no --endpoint given, and {} lists no voters",
            cli.config.display()
        )));
    }
    Ok(list)
}

/// How to talk to the cluster: `--insecure`, else TLS with the files given
/// by flags, each defaulting to the local config's `[tls]` (so `baton
/// status` on a host just works), or to the standard paths without one.
fn tls_mode(cli: &Cli, local: &Result<Settings, ConfigError>) -> Result<TlsMode, CliError> {
    if cli.insecure {
        return Ok(TlsMode::Insecure);
    }
    let configured = match local.as_ref().map(|s| &s.tls) {
        Ok(TlsSettings::Insecure)
            if cli.ca.is_none() && cli.cert.is_none() && cli.key.is_none() =>
        {
            return Ok(TlsMode::Insecure)
        }
        Ok(TlsSettings::Mutual(files)) => files.clone(),
        _ => TlsFiles::default(),
    };
    let files = TlsFiles {
        ca: cli.ca.clone().unwrap_or(configured.ca),
        cert: cli.cert.clone().unwrap_or(configured.cert),
        key: cli.key.clone().unwrap_or(configured.key),
    };
    Ok(TlsMode::Mutual(TlsState::load(&files)?))
}

pub(super) async fn run_client_command(cli: &Cli) -> Result<ExitCode, CliError> {
    let local = Settings::load(&cli.config, &cli.vendor_dir);
    let client = Client::connect(
        &endpoints(cli, &local)?,
        cli.request_timeout.min(Duration::from_secs(3)),
        cli.request_timeout,
        tls_mode(cli, &local)?,
    )
    .await?;
    match &cli.command {
        Command::Agent | Command::Demo { .. } | Command::Cert(_) => {
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
        Command::Hosts { json } => {
            let hosts = client
                .fleet()
                .hosts(pb::HostsRequest {})
                .await
                .map_err(|s| client.error(s))?
                .into_inner();
            if *json {
                println!("{}", super::hosts::hosts_json(&hosts));
            } else {
                print!("{}", super::hosts::hosts_text(&hosts));
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
        Command::Hold { host, reason } => {
            let request = pb::HoldRequest {
                holder: host.clone(),
                reason: reason.clone(),
            };
            admin_done(&client, client.control().hold(request).await)
        }
        Command::Unhold { host } => {
            let request = pb::UnholdRequest {
                holder: host.clone(),
            };
            admin_done(&client, client.control().unhold(request).await)
        }
        Command::RebootNow { host, cancel } => {
            let request = pb::RebootNowRequest {
                holder: host.clone(),
                cancel: *cancel,
            };
            admin_done(&client, client.control().reboot_now(request).await)
        }
    }
}

fn admin_done(
    client: &Client,
    reply: Result<tonic::Response<pb::AdminResponse>, tonic::Status>,
) -> Result<ExitCode, CliError> {
    let reply = reply.map_err(|s| client.error(s))?.into_inner();
    println!("{}", output::printable(&reply.message));
    Ok(ExitCode::SUCCESS)
}

/// `lease acquire`: once, or with `--wait` until granted. Waiting holds a
/// `Lease.Wait` stream open: the place in the queue lives as long as this
/// process does, and costs the cluster nothing meanwhile.
async fn acquire(client: &Client, args: &AcquireArgs) -> Result<ExitCode, CliError> {
    let request = pb::AcquireRequest {
        group: args.group.clone(),
        holder: args.holder.clone(),
        machine_id: args.machine_id.clone().unwrap_or_else(machine_id),
        released: None,
    };
    if !args.wait {
        return match acquire_once(client, &request).await? {
            pb::acquire_response::Outcome::Granted(grant) => {
                println!("{}", grant.token);
                Ok(ExitCode::SUCCESS)
            }
            pb::acquire_response::Outcome::Queued(queued) => {
                println!("queued: {}", describe_queued(&queued));
                Ok(ExitCode::from(EXIT_QUEUED))
            }
        };
    }
    let deadline = args.wait_timeout.map(|t| Instant::now() + t);
    let wait_request = pb::WaitRequest {
        group: request.group.clone(),
        holder: request.holder.clone(),
        machine_id: request.machine_id.clone(),
        released: request.released,
    };
    loop {
        let mut stream = client
            .lease()
            .wait(wait_request.clone())
            .await
            .map_err(|s| client.error(s))?
            .into_inner();
        let granted = loop {
            let next = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.into(), stream.next()).await {
                        Ok(next) => next,
                        Err(_) => return give_up(client, args).await,
                    }
                }
                None => stream.next().await,
            };
            match next {
                Some(Ok(pb::WaitEvent {
                    kind: Some(pb::wait_event::Kind::Queued(queued)),
                })) => eprintln!("waiting: {}", describe_queued(&queued)),
                Some(Ok(pb::WaitEvent {
                    kind: Some(pb::wait_event::Kind::Granted(grant)),
                })) => break grant,
                Some(Ok(pb::WaitEvent { kind: None })) => {}
                Some(Err(status)) => return Err(client.error(status).into()),
                None => {
                    return Err(ClientError::Rejected {
                        endpoint: client.endpoint().to_string(),
                        message: "the wait stream ended without a grant".into(),
                    }
                    .into())
                }
            }
        };
        if granted.claimed {
            println!("{}", granted.token);
            return Ok(ExitCode::SUCCESS);
        }
        // The slot was handed over on release: take it (it is ours until our
        // session lapses, which a live process does not let happen).
        match acquire_once(client, &request).await? {
            pb::acquire_response::Outcome::Granted(grant) => {
                println!("{}", grant.token);
                return Ok(ExitCode::SUCCESS);
            }
            pb::acquire_response::Outcome::Queued(queued) => {
                eprintln!("the slot was taken back before we took it; waiting again");
                eprintln!("waiting: {}", describe_queued(&queued));
            }
        }
    }
}

/// One `Lease.Acquire` call.
async fn acquire_once(
    client: &Client,
    request: &pb::AcquireRequest,
) -> Result<pb::acquire_response::Outcome, CliError> {
    let reply = client
        .lease()
        .acquire(request.clone())
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    reply.outcome.ok_or_else(|| {
        ClientError::Rejected {
            endpoint: client.endpoint().to_string(),
            message: "empty acquire reply".into(),
        }
        .into()
    })
}

fn describe_queued(queued: &pb::Queued) -> String {
    format!(
        "position {} of {} ({})",
        queued.position,
        queued.waiters,
        output::printable(&queued.reason)
    )
}

/// `--wait-timeout` ran out: leave the queue and say so.
async fn give_up(client: &Client, args: &AcquireArgs) -> Result<ExitCode, CliError> {
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
    Ok(ExitCode::from(EXIT_QUEUED))
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
        Some(Kind::WaiterDropped(h)) => format!("{h} dropped from the queue (session lapsed)"),
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
    // Names and reasons come from the network: never let them drive the terminal.
    output::printable(&format!("[{}] {group}: {what}", event.index))
}
