//! The fake PD's cluster-wide state and the shapes it is served in: each member's own
//! `/metrics` (cluster-signals.md §8: `pd_regions_status` as `pkg/statistics/
//! region_collection.go` sets it, the role gauges of `pkg/member/metrics.go` and etcd's
//! `etcd_server_is_leader`, WAL fsync histogram with `ExponentialBuckets(0.001, 2, 14)`, db size
//! and quota), `/gc/safepoint` (§3, `server/api/service_gc_safepoint.go`) and
//! `/min-resolved-ts` (§4, `server/api/min_resolved_ts.go`), in the form of the configured
//! [`PdVersion`]: PD v4.0 serves neither endpoint (404) and has no `service_member_role`; v6.1
//! (6.0–7.1) serves `/min-resolved-ts` without the per-store map and with persistence off (its
//! default before v6.3: `persist_interval` `0s`, `is_real_time` omitted); from v7.1 followers
//! export the region counts as zeros, before that not at all.
//!
//! Times are kept as ages and turned into TSOs at each request, so a healthy fake stays
//! healthy however long a test runs.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{PdVersion, now_ns};

/// `ExponentialBuckets(0.001, 2, 14)`: etcd's WAL fsync buckets, 1 ms … 8.192 s.
pub const FSYNC_BUCKETS: usize = 14;

fn fsync_bound(k: usize) -> f64 {
    0.001 * 2f64.powi(k as i32)
}

/// A TSO for `age` ago (physical milliseconds << 18).
pub fn tso_ago(age: Duration) -> u64 {
    let ms = (now_ns() / 1_000_000).saturating_sub(age.as_millis() as u64);
    ms << 18
}

/// One service safe point: id, expiry in seconds from now (`None`: never, `i64::MAX`;
/// negative: expired, still listed), age of its TSO.
#[derive(Clone, Debug)]
pub struct ServiceSafePoint {
    pub service_id: String,
    pub expires_in_secs: Option<i64>,
    pub age: Duration,
}

/// What the fake PD cluster says about itself beyond its stores.
#[derive(Clone, Debug)]
pub struct Coverage {
    /// `pd_regions_status` by type, as the leader counts them.
    pub regions: Vec<(String, f64)>,
    /// Cumulative WAL fsync observations per bucket (the last one is +Inf).
    pub fsync: [f64; FSYNC_BUCKETS + 1],
    pub fsync_sum: f64,
    pub db_size_bytes: f64,
    pub quota_bytes: f64,
    /// `None`: `gc_safe_point` 0 (GC never ran).
    pub gc_age: Option<Duration>,
    pub services: Vec<ServiceSafePoint>,
    /// `None`: `u64::MAX` (cluster not initialized).
    pub resolved_cluster_age: Option<Duration>,
    /// Per store id: `None` is `u64::MAX` (no leader, TiFlash). Stores not listed get the
    /// default: 2 s for Up TiKV stores, `u64::MAX` for TiFlash.
    pub resolved_stores: Vec<(u64, Option<Duration>)>,
    /// `pd-server.min-resolved-ts-persistence-interval`; `None`: the version's default.
    pub persist_interval: Option<&'static str>,
    /// WAL fsyncs (seconds each, how many) added before each `/metrics` answer: a live etcd.
    pub fsync_per_read: (f64, u64),
}

impl Default for Coverage {
    fn default() -> Self {
        let mut c = Coverage {
            regions: [
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
            ]
            .iter()
            .map(|t| ((*t).to_owned(), 0.0))
            .collect(),
            fsync: [0.0; FSYNC_BUCKETS + 1],
            fsync_sum: 0.0,
            db_size_bytes: 213_360_640.0,
            quota_bytes: 8_589_934_592.0,
            gc_age: Some(Duration::from_secs(600)),
            services: vec![ServiceSafePoint {
                service_id: "gc_worker".into(),
                expires_in_secs: None,
                age: Duration::from_secs(600),
            }],
            resolved_cluster_age: Some(Duration::from_secs(2)),
            resolved_stores: Vec::new(),
            persist_interval: None,
            fsync_per_read: (0.002, 10),
        };
        c.observe_fsync(0.002, 1000);
        c
    }
}

impl Coverage {
    /// Adds `n` WAL fsyncs of `seconds` each to the histogram.
    pub fn observe_fsync(&mut self, seconds: f64, n: u64) {
        let k = (0..FSYNC_BUCKETS)
            .find(|&k| seconds <= fsync_bound(k))
            .unwrap_or(FSYNC_BUCKETS);
        for b in &mut self.fsync[k..] {
            *b += n as f64;
        }
        self.fsync_sum += seconds * n as f64;
    }

    /// Advances the WAL fsync histogram by one read's worth (see `fsync_per_read`).
    pub fn tick(&mut self) {
        let (seconds, n) = self.fsync_per_read;
        self.observe_fsync(seconds, n);
    }

    /// Sets a region count (PD's type name); `None` removes the type (a PD version without it).
    pub fn set_region_count(&mut self, ty: &str, n: Option<f64>) {
        self.regions.retain(|(t, _)| t != ty);
        if let Some(n) = n {
            self.regions.push((ty.to_owned(), n));
        }
    }

