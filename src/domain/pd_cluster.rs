//! What PD knows about the cluster as a whole, beyond its stores: region health counts and the
//! embedded etcd's state from the PD leader's own `/metrics`, the GC safe point and the service
//! safe points (`/gc/safepoint`), and the min resolved ts (`/min-resolved-ts`), plus the TSO
//! and histogram arithmetic they need. cluster-signals.md §3, §4, §8.

use std::collections::BTreeMap;

/// The `type` values of PD's `pd_regions_status` gauge this exporter reads, as PD ≥ v3.1 spells
/// them (`pkg/statistics/region_collection.go`; before v3.1 with underscores, which
/// [`region_status_type`] maps to these). The `type` label of `tikv_region_status` takes only
/// these values.
pub const REGION_STATUS_TYPES: [&str; 10] = [
    "miss-peer-region-count",
    "extra-peer-region-count",
    "down-peer-region-count",
    "pending-peer-region-count",
    "offline-peer-region-count",
    "learner-peer-region-count",
    "empty-region-count",
    "oversized-region-count",
    "undersized-region-count",
    "witness-leader-region-count",
];

/// The known `pd_regions_status` type `raw` stands for (`miss_peer_region_count` of PD < v3.1
/// included), or `None` for a type this exporter does not export.
pub fn region_status_type(raw: &str) -> Option<&'static str> {
    REGION_STATUS_TYPES.iter().copied().find(|t| {
        t.len() == raw.len()
            && t.bytes()
                .zip(raw.bytes())
                .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
    })
}

/// Bits of a TSO below the physical milliseconds (`physicalShiftBits`, PD
/// `pkg/utils/tsoutil/tsoutil.go`).
const TSO_PHYSICAL_SHIFT: u32 = 18;

/// The wall time (Unix seconds) of a TSO: its physical part, `tso >> 18` milliseconds.
pub fn tso_unix_seconds(tso: u64) -> f64 {
    (tso >> TSO_PHYSICAL_SHIFT) as f64 / 1000.0
}

/// A TSO for the wall time `unix_seconds` (logical part 0): the inverse of [`tso_unix_seconds`].
pub fn tso_from_unix_seconds(unix_seconds: f64) -> u64 {
    ((unix_seconds * 1000.0).max(0.0) as u64) << TSO_PHYSICAL_SHIFT
}

/// A cumulative Prometheus histogram as scraped: `(le, count)` per bucket in ascending `le`
/// (the last one `+Inf`), and the total count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Upper bound and cumulative count of each bucket, ascending.
    pub buckets: Vec<(f64, f64)>,
    /// Observations in all (`_count`; the `+Inf` bucket when absent).
    pub count: f64,
}

impl Histogram {
    /// What was observed between `earlier` and `self`, or `None` when the two cannot be told
    /// apart as one process' counters (other buckets, or a count that went down: a restart).
    pub fn since(&self, earlier: &Histogram) -> Option<Histogram> {
        if self.buckets.len() != earlier.buckets.len() || self.count < earlier.count {
            return None;
        }
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (&(le, n), &(le0, n0)) in self.buckets.iter().zip(&earlier.buckets) {
            if le != le0 || n < n0 {
                return None;
            }
            buckets.push((le, n - n0));
        }
        Some(Histogram {
            buckets,
            count: self.count - earlier.count,
        })
    }

    /// The `q` quantile as Prometheus' `histogram_quantile` computes it (linear interpolation
    /// inside the bucket, the lowest bucket starting at 0, a quantile in the `+Inf` bucket
    /// reported as the highest finite bound); `None` without observations or buckets.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for (i, &(le, n)) in self.buckets.iter().enumerate() {
            if n >= rank {
                if le.is_infinite() {
                    return Some(if i == 0 { 0.0 } else { self.buckets[i - 1].0 });
                }
                if i == 0 && le <= 0.0 {
                    return Some(le);
                }
                let (start, below) = lower;
                let inside = n - below;
                if inside <= 0.0 {
                    return Some(le);
                }
                return Some(start + (le - start) * (rank - below) / inside);
            }
            lower = (le, n);
        }
        self.buckets.last().map(|b| b.0)
    }
}

