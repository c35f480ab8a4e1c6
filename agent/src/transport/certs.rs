//! What a baton certificate says: its holder's name, role, addresses and expiry.
//!
//! The name is the subject's common name (any holder name, UTF-8); the role
//! is a URI SAN `baton:role:<voter|host|admin>`; DNS and IP SANs are the
//! addresses a voter serves at. `baton cert issue` writes exactly this.

use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::rules::access::{Identity, Role};

/// The URI SAN prefix that carries the role.
pub const ROLE_URI_PREFIX: &str = "baton:role:";

/// A certificate as baton reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Common name: the holder (`node.name`) or the CA's name.
    pub name: String,
    /// The role, when the certificate carries one (a CA has none).
    pub role: Option<Role>,
    /// DNS names and IP addresses (SANs).
    pub addresses: Vec<String>,
    /// Unix seconds: valid from / until.
    pub not_before: i64,
    pub not_after: i64,
    /// Whether it may sign other certificates.
    pub is_ca: bool,
}

impl CertSummary {
    /// The identity this certificate proves, when it names a holder and a role.
    pub fn identity(&self) -> Option<Identity> {
        Some(Identity {
            name: self.name.clone(),
            role: self.role?,
        })
    }
}

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a readable X.509 certificate: {0}")]
pub struct CertError(String);

/// Reads a DER certificate.
pub fn summarize(der: &CertificateDer<'_>) -> Result<CertSummary, CertError> {
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| CertError(e.to_string()))?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut role = None;
    let mut addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                GeneralName::URI(uri) => {
                    if let Some(text) = uri.strip_prefix(ROLE_URI_PREFIX) {
                        role = Role::parse(text);
                    }
                }
                GeneralName::DNSName(dns) => addresses.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        addresses.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertSummary {
        name,
        role,
        addresses,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        is_ca: cert.is_ca(),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
