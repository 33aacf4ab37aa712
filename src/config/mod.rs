//! Configuration: the YAML file (`--config.file`), command-line overrides, validation with
//! errors that name the key (and the line, when the YAML parser knows it), and the effective
//! configuration printed by `check-config`.

mod duration;
mod http_client;
mod validate;
mod yaml;

pub(crate) use yaml::yaml_error;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::domain::Scope;
use crate::domain::{DEFAULT_MAX_LINE_BYTES, Op, Severity};
pub use duration::{Dur, DurationError, format_duration, parse_duration};
pub use http_client::{
    Authorization, BasicAuth, ClientTlsConfig, HeaderValues, HttpClientConfig, Secret,
};
pub use validate::{ListenAddress, ListenAddressError, parse_listen_address, parse_selector};

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

/// `prometheus.store_mapping`: the override for samples the built-in rules cannot map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreMappingConfig {
    /// The sample label to read.
    pub label: String,
    /// Matched against the whole value (like Prometheus relabeling); its first capture group,
    /// or the whole match, is a store id, address or name.
    pub regex: String,
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
    /// PromQL label matchers added to every vector selector of the built-in queries, e.g.
    /// `tidb_cluster="basic",namespace="tidb"`, so two clusters in one Prometheus never mix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Maps samples to stores by a label and a regex, tried before the built-in rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_mapping: Option<StoreMappingConfig>,
    /// Authentication, TLS and extra headers, in Prometheus' own `http_config` shape.
    #[serde(skip_serializing_if = "is_default")]
    pub http_config: HttpClientConfig,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: None,
            timeout: Dur(Duration::from_secs(5)),
            warmup: Dur(Duration::from_secs(60)),
            selector: None,
            store_mapping: None,
            http_config: HttpClientConfig::default(),
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
    /// `pd_etcd`: the WAL fsync p99 above which the PD leader's etcd is too slow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_fsync_threshold: Option<Dur>,
    /// `pd_etcd`: the fraction of `quota-backend-bytes` above which etcd's database is too big.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_quota_ratio: Option<f64>,
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
    /// Path of the log file to follow, or a pattern (`*`, `?` within names) of files, e.g.
    /// `/var/log/pods/*_basic-tikv-*_*/tikv/*.log`.
    pub path: PathBuf,
    /// Source name (`source="file:<name>"`); defaults to the file name (a pattern's: the whole
    /// pattern).
    #[serde(default)]
    pub name: Option<String>,
    /// PD store id this file (every file of a pattern) belongs to (`store` label); unset: none
    /// for a file, the pod in each file's path for a pattern.
    #[serde(default)]
    pub store: Option<String>,
    /// Read the existing content too (default: start at the end).
    #[serde(default)]
    pub from_start: bool,
}

impl LogFileConfig {
    /// Whether `path` is a pattern of files rather than one file.
    pub fn is_pattern(&self) -> bool {
        crate::domain::is_pattern(&self.path)
    }

    /// The `source` label of this file (or pattern).
    pub fn source_label(&self) -> String {
        let name = self.name.clone().unwrap_or_else(|| {
            let file = self.path.file_name().filter(|_| !self.is_pattern());
            file.map(|n| n.to_string_lossy().into_owned())
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
    /// How often files are checked for new lines when no change is notified (inotify); at
    /// least [`MIN_LOG_POLL_INTERVAL`].
    pub poll_interval: Dur,
}

/// The shortest accepted `logs.poll_interval` (and `logs leadership --follow --poll-interval`):
/// shorter only burns CPU per followed file.
pub const MIN_LOG_POLL_INTERVAL: Duration = Duration::from_millis(50);

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

/// `alerting.alertmanagers[].basic_auth`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// User name.
    pub username: String,
    /// Password (or `password_file`); `check-config` prints it as `<secret>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "secret"
    )]
    pub password: Option<String>,
    /// File holding the password, read at every request (so it can be rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// One entry of `alerting.alertmanagers`: an Alertmanager that receives every alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL (`http(s)://host:port`, optionally with a path).
    pub url: String,
    /// Path added after `url`'s own path, before `/api/v2/alerts` (Alertmanager's
    /// `--web.route-prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Limit for one POST (connect, send and answer).
    #[serde(default = "default_alertmanager_timeout")]
    pub timeout: Dur,
    /// Optional TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthConfig>,
    /// `Authorization: Bearer` token (or `bearer_token_file`); printed as `<secret>`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "secret"
    )]
    pub bearer_token: Option<String>,
    /// File holding the bearer token, read at every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
}

impl AlertmanagerConfig {
    /// An Alertmanager at `url` with the default settings (`--alertmanager.url`).
    pub fn at(url: &str) -> Self {
        AlertmanagerConfig {
            url: url.to_owned(),
            path_prefix: None,
            timeout: default_alertmanager_timeout(),
            tls: None,
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
        }
    }
}

/// Writes a secret as `<secret>` (the effective configuration is printed and logged).
fn secret<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<secret>"),
        None => s.serialize_none(),
    }
}

