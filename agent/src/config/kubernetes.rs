//! `[kubernetes]`: draining this node through the API, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use super::inputs::KubernetesInputs;
use super::validate::{holder_name, Validator};
use super::ConfigError;

const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const DEFAULT_EVICTION_RETRY: Duration = Duration::from_secs(5);

/// `[kubernetes]`: drain this node before rebooting, uncordon after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// `kubeconfig` path; `None` (default) means the KUBECONFIG environment
    /// variable or the in-cluster config.
    pub kubeconfig: Option<PathBuf>,
    /// `node_name` of this host in Kubernetes (default `node.name`).
    pub node_name: String,
    /// `drain_timeout`: give up evicting after this, then abort, uncordon and
    /// release the lease (default 10m).
    pub drain_timeout: Duration,
    /// `grace_period` given to evicted pods; `None` (default) means each pod's own.
    pub grace_period: Option<Duration>,
    /// `pod_selector`: label selector; only matching pods are evicted.
    /// `None` (default) means all pods.
    pub pod_selector: Option<String>,
    /// `ready_timeout`: how long to wait after boot for the node to be Ready
    /// (default 10m).
    pub ready_timeout: Duration,
    /// `eviction_retry`: back-off after an eviction is refused with 429
    /// by a PodDisruptionBudget (default 5s).
    pub eviction_retry: Duration,
}

impl Validator<'_> {
    pub(super) fn kubernetes(
        &self,
        inputs: KubernetesInputs,
        node_name: &str,
    ) -> Result<KubernetesSettings, ConfigError> {
        let kubeconfig = inputs
            .kubeconfig
            .map(|at| self.path(at, "kubernetes.kubeconfig"))
            .transpose()?;
        let node_name = match inputs.node_name {
            Some(at) => {
                holder_name(&at.value).map_err(|m| self.error(&at, "kubernetes.node_name", m))?;
                at.value
            }
            None => node_name.to_owned(),
        };
        let drain_timeout = self.duration(
            inputs.drain_timeout.as_ref(),
            "kubernetes.drain_timeout",
            DEFAULT_DRAIN_TIMEOUT,
        )?;
        let grace_period =
            self.optional_duration(inputs.grace_period.as_ref(), "kubernetes.grace_period")?;
        let pod_selector = match inputs.pod_selector {
            // An empty selector would select every pod, which is what
            // leaving the key out already says; more likely a mistake.
            Some(at) if at.value.trim().is_empty() => {
                return Err(self.error(
                    &at,
                    "kubernetes.pod_selector",
                    "must not be empty; leave pod_selector out to evict all pods",
                ))
            }
            Some(at) => Some(at.value),
            None => None,
        };
        let ready_timeout = self.duration(
            inputs.ready_timeout.as_ref(),
            "kubernetes.ready_timeout",
            DEFAULT_READY_TIMEOUT,
        )?;
        let eviction_retry = self.duration(
            inputs.eviction_retry.as_ref(),
            "kubernetes.eviction_retry",
            DEFAULT_EVICTION_RETRY,
        )?;
        Ok(KubernetesSettings {
            kubeconfig,
            node_name,
            drain_timeout,
            grace_period,
            pod_selector,
            ready_timeout,
            eviction_retry,
        })
    }
}
