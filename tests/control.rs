//! Operator control on real voters: the settle time between hosts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_proto::v1 as pb;
use pb::lease_client::LeaseClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::support::TestCluster;

const GROUP: &str = "workers";
const SETTLE: Duration = Duration::from_secs(2);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn acquire(lease: &mut LeaseClient<Channel>, holder: &str) -> pb::acquire_response::Outcome {
    lease
        .acquire(pb::AcquireRequest {
            group: GROUP.into(),
            holder: holder.into(),
            machine_id: format!("machine-{holder}"),
        })
        .await
        .expect("acquire")
        .into_inner()
        .outcome
        .expect("an outcome")
}

/// Opens a Wait stream for `holder` and waits until it says Queued.
async fn wait_queued(
    lease: &mut LeaseClient<Channel>,
    holder: &str,
) -> tonic::Streaming<pb::WaitEvent> {
    let mut stream = lease
        .wait(pb::WaitRequest {
            group: GROUP.into(),
            holder: holder.into(),
            machine_id: format!("machine-{holder}"),
        })
        .await
        .expect("wait")
        .into_inner();
    match stream.next().await {
        Some(Ok(pb::WaitEvent {
            kind: Some(pb::wait_event::Kind::Queued(_)),
        })) => stream,
        other => panic!("{holder} expected to queue, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_host_is_granted_no_earlier_than_the_settle_time_after_a_release() {
    let cluster = TestCluster::start_with_drop_ins(3, "", &|_| {
        Some(format!(
            "[lease]\nsettle_time = \"{}s\"\n",
            SETTLE.as_secs()
        ))
    });
    let status = cluster.wait_for_leader(Duration::from_secs(20));
    // The leader proposes the configured settle time by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = status;
    while status["settle_ms"] != 2_000 {
        assert!(Instant::now() < deadline, "settle time never set: {status}");
        std::thread::sleep(Duration::from_millis(100));
        status = cluster.wait_for_leader(Duration::from_secs(10));
    }
    let mut lease = cluster.lease_client(1).await;

    let token = match acquire(&mut lease, "h1").await {
        pb::acquire_response::Outcome::Granted(grant) => grant.token,
        other => panic!("h1 not granted: {other:?}"),
    };
    let mut h2 = wait_queued(&mut lease, "h2").await;

    let released_after_ms = unix_ms();
    let released_at = Instant::now();
    let reply = lease
        .release(pb::ReleaseRequest {
            group: GROUP.into(),
            holder: "h1".into(),
            token: Some(token),
        })
        .await
        .expect("release")
        .into_inner();
    assert!(reply.released);

    // An immediate acquire into the settling slot queues (behind h2).
    match acquire(&mut lease, "h3").await {
        pb::acquire_response::Outcome::Queued(q) => assert_eq!(q.position, 2, "{q:?}"),
        other => panic!("h3 granted into a settling slot: {other:?}"),
    }
    // Status says when the slot opens again.
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    let opens = status["groups"][GROUP]["settling_until"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(opens.len(), 1, "{status}");
    let text = crate::support::stdout(&cluster.cli(&["status"]));
    assert!(
        text.contains("settling") && text.contains("opens"),
        "{text}"
    );
    assert!(text.contains("settle time between hosts: 2s"), "{text}");

    let grant = match tokio::time::timeout(Duration::from_secs(10), h2.next()).await {
        Ok(Some(Ok(pb::WaitEvent {
            kind: Some(pb::wait_event::Kind::Granted(grant)),
        }))) => grant,
        other => panic!("h2 not granted: {other:?}"),
    };
    let waited = released_at.elapsed();
    assert!(
        waited >= SETTLE,
        "h2 granted {waited:?} after h1 released; settle time {SETTLE:?}"
    );
    assert!(
        grant.granted_at_ms >= released_after_ms + SETTLE.as_millis() as u64,
        "granted at {} ms, released after {released_after_ms} ms",
        grant.granted_at_ms
    );
    // The leader's 250 ms expiry check hands it over soon after the settle time.
    assert!(waited < SETTLE + Duration::from_secs(2), "{waited:?}");
    eprintln!("h2 granted {waited:?} after h1's release (settle time {SETTLE:?})");
    assert!(matches!(
        acquire(&mut lease, "h2").await,
        pb::acquire_response::Outcome::Granted(_)
    ));
}
