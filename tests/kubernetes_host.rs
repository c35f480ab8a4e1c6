//! A host agent draining a Kubernetes node (the fake API of `baton-testkit`): killed, forced, marking it.
//!
//! The drain's record reaches `agent.json` only when the drain returns; the
//! cordon's own record is baton's annotation on the node, set in the same
//! PATCH. These tests kill the agent between the two and check what the
//! next agent does with the node.

use std::time::{Duration, Instant};

use baton_testkit::kubernetes_api::{FakeApi, FakePod};

use crate::support::{AgentHost, TestCluster};

const WAIT: Duration = Duration::from_secs(20);
const NODE: &str = "node-k";
const ANNOTATION: &str = "baton.io/cordoned-by";

/// The fake API server runs on its own runtime, beside the blocking test.
fn fake_api(pods: Vec<FakePod>) -> (tokio::runtime::Runtime, FakeApi) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let api = runtime.block_on(FakeApi::start(NODE, pods));
    (runtime, api)
}

/// `[kubernetes]` for the fake API: a drain that a PodDisruptionBudget
/// holds for `drain_timeout`. Node annotations off: these tests count the
/// cordon's own PATCHes.
fn kubernetes_section(api: &FakeApi) -> String {
    format!(
        "[kubernetes]\nkubeconfig = \"{}\"\nnode_name = \"{NODE}\"\ndrain_timeout = \"3s\"\neviction_retry = \"100ms\"\nannotate_node = false\n",
        api.kubeconfig().display()
    )
}

