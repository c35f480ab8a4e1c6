//! Drain tests against the in-process fake API server (`baton_testkit::kubernetes_api`): no
//! Kubernetes API server can be installed where these tests run, so the
//! fake serves the few endpoints used, over plain HTTP, through kube's
//! real client and a kubeconfig it writes.

use super::evict::grace_seconds;
use super::*;
use baton_testkit::kubernetes_api::{FakeApi, FakePod};
use serde_json::json;
use std::time::Instant as StdInstant;

const NODE: &str = "node-a";

fn settings(api: &FakeApi) -> KubernetesSettings {
    test_settings(api.kubeconfig(), NODE)
}

fn lease() -> HeldLease {
    HeldLease::from_grant("workers", NODE, 42)
}

async fn drainer(settings: &KubernetesSettings) -> KubeDrainer {
    match KubeDrainer::connect(settings).await {
        Ok(drainer) => drainer,
        Err(e) => panic!("connect: {e}"),
    }
}

fn node_path() -> String {
    format!("/api/v1/nodes/{NODE}")
}

/// The uncordon: one merge patch, annotation removed with the cordon.
fn uncordon_body() -> serde_json::Value {
    json!({
        "metadata": { "annotations": { "baton.io/cordoned-by": null } },
        "spec": { "unschedulable": false }
    })
}

/// Runs a drain until its cordon has reached the API server, then drops it
/// and the drainer mid-drain, as a crash or restart of the agent would (a
/// PodDisruptionBudget keeps the drain from returning first).
async fn drain_cut_short_after_the_cordon(api: &FakeApi) {
    let mut settings = settings(api);
    settings.drain_timeout = Duration::from_secs(60);
    let drainer = drainer(&settings).await;
    let lease = lease();
    let drain = drainer.drain(&lease);
    tokio::pin!(drain);
    let deadline = StdInstant::now() + Duration::from_secs(10);
    while api.node_patches().is_empty() {
        assert!(
            StdInstant::now() < deadline,
            "no cordon: {:?}",
            api.requests()
        );
        tokio::select! {
            out = &mut drain => panic!("the drain returned: {out:?}"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

#[tokio::test]
async fn connect_errors_name_the_kubeconfig() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-kubeconfig");
    let broken = dir.path().join("broken-kubeconfig");
    std::fs::write(&broken, "clusters: [ this is : not a kubeconfig").expect("write");
    for path in [missing, broken] {
        let settings = KubernetesSettings {
            kubeconfig: Some(path.clone()),
            node_name: NODE.to_string(),
            drain_timeout: Duration::from_secs(1),
            grace_period: None,
            pod_selector: None,
            ready_timeout: Duration::from_secs(1),
            eviction_retry: Duration::from_secs(1),
            force_after: None,
            annotate_node: true,
            pre_reboot_labels: vec![],
            post_reboot_labels: vec![],
        };
        match KubeDrainer::connect(&settings).await {
            Err(e @ DrainError::Kubeconfig { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.starts_with("kubernetes.kubeconfig: "), "{text}");
            }
            Err(e) => panic!("unexpected error for {}: {e}", path.display()),
            Ok(_) => panic!("connect with {} succeeded", path.display()),
        }
    }
}

#[tokio::test]
async fn drain_cordons_backs_off_on_pdb_and_skips_daemonset_mirror_and_finished_pods() {
    let api = FakeApi::start(
        NODE,
        vec![
            FakePod::new("default", "web-1", NODE)
                .eviction_answers(&[429])
                .lingers(2),
            FakePod::new("default", "web-2", NODE),
            FakePod::new("default", "bare", NODE).bare(),
            FakePod::new("kube-system", "node-exporter-x7k2p", NODE).daemonset(),
            FakePod::new("kube-system", "kube-apiserver-node-a", NODE).mirror(),
            FakePod::new("default", "job-done", NODE).phase("Succeeded"),
            FakePod::new("default", "job-failed", NODE).phase("Failed"),
            FakePod::new("default", "leaving", NODE).terminating(),
            FakePod::new("default", "elsewhere", "node-b"),
        ],
    )
    .await;
    let settings = settings(&api);
    let record = drainer(&settings)
        .await
        .drain(&lease())
        .await
        .expect("drain");

    assert_eq!(
        record,
        DrainRecord {
            node: NODE.to_string(),
            we_cordoned: true,
            // web-1's first eviction was refused, so web-2 went first.
            evicted: vec![
                "default/web-2".to_string(),
                "default/bare".to_string(),
                "default/web-1".to_string()
            ],
        }
    );

    // Cordon first: one merge patch setting spec.unschedulable=true and, in
    // the same request, baton's annotation naming the lease holder.
    let requests = api.requests();
    let patches = api.node_patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].body,
        Some(json!({
            "metadata": { "annotations": { "baton.io/cordoned-by": NODE } },
            "spec": { "unschedulable": true }
        }))
    );
    assert!(api.unschedulable());
    assert_eq!(
        api.node_annotations().get(CORDONED_BY).map(String::as_str),
        Some(NODE)
    );
    let first_eviction = requests
        .iter()
        .position(|r| r.path.ends_with("/eviction"))
        .expect("an eviction");
    let cordon = requests
        .iter()
        .position(|r| r.method == "PATCH")
        .expect("the cordon");
    assert!(cordon < first_eviction);

    // One list, by node.
    let lists: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert_eq!(lists.len(), 1);
    assert_eq!(
        lists[0].query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a")
    );
    assert_eq!(lists[0].query.get("labelSelector"), None);

    // web-1: 429 (PDB), then 201 after at least eviction_retry.
    let web1 = api.evictions_of("default/web-1");
    let statuses: Vec<u16> = web1.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 201]);
    assert!(web1[1].at.duration_since(web1[0].at) >= settings.eviction_retry);
    assert_eq!(
        web1[1].body,
        Some(json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": { "name": "web-1", "namespace": "default" }
        }))
    );
    assert_eq!(api.evictions_of("default/web-2").len(), 1);

    // Not evicted: DaemonSet-owned, mirror, finished, terminating, other node.
    for key in [
        "kube-system/node-exporter-x7k2p",
        "kube-system/kube-apiserver-node-a",
        "default/job-done",
        "default/job-failed",
        "default/leaving",
        "default/elsewhere",
    ] {
        assert!(api.evictions_of(key).is_empty(), "{key} was evicted");
    }

    // The drain returned only once the evicted pods were gone (404).
    let web1_gets: Vec<u16> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/namespaces/default/pods/web-1")
        .map(|r| r.status)
        .collect();
    assert_eq!(web1_gets, vec![200, 200, 404]);
    let left = api.pods();
    for key in ["default/web-1", "default/web-2", "default/bare"] {
        assert!(!left.contains(&key.to_string()), "{key} still there");
    }
    assert!(left.contains(&"kube-system/node-exporter-x7k2p".to_string()));
}

