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
    /// read from `/proc`); waits (bounded) for `/-/ready`.
    pub fn start(config: &str) -> RealAlertmanager {
        let dir = tempfile::Builder::new()
            .prefix("real-alertmanager-")
            .tempdir()
            .unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let mut child = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--cluster.listen-address=")
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
        let addr = listen::wait_listening(&mut child, &[]).unwrap_or_else(|why| {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("alertmanager.log"));
            panic!("Alertmanager {why}:\n{}", log.unwrap_or_default())
        });
        let am = RealAlertmanager { child, addr, dir };
        wait::until(
            "Alertmanager to be ready",
            wait::PATIENCE,
            || match http_get(am.addr, "/-/ready") {
                Some((200, _, _)) => Ok(()),
                other => Err(format!("{other:?}\n{}", am.log())),
            },
        );
        am
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
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(super::exporter::ANSWER_TIMEOUT))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
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

impl Drop for RealAlertmanager {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- alertmanager log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