fn wait_until(what: &str, host: &AgentHost, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen (phase {}):\n{}",
            host.phase(),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cordoned_by(api: &FakeApi) -> Option<String> {
    api.node_annotations().get(ANNOTATION).cloned()
}

/// Starts the host with an update pending and kills it once its cordon has
/// reached the API server (the drain cannot return: a PDB holds it).
fn kill_after_the_cordon(host: &mut AgentHost, api: &FakeApi) {
    let patches = api.node_patches().len();
    host.update_pending();
    host.start();
    wait_until("the cordon", host, || api.node_patches().len() > patches);
    host.kill();
    assert_eq!(host.phase(), "draining");
    assert!(api.unschedulable());
    assert_eq!(cordoned_by(api).as_deref(), Some(host.name.as_str()));
    // This round is over for the test: no new drain after the restart.
    let _ = std::fs::remove_file(host.sentinel());
}

#[test]
fn a_node_cordoned_by_a_killed_agent_is_uncordoned_by_the_next() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let (_runtime, api) = fake_api(vec![FakePod::new("db", "postgres-0", NODE).pdb_always()]);
    let mut host = AgentHost::new(&cluster, "kube1", &kubernetes_section(&api));

    // 1. Killed mid-drain; restarted while still holding the lease: the new
    //    agent drains again, takes the cordon as its own (the annotation
    //    says so), times out on the PDB and undoes the cordon.
    kill_after_the_cordon(&mut host, &api);
    host.start();
    wait_until("the uncordon after a second drain", &host, || {
        !api.unschedulable() && host.phase() == "idle"
    });
    assert_eq!(cordoned_by(&api), None, "annotation left behind");
    assert!(
        host.log().contains("already cordoned by baton"),
        "{}",
        host.log()
    );
    let uncordon = api.node_patches().pop().expect("the uncordon");
    assert_eq!(
        uncordon.body,
        Some(serde_json::json!({
            "metadata": { "annotations": { ANNOTATION: null } },
            "spec": { "unschedulable": false }
        }))
    );

    // 2. Killed mid-drain; the lease taken away meanwhile: the new agent
    //    gives up the drain with no record of it, and once idle finds the
    //    annotated cordon and undoes it.
    host.kill();
    kill_after_the_cordon(&mut host, &api);
    let out = cluster.cli(&["unlock", "workers", "kube1"]);
    assert!(out.status.success(), "{out:?}");
    host.start();
    wait_until("the uncordon at idle", &host, || {
        !api.unschedulable() && host.phase() == "idle"
    });
    assert_eq!(cordoned_by(&api), None, "annotation left behind");
    assert!(
        host.log().contains("but no drain is on record"),
        "{}",
        host.log()
    );
    assert_eq!(host.reboot_calls(), 0, "{}", host.log());

    // 3. Cordoned by hand (no annotation): a new agent leaves it so, and says so.
    host.kill();
    api.set_unschedulable(true);
    let patches = api.node_patches().len();
    host.start();
    wait_until("the log line about a cordon not ours", &host, || {
        host.log()
            .contains("not by baton (no baton.io/cordoned-by annotation): leaving it cordoned")
    });
    host.wait_phase("idle", WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(api.unschedulable(), "uncordoned a node cordoned by hand");
    assert_eq!(
        api.node_patches().len(),
        patches,
        "{:?}",
        api.node_patches()
    );
    host.kill();
}

/// A roll through the agent marks the node: "reboot needed" and "in
/// progress" annotations and the pre-reboot label while it works, then the
/// post-reboot label once it is back.
#[test]
fn a_rolling_host_annotates_and_labels_its_node() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let (_runtime, api) = fake_api(vec![FakePod::new("default", "web-1", NODE)]);
    let section = format!(
        "[kubernetes]\nkubeconfig = \"{}\"\nnode_name = \"{NODE}\"\nready_timeout = \"5s\"\n\
         eviction_retry = \"100ms\"\npre_reboot_labels = [\"baton.io/rebooting=true\"]\n\
         post_reboot_labels = [\"baton.io/patched=true\"]\n",
        api.kubeconfig().display()
    );
    let mut host = AgentHost::new(&cluster, "kube2", &section);
    host.update_pending();
    host.start();
    host.wait_reboot_calls(1, WAIT);
    let annotations = api.node_annotations();
    assert!(
        annotations.contains_key("baton.io/reboot-needed"),
        "{annotations:?}"
    );
    let in_progress = annotations
        .get("baton.io/reboot-in-progress")
        .cloned()
        .unwrap_or_default();
    assert!(in_progress.starts_with("kube2 token "), "{annotations:?}");
    assert_eq!(
        api.node_labels()
            .get("baton.io/rebooting")
            .map(String::as_str),
        Some("true")
    );
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    let annotations = api.node_annotations();
    assert!(
        !annotations.contains_key("baton.io/reboot-needed")
            && !annotations.contains_key("baton.io/reboot-in-progress"),
        "{annotations:?}"
    );
    let labels = api.node_labels();
    assert!(!labels.contains_key("baton.io/rebooting"), "{labels:?}");
    assert_eq!(
        labels.get("baton.io/patched").map(String::as_str),
        Some("true")
    );
    host.kill();
}

/// A PodDisruptionBudget that never allows the eviction: with `force_after`
/// the agent deletes the pod, says so loudly, and reboots.
#[test]
fn a_drain_past_force_after_deletes_the_pod_and_says_so() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let (_runtime, api) = fake_api(vec![FakePod::new("db", "postgres-0", NODE).pdb_always()]);
    let section = format!(
        "[kubernetes]\nkubeconfig = \"{}\"\nnode_name = \"{NODE}\"\ndrain_timeout = \"10s\"\n\
         force_after = \"500ms\"\neviction_retry = \"100ms\"\nready_timeout = \"5s\"\n",
        api.kubeconfig().display()
    );
    let mut host = AgentHost::new(&cluster, "kube3", &section);
    host.update_pending();
    host.start();
    host.wait_reboot_calls(1, WAIT);
    assert_eq!(
        api.deletions_of("db/postgres-0").len(),
        1,
        "{:?}",
        api.requests()
    );
    assert!(!api.evictions_of("db/postgres-0").is_empty());
    let log = host.log();
    assert!(log.contains("FORCED DRAIN: deleted db/postgres-0"), "{log}");
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    host.kill();
}