#[tokio::test]
async fn grace_period_goes_out_in_camel_case_and_pod_selector_filters() {
    let api = FakeApi::start(
        NODE,
        vec![
            FakePod::new("shop", "web-0", NODE).label("app", "web"),
            FakePod::new("shop", "db-0", NODE).label("app", "db"),
        ],
    )
    .await;
    let mut settings = settings(&api);
    settings.grace_period = Some(Duration::from_secs(30));
    settings.pod_selector = Some("app=web".to_string());
    let record = drainer(&settings)
        .await
        .drain(&lease())
        .await
        .expect("drain");
    assert_eq!(record.evicted, vec!["shop/web-0".to_string()]);

    let list = api
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/pods")
        .expect("a pod list");
    assert_eq!(
        list.query.get("labelSelector").map(String::as_str),
        Some("app=web")
    );
    assert_eq!(
        list.query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a")
    );

    let evictions = api.evictions_of("shop/web-0");
    assert_eq!(evictions.len(), 1);
    let body = evictions[0].body.clone().expect("an eviction body");
    assert_eq!(
        body.pointer("/deleteOptions/gracePeriodSeconds"),
        Some(&json!(30))
    );
    assert!(!body.to_string().contains("grace_period"), "{body}");
    assert!(!body.to_string().contains("delete_options"), "{body}");
    assert!(api.evictions_of("shop/db-0").is_empty());
}

#[test]
fn grace_seconds_round_up() {
    assert_eq!(grace_seconds(Duration::from_secs(30)), 30);
    assert_eq!(grace_seconds(Duration::from_millis(500)), 1);
    assert_eq!(grace_seconds(Duration::from_millis(2001)), 3);
    assert_eq!(grace_seconds(Duration::ZERO), 0);
}

