//! Command-line interface: argument definitions and dispatch to the subcommands.

mod logs;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{AlertmanagerConfig, Config, Dur, LogFileConfig};
use crate::log::{LogFormat, LogLevel};
use crate::logs::parse::DEFAULT_MAX_LINE_BYTES;

/// Prometheus exporter and alert sidecar for TiKV clusters.
///
/// Without a subcommand, runs the exporter: polls PD (and Prometheus, if given), evaluates the
/// health invariants with their grace periods, follows the configured log files, and serves
/// /metrics (the Prometheus text format, or OpenMetrics with --web.enable-openmetrics; gzip
/// when accepted), /, /-/healthy, /-/ready, /-/reload, /api/v1/invariants and
/// /api/v1/leadership.
/// Flags override the YAML config file; every flag can also be given in the environment as
/// TIKV_HEALTH_EXPORTER_<FLAG> (upper case, `.` and `-` become `_`), a flag on the command line
/// winning over its variable. SIGHUP or POST /-/reload re-read the config file.
#[derive(Parser, Debug)]
#[command(
    name = "tikv-health-exporter",
    version = crate::build_info::VERSION,
    long_version = crate::build_info::LONG_VERSION,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The exporter's own log (every subcommand).
    #[command(flatten)]
    pub log: LogArgs,
    /// Exporter options (when no subcommand is given).
    #[command(flatten)]
    pub run: RunArgs,
    /// What to run instead of the exporter.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the exporter's own log lines (on stderr).
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct LogArgs {
    /// Least severe level logged.
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        value_enum,
        default_value_t = LogLevel::Info,
        global = true
    )]
    pub level: LogLevel,
    /// Format of each line.
    #[arg(
        long = "log.format",
        value_name = "FORMAT",
        value_enum,
        default_value_t = LogFormat::Logfmt,
        global = true
    )]
    pub format: LogFormat,
}

