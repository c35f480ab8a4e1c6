//! Kubernetes drain: cordon, evict with PDB back-off, wait Ready, uncordon; lease held.
//!
//! kube has no drain helper, so this module does what `kubectl drain` does,
//! with the parts a reboot coordinator needs:
//! - cordon, remembering whether the node was already unschedulable (then it
//!   stays cordoned after the reboot: an operator put it there). The cordon
//!   PATCH also sets the annotation [`CORDONED_BY`] (the lease holder), and
//!   the uncordon PATCH removes it: the record that baton cordoned the node
//!   lives on the node, written atomically with the cordon, so that an agent
//!   that stopped mid-drain (before `agent.json` got a [`DrainRecord`])
//!   still knows after its restart. A drain that finds the node cordoned
//!   with the annotation takes the cordon as its own; one cordoned without
//!   it leaves the node cordoned; [`KubeDrainer::undo_unrecorded_cordon`]
//!   uncordons an annotated node when the agent holds no lease;
//! - list the node's pods (`fieldSelector=spec.nodeName=NODE`, plus the
//!   configured label selector), skip DaemonSet-owned pods, mirror (static)
//!   pods, pods already terminating and finished pods;
//! - evict each through the Eviction API, backing off `eviction_retry` when a
//!   PodDisruptionBudget answers 429, and wait until the evicted pods are gone;
//! - all of it bounded by `drain_timeout`.
//!
//! Two choices worth knowing:
//! - kube 5 clients retry 429/503/504 themselves by default (up to 15 times,
//!   with back-off growing to minutes). That would hide the PDB answer from
//!   the drain loop and stretch every eviction attempt, so [`KubeDrainer::connect`]
//!   turns it off; the drain retries transient errors itself, within its
//!   deadline.
//! - The Eviction body is built here from k8s-openapi's `policy/v1` types
//!   (camelCase `deleteOptions.gracePeriodSeconds`), not with kube's
//!   `EvictParams`.

mod cordon;
mod evict;
mod node_marks;
mod pods;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::KubernetesSettings;
use crate::host::held_lease::HeldLease;
use crate::locks::{LockOrRecover, ReadWriteOrRecover};
/// What the drain did; lives with the host state it is persisted in.
pub use crate::rules::phases::DrainRecord;

pub use cordon::CORDONED_BY;
use cordon::{cordon_patch, cordoned_by, is_unschedulable};
use evict::{skip_reason, PodRef};

/// Longest pause between two polls (pods gone, node Ready). Shorter when
/// `eviction_retry` is shorter.
const MAX_POLL: Duration = Duration::from_secs(2);

/// Longest wait for one API call outside a drain (the pod blocker, node
/// annotations and labels).
const API_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest pause between two polls, so that a zero setting cannot spin.
const MIN_POLL: Duration = Duration::from_millis(10);

/// Why a drain, undrain or abort failed.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The configured kubeconfig could not be read or used.
    #[error("kubernetes.kubeconfig: cannot load {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig configured, and neither KUBECONFIG, ~/.kube/config nor
    /// the in-cluster service account gave a client configuration.
    #[error(
        "kubernetes: no kubeconfig set and none found (KUBECONFIG, ~/.kube/config, in-cluster service account): {source}"
    )]
    InferConfig {
        #[source]
        source: kube::config::InferConfigError,
    },
    /// The client could not be built from a loaded configuration.
    #[error("kubernetes: cannot build a client from {origin}: {source}")]
    Client {
        origin: String,
        #[source]
        source: kube::Error,
    },
    /// A Kubernetes API call failed with an error that retrying will not fix.
    #[error("kubernetes: {call} (node {node}) failed: {source}")]
    Api {
        /// The call, e.g. `cordon`, `list pods`, `evict pod default/web-0`.
        call: String,
        node: String,
        #[source]
        source: kube::Error,
    },
    /// A call got no answer in time (outside a drain, which has its own
    /// deadline).
    #[error("kubernetes: {call} (node {node}) got no answer within {timeout:?}")]
    NoAnswer {
        call: &'static str,
        node: String,
        timeout: Duration,
    },
    /// The drain did not finish within `drain_timeout`.
    #[error(
        "kubernetes: drain of node {node} not finished after {timeout:?}: {} still on the node ({}), {} evicted{}{}",
        remaining.len(),
        remaining.join(", "),
        evicted.len(),
        if *we_cordoned { ", node cordoned by us" } else { "" },
        last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    Timeout {
        node: String,
        timeout: Duration,
        /// Whether this drain cordoned the node (abort must uncordon it).
        we_cordoned: bool,
        /// Pods evicted so far (`namespace/name`).
        evicted: Vec<String>,
        /// Pods not yet evicted (e.g. blocked by a PodDisruptionBudget) or
        /// evicted but not yet gone (`namespace/name`).
        remaining: Vec<String>,
        /// The last transient API error seen, if any.
        last_error: Option<String>,
    },
    /// A drain stopped on an API error after it had changed the node: the
    /// record says what to undo (pass it to [`KubeDrainer::abort`]).
    #[error(
        "kubernetes: drain of node {} stopped ({}, {} evicted): {source}",
        record.node,
        if record.we_cordoned { "node cordoned by us" } else { "node not cordoned by us" },
        record.evicted.len()
    )]
    Incomplete {
        record: DrainRecord,
        #[source]
        source: Box<DrainError>,
    },
    /// After boot, the node did not report Ready=True within `ready_timeout`.
    #[error(
        "kubernetes: node {node} not Ready after {timeout:?} (last seen: {last}); left cordoned"
    )]
    NotReady {
        node: String,
        timeout: Duration,
        last: String,
    },
}

