//! The metrics endpoint: `GET /metrics` (Prometheus or OpenMetrics text), bounded HTTP/1.1.
//!
//! Plaintext on purpose (a Prometheus scraper); the config allows only a
//! loopback address unless `[metrics] allow_remote = true`. Each scrape
//! builds a fresh registry from the [`Source`]s (the voter's and the host
//! agent's), so gauges are read from the live state, never cached.
//! Bounds: one request per connection, a request head of at most
//! [`MAX_HEAD_BYTES`], [`MAX_CONNECTIONS`] connections at once (more are
//! closed at once), [`READ_TIMEOUT`] for the head and [`CONNECTION_TIMEOUT`]
//! for the whole exchange.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::TransportError;

/// The path scrapers ask for; every other path is 404.
pub const METRICS_PATH: &str = "/metrics";

/// The largest request head read (hyper's smallest buffer).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Scrapes served at once; a connection beyond this is closed unanswered.
pub const MAX_CONNECTIONS: usize = 16;

/// Time for a client to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time for the whole exchange, request to last byte of the answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// The OpenMetrics text format, which Prometheus asks for first.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Prometheus text format (0.0.4), for clients that do not ask for
/// OpenMetrics (curl, `promtool check metrics`).
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Adds its metrics to a scrape's registry.
pub type Source = Arc<dyn Fn(&mut Registry) + Send + Sync>;

/// The metrics listener; stops when dropped.
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `address` and serves the `sources` there until dropped.
    pub async fn start(
        address: SocketAddr,
        sources: Vec<Source>,
    ) -> Result<MetricsServer, TransportError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| TransportError::Listen { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| TransportError::Listen { address, source })?;
        info!("metrics at http://{address}{METRICS_PATH}");
        let sources: Arc<[Source]> = sources.into();
        let task = tokio::spawn(accept_loop(listener, sources));
        Ok(MetricsServer { task })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The text of one scrape: every source's metrics, then `# EOF`.
pub fn render(sources: &[Source]) -> String {
    let mut registry = Registry::default();
    for source in sources {
        source(&mut registry);
    }
    let mut text = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in
    // a metric, and a partial answer is still better than none.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        warn!("metrics: cannot encode: {e}");
    }
    text
}

async fn accept_loop(listener: TcpListener, sources: Arc<[Source]>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("metrics: {peer}: too many connections, closed");
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(answer(&request, &sources)) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.keep_alive(false)
                .max_buf_size(MAX_HEAD_BYTES)
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!("metrics: {peer}: {e}"),
                Err(_) => debug!("metrics: {peer}: timed out"),
            }
        });
    }
}

/// The answer to one request: the metrics, 404 or 405.
fn answer(request: &Request<Incoming>, sources: &[Source]) -> Response<Full<Bytes>> {
    if request.uri().path() != METRICS_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let openmetrics = request
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    let text = render(sources);
    let (body, content_type) = if openmetrics {
        (text, CONTENT_TYPE_OPENMETRICS)
    } else {
        (openmetrics_to_text_format(&text), CONTENT_TYPE_TEXT)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The Prometheus text format of what prometheus-client encodes as
/// OpenMetrics: counter families take their samples' `_total` name in
/// `# HELP` and `# TYPE`, and `# UNIT` and `# EOF` go (the text format has
/// neither). Enough for the counters and gauges registered here.
pub fn openmetrics_to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_in_the_text_format() {
        let openmetrics = "# HELP a_grants Grants.\n# TYPE a_grants counter\na_grants_total{group=\"g\"} 3\n\
                           # HELP a_held Held.\n# TYPE a_held gauge\n# UNIT a_held seconds\na_held 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text_format(openmetrics),
            "# HELP a_grants_total Grants.\n# TYPE a_grants_total counter\na_grants_total{group=\"g\"} 3\n\
             # HELP a_held Held.\n# TYPE a_held gauge\na_held 1.5\n"
        );
    }
}
