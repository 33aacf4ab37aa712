//! `GET /api/v1/hot-regions?type=write|read&limit=N`: the hottest regions of each store, from
//! PD's `/hotspot/regions/{write,read}` ([`crate::sources::pd`]), fetched on request and kept
//! until the next poll: at most one PD request per type per poll however many API calls, and
//! concurrent calls wait for the same one. A failed fetch is kept too (and answered as 502 with
//! its reason until the next poll), so a broken PD is not asked once per call. Region ids are
//! in the JSON only, never in a label.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::sources::pd::{HOT_REGIONS_PER_STORE, HotKind, HotPeer, HotRegions, PdClient};

/// Regions per store when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 10;

/// One type's last fetch: the poll it belongs to (the snapshot's `taken_at`) and its outcome.
type Entry = (f64, Arc<Result<HotRegions, String>>);

/// The PD client to ask and the fetches of the current poll.
#[derive(Default)]
pub struct HotRegionsCache {
    pd: Mutex<Option<PdClient>>,
    write: tokio::sync::Mutex<Option<Entry>>,
    read: tokio::sync::Mutex<Option<Entry>>,
}

impl std::fmt::Debug for HotRegionsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotRegionsCache").finish_non_exhaustive()
    }
}

impl HotRegionsCache {
    /// No client yet (every call answers 502 until [`set_client`](Self::set_client)).
    pub fn new() -> Self {
        Self::default()
    }

    /// The PD client to use from now on (at start and after each reload).
    pub fn set_client(&self, pd: PdClient) {
        *self.pd.lock().unwrap_or_else(|p| p.into_inner()) = Some(pd);
    }

    /// The hot regions of `kind` for the poll `poll`: fetched once, then shared.
    pub(crate) async fn get(&self, kind: HotKind, poll: f64) -> Arc<Result<HotRegions, String>> {
        let slot = match kind {
            HotKind::Write => &self.write,
            HotKind::Read => &self.read,
        };
        // Held across the fetch: concurrent calls wait for it and then read its outcome.
        let mut slot = slot.lock().await;
        if let Some((at, result)) = &*slot
            && *at == poll
        {
            return result.clone();
        }
        let pd = self.pd.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = match pd {
            Some(pd) => pd.hot_regions(kind).await.map_err(|e| e.to_string()),
            None => Err("no PD client yet".to_owned()),
        };
        let result = Arc::new(result);
        *slot = Some((poll, result.clone()));
        result
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct HotQuery {
    /// Which statistics.
    pub(crate) kind: HotKind,
    /// Regions per store.
    pub(crate) limit: usize,
}

/// Parses `type=write|read[&limit=N]`; the error says what is accepted.
pub(crate) fn parse_query(query: Option<&str>) -> Result<HotQuery, String> {
    let (mut kind, mut limit) = (None, None);
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let seen = match k {
            "type" => kind.replace(v).is_some(),
            "limit" => limit.replace(v).is_some(),
            _ => return Err(format!("unknown parameter `{k}`: only type and limit")),
        };
        if seen {
            return Err(format!("{k} is given more than once"));
        }
    }
    let kind = match kind {
        Some("write") => HotKind::Write,
        Some("read") => HotKind::Read,
        Some(other) => return Err(format!("type must be write or read, not `{other}`")),
        None => return Err("type is required: type=write or type=read".into()),
    };
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=HOT_REGIONS_PER_STORE).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit must be an integer from 1 to {HOT_REGIONS_PER_STORE}, not `{raw}`"
                ));
            }
        },
    };
    Ok(HotQuery { kind, limit })
}

/// The reply.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct HotReply<'a> {
    #[serde(rename = "type")]
    kind: HotKind,
    limit: usize,
    /// The poll this reading belongs to (Unix seconds): it is kept until the next one.
    poll_taken_at_seconds: f64,
    stores: Vec<HotStoreJson<'a>>,
}

