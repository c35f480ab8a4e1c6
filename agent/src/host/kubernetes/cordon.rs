//! The cordon and its record on the node (`baton.io/cordoned-by`), uncordon, and its undo.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{DrainError, DrainRecord, KubeDrainer, UnrecordedCordon};

use crate::locks::LockOrRecover;

/// Node annotation set in the same PATCH as `spec.unschedulable=true` when
/// baton cordons the node (value: the lease holder), removed in the same
/// PATCH that uncordons it. A cordoned node without it was cordoned by
/// someone else and is left cordoned.
pub const CORDONED_BY: &str = "baton.io/cordoned-by";

/// How long the check for a cordon without a record may take.
const UNRECORDED_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// After that check failed, how long before it is tried again.
const UNRECORDED_CHECK_RETRY: Duration = Duration::from_secs(30);

/// The value of baton's [`CORDONED_BY`] annotation on `node`, if set.
pub(super) fn cordoned_by(node: &Node) -> Option<&str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CORDONED_BY))
        .map(String::as_str)
}

pub(super) fn is_unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// The cordon: `spec.unschedulable=true` and baton's annotation, one merge patch.
pub(super) fn cordon_patch(holder: &str) -> serde_json::Value {
    json!({
        "metadata": { "annotations": { CORDONED_BY: holder } },
        "spec": { "unschedulable": true }
    })
}

/// The uncordon: `spec.unschedulable=false` and baton's annotation removed
/// (null in a merge patch), one merge patch.
fn uncordon_patch() -> serde_json::Value {
    json!({
        "metadata": { "annotations": { CORDONED_BY: null } },
        "spec": { "unschedulable": false }
    })
}

impl KubeDrainer {
    pub(super) async fn uncordon_if_ours(&self, record: &DrainRecord) -> Result<(), DrainError> {
        let node = record.node.as_str();
        if !record.we_cordoned {
            info!("node {node} was cordoned before the drain, not by baton: leaving it cordoned");
            return Ok(());
        }
        self.uncordon(node).await
    }

    /// Clears `spec.unschedulable` and baton's annotation in one PATCH.
    async fn uncordon(&self, node: &str) -> Result<(), DrainError> {
        self.nodes()
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(uncordon_patch()),
            )
            .await
            .map_err(|source| self.api_error("uncordon", node, source))?;
        info!("uncordoned node {node} (annotation {CORDONED_BY} removed)");
        Ok(())
    }

    /// For an agent that holds no lease (idle): uncordons the node if it
    /// carries baton's [`CORDONED_BY`] annotation, which only a drain whose
    /// record was lost leaves behind (the agent stopped between the cordon
    /// and the phase file's [`DrainRecord`]). A node cordoned without the
    /// annotation is left cordoned, and the log says so.
    ///
    /// Looks once per process: later calls return
    /// [`UnrecordedCordon::Skipped`] at once. A failed look (logged) is tried
    /// again on a call at least `UNRECORDED_CHECK_RETRY` later; each look is
    /// bounded by `UNRECORDED_CHECK_TIMEOUT`.
    #[tracing::instrument(name = "kubernetes", skip_all, fields(BATON_KUBE_NODE = %self.node))]
    pub async fn undo_unrecorded_cordon(&self) -> Result<UnrecordedCordon, DrainError> {
        let due = self
            .unrecorded_check
            .lock_or_recover()
            .is_some_and(|at| Instant::now() >= at);
        if !due {
            return Ok(UnrecordedCordon::Skipped);
        }
        self.refresh().await;
        let node = self.node.as_str();
        let checked =
            match tokio::time::timeout(UNRECORDED_CHECK_TIMEOUT, self.check_unrecorded_cordon())
                .await
            {
                Ok(checked) => checked,
                Err(_elapsed) => Err(DrainError::NoAnswer {
                    call: "check for a cordon without a record",
                    node: node.to_string(),
                    timeout: UNRECORDED_CHECK_TIMEOUT,
                }),
            };
        let next = match &checked {
            Ok(_) => None,
            Err(e) => {
                warn!(
                    "cannot check node {node} for a cordon of ours without a record (trying again in {UNRECORDED_CHECK_RETRY:?}): {e}"
                );
                Some(Instant::now() + UNRECORDED_CHECK_RETRY)
            }
        };
        *self.unrecorded_check.lock_or_recover() = next;
        checked
    }

    async fn check_unrecorded_cordon(&self) -> Result<UnrecordedCordon, DrainError> {
        let node = self.node.as_str();
        let nodes = self.nodes();
        let current = nodes
            .get(node)
            .await
            .map_err(|source| self.api_error("get node", node, source))?;
        let by = cordoned_by(&current).map(str::to_string);
        match (is_unschedulable(&current), by) {
            (true, Some(cordoned_by)) => {
                warn!(
                    "node {node} is cordoned by baton ({CORDONED_BY}={cordoned_by}) but no drain is on record (the agent stopped mid-drain): uncordoning it"
                );
                self.uncordon(node).await?;
                Ok(UnrecordedCordon::Uncordoned { cordoned_by })
            }
            (false, Some(cordoned_by)) => {
                info!(
                    "node {node} is schedulable but still carries {CORDONED_BY}={cordoned_by} (uncordoned by hand?): removing the annotation"
                );
                let patch = json!({ "metadata": { "annotations": { CORDONED_BY: null } } });
                nodes
                    .patch(node, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|source| self.api_error("remove annotation", node, source))?;
                Ok(UnrecordedCordon::AnnotationRemoved { cordoned_by })
            }
            (true, None) => {
                info!(
                    "node {node} is cordoned, not by baton (no {CORDONED_BY} annotation): leaving it cordoned"
                );
                Ok(UnrecordedCordon::NotOurs)
            }
            (false, None) => Ok(UnrecordedCordon::Clean),
        }
    }
}
