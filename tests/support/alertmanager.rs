//! A real Alertmanager process (Debian `prometheus-alertmanager`) and a webhook receiver that
//! records every notification it gets.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::exporter::http_get;
use super::http::{Response, TestServer, free_port};

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
    /// Starts Alertmanager with this configuration text; waits (bounded) for `/-/ready`.
    pub fn start(config: &str) -> RealAlertmanager {
        let dir = tempfile::Builder::new()
            .prefix("real-alertmanager-")
            .tempdir()
            .unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install prometheus-alertmanager (scripts/test-all.sh does)",
                    alertmanager_bin()
                )
            });
        let am = RealAlertmanager { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(addr, "/-/ready").is_none_or(|r| r.0 != 200) {
            assert!(
                Instant::now() < deadline,
                "Alertmanager not ready:\n{}",
                am.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
