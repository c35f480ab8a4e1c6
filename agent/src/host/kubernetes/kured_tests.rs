//! Forced drains, node annotations and labels, against the fake API server (`baton_testkit::kubernetes_api`; no API server can run here).

use std::time::Duration;

use baton_testkit::kubernetes_api::{FakeApi, FakePod};

use super::*;

const NODE: &str = "node-a";

fn settings(api: &FakeApi) -> KubernetesSettings {
    KubernetesSettings {
        kubeconfig: Some(api.kubeconfig()),
        node_name: NODE.to_string(),
        drain_timeout: Duration::from_secs(5),
        grace_period: Some(Duration::from_secs(7)),
        pod_selector: None,
        ready_timeout: Duration::from_secs(5),
        eviction_retry: Duration::from_millis(50),
        force_after: None,
        annotate_node: true,
        pre_reboot_labels: vec![],
        post_reboot_labels: vec![],
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
