//! Validation of the configuration's own values (ranges, formats, combinations). Invariant
//! overrides and custom invariants are validated against the invariant catalog by
//! `invariants::definitions`, which owns that knowledge.

use std::time::Duration;

use super::{
    AlertingConfig, Config, ConfigError, DockerLogsConfig, MIN_LOG_POLL_INTERVAL, TlsConfig,
};

/// `host:port` that is not a listen address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not host:port (e.g. :19180, 127.0.0.1:19180, [::1]:19180 or localhost:19180)")]
pub struct ListenAddressError(String);

/// Where the HTTP server listens (`web.listen_address`), as Go's `net.Listen("tcp", ...)`
/// reads it, except that a host name listens on every address it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// `:port`, `0.0.0.0:port` or `[::]:port`: every IPv4 and IPv6 address (one dual-stack
    /// socket; IPv4 only where the host has no IPv6).
    Any(u16),
    /// One IP address, as written (`127.0.0.1:port`, `[::1]:port`).
    Ip(std::net::SocketAddr),
    /// A host name and port, resolved when the server starts.
    Host(String, u16),
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Any(p) => write!(f, ":{p}"),
            ListenAddress::Ip(a) => write!(f, "{a}"),
            ListenAddress::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Longest accepted `cluster_name`, in bytes.
pub const MAX_CLUSTER_NAME: usize = 128;

/// A `cluster` label value: not empty, at most [`MAX_CLUSTER_NAME`] bytes, no control characters.
fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty (leave it out for no `cluster` label)".into());
    }
    if name.len() > MAX_CLUSTER_NAME {
        return Err(format!("longer than {MAX_CLUSTER_NAME} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} holds a control character"));
    }
    Ok(())
}

impl Config {
    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::new(key, message);
        if self.pd.endpoints.is_empty() {
            return Err(bad(
                "pd.endpoints",
                "at least one PD endpoint is needed".into(),
            ));
        }
        for (i, e) in self.pd.endpoints.iter().enumerate() {
            if e.trim().is_empty() {
                return Err(bad(&format!("pd.endpoints[{i}]"), "empty endpoint".into()));
            }
        }
        if let Some(name) = &self.cluster_name {
            check_cluster_name(name).map_err(|m| bad("cluster_name", m))?;
            if self.alerting.external_labels.contains_key("cluster") {
                return Err(bad(
                    "alerting.external_labels.cluster",
                    "cluster_name already sets the alerts' `cluster` label; set one of the two"
                        .into(),
                ));
            }
        }
        if self.pd.timeout.0.is_zero() {
            return Err(bad("pd.timeout", "must be greater than 0".into()));
        }
        if self.pd.max_response_bytes == 0 {
            return Err(bad(
                "pd.max_response_bytes",
                "must be greater than 0".into(),
            ));
        }
        if self.prometheus.timeout.0.is_zero() {
            return Err(bad("prometheus.timeout", "must be greater than 0".into()));
        }
        if self.pd.health_interval.0.is_zero() {
            return Err(bad("pd.health_interval", "must be greater than 0".into()));
        }
        check_tls("pd.tls", self.pd.tls.as_ref())?;
        if self.poll_interval.0 < Duration::from_millis(100) {
            return Err(bad("poll_interval", "must be at least 100ms".into()));
        }
        if let Some(u) = &self.prometheus.url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(bad(
                "prometheus.url",
                format!("`{u}` must start with http:// or https://"),
            ));
        }
        self.prometheus
            .http_config
            .validate("prometheus.http_config")?;
        if let Some(sel) = &self.prometheus.selector {
            parse_selector(sel).map_err(|m| bad("prometheus.selector", m))?;
        }
        if let Some(m) = &self.prometheus.store_mapping {
            if !valid_label_name(&m.label) {
                return Err(bad(
                    "prometheus.store_mapping.label",
                    format!("`{}` is not a Prometheus label name", m.label),
                ));
            }
            crate::domain::MappingRule::new(&m.label, &m.regex)
                .map_err(|e| bad("prometheus.store_mapping.regex", e.to_string()))?;
        }
        let mut sources = std::collections::BTreeSet::new();
        for (i, f) in self.logs.files.iter().enumerate() {
            if f.path.as_os_str().is_empty() {
                return Err(bad(&format!("logs.files[{i}].path"), "empty path".into()));
            }
            if f.is_pattern() {
                crate::domain::PathPattern::parse(&f.path).map_err(|e| {
                    bad(
                        &format!("logs.files[{i}].path"),
                        format!("`{}`: {e}", f.path.display()),
                    )
                })?;
            }
            if !sources.insert(f.source_label()) {
                return Err(bad(
                    &format!("logs.files[{i}].name"),
                    format!("duplicate source `{}`", f.source_label()),
                ));
            }
        }
        self.logs.docker.validate()?;
        if self.logs.poll_interval.0 < MIN_LOG_POLL_INTERVAL {
            return Err(bad(
                "logs.poll_interval",
                format!(
                    "must be at least {}",
                    super::format_duration(MIN_LOG_POLL_INTERVAL)
                ),
            ));
        }
        self.alerting.validate()?;
        if self.logs.max_line_bytes == 0 {
            return Err(bad("logs.max_line_bytes", "must be greater than 0".into()));
        }
        if !self.web.telemetry_path.starts_with('/') || self.web.telemetry_path.len() < 2 {
            return Err(bad(
                "web.telemetry_path",
                format!(
                    "`{}` must start with / and not be /",
                    self.web.telemetry_path
                ),
            ));
        }
        parse_listen_address(&self.web.listen_address)
            .map_err(|m| bad("web.listen_address", m.to_string()))?;
        for (key, d) in [
            ("web.header_read_timeout", self.web.header_read_timeout),
            ("web.idle_timeout", self.web.idle_timeout),
        ] {
            if d.0 < Duration::from_millis(100) {
                return Err(bad(key, "must be at least 100ms".into()));
            }
        }
        if self.web.max_connections == Some(0) {
            return Err(bad(
                "web.max_connections",
                "must be greater than 0 (leave it out for the default)".into(),
            ));
        }
        Ok(())
    }
}

