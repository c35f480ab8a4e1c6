//! Connections: the TLS acceptor behind the gRPC server, the TLS connector behind every channel.
//!
//! The acceptor shakes hands off the accept loop (a slow or hostile peer
//! cannot stall it), reads the client's certificate once, and hands tonic a
//! connection whose [`PeerInfo`] reaches every request. The connector
//! verifies the voter's certificate against its address and remembers
//! when each voter's certificate expires.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::Uri;

use super::certs::summarize;
use super::tls::TlsMode;
use crate::clock::Instant;
use crate::locks::LockOrRecover;
use crate::rules::access::Identity;

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the gRPC server.
const ACCEPT_QUEUE: usize = 64;

/// Failed handshakes are logged at most once per this (a peer that keeps
/// trying must not flood the journal); the others are counted.
const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(1);

/// Logs failed handshakes, at most one line per [`HANDSHAKE_LOG_EVERY`].
#[derive(Clone, Default)]
struct HandshakeLog(Arc<Mutex<(Option<Instant>, u64)>>);

impl HandshakeLog {
    fn failed(&self, remote: SocketAddr, why: &str) {
        let mut state = self.0.lock_or_recover();
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < HANDSHAKE_LOG_EVERY) {
            *suppressed += 1;
            return;
        }
        let more = match std::mem::take(suppressed) {
            0 => String::new(),
            n => format!(" ({n} more failed handshakes since the last line)"),
        };
        *last = Some(Instant::now());
        tracing::warn!("TLS handshake with {remote} failed: {why}{more}");
    }
}

/// What the server knows of a connection's peer; in every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    /// The identity its certificate proves; None without TLS, or for a
    /// certificate of the CA that names no baton role.
    pub identity: Option<Identity>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// One accepted connection, plain or TLS.
pub struct ServerConn {
    stream: Stream<tokio_rustls::server::TlsStream<TcpStream>>,
    info: PeerInfo,
}

impl Connected for ServerConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// A TCP stream with or without TLS on it.
pub enum Stream<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    /// A connection of a [`super::Network::Custom`] network (plaintext).
    Other(super::BoxedIo),
}

/// Calls `$method` on the inner stream, plain or TLS.
macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            Stream::Plain(s) => Pin::new(s).$method($($arg),*),
            Stream::Tls(s) => Pin::new(&mut **s).$method($($arg),*),
            Stream::Other(s) => Pin::new(s).$method($($arg),*),
        }
    };
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, poll_read(cx, buf))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Other(s) => s.is_write_vectored(),
        }
    }
}

