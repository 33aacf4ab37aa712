//! A real Prometheus server (Debian package `prometheus`, `/usr/bin/prometheus`) for tests.
//!
//! [`RealPrometheus::start`] writes a `prometheus.yml` into a fresh temp dir, starts the binary
//! on loopback port 0 (the port it got is read from `/proc`) with its TSDB in that dir and
//! stderr in `<dir>/prometheus.log`, and waits (at most [`READY_TIMEOUT`]) for `/-/ready`. Dropping it kills the process and removes
//! the dir; when dropped during a panic it first prints the log's tail.
//!
//! [`RealPrometheus::start_with_history`] first backfills past samples with `promtool`, for
//! queries over windows longer than the test wants to wait (see [`FakeTikv::history`]).
//!
//! [`RealPrometheus::stop`] and [`RealPrometheus::restart`] simulate an outage: the process is
//! killed and later started again on the same address with the same TSDB.
//!
//! Set `PROMETHEUS_BIN` / `PROMTOOL_BIN` to use other binaries.
//!
//! [`FakeTikv::history`]: super::fake_tikv::FakeTikv::history

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{listen, wait};

/// How long to wait for `/-/ready` after starting the process (TSDB and WAL replay included,
/// on a loaded machine).
pub const READY_TIMEOUT: Duration = wait::PATIENCE;

/// A running Prometheus process; killed (and its temp dir removed) on drop.
pub struct RealPrometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// The full command line after the binary (for [`restart`](Self::restart)).
    args: Vec<String>,
}

/// The binary to run: `$PROMETHEUS_BIN` or `prometheus` from `PATH`.
pub fn prometheus_bin() -> String {
    std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_owned())
}

