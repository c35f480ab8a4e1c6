//! The metrics endpoint: `GET /metrics` (Prometheus or OpenMetrics text) on `transport::http`.
//!
//! With `[tls]` the endpoint is HTTPS and asks for a client certificate with
//! the `monitor` (or `admin`) role (`rules::access::permit_http`); in an
//! insecure cluster it is plaintext, and the config allows only a loopback
//! address unless `[metrics] allow_remote = true`. Each scrape builds a
//! fresh registry from the [`Source`]s (the voter's and the host agent's),
//! so gauges are read from the live state, never cached. Bounds: those of
//! `transport::http`, [`MAX_METRICS_CONNECTIONS`] connections at once, no body.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tracing::warn;

use super::http::{Answer, Body, Endpoints, HttpOptions, HttpServer};
use super::tls::TlsMode;
use super::TransportError;
use crate::rules::access::{HttpCaller, HttpEndpoint};
use crate::rules::limits::MAX_METRICS_CONNECTIONS;

/// The OpenMetrics text format, which Prometheus asks for first.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Prometheus text format (0.0.4), for clients that do not ask for
/// OpenMetrics (curl, `promtool check metrics`).
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Adds its metrics to a scrape's registry.
pub type Source = Arc<dyn Fn(&mut Registry) + Send + Sync>;

/// The metrics listener; stops when dropped.
pub struct MetricsServer {
    _server: HttpServer,
}

impl MetricsServer {
    /// Binds `address` and serves the `sources` there until dropped; HTTPS
    /// with this host's certificate when `tls` is mutual.
    pub async fn start(
        address: SocketAddr,
        tls: TlsMode,
        sources: Vec<Source>,
    ) -> Result<MetricsServer, TransportError> {
        let options = HttpOptions {
            address,
            tls,
            // Who may connect is decided when binding ([metrics] allow_remote).
            allow_networks: Vec::new(),
            max_connections: MAX_METRICS_CONNECTIONS,
            max_body: 0,
        };
        let endpoints = Arc::new(MetricsEndpoints {
            sources: sources.into(),
        });
        Ok(MetricsServer {
            _server: HttpServer::start(options, endpoints).await?,
        })
    }
}

struct MetricsEndpoints {
    sources: Arc<[Source]>,
}

impl Endpoints for MetricsEndpoints {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn served(&self) -> &[HttpEndpoint] {
        &[HttpEndpoint::Metrics]
    }

    fn answer(self: Arc<Self>, _: HttpEndpoint, request: Request<Bytes>, _: HttpCaller) -> Answer {
        let response = answer(&request, &self.sources);
        Box::pin(std::future::ready(response))
    }

    fn error(&self, status: StatusCode, _: &'static str, message: String) -> Response<Body> {
        plain(status, format!("{message}\n"))
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

/// The answer to one request at `/metrics`: the metrics, or 405.
fn answer(request: &Request<Bytes>, sources: &[Source]) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
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
    let mut response = Response::new(Body::new(Bytes::from(body)));
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

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from(text)));
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
