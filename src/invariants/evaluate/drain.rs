//! The evaluators of the invariants on how PD spreads and drains stores: `leader_imbalance`
//! (a store's leaders against the mean of the Up TiKV stores, unless PD evicts them on
//! purpose) and `offline_store_stuck` (an Offline store whose region count has stopped
//! falling). cluster-signals.md §2.1, §6, §7.

use super::{reading, rfc3339};
use crate::domain::{RemovalProgress, Store, StoreState};
use crate::invariants::definitions::Definition;
use crate::invariants::engine::Input;
use crate::observations::{Observations, Polled};

/// Whether `s` takes part in the leader balance: an Up TiKV store (TiFlash has no leaders;
/// Offline, Tombstone, Disconnected and Down stores are judged by other invariants).
fn balanced(s: &Store) -> bool {
    s.state == StoreState::Up && !s.is_tiflash()
}

/// `leader_imbalance`: per Up TiKV store, its leader count over the mean of the Up TiKV
/// stores. Below the threshold, a store PD evicts leaders from on purpose (evict-leader,
/// evict-slow-store) is ok, and the store is unknown while `/schedulers` cannot be read. No
/// series where PD serves no `/schedulers`.
pub fn leader_imbalance(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    if matches!(obs.schedulers, Polled::NotServed) {
        return Vec::new();
    }
    let counts: Vec<u64> = obs
        .stores
        .iter()
        .filter(|s| balanced(s))
        .filter_map(|s| s.leader_count)
        .collect();
    let n = counts.len();
    let mean = counts.iter().sum::<u64>() as f64 / n.max(1) as f64;
    let exemptions = reading(&obs.schedulers, "PD's /schedulers");
    let (op, threshold, clear) = (def.rule.op, def.rule.threshold, def.rule.clear_threshold);
    let ok = |reason: String| Input::Verdict {
        value: 1.0,
        violated: false,
        reason,
        since: None,
    };
    obs.stores
        .iter()
        .filter(|s| balanced(s))
        .map(|s| {
            let input = if let Some(e) = obs.pd_unavailable(s.id) {
                Input::Unknown(e.to_string())
            } else if let Some(leaders) = s.leader_count {
                if n < 2 {
                    ok(format!(
                        "{leaders} leaders; the only Up TiKV store reporting a leader count"
                    ))
                } else if mean == 0.0 {
                    ok(format!("no Up TiKV store has leaders yet ({n} stores)"))
                } else {
                    let ratio = leaders as f64 / mean;
                    let note = format!(
                        "{leaders} leaders, {:.0}% of the mean {mean:.1} over {n} Up TiKV stores",
                        ratio * 100.0
                    );
                    let below =
                        op.holds(ratio, threshold) || clear.is_some_and(|c| op.holds(ratio, c));
                    match &exemptions {
                        _ if !below => Input::Measured {
                            value: ratio,
                            note,
                            since: None,
                        },
                        Err(why) => Input::Unknown(format!(
                            "{note}; whether PD evicts its leaders on purpose is unknown: {why}"
                        )),
                        Ok(sch) => match (*sch).and_then(|(_, sch)| sch.evicting(s)) {
                            Some(why) => Input::Verdict {
                                value: ratio,
                                violated: false,
                                reason: format!("{note}; exempt: {why}"),
                                since: None,
                            },
                            None => Input::Measured {
                                value: ratio,
                                note,
                                since: None,
                            },
                        },
                    }
                }
            } else {
                Input::Unknown("PD reports no leader_count for this store".into())
            };
            (s.id.to_string(), input)
        })
        .collect()
}

/// `offline_store_stuck`: per Offline store, seconds since its region count last fell (or since
/// this process first saw it Offline), with PD's own progress in the message where PD exports
/// it. Until the count is seen falling (the history starts with each process) the store is
/// unknown, unless PD reports the removal moving, and violated once the threshold has passed
/// since the first observation.
pub fn offline_store_stuck(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    let progress = obs
        .pd_leader_metrics
        .last()
        .map(|(_, r)| &r.metrics.removal);
    obs.stores
        .iter()
        .filter(|s| s.state == StoreState::Offline)
        .map(|s| {
            let input = if let Some(e) = obs.pd_unavailable(s.id) {
                Input::Unknown(e.to_string())
            } else {
                match (obs.offline.get(s.id), s.region_count) {
                    (Some(r), Some(now_regions)) => {
                        let mut note = if r.first {
                            format!(
                                "{now_regions} regions; not fallen below {} since this exporter first saw the store Offline at {}",
                                r.regions,
                                rfc3339(r.since)
                            )
                        } else {
                            format!(
                                "{now_regions} regions; last fell to {} at {}",
                                r.regions,
                                rfc3339(r.since)
                            )
                        };
                        let pd = progress.and_then(|m| m.get(&s.id));
                        if let Some(p) = pd {
                            note.push_str(&format!("; PD: {}", progress_text(p)));
                        }
                        let value = (obs.now - r.since).max(0.0);
                        let moving = pd.is_some_and(|p| p.speed.is_some_and(|v| v > 0.0));
                        if r.first && !moving && !def.rule.op.holds(value, def.rule.threshold) {
                            // Not seen falling yet: whether it fell before this process
                            // watched cannot be told (after a restart, a stalled removal must
                            // not look resolved); PD saying it moves is enough to be ok.
                            Input::Unknown(format!(
                                "{note}; its region count has not been seen falling yet: judged once it falls, or {} after the first observation",
                                super::seconds(def.rule.threshold)
                            ))
                        } else {
                            Input::Measured {
                                value,
                                note,
                                since: Some(r.since + def.rule.threshold),
                            }
                        }
                    }
                    _ => Input::Unknown("PD reports no region_count for this Offline store".into()),
                }
            };
            (s.id.to_string(), input)
        })
        .collect()
}

