//! Forced drains, node annotations and labels, against the fake API (no API server here).

use std::time::Duration;

use baton_testkit::kubernetes_api::{FakeApi, FakePod};

use super::node_marks::{REBOOT_IN_PROGRESS, REBOOT_NEEDED};
use super::*;

const NODE: &str = "node-a";

fn settings(api: &FakeApi) -> KubernetesSettings {
    KubernetesSettings {
        drain_timeout: Duration::from_secs(5),
        grace_period: Some(Duration::from_secs(7)),
        ready_timeout: Duration::from_secs(5),
        ..test_settings(api.kubeconfig(), NODE)
    }
}

fn lease() -> HeldLease {
    HeldLease::from_grant("workers", NODE, 42)
}

#[tokio::test]
async fn past_force_after_a_pod_no_eviction_moves_is_deleted() {
    let api = FakeApi::start(
        NODE,
        vec![
            FakePod::new("db", "postgres-0", NODE).pdb_always(),
            FakePod::new("default", "web-1", NODE),
        ],
    )
    .await;
    let mut settings = settings(&api);
    settings.force_after = Some(Duration::from_millis(400));
    let drainer = KubeDrainer::connect(&settings).await.unwrap();
    let started = std::time::Instant::now();
    let record = drainer.drain(&lease()).await.unwrap();
    // Tried by eviction first, for force_after; deleted after it.
    let evictions = api.evictions_of("db/postgres-0");
    let deletions = api.deletions_of("db/postgres-0");
    assert!(evictions.len() >= 2, "{evictions:?}");
    assert!(evictions.iter().all(|r| r.status == 429));
    assert_eq!(deletions.len(), 1, "{:?}", api.requests());
    assert!(deletions[0].at >= evictions[evictions.len() - 1].at);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // The grace period goes with the delete.
    assert_eq!(
        deletions[0]
            .body
            .as_ref()
            .and_then(|b| b.get("gracePeriodSeconds"))
            .and_then(|v| v.as_i64()),
        Some(7),
        "{:?}",
        deletions[0]
    );
    // The pod a PDB allowed was evicted, never deleted.
    assert!(api.deletions_of("default/web-1").is_empty());
    assert!(record.evicted.contains(&"db/postgres-0".to_string()));
    assert_eq!(drainer.take_forced(), vec!["db/postgres-0".to_string()]);
    assert!(drainer.take_forced().is_empty(), "taken once");
}

#[tokio::test]
async fn without_force_after_a_pdb_that_never_allows_it_times_the_drain_out() {
    let api = FakeApi::start(
        NODE,
        vec![FakePod::new("db", "postgres-0", NODE).pdb_always()],
    )
    .await;
    let mut settings = settings(&api);
    settings.drain_timeout = Duration::from_millis(600);
    let drainer = KubeDrainer::connect(&settings).await.unwrap();
    let err = drainer.drain(&lease()).await.unwrap_err();
    assert!(matches!(err, DrainError::Timeout { .. }), "{err}");
    assert!(api.deletions_of("db/postgres-0").is_empty());
    assert!(drainer.take_forced().is_empty());
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_roll_marks_the_node_needed_in_progress_then_rebooted() {
    let api = FakeApi::start(NODE, vec![]).await;
    let mut settings = settings(&api);
    settings.pre_reboot_labels = labels(&[("baton.io/rebooting", "true")]);
    settings.post_reboot_labels = labels(&[("baton.io/patched", "true")]);
    let kube = KubeDrainer::connect(&settings).await.unwrap();
    // Left from the previous roll.
    api.set_node_label("baton.io/patched", Some("true"));

    kube.mark_reboot_needed("4152.2.1").await.unwrap();
    assert_eq!(
        api.node_annotations()
            .get(REBOOT_NEEDED)
            .map(String::as_str),
        Some("4152.2.1")
    );
    kube.mark_in_progress(&lease()).await.unwrap();
    assert_eq!(
        api.node_annotations()
            .get(REBOOT_IN_PROGRESS)
            .map(String::as_str),
        Some("node-a token 42")
    );
    let l = api.node_labels();
    assert_eq!(
        l.get("baton.io/rebooting").map(String::as_str),
        Some("true")
    );
    assert!(!l.contains_key("baton.io/patched"), "{l:?}");

    kube.mark_rebooted().await.unwrap();
    let a = api.node_annotations();
    assert!(
        !a.contains_key(REBOOT_NEEDED) && !a.contains_key(REBOOT_IN_PROGRESS),
        "{a:?}"
    );
    let l = api.node_labels();
    assert!(!l.contains_key("baton.io/rebooting"), "{l:?}");
    assert_eq!(l.get("baton.io/patched").map(String::as_str), Some("true"));
    // Each step was one PATCH.
    assert_eq!(api.node_patches().len(), 3);
}

#[tokio::test]
async fn idle_clears_only_what_is_left_and_patches_nothing_on_a_clean_node() {
    let api = FakeApi::start(NODE, vec![]).await;
    let mut settings = settings(&api);
    settings.pre_reboot_labels = labels(&[("maintenance", "baton")]);
    settings.post_reboot_labels = labels(&[("patched", "yes")]);
    let kube = KubeDrainer::connect(&settings).await.unwrap();
    assert!(!kube.clear_marks().await.unwrap());
    assert!(api.node_patches().is_empty(), "a clean node is not patched");
    // A roll given up after the grant: marks left behind.
    kube.mark_reboot_needed("packages: libc6").await.unwrap();
    kube.mark_in_progress(&lease()).await.unwrap();
    api.set_node_label("patched", Some("yes"));
    assert!(kube.clear_marks().await.unwrap());
    assert!(
        api.node_annotations().is_empty(),
        "{:?}",
        api.node_annotations()
    );
    // Post-reboot labels stay.
    assert_eq!(
        api.node_labels().into_iter().collect::<Vec<_>>(),
        vec![("patched".to_string(), "yes".to_string())]
    );
    // An operator's label with the same key but another value stays too.
    api.set_node_label("maintenance", Some("by-hand"));
    assert!(!kube.clear_marks().await.unwrap());
    assert_eq!(
        api.node_labels().get("maintenance").map(String::as_str),
        Some("by-hand")
    );
}

#[tokio::test]
async fn with_annotations_off_and_no_labels_the_node_is_left_alone() {
    let api = FakeApi::start(NODE, vec![]).await;
    let mut settings = settings(&api);
    settings.annotate_node = false;
    let kube = KubeDrainer::connect(&settings).await.unwrap();
    kube.mark_reboot_needed("x").await.unwrap();
    kube.mark_in_progress(&lease()).await.unwrap();
    kube.mark_rebooted().await.unwrap();
    assert!(!kube.clear_marks().await.unwrap());
    assert!(api.requests().is_empty(), "{:?}", api.requests());
}
