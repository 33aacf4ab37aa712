//! Configuration: the YAML file (`--config.file`), command-line overrides, validation with
//! errors that name the key (and the line, when the YAML parser knows it), and the effective
//! configuration printed by `check-config`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::{DEFAULT_MAX_LINE_BYTES, Op, Severity};

/// Parses `500ms`, `10s`, `5m`, `1h` (also `0s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}`: missing unit (ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a whole number followed by ms, s, m or h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    }
    .ok_or_else(|| format!("`{s}`: too large"))?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way [`parse_duration`] reads it (largest exact unit).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A duration written as `500ms`, `10s`, `5m` or `1h` in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// What to do with TiFlash stores (PD label `engine=tiflash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TiflashMode {
    /// Watch them, labelled `engine="tiflash"` (TiKV-metric invariants skip them).
    #[default]
    Include,
    /// Ignore them entirely.
    Exclude,
}

/// `pd.tls`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle (PEM) that signed PD's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
}

/// `pd`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PdConfig {
    /// PD client URLs; any member may answer.
    pub endpoints: Vec<String>,
    /// Per-request timeout.
    pub timeout: Dur,
    /// How often PD member health and leader are checked (`/members`, `/health`).
    pub health_interval: Dur,
    /// Largest accepted response body in bytes.
    pub max_response_bytes: usize,
    /// Optional TLS.
    pub tls: Option<TlsConfig>,
    /// TiFlash stores: `include` (labelled) or `exclude`.
    pub tiflash: TiflashMode,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            timeout: Dur(Duration::from_secs(5)),
            health_interval: Dur(Duration::from_secs(30)),
            max_response_bytes: 64 << 20,
            tls: None,
            tiflash: TiflashMode::Include,
        }
    }
}

/// `prometheus`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus server that scrapes TiKV; unset disables the
    /// Prometheus-based invariants (they report unknown).
    pub url: Option<String>,
    /// Per-query timeout.
    pub timeout: Dur,
    /// After a Prometheus restart its rate windows have a gap and read low: the built-in
    /// Prometheus invariants stay unknown this long after a restart is seen (`0s` disables).
    pub warmup: Dur,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: None,
            timeout: Dur(Duration::from_secs(5)),
            warmup: Dur(Duration::from_secs(60)),
        }
    }
}

/// Overrides for one built-in invariant (`invariants.<name>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvariantOverride {
    /// Turn the invariant off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Severity label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// How long the violation must hold before it fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<Dur>,
    /// How long a firing invariant must be clear before it resolves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_grace: Option<Dur>,
    /// Threshold in the invariant's unit (seconds, ratio, score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Threshold in percent, for ratio invariants (`70` = 0.7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_percent: Option<f64>,
    /// Hysteresis: a firing invariant resolves only once this no longer holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_threshold: Option<f64>,
    /// PromQL replacing the built-in query (Prometheus-based invariants only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Where a custom invariant is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One series per store: samples mapped by their `store` label or by `instance` through
    /// the store's status address; a store without a sample is unknown.
    #[default]
    Store,
    /// One cluster-wide series (`store=""`) from the first sample.
    Cluster,
}

/// One entry of `custom_invariants`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomInvariant {
    /// Invariant name (the `name` label); `[a-z0-9_]+`, not a built-in name.
    pub name: String,
    /// Instant PromQL query.
    pub query: String,
    /// Comparison that means "violated".
    pub op: Op,
    /// Threshold for `op`.
    pub threshold: f64,
    /// Grace before firing.
    #[serde(default)]
    pub grace: Dur,
    /// Grace before resolving.
    #[serde(default)]
    pub clear_grace: Dur,
    /// Hysteresis threshold.
    #[serde(default)]
    pub clear_threshold: Option<f64>,
    /// Severity label.
    #[serde(default = "default_warning")]
    pub severity: Severity,
    /// Per store or cluster-wide.
    #[serde(default)]
    pub scope: Scope,
}

fn default_warning() -> Severity {
    Severity::Warning
}

/// One entry of `logs.files`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFileConfig {
    /// Path of the log file to follow.
    pub path: PathBuf,
    /// Source name (`source="file:<name>"`); defaults to the file name.
    #[serde(default)]
    pub name: Option<String>,
    /// PD store id this file belongs to (`store` label); empty when unknown.
    #[serde(default)]
    pub store: Option<String>,
    /// Read the existing content too (default: start at the end).
    #[serde(default)]
    pub from_start: bool,
}

