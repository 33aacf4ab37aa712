//! Which stores PD is draining and how fast: the schedulers that move leaders off a store
//! (`/schedulers` and the evict-leader / evict-slow-store list endpoints), PD's scale-in
//! progress (`pd_cluster_progress`/`_speed`/`_eta{action="removing"}` of the leader's
//! `/metrics`), and the exporter's own record of each Offline store's region count over time.
//! cluster-signals.md §2.1, §6, §7.

use std::collections::{BTreeMap, BTreeSet};

use super::{Store, StoreState};

/// The scheduler that moves every leader off its target stores (PD ≥ v3.1: one scheduler,
/// targets in its list endpoint; v3.0: one `evict-leader-scheduler-<id>` per store).
pub const EVICT_LEADER: &str = "evict-leader-scheduler";
/// The scheduler that evicts the leaders of a store whose `slow_score` reached 100.
pub const EVICT_SLOW_STORE: &str = "evict-slow-store-scheduler";
/// The slow score at which evict-slow-store evicts a store's leaders (`slowStoreEvictThreshold`,
/// `pkg/schedule/schedulers/evict_slow_store.go`; it recovers at 1).
pub const SLOW_STORE_EVICT_SCORE: f64 = 100.0;

/// What evict-slow-store says about its targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SlowStoreEviction {
    /// The scheduler is not running.
    #[default]
    NotRunning,
    /// Running, and its list endpoint names its targets (PD ≥ v8.5.5).
    Listed(BTreeSet<u64>),
    /// Running, but PD does not list the targets (`not implements` ≤ v7.5, `evict-stores`
    /// always `null` v7.6–v8.5.4): a store with `slow_score >= 100` is taken as evicted, PD's
    /// own trigger.
    Unlisted,
}

/// The leader-evicting schedulers PD runs and whom they target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedulers {
    /// How many schedulers `/schedulers` lists (running, not disabled).
    pub running: usize,
    /// Stores evict-leader targets (empty when it does not run).
    pub evict_leader: BTreeSet<u64>,
    /// evict-slow-store's targets.
    pub evict_slow_store: SlowStoreEviction,
}

impl Schedulers {
    /// Why PD moves the leaders of `store` away on purpose, if it does.
    pub fn evicting(&self, store: &Store) -> Option<&'static str> {
        if self.evict_leader.contains(&store.id) {
            return Some("an evict-leader-scheduler targets it");
        }
        match &self.evict_slow_store {
            SlowStoreEviction::Listed(ids) if ids.contains(&store.id) => {
                Some("evict-slow-store-scheduler evicts its leaders")
            }
            SlowStoreEviction::Unlisted
                if store
                    .slow_score
                    .is_some_and(|s| s >= SLOW_STORE_EVICT_SCORE) =>
            {
                Some("evict-slow-store-scheduler evicts its leaders (slow_score >= 100)")
            }
            _ => None,
        }
    }
}

/// The targets a PD v3.0 scheduler name carries (`evict-leader-scheduler-<id>`), if any.
pub fn v30_evict_leader_target(name: &str) -> Option<u64> {
    name.strip_prefix(EVICT_LEADER)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// PD's own progress of a store's removal (`pd_cluster_*{action="removing",store}`; PD ≥ v6.1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RemovalProgress {
    /// `pd_cluster_progress`: done fraction of the region size, 0..=1.
    pub progress: Option<f64>,
    /// `pd_cluster_speed`: MiB of region size moved per second.
    pub speed: Option<f64>,
    /// `pd_cluster_eta`: seconds left (`f64::MAX` when the speed is 0).
    pub eta: Option<f64>,
}

impl RemovalProgress {
    /// Whether PD itself says the removal does not move (speed 0, or an ETA of `MaxFloat64`).
    pub fn stalled(&self) -> bool {
        self.speed == Some(0.0) || self.eta.is_some_and(|e| e >= f64::MAX / 2.0)
    }
}

/// What the exporter remembers of one Offline store: its lowest region count so far and when
/// the count last fell (or was first seen).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OfflineRecord {
    /// The lowest region count seen.
    pub regions: u64,
    /// When it last fell to `regions`, or when the store was first seen Offline with it.
    pub since: f64,
    /// Whether `since` is the first observation (the count has not fallen since).
    pub first: bool,
}

/// The region count of every Offline store over time: one record per store, dropped when the
/// store leaves Offline (up again, buried, gone). It starts anew with each exporter process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OfflineHistory(BTreeMap<u64, OfflineRecord>);

