//! What one poll observed: PD's stores, health and schedule settings, PD's cluster-wide state
//! (the leader's region counts, etcd and scale-in progress, the GC safe point, the min resolved
//! ts, the leader-evicting schedulers: read every `pd.health_interval`, see [`Polled`]), the
//! region count history of Offline stores and the Prometheus query results, each either fresh,
//! or missing with the reason (so invariants can report `unknown`), plus how samples map to
//! stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::{
    GcSafePoints, MinResolvedTs, OfflineHistory, PdHealth, PdLeaderMetrics, ScheduleConfig,
    Schedulers, Store, StoreMatcher, StoreState,
};
use crate::sources::prometheus::Sample;

/// Why an input is missing this round; shown to users as the reason an invariant is unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

impl Unavailable {
    /// The reason, as users will read it.
    pub fn new(reason: impl Into<String>) -> Self {
        Unavailable(reason.into())
    }
}

/// A PD source read every `pd.health_interval` (not every poll): its last reading, or why
/// there is none.
#[derive(Clone, Debug, PartialEq)]
pub enum Polled<T> {
    /// Not read yet.
    NotYet,
    /// This PD does not serve it (an older version answered 404): what depends on it has no
    /// series, and is not unknown either.
    NotServed,
    /// The last attempt read `value` at `at` (Unix seconds).
    Read {
        /// When it was read.
        at: f64,
        /// What was read.
        value: T,
    },
    /// The last attempt failed; `last` is the reading before it, if any.
    Failed {
        /// Why.
        reason: Unavailable,
        /// The last good reading (when, what).
        last: Option<(f64, T)>,
    },
}

impl<T> Polled<T> {
    /// The last good reading, fresh or not.
    pub fn last(&self) -> Option<(f64, &T)> {
        match self {
            Polled::Read { at, value } => Some((*at, value)),
            Polled::Failed { last, .. } => last.as_ref().map(|(at, v)| (*at, v)),
            Polled::NotYet | Polled::NotServed => None,
        }
    }

    /// This source failed with `reason`; the last good reading is kept.
    pub fn fail(&mut self, reason: Unavailable) {
        let last = match std::mem::replace(self, Polled::NotYet) {
            Polled::Read { at, value } => Some((at, value)),
            Polled::Failed { last, .. } => last,
            Polled::NotYet | Polled::NotServed => None,
        };
        *self = Polled::Failed { reason, last };
    }
}

/// The PD leader's `/metrics` as last read, with the WAL fsync p99 over the time since the
/// reading before.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaderReading {
    /// The PD leader's name (from `/members`).
    pub member: String,
    /// The endpoint that served its page.
    pub endpoint: String,
    /// The families read.
    pub metrics: PdLeaderMetrics,
    /// `(p99 in seconds, window in seconds)` of the WAL fsyncs since the previous reading of
    /// the same member, or why there is none (first reading, counters restarted, no histogram).
    pub wal_fsync_p99: Result<(f64, f64), String>,
}

/// The result of each Prometheus query of a round, by query text.
pub type QueryResults = BTreeMap<String, Result<Vec<Sample>, Unavailable>>;

/// Inputs of one evaluation round.
#[derive(Clone, Debug)]
pub struct Observations {
    /// Evaluation time, Unix seconds.
    pub now: f64,
    /// The stores to evaluate: the last good list from PD (Tombstone and excluded stores removed).
    pub stores: Vec<Store>,
    /// Why PD data is not fresh this round (`None` when `/stores` answered this poll).
    pub pd_error: Option<Unavailable>,
    /// Stores whose PD data cannot be trusted this round (listed twice), with the reason.
    pub doubtful: BTreeMap<u64, Unavailable>,
    /// PD health, or why it is unknown.
    pub pd_health: Result<PdHealth, Unavailable>,
    /// PD's schedule settings, as last read.
    pub schedule: ScheduleConfig,
    /// The PD leader's own `/metrics`.
    pub pd_leader_metrics: Polled<LeaderReading>,
    /// PD's `/gc/safepoint`.
    pub gc_safepoint: Polled<GcSafePoints>,
    /// PD's `/min-resolved-ts?scope=cluster`.
    pub min_resolved_ts: Polled<MinResolvedTs>,
    /// PD's `/schedulers` and the evict-leader / evict-slow-store targets.
    pub schedulers: Polled<Schedulers>,
    /// The region count of each Offline store over time (since this process first saw it).
    pub offline: OfflineHistory,
    /// Result of each Prometheus query, by query text.
    pub prom: QueryResults,
    /// Maps samples to `stores`.
    pub matcher: Arc<StoreMatcher>,
}

/// A query's samples grouped by the store they map to (borrowed from the query result).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MappedSamples<'a> {
    /// The samples of each store id (labels and value), in result order.
    pub by_store: BTreeMap<u64, Vec<&'a Sample>>,
    /// Samples that map to no store.
    pub unmapped: usize,
    /// The labels of the first unmapped sample.
    pub example: Option<BTreeMap<String, String>>,
}

impl Observations {
    /// A round at `now` over `stores`, with healthy-looking defaults for everything else
    /// (no PD error, PD health and the cluster-wide PD sources not polled, no query results)
    /// and the built-in mapping rules.
    pub fn new(now: f64, stores: Vec<Store>) -> Observations {
        let matcher = Arc::new(StoreMatcher::new(&stores, None));
        Observations {
            now,
            stores,
            pd_error: None,
            doubtful: BTreeMap::new(),
            pd_health: Err(Unavailable::new("PD health not polled")),
            schedule: ScheduleConfig::default(),
            pd_leader_metrics: Polled::NotYet,
            gc_safepoint: Polled::NotYet,
            min_resolved_ts: Polled::NotYet,
            schedulers: Polled::NotYet,
            offline: OfflineHistory::default(),
            prom: QueryResults::new(),
            matcher,
        }
    }

    /// Why store `id`'s PD data is not usable this round, if it is not.
    pub fn pd_unavailable(&self, id: u64) -> Option<Unavailable> {
        match (&self.pd_error, self.doubtful.get(&id)) {
            (Some(e), _) => Some(Unavailable::new(format!("PD unavailable: {e}"))),
            (None, Some(d)) => Some(d.clone()),
            (None, None) => None,
        }
    }

    /// The samples of `query` by store, or why the query has no result this round.
    pub fn mapped(&self, query: &str) -> Result<MappedSamples<'_>, Unavailable> {
        let samples = match self.prom.get(query) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(Unavailable::new(format!("Prometheus query failed: {e}"))),
            None => return Err(Unavailable::new("query not run")),
        };
        let mut out = MappedSamples::default();
        for sample in samples {
            match self.matcher.store_of_sample(&sample.labels) {
                Some(id) => out.by_store.entry(id).or_default().push(sample),
                None => {
                    out.unmapped += 1;
                    out.example.get_or_insert_with(|| sample.labels.to_map());
                }
            }
        }
        Ok(out)
    }
}

/// True when the store is being removed or gone: only `store_down` looks at it.
pub fn is_leaving(s: &Store) -> bool {
    matches!(s.state, StoreState::Offline | StoreState::Tombstone)
}
