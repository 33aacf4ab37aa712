//! Unit tests of the poller (`poller.rs`, `prometheus_round.rs`): rounds driven by a manual clock
//! and fixed observations. One file above 700 lines: every test builds on the same fixtures (a
//! store list, fixed Prometheus answers, a poller on a manual clock).

use super::*;
use crate::clock::ManualClock;
use crate::domain::Member;
use crate::invariants::engine::Phase;
use crate::sources::pd::RejectedStore;
use crate::sources::prometheus::Sample;
use std::time::Duration;

const T0: f64 = 1_700_000_000.0;

fn store(id: u64, state: StoreState, avail_gib: u64) -> Store {
    Store {
        address: format!("tikv-{id}:20160"),
        status_address: format!("tikv-{id}:20180"),
        capacity_bytes: Some(100 << 30),
        available_bytes: Some(avail_gib << 30),
        slow_score: Some(1.0),
        last_heartbeat_ns: Some((T0 * 1e9) as u64),
        ..Store::new(id, state)
    }
}

/// Store 1 whose last heartbeat was at `hb` (Unix seconds), in PD state `state`.
fn beating(state: StoreState, hb: f64) -> Store {
    Store {
        last_heartbeat_ns: Some((hb * 1e9) as u64),
        ..store(1, state, 50)
    }
}

fn member(name: &str, id: u64) -> Member {
    Member {
        name: name.into(),
        member_id: id,
        client_urls: vec![],
    }
}

fn healthy_pd() -> PdHealth {
    PdHealth {
        leader: Some(member("pd-0", 1)),
        etcd_leader: Some(member("pd-0", 1)),
        other_leaders: vec![],
        members: 3,
        answered: 3,
        asked: 3,
        unhealthy: Some(vec![]),
    }
}

fn obs(now: f64, stores: Vec<Store>) -> Observations {
    let mut o = Observations::new(now, stores);
    o.pd_health = Ok(healthy_pd());
    o.schedule.max_store_down_time = Some(Duration::from_secs(1800));
    o
}

fn poller(yaml: &str, clock: Arc<ManualClock>) -> Poller {
    let cfg = Config::from_yaml(yaml).unwrap();
    Poller::with_clock(&cfg, clock).unwrap()
}

/// A poller on `clock` saving its state to `path`, `store_down` firing without grace.
fn state_file_poller(path: &std::path::Path, clock: &Arc<ManualClock>) -> Poller {
    let yaml = format!(
        "state_file: {}\ninvariants:\n  store_down:\n    grace: 0s\n",
        path.display()
    );
    poller(&yaml, clock.clone())
}

fn find<'a>(s: &'a Snapshot, name: &str, store: &str) -> Option<&'a InvariantView> {
    s.invariants
        .iter()
        .find(|i| &*i.name == name && i.store == store)
}

fn view<'a>(s: &'a Snapshot, name: &str, store: &str) -> &'a InvariantView {
    find(s, name, store).unwrap_or_else(|| panic!("no {name}/{store} in {:?}", s.invariants))
}

fn sample(labels: &[(&str, &str)], v: f64) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value: v,
    }
}

fn query(p: &Poller, name: &str) -> String {
    p.definitions()
        .iter()
        .find(|d| &*d.rule.name == name)
        .and_then(|d| d.query())
        .unwrap()
        .to_owned()
}

