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
mod tests {
    use super::*;

    #[test]
    fn shipped_example_is_valid_and_round_trips() {
        let text = include_str!("../../examples/config.yml");
        let cfg = Config::from_yaml(text).unwrap();
        assert_eq!(cfg.pd.endpoints.len(), 3);
        assert_eq!(
            cfg.invariants["disk_usage"].threshold_percent, None,
            "PD's ratio"
        );
        assert_eq!(cfg.unknown_hold.0, Duration::from_secs(300));
        assert_eq!(cfg.custom_invariants[0].op, Op::Gt);
        assert_eq!(cfg.logs.files[0].source_label(), "file:tikv-1");
        assert!(cfg.logs.files[1].is_pattern() && !cfg.logs.files[0].is_pattern());
        assert_eq!(cfg.logs.files[1].source_label(), "file:tikv-pods");
        let unnamed = LogFileConfig {
            name: None,
            ..cfg.logs.files[1].clone()
        };
        assert_eq!(
            unnamed.source_label(),
            "file:/var/log/pods/tidb-cluster_basic-tikv-*_*/tikv/*.log"
        );
        assert_eq!(cfg.alerting.alertmanagers.len(), 2);
        assert_eq!(cfg.alerting.external_labels["region"], "east");
        assert_eq!(cfg.cluster_name.as_deref(), Some("prod-east"));
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
            (
                "logs:\n  files:\n    - path: /var/log/**/*.log\n",
                "logs.files[0].path",
                Some(3),
            ),
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
    fn alerting_section_defaults_validation_and_secrets() {
        let a = Config::default().alerting;
        assert!(a.alertmanagers.is_empty());
        assert_eq!(
            (a.resend_interval.0, a.queue_capacity),
            (Duration::from_secs(60), 10_000)
        );
        let full = "alerting:\n  resend_interval: 30s\n  external_labels:\n    cluster: prod\n  alertmanagers:\n    - url: https://am-0:9093\n      path_prefix: /alertmanager\n      timeout: 3s\n      tls:\n        ca_file: /ca.pem\n      basic_auth:\n        username: exporter\n        password: hunter2\n    - url: http://am-1:9093\n      bearer_token_file: /token\n";
        let cfg = Config::from_yaml(full).unwrap();
        let ams = &cfg.alerting.alertmanagers;
        assert_eq!(ams[0].timeout.0, Duration::from_secs(3));
        assert_eq!(ams[1].timeout.0, Duration::from_secs(10), "default");
        assert_eq!(cfg.alerting.external_labels["cluster"], "prod");
        let printed = cfg.to_yaml();
        assert!(
            !printed.contains("hunter2") && printed.contains("<secret>"),
            "{printed}"
        );
        let cases = [
            (
                "alerting:\n  resend_interval: 10ms\n",
                "alerting.resend_interval",
                Some(2),
            ),
            (
                "alerting:\n  queue_capacity: 0\n",
                "alerting.queue_capacity",
                Some(2),
            ),
            (
                "alerting:\n  external_labels:\n    1x: a\n",
                "alerting.external_labels.1x",
                Some(3),
            ),
            (
                "alerting:\n  alertmanagers:\n    - url: am:9093\n",
                "alerting.alertmanagers[0].url",
                Some(3),
            ),
            (
                "alerting:\n  alertmanagers:\n    - url: http://a/\n    - url: http://a\n",
                "alerting.alertmanagers[1].url",
                Some(4),
            ),
            (
                "alerting:\n  alertmanagers:\n    - url: http://a\n      path_prefix: x\n",
                "alerting.alertmanagers[0].path_prefix",
                Some(4),
            ),
            (
                "alerting:\n  alertmanagers:\n    - url: http://a\n      basic_auth:\n        username: u\n",
                "alerting.alertmanagers[0].basic_auth",
                Some(4),
            ),
            (
                "alerting:\n  alertmanagers:\n    - url: http://a\n      bearer_token: t\n      bearer_token_file: /t\n",
                "alerting.alertmanagers[0].bearer_token",
                Some(4),
            ),
            (
                "alerting:\n  alertmanagers:\n    - url: http://a\n      tls:\n        key_file: /k\n",
                "alerting.alertmanagers[0].tls",
                Some(4),
            ),
        ];
        for (yaml, key, line) in cases {
            let e = Config::from_yaml(yaml).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, line), "{yaml}: {e}");
        }
    }

    #[test]
    fn selectors_are_promql_label_matchers() {
        assert_eq!(
            parse_selector(r#"tidb_cluster="basic", namespace=~"tidb|prod""#).unwrap(),
            [r#"tidb_cluster="basic""#, r#"namespace=~"tidb|prod""#]
        );
        assert_eq!(
            parse_selector(r#"{job!="x",a!~'b\'c',k=`v"w`}"#).unwrap(),
            [r#"job!="x""#, r#"a!~'b\'c'"#, r#"k=`v"w`"#]
        );
        assert!(parse_selector("").unwrap().is_empty());
        for bad in [
            "tidb_cluster=basic",
            r#"1a="x""#,
            r#"a="x" b="y""#,
            r#"a="x"#,
            r#"a=="x""#,
            "a",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations_and_listen_addresses() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(
            parse_duration("10")
                .unwrap_err()
                .to_string()
                .contains("missing unit")
        );
        assert!(
            parse_duration("10x")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        for d in ["0s", "250ms", "10s", "5m", "2h", "90s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
        let ip = |s: &str| ListenAddress::Ip(s.parse().unwrap());
        for (written, want) in [
            (":19180", ListenAddress::Any(19180)),
            ("0.0.0.0:1", ListenAddress::Any(1)),
            ("[::]:2", ListenAddress::Any(2)),
            ("127.0.0.1:0", ip("127.0.0.1:0")),
            ("[::1]:9", ip("[::1]:9")),
            ("localhost:1", ListenAddress::Host("localhost".into(), 1)),
            (
                "tikv-health-exporter.monitoring.svc:19180",
                ListenAddress::Host("tikv-health-exporter.monitoring.svc".into(), 19180),
            ),
        ] {
            assert_eq!(parse_listen_address(written), Ok(want), "{written}");
        }
        for bad in [
            "nonsense",
            ":",
            ":http",
            ":65536",
            "::1:9",
            "[::1]",
            "[nonsense]:9",
            "host name:9",
            "a..b:9",
            "-a:9",
            "1.2.3.4.5:9",
            "10.0.0.256:9",
        ] {
            let err = parse_listen_address(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn web_limits_have_defaults_and_are_checked() {
        let cfg = Config::from_yaml("").unwrap();
        assert_eq!(cfg.web.header_read_timeout.0, Duration::from_secs(10));
        assert_eq!(cfg.web.idle_timeout.0, Duration::from_secs(90));
        assert_eq!(cfg.web.max_connections, None);
        let cfg = Config::from_yaml(
            "web:\n  header_read_timeout: 2s\n  idle_timeout: 5m\n  max_connections: 64\n",
        )
        .unwrap();
        assert_eq!(cfg.web.header_read_timeout.0, Duration::from_secs(2));
        assert_eq!(cfg.web.idle_timeout.0, Duration::from_secs(300));
        assert_eq!(cfg.web.max_connections, Some(64));
        for (yaml, key, line) in [
            (
                "web:\n  header_read_timeout: 0s\n",
                "web.header_read_timeout",
                2,
            ),
            (
                "web:\n  telemetry_path: /m\n  idle_timeout: 10ms\n",
                "web.idle_timeout",
                3,
            ),
            ("web:\n  max_connections: 0\n", "web.max_connections", 2),
        ] {
            let e = Config::from_yaml(yaml).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{yaml}: {e}");
        }
        let e = Config::from_yaml("web:\n  max_connections: -1\n").unwrap_err();
        assert!(e.to_string().contains("max_connections"), "{e}");
    }
}
