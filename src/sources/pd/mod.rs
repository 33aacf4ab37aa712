//! A small, tolerant client for PD's HTTP API (`/pd/api/v1/...`).
//!
//! Only cheap endpoints are read: `/stores`, `/members`, `/health`, `/leader`,
//! `/config/schedule`, `/gc/safepoint`, `/min-resolved-ts?scope=cluster` (`safepoints.rs`),
//! `/schedulers` and the evict-leader / evict-slow-store list endpoints (`schedulers.rs`) and
//! the PD leader's own `/metrics` (`leader_metrics.rs`), each one request whatever the number of
//! regions; `/hotspot/regions/{write,read}` (`hotspot.rs`) only on an API request, at most once
//! per poll. `/regions` and `/regions/check/*` are never requested (they serialise every region
//! of the cluster in one body and are expensive for PD on big clusters).
//!
//! Parsing is deliberately lenient across PD versions (2.x/3.0 to 8.x): unknown fields are
//! ignored, every status field is optional, a field of an unexpected type or an unparsable size
//! becomes `None` rather than an error. A body that is not JSON or whose overall shape is wrong
//! (`{}`, no `stores` list, `count` disagreeing with the list, a member list without members, an
//! empty health list) fails the request for that endpoint: it is never read as "no data". A
//! `/stores` entry that names no store (no usable id, an id listed twice) is rejected alone and
//! reported in [`StoreList::rejected`].
//!
//! `members_at` and `health_at` ask one member directly with the `PD-Allow-follower-handle`
//! header, so a follower answers from its own state even while PD has no leader (PD ≥ v3.1;
//! cluster-signals.md §1). Data requests (`/stores`, `/config/schedule`) are sent without it:
//! followers proxy them to the leader, and only the leader can answer them.
//!
//! Several PD endpoints may be configured: the one that answered last is tried first, then the
//! others in configuration order. Connection errors, timeouts, HTTP errors (4xx and 5xx, e.g. the
//! 503 PD returns while it elects a leader), oversized and unparsable bodies all move on to the
//! next endpoint; only when every endpoint failed is an error returned, listing every attempt.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::ACCEPT;

use super::http::{self, BuildError, ClientConfig, HttpClient, TlsFiles};
use crate::domain::{Member, MemberHealth, Members, ScheduleConfig, Store};

mod hotspot;
mod leader_metrics;
mod members;
mod safepoints;
mod schedulers;
mod units;
mod wire;

pub use hotspot::{
    HOT_REGIONS_MAX_BYTES, HOT_REGIONS_PER_STORE, HotKind, HotPeer, HotRegions, HotStore,
};
pub use members::Survey;
pub use units::{parse_byte_size, parse_go_duration};

/// API prefix of every PD endpoint used here.
const API: &str = "/pd/api/v1";

/// The header that makes a PD follower answer from its own state (any non-empty value; PD's Go
/// client sends `true`).
pub const FOLLOWER_HANDLE_HEADER: &str = "PD-Allow-follower-handle";

/// Why a `/stores` entry was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// No id, not an integer, 0, or at least 2^64.
    InvalidId,
    /// The same id on several entries (which one is right cannot be told).
    DuplicateId,
    /// Not a `{"store": {...}, "status": {...}}` object.
    Malformed,
}

impl RejectReason {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidId => "invalid_id",
            RejectReason::DuplicateId => "duplicate_id",
            RejectReason::Malformed => "malformed",
        }
    }
}

/// One rejected `/stores` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedStore {
    /// Why.
    pub reason: RejectReason,
    /// The id, when it is a valid one (duplicates).
    pub id: Option<u64>,
    /// What was wrong, for the log.
    pub detail: String,
}