#[test]
fn a_disk_filling_goes_pending_then_firing_after_its_grace_then_resolves() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock.clone());
    let s = p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 50)]));
    assert_eq!(view(&s, "disk_usage", "1").state, Phase::Ok);
    assert_eq!(view(&s, "disk_usage", "1").value, Some(0.5));
    // 75 % used: pending for the 5 m grace, firing once it has held that long.
    let s = p.evaluate(&obs(T0 + 10.0, vec![store(1, StoreState::Up, 25)]));
    let d = view(&s, "disk_usage", "1");
    assert_eq!(
        (d.state, d.since, d.unknown),
        (Phase::Pending, Some(T0 + 10.0), false)
    );
    assert_eq!(view(&s, "disk_low_space", "1").state, Phase::Ok);
    let s = p.evaluate(&obs(T0 + 309.0, vec![store(1, StoreState::Up, 25)]));
    assert_eq!(view(&s, "disk_usage", "1").state, Phase::Pending);
    let s = p.evaluate(&obs(T0 + 310.0, vec![store(1, StoreState::Up, 25)]));
    assert_eq!(view(&s, "disk_usage", "1").state, Phase::Firing);
    let s = p.evaluate(&obs(T0 + 320.0, vec![store(1, StoreState::Up, 60)]));
    let d = view(&s, "disk_usage", "1");
    assert_eq!((d.state, d.since), (Phase::Ok, None));
    assert_eq!(s.taken_at, T0 + 320.0);
}

#[test]
fn space_thresholds_follow_pds_ratios_warning_at_high_critical_at_low() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller(
        "invariants:\n  disk_usage:\n    grace: 0s\n  disk_low_space:\n    grace: 0s\n",
        clock,
    );
    // PD configured high-space-ratio 0.5, low-space-ratio 0.6; the store is 55 % used.
    let mut o = obs(T0, vec![store(1, StoreState::Up, 45)]);
    o.schedule.high_space_ratio = Some(0.5);
    o.schedule.low_space_ratio = Some(0.6);
    let s = p.evaluate(&o);
    let (w, c) = (view(&s, "disk_usage", "1"), view(&s, "disk_low_space", "1"));
    assert_eq!(
        (w.state, w.threshold, w.severity),
        (Phase::Firing, 0.5, crate::domain::Severity::Warning)
    );
    assert_eq!(
        (c.state, c.threshold, c.severity),
        (Phase::Ok, 0.6, crate::domain::Severity::Critical)
    );
    // 65 % used: past low-space-ratio too.
    o.stores = vec![store(1, StoreState::Up, 35)];
    let s = p.evaluate(&o);
    assert_eq!(view(&s, "disk_low_space", "1").state, Phase::Firing);
    // PD without the ratios: the documented fallback 0.7 / 0.8.
    o.schedule = ScheduleConfig::default();
    let s = p.evaluate(&o);
    assert_eq!(view(&s, "disk_usage", "1").threshold, 0.7);
    assert_eq!(view(&s, "disk_low_space", "1").threshold, 0.8);
    assert_eq!(view(&s, "disk_usage", "1").state, Phase::Ok);
}

#[test]
fn a_rolling_restart_of_30s_raises_nothing_critical() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock);
    // Last heartbeat at T0; PD marks the store Disconnected at T0 + 20; it is back at T0 + 30.
    let mut firing = 0;
    for t in (0..=60).step_by(5) {
        let now = T0 + t as f64;
        let st = match t {
            0..20 => beating(StoreState::Up, T0),
            20..30 => beating(StoreState::Disconnected, T0),
            _ => beating(StoreState::Up, now),
        };
        let s = p.evaluate(&obs(now, vec![st]));
        let d = view(&s, "store_down", "1");
        firing += usize::from(d.state == Phase::Firing);
        if (20..30).contains(&t) {
            assert_eq!(
                (d.state, d.since),
                (Phase::Pending, Some(T0 + 20.0)),
                "t={t}"
            );
        }
    }
    assert_eq!(firing, 0);
}

