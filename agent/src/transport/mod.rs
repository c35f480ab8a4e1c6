//! The network seam: the one place that dials voters and listens, with mutual TLS on both sides.
//!
//! Everything else receives `tonic` channels from a [`Dialer`] and serves on
//! what [`listen`] returns, so a deterministic simulation can swap both for a
//! simulated network without touching the services or raft: a [`Network`]
//! other than [`Network::Tcp`] (given to [`Dialer::over`] and
//! [`listen`]) dials and listens instead of the host's TCP stack.

pub mod certs;
mod conn;
pub mod http;
pub mod http_client;
pub mod metrics;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use conn::Connector;
pub use conn::{PeerCerts, PeerInfo, ServerConn};
use tls::TlsMode;

use crate::locks::LockOrRecover;

/// Why a channel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid voter address {address:?}: {source}")]
    Address {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("no connection to {address} within {timeout:?}")]
    ConnectTimeout { address: String, timeout: Duration },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A byte stream of a [`Network::Custom`] network.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection of a [`Network::Custom`] network.
pub type BoxedIo = Box<dyn Io>;

/// The connections a [`Network::Custom`] listener accepts, with their peers.
pub type Incoming = BoxStream<'static, std::io::Result<(BoxedIo, SocketAddr)>>;

/// A network other than the host's TCP stack: the deterministic
/// simulation's (`examples/simulate.rs`). Plaintext only.
pub trait Links: Send + Sync + 'static {
    /// A connection to `host:port`.
    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, std::io::Result<BoxedIo>>;
    /// Listens on `address`.
    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, std::io::Result<Incoming>>;
}

/// Where connections come from.
#[derive(Clone, Default)]
pub enum Network {
    /// The host's TCP stack (with TLS when the [`TlsMode`] says so): production.
    #[default]
    Tcp,
    /// Another network, in plaintext (a simulated one).
    Custom(Arc<dyn Links>),
}

/// Makes long-lived gRPC channels to `host:port` addresses and reuses them.
///
/// Channels connect lazily and reconnect by themselves (with the TLS
/// material current at that moment); connect and request timeouts bound
/// every call so a dead peer costs at most those.
#[derive(Clone)]
pub struct Dialer {
    connect_timeout: Duration,
    request_timeout: Duration,
    connector: Connector,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// HTTP/2 pings on the shared channels: (interval, timeout).
    keep_alive: Option<(Duration, Duration)>,
    /// Whether those pings also run while no call is in flight.
    ping_while_idle: bool,
}

impl Dialer {
    pub fn new(connect_timeout: Duration, request_timeout: Duration, tls: TlsMode) -> Self {
        Self {
            connect_timeout,
            request_timeout,
            connector: Connector {
                tls,
                peers: PeerCerts::default(),
                network: Network::Tcp,
            },
            channels: Arc::default(),
            keep_alive: None,
            ping_while_idle: false,
        }
    }

    /// Pings every shared channel every `interval` (also while idle) and
    /// drops a connection whose ping is not answered within `timeout`, so
    /// the next call reconnects instead of waiting on a dead TCP
    /// connection. For voters' channels to each other: hosts, many more,
    /// do without.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval, timeout));
        self.ping_while_idle = true;
        self
    }

    /// Pings a shared channel's connection only while calls are in flight
    /// on it (nothing while idle: free for thousands of hosts), and drops
    /// it when a ping goes unanswered for `timeout`: a connection whose
    /// packets vanish (a flow a firewall or NAT forgot, segments lost in a
    /// partition) is replaced by the next call instead of timing out every
    /// call on it until TCP gives up. For the host agent's lease channels;
    /// found by the simulation (`examples/simulate.rs`), where such a host
    /// held a handed-over slot unclaimed and its whole group waited.
    pub fn with_call_pings(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval, timeout));
        self.ping_while_idle = false;
        self
    }

    /// Dials through `network` instead of the host's TCP stack.
    pub fn over(mut self, network: Network) -> Self {
        self.connector.network = network;
        self
    }

    /// The request timeout every call through this dialer gets.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// When the certificates of the voters it connected to expire.
    pub fn peer_certs(&self) -> &PeerCerts {
        &self.connector.peers
    }

    /// The shared channel to `address` (`host:port`), created on first use.
    pub fn channel(&self, address: &str) -> Result<Channel, TransportError> {
        let mut channels = self.channels.lock_or_recover();
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let mut endpoint = self.endpoint(address)?.timeout(self.request_timeout);
        if let Some((interval, timeout)) = self.keep_alive {
            endpoint = endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(self.ping_while_idle);
        }
        let channel = endpoint.connect_with_connector_lazy(self.connector.clone());
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// A channel for long streams (Watch): no request timeout, which would
    /// cut the stream, but the same connect timeout and keep-alives.
    pub fn stream_channel(&self, address: &str) -> Result<Channel, TransportError> {
        Ok(self
            .endpoint(address)?
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(self.connector.clone()))
    }

    /// A new channel to `address`, connected now (within the connect
    /// timeout): for a command line that wants to know at once whether a
    /// voter answers, and try the next one if not.
    pub async fn connect(&self, address: &str) -> Result<Channel, TransportError> {
        let endpoint = self.endpoint(address)?.timeout(self.request_timeout);
        let connect = endpoint.connect_with_connector(self.connector.clone());
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(source)) => Err(TransportError::Connect {
                address: address.to_string(),
                source,
            }),
            Err(_) => Err(TransportError::ConnectTimeout {
                address: address.to_string(),
                timeout: self.connect_timeout,
            }),
        }
    }

    /// The endpoint every channel starts from: address and connect timeout.
    /// The scheme is `http`: TLS, when on, is the connector's job.
    fn endpoint(&self, address: &str) -> Result<Endpoint, TransportError> {
        Ok(Endpoint::from_shared(format!("http://{address}"))
            .map_err(|source| TransportError::Address {
                address: address.to_string(),
                source,
            })?
            .connect_timeout(self.connect_timeout))
    }
}

/// Binds the gRPC listener on `network` and accepts on it (with TLS when
/// `tls` says so; a [`Network::Custom`] network is plaintext only).
pub async fn listen(
    network: &Network,
    address: SocketAddr,
    tls: TlsMode,
) -> Result<ReceiverStream<Result<ServerConn, std::io::Error>>, TransportError> {
    match network {
        Network::Tcp => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| TransportError::Listen { address, source })?;
            Ok(conn::accept(listener, tls))
        }
        Network::Custom(links) => {
            if !tls.is_insecure() {
                return Err(TransportError::Listen {
                    address,
                    source: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "TLS is not offered over a custom (simulated) network",
                    ),
                });
            }
            let incoming = links
                .listen(address)
                .await
                .map_err(|source| TransportError::Listen { address, source })?;
            Ok(conn::accept_other(incoming))
        }
    }
}