/// Options of the exporter; each overrides the same key of the config file.
#[derive(Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// YAML configuration file (see `check-config`).
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// PD endpoints, comma-separated or repeated (pd.endpoints).
    #[arg(long = "pd.endpoints", value_name = "URL", value_delimiter = ',')]
    pub pd_endpoints: Vec<String>,
    /// PD request timeout (pd.timeout).
    #[arg(long = "pd.timeout", value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub pd_timeout: Option<Duration>,
    /// CA file for PD TLS (pd.tls.ca_file).
    #[arg(long = "pd.tls.ca-file", value_name = "FILE")]
    pub pd_ca_file: Option<PathBuf>,
    /// Client certificate for PD mutual TLS (pd.tls.cert_file).
    #[arg(long = "pd.tls.cert-file", value_name = "FILE")]
    pub pd_cert_file: Option<PathBuf>,
    /// Client key for PD mutual TLS (pd.tls.key_file).
    #[arg(long = "pd.tls.key-file", value_name = "FILE")]
    pub pd_key_file: Option<PathBuf>,
    /// Prometheus base URL for the Prometheus-based invariants (prometheus.url).
    #[arg(long = "prometheus.url", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// PromQL label matchers added to every built-in query, e.g.
    /// 'tidb_cluster="basic",namespace="tidb"' (prometheus.selector).
    #[arg(long = "prometheus.selector", value_name = "MATCHERS")]
    pub prometheus_selector: Option<String>,
    /// Name of the watched cluster, exported as a `cluster` label on every series, e.g. the
    /// TidbCluster's `tidb_cluster` value (cluster_name).
    #[arg(long = "cluster.name", value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// How often to poll and evaluate (poll_interval, default 10s, at least 100ms).
    #[arg(long = "poll-interval", value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub poll_interval: Option<Duration>,
    /// File that keeps active violations across restarts (state_file).
    #[arg(long = "state-file", value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Log file to follow, as PATH or PATH=STORE_ID; repeatable (logs.files). A PATH with `*`
    /// or `?` (quote it) is a pattern of files, e.g. '/var/log/pods/*_basic-tikv-*_*/tikv/*.log',
    /// each mapped to a store by the pod in its path unless STORE_ID is given.
    #[arg(long = "logs.file", alias = "log.file", value_name = "PATH[=STORE]")]
    pub log_files: Vec<String>,
    /// Follow Docker containers' logs (logs.docker.enabled); select them with
    /// --logs.docker.container and/or --logs.docker.label (either implies this flag).
    #[arg(long = "logs.docker", alias = "log.docker")]
    pub log_docker: bool,
    /// Docker engine: unix:///path, /path/to.sock or tcp://host:port (logs.docker.host;
    /// default DOCKER_HOST, else the local socket).
    #[arg(
        long = "logs.docker.host",
        alias = "log.docker.host",
        value_name = "URL"
    )]
    pub log_docker_host: Option<String>,
    /// Container name to follow, exact or glob (`tikv-*`); repeatable (logs.docker.containers).
    #[arg(
        long = "logs.docker.container",
        alias = "log.docker.container",
        value_name = "PATTERN"
    )]
    pub log_docker_containers: Vec<String>,
    /// Label a followed container must carry, KEY=VALUE or KEY; repeatable, all must match
    /// (logs.docker.labels).
    #[arg(
        long = "logs.docker.label",
        alias = "log.docker.label",
        value_name = "KEY[=VALUE]"
    )]
    pub log_docker_labels: Vec<String>,
    /// Map a container to a PD store id, NAME=STORE; repeatable (logs.docker.stores).
    #[arg(
        long = "logs.docker.store",
        alias = "log.docker.store",
        value_name = "NAME=STORE"
    )]
    pub log_docker_stores: Vec<String>,
    /// Also read what running containers logged before the exporter started
    /// (logs.docker.from_start).
    #[arg(long = "logs.docker.from-start", alias = "log.docker.from-start")]
    pub log_docker_from_start: bool,
    /// Alertmanager to send firing invariants to directly (API v2), e.g. http://am:9093;
    /// repeatable, every one gets every alert (alerting.alertmanagers[].url).
    #[arg(long = "alertmanager.url", value_name = "URL")]
    pub alertmanager_urls: Vec<String>,
    /// Address to listen on (web.listen_address, default :19180): `:port` listens on every
    /// IPv4 and IPv6 address, `127.0.0.1:port` or `[::1]:port` on that one, a host name on every
    /// address it resolves to at start.
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Path of the metrics endpoint (web.telemetry_path, default /metrics).
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,
    /// Serve OpenMetrics to scrapers that prefer it, as Prometheus does (web.openmetrics);
    /// without it /metrics is always the text format 0.0.4, which files counters' HELP under
    /// their _total names in Prometheus.
    #[arg(long = "web.enable-openmetrics")]
    pub enable_openmetrics: bool,
    /// exporter-toolkit web configuration: TLS, client certificates, basic auth and response
    /// headers for every endpoint; re-read when it or a file it names changes
    /// (web.config_file; see examples/web-config.yml).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
}

/// Top-level subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Work with TiKV/PD logs in the TiDB unified log format.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Validate a config file and print the effective configuration (with defaults) as YAML.
    ///
    /// The validation is the exporter's own at start: values, invariants, endpoint URLs and
    /// every TLS and credential file it names are read. Secrets are printed as <secret>.
    CheckConfig(CheckConfigArgs),
    /// Run the real exporter against a built-in simulated cluster, with a live status.
    ///
    /// Three simulated stores behind a PD-API compatible server on loopback go through a
    /// 40-second cycle: one goes Disconnected, GC stalls, a disk fills, one loses its leaders
    /// (TiKV/PD log lines through the real parser), regions lose a replica, one slows down. Watch pending → firing → resolved on the
    /// printed status, /metrics and /api/v1/invariants.
    Demo(DemoArgs),
    /// Print a shell completion script for this command line to standard output.
    ///
    /// bash: `tikv-health-exporter completions bash > /etc/bash_completion.d/tikv-health-exporter`;
    /// zsh: into a directory of $fpath as `_tikv-health-exporter`; fish: into
    /// ~/.config/fish/completions/tikv-health-exporter.fish.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to standard output: `tikv-health-exporter man | man -l -`.
    Man,
}