/// `cert_file` and `key_file` come together.
fn check_tls(key: &str, tls: Option<&TlsConfig>) -> Result<(), ConfigError> {
    match tls {
        Some(t) if t.cert_file.is_some() != t.key_file.is_some() => Err(ConfigError::new(
            key,
            "cert_file and key_file must be given together",
        )),
        _ => Ok(()),
    }
}

impl AlertingConfig {
    /// Checks the section; errors name the key (`alerting.…`).
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |k: String, m: String| Err(ConfigError::new(format!("alerting.{k}"), m));
        if self.resend_interval.0 < Duration::from_millis(100) {
            return bad("resend_interval".into(), "must be at least 100ms".into());
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity".into(), "must be greater than 0".into());
        }
        for (name, value) in &self.external_labels {
            if !valid_label_name(name) || name.starts_with("__") {
                return bad(
                    format!("external_labels.{name}"),
                    format!("`{name}` is not a label name (or is reserved: `__`)"),
                );
            }
            if value.is_empty() {
                return bad(
                    format!("external_labels.{name}"),
                    "an empty value is no label".into(),
                );
            }
        }
        let mut endpoints = std::collections::BTreeSet::new();
        for (i, am) in self.alertmanagers.iter().enumerate() {
            let k = |f: &str| format!("alertmanagers[{i}].{f}");
            let u = am.url.trim();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return bad(
                    k("url"),
                    format!("`{u}` must start with http:// or https://"),
                );
            }
            let endpoint = format!(
                "{}{}",
                u.trim_end_matches('/'),
                am.path_prefix
                    .as_deref()
                    .unwrap_or("")
                    .trim_end_matches('/')
            );
            if !endpoints.insert(endpoint.clone()) {
                return bad(
                    k("url"),
                    format!("`{endpoint}` is configured twice (each Alertmanager once)"),
                );
            }
            if am.path_prefix.as_ref().is_some_and(|p| !p.starts_with('/')) {
                return bad(k("path_prefix"), "must start with /".into());
            }
            if am.timeout.0.is_zero() {
                return bad(k("timeout"), "must be greater than 0".into());
            }
            check_tls(&format!("alerting.{}", k("tls")), am.tls.as_ref())?;
            if let Some(b) = &am.basic_auth
                && b.password.is_some() == b.password_file.is_some()
            {
                return bad(
                    k("basic_auth"),
                    "give exactly one of password and password_file".into(),
                );
            }
            if am.bearer_token.is_some() && am.bearer_token_file.is_some() {
                return bad(
                    k("bearer_token"),
                    "give bearer_token or bearer_token_file, not both".into(),
                );
            }
            if am.basic_auth.is_some()
                && (am.bearer_token.is_some() || am.bearer_token_file.is_some())
            {
                return bad(
                    k("basic_auth"),
                    "basic_auth and a bearer token are mutually exclusive".into(),
                );
            }
        }
        Ok(())
    }
}

