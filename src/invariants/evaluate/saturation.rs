//! The Prometheus invariants whose samples carry more than a number: `thread_pool_cpu` (the
//! busiest pool, by its `pool` and `threads` labels), `write_flow_control` (which `signal`s
//! are up) and `memory_usage` (a `quota="none"` sample: the TiKV exports no memory quota, so
//! no series). Their queries are in [`crate::invariants::queries`]; like every built-in
//! TiKV-metric invariant they skip TiFlash stores and stores being removed.

use super::{Definition, Input, printable, samples_per_store, worst_input};
use crate::domain::Store;
use crate::observations::Observations;
use crate::sources::prometheus::Sample;

/// `thread_pool_cpu`: the utilisation of the store's busiest watched pool, named in the note
/// ("raftstore at 93% of 2 threads").
pub fn thread_pool_cpu(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_tikv(def, obs, |samples| Some(busiest_pool(samples)))
}

/// `write_flow_control`: the largest back-pressure signal; the note names those above 0.
pub fn write_flow_control(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    per_tikv(def, obs, |samples| Some(back_pressure(samples)))
}

/// `memory_usage`: resident memory / memory quota; no series for a TiKV that exports no quota
/// (older than 8.0), unknown only when nothing of the store is in Prometheus.
pub fn memory_usage(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    let (op, threshold) = (def.rule.op, def.rule.threshold);
    per_tikv(def, obs, |samples| {
        let values: Vec<f64> = samples
            .iter()
            .filter(|s| label(s, "quota") != Some("none"))
            .map(|s| s.value)
            .collect();
        (!values.is_empty()).then(|| worst_input(op, threshold, &values))
    })
}

/// The definition's query per TiKV store (TiFlash skipped).
fn per_tikv(
    def: &Definition,
    obs: &Observations,
    f: impl Fn(&[&Sample]) -> Option<Input>,
) -> Vec<(String, Input)> {
    match &def.query {
        Some(q) => samples_per_store(obs, q, |s: &Store| !s.is_tiflash(), f),
        None => Vec::new(),
    }
}

fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.labels.get(name)
}

/// The sample with the largest value (NaN ignored), or why there is none.
fn largest<'a>(samples: &[&'a Sample]) -> Result<&'a Sample, Input> {
    samples
        .iter()
        .copied()
        .filter(|s| !s.value.is_nan())
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .ok_or_else(|| Input::Unknown("query returned NaN (no data in the window)".into()))
}

/// A pool's name for users, from the query's `pool` label (the fixed list of
/// [`crate::invariants::queries::THREAD_POOL_CPU_TEMPLATE`]; a configured query's own value is
/// shown as it is, shortened).
fn pool_name(pool: Option<&str>) -> String {
    match pool {
        Some("raftstore" | "rs") => "raftstore".into(),
        Some("apply") => "apply".into(),
        Some("sched") => "scheduler".into(),
        Some("grpc") => "gRPC".into(),
        Some("unified_read") => "unified read pool".into(),
        Some(other) => format!("pool {}", printable(other)),
        None => "the busiest pool".into(),
    }
}

fn busiest_pool(samples: &[&Sample]) -> Input {
    let worst = match largest(samples) {
        Ok(s) => s,
        Err(unknown) => return unknown,
    };
    let pool = pool_name(label(worst, "pool"));
    let pct = worst.value * 100.0;
    let note = match label(worst, "threads").and_then(|t| t.parse::<u32>().ok()) {
        Some(1) => format!("{pool} at {pct:.0}% of 1 thread"),
        Some(n) => format!("{pool} at {pct:.0}% of {n} threads"),
        None => format!("{pool} at {pct:.0}%"),
    };
    Input::Measured {
        value: worst.value,
        note,
        since: None,
    }
}

/// One back-pressure signal for users.
fn signal_text(s: &Sample) -> String {
    let v = s.value;
    match label(s, "signal") {
        Some("discard_ratio") => format!("flow control drops {:.1}% of writes", v * 100.0),
        Some("throttled") => format!("flow control delays {v:.2} writes/s"),
        Some("too_busy") => format!("{v:.2} ServerIsBusy/s (scheduler too busy)"),
        Some("channel_full") => format!("{v:.2} channel-full/s (raftstore or apply mailbox)"),
        Some("raft_write_stall") => format!("raft RocksDB write stall up to {v:.0}µs"),
        Some(other) => format!("{} {v}", printable(other)),
        None => format!("signal {v}"),
    }
}

fn back_pressure(samples: &[&Sample]) -> Input {
    let worst = match largest(samples) {
        Ok(s) => s,
        Err(unknown) => return unknown,
    };
    let active: Vec<String> = samples
        .iter()
        .filter(|s| s.value > 0.0)
        .map(|s| signal_text(s))
        .collect();
    let note = if active.is_empty() {
        "no flow control, ServerIsBusy, channel-full or raft write stall".to_owned()
    } else {
        active.join("; ")
    };
    Input::Measured {
        value: worst.value,
        note,
        since: None,
    }
}

#[cfg(test)]
#[path = "saturation_tests.rs"]
mod tests;
