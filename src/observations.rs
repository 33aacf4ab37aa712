//! What one poll observed: PD's stores and health and the Prometheus query results, each
//! either fresh, or missing with the reason (so invariants can report `unknown`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::domain::{PdHealth, Store, StoreState};
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
    /// PD health, or why it is unknown.
    pub pd_health: Result<PdHealth, Unavailable>,
    /// PD's `max-store-down-time`, when read.
    pub max_store_down_time: Option<Duration>,
    /// Result of each Prometheus query, by query text.
    pub prom: QueryResults,
}

impl Observations {
    /// Maps a Prometheus sample to a store id: its `store` label if that is a known store id,
    /// otherwise its `instance` label matched against status addresses, then addresses.
    pub fn store_of(&self, sample: &Sample, index: &StoreIndex) -> Option<String> {
        if let Some(s) = sample.labels.get("store")
            && index.ids.contains_key(s.as_str())
        {
            return Some(s.clone());
        }
        let inst = sample.labels.get("instance")?;
        index.by_instance.get(inst.as_str()).cloned()
    }

    /// Builds the lookup tables used by [`Observations::store_of`].
    pub fn index(&self) -> StoreIndex {
        let mut by_instance = HashMap::new();
        let mut ids = HashMap::new();
        for s in &self.stores {
            let id = s.id.to_string();
            // Addresses first, status addresses last: the status address wins a clash.
            if !s.address.is_empty() {
                by_instance.insert(s.address.clone(), id.clone());
            }
            if !s.status_address.is_empty() {
                by_instance.insert(s.status_address.clone(), id.clone());
            }
            ids.insert(id, ());
        }
        StoreIndex { by_instance, ids }
    }
}

/// Lookup of stores by Prometheus `instance` and by id.
#[derive(Clone, Debug, Default)]
pub struct StoreIndex {
    by_instance: HashMap<String, String>,
    ids: HashMap<String, ()>,
}

/// True when the store is being removed or gone: only `store_down` looks at it (never down).
pub fn is_leaving(s: &Store) -> bool {
    matches!(s.state, StoreState::Offline | StoreState::Tombstone)
}
