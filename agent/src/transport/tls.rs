//! Mutual TLS material: CA, certificate and key from PEM files, the rustls configs, reloading.
//!
//! Every connection is verified against the cluster CA in both directions;
//! servers present a certificate for their address, clients present
//! theirs. The files are read again when they change (and on demand, for
//! SIGHUP): new connections use the new material, open ones keep theirs, so
//! a held lease and a running watch stream survive a rotation.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::certs::{summarize, CertSummary};
use crate::config::TlsFiles;
use crate::locks::{LockOrRecover, ReadWriteOrRecover};

/// ALPN of gRPC: HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// Why the TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("TLS setup with {cert} and {key}: {source}")]
    Rustls {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("client verifier for {ca}: {what}")]
    Verifier { ca: PathBuf, what: String },
}

/// The material of one generation of the files.
pub struct TlsMaterial {
    pub server: Arc<ServerConfig>,
    /// The HTTP/1.1 endpoints' config (`transport::http`): the same
    /// certificate, ALPN `http/1.1`, a client certificate of the CA asked
    /// for but optional (Zincati has none; the access rule decides).
    pub http: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// This host's certificate, as read.
    pub own: CertSummary,
}

/// The one crypto provider: ring (kube uses it too; two providers in one
/// process make rustls refuse to choose).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Every certificate in a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no certificate (expected PEM)"));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        invalid(
            path,
            format!("holds no readable private key (expected PEM): {e}"),
        )
    })
}

impl TlsMaterial {
    /// Reads the three files and builds both configs.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&files.ca)? {
            roots
                .add(ca)
                .map_err(|e| invalid(&files.ca, format!("not a usable CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let chain = read_certs(&files.cert)?;
        let own = summarize(&chain[0]).map_err(|e| invalid(&files.cert, e.to_string()))?;
        if own.role.is_none() {
            return Err(invalid(
                &files.cert,
                "names no baton role; issue it with `baton cert issue NAME --role ...`",
            ));
        }
        let key = read_key(&files.key)?;
        let rustls_error = |source| TlsError::Rustls {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };

        // One server config per kind of listener: gRPC wants a client
        // certificate (mutual TLS, h2); the HTTP endpoints ask for one but
        // let the access rule decide (Zincati has none; http/1.1).
        let server_config = |client_required: bool, alpn: &[u8]| {
            let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
            let builder = if client_required {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            let verifier = builder.build().map_err(|e| TlsError::Verifier {
                ca: files.ca.clone(),
                what: e.to_string(),
            })?;
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(rustls_error)?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(rustls_error)?;
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok::<_, TlsError>(config)
        };
        let server = server_config(true, ALPN_H2)?;
        let http = server_config(false, b"http/1.1")?;

        let mut client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(rustls_error)?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];

        Ok(TlsMaterial {
            server: Arc::new(server),
            http: Arc::new(http),
            client: Arc::new(client),
            own,
        })
    }
}

/// How this process talks to the cluster.
#[derive(Clone)]
pub enum TlsMode {
    /// Mutual TLS with material that is reloaded when its files change.
    Mutual(Arc<TlsState>),
    /// Plaintext, no identities (`[tls] insecure = true`).
    Insecure,
}

impl TlsMode {
    pub fn is_insecure(&self) -> bool {
        matches!(self, TlsMode::Insecure)
    }
}

/// What a file looked like when it was read: a change means "read again".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// The files and the material last read from them.
pub struct TlsState {
    files: TlsFiles,
    current: RwLock<Arc<TlsMaterial>>,
    stamps: Mutex<Vec<Option<Stamp>>>,
}

impl TlsState {
    /// Reads the files once; an error here is a start-up error.
    pub fn load(files: &TlsFiles) -> Result<Arc<TlsState>, TlsError> {
        let material = TlsMaterial::load(files)?;
        Ok(Arc::new(TlsState {
            stamps: Mutex::new(Self::stamps(files)),
            files: files.clone(),
            current: RwLock::new(Arc::new(material)),
        }))
    }

    fn stamps(files: &TlsFiles) -> Vec<Option<Stamp>> {
        [&files.ca, &files.cert, &files.key]
            .into_iter()
            .map(|path| stamp(path))
            .collect()
    }

    /// The files this state reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The material new connections use.
    pub fn current(&self) -> Arc<TlsMaterial> {
        self.current.read_or_recover().clone()
    }

    /// Reads the files again if any of them changed since the last read.
    /// `Ok(true)`: new material is in use. On an error the old material
    /// stays in use (a half-written file must not take the host off the
    /// cluster); the caller logs it and tries again later.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = Self::stamps(&self.files);
        let mut stamps = self.stamps.lock_or_recover();
        if *stamps == now {
            return Ok(false);
        }
        let material = TlsMaterial::load(&self.files)?;
        *stamps = now;
        *self.current.write_or_recover() = Arc::new(material);
        Ok(true)
    }

    /// Reads the files again whether or not they changed (SIGHUP).
    pub fn reload(&self) -> Result<(), TlsError> {
        let material = TlsMaterial::load(&self.files)?;
        *self.stamps.lock_or_recover() = Self::stamps(&self.files);
        *self.current.write_or_recover() = Arc::new(material);
        Ok(())
    }
}
