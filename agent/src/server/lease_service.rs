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

use crate::locks::LockOrRecover;
use crate::raft::state_machine::Change;
use crate::rules::access::{Caller, Rpc};
use crate::rules::lease::{Outcome, WaiterRef, LATE_ACQUIRE};
use crate::rules::limits::{MAX_WAITS_PER_HOLDER, MAX_WATCHES_PER_CALLER};
use crate::server::auth;
use crate::server::requests;
use crate::server::routing::{self, Answered, Attempt, Cluster, Routed};
use crate::server::wait_stream;
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
    /// Open wait streams per caller and holder (see [`MAX_WAITS_PER_HOLDER`]).
    waits: Arc<Mutex<HashMap<String, usize>>>,
}

impl LeaseService {
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            watchers: Arc::default(),
            waits: Arc::default(),
        }
    }
}

/// One of a caller's streams (Watch or Wait); the count goes down when it ends.
struct StreamSlot {
    watchers: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl StreamSlot {
    /// Takes a slot for `key`, or refuses when it holds `max` (`what` names them).
    fn take(
        watchers: &Arc<Mutex<HashMap<String, usize>>>,
        key: String,
        max: usize,
        what: &str,
    ) -> Result<Self, Status> {
        let mut counts = watchers.lock_or_recover();
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= max {
            return Err(Status::resource_exhausted(format!(
                "{key} already has {max} {what} open on this voter"
            )));
        }
        *count += 1;
        Ok(StreamSlot {
            watchers: watchers.clone(),
            key,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.watchers.lock_or_recover();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

fn unexpected(outcome: &Outcome) -> Status {
    Status::internal(format!("unexpected outcome {outcome:?}"))
}

/// Takes a slot or queues for one, on the leader (forwarded there if need
/// be). A caller queued on the leader has its session touched: asking again
/// keeps a place, as a Wait stream does. (Also the FleetLock front's.)
pub(crate) async fn acquire_routed(
    cluster: &Cluster,
    request: &Routed<pb::AcquireRequest>,
) -> Result<pb::AcquireResponse, Status> {
    let req = &request.message;
    let answer = cluster
        .route(
            request,
            || async {
                // On the leader, before anything reaches the log.
                if let Some(status) = late_acquire(cluster, req) {
                    return Attempt::Fail(status);
                }
                cluster
                    .propose_stamped(|now| {
                        requests::acquire_command(req, now, cluster.lease.default_max_holders)
                    })
                    .await
            },
            |channel, forwarded| async move { LeaseClient::new(channel).acquire(forwarded).await },
        )
        .await?;
    let outcome = match answer {
        Answered::ByLeader(response) => return Ok(response),
        Answered::Here(outcome) => outcome,
    };
    if let Outcome::Queued { .. } = outcome {
        cluster
            .sessions
            .touch([WaiterRef::new(req.group.clone(), req.holder.clone())]);
    }
    acquire_response(req, outcome, cluster.sessions.ttl().as_millis() as u64)
}

/// The refusal of `req` when it is late: it names an older release than
/// the last one of its holder in the applied state (`rules::lease::RecentReleases`).
fn late_acquire(cluster: &Cluster, req: &pb::AcquireRequest) -> Option<Status> {
    let known = req.released?;
    let key = WaiterRef::new(req.group.clone(), req.holder.clone());
    let now = routing::now_ms().ok()?;
    let token = cluster
        .view
        .read()
        .recent_releases
        .released_since(&key, known, now)?;
    tracing::info!(
        "refused a late acquire of {} in {}: it names token {known}, released since: {token}",
        req.holder,
        req.group
    );
    Some(Status::failed_precondition(format!(
        "{LATE_ACQUIRE}: {} released its grant (token {token}) after this request was sent \
         (it names token {known}); not applied",
        req.holder
    )))
}

/// The answer to `req` applied on the leader with `outcome`: granted or
/// queued (with the waiter TTL the caller's session has).
pub fn acquire_response(
    req: &pb::AcquireRequest,
    outcome: Outcome,
    waiter_ttl_ms: u64,
) -> Result<pb::AcquireResponse, Status> {
    let outcome = match outcome {
        Outcome::Granted(grant) => pb::acquire_response::Outcome::Granted(wire::grant(&grant)),
        Outcome::Queued {
            position,
            waiters,
            reason,
        } => pb::acquire_response::Outcome::Queued(pb::Queued {
            position,
            waiters,
            reason: wire::queue_reason(&reason),
            waiter_ttl_ms,
            holder: req.holder.clone(),
        }),
        other => return Err(unexpected(&other)),
    };
    Ok(pb::AcquireResponse {
        outcome: Some(outcome),
    })
}

/// Gives a slot back or leaves the queue, on the leader (forwarded there if
/// need be); idempotent. (Also the FleetLock front's.)
pub(crate) async fn release_routed(
    cluster: &Cluster,
    request: &Routed<pb::ReleaseRequest>,
) -> Result<pb::ReleaseResponse, Status> {
    let req = &request.message;
    let answer = cluster
        .route(
            request,
            || cluster.propose_stamped(|now| requests::release_command(req, now)),
            |channel, forwarded| async move { LeaseClient::new(channel).release(forwarded).await },
        )
        .await?;
    match answer {
        Answered::ByLeader(response) => Ok(response),
        Answered::Here(outcome) => release_response(req, outcome),
    }
}

/// The answer to `req` applied on the leader with `outcome`: released, left
/// the queue, or neither (idempotent); another token than the grant's fails.
pub fn release_response(
    req: &pb::ReleaseRequest,
    outcome: Outcome,
) -> Result<pb::ReleaseResponse, Status> {
    match outcome {
        Outcome::Released {
            token_mismatch: true,
            ..
        } => Err(Status::failed_precondition(format!(
            "{} holds {} under another token than {:?}",
            req.holder, req.group, req.token
        ))),
        Outcome::Released {
            released,
            left_queue,
            ..
        } => Ok(pb::ReleaseResponse {
            released,
            left_queue,
        }),
        other => Err(unexpected(&other)),
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn acquire(
        &self,
        request: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let request = Routed::new(request)?;
        let req = &request.message;
        requests::check_acquire(req)?;
        auth::permit_holder(&request.caller, Rpc::Acquire, &req.holder)?;
        acquire_routed(&self.cluster, &request)
            .await
            .map(Response::new)
    }

    type WaitStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WaitEvent, Status>> + Send>>;

    async fn wait(
        &self,
        request: Request<pb::WaitRequest>,
    ) -> Result<Response<Self::WaitStream>, Status> {
        let request = Routed::new(request)?;
        let req = &request.message;
        requests::check_wait(req)?;
        auth::permit_holder(&request.caller, Rpc::Wait, &req.holder)?;
        let key = WaiterRef::new(req.group.clone(), req.holder.clone());
        let slot = StreamSlot::take(
            &self.waits,
            format!("{}/{}/{}", request.caller.name(), key.group, key.holder),
            MAX_WAITS_PER_HOLDER,
            "wait streams for this holder",
        )?;
        let registration = self.cluster.sessions.register(key.clone());
        let acquire_request =
            Routed::on_behalf(requests::wait_as_acquire(req), request.caller.clone());
        let (tx, rx) = mpsc::channel::<wait_stream::WaitItem>(4);
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            let acquire = || acquire_routed(&cluster, &acquire_request);
            wait_stream::serve(cluster.clone(), key, registration, acquire, tx).await;
            drop(slot);
        });
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(
            ReceiverStream::new(rx),
            |item| *item,
        ))))
    }

    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let request = Routed::new(request)?;
        let keys = requests::check_keep_alive(&request.message)?;
        if !self.cluster.leading() {
            return Err(Status::failed_precondition(format!(
                "voter {} does not lead; send keepalives to the leader",
                self.cluster.id
            )));
        }
        let known = {
            let state = self.cluster.view.read();
            keys.iter()
                .filter(|key| state.lease.has_session(&key.group, &key.holder))
                .count()
        };
        self.cluster.sessions.touch(keys);
        Ok(Response::new(pb::KeepAliveResponse {
            known: u32::try_from(known).unwrap_or(u32::MAX),
        }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let request = Routed::new(request)?;
        let req = &request.message;
        requests::check_release(req)?;
        auth::permit_holder(&request.caller, Rpc::Release, &req.holder)?;
        release_routed(&self.cluster, &request)
            .await
            .map(Response::new)
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
        let slot = StreamSlot::take(&self.watchers, key, MAX_WATCHES_PER_CALLER, "watch streams")?;
        let req = request.into_inner();
        requests::check_watch(&req)?;
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
                kind: Some(pb::watch_event::Kind::Snapshot(group)),
                state: None,
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
                Change::Applied { index, event } => {
                    // All-groups pauses have no group and go to every watcher.
                    if !only.is_empty() && !event.group.is_empty() && event.group != only {
                        continue;
                    }
                    // A delta: the watcher keeps the group from the snapshot up to date.
                    vec![pb::WatchEvent {
                        index: *index,
                        group: event.group.clone(),
                        kind: Some(wire::event_kind(&event.kind)),
                        state: None,
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
