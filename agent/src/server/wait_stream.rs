//! One `Lease.Wait` stream: queue once, keep the place through the session, end with the grant.
//!
//! The stream never polls raft. It reads this voter's applied state and is
//! woken (see `session_loops::dispatch_changes`) only by changes about its own
//! waiter. It queues through the leader only when the state has no place
//! for it: at the start, and again if its session lapsed meanwhile.

use std::future::Future;
use std::time::Duration;

use baton_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use crate::rules::lease::WaiterRef;
use crate::server::routing::Cluster;
use crate::server::sessions::{Registration, Removal};
use crate::server::wire;

/// How often a waiting stream re-reads the state even without a wake-up: a
/// guard against a missed one, not the way grants arrive.
const RECHECK: Duration = Duration::from_secs(5);

/// Where a waiter stands in this voter's applied state.
enum Standing {
    Holds(pb::Grant),
    Queued(pb::Queued),
    /// Queued, its place already told (not counted again: with 10,000
    /// waiters, every re-read counting its way down the queue added up).
    StillQueued,
    Absent,
}

/// Where `key` stands; `announced`: its place was told, only whether it
/// still waits matters.
fn standing(cluster: &Cluster, key: &WaiterRef, announced: bool) -> Standing {
    let state = cluster.view.read();
    let Some(group) = state.lease.groups.get(&key.group) else {
        return Standing::Absent;
    };
    if let Some(grant) = group.grant(&key.holder) {
        return Standing::Holds(wire::grant(grant));
    }
    if announced && group.queue.contains(&key.holder) {
        return Standing::StillQueued;
    }
    match group.queue_position(&key.holder) {
        Some(position) => Standing::Queued(pb::Queued {
            position,
            waiters: u32::try_from(group.queue.len()).unwrap_or(u32::MAX),
            reason: wire::queue_reason(&state.lease.queue_reason(&key.group)),
            waiter_ttl_ms: cluster.sessions.ttl().as_millis() as u64,
            holder: key.holder.clone(),
        }),
        None => Standing::Absent,
    }
}

/// One item of a Wait stream, boxed: a channel allocates room for 32 items
/// at once, and a voter holds one channel per queued host.
pub type WaitItem = Box<Result<pb::WaitEvent, Status>>;

fn event(kind: pb::wait_event::Kind) -> WaitItem {
    Box::new(Ok(pb::WaitEvent { kind: Some(kind) }))
}

fn failure(status: Status) -> WaitItem {
    Box::new(Err(status))
}

/// Serves one Wait stream until the waiter is granted, leaves the queue, or
/// hangs up. `acquire` queues it through the leader (a routed `Acquire`).
pub async fn serve<A, AF>(
    cluster: Cluster,
    key: WaiterRef,
    registration: Registration,
    acquire: A,
    tx: mpsc::Sender<WaitItem>,
) where
    A: Fn() -> AF,
    AF: Future<Output = Result<pb::AcquireResponse, Status>>,
{
    use pb::wait_event::Kind;
    let mut announced = false;
    let mut queued_once = false;
    // A grant this voter shows before the leader was asked may be one the
    // holder has since released (a follower applies a little behind the
    // leader): the leader is asked instead, and that grant (its token) is
    // not trusted later either. Tokens only grow, so a real new grant
    // always differs.
    let mut unconfirmed: Option<u64> = None;
    loop {
        let removal = registration.take_removal();
        let here = match standing(&cluster, &key, announced) {
            Standing::Holds(grant) if !queued_once => {
                unconfirmed = Some(grant.token);
                Standing::Absent
            }
            Standing::Holds(grant) if Some(grant.token) == unconfirmed => Standing::Absent,
            other => other,
        };
        match here {
            Standing::Holds(grant) => {
                let _ = tx.send(event(Kind::Granted(grant))).await;
                return;
            }
            Standing::StillQueued => {}
            Standing::Queued(queued) => {
                if !announced {
                    announced = true;
                    if tx.send(event(Kind::Queued(queued))).await.is_err() {
                        return;
                    }
                }
            }
            Standing::Absent if removal == Some(Removal::Left) => {
                let _ = tx
                    .send(failure(Status::aborted(format!(
                        "{} left the queue of {} (released)",
                        key.holder, key.group
                    ))))
                    .await;
                return;
            }
            // Queued through the leader, but this voter has not applied that yet.
            Standing::Absent if queued_once && removal.is_none() => {}
            Standing::Absent => {
                queued_once = true;
                // Boxed: the task of every waiting stream would otherwise
                // keep room for this call's state while it waits.
                let outcome = match Box::pin(acquire()).await {
                    Ok(response) => response.outcome,
                    Err(status) => {
                        let _ = tx.send(failure(status)).await;
                        return;
                    }
                };
                match outcome {
                    Some(pb::acquire_response::Outcome::Granted(grant)) => {
                        let _ = tx.send(event(Kind::Granted(grant))).await;
                        return;
                    }
                    Some(pb::acquire_response::Outcome::Queued(queued)) => {
                        announced = true;
                        if tx.send(event(Kind::Queued(queued))).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = tx
                            .send(failure(Status::internal(
                                "the leader answered Acquire with nothing",
                            )))
                            .await;
                        return;
                    }
                }
            }
        }
        tokio::select! {
            () = registration.woken() => {}
            () = tx.closed() => return,
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}
