//! End to end: the real exporter binary against a fake PD (built from PD's real JSON shapes):
//! the metric contract, every invariant transition over time, PD outages and failover,
//! Tombstone removal, the state file across restarts, the HTTP endpoints and log sources.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use support::exporter::{Exporter, inv, sample, samples};
use support::fake_pd::{FakePd, StoreSpec, cluster, samples as fixtures, store_json_mut};
use support::wait::{PATIENCE, unix_now};

const POLL: &str = "200ms";
/// [`POLL`] as a duration.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const STORES: &str = "/pd/api/v1/stores";

fn args(pd: &[&FakePd], extra: &[&str]) -> Vec<String> {
    let endpoints: Vec<String> = pd.iter().map(|p| p.url()).collect();
    let mut a = vec![
        "--pd.endpoints".to_owned(),
        endpoints.join(","),
        "--poll-interval".to_owned(),
        POLL.to_owned(),
        "--pd.timeout".to_owned(),
        "1s".to_owned(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn config_file(dir: &tempfile::TempDir, yaml: &str) -> String {
    let p = dir.path().join("config.yml");
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

/// The API's message for (invariant, store).
fn message(e: &Exporter, name: &str, store: &str) -> String {
    e.invariant(name, store).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn v(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
}

#[test]
fn contract_series_for_a_healthy_cluster() {
    let mut specs = cluster(3);
    specs.push(StoreSpec::tiflash(20));
    let pd = FakePd::with_live_stores(&specs);
    let e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    let m = e.wait_metrics("pd up", PATIENCE, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(1.0)
            && sample(
                m,
                "tikv_invariant_unknown",
                &inv("pd_leader", "", "critical"),
            ) == Some(0.0)
    });
    // Without an Accept header: the text format 0.0.4 (tests/exposition.rs negotiates).
    let (_, ctype, _) = e.get("/metrics");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!m.contains("# EOF"));
    for store in ["1", "2", "3", "20"] {
        for (name, sev) in [
            ("store_down", "critical"),
            ("disk_usage", "warning"),
            ("disk_low_space", "critical"),
            ("store_slow", "warning"),
        ] {
            for metric in [
                "tikv_invariant_violation",
                "tikv_invariant_pending",
                "tikv_invariant_unknown",
            ] {
                assert_eq!(
                    sample(&m, metric, &inv(name, store, sev)),
                    Some(0.0),
                    "{metric} {name} {store}"
                );
            }
        }
    }
    for metric in [
        "tikv_invariant_violation",
        "tikv_invariant_pending",
        "tikv_invariant_unknown",
    ] {
        assert_eq!(
            sample(&m, metric, &inv("pd_leader", "", "critical")),
            Some(0.0)
        );
    }
    // No Prometheus configured: the Prometheus-based invariants are not evaluated at all.
    assert!(!m.contains("write_latency_p99") && !m.contains("cpu_usage"));
    assert!(!m.contains("tikv_health_exporter_unmapped_samples"));
    assert_eq!(sample(&m, "tikv_pd_leader_changes_total", &[]), Some(0.0));
    for reason in ["invalid_id", "duplicate_id", "malformed"] {
        assert_eq!(
            sample(
                &m,
                "tikv_health_exporter_pd_rejected_stores",
                &[("reason", reason)]
            ),
            Some(0.0)
        );
    }
    // PD's space ratios (0.7 / 0.8 in the fake) are the disk thresholds.
    assert_eq!(
        v(
            &m,
            "tikv_invariant_threshold",
            &[("name", "disk_usage"), ("store", "1")]
        ),
        0.7
    );
    assert_eq!(
        v(
            &m,
            "tikv_invariant_threshold",
            &[("name", "disk_low_space"), ("store", "1")]
        ),
        0.8
    );
    // No active violations: no active-since series.
    assert!(!m.contains("tikv_invariant_active_since_timestamp_seconds{"));
    assert_eq!(
        v(
            &m,
            "tikv_store_info",
            &[
                ("store", "1"),
                ("address", "tikv-1:20160"),
                ("status_address", "tikv-1:20180"),
                ("version", "8.1.0"),
                ("engine", "tikv"),
            ]
        ),
        1.0
    );
    assert_eq!(
        v(
            &m,
            "tikv_store_info",
            &[
                ("store", "20"),
                ("address", "tiflash-20:3930"),
                ("status_address", "tiflash-20:20292"),
                ("version", "v8.1.0"),
                ("engine", "tiflash"),
            ]
        ),
        1.0
    );
    assert_eq!(
        v(&m, "tikv_store_state", &[("store", "1"), ("state", "Up")]),
        1.0
    );
    for s in ["Offline", "Disconnected", "Down", "Tombstone"] {
        assert_eq!(
            v(&m, "tikv_store_state", &[("store", "1"), ("state", s)]),
            0.0
        );
    }
    assert_eq!(v(&m, "tikv_store_leaders", &[("store", "1")]), 17.0);
    assert_eq!(v(&m, "tikv_store_regions", &[("store", "1")]), 60.0);
    let cap = v(&m, "tikv_store_capacity_bytes", &[("store", "1")]);
    let avail = v(&m, "tikv_store_available_bytes", &[("store", "1")]);
    assert!((cap - 311.7 * 1024f64.powi(3)).abs() < 1.0, "{cap}");
    assert!((avail - 222.1 * 1024f64.powi(3)).abs() < 1.0, "{avail}");
    let used = v(
        &m,
        "tikv_invariant_observed_value",
        &[("name", "disk_usage"), ("store", "1")],
    );
    assert!((used - (1.0 - avail / cap)).abs() < 1e-9, "{used}");
    let age = v(&m, "tikv_store_heartbeat_age_seconds", &[("store", "1")]);
    assert!((0.0..30.0).contains(&age), "{age}");
    assert_eq!(v(&m, "tikv_store_slow_score", &[("store", "2")]), 1.0);
    assert_eq!(
        samples(&m)
            .iter()
            .filter(|(n, _, _)| n == "tikv_health_exporter_build_info")
            .count(),
        1
    );
    // Bounded cardinality: no region or peer ids anywhere in the labels.
    for (_, labels, _) in samples(&m) {
        for (k, _) in labels {
            assert!(
                [
                    "name",
                    "store",
                    "severity",
                    "address",
                    "status_address",
                    "version",
                    "engine",
                    "state",
                    "source",
                    "event",
                    "level",
                    "revision",
                    "rustc_version",
                    "reason",
                    "type"
                ]
                .contains(&k.as_str()),
                "unexpected label {k}"
            );
        }
    }
}

#[test]
fn pd_is_asked_for_stores_once_per_poll_and_never_for_regions() {
    let pd = FakePd::with_live_stores(&cluster(3));
    let e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    pd.wait_requests_to(STORES, 12);
    let arrivals = |path: &str| -> Vec<Instant> {
        pd.requests()
            .iter()
            .filter(|r| r.path_only() == path)
            .map(|r| r.received)
            .collect()
    };
    // At most one /stores per poll, measured against the fake's own clock instead of a fixed
    // window: poll k+1 starts after poll k ended (so after its /stores arrived) and at least
    // one interval (less tokio's 5 ms lateness slack) after poll k started. So n requests
    // arriving over T mean n - 2 <= T / (interval - 5 ms), on a loaded machine as on an idle
    // one; two requests per poll would need twice that.
    let stores = arrivals(STORES);
    let span = *stores.last().unwrap() - stores[0];
    let most = 2
        + (span.as_secs_f64() / (POLL_INTERVAL - Duration::from_millis(5)).as_secs_f64()).floor()
            as usize;
    assert!(
        stores.len() <= most,
        "{} /stores requests over {span:?} (at most {most} at one per {POLL})",
        stores.len()
    );
    // Health and members (each member asked directly), and PD's cluster-wide sources (the
    // leader's own /metrics, the GC safe point, the min resolved ts, the schedulers and the
    // evict-slow-store list) once per 30 s: at the start, and never twice within 30 s.
    for path in [
        "/pd/api/v1/health",
        "/pd/api/v1/members",
        "/metrics",
        "/pd/api/v1/gc/safepoint",
        "/pd/api/v1/min-resolved-ts",
        "/pd/api/v1/schedulers",
        "/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list",
    ] {
        let asked = arrivals(path);
        assert!(!asked.is_empty(), "{path}: {:?}", pd.paths());
        for w in asked.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_secs(29), "{:?}", pd.paths());
        }
    }
    assert!(!pd.regions_requested());
    // One request each for the whole cluster: the per-store values come in the same body.
    assert!(
        pd.paths()
            .iter()
            .filter(|p| p.starts_with("/pd/api/v1/min-resolved-ts"))
            .all(|p| p == "/pd/api/v1/min-resolved-ts?scope=cluster"),
        "{:?}",
        pd.paths()
    );
}

/// The store's last heartbeat as the exporter published it (Unix seconds).
fn heartbeat(m: &str, store: &str) -> f64 {
    v(
        m,
        "tikv_store_last_heartbeat_timestamp_seconds",
        &[("store", store)],
    )
}

/// A rolling restart (TiUP, TiDB Operator) takes each store away for tens of seconds: PD marks
/// it Disconnected 20 s after its last heartbeat. Under the 60 s grace (counted from then)
/// nothing is critical; a store that stays away longer is critical within one poll.
#[test]
fn store_down_rides_out_a_rolling_restart_and_pages_a_long_one() {
    let pd = FakePd::with_live_stores(&cluster(3));
    let e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    let key = |s: &'static str| inv("store_down", s, "critical");
    let since = |m: &str, s| v(m, "tikv_invariant_active_since_timestamp_seconds", &key(s));

    // A restart 30 s in: Disconnected for 10 s. Pending (critical severity, but no page).
    pd.set_heartbeat_age(2, Duration::from_secs(30));
    let m = e.wait_metrics("store 2 pending", PATIENCE, |m| {
        sample(m, "tikv_invariant_pending", &key("2")) == Some(1.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &key("2")), Some(0.0));
    // The violation began when PD marked it Disconnected: 20 s after its last heartbeat.
    assert!(
        (heartbeat(&m, "2") + 20.0 - since(&m, "2")).abs() < 1e-3,
        "since = when PD marked it"
    );
    assert_eq!(
        v(
            &m,
            "tikv_store_state",
            &[("store", "2"), ("state", "Disconnected")]
        ),
        1.0
    );
    assert!(message(&e, "store_down", "2").contains("PD state Disconnected"),);
    // It comes back: resolved without ever firing.
    pd.set_store_state(2, "Up");
    let m = e.wait_metrics("store 2 back", PATIENCE, |m| {
        sample(m, "tikv_invariant_pending", &key("2")) == Some(0.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &key("2")), Some(0.0));
    assert!(
        !e.stderr().contains("firing: store_down store=2"),
        "{}",
        e.stderr()
    );

    // A restart that lasts 100 s: Disconnected for 80 s, past the grace: critical at once.
    pd.set_heartbeat_age(3, Duration::from_secs(100));
    let set = unix_now();
    let m = e.wait_metrics("store 3 down", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key("3")) == Some(1.0)
    });
    assert!((heartbeat(&m, "3") + 20.0 - since(&m, "3")).abs() < 1e-3);
    // Disconnected 80 s ago when it was set: past the grace from the first poll that saw it.
    assert!((since(&m, "3") - (set - 80.0)).abs() < 1.0);

    // Disconnected for 55 s when first seen: pending, then critical within one poll of the
    // grace running out (5 s later).
    pd.set_heartbeat_age(1, Duration::from_secs(75));
    let m = e.wait_metrics("store 1 pending", PATIENCE, |m| {
        sample(m, "tikv_invariant_pending", &key("1")) == Some(1.0)
    });
    let started = since(&m, "1");
    // Never before the grace is over: any poll published before then is still pending ...
    let m = e.wait_metrics("store 1 firing", PATIENCE, |m| {
        let polled = sample(
            m,
            "tikv_health_exporter_last_success_timestamp_seconds",
            &[("source", "pd")],
        )
        .unwrap_or(0.0);
        let firing = sample(m, "tikv_invariant_violation", &key("1")) == Some(1.0);
        assert!(
            !firing || polled >= started + 60.0,
            "fired {:.2}s before the grace ran out",
            started + 60.0 - polled
        );
        firing
    });
    assert_eq!(since(&m, "1"), started);
    // ... and the first poll that started after it fires (the one poll "within" the grace).
    let m = e.wait_polls_after("pd", started + 60.0, 1);
    assert_eq!(sample(&m, "tikv_invariant_violation", &key("1")), Some(1.0));
    assert!(
        e.stderr()
            .contains("firing: store_down store=1 severity=critical"),
        "{}",
        e.stderr()
    );

    // Down: critical at once, whatever the heartbeat says.
    pd.set_store_state(2, "Down");
    e.wait_metrics("store 2 Down", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key("2")) == Some(1.0)
    });

    // Offline (being scaled in): PD never derives Disconnected for it; a heartbeating one is
    // fine, a crashed one (heartbeat 200 s old) is down.
    pd.set_store_state(2, "Offline");
    pd.set_heartbeat_age(2, Duration::from_secs(1));
    let m = e.wait_metrics("offline and heartbeating", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key("2")) == Some(0.0)
    });
    assert!(
        !m.contains(
            "tikv_invariant_active_since_timestamp_seconds{name=\"store_down\",store=\"2\""
        )
    );
    // Offline stores are only checked for store_down.
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_violation",
            &inv("disk_usage", "2", "warning")
        ),
        None
    );
    pd.set_heartbeat_age(2, Duration::from_secs(200));
    e.wait_metrics("offline and crashed", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key("2")) == Some(1.0)
    });
    let msg = message(&e, "store_down", "2");
    assert!(msg.contains("PD state Offline"), "{msg}");
    // Resolutions are logged too.
    pd.set_store_state(3, "Up");
    e.wait_metrics("store 3 resolved", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key("3")) == Some(0.0)
    });
    assert!(
        e.stderr().contains("resolved: store_down store=3"),
        "{}",
        e.stderr()
    );
}

