//! Operator control on real voters: the settle time between hosts, hold/unhold and reboot-now.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_proto::v1 as pb;
use pb::lease_client::LeaseClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use baton::Role;

use crate::support::{stderr, stdout, AgentHost, TestCluster};

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
            released: None,
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
            released: None,
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
    let text = stdout(&cluster.cli(&["status"]));
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

/// The voter index of the current leader (voter ids are 1-based indexes).
fn leader_index(cluster: &TestCluster) -> usize {
    let status = cluster.wait_for_leader(Duration::from_secs(20));
    status["leader"].as_u64().expect("a leader") as usize - 1
}

fn held_names(status: &serde_json::Value) -> Vec<String> {
    status["held_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| h["holder"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_host_is_refused_leaves_the_queue_and_the_hold_survives_a_leader_kill() {
    let mut cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(20));
    let mut lease = cluster.lease_client(0).await;
    assert!(matches!(
        acquire(&mut lease, "h1").await,
        pb::acquire_response::Outcome::Granted(_)
    ));
    let mut h2 = wait_queued(&mut lease, "h2").await;

    let out = cluster.cli(&["hold", "h2", "--reason", "disk swap"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("left the queue of workers"),
        "{}",
        stdout(&out)
    );
    // Its Wait stream ends: it is out of the queue.
    match tokio::time::timeout(Duration::from_secs(10), h2.next()).await {
        Ok(Some(Err(_)) | None) => {}
        other => panic!("h2's wait went on after the hold: {other:?}"),
    }
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    assert_eq!(held_names(&status), ["h2"], "{status}");
    assert_eq!(status["held_hosts"][0]["by"], "test-admin", "{status}");
    assert!(
        status["groups"][GROUP]["queue"]
            .as_array()
            .is_some_and(|q| q.is_empty()),
        "{status}"
    );
    let text = stdout(&cluster.cli(&["status"]));
    assert!(
        text.contains("HELD h2 by test-admin") && text.contains("disk swap"),
        "{text}"
    );

    // Its acquire (and so its Wait) is refused, naming the reason and who held it.
    let refused = lease
        .acquire(pb::AcquireRequest {
            group: GROUP.into(),
            holder: "h2".into(),
            machine_id: "machine-h2".into(),
            released: None,
        })
        .await
        .expect_err("a held host must not queue");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("held by test-admin: disk swap"),
        "{}",
        refused.message()
    );

    // A hold does not take a lease away, and says so.
    let out = cluster.cli(&["hold", "h1", "--reason", "look first"]);
    assert!(
        stdout(&out).contains("keeps its lease in workers"),
        "{}",
        stdout(&out)
    );
    assert_eq!(cluster.holders(GROUP), ["h1"]);
    assert!(cluster.cli(&["unhold", "h1"]).status.success());

    // Only admins: a host certificate is refused.
    let host = cluster
        .layout
        .client_identity("h9", Role::Host)
        .expect("issue")
        .expect("TLS cluster");
    let mut args = vec!["--endpoint".to_string(), cluster.endpoints()];
    args.extend(host.cli_args());
    args.extend(["hold", "h2", "--reason", "mine"].map(String::from));
    let out = std::process::Command::new(crate::support::baton_bin())
        .args(&args)
        .output()
        .expect("run baton");
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("may not call Control.Hold"),
        "{}",
        stderr(&out)
    );
    let mut unhold = args.clone();
    unhold.truncate(unhold.len() - 4);
    unhold.extend(["unhold", "h2"].map(String::from));
    let out = std::process::Command::new(crate::support::baton_bin())
        .args(&unhold)
        .output()
        .expect("run baton");
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));

    // The hold is raft state: it survives the leader's death.
    let leader = leader_index(&cluster);
    cluster.kill(leader);
    let survivor = (leader + 1) % 3;
    let mut lease = cluster.lease_client(survivor).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = cluster.wait_for_leader(Duration::from_secs(20));
        if status["leader"].as_u64() != Some(leader as u64 + 1) {
            break status;
        }
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(held_names(&status), ["h2"], "{status}");
    let refused = loop {
        match lease
            .acquire(pb::AcquireRequest {
                group: GROUP.into(),
                holder: "h2".into(),
                machine_id: "machine-h2".into(),
                released: None,
            })
            .await
        {
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => break other,
        }
    };
    let refused = refused.expect_err("still held after the leader changed");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );

    // Unheld, it queues again.
    let out = cluster.cli(&["unhold", "h2"]);
    assert!(stdout(&out).contains("unheld h2"), "{}", stdout(&out));
    match acquire(&mut lease, "h2").await {
        pb::acquire_response::Outcome::Queued(q) => assert_eq!(q.position, 1),
        other => panic!("h2 not queued after unhold: {other:?}"),
    }
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    assert!(held_names(&status).is_empty(), "{status}");
}

#[test]
fn a_held_agent_does_not_queue_and_reboot_now_reboots_it_outside_its_window() {
    const WAIT: Duration = Duration::from_secs(20);
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(20));
    // A one-minute window 12 hours from now, and no update pending.
    let later = jiff::Timestamp::now()
        .in_tz("UTC")
        .unwrap()
        .checked_add(jiff::SignedDuration::from_hours(12))
        .unwrap();
    let extra = format!(
        "time_zone = \"UTC\"\n[[reboot.window]]\nstart = \"{:02}:{:02}\"\nlength = \"1m\"\n",
        later.hour(),
        later.minute()
    );
    let mut host = AgentHost::new(&cluster, "patient", &extra);
    host.start();
    host.wait_phase("idle", WAIT);

    let out = cluster.cli(&["hold", "patient", "--reason", "vendor check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cluster.cli(&["reboot-now", "patient"]);
    assert!(
        stdout(&out).contains("asked patient to reboot"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("it is held: vendor check"),
        "{}",
        stdout(&out)
    );
    let text = stdout(&cluster.cli(&["status"]));
    assert!(
        text.contains("REBOOT NOW patient (asked by test-admin"),
        "{text}"
    );

    // Reboot-now makes it need a reboot with nothing pending, but held it does not queue.
    host.wait_phase("reboot-needed", WAIT);
    let deadline = Instant::now() + WAIT;
    while !host
        .log()
        .contains("held by admin: vendor check (held by test-admin)")
    {
        assert!(Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host.phase(), "reboot-needed");
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    assert!(
        status["groups"]["workers"].is_null()
            || status["groups"]["workers"]["queue"]
                .as_array()
                .is_some_and(|q| q.is_empty()),
        "a held host queued: {status}"
    );
    assert_eq!(host.reboot_calls(), 0);

    // Unheld: it takes the lease outside its window and reboots.
    let out = cluster.cli(&["unhold", "patient"]);
    assert!(out.status.success(), "{}", stderr(&out));
    host.wait_reboot_calls(1, WAIT);
    assert_eq!(cluster.holders("workers"), ["patient"]);
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    assert!(cluster.holders("workers").is_empty());
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    assert!(
        status["reboot_now"]
            .as_array()
            .is_some_and(|r| r.is_empty()),
        "reboot-now not cleared by the release: {status}"
    );
    // Once: the request is done, and the window is still closed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host.phase(), "idle", "{}", host.log());
    assert_eq!(host.reboot_calls(), 1, "{}", host.log());
}
