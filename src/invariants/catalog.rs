//! The built-in invariants, each declared once in [`BUILTINS`]: its name, scope, default
//! severity, comparison, threshold and grace, how its threshold is written, which override keys
//! it accepts, what data it needs and the function that evaluates it. Configuration validation,
//! `check-config` and the documentation-facing listings all read this table; adding an
//! invariant is one entry here plus its evaluator in [`super::evaluate`].

use std::time::Duration;

use super::evaluate::{self, Evaluator};
use crate::domain::{Op, Scope, Severity};

/// Write p99 per TiKV instance, in seconds.
pub const WRITE_LATENCY_P99_QUERY: &str = "histogram_quantile(0.99, sum by (le, instance) (rate(tikv_storage_engine_async_request_duration_seconds_bucket{type=\"write\"}[1m])))";
/// CPU used per TiKV instance as a ratio of its CPU quota.
pub const CPU_USAGE_QUERY: &str = "sum by (instance) (rate(process_cpu_seconds_total[1m])) / on (instance) max by (instance) (tikv_server_cpu_cores_quota)";

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
    /// Default threshold.
    pub threshold: f64,
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
pub static BUILTINS: [Builtin; 6] = [
    Builtin {
        name: "store_down",
        scope: Scope::Store,
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 60.0,
        grace: Duration::ZERO,
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::store_down,
        description: "PD reports the store Disconnected or Down, or its last heartbeat is older than the threshold (seconds)",
    },
    Builtin {
        name: "write_latency_p99",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.1,
        grace: Duration::from_secs(60),
        threshold_kind: ThresholdKind::Seconds,
        keys: &["threshold", "clear_threshold", "query"],
        data: Data::Prometheus(WRITE_LATENCY_P99_QUERY),
        evaluate: evaluate::tikv_query,
        description: "p99 of TiKV storage write requests over 1m, in seconds",
    },
    Builtin {
        name: "disk_usage",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.7,
        grace: Duration::from_secs(300),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::disk_usage,
        description: "used fraction of the store's capacity (1 - available/capacity, from PD)",
    },
    Builtin {
        name: "cpu_usage",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.7,
        grace: Duration::from_secs(120),
        threshold_kind: ThresholdKind::Ratio,
        keys: &["threshold", "threshold_percent", "clear_threshold", "query"],
        data: Data::Prometheus(CPU_USAGE_QUERY),
        evaluate: evaluate::tikv_query,
        description: "TiKV process CPU over 1m as a fraction of its CPU quota",
    },
    Builtin {
        name: "store_slow",
        scope: Scope::Store,
        severity: Severity::Warning,
        op: Op::Ge,
        threshold: 80.0,
        grace: Duration::ZERO,
        threshold_kind: ThresholdKind::Number,
        keys: &["threshold", "clear_threshold"],
        data: Data::Pd,
        evaluate: evaluate::store_slow,
        description: "PD slow_score of the store (PD treats >= 80 as slow)",
    },
    Builtin {
        name: "pd_leader",
        scope: Scope::Cluster,
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 0.0,
        grace: Duration::ZERO,
        threshold_kind: ThresholdKind::Number,
        keys: &[],
        data: Data::Pd,
        evaluate: evaluate::pd_leader,
        description: "PD has a leader and every PD member is healthy (value: problems found)",
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
        assert_eq!(accepting("threshold_percent"), "disk_usage, cpu_usage");
        assert_eq!(accepting("query"), "write_latency_p99, cpu_usage");
        assert!(find("store_down").is_some() && find("nope").is_none());
    }
}
