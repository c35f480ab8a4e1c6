//! `baton cert`: makes the cluster CA and the certificates of voters, hosts and admins; shows one.
//!
//! Keys are ECDSA P-256, written 0600. A certificate names its holder in the
//! common name and its role in a URI SAN (`baton:role:host`, see
//! `transport::certs`); a voter's also names the addresses peers dial it at.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::rules::access::Role;
use crate::rules::names::{check_holder, check_host};
use crate::transport::certs::{summarize, ROLE_URI_PREFIX};
use crate::transport::tls::read_certs;

/// Days a CA is valid unless `--days` says otherwise.
pub const CA_DAYS: u32 = 3650;
/// Days a voter, host or admin certificate is valid unless `--days` says otherwise.
pub const CERT_DAYS: u32 = 365;

/// Why a certificate could not be made or shown.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} exists; pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot make the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] crate::transport::tls::TlsError),
}

/// The files `init` and `issue` write.
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a new cluster CA in `dir`: `ca.crt`, and `ca.key` (0600).
pub fn init(dir: &Path, name: &str, days: u32, force: bool) -> Result<Written, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, days)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_pair(dir, "ca", &cert.pem(), &key.serialize_pem(), force)
}

/// Issues `name`'s certificate with `role`, signed by the CA in `dir`:
/// `NAME.crt` and `NAME.key` (0600). `addresses`: IPs or DNS names peers
/// dial (a voter needs each address it is listed under).
pub fn issue(
    dir: &Path,
    name: &str,
    role: Role,
    addresses: &[String],
    days: u32,
    force: bool,
) -> Result<Written, CertError> {
    check_holder(name).map_err(|e| CertError::Invalid(format!("name {name:?}: {e}")))?;
    if name.contains('/') || name.starts_with('.') {
        return Err(CertError::Invalid(format!(
            "name {name:?} cannot be a file name in {}",
            dir.display()
        )));
    }
    let ca_cert = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let ca_pem = read(&ca_cert)?;
    let ca_key = KeyPair::from_pem(&read(&ca_key)?)
        .map_err(|e| CertError::Invalid(format!("{}: {e}", ca_key.display())))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| CertError::Invalid(format!("{}: {e}", ca_cert.display())))?;

    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let role_uri = format!("{ROLE_URI_PREFIX}{}", role.as_str());
    params.subject_alt_names = vec![SanType::URI(role_uri.as_str().try_into()?)];
    for address in addresses {
        check_host(address).map_err(|e| CertError::Invalid(format!("--address: {e}")))?;
        let san = match address.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(address.as_str().try_into().map_err(|_| {
                CertError::Invalid(format!(
                    "address {address:?} is neither an IP nor a DNS name"
                ))
            })?),
        };
        params.subject_alt_names.push(san);
    }
    set_validity(&mut params, days)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_pair(dir, name, &cert.pem(), &key.serialize_pem(), force)
}

/// `baton cert show`: what a certificate file says, one field per line.
pub fn show(file: &Path) -> Result<String, CertError> {
    let mut out = String::new();
    for der in read_certs(file)? {
        let summary = summarize(&der).map_err(|e| CertError::Invalid(e.to_string()))?;
        let date = |seconds: i64| {
            jiff::Timestamp::from_second(seconds)
                .map_or_else(|_| seconds.to_string(), |t| t.to_string())
        };
        let now = jiff::Timestamp::now().as_second();
        let state = if summary.not_after < now {
            "EXPIRED".to_string()
        } else {
            format!("{} days left", (summary.not_after - now) / 86_400)
        };
        out.push_str(&format!(
            "name:       {}\nrole:       {}\naddresses:  {}\nvalid from: {}\nvalid to:   {} ({state})\n",
            summary.name,
            match (summary.role, summary.is_ca) {
                (Some(role), _) => role.as_str(),
                (None, true) => "certificate authority",
                (None, false) => "none (not a baton certificate)",
            },
            if summary.addresses.is_empty() {
                "-".to_string()
            } else {
                summary.addresses.join(", ")
            },
            date(summary.not_before),
            date(summary.not_after),
        ));
    }
    Ok(out)
}

/// From the start of today (UTC) for `days` days.
fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), CertError> {
    if days == 0 {
        return Err(CertError::Invalid("--days must be at least 1".into()));
    }
    let today = jiff::tz::TimeZone::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    let until = today
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .map_err(|e| CertError::Invalid(format!("--days {days}: {e}")))?;
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    params.not_before = ymd(today);
    params.not_after = ymd(until);
    Ok(())
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `DIR/STEM.crt` (0644) and `DIR/STEM.key` (0600).
fn write_pair(
    dir: &Path,
    stem: &str,
    cert: &str,
    key: &str,
    force: bool,
) -> Result<Written, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let written = Written {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    for path in [&written.cert, &written.key] {
        if path.exists() && !force {
            return Err(CertError::Exists { path: path.clone() });
        }
    }
    write_file(&written.key, key, 0o600)?;
    write_file(&written.cert, cert, 0o644)?;
    Ok(written)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), CertError> {
    let error = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Remove first: `mode` applies only when the file is created.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsFiles;
    use crate::transport::tls::TlsMaterial;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_ca_issues_certificates_that_say_who_and_what() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init(dir.path(), "test CA", 30, false).unwrap();
        let mode = std::fs::metadata(&ca.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "ca.key is private");
        assert!(matches!(
            init(dir.path(), "again", 30, false),
            Err(CertError::Exists { .. })
        ));

        let addresses = vec!["127.0.0.1".to_string(), "cp-1.example.com".to_string()];
        let voter = issue(dir.path(), "cp-1", Role::Voter, &addresses, 10, false).unwrap();
        let summary = summarize(&read_certs(&voter.cert).unwrap()[0]).unwrap();
        assert_eq!(summary.name, "cp-1");
        assert_eq!(summary.role, Some(Role::Voter));
        assert_eq!(summary.addresses, addresses);
        let days = (summary.not_after - summary.not_before) / 86_400;
        assert_eq!(days, 10);

        // The pair loads as this host's TLS material.
        let files = TlsFiles {
            ca: ca.cert.clone(),
            cert: voter.cert.clone(),
            key: voter.key.clone(),
        };
        let material = TlsMaterial::load(&files).expect("loads");
        assert_eq!(material.own.name, "cp-1");

        let shown = show(&voter.cert).unwrap();
        assert!(
            shown.contains("role:       voter") && shown.contains("127.0.0.1"),
            "{shown}"
        );
        assert!(show(&ca.cert).unwrap().contains("certificate authority"));
    }

    #[test]
    fn bad_names_and_missing_cas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            issue(dir.path(), "h1", Role::Host, &[], 10, false),
            Err(CertError::Read { .. })
        ));
        init(dir.path(), "ca", 30, false).unwrap();
        for bad in ["", "a b", "localhost", "../x"] {
            assert!(
                issue(dir.path(), bad, Role::Host, &[], 10, false).is_err(),
                "{bad:?}"
            );
        }
        assert!(issue(
            dir.path(),
            "h1",
            Role::Host,
            &["bad name!".into()],
            10,
            false
        )
        .is_err());
        assert!(issue(dir.path(), "h1", Role::Host, &[], 0, false).is_err());
    }
}