#[test]
fn a_restart_of_100s_is_critical_within_one_poll_after_the_grace() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock);
    let down = |t: f64| obs(T0 + t, vec![beating(StoreState::Disconnected, T0)]);
    assert_eq!(
        view(&p.evaluate(&down(20.0)), "store_down", "1").state,
        Phase::Pending
    );
    assert_eq!(
        view(&p.evaluate(&down(79.0)), "store_down", "1").state,
        Phase::Pending
    );
    let s = p.evaluate(&down(80.0));
    let d = view(&s, "store_down", "1");
    assert_eq!(
        (d.state, d.since, d.severity),
        (
            Phase::Firing,
            Some(T0 + 20.0),
            crate::domain::Severity::Critical
        )
    );
    let s = p.evaluate(&obs(T0 + 100.0, vec![beating(StoreState::Up, T0 + 100.0)]));
    assert_eq!(view(&s, "store_down", "1").state, Phase::Ok);
    // The exporter starting while a store has been Disconnected for long: firing at once.
    let mut p = poller("", Arc::new(ManualClock::at(T0)));
    assert_eq!(
        view(&p.evaluate(&down(300.0)), "store_down", "1").state,
        Phase::Firing
    );
    // A configured grace applies the same way.
    let mut p = poller(
        "invariants:\n  store_down:\n    grace: 10s\n",
        Arc::new(ManualClock::at(T0)),
    );
    assert_eq!(
        view(&p.evaluate(&down(29.0)), "store_down", "1").state,
        Phase::Pending
    );
    assert_eq!(
        view(&p.evaluate(&down(30.0)), "store_down", "1").state,
        Phase::Firing
    );
}

#[test]
fn down_is_critical_at_once_and_offline_stores_are_judged_by_heartbeat() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock);
    let mut down = beating(StoreState::Down, T0 - 3600.0);
    down.id = 2;
    let mut down_no_hb = store(3, StoreState::Down, 50);
    down_no_hb.last_heartbeat_ns = None;
    let crashed_offline = Store {
        id: 4,
        ..beating(StoreState::Offline, T0 - 90.0)
    };
    let draining = Store {
        id: 5,
        ..beating(StoreState::Offline, T0 - 5.0)
    };
    let s = p.evaluate(&obs(T0, vec![down, down_no_hb, crashed_offline, draining]));
    assert_eq!(view(&s, "store_down", "2").state, Phase::Firing);
    assert_eq!(view(&s, "store_down", "3").state, Phase::Firing);
    let off = view(&s, "store_down", "4");
    // Heartbeat 90 s old > threshold 60 s: violated since T0 - 30, grace 60 s → pending.
    assert_eq!(
        (off.state, off.since),
        (Phase::Pending, Some(T0 - 30.0)),
        "{}",
        off.message
    );
    assert!(off.message.contains("Offline"), "{}", off.message);
    assert_eq!(view(&s, "store_down", "5").state, Phase::Ok);
    // Offline stores are not judged by the other invariants.
    assert!(find(&s, "disk_usage", "4").is_none());
}

#[test]
fn a_store_without_state_name_and_heartbeat_is_unknown_never_healthy() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock);
    let mut s = store(1, StoreState::Up, 50);
    s.state_inferred = true;
    s.last_heartbeat_ns = None;
    let mut with_hb = store(2, StoreState::Up, 50);
    with_hb.state_inferred = true;
    let mut said_up = store(3, StoreState::Up, 50);
    said_up.last_heartbeat_ns = None;
    let snap = p.evaluate(&obs(T0, vec![s, with_hb, said_up]));
    let d = view(&snap, "store_down", "1");
    assert!(
        d.unknown && d.message.contains("neither a state_name"),
        "{}",
        d.message
    );
    assert!(
        !view(&snap, "store_down", "2").unknown,
        "judged by its heartbeat"
    );
    assert!(!view(&snap, "store_down", "3").unknown, "PD says Up");
}

#[test]
fn pd_failing_makes_store_invariants_unknown_and_keeps_firing_ones_firing() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("invariants:\n  store_down:\n    grace: 0s\n", clock.clone());
    let s = p.evaluate(&obs(T0, vec![store(1, StoreState::Disconnected, 50)]));
    assert_eq!(view(&s, "store_down", "1").state, Phase::Firing);
    let mut o = obs(T0 + 10.0, vec![store(1, StoreState::Disconnected, 50)]);
    o.pd_error = Some(Unavailable::new("connection refused"));
    o.pd_health = Err(Unavailable::new("PD unavailable: connection refused"));
    let s = p.evaluate(&o);
    let d = view(&s, "store_down", "1");
    assert_eq!((d.state, d.unknown), (Phase::Firing, true));
    assert!(d.message.contains("connection refused"), "{}", d.message);
    let pd = view(&s, "pd_leader", "");
    assert!(pd.unknown);
    // Without a fresh store list the series are kept, not dropped.
    assert!(find(&s, "disk_usage", "1").is_some());
    // Unknown for the 5 m hold: no longer counted as violated, still unknown.
    o.now = T0 + 310.0;
    let s = p.evaluate(&o);
    let d = view(&s, "store_down", "1");
    assert_eq!((d.state, d.unknown), (Phase::Ok, true));
}

