//! `tls_server_config`: the rustls server configuration (ring provider, as the crate's clients)
//! with the toolkit's semantics (`web/tls_config.go` `ConfigToTLSConfig`), and the handshake of
//! each accepted connection with the configuration current at that moment.
//!
//! `client_auth_type` maps Go's `tls.ClientAuthType`: `NoClientCert` (default), `RequestClientCert`
//! (asked, not required, not verified), `RequireAnyClientCert` (alias `RequireClientCert`:
//! required, not verified), `VerifyClientCertIfGiven`, `RequireAndVerifyClientCert` (verified
//! against the client CA). Cipher suites and curves use Go's names, mapped to what rustls'
//! ring provider implements; as in Go, `cipher_suites` orders the TLS 1.2 suites (TLS 1.3 names
//! are accepted and change nothing: TLS 1.3 suites are not configurable there).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::{FileReader, TlsServerConfig, WebConfigSource};
use crate::config::ConfigError;
use crate::http_server::TlsAccept;
use crate::tls_verify::handshake_signatures;

/// How long a client has to complete the TLS handshake after connecting.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to a plain HTTP request on the HTTPS port (Go's `net/http` sends the same).
const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// A built TLS configuration.
pub(crate) struct Built {
    /// The rustls server configuration.
    pub(crate) config: Arc<ServerConfig>,
    /// What is on, for the log.
    pub(crate) summary: String,
}

/// Go's `tls.ClientAuthType`, by the toolkit's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    No,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(s: Option<&str>) -> Result<ClientAuth, String> {
        Ok(match s.unwrap_or("") {
            "" | "NoClientCert" => ClientAuth::No,
            "RequestClientCert" => ClientAuth::Request,
            // `RequireClientCert` is kept by the toolkit for backwards compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            other => {
                return Err(format!(
                    "invalid client_auth_type {other:?} (NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            ClientAuth::No => "NoClientCert",
            ClientAuth::Request => "RequestClientCert",
            ClientAuth::RequireAny => "RequireAnyClientCert",
            ClientAuth::VerifyIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerify => "RequireAndVerifyClientCert",
        }
    }
}

const KEY: &str = "tls_server_config";

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("{KEY}.{field}"), message)
}

