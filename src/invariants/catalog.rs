//! The built-in invariants, each declared once in [`BUILTINS`]: its name, scope, default
//! severity, comparison, threshold and grace, how its threshold is written, which override keys
//! it accepts, what data it needs and the function that evaluates it. Configuration validation,
//! `check-config` and the documentation-facing listings all read this table; adding an
//! invariant is one entry here plus its evaluator in [`super::evaluate`].

use std::time::Duration;

use super::evaluate::{self, Evaluator};
use crate::domain::{Op, ScheduleConfig, Scope, Severity};

pub use super::queries::*;

/// `pd_etcd`'s default limit on the PD leader's etcd WAL fsync p99, in seconds: PD's own
/// `PD_etcd_write_disk_latency` rule (`metrics/alertmanager/pd.rules.yml`, `> 1`).
pub const WAL_FSYNC_P99_LIMIT: f64 = 1.0;

/// `pd_etcd`'s default limit on etcd's database size as a fraction of `quota-backend-bytes`:
/// PD's own `pd_etcd_quota` rule (`> 0.8`).
pub const DB_QUOTA_RATIO_LIMIT: f64 = 0.8;

/// A default threshold PD itself configures (a configured `threshold` overrides it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdThreshold {
    /// `high-space-ratio` from `/config/schedule`.
    HighSpaceRatio,
    /// `low-space-ratio` from `/config/schedule`.
    LowSpaceRatio,
}

impl PdThreshold {
    /// PD's value, if PD reported a usable one.
    pub fn value(self, schedule: &ScheduleConfig) -> Option<f64> {
        match self {
            PdThreshold::HighSpaceRatio => schedule.high_space_ratio,
            PdThreshold::LowSpaceRatio => schedule.low_space_ratio,
        }
    }
}

/// How an invariant's threshold is written in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdKind {
    /// Seconds.
    Seconds,
    /// A ratio in 0..=1; `threshold_percent` is accepted too (`70` = 0.7).
    Ratio,
    /// A score or count with no unit.
    Number,
}

/// Where an invariant's data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// PD's HTTP API.
    Pd,
    /// A PromQL query over TiKV's metrics (the default text; `query` overrides it). Without
    /// `prometheus.url` the invariant is off, not unknown.
    Prometheus(&'static str),
}

/// Override keys every built-in accepts (`invariants.<name>.<key>`).
pub const COMMON_KEYS: [&str; 4] = ["enabled", "severity", "grace", "clear_grace"];

/// How an invariant's alert is named and worded: the same alert the shipped rules
/// (`alerts/tikv-health-exporter.rules.yml`) define for it, for direct delivery to Alertmanager.
#[derive(Debug)]
pub struct AlertText {
    /// `alertname` (CamelCase, as in the rule file).
    pub name: &'static str,
    /// The `summary` annotation.
    pub summary: &'static str,
    /// The `description` after the subject ("TiKV store 1 (addr:20160)", or "PD"):
    /// `{value}` and `{threshold}` are replaced by the observed value and the threshold,
    /// written in the invariant's unit.
    pub detail: &'static str,
}

impl AlertText {
    /// The `runbook_url` annotation: the anchor of this alert in `alerts/runbook.md`.
    pub fn runbook_url(&self) -> String {
        format!("{RUNBOOK_URL}#{}", self.name.to_ascii_lowercase())
    }
}

/// Where the shipped runbook lives (the rules' `runbook_url` annotations use it too).
pub const RUNBOOK_URL: &str =
    "https://github.com/tikv-health-exporter/tikv-health-exporter/blob/main/alerts/runbook.md";

/// The alert of every invariant without its own (the custom invariants): the rule file's
/// catch-all `TiKVInvariantViolated`.
pub static CUSTOM_ALERT: AlertText = AlertText {
    name: "TiKVInvariantViolated",
    summary: "A TiKV health invariant is violated.",
    detail: "violates the invariant: observed {value} (threshold {threshold}).",
};

/// The alert of the invariant named `name` (a built-in's own, else [`CUSTOM_ALERT`]).
pub fn alert_for(name: &str) -> &'static AlertText {
    find(name).map_or(&CUSTOM_ALERT, |b| &b.alert)
}

