//! The Alertmanager client: `POST {url}{path_prefix}/api/v2/alerts` with a JSON array of
//! alerts, on the one HTTP client layer (`sources::http`). Alertmanager answers 200 with an
//! empty body when it took the alerts, 400 with a message when one is invalid (its
//! `api/v2/openapi.yaml`, `postAlerts`).

use std::path::PathBuf;

use reqwest::Url;

use super::alert::Alert;
use crate::config::{AlertmanagerConfig, TlsConfig};
use crate::sources::http::{self, ClientConfig, HttpClient, TlsFiles};

/// Largest answer body read from Alertmanager (its answers are empty or one error message).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A secret given inline or in a file (read at every request, so it can be rotated).
#[derive(Debug)]
enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Secret {
    fn from(inline: &Option<String>, file: &Option<PathBuf>) -> Option<Secret> {
        match (inline, file) {
            (Some(s), _) => Some(Secret::Inline(s.clone())),
            (None, Some(f)) => Some(Secret::File(f.clone())),
            (None, None) => None,
        }
    }

    fn read(&self) -> Result<String, AlertmanagerError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(f) => std::fs::read_to_string(f)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| AlertmanagerError::SecretFile {
                    path: f.clone(),
                    reason: e.to_string(),
                }),
        }
    }
}

/// How requests authenticate.
#[derive(Debug)]
enum Auth {
    None,
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// Why a client could not be built or a POST failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    /// The configured URL is unusable.
    #[error("invalid Alertmanager URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS files, ...).
    #[error("cannot build HTTP client for Alertmanager {url}: {cause}")]
    Client {
        /// The alerts endpoint.
        url: String,
        /// Why.
        cause: String,
    },
    /// A password or token file cannot be read.
    #[error("cannot read {}: {reason}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The request failed or Alertmanager refused it (the HTTP layer's wording).
    #[error("{message}")]
    Post {
        /// The HTTP status, when Alertmanager answered.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
}

impl AlertmanagerError {
    /// Alertmanager refused the alerts themselves (HTTP 400, an invalid alert): sending the
    /// same batch again cannot help. Anything else (unreachable, 5xx, 401 until the password
    /// file is fixed, ...) may heal.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            AlertmanagerError::Post {
                status: Some(400),
                ..
            }
        )
    }
}

/// A client for one Alertmanager.
#[derive(Debug)]
pub struct AlertmanagerClient {
    alerts_url: Url,
    shown: String,
    http: HttpClient,
    auth: Auth,
}

impl AlertmanagerClient {
    /// Checks the configuration and builds the client (loading the TLS files); sends nothing.
    pub fn new(cfg: &AlertmanagerConfig) -> Result<Self, AlertmanagerError> {
        let invalid = |reason: String| AlertmanagerError::InvalidUrl {
            url: cfg.url.clone(),
            reason,
        };
        let mut base = http::parse_base_url(cfg.url.trim()).map_err(|e| invalid(e.to_string()))?;
        if let Some(prefix) = &cfg.path_prefix {
            base = http::join_below(&base, prefix.trim_start_matches('/'))
                .map_err(|e| invalid(e.to_string()))?;
        }
        let alerts_url =
            http::join_below(&base, "api/v2/alerts").map_err(|e| invalid(e.to_string()))?;
        let shown = http::redact(&alerts_url);
        let tls = cfg.tls.as_ref().map(|t: &TlsConfig| TlsFiles {
            ca_file: t.ca_file.as_deref(),
            cert_file: t.cert_file.as_deref(),
            key_file: t.key_file.as_deref(),
            server_name: None,
            insecure_skip_verify: false,
        });
        let http = HttpClient::new(&ClientConfig {
            timeout: cfg.timeout.0,
            no_proxy: false,
            tls,
            // As Prometheus' Alertmanager client (http_config's default).
            follow_redirects: true,
        })
        .map_err(|e| AlertmanagerError::Client {
            url: shown.clone(),
            cause: e.to_string(),
        })?;
        let auth = match (
            &cfg.basic_auth,
            Secret::from(&cfg.bearer_token, &cfg.bearer_token_file),
        ) {
            (Some(b), _) => Auth::Basic {
                username: b.username.clone(),
                password: Secret::from(&b.password, &b.password_file)
                    .unwrap_or(Secret::Inline(String::new())),
            },
            (None, Some(token)) => Auth::Bearer(token),
            (None, None) => Auth::None,
        };
        Ok(AlertmanagerClient {
            alerts_url,
            shown,
            http,
            auth,
        })
    }

    /// The alerts endpoint without any password (the `alertmanager` label, log lines).
    pub fn name(&self) -> &str {
        &self.shown
    }

    /// Posts `alerts` in one request; `Ok` once Alertmanager answered 2xx.
    pub async fn post(&self, alerts: &[Alert]) -> Result<(), AlertmanagerError> {
        let req = self
            .http
            .post_json(self.alerts_url.clone(), &alerts)
            .map_err(|e| AlertmanagerError::Post {
                status: None,
                message: format!("encoding alerts: {e}"),
            })?;
        let req = match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.read()?)),
            Auth::Bearer(token) => req.bearer_auth(token.read()?),
        };
        self.http
            .fetch_ok(req, MAX_ANSWER_BYTES)
            .await
            .map(|_| ())
            .map_err(|e| AlertmanagerError::Post {
                status: e.status(),
                message: e.chain(),
            })
    }
}