impl LogFileConfig {
    /// The `source` label of this file.
    pub fn source_label(&self) -> String {
        let name = self.name.clone().unwrap_or_else(|| {
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.path.display().to_string())
        });
        format!("file:{name}")
    }
}

/// `logs.docker`: follow the stdout/stderr of Docker containers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerLogsConfig {
    /// Follow containers at all.
    pub enabled: bool,
    /// Engine address: `unix:///var/run/docker.sock`, a socket path, or `tcp://host:2375`;
    /// unset: `DOCKER_HOST`, else the local socket.
    pub host: Option<String>,
    /// Container names to follow, exact or glob (`*`, `?`); any one may match.
    pub containers: Vec<String>,
    /// Labels a container must all carry: `key=value`, or `key` for any value.
    pub labels: Vec<String>,
    /// Container name → PD store id, overriding the mapping by address.
    pub stores: BTreeMap<String, String>,
    /// Also read what running containers logged before the exporter started.
    pub from_start: bool,
}

impl DockerLogsConfig {
    /// Checks the section; errors name the key (relative to `logs.docker`).
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: String, m: &str| Err((format!("logs.docker.{k}"), m.to_owned()));
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

/// `logs`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Files to follow.
    pub files: Vec<LogFileConfig>,
    /// Docker containers to follow.
    pub docker: DockerLogsConfig,
    /// How many recent leadership events `/api/v1/leadership` keeps.
    pub history_size: usize,
    /// Longest accepted log line.
    pub max_line_bytes: usize,
    /// How often files are checked for new lines.
    pub poll_interval: Dur,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            files: Vec::new(),
            docker: DockerLogsConfig::default(),
            history_size: 1000,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            poll_interval: Dur(Duration::from_millis(250)),
        }
    }
}

/// `web`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// `host:port`; an empty host listens on all interfaces.
    pub listen_address: String,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: ":19180".into(),
            telemetry_path: "/metrics".into(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// PD access.
    pub pd: PdConfig,
    /// Prometheus access.
    pub prometheus: PrometheusConfig,
    /// How often PD and Prometheus are polled and invariants evaluated.
    pub poll_interval: Dur,
    /// File keeping when each violation became active, so restarts keep grace periods.
    pub state_file: Option<PathBuf>,
    /// Overrides of built-in invariants by name.
    pub invariants: BTreeMap<String, InvariantOverride>,
    /// Invariants defined by a PromQL query.
    pub custom_invariants: Vec<CustomInvariant>,
    /// Log sources.
    pub logs: LogsConfig,
    /// HTTP server.
    pub web: WebConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pd: PdConfig::default(),
            prometheus: PrometheusConfig::default(),
            poll_interval: Dur(Duration::from_secs(10)),
            state_file: None,
            invariants: BTreeMap::new(),
            custom_invariants: Vec::new(),
            logs: LogsConfig::default(),
            web: WebConfig::default(),
        }
    }
}

