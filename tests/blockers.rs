//! Blockers on a real agent: re-checked after the grant, before the drain.
//!
//! Real voters and a real `baton agent`; the blocker is a command that
//! looks for a file the test creates while the host waits in the queue.

use std::time::{Duration, Instant};

use crate::support::{AgentHost, TestCluster};

const WAIT: Duration = Duration::from_secs(20);

fn wait_until(what: &str, host: &AgentHost, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_blocker_that_fires_while_queued_gives_the_grant_back_undrained() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    // An operator holds the lease, so the host queues behind it.
    let out = cluster.cli(&["lease", "acquire", "workers", "--holder", "operator"]);
    assert!(out.status.success());
    let root = cluster.layout.root().join("blocker-files");
    std::fs::create_dir_all(&root).unwrap();
    let (block, drained) = (root.join("block"), root.join("drained"));
    let extra = format!(
        "[[reboot.blocker]]\ncommand = [\"sh\", \"-c\", \"test ! -e {block}\"]\n\
         [[hooks.before_reboot]]\ncommand = [\"touch\", \"{drained}\"]\n",
        block = block.display(),
        drained = drained.display(),
    );
    let mut host = AgentHost::new(&cluster, "patient", &extra);
    host.update_pending();
    host.start();
    host.wait_phase("waiting-for-lease", WAIT);
    // While it waits, something starts to block (an alert, a job).
    std::fs::write(&block, "").unwrap();
    let out = cluster.cli(&["lease", "release", "workers", "--holder", "operator"]);
    assert!(out.status.success());
    // Granted, re-checked, given back without draining.
    wait_until("no re-check after the grant", &host, || {
        host.log().contains("after the grant")
    });
    wait_until("the lease was not given back", &host, || {
        cluster.holders("workers").is_empty() && host.phase() != "releasing"
    });
    let log = host.log();
    assert!(log.contains("draining -> releasing"), "{log}");
    assert!(!drained.exists(), "drained despite the blocker:\n{log}");
    assert_eq!(host.reboot_calls(), 0, "{log}");
    // While it backs off it says why (STATUS goes to the journal too).
    wait_until("no back-off status", &host, || {
        host.log().contains("blocked after the grant (`sh")
    });
    // The blocker clears: the host queues again, drains and reboots.
    std::fs::remove_file(&block).unwrap();
    host.wait_reboot_calls(1, WAIT);
    assert!(drained.exists());
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    assert!(cluster.holders("workers").is_empty());
}

/// `[blockers.prometheus]` against a real HTTP server in the test (our fake
/// Prometheus: none can be installed here): a firing alert keeps the host
/// from queueing and is named; once it clears, the host rolls.
#[test]
fn a_firing_alert_keeps_the_host_from_queueing_until_it_clears() {
    use baton_testkit::http_fake::{alerts_json, HttpFake};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let prometheus = runtime.block_on(HttpFake::start());
    prometheus.answer(
        "/api/v1/alerts",
        200,
        &alerts_json(&[("Watchdog", "firing"), ("KubeNodeNotReady", "firing")]),
    );
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let extra = format!(
        "[blockers.prometheus]\nurl = \"{}\"\nalert_filter = \"^Watchdog$\"\nfiring_only = true\n",
        prometheus.url()
    );
    let mut host = AgentHost::new(&cluster, "watched", &extra);
    host.update_pending();
    host.start();
    wait_until("the alert named", &host, || {
        host.log().contains("Prometheus alerts active")
    });
    // The line names the alert that blocks, not the one filtered out.
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("Prometheus alerts active"))
        .unwrap_or("");
    assert!(
        line.contains("KubeNodeNotReady") && !line.contains("Watchdog"),
        "{log}"
    );
    assert_eq!(host.phase(), "reboot-needed");
    assert!(cluster.holders("workers").is_empty());
    // Pending only now: firing_only lets it through.
    prometheus.answer(
        "/api/v1/alerts",
        200,
        &alerts_json(&[("Watchdog", "firing"), ("KubeNodeNotReady", "pending")]),
    );
    host.wait_reboot_calls(1, WAIT);
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    drop(runtime);
}
