//! End to end: the exporter binary's PD-side coverage invariants against the fake PD (real
//! shapes, several versions): region health from the PD leader's own `/metrics`, the leader's
//! etcd, the GC safe point, the min resolved ts, store restarts, the leader balance with PD's
//! leader-evicting schedulers and stalled scale-ins — their series, gauges, transitions, a
//! source of the wrong shape (unknown, never resolved), a PD too old to serve an endpoint (no
//! series, not unknown), and the PD requests they cost (O(1) per health interval).

mod support;

use std::time::Duration;

use support::exporter::{Exporter, inv, sample};
use support::fake_pd::hotspot::{Kind, peer};
use support::fake_pd::schedulers::Removal;
use support::fake_pd::{FakePd, PdVersion, ServiceSafePoint, StoreSpec, cluster};
use support::http::Response;
use support::wait::{PATIENCE, unix_now};

const CLUSTER_INVARIANTS: [(&str, &str); 7] = [
    ("region_down_peers", "warning"),
    ("region_miss_peers", "warning"),
    ("region_pending_peers", "warning"),
    ("region_offline_peers", "warning"),
    ("pd_etcd", "critical"),
    ("gc_safepoint_lag", "warning"),
    ("resolved_ts_lag", "warning"),
];

/// The exporter on `pd` with a 1 s health interval (the cluster-wide PD sources' period),
/// polling every 200 ms, plus `yaml` in the config file.
fn start(pd: &FakePd, dir: &tempfile::TempDir, yaml: &str) -> Exporter {
    Exporter::start_with_config(
        dir,
        &format!(
            "pd:\n  endpoints: [{}]\n  timeout: 2s\n  health_interval: 1s\npoll_interval: 200ms\n{yaml}",
            pd.url()
        ),
    )
}

fn message(e: &Exporter, name: &str, store: &str) -> String {
    e.invariant(name, store)
        .unwrap_or_else(|| panic!("no {name}/{store}"))["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn firing(m: &str, name: &str, store: &str, severity: &str) -> bool {
    sample(m, "tikv_invariant_violation", &inv(name, store, severity)) == Some(1.0)
}

#[test]
fn a_healthy_cluster_has_every_series_known_and_ok_with_the_gauges() {
    let mut specs = cluster(3);
    specs.push(StoreSpec::tiflash(20));
    let pd = FakePd::with_live_stores(&specs);
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "");
    // pd_etcd is known from the second reading of the leader's page on.
    let m = e.wait_metrics("every coverage invariant known", PATIENCE, |m| {
        CLUSTER_INVARIANTS
            .iter()
            .all(|(n, sev)| sample(m, "tikv_invariant_unknown", &inv(n, "", sev)) == Some(0.0))
    });
    for (name, sev) in CLUSTER_INVARIANTS {
        for metric in ["tikv_invariant_violation", "tikv_invariant_pending"] {
            assert_eq!(
                sample(&m, metric, &inv(name, "", sev)),
                Some(0.0),
                "{metric} {name}"
            );
        }
    }
    for s in [
        "pd:metrics",
        "pd:gc_safepoint",
        "pd:min_resolved_ts",
        "pd:schedulers",
        "pd",
    ] {
        assert_eq!(
            sample(&m, "tikv_health_exporter_source_up", &[("source", s)]),
            Some(1.0),
            "{s}"
        );
    }
    // Region counts of the leader: every known type, as PD counts them.
    for t in [
        "miss-peer-region-count",
        "down-peer-region-count",
        "pending-peer-region-count",
        "offline-peer-region-count",
        "witness-leader-region-count",
    ] {
        assert_eq!(
            sample(&m, "tikv_region_status", &[("type", t)]),
            Some(0.0),
            "{t}"
        );
    }
    let now = unix_now();
    let gc = sample(&m, "tikv_gc_safepoint_timestamp_seconds", &[]).unwrap();
    assert!(
        (now - gc - 600.0).abs() < 60.0,
        "GC safe point 10 min old: {}",
        now - gc
    );
    let ts = |store: &str| {
        sample(
            &m,
            "tikv_min_resolved_ts_timestamp_seconds",
            &[("store", store)],
        )
    };
    for store in ["", "1", "2", "3"] {
        let lag = now - ts(store).unwrap_or_else(|| panic!("no resolved ts of {store:?}"));
        assert!((0.0..60.0).contains(&lag), "{store}: {lag}");
    }
    // TiFlash has no resolved ts (PD reports u64::MAX): no series at all, not unknown.
    assert_eq!(ts("20"), None);
    assert!(e.invariant("resolved_ts_lag", "20").is_none());
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_observed_value",
            &[("name", "resolved_ts_lag"), ("store", "2")]
        )
        .map(|v| v < 60.0),
        Some(true)
    );
    // Stores started an hour ago: not restarted; the start time is exported.
    for store in ["1", "2", "3", "20"] {
        assert_eq!(
            sample(
                &m,
                "tikv_invariant_violation",
                &inv("store_restarted", store, "info")
            ),
            Some(0.0)
        );
        let start = sample(
            &m,
            "tikv_store_start_timestamp_seconds",
            &[("store", store)],
        )
        .unwrap();
        assert!((now - start - 3600.0).abs() < 120.0, "{store}: {start}");
    }
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_threshold",
            &[("name", "gc_safepoint_lag"), ("store", "")]
        ),
        Some(86400.0)
    );
    // 10 fsyncs of 2 ms per read of the fake's page.
    let etcd = message(&e, "pd_etcd", "");
    assert!(
        etcd.starts_with("PD leader basic-53pe89: WAL fsync p99 0.002s over ")
            && etcd.ends_with("; database 203.5 MiB, 2.5% of quota-backend-bytes 8192.0 MiB"),
        "{etcd}"
    );
    assert!(!pd.regions_requested(), "{:?}", pd.paths());
    assert!(
        !pd.paths()
            .iter()
            .any(|p| p.starts_with("/pd/api/v1/regions/check"))
    );
}

