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
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, Visitor};

use crate::domain::{Member, MemberHealth, Members, Store, StoreState};

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
        Ok(raw
            .stores
            .unwrap_or_default()
            .into_iter()
            .filter_map(RawStoreInfo::into_store)
            .collect())
    }

    /// PD members, leader and etcd leader (`GET /pd/api/v1/members`).
    pub async fn members(&self) -> Result<Members, PdError> {
        let raw: RawMembers = self.get_json("/members").await?;
        Ok(Members {
            members: raw
                .members
                .unwrap_or_default()
                .into_iter()
                .filter_map(RawMember::into_member)
                .collect(),
            leader: raw.leader.and_then(RawMember::into_member),
            etcd_leader: raw.etcd_leader.and_then(RawMember::into_member),
        })
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
            .map(|h| MemberHealth {
                name: h.name.unwrap_or_default(),
                member_id: h.member_id.unwrap_or(0),
                health: h.health.unwrap_or(false),
            })
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

// ---------------------------------------------------------------------------------------------
// Size and duration strings

/// Parses PD's byte sizes: `"311.7GiB"`, `"0B"`, `"290.7MiB"`, old `"937 GiB"`.
///
/// Case-insensitive, optional space before the unit, optional `i`, optional `B`. Like PD's own
/// parser (go-units `RAMInBytes`) every unit is binary (`K` = `KiB` = 1024). The decimal number is
/// multiplied exactly (no floating point) and rounded to the nearest byte, halves up:
/// `"311.7GiB"` = 311.7 × 2³⁰ = 334 685 326 540.8 → `334685326541`. PD prints only 4
/// significant digits, so the result is itself approximate. `None` for anything else, negative
/// numbers, or values above `u64::MAX`.
pub fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    let (mantissa, scale) = parse_decimal(num, 30)?;
    let unit = rest.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        "z" => 7,
        "y" => 8,
        _ => return None,
    };
    // "i" alone (no prefix) is not a unit: "5i" / "5iB" are rejected.
    if power == 0 && rest.trim_start().to_ascii_lowercase().starts_with('i') {
        return None;
    }
    let mult = 1024u128.checked_pow(power)?;
    let num = mantissa.checked_mul(mult)?;
    let bytes = num.checked_add(scale / 2)? / scale;
    u64::try_from(bytes).ok()
}

/// Parses `digits[.digits]` (at least one digit in all) into (mantissa, 10^fraction_digits).
/// Fraction digits beyond `max_frac` are dropped.
fn parse_decimal(s: &str, max_frac: usize) -> Option<(u128, u128)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = &frac[..frac.len().min(max_frac)];
    let mut mantissa: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(b - b'0'))?;
    }
    let scale = 10u128.checked_pow(frac.len() as u32)?;
    Some((mantissa, scale))
}

/// Parses a Go `time.Duration` string: `"30m0s"`, `"1h0m0s"`, `"36m20.480549971s"`, `"500ms"`,
/// `"1.5h"`, `"2h45m"`, `"0s"`, `"0"`, `"1µs"`/`"1us"`, `"100ns"`.
///
/// Fractions are exact to the nanosecond (truncated below). `None` for negative durations,
/// missing units, unknown units or overflow.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let (mantissa, scale) = parse_decimal(num, 30)?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return None,
        };
        total_ns = total_ns.checked_add(mantissa.checked_mul(unit_ns)? / scale)?;
        rest = tail;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

/// Unix nanoseconds of an RFC 3339 timestamp (`2019-03-21T14:14:22.961171958+08:00`).
fn rfc3339_to_unix_ns(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    u64::try_from(t.timestamp_nanos_opt()?).ok()
}

/// Unix seconds of an RFC 3339 timestamp.
fn rfc3339_to_unix_secs(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    u64::try_from(t.timestamp()).ok()
}

// ---------------------------------------------------------------------------------------------
// Raw JSON shapes (lenient)

