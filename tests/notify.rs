//! Webhook notifications from a real agent rolling through a real cluster, posted to a real HTTP server in the test.

use std::time::{Duration, Instant};

use baton_testkit::http_fake::HttpFake;

use crate::support::{AgentHost, TestCluster};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_roll_posts_draining_rebooting_and_back_and_a_dead_webhook_does_not_stall_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let webhook = runtime.block_on(HttpFake::start());
    // A second webhook that never answers in time: the roll goes on.
    let hung = runtime.block_on(HttpFake::start());
    hung.answer_after("/services/secret-path", 200, "{}", Duration::from_secs(60));
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let extra = format!(
        "[[notify.webhook]]\nurl = \"{}/hook\"\n\
         template = \"{{host}} ({{group}}) {{phase}} for {{version}}: {{message}}\"\n\
         [[notify.webhook]]\nurl = \"{}/services/secret-path\"\ntimeout = \"1s\"\n",
        webhook.url(),
        hung.url()
    );
    let mut host = AgentHost::new(&cluster, "chatty", &extra);
    host.update_pending();
    host.start();
    let started = Instant::now();
    host.wait_reboot_calls(1, WAIT);
    host.reboot(1);
    host.wait_phase("idle", WAIT);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the roll waited for a webhook"
    );
    let deadline = Instant::now() + WAIT;
    let texts = loop {
        let texts: Vec<String> = webhook
            .received()
            .iter()
            .map(|r| r.json()["text"].as_str().unwrap_or("").to_string())
            .collect();
        if texts.len() >= 3 || Instant::now() > deadline {
            break texts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let phases: Vec<&str> = texts
        .iter()
        .map(|t| t.split(' ').nth(2).unwrap_or(""))
        .collect();
    assert_eq!(phases, ["draining", "rebooting", "back"], "{texts:?}");
    // The sentinel names no version: its reason stands in.
    assert!(
        texts[0].starts_with("chatty (workers) draining for "),
        "{texts:?}"
    );
    assert!(texts[2].contains("checks passed"), "{texts:?}");
    assert!(webhook
        .received()
        .iter()
        .all(|r| r.method == "POST" && r.content_type.as_deref() == Some("application/json")));
    // The hung webhook's posts timed out and were logged, without the
    // URL's path (a chat webhook's path is its secret).
    let log = host.log();
    assert!(log.contains("not delivered"), "{log}");
    assert!(!log.contains("secret-path"), "{log}");
    drop(runtime);
}
