//! Pods on this node that match a label selector: the pod blocker's question.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;

use super::{DrainError, KubeDrainer};

impl KubeDrainer {
    /// The node's name in Kubernetes.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `namespace/name` of the pods on this node that match `selector` and
    /// have not finished (phase not Succeeded or Failed), sorted.
    pub async fn running_pods(&self, selector: &str) -> Result<Vec<String>, DrainError> {
        let node = self.node.as_str();
        let params = ListParams::default()
            .fields(&format!("spec.nodeName={node}"))
            .labels(selector);
        let pods: Api<Pod> = Api::all(self.client());
        let call = tokio::time::timeout(super::API_CALL_TIMEOUT, pods.list(&params));
        let listed = match call.await {
            Ok(listed) => listed.map_err(|source| self.api_error("list pods", node, source))?,
            Err(_elapsed) => {
                return Err(DrainError::NoAnswer {
                    call: "list pods",
                    node: node.to_string(),
                    timeout: super::API_CALL_TIMEOUT,
                })
            }
        };
        let mut running: Vec<String> = listed
            .items
            .into_iter()
            .filter(|pod| {
                !matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded") | Some("Failed")
                )
            })
            .map(|pod| {
                format!(
                    "{}/{}",
                    pod.metadata.namespace.unwrap_or_default(),
                    pod.metadata.name.unwrap_or_default()
                )
            })
            .collect();
        running.sort();
        Ok(running)
    }
}
