//! A small, tolerant client for PD's HTTP API (`/pd/api/v1/...`).
//!
//! Only cheap endpoints are read: `/stores`, `/members`, `/health`, `/leader` and
//! `/config/schedule`. `/regions` is never requested (it serialises every region of the cluster in
//! one body and is expensive for PD on big clusters).
//!
//! Parsing is deliberately lenient across PD versions (2.x/3.0 to 8.x): unknown fields are
//! ignored, every status field is optional, a field of an unexpected type or an unparsable size
//! becomes `None` rather than an error. Only a body that is not JSON, or whose overall shape is
//! wrong (e.g. `stores` is not a list), fails the request for that endpoint.
//!
//! Several PD endpoints may be configured: the one that answered last is tried first, then the
//! others in configuration order. Connection errors, timeouts, HTTP errors (4xx and 5xx, e.g. the
//! 503 PD returns while it elects a leader), oversized and unparsable bodies all move on to the
//! next endpoint; only when every endpoint failed is an error returned, listing every attempt.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;

use crate::domain::{Member, MemberHealth, Members, Store};

mod units;
mod wire;

pub use units::{parse_byte_size, parse_go_duration};
use wire::{RawHealth, RawMember, RawMembers, RawStores};

/// API prefix of every PD endpoint used here.
const API: &str = "/pd/api/v1";

/// At most this much of an HTTP error body is read to quote it in the error message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// At most this many characters of an HTTP error body are quoted in the error message.
const ERROR_MESSAGE_CHARS: usize = 300;

/// TLS files for talking to PD over HTTPS (all PEM).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PdTls {
    /// CA certificate(s) used as the only trust roots; `None` uses the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for mutual TLS (needs `key_file` too).
    pub cert_file: Option<PathBuf>,
    /// Private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// How to reach PD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdClientConfig {
    /// PD client URLs (`http://host:2379`, `https://...`, or bare `host:port`).
    pub endpoints: Vec<String>,
    /// Limit for one request (connect + response + body), per endpoint attempt.
    pub timeout: Duration,
    /// HTTPS settings; bare `host:port` endpoints become `https://` when set.
    pub tls: Option<PdTls>,
    /// Largest response body accepted; larger bodies fail the attempt.
    pub max_response_bytes: usize,
}

impl Default for PdClientConfig {
    fn default() -> Self {
        PdClientConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            timeout: Duration::from_secs(5),
            tls: None,
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why one endpoint failed during a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointFailure {
    /// The endpoint's base URL, e.g. `http://10.0.0.1:2379`.
    pub endpoint: String,
    /// HTTP status when the endpoint answered with an error status.
    pub status: Option<u16>,
    /// What went wrong, e.g. `HTTP 503 ([PD:apiutil:ErrRedirectNoLeader]redirect finds no leader)`.
    pub message: String,
}

impl fmt::Display for EndpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.message)
    }
}

