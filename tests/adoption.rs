//! What a platform team relies on when it adopts the exporter, tested on the real binary
//! against the fake PD: reloads (SIGHUP and `POST /-/reload`) that change thresholds and keep
//! violations and counters, flags from the environment, the exporter's own log (level, format,
//! deprecated spellings), `process_*` checked against `/proc/<pid>`, and the build identity.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use support::exporter::{Exporter, binary, inv, sample, samples};
use support::fake_pd::{FakePd, cluster};
use support::wait::{self, PATIENCE};

/// One TiKV log line in the unified format (a real line's shape, tests/data).
const LINE: &str = "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 5\"] [region_id=1]\n";

fn write_config(path: &Path, store_slow: &str) {
    std::fs::write(
        path,
        format!("poll_interval: 200ms\ninvariants:\n  store_slow:\n    threshold: {store_slow}\n"),
    )
    .unwrap();
}

fn append(path: &Path, lines: usize) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(LINE.repeat(lines).as_bytes()).unwrap();
}

/// `tikv_log_lines_total` over all its series.
fn log_lines(m: &str) -> f64 {
    samples(m)
        .iter()
        .filter(|(n, _, _)| n == "tikv_log_lines_total")
        .map(|(_, _, v)| v)
        .sum()
}

fn threshold(e: &Exporter, name: &str, store: &str) -> f64 {
    e.invariant(name, store).unwrap()["threshold"]
        .as_f64()
        .unwrap()
}

/// Waits until the API shows `want` as the threshold (the first poll after a reload).
fn wait_threshold(e: &Exporter, name: &str, store: &str, want: f64) {
    wait::until_or(
        &format!("{name} threshold {want}"),
        PATIENCE,
        || match threshold(e, name, store) {
            t if t == want => Ok(()),
            t => Err(t.to_string()),
        },
        || e.stderr(),
    );
}

#[test]
fn reload_applies_new_thresholds_refuses_bad_configs_and_keeps_state() {
    let pd = FakePd::with_live_stores(&cluster(3));
    pd.set_slow_score(2, 50);
    // Store 1 Disconnected for 80 s: past store_down's 60 s grace, firing at once.
    pd.set_heartbeat_age(1, std::time::Duration::from_secs(100));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    write_config(&cfg, "90");
    let log = dir.path().join("tikv.log");
    std::fs::write(&log, "").unwrap();
    let mut e = Exporter::start(&[
        "--config.file".into(),
        cfg.display().to_string(),
        "--pd.endpoints".into(),
        pd.url(),
        "--logs.file".into(),
        format!("{}=2", log.display()),
    ]);
    let down = inv("store_down", "1", "critical");
    let slow = inv("store_slow", "2", "warning");
    let m = e.wait_metrics("store 1 down", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &down) == Some(1.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &slow), Some(0.0));
    let since = sample(&m, "tikv_invariant_active_since_timestamp_seconds", &down).unwrap();
    e.wait_source_up("file:tikv.log", 1.0);
    append(&log, 7);
    e.wait_metrics("7 log lines", PATIENCE, |m| log_lines(m) == 7.0);

    // A lower threshold through POST /-/reload: store 2 (slow_score 50) fires; store 1's
    // violation keeps its start, the log counters their values.
    write_config(&cfg, "40");
    let (code, _, body) = e.request("POST", "/-/reload");
    assert_eq!((code, body.as_str()), (200, "configuration reloaded\n"));
    wait_threshold(&e, "store_slow", "2", 40.0);
    let m = e.wait_metrics("store 2 slow", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &slow) == Some(1.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &down), Some(1.0));
    assert_eq!(
        sample(&m, "tikv_invariant_active_since_timestamp_seconds", &down),
        Some(since)
    );
    assert_eq!(log_lines(&m), 7.0);

    // A config the validation refuses: 500 naming the key, the old one keeps running.
    std::fs::write(
        &cfg,
        "poll_interval: 200ms\ninvariants:\n  store_slow:\n    threshold: high\n",
    )
    .unwrap();
    let (code, _, body) = e.request("POST", "/-/reload");
    assert_eq!(code, 500, "{body}");
    assert!(body.starts_with("failed to reload config: "), "{body}");
    assert!(body.contains("threshold"), "{body}");
    // Not YAML at all, by SIGHUP: logged, the process keeps serving the old configuration.
    std::fs::write(&cfg, "invariants: [\n").unwrap();
    e.signal("HUP");
    wait::until_or(
        "the second refused reload to be logged",
        PATIENCE,
        || match e
            .stderr()
            .matches("level=error msg=\"reload failed")
            .count()
        {
            2 => Ok(()),
            n => Err(format!("{n} logged")),
        },
        || e.stderr(),
    );
    assert!(e.is_running());
    assert_eq!(threshold(&e, "store_slow", "2"), 40.0);
    let m = e.metrics();
    assert_eq!(sample(&m, "tikv_invariant_violation", &slow), Some(1.0));
    assert_eq!(e.get("/-/reload").0, 405);

    // A good config by SIGHUP: 60 is above store 2's score, which resolves.
    write_config(&cfg, "60");
    e.signal("HUP");
    let m = e.wait_metrics("store 2 resolved", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &slow) == Some(0.0)
    });
    wait_threshold(&e, "store_slow", "2", 60.0);
    assert_eq!(
        sample(&m, "tikv_invariant_active_since_timestamp_seconds", &down),
        Some(since)
    );
    // The log source was not restarted: it goes on counting from where it was.
    append(&log, 3);
    e.wait_metrics("10 log lines", PATIENCE, |m| log_lines(m) == 10.0);
    let log_text = e.stderr();
    assert_eq!(
        log_text
            .matches("level=info msg=\"configuration reloaded")
            .count(),
        2,
        "{log_text}"
    );
    assert_eq!(e.terminate(), Some(0), "{}", e.stderr());
}

