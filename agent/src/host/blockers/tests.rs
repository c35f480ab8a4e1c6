//! Blockers against real servers: our fake Prometheus (`baton_testkit::http_fake`, a real HTTP
//! server; no Prometheus can be installed here) and the fake Kubernetes API.

use std::time::Duration;

use baton_testkit::http_fake::{alerts_json, HttpFake};
use baton_testkit::kubernetes_api::{FakeApi, FakePod};

use super::prometheus::ALERTS_PATH;
use super::*;
use crate::config::{KubernetesSettings, PrometheusBlockerSettings};
use crate::rules::limits::MAX_ALERTS_RESPONSE_BYTES;

fn prometheus(url: &str, filter: Option<&str>, firing_only: bool) -> BlockerSettings {
    BlockerSettings {
        pod_selectors: vec![],
        prometheus: Some(PrometheusBlockerSettings {
            url: url.to_string(),
            alert_filter: filter.map(str::to_string),
            alert_filter_match_only: false,
            firing_only,
            timeout: Duration::from_millis(500),
        }),
    }
}

fn blockers(settings: &BlockerSettings) -> Blockers {
    Blockers::new(vec![], settings, None).expect("http client")
}

#[tokio::test]
async fn active_alerts_block_and_the_filter_and_firing_only_apply() {
    let server = HttpFake::start().await;
    server.answer(
        ALERTS_PATH,
        200,
        &alerts_json(&[("Watchdog", "firing"), ("DiskFilling", "pending")]),
    );
    // No filter: both block.
    let err = blockers(&prometheus(&server.url(), None, false))
        .check(None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("DiskFilling, Watchdog"), "{err}");
    // Watchdog ignored, pending one does not count: nothing blocks.
    let quiet = prometheus(&server.url(), Some("^Watchdog$"), true);
    blockers(&quiet).check(None).await.unwrap();
    // Ignoring Watchdog, pending still counts without firing_only.
    let err = blockers(&prometheus(&server.url(), Some("^Watchdog$"), false))
        .check(None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DiskFilling") && !err.contains("Watchdog"),
        "{err}"
    );
    let asked = server.received();
    assert!(asked
        .iter()
        .all(|r| r.method == "GET" && r.path == ALERTS_PATH));
    // Nothing active at all.
    server.answer(ALERTS_PATH, 200, &alerts_json(&[]));
    blockers(&prometheus(&server.url(), None, false))
        .check(None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_prometheus_that_fails_slow_huge_or_garbled_blocks() {
    let server = HttpFake::start().await;
    let b = blockers(&prometheus(&server.url(), None, false));
    server.answer(ALERTS_PATH, 503, "{}");
    let err = b.check(None).await.unwrap_err().to_string();
    assert!(err.contains("503"), "{err}");
    server.answer(
        ALERTS_PATH,
        200,
        "{\"status\":\"error\",\"error\":\"boom\"}",
    );
    let err = b.check(None).await.unwrap_err().to_string();
    assert!(err.contains("boom"), "{err}");
    server.answer(ALERTS_PATH, 200, "not json");
    assert!(b.check(None).await.is_err());
    // Bigger than the limit: refused without reading it all.
    server.answer_huge(ALERTS_PATH, MAX_ALERTS_RESPONSE_BYTES + 1024);
    let err = b.check(None).await.unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
    // Hung: the timeout answers, and blocks.
    server.answer_after(ALERTS_PATH, 200, &alerts_json(&[]), Duration::from_secs(5));
    let started = std::time::Instant::now();
    let err = b.check(None).await.unwrap_err().to_string();
    assert!(err.contains("no answer within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nobody listening at all.
    let gone = server.url();
    drop(server);
    let err = blockers(&prometheus(&gone, None, false))
        .check(None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot ask Prometheus"), "{err}");
}

fn kube_settings(api: &FakeApi) -> KubernetesSettings {
    crate::host::kubernetes::test_settings(api.kubeconfig(), "node-a")
}

#[tokio::test]
async fn pods_matching_a_selector_on_this_node_block() {
    let api = FakeApi::start(
        "node-a",
        vec![
            FakePod::new("db", "postgres-0", "node-a").label("app", "postgres"),
            FakePod::new("db", "postgres-1", "node-b").label("app", "postgres"),
            FakePod::new("batch", "backup-1", "node-a")
                .label("app", "backup")
                .phase("Succeeded"),
            FakePod::new("default", "web-1", "node-a").label("app", "web"),
        ],
    )
    .await;
    let kube = KubeDrainer::connect(&kube_settings(&api)).await.unwrap();
    let settings = |selectors: &[&str]| BlockerSettings {
        pod_selectors: selectors.iter().map(|s| s.to_string()).collect(),
        prometheus: None,
    };
    let err = blockers(&settings(&["app=postgres"]))
        .check(Some(&kube))
        .await
        .unwrap_err()
        .to_string();
    // Only the pod on this node, by its name.
    assert!(
        err.contains("db/postgres-0") && !err.contains("postgres-1"),
        "{err}"
    );
    // A finished pod does not block; no pod of that app here either.
    blockers(&settings(&["app=backup", "app=redis"]))
        .check(Some(&kube))
        .await
        .unwrap();
    // The list asked the API for this node and the selector.
    let lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert_eq!(
        lists[0].query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a")
    );
    assert_eq!(
        lists[0].query.get("labelSelector").map(String::as_str),
        Some("app=postgres")
    );
    // An API that cannot answer blocks (selector syntax the fake refuses: 400).
    let err = blockers(&settings(&["app in (a, b)"]))
        .check(Some(&kube))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot list pods"), "{err}");
}