impl DrainError {
    /// What an unfinished drain had already done (to pass to
    /// [`KubeDrainer::abort`]), for [`DrainError::Timeout`] and
    /// [`DrainError::Incomplete`]; `None` for errors that changed nothing.
    pub fn record(&self) -> Option<DrainRecord> {
        match self {
            DrainError::Timeout {
                node,
                we_cordoned,
                evicted,
                ..
            } => Some(DrainRecord {
                node: node.clone(),
                we_cordoned: *we_cordoned,
                evicted: evicted.clone(),
            }),
            DrainError::Incomplete { record, .. } => Some(record.clone()),
            _ => None,
        }
    }
}

/// Drains and undrains this host's Kubernetes node.
pub struct KubeDrainer {
    /// Rebuilt from the kubeconfig before every drain, undrain and abort,
    /// so rotated credentials are picked up without a restart.
    client: std::sync::RwLock<Client>,
    kubeconfig: Option<PathBuf>,
    node: String,
    drain_timeout: Duration,
    grace_period: Option<Duration>,
    pod_selector: Option<String>,
    ready_timeout: Duration,
    eviction_retry: Duration,
    force_after: Option<Duration>,
    annotate_node: bool,
    pre_reboot_labels: Vec<(String, String)>,
    post_reboot_labels: Vec<(String, String)>,
    /// Pods the last drain deleted instead of evicting (see [`KubeDrainer::take_forced`]).
    forced: std::sync::Mutex<Vec<String>>,
    poll: Duration,
    /// [`KubeDrainer::undo_unrecorded_cordon`]: done (`None`), or not
    /// before this instant.
    unrecorded_check: std::sync::Mutex<Option<Instant>>,
}

/// What [`KubeDrainer::undo_unrecorded_cordon`] found on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnrecordedCordon {
    /// Cordoned by baton (annotated) with no drain on record: uncordoned,
    /// annotation removed in the same PATCH.
    Uncordoned { cordoned_by: String },
    /// Schedulable but still annotated (someone uncordoned it by hand):
    /// the annotation removed.
    AnnotationRemoved { cordoned_by: String },
    /// Cordoned without baton's annotation (by an operator): left cordoned.
    NotOurs,
    /// Schedulable and not annotated: nothing to do.
    Clean,
    /// Not checked this time: checked already, or a failed check waits for
    /// its retry.
    Skipped,
}

/// The drain's state so far; it outlives a drain cut short by the deadline.
#[derive(Debug, Default)]
struct Progress {
    we_cordoned: bool,
    evicted: Vec<String>,
    to_evict: Vec<PodRef>,
    terminating: Vec<PodRef>,
    last_error: Option<String>,
    /// `force_after`: from then on, pods that evictions do not move are deleted.
    force_at: Option<Instant>,
    /// Pods deleted instead of evicted (`namespace/name`).
    forced: Vec<String>,
}

