//! TLS from PEM files: a CA as the only trust roots, a client certificate and key for mutual
//! TLS; every file is checked when the client is built, and errors name the file. A configured
//! server name (the certificate is verified for it instead of the URL's host) or
//! `insecure_skip_verify` take a rustls configuration of their own.

use std::fs;
use std::path::Path;

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::BuildError;
use super::messages::error_chain;
use crate::tls_verify::handshake_signatures;

/// PEM files for HTTPS; all `None` is plain reqwest defaults.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TlsFiles<'a> {
    /// CA certificate(s) used as the only trust roots.
    pub(crate) ca_file: Option<&'a Path>,
    /// Client certificate chain for mutual TLS (needs `key_file` too).
    pub(crate) cert_file: Option<&'a Path>,
    /// Private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key_file: Option<&'a Path>,
    /// The name the server's certificate is verified against instead of the URL's host.
    pub(crate) server_name: Option<&'a str>,
    /// Accept any server certificate (signatures are still checked).
    pub(crate) insecure_skip_verify: bool,
}

impl TlsFiles<'_> {
    /// Loads the files (each checked the way rustls will use it) into `builder`.
    pub(super) fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, BuildError> {
        if self.server_name.is_some() || self.insecure_skip_verify {
            return Ok(builder.tls_backend_preconfigured(self.rustls_config()?));
        }
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

impl TlsFiles<'_> {
    /// A rustls configuration whose verifier checks the certificate against `server_name`
    /// (trust roots: the CA file, else the platform's), or accepts any certificate when
    /// `insecure_skip_verify`.
    fn rustls_config(&self) -> Result<rustls::ClientConfig, BuildError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config_error = |e: rustls::Error| BuildError::Config(format!("TLS: {e}"));
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(AnyCertificate(provider.clone()))
        } else {
            let inner: Arc<dyn ServerCertVerifier> = match self.ca_file {
                Some(ca) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in parse_certs("CA", ca, &read_tls_file("CA", ca)?)? {
                        roots.add(c).map_err(|e| {
                            tls_file_error("CA", ca, format!("unusable CA certificate: {e}"))
                        })?;
                    }
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| BuildError::Config(format!("TLS: {e}")))?
                }
                None => Arc::new(
                    rustls_platform_verifier::Verifier::new(provider.clone())
                        .map_err(config_error)?,
                ),
            };
            match self.server_name {
                Some(name) => Arc::new(NamedServer {
                    inner,
                    name: ServerName::try_from(name.to_owned()).map_err(|e| {
                        BuildError::Config(format!("TLS server_name {name:?}: {e}"))
                    })?,
                }),
                None => inner,
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match (self.cert_file, self.key_file) {
            (Some(cert), Some(key)) => {
                let (certs, key_der) = load_key_pair(cert, key)?;
                builder
                    .with_client_auth_cert(certs, key_der)
                    .map_err(|e| tls_file_error("key", key, e.to_string()))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(BuildError::Config(
                "TLS cert_file and key_file must be given together".into(),
            )),
        }
    }
}

/// Verifies the server's certificate for a configured name instead of the URL's host.
#[derive(Debug)]
struct NamedServer {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    handshake_signatures!(inner: inner);
}

/// `insecure_skip_verify`: any certificate is accepted; the handshake signatures are still
/// checked (the peer holds the key of the certificate it shows).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!(provider: 0);
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

/// The certificate chain of `cert` and the private key of `key`, checked to belong together.
type KeyPair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Reads `cert` and `key` (PEM) and checks that the key is usable and belongs to the
/// certificate, before any connection.
fn load_key_pair(cert: &Path, key: &Path) -> Result<KeyPair, BuildError> {
    let certs = parse_certs("certificate", cert, &read_tls_file("certificate", cert)?)?;
    let key_pem = read_tls_file("key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| tls_file_error("key", key, format!("no usable PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs.clone(), key_der.clone_key(), &provider).map_err(
        |e| {
            let reason = format!("does not match certificate {}: {e}", cert.display());
            tls_file_error("key", key, reason)
        },
    )?;
    Ok((certs, key_der))
}

/// The client identity of `cert` and `key`, checked to belong together.
fn load_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, BuildError> {
    load_key_pair(cert, key)?;
    let cert_pem = read_tls_file("certificate", cert)?;
    let key_pem = read_tls_file("key", key)?;
    let mut both = cert_pem;
    both.push(b'\n');
    both.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&both).map_err(|e| tls_file_error("key", key, error_chain(&e)))
}
