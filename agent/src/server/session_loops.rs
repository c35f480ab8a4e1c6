//! Session loops: wake Wait streams, send keepalives to the leader, drop lapsed sessions.

use std::time::Duration;

use baton_proto::v1 as pb;
use baton_proto::v1::lease_client::LeaseClient;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use crate::clock::Instant;
use crate::raft::state_machine::Change;
use crate::rules::lease::{Command, EventKind, ReleaseCause, WaiterRef};
use crate::rules::limits::{MAX_DROPS_PER_ENTRY, MAX_KEEPALIVE_SESSIONS};
use crate::server::routing::{now_ms, Attempt, Cluster};
use crate::server::sessions::Removal;

/// How often the leader looks for lapsed sessions.
const SESSION_CHECK: Duration = Duration::from_millis(250);

/// How long the keepalive loop gathers newly opened streams before it sends.
const JOIN_BATCH: Duration = Duration::from_millis(100);

/// Routes every applied change to the Wait streams it concerns, so a change
/// wakes one stream, not all of them.
pub async fn dispatch_changes(cluster: Cluster) {
    let mut changes = cluster.view.subscribe();
    let sessions = &cluster.sessions;
    loop {
        match changes.recv().await {
            Ok(change) => match &*change {
                Change::Applied { event, .. } => {
                    let group = &event.group;
                    match &event.kind {
                        EventKind::Granted(grant) => sessions.wake(group, &grant.holder, None),
                        EventKind::Queued { holder, .. } => sessions.wake(group, holder, None),
                        EventKind::WaiterDropped { holder } => {
                            sessions.wake(group, holder, Some(Removal::Dropped))
                        }
                        EventKind::Released {
                            holder,
                            cause: ReleaseCause::SessionLost,
                            ..
                        } => sessions.wake(group, holder, Some(Removal::Dropped)),
                        EventKind::LeftQueue { holder } => {
                            sessions.wake(group, holder, Some(Removal::Left))
                        }
                        _ => {}
                    }
                }
                Change::Resync { .. } => sessions.wake_all(),
            },
            Err(broadcast::error::RecvError::Lagged(_)) => sessions.wake_all(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// On every voter: keeps the sessions of the Wait streams open here alive on
/// the leader, every third of the TTL, and soon after new streams open (a
/// host whose voter died reopens its stream elsewhere: its session goes on).
pub async fn keep_alive(cluster: Cluster) {
    let every = (cluster.sessions.ttl() / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cluster.sessions.joined() => {
                // Gather a burst of new streams into one round of keepalives.
                tokio::time::sleep(JOIN_BATCH).await;
            }
        }
        let keys = cluster.sessions.local_sessions();
        if !keys.is_empty() {
            send_keepalive(&cluster, keys).await;
        }
    }
}

/// Tells the leader that `keys` are alive (touches them directly when this voter leads).
async fn send_keepalive(cluster: &Cluster, keys: Vec<WaiterRef>) {
    let Some((leader, address)) = cluster.leader() else {
        // No leader: the next one starts every session afresh anyway.
        return;
    };
    if leader == cluster.id {
        cluster.sessions.touch(keys);
        return;
    }
    let Some(address) = address else { return };
    let channel = match cluster.dialer.channel(&address) {
        Ok(channel) => channel,
        Err(e) => {
            warn!("cannot reach leader {leader} to keep waiters' sessions alive: {e}");
            return;
        }
    };
    let mut client = LeaseClient::new(channel);
    for chunk in keys.chunks(MAX_KEEPALIVE_SESSIONS) {
        let request = pb::KeepAliveRequest {
            sessions: chunk
                .iter()
                .map(|key| pb::SessionRef {
                    group: key.group.clone(),
                    holder: key.holder.clone(),
                })
                .collect(),
        };
        // Keepalives share the connection to the leader with forwarded calls.
        let Ok(_slot) = cluster.forward_slots.acquire().await else {
            return;
        };
        if let Err(status) = client.keep_alive(request).await {
            // The next tick tries again; a TTL is three ticks long.
            debug!("keepalive to leader {leader} failed: {}", status.message());
            return;
        }
    }
}

/// On the leader: drops sessions that lapsed, in batches of one entry each.
pub async fn drop_lapsed(cluster: Cluster) {
    let mut tick = tokio::time::interval(SESSION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (leader, term) = {
            let metrics = cluster.raft.metrics();
            let m = metrics.borrow();
            (m.current_leader, m.current_term)
        };
        if leader != Some(cluster.id) {
            continue;
        }
        let lapsed = {
            let state = cluster.view.read();
            cluster
                .sessions
                .lapsed(term, state.lease.sessions(), Instant::now())
        };
        for chunk in lapsed.chunks(MAX_DROPS_PER_ENTRY) {
            let Ok(now) = now_ms() else { break };
            let drop = Command::DropWaiters {
                waiters: chunk.to_vec(),
                now,
            };
            if let Attempt::Fail(status) = cluster.propose(drop).await {
                warn!("could not drop lapsed waiters: {}", status.message());
            }
        }
    }
}
