//! PD's cluster-wide sources, read by the poller at most once per `pd.health_interval`: the PD
//! leader's own `/metrics` (region health counts, etcd, scale-in progress), `/gc/safepoint`,
//! `/min-resolved-ts?scope=cluster` and `/schedulers` (with at most the two list endpoints of
//! the leader-evicting schedulers). Each is one request (`/schedulers` at most three; the four
//! concurrently) whatever the number of regions or stores; none is sent while PD does not
//! answer `/stores` (each would only add its timeouts to the round): they are then failed with
//! PD's reason and asked again as soon as PD answers. Each is its own source (`pd:metrics`,
//! `pd:gc_safepoint`, `pd:min_resolved_ts`, `pd:schedulers`); a PD version without the endpoint
//! (404) answers, so its source is up, and what depends on it has no series. The WAL fsync p99
//! is taken over the window between two readings of the same member's cumulative histogram.
//!
//! It also keeps, from every `/stores` answer, the region count history of the Offline stores
//! ([`OfflineHistory`]: one record per Offline store, dropped when it leaves Offline). The
//! history is not persisted: after a restart it begins again at the first observation (until
//! the count is seen falling, `offline_store_stuck` is unknown rather than ok), so a stalled
//! removal is seen again a full threshold after the restart, and never looks resolved.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::domain::{
    Histogram, OfflineHistory, PdHealth, REGION_STATUS_TYPES, Schedulers, Store, StoreHotspot,
    resolved_ts_known, tso_unix_seconds,
};
use crate::log::info;
use crate::observations::{LeaderReading, Observations, Polled, Unavailable};
use crate::snapshot::PdClusterView;
use crate::sources::pd::{PdClient, PdError};

/// The leader's `/metrics`.
pub(crate) const METRICS_SOURCE: &str = "pd:metrics";
/// `/gc/safepoint`.
pub(crate) const GC_SOURCE: &str = "pd:gc_safepoint";
/// `/min-resolved-ts`.
pub(crate) const RESOLVED_TS_SOURCE: &str = "pd:min_resolved_ts";
/// `/schedulers` and the evict-leader / evict-slow-store lists.
pub(crate) const SCHEDULERS_SOURCE: &str = "pd:schedulers";
/// Every source this module reads, as `tikv_health_exporter_source_up{source}` names them.
pub(crate) const SOURCES: [&str; 4] = [
    METRICS_SOURCE,
    GC_SOURCE,
    RESOLVED_TS_SOURCE,
    SCHEDULERS_SOURCE,
];

/// One attempt on a source, for the poller to record (health, transition logging).
#[derive(Debug)]
pub(crate) struct Attempt {
    /// The source (one of [`SOURCES`]).
    pub(crate) source: &'static str,
    /// When it started.
    pub(crate) started: Instant,
    /// Its outcome.
    pub(crate) result: Result<(), Unavailable>,
}

/// The last readings of the cluster-wide PD sources and when they were asked.
#[derive(Debug)]
pub(crate) struct Coverage {
    interval: f64,
    last_asked: Option<f64>,
    leader: Polled<LeaderReading>,
    gc: Polled<crate::domain::GcSafePoints>,
    resolved: Polled<crate::domain::MinResolvedTs>,
    schedulers: Polled<Schedulers>,
    offline: OfflineHistory,
    /// The previous WAL fsync histogram, with the endpoint and time it was read at.
    fsync_base: Option<(String, f64, Histogram)>,
    /// Sources this PD does not serve, as last logged.
    not_served: BTreeSet<&'static str>,
}

impl Coverage {
    /// Nothing read yet; asked every `interval` seconds.
    pub(crate) fn new(interval: f64) -> Coverage {
        Coverage {
            interval,
            last_asked: None,
            leader: Polled::NotYet,
            gc: Polled::NotYet,
            resolved: Polled::NotYet,
            schedulers: Polled::NotYet,
            offline: OfflineHistory::default(),
            fsync_base: None,
            not_served: BTreeSet::new(),
        }
    }

    /// A reloaded `pd.health_interval`.
    pub(crate) fn set_interval(&mut self, interval: f64) {
        self.interval = interval;
    }

    /// Takes a `/stores` answer read at `now` into the Offline stores' history.
    pub(crate) fn observe_stores(&mut self, stores: &[Store], now: f64) {
        self.offline.observe(stores, now);
    }