fn default_alertmanager_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// `alerting`: direct delivery of firing invariants to Alertmanager (API v2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Every Alertmanager gets every alert (as Prometheus does for an HA pair); none: off.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// How often a firing alert is sent again; its `endsAt` lies 4 intervals ahead, so that
    /// Alertmanager resolves it by itself that long after the exporter stopped sending.
    pub resend_interval: Dur,
    /// Labels added to every alert (e.g. `cluster: prod`); the alert's own labels win.
    pub external_labels: BTreeMap<String, String>,
    /// Alerts waiting per Alertmanager; when full, the oldest are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            alertmanagers: Vec::new(),
            resend_interval: Dur(Duration::from_secs(60)),
            external_labels: BTreeMap::new(),
            queue_capacity: 10_000,
        }
    }
}

/// `web`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// `host:port` ([`ListenAddress`]): `:port` listens on every IPv4 and IPv6 address, a host
    /// name on every address it resolves to.
    pub listen_address: String,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Offer OpenMetrics to scrapers that prefer it (Prometheus does); off: the text format
    /// 0.0.4 always, as client_golang's default (see README "Exposition formats").
    pub openmetrics: bool,
    /// A new connection's first request head must have arrived this long after the accept;
    /// on a kept-alive connection, a request head this long after its first byte.
    pub header_read_timeout: Dur,
    /// A kept-alive connection without a request is closed after this long.
    pub idle_timeout: Dur,
    /// Open connections at most; at the cap the one idle the longest is closed for a new one.
    /// Unset: half the open-file limit (`ulimit -n`), at most 512.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// exporter-toolkit web configuration (TLS, client certificates, basic auth, response
    /// headers) for every endpoint; re-read when it or a file it names changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: ":19180".into(),
            telemetry_path: "/metrics".into(),
            openmetrics: false,
            header_read_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(90)),
            max_connections: None,
            config_file: None,
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
    /// How long a pending or firing invariant whose inputs are unknown keeps counting as
    /// violated; after that it stops (`tikv_invariant_unknown` stays 1). `0s`: until its inputs
    /// return.
    pub unknown_hold: Dur,
    /// Overrides of built-in invariants by name.
    pub invariants: BTreeMap<String, InvariantOverride>,
    /// Invariants defined by a PromQL query.
    pub custom_invariants: Vec<CustomInvariant>,
    /// Log sources.
    pub logs: LogsConfig,
    /// HTTP server.
    pub web: WebConfig,
    /// Name of the watched cluster, exported as a `cluster` label on every series (so one
    /// Prometheus can hold several clusters' exporters whose store ids overlap).
    pub cluster_name: Option<String>,
    /// Direct delivery to Alertmanager.
    pub alerting: AlertingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pd: PdConfig::default(),
            prometheus: PrometheusConfig::default(),
            poll_interval: Dur(Duration::from_secs(10)),
            state_file: None,
            unknown_hold: Dur(Duration::from_secs(300)),
            invariants: BTreeMap::new(),
            custom_invariants: Vec::new(),
            logs: LogsConfig::default(),
            web: WebConfig::default(),
            cluster_name: None,
            alerting: AlertingConfig::default(),
        }
    }
}

/// A configuration error naming the key (and line when known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}`{key}`: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// Dotted key, e.g. `invariants.disk_usage.threshold_percent`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` (its line not known yet).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }

    /// Fills in the line where the key is written in `text` (the file it came from).
    pub fn located_in(mut self, text: &str) -> Self {
        self.line = self.line.or_else(|| yaml::line_of_key(text, &self.key));
        self
    }
}

impl Config {
    /// Parses YAML text without validating it (command-line flags may still complete it).
    /// An empty file gives the defaults.
    pub fn parse_yaml(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(text).map_err(|e| yaml::yaml_error(text, &e.to_string()))
    }

    /// Parses YAML text and validates it.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let cfg = Config::parse_yaml(text)?;
        cfg.validate_in(text)?;
        Ok(cfg)
    }

    /// Validates, locating the offending key's line in `text` (the file it came from).
    pub fn validate_in(&self, text: &str) -> Result<(), ConfigError> {
        self.validate().map_err(|e| e.located_in(text))
    }

    /// Reads a YAML file without validating it; returns the text too (for error lines).
    /// Only a regular file of at most [`MAX_CONFIG_BYTES`] is read (`/dev/zero`, a FIFO or a
    /// directory is refused before it is opened).
    pub fn read_file(path: &Path) -> Result<(Config, String), ConfigFileError> {
        let text = read_bounded(path)?;
        let cfg = Config::parse_yaml(&text).map_err(|source| ConfigFileError::Invalid {
            path: path.to_owned(),
            source,
        })?;
        Ok((cfg, text))
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
}

/// The largest configuration file read (1 MiB); anything bigger is refused, never buffered.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The text of the regular file `path`, at most [`MAX_CONFIG_BYTES`] long.
pub(crate) fn read_bounded(path: &Path) -> Result<String, ConfigFileError> {
    use std::io::Read;
    let read_error = |source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    };
    // Checked before opening: opening a FIFO blocks until a writer appears.
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(ConfigFileError::NotRegular {
            path: path.to_owned(),
        });
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is a device, FIFO, socket or directory.
    #[error("config file {} is not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file {} is larger than {} bytes", path.display(), MAX_CONFIG_BYTES)]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file's content is not a valid configuration.
    #[error("invalid config file {}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its key and line.
        source: ConfigError,
    },
}

#[cfg(test)]
mod tests;