/// A set string (`""` counts as unset, as in Go).
fn set(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A set path, relative ones taken from `dir` (the web config file's directory).
fn set_path(p: &Option<PathBuf>, dir: &Path) -> Option<PathBuf> {
    p.as_ref().filter(|p| !p.as_os_str().is_empty()).map(|p| {
        if p.is_relative() {
            dir.join(p)
        } else {
            p.clone()
        }
    })
}

/// PEM bytes from `<field>_file` or the inline `<field>` (never both).
fn pem_source(
    inline_key: &str,
    inline: Option<&str>,
    file_key: &str,
    file: Option<PathBuf>,
    reader: &mut FileReader,
) -> Result<Option<(Vec<u8>, String)>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(err(
            inline_key,
            format!("give {inline_key} or {file_key}, not both"),
        )),
        (Some(text), None) => Ok(Some((text.as_bytes().to_vec(), file_key.to_owned()))),
        (None, Some(path)) => {
            let bytes = reader
                .read(&path)
                .map_err(|e| err(file_key, format!("{}: {e}", path.display())))?;
            Ok(Some((bytes, file_key.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// Builds the TLS configuration; `None` when TLS is off (no certificate, key, client CA or
/// client auth type set, the toolkit's `IsEnabled`).
pub(crate) fn build(
    c: &TlsServerConfig,
    dir: &Path,
    reader: &mut FileReader,
) -> Result<Option<Built>, ConfigError> {
    let cert_file = set_path(&c.cert_file, dir);
    let key_file = set_path(&c.key_file, dir);
    let ca_file = set_path(&c.client_ca_file, dir);
    let key_inline = c.key.as_ref().map(|k| k.expose()).filter(|k| !k.is_empty());
    let enabled = cert_file.is_some()
        || key_file.is_some()
        || ca_file.is_some()
        || set(&c.cert).is_some()
        || key_inline.is_some()
        || set(&c.client_ca).is_some()
        || set(&c.client_auth_type).is_some();
    if !enabled {
        return match stray_setting(c) {
            Some(field) => Err(err(
                field,
                "set, but TLS is off: give cert_file and key_file (or cert and key)",
            )),
            None => Ok(None),
        };
    }
    let provider = provider(c)?;
    let (cert_pem, cert_key) = pem_source("cert", set(&c.cert), "cert_file", cert_file, reader)?
        .ok_or_else(|| err("cert_file", "missing one of cert or cert_file"))?;
    let certs = parse_certs(&cert_pem).map_err(|e| err(&cert_key, e))?;
    let (key_pem, key_key) = pem_source("key", key_inline, "key_file", key_file, reader)?
        .ok_or_else(|| err("key_file", "missing one of key or key_file"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| err(&key_key, format!("no usable PEM private key: {e}")))?;

    let auth =
        ClientAuth::parse(set(&c.client_auth_type)).map_err(|e| err("client_auth_type", e))?;
    let ca = pem_source(
        "client_ca",
        set(&c.client_ca),
        "client_ca_file",
        ca_file,
        reader,
    )?;
    let roots = match &ca {
        Some((pem, field)) => Some(Arc::new(parse_roots(pem).map_err(|e| err(field, e))?)),
        None => None,
    };
    if roots.is_some() && auth == ClientAuth::No {
        return Err(err(
            "client_auth_type",
            "a client CA is configured without a client auth policy (set client_auth_type, \
             e.g. RequireAndVerifyClientCert)",
        ));
    }
    let verifier: Arc<dyn ClientCertVerifier> = match (auth, roots) {
        (ClientAuth::No, _) => WebPkiClientVerifier::no_client_auth(),
        (ClientAuth::Request | ClientAuth::RequireAny, _) => Arc::new(AnyClientCert {
            provider: provider.clone(),
            mandatory: auth == ClientAuth::RequireAny,
        }),
        (_, None) => {
            return Err(err(
                "client_ca_file",
                format!(
                    "client_auth_type {} verifies client certificates: give client_ca_file or \
                     client_ca",
                    auth.name()
                ),
            ));
        }
        (_, Some(roots)) => {
            let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let b = if auth == ClientAuth::VerifyIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| err("client_ca_file", format!("unusable client CA: {e}")))?
        }
    };
    let verifier = match &c.client_allowed_sans {
        None => verifier,
        Some(sans) if sans.is_empty() => {
            return Err(err(
                "client_allowed_sans",
                "empty: no client certificate could match (remove the key to allow any)",
            ));
        }
        Some(_) if auth == ClientAuth::No => {
            return Err(err(
                "client_allowed_sans",
                "needs a client_auth_type that asks for a certificate",
            ));
        }
        Some(sans) => Arc::new(AllowedSans {
            inner: verifier,
            allowed: sans.clone(),
        }),
    };
    let (min, max) = versions(c)?;
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, v)| v)
            .collect();
    if min <= 12 && !provider.cipher_suites.iter().any(|s| s.tls13().is_none()) {
        return Err(err(
            "cipher_suites",
            "lists no TLS 1.2 suite while min_version allows TLS12: add one, or set \
             min_version: TLS13",
        ));
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| err("cipher_suites", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| err(&key_key, format!("does not fit the certificate: {e}")))?;
    // The toolkit's default (true): the server's order of cipher_suites decides.
    config.ignore_client_order = c.prefer_server_cipher_suites.unwrap_or(true);
    // HTTP/1.1 only, as Go's server with HTTP/2 disabled.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut summary = format!("TLS{min}-TLS{max}, client certificates: {}", auth.name());
    if let Some(sans) = &c.client_allowed_sans {
        summary.push_str(&format!(" with one of {} SANs", sans.len()));
    }
    Ok(Some(Built {
        config: Arc::new(config),
        summary,
    }))
}

/// A TLS setting written while TLS is off.
fn stray_setting(c: &TlsServerConfig) -> Option<&'static str> {
    [
        ("min_version", set(&c.min_version).is_some()),
        ("max_version", set(&c.max_version).is_some()),
        ("cipher_suites", !c.cipher_suites.is_empty()),
        ("curve_preferences", !c.curve_preferences.is_empty()),
        ("client_allowed_sans", c.client_allowed_sans.is_some()),
    ]
    .into_iter()
    .find_map(|(k, on)| on.then_some(k))
}

/// `min_version`/`max_version` as 12 or 13.
fn versions(c: &TlsServerConfig) -> Result<(u8, u8), ConfigError> {
    let parse = |field: &str, v: Option<&str>, default: u8| -> Result<u8, ConfigError> {
        match v {
            None => Ok(default),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(old @ ("TLS10" | "TLS11")) => Err(err(
                field,
                format!("{old} is not supported: rustls implements TLS12 and TLS13 only"),
            )),
            Some(other) => Err(err(
                field,
                format!("unknown TLS version {other:?} (TLS10, TLS11, TLS12, TLS13)"),
            )),
        }
    };
    let min = parse("min_version", set(&c.min_version), 12)?;
    let max = parse("max_version", set(&c.max_version), 13)?;
    if min > max {
        return Err(err(
            "min_version",
            format!("TLS{min} is above max_version TLS{max}"),
        ));
    }
    Ok((min, max))
}

/// A Go cipher suite name (`tls.CipherSuites()`): a rustls TLS 1.2 suite, or `None` for a TLS
/// 1.3 name (not configurable, as in Go).
fn cipher_suite(name: &str) -> Result<Option<SupportedCipherSuite>, String> {
    use ring::cipher_suite as cs;
    Ok(Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Ok(None);
        }
        "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" => {
            return Err(format!(
                "{name} is not implemented by rustls (no CBC or RSA key exchange suites); use \
                 one of the TLS_ECDHE_*_GCM_* or *_CHACHA20_POLY1305_SHA256 suites"
            ));
        }
        other => return Err(format!("unknown cipher suite {other:?}")),
    }))
}

/// A Go curve name (`CurveP256`, `CurveP384`, `CurveP521`, `X25519`) as a ring key exchange group.
fn curve(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    match name {
        "X25519" => Ok(ring::kx_group::X25519),
        "CurveP256" => Ok(ring::kx_group::SECP256R1),
        "CurveP384" => Ok(ring::kx_group::SECP384R1),
        "CurveP521" => Err("CurveP521 is not implemented by rustls' ring provider".into()),
        other => Err(format!(
            "unknown curve {other:?} (CurveP256, CurveP384, CurveP521, X25519)"
        )),
    }
}

/// The ring provider restricted to `cipher_suites` (TLS 1.2 ones, in order, after all TLS 1.3
/// suites) and `curve_preferences` (in order).
fn provider(c: &TlsServerConfig) -> Result<Arc<CryptoProvider>, ConfigError> {
    let mut p = ring::default_provider();
    if !c.cipher_suites.is_empty() {
        let mut suites: Vec<SupportedCipherSuite> = p
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_some())
            .copied()
            .collect();
        for (i, name) in c.cipher_suites.iter().enumerate() {
            let s = cipher_suite(name).map_err(|e| err(&format!("cipher_suites[{i}]"), e))?;
            if let Some(s) = s
                && !suites.iter().any(|x| x.suite() == s.suite())
            {
                suites.push(s);
            }
        }
        p.cipher_suites = suites;
    }
    if !c.curve_preferences.is_empty() {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for (i, name) in c.curve_preferences.iter().enumerate() {
            let g = curve(name).map_err(|e| err(&format!("curve_preferences[{i}]"), e))?;
            if !groups.iter().any(|x| x.name() == g.name()) {
                groups.push(g);
            }
        }
        p.kx_groups = groups;
    }
    Ok(Arc::new(p))
}

