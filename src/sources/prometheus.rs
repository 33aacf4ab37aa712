//! A small client for Prometheus's HTTP API: instant queries (`GET /api/v1/query`) only.
//!
//! Sample values are returned as `f64` exactly as Prometheus reports them, so `NaN` and `±Inf`
//! survive; what they mean (for example `histogram_quantile` over an idle histogram gives `NaN`)
//! is the caller's decision. Responses are read in chunks and capped at [`MAX_RESPONSE_BYTES`];
//! every request (connect, headers and body) is bounded by the client's timeout.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::http::{self, ClientConfig, HttpClient, HttpError, Reply, RequestAuth, TlsFiles};
use crate::config::HttpClientConfig;
use crate::domain::Labels;

/// Largest response body accepted from Prometheus, in bytes (16 MiB).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How much of an unparseable body is quoted in an error message.
const SNIPPET_CHARS: usize = 200;

/// A client for one Prometheus server; `Send + Sync`, meant to be shared behind an `Arc`.
pub struct PromClient {
    /// `{base}/api/v1/query` without a query string.
    query_url: Url,
    /// `query_url` with any password removed, for messages.
    shown_url: String,
    http: HttpClient,
    /// Credentials and extra headers of every request (`prometheus.http_config`).
    auth: RequestAuth,
}

/// One sample of an instant-query result: its label set and value (`NaN`/`±Inf` kept as such).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' labels, including `__name__` when Prometheus kept it.
    pub labels: Labels,
    /// The sample value.
    pub value: f64,
}

