//! Which stores PD moves leaders off on purpose: `GET /pd/api/v1/schedulers` (the running
//! schedulers' names, in random order), then, only when they run,
//! `/scheduler-config/evict-leader-scheduler/list` (targets = the keys of `store-id-ranges`)
//! and `/scheduler-config/evict-slow-store-scheduler/list` (`not implements` ≤ v7.5,
//! `evict-stores` always `null` v7.6–v8.5.4, the real list from v8.5.5). PD v3.0 names one
//! scheduler per store, `evict-leader-scheduler-<id>`. cluster-signals.md §6.
//!
//! At most three requests whatever the size of the cluster, each a few KB. A list endpoint
//! answering 404 means its scheduler was removed between the two requests (PD deletes
//! evict-leader with its last target). A body of the wrong shape fails the whole reading.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{PdClient, PdError, short};
use crate::domain::{
    EVICT_LEADER, EVICT_SLOW_STORE, Schedulers, SlowStoreEviction, v30_evict_leader_target,
};

/// The evict-leader list endpoint.
const EVICT_LEADER_LIST: &str = "/scheduler-config/evict-leader-scheduler/list";
/// The evict-slow-store list endpoint.
const EVICT_SLOW_STORE_LIST: &str = "/scheduler-config/evict-slow-store-scheduler/list";

impl PdClient {
    /// The leader-evicting schedulers and their targets; `None` when this PD serves no
    /// `/schedulers` (404).
    pub async fn schedulers(&self) -> Result<Option<Schedulers>, PdError> {
        let Some(names) = self.get_if_served("/schedulers", parse_names).await? else {
            return Ok(None);
        };
        let mut s = Schedulers {
            running: names.len(),
            evict_leader: names
                .iter()
                .filter_map(|n| v30_evict_leader_target(n))
                .collect(),
            evict_slow_store: SlowStoreEviction::NotRunning,
        };
        if names.iter().any(|n| n == EVICT_LEADER)
            && let Some(targets) = self
                .get_if_served(EVICT_LEADER_LIST, parse_evict_leader)
                .await?
        {
            s.evict_leader.extend(targets);
        }
        if names.iter().any(|n| n == EVICT_SLOW_STORE) {
            s.evict_slow_store = match self
                .get_if_served(EVICT_SLOW_STORE_LIST, parse_evict_slow_store)
                .await?
            {
                Some(Some(ids)) => SlowStoreEviction::Listed(ids),
                Some(None) => SlowStoreEviction::Unlisted,
                None => SlowStoreEviction::NotRunning,
            };
        }
        Ok(Some(s))
    }
}

/// Parses `/schedulers`: a JSON array of names (entries that are not strings are skipped).
pub(super) fn parse_names(body: &[u8]) -> Result<Vec<String>, String> {
    match serde_json::from_slice::<Value>(body).map_err(|e| format!("not JSON: {e}"))? {
        Value::Array(a) => Ok(a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()),
        other => Err(format!("not a list of scheduler names: {}", short(&other))),
    }
}

/// Parses the evict-leader list: `{"store-id-ranges": {"<id>": [ranges]}, ["batch": n]}`;
/// keys that are not store ids are skipped.
pub(super) fn parse_evict_leader(body: &[u8]) -> Result<BTreeSet<u64>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("store-id-ranges") {
        Some(Value::Object(m)) => Ok(m.keys().filter_map(|k| k.parse().ok()).collect()),
        // Go renders an empty map as `{}`; a nil one as `null`.
        Some(Value::Null) => Ok(BTreeSet::new()),
        _ => Err(format!("no `store-id-ranges` object in {}", short(&v))),
    }
}

/// Parses the evict-slow-store list: `None` when PD does not list its targets (`not
/// implements`, `evict-stores` `null` or absent), else the listed store ids.
pub(super) fn parse_evict_slow_store(body: &[u8]) -> Result<Option<BTreeSet<u64>>, String> {
    if body.trim_ascii() == b"not implements" {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(o) = v.as_object() else {
        return Err(format!(
            "not an evict-slow-store configuration: {}",
            short(&v)
        ));
    };
    match o.get("evict-stores") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|id| {
                id.as_u64()
                    .ok_or_else(|| format!("`evict-stores` lists {id}, not a store id"))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(format!("`evict-stores` is {}, not a list", short(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_names_and_evict_leader_targets_in_every_version_shape() {
        // cluster-signals.md §6 sample (random order).
        let names = parse_names(br#"["balance-hot-region-scheduler", "evict-leader-scheduler", "balance-leader-scheduler", "evict-slow-store-scheduler", "balance-region-scheduler"]"#).unwrap();
        assert_eq!(names.len(), 5);
        assert!(parse_names(b"[]").unwrap().is_empty());
        assert!(
            parse_names(br#"{"error": "x"}"#)
                .unwrap_err()
                .contains("not a list")
        );
        assert!(
            parse_names(b"404 page not found")
                .unwrap_err()
                .contains("not JSON")
        );
        // v8.3+ with batch; v3.1–v8.2 without; pd-api.md §7 mock.
        let t = parse_evict_leader(
            br#"{ "store-id-ranges": { "4": [ { "end-key": "", "start-key": "" } ], "x": [] }, "batch": 3 }"#,
        )
        .unwrap();
        assert_eq!(t, [4].into());
        let t = parse_evict_leader(
            br#"{"store-id-ranges": {"4": [{"start-key": "", "end-key": ""}], "7": []}}"#,
        )
        .unwrap();
        assert_eq!(t, [4, 7].into());
        assert!(parse_evict_leader(br#"{"batch": 3}"#).is_err());
        assert!(parse_evict_leader(b"[]").is_err());
    }

    #[test]
    fn evict_slow_store_lists_are_real_only_from_v8_5_5() {
        // ≤ v7.5: BaseScheduler.ServeHTTP.
        assert_eq!(parse_evict_slow_store(b"not implements").unwrap(), None);
        // v7.6–v8.5.4: always null.
        assert_eq!(
            parse_evict_slow_store(
                br#"{"disabled": false, "recovery-duration": 1800, "evict-stores": null}"#
            )
            .unwrap(),
            None
        );
        // v8.5.5+.
        let v = parse_evict_slow_store(br#"{"disabled": false, "recovery-duration": 1800, "evict-stores": [5], "enable-network-slow-store": false, "paused-network-slow-stores": null, "evicted-network-slow-stores": null, "batch": 3}"#).unwrap();
        assert_eq!(v, Some([5].into()));
        assert_eq!(
            parse_evict_slow_store(br#"{"evict-stores": []}"#).unwrap(),
            Some(BTreeSet::new())
        );
        for body in [
            &br#"{"evict-stores": ["5"]}"#[..],
            br#"{"evict-stores": 5}"#,
            br#""x""#,
            b"<html>",
        ] {
            assert!(parse_evict_slow_store(body).is_err());
        }
    }
}