/// A steady violation keeps the file fresh: after more than the outage tolerance of the
/// same violation, a crash (no shutdown write) still restores it with its start.
#[test]
fn a_steady_violation_refreshes_saved_at_so_a_crash_an_hour_later_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = state_file_poller(&path, &clock);
    let saved_at = || -> f64 {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["saved_at"].as_f64().unwrap()
    };
    while clock.now() < T0 + 1.5 * state_file::OUTAGE_TOLERANCE_SECS {
        let t = clock.now();
        p.evaluate(&obs(t, vec![store(1, StoreState::Disconnected, 50)]));
        assert!(
            t - saved_at() < state_file::REFRESH_SECS,
            "saved_at {} at {t}",
            saved_at()
        );
        clock.advance(10.0);
    }
    std::mem::forget(p); // a crash: no shutdown write
    clock.advance(20.0);
    let mut p = state_file_poller(&path, &clock);
    let s = p.restored_snapshot().expect("restored after the crash");
    let d = view(&s, "store_down", "1");
    assert_eq!((d.state, d.since), (Phase::Firing, Some(T0)));
    // Without violations nothing is rewritten (the file is not touched every round).
    let quiet_dir = tempfile::tempdir().unwrap();
    let quiet = quiet_dir.path().join("state.json");
    let yaml = format!("state_file: {}\n", quiet.display());
    let mut p = poller(&yaml, Arc::new(ManualClock::at(T0)));
    for i in 0..100 {
        let t = T0 + f64::from(i) * 10.0;
        p.evaluate(&obs(t, vec![beating(StoreState::Up, t)]));
    }
    assert!(!quiet.exists(), "written without any violation");
}

/// Empty, truncated and non-JSON state files: the poller starts, the file is moved aside
/// (kept for inspection, never overwritten) and counted.
#[test]
fn a_corrupt_state_file_is_set_aside_counted_and_the_poller_starts() {
    for bad in [
        &b""[..],
        b"{\"version\":1,\"saved_at\":17",
        b"\x00\x01garbage",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, bad).unwrap();
        std::fs::write(dir.path().join("state.tmp"), b"").unwrap();
        let yaml = format!("state_file: {}\n", path.display());
        let mut p = poller(&yaml, Arc::new(ManualClock::at(T0)));
        let aside = dir.path().join(format!("state.json.corrupt-{}", T0 as i64));
        assert_eq!(std::fs::read(&aside).unwrap(), bad, "kept as it was");
        assert!(!path.exists());
        assert!(!dir.path().join("state.tmp").exists(), "leftover removed");
        let s = p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 50)]));
        assert_eq!(
            s.state_file,
            Some(StateFileHealth {
                corrupt: 1,
                write_failures: 0
            })
        );
    }
    // Without a state file there are no state-file counters at all.
    let mut p = poller("", Arc::new(ManualClock::at(T0)));
    assert_eq!(p.evaluate(&obs(T0, vec![])).state_file, None);
}