#[test]
fn each_coverage_invariant_fires_on_its_fault_and_resolves() {
    let pd = FakePd::with_live_stores(&cluster(3));
    let dir = tempfile::tempdir().unwrap();
    // Graces of 0 s, except resolved_ts_lag: its 5 m grace counts from when the lag crossed
    // the threshold, which PD's TSO tells.
    let e = start(
        &pd,
        &dir,
        "invariants:\n  region_down_peers: {grace: 0s}\n  region_miss_peers: {grace: 0s}\n  region_offline_peers: {grace: 0s}\n  region_pending_peers: {grace: 0s}\n  pd_etcd: {grace: 0s}\n",
    );
    e.wait_metrics("pd_etcd known", PATIENCE, |m| {
        sample(m, "tikv_invariant_unknown", &inv("pd_etcd", "", "critical")) == Some(0.0)
    });
    pd.set_region_status("down-peer-region-count", Some(3.0));
    pd.set_region_status("miss-peer-region-count", Some(7.0));
    pd.set_region_status("offline-peer-region-count", Some(1.0));
    pd.set_region_status("pending-peer-region-count", Some(100.0));
    pd.set_wal_fsync_per_read(2.5, 100);
    pd.set_gc_safepoint(
        Some(Duration::from_secs(90_000)),
        vec![
            ServiceSafePoint {
                service_id: "gc_worker".into(),
                expires_in_secs: None,
                age: Duration::from_secs(600),
            },
            ServiceSafePoint {
                service_id: "ticdc-default-1139748333935545375".into(),
                expires_in_secs: Some(3600),
                age: Duration::from_secs(90_000),
            },
        ],
    );
    pd.set_resolved_ts_lag(Some(2), Some(Duration::from_secs(900)));
    pd.set_start_timestamp(3, unix_now() as u64 - 30);
    let m = e.wait_metrics("every fault firing", PATIENCE, |m| {
        firing(m, "region_down_peers", "", "warning")
            && firing(m, "region_miss_peers", "", "warning")
            && firing(m, "region_offline_peers", "", "warning")
            && firing(m, "pd_etcd", "", "critical")
            && firing(m, "gc_safepoint_lag", "", "warning")
            && firing(m, "resolved_ts_lag", "2", "warning")
            && firing(m, "store_restarted", "3", "info")
    });
    // 100 pending peers is PD's limit, not past it; the cluster-wide resolved ts is fresh.
    assert!(!firing(&m, "region_pending_peers", "", "warning"));
    assert!(!firing(&m, "resolved_ts_lag", "", "warning"));
    assert_eq!(
        sample(
            &m,
            "tikv_region_status",
            &[("type", "down-peer-region-count")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_observed_value",
            &[("name", "region_miss_peers"), ("store", "")]
        ),
        Some(7.0)
    );
    let gc = message(&e, "gc_safepoint_lag", "");
    assert!(
        gc.contains("the oldest service safe point is held by `ticdc-default-1139748333935545375`"),
        "{gc}"
    );
    let etcd = message(&e, "pd_etcd", "");
    assert!(
        etcd.contains("WAL fsync p99 ") && etcd.contains(" > 1s"),
        "{etcd}"
    );
    // The resolved ts stuck for 15 min fired at once: its violation began 14 min ago.
    let since = sample(
        &m,
        "tikv_invariant_active_since_timestamp_seconds",
        &inv("resolved_ts_lag", "2", "warning"),
    )
    .unwrap();
    assert!(
        (unix_now() - since - 840.0).abs() < 60.0,
        "{}",
        unix_now() - since
    );
    let restarted = message(&e, "store_restarted", "3");
    assert!(
        restarted.contains("< 600 (violated); started at "),
        "{restarted}"
    );
    // The log says each firing once.
    let log = e.stderr();
    assert_eq!(log.matches("firing: gc_safepoint_lag").count(), 1, "{log}");

    // Everything back to normal: each resolves.
    for t in [
        "down-peer-region-count",
        "miss-peer-region-count",
        "offline-peer-region-count",
    ] {
        pd.set_region_status(t, Some(0.0));
    }
    pd.set_gc_safepoint(Some(Duration::from_secs(600)), vec![]);
    pd.set_resolved_ts_lag(Some(2), Some(Duration::from_secs(1)));
    pd.set_wal_fsync_per_read(0.002, 10);
    pd.set_etcd_db(7e9, 8_589_934_592.0);
    let m = e.wait_metrics("resolved but the database", PATIENCE, |m| {
        !firing(m, "region_down_peers", "", "warning")
            && !firing(m, "gc_safepoint_lag", "", "warning")
            && !firing(m, "resolved_ts_lag", "2", "warning")
            // fsyncs fast again; the database is 81 % full
            && message(&e, "pd_etcd", "").starts_with(
                "PD leader basic-53pe89: database 6675.7 MiB, 81.5% of quota-backend-bytes 8192.0 MiB > 80% (ok: WAL fsync p99 0.002s over ",
            )
    });
    assert!(firing(&m, "pd_etcd", "", "critical"));
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_observed_value",
            &[("name", "pd_etcd"), ("store", "")]
        ),
        Some(1.0)
    );
}

