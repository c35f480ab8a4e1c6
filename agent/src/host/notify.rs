//! Notifications: Slack-compatible webhooks told when the host drains, reboots, is back or failed.
//!
//! Fire and forget: [`Notifier::send`] queues one POST per webhook and
//! returns at once. Each webhook has its own queue and sender task, so its
//! messages arrive in the order they happened ("draining" before
//! "rebooting") and a slow webhook never delays another. Each POST is
//! bounded by its webhook's `timeout`, and at most [`MAX_IN_FLIGHT`] are
//! queued or under way (more are dropped, with a warning), so a slow or
//! dead chat service never holds up the roll.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::config::WebhookSettings;
use crate::rules::limits::MAX_WEBHOOK_RESPONSE_BYTES;
use crate::rules::notify::{render, NotifyEvent, NotifyFields};
use crate::rules::urls::redact_url;
use crate::transport::http_client::HttpClient;

/// Notifications queued or under way at once, over all webhooks.
pub const MAX_IN_FLIGHT: usize = 16;

/// Sends notifications for this host.
#[derive(Clone)]
pub struct Notifier {
    webhooks: Arc<Vec<WebhookSettings>>,
    http: Option<HttpClient>,
    host: String,
    group: String,
    in_flight: Arc<Semaphore>,
    /// One queue per webhook (in `webhooks` order); the sender tasks start
    /// with the first notification (inside the runtime) and end when the
    /// last clone of this notifier is dropped.
    queues: Arc<OnceLock<Vec<mpsc::Sender<Queued>>>>,
}

/// One notification waiting for its webhook's sender task.
struct Queued {
    event: NotifyEvent,
    body: serde_json::Value,
    /// Counts it against [`MAX_IN_FLIGHT`] until it is delivered or given up.
    _permit: OwnedSemaphorePermit,
}

impl Notifier {
    /// `http` is needed when there are webhooks (else nothing is sent).
    pub fn new(
        webhooks: Vec<WebhookSettings>,
        http: Option<HttpClient>,
        host: &str,
        group: &str,
    ) -> Notifier {
        Notifier {
            webhooks: Arc::new(webhooks),
            http,
            host: host.to_string(),
            group: group.to_string(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            queues: Arc::new(OnceLock::new()),
        }
    }

    /// Waits up to `within` for the notifications queued or under way
    /// (before the reboot call, so that "rebooting" is not cut off by the
    /// reboot).
    pub async fn flush(&self, within: Duration) {
        let all = u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(within, self.in_flight.acquire_many(all)).await;
    }

    /// Tells every webhook that wants `event`; returns at once.
    pub fn send(&self, event: NotifyEvent, version: &str, message: &str) {
        let Some(http) = &self.http else {
            return;
        };
        let queues = self.queues.get_or_init(|| {
            self.webhooks
                .iter()
                .map(|webhook| deliver_in_order(http.clone(), webhook.url.clone(), webhook.timeout))
                .collect()
        });
        for (webhook, queue) in self.webhooks.iter().zip(queues) {
            if !webhook.events.contains(&event) {
                continue;
            }
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                warn!(
                    "notification to {} dropped: {MAX_IN_FLIGHT} notifications still queued or under way",
                    redact_url(&webhook.url)
                );
                continue;
            };
            let text = render(
                &webhook.template,
                &NotifyFields {
                    host: &self.host,
                    group: &self.group,
                    phase: event.name(),
                    version,
                    message,
                },
            );
            let queued = Queued {
                event,
                body: json!({ "text": text }),
                _permit: permit,
            };
            if queue.try_send(queued).is_err() {
                warn!(
                    "notification to {} dropped: its queue is full",
                    redact_url(&webhook.url)
                );
            }
        }
    }
}

