//! `--web.config.file` (`web.config_file`): TLS, client certificates, basic auth, response
//! headers and a rate limit for every endpoint, in exporter-toolkit's web configuration format
//! (github:prometheus/exporter-toolkit `docs/web-configuration.md`, `web/tls_config.go`,
//! `web/handler.go`), so the file a node_exporter or Prometheus already uses works here.
//!
//! This module parses and validates the file ([`load`]: every error names its key and line,
//! every file it names is read and checked) into [`WebSettings`]; `tls.rs` builds the rustls
//! server configuration and runs the handshake, `san.rs` reads a client certificate's subject
//! alternative names, `auth.rs` checks basic auth (bcrypt, with a cache of verified
//! credentials), `guard.rs` wraps the exporter's [`Handler`](crate::http_server::Handler)
//! (rate limit, auth, headers on every path), and `source.rs` ([`WebConfigSource`]) re-reads the
//! file when it or a file it names changes, keeping the previous settings when the new ones are
//! bad.
//!
//! Where this differs from the toolkit (documented in the README): rustls implements TLS 1.2
//! and 1.3 only (`TLS10`/`TLS11` are refused), and neither CBC nor RSA-key-exchange suites nor
//! `CurveP521`; `cert` with `cert_file` (or `key`/`key_file`, `client_ca`/`client_ca_file`) is
//! refused instead of the file silently winning; verifying client certificates needs a client
//! CA (the toolkit falls back to the system roots); `http2` is accepted and ignored (HTTP/1.1
//! only); turning TLS on or off takes a restart (the toolkit decides it at start too).

mod auth;
mod guard;
mod san;
mod source;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::config::{ConfigError, ConfigFileError, Dur, Secret};

pub(crate) use guard::protect;
pub use source::WebConfigSource;
pub(crate) use tls::acceptor;

/// The file as written: exporter-toolkit's keys (unknown keys are refused, as its strict YAML
/// parsing does).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WebConfigFile {
    tls_server_config: TlsServerConfig,
    http_server_config: HttpServerConfig,
    basic_auth_users: BTreeMap<String, Secret>,
    rate_limit: RateLimitConfig,
}

/// `tls_server_config`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TlsServerConfig {
    cert: Option<String>,
    key: Option<Secret>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Vec<String>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Vec<String>,
}

/// `http_server_config`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpServerConfig {
    /// Accepted for compatibility; the exporter serves HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: BTreeMap<String, String>,
}

/// `rate_limit` (toolkit v0.15.0 and later).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RateLimitConfig {
    interval: Option<Dur>,
    burst: Option<u64>,
}

/// The response headers `http_server_config.headers` may set, and the values allowed where
/// the toolkit restricts them (`extraHTTPHeaders` in `web/handler.go`: the set is private on
/// purpose, for consistency across the Prometheus ecosystem).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// A validated web configuration: what the server applies to each connection and request.
#[derive(Debug)]
pub struct WebSettings {
    /// The TLS server configuration (`None`: plain HTTP).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `basic_auth_users` (`None`: no authentication).
    users: Option<auth::Users>,
    /// Headers added to every response.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `rate_limit`: one request per interval, bursts of this many (`None`: unlimited).
    rate_limit: Option<(Duration, u64)>,
    /// One line for the log: what is on.
    summary: String,
}

impl WebSettings {
    /// Whether connections are TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests need basic auth.
    pub fn basic_auth(&self) -> bool {
        self.users.is_some()
    }

    /// What is on, for the log (`TLS (client certificates: ...), basic auth (2 users)`).
    pub fn summary(&self) -> &str {
        &self.summary
    }
}

/// Why a web configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file cannot be read (missing, not a regular file, too large, not UTF-8).
    #[error("{0}")]
    Read(String),
    /// The content is invalid: the key (and line) and what is wrong.
    #[error("web config file {}: {source}", path.display())]
    Invalid {
        /// The web configuration file.
        path: PathBuf,
        /// What is wrong, with its key and line.
        source: ConfigError,
    },
}

/// Reads the files a web configuration names, recording each file's identity just before it
/// is read (so a change after the read is noticed by [`WebConfigSource`]).
#[derive(Debug, Default)]
pub(crate) struct FileReader {
    /// Every file read, with its identity when it was read (`None`: it could not be stat'ed).
    pub(crate) read: Vec<(PathBuf, Option<source::FileStamp>)>,
}