impl Progress {
    fn remaining(&self) -> Vec<String> {
        self.to_evict
            .iter()
            .chain(&self.terminating)
            .map(PodRef::key)
            .collect()
    }
}

/// Errors worth another try: throttling, an API server restarting, the
/// network between us and it.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The node's Ready condition: `Ok(())` when True, else a description.
fn ready_state(node: &Node) -> Result<(), String> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "Ready={} ({}{})",
            c.status,
            c.reason.as_deref().unwrap_or("no reason"),
            c.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        None => Err("no Ready condition".to_string()),
    }
}

impl KubeDrainer {
    /// Builds the client from settings.kubeconfig (or KUBECONFIG / in-cluster when None).
    pub async fn connect(settings: &KubernetesSettings) -> Result<KubeDrainer, DrainError> {
        let client = client(&settings.kubeconfig, &settings.node_name).await?;
        info!(
            BATON_KUBE_NODE = %settings.node_name,
            "kubernetes API client ready; the kubeconfig is read again before each drain"
        );
        let poll = settings.eviction_retry.clamp(MIN_POLL, MAX_POLL);
        Ok(KubeDrainer {
            client: std::sync::RwLock::new(client),
            kubeconfig: settings.kubeconfig.clone(),
            node: settings.node_name.clone(),
            drain_timeout: settings.drain_timeout,
            grace_period: settings.grace_period,
            pod_selector: settings.pod_selector.clone(),
            ready_timeout: settings.ready_timeout,
            eviction_retry: settings.eviction_retry,
            force_after: settings.force_after,
            annotate_node: settings.annotate_node,
            pre_reboot_labels: settings.pre_reboot_labels.clone(),
            post_reboot_labels: settings.post_reboot_labels.clone(),
            forced: std::sync::Mutex::new(Vec::new()),
            poll,
            unrecorded_check: std::sync::Mutex::new(Some(Instant::now())),
        })
    }

    /// Reads the kubeconfig again (credentials rotate); on an error the
    /// client in use stays, and the error is logged.
    async fn refresh(&self) {
        match client(&self.kubeconfig, &self.node).await {
            Ok(fresh) => *self.client.write_or_recover() = fresh,
            Err(e) => warn!("kubernetes: keeping the client in use: {e}"),
        }
    }

    fn client(&self) -> Client {
        self.client.read_or_recover().clone()
    }
}

/// A client from `kubeconfig` (or KUBECONFIG / in-cluster when None).
async fn client(kubeconfig: &Option<PathBuf>, node: &str) -> Result<Client, DrainError> {
    let (mut config, origin) = match kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| DrainError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?;
            let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| DrainError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?;
            (config, path.display().to_string())
        }
        None => {
            let config = Config::infer()
                .await
                .map_err(|source| DrainError::InferConfig { source })?;
            (config, "the inferred configuration".to_string())
        }
    };
    // The drain handles 429 (PodDisruptionBudget) and transient errors
    // itself, with its own back-off and deadline.
    config.default_retry = false;
    debug!(
        BATON_KUBE_NODE = node,
        "kubernetes API at {} (from {origin})", config.cluster_url
    );
    Client::try_from(config).map_err(|source| DrainError::Client { origin, source })
}

