//! The JSON of `/api/v1/stores` and `/api/v1/cluster`, built from the published snapshot alone
//! (a request never waits on PD). Field names carry their units (`_bytes`, `_seconds`,
//! `_per_second`); what is not known is `null` with the reason in the `*_unavailable` field
//! beside it, never 0. The README documents both shapes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::metrics::STORE_STATES;
use crate::domain::HotFlow;
use crate::invariants::engine::Phase;
use crate::snapshot::{InvariantView, Snapshot, StoreView};

/// The `pd:metrics` source (the PD leader's `/metrics`).
const METRICS_SOURCE: &str = "pd:metrics";

/// `GET /api/v1/stores`.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct StoresReply<'a> {
    /// When the snapshot was taken (Unix seconds).
    taken_at_seconds: f64,
    /// Why the list is PD's last good one rather than this poll's (`null`: it is fresh).
    pd_unavailable: Option<&'a str>,
    /// Every store PD lists, by id.
    stores: Vec<StoreJson<'a>>,
}

/// One store of `/api/v1/stores`.
#[derive(Debug, PartialEq, Serialize)]
struct StoreJson<'a> {
    id: &'a str,
    address: &'a str,
    status_address: &'a str,
    state: &'a str,
    engine: &'a str,
    version: &'a str,
    capacity_bytes: Option<u64>,
    available_bytes: Option<u64>,
    leaders: Option<u64>,
    regions: Option<u64>,
    slow_score: Option<f64>,
    last_heartbeat_timestamp_seconds: Option<f64>,
    start_timestamp_seconds: Option<f64>,
    hot_write: Option<HotFlow>,
    hot_read: Option<HotFlow>,
    hot_unavailable: Option<&'a str>,
    invariants: Vec<StoreInvariant<'a>>,
}

/// One invariant of a store, as `/api/v1/stores` summarises it (`/api/v1/invariants` has all).
#[derive(Debug, PartialEq, Serialize)]
struct StoreInvariant<'a> {
    name: &'a str,
    severity: &'static str,
    state: &'static str,
    unknown: bool,
    value: Option<f64>,
    message: &'a str,
}

/// The last error of `source` while it is down (`None` while it is up or unknown here).
fn source_down<'a>(snap: &'a Snapshot, source: &str) -> Option<&'a str> {
    let h = snap.sources.get(source)?;
    if h.up {
        return None;
    }
    Some(h.last_error.as_deref().unwrap_or("not read yet"))
}

/// Builds `/api/v1/stores` from `snap`.
pub(crate) fn stores(snap: &Snapshot) -> StoresReply<'_> {
    let hot_unavailable = snap.pd_cluster.hotspot_unavailable.as_deref();
    StoresReply {
        taken_at_seconds: snap.taken_at,
        pd_unavailable: source_down(snap, "pd"),
        stores: snap
            .stores
            .iter()
            .map(|s| store(s, &snap.invariants, hot_unavailable))
            .collect(),
    }
}

fn store<'a>(
    s: &'a StoreView,
    invariants: &'a [InvariantView],
    hot_unavailable: Option<&'a str>,
) -> StoreJson<'a> {
    StoreJson {
        id: &s.id,
        address: &s.address,
        status_address: &s.status_address,
        state: &s.state,
        engine: &s.engine,
        version: &s.version,
        capacity_bytes: s.capacity_bytes,
        available_bytes: s.available_bytes,
        leaders: s.leader_count,
        regions: s.region_count,
        slow_score: s.slow_score,
        last_heartbeat_timestamp_seconds: s.last_heartbeat,
        start_timestamp_seconds: s.start_timestamp,
        hot_write: s.hot_write,
        hot_read: s.hot_read,
        hot_unavailable: if s.hot_write.is_some() {
            None
        } else {
            hot_unavailable.or(Some("not read"))
        },
        invariants: invariants
            .iter()
            .filter(|i| i.store == s.id)
            .map(|i| StoreInvariant {
                name: &i.name,
                severity: i.severity.as_str(),
                state: i.state.as_str(),
                unknown: i.unknown,
                value: i.value,
                message: &i.message,
            })
            .collect(),
    }
}

