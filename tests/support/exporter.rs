//! Runs the real `tikv-health-exporter` binary for end-to-end tests and reads its endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::free_port;

/// The exporter binary built by cargo for integration tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tikv-health-exporter"))
}

/// A minimal blocking HTTP GET: (status, content type, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    Some((status, ctype, body.to_owned()))
}

/// A running exporter; SIGTERM then kill on drop.
pub struct Exporter {
    child: Option<Child>,
    addr: SocketAddr,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the exporter with `args` plus its own `--web.listen-address`; waits until it
    /// serves `/-/healthy` (bounded).
    pub fn start(args: &[String]) -> Exporter {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let child = Command::new(binary())
            .args(args)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start exporter");
        let mut e = Exporter {
            child: Some(child),
            addr,
            stderr_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_get(addr, "/-/healthy").is_none_or(|r| r.0 != 200) {
            if let Some(status) = e.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("exporter exited with {status}: {}", e.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "exporter did not start: {}",
                e.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Polls `/metrics` until `pred` holds on it (bounded); returns the text that satisfied it.
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if pred(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last /metrics:\n{m}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until the exporter has published its first poll (`/-/ready` is 200).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.get("/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "not ready: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("exporter ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
}

/// Labels of `name="..",store="..",severity=".."`.
pub fn inv<'a>(name: &'a str, store: &'a str, severity: &'a str) -> [(&'a str, &'a str); 3] {
    [("name", name), ("store", store), ("severity", severity)]
}
