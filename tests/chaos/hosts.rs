//! The simulated hosts rolling: each takes turns as the agent does, recording them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use pb::lease_client::LeaseClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::{HOLD, WAIT_PATIENCE};

/// One turn of one host, as its client saw it.
#[derive(Debug, Clone)]
pub(super) struct Turn {
    pub(super) group: &'static str,
    pub(super) holder: String,
    pub(super) token: u64,
    /// When the leader made the grant (its stamp, unix milliseconds).
    pub(super) stamped_ms: u64,
    /// When the host started asking.
    pub(super) asked: Instant,
    /// When the Acquire that gave it the lease answered.
    pub(super) granted: Instant,
    /// When it sent its (first) Release: it holds no longer.
    pub(super) release_sent: Instant,
    /// When a Release was answered.
    pub(super) released: Instant,
}

/// What the hosts share: every turn, and when the last fault was healed.
#[derive(Default)]
pub(super) struct Workload {
    pub(super) turns: Mutex<Vec<Turn>>,
    pub(super) healed: Mutex<Option<Instant>>,
}

/// Waits on a `Lease.Wait` stream until it says Granted (false: the stream
/// failed, ended or took longer than [`WAIT_PATIENCE`]).
pub(super) async fn wait_for_grant(
    lease: &mut LeaseClient<Channel>,
    request: pb::WaitRequest,
) -> bool {
    let wait = async {
        let mut stream = lease.wait(request).await.ok()?.into_inner();
        while let Some(event) = stream.next().await {
            match event.ok()?.kind {
                Some(pb::wait_event::Kind::Granted(_)) => return Some(()),
                _ => continue,
            }
        }
        None
    };
    matches!(
        tokio::time::timeout(WAIT_PATIENCE, wait).await,
        Ok(Some(()))
    )
}

/// One turn as the agent takes it: wait on a stream (on the next voter when
/// one fails), take the slot with Acquire, hold, release (retried until answered).
pub(super) async fn one_turn(
    lease: &[LeaseClient<Channel>],
    voter: &mut usize,
    group: &'static str,
    holder: &str,
) -> Turn {
    let asked = Instant::now();
    let machine_id = format!("machine-{holder}");
    let (token, stamped_ms) = loop {
        let mut client = lease[*voter % lease.len()].clone();
        let request = pb::WaitRequest {
            group: group.into(),
            holder: holder.into(),
            machine_id: machine_id.clone(),
            released: None,
        };
        if !wait_for_grant(&mut client, request).await {
            *voter += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let claim = client
            .acquire(pb::AcquireRequest {
                group: group.into(),
                holder: holder.into(),
                machine_id: machine_id.clone(),
                released: None,
            })
            .await;
        match claim.map(|r| r.into_inner().outcome) {
            Ok(Some(pb::acquire_response::Outcome::Granted(grant))) => {
                break (grant.token, grant.granted_at_ms)
            }
            // Queued: that voter's state was behind. Failed: unknown; the
            // next Wait says whether it holds (Acquire is reentrant).
            _ => {
                *voter += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let granted = Instant::now();
    tokio::time::sleep(HOLD).await;
    let release_sent = Instant::now();
    loop {
        let mut client = lease[*voter % lease.len()].clone();
        let release = client
            .release(pb::ReleaseRequest {
                group: group.into(),
                holder: holder.into(),
                token: Some(token),
            })
            .await;
        if release.is_ok() {
            break;
        }
        *voter += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Turn {
        group,
        holder: holder.into(),
        token,
        stamped_ms,
        asked,
        granted,
        release_sent,
        released: Instant::now(),
    }
}

/// A host takes turns until it has taken one that it asked for after the last heal.
pub(super) async fn host(
    lease: Vec<LeaseClient<Channel>>,
    group: &'static str,
    holder: String,
    first: usize,
    work: Arc<Workload>,
) {
    let mut voter = first;
    loop {
        let turn = one_turn(&lease, &mut voter, group, &holder).await;
        let asked = turn.asked;
        work.turns.lock().expect("turns").push(turn);
        let healed = *work.healed.lock().expect("healed");
        if healed.is_some_and(|healed| asked >= healed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