#[tokio::test]
async fn undrain_waits_for_ready_before_uncordoning() {
    let api = FakeApi::start(NODE, vec![FakePod::new("default", "web-1", NODE)]).await;
    let settings = settings(&api);
    let drainer = drainer(&settings).await;
    let record = drainer.drain(&lease()).await.expect("drain");
    assert!(record.we_cordoned);

    // "Reboot": the node comes back NotReady twice, then Ready.
    let before_boot = api.requests().len();
    api.set_ready(false);
    api.script_ready(&[false, false, true]);
    drainer.undrain(&lease(), &record).await.expect("undrain");

    let after: Vec<_> = api.requests().into_iter().skip(before_boot).collect();
    let node_gets: Vec<bool> = after
        .iter()
        .filter(|r| r.method == "GET" && r.path == node_path())
        .map(|r| r.node_ready)
        .collect();
    assert_eq!(node_gets, vec![false, false, true]);
    let uncordon_at = after
        .iter()
        .position(|r| r.method == "PATCH")
        .expect("an uncordon");
    assert_eq!(after[uncordon_at].body, Some(uncordon_body()));
    assert!(after[uncordon_at].node_ready);
    let last_get = after
        .iter()
        .rposition(|r| r.method == "GET" && r.path == node_path())
        .expect("node GETs");
    assert!(
        last_get < uncordon_at,
        "uncordoned before the node was Ready"
    );
    assert!(!api.unschedulable());
    assert!(api.node_annotations().is_empty(), "annotation left behind");
}

#[tokio::test]
async fn a_node_cordoned_before_the_drain_stays_cordoned() {
    let api = FakeApi::start(NODE, vec![FakePod::new("default", "web-1", NODE)]).await;
    api.set_unschedulable(true);
    let settings = settings(&api);
    let drainer = drainer(&settings).await;
    let record = drainer.drain(&lease()).await.expect("drain");
    assert!(!record.we_cordoned);
    assert_eq!(record.evicted, vec!["default/web-1".to_string()]);
    assert!(
        api.node_patches().is_empty(),
        "cordon sent to a cordoned node"
    );

    drainer.undrain(&lease(), &record).await.expect("undrain");
    drainer.abort(&record).await.expect("abort");
    assert!(
        api.node_patches().is_empty(),
        "uncordoned a node we did not cordon"
    );
    assert!(api.unschedulable());
    assert!(api.node_annotations().is_empty());
}

#[tokio::test]
async fn a_crash_between_cordon_and_drain_return_is_undone_by_the_next_agent() {
    let api = FakeApi::start(
        NODE,
        vec![FakePod::new("db", "postgres-0", NODE).pdb_always()],
    )
    .await;
    drain_cut_short_after_the_cordon(&api).await;
    // What the crashed agent left: a cordon, and the record of it on the node.
    assert!(api.unschedulable());
    assert_eq!(
        api.node_annotations().get(CORDONED_BY).map(String::as_str),
        Some(NODE)
    );

    // A new agent, idle (no lease, no drain record): uncordons and removes
    // the annotation, in one PATCH.
    let settings = settings(&api);
    let drainer = drainer(&settings).await;
    let before = api.requests().len();
    let found = drainer.undo_unrecorded_cordon().await.expect("check");
    assert_eq!(
        found,
        UnrecordedCordon::Uncordoned {
            cordoned_by: NODE.to_string()
        }
    );
    let after: Vec<_> = api.requests().into_iter().skip(before).collect();
    let patches: Vec<_> = after.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{after:?}");
    assert_eq!(patches[0].body, Some(uncordon_body()));
    assert!(!api.unschedulable());
    assert!(api.node_annotations().is_empty());

    // Once per process: later calls do not touch the API.
    let before = api.requests().len();
    assert_eq!(
        drainer.undo_unrecorded_cordon().await.expect("check"),
        UnrecordedCordon::Skipped
    );
    assert_eq!(api.requests().len(), before);
}

#[tokio::test]
async fn a_drain_after_a_crash_takes_over_the_cordon_and_undoes_it() {
    let api = FakeApi::start(NODE, vec![FakePod::new("default", "web-1", NODE)]).await;
    // As a drain that was cut short left it (the agent still holds the
    // lease after its restart and drains again).
    api.set_unschedulable(true);
    api.set_node_annotation(CORDONED_BY, Some(NODE));
    let settings = settings(&api);
    let drainer = drainer(&settings).await;
    let record = drainer.drain(&lease()).await.expect("drain");
    assert!(record.we_cordoned, "the cordon is baton's: {record:?}");
    assert_eq!(record.evicted, vec!["default/web-1".to_string()]);
    assert!(api.node_patches().is_empty(), "cordoned again");

    drainer.undrain(&lease(), &record).await.expect("undrain");
    let patches = api.node_patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].body, Some(uncordon_body()));
    assert!(!api.unschedulable());
    assert!(api.node_annotations().is_empty());
}

