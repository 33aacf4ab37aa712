//! Credentials and extra headers of a client (`basic_auth`, `authorization`, `http_headers` of
//! an `http_config`): literal values, or files read at every request (as Prometheus does), so a
//! rotated password or token is used without a restart. Every file is read once when the
//! client is built, so a missing one fails at start. Values are marked sensitive (hyper never
//! logs them) and errors name the file, never its content.

use std::path::{Path, PathBuf};

use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::config::{HttpClientConfig, Secret};

/// A value from the configuration or from a file.
#[derive(Clone, Debug)]
enum Value {
    /// Given in the configuration (shown as `<secret>` in `Debug`).
    Fixed(Secret),
    /// The trimmed content of a file, read at every request.
    File {
        /// The key that names it, e.g. `basic_auth.password_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
}

impl Value {
    fn fixed(s: &str) -> Value {
        Value::Fixed(Secret::from(s))
    }

    fn file(key: &'static str, path: &Path) -> Value {
        Value::File {
            key,
            path: path.to_owned(),
        }
    }

    /// The value now.
    fn read(&self) -> Result<String, AuthError> {
        match self {
            Value::Fixed(s) => Ok(s.expose().to_owned()),
            Value::File { key, path } => std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| AuthError {
                    key,
                    path: path.clone(),
                    reason: e.to_string(),
                }),
        }
    }
}

/// One thing added to every request.
#[derive(Clone, Debug)]
enum Entry {
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: Value, password: Value },
    /// `Authorization: <scheme> <credentials>`.
    Scheme { scheme: String, credentials: Value },
    /// One value of an extra header (a header with several values has several entries).
    Header { name: HeaderName, value: Value },
}

/// A credential or header file that cannot be used; names the file, never its content.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{key} {}: {reason}", path.display())]
pub(crate) struct AuthError {
    /// The configuration key naming the file.
    pub(crate) key: &'static str,
    /// The file.
    pub(crate) path: PathBuf,
    /// Why it cannot be used.
    pub(crate) reason: String,
}

/// Credentials and extra headers for every request of one client.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestAuth {
    entries: Vec<Entry>,
}

impl RequestAuth {
    /// From an `http_config` (validated: names are header names, no reserved header); every
    /// file is read once here, so that a missing one fails now.
    pub(crate) fn new(cfg: &HttpClientConfig) -> Result<RequestAuth, AuthError> {
        let mut entries = Vec::new();
        if let Some(b) = &cfg.basic_auth {
            let user = match (&b.username, &b.username_file) {
                (_, Some(f)) => Value::file("basic_auth.username_file", f),
                (u, None) => Value::fixed(u.as_deref().unwrap_or("")),
            };
            let password = match (&b.password, &b.password_file) {
                (_, Some(f)) => Value::file("basic_auth.password_file", f),
                (p, None) => Value::fixed(p.as_ref().map_or("", Secret::expose)),
            };
            entries.push(Entry::Basic { user, password });
        }
        if let Some(a) = &cfg.authorization {
            let credentials = match (&a.credentials, &a.credentials_file) {
                (_, Some(f)) => Value::file("authorization.credentials_file", f),
                (c, None) => Value::fixed(c.as_ref().map_or("", Secret::expose)),
            };
            entries.push(Entry::Scheme {
                scheme: a.scheme().to_owned(),
                credentials,
            });
        }
        for (name, h) in &cfg.http_headers {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                return Err(AuthError {
                    key: "http_headers",
                    path: PathBuf::from(name),
                    reason: "not an HTTP header name".into(),
                });
            };
            let values = h.values.iter().map(|v| Value::fixed(v));
            let secrets = h.secrets.iter().map(|s| Value::Fixed(s.clone()));
            let files = h.files.iter().map(|f| Value::file("http_headers files", f));
            for value in values.chain(secrets).chain(files) {
                entries.push(Entry::Header {
                    name: name.clone(),
                    value,
                });
            }
        }
        let auth = RequestAuth { entries };
        auth.check()?;
        Ok(auth)
    }

    /// Reads every value once, as [`apply`](Self::apply) will.
    fn check(&self) -> Result<(), AuthError> {
        for e in &self.entries {
            match e {
                Entry::Basic { user, password } => {
                    user.read()?;
                    password.read()?;
                }
                Entry::Scheme {
                    scheme,
                    credentials,
                } => {
                    sensitive(&format!("{scheme} {}", credentials.read()?), credentials)?;
                }
                Entry::Header { value, .. } => {
                    sensitive(&value.read()?, value)?;
                }
            }
        }
        Ok(())
    }

    /// `req` with the credentials and headers, files read now.
    pub(crate) fn apply(&self, mut req: RequestBuilder) -> Result<RequestBuilder, AuthError> {
        for e in &self.entries {
            req = match e {
                Entry::Basic { user, password } => {
                    req.basic_auth(user.read()?, Some(password.read()?))
                }
                Entry::Scheme {
                    scheme,
                    credentials,
                } => req.header(
                    AUTHORIZATION,
                    sensitive(&format!("{scheme} {}", credentials.read()?), credentials)?,
                ),
                Entry::Header { name, value } => {
                    req.header(name.clone(), sensitive(&value.read()?, value)?)
                }
            };
        }
        Ok(req)
    }
}

/// `v` as a header value marked sensitive; `from` names where it came from in the error.
fn sensitive(v: &str, from: &Value) -> Result<HeaderValue, AuthError> {
    let mut h = HeaderValue::from_str(v).map_err(|_| AuthError {
        key: match from {
            Value::File { key, .. } => key,
            // The configuration's values are checked for control characters when it is read.
            Value::Fixed(_) => "a value of http_config",
        },
        path: match from {
            Value::File { path, .. } => path.clone(),
            Value::Fixed(_) => PathBuf::from("(in the configuration)"),
        },
        reason: "holds a character not allowed in an HTTP header".into(),
    })?;
    h.set_sensitive(true);
    Ok(h)
}
