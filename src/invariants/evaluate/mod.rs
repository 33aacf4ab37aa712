//! The evaluators of the invariants: each turns one round's [`Observations`] into engine
//! [`Input`]s, one per store it applies to (or one `""` series for cluster-wide invariants).
//! Stores being removed (Offline) are only looked at by `store_down` and
//! `offline_store_stuck`; PD-based inputs are unknown while PD is failing; a query that failed makes every store it covers unknown. The
//! invariants on PD's cluster-wide sources (the leader's `/metrics`, `/gc/safepoint`,
//! `/min-resolved-ts`) are unknown while their source fails and have no series where this PD
//! does not serve it; likewise a TiKV-metric invariant has no series for a TiKV that does not
//! export what it reads (`memory_usage` before TiKV 8.0), but is unknown for a store nothing of
//! which is in Prometheus.

mod cluster;
mod drain;
mod saturation;

pub use cluster::{
    gc_safepoint_lag, pd_etcd, region_down_peers, region_miss_peers, region_offline_peers,
    region_pending_peers, resolved_ts_lag,
};
pub use drain::{leader_imbalance, offline_store_stuck};
pub use saturation::{memory_usage, thread_pool_cpu, write_flow_control};

use super::definitions::Definition;
use super::engine::Input;
use crate::domain::{Op, PdHealth, Scope, Store, StoreState};
use crate::observations::{Observations, Polled, is_leaving};
use crate::sources::prometheus::Sample;

/// Turns observations into per-store inputs for one definition.
pub type Evaluator = fn(&Definition, &Observations) -> Vec<(String, Input)>;

/// PD marks a store Disconnected this long after its last heartbeat (`storeDisconnectDuration`,
/// pd-api.md §2.3).
pub const PD_DISCONNECT_SECS: f64 = 20.0;

/// PD's default `max-store-down-time` (30 min), when PD did not say.
const DEFAULT_MAX_STORE_DOWN_SECS: f64 = 1800.0;

/// Applies `f` to every evaluated store; PD-based inputs are unknown while PD is failing (or
/// the store's entry is in doubt). Stores being removed (Offline) are only looked at when
/// `leaving_too`; `f` returning `None` means "not applicable": no series for that store.
pub(crate) fn per_store(
    obs: &Observations,
    leaving_too: bool,
    f: impl Fn(&Store) -> Option<Input>,
) -> Vec<(String, Input)> {
    obs.stores
        .iter()
        .filter(|s| leaving_too || !is_leaving(s))
        .filter_map(|s| {
            let input = match obs.pd_unavailable(s.id) {
                Some(e) => Input::Unknown(e.to_string()),
                None => f(s)?,
            };
            Some((s.id.to_string(), input))
        })
        .collect()
}

/// `store_down`: PD's state, or a heartbeat older than the threshold.
pub fn store_down(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_store(obs, true, |s| {
        Some(store_down_input(s, obs, def.rule.threshold))
    })
}

/// `disk_usage`, `disk_low_space`: used fraction of the capacity PD reports.
pub fn disk_usage(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_store(obs, false, |s| Some(disk_usage_input(s)))
}

/// `store_slow`: PD's slow score. A store that reports none (absent or 0: TiKV before 5.2,
/// other engines, PD v5.2–v6.5.2 printing 0 for "not reported") has no series: not applicable,
/// not unknown.
pub fn store_slow(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_store(obs, false, |s| {
        s.slow_score.filter(|&v| v > 0.0).map(Input::Value)
    })
}

/// `pd_leader`: one cluster-wide series.
pub fn pd_leader(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    let input = match &obs.pd_health {
        Err(e) => Input::Unknown(e.to_string()),
        Ok(h) => pd_leader_input(h),
    };
    vec![(String::new(), input)]
}

/// `store_restarted`: seconds since the store's process started; no series for a store that
/// reports no start time.
pub fn store_restarted(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_store(obs, false, |s| {
        let started = s.start_timestamp.filter(|&t| t > 0)? as f64;
        Some(Input::Measured {
            value: (obs.now - started).max(0.0),
            note: format!("started at {}", rfc3339(started)),
            since: Some(started),
        })
    })
}

/// A built-in PromQL invariant over TiKV metrics: per store, TiFlash stores skipped.
pub fn tikv_query(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    match &def.query {
        Some(q) => query_per_store(obs, q, def.rule.op, def.rule.threshold, |s| !s.is_tiflash()),
        None => Vec::new(),
    }
}

