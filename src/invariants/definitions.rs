//! The built-in and custom invariants: their defaults, how configuration overrides them, and
//! how each turns [`Observations`] into per-store engine [`Input`]s.

use std::time::Duration;

use super::engine::{Input, Rule};
use crate::config::{Config, CustomInvariant, InvariantOverride, Scope};
use crate::domain::{Op, Severity, Store, StoreState};
use crate::observations::{Observations, is_leaving};

/// Write p99 per TiKV instance, in seconds.
pub const WRITE_LATENCY_P99_QUERY: &str = "histogram_quantile(0.99, sum by (le, instance) (rate(tikv_storage_engine_async_request_duration_seconds_bucket{type=\"write\"}[1m])))";
/// CPU used per TiKV instance as a ratio of its CPU quota.
pub const CPU_USAGE_QUERY: &str = "sum by (instance) (rate(process_cpu_seconds_total[1m])) / on (instance) max by (instance) (tikv_server_cpu_cores_quota)";

/// How an invariant gets its value.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// PD `state_name` Disconnected/Down, or a heartbeat older than the rule threshold (seconds).
    StoreDown,
    /// A per-store PromQL query over TiKV metrics (TiFlash stores are skipped).
    TikvQuery(String),
    /// Used fraction of capacity from PD.
    DiskUsage,
    /// PD `slow_score`.
    StoreSlow,
    /// Cluster-wide: PD has a leader and every member is healthy.
    PdLeader,
    /// A custom PromQL query.
    Custom {
        /// The query.
        query: String,
        /// Per store or cluster-wide.
        scope: Scope,
    },
}

/// One configured invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    /// Thresholds, grace periods, severity.
    pub rule: Rule,
    /// Where the value comes from.
    pub kind: Kind,
    /// One-line description for users.
    pub description: String,
}

struct Builtin {
    name: &'static str,
    severity: Severity,
    op: Op,
    threshold: f64,
    grace: u64,
    percent: bool,
    kind: fn(Option<&str>) -> Kind,
    description: &'static str,
}

const BUILTINS: [Builtin; 6] = [
    Builtin {
        name: "store_down",
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 60.0,
        grace: 0,
        percent: false,
        kind: |_| Kind::StoreDown,
        description: "PD reports the store Disconnected or Down, or its last heartbeat is older than the threshold (seconds)",
    },
    Builtin {
        name: "write_latency_p99",
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.1,
        grace: 60,
        percent: false,
        kind: |q| Kind::TikvQuery(q.unwrap_or(WRITE_LATENCY_P99_QUERY).to_owned()),
        description: "p99 of TiKV storage write requests over 1m, in seconds",
    },
    Builtin {
        name: "disk_usage",
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.7,
        grace: 300,
        percent: true,
        kind: |_| Kind::DiskUsage,
        description: "used fraction of the store's capacity (1 - available/capacity, from PD)",
    },
    Builtin {
        name: "cpu_usage",
        severity: Severity::Warning,
        op: Op::Gt,
        threshold: 0.7,
        grace: 120,
        percent: true,
        kind: |q| Kind::TikvQuery(q.unwrap_or(CPU_USAGE_QUERY).to_owned()),
        description: "TiKV process CPU over 1m as a fraction of its CPU quota",
    },
    Builtin {
        name: "store_slow",
        severity: Severity::Warning,
        op: Op::Ge,
        threshold: 80.0,
        grace: 0,
        percent: false,
        kind: |_| Kind::StoreSlow,
        description: "PD slow_score of the store (PD treats >= 80 as slow)",
    },
    Builtin {
        name: "pd_leader",
        severity: Severity::Critical,
        op: Op::Gt,
        threshold: 0.0,
        grace: 0,
        percent: false,
        kind: |_| Kind::PdLeader,
        description: "PD has a leader and every PD member is healthy (value: problems found)",
    },
];

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Builds every enabled invariant from the configuration. Prometheus-based invariants are
/// left out when no Prometheus URL is configured.
pub fn build(cfg: &Config) -> Vec<Definition> {
    let mut out = Vec::new();
    let none = InvariantOverride::default();
    for b in &BUILTINS {
        let o = cfg.invariants.get(b.name).unwrap_or(&none);
        if o.enabled == Some(false) {
            continue;
        }
        let kind = (b.kind)(o.query.as_deref());
        if matches!(kind, Kind::TikvQuery(_)) && cfg.prometheus.url.is_none() {
            continue;
        }
        let threshold = o
            .threshold
            .or(o.threshold_percent.map(|p| p / 100.0))
            .unwrap_or(b.threshold);
        let clear_threshold = o
            .clear_threshold
            .map(|c| if b.percent && c > 1.0 { c / 100.0 } else { c });
        out.push(Definition {
            rule: Rule {
                name: b.name.to_owned(),
                severity: o.severity.unwrap_or(b.severity),
                op: b.op,
                threshold,
                clear_threshold,
                grace: o.grace.map_or(b.grace as f64, |g| secs(g.0)),
                clear_grace: o.clear_grace.map_or(0.0, |g| secs(g.0)),
            },
            kind,
            description: b.description.to_owned(),
        });
    }
    for c in &cfg.custom_invariants {
        out.push(custom(c));
    }
    out
}