/// A `/stores` reply: the stores it identifies and the entries it had to reject.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreList {
    /// Stores with a valid id listed once.
    pub stores: Vec<Store>,
    /// Entries rejected one by one.
    pub rejected: Vec<RejectedStore>,
}

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
            ..TlsFiles::default()
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
    /// The one member asked directly failed.
    #[error("PD member {failure}")]
    Member {
        /// The API path requested.
        path: String,
        /// The member's failure.
        failure: EndpointFailure,
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
    /// Whether PD is reached over HTTPS (bare advertised addresses get `https://`).
    tls: bool,
    /// The endpoint whose `/metrics` was the PD leader's last time.
    metrics_endpoint: Mutex<Option<String>>,
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
            follow_redirects: true,
        })?;
        Ok(PdClient {
            inner: Arc::new(Inner {
                endpoints,
                http,
                max_response_bytes: cfg.max_response_bytes,
                preferred: AtomicUsize::new(0),
                tls: cfg.tls.is_some(),
                metrics_endpoint: Mutex::new(None),
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

    /// All stores PD lists (`GET /pd/api/v1/stores`; Tombstone stores are not included by PD),
    /// without the rejected entries.
    pub async fn stores(&self) -> Result<Vec<Store>, PdError> {
        Ok(self.store_list().await?.stores)
    }

    /// `GET /pd/api/v1/stores`: the stores and the entries rejected one by one.
    pub async fn store_list(&self) -> Result<StoreList, PdError> {
        self.get("/stores", wire::parse_stores).await
    }

    /// PD members, leader and etcd leader (`GET /pd/api/v1/members`, via the leader).
    pub async fn members(&self) -> Result<Members, PdError> {
        self.get("/members", wire::parse_members).await
    }

    /// `GET /pd/api/v1/members` from the member at `endpoint` itself (follower-handle header):
    /// its own view, without `leader` while PD has none.
    pub async fn members_at(&self, endpoint: &str) -> Result<Members, PdError> {
        self.get_from(endpoint, "/members", wire::parse_members)
            .await
    }

    /// The PD leader (`GET /pd/api/v1/leader`); `None` if PD answers with an empty member.
    pub async fn leader(&self) -> Result<Option<Member>, PdError> {
        self.get("/leader", wire::parse_leader).await
    }

    /// Health of every PD member (`GET /pd/api/v1/health`, via the leader).
    pub async fn health(&self) -> Result<Vec<MemberHealth>, PdError> {
        self.get("/health", wire::parse_health).await
    }

    /// `GET /pd/api/v1/health` answered by the member at `endpoint` (follower-handle header).
    pub async fn health_at(&self, endpoint: &str) -> Result<Vec<MemberHealth>, PdError> {
        self.get_from(endpoint, "/health", wire::parse_health).await
    }

    /// `max-store-down-time` and the space ratios from `GET /pd/api/v1/config/schedule`.
    pub async fn schedule(&self) -> Result<ScheduleConfig, PdError> {
        self.get("/config/schedule", wire::parse_schedule).await
    }

    /// `max-store-down-time` from `GET /pd/api/v1/config/schedule`; `None` if absent or unparsable.
    pub async fn max_store_down_time(&self) -> Result<Option<Duration>, PdError> {
        Ok(self.schedule().await?.max_store_down_time)
    }

    /// HTTP requests sent so far (every attempt on every endpoint, failed ones included).
    pub fn requests_total(&self) -> u64 {
        self.inner.http.requests_total()
    }

    /// Response body bytes received so far (error bodies and aborted bodies included).
    pub fn response_bytes_total(&self) -> u64 {
        self.inner.http.response_bytes_total()
    }

    /// GETs `API + path` from the endpoints in preference order and parses the body.
    async fn get<T>(&self, path: &str, parse: Parse<T>) -> Result<T, PdError> {
        self.get_until(path, parse, false, self.inner.max_response_bytes)
            .await
    }

    /// [`get`](Self::get), stopping at the first 404 when `stop_at_404`, with bodies of at
    /// most `limit` bytes.
    async fn get_until<T>(
        &self,
        path: &str,
        parse: Parse<T>,
        stop_at_404: bool,
        limit: usize,
    ) -> Result<T, PdError> {
        let full_path = format!("{API}{path}");
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed).min(n - 1);
        let order = std::iter::once(first).chain((0..n).filter(|&i| i != first));
        let mut failures = Vec::new();
        for idx in order {
            let endpoint = &self.inner.endpoints[idx];
            match self
                .attempt(endpoint, &full_path, false, parse, limit)
                .await
            {
                Ok(v) => {
                    self.inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(f) => {
                    let stop = stop_at_404 && f.status == Some(404);
                    failures.push(f);
                    if stop {
                        break;
                    }
                }
            }
        }
        Err(PdError::AllFailed {
            path: full_path,
            failures,
        })
    }

    /// Like [`get`](Self::get), but a 404 (this PD version has no such endpoint) is `Ok(None)`,
    /// at once: the other members run the same version.
    async fn get_if_served<T>(&self, path: &str, parse: Parse<T>) -> Result<Option<T>, PdError> {
        match self
            .get_until(path, parse, true, self.inner.max_response_bytes)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(PdError::AllFailed { failures, .. })
                if failures.iter().any(|f| f.status == Some(404)) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The endpoint whose `/metrics` was the leader's last time.
    fn last_metrics_endpoint(&self) -> Option<String> {
        self.inner
            .metrics_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Remembers the endpoint that served the leader's `/metrics`.
    fn set_last_metrics_endpoint(&self, endpoint: &str) {
        *self
            .inner
            .metrics_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(endpoint.to_owned());
    }

    /// GETs `API + path` from the member at `endpoint` only, with the follower-handle header.
    async fn get_from<T>(&self, endpoint: &str, path: &str, parse: Parse<T>) -> Result<T, PdError> {
        let full_path = format!("{API}{path}");
        self.attempt(
            endpoint,
            &full_path,
            true,
            parse,
            self.inner.max_response_bytes,
        )
        .await
        .map_err(|failure| PdError::Member {
            path: full_path,
            failure,
        })
    }

    /// One GET on one endpoint.
    async fn attempt<T>(
        &self,
        endpoint: &str,
        full_path: &str,
        follower: bool,
        parse: Parse<T>,
        limit: usize,
    ) -> Result<T, EndpointFailure> {
        let http = &self.inner.http;
        let mut req = http
            .get(format!("{endpoint}{full_path}"))
            .header(ACCEPT, "application/json");
        if follower {
            req = req.header(FOLLOWER_HANDLE_HEADER, "true");
        }
        let fail = |status, message| EndpointFailure {
            endpoint: endpoint.to_owned(),
            status,
            message,
        };
        let body = http
            .fetch_ok(req, limit)
            .await
            .map_err(|e| fail(e.status(), e.to_string()))?;
        parse(&body).map_err(|why| fail(None, format!("unusable reply to {full_path}: {why}")))
    }
}

/// Parses one endpoint's body, or says why it has the wrong shape.
type Parse<T> = fn(&[u8]) -> Result<T, String>;

/// A JSON value for an error message, cut short.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
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
