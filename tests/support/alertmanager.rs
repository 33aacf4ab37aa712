//! A real Alertmanager process (Debian `prometheus-alertmanager`) and a webhook receiver that
//! records every notification it gets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::exporter::http_get;
use super::http::{Response, TestServer};
use super::{listen, wait};

/// The binary: `$ALERTMANAGER_BIN` or Debian's `prometheus-alertmanager`.
pub fn alertmanager_bin() -> String {
    std::env::var("ALERTMANAGER_BIN").unwrap_or_else(|_| "prometheus-alertmanager".to_owned())
}

/// A running Alertmanager; killed (and its temp dir removed) on drop.
pub struct RealAlertmanager {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl RealAlertmanager {
    /// Starts Alertmanager with this configuration text on loopback port 0 (the port it got is
    /// read from `/proc`), not clustered; waits (bounded) for `/-/ready`.
    pub fn start(config: &str) -> RealAlertmanager {
        Self::launch(config, None, None).0
    }

    /// Starts a non-clustered Alertmanager serving HTTPS and/or basic auth as `web_config`
    /// (an exporter-toolkit `--web.config.file`) says; waits until it listens (its readiness
    /// needs the TLS handshake and credentials, which the test's client proves).
    pub fn start_secured(config: &str, web_config: &str) -> RealAlertmanager {
        Self::launch(config, None, Some(web_config)).0
    }

    /// Starts a cluster member (gossip on loopback port 0) joining `peers` (cluster addresses
    /// of members already running; none for the first); returns it and its cluster address.
    /// Short cluster timings (`peer-timeout` 2s, `settle-timeout` 2s) keep HA tests in seconds;
    /// the deduplication itself is Alertmanager's.
    pub fn start_clustered(config: &str, peers: &[SocketAddr]) -> (RealAlertmanager, SocketAddr) {
        let (am, cluster) = Self::launch(config, Some(peers), None);
        (am, cluster.expect("a cluster address"))
    }

    fn launch(
        config: &str,
        peers: Option<&[SocketAddr]>,
        web_config: Option<&str>,
    ) -> (RealAlertmanager, Option<SocketAddr>) {
        let dir = tempfile::Builder::new()
            .prefix("real-alertmanager-")
            .tempdir()
            .unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let mut cmd = Command::new(alertmanager_bin());
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0");
        if let Some(web) = web_config {
            let path = dir.path().join("web.yml");
            std::fs::write(&path, web).unwrap();
            cmd.arg(format!("--web.config.file={}", path.display()));
        }
        match peers {
            None => {
                cmd.arg("--cluster.listen-address=");
            }
            Some(peers) => {
                cmd.args([
                    "--cluster.listen-address=127.0.0.1:0",
                    "--cluster.peer-timeout=2s",
                    "--cluster.settle-timeout=2s",
                    "--cluster.gossip-interval=100ms",
                    "--cluster.pushpull-interval=1s",
                ]);
                cmd.args(peers.iter().map(|p| format!("--cluster.peer={p}")));
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install prometheus-alertmanager (scripts/test-all.sh does)",
                    alertmanager_bin()
                )
            });
        let fail = |child: &mut Child, why: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("alertmanager.log"));
            panic!("Alertmanager {why}:\n{}", log.unwrap_or_default())
        };
        let (addr, cluster) = if peers.is_none() {
            let addr =
                listen::wait_listening(&mut child, &[]).unwrap_or_else(|why| fail(&mut child, why));
            (addr, None)
        } else {
            // Two TCP ports: the web one answers HTTP, the other is the gossip port.
            let pid = child.id();
            let ports = wait::until_or(
                "a clustered Alertmanager to listen on its web and cluster ports",
                wait::PATIENCE,
                || {
                    let ports: Vec<SocketAddr> = listen::listening(pid)
                        .into_iter()
                        .map(|a| SocketAddr::from(([127, 0, 0, 1], a.port())))
                        .collect();
                    if ports.len() == 2 {
                        Ok(ports)
                    } else {
                        Err(format!("{ports:?}"))
                    }
                },
                String::new,
            );
            let web = wait::until("the web port to answer", wait::PATIENCE, || {
                ports
                    .iter()
                    .copied()
                    .find(|p| http_get(*p, "/-/healthy").is_some_and(|(s, _, _)| s == 200))
                    .ok_or_else(|| format!("{ports:?}"))
            });
            let cluster = ports.into_iter().find(|p| *p != web);
            (web, cluster)
        };
        let am = RealAlertmanager { child, addr, dir };
        if web_config.is_some() {
            return (am, cluster);
        }
        wait::until(
            "Alertmanager to be ready",
            wait::PATIENCE,
            || match http_get(am.addr, "/-/ready") {
                Some((200, _, _)) => Ok(()),
                other => Err(format!("{other:?}\n{}", am.log())),
            },
        );
        (am, cluster)
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// One HTTP/1.0 request with a JSON body (no chunked answers): status and body.
    pub fn http(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        http_request(self.addr, method, path, body)
    }

    /// `GET /api/v2/alerts`: every alert Alertmanager holds, with its `status` (`state`,
    /// `inhibitedBy`, ...).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = self
            .http("GET", "/api/v2/alerts", "")
            .unwrap_or_else(|e| panic!("GET /api/v2/alerts: {e}\n{}", self.log()));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

