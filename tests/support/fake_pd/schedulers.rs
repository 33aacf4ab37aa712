//! The fake PD's schedulers and scale-in progress, in the shapes of cluster-signals.md §6/§7:
//! `GET /pd/api/v1/schedulers` (a JSON array of names in random order: `server/api/
//! scheduler.go` iterates a map; the fake rotates the list on every answer), the evict-leader
//! list (`{"store-id-ranges": {"<id>": [{"end-key": "", "start-key": ""}]}}`, `"batch"` from
//! v8.3, so in [`PdVersion::V8_5_5`]; Go's `ServeMux` `404 page not found` when the scheduler
//! does not run; PD v3.0's per-store `evict-leader-scheduler-<id>` names with no list on
//! request), and the evict-slow-store list (`not implements` ≤ v7.5 = [`PdVersion::V6_1_0`] and
//! older, `evict-stores` always `null` v7.6–v8.5.4 = [`PdVersion::V8_1_0`]/[`PdVersion::V8_1_1`],
//! the real list from [`PdVersion::V8_5_5`]; the scheduler runs by default from v7.6). PD's
//! `pd_cluster_progress`/`_speed`/`_eta{address,store,action}` (PD ≥ v6.1) on the leader's page.

use serde_json::{Value, json};

use super::PdVersion;

/// A store's removal progress as PD exports it.
#[derive(Clone, Copy, Debug)]
pub struct Removal {
    pub store: u64,
    pub progress: f64,
    /// MiB/s; 0 makes the ETA `MaxFloat64`, as PD does.
    pub speed: f64,
    pub eta: f64,
}

/// Which leader-evicting schedulers run and whom they target.
#[derive(Clone, Debug, Default)]
pub struct Schedulers {
    /// evict-leader's targets; the scheduler runs while there is one.
    pub evict_leader: Vec<u64>,
    /// Name evict-leader as PD v3.0 did (one `evict-leader-scheduler-<id>` per store).
    pub v30_names: bool,
    /// Whether evict-slow-store runs; `None`: the version's default (on from v7.6).
    pub evict_slow_store: Option<bool>,
    /// The stores evict-slow-store evicts (listed only from v8.5.5).
    pub evicted_slow: Vec<u64>,
    /// Removal progress on the leader's `/metrics`.
    pub removals: Vec<Removal>,
}

impl Schedulers {
    fn slow_store_runs(&self, version: PdVersion) -> bool {
        self.evict_slow_store
            .unwrap_or(version >= PdVersion::V8_1_0)
    }

    /// The `/schedulers` body; `turn` rotates the names (PD's order is random).
    pub fn names(&self, version: PdVersion, turn: usize) -> String {
        let mut names: Vec<String> = [
            "balance-hot-region-scheduler",
            "balance-leader-scheduler",
            "balance-region-scheduler",
        ]
        .map(str::to_owned)
        .into();
        if self.v30_names {
            names.extend(
                self.evict_leader
                    .iter()
                    .map(|id| format!("evict-leader-scheduler-{id}")),
            );
        } else if !self.evict_leader.is_empty() {
            names.push("evict-leader-scheduler".into());
        }
        if self.slow_store_runs(version) {
            names.push("evict-slow-store-scheduler".into());
        }
        let n = names.len();
        names.rotate_left(turn % n);
        serde_json::to_string_pretty(&names).unwrap() + "\n"
    }

    /// The evict-leader list body, `None` (404) when the single scheduler does not run.
    pub fn evict_leader_list(&self, version: PdVersion) -> Option<String> {
        if self.v30_names || self.evict_leader.is_empty() {
            return None;
        }
        let ranges: serde_json::Map<String, Value> = self
            .evict_leader
            .iter()
            .map(|id| (id.to_string(), json!([{"end-key": "", "start-key": ""}])))
            .collect();
        let mut body = json!({ "store-id-ranges": ranges });
        if version >= PdVersion::V8_5_5 {
            body["batch"] = json!(3);
        }
        Some(serde_json::to_string_pretty(&body).unwrap() + "\n")
    }

    /// The evict-slow-store list body and whether it is JSON, `None` (404) when it does not run.
    pub fn evict_slow_store_list(&self, version: PdVersion) -> Option<(String, bool)> {
        if !self.slow_store_runs(version) {
            return None;
        }
        if version < PdVersion::V8_1_0 {
            return Some(("not implements".into(), false));
        }
        let body = if version < PdVersion::V8_5_5 {
            json!({"disabled": false, "recovery-duration": 1800, "evict-stores": null})
        } else {
            json!({"disabled": false, "recovery-duration": 1800, "evict-stores": self.evicted_slow,
                   "enable-network-slow-store": false, "paused-network-slow-stores": null,
                   "evicted-network-slow-stores": null, "batch": 3})
        };
        Some((serde_json::to_string_pretty(&body).unwrap() + "\n", true))
    }

    /// The leader's `pd_cluster_{progress,speed,eta}` lines (PD ≥ v6.1).
    pub fn progress_metrics(&self, version: PdVersion) -> String {
        if version < PdVersion::V6_1_0 || self.removals.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        for (name, help) in [
            (
                "pd_cluster_progress",
                "The progress of corresponding action",
            ),
            ("pd_cluster_speed", "The speed of corresponding action"),
            ("pd_cluster_eta", "The ETA of corresponding action"),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for r in &self.removals {
                let v = match name {
                    "pd_cluster_progress" => r.progress,
                    "pd_cluster_speed" => r.speed,
                    _ if r.speed == 0.0 => f64::MAX,
                    _ => r.eta,
                };
                out.push_str(&format!(
                    "{name}{{action=\"removing\",address=\"tikv-{}:20160\",store=\"{}\"}} {v:e}\n",
                    r.store, r.store
                ));
            }
        }
        out
    }
}