#[test]
fn a_source_of_the_wrong_shape_is_unknown_and_never_resolves() {
    let pd = FakePd::with_live_stores(&cluster(3));
    pd.set_gc_safepoint(Some(Duration::from_secs(90_000)), vec![]);
    pd.clear_region_status();
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "");
    let m = e.wait_metrics("GC stuck firing", PATIENCE, |m| {
        firing(m, "gc_safepoint_lag", "", "warning")
    });
    // A leader whose page has no pd_regions_status yet: unknown, not 0.
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("region_down_peers", "", "warning")
        ),
        Some(1.0)
    );
    assert!(message(&e, "region_down_peers", "").contains("exports no pd_regions_status"));
    assert_eq!(
        sample(
            &m,
            "tikv_region_status",
            &[("type", "down-peer-region-count")]
        ),
        None
    );
    // `{}`: a failure of pd:gc_safepoint; the invariant stays firing, unknown.
    pd.respond_with("/pd/api/v1/gc/safepoint", Response::json("{}"));
    let m = e.wait_source_up("pd:gc_safepoint", 0.0);
    let m = if sample(
        &m,
        "tikv_invariant_unknown",
        &inv("gc_safepoint_lag", "", "warning"),
    ) == Some(1.0)
    {
        m
    } else {
        e.wait_metrics("gc unknown", PATIENCE, |m| {
            sample(
                m,
                "tikv_invariant_unknown",
                &inv("gc_safepoint_lag", "", "warning"),
            ) == Some(1.0)
        })
    };
    assert!(firing(&m, "gc_safepoint_lag", "", "warning"));
    assert_eq!(
        sample(&m, "tikv_health_exporter_source_up", &[("source", "pd")]),
        Some(1.0)
    );
    let why = message(&e, "gc_safepoint_lag", "");
    assert!(why.contains("no `gc_safe_point` in the reply"), "{why}");
    // The last good GC safe point stays exported.
    assert!(sample(&m, "tikv_gc_safepoint_timestamp_seconds", &[]).is_some());
    // PD down altogether: the cluster-wide sources are not asked and read as down too.
    pd.fail_with(503, "no leader\n");
    let m = e.wait_source_up("pd:metrics", 0.0);
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "pd:min_resolved_ts")]
        ),
        Some(0.0)
    );
    assert!(firing(&m, "gc_safepoint_lag", "", "warning"));
    // Back: everything answers again, logged once per source.
    pd.heal();
    e.wait_source_up("pd:gc_safepoint", 1.0);
    e.wait_source_up("pd:metrics", 1.0);
    let log = e.stderr();
    assert_eq!(log.matches("pd:gc_safepoint down").count(), 1, "{log}");
    assert_eq!(
        log.matches("pd:gc_safepoint answers again").count(),
        1,
        "{log}"
    );
}

