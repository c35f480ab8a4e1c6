//! Config tests for `[blockers]`, `[[notify.webhook]]` and the new `[kubernetes]` keys.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::rules::notify::{NotifyEvent, DEFAULT_TEMPLATE};

const MINIMAL: &str = "[node]\nname = \"n1\"\n[cluster]\nlisten = \"127.0.0.1:7421\"\n";
const FILE: &str = "/etc/baton/baton.toml";

fn load(extra: &str) -> Result<Settings, ConfigError> {
    Settings::from_fragments(&[(PathBuf::from(FILE), format!("{MINIMAL}{extra}"))])
}

/// The error names the file, the key and the line (MINIMAL has 4 lines).
fn invalid(extra: &str, key: &str, line: usize) -> String {
    match load(extra) {
        Err(ConfigError::Invalid {
            file,
            line: got_line,
            key: got_key,
            message,
        }) => {
            assert_eq!(file, PathBuf::from(FILE));
            assert_eq!((got_key.as_str(), got_line), (key, line), "{message}");
            message
        }
        other => panic!("expected an error at {key} line {line}, got {other:?}"),
    }
}

#[test]
fn blockers_default_to_none_and_can_all_be_set() {
    assert_eq!(load("").unwrap().blockers, BlockerSettings::default());
    let settings = load(
        "[kubernetes]\n\
         [blockers]\npod_selectors = [\"app=postgres\", \"backup\"]\n\
         [blockers.prometheus]\nurl = \"http://prometheus.monitoring:9090/\"\n\
         alert_filter = \"^Node\"\nalert_filter_match_only = true\nfiring_only = true\n\
         timeout = \"3s\"\n",
    )
    .unwrap();
    assert_eq!(
        settings.blockers,
        BlockerSettings {
            pod_selectors: vec!["app=postgres".into(), "backup".into()],
            prometheus: Some(PrometheusBlockerSettings {
                url: "http://prometheus.monitoring:9090".into(),
                alert_filter: Some("^Node".into()),
                alert_filter_match_only: true,
                firing_only: true,
                timeout: Duration::from_secs(3),
            }),
        }
    );
    let p = load("[blockers.prometheus]\nurl = \"https://prom:9090\"\n")
        .unwrap()
        .blockers
        .prometheus
        .unwrap();
    assert_eq!((p.firing_only, p.timeout), (false, Duration::from_secs(10)));
}

#[test]
fn blocker_errors_name_key_and_line() {
    let m = invalid(
        "[blockers]\npod_selectors = [\"app=x\"]\n",
        "blockers.pod_selectors",
        6,
    );
    assert!(m.contains("[kubernetes]"), "{m}");
    let m = invalid(
        "[kubernetes]\n[blockers]\npod_selectors = [\"a=b\", \" \"]\n",
        "blockers.pod_selectors[1]",
        7,
    );
    assert!(m.contains("empty"), "{m}");
    let m = invalid(
        "[blockers.prometheus]\nfiring_only = true\n",
        "blockers.prometheus.url",
        5,
    );
    assert!(m.contains("missing"), "{m}");
    let m = invalid(
        "[blockers.prometheus]\nurl = \"prom:9090\"\n",
        "blockers.prometheus.url",
        6,
    );
    assert!(m.contains("http://"), "{m}");
    let m = invalid(
        "[blockers.prometheus]\nurl = \"http://p:9090\"\nalert_filter = \"(oops\"\n",
        "blockers.prometheus.alert_filter",
        7,
    );
    assert!(m.contains("regular expression"), "{m}");
    let m = invalid(
        "[blockers.prometheus]\nurl = \"http://p:9090\"\nalert_filter_match_only = true\n",
        "blockers.prometheus.alert_filter_match_only",
        7,
    );
    assert!(m.contains("alert_filter"), "{m}");
    invalid(
        "[blockers.prometheus]\nurl = \"http://p:9090\"\ntimeout = \"0s\"\n",
        "blockers.prometheus.timeout",
        7,
    );
    invalid("[blockers]\nwhatever = 1\n", "blockers.whatever", 6);
}