/// `GET /api/v1/cluster`.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct ClusterReply<'a> {
    taken_at_seconds: f64,
    pd_unavailable: Option<&'a str>,
    stores: StoreCounts<'a>,
    /// Regions with a leader: the sum of the stores' leader counts.
    regions: Option<u64>,
    regions_unavailable: Option<&'static str>,
    leaders: Option<LeaderSpread>,
    leaders_unavailable: Option<&'static str>,
    pd: PdJson<'a>,
    region_health: Option<BTreeMap<&'static str, f64>>,
    region_health_unavailable: Option<&'a str>,
    gc_safepoint: Option<Age>,
    gc_safepoint_unavailable: Option<&'a str>,
    min_resolved_ts: Option<Age>,
    min_resolved_ts_unavailable: Option<&'a str>,
    invariants: InvariantCounts,
    /// Every polled source whose last attempt failed, with its error: values read from it
    /// above are its last good reading.
    sources_down: BTreeMap<&'a str, &'a str>,
}

/// Stores by PD state.
#[derive(Debug, PartialEq, Serialize)]
struct StoreCounts<'a> {
    total: usize,
    /// Every state of `tikv_store_state` (0 included), and any other state PD reported.
    by_state: BTreeMap<&'a str, usize>,
}

/// How leaders spread over the Up TiKV stores.
#[derive(Debug, PartialEq, Serialize)]
struct LeaderSpread {
    stores: usize,
    min: u64,
    max: u64,
    mean: f64,
    /// Population standard deviation.
    stddev: f64,
    /// `max / min`; `null` when a store has no leader.
    max_min_ratio: Option<f64>,
}

/// The PD leader.
#[derive(Debug, PartialEq, Serialize)]
struct PdJson<'a> {
    leader: Option<&'a str>,
    leader_unavailable: Option<&'a str>,
    /// PD leader changes seen since the exporter started.
    leader_changes: u64,
}

/// A point in the cluster's history: its wall time and how old it is.
#[derive(Debug, PartialEq, Serialize)]
struct Age {
    timestamp_seconds: f64,
    age_seconds: f64,
}

/// Evaluated (invariant, store) series by phase; `unknown` counts those whose inputs are
/// missing (whatever their phase).
#[derive(Debug, Default, PartialEq, Serialize)]
struct InvariantCounts {
    ok: usize,
    pending: usize,
    firing: usize,
    unknown: usize,
}

/// Builds `/api/v1/cluster` from `snap`; ages are taken at `now` (Unix seconds).
pub(crate) fn cluster(snap: &Snapshot, now: f64) -> ClusterReply<'_> {
    let mut by_state: BTreeMap<&str, usize> = STORE_STATES.iter().map(|s| (*s, 0)).collect();
    for s in &snap.stores {
        *by_state.entry(s.state.as_str()).or_default() += 1;
    }
    let leader_counts: Vec<u64> = snap.stores.iter().filter_map(|s| s.leader_count).collect();
    let regions = (!leader_counts.is_empty()).then(|| leader_counts.iter().sum());
    let leaders = leader_spread(
        snap.stores
            .iter()
            .filter(|s| s.state == "Up" && s.engine == "tikv")
            .filter_map(|s| s.leader_count),
    );
    let metrics_down = source_down(snap, METRICS_SOURCE);
    let pc = &snap.pd_cluster;
    let region_health =
        (!pc.region_status.is_empty()).then(|| pc.region_status.iter().copied().collect());
    let age = |t: f64| Age {
        timestamp_seconds: t,
        age_seconds: (now - t).max(0.0),
    };
    let resolved = pc
        .min_resolved_ts
        .iter()
        .find(|(store, _)| store.is_empty())
        .map(|(_, t)| age(*t));
    let mut invariants = InvariantCounts::default();
    for i in &snap.invariants {
        match i.state {
            Phase::Ok => invariants.ok += 1,
            Phase::Pending => invariants.pending += 1,
            Phase::Firing => invariants.firing += 1,
        }
        invariants.unknown += usize::from(i.unknown);
    }
    ClusterReply {
        taken_at_seconds: snap.taken_at,
        pd_unavailable: source_down(snap, "pd"),
        stores: StoreCounts {
            total: snap.stores.len(),
            by_state,
        },
        regions,
        regions_unavailable: regions
            .is_none()
            .then_some("no store with a leader count from PD"),
        leaders_unavailable: leaders
            .is_none()
            .then_some("no Up TiKV store with a leader count from PD"),
        leaders,
        pd: PdJson {
            leader: snap.pd_leader.as_deref(),
            leader_unavailable: snap.pd_leader_unavailable.as_deref(),
            leader_changes: snap.pd_leader_changes,
        },
        region_health_unavailable: region_health.is_none().then(|| {
            metrics_down.unwrap_or("the PD leader's /metrics has no pd_regions_status (yet)")
        }),
        region_health,
        gc_safepoint_unavailable: pc.gc_safepoint.is_none().then(|| {
            source_down(snap, "pd:gc_safepoint")
                .unwrap_or("GC has not run (safe point 0), or PD < v5.0 has no /gc/safepoint")
        }),
        gc_safepoint: pc.gc_safepoint.map(age),
        min_resolved_ts_unavailable: resolved.is_none().then(|| {
            source_down(snap, "pd:min_resolved_ts").unwrap_or(
                "no real-time min resolved ts (PD < v6.0, persistence off, or not initialized)",
            )
        }),
        min_resolved_ts: resolved,
        invariants,
        sources_down: snap
            .sources
            .keys()
            .filter_map(|name| Some((name.as_str(), source_down(snap, name)?)))
            .collect(),
    }
}