#[test]
fn a_pd_without_the_endpoints_has_no_series_for_them_and_nothing_unknown() {
    let pd = FakePd::with_live_stores(&cluster(3));
    pd.set_version(PdVersion::V4_0_0);
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "");
    let m = e.wait_metrics("pd_etcd known", PATIENCE, |m| {
        sample(m, "tikv_invariant_unknown", &inv("pd_etcd", "", "critical")) == Some(0.0)
    });
    assert!(!m.contains("name=\"gc_safepoint_lag\""), "{m}");
    assert!(!m.contains("name=\"resolved_ts_lag\""), "{m}");
    assert!(!m.contains("tikv_gc_safepoint_timestamp_seconds"));
    assert!(!m.contains("tikv_min_resolved_ts_timestamp_seconds"));
    for s in ["pd:gc_safepoint", "pd:min_resolved_ts", "pd:metrics"] {
        assert_eq!(
            sample(&m, "tikv_health_exporter_source_up", &[("source", s)]),
            Some(1.0)
        );
    }
    // Region counts come from the leader as etcd's role names it (no service_member_role).
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("region_down_peers", "", "warning")
        ),
        Some(0.0)
    );
    // pd_hotspot_status is in PD v4.0's leader page too (`{address,store,type}`): every store
    // without hot peers at 0.
    for store in ["1", "2", "3"] {
        assert_eq!(
            sample(&m, "tikv_store_hot_write_regions", &[("store", store)]),
            Some(0.0),
            "{store}"
        );
    }
    let log = e.stderr();
    assert_eq!(
        log.matches("PD does not serve /gc/safepoint (PD < v5.0): gc_safepoint_lag has no series")
            .count(),
        1,
        "{log}"
    );
    // PD 6.0–7.1 with min-resolved-ts persistence off: still no resolved-ts series.
    pd.set_version(PdVersion::V6_1_0);
    let m = e.wait_metrics("GC served", PATIENCE, |m| {
        m.contains("tikv_gc_safepoint_timestamp_seconds")
    });
    assert!(!m.contains("name=\"resolved_ts_lag\""), "{m}");
    // Persistence on: the cluster-wide value only (no per-store map before 7.2).
    pd.set_resolved_ts_persist_interval("1s");
    let m = e.wait_metrics("cluster resolved ts", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_violation",
            &inv("resolved_ts_lag", "", "warning"),
        ) == Some(0.0)
    });
    assert!(!m.contains("name=\"resolved_ts_lag\",store=\"1\""), "{m}");
    assert!(e.stderr().contains("PD serves /gc/safepoint now"));
    // Every PD version serves /schedulers; evict-slow-store is not on by default before v7.6,
    // so its list is never asked; the stores are balanced.
    for store in ["1", "2", "3"] {
        assert_eq!(
            sample(
                &m,
                "tikv_invariant_unknown",
                &inv("leader_imbalance", store, "warning")
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        pd.requests_to("/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list"),
        0
    );
    // A PD that served no /schedulers (404): leader_imbalance has no series, nothing unknown.
    pd.respond_with(
        "/pd/api/v1/schedulers",
        Response::text(404, "404 page not found\n"),
    );
    let m = e.wait_metrics("no leader_imbalance", PATIENCE, |m| {
        !m.contains("name=\"leader_imbalance\"")
    });
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "pd:schedulers")]
        ),
        Some(1.0)
    );
    assert!(
        e.stderr()
            .contains("PD does not serve /schedulers: leader_imbalance has no series")
    );
}

