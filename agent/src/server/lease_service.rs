//! The public Lease service: Acquire, Release, Status and Watch, answered on any voter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_proto::v1::lease_client::LeaseClient;
use baton_proto::v1::lease_server::Lease;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::raft::state_machine::Change;
use crate::rules::access::{Caller, Rpc};
use crate::rules::lease::{validate_group_name, validate_holder, Command, Outcome};
use crate::rules::limits::MAX_WATCHES_PER_CALLER;
use crate::server::auth;
use crate::server::routing::{Answered, Attempt, Cluster, Routed};
use crate::server::wire;
use crate::transport::PeerInfo;

/// How many watch events may wait for a slow client before it is cut off.
const WATCH_QUEUE: usize = 256;

/// How long a watcher may leave an event unread before it is dropped (it
/// reconnects and gets a fresh snapshot).
const WATCH_STALL: Duration = Duration::from_secs(30);

/// gRPC `Lease` service of a voter.
pub struct LeaseService {
    cluster: Cluster,
    /// Open watch streams per caller (see [`MAX_WATCHES_PER_CALLER`]).
    watchers: Arc<Mutex<HashMap<String, usize>>>,
}

impl LeaseService {
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            watchers: Arc::default(),
        }
    }
}

/// One of a caller's watch streams; the count goes down when it ends.
struct WatchSlot {
    watchers: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl WatchSlot {
    /// Takes a slot for `key`, or refuses when it holds the most it may.
    fn take(watchers: &Arc<Mutex<HashMap<String, usize>>>, key: String) -> Result<Self, Status> {
        let mut counts = watchers.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= MAX_WATCHES_PER_CALLER {
            return Err(Status::resource_exhausted(format!(
                "{key} already has {MAX_WATCHES_PER_CALLER} watch streams open on this voter"
            )));
        }
        *count += 1;
        Ok(WatchSlot {
            watchers: watchers.clone(),
            key,
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut counts = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A request the rules refuse, as the caller sees it.
pub(super) fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn unexpected(outcome: &Outcome) -> Status {
    Status::internal(format!("unexpected outcome {outcome:?}"))
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn acquire(
        &self,
        request: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let request = Routed::new(request)?;
        let req = &request.message;
        validate_group_name(&req.group).map_err(invalid)?;
        validate_holder(&req.holder).map_err(invalid)?;
        auth::permit_holder(&request.caller, Rpc::Acquire, &req.holder)?;
        let cluster = &self.cluster;
        let ttl_ms = cluster.lease.waiter_ttl.as_millis() as u64;
        let answer =
            cluster
                .route(
                    &request,
                    || {
                        cluster.propose_stamped(|now| Command::Acquire {
                            group: req.group.clone(),
                            holder: req.holder.clone(),
                            machine_id: req.machine_id.clone(),
                            now,
                            default_max_holders: cluster.lease.default_max_holders,
                            waiter_ttl_ms: ttl_ms,
                        })
                    },
                    |channel, forwarded| async move {
                        LeaseClient::new(channel).acquire(forwarded).await
                    },
                )
                .await?;
        let outcome = match answer {
            Answered::ByLeader(response) => return Ok(Response::new(response)),
            Answered::Here(Outcome::Granted(grant)) => {
                pb::acquire_response::Outcome::Granted(wire::grant(&grant))
            }
            Answered::Here(Outcome::Queued {
                position,
                waiters,
                reason,
            }) => pb::acquire_response::Outcome::Queued(pb::Queued {
                position,
                waiters,
                reason: wire::queue_reason(&reason),
                waiter_ttl_ms: ttl_ms,
                holder: req.holder.clone(),
            }),
            Answered::Here(other) => return Err(unexpected(&other)),
        };
        Ok(Response::new(pb::AcquireResponse {
            outcome: Some(outcome),
        }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let request = Routed::new(request)?;
        let req = &request.message;
        validate_group_name(&req.group).map_err(invalid)?;
        validate_holder(&req.holder).map_err(invalid)?;
        auth::permit_holder(&request.caller, Rpc::Release, &req.holder)?;
        let cluster = &self.cluster;
        let answer =
            cluster
                .route(
                    &request,
                    || {
                        cluster.propose_stamped(|now| Command::Release {
                            group: req.group.clone(),
                            holder: req.holder.clone(),
                            token: req.token,
                            now,
                        })
                    },
                    |channel, forwarded| async move {
                        LeaseClient::new(channel).release(forwarded).await
                    },
                )
                .await?;
        match answer {
            Answered::ByLeader(response) => Ok(Response::new(response)),
            Answered::Here(Outcome::Released {
                token_mismatch: true,
                ..
            }) => Err(Status::failed_precondition(format!(
                "{} holds {} under another token than {:?}",
                req.holder, req.group, req.token
            ))),
            Answered::Here(Outcome::Released {
                released,
                left_queue,
                ..
            }) => Ok(Response::new(pb::ReleaseResponse {
                released,
                left_queue,
            })),
            Answered::Here(other) => Err(unexpected(&other)),
        }
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let request = Routed::new(request)?;
        let cluster = &self.cluster;
        if request.message.stale {
            return Ok(Response::new(cluster.status()));
        }
        let answer =
            cluster
                .route(
                    &request,
                    || async {
                        match cluster.ensure_linearizable().await {
                            Attempt::Done(()) => Attempt::Done(cluster.status()),
                            Attempt::Retry(why) => Attempt::Retry(why),
                            Attempt::Fail(status) => Attempt::Fail(status),
                        }
                    },
                    |channel, forwarded| async move {
                        LeaseClient::new(channel).status(forwarded).await
                    },
                )
                .await?;
        Ok(Response::new(match answer {
            Answered::Here(status) | Answered::ByLeader(status) => status,
        }))
    }

    type WatchStream = ReceiverStream<Result<pb::WatchEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // Certified callers are counted by name; without TLS, by connection.
        let key = match auth::caller(&request)? {
            Caller::Certified(identity) => identity.name,
            Caller::Insecure => request
                .extensions()
                .get::<PeerInfo>()
                .and_then(|peer| peer.remote)
                .map_or_else(|| "insecure".to_string(), |addr| addr.to_string()),
        };
        let slot = WatchSlot::take(&self.watchers, key)?;
        let req = request.into_inner();
        if !req.group.is_empty() {
            validate_group_name(&req.group).map_err(invalid)?;
        }
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        // Subscribe before taking the snapshot, so no change falls between them.
        let changes = self.cluster.view.subscribe();
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            stream_changes(cluster, req.group, changes, tx).await;
            drop(slot);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The snapshot events for `only` (one group, or all when empty).
fn snapshots(cluster: &Cluster, only: &str) -> Vec<pb::WatchEvent> {
    let state = cluster.view.read();
    let index = state.last_applied.map(|l| l.index).unwrap_or(0);
    let default_max = cluster.lease.default_max_holders;
    let names: Vec<String> = if only.is_empty() {
        state.lease.groups.keys().cloned().collect()
    } else {
        vec![only.to_string()]
    };
    names
        .iter()
        .map(|name| {
            let group = wire::group_status_or_empty(&state.lease, name, default_max);
            pb::WatchEvent {
                index,
                group: name.clone(),
                kind: Some(pb::watch_event::Kind::Snapshot(group.clone())),
                state: Some(group),
            }
        })
        .collect()
}

/// Sends one event; false when the watcher hung up or left events unread
/// for [`WATCH_STALL`] (it is dropped rather than buffered without bound).
async fn send(tx: &mpsc::Sender<Result<pb::WatchEvent, Status>>, event: pb::WatchEvent) -> bool {
    match tokio::time::timeout(WATCH_STALL, tx.send(Ok(event))).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            let _ = tx.try_send(Err(Status::resource_exhausted(
                "this watch stream fell behind; reconnect for a fresh snapshot",
            )));
            false
        }
    }
}

/// Feeds one watcher until it hangs up. A watcher that falls behind gets
/// a resync marker and fresh snapshots instead of the changes it missed.
async fn stream_changes(
    cluster: Cluster,
    only: String,
    mut changes: broadcast::Receiver<Arc<Change>>,
    tx: mpsc::Sender<Result<pb::WatchEvent, Status>>,
) {
    let resync = |index| pb::WatchEvent {
        index,
        group: String::new(),
        kind: Some(pb::watch_event::Kind::Resync(true)),
        state: None,
    };
    for event in snapshots(&cluster, &only) {
        if !send(&tx, event).await {
            return;
        }
    }
    loop {
        let received = tokio::select! {
            received = changes.recv() => received,
            // The watcher hung up: free its slot now, not at the next change.
            () = tx.closed() => return,
        };
        let outgoing = match received {
            Ok(change) => match &*change {
                Change::Applied {
                    index,
                    event,
                    group,
                } => {
                    // All-groups pauses have no group and go to every watcher.
                    if !only.is_empty() && !event.group.is_empty() && event.group != only {
                        continue;
                    }
                    let state = cluster.view.read();
                    vec![pb::WatchEvent {
                        index: *index,
                        group: event.group.clone(),
                        kind: Some(wire::event_kind(&event.kind)),
                        state: group
                            .as_ref()
                            .map(|g| wire::group_status(&state.lease, &event.group, g)),
                    }]
                }
                Change::Resync { index } => {
                    let mut events = vec![resync(*index)];
                    events.extend(snapshots(&cluster, &only));
                    events
                }
            },
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let mut events = vec![resync(0)];
                events.extend(snapshots(&cluster, &only));
                events
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for event in outgoing {
            if !send(&tx, event).await {
                return;
            }
        }
    }
}
