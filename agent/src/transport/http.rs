//! Bounded HTTP/1.1 endpoints (`/metrics`, FleetLock) over hyper 1: limits, TLS, the access check.
//!
//! One listener per endpoint set. Every connection: at most
//! `max_connections` at once (more are closed unanswered), TLS with this
//! host's certificate when the cluster has `[tls]` (a client certificate of
//! the CA is asked for but optional, see `TlsMaterial::http`), one request
//! (no keep-alive), a request head of at most
//! [`MAX_HTTP_HEAD_BYTES`] read within [`HTTP_READ_TIMEOUT`], a body of at
//! most `max_body` bytes, the whole exchange within
//! [`HTTP_EXCHANGE_TIMEOUT`]. Before an endpoint runs, its path must be one
//! this listener serves (404) and the caller must pass
//! `rules::access::permit_http` (403): the same rule table idea as
//! `server::auth` for gRPC. Errors are written in the endpoint's own format.
//!
//! Plain hyper, not axum: two fixed paths per listener need no router, and
//! hyper 1 comes with tonic already.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::conn::client_identity;
use super::tls::TlsMode;
use super::TransportError;
use crate::rules::access::{permit_http, HttpCaller, HttpEndpoint};
use crate::rules::limits::{HTTP_EXCHANGE_TIMEOUT, HTTP_READ_TIMEOUT, MAX_HTTP_HEAD_BYTES};
use crate::rules::networks::{network_allowed, Cidr};

/// An answer's body: always whole (metrics text, a JSON object).
pub type Body = Full<Bytes>;

/// An endpoint's answer, computed asynchronously.
pub type Answer = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// What one listener serves.
pub trait Endpoints: Send + Sync + 'static {
    /// For log lines: `metrics`, `fleetlock`.
    fn name(&self) -> &'static str;
    /// The endpoints at this listener; any other path is 404.
    fn served(&self) -> &[HttpEndpoint];
    /// Answers a request the access check let through; its body read whole.
    fn answer(
        self: Arc<Self>,
        endpoint: HttpEndpoint,
        request: Request<Bytes>,
        caller: HttpCaller,
    ) -> Answer;
    /// An error in this endpoint set's format; `kind` is a short, fixed word.
    fn error(&self, status: StatusCode, kind: &'static str, message: String) -> Response<Body>;
}

/// Where and how a listener serves.
pub struct HttpOptions {
    pub address: SocketAddr,
    /// TLS with this host's certificate (`Mutual`), or plaintext (`Insecure`).
    pub tls: TlsMode,
    /// Client networks besides loopback (`HttpCaller::network_allowed`).
    pub allow_networks: Vec<Cidr>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request body read.
    pub max_body: usize,
}

/// A running listener; stops when dropped.
pub struct HttpServer {
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds `options.address` and serves `endpoints` there until dropped.
    pub async fn start(
        options: HttpOptions,
        endpoints: Arc<dyn Endpoints>,
    ) -> Result<HttpServer, TransportError> {
        let address = options.address;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| TransportError::Listen { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| TransportError::Listen { address, source })?;
        let scheme = if options.tls.is_insecure() {
            "http"
        } else {
            "https"
        };
        info!("{} at {scheme}://{address}", endpoints.name());
        let task = tokio::spawn(accept_loop(listener, Arc::new(options), endpoints));
        Ok(HttpServer { task })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    options: Arc<HttpOptions>,
    endpoints: Arc<dyn Endpoints>,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let name = endpoints.name();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                warn!("{name}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("{name}: {peer}: too many connections, closed");
            continue;
        };
        let options = options.clone();
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let served = tokio::time::timeout(
                HTTP_EXCHANGE_TIMEOUT,
                connection(stream, peer, &options, endpoints),
            );
            if served.await.is_err() {
                debug!("{name}: {peer}: timed out");
            }
        });
    }
}

/// One connection: the TLS handshake if any, then one HTTP/1.1 exchange.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    options: &HttpOptions,
    endpoints: Arc<dyn Endpoints>,
) {
    let name = endpoints.name();
    let network_allowed = network_allowed(peer.ip(), &options.allow_networks);
    match &options.tls {
        TlsMode::Insecure => {
            let caller = HttpCaller {
                identity: None,
                insecure: true,
                network_allowed,
            };
            exchange(tcp, peer, caller, options.max_body, endpoints).await
        }
        TlsMode::Mutual(state) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(state.current().http.clone());
            let stream = match tokio::time::timeout(HTTP_READ_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return debug!("{name}: {peer}: TLS handshake failed: {e}"),
                Err(_) => return debug!("{name}: {peer}: no TLS handshake in time"),
            };
            let caller = HttpCaller {
                identity: client_identity(stream.get_ref().1),
                insecure: false,
                network_allowed,
            };
            exchange(stream, peer, caller, options.max_body, endpoints).await
        }
    }
}

async fn exchange<S>(
    stream: S,
    peer: SocketAddr,
    caller: HttpCaller,
    max_body: usize,
    endpoints: Arc<dyn Endpoints>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let name = endpoints.name();
    let service = hyper::service::service_fn(move |request| {
        let endpoints = endpoints.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(serve_one(request, peer, caller, max_body, endpoints).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(false)
        .max_buf_size(MAX_HTTP_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(HTTP_READ_TIMEOUT);
    if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
        debug!("{name}: {peer}: {e}");
    }
}

/// Path, access check, bounded body, then the endpoint.
async fn serve_one(
    request: Request<Incoming>,
    peer: SocketAddr,
    caller: HttpCaller,
    max_body: usize,
    endpoints: Arc<dyn Endpoints>,
) -> Response<Body> {
    let name = endpoints.name();
    let path = request.uri().path().to_string();
    let Some(endpoint) = HttpEndpoint::from_path(&path, endpoints.served()) else {
        let paths: Vec<&str> = endpoints.served().iter().map(|e| e.path()).collect();
        return endpoints.error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such path {path:?}; served here: {}", paths.join(", ")),
        );
    };
    if let Err(denied) = permit_http(&caller, endpoint) {
        warn!("{name}: {peer}: refused: {denied}");
        return endpoints.error(StatusCode::FORBIDDEN, "forbidden", denied.to_string());
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    let too_large = || {
        endpoints.error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over {max_body} bytes"),
        )
    };
    if declared.is_some_and(|length| length > max_body as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return endpoints.error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the request body: {e}"),
            )
        }
    };
    endpoints
        .clone()
        .answer(endpoint, Request::from_parts(parts, body), caller)
        .await
}