#[derive(Deserialize)]
struct RawStores {
    #[serde(default)]
    stores: Option<Vec<RawStoreInfo>>,
}

#[derive(Deserialize)]
struct RawStoreInfo {
    #[serde(default)]
    store: Option<RawMeta>,
    #[serde(default)]
    status: Option<RawStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMeta {
    #[serde(deserialize_with = "lenient_u64")]
    id: Option<u64>,
    #[serde(deserialize_with = "lenient_string")]
    address: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    status_address: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    version: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    state_name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    state: Option<u64>,
    labels: Option<Vec<RawLabel>>,
    #[serde(deserialize_with = "lenient_u64")]
    last_heartbeat: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    start_timestamp: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLabel {
    #[serde(deserialize_with = "lenient_string")]
    key: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStatus {
    #[serde(deserialize_with = "lenient_string")]
    capacity: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    available: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    used_size: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    leader_count: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    region_count: Option<u64>,
    #[serde(deserialize_with = "lenient_f64")]
    slow_score: Option<f64>,
    #[serde(deserialize_with = "lenient_string")]
    start_ts: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    last_heartbeat_ts: Option<String>,
}

impl RawStoreInfo {
    /// `None` for an entry without a `store` object (nothing to identify it by).
    fn into_store(self) -> Option<Store> {
        let meta = self.store?;
        let status = self.status.unwrap_or_default();
        let state = match meta.state_name.as_deref() {
            Some(name) if !name.is_empty() => StoreState::from_name(name),
            // Very old PD without `state_name`: the metapb enum (omitted when 0 = Up).
            _ => match meta.state {
                Some(1) => StoreState::Offline,
                Some(2) => StoreState::Tombstone,
                Some(0) | None => StoreState::Up,
                Some(n) => StoreState::Other(n.to_string()),
            },
        };
        let last_heartbeat_ns = meta.last_heartbeat.filter(|&ns| ns > 0).or_else(|| {
            status
                .last_heartbeat_ts
                .as_deref()
                .and_then(rfc3339_to_unix_ns)
        });
        let start_timestamp = meta
            .start_timestamp
            .filter(|&s| s > 0)
            .or_else(|| status.start_ts.as_deref().and_then(rfc3339_to_unix_secs));
        let size = |s: &Option<String>| s.as_deref().and_then(parse_byte_size);
        Some(Store {
            id: meta.id.unwrap_or(0),
            address: meta.address.unwrap_or_default(),
            status_address: meta.status_address.unwrap_or_default(),
            version: meta.version.unwrap_or_default(),
            state,
            labels: meta
                .labels
                .unwrap_or_default()
                .into_iter()
                .map(|l| (l.key.unwrap_or_default(), l.value.unwrap_or_default()))
                .collect(),
            last_heartbeat_ns,
            start_timestamp,
            capacity_bytes: size(&status.capacity),
            available_bytes: size(&status.available),
            used_bytes: size(&status.used_size),
            leader_count: status.leader_count,
            region_count: status.region_count,
            slow_score: status.slow_score,
        })
    }
}

#[derive(Deserialize)]
struct RawMembers {
    #[serde(default)]
    members: Option<Vec<RawMember>>,
    #[serde(default)]
    leader: Option<RawMember>,
    #[serde(default)]
    etcd_leader: Option<RawMember>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMember {
    #[serde(deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    member_id: Option<u64>,
    client_urls: Option<Vec<String>>,
}

impl RawMember {
    /// `None` for an empty member object (`{}`), which is how "no leader" can look.
    fn into_member(self) -> Option<Member> {
        let name = self.name.unwrap_or_default();
        let member_id = self.member_id.unwrap_or(0);
        if name.is_empty() && member_id == 0 {
            return None;
        }
        Some(Member {
            name,
            member_id,
            client_urls: self.client_urls.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHealth {
    #[serde(deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    member_id: Option<u64>,
    health: Option<bool>,
}

/// Drains and ignores a sequence.
fn drain_seq<'de, A: de::SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Drains and ignores a map.
fn drain_map<'de, A: de::MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Defines a visitor that yields `Option<$t>`, mapping values of any unexpected type to `None`.
macro_rules! lenient_visitor {
    ($fn_name:ident, $visitor:ident, $t:ty, $expecting:literal,
     u64: $from_u64:expr, i64: $from_i64:expr, f64: $from_f64:expr, str: $from_str:expr) => {
        struct $visitor;

        impl<'de> Visitor<'de> for $visitor {
            type Value = Option<$t>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($expecting)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(($from_u64)(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(($from_i64)(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(($from_f64)(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(($from_str)(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| None)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| None)
            }
        }

        fn $fn_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$t>, D::Error> {
            d.deserialize_any($visitor)
        }
    };
}

lenient_visitor!(
    lenient_u64, LenientU64, u64, "an unsigned integer",
    u64: Some,
    i64: |v: i64| u64::try_from(v).ok(),
    f64: |v: f64| (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19).then_some(v as u64),
    str: |v: &str| v.trim().parse::<u64>().ok()
);

lenient_visitor!(
    lenient_f64, LenientF64, f64, "a number",
    u64: |v: u64| Some(v as f64),
    i64: |v: i64| Some(v as f64),
    f64: |v: f64| v.is_finite().then_some(v),
    str: |v: &str| v.trim().parse::<f64>().ok().filter(|f| f.is_finite())
);

lenient_visitor!(
    lenient_string, LenientString, String, "a string",
    u64: |_| None,
    i64: |_| None,
    f64: |_| None,
    str: |v: &str| Some(v.to_owned())
);

#[cfg(test)]
mod tests {
    use super::*;

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
    fn byte_sizes() {
        assert_eq!(parse_byte_size("0B"), Some(0));
        assert_eq!(parse_byte_size("1B"), Some(1));
        assert_eq!(parse_byte_size("311.7GiB"), Some(334_685_326_541));
        assert_eq!(parse_byte_size("20 GiB"), Some(20 << 30));
        assert_eq!(parse_byte_size("1.5k"), Some(1536));
        assert_eq!(parse_byte_size("0.5B"), Some(1)); // halves round up
        assert_eq!(parse_byte_size("0.4B"), Some(0));
        assert_eq!(parse_byte_size("16EiB"), None); // 2^64 overflows u64
        for bad in [
            "", "B", "GiB", "-1B", "1.2.3GiB", "1 XB", "5i", "nan", "1e3B", ".",
        ] {
            assert_eq!(parse_byte_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30m0s"), Some(Duration::from_secs(1800)));
        assert_eq!(
            parse_go_duration("36m20.480549971s"),
            Some(Duration::new(2180, 480_549_971))
        );
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration(".5s"), Some(Duration::from_millis(500)));
        for bad in ["", "-1s", "5", "1d", "s", "1..5s", "1h-5m"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
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

    #[test]
    fn lenient_fields_become_none() {
        let raw: RawStores = serde_json::from_str(
            r#"{"stores":[{"store":{"id":"7","labels":[{"key":"zone"}],"last_heartbeat":-1},
                "status":{"capacity":12,"leader_count":-3,"region_count":4.0,"slow_score":"x"}}]}"#,
        )
        .unwrap();
        let s = raw.stores.unwrap().remove(0).into_store().unwrap();
        assert_eq!(s.id, 7);
        assert_eq!(s.labels, vec![("zone".to_owned(), String::new())]);
        assert_eq!(s.last_heartbeat_ns, None);
        assert_eq!(s.capacity_bytes, None);
        assert_eq!(s.leader_count, None);
        assert_eq!(s.region_count, Some(4));
        assert_eq!(s.slow_score, None);
        assert_eq!(s.state, StoreState::Up);
    }
}
