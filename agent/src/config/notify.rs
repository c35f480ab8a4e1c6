//! `[notify]`: webhooks told when a host drains, reboots, is back or failed, and their validation.

use std::time::Duration;

use super::inputs::NotifyInputs;
use super::validate::Validator;
use super::ConfigError;
use crate::rules::notify::{check_template, NotifyEvent, DEFAULT_TEMPLATE, NOTIFY_EVENTS};
use crate::rules::urls::check_http_url;

const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// `[[notify.webhook]]`: a Slack-compatible incoming webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `url` the JSON `{"text": ...}` is POSTed to.
    pub url: String,
    /// `template` of the text: `{host}`, `{group}`, `{phase}`, `{version}`,
    /// `{message}` (default [`DEFAULT_TEMPLATE`]).
    pub template: String,
    /// `events` to send (default all: draining, rebooting, back, failed).
    pub events: Vec<NotifyEvent>,
    /// `timeout` per POST (default 5s); a webhook never holds up the roll.
    pub timeout: Duration,
}

impl Validator<'_> {
    pub(super) fn notify(&self, inputs: NotifyInputs) -> Result<Vec<WebhookSettings>, ConfigError> {
        let Some(list) = inputs.webhook else {
            return Ok(Vec::new());
        };
        let fragment = list.fragment;
        let mut out = Vec::with_capacity(list.value.len());
        for (index, entry) in list.value.into_iter().enumerate() {
            let entry_span = entry.span();
            let entry = entry.into_inner();
            let key = |field: &str| format!("notify.webhook[{index}].{field}");
            let url = entry.url.ok_or_else(|| {
                self.error_at(fragment, &entry_span, key("url"), "required key is missing")
            })?;
            check_http_url(url.get_ref())
                .map_err(|m| self.error_at(fragment, &url.span(), key("url"), m))?;
            let template = match entry.template {
                Some(t) => {
                    check_template(t.get_ref())
                        .map_err(|m| self.error_at(fragment, &t.span(), key("template"), m))?;
                    t.into_inner()
                }
                None => DEFAULT_TEMPLATE.to_string(),
            };
            let events = match entry.events {
                None => NOTIFY_EVENTS.to_vec(),
                Some(names) => {
                    if names.get_ref().is_empty() {
                        return Err(self.error_at(
                            fragment,
                            &names.span(),
                            key("events"),
                            "must name at least one event; leave events out for all",
                        ));
                    }
                    let mut events = Vec::new();
                    for (i, name) in names.get_ref().iter().enumerate() {
                        let event = NotifyEvent::parse(name.get_ref()).ok_or_else(|| {
                            self.error_at(
                                fragment,
                                &name.span(),
                                format!("notify.webhook[{index}].events[{i}]"),
                                format!(
                                    "unknown event {:?}; expected draining, rebooting, back or failed",
                                    name.get_ref()
                                ),
                            )
                        })?;
                        if !events.contains(&event) {
                            events.push(event);
                        }
                    }
                    events
                }
            };
            let timeout = match entry.timeout {
                Some(t) => {
                    self.parse_duration(&super::inputs::Located::new(t, fragment), &key("timeout"))?
                }
                None => DEFAULT_WEBHOOK_TIMEOUT,
            };
            out.push(WebhookSettings {
                url: url.into_inner(),
                template,
                events,
                timeout,
            });
        }
        Ok(out)
    }
}
