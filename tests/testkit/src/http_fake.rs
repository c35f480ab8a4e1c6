//! A small real HTTP server for tests: fixed answers per path (our fake Prometheus), and every request recorded (our fake webhook).
//!
//! No Prometheus or chat service can be installed where these tests run,
//! so this serves `GET /api/v1/alerts` with the JSON a test sets, and
//! records the POSTs a webhook gets. Plain HTTP on 127.0.0.1; baton's own
//! HTTP client talks to it over a real socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request the server got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How to answer a path.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow or hung server).
    pub delay: Duration,
}

#[derive(Default)]
struct Model {
    answers: HashMap<String, Answer>,
    received: Vec<Received>,
}

type Shared = Arc<Mutex<Model>>;

/// A running server; stops when dropped.
pub struct HttpFake {
    model: Shared,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for HttpFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl HttpFake {
    /// Starts on 127.0.0.1 (a free port). Unknown paths answer 200 with an
    /// empty JSON object (a webhook's "ok").
    pub async fn start() -> HttpFake {
        let model: Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake HTTP server");
        let addr = listener.local_addr().expect("fake HTTP server address");
        let app = Router::new().fallback(handle).with_state(model.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpFake {
            model,
            addr,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `path` with `status` and `body` (JSON text).
    pub fn answer(&self, path: &str, status: u16, body: &str) {
        self.answer_after(path, status, body, Duration::ZERO);
    }

    /// Same, after `delay`.
    pub fn answer_after(&self, path: &str, status: u16, body: &str, delay: Duration) {
        self.model.lock().expect("fake HTTP lock").answers.insert(
            path.to_string(),
            Answer {
                status,
                body: body.as_bytes().to_vec(),
                delay,
            },
        );
    }

    /// Answers `path` with `len` bytes of JSON-looking padding (a too-big answer).
    pub fn answer_huge(&self, path: &str, len: usize) {
        let mut body = b"{\"status\":\"success\",\"pad\":\"".to_vec();
        body.resize(len, b'x');
        body.extend_from_slice(b"\"}");
        self.model.lock().expect("fake HTTP lock").answers.insert(
            path.to_string(),
            Answer {
                status: 200,
                body,
                delay: Duration::ZERO,
            },
        );
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.model.lock().expect("fake HTTP lock").received.clone()
    }

    /// Waits until at least `n` requests came (or `within` passed).
    pub async fn wait_received(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Alerts as Prometheus's `/api/v1/alerts` lists them: (alertname, state).
pub fn alerts_json(alerts: &[(&str, &str)]) -> String {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(name, state)| {
            serde_json::json!({
                "labels": { "alertname": name, "severity": "critical" },
                "annotations": { "summary": "test alert" },
                "state": state,
                "activeAt": "2026-12-01T10:00:00Z",
                "value": "1e+00"
            })
        })
        .collect();
    serde_json::json!({ "status": "success", "data": { "alerts": alerts } }).to_string()
}

async fn handle(State(model): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(Body::new(body), 1 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let answer = {
        let mut model = model.lock().expect("fake HTTP lock");
        model.received.push(Received {
            method: parts.method.to_string(),
            path: path.clone(),
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body,
        });
        model.answers.get(&path).cloned()
    };
    let answer = answer.unwrap_or(Answer {
        status: 200,
        body: b"{}".to_vec(),
        delay: Duration::ZERO,
    });
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}
