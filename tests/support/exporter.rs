//! Runs the real `tikv-health-exporter` binary for end-to-end tests and reads its endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{listen, wait};

/// The exporter binary built by cargo for integration tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tikv-health-exporter"))
}

/// How long a test's HTTP request may wait for its answer: a process starved by a loaded
/// machine answers late, not never (one failed GET fails a whole test).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A minimal blocking HTTP GET: (status, content type, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    http_get_with(addr, path, &[])
}

/// [`http_get`] with extra request headers.
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String, String)> {
    http_request(addr, "GET", path, headers)
}

/// A whole HTTP answer, its body as sent (not decoded).
#[derive(Debug)]
pub struct RawAnswer {
    /// Status code.
    pub status: u16,
    /// Header lines in order, as (name, value).
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal blocking HTTP/1.1 request without a body (`Connection: close`, so the answer
/// ends with the connection), with extra request headers.
pub fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<RawAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    let length = match method {
        "GET" | "HEAD" => "",
        _ => "Content-Length: 0\r\n",
    };
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}{length}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    Some(RawAnswer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// A minimal blocking HTTP request without a body: (status, content type, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String, String)> {
    let a = http_raw(addr, method, path, headers)?;
    let ctype = a.header("content-type").unwrap_or_default().to_owned();
    Some((
        a.status,
        ctype,
        String::from_utf8_lossy(&a.body).into_owned(),
    ))
}

/// How [`Exporter::launch`] starts the exporter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Launch<'a> {
    /// Its arguments (`--web.listen-address` is added).
    pub args: &'a [String],
    /// Environment variables set for it.
    pub env: &'a [(&'a str, &'a str)],
    /// A command that runs the binary by `exec` (so the process id stays the exporter's), e.g.
    /// `["prlimit", "--nofile=256:256", "--"]`.
    pub wrapper: &'a [&'a str],
    /// `--web.listen-address` (default `127.0.0.1:0`).
    pub listen: Option<&'a str>,
}

/// A running exporter; SIGTERM then kill on drop.
pub struct Exporter {
    child: Option<Child>,
    addr: SocketAddr,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the exporter with `args` plus `--web.listen-address 127.0.0.1:0`, reads the port
    /// it got from `/proc`, and waits until it serves `/-/healthy` (bounded). Started with
    /// `--web.config.file`, its 400 (plain HTTP to its HTTPS port) or 401 to that plain
    /// request counts as serving.
    pub fn start(args: &[String]) -> Exporter {
        Self::start_with_env(args, &[])
    }

    /// Writes `yaml` to `config.yml` in `dir`, starts the exporter on it and waits until it
    /// is ready (its first poll published).
    pub fn start_with_config(dir: &tempfile::TempDir, yaml: &str) -> Exporter {
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let e = Exporter::start(&["--config.file".into(), cfg.display().to_string()]);
        e.wait_ready();
        e
    }

    /// [`Exporter::start`] with these environment variables set.
    pub fn start_with_env(args: &[String], env: &[(&str, &str)]) -> Exporter {
        Self::launch(Launch {
            args,
            env,
            ..Launch::default()
        })
    }