#[test]
fn webhooks_parse_with_defaults() {
    assert!(load("").unwrap().notify.is_empty());
    let settings = load(
        "[[notify.webhook]]\nurl = \"https://hooks.slack.com/services/T/B/X\"\n\
         [[notify.webhook]]\nurl = \"http://127.0.0.1:8080/hook\"\n\
         template = \"{host} {phase} {version}\"\nevents = [\"failed\", \"back\", \"failed\"]\n\
         timeout = \"2s\"\n",
    )
    .unwrap();
    assert_eq!(
        settings.notify,
        vec![
            WebhookSettings {
                url: "https://hooks.slack.com/services/T/B/X".into(),
                template: DEFAULT_TEMPLATE.into(),
                events: vec![
                    NotifyEvent::Draining,
                    NotifyEvent::Rebooting,
                    NotifyEvent::Back,
                    NotifyEvent::Failed
                ],
                timeout: Duration::from_secs(5),
            },
            WebhookSettings {
                url: "http://127.0.0.1:8080/hook".into(),
                template: "{host} {phase} {version}".into(),
                events: vec![NotifyEvent::Failed, NotifyEvent::Back],
                timeout: Duration::from_secs(2),
            },
        ]
    );
}

#[test]
fn webhook_errors_name_key_and_line() {
    invalid(
        "[[notify.webhook]]\ntemplate = \"x\"\n",
        "notify.webhook[0].url",
        5,
    );
    let m = invalid(
        "[[notify.webhook]]\nurl = \"http://user:pw@h/\"\n",
        "notify.webhook[0].url",
        6,
    );
    assert!(m.contains("password"), "{m}");
    let m = invalid(
        "[[notify.webhook]]\nurl = \"http://h/\"\ntemplate = \"{hostname}\"\n",
        "notify.webhook[0].template",
        7,
    );
    assert!(m.contains("unknown placeholder"), "{m}");
    let m = invalid(
        "[[notify.webhook]]\nurl = \"http://h/\"\nevents = [\"back\", \"exploded\"]\n",
        "notify.webhook[0].events[1]",
        7,
    );
    assert!(m.contains("exploded"), "{m}");
    invalid(
        "[[notify.webhook]]\nurl = \"http://h/\"\nevents = []\n",
        "notify.webhook[0].events",
        7,
    );
}

#[test]
fn kubernetes_force_annotations_and_labels() {
    let k = load("[kubernetes]\n").unwrap().kubernetes.unwrap();
    assert_eq!(k.force_after, None, "forcing is off by default");
    assert!(k.annotate_node);
    assert!(k.pre_reboot_labels.is_empty() && k.post_reboot_labels.is_empty());
    let k = load(
        "[kubernetes]\nforce_after = \"5m\"\nannotate_node = false\n\
         pre_reboot_labels = [\"baton.io/rebooting=true\"]\n\
         post_reboot_labels = [\"baton.io/patched=yes\", \"fresh=\"]\n",
    )
    .unwrap()
    .kubernetes
    .unwrap();
    assert_eq!(k.force_after, Some(Duration::from_secs(300)));
    assert!(!k.annotate_node);
    assert_eq!(
        k.pre_reboot_labels,
        vec![("baton.io/rebooting".into(), "true".into())]
    );
    assert_eq!(k.post_reboot_labels[1], ("fresh".into(), String::new()));
    let m = invalid(
        "[kubernetes]\ndrain_timeout = \"10m\"\nforce_after = \"10m\"\n",
        "kubernetes.force_after",
        7,
    );
    assert!(m.contains("shorter than"), "{m}");
    let m = invalid(
        "[kubernetes]\npre_reboot_labels = [\"ok=1\", \"no value\"]\n",
        "kubernetes.pre_reboot_labels[1]",
        6,
    );
    assert!(m.contains("key=value"), "{m}");
}
