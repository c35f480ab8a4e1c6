//! The Prometheus alerts blocker: `GET URL/api/v1/alerts`, bounded, filtered by the alert rules.

use std::time::Duration;

use serde::Deserialize;

use crate::config::PrometheusBlockerSettings;
use crate::rules::alerts::{Alert, AlertFilter};
use crate::rules::limits::MAX_ALERTS_RESPONSE_BYTES;
use crate::transport::http_client::{HttpClient, HttpError};

/// The path asked for under the configured URL.
pub const ALERTS_PATH: &str = "/api/v1/alerts";

/// Why the alerts blocker blocks.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("Prometheus alerts active at {url}: {}", alerts.join(", "))]
    Active { url: String, alerts: Vec<String> },
    #[error("cannot ask Prometheus for alerts (blocking until it answers): {0}")]
    Query(#[from] HttpError),
    #[error("Prometheus at {url} answered something that is not an alert list (blocking until it does): {reason}")]
    Answer { url: String, reason: String },
}

#[derive(Deserialize)]
struct AlertsAnswer {
    status: String,
    #[serde(default)]
    data: Option<AlertsData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<PromAlert>,
}

#[derive(Deserialize)]
struct PromAlert {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    state: String,
}

/// Reads Prometheus's `/api/v1/alerts` answer into alerts (name, state).
pub fn parse_alerts(body: &[u8]) -> Result<Vec<Alert>, String> {
    let answer: AlertsAnswer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if answer.status != "success" {
        return Err(format!(
            "status {:?}{}",
            answer.status,
            answer.error.map(|e| format!(": {e}")).unwrap_or_default()
        ));
    }
    let data = answer.data.ok_or("no data")?;
    Ok(data
        .alerts
        .into_iter()
        .map(|a| Alert {
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            state: a.state,
        })
        .collect())
}

/// Asks Prometheus which alerts are active.
pub struct PrometheusBlocker {
    url: String,
    filter: Result<AlertFilter, String>,
    timeout: Duration,
    http: HttpClient,
}

impl PrometheusBlocker {
    pub fn new(settings: &PrometheusBlockerSettings, http: HttpClient) -> PrometheusBlocker {
        PrometheusBlocker {
            url: settings.url.clone(),
            filter: settings.filter(),
            timeout: settings.timeout,
            http,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `Ok` when no alert that blocks is active.
    pub async fn check(&self) -> Result<(), PrometheusError> {
        let url = format!("{}{ALERTS_PATH}", self.url);
        let answer = self
            .http
            .get_json(&url, self.timeout, MAX_ALERTS_RESPONSE_BYTES)
            .await?;
        let alerts = parse_alerts(&answer.body).map_err(|reason| PrometheusError::Answer {
            url: url.clone(),
            reason,
        })?;
        // The filter was validated with the config; a failure here is a
        // bug, and it blocks rather than reboots.
        let filter = self
            .filter
            .as_ref()
            .map_err(|reason| PrometheusError::Answer {
                url: url.clone(),
                reason: reason.clone(),
            })?;
        let active = filter.blocking(&alerts);
        if active.is_empty() {
            Ok(())
        } else {
            Err(PrometheusError::Active {
                url: self.url.clone(),
                alerts: active,
            })
        }
    }
}
