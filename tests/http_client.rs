//! A raw HTTP/1.1 client for the tests: literal requests over TCP, or over TLS with rustls (optional client certificate).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How a test client connects: plaintext, or TLS trusting `ca` and showing
/// `identity` (certificate and key files) if any.
#[derive(Clone)]
pub enum Client {
    Plain,
    Tls(Arc<rustls::ClientConfig>),
}

impl Client {
    /// TLS trusting the CA in `ca`, with the client certificate `cert`/`key` when given.
    pub fn tls(ca: &Path, identity: Option<(&Path, &Path)>) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
            roots.add(cert.expect("CA certificate")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .expect("read certificate")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certificate");
                let key = PrivateKeyDer::from_pem_file(key).expect("read key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client certificate")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client::Tls(Arc::new(config))
    }

    /// Sends `request` as is to `address` and reads the answer to the end
    /// (every request here says `Connection: close`, and the servers answer
    /// one request per connection).
    pub fn exchange(&self, address: SocketAddr, request: &[u8]) -> std::io::Result<String> {
        let mut tcp = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
        let mut answer = Vec::new();
        match self {
            Client::Plain => {
                tcp.write_all(request)?;
                tcp.read_to_end(&mut answer)?;
            }
            Client::Tls(config) => {
                let name = ServerName::IpAddress(address.ip().into());
                let connection = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(std::io::Error::other)?;
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                tls.write_all(request)?;
                tls.flush()?;
                // A server that closes without close_notify is an EOF here.
                match tls.read_to_end(&mut answer) {
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }
}

/// The status code and body of an answer.
pub fn status_and_body(answer: &str) -> (u16, String) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
