//! The saturation evaluators on fixed observations: exact values and messages, the pool
//! named, idle is 0, a TiKV without a memory quota has no series, a failed query or a store
//! nothing maps to is unknown.

use super::*;
use crate::config::Config;
use crate::domain::StoreState;
use crate::invariants::definitions::{self, Definition};
use crate::invariants::engine::{Engine, Phase};
use crate::observations::Unavailable;

const T0: f64 = 1_700_000_000.0;

fn def(name: &str) -> Definition {
    let cfg = Config::from_yaml("prometheus:\n  url: http://127.0.0.1:9\n").unwrap();
    definitions::build(&cfg)
        .unwrap()
        .into_iter()
        .find(|d| &*d.rule.name == name)
        .unwrap()
}

fn store(id: u64) -> Store {
    Store {
        address: format!("tikv-{id}:20160"),
        status_address: format!("tikv-{id}:20180"),
        ..Store::new(id, StoreState::Up)
    }
}

/// A sample of store `id`'s TiKV with `labels` besides `instance`.
fn sample(id: u64, labels: &[(&str, &str)], value: f64) -> Sample {
    let instance = format!("tikv-{id}:20180");
    let l = labels
        .iter()
        .copied()
        .chain([("instance", instance.as_str())])
        .collect();
    Sample { labels: l, value }
}

/// Stores 1–3 (TiKV, Up), TiFlash store 4 and Offline store 5, with `samples` as the result
/// of `d`'s query.
fn observations(d: &Definition, samples: Result<Vec<Sample>, Unavailable>) -> Observations {
    let tiflash = Store {
        labels: vec![("engine".into(), "tiflash".into())],
        ..store(4)
    };
    let offline = Store {
        state: StoreState::Offline,
        ..store(5)
    };
    let mut o = Observations::new(T0, vec![store(1), store(2), store(3), tiflash, offline]);
    o.prom.insert(d.query().unwrap().to_owned(), samples);
    o
}

fn ids(inputs: &[(String, Input)]) -> Vec<&str> {
    inputs.iter().map(|(s, _)| s.as_str()).collect()
}

fn measured(i: &Input) -> (f64, &str) {
    match i {
        Input::Measured { value, note, since } => {
            assert_eq!(*since, None);
            (*value, note.as_str())
        }
        other => panic!("not measured: {other:?}"),
    }
}

fn unknown(i: &Input) -> &str {
    match i {
        Input::Unknown(r) => r.as_str(),
        other => panic!("not unknown: {other:?}"),
    }
}

/// Every evaluated store is unknown with the query's error.
fn assert_failed_query_is_unknown(name: &str) {
    let d = def(name);
    let o = observations(&d, Err(Unavailable::new("timeout")));
    let inputs = d.inputs(&o);
    assert_eq!(ids(&inputs), ["1", "2", "3"], "{name}");
    for (_, i) in &inputs {
        assert_eq!(unknown(i), "Prometheus query failed: timeout", "{name}");
    }
}

#[test]
fn thread_pool_cpu_names_the_busiest_pool_and_its_threads() {
    let d = def("thread_pool_cpu");
    assert_eq!((d.rule.threshold, d.rule.grace), (0.8, 60.0));
    let pool = |id, pool, threads, v| sample(id, &[("pool", pool), ("threads", threads)], v);
    let o = observations(
        &d,
        Ok(vec![
            pool(1, "apply", "2", 0.5),
            pool(1, "raftstore", "2", 0.93),
            pool(1, "unified_read", "10", 0.3),
            // An idle TiKV v2 (raftstore `rs_*` threads, ≤ 6.1 truncated names alike).
            pool(2, "rs", "2", 0.0),
            pool(2, "sched", "4", 0.0),
            pool(4, "grpc", "5", 0.99),
            pool(5, "grpc", "5", 0.99),
        ]),
    );
    let inputs = d.inputs(&o);
    // TiFlash 4 and Offline 5 have no series; store 3's TiKV is not in Prometheus.
    assert_eq!(ids(&inputs), ["1", "2", "3"]);
    assert_eq!(
        measured(&inputs[0].1),
        (0.93, "raftstore at 93% of 2 threads")
    );
    let (idle, note) = measured(&inputs[1].1);
    assert_eq!(idle, 0.0);
    assert!(
        note == "raftstore at 0% of 2 threads" || note == "scheduler at 0% of 4 threads",
        "{note}"
    );
    assert_eq!(
        unknown(&inputs[2].1),
        "no sample maps to this store (address tikv-3:20160, status address tikv-3:20180)"
    );
    let mut e = Engine::new();
    let st = e.evaluate(&d.rule, "1", inputs[0].1.clone(), T0);
    assert_eq!(st.phase, Phase::Pending);
    assert_eq!(
        &*st.message,
        "0.9300 > 0.8000 (violated); raftstore at 93% of 2 threads"
    );
    let later = e.evaluate(&d.rule, "1", inputs[0].1.clone(), T0 + 61.0);
    assert_eq!(later.phase, Phase::Firing);
    assert_failed_query_is_unknown("thread_pool_cpu");
}