/// One built-in invariant.
#[derive(Debug)]
pub struct Builtin {
    /// Name (the `name` label and the key under `invariants`).
    pub name: &'static str,
    /// Per store or cluster-wide.
    pub scope: Scope,
    /// Default severity.
    pub severity: Severity,
    /// Violated when `value op threshold`.
    pub op: Op,
    /// Default threshold (the fallback when it comes from PD and PD does not say).
    pub threshold: f64,
    /// Where PD configures the default threshold, if it does.
    pub pd_threshold: Option<PdThreshold>,
    /// Default grace period.
    pub grace: Duration,
    /// How the threshold is written.
    pub threshold_kind: ThresholdKind,
    /// Override keys accepted besides [`COMMON_KEYS`].
    pub keys: &'static [&'static str],
    /// What it reads.
    pub data: Data,
    /// Turns one round's observations into per-store inputs.
    pub evaluate: Evaluator,
    /// One line for users.
    pub description: &'static str,
    /// Its alert (name and annotations), as the shipped rule file has it.
    pub alert: AlertText,
}

impl Builtin {
    /// Whether `key` may be set under `invariants.<name>`.
    pub fn accepts(&self, key: &str) -> bool {
        COMMON_KEYS.contains(&key) || self.keys.contains(&key)
    }

    /// The default query of a Prometheus-based invariant.
    pub fn default_query(&self) -> Option<&'static str> {
        match self.data {
            Data::Prometheus(q) => Some(q),
            Data::Pd => None,
        }
    }
}