/// Why a Prometheus query (or building the client) failed.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The base URL given to [`PromClient::new`] is unusable.
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A credential or header file cannot be read (its content is never shown).
    #[error("Prometheus at {url}: cannot read {cause}")]
    Credentials {
        /// The query endpoint.
        url: String,
        /// The key and file, and why.
        cause: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client for Prometheus at {url}: {cause}")]
    Client {
        /// The query endpoint.
        url: String,
        /// The underlying error, with its causes.
        cause: String,
    },
    /// The request could not be sent or its response not read (connection refused, reset, ...).
    #[error("Prometheus query {query:?} at {url}: request failed: {cause}")]
    Request {
        /// The query endpoint.
        url: String,
        /// The PromQL expression.
        query: String,
        /// The underlying error, with its causes.
        cause: String,
    },
    /// No complete response arrived within the client's timeout.
    #[error("Prometheus query {query:?} at {url}: no complete response within {timeout:?}")]
    Timeout {
        /// The query endpoint.
        url: String,
        /// The PromQL expression.
        query: String,
        /// The configured per-request timeout.
        timeout: Duration,
    },
    /// The response body exceeded [`MAX_RESPONSE_BYTES`].
    #[error("Prometheus query {query:?} at {url}: response larger than {limit} bytes")]
    TooLarge {
        /// The query endpoint.
        url: String,
        /// The PromQL expression.
        query: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Prometheus answered `"status": "error"` (HTTP 400 `bad_data`, 422 `execution`, 503 `timeout`, ...).
    #[error("Prometheus query {query:?} at {url}: HTTP {status}, {error_type}: {error}")]
    Api {
        /// The query endpoint.
        url: String,
        /// The PromQL expression.
        query: String,
        /// The HTTP status code.
        status: u16,
        /// Prometheus's `errorType` (`bad_data`, `execution`, `timeout`, ...).
        error_type: String,
        /// Prometheus's `error` text.
        error: String,
    },
    /// A non-2xx answer that is not a Prometheus API error document (a proxy's error page, ...).
    #[error("Prometheus query {query:?} at {url}: HTTP {status}: {body}")]
    Status {
        /// The query endpoint.
        url: String,
        /// The PromQL expression.
        query: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A 2xx answer that is not a usable instant-query result (not JSON, a matrix, a bad value, ...).
    #[error("Prometheus query {query:?} at {url}: invalid response: {reason}")]
    InvalidResponse {
        /// The query endpoint.
        url: String,
        /// The PromQL expression.
        query: String,
        /// What is wrong with the response.
        reason: String,
    },
}

impl PromClient {
    /// Validates `base_url` (`http(s)://host[:port][/prefix]`) and builds a client whose requests each take at most `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<PromClient, PromError> {
        Self::with_http_config(base_url, timeout, &HttpClientConfig::default())
    }

    /// Like [`PromClient::new`], with authentication, TLS and extra headers from `http`
    /// (validated by the configuration); every file it names is read once now.
    pub fn with_http_config(
        base_url: &str,
        timeout: Duration,
        http: &HttpClientConfig,
    ) -> Result<PromClient, PromError> {
        let invalid = |reason: String| PromError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let base = http::parse_base_url(base_url).map_err(|e| invalid(e.to_string()))?;
        if timeout.is_zero() {
            return Err(invalid("timeout must be positive".into()));
        }
        let query_url =
            http::join_below(&base, "api/v1/query").map_err(|e| invalid(e.to_string()))?;
        let shown_url = http::redact(&query_url);
        let auth = RequestAuth::new(http).map_err(|e| PromError::Credentials {
            url: shown_url.clone(),
            cause: e.to_string(),
        })?;
        let tls = http.tls_config.as_ref().map(|t| TlsFiles {
            ca_file: t.ca_file.as_deref(),
            cert_file: t.cert_file.as_deref(),
            key_file: t.key_file.as_deref(),
            server_name: t.server_name.as_deref(),
            insecure_skip_verify: t.insecure_skip_verify,
        });
        let client = HttpClient::new(&ClientConfig {
            timeout,
            no_proxy: false,
            tls,
            follow_redirects: http.follow_redirects.unwrap_or(true),
        })
        .map_err(|e| PromError::Client {
            url: shown_url.clone(),
            cause: e.to_string(),
        })?;
        Ok(PromClient {
            query_url,
            shown_url,
            http: client,
            auth,
        })
    }

    /// Runs an instant query (`GET {base}/api/v1/query?query=...`) and returns its samples; a scalar gives one unlabelled sample.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PromError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut().append_pair("query", promql);
        let reply = self.fetch(url, promql).await?;
        self.decode(reply.status.as_u16(), &reply.body, promql)
    }

    /// When the Prometheus server started (Unix seconds), from `/api/v1/status/runtimeinfo`:
    /// rate windows reaching back before that are not full yet.
    pub async fn start_time(&self) -> Result<f64, PromError> {
        const WHAT: &str = "(runtimeinfo)";
        let url = self
            .query_url
            .join("status/runtimeinfo")
            .map_err(|e| self.invalid(WHAT, e.to_string()))?;
        let Reply { status, body } = self.fetch(url, WHAT).await?;
        let status = status.as_u16();
        if !(200..300).contains(&status) {
            return Err(PromError::Status {
                url: self.shown_url.clone(),
                query: WHAT.to_owned(),
                status,
                body: snippet(&body),
            });
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.invalid(WHAT, e.to_string()))?;
        let t = v["data"]["startTime"]
            .as_str()
            .ok_or_else(|| self.invalid(WHAT, "no data.startTime".into()))?;
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis() as f64 / 1000.0)
            .map_err(|e| self.invalid(WHAT, format!("startTime `{t}`: {e}")))
    }

    fn invalid(&self, what: &str, reason: String) -> PromError {
        PromError::InvalidResponse {
            url: self.shown_url.clone(),
            query: what.to_owned(),
            reason,
        }
    }

    /// How many queries this client has sent (successful or not).
    pub fn requests_total(&self) -> u64 {
        self.http.requests_total()
    }

    /// GETs `url` and returns the status and the (size-limited) body.
    async fn fetch(&self, url: Url, what: &str) -> Result<Reply, PromError> {
        let req = self.http.get(url).header(ACCEPT, "application/json");
        let req = self.auth.apply(req).map_err(|e| PromError::Credentials {
            url: self.shown_url.clone(),
            cause: e.to_string(),
        })?;
        self.http
            .fetch(req, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                HttpError::TooLarge { limit } => PromError::TooLarge {
                    url: self.shown_url.clone(),
                    query: what.to_owned(),
                    limit,
                },
                e if e.is_timeout() => self.timeout_error(what),
                e => PromError::Request {
                    url: self.shown_url.clone(),
                    query: what.to_owned(),
                    cause: e.chain(),
                },
            })
    }

    fn decode(&self, status: u16, body: &[u8], promql: &str) -> Result<Vec<Sample>, PromError> {
        let invalid = |reason: String| PromError::InvalidResponse {
            url: self.shown_url.clone(),
            query: promql.to_owned(),
            reason,
        };
        let success = (200..300).contains(&status);
        let envelope: Envelope = match serde_json::from_slice(body) {
            Ok(env) => env,
            Err(e) if success => {
                return Err(invalid(format!(
                    "body is not a Prometheus API response ({e}): {}",
                    snippet(body)
                )));
            }
            Err(_) => {
                return Err(PromError::Status {
                    url: self.shown_url.clone(),
                    query: promql.to_owned(),
                    status,
                    body: snippet(body),
                });
            }
        };
        if envelope.status == "error" {
            return Err(PromError::Api {
                url: self.shown_url.clone(),
                query: promql.to_owned(),
                status,
                error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
                error: envelope.error.unwrap_or_default(),
            });
        }
        if !success {
            return Err(PromError::Status {
                url: self.shown_url.clone(),
                query: promql.to_owned(),
                status,
                body: snippet(body),
            });
        }
        if envelope.status != "success" {
            return Err(invalid(format!("unknown status {:?}", envelope.status)));
        }
        let data = envelope
            .data
            .ok_or_else(|| invalid("no \"data\" in a success response".into()))?;
        let result = data.result.map_or("null", RawValue::get);
        match data.result_type.as_str() {
            "vector" => {
                let items: Vec<VectorItem> = serde_json::from_str(result)
                    .map_err(|e| invalid(format!("malformed vector result: {e}")))?;
                items
                    .into_iter()
                    .map(|item| {
                        let Some(value) = item.value else {
                            return Err(invalid(format!(
                                "sample {:?} has no float value (native histogram?)",
                                item.metric
                            )));
                        };
                        Ok(Sample {
                            labels: item.metric,
                            value: parse_value(&value.1).map_err(invalid)?,
                        })
                    })
                    .collect()
            }
            "scalar" => {
                let point: Point = serde_json::from_str(result)
                    .map_err(|e| invalid(format!("malformed scalar result: {e}")))?;
                Ok(vec![Sample {
                    labels: Labels::default(),
                    value: parse_value(&point.1).map_err(invalid)?,
                }])
            }
            other => Err(invalid(format!(
                "unexpected result type {other:?} (an instant query needs a vector or scalar)"
            ))),
        }
    }

    fn timeout_error(&self, promql: &str) -> PromError {
        PromError::Timeout {
            url: self.shown_url.clone(),
            query: promql.to_owned(),
            timeout: self.http.timeout(),
        }
    }
}

