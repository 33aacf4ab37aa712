//! The invariant state machine with in-process grace periods.
//!
//! Per (invariant, store): `ok` → `pending` (violated, inside `grace`) → `firing` → `ok`.
//! A firing invariant resolves only after it has been clear for `clear_grace`, and with
//! hysteresis only once `clear_threshold` no longer holds. An evaluation without input is
//! `unknown`: it neither fires nor resolves, and the previous phase and timestamps are kept —
//! for at most `unknown_hold`: a pending or firing series that stays unknown that long stops
//! counting as violated (back to `ok`, still unknown), so a blind spot cannot page forever.
//!
//! A verdict may say when its violation began (`since`, e.g. 20 s after a store's last
//! heartbeat, when PD marked it Disconnected); the grace period counts from there, so a store
//! that has been down for an hour when the exporter starts fires at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{Op, Severity};

/// The rule of one invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Invariant name (`name` label; shared with every series' view).
    pub name: Arc<str>,
    /// Severity label.
    pub severity: Severity,
    /// Violated when `value op threshold`.
    pub op: Op,
    /// Threshold in the observed value's unit.
    pub threshold: f64,
    /// Hysteresis: once firing, stays firing while `value op clear_threshold`.
    pub clear_threshold: Option<f64>,
    /// Seconds the violation must hold before firing.
    pub grace: f64,
    /// Seconds a firing invariant must be clear before resolving.
    pub clear_grace: f64,
    /// Seconds a pending or firing invariant keeps counting as violated while unknown (0: until
    /// its inputs return).
    pub unknown_hold: f64,
}

/// One evaluation's input.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The inputs are missing; the reason is shown to users.
    Unknown(String),
    /// A value compared against the rule's thresholds.
    Value(f64),
    /// A value compared against the rule's thresholds like [`Input::Value`], with what it was
    /// measured on (shown after the comparison) and, when the inputs tell, when a violation
    /// began (e.g. when a stuck safe point crossed the threshold; never later than now).
    Measured {
        /// The value compared.
        value: f64,
        /// Where it comes from, for users (`GC safe point at ...; held by ...`).
        note: String,
        /// When the value began to violate the threshold, if known (Unix seconds).
        since: Option<f64>,
    },
    /// A value with the verdict already decided (e.g. PD's store state); hysteresis does not apply.
    Verdict {
        /// The observed value shown to users.
        value: f64,
        /// Whether the invariant is violated.
        violated: bool,
        /// Why (shown in the API and landing page).
        reason: String,
        /// When the violation began, if the inputs tell (Unix seconds; never later than now).
        since: Option<f64>,
    },
}

/// Lifecycle phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not violated.
    Ok,
    /// Violated, inside the grace period.
    Pending,
    /// Violated past the grace period.
    Firing,
}

impl Phase {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ok => "ok",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
        }
    }
}

/// Current state of one (invariant, store).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesState {
    /// Lifecycle phase (kept while unknown).
    pub phase: Phase,
    /// When the current violation started (Unix seconds), while pending or firing.
    pub active_since: Option<f64>,
    /// When a firing invariant first looked clear (for `clear_grace`).
    pub clearing_since: Option<f64>,
    /// True when the last evaluation had no input.
    pub unknown: bool,
    /// Since when the inputs have been missing (while `unknown`).
    pub unknown_since: Option<f64>,
    /// Last compared value.
    pub value: Option<f64>,
    /// Human-readable explanation of the last evaluation (shared with the published views).
    pub message: Arc<str>,
    /// When it was last evaluated (Unix seconds).
    pub evaluated_at: f64,
}

impl SeriesState {
    fn new() -> Self {
        SeriesState {
            phase: Phase::Ok,
            active_since: None,
            clearing_since: None,
            unknown: true,
            unknown_since: None,
            value: None,
            message: "not evaluated yet".into(),
            evaluated_at: 0.0,
        }
    }
}

/// What the state file keeps per active (pending or firing) invariant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// Invariant name.
    pub name: String,
    /// Store label.
    pub store: String,
    /// Phase when saved.
    pub phase: Phase,
    /// When the violation started (Unix seconds).
    pub active_since: f64,
    /// When a firing invariant started looking clear.
    #[serde(default)]
    pub clearing_since: Option<f64>,
}

/// Key of one evaluated series.
pub type Key = (String, String);

/// All invariant states.
#[derive(Debug, Default)]
pub struct Engine {
    states: BTreeMap<Key, SeriesState>,
}