impl KubeDrainer {
    /// Cordons the node (remembers whether it was already unschedulable), lists pods on it
    /// (fieldSelector spec.nodeName=NODE, plus settings.pod_selector as labelSelector), skips
    /// DaemonSet-owned pods and mirror pods (annotation kubernetes.io/config.mirror), and pods
    /// already terminating/finished (phase Succeeded/Failed), evicts each through the Eviction
    /// API (POST policy/v1 Eviction to pods/NAME/eviction, with a camelCase
    /// deleteOptions.gracePeriodSeconds when grace_period is set), retries a 429 (PDB) after
    /// settings.eviction_retry, treats 404 as gone, then waits until the evicted pods are gone;
    /// all bounded by settings.drain_timeout (then `Err(Timeout)` — the caller undrains and
    /// releases).
    ///
    /// On [`DrainError::Timeout`] and [`DrainError::Incomplete`],
    /// [`DrainError::record`] gives what to pass to [`KubeDrainer::abort`].
    #[tracing::instrument(name = "kubernetes", skip_all, fields(BATON_KUBE_NODE = %self.node))]
    pub async fn drain(&self, lease: &HeldLease) -> Result<DrainRecord, DrainError> {
        self.refresh().await;
        let node = self.node.as_str();
        info!(
            "draining node {node} holding the lease ({lease}; timeout {:?})",
            self.drain_timeout
        );
        let started = Instant::now();
        let deadline = started + self.drain_timeout;
        let mut progress = Progress {
            force_at: self.force_after.map(|after| started + after),
            ..Progress::default()
        };
        let outcome =
            tokio::time::timeout_at(deadline, self.drain_steps(lease.holder(), &mut progress))
                .await;
        *self.forced.lock_or_recover() = progress.forced.clone();
        match outcome {
            Ok(Ok(())) => {
                info!(
                    "node {node} drained: {} pods evicted{}",
                    progress.evicted.len(),
                    if progress.we_cordoned {
                        ""
                    } else {
                        " (it was already cordoned)"
                    }
                );
                Ok(DrainRecord {
                    node: node.to_string(),
                    we_cordoned: progress.we_cordoned,
                    evicted: progress.evicted,
                })
            }
            Ok(Err(error)) if progress.we_cordoned || !progress.evicted.is_empty() => {
                Err(DrainError::Incomplete {
                    record: DrainRecord {
                        node: node.to_string(),
                        we_cordoned: progress.we_cordoned,
                        evicted: progress.evicted,
                    },
                    source: Box::new(error),
                })
            }
            Ok(Err(error)) => Err(error),
            Err(_elapsed) => {
                let error = DrainError::Timeout {
                    node: node.to_string(),
                    timeout: self.drain_timeout,
                    we_cordoned: progress.we_cordoned,
                    remaining: progress.remaining(),
                    evicted: progress.evicted,
                    last_error: progress.last_error,
                };
                warn!("{error}");
                Err(error)
            }
        }
    }

    /// After boot: waits until the node reports condition Ready=True (bounded by
    /// settings.ready_timeout), then uncordons only if record.we_cordoned.
    ///
    /// API errors while waiting (the network may come up after the agent)
    /// are logged and retried until the timeout.
    #[tracing::instrument(name = "kubernetes", skip_all, fields(BATON_KUBE_NODE = %record.node))]
    pub async fn undrain(&self, lease: &HeldLease, record: &DrainRecord) -> Result<(), DrainError> {
        self.refresh().await;
        let node = record.node.as_str();
        info!(
            "waiting up to {:?} for node {node} to be Ready, holding the lease ({lease})",
            self.ready_timeout
        );
        let deadline = Instant::now() + self.ready_timeout;
        let mut last = String::from("not read yet");
        if tokio::time::timeout_at(deadline, self.wait_ready(node, &mut last))
            .await
            .is_err()
        {
            let error = DrainError::NotReady {
                node: node.to_string(),
                timeout: self.ready_timeout,
                last,
            };
            warn!("{error}");
            return Err(error);
        }
        info!("node {node} is Ready");
        self.uncordon_if_ours(record).await
    }

    /// Undo after an aborted drain (no reboot happened): uncordon if we cordoned; no Ready wait.
    #[tracing::instrument(name = "kubernetes", skip_all, fields(BATON_KUBE_NODE = %record.node))]
    pub async fn abort(&self, record: &DrainRecord) -> Result<(), DrainError> {
        self.refresh().await;
        info!(
            "undoing the drain of node {} (no reboot happened)",
            record.node
        );
        self.uncordon_if_ours(record).await
    }

