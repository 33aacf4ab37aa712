//! The evaluators of the invariants: each turns one round's [`Observations`] into engine
//! [`Input`]s, one per store it applies to (or one `""` series for cluster-wide invariants).
//! Stores being removed (Offline) are only looked at by `store_down`; PD-based inputs are
//! unknown while PD is failing; a query that failed makes every store it covers unknown.

use super::definitions::Definition;
use super::engine::Input;
use crate::domain::{Scope, Store, StoreState};
use crate::observations::{Observations, Unavailable, is_leaving};
use crate::sources::prometheus::Sample;

/// Turns observations into per-store inputs for one definition.
pub type Evaluator = fn(&Definition, &Observations) -> Vec<(String, Input)>;

/// Applies `f` to every evaluated store; PD-based inputs are unknown while PD is failing.
/// Stores being removed (Offline) are only looked at when `leaving_too`.
pub(crate) fn per_store(
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

/// `store_down`: PD's state, or a heartbeat older than the threshold.
pub fn store_down(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_store(obs, true, |s| store_down_input(s, obs, def.rule.threshold))
}

/// `disk_usage`: used fraction of the capacity PD reports.
pub fn disk_usage(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_store(obs, false, disk_usage_input)
}

/// `store_slow`: PD's slow score.
pub fn store_slow(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_store(obs, false, |s| match s.slow_score {
        Some(v) => Input::Value(v),
        None => Input::Unknown("PD does not report slow_score for this store".into()),
    })
}

/// `pd_leader`: one cluster-wide series.
pub fn pd_leader(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    vec![(String::new(), pd_leader_input(obs))]
}

/// A built-in PromQL invariant over TiKV metrics: per store, TiFlash stores skipped.
pub fn tikv_query(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    match &def.query {
        Some(q) => query_per_store(obs, q, |s| !s.is_tiflash()),
        None => Vec::new(),
    }
}

/// A custom PromQL invariant: per store (every store) or one cluster-wide series.
pub fn custom_query(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    let Some(q) = &def.query else {
        return Vec::new();
    };
    match def.scope {
        Scope::Store => query_per_store(obs, q, |_| true),
        Scope::Cluster => vec![(String::new(), query_cluster(obs, q))],
    }
}

fn store_down_input(s: &Store, obs: &Observations, heartbeat_threshold: f64) -> Input {
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

fn disk_usage_input(s: &Store) -> Input {
    match (s.capacity_bytes, s.available_bytes) {
        (Some(cap), Some(avail)) if cap > 0 => {
            Input::Value(1.0 - (avail.min(cap) as f64 / cap as f64))
        }
        _ => Input::Unknown("PD reports no capacity for this store".into()),
    }
}

fn pd_leader_input(obs: &Observations) -> Input {
    match &obs.pd_health {
        Err(e) => Input::Unknown(e.to_string()),
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

fn query_result<'a>(obs: &'a Observations, query: &str) -> Result<&'a [Sample], Unavailable> {
    match obs.prom.get(query) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(Unavailable::new(format!("Prometheus query failed: {e}"))),
        None => Err(Unavailable::new("query not run")),
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
                .map(|s| (s.id.to_string(), Input::Unknown(e.to_string())))
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
        Err(e) => Input::Unknown(e.to_string()),
        Ok([]) => Input::Unknown("query returned no sample".into()),
        Ok([first, ..]) => sample_input(first.value),
    }
}