/// One HTTP/1.0 request to `addr` with a JSON body (no chunked answers): status and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(super::exporter::ANSWER_TIMEOUT))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// A request the gate saw: path and `Authorization` header.
pub type GateRequest = (String, Option<String>);

/// A gate in front of a real Alertmanager: while open it forwards each request (with
/// `strip_prefix` removed from its path); while closed it holds each request for `hold`
/// before answering 503, like an Alertmanager that hangs. It records every request (path and
/// `Authorization` header).
pub struct Gate {
    server: TestServer,
    open: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<GateRequest>>>,
}

impl Gate {
    /// A closed gate to `upstream`.
    pub fn closed(upstream: SocketAddr, strip_prefix: &str, hold: Duration) -> Gate {
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (o, s, prefix) = (open.clone(), seen.clone(), strip_prefix.to_owned());
        let server = TestServer::start(move |req| {
            let auth = req.header("authorization").map(str::to_owned);
            s.lock().unwrap().push((req.path.clone(), auth));
            if !o.load(std::sync::atomic::Ordering::SeqCst) {
                return Response::text(503, "gate closed").delayed(hold);
            }
            let path = req.path.strip_prefix(&prefix).unwrap_or(&req.path);
            let body = String::from_utf8_lossy(&req.body);
            match http_request(upstream, &req.method, path, &body) {
                Ok((status, body)) => Response::json(body).status(status),
                Err(e) => Response::text(502, e.to_string()),
            }
        });
        Gate { server, open, seen }
    }

    /// Lets requests through from now on.
    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request so far: (path, `Authorization` header).
    pub fn requests(&self) -> Vec<GateRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RealAlertmanager {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- alertmanager log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped `alerts/alertmanager.yml` with its receivers pointed at `receiver` and the
/// grouping delays shortened to 1s for a test (the shipped 30s/5m would make every test
/// minutes long; routes, grouping keys and inhibit rules are untouched).
pub fn shipped_config(receiver: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/alertmanager.yml");
    let shipped = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let replaced = if let Some(url) = trimmed.strip_prefix("- url: ") {
            let path = url
                .split_once("://")
                .map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
            format!("{indent}- url: {receiver}{path}")
        } else if trimmed.starts_with("group_wait:") {
            format!("{indent}group_wait: 1s")
        } else if trimmed.starts_with("group_interval:") {
            format!("{indent}group_interval: 1s")
        } else {
            line.to_owned()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

/// Alertmanager's count of the webhook notifications it has started to send (it counts each
/// before sending it).
pub fn notifications_started(am: &RealAlertmanager) -> usize {
    let (status, body) = am.http("GET", "/metrics", "").unwrap();
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("alertmanager_notifications_total{") && l.contains("webhook"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// Records webhook notifications: (path, JSON body).
pub struct WebhookReceiver {
    server: TestServer,
    got: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl WebhookReceiver {
    /// Starts the receiver on a free loopback port.
    pub fn start() -> WebhookReceiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let server = TestServer::start(move |req| {
            if let Ok(v) = serde_json::from_slice(&req.body) {
                g.lock().unwrap().push((req.path.clone(), v));
            }
            Response::json("{}")
        });
        WebhookReceiver { server, got }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every notification so far.
    pub fn notifications(&self) -> Vec<(String, serde_json::Value)> {
        self.got.lock().unwrap().clone()
    }

    /// Every (receiver path, status, alert) seen so far, one row per alert in each notification.
    pub fn alerts(&self) -> Vec<(String, String, serde_json::Value)> {
        self.notifications()
            .into_iter()
            .flat_map(|(path, n)| {
                n["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| {
                        (
                            path.clone(),
                            a["status"].as_str().unwrap_or("").to_owned(),
                            a,
                        )
                    })
            })
            .collect()
    }
}