/// `leader_imbalance`'s message on `store`.
fn leaders(e: &Exporter, store: &str) -> String {
    message(e, "leader_imbalance", store)
}

#[test]
fn leader_imbalance_fires_unless_a_scheduler_drains_the_store_at_o1_requests() {
    // 40 Up TiKV stores with 100 leaders each, store 3 with 10, and a TiFlash store.
    let mut specs: Vec<StoreSpec> = (1..=40)
        .map(|id| StoreSpec {
            leader_count: Some(if id == 3 { 10 } else { 100 }),
            ..StoreSpec::tikv(id)
        })
        .collect();
    specs.push(StoreSpec::tiflash(100));
    let pd = FakePd::with_live_stores(&specs);
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "invariants:\n  leader_imbalance: {grace: 0s}\n");
    let m = e.wait_metrics("store 3 imbalanced", PATIENCE, |m| {
        firing(m, "leader_imbalance", "3", "warning")
    });
    // 10 / (3910 / 40) = 0.1023...
    let v = sample(
        &m,
        "tikv_invariant_observed_value",
        &[("name", "leader_imbalance"), ("store", "3")],
    )
    .unwrap();
    assert!((v - 10.0 / 97.75).abs() < 1e-9, "{v}");
    assert_eq!(
        leaders(&e, "3"),
        "0.1023 < 0.5000 (violated); 10 leaders, 10% of the mean 97.8 over 40 Up TiKV stores"
    );
    assert!(!firing(&m, "leader_imbalance", "1", "warning"));
    // TiFlash has no leaders: no series.
    assert!(e.invariant("leader_imbalance", "100").is_none());
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "pd:schedulers")]
        ),
        Some(1.0)
    );

    // PD's requests over at least five health intervals (1 s): each cluster-wide path at most
    // once per interval, whatever the 41 stores; never /regions, a per-store path or progress.
    pd.clear_requests();
    let started = std::time::Instant::now();
    pd.wait_requests_to("/pd/api/v1/schedulers", 5);
    let intervals = started.elapsed().as_secs_f64().ceil() as usize + 1;
    let schedulers = pd.requests_to("/pd/api/v1/schedulers");
    assert!(schedulers <= intervals, "{schedulers} in {intervals} s");
    // evict-slow-store runs by default (v7.6+): its list once per /schedulers; evict-leader
    // does not run: its list is never asked.
    let slow_list = "/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list";
    let leader_list = "/pd/api/v1/scheduler-config/evict-leader-scheduler/list";
    assert!(pd.requests_to(slow_list) <= schedulers + 1);
    assert_eq!(pd.requests_to(leader_list), 0);
    for p in pd.paths() {
        assert!(
            !p.starts_with("/pd/api/v1/regions")
                && !p.starts_with("/pd/api/v1/store/")
                && !p.starts_with("/pd/api/v1/stores/progress"),
            "{p}"
        );
    }

    // An evict-leader scheduler on store 3: ok, saying why.
    pd.edit_schedulers(|s| s.evict_leader = vec![3]);
    e.wait_metrics("store 3 exempt", PATIENCE, |m| {
        !firing(m, "leader_imbalance", "3", "warning")
    });
    assert!(
        leaders(&e, "3").ends_with(
            "10 leaders, 10% of the mean 97.8 over 40 Up TiKV stores; exempt: an evict-leader-scheduler targets it"
        ),
        "{}",
        leaders(&e, "3")
    );
    assert!(pd.requests_to(leader_list) >= 1);
    // PD v3.0's per-store scheduler name: exempt the same way, without the list endpoint.
    pd.edit_schedulers(|s| s.v30_names = true);
    pd.clear_requests();
    pd.wait_requests_to("/pd/api/v1/schedulers", 3);
    // (At most one: the list of a round whose /schedulers came before the change.)
    assert!(pd.requests_to(leader_list) <= 1);
    assert!(!firing(&e.metrics(), "leader_imbalance", "3", "warning"));
    assert!(leaders(&e, "3").contains("exempt: an evict-leader-scheduler targets it"));

    // The scheduler removed: firing again. /schedulers failing: unknown below the threshold
    // (still firing: unknown resolves nothing), stores above it stay known.
    pd.edit_schedulers(|s| s.evict_leader.clear());
    e.wait_metrics("store 3 imbalanced again", PATIENCE, |m| {
        firing(m, "leader_imbalance", "3", "warning")
    });
    pd.respond_with(
        "/pd/api/v1/schedulers",
        Response::json(r#"{"error": "internal"}"#),
    );
    let m = e.wait_metrics("store 3 unknown", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_unknown",
            &inv("leader_imbalance", "3", "warning"),
        ) == Some(1.0)
    });
    assert!(firing(&m, "leader_imbalance", "3", "warning"));
    assert_eq!(
        sample(
            &m,
            "tikv_invariant_unknown",
            &inv("leader_imbalance", "1", "warning")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "pd:schedulers")]
        ),
        Some(0.0)
    );
    assert!(
        leaders(&e, "3").contains("whether PD evicts its leaders on purpose is unknown"),
        "{}",
        leaders(&e, "3")
    );
}