/// The parts of the PD leader's `/metrics` the invariants read (cluster-signals.md §8).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PdLeaderMetrics {
    /// `service_member_role{service="PD"}` (PD ≥ v7.5): 1 on the PD leader.
    pub service_member_role: Option<f64>,
    /// `etcd_server_is_leader`: 1 on the etcd leader (every PD version; PD keeps its leader on
    /// the etcd leader).
    pub etcd_is_leader: Option<f64>,
    /// `pd_regions_status` by [`REGION_STATUS_TYPES`] entry; `None` when the family is absent
    /// (a new leader before its first collection; PD < v7.1 deletes it on followers).
    pub region_status: Option<BTreeMap<&'static str, f64>>,
    /// `etcd_disk_wal_fsync_duration_seconds`, cumulative since the member started.
    pub wal_fsync: Option<Histogram>,
    /// `etcd_mvcc_db_total_size_in_bytes`: the size of etcd's bbolt file (what its quota counts).
    pub db_total_size_bytes: Option<f64>,
    /// `etcd_server_quota_backend_bytes`: PD's `quota-backend-bytes` (default 8 GiB).
    pub quota_backend_bytes: Option<f64>,
    /// `pd_cluster_progress`/`_speed`/`_eta{action="removing"}` by store id (PD ≥ v6.1; empty
    /// when no store is being removed or PD is older).
    pub removal: BTreeMap<u64, super::RemovalProgress>,
    /// `pd_hotspot_status` by store id; `None` when the page has no sample of the family at
    /// all (a new leader before its first collection, a PD without it).
    pub hotspot: Option<BTreeMap<u64, StoreHotspot>>,
}

/// One direction of a store's hot traffic, per second (`pd_hotspot_status` `*_as_peer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct HotFlow {
    /// Hot peers on the store (`hot_{write,read}_region_as_peer`).
    pub regions: f64,
    /// Bytes per second summed over those peers (`total_{write,read}_bytes_as_peer`).
    pub bytes_per_second: f64,
    /// Keys per second summed over those peers (`total_{write,read}_keys_as_peer`).
    pub keys_per_second: f64,
}

/// A store's hot write and read traffic as the PD leader's `pd_hotspot_status` gives it
/// (cluster-signals.md §5, §8). The `_as_peer` series are read for both directions: a write is
/// applied by every replica (each store's own write load), a read is counted on the peer that
/// served it (the leader, or a follower under follower/stale read); `_as_leader` would leave
/// out the followers' share. A type PD deleted (the store has no hot peer) reads as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StoreHotspot {
    /// Hot write traffic.
    pub write: HotFlow,
    /// Hot read traffic.
    pub read: HotFlow,
}

impl StoreHotspot {
    /// Takes one `pd_hotspot_status` sample of type `ty`; other types are ignored.
    pub fn set(&mut self, ty: &str, value: f64) {
        let slot = match ty {
            "hot_write_region_as_peer" => &mut self.write.regions,
            "total_write_bytes_as_peer" => &mut self.write.bytes_per_second,
            "total_write_keys_as_peer" => &mut self.write.keys_per_second,
            "hot_read_region_as_peer" => &mut self.read.regions,
            "total_read_bytes_as_peer" => &mut self.read.bytes_per_second,
            "total_read_keys_as_peer" => &mut self.read.keys_per_second,
            _ => return,
        };
        *slot = value;
    }
}

impl PdLeaderMetrics {
    /// Whether the member that served these metrics says it is the PD leader:
    /// `service_member_role{service="PD"}` where PD exports it, else `etcd_server_is_leader`;
    /// `None` when it exports neither.
    pub fn says_leader(&self) -> Option<bool> {
        self.service_member_role
            .or(self.etcd_is_leader)
            .map(|v| v == 1.0)
    }
}

/// One service safe point (`service_gc_safe_points[]` of `/gc/safepoint`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSafePoint {
    /// The service, e.g. `gc_worker` (TiDB), `ticdc-default-<id>`, BR's and Lightning's ids.
    pub service_id: String,
    /// Unix seconds after which PD ignores it (`i64::MAX`: never).
    pub expired_at: i64,
    /// The TSO below which the service needs GC to keep old versions.
    pub safe_point: u64,
}

/// `GET /pd/api/v1/gc/safepoint` (PD ≥ v5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcSafePoints {
    /// `gc_safe_point`: the TSO GC has advanced to; 0 while GC never ran (no TiDB GC worker).
    pub gc_safe_point: u64,
    /// Every service safe point PD holds, expired ones included (PD lists them until removed).
    pub services: Vec<ServiceSafePoint>,
}

impl GcSafePoints {
    /// The unexpired service safe point with the smallest TSO at `now` (Unix seconds): the
    /// service holding GC back the most.
    pub fn oldest_service(&self, now: f64) -> Option<&ServiceSafePoint> {
        self.services
            .iter()
            .filter(|s| s.expired_at as f64 > now)
            .min_by_key(|s| s.safe_point)
    }
}

