//! TLS from PEM files: a CA as the only trust roots, a client certificate and key for mutual
//! TLS; every file is checked when the client is built, and errors name the file.

use std::fs;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::BuildError;
use super::messages::error_chain;

/// PEM files for HTTPS; all `None` is plain reqwest defaults.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TlsFiles<'a> {
    /// CA certificate(s) used as the only trust roots.
    pub(crate) ca_file: Option<&'a Path>,
    /// Client certificate chain for mutual TLS (needs `key_file` too).
    pub(crate) cert_file: Option<&'a Path>,
    /// Private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key_file: Option<&'a Path>,
}

impl TlsFiles<'_> {
    /// Loads the files (each checked the way rustls will use it) into `builder`.
    pub(super) fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, BuildError> {
        if let Some(ca) = self.ca_file {
            builder = builder.tls_certs_only(load_ca(ca)?);
        }
        match (self.cert_file, self.key_file) {
            (Some(cert), Some(key)) => Ok(builder.identity(load_identity(cert, key)?)),
            (None, None) => Ok(builder),
            (Some(cert), None) => Err(BuildError::Config(format!(
                "TLS certificate file {} given without a key file",
                cert.display()
            ))),
            (None, Some(key)) => Err(BuildError::Config(format!(
                "TLS key file {} given without a certificate file",
                key.display()
            ))),
        }
    }
}

/// A [`BuildError::TlsFile`] for `path`.
fn tls_file_error(kind: &'static str, path: &Path, reason: String) -> BuildError {
    BuildError::TlsFile {
        kind,
        path: path.to_owned(),
        reason,
    }
}

/// The bytes of a TLS file.
fn read_tls_file(kind: &'static str, path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(|e| tls_file_error(kind, path, e.to_string()))
}

/// The PEM certificates in `pem` (at least one), read from `path`.
fn parse_certs(
    kind: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file_error(kind, path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_file_error(
            kind,
            path,
            "no PEM certificate found".into(),
        ));
    }
    Ok(certs)
}

/// The CA certificates of `path`, each one usable as a trust root.
fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, BuildError> {
    let certs = parse_certs("CA", path, &read_tls_file("CA", path)?)?;
    // Check each one the way rustls will use it, so a bad CA fails here with the file's name.
    let mut store = rustls::RootCertStore::empty();
    for c in &certs {
        store
            .add(c.clone())
            .map_err(|e| tls_file_error("CA", path, format!("unusable CA certificate: {e}")))?;
    }
    certs
        .iter()
        .map(|c| {
            reqwest::Certificate::from_der(c.as_ref())
                .map_err(|e| tls_file_error("CA", path, error_chain(&e)))
        })
        .collect()
}

/// The client identity of `cert` and `key`, checked to belong together.
fn load_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, BuildError> {
    let cert_pem = read_tls_file("certificate", cert)?;
    let certs = parse_certs("certificate", cert, &cert_pem)?;
    let key_pem = read_tls_file("key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| tls_file_error("key", key, format!("no usable PEM private key: {e}")))?;
    // Check that the key is usable and belongs to the certificate before any connection.
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key_der, &provider).map_err(|e| {
        let reason = format!("does not match certificate {}: {e}", cert.display());
        tls_file_error("key", key, reason)
    })?;
    let mut both = cert_pem;
    both.push(b'\n');
    both.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&both).map_err(|e| tls_file_error("key", key, error_chain(&e)))
}