/// One store of the reply.
#[derive(Debug, PartialEq, Serialize)]
struct HotStoreJson<'a> {
    store: String,
    total_flow_bytes_per_second: f64,
    total_flow_keys_per_second: f64,
    /// Hot peers PD lists for the store (`regions` has at most `limit` of them).
    hot_regions: usize,
    regions: &'a [HotPeer],
}

/// The reply for `q` from a fetched reading.
pub(crate) fn reply(q: HotQuery, poll: f64, hot: &HotRegions) -> HotReply<'_> {
    HotReply {
        kind: q.kind,
        limit: q.limit,
        poll_taken_at_seconds: poll,
        stores: hot
            .stores
            .iter()
            .map(|(id, s)| HotStoreJson {
                store: id.to_string(),
                total_flow_bytes_per_second: s.total_flow_bytes_per_second,
                total_flow_keys_per_second: s.total_flow_keys_per_second,
                hot_regions: s.hot_peers,
                regions: &s.peers[..s.peers.len().min(q.limit)],
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::pd::HotStore;
    use serde_json::json;

    #[test]
    fn the_query_takes_a_type_and_a_bounded_limit() {
        let q = |s| parse_query(Some(s));
        assert_eq!(
            q("type=read"),
            Ok(HotQuery {
                kind: HotKind::Read,
                limit: 10
            })
        );
        assert_eq!(
            q("limit=100&type=write"),
            Ok(HotQuery {
                kind: HotKind::Write,
                limit: 100
            })
        );
        for (query, why) in [
            ("", "type is required"),
            ("type=hot", "type must be write or read, not `hot`"),
            ("type=write&limit=0", "from 1 to 100, not `0`"),
            ("type=write&limit=101", "not `101`"),
            ("type=write&limit=-1", "not `-1`"),
            ("type=write&type=read", "type is given more than once"),
            ("type=write&store_id=1", "unknown parameter `store_id`"),
        ] {
            let e = q(query).unwrap_err();
            assert!(e.contains(why), "{query}: {e}");
        }
        assert!(parse_query(None).is_err());
    }

    #[test]
    fn the_reply_lists_each_store_with_at_most_limit_regions() {
        let peer = |region_id, flow_bytes| HotPeer {
            region_id,
            flow_bytes,
            flow_keys: 1.0,
            is_leader: Some(true),
            hot_degree: Some(3),
            stores: Some(vec![1, 2, 3]),
        };
        let hot = HotRegions {
            stores: [(
                1,
                HotStore {
                    total_flow_bytes_per_second: 30.0,
                    total_flow_keys_per_second: 3.0,
                    hot_peers: 3,
                    peers: vec![peer(7, 20.0), peer(5, 6.0), peer(9, 4.0)],
                },
            )]
            .into(),
        };
        let q = HotQuery {
            kind: HotKind::Write,
            limit: 2,
        };
        let v = serde_json::to_value(reply(q, 1.7e9, &hot)).unwrap();
        assert_eq!(
            v,
            json!({"type": "write", "limit": 2, "poll_taken_at_seconds": 1.7e9, "stores": [
                {"store": "1", "total_flow_bytes_per_second": 30.0,
                 "total_flow_keys_per_second": 3.0, "hot_regions": 3, "regions": [
                    {"region_id": 7, "flow_bytes_per_second": 20.0, "flow_keys_per_second": 1.0,
                     "is_leader": true, "hot_degree": 3, "stores": [1, 2, 3]},
                    {"region_id": 5, "flow_bytes_per_second": 6.0, "flow_keys_per_second": 1.0,
                     "is_leader": true, "hot_degree": 3, "stores": [1, 2, 3]}]}]})
        );
    }

    #[tokio::test]
    async fn without_a_client_the_fetch_fails_and_is_kept_for_the_poll() {
        let c = HotRegionsCache::new();
        let r = c.get(HotKind::Write, 1.0).await;
        assert_eq!(r.as_ref(), &Err("no PD client yet".to_owned()));
        assert!(Arc::ptr_eq(&r, &c.get(HotKind::Write, 1.0).await));
        assert!(!Arc::ptr_eq(&r, &c.get(HotKind::Write, 2.0).await));
    }
}