fn leader_spread(counts: impl Iterator<Item = u64>) -> Option<LeaderSpread> {
    let counts: Vec<u64> = counts.collect();
    let min = *counts.iter().min()?;
    let max = *counts.iter().max()?;
    let n = counts.len() as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    let var = counts
        .iter()
        .map(|&c| (c as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    Some(LeaderSpread {
        stores: counts.len(),
        min,
        max,
        mean,
        stddev: var.sqrt(),
        max_min_ratio: (min > 0).then(|| max as f64 / min as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Op, Severity};
    use crate::snapshot::{PdClusterView, SourceHealth};
    use serde_json::json;

    fn store(id: u64, state: &str, engine: &str, leaders: Option<u64>) -> StoreView {
        StoreView {
            id: id.to_string(),
            address: format!("tikv-{id}:20160"),
            status_address: format!("tikv-{id}:20180"),
            version: "8.5.4".into(),
            engine: engine.into(),
            state: state.into(),
            last_heartbeat: Some(1_700_000_000.0),
            leader_count: leaders,
            region_count: leaders.map(|l| l * 3),
            capacity_bytes: Some(100 << 30),
            available_bytes: Some(40 << 30),
            slow_score: Some(1.0),
            start_timestamp: Some(1_699_990_000.0),
            hot_write: None,
            hot_read: None,
        }
    }

    fn invariant(name: &str, store: &str, state: Phase, unknown: bool) -> InvariantView {
        InvariantView {
            name: name.into(),
            store: store.into(),
            severity: Severity::Warning,
            state,
            unknown,
            since: None,
            value: Some(2.0),
            op: Op::Gt,
            threshold: 1.0,
            clear_threshold: None,
            grace_seconds: 60.0,
            message: "m".into(),
            description: "".into(),
        }
    }

    fn snapshot() -> Snapshot {
        let mut s1 = store(1, "Up", "tikv", Some(100));
        s1.hot_write = Some(HotFlow {
            regions: 2.0,
            bytes_per_second: 1024.0,
            keys_per_second: 8.0,
        });
        s1.hot_read = Some(HotFlow::default());
        Snapshot {
            invariants: vec![
                invariant("store_down", "1", Phase::Firing, false),
                invariant("store_down", "2", Phase::Ok, true),
                invariant("gc_safepoint_lag", "", Phase::Pending, false),
            ],
            stores: vec![
                s1,
                store(2, "Up", "tikv", Some(50)),
                store(3, "Disconnected", "tikv", Some(200)),
                store(20, "Up", "tiflash", Some(0)),
            ],
            sources: [
                (
                    "pd".to_owned(),
                    SourceHealth {
                        up: true,
                        ..SourceHealth::default()
                    },
                ),
                (
                    "pd:gc_safepoint".to_owned(),
                    SourceHealth {
                        up: false,
                        last_error: Some("HTTP 500".into()),
                        ..SourceHealth::default()
                    },
                ),
            ]
            .into(),
            taken_at: 1_700_000_000.0,
            pd_leader: Some("pd-0".into()),
            pd_leader_changes: 2,
            pd_cluster: PdClusterView {
                region_status: vec![("down-peer-region-count", 3.0)],
                min_resolved_ts: vec![(String::new(), 1_699_999_998.0), ("1".into(), 1.0)],
                hotspot_unavailable: None,
                ..PdClusterView::default()
            },
            ..Snapshot::default()
        }
    }

    #[test]
    fn stores_have_every_field_with_units_and_null_with_a_reason_when_unknown() {
        let mut snap = snapshot();
        snap.pd_cluster.hotspot_unavailable = Some("the PD leader's /metrics failed: x".into());
        let v = serde_json::to_value(stores(&snap)).unwrap();
        assert_eq!(v["pd_unavailable"], json!(null));
        assert_eq!(v["stores"].as_array().unwrap().len(), 4);
        assert_eq!(
            v["stores"][0],
            json!({
                "id": "1", "address": "tikv-1:20160", "status_address": "tikv-1:20180",
                "state": "Up", "engine": "tikv", "version": "8.5.4",
                "capacity_bytes": 107374182400u64, "available_bytes": 42949672960u64,
                "leaders": 100, "regions": 300, "slow_score": 1.0,
                "last_heartbeat_timestamp_seconds": 1.7e9,
                "start_timestamp_seconds": 1_699_990_000.0,
                "hot_write": {"regions": 2.0, "bytes_per_second": 1024.0, "keys_per_second": 8.0},
                "hot_read": {"regions": 0.0, "bytes_per_second": 0.0, "keys_per_second": 0.0},
                "hot_unavailable": null,
                "invariants": [{"name": "store_down", "severity": "warning", "state": "firing",
                                "unknown": false, "value": 2.0, "message": "m"}]
            })
        );
        let s2 = &v["stores"][1];
        assert_eq!(s2["hot_write"], json!(null));
        assert_eq!(
            s2["hot_unavailable"],
            json!("the PD leader's /metrics failed: x")
        );
        assert_eq!(s2["invariants"][0]["unknown"], json!(true));
        // PD down: the last good list, and why.
        snap.sources.get_mut("pd").unwrap().up = false;
        snap.sources.get_mut("pd").unwrap().last_error = Some("connection refused".into());
        let v = serde_json::to_value(stores(&snap)).unwrap();
        assert_eq!(v["pd_unavailable"], json!("connection refused"));
    }

    #[test]
    fn the_cluster_summary_counts_states_spreads_leaders_and_ages_the_history() {
        let v = serde_json::to_value(cluster(&snapshot(), 1_700_000_010.0)).unwrap();
        assert_eq!(
            v,
            json!({
                "taken_at_seconds": 1.7e9,
                "pd_unavailable": null,
                "stores": {"total": 4, "by_state": {"Up": 3, "Offline": 0, "Disconnected": 1,
                           "Down": 0, "Tombstone": 0}},
                "regions": 350, "regions_unavailable": null,
                // Up TiKV stores only: 100 and 50.
                "leaders": {"stores": 2, "min": 50, "max": 100, "mean": 75.0, "stddev": 25.0,
                            "max_min_ratio": 2.0},
                "leaders_unavailable": null,
                "pd": {"leader": "pd-0", "leader_unavailable": null, "leader_changes": 2},
                "region_health": {"down-peer-region-count": 3.0},
                "region_health_unavailable": null,
                "gc_safepoint": null, "gc_safepoint_unavailable": "HTTP 500",
                "min_resolved_ts": {"timestamp_seconds": 1_699_999_998.0, "age_seconds": 12.0},
                "min_resolved_ts_unavailable": null,
                "invariants": {"ok": 1, "pending": 1, "firing": 1, "unknown": 1},
                "sources_down": {"pd:gc_safepoint": "HTTP 500"}
            })
        );
    }

    #[test]
    fn an_empty_snapshot_is_all_null_with_reasons_never_zero() {
        let snap = Snapshot {
            pd_leader_unavailable: Some("PD has no leader".into()),
            ..Snapshot::default()
        };
        let v = serde_json::to_value(cluster(&snap, 0.0)).unwrap();
        for (field, reason) in [
            ("regions", "no store with a leader count from PD"),
            ("leaders", "no Up TiKV store with a leader count from PD"),
            (
                "region_health",
                "the PD leader's /metrics has no pd_regions_status (yet)",
            ),
        ] {
            assert_eq!(v[field], json!(null), "{field}");
            assert_eq!(v[format!("{field}_unavailable")], json!(reason), "{field}");
        }
        assert_eq!(v["pd"]["leader"], json!(null));
        assert_eq!(v["pd"]["leader_unavailable"], json!("PD has no leader"));
        assert!(v["gc_safepoint_unavailable"].is_string());
        assert!(v["min_resolved_ts_unavailable"].is_string());
        // A store without leaders makes the ratio unknown, not infinite.
        let s = leader_spread([0, 10].into_iter()).unwrap();
        assert_eq!((s.max_min_ratio, s.mean, s.stddev), (None, 5.0, 5.0));
    }
}
