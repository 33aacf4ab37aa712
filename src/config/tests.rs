//! Unit tests of the configuration (`config/mod.rs`): parsing, defaults and validation.

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
    let e = Config::from_yaml("logs:\n  files:\n    - path: /x\n      stor: \"1\"\n").unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("logs.files.stor", Some(4)));
    let e = Config::from_yaml(
        "custom_invariants:\n  - name: x\n    query: up\n    op: \"=>\"\n    threshold: 1\n",
    )
    .unwrap_err();
    assert_eq!(e.key, "custom_invariants.op");
}

#[test]
fn docker_section_defaults_and_validation() {
    let cfg = Config::from_yaml("logs:\n  docker:\n    enabled: true\n    containers: [tikv-*]\n")
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
