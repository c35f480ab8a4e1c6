//! `[blockers]`: built-in blockers (Prometheus alerts, pods on the node), and their validation.

use std::time::Duration;

use super::inputs::BlockersInputs;
use super::validate::Validator;
use super::ConfigError;
use crate::rules::alerts::AlertFilter;
use crate::rules::urls::check_http_url;

const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(10);

/// `[blockers]`: checked with the `[[reboot.blocker]]` commands, before
/// queueing and again after the grant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockerSettings {
    /// `pod_selectors`: label selectors; while a pod matching any of them
    /// runs on this node, the host does not reboot (needs `[kubernetes]`).
    pub pod_selectors: Vec<String>,
    /// `[blockers.prometheus]`: active alerts block.
    pub prometheus: Option<PrometheusBlockerSettings>,
}

/// `[blockers.prometheus]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusBlockerSettings {
    /// `url` of Prometheus (or Alertmanager-compatible `/api/v1/alerts`);
    /// the agent asks `URL/api/v1/alerts`.
    pub url: String,
    /// `alert_filter`: a regular expression on `alertname`; matching alerts
    /// are ignored (kured's `--alert-filter-regexp`).
    pub alert_filter: Option<String>,
    /// `alert_filter_match_only`: only alerts matching the filter block
    /// (default false).
    pub alert_filter_match_only: bool,
    /// `firing_only`: pending alerts do not block (default false, as kured).
    pub firing_only: bool,
    /// `timeout` of the query (default 10s); no answer blocks.
    pub timeout: Duration,
}

impl PrometheusBlockerSettings {
    /// The filter, compiled (validated when the config was loaded).
    pub fn filter(&self) -> Result<AlertFilter, String> {
        AlertFilter::new(
            self.alert_filter.as_deref(),
            self.alert_filter_match_only,
            self.firing_only,
        )
    }
}

impl Validator<'_> {
    pub(super) fn blockers(
        &self,
        inputs: BlockersInputs,
        kubernetes: bool,
    ) -> Result<BlockerSettings, ConfigError> {
        let mut pod_selectors = Vec::new();
        if let Some(list) = inputs.pod_selectors {
            if !kubernetes && !list.value.is_empty() {
                return Err(self.error(
                    &list,
                    "blockers.pod_selectors",
                    "needs a [kubernetes] table (the API to ask for this node's pods)",
                ));
            }
            for (index, selector) in list.value.iter().enumerate() {
                if selector.get_ref().trim().is_empty() {
                    return Err(self.error_at(
                        list.fragment,
                        &selector.span(),
                        format!("blockers.pod_selectors[{index}]"),
                        "must not be empty (it would match every pod)",
                    ));
                }
                pod_selectors.push(selector.get_ref().clone());
            }
        }
        let prometheus = match inputs.prometheus {
            None => None,
            Some(table) => {
                let Some(url) = inputs.url else {
                    return Err(self.error(
                        &table,
                        "blockers.prometheus.url",
                        "required key is missing, e.g. url = \"http://prometheus.monitoring:9090\"",
                    ));
                };
                check_http_url(&url.value)
                    .map_err(|m| self.error(&url, "blockers.prometheus.url", m))?;
                let settings = PrometheusBlockerSettings {
                    url: url.value.trim_end_matches('/').to_string(),
                    alert_filter: inputs.alert_filter.as_ref().map(|at| at.value.clone()),
                    alert_filter_match_only: inputs
                        .alert_filter_match_only
                        .as_ref()
                        .is_some_and(|at| at.value),
                    firing_only: inputs.firing_only.as_ref().is_some_and(|at| at.value),
                    timeout: self.duration(
                        inputs.timeout.as_ref(),
                        "blockers.prometheus.timeout",
                        DEFAULT_PROMETHEUS_TIMEOUT,
                    )?,
                };
                if let (Err(m), Some(at)) = (settings.filter(), &inputs.alert_filter) {
                    return Err(self.error(at, "blockers.prometheus.alert_filter", m));
                }
                if settings.alert_filter_match_only && settings.alert_filter.is_none() {
                    if let Some(at) = &inputs.alert_filter_match_only {
                        return Err(self.error(
                            at,
                            "blockers.prometheus.alert_filter_match_only",
                            "needs alert_filter (the alerts that block)",
                        ));
                    }
                }
                Some(settings)
            }
        };
        Ok(BlockerSettings {
            pod_selectors,
            prometheus,
        })
    }
}
