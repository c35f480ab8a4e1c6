//! The fleet view (`baton hosts`): real voters, real host agents reporting, a leader kill, the refusals.
//!
//! Three voters only serve the lease; client hosts run `baton agent` with
//! sentinel update sources (see `support::AgentHost`) and report every
//! 2 s (`[updates] report_interval`, in a drop-in).

use std::time::{Duration, Instant};

use baton::Role;
use baton_proto::v1 as pb;
use baton_proto::v1::fleet_client::FleetClient;
use serde_json::Value;

use crate::security::{cli_as, dialer_as, identity};
use crate::support::{stderr, stdout, write_file, AgentHost, TestCluster};

const WAIT: Duration = Duration::from_secs(20);
const EX_NOPERM: i32 = 77;

/// A host agent reporting every 2 s; `extra` goes into its `[reboot]` table.
fn reporting_host(cluster: &TestCluster, name: &str, extra: &str) -> AgentHost {
    let host = AgentHost::new(cluster, name, extra);
    write_file(
        &host.dir().join("baton.d"),
        "50-report.toml",
        "[updates]\nreport_interval = \"2s\"\n",
    );
    host
}

/// `baton hosts --json` as an admin, from whichever voter answers first.
fn hosts(cluster: &TestCluster) -> Option<Value> {
    let out = cluster.cli(&["hosts", "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The entry of host `name` in a `baton hosts --json` answer.
fn entry<'a>(view: &'a Value, name: &str) -> Option<&'a Value> {
    view["hosts"].as_array()?.iter().find(|h| h["name"] == name)
}

/// Waits until `baton hosts` shows `name` with `check` true; the view.
fn wait_for(
    cluster: &TestCluster,
    name: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(view) = hosts(cluster) {
            if entry(&view, name).is_some_and(&check) {
                return view;
            }
            if Instant::now() > deadline {
                panic!("{name} not shown as expected within {within:?}: {view:#}");
            }
        }
        assert!(Instant::now() < deadline, "baton hosts never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn last_applied(cluster: &TestCluster) -> u64 {
    cluster.wait_for_leader(Duration::from_secs(10))["last_applied"]
        .as_u64()
        .expect("last_applied")
}

#[test]
fn agents_appear_with_phase_and_pending_update_and_a_phase_change_shows_at_once() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    // h1 has an update but a blocker holds it in reboot-needed until the
    // file `blocked` goes; h2 has nothing to do.
    let blocked = cluster.layout.root().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let blocker = format!(
        "[[reboot.blocker]]\ncommand = [\"sh\", \"-c\", \"test ! -e {}\"]\n",
        blocked.display()
    );
    let mut h1 = reporting_host(&cluster, "h1", &blocker);
    let mut h2 = reporting_host(&cluster, "h2", "");
    h1.update_pending();
    h1.start();
    h2.start();
    h1.wait_phase("reboot-needed", WAIT);

    let view = wait_for(&cluster, "h1", WAIT, |h| h["phase"] == "reboot-needed");
    let view = if entry(&view, "h2").is_some() {
        view
    } else {
        wait_for(&cluster, "h2", WAIT, |_| true)
    };
    let (one, two) = (entry(&view, "h1").unwrap(), entry(&view, "h2").unwrap());
    assert_eq!(one["group"], "workers", "{view:#}");
    assert_eq!(one["pending"]["source"], "sentinel", "{view:#}");
    assert!(
        one["pending"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("reboot-required")),
        "the sentinel file is the reason: {view:#}"
    );
    assert_eq!(one["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(one["report_interval_ms"], 2_000);
    assert!(one["last_reboot"].is_string(), "{view:#}");
    assert_eq!(one["stale"], false);
    assert_eq!(two["phase"], "idle");
    assert!(two["pending"].is_null(), "{view:#}");

    // The table, and the line in `baton status`.
    let text = stdout(&cluster.cli(&["hosts"]));
    let row = text
        .lines()
        .find(|l| l.starts_with("h1 "))
        .unwrap_or_default();
    assert!(
        row.contains("workers") && row.contains("reboot-needed") && row.contains("sentinel"),
        "{text}"
    );
    let status = stdout(&cluster.cli(&["status"]));
    assert!(
        status.contains("hosts: 2 reporting (baton hosts lists them)"),
        "{status}"
    );

    // Reports cost no raft entries: 3 s of reports every 2 s (and h1's
    // blocker retried every second) leave the log where it was.
    cluster.wait_voters_recorded();
    let before = last_applied(&cluster);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(last_applied(&cluster), before, "reports wrote raft entries");

    // A phase change shows within a second or two, not at the next interval.
    std::fs::remove_file(&blocked).unwrap();
    h1.wait_phase("rebooting", WAIT);
    let changed = Instant::now();
    wait_for(&cluster, "h1", WAIT, |h| h["phase"] == "rebooting");
    let took = changed.elapsed();
    eprintln!("phase change to baton hosts: {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn the_view_refills_after_a_leader_kill() {
    let mut cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let mut hosts_up: Vec<AgentHost> = ["h1", "h2", "h3"]
        .iter()
        .map(|name| reporting_host(&cluster, name, ""))
        .collect();
    hosts_up[0].update_pending();
    for host in &mut hosts_up {
        host.start();
    }
    for name in ["h1", "h2", "h3"] {
        wait_for(&cluster, name, WAIT, |_| true);
    }
    // A view that has been collecting for a full interval.
    let deadline = Instant::now() + WAIT;
    let before = loop {
        let view = hosts(&cluster).expect("the view");
        if view["refilling"] == false {
            break view;
        }
        assert!(Instant::now() < deadline, "still refilling: {view:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(before["hosts"].as_array().map(Vec::len), Some(3));
    let leader = before["leader"].as_u64().expect("the view's leader");

    let killed = Instant::now();
    cluster.kill(usize::try_from(leader).unwrap() - 1);
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    let new_leader = status["leader"].as_u64().unwrap();
    assert_ne!(new_leader, leader);
    let elected = killed.elapsed();

    // The new leader's view starts empty and says it is refilling, then
    // every host is back within one report interval (2 s) of the election.
    let deadline = Instant::now() + WAIT;
    let refilled = loop {
        if let Some(view) = hosts(&cluster) {
            if view["leader"] == new_leader
                && ["h1", "h2", "h3"]
                    .iter()
                    .all(|name| entry(&view, name).is_some())
            {
                break view;
            }
        }
        assert!(Instant::now() < deadline, "the view never refilled");
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = killed.elapsed();
    eprintln!("leader killed: new leader after {elected:?}, view refilled after {took:?}");
    assert!(
        took < elected + Duration::from_secs(2) + Duration::from_millis(1_500),
        "refilled {took:?} after the kill, election after {elected:?}"
    );
    assert_ne!(refilled["since"], before["since"], "a fresh view");
    assert_eq!(
        entry(&refilled, "h1").unwrap()["pending"]["source"],
        "sentinel"
    );

    // A host that stops reporting is marked stale after 3 of its intervals
    // (6 s), stays listed, and no longer counts as reporting.
    hosts_up[2].kill();
    let gone = Instant::now();
    let view = wait_for(&cluster, "h3", WAIT, |h| h["stale"] == true);
    let took = gone.elapsed();
    assert!(
        took > Duration::from_secs(3) && took < Duration::from_secs(10),
        "stale after {took:?}: {view:#}"
    );
    assert_eq!(entry(&view, "h2").unwrap()["stale"], false);
    let status = stdout(&cluster.cli(&["status"]));
    assert!(status.contains("hosts: 2 reporting"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_report_only_as_themselves_within_limits_and_only_admins_list_the_fleet() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let h1 = identity(&cluster, "h1", Role::Host);
    let dialer = dialer_as(&h1);
    let channel = dialer.connect(&cluster.address(0)).await.expect("connect");
    let mut fleet = FleetClient::new(channel);
    let report = |name: &str| pb::HostReport {
        name: name.into(),
        group: "workers".into(),
        phase: "idle".into(),
        agent_version: "0.1.0".into(),
        report_interval_ms: 30_000,
        ..Default::default()
    };

    // As itself: taken.
    fleet
        .report(report("h1"))
        .await
        .expect("h1 reports as itself");
    // As another host: refused, and named.
    let refused = fleet.report(report("h2")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains("acts only as itself"),
        "{}",
        refused.message()
    );
    // Fields over their limits, or not what they must be.
    let oversized = [
        pb::HostReport {
            pending: Some(pb::PendingReboot {
                source: "apt".into(),
                reason: "x".repeat(257),
                version: None,
            }),
            ..report("h1")
        },
        pb::HostReport {
            agent_version: "v".repeat(65),
            ..report("h1")
        },
        pb::HostReport {
            phase: "sleeping".into(),
            ..report("h1")
        },
        pb::HostReport {
            group: "a/b".into(),
            ..report("h1")
        },
        pb::HostReport {
            report_interval_ms: 10,
            ..report("h1")
        },
        report(&"h".repeat(254)),
    ];
    for bad in oversized {
        let refused = fleet.report(bad.clone()).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{bad:?}: {}",
            refused.message()
        );
    }
    // A message over the API limit is not even decoded.
    let huge = pb::HostReport {
        agent_version: "v".repeat(100_000),
        ..report("h1")
    };
    let refused = fleet.report(huge).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::OutOfRange,
        "{}",
        refused.message()
    );
    // Only voters pass reports on.
    let refused = fleet
        .forward(pb::ReportBatch {
            reports: vec![report("h1")],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // A host may not list the fleet (gRPC and CLI, exit 77).
    let refused = fleet.hosts(pb::HostsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let out = cli_as(&cluster, &h1, &["hosts"]);
    assert_eq!(out.status.code(), Some(EX_NOPERM), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only admin certificates may list the fleet"),
        "{}",
        stderr(&out)
    );

    // The one good report got through; none of the refused ones did.
    let deadline = Instant::now() + WAIT;
    let view = loop {
        if let Some(view) = hosts(&cluster) {
            if entry(&view, "h1").is_some() {
                break view;
            }
        }
        assert!(Instant::now() < deadline, "h1's report never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view["hosts"].as_array().map(Vec::len), Some(1), "{view:#}");
    assert_eq!(entry(&view, "h1").unwrap()["phase"], "idle");
}