/// A configuration error naming the key (and line when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `invariants.disk_usage.threshold_percent`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: `{}`: {}", self.key, self.message),
            None => write!(f, "`{}`: {}", self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Names of the built-in invariants (valid keys under `invariants`).
pub const BUILTIN_INVARIANTS: [&str; 6] = [
    "store_down",
    "write_latency_p99",
    "disk_usage",
    "cpu_usage",
    "store_slow",
    "pd_leader",
];

impl Config {
    /// Parses YAML text without validating it (command-line flags may still complete it).
    /// An empty file gives the defaults.
    pub fn parse_yaml(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(text).map_err(|e| yaml_error(text, &e.to_string()))
    }

    /// Parses YAML text and validates it.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let cfg = Config::parse_yaml(text)?;
        cfg.validate_in(text)?;
        Ok(cfg)
    }

    /// Validates, locating the offending key's line in `text` (the file it came from).
    pub fn validate_in(&self, text: &str) -> Result<(), ConfigError> {
        self.validate().map_err(|mut e| {
            e.line = e.line.or_else(|| line_of_key(text, &e.key));
            e
        })
    }

    /// Reads a YAML file without validating it; returns the text too (for error lines).
    pub fn read_file(path: &std::path::Path) -> anyhow::Result<(Config, String)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let cfg = Config::parse_yaml(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        Ok((cfg, text))
    }

    /// Reads and validates a YAML file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Config> {
        let (cfg, text) = Config::read_file(path)?;
        cfg.validate_in(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// The effective configuration as YAML.
    pub fn to_yaml(&self) -> String {
        let mut y =
            serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        if !y.ends_with('\n') {
            y.push('\n');
        }
        y
    }

    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError {
            key: key.to_owned(),
            line: None,
            message,
        };
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
        if self.pd.timeout.0.is_zero() {
            return Err(bad("pd.timeout", "must be greater than 0".into()));
        }
        if self.pd.health_interval.0.is_zero() {
            return Err(bad("pd.health_interval", "must be greater than 0".into()));
        }
        if let Some(tls) = &self.pd.tls
            && tls.cert_file.is_some() != tls.key_file.is_some()
        {
            return Err(bad(
                "pd.tls",
                "cert_file and key_file must be given together".into(),
            ));
        }
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
        for (name, o) in &self.invariants {
            let key = |k: &str| format!("invariants.{name}.{k}");
            if !BUILTIN_INVARIANTS.contains(&name.as_str()) {
                return Err(bad(
                    &format!("invariants.{name}"),
                    format!(
                        "unknown invariant (built-ins: {}; define others under custom_invariants)",
                        BUILTIN_INVARIANTS.join(", ")
                    ),
                ));
            }
            if o.threshold.is_some() && o.threshold_percent.is_some() {
                return Err(bad(
                    &key("threshold_percent"),
                    "give either threshold or threshold_percent".into(),
                ));
            }
            if let Some(p) = o.threshold_percent {
                if !matches!(name.as_str(), "disk_usage" | "cpu_usage") {
                    return Err(bad(
                        &key("threshold_percent"),
                        "only disk_usage and cpu_usage take a percentage".into(),
                    ));
                }
                if !(0.0..=100.0).contains(&p) {
                    return Err(bad(
                        &key("threshold_percent"),
                        format!("{p} is not in 0..=100"),
                    ));
                }
            }
            for (k, v) in [
                ("threshold", o.threshold),
                ("clear_threshold", o.clear_threshold),
            ] {
                if v.is_some_and(|v| !v.is_finite()) {
                    return Err(bad(&key(k), "must be a finite number".into()));
                }
            }
            if o.query.is_some() && !matches!(name.as_str(), "write_latency_p99" | "cpu_usage") {
                return Err(bad(
                    &key("query"),
                    "only Prometheus-based invariants (write_latency_p99, cpu_usage) take a query"
                        .into(),
                ));
            }
            if o.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
                return Err(bad(&key("query"), "empty query".into()));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.custom_invariants.iter().enumerate() {
            let key = |k: &str| format!("custom_invariants[{i}].{k}");
            let valid = !c.name.is_empty()
                && c.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(bad(
                    &key("name"),
                    format!("`{}` must match [a-z0-9_]+", c.name),
                ));
            }
            if BUILTIN_INVARIANTS.contains(&c.name.as_str()) || !seen.insert(c.name.clone()) {
                return Err(bad(
                    &key("name"),
                    format!("`{}` is already defined", c.name),
                ));
            }
            if c.query.trim().is_empty() {
                return Err(bad(&key("query"), "empty query".into()));
            }
            if !c.threshold.is_finite() || c.clear_threshold.is_some_and(|v| !v.is_finite()) {
                return Err(bad(&key("threshold"), "must be a finite number".into()));
            }
        }
        if !self.custom_invariants.is_empty() && self.prometheus.url.is_none() {
            return Err(bad(
                "prometheus.url",
                "custom_invariants need a Prometheus URL".into(),
            ));
        }
        let mut sources = std::collections::BTreeSet::new();
        for (i, f) in self.logs.files.iter().enumerate() {
            if f.path.as_os_str().is_empty() {
                return Err(bad(&format!("logs.files[{i}].path"), "empty path".into()));
            }
            if !sources.insert(f.source_label()) {
                return Err(bad(
                    &format!("logs.files[{i}].name"),
                    format!("duplicate source `{}`", f.source_label()),
                ));
            }
        }
        self.logs
            .docker
            .validate()
            .map_err(|(key, message)| bad(&key, message))?;
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
        parse_listen_address(&self.web.listen_address).map_err(|m| bad("web.listen_address", m))?;
        Ok(())
    }
}