/// Errors of the PD client.
#[derive(Debug, thiserror::Error)]
pub enum PdError {
    /// The configuration is unusable (no endpoints, zero timeout, ...).
    #[error("invalid PD client configuration: {0}")]
    Config(String),
    /// An endpoint is not a usable http(s) URL.
    #[error("invalid PD endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A TLS file is missing, unreadable or does not hold what it should.
    #[error("PD TLS {kind} file {}: {reason}", path.display())]
    TlsFile {
        /// Which file: `CA`, `certificate` or `key`.
        kind: &'static str,
        /// The file's path as configured.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build PD HTTP client: {0}")]
    Client(String),
    /// Every endpoint failed; one entry per attempt, in the order tried.
    #[error("all PD endpoints failed: {}", join_failures(.failures))]
    AllFailed {
        /// The API path requested, e.g. `/pd/api/v1/stores`.
        path: String,
        /// One entry per endpoint tried.
        failures: Vec<EndpointFailure>,
    },
}

fn join_failures(failures: &[EndpointFailure]) -> String {
    failures
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Client for PD's HTTP API; cheap to clone (clones share endpoints, connections and counters).
#[derive(Clone)]
pub struct PdClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    http: reqwest::Client,
    timeout: Duration,
    max_response_bytes: usize,
    preferred: AtomicUsize,
    requests: AtomicU64,
    response_bytes: AtomicU64,
}

impl fmt::Debug for PdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PdClient")
            .field("endpoints", &self.inner.endpoints)
            .field("timeout", &self.inner.timeout)
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl PdClient {
    /// Validates the configuration, loads TLS files and builds the client (no request is sent).
    pub fn new(cfg: PdClientConfig) -> Result<PdClient, PdError> {
        if cfg.endpoints.is_empty() {
            return Err(PdError::Config("no PD endpoints given".into()));
        }
        if cfg.timeout.is_zero() {
            return Err(PdError::Config("timeout must be greater than zero".into()));
        }
        if cfg.max_response_bytes == 0 {
            return Err(PdError::Config(
                "max_response_bytes must be greater than zero".into(),
            ));
        }
        let mut endpoints: Vec<String> = Vec::with_capacity(cfg.endpoints.len());
        for raw in &cfg.endpoints {
            let ep = normalize_endpoint(raw, cfg.tls.is_some())?;
            if !endpoints.contains(&ep) {
                endpoints.push(ep);
            }
        }

        // reqwest is built with `rustls-no-provider`: a process-wide provider must exist before
        // any client is built. Another part of the process may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // PD is reached directly; proxy environment variables are not honoured.
            .no_proxy()
            .user_agent(concat!("tikv-health-exporter/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &cfg.tls {
            if let Some(ca) = &tls.ca_file {
                let roots = load_ca(ca)?;
                builder = builder.tls_certs_only(roots);
            }
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => builder = builder.identity(load_identity(cert, key)?),
                (None, None) => {}
                (Some(cert), None) => {
                    return Err(PdError::Config(format!(
                        "TLS certificate file {} given without a key file",
                        cert.display()
                    )));
                }
                (None, Some(key)) => {
                    return Err(PdError::Config(format!(
                        "TLS key file {} given without a certificate file",
                        key.display()
                    )));
                }
            }
        }
        let http = builder
            .build()
            .map_err(|e| PdError::Client(error_chain(&e)))?;
        Ok(PdClient {
            inner: Arc::new(Inner {
                endpoints,
                http,
                timeout: cfg.timeout,
                max_response_bytes: cfg.max_response_bytes,
                preferred: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                response_bytes: AtomicU64::new(0),
            }),
        })
    }

    /// The normalized endpoint base URLs, in configuration order.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The endpoint that will be tried first (the one that answered last).
    pub fn preferred_endpoint(&self) -> &str {
        let i = self.inner.preferred.load(Ordering::Relaxed);
        &self.inner.endpoints[i.min(self.inner.endpoints.len() - 1)]
    }

    /// All stores PD lists (`GET /pd/api/v1/stores`; Tombstone stores are not included by PD).
    pub async fn stores(&self) -> Result<Vec<Store>, PdError> {
        let raw: RawStores = self.get_json("/stores").await?;
        Ok(raw.into_stores())
    }

    /// PD members, leader and etcd leader (`GET /pd/api/v1/members`).
    pub async fn members(&self) -> Result<Members, PdError> {
        let raw: RawMembers = self.get_json("/members").await?;
        Ok(raw.into_members())
    }

    /// The PD leader (`GET /pd/api/v1/leader`); `None` if PD answers with an empty member.
    pub async fn leader(&self) -> Result<Option<Member>, PdError> {
        let raw: Option<RawMember> = self.get_json("/leader").await?;
        Ok(raw.and_then(RawMember::into_member))
    }

    /// Health of every PD member (`GET /pd/api/v1/health`).
    pub async fn health(&self) -> Result<Vec<MemberHealth>, PdError> {
        let raw: Option<Vec<RawHealth>> = self.get_json("/health").await?;
        Ok(raw
            .unwrap_or_default()
            .into_iter()
            .map(RawHealth::into_health)
            .collect())
    }

    /// `max-store-down-time` from `GET /pd/api/v1/config/schedule`; `None` if absent or unparsable.
    pub async fn max_store_down_time(&self) -> Result<Option<Duration>, PdError> {
        let raw: serde_json::Map<String, serde_json::Value> =
            self.get_json("/config/schedule").await?;
        Ok(raw
            .get("max-store-down-time")
            .and_then(|v| v.as_str())
            .and_then(parse_go_duration))
    }

    /// HTTP requests sent so far (every attempt on every endpoint, failed ones included).
    pub fn requests_total(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Response body bytes received so far (error bodies and aborted bodies included).
    pub fn response_bytes_total(&self) -> u64 {
        self.inner.response_bytes.load(Ordering::Relaxed)
    }

    /// GETs `API + path` from the endpoints in preference order and decodes the JSON body.
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, PdError> {
        let full_path = format!("{API}{path}");
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed).min(n - 1);
        let order = std::iter::once(first).chain((0..n).filter(|&i| i != first));
        let mut failures = Vec::new();
        for idx in order {
            let endpoint = &self.inner.endpoints[idx];
            match self.attempt::<T>(endpoint, &full_path).await {
                Ok(v) => {
                    self.inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err((status, message)) => failures.push(EndpointFailure {
                    endpoint: endpoint.clone(),
                    status,
                    message,
                }),
            }
        }
        Err(PdError::AllFailed {
            path: full_path,
            failures,
        })
    }

    /// One GET on one endpoint; the error is (HTTP status if any, message).
    async fn attempt<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        full_path: &str,
    ) -> Result<T, (Option<u16>, String)> {
        let url = format!("{endpoint}{full_path}");
        let timeout = self.inner.timeout;
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let resp = self
                .inner
                .http
                .get(&url)
                .header("Accept", "application/json")
                .send()
                .await
                .map_err(|e| (None, describe_reqwest_error(&e, timeout)))?;
            let status = resp.status();
            if !status.is_success() {
                let code = status.as_u16();
                let limit = ERROR_BODY_LIMIT.min(self.inner.max_response_bytes);
                let message = match self.read_body(resp, limit).await {
                    Ok(body) => {
                        let text = summarize_error_body(&body);
                        if text.is_empty() {
                            format!("HTTP {code}")
                        } else {
                            format!("HTTP {code} ({text})")
                        }
                    }
                    Err(e) => format!("HTTP {code} ({e})"),
                };
                return Err((Some(code), message));
            }
            let body = self
                .read_body(resp, self.inner.max_response_bytes)
                .await
                .map_err(|e| (None, e))?;
            serde_json::from_slice::<T>(&body)
                .map_err(|e| (None, format!("invalid JSON body from {full_path}: {e}")))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err((None, format!("timed out after {timeout:?}"))),
        }
    }