    /// Starts the exporter against `pd` (poll 1 s) with `yaml` written as its `--config.file`
    /// in `dir`, launched as `launch` says otherwise (its `args` are replaced).
    pub fn with_config(
        pd_url: &str,
        dir: &tempfile::TempDir,
        yaml: &str,
        launch: Launch<'_>,
    ) -> Exporter {
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let args: Vec<String> = [
            "--pd.endpoints",
            pd_url,
            "--poll-interval",
            "1s",
            "--config.file",
            cfg.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Self::launch(Launch {
            args: &args,
            ..launch
        })
    }

    /// Starts the exporter as `launch` says, reads the port it got from `/proc`, and waits
    /// until it serves `/-/healthy` (bounded).
    pub fn launch(launch: Launch<'_>) -> Exporter {
        let secured = launch
            .args
            .iter()
            .any(|a| a.starts_with("--web.config.file"));
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let mut cmd = match launch.wrapper {
            [program, rest @ ..] => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary());
                c
            }
            [] => Command::new(binary()),
        };
        let mut child = cmd
            .envs(launch.env.iter().copied())
            .args(launch.args)
            .arg("--web.listen-address")
            .arg(launch.listen.unwrap_or("127.0.0.1:0"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start exporter");
        let addr = listen::wait_listening(&mut child, &[]).unwrap_or_else(|why| {
            let _ = child.kill();
            panic!(
                "the exporter {why}: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        let mut e = Exporter {
            child: Some(child),
            addr,
            stderr_path,
            _dir: dir,
        };
        wait::until("the exporter to serve /-/healthy", wait::PATIENCE, || {
            if let Some(status) = e.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("exporter exited with {status}: {}", e.stderr());
            }
            match http_get(addr, "/-/healthy") {
                Some((200, _, _)) => Ok(()),
                Some((400 | 401, _, _)) if secured => Ok(()),
                other => Err(format!("{other:?}\n{}", e.stderr())),
            }
        });
        e
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the exporter logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// A request with these headers, answered whole (body as sent).
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> RawAnswer {
        http_raw(self.addr, method, path, headers)
            .unwrap_or_else(|| panic!("{method} {path} failed: {}", self.stderr()))
    }

    /// GET a path.
    pub fn get(&self, path: &str) -> (u16, String, String) {
        http_get(self.addr, path).unwrap_or_else(|| panic!("GET {path} failed: {}", self.stderr()))
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        self.get("/metrics").2
    }

    /// `/api/v1/invariants` as JSON.
    pub fn invariants(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/api/v1/invariants").2).unwrap()
    }

    /// The invariant `name` for `store` from the API.
    pub fn invariant(&self, name: &str, store: &str) -> Option<serde_json::Value> {
        self.invariants()
            .as_array()?
            .iter()
            .find(|i| i["name"] == name && i["store"] == store)
            .cloned()
    }

    /// Polls `/metrics` until `pred` holds on it (at most `timeout`); returns the text that
    /// satisfied it.
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        wait::until_or(
            what,
            timeout,
            || {
                let m = self.metrics();
                if pred(&m) {
                    Ok(m)
                } else {
                    Err(format!("/metrics:\n{m}"))
                }
            },
            || format!("stderr:\n{}", self.stderr()),
        )
    }

    /// Waits until the exporter has published `polls` polls of `source` (`pd`, `prometheus`)
    /// that *started* after `after` (Unix seconds), and returns the `/metrics` text showing
    /// the last one. What a poll sees is published when it ends, and a poll's
    /// `tikv_health_exporter_last_success_timestamp_seconds` is taken after its request, so
    /// the first success stamped after `after` may come from a poll that began before it; the
    /// next one began after that one ended. Counted from distinct timestamps seen (a poll
    /// missed between two looks only makes the wait longer). Needs `source` to succeed.
    pub fn wait_polls_after(&self, source: &str, after: f64, polls: usize) -> String {
        let mut seen: Vec<f64> = Vec::new();
        wait::until(
            &format!("{polls} polls of {source} that started after {after}"),
            wait::PATIENCE,
            || {
                let m = self.metrics();
                let at = sample(
                    &m,
                    "tikv_health_exporter_last_success_timestamp_seconds",
                    &[("source", source)],
                );
                if let Some(t) = at.filter(|&t| t > after && !seen.contains(&t)) {
                    seen.push(t);
                }
                // The first stamp after `after` may belong to a poll that started before it.
                if seen.len() > polls {
                    Ok(m)
                } else {
                    Err(format!(
                        "successes after {after}: {seen:?}\n/metrics:\n{m}\nstderr:\n{}",
                        self.stderr()
                    ))
                }
            },
        )
    }

    /// Waits until `tikv_health_exporter_source_up{source}` is `want`.
    pub fn wait_source_up(&self, source: &str, want: f64) -> String {
        self.wait_metrics(
            &format!("source_up{{source={source:?}}} == {want}"),
            wait::PATIENCE,
            |m| sample(m, "tikv_health_exporter_source_up", &[("source", source)]) == Some(want),
        )
    }

    /// Waits until the exporter has published its first poll (`/-/ready` is 200).
    pub fn wait_ready(&self) {
        wait::until("the exporter to be ready", wait::PATIENCE, || {
            match self.get("/-/ready").0 {
                200 => Ok(()),
                code => Err(format!("/-/ready: {code}\n{}", self.stderr())),
            }
        })
    }

    /// A request without a body to a path: (status, content type, body).
    pub fn request(&self, method: &str, path: &str) -> (u16, String, String) {
        http_request(self.addr, method, path, &[])
            .unwrap_or_else(|| panic!("{method} {path} failed: {}", self.stderr()))
    }

    /// Sends a signal (`HUP`, `TERM`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code. (On a
    /// timeout the panic drops `self`, which kills the process.)
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.as_ref()?.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let path = self.stderr_path.clone();
        let child = self.child.as_mut()?;
        let status = wait::until(
            "the exporter to exit on SIGTERM",
            wait::PATIENCE,
            || match child.try_wait().unwrap() {
                Some(s) => Ok(s),
                None => Err(std::fs::read_to_string(&path).unwrap_or_default()),
            },
        );
        self.child = None;
        status.code()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One exposition sample: (name, sorted labels, value).
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses an exposition line `name{a="x",b="y"} value` into (name, sorted labels, value).
fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut out = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            o => o,
                        });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => val.push(c),
            }
        }
        let end = end?;
        out.push((k.trim_start_matches(',').to_owned(), val));
        rest = after[end + 1..].trim_start_matches(',');
    }
    out.sort();
    Some((name.to_owned(), out, value))
}