/// PD's removal progress for a message: `43% done, 12.5 MiB/s, about 30m left`.
fn progress_text(p: &RemovalProgress) -> String {
    let mut parts = Vec::new();
    if let Some(done) = p.progress {
        parts.push(format!("{:.0}% done", done * 100.0));
    }
    if p.stalled() {
        parts.push("not moving (speed 0, no ETA)".to_owned());
    } else {
        if let Some(v) = p.speed {
            parts.push(format!("{v:.1} MiB/s"));
        }
        if let Some(eta) = p.eta {
            parts.push(format!("about {:.0}m left", (eta / 60.0).ceil()));
        }
    }
    if parts.is_empty() {
        "no progress reported".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::{PdLeaderMetrics, Schedulers, SlowStoreEviction};
    use crate::invariants::engine::{Engine, Phase};
    use crate::observations::{LeaderReading, Unavailable};

    const T0: f64 = 1_700_000_000.0;

    use super::super::default_definition as def;

    fn tikv(id: u64, leaders: u64) -> Store {
        Store {
            leader_count: Some(leaders),
            ..Store::new(id, StoreState::Up)
        }
    }

    fn schedulers(evict_leader: &[u64], slow: SlowStoreEviction) -> Polled<Schedulers> {
        Polled::Read {
            at: T0,
            value: Schedulers {
                running: 4,
                evict_leader: evict_leader.iter().copied().collect(),
                evict_slow_store: slow,
            },
        }
    }

    /// `(store, value or verdict, text)` of each series.
    fn show(inputs: &[(String, Input)]) -> Vec<(String, String)> {
        inputs
            .iter()
            .map(|(s, i)| {
                let v = match i {
                    Input::Measured { value, note, .. } => format!("{value:.2} {note}"),
                    Input::Verdict {
                        value,
                        violated,
                        reason,
                        ..
                    } => format!("{value:.2} ok={} {reason}", !violated),
                    Input::Unknown(why) => format!("unknown {why}"),
                    Input::Value(v) => format!("{v}"),
                };
                (s.clone(), v)
            })
            .collect()
    }

    #[test]
    fn a_store_with_few_leaders_is_measured_against_the_mean_of_up_tikv_stores() {
        let d = def("leader_imbalance");
        let mut tiflash = tikv(20, 0);
        tiflash.labels = vec![("engine".into(), "tiflash".into())];
        let stores = vec![
            tikv(1, 100),
            tikv(2, 100),
            tikv(3, 10),
            tiflash,
            // Offline and Down stores have no series and do not count in the mean.
            Store {
                state: StoreState::Offline,
                ..tikv(4, 0)
            },
            Store {
                state: StoreState::Down,
                ..tikv(5, 0)
            },
        ];
        let mut o = Observations::new(T0, stores);
        o.schedulers = schedulers(&[], SlowStoreEviction::NotRunning);
        let inputs = leader_imbalance(&d, &o);
        assert_eq!(
            show(&inputs),
            [
                (
                    "1".into(),
                    "1.43 100 leaders, 143% of the mean 70.0 over 3 Up TiKV stores".into()
                ),
                (
                    "2".into(),
                    "1.43 100 leaders, 143% of the mean 70.0 over 3 Up TiKV stores".into()
                ),
                (
                    "3".into(),
                    "0.14 10 leaders, 14% of the mean 70.0 over 3 Up TiKV stores".into()
                ),
            ]
        );
        // Pending for the 10 m grace, then firing; back above half the mean: resolved.
        let mut e = Engine::new();
        let run = |e: &mut Engine, o: &Observations, now: f64| {
            let (_, i) = leader_imbalance(&d, o)
                .into_iter()
                .find(|(s, _)| s == "3")
                .unwrap();
            e.evaluate(&d.rule, "3", i, now).phase
        };
        assert_eq!(run(&mut e, &o, T0), Phase::Pending);
        assert_eq!(run(&mut e, &o, T0 + 599.0), Phase::Pending);
        assert_eq!(run(&mut e, &o, T0 + 600.0), Phase::Firing);
        o.stores[2].leader_count = Some(40);
        assert_eq!(run(&mut e, &o, T0 + 630.0), Phase::Ok);
    }

    #[test]
    fn evicted_stores_are_exempt_in_every_pd_versions_form() {
        let d = def("leader_imbalance");
        let mut slow = tikv(3, 0);
        slow.slow_score = Some(100.0);
        let mut o = Observations::new(T0, vec![tikv(1, 50), tikv(2, 50), slow]);
        let verdict = |o: &Observations| {
            let (_, i) = leader_imbalance(&d, o).pop().unwrap();
            show(&[("3".into(), i)])[0].1.clone()
        };
        // evict-leader (any version: the list endpoint, or v3.0's per-store names, are both
        // read into the same set by the client).
        o.schedulers = schedulers(&[3], SlowStoreEviction::NotRunning);
        assert_eq!(
            verdict(&o),
            "0.00 ok=true 0 leaders, 0% of the mean 33.3 over 3 Up TiKV stores; exempt: an evict-leader-scheduler targets it"
        );
        // evict-slow-store where PD does not list targets (≤ v8.5.4): PD's trigger, score 100.
        o.schedulers = schedulers(&[], SlowStoreEviction::Unlisted);
        assert!(
            verdict(&o).ends_with("(slow_score >= 100)"),
            "{}",
            verdict(&o)
        );
        // v8.5.5+: the list decides; the store is not in it.
        o.schedulers = schedulers(&[], SlowStoreEviction::Listed(BTreeSet::from([9])));
        assert!(verdict(&o).starts_with("0.00 0 leaders"), "{}", verdict(&o));
        o.schedulers = schedulers(&[], SlowStoreEviction::Listed(BTreeSet::from([3])));
        assert!(
            verdict(&o).contains("exempt: evict-slow-store"),
            "{}",
            verdict(&o)
        );
        // The scheduler is not running: a score of 100 alone exempts nothing.
        o.schedulers = schedulers(&[], SlowStoreEviction::NotRunning);
        assert!(verdict(&o).starts_with("0.00 0 leaders"));
    }

    #[test]
    fn unreadable_schedulers_make_only_stores_below_the_threshold_unknown() {
        let d = def("leader_imbalance");
        let mut o = Observations::new(T0, vec![tikv(1, 60), tikv(2, 60), tikv(3, 5)]);
        o.schedulers = schedulers(&[3], SlowStoreEviction::NotRunning);
        o.schedulers
            .fail(Unavailable::new("all PD endpoints failed: HTTP 500"));
        let s = show(&leader_imbalance(&d, &o));
        assert!(s[0].1.starts_with("1.44 60 leaders"), "{s:?}");
        assert_eq!(
            s[2].1,
            "unknown 5 leaders, 12% of the mean 41.7 over 3 Up TiKV stores; whether PD evicts its leaders on purpose is unknown: PD's /schedulers: all PD endpoints failed: HTTP 500"
        );
        o.schedulers = Polled::NotYet;
        assert!(
            show(&leader_imbalance(&d, &o))[2]
                .1
                .contains("not read yet")
        );
        // A PD without /schedulers: no series at all.
        o.schedulers = Polled::NotServed;
        assert!(leader_imbalance(&d, &o).is_empty());
        // PD failing: every store unknown.
        o.schedulers = schedulers(&[], SlowStoreEviction::NotRunning);
        o.pd_error = Some(Unavailable::new("refused"));
        assert!(
            leader_imbalance(&d, &o)
                .iter()
                .all(|(_, i)| matches!(i, Input::Unknown(_)))
        );
    }

    #[test]
    fn a_single_store_or_a_fresh_cluster_is_balanced() {
        let d = def("leader_imbalance");
        let mut o = Observations::new(T0, vec![tikv(1, 0)]);
        o.schedulers = schedulers(&[], SlowStoreEviction::NotRunning);
        assert_eq!(
            show(&leader_imbalance(&d, &o)),
            [(
                "1".into(),
                "1.00 ok=true 0 leaders; the only Up TiKV store reporting a leader count".into()
            )]
        );
        o.stores = vec![tikv(1, 0), tikv(2, 0), Store::new(3, StoreState::Up)];
        let s = show(&leader_imbalance(&d, &o));
        assert_eq!(
            s[0].1,
            "1.00 ok=true no Up TiKV store has leaders yet (2 stores)"
        );
        assert_eq!(s[2].1, "unknown PD reports no leader_count for this store");
    }

    fn offline(id: u64, regions: u64) -> Store {
        Store {
            region_count: Some(regions),
            ..Store::new(id, StoreState::Offline)
        }
    }

    #[test]
    fn an_offline_store_whose_regions_stop_falling_fires_after_thirty_minutes_and_resolves_when_they_fall()
     {
        let d = def("offline_store_stuck");
        let mut e = Engine::new();
        let mut history = crate::domain::OfflineHistory::default();
        let mut round = |regions: u64, now: f64, e: &mut Engine| {
            let stores = vec![tikv(1, 10), offline(5, regions)];
            history.observe(&stores, now);
            let mut o = Observations::new(now, stores);
            o.offline = history.clone();
            let mut inputs = offline_store_stuck(&d, &o);
            assert_eq!(inputs.len(), 1);
            let (store, input) = inputs.pop().unwrap();
            assert_eq!(store, "5");
            let text = show(&[(store.clone(), input.clone())])[0].1.clone();
            let st = e.evaluate(&d.rule, &store, input, now);
            (st.phase, text)
        };
        // First seen: unknown until it falls; falling: ok.
        assert!(round(500, T0, &mut e).1.starts_with("unknown 500 regions"));
        let (p, text) = round(400, T0 + 60.0, &mut e);
        assert_eq!(p, Phase::Ok);
        assert_eq!(
            text,
            "0.00 400 regions; last fell to 400 at 2023-11-14T22:14:20Z"
        );
        // Stalls (a split even adds one): firing once 30 m have passed without a decrease.
        assert_eq!(round(401, T0 + 1800.0, &mut e).0, Phase::Ok);
        let (p, text) = round(401, T0 + 1861.0, &mut e);
        assert_eq!(p, Phase::Firing);
        assert!(
            text.starts_with("1801.00 401 regions; last fell to 400"),
            "{text}"
        );
        // Resumes: resolved at once.
        assert_eq!(round(390, T0 + 1900.0, &mut e).0, Phase::Ok);
    }

    #[test]
    fn offline_messages_carry_pds_progress_and_the_first_observation() {
        let d = def("offline_store_stuck");
        let stores = vec![offline(5, 100), offline(6, 80)];
        let mut o = Observations::new(T0 + 10.0, stores.clone());
        o.offline.observe(&stores, T0);
        let mut m = PdLeaderMetrics::default();
        m.removal.insert(
            5,
            RemovalProgress {
                progress: Some(0.4321),
                speed: Some(0.0),
                eta: Some(f64::MAX),
            },
        );
        m.removal.insert(
            6,
            RemovalProgress {
                progress: Some(0.9),
                speed: Some(12.5),
                eta: Some(1823.4),
            },
        );
        o.pd_leader_metrics = Polled::Read {
            at: T0,
            value: LeaderReading {
                member: "pd-1".into(),
                endpoint: "http://pd-1:2379".into(),
                metrics: m,
                wal_fsync_p99: Err("first".into()),
            },
        };
        let s = show(&offline_store_stuck(&d, &o));
        assert_eq!(
            s,
            [
                ("5".into(), "unknown 100 regions; not fallen below 100 since this exporter first saw the store Offline at 2023-11-14T22:13:20Z; PD: 43% done, not moving (speed 0, no ETA); its region count has not been seen falling yet: judged once it falls, or 1800s after the first observation".into()),
                ("6".into(), "10.00 80 regions; not fallen below 80 since this exporter first saw the store Offline at 2023-11-14T22:13:20Z; PD: 90% done, 12.5 MiB/s, about 31m left".into()),
            ]
        );
        // Never seen falling, PD not reporting it moving: violated once the threshold has
        // passed since the first observation (e.g. after an exporter restart).
        o.now = T0 + 1801.0;
        let s = show(&offline_store_stuck(&d, &o));
        assert!(
            s[0].1.starts_with("1801.00 100 regions; not fallen"),
            "{s:?}"
        );
        // PD failing, or a store without a region count: unknown (never ok).
        o.pd_error = Some(Unavailable::new("refused"));
        assert!(
            offline_store_stuck(&d, &o)
                .iter()
                .all(|(_, i)| matches!(i, Input::Unknown(_)))
        );
        let mut o = Observations::new(T0, vec![Store::new(7, StoreState::Offline), tikv(1, 3)]);
        o.offline.observe(&o.stores.clone(), T0);
        assert_eq!(
            show(&offline_store_stuck(&d, &o)),
            [(
                "7".into(),
                "unknown PD reports no region_count for this Offline store".into()
            )]
        );
    }
}
