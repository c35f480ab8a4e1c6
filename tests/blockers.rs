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
