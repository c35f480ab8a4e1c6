//! Notifications: Slack-compatible webhooks told when the host drains, reboots, is back or failed.
//!
//! Fire and forget: [`Notifier::send`] spawns one POST per webhook and
//! returns at once; each POST is bounded by its webhook's `timeout`, and at
//! most [`MAX_IN_FLIGHT`] are under way (more are dropped, with a warning),
//! so a slow or dead chat service never holds up the roll.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::config::WebhookSettings;
use crate::rules::limits::MAX_WEBHOOK_RESPONSE_BYTES;
use crate::rules::notify::{render, NotifyEvent, NotifyFields};
use crate::rules::urls::redact_url;
use crate::transport::http_client::HttpClient;

/// Notifications under way at once, over all webhooks.
pub const MAX_IN_FLIGHT: usize = 16;

/// Sends notifications for this host.
#[derive(Clone)]
pub struct Notifier {
    webhooks: Arc<Vec<WebhookSettings>>,
    http: Option<HttpClient>,
    host: String,
    group: String,
    in_flight: Arc<Semaphore>,
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
        }
    }

    /// Waits up to `within` for the notifications under way (before the
    /// reboot call, so that "rebooting" is not cut off by the reboot).
    pub async fn flush(&self, within: std::time::Duration) {
        let all = u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(within, self.in_flight.acquire_many(all)).await;
    }

    /// Tells every webhook that wants `event`; returns at once.
    pub fn send(&self, event: NotifyEvent, version: &str, message: &str) {
        let Some(http) = &self.http else {
            return;
        };
        for webhook in self.webhooks.iter() {
            if !webhook.events.contains(&event) {
                continue;
            }
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                warn!(
                    "notification to {} dropped: {MAX_IN_FLIGHT} notifications still under way",
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
            let body = json!({ "text": text });
            let (http, url, timeout) = (http.clone(), webhook.url.clone(), webhook.timeout);
            tokio::spawn(async move {
                let _permit = permit;
                match http
                    .post_json(&url, &body, timeout, MAX_WEBHOOK_RESPONSE_BYTES)
                    .await
                {
                    Ok(_) => debug!("notified {}: {}", redact_url(&url), event.name()),
                    // The webhook's path is its secret: not in the journal.
                    Err(e) => warn!(
                        "notification ({}) not delivered: {}",
                        event.name(),
                        e.to_string().replace(&url, &redact_url(&url))
                    ),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use baton_testkit::http_fake::HttpFake;

    use super::*;
    use crate::rules::notify::NOTIFY_EVENTS;

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
        let notifier = Notifier::new(
            vec![
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
            ],
            Some(HttpClient::new().unwrap()),
            "w1",
            "workers",
        );
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
        let notifier = Notifier::new(
            vec![webhook(
                format!("{}/hook", hung.url()),
                &NOTIFY_EVENTS,
                Duration::from_millis(200),
            )],
            Some(HttpClient::new().unwrap()),
            "w1",
            "workers",
        );
        let started = Instant::now();
        for _ in 0..(MAX_IN_FLIGHT + 5) {
            notifier.send(NotifyEvent::Rebooting, "", "now");
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "send waited"
        );
        // At most MAX_IN_FLIGHT went out; the rest were dropped.
        let got = hung
            .wait_received(MAX_IN_FLIGHT, Duration::from_secs(5))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(got.len().max(hung.received().len()), MAX_IN_FLIGHT);
        // The timeout frees the slots: later notifications go out again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        notifier.send(NotifyEvent::Back, "", "back");
        let got = hung
            .wait_received(MAX_IN_FLIGHT + 1, Duration::from_secs(5))
            .await;
        assert_eq!(got.len(), MAX_IN_FLIGHT + 1);
    }
}