#[test]
fn a_reload_that_changes_restart_only_settings_says_so_and_keeps_them() {
    let pd = FakePd::with_live_stores(&cluster(1));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, "poll_interval: 200ms\n").unwrap();
    let e = Exporter::start(&[
        "--config.file".into(),
        cfg.display().to_string(),
        "--pd.endpoints".into(),
        pd.url(),
    ]);
    e.wait_ready();
    std::fs::write(
        &cfg,
        "poll_interval: 200ms\nweb:\n  telemetry_path: /other\n",
    )
    .unwrap();
    assert_eq!(e.request("PUT", "/-/reload").0, 200);
    assert!(
        e.stderr().contains(
            "level=warn msg=\"reload: web changed; that takes a restart, the running value is kept\""
        ),
        "{}",
        e.stderr()
    );
    assert_eq!(e.get("/metrics").0, 200);
    assert_eq!(e.get("/other").0, 404);
}

#[test]
fn every_flag_can_come_from_the_environment_and_the_command_line_wins() {
    let pd = FakePd::with_live_stores(&cluster(2));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tikv.log");
    std::fs::write(&log, "").unwrap();
    let log_spec = format!("{}=2", log.display());
    let e = Exporter::start_with_env(
        // A bad value in the environment, overridden by the flag.
        &["--pd.timeout".into(), "1s".into()],
        &[
            ("TIKV_HEALTH_EXPORTER_PD_ENDPOINTS", &pd.url()),
            ("TIKV_HEALTH_EXPORTER_PD_TIMEOUT", "not a duration"),
            ("TIKV_HEALTH_EXPORTER_POLL_INTERVAL", "200ms"),
            ("TIKV_HEALTH_EXPORTER_LOGS_FILE", &log_spec),
            ("TIKV_HEALTH_EXPORTER_WEB_TELEMETRY_PATH", "/m"),
            ("TIKV_HEALTH_EXPORTER_LOG_FORMAT", "json"),
            ("TIKV_HEALTH_EXPORTER_LOG_LEVEL", "debug"),
        ],
    );
    let m = wait::until_or(
        "PD and the log file up on /m",
        PATIENCE,
        || {
            let (code, _, m) = e.get("/m");
            let up = |s| sample(&m, "tikv_health_exporter_source_up", &[("source", s)]);
            match (code, up("pd"), up("file:tikv.log")) {
                (200, Some(1.0), Some(1.0)) => Ok(m),
                _ => Err(format!("{code}\n{m}")),
            }
        },
        || e.stderr(),
    );
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "file:tikv.log")]
        ),
        Some(1.0)
    );
    // Polls every 200 ms: 5 polls take 0.8 s (far less than 20 s even on a loaded machine);
    // at the default 10 s they would take 40 s.
    pd.wait_requests_to("/pd/api/v1/stores", 5);
    let arrivals: Vec<_> = pd
        .requests()
        .iter()
        .filter(|r| r.path_only() == "/pd/api/v1/stores")
        .map(|r| r.received)
        .collect();
    let span = arrivals[4] - arrivals[0];
    assert!(span < std::time::Duration::from_secs(20), "{span:?}");
    // The exporter's own lines are JSON objects with ts, level and msg; debug shows each poll.
    let log_text = e.stderr();
    let lines: Vec<serde_json::Value> = log_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let with = |level: &str, prefix: &str| {
        lines
            .iter()
            .find(|l| l["level"] == level && l["msg"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {level} line {prefix:?} in\n{log_text}"))
    };
    let listening = with("info", "listening on");
    assert!(listening["ts"].as_str().unwrap().ends_with('Z'));
    assert!(
        with("debug", "poll done in ")["msg"]
            .as_str()
            .unwrap()
            .contains(": 2 stores, ")
    );

    let help = Command::new(binary()).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for var in [
        "TIKV_HEALTH_EXPORTER_PD_ENDPOINTS",
        "TIKV_HEALTH_EXPORTER_LOGS_DOCKER_FROM_START",
        "TIKV_HEALTH_EXPORTER_LOG_LEVEL",
        "TIKV_HEALTH_EXPORTER_WEB_LISTEN_ADDRESS",
    ] {
        assert!(help.contains(&format!("[env: {var}=")), "{var} in\n{help}");
    }
    // The old spellings work but are not advertised.
    assert!(!help.contains("--log.file") && !help.contains("--log.docker"));
}

#[test]
fn log_level_filters_and_old_log_input_flags_warn() {
    let pd = FakePd::with_live_stores(&cluster(1));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tikv.log");
    std::fs::write(&log, "").unwrap();
    let e = Exporter::start(&[
        "--pd.endpoints".into(),
        pd.url(),
        "--poll-interval".into(),
        "200ms".into(),
        "--log.file".into(),
        format!("{}=2", log.display()),
        "--log.level".into(),
        "warn".into(),
    ]);
    e.wait_source_up("file:tikv.log", 1.0);
    append(&log, 2);
    e.wait_metrics("2 lines", PATIENCE, |m| log_lines(m) == 2.0);
    let text = e.stderr();
    assert!(
        text.starts_with(
            "ts=20"
        ) && text.lines().next().unwrap().contains(
            " level=warn msg=\"--log.file is deprecated and will be removed; use --logs.file (or TIKV_HEALTH_EXPORTER_LOGS_FILE)\""
        ),
        "{text}"
    );
    assert!(!text.contains("level=info"), "{text}");
}

/// The fields of `/proc/<pid>/stat` after the command.
fn proc_stat(pid: u32) -> Vec<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace()
        .map(|f| f.parse().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn process_metrics_match_proc_of_the_process() {
    let pd = FakePd::with_live_stores(&cluster(1));
    let e = Exporter::start(&["--pd.endpoints".into(), pd.url()]);
    let pid = e.pid();
    let m = e.metrics();
    let get = |name: &str| sample(&m, name, &[]).unwrap_or_else(|| panic!("{name} in\n{m}"));
    // Read after the scrape: CPU time only grows.
    let stat = proc_stat(pid);
    let cpu = (stat[11] + stat[12]) / 100.0;
    let metric_cpu = get("process_cpu_seconds_total");
    assert!((0.0..=cpu).contains(&metric_cpu), "{metric_cpu} vs {cpu}");
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        get("process_start_time_seconds"),
        btime + stat[19] / 100.0,
        "start time"
    );
    let started = get("process_start_time_seconds");
    let now = wait::unix_now();
    assert!(
        started <= now && started > now - 600.0,
        "{started} vs {now}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(get("process_max_fds"), soft);
    // The process's own descriptors (listener, files, the directory being read ...): a few
    // more or less between the scrape and this read.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    assert!(
        (get("process_open_fds") - fds).abs() <= 4.0,
        "{} vs {fds}",
        get("process_open_fds")
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    let rss = get("process_resident_memory_bytes");
    assert!(
        (rss - rss_kb * 1024.0).abs() <= 0.25 * rss_kb * 1024.0,
        "{rss} vs {rss_kb} kB"
    );
    let vsize = get("process_virtual_memory_bytes");
    assert!(
        (vsize - stat[20]).abs() <= 0.25 * stat[20],
        "{vsize} vs {}",
        stat[20]
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(m.contains(&format!("# HELP {name} ")), "HELP of {name}");
    }
}

#[test]
fn version_and_build_info_name_the_revision_and_compiler() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        version
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {version}"))
            .to_owned()
    };
    assert!(version.starts_with(&format!(
        "tikv-health-exporter {}\n",
        env!("CARGO_PKG_VERSION")
    )));
    let revision = line("revision: ");
    let rustc = line("rustc version: ");
    assert!(rustc.starts_with("rustc 1."), "{rustc}");
    // Built from this checkout: its HEAD (or what GIT_REVISION said at build time).
    let expected = match option_env!("GIT_REVISION") {
        Some(r) if !r.is_empty() && r != "unknown" => r.to_owned(),
        _ => {
            let head = Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap();
            assert!(head.status.success(), "this test runs in a git checkout");
            String::from_utf8(head.stdout).unwrap().trim().to_owned()
        }
    };
    assert_eq!(revision, expected);
    let short = Command::new(binary()).arg("-V").output().unwrap();
    assert_eq!(
        String::from_utf8(short.stdout).unwrap(),
        format!(
            "tikv-health-exporter {} (revision: {revision})\n",
            env!("CARGO_PKG_VERSION")
        )
    );

    let pd = FakePd::with_live_stores(&cluster(1));
    let e = Exporter::start(&["--pd.endpoints".into(), pd.url()]);
    assert_eq!(
        sample(
            &e.metrics(),
            "tikv_health_exporter_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", &revision),
                ("rustc_version", &rustc),
            ]
        ),
        Some(1.0)
    );
}