impl fmt::Debug for PromClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromClient")
            .field("url", &self.shown_url)
            .field("timeout", &self.http.timeout())
            .field("requests", &self.requests_total())
            .finish()
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `data`; its `result` is decoded once its type is known, straight from the body's text (no
/// intermediate `Value` tree: at 1000 stores a result holds thousands of samples).
#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: Labels,
    #[serde(default)]
    value: Option<Point>,
}

/// `[unix_time, "value"]`.
#[derive(Deserialize)]
struct Point(#[allow(dead_code)] f64, serde_json::Value);

/// Prometheus formats values with Go's `strconv.FormatFloat(v, 'f', -1, 64)`: `"1.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`, `"1e+06"`.
fn parse_value(v: &serde_json::Value) -> Result<f64, String> {
    match v {
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "+Inf" | "Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            other => other
                .parse::<f64>()
                .map_err(|_| format!("sample value {other:?} is not a number")),
        },
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("sample value {n} is not a number")),
        other => Err(format!("sample value {other} is not a string")),
    }
}

/// The start of a body for an error message.
fn snippet(body: &[u8]) -> String {
    http::body_snippet(body, SNIPPET_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PromClient>();
        assert_send_sync::<PromError>();
    }

    #[test]
    fn values_parse_like_go_formats_them() {
        let s = |v: &str| parse_value(&serde_json::Value::String(v.into()));
        assert_eq!(s("1.5"), Ok(1.5));
        assert_eq!(s("1e+06"), Ok(1e6));
        assert_eq!(s("-0.25"), Ok(-0.25));
        assert_eq!(s("+Inf"), Ok(f64::INFINITY));
        assert_eq!(s("-Inf"), Ok(f64::NEG_INFINITY));
        assert!(s("NaN").unwrap().is_nan());
        assert!(s("fast").is_err());
        assert!(parse_value(&serde_json::Value::Null).is_err());
    }

    #[test]
    fn urls_are_validated_and_prefixes_kept() {
        let t = Duration::from_secs(1);
        for bad in [
            "",
            "127.0.0.1:9090",
            "ftp://h/",
            "http://",
            "http://h/?x=1",
            "http://h/#f",
        ] {
            assert!(
                matches!(PromClient::new(bad, t), Err(PromError::InvalidUrl { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(PromClient::new("http://h", Duration::ZERO).is_err());
        let c = PromClient::new("http://h:9090", t).unwrap();
        assert_eq!(c.query_url.as_str(), "http://h:9090/api/v1/query");
        let c = PromClient::new("http://h/prom", t).unwrap();
        assert_eq!(c.query_url.as_str(), "http://h/prom/api/v1/query");
        let c = PromClient::new("https://u:secret@h/prom/", t).unwrap();
        assert_eq!(c.query_url.as_str(), "https://u:secret@h/prom/api/v1/query");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn snippets_are_bounded() {
        let long = "x".repeat(1000);
        assert_eq!(snippet(long.as_bytes()).chars().count(), SNIPPET_CHARS + 1);
        assert_eq!(snippet(b"  "), "(empty body)");
    }
}
