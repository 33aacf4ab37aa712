//! The published state: an immutable snapshot of what the last poll found, rebuilt after each
//! poll. Scrapes and API calls read it; they never wait on PD or Prometheus.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::domain::{HotFlow, Op, Severity};
use crate::invariants::engine::Phase;

/// One evaluated (invariant, store).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InvariantView {
    /// Invariant name.
    pub name: Arc<str>,
    /// Store id, `""` for cluster-wide invariants.
    pub store: String,
    /// Severity label.
    pub severity: Severity,
    /// ok / pending / firing (kept while unknown).
    pub state: Phase,
    /// Inputs missing at the last evaluation.
    pub unknown: bool,
    /// When the current violation started (Unix seconds).
    pub since: Option<f64>,
    /// Last compared value (`null` in JSON for NaN/±Inf).
    pub value: Option<f64>,
    /// The comparison that means violated.
    pub op: Op,
    /// Its threshold.
    pub threshold: f64,
    /// Hysteresis threshold, if any.
    pub clear_threshold: Option<f64>,
    /// Grace period in seconds.
    pub grace_seconds: f64,
    /// Why it is in this state.
    pub message: Arc<str>,
    /// What the invariant checks.
    pub description: Arc<str>,
}

/// One PD store as last seen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoreView {
    /// Store id.
    pub id: String,
    /// Store (gRPC) address.
    pub address: String,
    /// Status address (`instance` of its metrics).
    pub status_address: String,
    /// TiKV/TiFlash version.
    pub version: String,
    /// `tikv` or the `engine` label (e.g. `tiflash`).
    pub engine: String,
    /// PD `state_name`.
    pub state: String,
    /// Last heartbeat (Unix seconds).
    pub last_heartbeat: Option<f64>,
    /// Leaders on the store.
    pub leader_count: Option<u64>,
    /// Regions on the store.
    pub region_count: Option<u64>,
    /// Capacity in bytes.
    pub capacity_bytes: Option<u64>,
    /// Available bytes.
    pub available_bytes: Option<u64>,
    /// PD slow score.
    pub slow_score: Option<f64>,
    /// When the store's process started (Unix seconds, TiKV's clock).
    pub start_timestamp: Option<f64>,
    /// Hot write traffic (PD leader's `pd_hotspot_status`); `None` when it was not read this
    /// health interval (see [`PdClusterView::hotspot_unavailable`]).
    pub hot_write: Option<HotFlow>,
    /// Hot read traffic, as `hot_write`.
    pub hot_read: Option<HotFlow>,
}

/// PD's cluster-wide state as last read (kept while its source fails), for the gauges.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PdClusterView {
    /// `pd_regions_status` of the PD leader, by type (PD's spelling).
    pub region_status: Vec<(&'static str, f64)>,
    /// The GC safe point's wall time (Unix seconds), when GC has run.
    pub gc_safepoint: Option<f64>,
    /// The min resolved ts's wall time (Unix seconds): `""` for the cluster, then per store id.
    pub min_resolved_ts: Vec<(String, f64)>,
    /// Why the stores have no hot traffic (`None` when they have it).
    pub hotspot_unavailable: Option<String>,
}

/// Health of one polled source.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceHealth {
    /// The last attempt succeeded.
    pub up: bool,
    /// Time of the last success (Unix seconds).
    pub last_success: Option<f64>,
    /// Duration of the last attempt in seconds.
    pub last_duration: Option<f64>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The samples of one store-scoped Prometheus invariant that mapped to no PD store.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UnmappedView {
    /// How many, in the last result.
    pub samples: u64,
    /// The label set of one of them (`{instance="...", ...}`).
    pub example: Option<String>,
}

/// What happened to the state file (when one is configured).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StateFileHealth {
    /// State files found unusable at start (set aside, or unreadable).
    pub corrupt: u64,
    /// Writes that failed (`ENOSPC`, permissions, ...).
    pub write_failures: u64,
}

/// Everything one poll produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Every evaluated invariant, sorted by (name, store).
    pub invariants: Vec<InvariantView>,
    /// Stores from the last good PD answer (Tombstone removed).
    pub stores: Vec<StoreView>,
    /// `pd`, `prometheus`.
    pub sources: BTreeMap<String, SourceHealth>,
    /// When the snapshot was built (Unix seconds).
    pub taken_at: f64,
    /// PD's `max-store-down-time` in seconds, when read.
    pub max_store_down_time: Option<f64>,
    /// PD leader changes seen across polls since the exporter started.
    pub pd_leader_changes: u64,
    /// Unmapped samples per store-scoped Prometheus invariant (those whose query answered).
    pub unmapped: BTreeMap<String, UnmappedView>,
    /// `/stores` entries rejected in the last reply, by reason (`invalid_id`, ...).
    pub rejected_stores: BTreeMap<String, u64>,
    /// The state file's counters; `None` without a state file.
    pub state_file: Option<StateFileHealth>,
    /// PD's cluster-wide state (region counts, GC safe point, min resolved ts).
    pub pd_cluster: PdClusterView,
    /// The PD leader's name, as PD's members last said (`None`: see `pd_leader_unavailable`).
    pub pd_leader: Option<String>,
    /// Why the PD leader is not known (`None` when it is).
    pub pd_leader_unavailable: Option<String>,
}

/// The latest snapshot, replaced after every poll; read by scrapes and API calls.
#[derive(Debug, Default)]
pub struct Published {
    snapshot: RwLock<Arc<Snapshot>>,
    ready: AtomicBool,
}

impl Published {
    /// Empty (not ready).
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the snapshot and marks the exporter ready (the first poll has finished).
    pub fn publish(&self, s: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Serves `s` before the first poll has finished (not ready yet): what a restart
    /// restored from the state file.
    pub fn preload(&self, s: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True once the first poll has been published.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
