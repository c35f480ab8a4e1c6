//! The node's marks while baton works on it: annotations and pre/post-reboot labels.
//!
//! Informational (kured's `--annotate-nodes`, `--pre-reboot-node-labels`,
//! `--post-reboot-node-labels`): a failed PATCH is logged by the agent and
//! never stops the roll. Each change is one merge patch.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Map, Value};
use tracing::info;

use super::{DrainError, KubeDrainer, API_CALL_TIMEOUT};
use crate::host::held_lease::HeldLease;

/// Set while an update waits for its reboot (value: the version, or the
/// update's reason when the source names no version).
pub const REBOOT_NEEDED: &str = "baton.io/reboot-needed";
/// Set while this host holds the lease for its reboot (value: holder and token).
pub const REBOOT_IN_PROGRESS: &str = "baton.io/reboot-in-progress";

/// Longest annotation value baton writes (a package list can be long).
const MAX_ANNOTATION_VALUE: usize = 256;

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_ANNOTATION_VALUE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// `{"metadata": {"annotations": ..., "labels": ...}}` with the non-empty parts.
fn metadata_patch(annotations: Map<String, Value>, labels: Map<String, Value>) -> Option<Value> {
    let mut metadata = Map::new();
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    (!metadata.is_empty()).then(|| json!({ "metadata": metadata }))
}

fn set(pairs: &[(String, String)], map: &mut Map<String, Value>) {
    for (k, v) in pairs {
        map.insert(k.clone(), Value::String(v.clone()));
    }
}

fn unset(pairs: &[(String, String)], map: &mut Map<String, Value>) {
    for (k, _) in pairs {
        map.insert(k.clone(), Value::Null);
    }
}

impl KubeDrainer {
    /// An update waits for its reboot: annotates [`REBOOT_NEEDED`].
    pub async fn mark_reboot_needed(&self, what: &str) -> Result<(), DrainError> {
        if !self.annotate_node {
            return Ok(());
        }
        let mut annotations = Map::new();
        annotations.insert(REBOOT_NEEDED.into(), Value::String(cut(what)));
        self.patch_metadata("annotate reboot needed", annotations, Map::new())
            .await
    }

    /// Holding the lease, before the drain: annotates [`REBOOT_IN_PROGRESS`],
    /// sets the pre-reboot labels, removes the post-reboot ones.
    pub async fn mark_in_progress(&self, lease: &HeldLease) -> Result<(), DrainError> {
        let mut annotations = Map::new();
        if self.annotate_node {
            let value = format!("{} token {}", lease.holder(), lease.token());
            annotations.insert(REBOOT_IN_PROGRESS.into(), Value::String(value));
        }
        let mut labels = Map::new();
        unset(&self.post_reboot_labels, &mut labels);
        set(&self.pre_reboot_labels, &mut labels);
        self.patch_metadata("mark reboot in progress", annotations, labels)
            .await
    }

    /// Back from the reboot, checked: removes both annotations and the
    /// pre-reboot labels, sets the post-reboot labels.
    pub async fn mark_rebooted(&self) -> Result<(), DrainError> {
        let mut annotations = Map::new();
        if self.annotate_node {
            annotations.insert(REBOOT_NEEDED.into(), Value::Null);
            annotations.insert(REBOOT_IN_PROGRESS.into(), Value::Null);
        }
        let mut labels = Map::new();
        unset(&self.pre_reboot_labels, &mut labels);
        set(&self.post_reboot_labels, &mut labels);
        self.patch_metadata("mark rebooted", annotations, labels)
            .await
    }

    /// Idle (no reboot pending, or a roll given up): removes baton's
    /// annotations and the pre-reboot labels if the node carries any (one
    /// GET; a PATCH only when something is to be removed). Post-reboot
    /// labels stay. `Ok(true)` when it removed something.
    pub async fn clear_marks(&self) -> Result<bool, DrainError> {
        if !self.annotate_node && self.pre_reboot_labels.is_empty() {
            return Ok(false);
        }
        let node = self.node.as_str();
        let current: Node = self.bounded("get node", self.nodes().get(node)).await?;
        let empty = BTreeMap::new();
        let has_annotation = current.metadata.annotations.as_ref().unwrap_or(&empty);
        let has_label = current.metadata.labels.as_ref().unwrap_or(&empty);
        let mut annotations = Map::new();
        if self.annotate_node {
            for key in [REBOOT_NEEDED, REBOOT_IN_PROGRESS] {
                if has_annotation.contains_key(key) {
                    annotations.insert(key.into(), Value::Null);
                }
            }
        }
        let mut labels = Map::new();
        for (key, value) in &self.pre_reboot_labels {
            // Only a label baton set (same value); an operator's stays.
            if has_label.get(key) == Some(value) {
                labels.insert(key.clone(), Value::Null);
            }
        }
        if annotations.is_empty() && labels.is_empty() {
            return Ok(false);
        }
        self.patch_metadata("clear reboot marks", annotations, labels)
            .await?;
        Ok(true)
    }

    async fn patch_metadata(
        &self,
        call: &'static str,
        annotations: Map<String, Value>,
        labels: Map<String, Value>,
    ) -> Result<(), DrainError> {
        let Some(patch) = metadata_patch(annotations, labels) else {
            return Ok(());
        };
        let node = self.node.as_str();
        let nodes = self.nodes();
        let params = PatchParams::default();
        let merge = Patch::Merge(&patch);
        self.bounded(call, nodes.patch(node, &params, &merge))
            .await?;
        info!("node {node}: {call} ({})", patch["metadata"]);
        Ok(())
    }

    /// One API call, bounded by `API_CALL_TIMEOUT`, errors naming it.
    async fn bounded<T>(
        &self,
        call: &'static str,
        future: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, DrainError> {
        let node = self.node.as_str();
        match tokio::time::timeout(API_CALL_TIMEOUT, future).await {
            Ok(result) => result.map_err(|source| self.api_error(call, node, source)),
            Err(_elapsed) => Err(DrainError::NoAnswer {
                call,
                node: node.to_string(),
                timeout: API_CALL_TIMEOUT,
            }),
        }
    }
}