/// Whether the Prometheus binary can be run here.
pub fn available() -> bool {
    Command::new(prometheus_bin())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RealPrometheus {
    /// Starts Prometheus scraping `jobs` (`(job_name, targets)`) every `scrape_interval`.
    pub fn start(jobs: &[(&str, Vec<SocketAddr>)], scrape_interval: Duration) -> Self {
        Self::start_with(jobs, scrape_interval, &[], &[])
    }

    /// Like [`start`](Self::start), with extra command-line flags and rule files
    /// (`rule_files:`; `evaluation_interval` equals `scrape_interval`).
    pub fn start_with(
        jobs: &[(&str, Vec<SocketAddr>)],
        scrape_interval: Duration,
        extra_args: &[String],
        rule_files: &[PathBuf],
    ) -> Self {
        Self::launch(jobs, scrape_interval, extra_args, rule_files, "")
    }

    /// Like [`start`](Self::start), after backfilling the TSDB (with `promtool tsdb
    /// create-blocks-from openmetrics`) from `history`: lines `name{labels} value unix_secs`
    /// in any series order, e.g. concatenated [`FakeTikv::history`] outputs.
    ///
    /// [`FakeTikv::history`]: super::fake_tikv::FakeTikv::history
    pub fn start_with_history(
        jobs: &[(&str, Vec<SocketAddr>)],
        scrape_interval: Duration,
        history: &str,
    ) -> Self {
        Self::launch(jobs, scrape_interval, &[], &[], history)
    }

    /// The general form: extra flags, rule files and backfilled history (may be empty).
    pub fn launch(
        jobs: &[(&str, Vec<SocketAddr>)],
        scrape_interval: Duration,
        extra_args: &[String],
        rule_files: &[PathBuf],
        history: &str,
    ) -> Self {
        Self::launch_config(
            &render_config(jobs, scrape_interval, rule_files),
            extra_args,
            history,
        )
    }

    /// Starts Prometheus with a complete configuration text (see [`with_alertmanagers`]).
    pub fn launch_config(config: &str, extra_args: &[String], history: &str) -> Self {
        assert!(
            available(),
            "the `{}` binary is missing; install it with \
             `apt-get install -y prometheus` (scripts/test-all.sh does) or set PROMETHEUS_BIN",
            prometheus_bin()
        );
        let dir = tempfile::Builder::new()
            .prefix("real-prometheus-")
            .tempdir()
            .expect("create temp dir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        if !history.trim().is_empty() {
            backfill(dir.path(), history);
        }
        // Port 0: the port it gets is read from /proc, then kept for `restart`.
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            "--web.listen-address=127.0.0.1:0".to_owned(),
            "--web.enable-lifecycle".to_owned(),
        ];
        args.extend(extra_args.iter().cloned());
        let mut child = spawn(dir.path(), &args);
        let log_path = dir.path().join("prometheus.log");
        let fail = |why: String| -> ! {
            panic!(
                "Prometheus did not become ready: {why}\n--- prometheus.yml ---\n{config}\n\
                 --- last lines of its log ---\n{}",
                tail_of(&log_path, 40)
            )
        };
        let addr = match listen::wait_listening(&mut child, &[]) {
            Ok(a) => a,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                fail(why)
            }
        };
        for a in &mut args {
            if a.starts_with("--web.listen-address=") {
                *a = format!("--web.listen-address={addr}");
            }
        }
        let mut prom = RealPrometheus {
            child,
            addr,
            dir,
            args,
        };
        if let Err(why) = prom.wait_ready(READY_TIMEOUT) {
            drop(prom);
            fail(why);
        }
        prom
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("process exited with {status}"));
            }
            // Started with `--web.config.file` (TLS and/or basic auth), it answers these plain
            // requests with 400 (HTTP to its HTTPS port) or 401: it serves.
            let secured = self.args.iter().any(|a| a.starts_with("--web.config.file"));
            match http_request(self.addr, "GET", "/-/ready") {
                Ok((200, _)) => return Ok(()),
                Ok((400 | 401, _)) if secured => return Ok(()),
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the process (SIGKILL, like a crash) but keeps its directory, TSDB and log: requests
    /// to [`addr`](Self::addr) are refused until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is running (not [`stop`](Self::stop)ped, not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// After [`stop`](Self::stop): starts Prometheus again with the same command line (same
    /// address, config and TSDB, which it replays) and waits (at most [`READY_TIMEOUT`]) for
    /// `/-/ready`, answered by this process. Does nothing while it is running.
    pub fn restart(&mut self) {
        if self.is_running() {
            return;
        }
        self.child = spawn(self.dir.path(), &self.args);
        let ready = self.wait_ready(READY_TIMEOUT).and_then(|()| {
            // Ours, not another process that took the port during the outage.
            let pid = self.child.id();
            listen::listening(pid)
                .iter()
                .any(|a| a.port() == self.addr.port())
                .then_some(())
                .ok_or_else(|| format!("another process answers on {}", self.addr))
        });
        if let Err(why) = ready {
            panic!(
                "Prometheus did not become ready again on {}: {why}\n--- last lines of its log ---\n{}",
                self.addr,
                self.log_tail(40)
            );
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Process id of the running (or last) Prometheus process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The temp dir holding `prometheus.yml`, `prometheus.log` and `data/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `n` lines Prometheus wrote to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        tail_of(&self.dir.path().join("prometheus.log"), n)
    }

    /// A blocking `GET path` (e.g. `/api/v1/targets`); returns status and body. Panics on I/O errors.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_request(self.addr, "GET", path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Instant queries it has answered so far (its own `prometheus_http_requests_total`).
    pub fn instant_queries(&self) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && l.contains("handler=\"/api/v1/query\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Asks Prometheus to re-read its config and rule files (`POST /-/reload`); panics unless it answers 200.
    pub fn reload(&self) {
        let (status, body) =
            http_request(self.addr, "POST", "/-/reload").unwrap_or_else(|e| panic!("reload: {e}"));
        assert_eq!(status, 200, "reload failed: {body}\n{}", self.log_tail(20));
    }

    /// `GET path` with these query parameters (URL-encoded) as JSON; panics on I/O errors or
    /// non-JSON bodies.
    pub fn get_json(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let url = reqwest::Url::parse_with_params(&format!("http://x{path}"), params).unwrap();
        let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
        let (status, body) = self.get(&path);
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: HTTP {status}, not JSON ({e}): {body}"))
    }

    /// Runs an instant query with a blocking request and returns the whole JSON answer
    /// (`{"status":"success","data":{...}}`); panics on I/O errors or non-JSON bodies.
    pub fn query_blocking(&self, promql: &str) -> serde_json::Value {
        self.get_json("/api/v1/query", &[("query", promql)])
    }

    /// What `/api/v1/targets/metadata` has for `metric` from the targets of `job`: the
    /// `data` entries (none when Prometheus has no metadata under that name).
    pub fn target_metadata(&self, job: &str, metric: &str) -> Vec<serde_json::Value> {
        let m = self.get_json(
            "/api/v1/targets/metadata",
            &[
                ("match_target", &format!(r#"{{job="{job}"}}"#)),
                ("metric", metric),
            ],
        );
        m["data"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `promql` until `pred` accepts the JSON answer, returning it; panics with the last
    /// answer and the log's tail after `timeout`.
    pub fn wait_for(
        &self,
        promql: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> serde_json::Value {
        wait::until_or(
            &format!("query {promql:?}"),
            timeout,
            || {
                let v = self.query_blocking(promql);
                if pred(&v) { Ok(v) } else { Err(v.to_string()) }
            },
            || format!("--- Prometheus log tail ---\n{}", self.log_tail(20)),
        )
    }
}

impl Drop for RealPrometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- Prometheus at {} (log tail) ---\n{}",
                self.addr,
                self.log_tail(20)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` (TempDir) removes itself after this.
    }
}

/// The `result` array of a Prometheus query answer (panics unless it succeeded).
pub fn result(answer: &serde_json::Value) -> &Vec<serde_json::Value> {
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result in {answer}"))
}

/// A sample's value as Prometheus formats it (`"0.5"`, `"NaN"`, `"+Inf"`).
pub fn value_of(item: &serde_json::Value) -> f64 {
    match item["value"][1].as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or_else(|_| panic!("bad value in {item}")),
        None => panic!("no value in {item}"),
    }
}