/// Every sample of the exposition: (name, sorted labels, value).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

/// The value of the series with exactly these labels.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    // The `cluster` label of `--cluster.name` is on every series: ignored unless asked for.
    let with_cluster = want.iter().any(|(k, _)| k == "cluster");
    samples(text)
        .into_iter()
        .find(|(n, l, _)| {
            n == name
                && if with_cluster {
                    *l == want
                } else {
                    l.iter().filter(|(k, _)| k != "cluster").eq(want.iter())
                }
        })
        .map(|(_, _, v)| v)
}

/// Labels of `name="..",store="..",severity=".."`.
pub fn inv<'a>(name: &'a str, store: &'a str, severity: &'a str) -> [(&'a str, &'a str); 3] {
    [("name", name), ("store", store), ("severity", severity)]
}

/// What the exporter counts for `tests/data/tikv-pd-real-lines.log` read once by one source:
/// events by kind, its 113 log lines, its 2 shell lines (`extra_malformed` more for lines
/// around it that are not log lines). Panics naming what differs.
pub fn assert_fixture_counted(m: &str, source: &str, store: &str, extra_malformed: f64) {
    let labels = |event| [("source", source), ("store", store), ("event", event)];
    for (event, n) in [
        ("pd_leader_changed", 7.0),
        ("became_leader", 2.0),
        ("became_follower", 1.0),
        ("election_started", 4.0),
        ("leader_changed", 2.0),
        ("transfer_leader", 1.0),
        ("step_down", 0.0),
    ] {
        assert_eq!(
            sample(m, "tikv_leadership_changes_total", &labels(event)),
            Some(n),
            "{event}"
        );
    }
    assert_eq!(
        sample(
            m,
            "tikv_log_malformed_lines_total",
            &[("source", source), ("store", store)]
        ),
        Some(2.0 + extra_malformed)
    );
    let lines: f64 = samples(m)
        .iter()
        .filter(|(n, l, _)| {
            n == "tikv_log_lines_total" && l.iter().any(|(k, v)| k == "source" && v == source)
        })
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(lines, 113.0, "every TiKV/PD line once");
}