impl AsyncRead for ServerConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` for the gRPC server, shaking hands
/// with TLS when `tls` says so. Ends when the server drops the stream.
pub fn accept(
    listener: TcpListener,
    tls: TlsMode,
) -> ReceiverStream<Result<ServerConn, io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    let log = HandshakeLog::default();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: say so, keep serving.
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            match &tls {
                TlsMode::Insecure => {
                    let conn = ServerConn {
                        stream: Stream::Plain(tcp),
                        info: PeerInfo {
                            remote: Some(remote),
                            identity: None,
                            tls: false,
                        },
                    };
                    let _ = tx.send(Ok(conn)).await;
                }
                TlsMode::Mutual(state) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(state.current().server.clone());
                    let log = log.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let identity = client_identity(stream.get_ref().1);
                                let conn = ServerConn {
                                    stream: Stream::Tls(Box::new(stream)),
                                    info: PeerInfo {
                                        remote: Some(remote),
                                        identity,
                                        tls: true,
                                    },
                                };
                                let _ = tx.send(Ok(conn)).await;
                            }
                            Ok(Err(e)) => log.failed(remote, &explain_server_handshake(&e)),
                            Err(_) => log.failed(
                                remote,
                                &format!("no handshake within {HANDSHAKE_TIMEOUT:?}; dropped"),
                            ),
                        }
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The identity the client's certificate proves, if it showed one of the
/// CA that names a baton role (the gRPC and the HTTP acceptors).
pub(super) fn client_identity(connection: &rustls::ServerConnection) -> Option<Identity> {
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| summarize(cert).ok())
        .and_then(|summary| summary.identity())
}

/// Accepts the connections of a [`super::Network::Custom`] listener for
/// the gRPC server: plaintext, no identities. Ends when the server drops
/// the stream or the listener ends.
pub fn accept_other(
    mut incoming: super::Incoming,
) -> ReceiverStream<Result<ServerConn, io::Error>> {
    use futures::StreamExt;
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = incoming.next() => accepted,
                () = tx.closed() => return,
            };
            let conn = match accepted {
                Some(Ok((stream, remote))) => ServerConn {
                    stream: Stream::Other(stream),
                    info: PeerInfo {
                        remote: Some(remote),
                        identity: None,
                        tls: false,
                    },
                },
                Some(Err(e)) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    continue;
                }
                None => return,
            };
            let _ = tx.send(Ok(conn)).await;
        }
    });
    ReceiverStream::new(rx)
}

/// A failed server handshake in one line that says what probably happened.
fn explain_server_handshake(error: &io::Error) -> String {
    let text = error.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("{text} (the client speaks plaintext; this voter requires TLS)")
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!("{text} (the client's certificate is not from this cluster's CA)")
    } else if text.contains("Expired") {
        format!("{text} (the client's certificate has expired)")
    } else {
        text
    }
}

/// When each voter's certificate expires, as its TLS handshakes showed
/// (address -> unix seconds).
#[derive(Clone, Default)]
pub struct PeerCerts(Arc<Mutex<HashMap<String, i64>>>);

impl PeerCerts {
    fn record(&self, address: &str, not_after: i64) {
        self.0
            .lock_or_recover()
            .insert(address.to_string(), not_after);
    }

    /// When the certificate of the voter at `address` expires, if seen.
    pub fn expiry(&self, address: &str) -> Option<i64> {
        self.0.lock_or_recover().get(address).copied()
    }
}

/// The connector of every channel: TCP, then TLS when configured.
#[derive(Clone)]
pub struct Connector {
    pub(super) tls: TlsMode,
    pub(super) peers: PeerCerts,
    pub(super) network: super::Network,
}

type ClientStream = Stream<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<ClientStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(443);
            // An IPv6 host comes in brackets.
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            if let super::Network::Custom(links) = &this.network {
                if !this.tls.is_insecure() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "TLS is not offered over a custom (simulated) network",
                    ));
                }
                let stream = links.connect(bare, port).await?;
                return Ok(TokioIo::new(Stream::Other(stream)));
            }
            let tcp = TcpStream::connect((bare.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = match &this.tls {
                TlsMode::Insecure => Stream::Plain(tcp),
                TlsMode::Mutual(state) => {
                    let name = ServerName::try_from(bare.clone()).map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("{bare}: {e}"))
                    })?;
                    let connector =
                        tokio_rustls::TlsConnector::from(state.current().client.clone());
                    let stream = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| io::Error::new(e.kind(), explain_client_handshake(&e)))?;
                    if let Some(cert) = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                    {
                        if let Ok(summary) = summarize(cert) {
                            this.peers
                                .record(&format!("{host}:{port}"), summary.not_after);
                        }
                    }
                    Stream::Tls(Box::new(stream))
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}

/// A failed client handshake in one line that says what probably happened.
fn explain_client_handshake(error: &io::Error) -> String {
    let text = error.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("TLS handshake failed: {text} (the voter speaks plaintext: is it running with [tls] insecure = true?)")
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!(
            "TLS handshake failed: {text} (the voter's certificate is not from this cluster's CA)"
        )
    } else if text.contains("NotValidForName") {
        format!("TLS handshake failed: {text} (the voter's certificate does not name the address dialed; issue it with --address)")
    } else {
        format!("TLS handshake failed: {text}")
    }
}
