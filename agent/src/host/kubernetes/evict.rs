//! Eviction: the pods to evict or skip, the Eviction API with PDB back-off, waiting until gone.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{DeleteParams, PostParams};
use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};

use super::{is_transient, status_code, DrainError, KubeDrainer, Progress};

/// Annotation the kubelet puts on mirror pods (static pods seen through the API).
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A pod the drain acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodRef {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: Option<String>,
}

impl PodRef {
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Why a listed pod is left alone, or None to evict it.
pub(super) fn skip_reason(pod: &Pod) -> Option<&'static str> {
    let meta = &pod.metadata;
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return Some("mirror (static) pod");
    }
    if meta
        .owner_references
        .as_ref()
        .is_some_and(|owners| owners.iter().any(|o| o.kind == "DaemonSet"))
    {
        return Some("owned by a DaemonSet");
    }
    if meta.deletion_timestamp.is_some() {
        return Some("already terminating");
    }
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") | Some("Failed") => Some("finished"),
        _ => None,
    }
}

/// Whole seconds for `gracePeriodSeconds`, rounded up (0.5 s must not become
/// 0, which asks for immediate deletion).
pub(super) fn grace_seconds(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl KubeDrainer {
    pub(super) async fn evict_all(&self, progress: &mut Progress) -> Result<(), DrainError> {
        let node = self.node.as_str();
        let mut attempts: HashMap<String, u32> = HashMap::new();
        while !progress.to_evict.is_empty() {
            if progress.force_at.is_some_and(|at| Instant::now() >= at) {
                self.delete_all(progress).await?;
                continue;
            }
            for pod in progress.to_evict.clone() {
                let key = pod.key();
                let attempt = {
                    let n = attempts.entry(key.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                // The pod's events carry BATON_POD and BATON_ATTEMPT.
                let pod_span =
                    tracing::info_span!("pod", BATON_POD = %key, BATON_ATTEMPT = attempt);
                pod_span.in_scope(|| debug!("evicting pod {key}"));
                let evicted = self.evict(&pod).instrument(pod_span.clone()).await;
                let _in_pod = pod_span.enter(); // no await below while entered
                match evicted {
                    Ok(()) => {
                        info!("evicted pod {key} (attempt {attempt})");
                        progress.to_evict.retain(|p| *p != pod);
                        progress.evicted.push(key);
                        progress.terminating.push(pod);
                    }
                    Err(e) if status_code(&e) == Some(404) => {
                        info!("pod {key} is already gone");
                        progress.to_evict.retain(|p| *p != pod);
                    }
                    Err(e) if status_code(&e) == Some(429) => {
                        info!(
                            "eviction of pod {key} refused (attempt {attempt}), a PodDisruptionBudget blocks it; retrying in {:?}: {e}",
                            self.eviction_retry
                        );
                        progress.last_error = Some(format!("evict pod {key}: {e}"));
                    }
                    Err(e) if is_transient(&e) => {
                        warn!(
                            "eviction of pod {key} failed (attempt {attempt}), retrying in {:?}: {e}",
                            self.eviction_retry
                        );
                        progress.last_error = Some(format!("evict pod {key}: {e}"));
                    }
                    Err(e) => return Err(self.api_error(format!("evict pod {key}"), node, e)),
                }
            }
            if !progress.to_evict.is_empty() {
                // While a PodDisruptionBudget holds some pods back, keep
                // track of the evicted ones, so that a timeout names only
                // pods still on the node.
                self.check_gone(progress).await?;
                tokio::time::sleep(self.eviction_retry).await;
            }
        }
        Ok(())
    }

    /// `force_after` has passed with pods still not evicted (a
    /// PodDisruptionBudget that does not allow it): delete them, bypassing
    /// the budget, loudly (kured's `--force-reboot`).
    async fn delete_all(&self, progress: &mut Progress) -> Result<(), DrainError> {
        let node = self.node.as_str();
        let mut params = DeleteParams::default();
        if let Some(grace) = self.grace_period {
            params.grace_period_seconds = u32::try_from(grace_seconds(grace)).ok();
        }
        for pod in progress.to_evict.clone() {
            let key = pod.key();
            error!(
                BATON_POD = %key,
                BATON_FORCED = true,
                "FORCED: kubernetes.force_after ({:?}) passed and pod {key} still cannot be \
                 evicted; deleting it, bypassing its PodDisruptionBudget",
                self.force_after.unwrap_or_default()
            );
            match self.pods(&pod.namespace).delete(&pod.name, &params).await {
                Ok(_) => {
                    progress.to_evict.retain(|p| *p != pod);
                    progress.evicted.push(key.clone());
                    progress.forced.push(key);
                    progress.terminating.push(pod);
                }
                Err(e) if status_code(&e) == Some(404) => {
                    info!(BATON_POD = %key, "pod {key} is already gone");
                    progress.to_evict.retain(|p| *p != pod);
                }
                Err(e) if is_transient(&e) => {
                    warn!(BATON_POD = %key, "deleting pod {key} failed, retrying: {e}");
                    progress.last_error = Some(format!("delete pod {key}: {e}"));
                }
                Err(e) => return Err(self.api_error(format!("delete pod {key}"), node, e)),
            }
        }
        if !progress.to_evict.is_empty() {
            tokio::time::sleep(self.eviction_retry).await;
        }
        Ok(())
    }

    async fn evict(&self, pod: &PodRef) -> Result<(), kube::Error> {
        let eviction = Eviction {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            delete_options: self.grace_period.map(|grace| DeleteOptions {
                grace_period_seconds: Some(grace_seconds(grace)),
                ..DeleteOptions::default()
            }),
        };
        self.pods(&pod.namespace)
            .create_subresource::<_, serde_json::Value>(
                "eviction",
                &pod.name,
                &PostParams::default(),
                &eviction,
            )
            .await
            .map(|_status| ())
    }

    pub(super) async fn wait_gone(&self, progress: &mut Progress) -> Result<(), DrainError> {
        loop {
            self.check_gone(progress).await?;
            if progress.terminating.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// One pass over the evicted pods: forgets those that are gone (404, or
    /// the name now belongs to a new pod with another uid).
    async fn check_gone(&self, progress: &mut Progress) -> Result<(), DrainError> {
        let node = self.node.as_str();
        for pod in progress.terminating.clone() {
            let key = pod.key();
            match self.pods(&pod.namespace).get_opt(&pod.name).await {
                Ok(Some(current)) if current.metadata.uid == pod.uid => {
                    debug!( BATON_POD = %key, "pod {key} still terminating");
                }
                Ok(_) => {
                    info!( BATON_POD = %key, "pod {key} is gone");
                    progress.terminating.retain(|p| *p != pod);
                }
                Err(e) if is_transient(&e) => {
                    warn!( BATON_POD = %key, "cannot read pod {key}, retrying: {e}");
                    progress.last_error = Some(format!("get pod {key}: {e}"));
                }
                Err(e) => return Err(self.api_error(format!("get pod {key}"), node, e)),
            }
        }
        Ok(())
    }
}
