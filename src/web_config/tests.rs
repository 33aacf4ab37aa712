//! Parsing and validation of the web configuration file: what each key does, and that every
//! bad value is refused naming its key (and line).

use super::*;
use rcgen::{CertificateParams, KeyPair};

/// A temp dir with `cert.pem`/`key.pem` (a self-signed server certificate), `other-key.pem`
/// (a key of another certificate) and `ca.pem` (the same certificate, as a client CA).
struct Dir {
    dir: tempfile::TempDir,
    cert: String,
    key: String,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = KeyPair::generate().unwrap();
        let d = Dir {
            dir,
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        d.write("cert.pem", &d.cert);
        d.write("key.pem", &d.key);
        d.write("ca.pem", &d.cert);
        d.write("other-key.pem", &other.serialize_pem());
        d
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Loads `yaml` as `web.yml` in this dir.
    fn load(&self, yaml: &str) -> Result<WebSettings, WebConfigError> {
        load(&self.write("web.yml", yaml))
    }

    /// The error of `yaml`: (key, line, message).
    fn error(&self, yaml: &str) -> (String, Option<usize>, String) {
        match self.load(yaml) {
            Err(WebConfigError::Invalid { source, .. }) => {
                (source.key, source.line, source.message)
            }
            Err(e) => panic!("not a content error: {e}"),
            Ok(s) => panic!("accepted: {}", s.summary()),
        }
    }
}

/// `tls_server_config` with the dir's relative cert and key files, plus `extra` lines.
fn tls(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n{extra}")
}

#[test]
fn an_empty_file_is_plain_http_without_auth() {
    let d = Dir::new();
    let s = d.load("").unwrap();
    assert!(!s.tls_enabled() && !s.basic_auth());
    assert!(s.headers.is_empty() && s.rate_limit.is_none());
    assert_eq!(s.summary(), "plain HTTP");
}

#[test]
fn the_toolkit_sample_shape_loads_with_relative_paths() {
    let d = Dir::new();
    let hash = bcrypt::hash_with_salt("pw", 4, [9; 16])
        .unwrap()
        .to_string();
    let s = d
        .load(&format!(
            "{}http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: \"\"\n\
             basic_auth_users:\n  alice: {hash}\nrate_limit:\n  interval: 1s\n  burst: 5\n",
            tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")
        ))
        .unwrap();
    assert!(s.tls_enabled() && s.basic_auth());
    let headers: Vec<(String, String)> = s
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        headers,
        [
            (
                "strict-transport-security".into(),
                "max-age=31536000".into()
            ),
            ("x-frame-options".into(), "deny".into()),
        ],
        "a blank value is unset"
    );
    assert_eq!(s.rate_limit, Some((Duration::from_secs(1), 5)));
    assert_eq!(
        s.summary(),
        "TLS (TLS12-TLS13, client certificates: RequireAndVerifyClientCert), basic auth (1 \
         users), 2 response headers, rate limit 1 per 1s (burst 5)"
    );
    let cfg = s.tls.as_ref().unwrap();
    assert_eq!(cfg.alpn_protocols, [b"http/1.1".to_vec()], "HTTP/1.1 only");
    assert!(
        cfg.ignore_client_order,
        "prefer_server_cipher_suites defaults to true"
    );
}

#[test]
fn inline_cert_and_key_work_like_files() {
    let d = Dir::new();
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let s = d
        .load(&format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}  client_auth_type: VerifyClientCertIfGiven\n  client_ca: |\n{}",
            indent(&d.cert),
            indent(&d.key),
            indent(&d.cert)
        ))
        .unwrap();
    assert!(s.tls_enabled());
    assert!(
        s.summary().contains("VerifyClientCertIfGiven"),
        "{}",
        s.summary()
    );
}

#[test]
fn versions_suites_and_curves_map_to_rustls() {
    let d = Dir::new();
    let s = d
        .load(&tls(
            "  min_version: TLS12\n  max_version: TLS12\n  prefer_server_cipher_suites: false\n  \
             cipher_suites:\n    - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256\n    - \
             TLS_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n  \
             curve_preferences: [CurveP384, X25519]\n",
        ))
        .unwrap();
    let cfg = s.tls.as_ref().unwrap();
    assert!(!cfg.ignore_client_order);
    let p = cfg.crypto_provider();
    let tls12: Vec<String> = p
        .cipher_suites
        .iter()
        .filter(|c| c.tls13().is_none())
        .map(|c| format!("{:?}", c.suite()))
        .collect();
    assert_eq!(
        tls12,
        [
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        ],
        "in the file's order"
    );
    assert_eq!(
        p.cipher_suites
            .iter()
            .filter(|c| c.tls13().is_some())
            .count(),
        3,
        "TLS 1.3 suites are not configurable (as in Go)"
    );
    let groups: Vec<String> = p
        .kx_groups
        .iter()
        .map(|g| format!("{:?}", g.name()))
        .collect();
    assert_eq!(groups, ["secp384r1", "X25519"]);
    assert!(s.summary().contains("TLS12-TLS12"), "{}", s.summary());
    // TLS 1.3 only: TLS 1.3 names alone are fine.
    d.load(&tls(
        "  min_version: TLS13\n  cipher_suites: [TLS_AES_256_GCM_SHA384]\n",
    ))
    .unwrap();
}