#[test]
fn stale_heartbeat_while_pd_says_up_is_down() {
    let pd = FakePd::with_stores(&cluster(2));
    let e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    let changed = unix_now();
    let stale = support::fake_pd::now_ns() - 120 * 1_000_000_000;
    pd.set_last_heartbeat(1, stale);
    let m = e.wait_metrics("heartbeat too old", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_violation",
            &inv("store_down", "1", "critical"),
        ) == Some(1.0)
    });
    let age = v(
        &m,
        "tikv_invariant_observed_value",
        &[("name", "store_down"), ("store", "1")],
    );
    // 120 s old when set, plus however long the poll that saw it came after that.
    let upper = 120.0 + (unix_now() - changed) + 1.0;
    assert!((119.0..upper).contains(&age), "{age} (at most {upper})");
    assert!(message(&e, "store_down", "1").contains("PD state Up but last heartbeat"));
}

#[test]
fn pd_outage_makes_pd_invariants_unknown_without_resolving() {
    let mut pd = FakePd::with_live_stores(&cluster(3));
    let e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    let down = inv("store_down", "2", "critical");
    pd.set_heartbeat_age(2, Duration::from_secs(120));
    e.wait_metrics("firing", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &down) == Some(1.0)
    });
    pd.stop();
    let m = e.wait_metrics("pd down", PATIENCE, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(0.0)
            && sample(m, "tikv_invariant_unknown", &down) == Some(1.0)
    });
    // No false resolve, and the last good store data stays.
    assert_eq!(sample(&m, "tikv_invariant_violation", &down), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("disk_usage", "1", "warning")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("pd_leader", "", "critical")
        ),
        Some(1.0)
    );
    assert_eq!(v(&m, "tikv_store_leaders", &[("store", "1")]), 17.0);
    assert!(message(&e, "store_down", "2").starts_with("unknown: PD unavailable"));
    // A bad answer is an outage too (garbage from the first answer after the restart on).
    pd.respond_garbage();
    pd.restart();
    pd.wait_next_poll();
    let m = e.metrics();
    assert_eq!(
        sample(&m, "tikv_health_exporter_source_up", &[("source", "pd")]),
        Some(0.0)
    );
    assert_eq!(sample(&m, "tikv_invariant_violation", &down), Some(1.0));
    // Wrong shapes are source failures too: nothing resolves, nothing disappears.
    pd.heal();
    // A member list without members is no "PD without a leader" either: pd_leader unknown.
    pd.respond_with("/pd/api/v1/members", support::http::Response::json("{}"));
    for body in [r#"{}"#, r#"{"count":3}"#, r#"{"count":3,"stores":null}"#] {
        pd.respond_with("/pd/api/v1/stores", support::http::Response::json(body));
        pd.wait_next_poll();
        let m = e.metrics();
        let pd_leader = inv("pd_leader", "", "critical");
        assert_eq!(
            sample(&m, "tikv_invariant_violation", &pd_leader),
            Some(0.0)
        );
        assert_eq!(sample(&m, "tikv_invariant_unknown", &pd_leader), Some(1.0));
        assert_eq!(
            sample(&m, "tikv_health_exporter_source_up", &[("source", "pd")]),
            Some(0.0),
            "{body}"
        );
        assert_eq!(
            sample(&m, "tikv_invariant_violation", &down),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            sample(&m, "tikv_invariant_unknown", &down),
            Some(1.0),
            "{body}"
        );
        assert_eq!(v(&m, "tikv_store_leaders", &[("store", "3")]), 17.0);
        let msg = message(&e, "store_down", "2");
        assert!(msg.contains("unusable reply to /pd/api/v1/stores"), "{msg}");
    }
    let log = e.stderr();
    assert_eq!(
        log.matches("level=warn msg=\"pd down:").count(),
        1,
        "once per transition: {log}"
    );
    // Recovery: fresh data resolves it.
    pd.heal();
    pd.set_store_state(2, "Up");
    pd.set_heartbeat_age(2, Duration::from_secs(0));
    let m = e.wait_metrics("recovered", PATIENCE, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(1.0)
            && sample(m, "tikv_invariant_violation", &down) == Some(0.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_unknown", &down), Some(0.0));
    assert!(
        v(
            &m,
            "tikv_health_exporter_last_success_timestamp_seconds",
            &[("source", "pd")]
        ) > 0.0
    );
    let log = e.stderr();
    assert_eq!(log.matches("msg=\"pd answers again\"").count(), 1, "{log}");
}

#[test]
fn fails_over_across_pd_endpoints() {
    let a = FakePd::with_live_stores(&cluster(2));
    a.fail_with_pd_error(503, fixtures::NO_LEADER);
    let mut b = FakePd::with_live_stores(&cluster(2));
    let e = Exporter::start(&args(&[&a, &b], &[]));
    e.wait_ready();
    e.wait_metrics("pd up via b", PATIENCE, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(1.0)
            && sample(
                m,
                "tikv_store_info",
                &[
                    ("store", "2"),
                    ("address", "tikv-2:20160"),
                    ("status_address", "tikv-2:20180"),
                    ("version", "8.1.0"),
                    ("engine", "tikv"),
                ],
            ) == Some(1.0)
    });
    a.heal();
    b.stop();
    a.clear_requests();
    // Two polls reached `a`: the first of them has been published.
    a.wait_requests_to(STORES, 2);
    let m = e.metrics();
    assert_eq!(
        sample(&m, "tikv_health_exporter_source_up", &[("source", "pd")]),
        Some(1.0)
    );
    assert!(a.requests_to("/pd/api/v1/stores") >= 2);
}