/// A custom PromQL invariant: per store (every store) or one cluster-wide series.
pub fn custom_query(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    let Some(q) = &def.query else {
        return Vec::new();
    };
    let (op, threshold) = (def.rule.op, def.rule.threshold);
    match def.scope {
        Scope::Store => query_per_store(obs, q, op, threshold, |_| true),
        Scope::Cluster => vec![(String::new(), query_cluster(obs, q, op, threshold))],
    }
}

fn store_down_input(s: &Store, obs: &Observations, heartbeat_threshold: f64) -> Input {
    let hb = s
        .last_heartbeat_ns
        .filter(|&ns| ns > 0)
        .map(|ns| ns as f64 / 1e9);
    let age = hb.map(|h| (obs.now - h).max(0.0));
    let value = age.unwrap_or(0.0);
    let verdict = |violated: bool, reason: String, since: Option<f64>| Input::Verdict {
        value,
        violated,
        reason,
        since,
    };
    let hb_text = match age {
        Some(a) => format!("last heartbeat {a:.1}s ago"),
        None => "no heartbeat time reported".into(),
    };
    let stale = |a: f64| a > heartbeat_threshold;
    match &s.state {
        StoreState::Disconnected => {
            let down_after = obs.schedule.max_store_down_time.map_or(String::new(), |d| {
                format!(
                    "; PD marks it Down and re-replicates after {}s",
                    d.as_secs()
                )
            });
            verdict(
                true,
                format!("PD state Disconnected; {hb_text}{down_after}"),
                hb.map(|h| h + PD_DISCONNECT_SECS),
            )
        }
        StoreState::Down => {
            let down_secs = obs
                .schedule
                .max_store_down_time
                .map_or(DEFAULT_MAX_STORE_DOWN_SECS, |d| d.as_secs_f64());
            // PD says Down only after max-store-down-time without a heartbeat: critical at once.
            let since = hb.map_or(obs.now - down_secs, |h| {
                (h + PD_DISCONNECT_SECS).min(obs.now - down_secs)
            });
            verdict(true, format!("PD state Down; {hb_text}"), Some(since))
        }
        StoreState::Tombstone => verdict(false, format!("PD state Tombstone; {hb_text}"), None),
        // PD derives Disconnected/Down only for Up stores: a removing store is judged by its
        // heartbeat here.
        StoreState::Offline => match age {
            Some(a) if stale(a) => verdict(
                true,
                format!(
                    "PD state Offline (being removed) and {hb_text} (> {heartbeat_threshold}s): PD never marks a removing store Down"
                ),
                hb.map(|h| h + heartbeat_threshold),
            ),
            Some(_) => verdict(
                false,
                format!("PD state Offline (being removed, heartbeating); {hb_text}"),
                None,
            ),
            None => Input::Unknown("PD state Offline and no heartbeat time reported".into()),
        },
        StoreState::Up => match age {
            Some(a) if stale(a) => verdict(
                true,
                format!("PD state Up but {hb_text} (> {heartbeat_threshold}s)"),
                hb.map(|h| h + heartbeat_threshold),
            ),
            None if s.state_inferred => Input::Unknown(
                "PD reports neither a state_name nor a heartbeat time for this store".into(),
            ),
            _ => verdict(false, format!("PD state Up; {hb_text}"), None),
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

fn pd_leader_input(h: &PdHealth) -> Input {
    let mut problems = Vec::new();
    match &h.leader {
        None => problems.push(format!(
            "no PD leader ({} of {} members asked answer, none has a leader)",
            h.answered, h.asked
        )),
        Some(l) => {
            if let Some(e) = &h.etcd_leader
                && e.member_id != l.member_id
            {
                problems.push(format!(
                    "PD leader {} is not the etcd leader {}",
                    l.name, e.name
                ));
            }
        }
    }
    if !h.other_leaders.is_empty() {
        problems.push(format!(
            "members disagree on the PD leader (also: {})",
            h.other_leaders.join(", ")
        ));
    }
    match &h.unhealthy {
        Some(u) if !u.is_empty() => {
            problems.push(format!("unhealthy PD members: {}", u.join(", ")))
        }
        Some(_) => {}
        None if problems.is_empty() => {
            return Input::Unknown(
                "PD member health (/health) could not be read from any member".into(),
            );
        }
        None => {}
    }
    let reason = if problems.is_empty() {
        format!(
            "leader {}, {}/{} members healthy",
            h.leader.as_ref().map_or("?", |l| l.name.as_str()),
            h.members,
            h.members
        )
    } else {
        problems.join("; ")
    };
    Input::Verdict {
        value: problems.len() as f64,
        violated: !problems.is_empty(),
        reason,
        since: None,
    }
}

/// The built-in `name` as the default configuration defines it (unit tests).
#[cfg(test)]
pub(super) fn default_definition(name: &str) -> Definition {
    super::definitions::build(&crate::config::Config::default())
        .unwrap()
        .into_iter()
        .find(|d| &*d.rule.name == name)
        .unwrap()
}

/// The last reading of a PD source read every health interval: `Ok(None)` when this PD does
/// not serve it, `Err` (why it is unknown) before the first reading and while it fails.
pub(super) fn reading<'a, T>(p: &'a Polled<T>, what: &str) -> Result<Option<(f64, &'a T)>, String> {
    match p {
        Polled::NotYet => Err(format!("{what} not read yet")),
        Polled::NotServed => Ok(None),
        Polled::Read { at, value } => Ok(Some((*at, value))),
        Polled::Failed { reason, .. } => Err(format!("{what}: {reason}")),
    }
}

/// A Unix time as RFC 3339 in UTC (seconds).
pub(super) fn rfc3339(t: f64) -> String {
    chrono::DateTime::from_timestamp(t.floor() as i64, 0).map_or_else(
        || format!("{t:.0}"),
        |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Seconds as `0.002s` / `1.5s`.
pub(super) fn seconds(v: f64) -> String {
    format!("{}s", (v * 10000.0).round() / 10000.0)
}

/// Text from PD (a service id) fit for a message: control characters dropped, at most 128
/// characters.
pub(super) fn printable(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(128).collect();
    if s.chars().filter(|c| !c.is_control()).count() > 128 {
        out.push('…');
    }
    out
}

/// The sample that decides for a store with several: the one worst for `op` — the largest for
/// `>`/`>=`, the smallest for `<`/`<=`, one equal to the threshold for `==`, the farthest from
/// it for `!=` (and for `==` when none is equal). NaN samples are ignored unless all are NaN.
pub fn worst_sample(op: Op, threshold: f64, values: &[f64]) -> Option<f64> {
    let real = values.iter().copied().filter(|v| !v.is_nan());
    let farthest = |it: &mut dyn Iterator<Item = f64>| {
        it.max_by(|a, b| (a - threshold).abs().total_cmp(&(b - threshold).abs()))
    };
    let picked = match op {
        Op::Gt | Op::Ge => real.max_by(f64::total_cmp),
        Op::Lt | Op::Le => real.min_by(f64::total_cmp),
        Op::Eq => {
            let v: Vec<f64> = real.collect();
            v.iter()
                .copied()
                .find(|&x| x == threshold)
                .or_else(|| farthest(&mut v.iter().copied()))
        }
        Op::Ne => farthest(&mut real.into_iter()),
    };
    picked.or_else(|| values.first().copied())
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
    op: Op,
    threshold: f64,
    applies: impl Fn(&Store) -> bool,
) -> Vec<(String, Input)> {
    samples_per_store(obs, query, applies, |samples| {
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        Some(worst_input(op, threshold, &values))
    })
}

/// The input of the worst of `values` (see [`worst_sample`]); unknown when there is none or
/// it is NaN.
pub(crate) fn worst_input(op: Op, threshold: f64, values: &[f64]) -> Input {
    worst_sample(op, threshold, values)
        .map_or_else(|| Input::Unknown("no sample".into()), sample_input)
}

/// Applies `f` to the samples of `query` that map to each evaluated store (those `applies`
/// accepts, never a store being removed): unknown for every store when the query failed,
/// for a store PD lists in doubt, and for a store no sample maps to; `f` returning `None`
/// means "not applicable": no series for that store.
pub(crate) fn samples_per_store(
    obs: &Observations,
    query: &str,
    applies: impl Fn(&Store) -> bool,
    f: impl Fn(&[&Sample]) -> Option<Input>,
) -> Vec<(String, Input)> {
    let stores = obs.stores.iter().filter(|s| applies(s) && !is_leaving(s));
    let mapped = match obs.mapped(query) {
        Err(e) => {
            return stores
                .map(|s| (s.id.to_string(), Input::Unknown(e.to_string())))
                .collect();
        }
        Ok(m) => m,
    };
    stores
        .filter_map(|s| {
            let input = if let Some(d) = obs.doubtful.get(&s.id) {
                Input::Unknown(d.to_string())
            } else {
                match mapped.by_store.get(&s.id) {
                    Some(samples) => f(samples)?,
                    None => Input::Unknown(format!(
                        "no sample maps to this store (address {}, status address {})",
                        s.address, s.status_address
                    )),
                }
            };
            Some((s.id.to_string(), input))
        })
        .collect()
}

fn query_cluster(obs: &Observations, query: &str, op: Op, threshold: f64) -> Input {
    match obs.prom.get(query) {
        Some(Ok(v)) if v.is_empty() => Input::Unknown("query returned no sample".into()),
        Some(Ok(v)) => {
            let values: Vec<f64> = v.iter().map(|s| s.value).collect();
            worst_input(op, threshold, &values)
        }
        Some(Err(e)) => Input::Unknown(format!("Prometheus query failed: {e}")),
        None => Input::Unknown("query not run".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::engine::{Engine, Phase};

    #[test]
    fn a_store_restarted_within_ten_minutes_is_info_until_then() {
        let d = crate::invariants::definitions::build(&crate::config::Config::default())
            .unwrap()
            .into_iter()
            .find(|d| &*d.rule.name == "store_restarted")
            .unwrap();
        assert_eq!(d.rule.severity, crate::domain::Severity::Info);
        let t0 = 1_700_000_000.0;
        let store = |id: u64, state: StoreState, start: Option<u64>| Store {
            start_timestamp: start,
            ..Store::new(id, state)
        };
        let stores = vec![
            store(1, StoreState::Up, Some(t0 as u64 - 120)),
            store(2, StoreState::Up, Some(t0 as u64 - 7200)),
            // No start time reported (PD 3.0 without start_ts), or being removed: no series.
            store(3, StoreState::Up, None),
            store(4, StoreState::Offline, Some(t0 as u64 - 120)),
        ];
        let obs = Observations::new(t0, stores);
        let inputs = store_restarted(&d, &obs);
        let ids: Vec<&str> = inputs.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
        let mut e = Engine::new();
        let st = e.evaluate(&d.rule, "1", inputs[0].1.clone(), t0);
        assert_eq!(
            (st.phase, st.active_since, st.value),
            (Phase::Firing, Some(t0 - 120.0), Some(120.0))
        );
        assert_eq!(
            &*st.message,
            "120 < 600 (violated); started at 2023-11-14T22:11:20Z"
        );
        assert_eq!(
            e.evaluate(&d.rule, "2", inputs[1].1.clone(), t0).phase,
            Phase::Ok
        );
        // Ten minutes after the restart it resolves by itself.
        let later = Observations::new(t0 + 480.0, obs.stores.clone());
        let again = store_restarted(&d, &later);
        assert_eq!(
            e.evaluate(&d.rule, "1", again[0].1.clone(), t0 + 480.0)
                .phase,
            Phase::Ok
        );
        // PD unavailable: unknown, like every PD-based store invariant.
        let mut down = Observations::new(t0, obs.stores.clone());
        down.pd_error = Some(crate::observations::Unavailable::new("refused"));
        assert!(matches!(store_restarted(&d, &down)[0].1, Input::Unknown(_)));
    }

    #[test]
    fn the_worst_sample_follows_the_comparison() {
        let v = [0.2, f64::NAN, 0.9, 0.5];
        assert_eq!(worst_sample(Op::Gt, 0.7, &v), Some(0.9));
        assert_eq!(worst_sample(Op::Ge, 0.7, &v), Some(0.9));
        assert_eq!(worst_sample(Op::Lt, 0.7, &v), Some(0.2));
        assert_eq!(worst_sample(Op::Le, 0.7, &v), Some(0.2));
        assert_eq!(worst_sample(Op::Eq, 0.5, &v), Some(0.5));
        assert_eq!(worst_sample(Op::Eq, 0.6, &v), Some(0.2));
        assert_eq!(worst_sample(Op::Ne, 0.5, &v), Some(0.9));
        assert_eq!(worst_sample(Op::Ne, 0.5, &[0.5, 0.5]), Some(0.5));
        // NaN never overrides a real sample, whatever the order; all NaN stays NaN.
        assert_eq!(worst_sample(Op::Gt, 0.1, &[f64::NAN, 0.3]), Some(0.3));
        assert_eq!(worst_sample(Op::Lt, 0.1, &[0.3, f64::NAN]), Some(0.3));
        assert!(worst_sample(Op::Gt, 0.1, &[f64::NAN]).unwrap().is_nan());
        assert_eq!(worst_sample(Op::Gt, 0.1, &[]), None);
    }
}