#[test]
fn every_client_auth_type_is_accepted() {
    let d = Dir::new();
    for t in [
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "RequireClientCert",
    ] {
        let s = d.load(&tls(&format!("  client_auth_type: {t}\n"))).unwrap();
        assert!(s.tls_enabled(), "{t}");
    }
    for t in ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] {
        d.load(&tls(&format!(
            "  client_auth_type: {t}\n  client_ca_file: ca.pem\n"
        )))
        .unwrap();
    }
    let s = d
        .load(&tls(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             client_allowed_sans: [prometheus.monitoring.svc]\n",
        ))
        .unwrap();
    assert!(
        s.summary().ends_with("with one of 1 SANs)"),
        "{}",
        s.summary()
    );
}

/// Each bad value: the key it is about, its line (its parent's when it is not written), and a
/// message saying what is wrong.
#[test]
fn bad_values_are_refused_naming_the_key_and_line() {
    let d = Dir::new();
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  bogus: 1\n",
            "tls_server_config.bogus",
            4,
            "unknown field",
        ),
        ("basic_auth: {}\n", "basic_auth", 1, "unknown field"),
        (
            &tls("  client_auth_type: RequireAndVerify\n"),
            "tls_server_config.client_auth_type",
            4,
            "RequireAndVerifyClientCert",
        ),
        (
            &tls("  min_version: TLS11\n"),
            "tls_server_config.min_version",
            4,
            "rustls implements TLS12 and TLS13 only",
        ),
        (
            &tls("  max_version: TLS10\n"),
            "tls_server_config.max_version",
            4,
            "TLS10",
        ),
        (
            &tls("  min_version: SSL3\n"),
            "tls_server_config.min_version",
            4,
            "unknown TLS version",
        ),
        (
            &tls("  min_version: TLS13\n  max_version: TLS12\n"),
            "tls_server_config.min_version",
            4,
            "above max_version",
        ),
        (
            &tls("  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n    - TLS_NOPE\n"),
            "tls_server_config.cipher_suites[1]",
            6,
            "unknown cipher suite",
        ),
        (
            &tls("  cipher_suites: [TLS_RSA_WITH_AES_128_GCM_SHA256]\n"),
            "tls_server_config.cipher_suites[0]",
            4,
            "not implemented by rustls",
        ),
        (
            &tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            "tls_server_config.cipher_suites",
            4,
            "no TLS 1.2 suite",
        ),
        (
            &tls("  curve_preferences: [CurveP521]\n"),
            "tls_server_config.curve_preferences[0]",
            4,
            "not implemented",
        ),
        (
            &tls("  curve_preferences: [P256]\n"),
            "tls_server_config.curve_preferences[0]",
            4,
            "unknown curve",
        ),
        (
            &tls("  client_ca_file: ca.pem\n"),
            "tls_server_config.client_auth_type",
            1,
            "without a client auth policy",
        ),
        (
            &tls("  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config.client_ca_file",
            1,
            "give client_ca_file or client_ca",
        ),
        (
            &tls("  client_auth_type: RequestClientCert\n  client_allowed_sans: []\n"),
            "tls_server_config.client_allowed_sans",
            5,
            "empty",
        ),
        (
            &tls("  client_allowed_sans: [a]\n"),
            "tls_server_config.client_allowed_sans",
            4,
            "needs a client_auth_type",
        ),
        (
            "tls_server_config:\n  cert_file: cert.pem\n  cert: x\n  key_file: key.pem\n",
            "tls_server_config.cert",
            3,
            "not both",
        ),
        (
            "tls_server_config:\n  cert_file: cert.pem\n",
            "tls_server_config.key_file",
            1,
            "missing one of key or key_file",
        ),
        (
            "tls_server_config:\n  key_file: key.pem\n",
            "tls_server_config.cert_file",
            1,
            "missing one of cert or cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: key.pem\n",
            "tls_server_config.cert_file",
            2,
            "missing.pem: No such file",
        ),
        (
            "tls_server_config:\n  cert_file: key.pem\n  key_file: key.pem\n",
            "tls_server_config.cert_file",
            2,
            "no PEM certificate",
        ),
        (
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: cert.pem\n",
            "tls_server_config.key_file",
            3,
            "no usable PEM private key",
        ),
        (
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: other-key.pem\n",
            "tls_server_config.key_file",
            3,
            "does not fit the certificate",
        ),
        (
            "tls_server_config:\n  min_version: TLS13\n",
            "tls_server_config.min_version",
            2,
            "TLS is off",
        ),
        (
            "http_server_config:\n  headers:\n    Server: x\n",
            "http_server_config.headers.Server",
            3,
            "can not be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "http_server_config.headers.X-Frame-Options",
            3,
            "expected one of",
        ),
        (
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "http_server_config.headers.X-Content-Type-Options",
            3,
            "nosniff",
        ),
        (
            "http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\nb\"\n",
            "http_server_config.headers.Content-Security-Policy",
            3,
            "not a valid header value",
        ),
        (
            "basic_auth_users:\n  alice: secret\n",
            "basic_auth_users.alice",
            2,
            "not a bcrypt hash",
        ),
        (
            "rate_limit:\n  interval: 1s\n",
            "rate_limit.burst",
            1,
            "at least 1",
        ),
        (
            "rate_limit:\n  interval: 1s\n  burst: 0\n",
            "rate_limit.burst",
            3,
            "at least 1",
        ),
        (
            "rate_limit:\n  interval: soon\n",
            "rate_limit.interval",
            2,
            "soon",
        ),
    ];
    for (yaml, key, line, message) in cases {
        let (k, l, m) = d.error(yaml);
        assert_eq!(k, *key, "{yaml}\n{m}");
        // A key not written is located at its parent's line.
        assert_eq!(l, Some(*line), "{yaml}\n{k}: {m}");
        assert!(m.contains(message), "{yaml}\n{k}: {m}");
    }
}