#[test]
fn restored_violations_are_served_unknown_with_their_since_while_pd_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = state_file_poller(&path, &clock);
    p.evaluate(&obs(T0, vec![store(1, StoreState::Disconnected, 50)]));
    drop(p);
    clock.advance(30.0);
    let mut p = state_file_poller(&path, &clock);
    let s = p.restored_snapshot().expect("something was restored");
    let d = view(&s, "store_down", "1");
    assert_eq!(
        (d.state, d.since, d.unknown),
        (Phase::Firing, Some(T0), true)
    );
    // PD answers 503 at the first poll: still served.
    let mut o = obs(T0 + 31.0, vec![]);
    o.pd_error = Some(Unavailable::new("HTTP 503"));
    let s = p.evaluate(&o);
    let d = view(&s, "store_down", "1");
    assert_eq!(
        (d.state, d.since, d.unknown),
        (Phase::Firing, Some(T0), true)
    );
    assert!(d.message.contains("HTTP 503"), "{}", d.message);
    // Nothing restored: nothing to serve before the first poll.
    assert!(poller("", clock).restored_snapshot().is_none());
}

#[test]
fn stores_pd_no_longer_lists_lose_their_series() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock.clone());
    p.evaluate(&obs(
        T0,
        vec![store(1, StoreState::Up, 50), store(2, StoreState::Up, 50)],
    ));
    let s = p.evaluate(&obs(T0 + 1.0, vec![store(1, StoreState::Up, 50)]));
    assert!(s.invariants.iter().all(|i| i.store != "2"));
    assert_eq!(view(&s, "store_down", "1").state, Phase::Ok);
}

#[test]
fn a_duplicated_store_id_keeps_its_last_entry_and_is_unknown() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("invariants:\n  store_down:\n    grace: 0s\n", clock);
    p.set_store_list(StoreList {
        stores: vec![
            store(1, StoreState::Disconnected, 50),
            store(2, StoreState::Up, 50),
        ],
        rejected: vec![],
    });
    let o = p.observations(None, QueryResults::new());
    let s = p.evaluate(&o);
    assert_eq!(view(&s, "store_down", "1").state, Phase::Firing);
    // Store 1 listed twice (and an entry without an id): store 1 stays, firing, unknown.
    let dup = |id| RejectedStore {
        reason: RejectReason::DuplicateId,
        id: Some(id),
        detail: format!("store {id} is listed 2 times"),
    };
    p.set_store_list(StoreList {
        stores: vec![store(2, StoreState::Up, 50)],
        rejected: vec![
            dup(1),
            dup(1),
            RejectedStore {
                reason: RejectReason::InvalidId,
                id: None,
                detail: "store id none".into(),
            },
        ],
    });
    let ids: Vec<u64> = p.stores().iter().map(|s| s.id).collect();
    assert_eq!(ids, [1, 2]);
    let o = p.observations(None, QueryResults::new());
    let s = p.evaluate(&o);
    let d = view(&s, "store_down", "1");
    assert_eq!((d.state, d.unknown), (Phase::Firing, true));
    assert!(d.message.contains("more than once"), "{}", d.message);
    assert!(!view(&s, "store_down", "2").unknown);
    assert_eq!(s.rejected_stores["duplicate_id"], 2);
    assert_eq!(s.rejected_stores["invalid_id"], 1);
    // Store 2 now missing while an entry has no id: kept, unknown, not resolved.
    p.set_store_list(StoreList {
        stores: vec![],
        rejected: vec![RejectedStore {
            reason: RejectReason::InvalidId,
            id: None,
            detail: "store id 18446744073709551616".into(),
        }],
    });
    let o = p.observations(None, QueryResults::new());
    let s = p.evaluate(&o);
    let d = view(&s, "store_down", "2");
    assert!(
        d.unknown && d.message.contains("without a usable id"),
        "{}",
        d.message
    );
    assert_eq!(p.stores().len(), 2);
}