/// The last `n` lines of the file at `path` (empty if unreadable).
fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Starts the Prometheus binary with `args` in `dir`, appending its stderr to `<dir>/prometheus.log`.
fn spawn(dir: &Path, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("prometheus.log"))
        .expect("open prometheus.log");
    Command::new(prometheus_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn prometheus")
}

/// The promtool binary: `$PROMTOOL_BIN` or `promtool` from `PATH`.
pub fn promtool_bin() -> String {
    std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".to_owned())
}

/// Writes `history` as OpenMetrics (families contiguous, `# EOF`) to `<dir>/history.om` and
/// turns it into TSDB blocks under `<dir>/data`.
fn backfill(dir: &Path, history: &str) {
    let mut lines: Vec<&str> = history
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // OpenMetrics forbids interleaving families; a stable sort keeps each series' time order.
    lines.sort_by_key(|l| l.split(['{', ' ']).next().unwrap_or(""));
    let mut text = lines.join("\n");
    text.push_str("\n# EOF\n");
    let input = dir.join("history.om");
    std::fs::write(&input, text).expect("write history.om");
    let out = Command::new(promtool_bin())
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&input)
        .arg(dir.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", promtool_bin()));
    assert!(
        out.status.success(),
        "promtool backfill failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `prometheus.yml` for these jobs.
pub fn render_config(
    jobs: &[(&str, Vec<SocketAddr>)],
    scrape_interval: Duration,
    rule_files: &[PathBuf],
) -> String {
    let mut blocks = Vec::new();
    for (job, targets) in jobs {
        let mut y = String::new();
        let _ = writeln!(y, "  - job_name: {}", yaml_str(job));
        let _ = writeln!(y, "    static_configs:");
        let _ = writeln!(y, "      - targets:");
        for t in targets {
            let _ = writeln!(
                y,
                "          - {}",
                yaml_str(&format!("127.0.0.1:{}", t.port()))
            );
        }
        blocks.push(y);
    }
    render_config_jobs(&blocks, scrape_interval, rule_files)
}

/// A scrape job shaped like the one TiDB Operator's TidbMonitor generates for TiKV
/// (cluster-signals.md §10.2, `pkg/monitor/monitor/template.go`): `honor_labels`, and
/// relabeling that sets `instance` to the pod name and adds `cluster`, `tidb_cluster`
/// (`<namespace>-<cluster>`), `kubernetes_namespace` and `component`. Kubernetes service
/// discovery is replaced by static targets carrying `__tmp_*` labels in place of the
/// `__meta_kubernetes_*` ones; each target is `(address, pod name)`.
pub fn tidb_monitor_job(namespace: &str, cluster: &str, targets: &[(SocketAddr, &str)]) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "  - job_name: {}",
        yaml_str(&format!("{namespace}-{cluster}-tikv"))
    );
    let _ = writeln!(y, "    honor_labels: true");
    let _ = writeln!(y, "    static_configs:");
    for (addr, pod) in targets {
        let _ = writeln!(
            y,
            "      - targets: [{}]",
            yaml_str(&format!("127.0.0.1:{}", addr.port()))
        );
        let _ = writeln!(y, "        labels:");
        let _ = writeln!(y, "          __tmp_pod_name: {}", yaml_str(pod));
        let _ = writeln!(y, "          __tmp_namespace: {}", yaml_str(namespace));
        let _ = writeln!(y, "          __tmp_instance: {}", yaml_str(cluster));
        let _ = writeln!(y, "          __tmp_component: tikv");
    }
    y.push_str(
        "    relabel_configs:\n\
         \x20     - {source_labels: [__tmp_namespace], action: replace, target_label: kubernetes_namespace}\n\
         \x20     - {source_labels: [__tmp_instance], action: replace, target_label: cluster}\n\
         \x20     - {source_labels: [__tmp_pod_name], action: replace, target_label: instance}\n\
         \x20     - {source_labels: [__tmp_component], action: replace, target_label: component}\n\
         \x20     - {source_labels: [__tmp_namespace, __tmp_instance], separator: '-', target_label: tidb_cluster}\n",
    );
    y
}

