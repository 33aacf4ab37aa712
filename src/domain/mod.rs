//! The shared vocabulary of every layer: severities and comparisons of invariants, PD stores and
//! their states, PD members and schedule settings, PD's cluster-wide state (region health, etcd,
//! GC and resolved-ts safe points, which stores PD drains and how fast), how samples, containers and pods map to stores, and name
//! patterns. Nothing here does I/O; every other module may import it, and it
//! imports none of them.

mod drain;
mod labels;
mod mapping;
mod pattern;
mod pd;
mod pd_cluster;
mod store;

use serde::{Deserialize, Serialize};

pub use drain::{
    EVICT_LEADER, EVICT_SLOW_STORE, OfflineHistory, OfflineRecord, RemovalProgress,
    SLOW_STORE_EVICT_SCORE, Schedulers, SlowStoreEviction, v30_evict_leader_target,
};
pub use labels::Labels;
pub use mapping::{DEFAULT_STATUS_PORT, MAPPING_LABELS, MappingRule, StoreMatcher};
pub use pattern::{Part, PathPattern, PatternError, glob_match, is_pattern};
pub use pd::{Member, MemberHealth, Members, PdHealth, ScheduleConfig};
pub use pd_cluster::{
    GcSafePoints, Histogram, HotFlow, MinResolvedTs, PdLeaderMetrics, REGION_STATUS_TYPES,
    ServiceSafePoint, StoreHotspot, region_status_type, resolved_ts_known, tso_from_unix_seconds,
    tso_unix_seconds,
};
pub use store::{Store, StoreState, host_of};

/// Default upper bound on the length of one log line (1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Alert severity carried as the `severity` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Page someone.
    Critical,
    /// Look at it soon.
    Warning,
    /// For dashboards.
    Info,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Comparison of an observed value with a threshold (violated when it holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    /// Whether `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// Where an invariant is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One series per store (`store="<id>"`).
    #[default]
    Store,
    /// One cluster-wide series (`store=""`).
    Cluster,
}
