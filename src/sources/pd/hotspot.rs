//! `GET /pd/api/v1/hotspot/regions/{write,read}` (cluster-signals.md §5): the hot peers of
//! every store, as PD's hot-region statistics keep them. Unfiltered, the reply holds every hot
//! peer of the cluster (about 0.4 KB each, 60 or more per busy store, twice: `as_peer` and
//! `as_leader`), tens of MB at 1000 stores (§12): it is never polled, only read on an API
//! request (and cached for one poll by the caller), within [`HOT_REGIONS_MAX_BYTES`].
//!
//! The reply is parsed strictly: `as_peer` must be an object of stores (ids as keys), each with
//! its `statistics` list, each peer with its `region_id` and flows; anything else fails the
//! request (never an empty list). Only `as_peer` is read, as for the `tikv_store_hot_*` gauges
//! (a write counts on every replica, a read on the peer that served it). Per store only the
//! [`HOT_REGIONS_PER_STORE`] hottest peers by bytes are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PdClient, PdError};

/// The largest reply read (or `pd.max_response_bytes`, when smaller).
pub const HOT_REGIONS_MAX_BYTES: usize = 32 << 20;

/// Hot peers kept per store (the largest `limit` the API accepts).
pub const HOT_REGIONS_PER_STORE: usize = 100;

/// Write or read hot regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HotKind {
    /// `/hotspot/regions/write`.
    Write,
    /// `/hotspot/regions/read`.
    Read,
}

impl HotKind {
    /// `write` or `read`.
    pub fn as_str(self) -> &'static str {
        match self {
            HotKind::Write => "write",
            HotKind::Read => "read",
        }
    }
}

/// One hot peer (`statistics[]`), rates per second.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct HotPeer {
    /// The region.
    pub region_id: u64,
    /// Bytes per second written/read through this peer.
    #[serde(rename(deserialize = "flow_bytes", serialize = "flow_bytes_per_second"))]
    pub flow_bytes: f64,
    /// Keys per second.
    #[serde(rename(deserialize = "flow_keys", serialize = "flow_keys_per_second"))]
    pub flow_keys: f64,
    /// Whether the peer is the region's leader (PD ≥ v6.5).
    #[serde(default)]
    pub is_leader: Option<bool>,
    /// How many heartbeats in a row the peer was hot.
    #[serde(default)]
    pub hot_degree: Option<i64>,
    /// The stores of the region's peers (PD ≥ v6.5).
    #[serde(default)]
    pub stores: Option<Vec<u64>>,
}

/// One store's hot peers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HotStore {
    /// Bytes per second over all its hot peers (`total_flow_bytes`).
    pub total_flow_bytes_per_second: f64,
    /// Keys per second over all its hot peers (`total_flow_keys`).
    pub total_flow_keys_per_second: f64,
    /// How many hot peers PD lists for it.
    pub hot_peers: usize,
    /// Its hottest peers by bytes, at most [`HOT_REGIONS_PER_STORE`].
    pub peers: Vec<HotPeer>,
}

/// A parsed `/hotspot/regions/{write,read}` reply: `as_peer` by store id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HotRegions {
    /// Every store PD has load statistics for.
    pub stores: BTreeMap<u64, HotStore>,
}

#[derive(Deserialize)]
struct Wire {
    as_peer: Option<BTreeMap<String, WireStore>>,
}

#[derive(Deserialize)]
struct WireStore {
    total_flow_bytes: f64,
    total_flow_keys: f64,
    statistics: Option<Vec<HotPeer>>,
}

impl PdClient {
    /// `GET /pd/api/v1/hotspot/regions/{kind}` (see the module docs).
    pub async fn hot_regions(&self, kind: HotKind) -> Result<HotRegions, PdError> {
        let limit = HOT_REGIONS_MAX_BYTES.min(self.inner.max_response_bytes);
        self.get_until(
            &format!("/hotspot/regions/{}", kind.as_str()),
            parse_hot_regions,
            false,
            limit,
        )
        .await
    }
}