#[tokio::test]
async fn a_node_cordoned_by_hand_is_left_cordoned_at_start() {
    let api = FakeApi::start(NODE, vec![]).await;
    // `kubectl cordon`: unschedulable, no baton annotation (another one, kept).
    api.set_unschedulable(true);
    api.set_node_annotation("example.com/maintenance", Some("disk swap"));
    let settings = settings(&api);
    let first = drainer(&settings).await;
    assert_eq!(
        first.undo_unrecorded_cordon().await.expect("check"),
        UnrecordedCordon::NotOurs
    );
    assert!(api.node_patches().is_empty(), "{:?}", api.node_patches());
    assert!(api.unschedulable());
    assert_eq!(
        api.node_annotations()
            .get("example.com/maintenance")
            .map(String::as_str),
        Some("disk swap")
    );

    // A clean node: nothing to do, nothing sent.
    api.set_unschedulable(false);
    let second = drainer(&settings).await;
    assert_eq!(
        second.undo_unrecorded_cordon().await.expect("check"),
        UnrecordedCordon::Clean
    );
    assert!(api.node_patches().is_empty());
}

#[tokio::test]
async fn an_annotation_left_on_a_node_uncordoned_by_hand_is_removed() {
    let api = FakeApi::start(NODE, vec![]).await;
    api.set_node_annotation(CORDONED_BY, Some("h1"));
    let settings = settings(&api);
    let drainer = drainer(&settings).await;
    assert_eq!(
        drainer.undo_unrecorded_cordon().await.expect("check"),
        UnrecordedCordon::AnnotationRemoved {
            cordoned_by: "h1".to_string()
        }
    );
    let patches = api.node_patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].body,
        Some(json!({ "metadata": { "annotations": { "baton.io/cordoned-by": null } } }))
    );
    assert!(!api.unschedulable());
    assert!(api.node_annotations().is_empty());
}

#[tokio::test]
async fn a_failed_check_for_an_unrecorded_cordon_is_retried_later() {
    let api = FakeApi::start(NODE, vec![]).await;
    let mut wrong = settings(&api);
    wrong.node_name = "node-x".to_string();
    let drainer = drainer(&wrong).await;
    match drainer.undo_unrecorded_cordon().await {
        Err(e @ DrainError::Api { .. }) => {
            assert!(e.to_string().contains("get node (node node-x)"), "{e}")
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    // Not again at once: the agent's idle loop calls it every round.
    let before = api.requests().len();
    assert_eq!(
        drainer.undo_unrecorded_cordon().await.expect("skipped"),
        UnrecordedCordon::Skipped
    );
    assert_eq!(api.requests().len(), before);
}

#[tokio::test]
async fn drain_timeout_names_the_pod_a_pdb_keeps() {
    let api = FakeApi::start(
        NODE,
        vec![
            FakePod::new("default", "web-1", NODE),
            FakePod::new("db", "postgres-0", NODE).pdb_always(),
        ],
    )
    .await;
    let mut settings = settings(&api);
    settings.drain_timeout = Duration::from_millis(400);
    let drainer = drainer(&settings).await;
    let started = StdInstant::now();
    let error = match drainer.drain(&lease()).await {
        Ok(record) => panic!("drain finished: {record:?}"),
        Err(e) => e,
    };
    let took = started.elapsed();
    assert!(took >= settings.drain_timeout, "gave up after {took:?}");
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    match &error {
        DrainError::Timeout {
            node,
            we_cordoned,
            evicted,
            remaining,
            last_error,
            ..
        } => {
            assert_eq!(node, NODE);
            assert!(*we_cordoned);
            assert_eq!(evicted, &vec!["default/web-1".to_string()]);
            assert_eq!(remaining, &vec!["db/postgres-0".to_string()]);
            assert!(last_error
                .as_deref()
                .is_some_and(|e| e.contains("disruption budget")));
        }
        other => panic!("expected a timeout, got {other}"),
    }
    let text = error.to_string();
    assert!(text.contains("db/postgres-0"), "{text}");
    assert!(text.contains(NODE), "{text}");

    let attempts = api.evictions_of("db/postgres-0");
    assert!(attempts.len() >= 3, "{} attempts", attempts.len());
    assert!(attempts.iter().all(|r| r.status == 429));

    // The caller undoes the drain with what the error says it did.
    let record = error.record().expect("a record to undo");
    drainer.abort(&record).await.expect("abort");
    assert!(!api.unschedulable());
}

#[tokio::test]
async fn abort_uncordons_without_waiting_for_ready() {
    let api = FakeApi::start(NODE, vec![FakePod::new("default", "web-1", NODE)]).await;
    let settings = settings(&api);
    let drainer = drainer(&settings).await;
    let record = drainer.drain(&lease()).await.expect("drain");
    api.set_ready(false);
    let before = api.requests().len();

    drainer.abort(&record).await.expect("abort");
    let after: Vec<_> = api.requests().into_iter().skip(before).collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].method, "PATCH");
    assert_eq!(after[0].body, Some(uncordon_body()));
    assert!(!api.unschedulable());
    assert!(api.node_annotations().is_empty(), "annotation left behind");
}

