//! `[tls]`: the cluster CA, this host's certificate and key, or plaintext; and its validation.

use std::path::PathBuf;

use super::inputs::TlsInputs;
use super::validate::Validator;
use super::ConfigError;

const DEFAULT_CA: &str = "/etc/baton/tls/ca.crt";
const DEFAULT_CERT: &str = "/etc/baton/tls/host.crt";
const DEFAULT_KEY: &str = "/etc/baton/tls/host.key";

/// `[tls]`: how this host talks to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSettings {
    /// Mutual TLS against the cluster CA (the default).
    Mutual(TlsFiles),
    /// `insecure = true`: plaintext, no identities; said at every start.
    Insecure,
}

/// The PEM files of mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ca`: the cluster CA certificate (default `/etc/baton/tls/ca.crt`).
    pub ca: PathBuf,
    /// `cert`: this host's certificate (default `/etc/baton/tls/host.crt`).
    pub cert: PathBuf,
    /// `key`: its private key (default `/etc/baton/tls/host.key`).
    pub key: PathBuf,
}

impl Default for TlsFiles {
    /// The default paths (`/etc/baton/tls/{ca,host}.crt`, `host.key`).
    fn default() -> Self {
        TlsFiles {
            ca: PathBuf::from(DEFAULT_CA),
            cert: PathBuf::from(DEFAULT_CERT),
            key: PathBuf::from(DEFAULT_KEY),
        }
    }
}

impl Validator<'_> {
    pub(super) fn tls(&self, inputs: TlsInputs) -> Result<TlsSettings, ConfigError> {
        if let Some(insecure) = &inputs.insecure {
            if insecure.value {
                // Files next to insecure = true would suggest TLS is on.
                for (at, key) in [
                    (&inputs.ca, "tls.ca"),
                    (&inputs.cert, "tls.cert"),
                    (&inputs.key, "tls.key"),
                ] {
                    if let Some(at) = at {
                        let message = format!(
                            "set together with tls.insecure = true ({}); remove one of them",
                            self.location(insecure)
                        );
                        return Err(self.error(at, key, message));
                    }
                }
                return Ok(TlsSettings::Insecure);
            }
        }
        Ok(TlsSettings::Mutual(TlsFiles {
            ca: self.path_or(inputs.ca, "tls.ca", DEFAULT_CA)?,
            cert: self.path_or(inputs.cert, "tls.cert", DEFAULT_CERT)?,
            key: self.path_or(inputs.key, "tls.key", DEFAULT_KEY)?,
        }))
    }
}