/// Every built-in invariant, in the order they are listed and evaluated.
pub static BUILTINS: [Builtin; 21] = [
    Builtin {
        name: "store_down",
        scope: Scope::Store,
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 60.0,
        pd_threshold: None,
        // A rolling restart (TiUP, TiDB Operator) takes a store away for tens of seconds: the
        // grace counts from when PD marked it Disconnected (20 s after its last heartbeat).
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::store_down,
        description: "the store stopped heartbeating: PD reports it Disconnected (past the grace, counted from 20 s after its last heartbeat) or Down (at once), or its last heartbeat is older than the threshold (seconds) while PD says Up or Offline",
        alert: AlertText {
            name: "TiKVStoreDown",
            summary: "TiKV store is down.",
            detail: "is down: last heartbeat {value} ago (threshold {threshold}).",
        },
    },
    Builtin {
        name: "write_latency_p99",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.1,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold", "query"],
        data: Data::Prometheus(WRITE_LATENCY_P99_TEMPLATE),
        evaluate: evaluate::tikv_query,
        description: "p99 of the gRPC write requests clients wait for (transactional and raw) over 1m, in seconds; 0 when the store served none",
        alert: AlertText {
            name: "TiKVWriteLatencyHigh",
            summary: "TiKV p99 write latency is high.",
            detail: "has a p99 gRPC write latency (prewrite, commit and raw writes, as clients wait for them) of {value} over 1m (threshold {threshold}).",
        },
    },
    Builtin {
        name: "disk_usage",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.7,
        pd_threshold: Some(PdThreshold::HighSpaceRatio),
        grace: Duration::from_secs(300),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::disk_usage,
        description: "used fraction of the store's capacity (1 - available/capacity, from PD) above PD's high-space-ratio, where PD starts to avoid the store",
        alert: AlertText {
            name: "TiKVDiskUsageHigh",
            summary: "TiKV store disk usage is high.",
            detail: "has used {value} of its capacity (threshold {threshold}).",
        },
    },
    Builtin {
        name: "disk_low_space",
        scope: Scope::Store,
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 0.8,
        pd_threshold: Some(PdThreshold::LowSpaceRatio),
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::disk_usage,
        description: "used fraction of the store's capacity above PD's low-space-ratio: PD treats the store as low on space and moves regions away",
        alert: AlertText {
            name: "TiKVDiskLowSpace",
            summary: "TiKV store is low on disk space.",
            detail: "has used {value} of its capacity, past PD's low-space-ratio {threshold}: PD moves regions away from it.",
        },
    },
    Builtin {
        name: "cpu_usage",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.7,
        pd_threshold: None,
        grace: Duration::from_secs(120),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold", "query"],
        data: Data::Prometheus(CPU_USAGE_TEMPLATE),
        evaluate: evaluate::tikv_query,
        description: "TiKV process CPU over 1m as a fraction of its CPU quota",
        alert: AlertText {
            name: "TiKVCPUUsageHigh",
            summary: "TiKV CPU usage is high.",
            detail: "uses {value} of its CPU quota (threshold {threshold}).",
        },
    },
    // Saturation and client-visible latency from TiKV's own metrics through Prometheus
    // (cluster-signals.md §9; the templates and their sources are in `queries.rs`).
    Builtin {
        name: "thread_pool_cpu",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        // TiKV's own TiKV_raftstore_thread_cpu_seconds_total: 1.6 cores of the default 2
        // raftstore threads (80 %) `for: 1m`; the same ratio for every watched pool.
        threshold: 0.8,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold", "query"],
        data: Data::Prometheus(THREAD_POOL_CPU_TEMPLATE),
        evaluate: evaluate::thread_pool_cpu,
        description: "CPU of the busiest thread pool (raftstore, apply, scheduler, gRPC, unified read pool) over 1m as a fraction of its threads; the message names the pool",
        alert: AlertText {
            name: "TiKVThreadPoolSaturated",
            summary: "A TiKV thread pool is saturated.",
            detail: "has a thread pool at {value} of its threads' CPU over 1m (threshold {threshold}); the exporter's /api/v1/invariants names the pool.",
        },
    },
    Builtin {
        name: "write_flow_control",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        // Any of them for a minute: flow control is dropping or delaying writes, or TiKV
        // answers ServerIsBusy (coverage issue default).
        threshold: 0.0,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Number,
        keys: &["threshold", "clear_threshold", "query"],
        data: Data::Prometheus(WRITE_FLOW_CONTROL_TEMPLATE),
        evaluate: evaluate::write_flow_control,
        description: "write back-pressure: the largest of the flow-control discard ratio, throttled writes/s, ServerIsBusy/s, channel-full/s and the raft RocksDB write stall (µs) over 1m; 0 when idle; the message names the signals",
        alert: AlertText {
            name: "TiKVWriteFlowControl",
            summary: "TiKV is throttling or rejecting writes.",
            detail: "applies write back-pressure (largest signal {value}, threshold {threshold}): flow control, ServerIsBusy, full raftstore channels or a raft-engine write stall; the exporter's /api/v1/invariants names the signals.",
        },
    },
    Builtin {
        name: "read_latency_p99",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.1,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold", "query"],
        data: Data::Prometheus(READ_LATENCY_P99_TEMPLATE),
        evaluate: evaluate::tikv_query,
        description: "p99 of the gRPC point gets, batch gets and scans clients wait for (transactional and raw; not coprocessor) over 1m, in seconds; 0 when the store served none",
        alert: AlertText {
            name: "TiKVReadLatencyHigh",
            summary: "TiKV p99 read latency is high.",
            detail: "has a p99 gRPC read latency (gets, batch gets and scans, transactional and raw) of {value} over 1m (threshold {threshold}).",
        },
    },
    Builtin {
        name: "memory_usage",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        // TiKV's own TiKV_memory_quota rule: `> 0.8` (`for: 15s`; 1m here, coverage issue).
        threshold: 0.8,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold", "query"],
        data: Data::Prometheus(MEMORY_USAGE_TEMPLATE),
        evaluate: evaluate::memory_usage,
        description: "TiKV resident memory as a fraction of its memory quota (TiKV >= 8.0 exports it; older TiKV has no series)",
        alert: AlertText {
            name: "TiKVMemoryUsageHigh",
            summary: "TiKV memory usage is high.",
            detail: "uses {value} of its memory quota (threshold {threshold}).",
        },
    },
    Builtin {
        name: "store_slow",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Ge,
        // PD counts a store as slow at 80 (`slowStoreThreshold`, pkg/core/store.go) and
        // evict-slow-store evicts its leaders at 100 (`slowStoreEvictThreshold`), both without
        // a grace; TiKV's score climbs from 1 over several inspection ticks, which smooths it.
        threshold: 80.0,
        pd_threshold: None,
        grace: Duration::ZERO,
        threshold_kind: ThresholdKind::Number,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::store_slow,
        description: "PD slow_score of the store (PD counts >= 80 as slow, evicts leaders at 100); stores that report none have no series",
        alert: AlertText {
            name: "TiKVStoreSlow",
            summary: "PD considers a TiKV store slow.",
            detail: "has a PD slow score of {value} (threshold {threshold}).",
        },
    },
    Builtin {
        name: "pd_leader",
        scope: Scope::Cluster,
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 0.0,
        pd_threshold: None,
        // Rides out a PD leader election or the restart of one PD member.
        grace: Duration::from_secs(30),
        threshold_kind: ThresholdKind::Number,
        keys: &[],
        data: Data::Pd,
        evaluate: evaluate::pd_leader,
        description: "PD has a leader, it is the etcd leader, and every PD member is healthy (asked of each configured member; value: problems found)",
        alert: AlertText {
            name: "PDLeaderUnhealthy",
            summary: "PD has no leader, a leader that is not the etcd leader, or unhealthy members.",
            detail: "has {value} problem(s): no PD leader while its members answer, a PD leader that is not the etcd leader, members disagreeing on the leader, and/or unhealthy members (the exporter's /api/v1/invariants names them).",
        },
    },
    // The region invariants read `pd_regions_status` from the PD leader's own /metrics (no
    // Prometheus needed); thresholds, graces and severities follow PD's own rules
    // (`metrics/alertmanager/pd.rules.yml`) except where the coverage issue asks for more.
    Builtin {
        name: "region_down_peers",
        scope: Scope::Cluster,
        // PD_down_peer_region_nums: `> 0 for 1m`, level warning.
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.0,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Number,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::region_down_peers,
        description: "regions with a down peer (one that stopped answering its Raft leader), from pd_regions_status of the PD leader's own /metrics",
        alert: AlertText {
            name: "PDRegionDownPeers",
            summary: "Regions have down peers.",
            detail: "reports {value} region(s) with a down peer (threshold {threshold}): a replica stopped answering its Raft leader.",
        },
    },
    Builtin {
        name: "region_miss_peers",
        scope: Scope::Cluster,
        severity: Severity::Warning,
        op: Op::Gt,
        // PD's PD_miss_peer_region_count (`> 100`) never fires on PD >= v3.1 (it matches the
        // old underscore spelling, tikv-metrics-and-rules.md §5); any region short of replicas
        // for 10 m is past PD's normal replica repair.
        threshold: 0.0,
        pd_threshold: None,
        grace: Duration::from_secs(600),
        threshold_kind: ThresholdKind::Number,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::region_miss_peers,
        description: "regions with fewer replicas than max-replicas, from pd_regions_status of the PD leader's own /metrics",
        alert: AlertText {
            name: "PDRegionMissPeers",
            summary: "Regions lack replicas.",
            detail: "reports {value} region(s) with fewer replicas than max-replicas past the grace period (threshold {threshold}).",
        },
    },
    Builtin {
        name: "region_pending_peers",
        scope: Scope::Cluster,
        // PD_pending_peer_region_count: `> 100 for 1m`, level warning.
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 100.0,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Number,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::region_pending_peers,
        description: "regions with a pending peer (a replica whose Raft log lags its leader's), from pd_regions_status of the PD leader's own /metrics",
        alert: AlertText {
            name: "PDRegionPendingPeers",
            summary: "Many regions have pending peers.",
            detail: "reports {value} region(s) with a pending peer, a replica whose Raft log lags behind its leader's (threshold {threshold}).",
        },
    },
    Builtin {
        name: "region_offline_peers",
        scope: Scope::Cluster,
        severity: Severity::Warning,
        op: Op::Gt,
        // No PD rule; a scale-in moves a store's peers away in minutes to hours: 10 m without
        // getting to zero is worth a look (the runbook says what is slow and what is stuck).
        threshold: 0.0,
        pd_threshold: None,
        grace: Duration::from_secs(600),
        threshold_kind: ThresholdKind::Number,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::region_offline_peers,
        description: "regions with a peer on a store being removed (Offline), from pd_regions_status of the PD leader's own /metrics",
        alert: AlertText {
            name: "PDRegionOfflinePeers",
            summary: "Regions still have peers on stores being removed.",
            detail: "reports {value} region(s) with a peer on an Offline store (being removed) past the grace period (threshold {threshold}).",
        },
    },
    Builtin {
        name: "pd_etcd",
        scope: Scope::Cluster,
        // PD_etcd_write_disk_latency: critical, `for: 1m`; pd_etcd_quota: warning. One
        // invariant: a PD whose etcd cannot write stalls TSO and scheduling either way.
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 0.0,
        pd_threshold: None,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Number,
        keys: &["wal_fsync_threshold", "db_quota_ratio"],
        data: Data::Pd,
        evaluate: evaluate::pd_etcd,
        description: "the PD leader's embedded etcd: WAL fsync p99 since the previous read of its /metrics above wal_fsync_threshold (1s), or its database above db_quota_ratio (0.8) of quota-backend-bytes (value: problems found)",
        alert: AlertText {
            name: "PDEtcdUnhealthy",
            summary: "PD's etcd fsyncs slowly or nears its space quota.",
            detail: "has {value} etcd problem(s) on its leader: a WAL fsync p99 above the limit and/or a database near its quota-backend-bytes (the exporter's /api/v1/invariants has the numbers).",
        },
    },
    Builtin {
        name: "gc_safepoint_lag",
        scope: Scope::Cluster,
        severity: Severity::Warning,
        op: Op::Gt,
        // TiDB's GC keeps 10 m of history by default (`tidb_gc_life_time`) and runs every
        // 10 m; a safe point a day old means GC is blocked (coverage issue default).
        threshold: 86400.0,
        pd_threshold: None,
        grace: Duration::ZERO,
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::gc_safepoint_lag,
        description: "age of PD's GC safe point (seconds): GC has not advanced, old MVCC versions pile up; the message names the service holding the oldest service safe point",
        alert: AlertText {
            name: "TiKVGCStuck",
            summary: "TiKV garbage collection does not advance.",
            detail: "has a GC safe point {value} old (threshold {threshold}); the exporter's /api/v1/invariants names the service holding the oldest service safe point.",
        },
    },
    Builtin {
        name: "resolved_ts_lag",
        scope: Scope::Cluster,
        severity: Severity::Warning,
        op: Op::Gt,
        // TiKV advances resolved ts every 20 s (1 s before v7.1); a minute behind for 5 m
        // (coverage issue default) is a stuck lock or region, not the interval.
        threshold: 60.0,
        pd_threshold: None,
        grace: Duration::from_secs(300),
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::resolved_ts_lag,
        description: "how far PD's min resolved ts lags behind (seconds), cluster-wide and per store where PD reports it (PD >= 7.2); stale reads, TiCDC and log backup lag as much",
        alert: AlertText {
            name: "TiKVResolvedTsLagging",
            summary: "TiKV resolved ts lags behind.",
            detail: "has a min resolved ts {value} behind (threshold {threshold}): stale reads, TiCDC and log backup lag as much.",
        },
    },
    Builtin {
        name: "store_restarted",
        scope: Scope::Store,
        // For dashboards and context (the shipped Alertmanager config drops info).
        severity: Severity::Info,
        op: Op::Lt,
        threshold: 600.0,
        pd_threshold: None,
        grace: Duration::ZERO,
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold"],
        data: Data::Pd,
        evaluate: evaluate::store_restarted,
        description: "seconds since the store's process started (PD start_timestamp, TiKV's own clock): it restarted within the threshold",
        alert: AlertText {
            name: "TiKVStoreRestarted",
            summary: "TiKV store restarted.",
            detail: "restarted {value} ago (threshold {threshold}).",
        },
    },
    // PD draining stores: leader balance and scale-in (issue #12).
    Builtin {
        name: "leader_imbalance",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Lt,
        // Under half the mean for 10 m (issue #12 default): balance-leader has given up or
        // cannot move leaders there (a label constraint, a slow store, a stuck transfer).
        threshold: 0.5,
        pd_threshold: None,
        grace: Duration::from_secs(600),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::leader_imbalance,
        description: "the store's leader count over the mean of the Up TiKV stores (TiFlash excluded); a store an evict-leader or evict-slow-store scheduler drains is exempt; unknown below the threshold while /schedulers cannot be read",
        alert: AlertText {
            name: "TiKVLeaderImbalance",
            summary: "A TiKV store holds far fewer leaders than the others.",
            detail: "holds {value} of the mean leader count of the Up TiKV stores (threshold {threshold}), and no PD scheduler evicts its leaders on purpose.",
        },
    },
    Builtin {
        name: "offline_store_stuck",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        // Scale-in moves regions steadily; 30 m without one leaving (issue #12 default) is a
        // stall (no target store with room, a placement rule, a dead store).
        threshold: 1800.0,
        pd_threshold: None,
        grace: Duration::ZERO,
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::offline_store_stuck,
        description: "seconds since the region count of an Offline (being removed) store last fell, as this exporter saw it (the history starts again when it restarts: unknown until the count is seen falling, unless PD reports it moving); PD's progress and ETA in the message where PD exports them",
        alert: AlertText {
            name: "TiKVOfflineStoreStuck",
            summary: "A TiKV store being removed does not lose regions.",
            detail: "is being removed but its region count has not fallen for {value} (threshold {threshold}).",
        },
    },
];

/// The built-in named `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// The names of the built-ins that accept `key`, comma-separated (for error messages).
pub fn accepting(key: &str) -> String {
    let names: Vec<&str> = BUILTINS
        .iter()
        .filter(|b| b.accepts(key))
        .map(|b| b.name)
        .collect();
    names.join(", ")
}

/// Every built-in's name, comma-separated (for error messages).
pub fn names() -> String {
    let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
    names.join(", ")
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