/// The `prometheus.yml` with these scrape job blocks (YAML list items under `scrape_configs`).
pub fn render_config_jobs(
    job_blocks: &[String],
    scrape_interval: Duration,
    rule_files: &[PathBuf],
) -> String {
    let interval = go_duration(scrape_interval);
    let timeout = go_duration(scrape_interval.min(Duration::from_secs(10)));
    let mut y = String::new();
    let _ = writeln!(y, "global:");
    let _ = writeln!(y, "  scrape_interval: {interval}");
    let _ = writeln!(y, "  scrape_timeout: {timeout}");
    let _ = writeln!(y, "  evaluation_interval: {interval}");
    if !rule_files.is_empty() {
        let _ = writeln!(y, "rule_files:");
        for f in rule_files {
            let abs = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
            let _ = writeln!(y, "  - {}", yaml_str(&abs.display().to_string()));
        }
    }
    let _ = writeln!(y, "scrape_configs:");
    for b in job_blocks {
        y.push_str(b);
    }
    y
}

/// A duration in Prometheus's syntax, in milliseconds (`1500ms`).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A minimal blocking HTTP/1.0 request (Connection: close, so no chunked body).
fn http_request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(super::exporter::ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(super::exporter::ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("malformed response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed status line: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// `render_config` plus an `alerting:` section sending alerts to these Alertmanagers.
pub fn with_alertmanagers(config: &str, alertmanagers: &[SocketAddr]) -> String {
    let mut y = config.to_owned();
    let _ = writeln!(y, "alerting:");
    let _ = writeln!(y, "  alertmanagers:");
    let _ = writeln!(y, "    - static_configs:");
    let _ = writeln!(y, "        - targets:");
    for a in alertmanagers {
        let _ = writeln!(y, "            - {}", yaml_str(&a.to_string()));
    }
    y
}