    /// Member `me`'s `/metrics`: leader-only gauges as PD renders them on the leader and on a
    /// follower of `version`.
    pub fn metrics(&self, version: PdVersion, pd_leader: bool, etcd_leader: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 1234\n");
        out.push_str(&format!(
            "# HELP etcd_server_is_leader Whether or not this member is a leader. 1 if is, 0 otherwise.\n# TYPE etcd_server_is_leader gauge\netcd_server_is_leader {}\n",
            u8::from(etcd_leader)
        ));
        out.push_str(&format!(
            "# TYPE etcd_server_quota_backend_bytes gauge\netcd_server_quota_backend_bytes {:e}\n# TYPE etcd_mvcc_db_total_size_in_bytes gauge\netcd_mvcc_db_total_size_in_bytes {:e}\n",
            self.quota_bytes, self.db_size_bytes
        ));
        out.push_str("# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.\n# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n");
        for k in 0..FSYNC_BUCKETS {
            out.push_str(&format!(
                "etcd_disk_wal_fsync_duration_seconds_bucket{{le=\"{}\"}} {}\n",
                fsync_bound(k),
                self.fsync[k]
            ));
        }
        let total = self.fsync[FSYNC_BUCKETS];
        out.push_str(&format!(
            "etcd_disk_wal_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {total}\netcd_disk_wal_fsync_duration_seconds_sum {}\netcd_disk_wal_fsync_duration_seconds_count {total}\n",
            self.fsync_sum
        ));
        if version >= PdVersion::V8_1_0 {
            out.push_str(&format!(
                "# HELP service_member_role The leader/primary of services\n# TYPE service_member_role gauge\nservice_member_role{{service=\"PD\"}} {}\n",
                u8::from(pd_leader)
            ));
        }
        // v7.1+: the counters exist on every member (zeros after a reset); before: deleted.
        if pd_leader || version >= PdVersion::V8_1_0 {
            out.push_str(
                "# HELP pd_regions_status Status of the regions.\n# TYPE pd_regions_status gauge\n",
            );
            for (t, n) in &self.regions {
                let n = if pd_leader { *n } else { 0.0 };
                out.push_str(&format!("pd_regions_status{{type=\"{t}\"}} {n}\n"));
            }
        }
        if pd_leader {
            out.push_str("# HELP pd_scheduler_store_status Store status for schedule\n# TYPE pd_scheduler_store_status gauge\npd_scheduler_store_status{address=\"tikv-1:20160\",store=\"1\",type=\"leader_count\"} 17\n");
        }
        out
    }

    /// The `/gc/safepoint` body, `None` where `version` lacks the endpoint.
    pub fn gc_safepoint(&self, version: PdVersion) -> Option<String> {
        if version < PdVersion::V6_1_0 {
            return None;
        }
        let now_s = (now_ns() / 1_000_000_000) as i64;
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                json!({
                    "service_id": s.service_id,
                    "expired_at": s.expires_in_secs.map_or(i64::MAX, |d| now_s + d),
                    "safe_point": tso_ago(s.age),
                })
            })
            .collect();
        let gc = self.gc_age.map_or(0, tso_ago);
        let mut body = Map::new();
        body.insert("service_gc_safe_points".into(), Value::Array(services));
        // PD >= v8.0 adds the smallest unexpired service safe point.
        if version >= PdVersion::V8_1_0 {
            let min = self
                .services
                .iter()
                .filter(|s| s.expires_in_secs.is_none_or(|d| d > 0))
                .map(|s| tso_ago(s.age))
                .min();
            if let Some(m) = min {
                body.insert("min_service_gc_safe_point".into(), json!(m));
            }
        }
        body.insert("gc_safe_point".into(), json!(gc));
        Some(serde_json::to_string_pretty(&Value::Object(body)).unwrap() + "\n")
    }

    /// The `/min-resolved-ts?scope=cluster` body for these `/stores` entries, `None` where
    /// `version` lacks the endpoint.
    pub fn min_resolved_ts(&self, version: PdVersion, stores: &[Value]) -> Option<String> {
        if version < PdVersion::V6_1_0 {
            return None;
        }
        let ts = |age: Option<Duration>| age.map_or(u64::MAX, tso_ago);
        let mut body = Map::new();
        if version < PdVersion::V8_1_0 {
            // v6.0–v6.2 default: persistence off, the value never moves from 0.
            let interval = self.persist_interval.unwrap_or("0s");
            if interval != "0s" {
                body.insert("is_real_time".into(), json!(true));
            }
            let v = if interval == "0s" {
                0
            } else {
                ts(self.resolved_cluster_age)
            };
            body.insert("min_resolved_ts".into(), json!(v));
            body.insert("persist_interval".into(), json!(interval));
            return Some(serde_json::to_string_pretty(&Value::Object(body)).unwrap() + "\n");
        }
        let interval = self.persist_interval.unwrap_or("1s");
        if interval != "0s" {
            body.insert("is_real_time".into(), json!(true));
        }
        body.insert(
            "min_resolved_ts".into(),
            json!(ts(self.resolved_cluster_age)),
        );
        body.insert("persist_interval".into(), json!(interval));
        let mut per_store = Map::new();
        for s in stores {
            let Some(id) = s["store"]["id"].as_u64() else {
                continue;
            };
            let tiflash = s["store"]["labels"]
                .as_array()
                .is_some_and(|l| l.iter().any(|kv| kv["value"] == "tiflash"));
            let age = match self.resolved_stores.iter().find(|(i, _)| *i == id) {
                Some((_, age)) => *age,
                None if tiflash || s["store"]["state_name"] != "Up" => None,
                None => Some(Duration::from_secs(2)),
            };
            per_store.insert(id.to_string(), json!(ts(age)));
        }
        body.insert("stores_min_resolved_ts".into(), Value::Object(per_store));
        Some(serde_json::to_string_pretty(&Value::Object(body)).unwrap() + "\n")
    }
}