impl DockerLogsConfig {
    /// Checks the section; errors name the key (relative to `logs.docker`).
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |k: String, m: &str| Err(ConfigError::new(format!("logs.docker.{k}"), m));
        if let Some(h) = &self.host {
            let h = h.trim();
            let ok = h.starts_with('/')
                || ["unix://", "tcp://", "http://"]
                    .iter()
                    .any(|p| h.strip_prefix(p).is_some_and(|r| !r.is_empty()));
            if !ok {
                return bad(
                    "host".into(),
                    &format!(
                        "`{h}`: expected unix:///path, /path/to.sock, tcp://host:port or http://host:port"
                    ),
                );
            }
        }
        for (i, c) in self.containers.iter().enumerate() {
            if c.trim().is_empty() || c.contains('/') {
                return bad(
                    format!("containers[{i}]"),
                    &format!("`{c}` is not a container name or pattern"),
                );
            }
        }
        for (i, l) in self.labels.iter().enumerate() {
            if l.split_once('=')
                .map_or(l.as_str(), |(k, _)| k)
                .trim()
                .is_empty()
            {
                return bad(
                    format!("labels[{i}]"),
                    &format!("`{l}`: expected key=value or key"),
                );
            }
        }
        for (name, store) in &self.stores {
            if name.trim().is_empty() || store.trim().is_empty() {
                return bad(
                    format!("stores.{name}"),
                    "container name and store id must not be empty",
                );
            }
        }
        if self.enabled && self.containers.is_empty() && self.labels.is_empty() {
            return bad(
                "containers".into(),
                "give container names or patterns, or labels, to select containers (`*` follows every container)",
            );
        }
        Ok(())
    }
}

/// Whether `s` is a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn valid_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Splits PromQL label matchers (`a="x",b=~"y.*"`, optionally in braces; empty: none) into one
/// normalised matcher each (`a="x"`); the error says which part is not a matcher.
pub fn parse_selector(s: &str) -> Result<Vec<String>, String> {
    let body = s.trim();
    let body = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or(body);
    let mut out = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if !valid_label_name(name) {
            return Err(format!("expected a label name at `{rest}`"));
        }
        let after = rest[name_len..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| after.starts_with(op))
            .ok_or_else(|| format!("expected =, !=, =~ or !~ after `{name}`"))?;
        let after = after[op.len()..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
            .ok_or_else(|| format!("the value of `{name}` must be quoted"))?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices().skip(1) {
            match c {
                '\\' if quote != '`' && !escaped => escaped = true,
                c if c == quote && !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.ok_or_else(|| format!("the value of `{name}` is not closed"))?;
        out.push(format!("{name}{op}{}", &after[..=end]));
        rest = after[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected `,` before `{rest}`"));
        }
    }
    Ok(out)
}

/// Parses `:port`, `ip:port`, `[v6]:port` or `host:port` (a DNS name: letters, digits, `-`,
/// `_` and `.`, not ending in a number); the port is a number (`0`: any free port).
pub fn parse_listen_address(s: &str) -> Result<ListenAddress, ListenAddressError> {
    let bad = || ListenAddressError(s.to_owned());
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Ok(ListenAddress::Any(port));
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: std::net::Ipv6Addr = v6.parse().map_err(|_| bad())?;
        return Ok(ip_address(std::net::IpAddr::V6(ip), port));
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(ip_address(std::net::IpAddr::V4(ip), port));
    }
    let name_ok = host.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    });
    // An all-numeric last label is a mistyped IPv4 address (`10.0.0.256`), never a name.
    let numeric_tld = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()));
    if !name_ok || numeric_tld || host.len() > 253 {
        return Err(bad());
    }
    Ok(ListenAddress::Host(host.to_owned(), port))
}

/// A wildcard IP listens everywhere, both families (as Go does for `0.0.0.0` and `[::]`).
fn ip_address(ip: std::net::IpAddr, port: u16) -> ListenAddress {
    if ip.is_unspecified() {
        ListenAddress::Any(port)
    } else {
        ListenAddress::Ip(std::net::SocketAddr::new(ip, port))
    }
}