#[tokio::test]
async fn undrain_gives_up_on_a_node_that_never_gets_ready() {
    let api = FakeApi::start(NODE, vec![]).await;
    let mut settings = settings(&api);
    settings.ready_timeout = Duration::from_millis(300);
    let drainer = drainer(&settings).await;
    let record = drainer.drain(&lease()).await.expect("drain");
    api.set_ready(false);

    match drainer.undrain(&lease(), &record).await {
        Err(e @ DrainError::NotReady { .. }) => {
            let text = e.to_string();
            assert!(text.contains(NODE), "{text}");
            assert!(text.contains("Ready=False (KubeletNotReady"), "{text}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert_eq!(api.node_patches().len(), 1, "only the cordon");
    assert!(api.unschedulable());
}

#[tokio::test]
async fn eviction_404_counts_as_gone_and_503_is_retried() {
    let api = FakeApi::start(
        NODE,
        vec![
            FakePod::new("default", "vanished", NODE).eviction_answers(&[404]),
            FakePod::new("default", "flaky", NODE).eviction_answers(&[503]),
        ],
    )
    .await;
    let settings = settings(&api);
    let record = drainer(&settings)
        .await
        .drain(&lease())
        .await
        .expect("drain");
    assert_eq!(record.evicted, vec!["default/flaky".to_string()]);
    let statuses: Vec<u16> = api
        .evictions_of("default/flaky")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 201]);
    assert_eq!(api.evictions_of("default/vanished").len(), 1);
}

#[tokio::test]
async fn api_errors_name_the_call_and_the_node() {
    let api = FakeApi::start(
        NODE,
        vec![FakePod::new("default", "locked", NODE).eviction_answers(&[403])],
    )
    .await;

    // Unknown node: nothing was changed, so no record.
    let mut wrong = settings(&api);
    wrong.node_name = "node-x".to_string();
    let error = match drainer(&wrong).await.drain(&lease()).await {
        Ok(record) => panic!("drain of an unknown node: {record:?}"),
        Err(e) => e,
    };
    assert!(
        matches!(&error, DrainError::Api { call, node, .. } if call == "get node" && node == "node-x"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("get node (node node-x)"),
        "{error}"
    );
    assert!(error.record().is_none());

    // A refused eviction after the cordon: the error says what to undo.
    let settings = settings(&api);
    let drainer = drainer(&settings).await;
    let error = match drainer.drain(&lease()).await {
        Ok(record) => panic!("drain succeeded: {record:?}"),
        Err(e) => e,
    };
    let text = error.to_string();
    assert!(
        text.contains("evict pod default/locked (node node-a)"),
        "{text}"
    );
    let record = error.record().expect("a record to undo");
    assert!(record.we_cordoned);
    assert!(record.evicted.is_empty());
    drainer.abort(&record).await.expect("abort");
    assert!(!api.unschedulable());
}

#[test]
fn drain_record_survives_a_json_round_trip() {
    let record = DrainRecord {
        node: NODE.to_string(),
        we_cordoned: true,
        evicted: vec!["default/web-1".to_string()],
    };
    let text = serde_json::to_string(&record).expect("serialize");
    let back: DrainRecord = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, record);
}