/// A store made Tombstone, or removed from `/stores`, loses every series with the poll that
/// sees it go, those of the sources read once per health interval (`/min-resolved-ts`: PD
/// still lists a removed store there until its next read) included.
#[test]
fn tombstone_and_removed_stores_lose_their_series() {
    let pd = FakePd::with_live_stores(&cluster(3));
    let e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    e.wait_metrics("store 3's min resolved ts", PATIENCE, |m| {
        m.contains("tikv_min_resolved_ts_timestamp_seconds{store=\"3\"}")
    });
    let gone = |m: &str, id: &str| !m.contains(&format!("tikv_store_info{{store=\"{id}\""));
    pd.set_store_state(3, "Tombstone");
    let m = e.wait_metrics("store 3 gone", PATIENCE, |m| gone(m, "3"));
    let left: Vec<&str> = m.lines().filter(|l| l.contains("store=\"3\"")).collect();
    assert!(left.is_empty(), "{left:#?}");
    assert!(m.contains("tikv_min_resolved_ts_timestamp_seconds{store=\"2\"}"));
    pd.remove_store(2);
    let m = e.wait_metrics("store 2 gone", PATIENCE, |m| gone(m, "2"));
    let left: Vec<&str> = m.lines().filter(|l| l.contains("store=\"2\"")).collect();
    assert!(left.is_empty(), "{left:#?}");
    assert!(m.contains("tikv_min_resolved_ts_timestamp_seconds{store=\"1\"}"));
}

#[test]
fn pd_leader_and_member_health() {
    let pd = FakePd::with_live_stores(&cluster(1));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        "pd:\n  health_interval: 200ms\ninvariants:\n  pd_leader:\n    grace: 0s\n",
    );
    let e = Exporter::start(&args(&[&pd], &["--config.file", &cfg]));
    e.wait_ready();
    let key = inv("pd_leader", "", "critical");
    e.wait_metrics("pd ok", PATIENCE, |m| {
        sample(m, "tikv_invariant_unknown", &key) == Some(0.0)
    });
    pd.set_health("basic-0qt9e9", false);
    let m = e.wait_metrics("unhealthy member", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key) == Some(1.0)
    });
    assert_eq!(
        v(
            &m,
            "tikv_invariant_observed_value",
            &[("name", "pd_leader"), ("store", "")]
        ),
        1.0
    );
    pd.set_health("basic-0qt9e9", true);
    pd.set_leader(None);
    e.wait_metrics("no leader", PATIENCE, |_| {
        e.invariant("pd_leader", "").is_some_and(|i| {
            i["message"]
                .as_str()
                .unwrap()
                .starts_with("no PD leader (1 of 1 members asked answer")
                && i["state"] == "firing"
        })
    });
    pd.set_leader(Some("basic-53pe89"));
    e.wait_metrics("leader back", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key) == Some(0.0)
    });
}