#[test]
fn prometheus_invariants_map_samples_to_stores_and_miss_is_unknown() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("prometheus:\n  url: http://127.0.0.1:9\n", clock.clone());
    let mut o = obs(
        T0,
        vec![store(1, StoreState::Up, 50), store(2, StoreState::Up, 50)],
    );
    o.prom.insert(
        query(&p, "cpu_usage"),
        Ok(vec![
            sample(&[("instance", "tikv-1:20180")], 0.9),
            sample(&[("instance", "pd-0:2379")], 0.1),
        ]),
    );
    o.prom.insert(
        query(&p, "write_latency_p99"),
        Err(Unavailable::new("timeout")),
    );
    let s = p.evaluate(&o);
    let c1 = view(&s, "cpu_usage", "1");
    assert_eq!(
        (c1.state, c1.value, c1.unknown),
        (Phase::Pending, Some(0.9), false)
    );
    let c2 = view(&s, "cpu_usage", "2");
    assert!(
        c2.unknown && c2.message.contains("no sample"),
        "{}",
        c2.message
    );
    let w = view(&s, "write_latency_p99", "1");
    assert!(w.unknown && w.message.contains("timeout"), "{}", w.message);
    // One sample mapped to no store; the failed query has no count.
    assert_eq!(s.unmapped["cpu_usage"].samples, 1);
    assert_eq!(
        s.unmapped["cpu_usage"].example.as_deref(),
        Some(r#"{instance="pd-0:2379"}"#)
    );
    assert!(!s.unmapped.contains_key("write_latency_p99"));
}

#[test]
fn the_store_mapping_override_maps_labels_the_builtin_rules_do_not_know() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller(
        "prometheus:\n  url: http://127.0.0.1:9\n  store_mapping:\n    label: node\n    regex: 'kv-(\\d+)\\.example'\n",
        clock,
    );
    let q = query(&p, "cpu_usage");
    assert!(
        q.contains("node)"),
        "the override's label is kept by the query: {q}"
    );
    p.set_store_list(StoreList {
        stores: vec![store(1, StoreState::Up, 50), store(2, StoreState::Up, 50)],
        rejected: vec![],
    });
    let mut o = p.observations(None, QueryResults::new());
    o.prom.insert(
        q,
        Ok(vec![
            sample(
                &[("instance", "10.9.9.9:9000"), ("node", "kv-2.example")],
                0.9,
            ),
            sample(
                &[("instance", "10.9.9.8:9000"), ("node", "db-1.example")],
                0.9,
            ),
        ]),
    );
    let s = p.evaluate(&o);
    assert_eq!(view(&s, "cpu_usage", "2").value, Some(0.9));
    assert!(view(&s, "cpu_usage", "1").unknown);
    assert_eq!(s.unmapped["cpu_usage"].samples, 1);
}

#[test]
fn an_idle_store_is_ok_a_missing_one_unknown_and_nan_never_wins() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller(
        "prometheus:\n  url: http://127.0.0.1:9\ninvariants:\n  write_latency_p99:\n    grace: 0s\n",
        clock,
    );
    let mut o = obs(
        T0,
        (1..=3).map(|id| store(id, StoreState::Up, 50)).collect(),
    );
    // The built-in query reports 0 for an instance whose series exist but served no write;
    // here store 2 is idle, store 1 slow (plus a NaN sample), store 3 has no series at all.
    o.prom.insert(
        query(&p, "write_latency_p99"),
        Ok(vec![
            sample(&[("instance", "tikv-1:20180")], f64::NAN),
            sample(&[("instance", "tikv-1:20180"), ("pod", "x")], 0.5),
            sample(&[("instance", "tikv-2:20180")], 0.0),
        ]),
    );
    let s = p.evaluate(&o);
    let w1 = view(&s, "write_latency_p99", "1");
    assert_eq!((w1.state, w1.value), (Phase::Firing, Some(0.5)));
    let w2 = view(&s, "write_latency_p99", "2");
    assert_eq!(
        (w2.state, w2.value, w2.unknown),
        (Phase::Ok, Some(0.0), false)
    );
    assert!(view(&s, "write_latency_p99", "3").unknown);
}

