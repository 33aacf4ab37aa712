//! `prometheus.http_config`: how to reach a Prometheus (or Thanos, Mimir, Cortex) behind
//! authentication, in Prometheus' own `http_config` shape (github:prometheus/common
//! `config/http_config.go` and `config/headers.go`), so that the block a Prometheus already
//! uses can be pasted as it is. Secrets never appear in `Debug`, in `check-config`'s output or
//! in errors: they are shown as `<secret>`, as Prometheus shows them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

use super::ConfigError;

/// A secret from the configuration (a password, a token, a header value).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

/// `basic_auth`: `Authorization: Basic ...` on every request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    /// The user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file holding the user name (read at every request; surrounding white space trimmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    /// The password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A file holding the password (read at every request, so a rotated password is used at
    /// once; surrounding white space trimmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// `authorization`: `Authorization: <type> <credentials>` on every request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    /// The scheme; `Bearer` when unset.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The credentials (a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Secret>,
    /// A file holding the credentials (read at every request; surrounding white space trimmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

impl Authorization {
    /// The scheme sent: `type`, or `Bearer`.
    pub fn scheme(&self) -> &str {
        self.kind
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .unwrap_or("Bearer")
    }
}

/// `tls_config` of a client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// CA bundle (PEM) used as the only trust roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must be valid for, instead of the URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate (testing only: anyone in the middle can read the queries
    /// and the credentials).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// One entry of `http_headers`: the values of one header, literal, secret or from files (each
/// read at every request), all sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderValues {
    /// Literal values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values that are secrets (never shown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Secret>,
    /// Files, each holding one value (surrounding white space trimmed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
}

/// `prometheus.http_config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpClientConfig {
    /// HTTP basic authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// An `Authorization` header (bearer token, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// TLS settings for `https://` URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<ClientTlsConfig>,
    /// Extra headers, e.g. `X-Scope-OrgID` for Mimir, Cortex and Thanos tenants.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub http_headers: BTreeMap<String, HeaderValues>,
    /// Follow HTTP 3xx redirects (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
}

/// Headers the client sets itself or that change the connection (Prometheus'
/// `reservedHeaders`, `config/headers.go`).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-prometheus-scrape-timeout-seconds",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Whether `s` is an HTTP header name (an RFC 9110 token).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `s` can be sent as (part of) a header value: no control character but tab.
fn header_safe(s: &str) -> bool {
    !s.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

impl HttpClientConfig {
    /// Checks the combinations Prometheus refuses too; errors name the key below `at`
    /// (e.g. `prometheus.http_config`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let bad = |k: &str, m: &str| Err(ConfigError::new(format!("{at}.{k}"), m));
        if self.basic_auth.is_some() && self.authorization.is_some() {
            return bad(
                "authorization",
                "at most one of basic_auth and authorization may be configured",
            );
        }
        if let Some(b) = &self.basic_auth {
            if b.username.is_some() && b.username_file.is_some() {
                return bad(
                    "basic_auth.username_file",
                    "username and username_file are mutually exclusive",
                );
            }
            if b.password.is_some() && b.password_file.is_some() {
                return bad(
                    "basic_auth.password_file",
                    "password and password_file are mutually exclusive",
                );
            }
        }
        if let Some(a) = &self.authorization {
            if a.credentials
                .as_ref()
                .is_some_and(|c| !header_safe(c.expose()))
            {
                return bad(
                    "authorization.credentials",
                    "contains a control character (a line break, ...)",
                );
            }
            if a.credentials.is_some() && a.credentials_file.is_some() {
                return bad(
                    "authorization.credentials_file",
                    "credentials and credentials_file are mutually exclusive",
                );
            }
            if a.scheme().eq_ignore_ascii_case("basic") {
                return bad(
                    "authorization.type",
                    "cannot be Basic: use basic_auth instead",
                );
            }
            if !is_token(a.scheme()) {
                return bad("authorization.type", "is not an HTTP authentication scheme");
            }
        }
        if let Some(t) = &self.tls_config {
            if t.cert_file.is_some() != t.key_file.is_some() {
                return bad(
                    "tls_config",
                    "cert_file and key_file must be given together",
                );
            }
            if t.server_name
                .as_deref()
                .is_some_and(|n| n.trim().is_empty())
            {
                return bad("tls_config.server_name", "must not be empty");
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, v) in &self.http_headers {
            let key = format!("http_headers.{name}");
            if !is_token(name) {
                return bad(&key, "is not an HTTP header name");
            }
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return bad(&key, "setting this header is not allowed");
            }
            if !seen.insert(lower) {
                return bad(&key, "is given more than once (header names ignore case)");
            }
            if v.values.is_empty() && v.secrets.is_empty() && v.files.is_empty() {
                return bad(&key, "give values, secrets or files");
            }
            let bad_value = v
                .values
                .iter()
                .map(String::as_str)
                .chain(v.secrets.iter().map(Secret::expose))
                .any(|x| !header_safe(x));
            if bad_value {
                return bad(
                    &key,
                    "a value contains a control character (a line break, ...)",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn secrets_never_show_in_the_effective_configuration_or_debug() {
        let text = "prometheus:\n  url: http://p:9090\n  http_config:\n    basic_auth:\n      username: u\n      password: pa55word\n    http_headers:\n      X-Scope-OrgID:\n        values: [tenant]\n        secrets: [hidden-value]\n";
        let cfg = Config::from_yaml(text).unwrap();
        let shown = cfg.to_yaml();
        for s in [shown.as_str(), &format!("{cfg:?}")] {
            assert!(
                !s.contains("pa55word") && !s.contains("hidden-value"),
                "{s}"
            );
            assert!(s.contains("<secret>") && s.contains("tenant"), "{s}");
        }
        let b = cfg.prometheus.http_config.basic_auth.as_ref().unwrap();
        assert_eq!(b.password.as_ref().unwrap().expose(), "pa55word");
    }
}
