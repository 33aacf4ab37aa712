//! The evaluators of the invariants on PD's cluster-wide sources, read every
//! `pd.health_interval`: the PD leader's own `/metrics` (region health counts, etcd),
//! `/gc/safepoint` and `/min-resolved-ts`. Each is unknown before its first reading and while
//! its source fails, and has no series where this PD does not serve it (an older version) or
//! does not count it.

use super::{printable, reading, rfc3339, seconds};
use crate::domain::{MinResolvedTs, resolved_ts_known, tso_unix_seconds};
use crate::invariants::definitions::{Definition, EtcdLimits};
use crate::invariants::engine::Input;
use crate::observations::{LeaderReading, Observations, Polled, is_leaving};

/// `region_down_peers`: `pd_regions_status{type="down-peer-region-count"}` of the PD leader.
pub fn region_down_peers(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    region_count(obs, "down-peer-region-count")
}

/// `region_miss_peers`: `pd_regions_status{type="miss-peer-region-count"}` of the PD leader.
pub fn region_miss_peers(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    region_count(obs, "miss-peer-region-count")
}

/// `region_pending_peers`: `pd_regions_status{type="pending-peer-region-count"}`.
pub fn region_pending_peers(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    region_count(obs, "pending-peer-region-count")
}

/// `region_offline_peers`: `pd_regions_status{type="offline-peer-region-count"}`.
pub fn region_offline_peers(_: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    region_count(obs, "offline-peer-region-count")
}

/// `pd_etcd`: the PD leader's WAL fsync p99 and etcd database size against its quota.
pub fn pd_etcd(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    let input = match reading(&obs.pd_leader_metrics, "the PD leader's /metrics") {
        Err(why) => Input::Unknown(why),
        Ok(None) => return Vec::new(),
        Ok(Some((_, r))) => etcd_input(r, &def.etcd),
    };
    vec![(String::new(), input)]
}

/// `gc_safepoint_lag`: how old PD's GC safe point was when read; no series while GC never ran
/// (`gc_safe_point` 0: no TiDB GC worker, e.g. a RawKV cluster).
pub fn gc_safepoint_lag(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    let input = match reading(&obs.gc_safepoint, "PD's /gc/safepoint") {
        Err(why) => Input::Unknown(why),
        Ok(None) => return Vec::new(),
        Ok(Some((_, g))) if g.gc_safe_point == 0 => return Vec::new(),
        Ok(Some((at, g))) => {
            let t = tso_unix_seconds(g.gc_safe_point);
            let holder = match g.oldest_service(at) {
                Some(s) => format!(
                    "the oldest service safe point is held by `{}` (at {})",
                    printable(&s.service_id),
                    rfc3339(tso_unix_seconds(s.safe_point))
                ),
                None => "no unexpired service safe point".to_owned(),
            };
            Input::Measured {
                value: (at - t).max(0.0),
                note: format!("GC safe point at {}; {holder}", rfc3339(t)),
                since: Some(t + def.rule.threshold),
            }
        }
    };
    vec![(String::new(), input)]
}

/// `resolved_ts_lag`: how far PD's min resolved ts lagged when read, cluster-wide (`""`) and
/// for each evaluated store PD reports a value for. Nothing where PD does not persist it
/// (`is_real_time` false: the value is frozen) or does not serve it.
pub fn resolved_ts_lag(def: &Definition, obs: &Observations) -> Vec<(String, Input)> {
    match &obs.min_resolved_ts {
        Polled::NotServed => Vec::new(),
        Polled::NotYet => vec![(
            String::new(),
            Input::Unknown("PD's /min-resolved-ts not read yet".into()),
        )],
        Polled::Failed { reason, last } => {
            let why = format!("PD's /min-resolved-ts: {reason}");
            let mut out = vec![(String::new(), Input::Unknown(why.clone()))];
            if let Some((_, r)) = last {
                out.extend(
                    resolved_series(obs, r)
                        .into_iter()
                        .filter(|(store, _)| !store.is_empty())
                        .map(|(store, _)| (store, Input::Unknown(why.clone()))),
                );
            }
            out
        }
        Polled::Read { at, value } => resolved_series(obs, value)
            .into_iter()
            .map(|(store, ts)| {
                let t = tso_unix_seconds(ts);
                let whose = if store.is_empty() {
                    "the cluster's"
                } else {
                    "the store's"
                };
                let input = Input::Measured {
                    value: (at - t).max(0.0),
                    note: format!("{whose} min resolved ts is at {}", rfc3339(t)),
                    since: Some(t + def.rule.threshold),
                };
                (store, input)
            })
            .collect(),
    }
}