#[test]
fn an_unreadable_file_is_named() {
    let d = Dir::new();
    let e = load(&d.dir.path().join("nope.yml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot read web config file "), "{e}");
    assert!(e.contains("nope.yml"), "{e}");
    let e = load(d.dir.path()).unwrap_err().to_string();
    assert!(e.ends_with("not a regular file"), "{e}");
    let e = d
        .load("tls_server_config:\n  min_version: [\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("web config file "), "{e}");
    assert!(e.contains("web.yml: line"), "{e}");
}

/// The source re-reads a changed file, keeps the previous settings when the new ones are bad
/// (or turn TLS off), and reads again once the file is fixed.
#[test]
fn the_source_follows_changes_and_keeps_the_last_good_settings() {
    let d = Dir::new();
    let path = d.write("web.yml", "");
    let source = WebConfigSource::open(&path).unwrap();
    let first = source.current();
    assert!(
        Arc::ptr_eq(&first, &source.current()),
        "unchanged: not read again"
    );
    let hash = bcrypt::hash_with_salt("pw", 4, [9; 16])
        .unwrap()
        .to_string();
    std::fs::write(&path, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
    assert!(source.current().basic_auth(), "a change is applied");
    std::fs::write(&path, "basic_auth_users:\n  alice: nope\n").unwrap();
    assert!(
        source.current().basic_auth(),
        "a bad version keeps the previous one"
    );
    std::fs::write(&path, tls("")).unwrap();
    let now = source.current();
    assert!(!now.tls_enabled(), "turning TLS on takes a restart");
    std::fs::write(&path, "{}\n").unwrap();
    assert!(!source.current().basic_auth(), "fixed: applied");

    // With TLS: a changed certificate file is a change; a broken one keeps the old.
    let path = d.write("tls.yml", &tls(""));
    let source = WebConfigSource::open(&path).unwrap();
    let before = source.current();
    std::fs::write(d.dir.path().join("key.pem"), "garbage").unwrap();
    assert!(
        Arc::ptr_eq(&before, &source.current()),
        "bad key: old settings"
    );
    std::fs::write(d.dir.path().join("key.pem"), &d.key).unwrap();
    let after = source.current();
    assert!(!Arc::ptr_eq(&before, &after), "fixed key: read again");
    assert!(after.tls_enabled());
    std::fs::write(&path, "").unwrap();
    assert!(
        source.current().tls_enabled(),
        "turning TLS off takes a restart"
    );
}

/// `examples/web-config.yml` loads as shipped (with certificates where it names them), and its
/// hash is of the password its comment gives.
#[test]
fn the_shipped_example_is_valid() {
    let d = Dir::new();
    d.write("server.crt", &d.cert);
    d.write("server.key", &d.key);
    d.write("ca.crt", &d.cert);
    let s = d
        .load(include_str!("../../examples/web-config.yml"))
        .unwrap();
    assert_eq!(
        s.summary(),
        "TLS (TLS12-TLS13, client certificates: RequireAndVerifyClientCert with one of 1 \
         SANs), basic auth (1 users), 5 response headers"
    );
    let users = s.users.as_ref().unwrap();
    let v = auth::Verifier::new();
    let header = |pw: &str| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{pw}"));
        Some(HeaderValue::from_str(&format!("Basic {b64}")).unwrap())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt.block_on(v.check(users, header("example-password"))));
    assert!(!rt.block_on(v.check(users, header("example"))));
}