/// PD loses its leader (cluster-signals.md §1): every member answers data requests with 503,
/// but each still answers `/members` from its own state when asked with the follower-handle
/// header. The exporter asks every configured member: `pd_leader` fires (it is the failure it
/// is, not "unknown"), store invariants go unknown, and leader changes are counted.
#[test]
fn a_pd_that_lost_its_leader_fires_pd_leader_and_counts_leader_changes() {
    for version in [
        support::fake_pd::PdVersion::V8_1_0,
        support::fake_pd::PdVersion::V8_5_5,
    ] {
        let pd = FakePd::with_live_stores(&cluster(2));
        pd.set_version(version);
        let b = pd.peer("basic-7axwci");
        let c = pd.peer("basic-0qt9e9");
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_file(
            &dir,
            "pd:\n  health_interval: 200ms\ninvariants:\n  pd_leader:\n    grace: 0s\n",
        );
        let e = Exporter::start(&args(&[&pd, &b, &c], &["--config.file", &cfg]));
        e.wait_ready();
        let key = inv("pd_leader", "", "critical");
        let down = inv("store_down", "1", "critical");
        let changes = |m: &str| sample(m, "tikv_pd_leader_changes_total", &[]);
        let m = e.wait_metrics("pd ok", PATIENCE, |m| {
            sample(m, "tikv_invariant_violation", &key) == Some(0.0)
                && sample(m, "tikv_invariant_unknown", &key) == Some(0.0)
        });
        assert_eq!(changes(&m), Some(0.0));

        pd.set_leader(None);
        let m = e.wait_metrics("no leader", PATIENCE, |m| {
            sample(m, "tikv_invariant_violation", &key) == Some(1.0)
                && sample(m, "tikv_invariant_unknown", &down) == Some(1.0)
        });
        assert_eq!(
            sample(&m, "tikv_invariant_unknown", &key),
            Some(0.0),
            "{version:?}"
        );
        assert_eq!(
            sample(&m, "tikv_health_exporter_source_up", &[("source", "pd")]),
            Some(0.0)
        );
        let msg = message(&e, "pd_leader", "");
        assert!(
            msg.starts_with("no PD leader (3 of 3 members asked answer"),
            "{version:?}: {msg}"
        );
        let log = e.stderr();
        assert!(
            log.contains("PD has no leader (3 of 3 members answer)"),
            "{log}"
        );
        assert!(log.contains("firing: pd_leader severity=critical"), "{log}");

        // A new leader (another member): resolved, one change counted.
        pd.set_leader(Some("basic-0qt9e9"));
        let m = e.wait_metrics("new leader", PATIENCE, |m| {
            sample(m, "tikv_invariant_violation", &key) == Some(0.0)
                && sample(m, "tikv_invariant_unknown", &down) == Some(0.0)
        });
        assert_eq!(changes(&m), Some(1.0));
        assert!(e.stderr().contains("PD leader changed to basic-0qt9e9"));

        // PD leader and etcd leader differ: fires.
        pd.set_leaders(Some("basic-0qt9e9"), Some("basic-7axwci"));
        e.wait_metrics("leader mismatch", PATIENCE, |m| {
            sample(m, "tikv_invariant_violation", &key) == Some(1.0)
        });
        let msg = message(&e, "pd_leader", "");
        assert!(
            msg.contains("PD leader basic-0qt9e9 is not the etcd leader basic-7axwci"),
            "{msg}"
        );
        pd.set_leader(Some("basic-0qt9e9"));
        // A member that stops answering is logged once and does not stop the others.
        let gone = c.url();
        drop(c);
        let m = e.wait_metrics("ok with two members", PATIENCE, |m| {
            sample(m, "tikv_invariant_violation", &key) == Some(0.0)
        });
        assert_eq!(changes(&m), Some(1.0));
        let line = format!("PD member {gone} does not answer /members");
        support::wait::until("the silent member logged", PATIENCE, || {
            let log = e.stderr();
            if log.contains(&line) {
                Ok(())
            } else {
                Err(log)
            }
        });
        // Two more rounds of /members: still said only once.
        let asked = pd.requests_to("/pd/api/v1/members");
        pd.wait_requests_to("/pd/api/v1/members", asked + 2);
        let log = e.stderr();
        assert_eq!(log.matches(&line).count(), 1, "{log}");
        // Every member was asked directly, with the header; data requests never carry it.
        let reqs: Vec<_> = pd.requests().into_iter().chain(b.requests()).collect();
        assert!(reqs.iter().any(|r| r.path_only() == "/pd/api/v1/members"
            && r.header(support::fake_pd::FOLLOWER_HEADER) == Some("true")));
        assert!(b.requests_to("/pd/api/v1/members") > 0);
        assert!(reqs.iter().all(|r| r.path_only() != "/pd/api/v1/stores"
            || r.header(support::fake_pd::FOLLOWER_HEADER).is_none()));
        drop(e);
    }
}

