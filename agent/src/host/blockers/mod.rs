//! Blockers: every reason not to reboot now (commands, alerts, pods), checked together.
//!
//! Run before the host queues and again right after a grant, before the
//! drain. The first that blocks is the answer; a built-in blocker that
//! cannot ask (Prometheus down, the API unreachable) blocks too, as kured
//! does: not knowing is no reason to reboot.

mod prometheus;

use crate::config::{BlockerSettings, CommandSettings};
use crate::host::hooks;
use crate::host::kubernetes::{DrainError, KubeDrainer};
use crate::host::process::ProcessError;
use crate::transport::http_client::{HttpClient, HttpError};

pub use prometheus::{PrometheusBlocker, PrometheusError};

/// Why not now.
#[derive(Debug, thiserror::Error)]
pub enum Blocked {
    #[error(transparent)]
    Command(#[from] ProcessError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error("pods matching {selector:?} run on node {node}: {}", pods.join(", "))]
    Pods {
        selector: String,
        node: String,
        pods: Vec<String>,
    },
    #[error(
        "cannot list pods matching {selector:?} on this node (blocking until it can): {source}"
    )]
    PodsUnknown {
        selector: String,
        #[source]
        source: DrainError,
    },
}

/// Every blocker of this host.
pub struct Blockers {
    commands: Vec<CommandSettings>,
    prometheus: Option<PrometheusBlocker>,
    pod_selectors: Vec<String>,
}

impl Blockers {
    /// From `[[reboot.blocker]]` and `[blockers]`; `http` is needed (and
    /// only used) when `[blockers.prometheus]` is set.
    pub fn new(
        commands: Vec<CommandSettings>,
        settings: &BlockerSettings,
        http: Option<&HttpClient>,
    ) -> Result<Blockers, HttpError> {
        let prometheus = match (&settings.prometheus, http) {
            (Some(p), Some(http)) => Some(PrometheusBlocker::new(p, http.clone())),
            (Some(p), None) => Some(PrometheusBlocker::new(p, HttpClient::new()?)),
            (None, _) => None,
        };
        Ok(Blockers {
            commands,
            prometheus,
            pod_selectors: settings.pod_selectors.clone(),
        })
    }

    /// In words, for the start-up line.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.commands.is_empty() {
            parts.push(format!("{} command(s)", self.commands.len()));
        }
        if let Some(p) = &self.prometheus {
            parts.push(format!("alerts at {}", p.url()));
        }
        for selector in &self.pod_selectors {
            parts.push(format!("pods {selector:?}"));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// `Ok` when nothing blocks; else the first reason found (commands,
    /// then alerts, then pods).
    pub async fn check(&self, kube: Option<&KubeDrainer>) -> Result<(), Blocked> {
        hooks::check_blockers(&self.commands).await?;
        if let Some(prometheus) = &self.prometheus {
            prometheus.check().await?;
        }
        if let Some(kube) = kube {
            for selector in &self.pod_selectors {
                match kube.running_pods(selector).await {
                    Ok(pods) if pods.is_empty() => {}
                    Ok(pods) => {
                        return Err(Blocked::Pods {
                            selector: selector.clone(),
                            node: kube.node().to_string(),
                            pods,
                        })
                    }
                    Err(source) => {
                        return Err(Blocked::PodsUnknown {
                            selector: selector.clone(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