#[test]
fn evict_slow_store_exempts_by_its_list_or_by_slow_score_per_pd_version() {
    let mut specs = cluster(3);
    specs[2].leader_count = Some(0);
    let pd = FakePd::with_live_stores(&specs);
    pd.set_slow_score(3, 100);
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "invariants:\n  leader_imbalance: {grace: 0s}\n");
    let exempt = |e: &Exporter| {
        e.wait_metrics("store 3 exempt", PATIENCE, |m| {
            sample(
                m,
                "tikv_invariant_unknown",
                &inv("leader_imbalance", "3", "warning"),
            ) == Some(0.0)
                && leaders(e, "3").contains("exempt")
        });
        leaders(e, "3")
    };
    let imbalanced = |e: &Exporter| {
        e.wait_metrics("store 3 firing", PATIENCE, |m| {
            firing(m, "leader_imbalance", "3", "warning")
        });
    };
    // v7.6–v8.5.4: the list says `null`; PD's trigger (slow_score 100) decides.
    assert!(
        exempt(&e).ends_with("evict-slow-store-scheduler evicts its leaders (slow_score >= 100)")
    );
    pd.set_slow_score(3, 1);
    imbalanced(&e);
    // v8.5.5+: the real list decides, whatever the score.
    pd.set_version(PdVersion::V8_5_5);
    pd.edit_schedulers(|s| s.evicted_slow = vec![3]);
    assert!(exempt(&e).ends_with("; exempt: evict-slow-store-scheduler evicts its leaders"));
    pd.edit_schedulers(|s| s.evicted_slow = vec![2]);
    pd.set_slow_score(3, 100);
    imbalanced(&e);
    // <= v7.5 (`not implements`), the scheduler added by hand: the score again.
    pd.set_version(PdVersion::V6_1_0);
    pd.edit_schedulers(|s| s.evict_slow_store = Some(true));
    assert!(exempt(&e).ends_with("(slow_score >= 100)"));
    // Not running: a score of 100 alone exempts nothing.
    pd.edit_schedulers(|s| s.evict_slow_store = Some(false));
    imbalanced(&e);
}