    /// The pods the last drain deleted instead of evicting (`force_after`),
    /// emptied by the call.
    pub fn take_forced(&self) -> Vec<String> {
        std::mem::take(&mut *self.forced.lock_or_recover())
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client())
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client(), namespace)
    }

    fn api_error(&self, call: impl Into<String>, node: &str, source: kube::Error) -> DrainError {
        DrainError::Api {
            call: call.into(),
            node: node.to_string(),
            source,
        }
    }

    /// Retries `call` on transient errors (noting them in `progress`) until
    /// it succeeds or fails for good; the caller's deadline bounds it.
    async fn with_retry<T, F, Fut>(
        &self,
        progress: &mut Progress,
        what: &str,
        mut call: F,
    ) -> Result<T, DrainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let mut attempt = 1u32;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) => {
                    warn!(
                        BATON_ATTEMPT = attempt,
                        "{what} failed (attempt {attempt}), retrying in {:?}: {e}", self.poll
                    );
                    progress.last_error = Some(format!("{what}: {e}"));
                    attempt += 1;
                    tokio::time::sleep(self.poll).await;
                }
                Err(e) => return Err(self.api_error(what, &self.node, e)),
            }
        }
    }

    async fn drain_steps(&self, holder: &str, progress: &mut Progress) -> Result<(), DrainError> {
        let node = self.node.as_str();
        let nodes = self.nodes();

        // Cordon, with baton's annotation in the same PATCH.
        let current = self
            .with_retry(progress, "get node", || nodes.get(node))
            .await?;
        match (is_unschedulable(&current), cordoned_by(&current)) {
            (true, Some(by)) => {
                // An earlier drain cordoned it and stopped before its
                // record was kept (the agent crashed or was restarted).
                progress.we_cordoned = true;
                info!(
                    "node {node} is already cordoned by baton ({CORDONED_BY}={by}), by a drain that did not finish: keeping the cordon, it is undone afterwards"
                );
            }
            (true, None) => {
                info!(
                    "node {node} is already cordoned, not by baton (no {CORDONED_BY} annotation): not cordoning, and it will stay cordoned afterwards"
                );
            }
            (false, _) => {
                // Set before the call: if the deadline cuts it short, the
                // patch may have been applied, and the node was schedulable
                // before.
                progress.we_cordoned = true;
                let params = PatchParams::default();
                let patch = Patch::Merge(cordon_patch(holder));
                self.with_retry(progress, "cordon", || nodes.patch(node, &params, &patch))
                    .await?;
                info!("cordoned node {node} ({CORDONED_BY}={holder})");
            }
        }

        // List the node's pods and pick the ones to evict.
        let mut params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        if let Some(selector) = &self.pod_selector {
            params = params.labels(selector);
        }
        let all_pods: Api<Pod> = Api::all(self.client());
        let listed = self
            .with_retry(progress, "list pods", || all_pods.list(&params))
            .await?;
        for pod in listed.items {
            let pod_ref = PodRef {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone(),
            };
            let key = pod_ref.key();
            match skip_reason(&pod) {
                Some(reason) => {
                    info!( BATON_POD = %key, "not evicting pod {key}: {reason}");
                }
                None => {
                    if pod
                        .metadata
                        .owner_references
                        .as_ref()
                        .is_none_or(Vec::is_empty)
                    {
                        warn!(
                            BATON_POD = %key,
                            "pod {key} has no controller: once evicted it is not recreated"
                        );
                    }
                    progress.to_evict.push(pod_ref);
                }
            }
        }
        info!("{} pods to evict from node {node}", progress.to_evict.len());

        self.evict_all(progress).await?;
        self.wait_gone(progress).await
    }

    async fn wait_ready(&self, node: &str, last: &mut String) {
        let nodes = self.nodes();
        let mut attempt = 1u32;
        loop {
            match nodes.get(node).await {
                Ok(current) => match ready_state(&current) {
                    Ok(()) => return,
                    Err(state) => {
                        debug!(
                            BATON_ATTEMPT = attempt,
                            "node {node} not Ready yet: {state}"
                        );
                        *last = state;
                    }
                },
                Err(e) => {
                    warn!(
                        BATON_ATTEMPT = attempt,
                        "cannot read node {node}, retrying: {e}"
                    );
                    *last = format!("get node failed: {e}");
                }
            }
            attempt += 1;
            tokio::time::sleep(self.poll).await;
        }
    }
}

#[cfg(test)]
mod kured_tests;
/// Settings for tests against the fake API at `kubeconfig`: short timeouts,
/// no forcing, annotations on, no labels.
#[cfg(test)]
pub(crate) fn test_settings(kubeconfig: PathBuf, node: &str) -> KubernetesSettings {
    KubernetesSettings {
        kubeconfig: Some(kubeconfig),
        node_name: node.to_string(),
        drain_timeout: Duration::from_secs(10),
        grace_period: None,
        pod_selector: None,
        ready_timeout: Duration::from_secs(10),
        eviction_retry: Duration::from_millis(50),
        force_after: None,
        annotate_node: true,
        pre_reboot_labels: vec![],
        post_reboot_labels: vec![],
    }
}

#[cfg(test)]
mod tests;