/// Parses `host:port` / `:port` / `[v6]:port` into a socket address (empty host = all IPv4).
pub fn parse_listen_address(s: &str) -> Result<std::net::SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    if let Ok(a) = full.parse() {
        return Ok(a);
    }
    if let Some((host, port)) = full.rsplit_once(':')
        && host == "localhost"
        && let Ok(p) = port.parse::<u16>()
    {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], p)));
    }
    Err(format!(
        "`{s}` is not host:port (e.g. :19180 or 127.0.0.1:19180)"
    ))
}

/// Turns a YAML parser message into a [`ConfigError`] naming the dotted key at its line.
fn yaml_error(text: &str, msg: &str) -> ConfigError {
    let line = extract_line(msg);
    let first = msg.lines().next().unwrap_or(msg).trim();
    // Drop the parser's own "error: line N column M: " prefix; the line is reported separately.
    let message = first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or(first, |(_, rest)| rest)
        .to_owned();
    let key = line
        .and_then(|l| key_at_line(text, l))
        .unwrap_or_else(|| "(document)".into());
    ConfigError { key, line, message }
}

/// The dotted path of the mapping key written on 1-based `line` (`web.listen_address`),
/// found by walking up to less-indented parent keys.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        let (t, indent) = match t.strip_prefix("- ") {
            Some(rest) => (rest, indent + 2),
            None => (t, indent),
        };
        let (k, _) = t.split_once(':')?;
        let k = k.trim().trim_matches('"').trim_matches('\'');
        (!k.is_empty() && !k.starts_with('#') && !k.contains(' ')).then(|| (indent, k.to_owned()))
    };
    let (mut indent, first) = key_of(lines.get(line.checked_sub(1)?)?)?;
    let mut path = vec![first];
    for l in lines[..line - 1].iter().rev() {
        if let Some((i, k)) = key_of(l)
            && i < indent
        {
            path.push(k);
            indent = i;
            if i == 0 {
                break;
            }
        }
    }
    path.reverse();
    Some(path.join("."))
}

