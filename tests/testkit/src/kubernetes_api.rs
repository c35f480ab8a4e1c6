//! Test stand-in for the Kubernetes API server: the few endpoints the drain uses.
//!
//! No API server can be installed on the machines these tests run on, so
//! this is the one allowed stand-in. It serves plain HTTP on 127.0.0.1 and
//! writes a kubeconfig pointing at itself, so the drainer under test goes
//! through kube's real client, config loading and (de)serialization.
//!
//! Endpoints:
//! - `GET /api/v1/nodes/NODE` (each GET takes the next value of the node's
//!   Ready script, if any), `PATCH /api/v1/nodes/NODE` (merge patch of
//!   `spec.unschedulable`, `metadata.annotations` and `metadata.labels`,
//!   null removing a key);
//! - `GET /api/v1/pods?fieldSelector=spec.nodeName=NODE&labelSelector=...`
//!   (equality selectors `k=v`, `k==v`, `k!=v`, `k`, comma-separated);
//! - `POST /api/v1/namespaces/NS/pods/NAME/eviction` (scripted answers, 429
//!   with a PodDisruptionBudget message, 201 marks the pod terminating);
//! - `GET /api/v1/namespaces/NS/pods/NAME` (an evicted pod lingers for a
//!   set number of GETs, then answers 404);
//! - `DELETE /api/v1/namespaces/NS/pods/NAME` (a forced drain: no
//!   PodDisruptionBudget applies; marks the pod terminating, answers it).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// One request the fake API served.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Option<Value>,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the node reported Ready=True when this request was answered.
    pub node_ready: bool,
    /// When it was answered.
    pub at: std::time::Instant,
}

/// A pod in the model, built with the chained setters.
#[derive(Debug, Clone)]
pub struct FakePod {
    namespace: String,
    name: String,
    uid: String,
    node: String,
    labels: BTreeMap<String, String>,
    daemonset: bool,
    mirror: bool,
    controlled: bool,
    phase: String,
    terminating: bool,
    /// Scripted eviction answers, used first to last; then 201.
    eviction_answers: VecDeque<u16>,
    /// Every eviction answers 429 (a PodDisruptionBudget that never allows it).
    pdb_always: bool,
    /// After its eviction, how many more GETs still see the pod (terminating).
    lingers: u32,
}

impl FakePod {
    /// A running, ReplicaSet-owned pod on `node`.
    pub fn new(namespace: &str, name: &str, node: &str) -> Self {
        FakePod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: format!("uid-{namespace}-{name}"),
            node: node.to_string(),
            labels: BTreeMap::new(),
            daemonset: false,
            mirror: false,
            controlled: true,
            phase: "Running".to_string(),
            terminating: false,
            eviction_answers: VecDeque::new(),
            pdb_always: false,
            lingers: 0,
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Owned by a DaemonSet (instead of a ReplicaSet).
    pub fn daemonset(mut self) -> Self {
        self.daemonset = true;
        self
    }

    /// No owner at all (a bare pod).
    pub fn bare(mut self) -> Self {
        self.controlled = false;
        self
    }

    /// A mirror pod (annotation kubernetes.io/config.mirror, owned by the Node).
    pub fn mirror(mut self) -> Self {
        self.mirror = true;
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.phase = phase.to_string();
        self
    }

    /// Already being deleted (deletionTimestamp set).
    pub fn terminating(mut self) -> Self {
        self.terminating = true;
        self
    }

    /// The first evictions get these HTTP statuses (e.g. `[429]`), later ones 201.
    pub fn eviction_answers(mut self, answers: &[u16]) -> Self {
        self.eviction_answers = answers.iter().copied().collect();
        self
    }

    /// A PodDisruptionBudget that never allows the eviction (always 429).
    pub fn pdb_always(mut self) -> Self {
        self.pdb_always = true;
        self
    }

    /// Still seen (terminating) by this many GETs after its eviction.
    pub fn lingers(mut self, gets: u32) -> Self {
        self.lingers = gets;
        self
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn to_json(&self) -> Value {
        let mut metadata = json!({
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "resourceVersion": "1",
            "labels": self.labels,
        });
        if self.daemonset {
            metadata["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds",
                "uid": "uid-ds", "controller": true, "blockOwnerDeletion": true
            }]);
        } else if self.mirror {
            metadata["annotations"] = json!({
                "kubernetes.io/config.mirror": "0123456789abcdef",
                "kubernetes.io/config.source": "file"
            });
            metadata["ownerReferences"] = json!([{
                "apiVersion": "v1", "kind": "Node", "name": self.node,
                "uid": "uid-node", "controller": true
            }]);
        } else if self.controlled {
            metadata["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": "uid-rs", "controller": true, "blockOwnerDeletion": true
            }]);
        }
        if self.terminating {
            metadata["deletionTimestamp"] = json!("2026-11-25T09:00:00Z");
            metadata["deletionGracePeriodSeconds"] = json!(30);
        }
        // As in a real list response: items carry no apiVersion/kind.
        json!({
            "metadata": metadata,
            "spec": {
                "nodeName": self.node,
                "containers": [{ "name": "main", "image": "registry.example/app:1" }]
            },
            "status": { "phase": self.phase }
        })
    }
}