impl FileReader {
    /// The bytes of `path`, its identity recorded first.
    fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.read
            .push((path.to_owned(), source::FileStamp::of(path)));
        std::fs::read(path)
    }
}

/// Reads and validates the web configuration at `path` (and every file it names).
pub fn load(path: &Path) -> Result<WebSettings, WebConfigError> {
    load_with(path, &mut FileReader::default())
}

/// Checks the web configuration at `path` as [`load`] does (for `check-config` and the start).
pub fn check(path: &Path) -> Result<(), WebConfigError> {
    load(path).map(drop)
}

/// [`load`], recording the files read in `reader`.
pub(crate) fn load_with(
    path: &Path,
    reader: &mut FileReader,
) -> Result<WebSettings, WebConfigError> {
    reader
        .read
        .push((path.to_owned(), source::FileStamp::of(path)));
    let text = crate::config::read_bounded(path).map_err(|e| read_error(path, e))?;
    let invalid = |source: ConfigError| WebConfigError::Invalid {
        path: path.to_owned(),
        source: source.located_in(&text),
    };
    let file: WebConfigFile = if text.trim().is_empty() {
        WebConfigFile::default()
    } else {
        serde_saphyr::from_str(&text)
            .map_err(|e| invalid(crate::config::yaml_error(&text, &e.to_string())))?
    };
    // Relative paths are relative to the file's directory, as in the toolkit.
    let dir = path.parent().unwrap_or(Path::new("."));
    let tls = tls::build(&file.tls_server_config, dir, reader).map_err(invalid)?;
    let users = auth::Users::new(&file.basic_auth_users).map_err(invalid)?;
    let headers = headers(&file.http_server_config.headers).map_err(invalid)?;
    let rate_limit = rate_limit(&file.rate_limit).map_err(invalid)?;
    let mut parts = Vec::new();
    match &tls {
        Some(t) => parts.push(format!("TLS ({})", t.summary)),
        None => parts.push("plain HTTP".to_owned()),
    }
    if let Some(u) = &users {
        parts.push(format!("basic auth ({} users)", u.len()));
    }
    if !headers.is_empty() {
        parts.push(format!("{} response headers", headers.len()));
    }
    if let Some((interval, burst)) = rate_limit {
        parts.push(format!(
            "rate limit 1 per {} (burst {burst})",
            crate::config::format_duration(interval)
        ));
    }
    Ok(WebSettings {
        tls: tls.map(|t| t.config),
        users,
        headers,
        rate_limit,
        summary: parts.join(", "),
    })
}

/// A [`WebConfigError::Read`] for `path`.
fn read_error(path: &Path, e: ConfigFileError) -> WebConfigError {
    let why = match e {
        ConfigFileError::Read { source, .. } => source.to_string(),
        ConfigFileError::NotRegular { .. } => "not a regular file".to_owned(),
        ConfigFileError::TooLarge { .. } => {
            format!("larger than {} bytes", crate::config::MAX_CONFIG_BYTES)
        }
        ConfigFileError::Invalid { source, .. } => source.to_string(),
    };
    WebConfigError::Read(format!(
        "cannot read web config file {}: {why}",
        path.display()
    ))
}

/// `http_server_config.headers`, checked against [`ALLOWED_HEADERS`]; blank values are left
/// out ("unset if blank").
fn headers(
    configured: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in configured {
        let key = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(ConfigError::new(
                key,
                format!(
                    "HTTP header {name:?} can not be configured (allowed: {})",
                    names.join(", ")
                ),
            ));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(ConfigError::new(
                key,
                format!("expected one of {allowed:?}, got {value:?}"),
            ));
        }
        if value.trim().is_empty() {
            continue;
        }
        let v = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(&key, "not a valid header value (control characters?)")
        })?;
        out.push((
            HeaderName::from_bytes(name.as_bytes()).expect("allowed name"),
            v,
        ));
    }
    Ok(out)
}

/// `rate_limit`: `None` when `interval` is unset or 0s.
fn rate_limit(c: &RateLimitConfig) -> Result<Option<(Duration, u64)>, ConfigError> {
    let interval = c.interval.map_or(Duration::ZERO, |d| d.0);
    if interval.is_zero() {
        return Ok(None);
    }
    match c.burst {
        None | Some(0) => Err(ConfigError::new(
            "rate_limit.burst",
            "must be at least 1 when rate_limit.interval is set (0 refuses every request)",
        )),
        Some(b) => Ok(Some((interval, b))),
    }
}

#[cfg(test)]
mod tests;