/// Arguments of `completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Address the exporter listens on.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = "127.0.0.1:19180"
    )]
    pub listen_address: String,
    /// A Prometheus that scrapes the simulated stores (targets are printed at start); enables
    /// write_latency_p99 and cpu_usage.
    #[arg(long = "prometheus.url", value_name = "URL")]
    pub prometheus_url: Option<String>,
}

/// Arguments of `check-config`.
#[derive(Args, Debug)]
pub struct CheckConfigArgs {
    /// The YAML file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `logs` subcommands.
#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Parse log lines; print one JSON object per input line, in order.
    ///
    /// Output: {"line":N,"time":RFC3339|null,"level":..,"source":..|null,"message":..|null,
    /// "fields":[[key,value],...]} plus "docker_time" when a Docker timestamp prefix was
    /// present, or "cri_time" and "stream" for a Kubernetes CRI record (its P pieces joined
    /// into one line); {"line":N,"error":"reason"} for a malformed line. Line numbers count
    /// the lines after joining, across all inputs as if they were concatenated.
    #[allow(rustdoc::broken_intra_doc_links)] // `[[key,value],...]` is help text, not a link
    Parse(ParseArgs),
    /// Print leadership events (one JSON object each) or, with --summary, their counts.
    ///
    /// Event output: {"line","time","event","region_id","from_store","to_store","term",
    /// "message"} with null where unknown. Summary: {"lines":N,"malformed":M,"events":{...}}
    /// with every event name present.
    Leadership(LeadershipArgs),
}

/// Options shared by the `logs` subcommands.
#[derive(Args, Debug)]
pub struct InputArgs {
    /// Log files to read; standard input when none or `-`.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Longest accepted line in bytes; longer lines are reported as malformed, never buffered.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
}

/// Arguments of `logs parse`.
#[derive(Args, Debug)]
pub struct ParseArgs {
    /// Input selection.
    #[command(flatten)]
    pub input: InputArgs,
}

/// Arguments of `logs leadership`.
#[derive(Args, Debug)]
pub struct LeadershipArgs {
    /// Input selection.
    #[command(flatten)]
    pub input: InputArgs,
    /// Print only counts: {"lines":N,"malformed":M,"events":{"became_leader":N,...}}.
    #[arg(long)]
    pub summary: bool,
    /// With --summary (not --follow): worker threads for counting; default one per core, max 4.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,
    /// Keep following the files like `tail -F` (rotation and truncation safe).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With --follow: read existing content from the start instead of the end.
    #[arg(long, requires = "follow")]
    pub from_start: bool,
    /// With --follow: how often to check the files (at least 50ms).
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = log_poll_interval, requires = "follow")]
    pub poll_interval: Duration,
}

/// Prefix of the environment variables that set flags.
pub const ENV_PREFIX: &str = "TIKV_HEALTH_EXPORTER_";

/// The environment variable of the flag `--long`: `pd.endpoints` -> `TIKV_HEALTH_EXPORTER_PD_ENDPOINTS`.
pub fn env_name(long: &str) -> String {
    let flag: String = long
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("{ENV_PREFIX}{flag}")
}

/// The full command-line definition: [`Cli`] with every top-level flag (not `--help` and
/// `--version`) also read from its environment variable ([`env_name`]).
pub fn command() -> clap::Command {
    Cli::command().mut_args(|a| match a.get_long() {
        Some(long) if !matches!(long, "help" | "version") => {
            let name = env_name(long);
            a.env(name)
        }
        _ => a,
    })
}

/// One warning for each flag of `args` spelled the deprecated way (a hidden alias of `cmd`).
fn deprecated_spellings(cmd: &clap::Command, args: &[std::ffi::OsString]) -> Vec<String> {
    let used = |alias: &str| {
        args.iter()
            .take_while(|a| *a != "--")
            .filter_map(|a| a.to_str()?.strip_prefix("--"))
            .any(|a| a.split_once('=').map_or(a, |(name, _)| name) == alias)
    };
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(long), Some(aliases)) = (arg.get_long(), arg.get_all_aliases()) else {
            continue;
        };
        for alias in aliases.into_iter().filter(|a| used(a)) {
            out.push(format!(
                "--{alias} is deprecated and will be removed; use --{long} (or {})",
                env_name(long)
            ));
        }
    }
    out
}