fn custom(c: &CustomInvariant) -> Definition {
    Definition {
        rule: Rule {
            name: c.name.clone(),
            severity: c.severity,
            op: c.op,
            threshold: c.threshold,
            clear_threshold: c.clear_threshold,
            grace: secs(c.grace.0),
            clear_grace: secs(c.clear_grace.0),
        },
        kind: Kind::Custom {
            query: c.query.clone(),
            scope: c.scope,
        },
        description: format!("custom: {} {} {}", c.query, c.op.as_str(), c.threshold),
    }
}

impl Definition {
    /// The PromQL this invariant needs each poll, if any.
    pub fn query(&self) -> Option<&str> {
        match &self.kind {
            Kind::TikvQuery(q) | Kind::Custom { query: q, .. } => Some(q),
            _ => None,
        }
    }

    /// The engine inputs for this round: `(store, input)` for every store (or `""` for
    /// cluster-wide invariants) this invariant applies to.
    pub fn inputs(&self, obs: &Observations) -> Vec<(String, Input)> {
        match &self.kind {
            Kind::StoreDown => per_store(obs, true, |s| store_down(s, obs, self.rule.threshold)),
            Kind::DiskUsage => per_store(obs, false, disk_usage),
            Kind::StoreSlow => per_store(obs, false, |s| match s.slow_score {
                Some(v) => Input::Value(v),
                None => Input::Unknown("PD does not report slow_score for this store".into()),
            }),
            Kind::PdLeader => vec![(String::new(), pd_leader(obs))],
            Kind::TikvQuery(q) => query_per_store(obs, q, |s| !s.is_tiflash()),
            Kind::Custom {
                query,
                scope: Scope::Store,
            } => query_per_store(obs, query, |_| true),
            Kind::Custom {
                query,
                scope: Scope::Cluster,
            } => vec![(String::new(), query_cluster(obs, query))],
        }
    }
}

/// Applies `f` to every evaluated store; PD-based inputs are unknown while PD is failing.
/// Stores being removed (Offline) are only looked at when `leaving_too`.
fn per_store(
    obs: &Observations,
    leaving_too: bool,
    f: impl Fn(&Store) -> Input,
) -> Vec<(String, Input)> {
    obs.stores
        .iter()
        .filter(|s| leaving_too || !is_leaving(s))
        .map(|s| {
            let input = match &obs.pd_error {
                Some(e) => Input::Unknown(format!("PD unavailable: {e}")),
                None => f(s),
            };
            (s.id.to_string(), input)
        })
        .collect()
}