#[test]
fn an_offline_store_that_stops_losing_regions_fires_and_resolves_when_it_moves() {
    let pd = FakePd::with_live_stores(&cluster(4));
    pd.set_store_state(4, "Offline");
    pd.set_region_count(4, 60);
    pd.edit_schedulers(|s| {
        s.removals = vec![Removal {
            store: 4,
            progress: 0.25,
            speed: 0.0,
            eta: 0.0,
        }]
    });
    let dir = tempfile::tempdir().unwrap();
    // A threshold of 8 s instead of 30 m.
    let e = start(
        &pd,
        &dir,
        "invariants:\n  offline_store_stuck: {threshold: 8}\n",
    );
    // Not seen falling yet and PD says it does not move: unknown until the threshold has
    // passed since the first observation (whether it fell before cannot be told), then
    // firing. (Seen unknown unless this test was not scheduled for the 8 s.)
    let m = e.wait_metrics("store 4 evaluated", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_unknown",
            &inv("offline_store_stuck", "4", "warning"),
        )
        .is_some()
    });
    if !firing(&m, "offline_store_stuck", "4", "warning") {
        let msg = message(&e, "offline_store_stuck", "4");
        assert!(msg.contains("has not been seen falling yet"), "{msg}");
    }
    // Up stores have no series.
    assert!(
        !m.contains("name=\"offline_store_stuck\",store=\"1\""),
        "{m}"
    );
    let m = e.wait_metrics("store 4 stuck", PATIENCE, |m| {
        firing(m, "offline_store_stuck", "4", "warning")
    });
    let v = sample(
        &m,
        "tikv_invariant_observed_value",
        &[("name", "offline_store_stuck"), ("store", "4")],
    )
    .unwrap();
    assert!(v > 8.0, "{v}");
    let msg = message(&e, "offline_store_stuck", "4");
    assert!(
        msg.contains(
            "60 regions; not fallen below 60 since this exporter first saw the store Offline at "
        ) && msg.ends_with("; PD: 25% done, not moving (speed 0, no ETA)"),
        "{msg}"
    );
    // Regions leave again: resolved at once (the value restarts from 0).
    pd.set_region_count(4, 50);
    pd.edit_schedulers(|s| {
        s.removals = vec![Removal {
            store: 4,
            progress: 0.4,
            speed: 12.5,
            eta: 1823.4,
        }]
    });
    let m = e.wait_metrics("store 4 moving", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_violation",
            &inv("offline_store_stuck", "4", "warning"),
        ) == Some(0.0)
    });
    let v = sample(
        &m,
        "tikv_invariant_observed_value",
        &[("name", "offline_store_stuck"), ("store", "4")],
    )
    .unwrap();
    assert!(v < 8.0, "{v}");
    let msg = message(&e, "offline_store_stuck", "4");
    assert!(msg.contains("50 regions; last fell to 50 at "), "{msg}");
    // PD down: unknown, still not resolved into anything.
    pd.fail_with(503, "no leader\n");
    e.wait_metrics("store 4 unknown", PATIENCE, |m| {
        sample(
            m,
            "tikv_invariant_unknown",
            &inv("offline_store_stuck", "4", "warning"),
        ) == Some(1.0)
    });
    // The store is buried: its series go.
    pd.heal();
    pd.remove_store(4);
    e.wait_metrics("store 4 gone", PATIENCE, |m| {
        !m.contains("name=\"offline_store_stuck\"")
    });
}