#[test]
fn grace_clear_grace_and_hysteresis_over_time() {
    let pd = FakePd::with_live_stores(&cluster(1));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        "invariants:\n  disk_usage:\n    grace: 1s\n    clear_grace: 1s\n    threshold_percent: 70\n    clear_threshold: 0.6\n",
    );
    let e = Exporter::start(&args(&[&pd], &["--config.file", &cfg]));
    e.wait_ready();
    let key = inv("disk_usage", "1", "warning");
    pd.set_capacity(1, "100GiB");
    pd.set_available(1, "20GiB"); // 80 % used
    let t0 = Instant::now();
    let m = e.wait_metrics("pending", PATIENCE, |m| {
        sample(m, "tikv_invariant_pending", &key) == Some(1.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &key), Some(0.0));
    let since = v(&m, "tikv_invariant_active_since_timestamp_seconds", &key);
    let m = e.wait_metrics("firing", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key) == Some(1.0)
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(sample(&m, "tikv_invariant_pending", &key), Some(0.0));
    assert_eq!(
        v(&m, "tikv_invariant_active_since_timestamp_seconds", &key),
        since
    );
    // 65 %: below the threshold but above the clear threshold: stays firing, also for longer
    // than clear_grace (1 s): a poll that started 1.5 s after one that saw 65 % still fires.
    pd.set_available(1, "35GiB");
    let m = e.wait_metrics("65 % observed", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_observed_value",
            &[("name", "disk_usage"), ("store", "1")],
        )
        .is_some_and(|u| (u - 0.65).abs() < 1e-9)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &key), Some(1.0));
    let seen = v(
        &m,
        "tikv_health_exporter_last_success_timestamp_seconds",
        &[("source", "pd")],
    );
    let m = e.wait_polls_after("pd", seen + 1.5, 1);
    assert_eq!(sample(&m, "tikv_invariant_violation", &key), Some(1.0));
    assert!(
        (v(
            &m,
            "tikv_invariant_observed_value",
            &[("name", "disk_usage"), ("store", "1")]
        ) - 0.65)
            .abs()
            < 1e-9
    );
    // 50 %: clear, but only resolves after clear_grace.
    pd.set_available(1, "50GiB");
    let cleared = Instant::now();
    e.wait_metrics("resolved", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key) == Some(0.0)
    });
    assert!(
        cleared.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        cleared.elapsed()
    );
    // A violation shorter than the grace period never fires. Exactly one poll sees it (one
    // answer of 75 %); then PD fails, and while it is unknown the invariant keeps its phase, so
    // the pending state stays for the test to see however slow the machine is; the next good
    // answer (50 %) ends it.
    pd.answer_next_stores(1, |stores| {
        store_json_mut(stores, 1)["status"]["available"] = json!("25GiB");
    });
    pd.fail_with_pd_error(503, fixtures::NO_LEADER);
    let m = e.wait_metrics("pending again", PATIENCE, |m| {
        sample(m, "tikv_invariant_pending", &key) == Some(1.0)
            && sample(m, "tikv_invariant_unknown", &key) == Some(1.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &key), Some(0.0));
    pd.heal();
    let m = e.wait_metrics("back to ok", PATIENCE, |m| {
        sample(m, "tikv_invariant_unknown", &key) == Some(0.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_pending", &key), Some(0.0));
    assert_eq!(sample(&m, "tikv_invariant_violation", &key), Some(0.0));
    assert_eq!(
        sample(&m, "tikv_invariant_active_since_timestamp_seconds", &key),
        None
    );
}

#[test]
fn state_file_keeps_grace_periods_across_restarts() {
    let pd = FakePd::with_live_stores(&cluster(1));
    pd.set_capacity(1, "100GiB");
    pd.set_available(1, "25GiB");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let cfg = config_file(&dir, "invariants:\n  disk_usage:\n    grace: 4s\n");
    let key = inv("disk_usage", "1", "warning");
    let base = args(
        &[&pd],
        &[
            "--config.file",
            &cfg,
            "--state-file",
            state.to_str().unwrap(),
        ],
    );

    // One answer shows the violation, then PD fails: while unknown the invariant keeps its
    // phase, so it is still pending when the exporter stops, however slow the machine is.
    pd.answer_next_stores(1, |_| {});
    pd.fail_with_pd_error(503, fixtures::NO_LEADER);
    let mut e = Exporter::start(&base);
    let m = e.wait_metrics("pending", PATIENCE, |m| {
        sample(m, "tikv_invariant_pending", &key) == Some(1.0)
            && sample(m, "tikv_invariant_unknown", &key) == Some(1.0)
    });
    let since = v(&m, "tikv_invariant_active_since_timestamp_seconds", &key);
    assert_eq!(e.terminate(), Some(0), "graceful exit: {}", e.stderr());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["active"][0]["name"], "disk_usage");
    assert_eq!(saved["active"][0]["phase"], "pending");
    // Through JSON a time may come back a few ULPs off unless parsed exactly; compare to the
    // microsecond.
    let same_time = |t: Option<f64>| t.is_some_and(|t| (t - since).abs() < 1e-6);
    let saved_since = saved["active"][0]["active_since"].as_f64();
    assert!(same_time(saved_since), "{saved_since:?} vs {since}");

    // Restart: the violation keeps its start, so it fires 4 s after it began, not 4 s after
    // the restart. Seen before those 4 s are over, it must still be pending.
    pd.heal();
    let e = Exporter::start(&base);
    let m = e.wait_metrics("pending with the old start", PATIENCE, |m| {
        same_time(sample(
            m,
            "tikv_invariant_active_since_timestamp_seconds",
            &key,
        ))
    });
    let seen = unix_now();
    if seen < since + 4.0 {
        assert_eq!(
            sample(&m, "tikv_invariant_violation", &key),
            Some(0.0),
            "firing {} s into the 4 s grace",
            seen - since
        );
    }
    let m = e.wait_metrics("firing", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key) == Some(1.0)
    });
    let seen = unix_now();
    assert!(
        seen >= since + 4.0,
        "fired {} s after it began",
        seen - since
    );
    // Not re-armed: it fired with the violation's original start, 4 s after that start.
    let fired_since = sample(&m, "tikv_invariant_active_since_timestamp_seconds", &key);
    assert!(same_time(fired_since), "{fired_since:?} vs {since}");
    drop(e);

    // Without the state file the grace period starts over.
    let plain = args(&[&pd], &["--config.file", &cfg]);
    let e = Exporter::start(&plain);
    let m = e.wait_metrics("pending again", PATIENCE, |m| {
        sample(m, "tikv_invariant_pending", &key) == Some(1.0)
    });
    assert!(v(&m, "tikv_invariant_active_since_timestamp_seconds", &key) > since + 1.0);
}