    /// Reads the sources if they are due at `now`: `health` names the PD leader, `pd_error` is
    /// set when `/stores` failed this round. Returns the attempts made (none when not due).
    pub(crate) async fn poll(
        &mut self,
        pd: &PdClient,
        health: &Result<PdHealth, Unavailable>,
        pd_error: Option<&Unavailable>,
        now: f64,
    ) -> Vec<Attempt> {
        if self.last_asked.is_some_and(|t| now - t < self.interval) {
            return Vec::new();
        }
        let started = Instant::now();
        if let Some(e) = pd_error {
            let why = Unavailable::new(format!("not asked while PD does not answer /stores: {e}"));
            self.leader.fail(why.clone());
            self.gc.fail(why.clone());
            self.resolved.fail(why.clone());
            self.schedulers.fail(why.clone());
            return SOURCES
                .iter()
                .map(|&source| Attempt {
                    source,
                    started,
                    result: Err(why.clone()),
                })
                .collect();
        }
        self.last_asked = Some(now);
        let leader = match health {
            Ok(PdHealth {
                leader: Some(l), ..
            }) => Ok(l.clone()),
            Ok(_) => Err("PD has no leader".to_owned()),
            Err(e) => Err(format!("the PD leader is not known: {e}")),
        };
        let metrics = async {
            match &leader {
                Ok(l) => pd
                    .leader_metrics(l)
                    .await
                    .map(|(ep, m)| (l.name.clone(), ep, m))
                    .map_err(|e| e.to_string()),
                Err(why) => Err(why.clone()),
            }
        };
        let (metrics, gc, resolved, schedulers) = futures_util::join!(
            metrics,
            pd.gc_safepoint(),
            pd.min_resolved_ts(),
            pd.schedulers()
        );
        let mut attempts = Vec::with_capacity(SOURCES.len());
        let mut attempt = |source, result| {
            attempts.push(Attempt {
                source,
                started,
                result,
            })
        };
        match metrics {
            Ok((member, endpoint, metrics)) => {
                let wal_fsync_p99 = self.fsync_window(&endpoint, now, metrics.wal_fsync.as_ref());
                self.leader = Polled::Read {
                    at: now,
                    value: LeaderReading {
                        member,
                        endpoint,
                        metrics,
                        wal_fsync_p99,
                    },
                };
                attempt(METRICS_SOURCE, Ok(()));
            }
            Err(why) => {
                let why = Unavailable::new(why);
                self.leader.fail(why.clone());
                attempt(METRICS_SOURCE, Err(why));
            }
        }
        let r = update(&mut self.gc, gc, now);
        let gc_served = served(&self.gc);
        self.report_served(
            GC_SOURCE,
            gc_served,
            "/gc/safepoint (PD < v5.0)",
            "gc_safepoint_lag",
        );
        attempt(GC_SOURCE, r);
        let r = update(&mut self.resolved, resolved, now);
        let resolved_served = served(&self.resolved);
        self.report_served(
            RESOLVED_TS_SOURCE,
            resolved_served,
            "/min-resolved-ts (PD < v6.0)",
            "resolved_ts_lag",
        );
        attempt(RESOLVED_TS_SOURCE, r);
        let r = update(&mut self.schedulers, schedulers, now);
        let schedulers_served = served(&self.schedulers);
        self.report_served(
            SCHEDULERS_SOURCE,
            schedulers_served,
            "/schedulers",
            "leader_imbalance",
        );
        attempt(SCHEDULERS_SOURCE, r);
        attempts
    }

    /// The WAL fsync p99 since the previous reading of the same member, and the window's
    /// length; the current reading becomes the next one's base.
    fn fsync_window(
        &mut self,
        endpoint: &str,
        now: f64,
        current: Option<&Histogram>,
    ) -> Result<(f64, f64), String> {
        let Some(h) = current else {
            self.fsync_base = None;
            return Err("no etcd_disk_wal_fsync_duration_seconds histogram".into());
        };
        let base = self
            .fsync_base
            .replace((endpoint.to_owned(), now, h.clone()));
        match base {
            Some((ep, at, earlier)) if ep == endpoint => match h.since(&earlier) {
                // No fsync in the window: nothing was slow.
                Some(w) => Ok((w.quantile(0.99).unwrap_or(0.0), now - at)),
                None => {
                    Err("the WAL fsync counters restarted; the p99 needs the next reading".into())
                }
            },
            _ => Err(
                "first reading of this PD leader's WAL fsync histogram; the p99 needs the next one"
                    .into(),
            ),
        }
    }

    /// Logs a source turning "not served" by this PD (`served` `Some(false)`), or served again
    /// (`Some(true)`), once.
    fn report_served(
        &mut self,
        source: &'static str,
        served: Option<bool>,
        what: &str,
        invariant: &str,
    ) {
        match served {
            Some(false) if self.not_served.insert(source) => info(&format!(
                "PD does not serve {what}: {invariant} has no series"
            )),
            Some(true) if self.not_served.remove(source) => info(&format!(
                "PD serves {} now",
                what.split(' ').next().unwrap_or(what)
            )),
            _ => {}
        }
    }

    /// Puts the readings into a round's observations.
    pub(crate) fn fill(&self, obs: &mut Observations) {
        obs.pd_leader_metrics = self.leader.clone();
        obs.gc_safepoint = self.gc.clone();
        obs.min_resolved_ts = self.resolved.clone();
        obs.schedulers = self.schedulers.clone();
        obs.offline = self.offline.clone();
    }