/// Hot peers of the fake: region 100 written on stores 1 (leader), 2 and 3, read on store 1;
/// region 101 written on store 1 only; store 3 has no load statistics (PD deleted its series).
fn hot_cluster() -> FakePd {
    let pd = FakePd::with_live_stores(&cluster(3));
    pd.edit_hotspot(|h| {
        h.peers = vec![
            peer(Kind::Write, 100, 1, true, 1_048_576.0),
            peer(Kind::Write, 100, 2, false, 1_048_576.0),
            peer(Kind::Write, 101, 1, true, 524_288.0),
            peer(Kind::Read, 100, 1, true, 2_097_152.0),
        ];
        h.absent = vec![3];
    });
    pd
}

fn hot(m: &str, name: &str, store: &str) -> Option<f64> {
    sample(m, name, &[("store", store)])
}

#[test]
fn hot_traffic_per_store_comes_from_the_leaders_hotspot_gauges_and_is_absent_when_unread() {
    let pd = hot_cluster();
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "");
    let m = e.wait_metrics("hot gauges", PATIENCE, |m| {
        hot(m, "tikv_store_hot_write_regions", "1").is_some()
    });
    // `_as_peer`: every replica of a write counts; store 3 (no series at PD) has none: 0.
    let want = [
        ("tikv_store_hot_write_regions", [2.0, 1.0, 0.0]),
        (
            "tikv_store_hot_write_bytes_per_second",
            [1_572_864.0, 1_048_576.0, 0.0],
        ),
        (
            "tikv_store_hot_write_keys_per_second",
            [1536.0, 1024.0, 0.0],
        ),
        ("tikv_store_hot_read_regions", [1.0, 0.0, 0.0]),
        (
            "tikv_store_hot_read_bytes_per_second",
            [2_097_152.0, 0.0, 0.0],
        ),
        ("tikv_store_hot_read_keys_per_second", [2048.0, 0.0, 0.0]),
    ];
    for (name, values) in want {
        for (store, v) in ["1", "2", "3"].iter().zip(values) {
            assert_eq!(hot(&m, name, store), Some(v), "{name} {store}");
        }
    }
    // Bounded labels: the store id only.
    let labels: Vec<_> = support::exporter::samples(&m)
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("tikv_store_hot_"))
        .map(|(_, labels, _)| labels.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
        .collect();
    assert_eq!(labels.len(), 18);
    assert!(labels.iter().all(|l| l == &["store"]), "{labels:?}");
    assert!(
        !pd.paths().iter().any(|p| p.contains("/hotspot/")),
        "never polled"
    );
    // The leader's page failing: the gauges go (not 0, not the last value).
    pd.respond_with("/metrics", Response::text(500, "boom\n"));
    let m = e.wait_source_up("pd:metrics", 0.0);
    let m = if hot(&m, "tikv_store_hot_write_regions", "1").is_none() {
        m
    } else {
        e.wait_metrics("hot gauges gone", PATIENCE, |m| {
            hot(m, "tikv_store_hot_write_regions", "1").is_none()
        })
    };
    assert!(!m.contains("tikv_store_hot_"), "{m}");
    pd.heal();
    e.wait_metrics("hot gauges back", PATIENCE, |m| {
        hot(m, "tikv_store_hot_write_regions", "1") == Some(2.0)
    });
}

#[test]
fn a_leader_page_without_the_hotspot_family_gives_no_hot_series() {
    let pd = hot_cluster();
    pd.edit_hotspot(|h| h.family = false);
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "");
    let m = e.wait_metrics("region counts read", PATIENCE, |m| {
        sample(
            m,
            "tikv_region_status",
            &[("type", "down-peer-region-count")],
        )
        .is_some()
    });
    assert!(!m.contains("tikv_store_hot_"), "{m}");
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "pd:metrics")]
        ),
        Some(1.0)
    );
}