#[test]
fn http_endpoints_and_log_sources() {
    let pd = FakePd::with_live_stores(&cluster(2));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tikv.log");
    std::fs::write(&log, "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 5\"] [region_id=1]\n").unwrap();
    let e = Exporter::start(&args(
        &[&pd],
        &["--logs.file", &format!("{}=2", log.display())],
    ));
    e.wait_ready();
    let (code, ctype, body) = e.get("/");
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/html"));
    assert!(
        body.contains("<a href=\"/metrics\">") && body.contains("<td>store_down</td>"),
        "{body}"
    );
    assert_eq!(e.get("/-/healthy").0, 200);
    assert_eq!(e.get("/nope").0, 404);
    let inv = e.invariant("disk_usage", "1").unwrap();
    for k in [
        "state",
        "since",
        "value",
        "threshold",
        "message",
        "severity",
        "unknown",
    ] {
        assert!(inv.get(k).is_some(), "{k} missing in {inv}");
    }
    assert_eq!(inv["threshold"], 0.7);

    // The existing line is skipped (start at end); appended lines are counted. The source is
    // up once it has opened the file (at its end then): only append after that.
    e.wait_source_up("file:tikv.log", 1.0);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let fixture = include_str!("data/tikv-pd-real-lines.log");
    f.write_all(fixture.as_bytes()).unwrap();
    f.flush().unwrap();
    let labels = |event| {
        [
            ("source", "file:tikv.log"),
            ("store", "2"),
            ("event", event),
        ]
    };
    let m = e.wait_metrics("log events", PATIENCE, |m| {
        sample(
            m,
            "tikv_leadership_changes_total",
            &labels("pd_leader_changed"),
        ) == Some(7.0)
    });
    support::exporter::assert_fixture_counted(&m, "file:tikv.log", "2", 0.0);
    let info = sample(
        &m,
        "tikv_log_lines_total",
        &[
            ("source", "file:tikv.log"),
            ("store", "2"),
            ("level", "INFO"),
        ],
    )
    .unwrap();
    assert!(info > 80.0);
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "file:tikv.log")]
        ),
        Some(1.0)
    );
    let events: serde_json::Value = serde_json::from_str(&e.get("/api/v1/leadership").2).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 17);
    let t = events
        .iter()
        .find(|e| e["event"] == "transfer_leader")
        .unwrap();
    assert_eq!(t["region_id"], 2641161);
    assert_eq!(t["from_store"], 1);
    assert_eq!(t["to_store"], 5);
    assert_eq!(t["source"], "file:tikv.log");
    let last2: serde_json::Value =
        serde_json::from_str(&e.get("/api/v1/leadership?limit=2").2).unwrap();
    assert_eq!(last2.as_array().unwrap().len(), 2);
    assert_eq!(last2[1], events[16], "the newest ones");
    let all: serde_json::Value =
        serde_json::from_str(&e.get("/api/v1/leadership?limit=1000").2).unwrap();
    assert_eq!(
        all.as_array().unwrap().len(),
        17,
        "limit = logs.history_size"
    );
    // Anything but an integer from 0 to logs.history_size (1000) is a 400 with a JSON error,
    // never the whole history.
    for bad in [
        "-1",
        "abc",
        "1001",
        "99999999999999999999999",
        "",
        "2&limit=3",
    ] {
        let (status, ctype, body) = e.get(&format!("/api/v1/leadership?limit={bad}"));
        assert_eq!(
            (status, ctype.as_str()),
            (400, "application/json"),
            "{bad}: {body}"
        );
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        let msg = err["error"].as_str().unwrap();
        assert!(
            msg.contains("from 0 to 1000 (logs.history_size)") || msg.contains("more than once"),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn sigterm_exits_cleanly() {
    let pd = FakePd::with_live_stores(&cluster(1));
    let mut e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    assert_eq!(e.terminate(), Some(0));
    assert!(e.stderr().contains("shutting down"));
}

#[test]
fn bad_flags_and_config_fail_with_a_named_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(support::exporter::binary())
            .args(args)
            .output()
            .unwrap()
    };
    let cfg = config_file(
        &dir,
        "pd:\n  endpoints: [\"http://a:2379\"]\n  timeout: 5 seconds\n",
    );
    let out = run(&["check-config", &cfg]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("5 seconds"), "{err}");

    let cfg = config_file(&dir, "poll_interval: 10s\nweb:\n  listen_adress: \":1\"\n");
    let out = run(&["check-config", &cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen_adress") && err.contains("line 3"),
        "{err}"
    );

    let cfg = config_file(
        &dir,
        "invariants:\n  disk_usage:\n    grace: 1m\n  disk_full:\n    grace: 1m\n",
    );
    let out = run(&["check-config", &cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("`invariants.disk_full`"),
        "{err}"
    );

    let cfg = config_file(
        &dir,
        "invariants:\n  cpu_usage:\n    threshold_percent: 170\n",
    );
    let out = run(&["check-config", &cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`invariants.cpu_usage.threshold_percent`") && err.contains("line 3"),
        "{err}"
    );

    let out = run(&["--web.listen-address", "nonsense"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.listen_address"));

    let cfg = config_file(
        &dir,
        "pd:\n  endpoints: [\"http://pd:2379\"]\ninvariants:\n  disk_usage:\n    threshold_percent: 80\n    grace: 10m\n",
    );
    let out = run(&["check-config", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eff = String::from_utf8_lossy(&out.stdout);
    for want in [
        "http://pd:2379",
        "threshold_percent: 80",
        "grace: 10m",
        "poll_interval: 10s",
        "listen_address: \":19180\"",
        "#   disk_usage: severity=warning violated when value > 0.8 grace=600s",
    ] {
        assert!(eff.contains(want), "{want} missing in:\n{eff}");
    }
}

#[test]
fn tiflash_stores_can_be_excluded() {
    let mut specs = cluster(1);
    specs.push(StoreSpec::tiflash(20));
    let pd = FakePd::with_live_stores(&specs);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "pd:\n  tiflash: exclude\n");
    let e = Exporter::start(&args(&[&pd], &["--config.file", &cfg]));
    e.wait_ready();
    let m = e.wait_metrics("store 1", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_violation",
            &inv("store_down", "1", "critical"),
        )
        .is_some()
    });
    assert!(!m.contains("store=\"20\""), "{m}");
    pd.set_store_state(20, "Disconnected");
    pd.wait_next_poll();
    assert!(!e.metrics().contains("store=\"20\""));
}

/// With a state file, restart the exporter while PD answers 503 (no leader): the restored
/// violations are served, unknown and with their `since`, from the first scrape on.
#[test]
fn a_restart_while_pd_is_down_serves_the_restored_violations_at_once() {
    let pd = FakePd::with_live_stores(&cluster(2));
    pd.set_heartbeat_age(2, Duration::from_secs(120));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let base = args(&[&pd], &["--state-file", state.to_str().unwrap()]);
    let key = inv("store_down", "2", "critical");
    let mut e = Exporter::start(&base);
    let m = e.wait_metrics("store 2 firing", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &key) == Some(1.0)
    });
    let since = v(&m, "tikv_invariant_active_since_timestamp_seconds", &key);
    assert_eq!(e.terminate(), Some(0), "{}", e.stderr());

    // PD loses its leader; every request is slow to fail (v8.1.1+ waits up to 3 s for one,
    // past the 1 s timeout here). Three members, each asked in turn: the first poll takes
    // several seconds, a window for the first scrape that a loaded machine does not miss.
    pd.set_version(support::fake_pd::PdVersion::V8_1_1);
    pd.set_leader(None);
    pd.delay(Duration::from_secs(3));
    let b = pd.peer("basic-7axwci");
    let c = pd.peer("basic-0qt9e9");
    let e = Exporter::start(&args(
        &[&pd, &b, &c],
        &["--state-file", state.to_str().unwrap()],
    ));
    // The very first scrape, before the first poll has finished.
    let (status, _, first) = e.get("/metrics");
    assert_eq!(status, 200);
    let (ready, _, _) = e.get("/-/ready");
    assert_eq!(ready, 503, "not ready before the first poll");
    assert_eq!(
        sample(&first, "tikv_invariant_violation", &key),
        Some(1.0),
        "{first}"
    );
    assert_eq!(sample(&first, "tikv_invariant_unknown", &key), Some(1.0));
    assert_eq!(
        sample(
            &first,
            "tikv_invariant_active_since_timestamp_seconds",
            &key
        ),
        Some(since)
    );
    // And after the first poll failed with 503: still served, with the cause.
    e.wait_ready();
    let m = e.wait_metrics("pd down", PATIENCE, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(0.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &key), Some(1.0));
    assert_eq!(sample(&m, "tikv_invariant_unknown", &key), Some(1.0));
    let why = message(&e, "store_down", "2");
    // Every member is slower than the timeout here, so the cause is the timeout.
    assert!(
        why.starts_with("unknown: PD unavailable") && why.contains("timed out after 1s"),
        "{why}"
    );
    assert!(
        e.stderr().contains("restored 1 active violations"),
        "{}",
        e.stderr()
    );
}

/// PD listing entries that name no single store (an id past 2^64, none, the same id twice):
/// each is rejected and counted, logged once, and the rest of the reply is used; the
/// duplicated store keeps its last good data, unknown.
#[test]
fn store_entries_that_do_not_fit_are_rejected_alone() {
    let pd = FakePd::with_live_stores(&cluster(3));
    pd.set_heartbeat_age(3, Duration::from_secs(120));
    let e = Exporter::start(&args(&[&pd], &[]));
    e.wait_ready();
    let down3 = inv("store_down", "3", "critical");
    e.wait_metrics("store 3 firing", PATIENCE, |m| {
        sample(m, "tikv_invariant_violation", &down3) == Some(1.0)
    });
    // Store 1 fine; store 2's id overflows u64; store 3 listed twice; one entry without id.
    let mut specs = cluster(3);
    specs.push(specs[2].clone());
    specs.push(StoreSpec::tikv(9));
    let body = support::fake_pd::stores_body(&specs)
        .replacen(r#""id":2,"#, r#""id":18446744073709551616,"#, 1)
        .replacen(r#""id":9,"#, "", 1);
    pd.respond_with("/pd/api/v1/stores", support::http::Response::json(body));
    let rejected = |m: &str, r| {
        sample(
            m,
            "tikv_health_exporter_pd_rejected_stores",
            &[("reason", r)],
        )
    };
    let m = e.wait_metrics("entries rejected", PATIENCE, |m| {
        rejected(m, "invalid_id") == Some(2.0)
    });
    assert_eq!(rejected(&m, "duplicate_id"), Some(2.0));
    assert_eq!(rejected(&m, "malformed"), Some(0.0));
    assert_eq!(
        sample(&m, "tikv_health_exporter_source_up", &[("source", "pd")]),
        Some(1.0)
    );
    // Store 1 evaluated normally; store 3 still firing but unknown; no store "0" appears.
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("store_down", "1", "critical")
        ),
        Some(0.0)
    );
    assert_eq!(sample(&m, "tikv_invariant_violation", &down3), Some(1.0));
    assert_eq!(sample(&m, "tikv_invariant_unknown", &down3), Some(1.0));
    assert!(!m.contains("store=\"0\""), "{m}");
    // Store 2 (whose entry has no usable id now) is kept, in doubt, not dropped.
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("store_down", "2", "critical")
        ),
        Some(1.0)
    );
    // Said once, and not again in the next polls.
    support::wait::until("the rejected entries logged", PATIENCE, || {
        let log = e.stderr();
        if log.contains("PD /stores: ignored 4 entries") {
            Ok(())
        } else {
            Err(log)
        }
    });
    pd.wait_next_poll();
    let log = e.stderr();
    assert_eq!(
        log.matches("PD /stores: ignored 4 entries").count(),
        1,
        "{log}"
    );
    assert!(log.contains("store id 1.8446744073709552e+19"), "{log}");
    pd.heal();
    let m = e.wait_metrics("all valid again", PATIENCE, |m| {
        rejected(m, "invalid_id") == Some(0.0)
            && sample(m, "tikv_invariant_unknown", &down3) == Some(0.0)
    });
    assert_eq!(sample(&m, "tikv_invariant_violation", &down3), Some(1.0));
}