#[test]
fn pool_names_come_from_the_fixed_list() {
    let names: Vec<String> = [
        Some("raftstore"),
        Some("rs"),
        Some("apply"),
        Some("sched"),
        Some("grpc"),
        Some("unified_read"),
        Some("my\npool"),
        None,
    ]
    .into_iter()
    .map(pool_name)
    .collect();
    assert_eq!(
        names,
        [
            "raftstore",
            "raftstore",
            "apply",
            "scheduler",
            "gRPC",
            "unified read pool",
            "pool mypool",
            "the busiest pool"
        ]
    );
    // One thread, no thread count, NaN only.
    let one = [sample(1, &[("pool", "grpc"), ("threads", "1")], 0.5)];
    assert_eq!(
        measured(&busiest_pool(&[&one[0]])).1,
        "gRPC at 50% of 1 thread"
    );
    let bare = [sample(1, &[], 0.25)];
    assert_eq!(
        measured(&busiest_pool(&[&bare[0]])).1,
        "the busiest pool at 25%"
    );
    let nan = [sample(1, &[("pool", "apply")], f64::NAN)];
    assert_eq!(
        unknown(&busiest_pool(&[&nan[0]])),
        "query returned NaN (no data in the window)"
    );
}

#[test]
fn write_flow_control_names_the_signals_and_idle_is_zero() {
    let d = def("write_flow_control");
    assert_eq!((d.rule.threshold, d.rule.grace), (0.0, 60.0));
    let signal = |id, s, v| sample(id, &[("signal", s)], v);
    let o = observations(
        &d,
        Ok(vec![
            signal(1, "discard_ratio", 0.25),
            signal(1, "throttled", 0.0),
            signal(1, "too_busy", 2.5),
            signal(1, "channel_full", 0.0),
            signal(1, "raft_write_stall", 0.0),
            // Idle: the gauges exist at 0, the counters TiKV registers on first use do not.
            signal(2, "discard_ratio", 0.0),
            signal(2, "raft_write_stall", 0.0),
        ]),
    );
    let inputs = d.inputs(&o);
    assert_eq!(ids(&inputs), ["1", "2", "3"]);
    assert_eq!(
        measured(&inputs[0].1),
        (
            2.5,
            "flow control drops 25.0% of writes; 2.50 ServerIsBusy/s (scheduler too busy)"
        )
    );
    assert_eq!(
        measured(&inputs[1].1),
        (
            0.0,
            "no flow control, ServerIsBusy, channel-full or raft write stall"
        )
    );
    // No signal at all: the TiKV is not in Prometheus (every TiKV >= 5.2 exports the gauges).
    assert!(unknown(&inputs[2].1).starts_with("no sample maps to this store"));
    let mut e = Engine::new();
    assert_eq!(
        e.evaluate(&d.rule, "2", inputs[1].1.clone(), T0).phase,
        Phase::Ok
    );
    // The other signals' wording.
    let texts: Vec<String> = [
        signal(1, "throttled", 12.0),
        signal(1, "channel_full", 0.5),
        signal(1, "raft_write_stall", 15000.0),
    ]
    .iter()
    .map(signal_text)
    .collect();
    assert_eq!(
        texts,
        [
            "flow control delays 12.00 writes/s",
            "0.50 channel-full/s (raftstore or apply mailbox)",
            "raft RocksDB write stall up to 15000µs"
        ]
    );
    assert_failed_query_is_unknown("write_flow_control");
}

#[test]
fn memory_usage_has_no_series_without_a_quota_metric() {
    let d = def("memory_usage");
    assert_eq!((d.rule.threshold, d.rule.grace), (0.8, 60.0));
    let o = observations(
        &d,
        Ok(vec![
            sample(1, &[], 0.85),
            // TiKV < 8.0: scraped (it exports the CPU quota) but no memory quota.
            sample(2, &[("quota", "none")], 0.0),
        ]),
    );
    let inputs = d.inputs(&o);
    assert_eq!(ids(&inputs), ["1", "3"]);
    assert!(matches!(inputs[0].1, Input::Value(v) if v == 0.85));
    assert!(unknown(&inputs[1].1).starts_with("no sample maps to this store"));
    assert_failed_query_is_unknown("memory_usage");
}

#[test]
fn read_latency_p99_reads_the_read_types_and_idle_is_zero() {
    let d = def("read_latency_p99");
    let q = d.query().unwrap();
    for t in [
        "kv_get",
        "kv_batch_get_command",
        "raw_batch_get_command",
        "raw_scan",
    ] {
        assert!(q.contains(t), "{t} in {q}");
    }
    assert!(
        !q.contains("coprocessor") && !q.contains("kv_prewrite"),
        "{q}"
    );
    // The idle branch, as for writes.
    assert!(q.contains(" or on (instance, "), "{q}");
    let o = observations(&d, Ok(vec![sample(1, &[], 0.25), sample(2, &[], 0.0)]));
    let inputs = d.inputs(&o);
    assert_eq!(ids(&inputs), ["1", "2", "3"]);
    assert!(matches!(inputs[0].1, Input::Value(v) if v == 0.25));
    assert!(matches!(inputs[1].1, Input::Value(v) if v == 0.0));
    assert!(matches!(inputs[2].1, Input::Unknown(_)));
    assert_failed_query_is_unknown("read_latency_p99");
}