fn extract_line(msg: &str) -> Option<usize> {
    let i = msg.find("line ")?;
    let digits: String = msg[i + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The 1-based line where the last segment of a dotted key (`a.b[2].c`) is written as `c:`,
/// searching after its parents' lines.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for seg in key.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if name.is_empty() {
            continue;
        }
        let hit = lines.iter().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{name}:")) || t.starts_with(&format!("\"{name}\":"))
        });
        let Some((i, _)) = hit else { return found };
        from = i;
        found = Some(i + 1);
        if let Some(n) = index {
            // The n-th `- ` item below the key.
            let item = lines
                .iter()
                .enumerate()
                .skip(i + 1)
                .filter(|(_, l)| l.trim_start().starts_with("- "))
                .nth(n);
            let Some((j, _)) = item else { return found };
            from = j;
            found = Some(j + 1);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_is_valid_and_round_trips() {
        let text = include_str!("../examples/config.yml");
        let cfg = Config::from_yaml(text).unwrap();
        assert_eq!(cfg.pd.endpoints.len(), 3);
        assert_eq!(cfg.invariants["disk_usage"].threshold_percent, Some(70.0));
        assert_eq!(cfg.custom_invariants[0].op, Op::Gt);
        assert_eq!(cfg.logs.files[0].source_label(), "file:tikv-1");
        let again = Config::from_yaml(&cfg.to_yaml()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let cfg = Config::from_yaml("").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.poll_interval.0, Duration::from_secs(10));
        assert_eq!(cfg.web.listen_address, ":19180");
    }

    #[test]
    fn every_rule_names_its_key_and_line() {
        let cases = [
            ("pd:\n  endpoints: []\n", "pd.endpoints", Some(2)),
            ("poll_interval: 50ms\n", "poll_interval", Some(1)),
            ("prometheus:\n  url: prom:9090\n", "prometheus.url", Some(2)),
            (
                "invariants:\n  store_down:\n    threshold_percent: 5\n",
                "invariants.store_down.threshold_percent",
                Some(3),
            ),
            (
                "invariants:\n  disk_usage:\n    threshold: 0.5\n    threshold_percent: 50\n",
                "invariants.disk_usage.threshold_percent",
                Some(4),
            ),
            (
                "invariants:\n  disk_usage:\n    query: up\n",
                "invariants.disk_usage.query",
                Some(3),
            ),
            (
                "prometheus:\n  url: http://p:9090\ncustom_invariants:\n  - name: Bad-Name\n    query: up\n    op: \">\"\n    threshold: 1\n",
                "custom_invariants[0].name",
                Some(4),
            ),
            (
                "custom_invariants:\n  - name: x\n    query: up\n    op: \">\"\n    threshold: 1\n",
                "prometheus.url",
                None,
            ),
            (
                "web:\n  telemetry_path: metrics\n",
                "web.telemetry_path",
                Some(2),
            ),
            (
                "logs:\n  files:\n    - path: /a/x.log\n    - path: /b/x.log\n",
                "logs.files[1].name",
                Some(4),
            ),
            ("pd:\n  tls:\n    cert_file: /c.pem\n", "pd.tls", Some(2)),
        ];
        for (yaml, key, line) in cases {
            let e = Config::from_yaml(yaml).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
            assert_eq!(e.line, line, "{yaml}: {e}");
        }
    }

    #[test]
    fn yaml_level_errors_name_the_dotted_key() {
        let e = Config::from_yaml("pd:\n  timeout: 5 seconds\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("pd.timeout", Some(2)));
        assert!(e.message.contains("unknown unit"), "{e}");
        let e =
            Config::from_yaml("logs:\n  files:\n    - path: /x\n      stor: \"1\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("logs.files.stor", Some(4)));
        let e = Config::from_yaml(
            "custom_invariants:\n  - name: x\n    query: up\n    op: \"=>\"\n    threshold: 1\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "custom_invariants.op");
    }

    #[test]
    fn docker_section_defaults_and_validation() {
        let cfg =
            Config::from_yaml("logs:\n  docker:\n    enabled: true\n    containers: [tikv-*]\n")
                .unwrap();
        let d = &cfg.logs.docker;
        assert!(d.enabled && d.host.is_none() && d.labels.is_empty() && !d.from_start);
        assert_eq!(d.containers, ["tikv-*"]);
        assert_eq!(Config::default().logs.docker, DockerLogsConfig::default());
        let full = "logs:\n  docker:\n    enabled: true\n    host: unix:///run/docker.sock\n    labels: [com.docker.compose.service=tikv]\n    stores:\n      tikv0: \"1\"\n    from_start: true\n";
        let cfg = Config::from_yaml(full).unwrap();
        assert_eq!(cfg.logs.docker.stores["tikv0"], "1");
        assert_eq!(Config::from_yaml(&cfg.to_yaml()).unwrap(), cfg);
        let cases = [
            (
                "logs:\n  docker:\n    enabled: true\n",
                "logs.docker.containers",
                Some(2),
            ),
            (
                "logs:\n  docker:\n    host: ftp://x\n",
                "logs.docker.host",
                Some(3),
            ),
            (
                "logs:\n  docker:\n    containers: [a, \"\"]\n",
                "logs.docker.containers[1]",
                Some(3),
            ),
            (
                "logs:\n  docker:\n    labels:\n      - =x\n",
                "logs.docker.labels[0]",
                Some(4),
            ),
            (
                "logs:\n  docker:\n    stores:\n      tikv0: \"\"\n",
                "logs.docker.stores.tikv0",
                Some(4),
            ),
        ];
        for (yaml, key, line) in cases {
            let e = Config::from_yaml(yaml).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, line), "{yaml}: {e}");
        }
        let e = Config::from_yaml("logs:\n  docker:\n    container: [x]\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("logs.docker.container", Some(3)));
    }

    #[test]
    fn durations_and_listen_addresses() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("10x").unwrap_err().contains("unknown unit"));
        for d in ["0s", "250ms", "10s", "5m", "2h", "90s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
        assert_eq!(
            parse_listen_address(":19180").unwrap().to_string(),
            "0.0.0.0:19180"
        );
        assert_eq!(
            parse_listen_address("localhost:1").unwrap().to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(
            parse_listen_address("[::1]:9").unwrap().to_string(),
            "[::1]:9"
        );
        assert!(parse_listen_address("nonsense").is_err());
    }
}