/// Fields older or other stores omit, and PD's own space ratios: a store without
/// `slow_score` has no `store_slow` series (not unknown); a store without `state_name` and
/// without a heartbeat is unknown (never healthy); the disk thresholds are PD's
/// `high-space-ratio` (warning) and `low-space-ratio` (critical) unless configured.
#[test]
fn absent_fields_and_pds_own_space_ratios() {
    let mut specs = cluster(3);
    specs[0].slow_score = None;
    specs[1].capacity = Some("100GiB".into());
    specs[1].available = Some("45GiB".into());
    let pd = FakePd::with_live_stores(&specs);
    pd.set_space_ratios(0.5, 0.6);
    // Store 3 as an old PD without state_name would list it, and no heartbeat.
    pd.edit_store(3, |s| {
        let st = s["store"].as_object_mut().unwrap();
        st.remove("state_name");
        st.remove("last_heartbeat");
        s["status"]
            .as_object_mut()
            .unwrap()
            .remove("last_heartbeat_ts");
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "invariants:\n  disk_usage:\n    grace: 0s\n");
    let e = Exporter::start(&args(&[&pd], &["--config.file", &cfg]));
    e.wait_ready();
    let m = e.wait_metrics("disk_usage firing on store 2", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_violation",
            &inv("disk_usage", "2", "warning"),
        ) == Some(1.0)
    });
    // 55 % used: past PD's high-space-ratio 0.5, not its low-space-ratio 0.6.
    let threshold = |n| {
        v(
            &m,
            "tikv_invariant_threshold",
            &[("name", n), ("store", "2")],
        )
    };
    assert_eq!(
        (threshold("disk_usage"), threshold("disk_low_space")),
        (0.5, 0.6)
    );
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_pending",
            &inv("disk_low_space", "2", "critical")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_violation",
            &inv("disk_low_space", "2", "critical")
        ),
        Some(0.0)
    );
    // No slow score: no series at all for store 1, and no unknown.
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("store_slow", "1", "warning")
        ),
        None
    );
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_violation",
            &inv("store_slow", "2", "warning")
        ),
        Some(0.0)
    );
    // No state_name, no heartbeat: unknown.
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("store_down", "3", "critical")
        ),
        Some(1.0)
    );
    assert!(message(&e, "store_down", "3").contains("neither a state_name nor a heartbeat"));
    // A configured threshold overrides PD's.
    drop(e);
    let cfg = config_file(
        &dir,
        "invariants:\n  disk_usage:\n    threshold_percent: 90\n",
    );
    let e = Exporter::start(&args(&[&pd], &["--config.file", &cfg]));
    e.wait_ready();
    let m = e.wait_metrics("configured threshold", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_threshold",
            &[("name", "disk_usage"), ("store", "2")],
        ) == Some(0.9)
    });
    assert_eq!(
        v(
            &m,
            "tikv_invariant_threshold",
            &[("name", "disk_low_space"), ("store", "2")]
        ),
        0.6
    );
}