#[derive(Debug)]
struct Model {
    node: String,
    unschedulable: bool,
    /// The node's annotations.
    annotations: BTreeMap<String, String>,
    /// The node's labels.
    labels: BTreeMap<String, String>,
    ready: bool,
    /// Ready values taken by successive node GETs; the last one stays.
    ready_script: VecDeque<bool>,
    pods: Vec<FakePod>,
    requests: Vec<Recorded>,
}

impl Model {
    fn node_json(&self) -> Value {
        let mut spec = json!({ "podCIDR": "10.244.0.0/24" });
        if self.unschedulable {
            spec["unschedulable"] = json!(true);
        }
        let (status, reason, message) = if self.ready {
            ("True", "KubeletReady", "kubelet is posting ready status")
        } else {
            (
                "False",
                "KubeletNotReady",
                "container runtime network not ready",
            )
        };
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "uid": "uid-node",
                "resourceVersion": "1",
                "annotations": self.annotations,
                "labels": self.labels
            },
            "spec": spec,
            "status": {
                "conditions": [
                    { "type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory" },
                    { "type": "Ready", "status": status, "reason": reason, "message": message }
                ]
            }
        })
    }
}

type Shared = Arc<Mutex<Model>>;

/// A running fake API server with a kubeconfig pointing at it.
pub struct FakeApi {
    model: Shared,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeApi {
    /// Starts a server for one node, schedulable and Ready, with `pods`.
    pub async fn start(node: &str, pods: Vec<FakePod>) -> FakeApi {
        let model = Arc::new(Mutex::new(Model {
            node: node.to_string(),
            unschedulable: false,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            ready: true,
            ready_script: VecDeque::new(),
            pods,
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let addr: SocketAddr = listener.local_addr().expect("fake API server address");
        let app = Router::new().fallback(handle).with_state(model.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().expect("temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\n\
                 kind: Config\n\
                 clusters:\n\
                 - name: fake\n  cluster:\n    server: http://{addr}\n\
                 contexts:\n\
                 - name: fake\n  context:\n    cluster: fake\n    user: baton\n\
                 current-context: fake\n\
                 users:\n\
                 - name: baton\n  user:\n    token: not-a-secret\n"
            ),
        )
        .expect("write kubeconfig");
        FakeApi {
            model,
            kubeconfig,
            _dir: dir,
            server,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().expect("fake API model lock")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    pub fn set_unschedulable(&self, value: bool) {
        self.lock().unschedulable = value;
    }

    pub fn unschedulable(&self) -> bool {
        self.lock().unschedulable
    }

    /// Sets (`Some`) or removes (`None`) a node annotation, as an operator would.
    pub fn set_node_annotation(&self, key: &str, value: Option<&str>) {
        let mut model = self.lock();
        match value {
            Some(value) => model.annotations.insert(key.to_string(), value.to_string()),
            None => model.annotations.remove(key),
        };
    }

    /// The node's annotations.
    pub fn node_annotations(&self) -> BTreeMap<String, String> {
        self.lock().annotations.clone()
    }

    /// Sets (`Some`) or removes (`None`) a node label, as an operator would.
    pub fn set_node_label(&self, key: &str, value: Option<&str>) {
        let mut model = self.lock();
        match value {
            Some(value) => model.labels.insert(key.to_string(), value.to_string()),
            None => model.labels.remove(key),
        };
    }

    /// The node's labels.
    pub fn node_labels(&self) -> BTreeMap<String, String> {
        self.lock().labels.clone()
    }

    pub fn set_ready(&self, value: bool) {
        let mut model = self.lock();
        model.ready = value;
        model.ready_script.clear();
    }

    /// Successive node GETs see these Ready values; the last one then stays.
    pub fn script_ready(&self, values: &[bool]) {
        self.lock().ready_script = values.iter().copied().collect();
    }

    /// Keys (`ns/name`) of the pods still in the model.
    pub fn pods(&self) -> Vec<String> {
        self.lock().pods.iter().map(FakePod::key).collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Eviction POSTs for `ns/name`, in order.
    pub fn evictions_of(&self, key: &str) -> Vec<Recorded> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction");
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path == path)
            .collect()
    }

    /// DELETEs of pod `ns/name`, in order.
    pub fn deletions_of(&self, key: &str) -> Vec<Recorded> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::DELETE && r.path == path)
            .collect()
    }

    /// PATCHes of the node, in order.
    pub fn node_patches(&self) -> Vec<Recorded> {
        let path = format!("/api/v1/nodes/{}", self.lock().node);
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::PATCH && r.path == path)
            .collect()
    }
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "message": message,
        "reason": reason,
        "code": code
    })
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Does a pod with `labels` match an equality-based selector? `Err` for
/// selector syntax this fake does not know.
fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let ok = if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).map(String::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.get(k.trim()).map(String::as_str) == Some(v.trim())
        } else if term.contains(|c: char| " ()!<>".contains(c)) {
            return Err(format!("unsupported selector term {term:?}"));
        } else {
            labels.contains_key(term)
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn handle(State(model): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(Body::new(body), 1 << 20)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice::<Value>(&bytes).ok();
    let path = parts.uri.path().to_string();
    let mut guard = model.lock().expect("fake API model lock");
    let model = &mut *guard;
    let (status, answer) = route(model, &parts.method, &path, &query, body.as_ref());
    model.requests.push(Recorded {
        method: parts.method.clone(),
        path,
        query,
        body,
        status,
        node_ready: model.ready,
        at: std::time::Instant::now(),
    });
    json_response(status, &answer)
}

/// A 404 for pod `name`, as the API server words it.
fn pod_not_found(name: &str) -> (u16, Value) {
    (
        404,
        status_body(404, "NotFound", &format!("pods \"{name}\" not found")),
    )
}

/// One pod as a GET (or DELETE) answers it: with apiVersion and kind.
fn pod_answer(pod: &FakePod) -> Value {
    let mut answer = pod.to_json();
    answer["apiVersion"] = json!("v1");
    answer["kind"] = json!("Pod");
    answer
}

fn route(
    model: &mut Model,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: Option<&Value>,
) -> (u16, Value) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api", "v1", "nodes", name]) => {
            if *name != model.node {
                return (
                    404,
                    status_body(404, "NotFound", &format!("nodes \"{name}\" not found")),
                );
            }
            if let Some(ready) = model.ready_script.pop_front() {
                model.ready = ready;
            }
            (200, model.node_json())
        }
        ("PATCH", ["api", "v1", "nodes", name]) => {
            if *name != model.node {
                return (
                    404,
                    status_body(404, "NotFound", &format!("nodes \"{name}\" not found")),
                );
            }
            // JSON merge patch (RFC 7386), applied whole or not at all: an
            // annotation or label set to null is removed.
            let mut annotations = model.annotations.clone();
            let mut labels = model.labels.clone();
            for (pointer, map) in [
                ("/metadata/annotations", &mut annotations),
                ("/metadata/labels", &mut labels),
            ] {
                if let Some(Value::Object(changes)) = body.and_then(|b| b.pointer(pointer)) {
                    for (key, value) in changes {
                        match value {
                            Value::String(v) => {
                                map.insert(key.clone(), v.clone());
                            }
                            Value::Null => {
                                map.remove(key);
                            }
                            other => {
                                let message =
                                    format!("{pointer} {key:?} must be a string, not {other}");
                                return (400, status_body(400, "BadRequest", &message));
                            }
                        }
                    }
                }
            }
            model.annotations = annotations;
            model.labels = labels;
            match body.and_then(|b| b.pointer("/spec/unschedulable")) {
                Some(Value::Bool(v)) => model.unschedulable = *v,
                Some(Value::Null) => model.unschedulable = false,
                _ => {}
            }
            (200, model.node_json())
        }
        ("GET", ["api", "v1", "pods"]) => {
            let node = match query.get("fieldSelector").map(String::as_str) {
                Some(selector) => match selector.strip_prefix("spec.nodeName=") {
                    Some(node) => Some(node.to_string()),
                    None => {
                        let message = format!("unsupported field selector {selector:?}");
                        return (400, status_body(400, "BadRequest", &message));
                    }
                },
                None => None,
            };
            let mut items = Vec::new();
            for pod in &model.pods {
                if node.as_ref().is_some_and(|n| *n != pod.node) {
                    continue;
                }
                if let Some(selector) = query.get("labelSelector") {
                    match selector_matches(selector, &pod.labels) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(message) => return (400, status_body(400, "BadRequest", &message)),
                    }
                }
                items.push(pod.to_json());
            }
            (
                200,
                json!({
                    "apiVersion": "v1",
                    "kind": "PodList",
                    "metadata": { "resourceVersion": "1" },
                    "items": items
                }),
            )
        }
        ("POST", ["api", "v1", "namespaces", namespace, "pods", name, "eviction"]) => {
            let Some(pod) = model
                .pods
                .iter_mut()
                .find(|p| p.namespace == *namespace && p.name == *name)
            else {
                return (
                    404,
                    status_body(404, "NotFound", &format!("pods \"{name}\" not found")),
                );
            };
            let code = if pod.pdb_always {
                429
            } else {
                pod.eviction_answers.pop_front().unwrap_or(201)
            };
            match code {
                429 => {
                    let mut answer = status_body(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    );
                    answer["details"] = json!({ "causes": [{
                        "reason": "DisruptionBudget",
                        "message": "The disruption budget app-pdb needs 2 healthy pods and has 2 currently"
                    }]});
                    (429, answer)
                }
                201 => {
                    pod.terminating = true;
                    (201, status_body(201, "", ""))
                }
                other => (
                    other,
                    status_body(other, "InternalError", "scripted failure"),
                ),
            }
        }
        ("DELETE", ["api", "v1", "namespaces", namespace, "pods", name]) => {
            match model
                .pods
                .iter_mut()
                .find(|p| p.namespace == *namespace && p.name == *name)
            {
                Some(pod) => {
                    pod.terminating = true;
                    (200, pod_answer(pod))
                }
                None => pod_not_found(name),
            }
        }
        ("GET", ["api", "v1", "namespaces", namespace, "pods", name]) => {
            let Some(index) = model
                .pods
                .iter()
                .position(|p| p.namespace == *namespace && p.name == *name)
            else {
                return pod_not_found(name);
            };
            let pod = &mut model.pods[index];
            if pod.terminating && pod.lingers == 0 {
                model.pods.remove(index);
                return pod_not_found(name);
            }
            if pod.terminating {
                pod.lingers -= 1;
            }
            (200, pod_answer(pod))
        }
        _ => (
            404,
            status_body(
                404,
                "NotFound",
                &format!("fake API: no endpoint {method} {path}"),
            ),
        ),
    }
}
