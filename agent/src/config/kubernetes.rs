//! `[kubernetes]`: draining this node through the API, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use super::inputs::{KubernetesInputs, LocatedStrings};
use super::validate::{holder_name, Validator};
use super::ConfigError;
use crate::rules::node_labels::parse_label;

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
    /// `force_after`: when evictions still fail this long after the drain
    /// began (a PodDisruptionBudget that never allows it), delete the pods
    /// instead (kured's `--force-reboot` after its drain timeout). `None`
    /// (the default): never; the drain fails at `drain_timeout`.
    pub force_after: Option<Duration>,
    /// `annotate_node`: while baton works on the node, annotate it
    /// (`baton.io/reboot-needed`, `baton.io/reboot-in-progress`; default true).
    pub annotate_node: bool,
    /// `pre_reboot_labels`: `key=value` labels set before the drain (and
    /// removed after the reboot).
    pub pre_reboot_labels: Vec<(String, String)>,
    /// `post_reboot_labels`: `key=value` labels set after the reboot (and
    /// removed before the next drain).
    pub post_reboot_labels: Vec<(String, String)>,
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
        let force_after =
            self.optional_duration(inputs.force_after.as_ref(), "kubernetes.force_after")?;
        if let (Some(force), Some(at)) = (force_after, &inputs.force_after) {
            if force >= drain_timeout {
                return Err(self.error(
                    at,
                    "kubernetes.force_after",
                    format!(
                        "must be shorter than kubernetes.drain_timeout ({drain_timeout:?}): \
                         the drain gives up then"
                    ),
                ));
            }
        }
        let annotate_node = inputs.annotate_node.as_ref().is_none_or(|at| at.value);
        let pre_reboot_labels =
            self.labels(inputs.pre_reboot_labels, "kubernetes.pre_reboot_labels")?;
        let post_reboot_labels =
            self.labels(inputs.post_reboot_labels, "kubernetes.post_reboot_labels")?;
        Ok(KubernetesSettings {
            kubeconfig,
            node_name,
            drain_timeout,
            grace_period,
            pod_selector,
            ready_timeout,
            eviction_retry,
            force_after,
            annotate_node,
            pre_reboot_labels,
            post_reboot_labels,
        })
    }

    /// A list of `key=value` node labels (`rules::node_labels`).
    fn labels(
        &self,
        list: Option<LocatedStrings>,
        key: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(list.value.len());
        for (index, label) in list.value.iter().enumerate() {
            let parsed = parse_label(label.get_ref()).map_err(|m| {
                self.error_at(list.fragment, &label.span(), format!("{key}[{index}]"), m)
            })?;
            out.push(parsed);
        }
        Ok(out)
    }
}