/// Arguments with a PD timeout of `timeout` (instead of [`args`]' 1 s).
fn args_with_timeout(pd: &FakePd, timeout: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--pd.endpoints",
        &pd.url(),
        "--poll-interval",
        POLL,
        "--pd.timeout",
        timeout,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// How long a clean exit may take on a loaded machine; the defects it guards against take
/// 30 s (a poll waiting on a slow PD) or forever (a FIFO nobody writes to).
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// SIGTERM while a poll waits on a PD that answers after 30 s: the poll is abandoned, the state
/// file is written, and the process exits at once instead of finishing the round.
#[test]
fn sigterm_during_a_slow_poll_exits_at_once_and_writes_the_state_file() {
    let pd = FakePd::with_live_stores(&cluster(1));
    pd.delay(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut e = Exporter::start(&args_with_timeout(
        &pd,
        "45s",
        &["--state-file", state.to_str().unwrap()],
    ));
    support::wait::until_true(
        "the first /stores request to reach PD",
        PATIENCE,
        || pd.requests().iter().any(|r| r.path_only() == STORES),
        || format!("{:?}", pd.requests()),
    );
    let t = Instant::now();
    assert_eq!(e.terminate(), Some(0), "{}", e.stderr());
    let took = t.elapsed();
    assert!(
        took < EXIT_BOUND,
        "exit took {took:?} (the poll was finished?)\n{}",
        e.stderr()
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        (
            saved["version"].as_u64(),
            saved["active"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );
}

/// A FIFO as log file is refused (never opened: opening blocks until a writer appears), its
/// source is down with a clear reason, and SIGTERM exits at once.
#[test]
fn a_fifo_as_log_file_is_refused_and_does_not_hang_sigterm() {
    let pd = FakePd::with_live_stores(&cluster(1));
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tikv.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut e = Exporter::start(&args(&[&pd], &["--log.file", fifo.to_str().unwrap()]));
    e.wait_source_up("file:tikv.log", 0.0);
    support::wait::until_true(
        "the refusal to be logged",
        PATIENCE,
        || e.stderr().contains("not a regular file"),
        || e.stderr(),
    );
    let t = Instant::now();
    assert_eq!(e.terminate(), Some(0), "{}", e.stderr());
    assert!(t.elapsed() < EXIT_BOUND, "exit took {:?}", t.elapsed());
    let refusals = e.stderr().matches("not a regular file").count();
    assert_eq!(refusals, 1, "logged once: {}", e.stderr());
}

/// Empty, truncated and non-JSON state files do not stop the exporter: it starts, logs an
/// error, keeps the bad file aside and counts it.
#[test]
fn a_corrupt_state_file_is_set_aside_and_the_exporter_starts() {
    let pd = FakePd::with_live_stores(&cluster(1));
    for bad in [
        "",
        "{\"version\":1,\"saved_at\":1700000000.5,\"active\":[{\"na",
        "\u{0}\u{1}",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        std::fs::write(&state, bad).unwrap();
        let e = Exporter::start(&args(&[&pd], &["--state-file", state.to_str().unwrap()]));
        e.wait_ready();
        let m = e.metrics();
        assert_eq!(
            sample(&m, "tikv_health_exporter_state_file_corrupt_total", &[]),
            Some(1.0),
            "{m}"
        );
        assert_eq!(
            sample(
                &m,
                "tikv_health_exporter_state_file_write_failures_total",
                &[]
            ),
            Some(0.0)
        );
        let log = e.stderr();
        assert!(
            log.contains("level=error") && log.contains("is corrupt") && log.contains("moved to"),
            "{log}"
        );
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|d| d.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("state.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&aside[0])).unwrap(),
            bad
        );
    }
}

/// A tmpfs of one page mounted for the test (root only), unmounted on drop.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    /// `None` (with the reason printed) where mounting is impossible.
    fn mount() -> Option<TinyFs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(TinyFs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the file system with `fill`; returns the bytes written.
    fn fill(&self) -> usize {
        let mut f = std::fs::File::create(self.path().join("fill")).unwrap();
        let mut n = 0;
        while f.write_all(&[b'x'; 512]).is_ok() {
            n += 512;
        }
        n
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// ENOSPC for real: a state file on a full tmpfs fails to be written; no 0-byte `state.tmp`
/// is left behind, the failure is counted and logged once, and the next poll after space
/// is freed writes the file.
#[test]
fn a_full_disk_leaves_no_state_tmp_and_counts_write_failures() {
    let Some(fs) = TinyFs::mount() else { return };
    assert!(fs.fill() > 0);
    let pd = FakePd::with_live_stores(&cluster(1));
    pd.set_store_state(1, "Disconnected");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "invariants:\n  store_down:\n    grace: 0s\n");
    let state = fs.path().join("state.json");
    let e = Exporter::start(&args(
        &[&pd],
        &[
            "--config.file",
            &cfg,
            "--state-file",
            state.to_str().unwrap(),
        ],
    ));
    let failures = |m: &str| {
        sample(
            m,
            "tikv_health_exporter_state_file_write_failures_total",
            &[],
        )
        .unwrap_or(0.0)
    };
    e.wait_metrics("two failed writes", PATIENCE, |m| failures(m) >= 2.0);
    let names: Vec<String> = std::fs::read_dir(fs.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["fill"], "no state.tmp left behind");
    let log = e.stderr();
    assert_eq!(
        log.matches("cannot be written").count(),
        1,
        "logged once: {log}"
    );
    assert!(log.contains("No space left on device"), "{log}");

    std::fs::remove_file(fs.path().join("fill")).unwrap();
    support::wait::until_true(
        "the state file to be written",
        PATIENCE,
        || std::fs::read_to_string(&state).is_ok_and(|t| t.contains("store_down")),
        || e.stderr(),
    );
    support::wait::until_true(
        "the recovery to be logged",
        PATIENCE,
        || e.stderr().contains("is written again"),
        || e.stderr(),
    );
    assert!(!fs.path().join("state.tmp").exists());
}

/// Runs the binary with `args`, killing it after [`PATIENCE`] (a run that does not reject its
/// configuration would serve forever); returns (exit code, stdout, stderr).
fn run_bounded(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = std::process::Command::new(support::exporter::binary())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{args:?} still runs after {PATIENCE:?}: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p| std::fs::read_to_string(p).unwrap_or_default();
    (status.code(), read(&out), read(&err))
}

/// One validation: every configuration the run rejects fails `check-config` too, with the
/// same key and line.
#[test]
fn check_config_rejects_what_the_run_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let cases = [
        (
            "pd:\n  endpoints: [\"ftp://pd:2379\"]\n".to_owned(),
            "line 2: `pd.endpoints[0]`",
        ),
        (
            "pd:\n  max_response_bytes: 0\n".to_owned(),
            "line 2: `pd.max_response_bytes`",
        ),
        (
            "prometheus:\n  url: http://127.0.0.1:9\n  timeout: 0s\n".to_owned(),
            "line 3: `prometheus.timeout`",
        ),
        (
            format!("pd:\n  tls:\n    ca_file: {}\n", missing.display()),
            "line 3: `pd.tls.ca_file`",
        ),
        (
            "logs:\n  poll_interval: 0s\n".to_owned(),
            "line 2: `logs.poll_interval`: must be at least 50ms",
        ),
        (
            "poll_interval: 0s\n".to_owned(),
            "line 1: `poll_interval`: must be at least 100ms",
        ),
    ];
    for (yaml, want) in cases {
        let cfg = config_file(&dir, &yaml);
        let (code, out, err) = run_bounded(&["check-config", &cfg]);
        assert_eq!(code, Some(1), "check-config accepted {yaml:?}: {out}");
        assert!(err.contains(want), "check-config on {yaml:?}: {err}");
        let (code, _, err) =
            run_bounded(&["--config.file", &cfg, "--web.listen-address", "127.0.0.1:0"]);
        assert_eq!(code, Some(1), "the run accepted {yaml:?}: {err}");
        assert!(err.contains(want), "run on {yaml:?}: {err}");
    }
    // The flags are checked by the same rules.
    let (code, _, err) = run_bounded(&[
        "--poll-interval",
        "0s",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("`poll_interval`: must be at least 100ms"),
        "{err}"
    );
    let (code, _, err) = run_bounded(&[
        "logs",
        "leadership",
        "--follow",
        "--poll-interval",
        "0s",
        "/dev/null",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("below the floor of 50ms"), "{err}");
}

/// `/dev/zero`, `/dev/urandom`, a FIFO or a directory as the config file are refused at once
/// (nothing is read), and a file larger than 1 MiB is refused without being parsed.
#[test]
fn config_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let big = dir.path().join("big.yml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(1 << 20))).unwrap();
    let dir_path = dir.path().display().to_string();
    for (path, want) in [
        ("/dev/zero", "is not a regular file"),
        ("/dev/urandom", "is not a regular file"),
        (fifo.to_str().unwrap(), "is not a regular file"),
        (dir_path.as_str(), "is not a regular file"),
        (big.to_str().unwrap(), "is larger than 1048576 bytes"),
    ] {
        for args in [
            vec!["check-config", path],
            vec!["--config.file", path, "--web.listen-address", "127.0.0.1:0"],
        ] {
            let (code, _, err) = run_bounded(&args);
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert!(err.contains(want) && err.contains(path), "{args:?}: {err}");
        }
    }
}

/// `check-config | head -1` (and the other subcommands whose output is cut short): a closed
/// pipe is a quiet exit 0, never a panic. The reading end is closed before the process starts
/// writing, so every write meets `EPIPE`.
#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "poll_interval: 10s\n");
    let log = dir.path().join("tikv.log");
    let line = "[2024/01/01 00:00:00.000 +00:00] [INFO] [x.rs:1] [\"hello\"]\n";
    std::fs::write(&log, line.repeat(20000)).unwrap();
    let log = log.to_str().unwrap();
    for args in [
        vec!["check-config", cfg.as_str()],
        vec!["logs", "parse", log],
        vec!["logs", "leadership", "--summary", log],
        vec!["--help"],
        vec!["--version"],
        vec!["demo", "--web.listen-address", "127.0.0.1:0"],
    ] {
        let mut child = std::process::Command::new(support::exporter::binary())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