#[test]
fn custom_invariants_aggregate_the_worst_sample_for_their_op() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller(
        "prometheus:\n  url: http://127.0.0.1:9\ncustom_invariants:\n  - name: free_ratio\n    query: free\n    op: \"<\"\n    threshold: 0.2\n  - name: cluster_min\n    query: lag\n    op: \"<=\"\n    threshold: 1\n    scope: cluster\n",
        clock,
    );
    let mut o = obs(T0, vec![store(1, StoreState::Up, 50)]);
    // Two disks on store 1: the emptier one decides for `<`.
    o.prom.insert(
        "free".into(),
        Ok(vec![
            sample(&[("instance", "tikv-1:20180"), ("device", "a")], 0.9),
            sample(&[("instance", "tikv-1:20180"), ("device", "b")], 0.1),
        ]),
    );
    o.prom.insert(
        "lag".into(),
        Ok(vec![sample(&[("x", "a")], 5.0), sample(&[("x", "b")], 0.5)]),
    );
    let s = p.evaluate(&o);
    let f = view(&s, "free_ratio", "1");
    assert_eq!((f.state, f.value), (Phase::Firing, Some(0.1)));
    let c = view(&s, "cluster_min", "");
    assert_eq!((c.state, c.value), (Phase::Firing, Some(0.5)));
}

#[test]
fn a_reconfiguration_keeps_running_grace_periods_and_a_refused_one_changes_nothing() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock);
    p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 50)]));
    // 75 % used from T0 + 10: pending under the default 5 m grace.
    let s = p.evaluate(&obs(T0 + 10.0, vec![store(1, StoreState::Up, 25)]));
    assert_eq!(view(&s, "disk_usage", "1").state, Phase::Pending);
    // A 1 m grace, counted from when the violation began, not from the reload.
    let shorter = Config::from_yaml("invariants: {disk_usage: {grace: 1m}}").unwrap();
    p.reconfigure(&shorter).unwrap();
    let s = p.evaluate(&obs(T0 + 75.0, vec![store(1, StoreState::Up, 25)]));
    let d = view(&s, "disk_usage", "1");
    assert_eq!((d.state, d.since), (Phase::Firing, Some(T0 + 10.0)));
    // A configuration whose PD client cannot be built: an error, the 1 m grace stays.
    let bad = Config::from_yaml(
        "pd: {endpoints: ['ftp://pd:2379']}\ninvariants: {disk_usage: {grace: 10m}}",
    )
    .unwrap();
    assert!(p.reconfigure(&bad).is_err());
    let grace = |p: &Poller| {
        p.definitions()
            .iter()
            .find(|d| &*d.rule.name == "disk_usage")
            .map(|d| d.rule.grace)
    };
    assert_eq!(grace(&p), Some(60.0));
}

#[test]
fn stores_without_a_slow_score_have_no_store_slow_series() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock);
    let mut old = store(1, StoreState::Up, 50);
    old.slow_score = None;
    let mut zero = store(2, StoreState::Up, 50);
    zero.slow_score = Some(0.0);
    let mut slow = store(3, StoreState::Up, 50);
    slow.slow_score = Some(85.0);
    let s = p.evaluate(&obs(T0, vec![old, zero, slow]));
    assert!(find(&s, "store_slow", "1").is_none());
    assert!(find(&s, "store_slow", "2").is_none());
    assert_eq!(view(&s, "store_slow", "3").state, Phase::Firing);
    assert!(!view(&s, "store_down", "1").unknown);
}