/// The PEM certificates in `pem` (at least one).
fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

/// The client CA certificates in `pem`, each usable as a trust root.
fn parse_roots(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in parse_certs(pem)? {
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for (and required
/// when `mandatory`) but its chain is not verified; the handshake signature still is (the
/// client holds the key of the certificate it shows).
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!(provider: provider);
}

/// `client_allowed_sans`: after `inner`, the client certificate must carry one of these subject
/// alternative names (DNS, e-mail, IP or URI, compared exactly, as the toolkit's
/// `VerifyPeerCertificate`). A certificate is then always required: the toolkit refuses a
/// connection without one too.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = super::san::subject_alt_names(end_entity.as_ref()).ok_or(
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding),
        )?;
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    handshake_signatures!(inner: inner);
}

/// The TLS step of the accept loop when `source` has TLS on (`None`: plain HTTP): each
/// connection's handshake uses the configuration current when it arrives (so a rotated
/// certificate is served from the next connection on), bounded by [`HANDSHAKE_TIMEOUT`]. A
/// failed handshake is logged at debug level and the connection closed.
pub(crate) fn acceptor(source: &Arc<WebConfigSource>) -> Option<TlsAccept> {
    source.current().tls.as_ref()?;
    let source = source.clone();
    Some(Arc::new(move |stream: TcpStream| {
        let source = source.clone();
        Box::pin(async move {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            let config = source.current().tls.clone()?;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(config, stream)).await {
                Ok(Ok(tls)) => Some(tls),
                Ok(Err(e)) => {
                    crate::log::debug(&format!("TLS handshake from {peer} failed: {e}"));
                    None
                }
                Err(_) => {
                    crate::log::debug(&format!(
                        "TLS handshake from {peer}: not completed within {HANDSHAKE_TIMEOUT:?}"
                    ));
                    None
                }
            }
        }) as Pin<Box<dyn Future<Output = Option<TlsStream<TcpStream>>> + Send>>
    }))
}

/// The handshake; a plain HTTP request (its first byte a letter, where TLS starts with a
/// handshake record, 0x16) is answered 400 as Go's server does, so `curl http://` says why.
async fn handshake(
    config: Arc<ServerConfig>,
    mut stream: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 1 && first[0].is_ascii_uppercase() {
        stream.write_all(PLAIN_HTTP_ANSWER).await?;
        let _ = stream.shutdown().await;
        // Read what the client sent before closing: closing with unread input sends a reset,
        // which can destroy the answer before the client reads it.
        let mut sink = [0u8; 4096];
        let drain = async {
            let mut left: usize = 64 * 1024;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a plain HTTP request on the HTTPS port (answered 400)",
        ));
    }
    tokio_rustls::TlsAcceptor::from(config).accept(stream).await
}