/// Starts the task that posts one webhook's notifications, one at a time,
/// in the order they were queued.
fn deliver_in_order(http: HttpClient, url: String, timeout: Duration) -> mpsc::Sender<Queued> {
    let (queue, mut queued) = mpsc::channel::<Queued>(MAX_IN_FLIGHT);
    tokio::spawn(async move {
        while let Some(item) = queued.recv().await {
            match http
                .post_json(&url, &item.body, timeout, MAX_WEBHOOK_RESPONSE_BYTES)
                .await
            {
                Ok(_) => debug!("notified {}: {}", redact_url(&url), item.event.name()),
                // The webhook's path is its secret: not in the journal.
                Err(e) => warn!(
                    "notification ({}) not delivered: {}",
                    item.event.name(),
                    e.to_string().replace(&url, &redact_url(&url))
                ),
            }
        }
    });
    queue
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use baton_testkit::http_fake::HttpFake;

    use super::*;
    use crate::rules::notify::NOTIFY_EVENTS;

    /// A notifier for host w1 of group workers.
    fn notifier(webhooks: Vec<WebhookSettings>) -> Notifier {
        Notifier::new(webhooks, Some(HttpClient::new().unwrap()), "w1", "workers")
    }

    fn webhook(url: String, events: &[NotifyEvent], timeout: Duration) -> WebhookSettings {
        WebhookSettings {
            url,
            template: "{host}/{group} {phase} {version}: {message}".into(),
            events: events.to_vec(),
            timeout,
        }
    }

    #[tokio::test]
    async fn webhooks_get_slack_json_for_the_events_they_want() {
        let all = HttpFake::start().await;
        let failures = HttpFake::start().await;
        let notifier = notifier(vec![
            webhook(
                format!("{}/hooks/all", all.url()),
                &NOTIFY_EVENTS,
                Duration::from_secs(2),
            ),
            webhook(
                format!("{}/hooks/failed", failures.url()),
                &[NotifyEvent::Failed],
                Duration::from_secs(2),
            ),
        ]);
        notifier.send(NotifyEvent::Draining, "4152.2.1", "holding the lease");
        let got = all.wait_received(1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("POST", "/hooks/all")
        );
        assert_eq!(got[0].content_type.as_deref(), Some("application/json"));
        assert_eq!(
            got[0].json(),
            json!({ "text": "w1/workers draining 4152.2.1: holding the lease" })
        );
        notifier.send(NotifyEvent::Failed, "4152.2.1", "drain failed");
        let got = failures.wait_received(1, Duration::from_secs(5)).await;
        assert_eq!(
            got[0].json()["text"],
            "w1/workers failed 4152.2.1: drain failed"
        );
        let got = all.wait_received(2, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 2);
        // Only failures went to the second webhook.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(failures.received().len(), 1);
    }

    #[tokio::test]
    async fn a_hung_or_dead_webhook_never_holds_up_the_caller() {
        let hung = HttpFake::start().await;
        hung.answer_after("/hook", 200, "{}", Duration::from_secs(30));
        let notifier = notifier(vec![webhook(
            format!("{}/hook", hung.url()),
            &NOTIFY_EVENTS,
            Duration::from_millis(200),
        )]);
        let started = Instant::now();
        for _ in 0..(MAX_IN_FLIGHT + 5) {
            notifier.send(NotifyEvent::Rebooting, "", "now");
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "send waited"
        );
        // At most MAX_IN_FLIGHT were queued (they go out one by one, each
        // given up after its timeout); the rest were dropped.
        let got = hung
            .wait_received(MAX_IN_FLIGHT, Duration::from_secs(8))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(got.len().max(hung.received().len()), MAX_IN_FLIGHT);
        // The timeouts free the slots: later notifications go out again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        notifier.send(NotifyEvent::Back, "", "back");
        let got = hung
            .wait_received(MAX_IN_FLIGHT + 1, Duration::from_secs(5))
            .await;
        assert_eq!(got.len(), MAX_IN_FLIGHT + 1);
    }

    #[tokio::test]
    async fn each_webhook_gets_its_messages_in_order_and_a_slow_one_delays_no_other() {
        // Every answer takes a while: posted at once, they would race.
        let slow = HttpFake::start().await;
        slow.answer_after("/hook", 200, "{}", Duration::from_millis(150));
        let quick = HttpFake::start().await;
        let notifier = notifier(vec![
            webhook(
                format!("{}/hook", slow.url()),
                &NOTIFY_EVENTS,
                Duration::from_secs(2),
            ),
            webhook(
                format!("{}/hook", quick.url()),
                &NOTIFY_EVENTS,
                Duration::from_secs(2),
            ),
        ]);
        let order = [
            NotifyEvent::Draining,
            NotifyEvent::Rebooting,
            NotifyEvent::Back,
            NotifyEvent::Failed,
        ];
        for event in order {
            notifier.send(event, "4152.2.1", "m");
        }
        let phases = |got: Vec<baton_testkit::http_fake::Received>| -> Vec<String> {
            got.iter()
                .map(|r| {
                    r.json()["text"]
                        .as_str()
                        .unwrap_or("")
                        .split(' ')
                        .nth(1)
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        };
        let want: Vec<String> = order.iter().map(|e| e.name().to_string()).collect();
        let quick_got = quick
            .wait_received(order.len(), Duration::from_secs(5))
            .await;
        // The slow one needs 3 answers (450 ms) before its 4th arrives.
        assert!(
            slow.received().len() < order.len(),
            "the quick webhook waited for the slow one"
        );
        assert_eq!(phases(quick_got), want);
        let slow_got = slow
            .wait_received(order.len(), Duration::from_secs(5))
            .await;
        assert_eq!(phases(slow_got), want);
        notifier.flush(Duration::from_secs(2)).await;
    }
}