/// One `pd_regions_status` type of the PD leader as the cluster-wide series; none when this PD
/// version does not count that type.
fn region_count(obs: &Observations, ty: &str) -> Vec<(String, Input)> {
    let input = match reading(&obs.pd_leader_metrics, "the PD leader's /metrics") {
        Err(why) => Input::Unknown(why),
        Ok(None) => return Vec::new(),
        Ok(Some((_, r))) => match &r.metrics.region_status {
            None => Input::Unknown(format!(
                "the PD leader {} exports no pd_regions_status yet (PD counts regions once it has led for a while)",
                r.member
            )),
            Some(counts) => match counts.get(ty) {
                None => return Vec::new(),
                Some(&n) => Input::Measured {
                    value: n,
                    note: format!(
                        "pd_regions_status{{type=\"{ty}\"}} of the PD leader {}",
                        r.member
                    ),
                    since: None,
                },
            },
        },
    };
    vec![(String::new(), input)]
}

/// `pd_etcd` on one reading: violated when a limit is exceeded (value: how many), unknown when
/// nothing is exceeded but a part cannot be judged.
fn etcd_input(r: &LeaderReading, limits: &EtcdLimits) -> Input {
    let (mut problems, mut fine, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    match &r.wal_fsync_p99 {
        Ok((p99, window)) => {
            let text = format!("WAL fsync p99 {} over {window:.0}s", seconds(*p99));
            if *p99 > limits.wal_fsync_p99 {
                problems.push(format!("{text} > {}", seconds(limits.wal_fsync_p99)));
            } else {
                fine.push(text);
            }
        }
        Err(why) => unknown.push(why.clone()),
    }
    match (r.metrics.db_total_size_bytes, r.metrics.quota_backend_bytes) {
        (Some(size), Some(quota)) if quota > 0.0 => {
            let ratio = size / quota;
            let text = format!(
                "database {:.1} MiB, {:.1}% of quota-backend-bytes {:.1} MiB",
                size / 1048576.0,
                ratio * 100.0,
                quota / 1048576.0
            );
            if ratio > limits.db_quota_ratio {
                problems.push(format!("{text} > {}%", limits.db_quota_ratio * 100.0));
            } else {
                fine.push(text);
            }
        }
        // No quota (etcd without one): only the fsync latency is judged.
        (Some(_), _) => {}
        (None, _) => unknown.push("no etcd_mvcc_db_total_size_in_bytes".to_owned()),
    }
    let on = format!("PD leader {}", r.member);
    if !problems.is_empty() {
        let mut reason = format!("{on}: {}", problems.join("; "));
        for (what, list) in [("ok", &fine), ("unknown", &unknown)] {
            if !list.is_empty() {
                reason.push_str(&format!(" ({what}: {})", list.join("; ")));
            }
        }
        Input::Verdict {
            value: problems.len() as f64,
            violated: true,
            reason,
            since: None,
        }
    } else if !unknown.is_empty() {
        Input::Unknown(format!("{on}: {}", unknown.join("; ")))
    } else {
        Input::Verdict {
            value: 0.0,
            violated: false,
            reason: format!("{on}: {}", fine.join("; ")),
            since: None,
        }
    }
}

/// The series `resolved_ts_lag` has for one reading: `("", cluster ts)` and `(store, ts)` for
/// the evaluated stores, each only with a usable ts; none where PD does not persist the value.
fn resolved_series(obs: &Observations, r: &MinResolvedTs) -> Vec<(String, u64)> {
    if !r.is_real_time {
        return Vec::new();
    }
    let mut out = Vec::new();
    if resolved_ts_known(r.cluster) {
        out.push((String::new(), r.cluster));
    }
    if let Some(stores) = &r.stores {
        for s in obs.stores.iter().filter(|s| !is_leaving(s)) {
            if let Some(&ts) = stores.get(&s.id)
                && resolved_ts_known(ts)
            {
                out.push((s.id.to_string(), ts));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{
        GcSafePoints, PdLeaderMetrics, ServiceSafePoint, Store, StoreState, tso_from_unix_seconds,
    };
    use crate::invariants::engine::{Engine, Phase};
    use crate::observations::Unavailable;

    const T0: f64 = 1_700_000_000.0;

    use super::super::default_definition as def;

    fn metrics(regions: Option<&[(&'static str, f64)]>) -> PdLeaderMetrics {
        PdLeaderMetrics {
            service_member_role: Some(1.0),
            etcd_is_leader: Some(1.0),
            region_status: regions.map(|r| r.iter().copied().collect::<BTreeMap<_, _>>()),
            wal_fsync: None,
            db_total_size_bytes: Some(200.0 * 1048576.0),
            quota_backend_bytes: Some(8192.0 * 1048576.0),
            ..PdLeaderMetrics::default()
        }
    }

    fn leader(m: PdLeaderMetrics, p99: Result<(f64, f64), String>) -> Polled<LeaderReading> {
        Polled::Read {
            at: T0,
            value: LeaderReading {
                member: "pd-1".into(),
                endpoint: "http://pd-1:2379".into(),
                metrics: m,
                wal_fsync_p99: p99,
            },
        }
    }

    fn obs(stores: Vec<Store>) -> Observations {
        Observations::new(T0, stores)
    }

    /// The single input of a cluster-wide invariant (panics unless there is exactly one).
    fn only(inputs: Vec<(String, Input)>) -> Input {
        assert_eq!(inputs.len(), 1, "{inputs:?}");
        let (store, input) = inputs.into_iter().next().unwrap();
        assert_eq!(store, "");
        input
    }

    fn val(i: &Input) -> f64 {
        match i {
            Input::Measured { value, .. } | Input::Verdict { value, .. } => *value,
            other => panic!("no value: {other:?}"),
        }
    }

    fn unknown(i: &Input) -> &str {
        match i {
            Input::Unknown(why) => why,
            other => panic!("not unknown: {other:?}"),
        }
    }

    #[test]
    fn region_counts_come_from_the_leaders_page_and_only_where_pd_counts_them() {
        let mut o = obs(vec![]);
        o.pd_leader_metrics = leader(
            metrics(Some(&[
                ("down-peer-region-count", 3.0),
                ("miss-peer-region-count", 0.0),
                ("pending-peer-region-count", 101.0),
            ])),
            Ok((0.001, 30.0)),
        );
        let down = only(region_down_peers(&def("region_down_peers"), &o));
        assert_eq!(val(&down), 3.0);
        let Input::Measured { note, since, .. } = &down else {
            unreachable!()
        };
        assert_eq!(
            (note.as_str(), *since),
            (
                "pd_regions_status{type=\"down-peer-region-count\"} of the PD leader pd-1",
                None
            )
        );
        assert_eq!(
            val(&only(region_miss_peers(&def("region_miss_peers"), &o))),
            0.0
        );
        assert_eq!(
            val(&only(region_pending_peers(
                &def("region_pending_peers"),
                &o
            ))),
            101.0
        );
        // This PD version does not count offline peers: no series (not unknown).
        assert!(region_offline_peers(&def("region_offline_peers"), &o).is_empty());
        // A leader without the family yet, a failing page, nothing read yet: unknown.
        o.pd_leader_metrics = leader(metrics(None), Ok((0.001, 30.0)));
        let why = only(region_down_peers(&def("region_down_peers"), &o));
        assert!(
            unknown(&why).contains("exports no pd_regions_status"),
            "{why:?}"
        );
        o.pd_leader_metrics.fail(Unavailable::new(
            "all PD endpoints failed: connection refused",
        ));
        let why = only(region_down_peers(&def("region_down_peers"), &o));
        assert!(unknown(&why).contains("connection refused"), "{why:?}");
        o.pd_leader_metrics = Polled::NotYet;
        assert!(
            unknown(&only(region_miss_peers(&def("region_miss_peers"), &o)))
                .contains("not read yet")
        );
    }

    #[test]
    fn miss_peers_fire_after_ten_minutes_and_pending_peers_above_one_hundred() {
        let miss = def("region_miss_peers");
        let pending = def("region_pending_peers");
        let mut e = Engine::new();
        let mut o = obs(vec![]);
        o.pd_leader_metrics = leader(
            metrics(Some(&[
                ("miss-peer-region-count", 2.0),
                ("pending-peer-region-count", 100.0),
            ])),
            Ok((0.001, 30.0)),
        );
        let run = |e: &mut Engine, d: &Definition, o: &Observations, now: f64| {
            let input = only(d.inputs(o));
            e.evaluate(&d.rule, "", input, now).phase
        };
        assert_eq!(run(&mut e, &miss, &o, T0), Phase::Pending);
        assert_eq!(run(&mut e, &miss, &o, T0 + 599.0), Phase::Pending);
        assert_eq!(run(&mut e, &miss, &o, T0 + 600.0), Phase::Firing);
        // 100 pending peers is PD's limit, not past it.
        assert_eq!(run(&mut e, &pending, &o, T0), Phase::Ok);
    }

    fn etcd(p99: Result<(f64, f64), String>, db_mib: Option<f64>, quota_mib: Option<f64>) -> Input {
        let mut o = obs(vec![]);
        let mut m = metrics(Some(&[]));
        m.db_total_size_bytes = db_mib.map(|v| v * 1048576.0);
        m.quota_backend_bytes = quota_mib.map(|v| v * 1048576.0);
        o.pd_leader_metrics = leader(m, p99);
        only(pd_etcd(&def("pd_etcd"), &o))
    }

    #[test]
    fn pd_etcd_counts_a_slow_fsync_and_a_full_database() {
        let ok = etcd(Ok((0.004, 30.0)), Some(200.0), Some(8192.0));
        let Input::Verdict {
            value,
            violated,
            reason,
            ..
        } = &ok
        else {
            panic!("{ok:?}")
        };
        assert_eq!((*value, *violated), (0.0, false));
        assert_eq!(
            reason,
            "PD leader pd-1: WAL fsync p99 0.004s over 30s; database 200.0 MiB, 2.4% of quota-backend-bytes 8192.0 MiB"
        );
        let slow = etcd(Ok((1.5, 30.0)), Some(200.0), Some(8192.0));
        assert_eq!(val(&slow), 1.0);
        let full = etcd(Ok((0.004, 30.0)), Some(7000.0), Some(8192.0));
        let Input::Verdict {
            violated, reason, ..
        } = &full
        else {
            panic!("{full:?}")
        };
        assert!(
            *violated && reason.contains("85.4% of quota-backend-bytes 8192.0 MiB > 80%"),
            "{reason}"
        );
        assert_eq!(val(&etcd(Ok((2.0, 30.0)), Some(7000.0), Some(8192.0))), 2.0);
        // The first reading has no window: unknown, unless the database already says enough.
        let first = etcd(Err("first reading".into()), Some(200.0), Some(8192.0));
        assert!(unknown(&first).contains("first reading"));
        let first_full = etcd(Err("first reading".into()), Some(7000.0), Some(8192.0));
        let Input::Verdict { value, reason, .. } = &first_full else {
            panic!("{first_full:?}")
        };
        assert_eq!(*value, 1.0);
        assert!(reason.contains("(unknown: first reading)"), "{reason}");
        // etcd without a quota: only the fsync is judged.
        assert_eq!(val(&etcd(Ok((0.004, 30.0)), Some(7000.0), Some(0.0))), 0.0);
        assert!(
            unknown(&etcd(Ok((0.004, 30.0)), None, Some(8192.0)))
                .contains("etcd_mvcc_db_total_size_in_bytes")
        );
        // Configured limits.
        let mut d = def("pd_etcd");
        d.etcd = EtcdLimits {
            wal_fsync_p99: 0.001,
            db_quota_ratio: 0.01,
        };
        let mut o = obs(vec![]);
        o.pd_leader_metrics = leader(metrics(Some(&[])), Ok((0.004, 30.0)));
        assert_eq!(val(&only(pd_etcd(&d, &o))), 2.0);
    }

    fn gc(gc_age: f64, services: &[(&str, i64, f64)]) -> Polled<GcSafePoints> {
        Polled::Read {
            at: T0,
            value: GcSafePoints {
                gc_safe_point: tso_from_unix_seconds(T0 - gc_age),
                services: services
                    .iter()
                    .map(|(id, exp, age)| ServiceSafePoint {
                        service_id: (*id).into(),
                        expired_at: *exp,
                        safe_point: tso_from_unix_seconds(T0 - age),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn a_gc_safe_point_a_day_old_names_the_service_holding_it() {
        let d = def("gc_safepoint_lag");
        let mut o = obs(vec![]);
        o.gc_safepoint = gc(
            90_000.0,
            &[
                ("gc_worker", i64::MAX, 600.0),
                (
                    "ticdc-default-1139748333935545375",
                    (T0 + 3600.0) as i64,
                    90_000.0,
                ),
                ("expired-br", (T0 - 1.0) as i64, 200_000.0),
            ],
        );
        let input = only(gc_safepoint_lag(&d, &o));
        let Input::Measured { value, note, since } = &input else {
            panic!("{input:?}")
        };
        assert_eq!(*value, 90_000.0);
        assert_eq!(*since, Some(T0 - 90_000.0 + 86_400.0));
        assert!(
            note.contains(
                "the oldest service safe point is held by `ticdc-default-1139748333935545375`"
            ),
            "{note}"
        );
        let mut e = Engine::new();
        assert_eq!(e.evaluate(&d.rule, "", input, T0).phase, Phase::Firing);
        // GC running normally: ok; GC never ran (0): no series; not served: no series.
        o.gc_safepoint = gc(600.0, &[("gc_worker", i64::MAX, 600.0)]);
        let ok = only(gc_safepoint_lag(&d, &o));
        assert_eq!(e.evaluate(&d.rule, "", ok, T0).phase, Phase::Ok);
        o.gc_safepoint = Polled::Read {
            at: T0,
            value: GcSafePoints::default(),
        };
        assert!(gc_safepoint_lag(&d, &o).is_empty());
        o.gc_safepoint = Polled::NotServed;
        assert!(gc_safepoint_lag(&d, &o).is_empty());
        o.gc_safepoint = Polled::NotYet;
        assert!(unknown(&only(gc_safepoint_lag(&d, &o))).contains("not read yet"));
        // No live service safe point; service ids are shown without control characters.
        o.gc_safepoint = gc(100_000.0, &[("bad\nid", i64::MAX, 100_000.0)]);
        let Input::Measured { note, .. } = only(gc_safepoint_lag(&d, &o)) else {
            unreachable!()
        };
        assert!(note.contains("`badid`"), "{note}");
        o.gc_safepoint = gc(100_000.0, &[]);
        let Input::Measured { note, .. } = only(gc_safepoint_lag(&d, &o)) else {
            unreachable!()
        };
        assert!(
            note.ends_with("; no unexpired service safe point"),
            "{note}"
        );
    }

    fn resolved(cluster_age: Option<f64>, stores: Option<&[(u64, Option<f64>)]>) -> MinResolvedTs {
        let ts = |age: Option<f64>| age.map_or(u64::MAX, |a| tso_from_unix_seconds(T0 - a));
        MinResolvedTs {
            cluster: ts(cluster_age),
            is_real_time: true,
            stores: stores.map(|s| s.iter().map(|(id, age)| (*id, ts(*age))).collect()),
        }
    }

    fn series(inputs: &[(String, Input)]) -> Vec<(&str, f64)> {
        inputs.iter().map(|(s, i)| (s.as_str(), val(i))).collect()
    }

    #[test]
    fn resolved_ts_lag_is_cluster_wide_and_per_store_where_pd_reports_it() {
        let d = def("resolved_ts_lag");
        let stores = vec![
            Store::new(1, StoreState::Up),
            Store::new(4, StoreState::Up),
            Store::new(5, StoreState::Up),
            Store::new(6, StoreState::Offline),
        ];
        let mut o = obs(stores);
        // Store 5 has no leader (u64::MAX), store 6 is being removed, store 9 is not evaluated.
        o.min_resolved_ts = Polled::Read {
            at: T0,
            value: resolved(
                Some(2.0),
                Some(&[
                    (1, Some(2.0)),
                    (4, Some(900.0)),
                    (5, None),
                    (6, Some(1.0)),
                    (9, Some(1.0)),
                ]),
            ),
        };
        let inputs = resolved_ts_lag(&d, &o);
        assert_eq!(series(&inputs), [("", 2.0), ("1", 2.0), ("4", 900.0)]);
        // Store 4 has lagged 15 minutes: past the 1 m threshold for longer than the 5 m grace.
        let mut e = Engine::new();
        let (_, lagging) = inputs.into_iter().find(|(s, _)| s == "4").unwrap();
        assert_eq!(e.evaluate(&d.rule, "4", lagging, T0).phase, Phase::Firing);
        // A lag that just crossed the threshold waits for the grace.
        o.min_resolved_ts = Polled::Read {
            at: T0,
            value: resolved(Some(61.0), None),
        };
        let inputs = resolved_ts_lag(&d, &o);
        assert_eq!(series(&inputs), [("", 61.0)]);
        let (_, lag) = inputs.into_iter().next().unwrap();
        assert_eq!(e.evaluate(&d.rule, "", lag, T0).phase, Phase::Pending);
        // Persistence off (is_real_time false): no series; not served: no series.
        o.min_resolved_ts = Polled::Read {
            at: T0,
            value: MinResolvedTs {
                is_real_time: false,
                ..resolved(Some(1.0), None)
            },
        };
        assert!(resolved_ts_lag(&d, &o).is_empty());
        o.min_resolved_ts = Polled::NotServed;
        assert!(resolved_ts_lag(&d, &o).is_empty());
        // Failing: the cluster and every store that had a series are unknown (none resolves).
        o.min_resolved_ts = Polled::Read {
            at: T0,
            value: resolved(Some(2.0), Some(&[(1, Some(2.0)), (5, None)])),
        };
        o.min_resolved_ts
            .fail(Unavailable::new("unusable reply: no `min_resolved_ts`"));
        let inputs = resolved_ts_lag(&d, &o);
        let stores: Vec<&str> = inputs.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(stores, ["", "1"]);
        assert!(
            inputs
                .iter()
                .all(|(_, i)| unknown(i).contains("no `min_resolved_ts`"))
        );
    }
}