fn store_down(s: &Store, obs: &Observations, heartbeat_threshold: f64) -> Input {
    let age = s
        .last_heartbeat_ns
        .filter(|&ns| ns > 0)
        .map(|ns| (obs.now - ns as f64 / 1e9).max(0.0));
    let value = age.unwrap_or(0.0);
    let verdict = |violated: bool, reason: String| Input::Verdict {
        value,
        violated,
        reason,
    };
    let hb = match age {
        Some(a) => format!("last heartbeat {a:.1}s ago"),
        None => "no heartbeat time reported".into(),
    };
    match &s.state {
        StoreState::Disconnected => {
            let down_after = obs.max_store_down_time.map_or(String::new(), |d| {
                format!(
                    "; PD marks it Down and re-replicates after {}s",
                    d.as_secs()
                )
            });
            verdict(true, format!("PD state Disconnected; {hb}{down_after}"))
        }
        StoreState::Down => verdict(true, format!("PD state Down; {hb}")),
        StoreState::Offline | StoreState::Tombstone => verdict(
            false,
            format!(
                "PD state {} (being removed, not down); {hb}",
                s.state.as_str()
            ),
        ),
        StoreState::Up => match age {
            Some(a) if a > heartbeat_threshold => verdict(
                true,
                format!("PD state Up but {hb} (> {heartbeat_threshold}s)"),
            ),
            _ => verdict(false, format!("PD state Up; {hb}")),
        },
        StoreState::Other(name) => Input::Unknown(format!("unrecognised PD store state `{name}`")),
    }
}

fn disk_usage(s: &Store) -> Input {
    match (s.capacity_bytes, s.available_bytes) {
        (Some(cap), Some(avail)) if cap > 0 => {
            Input::Value(1.0 - (avail.min(cap) as f64 / cap as f64))
        }
        _ => Input::Unknown("PD reports no capacity for this store".into()),
    }
}

fn pd_leader(obs: &Observations) -> Input {
    match &obs.pd_health {
        Err(e) => Input::Unknown(e.clone()),
        Ok(h) => {
            let mut problems = Vec::new();
            if h.leader.is_none() {
                problems.push("no PD leader".to_owned());
            }
            if !h.unhealthy.is_empty() {
                problems.push(format!("unhealthy PD members: {}", h.unhealthy.join(", ")));
            }
            let value = (h.unhealthy.len() + usize::from(h.leader.is_none())) as f64;
            let reason = if problems.is_empty() {
                format!(
                    "leader {}, {}/{} members healthy",
                    h.leader.as_deref().unwrap_or("?"),
                    h.members,
                    h.members
                )
            } else {
                problems.join("; ")
            };
            Input::Verdict {
                value,
                violated: !problems.is_empty(),
                reason,
            }
        }
    }
}

fn query_result<'a>(
    obs: &'a Observations,
    query: &str,
) -> Result<&'a [crate::sources::prometheus::Sample], String> {
    match obs.prom.get(query) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(format!("Prometheus query failed: {e}")),
        None => Err("query not run".into()),
    }
}

fn sample_input(v: f64) -> Input {
    if v.is_nan() {
        Input::Unknown("query returned NaN (no data in the window)".into())
    } else {
        Input::Value(v)
    }
}

fn query_per_store(
    obs: &Observations,
    query: &str,
    applies: impl Fn(&Store) -> bool,
) -> Vec<(String, Input)> {
    let stores = obs.stores.iter().filter(|s| applies(s) && !is_leaving(s));
    let samples = match query_result(obs, query) {
        Err(e) => {
            return stores
                .map(|s| (s.id.to_string(), Input::Unknown(e.clone())))
                .collect();
        }
        Ok(v) => v,
    };
    let index = obs.index();
    let mut values: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for sample in samples {
        if let Some(id) = obs.store_of(sample, &index) {
            // Several samples for one store: keep the largest (the worst for `>` rules).
            let e = values.entry(id).or_insert(f64::NEG_INFINITY);
            if sample.value.is_nan() || sample.value > *e {
                *e = sample.value;
            }
        }
    }
    stores
        .map(|s| {
            let id = s.id.to_string();
            let input = match values.get(&id) {
                Some(&v) => sample_input(v),
                None => Input::Unknown(format!(
                    "no sample for this store (instance {})",
                    s.status_address
                )),
            };
            (id, input)
        })
        .collect()
}

fn query_cluster(obs: &Observations, query: &str) -> Input {
    match query_result(obs, query) {
        Err(e) => Input::Unknown(e),
        Ok([]) => Input::Unknown("query returned no sample".into()),
        Ok([first, ..]) => sample_input(first.value),
    }
}