    /// Streams a body, failing as soon as it exceeds `limit` bytes.
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, String> {
        let too_large = || format!("response larger than {limit} bytes");
        if let Some(len) = resp.content_length()
            && len > limit as u64
        {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    self.inner
                        .response_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if body.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(format!(
                        "reading body: {}",
                        describe_reqwest_error(&e, self.inner.timeout)
                    ));
                }
            }
        }
    }
}

/// Turns a configured endpoint into a base URL without trailing slash.
fn normalize_endpoint(raw: &str, tls: bool) -> Result<String, PdError> {
    let invalid = |reason: &str| PdError::InvalidEndpoint {
        endpoint: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else if tls {
        format!("https://{trimmed}")
    } else {
        format!("http://{trimmed}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(&format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("query strings and fragments are not allowed"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn read_tls_file(kind: &'static str, path: &Path) -> Result<Vec<u8>, PdError> {
    fs::read(path).map_err(|e| PdError::TlsFile {
        kind,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn load_certs(kind: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PdError> {
    let pem = read_tls_file(kind, path)?;
    let bad = |reason: String| PdError::TlsFile {
        kind,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    Ok(certs)
}

fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, PdError> {
    let certs = load_certs("CA", path)?;
    // Check each one the way rustls will use it, so a bad CA fails here with the file's name.
    let mut store = rustls::RootCertStore::empty();
    for c in &certs {
        store.add(c.clone()).map_err(|e| PdError::TlsFile {
            kind: "CA",
            path: path.to_owned(),
            reason: format!("unusable CA certificate: {e}"),
        })?;
    }
    certs
        .iter()
        .map(|c| {
            reqwest::Certificate::from_der(c.as_ref()).map_err(|e| PdError::TlsFile {
                kind: "CA",
                path: path.to_owned(),
                reason: error_chain(&e),
            })
        })
        .collect()
}

fn load_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, PdError> {
    let certs = load_certs("certificate", cert)?;
    let key_pem = read_tls_file("key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| PdError::TlsFile {
        kind: "key",
        path: key.to_owned(),
        reason: format!("no usable PEM private key: {e}"),
    })?;
    // Check that the key is usable and belongs to the certificate before any connection.
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key_der, &provider).map_err(|e| {
        PdError::TlsFile {
            kind: "key",
            path: key.to_owned(),
            reason: format!("does not match certificate {}: {e}", cert.display()),
        }
    })?;
    let cert_pem = fs::read(cert).map_err(|e| PdError::TlsFile {
        kind: "certificate",
        path: cert.to_owned(),
        reason: e.to_string(),
    })?;
    let mut both = cert_pem;
    both.push(b'\n');
    both.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&both).map_err(|e| PdError::TlsFile {
        kind: "key",
        path: key.to_owned(),
        reason: error_chain(&e),
    })
}

/// `outer: cause: root cause`, skipping repeated messages.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// A short description of a transport error: its kind and its root cause, without the URL.
fn describe_reqwest_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let mut root = None;
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        root = Some(s);
        cur = s.source();
    }
    let cause = match root {
        Some(r) => r.to_string(),
        None => {
            let text = e.to_string();
            match e.url() {
                Some(url) => text.replace(&format!(" for url ({url})"), ""),
                None => text,
            }
        }
    };
    if e.is_connect() {
        format!("connect error: {cause}")
    } else if e.is_body() || e.is_decode() {
        format!("body error: {cause}")
    } else {
        format!("request failed: {cause}")
    }
}

/// PD renders errors as a JSON string (`"[PD:...]message"`); unquote it, else quote the text.
fn summarize_error_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let msg = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(o)) => ["error", "message", "msg"]
            .iter()
            .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.to_owned()),
        _ => text.to_owned(),
    };
    let one_line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > ERROR_MESSAGE_CHARS {
        let cut: String = one_line.chars().take(ERROR_MESSAGE_CHARS).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StoreState;

    #[test]
    fn client_is_shareable_and_engine_detection_is_safe() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<PdClient>();
        let mut s = Store {
            id: 1,
            address: String::new(),
            status_address: String::new(),
            version: String::new(),
            state: StoreState::Up,
            labels: vec![],
            last_heartbeat_ns: None,
            start_timestamp: None,
            capacity_bytes: None,
            available_bytes: None,
            used_bytes: None,
            leader_count: None,
            region_count: None,
            slow_score: None,
        };
        assert_eq!((s.engine(), s.is_tiflash()), ("tikv", false));
        for (engine, tiflash) in [
            ("tiflash", true),
            ("tiflash_compute", true),
            ("tiflas\u{e9}", false),
        ] {
            s.labels = vec![("engine".into(), engine.into())];
            assert_eq!((s.engine(), s.is_tiflash()), (engine, tiflash));
        }
    }

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("pd-0:2379", true).unwrap(),
            "https://pd-0:2379"
        );
        assert_eq!(
            normalize_endpoint(" http://pd:2379/ ", false).unwrap(),
            "http://pd:2379"
        );
        assert!(normalize_endpoint("ftp://pd:2379", false).is_err());
        assert!(normalize_endpoint("http://pd:2379/?x=1", false).is_err());
        assert!(normalize_endpoint("  ", false).is_err());
    }

    #[test]
    fn error_bodies_are_unquoted_and_bounded() {
        assert_eq!(
            summarize_error_body(b"\"[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader\"\n"),
            "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader"
        );
        assert_eq!(
            summarize_error_body(b"404 page not found\n"),
            "404 page not found"
        );
        assert_eq!(
            summarize_error_body(br#"{"error":"scheduler already exists"}"#),
            "scheduler already exists"
        );
        let long = "x".repeat(1000);
        assert_eq!(summarize_error_body(long.as_bytes()).chars().count(), 301);
    }
}