/// `GET /pd/api/v1/min-resolved-ts?scope=cluster` (PD ≥ v6.0; per store ≥ v7.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MinResolvedTs {
    /// `min_resolved_ts` of the cluster (`u64::MAX` while the cluster is not initialized).
    pub cluster: u64,
    /// `is_real_time`: PD persists the value (`min-resolved-ts-persistence-interval` ≠ 0); when
    /// false the value is frozen and means nothing.
    pub is_real_time: bool,
    /// `stores_min_resolved_ts` (`u64::MAX` for stores without data: TiFlash, no leader,
    /// removed); `None` where PD does not report stores (before v7.2).
    pub stores: Option<BTreeMap<u64, u64>>,
}

/// Whether a min resolved ts carries data: PD reports `u64::MAX` for "none" and 0 before
/// anything was reported.
pub fn resolved_ts_known(ts: u64) -> bool {
    ts != 0 && ts != u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tso_physical_time_is_the_high_bits_in_milliseconds() {
        // cluster-signals.md §3: 434377228242124800 >> 18 = 1657017624825 ms.
        assert_eq!(tso_unix_seconds(434_377_228_242_124_800), 1_657_017_624.825);
        let t = 1_700_000_000.5;
        assert_eq!(tso_unix_seconds(tso_from_unix_seconds(t)), t);
        assert!(resolved_ts_known(1) && !resolved_ts_known(0) && !resolved_ts_known(u64::MAX));
    }

    #[test]
    fn region_types_accept_the_old_underscore_spelling_only_for_known_types() {
        assert_eq!(
            region_status_type("miss_peer_region_count"),
            Some("miss-peer-region-count")
        );
        assert_eq!(
            region_status_type("down-peer-region-count"),
            Some("down-peer-region-count")
        );
        assert_eq!(region_status_type("down-peer-region-count-x"), None);
        assert_eq!(region_status_type("down+peer-region-count"), None);
    }

    fn h(buckets: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
            count: buckets.last().map_or(0.0, |b| b.1),
        }
    }

    #[test]
    fn quantiles_interpolate_as_prometheus_does() {
        // 100 observations: 90 below 1 ms, 10 between 1 ms and 2 ms.
        let x = h(&[(0.001, 90.0), (0.002, 100.0), (f64::INFINITY, 100.0)]);
        let p50 = x.quantile(0.5).unwrap();
        assert!((p50 - 0.001 * 50.0 / 90.0).abs() < 1e-15, "{p50}");
        let p99 = x.quantile(0.99).unwrap();
        assert!((p99 - 0.0019).abs() < 1e-12, "{p99}");
        // In the +Inf bucket: the highest finite bound.
        let slow = h(&[(0.001, 1.0), (8.192, 2.0), (f64::INFINITY, 100.0)]);
        assert_eq!(slow.quantile(0.99), Some(8.192));
        assert_eq!(
            h(&[(0.001, 0.0), (f64::INFINITY, 0.0)]).quantile(0.99),
            None
        );
        assert_eq!(Histogram::default().quantile(0.99), None);
    }

    #[test]
    fn a_window_is_the_difference_of_two_readings_of_one_process() {
        let a = h(&[(0.001, 10.0), (1.0, 20.0), (f64::INFINITY, 20.0)]);
        let b = h(&[(0.001, 10.0), (1.0, 20.0), (f64::INFINITY, 30.0)]);
        let w = b.since(&a).unwrap();
        assert_eq!(w.buckets, [(0.001, 0.0), (1.0, 0.0), (f64::INFINITY, 10.0)]);
        assert_eq!(w.count, 10.0);
        assert_eq!(w.quantile(0.99), Some(1.0));
        // A restart (counts went down) or other buckets: no window.
        assert_eq!(a.since(&b), None);
        assert_eq!(
            h(&[(0.5, 1.0), (f64::INFINITY, 1.0)]).since(&h(&[(0.4, 1.0), (f64::INFINITY, 1.0)])),
            None
        );
    }

    #[test]
    fn the_oldest_unexpired_service_holds_gc() {
        let g = GcSafePoints {
            gc_safe_point: 5,
            services: vec![
                ServiceSafePoint {
                    service_id: "gc_worker".into(),
                    expired_at: i64::MAX,
                    safe_point: 30,
                },
                ServiceSafePoint {
                    service_id: "ticdc-old".into(),
                    expired_at: 100,
                    safe_point: 10,
                },
                ServiceSafePoint {
                    service_id: "br".into(),
                    expired_at: 2000,
                    safe_point: 20,
                },
            ],
        };
        assert_eq!(g.oldest_service(1000.0).unwrap().service_id, "br");
        assert_eq!(g.oldest_service(5000.0).unwrap().service_id, "gc_worker");
        assert!(GcSafePoints::default().oldest_service(0.0).is_none());
    }
}
