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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::ACCEPT;
use serde::de::DeserializeOwned;

use super::http::{self, BuildError, ClientConfig, HttpClient, TlsFiles};
use crate::domain::{Member, MemberHealth, Members, Store};

mod units;
mod wire;

pub use units::{parse_byte_size, parse_go_duration};
use wire::{RawHealth, RawMember, RawMembers, RawStores};

/// API prefix of every PD endpoint used here.
const API: &str = "/pd/api/v1";

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

impl PdTls {
    /// The files as the HTTP layer takes them.
    fn files(&self) -> TlsFiles<'_> {
        TlsFiles {
            ca_file: self.ca_file.as_deref(),
            cert_file: self.cert_file.as_deref(),
            key_file: self.key_file.as_deref(),
        }
    }
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

impl From<BuildError> for PdError {
    fn from(e: BuildError) -> PdError {
        match e {
            BuildError::Config(msg) => PdError::Config(msg),
            BuildError::TlsFile { kind, path, reason } => PdError::TlsFile { kind, path, reason },
            BuildError::Client(msg) => PdError::Client(msg),
        }
    }
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
    http: HttpClient,
    max_response_bytes: usize,
    preferred: AtomicUsize,
}

impl fmt::Debug for PdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PdClient")
            .field("endpoints", &self.inner.endpoints)
            .field("timeout", &self.inner.http.timeout())
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
            let ep = http::normalize_endpoint(raw, cfg.tls.is_some()).map_err(|e| {
                PdError::InvalidEndpoint {
                    endpoint: raw.to_owned(),
                    reason: e.to_string(),
                }
            })?;
            if !endpoints.contains(&ep) {
                endpoints.push(ep);
            }
        }
        let http = HttpClient::new(&ClientConfig {
            timeout: cfg.timeout,
            // PD is reached directly; proxy environment variables are not honoured.
            no_proxy: true,
            tls: cfg.tls.as_ref().map(PdTls::files),
        })?;
        Ok(PdClient {
            inner: Arc::new(Inner {
                endpoints,
                http,
                max_response_bytes: cfg.max_response_bytes,
                preferred: AtomicUsize::new(0),
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
        self.inner.http.requests_total()
    }

    /// Response body bytes received so far (error bodies and aborted bodies included).
    pub fn response_bytes_total(&self) -> u64 {
        self.inner.http.response_bytes_total()
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
        let http = &self.inner.http;
        let req = http
            .get(format!("{endpoint}{full_path}"))
            .header(ACCEPT, "application/json");
        let body = http
            .fetch_ok(req, self.inner.max_response_bytes)
            .await
            .map_err(|e| (e.status(), e.to_string()))?;
        serde_json::from_slice::<T>(&body)
            .map_err(|e| (None, format!("invalid JSON body from {full_path}: {e}")))
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
        let mut s = Store::new(1, StoreState::Up);
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
}
