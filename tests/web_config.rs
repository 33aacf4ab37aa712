//! `--web.config.file` end to end, with the real binary: a real Prometheus scraping over TLS
//! with basic auth (and refusing a wrong password and an expired certificate), 401s, client
//! certificates refused in the handshake, a certificate rotated the way kubelet updates a
//! Secret volume, a password changed in the file, and bad files at start and on re-read.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::exporter::{Exporter, binary, http_get};
use support::fake_pd::tls::{Ca, ExtendedKeyUsagePurpose, Leaf};
use support::https::{Answer, Https, basic};
use support::prometheus::{RealPrometheus, render_config_jobs};
use support::{cmd, listen, wait};

/// A bcrypt hash of `password` at the lowest cost (fast to check).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// A test directory with a CA, a server certificate for 127.0.0.1 in `server.pem` /
/// `server-key.pem` and the CA in `ca.pem`.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("web-config-test-ca");
        let server = ca.server("exporter", &["127.0.0.1", "localhost"]);
        let s = Setup { dir, ca, server };
        s.write("server.pem", &s.server.cert_pem);
        s.write("server-key.pem", &s.server.key_pem);
        s.write("ca.pem", &s.ca.pem());
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` atomically (a temp file renamed over it).
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// A client trusting the CA, without a certificate.
    fn client(&self) -> Https {
        Https::new(&self.ca.pem())
    }

    /// Starts the exporter (PD unreachable: it serves all the same) with `web.yml` = `web`.
    fn start(&self, web: &str, extra: &[&str]) -> Exporter {
        let path = self.write("web.yml", web);
        let mut args = vec![
            "--pd.endpoints".to_owned(),
            listen::refused_url(),
            format!("--web.config.file={}", path.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Exporter::start(&args)
    }
}

/// `tls_server_config` with the setup's server certificate, plus `extra` lines under it.
fn tls(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{extra}")
}

/// `basic_auth_users` with `user: hash(password)` for each pair.
fn users(list: &[(&str, &str)]) -> String {
    let mut y = "basic_auth_users:\n".to_owned();
    for (u, p) in list {
        y.push_str(&format!("  {u}: {}\n", hash(p)));
    }
    y
}

/// GET with basic auth; panics on a transport error.
fn get_as(client: &Https, e: &Exporter, path: &str, user: &str, password: &str) -> Answer {
    let auth = basic(user, password);
    client
        .get(e.addr(), path, &[("Authorization", &auth)])
        .unwrap_or_else(|err| panic!("GET {path}: {err}\n{}", e.stderr()))
}

/// How often `needle` is in the exporter's log.
fn count_in_log(e: &Exporter, needle: &str) -> usize {
    e.stderr().matches(needle).count()
}

/// A real Prometheus scrapes the exporter over HTTPS (CA-verified) with basic auth; a job with
/// a wrong password is down with 401, and one scraping an exporter whose certificate expired
/// is down with Go's x509 error. What the scrape got is the exporter's own metrics.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let s = Setup::new();
    let web = format!("{}{}", tls(""), users(&[("prometheus", "scrape-pw-1")]));
    let e = s.start(&web, &[]);
    let expired_dir = Setup::new();
    let expired = expired_dir.ca.leaf(
        "exporter",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        true,
    );
    expired_dir.write("server.pem", &expired.cert_pem);
    expired_dir.write("server-key.pem", &expired.key_pem);
    let old = expired_dir.start(&web, &[]);

    let job = |name: &str, addr: std::net::SocketAddr, ca: &Path, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n    \
             basic_auth:\n      username: prometheus\n      password: {password}\n    \
             static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            ca.display(),
            addr.port()
        )
    };
    let config = render_config_jobs(
        &[
            job("exporter", e.addr(), &s.path("ca.pem"), "scrape-pw-1"),
            job("wrong_password", e.addr(), &s.path("ca.pem"), "scrape-pw-2"),
            job(
                "expired",
                old.addr(),
                &expired_dir.path("ca.pem"),
                "scrape-pw-1",
            ),
        ],
        Duration::from_secs(1),
        &[],
    );
    let prom = RealPrometheus::launch_config(&config, &[], "");
    let up = |job: &str| -> Option<f64> {
        let v = prom.query_blocking(&format!("up{{job=\"{job}\"}}"));
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    wait::until_or(
        "every job scraped once",
        wait::PATIENCE,
        || match (up("exporter"), up("wrong_password"), up("expired")) {
            (Some(1.0), Some(0.0), Some(0.0)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
        || e.stderr(),
    );
    let v = prom.query_blocking("tikv_health_exporter_source_up{job=\"exporter\",source=\"pd\"}");
    assert_eq!(
        v["data"]["result"][0]["value"][1], "0",
        "the exporter's own series, scraped over TLS: {v}"
    );
    let (_, targets) = prom.get("/api/v1/targets");
    let targets: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let error_of = |job: &str| -> String {
        targets["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["labels"]["job"] == job)
            .map(|t| t["lastError"].as_str().unwrap_or("").to_owned())
            .unwrap()
    };
    assert_eq!(error_of("exporter"), "");
    assert!(error_of("wrong_password").contains("401"), "{targets}");
    assert!(
        error_of("expired").contains("certificate has expired"),
        "{targets}"
    );
}

/// Every path needs the password (`/-/healthy` too, as the toolkit): none, a wrong one and an
/// unknown user get 401 with `WWW-Authenticate: Basic`; the right one gets the endpoint. The
/// configured headers are on both. Plain HTTP to the HTTPS port gets Go's 400; HTTP/2 is not
/// offered.
#[test]
fn every_path_needs_the_password_and_carries_the_headers() {
    let s = Setup::new();
    let web = format!(
        "{}http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    \
         X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n{}",
        tls(""),
        users(&[("alice", "alice-pw"), ("bob", "bob-pw")])
    );
    let e = s.start(&web, &[]);
    let client = s.client();
    let check_headers = |a: &Answer| {
        assert_eq!(a.header("x-frame-options"), Some("deny"), "{a:?}");
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"), "{a:?}");
        assert_eq!(
            a.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{a:?}"
        );
    };
    for path in [
        "/metrics",
        "/",
        "/-/healthy",
        "/-/ready",
        "/api/v1/invariants",
        "/api/v1/leadership",
        "/api/v1/stores",
        "/api/v1/cluster",
        "/api/v1/hot-regions?type=write",
        "/nope",
    ] {
        let none = client.get(e.addr(), path, &[]).unwrap();
        let wrong = get_as(&client, &e, path, "alice", "bob-pw");
        let unknown = get_as(&client, &e, path, "carol", "alice-pw");
        for a in [&none, &wrong, &unknown] {
            assert_eq!(a.status, 401, "{path}: {a:?}");
            assert_eq!(a.header("www-authenticate"), Some("Basic"), "{path}");
            assert_eq!(a.body, "Unauthorized\n");
            check_headers(a);
        }
        let ok = get_as(&client, &e, path, "alice", "alice-pw");
        match path {
            "/nope" => assert_eq!(ok.status, 404, "{ok:?}"),
            // Ready or not (PD is down): the endpoint's own answer.
            "/-/ready" => assert!(matches!(ok.status, 200 | 503), "{ok:?}"),
            // Asks PD (which may be down here): PD's answer or a 502 saying why.
            "/api/v1/hot-regions?type=write" => {
                assert!(matches!(ok.status, 200 | 502), "{ok:?}")
            }
            _ => assert_eq!(ok.status, 200, "{path}: {ok:?}"),
        }
        assert_eq!(ok.header("www-authenticate"), None);
        check_headers(&ok);
    }
    let m = get_as(&client, &e, "/metrics", "bob", "bob-pw");
    assert!(
        m.body.contains("tikv_health_exporter_build_info"),
        "{}",
        m.body
    );
    let conn = client.connect(e.addr()).unwrap();
    assert_eq!(
        conn.alpn().as_deref(),
        Some(&b"http/1.1"[..]),
        "HTTP/1.1 only"
    );
    let (status, _, body) = http_get(e.addr(), "/metrics").unwrap();
    assert_eq!(status, 400);
    assert_eq!(body, "Client sent an HTTP request to an HTTPS server.\n");
    let log = e.stderr();
    assert!(
        log.contains("TLS (TLS12-TLS13, client certificates: NoClientCert), basic auth (2 users), 3 response headers"),
        "{log}"
    );
    assert!(!log.contains("alice-pw") && !log.contains("$2b$"), "{log}");
}

/// `RequireAndVerifyClientCert`: without a certificate, with one expired, or with one from
/// another CA the handshake is refused (the server's alert reaches the client; nothing is
/// served); with a valid one it serves. Each refusal is logged at debug level.
#[test]
fn a_required_client_certificate_is_checked_in_the_handshake() {
    let s = Setup::new();
    let web = tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n");
    let e = s.start(&web, &["--log.level", "debug"]);
    let good = s.ca.client("prometheus", &["prometheus"]);
    let with = |leaf: &Leaf| Https::with_identity(&s.ca.pem(), &leaf.cert_pem, &leaf.key_pem);
    // The start's plain-HTTP probes were refused handshakes too.
    let logged = count_in_log(&e, "TLS handshake from 127.0.0.1:");
    let ok = with(&good).get(e.addr(), "/-/healthy", &[]).unwrap();
    assert_eq!((ok.status, ok.body.as_str()), (200, "Healthy\n"), "{ok:?}");

    let refused = |client: &Https| -> String {
        let err = client
            .get(e.addr(), "/-/healthy", &[])
            .expect_err("refused in the handshake");
        assert!(err.contains("alert"), "the server's alert: {err}");
        err
    };
    let none = refused(&s.client());
    assert!(none.contains("CertificateRequired"), "{none}");
    let expired = s.ca.leaf(
        "prometheus",
        &["prometheus"],
        ExtendedKeyUsagePurpose::ClientAuth,
        true,
    );
    let err = refused(&with(&expired));
    assert!(err.contains("CertificateExpired"), "{err}");
    let stranger = Ca::new("another-ca").client("prometheus", &["prometheus"]);
    refused(&with(&stranger));
    wait::until_true(
        "three refused handshakes logged",
        wait::PATIENCE,
        || count_in_log(&e, "TLS handshake from 127.0.0.1:") >= logged + 3,
        || e.stderr(),
    );
    assert!(e.stderr().contains("failed"), "{}", e.stderr());
}

/// `client_allowed_sans`: a verified certificate must also carry one of the listed names.
#[test]
fn client_allowed_sans_selects_client_certificates() {
    let s = Setup::new();
    let web = tls(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
         client_allowed_sans: [prometheus.monitoring.svc, 10.0.0.7]\n",
    );
    let e = s.start(&web, &[]);
    let with = |sans: &[&str]| {
        let leaf = s.ca.client("c", sans);
        Https::with_identity(&s.ca.pem(), &leaf.cert_pem, &leaf.key_pem)
    };
    for sans in [&["prometheus.monitoring.svc"][..], &["other", "10.0.0.7"]] {
        let a = with(sans).get(e.addr(), "/-/healthy", &[]).unwrap();
        assert_eq!(a.status, 200, "{sans:?}");
    }
    let err = with(&["grafana.monitoring.svc"])
        .get(e.addr(), "/-/healthy", &[])
        .expect_err("no allowed SAN");
    assert!(err.contains("alert"), "{err}");
}

/// A client refuses an expired server certificate (the exporter serves what it is given).
#[test]
fn an_expired_server_certificate_is_refused_by_clients() {
    let s = Setup::new();
    let expired = s.ca.leaf(
        "exporter",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        true,
    );
    s.write("server.pem", &expired.cert_pem);
    s.write("server-key.pem", &expired.key_pem);
    let e = s.start(&tls(""), &[]);
    let err = s
        .client()
        .get(e.addr(), "/-/healthy", &[])
        .expect_err("expired");
    assert!(err.contains("xpired"), "{err}");
}

/// Writes `leaf` as `secret/tls.crt` and `secret/tls.key` the way kubelet's AtomicWriter
/// updates a Secret volume: a new `..<version>` directory, then the `..data` symlink swapped
/// to it by a rename (the file names are symlinks through `..data`).
fn publish_secret(dir: &Path, version: u32, leaf: &Leaf) {
    use std::os::unix::fs::symlink;
    let secret = dir.join("secret");
    let data = secret.join(format!("..v{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), &leaf.key_pem).unwrap();
    let tmp = secret.join("..data_tmp");
    symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, secret.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = secret.join(f);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
}

/// A certificate rotated on disk is served from the next connection on, without a restart; a
/// connection opened before keeps working.
#[test]
fn a_rotated_certificate_is_served_without_a_restart() {
    let s = Setup::new();
    let first = s.ca.server("exporter-1", &["127.0.0.1"]);
    let second = s.ca.server("exporter-2", &["127.0.0.1"]);
    publish_secret(s.dir.path(), 1, &first);
    let web = "tls_server_config:\n  cert_file: secret/tls.crt\n  key_file: secret/tls.key\n";
    let e = s.start(web, &[]);
    let client = s.client();
    let mut before = client.connect(e.addr()).unwrap();
    assert_eq!(before.peer_certificate(), Some(first.der()));

    publish_secret(s.dir.path(), 2, &second);
    let conn = client.connect(e.addr()).unwrap();
    assert_eq!(
        conn.peer_certificate(),
        Some(second.der()),
        "the next connection gets the new certificate\n{}",
        e.stderr()
    );
    assert_eq!(before.get("/-/healthy", &[]).unwrap().status, 200);
    assert_eq!(count_in_log(&e, "changed, applied"), 1, "{}", e.stderr());
    assert_eq!(count_in_log(&e, "keeps serving"), 0, "{}", e.stderr());
}

/// A password changed in the file applies to the next request, on a connection already open
/// (Prometheus keeps its connections).
#[test]
fn a_changed_password_takes_effect_on_an_open_connection() {
    let s = Setup::new();
    let e = s.start(
        &format!("{}{}", tls(""), users(&[("alice", "old-pw")])),
        &[],
    );
    let mut conn = s.client().connect(e.addr()).unwrap();
    let get = |conn: &mut support::https::Conn, pw: &str| {
        let auth = basic("alice", pw);
        conn.get("/-/healthy", &[("Authorization", &auth)])
            .unwrap()
            .status
    };
    assert_eq!(get(&mut conn, "old-pw"), 200);
    s.write(
        "web.yml",
        &format!("{}{}", tls(""), users(&[("alice", "new-pw-2")])),
    );
    assert_eq!(get(&mut conn, "old-pw"), 401, "{}", e.stderr());
    assert_eq!(get(&mut conn, "new-pw-2"), 200);
    assert!(e.stderr().contains("basic auth (1 users)"));
}

/// A bad file at start: the exporter (and `check-config`) exit naming the file, the key and
/// its line; the variable sets the flag too.
#[test]
fn a_bad_file_at_start_is_refused_naming_the_key() {
    let s = Setup::new();
    let web = s.write("web.yml", &tls("  min_version: TLS11\n"));
    let mut run = Command::new(binary());
    run.args(["--pd.endpoints", &listen::refused_url()])
        .args(["--web.listen-address", "127.0.0.1:0"])
        .env("TIKV_HEALTH_EXPORTER_WEB_CONFIG_FILE", &web);
    let out = cmd::run(run, "exporter with a bad web config");
    assert_eq!(out.status.code(), Some(1), "{}", cmd::show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "`web.config_file`",
        "web.yml: line 4: `tls_server_config.min_version`",
        "TLS11 is not supported: rustls implements TLS12 and TLS13 only",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }

    let cfg = s.write(
        "config.yml",
        &format!(
            "pd:\n  endpoints: [{}]\nweb:\n  config_file: {}\n",
            listen::refused_url(),
            s.write("bad-users.yml", "basic_auth_users:\n  alice: hunter2\n")
                .display()
        ),
    );
    let mut check = Command::new(binary());
    check.arg("check-config").arg(&cfg);
    let out = cmd::run(check, "check-config with a bad web config");
    assert!(!out.status.success(), "{}", cmd::show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4: `web.config_file`: web config file"),
        "{err}"
    );
    assert!(
        err.contains("line 2: `basic_auth_users.alice`: not a bcrypt hash"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let mut missing = Command::new(binary());
    missing
        .args(["--pd.endpoints", &listen::refused_url()])
        .args(["--web.listen-address", "127.0.0.1:0"])
        .arg(format!(
            "--web.config.file={}",
            s.path("nope.yml").display()
        ));
    let out = cmd::run(missing, "exporter with a missing web config");
    assert_eq!(out.status.code(), Some(1), "{}", cmd::show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read web config file"),
        "{}",
        cmd::show(&out)
    );
}

/// A bad new version of the file (or of a file it names, or one turning TLS off) keeps the
/// previous configuration serving; each failure is logged once however many requests see it,
/// and the recovery once.
#[test]
fn a_bad_file_on_reread_keeps_the_previous_config_serving() {
    let s = Setup::new();
    let good = format!("{}{}", tls(""), users(&[("alice", "pw-1")]));
    let e = s.start(&good, &[]);
    let client = s.client();
    s.write("web.yml", &format!("{good}  bob: not-a-hash\n"));
    for _ in 0..3 {
        assert_eq!(
            get_as(&client, &e, "/-/healthy", "alice", "pw-1").status,
            200
        );
    }
    assert_eq!(count_in_log(&e, "keeps serving"), 1, "{}", e.stderr());
    assert!(
        e.stderr()
            .contains("`basic_auth_users.bob`: not a bcrypt hash"),
        "{}",
        e.stderr()
    );

    // A broken key file, then TLS turned off: each kept out, logged once.
    s.write("web.yml", &good);
    assert_eq!(
        get_as(&client, &e, "/-/healthy", "alice", "pw-1").status,
        200
    );
    assert_eq!(count_in_log(&e, "is valid again"), 1, "{}", e.stderr());
    s.write("server-key.pem", "not a key");
    for _ in 0..2 {
        assert_eq!(
            get_as(&client, &e, "/-/healthy", "alice", "pw-1").status,
            200
        );
    }
    assert!(
        e.stderr()
            .contains("`tls_server_config.key_file`: no usable PEM private key"),
        "{}",
        e.stderr()
    );
    s.write("server-key.pem", &s.server.key_pem);
    s.write("web.yml", &users(&[("alice", "pw-1")]));
    for _ in 0..2 {
        assert_eq!(
            get_as(&client, &e, "/-/healthy", "alice", "pw-1").status,
            200
        );
    }
    assert!(
        e.stderr().contains("turning TLS off takes a restart"),
        "{}",
        e.stderr()
    );
    assert_eq!(count_in_log(&e, "keeps serving"), 3, "{}", e.stderr());
    s.write("web.yml", &good);
    assert_eq!(
        get_as(&client, &e, "/-/healthy", "alice", "pw-1").status,
        200
    );
    assert_eq!(count_in_log(&e, "is valid again"), 2, "{}", e.stderr());
}
