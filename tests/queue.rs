//! A patch day on real voters: a thousand hosts queued in one group roll one at a time at O(1) entries each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use pb::lease_client::LeaseClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::support::TestCluster;

const GROUP: &str = "patch-day";
const HOSTS: usize = 1_000;
/// Hosts sharing one client connection (the voters allow 64 calls at once on one).
const HOSTS_PER_CONNECTION: usize = 50;

/// What one host saw of its turn.
#[derive(Debug)]
struct Turn {
    holder: String,
    token: u64,
    granted: Instant,
    /// When it sent its (first) Release: the end of its use of the lease.
    /// The next host's grant cannot come before this; it may come before
    /// this host heard back from its release, on a busy machine.
    releasing: Instant,
}

/// One host as the agent behaves: wait on a stream (reopened on the next
/// voter if its voter goes away), take the slot handed over, hold, release.
async fn host(
    connections: Vec<LeaseClient<Channel>>,
    first: usize,
    holder: String,
    hold: Duration,
) -> Turn {
    let request = pb::WaitRequest {
        group: GROUP.into(),
        holder: holder.clone(),
        machine_id: format!("machine-{holder}"),
        released: None,
    };
    let mut voter = first;
    loop {
        let mut lease = connections[voter % connections.len()].clone();
        let granted = match lease.wait(request.clone()).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut granted = false;
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(pb::WaitEvent {
                            kind: Some(pb::wait_event::Kind::Granted(_)),
                        }) => {
                            granted = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                granted
            }
            Err(_) => false,
        };
        if !granted {
            // The voter went away: wait on the next one (the place is kept).
            voter += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let claimed = lease
            .acquire(pb::AcquireRequest {
                group: GROUP.into(),
                holder: holder.clone(),
                machine_id: request.machine_id.clone(),
                released: None,
            })
            .await;
        let token = match claimed.map(|r| r.into_inner().outcome) {
            Ok(Some(pb::acquire_response::Outcome::Granted(grant))) => grant.token,
            // Taken back (session lapsed) or the call failed: wait again.
            _ => continue,
        };
        let granted = Instant::now();
        tokio::time::sleep(hold).await;
        let releasing = Instant::now();
        loop {
            let released = lease
                .release(pb::ReleaseRequest {
                    group: GROUP.into(),
                    holder: holder.clone(),
                    token: Some(token),
                })
                .await;
            if released.is_ok() {
                break;
            }
            voter += 1;
            lease = connections[voter % connections.len()].clone();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return Turn {
            holder,
            token,
            granted,
            releasing,
        };
    }
}

/// A linearizable status, retried across an election (two cores running
/// three voters and a thousand hosts can miss a heartbeat).
async fn status(lease: &mut LeaseClient<Channel>) -> pb::StatusResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match lease.status(pb::StatusRequest { stale: false }).await {
            Ok(reply) => return reply.into_inner(),
            Err(status) if Instant::now() > deadline => panic!("status: {status}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The two tests here each run three voters and a thousand hosts: one at a
/// time, so that neither measures the other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn queue(status: &pb::StatusResponse) -> Vec<String> {
    status
        .groups
        .iter()
        .find(|g| g.name == GROUP)
        .map(|g| g.queue.iter().map(|w| w.holder.clone()).collect())
        .unwrap_or_default()
}

/// Counts grants per holder and the most holders at once, from a watch stream.
fn observe(
    mut stream: tonic::Streaming<pb::WatchEvent>,
) -> Arc<Mutex<(BTreeMap<String, usize>, usize)>> {
    let seen = Arc::new(Mutex::new((BTreeMap::new(), 0usize)));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut holders = BTreeSet::new();
        while let Some(Ok(event)) = stream.next().await {
            use pb::watch_event::Kind;
            let mut seen = seen.lock().unwrap();
            match event.kind {
                Some(Kind::Snapshot(g)) => {
                    holders = g.holders.into_iter().map(|h| h.holder).collect()
                }
                Some(Kind::Granted(g)) => {
                    *seen.0.entry(g.holder.clone()).or_default() += 1;
                    holders.insert(g.holder);
                }
                Some(Kind::Released(r)) => {
                    holders.remove(&r.holder);
                }
                _ => {}
            }
            seen.1 = seen.1.max(holders.len());
        }
    });
    out
}

