//! The built-in invariants, each declared once in [`BUILTINS`]: its name, scope, default
//! severity, comparison, threshold and grace, how its threshold is written, which override keys
//! it accepts, what data it needs and the function that evaluates it. Configuration validation,
//! `check-config` and the documentation-facing listings all read this table; adding an
//! invariant is one entry here plus its evaluator in [`super::evaluate`].

use std::time::Duration;

use super::evaluate::{self, Evaluator};
use crate::domain::{Op, ScheduleConfig, Scope, Severity};

/// The gRPC write requests clients wait for: transactional (`kv_prewrite`, `kv_commit`) and
/// raw (RawKV without TiDB). `kv_pessimistic_lock` is left out: its duration includes waiting
/// for other transactions' locks (up to TiDB's lock-wait timeout), which is contention, not a
/// slow store. cluster-signals.md §9.2.
pub const WRITE_REQUEST_TYPES: &str = "kv_prewrite|kv_commit|raw_put|raw_batch_put|raw_delete|raw_batch_delete|raw_delete_range|raw_compare_and_swap";

/// Write p99 per TiKV instance, in seconds, from `tikv_grpc_msg_duration_seconds` (measured from
/// a request's arrival until its response is sent, so flow-control delays count), summed over
/// `type` and `priority` (TiKV ≥ 7.6). `>= 0` drops the NaN of an idle histogram, and the `or`
/// branch reports 0 for an instance whose series exist but served no write in the window: idle
/// is ok, only missing series are unknown. Placeholders: `{by}` the mapping labels, `{sel}` the
/// configured selector (`,a="b"`), `{types}` [`WRITE_REQUEST_TYPES`].
pub const WRITE_LATENCY_P99_TEMPLATE: &str = "histogram_quantile(0.99, sum by (le, {by}) (rate(tikv_grpc_msg_duration_seconds_bucket{type=~\"{types}\"{sel}}[1m]))) >= 0 or on ({by}) 0 * group by ({by}) (tikv_grpc_msg_duration_seconds_count{type=~\"{types}\"{sel}})";
/// CPU used per TiKV instance as a ratio of its CPU quota (only TiKV exports the quota, so
/// other processes drop out of the division). `{bare}`: the selector in braces, or nothing.
pub const CPU_USAGE_TEMPLATE: &str = "sum by ({by}) (rate(process_cpu_seconds_total{bare}[1m])) / on ({by}) max by ({by}) (tikv_server_cpu_cores_quota{bare})";

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
pub static BUILTINS: [Builtin; 17] = [
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
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_label_safe() {
        let mut seen = std::collections::BTreeSet::new();
        for b in &BUILTINS {
            assert!(seen.insert(b.name), "{} twice", b.name);
            assert!(
                b.name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
                "{}",
                b.name
            );
            assert!(b.threshold.is_finite());
        }
    }

    #[test]
    fn keys_follow_the_threshold_kind_and_the_data() {
        for b in &BUILTINS {
            assert_eq!(
                b.accepts("threshold_percent"),
                b.threshold_kind == ThresholdKind::Ratio,
                "{}",
                b.name
            );
            assert_eq!(
                b.accepts("query"),
                matches!(b.data, Data::Prometheus(_)),
                "{}",
                b.name
            );
            assert!(b.accepts("grace") && b.accepts("enabled"));
        }
        assert_eq!(
            accepting("threshold_percent"),
            "disk_usage, disk_low_space, cpu_usage, leader_imbalance"
        );
        assert_eq!(accepting("query"), "write_latency_p99, cpu_usage");
        assert!(find("store_down").is_some() && find("nope").is_none());
    }

    /// The shipped rule file's alerts: name, expression and annotations.
    fn shipped_rules() -> Vec<(String, String, std::collections::BTreeMap<String, String>)> {
        #[derive(serde::Deserialize)]
        struct File {
            groups: Vec<Group>,
        }
        #[derive(serde::Deserialize)]
        struct Group {
            rules: Vec<Rule>,
        }
        #[derive(serde::Deserialize)]
        struct Rule {
            alert: String,
            expr: String,
            #[serde(default)]
            annotations: std::collections::BTreeMap<String, String>,
        }
        let text = include_str!("../../alerts/tikv-health-exporter.rules.yml");
        let file: File = serde_saphyr::from_str(text).unwrap();
        file.groups
            .into_iter()
            .flat_map(|g| g.rules)
            .map(|r| (r.alert, r.expr, r.annotations))
            .collect()
    }

    #[test]
    fn every_alert_is_the_shipped_rules_alert_for_its_invariant() {
        let rules = shipped_rules();
        let runbook = include_str!("../../alerts/runbook.md");
        for b in &BUILTINS {
            let selector = format!("tikv_invariant_violation{{name=\"{}\"}}", b.name);
            let rule = rules
                .iter()
                .find(|(alert, expr, _)| alert == b.alert.name && expr.contains(&selector))
                .unwrap_or_else(|| panic!("no rule {} on {selector}", b.alert.name));
            assert_eq!(rule.2["summary"], b.alert.summary, "{}", b.name);
            assert_eq!(rule.2["runbook_url"], b.alert.runbook_url(), "{}", b.name);
            assert_eq!(alert_for(b.name).name, b.alert.name);
        }
        let custom = rules
            .iter()
            .find(|(alert, _, _)| alert == CUSTOM_ALERT.name)
            .expect("the catch-all rule");
        assert_eq!(custom.2["summary"], CUSTOM_ALERT.summary);
        assert_eq!(custom.2["runbook_url"], CUSTOM_ALERT.runbook_url());
        for b in &BUILTINS {
            assert!(custom.1.contains(b.name), "catch-all excludes {}", b.name);
        }
        assert_eq!(alert_for("my_custom").name, "TiKVInvariantViolated");
        for a in BUILTINS.iter().map(|b| &b.alert).chain([&CUSTOM_ALERT]) {
            assert!(
                runbook.contains(&format!("\n## {}\n", a.name)),
                "runbook anchor for {}",
                a.name
            );
            assert!(a.detail.contains("{value}"), "{}", a.name);
        }
    }
}