/// Parses a reply (strictly: see the module docs).
pub(super) fn parse_hot_regions(body: &[u8]) -> Result<HotRegions, String> {
    let wire: Wire =
        serde_json::from_slice(body).map_err(|e| format!("not the hot regions shape: {e}"))?;
    let Some(as_peer) = wire.as_peer else {
        return Err("`as_peer` is null or missing".into());
    };
    let mut stores = BTreeMap::new();
    for (id, s) in as_peer {
        let id: u64 = id
            .parse()
            .map_err(|_| format!("`as_peer` has the key {id:?}, not a store id"))?;
        let mut peers = s.statistics.unwrap_or_default();
        if let Some(p) = peers
            .iter()
            .find(|p| !p.flow_bytes.is_finite() || !p.flow_keys.is_finite())
        {
            return Err(format!(
                "region {} of store {id} has a flow that is not a number",
                p.region_id
            ));
        }
        let hot_peers = peers.len();
        peers.sort_by(|a, b| {
            b.flow_bytes
                .total_cmp(&a.flow_bytes)
                .then(a.region_id.cmp(&b.region_id))
        });
        peers.truncate(HOT_REGIONS_PER_STORE);
        stores.insert(
            id,
            HotStore {
                total_flow_bytes_per_second: s.total_flow_bytes,
                total_flow_keys_per_second: s.total_flow_keys,
                hot_peers,
                peers,
            },
        );
    }
    Ok(HotRegions { stores })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of cluster-signals.md §5 (v6.5–v8.5.6 field set).
    const SAMPLE: &str = r#"{
  "as_peer": {
    "1": {
      "store_bytes": 31457280.5,
      "store_keys": 102400.2,
      "store_query": 5120.7,
      "total_flow_bytes": 20971520.1,
      "total_flow_keys": 65536,
      "total_flow_query": 1200,
      "regions_count": 1,
      "statistics": [
        {
          "store_id": 1,
          "stores": [1, 4, 5],
          "is_leader": true,
          "is_learner": false,
          "region_id": 172,
          "hot_degree": 15,
          "flow_bytes": 20971520.1,
          "flow_keys": 65536,
          "flow_query": 1200,
          "anti_count": 2,
          "last_update_time": "2024-12-25T03:41:23.480549971Z"
        }
      ]
    }
  },
  "as_leader": { "4": { "store_bytes": 29360128, "store_keys": 98000, "store_query": 4900, "total_flow_bytes": 0,
    "total_flow_keys": 0, "total_flow_query": 0, "regions_count": 0, "statistics": [] } }
}
"#;

    #[test]
    fn the_sample_gives_each_stores_peers_with_their_flows() {
        let r = parse_hot_regions(SAMPLE.as_bytes()).unwrap();
        assert_eq!(r.stores.keys().copied().collect::<Vec<_>>(), [1]);
        let s = &r.stores[&1];
        assert_eq!(
            (
                s.total_flow_bytes_per_second,
                s.total_flow_keys_per_second,
                s.hot_peers
            ),
            (20971520.1, 65536.0, 1)
        );
        assert_eq!(
            s.peers,
            [HotPeer {
                region_id: 172,
                flow_bytes: 20971520.1,
                flow_keys: 65536.0,
                is_leader: Some(true),
                hot_degree: Some(15),
                stores: Some(vec![1, 4, 5]),
            }]
        );
        // Serialized with units in the names.
        let v = serde_json::to_value(&s.peers[0]).unwrap();
        assert_eq!(v["flow_bytes_per_second"], 20971520.1);
        assert!(v.get("flow_bytes").is_none());
    }

    #[test]
    fn peers_are_kept_hottest_first_and_bounded_per_store() {
        let stats: Vec<String> = (0..150)
            .map(|i| format!(r#"{{"region_id": {i}, "flow_bytes": {i}.5, "flow_keys": 1}}"#))
            .collect();
        let body = format!(
            r#"{{"as_peer": {{"7": {{"total_flow_bytes": 1, "total_flow_keys": 1, "statistics": [{}]}},
                "8": {{"total_flow_bytes": 0, "total_flow_keys": 0, "statistics": null}}}}}}"#,
            stats.join(",")
        );
        let r = parse_hot_regions(body.as_bytes()).unwrap();
        let s = &r.stores[&7];
        assert_eq!(s.hot_peers, 150);
        assert_eq!(s.peers.len(), HOT_REGIONS_PER_STORE);
        assert_eq!((s.peers[0].region_id, s.peers[99].region_id), (149, 50));
        // PD ≤ v6.4 has no is_leader/stores; a store without hot peers has none.
        assert_eq!(s.peers[0].is_leader, None);
        assert!(r.stores[&8].peers.is_empty());
    }

    #[test]
    fn other_shapes_are_refused_with_the_reason() {
        for (body, why) in [
            ("<html>", "not the hot regions shape"),
            ("{}", "`as_peer` is null or missing"),
            (r#"{"as_peer": []}"#, "not the hot regions shape"),
            (
                r#"{"as_peer": {"x": {"total_flow_bytes": 0, "total_flow_keys": 0, "statistics": []}}}"#,
                "not a store id",
            ),
            (
                r#"{"as_peer": {"1": {"total_flow_keys": 0, "statistics": []}}}"#,
                "missing field `total_flow_bytes`",
            ),
            (
                r#"{"as_peer": {"1": {"total_flow_bytes": 0, "total_flow_keys": 0, "statistics": [{"flow_bytes": 1, "flow_keys": 1}]}}}"#,
                "missing field `region_id`",
            ),
            (
                r#"{"as_peer": {"1": {"total_flow_bytes": 0, "total_flow_keys": 0, "statistics": [{"region_id": -1, "flow_bytes": 1, "flow_keys": 1}]}}}"#,
                "not the hot regions shape",
            ),
        ] {
            let e = parse_hot_regions(body.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
    }
}