impl Engine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores active states saved by a previous process; they continue where they were, so a
    /// restart neither re-arms nor skips a grace period. They are unknown from `now` until their
    /// first evaluation.
    pub fn restore(&mut self, saved: &[Persisted], now: f64) {
        for p in saved {
            if p.phase == Phase::Ok {
                continue;
            }
            let st = self
                .states
                .entry((p.name.clone(), p.store.clone()))
                .or_insert_with(SeriesState::new);
            st.phase = p.phase;
            st.active_since = Some(p.active_since);
            st.clearing_since = p.clearing_since;
            st.unknown_since = Some(now);
            st.message = "restored from state file; waiting for the first evaluation".into();
        }
    }

    /// Active states to persist.
    pub fn persisted(&self) -> Vec<Persisted> {
        self.states
            .iter()
            .filter_map(|((name, store), s)| {
                Some(Persisted {
                    name: name.clone(),
                    store: store.clone(),
                    phase: s.phase,
                    active_since: s.active_since?,
                    clearing_since: s.clearing_since,
                })
            })
            .filter(|p| p.phase != Phase::Ok)
            .collect()
    }

    /// Evaluates `rule` for `store` at `now` (Unix seconds).
    pub fn evaluate(&mut self, rule: &Rule, store: &str, input: Input, now: f64) -> &SeriesState {
        let st = self
            .states
            .entry((rule.name.to_string(), store.to_owned()))
            .or_insert_with(SeriesState::new);
        st.evaluated_at = now;
        let (value, violated, still_violated, reason, evidence) = match input {
            Input::Unknown(why) => {
                st.unknown = true;
                let unknown_since = *st.unknown_since.get_or_insert(now);
                st.message = format!("unknown: {why}").into();
                let held = now - unknown_since;
                if st.phase != Phase::Ok && rule.unknown_hold > 0.0 && held >= rule.unknown_hold {
                    st.phase = Phase::Ok;
                    st.active_since = None;
                    st.clearing_since = None;
                    st.message = format!(
                        "unknown for {held:.0}s: {why}; no longer counted as violated (unknown_hold {:.0}s)",
                        rule.unknown_hold
                    )
                    .into();
                }
                return st;
            }
            Input::Verdict {
                value,
                violated,
                reason,
                since,
            } => (value, violated, violated, reason, since),
            Input::Value(v) => {
                let (violated, still, reason) = compare(rule, v);
                (v, violated, still, reason, None)
            }
            Input::Measured { value, note, since } => {
                let (violated, still, reason) = compare(rule, value);
                (value, violated, still, format!("{reason}; {note}"), since)
            }
        };
        st.unknown = false;
        st.unknown_since = None;
        st.value = Some(value);
        st.message = reason.into();
        match st.phase {
            Phase::Ok | Phase::Pending if !violated => {
                st.phase = Phase::Ok;
                st.active_since = None;
                st.clearing_since = None;
            }
            Phase::Ok | Phase::Pending => {
                let began = evidence.map_or(now, |e| e.min(now));
                let since = st.active_since.map_or(began, |s| s.min(began));
                st.active_since = Some(since);
                st.phase = if now - since >= rule.grace {
                    Phase::Firing
                } else {
                    Phase::Pending
                };
            }
            Phase::Firing if still_violated => st.clearing_since = None,
            Phase::Firing => {
                let clear_since = *st.clearing_since.get_or_insert(now);
                if now - clear_since >= rule.clear_grace {
                    st.phase = Phase::Ok;
                    st.active_since = None;
                    st.clearing_since = None;
                }
            }
        }
        st
    }

    /// Drops every series of `name` whose store is not in `keep` (e.g. Tombstone stores).
    pub fn retain_stores(&mut self, name: &str, keep: &dyn Fn(&str) -> bool) {
        self.states.retain(|(n, store), _| n != name || keep(store));
    }

    /// Drops every series of invariants not named in `names` (disabled ones).
    pub fn retain_names(&mut self, names: &[&str]) {
        self.states.retain(|(n, _), _| names.contains(&n.as_str()));
    }

    /// All states in (name, store) order.
    pub fn states(&self) -> impl Iterator<Item = (&Key, &SeriesState)> {
        self.states.iter()
    }

    /// One state.
    pub fn get(&self, name: &str, store: &str) -> Option<&SeriesState> {
        self.states.get(&(name.to_owned(), store.to_owned()))
    }
}

