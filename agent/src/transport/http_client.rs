//! Outgoing plain HTTP(S) calls (Prometheus alerts, webhooks): one request, a timeout, a size cap.
//!
//! hyper's client through hyper-util's pooled `Client`, https by
//! hyper-rustls with the ring provider and the system's root certificates
//! (the same stack kube's client uses, so nothing new is built). Every call
//! is bounded by its timeout (connect, send and the whole body) and by the
//! largest body it reads; a bigger answer is an error, not an allocation.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot load the system's root certificates for https: {0}")]
    Roots(std::io::Error),
    #[error("{method} {url}: {source}")]
    Request {
        method: Method,
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        method: Method,
        url: String,
        timeout: Duration,
    },
    #[error("{method} {url}: answer larger than {limit} bytes")]
    TooLarge {
        method: Method,
        url: String,
        limit: usize,
    },
    #[error("{method} {url}: reading the answer failed: {reason}")]
    Body {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: HTTP {status}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
    },
}

/// A successful answer (2xx): its body, at most the limit asked for.
#[derive(Debug)]
pub struct Answer {
    pub body: Bytes,
}

/// A client for plain HTTP and https URLs; cheap to clone (one pool).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    /// A client that speaks http and https (rustls, ring, system roots).
    pub fn new() -> Result<HttpClient, HttpError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map_err(HttpError::Roots)?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HttpClient { client })
    }

    /// `GET url` with `Accept: application/json`.
    pub async fn get_json(
        &self,
        url: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<Answer, HttpError> {
        self.call(Method::GET, url, None, timeout, limit).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
        limit: usize,
    ) -> Result<Answer, HttpError> {
        let body = Bytes::from(body.to_string());
        self.call(Method::POST, url, Some(body), timeout, limit)
            .await
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        timeout: Duration,
        limit: usize,
    ) -> Result<Answer, HttpError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("baton/", env!("CARGO_PKG_VERSION"))),
            );
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| HttpError::Url {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|source| HttpError::Request {
                        method: method.clone(),
                        url: url.to_string(),
                        source,
                    })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge {
                            method: method.clone(),
                            url: url.to_string(),
                            limit,
                        }
                    } else {
                        HttpError::Body {
                            method: method.clone(),
                            url: url.to_string(),
                            reason: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            if !status.is_success() {
                return Err(HttpError::Status {
                    method: method.clone(),
                    url: url.to_string(),
                    status,
                });
            }
            Ok(Answer { body })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_elapsed) => Err(HttpError::Timeout {
                method,
                url: url.to_string(),
                timeout,
            }),
        }
    }
}