/// Starts `HOSTS` hosts queued behind `first`, spread over the voters, and
/// waits until all are queued.
async fn queue_behind_first(
    cluster: &TestCluster,
    admin: &mut LeaseClient<Channel>,
    hold: Duration,
) -> Vec<tokio::task::JoinHandle<Turn>> {
    let granted = admin
        .acquire(pb::AcquireRequest {
            group: GROUP.into(),
            holder: "first".into(),
            machine_id: "machine-first".into(),
            released: None,
        })
        .await
        .expect("first acquires")
        .into_inner();
    assert!(matches!(
        granted.outcome,
        Some(pb::acquire_response::Outcome::Granted(_))
    ));
    let mut tasks = Vec::new();
    for c in 0..HOSTS / HOSTS_PER_CONNECTION {
        // One connection to each voter per batch of hosts; the batch waits on voter c % 3.
        let mut connections = Vec::new();
        for v in 0..3 {
            connections.push(cluster.lease_client(v).await);
        }
        for n in c * HOSTS_PER_CONNECTION..(c + 1) * HOSTS_PER_CONNECTION {
            let holder = format!("host-{n:04}");
            tasks.push(tokio::spawn(host(connections.clone(), c % 3, holder, hold)));
        }
    }
    // All at once, as on a patch day: followers forward a burst of enqueues.
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue(&status(admin).await).len() < HOSTS {
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            let turn = tasks.swap_remove(i).await;
            panic!("a host finished before the roll: {turn:?}");
        }
        assert!(Instant::now() < deadline, "not every host queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks
}

async fn release_first(admin: &mut LeaseClient<Channel>) {
    admin
        .release(pb::ReleaseRequest {
            group: GROUP.into(),
            holder: "first".into(),
            token: None,
        })
        .await
        .expect("first releases");
}

/// Every host once, in queue order, one at a time, tokens increasing.
fn check_roll(turns: &mut [Turn], order: &[String], grants: &BTreeMap<String, usize>, most: usize) {
    turns.sort_by_key(|t| t.token);
    let rolled: Vec<&str> = turns.iter().map(|t| t.holder.as_str()).collect();
    let expected: Vec<&str> = order.iter().map(String::as_str).collect();
    assert_eq!(rolled, expected, "hosts were granted out of queue order");
    for pair in turns.windows(2) {
        assert!(
            pair[1].granted >= pair[0].releasing,
            "{} was granted before {} released",
            pair[1].holder,
            pair[0].holder
        );
    }
    assert!(most <= 1, "{most} holders at once in a group of max 1");
    for holder in order {
        assert_eq!(
            grants.get(holder),
            Some(&1),
            "{holder} granted other than once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_waiters_roll_one_at_a_time_with_at_most_three_entries_each() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let mut admin = cluster.lease_client(0).await;
    let watch = admin
        .watch(pb::WatchRequest {
            group: GROUP.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let seen = observe(watch);
    cluster.wait_voters_recorded();
    let start = status(&mut admin).await;
    let tasks = queue_behind_first(&cluster, &mut admin, Duration::from_millis(1)).await;
    let order = queue(&status(&mut admin).await);
    assert_eq!(order.len(), HOSTS);

    // Waiting costs nothing: a few seconds with everyone queued add no entries
    // (the status reads above committed their one barrier already).
    let waiting = status(&mut admin).await.last_applied;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = status(&mut admin).await.last_applied - waiting;
    assert!(idle <= 1, "{idle} raft entries while everyone waited");

    release_first(&mut admin).await;
    let mut turns = Vec::new();
    for task in tasks {
        turns.push(task.await.expect("host task"));
    }
    let end = status(&mut admin).await;
    // Everything since the first host queued, except "first"'s own acquire
    // and release, and what an election writes (a blank entry and the new
    // leader's read barrier) if the busy machine caused one.
    let elections = end.term - start.term;
    let entries = end.last_applied - start.last_applied - 2 - 2 * elections;
    let per_host = entries as f64 / HOSTS as f64;
    assert!(
        per_host <= 3.0,
        "{per_host:.3} raft entries per host ({entries} entries, {elections} elections)"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (grants, most) = seen.lock().unwrap().clone();
    check_roll(&mut turns, &order, &grants, most);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_while_a_thousand_wait_loses_no_place() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster = TestCluster::start(3, "");
    let leader = cluster.wait_for_leader(Duration::from_secs(10))["leader"]
        .as_u64()
        .expect("leader id") as usize
        - 1;
    let survivor = (leader + 1) % 3;
    let mut admin = cluster.lease_client(survivor).await;
    let watch = cluster
        .lease_client(survivor)
        .await
        .watch(pb::WatchRequest {
            group: GROUP.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let seen = observe(watch);
    let tasks = queue_behind_first(&cluster, &mut admin, Duration::from_millis(1)).await;
    let order = queue(&status(&mut admin).await);
    assert_eq!(order.len(), HOSTS);

    // A third of the hosts wait on the leader's streams; they all break.
    cluster.kill(leader);
    let killed = Instant::now();
    let new_leader = loop {
        if let Ok(reply) = admin.status(pb::StatusRequest { stale: false }).await {
            let reply = reply.into_inner();
            if reply.leader.is_some_and(|l| l as usize - 1 != leader) {
                break Instant::now();
            }
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Every place is kept, in the same order (reconnected streams included).
    assert_eq!(queue(&status(&mut admin).await), order);

    release_first(&mut admin).await;
    let mut turns = Vec::new();
    for task in tasks {
        turns.push(task.await.expect("host task"));
    }
    let first_turn = turns.iter().map(|t| t.granted).min().expect("turns");
    let resumed = first_turn.saturating_duration_since(new_leader);
    assert!(
        resumed < Duration::from_secs(1),
        "the first hand-off came {resumed:?} after the new leader"
    );
    // A restarted old leader rejoins without disturbing anything.
    cluster.start_voter(leader);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (grants, most) = seen.lock().unwrap().clone();
    check_roll(&mut turns, &order, &grants, most);
}