impl OfflineHistory {
    /// Takes one `/stores` reading at `now`. A store without a region count keeps its record.
    pub fn observe(&mut self, stores: &[Store], now: f64) {
        let offline: BTreeMap<u64, Option<u64>> = stores
            .iter()
            .filter(|s| s.state == StoreState::Offline)
            .map(|s| (s.id, s.region_count))
            .collect();
        self.0.retain(|id, _| offline.contains_key(id));
        for (id, count) in offline {
            let Some(count) = count else { continue };
            match self.0.get_mut(&id) {
                Some(r) if count < r.regions => {
                    *r = OfflineRecord {
                        regions: count,
                        since: now,
                        first: false,
                    }
                }
                Some(_) => {}
                None => {
                    self.0.insert(
                        id,
                        OfflineRecord {
                            regions: count,
                            since: now,
                            first: true,
                        },
                    );
                }
            }
        }
    }

    /// The record of store `id`, if it is Offline and has reported a region count.
    pub fn get(&self, id: u64) -> Option<&OfflineRecord> {
        self.0.get(&id)
    }

    /// How many stores are tracked.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no store is tracked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(id: u64, regions: Option<u64>) -> Store {
        Store {
            region_count: regions,
            ..Store::new(id, StoreState::Offline)
        }
    }

    #[test]
    fn the_history_keeps_the_last_decrease_and_forgets_stores_that_leave_offline() {
        let mut h = OfflineHistory::default();
        h.observe(
            &[offline(5, Some(100)), Store::new(1, StoreState::Up)],
            10.0,
        );
        assert_eq!(
            h.get(5),
            Some(&OfflineRecord {
                regions: 100,
                since: 10.0,
                first: true
            })
        );
        assert_eq!(h.len(), 1);
        // Unchanged, then up (a split): no decrease; then down: the record moves.
        h.observe(&[offline(5, Some(100))], 20.0);
        h.observe(&[offline(5, Some(104))], 30.0);
        assert_eq!(h.get(5).map(|r| r.since), Some(10.0));
        h.observe(&[offline(5, None)], 35.0);
        h.observe(&[offline(5, Some(99))], 40.0);
        assert_eq!(
            h.get(5),
            Some(&OfflineRecord {
                regions: 99,
                since: 40.0,
                first: false
            })
        );
        // Back Up (offline cancelled), gone, or buried: dropped.
        h.observe(&[Store::new(5, StoreState::Up)], 50.0);
        assert!(h.is_empty());
        h.observe(&[offline(5, Some(7))], 60.0);
        assert_eq!(h.get(5).map(|r| (r.since, r.first)), Some((60.0, true)));
        h.observe(&[], 70.0);
        assert!(h.is_empty());
    }

    #[test]
    fn evictions_by_scheduler_and_slow_score() {
        let mut s = Store::new(4, StoreState::Up);
        let mut sch = Schedulers::default();
        assert_eq!(sch.evicting(&s), None);
        sch.evict_leader.insert(4);
        assert_eq!(
            sch.evicting(&s),
            Some("an evict-leader-scheduler targets it")
        );
        sch.evict_leader.clear();
        s.slow_score = Some(100.0);
        // Not running: a slow score alone evicts nothing.
        assert_eq!(sch.evicting(&s), None);
        sch.evict_slow_store = SlowStoreEviction::Unlisted;
        assert!(sch.evicting(&s).unwrap().contains("slow_score >= 100"));
        s.slow_score = Some(99.0);
        assert_eq!(sch.evicting(&s), None);
        // A real list decides, whatever the score.
        sch.evict_slow_store = SlowStoreEviction::Listed([4].into());
        assert!(sch.evicting(&s).is_some());
        s.slow_score = Some(100.0);
        sch.evict_slow_store = SlowStoreEviction::Listed(BTreeSet::new());
        assert_eq!(sch.evicting(&s), None);
        assert_eq!(
            v30_evict_leader_target("evict-leader-scheduler-194"),
            Some(194)
        );
        assert_eq!(v30_evict_leader_target("evict-leader-scheduler"), None);
        assert_eq!(v30_evict_leader_target("evict-leader-scheduler-x"), None);
    }

    #[test]
    fn pd_says_a_removal_is_stalled_by_its_speed_or_eta() {
        let p = RemovalProgress {
            progress: Some(0.4),
            speed: Some(12.5),
            eta: Some(1823.4),
        };
        assert!(!p.stalled());
        assert!(
            RemovalProgress {
                speed: Some(0.0),
                ..p
            }
            .stalled()
        );
        assert!(
            RemovalProgress {
                eta: Some(f64::MAX),
                ..p
            }
            .stalled()
        );
        assert!(!RemovalProgress::default().stalled());
    }
}