#[test]
fn pd_leader_fires_without_a_leader_on_a_leader_mismatch_and_on_unhealthy_members() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("", clock);
    let with = |h: PdHealth, t: f64| {
        let mut o = obs(T0 + t, vec![store(1, StoreState::Up, 50)]);
        o.pd_health = Ok(h);
        o
    };
    let s = p.evaluate(&with(healthy_pd(), 0.0));
    assert_eq!(view(&s, "pd_leader", "").state, Phase::Ok);
    let leaderless = PdHealth {
        leader: None,
        unhealthy: Some(vec!["pd-0".into(), "pd-1".into(), "pd-2".into()]),
        ..healthy_pd()
    };
    let s = p.evaluate(&with(leaderless.clone(), 10.0));
    let v = view(&s, "pd_leader", "");
    assert_eq!(v.state, Phase::Pending, "inside the 30 s grace");
    assert!(v.message.contains("no PD leader (3 of 3"), "{}", v.message);
    let s = p.evaluate(&with(leaderless, 40.0));
    assert_eq!(view(&s, "pd_leader", "").state, Phase::Firing);
    let s = p.evaluate(&with(healthy_pd(), 50.0));
    assert_eq!(view(&s, "pd_leader", "").state, Phase::Ok);
    let mismatch = PdHealth {
        etcd_leader: Some(member("pd-2", 3)),
        ..healthy_pd()
    };
    let s = p.evaluate(&with(mismatch.clone(), 60.0));
    assert!(
        view(&s, "pd_leader", "")
            .message
            .contains("not the etcd leader pd-2")
    );
    let s = p.evaluate(&with(mismatch, 90.0));
    assert_eq!(view(&s, "pd_leader", "").state, Phase::Firing);
    let sick = PdHealth {
        unhealthy: Some(vec!["pd-1".into()]),
        ..healthy_pd()
    };
    let s = p.evaluate(&with(sick, 100.0));
    let v = view(&s, "pd_leader", "");
    assert!(
        v.message.contains("unhealthy PD members: pd-1"),
        "{}",
        v.message
    );
    // Health unreadable but a leader known and agreed: unknown, not healthy.
    let unread = PdHealth {
        unhealthy: None,
        ..healthy_pd()
    };
    let s = p.evaluate(&with(unread, 110.0));
    assert!(view(&s, "pd_leader", "").unknown);
}

#[test]
fn a_prometheus_restart_holds_the_builtin_rate_queries_unknown_for_the_warmup() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller(
        "prometheus:\n  url: http://127.0.0.1:9\n  warmup: 60s\n",
        clock.clone(),
    );
    let cpu = query(&p, "cpu_usage");
    p.prometheus_started_at(T0 - 3600.0);
    let mut out: QueryResults = BTreeMap::new();
    out.insert(cpu.clone(), Ok(vec![]));
    assert!(p.hold_during_warmup(&mut out).is_empty());
    assert!(out[&cpu].is_ok(), "no restart seen");
    // Restarted 10 s ago: held for the 50 s left of the warm-up; the answer is given back.
    p.prometheus_started_at(T0 - 10.0);
    let held = p.hold_during_warmup(&mut out);
    assert!(held[&cpu].is_ok());
    let e = out[&cpu].as_ref().unwrap_err();
    assert!(e.to_string().contains("for 50s more"), "{e}");
    clock.advance(51.0);
    let mut out: QueryResults = BTreeMap::new();
    out.insert(cpu.clone(), Ok(vec![]));
    p.hold_during_warmup(&mut out);
    assert!(out[&cpu].is_ok(), "warm-up over");
}

#[test]
fn the_state_file_carries_a_violation_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let yaml = format!("state_file: {}\n", path.display());
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller(&yaml, clock.clone());
    p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 25)]));
    drop(p);
    clock.advance(200.0);
    let mut p = poller(&yaml, clock.clone());
    let s = p.evaluate(&obs(T0 + 200.0, vec![store(1, StoreState::Up, 25)]));
    let d = view(&s, "disk_usage", "1");
    assert_eq!((d.state, d.since), (Phase::Pending, Some(T0)));
    let s = p.evaluate(&obs(T0 + 300.0, vec![store(1, StoreState::Up, 25)]));
    assert_eq!(view(&s, "disk_usage", "1").state, Phase::Firing);
}

#[test]
fn tombstone_and_excluded_tiflash_stores_are_not_evaluated() {
    let clock = Arc::new(ManualClock::at(T0));
    let mut p = poller("pd:\n  tiflash: exclude\n", clock);
    let mut flash = store(3, StoreState::Up, 50);
    flash.labels = vec![("engine".into(), "tiflash".into())];
    p.set_store_list(StoreList {
        stores: vec![
            store(2, StoreState::Up, 50),
            store(1, StoreState::Tombstone, 50),
            flash,
        ],
        rejected: vec![],
    });
    let ids: Vec<u64> = p.stores().iter().map(|s| s.id).collect();
    assert_eq!(ids, [2]);
}