/// A `--poll-interval` of the log follower: a duration of at least
/// [`crate::config::MIN_LOG_POLL_INTERVAL`].
fn log_poll_interval(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s).map_err(|e| e.to_string())?;
    let min = crate::config::MIN_LOG_POLL_INTERVAL;
    if d < min {
        return Err(format!(
            "`{s}` is below the floor of {}",
            crate::config::format_duration(min)
        ));
    }
    Ok(d)
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let mut cmd = command();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cmd
        .try_get_matches_from_mut(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.format(&mut cmd).exit(),
    };
    crate::log::init(cli.log.level, cli.log.format);
    for w in deprecated_spellings(&cmd, &args) {
        crate::log::warn(&w);
    }
    let result = match cli.command {
        Some(Command::Logs(LogsCommand::Parse(a))) => logs::parse(&a),
        Some(Command::Logs(LogsCommand::Leadership(a))) => logs::leadership(&a),
        Some(Command::CheckConfig(a)) => check_config(&a),
        Some(Command::Demo(a)) => run_until_signal(|cancel| {
            crate::demo::run(
                crate::demo::DemoOptions {
                    listen_address: a.listen_address,
                    prometheus_url: a.prometheus_url,
                },
                cancel,
            )
        }),
        Some(Command::Completions(a)) => {
            clap_complete::generate(
                a.shell,
                &mut command(),
                "tikv-health-exporter",
                &mut io::stdout(),
            );
            Ok(())
        }
        Some(Command::Man) => clap_mangen::Man::new(command())
            .render(&mut io::stdout())
            .map_err(Into::into),
        None => run_exporter(cli.run),
    };
    match result {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("tikv-health-exporter: error: {e:#}");
            1
        }
    }
}

fn check_config(a: &CheckConfigArgs) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let (cfg, text) = Config::read_file(&a.file)?;
    let defs = crate::poller::check(&cfg, &text)
        .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", a.file.display()))?;
    let mut out = cfg.to_yaml();
    out.push_str("# Effective invariants (defaults applied):\n");
    for d in defs {
        let r = &d.rule;
        let _ = writeln!(
            out,
            "#   {}: severity={} violated when value {} {}{} grace={}s clear_grace={}s{}",
            r.name,
            r.severity.as_str(),
            r.op.as_str(),
            r.threshold,
            r.clear_threshold
                .map(|c| format!(" (clears at {c})"))
                .unwrap_or_default(),
            r.grace,
            r.clear_grace,
            d.query().map(|q| format!(" query={q}")).unwrap_or_default()
        );
    }
    if cfg.prometheus.url.is_none() {
        out.push_str("#   (write_latency_p99 and cpu_usage need prometheus.url and are off)\n");
    }
    // A closed pipe (`check-config | head`) is an error here, and a quiet exit in `main`.
    let mut stdout = io::stdout().lock();
    io::Write::write_all(&mut stdout, out.as_bytes())?;
    io::Write::flush(&mut stdout)?;
    Ok(())
}