    /// The hot traffic per store from the leader's `/metrics` of this health interval (never an
    /// older reading: a failed read leaves no traffic), or why there is none (a page without
    /// `pd_hotspot_status` included: then no store has a series).
    pub(crate) fn hotspot(&self) -> Result<&BTreeMap<u64, StoreHotspot>, String> {
        match &self.leader {
            Polled::Read { value, .. } => value.metrics.hotspot.as_ref().ok_or_else(|| {
                "the PD leader's /metrics has no pd_hotspot_status series (no hot-region statistics yet)"
                    .to_owned()
            }),
            Polled::Failed { reason, .. } => {
                Err(format!("the PD leader's /metrics failed: {reason}"))
            }
            Polled::NotYet | Polled::NotServed => {
                Err("the PD leader's /metrics has not been read yet".to_owned())
            }
        }
    }

    /// What the last good readings say, for the exported gauges; a store's min resolved ts
    /// only while it is one of `stores` (a store PD removed or made Tombstone since the last
    /// `/min-resolved-ts` loses its series with the poll that saw it go).
    pub(crate) fn view(&self, stores: &[Store]) -> PdClusterView {
        let mut v = PdClusterView {
            hotspot_unavailable: self.hotspot().err(),
            ..PdClusterView::default()
        };
        if let Some((_, r)) = self.leader.last()
            && let Some(counts) = &r.metrics.region_status
        {
            v.region_status = REGION_STATUS_TYPES
                .iter()
                .filter_map(|t| Some((*t, *counts.get(t)?)))
                .collect();
        }
        if let Some((_, g)) = self.gc.last()
            && g.gc_safe_point > 0
        {
            v.gc_safepoint = Some(tso_unix_seconds(g.gc_safe_point));
        }
        if let Some((_, r)) = self.resolved.last()
            && r.is_real_time
        {
            if resolved_ts_known(r.cluster) {
                v.min_resolved_ts
                    .push((String::new(), tso_unix_seconds(r.cluster)));
            }
            let present: BTreeSet<u64> = stores.iter().map(|s| s.id).collect();
            for (id, ts) in r.stores.iter().flatten() {
                if resolved_ts_known(*ts) && present.contains(id) {
                    v.min_resolved_ts
                        .push((id.to_string(), tso_unix_seconds(*ts)));
                }
            }
        }
        v
    }
}

/// Whether the last answer says PD serves the source (`None`: it did not answer).
fn served<T>(p: &Polled<T>) -> Option<bool> {
    match p {
        Polled::NotServed => Some(false),
        Polled::Read { .. } => Some(true),
        Polled::NotYet | Polled::Failed { .. } => None,
    }
}

/// Applies one answer (`Ok(None)`: not served) to `state`; returns the source's outcome.
fn update<T>(
    state: &mut Polled<T>,
    answer: Result<Option<T>, PdError>,
    now: f64,
) -> Result<(), Unavailable> {
    match answer {
        Ok(Some(value)) => {
            *state = Polled::Read { at: now, value };
            Ok(())
        }
        Ok(None) => {
            *state = Polled::NotServed;
            Ok(())
        }
        Err(e) => {
            let why = Unavailable::new(e.to_string());
            state.fail(why.clone());
            Err(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(counts: &[f64]) -> Histogram {
        let les = [0.001, 0.01, 1.0, 8.192, f64::INFINITY];
        Histogram {
            buckets: les.iter().copied().zip(counts.iter().copied()).collect(),
            count: *counts.last().unwrap(),
        }
    }

    #[test]
    fn the_fsync_p99_is_taken_over_the_window_of_one_member() {
        let mut c = Coverage::new(30.0);
        let e = c
            .fsync_window(
                "http://pd-0:2379",
                0.0,
                Some(&h(&[10.0, 10.0, 10.0, 10.0, 10.0])),
            )
            .unwrap_err();
        assert!(e.contains("first reading"), "{e}");
        // 100 fsyncs in 30 s, 2 of them between 1 s and 8.192 s: p99 in that bucket.
        let (p99, window) = c
            .fsync_window(
                "http://pd-0:2379",
                30.0,
                Some(&h(&[90.0, 100.0, 108.0, 110.0, 110.0])),
            )
            .unwrap();
        assert_eq!(window, 30.0);
        assert!((p99 - (1.0 + 7.192 * 0.5)).abs() < 1e-9, "{p99}");
        // No fsync since: 0, not unknown.
        let (p99, _) = c
            .fsync_window(
                "http://pd-0:2379",
                60.0,
                Some(&h(&[90.0, 100.0, 108.0, 110.0, 110.0])),
            )
            .unwrap();
        assert_eq!(p99, 0.0);
        // Another member (the leader moved), or a restart: a new base.
        let e = c
            .fsync_window(
                "http://pd-1:2379",
                90.0,
                Some(&h(&[1.0, 1.0, 1.0, 1.0, 1.0])),
            )
            .unwrap_err();
        assert!(e.contains("first reading"), "{e}");
        let e = c
            .fsync_window(
                "http://pd-1:2379",
                120.0,
                Some(&h(&[0.0, 0.0, 0.0, 0.0, 0.0])),
            )
            .unwrap_err();
        assert!(e.contains("restarted"), "{e}");
        assert!(c.fsync_window("http://pd-1:2379", 150.0, None).is_err());
    }
}