/// Whether `v` violates the rule, whether a firing invariant stays violated (hysteresis), and
/// the comparison in words.
fn compare(rule: &Rule, v: f64) -> (bool, bool, String) {
    let violated = rule.op.holds(v, rule.threshold);
    let still = match rule.clear_threshold {
        Some(c) => rule.op.holds(v, c),
        None => violated,
    };
    let reason = format!(
        "{} {} {} {}",
        fmt_value(v),
        if violated { rule.op.as_str() } else { "within" },
        fmt_value(rule.threshold),
        if violated {
            "(violated)"
        } else {
            "(threshold)"
        }
    );
    (violated, still, reason)
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(grace: f64, clear_grace: f64, clear_threshold: Option<f64>) -> Rule {
        Rule {
            name: "disk_usage".into(),
            severity: Severity::Warning,
            op: Op::Gt,
            threshold: 0.7,
            clear_threshold,
            grace,
            clear_grace,
            unknown_hold: 0.0,
        }
    }

    fn phase(e: &mut Engine, r: &Rule, input: Input, now: f64) -> (Phase, Option<f64>, bool) {
        let s = e.evaluate(r, "1", input, now);
        (s.phase, s.active_since, s.unknown)
    }

    #[test]
    fn ok_pending_firing_ok_with_grace() {
        let r = rule(60.0, 0.0, None);
        let mut e = Engine::new();
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.5), 0.0),
            (Phase::Ok, None, false)
        );
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.8), 10.0),
            (Phase::Pending, Some(10.0), false)
        );
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.9), 69.9),
            (Phase::Pending, Some(10.0), false)
        );
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.9), 70.0),
            (Phase::Firing, Some(10.0), false)
        );
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.1), 80.0),
            (Phase::Ok, None, false)
        );
    }

    #[test]
    fn zero_grace_fires_on_first_violation() {
        let r = rule(0.0, 0.0, None);
        let mut e = Engine::new();
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.8), 5.0),
            (Phase::Firing, Some(5.0), false)
        );
    }

    #[test]
    fn pending_that_clears_rearms_from_scratch() {
        let r = rule(60.0, 0.0, None);
        let mut e = Engine::new();
        phase(&mut e, &r, Input::Value(0.8), 0.0);
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.1), 30.0),
            (Phase::Ok, None, false)
        );
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.8), 40.0),
            (Phase::Pending, Some(40.0), false)
        );
        assert_eq!(phase(&mut e, &r, Input::Value(0.8), 90.0).0, Phase::Pending);
        assert_eq!(phase(&mut e, &r, Input::Value(0.8), 100.0).0, Phase::Firing);
    }

    #[test]
    fn clear_grace_keeps_firing_until_clear_long_enough() {
        let r = rule(0.0, 30.0, None);
        let mut e = Engine::new();
        phase(&mut e, &r, Input::Value(0.8), 0.0);
        assert_eq!(phase(&mut e, &r, Input::Value(0.1), 10.0).0, Phase::Firing);
        // Violated again: the clear timer restarts.
        assert_eq!(phase(&mut e, &r, Input::Value(0.8), 20.0).0, Phase::Firing);
        assert_eq!(phase(&mut e, &r, Input::Value(0.1), 30.0).0, Phase::Firing);
        assert_eq!(phase(&mut e, &r, Input::Value(0.1), 59.0).0, Phase::Firing);
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.1), 60.0),
            (Phase::Ok, None, false)
        );
    }

    #[test]
    fn hysteresis_needs_the_clear_threshold() {
        let r = rule(0.0, 0.0, Some(0.6));
        let mut e = Engine::new();
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.65), 0.0).0,
            Phase::Ok,
            "below threshold"
        );
        assert_eq!(phase(&mut e, &r, Input::Value(0.75), 1.0).0, Phase::Firing);
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.65), 2.0).0,
            Phase::Firing,
            "above clear"
        );
        assert_eq!(phase(&mut e, &r, Input::Value(0.6), 3.0).0, Phase::Ok);
    }

    #[test]
    fn unknown_neither_fires_nor_resolves() {
        let r = rule(60.0, 0.0, None);
        let mut e = Engine::new();
        assert_eq!(
            phase(&mut e, &r, Input::Unknown("x".into()), 0.0),
            (Phase::Ok, None, true)
        );
        phase(&mut e, &r, Input::Value(0.8), 10.0);
        // Past the grace period but unknown: stays pending.
        assert_eq!(
            phase(&mut e, &r, Input::Unknown("pd down".into()), 100.0),
            (Phase::Pending, Some(10.0), true)
        );
        assert_eq!(
            e.get("disk_usage", "1").unwrap().value,
            Some(0.8),
            "last value kept"
        );
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.8), 110.0),
            (Phase::Firing, Some(10.0), false)
        );
        // Firing then unknown: stays firing, no false resolve.
        assert_eq!(
            phase(&mut e, &r, Input::Unknown("pd down".into()), 120.0),
            (Phase::Firing, Some(10.0), true)
        );
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.1), 130.0),
            (Phase::Ok, None, false)
        );
    }

    #[test]
    fn verdicts_bypass_thresholds() {
        let r = rule(0.0, 0.0, Some(0.0));
        let mut e = Engine::new();
        let v = |violated| Input::Verdict {
            value: 25.0,
            violated,
            reason: "x".into(),
            since: None,
        };
        assert_eq!(phase(&mut e, &r, v(true), 0.0).0, Phase::Firing);
        assert_eq!(phase(&mut e, &r, v(false), 1.0).0, Phase::Ok);
    }

    #[test]
    fn restore_continues_grace_periods() {
        let r = rule(60.0, 0.0, None);
        let mut e = Engine::new();
        phase(&mut e, &r, Input::Value(0.8), 100.0);
        let saved = e.persisted();
        assert_eq!(
            saved,
            vec![Persisted {
                name: "disk_usage".into(),
                store: "1".into(),
                phase: Phase::Pending,
                active_since: 100.0,
                clearing_since: None
            }]
        );
        let mut e2 = Engine::new();
        e2.restore(&saved, 110.0);
        // 30 s later: still pending (not re-armed), 60 s after the start: firing (not skipped).
        assert_eq!(
            phase(&mut e2, &r, Input::Value(0.8), 130.0),
            (Phase::Pending, Some(100.0), false)
        );
        assert_eq!(
            phase(&mut e2, &r, Input::Value(0.8), 160.0),
            (Phase::Firing, Some(100.0), false)
        );
    }

    #[test]
    fn a_verdicts_since_starts_the_grace_period_in_the_past() {
        let r = rule(60.0, 0.0, None);
        let mut e = Engine::new();
        let down = |since: Option<f64>| Input::Verdict {
            value: 0.0,
            violated: true,
            reason: "disconnected".into(),
            since,
        };
        // Disconnected 30 s ago: pending for the 30 s left of the grace, then firing.
        assert_eq!(
            phase(&mut e, &r, down(Some(970.0)), 1000.0),
            (Phase::Pending, Some(970.0), false)
        );
        assert_eq!(
            phase(&mut e, &r, down(Some(970.0)), 1029.0).0,
            Phase::Pending
        );
        assert_eq!(
            phase(&mut e, &r, down(Some(970.0)), 1030.0).0,
            Phase::Firing
        );
        // Down for an hour when first seen: firing at once; a since in the future is now.
        let mut e = Engine::new();
        assert_eq!(
            phase(&mut e, &r, down(Some(-2600.0)), 1000.0).0,
            Phase::Firing
        );
        let mut e = Engine::new();
        assert_eq!(
            phase(&mut e, &r, down(Some(5000.0)), 1000.0),
            (Phase::Pending, Some(1000.0), false)
        );
        // Without evidence the first violating evaluation starts it.
        let mut e = Engine::new();
        assert_eq!(
            phase(&mut e, &r, down(None), 1000.0),
            (Phase::Pending, Some(1000.0), false)
        );
    }

    #[test]
    fn a_violation_unknown_longer_than_the_hold_stops_counting() {
        let r = Rule {
            unknown_hold: 300.0,
            ..rule(0.0, 0.0, None)
        };
        let mut e = Engine::new();
        assert_eq!(phase(&mut e, &r, Input::Value(0.9), 0.0).0, Phase::Firing);
        let pd_down = || Input::Unknown("PD unavailable".into());
        assert_eq!(
            phase(&mut e, &r, pd_down(), 10.0),
            (Phase::Firing, Some(0.0), true)
        );
        assert_eq!(phase(&mut e, &r, pd_down(), 309.0).0, Phase::Firing);
        // 300 s unknown: no longer violated, still unknown.
        assert_eq!(phase(&mut e, &r, pd_down(), 310.0), (Phase::Ok, None, true));
        let st = e.get("disk_usage", "1").unwrap();
        assert!(st.message.contains("no longer counted"), "{}", st.message);
        assert_eq!(phase(&mut e, &r, pd_down(), 400.0), (Phase::Ok, None, true));
        // Inputs back and still violated: fires again (grace 0), since from now.
        assert_eq!(
            phase(&mut e, &r, Input::Value(0.9), 410.0),
            (Phase::Firing, Some(410.0), false)
        );
        // A known input resets the unknown clock: a short gap later is held again.
        assert_eq!(phase(&mut e, &r, pd_down(), 420.0).0, Phase::Firing);
        assert_eq!(phase(&mut e, &r, Input::Value(0.9), 700.0).0, Phase::Firing);
        assert_eq!(phase(&mut e, &r, pd_down(), 710.0).0, Phase::Firing);
        // Pending series are released the same way; hold 0 keeps them until data returns.
        let r60 = Rule {
            grace: 60.0,
            ..r.clone()
        };
        let mut e = Engine::new();
        phase(&mut e, &r60, Input::Value(0.9), 0.0);
        assert_eq!(phase(&mut e, &r60, pd_down(), 1.0).0, Phase::Pending);
        assert_eq!(
            phase(&mut e, &r60, pd_down(), 301.0),
            (Phase::Ok, None, true)
        );
        let forever = Rule {
            unknown_hold: 0.0,
            ..r
        };
        let mut e = Engine::new();
        phase(&mut e, &forever, Input::Value(0.9), 0.0);
        assert_eq!(phase(&mut e, &forever, pd_down(), 1e6).0, Phase::Firing);
    }

    #[test]
    fn restored_series_are_unknown_from_the_restart_and_held_from_then() {
        let r = Rule {
            unknown_hold: 300.0,
            ..rule(0.0, 0.0, None)
        };
        let saved = vec![Persisted {
            name: "disk_usage".into(),
            store: "1".into(),
            phase: Phase::Firing,
            active_since: 50.0,
            clearing_since: None,
        }];
        let mut e = Engine::new();
        e.restore(&saved, 1000.0);
        let st = e.get("disk_usage", "1").unwrap();
        assert_eq!(
            (st.phase, st.unknown, st.active_since),
            (Phase::Firing, true, Some(50.0))
        );
        let pd_down = || Input::Unknown("PD unavailable".into());
        assert_eq!(phase(&mut e, &r, pd_down(), 1299.0).0, Phase::Firing);
        assert_eq!(phase(&mut e, &r, pd_down(), 1300.0).0, Phase::Ok);
    }

    #[test]
    fn a_measured_value_compares_with_hysteresis_and_may_say_when_it_began() {
        let r = rule(600.0, 0.0, Some(0.6));
        let mut e = Engine::new();
        let m = |v: f64, since: Option<f64>| Input::Measured {
            value: v,
            note: "on the PD leader pd-1".into(),
            since,
        };
        // Began 900 s before the first look: past the 600 s grace at once.
        assert_eq!(
            phase(&mut e, &r, m(0.9, Some(100.0)), 1000.0),
            (Phase::Firing, Some(100.0), false)
        );
        assert_eq!(
            &*e.get("disk_usage", "1").unwrap().message,
            "0.9000 > 0.7000 (violated); on the PD leader pd-1"
        );
        // Below the threshold but above clear_threshold: still firing.
        assert_eq!(phase(&mut e, &r, m(0.65, None), 1010.0).0, Phase::Firing);
        assert_eq!(phase(&mut e, &r, m(0.5, None), 1020.0).0, Phase::Ok);
        // A `since` in the future counts from now; without one, from now too.
        assert_eq!(
            phase(&mut e, &r, m(0.9, Some(5000.0)), 1030.0),
            (Phase::Pending, Some(1030.0), false)
        );
        assert_eq!(
            &*e.get("disk_usage", "1").unwrap().message,
            "0.9000 > 0.7000 (violated); on the PD leader pd-1"
        );
    }

    #[test]
    fn retain_drops_vanished_stores() {
        let r = rule(0.0, 0.0, None);
        let mut e = Engine::new();
        e.evaluate(&r, "1", Input::Value(0.8), 0.0);
        e.evaluate(&r, "2", Input::Value(0.8), 0.0);
        e.retain_stores("disk_usage", &|s| s == "1");
        let keys: Vec<_> = e.states().map(|(k, _)| k.1.clone()).collect();
        assert_eq!(keys, vec!["1"]);
    }
}