/// The configuration from the file (or defaults) with the flags applied, validated.
pub fn effective_config(run: RunArgs) -> anyhow::Result<Config> {
    // The file is validated only after the flags are applied: a flag may supply what the file
    // lacks (e.g. --prometheus.url for its custom_invariants).
    let (mut cfg, text) = match &run.config_file {
        Some(p) => Config::read_file(p)?,
        None => (Config::default(), String::new()),
    };
    let file = run.config_file.clone();
    if !run.pd_endpoints.is_empty() {
        cfg.pd.endpoints = run.pd_endpoints;
    }
    if let Some(t) = run.pd_timeout {
        cfg.pd.timeout = Dur(t);
    }
    if run.pd_ca_file.is_some() || run.pd_cert_file.is_some() || run.pd_key_file.is_some() {
        let tls = cfg.pd.tls.get_or_insert_with(Default::default);
        tls.ca_file = run.pd_ca_file.or(tls.ca_file.take());
        tls.cert_file = run.pd_cert_file.or(tls.cert_file.take());
        tls.key_file = run.pd_key_file.or(tls.key_file.take());
    }
    if let Some(u) = run.prometheus_url {
        cfg.prometheus.url = Some(u);
    }
    if let Some(sel) = run.prometheus_selector {
        cfg.prometheus.selector = Some(sel);
    }
    if let Some(p) = run.poll_interval {
        cfg.poll_interval = Dur(p);
    }
    if let Some(c) = run.cluster_name {
        cfg.cluster_name = Some(c);
    }
    if let Some(p) = run.state_file {
        cfg.state_file = Some(p);
    }
    for spec in run.log_files {
        let (path, store) = match spec.rsplit_once('=') {
            Some((p, s)) => (p.to_owned(), Some(s.to_owned())),
            None => (spec, None),
        };
        cfg.logs.files.push(LogFileConfig {
            path: path.into(),
            name: None,
            store,
            from_start: false,
        });
    }
    let docker = &mut cfg.logs.docker;
    if run.log_docker || !run.log_docker_containers.is_empty() || !run.log_docker_labels.is_empty()
    {
        docker.enabled = true;
    }
    if let Some(h) = run.log_docker_host {
        docker.host = Some(h);
    }
    docker.containers.extend(run.log_docker_containers);
    docker.labels.extend(run.log_docker_labels);
    for spec in run.log_docker_stores {
        let (name, store) = spec.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--logs.docker.store `{spec}`: expected CONTAINER=STORE_ID")
        })?;
        docker.stores.insert(name.to_owned(), store.to_owned());
    }
    if run.log_docker_from_start {
        docker.from_start = true;
    }
    cfg.alerting.alertmanagers.extend(
        run.alertmanager_urls
            .iter()
            .map(|u| AlertmanagerConfig::at(u)),
    );
    if let Some(a) = run.listen_address {
        cfg.web.listen_address = a;
    }
    if let Some(p) = run.telemetry_path {
        cfg.web.telemetry_path = p;
    }
    if run.enable_openmetrics {
        cfg.web.openmetrics = true;
    }
    if let Some(p) = run.web_config_file {
        cfg.web.config_file = Some(p);
    }
    crate::poller::check(&cfg, &text).map_err(|e| match &file {
        Some(f) => anyhow::anyhow!("invalid configuration ({} and flags): {e}", f.display()),
        None => anyhow::anyhow!("invalid configuration: {e}"),
    })?;
    Ok(cfg)
}

fn run_exporter(run: RunArgs) -> anyhow::Result<()> {
    let cfg = effective_config(run.clone())?;
    // A reload reads the file again and applies the same flags (and variables) on top.
    let loader: crate::app::Loader = Box::new(move || effective_config(run.clone()));
    run_until_signal(|cancel| crate::app::run(cfg, loader, cancel))
}

/// Runs `f` on the one runtime (two worker threads: the exporter is small), with a token that
/// SIGTERM/SIGINT cancel.
fn run_until_signal<F: std::future::Future<Output = anyhow::Result<()>>>(
    f: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let cancel = tokio_util::sync::CancellationToken::new();
        crate::app::cancel_on_signal(&cancel);
        f(cancel).await
    });
    // A thread still blocked (in a read, say) must not keep the process from exiting.
    rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
    result
}

/// How long the runtime waits at exit for blocking work still running after the drain.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn env_names_follow_the_flags() {
        assert_eq!(
            env_name("pd.endpoints"),
            "TIKV_HEALTH_EXPORTER_PD_ENDPOINTS"
        );
        assert_eq!(
            env_name("logs.docker.from-start"),
            "TIKV_HEALTH_EXPORTER_LOGS_DOCKER_FROM_START"
        );
    }

    #[test]
    fn old_log_input_spellings_are_named() {
        let cmd = command();
        let args: Vec<std::ffi::OsString> = [
            "x",
            "--log.file=/a=1",
            "--log.docker.container",
            "tikv",
            "--log.level",
            "debug",
            "--logs.file",
            "/b",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let warnings = deprecated_spellings(&cmd, &args);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("--log.file is deprecated"));
        assert!(warnings[0].contains("use --logs.file"));
        assert!(warnings[1].starts_with("--log.docker.container is deprecated"));
    }
}
